//! The prefetcher: from a fresh store's first remote match, a detached process pulls the rest of
//! what the hit entry's build published (its group, [`super::group`]) into the local store, a
//! few entries at a time, in the order the publishing build started them, so that cargo's later
//! lookups hit locally instead of waiting on the network one unit after another
//! (store-format/README.md §9.7).
//!
//! What it fetches goes through the same checks as a lookup's fetch ([`super::fetch`]): entries
//! unsealed with the configured secret, blobs decompressed and checked against their sizes and
//! blake3 names. It commits each entry with the candidate the group recorded; a lookup never
//! trusts a candidate's result key (it recomputes it from the files here), so a candidate that
//! does not match this checkout is simply never used.
//!
//! It claims each unit while it fetches it ([`super::claims`]): a lookup of the build that needs
//! that unit meanwhile waits for it instead of fetching it too, and a unit a lookup claimed first
//! is left to that lookup.
//!
//! It writes only into the store (blobs, the index, the state, its marker under `v2/prefetch/`,
//! its claims under `v2/claims/`),
//! holds no jobserver token, and cannot fail a build: cargo does not wait for it, and every fault
//! is counted under `remote.` and stops it. It stops when the build ends (cargo's process, which
//! it watches, is gone), even in the middle of a request to a server that hangs, and then counts
//! what it fetched that the build did not use (`remote.prefetch.*`).

use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::backend::RemoteError;
use super::fetch::{Stop, commit, fetch_blobs};
use super::group::ProcessIdentity;
use super::layout::{GroupRecord, Object, Unsealed, decode_candidate, unseal_entry};
use super::{Remote, backoff, count, count_error};
use crate::hash::{Key, hex};
use crate::store::Store;
use crate::store::entry::{Candidate, Entry};
use crate::store::state::StateUpdate;

/// Entries whose envelopes are read in one request. Every entry is read before the first blob
/// is fetched (to order them, [`in_start_order`]), so a group of a few hundred entries (about
/// 750 bytes each) takes one round trip.
const ENTRIES_PER_REQUEST: usize = 256;
/// Entries whose blobs are fetched at once (each also fetches its large blobs on threads).
const WORKERS: usize = 3;
/// How often the main thread looks at the build's process.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);
/// How long the pull may take to wind down once the build ended before the main thread
/// settles the counts and exits the process (a request to a hung server does not return).
const GRACE: Duration = Duration::from_secs(1);
/// A prefetcher never runs longer than this, whatever the build does.
const MAX_RUN: Duration = Duration::from_secs(3600);
/// Markers older than this are left by prefetchers that were killed: removed.
const MARKER_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Counter names under `remote.prefetch.`.
pub const STARTED: &str = "prefetch.started";

/// The lookup's hook when a remote candidate published with `group` matches (before its entry
/// and blobs are fetched): starts the prefetcher for that group, once per build and store.
/// Faults are counted; nothing fails.
pub fn start(store: &Store, group: &Key, update: &mut StateUpdate) {
    let Some(build) = super::group::build_process() else {
        return;
    };
    let dir = store.layout.prefetch_dir();
    if let Err(err) = fs::create_dir_all(&dir) {
        tracing::debug!("no prefetch marker dir: {err}");
        return;
    }
    let marker = dir.join(marker_name(group, build));
    match fs::File::create_new(&marker) {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return,
        Err(err) => {
            tracing::debug!("no prefetch marker: {err}");
            return;
        }
    }
    crate::warn_once::remove_files_older_than(&dir, MARKER_MAX_AGE);
    let started = std::env::current_exe().and_then(|exe| {
        let (group, build) = (hex(group), build.to_arg());
        let args = ["remote", "prefetch", "--group", &group, "--build", &build];
        crate::detached::spawn(&exe, &args)
    });
    match started {
        Ok(()) => count(update, STARTED, 1),
        Err(err) => {
            tracing::warn!("could not start the prefetcher: {err}");
            let _ = fs::remove_file(&marker);
            count_error(update, crate::store::io_reason(&err));
        }
    }
}

