//! A backend over files of any [`Fs`](crate::fs::Fs): the durable store's device
//! files, and [`FileBackend`](super::FileBackend)'s (on [`StdFs`](crate::fs::StdFs)).
//!
//! # A failed sync is never trusted
//!
//! Linux reports a writeback error once per open file: after one `fdatasync` of a
//! file returned EIO (and the kernel may have dropped the dirty pages), the next
//! `fdatasync` of the same file, by another thread, returns `Ok` over the lost
//! bytes (PostgreSQL's "fsyncgate"). So each device file has a sync gate:
//!
//! * once a sync of the file failed, every later sync of it fails too, with the
//!   first failure (the file is poisoned until the store is reopened, when it is
//!   opened afresh and recovery decides what is durable);
//! * a sync that returned `Ok` is trusted only after every sync of the file that
//!   started before it returned has finished without failing: one of them may
//!   have been handed the error that covered this sync's bytes.
//!
//! The syncs themselves still run concurrently (a leader/follower group in front
//! of them measured slower, BENCHMARKS.md, durability); only their verdicts wait.

use super::Backend;
use crate::error::{Error, Result};
use crate::fs::FsFile;
use crate::record::Location;
use crate::sync::{Condvar, Mutex, RwLock};
use std::collections::BTreeSet;
// std's Arc even under loom: file handles are shared, not synchronised through it.
use std::sync::Arc;

/// One file per device through a [`Fs`](crate::fs::Fs), positioned I/O.
#[derive(Debug)]
pub(crate) struct DeviceFiles {
    /// Emptied by [`close`](Self::close): every later I/O fails with
    /// [`Error::Shutdown`]. Every I/O holds it (shared) for its whole call, so
    /// `close` waits for the I/O in flight: no write of this store lands after
    /// it returns, when another store may have the directory and have handed
    /// the location out again. No I/O takes it twice (a writer waiting would
    /// block the second read).
    files: RwLock<Vec<Arc<dyn FsFile>>>,
    devices: u16,
    gates: Vec<SyncGate>,
}

/// The sync verdicts of one device file, without I/O or waiting (see the module
/// docs): the store wraps it in a lock and a condition variable ([`SyncGate`]), the
/// emulator uses it as it is (its syncs never overlap).
#[derive(Debug, Default)]
pub(crate) struct SyncBook {
    /// The ticket of the next sync to start.
    next: u64,
    /// Tickets of the syncs running now.
    running: BTreeSet<u64>,
    /// The first failure: every later sync returns it.
    failed: Option<Error>,
    /// The `trust_sync_after_failure` mutant (emulator only): trust every sync
    /// that returned Ok, as the kernel's once-per-file report makes it look.
    pub(crate) trusting: bool,
}

/// What a sync that ended must do before its caller may be answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SyncEnd {
    /// Answer this.
    Verdict(Result<()>),
    /// Wait until [`SyncBook::verdict`] with this bound answers.
    Wait(u64),
}

impl SyncBook {
    /// A sync of the file starts: its ticket, or the failure that refuses it.
    ///
    /// # Errors
    ///
    /// The file's first sync failure, once there was one.
    pub(crate) fn begin(&mut self) -> Result<u64> {
        if let Some(err) = self.failed.as_ref().filter(|_| !self.trusting) {
            return Err(err.clone());
        }
        let ticket = self.next;
        self.next += 1;
        self.running.insert(ticket);
        Ok(ticket)
    }

    /// Sync `ticket` of `device`'s file returned `result`.
    pub(crate) fn end(&mut self, device: u16, ticket: u64, result: std::io::Result<()>) -> SyncEnd {
        self.running.remove(&ticket);
        if let Err(e) = result {
            let err = Error::Io {
                device,
                op: "sync",
                kind: e.kind(),
                message: format!(
                    "{e}; the file's unsynced writes may be lost, so every later sync of it fails too until the store is reopened"
                ),
            };
            // Later syncs are refused with an error of their own: not
            // retryable, as no retry can help before a reopen.
            self.failed.get_or_insert(Error::DeviceSyncFailed {
                device,
                cause: e.to_string(),
            });
            return SyncEnd::Verdict(Err(err));
        }
        if self.trusting {
            return SyncEnd::Verdict(Ok(()));
        }
        let started_before_return = self.next;
        match self.verdict(started_before_return) {
            Some(verdict) => SyncEnd::Verdict(verdict),
            None => SyncEnd::Wait(started_before_return),
        }
    }

