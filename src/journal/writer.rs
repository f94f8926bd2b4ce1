//! The journal writer, without I/O: group commit, rotation, close and failure.
//!
//! Every decision about the journal is made here, once: which entries one write
//! carries and with which durable mark, when a rotation starts and in which order
//! its files change, when an entry counts as durable (its acknowledgement), what a
//! failure means for every entry (certainly not written, or unknown), and what is
//! refused afterwards. A driver only moves bytes and time: it runs the [`FsOp`]
//! plans the writer hands out, one write at a time, and reports how each ended.
//! The blocking store runs it under a mutex with threads as leaders and followers
//! (`store::durable`); the emulator runs it in virtual time, one plan step per
//! event, with power cuts between any two (`sim::meta`). So the crash sweep tests
//! the code engines run.
//!
//! # The protocol
//!
//! * [`append`](Writer::append) buffers entries and returns the sequence number
//!   they are durable at; [`status`](Writer::status) says whether that happened.
//! * [`next_write`](Writer::next_write) hands out the next plan when none is in
//!   flight: the buffered entries framed with the length known durable
//!   (`plan::group_commit`), or, once the active journal passed its bound, the
//!   switch to the next journal (`plan::new_journal`, then the old journal's last
//!   write ending with [`Entry::Rotated`]).
//! * [`complete`](Writer::complete) takes the plan's outcome. After a switch the
//!   driver writes the checkpoint the writer plans ([`checkpoint`](Writer::checkpoint),
//!   from the live image taken *after* the switch) and reports it
//!   ([`checkpoint_done`](Writer::checkpoint_done)); group commits go on in the new
//!   journal meanwhile.
//! * A failed group commit fails the journal for good: every entry handed to that
//!   write or later is [`Error::OutcomeUnknown`], every entry appended afterwards is
//!   refused with the failure (certainly not written). A failed checkpoint only
//!   ends the rotation: the old checkpoint and the journals since stay current.
//!   [`MAX_FAILED_CHECKPOINTS`] in a row fail the journal as a failed write
//!   does: nothing would retire the journals then (a device whose sync failed
//!   fails every checkpoint until a reopen), which would grow, disk and the
//!   memory of the next open's recovery alike, at the rate of the writes.
//! * [`close`](Writer::close) plans the close marker; afterwards every append is
//!   refused with [`Error::Shutdown`].
//!
//! # A full disk
//!
//! A reserve file ([`files::RESERVE`]) holds space for the metadata. When a write
//! step of a group commit, a switch, the close marker or a checkpoint finds the
//! file system full ([`Error::DiskFull`]), the writer releases the reserve and
//! hands out the same plan again, behind the removal: rewriting the same bytes at
//! the same offsets changes nothing a reader could see, and no sync ran in
//! between. It is then [`space_low`](Writer::space_low): the operations refuse new
//! writes ([`Error::DiskFull`], certainly not done) so that deletes, commits,
//! checkpoints and `close` keep the room, and before each write the driver tries
//! to [restore](Writer::restore_reserve) the reserve; once that succeeds (deletes
//! and reclamation freed space) writes go on, without a reopen. A full disk at a
//! sync is not retried: a failed sync is never trusted.
//!
//! Bounds: one plan in flight; the buffer holds what was appended while the plan in
//! flight ran (the callers' own entries, so bounded by the operations in flight).

use super::frame::encode_group_into;
pub(crate) use super::plan::CheckpointPlanner;
use super::plan::{self, FsOp, PlanMutants};
use super::{Entry, encode_group, files};
use crate::error::{Error, Result};
use crate::record::ExtentId;

mod cut;
mod reserve;
mod rotation;

/// Checkpoints failing in a row that fail the journal (see the module docs).
/// Two: after one failure (a checkpoint file's write met EIO once) the next
/// rotation tries again, and recovery meanwhile replays about twice what one
/// rotation leaves, as `journal_max_bytes` documents.
pub(crate) const MAX_FAILED_CHECKPOINTS: u32 = 2;

/// The most zeros one group commit writes ahead of the appends: the group
/// commit that allocates waits for its zeros' pages, 256 KiB here against
/// 1 MiB before, which cost a write 10 ms each while a checkpoint of 10 M
/// records competed for fresh memory (`benches/scale.rs`). Its file-size
/// update is then paid once per 256 KiB of journal, about 2 800 small inline
/// writes.
const ALLOCATE_MAX: u64 = 256 << 10;

/// The largest group-commit buffer kept for the next group (idle between
/// groups): a fresh 290 KiB for each group of 8 inline 4 KiB writes and its
/// zeros cost about 5 % of the store's CPU in page faults.
const SPARE_MAX: usize = 1 << 20;

