//! The change stream: every committed record change, numbered and retained in
//! memory for consumers that read at their own pace.
//!
//! A change gets its sequence number under the ring's lock, in the same step
//! that stores it, so the retained changes are a gap-free run of numbers and a
//! consumer that has read up to `n` never finds a change below `n` appear later.
//! Numbers are not commit order per extent: two threads that commit one extent
//! one after the other may number their changes the other way round. The
//! record's version decides, as it does for journal replay: apply a change only
//! if its version is higher than the one held (see [`crate::events`]).
//!
//! Bounds: the ring keeps the newest `keep` changes, more while a hold needs
//! them, never more than `hold_max` ([`StoreConfigBuilder::change_retention`] and
//! [`StoreConfigBuilder::change_hold_max`]); a read copies at most what is
//! retained.
//!
//! [`StoreConfigBuilder::change_retention`]: crate::store::StoreConfigBuilder::change_retention
//! [`StoreConfigBuilder::change_hold_max`]: crate::store::StoreConfigBuilder::change_hold_max

use super::Event;
use crate::error::{Error, Result};
use crate::sync::Mutex;
use std::collections::{BTreeMap, VecDeque};
// std's Arc even under loom: a hold shares the ring, it synchronises nothing.
use std::sync::Arc;

/// The default [`change_retention`](crate::store::StoreConfigBuilder::change_retention).
pub const DEFAULT_CHANGE_RETENTION: usize = 8192;
/// The default [`change_hold_max`](crate::store::StoreConfigBuilder::change_hold_max).
pub const DEFAULT_CHANGE_HOLD_MAX: usize = 1 << 20;

#[derive(Debug)]
struct Ring {
    /// The number the next change gets.
    next: u64,
    /// This store's stream ([`ChangeLog::stream`]).
    stream: u64,
    /// The retained changes, numbered `next - retained.len() .. next`.
    retained: VecDeque<Event>,
    keep: usize,
    hold_max: usize,
    /// Per hold, the first number it still needs.
    holds: BTreeMap<u64, u64>,
    next_hold: u64,
}

impl Ring {
    fn oldest(&self) -> u64 {
        self.next - self.retained.len() as u64
    }

    /// Drops what neither `keep` nor a hold needs, and past `hold_max` what a
    /// hold needs too (that hold then reads a truncation). A hold from below
    /// the oldest change retained reads a truncation whatever is kept: it
    /// keeps nothing (else it would keep `hold_max` changes for no reader).
    fn trim(&mut self) {
        let oldest = self.oldest();
        let held_from = (self.holds.values().copied())
            .filter(|&from| from >= oldest)
            .min()
            .unwrap_or(u64::MAX);
        while self.retained.len() > self.hold_max
            || (self.retained.len() > self.keep && self.oldest() < held_from)
        {
            self.retained.pop_front();
        }
    }
}

/// The numbered, retained changes of one store.
#[derive(Debug, Clone)]
pub(crate) struct ChangeLog {
    ring: Arc<Mutex<Ring>>,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog {
            ring: Arc::new(Mutex::new(Ring {
                next: 0,
                stream: 0,
                retained: VecDeque::new(),
                keep: DEFAULT_CHANGE_RETENTION,
                hold_max: DEFAULT_CHANGE_HOLD_MAX,
                holds: BTreeMap::new(),
                next_hold: 0,
            })),
        }
    }
}

impl ChangeLog {
    /// Sets the retention, the number the first change gets and the stream's
    /// identity (before any change is made).
    pub(crate) fn configure(&self, keep: usize, hold_max: usize, first: u64, stream: u64) {
        let mut ring = self.ring.lock();
        ring.stream = stream;
        ring.keep = keep;
        ring.hold_max = hold_max.max(keep);
        ring.next = first;
        ring.retained.clear();
    }

    /// Numbers the change `make` builds, retains it, and returns it.
    pub(crate) fn push(&self, make: impl FnOnce(u64) -> Event) -> Event {
        let mut ring = self.ring.lock();
        let event = make(ring.next);
        ring.next += 1;
        if ring.keep > 0 || !ring.holds.is_empty() {
            ring.retained.push_back(event.clone());
            ring.trim();
        }
        event
    }

    /// The number the next change will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.ring.lock().next
    }

    /// The identity of this stream: another for every store made or opened.
    pub(crate) fn stream(&self) -> u64 {
        self.ring.lock().stream
    }

    /// The retained changes numbered `from` or more, in order.
    pub(crate) fn since(&self, from: u64) -> Result<Vec<Event>> {
        let ring = self.ring.lock();
        let oldest = ring.oldest();
        if from < oldest {
            return Err(Error::ChangesTruncated {
                requested: from,
                oldest,
            });
        }
        if from > ring.next {
            return Err(Error::ChangeSeqAhead {
                requested: from,
                next: ring.next,
            });
        }
        let skip = (from - oldest) as usize;
        Ok(ring.retained.range(skip..).cloned().collect())
    }

    /// Keeps the changes numbered `from` or more until the hold advances or is
    /// dropped (up to `hold_max`).
    pub(crate) fn hold(&self, from: u64) -> ChangeHold {
        let mut ring = self.ring.lock();
        let id = ring.next_hold;
        ring.next_hold += 1;
        ring.holds.insert(id, from);
        ChangeHold {
            log: self.clone(),
            id,
        }
    }
}

