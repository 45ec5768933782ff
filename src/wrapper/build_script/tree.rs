//! A run's `OUT_DIR` tree: captured into blobs after a run, restored from them on a hit.
//!
//! Every directory, regular file and symlink is an [`OutputRecord`] (`RunDir`, `RunFile`,
//! `RunSymlink`) named by its path relative to `OUT_DIR`, in walk order (parents first). A
//! symlink's blob holds its target's bytes. Anything else (a fifo, a socket) and the run is not
//! stored (`special_file_in_out_dir`).
//!
//! Restoring trusts no name: each must be a plain relative path below a recorded directory and
//! not below a recorded symlink, so nothing is ever written outside `OUT_DIR`.

use std::collections::HashSet;
use std::fs::Permissions;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use walkdir::WalkDir;

use crate::hash::file_hash::FileStamp;
use crate::key::BaseDirs;
use crate::stats::NotStoredReason;
use crate::store::entry::OutputKind;
use crate::store::entry::{Entry, OutputRecord};
use crate::store::state::StateUpdate;
use crate::store::{Store, blob};
use crate::wrapper::restore::copy_blob;

/// Why a tree was not captured.
#[derive(Debug)]
pub enum CaptureError {
    /// A policy decision, counted under `not_stored`.
    Refused(NotStoredReason),
    Io(io::Error),
}

impl From<io::Error> for CaptureError {
    fn from(err: io::Error) -> Self {
        CaptureError::Io(err)
    }
}

/// Stores every file of `out_dir` as a blob and returns the tree's records, and whether a file
/// holds one of the run's base dirs where no template can stand for it (a binary file): the run
/// is then path-bound. A text file that names them is stored as a template
/// (`RunFileTemplate`), a symlink's target always templated (docs/design.md §6e).
pub fn capture(
    store: &Store,
    out_dir: &Path,
    bases: &BaseDirs,
    update: &mut StateUpdate,
) -> Result<(Vec<OutputRecord>, bool), CaptureError> {
    let mut holds_path = false;
    let mut records = Vec::new();
    for entry in WalkDir::new(out_dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(walk_error)?;
        let Some(name) = entry
            .path()
            .strip_prefix(out_dir)
            .ok()
            .and_then(Path::to_str)
            .map(str::to_string)
        else {
            return Err(CaptureError::Refused(NotStoredReason::NonUtf8OutDirPath));
        };
        let meta = entry.metadata().map_err(walk_error)?;
        let mode = meta.permissions().mode() & 0o7777;
        let file_type = meta.file_type();
        let (kind, stored) = if file_type.is_dir() {
            (OutputKind::RunDir, None)
        } else if file_type.is_symlink() {
            let target = fs_err::read_link(entry.path())?;
            let template = bases.template(target.as_os_str().as_bytes());
            holds_path |= bases.found_in(&template);
            let stored = blob::put_file(&store.layout, &mut template.as_slice(), update)?;
            (OutputKind::RunSymlink, Some(stored))
        } else if file_type.is_file() {
            let mut file = fs_err::File::open(entry.path())?;
            let (kind, stored) = if bases.found_in_file(entry.path())? {
                let mut text = Vec::with_capacity(meta.len() as usize);
                file.read_to_end(&mut text)?;
                let template = bases.template(&text);
                if is_text(&text) && !bases.found_in(&template) {
                    let stored = blob::put_file(&store.layout, &mut template.as_slice(), update)?;
                    (OutputKind::RunFileTemplate, stored)
                } else {
                    tracing::debug!("{} holds a base dir; path-bound", entry.path().display());
                    holds_path = true;
                    let stored = blob::put_file(&store.layout, &mut text.as_slice(), update)?;
                    (OutputKind::RunFile, stored)
                }
            } else {
                (
                    OutputKind::RunFile,
                    blob::put_file(&store.layout, &mut file, update)?,
                )
            };
            if FileStamp::of(&file.metadata()?) != FileStamp::of(&meta) {
                return Err(CaptureError::Refused(
                    NotStoredReason::OutputChangedWhileStoring,
                ));
            }
            (kind, Some(stored))
        } else {
            return Err(CaptureError::Refused(NotStoredReason::SpecialFileInOutDir));
        };
        records.push(OutputRecord {
            name,
            kind,
            blob: stored.map_or([0; 32], |stored| *stored.hash.as_bytes()),
            size: stored.map_or(0, |stored| stored.size),
            mode,
        });
    }
    Ok((records, holds_path))
}

/// Text a template can stand for: UTF-8 without NUL (a placeholder's own bytes). A binary file
/// (an archive, an object with debug info) may hold lengths and offsets a rewrite would break.
fn is_text(bytes: &[u8]) -> bool {
    memchr::memchr(0, bytes).is_none() && std::str::from_utf8(bytes).is_ok()
}

