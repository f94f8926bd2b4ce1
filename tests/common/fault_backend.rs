//! A fault-injecting [`Backend`] shared by the integration tests, in the style of
//! RocksDB's `FaultInjectionTestFS`: one wrapper around a real backend (a
//! [`MemBackend`] unless a test picks another) whose faults a test switches on
//! while it runs, rather than one hand-written backend per test.
//!
//! It counts every call ([`FaultBackend::calls`]) and can:
//!
//! * **fail or panic** the `nth` call of an operation counted from now
//!   ([`FaultBackend::inject_nth`]), or every call by a cycling script
//!   ([`FaultBackend::script`]);
//! * **fail reads of a location** a number of times (a transient fault,
//!   [`FaultBackend::fail_reads_at`]);
//! * **flip bytes** read from a location (a fault at rest that stays put across
//!   retries, [`FaultBackend::flip_reads_at`]);
//! * **hold a call** until the test releases it ([`FaultBackend::gate_read_at`],
//!   [`FaultBackend::gate_next`]): the test learns on a channel that the call
//!   entered the backend, so two threads' steps are ordered without timing;
//! * **serve good copies** ([`FaultBackend::add_replica`]) to remap;
//! * **slow every read** ([`FaultBackend::set_read_delay`]) to build a backlog of
//!   prefetch work; a delay never decides an outcome by itself.
//!
//! Injected failures are `Error::Io` (kind `Other`, message `injected`); injected
//! panics carry a message starting with `injected backend panic`. `trim` keeps
//! every byte (the trait's default), as the hand-written backends this replaces
//! did.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses its own subset of the shared helpers, so an expect would be unfulfilled in some of them"
)]

use extentmeta::{Backend, Bytes, Error, ExtentId, Location, MemBackend, Result};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

/// A backend operation, as faults and counts name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Sync,
    GoodCopy,
}

impl Op {
    fn index(self) -> usize {
        self as usize
    }

    /// The name an injected error or panic gives the operation.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Sync => "sync",
            Op::GoodCopy => "good_copy",
        }
    }
}

/// What an injected fault makes a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// Go on normally.
    Pass,
    /// Return an injected `Error::Io` (a `good_copy` returns `None`).
    Fail,
    /// Panic with `injected backend panic in <op>`.
    Panic,
    /// Return `Error::Shutdown`, as the store's own device files do once
    /// `close` closed them: not a media fault.
    Shutdown,
    /// Return an `Error::Io` of kind `PermissionDenied` (a backend refusing
    /// the call for a while): not a media fault either.
    Refused,
}

/// The test's side of a held call: see [`FaultBackend::gate_read_at`].
#[derive(Debug)]
pub struct Gate {
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

impl Gate {
    /// Blocks until the gated call has entered the backend (it then waits there).
    pub fn wait_entered(&self) {
        self.entered
            .recv()
            .expect("the gated call enters the backend");
    }

    /// Lets the gated call go on. Dropping the gate does too, so a failing test
    /// never leaves a thread held.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

/// The backend's side of a held call.
#[derive(Debug)]
struct Hold {
    op: Op,
    /// `None`: the next call of `op`, wherever it goes.
    location: Option<Location>,
    entered: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

impl Hold {
    fn matches(&self, op: Op, location: Option<Location>) -> bool {
        self.op == op && (self.location.is_none() || self.location == location)
    }

