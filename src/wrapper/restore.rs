//! A hit: check every blob, materialize the outputs, then replay rustc's output.
//!
//! Order (docs/design.md §4): every blob is opened and checked (its size, and its name unless a
//! memo says that blob file was checked already) before the first byte of output is written; then the outputs are materialized; then the `.rmeta` artifact notification is
//! written, then the rest. Any failure before the replay falls back to compiling. After the
//! first byte of replay there is no falling back: cargo may already have started dependents.
//!
//! Materialization policy:
//! - `.rlib`: hard link to the blob (rustc replaces rlibs by rename, so the blob is never written
//!   through the link); a copy if linking fails (another filesystem).
//! - `.rmeta`: a copy (a reflink where the filesystem has them). It gives the unit a fresh mtime
//!   without touching the blob's inode, which other target dirs share: cargo marks a unit stale
//!   when a dependency's newest output is newer than its own newest output. A blob no target dir
//!   holds is linked instead, its mtime set to now (`store::linked_blob::link_unshared`).
//! - `.d`: a copy with its target paths rewritten for this out dir (rustc rewrites `.d` files in
//!   place, so a hard link would let it overwrite the blob).
//! - executables, shared objects (proc macros, dylibs, cdylibs) and staticlibs: a copy with the
//!   recorded mode. A proc macro's `.so` is its unit's only output, so it needs a fresh mtime as
//!   much as an rmeta does; executables may be edited in place by tools such as `strip`. Linked
//!   like an rmeta when no target dir holds the blob: then the target dir and the store share it
//!   as after a miss stored by link, where such an edit is caught at the next restore.
//!
//! Every file is written under a temp name in the out dir and renamed into place, so a reader
//! never sees half a file.

use std::fs::Permissions;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::depinfo::escape_path;
use crate::key::BaseDirs;
use crate::rustc::outputs::ExpectedOutput;
use crate::store::entry::Entry;
use crate::store::entry::OutputKind;
use crate::store::state::StateUpdate;
use crate::store::{Store, blob, io_failed, io_failed_between, linked_blob};

/// A materialized output, with the hash rcache knows for it (none for a rewritten `.d`).
pub struct Restored {
    pub path: PathBuf,
    pub known_hash: Option<[u8; 32]>,
}

/// Materializes every output of `entry` into `out_dir` (resolved against the cwd); `.d` targets
/// are rewritten to `out_dir_as_given`, the spelling rustc would have used. Nothing is printed.
///
/// The entry must name exactly the files this invocation writes (`expected`, in order): a
/// corrupt or hostile entry whose names would reach outside the out dir (`..`, an absolute path,
/// a path through a directory or symlink) or clobber another file is refused before anything is
/// opened or written.
pub fn materialize(
    store: &Store,
    entry: &Entry,
    expected: &[ExpectedOutput],
    out_dir: &Path,
    out_dir_as_given: &Path,
    bases: &BaseDirs,
    update: &mut StateUpdate,
) -> io::Result<Vec<Restored>> {
    check_names(entry, expected)?;
    let mut opened = Vec::with_capacity(entry.outputs.len());
    for output in &entry.outputs {
        let hash = blake3::Hash::from_bytes(output.blob);
        opened.push(blob::open_verified_with_metadata(
            store,
            &hash,
            output.size,
            update,
        )?);
    }
    let mut restored = Vec::with_capacity(entry.outputs.len());
    for (output, (mut file, verified)) in entry.outputs.iter().zip(opened) {
        let destination = out_dir.join(&output.name);
        let hash = blake3::Hash::from_bytes(output.blob);
        let temp = temp_name(&destination);
        let _ = std::fs::remove_file(&temp);
        // A write or copy that fails (a full disk, EIO) must not leave half a file in the out
        // dir: the temp name is removed at the end of this iteration, whatever happened.
        let _temp = RemoveOnDrop(&temp);
        let known_hash = match output.kind {
            OutputKind::Rlib => {
                if std::fs::hard_link(store.layout.blob_path(&hash), &temp).is_err() {
                    copy_blob(&file, &temp, output.mode)?;
                }
                Some(output.blob)
            }
            OutputKind::Rmeta | OutputKind::Linked => {
                let linked =
                    linked_blob::link_unshared(&hash, &file, &verified, &temp, output.mode, update);
                if !linked {
                    copy_blob(&file, &temp, output.mode)?;
                }
                Some(output.blob)
            }
            OutputKind::DepInfo => {
                let mut text = Vec::with_capacity(output.size as usize);
                file.read_to_end(&mut text)?;
                let unfillable = || {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the entry's dep-info names a base dir this unit does not have",
                    )
                };
                let filled = bases.expand(&text).ok_or_else(unfillable)?;
                let old_out_dir = bases.expand(&entry.out_dir).ok_or_else(unfillable)?;
                let rewritten = rewrite_dep_info(&filled, &old_out_dir, out_dir_as_given);
                write_with_mode(&temp, &rewritten, output.mode)?;
                (rewritten == text).then_some(output.blob)
            }
            OutputKind::RunFile
            | OutputKind::RunFileTemplate
            | OutputKind::RunDir
            | OutputKind::RunSymlink
            | OutputKind::CcObject
            | OutputKind::CcDepFile
            | OutputKind::CcSplitDwarf => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a build-script run's or a C compile's entry under a rustc key",
                ));
            }
        };
        let renamed = fs_err::rename(&temp, &destination);
        if renamed.is_err() || output.kind == OutputKind::Rlib {
            // A rename between two links to the same file does nothing and succeeds (POSIX),
            // leaving the temp link: the destination was already this blob.
            let _ = std::fs::remove_file(&temp);
        }
        renamed?;
        restored.push(Restored {
            path: destination,
            known_hash,
        });
    }
    Ok(restored)
}

