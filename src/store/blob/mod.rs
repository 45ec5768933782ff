//! Content-addressed blobs: output files named by their blake3 hash, written once.
//!
//! A blob is streamed through the hasher into a temp file under `tmp/`, synced, and renamed into
//! `blobs/ab/cdef...`. A rename that finds the blob already there is a success: the content is the
//! same by construction (as gitoxide does for loose objects).
//!
//! A blob is verified against its name before a restore uses it ([`open_verified`]): a blob
//! changed on disk (by a tool writing through a hard-linked rlib, by hand, by a bad disk) is
//! detected, removed and reported, and the caller compiles instead. Hashing every blob of every
//! hit would cost more than the hit, so the verdict is memoized in the state env by the blob's
//! stat identity (see [`verified_memo_key`]); a blob rcache wrote itself is memoized as it is
//! written, so a restore normally hashes nothing.
//!
//! Unlike gitoxide's objects, blobs are *not* made read-only: restored rlibs are hard links to
//! them, and rustc refuses to replace an output file whose mode is not writable ("output file ...
//! is not writeable"), even as root and even though it replaces it by rename. A read-only blob
//! would make the next real compile of that crate fail. Blobs get mode 0644; `rcache verify`
//! detects a blob modified in place through a link.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::layout::Layout;
use super::state::StateUpdate;
use super::{Store, StoreError, io_failed, io_failed_between};
use crate::hash::file_hash::{self, FileStamp};
use crate::hash::{Key, KeyHasher};
// Blobs are opened through fs-err, so that a failed read of one names its path.
use fs_err::File;

/// Mode of blob files, and so of hard-linked restored outputs: writable, see the module docs.
pub const BLOB_MODE: u32 = 0o644;

/// A blob written (or found) in the store.
#[derive(Debug, Clone, Copy)]
pub struct StoredBlob {
    pub hash: blake3::Hash,
    pub size: u64,
}

/// Copies `source` (a file, or bytes) into the store, hashing as it goes. The data is synced
/// before the rename, so an index entry committed afterwards never points at a blob whose content
/// was lost in a crash. A blob written here is memoized as verified in `update`.
pub fn put_file(
    layout: &Layout,
    source: &mut impl Read,
    update: &mut StateUpdate,
) -> io::Result<StoredBlob> {
    let mut temp = temp_file(layout)?;
    let (hash, size) = match copy_hashing(source, &mut temp, None) {
        Ok(copied) => copied,
        // The source names its own path if it can (an fs-err file); this adds where to.
        Err(Copy::Read(err)) => {
            return Err(io_failed("read the output being stored into", temp.path())(
                err,
            ));
        }
        Err(Copy::Write(err)) => return Err(io_failed("write to file", temp.path())(err)),
        Err(Copy::TooLong) => unreachable!("no limit was set"),
    };
    persist(layout, temp, hash, Durability::Synced, update)?;
    Ok(StoredBlob { hash, size })
}

/// Whether a blob is synced before it is renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced: an index entry committed afterwards never points at a blob whose content a crash
    /// lost. Every blob the store makes from a compile's outputs.
    Synced,
    /// Not synced: a blob fetched from the remote, verified, and fetchable again. Its verified
    /// memo is kept apart (`State::unsynced_verified`) and forgotten by the first process after
    /// a reboot, so after a crash its next restore hashes it again; a blob the crash emptied,
    /// cut short or lost is found there (or by `rcache verify`), removed, and compiled again
    /// (store-format/README.md §9.4).
    Refetchable,
}

/// Why [`put_expected`] kept nothing.
#[derive(Debug)]
pub enum NotAsExpected {
    /// Reading the source failed (a decoder's source: the data does not decode).
    Source(io::Error),
    /// The source went on past the expected size; reading stopped at the first byte too many.
    TooLong { expected: u64 },
    /// The source ended before the expected size.
    TooShort { expected: u64, got: u64 },
    /// The content is not what the blob's name says.
    WrongHash,
    /// Writing into the store failed.
    Store(io::Error),
}