    /// Says the call entered, then waits for the release (or the gate's drop).
    fn pass(self) {
        let _ = self.entered.send(());
        let _ = self.release.recv();
    }
}

/// The armed faults.
#[derive(Debug, Default)]
struct Faults {
    /// `(op, calls of op left before it fires, what it does)`; each fires once.
    nth: Vec<(Op, u64, Inject)>,
    /// One entry per call of any operation, cycling; empty: no script.
    script: Vec<Inject>,
    /// The script entry of the next call.
    script_next: usize,
    /// Reads of these locations fail while their count is positive.
    failing_reads: HashMap<Location, u32>,
    /// Reads of these locations return their first byte inverted.
    flipped: HashSet<Location>,
    holds: Vec<Hold>,
    /// Good copies by (extent, content generation).
    replicas: HashMap<(ExtentId, u64), Vec<u8>>,
}

impl Faults {
    /// What the script and the `nth` faults say about this call of `op`.
    fn verdict(&mut self, op: Op) -> Inject {
        let mut verdict = Inject::Pass;
        if !self.script.is_empty() {
            verdict = self.script[self.script_next % self.script.len()];
            self.script_next += 1;
        }
        // Bounded: one pass over the armed faults; each call counts once in each,
        // and fires at most one (another due now fires at the next call).
        let mut fired = None;
        for (i, (armed_op, left, inject)) in self.nth.iter_mut().enumerate() {
            if *armed_op == op {
                *left = left.saturating_sub(1);
                if *left == 0 && fired.is_none() {
                    fired = Some((i, *inject));
                }
            }
        }
        if let Some((i, inject)) = fired {
            self.nth.remove(i);
            if verdict == Inject::Pass {
                verdict = inject;
            }
        }
        verdict
    }

    /// Whether this read of `location` is one of its injected transient failures.
    fn transient_read_failure(&mut self, location: Location) -> bool {
        match self.failing_reads.get_mut(&location) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// The fault-injecting wrapper around `inner`.
#[derive(Debug)]
pub struct FaultBackend<B = MemBackend> {
    inner: B,
    /// Calls so far, by [`Op::index`].
    calls: [AtomicU64; 4],
    read_delay_us: AtomicU64,
    faults: Mutex<Faults>,
}

impl FaultBackend {
    /// A fault-injecting backend over a fresh `MemBackend` of `devices` devices.
    pub fn new(devices: u16) -> Arc<Self> {
        FaultBackend::over(MemBackend::new(devices))
    }
}

impl<B: Backend> FaultBackend<B> {
    /// A fault-injecting backend over `inner`, with no fault armed.
    pub fn over(inner: B) -> Arc<Self> {
        Arc::new(FaultBackend {
            inner,
            calls: Default::default(),
            read_delay_us: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
        })
    }

    /// The wrapped backend (e.g. to corrupt a `MemBackend`'s bytes at rest).
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Calls of `op` so far, faulted or not.
    pub fn calls(&self, op: Op) -> u64 {
        // SeqCst: tests compare counts taken around other threads' calls.
        self.calls[op.index()].load(Ordering::SeqCst)
    }

    /// The `nth` (1-based) call of `op` counted from now does `inject`, once.
    pub fn inject_nth(&self, op: Op, nth: u64, inject: Inject) {
        assert!(nth > 0, "calls are counted from 1");
        self.faults().nth.push((op, nth, inject));
    }

    /// Every call of any operation from now takes the next entry of `script`,
    /// cycling (an empty script injects nothing).
    pub fn script(&self, script: Vec<Inject>) {
        let mut faults = self.faults();
        faults.script = script;
        faults.script_next = 0;
    }

    /// The next `times` reads of `location` fail (a transient fault).
    pub fn fail_reads_at(&self, location: Location, times: u32) {
        self.faults().failing_reads.insert(location, times);
    }

    /// Every read of `location` from now returns its first byte inverted (the
    /// media at rest went bad there; a copy elsewhere reads clean).
    pub fn flip_reads_at(&self, location: Location) {
        self.faults().flipped.insert(location);
    }

    /// Drops every armed failure: `inject_nth`, the script, transient reads and
    /// flips. Gates, replicas and the read delay stay.
    pub fn disarm(&self) {
        let mut faults = self.faults();
        faults.nth.clear();
        faults.script.clear();
        faults.failing_reads.clear();
        faults.flipped.clear();
    }

    /// The next read of `location` is held in the backend until the returned
    /// gate is released.
    pub fn gate_read_at(&self, location: Location) -> Gate {
        self.gate(Op::Read, Some(location))
    }

    /// The next call of `op` is held in the backend until the returned gate is
    /// released.
    pub fn gate_next(&self, op: Op) -> Gate {
        self.gate(op, None)
    }

    /// `good_copy(extent, generation)` returns `bytes` from now.
    pub fn add_replica(&self, extent: ExtentId, generation: u64, bytes: Vec<u8>) {
        self.faults().replicas.insert((extent, generation), bytes);
    }

    /// Every read sleeps `delay` before it reads.
    pub fn set_read_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).expect("a delay under 584 000 years");
        self.read_delay_us.store(us, Ordering::SeqCst);
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        // Never poisoned: nothing panics while holding it (injected panics are
        // raised after it is released).
        self.faults.lock().expect("fault switches")
    }

