//! Replays real cache traces through `extentmeta::Cache`, its peers and an exact LRU.
//!
//! ```text
//! cargo run --release --example trace              # CloudPhysics, ARC OLTP, readahead
//! cargo run --release --example trace -- --all     # also ARC P3 (4 M) and P12 (13 M)
//! cargo run --release --example trace -- FILE...   # given files (format from the name)
//! cargo run --release --example trace -- --synthetic --adaptive --opt  # known shifts
//! ```
//!
//! The traces are read at run time from the `shared/traces` folder next to the
//! checkout (or `$EXTENTMETA_TRACES`) and never copied into the crate: they are
//! GPL-licensed (libCacheSim) or come with a citation condition (the ARC traces;
//! N. Megiddo, D. S. Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache",
//! USENIX FAST'03). Without the folder the example says so and exits 0.
//!
//! Replay semantics (those of libCacheSim, checked by reproducing its LRU row): a
//! request is a hit if its id is cached; a miss inserts it and evicts until it fits;
//! an object larger than the whole capacity is a miss and is never inserted. Every
//! policy gets the same byte capacity and the same object sizes: extentmeta charges
//! [`OVERHEAD`] bytes per entry on top of the payload, so its payload is the object
//! size minus that, and its entries weigh exactly the object size.
//!
//! Formats: libCacheSim `oracleGeneral` (`*.bin`, 24-byte little-endian records
//! `{u32 time; u64 id; u32 size; i64 next}`), the CloudPhysics CSV
//! (`version,time,op,size,lbn`), and the ARC page traces (`*.lis` or `*.lis.zst`,
//! lines `start count ignore request`, each expanded to `count` page requests).
//!
//! `--synthetic` replays a seeded family of page workloads whose shifts are known
//! (scan bursts over a hot set, a working set that moves, Zipf with a changing
//! skew; see [`synthetic`]) instead of the trace files: shapes no policy parameter
//! was chosen on.
//!
//! Under each miss table, `/ best peer` rows give each extentmeta row's misses over
//! the fewest of quick_cache's, moka's and (CloudPhysics) libCacheSim's S3-FIFO's:
//! at most 1.000 meets issue 25's bound.
//!
//! For the CloudPhysics CSV it also drives [`Store`] readahead on the read stream
//! (4 KiB extents, id = byte offset / 4 KiB) and reports prefetch coverage and
//! accuracy.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use clap::Parser;
use extentmeta::cache::{CachePolicy, FlightOutcome, Lookup};
use extentmeta::{Bytes, Cache, ExtentId, MemBackend, Priority, Store, StoreConfig, TableConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// Bytes extentmeta charges per entry (`cache/shard.rs` `ENTRY_OVERHEAD`).
const OVERHEAD: u64 = 96;
/// The weight of one ARC page (any value above [`OVERHEAD`] gives the same counts).
const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

#[path = "common/published.rs"]
mod published;
use published::PUBLISHED_CLOUDPHYSICS;

#[derive(Parser, Debug)]
#[command(about = "Replay cache traces through extentmeta::Cache, quick_cache, moka and LRU")]
struct Args {
    /// Trace files; without any, the default set in the shared traces folder.
    files: Vec<PathBuf>,
    /// Also replay ARC P3 (3.9 M requests, about 2 minutes) and P12 (13 M, about
    /// 8 minutes).
    #[arg(long)]
    all: bool,
    /// Shard counts of extentmeta::Cache to replay.
    #[arg(long, value_delimiter = ',', default_value = "16,1")]
    shards: Vec<usize>,
    /// Replay only extentmeta (and the exact LRU): for quick policy iteration.
    #[arg(long)]
    no_peers: bool,
    /// Skip the readahead replay.
    #[arg(long)]
    no_readahead: bool,
    /// extentmeta policy: reads that promote from probation (default: the crate's).
    #[arg(long)]
    promote_after_reads: Option<u8>,
    /// extentmeta policy: probation's share of the capacity, percent.
    #[arg(long)]
    small_percent: Option<u8>,
    /// extentmeta policy: the ghost's bound, percent of the capacity.
    #[arg(long)]
    ghost_percent: Option<u8>,
    /// extentmeta policy: TinyLFU admission for ghost hits.
    #[arg(long)]
    frequency_admission: bool,
    /// extentmeta policy: the probation duel's budget, percent of the capacity.
    #[arg(long)]
    probation_duel_percent: Option<u8>,
    /// extentmeta policy: turn the size-aware rules off (plain S3-FIFO).
    #[arg(long)]
    no_size_aware: bool,
    /// Also replay extentmeta with the adaptive probation share
    /// (`CachePolicyBuilder::adaptive`), in rows of its own.
    #[arg(long)]
    adaptive: bool,
    /// Also replay Belady's OPT (next-access replay; ARC page traces only, where
    /// every object weighs the same and farthest-next-use is optimal).
    #[arg(long)]
    opt: bool,
    /// Replay the synthetic workloads with known shifts instead of trace files.
    #[arg(long)]
    synthetic: bool,
    /// Capacities in pages for the ARC traces and the synthetic workloads,
    /// instead of the paper's: one point of a table, for quick policy iteration.
    #[arg(long, value_delimiter = ',')]
    pages: Vec<u64>,
}

impl Args {
    /// `--pages` if given, else `default`.
    fn pages_or(&self, default: &[u64]) -> Vec<u64> {
        if self.pages.is_empty() {
            default.to_vec()
        } else {
            self.pages.clone()
        }
    }

    fn policy(&self) -> Result<CachePolicy, extentmeta::Error> {
        let mut b = CachePolicy::builder();
        if let Some(v) = self.promote_after_reads {
            b = b.promote_after_reads(v);
        }
        if let Some(v) = self.small_percent {
            b = b.small_percent(v);
        }
        if let Some(v) = self.ghost_percent {
            b = b.ghost_percent(v);
        }
        if let Some(v) = self.probation_duel_percent {
            b = b.probation_duel_percent(v);
        }
        b.frequency_admission(self.frequency_admission)
            .size_aware(!self.no_size_aware)
            .build()
    }
}

/// One request: an object id, its size in bytes, and whether it is a read.
#[derive(Debug, Clone, Copy)]
struct Request {
    id: u64,
    size: u64,
    read: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let policy = args.policy()?;
    if policy != CachePolicy::default() {
        println!("extentmeta policy: {policy:?}");
    }
    if args.synthetic {
        for (name, requests) in synthetic() {
            let t0 = std::time::Instant::now();
            let pages = args.pages_or(&[1000, 2000, 4000, 8000, 16000]);
            replay_pages(&name, &requests, &pages, &args);
            println!("({name}: {:.1} s)", t0.elapsed().as_secs_f64());
        }
        return Ok(());
    }
    let files = if args.files.is_empty() {
        let Some(dir) = traces_dir() else {
            println!(
                "trace: no traces folder ($EXTENTMETA_TRACES, else ../shared/traces beside the checkout); skipping"
            );
            return Ok(());
        };
        let mut files = vec![
            dir.join("libcachesim/cloudPhysicsIO.oracleGeneral.bin"),
            dir.join("arc/OLTP.lis.zst"),
        ];
        if args.all {
            files.push(dir.join("arc/P3.lis.zst"));
            files.push(dir.join("arc/P12.lis.zst"));
        }
        files.push(dir.join("libcachesim/cloudPhysicsIO.csv"));
        files
    } else {
        args.files.clone()
    };
    for file in &files {
        if !file.exists() {
            println!("trace: {} is absent; skipping", file.display());
            continue;
        }
        replay_file(file, &args)?;
    }
    Ok(())
}

/// `$EXTENTMETA_TRACES` if set, else `shared/traces` beside the checkout.
fn traces_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("EXTENTMETA_TRACES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"),
    };
    dir.is_dir().then_some(dir)
}

