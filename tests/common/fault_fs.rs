//! A fault-injecting file system over one real store directory, in the LevelDB
//! `fault_injection_test` style; shared by `tests/power_loss.rs`,
//! `tests/disk_faults.rs` and `tests/full_disk.rs`.
//!
//! [`FaultFs`] wraps the real file system ([`StdFs`]) and remembers, per file
//! (inode), its live content (what the real file holds) and its content as of its
//! last successful `sync_data`, and, for the directory, the names as of its last
//! `sync_dir`. It injects:
//!
//! * **a power cut** at a seeded operation count: from then on every file operation
//!   fails. Once the store is dropped, [`FaultFs::cut`] applies the loss to the real
//!   files: every name the last directory sync made durable gets its inode back
//!   (files created since are removed, renames and removes undone; with
//!   [`Cut::AnySubset`], each of those directory operations is kept or undone
//!   independently), with what survives of its unsynced bytes chosen by a
//!   [`Cut`] mode:
//!   * [`Cut::Nothing`]: no power cut, the files stay as they are (a process
//!     restart);
//!   * [`Cut::Synced`]: nothing unsynced survives;
//!   * [`Cut::TornTail`]: a prefix of the unsynced appended bytes survives, its last
//!     512-byte sector garbage;
//!   * [`Cut::AnySubset`]: a file length anywhere between the synced and the live
//!     one, and every 512-byte sector of the unsynced region independently
//!     persisted (live bytes), never written (zeros) or torn (garbage); a file whose
//!     live content is not an extension of its synced content (an overwrite or
//!     truncate not synced) keeps either length, and in each sector the bytes the
//!     unsynced writes changed are old, new or garbage, independently.
//! * **fsync EIO** ([`SyncFault`]): the seeded `sync_data` of a journal or device
//!   file returns `EIO`. Linux reports a writeback error once per open file, so only
//!   that call fails; every later `sync_data` of the file returns `Ok`. Either the
//!   pages are *kept* (the bytes stay readable in the live file, but were marked
//!   clean without reaching the disk, as ext4 does: later `Ok` syncs never persist
//!   them unless they are written again) or *dropped* (the live content and the
//!   real file revert to the synced content for every byte written since the last
//!   sync: zeros past the synced length; later `Ok` syncs do not bring them back).
//! * **directory EIO** (`Faults::dir_eio`): the seeded rename, remove or
//!   directory sync returns `EIO` and does nothing (a failed directory sync
//!   leaves the operations before it as undurable as they were).
//! * **ENOSPC** ([`WriteFault`]): the seeded `write_all_at` returns
//!   `StorageFull` (`ENOSPC`), optionally after writing a prefix of the buffer (a
//!   short write).
//! * **a full file system** (`Faults::capacity_bytes`): every live file's length
//!   counts against a byte budget, as blocks would; a write that would grow the
//!   files past it writes what fits (a short write), then returns `ENOSPC`, and a
//!   `set_len` past it returns `ENOSPC`. Unlike the seeded faults it holds for
//!   every call until the budget changes ([`FaultFs::set_faults`]), and
//!   [`FaultFs::used_bytes`] says how much is used.
//! * **hooks** ([`Hook`]): a test can run code after a write, around a sync and before a lock
//!   (outside the file system's lock), and decide a sync's verdict, to order two
//!   threads' I/O deterministically.
//!
//! Everything is deterministic from the seeds: names are kept in ordered maps, so
//! the loss drawn for a seed does not depend on hash order.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "each test binary uses its own subset of the shared helpers, so an expect would be unfulfilled in some of them"
)]

use extentmeta::fs::{Fs, FsFile, StdFs};
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The sector size of the loss model.
pub const SECTOR: usize = 512;

/// Tiny xorshift64* generator: deterministic from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Which files a fault may hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Journal files (`journal-N`, not their `.dropped-` evidence files).
    Journal,
    /// Device files (`devNNNN.extents`).
    Device,
    /// Checkpoint files (`checkpoint-N`).
    Checkpoint,
    /// Checkpoint files and the pointer (`CURRENT`, `CURRENT.tmp`).
    CheckpointOrPointer,
    /// Any file.
    Any,
}

