//! The compaction planner: which extents to move for a space goal.
//!
//! Pure logic over record snapshots and the allocator's per-device statistics; it
//! moves nothing. An engine runs the plan with [`Store::pack`](crate::Store::pack)
//! (or [`Store::drain`](crate::Store::drain) for a drain).
//!
//! The shrink heuristic: on a device whose holes make up more than the target share
//! of its file, the extents located highest are the ones to move. Moved into holes
//! below (the allocator takes the lowest hole that fits, and holes before fresh
//! space), each one lets the bump pointer, and so the file, drop to the end of the
//! next extent down. Moving the `k` highest extents leaves a file of
//! `F_k` = max(the end of the `k+1`-th highest extent, live + bad bytes) (the second
//! once the moved bytes no longer fit in the holes below that extent), with
//! `F_k - live - bad` bytes of holes; the planner takes the smallest `k` whose hole
//! share `(F_k - live - bad) / F_k` meets the target, as long as every extent above
//! is movable (a durable record with no write pending; a quarantined or busy one
//! pins the tail and ends the plan for its device). It is an estimate: holes too
//! small for an extent leave the real file longer, and the engine can plan again.

use super::device::DeviceSpaceStats;
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
    /// located highest in it into holes below them.
    FreeRatio {
        /// The largest acceptable share of free holes in a device file.
        target: f64,
    },
}

/// The extents to compact for `goal`, given every allocated record and each
/// device's statistics; `block_size` rounds lengths as the allocator does.
/// Bounded: one sort and one pass over `records`.
pub(crate) fn plan(
    goal: &PlanGoal,
    records: &[Snapshot],
    devices: &[DeviceSpaceStats],
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
        PlanGoal::FreeRatio { target } => devices
            .iter()
            .flat_map(|d| shrink(d, records, target, block_size))
            .collect(),
    }
}

/// The highest extents of device `d` to move so that its hole share meets `target`.
fn shrink(
    d: &DeviceSpaceStats,
    records: &[Snapshot],
    target: f64,
    block_size: u64,
) -> Vec<ExtentId> {
    let share = |file: u64| {
        let holes = file.saturating_sub(d.live_bytes + d.bad_bytes);
        if file == 0 {
            0.0
        } else {
            holes as f64 / file as f64
        }
    };
    if share(d.file_bytes) <= target {
        return Vec::new();
    }
    let mut on: Vec<&Snapshot> = records
        .iter()
        .filter(|s| s.state() != State::Vacant && s.location().device == d.device)
        .collect();
    on.sort_unstable_by_key(|s| std::cmp::Reverse(s.location().offset));
    let end = |l: Location| l.offset + u64::from(l.length).div_ceil(block_size).max(1) * block_size;
    let mut chosen = Vec::new();
    for (k, s) in on.iter().enumerate() {
        let movable = s.state() == State::Durable && !s.write_pending();
        if !movable {
            break; // a pinned tail: nothing below it can shrink the file
        }
        // The file once the extents above `on[k+1]` (this one included) moved: the
        // next extent's end, or, once the moved bytes no longer fit in the holes
        // below it, about the live and bad bytes packed.
        let next_end = on.get(k + 1).map_or(0, |next| end(next.location()));
        let after = next_end.max(d.live_bytes + d.bad_bytes);
        chosen.push(s.extent());
        if share(after) <= target {
            break;
        }
    }
    chosen
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
            file_bytes: file,
            live_bytes: live,
            free_bytes: file - live,
            ..DeviceSpaceStats::default()
        }
    }

    #[test]
    fn drain_lists_every_readable_extent_on_the_device_highest_first() {
        let r = records(&[(1, 0, 0, 10), (2, 1, 0, 10), (3, 0, 4096, 10)]);
        let plan = plan(&PlanGoal::Drain { device: 0 }, &r, &[], 4096);
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
        // Moving 3 leaves a file of 7 blocks (4 holes, 57 %); moving 2 as well
        // packs everything into blocks 0-2 (no holes).
        assert_eq!(
            plan(&PlanGoal::FreeRatio { target: 0.6 }, &r, &[d], 4096),
            [ExtentId(3)]
        );
        assert_eq!(
            plan(&PlanGoal::FreeRatio { target: 0.0 }, &r, &[d], 4096),
            [ExtentId(3), ExtentId(2)],
            "both moves fit in the holes below them"
        );
        assert!(plan(&PlanGoal::FreeRatio { target: 0.7 }, &r, &[d], 4096).is_empty());
    }
}
