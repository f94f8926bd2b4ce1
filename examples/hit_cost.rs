//! The cost of one cache hit, counted rather than timed: run it under
//! cachegrind, which counts the instructions and simulated cache misses of a
//! fixed number of hits, the same on every run (this machine's timings move by
//! more than the difference between the two hit paths; BENCHMARKS.md, "The hit
//! path's slot").
//!
//! ```text
//! cargo build --release --example hit_cost
//! for who in extentmeta quick_cache; do for rounds in 10 210; do
//!   valgrind --tool=cachegrind --cache-sim=yes --D1=65536,4,64 --LL=1048576,8,64 \
//!     --cachegrind-out-file=/dev/null target/release/examples/hit_cost $who $rounds
//! done; done
//! ```
//!
//! Each run builds both caches as `benches/cache.rs`'s `hit-ab` does (4 096
//! extents of 4 KiB, cached at generation 1) and then looks up 1 024 random
//! extents `rounds` times through one of them: extentmeta's hit (table
//! snapshot, then the tag-checked lookup) or quick_cache's `get`. The difference
//! between the 210- and the 10-round runs, divided by 200 × 1 024, is the cost
//! of one hit, set-up excluded. `--LL` is set to the L2 (1 MiB) of this
//! machine: the L3 holds both caches whole.

use extentmeta::{
    Bytes, Cache, Change, ExtentId, ExtentTable, Location, Priority, TableConfig, cache::Lookup,
    checksum,
};
use std::hint::black_box;

const KEYS: u64 = 4096;
const BATCH: usize = 1024;

/// The bytes of `id` at generation 1.
fn value(id: u64) -> Bytes {
    let mut v = vec![0u8; 4096];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v[8..16].copy_from_slice(&1u64.to_le_bytes());
    Bytes::from(v)
}

/// The ids `hit-ab` looks up (SplitMix64, seed 7).
fn random_ids() -> Vec<u64> {
    let mut state = 7u64;
    (0..BATCH)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % KEYS
        })
        .collect()
}

/// extentmeta's hit: the snapshot's generation, then the tag-checked lookup.
#[inline(never)]
fn extentmeta_hit(table: &ExtentTable, cache: &Cache, id: u64) -> Option<Bytes> {
    let e = ExtentId(id);
    let snapshot = table.snapshot(e).ok()?;
    match cache.lookup(e, snapshot.generation(), Priority::Demand) {
        Lookup::Hit(bytes) => Some(bytes),
        _ => None,
    }
}

#[inline(never)]
fn quick_cache_get(cache: &quick_cache::sync::Cache<u64, Bytes>, id: u64) -> Option<Bytes> {
    cache.get(&id)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hit_cost extentmeta|quick_cache ROUNDS";
    let who = args.next().ok_or(usage)?;
    let rounds: usize = args.next().ok_or(usage)?.parse()?;
    let table = ExtentTable::new(TableConfig::builder().max_extents(KEYS).build()?);
    let cache = Cache::new(64 << 20, 16);
    let quick = quick_cache::sync::Cache::<u64, Bytes>::new(KEYS as usize * 2);
    for id in 0..KEYS {
        let e = ExtentId(id);
        let begun = table.transition(e, 0, Change::BeginWrite)?;
        let bytes = value(id);
        let commit = Change::CommitWrite {
            location: Location::new(0, id * 4096, 4096),
            checksum: checksum(e, 1, &bytes),
        };
        table.transition(e, begun.version(), commit)?;
        if let Lookup::Load(token) = cache.lookup(e, 1, Priority::Demand) {
            cache.complete(token, Ok(bytes), || true);
        }
        quick.insert(id, value(id));
    }
    let ids = random_ids();
    let hit: Box<dyn Fn(u64) -> Option<Bytes>> = match who.as_str() {
        "extentmeta" => Box::new(|id| extentmeta_hit(&table, &cache, id)),
        "quick_cache" => Box::new(|id| quick_cache_get(&quick, id)),
        _ => return Err(usage.into()),
    };
    for _ in 0..rounds {
        for &id in &ids {
            let bytes = black_box(hit(id)).ok_or("a miss")?;
            if bytes[..8] != id.to_le_bytes() {
                return Err(format!("extent {id}: the bytes of another extent").into());
            }
        }
    }
    Ok(())
}
