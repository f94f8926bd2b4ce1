//! One emulator run ([`World`]): its actors and their clocks, and the scheduler
//! that runs their events in virtual time.
//!
//! The rest of the run lives beside it: the operations in flight ([`op`]), the
//! driver that steps their machines and carries out their I/O ([`driver`]),
//! prefetches that claim their loads ahead ([`claims`]), crashes and reopens
//! ([`reopen`]), and the checker ([`checker`]).

mod actors;
mod checker;
mod claims;
mod device_sync;
mod driver;
mod op;
mod reopen;

use super::config::{Protocol, SimConfig};
use super::crash::{self, Crashes};
use super::emulated_journal::{EmulatedJournal, EmulatedJournalConfig, Lane};
use super::fabric::Fabric;
use super::history::History;
use super::legacy::Legacy;
use super::model::Model;
use super::report::{Report, Trace};
use crate::backend::SyncBook;
use crate::cache::{ClaimQueue, Flight};
use crate::journal::open::Geometry;
use crate::journal::plan::PlanMutants;
use crate::protocol::{Core, IoRequest};
use crate::record::ExtentId;
use crate::space::{Allocator, Health, Reclaimer};
use crate::sync::Arc;
use crate::table::{ExtentTable, TableConfig};
use op::{ActiveOp, Input};
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

#[derive(Debug)]
enum Event {
    Actor(usize),
    Io(usize, IoRequest),
    /// A data sync of a device, started at its request, ends (see
    /// `Fabric::begin_sync`).
    Sync(usize, u16, device_sync::SyncStart),
    /// One device sync of a metadata lane's step ends; the devices after it
    /// are synced next.
    DeviceSynced(Lane, u16, device_sync::SyncStart, Vec<u16>),
    Backoff(usize),
    /// A prefetch that claimed its load starts it (it waited as a hint waits in
    /// the store's queue).
    Begin(usize),
    /// A sync acknowledged early completes: the device's writes become durable
    /// (only with [`SimConfig::early_sync_ack`]).
    Flush(u16),
    /// The current step of a metadata lane completes.
    Meta(Lane),
    /// The journal failed: the store is closed and opened again (the data devices
    /// keep their unsynced writes; the metadata loses what a power cut would).
    Reopen,
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
    /// Per slot, the overlapped writes' markers its append carried: the
    /// locations behind them retire once it is acknowledged, as the store's
    /// append does (`Core::retire_behind_markers`).
    carried: std::collections::HashMap<usize, Vec<crate::journal::Entry>>,
    /// Where claimed prefetches wait for their run (see [`claims`]).
    claim_queue: Arc<ClaimQueue>,
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
            read_chunk: crash::READ_CHUNK,
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
                    reopen_without_marker: cfg.reopen_without_marker,
                    torn_as_corrupt: cfg.torn_as_corrupt,
                    stale_as_current: cfg.stale_as_current,
                    stale_head_as_current: cfg.stale_head_as_current,
                    missing_journal_as_empty: cfg.missing_journal_as_empty,
                    remove_named_image: cfg.remove_named_image,
                    checkpoint_without_device_sync: cfg.checkpoint_without_device_sync,
                    sync_devices_before_image: cfg.sync_devices_before_image,
                    reopen_without_redo: cfg.reopen_without_redo,
                    restore_during_release: cfg.restore_during_release,
                    batch_not_atomic: cfg.batch_not_atomic,
                    trust_unsynced: cfg.trust_unsynced,
                },
                latency: cfg.latency,
                transient_ppm: cfg.faults.transient_ppm,
                disk_full_ppm: cfg.faults.disk_full_ppm,
                reserve_bytes: cfg.metadata_reserve_bytes,
                recycle: cfg.recycle_journals,
            },
            ChaCha8Rng::seed_from_u64(seed ^ 0x10C0_0000_7E57_0000),
        );
        let mut crashes = Crashes::new(
            if fixed { cfg.crashes } else { 0 },
            cfg.crash_spacing,
            ChaCha8Rng::seed_from_u64(seed ^ 0xC4A5_4000_0000_0BAD),
        );
        let fabric_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xFAB1_1C00_D15C_0000);
        let sync_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5F1C_0000_D0AB_1E00);
        let mut fabric = Fabric::new(cfg.devices, cfg.latency, cfg.faults, fabric_rng, sync_rng);
        // The store is created as `Store::open` creates it (a crash may cut that
        // short too); a directory the emulator built itself always recovers.
        let (table, allocator) = match crash::recover(
            &mut meta,
            &mut fabric,
            &mut crashes,
            &geometry,
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
            cache: claims::new_cache(&cfg),
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
                relocation_drops_tag: cfg.relocation_drops_tag,
                certain_after_image: cfg.certain_after_image,
                // A loom mutant: the emulator runs a machine's step at once.
                batch_proposals_apart: false,
                sync_covers_later_writes: cfg.sync_covers_later_writes,
                delete_retires_early: cfg.delete_retires_early,
            },
            events: Default::default(),
            proposals: Default::default(),
            space_low: Default::default(),
            inline_write_max: cfg.inline_write_max,
            write_back: Default::default(),
            tags: Default::default(),
            overlap_data_sync: cfg.overlap_data_sync,
            overlaps: Default::default(),
            rescued: Default::default(),
            episodes: Default::default(),
            keep_on_listener_panic: false,
            kept_for_listeners: Default::default(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
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
            carried: Default::default(),
            claim_queue: claims::new_queue(),
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
        self.report.journals_recycled = self.meta.recycled;
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
                    match result {
                        crate::protocol::IoResult::Done(r) if self.pairing(slot) => {
                            self.answer_pair(slot, Some(r), None)
                        }
                        result => self.dispatch(slot, Input::Io(result)),
                    }
                }
                Event::Sync(slot, device, start) => {
                    let result = self.end_device_sync(device, start);
                    match self.pairing(slot) {
                        true => self.answer_pair(slot, Some(result), None),
                        false => {
                            self.dispatch(slot, Input::Io(crate::protocol::IoResult::Done(result)))
                        }
                    }
                }
                Event::DeviceSynced(lane, device, start, rest) => {
                    self.device_synced(lane, device, start, rest)
                }
                Event::Backoff(slot) => self.dispatch(slot, Input::Backoff),
                Event::Begin(slot) => self.begin_claimed(slot),
                Event::Flush(device) => self.fabric.flush(device),
                Event::Reopen => {
                    // After a failure the engine restarts the process (the page
                    // cache keeps what the failed sync kept, dirty or clean: the
                    // reopen must make it durable), or the machine reboots (what a
                    // power cut would have left).
                    let reboot = self.crashes.rng.random_bool(0.5);
                    if reboot {
                        self.meta.dir.crash(&mut self.crashes.rng);
                        self.fabric.crash(&mut self.crashes.rng);
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
