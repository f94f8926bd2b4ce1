//! Opening a store's metadata, without I/O: recover the directory (or plan its
//! creation), run every check that can refuse the open, rebuild the table and the
//! allocator, and plan the reopen. [`Store::open`](crate::Store::open) and the
//! emulator's recovery both run [`open`], so the crash sweep checks the open that
//! engines run; a driver only reads files and runs the two plans it returns.
//!
//! Every refusal comes before the first plan step, so a failed open changes no
//! file (invariant 11).

use super::image::{other_devices, shrunk_config};
use super::plan::{self, FsOp, PlanMutants};
use super::writer::Writer;
use super::{Bounds, Image, MetaFiles, Records, Recovered, files, recover_dir};
use crate::error::{Error, Result};
use crate::space::Allocator;
use crate::table::{ExtentTable, Tags};

/// What an open decided.
#[derive(Debug)]
pub(crate) struct Opening {
    /// Records recovered.
    pub(crate) records: u64,
    /// What recovery found (a new store's: empty). Its records are
    /// [`table`](Self::table)'s, copied into a map only if the open was asked
    /// to keep them.
    pub(crate) recovered: Recovered,
    /// Whether the directory held no store: [`create`](Self::create) makes one.
    pub(crate) created: bool,
    /// The new store's files (empty unless [`created`](Self::created)); run first.
    pub(crate) create: Vec<FsOp>,
    /// Makes what recovery read durable and the newest journal appendable; run
    /// second, before anything is appended.
    pub(crate) reopen: Vec<FsOp>,
    /// The rebuilt table.
    pub(crate) table: ExtentTable,
    /// The records' tags.
    pub(crate) tags: Tags,
    /// The rebuilt free space.
    pub(crate) allocator: Allocator,
    /// The journal writer to append with once both plans ran; its reserve is not
    /// held yet (run [`Writer::restore_reserve`]'s plan).
    pub(crate) writer: Writer,
}

/// What an open sees of the device files.
pub(crate) struct Devices<'a> {
    /// Each file's length (`None`: missing).
    pub(crate) lens: &'a [Option<u64>],
    /// The bytes at a location as the file shows them (`None` past its end):
    /// recovery reads the data of records journaled while their data's sync ran
    /// ([`Recovered::settle_unsynced`]).
    pub(crate) read: &'a mut dyn FnMut(crate::record::Location) -> Result<Option<Vec<u8>>>,
}

/// The side files beside the metadata an open found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SideFiles {
    /// Bytes of the metadata reserve configured, and the length of its file.
    pub(crate) reserve_bytes: u64,
    pub(crate) reserve_found: Option<u64>,
    /// The length of the recycled journal ([`files::RECYCLED`]), if any, and
    /// whether journals are recycled.
    pub(crate) recycled: Option<u64>,
    pub(crate) recycle: bool,
}

/// Opens the metadata of the directory whose entries are `names` (read through
/// `files`) beside `devices`, with the `side` files found. Records go into the
/// table as they are read; a copy is kept in [`Opening::recovered`] if
/// [`MetaFiles::keep_records`] (the emulator checks it).
///
/// # Errors
///
/// Recovery's ([`recover_dir`]); [`Error::MissingCheckpoint`] (file `CURRENT`) for
/// device data without a pointer; [`Error::InvalidConfig`] for a device count
/// other than the store's; [`Error::CheckpointCorrupt`] for a record out of range
/// or two records overlapping; [`Error::DeviceFile`] for a device file missing or
/// shorter than a location a record references.
pub(crate) fn open(
    names: &[String],
    files: &mut (dyn MetaFiles + Send),
    devices: Devices<'_>,
    geometry: &Geometry,
    journal_max_bytes: u64,
    side: SideFiles,
    mutants: PlanMutants,
) -> Result<Opening> {
    let keep_image = files.keep_records();
    let device_lens = devices.lens;
    let records = Records::table(geometry.table, geometry.bounds());
    let recovered = recover_dir(names, files, records, geometry.read_chunk, mutants)?;
    let (mut recovered, create) = match recovered {
        Some(r) => (r, Vec::new()),
        None => {
            // Not a store this crate made, or one whose metadata was removed:
            // refused rather than created over the data.
            if device_lens.iter().any(|l| l.is_some_and(|l| l > 0)) {
                return Err(Error::MissingCheckpoint {
                    file: files::CURRENT.to_string(),
                });
            }
            (
                Recovered::fresh(geometry.devices),
                plan::create(geometry.devices, names),
            )
        }
    };
    if recovered.devices != geometry.devices {
        return Err(other_devices(recovered.devices, geometry.devices));
    }
    if mutants.trust_unsynced {
        recovered.image.unsynced.clear();
    }
    recovered.settle_unsynced(devices.read)?;
    // One pass over the records for both: the allocator's spans and the
    // device files' needed lengths (an open of millions reads each once).
    let mut needed = Needed::new(&recovered, device_lens.len());
    let referenced = (recovered.image.referenced()).inspect(|l| needed.note(*l));
    let allocator = restore_allocator(&recovered.image, referenced, geometry)?;
    needed.check(device_lens)?;
    let reopen = plan::reopen(&recovered, mutants);
    let records = recovered.image.records.len() as u64;
    // A new store's records are an empty table too.
    let (table, tags) = (recovered.image.records)
        .take_table(keep_image)
        .unwrap_or_else(|| (ExtentTable::new(geometry.table), Tags::default()));
    let writer = Writer::new(
        geometry.devices,
        journal_max_bytes,
        reopen.number,
        reopen.len,
        reopen.next_seq,
    )
    .with_mutants(mutants)
    .with_reserve(side.reserve_bytes, side.reserve_found)
    .with_recycled(side.recycle, side.recycled);
    Ok(Opening {
        records,
        created: !create.is_empty(),
        recovered,
        create,
        reopen: reopen.ops,
        table,
        tags,
        allocator,
        writer,
    })
}

