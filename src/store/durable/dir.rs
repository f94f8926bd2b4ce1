//! The metadata directory a durable store's plans run against.

use super::io_error;
use crate::backend::{Backend, DeviceFiles};
use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile};
use crate::journal::files;
use crate::journal::plan::FsOp;
use crate::sync::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Runs plans against a directory of an [`Fs`], keeping files open by name.
#[derive(Debug)]
pub(crate) struct Dir {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) path: PathBuf,
    pub(super) open: Mutex<HashMap<String, Arc<dyn FsFile>>>,
    /// The store's device files, for the plans' device steps (set once they are
    /// open; a plan that needs them before fails).
    devices: OnceLock<Arc<DeviceFiles>>,
}

impl Dir {
    pub(crate) fn new(fs: Arc<dyn Fs>, path: &Path) -> Self {
        Dir {
            fs,
            path: path.to_path_buf(),
            open: Mutex::new(HashMap::new()),
            devices: OnceLock::new(),
        }
    }

    /// The device files the plans' device steps run on.
    pub(crate) fn set_devices(&self, devices: Arc<DeviceFiles>) {
        let _ = self.devices.set(devices);
    }

    fn devices(&self) -> Result<&DeviceFiles> {
        self.devices.get().map(|d| &**d).ok_or(Error::Internal {
            what: "a plan's device step before the device files were open",
        })
    }

    /// Drops every handle kept by name: a file removed meanwhile is then
    /// created afresh, not written through a handle to the unlinked one.
    pub(crate) fn forget_files(&self) {
        self.open.lock().clear();
    }

    pub(crate) fn file(&self, name: &str, create: bool) -> Result<Arc<dyn FsFile>> {
        let mut open = self.open.lock();
        if let Some(f) = open.get(name) {
            return Ok(Arc::clone(f));
        }
        let f = self
            .fs
            .open(&self.path.join(name), create)
            .map_err(|e| io_error("open", &e))?;
        open.insert(name.to_string(), Arc::clone(&f));
        Ok(f)
    }

    /// Runs `ops` in order, stopping at the first error; device syncs go straight
    /// to the device files (an open, before the store runs).
    pub(crate) fn run(&self, ops: &[FsOp]) -> Result<()> {
        self.run_with(ops, &|| {
            let devices = self.devices()?;
            (0..devices.device_count()).try_for_each(|d| devices.sync(d))
        })
    }

    /// [`run`](Self::run), with `sync_devices` running [`FsOp::SyncDevices`].
    pub(super) fn run_with(
        &self,
        ops: &[FsOp],
        sync_devices: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        self.run_checkpoint(ops, sync_devices, &|_| Err(image_outside_rotation()))
    }

    /// [`run_with`](Self::run_with), with `write_image` writing
    /// [`FsOp::WriteImage`]'s file.
    pub(super) fn run_checkpoint(
        &self,
        ops: &[FsOp],
        sync_devices: &dyn Fn() -> Result<()>,
        write_image: &dyn Fn(&str) -> Result<()>,
    ) -> Result<()> {
        for op in ops {
            let step = || match op {
                FsOp::SyncDevices => sync_devices(),
                FsOp::WriteImage { file } => write_image(file),
                op => self.run_one(op),
            };
            // A panic in a step (in the file system, an `Fs` the engine may
            // supply, or in the store's own image or device-sync code) fails
            // the step as an I/O error would: whoever runs the plan then
            // completes its group commit or checkpoint, so no committer waits
            // for it forever and its records' outcome is unknown, not refused.
            let done = crate::fs::unless_panicked(step, || {
                io_error("plan", &std::io::Error::other("a plan step panicked"))
            });
            if let Err(err) = done {
                // Through `run_one`, which drops the cached handle too: a
                // retry must write a new file, not the unlinked one.
                if let Some(file) = crate::journal::plan::failed_image(ops, self.pointer()) {
                    let remove = FsOp::Remove { file: file.into() };
                    let _ = crate::fs::unless_panicked(
                        || self.run_one(&remove),
                        || io_error("remove", &std::io::Error::other("a plan step panicked")),
                    );
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// The checkpoint the pointer on disk names, if it can be read whole
    /// (any doubt, a panic included, is `None`).
    fn pointer(&self) -> Option<u64> {
        let read = crate::fs::unless_panicked(
            || self.fs.read_file(&self.path.join(files::CURRENT)),
            || std::io::Error::other("the file system panicked"),
        );
        match read {
            Ok(Some(bytes)) => crate::journal::decode_pointer(&bytes).ok(),
            _ => None,
        }
    }

    fn run_one(&self, op: &FsOp) -> Result<()> {
        let fs = &*self.fs;
        match op {
            FsOp::Write {
                file,
                offset,
                bytes,
            } => self
                .file(file, true)?
                .write_all_at(bytes, *offset)
                .map_err(|e| io_error("write", &e)),
            FsOp::Sync { file } => self
                .file(file, false)?
                .sync_data()
                .map_err(|e| io_error("sync", &e)),
            FsOp::SyncDir => fs
                .sync_dir(&self.path)
                .map_err(|e| io_error("sync dir", &e)),
            FsOp::Rename { from, to } => {
                let mut open = self.open.lock();
                fs.rename(&self.path.join(from), &self.path.join(to))
                    .map_err(|e| io_error("rename", &e))?;
                if let Some(f) = open.remove(from) {
                    open.insert(to.clone(), f);
                }
                Ok(())
            }
            FsOp::Adopt { from, to } => {
                let mut open = self.open.lock();
                // A handle kept under the new name is the replaced file's.
                open.remove(to);
                match fs.rename(&self.path.join(from), &self.path.join(to)) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    other => other.map_err(|e| io_error("rename", &e))?,
                }
                if let Some(f) = open.remove(from) {
                    open.insert(to.clone(), f);
                }
                Ok(())
            }
            FsOp::Remove { file } => {
                self.open.lock().remove(file);
                match fs.remove(&self.path.join(file)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(io_error("remove", &e))
                    }
                    _ => Ok(()),
                }
            }
            FsOp::Truncate { file, len } => self
                .file(file, false)?
                .set_len(*len)
                .map_err(|e| io_error("truncate", &e)),
            FsOp::DeviceWrite { location, bytes } => self.devices()?.write_at(*location, bytes),
            FsOp::SyncDevices => Err(Error::Internal {
                what: "a device sync outside `run_with`",
            }),
            FsOp::WriteImage { .. } => Err(image_outside_rotation()),
        }
    }
}

/// A plan's [`FsOp::WriteImage`] run without a live state to read: only a
/// rotation's checkpoint has one.
fn image_outside_rotation() -> Error {
    Error::Internal {
        what: "a checkpoint from the live state outside a rotation",
    }
}
