//! Sequential-access detection and the readahead window.
//!
//! Like RocksDB's block-based readahead, but per stream of extent ids: after two
//! consecutive reads (`n`, `n+1`) a window opens at the minimum size and doubles,
//! up to the maximum, each time the reader consumes half of what was prefetched
//! ahead of it, unless the reader had to load an extent the window had asked
//! for: the workers are behind, and a larger window would only queue more. Up to
//! [`STREAMS`] interleaved streams are tracked (least recently used replaced), so
//! two scans running at once both get readahead. Ids whose hints the full queue
//! dropped are handed back ([`Readahead::unissue`]) and asked for again by the
//! next read of the stream.

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
    /// The queue dropped some of this window ([`Readahead::unissue`]): the next
    /// read asks for them again without growing the window.
    dropped: bool,
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

    /// Records a read of `id` (whose extents are about `extent_bytes` long, and
    /// which the reader `loaded` from the device itself rather than finding it
    /// cached or being loaded) and returns the ids to prefetch now, below
    /// `limit`.
    pub(crate) fn on_read(
        &mut self,
        id: u64,
        extent_bytes: u64,
        loaded: bool,
        limit: u64,
    ) -> Range<u64> {
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
                dropped: false,
                last_used: clock,
            };
            return 0..0;
        };
        stream.last_used = clock;
        // A read of an id the window asked for that still had to load it: the
        // workers did not get there first.
        let behind = loaded && stream.window_bytes > 0 && id < stream.issued_until;
        // Nor does a window the full queue dropped part of.
        let behind = behind || std::mem::take(&mut stream.dropped);
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
        } else if !behind {
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

    /// Hands back the ids from `from` that [`on_read`](Self::on_read) returned
    /// but could not be queued: the stream's next read asks for them again
    /// instead of its window skipping them.
    pub(crate) fn unissue(&mut self, from: u64) {
        if let Some(stream) =
            (self.streams.iter_mut()).find(|s| s.run > 0 && s.next <= from && from < s.issued_until)
        {
            stream.issued_until = from;
            stream.dropped = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_opens_after_two_sequential_reads_and_doubles_to_max() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 1024);
        assert_eq!(
            ra.on_read(100, 4096, false, 1 << 20),
            0..0,
            "one read is not a stream"
        );
        assert_eq!(
            ra.on_read(101, 4096, false, 1 << 20),
            102..104,
            "8 KiB = 2 extents"
        );
        let mut windows = vec![];
        for id in 102..400 {
            let r = ra.on_read(id, 4096, false, 1 << 20);
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
            assert!(ra.on_read(id, 0, false, 1 << 20).count() <= 16);
        }
    }

    #[test]
    fn random_reads_never_open_a_window() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 1024);
        for id in [5u64, 900, 17, 4_000, 33, 70_000, 2] {
            assert!(ra.on_read(id, 4096, false, 1 << 20).is_empty());
        }
    }

    #[test]
    fn two_interleaved_streams_both_get_readahead() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 1024);
        let mut got = [0u64; 2];
        for step in 0..20u64 {
            for (i, base) in [1_000u64, 50_000].into_iter().enumerate() {
                got[i] += ra.on_read(base + step, 4096, false, 1 << 20).count() as u64;
            }
        }
        assert!(got[0] > 0 && got[1] > 0, "{got:?}");
    }

    #[test]
    fn a_window_stops_growing_while_the_reader_loads_what_it_asked_for() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 1024);
        ra.on_read(0, 4096, true, 1 << 20);
        assert_eq!(ra.on_read(1, 4096, true, 1 << 20), 2..4);
        // The reader loads every id itself: the workers are behind. The window
        // keeps its 2 extents ahead but never doubles.
        for id in 2..100 {
            let r = ra.on_read(id, 4096, true, 1 << 20);
            assert!(r.end <= id + 3, "read {id}: window grew to {r:?}");
        }
        // Served from prefetch again: it grows.
        let mut widest = 0;
        for id in 100..200 {
            let r = ra.on_read(id, 4096, false, 1 << 20);
            widest = widest.max(r.end.saturating_sub(id + 1));
        }
        assert_eq!(widest, 64, "window back to 256 KiB");
    }

    #[test]
    fn ids_handed_back_are_asked_for_again() {
        let mut ra = Readahead::new(8 << 10, 256 << 10, 1024);
        ra.on_read(10, 4096, false, 1 << 20);
        assert_eq!(ra.on_read(11, 4096, false, 1 << 20), 12..14);
        // 13 could not be queued.
        ra.unissue(13);
        let r = ra.on_read(12, 4096, false, 1 << 20);
        assert_eq!(r, 13..15, "13 asked for again, the window not grown");
        // Handing back an id no stream issued changes nothing.
        ra.unissue(5_000);
        let again = ra.on_read(13, 4096, false, 1 << 20);
        assert!(again.is_empty() || again.start >= r.end, "{again:?}");
    }
}
