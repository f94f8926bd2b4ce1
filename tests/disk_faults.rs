//! Disk faults on real files, one named test per defect the journal format 2 and
//! durable-before-visible work fixed: each builds the fault precisely (by editing
//! journal bytes of a real store, or with the fault-injecting file system of
//! `tests/common/fault_fs.rs`) and asserts the fixed behaviour.
//!
//! Journal layout (little-endian): a 32-byte file header, then frames
//! `len u32 | crc32c u32 | seq u64 | durable u64 | payload`; `durable` is the
//! journal length that was durable when the frame's write was issued. A record
//! (`Put`) payload is 44 bytes, the close marker's 1 byte (tag 6).
//!
//! Values encode their extent and generation (`tests/common`), so a read can
//! never pass off a stale or foreign value as the expected one.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::fault_fs::{
    self, Cut, FaultFs, Faults, Hook, Rng, SyncFault, SyncVerdict, Target, WriteFault, is_device,
};
use common::{decode, files, refused, value, wait_until};
use extentmeta::store::StoreConfigBuilder;
use extentmeta::{Error, ExtentId, Snapshot, Store, StoreConfig};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const HEADER: usize = 32;
const FRAME_HEAD: usize = 24;
const SECTOR: usize = 512;
const ROTATED_TAG: u8 = 5;
const CLOSED_TAG: u8 = 6;

fn builder(devices: u16, journal_max_bytes: u64) -> StoreConfigBuilder {
    StoreConfig::builder()
        .devices(devices)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(journal_max_bytes)
        // Small: the fault file system keeps every file's bytes in memory.
        .metadata_reserve_bytes(16 << 10)
}

fn config(devices: u16, journal_max_bytes: u64) -> StoreConfig {
    builder(devices, journal_max_bytes).build().unwrap()
}

fn len_of(id: u64, generation: u64) -> usize {
    300 + ((id * 131 + generation * 17) % 2000) as usize
}

fn val(id: u64, generation: u64) -> Vec<u8> {
    value(ExtentId(id), generation, len_of(id, generation))
}

/// Extent → its state: `Some(generation)`, or `None` (vacant: deleted or never
/// written).
type Model = BTreeMap<u64, Option<u64>>;

fn put(store: &Store, model: &mut Model, id: u64, generation: u64) -> Snapshot {
    let snap = store.write(ExtentId(id), &val(id, generation)).unwrap();
    model.insert(id, Some(generation));
    snap
}

/// What `store` holds for `id`: `Some(generation)` or `None` (FPRE012); any other
/// answer panics.
fn state(store: &Store, id: u64) -> Option<u64> {
    match store.read(ExtentId(id)) {
        Ok(bytes) => {
            let (got, generation) = decode(&bytes);
            assert_eq!(got, ExtentId(id));
            assert_eq!(bytes.len(), len_of(id, generation));
            Some(generation)
        }
        Err(e) if e.code() == "FPRE012" => None,
        Err(e) => panic!("read of extent {id}: {e}"),
    }
}

/// Every modelled extent reads back exactly its modelled state.
fn check(store: &Store, model: &Model) {
    for (&id, &expected) in model {
        assert_eq!(state(store, id), expected, "extent {id}");
    }
}

/// One journal frame.
#[derive(Debug, Clone, Copy)]
struct Frame {
    at: usize,
    len: usize,
    durable: u64,
    /// Bytes of an inline write's data after the frame.
    data: usize,
}

impl Frame {
    fn end(&self) -> usize {
        self.at + FRAME_HEAD + self.len + self.data
    }
    fn payload(&self) -> usize {
        self.at + FRAME_HEAD
    }
}

/// The frames of an intact journal (up to the zeros of its allocated space).
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = HEADER;
    while at + FRAME_HEAD <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            // Space allocated ahead of the appends.
            assert!(bytes[at..].iter().all(|&b| b == 0), "zeros end the journal");
            return out;
        }
        let durable = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap());
        let payload = at + FRAME_HEAD;
        let data = common::inline_data_len(&bytes[payload..payload + len]);
        let frame = Frame {
            at,
            len,
            durable,
            data,
        };
        at = frame.end();
        out.push(frame);
    }
    // At most the zero length that ends every write is left.
    assert!(
        bytes[at..].iter().all(|&b| b == 0),
        "the journal parses whole"
    );
    out
}

fn names_with(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = files(dir)
        .into_keys()
        .filter(|n| n.starts_with(prefix) && !n.contains(".dropped-"))
        // The retired journal kept for the next switch to write over.
        .filter(|n| n != "journal-recycled")
        .collect();
    v.sort();
    v
}

fn newest_journal(dir: &Path) -> PathBuf {
    dir.join(names_with(dir, "journal-").pop().unwrap())
}

/// Reads `id`'s acknowledged bytes straight from its device file.
fn on_device(dir: &Path, snap: &Snapshot) -> Vec<u8> {
    let l = snap.location();
    let dev = std::fs::read(dir.join(format!("dev{:04}.extents", l.device))).unwrap();
    dev[l.offset as usize..l.end() as usize].to_vec()
}

// ---------------------------------------------------------------------------
// 1. Sectors of an unsynced group commit persisted in any subset.
// ---------------------------------------------------------------------------

/// A store whose last acknowledged operation is a batch of 12 writes (one group
/// commit of 12 frames, 816 bytes: it spans a sector boundary); then a power cut
/// "before the batch's sync" that persisted the sector after the boundary but not
/// the one before it (`garbage`: torn instead of never written). Recovery must
/// see a torn tail (the frames after the hole carry the mark of the same write),
/// not corruption: it opens, drops the whole group as the torn tail (kept as
/// evidence), and every earlier acknowledged write is intact.
#[test]
fn a_later_sector_persisted_without_an_earlier_one_opens_and_keeps_every_acknowledged_write() {
    for garbage in [false, true] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let cfg = config(1, 64 << 20);
        let mut model = Model::new();
        {
            let store = Store::open(dir, cfg.clone()).unwrap();
            for id in 0..6 {
                put(&store, &mut model, id, 1);
            }
            put(&store, &mut model, 0, 2);
            let items: Vec<(u64, Vec<u8>)> = (10..22).map(|id| (id, val(id, 1))).collect();
            let batch: Vec<(ExtentId, &[u8])> = items
                .iter()
                .map(|(id, v)| (ExtentId(*id), v.as_slice()))
                .collect();
            assert_eq!(store.write_batch(&batch).unwrap().len(), 12);
        }
        let journal = newest_journal(dir);
        let mut bytes = std::fs::read(&journal).unwrap();
        let all = frames(&bytes);
        // The last frame is the close marker, its own group commit; the 13
        // before it are the batch's single write (its marker and 12 records):
        // they share its durable mark, the offset of its first frame.
        let close = *all.last().unwrap();
        assert_eq!((close.len, bytes[close.payload()]), (1, CLOSED_TAG));
        let batch = &all[all.len() - 14..all.len() - 1];
        let start = batch[0].at;
        assert!(
            batch.iter().all(|f| f.durable == start as u64),
            "one group: {batch:?}"
        );
        assert!(
            all[..all.len() - 14]
                .iter()
                .all(|f| f.durable < start as u64),
            "earlier groups were durable before the batch was issued"
        );
        // The power cut came before the batch's sync: no close marker ...
        bytes.truncate(close.at);
        let end = bytes.len();
        // ... and of the batch's sectors, the first never reached the disk (or
        // was torn) while the next one did.
        let boundary = (start / SECTOR + 1) * SECTOR;
        assert!(
            batch.iter().any(|f| f.at >= boundary),
            "whole frames of the batch persisted past the boundary"
        );
        for (i, b) in bytes[start..boundary].iter_mut().enumerate() {
            *b = if garbage {
                (i as u8).wrapping_mul(37) ^ 0xa5
            } else {
                0
            };
        }
        std::fs::write(&journal, &bytes).unwrap();
        let dropped = bytes[start..end].to_vec();

        let store = Store::open(dir, cfg.clone())
            .unwrap_or_else(|e| panic!("garbage {garbage}: the open refused a torn tail: {e}"));
        let report = store.recovery().unwrap();
        assert!(
            report.torn_tail_dropped && !report.clean_close,
            "{report:?}"
        );
        assert_eq!(report.dropped_bytes, dropped.len() as u64, "{report:?}");
        let evidence = dir.join(report.dropped_file.clone().unwrap());
        assert_eq!(std::fs::read(evidence).unwrap(), dropped, "evidence kept");
        check(&store, &model);
        // The batch was in flight at the cut: each of its writes is wholly there
        // or wholly absent; here the whole group was the torn tail.
        for id in 10..22 {
            assert_eq!(state(&store, id), None, "extent {id} of the dropped batch");
        }
        // The store goes on, and a reopen finds a clean journal.
        put(&store, &mut model, 10, 2);
        drop(store);
        let store = Store::open(dir, cfg.clone()).unwrap();
        let report = store.recovery().unwrap();
        assert!(
            !report.torn_tail_dropped && report.clean_close,
            "{report:?}"
        );
        check(&store, &model);
    }
}

