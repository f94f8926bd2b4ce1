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
        loop {
            // Relaxed: both flags are read and written under the writer's lock.
            if self.flusher_stop.load(Ordering::Relaxed) {
                return;
            }
            if !g.in_flight() && self.flush_wanted.swap(false, Ordering::Relaxed) {
                g = self.write_group(g);
                continue;
            }
            markers_since = match (live.markers_pending(), markers_since) {
                (false, _) => None,
                (true, None) => Some(Instant::now()),
                (true, Some(since)) if since.elapsed() >= MARKER_WAIT && !g.in_flight() => {
                    // A refused append (a failed journal) loses them: recovery
                    // then reads those writes' data instead.
                    let markers = live.with_markers(Vec::new());
                    if !markers.is_empty() {
                        let _ = g.append(&markers);
                    }
                    markers_since = None;
                    g = self.write_group(g);
                    continue;
                }
                (true, since) => since,
            };
            g = match markers_since {
                Some(_) => self.flush_cond.wait_for(g, MARKER_WAIT),
                None => self.flush_cond.wait(g),
            };
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
