//! A small log-structured key-value store on `extentmeta`: the crate's guide to
//! building an engine.
//!
//! ```sh
//! cargo run --release --example kv                          # the guided demo
//! cargo run --release --example kv -- crash-test --rounds 20  # run, SIGKILL, reopen, check
//! cargo run --release --example kv -- open-bench --keys 100000 --value-bytes 65536
//! cargo run --release --example kv -- backup-bench --keys 20000 --value-bytes 65536
//! ```
//!
//! How the engine maps onto the crate:
//!
//! * **One extent per key.** A key gets an [`ExtentId`] the first time it is put;
//!   an overwrite is a `write` of the same id (the content generation bumps, the
//!   cache never serves the old value), a delete is `Store::delete` (the id is
//!   not reused while the engine runs: a key put again after a delete gets a
//!   fresh id; after a reopen, ids past the highest live one may be).
//! * **The tag is the key.** Each extent's record carries its key as its
//!   [`Tag`] (`Store::write_tagged`), and the extent holds the value alone. So
//!   the engine keeps no manifest of its own: on open it scans
//!   `Store::records_tagged()` and rebuilds its in-memory index (a `BTreeMap`
//!   for range scans) without reading a byte of data, however large the values.
//!   Everything the index needs is durable because every acknowledged `write`
//!   and `delete` is, tag included. Keys are at most [`MAX_TAG_LEN`] bytes (an
//!   engine with longer keys would tag a hash of the key and keep the key in the
//!   value).
//! * **Range scans prefetch.** A scan hands the ids of its range to
//!   `Store::prefetch` before reading them one by one: the first read waits for
//!   its bytes, the rest are usually already cached.
//! * **GC is the crate's planner.** A background thread asks
//!   `Store::plan_compaction(FreeRatio)` which extents to move and `Store::pack`
//!   moves them into lower holes, so device files shrink; reads go on meanwhile.
//! * **Restart is `Store::open`.** Dropping the engine drops the store (its
//!   workers stop); opening again recovers every acknowledged write and delete.
//! * **Backup is `Store::checkpoint_to`.** The demo backs the store up while a
//!   thread keeps writing, then opens the copy as an engine of its own.
//! * **Replication is the change stream.** [`Replica`] follows
//!   `Store::changes_since`, applying each change by its record's version (the
//!   rule that makes the stream's order safe), and saves its state and cursor in
//!   a file of its own. After the engine restarts, the stream starts afresh
//!   (`Error::ChangesTruncated`): the replica starts again from
//!   `Store::change_baseline`, copying only the values whose version it lacks.

use clap::{Parser, Subcommand};
use extentmeta::{Error, ExtentId, MAX_TAG_LEN, PlanGoal, Store, StoreConfig, Tag};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The engine.
struct Kv {
    store: Store,
    index: RwLock<BTreeMap<Vec<u8>, ExtentId>>,
    next_id: AtomicU64,
}

impl Kv {
    /// Opens (or creates) the engine in `dir` and rebuilds its index from the
    /// records' tags: no data is read.
    fn open(dir: &Path) -> Result<Kv> {
        let store = Store::open(dir, config())?;
        let mut index = BTreeMap::new();
        let mut next_id = 0;
        for (record, key) in store.records_tagged() {
            let id = record.extent();
            next_id = next_id.max(id.0 + 1);
            index.insert(key.as_bytes().to_vec(), id);
        }
        Ok(Kv {
            store,
            index: RwLock::new(index),
            next_id: AtomicU64::new(next_id),
        })
    }