impl Target {
    pub fn matches(self, name: &str) -> bool {
        match self {
            Target::Journal => is_journal(name),
            Target::Device => is_device(name),
            Target::Checkpoint => name.starts_with("checkpoint-"),
            Target::CheckpointOrPointer => {
                name.starts_with("checkpoint-") || name.starts_with("CURRENT")
            }
            Target::Any => true,
        }
    }
}

pub fn is_journal(name: &str) -> bool {
    name.starts_with("journal-") && !name.contains(".dropped-")
}

pub fn is_device(name: &str) -> bool {
    name.starts_with("dev") && name.ends_with(".extents")
}

/// `EIO` at the `nth` (1-based) `sync_data` of a file `target` matches.
#[derive(Debug, Clone, Copy)]
pub struct SyncFault {
    pub target: Target,
    pub nth: u64,
    /// Whether the kernel dropped the pages (else they stay readable, unsynced).
    pub drop_pages: bool,
}

/// `ENOSPC` at the `nth` (1-based) `write_all_at` of a file `target` matches.
#[derive(Debug, Clone, Copy)]
pub struct WriteFault {
    pub target: Target,
    pub nth: u64,
    /// Whether a prefix of the buffer is written first (a short write).
    pub short: bool,
}

/// Fault switches of one [`FaultFs`]. At most one of `sync_eio` and `enospc`
/// fires, once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Mutant: `sync_data` of a journal file does nothing.
    pub lose_journal_syncs: bool,
    /// Mutant: a sync of the directory's parent does nothing (as if the
    /// store never made its directory's creation durable).
    pub lose_parent_syncs: bool,
    pub sync_eio: Option<SyncFault>,
    pub enospc: Option<WriteFault>,
    /// The power fails at the `nth` (1-based) `sync_data` of a file the target
    /// matches (before it persists anything), if it did not fail before: the cut
    /// then always finds that file's last write unsynced.
    pub cut_at_sync: Option<(Target, u64)>,
    /// The file system's size: writes and `set_len`s that would grow the live
    /// files past it fail with `ENOSPC` (`None`: unbounded).
    pub capacity_bytes: Option<u64>,
    /// The `nth` (1-based) directory operation (rename, remove or directory
    /// sync) fails with `EIO` and does nothing.
    pub dir_eio: Option<u64>,
    /// Seeds the length of a short write.
    pub seed: u64,
}

/// What survives of unsynced bytes at [`FaultFs::cut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// No power cut at all: every file keeps its live content, every name stays
    /// (the process ended; the operating system kept its page cache).
    Nothing,
    Synced,
    TornTail,
    AnySubset,
}

/// What one [`FaultFs::cut`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct CutStats {
    /// Files that lost (some of their) unsynced bytes.
    pub files_changed: u64,
    /// Journal files in which a sector of the unsynced region persisted while an
    /// earlier sector of the same region did not (zeros or garbage).
    pub later_sector_without_earlier: u64,
}

/// A hook's verdict on a `sync_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncVerdict {
    /// As the fault switches say.
    Normal,
    /// Fail with `EIO`, dropping or keeping the pages.
    Fail { drop_pages: bool },
    /// Return `Ok` without persisting anything: the error that covered these
    /// bytes was (or will be) reported to another caller (fsyncgate).
    OkWithoutPersisting,
}

/// Test code run around file operations, outside the file system's lock (so it
/// may block, waiting for another thread).
pub trait Hook: Send + Sync + Debug {
    /// After a `write_all_at` of `file` succeeded.
    fn after_write(&self, _file: &str) {}
    /// Before a `sync_data` of `file` does anything: its verdict.
    fn before_sync(&self, _file: &str) -> SyncVerdict {
        SyncVerdict::Normal
    }
    /// After a `sync_data` of `file` finished (`failed` if it returned an error).
    fn after_sync(&self, _file: &str, _failed: bool) {}
    /// Before a `lock` of `file` (the store directory's lock file).
    fn before_lock(&self, _file: &str) {}
    /// Before a `read_at` of `file`: `true` fails it with `EIO` (a read
    /// fault of the media; the bytes stay as they are).
    fn fail_read(&self, _file: &str) -> bool {
        false
    }
    /// Before a `write_all_at` of `file`: `true` fails it with `EIO`, nothing
    /// written (a write fault of the media).
    fn fail_write(&self, _file: &str) -> bool {
        false
    }
}

