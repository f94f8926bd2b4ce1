//! The file system a durable store runs on.
//!
//! [`Store::open`](crate::Store::open) uses [`StdFs`], the real one.
//! [`Store::open_in`](crate::Store::open_in) takes any [`Fs`]: a test can wrap the
//! real file system to remember what was synced and, at a simulated power cut,
//! drop what was not (the LevelDB `fault_injection_test` style; this crate's
//! `tests/power_loss.rs` does exactly that).
//!
//! # Contract
//!
//! * [`FsFile::write_all_at`] need not be durable until [`FsFile::sync_data`]
//!   returns `Ok`.
//! * A create, rename or remove need not be durable until [`Fs::sync_dir`] of the
//!   directory returns `Ok`.
//! * Besides the store's directory, an open (and a backup) lists and syncs the
//!   directory's ancestors: [`Fs::list`] of each up to the first that exists,
//!   then [`Fs::sync_dir`] of the parent of every directory created and of the
//!   store's own, so that a power cut cannot undo the directory with the
//!   store in it. `PermissionDenied` from either, and `InvalidInput`,
//!   `EBADF` or `Unsupported` from the sync, are taken as "cannot be synced
//!   here" and skipped: an `Fs` confined to the store's directory answers
//!   `Unsupported` for the others.
//! * [`Fs::lock`] takes an exclusive advisory lock that a second `lock` of the same
//!   path (from this process or another) is refused while the guard lives.

use std::any::Any;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// An open file: positioned reads and writes, data sync, length.
pub trait FsFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length in bytes.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends the file to `len` bytes.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A directory tree: open, list, rename, remove, directory sync and locking.
pub trait Fs: Send + Sync + Debug + 'static {
    /// Creates `dir` and its parents if missing.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens `path` for reading and writing; creates it (empty) if `create`.
    ///
    /// # Errors
    ///
    /// `NotFound` if it is missing and `create` is false; the operating system's
    /// error.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FsFile>>;
    /// The names of the entries of `dir`: the store's (or a backup's)
    /// directory, or one of its ancestors (see the module's contract).
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames `from` to `to`, replacing `to` atomically.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes `dir`'s entries (creates, renames, removes) durable. `dir` is the
    /// store's (or a backup's) directory, or one of its ancestors (see the
    /// module's contract).
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing): `Ok(None)` if it is
    /// held elsewhere. The lock is released when the guard is dropped.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>>;

    /// The whole content of `path`, `None` if it does not exist.
    ///
    /// # Errors
    ///
    /// The operating system's error, and `OutOfMemory` for a file whose length
    /// no memory holds (a sparse or damaged file: the buffer is reserved before
    /// it is filled, where `vec!` would abort the process).
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let file = match self.open(path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        read_whole(&*file).map(Some)
    }
}

/// The whole content of `file`, as long as its length says (less if it ends
/// first).
///
/// The buffer is reserved before it is filled, so a length no memory holds (a
/// sparse file of 2^43 bytes, a length a damaged or faulty file system
/// reports) is an `OutOfMemory` error for the caller to report: `vec!` would
/// abort the process. Recovery reads journals and `CURRENT` this way.
///
/// # Errors
///
/// `file`'s errors; `FileTooLarge` past the address space; `OutOfMemory` when
/// the allocation is refused.
pub(crate) fn read_whole(file: &dyn FsFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.len()?).map_err(|_| io::ErrorKind::FileTooLarge)?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("the file's {len} bytes do not fit in memory"),
        )
    })?;
    buf.resize(len, 0);
    let done = read_full_at(file, &mut buf, 0)?;
    buf.truncate(done);
    Ok(buf)
}

