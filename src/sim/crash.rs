//! Crash testing: the metadata journal in virtual time, power cuts at any step
//! (during group commit, rotation, creation and recovery itself), recovery as
//! [`Store::open`](crate::Store::open) does it, and the checker of invariants 9–11.
//!
//! # The journal in virtual time
//!
//! [`Meta`] runs the same plans as the blocking driver (`store::durable`), one
//! [`FsOp`] per event on a [`SimDir`]: a machine's `IoRequest::Journal` appends its
//! frames to the group-commit buffer; the journal lane writes and syncs the buffer
//! ([`plan::group_commit`]) and acknowledges every operation its sync covered. When
//! the journal passes its bound, the lane instead flushes it and starts the next
//! one ([`plan::new_journal`]); the checkpoint lane then writes a checkpoint of the
//! live table and switches the pointer ([`plan::checkpoint`]) while group commits
//! go on in the new journal, as in the store.
//!
//! # The checker
//!
//! [`Model`] keeps, per extent, the record recovered last (durable) and every record
//! issued to the journal since, each marked once acknowledged. After each recovery
//! [`check`] asserts that every recovered record equals the last acknowledged one
//! or one issued after it (content exactly: never half-applied; a checkpoint may
//! carry a later version of the same content, as a write-pending or compacting
//! record is checkpointed with its committed fields), that nothing acknowledged is
//! missing, that generations only grow, that every referenced location's durable
//! bytes verify their checksum, that no record is compacting or write-pending, and
//! [`recover`] asserts that the rebuild found no location referenced twice and that
//! recovering again, after recovery's own plan ran or was cut short by a crash,
//! gives the same state.

use super::config::Latency;
use super::disk::SimDir;
use super::fabric::Fabric;
use super::report::Report;
use crate::journal::plan::{self, FsOp, PlanMutants};
use crate::journal::{Entry, HEADER_LEN, Image, RecordImage, Recovered, encode_frame, recover_dir};
use crate::protocol::Core;
use crate::record::{ExtentId, Location, State, checksum};
use crate::space::Allocator;
use crate::store::open::{Geometry, rebuild};
use crate::table::ExtentTable;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// The two metadata lanes: group commits and the checkpoint of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Group commits and the switch to a new journal.
    Journal,
    /// Writing a checkpoint and switching the pointer to it.
    Checkpoint,
}

/// Knobs of the metadata driver.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetaConfig {
    pub(crate) devices: u16,
    /// Rotate once the active journal is longer than this.
    pub(crate) max_bytes: u64,
    /// Mutant: acknowledge a group commit once written, before its sync.
    pub(crate) ack_before_sync: bool,
    pub(crate) plan_mutants: PlanMutants,
    pub(crate) latency: Latency,
}

#[derive(Debug)]
struct Task {
    ops: VecDeque<FsOp>,
    /// Slots acknowledged when the task ends (or, with the mutant, at its write).
    waiters: Vec<usize>,
    /// Bytes appended to the active journal by this task.
    written: u64,
    /// The journal a switch starts.
    switch_to: Option<u64>,
    acked: bool,
}

impl Task {
    fn new(ops: Vec<FsOp>) -> Task {
        Task {
            ops: ops.into(),
            waiters: Vec::new(),
            written: 0,
            switch_to: None,
            acked: false,
        }
    }
}

/// What the world must do after a metadata step.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Slots whose journal request is answered `Ok`.
    pub(crate) acks: Vec<usize>,
    /// Lane events to schedule, with their delay, ns.
    pub(crate) schedule: Vec<(Lane, u64)>,
}

/// The durable metadata of the emulated store.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) dir: SimDir,
    cfg: MetaConfig,
    number: u64,
    len: u64,
    next_seq: u64,
    buf: Vec<u8>,
    buf_waiters: Vec<usize>,
    journal: Option<Task>,
    checkpoint: Option<Task>,
    rotating: bool,
    rng: ChaCha8Rng,
    /// Group commits completed (all runs of the store, across crashes).
    pub(crate) syncs: u64,
    /// Checkpoints completed.
    pub(crate) checkpoints: u64,
}

