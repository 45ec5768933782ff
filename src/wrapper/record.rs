//! Storing a finished compile: dep-info -> candidate, outputs -> blobs, then one index commit.
//!
//! Refuses to store (a miss with a `not_stored` reason) when an input changed at or after the
//! moment the compile started: the output may come from the old content and the recorded hash
//! from the new. Cargo notices such a change and rebuilds; rcache must not then serve the stale
//! output.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::keying::{self, KeyError, MemoHasher};
use super::run::Compiled;
use crate::clock::unix_ms;
use crate::depinfo;
use crate::hash::Key;
use crate::hash::file_hash::FileStamp;
use crate::key::input_paths::InputDirs;
use crate::rustc::Invocation;
use crate::rustc::outputs::expected_outputs;
use crate::store::entry::OutputKind;
use crate::store::entry::{Entry, OutputRecord};
use crate::store::layout::STORE_LOCK_TIMEOUT_MS;
use crate::store::state::StateUpdate;
use crate::store::{Store, StoreError, blob};

/// Why a compile was not stored.
#[derive(Debug)]
pub enum NotStored {
    /// A policy decision: counted under `not_stored`.
    Refused(&'static str),
    /// Found not cacheable only once it ran (a C time macro, a build script's foreign link
    /// path): counted under `passthrough_reasons`.
    Uncacheable(String),
    /// A cache fault: counted under `errors`.
    Fault(KeyError),
}

impl NotStored {
    /// The outcome counted for a compile or run that finished but was not stored.
    pub(crate) fn into_outcome(self) -> crate::stats::Outcome {
        use crate::stats::Outcome;
        match self {
            NotStored::Refused(reason) => Outcome::Miss {
                not_stored: Some(reason.to_string()),
            },
            NotStored::Uncacheable(reason) => Outcome::Passthrough { reason },
            NotStored::Fault(err) => {
                tracing::warn!("storing failed ({err})");
                Outcome::Error {
                    reason: err.reason(),
                }
            }
        }
    }
}

impl From<KeyError> for NotStored {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Passthrough(reason) => NotStored::Uncacheable(reason.to_string()),
            other => NotStored::Fault(other),
        }
    }
}

impl From<StoreError> for NotStored {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Busy => NotStored::Refused("store_busy"),
            other => NotStored::Fault(KeyError::Store(other)),
        }
    }
}

pub(crate) fn file_fault(path: &Path) -> impl FnOnce(std::io::Error) -> NotStored + '_ {
    move |source| {
        NotStored::Fault(KeyError::File {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What the caller knows about the finished compile.
pub struct Finished<'a> {
    pub invocation: &'a Invocation,
    pub invocation_key: &'a Key,
    pub compiled: &'a Compiled,
    pub cwd: &'a Path,
    pub dep_info_path: &'a Path,
    /// The linker's `--dependency-file`, for crates that link.
    pub linker_dep_info_path: Option<&'a Path>,
    /// A fresh tick of the clock files are stamped from, read just before the compiler started
    /// ([`crate::hash::file_hash::filesystem_tick`]).
    pub started_fs_ns: i128,
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
        Err(_) => return Err(NotStored::Refused("no_linker_dep_info")),
    };
    let mut inputs = Vec::new();
    for input in depinfo::parse(&text).inputs {
        let resolved = cwd.join(&input);
        if resolved.exists() {
            inputs.push(input);
        } else if !resolved.starts_with(out_dir) {
            tracing::debug!("linker input {} vanished; not storing", resolved.display());
            return Err(NotStored::Refused("linker_input_vanished"));
        }
    }
    Ok(inputs)
}

/// Stores a successful compile; returns its result key.
pub fn record(
    store: &Store,
    hasher: &mut MemoHasher,
    finished: &Finished,
    update: &mut StateUpdate,
) -> Result<Key, NotStored> {
    let Finished {
        invocation,
        invocation_key,
        compiled,
        cwd,
        dep_info_path,
        linker_dep_info_path,
        started_fs_ns,
    } = *finished;
    let dep_info_text = std::fs::read(dep_info_path).map_err(file_fault(dep_info_path))?;
    let mut dep_info = depinfo::parse(&dep_info_text);
    if dep_info.inputs.is_empty() {
        return Err(NotStored::Refused("no_dep_info"));
    }
    let out_dir = cwd.join(&invocation.out_dir);
    if let Some(path) = linker_dep_info_path {
        for input in linker_inputs(path, cwd, &out_dir)? {
            if !dep_info.inputs.contains(&input) {
                dep_info.inputs.push(input);
            }
        }
    }
    hasher.forget();
    let dirs = InputDirs::of(invocation, cwd);
    let candidate =
        keying::candidate_from_dep_info(hasher, invocation_key, &dep_info, &dirs, update)?;
    // Checked after hashing: a change at any time since the start is caught. The reference is
    // a fresh tick of the clock files are stamped from, taken before the compiler started, so a file
    // written just before (a build script's OUT_DIR output) is never mistaken for one written
    // during the compile.
    for input in &dep_info.inputs {
        let path = cwd.join(input);
        let meta = std::fs::metadata(&path).map_err(file_fault(&path))?;
        if FileStamp::of(&meta).changed_since_ns(started_fs_ns) {
            tracing::debug!("{} changed during the compile; not storing", path.display());
            return Err(NotStored::Refused("input_changed_during_compile"));
        }
    }

    let mut outputs = Vec::new();
    for expected in expected_outputs(invocation) {
        let path = out_dir.join(&expected.file_name);
        let mut file = File::open(&path).map_err(file_fault(&path))?;
        let before = file.metadata().map_err(file_fault(&path))?;
        let stored = blob::put_file(&store.layout, &mut file, update)
            .map_err(|source| NotStored::Fault(KeyError::Store(StoreError::File(source))))?;
        let after = file.metadata().map_err(file_fault(&path))?;
        if FileStamp::of(&before) != FileStamp::of(&after) {
            return Err(NotStored::Refused("output_changed_while_storing"));
        }
        if expected.kind != OutputKind::DepInfo {
            hasher.remember_written(&path, *stored.hash.as_bytes(), update);
        }
        outputs.push(OutputRecord {
            name: expected.file_name,
            kind: expected.kind,
            blob: *stored.hash.as_bytes(),
            size: stored.size,
            mode: before.permissions().mode() & 0o7777,
        });
    }
    let now = unix_ms(SystemTime::now());
    let entry = Entry {
        outputs,
        stdout: compiled.stdout.clone(),
        stderr: compiled.stderr.clone(),
        out_dir: invocation.out_dir.as_os_str().as_encoded_bytes().to_vec(),
        compile_ms: compiled.duration_ms,
        created_unix_ms: now,
    };
    let result_key = candidate.result_key;
    let _lock = store.lock(Duration::from_millis(STORE_LOCK_TIMEOUT_MS))?;
    store
        .index
        .commit_compile(&store.layout, invocation_key, candidate, &entry)?;
    update.last_use.push((result_key, now));
    Ok(result_key)
}
