//! What the record of a finished C compile holds: rcache's own dep file -> candidate, the
//! object (with the caller's dep file and `.dwo`) -> blobs. The flow commits it.
//!
//! Not stored (a miss with a `not_stored` reason) when an input changed at or after the moment
//! the compile started, as for Rust; and not cached at all when an input uses a time macro
//! (`__DATE__`, `__TIME__`, `__TIMESTAMP__`). The macros are looked for after the compile, in
//! every file the dep file lists, because only then are the headers known; scanning is a
//! memmem over files the compiler has just read, so it costs little next to the compile.
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
    if depfile::uses_time_macros(&paths) {
        return Err(NotStored::Uncacheable(CcPassthrough::TimeMacros.into()));
    }
    let dirs = InputDirs::cwd_only(cwd, bases);
    let mut candidate = compile_candidate(recording, &dep_info, &dirs, cwd)?;
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
