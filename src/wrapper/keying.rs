//! Computing keys on the wrapper path: memoized file hashes, the invocation facts, and matching
//! manifest candidates against the files as they are now.
//!
//! File hashes are memoized in the state env by (path, dev, inode, size, mtime, ctime). A new
//! memo is recorded only when the file's timestamps are older than the moment hashing started
//! minus the clock's granularity (git's racy rule), checked here, at record time.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use heed::{RoTxn, WithoutTls};
use rayon::prelude::*;

use super::input_hashes;
use crate::depinfo::DepInfo;
use crate::hash::file_hash::{self, FileStamp};
use crate::hash::{Key, KeyHasher};
use crate::key::BaseDirs;
use crate::key::compiler::{self, CompilerIdentity};

use crate::key::input_paths::InputDirs;
use crate::key::{self, InvocationFacts};
use crate::rustc::{Invocation, Passthrough, args::bundled_static_libs};
use crate::stats::{ErrorReason, PassthroughReason};
use crate::store::entry::{Candidate, Entry, EnvRecord, InputRecord, Manifest};
use crate::store::layout::KEY_VERSION;
use crate::store::state::StateUpdate;
use crate::store::{Store, StoreError};

/// A fault while keying: either the store or a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] compiler::IdentityError),
    #[error("not cacheable: {}", .0.as_str())]
    Passthrough(PassthroughReason),
}

impl KeyError {
    /// The error reason of a fault. A passthrough is no fault: it is counted by its own reason
    /// before this is asked; here it falls under `io_error`, never silently.
    pub fn reason(&self) -> ErrorReason {
        match self {
            KeyError::Store(err) => ErrorReason::of_store(err),
            KeyError::File { source, .. } => ErrorReason::of_io(source),
            KeyError::Identity(_) => ErrorReason::CompilerIdentity,
            KeyError::Passthrough(_) => ErrorReason::IoError,
        }
    }
}

impl From<Passthrough> for KeyError {
    fn from(reason: Passthrough) -> Self {
        KeyError::Passthrough(reason.into())
    }
}

/// Hashes files through the memo. Each batch uses its own short read transaction, so none is
/// held while the compiler runs.
pub struct MemoHasher<'s> {
    store: &'s Store,
    /// Hashes computed or looked up in this process, by absolute path.
    known: HashMap<PathBuf, Key>,
}

impl<'s> MemoHasher<'s> {
    pub fn new(store: &'s Store) -> Self {
        MemoHasher {
            store,
            known: HashMap::new(),
        }
    }

    /// Forgets what this process learned, so that files are looked at again after a compile.
    pub fn forget(&mut self) {
        self.known.clear();
    }

    /// The content hash of one file.
    pub fn hash(&mut self, path: &Path, update: &mut StateUpdate) -> Result<Key, KeyError> {
        let hashes = self.hash_all(&[path.to_path_buf()], update)?;
        Ok(hashes[0])
    }

    /// Content hashes of several files: memo lookups first, then the rest hashed, in parallel
    /// on rayon's pool when there is enough work to pay for it.
    pub fn hash_all(
        &mut self,
        paths: &[PathBuf],
        update: &mut StateUpdate,
    ) -> Result<Vec<Key>, KeyError> {
        let mut hashes: Vec<Option<Key>> = Vec::with_capacity(paths.len());
        let mut missing = Vec::new();
        let rtxn: RoTxn<'static, WithoutTls> = self.store.state.read_txn()?;
        for (position, path) in paths.iter().enumerate() {
            if let Some(hash) = self.known.get(path) {
                hashes.push(Some(*hash));
                continue;
            }
            let meta = std::fs::metadata(path).map_err(|source| KeyError::File {
                path: path.clone(),
                source,
            })?;
            let stamp = FileStamp::of(&meta);
            match self.store.state.file_hash(&rtxn, &stamp.memo_key(path))? {
                Some(hash) => {
                    self.known.insert(path.clone(), hash);
                    hashes.push(Some(hash));
                }
                None => {
                    hashes.push(None);
                    missing.push((position, stamp.size));
                }
            }
        }
        drop(rtxn);
        let hashing_started = SystemTime::now();
        let total: u64 = missing.iter().map(|(_, size)| size).sum();
        let hash_one = |&(position, _): &(usize, u64)| {
            let path: &PathBuf = &paths[position];
            file_hash::hash_file(path)
                .map(|digest| (position, digest))
                .map_err(|source| KeyError::File {
                    path: path.clone(),
                    source,
                })
        };
        // Under `cargo -j N` the cores are busy: go parallel only for real work (docs/facts.md §2).
        let digests: Vec<_> = if missing.len() > 1 && total >= 4 << 20 {
            missing.par_iter().map(hash_one).collect::<Result<_, _>>()?
        } else {
            missing.iter().map(hash_one).collect::<Result<_, _>>()?
        };
        for (position, digest) in digests {
            let hash = *digest.hash.as_bytes();
            let path = &paths[position];
            if !digest.stamp.is_racy(hashing_started) {
                update.file_hashes.push((digest.stamp.memo_key(path), hash));
            }
            self.known.insert(path.clone(), hash);
            hashes[position] = Some(hash);
        }
        Ok(hashes
            .into_iter()
            .map(|hash| hash.expect("every hash filled"))
            .collect())
    }

