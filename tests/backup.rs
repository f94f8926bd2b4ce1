//! `Store::checkpoint_to`: a copy of an open store as of one instant, while
//! writes go on. The copy opens as a store holding every write acknowledged
//! before the backup began, each extent as of that instant and every batch
//! whole (values and tags encode extent and generation, so a torn or mixed copy
//! cannot pass); a backup cut short by a kill is refused, and the store it came
//! from is intact.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::{decode, tag, value};
use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Held by each test that opens a store in this process for its whole run:
/// the kill test's child, forked while another test held a store's lock,
/// would share that `flock` until it exec'd, and that test's next open could
/// find its own directory locked.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn config() -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .cache_bytes(1 << 20)
        .prefetch_workers(0)
        // Small: rotations run during the backups.
        .journal_max_bytes(16 << 10)
        .build()
        .unwrap()
}

/// Values around the inline bound, so both kinds of write are copied.
fn len_of(id: u64, generation: u64) -> usize {
    500 + ((id * 977 + generation * 331) % 60_000) as usize
}

fn put(store: &Store, id: u64, generation: u64) {
    let e = ExtentId(id);
    store
        .write_tagged(
            e,
            &value(e, generation, len_of(id, generation)),
            tag(e, generation),
        )
        .unwrap();
}

/// The generation `id` holds in `store`, its bytes and tag checked.
fn generation_of(store: &Store, id: u64) -> u64 {
    let bytes = store.read(ExtentId(id)).unwrap();
    let (got, generation) = decode(&bytes);
    assert_eq!(got, ExtentId(id));
    assert_eq!(bytes.len(), len_of(id, generation), "extent {id}");
    let (_, t) = store.snapshot_tagged(ExtentId(id)).unwrap();
    assert_eq!(t, tag(ExtentId(id), generation), "extent {id}");
    generation
}

#[test]
fn a_backup_taken_under_writes_holds_each_extent_as_of_one_instant() {
    let _serial = serial();
    const IDS: u64 = 24;
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(tmp.path().join("live"), config()).unwrap());
    // Per extent: the last generation acknowledged, and the last issued.
    let acked: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    for id in 0..IDS {
        put(&store, id, 1);
        acked.lock().unwrap().insert(id, 1);
    }
    let issued = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (store, acked, issued, stop) = (
                Arc::clone(&store),
                Arc::clone(&acked),
                Arc::clone(&issued),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut n = 0u64;
                // Bounded by the stop flag, set after the backups.
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    // Each writer its own extents (even, odd): one extent's
                    // writes then commit in the order of their generations.
                    let id = (n * 2 + w) % IDS;
                    let generation = issued.fetch_add(1, Ordering::AcqRel) + 1;
                    // Generations of one extent grow: `acked` keeps the largest.
                    put(&store, id, generation);
                    let mut a = acked.lock().unwrap();
                    let g = a.entry(id).or_default();
                    *g = (*g).max(generation);
                    drop(a);
                    if n.is_multiple_of(16) {
                        let _ = store.compact(ExtentId(id));
                    }
                }
            })
        })
        .collect();
    // The writers are under way before the first backup; then at least three
    // backups, and on until one ran while a write was issued (the test is
    // about backups under writes: it must show one).
    common::wait_until(|| issued.load(Ordering::Acquire) > 2 * IDS);
    let mut overlapped = 0;
    for round in 0..30 {
        if round >= 3 && overlapped > 0 {
            break;
        }
        let before = acked.lock().unwrap().clone();
        let issued_before = issued.load(Ordering::Acquire);
        let dir = tmp.path().join(format!("backup-{round}"));
        let backup = store.checkpoint_to(&dir).unwrap();
        let issued_after = issued.load(Ordering::Acquire);
        overlapped += u32::from(issued_after > issued_before);
        assert!(
            backup.records >= IDS && backup.device_bytes > 0,
            "{backup:?}"
        );
        let copy = Store::open(&dir, config()).unwrap();
        for id in 0..IDS {
            let g = generation_of(&copy, id);
            assert!(
                g >= before[&id] && g <= issued_after,
                "round {round} extent {id}: generation {g}, acknowledged {} before the backup",
                before[&id]
            );
        }
    }
    stop.store(true, Ordering::Release);
    for w in writers {
        w.join().unwrap();
    }
    assert!(overlapped > 0, "no backup ran while a write was issued");
    // The live store is unchanged by its backups.
    let acked = acked.lock().unwrap();
    for id in 0..IDS {
        assert_eq!(generation_of(&store, id), acked[&id], "extent {id}");
    }
}