/// Refuses an entry whose outputs are not exactly `expected`, kind and file name, in order.
/// Expected names are single file names built from the crate name, so this also guarantees that
/// every destination is a direct child of the out dir.
fn check_names(entry: &Entry, expected: &[ExpectedOutput]) -> io::Result<()> {
    let matches = entry.outputs.len() == expected.len()
        && entry
            .outputs
            .iter()
            .zip(expected)
            .all(|(output, expected)| {
                output.kind == expected.kind
                    && output.name == expected.file_name
                    && is_plain_file_name(&output.name)
            });
    if matches {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "refusing an entry whose output names are not this compile's",
        ))
    }
}

/// One normal path component: no separator, not `.` or `..`, not empty.
fn is_plain_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(std::path::Component::Normal(_)))
        && components.next().is_none()
}

pub fn temp_name(destination: &Path) -> PathBuf {
    let mut name = destination.as_os_str().to_os_string();
    name.push(format!(".rcache-{}", std::process::id()));
    PathBuf::from(name)
}

/// Removes a file when dropped; a file already renamed away is simply not found.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Copies an opened blob to a new file at `destination` (a reflink where the filesystem has them)
/// and sets the mode; errors name the paths. `blob` is as [`blob::open_verified`] returns it, at
/// its start. The copy reads the file that was opened and checked, never the blob's path again:
/// gc may remove that path meanwhile (the open file lives on), and the bytes copied are the ones
/// whose size and hash were checked.
pub fn copy_blob(blob: &fs_err::File, destination: &Path, mode: u32) -> io::Result<()> {
    let copy_failed = || io_failed_between("copy", blob.path(), destination);
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(destination)
        .map_err(copy_failed())?;
    if reflink_copy::reflink_file(blob.file(), &target).is_err() {
        // No reflinks here (ext4, tmpfs, another filesystem): a copy, through copy_file_range.
        io::copy(&mut blob.file(), &mut target).map_err(copy_failed())?;
    }
    target
        .set_permissions(Permissions::from_mode(mode))
        .map_err(io_failed("set permissions for file", destination))
}

/// Writes a new file with its mode; errors name the path.
pub fn write_with_mode(destination: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut file = fs_err::File::create(destination)?;
    file.write_all(content)?;
    file.set_permissions(Permissions::from_mode(mode))
}

/// Rewrites the target paths of a `.d` file from the producing compile's out dir to this one.
/// Only line starts are rewritten: targets are the out-dir files; inputs are left alone.
pub fn rewrite_dep_info(text: &[u8], old_out_dir: &[u8], new_out_dir: &Path) -> Vec<u8> {
    let new_out_dir = new_out_dir.as_os_str().as_bytes();
    if old_out_dir == new_out_dir {
        return text.to_vec();
    }
    let old_prefix = dir_prefix(old_out_dir);
    let new_prefix = dir_prefix(new_out_dir);
    let mut rewritten = Vec::with_capacity(text.len() + 256);
    for line in text.split_inclusive(|&byte| byte == b'\n') {
        match line.strip_prefix(old_prefix.as_slice()) {
            Some(rest) => {
                rewritten.extend_from_slice(&new_prefix);
                rewritten.extend_from_slice(rest);
            }
            None => rewritten.extend_from_slice(line),
        }
    }
    rewritten
}

