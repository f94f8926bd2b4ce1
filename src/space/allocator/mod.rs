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
//!   reused across sizes. A packing compaction ([`Placement::PackBelow`]) takes
//!   the lowest hole that fits below the source on its own device instead (first
//!   fit), or stays, so the file can shrink;
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

#[cfg(all(test, not(loom)))]
mod reference;
#[cfg(all(test, not(loom)))]
mod tests;

use super::device::{DeviceSpace, DeviceSpaceStats, Fit, Source};
use super::ranges::Ranges;
use crate::error::{Error, Result};
use crate::record::Location;
use crate::sync::{AtomicUsize, Mutex, Ordering};

/// A freed tail at least this long (bytes past the bump pointer that the device
/// file may still hold) makes [`Allocator::take_trim_due`] answer true: the store
/// then releases it without being asked.
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
    /// A referenced location that does not start on a block: the store was
    /// made with another block size (the offsets are the one it used).
    Misaligned {
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
    /// A packing compaction of the extent at this location: the lowest hole that
    /// fits below it on its own device, else the lowest hole on another healthy
    /// device, else fresh space on one (by device number; growing another file
    /// with live bytes only lowers its hole share), else nowhere
    /// ([`Error::NoSpace`]). The planner replays exactly this order, so one plan
    /// and one `pack` reach its target (first fit over all devices in rotating
    /// order, which the planner could not predict, left a two-device store 23 %
    /// free after one pass).
    PackBelow(Location),
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
    /// `>= devices` or ending past `capacity`; [`RestoreError::Misaligned`] for a
    /// referenced location that does not start on a block.
    pub(crate) fn restore(
        devices: u16,
        capacity: u64,
        block_size: u32,
        referenced: impl IntoIterator<Item = Location>,
        bad: impl IntoIterator<Item = Location>,
        degraded: impl IntoIterator<Item = u16>,
    ) -> std::result::Result<Allocator, RestoreError> {
        let allocator = Allocator::new(devices, capacity, block_size);
        // Block-rounded spans, a location that starts where the one before it
        // on its device ended joining that one's span: an open of millions of
        // records written one after another holds a few spans here, not one
        // per record beside the table. Joined spans overlap another span
        // exactly when one of their locations does.
        let mut live: Vec<Vec<(u64, u64)>> = vec![Vec::new(); usize::from(devices)];
        for location in referenced {
            // First, before the range and before any span is joined: spans
            // rounded with another block size than the store's would overlap,
            // pass the capacity, or leave part-block holes that a later
            // allocation would hand out over live bytes.
            if location.offset % allocator.block_size != 0 {
                return Err(RestoreError::Misaligned { location });
            }
            let (start, end) = allocator.checked_span(location, capacity)?;
            let spans = &mut live[usize::from(location.device)];
            match spans.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => spans.push((start, end)),
            }
        }
        for location in bad {
            // As above: every bad location was handed out once, on a block.
            if location.offset % allocator.block_size != 0 {
                return Err(RestoreError::Misaligned { location });
            }
            let (start, end) = allocator.checked_span(location, capacity)?;
            allocator.devices[usize::from(location.device)]
                .lock()
                .add_bad(start, end, location);
        }
        for (device, mut spans) in live.into_iter().enumerate() {
            spans.sort_unstable_by_key(|&(start, _)| start);
            // A joined span is named by its bytes (a single location's are
            // its block-rounded length).
            let location = |&(offset, end): &(u64, u64)| Location {
                device: device as u16,
                offset,
                length: u32::try_from(end - offset).unwrap_or(u32::MAX),
            };
            let end = |span: &(u64, u64)| span.1;
            for pair in spans.windows(2) {
                if pair[1].0 < end(&pair[0]) {
                    return Err(RestoreError::Overlap {
                        a: location(&pair[0]),
                        b: location(&pair[1]),
                    });
                }
            }
            let mut space = allocator.devices[device].lock();
            let top = spans.last().map_or(0, end);
            let bad_top = space.bad.last().map_or(0, |(_, end)| end);
            space.bump = top.max(bad_top);
            space.peak = space.bump;
            // Free = the gaps between referenced spans below the bump, minus bad
            // (`release` subtracts it). No gap reaches the bump: it is a referenced
            // or a bad end.
            let mut cursor = 0;
            for span in &spans {
                let (start, end) = (span.0, end(span));
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
            allocator.set_degraded(device, true);
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
        if let Placement::PackBelow(from) = placement {
            return self.pack(from, bytes, length).ok_or(Error::NoSpace {
                length: u64::from(length),
            });
        }
        let n = self.devices.len();
        // Relaxed: only spreads load; any interleaving is correct.
        let start = self.next_device.fetch_add(1, Ordering::Relaxed);
        let fit = match placement {
            Placement::PackBelow(_) => Fit::First,
            _ => self.fit,
        };
        let (avoid, exclude) = match placement {
            Placement::Any | Placement::PackBelow(_) => (None, None),
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

    /// A packing compaction's place for the extent at `from` (see
    /// [`Placement::PackBelow`]): the lowest hole below it on its own device, else
    /// the lowest hole on another healthy device, else fresh space on one, by
    /// device number. A degraded device's own holes are not used: packing it
    /// moves its extents off it. The planner replays exactly this order.
    fn pack(&self, from: Location, bytes: u64, length: u32) -> Option<Location> {
        let own = usize::from(from.device);
        let below = {
            let mut space = self.devices.get(own)?.lock();
            (!space.degraded)
                .then(|| space.take_below(bytes, from.offset))
                .flatten()
        };
        if let Some(offset) = below {
            return Some(Location::new(from.device, offset, length));
        }
        let others = || (0..self.devices.len()).filter(move |&d| d != own);
        let place = |d: usize, source: Source| {
            let mut space = self.devices[d].lock();
            let offset = (!space.degraded)
                .then(|| space.take(bytes, Fit::First, source))
                .flatten()?;
            Some(Location::new(d as u16, offset, length))
        };
        (others().find_map(|d| place(d, Source::Hole)))
            .or_else(|| others().find_map(|d| place(d, Source::Bump)))
    }

    /// Marks `device` degraded: new allocations go elsewhere while they can.
    /// `lasting`: the health policy's verdict, kept in checkpoints
    /// ([`lasting_degraded`](Self::lasting_degraded)); else a failed sync's,
    /// until the reopen only.
    pub(crate) fn set_degraded(&self, device: u16, lasting: bool) {
        if let Some(dev) = self.devices.get(usize::from(device)) {
            let mut space = dev.lock();
            space.degraded = true;
            space.lasting |= lasting;
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
    /// is free now, it leaves the free map at once. Whether it was not marked
    /// before (a repair retried on a quarantined extent marks it again).
    pub(crate) fn mark_bad(&self, location: Location) -> bool {
        let (start, end) = self.span(location);
        let Some(dev) = self.devices.get(usize::from(location.device)) else {
            return false;
        };
        let mut space = dev.lock();
        let new = space.add_bad(start, end, location);
        space.holes.remove(start, end);
        // Bad bytes past the bump pointer (never handed out) raise it, so they
        // lie below it like every other bad byte.
        space.raise_bump(end);
        new
    }

    /// Every location marked bad, by device then in marking order (for the
    /// checkpoint image).
    pub(crate) fn bad_locations(&self) -> Vec<Location> {
        self.devices
            .iter()
            .flat_map(|d| d.lock().bad_locations.clone())
            .collect()
    }

    /// Whether `device` is marked degraded.
    pub(crate) fn is_degraded(&self, device: u16) -> bool {
        (self.devices.get(usize::from(device))).is_some_and(|d| d.lock().degraded)
    }

    /// Devices marked degraded, ascending.
    pub(crate) fn degraded_devices(&self) -> Vec<u16> {
        self.devices_where(|space| space.degraded)
    }

    /// The devices whose space `pick` picks, ascending.
    fn devices_where(&self, pick: impl Fn(&DeviceSpace) -> bool) -> Vec<u16> {
        (0..self.devices.len())
            .filter(|&d| pick(&self.devices[d].lock()))
            .map(|d| d as u16)
            .collect()
    }

    /// Whether the health policy degraded `device` (see
    /// [`lasting_degraded`](Self::lasting_degraded)).
    pub(crate) fn is_lasting_degraded(&self, device: u16) -> bool {
        (self.devices.get(usize::from(device))).is_some_and(|d| d.lock().lasting)
    }

    /// Devices the health policy degraded, ascending: what a checkpoint
    /// keeps (a failed sync's degradation ends with the reopen).
    pub(crate) fn lasting_degraded(&self) -> Vec<u16> {
        self.devices_where(|space| space.lasting)
    }

    /// `device`'s bump pointer: no referenced byte lies at or past it (0 for an
    /// unknown device). It is block-rounded: a healthy device file may end up to a
    /// block short of it (the last extent's unrounded end); a file shorter than the
    /// highest referenced location's `end()` lost referenced bytes.
    #[cfg(all(test, not(loom)))]
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

    /// A copy of `device`'s free holes (for the planner to replay packing on).
    pub(crate) fn holes(&self, device: u16) -> Option<Ranges> {
        Some(self.devices.get(usize::from(device))?.lock().holes.clone())
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

    /// [`release_tail`](Self::release_tail) of every device, `trim(device,
    /// length)` cutting each: the bytes released, or the first error (every
    /// device is tried). What `Store::reclaim_space` and the automatic release
    /// run, and the emulator too, over its fabric.
    ///
    /// # Errors
    ///
    /// The first error `trim` returned.
    pub(crate) fn release_tails(
        &self,
        force: bool,
        mut trim: impl FnMut(u16, u64) -> Result<()>,
    ) -> Result<u64> {
        let mut released = 0;
        let mut first_error = None;
        for device in 0..self.device_count() {
            match self.release_tail(device, force, |length| trim(device, length)) {
                Ok(bytes) => released += bytes,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(released), Err)
    }

    /// Whether a bad range of `location`'s device overlaps its bytes.
    pub(crate) fn overlaps_bad(&self, location: Location) -> bool {
        (self.devices.get(usize::from(location.device)))
            .is_some_and(|d| d.lock().bad.overlaps(location.offset, location.end()))
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
