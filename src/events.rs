//! Events: every committed change an engine may track, delivered once durable.
//!
//! [`Store::set_listener`](crate::Store::set_listener) installs a callback that the
//! protocol machines call right after a change's journal record is durable (at once
//! on an in-memory store), in the thread that made the change, before the call that
//! made it returns. So for one extent the events arrive in commit order, and an
//! engine that keeps its own manifest can persist exactly these records: a write,
//! a delete, a relocation by compaction, packing, drain or remap, a quarantine and
//! a degraded device.
//!
//! The listener must be quick (it runs on the committing thread) and must not call
//! back into the store for the same extent. A listener that panics is contained:
//! the panic is counted in [`StoreStats::listener_panics`](crate::StoreStats) and
//! the operation completes as if there were no listener.
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

use crate::record::{Location, Snapshot};
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
        /// The record as committed.
        record: Snapshot,
    },
    /// The extent was deleted.
    Deleted {
        /// The record as committed (`Vacant`, generation kept).
        record: Snapshot,
    },
    /// The extent's bytes moved; content and generation unchanged.
    Relocated {
        /// The record at its new location.
        record: Snapshot,
        /// Where the bytes were.
        from: Location,
        /// Why they moved.
        cause: Relocation,
    },
    /// Verification found a persistent fault: the extent is quarantined (a remap,
    /// if a good copy exists, follows as [`Event::Relocated`]).
    Quarantined {
        /// The record as committed (`Quarantined`).
        record: Snapshot,
    },
    /// The health policy degraded a device: new data goes elsewhere while it can.
    DeviceDegraded {
        /// The device.
        device: u16,
    },
}

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// The installed listener, if any.
#[derive(Default)]
pub(crate) struct Listener {
    callback: RwLock<Option<Callback>>,
    panics: AtomicU64,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("installed", &self.callback.read().is_some())
            .finish()
    }
}

impl Listener {
    /// Installs (or, with `None`, removes) the callback.
    pub(crate) fn set(&self, callback: Option<Callback>) {
        *self.callback.write() = callback;
    }

    /// Delivers `event` (built only if a listener is installed).
    pub(crate) fn emit(&self, event: impl FnOnce() -> Event) {
        let Some(callback) = self.callback.read().clone() else {
            return;
        };
        let event = event();
        let call = std::panic::AssertUnwindSafe(|| callback(&event));
        if std::panic::catch_unwind(call).is_err() {
            // Relaxed: a statistic, ordered with nothing.
            self.panics.fetch_add(1, Relaxed);
        }
    }

    /// Listener calls that panicked.
    pub(crate) fn panics(&self) -> u64 {
        // Relaxed: a statistic.
        self.panics.load(Relaxed)
    }
}

impl Default for RwLock<Option<Callback>> {
    fn default() -> Self {
        RwLock::new(None)
    }
}
