//! The integrity ladder, written once: the sessions that compose the read, verify
//! and repair machines.
//!
//! [`VerifySession`] verifies one extent ([`VerifyOp`]: read, retry with backoff,
//! race detection, and for an inline write no device sync has covered yet, a
//! rewrite from its journal record first) and, on a persistent fault (FPRE004)
//! or a quarantined record,
//! repairs it ([`RepairOp`]: quarantine, remap from a verified good copy).
//! [`ReadSession`] is a demand read that climbs that ladder on a media fault and
//! then reads once more. Both the [`Store`](crate::Store) and the emulator drive
//! these same sessions; the drivers only move bytes and time.
//!
//! Counting comes from the session, not from its drivers: [`Tally`] says what one
//! session did (each quarantine exactly once, whoever wins the remap), and the one
//! device error of a verification episode is handed to the driver through
//! [`Machine::take_device_error`] before the repair starts, so the driver charges it
//! at its own time (real or virtual) and a degraded device is already avoided by
//! the remap.

use super::{Core, IoResult, Machine, ReadOp, RepairOp, RepairOutcome, Step, Verdict, VerifyOp};
use crate::bytes::Bytes;
use crate::cache::{FlightOutcome, Priority};
use crate::error::{Error, Result};
use crate::policy::IntegrityPolicy;
use crate::record::{ExtentId, Location, Snapshot, State};

/// What one session did, for its driver's counters. Every field is a count of
/// this session only; the driver adds them up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Verifications that found the media bytes good.
    pub(crate) verify_ok: u32,
    /// Verifications that met a concurrent commit (a race, never a fault).
    pub(crate) verify_raced: u32,
    /// Verifications whose failures cleared within the retry limit.
    pub(crate) verify_transient: u32,
    /// Re-reads of a stable version after a failed check.
    pub(crate) retries: u32,
    /// Persistent faults found (FPRE004 raised by the verifier).
    pub(crate) fpre004: u32,
    /// Records this session quarantined (exactly once per quarantine).
    pub(crate) quarantines: u32,
    /// Quarantined records this session remapped.
    pub(crate) remaps: u32,
    /// Quarantined records left quarantined (no good copy, or writing it failed).
    pub(crate) remap_failed: u32,
}

/// The evidence of a persistent fault, for the emulator's checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    /// The location that failed every read.
    pub(crate) location: Location,
    /// How many reads of it were tried.
    pub(crate) attempts: u32,
}

/// Why a repair runs: what to answer if it cannot remap.
#[derive(Debug)]
enum Cause {
    /// A persistent fault: FPRE004 stands unless the remap succeeds.
    Fault(Error),
    /// A record found quarantined earlier: the remap is retried.
    Quarantined,
}

#[derive(Debug)]
enum Stage {
    Verifying(VerifyOp),
    Repairing(RepairOp, Cause, Location),
    Finished,
}

/// One verification of one extent with its repair: what [`Store::verify`],
/// the scrubber and a demand read's ladder run.
///
/// [`Store::verify`]: crate::Store::verify
#[derive(Debug)]
pub(crate) struct VerifySession {
    id: ExtentId,
    stage: Stage,
    tally: Tally,
    fault: Option<Fault>,
    device_error: Option<Location>,
    /// This session's membership of its extent's verifications in progress,
    /// from its start until it ends, its repair included, so that one that
    /// began before the fault's quarantine landed sees the charge of the one
    /// that found it (see `episodes`).
    joined: Option<super::episodes::Joined>,
}

/// Splits a step: `Err` with the result if the inner machine finished, else the
/// same request for the session's driver.
fn pending<T, U>(step: Step<T>) -> std::result::Result<Step<U>, Result<T>> {
    match step {
        Step::Io(request) => Ok(Step::Io(request)),
        Step::Wait(flight) => Ok(Step::Wait(flight)),
        Step::Backoff(us) => Ok(Step::Backoff(us)),
        Step::Done(result) => Err(result),
    }
}

fn out_of_order<T>(what: &'static str) -> Step<T> {
    Step::Done(Err(Error::Internal { what }))
}