/// Empties `out_dir` and recreates the recorded tree in it. Every blob is opened (and its size
/// checked) and every name validated before anything in `out_dir` is touched.
pub fn restore(
    store: &Store,
    entry: &Entry,
    out_dir: &Path,
    bases: &BaseDirs,
    update: &mut StateUpdate,
) -> io::Result<()> {
    validate_names(&entry.outputs)?;
    let mut opened = Vec::with_capacity(entry.outputs.len());
    for output in &entry.outputs {
        opened.push(match output.blob() {
            Some(hash) => Some(blob::open_verified(
                store,
                &blake3::Hash::from_bytes(hash),
                output.size,
                update,
            )?),
            None => None,
        });
    }
    empty_dir(out_dir)?;
    for (output, file) in entry.outputs.iter().zip(opened) {
        let path = out_dir.join(&output.name);
        match (output.kind, file) {
            (OutputKind::RunDir, _) => fs_err::create_dir(&path)?,
            (OutputKind::RunFile, Some(file)) => copy_blob(&file, &path, output.mode)?,
            (OutputKind::RunFileTemplate, Some(mut file)) => {
                let mut template = Vec::with_capacity(output.size as usize);
                file.read_to_end(&mut template)?;
                let text = bases.expand(&template).ok_or_else(|| unfillable(&path))?;
                fs_err::write(&path, text)?;
                fs_err::set_permissions(&path, Permissions::from_mode(output.mode))?;
            }
            (OutputKind::RunSymlink, Some(mut file)) => {
                let mut template = Vec::with_capacity(output.size as usize);
                file.read_to_end(&mut template)?;
                let target = bases.expand(&template).ok_or_else(|| unfillable(&path))?;
                fs_err::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)?;
            }
            _ => return Err(invalid("an entry that is not a run's tree")),
        }
    }
    // Directory modes last (deepest first): a read-only directory would refuse its children.
    for output in entry.outputs.iter().rev() {
        if output.kind == OutputKind::RunDir {
            let path = out_dir.join(&output.name);
            fs_err::set_permissions(&path, Permissions::from_mode(output.mode))?;
        }
    }
    Ok(())
}

/// Removes everything inside `dir` (creating `dir` if it is missing).
fn empty_dir(dir: &Path) -> io::Result<()> {
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return fs_err::create_dir_all(dir),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs_err::remove_dir_all(entry.path())?;
        } else {
            fs_err::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Every name must be a plain relative path whose parent is a directory recorded before it.
fn validate_names(outputs: &[OutputRecord]) -> io::Result<()> {
    let mut dirs: HashSet<&Path> = HashSet::new();
    for output in outputs {
        let path = Path::new(&output.name);
        let plain = !output.name.is_empty()
            && path
                .components()
                .all(|component| matches!(component, Component::Normal(_)));
        if !plain {
            return Err(invalid("an output name that leaves OUT_DIR"));
        }
        let parent = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty());
        if parent.is_some_and(|parent| !dirs.contains(parent)) {
            return Err(invalid("an output below something that is not a directory"));
        }
        if output.kind == OutputKind::RunDir {
            dirs.insert(path);
        }
    }
    Ok(())
}

/// A walk error as an I/O error that keeps walkdir's message, which names the path (and, for a
/// loop, the ancestor), and the kind of the underlying error.
fn walk_error(err: walkdir::Error) -> CaptureError {
    let kind = err.io_error().map_or(io::ErrorKind::Other, io::Error::kind);
    CaptureError::Io(io::Error::new(kind, err.to_string()))
}

