//! Opening a durable store: lock, recover, validate, then (only then) change files.
//!
//! Every check that can refuse an open runs before the first write, so a failed open
//! leaves every file as it found it (invariant 11); the only exception is the
//! `LOCK` file, which is removed again if this open created it.

use super::StoreConfig;
use super::durable::{Dir, Journal, io_error};
use crate::backend::FsBackend;
use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile};
use crate::journal::{self, Image, Recovered, files, plan};
use crate::record::{MAX_GENERATION, MAX_VERSION, Snapshot};
use crate::space::Allocator;
// std's Arc even under loom: file handles are shared, not synchronised through it.
use crate::table::ExtentTable;
use std::path::Path;
use std::sync::Arc;

/// The name of `device`'s data file (the same as [`FileBackend`](crate::FileBackend)'s).
pub(crate) fn device_file(device: u16) -> String {
    crate::backend::device_file_name(device)
}

/// What the last open of a durable store recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the open created a new store (the directory held none).
    pub created: bool,
    /// The checkpoint recovery started from.
    pub checkpoint: u64,
    /// Records recovered (extents ever committed, deleted ones included).
    pub records: u64,
    /// Journal entries replayed on top of the checkpoint.
    pub replayed: u64,
    /// Whether a torn journal tail (an unacknowledged group commit cut by the
    /// crash) was dropped.
    pub torn_tail_dropped: bool,
    /// Bytes of that torn tail.
    pub dropped_bytes: u64,
    /// The side file in the store directory that keeps those bytes as evidence
    /// (removed with its journal at a later checkpoint).
    pub dropped_file: Option<String>,
    /// Whether the journal ended with the close marker of a clean
    /// [`close`](crate::Store::close).
    pub clean_close: bool,
    /// Locations marked bad.
    pub bad_locations: u64,
}

/// What recovery hands to the store.
pub(crate) struct Opened {
    pub(crate) table: ExtentTable,
    pub(crate) allocator: Allocator,
    pub(crate) backend: FsBackend,
    pub(crate) journal: Journal,
    pub(crate) report: RecoveryReport,
}

/// Opens or creates the store in `path`.
pub(crate) fn open(fs: Arc<dyn Fs>, path: &Path, config: &StoreConfig) -> Result<Opened> {
    fs.create_dir_all(path)
        .map_err(|e| io_error("create dir", &e))?;
    let names = fs.list(path).map_err(|e| io_error("list", &e))?;
    let lock_existed = names.iter().any(|n| n == files::LOCK);
    let lock_path = path.join(files::LOCK);
    let lock = fs
        .lock(&lock_path)
        .map_err(|e| io_error("lock", &e))?
        .ok_or_else(|| Error::Locked {
            path: lock_path.display().to_string(),
        })?;
    let dir = Dir::new(Arc::clone(&fs), path);
    match recover_and_open(dir, &names, lock, config) {
        Ok(opened) => Ok(opened),
        Err(err) => {
            if !lock_existed {
                let _ = fs.remove(&lock_path);
            }
            Err(err)
        }
    }
}

fn recover_and_open(
    dir: Dir,
    names: &[String],
    lock: Box<dyn std::any::Any + Send + Sync>,
    config: &StoreConfig,
) -> Result<Opened> {
    let devices = config.devices;
    let read = |name: &str| {
        dir.fs
            .read_file(&dir.path.join(name))
            .map_err(|e| io_error("read", &e))
    };
    let (recovered, created) = match journal::recover_dir(names, read)? {
        Some(r) => (r, false),
        None => {
            refuse_data_without_pointer(&dir, devices)?;
            dir.run(plan::create(devices, names))?;
            (Recovered::fresh(devices), true)
        }
    };
    if recovered.devices != devices {
        return Err(Error::InvalidConfig {
            field: "devices",
            reason: format!(
                "the store was created with {} devices, the configuration says {devices}",
                recovered.devices
            ),
        });
    }
    let (table, allocator) = rebuild(&recovered.image, &Geometry::of(config))?;
    let device_files = check_device_files(&dir, &recovered.image, devices)?;

    // Every check passed: from here on files change.
    let (ops, number, len) = plan::reopen(&recovered);
    dir.run(ops)?;
    let backend = open_device_files(&dir, device_files)?;
    let journal = Journal::new(
        dir,
        lock,
        devices,
        config.journal_max_bytes,
        number,
        len,
        recovered.next_seq,
    )?;
    let report = RecoveryReport {
        created,
        checkpoint: recovered.checkpoint,
        records: recovered.image.records.len() as u64,
        replayed: recovered.replayed,
        torn_tail_dropped: recovered.cut.is_some(),
        dropped_bytes: recovered.dropped.len() as u64,
        dropped_file: recovered.cut.map(|(n, at)| files::dropped(n, at)),
        clean_close: recovered.tail.closed,
        bad_locations: recovered.image.bad.len() as u64,
    };
    Ok(Opened {
        table,
        allocator,
        backend,
        journal,
        report,
    })
}