impl VerifySession {
    pub(crate) fn new(id: ExtentId, policy: IntegrityPolicy) -> Self {
        VerifySession {
            id,
            stage: Stage::Verifying(VerifyOp::new(id, policy)),
            tally: Tally::default(),
            fault: None,
            device_error: None,
            joined: None,
        }
    }

    /// The emulator's weakened verifier (see [`VerifyOp::weakened`]).
    #[cfg(feature = "sim")]
    pub(crate) fn weakened(mut self) -> Self {
        if let Stage::Verifying(op) = self.stage {
            self.stage = Stage::Verifying(op.weakened());
        }
        self
    }

    /// What this session did so far.
    pub(crate) fn tally(&self) -> Tally {
        self.tally
    }

    /// The persistent fault the verifier found, if any (set when FPRE004 is raised,
    /// before the repair starts).
    pub(crate) fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// The verifier finished: count, then answer or repair.
    fn verified(&mut self, core: &Core, op: &VerifyOp, result: Result<Verdict>) -> Step<Verdict> {
        self.tally.retries += op.retries();
        self.tally.verify_raced += u32::from(op.raced() > 0);
        match result {
            Ok(Verdict::Ok { transient }) => {
                self.tally.verify_ok += 1;
                if transient > 0 {
                    self.tally.verify_transient += 1;
                    // Charged to the device actually read, not where the record may
                    // have moved since.
                    if let Some(s) = op.verified() {
                        self.charge(s.location());
                    }
                }
                Step::Done(Ok(Verdict::Ok { transient }))
            }
            Err(Error::RetryLimitExceeded {
                extent,
                location,
                attempts,
                last,
            }) => {
                self.tally.fpre004 += 1;
                self.charge(location);
                self.fault = Some(Fault { location, attempts });
                let err = Error::RetryLimitExceeded {
                    extent,
                    location,
                    attempts,
                    last,
                };
                match op.faulted() {
                    Some(faulted) => self.repair(core, faulted, Cause::Fault(err)),
                    None => Step::Done(Err(err)),
                }
            }
            // Quarantined earlier without a remap: try the remap again.
            Ok(Verdict::Quarantined) => match core.table.snapshot(self.id) {
                Ok(s) if s.state() == State::Quarantined => {
                    self.repair(core, s, Cause::Quarantined)
                }
                _ => Step::Done(Ok(Verdict::Quarantined)),
            },
            other => Step::Done(other),
        }
    }

    /// Charges the device of `location` for the fault found there, unless
    /// another verification of the extent charged it since this one began
    /// (see `episodes`).
    fn charge(&mut self, location: Location) {
        if self.joined.as_ref().is_none_or(|j| j.first_at(location)) {
            self.device_error = Some(location);
        }
    }

    fn repair(&mut self, core: &Core, faulted: Snapshot, cause: Cause) -> Step<Verdict> {
        let mut op = RepairOp::new(faulted);
        let step = op.start(core);
        self.stage = Stage::Repairing(op, cause, faulted.location());
        self.on_repair_step(step)
    }

    /// The repair finished: count, and answer with what it achieved.
    fn repaired(
        &mut self,
        op: &RepairOp,
        cause: Cause,
        faulted: Location,
        result: Result<RepairOutcome>,
    ) -> Step<Verdict> {
        // Counted from what the machine did: a remap that loses a race still
        // quarantined the record once.
        self.tally.quarantines += u32::from(op.quarantined_here());
        let unrepaired = |cause: Cause| match cause {
            Cause::Fault(err) => Err(err),
            Cause::Quarantined => Ok(Verdict::Quarantined),
        };
        Step::Done(match result {
            Ok(RepairOutcome::Remapped(remapped)) => {
                self.tally.remaps += 1;
                Ok(Verdict::Repaired { faulted, remapped })
            }
            // A write (or another repair) committed first: the faulted bytes are no
            // longer the record's.
            Ok(RepairOutcome::Raced) => Ok(Verdict::Raced),
            // The journal could not take the quarantine or the remap (the
            // remap may already show in the table): its own error says what
            // happened to the record, which the fault would hide.
            Err(err) if err.is_journal_refusal() => {
                self.tally.remap_failed += 1;
                Err(err)
            }
            Ok(RepairOutcome::NoGoodCopy(_)) | Err(_) => {
                self.tally.remap_failed += 1;
                unrepaired(cause)
            }
        })
    }

