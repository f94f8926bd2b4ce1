//! Events: every committed change an engine may track, delivered once durable.
//!
//! [`Store::set_listener`](crate::Store::set_listener) installs a callback that the
//! protocol machines call right after a change's journal record is durable (at once
//! on an in-memory store), in the thread that made the change, before the call that
//! made it returns. An engine that keeps its own manifest can persist exactly these
//! records: a write, a delete, a relocation by compaction, packing, drain or remap,
//! a quarantine, a degraded device and a location retired as bad (the last two
//! as they are decided; a durable store journals them right after). Two
//! changes of one extent committed by different threads at about the same
//! time may reach the listeners in either order (the later commit's event can
//! overtake the earlier's), so keep, per
//! extent, the record with the highest [`version`](crate::Snapshot::version), as
//! recovery does; [`Store::with_records`](crate::Store::with_records) takes the
//! records in any order.
//!
//! On an in-memory store a change is numbered and retained for
//! [`Store::changes_since`](crate::Store::changes_since) just before the
//! listeners get it: a consumer reading the stream may see a change before the
//! engine's own listener has persisted it, and after a crash of the engine hold
//! a change its manifest lost. A listener removed while an event is being
//! delivered may still get that one event.
//!
//! [`Store::add_listener`](crate::Store::add_listener) adds another (a replicator
//! beside an index, say): each event goes to every listener, in the order they
//! were added.
//!
//! # The change stream
//!
//! Every record change (all events but [`Event::DeviceDegraded`] and
//! [`Event::LocationRetired`]) carries a
//! sequence number and the record's tag, and is retained in memory for
//! [`Store::changes_since`](crate::Store::changes_since): a consumer that reads
//! at its own pace (a replicator, an index kept elsewhere) resumes from the
//! number after the last change it applied, and
//! [`Store::hold_changes`](crate::Store::hold_changes) keeps its changes while
//! it lags. Numbers only grow within a store; a durable store reopened in its
//! own directory numbers from the journal's next entry (usually past a gap,
//! but after a crash perhaps right where the earlier run's cursor stands),
//! while an in-memory one numbers from 0 each time it is made, and one opened
//! from a backup or a copied directory from about 0: keep
//! [`Store::change_stream_id`](crate::Store::change_stream_id) beside the
//! cursor to tell (see [`Store::change_seq`](crate::Store::change_seq)).
//! Per extent the record's version orders the changes (see
//! [`Store::changes_since`](crate::Store::changes_since) for the follower's
//! rule, and [`Store::change_baseline`](crate::Store::change_baseline) for
//! where it starts). Listeners get the same events with the same numbers.
//!
//! A listener must be quick (it runs on the committing thread) and must not call
//! back into the store for the same extent, nor, while a batch commits, for an
//! extent of that batch: its later items are still pending on the listener's
//! own thread, so a write of one would wait for itself for `write_wait_ms` and
//! then fail with [`Error::WriteInProgress`](crate::Error::WriteInProgress)
//! (use [`Store::try_write`](crate::Store::try_write), or hand the work to
//! another thread). A listener may add or remove listeners, itself included.
//! A listener that panics is contained:
//! the panic is counted in [`StoreStats::listener_panics`](crate::StoreStats), the
//! other listeners still get the event, and the operation completes as if there
//! were no listener, but for one thing on a store without a journal
//! ([`Store::new`](crate::Store::new), [`Store::with_manifest`](crate::Store::with_manifest)):
//! the location the change left (an overwritten generation's, a deleted
//! extent's, or the source of a relocation) is kept out of use until the store
//! is made again, counted in `StoreStats::locations_kept_for_listeners`. (A
//! durable store's journal is its truth: it frees them as always.) So a
//! listener that panics for another reason than a failed manifest write (a
//! channel whose receiver went away) costs such a store that space.
//!
//! That is what an engine keeping its own manifest builds on: a change's
//! listeners run before the location it left is freed, so a listener that
//! persists the record before it returns never lets the store reuse bytes the
//! manifest still names, and one that cannot persist it panics. The manifest
//! then names the record before the change, whose bytes stay where it says:
//! after a restart a missed relocation reads the same generation from its old
//! place, a missed overwrite or delete the generation before it (the engine
//! must not have acknowledged the change to its own caller).
//!
//! # Examples
//!
//! ```
//! use extentmeta::events::Event;
//! use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
//! use std::sync::{Arc, Mutex};
//!
//! let store = Store::new(MemBackend::new(2), StoreConfig::default())?;
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! store.set_listener(move |event: &Event| sink.lock().unwrap().push(event.clone()));
//! store.write(ExtentId(1), b"bytes")?;
//! store.compact(ExtentId(1))?;
//! let seen = seen.lock().unwrap();
//! assert!(matches!(seen[0], Event::Written { .. }));
//! assert!(matches!(seen[1], Event::Relocated { .. }));
//! # Ok::<(), extentmeta::Error>(())
//! ```

