//! Verification: read the media (not the cache) for one snapshot and classify.
//!
//! # Consistency
//!
//! Every check compares the bytes at a snapshot's location with *that same
//! snapshot's* checksum (invariant 7). A failed check is a fault only if the record
//! is still at that version afterwards; if the version moved (a write, compaction or
//! remap committed), it was a race and verification restarts on a fresh snapshot,
//! never counting it against the retry limit. FPRE004 is returned only after the
//! initial read and `retry_limit` re-reads of one stable version all failed.
//!
//! The original FPRE004 came from a verifier that read "write pending" and "cache
//! ready" as two separate flags. Here state, location, generation and checksum come
//! from one snapshot: there is no second read to get in the wrong order.

use super::{Core, IoRequest, IoResult, Machine, Step};
use crate::error::Error;
use crate::policy::IntegrityPolicy;
use crate::record::{ExtentId, Location, Snapshot, State};
use crate::space::Pin;

/// The verdict of a verification that did not end in an error. FPRE004 is an
/// error only when the fault persists and the extent could not be repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The media bytes match the record.
    Ok {
        /// Failed reads of the stable version before one succeeded (transient),
        /// those after which the store wrote an inline write's bytes again
        /// included.
        transient: u32,
    },
    /// The record kept changing under the verifier (`raced_limit` fresh snapshots):
    /// not a fault; try again later.
    Raced,
    /// Nothing to verify: the extent is vacant.
    Vacant,
    /// The extent is already quarantined (and a retried remap found no good copy).
    Quarantined,
    /// A persistent fault was found (every re-read of one stable version failed),
    /// and the extent was quarantined and remapped from a verified good copy: it is
    /// readable again at a fresh location. Also the verdict when the remap of an
    /// extent quarantined earlier succeeds.
    Repaired {
        /// The location that failed; marked bad, it is never handed out again.
        faulted: Location,
        /// The record as the remap committed it (its new location; same generation).
        remapped: Snapshot,
    },
}

/// Rewrites of an inline write's bytes ([`IoRequest::RewriteHeld`]) one
/// verification asks for before its retries count (the count starts again
/// after a race, with the fresh snapshot). Each failed writeback that dropped
/// the pages meanwhile needs one; background writeback may fail any number of
/// times, but a burst of failures that outlasts three rewrites is a device
/// failing, and a bound keeps a location that reads wrong whatever is written
/// there a fault, found after the usual retries.
const HELD_REWRITES: u32 = 3;

/// One verification of one extent.
#[derive(Debug)]
pub(crate) struct VerifyOp {
    id: ExtentId,
    policy: IntegrityPolicy,
    /// Fresh snapshots taken after races.
    raced: u32,
    /// Re-reads of the current stable version.
    retries: u32,
    snapshot: Option<Snapshot>,
    pin: Option<Pin>,
    /// The snapshot of a persistent fault, for the repair that follows FPRE004.
    faulted: Option<Snapshot>,
    /// Times an inline write's bytes were written again
    /// ([`IoRequest::RewriteHeld`]) in this episode.
    rewrites: u32,
    /// Waiting for that rewrite before the next read.
    rewriting: bool,
    /// The emulator's mutant: check the bytes read for one snapshot against the
    /// checksum of a second, later snapshot (the bug class this crate prevents).
    #[cfg(feature = "sim")]
    split_snapshot: bool,
    /// The mutant's location, fixed at the first check of the episode.
    #[cfg(feature = "sim")]
    location_from_first: Option<crate::record::Location>,
}

impl VerifyOp {
    pub(crate) fn new(id: ExtentId, policy: IntegrityPolicy) -> Self {
        VerifyOp {
            id,
            policy,
            raced: 0,
            retries: 0,
            snapshot: None,
            pin: None,
            faulted: None,
            rewrites: 0,
            rewriting: false,
            #[cfg(feature = "sim")]
            split_snapshot: false,
            #[cfg(feature = "sim")]
            location_from_first: None,
        }
    }

    /// The weakened verifier the emulator must catch: location from the first
    /// snapshot of the episode, checksum and version from a fresh one at each check.
    #[cfg(feature = "sim")]
    pub(crate) fn weakened(mut self) -> Self {
        self.split_snapshot = true;
        self
    }

