//! Read and prefetch: snapshot, tag-checked cache hit, else read, check, fill.
//!
//! # Consistency
//!
//! A read returns bytes only if (a) they pass the identity-bound checksum of the
//! snapshot they were read for, so they are exactly that (extent, generation)'s
//! bytes, and (b) the cache accepted the fill, i.e. that generation was still current
//! when the fill was re-validated under the shard lock, or they came from an entry
//! tagged with the snapshot's generation. Either way the generation was current at
//! an instant inside the call (invariant 3). Pending writes are never read: a
//! snapshot's location is always the committed one (invariant 5).
//!
//! A failed check whose record changed in the meantime is a race, not a fault: the
//! read restarts on a fresh snapshot.

use super::{Core, IoRequest, IoResult, MAX_ATTEMPTS, Machine, Step};
use crate::bytes::Bytes;
use crate::cache::{FillToken, FlightOutcome, Lookup, Priority};
use crate::error::Error;
use crate::record::{ExtentId, Snapshot, State};
use crate::space::Pin;

/// Single-attempt reads of the record when re-validating a fill under the shard
/// lock. One under loom, whose models must stay finite (every attempt is a branch).
const REVALIDATE_ATTEMPTS: usize = if cfg!(loom) { 1 } else { 4 };

/// A read (or prefetch, by priority) of one extent.
#[derive(Debug)]
pub(crate) struct ReadOp {
    id: ExtentId,
    priority: Priority,
    attempts: u32,
    loading: Option<Loading>,
    last_generation: u64,
    /// A quarantined record whose good copy was asked for.
    good_copy_for: Option<Snapshot>,
    /// The load of this generation, claimed ahead by [`ReadOp::claim`]: `start`
    /// loads with it instead of looking up.
    claimed: Option<(u64, FillToken)>,
    /// Where its first device read goes ([`Machine::read_buffer`]), allocated
    /// by whoever asked for the prefetch.
    buffer: Option<Bytes>,
}

#[derive(Debug)]
struct Loading {
    snapshot: Snapshot,
    token: FillToken,
    pin: Pin,
}

/// What [`ReadOp::claim`] found.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The load is this prefetch's: [`ReadOp::with_claim`] makes the op that
    /// runs it. Until then a demand reader of that generation waits on it
    /// near the queue's front, and takes it over further back (see
    /// [`ReadOp::claim`]). With the extent's length when it was claimed.
    Claimed(FillToken, u32),
    /// The current generation is cached.
    Cached,
    /// Nothing to claim: not readable, being loaded already, or a newer
    /// generation cached.
    Not,
}

impl ReadOp {
    pub(crate) fn new(id: ExtentId, priority: Priority) -> Self {
        ReadOp {
            id,
            priority,
            attempts: 0,
            loading: None,
            last_generation: 0,
            good_copy_for: None,
            claimed: None,
            buffer: None,
        }
    }

    /// This op, its first device read going into `buffer` when it fits
    /// ([`Machine::read_buffer`]).
    pub(crate) fn with_buffer(mut self, buffer: Option<Bytes>) -> Self {
        self.buffer = buffer;
        self
    }

    /// A prefetch of `id` that claims its load now and runs later: a lookup at
    /// prefetch priority, kept as the op's first step. A demand read of the
    /// same generation waits on this load instead of starting its own, as a
    /// reader waits on a page that OS readahead has locked for its I/O, once a
    /// worker started it or while fewer hints than workers are queued ahead
    /// of it; further back, the first demand reader takes the load over
    /// (`Flight::take_over`) rather than wait behind the queue, and the
    /// worker's op, finding it taken, is a plain prefetch. Once a reader
    /// waits on it, no later reader takes it over.
    ///
    /// Nothing new happens to the record between the claim and the op's
    /// `start`: a loader already holds its token unpinned between the lookup
    /// and `load`, which pins and re-reads the record; a claim only makes that
    /// interval longer. A claim dropped unrun finishes its load as superseded
    /// (the token's `Drop`), so its waiters retry, unless a reader took it
    /// over: then the reader's token finishes it.
    pub(crate) fn claim(core: &Core, id: ExtentId) -> Claim {
        // First without a miss counted for what is cached or loading already.
        let snapshot = match ReadOp::unheld(core, id) {
            Ok(snapshot) => snapshot,
            Err(found) => return found,
        };
        match core.cache.claim(id, snapshot.generation()) {
            Lookup::Hit(_) => Claim::Cached,
            Lookup::Newer | Lookup::Wait(_) => Claim::Not,
            Lookup::Load(token) => Claim::Claimed(token, snapshot.location().length),
        }
    }

