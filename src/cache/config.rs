//! The cache's eviction parameters: a validated configuration.
//!
//! The defaults are the best measured on the real traces the project replays
//! (`cargo run --release --example trace`, BENCHMARKS.md, "Miss counts on real
//! traces"): S3-FIFO
//! with probation 8 % of the capacity and a ghost as large as the capacity
//! (libCacheSim's are 10 % and 90 %), made size-aware
//! ([`CachePolicyBuilder::size_aware`]) for entries of varying weight, at or
//! below moka, quick_cache and libCacheSim's S3-FIFO at every capacity measured
//! on those traces. A workload whose reuse distances are short
//! relative to the cache (small caches, hot sets re-read soon after they load) does
//! better promoting after one re-read instead of two; see
//! [`CachePolicyBuilder::promote_after_reads`].

use crate::error::{Error, Result};

/// How a [`Cache`](super::Cache) chooses what to evict (S3-FIFO with a ghost queue,
/// size-aware when entry weights vary).
///
/// # Examples
///
/// ```
/// use extentmeta::Cache;
/// use extentmeta::cache::CachePolicy;
///
/// let policy = CachePolicy::builder().promote_after_reads(2).build()?;
/// let cache = Cache::with_policy(64 << 20, 16, policy);
/// assert_eq!(cache.used_bytes(), 0);
/// # Ok::<(), extentmeta::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    small_percent: u8,
    promote_after_reads: u8,
    ghost_percent: u8,
    frequency_admission: bool,
    probation_duel_percent: u8,
    size_aware: bool,
    adaptive: bool,
}

impl Default for CachePolicy {
    /// Probation 8 % of the capacity, promotion after a fill and two more reads,
    /// a ghost as large as the capacity, size-aware.
    fn default() -> Self {
        CachePolicy {
            small_percent: 8,
            promote_after_reads: 3,
            ghost_percent: 100,
            frequency_admission: false,
            probation_duel_percent: 0,
            size_aware: true,
            adaptive: false,
        }
    }
}

impl CachePolicy {
    /// A builder starting from the defaults.
    pub fn builder() -> CachePolicyBuilder {
        CachePolicyBuilder {
            policy: CachePolicy::default(),
        }
    }

    /// Share of a shard's capacity that probation holds before it is evicted from.
    pub fn small_percent(&self) -> u8 {
        self.small_percent
    }

    /// Reads (a demand fill counts one, a prefetch none) that move an entry from
    /// probation to main when eviction reaches it.
    pub fn promote_after_reads(&self) -> u8 {
        self.promote_after_reads
    }

    /// The ghost's bound, as a share of a shard's capacity, in the bytes the
    /// remembered entries weighed.
    pub fn ghost_percent(&self) -> u8 {
        self.ghost_percent
    }

    /// Whether a ghost hit must also be more frequent than main's next victim to
    /// enter main (TinyLFU admission).
    pub fn frequency_admission(&self) -> bool {
        self.frequency_admission
    }

    /// The share of the capacity that entries admitted to main by the probation
    /// duel may hold until they are read there; 0: no duel.
    pub fn probation_duel_percent(&self) -> u8 {
        self.probation_duel_percent
    }

    /// Whether entries much lighter than the mean fill skip the ghost and entries
    /// heavier than it need frequency admission (see
    /// [`CachePolicyBuilder::size_aware`]).
    pub fn size_aware(&self) -> bool {
        self.size_aware
    }

    /// Whether each shard adapts probation's share online (see
    /// [`CachePolicyBuilder::adaptive`]).
    pub fn adaptive(&self) -> bool {
        self.adaptive
    }
}

/// Builds a [`CachePolicy`]; [`build`](Self::build) checks every bound.
#[derive(Debug, Clone)]
pub struct CachePolicyBuilder {
    policy: CachePolicy,
}

impl CachePolicyBuilder {
    /// Probation's share of the capacity; 8 by default. Bound: 1 ..= 90.
    ///
    /// Smaller favours frequency (a larger main), larger favours recency. On the
    /// ARC traces with the default ghost, P3 at 65 536 pages hits 30.5 % with
    /// 10 % and 31.2 % with 8 %, and P12 at 1 024 pages 1.6 % with 10 % and
    /// 1.4 % with 8 % (BENCHMARKS.md, "ARC traces: probation 8 %, ghost 100 %").
    pub fn small_percent(mut self, percent: u8) -> Self {
        self.policy.small_percent = percent;
        self
    }

    /// Reads that promote an entry leaving probation. Bound: 2 ..= 3 (the entry's
    /// counter saturates at 3; 1 would promote every demand fill).
    pub fn promote_after_reads(mut self, reads: u8) -> Self {
        self.policy.promote_after_reads = reads;
        self
    }

