//! A simulated metadata directory that executes the journal's [`FsOp`] plans and
//! loses, at a crash, what a real file system may lose.
//!
//! # Loss model
//!
//! * Every file has a *durable* image (what its last completed sync made survive)
//!   and a *current* one (what reads see). At a crash a file that grew keeps its
//!   durable bytes, and its length becomes anything from the durable length to
//!   the current one; each 512-byte sector of the bytes appended since persisted
//!   or not independently (the disk may write them in any order), and a few are
//!   torn (garbage). So the second sector of one write may survive while the
//!   first is lost. A file whose current image does not extend its durable one (a
//!   truncate or an overwrite not synced) keeps either image's length, and in
//!   each sector the bytes the unsynced writes changed are old, new or torn,
//!   independently.
//! * A sync that fails ([`SimDir::fail_sync`]) keeps the unsynced pages dirty,
//!   keeps them but marks them clean (reads see them; no later sync writes them
//!   unless they are written again), or drops them (reads see the disk again).
//! * Creates, renames and removes are durable only after the next
//!   [`FsOp::SyncDir`]. At a crash each one since the last directory sync is kept
//!   or undone, independently, replayed in order on the durable directory (a
//!   rename whose source is missing then does nothing).

use crate::journal::plan::FsOp;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Bytes of a sector: the unit a crash tears.
pub(crate) const SECTOR: usize = 512;

#[derive(Debug, Clone, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Byte ranges a failed sync left in the page cache marked clean: reads see
    /// them, no later sync writes them, until they are written again.
    stuck: Vec<(usize, usize)>,
}

/// What a failed sync does to the pages it could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailedSync {
    /// Kept dirty: a later sync may still write them.
    KeptDirty,
    /// Kept but marked clean (ext4): reads see them, no later sync writes them.
    KeptClean,
    /// Dropped: reads see what is on the disk.
    Dropped,
}

/// A directory operation not yet made durable by a directory sync.
#[derive(Debug, Clone)]
enum DirOp {
    Create(String, u64),
    Rename(String, String),
    Remove(String),
}

/// The simulated directory.
#[derive(Debug, Default, Clone)]
pub(crate) struct SimDir {
    inodes: BTreeMap<u64, Inode>,
    /// Names as reads see them.
    names: BTreeMap<String, u64>,
    /// Names as the last directory sync left them.
    durable_names: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
    next_inode: u64,
}

