//! Extent table benchmarks, each against a baseline measured in the same run.
//!
//! * `snapshot_random_10m`: snapshots of random ids over 10 M written records, vs a
//!   plain `Vec` of the same fields and a `Vec<parking_lot::RwLock<_>>`.
//! * `snapshot_hot_with_writer`: snapshots of a 1 024-record hot set while another
//!   thread commits writes on it, vs `RwLock` per record with a writer taking write
//!   locks.
//! * `transition`: one record, uncontended and with two threads hammering it, vs a
//!   `RwLock` write lock doing the same check-and-change.
//!
//! * `diag_*` variants split the table's cost (the seqlock protocol inlined over a
//!   flat `Vec`, a 10-entry directory, dependent lookups); `interleaved` lines
//!   re-measure the headline ratios with the variants' batches alternating, so load
//!   from other processes hits all of them alike.
//! * Bytes per record are printed first.
//!
//! Random ids come from an inline splitmix64 and are generated before measuring, so
//! every variant pays the same (zero) RNG cost. Run: `cargo bench --bench table`;
//! results and findings are in `BENCHMARKS.md`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use extentmeta::{Change, Error, ExtentId, ExtentTable, Location, State, TableConfig};
use parking_lot::RwLock;

/// Records in the large table.
const LARGE_N: u64 = 10_000_000;
/// Records in the hot set.
const HOT_N: u64 = 1_024;
/// Lookups per measured iteration.
const BATCH: usize = 1_024;
/// Pre-generated random ids per pool: 1 024 batches before the pool repeats. That
/// is up to 64 MiB of distinct cache lines per variant: far beyond any L2, but not
/// beyond every L3 (one machine here reports 260 MB). A 16 Mi-id pool, which
/// touches every record, gave the same ratios in a separate harness
/// (BENCHMARKS.md, issue 11, eighth pass), so the pool stays small enough to
/// generate quickly.
const POOL: usize = 1 << 20;

/// splitmix64: tiny, fast, good enough for benchmark ids.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

fn random_ids(seed: u64, n: u64, count: usize) -> Vec<u64> {
    let mut rng = SplitMix64(seed);
    (0..count).map(|_| rng.below(n)).collect()
}

/// The baseline record: the same fields as a snapshot, as a plain struct.
#[derive(Debug, Clone, Copy, Default)]
struct PlainRecord {
    version: u64,
    state: u8,
    write_pending: bool,
    generation: u64,
    device: u16,
    offset: u64,
    length: u32,
    checksum: u32,
}

/// Location whose offset encodes the id and generation.
fn location_of(id: u64, generation: u64) -> Location {
    Location::new((id % 8) as u16, (id << 16) | generation, 4_096)
}

fn plain_written(id: u64) -> PlainRecord {
    let location = location_of(id, 1);
    PlainRecord {
        version: 4,
        state: State::Durable as u8,
        write_pending: false,
        generation: 1,
        device: location.device,
        offset: location.offset,
        length: location.length,
        checksum: id as u32,
    }
}

/// Begin + commit a write of `id` through the table; returns the new version.
fn table_write(table: &ExtentTable, id: ExtentId, version: u64, generation: u64) -> u64 {
    let begun = table
        .transition(id, version, Change::BeginWrite)
        .expect("single writer: begin");
    let change = Change::CommitWrite {
        location: location_of(id.0, generation + 1),
        checksum: (id.0 ^ generation) as u32,
    };
    table
        .transition(id, begun.version(), change)
        .expect("single writer: commit")
        .version()
}

/// The same write as two write-locked steps on a plain record.
fn rwlock_write(record: &RwLock<PlainRecord>, id: u64) {
    {
        let mut r = record.write();
        r.write_pending = true;
        r.version += 2;
    }
    let mut r = record.write();
    r.generation += 1;
    let location = location_of(id, r.generation);
    r.device = location.device;
    r.offset = location.offset;
    r.length = location.length;
    r.checksum = (id ^ r.generation) as u32;
    r.write_pending = false;
    r.state = State::Durable as u8;
    r.version += 2;
}

