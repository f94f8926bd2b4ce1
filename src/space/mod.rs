//! Space on the devices: the location allocator, deferred reclamation, device
//! health and the compaction planner.

mod allocator;
mod device;
mod health;
mod planner;
mod ranges;
mod reclaim;

pub(crate) use allocator::{Allocator, Placement, RestoreError};
pub use device::DeviceSpaceStats;
pub(crate) use health::Health;
pub use planner::PlanGoal;
pub(crate) use planner::plan;

pub(crate) use reclaim::{Pin, Reclaimer};
