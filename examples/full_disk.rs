//! A durable store on a really full file system: fills it until writes are
//! refused (FPRE029), checks that reads go on and deletes still commit, reclaims
//! space, writes again without a reopen, and reopens to check every acknowledged
//! extent. `tests/full_disk.rs` runs the same story on a simulated budget; this
//! runs it on a real one, e.g. a small tmpfs (CI mounts one, as root):
//!
//! ```text
//! mkdir -p /tmp/full && mount -t tmpfs -o size=8m tmpfs /tmp/full
//! cargo run --release --example full_disk -- /tmp/full/store
//! umount /tmp/full
//! ```
//!
//! Exits non-zero, saying why, if anything does not hold.
#![allow(clippy::unwrap_used, reason = "example: a panic is the failure report")]

use extentmeta::{ExtentId, Store, StoreConfig};
use std::collections::HashMap;

/// The value of `(id, generation)`: its first 16 bytes say which it is.
fn value(id: u64, generation: u64) -> Vec<u8> {
    let mut v = vec![(id as u8) ^ (generation as u8); 32 << 10];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v[8..16].copy_from_slice(&generation.to_le_bytes());
    v
}

fn generation_of(store: &Store, id: u64) -> Option<u64> {
    match store.read(ExtentId(id)) {
        Ok(bytes) => {
            assert_eq!(bytes.len(), 32 << 10, "extent {id}: length");
            assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), id);
            let generation = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
            assert_eq!(&bytes[..], &value(id, generation)[..], "extent {id}: bytes");
            Some(generation)
        }
        Err(e) if e.code() == "FPRE012" => None,
        Err(e) => panic!("extent {id}: {e}"),
    }
}

fn check(store: &Store, model: &HashMap<u64, Option<u64>>, when: &str) {
    for (&id, &generation) in model {
        assert_eq!(generation_of(store, id), generation, "extent {id} {when}");
    }
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: full_disk <dir on a small file system>");
    let config = StoreConfig::builder()
        .devices(2)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(16 << 10)
        .metadata_reserve_bytes(256 << 10)
        .build()
        .unwrap();
    let store = Store::open(&dir, config.clone()).unwrap();
    let mut model = HashMap::new();
    let mut refused = None;
    for id in 0..100_000 {
        match store.write(ExtentId(id), &value(id, 1)) {
            Ok(_) => {
                model.insert(id, Some(1));
            }
            Err(e) => {
                refused = Some((id, e));
                break;
            }
        }
    }
    let (id, err) = refused.expect("the file system filled up");
    assert_eq!(err.code(), "FPRE029", "the first refused write: {err}");
    println!("full after {id} extents of 32 KiB: {err}");
    assert_eq!(
        generation_of(&store, id),
        None,
        "a refused write is invisible"
    );
    check(&store, &model, "on the full disk");
    let deletes: Vec<u64> = (0..id).step_by(2).collect();
    for &d in &deletes {
        store.delete(ExtentId(d)).unwrap();
        model.insert(d, None);
    }
    println!(
        "deleted {} extents on the full disk; journal {}",
        deletes.len(),
        store.stats().journal_number
    );
    let released = store.reclaim_space().unwrap();
    println!("reclaim_space released {released} bytes");
    // Writes resume once the metadata reserve can be made again: after a
    // rotation's checkpoint in progress has removed the journals it replaces
    // (FPRE029's advice), so wait for it, and retry a refusal meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for &d in deletes.iter().take(8) {
        // Bounded: until the deadline.
        loop {
            match store.write(ExtentId(d), &value(d, 2)) {
                Ok(_) => break,
                Err(e) if e.code() == "FPRE029" && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("a write after reclamation: {e}"),
            }
        }
        model.insert(d, Some(2));
    }
    println!("wrote 8 extents again without a reopen");
    check(&store, &model, "after reclamation");
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir, config).unwrap();
    assert!(store.recovery().unwrap().clean_close);
    check(&store, &model, "after the reopen");
    println!(
        "reopened: all {} acknowledged extents as written, deleted ones gone",
        model.len()
    );
}
