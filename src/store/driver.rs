//! The blocking driver: runs protocol machines to completion, performing their
//! I/O requests against the backend and the journal.
//!
//! A machine decides; the driver only performs what a [`Step`] asks (an I/O, a
//! wait on another load, a backoff) and feeds the result back. A backend panic is
//! contained at the I/O call (it becomes that request's I/O error), and a machine
//! whose driver unwinds is abandoned (what it holds is released).
//!
//! The driver also tells the journal's group commit which operations are on their
//! way to it: an operation counts from its first data write until its append (or
//! until its run ends without one), and a journal leader waits (bounded) while
//! any do.

use super::durable::METADATA_DEVICE;
use super::shared::{Shared, Steps};
use crate::backend::read_bytes_into;
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::protocol::{Core, IoRequest, IoResult, Machine, Step, Tally};
use crate::record::Location;
use crate::sync::Ordering;
use std::time::{Duration, Instant};

/// The most a run of slow reads counts (`Shared::slow_reads`): readahead turns
/// on after 4 slow reads in a row from nothing, off after 4 fast ones in a row
/// from the top.
pub(crate) const SLOW_READS_MAX: u64 = 8;
/// The default `readahead_min_read_us`, and the bound slow reads are counted
/// against when readahead runs whatever the device (see `Shared::note_read`).
pub(crate) const SLOW_READ: Duration = Duration::from_micros(50);
/// Reads this long or shorter time the device's latency (longer ones its
/// bandwidth too, such as merged reads).
const LATENCY_PROBE_MAX: u32 = 64 << 10;
/// The longest span one merged read covers.
pub(crate) const COALESCE_SPAN: u64 = 1 << 20;
/// The largest gap between two reads that one read still covers (read and
/// thrown away: cheaper than a second read's latency on any device worth
/// prefetching from).
pub(crate) const COALESCE_GAP: u64 = 64 << 10;

/// Groups reads (`(machine, location)`) into spans: per device, by offset, a
/// read joins the span before it if the gap is at most [`COALESCE_GAP`] and the
/// span stays within [`COALESCE_SPAN`].
fn coalesce(mut reads: Vec<(usize, Location)>) -> Vec<(Location, Vec<(usize, Location)>)> {
    reads.sort_by_key(|(_, l)| (l.device, l.offset));
    let mut spans: Vec<(Location, Vec<(usize, Location)>)> = Vec::new();
    for (i, l) in reads {
        if let Some((span, members)) = spans.last_mut()
            && span.device == l.device
            && l.offset >= span.offset
            && l.offset <= span.end() + COALESCE_GAP
            && l.end().max(span.end()) - span.offset <= COALESCE_SPAN
        {
            let end = l.end().max(span.end());
            span.length = (end - span.offset) as u32;
            members.push((i, l));
            continue;
        }
        spans.push((l, vec![(i, l)]));
    }
    spans
}

/// Releases what a machine holds if its driver unwinds mid-flight (a panicking
/// backend): otherwise reclamation would stall and waiters would hang.
struct AbandonOnDrop<'a, M: Machine> {
    op: M,
    core: &'a Core,
}

impl<M: Machine> Drop for AbandonOnDrop<'_, M> {
    fn drop(&mut self) {
        self.op.abandon(self.core);
    }
}

impl Shared {
    /// Runs `op` to completion, blocking on I/O, backoff and other loads. With
    /// `join_loads == false` a machine that would wait on another reader's load ends
    /// with `Ok(None)` instead (prefetch: that load fills the cache anyway).
    pub(crate) fn drive<M: Machine>(&self, op: M, join_loads: bool) -> Result<Option<M::Output>> {
        let mut guard = AbandonOnDrop {
            op,
            core: &self.core,
        };
        self.run(&mut guard.op, join_loads)
    }

    /// The driver loop. Bounded: every machine restarts at most `MAX_ATTEMPTS` (or
    /// its policy's limits) times, with one I/O, wait or backoff per step. A
    /// prefetch (`join_loads == false`) ends with [`Error::Shutdown`] at its next
    /// step once `Store::close` has begun (the caller's guard abandons it).
    fn run<M: Machine>(&self, op: &mut M, join_loads: bool) -> Result<Option<M::Output>> {
        self.run_counting(op, join_loads, &mut Steps::default())
    }

