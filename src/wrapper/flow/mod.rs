//! The one cache flow that every kind of job goes through: a rustc compile, a C/C++ compile and a
//! build-script run.
//!
//! [`run_cached`] drives the steps, in this order, the same for every job:
//! 1. the invocation key ([`Job::invocation_key`]); a passthrough reason or a fault ends here with
//!    the real program exec'd;
//! 2. the local lookup: the newest manifest candidate that [`Job::matching_result_key`] accepts;
//! 3. after a local miss, the remote, with the same matcher;
//! 4. on a hit, [`Job::restore`] then [`Job::replay`]; a restore fault is counted and the job
//!    runs instead;
//! 5. on a miss, [`Job::run`] with output streamed; no transaction is open while it runs;
//! 6. on success, [`Job::record`] says what the record holds, and [`commit`] writes the entry and
//!    the candidate under the store lock;
//! 7. after a store, the work that follows it: the automatic gc and the remote publish;
//! 8. [`Context::finish`]: the outcome counted once, and the event line.
//!
//! A job supplies only what differs between kinds: its key facts, how a candidate matches, how
//! outputs are restored, how the real program runs, and what a record holds.

use std::io;
use std::time::{Duration, SystemTime};

use super::keying::{self, KeyError, Keying, MemoHasher};
use super::run::{self, Compiled, Program};
use crate::config::Config;
use crate::hash::Key;
use crate::remote::fetch::{RemoteOutcome, settle_hit};
use crate::remote::{self, Remote};
use crate::stats::{ErrorReason, NotStoredReason, Outcome, PassthroughReason};
use crate::store::Store;
use crate::store::entry::{Candidate, Entry};
use crate::store::layout::STORE_LOCK_TIMEOUT_MS;
use crate::store::state::StateUpdate;

mod context;
mod record;

pub use context::{Context, Counting, RanFacts, Unit, count_unlaunched_run};
pub use record::{NotStored, Recorded, Recording};

/// The exit code when the real program cannot be started at all (the shell's "command not
/// found"), the same for every kind of job.
pub const EXIT_CANNOT_RUN: i32 = 127;

/// One kind of job: what differs between a rustc compile, a C/C++ compile and a build-script
/// run. The flow ([`run_cached`]) does the rest.
pub trait Job {
    /// What this invocation is counted and logged as.
    fn unit(&self) -> Unit<'_>;

    /// The invocation key, from the job's key facts.
    fn invocation_key(&mut self, keying: Keying) -> Result<Key, KeyError>;

    /// Whether a candidate's recorded inputs and env values are as they are here now.
    fn candidate_matches(&self, keying: Keying, candidate: &Candidate) -> bool;