    fn gate(&self, op: Op, location: Option<Location>) -> Gate {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        self.faults().holds.push(Hold {
            op,
            location,
            entered: entered_tx,
            release: release_rx,
        });
        Gate {
            entered: entered_rx,
            release: release_tx,
        }
    }

    /// Counts a call of `op`, holds it if a gate is armed for it, then says what
    /// the script and the `nth` faults inject.
    fn enter(&self, op: Op, location: Option<Location>) -> Inject {
        self.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        let hold = {
            let mut faults = self.faults();
            let at = faults.holds.iter().position(|h| h.matches(op, location));
            at.map(|i| faults.holds.remove(i))
        };
        if let Some(hold) = hold {
            hold.pass();
        }
        self.faults().verdict(op)
    }

    /// `Ok` to go on, or the injected error; panics if `inject` says so.
    fn act(inject: Inject, op: Op, device: u16) -> Result<()> {
        match inject {
            Inject::Pass => Ok(()),
            Inject::Fail => Err(injected(device, op.name())),
            Inject::Panic => panic!("injected backend panic in {}", op.name()),
            Inject::Shutdown => Err(Error::Shutdown),
            Inject::Refused => Err(Error::Io {
                device,
                op: op.name(),
                kind: std::io::ErrorKind::PermissionDenied,
                message: "refused for a while".into(),
            }),
        }
    }
}

/// The error an injected failure returns.
fn injected(device: u16, op: &'static str) -> Error {
    Error::Io {
        device,
        op,
        kind: std::io::ErrorKind::Other,
        message: "injected".into(),
    }
}

impl<B: Backend> Backend for FaultBackend<B> {
    fn device_count(&self) -> u16 {
        self.inner.device_count()
    }

    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
        let inject = self.enter(Op::Read, Some(location));
        Self::act(inject, Op::Read, location.device)?;
        let (transient, flip) = {
            let mut faults = self.faults();
            let transient = faults.transient_read_failure(location);
            (transient, faults.flipped.contains(&location))
        };
        if transient {
            return Err(injected(location.device, "read"));
        }
        let delay_us = self.read_delay_us.load(Ordering::SeqCst);
        if delay_us > 0 {
            std::thread::sleep(Duration::from_micros(delay_us));
        }
        self.inner.read_at(location, buf)?;
        if flip && let Some(first) = buf.first_mut() {
            *first ^= 0xFF;
        }
        Ok(())
    }

    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
        let inject = self.enter(Op::Write, Some(location));
        Self::act(inject, Op::Write, location.device)?;
        self.inner.write_at(location, bytes)
    }

    fn sync(&self, device: u16) -> Result<()> {
        let inject = self.enter(Op::Sync, None);
        Self::act(inject, Op::Sync, device)?;
        self.inner.sync(device)
    }

    fn good_copy(&self, extent: ExtentId, generation: u64) -> Option<Bytes> {
        let inject = self.enter(Op::GoodCopy, None);
        Self::act(inject, Op::GoodCopy, 0).ok()?;
        let replica = self.faults().replicas.get(&(extent, generation)).cloned();
        match replica {
            Some(bytes) => Some(Bytes::from(bytes.as_slice())),
            None => self.inner.good_copy(extent, generation),
        }
    }
}