    /// Records a hash rcache already knows for a file it has just written (a restore, or an
    /// output it stored): no re-hash by every dependent.
    pub fn remember_written(&mut self, path: &Path, hash: Key, update: &mut StateUpdate) {
        if let Ok(meta) = std::fs::metadata(path) {
            update
                .file_hashes
                .push((FileStamp::of(&meta).memo_key(path), hash));
            self.known.insert(path.to_path_buf(), hash);
        }
    }

    /// Carries a known hash over to a file's new name after a rename.
    pub fn remember_renamed(&mut self, from: &Path, to: &Path, update: &mut StateUpdate) {
        if let Some(hash) = self.known.remove(from) {
            self.remember_written(to, hash, update);
        }
    }

    pub fn store(&self) -> &'s Store {
        self.store
    }
}

/// What a job's keying and restore steps work with: the memoized hasher and the invocation's
/// pending state update (memos, counters).
pub struct Keying<'a, 's> {
    pub hasher: &'a mut MemoHasher<'s>,
    pub update: &'a mut StateUpdate,
}

/// `-C target-cpu=native` resolved, memoized per compiler, target and CPU.
fn native_cpu(
    store: &Store,
    compiler_path: &Path,
    identity: &CompilerIdentity,
    target: Option<&str>,
    update: &mut StateUpdate,
) -> Result<Vec<u8>, KeyError> {
    let memo_key = compiler::native_cpu_memo_key(&identity.id, target);
    let rtxn = store.state.read_txn()?;
    if let Some(bytes) = store.state.compiler(&rtxn, &memo_key)? {
        return Ok(bytes);
    }
    // No transaction stays open while rustc runs.
    drop(rtxn);
    let resolved = compiler::native_cpu(compiler_path, target)?;
    update.compilers.push((memo_key, resolved.clone()));
    Ok(resolved)
}

/// A workspace wrapper in the chain (clippy-driver), identified by its binary's content, and
/// the clippy.toml that configures it.
pub struct WorkspaceWrapper {
    pub path: PathBuf,
}

/// Gathers everything that goes into the invocation key and computes it. Also returns the
/// `--extern` content hashes it keyed (moved out, not copied), for the explain history.
#[allow(clippy::too_many_arguments)]
pub fn invocation_key(
    hasher: &mut MemoHasher,
    invocation: &Invocation,
    compiler_path: &Path,
    identity: &CompilerIdentity,
    wrapper: Option<&WorkspaceWrapper>,
    cwd: &Path,
    bases: &BaseDirs,
    update: &mut StateUpdate,
) -> Result<(Key, Vec<(String, Key)>), KeyError> {
    let extern_paths: Vec<(String, PathBuf)> = invocation
        .externs
        .iter()
        .filter_map(|ext| {
            ext.path
                .as_ref()
                .map(|path| (ext.name.clone(), cwd.join(path)))
        })
        .collect();
    let static_libs = bundled_static_libs(invocation, cwd)?;
    let target_json = invocation
        .target
        .as_ref()
        .map(|target| cwd.join(target))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json") && path.is_file());

    let mut files: Vec<PathBuf> = extern_paths.iter().map(|(_, path)| path.clone()).collect();
    files.extend(static_libs.iter().cloned());
    files.extend(target_json.iter().cloned());
    let hashes = hasher.hash_all(&files, update)?;
    let (extern_hashes, rest) = hashes.split_at(extern_paths.len());
    let (static_hashes, json_hash) = rest.split_at(static_libs.len());

    let wrapper_id = match wrapper {
        Some(wrapper) => Some(wrapper_identity(hasher, wrapper, update)?),
        None => None,
    };
    let linker = if invocation.runs_linker() {
        let program =
            resolve_linker(invocation, cwd).ok_or(KeyError::from(Passthrough::LinkerNotFound))?;
        Some(key::LinkerFacts::new(hasher.hash(&program, update)?))
    } else {
        None
    };
    let native = match invocation.target_cpu() {
        Some("native") => Some(native_cpu(
            hasher.store(),
            compiler_path,
            identity,
            invocation.target.as_deref(),
            update,
        )?),
        _ => None,
    };
    let facts = InvocationFacts {
        invocation,
        compiler_id: identity.id,
        wrapper_id,
        cwd,
        bases,
        extern_hashes: extern_paths
            .iter()
            .map(|(name, _)| name.clone())
            .zip(extern_hashes.iter().copied())
            .collect(),
        static_lib_hashes: static_hashes.to_vec(),
        target_json_hash: json_hash.first().copied(),
        env: key::allowlisted_env(),
        native_cpu: native,
        linker,
    };
    let key = key::invocation_key(&facts);
    Ok((key, facts.extern_hashes))
}

