//! Power loss in the LevelDB `fault_injection_test` style.
//!
//! [`FaultFs`] wraps the real file system ([`StdFs`]) and remembers, per file
//! (inode), the content as of its last `sync_data`, and, for the directory, the
//! names as of its last `sync_dir`. From a seeded operation count on, every file
//! operation fails (the power is gone); the store is then dropped and the cut
//! applied to the real files: every name the last directory sync made durable gets
//! its inode's synced content back (files created since are removed, renames and
//! removes undone). In the torn variant a file instead keeps its synced content plus
//! a prefix of its unsynced appended bytes whose last 512-byte sector is garbage.
//! The directory is then reopened with `Store::open` (real files) and checked.
//!
//! # What may be lost, what may not
//!
//! * **May not:** any write that returned `Ok` (invariant 9): after every cut the
//!   extent reads back exactly the last acknowledged value, or the one write that
//!   was in flight at the cut (the workload is one thread, so at most one).
//!   Compactions never change a value. The store never panics, and recovery never
//!   refuses a directory a power cut produced.
//! * **May:** the write in flight at the cut (its value is either entirely there or
//!   the previous one is); a checkpoint or pointer switch in flight (the old
//!   checkpoint stays current); a compaction in flight (either location is fine,
//!   the value is the same).
//! * **Not modelled:** lying disks (a sync that returns `Ok` without persisting,
//!   except the mutant below), reordering of writes *within* a synced range
//!   (irrelevant: a synced range is whole), bit rot of synced data (tests/durable.rs
//!   covers corruption), several writer threads (tests/kill.rs).
//!
//! The mutant check ([`Faults::lose_journal_syncs`]) makes every journal
//! `sync_data` a no-op; the same harness must then report a lost acknowledged
//! write, which shows it can fail.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::{decode, value};
use extentmeta::fs::{Fs, FsFile, StdFs};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Tiny xorshift64* generator: deterministic from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Fault switches.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Mutant: `sync_data` of a journal file does nothing.
    lose_journal_syncs: bool,
}

#[derive(Debug)]
struct Inode {
    /// The live content (what the real file holds).
    live: Vec<u8>,
    /// The content as of the last `sync_data`.
    synced: Vec<u8>,
    /// The name it was created under.
    name: String,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    /// Names → inode now.
    live: HashMap<String, usize>,
    /// Names → inode as of the last directory sync.
    durable: HashMap<String, usize>,
    /// File operations so far; from `cut_at` on, every one fails.
    ops: u64,
    cut_at: u64,
    /// The file (or `dir`) of the first operation the cut failed.
    cut_in: Option<String>,
    faults: Faults,
}

impl State {
    fn tick(&mut self, what: &str) -> io::Result<()> {
        self.ops += 1;
        if self.ops > self.cut_at {
            if self.cut_in.is_none() {
                self.cut_in = Some(what.to_string());
            }
            return Err(io::Error::other("power cut"));
        }
        Ok(())
    }
    fn tick_on(&mut self, ino: usize) -> io::Result<()> {
        let name = self.inodes[ino].name.clone();
        self.tick(&name)
    }
    fn is_cut(&self) -> bool {
        self.ops > self.cut_at
    }
}

