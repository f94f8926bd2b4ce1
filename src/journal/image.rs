//! The durable image of a store (records, bad list, degraded devices), checkpoint
//! encoding and recovery: checkpoint plus journals in, image out.

mod encode;
mod load;
mod records;
mod replay;
mod settle;

use load::load_checkpoint;

#[cfg(all(test, not(loom)))]
pub(crate) use encode::image_entries;
pub(crate) use encode::{CheckpointEncoder, encode_checkpoint};
pub(crate) use records::{Bounds, Records, other_devices, shrunk_config};
pub(crate) use replay::{Checkpoint, recover_into};
#[cfg(all(test, not(loom)))]
pub(crate) use replay::{recover, recover_marked};

use super::{Entry, files};
use crate::bytes::Bytes;
use crate::record::{ExtentId, Location, State};
use std::collections::{BTreeMap, BTreeSet};

/// One committed record as the journal keeps it (no `write_pending`, never
/// `Compacting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordImage {
    pub(crate) extent: ExtentId,
    pub(crate) version: u64,
    pub(crate) state: State,
    pub(crate) generation: u64,
    pub(crate) location: Location,
    pub(crate) checksum: u32,
    /// The engine's tag of this generation (empty if none; always empty for a
    /// `Vacant` record).
    pub(crate) tag: crate::record::Tag,
}

impl RecordImage {
    /// Whether the record references its location (a vacant record does not).
    pub(crate) fn references(&self) -> bool {
        matches!(self.state, State::Durable | State::Quarantined)
    }
}

/// Everything durable about a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Image {
    /// The newest record of every extent ever committed, by id.
    pub(crate) records: Records,
    /// Locations never to be handed out again.
    pub(crate) bad: BTreeSet<Location>,
    /// Devices the health policy degraded.
    pub(crate) degraded: BTreeSet<u16>,
    /// Extents whose record is a proposal ([`Entry::Proposed`]), not a commit.
    pub(crate) proposed: BTreeSet<u64>,
    /// Extents whose record is an [`Entry::Unsynced`] that no [`Entry::Synced`]
    /// covers, with every record it may fall back to: the one it replaced, the
    /// earlier [`Entry::Unsynced`] records (a write whose outcome was unknown
    /// never committed, so the next one was proposed on top of the record
    /// before it), and records journaled after it with a lower version (a
    /// compaction or remap commits before it journals, and a write may propose
    /// on top of that commit first). [`Recovered::settle_unsynced`] keeps the
    /// record only if its data verifies. Empty in a checkpoint's image.
    pub(crate) unsynced: BTreeMap<u64, Vec<Fallback>>,
}

/// A record recovery may restore in place of an overlapped write's whose data
/// did not become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback {
    /// The record (`None`: the extent had none).
    pub(crate) record: Option<RecordImage>,
    /// Whether it is an [`Entry::Unsynced`] no marker covered: restored only if
    /// its own data verifies.
    pub(crate) verify: bool,
    /// Whether it is a commit ([`Entry::Put`]): at equal versions a commit is
    /// what happened, a proposal lost to it.
    pub(crate) commit: bool,
}

impl Image {
    /// Applies one entry. A record replaces the extent's record only if its version
    /// is newer, or (a commit) equal to a proposal's: a proposal whose version a
    /// commit also carries lost its compare-and-swap to that commit. So replay is
    /// idempotent and independent of the order of one extent's records (see the
    /// module docs).
    pub(crate) fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Put(r) | Entry::Proposed(r) | Entry::Inline(r, _) | Entry::Unsynced(r) => {
                let proposal = !matches!(entry, Entry::Put(_));
                let id = r.extent.0;
                let old = self.records.get(id);
                let wins = old.is_none_or(|old| {
                    old.version < r.version
                        || (old.version == r.version && !proposal && self.proposed.contains(&id))
                });
                if wins {
                    // Only overlapped writes' records keep what they replaced
                    // (a checkpoint's million records pay no second lookup).
                    if let Entry::Unsynced(_) = entry {
                        let replaced = Fallback {
                            record: old,
                            verify: self.unsynced.contains_key(&id),
                            commit: !self.proposed.contains(&id),
                        };
                        self.unsynced.entry(id).or_default().push(replaced);
                    } else if !self.unsynced.is_empty() {
                        self.unsynced.remove(&id);
                    }
                    self.records.insert(*r);
                    if proposal {
                        self.proposed.insert(id);
                    } else {
                        self.proposed.remove(&id);
                    }
                } else if let Some(chain) = self.unsynced.get_mut(&id) {
                    // Journaled after a newer overlapped write's record: it may
                    // be the one to restore (see `unsynced`).
                    chain.push(Fallback {
                        record: Some(*r),
                        verify: matches!(entry, Entry::Unsynced(_)),
                        commit: !proposal,
                    });
                }
            }
            Entry::Bad(l) => {
                self.bad.insert(*l);
            }
            Entry::Degraded(d) => {
                self.degraded.insert(*d);
            }
            Entry::Synced { extent, version } => {
                if (self.records.get(extent.0)).is_some_and(|r| r.version == *version) {
                    self.unsynced.remove(&extent.0);
                } else if let Some(chain) = self.unsynced.get_mut(&extent.0) {
                    // A marker that came after a newer write's record: the
                    // older record's data is durable all the same.
                    for f in chain.iter_mut() {
                        if f.record.is_some_and(|r| r.version == *version) {
                            f.verify = false;
                        }
                    }
                }
            }
            Entry::End { .. }
            | Entry::Rotated { .. }
            | Entry::Closed
            | Entry::BatchBegin { .. }
            | Entry::JournalStart { .. } => {}
        }
    }

    /// Locations referenced by a record.
    pub(crate) fn referenced(&self) -> impl Iterator<Item = Location> + '_ {
        self.records
            .iter()
            .filter(|r| r.references())
            .map(|r| r.location)
    }
}

