//! The prefetcher: a bounded hint queue and worker threads.
//!
//! `Store::prefetch` snapshots each id and queues `(id, generation)` with
//! `try_send`: a full queue drops the hint (counted), the caller never blocks. A
//! worker takes what is queued at once (up to [`HINTS_AT_ONCE`]), re-snapshots
//! before loading and cancels a hint whose generation changed in the queue (the
//! bytes it would load are already stale); the rest load together, extents that
//! lie together on a device read with one device read. Loads run the read
//! protocol at [`Priority::Prefetch`](crate::Priority::Prefetch), and never wait on
//! another load of the same extent: that load will fill the cache anyway.
//!
//! Readahead's hints carry the load they claimed (`ReadOp::claim`): a demand
//! reader that reaches the extent first waits on it while its read runs or a
//! worker is about to start it (fewer hints ahead of it than workers), and
//! takes it over, reading the extent itself, when it waits further back
//! (`ClaimQueue`). Every path that does not run a claimed load ends it (a full
//! queue, a stale hint, a stopping worker, the channel dropped at shutdown),
//! which wakes its waiters to read for themselves; a claim a reader took over
//! is the reader's to end.
//!
//! Shutdown: `Store::close` (which dropping the store runs) first sets the store's
//! stop flag, then takes the hint sender (no hint is queued after that), drops
//! the stop sender, which wakes the workers, and joins them; the channel and
//! the hints still queued go with the last worker. A worker checks the flag
//! before each hint and the driver checks it before each step of a prefetch
//! load, so `close` waits for at most one step of one load per worker (the I/O
//! in flight), never for the queued hints: those are dropped unloaded. A load
//! stopped this way ends with [`Error::Shutdown`].
//!
//! A backend that panics during a load does not take the worker with it: the driver
//! contains the panic at the I/O call (it becomes that request's I/O error, counted
//! in `StoreStats::backend_panics`), the load fails and is counted in
//! `StoreStats::prefetch_abandoned`, and the worker goes on. A panic anywhere else
//! in a load is caught at the hint, where the driver's guard releases the load's
//! pins and fill tokens, and counted the same way.

use super::shared::Shared;
use crate::bytes::Bytes;
use crate::cache::{ClaimQueue, FillToken, Priority};
use crate::error::{Error, Result};
use crate::protocol::{Machine, ReadOp};
use crate::record::ExtentId;
use crate::sync::{Arc, Mutex, RwLock, thread};
use crossbeam::channel::{Receiver, Sender, TrySendError, bounded, select};

/// One queued prefetch.
#[derive(Debug)]
pub(crate) struct Hint {
    pub(crate) id: ExtentId,
    pub(crate) generation: u64,
    /// The load, claimed when the hint was queued (readahead's hints): demand
    /// readers of this generation wait on it, or take it over when it waits
    /// far back in the queue (`ReadOp::claim`).
    pub(crate) claimed: Option<FillToken>,
    /// Where the load's bytes go, allocated by the thread that queued the hint
    /// (readahead's reader, for small extents; see `store::hints`).
    pub(crate) buffer: Option<Bytes>,
}

/// The hint queue and its workers.
#[derive(Debug)]
pub(crate) struct Prefetcher {
    /// Taken by `shutdown` under the write lock: no hint is queued after it, so
    /// every claimed load in the queue is dropped (and its waiters woken) once
    /// the workers are joined and the channel with them. Offers and `queued`
    /// take the read lock (shared by every reader: an atomic add and sub).
    sender: RwLock<Option<Sender<Hint>>>,
    /// Dropped to stop the workers (they select on it next to the hints).
    stop: Mutex<Option<Sender<()>>>,
    workers: Mutex<Vec<thread::JoinHandle<()>>>,
    /// Whether any worker was started: without one every hint is dropped.
    has_workers: bool,
    /// See [`claim_below`](Self::claim_below).
    claim_below: usize,
    /// The places of the hints offered against the workers' progress: a
    /// reader waits on a claim only near the front of the queue.
    claims: Arc<ClaimQueue>,
}

/// Readahead claims loads only while fewer hints than this are queued, never
/// behind a queue an explicit `prefetch` of many ids filled: twice the 64 hints
/// of a 256 KiB window of 4 KiB extents. (A reader waits only on a claim near
/// the queue's front, see `ClaimQueue`.)
const CLAIM_QUEUE_MAX: usize = 128;

