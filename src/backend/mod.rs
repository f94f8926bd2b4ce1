//! Where extent bytes live: the [`Backend`] trait and two implementations.
//!
//! A backend is positioned I/O on numbered devices. It knows nothing of extents,
//! versions or checksums: the protocol checks every byte it reads against the
//! record's identity-bound checksum, so a backend that returns the wrong bytes is
//! caught, not trusted.

mod device_files;
mod file;
mod mem;

pub(crate) use device_files::DeviceFiles;
#[cfg(any(test, feature = "sim"))]
pub(crate) use device_files::{SyncBook, SyncEnd};
pub use file::FileBackend;
pub use mem::MemBackend;

use crate::bytes::Bytes;
use crate::error::Result;
use crate::record::{ExtentId, Location};

/// Positioned I/O on a fixed set of devices, implemented by the storage engine.
///
/// # Contract
///
/// * `read_at` fills `buf` (whose length is `location.length`) with the bytes at
///   `location`, or returns a typed error: [`Error::ShortRead`](crate::Error::ShortRead)
///   for fewer bytes, [`Error::Io`](crate::Error::Io) for a failure. Never panics on
///   bad media.
/// * `write_at` writes `bytes` at `location`; the write need not be durable until
///   `sync` of that device returns `Ok` (the durability acknowledgment). The protocol
///   commits a write only after that acknowledgment.
/// * `good_copy` is an optional source of a known-good copy (a replica, erasure-code
///   reconstruction) used by remap; the protocol verifies it before use.
pub trait Backend: Send + Sync + 'static {
    /// Number of devices; valid device numbers are `0..device_count()`.
    fn device_count(&self) -> u16;

    /// Reads `location` into `buf` (`buf.len() == location.length`).
    ///
    /// # Errors
    ///
    /// [`Error::ShortRead`](crate::Error::ShortRead) or
    /// [`Error::Io`](crate::Error::Io).
    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()>;

    /// Writes `bytes` (`bytes.len() == location.length`) at `location`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io).
    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()>;

    /// Makes every completed write on `device` durable: the write acknowledgment.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io).
    fn sync(&self, device: u16) -> Result<()>;

    /// Releases `device`'s bytes at or past `length`: they are unreferenced (no
    /// committed record, no reader and no write in flight uses them) and may be
    /// released, e.g. by truncating the device's file. Only ever shrinks; a device
    /// already no longer than `length` is left as it is. The default keeps
    /// everything (`Ok(())`).
    ///
    /// Called with the device's space locked, so that no location in the tail
    /// is handed out before it is released: an implementation must not call
    /// back into the store (`write`, `stats`, `space`, ...), which would wait
    /// for that lock on its own thread.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io); the store then keeps counting the tail as
    /// unreleased and tries again later.
    fn trim(&self, device: u16, length: u64) -> Result<()> {
        let _ = (device, length);
        Ok(())
    }

    /// A known-good copy of `extent` at content `generation`, if the engine has one
    /// (replica or reconstruction). The default has none.
    fn good_copy(&self, extent: ExtentId, generation: u64) -> Option<Bytes> {
        let _ = (extent, generation);
        None
    }
}

/// A shared backend is a backend: a store and the engine (or a test) can hold the
/// same one.
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn device_count(&self) -> u16 {
        (**self).device_count()
    }
    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(location, buf)
    }
    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
        (**self).write_at(location, bytes)
    }
    fn sync(&self, device: u16) -> Result<()> {
        (**self).sync(device)
    }
    fn trim(&self, device: u16, length: u64) -> Result<()> {
        (**self).trim(device, length)
    }
    fn good_copy(&self, extent: ExtentId, generation: u64) -> Option<Bytes> {
        (**self).good_copy(extent, generation)
    }
}

/// The directory's lock, held by a durable store and by a [`FileBackend`]
/// while either has the directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// A durable store's pointer to its current checkpoint: a directory that
/// holds it is a durable store's.
pub(crate) const POINTER_FILE: &str = "CURRENT";

/// The name of `device`'s data file in a directory (`dev0000.extents`, …).
pub(crate) fn device_file_name(device: u16) -> String {
    format!("dev{device:04}.extents")
}

/// Fills `buf` with the bytes at `location` through `read` (a positioned read of
/// `location`'s device), retrying on `Interrupted`.
///
/// # Errors
///
/// [`Error::ShortRead`](crate::Error::ShortRead) at the end of the file,
/// [`Error::Io`](crate::Error::Io) for a failure.
pub(crate) fn read_exact_at(
    location: Location,
    buf: &mut [u8],
    mut read: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
) -> Result<()> {
    let (mut done, mut interrupted) = (0usize, 0);
    // Bounded: each iteration reads at least one byte, ends the loop, or retries an
    // interrupted call (`fs::MAX_INTERRUPTED` times in a row at most).
    while done < buf.len() {
        match read(&mut buf[done..], location.offset + done as u64) {
            Ok(0) => {
                return Err(crate::Error::ShortRead {
                    location,
                    actual: done as u64,
                });
            }
            Ok(n) => (done, interrupted) = (done + n, 0),
            Err(e) if crate::fs::retry_interrupted(&e, &mut interrupted) => {}
            Err(e) => return Err(crate::Error::io(location.device, "read", &e)),
        }
    }
    Ok(())
}

/// Reads `location` from `backend` into [`Bytes`]: `buffer` if it can hold
/// the extent (see [`Bytes::sized`]), else fresh ones.
pub(crate) fn read_bytes_into(
    backend: &dyn Backend,
    location: Location,
    buffer: Option<Bytes>,
) -> Result<Bytes> {
    let mut bytes = Bytes::sized(buffer, location.length as usize);
    let buf = bytes.make_mut().expect("sized bytes have one owner");
    backend.read_at(location, buf)?;
    Ok(bytes)
}
