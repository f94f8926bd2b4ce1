//! The journal's flusher: group commits for overlapped writes, led as soon as
//! one appends, and the journaling of their markers on an idle store (see
//! "Overlapped data syncs" in `journal`).

use super::{Journal, Live};
use crate::error::Result;
use crate::journal::Entry;
use crate::sync::Ordering;
use std::time::{Duration, Instant};

/// How long the flusher lets overlapped writes' markers wait for another
/// operation's append to carry them before it journals them itself: under load
/// they ride other appends at no cost, and an idle store's window (see
/// "Overlapped data syncs" in `journal`) stays this short plus one sync.
pub(crate) const MARKER_WAIT: Duration = Duration::from_millis(2);

impl Journal {
    /// [`append`](Self::append) of an overlapped write: its journal sync is to
    /// run while its data syncs, so the flusher ([`flush_loop`](Self::flush_loop))
    /// leads a group commit now if none is in flight (a group led only once a
    /// data sync ended would follow it, not overlap it).
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    pub(crate) fn append_now(&self, entries: &[Entry], arrived: impl FnOnce()) -> Result<u64> {
        let appended = self.append(entries, arrived);
        let _g = self.writer.lock();
        // Relaxed: read and written under the writer's lock, which orders them.
        self.flush_wanted.store(true, Ordering::Relaxed);
        self.flush_cond.notify_all();
        appended
    }

    /// The flusher's thread: leads a group commit whenever an overlapped write
    /// appended and none is in flight, without waiting for stragglers, until
    /// [`stop_flusher`](Self::stop_flusher). Bounded by that stop: every pass
    /// leads one write or waits for a wake-up.
    ///
    /// It also journals the overlapped writes' markers that waited
    /// [`MARKER_WAIT`] for another append to carry them.
    pub(crate) fn flush_loop(&self, live: &dyn Live) {
        let mut g = self.writer.lock();
        let mut markers_since: Option<Instant> = None;
        // When the group it last led ended, while its writes' markers are
        // expected: they come once the writes' data syncs end, usually within
        // `MARKER_WAIT`, so the next wait has that deadline and the writes
        // need not wake this, and a marker that comes meanwhile counts its
        // wait from the group's end. A wake from each write (or from the first
        // after every group) cost a context switch per group commit: 4-9 % of
        // 8 writers' 64 KiB throughput (`lab/durable_ab`).
        let mut expecting: Option<Instant> = None;
        // The markers this loop journaled itself, with the sequence that makes
        // them durable: the locations behind them retire then (outside the
        // writer's lock). Bounded by the groups not yet written: each is
        // dropped once its group ended, durable or failed.
        let mut carried: Vec<(u64, Vec<Entry>)> = Vec::new();
        loop {
            // Relaxed: both flags are read and written under the writer's lock.
            if self.flusher_stop.load(Ordering::Relaxed) {
                return;
            }
            let mut durable = Vec::new();
            carried.retain_mut(|(target, markers)| {
                match g.status(*target, Entry::first_extent(markers)) {
                    None => true,
                    Some(Ok(())) => {
                        durable.append(markers);
                        false
                    }
                    // Lost with the journal: their locations wait for the
                    // next open (`Overlaps::carried`).
                    Some(Err(_)) => false,
                }
            });
            if !durable.is_empty() {
                drop(g);
                live.markers_durable(&durable);
                g = self.writer.lock();
                continue;
            }
            if !g.in_flight() && self.flush_wanted.swap(false, Ordering::Relaxed) {
                g = self.write_group(g);
                expecting = Some(Instant::now());
                continue;
            }
            markers_since = match live.markers_pending() {
                false => None,
                true => markers_since.or(expecting).or_else(|| Some(Instant::now())),
            };
            if markers_since.is_some_and(|since| since.elapsed() >= MARKER_WAIT) && !g.in_flight() {
                // A refused append (a failed journal) loses them: recovery
                // then reads those writes' data instead.
                let markers = live.with_markers(Vec::new());
                if !markers.is_empty()
                    && let Ok(target) = g.append(&markers)
                {
                    carried.push((target, markers));
                }
                (markers_since, expecting) = (None, None);
                g = self.write_group(g);
                continue;
            }
            if markers_since.is_some() || expecting.is_some() {
                g = self.flush_cond.wait_for(g, MARKER_WAIT);
                // Markers left during a wait no append ended count from the
                // group's end (an idle store's window: `MARKER_WAIT` and a
                // sync). After an append's wake-up they count afresh: under
                // load the next appends carry them, and counting from an
                // earlier group made this journal them itself, a group commit
                // more (8 writers of 64 KiB: 0.93-0.97 of the build before).
                // Relaxed: under the writer's lock, as every access.
                if !self.flush_wanted.load(Ordering::Relaxed) {
                    markers_since = markers_since.or(expecting);
                }
                expecting = None;
                continue;
            }
            if !carried.is_empty() {
                // Its own markers' group was not written (held back behind a
                // rotation or a reserve's restore): it leads it once it may,
                // looking every `MARKER_WAIT` (nothing else may append).
                g = self.flush_cond.wait_for(g, MARKER_WAIT);
                if !g.in_flight() {
                    g = self.write_group(g);
                }
                continue;
            }
            // Idle, with no deadline. A write that leaves a marker after the
            // look above (one whose data's sync outlasted the deadline after
            // its group) wakes it ([`markers_left`]): the flag is set, then the
            // markers looked at once more, while `markers_left` runs after
            // the marker's store; with a SeqCst fence between each side's
            // store and load, at least one of them sees the other's store (a
            // store-buffering pair), so either this finds the marker or that
            // finds the flag and wakes this under the writer's lock.
            // Relaxed stores: ordered by the fences and the writer's lock.
            self.flusher_idle.store(true, Ordering::Relaxed);
            crate::sync::fence_seq_cst();
            if !live.markers_pending() {
                g = self.flush_cond.wait(g);
            }
            self.flusher_idle.store(false, Ordering::Relaxed);
        }
    }

    /// An overlapped write finished and left its marker for the next append
    /// to carry: wakes the flusher if it waits with no deadline, so that an
    /// idle store journals the marker within [`MARKER_WAIT`] (see
    /// [`flush_loop`](Self::flush_loop)) rather than at the next operation.
    pub(crate) fn markers_left(&self) {
        // SeqCst fence: pairs with the flusher's (see `flush_loop`).
        crate::sync::fence_seq_cst();
        // Relaxed: ordered by the fence.
        if self.flusher_idle.load(Ordering::Relaxed) {
            // Under the writer's lock: the flusher is in its wait, or has
            // not yet released the lock to wait; either way it wakes.
            let _g = self.writer.lock();
            self.flush_cond.notify_all();
        }
    }

    /// Ends [`flush_loop`](Self::flush_loop).
    pub(crate) fn stop_flusher(&self) {
        let _g = self.writer.lock();
        // Relaxed: under the writer's lock, as the flusher reads it.
        self.flusher_stop.store(true, Ordering::Relaxed);
        self.flush_cond.notify_all();
    }
}
