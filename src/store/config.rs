//! Validated store configuration.

use crate::error::{Error, Result};
use crate::policy::IntegrityPolicy;
use crate::table::TableConfig;

/// The hard maximum of an extent's length: a location describes at most
/// `u32::MAX` bytes (2^32 - 1).
pub const MAX_EXTENT_BYTES: u64 = u32::MAX as u64;

/// Configuration of a [`Store`](crate::Store); build it with [`StoreConfig::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub(crate) table: TableConfig,
    pub(crate) cache_bytes: u64,
    pub(crate) cache_shards: usize,
    pub(crate) prefetch_workers: usize,
    pub(crate) prefetch_queue: usize,
    pub(crate) device_capacity_bytes: u64,
    pub(crate) block_size_bytes: u32,
    pub(crate) max_extent_bytes: u64,
    pub(crate) readahead_min_bytes: u64,
    pub(crate) readahead_max_bytes: u64,
    pub(crate) policy: IntegrityPolicy,
    pub(crate) scrub_bytes_per_sec: u64,
    pub(crate) scrub_seed: u64,
    pub(crate) scrub_start: u64,
    pub(crate) devices: u16,
    pub(crate) write_wait_ms: u64,
    pub(crate) cache_policy: crate::cache::CachePolicy,
    pub(crate) cache_hooks: CacheHooks,
    pub(crate) latency_histograms: bool,
    pub(crate) readahead: bool,
    pub(crate) readahead_min_read_us: u64,
    pub(crate) journal_max_bytes: u64,
    pub(crate) inline_write_max: u32,
    pub(crate) overlap_data_sync: bool,
    pub(crate) recycle_journals: bool,
    pub(crate) metadata_reserve_bytes: u64,
    pub(crate) create_if_missing: bool,
    pub(crate) error_if_exists: bool,
    pub(crate) create_in_non_empty_dir: bool,
    pub(crate) change_retention: usize,
    pub(crate) change_hold_max: usize,
}

/// The cache's callbacks; two configurations are equal when they hold the same
/// callbacks (by pointer).
#[derive(Clone, Default)]
pub(crate) struct CacheHooks {
    pub(crate) weigher: Option<crate::cache::Weigher>,
    pub(crate) on_evict: Option<crate::cache::EvictionListener>,
    /// Where the repair ladder asks for a good copy before the backend.
    pub(crate) good_copy: Option<GoodCopySource>,
}

/// A source of known-good copies: `(extent, generation)` to the bytes, if any.
pub(crate) type GoodCopySource =
    std::sync::Arc<dyn Fn(crate::ExtentId, u64) -> Option<crate::Bytes> + Send + Sync>;

impl std::fmt::Debug for CacheHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHooks")
            .field("weigher", &self.weigher.is_some())
            .field("eviction_listener", &self.on_evict.is_some())
            .field("good_copy", &self.good_copy.is_some())
            .finish()
    }
}

impl PartialEq for CacheHooks {
    fn eq(&self, other: &Self) -> bool {
        fn same<T: ?Sized>(a: &Option<std::sync::Arc<T>>, b: &Option<std::sync::Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        same(&self.weigher, &other.weigher)
            && same(&self.on_evict, &other.on_evict)
            && same(&self.good_copy, &other.good_copy)
    }
}

impl Eq for CacheHooks {}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            table: TableConfig::default(),
            cache_bytes: 64 << 20,
            cache_shards: 16,
            prefetch_workers: 2,
            prefetch_queue: 1024,
            device_capacity_bytes: 1 << 40,
            block_size_bytes: 4096,
            max_extent_bytes: MAX_EXTENT_BYTES,
            readahead_min_bytes: 8 << 10,
            readahead_max_bytes: 256 << 10,
            policy: IntegrityPolicy::default(),
            scrub_bytes_per_sec: 0,
            scrub_seed: 0x5eed,
            scrub_start: 0,
            devices: 1,
            write_wait_ms: 10_000,
            cache_policy: crate::cache::CachePolicy::default(),
            cache_hooks: CacheHooks::default(),
            latency_histograms: true,
            readahead: true,
            readahead_min_read_us: super::driver::SLOW_READ.as_micros() as u64,
            journal_max_bytes: 64 << 20,
            inline_write_max: DEFAULT_INLINE_WRITE_MAX,
            overlap_data_sync: true,
            recycle_journals: true,
            metadata_reserve_bytes: 8 << 20,
            create_if_missing: true,
            error_if_exists: false,
            create_in_non_empty_dir: false,
            change_retention: crate::events::DEFAULT_CHANGE_RETENTION,
            change_hold_max: crate::events::DEFAULT_CHANGE_HOLD_MAX,
        }
    }
}

/// The default [`inline_write_max`](StoreConfigBuilder::inline_write_max).
const DEFAULT_INLINE_WRITE_MAX: u32 = 32 << 10;

