//! The driver: feeds each operation's machine its I/O results in virtual time and
//! carries out what it asks (data I/O on the fabric, syncs through the store's
//! sync book, journal requests through the emulated journal), as the `Store`
//! does; it only moves bytes and time.

use super::op::{ActiveOp, Input, Op, Out, input_code, step_machine, trace_code};
use super::{ActorKind, Event, World};
use crate::bytes::Bytes;
use crate::cache::FlightOutcome;
use crate::error::Error;
use crate::journal::Entry;
use crate::protocol::{CompactOutcome, Fault, IoRequest, IoResult, Machine, Step, Tally, Verdict};
use crate::record::{ExtentId, Location};
use crate::sim::config::Protocol;
use crate::sim::emulated_journal;
use crate::sim::legacy;

impl World {
    pub(super) fn dispatch(&mut self, idx: usize, input: Input) {
        let Some(mut slot) = self.slots.get_mut(idx).and_then(Option::take) else {
            return self.violation(format!("event for an empty slot {idx}"));
        };
        let extent = slot.extent;
        self.trace.record(
            self.now,
            idx,
            trace_code(&slot.op),
            extent,
            input_code(&input),
        );
        let core = &self.core;
        let step = match &mut slot.op {
            Op::Read(m) => step_machine(m, core, input, Out::Bytes),
            Op::Session(m) => step_machine(&mut **m, core, input, Out::Bytes),
            Op::Write(m, _) => step_machine(m, core, input, |s| Out::Written(s.generation())),
            Op::Batch(m, _) => step_machine(m, core, input, |v| {
                Out::Batch(v.iter().map(|s| (s.extent(), s.generation())).collect())
            }),
            Op::Compact(m) => step_machine(m, core, input, Out::Compacted),
            Op::Delete(m) => step_machine(m, core, input, |s| Out::Deleted(s.generation())),
            Op::Verify(m) => step_machine(&mut **m, core, input, |_: Verdict| Out::Unit),
            Op::Legacy(op) => {
                let input = match input {
                    Input::Start => legacy::Input::Start,
                    Input::Io(r) => legacy::Input::Io(r),
                    Input::Backoff => legacy::Input::Backoff,
                    Input::Wait(_) => legacy::Input::Backoff,
                };
                match op.step(&mut self.legacy, input) {
                    Step::Io(r) => Step::Io(r),
                    Step::Wait(f) => Step::Wait(f),
                    Step::Backoff(us) => Step::Backoff(us),
                    Step::Done(r) => Step::Done(r.map(|o| match o {
                        legacy::Out::Bytes(b) => Out::Bytes(b),
                        legacy::Out::Generation(g) => Out::Written(g),
                        legacy::Out::Unit => Out::Unit,
                    })),
                }
            }
        };
        self.absorb_legacy_commits();
        self.absorb_batch_commits(&slot);
        self.after_ladder_step(&mut slot);
        slot.causes.in_rotation |= self.meta.rotating();
        match step {
            Step::Io(request) => {
                let latency = self.latency_of(&request);
                if let IoRequest::Read(_) = request {
                    slot.causes.media_reads += 1;
                    slot.causes.device_ns += latency;
                }
                match request {
                    IoRequest::Journal(entries) => {
                        self.slots[idx] = Some(slot);
                        return self.journal(idx, extent, entries);
                    }
                    // Both at once, as the store: the entries go to the journal
                    // now, the sync completes after its latency, and the machine
                    // hears once both answered (`answer_pair`).
                    IoRequest::SyncAndJournal(device, entries) => {
                        slot.pair = Some((None, None));
                        self.slots[idx] = Some(slot);
                        self.schedule_io(idx, IoRequest::Sync(device), latency);
                        return self.journal(idx, extent, entries);
                    }
                    request => self.schedule_io(idx, request, latency),
                }
                self.slots[idx] = Some(slot);
            }
            // A prefetch ends where the store's ends: at another reader's load.
            Step::Wait(_) if matches!(&slot.op, Op::Read(m) if !m.joins_loads()) => {
                if let Op::Read(m) = &mut slot.op {
                    m.abandon(&self.core);
                }
                self.finish(idx, slot, Ok(Out::Unit));
            }
            Step::Wait(flight) => {
                slot.causes.waits += 1;
                self.waiters.push((idx, flight));
                self.slots[idx] = Some(slot);
            }
            Step::Backoff(us) => {
                slot.causes.backoffs += 1;
                let clock = self.clock_of(slot.actor);
                let at = self
                    .now
                    .saturating_add(clock.global_duration(us.saturating_mul(1000)));
                self.schedule(at, Event::Backoff(idx));
                self.slots[idx] = Some(slot);
            }
            Step::Done(result) => self.finish(idx, slot, result),
        }
        if self.cfg.protocol == Protocol::Fixed {
            self.check_record(Some(extent));
        }
    }

