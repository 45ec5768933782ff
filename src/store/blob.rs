//! Content-addressed blobs: output files named by their blake3 hash, written once.
//!
//! A blob is streamed through the hasher into a temp file under `tmp/`, synced, and renamed into
//! `blobs/ab/cdef...`. A rename that finds the blob already there is a success: the content is the
//! same by construction (as gitoxide does for loose objects).
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

/// Mode of blob files, and so of hard-linked restored outputs: writable, see the module docs.
pub const BLOB_MODE: u32 = 0o644;

/// A blob written (or found) in the store.
#[derive(Debug, Clone, Copy)]
pub struct StoredBlob {
    pub hash: blake3::Hash,
    pub size: u64,
}

/// Copies `source` (a file, or bytes) into the store, hashing as it goes. The data is synced before the rename, so
/// an index entry committed afterwards never points at a blob whose content was lost in a crash.
pub fn put_file(layout: &Layout, source: &mut impl Read) -> io::Result<StoredBlob> {
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
    let destination = layout.blob_path(&hash);
    if destination.exists() {
        return Ok(StoredBlob { hash, size });
    }
    temp.as_file().sync_data()?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(BLOB_MODE))?;
    create_fan_out_dir(&destination)?;
    temp.persist(&destination).map_err(|err| err.error)?;
    Ok(StoredBlob { hash, size })
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
        let first = put_file(&layout, &mut File::open(&source).unwrap()).unwrap();
        let second = put_file(&layout, &mut File::open(&source).unwrap()).unwrap();
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
        let blob = put_file(&layout, &mut File::open(&source).unwrap()).unwrap();
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
}
