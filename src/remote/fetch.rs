//! A local miss asks the remote: candidates of the invocation key, newest first; the first
//! whose inputs match the files here names an entry; its blobs are fetched, checked against
//! their blake3 names and sizes, written into the local store, and the entry is committed
//! locally with its candidate. The caller then restores it like any local hit, and the next
//! lookup of the same compile is local. An entry's small blobs are fetched in one request, its
//! large ones a few at a time, each on a thread of its own; each blob is decompressed
//! ([`super::codec`]) straight into the store, bounded by the size the entry records, and checked
//! there before the store keeps it.
//!
//! Result keys are recomputed here from each candidate (by the caller's `result_key_of`), never
//! taken from the remote. Anything the remote lacks (an evicted entry or blob) is a miss; a
//! blob that does not decompress to the size its entry records and the content its name says
//! is a counted fault (and, from a writable client, deleted so that the next publish uploads it
//! again); an entry whose signature does not hold is
//! rejected and counted, and the lookup goes on as a miss. A hit counts only once the caller has
//! restored it ([`settle_hit`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use super::backend::RemoteError;
use super::codec;
use super::layout::{Object, Unsealed, decode_candidate, unseal_entry};
use super::{Remote, backoff, count, count_error};
use crate::hash::Key;
use crate::stats::reason::RemoteErrorReason;
use crate::store::Store;
use crate::store::blob::{self, Durability, NotAsExpected};
use crate::store::entry::{Candidate, Entry};
use crate::store::layout::{Layout, STORE_LOCK_TIMEOUT_MS};
use crate::store::state::StateUpdate;

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
    /// This build's first lookups all missed: it no longer asks ([`super::cold`]).
    NotAsked,
}