fn table_of(n: u64) -> ExtentTable {
    table_with_segments(n, TableConfig::default().segment_len())
}

fn table_with_segments(n: u64, segment_len: usize) -> ExtentTable {
    let config = TableConfig::builder()
        .max_extents(n)
        .segment_len(segment_len)
        .build()
        .expect("valid config");
    let table = ExtentTable::new(config);
    for id in (0..n).map(ExtentId) {
        table_write(&table, id, 0, 0);
    }
    table
}

/// Diagnostic baseline: the table's seqlock read protocol inlined over a flat `Vec`
/// (no directory, no `Result`, no `Snapshot`), to split the table's cost into the
/// protocol's and the wrapper's.
#[derive(Debug, Default)]
#[repr(align(32))]
struct RawSlot {
    header: AtomicU64,
    words: [AtomicU64; 3],
}

const RAW_PUBLISHING_BIT: u64 = 1 << 8;

impl RawSlot {
    fn written(id: u64) -> RawSlot {
        let p = plain_written(id);
        RawSlot {
            header: AtomicU64::new(p.version << 8 | u64::from(p.state)),
            words: [
                AtomicU64::new(u64::from(p.device) << 48 | p.generation),
                AtomicU64::new(p.offset),
                AtomicU64::new(u64::from(p.checksum) << 32 | u64::from(p.length)),
            ],
        }
    }

    /// A seqlock write as `Slot::lock` + `Slot::publish` do it: bumps the version
    /// by 2 and the generation by 1. Single writer, so the CAS always wins.
    fn bump(&self) {
        let h = self.header.load(Ordering::Relaxed);
        if self
            .header
            .compare_exchange(
                h,
                h | RAW_PUBLISHING_BIT,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        std::sync::atomic::fence(Ordering::Release);
        let w0 = self.words[0].load(Ordering::Relaxed);
        self.words[0].store(w0 + 1, Ordering::Relaxed);
        self.words[2].fetch_xor(1, Ordering::Relaxed);
        self.header.store(h + (2 << 8), Ordering::Release);
    }

    /// Retries [`RawSlot::try_read`] as `ExtentTable::snapshot` does: 64 spins, then
    /// up to 10 000 yields (a writer descheduled mid-publish).
    #[inline]
    fn read(&self) -> Option<PlainRecord> {
        for _ in 0..64 {
            if let Some(r) = self.try_read() {
                return Some(r);
            }
            std::hint::spin_loop();
        }
        (0..10_000).find_map(|_| {
            std::thread::yield_now();
            self.try_read()
        })
    }

    /// One seqlock read attempt, as `Slot::try_read` does it: the four packed words,
    /// which is all a table snapshot copies (it decodes a field when asked).
    #[inline]
    fn try_read_words(&self) -> Option<[u64; 4]> {
        let h1 = self.header.load(Ordering::Acquire);
        if h1 & RAW_PUBLISHING_BIT != 0 {
            return None;
        }
        let w = [
            self.words[0].load(Ordering::Relaxed),
            self.words[1].load(Ordering::Relaxed),
            self.words[2].load(Ordering::Relaxed),
        ];
        std::sync::atomic::fence(Ordering::Acquire);
        let h2 = self.header.load(Ordering::Relaxed);
        (h1 == h2).then_some([h1, w[0], w[1], w[2]])
    }

    /// [`RawSlot::try_read_words`], unpacked into the plain record's fields.
    #[inline]
    fn try_read(&self) -> Option<PlainRecord> {
        self.try_read_words().map(|[h, w0, w1, w2]| PlainRecord {
            version: h >> 8,
            state: (h & 0b11) as u8,
            write_pending: h & 0b100 != 0,
            generation: w0 & ((1 << 48) - 1),
            device: (w0 >> 48) as u16,
            offset: w1,
            length: w2 as u32,
            checksum: (w2 >> 32) as u32,
        })
    }
}

/// A rolling cursor over a pool of ids: each call yields the next batch.
struct Batches<'a> {
    pool: &'a [u64],
    at: usize,
}

