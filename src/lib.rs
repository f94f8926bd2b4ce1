//! # extentmeta
//!
//! Per-extent metadata, a prefetch cache and compaction that stay consistent with
//! each other, for storage engines.
//!
//! The foundation is the [`ExtentTable`]: one versioned record per [`ExtentId`],
//! read lock-free as a [`Snapshot`] and changed only by compare-and-swap
//! [`transition`](ExtentTable::transition)s checked against the
//! [transition table](TRANSITIONS). Prefetch, compaction, writes and verification
//! built on it can never observe a half-updated record.
//!
//! ```
//! use extentmeta::{Change, ExtentId, ExtentTable, Location, TableConfig, checksum};
//!
//! let table = ExtentTable::new(TableConfig::default());
//! let id = ExtentId(7);
//! let begin = table.transition(id, 0, Change::BeginWrite)?;
//! let crc = checksum(id, begin.generation() + 1, b"bytes");
//! let loc = Location::new(0, 4096, 5);
//! table.transition(id, begin.version(), Change::CommitWrite { location: loc, checksum: crc })?;
//!
//! let snap = table.snapshot(id)?;
//! assert_eq!((snap.generation(), snap.location()), (1, loc));
//! # Ok::<(), extentmeta::Error>(())
//! ```
//!
//! A durable store ([`Store::open`]) recovers every acknowledged operation after a
//! crash; the [`design`] module states the invariants, the durability model and
//! which constructor to choose.
//!
//! ## Errors
//!
//! Every error is an [`Error`] with a stable `FPRExxx` code; the catalog is in the
//! [`error`] module.

#![deny(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod backend;
mod bytes;
pub mod cache;
pub mod design;
pub mod error;
pub mod events;
pub mod fs;
mod journal;
pub mod policy;
mod protocol;
pub mod record;
#[cfg(feature = "sim")]
pub mod sim;
mod space;
pub mod store;
mod sync;
pub mod table;

pub use backend::{Backend, FileBackend, MemBackend};
pub use bytes::Bytes;
pub use cache::{Cache, CachePolicy, CacheStats, Priority};
pub use error::{Error, Result};
pub use policy::IntegrityPolicy;
pub use protocol::{CompactOutcome, MAX_ATTEMPTS, RepairOutcome, Verdict};
pub use record::{
    Change, ChangeKind, ExtentId, Location, MAX_GENERATION, MAX_TAG_LEN, MAX_VERSION, Rule,
    Snapshot, State, TRANSITIONS, Tag, checksum,
};
pub use space::{DeviceSpaceStats, PlanGoal};
pub use store::{Backup, Batch, RecoveryReport, Store, StoreConfig, StoreStats};
pub use table::{ExtentTable, TableConfig};

#[cfg(loom)]
pub use sync::{Site, mutant};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
