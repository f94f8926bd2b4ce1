//! Peak memory of one large durable write: the rise of the process's peak RSS
//! (`VmHWM`) over its RSS with the value already built, for `Store::write` of a
//! slice (one copy) against `Store::write_bytes` of a value built in place and
//! of a `Vec<u8>` handed over (no copy either). Each case runs in a fresh child process, so each peak is its own.
//!
//! Run: `cargo bench --bench memory` (256 MiB; `EXTENTMETA_MEMORY_MIB` changes it).

mod common;

use common::status_bytes;
use extentmeta::{Bytes, ExtentId, Store, StoreConfig};
use std::process::Command;

fn mib() -> usize {
    std::env::var("EXTENTMETA_MEMORY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// One case, in this (child) process: prints the peak's rise in bytes.
fn child(case: &str) {
    let len = mib() << 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig::builder()
        .devices(1)
        .cache_bytes(0)
        .prefetch_workers(0)
        .max_extent_bytes(len as u64)
        .build()
        .expect("config");
    let store = Store::open(dir.path().join("store"), config).expect("open");
    let id = ExtentId(1);
    let rise = match case {
        "slice" => {
            let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let before = status_bytes("VmRSS:");
            store.write(id, &value).expect("write");
            status_bytes("VmHWM:").saturating_sub(before)
        }
        "vec" => {
            let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let before = status_bytes("VmRSS:");
            store
                .write_bytes(id, Bytes::from(value))
                .expect("write_bytes");
            status_bytes("VmHWM:").saturating_sub(before)
        }
        _ => {
            let mut value = Bytes::zeroed(len);
            for (i, b) in value
                .make_mut()
                .expect("only handle")
                .iter_mut()
                .enumerate()
            {
                *b = (i % 251) as u8;
            }
            let before = status_bytes("VmRSS:");
            store.write_bytes(id, value).expect("write_bytes");
            status_bytes("VmHWM:").saturating_sub(before)
        }
    };
    println!("{rise}");
}

fn main() {
    if let Ok(case) = std::env::var("EXTENTMETA_MEMORY_CASE") {
        child(&case);
        return;
    }
    let exe = std::env::current_exe().expect("this binary");
    let len = (mib() << 20) as f64;
    for case in ["slice", "bytes", "vec"] {
        let out = Command::new(&exe)
            .env("EXTENTMETA_MEMORY_CASE", case)
            .output()
            .expect("run the case");
        let rise: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the child prints its rise");
        let api = match case {
            "slice" => "write(&[u8])",
            "vec" => "write_bytes(Vec<u8>.into())",
            _ => "write_bytes(Bytes::zeroed)",
        };
        println!(
            "memory: {} MiB durable write via {api}: peak RSS rise {:.1} MiB = {:.3}x the value (bound <= 0.1 for write_bytes)",
            mib(),
            rise / (1 << 20) as f64,
            rise / len
        );
    }
}