impl<'a> Batches<'a> {
    fn new(pool: &'a [u64]) -> Self {
        Batches { pool, at: 0 }
    }

    fn next_batch(&mut self) -> &'a [u64] {
        if self.at + BATCH > self.pool.len() {
            self.at = 0;
        }
        let batch = &self.pool[self.at..self.at + BATCH];
        self.at += BATCH;
        batch
    }
}

/// Wall time of each interleaved comparison (after its warm-up).
const INTERLEAVED_TIME: Duration = Duration::from_secs(3);

/// Times one batch of each variant in turn, round after round, for
/// [`INTERLEAVED_TIME`], and prints each variant's median ns per lookup and its
/// ratio to the first variant.
///
/// Criterion measures variants one after another, seconds apart; on a machine shared
/// with other jobs the load changes between them and moves the ratios. Here every
/// variant runs within microseconds of the others, so they see the same load.
fn interleaved(name: &str, variants: &mut [(&str, &mut dyn FnMut())]) {
    let warm_up = Instant::now();
    // Bound: one second of warm-up rounds.
    while warm_up.elapsed() < Duration::from_secs(1) {
        variants.iter_mut().for_each(|(_, run)| run());
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let started = Instant::now();
    // Bound: INTERLEAVED_TIME of rounds.
    while started.elapsed() < INTERLEAVED_TIME {
        for ((_, run), times) in variants.iter_mut().zip(&mut samples) {
            let t = Instant::now();
            run();
            times.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|times| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        })
        .collect();
    let rounds = samples[0].len();
    for ((label, _), median) in variants.iter().zip(&medians) {
        println!(
            "interleaved {name}/{label}: median {median:.2} ns/lookup, {:.2}x of {} ({rounds} rounds)",
            median / medians[0],
            variants[0].0
        );
    }
}

fn bench_snapshot_random(c: &mut Criterion) {
    let started = Instant::now();
    let table = table_of(LARGE_N);
    let big_segments = table_with_segments(LARGE_N, 1 << 20);
    let raw: Vec<RawSlot> = (0..LARGE_N).map(RawSlot::written).collect();
    let plain: Vec<PlainRecord> = (0..LARGE_N).map(plain_written).collect();
    let locked: Vec<RwLock<PlainRecord>> = (0..LARGE_N)
        .map(|id| RwLock::new(plain_written(id)))
        .collect();
    println!(
        "setup: 10 M records written in 2 tables and 3 Vecs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "bytes per record: BYTES_PER_RECORD = {}, table.memory_bytes() / n = {:.2} \
         (plain struct {} B, RwLock<struct> {} B)",
        ExtentTable::BYTES_PER_RECORD,
        table.memory_bytes() as f64 / LARGE_N as f64,
        std::mem::size_of::<PlainRecord>(),
        std::mem::size_of::<RwLock<PlainRecord>>(),
    );
    let pool = random_ids(1, LARGE_N, POOL);

    let mut group = c.benchmark_group("snapshot_random_10m");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("table", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            for &id in batches.next_batch() {
                black_box(table.snapshot(ExtentId(id)).expect("in range"));
            }
        });
    });
    group.bench_function("diag_table_segment_1m", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            for &id in batches.next_batch() {
                black_box(big_segments.snapshot(ExtentId(id)).expect("in range"));
            }
        });
    });
    group.bench_function("diag_seqlock_vec", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            for &id in batches.next_batch() {
                black_box(raw[id as usize].try_read_words());
            }
        });
    });
    group.bench_function("diag_table_try_snapshot", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            for &id in batches.next_batch() {
                black_box(table.try_snapshot(ExtentId(id)).expect("in range"));
            }
        });
    });
    group.bench_function("plain_vec", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            for &id in batches.next_batch() {
                black_box(plain[id as usize]);
            }
        });
    });
    group.bench_function("rwlock_vec", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            for &id in batches.next_batch() {
                black_box(*locked[id as usize].read());
            }
        });
    });

    // Dependent lookups: each id depends on the previous lookup's result (bit 31 of
    // the checksum: a zero the compiler cannot prove and the CPU cannot predict), so at most one miss is in flight for every variant.
    // If the ratio closes here, the gap above is memory-level parallelism (how many
    // independent lookups fit in the CPU's window), not the cost of one lookup.
    group.bench_function("diag_dependent/table", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            let mut carry = 0u64;
            for &id in batches.next_batch() {
                let s = table.snapshot(ExtentId(id ^ carry)).expect("in range");
                carry = u64::from(s.checksum() >> 31);
                black_box(s);
            }
        });
    });
    group.bench_function("diag_dependent/plain_vec", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            let mut carry = 0u64;
            for &id in batches.next_batch() {
                let r = plain[(id ^ carry) as usize];
                carry = u64::from(r.checksum >> 31);
                black_box(r);
            }
        });
    });
    group.bench_function("diag_dependent/seqlock_vec", |b| {
        let mut batches = Batches::new(&pool);
        b.iter(|| {
            let mut carry = 0u64;
            for &id in batches.next_batch() {
                let r = raw[(id ^ carry) as usize].try_read().expect("no writer");
                carry = u64::from(r.checksum >> 31);
                black_box(r);
            }
        });
    });
    group.finish();

    let (mut a, mut b, mut c, mut d, mut e) = (
        Batches::new(&pool),
        Batches::new(&pool),
        Batches::new(&pool),
        Batches::new(&pool),
        Batches::new(&pool),
    );
    interleaved(
        "snapshot_random_10m",
        &mut [
            ("table", &mut || {
                for &id in a.next_batch() {
                    black_box(table.snapshot(ExtentId(id)).expect("in range"));
                }
            }),
            ("plain_vec", &mut || {
                for &id in b.next_batch() {
                    black_box(plain[id as usize]);
                }
            }),
            ("rwlock_vec", &mut || {
                for &id in c.next_batch() {
                    black_box(*locked[id as usize].read());
                }
            }),
            ("diag_seqlock_vec", &mut || {
                for &id in d.next_batch() {
                    black_box(raw[id as usize].try_read_words());
                }
            }),
            ("diag_table_segment_1m", &mut || {
                for &id in e.next_batch() {
                    black_box(big_segments.snapshot(ExtentId(id)).expect("in range"));
                }
            }),
        ],
    );
}

