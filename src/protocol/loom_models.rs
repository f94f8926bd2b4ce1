//! Loom models of the read/write protocol against the cache and the reclaimer.
//!
//! Each model runs the real `ReadOp`/`WriteOp` machines over the real `Core`, with a
//! tiny in-model medium. Values encode `(extent, generation)` so that a stale,
//! torn or misplaced value can never pass for a fresh one. Run by `ci/loom.sh`.

use super::{
    BatchWriteOp, Claim, CompactOp, Core, IoRequest, IoResult, Machine, ReadOp, RepairOp, Step,
    VerifyOp, WriteOp,
};
use crate::bytes::Bytes;
use crate::cache::{Cache, Priority};
use crate::error::Result;
use crate::policy::IntegrityPolicy;
use crate::record::{ExtentId, Location, Snapshot};
use crate::space::{Allocator, Health};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering::SeqCst, thread};
use crate::table::{ExtentTable, TableConfig};
use loom::sync::atomic::AtomicBool;
use std::collections::HashMap;

mod cut;

const A: ExtentId = ExtentId(1);
const B: ExtentId = ExtentId(2);

fn value(id: ExtentId, generation: u64) -> Bytes {
    let mut v = id.0.to_le_bytes().to_vec();
    v.extend_from_slice(&generation.to_le_bytes());
    Bytes::from(v)
}

fn decode(bytes: &[u8]) -> (ExtentId, u64) {
    assert_eq!(bytes.len(), 16, "torn value");
    let id = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let generation = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
    (ExtentId(id), generation)
}

struct World {
    core: Core,
    medium: Mutex<HashMap<Location, Bytes>>,
    media_reads: AtomicUsize,
    /// Set when a journal request is answered: its records are durable.
    journaled: AtomicBool,
    /// The journal refuses every request (a failed journal).
    refusing: bool,
    /// A backup's cut holds journal writes back (`journal::writer::cut`): a
    /// request waits until it is released; one handed out before completes.
    cut: Mutex<bool>,
}

fn world(cache_bytes: u64, device_blocks: u64) -> Arc<World> {
    world_sharded(cache_bytes, 1, device_blocks)
}

/// A world whose cache has `shards` shards (a value heavier than
/// `cache_bytes / shards` goes to the large shard).
fn world_sharded(cache_bytes: u64, shards: usize, device_blocks: u64) -> Arc<World> {
    let config = TableConfig::builder()
        .max_extents(4)
        .segment_len(4)
        .build()
        .expect("valid");
    Arc::new(World {
        core: Core::of_parts(
            ExtentTable::new(config),
            Cache::new(cache_bytes, shards),
            Allocator::new(1, device_blocks * 4096, 4096),
            Health::new(1, 10, 600_000),
        ),
        medium: Mutex::new(HashMap::new()),
        media_reads: AtomicUsize::new(0),
        journaled: AtomicBool::new(false),
        refusing: false,
        cut: Mutex::new(false),
    })
}

impl World {
    fn perform(&self, request: IoRequest, reading: Option<ExtentId>) -> IoResult {
        match request {
            IoRequest::Read(location) => {
                self.media_reads.fetch_add(1, SeqCst);
                let bytes = self.medium.lock().get(&location).cloned();
                let bytes = bytes.expect("a committed location holds bytes");
                if let Some(id) = reading {
                    // Reclamation: a location is never reused under a reader.
                    assert_eq!(decode(&bytes).0, id, "read a reclaimed location");
                }
                IoResult::Read(Ok(bytes))
            }
            IoRequest::Write(location, bytes) => {
                self.medium.lock().insert(location, bytes);
                IoResult::Done(Ok(()))
            }
            IoRequest::Sync(_) => IoResult::Done(Ok(())),
            // Every committed generation has a replica: the value is its identity.
            IoRequest::GoodCopy(id, generation) => IoResult::Read(Ok(value(id, generation))),
            // No model writes inline (the models' core has no journal).
            IoRequest::RewriteHeld(_) => IoResult::Done(Ok(())),
            IoRequest::Journal(_) if self.refusing => IoResult::Done(Err(crate::Error::Io {
                device: crate::journal::METADATA_DEVICE,
                op: "write",
                kind: std::io::ErrorKind::Other,
                message: "the journal failed".into(),
            })),
            // The models' store keeps no journal: a record is durable at once,
            // once no cut holds it back.
            IoRequest::Journal(_) => {
                self.wait_for_cut();
                self.journaled.store(true, SeqCst);
                IoResult::Done(Ok(()))
            }
            // No model overlaps (`overlap_data_sync` is off): as both at once.
            IoRequest::SyncAndJournal(..) => {
                self.journaled.store(true, SeqCst);
                IoResult::Both {
                    sync: Ok(()),
                    journal: Ok(()),
                }
            }
        }
    }