impl Prefetcher {
    /// Starts `workers` threads on a queue of `queue` hints.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (op `"spawn"`) if a thread cannot be started; the ones already
    /// started are stopped and joined.
    pub(crate) fn start(shared: &Arc<Shared>, workers: usize, queue: usize) -> Result<Self> {
        let (sender, receiver) = bounded(queue);
        let (stop, stopped) = bounded::<()>(0);
        let prefetcher = Prefetcher {
            sender: RwLock::new(Some(sender)),
            stop: Mutex::new(Some(stop)),
            workers: Mutex::new(Vec::with_capacity(workers)),
            has_workers: workers > 0,
            claim_below: CLAIM_QUEUE_MAX.min(queue / 2),
            claims: Arc::new(ClaimQueue::new(workers as u64)),
        };
        for i in 0..workers {
            let shared = Arc::clone(shared);
            let claims = Arc::clone(&prefetcher.claims);
            let receiver: Receiver<Hint> = receiver.clone();
            let stopped = stopped.clone();
            let handle = thread::Builder::new()
                .name(format!("extentmeta-prefetch-{i}"))
                .spawn(move || run(&shared, &receiver, &stopped, &claims))
                // Dropping `prefetcher` on this path joins the workers started so far.
                .map_err(|e| Error::io(0, "spawn", &e))?;
            prefetcher.workers.lock().push(handle);
        }
        if workers == 0 {
            *prefetcher.sender.write() = None;
        }
        Ok(prefetcher)
    }

    /// Queues `hint`; gives it back if the queue is full or prefetch is off.
    pub(crate) fn offer(&self, hint: Hint) -> std::result::Result<(), Hint> {
        match &*self.sender.read() {
            Some(sender) => {
                // The place is given before the send, so that no worker can
                // start the claim before it has one.
                let at = self.claims.give();
                if let Some(token) = &hint.claimed {
                    token.enqueued(at, &self.claims);
                }
                sender.try_send(hint).map_err(|e| {
                    // A place never entered: counted as taken, so that the
                    // places after it stay as near the front as they are.
                    self.claims.took();
                    match e {
                        TrySendError::Full(hint) | TrySendError::Disconnected(hint) => hint,
                    }
                })
            }
            None => Err(hint),
        }
    }

    /// Readahead's hints claim their loads only while fewer hints than this
    /// are queued: [`CLAIM_QUEUE_MAX`], or half the queue if that is less, so
    /// that a claim is never made only to be dropped by a full queue.
    pub(crate) fn claim_below(&self) -> usize {
        self.claim_below
    }

    /// Whether hints are loaded at all (some worker was started).
    pub(crate) fn has_workers(&self) -> bool {
        self.has_workers
    }

    /// Hints waiting in the queue or in a worker's batch, their runs not
    /// started (`ClaimQueue::waiting`).
    pub(crate) fn waiting(&self) -> u64 {
        self.claims.waiting()
    }

    /// Hints waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.sender.read().as_ref().map_or(0, Sender::len)
    }
}