    /// The verdict of a sync that returned Ok once every sync that started before
    /// it returned (tickets below `bound`) has finished: `None` while one runs.
    pub(crate) fn verdict(&self, bound: u64) -> Option<Result<()>> {
        if let Some(err) = &self.failed {
            return Some(Err(err.clone()));
        }
        let waiting = self.running.first().is_some_and(|&t| t < bound);
        (!waiting).then_some(Ok(()))
    }

    /// Whether a sync of the file failed.
    pub(crate) fn failed(&self) -> bool {
        self.failed.is_some()
    }
}

/// A [`SyncBook`] for threads: a sync's caller waits for the verdict.
#[derive(Debug)]
struct SyncGate {
    book: Mutex<SyncBook>,
    finished: Condvar,
}

impl Default for SyncGate {
    fn default() -> Self {
        SyncGate {
            book: Mutex::new(SyncBook::default()),
            finished: Condvar::new(),
        }
    }
}

impl SyncGate {
    /// Runs `sync` under the book's rules.
    fn sync(&self, device: u16, sync: impl FnOnce() -> std::io::Result<()>) -> Result<()> {
        let ticket = self.book.lock().begin()?;
        // A panicking file system's sync fails (the file is then poisoned as
        // after EIO: its bytes' fate is unknown), and still ends its ticket:
        // later syncs wait only for syncs that end.
        let result = crate::fs::unless_panicked(sync, || {
            std::io::Error::other("the file system panicked in a sync")
        });
        let mut book = self.book.lock();
        let end = book.end(device, ticket, result);
        self.finished.notify_all();
        match end {
            SyncEnd::Verdict(verdict) => verdict,
            SyncEnd::Wait(bound) => {
                // Bounded: only syncs that started before this one returned are
                // waited for, and each of them finishes once.
                loop {
                    if let Some(verdict) = book.verdict(bound) {
                        return verdict;
                    }
                    book = self.finished.wait(book);
                }
            }
        }
    }
}

impl DeviceFiles {
    /// A backend over one open file per device.
    pub(crate) fn new(files: Vec<Arc<dyn FsFile>>) -> Self {
        let devices = files.len() as u16;
        DeviceFiles {
            gates: (0..devices).map(|_| SyncGate::default()).collect(),
            files: RwLock::new(files),
            devices,
        }
    }

    /// Drops every file handle once the I/O in flight ended: later I/O fails
    /// with [`Error::Shutdown`].
    pub(crate) fn close(&self) {
        self.files.write().clear();
    }

    /// Whether a sync of `device`'s file failed (it stays failed until reopen).
    pub(crate) fn sync_failed(&self, device: u16) -> bool {
        self.gates
            .get(usize::from(device))
            .is_some_and(|g| g.book.lock().failed())
    }

    /// Runs `io` on `device`'s file under the shared hold of the files (see
    /// `files`).
    fn with_file<T>(&self, device: u16, io: impl FnOnce(&dyn FsFile) -> Result<T>) -> Result<T> {
        let files = self.files.read();
        if files.is_empty() && self.devices > 0 {
            return Err(Error::Shutdown);
        }
        let file = files.get(usize::from(device)).ok_or(Error::Io {
            device,
            op: "open",
            kind: std::io::ErrorKind::NotFound,
            message: "no such device".into(),
        })?;
        io(&**file)
    }
}

