//! What the record of a finished build-script run holds: its declared inputs (the candidate)
//! and its `OUT_DIR` tree (the outputs). The flow commits it with the run's output, whose
//! directives cargo reads on a restore.
//!
//! Refuses (a miss with a `not_stored` reason) when the script or a declared input changed since
//! the run started, or `OUT_DIR` holds what cannot be restored; passes through when a directive
//! names another unit's files.
//!
//! Paths (docs/design.md §6e): declared absolute inputs under a base dir are recorded by role,
//! `rerun-if-env-changed` values, stdout (the directives: `rustc-link-search=native=<OUT_DIR>`,
//! `rustc-env`, `DEP_*` metadata) and stderr are stored templated and filled with the restoring
//! run's dirs. Text files in `OUT_DIR` that name a base dir and symlink targets are stored as
//! templates (`tree`); a binary file, or output the template could not cover, that holds a base
//! dir makes the candidate path-bound: found only by a run with the same dirs.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::directives::Directives;
use super::inputs::{self, PACKAGE_INPUT};
use super::{RunEnv, tree};
use crate::hash::file_hash::FileStamp;
use crate::key::base_dirs::PathBound;
use crate::key::{self, BaseDirs};
use crate::stats::{NotStoredReason, RunPassthrough};
use crate::store::entry::OutputKind;
use crate::store::entry::{Candidate, EnvRecord, InputRecord, OutputRecord};
use crate::store::state::StateUpdate;
use crate::wrapper::flow::{NotStored, Recorded, Recording};
use crate::wrapper::keying::{KeyError, MemoHasher};

/// The record of a successful run of the script `real`: its declared inputs and its `OUT_DIR`
/// tree, stored as blobs.
pub(super) fn record(
    recording: &mut Recording,
    real: &Path,
    env: &RunEnv,
    bases: &BaseDirs,
) -> Result<Recorded, NotStored> {
    let directives = Directives::parse(&recording.ran.stdout);
    check_link_search(&directives, env, bases)?;
    let dirs = env.dirs(bases);
    let mut declared: Vec<Vec<u8>> = if directives.rerun_if_changed.is_empty() {
        // Env-only declarations switch cargo's package default off; nothing at all keeps it.
        if directives.declares_nothing() {
            vec![PACKAGE_INPUT.to_vec()]
        } else {
            Vec::new()
        }
    } else {
        directives
            .rerun_if_changed
            .iter()
            .filter(|path| !dirs.is_in_out_dir(&dirs.resolve(path.as_bytes())))
            .map(|path| dirs.record(path.as_bytes()))
            .collect()
    };
    declared.sort();
    declared.dedup();
    let mut env_names = directives.rerun_if_env_changed.clone();
    env_names.sort();
    env_names.dedup();
    let env_deps: Vec<EnvRecord> = env_names
        .into_iter()
        .map(|name| EnvRecord {
            value: std::env::var_os(&name).map(|value| {
                String::from_utf8_lossy(&bases.template(value.as_bytes())).into_owned()
            }),
            name,
        })
        .collect();

    recording.hasher.forget();
    let mut seen = vec![real.to_path_buf()];
    let mut inputs = Vec::with_capacity(declared.len());
    for path in declared {
        let hash =
            inputs::fingerprint(recording.hasher, &dirs, &path, &mut seen, recording.update)?;
        inputs.push(InputRecord { path, hash });
    }
    // Checked after fingerprinting: a change at any time since the start is caught.
    for path in &seen {
        let changed = std::fs::metadata(path)
            .map(|meta| FileStamp::of(&meta).changed_since_ns(recording.started_fs_ns))
            .unwrap_or(true);
        if changed {
            tracing::debug!("{} changed during the run; not recording", path.display());
            return Err(NotStored::Refused(NotStoredReason::InputChangedDuringRun));
        }
    }
    let (outputs, tree_holds_path) =
        match tree::capture(recording.store, &env.out_dir, bases, recording.update) {
            Ok(captured) => captured,
            Err(tree::CaptureError::Refused(reason)) => {
                return Err(NotStored::Refused(reason));
            }
            Err(tree::CaptureError::Io(source)) => {
                return Err(NotStored::Fault(KeyError::File {
                    path: env.out_dir.clone(),
                    source,
                }));
            }
        };
    let stdout = bases.template(&recording.ran.stdout);
    let stderr = bases.template(&recording.ran.stderr);
    let holds_path = tree_holds_path || bases.found_in(&stdout) || bases.found_in(&stderr);
    let mut candidate = Candidate {
        inputs,
        env_deps,
        result_key: [0; 32],
        path_bound: holds_path.then(|| PathBound::OutputHoldsPath.as_str().to_string()),
    };
    let verbatim = if holds_path {
        bases.verbatim()
    } else {
        Vec::new()
    };
    candidate.result_key = key::result_key(recording.invocation_key, &candidate, &verbatim);
    remember_tree(recording.hasher, &outputs, &env.out_dir, recording.update);
    Ok(Recorded {
        candidate,
        outputs,
        out_dir: bases.template(env.out_dir.as_os_str().as_bytes()),
        stdout: Some(stdout),
        stderr: Some(stderr),
    })
}

/// A link search path into the target dir must be the run's own `OUT_DIR`, which is restored
/// with it; a path into another unit's build dir is neither restored nor keyed here.
fn check_link_search(
    directives: &Directives,
    env: &RunEnv,
    bases: &BaseDirs,
) -> Result<(), NotStored> {
    let Some(profile_dir) = env.profile_dir() else {
        return Ok(());
    };
    let dirs = env.dirs(bases);
    for path in &directives.link_search {
        let resolved = inputs::normalize(&env.manifest_dir.join(path));
        if resolved.starts_with(inputs::normalize(profile_dir)) && !dirs.is_in_out_dir(&resolved) {
            tracing::debug!("link search path {path} is another unit's; not recording");
            return Err(NotStored::Uncacheable(
                RunPassthrough::LinkSearchOutsideOutDir.into(),
            ));
        }
    }
    Ok(())
}

/// Memoizes the hashes of a run's `OUT_DIR` files, known from the entry, so that a dependent
/// run keying this tree (through its `DEP_*` values) does not hash them again.
pub(super) fn remember_tree(
    hasher: &mut MemoHasher,
    outputs: &[OutputRecord],
    out_dir: &Path,
    update: &mut StateUpdate,
) {
    for output in outputs {
        if output.kind == OutputKind::RunFile {
            hasher.remember_written(&out_dir.join(&output.name), output.blob, update);
        }
    }
}
