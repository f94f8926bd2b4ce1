//! Crashes and reopens: a process kill or a power cut drops every operation in
//! flight; the store then recovers (`sim::crash::recover`), the checker compares
//! the recovered state with the model, and the workload resumes.

use super::{World, new_books};
use crate::journal::{self, plan::FsOp};
use crate::protocol::Core;
use crate::record::ExtentId;
use crate::sim::config::Protocol;
use crate::sim::{crash, model};
use crate::space::{Health, Reclaimer};
use rand::Rng;

impl World {
    /// Loses a metadata file and checks that the store's open refuses the
    /// directory with a typed error (FPRE023) instead of opening it as empty;
    /// then puts the directory back as it was (a restore from a backup). The
    /// file: the journal the current checkpoint starts (removed, emptied or cut
    /// to its header), the checkpoint itself, or the pointer (`CURRENT`; unless
    /// the directory shows nothing a store ever held, which an open may take
    /// for a creation that stopped).
    fn lose_metadata(&mut self, device_lens: &[Option<u64>]) {
        let Some(number) = (self.meta.dir.read(journal::files::CURRENT))
            .and_then(|p| journal::decode_pointer(&p).ok())
        else {
            return;
        };
        let file = journal::files::journal(number);
        if self.meta.dir.read(&file).is_none() {
            return;
        }
        let saved = self.meta.dir.clone();
        // A journal of only its header is whole when cut to its header.
        let holds_records = saved
            .read(&file)
            .is_some_and(|b| b.len() > journal::HEADER_LEN);
        // The directory shows a store held data: a rotation happened, or a
        // device file holds bytes.
        let held = number > 1 || device_lens.iter().any(|l| l.is_some_and(|l| l > 0));
        let (file, damage, how) = match self.crashes.rng.random_range(0..5) {
            3 if held => {
                let pointer = journal::files::CURRENT.to_string();
                (pointer.clone(), FsOp::Remove { file: pointer }, "removed")
            }
            4 => {
                let checkpoint = journal::files::checkpoint(number);
                (
                    checkpoint.clone(),
                    FsOp::Remove { file: checkpoint },
                    "removed",
                )
            }
            n => {
                let (damage, how) = self.lose_journal(n, &file, holds_records);
                (file, damage, how)
            }
        };
        if let Err(e) = self.meta.dir.apply(&damage) {
            return self.violation(format!("losing {file} failed: {e}"));
        }
        let names = self.meta.dir.list();
        let dir = &self.meta.dir;
        let fabric = &self.fabric;
        let opened = journal::open::open(
            &names,
            &mut journal::WholeFiles::new(|name: &str| Ok(dir.read(name))),
            journal::open::Devices {
                lens: device_lens,
                read: &mut |l| Ok(crash::read_device(fabric, l)),
            },
            &self.geometry,
            self.meta.max_bytes(),
            journal::open::SideFiles {
                reserve_bytes: self.meta.reserve_bytes(),
                reserve_found: crash::reserve_len(&self.meta.dir),
                recycled: crash::file_len(&self.meta.dir, journal::files::RECYCLED),
                recycle: self.meta.recycle(),
            },
            self.meta.plan_mutants(),
        );
        match opened {
            Err(err) if err.code() == "FPRE023" => self.report.lost_metadata_refused += 1,
            Err(err) => self.violation(format!(
                "{file} {how}: the open failed with {err}, not FPRE023"
            )),
            Ok(_) => self.violation(format!(
                "{file} {how}: the open accepted the directory (as an empty store)"
            )),
        }
        self.meta.dir = saved;
    }

    /// The damage [`lose_metadata`](Self::lose_metadata) does to journal
    /// `file` for its draw `n`.
    fn lose_journal(&self, n: u32, file: &str, holds_records: bool) -> (FsOp, &'static str) {
        let file = file.to_string();
        match n {
            1 => (FsOp::Truncate { file, len: 0 }, "emptied"),
            2 if holds_records => (
                FsOp::Truncate {
                    file,
                    len: journal::HEADER_LEN as u64,
                },
                "cut to its header",
            ),
            _ => (FsOp::Remove { file }, "removed"),
        }
    }