    /// Puts `key = value`; durable when it returns. Keys are at most
    /// [`MAX_TAG_LEN`] bytes.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let tag = Tag::new(key)?;
        let existing = self.index.read().map_err(|_| "poisoned")?.get(key).copied();
        let id = existing.unwrap_or_else(|| ExtentId(self.next_id.fetch_add(1, Ordering::Relaxed)));
        self.retrying(|| self.store.write_tagged(id, value, tag).map(drop))?;
        self.index
            .write()
            .map_err(|_| "poisoned")?
            .insert(key.to_vec(), id);
        Ok(())
    }

    /// The value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(id) = self.index.read().map_err(|_| "poisoned")?.get(key).copied() else {
            return Ok(None);
        };
        match self.store.read(id) {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(Error::NotReadable { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes `key`; durable when it returns. The key leaves the index first,
    /// so that a put racing the delete takes a fresh id instead of writing the
    /// extent being deleted. If the delete fails the key comes back: a failed
    /// `Store::delete` may have left the extent live, and the engine must not
    /// lose its reference. (This demo does not serialize a key's operations:
    /// a put of the same key racing a delete that then fails leaves the old
    /// extent live and unreferenced. An engine would order them per key.)
    fn delete(&self, key: &[u8]) -> Result<bool> {
        let Some(id) = self.index.write().map_err(|_| "poisoned")?.remove(key) else {
            return Ok(false);
        };
        if let Err(err) = self.retrying(|| self.store.delete(id).map(drop)) {
            (self.index.write().map_err(|_| "poisoned")?)
                .entry(key.to_vec())
                .or_insert(id);
            return Err(err);
        }
        Ok(true)
    }

    /// Every `(key, value)` in `range`, prefetching the range first.
    fn scan(&self, range: impl RangeBounds<Vec<u8>>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let ids: Vec<(Vec<u8>, ExtentId)> = self
            .index
            .read()
            .map_err(|_| "poisoned")?
            .range(range)
            .map(|(k, id)| (k.clone(), *id))
            .collect();
        let just_ids: Vec<ExtentId> = ids.iter().map(|(_, id)| *id).collect();
        self.store.prefetch(&just_ids);
        let mut out = Vec::with_capacity(ids.len());
        for (key, id) in ids {
            match self.store.read(id) {
                Ok(bytes) => out.push((key, bytes.to_vec())),
                Err(Error::NotReadable { .. }) => {} // deleted meanwhile
                Err(err) => return Err(err.into()),
            }
        }
        Ok(out)
    }

    /// One GC pass: move the extents the planner picks into lower holes.
    fn gc(&self) -> usize {
        let plan = self
            .store
            .plan_compaction(&PlanGoal::FreeRatio { target: 0.2 });
        self.store.pack(&plan).iter().filter(|r| r.is_ok()).count()
    }

    /// Retries what a concurrent writer of the same extent made fail fast.
    fn retrying(&self, mut op: impl FnMut() -> extentmeta::Result<()>) -> Result<()> {
        let mut wait_us = 50;
        // Bounded: 20 attempts, backing off to 10 ms.
        for _ in 0..20 {
            match op() {
                Err(err) if err.is_retryable() => {
                    std::thread::sleep(Duration::from_micros(wait_us));
                    wait_us = (wait_us * 2).min(10_000);
                }
                other => return other.map_err(Into::into),
            }
        }
        op().map_err(Into::into)
    }
}

/// A replica of the engine fed by its change stream: key and value per extent,
/// at the version it last applied, and the number of the next change to read
/// in the stream it names. It survives restarts of the engine and of itself:
/// [`save`](Replica::save) persists it, and another stream (the engine
/// reopened, or opened from a backup, whose numbers start again near 0) or a
/// cursor the stream no longer covers makes it start again from the baseline.
/// What a replica holds per extent: the version and generation applied, and
/// the key and value if live.
type Held = (u64, u64, Option<(Vec<u8>, Vec<u8>)>);

#[derive(Default)]
struct Replica {
    held: HashMap<ExtentId, Held>,
    /// The change stream `next` counts in (`Store::change_stream_id`; 0: none
    /// yet, never a stream's).
    stream: u64,
    next: u64,
    /// Values copied from the engine, and restarts from the baseline.
    copied: u64,
    resyncs: u64,
}

impl Replica {
    /// Applies `record` (with its key) if it is newer than what is held
    /// (`newer`: a change of the stream), or other than what is held (a
    /// baseline record: the engine's state now, which after a restore from a
    /// backup may be older than the replica's), copying the value of a live
    /// one unless the generation held is its own (a relocation or a
    /// quarantine moved the bytes, not their content).
    fn apply(
        &mut self,
        store: &Store,
        record: extentmeta::Snapshot,
        key: &Tag,
        newer: bool,
    ) -> Result<()> {
        let id = record.extent();
        let held = self.held.get(&id);
        let skip = |&(v, g, _): &Held| match newer {
            true => v >= record.version(),
            false => (v, g) == (record.version(), record.generation()),
        };
        if held.is_some_and(skip) {
            return Ok(());
        }
        let live = match (record.state(), held) {
            (extentmeta::record::State::Vacant, _) => None,
            (_, Some((_, generation, Some(live)))) if *generation == record.generation() => {
                Some(live.clone())
            }
            _ => match store.read(id) {
                // The bytes may be of a later generation than `record`: its own
                // change is in the stream, and applying it copies them again.
                Ok(bytes) => {
                    self.copied += 1;
                    Some((key.as_bytes().to_vec(), bytes.to_vec()))
                }
                // Deleted since: the delete's change follows.
                Err(Error::NotReadable { .. }) => None,
                Err(err) => return Err(err.into()),
            },
        };
        self.held
            .insert(id, (record.version(), record.generation(), live));
        Ok(())
    }

    /// Reads and applies every change the stream holds past the cursor, or
    /// starts again from the baseline if the cursor is another stream's (the
    /// engine was reopened, or opened from a backup, and numbers afresh) or
    /// the stream no longer covers it.
    fn catch_up(&mut self, store: &Store) -> Result<()> {
        if self.stream != store.change_stream_id() {
            return self.resync(store);
        }
        match store.changes_since(self.next) {
            Ok(changes) => {
                for change in changes {
                    if let (Some(seq), Some(record), Some(key)) =
                        (change.seq(), change.record(), change.tag())
                    {
                        self.apply(store, record, &key, true)?;
                        self.next = seq + 1;
                    }
                }
                Ok(())
            }
            Err(Error::ChangesTruncated { .. } | Error::ChangeSeqAhead { .. }) => {
                self.resync(store)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Starts again from the engine's baseline: its state now, which the
    /// replica takes whole (copying only the values it does not hold).
    fn resync(&mut self, store: &Store) -> Result<()> {
        self.resyncs += 1;
        let stream = store.change_stream_id();
        let (from, records) = store.change_baseline();
        let mut seen = std::collections::HashSet::new();
        for (record, key) in records {
            seen.insert(record.extent());
            self.apply(store, record, &key, false)?;
        }
        // What the baseline does not name was never written there.
        self.held.retain(|id, _| seen.contains(id));
        (self.stream, self.next) = (stream, from);
        Ok(())
    }

    /// The live keys and values.
    fn contents(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        (self.held.values())
            .filter_map(|(_, _, live)| live.clone())
            .collect()
    }

    /// Saves the replica to `path` atomically (temp file, sync, rename).
    fn save(&self, path: &Path) -> Result<()> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&self.next.to_le_bytes());
        for (id, (version, generation, live)) in &self.held {
            for word in [id.0, *version, *generation] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            let (key, value) = live.clone().unwrap_or_default();
            for field in [&key, &value] {
                out.extend_from_slice(&(field.len() as u64).to_le_bytes());
                out.extend_from_slice(field);
            }
            out.push(u8::from(live.is_some()));
        }
        let temp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&out)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        Ok(())
    }

    /// Loads a replica saved by [`save`](Replica::save); a fresh one if none.
    fn load(path: &Path) -> Result<Replica> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Replica::default()),
            Err(err) => return Err(err.into()),
        };
        let mut rest = bytes.as_slice();
        let mut take = |n: usize| -> Result<Vec<u8>> {
            let (head, tail) = rest.split_at_checked(n).ok_or("replica file cut short")?;
            rest = tail;
            Ok(head.to_vec())
        };
        let number =
            |b: Vec<u8>| -> Result<u64> { Ok(u64::from_le_bytes(b.as_slice().try_into()?)) };
        let mut replica = Replica {
            stream: number(take(8)?)?,
            next: number(take(8)?)?,
            ..Replica::default()
        };
        // Records until the file ends exactly at one's end.
        while let Ok(id) = take(8) {
            let id = number(id)?;
            let version = number(take(8)?)?;
            let generation = number(take(8)?)?;
            let key_len = number(take(8)?)? as usize;
            let key = take(key_len)?;
            let value_len = number(take(8)?)? as usize;
            let value = take(value_len)?;
            let live = take(1)?[0] == 1;
            let live = live.then_some((key, value));
            (replica.held).insert(ExtentId(id), (version, generation, live));
        }
        Ok(replica)
    }
}

