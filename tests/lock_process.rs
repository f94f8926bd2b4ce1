//! The directory lock held by another process. A test binary of its own: a
//! child spawned while another test of the same process holds a store's lock
//! holds a copy of that lock until it execs (`flock` belongs to the open file,
//! which `fork` shares), and that test's reopen would then find the directory
//! locked.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::{refused, value};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

fn config() -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .cache_bytes(0)
        .prefetch_workers(0)
        .build()
        .unwrap()
}

const CHILD_DIR: &str = "EXTENTMETA_LOCK_CHILD";

/// Child half of [`lock_held_by_another_process`]: opens the store named by the
/// environment, says so on stdout, and holds it until stdin closes.
#[test]
fn lock_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // Not the child: nothing to do.
    };
    let store = Store::open(&dir, config()).unwrap();
    println!("\nlock-child-opened");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(store);
}

#[test]
fn lock_held_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), config()).unwrap();
        for id in 0..5 {
            store
                .write(ExtentId(id), &value(ExtentId(id), 1, 100))
                .unwrap();
        }
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    // Bounded: the child prints a few harness lines before its token, or exits.
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        if line.trim_end().ends_with("lock-child-opened") {
            break;
        }
    }
    let err = refused(dir.path(), &config(), "FPRE026");
    assert!(err.to_string().contains("LOCK"), "{err}");
    drop(child.stdin.take()); // EOF: the child closes its store and exits.
    assert!(child.wait().unwrap().success());
    let store = Store::open(dir.path(), config()).unwrap();
    for id in 0..5 {
        let bytes = store.read(ExtentId(id)).unwrap();
        assert_eq!(&bytes[..], &value(ExtentId(id), 1, 100)[..]);
    }
}