/// `dir/`, escaped the way rustc writes paths in a `.d` file.
fn dir_prefix(dir: &[u8]) -> Vec<u8> {
    let mut prefix = escape_path(&String::from_utf8_lossy(dir)).into_bytes();
    if !prefix.ends_with(b"/") {
        prefix.push(b'/');
    }
    prefix
}

/// Writes the captured stdout and stderr. With JSON artifact notifications, the `.rmeta`
/// notification goes first (cargo starts dependents on it) and every notification names the
/// file in this out dir.
pub fn replay(entry: &Entry, captured_stderr: &[u8], out_dir: &Path, json_artifacts: bool) {
    let mut stderr = io::stderr().lock();
    let mut stdout = io::stdout().lock();
    if !json_artifacts {
        let _ = stdout.write_all(&entry.stdout);
        let _ = stderr.write_all(captured_stderr);
        return;
    }
    let lines: Vec<&[u8]> = captured_stderr
        .split_inclusive(|&byte| byte == b'\n')
        .collect();
    let rmeta_position = lines
        .iter()
        .position(|line| artifact(line).is_some_and(|(_, emit)| emit == "metadata"));
    if let Some(position) = rmeta_position {
        let _ = stderr.write_all(&rewrite_artifact(lines[position], out_dir));
        let _ = stderr.flush();
    }
    let _ = stdout.write_all(&entry.stdout);
    for (position, line) in lines.iter().enumerate() {
        if Some(position) != rmeta_position {
            let _ = stderr.write_all(&rewrite_artifact(line, out_dir));
        }
    }
    let _ = stderr.flush();
    let _ = stdout.flush();
}

/// The artifact path and emit kind of an artifact notification line.
pub fn artifact(line: &[u8]) -> Option<(String, String)> {
    if !line.starts_with(b"{\"$message_type\":\"artifact\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    Some((
        value.get("artifact")?.as_str()?.to_string(),
        value.get("emit")?.as_str()?.to_string(),
    ))
}

