//! Storing a finished C compile: rcache's own dep file -> candidate, the object (with the
//! caller's dep file and `.dwo`) -> blobs, then one index commit.
//!
//! Not stored (a miss with a `not_stored` reason) when an input changed at or after the moment
//! the compile started, as for Rust; and not cached at all when an input uses a time macro
//! (`__DATE__`, `__TIME__`, `__TIMESTAMP__`). The macros are looked for after the compile, in
//! every file the dep file lists, because only then are the headers known; scanning is a
//! memmem over files the compiler has just read, so it costs little next to the compile.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::super::keying::{self, KeyError, MemoHasher};
use super::super::record::{NotStored, file_fault};
use super::super::run::Compiled;
use crate::cc::args::CcInvocation;
use crate::cc::depfile;
use crate::cc::passthrough::CcPassthrough;
use crate::clock::unix_ms;
use crate::depinfo;
use crate::hash::Key;
use crate::hash::file_hash::FileStamp;
use crate::key::input_paths::InputDirs;
use crate::store::entry::OutputKind;
use crate::store::entry::{Entry, OutputRecord};
use crate::store::layout::STORE_LOCK_TIMEOUT_MS;
use crate::store::state::StateUpdate;
use crate::store::{Store, StoreError, blob};

fn store_fault(source: std::io::Error) -> NotStored {
    NotStored::Fault(KeyError::Store(StoreError::File(source)))
}

/// What the caller knows about the finished compile.
pub struct CcFinished<'a> {
    pub invocation: &'a CcInvocation,
    pub invocation_key: &'a Key,
    pub compiled: &'a Compiled,
    pub cwd: &'a Path,
    /// rcache's own full dep file (`-MD -MF`, or the dependency-only run's `-M -MF`).
    pub own_dep_file: &'a Path,
    /// A fresh tick of the filesystem clock, read before the compiler started.
    pub started_fs_ns: i128,
}

/// Stores a successful compile; returns its result key.
pub fn record(
    store: &Store,
    hasher: &mut MemoHasher,
    finished: &CcFinished,
    update: &mut StateUpdate,
) -> Result<Key, NotStored> {
    let CcFinished {
        invocation,
        invocation_key,
        compiled,
        cwd,
        own_dep_file,
        started_fs_ns,
    } = *finished;
    let Ok(text) = std::fs::read(own_dep_file) else {
        return Err(NotStored::Refused("no_dep_info"));
    };
    let dep_info = depinfo::parse(&text);
    if dep_info.inputs.is_empty() {
        return Err(NotStored::Refused("no_dep_info"));
    }
    let paths: Vec<PathBuf> = dep_info
        .inputs
        .iter()
        .map(|input| cwd.join(input))
        .collect();
    if depfile::uses_time_macros(&paths) {
        return Err(NotStored::Uncacheable(
            CcPassthrough::TimeMacros.to_string(),
        ));
    }
    hasher.forget();
    let dirs = InputDirs::cwd_only(cwd);
    let candidate =
        keying::candidate_from_dep_info(hasher, invocation_key, &dep_info, &dirs, update)?;
    for path in &paths {
        let meta = std::fs::metadata(path).map_err(file_fault(path))?;
        if FileStamp::of(&meta).changed_since_ns(started_fs_ns) {
            tracing::debug!("{} changed during the compile; not storing", path.display());
            return Err(NotStored::Refused("input_changed_during_compile"));
        }
    }

    let mut outputs = Vec::new();
    let object = cwd.join(&invocation.object);
    outputs.push(store_file(
        store,
        hasher,
        &object,
        OutputKind::CcObject,
        update,
    )?);
    let mut dep_target = Vec::new();
    if let Some(dep_file) = &invocation.dep_file {
        let path = cwd.join(&dep_file.path);
        let mut file = File::open(&path).map_err(file_fault(&path))?;
        let meta = file.metadata().map_err(file_fault(&path))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(file_fault(&path))?;
        dep_target = depfile::target_text(invocation, dep_file).into_bytes();
        // Only a dep file whose target rcache can name is stored, so that a restore can write
        // the restoring compile's own target into it.
        if depfile::retarget(&text, &dep_target, &dep_target).is_none() {
            return Err(NotStored::Refused("dep_file_target"));
        }
        let stored =
            blob::put_file(&store.layout, &mut text.as_slice(), update).map_err(store_fault)?;
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
            // A `.dwo` left by an earlier compile (this one wrote none) must not be stored.
            if !FileStamp::of(&meta).changed_since_ns(started_fs_ns) {
                return Err(NotStored::Refused("stale_dwo"));
            }
            outputs.push(store_file(
                store,
                hasher,
                &dwo,
                OutputKind::CcSplitDwarf,
                update,
            )?);
        }
    }
    let now = unix_ms(SystemTime::now());
    let entry = Entry {
        outputs,
        stdout: compiled.stdout.clone(),
        stderr: compiled.stderr.clone(),
        // For a C compile: the target text of the caller's dep file (empty without one).
        out_dir: dep_target,
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

/// Copies one output file into the store, checking it did not change meanwhile.
fn store_file(
    store: &Store,
    hasher: &mut MemoHasher,
    path: &Path,
    kind: OutputKind,
    update: &mut StateUpdate,
) -> Result<OutputRecord, NotStored> {
    let mut file = File::open(path).map_err(file_fault(path))?;
    let before = file.metadata().map_err(file_fault(path))?;
    let stored = blob::put_file(&store.layout, &mut file, update).map_err(store_fault)?;
    let after = file.metadata().map_err(file_fault(path))?;
    if FileStamp::of(&before) != FileStamp::of(&after) {
        return Err(NotStored::Refused("output_changed_while_storing"));
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