/// A backup is one instant of the store: a batch committing while it runs is
/// in it whole or not at all, and every batch acknowledged before it began is
/// in it. The batch's extents lie far apart among many, so the backup's read
/// of the records meets them at different times: without the cut a batch
/// committing between those reads would be in the copy in part.
#[test]
fn a_backup_holds_every_batch_whole_and_every_one_acknowledged_before_it() {
    let _serial = serial();
    const FILL: u64 = 20_000;
    const MEMBERS: [u64; 4] = [0, 6_667, 13_333, FILL - 1];
    let tmp = tempfile::tempdir().unwrap();
    let config = StoreConfig::builder()
        .devices(2)
        .cache_bytes(1 << 20)
        .prefetch_workers(0)
        .build()
        .unwrap();
    let store = Arc::new(Store::open(tmp.path().join("live"), config.clone()).unwrap());
    let items = |ids: std::ops::Range<u64>, generation: u64| -> Vec<(ExtentId, Vec<u8>)> {
        ids.map(|i| (ExtentId(i), value(ExtentId(i), generation, 64)))
            .collect()
    };
    for start in (0..FILL).step_by(1_000) {
        let chunk = items(start..start + 1_000, 1);
        let refs: Vec<_> = chunk.iter().map(|(id, v)| (*id, v.as_slice())).collect();
        store.write_batch(&refs).unwrap();
    }
    // The last batch generation acknowledged. Release (the batch thread) and
    // Acquire (the backups): a generation read was acknowledged before.
    let acked = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let batches = {
        let (store, acked, stop) = (Arc::clone(&store), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            // Bounded by the stop flag, set after the backups.
            for generation in 2u64.. {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let values: Vec<_> = MEMBERS
                    .iter()
                    .map(|&i| (ExtentId(i), value(ExtentId(i), generation, 64)))
                    .collect();
                let refs: Vec<_> = values.iter().map(|(id, v)| (*id, v.as_slice())).collect();
                store.write_batch(&refs).unwrap();
                acked.store(generation, Ordering::Release);
            }
        })
    };
    for round in 0..8 {
        let before = acked.load(Ordering::Acquire);
        let dir = tmp.path().join(format!("backup-{round}"));
        store.checkpoint_to(&dir).unwrap();
        let copy = Store::open(&dir, config.clone()).unwrap();
        let generations = MEMBERS.map(|i| {
            let bytes = copy.read(ExtentId(i)).unwrap();
            let (id, generation) = decode(&bytes);
            assert_eq!(id, ExtentId(i));
            generation
        });
        assert!(
            generations.iter().all(|&g| g == generations[0]),
            "round {round}: the batch in part: generations {generations:?}"
        );
        assert!(
            generations[0] >= before,
            "round {round}: batch {before} acknowledged before the backup, {} in it",
            generations[0]
        );
        assert_eq!(
            decode(&copy.read(ExtentId(1)).unwrap()),
            (ExtentId(1), 1),
            "round {round}: the filler"
        );
    }
    stop.store(true, Ordering::Release);
    batches.join().unwrap();
}

#[test]
fn a_backup_needs_a_durable_store_and_an_empty_directory() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let memory = Store::new(MemBackend::new(1), StoreConfig::default()).unwrap();
    let err = memory.checkpoint_to(tmp.path().join("b")).unwrap_err();
    assert!(
        matches!(err, extentmeta::Error::InvalidConfig { .. }),
        "{err}"
    );
    let store = Store::open(tmp.path().join("live"), config()).unwrap();
    put(&store, 1, 1);
    std::fs::create_dir(tmp.path().join("full")).unwrap();
    std::fs::write(tmp.path().join("full/notes.txt"), b"not a backup").unwrap();
    let err = store.checkpoint_to(tmp.path().join("full")).unwrap_err();
    assert_eq!(err.code(), "FPRE031", "{err}");
    assert_eq!(
        std::fs::read(tmp.path().join("full/notes.txt")).unwrap(),
        b"not a backup"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("full")).unwrap().count(),
        1,
        "nothing left there, not even a lock file"
    );
    // A file in the way is the caller's mistake, not an I/O error to retry.
    std::fs::write(tmp.path().join("file"), b"x").unwrap();
    let err = store.checkpoint_to(tmp.path().join("file")).unwrap_err();
    assert_eq!(err.code(), "FPRE031", "{err}");
    let err = (store.checkpoint_to(tmp.path().join("file/below"))).unwrap_err();
    assert_eq!(err.code(), "FPRE031", "{err}");
    // A backup of a backup.
    store.checkpoint_to(tmp.path().join("b1")).unwrap();
    let copy = Store::open(tmp.path().join("b1"), config()).unwrap();
    copy.checkpoint_to(tmp.path().join("b2")).unwrap();
    drop(copy);
    assert_eq!(
        generation_of(&Store::open(tmp.path().join("b2"), config()).unwrap(), 1),
        1
    );
}

