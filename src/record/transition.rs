//! States, changes and the transition table.
//!
//! The table is data ([`TRANSITIONS`]): one [`Rule`] per allowed
//! `(change, state, write_pending)` combination. [`Change::apply`] looks the rule up
//! on every transition; anything not listed is [`Error::IllegalTransition`].
//!
//! Design notes:
//! - A write that *begins* during a compaction ends the compaction (`Compacting →
//!   Durable` with the pending mark). So "`Compacting` at version v" names exactly one
//!   compaction, and the compactor's commit or abort, a compare-and-swap against the
//!   version its begin returned, can never end somebody else's compaction.
//! - `write_pending` never changes location, generation or checksum: readers keep
//!   using the committed bytes until the write commits (pending is never served).
//! - Quarantine keeps the location and checksum (the last copy, good or bad, is never
//!   dropped); remap moves the same generation to a fresh location. Both are allowed
//!   while a write is pending: the fault was found in the committed bytes, which
//!   readers use until that write commits (found by the emulator: a quarantine
//!   during a slow write left the extent unrepairable).

use super::{Location, MAX_GENERATION};
use crate::error::{Error, Result};
use crate::record::ExtentId;

/// The lifecycle state of a record. The `write_pending` mark is separate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
#[non_exhaustive]
pub enum State {
    /// No bytes have been committed (or the extent was deleted).
    #[default]
    Vacant = 0,
    /// Committed bytes at `location`, readable.
    Durable = 1,
    /// Being copied to a new location; reads keep using the current one.
    Compacting = 2,
    /// Verification found a persistent fault; the record and its location are kept.
    Quarantined = 3,
}

impl State {
    /// Every state, in discriminant order.
    pub const ALL: [State; 4] = [
        State::Vacant,
        State::Durable,
        State::Compacting,
        State::Quarantined,
    ];

    pub(crate) const fn from_bits(bits: u64) -> State {
        match bits & 0b11 {
            0 => State::Vacant,
            1 => State::Durable,
            2 => State::Compacting,
            _ => State::Quarantined,
        }
    }
}

/// A transition of one record, with the fields it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// Mark a write in flight. Ends a compaction in progress.
    BeginWrite,
    /// Commit a pending write: bump the generation, set location and checksum (the
    /// checksum of the bytes under the *new* generation).
    CommitWrite {
        /// Where the new bytes were written.
        location: Location,
        /// `checksum(extent, generation + 1, bytes)`.
        checksum: u32,
    },
    /// Drop the pending mark without changing the committed bytes.
    AbortWrite,
    /// `Durable → Compacting`.
    BeginCompact,
    /// `Compacting → Durable` at the copy's location; generation and checksum kept.
    CommitCompact {
        /// Where the verified copy lives.
        location: Location,
    },
    /// `Compacting → Durable` at the old location.
    AbortCompact,
    /// Mark the record quarantined; location and checksum kept.
    Quarantine,
    /// `Quarantined → Durable` at a fresh location holding a good copy.
    Remap {
        /// Where the good copy was written.
        location: Location,
    },
    /// `Durable | Quarantined → Vacant`. The generation is kept so that a later write
    /// still bumps it past every cached or checksummed value.
    Delete,
    /// Commit a delete that reserved the record with [`BeginWrite`](Change::BeginWrite):
    /// `Durable | Quarantined` with the pending mark `→ Vacant`, the mark cleared;
    /// the generation kept, as [`Delete`](Change::Delete). A durable store's delete
    /// holds the mark while its journal record becomes durable, so nothing else
    /// changes the record in between and nothing sees the delete before a crash
    /// could no longer take it back.
    CommitDelete,
}

/// The kind of a [`Change`], without its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChangeKind {
    /// [`Change::BeginWrite`].
    BeginWrite,
    /// [`Change::CommitWrite`].
    CommitWrite,
    /// [`Change::AbortWrite`].
    AbortWrite,
    /// [`Change::BeginCompact`].
    BeginCompact,
    /// [`Change::CommitCompact`].
    CommitCompact,
    /// [`Change::AbortCompact`].
    AbortCompact,
    /// [`Change::Quarantine`].
    Quarantine,
    /// [`Change::Remap`].
    Remap,
    /// [`Change::Delete`].
    Delete,
    /// [`Change::CommitDelete`].
    CommitDelete,
}