    /// [`run`](Self::run), counting the I/O, wait and backoff steps in `steps` (a
    /// read that took none was a cache hit).
    fn run_counting<M: Machine>(
        &self,
        op: &mut M,
        join_loads: bool,
        steps: &mut Steps,
    ) -> Result<Option<M::Output>> {
        let step = op.start(&self.core);
        self.run_from(op, step, join_loads, steps)
    }

    /// [`run_counting`](Self::run_counting) from `step`, the machine's answer to
    /// its start or to an I/O already performed.
    fn run_from<M: Machine>(
        &self,
        op: &mut M,
        mut step: Step<M::Output>,
        join_loads: bool,
        steps: &mut Steps,
    ) -> Result<Option<M::Output>> {
        let core = &self.core;
        // An operation that wrote but ends without journaling (an error, an abort,
        // an unwind) is not on its way to the journal any more.
        // A run nested in another's (a listener of a store's operation
        // using another store, or this one) keeps the outer run's mark
        // aside and puts it back when it ends.
        let _arrive = ArriveOnDrop(self, APPROACHING.with(|a| a.replace(0)));
        loop {
            match step {
                Step::Done(_) => {}
                Step::Io(_) => {
                    steps.any += 1;
                    steps.io += 1;
                }
                Step::Wait(_) | Step::Backoff(_) => steps.any += 1,
            }
            if let Some(location) = op.take_device_error() {
                self.device_error(location);
            }
            if !join_loads && !matches!(step, Step::Done(_)) && self.stopping() {
                return Err(Error::Shutdown);
            }
            step = match step {
                Step::Io(request) => {
                    let buffer = match request {
                        IoRequest::Read(_) => op.read_buffer(),
                        _ => None,
                    };
                    op.on_io(core, self.perform(request, buffer))
                }
                Step::Wait(_) if !join_loads => return Ok(None),
                Step::Wait(flight) => op.on_wait(core, flight.wait()),
                Step::Backoff(us) => {
                    // Real time: the blocking driver's backoff (the emulator's is virtual).
                    std::thread::sleep(Duration::from_micros(us));
                    op.on_backoff(core)
                }
                Step::Done(result) => return result.map(Some),
            };
        }
    }

    /// Runs `ops` (prefetch loads, which do not join other loads) together, and
    /// serves their first device reads with as few reads as it can: reads of
    /// one device that lie close together are merged into one read of the span
    /// (at most [`COALESCE_SPAN`], gaps of at most [`COALESCE_GAP`]), then each
    /// machine gets its own bytes and runs on alone. One read instead of several
    /// is what hides a device's per-read latency: OS readahead reads ahead in
    /// large chunks for the same reason. The protocol is unchanged: each machine
    /// checks its own bytes. A merged read that fails falls back to one read per
    /// machine, so an error is the failing extent's own.
    pub(crate) fn drive_coalesced<M: Machine>(
        &self,
        ops: Vec<M>,
    ) -> Vec<Result<Option<M::Output>>> {
        let mut guards: Vec<AbandonOnDrop<'_, M>> = (ops.into_iter())
            .map(|op| AbandonOnDrop {
                op,
                core: &self.core,
            })
            .collect();
        let first: Vec<Step<M::Output>> = (guards.iter_mut())
            .map(|g| g.op.start(&self.core))
            .collect();
        let reads: Vec<(usize, Location)> = (first.iter().enumerate())
            .filter_map(|(i, s)| match s {
                Step::Io(IoRequest::Read(l)) => Some((i, *l)),
                _ => None,
            })
            .collect();
        let mut answers: Vec<Option<IoResult>> = (0..guards.len()).map(|_| None).collect();
        for (span, members) in coalesce(reads) {
            // Not across a location retired as bad: a disk keeps failing
            // there, and each merged read would fail before its fallback.
            if members.len() < 2 || self.core.allocator.overlaps_bad(span) {
                continue;
            }
            let IoResult::Read(Ok(bytes)) = self.perform(IoRequest::Read(span), None) else {
                continue;
            };
            for (i, l) in members {
                let at = (l.offset - span.offset) as usize;
                let buffer = guards[i].op.read_buffer();
                let slice = Bytes::copied(buffer, &bytes[at..at + l.length as usize]);
                answers[i] = Some(IoResult::Read(Ok(slice)));
            }
        }
        (guards.iter_mut().zip(first).zip(answers))
            .map(|((g, first), answer)| {
                let step = match answer {
                    Some(answer) => g.op.on_io(&self.core, answer),
                    None => first,
                };
                let join = g.op.joins_loads();
                self.run_from(&mut g.op, step, join, &mut Steps::default())
            })
            .collect()
    }

