//! Power cuts and recovery: when the power fails ([`Crashes`]), and how the
//! emulated store opens again ([`recover`]): by the open sequence
//! [`Store::open`](crate::Store::open) runs (`journal::open`: the same recovery,
//! the same refusals, the same rebuild of table and allocator, the same plans, the
//! same journal writer afterwards), with the power able to fail inside the
//! creation or reopen plan too. The checks of what comes back are in
//! [`model`](super::model).

use super::disk::SimDir;
use super::emulated_journal::EmulatedJournal;
use super::fabric::Fabric;
use super::report::Report;
use crate::journal::open::{Geometry, open};
use crate::journal::plan::{FsOp, PlanMutants};
use crate::journal::{Image, METADATA_DEVICE, Records, Recovered, WholeFiles, recover_dir};
use crate::space::Allocator;
use crate::table::ExtentTable;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// When the next power cut comes.
#[derive(Debug)]
pub(crate) struct Crashes {
    left: u32,
    countdown: u64,
    spacing: u64,
    /// Whether `tick` may crash (off while the store is being populated).
    pub(crate) armed: bool,
    pub(crate) rng: ChaCha8Rng,
}

impl Crashes {
    /// `crashes` power cuts, one on average every `spacing` units of steps.
    pub(crate) fn new(crashes: u32, spacing: u64, rng: ChaCha8Rng) -> Self {
        let mut c = Crashes {
            left: crashes,
            countdown: 0,
            spacing: spacing.max(1),
            armed: false,
            rng,
        };
        c.rearm();
        c
    }

    fn rearm(&mut self) {
        self.countdown = self.rng.random_range(1..=2 * self.spacing);
    }

    /// A step worth `units` is about to run (a metadata step weighs more than any
    /// other, so that power cuts often land inside group commits and rotations):
    /// whether the power fails first.
    pub(crate) fn tick(&mut self, units: u64) -> bool {
        if !self.armed || self.left == 0 {
            return false;
        }
        self.countdown = self.countdown.saturating_sub(units);
        if self.countdown > 0 {
            return false;
        }
        self.left -= 1;
        self.rearm();
        true
    }

    /// Before a plan of `ops` steps run by recovery (or creation): the step the
    /// power fails before, if it does.
    fn during(&mut self, ops: usize) -> Option<usize> {
        if self.left == 0 || ops == 0 || !self.rng.random_bool(0.3) {
            return None;
        }
        self.left -= 1;
        Some(self.rng.random_range(0..ops))
    }
}

/// What a recovery rebuilt.
pub(crate) struct Rebuilt {
    pub(crate) table: ExtentTable,
    pub(crate) tags: crate::table::Tags,
    pub(crate) allocator: Allocator,
    pub(crate) image: Image,
}

/// How a creation or reopen plan ended.
#[derive(Debug)]
enum PlanEnd {
    Done,
    /// The power failed before a step.
    Cut,
    /// An injected I/O error failed the step at this index: the open fails
    /// (unless a full disk can release the reserve, and the plan resumes
    /// there), with what the steps before it did still in the page cache.
    Failed(usize, crate::Error),
}

/// Runs `ops` on the directory: the power fails before step `cut`, if any; a
/// step may meet an injected I/O error (as the journal's do) while `may_fail`.
/// `Err` if a step does not fit the directory it runs on (a violation).
fn run_plan(
    meta: &mut EmulatedJournal,
    fabric: &mut Fabric,
    devices: u16,
    ops: &[FsOp],
    cut: Option<usize>,
    may_fail: bool,
) -> Result<PlanEnd, String> {
    for (i, op) in ops.iter().enumerate() {
        if cut == Some(i) {
            return Ok(PlanEnd::Cut);
        }
        if may_fail && let Some(err) = meta.injected_error(op) {
            return Ok(PlanEnd::Failed(i, err));
        }
        if may_fail
            && let FsOp::DeviceWrite { location, .. } = op
            && let Some(err) = meta.device_write_error(location.device)
        {
            return Ok(PlanEnd::Failed(i, err));
        }
        match op {
            FsOp::DeviceWrite { location, bytes } => fabric.rewrite(*location, bytes.clone()),
            // One device after another, as the store's open syncs them, each
            // as the fabric syncs: its writeback may fail (pages dropped or
            // left clean) and a failure no sync heard of yet (a killed
            // process's) is reported here, to the open, as a new file's
            // first `fsync` reports it.
            FsOp::SyncDevices if may_fail => {
                for device in 0..devices {
                    let ticket = fabric.sync_ticket();
                    let _slower = fabric.begin_sync(device);
                    if let Err(err) = fabric.end_sync(device, ticket) {
                        return Ok(PlanEnd::Failed(i, err));
                    }
                }
            }
            FsOp::SyncDevices => {
                for device in 0..devices {
                    fabric.flush(device);
                }
            }
            _ => (meta.dir)
                .apply(op)
                .map_err(|e| format!("a recovery plan failed at {op:?}: {e}"))?,
        }
    }
    Ok(PlanEnd::Done)
}

