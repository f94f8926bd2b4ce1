//! The location allocator: hands out and takes back locations on every device.
//!
//! The allocator hands out locations per device, in whole blocks, round-robin across
//! devices. Each device is a *bump pointer* (everything at or past it has never been
//! handed out, or was given back and is untouched) and a coalescing *free map* of
//! holes below it:
//!
//! * a freed location merges with its free neighbours into one hole;
//! * an allocation takes the shortest hole that is long enough (best fit; the lowest
//!   of equals), splitting it, else advances the bump pointer; so freed space is
//!   reused across sizes. A packing compaction ([`Placement::Pack`]) takes the
//!   lowest hole that fits instead (first fit), so the copy goes below the source
//!   and the file can shrink;
//! * a hole that reaches the bump pointer is absorbed: the bump pointer moves down,
//!   and the device's tail past it may be released ([`Allocator::release_tail`],
//!   `Backend::trim`);
//! * a location marked bad (its offset *and* block-rounded length) is never handed out
//!   again: freeing it, or any location overlapping it, keeps the bad bytes out.
//!
//! Accounting: below the bump pointer every byte is exactly one of *live* (handed out
//! and not freed, and not bad), *free* (in a hole) or *bad*; bad ranges always lie
//! below the bump pointer.
//!
//! Best fit for ordinary allocations, by measurement: on a churn of random
//! overwrites and deletes (1–16 blocks, about 50 % live; the test
//! `best_fit_keeps_the_high_water_no_higher_than_first_fit`) best fit ends at 1.059×
//! the live bytes, first fit at 1.101×. First fit is kept for packing, where the
//! position matters more than the fit (see BENCHMARKS.md, the space section).

use super::device::{DeviceSpace, DeviceSpaceStats, Fit, Source};
use crate::error::{Error, Result};
use crate::record::Location;
use crate::sync::{AtomicUsize, Mutex, Ordering};

/// A freed tail at least this long (bytes past the bump pointer that the device
/// file may still hold) makes [`Allocator::trim_due`] true: the store then releases
/// it without being asked.
pub(crate) const AUTO_TRIM_BYTES: u64 = 1 << 20;

/// Why [`Allocator::restore`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestoreError {
    /// Two referenced locations share a block: the metadata is corrupt.
    Overlap {
        /// The lower of the two.
        a: Location,
        /// The one overlapping it.
        b: Location,
    },
    /// A location past the device capacity or on an unknown device.
    OutOfRange {
        /// The location.
        location: Location,
    },
}

/// Where a new location may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Any device.
    Any,
    /// Preferably not this device (a copy should not share the source's device).
    Prefer(u16),
    /// Never this device (draining it).
    Exclude(u16),
    /// Any healthy device, the lowest hole that fits (first fit): compaction that
    /// shrinks files.
    Pack,
}

/// The per-device location allocator.
#[derive(Debug)]
pub(crate) struct Allocator {
    devices: Box<[Mutex<DeviceSpace>]>,
    next_device: AtomicUsize,
    block_size: u64,
    fit: Fit,
    /// Nonzero when some device's releasable tail reached [`AUTO_TRIM_BYTES`].
    trim_due: AtomicUsize,
}

impl Allocator {
    /// `devices` devices of `capacity` bytes each, allocated in `block_size` units.
    pub(crate) fn new(devices: u16, capacity: u64, block_size: u32) -> Self {
        Allocator {
            devices: (0..devices)
                .map(|_| Mutex::new(DeviceSpace::new(capacity)))
                .collect(),
            next_device: AtomicUsize::new(0),
            block_size: u64::from(block_size.max(1)),
            fit: Fit::Best,
            trim_due: AtomicUsize::new(0),
        }
    }

