//! Device syncs through the store's sync books, and the write-back they
//! drive (`Core::after_device_sync`).

use super::{Event, World};
use crate::backend::SyncEnd;
use crate::error::Error;
use crate::sim::config::Protocol;

impl World {
    /// A sync of `device` through the store's sync book (`backend::device_files`): a failed
    /// sync fails every later one until reopen, whatever the fabric answers then.
    pub(super) fn sync(&mut self, device: u16) -> crate::Result<()> {
        // The legacy protocol predates the store: its syncs are the fabric's.
        let fixed = self.cfg.protocol == Protocol::Fixed;
        let Some(book) = self
            .sync_books
            .get_mut(usize::from(device))
            .filter(|_| fixed)
        else {
            return self.fabric.sync(device);
        };
        let was_failed = book.failed();
        let mark = self.core.write_back.mark();
        let result = book.begin().and_then(|ticket| {
            let synced = self
                .fabric
                .sync(device)
                .map_err(|e| std::io::Error::other(e.to_string()));
            match book.end(device, ticket, synced) {
                SyncEnd::Verdict(verdict) => verdict,
                // The emulator's syncs never overlap.
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
        let dir = &self.meta.dir;
        let mutant = self.cfg.rewrite_without_read_back;
        // The store's read-back, over the emulated directory.
        let mut read_back = |wanted: &_| {
            if mutant {
                return Default::default();
            }
            let mut files = crate::journal::WholeFiles::new(|name: &str| Ok(dir.read(name)));
            crate::journal::inline_data(&dir.list(), &mut files, wanted)
        };
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
}