    /// Continues after an inner machine's step.
    fn after(&mut self, core: &Core, step: Step<Verdict>) -> Step<Verdict> {
        match pending(step) {
            Ok(step) => step,
            Err(result) => self.finish_stage(core, result),
        }
    }

    fn finish_stage(&mut self, core: &Core, result: Result<Verdict>) -> Step<Verdict> {
        match std::mem::replace(&mut self.stage, Stage::Finished) {
            Stage::Verifying(op) => self.verified(core, &op, result),
            Stage::Repairing(..) | Stage::Finished => Step::Done(result),
        }
    }

    fn on_repair_step(&mut self, step: Step<RepairOutcome>) -> Step<Verdict> {
        match pending(step) {
            Ok(step) => step,
            Err(result) => match std::mem::replace(&mut self.stage, Stage::Finished) {
                Stage::Repairing(op, cause, faulted) => self.repaired(&op, cause, faulted, result),
                _ => out_of_order("verify session: repair finished out of order"),
            },
        }
    }

    /// Leaves the episode once the session is over.
    fn ended(&mut self, step: Step<Verdict>) -> Step<Verdict> {
        if matches!(step, Step::Done(_)) {
            self.joined = None;
        }
        step
    }
}

impl Machine for VerifySession {
    type Output = Verdict;

    fn start(&mut self, core: &Core) -> Step<Verdict> {
        let step = match &mut self.stage {
            Stage::Verifying(op) => {
                self.joined = Some(core.episodes.join(self.id));
                op.start(core)
            }
            _ => return out_of_order("verify session: started twice"),
        };
        let step = self.after(core, step);
        self.ended(step)
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Verdict> {
        let step = match &mut self.stage {
            Stage::Verifying(op) => {
                let step = op.on_io(core, result);
                self.after(core, step)
            }
            Stage::Repairing(op, ..) => {
                let step = op.on_io(core, result);
                self.on_repair_step(step)
            }
            Stage::Finished => out_of_order("verify session: I/O after the end"),
        };
        self.ended(step)
    }

    fn on_backoff(&mut self, core: &Core) -> Step<Verdict> {
        let step = match &mut self.stage {
            Stage::Verifying(op) => {
                let step = op.on_backoff(core);
                self.after(core, step)
            }
            _ => out_of_order("verify session: backoff outside verification"),
        };
        self.ended(step)
    }

    fn abandon(&mut self, core: &Core) {
        match &mut self.stage {
            Stage::Verifying(op) => op.abandon(core),
            Stage::Repairing(op, ..) => op.abandon(core),
            Stage::Finished => {}
        }
    }

    fn take_device_error(&mut self) -> Option<Location> {
        self.device_error.take()
    }
}

#[derive(Debug)]
enum ReadStage {
    /// The first read.
    First(ReadOp),
    /// The first read met a media fault: the ladder runs.
    /// Boxed: the ladder is the rare path, and it would triple every read's size.
    Verifying(Box<VerifySession>),
    /// The read after the ladder: its answer is the session's.
    Again(ReadOp),
}

/// A demand read that climbs the integrity ladder on a media fault (verify, which
/// retries, quarantines and remaps a persistent fault), then reads once more. Its
/// answer is what the record holds after the ladder: remapped bytes, a verified
/// cached or good copy of a quarantined extent, or a typed error.
#[derive(Debug)]
pub(crate) struct ReadSession {
    id: ExtentId,
    stage: ReadStage,
    /// The ladder's policy, and whether the emulator weakened its verifier; the
    /// ladder itself is built only on a media fault (it is several hundred bytes,
    /// and the hit path should not pay for it).
    policy: IntegrityPolicy,
    #[cfg_attr(
        not(feature = "sim"),
        expect(dead_code, reason = "only the emulator asks")
    )]
    weakened: bool,
    /// Whether the ladder already ran.
    climbed: bool,
    /// What the ladder did, once it finished.
    tally: Tally,
    fault: Option<Fault>,
    /// A device error the ladder found that the driver has not taken yet.
    device_error: Option<Location>,
}

