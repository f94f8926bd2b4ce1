//! The emulator's configuration space: every configuration is either refused with
//! a typed error or runs; none panics.
#![cfg(feature = "sim")]

use extentmeta::sim::{self, Protocol, SimConfig};
use extentmeta::{Error, IntegrityPolicy};
use proptest::prelude::*;

/// Zero extents once panicked ("remainder with a divisor of zero") in the
/// checker's per-extent state.
#[test]
fn zero_extents_runs_without_panicking() {
    let mut cfg = SimConfig::default();
    cfg.workload.extents = 0;
    let report = sim::try_run(0, &cfg).expect("zero extents is a valid configuration");
    assert!(report.steps > 0, "the actors still ran");
    assert!(report.is_clean(), "{:?}", report.violations);
}

#[test]
fn an_invalid_configuration_is_a_typed_error_and_run_reports_it() {
    let cfg = SimConfig {
        devices: 0,
        ..SimConfig::default()
    };
    let err = sim::try_run(0, &cfg).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "devices",
                ..
            }
        ),
        "{err}"
    );
    let report = sim::run(0, &cfg);
    assert_eq!(report.steps, 0, "nothing ran");
    assert!(
        report.violations[0].contains("FPRE008"),
        "{:?}",
        report.violations
    );
}

/// Every chance is parts per million: a full disk more often than always is
/// refused, as the other chances are, not run as always.
#[test]
fn a_chance_over_a_million_ppm_is_refused() {
    let mut cfg = SimConfig::default();
    cfg.faults.disk_full_ppm = 1_000_001;
    let err = sim::try_run(0, &cfg).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "faults.disk_full_ppm",
                ..
            }
        ),
        "{err}"
    );
    cfg.faults.disk_full_ppm = 1_000_000;
    assert!(sim::try_run(0, &cfg).is_ok());
}

/// Zero, one and ordinary values mostly, out-of-bounds ones rarely: with about 25
/// fields, a run must stay likely to be valid or the property tests only `validate`.
fn u32s() -> impl Strategy<Value = u32> {
    prop_oneof![
        29 => prop::sample::select(vec![0, 1, 2, 3, 16, 1_000, 100_000]),
        1 => prop::sample::select(vec![1_000_001, u32::MAX]),
    ]
}

fn u64s() -> impl Strategy<Value = u64> {
    prop_oneof![
        29 => prop::sample::select(vec![0, 1, 20_000, 3_600_000_000_000]),
        1 => prop::sample::select(vec![3_600_000_000_001, u64::MAX]),
    ]
}

/// Operations are kept small so the property runs quickly; every other field
/// takes zero, one, ordinary and huge values.
fn configs() -> impl Strategy<Value = SimConfig> {
    let workload = (
        prop::sample::select(vec![0u32, 1, 40]),
        prop_oneof![19 => prop::sample::select(vec![0u32, 1, 3, 16]), 1 => Just(70_000u32)],
        prop::array::uniform5(
            prop_oneof![29 => prop::sample::select(vec![0u32, 1, 2]), 1 => Just(u32::MAX)],
        ),
        (u32s(), u32s()),
        u64s(),
    );
    let latency = (prop::array::uniform4(u64s()), (u32s(), u32s(), u32s()));
    let clocks_faults = (u64s(), u32s(), prop::array::uniform4(u32s()));
    let rest = (
        prop_oneof![19 => prop::sample::select(vec![1u16, 3, 1024]), 1 => prop::sample::select(vec![0u16, u16::MAX])],
        prop_oneof![19 => prop::sample::select(vec![0usize, 1, 40]), 1 => Just(usize::MAX)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![1u32, 16]),
    );
    (workload, latency, clocks_faults, rest).prop_map(|(w, l, cf, r)| {
        let mut c = SimConfig::default();
        let (ops, extents, actors, value_bytes, think_ns) = w;
        c.workload.ops = ops;
        c.workload.extents = extents;
        [
            c.workload.writers,
            c.workload.readers,
            c.workload.prefetchers,
            c.workload.compactors,
            c.workload.scrubbers,
        ] = actors;
        c.workload.value_bytes = value_bytes;
        c.workload.think_ns = think_ns;
        [
            c.latency.floor_ns,
            c.latency.jitter_ns,
            c.latency.tail_ns,
            c.latency.ack_delay_ns,
        ] = l.0;
        (
            c.latency.burst_ppm,
            c.latency.burst_ios,
            c.latency.burst_factor,
        ) = l.1;
        (c.clocks.skew_ns, c.clocks.drift_ppm) = (cf.0, cf.1);
        [
            c.faults.transient_ppm,
            c.faults.misdirect_ppm,
            c.faults.bitflip_ppm,
            c.faults.persistent_budget,
        ] = cf.2;
        let (devices, trace_lines, legacy, weaken, early, retries) = r;
        c.devices = devices;
        c.trace_lines = trace_lines;
        c.protocol = if legacy {
            Protocol::Legacy
        } else {
            Protocol::Fixed
        };
        c.weaken_verifier = weaken;
        c.early_sync_ack = early;
        c.policy = IntegrityPolicy::builder()
            .retry_limit(retries)
            .build()
            .unwrap_or_default();
        c
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Validated with a typed error, or runs; never a panic.
    #[test]
    fn every_configuration_is_refused_with_a_typed_error_or_runs(cfg in configs()) {
        match sim::try_run(3, &cfg) {
            Ok(report) => prop_assert!(report.ops <= u64::from(cfg.workload.ops)),
            Err(err) => prop_assert!(matches!(err, Error::InvalidConfig { .. }), "{err}"),
        }
    }
}
