//! A set of disjoint, coalesced byte ranges on one device, indexed by start and by
//! length: the free holes of a device, and its bad ranges.
//!
//! Bounds: every operation is `O(k + log n)` for `n` ranges in the set and `k`
//! ranges it touches; [`Ranges::first_fit`] scans at most `n` ranges, and only when
//! the largest range (read from the length index in `O(log n)`) is long enough.

use std::collections::{BTreeMap, BTreeSet};

/// Disjoint, non-adjacent half-open ranges `[start, end)`: adjacent or overlapping
/// insertions merge.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Ranges {
    /// start → end.
    by_start: BTreeMap<u64, u64>,
    /// (length, start), for the largest range and best fit.
    by_length: BTreeSet<(u64, u64)>,
    /// Sum of the ranges' lengths.
    bytes: u64,
}

impl Ranges {
    /// Total bytes in the set.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of ranges.
    pub(crate) fn len(&self) -> usize {
        self.by_start.len()
    }

    /// The longest range's length (0 if empty).
    pub(crate) fn largest(&self) -> u64 {
        self.by_length.last().map_or(0, |&(len, _)| len)
    }

    /// The highest range.
    pub(crate) fn last(&self) -> Option<(u64, u64)> {
        self.by_start.last_key_value().map(|(&s, &e)| (s, e))
    }

    /// The ranges in address order.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_start.iter().map(|(&s, &e)| (s, e))
    }

    fn put(&mut self, start: u64, end: u64) {
        debug_assert!(start < end, "empty range [{start}, {end})");
        self.by_start.insert(start, end);
        self.by_length.insert((end - start, start));
        self.bytes += end - start;
    }

    fn take(&mut self, start: u64) -> Option<u64> {
        let end = self.by_start.remove(&start)?;
        self.by_length.remove(&(end - start, start));
        self.bytes -= end - start;
        Some(end)
    }

    /// Whether a range overlaps `[start, end)` (without collecting them, as
    /// [`overlapping`](Self::overlapping) does).
    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return false;
        }
        (self.by_start.range(..start).next_back()).is_some_and(|(_, &e)| e > start)
            || self.by_start.range(start..end).next().is_some()
    }

    /// The ranges that overlap `[start, end)`, clipped to it, in address order.
    pub(crate) fn overlapping(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        if start >= end {
            return Vec::new();
        }
        let before = self
            .by_start
            .range(..start)
            .next_back()
            .filter(|&(_, &e)| e > start);
        before
            .into_iter()
            .chain(self.by_start.range(start..end))
            .map(|(&s, &e)| (s.max(start), e.min(end)))
            .collect()
    }

    /// Adds `[start, end)`, merging with every range it overlaps or touches.
    pub(crate) fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut lo, mut hi) = (start, end);
        if let Some((&s, &e)) = self.by_start.range(..=start).next_back()
            && e >= start
        {
            lo = s;
            hi = hi.max(e);
        }
        // Bounded by the number of ranges the new one swallows.
        let swallowed: Vec<u64> = self.by_start.range(lo..=hi).map(|(&s, _)| s).collect();
        for s in swallowed {
            if let Some(e) = self.take(s) {
                hi = hi.max(e);
            }
        }
        self.put(lo, hi);
    }

    /// Removes `[start, end)` from the set (the parts of it that are in the set).
    pub(crate) fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let hit: Vec<u64> = self
            .by_start
            .range(..start)
            .next_back()
            .filter(|&(_, &e)| e > start)
            .map(|(&s, _)| s)
            .into_iter()
            .chain(self.by_start.range(start..end).map(|(&s, _)| s))
            .collect();
        for s in hit {
            let Some(e) = self.take(s) else { continue };
            if s < start {
                self.put(s, start);
            }
            if e > end {
                self.put(end, e);
            }
        }
    }

    /// The lowest range at least `length` long: its start.
    pub(crate) fn first_fit(&self, length: u64) -> Option<u64> {
        if self.largest() < length {
            return None;
        }
        self.by_start
            .iter()
            .find(|&(&s, &e)| e - s >= length)
            .map(|(&s, _)| s)
    }

    /// The shortest range at least `length` long (the lowest of equals): its start.
    pub(crate) fn best_fit(&self, length: u64) -> Option<u64> {
        self.by_length
            .range((length, 0)..)
            .next()
            .map(|&(_, start)| start)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn ranges(r: &Ranges) -> Vec<(u64, u64)> {
        r.iter().collect()
    }

    #[test]
    fn adjacent_and_overlapping_inserts_coalesce() {
        let mut r = Ranges::default();
        r.insert(0, 10);
        r.insert(20, 30);
        r.insert(10, 20); // touches both neighbours
        assert_eq!(ranges(&r), [(0, 30)]);
        assert_eq!(r.bytes(), 30);
        r.insert(25, 40); // overlaps
        assert_eq!(
            (ranges(&r), r.bytes(), r.largest()),
            (vec![(0, 40)], 40, 40)
        );
    }

    #[test]
    fn remove_splits_and_keeps_the_indexes_consistent() {
        let mut r = Ranges::default();
        r.insert(0, 100);
        r.remove(10, 20);
        r.remove(90, 200);
        assert_eq!(ranges(&r), [(0, 10), (20, 90)]);
        assert_eq!((r.bytes(), r.largest(), r.len()), (80, 70, 2));
        assert_eq!(r.overlapping(5, 25), [(5, 10), (20, 25)]);
    }

    /// `overlaps` says whether `overlapping` would find anything.
    #[test]
    fn overlaps_agrees_with_overlapping() {
        let mut r = Ranges::default();
        r.insert(10, 20);
        r.insert(40, 50);
        for (start, end) in [
            (0, 10),
            (0, 11),
            (15, 16),
            (19, 40),
            (20, 40),
            (45, 45),
            (50, 60),
            (30, 10),
        ] {
            let found = !r.overlapping(start, end).is_empty();
            assert_eq!(r.overlaps(start, end), found, "[{start}, {end})");
        }
        assert!(r.overlaps(15, 16) && r.overlaps(19, 41) && !r.overlaps(20, 40));
    }

    #[test]
    fn first_fit_is_lowest_best_fit_is_tightest() {
        let mut r = Ranges::default();
        r.insert(0, 50);
        r.insert(100, 120);
        assert_eq!(r.first_fit(20), Some(0));
        assert_eq!(r.best_fit(20), Some(100));
        assert_eq!(r.first_fit(51), None);
        assert_eq!(r.best_fit(51), None);
    }
}