    fn latency_of(&mut self, request: &IoRequest) -> u64 {
        match request {
            IoRequest::Read(l) | IoRequest::Write(l, _) => self.fabric.service_ns(l.device),
            IoRequest::Sync(d) | IoRequest::SyncAndJournal(d, _) => {
                self.fabric.service_ns(*d) + self.fabric.ack_delay_ns()
            }
            IoRequest::GoodCopy(..) | IoRequest::Journal(_) => self.cfg.latency.floor_ns,
            IoRequest::RewriteHeld(l) => self.fabric.service_ns(l.device),
        }
    }

    /// Schedules the completion of slot `idx`'s data `request` after `latency`.
    fn schedule_io(&mut self, idx: usize, request: IoRequest, latency: u64) {
        match request {
            IoRequest::Sync(device) if self.cfg.early_sync_ack => {
                // The mutant fabric: acknowledged now, durable only later.
                self.schedule(
                    self.now.saturating_add(latency.max(1)),
                    Event::Flush(device),
                );
                self.schedule(self.now, Event::Io(idx, request));
            }
            // The sync starts now: a failed one drops or cleans the device's
            // dirty pages before the store hears of it (`Fabric::begin_sync`).
            IoRequest::Sync(device) => {
                let start = self.begin_device_sync(device);
                let at = self
                    .now
                    .saturating_add(latency)
                    .saturating_add(start.slower);
                self.schedule(at, Event::Sync(idx, device, start));
            }
            request => self.schedule(self.now.saturating_add(latency), Event::Io(idx, request)),
        }
    }

    /// Carries out the I/O `request` of the operation in slot `idx` as it completes.
    pub(super) fn perform(&mut self, idx: usize, request: IoRequest) -> IoResult {
        match request {
            IoRequest::Read(location) => {
                let (result, injected) = self.fabric.read(location);
                if let Some(Some(slot)) = self.slots.get_mut(idx) {
                    slot.injected_streak = if injected {
                        slot.injected_streak + 1
                    } else {
                        0
                    };
                }
                IoResult::Read(result)
            }
            IoRequest::Write(location, bytes) => {
                if self.fabric.roll_misdirect()
                    && !self.overlapping(idx, location)
                    && let Some(victim) = self.victim_location(location)
                {
                    self.fabric.misdirect(location, victim, bytes);
                    return IoResult::Done(Ok(()));
                }
                IoResult::Done(self.fabric.write(location, bytes))
            }
            // The mutant's early acknowledgment: the flush comes later.
            IoRequest::Sync(_) if self.cfg.early_sync_ack => IoResult::Done(Ok(())),
            // Unreachable: `schedule_io` schedules a sync's end as `Event::Sync`.
            IoRequest::Sync(_) => IoResult::Done(Err(Error::Internal {
                what: "a sync's end reached `perform`",
            })),
            IoRequest::GoodCopy(id, generation) => IoResult::Read(
                self.fabric
                    .replica(id, generation)
                    .ok_or(Error::Quarantined { extent: id }),
            ),
            IoRequest::RewriteHeld(location) => self.rewrite_held(location),
            // Unreachable: `dispatch` hands every journal request to the emulated
            // journal (`journal`) and never schedules one as data I/O.
            IoRequest::Journal(_) | IoRequest::SyncAndJournal(..) => {
                IoResult::Done(Err(Error::Internal {
                    what: "a journal request reached the data fabric",
                }))
            }
        }
    }