/// A device file removed from outside the open store fails the backup,
/// which would otherwise hold an empty copy of it and lose its data silently.
#[test]
fn a_device_file_removed_from_outside_fails_the_backup() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("live"), config()).unwrap();
    for id in 0..8 {
        put(&store, id, 1);
    }
    std::fs::remove_file(tmp.path().join("live/dev0001.extents")).unwrap();
    let err = store.checkpoint_to(tmp.path().join("copy")).unwrap_err();
    assert_eq!(err.code(), "FPRE009", "{err}");
    assert!(err.to_string().contains("backup open"), "{err}");
    assert!(
        Store::open(tmp.path().join("copy"), config()).is_err(),
        "a backup cut short opens as no store"
    );
    // Not even with the options that create a store among other files: a
    // failed restore must not pass for an empty store.
    let create_anyway = StoreConfig::builder()
        .devices(2)
        .create_in_non_empty_dir(true)
        .build()
        .unwrap();
    let err = Store::open(tmp.path().join("copy"), create_anyway).unwrap_err();
    assert_eq!(err.code(), "FPRE031", "{err}");
    assert!(
        !tmp.path().join("copy/CURRENT").exists(),
        "nothing was created there"
    );
}

/// The OS's file system, except that once armed the first read of a device
/// file opened after arming waits (and says it does) until released, or
/// panics: a backup's copy, which opens the device files anew, stopped
/// mid-copy; and that device files' syncs fail while `fail_syncs` is set.
/// Its flags (and each file's `hold`) are SeqCst switches the test thread
/// sets before the store call that must meet them; they order nothing else.
#[derive(Debug, Default)]
struct HoldingFs {
    armed: AtomicBool,
    /// Panic in the held read instead of waiting: an engine's `Fs` with a bug.
    panics: AtomicBool,
    /// Fail every sync of a device file with EIO while set.
    fail_syncs: AtomicBool,
    /// Fail a directory sync of this directory with EIO while it holds no
    /// backup marker (the sync after the marker's removal).
    fail_dir_sync_without_marker: Mutex<Option<std::path::PathBuf>>,
    /// Fail reads of this device file that overlap these bytes with EIO
    /// while set: a sector the disk cannot read.
    unreadable: Mutex<Option<(String, u64, u64)>>,
    /// (a read is held, it was released)
    gate: Mutex<(bool, bool)>,
    moved: std::sync::Condvar,
}

#[derive(Debug)]
struct HeldFile {
    inner: Arc<dyn extentmeta::fs::FsFile>,
    fs: Arc<HoldingFs>,
    hold: AtomicBool,
    device: bool,
    name: String,
}

impl HoldingFs {
    fn wait_for(&self, held: bool, released: bool) {
        let mut gate = self.gate.lock().unwrap();
        while !(gate.0 >= held && gate.1 >= released) {
            gate = self.moved.wait(gate).unwrap();
        }
    }
    fn set(&self, held: bool, released: bool) {
        let mut gate = self.gate.lock().unwrap();
        gate.0 |= held;
        gate.1 |= released;
        self.moved.notify_all();
    }
}

/// `open` needs the `Arc` to hand each held file its file system.
#[derive(Debug, Clone)]
struct Holding(Arc<HoldingFs>);

