//! Repair on a durable store: with a good-copy source (a replica), a corrupt
//! extent is quarantined and remapped from the replica's verified bytes, durably;
//! without one, or with a wrong copy, it stays quarantined (FPRE013).

mod common;

use common::{decode, value};
use extentmeta::{Bytes, Error, ExtentId, Store, StoreConfig};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a replica holds: `(extent, generation)` to its bytes.
type Replica = Arc<Mutex<HashMap<(ExtentId, u64), Vec<u8>>>>;

fn config(replica: Option<Replica>) -> StoreConfig {
    let mut builder = StoreConfig::builder()
        .devices(2)
        .prefetch_workers(0)
        .metadata_reserve_bytes(0);
    if let Some(replica) = replica {
        builder = builder.good_copy_source(move |id, generation| {
            let held = replica.lock().expect("not poisoned");
            held.get(&(id, generation)).map(|v| Bytes::from(&v[..]))
        });
    }
    builder.build().expect("config")
}

/// Writes `id` durably and returns its record; the replica gets the same bytes.
fn write(dir: &Path, id: ExtentId, replica: &Replica) -> extentmeta::Snapshot {
    let store = Store::open(dir, config(None)).expect("open");
    let bytes = value(id, 1, 4096);
    let record = store.write(id, &bytes).expect("write");
    replica
        .lock()
        .expect("not poisoned")
        .insert((id, record.generation()), bytes);
    record
}

/// Flips one byte of the extent's data in its device file.
fn damage(dir: &Path, record: &extentmeta::Snapshot) {
    let location = record.location();
    let path = dir.join(format!("dev{:04}.extents", location.device));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("device file");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, location.offset + 100)
        .expect("read");
    file.write_all_at(&[byte[0] ^ 0x5a], location.offset + 100)
        .expect("write");
    file.sync_all().expect("sync");
}

#[test]
fn a_corrupt_extent_is_remapped_from_the_replica_durably() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let replica: Replica = Arc::default();
    let id = ExtentId(7);
    let record = write(&dir, id, &replica);
    damage(&dir, &record);
    {
        let store = Store::open(&dir, config(Some(Arc::clone(&replica)))).expect("open");
        assert_eq!(decode(&store.read(id).expect("repaired read")), (id, 1));
        let stats = store.stats();
        assert_eq!((stats.quarantines, stats.remaps), (1, 1));
        let now = store.snapshot(id).expect("record");
        assert_ne!(
            now.location(),
            record.location(),
            "moved to a fresh location"
        );
        assert_eq!(
            now.generation(),
            record.generation(),
            "same content generation"
        );
    }
    // The remap is durable: a reopen without any replica reads the good bytes.
    let store = Store::open(&dir, config(None)).expect("reopen");
    assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
}

#[test]
fn without_a_good_copy_the_extent_stays_quarantined() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let replica: Replica = Arc::default();
    let id = ExtentId(8);
    let record = write(&dir, id, &replica);
    damage(&dir, &record);
    // A replica that answers with the wrong bytes is refused by verification.
    replica
        .lock()
        .expect("not poisoned")
        .insert((id, record.generation()), value(ExtentId(9), 1, 4096));
    let store = Store::open(&dir, config(Some(replica))).expect("open");
    let err = store.read(id).expect_err("no verified copy");
    assert!(matches!(err, Error::Quarantined { .. }), "{err}");
    assert_eq!(store.stats().remaps, 0);
}