    /// Races seen (fresh snapshots taken), for statistics.
    pub(crate) fn raced(&self) -> u32 {
        self.raced
    }

    /// Re-reads of stable versions, for statistics.
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// The mutant: a second snapshot supplies checksum, generation and version for
    /// the bytes read at the first one's location.
    #[cfg(feature = "sim")]
    fn mutant_second_snapshot(&mut self, core: &Core, read_for: Snapshot) -> Snapshot {
        if !self.split_snapshot {
            return read_for;
        }
        self.location_from_first = Some(self.location_from_first.unwrap_or(read_for.location()));
        core.table.snapshot(self.id).unwrap_or(read_for)
    }

    /// The last snapshot whose location was read (the device a fault is charged to).
    pub(crate) fn verified(&self) -> Option<Snapshot> {
        self.snapshot
    }

    /// The snapshot whose location failed persistently, after FPRE004.
    pub(crate) fn faulted(&self) -> Option<Snapshot> {
        self.faulted
    }

    fn read(&mut self, snapshot: Snapshot) -> Step<Verdict> {
        self.snapshot = Some(snapshot);
        Step::Io(IoRequest::Read(snapshot.location()))
    }

    fn unpin(&mut self, core: &Core) {
        if let Some(pin) = self.pin.take() {
            core.reclaimer.unpin(pin);
        }
    }

    /// Re-checks a cached copy of the same generation (memory bit flips) and drops
    /// it if it no longer matches.
    fn check_cached_copy(&self, core: &Core, snapshot: &Snapshot) {
        if let Some((generation, bytes)) = core.cache.peek(self.id)
            && generation == snapshot.generation()
            && snapshot.check(&bytes).is_err()
        {
            core.cache.remove(self.id, generation);
        }
    }
}

impl Machine for VerifyOp {
    type Output = Verdict;

    fn start(&mut self, core: &Core) -> Step<Verdict> {
        if self.raced > self.policy.raced_limit() {
            return Step::Done(Ok(Verdict::Raced));
        }
        self.retries = 0;
        self.rewrites = 0;
        let pin = core.reclaimer.pin();
        let snapshot = match core.table.snapshot(self.id) {
            Ok(s) => s,
            Err(err) => {
                core.reclaimer.unpin(pin);
                return Step::Done(Err(err));
            }
        };
        let verdict = match snapshot.state() {
            State::Vacant => Some(Verdict::Vacant),
            State::Quarantined => Some(Verdict::Quarantined),
            State::Durable | State::Compacting => None,
        };
        if let Some(verdict) = verdict {
            core.reclaimer.unpin(pin);
            return Step::Done(Ok(verdict));
        }
        self.pin = Some(pin);
        self.read(snapshot)
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Verdict> {
        // The read's pin is held until its outcome is decided: a location that
        // failed every re-read is marked bad before the pin goes (see
        // `decide`), so that no commit can free it and have it handed out
        // again before the repair marks it.
        let pin = self.pin.take();
        let step = self.decide(core, result);
        if let Some(pin) = pin {
            core.reclaimer.unpin(pin);
        }
        step
    }

    fn on_backoff(&mut self, core: &Core) -> Step<Verdict> {
        self.again(core)
    }

    fn abandon(&mut self, core: &Core) {
        self.unpin(core);
    }
}

impl VerifyOp {
    /// The outcome of a read, under its pin.
    fn decide(&mut self, core: &Core, result: IoResult) -> Step<Verdict> {
        if std::mem::take(&mut self.rewriting) {
            // Read the same version again, as after a backoff.
            return self.again(core);
        }
        let Some(snapshot) = self.snapshot else {
            return Step::Done(Err(Error::Internal {
                what: "verify: event out of order",
            }));
        };
        let IoResult::Read(result) = result else {
            return Step::Done(Err(Error::Internal {
                what: "verify: event out of order",
            }));
        };
        #[cfg(feature = "sim")]
        let snapshot = self.mutant_second_snapshot(core, snapshot);
        let checked = result.and_then(|bytes| snapshot.check(&bytes));
        let err = match checked {
            Ok(()) => {
                self.check_cached_copy(core, &snapshot);
                // A read the store had to write again failed too.
                return Step::Done(Ok(Verdict::Ok {
                    transient: self.retries + self.rewrites,
                }));
            }
            Err(err) => err,
        };
        // Only what the media may have done counts toward the retry limit: a
        // read refused for another reason (the store closing its device
        // files under a verify, FPRE017) ends the verification with that
        // error, never with FPRE004 and a quarantine.
        if !err.is_media_fault() {
            return Step::Done(Err(err));
        }
        let stable = core
            .table
            .snapshot(self.id)
            .is_ok_and(|now| now.version() == snapshot.version());
        if !stable {
            self.raced += 1;
            return self.start(core);
        }
        // An inline write whose only durable copy is its journal record: a
        // failed writeback of its device may have dropped its pages before the
        // store heard of it and wrote them again. Put them back now and read
        // again at once: not a fault, and not a retry (the retries are for
        // the faults that remain).
        if self.rewrites < HELD_REWRITES && core.write_back.mends(snapshot.location(), &err) {
            self.rewrites += 1;
            self.rewriting = true;
            return Step::Io(IoRequest::RewriteHeld(snapshot.location()));
        }
        if self.retries >= self.policy.retry_limit() {
            // Still the record's location (the version is unchanged) and
            // still pinned: marked now, it can never be handed out again.
            core.mark_bad(snapshot.location());
            self.faulted = Some(snapshot);
            return Step::Done(Err(Error::RetryLimitExceeded {
                extent: self.id,
                location: snapshot.location(),
                attempts: self.retries + 1,
                last: err.to_string(),
            }));
        }
        self.retries += 1;
        Step::Backoff(self.policy.backoff_us(self.retries))
    }