impl SimDir {
    /// The directory's names, sorted.
    pub(crate) fn list(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    /// A file's current bytes, `None` if it does not exist.
    pub(crate) fn read(&self, name: &str) -> Option<Vec<u8>> {
        let inode = self.names.get(name)?;
        self.inodes.get(inode).map(|i| i.current.clone())
    }

    /// A file's current length, `None` if it does not exist.
    pub(crate) fn len(&self, name: &str) -> Option<usize> {
        let inode = self.names.get(name)?;
        self.inodes.get(inode).map(|i| i.current.len())
    }

    /// Executes one plan step. A step on a missing file creates it (a write) or is
    /// an error (a sync or truncate), as on a real file system.
    pub(crate) fn apply(&mut self, op: &FsOp) -> Result<(), String> {
        match op {
            FsOp::Write {
                file,
                offset,
                bytes,
            } => {
                let inode = self.open_or_create(file);
                let i = self.inodes.entry(inode).or_default();
                let at = *offset as usize;
                let end = at + bytes.len();
                if i.current.len() < end {
                    i.current.resize(end, 0);
                }
                i.current[at..end].copy_from_slice(bytes);
                // Written again: dirty, so the next sync writes them.
                i.stuck = subtract(&i.stuck, at, end);
            }
            FsOp::Sync { file } => {
                let inode = self.inode(file)?;
                let i = self.inodes.entry(inode).or_default();
                let mut durable = i.current.clone();
                // Clean pages are not written: the disk keeps what it had there.
                for &(from, to) in &i.stuck {
                    for (at, b) in durable.iter_mut().enumerate().take(to).skip(from) {
                        *b = i.durable.get(at).copied().unwrap_or(0);
                    }
                }
                i.durable = durable;
            }
            FsOp::SyncDir => {
                self.durable_names = self.names.clone();
                self.pending.clear();
            }
            FsOp::Rename { from, to } => {
                let inode = self.inode(from)?;
                self.names.remove(from);
                self.names.insert(to.clone(), inode);
                self.pending.push(DirOp::Rename(from.clone(), to.clone()));
            }
            FsOp::Adopt { from, to } => {
                if let Some(inode) = self.names.remove(from) {
                    self.names.insert(to.clone(), inode);
                    self.pending.push(DirOp::Rename(from.clone(), to.clone()));
                }
            }
            FsOp::Remove { file } => {
                if self.names.remove(file).is_some() {
                    self.pending.push(DirOp::Remove(file.clone()));
                }
            }
            FsOp::Truncate { file, len } => {
                let inode = self.inode(file)?;
                let i = self.inodes.entry(inode).or_default();
                i.current.resize(*len as usize, 0);
                i.stuck = subtract(&i.stuck, *len as usize, usize::MAX);
            }
            // The devices are the fabric's: their drivers run these steps.
            FsOp::DeviceWrite { .. } | FsOp::SyncDevices => {
                return Err("a device step reached the metadata directory".into());
            }
            // The emulator plans its checkpoints with their image's bytes.
            FsOp::WriteImage { .. } => {
                return Err("a checkpoint without its bytes reached the emulator".into());
            }
        }
        Ok(())
    }

    /// A sync of `file` failed: its unsynced pages are kept dirty, kept clean or
    /// dropped (see the module docs).
    pub(crate) fn fail_sync(&mut self, file: &str, how: FailedSync) {
        let Ok(inode) = self.inode(file) else {
            return;
        };
        let i = self.inodes.entry(inode).or_default();
        let differs = (i.current.iter().zip(&i.durable))
            .position(|(c, d)| c != d)
            .unwrap_or(i.current.len().min(i.durable.len()));
        match how {
            FailedSync::KeptDirty => {}
            FailedSync::KeptClean if differs < i.current.len() => {
                i.stuck.push((differs, i.current.len()));
            }
            FailedSync::KeptClean => {}
            FailedSync::Dropped => {
                let durable = i.durable.clone();
                let len = i.current.len();
                i.current.truncate(differs);
                i.current
                    .extend(durable.iter().skip(differs).take(len - differs));
                i.current.resize(len, 0);
            }
        }
    }

    fn inode(&self, name: &str) -> Result<u64, String> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| format!("{name}: no such file"))
    }

    fn open_or_create(&mut self, name: &str) -> u64 {
        if let Some(&inode) = self.names.get(name) {
            return inode;
        }
        self.next_inode += 1;
        let inode = self.next_inode;
        self.inodes.insert(inode, Inode::default());
        self.names.insert(name.to_string(), inode);
        self.pending.push(DirOp::Create(name.to_string(), inode));
        inode
    }

    /// A power cut: applies the loss model (see the module docs). Returns how many
    /// files lost unsynced bytes and how many directory operations were undone.
    pub(crate) fn crash(&mut self, rng: &mut ChaCha8Rng) -> (u32, u32) {
        let mut undone = 0;
        let mut names = std::mem::take(&mut self.durable_names);
        // Bounded by the operations since the last directory sync.
        for op in std::mem::take(&mut self.pending) {
            if rng.random_bool(0.5) {
                undone += 1;
                continue;
            }
            match op {
                DirOp::Create(name, inode) => {
                    names.insert(name, inode);
                }
                DirOp::Rename(from, to) => {
                    if let Some(inode) = names.remove(&from) {
                        names.insert(to, inode);
                    }
                }
                DirOp::Remove(name) => {
                    names.remove(&name);
                }
            }
        }
        let live: std::collections::BTreeSet<u64> = names.values().copied().collect();
        self.inodes.retain(|inode, _| live.contains(inode));
        let mut lost = 0;
        for i in self.inodes.values_mut() {
            // Clean pages never reached the disk: they are lost.
            for (from, to) in std::mem::take(&mut i.stuck) {
                for at in from..to.min(i.current.len()) {
                    i.current[at] = i.durable.get(at).copied().unwrap_or(0);
                }
            }
            if i.current != i.durable {
                lost += 1;
                i.current = survivor(&i.durable, &i.current, rng);
            }
            i.durable = i.current.clone();
        }
        self.durable_names = names.clone();
        self.names = names;
        (lost, undone)
    }
}