/// Spin hints the paced writer waits between writes, so that both writers commit at
/// a similar rate and the readers see a similar rate of invalidated lines.
const PACED_SPINS: u32 = 64;

/// Runs `measure` while a writer thread runs `write_one` on random hot ids, waiting
/// `pause_spins` spin hints between writes; prints the writer's commit rate.
fn with_writer(
    name: &str,
    pause_spins: u32,
    write_one: impl Fn(u64) + Sync,
    measure: impl FnOnce(),
) {
    let stop = AtomicBool::new(false);
    let (writes, elapsed) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut rng = SplitMix64(7);
            let mut writes = 0u64;
            // Bound: runs until the measurement sets `stop`.
            while !stop.load(Ordering::Relaxed) {
                write_one(rng.below(HOT_N));
                writes += 1;
                for _ in 0..pause_spins {
                    std::hint::spin_loop();
                }
            }
            writes
        });
        let started = Instant::now();
        measure();
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().expect("writer");
        (writes, started.elapsed())
    });
    println!(
        "{name}: writer committed {writes} writes ({:.2} M writes/s) during warm-up + measurement",
        writes as f64 / elapsed.as_secs_f64() / 1e6
    );
}

fn bench_snapshot_hot(c: &mut Criterion) {
    let table = table_of(HOT_N);
    let locked: Vec<RwLock<PlainRecord>> = (0..HOT_N)
        .map(|id| RwLock::new(plain_written(id)))
        .collect();
    let pool = random_ids(2, HOT_N, POOL);
    let table_writer = |id: u64| {
        let id = ExtentId(id);
        let s = table.snapshot(id).expect("only this thread writes");
        table_write(&table, id, s.version(), s.generation());
    };
    let lock_writer = |id: u64| rwlock_write(&locked[id as usize], id);

    let mut group = c.benchmark_group("snapshot_hot_with_writer");
    group.throughput(Throughput::Elements(BATCH as u64));
    // A reader meeting a descheduled writer may get `Contended`: the `Result` is
    // consumed as it is.
    let read_table = |group: &mut criterion::BenchmarkGroup<'_, _>, name: &str| {
        group.bench_function(name, |b| {
            let mut batches = Batches::new(&pool);
            b.iter(|| {
                for &id in batches.next_batch() {
                    let _ = black_box(table.snapshot(ExtentId(id)));
                }
            });
        });
    };
    with_writer("table", 0, table_writer, || read_table(&mut group, "table"));
    with_writer("table_paced", PACED_SPINS, table_writer, || {
        read_table(&mut group, "table_paced")
    });
    read_table(&mut group, "table_no_writer");

    let read_locked = |group: &mut criterion::BenchmarkGroup<'_, _>, name: &str| {
        group.bench_function(name, |b| {
            let mut batches = Batches::new(&pool);
            b.iter(|| {
                for &id in batches.next_batch() {
                    black_box(*locked[id as usize].read());
                }
            });
        });
    };
    with_writer("rwlock", 0, lock_writer, || {
        read_locked(&mut group, "rwlock_vec")
    });
    with_writer("rwlock_paced", PACED_SPINS, lock_writer, || {
        read_locked(&mut group, "rwlock_vec_paced")
    });
    read_locked(&mut group, "rwlock_vec_no_writer");

    // Diagnostic: the same seqlock protocol inlined over a flat Vec (no call, no
    // directory, no Result), with a writer bumping records the same way.
    let raw: Vec<RawSlot> = (0..HOT_N).map(RawSlot::written).collect();
    let read_raw = |group: &mut criterion::BenchmarkGroup<'_, _>, name: &str| {
        group.bench_function(name, |b| {
            let mut batches = Batches::new(&pool);
            b.iter(|| {
                for &id in batches.next_batch() {
                    black_box(raw[id as usize].read());
                }
            });
        });
    };
    let raw_writer = |id: u64| {
        raw[id as usize].bump();
        raw[id as usize].bump();
    };
    with_writer("diag_seqlock_vec", 0, raw_writer, || {
        read_raw(&mut group, "diag_seqlock_vec")
    });
    read_raw(&mut group, "diag_seqlock_vec_no_writer");
    group.finish();

    // Interleaved: one writer alternates a table write and an RwLock write on the
    // same random id, so both structures take the same write rate at the same time.
    let (mut a, mut b) = (Batches::new(&pool), Batches::new(&pool));
    let mut read_both = || {
        interleaved(
            "snapshot_hot",
            &mut [
                ("table", &mut || {
                    for &id in a.next_batch() {
                        let _ = black_box(table.snapshot(ExtentId(id)));
                    }
                }),
                ("rwlock_vec", &mut || {
                    for &id in b.next_batch() {
                        black_box(*locked[id as usize].read());
                    }
                }),
            ],
        )
    };
    println!("interleaved snapshot_hot: no writer");
    read_both();
    println!("interleaved snapshot_hot: with a writer on both");
    let both_writer = |id: u64| {
        table_writer(id);
        lock_writer(id);
    };
    with_writer("interleaved both", 0, both_writer, read_both);
}

