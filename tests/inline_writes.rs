//! One-sync durable writes on real files: a write of at most `inline_write_max`
//! bytes travels in its journal record, its data is written to its location
//! unsynced, and the next checkpoint (or `close`) syncs the devices before the
//! journal holding the only durable copy goes. Each test builds one fault with
//! the fault-injecting file system (`tests/common/fault_fs.rs`):
//!
//! * a power cut that loses every unsynced device byte: recovery writes the data
//!   back from the journal;
//! * a power cut inside a rotation's write-back (the device sync before the
//!   checkpoint), with unsynced sectors persisted in any subset;
//! * a failed write-back sync that drops the device's dirty pages: reads stay
//!   right (the store writes the held bytes again), the checkpoint is not taken,
//!   and a reopen finds everything; reads that meet the dropped pages before the
//!   store has written them again put them back themselves;
//! * a clean close syncs the devices, so the next open writes nothing back.
//!
//! Values encode their extent and generation (`tests/common`).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::fault_fs::{self, Cut, FaultFs, Faults, Hook, Rng, SyncFault, SyncVerdict, Target};
use common::{decode, value};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};

const DEVICE: &str = "dev0000.extents";

fn config(journal_max_bytes: u64) -> StoreConfig {
    StoreConfig::builder()
        .devices(1)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(journal_max_bytes)
        .metadata_reserve_bytes(16 << 10)
        .build()
        .unwrap()
}

/// 200..1200 bytes: inline under the default bound.
fn val(id: u64, generation: u64) -> Vec<u8> {
    value(
        ExtentId(id),
        generation,
        200 + ((id * 37 + generation * 11) % 1000) as usize,
    )
}

/// Extent → the generation its acknowledged value encodes.
type Model = BTreeMap<u64, u64>;

fn put(store: &Store, model: &mut Model, id: u64, generation: u64) {
    store.write(ExtentId(id), &val(id, generation)).unwrap();
    model.insert(id, generation);
}

/// Every modelled extent reads back exactly its acknowledged value.
fn check(store: &Store, model: &Model) {
    let len = |id, generation| val(id, generation).len();
    common::check_values(store, model.iter().map(|(&i, &g)| (i, g)), len);
}

/// The fault-injecting file system over `dir`, with `faults` armed.
fn faulty(dir: &std::path::Path, faults: Faults) -> FaultFs {
    FaultFs::new(dir, u64::MAX, faults)
}

/// The fault-injecting file system over `dir`: the first sync of the device
/// file fails with EIO and drops the pages written since the last one.
fn first_device_sync_drops_pages(dir: &std::path::Path) -> FaultFs {
    let eio = SyncFault {
        target: Target::Device,
        nth: 1,
        drop_pages: true,
    };
    faulty(
        dir,
        Faults {
            sync_eio: Some(eio),
            ..Faults::default()
        },
    )
}

/// Whether `hay` holds the value of (`id`, `generation`).
fn holds(hay: &[u8], id: u64, generation: u64) -> bool {
    let v = val(id, generation);
    hay.windows(v.len()).any(|w| w == v.as_slice())
}

/// The power fails now: every later file operation fails; `drop` the store,
/// then the unsynced bytes are lost as `cut` says.
fn power_fails(fs: &FaultFs, store: Store, cut: Cut, seed: u64) {
    fs.restart(fs.ops());
    drop(store);
    fs.cut(&mut Rng::new(seed), cut);
}

