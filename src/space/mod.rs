//! Space on the devices: the location allocator and deferred reclamation.
//!
//! The allocator hands out fresh locations per device, in whole blocks, round-robin
//! across devices. A freed location goes back to a per-size free list; a location
//! marked bad goes nowhere: it is never handed out again.

mod health;
mod reclaim;

pub(crate) use health::Health;

pub(crate) use reclaim::{Pin, Reclaimer};

use crate::error::{Error, Result};
use crate::record::Location;
use crate::sync::{AtomicUsize, Mutex, Ordering};
use std::collections::HashMap;

/// Free space on one device.
#[derive(Debug)]
struct DeviceSpace {
    capacity: u64,
    /// Everything at or past `bump` has never been handed out.
    bump: u64,
    /// Free offsets by size in blocks.
    free: HashMap<u64, Vec<u64>>,
    /// Locations marked bad, by offset: never freed, never reused.
    bad: HashMap<u64, Location>,
    /// Degraded devices are used only when no healthy one has room.
    degraded: bool,
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
}

/// The per-device location allocator.
#[derive(Debug)]
pub(crate) struct Allocator {
    devices: Box<[Mutex<DeviceSpace>]>,
    next_device: AtomicUsize,
    block_size: u64,
}

impl Allocator {
    /// `devices` devices of `capacity` bytes each, allocated in `block_size` units.
    pub(crate) fn new(devices: u16, capacity: u64, block_size: u32) -> Self {
        Allocator {
            devices: (0..devices)
                .map(|_| {
                    Mutex::new(DeviceSpace {
                        capacity,
                        bump: 0,
                        free: HashMap::new(),
                        bad: HashMap::new(),
                        degraded: false,
                    })
                })
                .collect(),
            next_device: AtomicUsize::new(0),
            block_size: u64::from(block_size),
        }
    }

    fn blocks(&self, length: u32) -> u64 {
        u64::from(length).div_ceil(self.block_size).max(1)
    }