fn unfillable(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: a template naming a base dir this run lacks",
            path.display()
        ),
    )
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("refusing {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn record(name: &str, kind: OutputKind) -> OutputRecord {
        OutputRecord {
            name: name.into(),
            kind,
            blob: [0; 32],
            size: 0,
            mode: 0o755,
        }
    }

    #[test]
    fn names_must_stay_inside_out_dir() {
        let ok = [
            record("include", OutputKind::RunDir),
            record("include/a.h", OutputKind::RunFile),
            record("lib.a", OutputKind::RunFile),
        ];
        assert!(validate_names(&ok).is_ok());
        for bad in [
            vec![record("../escape", OutputKind::RunFile)],
            vec![record("/etc/passwd", OutputKind::RunFile)],
            vec![record("", OutputKind::RunFile)],
            vec![record("a/./b", OutputKind::RunFile)],
            // Below a symlink: written through it, possibly outside OUT_DIR.
            vec![
                record("link", OutputKind::RunSymlink),
                record("link/x", OutputKind::RunFile),
            ],
            // Below a directory that was never recorded.
            vec![record("missing/x", OutputKind::RunFile)],
        ] {
            assert!(
                validate_names(&bad).is_err(),
                "{:?}",
                bad[bad.len() - 1].name
            );
        }
    }

    #[test]
    fn a_tree_round_trips_through_the_store() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path().join("store")).unwrap();
        let out_dir = root.path().join("out");
        fs::create_dir_all(out_dir.join("include/sub")).unwrap();
        fs::write(out_dir.join("include/sub/a.h"), b"#define A 1\n").unwrap();
        fs::write(out_dir.join("gen.rs"), b"pub const X: u8 = 1;").unwrap();
        fs::set_permissions(out_dir.join("gen.rs"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("include/sub/a.h", out_dir.join("a.h")).unwrap();
        let (outputs, holds_path) = capture(
            &store,
            &out_dir,
            &BaseDirs::none(),
            &mut StateUpdate::default(),
        )
        .unwrap();
        assert!(!holds_path);
        let names: Vec<&str> = outputs.iter().map(|output| output.name.as_str()).collect();
        assert_eq!(
            names,
            ["a.h", "gen.rs", "include", "include/sub", "include/sub/a.h"]
        );

        // A stale file from an earlier run must be gone after the restore.
        fs::write(out_dir.join("stale.o"), b"old").unwrap();
        fs::remove_dir_all(out_dir.join("include")).unwrap();
        let entry = Entry {
            outputs,
            stdout: vec![],
            stderr: vec![],
            out_dir: out_dir.as_os_str().as_bytes().to_vec(),
            compile_ms: 0,
            created_unix_ms: 0,
        };
        restore(
            &store,
            &entry,
            &out_dir,
            &BaseDirs::none(),
            &mut StateUpdate::default(),
        )
        .unwrap();
        assert!(!out_dir.join("stale.o").exists());
        assert_eq!(
            fs::read(out_dir.join("include/sub/a.h")).unwrap(),
            b"#define A 1\n"
        );
        assert_eq!(
            fs::read_link(out_dir.join("a.h")).unwrap(),
            Path::new("include/sub/a.h")
        );
        let mode = fs::metadata(out_dir.join("gen.rs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// A generated text file naming its `OUT_DIR` is stored as a template and restored naming
    /// the restoring run's; a binary file naming it makes the run path-bound.
    #[test]
    fn files_naming_the_out_dir_are_templated_or_make_the_run_path_bound() {
        use crate::key::base_dirs::Role;
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path().join("store")).unwrap();
        let bases_in = |target: &Path| BaseDirs::new(vec![(Role::Target, target.into())]).unwrap();
        let (first, second) = (root.path().join("t1"), root.path().join("t2"));
        let out_dir = first.join("debug/build/x-1/out");
        fs::create_dir_all(&out_dir).unwrap();
        let code = format!("include_str!({:?});\n", out_dir.join("a.txt"));
        fs::write(out_dir.join("gen.rs"), &code).unwrap();
        let (outputs, holds_path) = capture(
            &store,
            &out_dir,
            &bases_in(&first),
            &mut StateUpdate::default(),
        )
        .unwrap();
        assert!(!holds_path);
        assert_eq!(outputs[0].kind, OutputKind::RunFileTemplate);
        let entry = Entry {
            outputs,
            stdout: vec![],
            stderr: vec![],
            out_dir: vec![],
            compile_ms: 0,
            created_unix_ms: 0,
        };
        let other_out = second.join("debug/build/x-1/out");
        let mut update = StateUpdate::default();
        restore(&store, &entry, &other_out, &bases_in(&second), &mut update).unwrap();
        assert_eq!(
            fs::read_to_string(other_out.join("gen.rs")).unwrap(),
            code.replace(first.to_str().unwrap(), second.to_str().unwrap())
        );
        let none = BaseDirs::none();
        assert!(restore(&store, &entry, &other_out, &none, &mut update).is_err());

        let mut binary = b"\0\x7fELF".to_vec();
        binary.extend_from_slice(out_dir.as_os_str().as_bytes());
        fs::write(out_dir.join("gen.rs"), binary).unwrap();
        let (_, holds_path) = capture(
            &store,
            &out_dir,
            &bases_in(&first),
            &mut StateUpdate::default(),
        )
        .unwrap();
        assert!(
            holds_path,
            "a binary file naming OUT_DIR makes the run path-bound"
        );
    }

    #[test]
    fn a_failed_capture_or_restore_names_the_path() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path().join("store")).unwrap();

        // walkdir's error keeps its path (it was "walk failed") and its kind.
        let missing = root.path().join("missing");
        let none = BaseDirs::none();
        let Err(CaptureError::Io(err)) =
            capture(&store, &missing, &none, &mut StateUpdate::default())
        else {
            panic!("a missing OUT_DIR is an I/O error");
        };
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
        assert_eq!(err.kind(), io::ErrorKind::NotFound);

        // OUT_DIR is a file: emptying it fails, naming it.
        let file = root.path().join("a-file");
        fs::write(&file, b"").unwrap();
        let entry = Entry {
            outputs: vec![record("dir", OutputKind::RunDir)],
            stdout: vec![],
            stderr: vec![],
            out_dir: vec![],
            compile_ms: 0,
            created_unix_ms: 0,
        };
        let err = restore(&store, &entry, &file, &none, &mut StateUpdate::default()).unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
    }
}