mod changes;

pub use changes::{ChangeHold, DEFAULT_CHANGE_HOLD_MAX, DEFAULT_CHANGE_RETENTION};
pub(crate) use changes::{ChangeLog, fresh_stream_id};

use crate::record::{Location, Snapshot, Tag};
use crate::sync::{AtomicU64, Ordering::Relaxed, RwLock};
// std's Arc even under loom: the callback is shared, not synchronised through it.
use std::sync::Arc;

/// Why an extent's bytes moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Relocation {
    /// [`Store::compact`](crate::Store::compact).
    Compaction,
    /// [`Store::pack`](crate::Store::pack): moved lower to shrink a file.
    Pack,
    /// [`Store::drain`](crate::Store::drain): moved off a device.
    Drain,
    /// The integrity ladder's remap of a quarantined extent from a good copy.
    Remap,
}

/// One committed, durable change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// New bytes were committed (`write`, `write_batch`).
    Written {
        /// Its number in the change stream.
        seq: u64,
        /// The record as committed.
        record: Snapshot,
        /// The write's tag (empty for an untagged write).
        tag: Tag,
    },
    /// The extent was deleted.
    Deleted {
        /// Its number in the change stream.
        seq: u64,
        /// The record as committed (`Vacant`, generation kept).
        record: Snapshot,
        /// The tag the deleted generation carried: the engine's key of what
        /// went.
        tag: Tag,
    },
    /// The extent's bytes moved; content and generation unchanged.
    Relocated {
        /// Its number in the change stream.
        seq: u64,
        /// The record at its new location.
        record: Snapshot,
        /// The record's tag (a move keeps it), so that a follower that applies
        /// this change before the write it moved still holds the right key.
        tag: Tag,
        /// Where the bytes were.
        from: Location,
        /// Why they moved.
        cause: Relocation,
    },
    /// Verification found a persistent fault: the extent is quarantined (a remap,
    /// if a good copy exists, follows as [`Event::Relocated`]).
    Quarantined {
        /// Its number in the change stream.
        seq: u64,
        /// The record as committed (`Quarantined`).
        record: Snapshot,
        /// The record's tag (a quarantine keeps it).
        tag: Tag,
    },
    /// The health policy degraded a device: new data goes elsewhere while it can.
    /// Not a record change, so not in the change stream (its journal mark is
    /// best effort: the policy finds the device again if it is lost).
    DeviceDegraded {
        /// The device.
        device: u16,
    },
    /// A location failed for good (every re-read of an extent there, the
    /// write or read-back of a copy placed there, or the write of new data
    /// placed there) and is never handed out again; reported once, when it is
    /// marked. Not a record change, so not in the change stream. A durable
    /// store journals the mark (right after this event; a failed write's with
    /// the journal's next append, which a crash before it may lose: the
    /// location then fails again); an engine that keeps its own manifest keeps
    /// these and hands them back to
    /// [`Store::with_manifest`](crate::Store::with_manifest), or a restart would
    /// place new data where the disk already failed.
    LocationRetired {
        /// The location.
        location: Location,
    },
}