#[derive(Debug)]
struct Inode {
    /// The live content (what the real file holds).
    live: Vec<u8>,
    /// The content as of the last `sync_data`.
    synced: Vec<u8>,
    /// The name it was created under.
    name: String,
    /// Bytes whose pages a failed sync marked clean without writing them (kept
    /// pages): offset → the byte the disk still holds. A later successful sync
    /// does not persist them; a write over them does.
    lost: BTreeMap<usize, u8>,
}

impl Inode {
    fn new(name: &str, bytes: Vec<u8>) -> Self {
        Inode {
            live: bytes.clone(),
            synced: bytes,
            name: name.to_string(),
            lost: BTreeMap::new(),
        }
    }

    /// The byte the disk holds at `i` (zero past its synced length).
    fn on_disk(&self, i: usize) -> u8 {
        self.synced.get(i).copied().unwrap_or(0)
    }

    fn write(&mut self, buf: &[u8], offset: usize) {
        let end = offset + buf.len();
        if self.live.len() < end {
            self.live.resize(end, 0);
        }
        self.live[offset..end].copy_from_slice(buf);
        self.lost.retain(|&k, _| k < offset || k >= end);
    }

    fn sync(&mut self) {
        self.synced = self.live.clone();
        for (&k, &v) in &self.lost {
            if k < self.synced.len() {
                self.synced[k] = v;
            }
        }
    }

    /// The pages written since the last sync are dropped: the live content is the
    /// synced one again (zeros past the synced length; the length stays).
    fn drop_pages(&mut self) {
        for i in 0..self.live.len() {
            self.live[i] = self.on_disk(i);
        }
        self.lost.clear();
    }

