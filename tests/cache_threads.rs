//! The cache's books under contention: threads look up, fill, join loads and
//! invalidate on a few shards at once (each shard behind one lock, a spin lock
//! since issue 11's seventh pass). Loom checks small models of this protocol
//! with loom's mutex; this runs the lock that ships, with many more steps.
//!
//! Values encode their extent and generation, so a stale or torn value cannot
//! pass for the one a lookup asked for.

mod common;

use common::{decode, value};
use extentmeta::cache::{FlightOutcome, Lookup};
use extentmeta::{Bytes, Cache, ExtentId, Priority};
use std::sync::atomic::{AtomicU64, Ordering};

const IDS: u64 = 64;
const THREADS: u64 = 4;
const STEPS: u64 = 20_000;
/// Small enough that fills evict: 64 ids weigh about 75 KiB.
const CAPACITY: u64 = 48 << 10;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixed sizes, so that the size-aware rules take part.
fn bytes_of(id: u64, generation: u64) -> Bytes {
    Bytes::from(value(
        ExtentId(id),
        generation,
        100 + (id % 7) as usize * 300,
    ))
}

/// One thread's steps; returns how many demand lookups it made.
fn steps(cache: &Cache, truth: &[AtomicU64], seed: u64) -> u64 {
    let mut state = seed;
    let mut lookups = 0;
    for _ in 0..STEPS {
        let r = splitmix(&mut state);
        let id = r % IDS;
        let current = &truth[id as usize];
        if r % 50 == 7 {
            // A write: commit the next generation, then invalidate, in that order
            // (the contract `Cache::complete` states).
            let committed = current.fetch_add(1, Ordering::SeqCst) + 1;
            cache.invalidate(ExtentId(id), committed);
            continue;
        }
        // The snapshot, taken before the lookup.
        let generation = current.load(Ordering::SeqCst);
        lookups += 1;
        let check = |outcome: FlightOutcome| match outcome {
            FlightOutcome::Ready(bytes) => {
                assert_eq!(decode(&bytes), (ExtentId(id), generation));
            }
            FlightOutcome::Superseded => {
                assert!(
                    current.load(Ordering::SeqCst) > generation,
                    "superseded by nothing"
                );
            }
            FlightOutcome::Failed(e) => panic!("no load fails here: {e}"),
        };
        match cache.lookup(ExtentId(id), generation, Priority::Demand) {
            Lookup::Hit(bytes) => assert_eq!(decode(&bytes), (ExtentId(id), generation)),
            Lookup::Wait(flight) => check(flight.wait()),
            Lookup::Load(token) => {
                check(cache.complete(token, Ok(bytes_of(id, generation)), || {
                    current.load(Ordering::SeqCst) == generation
                }))
            }
            Lookup::Newer => assert!(current.load(Ordering::SeqCst) > generation),
        }
    }
    lookups
}

fn run(shards: usize) {
    let cache = Cache::new(CAPACITY, shards);
    let truth: Vec<AtomicU64> = (0..IDS).map(|_| AtomicU64::new(1)).collect();
    let lookups: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (cache, truth) = (&cache, &truth);
                s.spawn(move || steps(cache, truth, 1 + t * 7919))
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let stats = cache.stats();
    // Every demand lookup counted exactly once: no increment lost to a race.
    assert_eq!(stats.hits + stats.misses, lookups, "{stats:?}");
    assert!(
        stats.hits > 0 && stats.misses > 0 && stats.invalidated > 0,
        "{stats:?}"
    );
    assert!(
        cache.used_bytes() <= CAPACITY,
        "{} > {CAPACITY}",
        cache.used_bytes()
    );
    // Quiescent: whatever is cached is the current generation, intact.
    for id in 0..IDS {
        if let Some((generation, bytes)) = cache.peek(ExtentId(id)) {
            assert_eq!(
                generation,
                truth[id as usize].load(Ordering::SeqCst),
                "{id}"
            );
            assert_eq!(decode(&bytes), (ExtentId(id), generation));
        }
    }
}

#[test]
fn one_shard_four_threads_keep_the_books_and_serve_only_current_bytes() {
    run(1);
}

#[test]
fn four_shards_four_threads_keep_the_books_and_serve_only_current_bytes() {
    run(4);
}