/// Copies `source` into the store as the blob `hash`, but only if it yields exactly `size` bytes
/// whose blake3 is `hash`: for a blob whose name and size come from elsewhere (a remote entry),
/// checked before the store keeps it. At most `size + 1` bytes are read and written, so a source
/// that would go on (a decompression bomb) costs no more than the size the caller expects. The
/// temp file of a refused blob is removed.
pub fn put_expected(
    layout: &Layout,
    source: &mut impl Read,
    expected: (&blake3::Hash, u64),
    durability: Durability,
    update: &mut StateUpdate,
) -> Result<StoredBlob, NotAsExpected> {
    let (hash, size) = expected;
    let mut temp = temp_file(layout).map_err(NotAsExpected::Store)?;
    let (actual, got) = match copy_hashing(source, &mut temp, Some(size)) {
        Ok(copied) => copied,
        Err(Copy::Read(err)) => return Err(NotAsExpected::Source(err)),
        Err(Copy::Write(err)) => {
            return Err(NotAsExpected::Store(io_failed(
                "write to file",
                temp.path(),
            )(err)));
        }
        Err(Copy::TooLong) => return Err(NotAsExpected::TooLong { expected: size }),
    };
    if got != size {
        return Err(NotAsExpected::TooShort {
            expected: size,
            got,
        });
    }
    if actual != *hash {
        return Err(NotAsExpected::WrongHash);
    }
    persist(layout, temp, actual, durability, update).map_err(NotAsExpected::Store)?;
    Ok(StoredBlob { hash: actual, size })
}

/// Where [`copy_hashing`] stopped.
enum Copy {
    Read(io::Error),
    Write(io::Error),
    /// More than the limit was read.
    TooLong,
}

/// Copies `source` into `temp`, hashing it; with a `limit`, reads at most one byte past it
/// and stops there. Returns the hash and the size.
fn copy_hashing(
    source: &mut impl Read,
    temp: &mut tempfile::NamedTempFile,
    limit: Option<u64>,
) -> Result<(blake3::Hash, u64), Copy> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        // With a limit, ask for no more than one byte past it.
        let want = match limit {
            Some(limit) => {
                let left = limit.saturating_add(1) - size;
                buffer
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => buffer.len(),
        };
        let read = match source.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(Copy::Read(err)),
        };
        size += read as u64;
        if limit.is_some_and(|limit| size > limit) {
            return Err(Copy::TooLong);
        }
        hasher.update(&buffer[..read]);
        temp.write_all(&buffer[..read]).map_err(Copy::Write)?;
    }
    Ok((hasher.finalize(), size))
}

/// A new temp file under `tmp/`, removed unless persisted.
fn temp_file(layout: &Layout) -> io::Result<tempfile::NamedTempFile> {
    let dir = layout.tmp_dir();
    tempfile::Builder::new()
        .prefix("blob-")
        .tempfile_in(&dir)
        .map_err(io_failed("create a temp file in", &dir))
}

/// Syncs a written temp file and renames it to the blob `hash`, unless that blob exists (the
/// content is the same by construction); memoizes it as verified in `update`. Every error names
/// the step and the file: the temp file, the fan-out directory, or the rename into `blobs/`.
fn persist(
    layout: &Layout,
    temp: tempfile::NamedTempFile,
    hash: blake3::Hash,
    durability: Durability,
    update: &mut StateUpdate,
) -> io::Result<()> {
    let destination = layout.blob_path(&hash);
    if destination.exists() {
        return Ok(());
    }
    // Without a boot id a reboot cannot be told apart, and an unsynced memo would outlive it.
    if durability == Durability::Synced || super::state::boot_id().is_none() {
        temp.as_file()
            .sync_data()
            .map_err(io_failed("sync file", temp.path()))?;
    }
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(BLOB_MODE))
        .map_err(io_failed("set permissions for file", temp.path()))?;
    create_fan_out_dir(&destination)?;
    let temp_path = temp.path().to_path_buf();
    let file = temp
        .persist(&destination)
        .map_err(|err| io_failed_between("rename", &temp_path, &destination)(err.error))?;
    if let Ok(meta) = file.metadata() {
        let memo = (verified_memo_key(&hash, &meta), *hash.as_bytes());
        match durability {
            Durability::Synced => update.file_hashes.push(memo),
            Durability::Refetchable => update.unsynced_verified.push(memo),
        }
    }
    Ok(())
}

/// The state-env memo key saying "the blob `hash` with this stat identity was verified".
///
/// Unlike an input file's memo key it leaves out the ctime: hard-linking a restored rlib to the
/// blob changes the blob's ctime, and would void the memo at every hit. A write to the blob
/// changes its mtime (a later tick than the blob's creation), so a modified blob still misses.
pub fn verified_memo_key(hash: &blake3::Hash, meta: &fs::Metadata) -> Key {
    let stamp = FileStamp::of(meta);
    KeyHasher::new("blob-verified", 1)
        .field("hash", hash.as_bytes())
        .field("dev", &stamp.dev.to_le_bytes())
        .field("ino", &stamp.ino.to_le_bytes())
        .field("size", &stamp.size.to_le_bytes())
        .field("mtime", &stamp.mtime_ns.to_le_bytes())
        .finish()
}

