//! Read faults while a store recovers.
//!
//! A power cut (or a killed process) leaves a directory; recovering it reads the
//! pointer, the checkpoint, every journal since, and the data of records whose
//! durability recovery must check. Each of those reads may meet a media fault.
//! The rule is FPRE004's, applied to the disk: a read that failed says nothing
//! about the bytes, so recovery must never take it for damage or for a torn
//! tail (which it would cut, losing acknowledged records), and never drop a
//! record whose data it could not read.
//!
//! For each directory below (made by a seeded workload and a seeded cut), every
//! read of its recovery is failed in turn, once (a transient fault) or from then
//! on for that file (an unreadable file). Each open must then either succeed with
//! exactly what a fault-free recovery of the same directory finds, or fail with
//! an I/O error (FPRE009), never with a code that says the files are damaged. The
//! power then fails (what the failed open wrote but did not sync may be lost in
//! any subset of sectors), and a fault-free open must find exactly the fault-free
//! recovery's state: a failed recovery changes nothing a later one sees.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::fault_fs::{self, Cut, FaultFs, Faults, Hook, Rng, SyncFault, Target, WriteFault};
use common::{decode, value};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const EXTENTS: u64 = 24;

fn config() -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .cache_bytes(0)
        .prefetch_workers(0)
        // Small: rotations leave a checkpoint and several journals to read.
        .journal_max_bytes(4096)
        .metadata_reserve_bytes(16 << 10)
        // About half the writes travel in their journal record (recovery writes
        // them back); the others sync their data first (recovery reads back
        // those whose `Synced` marker the cut left out).
        .inline_write_max(800)
        .build()
        .unwrap()
}

fn len_of(id: u64, generation: u64) -> usize {
    let h = id * 131 + generation * 61;
    match h % 8 {
        0 => 4200 + (h / 8 % 8000) as usize,
        _ => 100 + (h % 1400) as usize,
    }
}

/// What a store holds: extent → its generation, `None` if absent.
type State = BTreeMap<u64, Option<u64>>;

fn state(store: &Store) -> Result<State, extentmeta::Error> {
    let mut found = State::new();
    for id in 0..EXTENTS {
        let generation = match store.read(ExtentId(id)) {
            Ok(bytes) => {
                let (got, generation) = decode(&bytes);
                assert_eq!(got, ExtentId(id));
                Some(generation)
            }
            Err(e) if e.code() == "FPRE012" => None,
            Err(e) => return Err(e),
        };
        found.insert(id, generation);
    }
    Ok(found)
}

/// A directory a seeded workload left at a seeded cut: the power fails at file
/// operation `cut_at` and `mode` decides what of the unsynced bytes survives
/// (`Cut::Nothing`: the process was killed, the files keep everything).
fn make_directory(dir: &Path, seed: u64, mode: Cut) {
    let mut rng = Rng::new(seed);
    let cut_at = 300 + rng.below(900);
    let fs = FaultFs::unborn(dir, cut_at, Faults::default());
    if let Ok(store) = Store::open_in(Arc::new(fs.clone()), dir, config()) {
        let mut generation = [0u64; EXTENTS as usize];
        while !fs.is_cut() {
            let id = rng.below(EXTENTS);
            let result = match rng.below(8) {
                0 => store.delete(ExtentId(id)).map(drop),
                _ => {
                    generation[id as usize] += 1;
                    let g = generation[id as usize];
                    let bytes = value(ExtentId(id), g, len_of(id, g));
                    store.write(ExtentId(id), &bytes).map(drop)
                }
            };
            if let Err(e) = result {
                // Deleting an extent never written (or deleted) is FPRE012.
                assert!(
                    fs.is_cut() || e.code() == "FPRE012",
                    "seed {seed}: {e} before the cut"
                );
            }
        }
    }
    fs.cut(&mut rng, mode);
}