impl StoreConfig {
    /// A builder starting from the defaults: 64 MiB cache in 16 shards, 2 prefetch
    /// workers with a 1 024-hint queue, 1 TiB per device in 4 KiB blocks, readahead
    /// from 8 KiB doubling to 256 KiB.
    pub fn builder() -> StoreConfigBuilder {
        StoreConfigBuilder {
            config: StoreConfig::default(),
        }
    }
}

/// Builds a [`StoreConfig`]; [`build`](Self::build) checks every bound.
#[derive(Debug, Clone)]
pub struct StoreConfigBuilder {
    config: StoreConfig,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl StoreConfigBuilder {
    setter!(
        /// The extent table's configuration.
        table: TableConfig
    );
    setter!(
        /// Cache capacity in bytes, payload plus about 96 bytes per entry.
        /// Bound: 0 (no caching) ..= 2^48.
        cache_bytes: u64
    );
    setter!(
        /// Cache shards. A value heavier than `cache_bytes / cache_shards` is
        /// cached apart, with room every shard lends it, so values up to
        /// `cache_bytes` are cached (see [`Cache::max_entry_bytes`](crate::Cache::max_entry_bytes)).
        /// Bound: 1 ..= 1 024 (rounded up to a power of two).
        cache_shards: usize
    );
    setter!(
        /// Prefetch worker threads. Bound: 0 (prefetch off) ..= 64.
        prefetch_workers: usize
    );
    setter!(
        /// Prefetch hints queued at most; more are dropped, never block the caller.
        /// Each worker also holds up to 32 hints it took at once (their reads
        /// merge), so at most `prefetch_queue + 32 × prefetch_workers` wait.
        /// Bound: 1 ..= 1 048 576.
        prefetch_queue: usize
    );
    setter!(
        /// Bytes per device. Bound: at least one block, at most 2^62.
        device_capacity_bytes: u64
    );
    setter!(
        /// Allocation unit. Bound: a power of two, 512 ..= 1 MiB.
        block_size_bytes: u32
    );
    setter!(
        /// Longest extent a write accepts; a longer one is refused with
        /// [`Error::TooLarge`] before any byte is copied. A store holds it to
        /// `device_capacity_bytes` too: a longer write could never be placed.
        /// Bound: 1 ..= [`MAX_EXTENT_BYTES`] (the default).
        max_extent_bytes: u64
    );
    setter!(
        /// Readahead window when a sequential stream is detected. Bound: 1 ..= max.
        readahead_min_bytes: u64
    );
    setter!(
        /// Largest readahead window (the window doubles up to it). Bound: ≤ 64 MiB.
        readahead_max_bytes: u64
    );

    setter!(
        /// The integrity policy (retries, backoff, device health).
        policy: IntegrityPolicy
    );
    setter!(
        /// Scrub rate in bytes per second; 0 (the default) runs no scrubber.
        /// Bound: ≤ 2^40.
        scrub_bytes_per_sec: u64
    );
    setter!(
        /// Seed of the scrubber's jitter.
        scrub_seed: u64
    );
    setter!(
        /// The id the scrubber starts from (a saved `StoreStats::scrub_cursor`).
        scrub_start: u64
    );

    setter!(
        /// How long [`Store::write`](crate::Store::write) waits for another write
        /// of the same extent before it returns FPRE015
        /// ([`Store::try_write`](crate::Store::try_write) never waits).
        /// [`Store::delete`](crate::Store::delete) and the batches wait as
        /// long for a write or delete of an extent they name.
        /// Bound: ≤ 3 600 000 (an hour).
        write_wait_ms: u64
    );
    setter!(
        /// The cache's eviction policy (S3-FIFO by default; see
        /// [`CachePolicy`](crate::cache::CachePolicy)).
        cache_policy: crate::cache::CachePolicy
    );

    /// Weighs cache entries with `weigher` (bytes against `cache_bytes`; the
    /// per-entry overhead is added) instead of their length. It runs once per
    /// cache fill, which waits for it: it should be quick and must not block
    /// or call the store (a read could wait for the very fill that weighs;
    /// see [`Weigher`](crate::cache::Weigher)).
    pub fn cache_weigher(
        mut self,
        weigher: impl Fn(crate::ExtentId, &[u8]) -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.config.cache_hooks.weigher = Some(std::sync::Arc::new(weigher));
        self
    }

    /// Calls `listener` with every entry the cache evicts for space (after the
    /// cache's lock is released; it must be quick and must not read from the
    /// store: see [`EvictionListener`](crate::cache::EvictionListener)).
    pub fn cache_eviction_listener(
        mut self,
        listener: impl Fn(&crate::cache::Evicted) + Send + Sync + 'static,
    ) -> Self {
        self.config.cache_hooks.on_evict = Some(std::sync::Arc::new(listener));
        self
    }

    /// Asks `source` for a known-good copy (a replica's, or a reconstruction) when
    /// the integrity ladder quarantines an extent, before the backend's
    /// [`Backend::good_copy`](crate::Backend::good_copy): how a durable store
    /// ([`Store::open`](crate::Store::open), whose device files hold no other
    /// copy) remaps a corrupt extent instead of leaving it quarantined. The bytes
    /// are verified against the record's checksum before they are written, so a
    /// wrong copy is refused, not installed.
    pub fn good_copy_source(
        mut self,
        source: impl Fn(crate::ExtentId, u64) -> Option<crate::Bytes> + Send + Sync + 'static,
    ) -> Self {
        self.config.cache_hooks.good_copy = Some(std::sync::Arc::new(source));
        self
    }

    setter!(
        /// Readahead runs only while the store's recent small device reads mostly
        /// take at least this many microseconds (a count that rises by one for
        /// each slower read and falls by one for each faster one, on at 4 of 8,
        /// not an average): a worker's
        /// load costs a reader a thread handoff, which a device that answers
        /// faster (a page-cached file, memory) does not repay. Default 50 µs
        /// (BENCHMARKS.md, "Cold scans": 1.5× slower with readahead against the
        /// page cache, 6× faster against 200 µs reads). 0: always. Bound: ≤ 10 s.
        readahead_min_read_us: u64
    );
    setter!(
        /// Whether sequential reads trigger readahead (on by default); explicit
        /// [`Store::prefetch`](crate::Store::prefetch) works either way.
        readahead: bool
    );
    setter!(
        /// Whether to keep latency histograms (`StoreStats::latency`); on by
        /// default (reads are sampled, so the hit path barely notices).
        latency_histograms: bool
    );
    setter!(
        /// Device files of a durable store ([`Store::open`](crate::Store::open));
        /// fixed at creation, checked on every open. Bound: 1 ..= 4 096.
        devices: u16
    );
    setter!(
        /// Bytes a durable store's journal may reach before it is checkpointed and
        /// rotated: bounds the journal and so the replay work of recovery.
        /// Recovery reads the journals it replays whole, into memory: about
        /// this much of older journals and twice this of the active one (writes
        /// wait while a slow checkpoint would let it grow further), plus the
        /// space allocated ahead of the appends; after a checkpoint failed,
        /// about twice that until one succeeds. Two checkpoints failing in a
        /// row (as every one does after a device's sync failed, FPRE038) fail
        /// the journal: changes get FPRE036 until a reopen, which recovers
        /// them. Bound: 4 KiB ..= 2^40.
        journal_max_bytes: u64
    );
    setter!(
        /// A durable store's writes of at most this many bytes are made durable by
        /// one journal sync: their data travels in their journal record, is
        /// written to its location without a sync of its own, and is synced there
        /// by the next checkpoint (recovery writes it back from the journal after
        /// a crash). Larger writes sync their data while their record is
        /// journaled (see [`overlap_data_sync`](Self::overlap_data_sync)). 0:
        /// every write syncs its data. No effect on a store without a journal.
        /// Default 32 KiB (BENCHMARKS.md, "One-sync writes"). Bound: 0 ..= 1 MiB.
        inline_write_max: u32
    );
    setter!(
        /// Whether a durable store's writes past
        /// [`inline_write_max`](Self::inline_write_max) journal their record while
        /// their data's sync runs, and are acknowledged once both finished (about
        /// one sync), instead of syncing the data first (two). A crash between the
        /// two is settled by recovery, which reads the data of such a record and
        /// drops the record if the data did not become durable (the write was not
        /// acknowledged; [`RecoveryReport::unsynced_dropped`](crate::RecoveryReport)).
        /// Default true.
        overlap_data_sync: bool
    );
    setter!(
        /// Whether a durable store's checkpoint keeps the journal it retires
        /// (`journal-recycled`, one journal's size on disk) for the next
        /// rotation to write over, as RocksDB's `recycle_log_file_num` does: its
        /// space is allocated, so group commits write no zeros ahead and their
        /// syncs no file size (8 writers of 4 KiB values: 1.60× the data-only
        /// baseline against 1.37× without; BENCHMARKS.md, "Recycled journals").
        /// Off, checkpoints remove it; worth it where an overwrite allocates
        /// anyway (a copy-on-write file system). Default true.
        recycle_journals: bool
    );
    setter!(
        /// Record changes the change stream keeps in memory for
        /// [`Store::changes_since`](crate::Store::changes_since): the newest this
        /// many, about 100 bytes each (the default 8 192 keeps about 0.8 MB).
        /// 0: none unless a [`ChangeHold`](crate::events::ChangeHold) asks.
        /// Bound: 0 ..= 2^26.
        change_retention: usize
    );
    setter!(
        /// The most record changes the change stream keeps while a
        /// [`ChangeHold`](crate::events::ChangeHold) holds it back; past it the
        /// oldest go even if held (the consumer then reads
        /// [`Error::ChangesTruncated`](crate::Error::ChangesTruncated)). Taken as
        /// [`change_retention`](Self::change_retention) if smaller (what is kept
        /// unheld is kept held too). Default 2^20 (about 100 MB at most).
        /// Bound: 0 ..= 2^26.
        change_hold_max: usize
    );
    setter!(
        /// Bytes a durable store keeps in a reserve file (`RESERVE`) beside its
        /// journal, released when the file system is full so that deletes,
        /// commits, checkpoints and `close` still have room; new writes are then
        /// refused ([`Error::DiskFull`](crate::Error::DiskFull)) until it can be
        /// made again. Size it to a checkpoint of the table, about 70 bytes per
        /// extent: the default 8 MiB covers about 120 000 extents. 0: no reserve
        /// (a full disk then fails the journal: reopen after freeing space).
        /// Bound: 0 ..= 2^40.
        metadata_reserve_bytes: u64
    );
    setter!(
        /// Whether [`Store::open`](crate::Store::open) creates a store where there
        /// is none (RocksDB's `create_if_missing`); true by default. False: a
        /// missing directory, or one without a store, is refused with
        /// [`Error::NotAStore`](crate::Error::NotAStore).
        create_if_missing: bool
    );
    setter!(
        /// Whether [`Store::open`](crate::Store::open) refuses a directory that
        /// already holds a store ([`Error::NotAStore`](crate::Error::NotAStore));
        /// false by default. For a caller that must create afresh.
        error_if_exists: bool
    );
    setter!(
        /// Whether [`Store::open`](crate::Store::open) may create a store in a
        /// directory that holds other files (not the store's own); false by
        /// default, so that a mistyped path into a directory of unrelated files is
        /// refused ([`Error::NotAStore`](crate::Error::NotAStore)) instead of
        /// filled with store files.
        create_in_non_empty_dir: bool
    );

    /// The configuration, if every bound holds.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first field out of bounds.
    pub fn build(self) -> Result<StoreConfig> {
        let c = self.config;
        check("cache_bytes", c.cache_bytes <= 1 << 48, c.cache_bytes)?;
        check(
            "cache_shards",
            (1..=1024).contains(&c.cache_shards),
            c.cache_shards,
        )?;
        check(
            "prefetch_workers",
            c.prefetch_workers <= 64,
            c.prefetch_workers,
        )?;
        check(
            "prefetch_queue",
            (1..=1 << 20).contains(&c.prefetch_queue),
            c.prefetch_queue,
        )?;
        let block = c.block_size_bytes;
        check(
            "block_size_bytes",
            block.is_power_of_two() && (512..=1 << 20).contains(&block),
            block,
        )?;
        let cap = c.device_capacity_bytes;
        check(
            "device_capacity_bytes",
            cap >= u64::from(block) && cap <= 1 << 62,
            cap,
        )?;
        let longest = c.max_extent_bytes;
        check(
            "max_extent_bytes",
            (1..=MAX_EXTENT_BYTES).contains(&longest),
            longest,
        )?;
        let (min, max) = (c.readahead_min_bytes, c.readahead_max_bytes);
        check("readahead_min_bytes", min >= 1 && min <= max, min)?;
        check("readahead_max_bytes", max <= 64 << 20, max)?;
        let rate = c.scrub_bytes_per_sec;
        check("scrub_bytes_per_sec", rate <= 1 << 40, rate)?;
        check("devices", (1..=4096).contains(&c.devices), c.devices)?;
        check(
            "write_wait_ms",
            c.write_wait_ms <= 3_600_000,
            c.write_wait_ms,
        )?;
        check(
            "metadata_reserve_bytes",
            c.metadata_reserve_bytes <= 1 << 40,
            c.metadata_reserve_bytes,
        )?;
        check(
            "inline_write_max",
            c.inline_write_max <= 1 << 20,
            c.inline_write_max,
        )?;
        check(
            "readahead_min_read_us",
            c.readahead_min_read_us <= 10_000_000,
            c.readahead_min_read_us,
        )?;
        check(
            "change_retention",
            c.change_retention <= 1 << 26,
            c.change_retention,
        )?;
        check(
            "change_hold_max",
            c.change_hold_max <= 1 << 26,
            c.change_hold_max,
        )?;
        let journal = c.journal_max_bytes;
        check(
            "journal_max_bytes",
            (4096..=1 << 40).contains(&journal),
            journal,
        )?;
        Ok(c)
    }
}

fn check(field: &'static str, ok: bool, value: impl std::fmt::Display) -> Result<()> {
    Error::check_bound(field, ok, value, "the setter's documentation")
}
