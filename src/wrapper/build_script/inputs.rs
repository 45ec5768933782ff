//! The declared inputs of a build-script run, as manifest candidates record them: one
//! fingerprint per `rerun-if-changed` path, or one for the whole package when the run declared
//! nothing (docs/design.md §6b).
//!
//! A fingerprint covers what cargo would look at, by content: a file's bytes; a directory's
//! whole tree (names, kinds and file contents, so an added file counts); or the fact that the
//! path is missing. Symlinks are followed, as cargo follows them. Target dirs (a directory
//! holding `CACHEDIR.TAG`, or one that contains `OUT_DIR`) are never walked: they hold outputs.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use walkdir::WalkDir;

use crate::hash::{Key, KeyHasher};
use crate::key::BaseDirs;
use crate::stats::RunPassthrough;
use crate::store::layout::KEY_VERSION;
use crate::store::state::StateUpdate;
use crate::wrapper::keying::{KeyError, MemoHasher};

/// The recorded path that stands for "every file of the package" (never a real path: NUL).
pub const PACKAGE_INPUT: &[u8] = b"\0package";

/// Walks longer than this are not cached: the lookup would cost more than it saves.
pub const MAX_WALKED_PATHS: usize = 100_000;

/// Where a run's relative paths start, and what must not be walked.
pub struct RunDirs<'a> {
    /// `CARGO_MANIFEST_DIR`: relative `rerun-if-changed` paths start here.
    pub manifest_dir: &'a Path,
    /// `OUT_DIR`.
    pub out_dir: &'a Path,
    /// The run's base dirs: an absolute declared path under one is recorded by role
    /// (`crate::key::base_dirs`) and resolved against this run's dir of that role.
    pub bases: &'a BaseDirs,
}

impl RunDirs<'_> {
    /// A declared path, resolved against the package dir (a path recorded by role, against
    /// this run's dir of that role; one naming a role this run lacks, to a path that does not
    /// exist, which fingerprints as missing and so does not match a recorded file).
    pub fn resolve(&self, declared: &[u8]) -> PathBuf {
        if declared.first() == Some(&0) {
            let expanded = self.bases.expand(declared).unwrap_or_default();
            return PathBuf::from(std::ffi::OsStr::from_bytes(&expanded));
        }
        self.manifest_dir
            .join(std::ffi::OsStr::from_bytes(declared))
    }

    /// The recorded form of a declared path: by role when it is absolute under a base dir.
    pub fn record(&self, declared: &[u8]) -> Vec<u8> {
        self.bases.normalize(declared).into_owned()
    }

    /// True if `path` lies inside `OUT_DIR`: the run's own output, restored with it, and so no
    /// input of it.
    pub fn is_in_out_dir(&self, path: &Path) -> bool {
        normalize(path).starts_with(normalize(self.out_dir))
    }

    fn is_target_dir(&self, dir: &Path) -> bool {
        self.out_dir.starts_with(dir) || dir.join("CACHEDIR.TAG").exists()
    }
}

/// Removes `.` and resolves `..` lexically, for comparing paths.
pub fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// The fingerprint of one recorded input; `seen` collects every path looked at (files and
/// directories), for the check that nothing changed while the script ran.
pub fn fingerprint(
    hasher: &mut MemoHasher,
    dirs: &RunDirs,
    recorded: &[u8],
    seen: &mut Vec<PathBuf>,
    update: &mut StateUpdate,
) -> Result<Key, KeyError> {
    let mut key = KeyHasher::new("build-script-input", KEY_VERSION);
    if recorded == PACKAGE_INPUT {
        key.field("package", b"");
        hash_tree(
            hasher,
            dirs,
            dirs.manifest_dir,
            true,
            &mut key,
            seen,
            update,
        )?;
        return Ok(key.finish());
    }
    let path = dirs.resolve(recorded);
    match std::fs::metadata(&path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            key.field("missing", b"");
            // A file deleted while the script ran changes its nearest directory's stamp.
            if let Some(existing) = path.ancestors().skip(1).find(|dir| dir.is_dir()) {
                seen.push(existing.to_path_buf());
            }
        }
        Err(source) => return Err(KeyError::File { path, source }),
        Ok(meta) if meta.is_dir() => {
            key.field("dir", b"");
            hash_tree(hasher, dirs, &path, false, &mut key, seen, update)?;
        }
        Ok(_) => {
            key.field("file", &hasher.hash(&path, update)?);
            seen.push(path);
        }
    }
    Ok(key.finish())
}

/// Adds a directory tree to `key`: every entry's relative path and kind, and every file's
/// content hash, in name order. A package walk also skips nested packages and `.git`, as
/// cargo's package file list does.
fn hash_tree(
    hasher: &mut MemoHasher,
    dirs: &RunDirs,
    root: &Path,
    package: bool,
    key: &mut KeyHasher,
    seen: &mut Vec<PathBuf>,
    update: &mut StateUpdate,
) -> Result<(), KeyError> {
    let walk = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            if entry.depth() == 0 || !entry.file_type().is_dir() {
                return true;
            }
            let path = entry.path();
            let skipped_by_package_rules =
                package && (entry.file_name() == ".git" || path.join("Cargo.toml").exists());
            !skipped_by_package_rules && !dirs.is_target_dir(path)
        });
    let mut files = Vec::new();
    let mut names = Vec::new();
    for entry in walk {
        let entry = entry.map_err(|err| KeyError::File {
            path: err.path().unwrap_or(root).to_path_buf(),
            source: err
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("a symlink loop")),
        })?;
        if seen.len() + files.len() + names.len() > MAX_WALKED_PATHS {
            return Err(KeyError::Passthrough(
                RunPassthrough::TooManyRunInputs.into(),
            ));
        }
        let relative = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .as_os_str()
            .as_bytes()
            .to_vec();
        if entry.file_type().is_dir() {
            names.push((relative, None));
            seen.push(entry.into_path());
        } else {
            names.push((relative, Some(files.len())));
            files.push(entry.into_path());
        }
    }
    // An upstream `OUT_DIR`'s text files that name its dirs (libz-sys's `zlib.pc`: `prefix=`)
    // are fingerprinted as templates, as a compile's generated inputs are.
    let hashes = crate::wrapper::input_hashes::hash_inputs(hasher, &files, dirs.bases, update)?;
    for (relative, file) in names {
        match file {
            None => key.field("tree-dir", &relative),
            Some(position) => key
                .field("tree-file", &relative)
                .field("tree-file-hash", &hashes[position]),
        };
    }
    seen.extend(files);
    Ok(())
}
