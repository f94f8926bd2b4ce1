//! A backend over files of any [`Fs`](crate::fs::Fs): the durable store's device
//! files, and [`FileBackend`](super::FileBackend)'s (on [`StdFs`](crate::fs::StdFs)).

use super::Backend;
use crate::error::{Error, Result};
use crate::fs::FsFile;
use crate::record::Location;
// std's Arc even under loom: file handles are shared, not synchronised through it.
use std::sync::Arc;

/// One file per device through a [`Fs`](crate::fs::Fs), positioned I/O.
#[derive(Debug)]
pub(crate) struct FsBackend {
    files: Vec<Arc<dyn FsFile>>,
}

impl FsBackend {
    /// A backend over one open file per device.
    pub(crate) fn new(files: Vec<Arc<dyn FsFile>>) -> Self {
        FsBackend { files }
    }

    fn file(&self, device: u16) -> Result<&Arc<dyn FsFile>> {
        self.files.get(usize::from(device)).ok_or(Error::Io {
            device,
            op: "open",
            kind: std::io::ErrorKind::NotFound,
            message: "no such device".into(),
        })
    }
}

impl Backend for FsBackend {
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

    /// Only ever shrinks. Only free space is trimmed, and space is free only once
    /// the record that unreferenced it is durable, so a crash never finds a durable
    /// record past the end of its file.
    fn trim(&self, device: u16, length: u64) -> Result<()> {
        let file = self.file(device)?;
        let current = file.len().map_err(|e| Error::io(device, "trim", &e))?;
        if current > length {
            file.set_len(length)
                .map_err(|e| Error::io(device, "trim", &e))?;
        }
        Ok(())
    }
}