impl Meta {
    pub(crate) fn new(cfg: MetaConfig, rng: ChaCha8Rng) -> Self {
        Meta {
            dir: SimDir::default(),
            cfg,
            number: 1,
            len: HEADER_LEN as u64,
            next_seq: 0,
            buf: Vec::new(),
            buf_waiters: Vec::new(),
            journal: None,
            checkpoint: None,
            rotating: false,
            rng,
            syncs: 0,
            checkpoints: 0,
        }
    }

    /// Whether a crash now would cut a rotation short.
    pub(crate) fn rotating(&self) -> bool {
        self.rotating
    }

    fn latency(&mut self, op: &FsOp) -> u64 {
        let l = self.cfg.latency;
        let jitter = if l.jitter_ns > 0 {
            self.rng.random_range(0..l.jitter_ns)
        } else {
            0
        };
        match op {
            FsOp::Write { .. } => l.floor_ns + jitter,
            FsOp::Sync { .. } | FsOp::SyncDir => {
                let ack = match l.ack_delay_ns {
                    0 => 0,
                    max => self.rng.random_range(0..max),
                };
                l.floor_ns + jitter + ack
            }
            _ => l.floor_ns,
        }
    }

    /// A machine in slot `slot` asks for `entries` to be made durable.
    pub(crate) fn append(&mut self, slot: usize, entries: &[Entry]) -> Effects {
        for entry in entries {
            encode_frame(&mut self.buf, self.next_seq, entry);
            self.next_seq += 1;
        }
        self.buf_waiters.push(slot);
        let mut fx = Effects::default();
        self.start_commit(&mut fx);
        fx
    }

    /// Starts the next journal-lane task if the lane is idle: a switch to a new
    /// journal if a rotation is due, else a group commit of the buffer.
    fn start_commit(&mut self, fx: &mut Effects) {
        if self.journal.is_some() {
            return;
        }
        let frames = std::mem::take(&mut self.buf);
        let written = frames.len() as u64;
        let mut task = if self.len > self.cfg.max_bytes && !self.rotating {
            self.rotating = true;
            let next = self.number + 1;
            let mut ops = Vec::new();
            if !frames.is_empty() {
                ops.extend(plan::group_commit(self.number, self.len, frames));
            }
            ops.extend(plan::new_journal(next, self.cfg.devices));
            let mut t = Task::new(ops);
            t.switch_to = Some(next);
            t
        } else if frames.is_empty() {
            return;
        } else {
            Task::new(plan::group_commit(self.number, self.len, frames))
        };
        task.written = written;
        task.waiters = std::mem::take(&mut self.buf_waiters);
        let delay = task.ops.front().cloned().map_or(0, |op| self.latency(&op));
        self.journal = Some(task);
        fx.schedule.push((Lane::Journal, delay));
    }

    /// The current step of `lane` completes: it is applied to the directory, and
    /// the lane moves on. `image` is the live state, taken for a checkpoint.
    pub(crate) fn complete(&mut self, lane: Lane, image: impl FnOnce() -> Image) -> Effects {
        let mut fx = Effects::default();
        let slot = match lane {
            Lane::Journal => &mut self.journal,
            Lane::Checkpoint => &mut self.checkpoint,
        };
        let Some(mut task) = slot.take() else {
            return fx;
        };
        if let Some(op) = task.ops.pop_front() {
            // A plan on a directory it built itself cannot fail; if it did, the
            // recovery check would report the damage.
            let _ = self.dir.apply(&op);
            let data_write = matches!(&op, FsOp::Write { file, .. } if crate::journal::files::journal_number(file).is_some() && task.written > 0);
            if self.cfg.ack_before_sync && data_write && !task.acked {
                task.acked = true;
                fx.acks.append(&mut task.waiters);
            }
        }
        if let Some(next) = task.ops.front().cloned() {
            let delay = self.latency(&next);
            fx.schedule.push((lane, delay));
            match lane {
                Lane::Journal => self.journal = Some(task),
                Lane::Checkpoint => self.checkpoint = Some(task),
            }
            return fx;
        }
        // The task is over.
        fx.acks.append(&mut task.waiters);
        match lane {
            Lane::Checkpoint => {
                self.rotating = false;
                self.checkpoints += 1;
            }
            Lane::Journal => match task.switch_to {
                Some(next) => {
                    self.number = next;
                    self.len = HEADER_LEN as u64;
                    // The checkpoint is taken after the switch: it holds every record
                    // of the journals it replaces.
                    let image = image();
                    let names = self.dir.list();
                    let ops = plan::checkpoint(
                        next,
                        self.cfg.devices,
                        &image,
                        &names,
                        self.cfg.plan_mutants,
                    );
                    let t = Task::new(ops);
                    let delay = t.ops.front().cloned().map_or(0, |op| self.latency(&op));
                    self.checkpoint = Some(t);
                    fx.schedule.push((Lane::Checkpoint, delay));
                }
                None => {
                    self.len += task.written;
                    self.syncs += 1;
                }
            },
        }
        self.start_commit(&mut fx);
        fx
    }