/// Runs `call`, a file-system call or a step built on one, turning a panic in
/// it (an `Fs` an engine supplied may panic) into the error `panicked` makes:
/// the caller then ends what it began (a sync gate's ticket, a group commit,
/// a rotation) as after an I/O error, instead of leaving others waiting on it.
/// `AssertUnwindSafe`: what the call was changing is abandoned as after a
/// failed call, which every caller already handles.
pub(crate) fn unless_panicked<T, E>(
    call: impl FnOnce() -> Result<T, E>,
    panicked: impl FnOnce() -> E,
) -> Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|_| Err(panicked()))
}

/// Creates `dir` and its missing ancestors, and makes every creation durable:
/// a directory created and not synced into its parent may be undone by a power
/// cut, and every file in it with it, however well those files were synced
/// (a create not followed by a directory sync may be undone). The parent of
/// `dir` is synced even if `dir` existed: an earlier run that created it may
/// have stopped (a kill keeps the page cache) before that sync.
///
/// A parent this process may not read (`PermissionDenied`: a directory of
/// mode `-wx`) counts as existing and is not synced, nor is one whose file
/// system has no directory sync (`EINVAL` or `EBADF`, as on a read-only
/// squashfs root above a data mount; PostgreSQL's `fsync_fname` skips these
/// for directories too), nor one an engine's [`Fs`] answers `Unsupported`:
/// refusing the store would be worse than the file system's own ordering of
/// the creation, which ext4's and XFS's journals provide.
/// Bounded by the depth of `dir`'s path.
pub(crate) fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let parent_of = |p: &Path| -> std::path::PathBuf {
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => q.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        }
    };
    // The directories to create, innermost first: each ancestor up to the
    // first that exists.
    let mut missing = Vec::new();
    for at in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match fs.list(at) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(at),
            Err(e) => return Err(e),
        }
    }
    fs.create_dir_all(dir)?;
    // Outermost first; `dir` alone if it existed (its parent again).
    if missing.is_empty() {
        missing.push(dir);
    }
    for created in missing.iter().rev() {
        match fs.sync_dir(&parent_of(created)) {
            Err(e) if unsyncable(&e) => {}
            other => other?,
        }
    }
    Ok(())
}

/// Whether a directory sync's error says the directory cannot be synced
/// here, rather than that a sync failed (see [`create_dir_durably`]): no
/// permission to open it (`EACCES`), no directory sync on its file system
/// (`EINVAL`, `EBADF`), or an [`Fs`] that does not sync outside the store
/// (`Unsupported`).
fn unsyncable(e: &io::Error) -> bool {
    /// `EBADF` on Linux, the BSDs and macOS alike.
    const EBADF: i32 = 9;
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(EBADF)
}