/// Failed plans one [`recover`] may meet before its plans run without
/// injected errors: bounds its loop.
const PLAN_FAILURES: u32 = 2;

/// A power cut inside a recovery: the metadata and the devices lose what was not
/// synced.
fn cut_power(meta: &mut EmulatedJournal, fabric: &mut Fabric, crashes: &mut Crashes) {
    meta.dir.crash(&mut crashes.rng);
    fabric.crash(&mut crashes.rng);
}

/// The length of the metadata reserve file, if there is one.
pub(crate) fn reserve_len(dir: &SimDir) -> Option<u64> {
    file_len(dir, crate::journal::files::RESERVE)
}

/// The length of metadata file `name`, if there is one.
pub(crate) fn file_len(dir: &SimDir, name: &str) -> Option<u64> {
    dir.read(name).map(|b| b.len() as u64)
}

/// Bytes of a checkpoint the emulator's recoveries read at a time: about two
/// frames, so that frames straddle the reads as they do in a store's large
/// checkpoints (the store reads [`crate::journal::open::READ_CHUNK`]).
pub(crate) const READ_CHUNK: usize = 600;

/// A second recovery of the directory, by the correct rules (the mutant that
/// trusts overlapped writes' records aside: its two recoveries agree).
fn recover_once(
    dir: &SimDir,
    fabric: &Fabric,
    trust_unsynced: bool,
) -> crate::Result<Option<Recovered>> {
    // Into a map: the open's table and this map must give the same image.
    let mut recovered = recover_dir(
        &dir.list(),
        &mut WholeFiles::new(|name: &str| Ok(dir.read(name))),
        Records::default(),
        READ_CHUNK,
        PlanMutants::default(),
    )?;
    if let Some(r) = &mut recovered {
        if trust_unsynced {
            r.image.unsynced.clear();
        }
        r.settle_unsynced(|l| Ok(read_device(fabric, l)))?;
    }
    Ok(recovered)
}

/// What a device file shows at `l` to an opening store: the last write, durable
/// or (after a process kill) in the page cache, faults applied; `None` where
/// nothing was written.
pub(crate) fn read_device(fabric: &Fabric, l: crate::record::Location) -> Option<Vec<u8>> {
    fabric.media(l).ok().map(|b| b.to_vec())
}