/// The newest journal after recovery: where appends go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Its number.
    pub(crate) number: u64,
    /// Bytes of its valid prefix; 0 if it holds no frame (its header or its
    /// start frame was torn: a rotation stopped while creating it), and then
    /// the reopen writes it anew before the marker naming it is appended.
    pub(crate) valid_len: u64,
    /// Whether a torn tail was dropped.
    pub(crate) torn: bool,
    /// Whether its last frame is [`Entry::Closed`]: the store was closed cleanly.
    pub(crate) closed: bool,
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// The durable state.
    pub(crate) image: Image,
    /// The device count recorded at creation.
    pub(crate) devices: u16,
    /// The checkpoint recovery started from.
    pub(crate) checkpoint: u64,
    /// The newest journal: appends go on there.
    pub(crate) tail: Tail,
    /// The journal whose torn tail was dropped, and where its valid prefix ends:
    /// the tail, or the journal before it when a rotation stopped after creating
    /// the tail but before the old journal's last write was synced.
    pub(crate) cut: Option<(u64, u64)>,
    /// The bytes past that valid prefix, kept as evidence.
    pub(crate) dropped: Vec<u8>,
    /// Per journal read, its last write as recovery read it: `(number, offset,
    /// bytes)`. The reopen plan writes it again (see `plan::reopen`).
    pub(crate) last_writes: Vec<(u64, u64, Vec<u8>)>,
    /// The next sequence number to append.
    pub(crate) next_seq: u64,
    /// Journal entries replayed.
    pub(crate) replayed: u64,
    /// The data of every [`Entry::Inline`] whose bytes the extent's recovered
    /// record still names: it is durable only in the journal until the driver writes it back
    /// to its location and syncs the devices, before the reopen plan runs. Writing
    /// it is harmless whatever the device holds: the recovered record references
    /// the location, so no other extent's bytes live there (invariant 10), and the
    /// record's checksum covers exactly these bytes.
    pub(crate) redo: Vec<(Location, Bytes)>,
    /// Every inline entry's record and data, by extent and version, whatever the
    /// recovered record names: [`redo`](Self::redo) is chosen from them again
    /// once [`settle_unsynced`](Self::settle_unsynced) may have restored older
    /// records.
    inline: Vec<(RecordImage, Bytes)>,
    /// For each [`Entry::Unsynced`] whose data did not verify, the record its
    /// extent gets back (see [`settle_unsynced`](Self::settle_unsynced)): the
    /// reopen journals these, so that the dropped record never wins again.
    pub(crate) unsynced_dropped: Vec<Entry>,
    /// Bytes [`settle_unsynced`](Self::settle_unsynced) read for the records
    /// that stand, written back with [`redo`](Self::redo).
    rewrite: Vec<(Location, Bytes)>,
    /// Locations of records it kept over data that did not verify (a fault the
    /// verifier will report): the device-length check skips them.
    pub(crate) unverified: Vec<Location>,
    /// For each [`Entry::Unsynced`] kept because its data verified, its
    /// [`Entry::Synced`]: the reopen syncs the devices (the bytes read may be in
    /// the page cache only), then journals these, so that no later recovery
    /// takes a fault of that data for a torn write.
    pub(crate) unsynced_kept: Vec<Entry>,
    /// Whether `CURRENT` was written by an older format: the reopen writes it
    /// again in this one, so that an older build refuses the directory (whose
    /// journals this build may fill with records that build cannot read) instead
    /// of taking them for a torn tail.
    pub(crate) pointer_upgrade: bool,
    /// Journals that a later journal follows but that neither end with
    /// [`Entry::Rotated`] nor with a frame numbered just before the later
    /// journal's first (a rotation stopped before its marker, and a build
    /// before format 4 may have reopened after it): `(number, valid length, the
    /// marker's sequence number)`. The reopen appends the marker to each, synced, before
    /// anything else is appended (see `plan::reopen`).
    pub(crate) unmarked: Vec<(u64, u64, u64)>,
    /// Journals the reopen writes to again (the tail, and those it appends a
    /// marker to) whose valid prefix other bytes follow: `(number, valid
    /// length)`, cut there, synced, before anything is written to them (see
    /// `plan::reopen`).
    pub(crate) cut_back: Vec<(u64, u64)>,
}

impl Recovered {
    /// The state of a store just created by [`plan::create`](super::plan::create).
    pub(crate) fn fresh(devices: u16) -> Recovered {
        Recovered {
            image: Image::default(),
            devices,
            checkpoint: 1,
            tail: Tail {
                number: 1,
                valid_len: super::frame::new_journal_len(1, devices, 0),
                torn: false,
                closed: false,
            },
            cut: None,
            dropped: Vec::new(),
            last_writes: Vec::new(),
            next_seq: 1,
            replayed: 0,
            redo: Vec::new(),
            inline: Vec::new(),
            unsynced_dropped: Vec::new(),
            unsynced_kept: Vec::new(),
            rewrite: Vec::new(),
            unverified: Vec::new(),
            pointer_upgrade: false,
            unmarked: Vec::new(),
            cut_back: Vec::new(),
        }
    }
}
