//! The sweep: what a crash or a killed process left behind, found by walking `blobs/` and
//! `tmp/` (docs/design.md §7). The only part of gc that walks the disk.
//!
//! - An orphan blob is a file under `blobs/` that no entry references: no `blob_refs` record (a
//!   store died between writing its blobs and committing), or a count of 0.
//! - A stale temp file is anything directly under `tmp/` (a blob being written, a dep-info file
//!   rcache asked rustc for) that nothing has modified for the grace period.
//!
//! - An incremental session kept for an entry that is gone (`store::sessions`).
//!
//! Both are removed only when older than the grace period ([`GC_GRACE_SECS`] by default): a
//! blob written for an entry that is not committed yet, or the temp file of a running compile,
//! is younger. Orphan blobs are deleted inside an index write transaction that checks again
//! that nothing references them.
//!
//! [`GC_GRACE_SECS`]: crate::store::layout::GC_GRACE_SECS

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use walkdir::WalkDir;

use crate::hash::Key;
use crate::store::layout::{GC_BATCH_ENTRIES, Layout};
use crate::store::{Store, StoreError};

/// What [`sweep`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub orphan_blobs: u64,
    pub orphan_bytes: u64,
    pub temp_files: u64,
    pub temp_bytes: u64,
}

/// Sweeps orphan blobs and stale temp files last modified more than `grace` ago.
pub fn sweep(
    store: &Store,
    grace: Duration,
    dry_run: bool,
    lock_timeout: Duration,
) -> Result<Swept, StoreError> {
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut swept = Swept::default();
    let old_blobs = blob_files_modified_before(&store.layout, cutoff)?;
    let orphans: Vec<(Key, u64)> = {
        let rtxn = store.index.read_txn()?;
        let mut orphans = Vec::new();
        for (blob, size) in old_blobs {
            if store
                .index
                .blob_ref(&rtxn, &blob)?
                .is_none_or(|record| record.refs == 0)
            {
                orphans.push((blob, size));
            }
        }
        orphans
    };
    if dry_run {
        swept.orphan_blobs = orphans.len() as u64;
        swept.orphan_bytes = orphans.iter().map(|(_, size)| size).sum();
    } else {
        for batch in orphans.chunks(GC_BATCH_ENTRIES * 4) {
            let blobs: Vec<Key> = batch.iter().map(|(blob, _)| *blob).collect();
            let _lock = store.lock(lock_timeout)?;
            let freed = store
                .index
                .free_orphan_blobs(&store.layout, &blobs, cutoff)?;
            swept.orphan_blobs += freed.blobs;
            swept.orphan_bytes += freed.bytes;
        }
    }
    let tmp = store.layout.tmp_dir();
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    for item in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
        let path = item.map_err(io_err(&tmp))?.path();
        let (newest, files, bytes) = match tree_summary(&path) {
            Ok(summary) => summary,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        if newest >= cutoff {
            continue;
        }
        if !dry_run {
            let removed = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        swept.temp_files += files;
        swept.temp_bytes += bytes;
    }
    if !dry_run {
        let rtxn = store.index.read_txn()?;
        let mut has_entry = |key: &Key| !matches!(store.index.entry(&rtxn, key), Ok(None));
        let sessions = store.layout.sessions_dir();
        crate::store::sessions::sweep(&store.layout, &mut has_entry, cutoff)
            .map_err(io_err(&sessions))?;
    }
    Ok(swept)
}

/// Every file under `blobs/ab/` named like a blob and last modified before `cutoff`, with its
/// size. Other files are left alone: rcache did not write them.
fn blob_files_modified_before(
    layout: &Layout,
    cutoff: SystemTime,
) -> Result<Vec<(Key, u64)>, StoreError> {
    let mut found = Vec::new();
    for item in WalkDir::new(layout.blobs_dir()).min_depth(2).max_depth(2) {
        let item = match item {
            Ok(item) => item,
            // A fan-out directory or a blob removed while walking.
            Err(err) if err.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) => {
                continue;
            }
            Err(err) => {
                let path = err
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| layout.blobs_dir());
                return Err(StoreError::Io {
                    path,
                    source: err.into(),
                });
            }
        };
        if !item.file_type().is_file() {
            continue;
        }
        let Some(hash) = Layout::blob_hash_of(item.path()) else {
            continue;
        };
        let Ok(meta) = item.metadata() else {
            continue;
        };
        if meta.modified().is_ok_and(|at| at < cutoff) {
            found.push((*hash.as_bytes(), meta.len()));
        }
    }
    Ok(found)
}

/// The newest modification time in a file or directory tree, its file count and bytes.
fn tree_summary(path: &Path) -> io::Result<(SystemTime, u64, u64)> {
    let mut newest = SystemTime::UNIX_EPOCH;
    let (mut files, mut bytes) = (0, 0);
    for item in WalkDir::new(path) {
        let meta = item?.metadata()?;
        newest = newest.max(meta.modified()?);
        if !meta.is_dir() {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((newest, files, bytes))
}
