//! Real crashes on real files: a child process (this test binary re-run with
//! [`CHILD_DIR`] set) runs 2 writer threads, 1 compactor and 1 reader on
//! `Store::open` and reports, over its stdout pipe, each write it is about to issue
//! (`issue <id> <generation>`) and each one acknowledged (`ack <id> <generation>`).
//! The parent kills it with SIGKILL after a seeded number of acknowledgments, reopens
//! the store and checks every extent: the value read is the last acknowledged
//! generation or a later one that was issued (invariant 9). A few dozen kills.
//!
//! The kill point in the child's execution depends on timing (what is in flight
//! when the signal lands); pass or fail does not: every outcome allowed above is
//! accepted, nothing else is.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::{decode, value};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const CHILD_DIR: &str = "EXTENTMETA_KILL_CHILD_DIR";
const CHILD_BASE: &str = "EXTENTMETA_KILL_CHILD_BASE";
/// Extents per writer thread; writer `w` owns ids `w * 100 ..`.
const IDS: u64 = 16;
/// Writes per child before it stops on its own (the parent kills it long before).
const CHILD_MAX_WRITES: u64 = 20_000;

fn config() -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .cache_bytes(1 << 20)
        .prefetch_workers(1)
        // Small: rotations happen within a child's life, so kills land in them too.
        .journal_max_bytes(8192)
        .build()
        .unwrap()
}

fn len_of(id: u64, generation: u64) -> usize {
    200 + ((id * 31 + generation * 7) % 3000) as usize
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Child half of [`sigkill_at_random_moments_loses_no_acknowledged_write`].
#[test]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // Not the child.
    };
    let base: u64 = std::env::var(CHILD_BASE).unwrap().parse().unwrap();
    let store = Arc::new(Store::open(&dir, config()).unwrap());
    // A panic on any of the child's threads is reported to the parent (its
    // stderr is not read, and a thread's panic alone would not end the child).
    std::panic::set_hook(Box::new(|info| {
        say(&format!("panic {}", info.to_string().replace('\n', " ")));
    }));
    say("");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..2u64 {
        let store = Arc::clone(&store);
        threads.push(std::thread::spawn(move || {
            for n in 0..CHILD_MAX_WRITES {
                let id = w * 100 + (n * 7 + w) % IDS;
                // Generations grow across children: `base` is above every earlier one.
                let generation = base + n;
                say(&format!("issue {id} {generation}"));
                store
                    .write(
                        ExtentId(id),
                        &value(ExtentId(id), generation, len_of(id, generation)),
                    )
                    .unwrap();
                say(&format!("ack {id} {generation}"));
            }
        }));
    }
    for role in 0..2u64 {
        let store = Arc::clone(&store);
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            // Relaxed: a stop flag, ordered with nothing. Bounded by the writers'
            // end (they stop after CHILD_MAX_WRITES) or the kill.
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = (n % 2) * 100 + (n * 5) % IDS;
                if role == 0 {
                    // Races with writers (an aborted compaction, a pending write)
                    // are fine; a compaction never changes a value.
                    let _ = store.compact(ExtentId(id));
                } else {
                    // Reported to the parent, which checks it against what was
                    // issued before it (`record`).
                    match store.read(ExtentId(id)) {
                        Ok(bytes) => {
                            let (got, generation) = decode(&bytes);
                            say(&format!("read {id} {} {generation}", got.0));
                        }
                        Err(e) => say(&format!("readerr {id} {}", e.code())),
                    }
                }
            }
        }));
    }
    for t in threads.drain(..2) {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Per extent: the last acknowledged generation and the highest issued one.
#[derive(Default)]
struct Model {
    acked: HashMap<u64, u64>,
    issued: HashMap<u64, u64>,
    /// Reads the children reported and the parent checked.
    reads: u64,
}

/// Runs one child until it has acknowledged `acks` writes, then SIGKILLs it.
fn run_child(dir: &Path, base: u64, acks: u64, model: &mut Model) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_BASE, base.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0;
    let mut line = String::new();
    // Bounded: the child writes CHILD_MAX_WRITES at most, then exits (EOF).
    while seen < acks {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen += record(&line, model);
    }
    child.kill().unwrap(); // SIGKILL (a no-op if it already exited)
    child.wait().unwrap();
    assert!(
        seen >= acks,
        "the child exited before {acks} acknowledgments"
    );
    // Bounded: the pipe holds what the child wrote before it died, then EOF.
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            return;
        }
        record(&line, model);
    }
}

