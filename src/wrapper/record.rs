//! What the record of a finished rustc compile holds: dep-info -> candidate, outputs -> blobs
//! (hard-linked into the store where rustc replaces them by rename, copied otherwise).
//! The flow ([`super::flow`]) commits it.
//!
//! Paths (docs/design.md §6e): the `.d` file, the out dir and the diagnostics are stored with
//! the unit's base dirs templated. The other outputs are searched for the base dirs' bytes; an
//! output that holds one makes the candidate path-bound (found only by a unit with the same
//! dirs): evidence, never a guess about which crates embed their paths.
//!
//! Refuses to store (a miss with a `not_stored` reason) when an input changed at or after the
//! moment the compile started: the output may come from the old content and the recorded hash
//! from the new. Cargo notices such a change and rebuilds; rcache must not then serve the stale
//! output.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::flow::{NotStored, Recorded, Recording};
use super::keying;
use crate::depinfo::{self, DepInfo};
use crate::hash::file_hash::FileStamp;
use crate::key::BaseDirs;
use crate::key::base_dirs::PathBound;
use crate::key::input_paths::InputDirs;
use crate::rustc::Invocation;
use crate::rustc::outputs::expected_outputs;
use crate::stats::NotStoredReason;
use crate::store::blob::{self, StoredBlob};
use crate::store::entry::OutputKind;
use crate::store::entry::{Candidate, OutputRecord};
use crate::store::linked_blob::{self, Linked};

/// What the rustc job knows about the finished compile.
pub struct Finished<'a> {
    pub invocation: &'a Invocation,
    pub cwd: &'a Path,
    pub dep_info_path: &'a Path,
    /// The linker's `--dependency-file`, for crates that link.
    pub linker_dep_info_path: Option<&'a Path>,
    pub bases: &'a BaseDirs,
}

/// The files the linker read, from its `--dependency-file`: candidate inputs like sources.
///
/// The link's own temporaries (codegen-unit objects, rustc's temp dir with `symbols.o`) live in
/// the out dir and are gone once rustc exits; they are outputs of this compile, not inputs, and
/// are dropped. Any other listed file that no longer exists cannot be checked on a later hit, so
/// the compile is not stored.
fn linker_inputs(path: &Path, cwd: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, NotStored> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(_) => return Err(NotStored::Refused(NotStoredReason::NoLinkerDepInfo)),
    };
    // rustc names its temporaries under the out dir with `..` and symlinks resolved
    // (`CARGO_TARGET_DIR=../target`), so both spellings are the out dir.
    let real_out_dir = out_dir.canonicalize().ok();
    let in_out_dir = |path: &Path| {
        path.starts_with(out_dir)
            || real_out_dir
                .as_ref()
                .is_some_and(|real| path.starts_with(real))
    };
    let mut inputs = Vec::new();
    for input in depinfo::parse(&text).inputs {
        let resolved = cwd.join(&input);
        if resolved.exists() {
            inputs.push(input);
        } else if !in_out_dir(&resolved) {
            tracing::debug!("linker input {} vanished; not storing", resolved.display());
            return Err(NotStored::Refused(NotStoredReason::LinkerInputVanished));
        }
    }
    Ok(inputs)
}

/// The record of a successful compile: its candidate and its outputs, stored as blobs.
pub fn record(recording: &mut Recording, finished: &Finished) -> Result<Recorded, NotStored> {
    let Finished {
        invocation,
        cwd,
        dep_info_path,
        linker_dep_info_path,
        bases,
    } = *finished;
    let dep_info_text = std::fs::read(dep_info_path).map_err(NotStored::file(dep_info_path))?;
    let mut dep_info = depinfo::parse(&dep_info_text);
    if dep_info.inputs.is_empty() {
        return Err(NotStored::Refused(NotStoredReason::NoDepInfo));
    }
    let out_dir = cwd.join(&invocation.out_dir);
    if let Some(path) = linker_dep_info_path {
        for input in linker_inputs(path, cwd, &out_dir)? {
            if !dep_info.inputs.contains(&input) {
                dep_info.inputs.push(input);
            }
        }
    }
    let dirs = InputDirs::of(invocation, cwd, bases);
    let mut candidate = compile_candidate(recording, &dep_info, &dirs, cwd)?;

    let mut outputs = Vec::new();
    let mut holds_path = false;
    for expected in expected_outputs(invocation) {
        let path = out_dir.join(&expected.file_name);
        let (stored, mode) = store_output(recording, &path, expected.kind, bases)?;
        if expected.kind != OutputKind::DepInfo {
            holds_path =
                holds_path || bases.found_in_file(&path).map_err(NotStored::file(&path))?;
            recording
                .hasher
                .remember_written(&path, *stored.hash.as_bytes(), recording.update);
        }
        outputs.push(OutputRecord {
            name: expected.file_name,
            kind: expected.kind,
            blob: *stored.hash.as_bytes(),
            size: stored.size,
            mode,
        });
    }
    let stderr = bases.template(&recording.ran.stderr);
    // A dir the template could not replace (`-L/dir` in a note) would replay this unit's path.
    holds_path = holds_path || bases.found_in(&stderr);
    if holds_path {
        candidate.path_bound = Some(PathBound::OutputHoldsPath.as_str().to_string());
        candidate.result_key =
            crate::key::result_key(recording.invocation_key, &candidate, &bases.verbatim());
    }
    Ok(Recorded {
        candidate,
        outputs,
        out_dir: bases.template(invocation.out_dir.as_os_str().as_encoded_bytes()),
        stdout: None,
        stderr: Some(stderr),
    })
}

