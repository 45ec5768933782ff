//! Storing an output the compiler has just written by hard-linking it into the store, instead of
//! copying it (docs/design.md §3, "Outputs stored by link").
//!
//! rustc replaces its outputs by rename (rlib, rmeta, executables, shared objects: docs/facts.md
//! §5), so the inode a link pins keeps this compile's bytes when the next compile writes that
//! output again. Linking costs no copy: in the dev profile's edit loop, where every miss stores
//! its crate's rlib and the linked binary (tens to hundreds of MB), the copy was most of the cost
//! of a store. The blob is then the same inode as the output in the target dir, as a restored
//! rlib already is: a tool that writes through it in place (`strip` of a linked binary) changes
//! the blob's mtime, so the restore's check hashes it again, finds it changed and compiles
//! instead (`store::blob::open_verified`); `rcache verify` finds it too.
//!
//! Not synced: the blob is the very inode the compiler wrote, which neither it nor cargo syncs,
//! and on the dev loop's critical path an `fdatasync` of a fresh debug binary was most of a
//! store's cost (140 MiB of dirty pages: about 0.1 s). Its verified memo goes to the state
//! env's `unsynced_verified`, which the first process after a reboot forgets, so after a crash
//! the blob is hashed again at its next restore (or publish), and one the crash damaged is
//! removed and compiled again, never restored: as for fetched blobs
//! ([`super::blob::Durability::Refetchable`]).
//!
//! Not for files written in place (a `.d`, a C object that build tools may edit): those are
//! copied ([`super::blob::put_file`]).
//!
//! The other way round, a hit whose output a restore would copy (an rmeta, a binary, a shared
//! object: each needs a fresh mtime) is given the blob itself when no target dir holds it
//! ([`link_unshared`]): its mtime is set to now, as a copy's would be, and the target dir and
//! the store then share the inode exactly as after a miss stored by link. A fresh machine that
//! fetched its blobs, or a build after `cargo clean`, writes no second copy of them.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::blob::{StoredBlob, create_fan_out_dir, verified_memo_key};
use super::io_failed;
use super::layout::Layout;
use super::state::StateUpdate;
use crate::hash::file_hash::{self, FileStamp, Mutability};

/// What [`put_linked`] did.
pub enum Linked {
    /// The output is in the store; `mode` is its permission bits.
    Stored { blob: StoredBlob, mode: u32 },
    /// The output changed while it was being hashed: nothing is stored.
    Changed,
    /// It cannot be linked (another filesystem, a file its owner cannot write): copy it.
    NotLinkable,
}

/// Hard-links `output` into the store's `tmp/`, hashes it through that link, and renames the link
/// to its blob name unless the store holds that blob already. The blob is not synced (module
/// docs); it keeps the output's mode (rustc writes owner-writable files, which a hard-linked
/// restore needs: `store::blob` module docs). A blob stored here is memoized as verified, until
/// the next reboot, in `update`.
pub fn put_linked(layout: &Layout, output: &Path, update: &mut StateUpdate) -> io::Result<Linked> {
    let dir = layout.tmp_dir();
    let linked = tempfile::Builder::new()
        .prefix("link-")
        .make_in(&dir, |path| fs::hard_link(output, path));
    let link = match linked {
        Ok(link) => link,
        // EXDEV (the store on another filesystem), EPERM (protected hard links, a filesystem
        // without them), EMLINK: the caller copies instead.
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            tracing::debug!("cannot link {} into the store: {err}", output.display());
            return Ok(Linked::NotLinkable);
        }
        Err(err) => return Err(io_failed("hard-link into the store", output)(err)),
    };
    let mut file = fs_err::File::open(link.path())?;
    let meta = file.metadata()?;
    if meta.permissions().mode() & 0o200 == 0 {
        return Ok(Linked::NotLinkable);
    }
    // Mapped even for an executable: rustc replaced it by rename, and until this process exits
    // cargo has not handed it to anyone who might write it in place (file_hash's SIGBUS case).
    let hash = file_hash::hash_open(file.file_mut(), meta.len(), Mutability::ReplacedByRename)
        .map_err(io_failed("hash file", link.path()))?;
    let after = file.metadata()?;
    if !FileStamp::of(&meta).same_content_version(&FileStamp::of(&after)) {
        return Ok(Linked::Changed);
    }
    let blob = StoredBlob {
        hash,
        size: meta.len(),
    };
    let mode = meta.permissions().mode() & 0o7777;
    let destination = layout.blob_path(&hash);
    if destination.exists() {
        return Ok(Linked::Stored { blob, mode });
    }
    let unsynced = super::state::boot_id().is_some();
    if !unsynced {
        // No way to forget the memo after a reboot: made durable, as a copied blob is.
        file.file()
            .sync_data()
            .map_err(io_failed("sync file", link.path()))?;
    }
    create_fan_out_dir(&destination)?;
    let temp_path = link.path().to_path_buf();
    link.persist(&destination)
        .map_err(|err| super::io_failed_between("rename", &temp_path, &destination)(err.error))?;
    remember_verified(update, &hash, &meta, unsynced);
    Ok(Linked::Stored { blob, mode })
}