    /// The ghost's bound as a share of the capacity; 100 by default, 0 turns it
    /// off. Bound: 0 ..= 200.
    ///
    /// The bound counts the bytes the remembered entries weighed, so the ghost
    /// holds as many ids as the cache held entries of that weight, and at most
    /// `capacity × percent / 100 / 96` (every entry weighs at least its 96-byte
    /// overhead). Each id costs 40 to 100 bytes (a map slot and a queue slot):
    /// 1 to 2.5 % of the capacity at the default with 4 KiB entries.
    pub fn ghost_percent(mut self, percent: u8) -> Self {
        self.policy.ghost_percent = percent;
        self
    }

    /// TinyLFU admission for every ghost hit: a demand fill found in the ghost
    /// enters main only if main has room under its share or a count-min sketch of
    /// fills and reads rates it above main's front entry; otherwise it starts on
    /// probation. The size-aware default already applies this test to ghost hits
    /// heavier than the mean fill; this option extends it to all of them. The
    /// sketch costs 16 to 32 bytes per entry the shard held when it first evicted
    /// (allocated then); reads are folded into it when an entry leaves, so hits
    /// pay nothing for it. Off by default: on the CloudPhysics trace, with the
    /// size-aware default, it moves the miss counts by less than 1 % either
    /// way, and on the ARC OLTP trace (entries of one weight) plain S3-FIFO hits
    /// more (BENCHMARKS.md, "Miss counts on real traces"). It suits caches that hold most of a
    /// frequency-skewed working set.
    pub fn frequency_admission(mut self, on: bool) -> Self {
        self.policy.frequency_admission = on;
        self
    }

    /// The probation duel (size-aware TinyLFU at probation's exit, as in
    /// W-TinyLFU and moka): a demand-filled entry leaving probation unread still
    /// enters main if a count-min sketch of fills and reads rates it above the
    /// *sum* of the estimates of the main entries its bytes would displace; the
    /// loser's id goes to the ghost as usual. Entries so admitted may hold at most
    /// `percent` of the capacity until they are read on main, so the duel cannot
    /// turn over the whole main queue. 0 (the default) turns it off.
    /// Bound: 0 ..= 50.
    ///
    /// Measured on the CloudPhysics trace (BENCHMARKS.md, "Miss counts on real traces", 1 shard)
    /// with `small_percent(5)` and 10, on top of the size-aware default: 0.9 % to
    /// 3.7 % fewer misses than the default at 128, 256, 512 and 640 MiB, 0.4 % to
    /// 6.3 % more at the other four capacities, most at 896 MiB and 1 GiB, where the
    /// cache holds most of a trace that is read twice in the same order and
    /// keeping what warm-up loaded wins.
    /// On the ARC P12 trace at 1 024 pages the same setting hits 1.0 % against
    /// the default's 1.4 % (moka 1.2 %): small probations give up recency there.
    /// Costs the sketch (as the default does) and one flag per entry,
    /// read by a hit in the branch that already checks for an unread prefetch.
    ///
    /// ```
    /// use extentmeta::cache::CachePolicy;
    ///
    /// let policy = CachePolicy::builder()
    ///     .small_percent(5)
    ///     .probation_duel_percent(10)
    ///     .build()?;
    /// assert_eq!(policy.probation_duel_percent(), 10);
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn probation_duel_percent(mut self, percent: u8) -> Self {
        self.policy.probation_duel_percent = percent;
        self
    }

    /// Size-aware S3-FIFO, on by default. Each shard keeps a decaying mean of
    /// the weights of its demand fills (counts halved every 65 536 fills), and
    /// weighs each decision about an entry that has not yet earned its place by
    /// what it costs against that mean:
    ///
    /// * A demand-filled entry weighing at most **half the mean** that leaves
    ///   probation unread moves to main instead of being dropped: it holds few
    ///   bytes per future hit, so keeping it is cheap.
    /// * A ghost hit weighing **more than the mean** must pass the TinyLFU test of
    ///   [`frequency_admission`](Self::frequency_admission) to enter main: if main
    ///   is over its share, the sketch must rate it above main's front entry;
    ///   otherwise it starts on probation again. A heavy entry must prove its
    ///   reuse before it pushes out several lighter ones.
    ///
    /// The sketch, sized when the shard first evicts, then counts every demand
    /// fill made before it existed, so what warm-up loaded is rated like what
    /// comes after. With entries of one weight (fixed-size blocks, the ARC page
    /// traces) no entry is ever at most half the mean or above it, and every
    /// decision is plain S3-FIFO's; only the sketch's memory and its updates on
    /// fills and evictions remain.
    ///
    /// Measured on the CloudPhysics trace (16 shards, BENCHMARKS.md, "Miss counts on real traces"):
    /// 1.4 % to 6.7 % fewer misses than the best of moka, quick_cache and
    /// libCacheSim's S3-FIFO at each capacity from 128 MiB to 1 GiB, where plain
    /// S3-FIFO misses 0.0 % to 7.0 % more than that best. It serves more
    /// *requests*, not more bytes: the bytes missed rose by up to 5.2 % (at
    /// 512 MiB, measured with probation 10 % and a ghost of 90 %). It also
    /// lets light entries past probation's filter, so a scan of light entries
    /// read once reaches main (heavy entries still cannot flood it). Costs: two
    /// counters per shard, the sketch (16 to 32 bytes per entry the shard held
    /// when it first evicted, a power of two in all), one pass over the shard's
    /// map at that first eviction. Turn it off for plain
    /// S3-FIFO, which favours the byte hit ratio.
    ///
    /// ```
    /// use extentmeta::cache::CachePolicy;
    ///
    /// assert!(CachePolicy::default().size_aware());
    /// let plain = CachePolicy::builder().size_aware(false).build()?;
    /// assert!(!plain.size_aware());
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn size_aware(mut self, on: bool) -> Self {
        self.policy.size_aware = on;
        self
    }