/// A flipped byte in a record that a later write followed: that later write was
/// issued after the damaged record was durable (its durable mark lies past it),
/// so the damage is corruption, FPRE021, and the open changes no file (the
/// journal has no close marker: as a crash left it).
#[test]
fn damage_in_a_record_a_later_write_followed_is_fpre021_and_changes_nothing() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = config(1, 64 << 20);
    {
        let store = Store::open(dir, cfg.clone()).unwrap();
        let mut model = Model::new();
        for id in 0..8 {
            put(&store, &mut model, id, 1);
        }
    }
    let journal = newest_journal(dir);
    let mut bytes = std::fs::read(&journal).unwrap();
    let all = frames(&bytes);
    bytes.truncate(all.last().unwrap().at); // no close marker
    let (victim, later) = (all[all.len() - 3], all[all.len() - 2]);
    assert!(later.durable >= victim.end() as u64, "{victim:?} {later:?}");
    bytes[victim.payload() + 9] ^= 0x01;
    std::fs::write(&journal, &bytes).unwrap();
    let err = refused(dir, &cfg, "FPRE021");
    assert!(
        err.to_string().contains("journal-") && err.to_string().contains("after it was durable"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// 2. fsyncgate: a sync that failed for another writer's bytes.
// ---------------------------------------------------------------------------

/// The order the two writers' device syncs finish in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// A's sync fails (dropping A's and B's pages) while B's sync is running;
    /// then B's sync returns `Ok` (Linux reported the error once, to A).
    AFailsThenBReturnsOk,
    /// B's sync returns `Ok` (persisting nothing) while A's sync, which started
    /// first, is still running; then A's fails, dropping both writes' pages.
    BReturnsOkThenAFails,
}

#[derive(Debug, Default)]
struct Steps {
    b_written: bool,
    a_in_sync: bool,
    b_in_sync: bool,
    a_failed: bool,
    b_returned: bool,
    /// What the file system answered B's sync.
    b_sync_failed: Option<bool>,
    a_syncs: u32,
    b_syncs: u32,
}

/// Orders writer A's and writer B's device-file I/O (threads named `writer-a`,
/// `writer-b`): B's bytes are written before A's sync runs; A's sync and B's
/// sync overlap; A's fails with its pages dropped, B's returns `Ok`.
#[derive(Debug)]
struct Fsyncgate {
    order: Order,
    steps: Mutex<Steps>,
    changed: Condvar,
}

fn role() -> Option<char> {
    match std::thread::current().name() {
        Some("writer-a") => Some('a'),
        Some("writer-b") => Some('b'),
        _ => None,
    }
}

impl Fsyncgate {
    /// Waits until `ready`; the bound only turns a broken sequence into a
    /// failure instead of a hang (the sequence itself never depends on time).
    fn wait_until(&self, what: &str, ready: impl Fn(&Steps) -> bool) {
        let mut st = self.steps.lock().unwrap();
        while !ready(&st) {
            let (next, timeout) = self
                .changed
                .wait_timeout(st, Duration::from_secs(30))
                .unwrap();
            st = next;
            assert!(
                !timeout.timed_out() || ready(&st),
                "the I/O sequence never reached: {what} ({st:?})"
            );
        }
    }
    fn update(&self, f: impl FnOnce(&mut Steps)) {
        f(&mut self.steps.lock().unwrap());
        self.changed.notify_all();
    }
}

impl Hook for Fsyncgate {
    fn after_write(&self, file: &str) {
        if is_device(file) && role() == Some('b') {
            self.update(|s| s.b_written = true);
        }
    }
    fn before_sync(&self, file: &str) -> SyncVerdict {
        if !is_device(file) {
            return SyncVerdict::Normal;
        }
        match role() {
            Some('a') => {
                self.update(|s| {
                    s.a_in_sync = true;
                    s.a_syncs += 1;
                });
                match self.order {
                    Order::AFailsThenBReturnsOk => {
                        self.wait_until("B wrote and is syncing", |s| s.b_written && s.b_in_sync);
                    }
                    Order::BReturnsOkThenAFails => {
                        self.wait_until("B's sync returned", |s| s.b_written && s.b_returned);
                    }
                }
                SyncVerdict::Fail { drop_pages: true }
            }
            Some('b') => {
                // A's sync (and so its gate ticket) started before B's returns.
                self.wait_until("A is syncing", |s| s.a_in_sync);
                self.update(|s| {
                    s.b_in_sync = true;
                    s.b_syncs += 1;
                });
                match self.order {
                    Order::AFailsThenBReturnsOk => {
                        self.wait_until("A's sync failed", |s| s.a_failed);
                        // The pages are gone already: a plain sync persists
                        // nothing of B's.
                        SyncVerdict::Normal
                    }
                    Order::BReturnsOkThenAFails => SyncVerdict::OkWithoutPersisting,
                }
            }
            _ => SyncVerdict::Normal,
        }
    }
    fn after_sync(&self, file: &str, failed: bool) {
        if !is_device(file) {
            return;
        }
        match role() {
            Some('a') => self.update(|s| s.a_failed = failed),
            Some('b') => self.update(|s| {
                s.b_returned = true;
                s.b_sync_failed = Some(failed);
            }),
            _ => {}
        }
    }
}

/// fsyncgate, deterministically, on a 1-device store: writer B's bytes reach the
/// device file before writer A's `sync_data` runs; A's sync fails with the
/// pages dropped (B's too); B's own `sync_data` returns `Ok` from the file system
/// (Linux reports a writeback error once per open file, and A got it). B's write
/// must not be acknowledged: it returns an error, is never visible, and after a
/// reopen every acknowledged write is intact. Both orders of the two syncs'
/// returns are run.
///
/// Without the library's sync gate this test fails: B's `sync_data` returned
/// `Ok`, so B would journal its record and be acknowledged (the `is_err`
/// assertion on B fails), and after the reopen B's record would name bytes that
/// were dropped (zeros on the device), so the final check would read a checksum
/// mismatch instead of B's acknowledged value. The gate is what turns B's `Ok`
/// into an error: in the first order because A's failure poisoned the file before
/// B's verdict, in the second because B's `Ok` waits for the verdict of A's
/// overlapping sync.
///
/// With the record journaled while the data syncs (`overlap_data_sync`, the
/// default) the record may be durable when the sync fails: both writes answer
/// FPRE028, and the reopen finds their data gone and drops their records.
#[test]
fn fsyncgate_a_write_whose_pages_another_writers_failed_sync_dropped_is_never_acknowledged() {
    for (order, overlap) in [
        (Order::AFailsThenBReturnsOk, false),
        (Order::BReturnsOkThenAFails, false),
        (Order::AFailsThenBReturnsOk, true),
        (Order::BReturnsOkThenAFails, true),
    ] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        // Writes that sync their data: the race is between two data syncs
        // (inline writes have their own test below).
        let cfg = builder(1, 64 << 20)
            .inline_write_max(0)
            .overlap_data_sync(overlap)
            .build()
            .unwrap();
        let fs = FaultFs::new(dir, u64::MAX, Faults::default());
        let store = Arc::new(Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap());
        let mut model = Model::new();
        for id in 0..6 {
            put(&store, &mut model, id, 1);
        }
        let gate = Arc::new(Fsyncgate {
            order,
            steps: Mutex::default(),
            changed: Condvar::new(),
        });
        fs.set_hook(Arc::clone(&gate) as Arc<dyn Hook>);
        let writer = |name: &str, id: u64| {
            let store = Arc::clone(&store);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || store.write(ExtentId(id), &val(id, 2)))
                .unwrap()
        };
        let a = writer("writer-a", 1);
        let b = writer("writer-b", 2);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let steps = gate.steps.lock().unwrap();
        assert_eq!(
            (steps.a_syncs, steps.b_syncs),
            (1, 1),
            "{order:?}: each writer synced the device once ({steps:?})"
        );
        assert_eq!(
            steps.b_sync_failed,
            Some(false),
            "{order:?}: the file system answered B's sync Ok"
        );
        drop(steps);
        assert!(
            fs.fired().is_some_and(|f| f.contains("dev0000")),
            "{:?}",
            fs.fired()
        );
        // B's bytes were dropped from the device file.
        let device = fs.live("dev0000.extents").unwrap();
        let header = b"extent=2 generation=2 |";
        assert!(
            !device.windows(header.len()).any(|w| w == header),
            "{order:?}: B's bytes were dropped"
        );
        for (name, result) in [("A", &a), ("B", &b)] {
            match result {
                Err(Error::Io {
                    device: 0,
                    op: "sync",
                    ..
                }) if !overlap => {}
                // The other writer's sync failed first: this one is refused.
                Err(Error::DeviceSyncFailed { device: 0, .. }) if !overlap => {}
                Err(Error::OutcomeUnknown { cause, .. }) if overlap && cause.contains("sync") => {}
                other => panic!(
                    "{order:?}: {name}'s write: {other:?}; expected {}",
                    if overlap {
                        "FPRE028 (sync)"
                    } else {
                        "FPRE009 sync"
                    }
                ),
            }
        }
        // Neither is visible; the device is refused until reopen.
        check(&store, &model);
        assert_eq!(
            store.write(ExtentId(3), &val(3, 2)).unwrap_err().code(),
            "FPRE038",
            "{order:?}: a later write on the failed device"
        );
        check(&store, &model);
        store.close().unwrap();
        drop(store);
        fs.cut(&mut Rng::new(1), Cut::AnySubset);
        let store = Store::open(dir, cfg.clone()).unwrap();
        check(&store, &model);
        // Reopened, the device file is trusted again.
        put(&store, &mut model, 2, 3);
        check(&store, &model);
    }
}