/// The write a driver is running.
#[derive(Debug, Clone)]
struct InFlight {
    /// Entries below this sequence number are durable once it succeeds.
    upto: u64,
    /// Bytes it writes to the active journal, frames then `zeros` (0 for a
    /// switch: they go to the old one).
    written: u64,
    /// Of which zeros allocating space ahead.
    zeros: u64,
    /// The journal a switch starts.
    switch_to: Option<u64>,
    /// Its plan, kept to run again behind the reserve's release.
    ops: Vec<FsOp>,
    /// Whether it has been handed out and not yet completed.
    running: bool,
}

/// Journal counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriterStats {
    /// Group commits (and switches) that completed.
    pub(crate) syncs: u64,
    /// Appends.
    pub(crate) commits: u64,
    /// Checkpoints that completed.
    pub(crate) checkpoints: u64,
    /// Bytes of the active journal.
    pub(crate) bytes: u64,
    /// The active journal's number.
    pub(crate) number: u64,
    /// Times the metadata reserve was released on a full disk.
    pub(crate) reserve_releases: u64,
    /// A rotation's checkpoint is under way.
    pub(crate) rotating: bool,
}

/// The journal writer of one open store (see the module docs).
#[derive(Debug)]
pub(crate) struct Writer {
    devices: u16,
    max_bytes: u64,
    /// The active journal and the length of it known durable (appends go there).
    number: u64,
    len: u64,
    /// Bytes of the active journal written (frames, then zeros), at least `len`:
    /// appends below it overwrite allocated space (see `plan::group_commit`).
    allocated: u64,
    next_seq: u64,
    buf: Vec<(u64, Entry)>,
    /// Appends (commits) in `buf`, and in the last group commit taken: a leader
    /// waits (bounded, see `store::durable`) for about as many as last time.
    buf_commits: usize,
    last_group: usize,
    /// Every sequence number below this is durable.
    durable: u64,
    /// Every sequence number below this was handed to a write.
    issued: u64,
    in_flight: Option<InFlight>,
    /// From a switch until its checkpoint ends: no second rotation starts.
    rotating: bool,
    /// A driver's leader is gathering stragglers before it takes the next write
    /// ([`gather`](Self::gather)): others wait for that write instead of leading.
    gathering: bool,
    /// The length of the journal a switch in flight creates, and of the
    /// space it holds (more, if it adopts the recycled journal).
    next_len: u64,
    next_allocated: u64,
    /// Bytes allocated of the recycled journal ([`files::RECYCLED`]), if the
    /// directory holds one: the next switch writes over it (if `recycle`).
    recycled: Option<u64>,
    /// Bytes allocated of the journal the last switch retired: the recycled
    /// one once the checkpoint that retires it renamed it so.
    retired: u64,
    /// Whether checkpoints keep the journal they retire (see `plan::checkpoint`).
    recycle: bool,
    failed: Option<Error>,
    /// Checkpoints that failed since the last one that succeeded.
    failed_checkpoints: u32,
    closed: bool,
    mutants: PlanMutants,
    stats: WriterStats,
    /// Bytes of the metadata reserve, and whether the file holds them now.
    reserve_bytes: u64,
    reserve_held: bool,
    /// A restore's plan is running: no second one starts (they would race on
    /// the one file).
    restoring: bool,
    /// A plan met a full disk while a restore was writing the reserve, with
    /// nothing to release: it runs again once the restore ended (see
    /// [`release_reserve_for`](Self::release_reserve_for)), and no restore
    /// starts before it did.
    behind_restore: bool,
    /// Plans handed out behind the reserve's removal whose outcome is not
    /// reported yet: no restore starts meanwhile, or the removal, run after
    /// it, would take the reserve it made while the writer counts it held.
    releases_running: u32,
    /// The last group commit's buffer, empty, for the next (see [`SPARE_MAX`]).
    spare: Vec<u8>,
    /// Cuts holding writes back (`cut.rs`).
    cuts: u32,
}

impl Writer {
    /// The writer of a store whose journal `number` is durable up to `len` bytes,
    /// next appending sequence number `next_seq` (what recovery and the reopen plan
    /// left); it rotates past `max_bytes`.
    pub(crate) fn new(devices: u16, max_bytes: u64, number: u64, len: u64, next_seq: u64) -> Self {
        Writer {
            devices,
            max_bytes,
            number,
            len,
            allocated: len,
            next_seq,
            buf: Vec::new(),
            buf_commits: 0,
            last_group: 0,
            durable: next_seq,
            issued: next_seq,
            in_flight: None,
            rotating: false,
            gathering: false,
            next_len: 0,
            next_allocated: 0,
            recycled: None,
            retired: 0,
            recycle: true,
            failed: None,
            failed_checkpoints: 0,
            closed: false,
            mutants: PlanMutants::default(),
            stats: WriterStats::default(),
            reserve_bytes: 0,
            reserve_held: false,
            restoring: false,
            behind_restore: false,
            releases_running: 0,
            spare: Vec::new(),
            cuts: 0,
        }
    }

