//! The event loop: actors, operations, the fabric and the checker in virtual time.

use super::config::{Protocol, SimConfig};
use super::crash::{self, Crashes};
use super::emulated_journal::{self, EmulatedJournal, EmulatedJournalConfig, Lane};
use super::fabric::Fabric;
use super::history::{History, ReadCheck, value};
use super::legacy::{self, Legacy};
use super::model::{self, Model};
use super::report::{Report, Trace};
use crate::backend::{SyncBook, SyncEnd};
use crate::bytes::Bytes;
use crate::cache::{Cache, Flight, FlightOutcome, Priority};
use crate::error::Error;
use crate::journal::Entry;
use crate::journal::open::Geometry;
use crate::journal::plan::PlanMutants;
use crate::journal::{self, plan::FsOp};
use crate::protocol::{
    CompactOp, CompactOutcome, Core, Fault, IoRequest, IoResult, Machine, ReadOp, ReadSession,
    Step, Tally, Verdict, VerifySession, WriteOp,
};
use crate::record::{ExtentId, Location, State, checksum};
use crate::space::{Allocator, Health, Reclaimer};
use crate::sync::Arc;
use crate::table::{ExtentTable, TableConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Steps one run may take before it is declared hung.
const MAX_STEPS: u64 = 5_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActorKind {
    Writer,
    Reader,
    Prefetcher,
    Compactor,
    Scrubber,
}

/// An actor's view of time: skewed and drifting.
#[derive(Debug, Clone, Copy)]
struct Clock {
    skew_ns: i64,
    drift_ppm: i64,
}

impl Clock {
    fn local_ns(&self, now: u64) -> u64 {
        let drifted = now as i128 + now as i128 * self.drift_ppm as i128 / 1_000_000;
        (drifted + self.skew_ns as i128).max(0) as u64
    }

    /// Global time that passes while this clock measures `local_ns`.
    fn global_duration(&self, local_ns: u64) -> u64 {
        (local_ns as i128 * 1_000_000 / (1_000_000 + self.drift_ppm as i128)).max(1) as u64
    }
}

#[derive(Debug)]
struct Actor {
    kind: ActorKind,
    clock: Clock,
    cursor: u64,
}

/// The output of any operation.
#[derive(Debug)]
enum Out {
    Bytes(Bytes),
    Written(u64),
    Compacted(CompactOutcome),
    Unit,
}

/// One actor's operation. The integrity ladder runs inside the protocol's own
/// sessions (a demand read: [`ReadSession`]; a scrub: [`VerifySession`]), exactly
/// as the `Store` runs them: this driver only moves bytes and time.
#[derive(Debug)]
enum Op {
    /// A prefetch (never climbs the ladder).
    Read(ReadOp),
    /// A demand read with its ladder.
    Session(Box<ReadSession>),
    Write(WriteOp, Bytes),
    Compact(CompactOp),
    Verify(Box<VerifySession>),
    Legacy(legacy::Op),
}

impl Op {
    /// The device error the operation found since the last step, and the
    /// persistent fault it found so far (fixed protocol's ladder only).
    fn ladder(&mut self) -> (Option<Location>, Option<Fault>) {
        match self {
            Op::Session(m) => (m.take_device_error(), m.fault()),
            Op::Verify(m) => (m.take_device_error(), m.fault()),
            _ => (None, None),
        }
    }
}

/// What an operation is fed.
#[derive(Debug)]
enum Input {
    Start,
    Io(IoResult),
    Wait(FlightOutcome),
    Backoff,
}

/// An operation in flight, in its slot of `World::slots`: who started it, on
/// which extent, when, and what the checker tracks of it.
#[derive(Debug)]
struct ActiveOp {
    actor: usize,
    extent: ExtentId,
    started_ns: u64,
    op: Op,
    /// Whether the operation's persistent fault was checked against the fabric.
    fault_checked: bool,
    /// Reads of the current operation that an injected transient error failed, in
    /// a row (reset by any other read result): tells an FPRE004 that such a streak
    /// alone caused from a real one.
    injected_streak: u32,
}

#[derive(Debug)]
enum Event {
    Actor(usize),
    Io(usize, IoRequest),
    Backoff(usize),
    /// A sync acknowledged early completes: the device's writes become durable
    /// (only with [`SimConfig::early_sync_ack`]).
    Flush(u16),
    /// The current step of a metadata lane completes.
    Meta(Lane),
    /// The journal failed: the store is closed and opened again (the data devices
    /// keep their unsynced writes; the metadata loses what a power cut would).
    Reopen,
}

fn step_machine<M: Machine>(
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

/// One emulator run.
pub(crate) struct World {
    cfg: SimConfig,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    core: Core,
    legacy: Legacy,
    fabric: Fabric,
    history: History,
    actors: Vec<Actor>,
    slots: Vec<Option<ActiveOp>>,
    free_slots: Vec<usize>,
    waiters: Vec<(usize, Arc<Flight>)>,
    rng: ChaCha8Rng,
    started: u32,
    last_version: Vec<u64>,
    /// Per extent, the newest generation a read served since the last recovery:
    /// a recovery must not take it back (invariant 14: nothing a crash can take
    /// back is served as committed).
    served: Vec<u64>,
    /// Per device, the store's sync verdicts since the last reopen.
    sync_books: Vec<SyncBook>,
    pub(crate) report: Report,
    trace: Trace,
    /// The metadata directory and journal, the power cuts, the durability model.
    meta: EmulatedJournal,
    crashes: Crashes,
    model: Model,
    geometry: Geometry,
    /// A recovery failed: the run is over.
    dead: bool,
}

impl World {
    pub(crate) fn new(seed: u64, cfg: SimConfig) -> Self {
        let w = cfg.workload;
        let table = TableConfig::builder()
            .max_extents(u64::from(w.extents.max(1)))
            .segment_len(64)
            .build()
            .unwrap_or_default();
        let geometry = Geometry {
            table,
            devices: cfg.devices,
            capacity: 1 << 40,
            block_size: 512,
        };
        let mut report = Report::new(seed, cfg.protocol);
        let fixed = cfg.protocol == Protocol::Fixed;
        let mut meta = EmulatedJournal::new(
            EmulatedJournalConfig {
                devices: cfg.devices,
                max_bytes: cfg.journal_max_bytes,
                ack_before_sync: cfg.ack_before_journal_sync,
                plan_mutants: PlanMutants {
                    pointer_before_checkpoint_sync: cfg.pointer_before_checkpoint_sync,
                    reopen_without_sync: cfg.reopen_without_sync,
                    torn_as_corrupt: cfg.torn_as_corrupt,
                    missing_journal_as_empty: cfg.missing_journal_as_empty,
                },
                latency: cfg.latency,
                transient_ppm: cfg.faults.transient_ppm,
                disk_full_ppm: cfg.faults.disk_full_ppm,
                reserve_bytes: cfg.metadata_reserve_bytes,
            },
            ChaCha8Rng::seed_from_u64(seed ^ 0x10C0_0000_7E57_0000),
        );
        let mut crashes = Crashes::new(
            if fixed { cfg.crashes } else { 0 },
            cfg.crash_spacing,
            ChaCha8Rng::seed_from_u64(seed ^ 0xC4A5_4000_0000_0BAD),
        );
        // The store is created as `Store::open` creates it (a crash may cut that
        // short too); a directory the emulator built itself always recovers.
        let (table, allocator) = match crash::recover(
            &mut meta,
            &mut crashes,
            &geometry,
            &vec![None; usize::from(cfg.devices)],
            &mut report,
            true,
        ) {
            Ok(r) => (r.table, r.allocator),
            Err(v) => {
                report.violations.push(v);
                (
                    ExtentTable::new(table),
                    Allocator::new(cfg.devices, geometry.capacity, geometry.block_size),
                )
            }
        };
        let core = Core {
            table,
            cache: Cache::new(u64::from(w.extents) * 256, 4),
            allocator,
            reclaimer: Reclaimer::new(),
            health: Health::new(
                cfg.devices,
                cfg.policy.device_error_threshold,
                cfg.policy.device_error_window_secs * 1000,
            ),
            mutants: crate::protocol::Mutants {
                retire_before_journal: cfg.reuse_before_durable,
                commit_before_journal: cfg.commit_before_journal,
                image_table_first: false,
            },
            events: Default::default(),
            proposals: Default::default(),
            space_low: Default::default(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let fabric_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xFAB1_1C00_D15C_0000);
        let sync_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5F1C_0000_D0AB_1E00);
        let fabric = Fabric::new(cfg.devices, cfg.latency, cfg.faults, fabric_rng, sync_rng);
        let kinds = [
            (ActorKind::Writer, w.writers),
            (ActorKind::Reader, w.readers),
            (ActorKind::Prefetcher, w.prefetchers),
            (ActorKind::Compactor, w.compactors),
            (ActorKind::Scrubber, w.scrubbers),
        ];
        let mut actors = Vec::new();
        for (kind, n) in kinds {
            for _ in 0..n {
                let skew = cfg.clocks.skew_ns as i64;
                let drift = i64::from(cfg.clocks.drift_ppm);
                let clock = Clock {
                    skew_ns: if skew > 0 {
                        rng.random_range(-skew..=skew)
                    } else {
                        0
                    },
                    drift_ppm: if drift > 0 {
                        rng.random_range(-drift..=drift)
                    } else {
                        0
                    },
                };
                actors.push(Actor {
                    kind,
                    clock,
                    cursor: 0,
                });
            }
        }
        World {
            report,
            meta,
            crashes,
            model: Model::default(),
            geometry,
            dead: false,
            trace: Trace::new(cfg.trace_lines),
            last_version: vec![0; w.extents.max(1) as usize],
            served: vec![0; w.extents.max(1) as usize],
            sync_books: new_books(&cfg),
            legacy: Legacy::new(w.extents.max(1), cfg.devices),
            history: History::new(w.extents.max(1)),
            cfg,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            core,
            fabric,
            actors,
            slots: Vec::new(),
            free_slots: Vec::new(),
            waiters: Vec::new(),
            rng,
            started: 0,
        }
    }

    /// Queues `event` at `at` (callers add with `saturating_add`: bounded
    /// configurations never reach `u64::MAX` ns, and a run that did would end at
    /// the step bound, not overflow).
    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// Runs the workload to completion and checks everything at the end.
    pub(crate) fn run(mut self) -> Report {
        self.populate();
        for a in 0..self.actors.len() {
            let delay = self.think(a);
            self.schedule(self.now.saturating_add(delay), Event::Actor(a));
        }
        self.drain();
        self.final_check();
        self.report.journal_syncs = self.meta.syncs;
        self.report.checkpoints = self.meta.checkpoints;
        self.report.reserve_releases = self.meta.reserve_releases();
        self.report.virtual_ns = self.now;
        self.report.trace = self.trace.lines();
        self.report.trace_hash = self.trace.hash();
        self.report
    }

    fn start_actors(&mut self) {
        for a in 0..self.actors.len() {
            let delay = self.think(a);
            self.schedule(self.now.saturating_add(delay), Event::Actor(a));
        }
    }

    /// Writes every extent once before the actors start.
    fn populate(&mut self) {
        for e in 0..self.cfg.workload.extents {
            self.start_write(usize::MAX, ExtentId(u64::from(e)));
            self.drain();
        }
        // Populated: power cuts may come from now on.
        self.crashes.armed = true;
    }

    fn drain(&mut self) {
        while let Some(((at, _), event)) = self.queue.pop_first() {
            self.now = self.now.max(at);
            self.report.steps += 1;
            if self.report.steps > MAX_STEPS {
                self.violation("run did not terminate (step bound reached)".into());
                return;
            }
            // Any step may be cut short by a power failure; metadata steps weigh
            // more (see `Crashes::tick`).
            let units = if matches!(event, Event::Meta(_)) {
                8
            } else {
                1
            };
            if self.crashes.tick(units) {
                self.crash_now();
                continue;
            }
            match event {
                Event::Actor(a) => self.actor_turn(a),
                Event::Io(slot, request) => {
                    let result = self.perform(slot, request);
                    self.dispatch(slot, Input::Io(result));
                }
                Event::Backoff(slot) => self.dispatch(slot, Input::Backoff),
                Event::Flush(device) => self.fabric.flush(device),
                Event::Reopen => {
                    // After a failure the engine restarts the process (the page
                    // cache keeps what the failed sync kept, dirty or clean: the
                    // reopen must make it durable), or the machine reboots (what a
                    // power cut would have left).
                    let reboot = self.crashes.rng.random_bool(0.5);
                    if reboot {
                        self.meta.dir.crash(&mut self.crashes.rng);
                    }
                    self.reopen(reboot);
                }
                Event::Meta(lane) => {
                    let core = &self.core;
                    let fx = self.meta.complete(lane, || core.image());
                    self.meta_effects(fx);
                }
            }
            self.wake_waiters();
        }
    }

    fn think(&mut self, actor: usize) -> u64 {
        let mean = self.cfg.workload.think_ns.max(1);
        let local = self.rng.random_range(0..2 * mean);
        self.actors[actor].clock.global_duration(local)
    }

    fn random_extent(&mut self) -> ExtentId {
        ExtentId(u64::from(
            self.rng.random_range(0..self.cfg.workload.extents.max(1)),
        ))
    }

    fn actor_turn(&mut self, a: usize) {
        if self.started >= self.cfg.workload.ops {
            return;
        }
        self.started += 1;
        self.report.ops += 1;
        self.maybe_flip_bits();
        let kind = self.actors[a].kind;
        let legacy = self.cfg.protocol == Protocol::Legacy;
        let extent = match kind {
            ActorKind::Scrubber => {
                let n = u64::from(self.cfg.workload.extents.max(1));
                let c = self.actors[a].cursor;
                self.actors[a].cursor = (c + 1) % n;
                ExtentId(c)
            }
            _ => self.random_extent(),
        };
        if kind == ActorKind::Writer {
            return self.start_write(a, extent);
        }
        let op = match (kind, legacy) {
            (ActorKind::Reader, false) => Op::Session(Box::new(self.read_session(extent))),
            (ActorKind::Prefetcher, false) => Op::Read(ReadOp::new(extent, Priority::Prefetch)),
            (ActorKind::Compactor, false) => Op::Compact(CompactOp::new(extent)),
            (ActorKind::Scrubber, false) => Op::Verify(Box::new(self.verify_session(extent))),
            (ActorKind::Reader, true) => Op::Legacy(legacy::Op::read(extent, false)),
            (ActorKind::Prefetcher, true) => Op::Legacy(legacy::Op::read(extent, true)),
            (ActorKind::Compactor, true) => Op::Legacy(legacy::Op::compact(extent)),
            (ActorKind::Scrubber, true) => Op::Legacy(legacy::Op::verify(extent, self.cfg.policy)),
            (ActorKind::Writer, _) => return,
        };
        self.start(a, extent, op);
    }

    fn verify_session(&self, extent: ExtentId) -> VerifySession {
        let op = VerifySession::new(extent, self.cfg.policy);
        if self.cfg.weaken_verifier {
            op.weakened()
        } else {
            op
        }
    }

    fn read_session(&self, extent: ExtentId) -> ReadSession {
        let op = ReadSession::new(extent, self.cfg.policy);
        if self.cfg.weaken_verifier {
            op.weakened()
        } else {
            op
        }
    }

    fn start_write(&mut self, actor: usize, extent: ExtentId) {
        let (lo, hi) = self.cfg.workload.value_bytes;
        let len = self.rng.random_range(lo.max(32)..=hi.max(lo.max(32))) as usize;
        let op = if self.cfg.protocol == Protocol::Legacy {
            Op::Legacy(legacy::Op::write(extent, len))
        } else {
            // As `Store::write`: while the metadata reserve is in use, try to make
            // it again first (the write is refused if that fails).
            if self.meta.space_low() && self.meta.restore_reserve() {
                self.core.set_space_low(false);
            }
            // Single-threaded: no commit can slip in between here and BeginWrite.
            let generation = self
                .core
                .table
                .snapshot(extent)
                .map_or(0, |s| s.generation())
                + 1;
            let bytes = value(extent, generation, len);
            Op::Write(WriteOp::new(extent, bytes.clone()), bytes)
        };
        self.report.writes += 1;
        self.start(actor, extent, op);
    }

    fn start(&mut self, actor: usize, extent: ExtentId, op: Op) {
        let slot = ActiveOp {
            actor,
            extent,
            started_ns: self.now,
            op,
            fault_checked: false,
            injected_streak: 0,
        };
        let idx = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.dispatch(idx, Input::Start);
    }

    fn dispatch(&mut self, idx: usize, input: Input) {
        let Some(mut slot) = self.slots.get_mut(idx).and_then(Option::take) else {
            return self.violation(format!("event for an empty slot {idx}"));
        };
        let extent = slot.extent;
        self.trace.record(
            self.now,
            idx,
            trace_code(&slot.op),
            extent,
            input_code(&input),
        );
        let core = &self.core;
        let step = match &mut slot.op {
            Op::Read(m) => step_machine(m, core, input, Out::Bytes),
            Op::Session(m) => step_machine(&mut **m, core, input, Out::Bytes),
            Op::Write(m, _) => step_machine(m, core, input, |s| Out::Written(s.generation())),
            Op::Compact(m) => step_machine(m, core, input, Out::Compacted),
            Op::Verify(m) => step_machine(&mut **m, core, input, |_: Verdict| Out::Unit),
            Op::Legacy(op) => {
                let input = match input {
                    Input::Start => legacy::Input::Start,
                    Input::Io(r) => legacy::Input::Io(r),
                    Input::Backoff => legacy::Input::Backoff,
                    Input::Wait(_) => legacy::Input::Backoff,
                };
                match op.step(&mut self.legacy, input) {
                    Step::Io(r) => Step::Io(r),
                    Step::Wait(f) => Step::Wait(f),
                    Step::Backoff(us) => Step::Backoff(us),
                    Step::Done(r) => Step::Done(r.map(|o| match o {
                        legacy::Out::Bytes(b) => Out::Bytes(b),
                        legacy::Out::Generation(g) => Out::Written(g),
                        legacy::Out::Unit => Out::Unit,
                    })),
                }
            }
        };
        self.absorb_legacy_commits();
        self.after_ladder_step(&mut slot);
        match step {
            Step::Io(request) => {
                let latency = self.latency_of(&request);
                match request {
                    IoRequest::Journal(entries) => {
                        self.slots[idx] = Some(slot);
                        return self.journal(idx, extent, entries);
                    }
                    IoRequest::Sync(device) if self.cfg.early_sync_ack => {
                        // The mutant fabric: acknowledged now, durable only later.
                        self.schedule(
                            self.now.saturating_add(latency.max(1)),
                            Event::Flush(device),
                        );
                        self.schedule(self.now, Event::Io(idx, request));
                    }
                    _ => self.schedule(self.now.saturating_add(latency), Event::Io(idx, request)),
                }
                self.slots[idx] = Some(slot);
            }
            Step::Wait(flight) => {
                self.waiters.push((idx, flight));
                self.slots[idx] = Some(slot);
            }
            Step::Backoff(us) => {
                let clock = self.clock_of(slot.actor);
                let at = self
                    .now
                    .saturating_add(clock.global_duration(us.saturating_mul(1000)));
                self.schedule(at, Event::Backoff(idx));
                self.slots[idx] = Some(slot);
            }
            Step::Done(result) => self.finish(idx, slot, result),
        }
        if self.cfg.protocol == Protocol::Fixed {
            self.check_record(Some(extent));
        }
    }

    fn clock_of(&self, actor: usize) -> Clock {
        self.actors.get(actor).map_or(
            Clock {
                skew_ns: 0,
                drift_ppm: 0,
            },
            |a| a.clock,
        )
    }

    fn latency_of(&mut self, request: &IoRequest) -> u64 {
        match request {
            IoRequest::Read(l) | IoRequest::Write(l, _) => self.fabric.service_ns(l.device),
            IoRequest::Sync(d) => self.fabric.service_ns(*d) + self.fabric.ack_delay_ns(),
            IoRequest::GoodCopy(..) | IoRequest::Journal(_) => self.cfg.latency.floor_ns,
        }
    }

    /// Carries out the I/O `request` of the operation in slot `idx` as it completes.
    fn perform(&mut self, idx: usize, request: IoRequest) -> IoResult {
        match request {
            IoRequest::Read(location) => {
                let (result, injected) = self.fabric.read(location);
                if let Some(Some(slot)) = self.slots.get_mut(idx) {
                    slot.injected_streak = if injected {
                        slot.injected_streak + 1
                    } else {
                        0
                    };
                }
                IoResult::Read(result)
            }
            IoRequest::Write(location, bytes) => {
                if self.fabric.roll_misdirect()
                    && let Some(victim) = self.victim_location(location)
                {
                    self.fabric.misdirect(location, victim, bytes);
                    return IoResult::Done(Ok(()));
                }
                IoResult::Done(self.fabric.write(location, bytes))
            }
            // The mutant's early acknowledgment: the flush comes later.
            IoRequest::Sync(_) if self.cfg.early_sync_ack => IoResult::Done(Ok(())),
            IoRequest::Sync(device) => IoResult::Done(self.sync(device)),
            IoRequest::GoodCopy(id, generation) => IoResult::Read(
                self.fabric
                    .replica(id, generation)
                    .ok_or(Error::Quarantined { extent: id }),
            ),
            // Journal requests go to the metadata writer (`journal`), never here.
            IoRequest::Journal(_) => IoResult::Done(Err(Error::Internal {
                what: "a journal request reached the data fabric",
            })),
        }
    }

    /// A sync of `device` through the store's sync book (`backend::fs`): a failed
    /// sync fails every later one until reopen, whatever the fabric answers then.
    fn sync(&mut self, device: u16) -> crate::Result<()> {
        // The legacy protocol predates the store: its syncs are the fabric's.
        let fixed = self.cfg.protocol == Protocol::Fixed;
        let Some(book) = self
            .sync_books
            .get_mut(usize::from(device))
            .filter(|_| fixed)
        else {
            return self.fabric.sync(device);
        };
        let was_failed = book.failed();
        let result = book.begin().and_then(|ticket| {
            let synced = self
                .fabric
                .sync(device)
                .map_err(|e| std::io::Error::other(e.to_string()));
            match book.end(device, ticket, synced) {
                SyncEnd::Verdict(verdict) => verdict,
                // The emulator's syncs never overlap.
                SyncEnd::Wait(_) => Err(Error::Internal {
                    what: "an emulated sync overlapped another",
                }),
            }
        });
        if result.is_err() && book.failed() {
            if !was_failed {
                // The device file stays failed until a reopen: the engine's answer
                // (as to a failed journal) is to reopen the store.
                self.report.device_sync_failures += 1;
                self.schedule(self.now + 1_000_000, Event::Reopen);
            }
            self.core.device_sync_failed(device);
        }
        result
    }

    /// A machine asks for its records to be made durable; the answer comes with
    /// the group commit that covers it. A write's bytes are durable already, so the
    /// replica source keeps them. Its commit becomes visible when the machine makes
    /// the transition, after that answer (`finish` records it in the history);
    /// only the `commit_before_journal` mutant commits first, and then the history
    /// must record it now.
    fn journal(&mut self, idx: usize, extent: ExtentId, entries: Vec<Entry>) {
        if let Some(Some(ActiveOp {
            op: Op::Write(_, bytes),
            ..
        })) = self.slots.get(idx)
        {
            let bytes = bytes.clone();
            for e in &entries {
                if let Entry::Put(r) | Entry::Proposed(r) = e
                    && r.generation > self.history.current(r.extent)
                {
                    if self.cfg.commit_before_journal {
                        self.history.commit(r.extent, r.generation, self.now);
                    }
                    self.fabric
                        .add_replica(r.extent, r.generation, bytes.clone());
                }
            }
        }
        self.model.issue(idx, &entries);
        let fx = self.meta.append(idx, &entries);
        self.meta_effects(fx);
        if self.cfg.protocol == Protocol::Fixed {
            self.check_record(Some(extent));
        }
    }

    fn meta_effects(&mut self, fx: emulated_journal::Effects) {
        if let Some(error) = fx.plan_error {
            self.violation(error);
        }
        self.core.set_space_low(self.meta.space_low());
        for (lane, delay) in fx.schedule {
            self.schedule(self.now + delay, Event::Meta(lane));
        }
        if fx.poisoned {
            self.report.journal_failures += 1;
            self.schedule(self.now + 1_000_000, Event::Reopen);
        }
        for slot in fx.acks {
            self.model.ack(slot);
            self.dispatch(slot, Input::Io(IoResult::Done(Ok(()))));
        }
        for (slot, err) in fx.failed {
            if !matches!(err, Error::OutcomeUnknown { .. }) {
                // Refused before anything of it was written.
                self.model.refuse(slot);
            }
            self.dispatch(slot, Input::Io(IoResult::Done(Err(err))));
        }
    }

    /// Loses the journal the current checkpoint starts (removed, emptied or cut to
    /// its header) and checks that the store's open refuses the directory with a
    /// typed error (FPRE023) instead of opening it as empty; then puts the
    /// directory back as it was (a restore from a backup).
    fn lose_metadata(&mut self, device_lens: &[Option<u64>]) {
        let Some(number) = (self.meta.dir.read(journal::files::CURRENT))
            .and_then(|p| journal::decode_pointer(&p).ok())
        else {
            return;
        };
        let file = journal::files::journal(number);
        if self.meta.dir.read(&file).is_none() {
            return;
        }
        let saved = self.meta.dir.clone();
        // A journal of only its header is whole when cut to its header.
        let holds_records = saved
            .read(&file)
            .is_some_and(|b| b.len() > journal::HEADER_LEN);
        let (damage, how) = match self.crashes.rng.random_range(0..3) {
            0 => (FsOp::Remove { file: file.clone() }, "removed"),
            1 => (
                FsOp::Truncate {
                    file: file.clone(),
                    len: 0,
                },
                "emptied",
            ),
            _ if holds_records => (
                FsOp::Truncate {
                    file: file.clone(),
                    len: journal::HEADER_LEN as u64,
                },
                "cut to its header",
            ),
            _ => (FsOp::Remove { file: file.clone() }, "removed"),
        };
        if let Err(e) = self.meta.dir.apply(&damage) {
            return self.violation(format!("losing {file} failed: {e}"));
        }
        let names = self.meta.dir.list();
        let dir = &self.meta.dir;
        let opened = journal::open::open(
            &names,
            |name| Ok(dir.read(name)),
            device_lens,
            &self.geometry,
            self.meta.max_bytes(),
            (
                self.meta.reserve_bytes(),
                crash::reserve_len(&self.meta.dir),
            ),
            self.meta.plan_mutants(),
        );
        match opened {
            Err(err) if err.code() == "FPRE023" => self.report.lost_metadata_refused += 1,
            Err(err) => self.violation(format!(
                "{file} {how}: the open failed with {err}, not FPRE023"
            )),
            Ok(_) => self.violation(format!(
                "{file} {how}: the open accepted the directory (as an empty store)"
            )),
        }
        self.meta.dir = saved;
    }

    /// A crash: every operation in flight is dropped as it stands (no `abandon`:
    /// nothing runs after a crash). One crash in three kills the process only: the
    /// OS keeps every write, synced or not (a later power cut may still lose the
    /// unsynced ones). The others cut the power: unsynced data and metadata are
    /// lost or torn. Then the store recovers, the checker compares the recovered
    /// state with the model, and the workload resumes with fresh actors.
    fn crash_now(&mut self) {
        self.report.crashes += 1;
        self.report.crashes_in_rotation += u64::from(self.meta.rotating());
        let kill = self.crashes.rng.random_range(0..3) == 0;
        let what = match (kill, self.meta.rotating()) {
            (true, _) => "process kill",
            (false, true) => "power cut in rotation",
            (false, false) => "power cut",
        };
        self.trace
            .record(self.now, usize::MAX, "crash", ExtentId(0), what);
        if kill {
            self.report.process_kills += 1;
        } else {
            self.fabric.crash(&mut self.crashes.rng);
            self.meta.dir.crash(&mut self.crashes.rng);
        }
        self.reopen(!kill);
    }

    /// Closes the store (every operation in flight dropped) and opens it again:
    /// recovery, the checker, fresh actors.
    fn reopen(&mut self, durable: bool) {
        self.queue.clear();
        self.slots.clear();
        self.free_slots.clear();
        self.waiters.clear();
        // The device files are opened afresh: no failure is remembered.
        self.sync_books = new_books(&self.cfg);
        let device_lens = self.fabric.device_lens(self.cfg.devices);
        if self.cfg.lose_metadata
            && self.cfg.protocol == Protocol::Fixed
            && self.crashes.rng.random_range(0..4) == 0
        {
            self.lose_metadata(&device_lens);
        }
        let rebuilt = match crash::recover(
            &mut self.meta,
            &mut self.crashes,
            &self.geometry,
            &device_lens,
            &mut self.report,
            durable,
        ) {
            Ok(r) => r,
            Err(v) => {
                self.violation(v);
                self.dead = true;
                return;
            }
        };
        for v in model::check(&self.model, &rebuilt.image, &rebuilt.table, &self.fabric) {
            self.violation(v);
        }
        self.model.reset(&rebuilt.image);
        for e in 0..self.cfg.workload.extents {
            let id = ExtentId(u64::from(e));
            let s = rebuilt.table.snapshot(id).ok();
            let recovered = s.map_or(0, |s| s.generation());
            let served = std::mem::take(&mut self.served[e as usize]);
            if recovered < served && self.cfg.protocol == Protocol::Fixed {
                self.violation(format!(
                    "{id}: a read served generation {served}, which the crash took back (recovered {recovered})"
                ));
            }
            self.history.rewind(id, recovered, self.now);
            self.last_version[e as usize] = s.map_or(0, |s| s.version());
        }
        self.core = Core {
            table: rebuilt.table,
            cache: Cache::new(u64::from(self.cfg.workload.extents) * 256, 4),
            allocator: rebuilt.allocator,
            reclaimer: Reclaimer::new(),
            health: Health::new(
                self.cfg.devices,
                self.cfg.policy.device_error_threshold,
                self.cfg.policy.device_error_window_secs * 1000,
            ),
            mutants: self.core.mutants,
            events: Default::default(),
            proposals: Default::default(),
            space_low: Default::default(),
        };
        self.core.set_space_low(self.meta.space_low());
        self.start_actors();
    }

    /// The committed location of some other extent, for a misdirected write.
    fn victim_location(&mut self, not: Location) -> Option<Location> {
        let id = self.random_extent();
        let location = self.committed_location(id)?;
        (location != not && location.length > 0).then_some(location)
    }

    fn committed_location(&self, id: ExtentId) -> Option<Location> {
        match self.cfg.protocol {
            Protocol::Fixed => {
                let s = self.core.table.snapshot(id).ok()?;
                s.is_readable().then_some(s.location())
            }
            Protocol::Legacy => {
                let r = self.legacy.records.get(id.0 as usize)?;
                (r.generation > 0 && !r.quarantined).then_some(r.location)
            }
        }
    }

    fn maybe_flip_bits(&mut self) {
        if !self.fabric.roll_bitflip() {
            return;
        }
        let id = self.random_extent();
        if let Some(location) = self.committed_location(id) {
            self.fabric.flip(location);
        }
    }

    fn wake_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.waiters.len() {
            if let Some(outcome) = self.waiters[i].1.outcome() {
                let (slot, _) = self.waiters.remove(i);
                self.dispatch(slot, Input::Wait(outcome));
            } else {
                i += 1;
            }
        }
    }

    fn absorb_legacy_commits(&mut self) {
        for (id, generation, bytes) in std::mem::take(&mut self.legacy.commits) {
            self.history.commit(id, generation, self.now);
            self.fabric.add_replica(id, generation, bytes);
        }
    }

    /// After every step of the ladder's sessions: charge the device error it found
    /// (at the actor's own skewed, drifting clock, before the repair goes on), and
    /// check a persistent fault against the fabric once, when it is found.
    fn after_ladder_step(&mut self, slot: &mut ActiveOp) {
        let (device_error, fault) = slot.op.ladder();
        if let Some(location) = device_error {
            let now_ms = self.clock_of(slot.actor).local_ns(self.now) / 1_000_000;
            if let Some(entry) = self.core.charge_device_error(location, now_ms)
                && self.cfg.protocol == Protocol::Fixed
            {
                let fx = self.meta.append_detached(&[entry]);
                self.meta_effects(fx);
            }
        }
        if let Some(Fault { location, attempts }) = fault
            && !slot.fault_checked
        {
            slot.fault_checked = true;
            self.check_fpre004(slot, location, attempts);
        }
    }

    /// FPRE004 must sit on an injected persistent fault, or on a streak of injected
    /// transient errors longer than the retry limit.
    fn check_fpre004(&mut self, slot: &ActiveOp, location: Location, attempts: u32) {
        if self.fabric.is_faulty(location) {
            self.report.fpre004_real += 1;
        } else if slot.injected_streak >= attempts.max(1) {
            // Every attempt was a read that an injected transient error failed: a
            // streak beyond the retry limit, not a race.
            self.report.fpre004_transient_streak += 1;
        } else {
            self.report.fpre004_spurious += 1;
            self.violation(format!(
                "spurious FPRE004 on {} at {location}: no injected fault there",
                slot.extent
            ));
        }
    }

    /// Adds what one ladder session did: the same counts the `Store` keeps.
    fn add_tally(&mut self, tally: Tally) {
        self.report.quarantines += u64::from(tally.quarantines);
        self.report.remaps += u64::from(tally.remaps);
    }

    /// An operation finished: account for it and free the slot.
    fn finish(&mut self, idx: usize, slot: ActiveOp, result: crate::Result<Out>) {
        let prefetch = self.actors.get(slot.actor).map(|a| a.kind) == Some(ActorKind::Prefetcher);
        match (&slot.op, result) {
            (Op::Write(_, bytes), Ok(Out::Written(generation))) => {
                self.history.commit(slot.extent, generation, self.now);
                self.fabric
                    .add_replica(slot.extent, generation, bytes.clone());
                self.report.writes_ok += 1;
            }
            (Op::Legacy(legacy::Op::Write(_)), Ok(Out::Written(_))) => {
                // Legacy commits were absorbed into the history as they became visible.
                self.report.writes_ok += 1;
            }
            (Op::Session(m), result) => {
                let tally = m.tally();
                self.add_tally(tally);
                self.on_read_done(&slot, result, false);
            }
            (Op::Read(_) | Op::Legacy(legacy::Op::Read(_)), result) => {
                self.on_read_done(&slot, result, prefetch);
            }
            (Op::Compact(_), Ok(Out::Compacted(CompactOutcome::Committed(_)))) => {
                self.report.compactions += 1;
            }
            (Op::Verify(m), _) => {
                let tally = m.tally();
                self.add_tally(tally);
            }
            (
                Op::Legacy(legacy::Op::Verify(_)),
                Err(Error::RetryLimitExceeded {
                    location, attempts, ..
                }),
            ) => {
                self.check_fpre004(&slot, location, attempts);
                self.report.quarantines += 1;
            }
            _ => {}
        }
        self.free_slots.push(idx);
        if slot.actor != usize::MAX {
            let delay = self.think(slot.actor);
            self.schedule(self.now.saturating_add(delay), Event::Actor(slot.actor));
        }
    }

    fn on_read_done(&mut self, slot: &ActiveOp, result: crate::Result<Out>, prefetch: bool) {
        match result {
            Ok(Out::Bytes(bytes)) => {
                if let Some((id, generation)) = super::history::decode(&bytes)
                    && let Some(served) = self.served.get_mut(id.0 as usize)
                {
                    *served = (*served).max(generation);
                }
                match self
                    .history
                    .check_read(slot.extent, &bytes, slot.started_ns, self.now)
                {
                    ReadCheck::Fresh => {}
                    ReadCheck::Stale { got } => {
                        self.report.stale_served += 1;
                        let current = self.history.current(slot.extent);
                        self.violation(format!(
                            "stale bytes served: {} generation {got} (current {current}) to a read started at {} ns",
                            slot.extent, slot.started_ns
                        ));
                    }
                    ReadCheck::Corrupt => {
                        self.report.corrupt_served += 1;
                        self.violation(format!("corrupt bytes served for {}", slot.extent));
                    }
                }
                if prefetch {
                    // A prefetch that found its extent cached went nowhere near the
                    // media: count only those that loaded (or waited on a load).
                    let latency = self.now - slot.started_ns;
                    if latency > 0 {
                        self.report.prefetch_latency_ns.push(latency);
                    }
                } else {
                    self.report.reads += 1;
                    self.report.reads_ok += 1;
                }
            }
            // Nothing was ever written there: not a read of data.
            Ok(_) | Err(Error::NotReadable { .. }) => {}
            Err(err) => {
                if !prefetch {
                    self.report.reads += 1;
                    *self.report.read_errors.entry(err.code()).or_default() += 1;
                }
            }
        }
    }

    /// Invariants of one record after a step (fixed protocol).
    fn check_record(&mut self, extent: Option<ExtentId>) {
        let Some(id) = extent else { return };
        let Ok(s) = self.core.table.snapshot(id) else {
            return self.violation(format!("{id}: snapshot failed"));
        };
        let n = self.last_version.len();
        let last = &mut self.last_version[id.0 as usize % n];
        if s.version() < *last || s.version() % 2 != 0 {
            let v = s.version();
            let l = *last;
            return self.violation(format!("{id}: version went from {l} to {v}"));
        }
        *last = s.version();
        if s.state() == State::Compacting && s.write_pending() {
            return self.violation(format!("{id}: Compacting with a write pending"));
        }
        if s.generation() != self.history.current(id) {
            let h = self.history.current(id);
            return self.violation(format!(
                "{id}: record generation {} but history {h}",
                s.generation()
            ));
        }
        if s.state() != State::Vacant {
            // Faults are damage the verifier must find, not loss: compare the bytes
            // last written there, and the durable ones, without the fault overlay.
            let location = s.location();
            let len = location.length as usize;
            let holds = |b: Option<&Bytes>| {
                b.is_some_and(|b| {
                    b.len() >= len && checksum(id, s.generation(), &b[..len]) == s.checksum()
                })
            };
            let last_written = holds(
                self.fabric
                    .volatile(location)
                    .or_else(|| self.fabric.durable(location)),
            );
            if !last_written {
                self.violation(format!(
                    "{id}: data lost: {location} does not hold generation {}",
                    s.generation()
                ));
            } else if !holds(self.fabric.durable(location)) {
                self.violation(format!(
                    "{id}: generation {} committed at {location} before it was durable (its sync not acknowledged)",
                    s.generation()
                ));
            }
        }
    }

    fn final_check(&mut self) {
        if self.dead {
            return;
        }
        if !self.waiters.is_empty() || self.slots.iter().any(Option::is_some) {
            self.violation("operations still in flight at the end (hung)".into());
        }
        if self.cfg.protocol == Protocol::Fixed {
            for e in 0..self.cfg.workload.extents {
                self.check_record(Some(ExtentId(u64::from(e))));
            }
        }
    }

    fn violation(&mut self, what: String) {
        self.report
            .violations
            .push(format!("t={} ns: {what}", self.now));
    }
}

/// A short name of an input, for the trace.
fn input_code(input: &Input) -> &'static str {
    match input {
        Input::Start => "start",
        Input::Io(IoResult::Read(Ok(_))) => "read ok",
        Input::Io(IoResult::Read(Err(_))) => "read failed",
        Input::Io(IoResult::Done(Ok(()))) => "write/ack ok",
        Input::Io(IoResult::Done(Err(_))) => "write failed",
        Input::Wait(_) => "load finished",
        Input::Backoff => "backoff over",
    }
}

/// A short name of an operation, for the trace.
fn trace_code(op: &Op) -> &'static str {
    match op {
        Op::Read(_) => "read",
        Op::Write(..) => "write",
        Op::Compact(_) => "compact",
        Op::Session(_) => "read",
        Op::Verify(_) => "verify",
        Op::Legacy(legacy::Op::Read(_)) => "legacy-read",
        Op::Legacy(legacy::Op::Write(_)) => "legacy-write",
        Op::Legacy(legacy::Op::Compact(_)) => "legacy-compact",
        Op::Legacy(legacy::Op::Verify(_)) => "legacy-verify",
    }
}

/// A fresh sync book per device (with the `trust_sync_after_failure` mutant's
/// setting).
fn new_books(cfg: &SimConfig) -> Vec<SyncBook> {
    (0..cfg.devices)
        .map(|_| {
            let mut book = SyncBook::default();
            book.trusting = cfg.trust_sync_after_failure;
            book
        })
        .collect()
}
