//! The one place that picks synchronisation primitives.
//!
//! Normal builds use `std` atomics, `parking_lot` locks and, for the cache
//! shards, a `spin` lock; `--cfg loom` builds use
//! loom's model-checked types. The code the loom models run imports atomics,
//! fences, locks and threads only from here, so a loom run checks the code
//! that ships, with one exception: `Cache::lookup`'s try-once fast path is left
//! out under loom (a failed try changes nothing, so it adds lock operations to
//! the models but no outcome; see there). Code no loom model runs may use
//! `std` atomics and `parking_lot` locks directly: the overlapped writes' book
//! and the repairs' kept copies (`protocol::overlaps`, `protocol::repair`), the
//! write-back book (`protocol::write_back`), the tags (`table::tags`) and the
//! store's backup lock (`store::shared`). The flusher's idle handshake with
//! the overlapped writes' markers is argued in `store::durable::flusher`, not
//! model-checked.
//!
//! Under loom a few orderings can also be *weakened on purpose* (see [`Site`]) so that
//! the loom suite can prove it catches an ordering bug. In normal builds the site
//! lookup is a `const` match and compiles to the correct ordering.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

/// A sequentially consistent fence (the reclaimer's pin/retire handshake).
#[inline]
pub(crate) fn fence_seq_cst() {
    #[cfg(not(loom))]
    std::sync::atomic::fence(Ordering::SeqCst);
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

#[cfg(loom)]
pub(crate) use loom::thread;
#[cfg(not(loom))]
pub(crate) use std::thread;

/// Joins `handle`'s thread, unless it is this one: a listener or good-copy
/// source that closes the store (or drops its last `Arc`) runs on the
/// thread that made the change, the scrubber's or a prefetch worker's, and
/// a thread cannot join itself (a panic). Told to stop already, that
/// thread returns once its callback does.
pub(crate) fn joined(handle: thread::JoinHandle<()>) -> std::thread::Result<()> {
    match handle.thread().id() == thread::current().id() {
        true => Ok(()),
        false => handle.join(),
    }
}

/// One hint inside a bounded spin: a CPU pause normally, a scheduler yield under loom
/// (loom must see every spin as a yield or it explores the loop forever).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A mutual-exclusion lock with an infallible `lock()`, whatever the backend.
#[derive(Debug)]
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard returned by [`Mutex::lock`].
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
/// The guard returned by [`Mutex::lock`].
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// A new unlocked mutex around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Locks if free, without waiting.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        #[cfg(not(loom))]
        return self.inner.try_lock();
        #[cfg(loom)]
        return self.inner.try_lock().ok();
    }

    /// Locks; a poisoned loom mutex (a panicking model thread) propagates the panic.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// A lock for short critical sections: the cache shards', where each operation is a
/// hit, a miss, or a fill and its evictions (amortized O(1); the O(entries) passes,
/// queue compaction and sizing the sketch once, are paid for by as many operations
/// before them). Acquiring it is one compare-and-swap, releasing it one `Release`
/// store, where a parking mutex must release with a second read-modify-write to
/// learn whether a waiter sleeps.
///
/// A waiter that finds it held yields its time slice until it is free
/// (`spin::relax::Yield`), so a holder that was descheduled gets the core back
/// rather than being spun against. Design note: on the cache's hit path the parking
/// mutex's release was one of its three costliest instructions; this lock took a
/// hit from 1.10x to 0.92x quick_cache's `get` (both timed in alternation), gave
/// one shard contended by 2 or 8 threads on 2 cores 35-55 % more throughput than
/// `parking_lot::Mutex`, and measured within the noise of it on 16 shards
/// (BENCHMARKS.md, "Hit path: the shard lock"). What it gives up: a waiter burns
/// its time slices in `sched_yield` instead of sleeping, so nothing slow (I/O, user
/// callbacks that block) may run under it, and a real-time thread must not wait for
/// it behind a lower-priority holder on the same core. Under loom it is loom's
/// mutex: the protocol's models check mutual exclusion, not this lock.
#[derive(Debug)]
pub(crate) struct SpinMutex<T> {
    #[cfg(not(loom))]
    inner: spin::mutex::SpinMutex<T, spin::relax::Yield>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard returned by [`SpinMutex::lock`].
#[cfg(not(loom))]
pub(crate) type SpinMutexGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T>;
/// The guard returned by [`SpinMutex::lock`].
#[cfg(loom)]
pub(crate) type SpinMutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> SpinMutex<T> {
    /// A new unlocked lock around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: spin::mutex::SpinMutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Locks, yielding while another thread holds it; a poisoned loom mutex (a
    /// panicking model thread) propagates the panic.
    #[inline]
    pub(crate) fn lock(&self) -> SpinMutexGuard<'_, T> {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    /// Locks if it is free now, without waiting: one compare-and-swap and no
    /// call, for a fast path that falls back to [`lock`](Self::lock). Its
    /// ordering is `spin`'s, as for `lock`: Acquire on success, pairing with the
    /// Release store that drops the guard, so the holder sees what the last
    /// holder wrote. Not under loom, where the fast path is left out (see
    /// `Cache::lookup`).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn try_lock(&self) -> Option<SpinMutexGuard<'_, T>> {
        self.inner.try_lock()
    }
}

