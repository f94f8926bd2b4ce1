//! Cold sequential scans (issue 23): what readahead and explicit prefetch buy
//! when every read pays a device's latency, measured side by side in one run.
//!
//! * `scan/200us`: 4 000 extents of 16 KiB, read in id order from a store just
//!   opened (cold cache) over an `Fs` that adds 200 µs to every read of a device
//!   file (the seed's archival nodes; this machine's disk is cached by its host),
//!   readahead on against off, rounds alternated.
//! * `scan/prefetch-64`: the same device, readahead off, the scan calling
//!   `Store::prefetch` for the id 64 ahead of each read, against no prefetch.
//! * `scan/disk`: the real files with the OS page cache dropped before each round
//!   (`posix_fadvise(DONTNEED)` on the device files), readahead on against off.
//!
//! Each figure is the median over five rounds of on / off (or prefetch / none);
//! run the bench three times and quote the medians. Values encode extent and
//! generation; every read is checked.
//!
//! Run: `cargo bench --bench scan`.

use extentmeta::fs::{Fs, FsFile, StdFs};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EXTENTS: u64 = 4_000;
const VALUE: usize = 16 << 10;
const ROUNDS: usize = 5;
const LATENCY: Duration = Duration::from_micros(200);

/// The real file system with `LATENCY` added to every read of a device file.
#[derive(Debug, Default)]
struct SlowFs {
    reads: Arc<AtomicU64>,
}

#[derive(Debug)]
struct SlowFile {
    inner: Arc<dyn FsFile>,
    slow: bool,
    reads: Arc<AtomicU64>,
}

impl FsFile for SlowFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.slow {
            // Relaxed: a counter read after the threads joined.
            self.reads.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(LATENCY);
        }
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Fs for SlowFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FsFile>> {
        let slow = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".extents"));
        Ok(Arc::new(SlowFile {
            inner: StdFs.open(path, create)?,
            slow,
            reads: Arc::clone(&self.reads),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        StdFs.lock(path)
    }
}

fn config(readahead: bool) -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .cache_bytes(256 << 20)
        .readahead(readahead)
        .build()
        .expect("valid config")
}

fn value(id: u64) -> Vec<u8> {
    let mut v = vec![(id % 251) as u8; VALUE];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v[8..16].copy_from_slice(&1u64.to_le_bytes());
    v
}

fn fill(dir: &Path) {
    let store = Store::open(dir, config(false)).expect("open");
    common_fill(&store);
    store.close().expect("close");
}

fn common_fill(store: &Store) {
    let ids: Vec<(ExtentId, Vec<u8>)> = (0..EXTENTS).map(|id| (ExtentId(id), value(id))).collect();
    for chunk in ids.chunks(64) {
        let batch: Vec<(ExtentId, &[u8])> =
            chunk.iter().map(|(id, v)| (*id, v.as_slice())).collect();
        store.write_batch(&batch).expect("fill");
    }
}

/// Reads every extent in id order (calling `ahead` before each read); seconds.
fn scan(store: &Store, ahead: Option<u64>) -> f64 {
    let start = Instant::now();
    scan_range(store, 0..EXTENTS, ahead);
    start.elapsed().as_secs_f64()
}

/// Reads the extents of `ids` in order (prefetching `ahead` ids ahead of each
/// read, if given); the latency of each read, in seconds.
fn scan_range(store: &Store, ids: std::ops::Range<u64>, ahead: Option<u64>) -> Vec<f64> {
    let end = ids.end;
    ids.map(|id| {
        if let Some(n) = ahead
            && id + n < end
        {
            store.prefetch(&[ExtentId(id + n)]);
        }
        let start = Instant::now();
        let bytes = store.read(ExtentId(id)).expect("read");
        let latency = start.elapsed().as_secs_f64();
        assert_eq!(bytes.len(), VALUE);
        assert_eq!(bytes[..8], id.to_le_bytes(), "extent {id}");
        assert_eq!(bytes[8..16], 1u64.to_le_bytes(), "generation of {id}");
        latency
    })
    .collect()
}

