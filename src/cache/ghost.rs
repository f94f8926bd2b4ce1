//! The ghost FIFO: ids of entries recently evicted from probation unread.

use super::hasher::IdMap;
use crate::record::ExtentId;
use std::collections::VecDeque;

/// Ids of entries recently evicted from probation unread (no bytes), bounded by
/// the weight those entries had: at most `Limits::ghost / ENTRY_OVERHEAD` ids.
#[derive(Debug, Default)]
pub(super) struct Ghost {
    /// Each remembered id's stamp; a queue position whose stamp differs is stale.
    ids: IdMap<u64>,
    /// `(id, stamp, weight)` in eviction order.
    queue: VecDeque<(ExtentId, u64, u64)>,
    /// Weight of the queue's positions, stale ones included.
    used: u64,
    next_stamp: u64,
}

impl Ghost {
    /// Remembers `id` (evicted at weight `w`), forgetting the oldest ids beyond
    /// `capacity` bytes.
    pub(super) fn push(&mut self, id: ExtentId, w: u64, capacity: u64) {
        self.next_stamp += 1;
        self.ids.insert(id, self.next_stamp);
        self.queue.push_back((id, self.next_stamp, w));
        self.used += w;
        // Bounded: each pass pops one position.
        while self.used > capacity {
            let Some((old, stamp, w)) = self.queue.pop_front() else {
                break;
            };
            self.used -= w;
            if self.ids.get(&old) == Some(&stamp) {
                self.ids.remove(&old);
            }
        }
    }

    /// Whether `id` was evicted recently; forgets it if so.
    pub(super) fn take(&mut self, id: ExtentId) -> bool {
        self.ids.remove(&id).is_some()
    }

    /// Whether `id` is remembered (without taking it).
    #[cfg(all(test, not(loom)))]
    pub(super) fn contains(&self, id: ExtentId) -> bool {
        self.ids.contains_key(&id)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_ghost_is_bounded_by_the_weight_it_remembers() {
        let mut ghost = Ghost::default();
        for id in 0..1000 {
            ghost.push(ExtentId(id), 1000, 18_000);
        }
        assert_eq!(ghost.ids.len(), 18, "ids beyond 18 000 bytes forgotten");
        assert!(ghost.queue.len() <= 18);
        assert!(ghost.take(ExtentId(999)), "the newest id is remembered");
        assert!(!ghost.take(ExtentId(999)), "a ghost hit is taken once");
        assert!(!ghost.take(ExtentId(981)), "the oldest ids are forgotten");
        // A taken id leaves a stale position behind; the bound still holds.
        for id in 2000..2100 {
            ghost.push(ExtentId(id), 1000, 18_000);
        }
        assert!(ghost.used <= 18_000 && ghost.ids.len() <= 18);
    }
}