#[test]
fn an_inline_write_survives_a_power_cut_that_loses_its_unsynced_data() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let store = Store::open_in(Arc::new(fs.clone()), dir, config(64 << 20)).unwrap();
    let mut model = Model::new();
    for id in 0..12 {
        put(&store, &mut model, id, 1);
    }
    put(&store, &mut model, 3, 2);
    let stats = store.stats();
    // Every write waits for write-back, but the one extent 3's second write
    // replaced: its location went back to the allocator.
    assert_eq!(stats.inline_unsynced, 12);
    assert_eq!(stats.journal_syncs, 13, "one sync per write (one thread)");
    // Written to the device, not synced there.
    assert!(holds(&fs.live(DEVICE).unwrap(), 3, 2));
    assert!(!holds(&fs.synced(DEVICE).unwrap_or_default(), 3, 2));
    power_fails(&fs, store, Cut::Synced, 1);
    assert!(
        !holds(&std::fs::read(dir.join(DEVICE)).unwrap_or_default(), 3, 2),
        "the power cut took the unsynced data"
    );
    let store = Store::open(dir, config(64 << 20)).unwrap();
    check(&store, &model);
    let report = store.recovery().unwrap();
    assert!(!report.clean_close);
    // One per extent: the newest inline record of each.
    assert_eq!(report.inline_written_back, 12, "{report:?}");
    drop(store);
    // Written back and synced: the device holds every value now.
    let device = std::fs::read(dir.join(DEVICE)).unwrap();
    for (&id, &generation) in &model {
        assert!(holds(&device, id, generation), "extent {id}");
    }
}

#[test]
fn a_power_cut_inside_a_rotations_write_back_loses_nothing_acknowledged() {
    for (seed, nth) in [(1, 1), (2, 2), (3, 3)] {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        // The power fails at the `nth` device sync: all writes are inline, so
        // device syncs are the write-backs of rotations (4 KiB journals).
        let faults = Faults {
            cut_at_sync: Some((Target::Device, nth)),
            ..Faults::default()
        };
        let fs = faulty(dir, faults);
        let cfg = config(4096);
        let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
        let mut model = Model::new();
        let mut n = 0;
        // Bounded: a rotation every few writes.
        while !fs.is_cut() {
            let (id, generation) = (n % 10, n / 10 + 1);
            if store.write(ExtentId(id), &val(id, generation)).is_ok() {
                model.insert(id, generation);
            }
            n += 1;
            assert!(n < 2_000, "no write-back sync");
        }
        drop(store);
        fs.cut(&mut Rng::new(seed), Cut::AnySubset);
        let store = Store::open(dir, cfg.clone()).unwrap();
        // Acknowledged values, or (for the write the cut stopped) the next one.
        for (&id, &generation) in &model {
            let got = decode(&store.read(ExtentId(id)).unwrap());
            assert!(
                got == (ExtentId(id), generation) || got == (ExtentId(id), generation + 1),
                "seed {seed}: extent {id}: {got:?}, acknowledged {generation}"
            );
        }
    }
}

#[test]
fn a_failed_write_back_sync_that_dropped_pages_keeps_reads_right_and_loses_nothing() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = first_device_sync_drops_pages(dir);
    let cfg = config(4096);
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
    let mut model = Model::new();
    let pointer = || std::fs::read(dir.join("CURRENT")).unwrap();
    let before = pointer();
    let mut n = 0;
    // Bounded: the first rotation's write-back syncs the device. The
    // checkpointer runs it beside the writes: one that follows the failure
    // finds the device refusing writes (FPRE009, certainly not done).
    while fs.fired().is_none() {
        let (id, generation) = (n % 10, n / 10 + 1);
        match store.write(ExtentId(id), &val(id, generation)) {
            Ok(_) => {
                model.insert(id, generation);
            }
            Err(e) => {
                assert!(fs.fired().is_some() && e.code() == "FPRE009", "{e}");
                break;
            }
        }
        n += 1;
        assert!(n < 2_000, "no write-back sync");
    }
    assert!(fs.fired().unwrap().contains(DEVICE), "{:?}", fs.fired());
    // The file system failed the sync; the store hears of it when the sync
    // returns to the checkpointer, which writes the held writes again and
    // ends the rotation. Bounded: the failed checkpoint ends.
    while store.stats().checkpoint_pending {
        std::thread::yield_now();
    }
    // The pages were dropped, and written again: every read is right, none is a
    // checksum failure or FPRE004, whether the device's rewrite ran before the
    // read or the read found the dropped bytes and wrote them again itself.
    // The writes had returned, so their bytes came back from their journal
    // records.
    check(&store, &model);
    assert_eq!(store.stats().read_ok, model.len() as u64);
    assert!(store.stats().inline_read_back > 0, "{:?}", store.stats());
    assert_eq!(store.stats().quarantines, 0, "{:?}", store.stats());
    // The checkpoint was not taken: the journals holding the data stay.
    assert_eq!(pointer(), before, "no checkpoint over a failed write-back");
    // The device refuses writes until a reopen (its sync failed); a clean close
    // cannot vouch for its data either.
    assert_eq!(
        store.write(ExtentId(0), &val(0, 900)).unwrap_err().code(),
        "FPRE038"
    );
    assert!(store.close().is_err(), "close cannot sync the device");
    drop(store);
    let store = Store::open(dir, cfg).unwrap();
    assert!(!store.recovery().unwrap().clean_close);
    check(&store, &model);
}