    /// What went into the invocation key, as `(field, value)` text for the explain history
    /// (`store::history`): read only after the program ran, never on a hit.
    fn explain_facts(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The unit's real base dirs, which a path-bound candidate's result key adds
    /// (`key::base_dirs`); none for a job that normalizes no path.
    fn verbatim_dirs(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Puts a found entry's outputs in place (and remembers the hashes of what it wrote).
    fn restore(&mut self, keying: Keying, entry: &Entry) -> io::Result<()>;

    /// After a hit's restore, before its replay: what goes back with the entry found under
    /// `result_key` besides its outputs (a rustc compile's incremental session).
    fn restored(
        &mut self,
        _store: &Store,
        _result_key: &Key,
        _entry: &Entry,
        _update: &mut StateUpdate,
    ) {
    }

    /// Writes a restored entry's output (diagnostics, directives) as the program would have.
    fn replay(&self, entry: &Entry);

    /// Runs the real program (as asked, or with what rcache adds), its output streamed and
    /// captured.
    fn run(&mut self, store: &Store, program: &Program) -> io::Result<Compiled>;

    /// A run that shows this invocation cannot be cached after all (a linker that rejects an
    /// option rcache added): the reason, and the program then runs again exactly as asked.
    fn rerun_as_asked(&self, _ran: &Compiled) -> Option<PassthroughReason> {
        None
    }

    /// The not-stored reason of a run that exited with an error.
    fn failed_run_reason(&self) -> NotStoredReason {
        NotStoredReason::CompileFailed
    }

    /// What the record of a successful run holds: its candidate and its outputs, in the store.
    fn record(&mut self, recording: &mut Recording) -> Result<Recorded, NotStored>;

    /// After a miss's record is committed under `result_key`: what is kept beside the entry (a
    /// rustc compile's incremental session).
    fn stored(&mut self, _store: &Store, _result_key: &Key, _update: &mut StateUpdate) {}

    /// Work after a run, whatever its result: temp files removed, the build-script launcher.
    fn after_run(&mut self, _keying: Keying, _succeeded: bool) {}
}

/// The cacheable path of every job: key, look up (locally, then the remote), restore or run,
/// record, and count. Returns the exit code when it does not exec the real program.
pub fn run_cached(cx: &mut Context, store: &Store, program: &Program, job: &mut dyn Job) -> i32 {
    let mut hasher = MemoHasher::new(store);
    let keying = Keying {
        hasher: &mut hasher,
        update: &mut cx.update,
    };
    let invocation_key = match job.invocation_key(keying) {
        Ok(key) => key,
        Err(KeyError::Passthrough(reason)) => {
            return cx.pass_through(Some(store), &job.unit(), program, reason);
        }
        Err(err) => return cx.fall_back(store, &job.unit(), program, &err),
    };
    tracing::debug!(key = %crate::hash::hex(&invocation_key), "invocation key");
    let mut fault = None;
    let mut found = None;
    if !cx.config.recache.value {
        let mut matcher = |hasher: &mut MemoHasher, candidate: &Candidate, update: &mut _| {
            matching_result_key(job, hasher, &invocation_key, candidate, update)
        };
        match keying::find_match(&mut hasher, &invocation_key, &mut matcher, &mut cx.update) {
            Ok(lookup) => {
                fault = lookup.damaged;
                found = lookup.found;
            }
            Err(err) => return cx.fall_back(store, &job.unit(), program, &err),
        }
    }
    if found.is_none()
        && asks_remote(&cx.config)
        && remote::claims::wait_for_others(store, &invocation_key)
    {
        // Another process of this store (the prefetcher) was fetching this very unit: it may
        // be here now.
        let mut matcher = |hasher: &mut MemoHasher, candidate: &Candidate, update: &mut _| {
            matching_result_key(job, hasher, &invocation_key, candidate, update)
        };
        if let Ok(lookup) =
            keying::find_match(&mut hasher, &invocation_key, &mut matcher, &mut cx.update)
        {
            found = lookup.found;
        }
    }
    if found.is_none() {
        let mut result_key_of = |candidate: &Candidate, update: &mut StateUpdate| {
            matching_result_key(job, &mut hasher, &invocation_key, candidate, update)
        };
        let (fetched, outcome) = ask_remote(
            &cx.config,
            store,
            &invocation_key,
            &mut result_key_of,
            &mut cx.update,
        );
        cx.remote_outcome = outcome;
        found = fetched;
    }
    if let Some(found) = found {
        let keying = Keying {
            hasher: &mut hasher,
            update: &mut cx.update,
        };
        match job.restore(keying, &found.entry) {
            Ok(()) => {
                settle_hit(&mut cx.remote_outcome, None, &mut cx.update);
                job.restored(store, &found.result_key, &found.entry, &mut cx.update);
                job.replay(&found.entry);
                let now = crate::clock::unix_ms(SystemTime::now());
                cx.update.last_use.push((found.result_key, now));
                let outcome = Outcome::Hit {
                    saved_ms: found.entry.compile_ms,
                };
                cx.finish(Some(store), &job.unit(), &outcome);
                return 0;
            }
            Err(err) => {
                // Run instead, and let the store step replace the broken entry.
                tracing::warn!("restore failed ({err}); running the real program instead");
                cx.fault(format_args!("restore failed: {err}"));
                let reason = ErrorReason::of_io(&err);
                settle_hit(
                    &mut cx.remote_outcome,
                    Some(reason.as_str()),
                    &mut cx.update,
                );
                fault = Some(reason);
            }
        }
    }
    let miss = Miss {
        invocation_key: &invocation_key,
        fault,
    };
    run_and_record(cx, store, &mut hasher, program, job, miss)
}

/// What the miss path takes from the lookup before it.
struct Miss<'k> {
    invocation_key: &'k Key,
    /// A damaged record or a restore failure met on the way here; it makes the outcome an
    /// error whatever the record step does.
    fault: Option<ErrorReason>,
}

/// The result key of a candidate that matches what is here now, recomputed from the invocation
/// key and what the candidate recorded (never the result key it carries); `None` when it does
/// not match.
fn matching_result_key(
    job: &dyn Job,
    hasher: &mut MemoHasher,
    invocation_key: &Key,
    candidate: &Candidate,
    update: &mut StateUpdate,
) -> Option<Key> {
    job.candidate_matches(Keying { hasher, update }, candidate)
        .then(|| crate::key::result_key(invocation_key, candidate, &job.verbatim_dirs()))
}

/// The miss: run with output streamed, then record.
fn run_and_record<'s>(
    cx: &mut Context,
    store: &'s Store,
    hasher: &mut MemoHasher<'s>,
    program: &Program,
    job: &mut dyn Job,
    miss: Miss,
) -> i32 {
    let Miss {
        invocation_key,
        fault,
    } = miss;
    apply_memos_now(store, &mut cx.update);
    let started_fs_ns = crate::hash::file_hash::filesystem_tick_after(cx.started_fs_ns);
    let ran = match job.run(store, program) {
        Ok(ran) => ran,
        Err(err) => {
            eprintln!("rcache: could not run {}: {err}", program.path().display());
            cx.fault(format_args!(
                "could not run {}: {err}",
                program.path().display()
            ));
            job.after_run(keying(hasher, &mut cx.update), false);
            let outcome = Outcome::Error {
                reason: ErrorReason::SpawnFailed,
            };
            cx.finish(Some(store), &job.unit(), &outcome);
            return EXIT_CANNOT_RUN;
        }
    };
    if let Some(reason) = job.rerun_as_asked(&ran) {
        // The first attempt's output has already been shown.
        job.after_run(keying(hasher, &mut cx.update), false);
        return cx.pass_through(Some(store), &job.unit(), program, reason);
    }
    let succeeded = ran.status.success();
    tracing::debug!(succeeded, compile_ms = ran.duration_ms, "the program ran");
    let mut ran_facts = RanFacts {
        facts: job.explain_facts(),
        ..RanFacts::default()
    };
    let outcome = if !succeeded {
        Outcome::Miss {
            not_stored: Some(job.failed_run_reason()),
        }
    } else {
        let mut recording = Recording {
            store,
            hasher,
            invocation_key,
            ran: &ran,
            started_fs_ns,
            update: &mut cx.update,
        };
        let committed = job.record(&mut recording).and_then(|recorded| {
            tracing::debug!("recorded: outputs in the store");
            ran_facts.inputs = recorded.candidate.inputs.clone();
            ran_facts.env_deps = recorded.candidate.env_deps.clone();
            commit(store, invocation_key, recorded, &ran, &mut cx.update)
        });
        match committed {
            Ok(result_key) => {
                tracing::debug!("committed");
                job.stored(store, &result_key, &mut cx.update);
                tracing::debug!("kept what goes with the entry");
                after_store(
                    store,
                    &cx.config,
                    invocation_key,
                    &result_key,
                    &mut cx.update,
                );
                Outcome::Miss { not_stored: None }
            }
            Err(not_stored) => {
                if let NotStored::Fault(err) = &not_stored {
                    cx.fault(format_args!("storing failed: {err}"));
                }
                not_stored.into_outcome()
            }
        }
    };
    job.after_run(keying(hasher, &mut cx.update), succeeded);
    let outcome = match fault {
        Some(reason) => Outcome::Error { reason },
        None => outcome,
    };
    cx.record_history(&job.unit(), &outcome, ran_facts);
    cx.finish(Some(store), &job.unit(), &outcome);
    run::exit_code(ran.status)
}

