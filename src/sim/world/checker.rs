//! The checker: the invariants of a record after every step, of every read's
//! bytes against the model history, of every FPRE004 against the injected faults,
//! and of the whole store at the end of a run.

use super::World;
use super::op::{ActiveOp, Out};
use crate::bytes::Bytes;
use crate::error::Error;
use crate::record::{ExtentId, Location, State, checksum};
use crate::sim::config::Protocol;
use crate::sim::history::{self, ReadCheck};

impl World {
    /// FPRE004 must sit on an injected persistent fault, or on a streak of injected
    /// transient errors longer than the retry limit.
    pub(super) fn check_fpre004(&mut self, slot: &ActiveOp, location: Location, attempts: u32) {
        if self.fabric.is_faulty(location) {
            self.report.fpre004_real += 1;
        } else if slot.injected_streak >= attempts.max(1) {
            // Every attempt was a read that an injected transient error failed: a
            // streak beyond the retry limit, not a race.
            self.report.fpre004_transient_streak += 1;
        } else {
            self.report.fpre004_spurious += 1;
            self.violation(format!(
                "spurious FPRE004 on {} at {location}: no injected fault there",
                slot.extent
            ));
        }
    }

    pub(super) fn on_read_done(
        &mut self,
        slot: &ActiveOp,
        result: crate::Result<Out>,
        prefetch: bool,
    ) {
        match result {
            Ok(Out::Bytes(bytes)) => {
                if let Some((id, generation)) = history::decode(&bytes)
                    && let Some(served) = self.served.get_mut(id.0 as usize)
                {
                    *served = (*served).max(generation);
                }
                match self
                    .history
                    .check_read(slot.extent, &bytes, slot.started_ns, self.now)
                {
                    ReadCheck::Fresh => {}
                    ReadCheck::Stale { got } => {
                        self.report.stale_served += 1;
                        let current = self.history.current(slot.extent);
                        self.violation(format!(
                            "stale bytes served: {} generation {got} (current {current}) to a read started at {} ns",
                            slot.extent, slot.started_ns
                        ));
                    }
                    ReadCheck::Corrupt => {
                        self.report.corrupt_served += 1;
                        self.violation(format!("corrupt bytes served for {}", slot.extent));
                    }
                }
                if prefetch {
                    // A prefetch that found its extent cached went nowhere near the
                    // media: count only those that loaded (or waited on a load).
                    let latency = self.now - slot.started_ns;
                    if latency > 0 {
                        self.report
                            .prefetches
                            .push(crate::sim::report::PrefetchSample {
                                latency_ns: latency,
                                ..slot.causes
                            });
                    }
                } else {
                    self.report.reads += 1;
                    self.report.reads_ok += 1;
                }
            }
            // "Nothing there" must have been true at some instant inside the
            // read: never written, or deleted (a delete seen before it is
            // durable, or a current value called vacant, is not).
            Err(Error::NotReadable { .. })
                if self.cfg.protocol == Protocol::Fixed
                    && !(self.history).vacant_within(slot.extent, slot.started_ns, self.now) =>
            {
                self.violation(format!(
                    "{}: a read answered vacant (started at {} ns) while a value was current throughout",
                    slot.extent, slot.started_ns
                ));
            }
            Ok(_) | Err(Error::NotReadable { .. }) => {}
            Err(err) => {
                if !prefetch {
                    self.report.reads += 1;
                    *self.report.read_errors.entry(err.code()).or_default() += 1;
                }
            }
        }
    }

    /// Invariants of one record after a step (fixed protocol).
    pub(super) fn check_record(&mut self, extent: Option<ExtentId>) {
        let Some(id) = extent else { return };
        let Ok(s) = self.core.table.snapshot(id) else {
            return self.violation(format!("{id}: snapshot failed"));
        };
        let n = self.last_version.len();
        let last = &mut self.last_version[id.0 as usize % n];
        if s.version() < *last || s.version() % 2 != 0 {
            let v = s.version();
            let l = *last;
            return self.violation(format!("{id}: version went from {l} to {v}"));
        }
        *last = s.version();
        if s.state() == State::Compacting && s.write_pending() {
            return self.violation(format!("{id}: Compacting with a write pending"));
        }
        if s.generation() != self.history.current(id) {
            let h = self.history.current(id);
            return self.violation(format!(
                "{id}: record generation {} but history {h}",
                s.generation()
            ));
        }
        if s.state() != State::Vacant {
            // Faults are damage the verifier must find, not loss: compare the bytes
            // last written there, and the durable ones, without the fault overlay.
            let location = s.location();
            let len = location.length as usize;
            let holds = |b: Option<&Bytes>| {
                b.is_some_and(|b| {
                    b.len() >= len && checksum(id, s.generation(), &b[..len]) == s.checksum()
                })
            };
            let last_written = holds(
                self.fabric
                    .volatile(location)
                    .or_else(|| self.fabric.durable(location)),
            );
            // A failed writeback may have dropped an inline write's pages, and
            // until a sync reports it the store cannot know: the bytes are
            // durable in the journal, and the store writes them again from
            // there once it hears (a reader that finds them wrong, sooner).
            // Only that window is excused; the store's own bookkeeping
            // (`WriteBack::holds`) is what is under test, not the excuse.
            let awaiting_rewrite = self.fabric.writeback_unreported(location.device)
                && self.model.inline_durable(id, s.generation(), location);
            if !last_written && !awaiting_rewrite {
                self.violation(format!(
                    "{id}: data lost: {location} does not hold generation {}",
                    s.generation()
                ));
            } else if !holds(self.fabric.durable(location))
                && !self.model.inline_durable(id, s.generation(), location)
            {
                self.violation(format!(
                    "{id}: generation {} committed at {location} before it was durable (its sync not acknowledged)",
                    s.generation()
                ));
            }
        }
    }

    pub(super) fn final_check(&mut self) {
        if self.dead {
            return;
        }
        if !self.waiters.is_empty() || self.slots.iter().any(Option::is_some) {
            self.violation("operations still in flight at the end (hung)".into());
        }
        if self.cfg.protocol == Protocol::Fixed {
            for e in 0..self.cfg.workload.extents {
                self.check_record(Some(ExtentId(u64::from(e))));
            }
        }
    }

    pub(super) fn violation(&mut self, what: String) {
        self.report
            .violations
            .push(format!("t={} ns: {what}", self.now));
    }
}
