//! Opening a durable store: lock, recover, validate, then (only then) change files.
//!
//! Every check that can refuse an open runs before the first write, so a failed open
//! leaves every file as it found it (invariant 11); the only exception is the
//! `LOCK` file, which is removed again if this open created it.

use super::config::StoreConfig;
use super::durable::{Dir, Journal, io_error};
use crate::backend::DeviceFiles;
use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile};
use crate::journal::open::Geometry;
use crate::journal::plan::PlanMutants;
use crate::journal::{self, files};
use crate::record::ExtentId;
use crate::space::Allocator;
use crate::table::ExtentTable;
use std::path::Path;
// std's Arc even under loom: file handles are shared, not synchronised through it.
use std::sync::Arc;

/// The name of `device`'s data file (the same as [`FileBackend`](crate::FileBackend)'s).
pub(crate) fn device_file(device: u16) -> String {
    crate::backend::device_file_name(device)
}

/// What the last open of a durable store recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Bytes of that torn tail: the torn write's frames found past the damage,
    /// or the rest of the page where it broke, without trailing zeros (the
    /// journal allocates its space ahead of its appends, and zeros there carry
    /// nothing; a recycled journal holds its predecessor's bytes further on).
    pub dropped_bytes: u64,
    /// The side file in the store directory that keeps those bytes as evidence
    /// (removed with its journal at a later checkpoint).
    pub dropped_file: Option<String>,
    /// Whether the journal ended with the close marker of a clean
    /// [`close`](crate::Store::close).
    pub clean_close: bool,
    /// Locations marked bad.
    pub bad_locations: u64,
    /// Inline writes whose data recovery wrote back to its location from the
    /// journal (none after a clean close, which synced the devices).
    pub inline_written_back: u64,
    /// Extents whose newest record was journaled while its data's sync ran and
    /// whose data did not verify: the write was cut by the crash before it was
    /// acknowledged, and the extent has the record it had before. (A write
    /// acknowledged less than one group commit before the crash, whose data a
    /// fault then damaged, cannot be told from one: it would be listed here too.)
    pub unsynced_dropped: Vec<ExtentId>,
}

/// What recovery hands to the store.
pub(crate) struct Opened {
    pub(crate) table: ExtentTable,
    pub(crate) tags: crate::table::Tags,
    pub(crate) allocator: Allocator,
    pub(crate) backend: Arc<DeviceFiles>,
    pub(crate) journal: Journal,
    pub(crate) report: RecoveryReport,
}

/// Opens or creates the store in `path`.
pub(crate) fn open(fs: Arc<dyn Fs>, path: &Path, config: &StoreConfig) -> Result<Opened> {
    let refuse = |reason: &str| Error::NotAStore {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    // A panic in an engine's `Fs`, here as anywhere in the open, is the
    // open's I/O error: never a panic reaching the caller.
    let panicked = || std::io::Error::other("the file system panicked");
    let existed = match crate::fs::unless_panicked(|| fs.list(path), panicked) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(refuse("it is a file, not a directory"));
        }
        Err(e) => return Err(io_error("list", &e)),
    };
    if !existed && !config.create_if_missing {
        return Err(refuse(
            "the directory does not exist and create_if_missing is false",
        ));
    }
    crate::fs::unless_panicked(|| crate::fs::create_dir_durably(&*fs, path), panicked).map_err(
        |e| match e.kind() {
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                refuse("a file that is not a directory is in the way")
            }
            _ => io_error("create dir", &e),
        },
    )?;
    let names =
        crate::fs::unless_panicked(|| fs.list(path), panicked).map_err(|e| io_error("list", &e))?;
    check_open_options(&names, config).map_err(|reason| refuse(&reason))?;
    let lock_existed = names.iter().any(|n| n == files::LOCK);
    let lock_path = path.join(files::LOCK);
    let lock = crate::fs::unless_panicked(|| fs.lock(&lock_path), panicked)
        .map_err(|e| io_error("lock", &e))?
        .ok_or_else(|| Error::Locked {
            path: lock_path.display().to_string(),
        })?;
    // Listed again under the lock: another process may have rotated (or
    // created) the store and closed it between the first listing and the lock.
    // A panic here (an engine's `Fs`) is an error too: the lock file this
    // open made is then removed below.
    let names = crate::fs::unless_panicked(
        || fs.list(path),
        || std::io::Error::other("the file system panicked"),
    )
    .map_err(|e| io_error("list", &e));
    let names = names.and_then(|names| {
        check_open_options(&names, config).map_err(|reason| refuse(&reason))?;
        Ok(names)
    });
    let dir = Dir::new(Arc::clone(&fs), path);
    let mut lock = Some(lock);
    // A panic in an engine's `Fs` under recovery is the open's I/O error:
    // the lock file this open made is then removed as after any failure
    // (a failed open changes no file), and the caller gets a typed error.
    let opened = names.and_then(|names| {
        let opened = crate::fs::unless_panicked(
            || recover_and_open(dir, &names, &mut lock, config),
            || io_error("open", &std::io::Error::other("the file system panicked")),
        )?;
        // A backup whose last step a crash stopped left its marker beside
        // the pointer: the store is whole, and the marker would make a later
        // loss of the pointer read as a backup cut short (and a backup into
        // the directory clear it as one). Best effort.
        if names.iter().any(|n| n == super::backup::IN_PROGRESS) {
            let _ = crate::fs::unless_panicked(
                || {
                    fs.remove(&path.join(super::backup::IN_PROGRESS))?;
                    fs.sync_dir(path)
                },
                panicked,
            );
        }
        Ok(opened)
    });
    match opened {
        Ok(opened) => Ok(opened),
        Err(err) => {
            // Removed while still locked: an open that meets this file now
            // finds it locked and is refused, and a later one creates a new
            // file. (Unlocked first, two opens could each lock a file of that
            // name, the old one and the new.)
            if !lock_existed {
                let _ = crate::fs::unless_panicked(|| fs.remove(&lock_path), panicked);
            }
            drop(lock);
            Err(err)
        }
    }
}