    /// After recovery: appends go on at `number`, offset `len`, sequence `next_seq`.
    fn reset(&mut self, number: u64, len: u64, next_seq: u64) {
        self.number = number;
        self.len = len;
        self.next_seq = next_seq;
        self.buf.clear();
        self.buf_waiters.clear();
        self.journal = None;
        self.checkpoint = None;
        self.rotating = false;
    }
}

/// The live durable state of a core: a checkpoint's content (as `Shared::image`).
pub(crate) fn image_of(core: &Core) -> Image {
    let mut image = Image::default();
    for id in core.table.allocated_ids(0) {
        if let Ok(s) = core.table.snapshot(id)
            && s.version() > 0
        {
            image.apply(&Entry::put(&s));
        }
    }
    image.bad.extend(core.allocator.bad_locations());
    image.degraded.extend(core.allocator.degraded_devices());
    image
}

/// When the next power cut comes.
#[derive(Debug)]
pub(crate) struct Crashes {
    left: u32,
    countdown: u64,
    spacing: u64,
    /// Whether `tick` may crash (off while the store is being populated).
    pub(crate) armed: bool,
    pub(crate) rng: ChaCha8Rng,
}

impl Crashes {
    /// `crashes` power cuts, one on average every `spacing` units of steps.
    pub(crate) fn new(crashes: u32, spacing: u64, rng: ChaCha8Rng) -> Self {
        let mut c = Crashes {
            left: crashes,
            countdown: 0,
            spacing: spacing.max(1),
            armed: false,
            rng,
        };
        c.rearm();
        c
    }

    fn rearm(&mut self) {
        self.countdown = self.rng.random_range(1..=2 * self.spacing);
    }

    /// A step worth `units` is about to run (a metadata step weighs more than any
    /// other, so that power cuts often land inside group commits and rotations):
    /// whether the power fails first.
    pub(crate) fn tick(&mut self, units: u64) -> bool {
        if !self.armed || self.left == 0 {
            return false;
        }
        self.countdown = self.countdown.saturating_sub(units);
        if self.countdown > 0 {
            return false;
        }
        self.left -= 1;
        self.rearm();
        true
    }

    /// Before a plan of `ops` steps run by recovery (or creation): the step the
    /// power fails before, if it does.
    fn during(&mut self, ops: usize) -> Option<usize> {
        if self.left == 0 || ops == 0 || !self.rng.random_bool(0.3) {
            return None;
        }
        self.left -= 1;
        Some(self.rng.random_range(0..ops))
    }
}

/// What a recovery rebuilt.
pub(crate) struct Rebuilt {
    pub(crate) table: ExtentTable,
    pub(crate) allocator: Allocator,
    pub(crate) image: Image,
}

/// Runs `ops` on the directory; `Err(())` if the power failed before step `cut`.
fn run_plan(dir: &mut SimDir, ops: &[FsOp], cut: Option<usize>) -> Result<(), String> {
    for (i, op) in ops.iter().enumerate() {
        if cut == Some(i) {
            return Err(String::new());
        }
        dir.apply(op)?;
    }
    Ok(())
}