/// A condition variable paired with [`Mutex`].
#[derive(Debug)]
pub(crate) struct Condvar {
    #[cfg(not(loom))]
    inner: parking_lot::Condvar,
    #[cfg(loom)]
    inner: loom::sync::Condvar,
}

impl Condvar {
    /// A new condition variable.
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            inner: parking_lot::Condvar::new(),
            #[cfg(loom)]
            inner: loom::sync::Condvar::new(),
        }
    }

    /// Blocks until notified (spurious wake-ups possible: callers loop on a predicate).
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        #[cfg(not(loom))]
        {
            let mut guard = guard;
            self.inner.wait(&mut guard);
            guard
        }
        #[cfg(loom)]
        self.inner
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocks until notified or `timeout` passed (spurious wake-ups possible).
    /// Under loom there is no time: it waits for a notification.
    pub(crate) fn wait_for<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, T> {
        #[cfg(not(loom))]
        {
            let mut guard = guard;
            self.inner.wait_for(&mut guard, timeout);
            guard
        }
        #[cfg(loom)]
        {
            let _ = timeout;
            self.wait(guard)
        }
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.inner.notify_all();
    }
}

/// A reader-writer lock with infallible `read()`/`write()`, whatever the backend.
#[derive(Debug)]
pub(crate) struct RwLock<T> {
    #[cfg(not(loom))]
    inner: parking_lot::RwLock<T>,
    #[cfg(loom)]
    inner: loom::sync::RwLock<T>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: parking_lot::RwLock::new(value),
            #[cfg(loom)]
            inner: loom::sync::RwLock::new(value),
        }
    }

    /// Shared access.
    pub(crate) fn read(&self) -> impl std::ops::Deref<Target = T> + '_ {
        #[cfg(not(loom))]
        return self.inner.read();
        #[cfg(loom)]
        return self.inner.read().unwrap_or_else(|p| p.into_inner());
    }

    /// Exclusive access.
    pub(crate) fn write(&self) -> impl std::ops::DerefMut<Target = T> + '_ {
        #[cfg(not(loom))]
        return self.inner.write();
        #[cfg(loom)]
        return self.inner.write().unwrap_or_else(|p| p.into_inner());
    }

    /// Whether exclusive access would have to wait now (a test's probe of who
    /// holds the lock).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_held(&self) -> bool {
        self.inner.try_write().is_none()
    }
}

/// A cell written at most once and then read without a lock.
///
/// Normal builds use `std::sync::OnceLock`, whose `get` is a single acquire load.
/// Loom has no `OnceLock`, so under loom the value sits in a std `OnceLock` and its
/// publication is modelled by a loom `AtomicBool`, read with `Acquire` by `get`
/// and stored with `Release` by every `get_or_init` (a first version modelled it
/// with a loom mutex, which synchronises every `get` with every writer). Storing
/// on every call only orders what a writer did *before* its transition takes the
/// record's lock, which the seqlock does not rely on; storing only on
/// initialisation made loom's bounded search miss several ordering mutants, so the
/// store stays.
#[derive(Debug)]
pub(crate) struct OnceSlot<T: 'static> {
    inner: std::sync::OnceLock<T>,
    #[cfg(loom)]
    ready: loom::sync::atomic::AtomicBool,
}

impl<T: 'static> Default for OnceSlot<T> {
    fn default() -> Self {
        Self {
            inner: std::sync::OnceLock::new(),
            #[cfg(loom)]
            ready: loom::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl<T: 'static> OnceSlot<T> {
    /// The value if it has been set.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        #[cfg(loom)]
        if !self.ready.load(Ordering::Acquire) {
            // Acquire: pairs with the Release store in `get_or_init`.
            return None;
        }
        self.inner.get()
    }

    /// The value, initialising it with `init` if no thread has yet.
    pub(crate) fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        #[cfg(not(loom))]
        return self.inner.get_or_init(init);
        #[cfg(loom)]
        {
            let value = self.inner.get_or_init(init);
            // Release: publishes the initialised value to `get`'s Acquire load.
            self.ready.store(true, Ordering::Release);
            value
        }
    }
}