    /// The journal answered slot `idx`'s entries.
    fn journal_answer(&mut self, idx: usize, result: crate::Result<()>) {
        match self.pairing(idx) {
            true => self.answer_pair(idx, None, Some(result)),
            false => self.dispatch(idx, Input::Io(IoResult::Done(result))),
        }
    }

    /// Whether slot `idx` is a write whose record will go to the journal while
    /// its data's sync runs, its data written at `location`: no fault is
    /// injected into its data until its marker is durable (see
    /// `Model::unmarked`). The machine's own decision, asked as its data write
    /// completes.
    fn overlapping(&self, idx: usize, location: Location) -> bool {
        matches!(self.slots.get(idx), Some(Some(ActiveOp { op: Op::Write(w, _), .. }))
                if w.overlaps(&self.core, location))
    }

    /// Whether slot `idx` waits for the two parts of a sync-and-journal.
    pub(super) fn pairing(&self, idx: usize) -> bool {
        matches!(self.slots.get(idx), Some(Some(slot)) if slot.pair.is_some())
    }

    /// One part of slot `idx`'s sync-and-journal answered: once both did, the
    /// machine hears both. An overlapped write's data is durable once its sync
    /// answers `Ok` (the model needs to know: recovery keeps its record then).
    pub(super) fn answer_pair(
        &mut self,
        idx: usize,
        sync: Option<crate::Result<()>>,
        journal: Option<crate::Result<()>>,
    ) {
        let Some(Some(slot)) = self.slots.get_mut(idx) else {
            return self.violation(format!("a sync-and-journal answer for an empty slot {idx}"));
        };
        let extent = slot.extent;
        let Some((s, j)) = slot.pair.as_mut() else {
            return self.violation(format!("slot {idx} answered as a pair without one"));
        };
        let synced = matches!(sync, Some(Ok(())));
        if let Some(r) = sync {
            *s = Some(r);
        }
        if let Some(r) = journal {
            *j = Some(r);
        }
        let both = match slot.pair.take() {
            Some((Some(sync), Some(journal))) => Some(IoResult::Both { sync, journal }),
            half => {
                slot.pair = half;
                None
            }
        };
        if synced {
            self.model.data_synced(extent);
        }
        if let Some(both) = both {
            self.dispatch(idx, Input::Io(both));
        }
    }

    /// A machine asks for its records to be made durable; the answer comes with
    /// the group commit that covers it. A write's bytes are durable already, so the
    /// replica source keeps them. Its commit becomes visible when the machine makes
    /// the transition, after that answer (`finish` records it in the history);
    /// only the `commit_before_journal` mutant commits first, and then the history
    /// must record it now.
    fn journal(&mut self, idx: usize, extent: ExtentId, entries: Vec<Entry>) {
        let entries = self.core.overlaps.with_markers(entries);
        let markers: Vec<Entry> = (entries.iter())
            .filter(|e| matches!(e, Entry::Synced { .. }))
            .cloned()
            .collect();
        if !markers.is_empty() {
            self.carried.insert(idx, markers);
        }
        let written: Vec<(ExtentId, Bytes)> = match self.slots.get(idx) {
            Some(Some(ActiveOp {
                op: Op::Write(_, bytes),
                extent,
                ..
            })) => vec![(*extent, bytes.clone())],
            Some(Some(ActiveOp {
                op: Op::Batch(_, items),
                ..
            })) => (items.iter())
                .filter_map(|(id, bytes)| Some((*id, bytes.clone()?)))
                .collect(),
            _ => Vec::new(),
        };
        for e in &entries {
            if let Some((r, _)) = e.record()
                && r.generation > self.history.current(r.extent)
                && let Some((_, bytes)) = written.iter().find(|(id, _)| *id == r.extent)
            {
                if self.cfg.commit_before_journal {
                    self.history.commit(r.extent, r.generation, self.now);
                }
                self.fabric
                    .add_replica(r.extent, r.generation, bytes.clone());
            }
        }
        self.report.overlapped_writes += (entries.iter())
            .filter(|e| matches!(e, Entry::Unsynced(..)))
            .count() as u64;
        self.report.inline_writes += (entries.iter())
            .filter(|e| matches!(e, Entry::Inline(..)))
            .count() as u64;
        self.model.issue(idx, &entries);
        let fx = self.meta.append(idx, &entries);
        self.meta_effects(fx);
        if self.cfg.protocol == Protocol::Fixed {
            self.check_record(Some(extent));
        }
    }