fn replay_file(file: &Path, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let t0 = std::time::Instant::now();
    if name.ends_with(".csv") {
        let requests = read_csv(file)?;
        println!(
            "\n## {name}: {} requests ({} reads)",
            requests.len(),
            requests.iter().filter(|r| r.read).count()
        );
        if !args.no_readahead {
            readahead(&requests)?;
        }
    } else if name.ends_with(".bin") {
        let requests = read_oracle_general(file)?;
        println!("\n## {name}: {} requests, miss counts", requests.len());
        let capacities: Vec<u64> = (1..=8).map(|i| i * 128 * MIB).collect();
        let labels: Vec<String> = (1..=8).map(|i| format!("{}M", i * 128)).collect();
        let rows = replay_all(&requests, &capacities, args);
        print_table(&labels, &rows, |m| m.to_string());
        if name.starts_with("cloudPhysics") {
            for (policy, row) in PUBLISHED_CLOUDPHYSICS {
                let row: Vec<u64> = row.to_vec();
                print_row(&format!("{policy} (libCacheSim)"), &row, |m| m.to_string());
            }
            let best_peer: Vec<u64> = (0..8)
                .map(|i| {
                    rows.iter()
                        .filter(|(n, _)| n == "moka" || n == "quick_cache")
                        .map(|(_, r)| r[i])
                        .chain([PUBLISHED_CLOUDPHYSICS[3].1[i]])
                        .min()
                        .unwrap_or(u64::MAX)
                })
                .collect();
            print_row(
                "best peer (moka, quick_cache, S3-FIFO newer)",
                &best_peer,
                |m| m.to_string(),
            );
            print_over_best_peer(&rows, Some(&PUBLISHED_CLOUDPHYSICS[3].1));
        } else {
            print_over_best_peer(&rows, None);
        }
    } else {
        let requests = read_arc(file)?;
        // The paper's cache sizes: OLTP (Table IV) and the P traces.
        let pages = if name.starts_with("OLTP") {
            args.pages_or(&[1000, 2000, 5000, 10000, 15000])
        } else {
            args.pages_or(&[1024, 4096, 16384, 65536, 262144])
        };
        replay_pages(&name, &requests, &pages, args);
    }
    println!("({name}: {:.1} s)", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Replays page requests (one size) at capacities in pages: hit ratio % and miss
/// counts per policy, then each extentmeta row over the best peer.
fn replay_pages(name: &str, requests: &[Request], pages: &[u64], args: &Args) {
    println!(
        "\n## {name}: {} page requests, hit ratio % (capacity in pages)",
        requests.len()
    );
    let capacities: Vec<u64> = pages.iter().map(|p| p * PAGE).collect();
    let labels: Vec<String> = pages.iter().map(u64::to_string).collect();
    let mut rows = replay_all(requests, &capacities, args);
    if args.opt {
        rows.push((
            "Belady OPT".into(),
            pages.iter().map(|&p| belady(requests, p)).collect(),
        ));
    }
    let n = requests.len() as f64;
    print_table(&labels, &rows, |m| {
        format!("{:.2}", 100.0 * (1.0 - m as f64 / n))
    });
    println!("\nmiss counts:");
    print_table(&labels, &rows, |m| m.to_string());
    print_over_best_peer(&rows, None);
}

/// Prints, for each extentmeta row and OPT, misses over the fewest of quick_cache's,
/// moka's and `published`'s (libCacheSim's S3-FIFO) at each capacity: at most 1
/// meets issue 25's bound. Nothing without peer rows.
fn print_over_best_peer(rows: &[(String, Vec<u64>)], published: Option<&[u64]>) {
    let peers: Vec<&Vec<u64>> = rows
        .iter()
        .filter(|(n, _)| n == "moka" || n == "quick_cache")
        .map(|(_, r)| r)
        .collect();
    if peers.is_empty() {
        return;
    }
    let best: Vec<u64> = (0..peers[0].len())
        .map(|i| {
            peers
                .iter()
                .map(|r| r[i])
                .chain(published.map(|p| p[i]))
                .min()
                .unwrap_or(u64::MAX)
        })
        .collect();
    for (name, row) in rows {
        if !(name.starts_with("extentmeta") || name.contains("OPT")) {
            continue;
        }
        print!("| {:<46} |", format!("{name} / best peer"));
        for (m, b) in row.iter().zip(&best) {
            print!(" {:>8.3} |", *m as f64 / (*b).max(1) as f64);
        }
        println!();
    }
}

/// Miss counts per policy per capacity.
fn replay_all(requests: &[Request], capacities: &[u64], args: &Args) -> Vec<(String, Vec<u64>)> {
    let cache_policy = args.policy().unwrap_or_default();
    let mut policies: Vec<String> = vec!["exact LRU".into()];
    for s in &args.shards {
        policies.push(format!("extentmeta ({s} shards)"));
    }
    if args.adaptive {
        for s in &args.shards {
            policies.push(format!("extentmeta adaptive ({s} shards)"));
        }
    }
    if !args.no_peers {
        policies.push("quick_cache".into());
        policies.push("moka".into());
    }
    let bar = ProgressBar::new((requests.len() * capacities.len() * policies.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = vec![];
    for policy in &policies {
        bar.set_message(policy.clone());
        let row = capacities
            .iter()
            .map(|&capacity| {
                let mut replayer: Box<dyn Replayer> = match policy.as_str() {
                    "exact LRU" => Box::new(ExactLru::new(capacity)),
                    "quick_cache" => Box::new(QuickCache::new(capacity)),
                    "moka" => Box::new(Moka::new(capacity)),
                    _ => {
                        let adaptive = policy.starts_with("extentmeta adaptive");
                        let shards = policy
                            .trim_start_matches("extentmeta adaptive (")
                            .trim_start_matches("extentmeta (")
                            .split(' ')
                            .next()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(1);
                        let policy = if adaptive {
                            CachePolicy::builder()
                                .adaptive(true)
                                .build()
                                .unwrap_or(cache_policy)
                        } else {
                            cache_policy
                        };
                        Box::new(Extentmeta::new(capacity, shards, policy))
                    }
                };
                let mut misses = 0;
                for (i, r) in requests.iter().enumerate() {
                    if !replayer.access(r.id, r.size) {
                        misses += 1;
                    }
                    if i % 65536 == 65535 {
                        bar.inc(65536);
                    }
                }
                bar.inc(requests.len() as u64 % 65536);
                misses
            })
            .collect();
        rows.push((policy.clone(), row));
    }
    bar.finish_and_clear();
    rows
}

fn print_table(labels: &[String], rows: &[(String, Vec<u64>)], cell: impl Fn(u64) -> String) {
    print!("| {:<46} |", "policy");
    for l in labels {
        print!(" {l:>8} |");
    }
    println!();
    print!("|{}|", "-".repeat(48));
    for _ in labels {
        print!("{}|", "-".repeat(10));
    }
    println!();
    for (name, row) in rows {
        print_row(name, row, &cell);
    }
}

fn print_row(name: &str, row: &[u64], cell: impl Fn(u64) -> String) {
    print!("| {name:<46} |");
    for &m in row {
        print!(" {:>8} |", cell(m));
    }
    println!();
}

/// A cache under replay: `access` returns whether the request hit.
trait Replayer {
    fn access(&mut self, id: u64, size: u64) -> bool;
}

/// An exact byte-capacity LRU (the reference that must reproduce libCacheSim's row).
struct ExactLru {
    capacity: u64,
    used: u64,
    clock: u64,
    entries: HashMap<u64, (u64, u64)>,
    order: BTreeMap<u64, u64>,
}

impl ExactLru {
    fn new(capacity: u64) -> Self {
        ExactLru {
            capacity,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }
}

impl Replayer for ExactLru {
    fn access(&mut self, id: u64, size: u64) -> bool {
        self.clock += 1;
        if let Some((stamp, _)) = self.entries.get_mut(&id) {
            self.order.remove(stamp);
            *stamp = self.clock;
            self.order.insert(self.clock, id);
            return true;
        }
        if size > self.capacity {
            return false;
        }
        self.entries.insert(id, (self.clock, size));
        self.order.insert(self.clock, id);
        self.used += size;
        while self.used > self.capacity {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, s)) = self.entries.remove(&victim) {
                self.used -= s;
            }
        }
        false
    }
}

struct Extentmeta {
    cache: Cache,
}

impl Extentmeta {
    fn new(capacity: u64, shards: usize, policy: CachePolicy) -> Self {
        Extentmeta {
            cache: Cache::with_policy(capacity, shards, policy),
        }
    }
}

impl Replayer for Extentmeta {
    fn access(&mut self, id: u64, size: u64) -> bool {
        match self.cache.lookup(ExtentId(id), 1, Priority::Demand) {
            Lookup::Hit(_) => true,
            Lookup::Load(token) => {
                let payload = size.saturating_sub(OVERHEAD) as usize;
                let outcome =
                    self.cache
                        .complete(token, Ok(Bytes::from(vec![0u8; payload])), || true);
                debug_assert!(matches!(outcome, FlightOutcome::Ready(_)));
                false
            }
            Lookup::Wait(_) | Lookup::Newer => false,
        }
    }
}

#[derive(Clone)]
struct SizeWeighter;

impl quick_cache::Weighter<u64, u64> for SizeWeighter {
    fn weight(&self, _id: &u64, size: &u64) -> u64 {
        *size
    }
}

struct QuickCache(quick_cache::sync::Cache<u64, u64, SizeWeighter>);

impl QuickCache {
    fn new(capacity: u64) -> Self {
        let items = (capacity / 4096).max(16) as usize;
        QuickCache(quick_cache::sync::Cache::with_weighter(
            items,
            capacity,
            SizeWeighter,
        ))
    }
}

impl Replayer for QuickCache {
    fn access(&mut self, id: u64, size: u64) -> bool {
        if self.0.get(&id).is_some() {
            return true;
        }
        self.0.insert(id, size);
        false
    }
}

struct Moka(moka::sync::Cache<u64, u64>);

impl Moka {
    fn new(capacity: u64) -> Self {
        Moka(
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .weigher(|_id: &u64, size: &u64| u32::try_from(*size).unwrap_or(u32::MAX))
                .build(),
        )
    }
}

impl Replayer for Moka {
    fn access(&mut self, id: u64, size: u64) -> bool {
        if self.0.get(&id).is_some() {
            return true;
        }
        self.0.insert(id, size);
        // Deterministic replay: apply the insert's eviction before the next request.
        self.0.run_pending_tasks();
        false
    }
}

fn read_oracle_general(file: &Path) -> std::io::Result<Vec<Request>> {
    let data = std::fs::read(file)?;
    Ok(data
        .chunks_exact(24)
        .map(|rec| {
            let id = u64::from_le_bytes(rec[4..12].try_into().unwrap_or_default());
            let size = u32::from_le_bytes(rec[12..16].try_into().unwrap_or_default());
            Request {
                id,
                size: u64::from(size),
                read: true,
            }
        })
        .collect())
}

fn read_csv(file: &Path) -> std::io::Result<Vec<Request>> {
    let mut requests = vec![];
    for line in BufReader::new(File::open(file)?).lines().skip(1) {
        let line = line?;
        let fields: Vec<&str> = line.split(',').collect();
        let [_, _, op, size, lbn] = fields[..] else {
            continue;
        };
        let (Ok(size), Ok(lbn)) = (size.parse::<u64>(), lbn.parse::<u64>()) else {
            continue;
        };
        requests.push(Request {
            id: lbn,
            size,
            read: op == "28",
        });
    }
    Ok(requests)
}

fn read_arc(file: &Path) -> Result<Vec<Request>, Box<dyn std::error::Error>> {
    let raw = File::open(file)?;
    let reader: Box<dyn Read> = if file.extension().is_some_and(|e| e == "zst") {
        Box::new(ruzstd::decoding::StreamingDecoder::new(BufReader::new(
            raw,
        ))?)
    } else {
        Box::new(raw)
    };
    let mut requests = vec![];
    for line in BufReader::new(reader).lines() {
        let line = line?;
        let mut fields = line.split_whitespace();
        let (Some(Ok(start)), Some(Ok(count))) = (
            fields.next().map(str::parse::<u64>),
            fields.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        requests.extend((start..start + count).map(|id| Request {
            id,
            size: PAGE,
            read: true,
        }));
    }
    Ok(requests)
}

/// SplitMix64: the synthetic workloads' generator, seeded so every run replays the
/// same requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf over ranks `0..n` with exponent `s`, by inverse CDF.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                total += (k as f64).powf(-s);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Zipf(cdf)
    }

    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1) as u64
    }
}