    /// A fresh location of `length` bytes, placed as `placement` says: on a healthy
    /// device if one has room, a degraded one only as a last resort.
    ///
    /// # Errors
    ///
    /// [`Error::NoSpace`] if no allowed device has room.
    pub(crate) fn allocate(&self, length: u32, placement: Placement) -> Result<Location> {
        let blocks = self.blocks(length);
        let n = self.devices.len();
        // Relaxed: only spreads load; any interleaving is correct.
        let start = self.next_device.fetch_add(1, Ordering::Relaxed);
        let (avoid, exclude) = match placement {
            Placement::Any => (None, None),
            Placement::Prefer(d) => (Some(d), None),
            Placement::Exclude(d) => (None, Some(d)),
        };
        // Three passes in preference order; each device is tried once per pass.
        for pass in 0..3 {
            for device in (0..n).map(|i| (start + i) % n) {
                if exclude == Some(device as u16) {
                    continue;
                }
                let mut space = self.devices[device].lock();
                let is_avoided = avoid == Some(device as u16);
                let wanted = match pass {
                    0 => !space.degraded && !is_avoided,
                    1 => !space.degraded && is_avoided,
                    _ => space.degraded,
                };
                if wanted && let Some(offset) = space.take(blocks, self.block_size) {
                    return Ok(Location::new(device as u16, offset, length));
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

    /// Returns a location that no committed record and no reader references.
    pub(crate) fn free(&self, location: Location) {
        let blocks = self.blocks(location.length);
        if let Some(dev) = self.devices.get(location.device as usize) {
            let mut space = dev.lock();
            if !space.bad.contains_key(&location.offset) {
                space.free.entry(blocks).or_default().push(location.offset);
            }
        }
    }

    /// Marks `location` bad: it is never handed out again, even once freed.
    pub(crate) fn mark_bad(&self, location: Location) {
        if let Some(dev) = self.devices.get(location.device as usize) {
            dev.lock().bad.insert(location.offset, location);
        }
    }

    /// An allocator rebuilt after recovery: every block not referenced by
    /// `referenced` nor marked bad, below the highest end of either, is free.
    ///
    /// # Errors
    ///
    /// The two locations that overlap, or a location on no device / past the
    /// capacity (reported as `(l, l)`).
    pub(crate) fn restore(
        devices: u16,
        capacity: u64,
        block_size: u32,
        referenced: impl IntoIterator<Item = Location>,
        bad: impl IntoIterator<Item = Location>,
        degraded: impl IntoIterator<Item = u16>,
    ) -> std::result::Result<Allocator, (Location, Location)> {
        let allocator = Allocator::new(devices, capacity, block_size);
        let block = u64::from(block_size);
        let mut used: Vec<Vec<(u64, u64, Location)>> = vec![Vec::new(); usize::from(devices)];
        for l in referenced {
            let Some(list) = used.get_mut(usize::from(l.device)) else {
                return Err((l, l));
            };
            let end = l.offset + allocator.blocks(l.length) * block;
            if end > capacity || l.offset % block != 0 {
                return Err((l, l));
            }
            list.push((l.offset, end, l));
        }
        for l in bad {
            if let Some(dev) = allocator.devices.get(usize::from(l.device)) {
                dev.lock().bad.insert(l.offset, l);
            }
        }
        for d in degraded {
            allocator.set_degraded(d);
        }
        for (device, mut list) in used.into_iter().enumerate() {
            list.sort_unstable_by_key(|&(start, _, _)| start);
            let mut space = allocator.devices[device].lock();
            let mut at = 0;
            let mut prev: Option<Location> = None;
            for (start, end, l) in list {
                if start < at {
                    return Err((prev.unwrap_or(l), l));
                }
                if start > at {
                    space.free.entry((start - at) / block).or_default().push(at);
                }
                at = end;
                prev = Some(l);
            }
            let bad_end = space
                .bad
                .values()
                .map(|l| l.offset + allocator.blocks(l.length) * block)
                .max()
                .unwrap_or(0);
            space.bump = at.max(bad_end).min(capacity);
        }
        Ok(allocator)
    }

    /// Every location marked bad (for the checkpoint image).
    pub(crate) fn bad_locations(&self) -> Vec<Location> {
        self.devices
            .iter()
            .flat_map(|d| d.lock().bad.values().copied().collect::<Vec<_>>())
            .collect()
    }

    /// Devices marked degraded (for the checkpoint image).
    pub(crate) fn degraded_devices(&self) -> Vec<u16> {
        (0..self.devices.len())
            .filter(|&d| self.devices[d].lock().degraded)
            .map(|d| d as u16)
            .collect()
    }

    /// Whether `location` has been marked bad (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_bad(&self, location: Location) -> bool {
        self.devices
            .get(location.device as usize)
            .is_some_and(|d| d.lock().bad.contains_key(&location.offset))
    }
}

impl DeviceSpace {
    fn take(&mut self, blocks: u64, block_size: u64) -> Option<u64> {
        // Bounded by the free list's length; bad offsets are dropped as met (a
        // location marked bad while already free).
        while let Some(offset) = self.free.get_mut(&blocks).and_then(Vec::pop) {
            if !self.bad.contains_key(&offset) {
                return Some(offset);
            }
        }
        let bytes = blocks * block_size;
        if self.capacity - self.bump < bytes {
            return None;
        }
        let offset = self.bump;
        self.bump += bytes;
        Some(offset)
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

    #[test]
    fn reclaimer_frees_only_after_the_reader_unpins() {
        let r = Reclaimer::new();
        let pin = r.pin();
        let mut freed = vec![];
        r.retire(Location::new(0, 4096, 1), |l| freed.push(l));
        r.collect(|l| freed.push(l));
        r.collect(|l| freed.push(l));
        assert!(freed.is_empty(), "a pinned reader may still read it");
        r.unpin(pin);
        r.collect(|l| freed.push(l));
        r.collect(|l| freed.push(l));
        assert_eq!(freed, vec![Location::new(0, 4096, 1)]);
        assert_eq!(r.pending(), 0);
    }
}