/// Holds a store's change stream back: while it lives, the changes from its
/// position on stay retained beyond
/// [`change_retention`](crate::store::StoreConfigBuilder::change_retention), up to
/// [`change_hold_max`](crate::store::StoreConfigBuilder::change_hold_max) changes in
/// all. Made by [`Store::hold_changes`](crate::Store::hold_changes); dropping it
/// releases them.
#[derive(Debug)]
pub struct ChangeHold {
    log: ChangeLog,
    id: u64,
}

impl ChangeHold {
    /// Moves the hold to `seq`: the changes below it may go (a consumer calls
    /// this once it has applied them).
    pub fn advance(&self, seq: u64) {
        let mut ring = self.log.ring.lock();
        if let Some(from) = ring.holds.get_mut(&self.id) {
            *from = seq;
        }
        ring.trim();
    }
}

impl Drop for ChangeHold {
    fn drop(&mut self) {
        let mut ring = self.log.ring.lock();
        ring.holds.remove(&self.id);
        ring.trim();
    }
}

/// A new stream's identity: random (std's per-process hash keys over the
/// time and the process), never 0, so that two stores, or two runs of one,
/// almost never share one.
pub(crate) fn fresh_stream_id() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()));
    id.max(1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn change(seq: u64) -> Event {
        // Any record change will do: the ring only numbers and keeps them.
        Event::Quarantined {
            seq,
            record: crate::record::Snapshot::vacant(crate::ExtentId(seq)),
            tag: crate::record::Tag::EMPTY,
        }
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().filter_map(Event::seq).collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_and_reports_what_went() {
        let log = ChangeLog::default();
        log.configure(3, 10, 100, 1);
        for _ in 0..5 {
            log.push(change);
        }
        assert_eq!(seqs(&log.since(102).unwrap()), vec![102, 103, 104]);
        assert_eq!(seqs(&log.since(105).unwrap()), Vec::<u64>::new());
        match log.since(101) {
            Err(Error::ChangesTruncated { requested, oldest }) => {
                assert_eq!((requested, oldest), (101, 102))
            }
            other => panic!("expected a truncation, got {other:?}"),
        }
        assert_eq!(log.since(106).unwrap_err().code(), "FPRE035");
    }

    #[test]
    fn a_hold_keeps_changes_up_to_its_bound_and_releases_them() {
        let log = ChangeLog::default();
        log.configure(2, 6, 0, 1);
        let hold = log.hold(1);
        for _ in 0..5 {
            log.push(change);
        }
        assert_eq!(seqs(&log.since(1).unwrap()), vec![1, 2, 3, 4]);
        hold.advance(3);
        assert_eq!(log.since(2).unwrap_err().code(), "FPRE034");
        assert_eq!(seqs(&log.since(3).unwrap()), vec![3, 4]);
        for _ in 0..10 {
            log.push(change);
        }
        // Past hold_max the hold loses its changes too, and from then on keeps
        // none: it reads a truncation whatever is kept.
        assert_eq!(log.since(3).unwrap_err().code(), "FPRE034");
        assert_eq!(log.since(12).unwrap_err().code(), "FPRE034");
        assert_eq!(seqs(&log.since(13).unwrap()), vec![13, 14]);
        drop(hold);
        assert_eq!(seqs(&log.since(13).unwrap()), vec![13, 14]);
    }

    /// A hold taken below the oldest change retained keeps nothing: it could
    /// never be served, and would keep `hold_max` changes for no reader.
    #[test]
    fn a_hold_from_below_what_is_retained_keeps_nothing() {
        let log = ChangeLog::default();
        log.configure(2, 100, 0, 1);
        for _ in 0..10 {
            log.push(change);
        }
        let hold = log.hold(0);
        for _ in 0..50 {
            log.push(change);
        }
        assert_eq!(log.since(0).unwrap_err().code(), "FPRE034");
        assert_eq!(log.since(57).unwrap_err().code(), "FPRE034");
        assert_eq!(seqs(&log.since(58).unwrap()), vec![58, 59]);
        drop(hold);
    }

    #[test]
    fn without_retention_nothing_is_kept_but_numbers_advance() {
        let log = ChangeLog::default();
        log.configure(0, 0, 7, 1);
        log.push(change);
        assert_eq!(log.next_seq(), 8);
        assert!(log.since(8).unwrap().is_empty());
        assert_eq!(log.since(7).unwrap_err().code(), "FPRE034");
    }
}