    /// A crash: every operation in flight is dropped as it stands (no `abandon`:
    /// nothing runs after a crash). One crash in three kills the process only: the
    /// OS keeps every write, synced or not (a later power cut may still lose the
    /// unsynced ones). The others cut the power: unsynced data and metadata are
    /// lost or torn. Then the store recovers, the checker compares the recovered
    /// state with the model, and the workload resumes with fresh actors.
    pub(super) fn crash_now(&mut self) {
        self.report.crashes += 1;
        self.report.crashes_in_rotation += u64::from(self.meta.rotating());
        let kill = self.crashes.rng.random_range(0..3) == 0;
        let what = match (kill, self.meta.rotating()) {
            (true, _) => "process kill",
            (false, true) => "power cut in rotation",
            (false, false) => "power cut",
        };
        self.trace
            .record(self.now, usize::MAX, "crash", ExtentId(0), what);
        if kill {
            self.report.process_kills += 1;
        } else {
            self.fabric.crash(&mut self.crashes.rng);
            self.meta.dir.crash(&mut self.crashes.rng);
        }
        self.reopen(!kill);
    }

    /// Closes the store (every operation in flight dropped) and opens it again:
    /// recovery, the checker, fresh actors.
    pub(super) fn reopen(&mut self, durable: bool) {
        self.queue.clear();
        self.slots.clear();
        self.free_slots.clear();
        self.waiters.clear();
        self.carried.clear();
        // Every claim was dropped with its slot: places start afresh.
        self.claim_queue = super::claims::new_queue();
        // The device files are opened afresh: no failure is remembered.
        self.sync_books = new_books(&self.cfg);
        let device_lens = self.fabric.device_lens(self.cfg.devices);
        if self.cfg.lose_metadata
            && self.cfg.protocol == Protocol::Fixed
            && self.crashes.rng.random_range(0..4) == 0
        {
            self.lose_metadata(&device_lens);
        }
        let rebuilt = match crash::recover(
            &mut self.meta,
            &mut self.fabric,
            &mut self.crashes,
            &self.geometry,
            &mut self.report,
            durable,
        ) {
            Ok(r) => r,
            Err(v) => {
                self.violation(v);
                self.dead = true;
                return;
            }
        };
        for v in model::check(&self.model, &rebuilt.image, &rebuilt.table, &self.fabric) {
            self.violation(v);
        }
        self.model.reset(&rebuilt.image);
        for e in 0..self.cfg.workload.extents {
            let id = ExtentId(u64::from(e));
            let s = rebuilt.table.snapshot(id).ok();
            let recovered = s.map_or(0, |s| s.generation());
            let served = std::mem::take(&mut self.served[e as usize]);
            if recovered < served && self.cfg.protocol == Protocol::Fixed {
                self.violation(format!(
                    "{id}: a read served generation {served}, which the crash took back (recovered {recovered})"
                ));
            }
            let vacant = s.is_none_or(|s| s.state() == crate::record::State::Vacant);
            self.history.rewind(id, recovered, vacant, self.now);
            self.last_version[e as usize] = s.map_or(0, |s| s.version());
        }
        self.core = Core {
            table: rebuilt.table,
            cache: super::claims::new_cache(&self.cfg),
            allocator: rebuilt.allocator,
            reclaimer: Reclaimer::new(),
            health: Health::new(
                self.cfg.devices,
                self.cfg.policy.device_error_threshold,
                self.cfg.policy.device_error_window_secs * 1000,
            ),
            mutants: self.core.mutants,
            events: Default::default(),
            proposals: Default::default(),
            space_low: Default::default(),
            inline_write_max: self.cfg.inline_write_max,
            write_back: Default::default(),
            tags: rebuilt.tags,
            overlap_data_sync: self.cfg.overlap_data_sync,
            overlaps: Default::default(),
            rescued: Default::default(),
            episodes: Default::default(),
            keep_on_listener_panic: false,
            kept_for_listeners: Default::default(),
        };
        self.core.set_space_low(self.meta.space_low());
        self.start_actors();
    }
}