    /// Waits while a cut holds journal writes back. The writer decides under
    /// its lock, as the store's does, so a write that got past is in flight and
    /// completes under the cut. Bounded by the cut's release (the model's main
    /// thread releases it after its image); every pass yields.
    fn wait_for_cut(&self) {
        while *self.cut.lock() {
            thread::yield_now();
        }
    }

    /// Runs any machine to completion (backoff is immediate: loom has no time).
    fn drive<M: Machine>(&self, mut op: M, reading: Option<ExtentId>) -> Result<M::Output> {
        self.drive_mut(&mut op, reading)
    }

    /// As [`drive`](Self::drive), keeping the machine (for what it counted).
    fn drive_mut<M: Machine>(&self, op: &mut M, reading: Option<ExtentId>) -> Result<M::Output> {
        let mut step = op.start(&self.core);
        loop {
            step = match step {
                Step::Io(r) => op.on_io(&self.core, self.perform(r, reading)),
                Step::Wait(flight) => op.on_wait(&self.core, flight.wait()),
                Step::Backoff(_) => op.on_backoff(&self.core),
                Step::Done(result) => return result,
            };
        }
    }

    fn read(&self, id: ExtentId) -> Result<Bytes> {
        self.drive(ReadOp::new(id, Priority::Demand), Some(id))
    }

    fn write(&self, id: ExtentId, generation: u64) -> Result<Snapshot> {
        self.drive(
            WriteOp::new(id, value(id, generation), crate::record::Tag::EMPTY),
            None,
        )
    }
}

