//! Helpers shared by the integration tests: values that encode their version, a
//! directory's files, a refused open; the fault-injecting backend
//! ([`fault_backend`]) and file system ([`fault_fs`]).
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses its own subset of the shared helpers, so an expect would be unfulfilled in some of them"
)]

pub mod fault_backend;
pub mod fault_fs;

use extentmeta::{Bytes, ExtentId};

/// The tag the tests write with `generation` of `id`: odd generations are tagged
/// with both numbers, even ones untagged, so a tag that strayed to another
/// extent or generation, or survived into an untagged one, is caught.
pub fn tag(id: ExtentId, generation: u64) -> extentmeta::Tag {
    match generation % 2 {
        1 => extentmeta::Tag::new(format!("e{}g{generation}", id.0).as_bytes()).expect("short"),
        _ => extentmeta::Tag::EMPTY,
    }
}

/// A value that encodes its extent and generation (and a writer sequence number), so
/// a stale or misdirected value can never pass for a fresh one.
pub fn value(id: ExtentId, generation: u64, len: usize) -> Vec<u8> {
    let mut v = format!("extent={} generation={} |", id.0, generation).into_bytes();
    assert!(
        len >= v.len(),
        "len {len} too short to encode {id} gen {generation}"
    );
    let mut x = id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ generation;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v.truncate(len);
    v
}

/// Decodes `(extent, generation)` from a value made by [`value`], checking the
/// whole payload.
pub fn decode(bytes: &Bytes) -> (ExtentId, u64) {
    let text =
        std::str::from_utf8(&bytes[..bytes.iter().position(|&b| b == b'|').expect("marker")])
            .expect("utf8 header");
    let mut parts = text
        .split_whitespace()
        .map(|p| p.split('=').nth(1).expect("key=value"));
    let id = ExtentId(parts.next().expect("extent").parse().expect("number"));
    let generation = parts.next().expect("generation").parse().expect("number");
    assert_eq!(
        &bytes[..],
        &value(id, generation, bytes.len())[..],
        "payload of {id} gen {generation} is intact"
    );
    (id, generation)
}

/// A store configuration with one prefetch worker, a queue of `queue` hints and a
/// cache large enough for every extent of a test (64 MiB).
pub fn one_worker(queue: usize) -> extentmeta::StoreConfig {
    extentmeta::StoreConfig::builder()
        .cache_bytes(64 << 20)
        .prefetch_workers(1)
        .prefetch_queue(queue)
        .build()
        .expect("a valid configuration")
}

/// Polls `done` (bounded: 10 s) so a test waits on background work without timing
/// deciding its outcome.
pub fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("background work did not finish within 10 s");
}

/// Every file of `dir`, name → content.
pub fn files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|e| {
            let e = e.expect("a directory entry");
            (
                e.file_name().into_string().expect("a UTF-8 name"),
                std::fs::read(e.path()).expect("read a file"),
            )
        })
        .collect()
}

/// Opens `dir` with `config`, expects the error `code`, and checks that no file
/// changed, names and contents (invariant 11); `LOCK` may differ only if it did
/// not exist before.
pub fn refused(
    dir: &std::path::Path,
    config: &extentmeta::StoreConfig,
    code: &str,
) -> extentmeta::Error {
    let before = files(dir);
    let err = match extentmeta::Store::open(dir, config.clone()) {
        Ok(store) => panic!(
            "open succeeded (recovered {:?}); expected {code}",
            store.recovery()
        ),
        Err(e) => e,
    };
    assert_eq!(err.code(), code, "{err}");
    assert!(err.to_string().starts_with(code), "message shows the code");
    let mut after = files(dir);
    if !before.contains_key("LOCK") {
        after.remove("LOCK");
    }
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "file names unchanged by the failed open"
    );
    for (name, content) in &before {
        assert!(
            after[name] == *content,
            "{name} unchanged by the failed open"
        );
    }
    err
}

/// Bytes of data after the journal frame whose payload is `payload`: an inline
/// write's record (tag 9) is followed by its location's length of data (the
/// record ends with the location's length u32 and the checksum u32); any other
/// frame by none.
pub fn inline_data_len(payload: &[u8]) -> usize {
    match payload.first() {
        Some(9) if payload.len() >= 8 => {
            let at = payload.len() - 8;
            let mut len = [0u8; 4];
            len.copy_from_slice(&payload[at..at + 4]);
            u32::from_le_bytes(len) as usize
        }
        _ => 0,
    }
}

/// Where the frames of an intact journal end: at the zero length that ends its
/// last write (past it lie allocated zeros, or a recycled file's stale bytes).
pub fn frames_end(journal: &[u8]) -> usize {
    const HEADER: usize = 32;
    const FRAME_HEAD: usize = 24;
    let mut at = HEADER;
    while at + 4 <= journal.len() {
        let mut len = [0u8; 4];
        len.copy_from_slice(&journal[at..at + 4]);
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 {
            break;
        }
        let payload = &journal[at + FRAME_HEAD..at + FRAME_HEAD + len];
        at += FRAME_HEAD + len + inline_data_len(payload);
    }
    at
}

/// Every `(id, generation)` reads back exactly the value `value(id, generation,
/// len(id, generation))` encodes.
pub fn check_values(
    store: &extentmeta::Store,
    expected: impl IntoIterator<Item = (u64, u64)>,
    len: impl Fn(u64, u64) -> usize,
) {
    for (id, generation) in expected {
        let bytes = store
            .read(ExtentId(id))
            .unwrap_or_else(|e| panic!("extent {id}: {e}"));
        assert_eq!(decode(&bytes), (ExtentId(id), generation), "extent {id}");
        assert_eq!(bytes.len(), len(id, generation), "extent {id}");
    }
}
