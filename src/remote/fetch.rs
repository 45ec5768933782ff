//! A local miss asks the remote: candidates of the invocation key, newest first; the first
//! whose inputs match the files here names an entry; its blobs are fetched, checked against
//! their blake3 names and sizes, written into the local store, and the entry is committed
//! locally with its candidate. The caller then restores it like any local hit, and the next
//! lookup of the same compile is local.
//!
//! Result keys are recomputed here from each candidate (by the caller's `result_key_of`), never
//! taken from the remote. Anything the remote lacks (an evicted entry or blob) is a miss; a
//! blob whose content is not its name is a counted fault (and, from a writable client, deleted
//! so that the next publish uploads it again); an entry whose signature does not hold is
//! rejected and counted, and the lookup goes on as a miss. A hit counts only once the caller has
//! restored it ([`settle_hit`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::backend::RemoteError;
use super::layout::{Object, Unsealed, decode_candidate, unseal_entry};
use super::{Remote, backoff, count, count_error};
use crate::hash::Key;
use crate::stats::reason::RemoteErrorReason;
use crate::store::entry::{Candidate, Entry};
use crate::store::layout::STORE_LOCK_TIMEOUT_MS;
use crate::store::state::StateUpdate;
use crate::store::{Store, blob};

/// What asking the remote gave, as the events log names it (`"remote": ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteOutcome {
    Hit,
    Miss,
    /// Every matching entry was refused for its signature.
    Rejected,
    /// A fault: the compile goes on locally.
    Error,
    /// An earlier failure keeps the remote skipped.
    Skipped,
}

impl RemoteOutcome {
    pub fn name(self) -> &'static str {
        match self {
            RemoteOutcome::Hit => "hit",
            RemoteOutcome::Miss => "miss",
            RemoteOutcome::Rejected => "rejected",
            RemoteOutcome::Error => "error",
            RemoteOutcome::Skipped => "skipped",
        }
    }
}

/// An entry found on the remote, now in the local store.
pub struct Fetched {
    pub result_key: Key,
    pub entry: Entry,
}

/// Counts a remote hit once its restore is known: a hit if the outputs were restored, else a
/// remote error with the restore's reason (an entry unusable here, such as one whose output
/// names leave the out dir), after which the compile runs. Other outcomes were counted already.
pub fn settle_hit(
    outcome: &mut Option<RemoteOutcome>,
    restore_fault: Option<&str>,
    update: &mut StateUpdate,
) {
    if *outcome != Some(RemoteOutcome::Hit) {
        return;
    }
    match restore_fault {
        None => count(update, "hits", 1),
        Some(reason) => {
            count_error(update, reason);
            *outcome = Some(RemoteOutcome::Error);
        }
    }
}