/// Fills `buf` from `offset` of `file`: the bytes read, fewer than
/// `buf.len()` only where the file ends. A read a signal interrupted is
/// retried, as `std`'s `read_exact_at` retries it.
pub(crate) fn read_full_at(file: &dyn FsFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    let mut interrupted = 0;
    // Bounded: each iteration reads at least one byte, ends the loop, or was
    // interrupted before it read anything, at most `MAX_INTERRUPTED` times
    // in a row.
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => (done, interrupted) = (done + n, 0),
            Err(e) if retry_interrupted(&e, &mut interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Consecutive `Interrupted` answers a read is retried through: a signal
/// each time is a few; an engine's [`Fs`] that answers nothing else must not
/// hold the caller in a loop for good.
pub(crate) const MAX_INTERRUPTED: u32 = 1000;

/// Whether `e` is an interruption to retry, counting it in `interrupted`
/// (consecutive ones), up to [`MAX_INTERRUPTED`].
pub(crate) fn retry_interrupted(e: &io::Error, interrupted: &mut u32) -> bool {
    *interrupted += 1;
    e.kind() == io::ErrorKind::Interrupted && *interrupted <= MAX_INTERRUPTED
}

/// The real file system (`std::fs`, `pread`/`pwrite`, `fdatasync`, `flock`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl FsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // Bounded: retried only on EINTR.
        loop {
            match self.0.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FsFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(StdFile(file)))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        use std::os::unix::fs::MetadataExt;
        // Bounded: a lock file removed under us (by an open that failed and
        // removed the file it created) is tried again a few times.
        for _ in 0..4 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            // The file locked must still be the one the path names: an inode
            // unlinked between the open and the lock would leave a later open
            // free to create and lock a new file of that name.
            let (held, named) = (file.metadata()?, std::fs::metadata(path));
            match named {
                Ok(named) if (named.dev(), named.ino()) == (held.dev(), held.ino()) => {
                    return Ok(Some(Box::new(file)));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// `dir` with its symbolic links and a relative path resolved: its deepest
/// ancestor that exists is resolved (the working directory, for a relative
/// path none of whose parts exists yet), and the parts the open will create
/// follow it as given. What cannot be resolved at all is kept as given (the
/// open then reports it).
pub(crate) fn resolved(dir: &std::path::Path) -> std::path::PathBuf {
    let dot = std::path::Path::new(".");
    // Bounded: one step per component of `dir`.
    for ancestor in dir.ancestors() {
        let existing = if ancestor.as_os_str().is_empty() {
            dot
        } else {
            ancestor
        };
        if let Ok(resolved) = std::fs::canonicalize(existing) {
            return match dir.strip_prefix(ancestor) {
                Ok(rest) if !rest.as_os_str().is_empty() => resolved.join(rest),
                _ => resolved,
            };
        }
    }
    dir.to_path_buf()
}

#[cfg(all(test, not(loom)))]
mod tests {

    /// A directory resolves through its deepest existing ancestor: a
    /// relative path none of whose parts exists yet becomes absolute, and a
    /// link on the way is followed.
    #[cfg(unix)]
    #[test]
    fn a_path_resolves_through_its_deepest_existing_ancestor() {
        let relative = super::resolved(std::path::Path::new("no-such-1/no-such-2"));
        assert!(relative.is_absolute(), "{relative:?}");
        assert!(relative.ends_with("no-such-1/no-such-2"), "{relative:?}");
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).expect("dir");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        let through = super::resolved(&link.join("new/db"));
        let real = std::fs::canonicalize(&real).expect("canonical");
        assert_eq!(through, real.join("new/db"));
        assert_eq!(super::resolved(&link), real);
    }
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The bytes of extent 7, generation 3, read 5 bytes at a time, after
    /// `interrupts` reads a signal interrupted.
    #[derive(Debug)]
    struct Flaky {
        bytes: Vec<u8>,
        interrupts: AtomicU32,
        /// The length the file says it has, if not its bytes'.
        claimed_len: Option<u64>,
    }

    impl FsFile for Flaky {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            // SeqCst: a test counter, one thread.
            if self.interrupts.load(Ordering::SeqCst) > 0 {
                self.interrupts.fetch_sub(1, Ordering::SeqCst);
                return Err(io::ErrorKind::Interrupted.into());
            }
            let at = (offset as usize).min(self.bytes.len());
            let n = buf.len().min(5).min(self.bytes.len() - at);
            buf[..n].copy_from_slice(&self.bytes[at..at + n]);
            Ok(n)
        }
        fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn set_len(&self, _: u64) -> io::Result<()> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> io::Result<u64> {
            Ok(self.claimed_len.unwrap_or(self.bytes.len() as u64))
        }
    }

    /// A file whose length no memory holds: its read is an error, not an
    /// abort of the process.
    #[test]
    fn a_length_no_memory_holds_is_an_error_not_an_abort() {
        let huge = Flaky {
            bytes: Vec::new(),
            interrupts: AtomicU32::new(0),
            claimed_len: Some(1 << 62),
        };
        let err = read_whole(&huge).expect_err("2^62 bytes are refused");
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "{err}");
        assert!(err.to_string().contains(&(1u64 << 62).to_string()), "{err}");
        // A file that ends before its length says is read to its end.
        let flaky = Flaky {
            bytes: b"extent 7 generation 3".to_vec(),
            interrupts: AtomicU32::new(2),
            claimed_len: None,
        };
        assert_eq!(read_whole(&flaky).expect("read"), flaky.bytes);
    }

    /// The real file system, recording every directory sync.
    #[derive(Debug, Default)]
    struct Recording(std::sync::Mutex<Vec<std::path::PathBuf>>);

    impl Fs for Recording {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            StdFs.create_dir_all(dir)
        }
        fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FsFile>> {
            StdFs.open(path, create)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            StdFs.list(dir)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            StdFs.rename(from, to)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            StdFs.remove(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.0.lock().expect("not poisoned").push(dir.to_path_buf());
            StdFs.sync_dir(dir)
        }
        fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
            StdFs.lock(path)
        }
    }

    /// Every directory created is synced into its parent, outermost first,
    /// and the parent of one that existed is synced again.
    #[test]
    fn every_directory_created_is_synced_into_its_parent() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fs = Recording::default();
        let dir = tmp.path().join("a").join("b").join("c");
        create_dir_durably(&fs, &dir).expect("created");
        assert!(dir.is_dir());
        let synced = std::mem::take(&mut *fs.0.lock().expect("not poisoned"));
        let (a, b) = (tmp.path().join("a"), tmp.path().join("a").join("b"));
        assert_eq!(synced, vec![tmp.path().to_path_buf(), a, b.clone()]);
        create_dir_durably(&fs, &dir).expect("existed");
        assert_eq!(*fs.0.lock().expect("not poisoned"), vec![b]);
    }

    /// A relative path's parent is the working directory: `.`, never the
    /// empty path (`cargo test` runs in the crate's directory, which holds
    /// `src`).
    #[test]
    fn a_relative_directory_is_synced_into_the_working_directory() {
        let fs = Recording::default();
        create_dir_durably(&fs, Path::new("src")).expect("exists");
        assert_eq!(*fs.0.lock().expect("not poisoned"), vec![Path::new(".")]);
    }

    /// A directory sync the file system cannot do (`EINVAL`) or may not
    /// (`EACCES`) is skipped; any other failure is the caller's.
    #[test]
    fn only_a_sync_that_cannot_be_done_here_is_skipped() {
        assert!(unsyncable(&io::ErrorKind::InvalidInput.into()));
        assert!(unsyncable(&io::ErrorKind::PermissionDenied.into()));
        assert!(unsyncable(&io::ErrorKind::Unsupported.into()));
        assert!(unsyncable(&io::Error::from_raw_os_error(9)));
        assert!(!unsyncable(&io::Error::other("EIO")));
    }

    #[test]
    fn a_full_read_retries_interrupted_reads_and_stops_at_the_end() {
        let bytes: Vec<u8> = [7u64.to_le_bytes(), 3u64.to_le_bytes()].concat();
        let file = Flaky {
            bytes: bytes.clone(),
            interrupts: AtomicU32::new(2),
            claimed_len: None,
        };
        let mut buf = [0u8; 16];
        assert_eq!(read_full_at(&file, &mut buf, 0).expect("retried"), 16);
        assert_eq!(buf.to_vec(), bytes, "extent 7, generation 3");
        let mut tail = [0u8; 16];
        assert_eq!(read_full_at(&file, &mut tail, 8).expect("read"), 8);
        assert_eq!(tail[..8], 3u64.to_le_bytes());
        // A file system that answers nothing but Interrupted ends the loop.
        file.interrupts.store(u32::MAX, Ordering::SeqCst);
        let err = read_full_at(&file, &mut buf, 0).expect_err("not for good");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
        let read = |_: &mut [u8], _: u64| Err(io::ErrorKind::Interrupted.into());
        let location = crate::record::Location::new(0, 0, 16);
        let err = crate::backend::read_exact_at(location, &mut buf, read).expect_err("bounded");
        assert_eq!(err.code(), "FPRE009", "{err}");
    }
}
