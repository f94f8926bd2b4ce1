//! Device syncs through the store's sync books, the write-back they drive
//! (`Core::after_device_sync`), and a verifier's rewrite of an inline write.

use super::{Event, World};
use crate::backend::SyncEnd;
use crate::bytes::Bytes;
use crate::error::Error;
use crate::protocol::{IoResult, Proposal};
use crate::record::Location;
use crate::sim::config::Protocol;
use crate::sim::disk::SimDir;
use crate::sim::emulated_journal::Lane;
use std::collections::{BTreeSet, HashMap};

/// A device sync that started: what its end needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct SyncStart {
    /// The write-back's mark, taken before it started, as `Store` takes it.
    mark: u64,
    /// It reached the fabric (the store's book did not refuse it), which then
    /// answers it when it ends.
    began: bool,
    /// The fabric's writes it covers (`Fabric::sync_ticket`).
    ticket: u64,
    /// How much longer than a good sync it takes (`Fabric::begin_sync`).
    pub(super) slower: u64,
}

impl World {
    /// A sync of `device` starts.
    pub(super) fn begin_device_sync(&mut self, device: u16) -> SyncStart {
        let mark = self.core.device_sync_mark();
        // A sync the store's book will refuse (its device failed) never
        // reaches the kernel: nothing starts a writeback.
        let fixed = self.cfg.protocol == Protocol::Fixed;
        let refused =
            (self.sync_books.get(usize::from(device))).is_some_and(|b| fixed && b.failed());
        let slower = if refused {
            0
        } else {
            self.fabric.begin_sync(device)
        };
        SyncStart {
            mark,
            began: !refused,
            ticket: self.fabric.sync_ticket(),
            slower,
        }
    }

    /// The sync of `device` that [`begin_device_sync`](Self::begin_device_sync)
    /// started ends, through the store's sync book (`backend::device_files`): a
    /// failed sync fails every later one until reopen, whatever the fabric
    /// answers then.
    pub(super) fn end_device_sync(&mut self, device: u16, start: SyncStart) -> crate::Result<()> {
        // Every sync the fabric began ends there, whatever the book says now:
        // the kernel reports a failed writeback to the first `fsync` that checks.
        let synced = match start.began {
            true => self.fabric.end_sync(device, start.ticket),
            false => Ok(()),
        };
        // The legacy protocol predates the store: its syncs are the fabric's.
        let fixed = self.cfg.protocol == Protocol::Fixed;
        let Some(book) = self
            .sync_books
            .get_mut(usize::from(device))
            .filter(|_| fixed)
        else {
            return synced;
        };
        let was_failed = book.failed();
        let result = book.begin().and_then(|ticket| {
            let synced = synced.map_err(|e| std::io::Error::other(e.to_string()));
            match book.end(device, ticket, synced) {
                SyncEnd::Verdict(verdict) => verdict,
                // The book hears of each sync at its end: the fabric reports a
                // failed writeback to the first sync that ends after it, as the
                // kernel reports it to the first `fsync` that checks.
                SyncEnd::Wait(_) => Err(Error::Internal {
                    what: "an emulated sync overlapped another",
                }),
            }
        });
        let failed = result.is_err() && book.failed();
        if failed && !was_failed {
            // The device file stays failed until a reopen: the engine's answer
            // (as to a failed journal) is to reopen the store.
            self.report.device_sync_failures += 1;
            self.schedule(self.now + 1_000_000, Event::Reopen);
        }
        let fabric = &mut self.fabric;
        let mut read_back = journal_read_back(&self.meta.dir, self.cfg.rewrite_without_read_back);
        let (_, journaled) = self.core.after_device_sync(
            device,
            start.mark,
            result.is_ok(),
            failed,
            |location, bytes| fabric.rewrite(location, bytes.clone()),
            &mut read_back,
        );
        self.report.inline_read_back += journaled;
        result
    }

    /// A metadata lane's [`FsOp::SyncDevices`](crate::journal::FsOp) step
    /// syncs `devices` one after another, as `Store` does: the first starts
    /// now, each after the one before it ended, and the lane hears the
    /// outcome once one fails or the last ended. Reads meanwhile may find
    /// pages a failed writeback dropped.
    pub(super) fn sync_devices(&mut self, lane: Lane, mut devices: Vec<u16>) {
        if devices.is_empty() {
            let core = &self.core;
            let fx = self.meta.devices_synced(lane, Ok(()), || core.image());
            return self.meta_effects(fx);
        }
        let device = devices.remove(0);
        let start = self.begin_device_sync(device);
        let took = (self.fabric.service_ns(device) + self.fabric.ack_delay_ns())
            .saturating_add(start.slower);
        let at = self.now.saturating_add(took);
        self.schedule(at, Event::DeviceSynced(lane, device, start, devices));
    }

    /// One sync of a lane's step ([`sync_devices`](Self::sync_devices)) ended.
    pub(super) fn device_synced(
        &mut self,
        lane: Lane,
        device: u16,
        start: SyncStart,
        rest: Vec<u16>,
    ) {
        if let Err(err) = self.end_device_sync(device, start) {
            let core = &self.core;
            let fx = self.meta.devices_synced(lane, Err(err), || core.image());
            return self.meta_effects(fx);
        }
        self.sync_devices(lane, rest);
    }

    /// A verifier found the inline write held at `location` wrong: write it
    /// again, as `Store` does (`WriteBack::rewrite_at`).
    pub(super) fn rewrite_held(&mut self, location: Location) -> IoResult {
        // The mutant: asked, and nothing written.
        if self.cfg.read_without_rewrite {
            return IoResult::Done(Ok(()));
        }
        let fabric = &mut self.fabric;
        let mut read_back = journal_read_back(&self.meta.dir, self.cfg.rewrite_without_read_back);
        let (own, journaled) = self.core.write_back.rewrite_at(
            location,
            |location, bytes| fabric.rewrite(location, bytes.clone()),
            &mut read_back,
        );
        self.report.inline_read_back += journaled;
        self.report.read_rewrites += own + journaled;
        IoResult::Done(Ok(()))
    }
}

/// The store's read-back of inline writes' journal records, over the emulated
/// directory; nothing under the `rewrite_without_read_back` mutant.
fn journal_read_back(
    dir: &SimDir,
    mutant: bool,
) -> impl FnMut(&BTreeSet<Proposal>) -> HashMap<Proposal, (Location, Bytes)> + '_ {
    move |wanted| {
        if mutant {
            return Default::default();
        }
        let mut files = crate::journal::WholeFiles::new(|name: &str| Ok(dir.read(name)));
        crate::journal::inline_data(&dir.list(), &mut files, wanted)
    }
}
