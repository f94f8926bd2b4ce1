//! `Store::read_range`: the bytes of one verified generation, a typed refusal past
//! the end, and a second range of a cached extent served from the cache.

mod common;

use common::value;
use extentmeta::{Error, ExtentId, MemBackend, Store, StoreConfig};

fn store() -> Store {
    let config = StoreConfig::builder().devices(2).build().expect("config");
    Store::new(MemBackend::new(2), config).expect("store")
}

#[test]
fn a_range_is_the_slice_of_the_current_generation() {
    let store = store();
    let id = ExtentId(21);
    let first = value(id, 1, 4096);
    store.write(id, &first).expect("write");
    for (offset, len) in [(0, 0), (0, 32), (100, 900), (4000, 96), (4096, 0)] {
        let got = store.read_range(id, offset, len).expect("in bounds");
        assert_eq!(
            &got[..],
            &first[offset as usize..(offset + len) as usize],
            "{offset}+{len}"
        );
    }
    let second = value(id, 2, 2048);
    store.write(id, &second).expect("rewrite");
    assert_eq!(
        &store.read_range(id, 0, 64).expect("range")[..],
        &second[..64],
        "the new generation's bytes, never the old"
    );
}

#[test]
fn a_range_past_the_end_is_refused_typed() {
    let store = store();
    let id = ExtentId(22);
    store.write(id, &value(id, 1, 512)).expect("write");
    for (offset, len) in [(0, 513), (512, 1), (600, 0), (1, u64::MAX), (u64::MAX, 1)] {
        let err = store.read_range(id, offset, len).expect_err("past the end");
        assert_eq!(
            err,
            Error::RangeOutOfBounds {
                extent: id,
                offset,
                len,
                length: 512
            },
            "{offset}+{len}"
        );
        assert_eq!(err.code(), "FPRE032");
        assert!(!err.is_retryable());
    }
    assert!(
        matches!(
            store.read_range(ExtentId(23), 0, 1),
            Err(Error::NotReadable { .. })
        ),
        "a vacant extent answers as read does"
    );
}

#[test]
fn a_second_range_of_a_cached_extent_is_a_cache_hit() {
    let store = store();
    let id = ExtentId(24);
    let bytes = value(id, 1, 8192);
    store.write(id, &bytes).expect("write");
    store
        .read_range(id, 0, 16)
        .expect("first range loads the extent");
    let before = store.stats().cache;
    assert_eq!(
        &store.read_range(id, 8000, 192).expect("second")[..],
        &bytes[8000..]
    );
    let after = store.stats().cache;
    assert_eq!(after.hits - before.hits, 1, "served from the cache");
    assert_eq!(after.misses, before.misses, "no read of the device");
}