/// `Error::Contended` (FPRE006) results seen by [`compact_step`]: a reader, or a
/// losing transition looking up the winner, met a publish in progress for longer
/// than its bounded wait (a writer descheduled mid-publish).
static CONTENDED: AtomicU64 = AtomicU64::new(0);

/// One attempt on the shared record: the legal compaction step from what the
/// snapshot shows. Returns whether it committed.
fn compact_step(table: &ExtentTable, id: ExtentId) -> bool {
    let s = match table.snapshot(id) {
        Ok(s) => s,
        Err(Error::Contended { .. }) => {
            CONTENDED.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        Err(other) => panic!("snapshot refused: {other}"),
    };
    let change = match s.state() {
        State::Compacting => Change::AbortCompact,
        _ => Change::BeginCompact,
    };
    match table.transition(id, s.version(), change) {
        Ok(_) => true,
        Err(Error::VersionConflict { .. }) => false,
        Err(Error::Contended { .. }) => {
            CONTENDED.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(other) => panic!("compaction step refused: {other}"),
    }
}

/// The same step on a write-locked plain record: never fails, may wait.
fn rwlock_compact_step(record: &RwLock<PlainRecord>) -> bool {
    let mut r = record.write();
    r.state = if r.state == State::Compacting as u8 {
        State::Durable as u8
    } else {
        State::Compacting as u8
    };
    r.version += 2;
    true
}

/// Runs `iters` attempts of `step` on each of two threads; returns the wall time and
/// adds the committed attempts to `committed`.
fn two_threads(iters: u64, step: impl Fn() -> bool + Sync, committed: &AtomicU64) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let ok = (0..iters).filter(|_| step()).count() as u64;
                committed.fetch_add(ok, Ordering::Relaxed);
            });
        }
    });
    started.elapsed()
}

