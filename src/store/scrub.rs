//! The scrubber: walks every extent, verifying it against the media, at a bounded
//! rate with a jittered schedule.
//!
//! The cursor (the next id to look at) lives in the store and survives a restart of
//! the scrubber; `StoreConfig::scrub_start` resumes from a saved cursor. Each id
//! looked at costs `bytes / rate`, scaled by a jitter factor in [0.5, 1.5) from a
//! seeded generator, so scrubbers started together spread out; an id without
//! bytes (never written, deleted) costs its record's bytes, so that a table of
//! sparse ids is walked at the rate too instead of at full speed, pass after
//! pass. The scrubber sleeps once it owes [`MIN_SLEEP`], on the shutdown
//! channel, so closing the store (`Store::close`, which dropping it runs) wakes
//! it at once.

use super::shared::Shared;
use crate::error::Error;
use crate::protocol::Verdict;
use crate::record::ExtentId;
use crate::sync::{Arc, Ordering::Relaxed};
use crossbeam::channel::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// Pause between passes over an empty or fully scrubbed table.
const IDLE_PAUSE: Duration = Duration::from_millis(100);

/// The shortest sleep: shorter costs are owed until they add up to it (a
/// timed wait of a few µs costs more CPU than the walk it paces).
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// What looking at an id of `bytes` costs at `bytes_per_sec` (not 0), before
/// the jitter: an id without bytes costs its record's.
fn cost_secs(bytes: u64, bytes_per_sec: u64) -> f64 {
    let paid = bytes.max(crate::table::ExtentTable::BYTES_PER_RECORD as u64);
    paid as f64 / bytes_per_sec as f64
}

/// SplitMix64: a tiny seeded generator for the jitter.
fn next_jitter(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    0.5 + (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The scrubber's loop; returns when `stop` is dropped by the store.
pub(crate) fn run(shared: &Arc<Shared>, bytes_per_sec: u64, seed: u64, stop: &Receiver<()>) {
    let mut rng = seed;
    // Whether this pass verified an extent: one that found none (the
    // table empty, or the start past its last id) is not counted.
    let mut verified = false;
    let mut owed = Duration::ZERO;
    loop {
        // Relaxed: the cursor is only this thread's progress, published for stats.
        let cursor = shared.scrub_cursor.load(Relaxed);
        let next = shared.core.table.allocated_ids(cursor).next();
        let pause = match next {
            None => {
                if std::mem::take(&mut verified) {
                    shared.counters.scrub_passes.bump();
                }
                shared.scrub_cursor.store(0, Relaxed);
                IDLE_PAUSE
            }
            Some(ExtentId(id)) => {
                let (bytes, judged) = scrub_one(shared, ExtentId(id));
                verified |= judged;
                shared.scrub_cursor.store(id + 1, Relaxed);
                owed += Duration::from_secs_f64(
                    cost_secs(bytes, bytes_per_sec) * next_jitter(&mut rng),
                );
                match owed >= MIN_SLEEP {
                    true => std::mem::take(&mut owed),
                    false => Duration::ZERO,
                }
            }
        };
        if !pause.is_zero() {
            match stop.recv_timeout(pause) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        } else if !matches!(
            stop.try_recv(),
            Err(crossbeam::channel::TryRecvError::Empty)
        ) {
            return;
        }
    }
}

/// Verifies one extent if it has bytes; returns its length (what the pace
/// is paid for) and whether its media was judged, which the counters count:
/// a verdict of `Ok`, a repair or a fault, not a race, a delete, a
/// quarantine that found no good copy again, or an error.
fn scrub_one(shared: &Shared, id: ExtentId) -> (u64, bool) {
    let Ok(snapshot) = shared.core.table.snapshot(id) else {
        return (0, false);
    };
    // Quarantined extents too: verify retries their remap.
    if snapshot.state() == crate::record::State::Vacant {
        return (0, false);
    }
    let bytes = u64::from(snapshot.location().length);
    // The verdict lands in the stats (FPRE004, quarantines, remaps).
    let judged = matches!(
        shared.verify(id),
        Ok(Verdict::Ok { .. } | Verdict::Repaired { .. }) | Err(Error::RetryLimitExceeded { .. })
    );
    if judged {
        shared.counters.scrub_extents.bump();
        shared.counters.scrub_bytes.add(bytes);
    }
    (bytes, judged)
}

#[cfg(test)]
mod tests {
    /// An id without bytes is paced as its record's bytes: a pass over ten
    /// million deleted ids at 10 MB/s takes about half a minute, not the CPU
    /// for as long as the table takes to walk.
    #[test]
    fn an_id_without_bytes_costs_its_record() {
        let record = crate::table::ExtentTable::BYTES_PER_RECORD as f64;
        assert_eq!(super::cost_secs(0, 10_000_000), record / 1e7);
        assert_eq!(super::cost_secs(4096, 4096), 1.0);
        let pass = 10_000_000.0 * super::cost_secs(0, 10_000_000) * 0.5;
        assert!(pass >= 10.0, "{pass} s at the lowest jitter");
    }

    #[test]
    fn jitter_stays_in_its_range() {
        let mut s = 7;
        for _ in 0..10_000 {
            let j = super::next_jitter(&mut s);
            assert!((0.5..1.5).contains(&j), "{j}");
        }
    }
}