    /// Adaptive probation, off by default: each shard starts at
    /// [`small_percent`](Self::small_percent) and moves probation's share by hill
    /// climbing on its own hit rate, as Caffeine sizes W-TinyLFU's window. Once
    /// the shard has filled, every sample of 7 requests per entry it holds
    /// compares its hit rate with the previous sample's (the first with 0, so
    /// the first move, as Caffeine's, is down): the share keeps moving
    /// the same way while the rate does not fall and turns back when it does,
    /// by a step of 6.25 % of the capacity that shrinks by 2 % each sample and
    /// restarts when the rate moves by 5 points. The step, its decay and the
    /// restart are Caffeine's; the sample's length (Caffeine's is 10 per
    /// entry) was chosen on the OLTP and P12 traces and holds on CloudPhysics
    /// and P3, which did not choose it. The share stays within 1 % ..= 50 %.
    ///
    /// The sample is counted from the hit and miss counters the shard keeps
    /// anyway and evaluated on the miss path: hits pay nothing, and nothing is
    /// allocated. Measured in BENCHMARKS.md, "Adaptive eviction".
    pub fn adaptive(mut self, on: bool) -> Self {
        self.policy.adaptive = on;
        self
    }

    /// The policy, if every bound holds.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first field out of bounds.
    pub fn build(self) -> Result<CachePolicy> {
        let p = self.policy;
        if !(1..=90).contains(&p.small_percent) {
            return Err(invalid("small_percent", p.small_percent, "1..=90"));
        }
        if !(2..=3).contains(&p.promote_after_reads) {
            return Err(invalid(
                "promote_after_reads",
                p.promote_after_reads,
                "2..=3",
            ));
        }
        if p.ghost_percent > 200 {
            return Err(invalid("ghost_percent", p.ghost_percent, "0..=200"));
        }
        if p.probation_duel_percent > 50 {
            return Err(invalid(
                "probation_duel_percent",
                p.probation_duel_percent,
                "0..=50",
            ));
        }
        Ok(p)
    }
}

fn invalid(field: &'static str, value: u8, bound: &str) -> Error {
    Error::InvalidConfig {
        field,
        reason: format!("{value} not in {bound}"),
    }
}

/// A shard's limits in bytes, derived once from the policy and the shard capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Payload plus overhead the shard holds at most.
    pub(crate) capacity: u64,
    /// Probation is evicted from while it holds more than this.
    pub(crate) small: u64,
    /// The ghost remembers evicted entries worth at most this many bytes.
    pub(crate) ghost: u64,
    /// See [`CachePolicy::promote_after_reads`].
    pub(crate) promote: u8,
    /// See [`CachePolicy::frequency_admission`].
    pub(crate) admission: bool,
    /// Bytes that entries the probation duel admitted may hold on main until
    /// read there; 0: no duel (see [`CachePolicy::probation_duel_percent`]).
    pub(crate) duel_budget: u64,
    /// See [`CachePolicy::size_aware`].
    pub(crate) size_aware: bool,
    /// See [`CachePolicy::adaptive`].
    pub(crate) adaptive: bool,
    /// Keep evicted entries for the eviction listener.
    pub(crate) report_evictions: bool,
}

impl Limits {
    pub(crate) fn new(capacity: u64, policy: &CachePolicy) -> Self {
        let share = |percent: u8| capacity.saturating_mul(u64::from(percent)) / 100;
        Limits {
            capacity,
            small: share(policy.small_percent),
            ghost: share(policy.ghost_percent),
            promote: policy.promote_after_reads,
            admission: policy.frequency_admission,
            duel_budget: share(policy.probation_duel_percent),
            size_aware: policy.size_aware,
            adaptive: policy.adaptive,
            report_evictions: false,
        }
    }
}
