//! The reference model of what is durable, and the checker of invariants 9–11
//! after each recovery.
//!
//! [`Model`] keeps the record of every extent recovered last (durable) and every
//! entry issued to the journal since, in issue order (the journal's order), each
//! marked once acknowledged. [`check`] asserts that every recovered record equals
//! the last acknowledged one or one issued after it (content exactly: never
//! half-applied; a checkpoint may carry a later version of the same content, as a
//! write-pending or compacting record is checkpointed with its committed fields),
//! that nothing acknowledged is missing, that generations only grow, that every
//! referenced location's durable bytes verify their checksum, that no record is
//! compacting or write-pending, and that the whole recovered state is the model's
//! after one prefix of the issued entries holding every acknowledged one.
//! [`recover`](super::crash::recover) adds that the rebuild found no location
//! referenced twice and that recovering twice gives the same state.

use super::fabric::{Fabric, own_copy};
use crate::journal::{Entry, Image, RecordImage};
use crate::record::{ExtentId, Location, State, checksum};
use crate::table::ExtentTable;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Indices in `issued` of the [`Entry::Unsynced`] records whose data's sync
    /// completed: recovery must keep them once their entry is durable.
    data_synced: BTreeSet<usize>,
    /// Indices in `issued` of entries whose journal request failed (refused,
    /// or written to a journal that then failed). A checkpoint taken while
    /// their operation was in flight holds its proposal, whatever became of
    /// the journal; one taken after the operation answered does not. So a
    /// recovery may show each of them or not, whatever it shows of the
    /// entries around them. (A checkpoint holds a batch's proposals whole: the
    /// loom model `checkpoint_image_racing_a_batch_holds_it_whole` checks it,
    /// and here a machine's step runs at once, so the emulator cannot split
    /// one; this model does not check it again.)
    failed: BTreeSet<usize>,
    /// Each slot's last failed journal request: its range in `issued`, until
    /// the operation answers (see [`certainly_failed`](Self::certainly_failed)).
    last_failed: HashMap<usize, std::ops::Range<usize>>,
    /// Indices in `issued` of the entries of operations that answered a
    /// failure other than "outcome unknown": those certainly did not happen
    /// (no journal and no checkpoint holds them), so no recovery may show them.
    forbidden: BTreeSet<usize>,
    /// Slots whose operation has had a journal request acknowledged durable.
    slot_acked: BTreeSet<usize>,
    /// Slots whose operation's last journal request was acknowledged durable
    /// (none issued since).
    slot_last_acked: BTreeSet<usize>,
}

impl Model {
    /// Slot `slot` issued `entries`. An inline entry keeps its own copy of
    /// the bytes, as a device does ([`own_copy`]).
    pub(crate) fn issue(&mut self, slot: usize, entries: &[Entry]) {
        let start = self.issued.len();
        self.issued.extend(entries.iter().map(|e| match e {
            Entry::Inline(r, bytes) => (Entry::Inline(*r, own_copy(bytes)), false),
            e => (e.clone(), false),
        }));
        self.pending.insert(slot, start..self.issued.len());
        self.slot_last_acked.remove(&slot);
    }

    /// Slot `slot`'s entries were acknowledged durable.
    pub(crate) fn ack(&mut self, slot: usize) {
        if self.pending.contains_key(&slot) {
            self.slot_acked.insert(slot);
            self.slot_last_acked.insert(slot);
        }
        for i in self.pending.remove(&slot).unwrap_or_default() {
            self.issued[i].1 = true;
            if let Entry::Bad(l) = self.issued[i].0 {
                self.acked_bad.insert(l);
            }
        }
    }

    /// Whether an acknowledged [`Entry::Inline`] since the last recovery holds
    /// generation `generation` of `extent` at `location`: its bytes are durable in
    /// the journal (or, once a checkpoint replaced that journal, on the device).
    pub(crate) fn inline_durable(&self, extent: ExtentId, generation: u64, at: Location) -> bool {
        (self.issued.iter()).any(|(e, acked)| {
            *acked
                && matches!(e, Entry::Inline(r, _)
                    if r.extent == extent && r.generation == generation && r.location == at)
        })
    }

    /// The data of `extent`'s overlapped write (its newest [`Entry::Unsynced`])
    /// is durable: its sync completed.
    pub(crate) fn data_synced(&mut self, extent: ExtentId) {
        let newest = (self.issued.iter())
            .rposition(|(e, _)| matches!(e, Entry::Unsynced(r) if r.extent == extent));
        if let Some(i) = newest {
            self.data_synced.insert(i);
        }
    }

    /// Whether recovery may drop the record of issued entry `i` even if the
    /// entry is durable: an [`Entry::Unsynced`] whose data's sync never
    /// completed (the write was not acknowledged).
    fn droppable(&self, i: usize) -> bool {
        matches!(self.issued.get(i), Some((Entry::Unsynced(_), _)))
            && !self.data_synced.contains(&i)
    }

