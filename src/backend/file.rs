//! A backend on real files: one file per device, positioned I/O.

use super::{Backend, DeviceFiles};
use crate::error::{Error, Result};
use crate::fs::{Fs, StdFs};
use crate::record::Location;
use std::path::{Path, PathBuf};

/// One file per device (`dev0000.extents`, `dev0001.extents`, … in a directory),
/// read and written with `pread`/`pwrite` (`std::os::unix::fs::FileExt`);
/// [`Backend::sync`] is `fdatasync`.
///
/// A truncated or missing file, or bytes changed underneath the store, surface as
/// typed errors ([`Error::ShortRead`], [`Error::Io`], or a checksum mismatch found by
/// the protocol), never as a panic.
/// The directory is the backend's alone while it is open: it holds the
/// directory's `LOCK`, as a durable store does, so a second `FileBackend` or a
/// [`Store::open`](crate::Store::open) there is refused (FPRE026) instead of
/// allocating over its data from an empty allocator.
#[derive(Debug)]
pub struct FileBackend {
    dir: PathBuf,
    inner: DeviceFiles,
    /// Held until the backend is dropped.
    _lock: Box<dyn std::any::Any + Send + Sync>,
}

impl FileBackend {
    /// Opens (creating if needed) `devices` device files in `dir`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory or a file cannot be created or opened;
    /// [`Error::InvalidConfig`] for zero devices; [`Error::Locked`] (FPRE026)
    /// while another `FileBackend` or a durable store has the directory;
    /// [`Error::NotAStore`] (FPRE031) for a durable store's directory (it
    /// holds `CURRENT`: open it with [`Store::open`](crate::Store::open)).
    pub fn open(dir: impl AsRef<Path>, devices: u16) -> Result<Self> {
        if devices == 0 {
            return Err(Error::InvalidConfig {
                field: "devices",
                reason: "a FileBackend needs at least one device".into(),
            });
        }
        let dir = dir.as_ref().to_path_buf();
        let fs = StdFs;
        crate::fs::create_dir_durably(&fs, &dir).map_err(|e| Error::io(0, "open", &e))?;
        let lock_path = dir.join(super::LOCK_FILE);
        let lock =
            (fs.lock(&lock_path).map_err(|e| Error::io(0, "lock", &e))?).ok_or_else(|| {
                Error::Locked {
                    path: lock_path.display().to_string(),
                }
            })?;
        if dir.join(super::POINTER_FILE).exists() {
            return Err(Error::NotAStore {
                path: dir.display().to_string(),
                reason: "it holds a durable store (CURRENT): open it with Store::open; a FileBackend needs a directory of its own".into(),
            });
        }
        let files = (0..devices)
            .map(|d| {
                fs.open(&Self::path_in(&dir, d), true)
                    .map_err(|e| Error::io(d, "open", &e))
            })
            .collect::<Result<Vec<_>>>()?;
        // Make the files' directory entries durable too: an acknowledged write must
        // not vanish with a file that a crash forgot.
        fs.sync_dir(&dir).map_err(|e| Error::io(0, "sync", &e))?;
        Ok(FileBackend {
            dir,
            inner: DeviceFiles::new(files),
            _lock: lock,
        })
    }

    /// The path of `device`'s file.
    pub fn device_path(&self, device: u16) -> PathBuf {
        Self::path_in(&self.dir, device)
    }

    fn path_in(dir: &Path, device: u16) -> PathBuf {
        dir.join(super::device_file_name(device))
    }
}

/// Positioned reads (a short file is [`Error::ShortRead`]), writes, `fdatasync`,
/// and a trim that only shrinks: the same code as the durable store's device files.
impl Backend for FileBackend {
    fn device_count(&self) -> u16 {
        self.inner.device_count()
    }
    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
        self.inner.read_at(location, buf)
    }
    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
        self.inner.write_at(location, bytes)
    }
    fn sync(&self, device: u16) -> Result<()> {
        self.inner.sync(device)
    }
    fn trim(&self, device: u16, length: u64) -> Result<()> {
        self.inner.trim(device, length)
    }
}