/// The fault-injecting file system over one store directory.
#[derive(Debug, Clone)]
struct FaultFs {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    /// Everything in `dir` now counts as durable.
    fn new(dir: &Path, cut_at: u64, faults: Faults) -> Self {
        let mut state = State {
            cut_at,
            faults,
            ..State::default()
        };
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            state.inodes.push(Inode {
                live: bytes.clone(),
                synced: bytes,
                name: name.clone(),
            });
            state.live.insert(name.clone(), state.inodes.len() - 1);
            state.durable.insert(name, state.inodes.len() - 1);
        }
        FaultFs {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn name(&self, path: &Path) -> String {
        assert_eq!(path.parent().unwrap(), self.dir, "one directory");
        path.file_name().unwrap().to_str().unwrap().to_string()
    }

    fn is_cut(&self) -> bool {
        self.state.lock().unwrap().is_cut()
    }

    /// Whether the cut failed a checkpoint or pointer operation (a rotation).
    fn cut_a_rotation(&self) -> bool {
        self.state
            .lock()
            .unwrap()
            .cut_in
            .as_deref()
            .is_some_and(|n| n.starts_with("checkpoint-") || n.starts_with("CURRENT"))
    }

    /// Applies the power cut to the real files (the store must be dropped).
    /// `torn`: keep a prefix of unsynced appended bytes, last sector garbage.
    fn cut(&self, rng: &mut Rng, torn: bool) {
        let st = self.state.lock().unwrap();
        for name in st.live.keys() {
            std::fs::remove_file(self.dir.join(name)).unwrap();
        }
        for (name, &ino) in &st.durable {
            let inode = &st.inodes[ino];
            let mut bytes = inode.synced.clone();
            if torn && inode.live.len() > bytes.len() && rng.below(2) == 0 {
                let start = bytes.len();
                let keep = 1 + rng.below((inode.live.len() - start) as u64) as usize;
                bytes.extend_from_slice(&inode.live[start..start + keep]);
                let sector = ((start + keep - 1) / 512 * 512).max(start);
                for b in &mut bytes[sector..] {
                    *b = rng.next() as u8;
                }
            }
            std::fs::write(self.dir.join(name), &bytes).unwrap();
        }
    }
}

#[derive(Debug)]
struct FaultFile {
    real: Arc<dyn FsFile>,
    ino: usize,
    state: Arc<Mutex<State>>,
}

impl FsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.state.lock().unwrap().tick_on(self.ino)?;
        self.real.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.tick_on(self.ino)?;
        self.real.write_all_at(buf, offset)?;
        let live = &mut st.inodes[self.ino].live;
        let end = offset as usize + buf.len();
        if live.len() < end {
            live.resize(end, 0);
        }
        live[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.tick_on(self.ino)?;
        let lose = st.faults.lose_journal_syncs;
        let inode = &mut st.inodes[self.ino];
        if !(lose && inode.name.starts_with("journal-")) {
            inode.synced = inode.live.clone();
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.state.lock().unwrap().tick_on(self.ino)?;
        self.real.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.tick_on(self.ino)?;
        self.real.set_len(len)?;
        st.inodes[self.ino].live.resize(len as usize, 0);
        Ok(())
    }
}

impl Fs for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.state.lock().unwrap().tick("dir")?;
        assert!(dir.is_dir());
        Ok(())
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FsFile>> {
        let name = self.name(path);
        let mut st = self.state.lock().unwrap();
        st.tick(&name)?;
        let real = StdFs.open(path, create)?;
        let ino = match st.live.get(&name) {
            Some(&ino) => ino,
            None => {
                st.inodes.push(Inode {
                    live: Vec::new(),
                    synced: Vec::new(),
                    name: name.clone(),
                });
                let ino = st.inodes.len() - 1;
                st.live.insert(name, ino);
                ino
            }
        };
        Ok(Arc::new(FaultFile {
            real,
            ino,
            state: Arc::clone(&self.state),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.state.lock().unwrap().tick("dir")?;
        StdFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (f, t) = (self.name(from), self.name(to));
        let mut st = self.state.lock().unwrap();
        st.tick(&f)?;
        StdFs.rename(from, to)?;
        let ino = st.live.remove(&f).unwrap();
        st.live.insert(t, ino);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let name = self.name(path);
        let mut st = self.state.lock().unwrap();
        st.tick(&name)?;
        StdFs.remove(path)?;
        st.live.remove(&name);
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.tick("dir")?;
        st.durable = st.live.clone();
        Ok(())
    }
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let name = self.name(path);
        let mut st = self.state.lock().unwrap();
        st.tick(&name)?;
        let guard = StdFs.lock(path)?;
        if !st.live.contains_key(&name) {
            st.inodes.push(Inode {
                live: Vec::new(),
                synced: Vec::new(),
                name: name.clone(),
            });
            let ino = st.inodes.len() - 1;
            st.live.insert(name, ino);
        }
        Ok(guard)
    }
}

/// What the workload issued and what was acknowledged, per extent (the
/// generation its value encodes).
#[derive(Default)]
struct Model {
    acked: HashMap<u64, u64>,
    issued: HashMap<u64, u64>,
}

fn config() -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .cache_bytes(0)
        .prefetch_workers(0)
        // Small: rotations (checkpoint, pointer switch, removals) happen often.
        .journal_max_bytes(4096)
        .build()
        .unwrap()
}

fn len_of(id: u64, generation: u64) -> usize {
    100 + ((id * 131 + generation * 61) % 1400) as usize
}

/// Runs operations until the cut makes one fail (or `ops` ran); returns the
/// writes acknowledged.
fn workload(store: &Store, fs: &FaultFs, model: &mut Model, rng: &mut Rng, ops: u64) -> u64 {
    let mut acked = 0;
    for _ in 0..ops {
        let id = rng.below(24);
        match rng.below(10) {
            0..=6 => {
                let generation = model.issued.get(&id).copied().unwrap_or(0) + 1;
                model.issued.insert(id, generation);
                let bytes = value(ExtentId(id), generation, len_of(id, generation));
                match store.write(ExtentId(id), &bytes) {
                    Ok(_) => {
                        model.acked.insert(id, generation);
                        acked += 1;
                    }
                    Err(e) => {
                        assert!(fs.is_cut(), "write failed before the cut: {e}");
                        return acked;
                    }
                }
            }
            7 | 8 => {
                if model.acked.contains_key(&id)
                    && let Err(e) = store.compact(ExtentId(id))
                {
                    assert!(fs.is_cut(), "compaction failed before the cut: {e}");
                    return acked;
                }
            }
            _ => match store.read(ExtentId(id)) {
                Ok(bytes) => {
                    assert_eq!(decode(&bytes), (ExtentId(id), model.acked[&id]));
                }
                Err(e) if e.code() == "FPRE012" && !model.acked.contains_key(&id) => {}
                Err(e) => {
                    assert!(fs.is_cut(), "read failed before the cut: {e}");
                    return acked;
                }
            },
        }
    }
    acked
}

/// Reopens with real files and checks every extent against the model; the state
/// recovered becomes the new acknowledged state.
fn check(dir: &Path, model: &mut Model) -> Result<(), String> {
    let store =
        Store::open(dir, config()).map_err(|e| format!("reopen after the cut failed: {e}"))?;
    for (&id, &issued) in &model.issued {
        let acked = model.acked.get(&id).copied();
        match store.read(ExtentId(id)) {
            Ok(bytes) => {
                let (got, generation) = decode(&bytes);
                assert_eq!(got, ExtentId(id));
                if generation < acked.unwrap_or(0) || generation > issued {
                    return Err(format!(
                        "extent {id}: generation {generation}, acknowledged {acked:?}, issued {issued}"
                    ));
                }
                model.acked.insert(id, generation);
            }
            Err(e) if e.code() == "FPRE012" && acked.is_none() => {}
            Err(e) => {
                return Err(format!(
                    "extent {id}: {e}; acknowledged {acked:?}, issued {issued}"
                ));
            }
        }
    }
    // Lost in-flight writes are forgotten: the next generation issued is fresh
    // anyway (issued only grows).
    Ok(())
}

/// What a run covered.
#[derive(Debug, Default)]
struct Coverage {
    /// Writes acknowledged.
    acked: u64,
    /// Rotations (journal number increases) seen.
    rotations: u64,
    /// Cuts that hit an open.
    cut_opens: u64,
    /// Cuts that hit a checkpoint or pointer switch.
    cut_rotations: u64,
}

/// `cycles` power cuts on one directory; the first violation.
fn run(seed: u64, cycles: u32, torn: bool, faults: Faults) -> Result<Coverage, String> {
    let tmp = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let dir = tmp.path();
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut coverage = Coverage::default();
    for _ in 0..cycles {
        // About 6 file operations per write: the cut lands anywhere; one cycle in
        // five cuts within the first 40 operations, the open and its recovery.
        let cut_at = if rng.below(5) == 0 {
            rng.below(40)
        } else {
            rng.below(900)
        };
        let fs = FaultFs::new(dir, cut_at, faults);
        match Store::open_in(Arc::new(fs.clone()), dir, config()) {
            Ok(store) => {
                let number = store.stats().journal_number;
                coverage.acked += workload(&store, &fs, &mut model, &mut rng, 200);
                coverage.rotations += store.stats().journal_number - number;
            }
            Err(e) => {
                assert!(fs.is_cut(), "open failed before the cut: {e}");
                coverage.cut_opens += 1;
            }
        }
        // The store is dropped; now the power goes.
        coverage.cut_rotations += u64::from(fs.cut_a_rotation());
        fs.cut(&mut rng, torn);
        check(dir, &mut model).map_err(|e| format!("seed {seed}: {e}"))?;
    }
    Ok(coverage)
}

#[test]
fn acknowledged_writes_survive_power_cuts() {
    let mut cut_rotations = 0;
    for seed in 1..=6 {
        let c = run(seed, 60, false, Faults::default()).unwrap();
        eprintln!("seed {seed}: {c:?}");
        // The cuts covered what they must: many acknowledged writes, rotations
        // (checkpoint and pointer switch), opens.
        assert!(
            c.acked > 1000 && c.rotations > 20 && c.cut_opens > 0,
            "{c:?}"
        );
        cut_rotations += c.cut_rotations;
    }
    assert!(
        cut_rotations >= 3,
        "cuts in checkpoint or pointer operations: {cut_rotations}"
    );
}

#[test]
fn acknowledged_writes_survive_power_cuts_with_torn_unsynced_tails() {
    for seed in 11..=16 {
        let c = run(seed, 60, true, Faults::default()).unwrap();
        assert!(c.acked > 1000 && c.rotations > 20, "{c:?}");
    }
}

#[test]
fn mutant_losing_journal_syncs_is_detected() {
    let faults = Faults {
        lose_journal_syncs: true,
    };
    let detected = (1..=4)
        .filter(|&seed| {
            let r = run(seed, 25, false, faults);
            eprintln!("mutant seed {seed}: {r:?}");
            r.is_err()
        })
        .count();
    assert!(
        detected >= 3,
        "journal syncs that persist nothing must lose acknowledged writes"
    );
}