    pub(super) fn drive_all<M: Machine>(&self, op: M) -> Result<M::Output> {
        self.drive(op, true)?.ok_or(Error::Internal {
            what: "a load was skipped while joining loads",
        })
    }

    /// Performs `request`, containing a backend panic: it becomes the I/O error of
    /// that request ([`Error::Io`], kind `Other`), so the machine takes its
    /// ordinary failure path (a write aborts, a read fails or retries) and no panic
    /// escapes to the caller or a worker.
    ///
    /// A read goes into `buffer` when it fits (`Machine::read_buffer`).
    fn perform(&self, request: IoRequest, buffer: Option<Bytes>) -> IoResult {
        let (device, op, reads) = match &request {
            IoRequest::Read(location) => (location.device, "read", true),
            IoRequest::GoodCopy(..) => (0, "good_copy", true),
            IoRequest::RewriteHeld(location) => (location.device, "write", false),
            IoRequest::Write(location, _) => (location.device, "write", false),
            IoRequest::Sync(device) => (*device, "sync", false),
            IoRequest::Journal(_) => (METADATA_DEVICE, "journal", false),
            IoRequest::SyncAndJournal(device, _) => (*device, "sync", false),
        };
        // A panic while records were handed to the journal may come after they
        // reached the disk: unknown, never "certainly not written" (which frees
        // the write's fresh location).
        let journaled = match &request {
            IoRequest::Journal(entries) => Some(crate::journal::Entry::first_extent(entries)),
            _ => None,
        };
        let call = std::panic::AssertUnwindSafe(|| self.perform_unguarded(request, buffer));
        match std::panic::catch_unwind(call) {
            Ok(result) => result,
            Err(payload) => {
                self.counters.backend_panics.bump();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let err = Error::Io {
                    device,
                    op,
                    kind: std::io::ErrorKind::Interrupted, // no media fault: no mark, no FPRE004
                    message: format!("the backend panicked: {message}"),
                };
                let err = match journaled {
                    Some(extent) => Error::unknown("journal", extent, err),
                    None => err,
                };
                if reads {
                    IoResult::Read(Err(err))
                } else {
                    IoResult::Done(Err(err))
                }
            }
        }
    }

    fn perform_unguarded(&self, request: IoRequest, buffer: Option<Bytes>) -> IoResult {
        let backend = &*self.backend;
        match request {
            IoRequest::Read(location) => {
                let started = Instant::now();
                let bytes = read_bytes_into(backend, location, buffer);
                if location.length <= LATENCY_PROBE_MAX {
                    self.note_read(started.elapsed());
                }
                IoResult::Read(bytes)
            }
            IoRequest::Write(location, bytes) => {
                // A data write is the first step of every operation that journals a
                // commit (write, batch, compaction, remap).
                self.approach_journal();
                IoResult::Done(backend.write_at(location, &bytes))
            }
            // Not group-committed here: concurrent `fdatasync`s of one file are
            // merged by the file system's own journal, and a leader/follower group
            // in front of them measured slower (BENCHMARKS.md, durability).
            IoRequest::Sync(device) => IoResult::Done(self.sync_device(device)),
            IoRequest::GoodCopy(id, generation) => IoResult::Read(
                backend
                    .good_copy(id, generation)
                    .ok_or(Error::Quarantined { extent: id }),
            ),
            IoRequest::RewriteHeld(location) => {
                let (own, journaled) = self.core.write_back.rewrite_at(
                    location,
                    // Best effort, as the device's rewrite: the reader reads
                    // again and finds out.
                    |location, bytes| {
                        let _ = backend.write_at(location, bytes);
                    },
                    &mut |wanted| self.read_back(wanted),
                );
                self.counters.inline_rewritten.add(own);
                self.counters.inline_read_back.add(journaled);
                IoResult::Done(Ok(()))
            }
            IoRequest::Journal(entries) => {
                let entries = self.core.overlaps.with_markers(entries);
                IoResult::Done(self.journal_commit(&entries))
            }
            IoRequest::SyncAndJournal(device, entries) => {
                let entries = self.core.overlaps.with_markers(entries);
                let (sync, journal) = self.sync_and_journal(device, &entries);
                IoResult::Both { sync, journal }
            }
        }
    }

