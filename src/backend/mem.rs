//! An in-memory backend.

use super::Backend;
use crate::error::{Error, Result};
use crate::record::Location;
use crate::sync::RwLock;

/// Devices held in memory: for tests, benchmarks and engines that keep extents in
/// RAM. Reads beyond what was written return [`Error::ShortRead`].
#[derive(Debug)]
pub struct MemBackend {
    devices: Box<[RwLock<Vec<u8>>]>,
}

impl MemBackend {
    /// `devices` empty devices (bound: 1 ..= 65 535; 0 is raised to 1).
    pub fn new(devices: u16) -> Self {
        MemBackend {
            devices: (0..devices.max(1))
                .map(|_| RwLock::new(Vec::new()))
                .collect(),
        }
    }

    /// Overwrites bytes at `location` *without* going through the store: simulates
    /// corruption at rest for tests. Errors on an unknown device.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for an unknown device.
    pub fn corrupt(&self, location: Location, f: impl FnOnce(&mut [u8])) -> Result<()> {
        let (start, end) = span(location, location.length as usize)?;
        let mut dev = self.device(location.device)?.write();
        grow(&mut dev, end, location)?;
        f(&mut dev[start..end]);
        Ok(())
    }

    /// The current length in bytes of `device` (0 for an unknown device).
    pub fn device_len(&self, device: u16) -> u64 {
        self.device(device).map_or(0, |d| d.read().len() as u64)
    }

    fn device(&self, device: u16) -> Result<&RwLock<Vec<u8>>> {
        self.devices.get(device as usize).ok_or_else(|| Error::Io {
            device,
            op: "open",
            kind: std::io::ErrorKind::NotFound,
            message: "no such device".into(),
        })
    }
}

impl Backend for MemBackend {
    fn device_count(&self) -> u16 {
        self.devices.len() as u16
    }

    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
        let (start, end) = span(location, buf.len())?;
        let dev = self.device(location.device)?.read();
        let available = dev.len().min(end).saturating_sub(start);
        if available < buf.len() {
            return Err(Error::ShortRead {
                location,
                actual: available as u64,
            });
        }
        buf.copy_from_slice(&dev[start..end]);
        Ok(())
    }

    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
        let (start, end) = span(location, bytes.len())?;
        let mut dev = self.device(location.device)?.write();
        grow(&mut dev, end, location)?;
        dev[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn sync(&self, device: u16) -> Result<()> {
        self.device(device).map(|_| ())
    }

    /// Truncates the device's buffer to `length` if it is longer.
    fn trim(&self, device: u16, length: u64) -> Result<()> {
        let mut dev = self.device(device)?.write();
        if let Ok(length) = usize::try_from(length)
            && dev.len() > length
        {
            dev.truncate(length);
            dev.shrink_to_fit();
        }
        Ok(())
    }
}

/// Zero-fills `dev` up to `end` bytes (for a write at `location`), or a
/// typed error if the allocator refuses the memory: the allocation is tried,
/// not assumed, since a failed one would abort the process. Grown as `resize`
/// grows (amortized: a device filled write by write is not copied each time).
fn grow(dev: &mut Vec<u8>, end: usize, location: Location) -> Result<()> {
    if dev.len() < end {
        // Amortized (it may ask for twice the length); the exact length if
        // that is refused, where only the doubled request would not fit.
        (dev.try_reserve(end - dev.len()))
            .or_else(|_| dev.try_reserve_exact(end - dev.len()))
            .map_err(|e| Error::Io {
                device: location.device,
                op: "write",
                kind: std::io::ErrorKind::OutOfMemory,
                message: format!("{location}: {e}"),
            })?;
        dev.resize(end, 0);
    }
    Ok(())
}

/// The byte range `[offset, offset + len)` of `location` as memory indices, or a
/// typed error if it does not fit in this process's address space (a location near
/// `u64::MAX` is a caller's bug, not a reason to panic).
fn span(location: Location, len: usize) -> Result<(usize, usize)> {
    let start = usize::try_from(location.offset).ok();
    let end = start.and_then(|s| s.checked_add(len));
    match (start, end) {
        (Some(start), Some(end)) if end <= isize::MAX as usize => Ok((start, end)),
        _ => Err(Error::Io {
            device: location.device,
            op: "open",
            kind: std::io::ErrorKind::InvalidInput,
            message: format!("{location} is beyond what memory can hold"),
        }),
    }
}