impl ReadSession {
    pub(crate) fn new(id: ExtentId, policy: IntegrityPolicy) -> Self {
        ReadSession {
            id,
            stage: ReadStage::First(ReadOp::new(id, Priority::Demand)),
            policy,
            weakened: false,
            climbed: false,
            tally: Tally::default(),
            fault: None,
            device_error: None,
        }
    }

    /// The emulator's weakened verifier, for the ladder.
    #[cfg(feature = "sim")]
    pub(crate) fn weakened(mut self) -> Self {
        self.weakened = true;
        self
    }

    /// What the ladder did (nothing if the first read succeeded).
    pub(crate) fn tally(&self) -> Tally {
        match &self.stage {
            ReadStage::Verifying(v) => v.tally(),
            _ => self.tally,
        }
    }

    /// The persistent fault the ladder found, if any.
    #[cfg_attr(
        not(feature = "sim"),
        expect(dead_code, reason = "only the emulator asks")
    )]
    pub(crate) fn fault(&self) -> Option<Fault> {
        match &self.stage {
            ReadStage::Verifying(v) => v.fault(),
            _ => self.fault,
        }
    }

    /// Continues after a read's step.
    fn after_read(&mut self, core: &Core, step: Step<Bytes>) -> Step<Bytes> {
        let result = match pending(step) {
            Ok(step) => return step,
            Err(result) => result,
        };
        match (&self.stage, result) {
            (ReadStage::First(_), Err(err)) if err.is_media_fault() => {
                if std::mem::replace(&mut self.climbed, true) {
                    return out_of_order("read session: the ladder ran twice");
                }
                let mut ladder = VerifySession::new(self.id, self.policy);
                #[cfg(feature = "sim")]
                if self.weakened {
                    ladder = ladder.weakened();
                }
                let step = ladder.start(core);
                self.stage = ReadStage::Verifying(Box::new(ladder));
                self.after_verify(core, step)
            }
            (_, result) => Step::Done(result),
        }
    }

    /// Continues after the ladder's step: once it is over, read again. Its verdict
    /// is recorded in the tally; the read's answer is what the record now holds.
    fn after_verify(&mut self, core: &Core, step: Step<Verdict>) -> Step<Bytes> {
        if let Ok(step) = pending::<Verdict, Bytes>(step) {
            return step;
        }
        if let ReadStage::Verifying(ladder) = &mut self.stage {
            self.tally = ladder.tally();
            self.fault = ladder.fault();
            self.device_error = ladder.take_device_error();
        }
        let mut again = ReadOp::new(self.id, Priority::Demand);
        let step = again.start(core);
        self.stage = ReadStage::Again(again);
        self.after_read(core, step)
    }
}

impl Machine for ReadSession {
    type Output = Bytes;

