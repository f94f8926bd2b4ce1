//! The durable store's metadata driver: runs the journal's plans on an [`Fs`],
//! group-commits journal records and rotates to a new checkpoint.
//!
//! # Group commit
//!
//! A committer encodes its frames into the shared buffer under the lock, then
//! either leads (no sync in flight: it lets stragglers append for at most
//! [`STRAGGLER_WAIT`] while the store says operations are on their way, takes the
//! whole buffer, writes and syncs it outside the lock, and publishes the new
//! durable sequence number) or waits on the condition variable for a leader whose
//! sync covers its frames. So concurrent writers share one `fdatasync`: 8 writers
//! pay about 0.13 journal syncs per write (BENCHMARKS.md). A failed write or sync poisons the journal: every
//! later commit fails with the same error (as RocksDB's background error), because
//! the store can no longer tell what is durable.
//!
//! # Rotation
//!
//! Once the active journal passes `journal_max_bytes`, the committer that notices
//! it (one at a time) flushes and syncs the active journal, starts the next one
//! under the lock (appends continue there at once), then writes a checkpoint of the
//! live state and switches `CURRENT` to it ([`plan::checkpoint`]). The checkpoint
//! is taken after the switch, so it contains every record of the journals it
//! replaces (each record is appended after its table commit).

use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile};
use crate::journal::plan::{self, FsOp, PlanMutants};
use crate::journal::{Entry, Image, encode_group};
use crate::sync::{Condvar, Mutex};
// std's Arc even under loom: file handles are shared, not synchronised through it.
use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The device number metadata I/O errors carry ([`Error::Io`]'s `device`).
pub const METADATA_DEVICE: u16 = u16::MAX;

/// Runs plans against a directory of an [`Fs`], keeping files open by name.
#[derive(Debug)]
pub(crate) struct Dir {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) path: PathBuf,
    open: Mutex<HashMap<String, Arc<dyn FsFile>>>,
}

impl Dir {
    pub(crate) fn new(fs: Arc<dyn Fs>, path: &Path) -> Self {
        Dir {
            fs,
            path: path.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        }
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

    /// Runs `ops` in order, stopping at the first error.
    pub(crate) fn run(&self, ops: Vec<FsOp>) -> Result<()> {
        for op in ops {
            self.run_one(op)?;
        }
        Ok(())
    }

    fn run_one(&self, op: FsOp) -> Result<()> {
        let fs = &*self.fs;
        match op {
            FsOp::Write {
                file,
                offset,
                bytes,
            } => self
                .file(&file, true)?
                .write_all_at(&bytes, offset)
                .map_err(|e| io_error("write", &e)),
            FsOp::Sync { file } => self
                .file(&file, false)?
                .sync_data()
                .map_err(|e| io_error("sync", &e)),
            FsOp::SyncDir => fs
                .sync_dir(&self.path)
                .map_err(|e| io_error("sync dir", &e)),
            FsOp::Rename { from, to } => {
                let mut open = self.open.lock();
                fs.rename(&self.path.join(&from), &self.path.join(&to))
                    .map_err(|e| io_error("rename", &e))?;
                if let Some(f) = open.remove(&from) {
                    open.insert(to, f);
                }
                Ok(())
            }
            FsOp::Remove { file } => {
                self.open.lock().remove(&file);
                match fs.remove(&self.path.join(&file)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(io_error("remove", &e))
                    }
                    _ => Ok(()),
                }
            }
            FsOp::Truncate { file, len } => self
                .file(&file, false)?
                .set_len(len)
                .map_err(|e| io_error("truncate", &e)),
        }
    }
}

/// The longest a group-commit leader waits for operations on their way to the
/// journal (between their data write and their append): about two syncs, so that
/// writers that started together share one journal sync.
pub(crate) const STRAGGLER_WAIT: Duration = Duration::from_micros(600);

/// Yields while `more()` says others are about to append, for at most `bound`.
fn wait_for_stragglers(more: impl Fn() -> bool, bound: Duration) {
    let until = Instant::now() + bound;
    // Bounded by the deadline.
    while more() && Instant::now() < until {
        crate::sync::thread::yield_now();
    }
}

/// The extent an [`Error::OutcomeUnknown`] of `entries` names (the machine that
/// asked relabels it with its own).
fn first_extent(entries: &[Entry]) -> crate::record::ExtentId {
    entries
        .iter()
        .find_map(|e| match e {
            Entry::Put(r) => Some(r.extent),
            _ => None,
        })
        .unwrap_or(crate::record::ExtentId(0))
}