    /// The current record of `id` if it is readable and its generation is
    /// neither cached nor being loaded, without touching the cache's counters;
    /// else what a claim would find ([`Claim::Cached`] or [`Claim::Not`]).
    pub(crate) fn unheld(core: &Core, id: ExtentId) -> std::result::Result<Snapshot, Claim> {
        let snapshot = (core.table.snapshot(id)).map_err(|_| Claim::Not)?;
        if !snapshot.is_readable() {
            return Err(Claim::Not);
        }
        match core.cache.holds(id, snapshot.generation()) {
            Some(true) => Err(Claim::Cached),
            Some(false) => Err(Claim::Not),
            None => Ok(snapshot),
        }
    }

    /// The prefetch that runs a load [`claim`](Self::claim) claimed: its
    /// `start` loads with the token instead of looking up.
    pub(crate) fn with_claim(token: FillToken) -> Self {
        let mut op = ReadOp::new(token.extent(), Priority::Prefetch);
        op.claimed = Some((token.generation(), token));
        op
    }

    /// Whether a demand read took over the load this op claimed (its token
    /// is then void; the emulator counts these).
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn claim_taken_over(&self) -> bool {
        (self.claimed.as_ref()).is_some_and(|(_, token)| token.taken_over())
    }

    /// A snapshot of a record that has bytes to read.
    fn readable_snapshot(&mut self, core: &Core) -> crate::Result<Snapshot> {
        let snapshot = core.table.snapshot(self.id)?;
        self.last_generation = snapshot.generation();
        match snapshot.state() {
            State::Vacant => Err(Error::NotReadable { extent: self.id }),
            State::Quarantined => Err(Error::Quarantined { extent: self.id }),
            State::Durable | State::Compacting => Ok(snapshot),
        }
    }

    /// Pins, re-reads the record and asks for the media read of `generation`.
    fn load(&mut self, core: &Core, generation: u64, token: FillToken) -> Step<Bytes> {
        let pin = core.reclaimer.pin();
        match self.readable_snapshot(core) {
            // Same generation: same bytes and checksum, perhaps moved by compaction.
            Ok(snapshot) if snapshot.generation() == generation => {
                let location = snapshot.location();
                self.loading = Some(Loading {
                    snapshot,
                    token,
                    pin,
                });
                Step::Io(IoRequest::Read(location))
            }
            // Superseded before it loaded, or quarantined meanwhile (whose fallbacks
            // `start` knows): start over on a fresh snapshot. Found by loom
            // (`last_good_copy_kept_quarantine_racing_read`).
            Ok(snapshot) => {
                core.reclaimer.unpin(pin);
                core.cache.abandon(token);
                self.restart_unless_superseded(core, generation, snapshot.generation())
            }
            Err(Error::Quarantined { .. }) => {
                core.reclaimer.unpin(pin);
                core.cache.abandon(token);
                self.start(core)
            }
            Err(err) => {
                core.reclaimer.unpin(pin);
                core.cache.abandon(token);
                Step::Done(Err(err))
            }
        }
    }

    /// Starts over after a race, unless this is a prefetch and the generation it
    /// was loading (`loading`) is no longer the current one (`current`): then it
    /// ends ([`Error::Superseded`]). The bytes it was warming will never be read,
    /// and the new generation's first reader loads its own; a prefetch that
    /// chased every rewrite paid a second device read for nothing and made up
    /// the emulator's prefetch tail (BENCHMARKS.md, "The prefetch tail").
    fn restart_unless_superseded(
        &mut self,
        core: &Core,
        loading: u64,
        current: u64,
    ) -> Step<Bytes> {
        if self.priority == Priority::Prefetch && current != loading {
            return Step::Done(Err(Error::Superseded {
                extent: self.id,
                generation: loading,
            }));
        }
        self.start(core)
    }