/// `<group>-<pid>-<start time>`: one prefetcher per group and build.
fn marker_name(group: &Key, build: ProcessIdentity) -> String {
    format!("{}-{}-{}", hex(group), build.pid, build.start_time)
}

/// What a prefetcher did, shared by its workers.
#[derive(Default)]
struct Tally {
    /// Result keys of the entries it fetched and committed.
    fetched: Vec<Key>,
    update: StateUpdate,
}

/// How a prefetcher ended, counted as `remote.prefetch.stopped_by.<reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoppedBy {
    /// It fetched the whole group.
    Done,
    /// The build ended first.
    BuildEnd,
    /// The remote failed (counted under `remote.errors`; the backoff started).
    RemoteError,
}

impl StoppedBy {
    fn as_str(self) -> &'static str {
        match self {
            StoppedBy::Done => "done",
            StoppedBy::BuildEnd => "build_end",
            StoppedBy::RemoteError => "remote_error",
        }
    }
}

/// Shared state of one prefetcher run.
struct Run<'a> {
    remote: &'a Remote,
    store: &'a Store,
    /// Set once the build ended: the pull stops between requests.
    ended: AtomicBool,
    /// Set once the remote failed: the pull stops.
    failed: AtomicBool,
    tally: &'a Mutex<Tally>,
}

/// `rcache remote prefetch`: pulls `group` into the store on a thread while this thread watches
/// `build`; once the build ends, counts what it used and returns how the pull stopped. A pull
/// still stuck in a request [`GRACE`] after the build ended (a server that hangs) is not waited
/// for: the counts are written and the process exits.
pub fn run(remote: &Remote, store: &Store, group: &Key, build: ProcessIdentity) -> StoppedBy {
    let tally = Mutex::new(Tally::default());
    let started_ms = crate::clock::unix_ms(SystemTime::now());
    let run = Run {
        remote,
        store,
        ended: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        tally: &tally,
    };
    let marker = store.layout.prefetch_dir().join(marker_name(group, build));
    let pulled: Mutex<Option<StoppedBy>> = Mutex::new(None);
    let pull = || {
        let stopped = if backoff::active(store) {
            StoppedBy::RemoteError
        } else {
            run.pull(group)
        };
        *pulled.lock().unwrap_or_else(PoisonError::into_inner) = Some(stopped);
    };
    let pulled_now = || *pulled.lock().unwrap_or_else(PoisonError::into_inner);
    thread::scope(|scope| {
        if thread::Builder::new().spawn_scoped(scope, pull).is_err() {
            pull(); // no thread: pull here, then wait for the build's end
        }
        let deadline = Instant::now() + MAX_RUN;
        while build.running() && Instant::now() < deadline {
            thread::sleep(WATCH_INTERVAL);
        }
        run.ended.store(true, Ordering::Relaxed);
        let grace_end = Instant::now() + GRACE;
        while pulled_now().is_none() && Instant::now() < grace_end {
            thread::sleep(WATCH_INTERVAL / 5);
        }
        let stopped = pulled_now();
        settle(
            store,
            &tally,
            started_ms,
            stopped.unwrap_or(StoppedBy::BuildEnd),
        );
        let _ = fs::remove_file(&marker);
        match stopped {
            Some(stopped) => stopped,
            // Stuck in a request: leave without waiting for it.
            None => std::process::exit(0),
        }
    })
}

