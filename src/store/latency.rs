//! Lock-free latency histograms.
//!
//! Log-linear buckets: values below 16 ns get one bucket each; above, every power
//! of two is split into 16 linear sub-buckets, so a recorded value is off by at
//! most 1/16 (6.25 %) of itself. 16 × 64 buckets cover every `u64`. Recording is
//! one relaxed `fetch_add` on the bucket plus one on the running maximum's check;
//! nothing is ever allocated or locked, so threads record concurrently from the
//! read hit path.
//!
//! Hand-written rather than `hdrhistogram`: its histograms record through `&mut`
//! (a lock per record, or a channel per thread with its `sync` feature), which the
//! read hit path cannot afford.

use crate::sync::{AtomicU64, Ordering::Relaxed};

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = SUB * (64 - SUB_BITS as usize + 1);

/// A concurrent histogram of nanosecond latencies.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let top = 63 - ns.leading_zeros(); // ≥ SUB_BITS
    let shift = top - SUB_BITS;
    let sub = (ns >> shift) as usize & (SUB - 1);
    ((shift as usize + 1) << SUB_BITS) + sub
}

/// The smallest value of `bucket`.
fn low_of(bucket: usize) -> u64 {
    if bucket < SUB {
        return bucket as u64;
    }
    let shift = (bucket >> SUB_BITS) as u32 - 1;
    let sub = (bucket & (SUB - 1)) as u64;
    (SUB as u64 | sub) << shift
}

impl Histogram {
    /// Records one latency.
    #[inline]
    pub(crate) fn record(&self, ns: u64) {
        // Relaxed: counts for statistics, ordered with nothing.
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        if ns > self.max_ns.load(Relaxed) {
            self.max_ns.fetch_max(ns, Relaxed);
        }
    }

    /// A summary of what was recorded so far (a racy but monotone view).
    pub(crate) fn summary(&self) -> Latency {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let quantile = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let rank = ((count as f64 * q).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return low_of(i);
                }
            }
            low_of(BUCKETS - 1)
        };
        Latency {
            count,
            p50_ns: quantile(0.50),
            p90_ns: quantile(0.90),
            p99_ns: quantile(0.99),
            p999_ns: quantile(0.999),
            max_ns: self.max_ns.load(Relaxed),
        }
    }
}

/// Latency percentiles of one operation kind, in nanoseconds. Each percentile is
/// the low edge of its bucket: within 6.25 % below the true value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample (exact).
    pub max_ns: u64,
}

/// The store's histograms, one per operation kind.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    /// Whether reads are sampled at all (`StoreConfig::latency_histograms`).
    pub(crate) enabled: bool,
    pub(crate) read_hit: Histogram,
    pub(crate) read_miss: Histogram,
    pub(crate) write: Histogram,
    pub(crate) compaction: Histogram,
    pub(crate) verify: Histogram,
}

impl Latencies {
    pub(crate) fn summary(&self) -> OpLatencies {
        OpLatencies {
            read_hit: self.read_hit.summary(),
            read_miss: self.read_miss.summary(),
            write: self.write.summary(),
            compaction: self.compaction.summary(),
            verify: self.verify.summary(),
        }
    }

    /// Records `ns` in `histogram` if histograms are on.
    #[inline]
    pub(crate) fn record(&self, histogram: &Histogram, ns: u64) {
        if self.enabled {
            histogram.record(ns);
        }
    }
}

/// Latency percentiles per operation kind ([`StoreStats::latency`](crate::StoreStats)).
///
/// Reads are sampled (one in 16 per thread is timed, so that the clock does not
/// cost the hit path); every write, compaction and verification is timed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpLatencies {
    /// `read` calls served from the cache (no I/O).
    pub read_hit: Latency,
    /// `read` calls that loaded from the backend (or waited on a load).
    pub read_miss: Latency,
    /// `write` and `write_batch` calls (a batch counts once), durable when they end.
    pub write: Latency,
    /// `compact`, `pack` and drain compactions.
    pub compaction: Latency,
    /// `verify` calls, the scrubber's included.
    pub verify: Latency,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotone_and_within_one_sixteenth() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket_of(ns);
            assert!(b >= last || ns >= u64::MAX / 3, "monotone at {ns}");
            last = b;
            let low = low_of(b);
            assert!(low <= ns, "{ns}: low {low}");
            assert!(
                ns - low <= ns / 16,
                "{ns}: low {low} is off by more than 1/16"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::default();
        for ns in 1..=1000u64 {
            h.record(ns * 1000);
        }
        let s = h.summary();
        assert_eq!((s.count, s.max_ns), (1000, 1_000_000));
        for (got, want) in [
            (s.p50_ns, 500_000),
            (s.p90_ns, 900_000),
            (s.p99_ns, 990_000),
        ] {
            assert!(got <= want && want - got <= want / 16, "{got} vs {want}");
        }
        assert_eq!(Histogram::default().summary(), Latency::default());
    }
}