impl extentmeta::fs::FsFile for HeldFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if self.hold.swap(false, Ordering::SeqCst) {
            assert!(!self.fs.panics.load(Ordering::SeqCst), "read_at has a bug");
            self.fs.set(true, false);
            self.fs.wait_for(true, true);
        }
        if let Some((name, start, end)) = &*self.fs.unreadable.lock().unwrap()
            && *name == self.name
            && offset < *end
            && offset + buf.len() as u64 > *start
        {
            return Err(std::io::Error::other(
                "EIO (injected: an unreadable sector)",
            ));
        }
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.device && self.fs.fail_syncs.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("EIO (injected)"));
        }
        self.inner.sync_data()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
}

impl extentmeta::fs::Fs for Holding {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        extentmeta::fs::StdFs.create_dir_all(dir)
    }
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Arc<dyn extentmeta::fs::FsFile>> {
        let inner = extentmeta::fs::StdFs.open(path, create)?;
        let device = path.extension().is_some_and(|e| e == "extents");
        // SeqCst: armed by the test thread before the backup that must meet it.
        let hold = device && self.0.armed.swap(false, Ordering::SeqCst);
        Ok(Arc::new(HeldFile {
            inner,
            fs: Arc::clone(&self.0),
            hold: AtomicBool::new(hold),
            device,
            name: (path.file_name().unwrap().to_string_lossy()).into_owned(),
        }))
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        extentmeta::fs::StdFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        extentmeta::fs::StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        extentmeta::fs::StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let failing = self.0.fail_dir_sync_without_marker.lock().unwrap();
        if failing.as_deref() == Some(dir) && !dir.join("BACKUP-IN-PROGRESS").exists() {
            return Err(std::io::Error::other("EIO (injected)"));
        }
        extentmeta::fs::StdFs.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> std::io::Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        extentmeta::fs::StdFs.lock(path)
    }
}

/// A store in `tmp/live` over a [`Holding`] file system, extents 0..8 written
/// at generation 1.
fn holding_store(tmp: &Path) -> (Holding, Store) {
    let holding = Holding(Arc::new(HoldingFs::default()));
    let fs: Arc<dyn extentmeta::fs::Fs> = Arc::new(holding.clone());
    let store = Store::open_in(fs, tmp.join("live"), config()).unwrap();
    for id in 0..8 {
        put(&store, id, 1);
    }
    (holding, store)
}

/// `close` waits for a backup in progress: the copy reads the device files
/// through handles of its own, so a `close` that returned mid-copy would let
/// another store take the directory and reuse a location the copy has still
/// to read. (A `close` that waits can only return after the copy went on,
/// whatever the threads' timing: the test cannot fail on a correct store.)
#[test]
fn close_waits_for_a_backup_in_progress() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (holding, store) = holding_store(tmp.path());
    let store = Arc::new(store);
    holding.0.armed.store(true, Ordering::SeqCst);
    let order = Arc::new(Mutex::new(Vec::new()));
    let backup = {
        let (store, to) = (Arc::clone(&store), tmp.path().join("copy"));
        std::thread::spawn(move || store.checkpoint_to(to))
    };
    holding.0.wait_for(true, false);
    let close = {
        let (store, order) = (Arc::clone(&store), Arc::clone(&order));
        std::thread::spawn(move || {
            let closed = store.close();
            order.lock().unwrap().push("closed");
            closed
        })
    };
    // `close` has begun once reads are refused (the store's own files are
    // not held); then time for a `close` that does not wait to return (the
    // wait cannot fail the test on a correct store).
    common::wait_until(|| store.read(ExtentId(0)).is_err());
    std::thread::sleep(std::time::Duration::from_millis(50));
    order.lock().unwrap().push("released");
    holding.0.set(false, true);
    backup.join().unwrap().unwrap();
    close.join().unwrap().unwrap();
    assert_eq!(*order.lock().unwrap(), ["released", "closed"]);
    let copy = Store::open(tmp.path().join("copy"), config()).unwrap();
    for id in 0..8 {
        assert_eq!(generation_of(&copy, id), 1);
    }
}