fn recover_once(dir: &SimDir) -> crate::Result<Option<Recovered>> {
    recover_dir(&dir.list(), |name| Ok(dir.read(name)))
}

/// Opens the emulated store as `Store::open` does: recover (or create), rebuild
/// the table and allocator, run the reopen plan; the power may fail inside the
/// creation or reopen plan, and then it all starts again. `Err` is a violation.
pub(crate) fn recover(
    meta: &mut Meta,
    crashes: &mut Crashes,
    geometry: &Geometry,
    report: &mut Report,
) -> Result<Rebuilt, String> {
    let mut before: Option<Image> = None;
    // Bounded: every pass but the last consumes one crash of a finite budget.
    loop {
        let recovered = match recover_once(&meta.dir) {
            Ok(Some(r)) => r,
            Ok(None) => {
                let ops = plan::create(geometry.devices, &meta.dir.list());
                let cut = crashes.during(ops.len());
                if run_plan(&mut meta.dir, &ops, cut).is_err() {
                    report.crashes += 1;
                    report.crashes_in_recovery += 1;
                    meta.dir.crash(&mut crashes.rng);
                    continue;
                }
                Recovered::fresh(geometry.devices)
            }
            Err(err) => return Err(format!("recovery failed: {err}")),
        };
        report.recoveries += 1;
        report.torn_tails += u64::from(recovered.tail.is_some_and(|t| t.torn));
        if let Some(b) = &before
            && *b != recovered.image
        {
            return Err("recovering again after a crash during recovery gave another state".into());
        }
        let (table, allocator) =
            rebuild(&recovered.image, geometry).map_err(|e| format!("rebuild failed: {e}"))?;
        let (ops, number, len) = plan::reopen(&recovered);
        let cut = crashes.during(ops.len());
        if run_plan(&mut meta.dir, &ops, cut).is_err() {
            report.crashes += 1;
            report.crashes_in_recovery += 1;
            meta.dir.crash(&mut crashes.rng);
            before = Some(recovered.image);
            continue;
        }
        // Recovering twice gives the same state: the reopen plan changed nothing
        // that recovery reads.
        match recover_once(&meta.dir) {
            Ok(Some(again))
                if again.image == recovered.image && again.next_seq == recovered.next_seq => {}
            Ok(_) => return Err("recovering twice gave two different states".into()),
            Err(err) => return Err(format!("recovery after the reopen plan failed: {err}")),
        }
        meta.reset(number, len, recovered.next_seq);
        return Ok(Rebuilt {
            table,
            allocator,
            image: recovered.image,
        });
    }
}

/// The content of a record, without its version.
fn content(r: &RecordImage) -> (State, u64, Location, u32) {
    (r.state, r.generation, r.location, r.checksum)
}

/// Whether recovered record `got` is what the model expects (`want`): the same
/// content, at the same or a later version (a checkpoint records a write-pending or
/// compacting record with its committed fields and its newer version). A
/// never-committed extent may come back vacant (a checkpoint of an aborted write).
fn explains(want: Option<&RecordImage>, got: Option<&RecordImage>) -> bool {
    match (want, got) {
        (None, None) => true,
        (None, Some(g)) => g.state == State::Vacant && g.generation == 0,
        (Some(_), None) => false,
        (Some(w), Some(g)) => content(w) == content(g) && g.version >= w.version,
    }
}

/// The reference model of what is durable.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// The record each extent had at the last recovery (durable).
    baseline: BTreeMap<u64, RecordImage>,
    /// Entries issued to the journal since, in issue order (which is the journal's
    /// order), and whether acknowledged.
    issued: Vec<(Entry, bool)>,
    /// Each slot's journal request not yet acknowledged: its range in `issued`.
    pending: HashMap<usize, std::ops::Range<usize>>,
    /// Bad locations acknowledged durable, over all recoveries.
    acked_bad: BTreeSet<Location>,
}

impl Model {
    /// Slot `slot` issued `entries`.
    pub(crate) fn issue(&mut self, slot: usize, entries: &[Entry]) {
        let start = self.issued.len();
        self.issued.extend(entries.iter().map(|e| (*e, false)));
        self.pending.insert(slot, start..self.issued.len());
    }