fn policy() -> IntegrityPolicy {
    IntegrityPolicy::builder()
        .retry_limit(1)
        .backoff_base_us(0)
        .build()
        .expect("valid")
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(
        std::env::var("LOOM_MAX_PREEMPTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );
    builder.check(f);
}

/// Invariant 4: a fill racing a write commit is neither served stale nor kept
/// (in `w`'s cache, whatever shard holds the value).
fn fill_racing_write_commit(w: Arc<World>) {
    w.write(A, 1).expect("setup write");
    let reader = {
        let w = w.clone();
        thread::spawn(move || w.read(A))
    };
    w.write(A, 2).expect("write gen 2");
    let got = reader.join().expect("reader");
    let (id, generation) = decode(&got.expect("read succeeds"));
    assert_eq!(id, A);
    assert!(generation == 1 || generation == 2);
    if let Some((g, bytes)) = w.core.cache.peek(A) {
        assert_eq!(g, 2, "a generation-1 fill was kept after the commit");
        assert_eq!(decode(&bytes), (A, 2));
    }
    assert_eq!(
        decode(&w.read(A).expect("read")),
        (A, 2),
        "stale after the write returned"
    );
}

#[test]
fn generation_tagged_cache_fill_racing_write_commit() {
    model(|| fill_racing_write_commit(world(1 << 16, 8)));
}

/// Invariant 4 for a value heavier than a shard (it lives in the large shard,
/// checked under the regular shard's lock).
fn large_entry_fill_racing_write_commit(skip_large_invalidation: bool) {
    model(move || {
        // Two shards of 100 bytes; a 16-byte value weighs 112 with its overhead.
        let mut w = world_sharded(200, 2, 8);
        Arc::get_mut(&mut w)
            .expect("not shared yet")
            .core
            .cache
            .mutant_skip_large_invalidation = skip_large_invalidation;
        fill_racing_write_commit(w.clone());
        assert!(w.core.cache.used_bytes() <= 200, "within the capacity");
    });
}

#[test]
fn generation_tagged_large_entry_fill_racing_write_commit() {
    large_entry_fill_racing_write_commit(false);
}

/// The mutant's invalidation leaves the large shard alone: a generation-1 fill
/// that completed before the commit stays.
#[test]
#[should_panic(expected = "a generation-1 fill was kept after the commit")]
fn mutant_large_entry_kept_past_its_invalidation_is_caught() {
    large_entry_fill_racing_write_commit(true);
}

/// Single flight and the hit for a large value: two racing reads make one
/// load, and a third read is served from the large shard.
#[test]
fn generation_tagged_large_entry_two_fills_one_load() {
    model(|| {
        let w = world_sharded(200, 2, 8);
        w.write(A, 1).expect("setup write");
        let other = {
            let w = w.clone();
            thread::spawn(move || w.read(A))
        };
        let mine = w.read(A).expect("read");
        let theirs = other.join().expect("reader").expect("read");
        assert_eq!((decode(&mine), decode(&theirs)), ((A, 1), (A, 1)));
        assert_eq!(w.media_reads.load(SeqCst), 1, "exactly one load");
        assert_eq!(decode(&w.read(A).expect("hit")), (A, 1));
        assert_eq!(w.media_reads.load(SeqCst), 1, "served from the cache");
    });
}

/// Invariant 4 (single flight): two fills of one extent make one load; both get it.
#[test]
fn generation_tagged_cache_two_fills_one_load() {
    model(|| {
        let w = world(1 << 16, 8);
        w.write(A, 1).expect("setup write");
        let other = {
            let w = w.clone();
            thread::spawn(move || w.read(A))
        };
        let mine = w.read(A).expect("read");
        let theirs = other.join().expect("reader").expect("read");
        assert_eq!(decode(&mine), (A, 1));
        assert_eq!(decode(&theirs), (A, 1));
        assert_eq!(w.media_reads.load(SeqCst), 1, "exactly one load");
    });
}

/// Invariant 3: a read racing a write commit returns old or new, never a mix, and
/// never old once the write has returned.
#[test]
fn linearizable_reads_read_racing_write_commit() {
    model(|| {
        let w = world(1 << 16, 8);
        w.write(A, 1).expect("setup write");
        w.read(A).expect("warm the cache with generation 1");
        let returned = Arc::new(AtomicBool::new(false));
        let writer = {
            let (w, returned) = (w.clone(), returned.clone());
            thread::spawn(move || {
                w.write(A, 2).expect("write gen 2");
                returned.store(true, SeqCst);
            })
        };
        let write_had_returned = returned.load(SeqCst);
        let (id, generation) = decode(&w.read(A).expect("read"));
        assert_eq!(id, A);
        assert!(generation == 1 || generation == 2, "a mix");
        if write_had_returned {
            assert_eq!(generation, 2, "old bytes after the write returned");
        }
        writer.join().expect("writer");
    });
}

/// Invariant 6 (reclamation): a retired location is not reused while a reader that
/// took its snapshot before the commit may still read it.
#[test]
fn reclamation_races_read_of_the_old_location() {
    model(|| {
        // No cache, so every read goes to the medium; two blocks of space, so B's
        // write can only succeed by reusing A's old block once it is reclaimed.
        let w = world(0, 2);
        w.write(A, 1).expect("setup write");
        let reader = {
            let w = w.clone();
            thread::spawn(move || w.read(A))
        };
        w.write(A, 2).expect("write gen 2 retires gen 1's block");
        w.core.collect();
        // Either NoSpace (gen 1's block still protected) or it reuses that block.
        let _ = w.write(B, 1);
        let (id, generation) = decode(&reader.join().expect("reader").expect("read"));
        assert_eq!(id, A);
        assert!(generation == 1 || generation == 2);
    });
}

/// Invariant 7 (the original FPRE004): verification racing a compaction commit never
/// reports a fault, and never reads a location reclaimed under it.
#[test]
fn fpre004_means_a_real_fault_verify_racing_compaction_commit() {
    model(|| {
        // Two blocks: A's copy takes the second, so B's write can only succeed by
        // reusing A's pre-compaction block, which must not happen while the verifier
        // may still read it.
        let w = world(0, 2);
        w.write(A, 1).expect("setup write");
        let verifier = {
            let w = w.clone();
            thread::spawn(move || w.drive(VerifyOp::new(A, policy()), Some(A)))
        };
        let compacted = w.drive(CompactOp::new(A), None).expect("compaction runs");
        w.core.collect();
        let _ = w.write(B, 1);
        let verdict = verifier.join().expect("verifier");
        assert!(
            verdict.is_ok(),
            "a race reported as a fault: {verdict:?} (compaction {compacted:?})"
        );
    });
}

/// Invariant 4: a prefetch racing a compaction commit fills the same generation.
#[test]
fn generation_tagged_cache_prefetch_racing_compaction_commit() {
    model(|| {
        let w = world(1 << 16, 8);
        w.write(A, 1).expect("setup write");
        let prefetcher = {
            let w = w.clone();
            thread::spawn(move || w.drive(ReadOp::new(A, Priority::Prefetch), Some(A)))
        };
        w.drive(CompactOp::new(A), None).expect("compaction runs");
        let bytes = prefetcher
            .join()
            .expect("prefetcher")
            .expect("a prefetch racing a compaction succeeds");
        assert_eq!(decode(&bytes), (A, 1));
        if let Some((g, bytes)) = w.core.cache.peek(A) {
            assert_eq!((g, decode(&bytes)), (1, (A, 1)));
        }
        assert_eq!(decode(&w.read(A).expect("read")), (A, 1));
    });
}

/// A readahead claim of `A`'s current generation (committed as generation 1
/// first), run by a worker thread.
fn claimed_worker(w: &Arc<World>) -> thread::JoinHandle<Result<Bytes>> {
    w.write(A, 1).expect("setup write");
    let claimed = match ReadOp::claim(&w.core, A) {
        Claim::Claimed(token, _) => ReadOp::with_claim(token),
        other => panic!("nothing cached or loading: the claim is the prefetch's ({other:?})"),
    };
    let w = w.clone();
    thread::spawn(move || w.drive(claimed, Some(A)))
}

/// Invariant 4 for readahead's claimed loads: a load claimed before a write and
/// run by a worker while the write commits never leaves generation 1 cached,
/// and never reads a reclaimed location (`drive` checks what it reads).
#[test]
fn claimed_prefetch_racing_write() {
    model(|| {
        let w = world(1 << 16, 8);
        let worker = claimed_worker(&w);
        w.write(A, 2).expect("the write commits");
        // Loaded, or ended superseded: either way nothing stale stays cached.
        let _ = worker.join().expect("worker");
        if let Some((g, bytes)) = w.core.cache.peek(A) {
            assert_eq!((g, decode(&bytes)), (2, (A, 2)), "a stale entry survived");
        }
        assert_eq!(decode(&w.read(A).expect("read")), (A, 2));
    });
}

/// Invariant 3 for readahead's claimed loads: a demand reader racing the worker
/// that runs the claim gets generation 1's bytes, whether it waits on the
/// started claim, takes the unstarted one over or finds the bytes cached, and
/// the extent is read from the medium once (a take-over that let the worker
/// start as well would read it twice).
#[test]
fn claimed_prefetch_racing_demand_read() {
    model(|| {
        let w = world(1 << 16, 8);
        let worker = claimed_worker(&w);
        assert_eq!(decode(&w.read(A).expect("read")), (A, 1));
        let loaded = worker.join().expect("worker").expect("the claimed load");
        assert_eq!(decode(&loaded), (A, 1));
        assert_eq!(
            w.media_reads.load(SeqCst),
            1,
            "one load, joined or taken over by the reader"
        );
    });
}

/// Invariant 6: a write acknowledged while a compaction commits wins; nothing lost.
#[test]
fn compaction_loses_nothing_write_ack_racing_compaction_commit() {
    model(|| {
        let w = world(0, 8);
        w.write(A, 1).expect("setup write");
        let writer = {
            let w = w.clone();
            thread::spawn(move || w.write(A, 2))
        };
        let _ = w.drive(CompactOp::new(A), None);
        let written = writer.join().expect("writer").expect("the write commits");
        assert_eq!(written.generation(), 2);
        let now = w.core.table.snapshot(A).expect("snapshot");
        assert_eq!(now.generation(), 2, "the write won");
        let stored = w
            .medium
            .lock()
            .get(&now.location())
            .cloned()
            .expect("bytes at the location");
        assert_eq!(
            decode(&stored),
            (A, 2),
            "the committed location holds the write"
        );
        assert_eq!(decode(&w.read(A).expect("read")), (A, 2));
    });
}

/// Invariant 8: a read racing a quarantine (and remap) is served the good bytes.
#[test]
fn last_good_copy_kept_quarantine_racing_read() {
    model(|| {
        let w = world(0, 8);
        let faulted: Snapshot = w.write(A, 1).expect("setup write");
        let reader = {
            let w = w.clone();
            thread::spawn(move || w.read(A))
        };
        let _ = w.drive(RepairOp::new(faulted), None);
        let got = reader
            .join()
            .expect("reader")
            .expect("served from the good copy");
        assert_eq!(decode(&got), (A, 1));
        let now = w.core.table.snapshot(A).expect("snapshot");
        assert_eq!(
            (now.generation(), now.checksum()),
            (1, faulted.checksum()),
            "nothing dropped"
        );
    });
}

/// Two repairs of one fault racing (a verify and a scrub that
/// both found it): exactly one quarantines and counts it, whichever remaps.
#[test]
fn quarantine_counted_once_two_repairs_of_one_fault_racing() {
    model(|| {
        let w = world(0, 8);
        let faulted: Snapshot = w.write(A, 1).expect("setup write");
        let other = {
            let w = w.clone();
            thread::spawn(move || {
                let mut op = RepairOp::new(faulted);
                let _ = w.drive_mut(&mut op, None);
                op.quarantined_here()
            })
        };
        let mut op = RepairOp::new(faulted);
        let _ = w.drive_mut(&mut op, None);
        let counted = u32::from(op.quarantined_here()) + u32::from(other.join().expect("other"));
        assert_eq!(counted, 1, "one quarantine, counted exactly once");
        let now = w.core.table.snapshot(A).expect("snapshot");
        assert_eq!(now.generation(), 1, "nothing dropped");
    });
}

/// A checkpoint image taken while a write's record is durable but not yet
/// committed in the table: the image holds that record (or the commit), whichever
/// of the commit and the proposal's removal the image meets (invariant 9: a
/// checkpoint replacing the journal that holds the record must not drop it).
fn checkpoint_image_holds_a_durable_proposal(table_first: bool) {
    model(move || {
        let mut w = world(0, 8);
        Arc::get_mut(&mut w)
            .expect("not shared yet")
            .core
            .mutants
            .image_table_first = table_first;
        w.write(A, 1).expect("setup write");
        w.journaled.store(false, SeqCst);
        let writer = {
            let w = w.clone();
            thread::spawn(move || w.write(A, 2).expect("write"))
        };
        // SeqCst: pairs with the store in `perform`; if the record was durable
        // before the image began, the image must hold it.
        let durable = w.journaled.load(SeqCst);
        let image = w.core.image();
        if durable {
            let record = image.records.get(A.0).expect("extent A");
            assert_eq!(record.generation, 2, "the durable proposal is in the image");
        }
        writer.join().expect("writer");
    });
}

#[test]
fn checkpoint_image_racing_a_write_commit_holds_its_durable_record() {
    checkpoint_image_holds_a_durable_proposal(false);
}

/// The mutant reads the table first: a commit and removal between the two reads
/// leave the record in neither.
#[test]
#[should_panic(expected = "the durable proposal is in the image")]
fn mutant_checkpoint_image_reading_the_table_first_is_caught() {
    checkpoint_image_holds_a_durable_proposal(true);
}

/// A checkpoint image taken while a batch of two writes registers its
/// proposals, and the journal then refuses the batch: the image holds both
/// records or neither (recovery applies a batch whole; a checkpoint holding
/// part of one would keep that part after the failed append).
fn checkpoint_image_holds_a_batch_whole(apart: bool) {
    model(move || {
        let mut w = world(0, 8);
        let parts = Arc::get_mut(&mut w).expect("not shared yet");
        parts.refusing = true;
        parts.core.mutants.batch_proposals_apart = apart;
        let writer = {
            let w = w.clone();
            thread::spawn(move || {
                let items = [A, B].map(|id| (id, value(id, 1), crate::record::Tag::EMPTY));
                w.drive(BatchWriteOp::new(items.to_vec()), None)
            })
        };
        let image = w.core.image();
        // A pending mark alone puts a vacant placeholder in the table's image:
        // what counts is the batch's generation.
        let held = [A, B].map(|id| image.records.get(id.0).is_some_and(|r| r.generation == 1));
        assert_eq!(
            held[0], held[1],
            "the image holds the batch whole or not at all"
        );
        assert!(
            writer.join().expect("writer").is_err(),
            "the journal refused"
        );
    });
}

#[test]
fn checkpoint_image_racing_a_batch_holds_it_whole() {
    checkpoint_image_holds_a_batch_whole(false);
}

/// The mutant registers the batch's proposals one at a time: an image between
/// the two holds one of them.
#[test]
#[should_panic(expected = "the image holds the batch whole or not at all")]
fn mutant_batch_registering_its_proposals_apart_is_caught() {
    checkpoint_image_holds_a_batch_whole(true);
}