    /// The pages written since the last sync are marked clean but never reach the
    /// disk.
    fn keep_pages_unsynced(&mut self) {
        for i in 0..self.live.len() {
            let disk = self.on_disk(i);
            if i >= self.synced.len() || self.live[i] != disk {
                self.lost.entry(i).or_insert(disk);
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    /// Names → inode now.
    live: BTreeMap<String, usize>,
    /// Names → inode as of the last directory sync.
    durable: BTreeMap<String, usize>,
    /// The directory operations since the last directory sync, in order: a
    /// power cut keeps each or undoes it, independently.
    dir_log: Vec<DirOp>,
    /// File operations so far; from `cut_at` on, every one fails.
    ops: u64,
    cut_at: u64,
    /// The file (or `dir`) of the first operation the cut failed.
    cut_in: Option<String>,
    faults: Faults,
    /// `sync_data` calls of files the sync fault targets, so far.
    syncs: u64,
    /// `write_all_at` calls of files the write fault targets, so far.
    writes: u64,
    /// `sync_data` calls of files `cut_at_sync` targets, so far.
    cut_syncs: u64,
    /// Directory operations (renames, removes, directory syncs), so far.
    dir_ops: u64,
    /// What fault fired, on which file.
    fired: Option<String>,
    /// Renames that succeeded, by the name renamed from.
    renamed_from: BTreeMap<String, u64>,
    rng: Rng,
    hook: Option<Arc<dyn Hook>>,
    /// The directory itself was created through this file system
    /// ([`FaultFs::unborn`]), and whether a sync of its parent made that
    /// durable: a power cut before undoes the creation, with every file in it.
    created: Option<bool>,
}

/// A directory operation not yet made durable by a directory sync.
#[derive(Debug, Clone)]
enum DirOp {
    Create(String, usize),
    Rename(String, String),
    Remove(String),
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new(0)
    }
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
    /// A directory operation on `what`: fails with `EIO` if it is the one
    /// `dir_eio` names.
    fn dir_fault(&mut self, what: &str) -> io::Result<()> {
        if let Some(nth) = self.faults.dir_eio
            && self.fired.is_none()
        {
            self.dir_ops += 1;
            if self.dir_ops == nth {
                self.fired = Some(format!("EIO directory: {what}"));
                return Err(io::Error::from_raw_os_error(5));
            }
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
    /// Bytes the live files hold.
    fn used(&self) -> u64 {
        self.live
            .values()
            .map(|&ino| self.inodes[ino].live.len() as u64)
            .sum()
    }
    /// Bytes the live files may still grow by (`u64::MAX`: unbounded).
    fn free(&self) -> u64 {
        self.faults
            .capacity_bytes
            .map_or(u64::MAX, |capacity| capacity.saturating_sub(self.used()))
    }
    fn new_inode(&mut self, name: &str) -> usize {
        self.inodes.push(Inode::new(name, Vec::new()));
        let ino = self.inodes.len() - 1;
        self.live.insert(name.to_string(), ino);
        self.dir_log.push(DirOp::Create(name.to_string(), ino));
        ino
    }
}

/// The fault-injecting file system over one store directory.
#[derive(Debug, Clone)]
pub struct FaultFs {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    /// Everything in `dir` now counts as durable. From operation `cut_at` on
    /// (`u64::MAX`: never) every file operation fails.
    pub fn new(dir: &Path, cut_at: u64, faults: Faults) -> Self {
        let mut state = State {
            cut_at,
            faults,
            rng: Rng::new(faults.seed ^ 0x5eed),
            ..State::default()
        };
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for name in names {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            state.inodes.push(Inode::new(&name, bytes));
            state.live.insert(name.clone(), state.inodes.len() - 1);
            state.durable.insert(name, state.inodes.len() - 1);
        }
        FaultFs {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// A file system for `dir`, which does not exist yet: the store creates it,
    /// and a power cut before it syncs `dir`'s parent removes it whole.
    pub fn unborn(dir: &Path, cut_at: u64, faults: Faults) -> Self {
        assert!(!dir.exists(), "unborn: {dir:?} exists");
        let parent = dir.parent().unwrap();
        let fs = FaultFs::new(parent, cut_at, faults);
        // The parent's files are not the store's: none is tracked.
        let mut st = fs.state.lock().unwrap();
        st.inodes.clear();
        st.live.clear();
        st.durable.clear();
        st.created = Some(false);
        drop(st);
        FaultFs {
            dir: dir.to_path_buf(),
            state: fs.state,
        }
    }

    /// Replaces the fault switches (and restarts their counts): arms a fault at a
    /// chosen moment of a scripted test.
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self.state.lock().unwrap();
        st.faults = faults;
        st.syncs = 0;
        st.writes = 0;
        st.cut_syncs = 0;
        st.dir_ops = 0;
        st.fired = None;
    }

    /// The process died at the cut (every operation since failed) but the machine
    /// did not: the files keep their live content and the operating system its
    /// page cache. A new process may use the files again; the power fails at
    /// operation `cut_at` (counted from the start).
    pub fn restart(&self, cut_at: u64) {
        let mut st = self.state.lock().unwrap();
        st.cut_at = cut_at.max(st.ops);
        st.cut_in = None;
    }

    /// Installs `hook` (see [`Hook`]).
    pub fn set_hook(&self, hook: Arc<dyn Hook>) {
        self.state.lock().unwrap().hook = Some(hook);
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn name(&self, path: &Path) -> String {
        assert_eq!(path.parent().unwrap(), self.dir, "one directory");
        path.file_name().unwrap().to_str().unwrap().to_string()
    }

    pub fn is_cut(&self) -> bool {
        self.state.lock().unwrap().is_cut()
    }

    /// Renames of the file named `from` that succeeded.
    pub fn renames_from(&self, from: &str) -> u64 {
        let st = self.state.lock().unwrap();
        st.renamed_from.get(from).copied().unwrap_or(0)
    }

    /// The fault that fired (`"EIO dev0000.extents"`, …), if one did.
    pub fn fired(&self) -> Option<String> {
        self.state.lock().unwrap().fired.clone()
    }

    /// Bytes the live files hold (what counts against `capacity_bytes`).
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().unwrap().used()
    }

    /// File operations so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().unwrap().ops
    }

    /// The live content of `name` (what the real file holds).
    pub fn live(&self, name: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.live.get(name).map(|&ino| st.inodes[ino].live.clone())
    }

    /// The synced content of the file now named `name`.
    pub fn synced(&self, name: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.live.get(name).map(|&ino| st.inodes[ino].synced.clone())
    }

    /// Whether the cut failed a checkpoint or pointer operation (a rotation).
    pub fn cut_a_rotation(&self) -> bool {
        self.state
            .lock()
            .unwrap()
            .cut_in
            .as_deref()
            .is_some_and(|n| n.starts_with("checkpoint-") || n.starts_with("CURRENT"))
    }

    /// Applies the power cut to the real files (the store must be dropped).
    pub fn cut(&self, rng: &mut Rng, mode: Cut) -> CutStats {
        let st = self.state.lock().unwrap();
        let mut stats = CutStats::default();
        if mode == Cut::Nothing {
            return stats;
        }
        if st.created == Some(false) && self.dir.exists() {
            // Created, never synced into its parent: the creation is undone.
            std::fs::remove_dir_all(&self.dir).unwrap();
            return stats;
        }
        for name in st.live.keys() {
            std::fs::remove_file(self.dir.join(name)).unwrap();
        }
        // The names as of the last directory sync; with `AnySubset`, each
        // directory operation since then kept or undone independently (one
        // whose name an undone operation never made is skipped).
        let mut names = st.durable.clone();
        if mode == Cut::AnySubset {
            for op in &st.dir_log {
                if rng.below(2) == 0 {
                    continue;
                }
                match op {
                    DirOp::Create(name, ino) => {
                        names.insert(name.clone(), *ino);
                    }
                    DirOp::Rename(from, to) => {
                        if let Some(ino) = names.remove(from) {
                            names.insert(to.clone(), ino);
                        }
                    }
                    DirOp::Remove(name) => {
                        names.remove(name);
                    }
                }
            }
        }
        for (name, &ino) in &names {
            let inode = &st.inodes[ino];
            let bytes = match mode {
                Cut::Nothing | Cut::Synced => inode.synced.clone(),
                Cut::TornTail => torn_tail(inode, rng),
                Cut::AnySubset => any_subset(inode, rng, &mut stats),
            };
            stats.files_changed += u64::from(bytes != inode.live);
            std::fs::write(self.dir.join(name), &bytes).unwrap();
        }
        stats
    }
}

/// The synced content plus a prefix of the unsynced appended bytes whose last
/// sector is garbage (or just the synced content).
fn torn_tail(inode: &Inode, rng: &mut Rng) -> Vec<u8> {
    let mut bytes = inode.synced.clone();
    if inode.live.len() > bytes.len() && rng.below(2) == 0 {
        let start = bytes.len();
        let keep = 1 + rng.below((inode.live.len() - start) as u64) as usize;
        bytes.extend_from_slice(&inode.live[start..start + keep]);
        let sector = ((start + keep - 1) / SECTOR * SECTOR).max(start);
        for b in &mut bytes[sector..] {
            *b = rng.next() as u8;
        }
    }
    bytes
}

/// Whether, among the sectors of `live` whose bytes differ from `synced`'s
/// (zeros past its end, as [`extentmeta::sim::overwrite_survivor`] reads it),
/// one that `out` holds with every changed byte new follows one it does not.
fn later_sector_without_earlier(synced: &[u8], live: &[u8], out: &[u8]) -> bool {
    let old = |i: usize| synced.get(i).copied().unwrap_or(0);
    let mut missing = false;
    // Bounded: one pass per sector of the live file.
    for at in (0..live.len()).step_by(SECTOR) {
        let mut changed = (at..(at + SECTOR).min(live.len())).filter(|&i| old(i) != live[i]);
        let Some(first) = changed.next() else {
            continue;
        };
        let held = std::iter::once(first)
            .chain(changed)
            .all(|i| out.get(i) == Some(&live[i]));
        if held && missing {
            return true;
        }
        missing |= !held;
    }
    false
}

/// What survives of a file whose live content was not synced: a length between the
/// synced and the live one, and every sector past the synced bytes persisted,
/// never written (zeros) or torn (garbage), independently. After an overwrite
/// or a cut, the length is the synced or the live one, and every sector where
/// the two differ holds the old bytes, the new ones or garbage, independently.
fn any_subset(inode: &Inode, rng: &mut Rng, stats: &mut CutStats) -> Vec<u8> {
    let (synced, live) = (&inode.synced, &inode.live);
    if synced == live {
        return synced.clone();
    }
    let out = match live.starts_with(synced) {
        // The emulator's model of the same loss.
        false => extentmeta::sim::overwrite_survivor(synced, live, |n| rng.below(n)),
        true => appended_survivor(synced, live, rng),
    };
    // An append's and an overwrite's (a journal's group commit writes over
    // the zeros written ahead of its frames) count alike.
    if is_journal(&inode.name) && later_sector_without_earlier(synced, live, &out) {
        stats.later_sector_without_earlier += 1;
    }
    out
}

/// [`any_subset`] of a file that only grew since its last sync.
fn appended_survivor(synced: &[u8], live: &[u8], rng: &mut Rng) -> Vec<u8> {
    // One cut in four keeps the whole length (every sector was reached).
    let end = if rng.below(4) == 0 {
        live.len()
    } else {
        synced.len() + rng.below((live.len() - synced.len() + 1) as u64) as usize
    };
    let mut out = live[..end].to_vec();
    let mut at = synced.len();
    // Bounded: each pass moves to the next sector boundary.
    while at < end {
        let to = ((at / SECTOR + 1) * SECTOR).min(end);
        match rng.below(8) {
            // Persisted: the live bytes.
            0..=3 => {}
            // Never reached the disk.
            4..=6 => out[at..to].fill(0),
            // Torn.
            _ => out[at..to].iter_mut().for_each(|b| *b = rng.next() as u8),
        }
        at = to;
    }
    out
}

#[derive(Debug)]
struct FaultFile {
    real: Arc<dyn FsFile>,
    ino: usize,
    state: Arc<Mutex<State>>,
}

impl FaultFile {
    fn sync_under_lock(&self, verdict: SyncVerdict) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        let name = st.inodes[self.ino].name.clone();
        if let Some((target, nth)) = st.faults.cut_at_sync
            && target.matches(&name)
        {
            st.cut_syncs += 1;
            if st.cut_syncs == nth {
                st.cut_at = st.cut_at.min(st.ops);
            }
        }
        st.tick_on(self.ino)?;
        let mut fail = match verdict {
            SyncVerdict::Fail { drop_pages } => Some(drop_pages),
            SyncVerdict::OkWithoutPersisting => return Ok(()),
            SyncVerdict::Normal => None,
        };
        if let Some(f) = st.faults.sync_eio
            && st.fired.is_none()
            && f.target.matches(&name)
        {
            st.syncs += 1;
            if st.syncs == f.nth {
                fail = Some(f.drop_pages);
            }
        }
        if let Some(drop_pages) = fail {
            let kind = if drop_pages { "dropped" } else { "kept" };
            st.fired = Some(format!("EIO {name} (pages {kind})"));
            let inode = &mut st.inodes[self.ino];
            if drop_pages {
                inode.drop_pages();
                self.real.write_all_at(&inode.live, 0)?;
            } else {
                inode.keep_pages_unsynced();
            }
            return Err(io::Error::from_raw_os_error(5));
        }
        let lose = st.faults.lose_journal_syncs && is_journal(&name);
        if !lose {
            st.inodes[self.ino].sync();
        }
        Ok(())
    }
}

impl FsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let (hook, name) = {
            let mut st = self.state.lock().unwrap();
            st.tick_on(self.ino)?;
            (st.hook.clone(), st.inodes[self.ino].name.clone())
        };
        if hook.is_some_and(|h| h.fail_read(&name)) {
            return Err(io::Error::other("EIO (injected read fault)"));
        }
        self.real.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let (hook, name) = {
            let st = self.state.lock().unwrap();
            (st.hook.clone(), st.inodes[self.ino].name.clone())
        };
        if hook.is_some_and(|h| h.fail_write(&name)) {
            return Err(io::Error::other("EIO (injected write fault)"));
        }
        let (hook, name) = {
            let mut st = self.state.lock().unwrap();
            st.tick_on(self.ino)?;
            let name = st.inodes[self.ino].name.clone();
            if let Some(f) = st.faults.enospc
                && st.fired.is_none()
                && f.target.matches(&name)
            {
                st.writes += 1;
                if st.writes == f.nth {
                    let prefix = if f.short && buf.len() > 1 {
                        1 + st.rng.below(buf.len() as u64 - 1) as usize
                    } else {
                        0
                    };
                    st.fired = Some(format!("ENOSPC {name} after {prefix} of {} B", buf.len()));
                    if prefix > 0 {
                        self.real.write_all_at(&buf[..prefix], offset)?;
                        st.inodes[self.ino].write(&buf[..prefix], offset as usize);
                    }
                    return Err(io::Error::from_raw_os_error(28));
                }
            }
            let len = st.inodes[self.ino].live.len() as u64;
            let end = offset + buf.len() as u64;
            let free = st.free();
            if end.saturating_sub(len) > free {
                // The file system is full: what fits, then ENOSPC.
                let fits = (len + free).saturating_sub(offset).min(buf.len() as u64) as usize;
                if fits > 0 {
                    self.real.write_all_at(&buf[..fits], offset)?;
                    st.inodes[self.ino].write(&buf[..fits], offset as usize);
                }
                return Err(io::Error::from_raw_os_error(28));
            }
            self.real.write_all_at(buf, offset)?;
            st.inodes[self.ino].write(buf, offset as usize);
            (st.hook.clone(), name)
        };
        if let Some(hook) = hook {
            hook.after_write(&name);
        }
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let (hook, name) = {
            let st = self.state.lock().unwrap();
            (st.hook.clone(), st.inodes[self.ino].name.clone())
        };
        let verdict = hook
            .as_ref()
            .map_or(SyncVerdict::Normal, |h| h.before_sync(&name));
        let result = self.sync_under_lock(verdict);
        if let Some(hook) = hook {
            hook.after_sync(&name, result.is_err());
        }
        result
    }
    fn len(&self) -> io::Result<u64> {
        self.state.lock().unwrap().tick_on(self.ino)?;
        self.real.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.tick_on(self.ino)?;
        let old = st.inodes[self.ino].live.len() as u64;
        if len > old && len - old > st.free() {
            return Err(io::Error::from_raw_os_error(28));
        }
        self.real.set_len(len)?;
        let inode = &mut st.inodes[self.ino];
        inode.live.resize(len as usize, 0);
        inode.lost.retain(|&k, _| k < len as usize);
        Ok(())
    }
}

impl Fs for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.tick("dir")?;
        if st.created.is_some() && dir == self.dir {
            return std::fs::create_dir_all(dir);
        }
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
            None => st.new_inode(&name),
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
        st.dir_fault(&format!("rename {f} to {t}"))?;
        StdFs.rename(from, to)?;
        let ino = st.live.remove(&f).unwrap();
        st.live.insert(t.clone(), ino);
        // Faults and hooks find the file by the name it has now (`CURRENT`
        // after its temp file is renamed over it).
        st.inodes[ino].name = t.clone();
        *st.renamed_from.entry(f.clone()).or_default() += 1;
        st.dir_log.push(DirOp::Rename(f, t));
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let name = self.name(path);
        let mut st = self.state.lock().unwrap();
        st.tick(&name)?;
        st.dir_fault(&format!("remove {name}"))?;
        StdFs.remove(path)?;
        st.live.remove(&name);
        st.dir_log.push(DirOp::Remove(name));
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.tick("dir")?;
        if dir != self.dir {
            // The parent (or an ancestor): what it makes durable here is the
            // directory's own creation, once the directory exists. It may
            // fail as any directory operation may.
            st.dir_fault("sync of an ancestor")?;
            if Some(dir) == self.dir.parent() && self.dir.is_dir() && !st.faults.lose_parent_syncs {
                st.created = st.created.map(|_| true);
            }
            return Ok(());
        }
        st.dir_fault("sync")?;
        st.durable = st.live.clone();
        st.dir_log.clear();
        Ok(())
    }
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let name = self.name(path);
        let hook = self.state.lock().unwrap().hook.clone();
        if let Some(hook) = hook {
            hook.before_lock(&name);
        }
        let mut st = self.state.lock().unwrap();
        st.tick(&name)?;
        let guard = StdFs.lock(path)?;
        if !st.live.contains_key(&name) {
            st.new_inode(&name);
        }
        Ok(guard)
    }
}

/// A temporary directory, in `/dev/shm` if there is one (fast, and its `fsync` is
/// cheap).
pub fn tempdir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}