fn keying<'a, 's>(hasher: &'a mut MemoHasher<'s>, update: &'a mut StateUpdate) -> Keying<'a, 's> {
    Keying { hasher, update }
}

/// Writes a record: the entry and its manifest candidate, in one index commit under the store
/// lock. Returns the result key.
fn commit(
    store: &Store,
    invocation_key: &Key,
    recorded: Recorded,
    ran: &Compiled,
    update: &mut StateUpdate,
) -> Result<Key, NotStored> {
    let now = crate::clock::unix_ms(SystemTime::now());
    let entry = Entry {
        outputs: recorded.outputs,
        stdout: recorded.stdout.unwrap_or_else(|| ran.stdout.clone()),
        stderr: recorded.stderr.unwrap_or_else(|| ran.stderr.clone()),
        out_dir: recorded.out_dir,
        compile_ms: ran.duration_ms,
        created_unix_ms: now,
    };
    let result_key = recorded.candidate.result_key;
    let _lock = store.lock(Duration::from_millis(STORE_LOCK_TIMEOUT_MS))?;
    store
        .index
        .commit_compile(&store.layout, invocation_key, recorded.candidate, &entry)?;
    update.last_use.push((result_key, now));
    Ok(result_key)
}

/// After a store: keeps the store within its size and age limits (a detached gc when the store
/// says one is due), and publishes the new entry to the remote, if one is configured (or queues
/// it and starts the uploader when the remote says one must start).
fn after_store(
    store: &Store,
    config: &Config,
    invocation_key: &Key,
    result_key: &Key,
    update: &mut StateUpdate,
) {
    let gc_due =
        crate::store::gc::after_store(store, config.cache_size.value, config.max_age.value);
    if gc_due.is_some() {
        super::background::start_gc(store);
    }
    if crate::remote::publish::after_store(config, store, invocation_key, result_key, update) {
        super::background::start_uploader(update);
    }
}