/// The length each device file must have: the end of the last location a
/// record references. A file missing or shorter is refused: the data the
/// metadata points at is gone. Not for the locations of inline writes the
/// reopen writes back ([`Recovered::redo`]): their data is in the journal, and
/// the file's growth by their unsynced write may have been lost.
struct Needed {
    ends: Vec<u64>,
    /// Written back before use, or kept over data the verifier will report.
    redone: std::collections::HashSet<crate::record::Location>,
}

impl Needed {
    fn new(recovered: &Recovered, devices: usize) -> Self {
        Needed {
            ends: vec![0; devices],
            redone: (recovered.redo.iter().map(|(l, _)| *l))
                .chain(recovered.unverified.iter().copied())
                .collect(),
        }
    }

    /// A record references `l`.
    fn note(&mut self, l: crate::record::Location) {
        if let Some(n) = self.ends.get_mut(usize::from(l.device))
            && !self.redone.contains(&l)
        {
            *n = (*n).max(l.end());
        }
    }

    /// [`Error::DeviceFile`] for the first device file missing or shorter than
    /// a location a record references.
    fn check(&self, device_lens: &[Option<u64>]) -> Result<()> {
        for (device, (&need, &len)) in self.ends.iter().zip(device_lens).enumerate() {
            if need > 0 && len.is_none_or(|len| len < need) {
                return Err(Error::DeviceFile {
                    device: device as u16,
                    needed: need,
                    actual: len,
                });
            }
        }
        Ok(())
    }
}

/// What [`rebuild`] needs to know of a store's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) table: crate::table::TableConfig,
    pub(crate) devices: u16,
    pub(crate) capacity: u64,
    pub(crate) block_size: u32,
    /// Bytes of the checkpoint recovery reads at a time.
    pub(crate) read_chunk: usize,
}

impl Geometry {
    /// What every record must fit.
    pub(crate) fn bounds(&self) -> Bounds {
        Bounds {
            devices: self.devices,
            capacity: self.capacity,
        }
    }
}

/// Bytes of a checkpoint an open reads at a time: memory an open needs beside
/// the table, whatever the checkpoint's length.
pub(crate) const READ_CHUNK: usize = 1 << 20;

/// The table, tags and allocator of the records `entries` leave (an engine's
/// own records: [`Store::with_records`](crate::Store::with_records)), checked
/// as recovery checks them.
///
/// # Errors
///
/// [`Error::CheckpointCorrupt`] for a record out of range or two records
/// referencing overlapping locations; [`Error::InvalidConfig`] naming
/// `device_capacity_bytes` (or `devices`) for a record past the configured
/// devices.
pub(crate) fn rebuild(
    entries: impl IntoIterator<Item = super::Entry>,
    geometry: &Geometry,
) -> Result<(ExtentTable, Tags, Allocator)> {
    let mut image = Image {
        records: Records::table(geometry.table, geometry.bounds()),
        ..Image::default()
    };
    for entry in entries {
        image.apply(&entry);
    }
    image.records.refused()?;
    let allocator = restore_allocator(&image, image.referenced(), geometry)?;
    let (table, tags) = (image.records.take_table(false))
        .unwrap_or_else(|| (ExtentTable::new(geometry.table), Tags::default()));
    Ok((table, tags, allocator))
}

/// The allocator of `image`, whose records reference `referenced`.
fn restore_allocator(
    image: &Image,
    referenced: impl Iterator<Item = crate::record::Location>,
    geometry: &Geometry,
) -> Result<Allocator> {
    Allocator::restore(
        geometry.devices,
        geometry.capacity,
        geometry.block_size,
        referenced,
        image.bad.iter().copied(),
        image.degraded.iter().copied(),
    )
    .map_err(|err| match err {
        crate::space::RestoreError::Overlap { .. } => Error::CheckpointCorrupt {
            file: files::CURRENT.to_string(),
            reason: "two records reference overlapping locations",
        },
        crate::space::RestoreError::OutOfRange { location } => {
            shrunk_config(location, geometry.bounds())
        }
        // A configuration to correct, not damage (the block size is not kept
        // on disk: the offsets show the one the store was made with).
        crate::space::RestoreError::Misaligned { location } => Error::InvalidConfig {
            field: "block_size_bytes",
            reason: format!(
                "{} does not divide offset {} of device {}, where a record of this store starts; open it with the block size it was created with",
                geometry.block_size, location.offset, location.device
            ),
        },
    })
}