/// A directory with device data but no `CURRENT` is not a store this crate made
/// (or its metadata was removed): refuse it rather than overwrite the data.
fn refuse_data_without_pointer(dir: &Dir, devices: u16) -> Result<()> {
    for device in 0..devices {
        if let Ok(f) = dir.fs.open(&dir.path.join(device_file(device)), false)
            && f.len().map_err(|e| io_error("stat", &e))? > 0
        {
            return Err(Error::MissingCheckpoint {
                file: files::CURRENT.to_string(),
            });
        }
    }
    Ok(())
}

/// What [`rebuild`] needs to know of a store's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) table: crate::table::TableConfig,
    pub(crate) devices: u16,
    pub(crate) capacity: u64,
    pub(crate) block_size: u32,
}

impl Geometry {
    fn of(config: &StoreConfig) -> Self {
        Geometry {
            table: config.table,
            devices: config.devices,
            capacity: config.device_capacity_bytes,
            block_size: config.block_size_bytes,
        }
    }
}

/// The table and allocator of a recovered image: every record restored (range
/// checked), free space the complement of the referenced locations and the bad
/// list. Shared by [`Store::open`](crate::Store::open) and the emulator's crash
/// recovery, so both rebuild the same way.
///
/// # Errors
///
/// [`Error::CheckpointCorrupt`] for a record out of range or two records
/// referencing overlapping locations.
pub(crate) fn rebuild(image: &Image, geometry: &Geometry) -> Result<(ExtentTable, Allocator)> {
    let table = ExtentTable::new(geometry.table);
    restore_records(&table, image, geometry)?;
    let allocator = restore_allocator(image, geometry)?;
    Ok((table, allocator))
}

fn restore_records(table: &ExtentTable, image: &Image, geometry: &Geometry) -> Result<()> {
    for record in image.records.values() {
        let bad = record.version % 2 != 0
            || record.version > MAX_VERSION
            || record.generation > MAX_GENERATION
            || record.location.device >= geometry.devices
            || record.location.end() > geometry.capacity;
        if bad {
            return Err(Error::CheckpointCorrupt {
                file: format!("record of {}", record.extent),
                reason: "a recovered record is out of range",
            });
        }
        table.restore(&Snapshot::recovered(
            record.extent,
            record.version,
            record.state,
            record.generation,
            record.location,
            record.checksum,
        ))?;
    }
    Ok(())
}

fn restore_allocator(image: &Image, geometry: &Geometry) -> Result<Allocator> {
    Allocator::restore(
        geometry.devices,
        geometry.capacity,
        geometry.block_size,
        image.referenced(),
        image.bad.iter().copied(),
        image.degraded.iter().copied(),
    )
    .map_err(|err| Error::CheckpointCorrupt {
        file: files::CURRENT.to_string(),
        reason: match err {
            crate::space::RestoreError::Overlap { .. } => {
                "two records reference overlapping locations"
            }
            crate::space::RestoreError::OutOfRange { .. } => {
                "a record references a location outside the devices"
            }
        },
    })
}

/// Each device's file, if it exists; refuses a missing or short one that records
/// reference.
fn check_device_files(
    dir: &Dir,
    image: &Image,
    devices: u16,
) -> Result<Vec<Option<Arc<dyn FsFile>>>> {
    let mut needed = vec![0u64; usize::from(devices)];
    for l in image.referenced() {
        let n = &mut needed[usize::from(l.device)];
        *n = (*n).max(l.end());
    }
    (0..devices)
        .map(|device| {
            let need = needed[usize::from(device)];
            match dir.fs.open(&dir.path.join(device_file(device)), false) {
                Ok(f) => {
                    let len = f.len().map_err(|e| io_error("stat", &e))?;
                    if len < need {
                        return Err(Error::DeviceFile {
                            device,
                            needed: need,
                            actual: Some(len),
                        });
                    }
                    Ok(Some(f))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if need > 0 {
                        return Err(Error::DeviceFile {
                            device,
                            needed: need,
                            actual: None,
                        });
                    }
                    Ok(None)
                }
                Err(e) => Err(io_error("open", &e)),
            }
        })
        .collect()
}

/// The device files of a durable store: the ones that exist, the others created
/// (and their directory entries synced).
fn open_device_files(dir: &Dir, existing: Vec<Option<Arc<dyn FsFile>>>) -> Result<FsBackend> {
    let mut created = false;
    let mut files = Vec::with_capacity(existing.len());
    for (device, f) in existing.into_iter().enumerate() {
        files.push(match f {
            Some(f) => f,
            None => {
                created = true;
                dir.fs
                    .open(&dir.path.join(device_file(device as u16)), true)
                    .map_err(|e| Error::io(device as u16, "open", &e))?
            }
        });
    }
    if created {
        dir.fs
            .sync_dir(&dir.path)
            .map_err(|e| io_error("sync dir", &e))?;
    }
    Ok(FsBackend::new(files))
}