/// Stores one output: by hard link (`store::linked_blob`), except the `.d` that rustc rewrites in
/// place and an output that cannot be linked, which are copied. Returns the blob and the output's
/// mode; an output that changed while it was being stored is refused.
fn store_output(
    recording: &mut Recording,
    path: &Path,
    kind: OutputKind,
    bases: &BaseDirs,
) -> Result<(StoredBlob, u32), NotStored> {
    let layout = &recording.store.layout;
    if kind == OutputKind::DepInfo && !bases.is_empty() {
        return store_dep_info_template(recording, path, bases);
    }
    if kind != OutputKind::DepInfo {
        match linked_blob::put_linked(layout, path, recording.update) {
            Ok(Linked::Stored { blob, mode }) => return Ok((blob, mode)),
            Ok(Linked::Changed) => {
                return Err(NotStored::Refused(
                    NotStoredReason::OutputChangedWhileStoring,
                ));
            }
            Ok(Linked::NotLinkable) => {}
            Err(err) => return Err(NotStored::blob_write(err)),
        }
    }
    let mut file = File::open(path).map_err(NotStored::file(path))?;
    let before = file.metadata().map_err(NotStored::file(path))?;
    let stored =
        blob::put_file(layout, &mut file, recording.update).map_err(NotStored::blob_write)?;
    let after = file.metadata().map_err(NotStored::file(path))?;
    if FileStamp::of(&before) != FileStamp::of(&after) {
        return Err(NotStored::Refused(
            NotStoredReason::OutputChangedWhileStoring,
        ));
    }
    Ok((stored, before.permissions().mode() & 0o7777))
}

/// Stores a `.d` file with the unit's base dirs templated; a restore fills in its own.
fn store_dep_info_template(
    recording: &mut Recording,
    path: &Path,
    bases: &BaseDirs,
) -> Result<(StoredBlob, u32), NotStored> {
    let text = std::fs::read(path).map_err(NotStored::file(path))?;
    let mode = std::fs::metadata(path)
        .map_err(NotStored::file(path))?
        .permissions()
        .mode()
        & 0o7777;
    let template = bases.template(&text);
    if bases.found_in(&template) {
        // A dir the template could not replace: a restore elsewhere would name this unit's.
        return Err(NotStored::Refused(NotStoredReason::DepInfoHoldsPath));
    }
    let stored = blob::put_file(
        &recording.store.layout,
        &mut template.as_slice(),
        recording.update,
    )
    .map_err(NotStored::blob_write)?;
    Ok((stored, mode))
}

/// The candidate of a finished compile (rustc or C) from its dep-info: every input hashed
/// afresh, then checked unchanged since the compile started. Checked after hashing, a change at
/// any time since the start is caught. The reference is a fresh tick of the clock files are
/// stamped from, taken before the compiler started and newer than any file written before this
/// invocation began, so a file written just before it (a build script's `OUT_DIR` output) is
/// never mistaken for one written during the compile.
pub fn compile_candidate(
    recording: &mut Recording,
    dep_info: &DepInfo,
    dirs: &InputDirs,
    cwd: &Path,
) -> Result<Candidate, NotStored> {
    recording.hasher.forget();
    let candidate = keying::candidate_from_dep_info(
        recording.hasher,
        recording.invocation_key,
        dep_info,
        dirs,
        recording.update,
    )?;
    for input in &dep_info.inputs {
        let path = cwd.join(input);
        let meta = std::fs::metadata(&path).map_err(NotStored::file(&path))?;
        if FileStamp::of(&meta).changed_since_ns(recording.started_fs_ns) {
            tracing::debug!("{} changed during the compile; not storing", path.display());
            return Err(NotStored::Refused(
                NotStoredReason::InputChangedDuringCompile,
            ));
        }
    }
    Ok(candidate)
}