/// The open options against what the directory holds: `Err` with the reason to
/// refuse it. A store exists once its pointer (`CURRENT`) does; before that the
/// directory holds at most the leftovers of a creation a crash stopped, which the
/// next open creates afresh.
fn check_open_options(names: &[String], config: &StoreConfig) -> std::result::Result<(), String> {
    let exists = names.iter().any(|n| n == files::CURRENT);
    if exists && config.error_if_exists {
        return Err("it already holds a store and error_if_exists is true".into());
    }
    if exists {
        return Ok(());
    }
    // Whatever the options: creating a store here would turn a failed
    // restore into one that seems to succeed, with nothing in it.
    if names.iter().any(|n| n == super::backup::IN_PROGRESS) {
        return Err(format!(
            "it holds a backup cut short or still being written ({}, no CURRENT): wait for a backup in progress, or take the backup again",
            super::backup::IN_PROGRESS
        ));
    }
    if !config.create_if_missing {
        return Err("it holds no store and create_if_missing is false".into());
    }
    let foreign: Vec<&String> = names.iter().filter(|n| !is_store_file(n)).collect();
    if !foreign.is_empty() && !config.create_in_non_empty_dir {
        return Err(format!(
            "it holds no store but {} other file(s) (first: {}); set create_in_non_empty_dir to create one there",
            foreign.len(),
            foreign[0]
        ));
    }
    Ok(())
}

/// Whether `name` is one of the files a store keeps in its directory.
fn is_store_file(name: &str) -> bool {
    [
        files::CURRENT,
        files::CURRENT_TMP,
        files::LOCK,
        files::RESERVE,
        files::RECYCLED,
    ]
    .contains(&name)
        || files::journal_number(name).is_some()
        || files::checkpoint_number(name).is_some()
        || files::dropped_number(name).is_some()
        || (name.starts_with("dev") && name.ends_with(".extents"))
}

