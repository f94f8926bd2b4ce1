//! A deterministic emulator of a storage fabric that drives the real protocol.
//!
//! One `u64` seed determines everything: the workload (writers, readers,
//! prefetchers, a compactor, a scrubber, interleaved in virtual time; writers
//! also run batches, and deletes if [`Workload::delete_percent`] asks), the fabric
//! (per-device latency with jitter, a heavy tail and bursts; delayed, out-of-order
//! write acknowledgments; transient errors on reads, writes and syncs; bit flips at
//! rest and misdirected writes that stay put across retries, as an overlay over the
//! stored bytes; writes that are volatile until a sync of their device that
//! began after them completes),
//! and every actor's clock skew and drift. The same I/O-free operation machines the
//! [`Store`](crate::Store) runs are driven here, not a copy.
//!
//! After every step a checker compares the touched record with the model history:
//! versions only grow, the committed location durably holds the committed bytes
//! (nothing lost, nothing committed before its sync was acknowledged), the record's
//! generation is the last committed one; every read's bytes must be a generation
//! current at some instant inside the read (a deleted extent's value is current
//! until its delete); a write's `Ok` needs its record acknowledged durable, and a
//! certain failure needs none of it durable; FPRE004 must sit on an injected
//! persistent fault (or on a streak of injected transient errors longer than the
//! retry limit, which the report counts apart). A failing run carries a trace of its last steps
//! and replays exactly from its seed.
//!
//! **Crash testing** ([`SimConfig::crashes`]): the metadata journal runs in virtual
//! time on a simulated directory, executing the same plans (group commit, rotation,
//! checkpoint, pointer switch) as the blocking store. A crash may come at any
//! step, including inside a rotation, the store's creation and recovery itself: it
//! drops every operation in flight; one in three only kills the process (the OS
//! keeps every write), the others cut the power: each unsynced data write is lost
//! or survives (perhaps torn), each metadata file keeps its synced bytes plus
//! perhaps a torn prefix of the rest, and each directory operation since the last
//! directory sync may be undone. Metadata writes and syncs also fail like the data
//! devices' I/O: a failure poisons the journal and the store reopens. The store
//! then recovers as [`Store::open`](crate::Store::open) does (the same
//! recovery, rebuild and reopen plan), and the checker asserts invariants 9–11: the
//! recovered state is the model's after some prefix of the issued operations that
//! holds every acknowledged one, no record is half-applied, every referenced
//! location verifies its checksum on the durable device, no location is referenced
//! twice, generations only grow, and recovering twice gives the same state. Three
//! mutants prove that it can fail ([`SimConfig::ack_before_journal_sync`],
//! [`SimConfig::reuse_before_durable`],
//! [`SimConfig::pointer_before_checkpoint_sync`]).
//!
//! The emulator also carries the **legacy protocol** ([`Protocol::Legacy`]) that
//! produced the original FPRE004, so both run on the same seeds side by side.
//!
//! ```
//! use extentmeta::sim::{self, Protocol, SimConfig};
//!
//! let fixed = sim::run(7, &SimConfig::default());
//! assert!(fixed.is_clean(), "{:?}", fixed.violations);
//! let legacy = sim::run(7, &SimConfig { protocol: Protocol::Legacy, ..SimConfig::default() });
//! assert_eq!(legacy.protocol, "legacy");
//! ```

mod config;
mod crash;
mod disk;
mod emulated_journal;
mod fabric;
mod history;
mod legacy;
mod model;
mod report;
mod world;

pub use config::{Clocks, Faults, Latency, Protocol, SimConfig, Workload};
pub use disk::overwrite_survivor;
pub use history::{decode, value};
pub use report::{PrefetchSample, Report};

/// Runs one emulation of `config` from `seed`.
///
/// Never panics: a configuration that [`SimConfig::validate`] refuses yields a
/// report with no steps and one violation naming the field (use [`try_run`] for
/// the typed error).
pub fn run(seed: u64, config: &SimConfig) -> Report {
    try_run(seed, config).unwrap_or_else(|err| {
        let mut report = Report::new(seed, config.protocol);
        report
            .violations
            .push(format!("invalid configuration: {err}"));
        report
    })
}

/// Runs one emulation of `config` from `seed` if the configuration is valid.
///
/// # Errors
///
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) from
/// [`SimConfig::validate`]; nothing is run.
pub fn try_run(seed: u64, config: &SimConfig) -> crate::Result<Report> {
    config.validate()?;
    Ok(world::World::new(seed, *config).run())
}