    /// Whether the record changed since `snapshot` (so a failed check was a race).
    fn raced(&self, core: &Core, snapshot: &Snapshot) -> bool {
        core.table
            .snapshot(self.id)
            .map_or(true, |now| now.version() != snapshot.version())
    }
}

impl Machine for ReadOp {
    /// A prefetch never waits on another load (see [`Machine::joins_loads`]).
    fn joins_loads(&self) -> bool {
        self.priority == Priority::Demand
    }

    fn read_buffer(&mut self) -> Option<Bytes> {
        self.buffer.take()
    }

    type Output = Bytes;

    /// Starts (or restarts, after a race) the read.
    ///
    /// The hit path takes no pin: it reads no location. Only a load pins, and then
    /// re-reads the record, so the location it reads comes from a snapshot taken
    /// while pinned (see `space::reclaim`).
    fn start(&mut self, core: &Core) -> Step<Bytes> {
        debug_assert!(self.loading.is_none(), "start while a load is in flight");
        if self.attempts >= MAX_ATTEMPTS {
            return Step::Done(Err(Error::Superseded {
                extent: self.id,
                generation: self.last_generation,
            }));
        }
        self.attempts += 1;
        // Unless a demand reader took the claim over: from there this is a
        // plain prefetch, which finds that reader's load or its bytes (or
        // loads the extent, if that load failed or was superseded).
        if let Some((generation, mut token)) = self.claimed.take()
            && token.begin()
        {
            return self.load(core, generation, token);
        }
        let snapshot = match self.readable_snapshot(core) {
            Ok(s) => s,
            Err(Error::Quarantined { extent }) => {
                // The media copy is bad; serve a copy that verifies against the
                // record: a cached one, else the engine's good-copy source (a replica).
                return match core.table.snapshot(extent) {
                    Ok(s) if s.state() == State::Quarantined => {
                        if let Some(bytes) = core.verified_cached_copy(&s) {
                            return Step::Done(Ok(bytes));
                        }
                        // A prefetch caches nothing from the engine's source:
                        // fetching a replica for it would cost a remote read
                        // that warms nothing.
                        if self.priority == Priority::Prefetch {
                            return Step::Done(Err(Error::Quarantined { extent }));
                        }
                        self.good_copy_for = Some(s);
                        Step::Io(IoRequest::GoodCopy(extent, s.generation()))
                    }
                    _ => self.start(core),
                };
            }
            Err(err) => return Step::Done(Err(err)),
        };
        match core
            .cache
            .lookup(self.id, snapshot.generation(), self.priority)
        {
            Lookup::Hit(bytes) => Step::Done(Ok(bytes)),
            Lookup::Newer => self.start(core),
            Lookup::Wait(flight) => Step::Wait(flight),
            Lookup::Load(token) => self.load(core, snapshot.generation(), token),
        }
    }

    /// The read's I/O finished.
    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Bytes> {
        if let Some(quarantined) = self.good_copy_for.take() {
            return Step::Done(match result {
                IoResult::Read(Ok(bytes)) if quarantined.check(&bytes).is_ok() => Ok(bytes),
                _ => Err(Error::Quarantined { extent: self.id }),
            });
        }
        let Some(Loading {
            snapshot,
            token,
            pin,
        }) = self.loading.take()
        else {
            debug_assert!(false, "on_io without a load in flight");
            return Step::Done(Err(Error::Internal {
                what: "read: I/O result without a load in flight",
            }));
        };
        // The media read is over: the old location may now be reclaimed.
        core.reclaimer.unpin(pin);
        let IoResult::Read(result) = result else {
            debug_assert!(false, "a read was answered with a write result");
            return Step::Done(Err(Error::Internal {
                what: "read: answered with a write result",
            }));
        };
        let checked = result.and_then(|bytes| snapshot.check(&bytes).map(|()| bytes));
        if checked.is_err() && self.raced(core, &snapshot) {
            core.cache.abandon(token); // waiters are told "superseded" and retry too
            let current = core.table.snapshot(self.id).map_or(0, |s| s.generation());
            return self.restart_unless_superseded(core, snapshot.generation(), current);
        }
        let id = self.id;
        let generation = snapshot.generation();
        // Runs under the shard lock, so it must not wait long: a few single-attempt
        // reads; a record that stays mid-publish counts as "not current" for bytes
        // (the fill is rejected as superseded and the read retries), never as a
        // stale accept, and as current for a failure (a race must be seen to be
        // one: the failure climbs the ladder as before).
        let failed = checked.is_err();
        let outcome = core.cache.complete(token, checked, || {
            match (0..REVALIDATE_ATTEMPTS).find_map(|_| core.table.try_snapshot(id).ok().flatten())
            {
                Some(now) => now.generation() == generation && now.state() != State::Vacant,
                None => failed,
            }
        });
        self.on_wait(core, outcome)
    }