    fn start(&mut self, core: &Core) -> Step<Bytes> {
        let step = match &mut self.stage {
            ReadStage::First(op) => op.start(core),
            _ => return out_of_order("read session: started twice"),
        };
        self.after_read(core, step)
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Bytes> {
        match &mut self.stage {
            ReadStage::First(op) | ReadStage::Again(op) => {
                let step = op.on_io(core, result);
                self.after_read(core, step)
            }
            ReadStage::Verifying(v) => {
                let step = v.on_io(core, result);
                self.after_verify(core, step)
            }
        }
    }

    fn on_wait(&mut self, core: &Core, outcome: FlightOutcome) -> Step<Bytes> {
        match &mut self.stage {
            ReadStage::First(op) | ReadStage::Again(op) => {
                let step = op.on_wait(core, outcome);
                self.after_read(core, step)
            }
            ReadStage::Verifying(_) => out_of_order("read session: the ladder never waits"),
        }
    }

    fn on_backoff(&mut self, core: &Core) -> Step<Bytes> {
        match &mut self.stage {
            ReadStage::Verifying(v) => {
                let step = v.on_backoff(core);
                self.after_verify(core, step)
            }
            _ => out_of_order("read session: a read never backs off"),
        }
    }

    fn abandon(&mut self, core: &Core) {
        match &mut self.stage {
            ReadStage::First(op) | ReadStage::Again(op) => op.abandon(core),
            ReadStage::Verifying(v) => v.abandon(core),
        }
    }

    fn take_device_error(&mut self) -> Option<Location> {
        match &mut self.stage {
            ReadStage::Verifying(v) => v.take_device_error(),
            _ => self.device_error.take(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::protocol::{IoRequest, test_support};

    /// Drives `sessions` in turns, one step each; a session's `n`th read
    /// (from 0) of the extent's location returns its committed bytes if
    /// `good(n)`, else bytes that fail their checksum. Good-copy requests get
    /// none, everything else succeeds. Counts the device errors the sessions
    /// hand to their driver.
    fn drive(
        core: &Core,
        sessions: &mut [VerifySession],
        record: Snapshot,
        good: impl Fn(u32) -> bool,
    ) -> u32 {
        let mut steps: Vec<Option<Step<Verdict>>> =
            sessions.iter_mut().map(|s| Some(s.start(core))).collect();
        let mut reads = vec![0u32; sessions.len()];
        let mut charged = 0;
        // Bounded: each session ends within its retry limit and one repair.
        for _ in 0..1000 {
            for (i, (session, step)) in sessions.iter_mut().zip(steps.iter_mut()).enumerate() {
                charged += u32::from(session.take_device_error().is_some());
                *step = match step.take() {
                    None | Some(Step::Done(_)) => None,
                    Some(Step::Backoff(_)) => Some(session.on_backoff(core)),
                    Some(Step::Io(IoRequest::Read(l))) => {
                        assert_eq!(l, record.location(), "only the extent is read");
                        let bytes = match good(reads[i]) {
                            true => test_support::value(record.extent(), record.generation()),
                            false => Bytes::from(vec![0xEE; l.length as usize]),
                        };
                        reads[i] += 1;
                        Some(session.on_io(core, IoResult::Read(Ok(bytes))))
                    }
                    Some(Step::Io(IoRequest::GoodCopy(id, _))) => {
                        let none = Err(Error::NotReadable { extent: id });
                        Some(session.on_io(core, IoResult::Read(none)))
                    }
                    Some(Step::Io(_)) => Some(session.on_io(core, IoResult::Done(Ok(())))),
                    Some(Step::Wait(_)) => panic!("a verification never waits"),
                };
            }
            if steps.iter().all(Option::is_none) {
                return charged;
            }
        }
        panic!("the sessions did not end");
    }

    /// Verifications of one extent that overlap (the readers of one failed
    /// load each climbing the ladder) charge its device once for what they
    /// found together; verifications that do not overlap are charged each.
    #[test]
    fn overlapping_verifications_of_one_fault_charge_its_device_once() {
        let core = Core::for_tests();
        let policy = IntegrityPolicy::builder()
            .backoff_base_us(0)
            .backoff_max_us(0)
            .build()
            .expect("valid");
        let commit = |id| test_support::commit(&core, ExtentId(id), 1, crate::record::Tag::EMPTY);
        // A transient fault: each session's first read fails, its retry reads
        // the bytes. Two at once: one error; the same two one after the
        // other: two.
        let record = commit(3);
        let first_fails = |n| n > 0;
        let mut both = [
            VerifySession::new(ExtentId(3), policy),
            VerifySession::new(ExtentId(3), policy),
        ];
        assert_eq!(drive(&core, &mut both, record, first_fails), 1);
        assert!(both.iter().all(|s| s.tally().verify_transient == 1));
        for _ in 0..2 {
            let mut alone = [VerifySession::new(ExtentId(3), policy)];
            assert_eq!(drive(&core, &mut alone, record, first_fails), 1);
        }
        // A persistent fault: one error, however the two end (one raises
        // FPRE004 and quarantines; the other raises it too, or meets the
        // quarantine as a race); a later verification meets the quarantine
        // and reads nothing.
        let record = commit(4);
        let mut both = [
            VerifySession::new(ExtentId(4), policy),
            VerifySession::new(ExtentId(4), policy),
        ];
        assert_eq!(drive(&core, &mut both, record, |_| false), 1);
        assert!(both.iter().map(|s| s.tally().fpre004).sum::<u32>() >= 1);
        assert_eq!(both.iter().map(|s| s.tally().quarantines).sum::<u32>(), 1);
        let mut later = [VerifySession::new(ExtentId(4), policy)];
        assert_eq!(drive(&core, &mut later, record, |_| false), 0);
        assert!(core.episodes.is_idle(), "every episode ended");
    }
}