/// The linker program rustc will run: `-C linker`, else `cc` found on PATH. PATH entries that
/// resolve to rcache itself (a ccache-style symlink placed first) are skipped, so that the
/// real compiler driver is what gets keyed.
pub fn resolve_linker(invocation: &Invocation, cwd: &Path) -> Option<PathBuf> {
    let name = invocation.codegen_value("linker").unwrap_or("cc");
    if name.contains('/') {
        let path = cwd.join(name);
        return path.is_file().then_some(path);
    }
    crate::cc::driver::real_program_on_path(std::ffi::OsStr::new(name))
}

/// clippy-driver's identity: its binary's content and the clippy.toml it would read.
fn wrapper_identity(
    hasher: &mut MemoHasher,
    wrapper: &WorkspaceWrapper,
    update: &mut StateUpdate,
) -> Result<Key, KeyError> {
    let binary = hasher.hash(&wrapper.path, update)?;
    let mut key = KeyHasher::new("workspace-wrapper", KEY_VERSION);
    key.field("binary", &binary);
    match find_clippy_toml() {
        Some(path) => {
            let content = std::fs::read(&path).map_err(|source| KeyError::File {
                path: path.clone(),
                source,
            })?;
            key.field("clippy-toml", &content);
        }
        None => {
            key.opt_field("clippy-toml", None);
        }
    }
    Ok(key.finish())
}

/// clippy's config search: `CLIPPY_CONF_DIR`, else `CARGO_MANIFEST_DIR` and its ancestors, for
/// `clippy.toml` or `.clippy.toml`.
fn find_clippy_toml() -> Option<PathBuf> {
    let start = std::env::var_os("CLIPPY_CONF_DIR")
        .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
        .map(PathBuf::from)?;
    for dir in start.ancestors() {
        for name in ["clippy.toml", ".clippy.toml"] {
            let path = dir.join(name);
            if path.is_file() {
                return Some(path);
            }
        }
    }
    None
}

/// A candidate that matches the files as they are now.
pub struct Match {
    pub result_key: Key,
    pub entry: Entry,
}

/// What a lookup found.
pub struct Lookup<T> {
    pub found: Option<T>,
    /// A manifest or entry record that does not decode was met (and treated as absent): the
    /// invocation is a counted fault, and its store step replaces the record.
    pub damaged: Option<ErrorReason>,
}

/// Reads a manifest; an undecodable one reads as empty, with the fault in `damaged`.
pub fn read_manifest(
    store: &Store,
    rtxn: &RoTxn<WithoutTls>,
    invocation_key: &Key,
    damaged: &mut Option<ErrorReason>,
) -> Result<Manifest, StoreError> {
    match store.index.manifest(rtxn, invocation_key) {
        Err(StoreError::Corrupt(what)) => {
            tracing::warn!("{what}; compiling, and the store step replaces it");
            *damaged = Some(ErrorReason::CorruptStore);
            Ok(Manifest::default())
        }
        other => other,
    }
}

/// Reads an entry; an undecodable one reads as absent, with the fault in `damaged`.
pub fn read_entry(
    store: &Store,
    rtxn: &RoTxn<WithoutTls>,
    result_key: &Key,
    damaged: &mut Option<ErrorReason>,
) -> Result<Option<Entry>, StoreError> {
    match store.index.entry(rtxn, result_key) {
        Err(StoreError::Corrupt(what)) => {
            tracing::warn!("{what}; compiling, and the store step replaces it");
            *damaged = Some(ErrorReason::CorruptStore);
            Ok(None)
        }
        other => other,
    }
}