/// Opens the emulated store as `Store::open` does (see the module docs): the
/// power may fail inside the creation or reopen plan, and then it all starts
/// again. The device "files"' lengths, for the open's checks, are the fabric's.
/// `durable` says whether the directory holds only durable state (after a power
/// cut; not after a process kill, whose unsynced bytes recovery reads too). `Err`
/// is a violation.
pub(crate) fn recover(
    meta: &mut EmulatedJournal,
    fabric: &mut Fabric,
    crashes: &mut Crashes,
    geometry: &Geometry,
    report: &mut Report,
    mut durable: bool,
) -> Result<Rebuilt, String> {
    // What a recovery of durable state read, when a power cut stopped its plan:
    // the next recovery must read the same.
    let mut before: Option<Image> = None;
    let mut failures_left = PLAN_FAILURES;
    // Bounded: every pass but the last consumes one crash of a finite budget,
    // or one of `PLAN_FAILURES`.
    loop {
        let names = meta.dir.list();
        let dir = &meta.dir;
        let device_lens = fabric.device_lens(geometry.devices);
        let shown = &*fabric;
        let mut opening = match open(
            &names,
            &mut WholeFiles::new(|name: &str| Ok(dir.read(name))),
            crate::journal::open::Devices {
                lens: &device_lens,
                read: &mut |l| Ok(read_device(shown, l)),
            },
            geometry,
            meta.max_bytes(),
            crate::journal::open::SideFiles {
                reserve_bytes: meta.reserve_bytes(),
                reserve_found: reserve_len(dir),
                recycled: file_len(dir, crate::journal::files::RECYCLED),
                recycle: meta.recycle(),
            },
            meta.plan_mutants(),
        ) {
            Ok(opening) => opening,
            Err(err) => {
                let files: Vec<String> = (names.iter())
                    .map(|n| format!("{n} ({} B)", dir.read(n).map_or(0, |b| b.len())))
                    .collect();
                return Err(format!(
                    "recovery failed: {err}; files: {}",
                    files.join(", ")
                ));
            }
        };
        if opening.created {
            let cut = crashes.during(opening.create.len());
            let may_fail = failures_left > 0;
            match run_plan(
                meta,
                fabric,
                geometry.devices,
                &opening.create,
                cut,
                may_fail,
            )? {
                PlanEnd::Done => {}
                PlanEnd::Cut => {
                    report.crashes += 1;
                    report.crashes_in_recovery += 1;
                    cut_power(meta, fabric, crashes);
                    durable = true;
                    continue;
                }
                PlanEnd::Failed(..) => {
                    failures_left -= 1;
                    report.recovery_plan_failures += 1;
                    durable = false;
                    continue;
                }
            }
        }
        report.recoveries += 1;
        let recovered = opening.recovered;
        report.torn_tails += u64::from(recovered.cut.is_some());
        report.inline_redone += recovered.redo.len() as u64;
        report.unsynced_dropped += recovered.unsynced_dropped.len() as u64;
        if let Some(b) = &before
            && *b != recovered.image
        {
            return Err("recovering again after a crash during recovery gave another state".into());
        }
        let cut = crashes.during(opening.reopen.len());
        let may_fail = failures_left > 0;
        let end = run_plan(
            meta,
            fabric,
            geometry.devices,
            &opening.reopen,
            cut,
            may_fail,
        )?;
        // As `Store::open`: a full disk releases the reserve, and the plan
        // resumes at the step that failed.
        let end = match end {
            PlanEnd::Failed(at, err) => {
                match (opening.writer).release_reserve_for(&err, &opening.reopen[at..]) {
                    Some(retry) => {
                        report.reopen_reserve_releases += 1;
                        report.reopen_redo_releases += u64::from(matches!(
                            err,
                            crate::Error::DiskFull { device, .. } if device != METADATA_DEVICE
                        ));
                        // Bounded: the failure consumed one of `PLAN_FAILURES`.
                        failures_left -= 1;
                        let may_fail = failures_left > 0;
                        let cut = crashes.during(retry.len());
                        let end = run_plan(meta, fabric, geometry.devices, &retry, cut, may_fail);
                        opening.writer.release_ended(&retry);
                        end?
                    }
                    None => PlanEnd::Failed(at, err),
                }
            }
            end => end,
        };
        match end {
            PlanEnd::Done => {}
            PlanEnd::Cut => {
                report.crashes += 1;
                report.crashes_in_recovery += 1;
                cut_power(meta, fabric, crashes);
                // A recovery after a process kill read unsynced bytes too, which
                // this power cut may take: only a recovery of durable state must
                // repeat.
                before = durable.then_some(recovered.image);
                durable = true;
                continue;
            }
            PlanEnd::Failed(..) => {
                // The next open reads what the plan left in the page cache
                // (a failed sync may have dropped some of it): not durable
                // state, so it need not repeat this recovery.
                failures_left -= 1;
                report.recovery_plan_failures += 1;
                before = None;
                durable = false;
                continue;
            }
        }
        // Recovering twice gives the same state: the reopen plan changed nothing
        // that recovery reads.
        match recover_once(&meta.dir, fabric, meta.plan_mutants().trust_unsynced) {
            Ok(Some(again))
                if again.image == recovered.image
                    && again.next_seq == opening.writer.next_seq() => {}
            Ok(_) => return Err("recovering twice gave two different states".into()),
            Err(err) => return Err(format!("recovery after the reopen plan failed: {err}")),
        }
        meta.reset(opening.writer);
        // Best effort, as `Store::open`: on a full disk writes are refused.
        meta.restore_reserve();
        return Ok(Rebuilt {
            table: opening.table,
            tags: opening.tags,
            allocator: opening.allocator,
            image: recovered.image,
        });
    }
}