    /// The journals' copies of the inline writes `wanted`
    /// (`journal::inline_data`), read from the store's files; best effort, as
    /// the rewrites they serve (none without a journal).
    pub(super) fn read_back(
        &self,
        wanted: &std::collections::BTreeSet<crate::protocol::Proposal>,
    ) -> std::collections::HashMap<crate::protocol::Proposal, (Location, crate::bytes::Bytes)> {
        let Some(journal) = &self.journal else {
            return Default::default();
        };
        let dir = journal.dir();
        let names = dir.fs.list(&dir.path).unwrap_or_default();
        crate::journal::inline_data(&names, &mut super::open::MetaDir::new(dir), wanted)
    }

    /// Syncs the devices of overlapped writes whose data's sync has not
    /// finished, and of those where one failed (whose sync then fails too):
    /// an image read now holds their proposals as plain records, as a
    /// checkpoint's does (see `plan::checkpoint`).
    pub(super) fn sync_overlapped_devices(&self) -> Result<()> {
        (self.core.overlaps.devices(true).into_iter()).try_for_each(|d| self.sync_device(d))
    }

    /// Syncs `device` through the backend, keeping the inline writes held for
    /// write-back in step (`Core::after_device_sync`).
    pub(super) fn sync_device(&self, device: u16) -> Result<()> {
        let mark = self.core.device_sync_mark();
        let result = self.backend.sync(device);
        let failed = result.is_err()
            && (self.device_files.as_ref()).is_some_and(|files| files.sync_failed(device));
        let (own, journaled) = self.core.after_device_sync(
            device,
            mark,
            result.is_ok(),
            failed,
            |location, bytes| {
                // Best effort: a write that fails leaves the extent to the verifier
                // until the reopen writes it back from the journal.
                let _ = self.backend.write_at(location, bytes);
            },
            &mut |wanted| self.read_back(wanted),
        );
        self.counters.inline_rewritten.add(own);
        self.counters.inline_read_back.add(journaled);
        result
    }

    /// Counts one small read as slow or fast (see `Shared::slow_reads`).
    fn note_read(&self, took: Duration) {
        // Relaxed: a hint; two readers racing lose one step.
        let old = self.slow_reads.load(Ordering::Relaxed);
        let bound = match self.readahead_min_read.is_zero() {
            true => SLOW_READ,
            false => self.readahead_min_read,
        };
        let new = if took >= bound {
            (old + 1).min(SLOW_READS_MAX)
        } else {
            old.saturating_sub(1)
        };
        self.slow_reads.store(new, Ordering::Relaxed);
    }

    /// Whether device reads take long enough for readahead to hide them: most
    /// recent small reads took at least `readahead_min_read_us` (50 µs by
    /// default). A count, not an average: one stall of a fast device must not
    /// turn readahead on, and a readahead that serves every read leaves the
    /// reader few small reads of its own to correct an average with. Nothing
    /// measured yet counts as fast: a scan's first reads are its own and
    /// measure the device. Handing a load to a worker and finding it cached
    /// costs a reader about 8 µs per 16 KiB extent here (BENCHMARKS.md, "Cold
    /// scans"); against reads the page cache answers in 10 µs, readahead made a
    /// cold scan 1.5× slower, against a 200 µs device 6× faster. OS readahead
    /// needs no such switch: its reads are its own, not a thread handoff.
    pub(crate) fn readahead_pays(&self) -> bool {
        self.readahead_min_read.is_zero() || self.coalescing_pays()
    }

