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
use std::collections::{BTreeSet, HashMap};

impl World {
    /// A sync of `device` starts: the write-back's mark (the inline writes it
    /// covers, taken before it starts, as `Store` takes it), and how much
    /// longer than a good sync it takes (`Fabric::begin_sync`).
    pub(super) fn begin_device_sync(&mut self, device: u16) -> (u64, u64) {
        let mark = self.core.write_back.mark();
        // A sync the store's book will refuse (its device failed) never
        // reaches the kernel: nothing starts a writeback.
        let fixed = self.cfg.protocol == Protocol::Fixed;
        let refused =
            (self.sync_books.get(usize::from(device))).is_some_and(|b| fixed && b.failed());
        match refused {
            true => (mark, 0),
            false => (mark, self.fabric.begin_sync(device)),
        }
    }

    /// The sync of `device` that [`begin_device_sync`](Self::begin_device_sync)
    /// started (returning `mark`) ends, through the store's sync book
    /// (`backend::device_files`): a failed sync fails every later one until
    /// reopen, whatever the fabric answers then.
    pub(super) fn end_device_sync(&mut self, device: u16, mark: u64) -> crate::Result<()> {
        // The legacy protocol predates the store: its syncs are the fabric's.
        let fixed = self.cfg.protocol == Protocol::Fixed;
        let Some(book) = self
            .sync_books
            .get_mut(usize::from(device))
            .filter(|_| fixed)
        else {
            return self.fabric.end_sync(device);
        };
        let was_failed = book.failed();
        let result = book.begin().and_then(|ticket| {
            let synced =
                (self.fabric.end_sync(device)).map_err(|e| std::io::Error::other(e.to_string()));
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
            mark,
            result.is_ok(),
            failed,
            |location, bytes| fabric.rewrite(location, bytes.clone()),
            &mut read_back,
        );
        self.report.inline_read_back += journaled;
        result
    }

    /// The syncs a metadata lane's [`FsOp::SyncDevices`](crate::journal::FsOp)
    /// step started end (each `(device, mark)`, in order, up to the first that
    /// fails, as `Store` runs them), and the lane hears the outcome.
    pub(super) fn devices_synced(
        &mut self,
        lane: crate::sim::emulated_journal::Lane,
        started: Vec<(u16, u64)>,
    ) {
        let result = (started.into_iter()).try_for_each(|(d, mark)| self.end_device_sync(d, mark));
        let core = &self.core;
        let fx = self.meta.devices_synced(lane, result, || core.image());
        self.meta_effects(fx);
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
        self.report.verifier_rewrites += own + journaled;
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