/// Fails one read of a device file each time it is armed. SeqCst: a switch
/// the test thread sets and the store's threads read, ordered with nothing else.
#[derive(Debug, Default)]
struct FailNextDeviceRead(AtomicBool);

impl Hook for FailNextDeviceRead {
    fn fail_read(&self, file: &str) -> bool {
        is_device(file) && self.0.swap(false, Ordering::SeqCst)
    }
}

/// Transient read faults degrade a device once the health policy counts ten
/// episodes: the stats say so at once and after a reopen (the journal keeps
/// the mark), and new writes avoid it.
#[test]
fn a_device_the_health_policy_degraded_is_reported_before_and_after_a_reopen() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = config(2, 1 << 20);
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(FailNextDeviceRead::default());
    fs.set_hook(hook.clone());
    let mut model = Model::new();
    let degraded = {
        let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
        let faulty = put(&store, &mut model, 1, 1).location().device;
        // Ten verification episodes, each with one failed read that the
        // re-read gets past: ten device errors.
        for _ in 0..10 {
            hook.0.store(true, Ordering::SeqCst);
            store.verify(ExtentId(1)).unwrap();
        }
        assert_eq!(store.stats().devices_degraded, vec![faulty]);
        let after = put(&store, &mut model, 2, 1);
        assert_ne!(after.location().device, faulty, "new writes avoid it");
        vec![faulty]
    };
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg).unwrap();
    assert_eq!(store.stats().devices_degraded, degraded, "after the reopen");
    check(&store, &model);
}

/// Opens the store on `fs`, writes extents 0 to 3 (generation 1), then arms
/// the next `sync_data` of a `target` file to fail with EIO, its pages kept.
fn four_then_a_failing_sync(
    fs: &FaultFs,
    dir: &Path,
    cfg: &StoreConfig,
    model: &mut Model,
    target: Target,
) -> Store {
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
    for id in 0..4 {
        put(&store, model, id, 1);
    }
    fs.set_faults(Faults {
        sync_eio: Some(SyncFault {
            target,
            nth: 1,
            drop_pages: false,
        }),
        ..Faults::default()
    });
    store
}

/// After a device's sync failed, every checkpoint fails until a reopen (the
/// device's inline writes are not durable there yet, and no sync of it is
/// trusted again). Journals would pile up at the rate of the writes to the
/// other device, on disk and in the next open's memory; instead the second
/// checkpoint failing in a row fails the journal: changes get FPRE036 (an
/// operation in flight FPRE028), a few journals remain, and a reopen
/// recovers every acknowledged write.
#[test]
fn checkpoints_that_keep_failing_after_a_device_sync_failed_fail_the_journal() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = config(2, 4096);
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let mut model = Model::new();
    let mut unknown = Vec::new();
    {
        let store = four_then_a_failing_sync(&fs, dir, &cfg, &mut model, Target::Device);
        let mut refused = None;
        // Bounded: 4 KiB journals rotate every few writes.
        for id in 4..2000 {
            match store.write(ExtentId(id), &val(id, 1)) {
                Ok(_) => {
                    model.insert(id, Some(1));
                }
                Err(e) if e.code() == "FPRE028" => unknown.push(id),
                Err(e) if e.code() == "FPRE038" => {}
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let err = refused.expect("the journal failed");
        assert_eq!(err.code(), "FPRE036", "{err}");
        assert!(
            err.to_string().contains("checkpoints in a row failed"),
            "{err}"
        );
        assert!(
            fs.fired().is_some_and(|f| f.contains("dev")),
            "{:?}",
            fs.fired()
        );
        let journals = names_with(dir, "journal-").len();
        assert!(journals <= 4, "{journals} journals");
        assert!(model.len() > 8, "writes went on after the first failure");
    }
    fs.set_faults(Faults::default());
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg).unwrap();
    check(&store, &model);
    for id in unknown {
        let got = state(&store, id);
        assert!(got.is_none() || got == Some(1), "extent {id}: {got:?}");
    }
}

/// Every device read fails while `reads` is set (a persistent media fault);
/// the journal's next sync fails once `journal` is armed. SeqCst: switches
/// the test and the good-copy source set, ordered with nothing else.
#[derive(Debug, Default)]
struct RemapJournalFails {
    reads: AtomicBool,
    journal: AtomicBool,
}

impl Hook for RemapJournalFails {
    fn fail_read(&self, file: &str) -> bool {
        is_device(file) && self.reads.load(Ordering::SeqCst)
    }
    fn before_sync(&self, file: &str) -> SyncVerdict {
        match fault_fs::is_journal(file) && self.journal.swap(false, Ordering::SeqCst) {
            true => SyncVerdict::Fail { drop_pages: true },
            false => SyncVerdict::Normal,
        }
    }
}

/// A remap whose record the journal fails to take (the table may show the
/// new location already) answers with the journal's error, outcome unknown:
/// not FPRE004, which says the extent stays quarantined without a good copy.
#[test]
fn a_remap_the_journal_fails_reports_the_journal_s_error_not_a_fault() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(RemapJournalFails::default());
    fs.set_hook(hook.clone());
    let id = ExtentId(1);
    let bytes = val(1, 1);
    let source = {
        let (hook, bytes) = (Arc::clone(&hook), bytes.clone());
        move |extent: ExtentId, generation: u64| {
            assert_eq!((extent, generation), (id, 1));
            // The good copy is found after the quarantine was journaled; the
            // copy's read-back succeeds, the remap's journal sync fails.
            hook.reads.store(false, Ordering::SeqCst);
            hook.journal.store(true, Ordering::SeqCst);
            Some(extentmeta::Bytes::from(bytes.clone()))
        }
    };
    let cfg = builder(1, 1 << 20)
        .good_copy_source(source)
        .build()
        .unwrap();
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg).unwrap();
    store.write(id, &bytes).unwrap();
    hook.reads.store(true, Ordering::SeqCst);
    let err = store.verify(id).unwrap_err();
    assert_eq!(err.code(), "FPRE028", "{err}");
}