/// Memoizes the blob `hash` with stat data `meta` as verified: until the next reboot if
/// `unsynced`, else for good (no boot id to tell a reboot by, and the blob was synced).
fn remember_verified(
    update: &mut StateUpdate,
    hash: &blake3::Hash,
    meta: &fs::Metadata,
    unsynced: bool,
) {
    let memo = (verified_memo_key(hash, meta), *hash.as_bytes());
    if unsynced {
        update.unsynced_verified.push(memo);
    } else {
        update.file_hashes.push(memo);
    }
}

/// Makes `link` a hard link to the blob `hash` with `mode` and a fresh mtime, if the store's name
/// is the blob's only link: no target dir holds that inode, so its mtime is nobody else's. `blob`
/// is the file [`super::blob::open_verified`] opened and checked, `verified` its metadata then. True if `link` is
/// now that; false, with no `link` left, if the blob is shared (a target dir or a racing restore
/// holds it too), its mode cannot be an output's, it changed since it was checked, or any step
/// fails: the caller copies instead.
///
/// The mtime is the kernel's clock (`UTIME_NOW`), the one a copy's write would take: a later
/// finer-grained time could be newer than a dependent's outputs restored just after, and cargo
/// would find the dependent stale. The blob's new stat identity is memoized as verified, as a
/// blob stored by link is (module docs).
pub fn link_unshared(
    hash: &blake3::Hash,
    blob: &fs_err::File,
    verified: &fs::Metadata,
    link: &Path,
    mode: u32,
    update: &mut StateUpdate,
) -> bool {
    if verified.nlink() != 1 || mode & 0o200 == 0 {
        return false;
    }
    if fs::hard_link(blob.path(), link).is_err() {
        return false;
    }
    let adopted = adopt(blob, verified, link, mode);
    match adopted {
        Ok(after) => {
            // Without a boot id every blob was synced when it was written.
            remember_verified(update, hash, &after, super::state::boot_id().is_some());
            true
        }
        Err(err) => {
            tracing::debug!("restoring {} by link: {err}; copying", link.display());
            let _ = fs::remove_file(link);
            false
        }
    }
}