/// A page request for synthetic id `id` (ranks are spread over the id space by an
/// odd multiplier, so that neighbouring ranks do not share a shard by design).
fn page(id: u64) -> Request {
    Request {
        id: id.wrapping_mul(0x2545_f491_4f6c_dd1d),
        size: PAGE,
        read: true,
    }
}

/// The synthetic workloads, each about 600 000 page requests, with shifts at known
/// points. Sizes are in pages, against capacities of 1 000 to 16 000 pages:
///
/// * `scan-burst`: a hot set of 8 000 pages read Zipf(0.9); after every 50 000 hot
///   requests, a burst of 20 000 pages read once each, never again (10 rounds).
/// * `moving-set`: a working set of 6 000 pages read Zipf(0.8) whose base moves by
///   3 000 pages every 80 000 requests (half of it is new each phase; 8 phases).
/// * `zipf-skew`: 100 000 pages read Zipf with an exponent that changes every
///   100 000 requests: 0.7, 1.1, 0.5, 1.3, 0.9, 0.6.
fn synthetic() -> Vec<(String, Vec<Request>)> {
    let mut rng = Rng(25);
    let mut scan = vec![];
    let hot = Zipf::new(8000, 0.9);
    let mut fresh = 1u64 << 40;
    for _ in 0..10 {
        scan.extend((0..50_000).map(|_| page(hot.sample(&mut rng))));
        scan.extend((0..20_000).map(|_| {
            fresh += 1;
            page(fresh)
        }));
    }
    let mut moving = vec![];
    let set = Zipf::new(6000, 0.8);
    for phase in 0..8u64 {
        moving.extend((0..80_000).map(|_| page(phase * 3000 + set.sample(&mut rng))));
    }
    let mut skew = vec![];
    for s in [0.7, 1.1, 0.5, 1.3, 0.9, 0.6] {
        let z = Zipf::new(100_000, s);
        skew.extend((0..100_000).map(|_| page(z.sample(&mut rng))));
    }
    vec![
        ("scan-burst".into(), scan),
        ("moving-set".into(), moving),
        ("zipf-skew".into(), skew),
    ]
}