pub(crate) fn io_error(op: &'static str, err: &std::io::Error) -> Error {
    Error::io(METADATA_DEVICE, op, err)
}

#[derive(Debug)]
struct Inner {
    /// The active journal's number and append offset.
    number: u64,
    len: u64,
    /// Entries appended but not yet written, with their sequence numbers. They are
    /// framed by the leader that writes them, with the durable mark of that write.
    buf: Vec<(u64, Entry)>,
    next_seq: u64,
    /// Every sequence number below this is durable.
    durable: u64,
    /// Every sequence number below this was handed to a write: after a failure,
    /// entries below it may or may not be durable, entries at or above it
    /// certainly are not.
    issued: u64,
    syncing: bool,
    rotating: bool,
    failed: Option<Error>,
    syncs: u64,
    commits: u64,
}

/// The journal of an open durable store.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: Dir,
    devices: u16,
    max_bytes: u64,
    inner: Mutex<Inner>,
    cond: Condvar,
    /// Held until [`release`](Self::release): the directory's exclusive lock.
    lock: Mutex<Box<dyn Any + Send + Sync>>,
}

/// Journal counters for [`StoreStats`](crate::StoreStats).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JournalStats {
    pub(crate) syncs: u64,
    pub(crate) commits: u64,
    pub(crate) bytes: u64,
    pub(crate) number: u64,
}

impl Journal {
    pub(crate) fn new(
        dir: Dir,
        lock: Box<dyn Any + Send + Sync>,
        devices: u16,
        max_bytes: u64,
        number: u64,
        len: u64,
        next_seq: u64,
    ) -> Result<Self> {
        Ok(Journal {
            dir,
            devices,
            max_bytes,
            inner: Mutex::new(Inner {
                number,
                len,
                buf: Vec::new(),
                next_seq,
                durable: next_seq,
                issued: next_seq,
                syncing: false,
                rotating: false,
                failed: None,
                syncs: 0,
                commits: 0,
            }),
            cond: Condvar::new(),
            lock: Mutex::new(lock),
        })
    }

    /// Appends `entries` and returns once they are durable (group commit).
    ///
    /// # Errors
    ///
    /// [`Error::OutcomeUnknown`] if the write or sync that carried the entries
    /// failed (they may or may not be durable); [`Error::Io`] (device
    /// [`METADATA_DEVICE`]) if the journal had failed before they were written
    /// (they certainly are not); [`Error::Shutdown`] once closed.
    pub(crate) fn commit(&self, entries: &[Entry]) -> Result<()> {
        self.commit_with(entries, || {}, || false)
    }

    /// [`commit`](Self::commit): `arrived` runs once the entries are appended (under
    /// the lock); a leader first lets stragglers append while `more()` says others
    /// are on their way (bounded, see `group_sync::STRAGGLER_WAIT`).
    pub(crate) fn commit_with(
        &self,
        entries: &[Entry],
        arrived: impl FnOnce(),
        more: impl Fn() -> bool,
    ) -> Result<()> {
        let mut g = self.inner.lock();
        if let Some(err) = &g.failed {
            arrived();
            return Err(err.clone());
        }
        for entry in entries {
            let seq = g.next_seq;
            g.buf.push((seq, *entry));
            g.next_seq += 1;
        }
        arrived();
        let target = g.next_seq;
        g.commits += 1;
        // Bounded: every pass either returns, leads one sync (which makes `target`
        // durable or fails the journal), or waits for the sync in flight, which
        // covers `target` or is followed by one that does.
        loop {
            if g.durable >= target {
                return Ok(());
            }
            if let Some(err) = &g.failed {
                return Err(if g.issued >= target {
                    Error::OutcomeUnknown {
                        op: "journal",
                        extent: first_extent(entries),
                        cause: err.to_string(),
                    }
                } else {
                    err.clone()
                });
            }
            if g.syncing {
                g = self.cond.wait(g);
                continue;
            }
            g.syncing = true;
            drop(g);
            wait_for_stragglers(&more, STRAGGLER_WAIT);
            g = self.inner.lock();
            let entries = std::mem::take(&mut g.buf);
            let (upto, offset, number) = (g.next_seq, g.len, g.number);
            g.issued = upto;
            drop(g);
            // The mark is `offset`: every byte before it was covered by a sync that
            // returned Ok, and this write is issued only now.
            let frames = encode_group(offset, &entries);
            let written = frames.len() as u64;
            let result = self.dir.run(plan::group_commit(number, offset, frames));
            g = self.inner.lock();
            g.syncing = false;
            g.syncs += 1;
            match result {
                Ok(()) => {
                    g.len = offset + written;
                    g.durable = upto;
                }
                Err(err) => g.failed = Some(err),
            }
            self.cond.notify_all();
        }
    }