/// Opens a blob for restoring: checks its size, then its content against its name unless the
/// state env remembers this very file as verified. A blob whose content does not match is
/// removed (a later store writes it again) and reported as `InvalidData`; so is a truncated one.
pub fn open_verified(
    store: &Store,
    hash: &blake3::Hash,
    size: u64,
    update: &mut StateUpdate,
) -> io::Result<File> {
    open_verified_with_metadata(store, hash, size, update).map(|(file, _)| file)
}

/// [`open_verified`], and the blob's metadata as it was checked (a restore that may link the
/// blob needs its link count and stat data then).
pub fn open_verified_with_metadata(
    store: &Store,
    hash: &blake3::Hash,
    size: u64,
    update: &mut StateUpdate,
) -> io::Result<(File, fs::Metadata)> {
    let mut file = match open_checked(&store.layout, hash, size) {
        Err(err) if err.kind() == io::ErrorKind::InvalidData => {
            remove_if_damaged(&store.layout, hash);
            return Err(err);
        }
        opened => opened?,
    };
    let meta = file.metadata()?;
    let memo_key = verified_memo_key(hash, &meta);
    if remembered_as_verified(store, &memo_key, hash) {
        return Ok((file, meta));
    }
    let path = store.layout.blob_path(hash);
    // The open file itself is hashed, not its path: what the caller then copies or links is
    // the very file checked here, even if gc removed the path meanwhile.
    let digest = hash_opened(&mut file, &meta).map_err(io_failed("hash file", &path))?;
    if digest != *hash {
        let _ = fs::remove_file(&path);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob {} does not hold the content its name says (removed)",
                path.display()
            ),
        ));
    }
    // Hashed from what may be unsynced pages (an output stored by link, a fetched blob):
    // trusted until the next reboot only, when a crash may have lost them.
    update.unsynced_verified.push((memo_key, *hash.as_bytes()));
    Ok((file, meta))
}

/// Hashes an open blob from its start, then puts its offset back at the start for the caller's
/// reads. A blob written meanwhile (through a hard link) is an error, never a verdict.
fn hash_opened(file: &mut File, meta: &fs::Metadata) -> io::Result<blake3::Hash> {
    use std::io::{Seek, SeekFrom};
    let hash = file_hash::hash_reader(file.file_mut(), meta.len())?;
    if !FileStamp::of(&file.metadata()?).same_content_version(&FileStamp::of(meta)) {
        return Err(io::Error::other(
            "the blob changed while it was being hashed",
        ));
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(hash)
}

/// A blob of another size than its entry says: written in place through a hard link (a stored
/// or restored output that a tool appended to), or truncated. Removed if its content is not what
/// its name says, so that the next store of that content writes it again; a blob that is right
/// (the entry's size is what is wrong) stays.
fn remove_if_damaged(layout: &Layout, hash: &blake3::Hash) {
    let path = layout.blob_path(hash);
    if file_hash::hash_file(&path).is_ok_and(|digest| digest.hash != *hash) {
        let _ = fs::remove_file(&path);
    }
}

/// True if the state env remembers this very file as verified: a synced blob's memo, or an
/// unsynced (fetched) blob's memo written in this boot.
fn remembered_as_verified(store: &Store, memo_key: &Key, hash: &blake3::Hash) -> bool {
    let remembered = || -> Result<Option<Key>, StoreError> {
        let rtxn = store.state.read_txn()?;
        match store.state.file_hash(&rtxn, memo_key)? {
            Some(known) => Ok(Some(known)),
            None => store.state.unsynced_verified(&rtxn, memo_key),
        }
    };
    matches!(remembered(), Ok(Some(known)) if known == *hash.as_bytes())
}

/// Creates `blobs/ab/`; an `AlreadyExists` from a concurrent writer is fine.
pub(super) fn create_fan_out_dir(blob_path: &Path) -> io::Result<()> {
    let parent = blob_path
        .parent()
        .expect("blob paths have a fan-out parent");
    match fs_err::create_dir(parent) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => fs_err::create_dir_all(parent),
        Err(err) => Err(err),
    }
}

/// Opens a blob for restoring and checks its size; `Err` if it is missing or truncated. Reads
/// from the file, like every error here, name the blob's path.
pub fn open_checked(layout: &Layout, hash: &blake3::Hash, size: u64) -> io::Result<File> {
    let path = layout.blob_path(hash);
    let file = File::open(&path)?;
    let actual = file.metadata()?.len();
    if actual != size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob {} has {actual} bytes, the index says {size}",
                path.display()
            ),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests;