/// Why a lookup stopped.
enum Stop {
    /// The remote failed: counted, and every process skips it for a while.
    Remote(RemoteError),
    /// Bad data, or a local fault while storing it: counted, no backoff.
    Fault(&'static str),
}

impl From<RemoteError> for Stop {
    fn from(err: RemoteError) -> Self {
        Stop::Remote(err)
    }
}

/// True (and counted) while an earlier failure keeps the remote skipped. The wrapper asks
/// before it builds a [`Remote`], so that a backoff costs no client setup either.
pub fn skipped(store: &Store, update: &mut StateUpdate) -> bool {
    let active = backoff::active(store);
    if active {
        count(update, "skipped", 1);
    }
    active
}

/// Looks the invocation key up on the remote. `result_key_of` says whether a candidate matches
/// the files as they are now, and gives its recomputed result key. Never fails: every fault is
/// counted in `update` and reads as "not found".
pub fn fetch(
    remote: &Remote,
    store: &Store,
    invocation_key: &Key,
    result_key_of: &mut dyn FnMut(&Candidate, &mut StateUpdate) -> Option<Key>,
    update: &mut StateUpdate,
) -> (Option<Fetched>, RemoteOutcome) {
    if skipped(store, update) {
        return (None, RemoteOutcome::Skipped);
    }
    match look_up(remote, store, invocation_key, result_key_of, update) {
        // Counted by [`settle_hit`] once the caller knows whether the restore worked.
        Ok((Some(fetched), _)) => (Some(fetched), RemoteOutcome::Hit),
        Ok((None, rejected)) => {
            count(update, "misses", 1);
            let outcome = match rejected {
                Some(reason) => {
                    count(update, "rejected", 1);
                    count(update, &format!("rejected_reasons.{}", reason.reason()), 1);
                    RemoteOutcome::Rejected
                }
                None => RemoteOutcome::Miss,
            };
            (None, outcome)
        }
        Err(Stop::Remote(err)) => {
            tracing::warn!("remote lookup failed ({err}); compiling");
            count_error(update, err.reason());
            backoff::start(store, remote.backoff);
            backoff::warn_once(store, &err, remote.backoff);
            (None, RemoteOutcome::Error)
        }
        Err(Stop::Fault(reason)) => {
            count_error(update, reason);
            (None, RemoteOutcome::Error)
        }
    }
}

/// The lookup proper: the fetched entry, or none and the reason a matching entry was refused.
fn look_up(
    remote: &Remote,
    store: &Store,
    invocation_key: &Key,
    result_key_of: &mut dyn FnMut(&Candidate, &mut StateUpdate) -> Option<Key>,
    update: &mut StateUpdate,
) -> Result<(Option<Fetched>, Option<Unsealed>), Stop> {
    let backend = remote.backend();
    let encoded = backend.candidates(invocation_key, super::layout::REMOTE_MAX_CANDIDATES)?;
    count(
        update,
        "bytes_down",
        encoded.iter().map(|c| c.len() as u64).sum(),
    );
    let mut rejected = None;
    for bytes in &encoded {
        let Some(mut candidate) = decode_candidate(bytes) else {
            tracing::debug!("an undecodable remote candidate; skipped");
            continue;
        };
        let Some(result_key) = result_key_of(&candidate, update) else {
            continue;
        };
        let Some(sealed) = get_one(remote, Object::Entry(result_key))? else {
            continue; // evicted
        };
        count(update, "bytes_down", sealed.len() as u64);
        let entry = match unseal_entry(&result_key, &sealed, remote.secret()) {
            Ok(entry) => entry,
            Err(Unsealed::Garbage) => return Err(Stop::Fault(Unsealed::Garbage.reason())),
            Err(refused) => {
                tracing::warn!("remote entry refused: {}", refused.reason());
                rejected = Some(refused);
                continue;
            }
        };
        if !fetch_blobs(remote, store, &entry, update)? {
            continue; // a blob was evicted
        }
        candidate.result_key = result_key;
        commit(store, invocation_key, candidate, &entry);
        return Ok((Some(Fetched { result_key, entry }), None));
    }
    Ok((None, rejected))
}

fn get_one(remote: &Remote, object: Object) -> Result<Option<Vec<u8>>, RemoteError> {
    Ok(remote.backend().get_many(&[object], 0)?.pop().flatten())
}

/// Brings every blob the entry names into the local store: those already here are left alone,
/// the others fetched and verified. False if the remote lacks one.
fn fetch_blobs(
    remote: &Remote,
    store: &Store,
    entry: &Entry,
    update: &mut StateUpdate,
) -> Result<bool, Stop> {
    let sizes: BTreeMap<Key, u64> = entry
        .outputs
        .iter()
        .filter_map(|output| output.blob().map(|blob| (blob, output.size)))
        .collect();
    let missing: Vec<(Key, u64)> = sizes
        .into_iter()
        .filter(|(blob, size)| !present_locally(store, blob, *size))
        .collect();
    let objects: Vec<Object> = missing
        .iter()
        .map(|(blob, _)| Object::Blob(*blob))
        .collect();
    let largest = missing.iter().map(|(_, size)| *size).max().unwrap_or(0);
    let fetched = remote.backend().get_many(&objects, largest)?;
    if fetched.iter().any(Option::is_none) {
        return Ok(false);
    }
    for ((blob, size), bytes) in missing.iter().zip(fetched.into_iter().flatten()) {
        count(update, "bytes_down", bytes.len() as u64);
        let hash = blake3::hash(&bytes);
        if bytes.len() as u64 != *size || hash.as_bytes() != blob {
            tracing::warn!(
                "remote blob {} does not hold the content its name says",
                crate::hash::hex(blob)
            );
            if !remote.readonly {
                // The next publish of this blob finds it missing and uploads it again.
                let _ = remote.backend().delete(&Object::Blob(*blob));
            }
            return Err(Stop::Fault(RemoteErrorReason::CorruptBlob.as_str()));
        }
        blob::put_hashed_bytes(&store.layout, &bytes, hash, update).map_err(|err| {
            tracing::warn!("could not keep a remote blob locally: {err}");
            Stop::Fault(crate::store::io_reason(&err))
        })?;
    }
    Ok(true)
}

/// True if the store has a blob file of this name and size (its content is checked when a
/// restore opens it).
fn present_locally(store: &Store, blob: &Key, size: u64) -> bool {
    let path = store.layout.blob_path(&blake3::Hash::from_bytes(*blob));
    std::fs::metadata(path).is_ok_and(|meta| meta.len() == size)
}

/// Commits the fetched entry into the local index. A failure (a busy or full store) is logged
/// only: the blobs are on disk, so this compile still restores from them, and the next one
/// asks the remote again.
fn commit(store: &Store, invocation_key: &Key, candidate: Candidate, entry: &Entry) {
    let committed = store
        .lock(Duration::from_millis(STORE_LOCK_TIMEOUT_MS))
        .and_then(|_lock| {
            store
                .index
                .commit_compile(&store.layout, invocation_key, candidate, entry)
        });
    if let Err(err) = committed {
        tracing::warn!("could not keep a remote entry locally: {err}");
    }
}