    /// Whether `location` holds the data of an overlapped write that no
    /// acknowledged [`Entry::Synced`] covers yet: the one window where a fault
    /// of the data cannot be told from a torn write at recovery (`journal`'s
    /// "Overlapped data syncs"), so the emulator injects none there.
    pub(crate) fn unmarked(&self, location: Location) -> bool {
        (self.issued.iter()).any(|(e, _)| match e {
            Entry::Unsynced(r) if r.location == location => {
                !(self.issued.iter()).any(|(m, acked)| {
                    *acked
                        && matches!(m, Entry::Synced { extent, version }
                        if *extent == r.extent && *version == r.version)
                })
            }
            _ => false,
        })
    }

    /// Slot `slot`'s journal request failed (see [`failed`](Self::failed)).
    pub(crate) fn fail(&mut self, slot: usize) {
        if let Some(range) = self.pending.remove(&slot) {
            self.failed.extend(range.clone());
            self.last_failed.insert(slot, range);
        }
    }

    /// The operation in slot `slot` answered a failure other than "outcome
    /// unknown": the entries of its last failed journal request certainly did
    /// not happen. (An operation one of whose earlier records was written
    /// answers "outcome unknown".)
    pub(crate) fn certainly_failed(&mut self, slot: usize) {
        if let Some(range) = self.last_failed.remove(&slot) {
            self.forbidden.extend(range);
        }
        self.answered(slot);
    }

    /// The operation in slot `slot` answered: a later one in the slot issues
    /// its own requests.
    pub(crate) fn answered(&mut self, slot: usize) {
        self.last_failed.remove(&slot);
        self.slot_acked.remove(&slot);
        self.slot_last_acked.remove(&slot);
    }