    /// Whether the active journal is past its bound (a rotation is due).
    pub(crate) fn wants_rotation(&self) -> bool {
        let g = self.inner.lock();
        g.len > self.max_bytes && !g.rotating && g.failed.is_none()
    }

    /// Starts the next journal and checkpoints `image()` (taken after the switch).
    /// One rotation at a time; a concurrent call returns at once.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from any file operation; a failure before the new journal is
    /// in use poisons the journal, one after it leaves the old checkpoint current
    /// (still correct: it and the journals since are all kept).
    pub(crate) fn rotate(&self, image: impl FnOnce() -> Image) -> Result<()> {
        let mut g = self.inner.lock();
        if g.rotating || g.failed.is_some() {
            return Ok(());
        }
        g.rotating = true;
        // Bounded: the sync in flight finishes and notifies.
        while g.syncing {
            g = self.cond.wait(g);
        }
        let switched = self.switch_journal(&mut g);
        if let Err(err) = &switched {
            g.failed = Some(err.clone());
        }
        self.cond.notify_all();
        let number = g.number;
        drop(g);
        let result = switched.and_then(|()| {
            let image = image();
            let names = self
                .dir
                .fs
                .list(&self.dir.path)
                .map_err(|e| io_error("list", &e))?;
            self.dir.run(plan::checkpoint(
                number,
                self.devices,
                &image,
                &names,
                PlanMutants::default(),
            ))
        });
        self.inner.lock().rotating = false;
        // Wakes a `close` waiting for the rotation to end.
        self.cond.notify_all();
        result
    }

    /// Under the lock with no sync in flight: creates the next journal, then makes
    /// the buffered entries durable in the old one, closed by [`Entry::Rotated`]
    /// (so the marker is only ever durable once its successor is), and appends to
    /// the new one from now on.
    fn switch_journal(&self, g: &mut Inner) -> Result<()> {
        let next = g.number + 1;
        self.dir.run(plan::new_journal(next, self.devices))?;
        let mut entries = std::mem::take(&mut g.buf);
        entries.push((g.next_seq, Entry::Rotated { next }));
        g.next_seq += 1;
        g.issued = g.next_seq;
        let frames = encode_group(g.len, &entries);
        self.dir.run(plan::group_commit(g.number, g.len, frames))?;
        g.syncs += 1;
        g.durable = g.next_seq;
        g.number = next;
        g.len = crate::journal::HEADER_LEN as u64;
        Ok(())
    }

    /// Appends [`Entry::Closed`] (a clean close) unless the journal failed, then
    /// refuses every later commit with [`Error::Shutdown`]. Waits for a sync in
    /// flight first, so the marker is the last frame.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the marker's write or sync failed (the journal is then
    /// failed: nothing acknowledged is affected, a reopen recovers as after a
    /// crash).
    pub(crate) fn close(&self) -> Result<()> {
        let mut g = self.inner.lock();
        // Bounded: the sync in flight finishes and notifies.
        while g.syncing || g.rotating {
            g = self.cond.wait(g);
        }
        if g.failed.is_some() {
            return Ok(());
        }
        let mut entries = std::mem::take(&mut g.buf);
        entries.push((g.next_seq, Entry::Closed));
        g.next_seq += 1;
        g.issued = g.next_seq;
        let frames = encode_group(g.len, &entries);
        let written = frames.len() as u64;
        let result = self.dir.run(plan::group_commit(g.number, g.len, frames));
        g.failed = Some(Error::Shutdown);
        if result.is_ok() {
            g.len += written;
            g.durable = g.next_seq;
        }
        self.cond.notify_all();
        result
    }

    /// Drops every open metadata file and the directory lock: another store may
    /// open the directory from now on. Only after [`close`](Self::close).
    pub(crate) fn release(&self) {
        self.dir.open.lock().clear();
        *self.lock.lock() = Box::new(());
    }

    /// The sticky error of a failed journal write or sync, if any (a closed
    /// journal's is [`Error::Shutdown`], not a failure).
    pub(crate) fn failure(&self) -> Option<Error> {
        self.inner
            .lock()
            .failed
            .clone()
            .filter(|e| *e != Error::Shutdown)
    }

    pub(crate) fn stats(&self) -> JournalStats {
        let g = self.inner.lock();
        JournalStats {
            syncs: g.syncs,
            commits: g.commits,
            bytes: g.len,
            number: g.number,
        }
    }
}