/// Extent size of the readahead replay.
const EXTENT: u64 = 4096;

/// Drives `Store` readahead with the trace's read stream and reports coverage and
/// accuracy.
fn readahead(requests: &[Request]) -> Result<(), Box<dyn std::error::Error>> {
    let reads: Vec<(u64, u64)> = requests
        .iter()
        .filter(|r| r.read)
        .map(|r| {
            let first = r.id * 512 / EXTENT;
            let last = (r.id * 512 + r.size.max(1) - 1) / EXTENT;
            (first, last)
        })
        .collect();
    let max_id = reads.iter().map(|r| r.1).max().unwrap_or(0) + 1;
    // Every extent the trace reads exists; the ones after it too (so readahead past
    // the end of a run finds something to load, as on a real volume).
    let mut ids: Vec<u64> = reads.iter().flat_map(|&(a, b)| a..=b + 1).collect();
    ids.sort_unstable();
    ids.dedup();
    let cache_bytes = 256 * MIB;
    let config = StoreConfig::builder()
        .table(
            TableConfig::builder()
                .max_extents(max_id + 2)
                .segment_len(4096)
                .build()?,
        )
        .cache_bytes(cache_bytes)
        // Readahead against memory too: this measures which extents the window
        // asks for, not whether the device is slow enough to be worth it.
        .readahead_min_read_us(0)
        .build()?;
    let store = Store::new(MemBackend::new(1), config)?;
    let bar = ProgressBar::new((ids.len() + reads.len()) as u64);
    bar.set_message("readahead: writing");
    let payload = vec![0x5au8; EXTENT as usize];
    for &id in &ids {
        store.write(ExtentId(id), &payload)?;
        bar.inc(1);
    }
    // Writes filled nothing in the cache, but reset the counters to be sure.
    let base = store.stats();
    // Counted on the reader's side: whether each read found its extent prefetched
    // (`prefetch_used` moved during the read).
    let (mut sequential, mut covered, mut total, mut served) = (0u64, 0u64, 0u64, 0u64);
    let (mut runs, mut runs_covered) = (0u64, 0u64);
    let mut prev_end = u64::MAX;
    let mut recent = [u64::MAX; 8];
    for (n, &(first, last)) in reads.iter().enumerate() {
        // A request continues a sequential run if it starts where one of the last
        // few requests ended (the readahead tracks several streams).
        let continues = recent.contains(&first) || prev_end == first;
        for id in first..=last {
            let before = store.stats().cache.prefetch_used;
            store.read(ExtentId(id))?;
            let from_prefetch = store.stats().cache.prefetch_used > before;
            total += 1;
            served += u64::from(from_prefetch);
            if continues || id > first {
                sequential += 1;
                covered += u64::from(from_prefetch);
            }
            if continues && id == first {
                runs += 1;
                runs_covered += u64::from(from_prefetch);
            }
        }
        prev_end = last + 1;
        recent[n % recent.len()] = last + 1;
        // The trace's requests are milliseconds apart: let queued prefetches land
        // (bounded wait).
        for _ in 0..10_000 {
            if store.prefetch_queued() == 0 {
                break;
            }
            std::thread::yield_now();
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let stats = store.stats();
    let wasted = stats.cache.prefetch_wasted - base.cache.prefetch_wasted;
    println!(
        "readahead ({} MiB cache, {} KiB extents, {} read requests): {total} extent reads, {sequential} in sequential runs",
        cache_bytes / MIB,
        EXTENT / 1024,
        reads.len()
    );
    println!(
        "  coverage: {:.1} % of extent reads in sequential runs served from prefetch ({covered}/{sequential})",
        100.0 * covered as f64 / sequential.max(1) as f64
    );
    println!(
        "  coverage: {:.1} % of requests continuing a run found their first extent prefetched ({runs_covered}/{runs})",
        100.0 * runs_covered as f64 / runs.max(1) as f64
    );
    println!(
        "  accuracy: {:.1} % of prefetched extents whose fate is known were read before eviction ({served} read, {wasted} evicted unread)",
        100.0 * served as f64 / (served + wasted).max(1) as f64,
    );
    Ok(())
}

/// Misses of Belady's OPT with room for `slots` objects of one size: on a miss
/// with the cache full, evict the object whose next request is farthest away
/// (next-access times from one backward pass; a max-heap with stale entries
/// skipped).
fn belady(requests: &[Request], slots: u64) -> u64 {
    let mut next = vec![usize::MAX; requests.len()];
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate().rev() {
        next[i] = seen.insert(r.id, i).unwrap_or(usize::MAX);
    }
    // id -> its next request while cached.
    let mut cached: HashMap<u64, usize> = HashMap::new();
    let mut heap = std::collections::BinaryHeap::new();
    let mut misses = 0;
    for (i, r) in requests.iter().enumerate() {
        if let Some(n) = cached.get_mut(&r.id) {
            *n = next[i];
            heap.push((next[i], r.id));
            continue;
        }
        misses += 1;
        if cached.len() as u64 >= slots {
            while let Some((n, id)) = heap.pop() {
                if cached.get(&id) == Some(&n) {
                    cached.remove(&id);
                    break;
                }
            }
        }
        cached.insert(r.id, next[i]);
        heap.push((next[i], r.id));
    }
    misses
}