    /// Whether a prefetch worker should take every queued hint at once and merge
    /// their reads: only while the device's reads are slow (measured as for
    /// [`readahead_pays`](Self::readahead_pays), against 50 µs when readahead is
    /// told to run whatever the device). Against a fast device one worker's
    /// batch would run the loads one after another while the other worker idles:
    /// a synthetic scan over memory went from about 91 % to 60 % served from
    /// prefetch.
    pub(crate) fn coalescing_pays(&self) -> bool {
        // Relaxed: a hint.
        self.slow_reads.load(Ordering::Relaxed) >= SLOW_READS_MAX / 2
    }

    /// This thread's operation wrote data and will journal a commit next.
    fn approach_journal(&self) {
        let me = std::ptr::from_ref(self).addr();
        if self.journal.is_some() && APPROACHING.with(|a| a.replace(me)) != me {
            // Relaxed: a hint (see `journal_commit`).
            self.approaching_journal.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// This thread's operation appended its records (or ended without doing so).
    fn arrive_at_journal(&self) {
        let me = std::ptr::from_ref(self).addr();
        if APPROACHING.with(|a| a.get()) == me {
            APPROACHING.with(|a| a.set(0));
            // Relaxed: a hint (see `journal_commit`).
            self.approaching_journal.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Makes `entries` durable (no-op in memory); a rotation due meanwhile is
    /// handed to the checkpointer.
    fn journal_commit(&self, entries: &[crate::journal::Entry]) -> Result<()> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        // A leader waits (bounded) while other operations are between their data
        // write and their append: they join its sync instead of needing the next.
        let result = journal.commit_with(
            entries,
            || self.arrive_at_journal(),
            // Relaxed: a hint for how long the leader waits, never for correctness.
            || self.approaching_journal.load(Ordering::Relaxed) > 0,
        );
        // The commit may have released the metadata reserve (a full disk).
        self.core.set_space_low(journal.space_low());
        if result.is_ok() {
            self.core.retire_behind_markers(entries);
        }
        result
    }

    /// Syncs `device` while `entries` go to the journal: they are appended
    /// first, so that a group commit led meanwhile (by another operation, or by
    /// this one once its sync is done) carries them, then the sync runs, then
    /// this waits for them. Each part's result.
    fn sync_and_journal(
        &self,
        device: u16,
        entries: &[crate::journal::Entry],
    ) -> (Result<()>, Result<()>) {
        let Some(journal) = &self.journal else {
            return (self.sync_device(device), Ok(()));
        };
        let appended = journal.append_now(entries, || self.arrive_at_journal());
        // A panicking backend (`perform` answers it) still lets the entries
        // appended become durable and the locations behind their markers
        // retire, which nothing else would do.
        let sync =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.sync_device(device)));
        let committed = appended.and_then(|target| {
            journal.wait(
                target,
                crate::journal::Entry::first_extent(entries),
                // Relaxed: as in `journal_commit`.
                || self.approaching_journal.load(Ordering::Relaxed) > 0,
            )
        });
        self.core.set_space_low(journal.space_low());
        if committed.is_ok() {
            self.core.retire_behind_markers(entries);
        }
        match sync {
            Ok(sync) => (sync, committed),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Runs a session to completion and adds its tally to the counters (also
    /// when it fails). Abandoned if the backend unwinds.
    pub(super) fn session<M: Machine>(&self, op: M, tally: fn(&M) -> Tally) -> Result<M::Output> {
        self.session_counting(op, tally, &mut Steps::default())
    }

    pub(super) fn session_counting<M: Machine>(
        &self,
        op: M,
        tally: fn(&M) -> Tally,
        steps: &mut Steps,
    ) -> Result<M::Output> {
        let mut guard = AbandonOnDrop {
            op,
            core: &self.core,
        };
        let result = self.run_counting(&mut guard.op, true, steps).and_then(|o| {
            o.ok_or(Error::Internal {
                what: "a session skipped a load",
            })
        });
        let tally = tally(&guard.op);
        self.counters.add_tally(tally);
        #[cfg(feature = "tracing")]
        trace_tally(&tally);
        result
    }

    /// Records one device error (one per verification episode) and degrades the
    /// device once the policy's threshold is reached within its window.
    fn device_error(&self, location: Location) {
        self.counters.device_errors.bump();
        let now_ms = self.started.elapsed().as_millis() as u64;
        if let Some(entry) = self.core.charge_device_error(location, now_ms)
            && let Some(journal) = &self.journal
        {
            let _ = journal.commit(&[entry]);
        }
    }
}

/// The slow paths a session took, as `tracing` events.
#[cfg(feature = "tracing")]
fn trace_tally(t: &Tally) {
    if t.retries > 0 {
        tracing::debug!(
            retries = t.retries,
            transient = t.verify_transient,
            "re-read a stable version"
        );
    }
    if t.fpre004 > 0 {
        tracing::warn!(
            fpre004 = t.fpre004,
            "persistent fault: retry limit exceeded"
        );
    }
    if t.quarantines > 0 {
        tracing::warn!(quarantines = t.quarantines, "extent quarantined");
    }
    if t.remaps > 0 {
        tracing::info!(
            remaps = t.remaps,
            "quarantined extent remapped from a good copy"
        );
    }
    if t.remap_failed > 0 {
        tracing::warn!(
            remap_failed = t.remap_failed,
            "no good copy: extent stays quarantined"
        );
    }
}

thread_local! {
    /// The store (its `Shared`'s address, an identity only, never followed)
    /// in whose `approaching_journal` this thread's current operation counts;
    /// 0: none. An address, not a flag: a listener running inside one
    /// store's operation may run another store's, whose end must not take
    /// the first one's count off (it would leave the first counted for
    /// good, and wrap the second's below zero).
    static APPROACHING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Takes this thread's operation off `approaching_journal` when its run ends,
/// and puts back the mark of the run it was nested in.
struct ArriveOnDrop<'a>(&'a Shared, usize);

impl Drop for ArriveOnDrop<'_> {
    fn drop(&mut self) {
        self.0.arrive_at_journal();
        APPROACHING.with(|a| a.set(self.1));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::backend::{Backend, MemBackend};
    use crate::cache::Priority;
    use crate::protocol::ReadOp;
    use crate::record::ExtentId;
    use crate::{Store, StoreConfig};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    fn at(device: u16, offset: u64, length: u32) -> Location {
        Location::new(device, offset, length)
    }

    #[test]
    fn reads_merge_per_device_across_small_gaps_within_the_span_bound() {
        let reads = vec![
            (0, at(0, 8192, 4096)),
            (1, at(1, 0, 4096)),
            (2, at(0, 0, 4096)),
            // A gap of exactly the bound still joins.
            (3, at(0, 12288 + COALESCE_GAP, 4096)),
            // Past the span bound: a new span.
            (4, at(0, COALESCE_SPAN, 4096)),
        ];
        let spans = coalesce(reads);
        let summary: Vec<(Location, Vec<usize>)> = (spans.into_iter())
            .map(|(span, members)| (span, members.into_iter().map(|(i, _)| i).collect()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (at(0, 0, (16384 + COALESCE_GAP) as u32), vec![2, 0, 3]),
                (at(0, COALESCE_SPAN, 4096), vec![4]),
                (at(1, 0, 4096), vec![1]),
            ]
        );
    }

    /// Memory that counts its reads.
    #[derive(Debug)]
    struct Counting {
        inner: MemBackend,
        reads: Arc<AtomicU64>,
    }

    impl Backend for Counting {
        fn device_count(&self) -> u16 {
            self.inner.device_count()
        }
        fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
            // Relaxed: a counter read after the loads returned.
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.read_at(location, buf)
        }
        fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
            self.inner.write_at(location, bytes)
        }
        fn sync(&self, device: u16) -> Result<()> {
            self.inner.sync(device)
        }
    }

    /// Extent `id`'s bytes at generation 1, `base + 10 * id` long: extent and
    /// generation in the first 16 bytes.
    fn value_of(id: u64, base: usize) -> Vec<u8> {
        let mut v = vec![id as u8; base + id as usize * 10];
        v[..8].copy_from_slice(&id.to_le_bytes());
        v[8..16].copy_from_slice(&1u64.to_le_bytes());
        v
    }

    /// A store of one device without prefetch workers, extents `0..extents`
    /// written once with `value`.
    fn one_device_store(
        backend: impl Backend + 'static,
        extents: u64,
        value: impl Fn(u64) -> Vec<u8>,
    ) -> Store {
        let config = StoreConfig::builder()
            .devices(1)
            .prefetch_workers(0)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Store::new(backend, config).unwrap_or_else(|e| panic!("{e}"));
        for id in 0..extents {
            store
                .write(ExtentId(id), &value(id))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        store
    }

    /// [`one_device_store`] over memory that counts its reads: the store and
    /// the count.
    fn counting_store(extents: u64, value: impl Fn(u64) -> Vec<u8>) -> (Store, Arc<AtomicU64>) {
        let reads = Arc::new(AtomicU64::new(0));
        let backend = Counting {
            inner: MemBackend::new(1),
            reads: Arc::clone(&reads),
        };
        (one_device_store(backend, extents, value), reads)
    }

    #[test]
    fn loads_of_extents_that_lie_together_take_one_device_read_and_check_each() {
        let value = |id: u64| value_of(id, 3000);
        let (store, reads) = counting_store(16, value);
        // Damage one extent's bytes: its own load fails its check, the others
        // still fill.
        let bad = store
            .snapshot(ExtentId(5))
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .shared
            .backend
            .write_at(bad.location(), &vec![0xee; bad.location().length as usize])
            .unwrap_or_else(|e| panic!("{e}"));
        // Relaxed: no load runs.
        let before = reads.load(Ordering::Relaxed);
        let loads: Vec<ReadOp> = (0..16)
            .map(|id| ReadOp::new(ExtentId(id), Priority::Prefetch))
            .collect();
        let results = store.shared.drive_coalesced(loads);
        // Relaxed: as above.
        let merged = reads.load(Ordering::Relaxed) - before;
        assert!(
            results
                .iter()
                .enumerate()
                .all(|(id, r)| r.is_ok() || id == 5)
        );
        // One merged read, then the damaged extent's own retries (the ladder
        // re-reads it alone).
        assert!((1..16).contains(&merged), "{merged} device reads");
        for id in (0..16).filter(|&id| id != 5) {
            let (generation, bytes) = store
                .shared
                .core
                .cache
                .peek(ExtentId(id))
                .unwrap_or_else(|| panic!("extent {id} cached"));
            assert_eq!(generation, 1);
            assert_eq!(&bytes[..], value(id).as_slice(), "extent {id}");
        }
        assert!(store.shared.core.cache.peek(ExtentId(5)).is_none());
    }

    /// Reads do not merge across a location retired as bad (a disk keeps
    /// failing there): the loads of its neighbours read alone.
    #[test]
    fn loads_do_not_merge_across_a_bad_location() {
        let value = |id: u64| value_of(id, 3000);
        let (store, reads) = counting_store(16, value);
        // Extent 5's location is free and bad now, between its neighbours.
        let bad = (store.snapshot(ExtentId(5)))
            .unwrap_or_else(|e| panic!("{e}"))
            .location();
        store.delete(ExtentId(5)).unwrap_or_else(|e| panic!("{e}"));
        store.shared.core.allocator.mark_bad(bad);
        // Relaxed: no load runs.
        let before = reads.load(Ordering::Relaxed);
        let ids = [3, 4, 6, 7];
        let loads: Vec<ReadOp> = (ids.iter())
            .map(|&id| ReadOp::new(ExtentId(id), Priority::Prefetch))
            .collect();
        let results = store.shared.drive_coalesced(loads);
        assert!(results.iter().all(Result::is_ok));
        // Relaxed: as above.
        assert_eq!(reads.load(Ordering::Relaxed) - before, 4, "one read each");
        // Without the bad location they merge.
        let more: Vec<ReadOp> = (8..12)
            .map(|id| ReadOp::new(ExtentId(id), Priority::Prefetch))
            .collect();
        let before = reads.load(Ordering::Relaxed);
        assert!(store.shared.drive_coalesced(more).iter().all(Result::is_ok));
        assert_eq!(reads.load(Ordering::Relaxed) - before, 1, "one merged read");
    }

    #[test]
    fn prefetch_loads_read_into_the_buffers_their_hints_brought() {
        let value = |id: u64| value_of(id, 2000);
        let store = one_device_store(MemBackend::new(1), 10, value);
        let len = |id: u64| value(id).len();
        // Extents 0..8 lie together (one merged read, copied out into each
        // buffer); extent 8's buffer is too small (a fresh allocation).
        let buffers: Vec<Bytes> = (0..9)
            .map(|id| Bytes::with_capacity(if id == 8 { 16 } else { len(id) }))
            .collect();
        let at: Vec<*const u8> = buffers.iter().map(|b| b.as_ptr()).collect();
        let loads: Vec<ReadOp> = (buffers.into_iter().enumerate())
            .map(|(id, b)| {
                ReadOp::new(ExtentId(id as u64), Priority::Prefetch).with_buffer(Some(b))
            })
            .collect();
        assert!(
            store
                .shared
                .drive_coalesced(loads)
                .iter()
                .all(|r| r.is_ok())
        );
        // Extent 9 alone: its own device read.
        let alone = Bytes::with_capacity(len(9));
        let alone_at = alone.as_ptr();
        let op = ReadOp::new(ExtentId(9), Priority::Prefetch).with_buffer(Some(alone));
        assert!(store.shared.drive(op, false).is_ok());
        for id in 0..10u64 {
            let (generation, bytes) = (store.shared.core.cache)
                .peek(ExtentId(id))
                .unwrap_or_else(|| panic!("extent {id} cached"));
            assert_eq!(
                (generation, &bytes[..]),
                (1, value(id).as_slice()),
                "extent {id}"
            );
            let expected = match id {
                9 => alone_at,
                _ => at[id as usize],
            };
            assert_eq!(bytes.as_ptr() == expected, id != 8, "extent {id}'s buffer");
        }
    }
}

#[cfg(all(test, not(loom)))]
mod approaching_tests {
    use super::*;
    use crate::{Store, StoreConfig};

    /// A run of one store nested in another's (a listener of the first
    /// store's operation using the second) neither takes the first one's
    /// count off `approaching_journal` nor leaves its own behind: each store's
    /// count comes back to zero once its own operations end. With one flag
    /// for the thread, the nested run's end took it off the wrong store,
    /// leaving the first counted for good (every group commit then waited
    /// out its straggler bound) and the second below zero.
    #[test]
    fn a_nested_run_of_another_store_leaves_each_store_s_count_to_its_own_operations() {
        let (da, db) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let a = Store::open(da.path(), StoreConfig::default()).expect("open a");
        let b = Store::open(db.path(), StoreConfig::default()).expect("open b");
        let count = |s: &Store| s.shared.approaching_journal.load(Ordering::Relaxed);
        {
            // A's run wrote data and is on its way to the journal…
            let _outer = ArriveOnDrop(&a.shared, APPROACHING.with(|x| x.replace(0)));
            a.shared.approach_journal();
            {
                // …when a run of B (a listener's) writes and ends.
                let _inner = ArriveOnDrop(&b.shared, APPROACHING.with(|x| x.replace(0)));
                b.shared.approach_journal();
                assert_eq!((count(&a), count(&b)), (1, 1));
            }
            assert_eq!((count(&a), count(&b)), (1, 0), "B's end took B's count");
            // A's run goes on to its journal append.
            a.shared.arrive_at_journal();
            assert_eq!(count(&a), 0);
        }
        assert_eq!((count(&a), count(&b)), (0, 0));
    }
}