/// A job's candidate matcher: the recomputed result key of a candidate that matches what is
/// here now, else `None`.
pub type Matcher<'m, 's> =
    dyn FnMut(&mut MemoHasher<'s>, &Candidate, &mut StateUpdate) -> Option<Key> + 'm;

/// Checks the candidates newest first; the first that `matcher` accepts and whose entry is
/// present gives the entry. One read transaction; no program runs.
pub fn find_match<'s>(
    hasher: &mut MemoHasher<'s>,
    invocation_key: &Key,
    matcher: &mut Matcher<'_, 's>,
    update: &mut StateUpdate,
) -> Result<Lookup<Match>, KeyError> {
    let store = hasher.store();
    let mut damaged = None;
    let rtxn = store.index.read_txn()?;
    let manifest = read_manifest(store, &rtxn, invocation_key, &mut damaged)?;
    for candidate in &manifest.candidates {
        let Some(result_key) = matcher(hasher, candidate, update) else {
            continue;
        };
        if let Some(entry) = read_entry(store, &rtxn, &result_key, &mut damaged)? {
            return Ok(Lookup {
                found: Some(Match { result_key, entry }),
                damaged,
            });
        }
    }
    Ok(Lookup {
        found: None,
        damaged,
    })
}

/// Whether every env-dep variable a candidate recorded has the same value (or absence) now,
/// base dirs templated as they were recorded.
pub fn env_deps_match(candidate: &Candidate, bases: &BaseDirs) -> bool {
    candidate.env_deps.iter().all(|env| {
        let now = std::env::var_os(&env.name).map(|value| bases.template(value.as_bytes()));
        now.as_deref() == env.value.as_ref().map(String::as_bytes)
    })
}

/// Whether a compile's candidate matches: every env-dep value as recorded, and every recorded
/// input, resolved against `dirs`, with the content it had. A missing or unreadable input
/// simply means no match.
pub fn inputs_match(
    hasher: &mut MemoHasher,
    candidate: &Candidate,
    dirs: &InputDirs,
    update: &mut StateUpdate,
) -> bool {
    if !env_deps_match(candidate, dirs.bases()) {
        return false;
    }
    let Some(paths) = candidate
        .inputs
        .iter()
        .map(|input| dirs.resolve(&input.path))
        .collect::<Option<Vec<PathBuf>>>()
    else {
        return false;
    };
    match input_hashes::hash_inputs(hasher, &paths, dirs.bases(), update) {
        Ok(hashes) => hashes
            .iter()
            .zip(&candidate.inputs)
            .all(|(now, recorded)| *now == recorded.hash),
        Err(_) => false,
    }
}

/// Builds the candidate for a finished compile from its dep-info.
pub fn candidate_from_dep_info(
    hasher: &mut MemoHasher,
    invocation_key: &Key,
    dep_info: &DepInfo,
    dirs: &InputDirs,
    update: &mut StateUpdate,
) -> Result<Candidate, KeyError> {
    let recorded: Vec<Vec<u8>> = dep_info
        .inputs
        .iter()
        .map(|path| dirs.record(path))
        .collect();
    let paths: Vec<PathBuf> = recorded
        .iter()
        .map(|path| dirs.resolve(path).expect("a path just recorded resolves"))
        .collect();
    let hashes = input_hashes::hash_inputs(hasher, &paths, dirs.bases(), update)?;
    let inputs: Vec<InputRecord> = recorded
        .into_iter()
        .zip(hashes)
        .map(|(path, hash)| InputRecord { path, hash })
        .collect();
    let env_deps: Vec<EnvRecord> = dep_info
        .env_deps
        .iter()
        .map(|(name, value)| EnvRecord {
            name: name.clone(),
            value: value.as_ref().map(|value| {
                String::from_utf8(dirs.bases().template(value.as_bytes()))
                    .expect("templating UTF-8 keeps it UTF-8")
            }),
        })
        .collect();
    let mut candidate = Candidate {
        inputs,
        env_deps,
        result_key: [0; 32],
        path_bound: None,
    };
    candidate.result_key = key::result_key(invocation_key, &candidate, b"");
    Ok(candidate)
}

/// Splits the wrapper argv into the compiler chain and rustc's arguments, recognising a
/// `RUSTC_WORKSPACE_WRAPPER` (`rcache clippy-driver rustc args`).
pub fn split_chain(args: &[OsString]) -> (Option<WorkspaceWrapper>, PathBuf, Vec<OsString>) {
    let first = PathBuf::from(&args[0]);
    let is_rustc = |path: &Path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| {
                name == "rustc" || name.starts_with("rustc-") || name.starts_with("rustc.")
            })
    };
    if !is_rustc(&first) && args.len() > 1 && is_rustc(Path::new(&args[1])) {
        return (
            Some(WorkspaceWrapper { path: first }),
            PathBuf::from(&args[1]),
            args[2..].to_vec(),
        );
    }
    (None, first, args[1..].to_vec())
}
