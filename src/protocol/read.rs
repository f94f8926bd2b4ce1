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
}

#[derive(Debug)]
struct Loading {
    snapshot: Snapshot,
    token: FillToken,
    pin: Pin,
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
        }
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
        // reads; a record that stays mid-publish counts as "not current" (the fill is
        // rejected as superseded and the read retries), never as a stale accept.
        let outcome = core.cache.complete(token, checked, || {
            (0..REVALIDATE_ATTEMPTS)
                .find_map(|_| core.table.try_snapshot(id).ok().flatten())
                .is_some_and(|now| now.generation() == generation && now.state() != State::Vacant)
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
    }
}
