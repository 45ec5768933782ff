//! What the record of a finished C compile holds: rcache's own dep file -> candidate, the
//! object (with the caller's dep file and `.dwo`) -> blobs. The flow commits it.
//!
//! Not stored (a miss with a `not_stored` reason) when an input changed at or after the moment
//! the compile started, as for Rust; and not cached at all when an input uses a time macro
//! (`__DATE__`, `__TIME__`, `__TIMESTAMP__`). The macros are looked for after the compile, in
//! every file the dep file lists, because only then are the headers known. Content found free
//! of them is memoized by its hash, so a header is read once, not once per compile: a C++
//! compile lists some 250 headers (4 MB), and reading them took a few ms of every miss.
//!
//! Paths (docs/design.md §6e): inputs under a base dir are recorded by role, the caller's dep
//! file, its target and stderr are stored templated; an object, `.dwo` or output that still
//! holds a base dir (a `-D` path used as a string) makes the candidate path-bound.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::super::flow::{NotStored, Recorded, Recording};
use super::super::keying::MemoHasher;
use super::super::record::compile_candidate;
use crate::cc::args::CcInvocation;
use crate::cc::depfile;
use crate::cc::passthrough::CcPassthrough;
use crate::depinfo;
use crate::hash::file_hash::FileStamp;
use crate::hash::{Key, KeyHasher};
use crate::key::BaseDirs;
use crate::key::base_dirs::PathBound;
use crate::key::input_paths::InputDirs;
use crate::stats::NotStoredReason;
use crate::store::entry::OutputKind;
use crate::store::entry::OutputRecord;
use crate::store::state::StateUpdate;
use crate::store::{Store, blob};

/// The record of a successful compile: its candidate (from `own_dep_file`, rcache's own full
/// dep file: `-MD -MF`, or the dependency-only run's `-M -MF`) and its outputs, stored as blobs.
pub fn record(
    recording: &mut Recording,
    invocation: &CcInvocation,
    cwd: &Path,
    own_dep_file: &Path,
    bases: &BaseDirs,
) -> Result<Recorded, NotStored> {
    let started_fs_ns = recording.started_fs_ns;
    let Ok(text) = std::fs::read(own_dep_file) else {
        return Err(NotStored::Refused(NotStoredReason::NoDepInfo));
    };
    let dep_info = depinfo::parse(&text);
    if dep_info.inputs.is_empty() {
        return Err(NotStored::Refused(NotStoredReason::NoDepInfo));
    }
    let paths: Vec<PathBuf> = dep_info
        .inputs
        .iter()
        .map(|input| cwd.join(input))
        .collect();
    let dirs = InputDirs::cwd_only(cwd, bases);
    let mut candidate = compile_candidate(recording, &dep_info, &dirs, cwd)?;
    if uses_time_macros(recording, &paths) {
        return Err(NotStored::Uncacheable(CcPassthrough::TimeMacros.into()));
    }
    let mut holds_path = false;

    let mut outputs = Vec::new();
    let object = cwd.join(&invocation.object);
    holds_path |= bases
        .found_in_file(&object)
        .map_err(NotStored::file(&object))?;
    outputs.push(store_file(
        recording.store,
        recording.hasher,
        &object,
        OutputKind::CcObject,
        recording.update,
    )?);
    let mut dep_target = Vec::new();
    if let Some(dep_file) = &invocation.dep_file {
        let path = cwd.join(&dep_file.path);
        let mut file = File::open(&path).map_err(NotStored::file(&path))?;
        let meta = file.metadata().map_err(NotStored::file(&path))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(NotStored::file(&path))?;
        dep_target = depfile::target_text(invocation, dep_file).into_bytes();
        // Only a dep file whose target rcache can name is stored, so that a restore can write
        // the restoring compile's own target into it.
        if depfile::retarget(&text, &dep_target, &dep_target).is_none() {
            return Err(NotStored::Refused(NotStoredReason::DepFileTarget));
        }
        let text = bases.template(&text);
        holds_path |= bases.found_in(&text);
        dep_target = bases.template(&dep_target);
        let stored = blob::put_file(
            &recording.store.layout,
            &mut text.as_slice(),
            recording.update,
        )
        .map_err(NotStored::blob_write)?;
        outputs.push(OutputRecord {
            name: dep_file.path.to_string_lossy().into_owned(),
            kind: OutputKind::CcDepFile,
            blob: *stored.hash.as_bytes(),
            size: stored.size,
            mode: meta.permissions().mode() & 0o7777,
        });
    }
    if invocation.split_dwarf {
        let dwo = cwd.join(invocation.dwo_path());
        if let Ok(meta) = std::fs::metadata(&dwo) {
            holds_path |= bases.found_in_file(&dwo).map_err(NotStored::file(&dwo))?;
            // A `.dwo` left by an earlier compile (this one wrote none) must not be stored.
            if !FileStamp::of(&meta).changed_since_ns(started_fs_ns) {
                return Err(NotStored::Refused(NotStoredReason::StaleDwo));
            }
            outputs.push(store_file(
                recording.store,
                recording.hasher,
                &dwo,
                OutputKind::CcSplitDwarf,
                recording.update,
            )?);
        }
    }
    let stderr = bases.template(&recording.ran.stderr);
    holds_path |= bases.found_in(&stderr);
    if holds_path {
        candidate.path_bound = Some(PathBound::OutputHoldsPath.as_str().to_string());
        candidate.result_key =
            crate::key::result_key(recording.invocation_key, &candidate, &bases.verbatim());
    }
    Ok(Recorded {
        candidate,
        outputs,
        // For a C compile: the target text of the caller's dep file (empty without one).
        out_dir: dep_target,
        stdout: None,
        stderr: Some(stderr),
    })
}