/// `ranges` without `[from, to)`.
fn subtract(ranges: &[(usize, usize)], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges {
        if a < from {
            out.push((a, b.min(from)));
        }
        if b > to {
            out.push((a.max(to), b));
        }
    }
    out.retain(|(a, b)| a < b);
    out
}

/// What survives of a file whose current bytes were not synced (see the module
/// docs): a length between the two images, and every sector past the durable
/// bytes new, never written (zeros) or torn, independently. After a truncate
/// or an overwrite: either image's length, and in every sector the bytes the
/// unsynced writes changed old, new or torn, independently.
fn survivor(durable: &[u8], current: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    if !current.starts_with(durable) {
        return overwrite_survivor(durable, current, |n| rng.random_range(0..n));
    }
    let end = rng.random_range(durable.len()..=current.len());
    let mut out = current[..end].to_vec();
    let mut at = durable.len();
    // Bounded: each pass moves to the next sector boundary.
    while at < end {
        let to = ((at / SECTOR + 1) * SECTOR).min(end);
        match rng.random_range(0..8) {
            // Written: the current bytes.
            0..=3 => {}
            // Never reached the disk.
            4..=6 => out[at..to].fill(0),
            // Torn.
            _ => out[at..to].iter_mut().for_each(|b| *b = rng.random()),
        }
        at = to;
    }
    out
}

