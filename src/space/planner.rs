//! The compaction planner: which extents to move for a space goal.
//!
//! Pure logic over record snapshots and the allocator's per-device statistics; it
//! moves nothing. An engine runs the plan with [`Store::pack`](crate::Store::pack)
//! (or [`Store::drain`](crate::Store::drain) for a drain).
//!
//! The shrink plan: on a device whose holes make up more than the target share of
//! its file, the extents located highest are the ones to move, each into the
//! lowest hole that fits below it on its own device, else into the lowest hole
//! that fits on another device, else at the end of another device's file (what
//! [`Store::pack`](crate::Store::pack) does; a move onto another device only
//! lowers that device's hole share, whether it fills a hole or grows the file
//! with live bytes). The
//! planner replays those moves on copies of the devices' holes, a device at a
//! time, highest extent first: each move frees the
//! extent's span, and a freed span that reaches the end of the file lets the
//! file shrink to the start of that hole. It stops as soon as the hole share
//! `(file - live - bad) / file` meets the target, or at the first extent that
//! cannot move (quarantined or busy, on a single device with no hole below
//! it, or with no device left with room) or that no longer ends the file
//! (something else lies above it: bytes moved there earlier in the plan, a
//! location retired but not yet free, a write in flight, a bad range):
//! that one pins the tail. So one pass plus `pack` reaches the target whenever the holes
//! allow it, and a plan can only fall short when records change in between
//! (a write, a delete or another compaction).

use super::device::DeviceSpaceStats;
use super::ranges::Ranges;
use crate::record::{ExtentId, Location, Snapshot, State};

/// What [`Store::plan_compaction`](crate::Store::plan_compaction) plans for.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum PlanGoal {
    /// Every readable extent on `device` (to move off it, e.g. a degraded device).
    Drain {
        /// The device to empty.
        device: u16,
    },
    /// Shrink every device file whose free holes exceed `target` of its bytes
    /// (`free_bytes / file_bytes`, a fraction in `0.0 ..= 1.0`) by moving the extents
    /// located highest in it into holes below them. A target outside that
    /// range (or NaN) plans nothing.
    FreeRatio {
        /// The largest acceptable share of free holes in a device file.
        target: f64,
    },
}

/// The extents to compact for `goal`, given every allocated record, each
/// device's statistics and free holes (`holes[d]` for `devices[d]`); `block_size`
/// rounds lengths as the allocator does. Bounded: one sort of `records` and, per
/// device, one pass over its extents with a hole lookup each.
pub(crate) fn plan(
    goal: &PlanGoal,
    records: &[Snapshot],
    devices: &[DeviceSpaceStats],
    holes: &[Ranges],
    block_size: u64,
) -> Vec<ExtentId> {
    match *goal {
        PlanGoal::Drain { device } => {
            let mut on: Vec<&Snapshot> = records
                .iter()
                .filter(|s| s.is_readable() && s.location().device == device)
                .collect();
            // Highest first: each move lets the device's tail shrink at once.
            on.sort_unstable_by_key(|s| std::cmp::Reverse(s.location().offset));
            on.iter().map(|s| s.extent()).collect()
        }
        // Outside 0..=1 (NaN included) no share could meet it, and every
        // movable extent would be planned: nothing is, instead.
        PlanGoal::FreeRatio { target } if !(0.0..=1.0).contains(&target) => Vec::new(),
        PlanGoal::FreeRatio { target } => shrink(devices, holes, records, target, block_size),
    }
}

/// One device as the planner replays packing on it.
#[derive(Clone)]
struct Sim {
    device: u16,
    capacity: u64,
    file: u64,
    /// Live and bad bytes: what the file holds besides holes.
    used: u64,
    holes: Ranges,
}

impl Sim {
    fn share(&self) -> f64 {
        if self.file == 0 {
            0.0
        } else {
            self.file.saturating_sub(self.used) as f64 / self.file as f64
        }
    }