/// The engine's store configuration.
fn config() -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .cache_bytes(16 << 20)
        .journal_max_bytes(1 << 20)
        // 8 GiB a device bounds the demo's files (the default is 1 TiB).
        .device_capacity_bytes(8 << 30)
        .build()
        .expect("a valid configuration")
}

#[derive(Parser)]
#[command(about = "A log-structured key-value store on extentmeta")]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// The guided demo: put, overwrite, delete, scan, GC, restart, check (default).
    Demo {
        /// Where the store lives (a temp dir if absent).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keys to put.
        #[arg(long, default_value_t = 2000)]
        keys: u64,
    },
    /// Runs a writer child, kills it with SIGKILL after a random number of
    /// acknowledged operations, reopens and checks every acknowledged one; repeats.
    CrashTest {
        /// Kill-and-reopen rounds.
        #[arg(long, default_value_t = 20)]
        rounds: u32,
        /// Seed of the kill points.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measures the open of an engine of `keys` values of `value-bytes`: the
    /// index rebuilt from tags, against reading a key header from every value
    /// (what an engine without tags does), each with the page cache warm and
    /// dropped.
    OpenBench {
        /// Keys to put.
        #[arg(long, default_value_t = 100_000)]
        keys: u64,
        /// Bytes of each value.
        #[arg(long, default_value_t = 65_536)]
        value_bytes: usize,
        /// Where the store lives (a temp dir if absent).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Measures `Store::checkpoint_to` against a plain copy of the store's
    /// directory (every file copied with `std::fs::copy`, then synced), median of
    /// three each.
    BackupBench {
        /// Keys to put.
        #[arg(long, default_value_t = 20_000)]
        keys: u64,
        /// Bytes of each value.
        #[arg(long, default_value_t = 65_536)]
        value_bytes: usize,
    },
    /// (internal) The child of `crash-test`: writes, deletes, compacts and reads
    /// until killed, printing each acknowledged operation.
    Child {
        /// The store directory.
        #[arg(long)]
        dir: PathBuf,
        /// Seed of the operation mix.
        #[arg(long)]
        seed: u64,
        /// The version of the first operation.
        #[arg(long)]
        first_version: u64,
    },
}

fn main() -> Result<()> {
    match Args::parse().command.unwrap_or(Cmd::Demo {
        dir: None,
        keys: 2000,
    }) {
        Cmd::Demo { dir, keys } => demo(dir, keys),
        Cmd::CrashTest { rounds, seed } => crash_test(rounds, seed),
        Cmd::OpenBench {
            keys,
            value_bytes,
            dir,
        } => open_bench(keys, value_bytes, dir),
        Cmd::BackupBench { keys, value_bytes } => backup_bench(keys, value_bytes),
        Cmd::Child {
            dir,
            seed,
            first_version,
        } => child(&dir, seed, first_version),
    }
}

/// Keys are tags: at most [`MAX_TAG_LEN`] bytes (these are 11).
fn key(i: u64) -> Vec<u8> {
    debug_assert!(format!("key{i:08}").len() <= MAX_TAG_LEN);
    format!("key{i:08}").into_bytes()
}

/// A value that names its key and version, so a stale value never passes.
fn value(i: u64, version: u64) -> Vec<u8> {
    let mut v = format!("key{i:08} v{version} ").into_bytes();
    v.resize(200 + (i % 7) as usize * 300, b'.');
    v
}

fn demo(dir: Option<PathBuf>, keys: u64) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| temp.path().join("engine"));
    let replica_path = temp.path().join("replica");
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    {
        let kv = Arc::new(Kv::open(&dir)?);
        println!(
            "opened {} ({} keys recovered)",
            dir.display(),
            kv.index.read().map_err(|_| "poisoned")?.len()
        );
        let stop = Arc::new(AtomicBool::new(false));
        // The replica follows along in a thread of its own and saves itself
        // when the engine stops.
        let replica = {
            let (kv, stop, path) = (Arc::clone(&kv), Arc::clone(&stop), replica_path.clone());
            std::thread::spawn(move || -> Result<Replica> {
                let mut replica = Replica::load(&path)?;
                while !stop.load(Ordering::Relaxed) {
                    replica.catch_up(&kv.store)?;
                    std::thread::sleep(Duration::from_millis(1));
                }
                replica.catch_up(&kv.store)?;
                replica.save(&path)?;
                Ok(replica)
            })
        };
        let gc = {
            let (kv, stop) = (Arc::clone(&kv), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut moved = 0;
                while !stop.load(Ordering::Relaxed) {
                    moved += kv.gc();
                    std::thread::sleep(Duration::from_millis(20));
                }
                moved
            })
        };
        for i in 0..keys {
            kv.put(&key(i), &value(i, 1))?;
            model.insert(key(i), value(i, 1));
        }
        for i in (0..keys).step_by(2) {
            kv.put(&key(i), &value(i, 2))?;
            model.insert(key(i), value(i, 2));
        }
        for i in (0..keys).step_by(4) {
            kv.delete(&key(i + 1))?;
            model.remove(&key(i + 1));
        }
        let range = key(100)..key(200);
        let scanned = kv.scan(range.clone())?;
        let expected: Vec<_> = model
            .range(range)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(scanned, expected, "scan matches the model");
        stop.store(true, Ordering::Relaxed);
        let moved = gc.join().map_err(|_| "gc thread panicked")?;
        let moved = moved + kv.gc();
        let replica = replica.join().map_err(|_| "the replica panicked")??;
        assert_eq!(replica.contents(), model, "the replica matches the model");
        println!(
            "replica followed the change stream to change {}: {} values copied, {} restarts from the baseline",
            replica.next, replica.copied, replica.resyncs
        );
        let stats = kv.store.stats();
        let space: u64 = kv.store.space().iter().map(|d| d.file_bytes).sum();
        let live: u64 = kv.store.space().iter().map(|d| d.live_bytes).sum();
        println!(
            "{} puts, {} deletes, scan of {} keys ({} prefetch hints), GC moved {moved} extents; files {space} B for {live} B live; {} journal syncs",
            keys + keys.div_ceil(2),
            keys.div_ceil(4),
            scanned.len(),
            stats.prefetch_queued,
            stats.journal_syncs,
        );
    } // the engine and its store are dropped: a clean restart follows
    let kv = Kv::open(&dir)?;
    let recovered = kv
        .store
        .recovery()
        .ok_or("a durable store reports its recovery")?;
    for (k, v) in &model {
        assert_eq!(
            kv.get(k)?.as_ref(),
            Some(v),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
    assert_eq!(kv.index.read().map_err(|_| "poisoned")?.len(), model.len());
    println!(
        "reopened: {} records from checkpoint {} + {} journal entries; all {} keys read back exactly",
        recovered.records,
        recovered.checkpoint,
        recovered.replayed,
        model.len()
    );
    // The replica restarts too: its saved cursor is from the engine's earlier
    // run, so it starts again from the baseline, copying no value it holds.
    let mut replica = Replica::load(&replica_path)?;
    let (cursor, copied) = (replica.next, replica.copied);
    replica.catch_up(&kv.store)?;
    assert_eq!(
        replica.resyncs, 1,
        "a reopened engine's stream starts afresh"
    );
    assert_eq!(
        replica.contents(),
        model,
        "the replica matches after the restart"
    );
    println!(
        "replica restarted at change {cursor}: the reopened engine's stream starts at {}, so it \
         resynced from the baseline, copying {} values of {}",
        replica.next,
        replica.copied - copied,
        model.len()
    );
    // A backup while writes go on: the copy opens as an engine of its own,
    // holding every key acknowledged before the backup began.
    let backup_dir = temp.path().join("backup");
    let writer = std::thread::scope(|s| -> Result<extentmeta::Backup> {
        let writes = s.spawn(|| -> Result<()> {
            for i in keys..keys + 200 {
                kv.put(&key(i), &value(i, 1))?;
            }
            Ok(())
        });
        let backup = kv.store.checkpoint_to(&backup_dir)?;
        writes.join().map_err(|_| "the writer panicked")??;
        Ok(backup)
    })?;
    let copy = Kv::open(&backup_dir)?;
    for (k, v) in &model {
        assert_eq!(
            copy.get(k)?.as_ref(),
            Some(v),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
    println!(
        "backup under writes: {} records, {} MiB of device files copied; the copy holds all {} keys",
        writer.records,
        writer.device_bytes >> 20,
        model.len()
    );
    // The replica follows the copy now: the copy's stream numbers from about
    // 0 and is another stream, so the replica starts again from its
    // baseline and holds what the copy holds (not the writes the copy missed).
    replica.catch_up(&kv.store)?;
    let held = replica.contents();
    let (resyncs, next) = (replica.resyncs, replica.next);
    replica.catch_up(&copy.store)?;
    assert_eq!(replica.resyncs, resyncs + 1, "another stream: a resync");
    let copied: BTreeMap<Vec<u8>, Vec<u8>> = (copy.store.records_tagged())
        .map(|(r, k)| Ok((k.as_bytes().to_vec(), copy.store.read(r.extent())?.to_vec())))
        .collect::<Result<_>>()?;
    assert_eq!(replica.contents(), copied, "the replica follows the copy");
    println!(
        "replica moved to the copy: cursor {next} of the engine's stream, {} of the copy's; \
         {} keys held, {} now",
        replica.next,
        held.len(),
        copied.len()
    );
    Ok(())
}

fn open_bench(keys: u64, value_bytes: usize, dir: Option<PathBuf>) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());
    {
        let store = Store::open(&dir, config())?;
        // Each value also starts with its key, so that the header-reading
        // engine can be measured on the same files.
        let started = std::time::Instant::now();
        for chunk in (0..keys).collect::<Vec<_>>().chunks(64) {
            let values: Vec<(ExtentId, Vec<u8>, Tag)> = (chunk.iter())
                .map(|&i| {
                    let mut v = key(i);
                    v.resize(value_bytes.max(v.len()), b'.');
                    Ok((ExtentId(i), v, Tag::new(&key(i))?))
                })
                .collect::<Result<_>>()?;
            let items: Vec<(ExtentId, &[u8], Tag)> = (values.iter())
                .map(|(id, v, t)| (*id, &v[..], *t))
                .collect();
            store.write_batch_tagged(&items)?;
        }
        println!(
            "put {keys} values of {value_bytes} B in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        store.close()?;
    }
    let tags = |store: &Store| -> Result<usize> {
        let index: BTreeMap<Vec<u8>, ExtentId> = (store.records_tagged())
            .map(|(r, k)| (k.as_bytes().to_vec(), r.extent()))
            .collect();
        Ok(index.len())
    };
    let headers = |store: &Store| -> Result<usize> {
        let mut index = BTreeMap::new();
        for r in store.records() {
            let bytes = store.read(r.extent())?;
            index.insert(bytes[..key(0).len()].to_vec(), r.extent());
        }
        Ok(index.len())
    };
    let median = |cold: bool, rebuild: &dyn Fn(&Store) -> Result<usize>| -> Result<f64> {
        let mut runs = Vec::new();
        for _ in 0..3 {
            if cold {
                drop_page_cache(&dir)?;
            }
            let started = std::time::Instant::now();
            let store = Store::open(&dir, config())?;
            let n = rebuild(&store)?;
            runs.push(started.elapsed().as_secs_f64());
            if n as u64 != keys {
                return Err(format!("rebuilt {n} keys of {keys}").into());
            }
        }
        runs.sort_by(f64::total_cmp);
        Ok(runs[1])
    };
    for cold in [false, true] {
        let (t, h) = (median(cold, &tags)?, median(cold, &headers)?);
        println!(
            "open + index of {keys} keys, page cache {}: from tags {:.3} s, from value headers {:.3} s ({:.4}x)",
            if cold { "dropped" } else { "warm" },
            t,
            h,
            t / h
        );
    }
    Ok(())
}

fn backup_bench(keys: u64, value_bytes: usize) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let live = temp.path().join("live");
    let kv = Kv::open(&live)?;
    let value = vec![b'v'; value_bytes];
    for chunk in (0..keys).collect::<Vec<_>>().chunks(64) {
        let items: Vec<(ExtentId, &[u8], Tag)> = (chunk.iter())
            .map(|&i| Ok((ExtentId(i), &value[..], Tag::new(&key(i))?)))
            .collect::<Result<_>>()?;
        kv.store.write_batch_tagged(&items)?;
    }
    let mut ours = Vec::new();
    let mut plain = Vec::new();
    let mut bytes = 0;
    for round in 0..3 {
        let started = std::time::Instant::now();
        let backup = kv
            .store
            .checkpoint_to(temp.path().join(format!("backup-{round}")))?;
        ours.push(started.elapsed().as_secs_f64());
        bytes = backup.device_bytes;
        // The plain copy of the same directory, as `cp -r` and a sync would.
        let started = std::time::Instant::now();
        let to = temp.path().join(format!("copy-{round}"));
        std::fs::create_dir(&to)?;
        for entry in std::fs::read_dir(&live)? {
            let from = entry?.path();
            if from.is_file() {
                let dest = to.join(from.file_name().ok_or("a file name")?);
                std::fs::copy(&from, &dest)?;
                std::fs::File::open(&dest)?.sync_all()?;
            }
        }
        std::fs::File::open(&to)?.sync_all()?;
        plain.push(started.elapsed().as_secs_f64());
        std::fs::remove_dir_all(temp.path().join(format!("backup-{round}")))?;
        std::fs::remove_dir_all(&to)?;
    }
    ours.sort_by(f64::total_cmp);
    plain.sort_by(f64::total_cmp);
    let mib = bytes as f64 / (1u64 << 20) as f64;
    println!(
        "backup of {keys} keys ({mib:.0} MiB of device files): checkpoint_to {:.3} s ({:.0} MiB/s), \
         plain copy of the directory {:.3} s ({:.0} MiB/s), ratio {:.3}x (medians of 3)",
        ours[1],
        mib / ours[1],
        plain[1],
        mib / plain[1],
        ours[1] / plain[1]
    );
    Ok(())
}

/// Drops the page cache of every file in `dir` (`posix_fadvise(DONTNEED)`
/// after a sync, so the pages are clean and can go).
fn drop_page_cache(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            let file = std::fs::File::open(&path)?;
            file.sync_all()?;
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
        }
    }
    Ok(())
}