impl ChangeKind {
    /// Every change kind, in discriminant order.
    pub const ALL: [ChangeKind; 10] = [
        ChangeKind::BeginWrite,
        ChangeKind::CommitWrite,
        ChangeKind::AbortWrite,
        ChangeKind::BeginCompact,
        ChangeKind::CommitCompact,
        ChangeKind::AbortCompact,
        ChangeKind::Quarantine,
        ChangeKind::Remap,
        ChangeKind::Delete,
        ChangeKind::CommitDelete,
    ];
}

/// One allowed transition: from `(from, pending_before)` under `change` to
/// `(to, pending_after)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The change.
    pub change: ChangeKind,
    /// The state it applies to.
    pub from: State,
    /// The `write_pending` mark it requires.
    pub pending_before: bool,
    /// The resulting state.
    pub to: State,
    /// The resulting `write_pending` mark.
    pub pending_after: bool,
}

const fn rule(change: ChangeKind, from: State, pb: bool, to: State, pa: bool) -> Rule {
    Rule {
        change,
        from,
        pending_before: pb,
        to,
        pending_after: pa,
    }
}

use ChangeKind as K;
use State::{Compacting as C, Durable as D, Quarantined as Q, Vacant as V};

/// The transition table: every allowed transition, nothing else.
pub const TRANSITIONS: [Rule; 22] = [
    rule(K::BeginWrite, V, false, V, true),
    rule(K::BeginWrite, D, false, D, true),
    rule(K::BeginWrite, C, false, D, true),
    rule(K::BeginWrite, Q, false, Q, true),
    rule(K::CommitWrite, V, true, D, false),
    rule(K::CommitWrite, D, true, D, false),
    rule(K::CommitWrite, Q, true, D, false),
    rule(K::AbortWrite, V, true, V, false),
    rule(K::AbortWrite, D, true, D, false),
    rule(K::AbortWrite, Q, true, Q, false),
    rule(K::BeginCompact, D, false, C, false),
    rule(K::CommitCompact, C, false, D, false),
    rule(K::AbortCompact, C, false, D, false),
    rule(K::Quarantine, D, false, Q, false),
    rule(K::Quarantine, D, true, Q, true),
    rule(K::Quarantine, C, false, Q, false),
    rule(K::Remap, Q, false, D, false),
    rule(K::Remap, Q, true, D, true),
    rule(K::Delete, D, false, V, false),
    rule(K::Delete, Q, false, V, false),
    rule(K::CommitDelete, D, true, V, false),
    rule(K::CommitDelete, Q, true, V, false),
];

/// The rule for `change` from `(state, pending)`, if the table allows it: one
/// index into [`RULE_INDEX`], built from [`TRANSITIONS`] at compile time.
#[inline]
pub(crate) fn lookup(change: ChangeKind, state: State, pending: bool) -> Option<&'static Rule> {
    let i = RULE_INDEX[change as usize][state as usize][usize::from(pending)];
    (i != NO_RULE).then(|| &TRANSITIONS[i as usize])
}

const NO_RULE: u8 = u8::MAX;
const CHANGE_KINDS: usize = ChangeKind::ALL.len();

/// `(change, state, pending) → index into TRANSITIONS`, or `NO_RULE`.
static RULE_INDEX: [[[u8; 2]; 4]; CHANGE_KINDS] = {
    let mut index = [[[NO_RULE; 2]; 4]; CHANGE_KINDS];
    let mut i = 0;
    while i < TRANSITIONS.len() {
        let r = &TRANSITIONS[i];
        let cell = &mut index[r.change as usize][r.from as usize][r.pending_before as usize];
        assert!(*cell == NO_RULE, "duplicate rule in TRANSITIONS");
        *cell = i as u8;
        i += 1;
    }
    index
};