/// Panics in every read of a file whose name starts with the prefix (a
/// checkpoint's by default) once armed: an engine's `Fs`
/// that panics under the checkpoint's decoder. SeqCst: a switch, as above.
#[derive(Debug)]
struct PanicOnCheckpointRead(AtomicBool, Mutex<&'static str>);

impl Hook for PanicOnCheckpointRead {
    fn fail_read(&self, file: &str) -> bool {
        let prefix = *self.1.lock().unwrap();
        if file.starts_with(prefix) && self.0.load(Ordering::SeqCst) {
            panic!("an engine's file system panicked reading {file}");
        }
        false
    }
}

impl Default for PanicOnCheckpointRead {
    fn default() -> Self {
        PanicOnCheckpointRead(AtomicBool::new(false), Mutex::new("checkpoint-"))
    }
}

/// A file system that panics while the checkpoint is read fails the open
/// as an I/O error (FPRE009), never as a damaged checkpoint (FPRE022), and
/// the store opens once it behaves.
#[test]
fn a_file_system_panicking_under_the_checkpoint_read_is_an_io_error() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = config(1, 4096);
    let mut model = Model::new();
    {
        let store = Store::open(dir, cfg.clone()).unwrap();
        for id in 0..40 {
            put(&store, &mut model, id, 1);
        }
        store.close().unwrap();
    }
    assert!(!names_with(dir, "checkpoint-").is_empty(), "rotated");
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(PanicOnCheckpointRead::default());
    fs.set_hook(hook.clone());
    // Under the checkpoint's decoder, and under the reads of the pointer
    // and the journals, which run on the opening thread: an I/O error of
    // the open, never a panic reaching the caller.
    for prefix in ["checkpoint-", "CURRENT", "journal-"] {
        *hook.1.lock().unwrap() = prefix;
        hook.0.store(true, Ordering::SeqCst);
        let err = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap_err();
        assert_eq!(err.code(), "FPRE009", "{prefix}: {err}");
        hook.0.store(false, Ordering::SeqCst);
    }
    let store = Store::open_in(Arc::new(fs), dir, cfg).unwrap();
    check(&store, &model);
}

/// Panics in the lock of the store directory while armed (a SeqCst switch
/// the test thread sets before the open that must meet it; it orders
/// nothing else).
#[derive(Debug, Default)]
struct PanicOnLock(AtomicBool);

impl Hook for PanicOnLock {
    fn before_lock(&self, file: &str) {
        if self.0.load(Ordering::SeqCst) {
            panic!("an engine's file system panicked locking {file}");
        }
    }
}

/// A file system that panics taking the directory's lock (before recovery
/// runs) fails the open as an I/O error too, never a panic reaching the
/// caller, and the store opens once it behaves.
#[test]
fn a_file_system_panicking_under_the_lock_is_an_io_error() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = config(1, 64 << 20);
    let mut model = Model::new();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    {
        let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
        put(&store, &mut model, 1, 1);
        store.close().unwrap();
    }
    let hook = Arc::new(PanicOnLock::default());
    fs.set_hook(hook.clone());
    hook.0.store(true, Ordering::SeqCst);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).map(|_| ())
    }));
    let err = opened.expect("no panic reaches the caller").unwrap_err();
    assert_eq!(err.code(), "FPRE009", "{err}");
    hook.0.store(false, Ordering::SeqCst);
    let store = Store::open_in(Arc::new(fs), dir, cfg).unwrap();
    check(&store, &model);
}

// ---------------------------------------------------------------------------
// 3. A write or delete that returned an error is never visible.
// ---------------------------------------------------------------------------

/// The journal's sync fails (EIO, pages kept or dropped) under the first write
/// or delete after it is armed: that operation answers FPRE028. Every later write,
/// delete and compaction is refused with FPRE036, not retryable. Meanwhile
/// every read answers the last acknowledged state (0 reads of a failed
/// operation's). After a restart or a power cut (sectors persisted in any subset)
/// and a reopen, the FPRE028 operation is wholly there or wholly absent (both are
/// seen: after a restart with the pages kept it is there), and no operation that
/// failed with another code is there.
#[test]
fn a_write_or_delete_that_returned_an_error_is_never_visible_and_only_fpre028_may_reappear() {
    let (mut done, mut not_done) = (0, 0);
    for first_is_delete in [false, true] {
        for drop_pages in [false, true] {
            // Seed 0: no power cut, only a restart (the page cache keeps what a
            // failed sync kept); the others: power cuts.
            for seed in 0..=3u64 {
                let tmp = fault_fs::tempdir();
                let dir = tmp.path();
                let cfg = config(2, 64 << 20);
                let fs = FaultFs::new(dir, u64::MAX, Faults::default());
                let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
                let mut acked = Model::new();
                for id in 0..8 {
                    put(&store, &mut acked, id, 1);
                }
                assert!(!store.stats().journal_failed);
                fs.set_faults(Faults {
                    sync_eio: Some(SyncFault {
                        target: Target::Journal,
                        nth: 1,
                        drop_pages,
                    }),
                    ..Faults::default()
                });
                let mut bad_reads = Vec::new();
                let mut reads = |store: &Store, after: &str| {
                    for (&id, &expected) in &acked {
                        let got = state(store, id);
                        if got != expected {
                            bad_reads.push(format!("after {after}: extent {id} read {got:?}"));
                        }
                    }
                };
                // The operation whose record the failing sync carried.
                let (unknown_id, unknown_state) = if first_is_delete {
                    let err = store.delete(ExtentId(3)).unwrap_err();
                    assert_eq!(err.code(), "FPRE028", "{err}");
                    (3, None)
                } else {
                    let err = store.write(ExtentId(3), &val(3, 2)).unwrap_err();
                    assert_eq!(err.code(), "FPRE028", "{err}");
                    (3, Some(2))
                };
                assert!(fs.fired().is_some_and(|f| f.contains("journal-")));
                assert!(store.stats().journal_failed, "the store says so");
                reads(&store, "the FPRE028 operation");
                // Every later change is refused: it certainly did not happen.
                let mut refused_ops = Vec::new();
                for i in 0..12u64 {
                    let id = (i * 5 + seed) % 8;
                    let (what, result) = if i % 3 == 2 {
                        refused_ops.push((id, None));
                        ("delete", store.delete(ExtentId(id)).map(|_| ()))
                    } else {
                        let generation = 10 + i;
                        refused_ops.push((id, Some(generation)));
                        let r = store.write(ExtentId(id), &val(id, generation));
                        ("write", r.map(|_| ()))
                    };
                    match result {
                        Err(e @ Error::JournalFailed { .. }) => {
                            assert!(!e.is_retryable(), "only a reopen helps: {e}");
                        }
                        other => panic!("{what} of {id} after the journal failed: {other:?}"),
                    }
                    reads(&store, what);
                }
                let err = store.compact(ExtentId(5)).unwrap_err();
                assert_eq!(err.code(), "FPRE036", "{err}");
                reads(&store, "compaction");
                assert_eq!(
                    bad_reads,
                    Vec::<String>::new(),
                    "reads of failed operations"
                );
                assert!(
                    store.close().is_err(),
                    "close reports the journal's failure"
                );
                assert_eq!(store.read(ExtentId(0)).unwrap_err().code(), "FPRE017");
                drop(store);
                let cut = if seed == 0 {
                    Cut::Nothing
                } else {
                    Cut::AnySubset
                };
                fs.cut(&mut Rng::new(seed), cut);

                let store = Store::open(dir, cfg.clone()).unwrap();
                for (&id, &expected) in &acked {
                    let got = state(&store, id);
                    if id == unknown_id && got == unknown_state {
                        done += 1;
                        continue;
                    }
                    assert_eq!(
                        got, expected,
                        "extent {id} after the reopen (delete first {first_is_delete}, drop {drop_pages}, seed {seed}; refused: {refused_ops:?})"
                    );
                    not_done += u64::from(id == unknown_id);
                }
            }
        }
    }
    eprintln!("FPRE028 operations found done: {done}, not done: {not_done}");
    assert!(not_done > 0 && done > 0, "done {done}, not done {not_done}");
}