/// A load-bearing atomic ordering in the seqlock protocol.
///
/// Each site names one operation of the record protocol. [`order`] returns the
/// ordering the protocol needs at that site; under loom a test can weaken one site
/// with [`mutant::with`] and assert that a model then fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(loom),
    expect(
        unreachable_pub,
        reason = "exported only by the loom build, whose models weaken its sites"
    )
)]
pub enum Site {
    /// Reader's first load of the header (`Acquire`, pairs with the publish store).
    ReaderLoad,
    /// Reader's fence between the field loads and the header re-check (`Acquire`,
    /// pairs with the writer's fence after the lock CAS).
    ReaderFence,
    /// Writer's fence after taking the lock and before the field stores (`Release`).
    WriterFence,
    /// Writer's store of the new even header (`Release`, pairs with `ReaderLoad`).
    PublishStore,
    /// Writer's lock CAS (`Acquire`, pairs with the previous publish so the writer
    /// reads the latest committed fields).
    LockCas,
}

impl Site {
    /// The ordering the protocol needs at this site.
    const fn correct(self) -> Ordering {
        match self {
            Site::ReaderLoad | Site::ReaderFence | Site::LockCas => Ordering::Acquire,
            Site::WriterFence | Site::PublishStore => Ordering::Release,
        }
    }
}

/// The ordering to use at `site`: always the correct one outside loom.
#[inline(always)]
pub(crate) fn order(site: Site) -> Ordering {
    #[cfg(loom)]
    if mutant::active() == Some(site) {
        return Ordering::Relaxed;
    }
    site.correct()
}

/// A fence at `site`; a weakened fence is omitted (a `Relaxed` fence is not allowed).
#[inline(always)]
pub(crate) fn fence(site: Site) {
    let ordering = order(site);
    if ordering != Ordering::Relaxed {
        #[cfg(not(loom))]
        std::sync::atomic::fence(ordering);
        #[cfg(loom)]
        loom::sync::atomic::fence(ordering);
    }
}

/// Test-only ordering mutants (loom builds only).
#[cfg(loom)]
pub mod mutant {
    use super::Site;
    use std::cell::Cell;

    std::thread_local! {
        // Loom runs every model thread as a coroutine on the thread that called
        // `loom::model`, so a thread-local set around the model is seen by all of
        // them and by no other test running in parallel.
        static ACTIVE: Cell<Option<Site>> = const { Cell::new(None) };
    }

    /// The weakened site, if any.
    pub(crate) fn active() -> Option<Site> {
        ACTIVE.with(Cell::get)
    }

    /// Runs `f` with the ordering at `site` weakened to `Relaxed` (fences removed).
    pub fn with<R>(site: Site, f: impl FnOnce() -> R) -> R {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                ACTIVE.with(|a| a.set(None));
            }
        }
        ACTIVE.with(|a| a.set(Some(site)));
        let _reset = Reset;
        f()
    }
}

/// A statistics counter striped over cache-padded atomics so that threads counting
/// at once do not bounce one cache line. Reads sum the stripes (not a snapshot of
/// one instant: fine for statistics).
#[derive(Debug, Default)]
pub(crate) struct Counter {
    stripes: [crossbeam::utils::CachePadded<AtomicU64>; COUNTER_STRIPES],
}

/// Stripes per [`Counter`].
const COUNTER_STRIPES: usize = 8;

impl Counter {
    /// Adds one.
    #[inline]
    pub(crate) fn bump(&self) {
        // Relaxed: a statistic, ordered with nothing.
        self.stripes[stripe()].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        // Relaxed: a statistic, ordered with nothing.
        self.stripes[stripe()].fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of all stripes.
    pub(crate) fn get(&self) -> u64 {
        // Relaxed: a statistic; the sum need not be a snapshot of one instant.
        self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's stripe, assigned round-robin on first use.
fn stripe() -> usize {
    // Plain std atomics: these only spread threads over stripes and synchronise
    // nothing, so loom need not see them.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::thread_local! {
        static STRIPE: usize =
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % COUNTER_STRIPES;
    }
    STRIPE.with(|s| *s)
}
