//! Opening LMDB envs the one safe way, shared by the index and the state env.
//!
//! - Each env is opened once per process and kept for its lifetime: LMDB forbids a second open
//!   in one process (closing any fd to the file drops this process's locks; heed refuses with
//!   `EnvAlreadyOpened`). Tests and commands that open a store twice get the same `&'static Env`.
//! - `read_txn_without_tls`, so that a process that exits without dropping the env leaks no
//!   reader slot, and `clear_stale_readers` at open, for slots of killed processes
//!   (docs/facts.md §1).
//! - One fixed map size per env, the same in every process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use super::layout::MAX_READERS;

pub type Db = Database<'static, Bytes, Bytes>;
pub type LmdbEnv = Env<WithoutTls>;

fn open_envs() -> &'static Mutex<HashMap<PathBuf, &'static LmdbEnv>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, &'static LmdbEnv>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// Opens (or returns this process's already open) env at `dir`, which must exist.
pub fn open_env(dir: &Path, map_size: usize, flags: EnvFlags) -> heed::Result<&'static LmdbEnv> {
    let canonical = dir
        .canonicalize()
        .map_err(|err| heed::Error::Io(super::io_failed("canonicalize path", dir)(err)))?;
    let mut open = open_envs()
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    if let Some(env) = open.get(&canonical) {
        return Ok(env);
    }
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options
        .map_size(map_size)
        .max_readers(MAX_READERS)
        .max_dbs(16);
    // SAFETY: the env is opened once per process (checked above), never on a network
    // filesystem by documentation, and the flags are the same in every process.
    let env = unsafe {
        options.flags(flags);
        options.open(&canonical).map_err(|err| match err {
            heed::Error::Io(err) => {
                heed::Error::Io(super::io_failed("open LMDB env", &canonical)(err))
            }
            other => other,
        })?
    };
    env.clear_stale_readers()?;
    let env: &'static LmdbEnv = Box::leak(Box::new(env));
    open.insert(canonical, env);
    Ok(env)
}

/// Forgets an env so that its directory can be deleted and recreated (state env recovery).
/// The leaked handle stays valid but is no longer returned by [`open_env`].
pub fn forget_env(dir: &Path) {
    if let Ok(canonical) = dir.canonicalize() {
        let mut open = open_envs()
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        open.remove(&canonical);
    }
}

/// Opens the named databases, creating them in a write transaction only if one is missing, so
/// that a store whose databases exist can be read without taking the write lock.
pub fn open_databases<const N: usize>(
    env: &'static LmdbEnv,
    names: [&str; N],
) -> heed::Result<[Db; N]> {
    let rtxn = env.read_txn()?;
    let found = env.open_databases_and_commit(rtxn, |opener, rtxn| -> heed::Result<_> {
        let mut dbs = Vec::with_capacity(N);
        for name in names {
            match opener.open_database::<Bytes, Bytes>(rtxn, Some(name))? {
                Some(db) => dbs.push(db),
                None => return Ok(CommitOrAbort::Abort(())),
            }
        }
        let dbs: [Db; N] = dbs.try_into().unwrap_or_else(|_| unreachable!());
        Ok(CommitOrAbort::Commit(dbs))
    })?;
    if let CommitOrAbort::Commit(dbs) = found {
        return Ok(dbs);
    }
    let wtxn = env.write_txn()?;
    let created = env.create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
        let mut dbs = Vec::with_capacity(N);
        for name in names {
            dbs.push(opener.create_database::<Bytes, Bytes>(wtxn, Some(name))?);
        }
        let dbs: [Db; N] = dbs.try_into().unwrap_or_else(|_| unreachable!());
        Ok(CommitOrAbort::<_, ()>::Commit(dbs))
    })?;
    match created {
        CommitOrAbort::Commit(dbs) => Ok(dbs),
        CommitOrAbort::Abort(()) => unreachable!("creation never aborts"),
    }
}

/// Reads a little-endian u64 value; a missing or malformed value counts as 0.
pub fn read_u64(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}
