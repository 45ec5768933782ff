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

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::layout::Layout;
use super::state::StateUpdate;
use super::{Store, StoreError};
use crate::hash::file_hash::{self, FileStamp};
use crate::hash::{Key, KeyHasher};

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
    let mut temp = tempfile::Builder::new()
        .prefix("blob-")
        .tempfile_in(layout.tmp_dir())?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..read]);
        temp.write_all(&buffer[..read])?;
        size += read as u64;
    }
    let hash = hasher.finalize();
    persist(layout, temp, hash, update)?;
    Ok(StoredBlob { hash, size })
}

/// Stores `bytes` whose blake3 the caller has just computed and checked (a blob fetched from a
/// remote, verified against its name before it is kept): [`put_file`] without hashing again.
pub fn put_hashed_bytes(
    layout: &Layout,
    bytes: &[u8],
    hash: blake3::Hash,
    update: &mut StateUpdate,
) -> io::Result<StoredBlob> {
    let mut temp = tempfile::Builder::new()
        .prefix("blob-")
        .tempfile_in(layout.tmp_dir())?;
    temp.write_all(bytes)?;
    persist(layout, temp, hash, update)?;
    Ok(StoredBlob {
        hash,
        size: bytes.len() as u64,
    })
}

/// Syncs a written temp file and renames it to the blob `hash`, unless that blob exists (the
/// content is the same by construction); memoizes it as verified in `update`.
fn persist(
    layout: &Layout,
    temp: tempfile::NamedTempFile,
    hash: blake3::Hash,
    update: &mut StateUpdate,
) -> io::Result<()> {
    let destination = layout.blob_path(&hash);
    if destination.exists() {
        return Ok(());
    }
    temp.as_file().sync_data()?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(BLOB_MODE))?;
    create_fan_out_dir(&destination)?;
    let file = temp.persist(&destination).map_err(|err| err.error)?;
    if let Ok(meta) = file.metadata() {
        update
            .file_hashes
            .push((verified_memo_key(&hash, &meta), *hash.as_bytes()));
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
    let file = open_checked(&store.layout, hash, size)?;
    let meta = file.metadata()?;
    let memo_key = verified_memo_key(hash, &meta);
    if remembered_as_verified(store, &memo_key, hash) {
        return Ok(file);
    }
    let path = store.layout.blob_path(hash);
    let digest = file_hash::hash_file(&path)?;
    if digest.hash != *hash {
        let _ = fs::remove_file(&path);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob {} does not hold the content its name says (removed)",
                path.display()
            ),
        ));
    }
    if FileStamp::of(&meta) == digest.stamp {
        update.file_hashes.push((memo_key, *hash.as_bytes()));
    }
    Ok(file)
}

fn remembered_as_verified(store: &Store, memo_key: &Key, hash: &blake3::Hash) -> bool {
    let remembered = || -> Result<Option<Key>, StoreError> {
        let rtxn = store.state.read_txn()?;
        store.state.file_hash(&rtxn, memo_key)
    };
    matches!(remembered(), Ok(Some(known)) if known == *hash.as_bytes())
}

/// Creates `blobs/ab/`; an `AlreadyExists` from a concurrent writer is fine.
fn create_fan_out_dir(blob_path: &Path) -> io::Result<()> {
    let parent = blob_path
        .parent()
        .expect("blob paths have a fan-out parent");
    match fs::create_dir(parent) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => fs::create_dir_all(parent),
        Err(err) => Err(err),
    }
}

/// Opens a blob for restoring and checks its size; `Err` if it is missing or truncated.
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
mod tests {
    use super::*;

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        fs::create_dir_all(layout.tmp_dir()).unwrap();
        fs::create_dir_all(layout.blobs_dir()).unwrap();
        (dir, layout)
    }

    #[test]
    fn identical_content_is_stored_once() {
        let (dir, layout) = layout();
        let source = dir.path().join("src");
        fs::write(&source, b"hello").unwrap();
        let first = put_file(
            &layout,
            &mut File::open(&source).unwrap(),
            &mut StateUpdate::default(),
        )
        .unwrap();
        let second = put_file(
            &layout,
            &mut File::open(&source).unwrap(),
            &mut StateUpdate::default(),
        )
        .unwrap();
        assert_eq!(first.hash, blake3::hash(b"hello"));
        assert_eq!(first.hash, second.hash);
        assert_eq!(fs::read(layout.blob_path(&first.hash)).unwrap(), b"hello");
        assert_eq!(fs::read_dir(layout.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn truncated_blob_is_refused() {
        let (dir, layout) = layout();
        let source = dir.path().join("src");
        fs::write(&source, b"hello world").unwrap();
        let blob = put_file(
            &layout,
            &mut File::open(&source).unwrap(),
            &mut StateUpdate::default(),
        )
        .unwrap();
        assert!(open_checked(&layout, &blob.hash, blob.size).is_ok());
        let path = layout.blob_path(&blob.hash);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(3)
            .unwrap();
        assert!(open_checked(&layout, &blob.hash, blob.size).is_err());
    }

    #[test]
    fn a_blob_changed_on_disk_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let mut written = StateUpdate::default();
        let blob = put_file(&store.layout, &mut &b"the real content"[..], &mut written).unwrap();
        assert_eq!(
            written.file_hashes.len(),
            1,
            "a new blob is memoized as verified"
        );
        store.state.apply(&written).unwrap();

        let mut update = StateUpdate::default();
        assert!(open_verified(&store, &blob.hash, blob.size, &mut update).is_ok());
        assert!(
            update.file_hashes.is_empty(),
            "memoized: nothing re-verified"
        );

        // Same size, other bytes: only the content check can tell.
        let path = store.layout.blob_path(&blob.hash);
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&path, b"the fake content").unwrap();
        let err = open_verified(&store, &blob.hash, blob.size, &mut update).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            !path.exists(),
            "the corrupt blob is removed so that a store rewrites it"
        );
    }

    #[test]
    fn an_unmemoized_blob_is_hashed_once_then_memoized() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let blob = put_file(
            &store.layout,
            &mut &b"content"[..],
            &mut StateUpdate::default(),
        )
        .unwrap();
        let mut update = StateUpdate::default();
        assert!(open_verified(&store, &blob.hash, blob.size, &mut update).is_ok());
        assert_eq!(
            update.file_hashes.len(),
            1,
            "verified by hashing, then memoized"
        );
    }
}