/// The checks and changes of [`link_unshared`] once `link` exists; the blob's metadata after.
fn adopt(
    blob: &fs_err::File,
    verified: &fs::Metadata,
    link: &Path,
    mode: u32,
) -> io::Result<fs::Metadata> {
    // The link's stat data is the blob's own now: the same inode.
    let linked = fs::symlink_metadata(link)?;
    // The very inode that was checked, and nobody else's link to it since.
    if (linked.dev(), linked.ino()) != (verified.dev(), verified.ino()) || linked.nlink() != 2 {
        return Err(io::Error::other("the blob is shared or was replaced"));
    }
    if !FileStamp::of(&linked).same_content_version(&FileStamp::of(verified)) {
        return Err(io::Error::other("the blob changed since it was checked"));
    }
    if verified.permissions().mode() & 0o7777 != mode {
        blob.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
    ];
    // SAFETY: a valid open descriptor and a two-element array, as futimens(2) asks.
    if unsafe { libc::futimens(blob.file().as_raw_fd(), times.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    blob.metadata()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_of(dir: &Path) -> Layout {
        let layout = Layout::new(dir.join("store"));
        fs::create_dir_all(layout.tmp_dir()).unwrap();
        layout
    }

    #[test]
    fn an_output_is_stored_as_the_same_inode_and_survives_its_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let layout = store_of(dir.path());
        let output = dir.path().join("libdemo-1.rlib");
        fs::write(&output, b"first compile").unwrap();
        let mut update = StateUpdate::default();
        let Linked::Stored { blob, .. } = put_linked(&layout, &output, &mut update).unwrap() else {
            panic!("not stored");
        };
        assert_eq!(blob.hash, blake3::hash(b"first compile"));
        let blob_path = layout.blob_path(&blob.hash);
        assert_eq!(
            fs::metadata(&blob_path).unwrap().ino(),
            fs::metadata(&output).unwrap().ino()
        );
        assert_eq!(
            update.unsynced_verified.len(),
            1,
            "memoized as verified until a reboot"
        );
        // The next compile replaces the output by rename, as rustc does.
        let next = dir.path().join("next.tmp");
        fs::write(&next, b"second compile").unwrap();
        fs::rename(&next, &output).unwrap();
        assert_eq!(fs::read(&blob_path).unwrap(), b"first compile");
        assert!(
            fs::read_dir(layout.tmp_dir()).unwrap().next().is_none(),
            "a link left in tmp/"
        );
    }

    #[test]
    fn content_the_store_holds_is_not_linked_again_and_no_link_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let layout = store_of(dir.path());
        let first = dir.path().join("a.rlib");
        let second = dir.path().join("b.rlib");
        fs::write(&first, b"same").unwrap();
        fs::write(&second, b"same").unwrap();
        let mut update = StateUpdate::default();
        assert!(matches!(
            put_linked(&layout, &first, &mut update).unwrap(),
            Linked::Stored { .. }
        ));
        assert!(matches!(
            put_linked(&layout, &second, &mut update).unwrap(),
            Linked::Stored { .. }
        ));
        let blob_path = layout.blob_path(&blake3::hash(b"same"));
        assert_eq!(
            fs::metadata(&blob_path).unwrap().ino(),
            fs::metadata(&first).unwrap().ino()
        );
        assert!(fs::read_dir(layout.tmp_dir()).unwrap().next().is_none());
    }

    #[test]
    fn a_missing_output_is_an_error_naming_it_and_a_read_only_one_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let layout = store_of(dir.path());
        let missing = dir.path().join("gone.rlib");
        let err = put_linked(&layout, &missing, &mut StateUpdate::default())
            .err()
            .expect("an error");
        assert!(err.to_string().contains("gone.rlib"), "{err}");

        let read_only = dir.path().join("ro.rlib");
        fs::write(&read_only, b"x").unwrap();
        fs::set_permissions(&read_only, fs::Permissions::from_mode(0o444)).unwrap();
        assert!(matches!(
            put_linked(&layout, &read_only, &mut StateUpdate::default()).unwrap(),
            Linked::NotLinkable
        ));
        assert!(fs::read_dir(layout.tmp_dir()).unwrap().next().is_none());
    }

    /// A blob in the store under its name only, as a fetch or a `cargo clean` leaves it, with an
    /// old mtime; its hash, and the blob opened the way a restore opens it.
    fn lone_blob(layout: &Layout, content: &[u8], mode: u32) -> (blake3::Hash, fs_err::File) {
        let hash = blake3::hash(content);
        let path = layout.blob_path(&hash);
        create_fan_out_dir(&path).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        // An old mtime, so that a fresh one shows.
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        (hash, fs_err::File::open(&path).unwrap())
    }

    /// [`link_unshared`] of `blob` as it is now, to `output` with `mode`.
    fn try_link(
        (hash, blob): &(blake3::Hash, fs_err::File),
        output: &Path,
        mode: u32,
        update: &mut StateUpdate,
    ) -> bool {
        let verified = blob.metadata().unwrap();
        link_unshared(hash, blob, &verified, output, mode, update)
    }

    #[test]
    fn a_blob_no_target_holds_is_linked_with_the_output_mode_a_fresh_mtime_and_a_memo() {
        let dir = tempfile::tempdir().unwrap();
        let layout = store_of(dir.path());
        let blob = lone_blob(&layout, b"#!binary", 0o644);
        let before = blob.1.metadata().unwrap();
        let output = dir.path().join("demo.rcache-1");
        let mut update = StateUpdate::default();
        assert!(try_link(&blob, &output, 0o755, &mut update));
        let linked = fs::metadata(&output).unwrap();
        assert_eq!(linked.ino(), before.ino());
        assert_eq!(linked.permissions().mode() & 0o7777, 0o755);
        assert!(
            linked.mtime() > before.mtime() + 1_000_000,
            "mtime not made fresh: {}",
            linked.mtime()
        );
        let memos = [&update.unsynced_verified[..], &update.file_hashes[..]].concat();
        let hash = blob.0;
        assert_eq!(
            memos,
            vec![(verified_memo_key(&hash, &linked), *hash.as_bytes())],
            "the new stat identity is memoized as verified"
        );
    }

    #[test]
    fn a_shared_or_read_only_blob_is_not_linked_and_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let layout = store_of(dir.path());
        let output = dir.path().join("libdemo.rmeta.rcache-1");
        let mut update = StateUpdate::default();

        // Another target dir holds the blob: its mtime is that target's, and stays.
        let held = lone_blob(&layout, b"rmeta", 0o644);
        fs::hard_link(held.1.path(), dir.path().join("held.rmeta")).unwrap();
        assert!(!try_link(&held, &output, 0o644, &mut update));

        // A racing restore linked it after it was opened and checked: the link count says so.
        let raced = lone_blob(&layout, b"raced", 0o644);
        let verified = raced.1.metadata().unwrap();
        fs::hard_link(raced.1.path(), dir.path().join("racer.rmeta")).unwrap();
        let linked = link_unshared(&raced.0, &raced.1, &verified, &output, 0o644, &mut update);
        assert!(!linked);
        let links = fs::metadata(raced.1.path()).unwrap().nlink();
        assert_eq!(links, 2, "the refused link was left behind");

        // An output mode that is not owner-writable: rustc could not replace it later.
        let read_only = lone_blob(&layout, b"read-only", 0o644);
        assert!(!try_link(&read_only, &output, 0o444, &mut update));

        assert!(!output.exists());
        for (_, blob) in [held, raced, read_only] {
            let mtime = blob.metadata().unwrap().mtime();
            assert_eq!(mtime, 1_000_000, "a refused blob's mtime was changed");
        }
        assert!(update.unsynced_verified.is_empty() && update.file_hashes.is_empty());
    }
}