/// True if any of `paths` mentions a time macro; a file that cannot be read counts as one (the
/// compile is then not stored). Content already found free of them is not read again: its hash
/// comes from the memo hasher (a lookup, after [`compile_candidate`] hashed every input) and
/// the scan's memo is keyed by that hash ([`scan_memo_key`]). A scan memoizes the hash of the
/// bytes it read, so a file that changed meanwhile memoizes nothing wrong.
fn uses_time_macros(recording: &mut Recording, paths: &[PathBuf]) -> bool {
    let Ok(hashes) = recording.hasher.hash_all(paths, recording.update) else {
        return true;
    };
    let state = &recording.store.state;
    let Ok(rtxn) = state.read_txn() else {
        return true;
    };
    for (path, hash) in paths.iter().zip(hashes) {
        let memo_key = scan_memo_key(&hash);
        if state.file_hash(&rtxn, &memo_key).ok().flatten() == Some(hash) {
            continue;
        }
        let Ok(content) = std::fs::read(path) else {
            return true;
        };
        if depfile::mentions_time_macro(&content) {
            return true;
        }
        let scanned = *blake3::hash(&content).as_bytes();
        recording
            .update
            .file_hashes
            .push((scan_memo_key(&scanned), scanned));
    }
    false
}

/// Where the scan of content `hash` is memoized: the file-hash memos, under a key derived from
/// the hash, holding the hash itself when that content mentions no time macro
/// (store-format/README.md §3 and §5.4).
fn scan_memo_key(hash: &Key) -> Key {
    KeyHasher::new("time-macro-free", 1)
        .field("hash", hash)
        .finish()
}

/// Copies one output file into the store, checking it did not change meanwhile.
fn store_file(
    store: &Store,
    hasher: &mut MemoHasher,
    path: &Path,
    kind: OutputKind,
    update: &mut StateUpdate,
) -> Result<OutputRecord, NotStored> {
    let mut file = File::open(path).map_err(NotStored::file(path))?;
    let before = file.metadata().map_err(NotStored::file(path))?;
    let stored = blob::put_file(&store.layout, &mut file, update).map_err(NotStored::blob_write)?;
    let after = file.metadata().map_err(NotStored::file(path))?;
    if FileStamp::of(&before) != FileStamp::of(&after) {
        return Err(NotStored::Refused(
            NotStoredReason::OutputChangedWhileStoring,
        ));
    }
    hasher.remember_written(path, *stored.hash.as_bytes(), update);
    Ok(OutputRecord {
        name: path.to_string_lossy().into_owned(),
        kind,
        blob: *stored.hash.as_bytes(),
        size: stored.size,
        mode: before.permissions().mode() & 0o7777,
    })
}
