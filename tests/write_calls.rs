//! What one `write` or `write_batch` call is: validated once, counted once, one
//! latency sample, and a write that waits its turn waits for its own extent.

use extentmeta::{Error, ExtentId, MemBackend, Store, StoreConfig};
use std::sync::Barrier;

/// A value naming its extent, writer and sequence number: a read can tell which
/// write it returns.
fn value(id: ExtentId, writer: u64, seq: u64) -> Vec<u8> {
    let mut v = format!("extent={} writer={writer} seq={seq} |", id.0).into_bytes();
    v.resize(512, (id.0 ^ writer ^ seq) as u8);
    v
}

/// [`value`] of generation `generation` (writer 0), `len` bytes long.
fn value_of_len(id: ExtentId, generation: u64, len: usize) -> Vec<u8> {
    let mut v = value(id, 0, generation);
    v.resize(len, (id.0 ^ generation) as u8);
    v
}

fn store(config: extentmeta::store::StoreConfigBuilder) -> Store {
    Store::new(MemBackend::new(2), config.build().expect("config")).expect("store")
}

/// Several threads on a few extents: every call counts once in `writes` and once
/// in the write latency, every `Ok` once in `write_ok`, and each extent ends with
/// the bytes of its highest committed generation.
#[test]
fn contended_writes_count_once_per_call() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 200;
    const EXTENTS: u64 = 3;
    let store = store(StoreConfig::builder().devices(2).write_wait_ms(60_000));
    let start = Barrier::new(THREADS as usize);
    let results: Vec<Vec<(ExtentId, u64, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, start) = (&store, &start);
                s.spawn(move || {
                    start.wait();
                    (0..PER_THREAD)
                        .map(|n| {
                            let id = ExtentId(n % EXTENTS);
                            let bytes = value(id, t, n);
                            let committed = store.write(id, &bytes).expect("write waits its turn");
                            (id, committed.generation(), bytes)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    });
    let calls = THREADS * PER_THREAD;
    let stats = store.stats();
    assert_eq!(stats.writes, calls, "one count per write call");
    assert_eq!(
        stats.write_ok, calls,
        "one acknowledgment per successful call"
    );
    assert_eq!(
        stats.latency.write.count, calls,
        "one latency sample per call"
    );
    for e in 0..EXTENTS {
        let id = ExtentId(e);
        let mut mine: Vec<_> = results
            .iter()
            .flatten()
            .filter(|(i, ..)| *i == id)
            .collect();
        mine.sort_by_key(|(_, generation, _)| *generation);
        let generations: Vec<u64> = mine.iter().map(|(_, g, _)| *g).collect();
        let mut unique = generations.clone();
        unique.dedup();
        assert_eq!(
            unique, generations,
            "{id}: every write committed its own generation"
        );
        let (_, newest, bytes) = mine.last().expect("written");
        assert_eq!(store.snapshot(id).expect("record").generation(), *newest);
        assert_eq!(
            &*store.read(id).expect("read"),
            &bytes[..],
            "{id}: the newest write's bytes"
        );
    }
}

/// `try_write` against a write in flight fails fast, typed and retryable, and
/// still counts as one call.
#[test]
fn a_refused_try_write_is_one_call() {
    let store = store(StoreConfig::builder().devices(2));
    let id = ExtentId(5);
    store.write(id, &value(id, 0, 0)).expect("write");
    let before = store.stats();
    store
        .try_write(id, &value(id, 0, 1))
        .expect("nothing in flight");
    let after = store.stats();
    assert_eq!(after.writes - before.writes, 1);
    assert_eq!(after.write_ok - before.write_ok, 1);
    assert_eq!(after.latency.write.count - before.latency.write.count, 1);
}

/// A batch is validated as `write` validates: an item over `max_extent_bytes` is
/// refused before anything is written, whatever its place in the batch.
#[test]
fn a_batch_honours_max_extent_bytes() {
    let store = store(StoreConfig::builder().devices(2).max_extent_bytes(1_000));
    let small = value(ExtentId(1), 0, 0);
    let large = vec![7u8; 1_001];
    assert!(matches!(
        store.write(ExtentId(2), &large),
        Err(Error::TooLarge {
            length: 1_001,
            max: 1_000
        })
    ));
    let err = store
        .write_batch(&[(ExtentId(1), &small[..]), (ExtentId(2), &large[..])])
        .expect_err("the batch holds an item over the maximum");
    assert!(
        matches!(
            err,
            Error::TooLarge {
                length: 1_001,
                max: 1_000
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    for id in [ExtentId(1), ExtentId(2)] {
        assert!(
            store.read(id).is_err(),
            "{id}: nothing of the batch was written"
        );
    }
    let exact = vec![9u8; 1_000];
    store
        .write_batch(&[(ExtentId(1), &small[..]), (ExtentId(2), &exact[..])])
        .expect("at the maximum");
    assert_eq!(&*store.read(ExtentId(2)).expect("read"), &exact[..]);
}

/// An id named twice in one batch is a typed, non-retryable error, and nothing
/// of the batch is written.
#[test]
fn a_batch_naming_an_extent_twice_is_refused() {
    let store = store(StoreConfig::builder().devices(2));
    let (a, b) = (ExtentId(10), ExtentId(11));
    let (va, vb, vb2) = (value(a, 0, 0), value(b, 0, 0), value(b, 0, 1));
    let err = store
        .write_batch(&[(b, &vb[..]), (a, &va[..]), (b, &vb2[..])])
        .expect_err("b twice");
    assert_eq!(err, Error::DuplicateExtent { extent: b });
    assert_eq!(err.code(), "FPRE030");
    assert!(!err.is_retryable(), "the same batch fails the same way");
    assert!(
        store.read(a).is_err() && store.read(b).is_err(),
        "nothing written"
    );
    let committed = store
        .write_batch(&[(b, &vb[..]), (a, &va[..])])
        .expect("each once");
    assert_eq!(committed.len(), 2);
}

/// `write_bytes` takes a value built in place: validated and counted as `write`
/// (a call refused as too large is not a write begun), and read back whole.
#[test]
fn write_bytes_is_a_write_without_the_copy() {
    let store = store(StoreConfig::builder().devices(2).max_extent_bytes(1 << 20));
    let id = ExtentId(30);
    let mut value = extentmeta::Bytes::zeroed(1 << 20);
    let mut expected = self::value(id, 0, 0);
    expected.resize(1 << 20, 0x5a);
    value
        .make_mut()
        .expect("the only handle")
        .copy_from_slice(&expected);
    let before = store.stats();
    store.write_bytes(id, value).expect("write_bytes");
    assert_eq!(&*store.read(id).expect("read"), &expected[..]);
    let too_large = extentmeta::Bytes::zeroed((1 << 20) + 1);
    assert!(matches!(
        store.write_bytes(id, too_large),
        Err(Error::TooLarge { .. })
    ));
    let after = store.stats();
    assert_eq!(
        after.writes - before.writes,
        1,
        "the refused call is not counted"
    );
    assert_eq!(after.write_ok - before.write_ok, 1);
}

/// A write longer than a device can ever hold is refused as too large (not
/// retryable), not with a NoSpace that a retry loop would meet forever.
#[test]
fn a_write_longer_than_a_device_is_too_large() {
    let store = store(
        StoreConfig::builder()
            .devices(2)
            .device_capacity_bytes(64 << 10),
    );
    let long = value_of_len(ExtentId(3), 1, (64 << 10) + 1);
    let err = store.write(ExtentId(3), &long).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { max, .. } if max == 64 << 10),
        "{err}"
    );
    assert!(!err.is_retryable());
    let fits = value_of_len(ExtentId(3), 1, 60 << 10);
    assert_eq!(store.write(ExtentId(3), &fits).unwrap().generation(), 1);
}

/// The bound counts whole blocks: a device of 10 000 bytes holds at most two
/// 4 KiB blocks, so a 9 000-byte write is too large there too.
#[test]
fn a_write_longer_than_a_device_s_whole_blocks_is_too_large() {
    let store = store(
        StoreConfig::builder()
            .devices(1)
            .block_size_bytes(4096)
            .device_capacity_bytes(10_000),
    );
    let err = (store.write(ExtentId(1), &value_of_len(ExtentId(1), 1, 9_000))).unwrap_err();
    assert!(matches!(err, Error::TooLarge { max: 8192, .. }), "{err}");
    assert_eq!(
        store
            .write(ExtentId(1), &value_of_len(ExtentId(1), 1, 8192))
            .unwrap()
            .generation(),
        1
    );
}
