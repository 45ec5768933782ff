//! Recording a finished build-script run: its directives, declared inputs and `OUT_DIR` tree,
//! committed as a manifest candidate and an entry in one index transaction.
//!
//! Refuses (a miss with a `not_stored` reason) when the script or a declared input changed since
//! the run started, or `OUT_DIR` holds what cannot be restored; passes through when a directive
//! names another unit's files.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::directives::Directives;
use super::inputs::{self, PACKAGE_INPUT};
use super::{RunEnv, ScriptRun, tree};
use crate::hash::Key;
use crate::hash::file_hash::FileStamp;
use crate::key::{self};
use crate::rustc::Passthrough;
use crate::stats;
use crate::store::Store;
use crate::store::entry::OutputKind;
use crate::store::entry::{Candidate, Entry, EnvRecord, InputRecord, OutputRecord};
use crate::store::layout::STORE_LOCK_TIMEOUT_MS;
use crate::store::state::StateUpdate;
use crate::wrapper::keying::{KeyError, MemoHasher};
use crate::wrapper::record::NotStored;

impl ScriptRun {
    /// Records a successful run: its declared inputs, its `OUT_DIR` tree and its output.
    pub(super) fn record(
        &mut self,
        store: &Store,
        hasher: &mut MemoHasher,
        recording: &Recording,
    ) -> Result<Key, NotStored> {
        let env = recording.env;
        let directives = Directives::parse(recording.stdout);
        check_link_search(&directives, env)?;
        let dirs = env.dirs();
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
                .map(|path| path.as_bytes().to_vec())
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
                value: std::env::var_os(&name).map(|value| value.to_string_lossy().into_owned()),
                name,
            })
            .collect();

        hasher.forget();
        let mut seen = vec![self.real.clone()];
        let mut inputs = Vec::with_capacity(declared.len());
        for path in declared {
            let hash = inputs::fingerprint(hasher, &dirs, &path, &mut seen, &mut self.update)?;
            inputs.push(InputRecord { path, hash });
        }
        // Checked after fingerprinting: a change at any time since the start is caught.
        for path in &seen {
            let changed = std::fs::metadata(path)
                .map(|meta| FileStamp::of(&meta).changed_since_ns(recording.started_fs_ns))
                .unwrap_or(true);
            if changed {
                tracing::debug!("{} changed during the run; not recording", path.display());
                return Err(NotStored::Refused("input_changed_during_run"));
            }
        }
        let outputs = match tree::capture(store, &env.out_dir, &mut self.update) {
            Ok(outputs) => outputs,
            Err(tree::CaptureError::Refused(reason)) => return Err(NotStored::Refused(reason)),
            Err(tree::CaptureError::Io(source)) => {
                return Err(NotStored::Fault(KeyError::File {
                    path: env.out_dir.clone(),
                    source,
                }));
            }
        };
        let result_key = key::result_key(recording.invocation_key, &inputs, &env_deps);
        let now = stats::unix_ms(SystemTime::now());
        remember_tree(hasher, &outputs, &env.out_dir, &mut self.update);
        let entry = Entry {
            outputs,
            stdout: recording.stdout.to_vec(),
            stderr: recording.stderr.to_vec(),
            out_dir: env.out_dir.as_os_str().as_bytes().to_vec(),
            compile_ms: recording.duration_ms,
            created_unix_ms: now,
        };
        let candidate = Candidate {
            inputs,
            env_deps,
            result_key,
        };
        let _lock = store.lock(Duration::from_millis(STORE_LOCK_TIMEOUT_MS))?;
        store
            .index
            .commit_compile(&store.layout, recording.invocation_key, candidate, &entry)?;
        self.update.last_use.push((result_key, now));
        Ok(result_key)
    }
}

/// What [`ScriptRun::record`] needs to know about the finished run.
pub(super) struct Recording<'a> {
    pub(super) invocation_key: &'a Key,
    pub(super) env: &'a RunEnv,
    pub(super) stdout: &'a [u8],
    pub(super) stderr: &'a [u8],
    pub(super) duration_ms: u64,
    pub(super) started_fs_ns: i128,
}

/// A link search path into the target dir must be the run's own `OUT_DIR`, which is restored
/// with it; a path into another unit's build dir is neither restored nor keyed here.
fn check_link_search(directives: &Directives, env: &RunEnv) -> Result<(), NotStored> {
    let Some(profile_dir) = env.profile_dir() else {
        return Ok(());
    };
    let dirs = env.dirs();
    for path in &directives.link_search {
        let resolved = inputs::normalize(&env.manifest_dir.join(path));
        if resolved.starts_with(inputs::normalize(profile_dir)) && !dirs.is_in_out_dir(&resolved) {
            tracing::debug!("link search path {path} is another unit's; not recording");
            return Err(NotStored::Uncacheable(
                Passthrough::LinkSearchOutsideOutDir.to_string(),
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