    /// Frees `[offset, offset + bytes)`; a hole that reaches the end of the file
    /// is cut off (holes never touch it).
    fn free(&mut self, offset: u64, bytes: u64) {
        self.holes.insert(offset, offset + bytes);
        // Saturating: the records, the space figures and the holes are read at
        // three moments, so a record deleted or moved in between can free
        // more than this simulation counted as used (the plan is advice).
        self.used = self.used.saturating_sub(bytes);
        while let Some((start, end)) = self.holes.last().filter(|&(_, end)| end >= self.file) {
            self.holes.remove(start, end);
            self.file = start;
        }
    }

    /// Appends `bytes` at the end of the file (fresh space), if the device
    /// has room for them.
    fn append(&mut self, bytes: u64) -> bool {
        let fits = (self.file.checked_add(bytes)).is_some_and(|end| end <= self.capacity);
        if fits {
            self.file += bytes;
            self.used += bytes;
        }
        fits
    }

    /// Takes the lowest hole of `bytes` that starts below `limit`.
    fn take(&mut self, bytes: u64, limit: u64) -> Option<u64> {
        let to = self.holes.first_fit(bytes).filter(|&to| to < limit)?;
        self.holes.remove(to, to + bytes);
        self.used += bytes;
        Some(to)
    }
}

/// The highest extents of every device over `target` to move, found by replaying
/// the moves [`Store::pack`](crate::Store::pack) makes on copies of the devices'
/// holes: a device at a time, its highest extent first, each into the lowest hole
/// below it on its own device, else the lowest hole on another device, else the
/// end of another device's file.
fn shrink(
    devices: &[DeviceSpaceStats],
    holes: &[Ranges],
    records: &[Snapshot],
    target: f64,
    block_size: u64,
) -> Vec<ExtentId> {
    let mut sims: Vec<Sim> = (devices.iter().zip(holes))
        .map(|(d, holes)| Sim {
            device: d.device,
            capacity: d.capacity_bytes,
            file: d.file_bytes,
            used: d.live_bytes + d.bad_bytes,
            holes: holes.clone(),
        })
        .collect();
    let span = |l: Location| u64::from(l.length).div_ceil(block_size).max(1) * block_size;
    let mut chosen = Vec::new();
    // A degraded device takes no moves from others (the allocator skips it).
    let healthy: Vec<bool> = devices.iter().map(|d| !d.degraded).collect();
    for i in 0..sims.len() {
        if sims[i].share() <= target {
            continue;
        }
        let mut on: Vec<&Snapshot> = records
            .iter()
            .filter(|s| s.state() != State::Vacant && s.location().device == sims[i].device)
            .collect();
        on.sort_unstable_by_key(|s| std::cmp::Reverse(s.location().offset));
        // Only as many moves as release file bytes in all: a move to the end
        // of another device's file releases none by itself (the bytes only
        // change files), and pays only once the holes below it reach the end
        // of its own. Without this, two devices whose holes lie below what
        // cannot move (a bad range, a quarantined extent) handed their
        // extents to each other at every plan, for ever. The moves are
        // replayed once to count, then up to the prefix that releases most.
        let before = (sims.clone(), total_file(&sims));
        let files = moves(&mut sims, i, &on, target, &healthy, span, usize::MAX);
        let best = (files.iter().enumerate())
            .filter(|&(_, &(_, file))| file < before.1)
            .min_by_key(|&(k, &(_, file))| (file, k))
            .map_or(0, |(k, _)| k + 1);
        sims = before.0;
        let kept = moves(&mut sims, i, &on, target, &healthy, span, best);
        chosen.extend(kept.into_iter().map(|(id, _)| id));
    }
    chosen
}

/// The devices' file bytes, all together.
fn total_file(sims: &[Sim]) -> u128 {
    sims.iter().map(|s| u128::from(s.file)).sum()
}