impl Run<'_> {
    /// Reads the entries of the group that this store lacks, then fetches their blobs in the
    /// order their units started ([`in_start_order`]), until done, the build ends or the remote
    /// fails.
    fn pull(&self, group: &Key) -> StoppedBy {
        let records = match self.remote.group(group) {
            Ok(records) => records,
            Err(err) => return self.remote_failed(err),
        };
        let wanted = self.wanted(records);
        let mut entries = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(ENTRIES_PER_REQUEST) {
            if self.stopping() {
                break;
            }
            match self.entries(chunk) {
                Ok(chunk_entries) => entries.extend(chunk_entries),
                Err(err) => return self.remote_failed(err),
            }
        }
        in_start_order(&mut entries);
        self.fetch_all(&entries);
        if self.failed.load(Ordering::Relaxed) {
            StoppedBy::RemoteError
        } else if self.ended.load(Ordering::Relaxed) {
            StoppedBy::BuildEnd
        } else {
            StoppedBy::Done
        }
    }

    fn stopping(&self) -> bool {
        self.ended.load(Ordering::Relaxed) || self.failed.load(Ordering::Relaxed)
    }

    /// The records worth fetching: decodable, each result key once, not in the store already.
    fn wanted(&self, records: Vec<GroupRecord>) -> Vec<(Key, Candidate)> {
        let mut seen = std::collections::HashSet::new();
        let mut wanted = Vec::new();
        for record in records {
            let Some((candidate, _)) = decode_candidate(&record.candidate) else {
                continue;
            };
            if seen.insert(candidate.result_key) && !self.held(&candidate.result_key) {
                wanted.push((record.invocation_key, candidate));
            }
        }
        wanted
    }

    /// Whether the local store has an entry under `result_key`.
    fn held(&self, result_key: &Key) -> bool {
        let index = &self.store.index;
        index
            .read_txn()
            .and_then(|rtxn| index.entry(&rtxn, result_key))
            .is_ok_and(|entry| entry.is_some())
    }

    /// The entries of `chunk`, in one request, unsealed; evicted, refused and undecodable
    /// ones are left out (the last two counted).
    fn entries(
        &self,
        chunk: &[(Key, Candidate)],
    ) -> Result<Vec<(Key, Candidate, Entry)>, RemoteError> {
        let objects: Vec<Object> = chunk
            .iter()
            .map(|(_, candidate)| Object::Entry(candidate.result_key))
            .collect();
        let sealed = self.remote.backend().get_many(&objects, 0)?;
        let mut update = StateUpdate::default();
        let mut entries = Vec::new();
        for ((invocation_key, candidate), sealed) in chunk.iter().zip(sealed) {
            let Some(sealed) = sealed else {
                continue; // evicted
            };
            count(&mut update, "bytes_down", sealed.len() as u64);
            match unseal_entry(&candidate.result_key, &sealed, self.remote.secret()) {
                Ok(entry) => entries.push((*invocation_key, candidate.clone(), entry)),
                Err(Unsealed::Garbage) => count_error(&mut update, Unsealed::Garbage.reason()),
                Err(refused) => {
                    count(&mut update, "rejected", 1);
                    count(
                        &mut update,
                        &format!("rejected_reasons.{}", refused.reason()),
                        1,
                    );
                }
            }
        }
        self.tally().update.append(update);
        Ok(entries)
    }

    /// Fetches the blobs of `entries` on [`WORKERS`] threads, in order, committing each entry
    /// whose blobs are all here.
    fn fetch_all(&self, entries: &[(Key, Candidate, Entry)]) {
        let next = AtomicUsize::new(0);
        let work = || {
            while !self.stopping() {
                let Some((invocation_key, candidate, entry)) =
                    entries.get(next.fetch_add(1, Ordering::Relaxed))
                else {
                    break;
                };
                // A lookup of the build may be fetching it (its claim), or have fetched it.
                let Some(_claim) = super::claims::claim(self.store, invocation_key) else {
                    continue;
                };
                if self.held(&candidate.result_key) {
                    continue;
                }
                self.fetch_one(invocation_key, candidate.clone(), entry);
            }
        };
        thread::scope(|scope| {
            let workers: Vec<_> = (1..WORKERS)
                .filter_map(|_| thread::Builder::new().spawn_scoped(scope, work).ok())
                .collect();
            work();
            for worker in workers {
                let _ = worker.join();
            }
        });
    }

    fn fetch_one(&self, invocation_key: &Key, candidate: Candidate, entry: &Entry) {
        let mut update = StateUpdate::default();
        let result_key = candidate.result_key;
        let outcome = fetch_blobs(self.remote, self.store, entry, &mut update);
        let mut tally = self.tally();
        tally.update.append(update);
        match outcome {
            Ok(true) => {
                if commit(self.store, invocation_key, candidate, entry) {
                    tally.fetched.push(result_key);
                }
            }
            Ok(false) => {} // a blob was evicted
            Err(Stop::Fault(reason)) => count_error(&mut tally.update, reason),
            Err(Stop::Remote(err)) => {
                drop(tally);
                self.remote_failed(err);
            }
        }
    }

    /// Counts a remote failure, starts the backoff and stops the prefetcher.
    fn remote_failed(&self, err: RemoteError) -> StoppedBy {
        tracing::warn!("prefetch stopped: {err}");
        count_error(&mut self.tally().update, err.reason());
        backoff::start(self.store, self.remote.backoff);
        self.failed.store(true, Ordering::Relaxed);
        StoppedBy::RemoteError
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sorts entries by when the publishing build started their unit (`created_unix_ms` less
/// `compile_ms`), the order the records were published in breaking ties. A group lists units in
/// the order they finished, which puts a long unit (a build-script run that compiles C++ for
/// twenty seconds) after dozens that started later; a build that restores everything asks for
/// units in dependency order, which the publishing build's start order follows.
fn in_start_order(entries: &mut [(Key, Candidate, Entry)]) {
    entries.sort_by_key(|(_, _, entry)| entry.created_unix_ms.saturating_sub(entry.compile_ms));
}

/// Writes the counts: what was fetched, and of that what the build used (a hit since the
/// prefetcher started) and did not.
fn settle(store: &Store, tally: &Mutex<Tally>, started_ms: u64, stopped: StoppedBy) {
    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
    let fetched = std::mem::take(&mut tally.fetched);
    let used = store
        .state
        .last_uses_of(&fetched)
        .map(|uses| {
            uses.iter()
                .filter(|used| used.is_some_and(|at| at >= started_ms))
                .count() as u64
        })
        .unwrap_or(0);
    let mut update = std::mem::take(&mut tally.update);
    count(&mut update, "prefetch.runs", 1);
    count(&mut update, "prefetch.fetched", fetched.len() as u64);
    count(&mut update, "prefetch.used", used);
    count(&mut update, "prefetch.unused", fetched.len() as u64 - used);
    count(
        &mut update,
        &format!("prefetch.stopped_by.{}", stopped.as_str()),
        1,
    );
    if let Err(err) = store.state.apply(&update) {
        tracing::warn!("could not record the prefetcher's counts: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: u8, created_unix_ms: u64, compile_ms: u64) -> (Key, Candidate, Entry) {
        let entry = Entry {
            outputs: vec![],
            stdout: vec![],
            stderr: vec![],
            out_dir: vec![],
            compile_ms,
            created_unix_ms,
        };
        let candidate = Candidate {
            inputs: vec![],
            env_deps: vec![],
            result_key: [name; 32],
            path_bound: None,
        };
        ([name; 32], candidate, entry)
    }

    #[test]
    fn entries_are_fetched_in_the_order_their_units_started() {
        // As a group lists them: by the time each unit finished.
        let mut entries = vec![
            unit(1, 1_000, 900),     // started at 100
            unit(2, 1_500, 200),     // started at 1300
            unit(3, 20_000, 19_500), // a long build-script run, started at 500
            unit(4, 21_000, 19_700), // started at 1300, published after 2
            unit(5, 50, 100),        // a clock step: saturates to 0
        ];
        in_start_order(&mut entries);
        let order: Vec<u8> = entries.iter().map(|(key, _, _)| key[0]).collect();
        assert_eq!(order, [5, 1, 3, 2, 4]);
    }
}
