//! Single-flight loads: one load per (extent, generation), many waiters.

use crate::bytes::Bytes;
use crate::error::Error;
use crate::sync::{Condvar, Mutex};

/// How a load ended, as its waiters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlightOutcome {
    /// The bytes of the generation the waiter asked for, still current when the
    /// fill was accepted.
    Ready(Bytes),
    /// The generation changed while the bytes loaded: retry on a fresh snapshot.
    Superseded,
    /// The load failed; the error is the loader's.
    Failed(Error),
}

/// One load in progress. Waiters block in [`Flight::wait`] or poll
/// [`Flight::outcome`] (the emulator, which never blocks).
#[derive(Debug)]
pub struct Flight {
    outcome: Mutex<Option<FlightOutcome>>,
    done: Condvar,
}

impl Flight {
    pub(crate) fn new() -> Self {
        Flight {
            outcome: Mutex::new(None),
            done: Condvar::new(),
        }
    }

    /// The outcome if the load has finished.
    pub fn outcome(&self) -> Option<FlightOutcome> {
        self.outcome.lock().clone()
    }

    /// Blocks until the load finishes. Bounded by the loader: every [`FillToken`]
    /// finishes its flight when completed or dropped.
    ///
    /// [`FillToken`]: super::FillToken
    pub fn wait(&self) -> FlightOutcome {
        let mut guard = self.outcome.lock();
        loop {
            if let Some(outcome) = guard.as_ref() {
                return outcome.clone();
            }
            guard = self.done.wait(guard);
        }
    }

    /// Whether the load has finished.
    pub(crate) fn is_done(&self) -> bool {
        self.outcome.lock().is_some()
    }

    /// Sets the outcome (first call wins) and wakes every waiter.
    pub(crate) fn finish(&self, outcome: FlightOutcome) {
        let mut guard = self.outcome.lock();
        if guard.is_none() {
            *guard = Some(outcome);
        }
        drop(guard);
        self.done.notify_all();
    }
}