    /// Slot `slot`'s entries were acknowledged durable.
    pub(crate) fn ack(&mut self, slot: usize) {
        for i in self.pending.remove(&slot).unwrap_or_default() {
            self.issued[i].1 = true;
            if let Entry::Bad(l) = self.issued[i].0 {
                self.acked_bad.insert(l);
            }
        }
    }

    /// After a recovery: what was recovered is the new durable baseline.
    pub(crate) fn reset(&mut self, image: &Image) {
        self.baseline = image.records.clone();
        self.issued.clear();
        self.pending.clear();
        self.acked_bad.retain(|l| image.bad.contains(l));
    }

    fn puts(&self, extent: u64) -> impl Iterator<Item = (&RecordImage, bool)> {
        self.issued.iter().filter_map(move |(e, acked)| match e {
            Entry::Put(r) if r.extent.0 == extent => Some((r, *acked)),
            _ => None,
        })
    }

    /// The shortest prefix of `issued` that holds every acknowledged entry.
    fn acked_prefix(&self) -> usize {
        self.issued
            .iter()
            .rposition(|(_, a)| *a)
            .map_or(0, |i| i + 1)
    }

    /// Whether the state after the first `p` issued entries (for every `p` from the
    /// acknowledged prefix on) explains `image`: the first such `p`, if any.
    fn explaining_prefix(&self, image: &Image, extents: &BTreeSet<u64>) -> Option<usize> {
        let mut state: BTreeMap<u64, RecordImage> = self.baseline.clone();
        let mut bad: Vec<Location> = Vec::new();
        for (i, (entry, _)) in self.issued.iter().enumerate() {
            if i >= self.acked_prefix() && self.prefix_matches(&state, &bad, image, extents) {
                return Some(i);
            }
            match entry {
                Entry::Put(r) => {
                    state.insert(r.extent.0, *r);
                }
                Entry::Bad(l) => bad.push(*l),
                _ => {}
            }
        }
        self.prefix_matches(&state, &bad, image, extents)
            .then_some(self.issued.len())
    }

    fn prefix_matches(
        &self,
        state: &BTreeMap<u64, RecordImage>,
        bad: &[Location],
        image: &Image,
        extents: &BTreeSet<u64>,
    ) -> bool {
        extents
            .iter()
            .all(|e| explains(state.get(e), image.records.get(e)))
            && bad.iter().all(|l| image.bad.contains(l))
    }
}