/// The journal's sync fails with the pages kept, as ext4 keeps them: still in the
/// page cache (readable) but marked clean, so no later `fsync` writes them. The
/// process restarts without a power cut (the same kernel: the same `FaultFs`);
/// recovery reads the FPRE028 write's record from the page cache, the reopened
/// store serves its generation to readers and acknowledges a later write. Then the
/// power fails. The reopen must neither refuse the directory nor take back the
/// generation a reader was served: the reopen plan has to make what recovery read
/// durable, and a sync alone cannot (the kernel has nothing dirty to write).
#[test]
fn a_record_recovered_from_pages_a_failed_sync_kept_survives_a_later_power_cut() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = config(1, 64 << 20);
    // One kernel for the whole test: what it kept and lost survives the restart.
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let mut model = Model::new();
    {
        let store = four_then_a_failing_sync(&fs, dir, &cfg, &mut model, Target::Journal);
        let err = store.write(ExtentId(3), &val(3, 2)).unwrap_err();
        assert_eq!(err.code(), "FPRE028", "{err}");
        check(&store, &model);
    }
    // The process restarts; the page cache still holds the record.
    fs.set_faults(Faults::default());
    {
        let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
        assert_eq!(
            state(&store, 3),
            Some(2),
            "recovery read the FPRE028 write from the page cache"
        );
        model.insert(3, Some(2)); // served to a reader: may not be taken back
        put(&store, &mut model, 1, 2);
        put(&store, &mut model, 0, 2);
        check(&store, &model);
    }
    // Now the power fails: only what reached the disk survives.
    fs.cut(&mut Rng::new(7), Cut::Synced);
    let store = Store::open(dir, cfg).unwrap_or_else(|e| {
        panic!("a power cut after a restart made the directory unopenable: {e}")
    });
    check(&store, &model);
}

// ---------------------------------------------------------------------------
// 4. A missing or empty journal is refused, never read as an empty store.
// ---------------------------------------------------------------------------

/// A closed 1-device store with a few acknowledged writes: its model and the
/// snapshots of its last writes.
fn closed_store(dir: &Path, cfg: &StoreConfig) -> (Model, Vec<Snapshot>) {
    let store = Store::open(dir, cfg.clone()).unwrap();
    let mut model = Model::new();
    let mut snaps = Vec::new();
    for id in 0..6 {
        snaps.push(put(&store, &mut model, id, 1));
    }
    snaps[2] = put(&store, &mut model, 2, 2);
    store.close().unwrap();
    (model, snaps)
}

/// The device file still holds every acknowledged value (the refused open did
/// not touch it).
fn device_holds(dir: &Path, snaps: &[Snapshot]) {
    for snap in snaps {
        let bytes = on_device(dir, snap);
        assert_eq!(
            bytes,
            val(snap.extent().0, snap.generation()),
            "{} on its device",
            snap.extent()
        );
    }
}

#[test]
fn a_missing_or_empty_journal_is_fpre023_and_changes_nothing() {
    for damage in ["removed", "empty"] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let cfg = config(1, 64 << 20);
        let (_, snaps) = closed_store(dir, &cfg);
        let journal = newest_journal(dir);
        assert!(journal.ends_with("journal-00000000000000000001"));
        match damage {
            "removed" => std::fs::remove_file(&journal).unwrap(),
            _ => OpenOptions::new()
                .write(true)
                .open(&journal)
                .unwrap()
                .set_len(0)
                .unwrap(),
        }
        let err = refused(dir, &cfg, "FPRE023");
        assert!(err.to_string().contains("journal-"), "{damage}: {err}");
        device_holds(dir, &snaps);
    }
}

/// The journal of the current checkpoint cut back to its 32-byte header: it then
/// looks exactly like the journal of a store that acknowledged nothing since
/// that checkpoint, yet the device file holds acknowledged values. Two cases: the
/// first checkpoint (the store never rotated), and a later one (the store
/// rotated; the writes since then moved the extents and reused the locations the
/// checkpoint names).
#[test]
fn a_journal_cut_to_its_header_is_fpre023_and_changes_nothing() {
    for rotated in [false, true] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let cfg = config(1, if rotated { 4096 } else { 64 << 20 });
        let (model, snaps) = if rotated {
            let store = Store::open(dir, cfg.clone()).unwrap();
            let mut model = Model::new();
            let mut snaps = BTreeMap::new();
            for i in 0..200 {
                snaps.insert(i % 10, put(&store, &mut model, i % 10, i / 10 + 1));
            }
            assert!(store.stats().journal_number > 2, "rotated");
            store.close().unwrap();
            (model, snaps.into_values().collect())
        } else {
            closed_store(dir, &cfg)
        };
        let journal = newest_journal(dir);
        OpenOptions::new()
            .write(true)
            .open(&journal)
            .unwrap()
            .set_len(HEADER as u64)
            .unwrap();
        if let Ok(store) = Store::open(dir, cfg.clone()) {
            let report = store.recovery();
            let reads: Vec<_> = model
                .keys()
                .map(|&id| store.read(ExtentId(id)).map(|b| decode(&b).1))
                .collect();
            panic!("rotated {rotated}: opened: {report:?}; reads {reads:?}");
        }
        let err = refused(dir, &cfg, "FPRE023");
        assert!(err.to_string().contains("journal-"), "{err}");
        device_holds(dir, &snaps);
    }
}

/// A store of one device and a 4 KiB journal that writes records only, with
/// a metadata reserve of `reserve` bytes (see `rotated_with_its_checkpoint_failed`).
fn rotating(reserve: u64) -> StoreConfig {
    StoreConfig::builder()
        .devices(1)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(4096)
        .metadata_reserve_bytes(reserve)
        .inline_write_max(0)
        .overlap_data_sync(false)
        .build()
        .unwrap()
}

/// Opens a store in `dir` and fills its 4 KiB journal until it rotates, with
/// the rotation's checkpoint failing (ENOSPC on the checkpoint file, with no
/// metadata reserve to release): checkpoint 1 stays current, journal 1 ends
/// with the marker naming journal 2, and `writes_after` more writes go to
/// journal 2; then closes it. `before_rotation` runs first, on the open store. Records
/// only, none appended in the background: inline data would fill the small
/// journal and rotate again, and overlapped writes' markers would follow a
/// copy of the journal taken between two writes.
fn rotated_with_its_checkpoint_failed(
    dir: &Path,
    model: &mut Model,
    before_rotation: impl FnOnce(&Store, &mut Model),
    writes_after: u64,
) -> StoreConfig {
    let cfg = rotating(0);
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
    fs.set_faults(Faults {
        enospc: Some(WriteFault {
            target: Target::Checkpoint,
            nth: 1,
            short: true,
        }),
        ..Faults::default()
    });
    before_rotation(&store, model);
    let next = |model: &Model, id: u64| model.get(&id).copied().flatten().unwrap_or(0) + 1;
    let mut n = 0;
    // Bounded: about 60 writes fill a 4 KiB journal.
    while store.stats().journal_number < 2 {
        let id = n % 16;
        put(&store, model, id, next(model, id));
        n += 1;
        assert!(n < 1000, "no rotation");
    }
    // The checkpointer writes the rotation's checkpoint in the background.
    wait_until(|| fs.fired().is_some());
    assert!(fs.fired().is_some_and(|f| f.contains("checkpoint-")));
    for id in 0..writes_after {
        put(&store, model, id, next(model, id));
    }
    store.close().unwrap();
    assert_eq!(
        std::fs::read(dir.join("CURRENT")).unwrap()[12],
        1,
        "checkpoint 1 stays current"
    );
    cfg
}