    pub(super) fn meta_effects(&mut self, fx: emulated_journal::Effects) {
        if let Some(error) = fx.plan_error {
            self.violation(error);
        }
        if let Some(error) = self.meta.reserve_missing() {
            self.violation(error);
        }
        self.core.set_space_low(self.meta.space_low());
        for (lane, delay) in fx.schedule {
            self.schedule(self.now + delay, Event::Meta(lane));
        }
        if fx.poisoned {
            self.report.journal_failures += 1;
            self.schedule(self.now + 1_000_000, Event::Reopen);
        }
        if let Some(lane) = fx.sync_devices {
            let held = self
                .core
                .devices_to_sync(lane == emulated_journal::Lane::Checkpoint);
            self.sync_devices(lane, held);
        }
        for slot in fx.acks {
            if let Some(markers) = self.carried.remove(&slot) {
                self.core.retire_behind_markers(&markers);
            }
            self.model.ack(slot);
            self.journal_answer(slot, Ok(()));
        }
        for (slot, err) in fx.failed {
            // Lost with the append: the locations wait for the next open.
            self.carried.remove(&slot);
            // Refused before anything of it was written, or written to a
            // journal that failed: either way only a checkpoint that read its
            // proposals may hold it.
            self.model.fail(slot);
            let answer = match self.cfg.ack_failed_journal {
                true => Ok(()),
                false => Err(err),
            };
            self.journal_answer(slot, answer);
        }
    }

