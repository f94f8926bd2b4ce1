//! The integrity policy: retry, backoff, quarantine and device-health thresholds.
//!
//! # The integrity ladder
//!
//! | rung | what happens | stat that counts it | what a caller sees |
//! |---|---|---|---|
//! | 0. check | a read or verification checks the media bytes against the snapshot's identity-bound checksum | `reads` / `verify_ok` | the bytes |
//! | 1. race | the check failed but the record's version changed meanwhile: a concurrent write, compaction or remap, never a fault; retried on a fresh snapshot | `verify_raced` | nothing (bounded by `raced_limit`) |
//! | 2. retry | the check failed on a stable version: re-read after exponential backoff (`backoff_base_us` doubling to `backoff_max_us`) | `retries` | nothing yet |
//! | 3. transient | a re-read within `retry_limit` succeeded | `verify_transient` | the bytes; one device error recorded |
//! | 4. FPRE004 | all `retry_limit` re-reads of the stable version failed: a persistent fault | `fpre004` | nothing yet (the ladder goes on); one device error recorded |
//! | 5. quarantine | the record becomes `Quarantined`, keeping its location; the bad location is marked never to be reused | `quarantines` | reads served from a verified cache entry, else `FPRE013` |
//! | 6. remap | a good copy (backend replica or reconstruction, else a cache entry whose checksum verifies) is written to a fresh location, read back, verified and committed: `Quarantined → Durable` | `remaps` | `Verdict::Repaired` from `verify`; the bytes again |
//! | 7. no good copy | the record stays `Quarantined`; nothing is dropped | `remap_failed` | `FPRE004` from `verify`; reads: `FPRE013` |
//!
//! Device health runs beside the ladder: `device_error_threshold` errors within
//! `device_error_window_secs` degrade a device (ZFS ZED's default: 10 in 600 s).
//! One verification episode records at most one error, whatever its retries,
//! transient or not: ten glitches a few minutes apart degrade a device as ten
//! faults would. Such a degradation is journaled and lasts across reopens; no
//! call lifts it (drain the device and replace it). A failed sync of a device
//! degrades it until the reopen only. Only media faults count: a read
//! refused for another reason (the store closing) ends the verification.
//! The ladder runs as one protocol machine (`protocol::session`), so the `Store` and
//! the emulator take, and count, exactly the same steps. New
//! allocations avoid degraded devices, and `Store::drain` compacts their extents away.

use crate::error::{Error, Result};

/// Retry, backoff, quarantine and device-health thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegrityPolicy {
    pub(crate) retry_limit: u32,
    pub(crate) raced_limit: u32,
    pub(crate) backoff_base_us: u64,
    pub(crate) backoff_max_us: u64,
    pub(crate) device_error_threshold: u32,
    pub(crate) device_error_window_secs: u64,
}

impl Default for IntegrityPolicy {
    /// 3 re-reads (as the original incident response), backoff 100 µs doubling to
    /// 10 ms, 16 raced retries, 10 device errors in 600 s degrade a device.
    fn default() -> Self {
        IntegrityPolicy {
            retry_limit: 3,
            raced_limit: 16,
            backoff_base_us: 100,
            backoff_max_us: 10_000,
            device_error_threshold: 10,
            device_error_window_secs: 600,
        }
    }
}

impl IntegrityPolicy {
    /// A builder starting from the defaults.
    pub fn builder() -> IntegrityPolicyBuilder {
        IntegrityPolicyBuilder {
            policy: IntegrityPolicy::default(),
        }
    }

    /// Re-reads of a stable version before FPRE004.
    pub fn retry_limit(&self) -> u32 {
        self.retry_limit
    }

    /// The backoff before re-read number `retry` (1-based): base × 2^(retry-1),
    /// capped at the maximum.
    pub fn backoff_us(&self, retry: u32) -> u64 {
        let shift = retry.saturating_sub(1).min(30);
        self.backoff_base_us
            .saturating_mul(1 << shift)
            .min(self.backoff_max_us)
    }

    /// Fresh snapshots a verification takes after races before it gives up
    /// (reporting a race, never a fault).
    pub fn raced_limit(&self) -> u32 {
        self.raced_limit
    }
}

/// Builds an [`IntegrityPolicy`]; [`build`](Self::build) checks every bound.
#[derive(Debug, Clone)]
pub struct IntegrityPolicyBuilder {
    policy: IntegrityPolicy,
}

impl IntegrityPolicyBuilder {
    /// Re-reads of a stable version before FPRE004. Bound: 1 ..= 16.
    pub fn retry_limit(mut self, n: u32) -> Self {
        self.policy.retry_limit = n;
        self
    }
    /// Fresh snapshots after races. Bound: 1 ..= 1 024.
    pub fn raced_limit(mut self, n: u32) -> Self {
        self.policy.raced_limit = n;
        self
    }
    /// First backoff. Bound: 0 ..= max.
    pub fn backoff_base_us(mut self, us: u64) -> Self {
        self.policy.backoff_base_us = us;
        self
    }
    /// Largest backoff. Bound: ≤ 10 s.
    pub fn backoff_max_us(mut self, us: u64) -> Self {
        self.policy.backoff_max_us = us;
        self
    }
    /// Errors that degrade a device within the window. Bound: 1 ..= 1 000 000.
    pub fn device_error_threshold(mut self, n: u32) -> Self {
        self.policy.device_error_threshold = n;
        self
    }
    /// The device-error window. Bound: 1 ..= 86 400 s.
    pub fn device_error_window_secs(mut self, secs: u64) -> Self {
        self.policy.device_error_window_secs = secs;
        self
    }

    /// The policy, if every bound holds.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first field out of bounds.
    pub fn build(self) -> Result<IntegrityPolicy> {
        let p = self.policy;
        let bad = |field: &'static str, v: u64| Error::InvalidConfig {
            field,
            reason: format!("{v} is out of bounds"),
        };
        if !(1..=16).contains(&p.retry_limit) {
            return Err(bad("retry_limit", p.retry_limit.into()));
        }
        if !(1..=1024).contains(&p.raced_limit) {
            return Err(bad("raced_limit", p.raced_limit.into()));
        }
        if p.backoff_max_us > 10_000_000 {
            return Err(bad("backoff_max_us", p.backoff_max_us));
        }
        if p.backoff_base_us > p.backoff_max_us {
            return Err(bad("backoff_base_us", p.backoff_base_us));
        }
        if !(1..=1_000_000).contains(&p.device_error_threshold) {
            return Err(bad(
                "device_error_threshold",
                p.device_error_threshold.into(),
            ));
        }
        if !(1..=86_400).contains(&p.device_error_window_secs) {
            return Err(bad("device_error_window_secs", p.device_error_window_secs));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let p = IntegrityPolicy::default();
        let b: Vec<u64> = (1..=9).map(|r| p.backoff_us(r)).collect();
        assert_eq!(b, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    }

    #[test]
    fn out_of_bounds_policy_is_rejected() {
        for b in [
            IntegrityPolicy::builder().retry_limit(0),
            IntegrityPolicy::builder().backoff_base_us(20_000),
            IntegrityPolicy::builder().device_error_window_secs(0),
        ] {
            assert_eq!(b.build().unwrap_err().code(), "FPRE008");
        }
    }
}