fn bench_transition(c: &mut Criterion) {
    let table = table_of(HOT_N);
    let id = ExtentId(5);
    let record = RwLock::new(plain_written(id.0));

    let mut group = c.benchmark_group("transition");
    group.throughput(Throughput::Elements(2));
    group.bench_function("uncontended_compact_pair/table", |b| {
        b.iter(|| {
            let v = table.snapshot(id).expect("in range").version();
            let s = table
                .transition(id, v, Change::BeginCompact)
                .expect("uncontended");
            black_box(
                table
                    .transition(id, s.version(), Change::AbortCompact)
                    .expect("uncontended"),
            );
        });
    });
    group.bench_function("uncontended_write_pair/table", |b| {
        b.iter(|| {
            let s = table.snapshot(id).expect("in range");
            black_box(table_write(&table, id, s.version(), s.generation()));
        });
    });
    group.bench_function("uncontended_compact_pair/rwlock", |b| {
        b.iter(|| {
            rwlock_compact_step(&record);
            black_box(rwlock_compact_step(&record));
        });
    });
    group.bench_function("uncontended_write_pair/rwlock", |b| {
        b.iter(|| {
            rwlock_write(&record, id.0);
            black_box(&record);
        });
    });

    // Two threads, one record. An iteration is one attempt per thread.
    for (name, use_table) in [("table", true), ("rwlock", false)] {
        let committed = AtomicU64::new(0);
        let attempted = AtomicU64::new(0);
        group.bench_function(format!("two_threads_one_record/{name}"), |b| {
            b.iter_custom(|iters| {
                attempted.fetch_add(2 * iters, Ordering::Relaxed);
                if use_table {
                    two_threads(iters, || compact_step(&table, id), &committed)
                } else {
                    two_threads(iters, || rwlock_compact_step(&record), &committed)
                }
            });
        });
        let (ok, all) = (
            committed.load(Ordering::Relaxed),
            attempted.load(Ordering::Relaxed),
        );
        let contended = CONTENDED.swap(0, Ordering::Relaxed);
        println!(
            "two_threads_one_record/{name}: {ok} of {all} attempts committed ({:.1} %), \
             {} conflicts, {contended} of them FPRE006 contended",
            100.0 * ok as f64 / all.max(1) as f64,
            all - ok
        );
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_snapshot_random(&mut c);
    bench_snapshot_hot(&mut c);
    bench_transition(&mut c);
    c.final_summary();
}