fn recover_and_open(
    dir: Dir,
    names: &[String],
    lock: &mut Option<Box<dyn std::any::Any + Send + Sync>>,
    config: &StoreConfig,
) -> Result<Opened> {
    let mut files = MetaDir::new(&dir);
    let device_files = device_files(&dir, config.devices)?;
    let device_lens = (device_files.iter())
        .map(|f| {
            f.as_ref()
                .map(|f| f.len().map_err(|e| io_error("stat", &e)))
                .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let mut read_device = |l: crate::record::Location| -> Result<Option<Vec<u8>>> {
        let Some(Some(file)) = device_files.get(usize::from(l.device)) else {
            return Ok(None);
        };
        read_exact_or_none(&**file, l).map_err(|e| crate::Error::io(l.device, "read", &e))
    };
    let mut opening = journal::open::open(
        names,
        &mut files,
        journal::open::Devices {
            lens: &device_lens,
            read: &mut read_device,
        },
        &geometry(config),
        config.journal_max_bytes,
        journal::open::SideFiles {
            reserve_bytes: config.metadata_reserve_bytes,
            reserve_found: reserve_len(&dir),
            recycled: file_len(&dir, files::RECYCLED),
            recycle: config.recycle_journals,
        },
        PlanMutants::default(),
    )?;
    // Every check passed: from here on files change.
    dir.run(&opening.create)?;
    let backend = Arc::new(open_device_files(&dir, device_files)?);
    dir.set_devices(Arc::clone(&backend));
    // Step by step, to know which step failed.
    let failed = (opening.reopen.iter().enumerate())
        .find_map(|(at, op)| dir.run(std::slice::from_ref(op)).err().map(|e| (at, e)));
    if let Some((at, err)) = failed {
        // A full disk: the reserve is there for this. Released, the plan
        // resumes at the step that failed (a write, which runs again whole).
        // Not from its start: once the marker a stopped rotation left out is
        // durable, cutting its successor back again (to write it anew) would
        // leave a marker naming a journal without a frame. The store then
        // opens, refusing new writes until the reserve can be made again (at
        // once, if the plan freed space, as a journal cut back does).
        let retry = (opening.writer)
            .release_reserve_for(&err, &opening.reopen[at..])
            .ok_or(err)?;
        let ran = dir.run(&retry);
        opening.writer.release_ended(&retry);
        ran?;
    }
    let recovered = &opening.recovered;
    let report = RecoveryReport {
        created: opening.created,
        checkpoint: recovered.checkpoint,
        records: opening.records,
        replayed: recovered.replayed,
        torn_tail_dropped: recovered.cut.is_some(),
        dropped_bytes: recovered.dropped.len() as u64,
        dropped_file: (recovered.cut).map(|(n, at)| files::dropped(n, at, &recovered.dropped)),
        clean_close: recovered.tail.closed,
        bad_locations: recovered.image.bad.len() as u64,
        inline_written_back: recovered.redo.len() as u64,
        unsynced_dropped: (recovered.unsynced_dropped.iter())
            .filter_map(|e| e.record().map(|(r, _)| r.extent))
            .collect(),
    };
    // Taken only once nothing can fail: on an error the caller still holds it.
    let lock = lock.take().ok_or(Error::Internal {
        what: "the directory's lock was taken twice",
    })?;
    Ok(Opened {
        table: opening.table,
        tags: opening.tags,
        allocator: opening.allocator,
        backend,
        journal: {
            let journal = Journal::new(dir, lock, opening.writer);
            // Best effort: on a full disk the store opens refusing new writes.
            journal.restore_reserve();
            journal
        },
        report,
    })
}

/// The store directory's metadata files as recovery reads them: whole, or a
/// checkpoint in parts through one open file.
pub(super) struct MetaDir<'a> {
    dir: &'a Dir,
    open: Option<(String, Arc<dyn FsFile>)>,
}

impl<'a> MetaDir<'a> {
    /// `dir`'s metadata files, none open yet.
    pub(super) fn new(dir: &'a Dir) -> Self {
        MetaDir { dir, open: None }
    }
}

impl journal::MetaFiles for MetaDir<'_> {
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        // Named: a file too large for memory (`Fs::read_file`) or a failed
        // read says which one.
        (self.dir.fs)
            .read_file(&self.dir.path.join(name))
            .map_err(|e| {
                io_error(
                    "read",
                    &std::io::Error::new(e.kind(), format!("{name}: {e}")),
                )
            })
    }

    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<Option<usize>> {
        if self.open.as_ref().is_none_or(|(n, _)| n != name) {
            let file = match self.dir.fs.open(&self.dir.path.join(name), false) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error("open", &e)),
            };
            self.open = Some((name.to_string(), file));
        }
        let Some((_, file)) = &self.open else {
            return Ok(None);
        };
        (crate::fs::read_full_at(&**file, buf, offset).map(Some)).map_err(|e| io_error("read", &e))
    }
}

/// The `l.length` bytes at `l.offset` of `file`, `None` if the file ends first.
fn read_exact_or_none(
    file: &dyn crate::fs::FsFile,
    l: crate::record::Location,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; l.length as usize];
    let done = crate::fs::read_full_at(file, &mut buf, l.offset)?;
    Ok((done == buf.len()).then_some(buf))
}

/// The length of the metadata reserve file, if there is one.
fn reserve_len(dir: &Dir) -> Option<u64> {
    file_len(dir, files::RESERVE)
}

/// The length of metadata file `name`, if there is one.
fn file_len(dir: &Dir, name: &str) -> Option<u64> {
    let file = dir.fs.open(&dir.path.join(name), false).ok()?;
    file.len().ok()
}

/// The shape of the store `config` describes.
fn geometry(config: &StoreConfig) -> Geometry {
    Geometry {
        table: config.table,
        devices: config.devices,
        capacity: config.device_capacity_bytes,
        block_size: config.block_size_bytes,
        read_chunk: journal::open::READ_CHUNK,
    }
}

/// Each device's file, `None` where it is missing.
fn device_files(dir: &Dir, devices: u16) -> Result<Vec<Option<Arc<dyn FsFile>>>> {
    (0..devices)
        .map(
            |device| match dir.fs.open(&dir.path.join(device_file(device)), false) {
                Ok(f) => Ok(Some(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_error("open", &e)),
            },
        )
        .collect()
}

/// The device files of a durable store: the ones that exist, the others created
/// (and their directory entries synced).
fn open_device_files(dir: &Dir, existing: Vec<Option<Arc<dyn FsFile>>>) -> Result<DeviceFiles> {
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
    Ok(DeviceFiles::new(files))
}