/// Records an `issue` or `ack` line; returns 1 for an `ack`. A line the kill cut
/// short (no newline) is ignored: its write was not issued yet, or was already
/// acknowledged by then.
fn record(line: &str, model: &mut Model) -> u64 {
    if !line.ends_with('\n') {
        return 0;
    }
    let mut words = line.split_whitespace();
    match words.clone().next() {
        Some("panic") => panic!("the child {}", line.trim_end()),
        // A read returns its own extent at a generation issued before it (the
        // writer says "issue" before it writes, the reader "read" after it
        // read): never another extent's bytes, never a generation not written.
        Some("read") => {
            let n: Vec<u64> = words.skip(1).map(|w| w.parse().unwrap()).collect();
            let (id, got, generation) = (n[0], n[1], n[2]);
            assert_eq!(got, id, "a read of extent {id} returned extent {got}");
            let issued = model.issued.get(&id).copied().unwrap_or(0);
            assert!(
                generation <= issued,
                "extent {id} read generation {generation}, issued {issued}"
            );
            model.reads += 1;
            return 0;
        }
        // Vacant (not written yet), contended or rewritten on every attempt:
        // nothing else is an answer to a read on a healthy disk.
        Some("readerr") => {
            let code = line.split_whitespace().nth(2).unwrap_or("");
            assert!(
                matches!(code, "FPRE012" | "FPRE006" | "FPRE011"),
                "a read failed: {}",
                line.trim_end()
            );
            return 0;
        }
        _ => {}
    }
    let (Some(kind @ ("issue" | "ack")), Some(id), Some(generation)) =
        (words.next(), words.next(), words.next())
    else {
        return 0; // the test harness's own lines
    };
    let (id, generation): (u64, u64) = (id.parse().unwrap(), generation.parse().unwrap());
    if kind == "issue" {
        model.issued.insert(id, generation);
        0
    } else {
        let acked = model.acked.entry(id).or_insert(0);
        *acked = (*acked).max(generation);
        1
    }
}

fn check(dir: &Path, model: &mut Model, iteration: u64) {
    let store = Store::open(dir, config()).unwrap();
    for (&id, &issued) in &model.issued {
        let acked = model.acked.get(&id).copied();
        match store.read(ExtentId(id)) {
            Ok(bytes) => {
                let (got, generation) = decode(&bytes);
                assert_eq!(got, ExtentId(id));
                assert!(
                    generation >= acked.unwrap_or(0) && generation <= issued,
                    "kill {iteration}: extent {id} has generation {generation}; \
                     acknowledged {acked:?}, issued up to {issued}"
                );
                model.acked.insert(id, generation);
            }
            Err(e) => assert!(
                acked.is_none() && e.code() == "FPRE012",
                "kill {iteration}: extent {id}: {e}; acknowledged {acked:?}"
            ),
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    let tmp = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let mut rng = Rng(0x5eed_c0ff_ee11);
    let mut model = Model::default();
    for iteration in 0..40 {
        let acks = 1 + rng.below(300);
        run_child(
            tmp.path(),
            (iteration + 1) * CHILD_MAX_WRITES,
            acks,
            &mut model,
        );
        check(tmp.path(), &mut model, iteration);
    }
    assert!(
        model.acked.len() as u64 == 2 * IDS,
        "every extent was written"
    );
    assert!(model.reads > 0, "the children's reads were checked");
    let store = Store::open(tmp.path(), config()).unwrap();
    assert!(
        store.recovery().unwrap().checkpoint > 10,
        "the children rotated the journal many times"
    );
}
