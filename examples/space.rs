//! Space amplification of a churn workload on `FileBackend` (issue 10): device
//! file bytes ÷ live bytes, before and after planner-driven packing.
//!
//! ```sh
//! cargo run --release --example space                       # churn with deletes, 50 % live
//! cargo run --release --example space -- --overwrite-only   # the workload main can run too
//! cargo run --release --example space -- --help             # every knob
//! ```
//!
//! Each operation picks a random extent; with deletes, half the operations write a
//! fresh value (1–64 KiB, uniform) and half delete it, so about half the extents
//! are live; with `--overwrite-only` every operation overwrites. Live bytes are the
//! values' lengths; file bytes are the device files' lengths on disk.

use clap::Parser;
use extentmeta::{CompactOutcome, ExtentId, FileBackend, PlanGoal, Store, StoreConfig};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Space amplification of a churn workload.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Distinct extents.
    #[arg(long, default_value_t = 1000)]
    extents: u64,
    /// Operations after the initial fill.
    #[arg(long, default_value_t = 10_000)]
    ops: u64,
    /// Devices (one file each).
    #[arg(long, default_value_t = 2)]
    devices: u16,
    /// Only overwrites, no deletes (every extent stays live).
    #[arg(long)]
    overwrite_only: bool,
    /// The largest share of free holes in a device file the planner aims for.
    #[arg(long, default_value_t = 0.05)]
    target: f64,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory for the device files (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("space: {err}");
            ExitCode::FAILURE
        }
    }
}

fn files_bytes(backend: &FileBackend, devices: u16) -> std::io::Result<u64> {
    (0..devices)
        .map(|d| std::fs::metadata(backend.device_path(d)).map(|m| m.len()))
        .sum()
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let backend = Arc::new(FileBackend::open(&dir, args.devices)?);
    let config = StoreConfig::builder()
        .cache_bytes(0)
        .prefetch_workers(0)
        .build()?;
    let store = Store::new(Arc::clone(&backend), config)?;
    let mut lengths = vec![0u64; args.extents as usize];
    let mut x = args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let started = Instant::now();
    let write = |id: u64, next: &mut dyn FnMut() -> u64| -> extentmeta::Result<u64> {
        let len = 1024 + next() % (63 * 1024 + 1);
        let generation = store.snapshot(ExtentId(id))?.generation() + 1;
        let mut bytes = vec![0u8; len as usize];
        bytes[..16].copy_from_slice(&(id ^ generation << 40).to_le_bytes().repeat(2));
        store.write(ExtentId(id), &bytes)?;
        Ok(len)
    };
    for id in 0..args.extents {
        lengths[id as usize] = write(id, &mut next)?;
    }
    for _ in 0..args.ops {
        let id = next() % args.extents;
        if args.overwrite_only || next() % 2 == 0 {
            lengths[id as usize] = write(id, &mut next)?;
        } else if lengths[id as usize] > 0 {
            store.delete(ExtentId(id))?;
            lengths[id as usize] = 0;
        }
    }
    let churn_secs = started.elapsed().as_secs_f64();
    store.reclaim_space()?;
    let live: u64 = lengths.iter().sum();
    let live_extents = lengths.iter().filter(|&&l| l > 0).count();
    let before = files_bytes(&backend, args.devices)?;
    report("after churn", before, live, &store);

    let started = Instant::now();
    let plan = store.plan_compaction(&PlanGoal::FreeRatio {
        target: args.target,
    });
    let outcomes = store.pack(&plan);
    let moved = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(CompactOutcome::Committed(_))))
        .count();
    store.reclaim_space()?;
    let pack_secs = started.elapsed().as_secs_f64();
    let after = files_bytes(&backend, args.devices)?;
    report("after packing", after, live, &store);
    println!(
        "extents {} (live {live_extents}), ops {}, devices {}, {}; churn {churn_secs:.1} s",
        args.extents,
        args.ops,
        args.devices,
        if args.overwrite_only {
            "overwrite-only"
        } else {
            "50 % deletes"
        },
    );
    println!(
        "planned {} (target {:.2}), moved {moved}, {pack_secs:.2} s",
        plan.len(),
        args.target
    );
    Ok(())
}

fn report(when: &str, files: u64, live: u64, store: &Store) {
    let space = store.space();
    let sum = |f: fn(&extentmeta::DeviceSpaceStats) -> u64| space.iter().map(f).sum::<u64>();
    println!(
        "{when:>14}: files {:>6.1} MB, live {:>6.1} MB: amplification {:.3} \
         (allocator: high-water {:.1} MB, block-rounded live {:.1} MB, {} holes, {:.1} MB free)",
        files as f64 / 1e6,
        live as f64 / 1e6,
        files as f64 / live.max(1) as f64,
        sum(|d| d.file_bytes) as f64 / 1e6,
        sum(|d| d.live_bytes) as f64 / 1e6,
        sum(|d| d.holes),
        sum(|d| d.free_bytes) as f64 / 1e6,
    );
}