/// A key's state: absent, or present at a version (every value names its version).
type State = Option<u64>;

fn crash_test(rounds: u32, seed: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut model: HashMap<u64, State> = HashMap::new();
    let mut next_version = 1u64;
    let mut rng = seed.max(1);
    let mut total = 0u64;
    for round in 0..rounds {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = 20 + rng % 300;
        let mut child = Command::new(&exe)
            .args(["child", "--dir"])
            .arg(dir.path())
            .args(["--seed", &(seed * 1000 + u64::from(round)).to_string()])
            .args(["--first-version", &next_version.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("child stdout")?).lines();
        let mut seen = 0u64;
        let mut acked = |line: String, seen: &mut u64| -> Result<()> {
            let mut parts = line.split_whitespace();
            let (Some(op), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("bad line {line:?}").into());
            };
            let (k, version): (u64, u64) = (k.parse()?, v.parse()?);
            model.insert(k, (op == "put").then_some(version));
            next_version = next_version.max(version + 1);
            *seen += 1;
            Ok(())
        };
        while seen < kill_after {
            match lines.next() {
                Some(line) => acked(line?, &mut seen)?,
                None => return Err("the child exited before it was killed".into()),
            }
        }
        child.kill()?; // SIGKILL: no destructor runs, nothing is flushed
        child.wait()?;
        // Every line the child printed was acknowledged before it was printed.
        for line in lines {
            acked(line?, &mut seen)?;
        }
        // At most one operation was in flight: it took version `next_version`.
        let in_flight = next_version;
        next_version = in_flight.saturating_add(1);
        total += seen;
        let deviations = check(dir.path(), &mut model, in_flight)?;
        println!(
            "round {round}: killed after {seen} acknowledged operations; reopened, {} keys exact{}",
            model.len(),
            if deviations == 1 {
                " (+ the operation in flight)"
            } else {
                ""
            }
        );
    }
    println!("crash test: {rounds} kills, {total} acknowledged operations, every one recovered");
    Ok(())
}