impl Event {
    /// The change's number in the change stream; `None` for
    /// [`Event::DeviceDegraded`] and [`Event::LocationRetired`], which are not
    /// record changes.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Event::Written { seq, .. }
            | Event::Deleted { seq, .. }
            | Event::Relocated { seq, .. }
            | Event::Quarantined { seq, .. } => Some(*seq),
            Event::DeviceDegraded { .. } | Event::LocationRetired { .. } => None,
        }
    }

    /// The tag the change carries: the record's for a write, a relocation
    /// and a quarantine, the deleted generation's for a delete; `None` for
    /// [`Event::DeviceDegraded`].
    pub fn tag(&self) -> Option<Tag> {
        match self {
            Event::Written { tag, .. }
            | Event::Deleted { tag, .. }
            | Event::Relocated { tag, .. }
            | Event::Quarantined { tag, .. } => Some(*tag),
            Event::DeviceDegraded { .. } | Event::LocationRetired { .. } => None,
        }
    }

    /// The committed record; `None` for [`Event::DeviceDegraded`] and
    /// [`Event::LocationRetired`].
    pub fn record(&self) -> Option<Snapshot> {
        match self {
            Event::Written { record, .. }
            | Event::Deleted { record, .. }
            | Event::Relocated { record, .. }
            | Event::Quarantined { record, .. } => Some(*record),
            Event::DeviceDegraded { .. } | Event::LocationRetired { .. } => None,
        }
    }
}

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// Names a listener added with
/// [`Store::add_listener`](crate::Store::add_listener), to remove it with
/// [`Store::remove_listener`](crate::Store::remove_listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// The installed listeners, in the order they were added.
#[derive(Default)]
pub(crate) struct Listener {
    /// Replaced whole on every change, so an event takes one reference count
    /// under the read lock and calls the listeners without holding it.
    callbacks: RwLock<Arc<[(ListenerId, Callback)]>>,
    next: AtomicU64,
    panics: AtomicU64,
    /// The change stream: every record change, numbered and retained.
    pub(crate) changes: ChangeLog,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("installed", &self.callbacks.read().len())
            .finish()
    }
}

impl Listener {
    /// Replaces every listener with `callback` (none with `None`).
    pub(crate) fn set(&self, callback: Option<Callback>) {
        let list: Vec<(ListenerId, Callback)> =
            callback.map(|c| (self.id(), c)).into_iter().collect();
        *self.callbacks.write() = list.into();
    }

    /// Adds `callback` after the others.
    pub(crate) fn add(&self, callback: Callback) -> ListenerId {
        let id = self.id();
        let mut callbacks = self.callbacks.write();
        let mut list = callbacks.to_vec();
        list.push((id, callback));
        *callbacks = list.into();
        id
    }

    /// Removes listener `id`; whether it was there.
    pub(crate) fn remove(&self, id: ListenerId) -> bool {
        let mut callbacks = self.callbacks.write();
        let before = callbacks.len();
        let list: Vec<_> = callbacks
            .iter()
            .filter(|(i, _)| *i != id)
            .cloned()
            .collect();
        *callbacks = list.into();
        callbacks.len() < before
    }

    fn id(&self) -> ListenerId {
        // Relaxed: a unique number, ordered with nothing.
        ListenerId(self.next.fetch_add(1, Relaxed))
    }

    /// Numbers the record change `event` builds, retains it in the change
    /// stream and delivers it to every listener: whether every listener
    /// returned (none panicked).
    pub(crate) fn emit(&self, event: impl FnOnce(u64) -> Event) -> bool {
        let event = self.changes.push(event);
        // The guard ends with this statement: a listener may add or remove
        // listeners (a write lock on the same thread), and one that writes
        // another extent emits while another thread waits to change the list.
        let callbacks = Arc::clone(&self.callbacks.read());
        self.deliver(&callbacks, &event)
    }

    /// Delivers `event`, which is not a record change, to every listener (built
    /// only if one is installed).
    pub(crate) fn notify(&self, event: impl FnOnce() -> Event) {
        let callbacks = Arc::clone(&self.callbacks.read());
        if !callbacks.is_empty() {
            // Nothing waits on a notice's delivery.
            let _ = self.deliver(&callbacks, &event());
        }
    }

    /// A listener that panics is counted and the others still get the event;
    /// whether none panicked.
    fn deliver(&self, callbacks: &[(ListenerId, Callback)], event: &Event) -> bool {
        let mut returned = true;
        for (_, callback) in callbacks.iter() {
            let call = std::panic::AssertUnwindSafe(|| callback(event));
            if std::panic::catch_unwind(call).is_err() {
                // Relaxed: a statistic, ordered with nothing.
                self.panics.fetch_add(1, Relaxed);
                returned = false;
            }
        }
        returned
    }

    /// Listener calls that panicked.
    pub(crate) fn panics(&self) -> u64 {
        // Relaxed: a statistic.
        self.panics.load(Relaxed)
    }
}

impl Default for RwLock<Arc<[(ListenerId, Callback)]>> {
    fn default() -> Self {
        RwLock::new(Arc::from(Vec::new()))
    }
}