/// What a power cut leaves of a file truncated or overwritten since its last
/// sync, `durable` being what its last sync made durable and `current` what
/// the writes since made of it: the length of either, and in every 512-byte
/// sector the bytes the writes changed old, new or torn (garbage),
/// independently; the durable bytes around them in the sector stay, as in an
/// append's last sector. `draw(n)` is a number below `n` from the caller's
/// random source: the emulator and the tests' fault-injecting file system
/// model the same loss with it.
pub fn overwrite_survivor(
    durable: &[u8],
    current: &[u8],
    mut draw: impl FnMut(u64) -> u64,
) -> Vec<u8> {
    let len = if draw(2) == 0 {
        durable.len()
    } else {
        current.len()
    };
    let byte = |image: &[u8], i: usize| image.get(i).copied().unwrap_or(0);
    let mut out: Vec<u8> = (0..len).map(|i| byte(durable, i)).collect();
    let mut at = 0;
    // Bounded: each pass moves to the next sector boundary.
    while at < len {
        let to = ((at / SECTOR + 1) * SECTOR).min(len);
        let changed = (at..to).filter(|&i| byte(durable, i) != byte(current, i));
        if let (Some(first), Some(last)) = (changed.clone().next(), changed.clone().next_back()) {
            match draw(8) {
                // The old bytes stay.
                0..=3 => {}
                // Written: the current bytes.
                4..=6 => (first..=last).for_each(|i| out[i] = byte(current, i)),
                // Torn.
                _ => out[first..=last]
                    .iter_mut()
                    .for_each(|b| *b = draw(256) as u8),
            }
        }
        at = to;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn write(file: &str, offset: u64, bytes: &[u8]) -> FsOp {
        FsOp::Write {
            file: file.into(),
            offset,
            bytes: crate::bytes::Bytes::from(bytes),
        }
    }

    /// Pages a failed sync kept but marked clean are read, but a later sync does
    /// not write them, and a crash loses them; written again, they are synced.
    #[test]
    fn clean_pages_of_a_failed_sync_reach_the_disk_only_when_written_again() {
        let mut d = SimDir::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        d.apply(&write("j", 0, &[1; 100])).unwrap();
        d.apply(&FsOp::Sync { file: "j".into() }).unwrap();
        d.apply(&FsOp::SyncDir).unwrap();
        d.apply(&write("j", 100, &[2; 50])).unwrap();
        d.fail_sync("j", FailedSync::KeptClean);
        assert_eq!(
            d.read("j").unwrap()[100..],
            [2; 50],
            "the page cache serves them"
        );
        d.apply(&FsOp::Sync { file: "j".into() }).unwrap();
        let mut lost = d.clone();
        lost.crash(&mut rng);
        assert_eq!(lost.read("j").unwrap()[100..], [0; 50], "never written");
        d.apply(&write("j", 100, &[2; 50])).unwrap();
        d.apply(&FsOp::Sync { file: "j".into() }).unwrap();
        d.crash(&mut rng);
        assert_eq!(
            d.read("j").unwrap()[100..],
            [2; 50],
            "written again, then synced"
        );
        // Dropped pages read as the disk again.
        d.apply(&write("j", 150, &[3; 10])).unwrap();
        d.fail_sync("j", FailedSync::Dropped);
        assert_eq!(d.read("j").unwrap().len(), 160);
        assert_eq!(d.read("j").unwrap()[150..], [0; 10]);
    }

    #[test]
    fn synced_bytes_and_synced_names_survive_every_crash() {
        for seed in 0..64 {
            let mut d = SimDir::default();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            d.apply(&write("a", 0, &[1; 100])).unwrap();
            d.apply(&FsOp::Sync { file: "a".into() }).unwrap();
            d.apply(&FsOp::SyncDir).unwrap();
            d.apply(&write("a", 100, &[2; 1000])).unwrap();
            d.apply(&write("b", 0, &[3; 10])).unwrap();
            d.crash(&mut rng);
            let a = d.read("a").expect("a synced name survives");
            assert!(a.len() >= 100 && a.len() <= 1100);
            assert_eq!(&a[..100], &[1; 100], "synced bytes are never torn");
            // b was never synced: it may be gone, or keep a (torn) prefix.
            assert!(d.read("b").is_none_or(|b| b.len() <= 10));
        }
    }

    #[test]
    fn an_unsynced_rename_may_be_undone_and_a_torn_tail_is_garbage() {
        let (mut undone, mut kept, mut torn, mut out_of_order) = (0, 0, 0, 0);
        for seed in 0..200 {
            let mut d = SimDir::default();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            d.apply(&write("tmp", 0, &[7; 24])).unwrap();
            d.apply(&FsOp::Sync { file: "tmp".into() }).unwrap();
            d.apply(&write("j", 0, &[5; 2000])).unwrap();
            d.apply(&FsOp::Sync { file: "j".into() }).unwrap();
            d.apply(&FsOp::SyncDir).unwrap();
            d.apply(&FsOp::Rename {
                from: "tmp".into(),
                to: "CURRENT".into(),
            })
            .unwrap();
            d.apply(&write("j", 2000, &[6; 2000])).unwrap();
            d.crash(&mut rng);
            match (d.read("tmp"), d.read("CURRENT")) {
                (Some(_), None) => undone += 1,
                (None, Some(c)) => {
                    assert_eq!(c, vec![7; 24]);
                    kept += 1
                }
                other => panic!("the rename is atomic: {other:?}"),
            }
            let j = d.read("j").expect("synced");
            assert_eq!(&j[..2000], &[5; 2000][..]);
            torn += usize::from(j[2000..].iter().any(|&b| b != 6));
            // A later sector of the unsynced write kept while an earlier one was
            // lost: the state the old prefix-only model could not produce.
            let sector_kept = |s: usize| {
                j.len() >= (s + 1) * SECTOR
                    && j[s * SECTOR..(s + 1) * SECTOR].iter().all(|&b| b == 6)
            };
            let sector_lost = |s: usize| {
                j.len() >= (s + 1) * SECTOR
                    && j[s * SECTOR..(s + 1) * SECTOR].iter().all(|&b| b == 0)
            };
            out_of_order += usize::from(sector_lost(4) && sector_kept(6));
        }
        assert!(undone > 0 && kept > 0 && torn > 0, "{undone} {kept} {torn}");
        assert!(
            out_of_order > 0,
            "sectors persisted out of order in no crash"
        );
    }
}
