//! A backend on real files: one file per device, positioned I/O.

use super::Backend;
use crate::error::{Error, Result};
use crate::record::Location;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One file per device (`dev0000.extents`, `dev0001.extents`, … in a directory),
/// read and written with `pread`/`pwrite` (`std::os::unix::fs::FileExt`);
/// [`Backend::sync`] is `fdatasync`.
///
/// A truncated or missing file, or bytes changed underneath the store, surface as
/// typed errors ([`Error::ShortRead`], [`Error::Io`], or a checksum mismatch found by
/// the protocol), never as a panic.
#[derive(Debug)]
pub struct FileBackend {
    dir: PathBuf,
    files: Box<[File]>,
}

impl FileBackend {
    /// Opens (creating if needed) `devices` device files in `dir`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory or a file cannot be created or opened;
    /// [`Error::InvalidConfig`] for zero devices.
    pub fn open(dir: impl AsRef<Path>, devices: u16) -> Result<Self> {
        if devices == 0 {
            return Err(Error::InvalidConfig {
                field: "devices",
                reason: "a FileBackend needs at least one device".into(),
            });
        }
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(0, "open", &e))?;
        let files = (0..devices)
            .map(|d| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(Self::path_in(&dir, d))
                    .map_err(|e| Error::io(d, "open", &e))
            })
            .collect::<Result<Box<[File]>>>()?;
        // Make the files' directory entries durable too: an acknowledged write must
        // not vanish with a file that a crash forgot.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(0, "sync", &e))?;
        Ok(FileBackend { dir, files })
    }

    /// The path of `device`'s file.
    pub fn device_path(&self, device: u16) -> PathBuf {
        Self::path_in(&self.dir, device)
    }

    fn path_in(dir: &Path, device: u16) -> PathBuf {
        dir.join(format!("dev{device:04}.extents"))
    }

    fn file(&self, device: u16) -> Result<&File> {
        self.files.get(device as usize).ok_or_else(|| Error::Io {
            device,
            op: "open",
            kind: std::io::ErrorKind::NotFound,
            message: "no such device".into(),
        })
    }
}

impl Backend for FileBackend {
    fn device_count(&self) -> u16 {
        self.files.len() as u16
    }

    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
        let file = self.file(location.device)?;
        crate::backend::read_exact_at(location, buf, |b, at| file.read_at(b, at))
    }

    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
        self.file(location.device)?
            .write_all_at(bytes, location.offset)
            .map_err(|e| Error::io(location.device, "write", &e))
    }

    fn sync(&self, device: u16) -> Result<()> {
        self.file(device)?
            .sync_data()
            .map_err(|e| Error::io(device, "sync", &e))
    }

    /// `File::set_len(length)` if the file is longer: never extends it.
    fn trim(&self, device: u16, length: u64) -> Result<()> {
        let file = self.file(device)?;
        let current = file
            .metadata()
            .map_err(|e| Error::io(device, "trim", &e))?
            .len();
        if current > length {
            file.set_len(length)
                .map_err(|e| Error::io(device, "trim", &e))?;
        }
        Ok(())
    }
}
