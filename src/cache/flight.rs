//! Single-flight loads: one load per (extent, generation), many waiters.

use crate::bytes::Bytes;
use crate::error::Error;
use crate::sync::{Arc, AtomicU64, Condvar, Mutex, Ordering};

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
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct State {
    outcome: Option<FlightOutcome>,
    claim: Claim,
}

/// Where a load claimed ahead of its run (readahead's, `Cache::claim`)
/// stands. A queued claim's token waits in a worker's queue. A demand reader
/// that meets the load waits on it if its read has started, as on a page the
/// OS locked for its readahead I/O, or if a worker is about to start it; if
/// the claim waits behind other hints, the reader takes it over
/// (`Flight::take_over`) rather than wait for the queue ahead of it.
#[derive(Debug, Default)]
enum Claim {
    /// Not a claim: its loader runs it now.
    #[default]
    None,
    /// Claimed; its token not run yet. With the hint's place in its queue
    /// once it is queued (`Flight::enqueued`).
    Queued(Option<(u64, Arc<ClaimQueue>)>),
    /// The claim's token runs it.
    Started,
    /// A demand reader took it over: the claim's token is void.
    TakenOver,
}

/// The progress of the queue that claims wait in: how many of its hints the
/// workers took, against the place each claim's hint was given.
#[derive(Debug)]
pub(crate) struct ClaimQueue {
    /// Places given to the hints offered, whether the queue took them or not.
    given: AtomicU64,
    /// Places the workers took, or that were given and never entered.
    taken: AtomicU64,
    /// A reader waits on a claim with fewer hints than this ahead of it (the
    /// workers: one of them takes it next), and takes over one further back.
    /// A worker that takes a batch of hints counts each run of it as taken
    /// when the run starts (`store::prefetch`), so a claim in a later run is
    /// still ahead; a reader can wait behind the other reads of its own run
    /// (a window's, which mostly merge).
    patience: u64,
}

impl ClaimQueue {
    /// A queue served by `workers` workers.
    pub(crate) fn new(workers: u64) -> Self {
        ClaimQueue {
            given: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            patience: workers,
        }
    }

    /// The place of the next hint offered.
    pub(crate) fn give(&self) -> u64 {
        // Relaxed: read only through the places it hands out, which `far_back`
        // compares with `taken`; it orders nothing.
        self.given.fetch_add(1, Ordering::Relaxed)
    }

    /// A worker took a hint (or one that was given a place never entered).
    pub(crate) fn took(&self) {
        // Relaxed: read by `far_back` only, whose answer decides whether a
        // reader waits or loads itself, both correct whatever it reads; it
        // orders nothing.
        self.taken.fetch_add(1, Ordering::Relaxed);
    }

    /// Hints given a place whose run no worker started yet (or that never
    /// entered, until counted): what waits in the queue and in the workers'
    /// batches.
    pub(crate) fn waiting(&self) -> u64 {
        // Relaxed: an estimate that bounds memory held by waiting hints; it
        // is off by at most the places given and taken while it reads, and
        // orders nothing.
        let taken = self.taken.load(Ordering::Relaxed);
        self.given.load(Ordering::Relaxed).saturating_sub(taken)
    }

    /// Whether the hint given place `at` waits behind enough others that a
    /// reader should not wait for it.
    fn far_back(&self, at: u64) -> bool {
        // Relaxed: pairs with nothing (see `took`).
        at >= self.taken.load(Ordering::Relaxed) + self.patience
    }
}

impl Flight {
    pub(crate) fn new() -> Self {
        Flight {
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }

    /// The outcome if the load has finished.
    pub fn outcome(&self) -> Option<FlightOutcome> {
        self.state.lock().outcome.clone()
    }

    /// Blocks until the load finishes. Bounded by the loader: every [`FillToken`]
    /// finishes its flight when completed or dropped, and a claim's token that
    /// does neither was taken over by a reader's token, which does.
    ///
    /// [`FillToken`]: super::FillToken
    pub fn wait(&self) -> FlightOutcome {
        let mut guard = self.state.lock();
        loop {
            if let Some(outcome) = guard.outcome.as_ref() {
                return outcome.clone();
            }
            guard = self.done.wait(guard);
        }
    }

    /// Whether the load has finished.
    pub(crate) fn is_done(&self) -> bool {
        self.state.lock().outcome.is_some()
    }

    /// Sets the outcome (first call wins) and wakes every waiter.
    pub(crate) fn finish(&self, outcome: FlightOutcome) {
        self.finish_unless_taken_over(outcome, false);
    }

    /// [`finish`](Self::finish), except that a claim's token (`claim`) finishes
    /// nothing once a reader took its load over: the reader's token does.
    pub(crate) fn finish_unless_taken_over(&self, outcome: FlightOutcome, claim: bool) {
        let mut guard = self.state.lock();
        if claim && matches!(guard.claim, Claim::TakenOver) {
            return;
        }
        if guard.outcome.is_none() {
            guard.outcome = Some(outcome);
        }
        drop(guard);
        self.done.notify_all();
    }

    /// Marks the load claimed ahead of its run (`Cache::claim`, before any
    /// reader can meet it).
    pub(crate) fn queue(&self) {
        self.state.lock().claim = Claim::Queued(None);
    }

    /// The claim's hint was given place `at` in `queue`.
    pub(crate) fn enqueued(&self, at: u64, queue: &Arc<ClaimQueue>) {
        let mut guard = self.state.lock();
        if let Claim::Queued(place) = &mut guard.claim {
            *place = Some((at, Arc::clone(queue)));
        }
    }

    /// The claim's token starts its load: `false` if a reader took it over.
    pub(crate) fn begin_claim(&self) -> bool {
        let mut guard = self.state.lock();
        match guard.claim {
            Claim::TakenOver => false,
            _ => {
                guard.claim = Claim::Started;
                true
            }
        }
    }

    /// A demand reader takes over a queued claim nobody started, unless a
    /// worker is about to start it (see [`Claim`]): `true` if the reader now
    /// loads it (and the claim's token is void). A claim not yet given its
    /// place (between the claim and its offer) or outside any queue (the
    /// protocol's tests and models) is taken over.
    pub(crate) fn take_over(&self) -> bool {
        let mut guard = self.state.lock();
        let take = match &guard.claim {
            Claim::Queued(place) => {
                guard.outcome.is_none()
                    && place.as_ref().is_none_or(|(at, queue)| queue.far_back(*at))
            }
            _ => false,
        };
        if take {
            guard.claim = Claim::TakenOver;
        }
        take
    }

    /// Whether a reader took this claimed load over.
    pub(crate) fn taken_over(&self) -> bool {
        matches!(self.state.lock().claim, Claim::TakenOver)
    }
}