    /// The load this read waited on (or its own fill) finished.
    fn on_wait(&mut self, core: &Core, outcome: FlightOutcome) -> Step<Bytes> {
        match outcome {
            FlightOutcome::Ready(bytes) => Step::Done(Ok(bytes)),
            // The fill was refused: the generation loaded is no longer current, or
            // the record was mid-publish (then it is, and even a prefetch retries).
            FlightOutcome::Superseded => {
                let loaded = self.last_generation;
                let current = core.table.snapshot(self.id).map_or(0, |s| s.generation());
                self.restart_unless_superseded(core, loaded, current)
            }
            FlightOutcome::Failed(err) => Step::Done(Err(err)),
        }
    }

    /// Releases what the read holds if its driver gives up on it mid-flight.
    fn abandon(&mut self, core: &Core) {
        if let Some(Loading { pin, token, .. }) = self.loading.take() {
            core.reclaimer.unpin(pin);
            core.cache.abandon(token);
        }
        if let Some((_, token)) = self.claimed.take() {
            core.cache.abandon(token);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::protocol::test_support::{self, value};
    use crate::record::Location;

    /// Commits the next generation of `id` at a fresh location: the location and
    /// the bytes that belong there.
    fn commit(core: &Core, id: ExtentId) -> (Location, Bytes) {
        let generation = core.table.snapshot(id).expect("in range").generation() + 1;
        let record = test_support::commit(core, id, generation, crate::record::Tag::EMPTY);
        core.cache.invalidate(id, generation);
        (record.location(), test_support::value(id, generation))
    }

    fn claimed(core: &Core, id: ExtentId) -> ReadOp {
        match ReadOp::claim(core, id) {
            Claim::Claimed(token, _) => ReadOp::with_claim(token),
            other => panic!("no claim: {other:?}"),
        }
    }

    #[test]
    fn a_demand_read_waits_on_a_claimed_load_once_it_started() {
        let core = Core::for_tests();
        let id = ExtentId(3);
        let (location, bytes) = commit(&core, id);
        let mut prefetch = claimed(&core, id);
        assert!(
            matches!(ReadOp::claim(&core, id), Claim::Not),
            "claimed once"
        );
        assert!(matches!(prefetch.start(&core), Step::Io(IoRequest::Read(l)) if l == location));
        // The claim's read is under way: a demand read waits on it.
        let mut reader = ReadOp::new(id, Priority::Demand);
        let Step::Wait(flight) = reader.start(&core) else {
            panic!("the reader did not wait on the started claim");
        };
        let Step::Done(Ok(loaded)) = prefetch.on_io(&core, IoResult::Read(Ok(bytes.clone())))
        else {
            panic!("the claimed load failed");
        };
        assert_eq!(loaded, bytes);
        let outcome = flight.outcome().expect("the load finished");
        let Step::Done(Ok(read)) = reader.on_wait(&core, outcome) else {
            panic!("the reader failed");
        };
        assert_eq!(read, value(id, 1), "extent 3, generation 1");
        assert!(matches!(ReadOp::claim(&core, id), Claim::Cached));
    }

    /// A reader does not wait behind the worker's queue: it loads a claim no
    /// worker started itself, and the worker's op then finds the bytes.
    #[test]
    fn a_demand_read_takes_over_a_claim_no_worker_started() {
        let core = Core::for_tests();
        let id = ExtentId(6);
        let (location, bytes) = commit(&core, id);
        let mut prefetch = claimed(&core, id);
        let mut reader = ReadOp::new(id, Priority::Demand);
        assert!(
            matches!(reader.start(&core), Step::Io(IoRequest::Read(l)) if l == location),
            "the reader waited on a claim no worker started"
        );
        let Step::Done(Ok(read)) = reader.on_io(&core, IoResult::Read(Ok(bytes))) else {
            panic!("the reader failed");
        };
        assert_eq!(read, value(id, 1), "extent 6, generation 1");
        // The worker's op reads nothing: the bytes are cached.
        let Step::Done(Ok(warm)) = prefetch.start(&core) else {
            panic!("the taken-over claim read the device");
        };
        assert_eq!(warm, value(id, 1));
        assert_eq!(core.cache.stats().prefetch_used, 0, "the reader loaded it");
    }

    #[test]
    fn a_claim_overtaken_by_a_write_ends_and_its_waiter_reads_the_new_generation() {
        let core = Core::for_tests();
        let id = ExtentId(4);
        commit(&core, id);
        // Unstarted: the claimed prefetch re-reads the record before it reads
        // the device; generation 1 is gone, so it ends without a device read.
        let mut prefetch = claimed(&core, id);
        commit(&core, id);
        let Step::Done(Err(Error::Superseded { generation: 1, .. })) = prefetch.start(&core) else {
            panic!("the stale claim went on");
        };
        // Started: its waiter is told "superseded" and reads the newest one.
        let (location, bytes) = commit(&core, id);
        let mut prefetch = claimed(&core, id);
        assert!(matches!(prefetch.start(&core), Step::Io(IoRequest::Read(l)) if l == location));
        let mut reader = ReadOp::new(id, Priority::Demand);
        let Step::Wait(flight) = reader.start(&core) else {
            panic!("the reader did not wait on the started claim");
        };
        let (newest, newest_bytes) = commit(&core, id);
        assert!(matches!(
            prefetch.on_io(&core, IoResult::Read(Ok(bytes))),
            Step::Done(Err(Error::Superseded { generation: 3, .. }))
        ));
        let outcome = flight.outcome().expect("the claim ended");
        assert_eq!(outcome, FlightOutcome::Superseded);
        assert!(matches!(
            reader.on_wait(&core, outcome),
            Step::Io(IoRequest::Read(l)) if l == newest
        ));
        let Step::Done(Ok(read)) = reader.on_io(&core, IoResult::Read(Ok(newest_bytes))) else {
            panic!("the reader failed");
        };
        assert_eq!(read, value(id, 4), "extent 4, generation 4");
    }

    /// A claim dropped unrun frees its slot; one a reader took over ends
    /// nothing when dropped: the reader's load goes on, and its waiters get
    /// its bytes.
    #[test]
    fn a_claim_dropped_unrun_frees_the_slot_unless_a_reader_took_it_over() {
        let core = Core::for_tests();
        let id = ExtentId(5);
        let (location, bytes) = commit(&core, id);
        let mut prefetch = claimed(&core, id);
        prefetch.abandon(&core);
        drop(claimed(&core, id));
        for abandon in [true, false] {
            let mut prefetch = claimed(&core, id);
            let mut reader = ReadOp::new(id, Priority::Demand);
            assert!(matches!(reader.start(&core), Step::Io(IoRequest::Read(l)) if l == location));
            if abandon {
                prefetch.abandon(&core);
            } else {
                drop(prefetch);
            }
            let mut second = ReadOp::new(id, Priority::Demand);
            let Step::Wait(flight) = second.start(&core) else {
                panic!("the reader's load ended with the void claim");
            };
            assert_eq!(flight.outcome(), None, "the void claim ended the load");
            let Step::Done(Ok(read)) = reader.on_io(&core, IoResult::Read(Ok(bytes.clone())))
            else {
                panic!("the reader failed");
            };
            assert_eq!(read, value(id, 1), "extent 5, generation 1");
            let outcome = flight.outcome().expect("finished by the reader");
            assert!(matches!(second.on_wait(&core, outcome), Step::Done(Ok(b)) if b == read));
            // Empty the cache for the next round.
            assert!(core.cache.remove(id, 1));
        }
    }
}
