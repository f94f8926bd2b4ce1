//! Fuzz of the public `Store` surface: random sequences of every operation, ending
//! in a drop at a random point, on `MemBackend` and `FileBackend` behind the
//! fault-injecting backend, whose script injects errors and panics.
//!
//! Invariants checked after every operation:
//! * no panic escapes (a panicking backend call becomes an FPRE009 error);
//! * no read returns bytes other than the last acknowledged value of its extent
//!   (values encode extent and generation, so a stale value cannot pass);
//! * every counter matches a reference count kept by the test.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::fault_backend::{FaultBackend, Inject};
use common::{decode, value};
use extentmeta::{
    Backend, Bytes, CompactOutcome, Error, ExtentId, FileBackend, IntegrityPolicy, MemBackend,
    Result, Store, StoreConfig, Verdict,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Once;

const EXTENTS: u64 = 6;

#[derive(Debug, Clone)]
enum Op {
    Write(u64, usize),
    Read(u64),
    Prefetch(Vec<u64>),
    Warm(u64),
    Compact(u64),
    CompactBatch(Vec<u64>),
    Verify(u64),
    Drain(u16),
    Snapshot(u64),
    Stats,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..EXTENTS;
    let ids = prop::collection::vec(0..EXTENTS, 0..4);
    prop_oneof![
        4 => (id.clone(), 64usize..600).prop_map(|(i, n)| Op::Write(i, n)),
        4 => id.clone().prop_map(Op::Read),
        1 => ids.clone().prop_map(Op::Prefetch),
        1 => id.clone().prop_map(Op::Warm),
        2 => id.clone().prop_map(Op::Compact),
        1 => ids.prop_map(Op::CompactBatch),
        2 => id.clone().prop_map(Op::Verify),
        1 => (0u16..2).prop_map(Op::Drain),
        1 => id.prop_map(Op::Snapshot),
        1 => Just(Op::Stats),
    ]
}

fn script() -> impl Strategy<Value = Vec<Inject>> {
    prop::collection::vec(
        prop_oneof![
            16 => Just(Inject::Pass),
            2 => Just(Inject::Fail),
            1 => Just(Inject::Panic),
        ],
        0..24,
    )
}

/// The reference: last acknowledged generation per extent, and counts.
#[derive(Debug, Default)]
struct Model {
    values: HashMap<u64, (u64, usize)>,
    reads: u64,
    read_ok: u64,
    writes: u64,
    write_ok: u64,
    prefetch_queued_at_least: u64,
    committed: u64,
    aborted: u64,
    verify_ok_at_least: u64,
    remaps_at_least: u64,
}

impl Model {
    fn check_read(&self, id: u64, got: &Bytes) {
        let (generation, len) = self.values.get(&id).copied().expect("read of a vacant id");
        assert_eq!(got.len(), len, "length of {id}");
        assert_eq!(
            decode(got),
            (ExtentId(id), generation),
            "a read returned bytes other than the last acknowledged value"
        );
    }

    fn check_compact(&mut self, r: &Result<CompactOutcome>) {
        match r {
            Ok(CompactOutcome::Committed(_)) => self.committed += 1,
            Ok(CompactOutcome::Aborted) => self.aborted += 1,
            Ok(other) => panic!("an outcome this test does not know: {other:?}"),
            Err(_) => {}
        }
    }
}

/// Runs `ops` up to `drop_at` on `backend`, every backend call taking its fault
/// from `script` (one entry per call, cycling), checking after each operation.
fn run(backend: impl Backend, script: Vec<Inject>, ops: &[Op], drop_at: usize) {
    // With nothing injected, no operation here has a reason to fail.
    let faulty = script.iter().any(|i| !matches!(i, Inject::Pass));
    let no_fault = |e: &Error| assert!(faulty, "{e}, with no fault injected");
    // A compaction or verification of an extent never written is the
    // caller's mistake (FPRE002) or nothing to read (FPRE012), fault or not.
    let vacant_or_no_fault = |e: &Error, written: bool| {
        if written || !matches!(e.code(), "FPRE002" | "FPRE012") {
            no_fault(e);
        }
    };
    let backend = FaultBackend::over(backend);
    backend.script(script);
    let policy = IntegrityPolicy::builder()
        .backoff_base_us(0)
        .backoff_max_us(0)
        .build()
        .unwrap();
    let config = StoreConfig::builder()
        .cache_bytes(16 << 10)
        .cache_shards(2)
        .prefetch_workers(1)
        .prefetch_queue(8)
        .policy(policy)
        .table(
            extentmeta::TableConfig::builder()
                .max_extents(EXTENTS)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let store = Store::new(backend, config).unwrap();
    let mut m = Model::default();
    for op in ops.iter().take(drop_at) {
        match op {
            Op::Write(i, len) => {
                let id = ExtentId(*i);
                let generation = store.snapshot(id).unwrap().generation() + 1;
                m.writes += 1;
                match store.write(id, &value(id, generation, *len)) {
                    Ok(s) => {
                        assert_eq!(s.generation(), generation);
                        m.values.insert(*i, (generation, *len));
                        m.write_ok += 1;
                    }
                    Err(e) => no_fault(&e),
                }
            }
            Op::Read(i) => {
                m.reads += 1;
                match store.read(ExtentId(*i)) {
                    Ok(bytes) => {
                        m.check_read(*i, &bytes);
                        m.read_ok += 1;
                    }
                    Err(Error::NotReadable { .. }) => {
                        assert!(!m.values.contains_key(i), "{i} was written")
                    }
                    Err(e) => no_fault(&e),
                }
            }
            Op::Prefetch(ids) => {
                let ids: Vec<ExtentId> = ids.iter().map(|&i| ExtentId(i)).collect();
                m.prefetch_queued_at_least += store.prefetch(&ids) as u64;
            }
            Op::Warm(i) => {
                let _ = store.warm(ExtentId(*i));
            }
            Op::Compact(i) => {
                let r = store.compact(ExtentId(*i));
                if let Err(e) = &r {
                    vacant_or_no_fault(e, m.values.contains_key(i));
                }
                m.check_compact(&r);
            }
            Op::CompactBatch(ids) => {
                let extents: Vec<ExtentId> = ids.iter().map(|&i| ExtentId(i)).collect();
                for (i, r) in ids.iter().zip(store.compact_batch(&extents)) {
                    if let Err(e) = &r {
                        vacant_or_no_fault(e, m.values.contains_key(i));
                    }
                    m.check_compact(&r);
                }
            }
            Op::Verify(i) => match store.verify(ExtentId(*i)) {
                Ok(Verdict::Ok { .. }) => m.verify_ok_at_least += 1,
                Ok(Verdict::Repaired { .. }) => m.remaps_at_least += 1,
                Ok(_) => {}
                Err(e) => vacant_or_no_fault(&e, m.values.contains_key(i)),
            },
            Op::Drain(device) => match store.drain(*device) {
                Ok(moved) | Err(Error::DrainIncomplete { moved, .. }) => m.committed += moved,
                Err(e) => no_fault(&e),
            },
            Op::Snapshot(i) => {
                let s = store.snapshot(ExtentId(*i)).unwrap();
                let acknowledged = m.values.get(i).map_or(0, |v| v.0);
                assert_eq!(s.generation(), acknowledged, "record of {i}");
            }
            Op::Stats => {}
        }
        check_counters(&store, &m);
    }
    // Then the store is dropped with whatever is still queued: it must return.
    drop(store);
}

fn check_counters(store: &Store, m: &Model) {
    let s = store.stats();
    assert_eq!((s.reads, s.read_ok), (m.reads, m.read_ok), "reads");
    assert_eq!((s.writes, s.write_ok), (m.writes, m.write_ok), "writes");
    assert_eq!(
        s.compactions_committed, m.committed,
        "committed compactions"
    );
    assert_eq!(s.compactions_aborted, m.aborted, "aborted compactions");
    assert!(
        s.prefetch_queued >= m.prefetch_queued_at_least,
        "queued hints"
    );
    let handled = s.prefetch_done + s.prefetch_cancelled + s.prefetch_abandoned;
    assert!(
        handled <= s.prefetch_queued,
        "hints handled {handled} > queued"
    );
    assert!(s.verify_ok >= m.verify_ok_at_least, "verify_ok");
    assert!(s.remaps >= m.remaps_at_least, "remaps");
    // Sequential: no write races a repair, so every fault found quarantined its
    // extent, exactly once.
    assert_eq!(
        s.quarantines, s.fpre004,
        "one quarantine per FPRE004: {s:?}"
    );
    assert!(
        s.remaps + s.remap_failed >= s.quarantines,
        "every quarantine tried a remap: {s:?}"
    );
    assert!(s.read_ok <= s.reads && s.write_ok <= s.writes);
}

/// Silences the default hook's report of the injected panics (they are contained
/// by the store; any other panic still fails the test).
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|s| s.starts_with("injected backend panic"));
            if !injected {
                default(info);
            }
        }));
    });
}

proptest! {
    /// Random sequences on MemBackend.
    #[test]
    fn fuzz_every_store_operation_on_mem_backend(
        script in script(),
        ops in prop::collection::vec(op(), 1..40),
        drop_frac in 0.0f64..=1.0,
    ) {
        quiet_injected_panics();
        let drop_at = (ops.len() as f64 * drop_frac) as usize;
        run(MemBackend::new(2), script, &ops, drop_at);
    }

    /// Random sequences on FileBackend.
    #[test]
    fn fuzz_every_store_operation_on_file_backend(
        script in script(),
        ops in prop::collection::vec(op(), 1..24),
        drop_frac in 0.0f64..=1.0,
    ) {
        quiet_injected_panics();
        let dir = tempfile::tempdir().unwrap();
        let drop_at = (ops.len() as f64 * drop_frac) as usize;
        run(FileBackend::open(dir.path(), 2).unwrap(), script, &ops, drop_at);
    }
}
