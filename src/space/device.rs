//! Space on one device: its bump pointer, free holes and bad ranges, and their
//! statistics.
//!
//! The allocator (`super::allocator`) keeps one per device, under a lock, and its
//! module docs describe the scheme.

use super::ranges::Ranges;
use crate::record::Location;

/// Space on one device.
#[derive(Debug)]
pub(super) struct DeviceSpace {
    pub(super) capacity: u64,
    /// Everything at or past `bump` is unreferenced and never handed out.
    pub(super) bump: u64,
    /// Free holes below `bump`, coalesced; never touching `bump`.
    pub(super) holes: Ranges,
    /// Bad byte ranges (block-rounded), coalesced; all below `bump`.
    pub(super) bad: Ranges,
    /// The bad locations as marked, for the checkpoint image; no duplicates.
    pub(super) bad_locations: Vec<Location>,
    /// Degraded devices are used only when no healthy one has room.
    pub(super) degraded: bool,
    /// The degradation is the health policy's (journaled, restored at open),
    /// not only a failed sync's, which lasts until the reopen.
    pub(super) lasting: bool,
    /// The largest `bump` since the tail was last released: how long the device
    /// file may be.
    pub(super) peak: u64,
}

/// Space statistics of one device, from [`Store::space`](crate::Store::space).
///
/// Every byte below `file_bytes` is exactly one of live, free or bad:
/// `file_bytes == live_bytes + free_bytes + bad_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DeviceSpaceStats {
    /// The device.
    pub device: u16,
    /// The configured capacity in bytes.
    pub capacity_bytes: u64,
    /// The high-water mark (bump pointer): one past the last byte in use, free or
    /// bad. The device file needs to be no longer than this.
    pub file_bytes: u64,
    /// Bytes handed out and not yet freed (block-rounded), excluding bad bytes.
    pub live_bytes: u64,
    /// Bytes in free holes below `file_bytes`, reusable by any size that fits.
    pub free_bytes: u64,
    /// Number of free holes.
    pub holes: u64,
    /// The largest free hole in bytes (0 if none).
    pub largest_hole_bytes: u64,
    /// Bytes marked bad (block-rounded): never handed out again.
    pub bad_bytes: u64,
    /// Whether the device is degraded (used for new locations only as a last resort).
    pub degraded: bool,
}

/// Where on a device an allocation is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A free hole below the bump pointer.
    Hole,
    /// Fresh space at the bump pointer.
    Bump,
}

/// How a device picks a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    /// The lowest hole long enough: keeps data low
    /// ([`Placement::PackBelow`](super::allocator::Placement::PackBelow)).
    First,
    /// The shortest hole long enough, the lowest of equals (the default).
    Best,
}

impl DeviceSpace {
    pub(super) fn new(capacity: u64) -> Self {
        DeviceSpace {
            capacity,
            bump: 0,
            holes: Ranges::default(),
            bad: Ranges::default(),
            bad_locations: Vec::new(),
            degraded: false,
            lasting: false,
            peak: 0,
        }
    }

    /// `bytes` from the hole `fit` picks, or from the bump pointer.
    pub(super) fn take(&mut self, bytes: u64, fit: Fit, source: Source) -> Option<u64> {
        if source == Source::Hole {
            let offset = match fit {
                Fit::First => self.holes.first_fit(bytes),
                Fit::Best => self.holes.best_fit(bytes),
            }?;
            self.holes.remove(offset, offset + bytes);
            return Some(offset);
        }
        if self.capacity.saturating_sub(self.bump) < bytes {
            return None;
        }
        let offset = self.bump;
        self.bump += bytes;
        self.peak = self.peak.max(self.bump);
        Some(offset)
    }

    /// The lowest hole of `bytes` that starts below `limit`, taken (a hole below
    /// an allocated location ends at or before it).
    pub(super) fn take_below(&mut self, bytes: u64, limit: u64) -> Option<u64> {
        let offset = self.holes.first_fit(bytes).filter(|&o| o < limit)?;
        self.holes.remove(offset, offset + bytes);
        Some(offset)
    }

    /// Records `[start, end)` (the span of `location`) as bad.
    /// Whether `location` was not marked before.
    pub(super) fn add_bad(&mut self, start: u64, end: u64, location: Location) -> bool {
        self.bad.insert(start, end);
        // Bounded by the bad list, which only grows by faults found.
        let new = !self.bad_locations.contains(&location);
        if new {
            self.bad_locations.push(location);
        }
        new
    }

    /// Moves the bump pointer up to `end` if it is below; the skipped bytes that
    /// are not bad become free. Call after recording the bad range that ends at
    /// `end`, so the new hole does not reach the bump pointer.
    pub(super) fn raise_bump(&mut self, end: u64) {
        if end > self.bump {
            let old = self.bump;
            self.bump = end;
            self.peak = self.peak.max(end);
            self.release(old, end);
        }
    }

    /// Makes `[start, end)` (below the bump pointer) free, except its bad parts;
    /// lowers the bump pointer if the merged hole reaches it.
    pub(super) fn release(&mut self, start: u64, end: u64) {
        let mut cursor = start;
        // Bounded by the bad ranges overlapping the span.
        for (bad_start, bad_end) in self.bad.overlapping(start, end) {
            self.insert_hole(cursor, bad_start);
            cursor = bad_end;
        }
        self.insert_hole(cursor, end);
        // Holes are coalesced, so at most one hole touches the bump pointer.
        if let Some((s, e)) = self.holes.last()
            && e == self.bump
        {
            self.holes.remove(s, e);
            self.bump = s;
        }
    }

    fn insert_hole(&mut self, start: u64, end: u64) {
        debug_assert!(
            self.holes.overlapping(start, end).is_empty(),
            "double free of [{start}, {end})"
        );
        self.holes.insert(start, end);
    }
}