fn version_of(k: u64, v: &[u8]) -> Result<u64> {
    let text = String::from_utf8_lossy(&v[..24.min(v.len())]).into_owned();
    let version: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.strip_prefix('v'))
        .ok_or("value without a version")?
        .parse()?;
    if v != value(k, version) {
        return Err(format!("key {k}: value of v{version} is damaged").into());
    }
    Ok(version)
}

/// Reopens and checks every key against the acknowledged model: each holds its
/// last acknowledged state, except at most one key, which may show the operation
/// in flight at the kill. Then adopts what was found as the new model.
fn check(dir: &Path, model: &mut HashMap<u64, State>, in_flight: u64) -> Result<u32> {
    let kv = Kv::open(dir)?;
    let mut deviations = 0;
    for k in 0..KEYS {
        let found = kv.get(&key(k))?.map(|v| version_of(k, &v)).transpose()?;
        let want = model.get(&k).copied().flatten();
        if found != want {
            deviations += 1;
            let explained = deviations == 1 && (found.is_none() || found == Some(in_flight));
            if !explained {
                return Err(format!(
                    "key {k}: found {found:?}, acknowledged {want:?} (in flight: v{in_flight})"
                )
                .into());
            }
        }
        model.insert(k, found);
    }
    Ok(deviations)
}

/// Keys the crash test writes.
const KEYS: u64 = 64;

fn child(dir: &Path, seed: u64, first_version: u64) -> Result<()> {
    let kv = Arc::new(Kv::open(dir)?);
    let gc = {
        let kv = Arc::clone(&kv);
        std::thread::spawn(move || {
            // Bounded by the parent's kill.
            loop {
                kv.gc();
                let _ = kv.scan(key(0)..key(KEYS));
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let out = std::io::stdout();
    let mut rng = seed.max(1);
    // One writer, one global version counter: every operation takes the next
    // version, so "the operation in flight" is exactly one version. Bounded by the
    // parent's kill and by this cap.
    for version in first_version..first_version + 1_000_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = rng % KEYS;
        let line = if rng.is_multiple_of(5) {
            kv.delete(&key(k))?;
            format!("del {k} {version}")
        } else {
            kv.put(&key(k), &value(k, version))?;
            format!("put {k} {version}")
        };
        let mut out = out.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    drop(gc);
    Ok(())
}