fn copy_directory(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Fails the `nth` read (1-based) of the open, and with `persistent` every later
/// read of the same file. SeqCst: counters and a switch the store's threads and
/// the test share, ordered with nothing else.
#[derive(Debug, Default)]
struct FailRead {
    nth: u64,
    persistent: bool,
    reads: AtomicU64,
    off: AtomicBool,
    failed: Mutex<Option<String>>,
}

impl Hook for FailRead {
    fn fail_read(&self, file: &str) -> bool {
        if self.off.load(Ordering::SeqCst) {
            return false;
        }
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        let mut failed = self.failed.lock().unwrap();
        match failed.as_deref() {
            None if n == self.nth => {
                *failed = Some(file.to_string());
                true
            }
            Some(f) => self.persistent && f == file,
            None => false,
        }
    }
}

/// The kinds of file a fault hit across a run, to show what it covered.
#[derive(Debug, Default)]
struct Coverage {
    /// File kind (name up to its first '-' or '.') → faults that failed the open.
    failed_opens: BTreeMap<String, u64>,
    /// File kind → faults the open got past.
    survived: BTreeMap<String, u64>,
}

fn kind(file: &str) -> String {
    match file.split(['-', '.']).next().unwrap_or(file) {
        device if device.starts_with("dev") => "device".to_string(),
        other => other.to_string(),
    }
}

/// What a fault-free recovery of a copy of `template` (made in `tmp`) finds.
fn clean_state(template: &Path, tmp: &Path) -> State {
    let clean_dir = tmp.join("clean");
    copy_directory(template, &clean_dir);
    let store = Store::open(&clean_dir, config()).unwrap();
    state(&store).unwrap()
}

/// The power fails after an open on `fs` (whatever it wrote and did not sync
/// persists in any subset of sectors, seeded by `seed`), the fault is gone,
/// and a fault-free open must find `clean`; then the directory goes.
fn cut_then_recover(fs: &FaultFs, seed: u64, clean: &State, what: &str) {
    fs.cut(&mut Rng::new(seed), Cut::AnySubset);
    let store = Store::open(fs.dir(), config())
        .unwrap_or_else(|e| panic!("{what}: the next open failed: {e}"));
    assert_eq!(&state(&store).unwrap(), clean, "{what}: the next recovery");
    drop(store);
    std::fs::remove_dir_all(fs.dir()).unwrap();
}

/// Fails each read of the recovery of `template` in turn; checks every outcome.
fn fail_each_read(template: &Path, persistent: bool, coverage: &mut Coverage) {
    let tmp = fault_fs::tempdir();
    let clean = clean_state(template, tmp.path());
    for nth in 1.. {
        let dir = tmp.path().join(format!("fault-{nth}"));
        copy_directory(template, &dir);
        let fs = FaultFs::new(&dir, u64::MAX, Faults::default());
        let hook = Arc::new(FailRead {
            nth,
            persistent,
            ..FailRead::default()
        });
        fs.set_hook(hook.clone());
        let opened = Store::open_in(Arc::new(fs.clone()), &dir, config());
        // Reads of the extents below are not the recovery's.
        hook.off.store(true, Ordering::SeqCst);
        let failed = hook.failed.lock().unwrap().clone();
        let Some(file) = failed else {
            // Every read of the recovery came before the nth.
            let store = opened.unwrap_or_else(|e| panic!("no fault, yet: {e}"));
            assert_eq!(state(&store).unwrap(), clean);
            assert!(nth > 1, "the recovery read nothing");
            return;
        };
        let what = format!("read {nth} ({file}) failed, persistent {persistent}");
        match opened {
            Ok(store) => {
                // Past a fault recovery did not need, or one it read again past:
                // the same state.
                let got = state(&store).unwrap_or_else(|e| panic!("{what}: recovered, then {e}"));
                assert_eq!(got, clean, "{what}: recovered");
                *coverage.survived.entry(kind(&file)).or_default() += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), "FPRE009", "{what}: the open failed with {e}");
                *coverage.failed_opens.entry(kind(&file)).or_default() += 1;
            }
        }
        cut_then_recover(&fs, nth, &clean, &what);
    }
}

/// Runs `check` on the directories of seeds 1 to 16, each left by a cut of
/// another kind.
fn for_each_directory(mut check: impl FnMut(&Path)) {
    let modes = [Cut::Synced, Cut::TornTail, Cut::AnySubset, Cut::Nothing];
    for seed in 1..=16 {
        let tmp = fault_fs::tempdir();
        let template = tmp.path().join("store");
        make_directory(&template, seed, modes[seed as usize % modes.len()]);
        if template.exists() {
            check(&template);
        }
    }
}

fn run(persistent: bool) -> Coverage {
    let mut coverage = Coverage::default();
    for_each_directory(|template| fail_each_read(template, persistent, &mut coverage));
    eprintln!("{coverage:?}");
    coverage
}

/// What stepping through recoveries covered.
#[derive(Debug, Default)]
struct Steps {
    /// Opens the fault or the cut failed.
    failed_opens: u64,
    /// Opens that succeeded although the fault fired in them (it hit a step
    /// recovery may fail, such as the removal of a file it no longer needs).
    survived: u64,
    /// Failed opens by error code.
    codes: BTreeMap<&'static str, u64>,
}