const _: () = assert!(TRANSITIONS.len() < NO_RULE as usize);
const _: () = assert!(ChangeKind::CommitDelete as usize == CHANGE_KINDS - 1);

impl Change {
    /// The kind of this change.
    pub const fn kind(&self) -> ChangeKind {
        match self {
            Change::BeginWrite => K::BeginWrite,
            Change::CommitWrite { .. } => K::CommitWrite,
            Change::AbortWrite => K::AbortWrite,
            Change::BeginCompact => K::BeginCompact,
            Change::CommitCompact { .. } => K::CommitCompact,
            Change::AbortCompact => K::AbortCompact,
            Change::Quarantine => K::Quarantine,
            Change::Remap { .. } => K::Remap,
            Change::Delete => K::Delete,
            Change::CommitDelete => K::CommitDelete,
        }
    }

    /// The fields after applying this change to `fields` of extent `extent`, or the
    /// typed error the table gives. Pure: no shared memory is touched.
    pub(crate) fn apply(&self, extent: ExtentId, fields: Fields) -> Result<Fields> {
        let Some(rule) = lookup(self.kind(), fields.state, fields.write_pending) else {
            return Err(Error::IllegalTransition {
                extent,
                from: fields.state,
                write_pending: fields.write_pending,
                change: self.kind(),
            });
        };
        let mut next = Fields {
            state: rule.to,
            write_pending: rule.pending_after,
            ..fields
        };
        match *self {
            Change::CommitWrite { location, checksum } => {
                if fields.generation >= MAX_GENERATION {
                    return Err(Error::GenerationExhausted { extent });
                }
                next.generation = fields.generation + 1;
                next.location = location;
                next.checksum = checksum;
            }
            Change::CommitCompact { location } | Change::Remap { location } => {
                next.location = location;
            }
            Change::Delete | Change::CommitDelete => {
                next.location = Location::default();
                next.checksum = 0;
            }
            _ => {}
        }
        Ok(next)
    }
}

/// The mutable fields of a record, without its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Fields {
    pub(crate) state: State,
    pub(crate) write_pending: bool,
    pub(crate) generation: u64,
    pub(crate) location: Location,
    pub(crate) checksum: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_has_no_duplicate_rules() {
        for (i, a) in TRANSITIONS.iter().enumerate() {
            for b in &TRANSITIONS[i + 1..] {
                assert!(
                    !(a.change == b.change
                        && a.from == b.from
                        && a.pending_before == b.pending_before),
                    "duplicate rule {a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn write_pending_never_survives_into_compacting() {
        for r in TRANSITIONS {
            assert!(
                !(r.to == C && r.pending_after),
                "rule {r:?} makes Compacting+pending"
            );
        }
    }

    #[test]
    fn illegal_transition_is_a_typed_error() {
        let fields = Fields::default();
        let err = Change::BeginCompact.apply(ExtentId(7), fields).unwrap_err();
        assert_eq!(err.code(), "FPRE002");
        assert!(!err.is_retryable());
    }

    #[test]
    fn commit_write_bumps_generation_and_sets_location() {
        let f = Change::BeginWrite
            .apply(ExtentId(3), Fields::default())
            .unwrap();
        let loc = Location::new(1, 4096, 100);
        let g = Change::CommitWrite {
            location: loc,
            checksum: 0xabcd,
        }
        .apply(ExtentId(3), f)
        .unwrap();
        assert_eq!((g.state, g.write_pending, g.generation), (D, false, 1));
        assert_eq!((g.location, g.checksum), (loc, 0xabcd));
    }

    #[test]
    fn generation_exhaustion_is_a_typed_error() {
        let f = Fields {
            state: D,
            write_pending: true,
            generation: MAX_GENERATION,
            ..Fields::default()
        };
        let err = Change::CommitWrite {
            location: Location::default(),
            checksum: 0,
        }
        .apply(ExtentId(9), f)
        .unwrap_err();
        assert_eq!(
            err,
            Error::GenerationExhausted {
                extent: ExtentId(9)
            }
        );
    }
}