/// The checks of invariants 9–11 on a recovered state (see the module docs).
pub(crate) fn check(
    model: &Model,
    image: &Image,
    table: &ExtentTable,
    fabric: &Fabric,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut extents: BTreeSet<u64> = (model.baseline.keys())
        .chain(image.records.keys())
        .copied()
        .collect();
    for (e, _) in &model.issued {
        if let Entry::Put(r) = e {
            extents.insert(r.extent.0);
        }
    }
    for &e in &extents {
        let id = ExtentId(e);
        let base = model.baseline.get(&e);
        let floor = (base.map(|b| b.version))
            .into_iter()
            .chain(model.puts(e).filter(|(_, a)| *a).map(|(r, _)| r.version))
            .max();
        let got = image.records.get(&e);
        let Some(r) = got else {
            if let Some(v) = floor {
                out.push(format!(
                    "{id}: acknowledged record (version {v}) missing after recovery"
                ));
            }
            continue;
        };
        let floor_v = floor.unwrap_or(0);
        let acceptable = explains(None, got) && floor.is_none()
            || (base.into_iter().chain(model.puts(e).map(|(c, _)| c)))
                .filter(|c| c.version >= floor_v)
                .any(|c| explains(Some(c), got));
        if !acceptable {
            out.push(format!(
                "{id}: recovered {:?} generation {} at {} (version {}) is neither the acknowledged record (version {floor_v}) nor one issued after it",
                r.state, r.generation, r.location, r.version
            ));
            continue;
        }
        if let Some(b) = base
            && r.generation < b.generation
        {
            out.push(format!(
                "{id}: generation went back from {} to {} across recoveries",
                b.generation, r.generation
            ));
        }
        if r.references() {
            let len = r.location.length as usize;
            let good = fabric.durable(r.location).is_some_and(|b| {
                b.len() >= len && checksum(id, r.generation, &b[..len]) == r.checksum
            });
            if !good {
                out.push(format!(
                    "{id}: recovered generation {} at {} fails its checksum on the durable device",
                    r.generation, r.location
                ));
            }
        }
        match table.snapshot(id) {
            Ok(s) if s.write_pending() || s.state() == State::Compacting => out.push(format!(
                "{id}: recovered record is {:?} (write pending {})",
                s.state(),
                s.write_pending()
            )),
            Ok(_) => {}
            Err(err) => out.push(format!("{id}: recovered table refuses a snapshot: {err}")),
        }
    }
    for l in &model.acked_bad {
        if !image.bad.contains(l) {
            out.push(format!(
                "acknowledged bad location {l} missing after recovery"
            ));
        }
    }
    if out.is_empty() && model.explaining_prefix(image, &extents).is_none() {
        out.push(format!(
            "no prefix of the {} entries issued since the last recovery (at least the {} acknowledged) explains the recovered state",
            model.issued.len(),
            model.acked_prefix()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(extent: u64, version: u64, generation: u64) -> Entry {
        Entry::Put(RecordImage {
            extent: ExtentId(extent),
            version,
            state: State::Durable,
            generation,
            location: Location::new(0, extent * 512, 64),
            checksum: generation as u32,
        })
    }

    fn image(entries: &[Entry]) -> Image {
        let mut image = Image::default();
        for e in entries {
            image.apply(e);
        }
        image
    }

    fn extents(model: &Model, image: &Image) -> BTreeSet<u64> {
        let mut set: BTreeSet<u64> = image.records.keys().copied().collect();
        for (e, _) in &model.issued {
            if let Entry::Put(r) = e {
                set.insert(r.extent.0);
            }
        }
        set
    }

    #[test]
    fn invariant_9_only_a_prefix_of_the_issue_order_explains_a_recovery() {
        let (a, b) = (put(1, 2, 1), put(2, 2, 1));
        let mut m = Model::default();
        m.issue(0, &[a]);
        m.issue(1, &[b]);
        let prefix = |m: &Model, img: &Image| m.explaining_prefix(img, &extents(m, img));
        assert_eq!(prefix(&m, &image(&[])), Some(0), "nothing acknowledged");
        assert_eq!(prefix(&m, &image(&[a])), Some(1));
        assert_eq!(prefix(&m, &image(&[a, b])), Some(2));
        // b without a: a hole in the journal, no prefix.
        assert_eq!(prefix(&m, &image(&[b])), None);
        // Once a is acknowledged, losing it is no prefix either.
        m.ack(0);
        assert_eq!(prefix(&m, &image(&[])), None);
        assert_eq!(prefix(&m, &image(&[a])), Some(1));
    }

    #[test]
    fn invariant_9_a_half_applied_or_lost_record_is_reported() {
        let table = ExtentTable::new(crate::table::TableConfig::default());
        let fabric = Fabric::new(
            1,
            super::super::SimConfig::default().latency,
            super::super::SimConfig::default().faults,
            rand::SeedableRng::seed_from_u64(1),
            rand::SeedableRng::seed_from_u64(2),
        );
        let a = put(1, 2, 1);
        let mut m = Model::default();
        m.issue(0, &[a]);
        m.ack(0);
        let lost = check(&m, &image(&[]), &table, &fabric);
        assert!(lost[0].contains("acknowledged record"), "{lost:?}");
        // The acknowledged generation with another location: half applied.
        let Entry::Put(mut half) = a else {
            unreachable!()
        };
        half.location = Location::new(0, 4096, 64);
        let bad = check(&m, &image(&[Entry::Put(half)]), &table, &fabric);
        assert!(bad[0].contains("neither the acknowledged"), "{bad:?}");
        // The right record whose bytes are not on the durable device.
        let missing = check(&m, &image(&[a]), &table, &fabric);
        assert!(missing[0].contains("fails its checksum"), "{missing:?}");
    }
}
