//! An operation in flight: the machine one actor runs ([`Op`]), what it is fed
//! ([`Input`]) and gives back ([`Out`]), and its slot ([`ActiveOp`]).

use crate::bytes::Bytes;
use crate::cache::FlightOutcome;
use crate::protocol::{
    BatchWriteOp, CompactOp, CompactOutcome, Core, DeleteOp, Fault, IoResult, Machine, ReadOp,
    ReadSession, Step, VerifySession, WriteOp,
};
use crate::record::{ExtentId, Location};
use crate::sim::legacy;

/// The output of any operation.
#[derive(Debug)]
pub(super) enum Out {
    Bytes(Bytes),
    Written(u64),
    /// A batch's writes: each extent and the generation it committed.
    Batch(Vec<(ExtentId, u64)>),
    Compacted(CompactOutcome),
    /// A delete committed: the extent is vacant from this generation on.
    Deleted(u64),
    Unit,
}

/// One actor's operation. The integrity ladder runs inside the protocol's own
/// sessions (a demand read: [`ReadSession`]; a scrub: [`VerifySession`]), exactly
/// as the `Store` runs them: the emulator's driver only moves bytes and time.
#[derive(Debug)]
pub(super) enum Op {
    /// A prefetch (never climbs the ladder).
    Read(ReadOp),
    /// A demand read with its ladder.
    Session(Box<ReadSession>),
    Write(WriteOp, Bytes),
    /// A batch of changes of distinct extents: each write's bytes, `None`
    /// for a delete.
    Batch(BatchWriteOp, Vec<(ExtentId, Option<Bytes>)>),
    Compact(CompactOp),
    Delete(DeleteOp),
    Verify(Box<VerifySession>),
    Legacy(legacy::Op),
}

impl Op {
    /// The device error the operation found since the last step, and the
    /// persistent fault it found so far (fixed protocol's ladder only).
    pub(super) fn ladder(&mut self) -> (Option<Location>, Option<Fault>) {
        match self {
            Op::Session(m) => (m.take_device_error(), m.fault()),
            Op::Verify(m) => (m.take_device_error(), m.fault()),
            _ => (None, None),
        }
    }
}

/// What an operation is fed.
#[derive(Debug)]
pub(super) enum Input {
    Start,
    Io(IoResult),
    Wait(FlightOutcome),
    Backoff,
}

/// The parts of a sync-and-journal answered so far: the sync's, the journal's.
pub(super) type Pair = (Option<crate::Result<()>>, Option<crate::Result<()>>);

/// An operation in flight, in its slot of `World::slots`: who started it, on
/// which extent, when, and what the checker tracks of it.
#[derive(Debug)]
pub(super) struct ActiveOp {
    pub(super) actor: usize,
    pub(super) extent: ExtentId,
    pub(super) started_ns: u64,
    pub(super) op: Op,
    /// Whether the operation's persistent fault was checked against the fabric.
    pub(super) fault_checked: bool,
    /// Reads of the current operation that an injected transient error failed, in
    /// a row (reset by any other read result): tells an FPRE004 that such a streak
    /// alone caused from a real one.
    pub(super) injected_streak: u32,
    /// What its time went to (read by prefetches' reports).
    pub(super) causes: crate::sim::report::PrefetchSample,
    /// The parts of an `IoRequest::SyncAndJournal` answered so far (sync,
    /// journal), while one is in flight.
    pub(super) pair: Option<Pair>,
}

pub(super) fn step_machine<M: Machine>(
    m: &mut M,
    core: &Core,
    input: Input,
    wrap: fn(M::Output) -> Out,
) -> Step<Out> {
    let step = match input {
        Input::Start => m.start(core),
        Input::Io(r) => m.on_io(core, r),
        Input::Wait(o) => m.on_wait(core, o),
        Input::Backoff => m.on_backoff(core),
    };
    match step {
        Step::Io(r) => Step::Io(r),
        Step::Wait(f) => Step::Wait(f),
        Step::Backoff(us) => Step::Backoff(us),
        Step::Done(r) => Step::Done(r.map(wrap)),
    }
}

/// A short name of an input, for the trace.
pub(super) fn input_code(input: &Input) -> &'static str {
    match input {
        Input::Start => "start",
        Input::Io(IoResult::Read(Ok(_))) => "read ok",
        Input::Io(IoResult::Read(Err(_))) => "read failed",
        Input::Io(IoResult::Done(Ok(()))) => "write/ack ok",
        Input::Io(IoResult::Done(Err(_))) => "write failed",
        Input::Io(IoResult::Both {
            sync: Ok(()),
            journal: Ok(()),
        }) => "sync+journal ok",
        Input::Io(IoResult::Both { .. }) => "sync+journal failed",
        Input::Wait(_) => "load finished",
        Input::Backoff => "backoff over",
    }
}

/// A short name of an operation, for the trace.
pub(super) fn trace_code(op: &Op) -> &'static str {
    match op {
        Op::Read(_) => "read",
        Op::Write(..) => "write",
        Op::Batch(..) => "batch",
        Op::Compact(_) => "compact",
        Op::Delete(_) => "delete",
        Op::Session(_) => "read",
        Op::Verify(_) => "verify",
        Op::Legacy(legacy::Op::Read(_)) => "legacy-read",
        Op::Legacy(legacy::Op::Write(_)) => "legacy-write",
        Op::Legacy(legacy::Op::Compact(_)) => "legacy-compact",
        Op::Legacy(legacy::Op::Verify(_)) => "legacy-verify",
    }
}