/// Whether a local miss asks the remote: one is configured, and this is not a recache.
fn asks_remote(config: &Config) -> bool {
    !config.recache.value && config.remote.location.value.is_some()
}

/// After a local miss: asks the remote, if one is configured and this is not a recache.
/// `result_key_of` matches a candidate against what is here. Returns the entry found (now in
/// the local store) and what the remote said, for the events log; faults are counted.
fn ask_remote(
    config: &Config,
    store: &Store,
    invocation_key: &Key,
    result_key_of: &mut dyn FnMut(&Candidate, &mut StateUpdate) -> Option<Key>,
    update: &mut StateUpdate,
) -> (Option<keying::Match>, Option<RemoteOutcome>) {
    if !asks_remote(config) {
        return (None, None);
    }
    if remote::fetch::skipped(store, update) {
        return (None, Some(RemoteOutcome::Skipped));
    }
    if remote::cold::stopped_asking(store, config.remote.cold_after.value) {
        remote::count(update, "not_asked", 1);
        return (None, Some(RemoteOutcome::NotAsked));
    }
    match Remote::from_config(config) {
        Ok(Some(remote)) => {
            // Held while fetching, so that the prefetcher leaves this unit to us.
            let _claim = remote::claims::claim(store, invocation_key);
            let prefetch = config.remote.prefetch.value;
            let (fetched, outcome) = remote::fetch::fetch(
                &remote,
                store,
                invocation_key,
                result_key_of,
                prefetch,
                update,
            );
            remote::cold::note(store, outcome);
            let found = fetched.map(|fetched| keying::Match {
                result_key: fetched.result_key,
                entry: fetched.entry,
            });
            (found, Some(outcome))
        }
        Ok(None) => (None, None),
        Err(err) => {
            tracing::warn!("{err}");
            remote::count_error(update, err.reason());
            (None, Some(RemoteOutcome::Error))
        }
    }
}

/// Writes the memos learned while keying (the compiler identity, file hashes) before a long
/// run, so that invocations starting meanwhile do not compute them again.
fn apply_memos_now(store: &Store, update: &mut StateUpdate) {
    let memos = StateUpdate {
        file_hashes: std::mem::take(&mut update.file_hashes),
        compilers: std::mem::take(&mut update.compilers),
        ..StateUpdate::default()
    };
    if let Err(err) = store.state.apply(&memos) {
        tracing::debug!("could not record memos: {err}");
    }
}