    /// The same allocator with another default hole-picking policy (measurement).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn with_fit(mut self, fit: Fit) -> Self {
        self.fit = fit;
        self
    }

    /// Rebuilds an allocator from durable metadata: every `referenced` location is
    /// live, every `bad` one is bad, and every gap below each device's highest
    /// referenced or bad end is free (coalesced). `degraded` devices are marked
    /// degraded. The bump pointer of a device is the highest end of its referenced and
    /// bad locations (0 if none).
    ///
    /// A bad location may overlap a referenced one (a quarantined extent keeps its
    /// bad location until remapped); two referenced locations may not.
    ///
    /// # Errors
    ///
    /// [`RestoreError::Overlap`] if two referenced locations share a block;
    /// [`RestoreError::OutOfRange`] for a referenced or bad location on a device
    /// `>= devices` or ending past `capacity`.
    #[allow(dead_code, reason = "the durable-recovery journal is its caller")]
    pub(crate) fn restore(
        devices: u16,
        capacity: u64,
        block_size: u32,
        referenced: impl IntoIterator<Item = Location>,
        bad: impl IntoIterator<Item = Location>,
        degraded: impl IntoIterator<Item = u16>,
    ) -> std::result::Result<Allocator, RestoreError> {
        let allocator = Allocator::new(devices, capacity, block_size);
        let mut live: Vec<Vec<(u64, u64, Location)>> = vec![Vec::new(); usize::from(devices)];
        for location in referenced {
            let (start, end) = allocator.checked_span(location, capacity)?;
            live[usize::from(location.device)].push((start, end, location));
        }
        for location in bad {
            let (start, end) = allocator.checked_span(location, capacity)?;
            allocator.devices[usize::from(location.device)]
                .lock()
                .add_bad(start, end, location);
        }
        for (device, mut spans) in live.into_iter().enumerate() {
            spans.sort_unstable_by_key(|&(start, ..)| start);
            for pair in spans.windows(2) {
                if pair[1].0 < pair[0].1 {
                    return Err(RestoreError::Overlap {
                        a: pair[0].2,
                        b: pair[1].2,
                    });
                }
            }
            let mut space = allocator.devices[device].lock();
            let top = spans.last().map_or(0, |&(_, end, _)| end);
            let bad_top = space.bad.last().map_or(0, |(_, end)| end);
            space.bump = top.max(bad_top);
            space.peak = space.bump;
            // Free = the gaps between referenced spans below the bump, minus bad
            // (`release` subtracts it). No gap reaches the bump: it is a referenced
            // or a bad end.
            let mut cursor = 0;
            for &(start, end, _) in &spans {
                if start > cursor {
                    space.release(cursor, start);
                }
                cursor = cursor.max(end);
            }
            let bump = space.bump;
            if bump > cursor {
                space.release(cursor, bump);
            }
        }
        for device in degraded {
            allocator.set_degraded(device);
        }
        Ok(allocator)
    }

    /// `location`'s block-rounded span, checked against the devices and `capacity`.
    fn checked_span(
        &self,
        location: Location,
        capacity: u64,
    ) -> std::result::Result<(u64, u64), RestoreError> {
        let out = RestoreError::OutOfRange { location };
        if usize::from(location.device) >= self.devices.len() {
            return Err(out);
        }
        let end = location
            .offset
            .checked_add(self.blocks(location.length) * self.block_size)
            .ok_or(out)?;
        if end > capacity {
            return Err(out);
        }
        Ok((location.offset, end))
    }

    fn blocks(&self, length: u32) -> u64 {
        u64::from(length).div_ceil(self.block_size).max(1)
    }

    /// `location`'s block-rounded byte span (saturating).
    fn span(&self, location: Location) -> (u64, u64) {
        let bytes = self.blocks(location.length) * self.block_size;
        (location.offset, location.offset.saturating_add(bytes))
    }

    /// A fresh location of `length` bytes, placed as `placement` says: on a healthy
    /// device if one has room, a degraded one only as a last resort.
    ///
    /// # Errors
    ///
    /// [`Error::NoSpace`] if no allowed device has room.
    pub(crate) fn allocate(&self, length: u32, placement: Placement) -> Result<Location> {
        let bytes = self.blocks(length) * self.block_size;
        let n = self.devices.len();
        // Relaxed: only spreads load; any interleaving is correct.
        let start = self.next_device.fetch_add(1, Ordering::Relaxed);
        let fit = match placement {
            Placement::Pack => Fit::First,
            _ => self.fit,
        };
        let (avoid, exclude) = match placement {
            Placement::Any | Placement::Pack => (None, None),
            Placement::Prefer(d) => (Some(d), None),
            Placement::Exclude(d) => (None, Some(d)),
        };
        // Three classes in preference order; within each, holes on every device of
        // the class before fresh space past any bump pointer (files grow only when
        // no hole fits). Each device is tried at most six times in all.
        for class in 0..3 {
            for source in [Source::Hole, Source::Bump] {
                for device in (0..n).map(|i| (start + i) % n) {
                    if exclude == Some(device as u16) {
                        continue;
                    }
                    let mut space = self.devices[device].lock();
                    let is_avoided = avoid == Some(device as u16);
                    let wanted = match class {
                        0 => !space.degraded && !is_avoided,
                        1 => !space.degraded && is_avoided,
                        _ => space.degraded,
                    };
                    if wanted && let Some(offset) = space.take(bytes, fit, source) {
                        return Ok(Location::new(device as u16, offset, length));
                    }
                }
            }
        }
        Err(Error::NoSpace {
            length: u64::from(length),
        })
    }

    /// Marks `device` degraded: new allocations go elsewhere while they can.
    pub(crate) fn set_degraded(&self, device: u16) {
        if let Some(dev) = self.devices.get(usize::from(device)) {
            dev.lock().degraded = true;
        }
    }

    /// Returns a location that no committed record and no reader references. Its
    /// bad parts stay out; the rest merges with neighbouring holes, and a hole that
    /// reaches the bump pointer moves it down.
    pub(crate) fn free(&self, location: Location) {
        let (start, end) = self.span(location);
        let Some(dev) = self.devices.get(usize::from(location.device)) else {
            return;
        };
        let mut space = dev.lock();
        debug_assert!(
            end <= space.bump,
            "free of {location} past the bump pointer {}",
            space.bump
        );
        let end = end.min(space.bump);
        space.release(start, end);
        if space.peak - space.bump >= AUTO_TRIM_BYTES {
            // Relaxed: a hint; the release itself runs under this device's lock.
            self.trim_due.store(1, Ordering::Relaxed);
        }
    }

    /// Marks `location` bad: it is never handed out again, even once freed. If it
    /// is free now, it leaves the free map at once.
    pub(crate) fn mark_bad(&self, location: Location) {
        let (start, end) = self.span(location);
        if let Some(dev) = self.devices.get(usize::from(location.device)) {
            let mut space = dev.lock();
            space.add_bad(start, end, location);
            space.holes.remove(start, end);
            // Bad bytes past the bump pointer (never handed out) raise it, so they
            // lie below it like every other bad byte.
            space.raise_bump(end);
        }
    }

    /// Every location marked bad, by device then in marking order (for the
    /// checkpoint image).
    #[allow(dead_code, reason = "the durable-recovery journal is its caller")]
    pub(crate) fn bad_locations(&self) -> Vec<Location> {
        self.devices
            .iter()
            .flat_map(|d| d.lock().bad_locations.clone())
            .collect()
    }

    /// Devices marked degraded, ascending.
    #[allow(dead_code, reason = "the durable-recovery journal is its caller")]
    pub(crate) fn degraded_devices(&self) -> Vec<u16> {
        (0..self.devices.len())
            .filter(|&d| self.devices[d].lock().degraded)
            .map(|d| d as u16)
            .collect()
    }

    /// `device`'s bump pointer: no referenced byte lies at or past it (0 for an
    /// unknown device). It is block-rounded: a healthy device file may end up to a
    /// block short of it (the last extent's unrounded end); a file shorter than the
    /// highest referenced location's `end()` lost referenced bytes.
    #[allow(dead_code, reason = "the durable-recovery journal is its caller")]
    pub(crate) fn high_water(&self, device: u16) -> u64 {
        self.devices
            .get(usize::from(device))
            .map_or(0, |d| d.lock().bump)
    }

    /// The allocation unit in bytes.
    pub(crate) fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Number of devices.
    pub(crate) fn device_count(&self) -> u16 {
        self.devices.len() as u16
    }

    /// Space statistics of `device` (`None` for an unknown device).
    pub(crate) fn stats(&self, device: u16) -> Option<DeviceSpaceStats> {
        let space = self.devices.get(usize::from(device))?.lock();
        Some(DeviceSpaceStats {
            device,
            capacity_bytes: space.capacity,
            file_bytes: space.bump,
            live_bytes: space.bump - space.holes.bytes() - space.bad.bytes(),
            free_bytes: space.holes.bytes(),
            holes: space.holes.len() as u64,
            largest_hole_bytes: space.holes.largest(),
            bad_bytes: space.bad.bytes(),
            degraded: space.degraded,
        })
    }

    /// Whether a freed tail of at least [`AUTO_TRIM_BYTES`] is waiting to be
    /// released; clears the hint.
    pub(crate) fn take_trim_due(&self) -> bool {
        // Relaxed: a hint (see `free`); a missed or extra release is harmless.
        self.trim_due.swap(0, Ordering::Relaxed) != 0
    }

    /// Releases `device`'s tail: calls `release(bump)` under the device's lock, so
    /// nothing can be handed out past `bump` while it runs, if the file may be
    /// longer than `bump` (or always, with `force`). Returns the bytes released
    /// (by the accounting of this allocator; `force` may release more).
    ///
    /// # Errors
    ///
    /// What `release` returns; the tail is then still counted as unreleased.
    pub(crate) fn release_tail(
        &self,
        device: u16,
        force: bool,
        release: impl FnOnce(u64) -> Result<()>,
    ) -> Result<u64> {
        let Some(dev) = self.devices.get(usize::from(device)) else {
            return Ok(0);
        };
        let mut space = dev.lock();
        if !force && space.peak <= space.bump {
            return Ok(0);
        }
        release(space.bump)?;
        let released = space.peak - space.bump;
        space.peak = space.bump;
        Ok(released)
    }

    /// Whether `location` has been marked bad (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_bad(&self, location: Location) -> bool {
        self.devices
            .get(location.device as usize)
            .is_some_and(|d| d.lock().bad_locations.contains(&location))
    }

    /// Checks the accounting invariants of every device (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn check(&self) {
        for dev in self.devices.iter() {
            let space = dev.lock();
            let accounted = space.holes.bytes() + space.bad.bytes();
            assert!(accounted <= space.bump, "holes and bad fit below the bump");
            if let Some((_, end)) = space.holes.last() {
                assert!(end < space.bump, "no hole touches the bump pointer");
            }
            if let Some((_, end)) = space.bad.last() {
                assert!(end <= space.bump, "bad ranges lie below the bump");
            }
            for (s, e) in space.holes.iter() {
                assert!(
                    space.bad.overlapping(s, e).is_empty(),
                    "no bad byte is free"
                );
            }
            assert!(space.peak >= space.bump, "peak is a high-water mark");
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn freed_locations_are_reused_by_size() {
        let a = Allocator::new(1, 1 << 20, 4096);
        let x = a.allocate(5000, Placement::Any).unwrap();
        let y = a.allocate(100, Placement::Any).unwrap();
        assert_eq!(
            (x.offset, y.offset),
            (0, 8192),
            "5000 bytes take two blocks"
        );
        a.free(x);
        assert_eq!(
            a.allocate(4097, Placement::Any).unwrap().offset,
            0,
            "same size class reused"
        );
    }

    #[test]
    fn a_location_marked_bad_while_free_is_never_handed_out() {
        let a = Allocator::new(1, 4 * 4096, 4096);
        let x = a.allocate(10, Placement::Any).unwrap();
        a.free(x);
        a.mark_bad(x); // found bad after it was freed
        for _ in 0..3 {
            assert_ne!(a.allocate(10, Placement::Any).unwrap().offset, x.offset);
        }
        assert_eq!(
            a.allocate(10, Placement::Any).unwrap_err().code(),
            "FPRE014"
        );
    }

    #[test]
    fn excluded_device_is_never_used() {
        let a = Allocator::new(2, 4096, 4096);
        assert_eq!(a.allocate(10, Placement::Exclude(0)).unwrap().device, 1);
        assert_eq!(
            a.allocate(10, Placement::Exclude(0)).unwrap_err().code(),
            "FPRE014"
        );
        assert_eq!(a.allocate(10, Placement::Any).unwrap().device, 0);
    }

    #[test]
    fn bad_location_is_never_handed_out_again() {
        let a = Allocator::new(1, 3 * 4096, 4096);
        let x = a.allocate(10, Placement::Any).unwrap();
        a.mark_bad(x);
        a.free(x);
        assert!(a.is_bad(x));
        let rest: Vec<_> = (0..2)
            .map(|_| a.allocate(10, Placement::Any).unwrap())
            .collect();
        assert!(rest.iter().all(|l| l.offset != x.offset));
        assert_eq!(
            a.allocate(10, Placement::Any).unwrap_err().code(),
            "FPRE014"
        );
    }

    #[test]
    fn degraded_devices_are_used_last() {
        let a = Allocator::new(2, 2 * 4096, 4096);
        a.set_degraded(0);
        let first: Vec<u16> = (0..2)
            .map(|_| a.allocate(10, Placement::Any).unwrap().device)
            .collect();
        assert_eq!(first, [1, 1], "healthy device first");
        assert_eq!(
            a.allocate(10, Placement::Any).unwrap().device,
            0,
            "degraded when nothing else"
        );
    }

    #[test]
    fn allocation_spreads_over_devices_and_avoids_one() {
        let a = Allocator::new(3, 1 << 20, 4096);
        for _ in 0..6 {
            assert_ne!(a.allocate(10, Placement::Prefer(1)).unwrap().device, 1);
        }
    }

    const B: u64 = 4096;

    fn loc(device: u16, block: u64, blocks: u64) -> Location {
        Location::new(device, block * B, (blocks * B) as u32)
    }

    #[test]
    fn freed_neighbours_coalesce_and_serve_a_larger_size() {
        let a = Allocator::new(1, 1 << 20, 4096);
        let xs: Vec<Location> = (0..4)
            .map(|_| a.allocate(4096, Placement::Any).unwrap())
            .collect();
        a.free(xs[1]);
        a.free(xs[2]);
        let s = a.stats(0).unwrap();
        assert_eq!(
            (s.holes, s.free_bytes, s.largest_hole_bytes),
            (1, 2 * B, 2 * B)
        );
        // Exact-size lists could not serve two blocks from two freed single blocks.
        let y = a.allocate(8192, Placement::Any).unwrap();
        assert_eq!(y.offset, B, "the merged hole, not fresh space");
        assert_eq!(a.stats(0).unwrap().file_bytes, 4 * B);
        a.check();
    }

    #[test]
    fn a_larger_hole_is_split_for_a_smaller_size() {
        let a = Allocator::new(1, 1 << 20, 4096);
        let big = a.allocate(4 * 4096, Placement::Any).unwrap();
        let _pin = a.allocate(10, Placement::Any).unwrap();
        a.free(big);
        assert_eq!(a.allocate(10, Placement::Any).unwrap().offset, 0);
        assert_eq!(a.allocate(5000, Placement::Any).unwrap().offset, B);
        let s = a.stats(0).unwrap();
        assert_eq!((s.free_bytes, s.holes, s.file_bytes), (B, 1, 5 * B));
        a.check();
    }

    #[test]
    fn a_free_tail_moves_the_bump_pointer_down() {
        let a = Allocator::new(1, 1 << 20, 4096);
        let xs: Vec<Location> = (0..3)
            .map(|_| a.allocate(4096, Placement::Any).unwrap())
            .collect();
        a.free(xs[1]);
        assert_eq!(a.high_water(0), 3 * B, "a hole in the middle stays a hole");
        a.free(xs[2]);
        assert_eq!(a.high_water(0), B, "the tail and the hole below it go");
        let s = a.stats(0).unwrap();
        assert_eq!((s.free_bytes, s.holes, s.live_bytes), (0, 0, B));
        let released = a.release_tail(0, false, |len| {
            assert_eq!(len, B);
            Ok(())
        });
        assert_eq!(released.unwrap(), 2 * B);
        assert_eq!(
            a.release_tail(0, false, |_| panic!("nothing to release"))
                .unwrap(),
            0
        );
        a.check();
    }

    #[test]
    fn a_free_overlapping_a_bad_location_keeps_the_bad_part_out() {
        let a = Allocator::new(1, 1 << 20, 4096);
        let x = a.allocate(3 * 4096, Placement::Any).unwrap();
        let _top = a.allocate(10, Placement::Any).unwrap();
        a.mark_bad(loc(0, 1, 1)); // the middle block of x
        a.free(x);
        let s = a.stats(0).unwrap();
        assert_eq!(
            (s.free_bytes, s.holes, s.bad_bytes, s.live_bytes),
            (2 * B, 2, B, B)
        );
        let offsets: Vec<u64> = (0..3)
            .map(|_| a.allocate(10, Placement::Any).unwrap().offset)
            .collect();
        assert_eq!(offsets, [0, 2 * B, 4 * B], "block 1 is skipped");
        assert_eq!(a.bad_locations(), [loc(0, 1, 1)]);
        a.check();
    }

    #[test]
    fn stats_are_exact() {
        let a = Allocator::new(2, 64 * B, 4096);
        a.set_degraded(1);
        let x = a.allocate(100, Placement::Any).unwrap(); // device 0 (1 healthy)
        let y = a.allocate(3 * 4096, Placement::Any).unwrap();
        let _z = a.allocate(1, Placement::Any).unwrap();
        a.free(y);
        a.mark_bad(x);
        let s = a.stats(0).unwrap();
        assert_eq!(
            s,
            DeviceSpaceStats {
                device: 0,
                capacity_bytes: 64 * B,
                file_bytes: 5 * B,
                live_bytes: B,
                free_bytes: 3 * B,
                holes: 1,
                largest_hole_bytes: 3 * B,
                bad_bytes: B,
                degraded: false,
            }
        );
        assert!(a.stats(1).unwrap().degraded);
        assert_eq!(a.stats(1).unwrap().file_bytes, 0);
        assert_eq!(a.degraded_devices(), [1]);
        assert_eq!(a.stats(2), None);
    }

    #[test]
    fn restore_frees_the_gaps_coalesced_and_keeps_bad_out() {
        let referenced = [loc(0, 0, 1), loc(0, 5, 2), loc(1, 2, 1), loc(0, 3, 1)];
        let bad = [loc(0, 1, 1), loc(0, 9, 1)];
        let a = Allocator::restore(2, 64 * B, 4096, referenced, bad, [1]).unwrap();
        // Device 0: 0 live, 1 bad, 2 free, 3 live, 4 free, 5-6 live, 7-8 free, 9 bad.
        let s = a.stats(0).unwrap();
        assert_eq!(
            (
                s.file_bytes,
                s.live_bytes,
                s.free_bytes,
                s.bad_bytes,
                s.holes
            ),
            (10 * B, 4 * B, 4 * B, 2 * B, 3)
        );
        assert_eq!(a.high_water(0), 10 * B);
        assert_eq!(a.high_water(1), 3 * B);
        assert_eq!(
            a.stats(1).unwrap().free_bytes,
            2 * B,
            "blocks 0-1 coalesced"
        );
        assert_eq!(a.degraded_devices(), [1]);
        assert_eq!(a.bad_locations(), bad);
        a.check();
        // Every free block is handed out before fresh space; bad never.
        let mut got: Vec<u64> = (0..5)
            .map(|_| a.allocate(10, Placement::Exclude(1)).unwrap().offset / B)
            .collect();
        got.sort_unstable();
        assert_eq!(got, [2, 4, 7, 8, 10]);
    }

    #[test]
    fn restore_refuses_overlap_and_out_of_range() {
        let overlap = Allocator::restore(1, 64 * B, 4096, [loc(0, 0, 2), loc(0, 1, 1)], [], []);
        assert_eq!(
            overlap.unwrap_err(),
            RestoreError::Overlap {
                a: loc(0, 0, 2),
                b: loc(0, 1, 1)
            }
        );
        // A sub-block tail still occupies its whole block.
        let partial = Location::new(0, 0, 10);
        let overlap =
            Allocator::restore(1, 64 * B, 4096, [partial, Location::new(0, 100, 1)], [], []);
        assert!(matches!(overlap, Err(RestoreError::Overlap { .. })));
        for location in [
            loc(0, 63, 2),
            loc(2, 0, 1),
            Location::new(0, u64::MAX - 1, 10),
        ] {
            assert_eq!(
                Allocator::restore(2, 64 * B, 4096, [location], [], []).unwrap_err(),
                RestoreError::OutOfRange { location }
            );
            assert_eq!(
                Allocator::restore(2, 64 * B, 4096, [], [location], []).unwrap_err(),
                RestoreError::OutOfRange { location }
            );
        }
        let empty = Allocator::restore(1, 64 * B, 4096, [], [], []).unwrap();
        assert_eq!(
            empty.stats(0).unwrap(),
            Allocator::new(1, 64 * B, 4096).stats(0).unwrap()
        );
    }

    /// The reference: one flag per block, first fit by linear scan.
    struct Reference {
        used: Vec<bool>,
        bad: Vec<bool>,
        bump: u64,
    }

    impl Reference {
        /// Maximal free runs below the bump pointer: (start, length) in blocks.
        fn runs(&self) -> Vec<(u64, u64)> {
            let mut runs = Vec::new();
            let mut b = 0;
            while b < self.bump {
                let start = b;
                while b < self.bump && !self.used[b as usize] && !self.bad[b as usize] {
                    b += 1;
                }
                if b > start {
                    runs.push((start, b - start));
                }
                b += 1;
            }
            runs
        }

        fn allocate(&mut self, blocks: u64, first_fit: bool) -> Option<u64> {
            let fits = self.runs().into_iter().filter(|&(_, len)| len >= blocks);
            let hole = if first_fit {
                fits.map(|(s, _)| s).next()
            } else {
                fits.min_by_key(|&(s, len)| (len, s)).map(|(s, _)| s)
            };
            let start = match hole {
                Some(s) => s,
                None if self.bump + blocks <= self.used.len() as u64 => {
                    self.bump += blocks;
                    self.bump - blocks
                }
                None => return None,
            };
            (start..start + blocks).for_each(|b| self.used[b as usize] = true);
            Some(start)
        }

        fn lower_bump(&mut self) {
            while self.bump > 0
                && !self.used[self.bump as usize - 1]
                && !self.bad[self.bump as usize - 1]
            {
                self.bump -= 1;
            }
        }
    }

    /// Invariant: the free map agrees block for block with a bitmap reference under
    /// random allocate / free / mark-bad (same best-fit and first-fit offsets, same live, free and
    /// bad bytes, same bump pointer), and never hands out a used or bad block.
    #[test]
    fn the_free_map_matches_a_bitmap_reference() {
        let blocks = 256u64;
        for seed in 1..=20u64 {
            let a = Allocator::new(1, blocks * B, 4096);
            let mut r = Reference {
                used: vec![false; blocks as usize],
                bad: vec![false; blocks as usize],
                bump: 0,
            };
            let mut live: Vec<Location> = Vec::new();
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for step in 0..2000 {
                let roll = next() % 10;
                if roll < 5 {
                    let n = 1 + next() % 8;
                    let pack = next() % 2 == 0;
                    let placement = if pack {
                        Placement::Pack
                    } else {
                        Placement::Any
                    };
                    let got = a.allocate((n * B) as u32 - (next() % 100) as u32, placement);
                    let want = r.allocate(n, pack);
                    assert_eq!(
                        got.as_ref().ok().map(|l| l.offset / B),
                        want,
                        "seed {seed} step {step}"
                    );
                    if let Ok(l) = got {
                        live.push(l);
                    }
                } else if roll < 9 && !live.is_empty() {
                    let l = live.swap_remove((next() % live.len() as u64) as usize);
                    a.free(l);
                    let (s, e) = (l.offset / B, l.end().div_ceil(B));
                    (s..e).for_each(|b| r.used[b as usize] = false);
                    r.lower_bump();
                } else if !live.is_empty() {
                    // A fault in one block of a live location.
                    let l = live[(next() % live.len() as u64) as usize];
                    let b = l.offset / B + next() % (l.end().div_ceil(B) - l.offset / B);
                    a.mark_bad(loc(0, b, 1));
                    r.bad[b as usize] = true;
                }
                let s = a.stats(0).unwrap();
                let count = |f: &dyn Fn(usize) -> bool| {
                    (0..r.bump as usize).filter(|&b| f(b)).count() as u64 * B
                };
                assert_eq!(s.file_bytes, r.bump * B, "seed {seed} step {step}");
                assert_eq!(s.bad_bytes, count(&|b| r.bad[b]));
                assert_eq!(s.live_bytes, count(&|b| r.used[b] && !r.bad[b]));
                assert_eq!(s.free_bytes, count(&|b| !r.used[b] && !r.bad[b]));
            }
            a.check();
            // Recovery's view: the complement of the live and bad locations is the
            // same allocator (same statistics, same next locations).
            let b = Allocator::restore(1, blocks * B, 4096, live.clone(), a.bad_locations(), [])
                .expect("consistent");
            b.check();
            assert_eq!(
                a.stats(0),
                b.stats(0),
                "seed {seed}: restore is the complement"
            );
            for n in 1..=8u32 {
                let placement = if n % 2 == 0 {
                    Placement::Pack
                } else {
                    Placement::Any
                };
                assert_eq!(
                    a.allocate(n * 4096, placement).ok(),
                    b.allocate(n * 4096, placement).ok()
                );
            }
        }
    }

    /// The high-water of one device after a churn of `ops` random overwrites
    /// (1-16 blocks each) of `ids` extents, at about 50 % live data.
    fn churn_high_water(fit: Fit, ids: usize, ops: usize) -> (u64, u64) {
        let a = Allocator::new(1, 1 << 40, 4096).with_fit(fit);
        let mut slots: Vec<Option<Location>> = vec![None; ids];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..ops {
            let i = (next() % ids as u64) as usize;
            let fresh = if next() % 2 == 0 {
                Some(
                    a.allocate((1 + next() % 16) as u32 * 4096, Placement::Any)
                        .expect("a terabyte device has room"),
                )
            } else {
                None // a delete
            };
            if let Some(old) = std::mem::replace(&mut slots[i], fresh) {
                a.free(old);
            }
        }
        let s = a.stats(0).expect("device 0 exists");
        (s.file_bytes, s.live_bytes)
    }

    /// The measurement behind best fit for ordinary allocations (module docs): on
    /// the same churn it ends with no larger a device high-water than first fit
    /// (measured: 1.059 vs 1.101 high-water / live).
    #[test]
    fn best_fit_keeps_the_high_water_no_higher_than_first_fit() {
        let (first, live_first) = churn_high_water(Fit::First, 2000, 50_000);
        let (best, live_best) = churn_high_water(Fit::Best, 2000, 50_000);
        assert_eq!(live_first, live_best, "same workload, same live bytes");
        println!(
            "churn high-water / live: first fit {:.3}, best fit {:.3}",
            first as f64 / live_first as f64,
            best as f64 / live_best as f64
        );
        assert!(best <= first, "first {first} best {best}");
    }
}