/// Holds the first failed sync of the device file, after the file system
/// dropped its pages and before the store hears of it, until the test says;
/// and stops the test's writer as that sync begins, so that only the write in
/// flight then can land after the pages are gone.
#[derive(Debug, Default)]
struct HoldFailedSync {
    state: Mutex<Hold>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Hold {
    /// A sync of the device began.
    syncing: bool,
    /// It failed and is held.
    held: bool,
    /// The test let it go.
    released: bool,
    /// A sync of the device succeeded (the fault did not fire: the test
    /// fails, and the writer must not wait for a hold that never comes).
    synced_ok: bool,
}

impl Hook for HoldFailedSync {
    /// Another sync of the device (a repair's, say) would wait for the held
    /// one's verdict: let the held one go, so that the test fails instead of
    /// hanging.
    fn before_sync(&self, file: &str) -> SyncVerdict {
        if file == DEVICE {
            let mut state = self.state.lock().unwrap();
            state.released |= state.held;
            state.syncing = true;
            self.changed.notify_all();
        }
        SyncVerdict::Normal
    }

    fn after_sync(&self, file: &str, failed: bool) {
        let mut state = self.state.lock().unwrap();
        if file == DEVICE && !failed && !state.held {
            state.synced_ok = true;
            self.changed.notify_all();
        }
        if !failed || file != DEVICE || state.held {
            return;
        }
        state.held = true;
        self.changed.notify_all();
        // Bounded: the test releases it once its reads are done.
        while !state.released {
            state = self.changed.wait(state).unwrap();
        }
    }
}

impl HoldFailedSync {
    fn held(&self) -> bool {
        self.state.lock().unwrap().held
    }

    /// Whether a sync of the device succeeded before any failed.
    fn synced_ok(&self) -> bool {
        self.state.lock().unwrap().synced_ok
    }

    /// Whether the writer stops: a sync of the device began. It returns once
    /// that sync failed and is held, or succeeded (bounded: every sync ends).
    fn writer_stops(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        if !state.syncing {
            return false;
        }
        while !state.held && !state.released && !state.synced_ok {
            state = self.changed.wait(state).unwrap();
        }
        true
    }

    fn release(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.released = true;
        }
        self.changed.notify_all();
    }
}

/// Sends on its channel when dropped: when the thread holding it ends, by
/// returning or by a panic.
struct SendOnDrop(std::sync::mpsc::Sender<()>);