/// A rotated journal's successor goes missing: FPRE023 naming it, nothing
/// changed.
#[test]
fn a_rotated_journal_whose_successor_is_missing_is_fpre023_and_changes_nothing() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let mut model = Model::new();
    let cfg = rotated_with_its_checkpoint_failed(dir, &mut model, |_, _| {}, 3);
    let store = Store::open(dir, cfg.clone()).unwrap();
    check(&store, &model);
    drop(store);
    std::fs::remove_file(dir.join("journal-00000000000000000002")).unwrap();
    let err = refused(dir, &cfg, "FPRE023");
    assert!(
        err.to_string().contains("journal-00000000000000000002"),
        "{err}"
    );
}

/// A rotated journal that a journal holding records follows lost its end:
/// its marker and its last records, cut back to a frame boundary (as a file
/// that reverted to an earlier state would be). It is refused (FPRE021 naming
/// it) and nothing is changed: recovered as it stands, the store would open
/// without those records.
#[test]
fn a_rotated_journal_cut_back_to_a_frame_boundary_is_fpre021_and_changes_nothing() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let journal_1 = dir.join("journal-00000000000000000001");
    let mut model = Model::new();
    let mut earlier = Vec::new();
    let cfg = rotated_with_its_checkpoint_failed(
        dir,
        &mut model,
        |store, model| {
            for id in 0..4 {
                put(store, model, id, 1);
            }
            earlier = std::fs::read(&journal_1).unwrap();
        },
        3,
    );
    let whole = std::fs::read(&journal_1).unwrap();
    assert!(whole.len() > earlier.len(), "journal 1 grew after the copy");
    // Its frames parse whole: the copy ends at a frame boundary.
    frames(&earlier);
    std::fs::write(&journal_1, &earlier).unwrap();
    let err = refused(dir, &cfg, "FPRE021");
    let text = err.to_string();
    assert!(
        text.contains("journal-00000000000000000001")
            && text.contains("does not end with the marker"),
        "{err}"
    );
    // Restored, the store opens with every acknowledged write.
    std::fs::write(&journal_1, &whole).unwrap();
    let store = Store::open(dir, cfg).unwrap();
    check(&store, &model);
}

/// A rotation a crash stopped: journal 1 without its marker, journal 2 with its
/// header and a torn start frame, under a format-3 pointer. The reopen writes
/// journal 2 anew, appends journal 1's marker, then rewrites the pointer in
/// this format, where the disk is full: the reserve is released and the plan
/// resumes there. The power then fails at each journal sync in turn (or not at
/// all), and whatever it keeps, the next open finds every acknowledged write.
/// Run again from its start, the plan would cut journal 2 back after the
/// marker naming it was durable, and a cut there would leave FPRE023.
#[test]
fn a_reopen_on_a_full_disk_loses_nothing_whatever_a_power_cut_then_keeps() {
    const RESERVE: u64 = 64 << 10;
    let (mut full_then_cut, mut never_cut) = (0, 0);
    // The plan and the close sync journals about six times: 12 cuts cover each
    // of those syncs and some that never come.
    for nth in 1..=12 {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let mut model = Model::new();
        rotated_with_its_checkpoint_failed(dir, &mut model, |_, _| {}, 0);
        let journal = |n: u64| dir.join(format!("journal-{n:020}"));
        let j1 = std::fs::read(journal(1)).unwrap();
        let marker = *frames(&j1).last().unwrap();
        assert_eq!(
            (marker.len, j1[marker.payload()]),
            (9, ROTATED_TAG),
            "journal 1 ends with its marker"
        );
        std::fs::write(journal(1), &j1[..marker.at]).unwrap();
        let j2 = std::fs::read(journal(2)).unwrap();
        std::fs::write(journal(2), &j2[..HEADER + 5]).unwrap();
        let current = dir.join("CURRENT");
        let mut pointer = std::fs::read(&current).unwrap();
        pointer[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32c::crc32c(&pointer[..20]);
        pointer[20..24].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&current, &pointer).unwrap();
        std::fs::write(dir.join("RESERVE"), vec![0u8; RESERVE as usize]).unwrap();
        // The same store, now with a reserve to release.
        let cfg = rotating(RESERVE);
        let fs = FaultFs::new(
            dir,
            u64::MAX,
            Faults {
                enospc: Some(WriteFault {
                    target: Target::CheckpointOrPointer,
                    nth: 1,
                    short: true,
                }),
                cut_at_sync: Some((Target::Journal, nth)),
                ..Faults::default()
            },
        );
        match Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()) {
            Ok(store) => {
                check(&store, &model);
                drop(store);
            }
            Err(e) => assert!(fs.is_cut(), "cut at journal sync {nth}: {e}"),
        }
        // A cut before the pointer's write stops the plan before it.
        let full = fs.fired().is_some_and(|f| f.contains("CURRENT"));
        full_then_cut += u32::from(full && fs.is_cut());
        never_cut += u32::from(!fs.is_cut());
        fs.cut(&mut Rng::new(nth), Cut::AnySubset);
        let store =
            Store::open(dir, cfg).unwrap_or_else(|e| panic!("cut at journal sync {nth}: {e}"));
        check(&store, &model);
    }
    assert!(
        full_then_cut > 0 && never_cut > 0,
        "{full_then_cut} cuts after the full disk, {never_cut} runs without a cut"
    );
}

// ---------------------------------------------------------------------------
// 5. Damage to the end of a cleanly closed journal.
// ---------------------------------------------------------------------------

/// A closed store whose last operation was a delete: the journal ends with the
/// delete's record and the close marker.
fn closed_after_delete(dir: &Path, cfg: &StoreConfig) -> Model {
    let store = Store::open(dir, cfg.clone()).unwrap();
    let mut model = Model::new();
    for id in 0..6 {
        put(&store, &mut model, id, 1);
    }
    store.delete(ExtentId(2)).unwrap();
    model.insert(2, None);
    store.close().unwrap();
    model
}

/// One flipped byte in the last record (the delete's) before the close marker:
/// the marker was written after that record was durable, so this is corruption,
/// FPRE021, never a tail to drop (dropping it would bring the deleted extent
/// back).
#[test]
fn damage_to_the_last_record_before_the_close_marker_is_fpre021_and_changes_nothing() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = config(1, 64 << 20);
    closed_after_delete(dir, &cfg);
    let journal = newest_journal(dir);
    let mut bytes = std::fs::read(&journal).unwrap();
    let all = frames(&bytes);
    let (last_record, close) = (all[all.len() - 2], all[all.len() - 1]);
    assert_eq!((close.len, bytes[close.payload()]), (1, CLOSED_TAG));
    assert_eq!(last_record.len, 44);
    bytes[last_record.payload() + 20] ^= 0x40;
    std::fs::write(&journal, &bytes).unwrap();
    let err = refused(dir, &cfg, "FPRE021");
    assert!(err.to_string().contains("journal-"), "{err}");
}

/// One flipped byte in the close marker itself: nothing follows it, so it is a
/// torn tail: the store opens, drops the marker (kept as evidence), reports no
/// clean close, and loses nothing acknowledged: the delete stays deleted.
#[test]
fn damage_to_the_close_marker_is_a_torn_tail_and_the_delete_stays() {
    for byte in [0, 4, FRAME_HEAD] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let cfg = config(1, 64 << 20);
        let model = closed_after_delete(dir, &cfg);
        let journal = newest_journal(dir);
        let mut bytes = std::fs::read(&journal).unwrap();
        let close = *frames(&bytes).last().unwrap();
        assert_eq!((close.len, bytes[close.payload()]), (1, CLOSED_TAG));
        bytes[close.at + byte] ^= 0x10;
        std::fs::write(&journal, &bytes).unwrap();
        let store = Store::open(dir, cfg.clone())
            .unwrap_or_else(|e| panic!("byte {byte} of the close marker: {e}"));
        let report = store.recovery().unwrap();
        assert!(
            report.torn_tail_dropped && !report.clean_close,
            "{report:?}"
        );
        assert_eq!(report.dropped_bytes, (FRAME_HEAD + 1) as u64);
        let evidence = std::fs::read(dir.join(report.dropped_file.clone().unwrap())).unwrap();
        // The marker, without the zeros of the journal's allocated space after it.
        assert!(
            evidence == bytes[close.at..close.end()],
            "the dropped marker is kept"
        );
        check(&store, &model);
        assert_eq!(state(&store, 2), None, "the delete stays deleted");
        drop(store);
        let store = Store::open(dir, cfg.clone()).unwrap();
        assert!(store.recovery().unwrap().clean_close);
        check(&store, &model);
    }
}

