//! The content-addressed store: blobs on disk, an LMDB index of what they mean.
//!
//! - [`layout`]: every on-disk name and version.
//! - [`blob`]: writing and opening blobs.
//! - [`linked_blob`]: storing a compiler's fresh output by hard link instead of by copy.
//! - [`entry`]: manifests and entries, and their serde encoding.
//! - [`index`]: the durable LMDB index (manifests, entries, blob reference counts).
//! - [`state`]: the NO_SYNC env (counters, last-use times, memoized hashes).
//! - [`lmdb`]: opening envs and databases safely.
//! - [`sessions`]: incremental sessions kept beside entries (the dev profile).
//! - [`gc`]: keeping the store within its limits, and sweeping what crashes left behind.
//!
//! Write order (docs/design.md §3): blobs first, then one index transaction that checks every blob
//! still exists and references it. A crash in between leaves orphan blobs for gc, never an entry
//! that points at nothing.

pub mod blob;
pub mod builds;
pub mod entry;
pub mod gc;
pub mod history;
pub mod index;
pub mod layout;
pub mod linked_blob;
pub mod lmdb;
pub mod sessions;
pub mod state;

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use index::Index;
use layout::Layout;
use state::State;

/// A store fault. On the wrapper path every one of these falls back to running the compiler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An I/O error whose message already names its operation and path (built by fs-err, or
    /// by [`io_failed`] for calls fs-err does not wrap): a blob write, say, whose failing step
    /// (the temp file, the write, the sync, the rename into `blobs/`) only the store knows.
    #[error(transparent)]
    File(io::Error),
    #[error("LMDB: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("the store is busy (lock held longer than the timeout)")]
    Busy,
    /// A blob was deleted (by gc, which frees blobs whose count is 0) between its write and the
    /// commit of the entry that references it; the entry is not stored.
    #[error("blob {} vanished before its entry was committed", .0.display())]
    BlobVanished(PathBuf),
    /// The store directory belongs to another user than the effective one (`sudo cargo build`
    /// on a user's cache, or a store shared between users): rcache neither reads nor writes it.
    #[error(
        "{} belongs to uid {owner}, not to this user (uid {euid}); rcache only uses a store of \
         its own (set RCACHE_DIR to one)",
        path.display()
    )]
    NotOwned {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
}

impl StoreError {
    /// A short snake_case name for the stats.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Io { source, .. } | StoreError::File(source) => io_reason(source),
            StoreError::Lmdb(heed::Error::Io(source)) => io_reason(source),
            StoreError::Lmdb(_) => "index_error",
            StoreError::Corrupt(_) => "corrupt_store",
            StoreError::Busy => "store_busy",
            StoreError::BlobVanished(_) => "blob_vanished",
            StoreError::NotOwned { .. } => "foreign_store",
        }
    }
}

/// Names an I/O error for the stats.
pub fn io_reason(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => "disk_full",
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => "read_only_store",
        io::ErrorKind::NotFound => "missing_file",
        io::ErrorKind::InvalidData => "corrupt_store",
        _ => "io_error",
    }
}

/// Names the operation and path in an I/O error, in fs-err's words, for the calls fs-err does
/// not wrap (tempfile, reflink, walkdir). The kind is kept, so [`io_reason`] is unchanged.
pub fn io_failed(operation: &str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    move |err| {
        io::Error::new(
            err.kind(),
            format!("failed to {operation} `{}`: {err}", path.display()),
        )
    }
}

/// [`io_failed`] for an operation on two paths (a copy, a rename).
pub fn io_failed_between(
    operation: &str,
    from: &Path,
    to: &Path,
) -> impl FnOnce(io::Error) -> io::Error {
    move |err| {
        io::Error::new(
            err.kind(),
            format!(
                "failed to {operation} `{}` to `{}`: {err}",
                from.display(),
                to.display()
            ),
        )
    }
}

/// An open store.
pub struct Store {
    pub layout: Layout,
    pub index: Index,
    pub state: State,
}

impl Store {
    /// Opens the store at `root`, creating it (mode 0700, with `CACHEDIR.TAG`) if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let layout = Layout::new(root);
        check_owner(&layout)?;
        Self::create_dirs(&layout)?;
        let state = State::open(&layout)?;
        let index = Index::open(&layout)?;
        Ok(Store {
            layout,
            index,
            state,
        })
    }

    fn create_dirs(layout: &Layout) -> Result<(), StoreError> {
        let io_err = |path: &PathBuf| {
            let path = path.clone();
            move |source| StoreError::Io { path, source }
        };
        if layout.tmp_dir().is_dir() && layout.index_dir().is_dir() {
            return Ok(());
        }
        let root = &layout.root;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err(root))?;
        let tag = layout.cachedir_tag();
        if !tag.exists() {
            fs::write(&tag, layout::CACHEDIR_TAG).map_err(io_err(&tag))?;
        }
        for dir in [
            layout.index_dir(),
            layout.state_dir(),
            layout.blobs_dir(),
            layout.tmp_dir(),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_err(&dir))?;
        }
        Ok(())
    }

    /// Takes the store lock, polling up to `timeout`. It is taken before an index write
    /// transaction so that a wrapper never blocks in `write_txn()` behind a long gc.
    pub fn lock(&self, timeout: Duration) -> Result<File, StoreError> {
        lock_file(self.layout.store_lock(), timeout)
    }

    /// Takes the lock under which one process computes a compiler's identity while the others
    /// of its build wait for the memo, waiting up to `timeout` (`wrapper::keying`).
    pub fn identity_lock(&self, timeout: Duration) -> Result<File, StoreError> {
        lock_file(self.layout.identity_lock(), timeout)
    }

    /// Takes the automatic gc's lock if it is free; `None` if an automatic gc is running.
    pub fn try_gc_lock(&self) -> Result<Option<File>, StoreError> {
        try_lock_file(self.layout.gc_lock())
    }

    /// Takes the remote uploader's lock, waiting up to `timeout` (zero: `None` if it is held).
    pub fn upload_lock(&self, timeout: Duration) -> Result<Option<File>, StoreError> {
        if timeout.is_zero() {
            return try_lock_file(self.layout.remote_upload_lock());
        }
        lock_file(self.layout.remote_upload_lock(), timeout).map(Some)
    }
}

/// Refuses a store whose root directory exists and belongs to another uid than the effective
/// one, root included: root writing into a user's store would leave files the user cannot
/// replace or delete. A root that does not exist yet is fine (it will be created as ours).
pub fn check_owner(layout: &Layout) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs::metadata(&layout.root) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                path: layout.root.clone(),
                source,
            });
        }
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() == euid {
        Ok(())
    } else {
        Err(StoreError::NotOwned {
            path: layout.root.clone(),
            owner: meta.uid(),
            euid,
        })
    }
}

/// Takes an exclusive `flock` on `path` if it is free; `None` if another process holds it.
fn try_lock_file(path: PathBuf) -> Result<Option<File>, StoreError> {
    match lock_file(path, Duration::ZERO) {
        Ok(file) => Ok(Some(file)),
        Err(StoreError::Busy) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Takes an exclusive `flock` on `path` (created if needed), polling up to `timeout`. The lock
/// is released when the returned file is dropped.
fn lock_file(path: PathBuf, timeout: Duration) -> Result<File, StoreError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Busy),
            Err(fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io { path, source });
            }
        }
    }
}