impl Prefetcher {
    /// Stops and joins the workers (each finishes or abandons the load in flight;
    /// queued hints are dropped). Idempotent. Returns how many workers had
    /// panicked (never expected: loads contain backend panics).
    pub(crate) fn shutdown(&self) -> usize {
        self.sender.write().take();
        self.stop.lock().take();
        let workers = std::mem::take(&mut *self.workers.lock());
        workers
            .into_iter()
            .map(crate::sync::joined)
            .filter(Result::is_err)
            .count()
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    /// A read at prefetch priority that never waits on another reader's load.
    pub(crate) fn warm(&self, id: ExtentId) -> Result<bool> {
        let op = ReadOp::new(id, Priority::Prefetch);
        let join = op.joins_loads();
        Ok(self.drive(op, join)?.is_some())
    }

    /// A worker's handling of the hints it took at once: the ones still current
    /// load together, their device reads merged (`Shared::drive_coalesced`).
    fn prefetch_hints(&self, hints: Vec<Hint>) {
        if self.stopping() {
            for token in hints.into_iter().filter_map(|hint| hint.claimed) {
                self.core.cache.abandon(token);
            }
            return;
        }
        let loads: Vec<ReadOp> = (hints.into_iter())
            .filter_map(|hint| {
                let current = self.core.table.snapshot(hint.id);
                // A quarantine keeps the generation but makes the extent
                // unreadable: a prefetch would fetch a good copy from the
                // engine's source and cache nothing.
                let stale = current.map_or(true, |s| {
                    s.generation() != hint.generation || !s.is_readable()
                });
                if stale {
                    self.counters.prefetch_cancelled.bump();
                    // Ends a claimed load at once: its waiters retry on the new
                    // generation.
                    if let Some(token) = hint.claimed {
                        self.core.cache.abandon(token);
                    }
                    return None;
                }
                let op = match hint.claimed {
                    Some(token) => ReadOp::with_claim(token),
                    None => ReadOp::new(hint.id, Priority::Prefetch),
                };
                Some(op.with_buffer(hint.buffer))
            })
            .collect();
        // Errors are not the prefetcher's to report (a demand read will see them),
        // only to count.
        for result in self.drive_coalesced(loads) {
            match result {
                Ok(_) => self.counters.prefetch_done.bump(),
                Err(_) => self.counters.prefetch_abandoned.bump(),
            }
        }
    }
}

/// The most hints a worker takes at once (their reads merge when their extents
/// lie together): a readahead window of 256 KiB holds 16 extents of 16 KiB.
const HINTS_AT_ONCE: usize = 32;

/// Drops `hint` and the hints queued now, abandoning their claims: a reader
/// waiting on one answers at once, not only once `shutdown` joined every
/// worker and the queue went with them. Bounded by the queue's length.
fn drain(shared: &Shared, hint: Option<Hint>, receiver: &Receiver<Hint>, claims: &ClaimQueue) {
    let queued = std::iter::from_fn(|| receiver.try_recv().ok()).inspect(|_| claims.took());
    for token in hint.into_iter().chain(queued).filter_map(|h| h.claimed) {
        shared.core.cache.abandon(token);
    }
}

fn run(shared: &Shared, receiver: &Receiver<Hint>, stopped: &Receiver<()>, claims: &ClaimQueue) {
    // Bounded by the channels and the stop flag: ends when the store drops the
    // stop sender (or the hint sender), or at the first pass after the flag is
    // set.
    loop {
        // A stopping store's worker takes no further hint, and ends the claims
        // queued (`drain`).
        if shared.stopping() {
            return drain(shared, None, receiver, claims);
        }
        let hint = select! {
            recv(receiver) -> hint => match hint {
                Ok(hint) => hint,
                Err(_) => return,
            },
            recv(stopped) -> _ => return drain(shared, None, receiver, claims),
        };
        if shared.stopping() {
            claims.took();
            return drain(shared, Some(hint), receiver, claims);
        }
        // What else is queued now, up to a bound, if the device is slow enough for
        // merged reads to pay: hints of one readahead window arrive together.
        let mut hints = vec![hint];
        while shared.coalescing_pays() && hints.len() < HINTS_AT_ONCE {
            match receiver.try_recv() {
                Ok(hint) => hints.push(hint),
                Err(_) => break,
            }
        }
        // One run at a time: a claim (readahead's) starts a new run unless it
        // follows the previous id (a window's extents, which lie together and
        // merge). The runs after the first start only when it is done, so
        // their hints count as taken only then, and a reader may take their
        // claims over meanwhile (`ClaimQueue`). Taken as one batch, a reader
        // waited on another scan's claim behind this batch's other reads.
        // Explicit prefetches' hints stay in the run they follow, to merge.
        let follows = |h: &Hint, run: &[Hint]| {
            h.claimed.is_none()
                || run
                    .last()
                    .is_some_and(|l| l.id.0.checked_add(1) == Some(h.id.0))
        };
        let mut rest = hints.into_iter().peekable();
        while let Some(first) = rest.next() {
            let mut run = vec![first];
            while let Some(next) = rest.next_if(|h| follows(h, &run)) {
                run.push(next);
            }
            for _ in &run {
                claims.took();
            }
            // The driver's guards abandon the loads on unwind (pins and fill
            // tokens are released), so the shared state is consistent after a
            // caught panic.
            let load = std::panic::AssertUnwindSafe(|| shared.prefetch_hints(run));
            if std::panic::catch_unwind(load).is_err() {
                shared.counters.prefetch_abandoned.bump();
            }
        }
    }
}