/// Opens a copy of `template` on a file system `faults(step)` sets up, for
/// step = 1, 2, … until an open meets neither its fault nor its cut; after each,
/// the power fails and a fault-free open must find exactly what a fault-free
/// recovery of `template` finds.
fn fail_each_step(template: &Path, faults: impl Fn(u64) -> (u64, Faults), steps: &mut Steps) {
    let tmp = fault_fs::tempdir();
    let clean = clean_state(template, tmp.path());
    for step in 1.. {
        let dir = tmp.path().join(format!("step-{step}"));
        copy_directory(template, &dir);
        let (cut_at, armed) = faults(step);
        let fs = FaultFs::new(&dir, cut_at, armed);
        let opened = Store::open_in(Arc::new(fs.clone()), &dir, config());
        if !fs.is_cut() {
            // The power stays on past the open: the reads below are not the
            // recovery's.
            fs.restart(u64::MAX);
        }
        let hit = fs.is_cut() || fs.fired().is_some();
        let what = format!("step {step} ({:?}, cut {})", fs.fired(), fs.is_cut());
        match opened {
            Ok(store) => {
                if !hit {
                    // Past every step of the recovery.
                    assert_eq!(state(&store).unwrap(), clean, "{what}");
                    assert!(step > 1, "the recovery did nothing");
                    return;
                }
                steps.survived += 1;
                if !fs.is_cut() {
                    assert_eq!(state(&store).unwrap(), clean, "{what}: recovered");
                }
            }
            Err(e) => {
                assert!(hit, "{what}: the open failed with no fault: {e}");
                // Typed: an I/O error, or a full disk; never damage.
                assert!(
                    ["FPRE009", "FPRE029"].contains(&e.code()),
                    "{what}: the open failed with {e}"
                );
                steps.failed_opens += 1;
                *steps.codes.entry(e.code()).or_default() += 1;
            }
        }
        cut_then_recover(&fs, step, &clean, &what);
    }
}

#[test]
fn a_read_fault_during_recovery_fails_the_open_as_io_or_changes_nothing() {
    let c = run(false);
    // The faults hit every kind of file recovery reads: the data too, where a
    // record's `Synced` marker was lost.
    for kind in ["CURRENT", "checkpoint", "journal", "device"] {
        assert!(c.failed_opens.contains_key(kind), "{c:?}");
    }
}

#[test]
fn an_unreadable_file_during_recovery_fails_the_open_as_io_or_changes_nothing() {
    let c = run(true);
    for kind in ["CURRENT", "checkpoint", "journal", "device"] {
        assert!(c.failed_opens.contains_key(kind), "{c:?}");
    }
}

/// A power cut at each file operation of a recovery in turn (what it wrote and
/// did not sync then persists in any subset of sectors): the next recovery
/// finds exactly what an uninterrupted one finds.
#[test]
fn a_power_cut_at_each_step_of_a_recovery_changes_nothing_the_next_one_finds() {
    let mut steps = Steps::default();
    for_each_directory(|template| {
        fail_each_step(template, |step| (step, Faults::default()), &mut steps);
    });
    eprintln!("{steps:?}");
    assert!(steps.failed_opens > 100, "{steps:?}");
}

/// EIO from each sync of a recovery in turn (the pages dropped or kept), ENOSPC
/// from each write (nothing or a prefix written), EIO from each directory
/// operation: the open fails with a typed error or recovers the same state, and
/// after a power cut the next recovery finds exactly what a fault-free one finds.
#[test]
fn a_failed_sync_write_or_directory_operation_of_a_recovery_changes_nothing() {
    let mut by_fault: BTreeMap<&str, Steps> = BTreeMap::new();
    // The fault at step `nth` of the recovery, the power never cut.
    type Armed = fn(u64, bool) -> Faults;
    let kinds: [(&str, Armed); 3] = [
        ("sync EIO", |nth, drop_pages| Faults {
            sync_eio: Some(SyncFault {
                target: Target::Any,
                nth,
                drop_pages,
            }),
            ..Faults::default()
        }),
        ("write ENOSPC", |nth, short| Faults {
            enospc: Some(WriteFault {
                target: Target::Any,
                nth,
                short,
            }),
            ..Faults::default()
        }),
        ("directory EIO", |nth, _| Faults {
            dir_eio: Some(nth),
            ..Faults::default()
        }),
    ];
    for_each_directory(|template| {
        for (kind, armed) in kinds {
            // Pages dropped or kept; nothing or a prefix written (once for a
            // directory operation).
            let variants: &[bool] = if kind == "directory EIO" {
                &[false]
            } else {
                &[false, true]
            };
            for &variant in variants {
                let faults = |nth| (u64::MAX, armed(nth, variant));
                fail_each_step(template, faults, by_fault.entry(kind).or_default());
            }
        }
    });
    eprintln!("{by_fault:#?}");
    // A recovery whose sync or directory operation failed never serves what it
    // recovered: a later power cut could take it back. A full disk fails only a
    // write, which the recovery makes again once its metadata reserve is
    // released (see `journal::plan`): the open gets past it.
    for fault in ["sync EIO", "directory EIO"] {
        let steps = &by_fault[fault];
        assert!(
            steps.failed_opens > 10 && steps.survived == 0,
            "{fault}: {steps:?}"
        );
    }
    let full = &by_fault["write ENOSPC"];
    assert!(full.survived > 10, "{full:?}");
}