impl Backend for DeviceFiles {
    fn device_count(&self) -> u16 {
        self.devices
    }

    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
        self.with_file(location.device, |file| {
            crate::backend::read_exact_at(location, buf, |b, at| file.read_at(b, at))
        })
    }

    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
        self.with_file(location.device, |file| {
            (file.write_all_at(bytes, location.offset))
                .map_err(|e| Error::io(location.device, "write", &e))
        })
    }

    fn sync(&self, device: u16) -> Result<()> {
        let gate = self.gates.get(usize::from(device)).ok_or(Error::Io {
            device,
            op: "sync",
            kind: std::io::ErrorKind::NotFound,
            message: "no such device".into(),
        })?;
        self.with_file(device, |file| gate.sync(device, || file.sync_data()))
    }

    /// Only ever shrinks. Only free space is trimmed, and space is free only once
    /// the record that unreferenced it is durable, so a crash never finds a durable
    /// record past the end of its file.
    fn trim(&self, device: u16, length: u64) -> Result<()> {
        self.with_file(device, |file| {
            let current = file.len().map_err(|e| Error::io(device, "trim", &e))?;
            if current > length {
                file.set_len(length)
                    .map_err(|e| Error::io(device, "trim", &e))?;
            }
            Ok(())
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::io;

    fn failing() -> io::Result<()> {
        Err(io::Error::other("EIO"))
    }

    /// After one failed sync, a later sync whose own call succeeds (the kernel
    /// reported the error once, to the first caller) still fails.
    #[test]
    fn a_sync_after_a_failed_one_is_never_trusted() {
        let gate = SyncGate::default();
        assert!(gate.sync(3, || Ok(())).is_ok());
        let first = gate.sync(3, failing).unwrap_err();
        let later = gate.sync(3, || Ok(())).unwrap_err();
        assert!(matches!(
            first,
            Error::Io {
                device: 3,
                op: "sync",
                ..
            }
        ));
        // Every later one is refused, with an error no retry can help.
        assert!(
            matches!(later, Error::DeviceSyncFailed { device: 3, .. }),
            "{later}"
        );
        assert!(!later.is_retryable());
    }

    /// A sync that returns Ok while another sync that started before it is still
    /// running waits for that one's verdict, and fails if it failed: the error may
    /// have covered this sync's bytes.
    #[test]
    fn an_ok_sync_waits_for_an_overlapping_failure() {
        let gate = Arc::new(SyncGate::default());
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let slow = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                gate.sync(0, || {
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    failing()
                })
            })
        };
        entered_rx.recv().unwrap();
        let fast = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.sync(0, || Ok(())))
        };
        // Whatever the fast sync's timing, it cannot return Ok before the slow
        // one's verdict: it either waits for it or starts after it failed.
        release_tx.send(()).unwrap();
        assert!(slow.join().unwrap().is_err());
        assert!(fast.join().unwrap().is_err());
    }

    /// A file whose writes wait for the test's word: the write in flight when
    /// the store closes.
    #[derive(Debug)]
    struct Held {
        entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
        release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
        done: std::sync::atomic::AtomicBool,
    }

    impl FsFile for Held {
        fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
            Ok(0)
        }
        fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
            let entered = self.entered.lock().expect("not poisoned");
            entered.send(()).expect("the test waits for it");
            let release = self.release.lock().expect("not poisoned");
            release.recv().expect("the test releases it");
            // SeqCst: read by the test after `close` returned.
            self.done.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> io::Result<u64> {
            Ok(0)
        }
        fn set_len(&self, _: u64) -> io::Result<()> {
            Ok(())
        }
    }

    /// `close` returns only once the write in flight ended, and refuses every
    /// later one: no write of a closed store lands where a store opened after
    /// it may have put an acknowledged extent.
    #[test]
    fn close_waits_for_the_write_in_flight_and_refuses_later_ones() {
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let held = Arc::new(Held {
            entered: std::sync::Mutex::new(entered_tx),
            release: std::sync::Mutex::new(release_rx),
            done: std::sync::atomic::AtomicBool::new(false),
        });
        let files = Arc::new(DeviceFiles::new(vec![held.clone() as Arc<dyn FsFile>]));
        let at = Location::new(0, 0, 4);
        let writer = {
            let files = Arc::clone(&files);
            std::thread::spawn(move || files.write_at(at, b"7:3."))
        };
        entered.recv().unwrap();
        assert!(
            files.files.is_held(),
            "the write in flight holds the files: a close waits for it"
        );
        let closer = {
            let files = Arc::clone(&files);
            std::thread::spawn(move || files.close())
        };
        release.send(()).unwrap();
        closer.join().unwrap();
        assert!(
            held.done.load(std::sync::atomic::Ordering::SeqCst),
            "close returned before the write in flight ended"
        );
        assert!(writer.join().unwrap().is_ok());
        assert_eq!(files.write_at(at, b"7:4.").unwrap_err(), Error::Shutdown);
    }
}
