//! Sequential-access detection and the readahead window.
//!
//! Like RocksDB's block-based readahead, but per stream of extent ids: after two
//! consecutive reads (`n`, `n+1`) a window opens at the minimum size and doubles,
//! up to the maximum, each time the reader consumes half of what was prefetched
//! ahead of it. Up to [`STREAMS`] interleaved streams are tracked (least recently
//! used replaced), so two scans running at once both get readahead.

use std::ops::Range;

/// Sequential streams tracked at once.
pub const STREAMS: usize = 4;

/// Consecutive reads that open the window (RocksDB: 2).
const OPEN_AFTER: u32 = 2;

#[derive(Debug, Clone, Copy, Default)]
struct Stream {
    /// The id a sequential reader reads next.
    next: u64,
    /// Consecutive sequential reads seen.
    run: u32,
    window_bytes: u64,
    /// Prefetch has been issued for ids below this.
    issued_until: u64,
    last_used: u64,
}

/// Per-store readahead state.
#[derive(Debug)]
pub(crate) struct Readahead {
    streams: [Stream; STREAMS],
    clock: u64,
    min_bytes: u64,
    max_bytes: u64,
    max_hints: u64,
}

impl Readahead {
    /// Windows from `min_bytes` doubling to `max_bytes`, and never more than
    /// `max_hints` ids at once (the prefetch queue's bound: more would be dropped).
    pub(crate) fn new(min_bytes: u64, max_bytes: u64, max_hints: u64) -> Self {
        Readahead {
            streams: [Stream::default(); STREAMS],
            clock: 0,
            min_bytes,
            max_bytes,
            max_hints: max_hints.max(1),
        }
    }

    /// Records a read of `id` (whose extents are about `extent_bytes` long) and
    /// returns the ids to prefetch now, below `limit`.
    pub(crate) fn on_read(&mut self, id: u64, extent_bytes: u64, limit: u64) -> Range<u64> {
        self.clock += 1;
        let clock = self.clock;
        let found = self
            .streams
            .iter_mut()
            .find(|s| s.run > 0 && (s.next..s.issued_until.max(s.next + 1)).contains(&id));
        let Some(stream) = found else {
            let lru = self
                .streams
                .iter_mut()
                .min_by_key(|s| s.last_used)
                .expect("STREAMS > 0");
            *lru = Stream {
                next: id + 1,
                run: 1,
                window_bytes: 0,
                issued_until: id + 1,
                last_used: clock,
            };
            return 0..0;
        };
        stream.last_used = clock;
        stream.run += 1;
        stream.next = id + 1;
        stream.issued_until = stream.issued_until.max(id + 1);
        if stream.run < OPEN_AFTER {
            return 0..0;
        }
        let extent_bytes = extent_bytes.max(1);
        let ahead_bytes = (stream.issued_until - stream.next) * extent_bytes;
        if stream.window_bytes == 0 {
            stream.window_bytes = self.min_bytes;
        } else if ahead_bytes * 2 > stream.window_bytes {
            return 0..0;
        } else {
            stream.window_bytes = (stream.window_bytes * 2).min(self.max_bytes);
        }
        let count = stream
            .window_bytes
            .div_ceil(extent_bytes)
            .min(self.max_hints);
        let start = stream.issued_until.min(limit);
        let end = (stream.next + count).min(limit).max(start);
        stream.issued_until = end.max(stream.issued_until);
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_opens_after_two_sequential_reads_and_doubles_to_max() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 1024);
        assert_eq!(
            ra.on_read(100, 4096, 1 << 20),
            0..0,
            "one read is not a stream"
        );
        assert_eq!(
            ra.on_read(101, 4096, 1 << 20),
            102..104,
            "8 KiB = 2 extents"
        );
        let mut windows = vec![];
        for id in 102..400 {
            let r = ra.on_read(id, 4096, 1 << 20);
            if !r.is_empty() {
                assert!(r.start > id, "prefetch only ahead of the reader");
                windows.push(r.end - id - 1);
            }
        }
        assert_eq!(windows.first(), Some(&4), "window doubled to 16 KiB");
        assert_eq!(windows.last(), Some(&64), "window capped at 256 KiB");
    }

    #[test]
    fn tiny_extents_never_flood_the_hint_queue() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 16);
        for id in 0..100 {
            assert!(ra.on_read(id, 0, 1 << 20).count() <= 16);
        }
    }

    #[test]
    fn random_reads_never_open_a_window() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 1024);
        for id in [5u64, 900, 17, 4_000, 33, 70_000, 2] {
            assert!(ra.on_read(id, 4096, 1 << 20).is_empty());
        }
    }

    #[test]
    fn two_interleaved_streams_both_get_readahead() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 1024);
        let mut got = [0u64; 2];
        for step in 0..20u64 {
            for (i, base) in [1_000u64, 50_000].into_iter().enumerate() {
                got[i] += ra.on_read(base + step, 4096, 1 << 20).count() as u64;
            }
        }
        assert!(got[0] > 0 && got[1] > 0, "{got:?}");
    }
}