/// A panic in the engine's `Fs` under a backup's copy is the backup's I/O
/// error, and the backup's pin on the image's locations goes with it: held,
/// it would keep every location retired since from being freed.
#[test]
fn a_file_system_panicking_under_a_backup_fails_it_and_frees_its_pin() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (holding, store) = holding_store(tmp.path());
    holding.0.panics.store(true, Ordering::SeqCst);
    holding.0.armed.store(true, Ordering::SeqCst);
    let err = store.checkpoint_to(tmp.path().join("copy")).unwrap_err();
    assert_eq!(err.code(), "FPRE009", "{err}");
    for id in 0..8 {
        put(&store, id, 2);
    }
    store.reclaim_space().unwrap();
    assert_eq!(store.stats().retired_pending, 0, "nothing pinned");
    for id in 0..8 {
        assert_eq!(generation_of(&store, id), 2);
    }
}

const CHILD_DIR: &str = "EXTENTMETA_BACKUP_CHILD_DIR";

/// Child half of the kill test: backs the store up again and again, printing
/// each finished backup's directory, until killed.
#[test]
fn backup_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // Not the child.
    };
    let dir = Path::new(&dir);
    let store = Store::open(dir.join("live"), config()).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "open").unwrap();
    out.flush().unwrap();
    // Bounded by the parent's kill, and by this cap.
    for n in 0..1_000u64 {
        store
            .checkpoint_to(dir.join(format!("backup-{n}")))
            .unwrap();
        writeln!(out, "done {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_backup_cut_short_by_a_kill_is_refused_and_the_store_is_intact() {
    let _serial = serial();
    const IDS: u64 = 64;
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = Store::open(tmp.path().join("live"), config()).unwrap();
        for id in 0..IDS {
            put(&store, id, id + 1);
        }
    }
    for round in 0..4u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "backup_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Killed after `round` finished backups: the next one is under way (or
        // just done; either outcome is checked below).
        let mut finished = 0;
        // Bounded: the child prints at most 1 001 lines, then exits (EOF).
        while let Some(Ok(line)) = lines.next() {
            if line.starts_with("done") {
                finished += 1;
            }
            if finished > round {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = Store::open(tmp.path().join("live"), config()).unwrap();
        for id in 0..IDS {
            assert_eq!(
                generation_of(&store, id),
                id + 1,
                "round {round} extent {id}"
            );
        }
        drop(store);
        // Every backup directory is a whole store, or refused without a change.
        for entry in std::fs::read_dir(tmp.path()).unwrap() {
            let path = entry.unwrap().path();
            if !path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("backup-")
            {
                continue;
            }
            if path.join("CURRENT").exists() {
                let copy = Store::open(&path, config()).unwrap();
                for id in 0..IDS {
                    assert_eq!(generation_of(&copy, id), id + 1, "{path:?} extent {id}");
                }
            } else {
                let before = common::files(&path);
                // Killed before it wrote a file: an empty directory, where an
                // open would make a new store, as in any empty directory.
                if !before.is_empty() {
                    match Store::open(&path, config()) {
                        Err(err) => assert!(
                            matches!(err.code(), "FPRE031" | "FPRE023"),
                            "{path:?}: {err}"
                        ),
                        Ok(_) => panic!("{path:?}: a backup cut short opened as a store"),
                    }
                    assert_eq!(
                        common::files(&path),
                        before,
                        "a refused open changes nothing"
                    );
                }
            }
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
}

/// A write past the inline bound journals its record while its data syncs; a
/// backup's image holds it as a plain record while that sync runs. If the
/// sync fails, its pages may be gone and the copy would take the old bytes
/// under the record: so a backup syncs those devices after its image, as a
/// checkpoint does, and after a failed one it fails (until a reopen) rather
/// than write a copy that names data it does not hold.
#[test]
fn a_backup_after_a_failed_overlapped_data_sync_fails_instead_of_copying() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let holding = Holding(Arc::new(HoldingFs::default()));
    let fs: Arc<dyn extentmeta::fs::Fs> = Arc::new(holding.clone());
    let armed = &holding.0.fail_syncs;
    let config = StoreConfig::builder()
        .devices(1)
        .cache_bytes(0)
        .prefetch_workers(0)
        .build()
        .unwrap();
    let live = tmp.path().join("live");
    let store = Store::open_in(fs, &live, config.clone()).unwrap();
    store
        .write(ExtentId(1), &value(ExtentId(1), 1, 4096))
        .unwrap();
    armed.store(true, Ordering::SeqCst);
    let big = value(ExtentId(2), 1, 64 << 10);
    let err = store.write(ExtentId(2), &big).unwrap_err();
    assert!(["FPRE009", "FPRE028"].contains(&err.code()), "{err}");
    armed.store(false, Ordering::SeqCst);
    let refused = store.checkpoint_to(tmp.path().join("backup")).unwrap_err();
    assert_eq!(refused.code(), "FPRE038", "{refused}");
    drop(store);
    // After a reopen the backup goes through, and holds what the store does.
    let store = Store::open(&live, config.clone()).unwrap();
    store.checkpoint_to(tmp.path().join("backup-2")).unwrap();
    let copy = Store::open(tmp.path().join("backup-2"), config).unwrap();
    let (id, generation) = decode(&copy.read(ExtentId(1)).unwrap());
    assert_eq!((id, generation), (ExtentId(1), 1));
    match (store.read(ExtentId(2)), copy.read(ExtentId(2))) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
        other => panic!("the backup disagrees with its store: {other:?}"),
    }
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = (std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A sector the disk cannot read fails a backup only where a record needs
/// its bytes: under a deleted extent (free space, or a location a remap
/// retired as bad, which a real disk keeps failing) the copy holds zeros.
/// A backup that failed removes what it copied and keeps its marker, and a
/// second call into the same directory takes the backup again.
#[test]
fn an_unreadable_sector_fails_a_backup_only_where_a_record_needs_it() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (holding, store) = holding_store(tmp.path());
    let device_file = |id: u64| {
        let at = store.snapshot(ExtentId(id)).unwrap().location();
        let name = format!("dev{:04}.extents", at.device);
        (name, at.offset, at.offset + u64::from(at.length))
    };
    // Extent 7's bytes become free space the backup does not need.
    let (name, start, end) = device_file(7);
    store.delete(ExtentId(7)).unwrap();
    *holding.0.unreadable.lock().unwrap() = Some((name, start + 1000, start + 1001));
    let backup = store.checkpoint_to(tmp.path().join("copy")).unwrap();
    assert!(
        (512..=1 << 20).contains(&backup.unreadable_bytes)
            && backup.unreadable_bytes <= end - start,
        "{backup:?}: at least the failing sector, at most the free bytes around it"
    );
    let copy = Store::open(tmp.path().join("copy"), config()).unwrap();
    for id in 0..7 {
        assert_eq!(generation_of(&copy, id), 1);
    }
    assert!(copy.read(ExtentId(7)).is_err(), "deleted before the backup");
    drop(copy);

    // One byte of extent 3 unreadable: the backup needs it.
    let (name, start, _) = device_file(3);
    *holding.0.unreadable.lock().unwrap() = Some((name.clone(), start + 7, start + 8));
    let again = tmp.path().join("again");
    let err = store.checkpoint_to(&again).unwrap_err();
    assert_eq!(err.code(), "FPRE009", "{err}");
    assert!(err.to_string().contains("backup read"), "{err}");
    assert!(
        err.to_string().contains("extent#3's bytes"),
        "names the extent: {err}"
    );
    assert_eq!(
        names_in(&again),
        ["BACKUP-IN-PROGRESS", "LOCK"],
        "copies removed"
    );
    assert_eq!(
        Store::open(&again, config()).unwrap_err().code(),
        "FPRE031",
        "still no store"
    );
    // The sector readable again (the disk remapped it), the same call works.
    *holding.0.unreadable.lock().unwrap() = None;
    let backup = store.checkpoint_to(&again).unwrap();
    assert_eq!(backup.unreadable_bytes, 0);
    let copy = Store::open(&again, config()).unwrap();
    for id in 0..7 {
        assert_eq!(generation_of(&copy, id), 1);
    }
}

/// A quarantined extent's bytes (its location failed every re-read, and no
/// good copy was found) are copied where they still read: only the sector
/// that fails is written as zeros, and the backup does not fail for it.
#[test]
fn a_backup_keeps_the_readable_sectors_of_a_quarantined_extent() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    drop(holding_store(tmp.path()));
    // Opened again: nothing cached, so the repair finds no good copy.
    let holding = Holding(Arc::new(HoldingFs::default()));
    let fs: Arc<dyn extentmeta::fs::Fs> = Arc::new(holding.clone());
    let store = Store::open_in(fs, tmp.path().join("live"), config()).unwrap();
    let at = store.snapshot(ExtentId(3)).unwrap().location();
    let (start, end) = (at.offset, at.offset + u64::from(at.length));
    let name = format!("dev{:04}.extents", at.device);
    *holding.0.unreadable.lock().unwrap() = Some((name.clone(), start, end));
    assert_eq!(store.verify(ExtentId(3)).unwrap_err().code(), "FPRE004");
    assert_eq!(
        store.snapshot(ExtentId(3)).unwrap().state(),
        extentmeta::record::State::Quarantined
    );
    // One sector of it stays unreadable.
    let bad = start + 1000;
    *holding.0.unreadable.lock().unwrap() = Some((name.clone(), bad, bad + 1));
    let backup = store.checkpoint_to(tmp.path().join("copy")).unwrap();
    assert!(
        (1..=512).contains(&backup.unreadable_bytes),
        "at most a sector's worth: {backup:?}"
    );
    let read = |dir: &str| std::fs::read(tmp.path().join(dir).join(&name)).unwrap();
    let (live, copy) = (read("live"), read("copy"));
    // The bytes the copy lacks: the failing piece only (at most a sector's
    // worth around the unreadable byte), written as zeros; the rest of the
    // extent is copied.
    let lost: Vec<usize> = (start as usize..end as usize)
        .filter(|&i| copy[i] != live[i])
        .collect();
    assert!(lost.iter().all(|&i| copy[i] == 0), "zeros where lost");
    assert!(
        lost.iter().all(|&i| (i as u64).abs_diff(bad) < 512),
        "lost {} bytes, from {:?} to {:?}, around {bad}",
        lost.len(),
        lost.first(),
        lost.last()
    );
    drop(store);
    let copy = Store::open(tmp.path().join("copy"), config()).unwrap();
    for id in (0..8).filter(|&id| id != 3) {
        assert_eq!(generation_of(&copy, id), 1);
    }
    assert_eq!(
        copy.snapshot(ExtentId(3)).unwrap().state(),
        extentmeta::record::State::Quarantined
    );
}

/// A backup holds its directory's lock: a second backup into it fails with
/// FPRE026 while the first copies (a store opened there is refused too),
/// instead of mixing files with it; the first then completes whole.
#[test]
fn a_backup_holds_its_directory_until_it_is_done() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (holding, store) = holding_store(tmp.path());
    let store = Arc::new(store);
    let to = tmp.path().join("copy");
    holding.0.armed.store(true, Ordering::SeqCst);
    let first = {
        let (store, to) = (Arc::clone(&store), to.clone());
        std::thread::spawn(move || store.checkpoint_to(to))
    };
    holding.0.wait_for(true, false);
    let second = store.checkpoint_to(&to).map(|_| ());
    let opened = Store::open(&to, config()).map(|_| ());
    // Released before any assertion: a failing one must not leave the first
    // backup held.
    holding.0.set(false, true);
    first.join().unwrap().unwrap();
    assert_eq!(second.unwrap_err().code(), "FPRE026");
    // Refused before its lock: the backup's marker is there already.
    assert_eq!(opened.unwrap_err().code(), "FPRE031");
    let copy = Store::open(&to, config()).unwrap();
    for id in 0..8 {
        assert_eq!(generation_of(&copy, id), 1);
    }
}

/// A backup whose last step failed (the directory sync after its marker's
/// removal) returns the error and leaves the whole backup: it is not cleared
/// as one cut short, which without its marker would open as a new, empty
/// store. An open of it removes a marker a crash left beside the pointer.
#[test]
fn a_backup_whose_last_step_failed_is_kept_whole() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (holding, store) = holding_store(tmp.path());
    let to = tmp.path().join("copy");
    *holding.0.fail_dir_sync_without_marker.lock().unwrap() = Some(to.clone());
    let err = store.checkpoint_to(&to).unwrap_err();
    assert_eq!(err.code(), "FPRE009", "{err}");
    *holding.0.fail_dir_sync_without_marker.lock().unwrap() = None;
    {
        let copy = Store::open(&to, config()).unwrap();
        for id in 0..8 {
            assert_eq!(generation_of(&copy, id), 1);
        }
    }
    // A crash between the pointer and the marker's removal leaves both.
    std::fs::write(to.join("BACKUP-IN-PROGRESS"), b"stray").unwrap();
    drop(Store::open(&to, config()).unwrap());
    assert!(
        !to.join("BACKUP-IN-PROGRESS").exists(),
        "removed by the open"
    );
}