// ---------------------------------------------------------------------------
// 7. close() releases the directory at once.
// ---------------------------------------------------------------------------

/// `close()` on a store still shared behind an `Arc`: a new `Store::open` of the
/// directory succeeds at once, the old value answers FPRE017 to everything, and
/// dropping it later touches no file of the new store (no second close marker,
/// no lock release).
#[test]
fn close_releases_the_lock_at_once_while_an_arc_of_the_store_lives() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = config(2, 64 << 20);
    let mut model = Model::new();
    let store = Arc::new(Store::open(dir, cfg.clone()).unwrap());
    for id in 0..5 {
        put(&store, &mut model, id, 1);
    }
    let held = Arc::clone(&store);
    store.close().unwrap();
    let reopened = Store::open(dir, cfg.clone())
        .unwrap_or_else(|e| panic!("open after close, with the closed store alive: {e}"));
    assert!(reopened.recovery().unwrap().clean_close);
    check(&reopened, &model);
    let old: &Store = &held;
    let codes = [
        old.read(ExtentId(1)).map(|_| ()).unwrap_err().code(),
        old.write(ExtentId(1), &val(1, 9))
            .map(|_| ())
            .unwrap_err()
            .code(),
        old.delete(ExtentId(1)).map(|_| ()).unwrap_err().code(),
        old.compact(ExtentId(1)).map(|_| ()).unwrap_err().code(),
        old.write_batch(&[(ExtentId(7), &val(7, 9)[..])])
            .map(|_| ())
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, ["FPRE017"; 5]);
    old.close().unwrap(); // idempotent
    put(&reopened, &mut model, 1, 2);
    let before = files(dir);
    drop(store);
    drop(held);
    assert_eq!(
        files(dir),
        before,
        "dropping the closed store touched no file"
    );
    assert_eq!(
        Store::open(dir, cfg.clone())
            .map(|_| ())
            .unwrap_err()
            .code(),
        "FPRE026",
        "the new store still holds the lock"
    );
    put(&reopened, &mut model, 6, 1);
    drop(reopened);
    let store = Store::open(dir, cfg).unwrap();
    assert!(store.recovery().unwrap().clean_close);
    check(&store, &model);
}

/// Holds the first sync of journal 2 (the switch to a new journal) until the
/// test releases it.
#[derive(Debug, Default)]
struct HoldSwitch {
    /// (held, released)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl HoldSwitch {
    fn wait(&self, what: &str, ready: impl Fn(&(bool, bool)) -> bool) {
        let mut st = self.state.lock().unwrap();
        while !ready(&st) {
            let (next, timeout) = (self.changed)
                .wait_timeout(st, Duration::from_secs(60))
                .unwrap();
            st = next;
            assert!(!timeout.timed_out() || ready(&st), "never {what}");
        }
    }
    fn update(&self, f: impl FnOnce(&mut (bool, bool))) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }
}

impl Hook for HoldSwitch {
    fn before_sync(&self, file: &str) -> SyncVerdict {
        if file == format!("journal-{:020}", 2) && !self.state.lock().unwrap().0 {
            self.update(|s| s.0 = true);
            self.wait("released", |s| s.1);
        }
        SyncVerdict::Normal
    }
}

/// A writer's group commit is the switch to a new journal, and another thread
/// closes the store meanwhile: once the switch ends the checkpointer may have
/// stopped, so `close` writes the checkpoint itself. The close returns, the
/// write is acknowledged, and a reopen reads every acknowledged value. (The
/// pause before the release only decides whether the switch ends before or
/// after the checkpointer stopped; both must close.)
#[test]
fn a_close_during_the_switch_to_a_new_journal_writes_its_checkpoint_and_returns() {
    for pause_ms in [0, 200] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let fs = FaultFs::new(dir, u64::MAX, Faults::default());
        let hold = Arc::new(HoldSwitch::default());
        fs.set_hook(Arc::clone(&hold) as Arc<dyn Hook>);
        let cfg = config(1, 4096);
        let store = Arc::new(Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap());
        let writer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut model = Model::new();
                for n in 0u64.. {
                    let (id, generation) = (n % 10, n / 10 + 1);
                    match store.write(ExtentId(id), &val(id, generation)) {
                        Ok(_) => model.insert(id, Some(generation)),
                        Err(Error::Shutdown) => return (model, None),
                        // Refused by the closed journal after the close's
                        // checkpoint read its proposal: there, or not.
                        Err(e) if e.code() == "FPRE028" => return (model, Some((id, generation))),
                        Err(e) => panic!("write {n}: {e}"),
                    };
                }
                unreachable!()
            })
        };
        hold.wait("held at the switch", |s| s.0);
        let (done, closed) = std::sync::mpsc::channel();
        let closer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let result = store.close();
                let _ = done.send(());
                result
            })
        };
        std::thread::sleep(Duration::from_millis(pause_ms));
        hold.update(|s| s.1 = true);
        closed
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("pause {pause_ms} ms: close never returned"));
        closer.join().unwrap().unwrap();
        let (model, unknown) = writer.join().unwrap();
        assert!(!model.is_empty());
        // The rotation ended with its checkpoint: the pointer names it and
        // the journal it replaces is gone.
        let pointer = fs.live("CURRENT").unwrap();
        let named = u64::from_le_bytes(pointer[12..20].try_into().unwrap());
        assert!(
            named >= 2,
            "pause {pause_ms} ms: CURRENT names checkpoint {named}"
        );
        assert!(
            fs.live(&format!("journal-{:020}", 1)).is_none(),
            "pause {pause_ms} ms: journal 1 was not removed"
        );
        drop(store);
        let store = Store::open_in(Arc::new(fs.clone()), dir, cfg).unwrap();
        assert!(store.stats().journal_number >= 2, "the switch happened");
        for (&id, &generation) in &model {
            let (got, read) = decode(&store.read(ExtentId(id)).unwrap());
            assert_eq!(got, ExtentId(id));
            let maybe = unknown.filter(|&(u, _)| u == id).map(|(_, g)| g);
            assert!(
                read == generation.unwrap() || Some(read) == maybe,
                "pause {pause_ms} ms: extent {id} reads {read}, acknowledged {generation:?}, \
                 unknown {maybe:?}"
            );
        }
    }
}

/// Panics in the first sync of a file `target` matches once armed: a file
/// system an engine supplied that panics.
#[derive(Debug)]
struct PanicInSync {
    target: Target,
    armed: AtomicBool,
}

impl Hook for PanicInSync {
    fn before_sync(&self, file: &str) -> SyncVerdict {
        // SeqCst: a flag the test thread sets and one store thread takes;
        // it orders nothing else. The swap lets only one sync panic.
        if self.target.matches(file) && self.armed.swap(false, Ordering::SeqCst) {
            panic!("injected: the file system panicked in a sync of {file}");
        }
        SyncVerdict::Normal
    }
}