impl RemoteOutcome {
    pub fn name(self) -> &'static str {
        match self {
            RemoteOutcome::Hit => "hit",
            RemoteOutcome::Miss => "miss",
            RemoteOutcome::Rejected => "rejected",
            RemoteOutcome::Error => "error",
            RemoteOutcome::Skipped => "skipped",
            RemoteOutcome::NotAsked => "not_asked",
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
pub(super) enum Stop {
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
/// the files as they are now, and gives its recomputed result key. With `prefetch`, a matching
/// candidate published with a group starts that group's prefetcher before its entry and blobs
/// are fetched, so that the prefetcher's first requests overlap this one's transfer. Never
/// fails: every fault is counted in `update` and reads as "not found".
pub fn fetch(
    remote: &Remote,
    store: &Store,
    invocation_key: &Key,
    result_key_of: &mut dyn FnMut(&Candidate, &mut StateUpdate) -> Option<Key>,
    prefetch: bool,
    update: &mut StateUpdate,
) -> (Option<Fetched>, RemoteOutcome) {
    if skipped(store, update) {
        return (None, RemoteOutcome::Skipped);
    }
    match look_up(
        remote,
        store,
        invocation_key,
        result_key_of,
        prefetch,
        update,
    ) {
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
    prefetch: bool,
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
        let Some((mut candidate, group)) = decode_candidate(bytes) else {
            tracing::debug!("an undecodable remote candidate; skipped");
            continue;
        };
        let Some(result_key) = result_key_of(&candidate, update) else {
            continue;
        };
        if let Some(group) = group.filter(|_| prefetch) {
            // Once per group and build: a marker file stops the later calls.
            super::prefetch::start(store, &group, update);
        }
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

/// How many of an entry's blobs are fetched at once, each on a thread of its own that also
/// decompresses, verifies and writes it. Small: a lookup runs beside the rest of a build.
const FETCH_THREADS: usize = 4;

/// What became of one blob.
enum Blob {
    /// Fetched, decompressed, verified and written into the local store.
    Kept,
    /// The remote does not have it.
    Evicted,
    /// The remote failed.
    Remote(RemoteError),
    /// The remote's copy is bad (a remote error reason): deleted by a writable client.
    Bad(RemoteErrorReason),
    /// A local fault while writing it (a store error reason).
    Local(&'static str),
}

/// Brings every blob the entry names into the local store: those already here are left alone,
/// the others fetched [`FETCH_THREADS`] at a time, each decompressed and checked on its thread.
/// False if the remote lacks one. The first blob that fails stops the others from starting.
/// When several fail, a remote failure wins (it starts the backoff), then bad data (counted,
/// and deleted from the remote), then a local fault, then an eviction (a plain miss).
pub(super) fn fetch_blobs(
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
    let results = fetch_each(remote, &store.layout, &missing);
    let mut remote_failure = None;
    let mut bad = None;
    let mut local = None;
    let mut kept = 0;
    for (blob, result, blob_update) in results {
        update.append(blob_update);
        match result {
            Blob::Kept => kept += 1,
            Blob::Evicted => {}
            Blob::Remote(err) => remote_failure = remote_failure.or(Some(err)),
            Blob::Bad(reason) => {
                tracing::warn!(
                    "remote blob {} is not what its entry says: {}",
                    crate::hash::hex(&blob),
                    reason.as_str()
                );
                if !remote.readonly {
                    // The next publish of this blob finds it missing and uploads it again.
                    let _ = remote.backend().delete(&Object::Blob(blob));
                }
                bad = bad.or(Some(reason));
            }
            Blob::Local(reason) => local = local.or(Some(reason)),
        }
    }
    if let Some(err) = remote_failure {
        return Err(Stop::Remote(err));
    }
    if let Some(reason) = bad {
        return Err(Stop::Fault(reason.as_str()));
    }
    if let Some(reason) = local {
        return Err(Stop::Fault(reason));
    }
    remember_verified(store, update);
    Ok(kept == missing.len())
}

/// Writes the verified memos of the blobs just fetched now, not with the rest of `update` at
/// the end of the process: the restore that follows (this process's, or a build's restore of
/// what the prefetcher committed) then trusts them instead of hashing every byte again. Kept
/// in `update` if the write fails, for the final apply to try again.
fn remember_verified(store: &Store, update: &mut StateUpdate) {
    if update.unsynced_verified.is_empty() {
        return;
    }
    let memos = StateUpdate {
        unsynced_verified: std::mem::take(&mut update.unsynced_verified),
        ..StateUpdate::default()
    };
    if let Err(err) = store.state.apply(&memos) {
        tracing::debug!("could not write the fetched blobs' verified memos yet: {err}");
        update.unsynced_verified = memos.unsynced_verified;
    }
}

/// Blobs up to this size (uncompressed) are fetched together, in one request on the calling
/// thread: most of an entry's blobs are small (a `.d`, an rmeta, a build script's outputs), and
/// one request for all of them saves a round trip each, and the connection a thread of its own
/// would open. Larger blobs get threads, so that their transfers and decompression overlap.
const BATCHED_BLOB_MAX: u64 = 1 << 20;

/// Fetches and keeps each of `blobs` (name, size): the small ones in one request on this thread,
/// the others on up to [`FETCH_THREADS`] threads meanwhile; returns what became of each blob
/// that was tried, with the counts it made. Once one blob fails, no other starts. A thread that
/// cannot be started leaves its share to the others (and, if none started, to this thread).
fn fetch_each(
    remote: &Remote,
    layout: &Layout,
    blobs: &[(Key, u64)],
) -> Vec<(Key, Blob, StateUpdate)> {
    let (small, large): (Vec<_>, Vec<_>) = blobs
        .iter()
        .copied()
        .partition(|(_, size)| *size <= BATCHED_BLOB_MAX);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let Some(&(blob, size)) = large.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let mut update = StateUpdate::default();
            let result = fetch_one(remote, layout, &blob, size, &mut update);
            if !matches!(result, Blob::Kept) {
                failed.store(true, Ordering::Relaxed);
            }
            done.push((blob, result, update));
        }
        done
    };
    let batch = || {
        let done = fetch_batch(remote, layout, &small);
        if done
            .iter()
            .any(|(_, result, _)| !matches!(result, Blob::Kept))
        {
            failed.store(true, Ordering::Relaxed);
        }
        done
    };
    let threads = large.len().min(FETCH_THREADS);
    if threads == 0 {
        return batch();
    }
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .filter_map(|_| thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mut done = batch();
        if handles.is_empty() {
            done.extend(work());
        }
        for handle in handles {
            // `work` does not panic; if it ever did, its blobs count as not kept (a miss).
            done.extend(handle.join().unwrap_or_default());
        }
        done
    })
}

/// Fetches `blobs` in one request and keeps each as [`fetch_one`] does; a remote failure is
/// every blob's result.
fn fetch_batch(
    remote: &Remote,
    layout: &Layout,
    blobs: &[(Key, u64)],
) -> Vec<(Key, Blob, StateUpdate)> {
    if blobs.is_empty() {
        return Vec::new();
    }
    let objects: Vec<Object> = blobs.iter().map(|(blob, _)| Object::Blob(*blob)).collect();
    let largest = blobs.iter().map(|(_, size)| *size).max().unwrap_or(0);
    let frames = match remote.backend().get_many(&objects, largest) {
        Ok(frames) if frames.len() == blobs.len() => frames,
        Ok(_) => {
            let err = RemoteError::Other("a batch came back with another length".into());
            return vec![(blobs[0].0, Blob::Remote(err), StateUpdate::default())];
        }
        Err(err) => return vec![(blobs[0].0, Blob::Remote(err), StateUpdate::default())],
    };
    let mut done = Vec::with_capacity(blobs.len());
    for (&(blob, size), frame) in blobs.iter().zip(frames) {
        let mut update = StateUpdate::default();
        let result = match frame {
            Some(frame) => keep_frame(layout, &blob, size, &frame, &mut update),
            None => Blob::Evicted,
        };
        let stop = !matches!(result, Blob::Kept);
        done.push((blob, result, update));
        if stop {
            break;
        }
    }
    done
}

/// Fetches one blob, decompresses it into the local store, and keeps it only if it has the
/// size the entry records and the content its name says (store-format/README.md §9.6).
fn fetch_one(
    remote: &Remote,
    layout: &Layout,
    blob: &Key,
    size: u64,
    update: &mut StateUpdate,
) -> Blob {
    // A frame is rarely larger than its content: the content's size bounds the transfer's time.
    match remote.backend().get_many(&[Object::Blob(*blob)], size) {
        Ok(mut fetched) => match fetched.pop().flatten() {
            Some(frame) => keep_frame(layout, blob, size, &frame, update),
            None => Blob::Evicted,
        },
        Err(err) => Blob::Remote(err),
    }
}

/// Decompresses a fetched frame into the local store and keeps it only if it has the size the
/// entry records and the content its name says.
fn keep_frame(
    layout: &Layout,
    blob: &Key,
    size: u64,
    frame: &[u8],
    update: &mut StateUpdate,
) -> Blob {
    count(update, "bytes_down", frame.len() as u64);
    let hash = blake3::Hash::from_bytes(*blob);
    let kept = codec::decoder(frame)
        .map_err(NotAsExpected::Source)
        .and_then(|mut decoder| {
            // Fetchable again: not synced (store-format/README.md §9.4).
            let expected = (&hash, size);
            blob::put_expected(
                layout,
                &mut decoder,
                expected,
                Durability::Refetchable,
                update,
            )
        });
    match kept {
        Ok(_) => Blob::Kept,
        Err(NotAsExpected::Source(_) | NotAsExpected::WrongHash) => {
            Blob::Bad(RemoteErrorReason::CorruptBlob)
        }
        Err(NotAsExpected::TooLong { .. } | NotAsExpected::TooShort { .. }) => {
            Blob::Bad(RemoteErrorReason::BlobSizeMismatch)
        }
        Err(NotAsExpected::Store(err)) => {
            tracing::warn!("could not keep a remote blob locally: {err}");
            Blob::Local(crate::store::io_reason(&err))
        }
    }
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
pub(super) fn commit(
    store: &Store,
    invocation_key: &Key,
    candidate: Candidate,
    entry: &Entry,
) -> bool {
    let committed = store
        .lock(Duration::from_millis(STORE_LOCK_TIMEOUT_MS))
        .and_then(|_lock| {
            store
                .index
                .commit_compile(&store.layout, invocation_key, candidate, entry)
        });
    match committed {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!("could not keep a remote entry locally: {err}");
            false
        }
    }
}