    /// Reads the same version again after a backoff (or a rewrite), or
    /// starts over if the record moved on.
    fn again(&mut self, core: &Core) -> Step<Verdict> {
        let Some(before) = self.snapshot else {
            return Step::Done(Err(Error::Internal {
                what: "verify: event out of order",
            }));
        };
        #[cfg(feature = "sim")]
        if let Some(location) = self.location_from_first {
            // The mutant re-reads the first snapshot's location, no race check.
            self.pin = Some(core.reclaimer.pin());
            return Step::Io(IoRequest::Read(location));
        }
        let pin = core.reclaimer.pin();
        match core.table.snapshot(self.id) {
            Ok(now) if now.version() == before.version() => {
                self.pin = Some(pin);
                self.read(now)
            }
            _ => {
                core.reclaimer.unpin(pin);
                self.raced += 1;
                self.start(core)
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::protocol::test_support;
    use crate::record::Tag;
    use crate::space::Placement;

    /// A location that failed every re-read is marked bad by the verification
    /// itself, while its read's pin still holds it: a write that commits and
    /// retires it before the repair starts cannot have it handed out again.
    #[test]
    fn a_location_that_failed_every_re_read_is_marked_bad_before_its_pin_goes() {
        let core = Core::for_tests();
        let id = ExtentId(3);
        let faulted = test_support::commit(&core, id, 1, Tag::EMPTY);
        let mut op = VerifyOp::new(id, IntegrityPolicy::default());
        let eio = || {
            IoResult::Read(Err(Error::Io {
                device: 0,
                op: "read",
                kind: std::io::ErrorKind::Other,
                message: "EIO".into(),
            }))
        };
        let mut step = op.start(&core);
        // Bounded: the policy's retry limit, then the verdict.
        let outcome = (0..1000)
            .find_map(|_| {
                step = match std::mem::replace(&mut step, Step::Backoff(0)) {
                    Step::Io(IoRequest::Read(_)) => op.on_io(&core, eio()),
                    Step::Backoff(_) => op.on_backoff(&core),
                    Step::Done(result) => return Some(result),
                    other => panic!("unexpected step {other:?}"),
                };
                None
            })
            .expect("a verdict");
        assert!(
            matches!(outcome, Err(Error::RetryLimitExceeded { .. })),
            "{outcome:?}"
        );
        assert!(core.allocator.is_bad(faulted.location()));
        // A write commits before any repair runs, and retires the location.
        test_support::commit(&core, id, 2, Tag::EMPTY);
        core.retire(faulted.location());
        let length = faulted.location().length;
        let next = (core.allocate(length, Placement::Any)).expect("space");
        assert_ne!(next, faulted.location());
    }
}
