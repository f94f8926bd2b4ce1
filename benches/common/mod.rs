//! Helpers shared by the benchmarks that build durable stores and read their
//! memory: a parallel fill and the process's `/proc/self/status` figures.
#![allow(
    dead_code,
    reason = "each benchmark uses its own subset of the shared helpers"
)]

use extentmeta::{ExtentId, Store};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `ids` from 4 threads, 16-byte values naming the extent and `tag`.
pub(crate) fn fill(store: &Store, ids: std::ops::Range<u64>, tag: u64) {
    let next = AtomicU64::new(ids.start);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                // Bounded by the range.
                loop {
                    // Relaxed: unique ids only.
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= ids.end {
                        break;
                    }
                    let mut v = [0u8; 16];
                    v[..8].copy_from_slice(&id.to_le_bytes());
                    v[8..].copy_from_slice(&tag.to_le_bytes());
                    store.write(ExtentId(id), &v).expect("fill write");
                }
            });
        }
    });
}

/// `VmRSS:` or `VmHWM:` of this process, in bytes.
pub(crate) fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .expect("a number of kB")
        * 1024
}