impl Drop for SendOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Releases the held sync when dropped, so a failing check (a panic) ends the
/// test instead of leaving the store's checkpointer held for ever.
struct Release(Arc<HoldFailedSync>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[test]
fn a_read_that_meets_dropped_pages_before_their_rewrite_puts_them_back() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = first_device_sync_drops_pages(dir);
    let hold = Arc::new(HoldFailedSync::default());
    fs.set_hook(Arc::clone(&hold) as Arc<dyn Hook>);
    let store = Store::open_in(Arc::new(fs.clone()), dir, config(4096)).unwrap();
    // Declared after the store: a panic drops it first, before the store
    // waits for its checkpointer.
    let release = Release(Arc::clone(&hold));
    // (acknowledged values, the extent of the write in flight). A writer
    // thread, not this one: once the hook holds the rotation's checkpoint,
    // the new journal fills to twice its bound and holds group commits back
    // until the checkpoint ends, and this thread must be free to read.
    let state = Mutex::new((Model::new(), None::<u64>));
    std::thread::scope(|s| {
        // A failing check unwinds through this closure, and the scope then
        // waits for the writer, which may wait for the held rotation: let it go.
        let _release = Release(Arc::clone(&hold));
        let writer = s.spawn(|| {
            // Bounded: the first rotation's write-back syncs the device, and
            // the hook holds that failed sync.
            for n in 0..2_000 {
                if hold.writer_stops() {
                    return;
                }
                let (id, generation) = (n % 10, n / 10 + 1);
                state.lock().unwrap().1 = Some(id);
                let result = store.write(ExtentId(id), &val(id, generation));
                let mut g = state.lock().unwrap();
                g.1 = None;
                match result {
                    Ok(_) => {
                        g.0.insert(id, generation);
                    }
                    Err(e) => {
                        // The device refuses writes once its sync failed.
                        assert!(fs.fired().is_some() && e.code() == "FPRE009", "{e}");
                        return;
                    }
                }
            }
            panic!("no write-back sync");
        });
        // Bounded: the writer stops at the hold, or fails.
        while !hold.held() {
            assert!(!writer.is_finished(), "the writer ended before the hold");
            assert!(!hold.synced_ok(), "the device's first sync did not fail");
            std::thread::yield_now();
        }
        // The device's pages are gone and the store has not written them
        // again: each read finds its bytes wrong, writes them again from the
        // journal record, and reads them right. No FPRE004, no quarantine. The
        // write in flight, if any, is left out: it may be acknowledged or not.
        let (model, in_flight) = state.lock().unwrap().clone();
        let settled: Model = (model.into_iter())
            .filter(|(id, _)| Some(*id) != in_flight)
            .collect();
        // A store that took the dropped bytes for damage would quarantine, and
        // its repair would wait for the held sync (a journal commit held
        // behind the rotation): if the reads make no progress, the sync is let
        // go, and the assertions below decide.
        let (done, progress) = std::sync::mpsc::channel::<()>();
        let (store, reads) = (&store, settled.clone());
        let reader = s.spawn(move || {
            // Sent when the reads end, a failed one (a panic) included.
            let _done = SendOnDrop(done);
            check(store, &reads);
        });
        if progress
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_err()
        {
            hold.release();
        }
        assert!(reader.join().is_ok(), "a read failed (above)");
        let stats = store.stats();
        assert_eq!(stats.read_ok, settled.len() as u64, "{stats:?}");
        assert_eq!((stats.fpre004, stats.quarantines), (0, 0), "{stats:?}");
        assert!(stats.inline_read_back > 0, "{stats:?}");
        hold.release();
    });
    drop(release);
    let model = state.into_inner().unwrap().0;
    check(&store, &model);
    drop(store);
    let store = Store::open(dir, config(4096)).unwrap();
    check(&store, &model);
}

#[test]
fn a_clean_close_syncs_the_devices_and_the_next_open_writes_nothing_back() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let cfg = config(64 << 20);
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
    let mut model = Model::new();
    for id in 0..8 {
        put(&store, &mut model, id, 1);
    }
    store.close().unwrap();
    drop(store);
    // Synced by the close: a power cut now loses none of the device's bytes.
    let synced = fs.synced(DEVICE).unwrap();
    for (&id, &generation) in &model {
        assert!(holds(&synced, id, generation), "extent {id}");
    }
    fs.cut(&mut Rng::new(4), Cut::Synced);
    let store = Store::open(dir, cfg).unwrap();
    let report = store.recovery().unwrap();
    assert!(report.clean_close);
    assert_eq!(report.inline_written_back, 0, "{report:?}");
    check(&store, &model);
    assert_eq!(store.stats().inline_unsynced, 0);
}