/// A panic in the file system is a failed sync: the write whose sync
/// panicked ends with an error (its outcome unknown when its record had gone
/// to the journal), later writes fail instead of waiting forever, `close`
/// returns, and a reopen holds every acknowledged value and the unknown write
/// wholly or not at all. Once in a journal sync, once in a device file's sync
/// (a write past the inline bound).
#[test]
fn a_panic_in_the_file_system_fails_the_sync_and_nothing_waits_forever() {
    for target in [Target::Journal, Target::Device] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let fs = FaultFs::new(dir, u64::MAX, Faults::default());
        let hook = Arc::new(PanicInSync {
            target,
            armed: AtomicBool::new(false),
        });
        fs.set_hook(Arc::clone(&hook) as Arc<dyn Hook>);
        let cfg = builder(1, 64 << 20).inline_write_max(0).build().unwrap();
        let store = Arc::new(Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap());
        let mut model = Model::new();
        for id in 0..5 {
            store.write(ExtentId(id), &val(id, 1)).unwrap();
            model.insert(id, Some(1));
        }
        // SeqCst: pairs with the hook's swap (see `PanicInSync`).
        hook.armed.store(true, Ordering::SeqCst);
        let (done, finished) = std::sync::mpsc::channel();
        let worker = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let panicked = store.write(ExtentId(0), &val(0, 2));
                let later = store.write(ExtentId(1), &val(1, 2));
                let closed = store.close();
                let _ = done.send(());
                (panicked, later, closed)
            })
        };
        finished
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{target:?}: a write or the close never returned"));
        let (panicked, later, _closed) = worker.join().unwrap();
        let err = panicked.expect_err("the write whose sync panicked fails");
        if target == Target::Journal {
            // Its own group commit's sync (outcome unknown), or one the
            // flusher ran just before for the earlier writes' `Synced`
            // markers (the journal failed first: certainly not done).
            let flusher_first = err.code() == "FPRE009" && err.to_string().contains("panicked");
            assert!(
                err.code() == "FPRE028" || flusher_first,
                "{target:?}: {err}"
            );
        }
        assert!(later.is_err(), "{target:?}: a write after the failed sync");
        drop(store);
        let store = Store::open_in(Arc::new(fs.clone()), dir, cfg).unwrap();
        for (&id, &generation) in &model {
            let got = decode(&store.read(ExtentId(id)).unwrap());
            match id {
                0 => assert!(
                    got == (ExtentId(0), 1) || got == (ExtentId(0), 2),
                    "{target:?}: extent 0 reads {got:?}"
                ),
                _ => assert_eq!(got, (ExtentId(id), generation.unwrap()), "{target:?}"),
            }
        }
    }
}

/// Between an open's listing of the directory and its lock, another store
/// (another process, in life) opens the directory, rotates its journal and
/// closes: once, the first time the hook runs.
#[derive(Debug)]
struct RotateBeforeLock {
    fs: FaultFs,
    config: StoreConfig,
    fired: AtomicBool,
}

impl Hook for RotateBeforeLock {
    fn before_lock(&self, _file: &str) {
        // SeqCst: only the first lock runs the other store (its own open
        // locks too); the swap decides which, and orders nothing else.
        if self.fired.swap(true, Ordering::SeqCst) {
            return;
        }
        let other = Store::open_in(
            Arc::new(self.fs.clone()),
            self.fs.dir(),
            self.config.clone(),
        )
        .unwrap();
        let number = other.stats().journal_number;
        for n in 0..60 {
            other
                .write(ExtentId(n % 6), &val(n % 6, 10 + n / 6))
                .unwrap();
        }
        assert!(other.stats().journal_number > number, "it rotated");
        other.close().unwrap();
    }
}

/// An open reads the directory's names again once it holds the lock: the
/// store that changed the directory in between (rotated: new journals and a
/// new checkpoint, the old ones removed) opens whole, not refused for the
/// files it no longer has.
#[test]
fn an_open_lists_the_directory_again_under_its_lock() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let cfg = config(1, 4096);
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
    for id in 0..6 {
        store.write(ExtentId(id), &val(id, 1)).unwrap();
    }
    store.close().unwrap();
    drop(store);
    fs.set_hook(Arc::new(RotateBeforeLock {
        fs: fs.clone(),
        config: cfg.clone(),
        fired: AtomicBool::new(false),
    }));
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg).unwrap();
    for id in 0..6 {
        let got = decode(&store.read(ExtentId(id)).unwrap());
        assert_eq!(got, (ExtentId(id), 10 + (54 + id) / 6), "extent {id}");
    }
}

/// A failed sync of a device degrades that device until the reopen only (its
/// file is opened afresh then): a checkpoint a rotation writes meanwhile must
/// not keep the degradation, which nothing would ever lift after it.
#[test]
fn a_failed_device_sync_degrades_the_device_until_the_reopen_only() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let cfg = builder(2, 4 << 10)
        .inline_write_max(0)
        .overlap_data_sync(false)
        .build()
        .unwrap();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
    let mut acked = Model::new();
    fs.set_faults(Faults {
        sync_eio: Some(SyncFault {
            target: Target::Device,
            nth: 1,
            drop_pages: false,
        }),
        ..Faults::default()
    });
    let failed = store.write(ExtentId(0), &val(0, 1)).unwrap_err();
    let degraded = store.stats().devices_degraded;
    assert_eq!(degraded.len(), 1, "{failed}: {degraded:?}");
    // Writes go on on the other device, through rotations and checkpoints.
    let checkpoints = store.stats().checkpoints;
    for id in 1..200 {
        put(&store, &mut acked, id, 1);
    }
    let stats = store.stats();
    assert!(stats.checkpoints > checkpoints, "{stats:?}");
    store.close().unwrap();
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg).unwrap();
    assert_eq!(store.stats().devices_degraded, Vec::<u16>::new());
    for (&id, &generation) in &acked {
        assert_eq!(state(&store, id), generation);
    }
}

/// Fails the next write of a device file once armed. SeqCst: a switch the
/// test sets and the store's threads read, ordered with nothing else.
#[derive(Debug, Default)]
struct FailNextDeviceWrite(AtomicBool);

impl Hook for FailNextDeviceWrite {
    fn fail_write(&self, file: &str) -> bool {
        is_device(file) && self.0.swap(false, Ordering::SeqCst)
    }
}

/// A write whose data write fails with EIO marks its location bad, and the
/// mark reaches the journal with its next append: the close marker's, or the
/// flusher's (overlapped writes on) or a later write's (off): reopened, the
/// store still keeps that location out of use, and a write after the
/// failure, before and after the reopen, goes elsewhere.
#[test]
fn a_failed_data_write_s_bad_mark_survives_a_reopen() {
    for (overlap, write_after) in [(true, false), (false, false), (false, true)] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let cfg = builder(1, 1 << 20)
            .overlap_data_sync(overlap)
            .build()
            .unwrap();
        let fs = FaultFs::new(dir, u64::MAX, Faults::default());
        let hook = Arc::new(FailNextDeviceWrite::default());
        fs.set_hook(hook.clone());
        failed_write_then_reopen(&fs, &hook, &cfg, write_after);
    }
}

/// One case of [`a_failed_data_write_s_bad_mark_survives_a_reopen`].
fn failed_write_then_reopen(
    fs: &FaultFs,
    hook: &FailNextDeviceWrite,
    cfg: &StoreConfig,
    write_after: bool,
) {
    let dir = fs.dir();
    let big = |id: u64| value(ExtentId(id), 1, 40 << 10);
    let bad = {
        let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
        hook.0.store(true, Ordering::SeqCst);
        let err = store.write(ExtentId(1), &big(1)).unwrap_err();
        assert_eq!(err.code(), "FPRE009", "{err}");
        let bad = store.space()[0].bad_bytes;
        assert!(bad >= 40 << 10, "{:?}", store.space());
        if write_after {
            let next = store.write(ExtentId(2), &big(2)).unwrap();
            assert_ne!(next.location().offset, 0, "not the failed location");
        }
        store.close().unwrap();
        bad
    };
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
    assert_eq!(
        store.space()[0].bad_bytes,
        bad,
        "the mark survived the reopen"
    );
    let again = store.write(ExtentId(1), &big(1)).unwrap();
    assert_ne!(again.location().offset, 0, "not the failed location");
    if write_after {
        assert_eq!(decode(&store.read(ExtentId(2)).unwrap()), (ExtentId(2), 1));
    }
}

/// A drain whose last move meets the journal's failure (the move's outcome
/// unknown, FPRE028) reports the failed journal (FPRE036), as the next move
/// would have, not an incomplete drain to retry (FPRE037).
#[test]
fn a_drain_whose_last_move_fails_the_journal_reports_the_journal() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let store = Store::open_in(Arc::new(fs.clone()), dir, config(2, 1 << 20)).unwrap();
    let written = store.write(ExtentId(1), &val(1, 1)).unwrap();
    fs.set_faults(Faults {
        sync_eio: Some(SyncFault {
            target: Target::Journal,
            nth: 1,
            drop_pages: true,
        }),
        ..Faults::default()
    });
    let err = store.drain(written.location().device).unwrap_err();
    assert_eq!(err.code(), "FPRE036", "{err}");
}