    /// With the emulator's plan mutants.
    pub(crate) fn with_mutants(mut self, mutants: PlanMutants) -> Self {
        self.mutants = mutants;
        self
    }

    /// Buffers `entries`; returns the sequence number below which they all are once
    /// durable (pass it to [`status`](Self::status)).
    ///
    /// # Errors
    ///
    /// [`Error::JournalFailed`] (naming the failure) if the journal failed,
    /// [`Error::Shutdown`] once closed: the entries are certainly not written.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<u64> {
        if self.closed {
            return Err(Error::Shutdown);
        }
        if let Some(err) = &self.failed {
            return Err(Error::journal_failed(err));
        }
        for entry in entries {
            self.buf.push((self.next_seq, entry.clone()));
            self.next_seq += 1;
        }
        self.stats.commits += 1;
        self.buf_commits += 1;
        Ok(self.next_seq)
    }

    /// Whether the entries appended up to `target` are durable (`Some(Ok)`), will
    /// never be acknowledged (`Some(Err)`: [`Error::OutcomeUnknown`] if they were
    /// handed to a write, else [`Error::JournalFailed`]), or are still on their
    /// way (`None`).
    pub(crate) fn status(&self, target: u64, extent: ExtentId) -> Option<Result<()>> {
        if self.durable >= target {
            return Some(Ok(()));
        }
        if self.closed && self.failed.is_none() && self.in_flight.is_none() {
            return Some(Err(Error::Shutdown));
        }
        let err = self.failed.as_ref()?;
        Some(Err(if self.issued >= target {
            Error::OutcomeUnknown {
                op: "journal",
                extent,
                cause: err.to_string(),
            }
        } else {
            Error::journal_failed(err)
        }))
    }

    /// Whether the active journal's number is `number` and a write to it is the
    /// one in flight (a group commit, not a switch): what the emulator's
    /// `ack_before_sync` mutant looks for.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn group_commit_in_flight(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.running && f.switch_to.is_none())
    }

    /// Appends buffered for the next group commit, and appends the last one
    /// carried.
    pub(crate) fn group_sizes(&self) -> (usize, usize) {
        (self.buf_commits, self.last_group)
    }

    /// Whether group commits wait: for a cut ([`hold_cut`](Self::hold_cut):
    /// a backup reading its image), or for the rotation's checkpoint: the active
    /// journal reached twice its bound while the checkpoint that would retire
    /// the journals before it runs. So recovery replays at most about
    /// `max_bytes` of old journals and `2 × max_bytes` of the active one,
    /// however slow a checkpoint is (a checkpoint of the whole table runs in the
    /// background, about 0.5 s per million extents, while writes go on).
    /// The rotation's hold starts only once the switch is done: a switch
    /// still to run (again, behind the reserve's release) is never held back
    /// by it. A cut holds committers back from that too; its own plan runs
    /// when the cut ends, or when the flusher hands it out.
    pub(crate) fn held_back(&self) -> bool {
        if self.cut_held() || self.waiting_for_restore() {
            return true;
        }
        let switching = (self.in_flight.as_ref()).is_some_and(|f| f.switch_to.is_some());
        self.rotating && !switching && self.len >= self.max_bytes.saturating_mul(2)
    }

    /// Whether a plan a restore of the reserve turned away waits for it to
    /// end (see [`release_reserve_for`](Self::release_reserve_for)).
    fn waiting_for_restore(&self) -> bool {
        self.behind_restore && self.restoring
    }

    /// The sequence number the next appended entry gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether a write is in flight (handed out, not completed), or a leader is
    /// gathering the entries of the next one.
    pub(crate) fn in_flight(&self) -> bool {
        self.gathering || self.in_flight.as_ref().is_some_and(|f| f.running)
    }

    /// A driver's leader will take the next write after letting stragglers
    /// append (bounded by the driver): until [`next_write`](Self::next_write),
    /// [`in_flight`](Self::in_flight) says so, and other committers wait for that
    /// write instead of leading (and spinning) too.
    pub(crate) fn gather(&mut self) {
        self.gathering = true;
    }

    /// Whether a write waits to run again behind the reserve's release:
    /// [`next_write`](Self::next_write) hands it out.
    pub(crate) fn retry_pending(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|f| !f.running)
    }

    /// The next write to run, when none is in flight: the switch to a new journal
    /// if the active one passed its bound (and no rotation is under way), else a
    /// group commit of the buffered entries (`None` if there are none).
    pub(crate) fn next_write(&mut self) -> Option<Vec<FsOp>> {
        self.gathering = false;
        if self.waiting_for_restore() {
            return None;
        }
        if let Some(flight) = self.in_flight.as_mut().filter(|f| !f.running) {
            debug_assert!(!flight.ops.is_empty(), "a retry without its plan");
            // The plan again, behind the reserve's release (see the module docs)
            // or the restore that took the room.
            flight.running = true;
            self.behind_restore = false;
            return Some(flight.ops.clone());
        }
        if self.in_flight.is_some() || self.failed.is_some() || self.closed {
            return None;
        }
        if self.held_back() {
            return None;
        }
        if self.len > self.max_bytes && !self.rotating {
            // The successor exists durably before the old journal's last write,
            // which ends with the marker naming it (see `recover`).
            let next = self.number + 1;
            let mut entries = std::mem::take(&mut self.buf);
            self.buf_commits = 0;
            entries.push((self.next_seq, Entry::Rotated { next }));
            let start = self.next_seq + 1;
            self.next_seq += 2;
            self.next_len = plan::new_journal_len(next, self.devices, start);
            self.next_allocated = self.next_len;
            let mut ops = Vec::new();
            if self.recycle
                && let Some(len) = self.recycled.take()
            {
                // Renamed before the new journal's head is written over its
                // first bytes: the switch is otherwise the same plan.
                ops.push(FsOp::Adopt {
                    from: files::RECYCLED.into(),
                    to: files::journal(next),
                });
                self.next_allocated = len;
            }
            ops.extend(plan::new_journal(next, self.devices, start));
            ops.extend(plan::group_commit(
                self.number,
                self.len,
                encode_group(self.len, &entries),
                0,
            ));
            self.rotating = true;
            return Some(self.start(ops, (0, 0), Some(next)));
        }
        if self.buf.is_empty() {
            return None;
        }
        let mut entries = std::mem::take(&mut self.buf);
        self.last_group = std::mem::take(&mut self.buf_commits);
        let ops = self.group_commit(&entries);
        // The entries are encoded; their vector is the next group's.
        entries.clear();
        self.buf = entries;
        Some(ops)
    }

    /// Starts the group commit of `entries` in the active journal.
    fn group_commit(&mut self, entries: &[(u64, Entry)]) -> Vec<FsOp> {
        // The mark is `len`: every byte before it was covered by a sync that
        // returned Ok, and this write is issued only now.
        let mut frames = std::mem::take(&mut self.spare);
        encode_group_into(&mut frames, self.len, entries);
        let written = frames.len() as u64;
        let end = self.len + written;
        // Every write ends with a zero length (`plan::END_LEN`), allocated
        // like the frames.
        let zeros = match end + plan::END_LEN > self.allocated {
            true => self.max_bytes.div_ceil(16).clamp(4 << 10, ALLOCATE_MAX),
            false => plan::END_LEN,
        };
        self.start(
            plan::group_commit(self.number, self.len, frames, zeros),
            (written + zeros, zeros),
            None,
        )
    }

    fn start(
        &mut self,
        ops: Vec<FsOp>,
        (written, zeros): (u64, u64),
        switch_to: Option<u64>,
    ) -> Vec<FsOp> {
        self.issued = self.next_seq;
        self.in_flight = Some(InFlight {
            upto: self.next_seq,
            written,
            zeros,
            switch_to,
            // Kept whether or not the reserve is held now: it may be made again
            // while this write runs, and then released for it.
            ops: ops.clone(),
            running: true,
        });
        ops
    }

    /// The write in flight ended with `result`. Returns the number of the
    /// checkpoint to write now (a switch completed): the driver takes the live
    /// image and runs [`checkpoint`](Self::checkpoint)'s plan.
    pub(crate) fn complete(&mut self, result: Result<()>) -> Option<u64> {
        let mut flight = self.in_flight.take()?;
        self.release_ended(&flight.ops);
        if result.is_ok() {
            self.take_back_buffer(&mut flight.ops);
        }
        if let Err(err) = &result
            && let Some(retry) = self.release_reserve_for(err, &flight.ops)
        {
            // Not in flight for [`next_write`] to hand out again.
            flight.ops = retry;
            flight.running = false;
            self.in_flight = Some(flight);
            return None;
        }
        if let Err(err) = result {
            self.failed.get_or_insert(err);
            self.rotating &= flight.switch_to.is_none();
            return None;
        }
        self.durable = flight.upto;
        self.stats.syncs += 1;
        match flight.switch_to {
            Some(next) => {
                self.retired = self.allocated.max(self.len);
                self.number = next;
                self.len = self.next_len;
                self.allocated = self.next_allocated.max(self.next_len);
                Some(next)
            }
            None => {
                let frames = flight.written - flight.zeros;
                self.allocated = self.allocated.max(self.len + flight.written);
                self.len += frames;
                None
            }
        }
    }

    /// Keeps a completed group commit's buffer for the next group if no one
    /// else holds it (a driver may keep its plan) and it is at most [`SPARE_MAX`].
    fn take_back_buffer(&mut self, ops: &mut Vec<FsOp>) {
        let journal = files::journal(self.number);
        let Some(at) =
            (ops.iter()).position(|op| matches!(op, FsOp::Write { file, .. } if *file == journal))
        else {
            return;
        };
        if let FsOp::Write { bytes, .. } = ops.swap_remove(at)
            && let Some(mut buffer) = bytes.into_vec()
            && buffer.capacity() <= SPARE_MAX
        {
            buffer.clear();
            self.spare = buffer;
        }
    }

    /// The `ack_before_sync` mutant (emulator only): the entries of the write in
    /// flight count as durable once its frames are written, before their sync.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn ack_written(&mut self) {
        if let Some(flight) = &self.in_flight {
            self.durable = self.durable.max(flight.upto);
        }
    }

    /// The close marker's plan (a sync of the devices, then the marker with
    /// anything still buffered before it), when no
    /// write is in flight and the journal has not failed. From now on every
    /// append is refused with [`Error::Shutdown`]. `None`: nothing to write (the
    /// journal failed, or is closed already).
    pub(crate) fn close(&mut self) -> Option<Vec<FsOp>> {
        debug_assert!(self.in_flight.is_none(), "close with a write in flight");
        let skip = self.failed.is_some() || self.closed || self.in_flight.is_some();
        self.closed = true;
        if skip {
            return None;
        }
        let mut entries = std::mem::take(&mut self.buf);
        entries.push((self.next_seq, Entry::Closed));
        self.next_seq += 1;
        // The devices first: the marker then says every inline write before it is
        // at its location, and recovery writes none of them back.
        let mut ops = vec![FsOp::SyncDevices];
        ops.extend(self.group_commit(&entries));
        Some(ops)
    }

    /// The journal's failure, if it failed.
    pub(crate) fn failure(&self) -> Option<&Error> {
        self.failed.as_ref()
    }

    /// Counters.
    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            bytes: self.len,
            number: self.number,
            rotating: self.rotating,
            ..self.stats
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::journal::tests::put;
    use crate::journal::{HEADER_LEN, Image};

    fn io_error() -> Error {
        Error::Io {
            device: crate::journal::METADATA_DEVICE,
            op: "sync",
            kind: std::io::ErrorKind::Other,
            message: "EIO".into(),
        }
    }

    #[test]
    fn entries_appended_during_a_write_go_in_the_next_and_are_acknowledged_with_it() {
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0);
        let a = w.append(&[put(1, 1)]).unwrap();
        let first = w.next_write().unwrap();
        let b = w.append(&[put(2, 1), put(3, 1)]).unwrap();
        assert!(w.next_write().is_none(), "one write in flight");
        assert_eq!(w.complete(Ok(())), None);
        assert_eq!(w.status(a, ExtentId(1)), Some(Ok(())));
        assert_eq!(w.status(b, ExtentId(2)), None, "not written yet");
        let second = w.next_write().unwrap();
        // The second write starts where the first one's frames ended (the first
        // also allocated zeros after them, which the second overwrites).
        let offset = |ops: &[FsOp]| match &ops[0] {
            FsOp::Write { offset, bytes, .. } => (*offset, bytes.len() as u64),
            other => panic!("{other:?}"),
        };
        let frames = |ids: &[u64]| {
            let entries: Vec<_> = ids.iter().map(|&id| (0, put(id, 1))).collect();
            encode_group(0, &entries).len() as u64
        };
        let (o1, l1) = offset(&first);
        assert!(l1 > frames(&[1]), "space allocated ahead");
        let (o2, l2) = offset(&second);
        assert_eq!(o2, o1 + frames(&[1]));
        assert_eq!(
            l2,
            frames(&[2, 3]) + plan::END_LEN,
            "inside the allocated space: frames and the zero length that ends them"
        );
        w.complete(Ok(()));
        assert_eq!(w.status(b, ExtentId(2)), Some(Ok(())));
    }

    /// A completed group commit's buffer carries the next group's frames,
    /// unless a driver still holds the plan that wrote it.
    #[test]
    fn a_completed_group_commits_buffer_carries_the_next_group() {
        let ptr = |ops: &[FsOp]| match &ops[0] {
            FsOp::Write { bytes, .. } => bytes.as_ptr(),
            other => panic!("{other:?}"),
        };
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0);
        w.append(&[put(1, 1)]).unwrap();
        let first = w.next_write().unwrap();
        let at = ptr(&first);
        drop(first);
        w.complete(Ok(()));
        w.append(&[put(2, 1)]).unwrap();
        let second = w.next_write().unwrap();
        assert_eq!(ptr(&second), at, "the first group's buffer again");
        w.complete(Ok(()));
        w.append(&[put(3, 1)]).unwrap();
        let third = w.next_write().unwrap();
        assert_ne!(ptr(&third), ptr(&second), "the second's plan is still held");
        let frames = |ids: &[u64]| {
            let entries: Vec<_> = ids.iter().map(|&id| (0, put(id, 1))).collect();
            encode_group(0, &entries).len()
        };
        match &second[0] {
            FsOp::Write { bytes, .. } => {
                let end = plan::END_LEN as usize;
                assert_eq!(bytes.len(), frames(&[2]) + end, "frames and their end");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A failed write fails what it carried as unknown and refuses what follows as
    /// certainly not written; a later append is refused.
    #[test]
    fn a_failure_is_unknown_for_what_was_written_and_certain_for_the_rest() {
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0);
        let a = w.append(&[put(1, 1)]).unwrap();
        w.next_write().unwrap();
        let b = w.append(&[put(2, 1)]).unwrap();
        w.complete(Err(io_error()));
        assert_eq!(
            w.status(a, ExtentId(1)).unwrap().unwrap_err().code(),
            "FPRE028"
        );
        let refused = w.status(b, ExtentId(2)).unwrap().unwrap_err();
        assert_eq!(refused.code(), "FPRE036", "{refused}");
        assert!(!refused.is_retryable(), "only a reopen helps");
        assert!(refused.to_string().contains("FPRE009"), "names the failure");
        assert_eq!(w.append(&[put(3, 1)]).unwrap_err().code(), "FPRE036");
        assert!(w.next_write().is_none());
    }

    /// Past the bound the next write is the switch: the new journal first, then the
    /// old one's last write ending with the marker; the checkpoint follows.
    #[test]
    fn a_rotation_creates_the_successor_before_the_marker_and_then_checkpoints() {
        let mut w = Writer::new(1, 100, 4, HEADER_LEN as u64, 0);
        w.append(&[put(1, 1), put(2, 1)]).unwrap();
        w.next_write().unwrap();
        w.complete(Ok(()));
        let t = w.append(&[put(3, 1)]).unwrap();
        let ops = w.next_write().unwrap();
        let files: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                FsOp::Write { file, .. } => Some(file.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            files,
            [
                crate::journal::files::journal(5),
                crate::journal::files::journal(4)
            ]
        );
        assert_eq!(w.complete(Ok(())), Some(5));
        assert_eq!(w.status(t, ExtentId(3)), Some(Ok(())));
        assert!(w.rotating());
        assert_eq!(w.stats().number, 5);
        assert_eq!(w.checkpoint_done(&[], Ok(())), None);
        assert!(!w.rotating());
    }

    /// A writer past its bound that switched to journal 5, its checkpoint due.
    fn switched() -> Writer {
        let mut w = Writer::new(1, 100, 4, HEADER_LEN as u64, 0);
        w.append(&[put(1, 1), put(2, 1)]).expect("appended");
        w.next_write().expect("a group commit");
        w.complete(Ok(()));
        w.append(&[put(3, 1)]).expect("appended");
        w.next_write().expect("the switch");
        assert_eq!(w.complete(Ok(())), Some(5), "switched; checkpointing");
        w
    }

    /// While a rotation's checkpoint runs, group commits go on in the new
    /// journal until it reaches twice its bound; then they wait for the
    /// checkpoint, and go on once it ends.
    #[test]
    fn group_commits_wait_for_a_slow_checkpoint_at_twice_the_bound() {
        let mut w = switched();
        let mut commits = 0;
        while !w.held_back() {
            w.append(&[put(4, commits + 1)]).unwrap();
            w.next_write()
                .expect("a group commit while the checkpoint runs");
            w.complete(Ok(()));
            commits += 1;
            assert!(commits < 100, "never held back");
        }
        assert!(commits > 1 && w.stats().bytes >= 200);
        let t = w.append(&[put(5, 1)]).unwrap();
        assert!(w.next_write().is_none(), "held back");
        assert_eq!(w.status(t, ExtentId(5)), None);
        assert_eq!(w.checkpoint_done(&[], Ok(())), None);
        assert!(!w.held_back());
        assert!(
            w.next_write().is_some(),
            "the next write goes (a new switch)"
        );
    }

    /// A cut holds back the next group commit, not the one in flight, until
    /// its last hold is released.
    #[test]
    fn a_cut_holds_the_next_group_commit_not_the_one_in_flight() {
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0);
        let a = w.append(&[put(1, 1)]).unwrap();
        w.next_write().expect("the first group commit");
        w.hold_cut();
        w.hold_cut();
        let b = w.append(&[put(2, 1)]).unwrap();
        w.complete(Ok(()));
        assert_eq!(w.status(a, ExtentId(1)), Some(Ok(())), "in flight: done");
        assert!(w.held_back());
        assert!(w.next_write().is_none(), "held by the cut");
        w.release_cut();
        assert!(w.next_write().is_none(), "one hold left");
        assert_eq!(w.status(b, ExtentId(2)), None);
        w.release_cut();
        assert!(!w.held_back());
        w.next_write().expect("released");
        w.complete(Ok(()));
        assert_eq!(w.status(b, ExtentId(2)), Some(Ok(())));
    }

    /// Drives `w`, after its last rotation's checkpoint ended, to its next
    /// switch and its checkpoint's outcome `result`.
    fn rotate_again(w: &mut Writer, result: Result<()>) {
        let before = w.stats().number;
        // Bounded: each round appends a record; the bound is 100 bytes.
        for g in 1..100 {
            w.append(&[put(6, g)]).expect("appended");
            w.next_write().expect("a group commit or the switch");
            if w.complete(Ok(())).is_some() {
                assert_eq!(w.stats().number, before + 1);
                assert_eq!(w.checkpoint_done(&[], result), None);
                return;
            }
        }
        panic!("no switch");
    }

    /// Checkpoints that keep failing (every one does after a device's sync
    /// failed) would leave nothing to retire the journals: two in a row fail
    /// the journal, with a cause that says so; a success in between resets
    /// the count.
    #[test]
    fn two_checkpoints_failing_in_a_row_fail_the_journal() {
        let eio = || Error::DeviceSyncFailed {
            device: 0,
            cause: "EIO".into(),
        };
        let mut w = switched();
        assert_eq!(w.checkpoint_done(&[], Err(eio())), None);
        rotate_again(&mut w, Ok(()));
        rotate_again(&mut w, Err(eio()));
        assert!(w.failure().is_none(), "one failure since the last success");
        w.append(&[put(7, 1)]).expect("still taking appends");
        w.next_write().expect("a group commit");
        w.complete(Ok(()));
        // A full disk (nothing to release) neither counts nor resets.
        let full = Error::DiskFull {
            device: crate::journal::METADATA_DEVICE,
            op: "write",
        };
        rotate_again(&mut w, Err(full));
        assert!(w.failure().is_none(), "a full disk is not counted");
        rotate_again(&mut w, Err(eio()));
        let err = w.append(&[put(8, 1)]).expect_err("refused");
        assert_eq!(err.code(), "FPRE036", "{err}");
        assert!(
            err.to_string().contains("2 checkpoints in a row failed"),
            "{err}"
        );
        assert!(err.to_string().matches("FPRE036").count() == 1, "{err}");
        assert!(w.next_write().is_none(), "nothing more is written");
    }

    /// A journal that failed after its switch gets no checkpoint: the rotation
    /// ends and the old checkpoint stays current.
    #[test]
    fn a_failed_journal_is_never_checkpointed() {
        let mut w = switched();
        w.append(&[put(4, 1)]).unwrap();
        w.next_write().unwrap();
        let eio = std::io::Error::from_raw_os_error(5);
        w.complete(Err(Error::io(
            crate::journal::METADATA_DEVICE,
            "sync",
            &eio,
        )));
        assert!(w.rotating());
        assert!(w.checkpoint_planner().is_none());
        assert!(!w.rotating(), "the rotation ended without a checkpoint");
    }

    #[test]
    fn a_healthy_journal_plans_its_checkpoint() {
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0);
        let plan = (w.checkpoint_planner().unwrap()).plan(2, &Image::default(), &[]);
        assert!(plan.iter().any(|op| matches!(op, FsOp::SyncDevices)));
    }

    /// The devices are synced after the image is read and before the pointer
    /// names the checkpoint: an overlapped write whose proposal the image
    /// holds wrote its data before, so the sync covers it.
    #[test]
    fn a_checkpoint_syncs_the_devices_between_its_image_and_the_pointer() {
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0);
        let plan = (w.checkpoint_planner().unwrap()).plan_streamed(2, &[]);
        let at = |want: fn(&FsOp) -> bool| plan.iter().position(want).unwrap();
        let image = at(|op| matches!(op, FsOp::WriteImage { .. }));
        let devices = at(|op| matches!(op, FsOp::SyncDevices));
        let pointer = at(|op| matches!(op, FsOp::Rename { to, .. } if to == files::CURRENT));
        assert!(image < devices && devices < pointer, "{plan:?}");
    }

    fn disk_full() -> Error {
        Error::DiskFull {
            device: crate::journal::METADATA_DEVICE,
            op: "write",
        }
    }

    fn held_reserve() -> Writer {
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0).with_reserve(4096, None);
        assert!(
            !Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0)
                .with_reserve(4096, Some(4096))
                .space_low(),
            "a whole reserve found at open is held"
        );
        assert!(w.space_low(), "not held until made");
        let ops = w.restore_reserve().expect("a plan while not held");
        assert!(
            matches!(&ops[1], FsOp::Write { file, bytes, .. } if file == files::RESERVE && bytes.len() == 4096)
        );
        assert!(w.reserve_restored(Ok(())).is_empty());
        assert!(!w.space_low());
        w
    }

    /// A full disk at a group commit's write releases the reserve and runs the
    /// same plan again behind the removal; its entries are then acknowledged, and
    /// new writes are refused until the reserve is made again.
    #[test]
    fn a_full_disk_releases_the_reserve_and_writes_the_same_frames_again() {
        let mut w = held_reserve();
        let t = w.append(&[put(1, 1)]).unwrap();
        let first = w.next_write().unwrap();
        assert_eq!(w.complete(Err(disk_full())), None);
        assert_eq!(w.status(t, ExtentId(1)), None, "not failed, not durable");
        assert!(w.space_low());
        assert!(w.retry_pending() && !w.in_flight());
        let again = w.next_write().unwrap();
        assert!(matches!(&again[0], FsOp::Remove { file } if file == files::RESERVE));
        assert_eq!(&again[2..], &first[..], "the same plan behind the removal");
        w.complete(Ok(()));
        assert_eq!(w.status(t, ExtentId(1)), Some(Ok(())));
        // The reserve is released once: a second full disk fails the journal.
        let t2 = w.append(&[put(2, 1)]).unwrap();
        w.next_write().unwrap();
        w.complete(Err(disk_full()));
        assert_eq!(
            w.status(t2, ExtentId(2)).unwrap().unwrap_err().code(),
            "FPRE028"
        );
    }

    /// The reserve made again while a write runs, then released for that write:
    /// the write's own plan runs again (not only the removal).
    #[test]
    fn a_reserve_restored_during_a_write_is_released_for_its_whole_plan() {
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0).with_reserve(4096, None);
        let t = w.append(&[put(1, 1)]).unwrap();
        let plan = w.next_write().unwrap();
        w.restore_reserve().unwrap();
        assert!(w.reserve_restored(Ok(())).is_empty());
        w.complete(Err(disk_full()));
        let again = w.next_write().unwrap();
        assert_eq!(&again[2..], &plan[..], "the write itself runs again");
        w.complete(Ok(()));
        assert_eq!(w.status(t, ExtentId(1)), Some(Ok(())));
    }

    #[test]
    fn a_full_disk_at_a_checkpoint_runs_it_again_behind_the_release() {
        let mut w = held_reserve();
        let plan = (w.checkpoint_planner().unwrap()).plan(2, &Image::default(), &[]);
        let retry = w.checkpoint_done(&plan, Err(disk_full())).unwrap();
        assert_eq!(&retry[2..], &plan[..]);
        assert_eq!(w.checkpoint_done(&retry, Ok(())), None);
        // A failed restore leaves writes refused and removes the partial file.
        let ops = w.restore_reserve().unwrap();
        assert!(!ops.is_empty());
        let cleanup = w.reserve_restored(Err(disk_full()));
        assert!(matches!(&cleanup[..], [FsOp::Remove { file }] if file == files::RESERVE));
        assert!(w.space_low());
        // No other restore begins before that removal ran: it would lose its
        // file to it.
        assert!(w.restore_reserve().is_none(), "the cleanup is still to run");
        w.reserve_cleaned();
        assert!(w.restore_reserve().is_some());
        assert!(w.restoring(), "close waits for it");
        let _ = w.reserve_restored(Err(disk_full()));
        w.reserve_cleaned();
        // None once closed: the directory may be another store's by then.
        let _ = w.close();
        assert!(w.space_low() && w.restore_reserve().is_none());
    }

    #[test]
    fn close_writes_the_marker_and_refuses_later_appends() {
        let mut w = Writer::new(1, 1 << 20, 1, HEADER_LEN as u64, 0);
        let a = w.append(&[put(1, 1)]).unwrap();
        let ops = w.close().unwrap();
        // The devices are synced before the marker is written.
        assert!(matches!(&ops[..2], [FsOp::SyncDevices, FsOp::Write { .. }]));
        w.complete(Ok(()));
        assert_eq!(w.status(a, ExtentId(1)), Some(Ok(())));
        assert_eq!(w.append(&[put(2, 1)]).unwrap_err(), Error::Shutdown);
    }
}