/// Two readers scanning the two halves of the ids at once over `SlowFs`, cold:
/// their readahead windows share one hint queue, so a reader's next claim may
/// wait behind the other scan's hints. (seconds, p99 read latency in seconds).
fn two_scans_round(dir: &Path, readahead: bool) -> (f64, f64) {
    let store = Store::open_in(Arc::new(SlowFs::default()), dir, config(readahead)).expect("open");
    let start = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let halves: Vec<_> = (0..2)
            .map(|half| {
                let store = &store;
                let ids = half * EXTENTS / 2..(half + 1) * EXTENTS / 2;
                s.spawn(move || scan_range(store, ids, None))
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("scan"))
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    store.close().expect("close");
    latencies.sort_by(f64::total_cmp);
    (seconds, latencies[latencies.len() * 99 / 100])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Opens the store over `SlowFs` and scans it cold; (seconds, device reads).
fn slow_round(dir: &Path, readahead: bool, ahead: Option<u64>) -> (f64, u64) {
    let fs = SlowFs::default();
    let reads = Arc::clone(&fs.reads);
    let store = Store::open_in(Arc::new(fs), dir, config(readahead)).expect("open");
    let s = scan(&store, ahead);
    // Relaxed: read after the scan; the workers may still run a load.
    let r = reads.load(Ordering::Relaxed);
    store.close().expect("close");
    (s, r)
}

/// Drops the OS page cache of the device files.
fn drop_page_cache(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "extents") {
            let file = std::fs::File::open(&path).expect("open device file");
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        }
    }
}

/// Opens the store on the real files with their page cache dropped and scans it
/// cold; (seconds, readahead hints queued).
fn disk_round(dir: &Path, readahead: bool) -> (f64, u64) {
    drop_page_cache(dir);
    let store = Store::open(dir, config(readahead)).expect("open");
    let s = scan(&store, None);
    let hints = store.stats().prefetch_queued;
    store.close().expect("close");
    (s, hints)
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    fill(dir);
    let (mut readahead, mut prefetch, mut disk) = (Vec::new(), Vec::new(), Vec::new());
    let (mut two, mut two_p99) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (off, off_reads) = slow_round(dir, false, None);
        let (on, on_reads) = slow_round(dir, true, None);
        let (ahead, ahead_reads) = slow_round(dir, false, Some(64));
        // Alternated order: whichever runs first after the fill or the other
        // configuration's round meets the host's cache in another state.
        let ((disk_off, _), (disk_on, disk_hints)) = if round % 2 == 0 {
            let off = disk_round(dir, false);
            (off, disk_round(dir, true))
        } else {
            let on = disk_round(dir, true);
            (disk_round(dir, false), on)
        };
        println!(
            "scan round {round}: 200us device: off {off:.3} s ({off_reads} reads), readahead \
             {on:.3} s ({on_reads} reads), prefetch 64 ahead {ahead:.3} s ({ahead_reads} reads); \
             disk, page cache dropped: off {disk_off:.3} s, readahead {disk_on:.3} s \
             ({disk_hints} hints)"
        );
        let (two_off, two_off_p99) = two_scans_round(dir, false);
        let (two_on, two_on_p99) = two_scans_round(dir, true);
        println!(
            "scan round {round}: two scans at once, 200us device: off {two_off:.3} s (read p99 \
             {:.0} us), readahead {two_on:.3} s (read p99 {:.0} us)",
            two_off_p99 * 1e6,
            two_on_p99 * 1e6
        );
        two.push(two_on / two_off);
        two_p99.push(two_on_p99 / two_off_p99);
        readahead.push(on / off);
        prefetch.push(ahead / off);
        disk.push(disk_on / disk_off);
    }
    println!(
        "scan/200us: {EXTENTS} x 16 KiB, readahead on / off {:.3} (bound <= 0.2)",
        median(readahead)
    );
    println!(
        "scan/prefetch-64: explicit prefetch 64 ahead / none {:.3} (bound <= 0.7)",
        median(prefetch)
    );
    println!(
        "scan/disk: page cache dropped, readahead on / off {:.3} (bound <= 1.0)",
        median(disk)
    );
    println!(
        "scan/two-at-once: 2 readers x {} x 16 KiB, readahead on / off: time {:.3}, read p99 {:.3}",
        EXTENTS / 2,
        median(two),
        median(two_p99)
    );
}