    /// What is wrong with the answer of the write or batch in slot `slot`,
    /// judged by its journal requests before [`answered`](Self::answered):
    /// `Ok` is an acknowledgment, so its last request must have been made
    /// durable; a certain failure (anything but "outcome unknown") says no
    /// recovery shows it, so none of its requests may have been made durable.
    pub(crate) fn wrong_answer(
        &self,
        slot: usize,
        ok: bool,
        certain: bool,
    ) -> Option<&'static str> {
        if ok && !self.slot_last_acked.contains(&slot) {
            return Some("answered Ok, but its journal record was not acknowledged durable");
        }
        if certain && self.slot_acked.contains(&slot) {
            return Some(
                "answered a certain failure after its journal record was acknowledged durable",
            );
        }
        None
    }

    /// After a recovery: what was recovered is the new durable baseline.
    pub(crate) fn reset(&mut self, image: &Image) {
        self.baseline = image.records.to_map();
        self.issued.clear();
        self.pending.clear();
        self.data_synced.clear();
        self.failed.clear();
        self.last_failed.clear();
        self.forbidden.clear();
        self.slot_acked.clear();
        self.slot_last_acked.clear();
        self.acked_bad.retain(|l| image.bad.contains(l));
    }

    /// `extent`'s issued records, each with its index and whether its entry
    /// was acknowledged.
    fn puts(&self, extent: u64) -> impl Iterator<Item = (usize, &RecordImage, bool)> {
        (self.issued.iter().enumerate()).filter_map(move |(i, (e, acked))| match e.record() {
            Some((r, _)) if r.extent.0 == extent => Some((i, r, *acked)),
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
        // Each extent's record, whether it is a proposal, and, if it is a
        // droppable overlapped write's, the record recovery may restore instead.
        let mut state: PrefixState = (self.baseline.iter())
            .map(|(&e, r)| (e, (*r, false, Vec::new())))
            .collect();
        let mut bad: Vec<Location> = Vec::new();
        // Records of a batch still to come: no prefix ends inside a batch (it
        // is durable all or nothing).
        let mut inside = 0usize;
        for (i, (entry, _)) in self.issued.iter().enumerate() {
            if inside == 0
                && i >= self.acked_prefix()
                && self.prefix_matches(&state, &bad, image, extents)
            {
                return Some(i);
            }
            if let Entry::BatchBegin { count } = entry {
                inside = *count as usize;
            } else if entry.record().is_some() {
                inside = inside.saturating_sub(1);
            }
            if let Entry::Bad(l) = entry {
                bad.push(*l);
            }
            if let Entry::Synced { extent, version } = entry
                && let Some((r, _, alts)) = state.get_mut(&extent.0)
                && r.version == *version
            {
                alts.clear();
            }
            // The journal's rule: the newer version wins; at equal versions a
            // commit wins over a proposal (which lost its compare-and-swap to that
            // commit: a quarantine or remap of a record a write or delete held),
            // else the first one stays.
            let Some((r, proposal)) = entry.record() else {
                continue;
            };
            if self.forbidden.contains(&i) {
                continue;
            }
            let wins = state.get(&r.extent.0).is_none_or(|(old, old_proposal, _)| {
                old.version < r.version || (old.version == r.version && *old_proposal && !proposal)
            });
            if wins {
                // A droppable overlapped write may fall back to the record it
                // replaced, or to what that one could fall back to; so may a
                // failed entry (see `failed`).
                let optional = self.droppable(i) || self.failed.contains(&i);
                let alts = match (optional, state.get(&r.extent.0)) {
                    (false, _) => Vec::new(),
                    (true, None) => vec![None],
                    (true, Some((old, _, alts))) => {
                        let mut alts = alts.clone();
                        alts.push(Some(*old));
                        alts
                    }
                };
                state.insert(r.extent.0, (*r, proposal, alts));
            }
        }
        self.prefix_matches(&state, &bad, image, extents)
            .then_some(self.issued.len())
    }

    fn prefix_matches(
        &self,
        state: &PrefixState,
        bad: &[Location],
        image: &Image,
        extents: &BTreeSet<u64>,
    ) -> bool {
        extents.iter().all(|e| {
            let got = image.records.get(*e);
            let got = got.as_ref();
            match state.get(e) {
                None => explains(None, got),
                Some((r, _, alts)) => {
                    explains(Some(r), got) || alts.iter().any(|old| explains(old.as_ref(), got))
                }
            }
        }) && bad.iter().all(|l| image.bad.contains(l))
    }
}

/// Per extent, as a prefix of the issued entries leaves it: the record, whether
/// it is a proposal, and the records a recovery may restore instead (for a
/// droppable overlapped write's, see `Model::droppable`: those it replaced).
type PrefixState = BTreeMap<u64, (RecordImage, bool, Vec<Option<RecordImage>>)>;

/// The checks of invariants 9–11 on a recovered state (see the module docs).
pub(crate) fn check(
    model: &Model,
    image: &Image,
    table: &ExtentTable,
    fabric: &Fabric,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut extents: BTreeSet<u64> = (model.baseline.keys())
        .copied()
        .chain(image.records.keys())
        .collect();
    for (e, _) in &model.issued {
        if let Some((r, _)) = e.record() {
            extents.insert(r.extent.0);
        }
    }
    for &e in &extents {
        let id = ExtentId(e);
        let base = model.baseline.get(&e);
        // An overlapped write's record that recovery may drop sets no floor.
        let floor = (base.map(|b| b.version))
            .into_iter()
            .chain(
                (model.puts(e))
                    .filter(|&(i, _, acked)| acked && !model.droppable(i))
                    .map(|(_, r, _)| r.version),
            )
            .max();
        let got = image.records.get(e);
        let got = got.as_ref();
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
            || (base.into_iter().chain(
                (model.puts(e))
                    .filter(|&(i, _, _)| !model.forbidden.contains(&i))
                    .map(|(_, c, _)| c),
            ))
            .filter(|c| c.version >= floor_v)
            .any(|c| explains(Some(c), got));
        let certainly_failed = (model.puts(e))
            .filter(|&(i, _, _)| model.forbidden.contains(&i))
            .any(|(_, c, _)| explains(Some(c), got));
        if !acceptable && certainly_failed {
            out.push(format!(
                "{id}: recovered generation {} at {} (version {}) is the record of a write that answered a certain failure",
                r.generation, r.location, r.version
            ));
            continue;
        }
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
        // Every write of the workload tags its generation; relocation,
        // quarantine and remap must keep the tag, a delete drop it.
        let want_tag = match r.state {
            State::Vacant => crate::record::Tag::EMPTY,
            _ => super::history::tag(id, r.generation),
        };
        if r.tag != want_tag {
            out.push(format!(
                "{id}: recovered generation {} carries tag {:?}, written with {want_tag:?}",
                r.generation, r.tag
            ));
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
            tag: crate::record::Tag::EMPTY,
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
        let mut set: BTreeSet<u64> = image.records.keys().collect();
        for (e, _) in &model.issued {
            if let Some((r, _)) = e.record() {
                set.insert(r.extent.0);
            }
        }
        set
    }

    #[test]
    fn invariant_9_only_a_prefix_of_the_issue_order_explains_a_recovery() {
        let (a, b) = (put(1, 2, 1), put(2, 2, 1));
        let mut m = Model::default();
        m.issue(0, std::slice::from_ref(&a));
        m.issue(1, std::slice::from_ref(&b));
        let prefix = |m: &Model, img: &Image| m.explaining_prefix(img, &extents(m, img));
        assert_eq!(prefix(&m, &image(&[])), Some(0), "nothing acknowledged");
        assert_eq!(prefix(&m, &image(std::slice::from_ref(&a))), Some(1));
        assert_eq!(prefix(&m, &image(&[a.clone(), b.clone()])), Some(2));
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
        m.issue(0, std::slice::from_ref(&a));
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