/// Replays at most `limit` moves of device `i`'s extents `on` (highest
/// first), as `Allocator::pack` places them: each extent moved and the total
/// of the devices' file bytes after it.
fn moves(
    sims: &mut [Sim],
    i: usize,
    on: &[&Snapshot],
    target: f64,
    healthy: &[bool],
    span: impl Fn(Location) -> u64,
    limit: usize,
) -> Vec<(ExtentId, u128)> {
    let mut done = Vec::new();
    for s in on.iter().take(limit) {
        let movable = s.state() == State::Durable && !s.write_pending();
        let (offset, bytes) = (s.location().offset, span(s.location()));
        // Something that is no record ends the file past this extent (bytes
        // this plan moved here, a location retired but not yet free, a write
        // in flight, a bad range): moving the extent would not shrink the
        // file, only spread holes to other devices.
        let tail_pinned = offset.saturating_add(bytes) < sims[i].file;
        if !movable || tail_pinned {
            break; // a pinned tail: nothing below it can shrink the file
        }
        let others = || (0..healthy.len()).filter(|&j| j != i && healthy[j]);
        // A degraded device's own holes are not used (`Allocator::pack`), and
        // another's end of file only where it has room.
        let placed = (healthy[i] && sims[i].take(bytes, offset).is_some())
            || others().any(|j| sims[j].take(bytes, u64::MAX).is_some())
            || others().any(|j| sims[j].append(bytes));
        if !placed {
            break; // a single device with no hole below it: it pins the tail
        }
        sims[i].free(offset, bytes);
        done.push((s.extent(), total_file(sims)));
        if sims[i].share() <= target {
            break;
        }
    }
    done
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::record::{Change, checksum};
    use crate::table::{ExtentTable, TableConfig};

    /// Durable records of (id, device, offset, length) in a fresh table.
    fn records(spec: &[(u64, u16, u64, u32)]) -> Vec<Snapshot> {
        let table = ExtentTable::new(TableConfig::default());
        spec.iter()
            .map(|&(id, device, offset, length)| {
                let id = ExtentId(id);
                let begin = table
                    .transition(id, 0, Change::BeginWrite)
                    .expect("a vacant record begins a write");
                let location = Location::new(device, offset, length);
                let change = Change::CommitWrite {
                    location,
                    checksum: checksum(id, 1, b""),
                };
                table
                    .transition(id, begin.version(), change)
                    .expect("the pending write commits")
            })
            .collect()
    }

    fn device(file: u64, live: u64) -> DeviceSpaceStats {
        DeviceSpaceStats {
            capacity_bytes: 1 << 30,
            file_bytes: file,
            live_bytes: live,
            free_bytes: file - live,
            ..DeviceSpaceStats::default()
        }
    }

    #[test]
    fn drain_lists_every_readable_extent_on_the_device_highest_first() {
        let r = records(&[(1, 0, 0, 10), (2, 1, 0, 10), (3, 0, 4096, 10)]);
        let plan = plan(&PlanGoal::Drain { device: 0 }, &r, &[], &[], 4096);
        assert_eq!(plan, [ExtentId(3), ExtentId(1)]);
    }

    #[test]
    fn free_ratio_moves_the_highest_extents_until_the_target_is_met() {
        // Blocks: 0 live, 1-5 free, 6 live, 7 live: 3 live of 8 (62.5 % holes).
        let r = records(&[
            (1, 0, 0, 4096),
            (2, 0, 6 * 4096, 4096),
            (3, 0, 7 * 4096, 4096),
        ]);
        let d = device(8 * 4096, 3 * 4096);
        let mut holes = Ranges::default();
        holes.insert(4096, 6 * 4096);
        let holes = [holes];
        // Moving 3 leaves a file of 7 blocks (4 holes, 57 %); moving 2 as well
        // packs everything into blocks 0-2 (no holes).
        assert_eq!(
            plan(&PlanGoal::FreeRatio { target: 0.6 }, &r, &[d], &holes, 4096),
            [ExtentId(3)]
        );
        assert_eq!(
            plan(&PlanGoal::FreeRatio { target: 0.0 }, &r, &[d], &holes, 4096),
            [ExtentId(3), ExtentId(2)],
            "both moves fit in the holes below them"
        );
        assert!(plan(&PlanGoal::FreeRatio { target: 0.7 }, &r, &[d], &holes, 4096).is_empty());
        for target in [f64::NAN, -0.5, 1.5] {
            assert!(
                plan(&PlanGoal::FreeRatio { target }, &r, &[d], &holes, 4096).is_empty(),
                "target {target} plans nothing"
            );
        }
    }

    /// A move that cannot shrink its file is not planned: once the highest
    /// extent of device 0 went to the end of device 1, device 1's own
    /// highest extent no longer ends its file, and moving it (and the next)
    /// would only spread holes, up to draining a device onto the other.
    #[test]
    fn free_ratio_stops_where_something_else_ends_the_file() {
        const B: u64 = 4096;
        // Per device: one block live, one free, two live.
        let r = records(&[
            (1, 0, 0, B as u32),
            (2, 0, 2 * B, 2 * B as u32),
            (3, 1, 0, B as u32),
            (4, 1, 2 * B, 2 * B as u32),
        ]);
        let devices = [
            device(4 * B, 3 * B),
            DeviceSpaceStats {
                device: 1,
                ..device(4 * B, 3 * B)
            },
        ];
        let mut hole = Ranges::default();
        hole.insert(B, 2 * B);
        let holes = [hole.clone(), hole];
        let goal = PlanGoal::FreeRatio { target: 0.1 };
        assert_eq!(plan(&goal, &r, &devices, &holes, B), [ExtentId(2)]);
        // A block that is no record (a write in flight, say) ends the file
        // above the highest extent: nothing below it can shrink the file.
        let r = records(&[(1, 0, 0, B as u32), (2, 0, 2 * B, B as u32)]);
        let mut holes = Ranges::default();
        holes.insert(B, 2 * B);
        holes.insert(3 * B, 4 * B);
        let devices = [
            device(5 * B, 3 * B),
            DeviceSpaceStats {
                device: 1,
                ..device(0, 0)
            },
        ];
        let plan = plan(&goal, &r, &devices, &[holes, Ranges::default()], B);
        assert!(plan.is_empty(), "{plan:?}");
    }

    /// Two devices whose holes lie below a bad range: a move to the end of
    /// the other device's file releases nothing (the hole stays below the bad
    /// range), so none is planned. Planned, every plan and `pack` would hand
    /// the extents back and forth for ever.
    #[test]
    fn free_ratio_plans_no_move_that_releases_nothing() {
        const B: u64 = 4096;
        let r = records(&[(1, 0, 4 * B, 4 * B as u32), (2, 1, 4 * B, 4 * B as u32)]);
        // Per device: a hole of 3 blocks, 1 bad block, the extent's 4.
        let pinned = |d| DeviceSpaceStats {
            device: d,
            bad_bytes: B,
            ..device(8 * B, 4 * B)
        };
        let mut hole = Ranges::default();
        hole.insert(0, 3 * B);
        let holes = [hole.clone(), hole];
        let goal = PlanGoal::FreeRatio { target: 0.2 };
        let plan = plan(&goal, &r, &[pinned(0), pinned(1)], &holes, B);
        assert!(plan.is_empty(), "{plan:?}");
    }

    /// The end of another device's file takes a move only where that device
    /// has room, as `Allocator::pack` places it.
    #[test]
    fn free_ratio_appends_only_where_a_device_has_room() {
        const B: u64 = 4096;
        let r = records(&[(1, 0, 0, B as u32), (2, 0, 2 * B, B as u32)]);
        let mut hole = Ranges::default();
        hole.insert(B, 2 * B);
        let full = DeviceSpaceStats {
            device: 1,
            capacity_bytes: 2 * B,
            ..device(2 * B, 2 * B)
        };
        let roomy = DeviceSpaceStats {
            device: 2,
            ..device(0, 0)
        };
        let goal = PlanGoal::FreeRatio { target: 0.0 };
        let holes = [hole, Ranges::default(), Ranges::default()];
        // Device 0's own hole takes extent 2 first either way.
        assert_eq!(
            plan(&goal, &r, &[device(3 * B, 2 * B), full, roomy], &holes, B),
            [ExtentId(2)]
        );
        // Its hole too small, extent 2 goes past the full device to device 2.
        let big = records(&[(1, 0, 0, B as u32), (2, 0, 2 * B, 2 * B as u32)]);
        let on_full_only = plan(&goal, &big, &[device(4 * B, 3 * B), full], &holes[..2], B);
        assert!(on_full_only.is_empty(), "{on_full_only:?}");
        assert_eq!(
            plan(&goal, &big, &[device(4 * B, 3 * B), full, roomy], &holes, B),
            [ExtentId(2)]
        );
    }
}