    pub(super) fn wake_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.waiters.len() {
            if let Some(outcome) = self.waiters[i].1.outcome() {
                let (slot, _) = self.waiters.remove(i);
                // The load it waited on counts as one of its reads: an I/O error
                // there (only injected ones exist) lengthens its streak, as its own
                // read's would (`check_fpre004`).
                if let Some(Some(active)) = self.slots.get_mut(slot) {
                    active.injected_streak = match &outcome {
                        FlightOutcome::Failed(Error::Io { .. }) => active.injected_streak + 1,
                        FlightOutcome::Failed(_) => active.injected_streak,
                        _ => 0,
                    };
                }
                self.dispatch(slot, Input::Wait(outcome));
            } else {
                i += 1;
            }
        }
    }

    /// A batch commits its writes in the table round by round, before it
    /// answers: the history records each as it becomes visible (a single write
    /// commits in the step that answers).
    fn absorb_batch_commits(&mut self, slot: &ActiveOp) {
        let Op::Batch(_, items) = &slot.op else {
            return;
        };
        for (id, bytes) in items {
            let Ok(s) = self.core.table.snapshot(*id) else {
                continue;
            };
            if s.write_pending() {
                continue;
            }
            match bytes {
                Some(bytes) if s.generation() > self.history.current(*id) => {
                    self.history.commit(*id, s.generation(), self.now);
                    self.fabric.add_replica(*id, s.generation(), bytes.clone());
                }
                // Recorded once, over the generation it left vacant.
                None if s.state() == crate::record::State::Vacant => {
                    self.history.delete(*id, s.generation(), self.now);
                }
                _ => {}
            }
        }
    }

    fn absorb_legacy_commits(&mut self) {
        for (id, generation, bytes) in std::mem::take(&mut self.legacy.commits) {
            self.history.commit(id, generation, self.now);
            self.fabric.add_replica(id, generation, bytes);
        }
    }

    /// After every step of the ladder's sessions: charge the device error it found
    /// (at the actor's own skewed, drifting clock, before the repair goes on), and
    /// check a persistent fault against the fabric once, when it is found.
    fn after_ladder_step(&mut self, slot: &mut ActiveOp) {
        let (device_error, fault) = slot.op.ladder();
        if let Some(location) = device_error {
            let now_ms = self.clock_of(slot.actor).local_ns(self.now) / 1_000_000;
            if let Some(entry) = self.core.charge_device_error(location, now_ms)
                && self.cfg.protocol == Protocol::Fixed
            {
                let fx = self.meta.append_detached(&[entry]);
                self.meta_effects(fx);
            }
        }
        if let Some(Fault { location, attempts }) = fault
            && !slot.fault_checked
        {
            slot.fault_checked = true;
            self.check_fpre004(slot, location, attempts);
        }
    }

    /// Adds what one ladder session did: the same counts the `Store` keeps.
    fn add_tally(&mut self, tally: Tally) {
        self.report.quarantines += u64::from(tally.quarantines);
        self.report.remaps += u64::from(tally.remaps);
    }

    /// An operation finished: account for it and free the slot.
    fn finish(&mut self, idx: usize, slot: ActiveOp, result: crate::Result<Out>) {
        let prefetch = self.actors.get(slot.actor).map(|a| a.kind) == Some(ActorKind::Prefetcher);
        // An acknowledgment needs its record durable, and a certain failure
        // needs none of it durable: the answer is what the engine relies on.
        if matches!(slot.op, Op::Write(..) | Op::Batch(..) | Op::Delete(..))
            && self.cfg.protocol == Protocol::Fixed
        {
            let ok = result.is_ok();
            let certain =
                (result.as_ref().err()).is_some_and(|e| !matches!(e, Error::OutcomeUnknown { .. }));
            if let Some(wrong) = self.model.wrong_answer(idx, ok, certain) {
                let extent = slot.extent;
                self.violation(format!("{extent}: a write {wrong}"));
            }
        }
        // A write or batch that answered a failure other than "outcome
        // unknown" certainly did not happen: no recovery may show its records.
        match (&slot.op, &result) {
            (Op::Write(..) | Op::Batch(..) | Op::Delete(..), Err(e))
                if !matches!(e, Error::OutcomeUnknown { .. }) =>
            {
                self.model.certainly_failed(idx);
            }
            _ => self.model.answered(idx),
        }
        match (&slot.op, result) {
            (Op::Write(_, bytes), Ok(Out::Written(generation))) => {
                self.history.commit(slot.extent, generation, self.now);
                self.fabric
                    .add_replica(slot.extent, generation, bytes.clone());
                self.report.writes_ok += 1;
            }
            (Op::Batch(_, items), Ok(Out::Batch(committed))) => {
                for &(extent, generation) in &committed {
                    match items.iter().find(|(id, _)| *id == extent) {
                        Some((_, Some(bytes))) => {
                            self.history.commit(extent, generation, self.now);
                            self.fabric.add_replica(extent, generation, bytes.clone());
                            self.report.writes_ok += 1;
                        }
                        Some((_, None)) => {
                            self.history.delete(extent, generation, self.now);
                            self.report.deletes_ok += 1;
                        }
                        None => self.violation(format!(
                            "{extent}: a batch committed an extent it did not hold"
                        )),
                    }
                }
            }
            (Op::Legacy(legacy::Op::Write(_)), Ok(Out::Written(_))) => {
                // Legacy commits were absorbed into the history as they became visible.
                self.report.writes_ok += 1;
            }
            (Op::Session(m), result) => {
                let tally = m.tally();
                self.add_tally(tally);
                self.on_read_done(&slot, result, false);
            }
            (Op::Read(_) | Op::Legacy(legacy::Op::Read(_)), result) => {
                self.on_read_done(&slot, result, prefetch);
            }
            (Op::Compact(_), Ok(Out::Compacted(CompactOutcome::Committed(_)))) => {
                self.report.compactions += 1;
            }
            (Op::Delete(_), Ok(Out::Deleted(generation))) => {
                self.history.delete(slot.extent, generation, self.now);
                self.report.deletes_ok += 1;
            }
            (Op::Verify(m), _) => {
                let tally = m.tally();
                self.add_tally(tally);
            }
            (
                Op::Legacy(legacy::Op::Verify(_)),
                Err(Error::RetryLimitExceeded {
                    location, attempts, ..
                }),
            ) => {
                self.check_fpre004(&slot, location, attempts);
                self.report.quarantines += 1;
            }
            _ => {}
        }
        self.free_slots.push(idx);
        if slot.actor != usize::MAX {
            let delay = self.think(slot.actor);
            self.schedule(self.now.saturating_add(delay), Event::Actor(slot.actor));
        }
    }
}