/// An artifact notification naming the same file in `out_dir`; other lines unchanged.
fn rewrite_artifact(line: &[u8], out_dir: &Path) -> Vec<u8> {
    let Some((path, emit)) = artifact(line) else {
        return line.to_vec();
    };
    let Some(name) = Path::new(&path).file_name() else {
        return line.to_vec();
    };
    let new_path = out_dir.join(name);
    let mut rewritten = format!(
        "{{\"$message_type\":\"artifact\",\"artifact\":{},\"emit\":{}}}",
        serde_json::Value::String(new_path.to_string_lossy().into_owned()),
        serde_json::Value::String(emit)
    )
    .into_bytes();
    if line.ends_with(b"\n") {
        rewritten.push(b'\n');
    }
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn dep_info_targets_follow_the_out_dir() {
        let text = "/old\\ dir/deps/demo-1.d: src/lib.rs /old\\ dir/deps/../x.rs\n\n\
/old\\ dir/deps/libdemo-1.rmeta: src/lib.rs\n\nsrc/lib.rs:\n\n# env-dep:A=/old dir/deps/\n";
        let rewritten = rewrite_dep_info(text.as_bytes(), b"/old dir/deps", Path::new("/new/deps"));
        let rewritten = String::from_utf8(rewritten).unwrap();
        assert!(rewritten.starts_with("/new/deps/demo-1.d: src/lib.rs /old\\ dir/deps/../x.rs\n"));
        assert!(rewritten.contains("\n/new/deps/libdemo-1.rmeta: src/lib.rs\n"));
        assert!(rewritten.contains("# env-dep:A=/old dir/deps/"));
    }

    #[test]
    fn artifact_lines_are_rewritten() {
        let line = b"{\"$message_type\":\"artifact\",\"artifact\":\"/a/deps/libx-1.rmeta\",\"emit\":\"metadata\"}\n";
        let rewritten = rewrite_artifact(line, Path::new("/b/deps"));
        assert_eq!(
            String::from_utf8(rewritten).unwrap(),
            "{\"$message_type\":\"artifact\",\"artifact\":\"/b/deps/libx-1.rmeta\",\"emit\":\"metadata\"}\n"
        );
        let other = b"{\"$message_type\":\"diagnostic\"}\n";
        assert_eq!(rewrite_artifact(other, Path::new("/b")), other.to_vec());
    }

    /// A store holding one rlib, and the entry and expected outputs that restore it.
    fn rlib_entry(root: &Path) -> (Store, Entry, Vec<ExpectedOutput>) {
        let store = Store::open(root.join("store")).unwrap();
        let mut update = StateUpdate::default();
        let blob = blob::put_file(&store.layout, &mut &b"rlib bytes"[..], &mut update).unwrap();
        store.state.apply(&update).unwrap();
        let entry = Entry {
            outputs: vec![crate::store::entry::OutputRecord {
                name: "libdemo.rlib".into(),
                kind: OutputKind::Rlib,
                blob: *blob.hash.as_bytes(),
                size: blob.size,
                mode: 0o644,
            }],
            stdout: vec![],
            stderr: vec![],
            out_dir: b"/o".to_vec(),
            compile_ms: 1,
            created_unix_ms: 1,
        };
        let expected = vec![ExpectedOutput {
            kind: OutputKind::Rlib,
            file_name: "libdemo.rlib".into(),
        }];
        (store, entry, expected)
    }

    #[test]
    fn a_failed_restore_names_the_file() {
        let root = tempfile::tempdir().unwrap();
        let (store, entry, expected) = rlib_entry(root.path());
        let mut update = StateUpdate::default();

        // No out dir: the link fails, then the copy, which names both ends.
        let missing = root.path().join("missing");
        let err = materialize(
            &store,
            &entry,
            &expected,
            &missing,
            &missing,
            &BaseDirs::none(),
            &mut update,
        )
        .err()
        .expect("no out dir to restore into");
        let text = err.to_string();
        assert!(text.contains("failed to copy"), "{text}");
        assert!(
            text.contains(&missing.join("libdemo.rlib").display().to_string()),
            "{text}"
        );
        assert_eq!(crate::store::io_reason(&err), "missing_file");

        // The destination is a directory with a file in it: the rename fails, and says so.
        let out = root.path().join("out");
        fs::create_dir_all(out.join("libdemo.rlib/inside")).unwrap();
        let err = materialize(
            &store,
            &entry,
            &expected,
            &out,
            &out,
            &BaseDirs::none(),
            &mut update,
        )
        .err()
        .expect("a directory is in the way");
        let text = err.to_string();
        assert!(text.contains("failed to rename"), "{text}");
        assert!(
            text.contains(&out.join("libdemo.rlib").display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn a_blob_removed_after_it_was_opened_is_still_copied_whole() {
        let root = tempfile::tempdir().unwrap();
        let (store, entry, _) = rlib_entry(root.path());
        let hash = blake3::Hash::from_bytes(entry.outputs[0].blob);
        let opened = blob::open_verified(&store, &hash, 10, &mut StateUpdate::default()).unwrap();
        // gc frees the blob between the check and the copy.
        fs::remove_file(store.layout.blob_path(&hash)).unwrap();
        let copy = root.path().join("copy");
        copy_blob(&opened, &copy, 0o751).unwrap();
        assert_eq!(fs::read(&copy).unwrap(), b"rlib bytes");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&copy).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o751);
        // An existing destination is never written through.
        let err = copy_blob(&opened, &copy, 0o644).unwrap_err();
        assert!(err.to_string().contains("failed to copy"), "{err}");
        assert_eq!(fs::read(&copy).unwrap(), b"rlib bytes");
    }

    #[test]
    fn a_missing_blob_names_its_path_on_restore() {
        let root = tempfile::tempdir().unwrap();
        let (store, entry, expected) = rlib_entry(root.path());
        let blob_path = store
            .layout
            .blob_path(&blake3::Hash::from_bytes(entry.outputs[0].blob));
        fs::remove_file(&blob_path).unwrap();
        let out = root.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let err = materialize(
            &store,
            &entry,
            &expected,
            &out,
            &out,
            &BaseDirs::none(),
            &mut StateUpdate::default(),
        )
        .err()
        .expect("the blob is gone");
        assert!(
            err.to_string().contains(&blob_path.display().to_string()),
            "{err}"
        );
        assert_eq!(crate::store::io_reason(&err), "missing_file");
    }
}
