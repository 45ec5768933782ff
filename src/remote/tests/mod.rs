//! The remote's logic against an in-memory backend (the seam that `tests/integration/remote/`
//! fills with real Redis and S3 servers): publishing and fetching between two stores, eviction,
//! corrupt blobs, signatures, and the backoff after a failure; [`compressed`]: blobs as zstd
//! frames, frames of the wrong size, and an entry's blobs fetched on several threads;
//! [`prefetch`]: a group pulled by the prefetcher.

mod compressed;
mod groups;
mod prefetch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::backend::{Backend, RemoteError};
use super::fetch::{Fetched, RemoteOutcome, fetch, settle_hit};
use super::layout::Object;
use super::publish::publish;
use super::{Remote, backoff};
use crate::config::RemoteLocation;
use crate::hash::Key;
use crate::key;
use crate::store::entry::OutputKind;
use crate::store::entry::{Candidate, Entry, InputRecord, OutputRecord};
use crate::store::state::StateUpdate;
use crate::store::{Store, blob};

/// What the in-memory remote holds; shared by the "machines" of a test.
#[derive(Default)]
struct Memory {
    objects: HashMap<String, Vec<u8>>,
    candidates: HashMap<Key, Vec<(u64, Vec<u8>)>>,
    groups: HashMap<Key, Vec<Vec<u8>>>,
    /// When set, every request fails with a timeout.
    down: bool,
    puts: usize,
    /// How long each `get_many` takes, outside the lock (so that concurrent calls overlap).
    get_delay: Duration,
    /// `get_many` calls running now, the most that ever ran at once, and the threads that made
    /// them.
    gets_in_flight: usize,
    most_gets_in_flight: usize,
    /// `get_many` calls made.
    gets: usize,
    get_threads: HashSet<std::thread::ThreadId>,
}

#[derive(Clone, Default)]
struct MemoryBackend(Arc<Mutex<Memory>>);

impl MemoryBackend {
    fn check(&self) -> Result<std::sync::MutexGuard<'_, Memory>, RemoteError> {
        let memory = self.0.lock().unwrap();
        if memory.down {
            return Err(RemoteError::Timeout("down".into()));
        }
        Ok(memory)
    }
}

impl Backend for MemoryBackend {
    fn get_many(&self, objects: &[Object], _: u64) -> Result<Vec<Option<Vec<u8>>>, RemoteError> {
        let delay = {
            let mut memory = self.check()?;
            memory.gets_in_flight += 1;
            memory.gets += 1;
            memory.most_gets_in_flight = memory.most_gets_in_flight.max(memory.gets_in_flight);
            memory.get_threads.insert(std::thread::current().id());
            memory.get_delay
        };
        std::thread::sleep(delay);
        let mut memory = self.0.lock().unwrap();
        memory.gets_in_flight -= 1;
        Ok(objects
            .iter()
            .map(|object| memory.objects.get(&object.redis_key()).cloned())
            .collect())
    }
    fn put_many(&self, objects: Vec<(Object, Vec<u8>)>) -> Result<(), RemoteError> {
        let mut memory = self.check()?;
        for (object, bytes) in objects {
            memory.puts += 1;
            memory.objects.insert(object.redis_key(), bytes);
        }
        Ok(())
    }
    fn exists_many(&self, objects: &[Object]) -> Result<Vec<bool>, RemoteError> {
        let memory = self.check()?;
        Ok(objects
            .iter()
            .map(|object| memory.objects.contains_key(&object.redis_key()))
            .collect())
    }
    fn delete(&self, object: &Object) -> Result<(), RemoteError> {
        self.check()?.objects.remove(&object.redis_key());
        Ok(())
    }
    fn candidates(&self, invocation_key: &Key, limit: usize) -> Result<Vec<Vec<u8>>, RemoteError> {
        let memory = self.check()?;
        let mut all = memory
            .candidates
            .get(invocation_key)
            .cloned()
            .unwrap_or_default();
        all.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
        Ok(all
            .into_iter()
            .take(limit)
            .map(|(_, bytes)| bytes)
            .collect())
    }
    fn add_candidate(
        &self,
        invocation_key: &Key,
        _result_key: &Key,
        created_unix_ms: u64,
        encoded: Vec<u8>,
    ) -> Result<(), RemoteError> {
        self.check()?
            .candidates
            .entry(*invocation_key)
            .or_default()
            .push((created_unix_ms, encoded));
        Ok(())
    }
    fn add_group_part(&self, group: &Key, part: Vec<u8>) -> Result<(), RemoteError> {
        self.check()?.groups.entry(*group).or_default().push(part);
        Ok(())
    }
    fn group_parts(&self, group: &Key) -> Result<Vec<Vec<u8>>, RemoteError> {
        Ok(self.check()?.groups.get(group).cloned().unwrap_or_default())
    }
}

fn remote(memory: &MemoryBackend, secret: Option<&[u8]>) -> Remote {
    Remote::new(
        Box::new(memory.clone()),
        RemoteLocation::Redis {
            url: "redis://memory".into(),
        },
        Duration::from_secs(60),
    )
    .with_secret(secret)
}

const INVOCATION: Key = [7; 32];

/// Stores one compile with two outputs (an rlib and a `.d`) in `store`; returns its result key.
fn store_compile(store: &Store, rlib: &[u8]) -> Key {
    store_outputs(
        store,
        &[
            ("libdemo.rlib", OutputKind::Rlib, rlib),
            ("demo.d", OutputKind::DepInfo, &b"demo.d: src/lib.rs\n"[..]),
        ],
    )
}

/// Stores one compile with these outputs (name, kind, content) in `store`; returns its result
/// key.
fn store_outputs(store: &Store, files: &[(&str, OutputKind, &[u8])]) -> Key {
    store_outputs_as(store, &INVOCATION, files)
}

/// [`store_outputs`] under another invocation key.
fn store_outputs_as(store: &Store, invocation: &Key, files: &[(&str, OutputKind, &[u8])]) -> Key {
    let mut update = StateUpdate::default();
    let mut outputs = Vec::new();
    for &(name, kind, bytes) in files {
        let stored = blob::put_file(&store.layout, &mut &bytes[..], &mut update).unwrap();
        outputs.push(OutputRecord {
            name: name.into(),
            kind,
            blob: *stored.hash.as_bytes(),
            size: stored.size,
            mode: 0o644,
        });
    }
    // The source's hash follows the outputs: two compiles with other outputs have other keys.
    let source = files
        .iter()
        .fold(blake3::Hasher::new(), |mut hasher, (_, _, bytes)| {
            hasher.update(bytes);
            hasher
        });
    let inputs = vec![InputRecord {
        path: b"src/lib.rs".to_vec(),
        hash: *source.finalize().as_bytes(),
    }];
    let mut candidate = Candidate {
        inputs,
        env_deps: vec![],
        result_key: [0; 32],
        path_bound: None,
    };
    let result_key = key::result_key(invocation, &candidate, b"");
    candidate.result_key = result_key;
    let entry = Entry {
        outputs,
        stdout: vec![],
        stderr: b"warning: replayed\n".to_vec(),
        out_dir: b"target/debug/deps".to_vec(),
        compile_ms: 100,
        created_unix_ms: 1,
    };
    store
        .index
        .commit_compile(&store.layout, invocation, candidate, &entry)
        .unwrap();
    result_key
}

/// `store`'s entry for [`INVOCATION`] published, unsigned, to `memory`.
fn publish_unsigned(
    memory: &MemoryBackend,
    store: &Store,
    result_key: &Key,
) -> super::publish::Published {
    publish(&remote(memory, None), store, &INVOCATION, result_key, None).unwrap()
}

/// Every candidate matches (the files "here" are as recorded).
fn matching(candidate: &Candidate, _: &mut StateUpdate) -> Option<Key> {
    Some(key::result_key(&INVOCATION, candidate, b""))
}

fn counter(update: &StateUpdate, name: &str) -> u64 {
    update
        .counters
        .iter()
        .filter(|(counter, _)| counter == name)
        .map(|(_, by)| by)
        .sum()
}

/// Looks the test's invocation up on `remote` from `store`, every candidate matching.
fn fetch_into(
    remote: &Remote,
    store: &Store,
    update: &mut StateUpdate,
) -> (Option<Fetched>, RemoteOutcome) {
    fetch(remote, store, &INVOCATION, &mut matching, false, update)
}

struct Machines {
    _dir: tempfile::TempDir,
    a: Store,
    b: Store,
}

fn machines() -> Machines {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path().join("a")).unwrap();
    let b = Store::open(dir.path().join("b")).unwrap();
    Machines { _dir: dir, a, b }
}

#[test]
fn an_entry_published_by_one_store_is_fetched_verified_and_kept_by_another() {
    let machines = machines();
    let memory = MemoryBackend::default();
    let result_key = store_compile(&machines.a, b"rlib bytes");
    let published = publish_unsigned(&memory, &machines.a, &result_key);
    assert!(published.entry);
    assert_eq!(published.blobs_uploaded, 2);

    let mut update = StateUpdate::default();
    let (fetched, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert_eq!(outcome, RemoteOutcome::Hit);
    let fetched = fetched.unwrap();
    assert_eq!(fetched.result_key, result_key);
    assert_eq!(fetched.entry.stderr, b"warning: replayed\n");
    // A hit counts once its restore is known.
    assert_eq!(counter(&update, "remote.hits"), 0);
    let mut settled = Some(outcome);
    settle_hit(&mut settled, None, &mut update);
    assert_eq!(counter(&update, "remote.hits"), 1);
    assert!(counter(&update, "remote.bytes_down") > 0);
    // Kept locally: B's index has the entry and its blobs, so its next lookup is local.
    let rtxn = machines.b.index.read_txn().unwrap();
    assert_eq!(
        machines.b.index.entry(&rtxn, &result_key).unwrap(),
        Some(fetched.entry.clone())
    );
    // Each blob's verified memo is written already, not left for the end of the process:
    // the restore that follows trusts it instead of hashing the blob again.
    assert!(update.unsynced_verified.is_empty());
    let state = machines.b.state.read_txn().unwrap();
    for output in &fetched.entry.outputs {
        let hash = blake3::Hash::from_bytes(output.blob);
        let path = machines.b.layout.blob_path(&hash);
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.len(), output.size);
        let memo_key = crate::store::blob::verified_memo_key(&hash, &meta);
        assert_eq!(
            machines
                .b
                .state
                .unsynced_verified(&state, &memo_key)
                .unwrap(),
            Some(output.blob)
        );
    }
    // Publishing again uploads no blob: the remote has them.
    let again = publish_unsigned(&memory, &machines.a, &result_key);
    assert_eq!(again.blobs_uploaded, 0);
}

#[test]
fn a_remote_hit_whose_restore_fails_counts_as_a_remote_error() {
    let mut update = StateUpdate::default();
    let mut outcome = Some(RemoteOutcome::Hit);
    settle_hit(&mut outcome, Some("corrupt_store"), &mut update);
    assert_eq!(outcome, Some(RemoteOutcome::Error));
    assert_eq!(counter(&update, "remote.hits"), 0);
    assert_eq!(counter(&update, "remote.errors"), 1);
    assert_eq!(counter(&update, "remote.error_reasons.corrupt_store"), 1);
    // Only a remote hit is settled: a local hit (no remote outcome) counts nothing here.
    let mut local = None;
    settle_hit(&mut local, Some("corrupt_store"), &mut update);
    assert_eq!(counter(&update, "remote.errors"), 1);
}

#[test]
fn an_evicted_blob_or_entry_is_a_miss_not_an_error() {
    let machines = machines();
    let memory = MemoryBackend::default();
    let result_key = store_compile(&machines.a, b"rlib bytes");
    publish_unsigned(&memory, &machines.a, &result_key);
    let blob_key = memory
        .0
        .lock()
        .unwrap()
        .objects
        .keys()
        .find(|name| name.contains(":blob:"))
        .cloned()
        .unwrap();
    memory.0.lock().unwrap().objects.remove(&blob_key);
    let mut update = StateUpdate::default();
    let (fetched, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert!(fetched.is_none());
    assert_eq!(outcome, RemoteOutcome::Miss);
    assert_eq!(counter(&update, "remote.errors"), 0);
    let rtxn = machines.b.index.read_txn().unwrap();
    assert_eq!(machines.b.index.entry(&rtxn, &result_key).unwrap(), None);
}

#[test]
fn a_corrupt_blob_is_a_counted_error_and_a_writable_client_deletes_it() {
    let machines = machines();
    let memory = MemoryBackend::default();
    let result_key = store_compile(&machines.a, b"rlib bytes");
    publish_unsigned(&memory, &machines.a, &result_key);
    let rlib_key = Object::Blob(*blake3::hash(b"rlib bytes").as_bytes()).redis_key();
    // Raw bytes, not a zstd frame (what a version-1 remote held), of the right size even.
    memory
        .0
        .lock()
        .unwrap()
        .objects
        .insert(rlib_key.clone(), b"RLIB BYTES".to_vec());

    let mut readonly = remote(&memory, None);
    readonly.readonly = true;
    let mut update = StateUpdate::default();
    let (fetched, outcome) = fetch_into(&readonly, &machines.b, &mut update);
    assert!(fetched.is_none());
    assert_eq!(outcome, RemoteOutcome::Error);
    assert_eq!(counter(&update, "remote.error_reasons.corrupt_blob"), 1);
    assert!(memory.0.lock().unwrap().objects.contains_key(&rlib_key));
    // Bad data is no reason to skip the remote.
    assert!(!backoff::active(&machines.b));

    let mut update = StateUpdate::default();
    let (_, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert_eq!(outcome, RemoteOutcome::Error);
    assert!(!memory.0.lock().unwrap().objects.contains_key(&rlib_key));
    // The next publish puts it back, and the lookup hits.
    publish_unsigned(&memory, &machines.a, &result_key);
    let (fetched, _) = fetch(
        &remote(&memory, None),
        &machines.b,
        &INVOCATION,
        &mut matching,
        false,
        &mut StateUpdate::default(),
    );
    assert!(fetched.is_some());
}

#[test]
fn with_a_secret_only_entries_signed_with_it_are_taken() {
    let memory = MemoryBackend::default();
    // (writer's secret, reader's secret, what the reader gets, the rejection counted)
    type Case = (
        Option<&'static [u8]>,
        Option<&'static [u8]>,
        RemoteOutcome,
        Option<&'static str>,
    );
    let cases: [Case; 4] = [
        (Some(b"k1"), Some(b"k1"), RemoteOutcome::Hit, None),
        (Some(b"k1"), None, RemoteOutcome::Hit, None),
        (
            Some(b"k1"),
            Some(b"k2"),
            RemoteOutcome::Rejected,
            Some("bad_signature"),
        ),
        (None, Some(b"k1"), RemoteOutcome::Rejected, Some("unsigned")),
    ];
    for (writer, reader, expected, reason) in cases {
        let machines = machines();
        *memory.0.lock().unwrap() = Memory::default();
        let result_key = store_compile(&machines.a, b"rlib bytes");
        publish(
            &remote(&memory, writer),
            &machines.a,
            &INVOCATION,
            &result_key,
            None,
        )
        .unwrap();
        let mut update = StateUpdate::default();
        let (fetched, outcome) = fetch_into(&remote(&memory, reader), &machines.b, &mut update);
        assert_eq!(outcome, expected, "writer {writer:?}, reader {reader:?}");
        assert_eq!(fetched.is_some(), expected == RemoteOutcome::Hit);
        if let Some(reason) = reason {
            assert_eq!(counter(&update, "remote.rejected"), 1);
            let name = format!("remote.rejected_reasons.{reason}");
            assert_eq!(counter(&update, &name), 1, "{name}");
            assert_eq!(counter(&update, "remote.misses"), 1);
        }
    }
}

#[test]
fn a_candidate_that_does_not_match_here_is_a_miss() {
    let machines = machines();
    let memory = MemoryBackend::default();
    let result_key = store_compile(&machines.a, b"rlib bytes");
    publish_unsigned(&memory, &machines.a, &result_key);
    let mut update = StateUpdate::default();
    let (fetched, outcome) = fetch(
        &remote(&memory, None),
        &machines.b,
        &INVOCATION,
        &mut |_, _| None,
        false,
        &mut update,
    );
    assert!(fetched.is_none());
    assert_eq!(outcome, RemoteOutcome::Miss);
    assert_eq!(counter(&update, "remote.misses"), 1);
}

#[test]
fn a_failing_remote_is_skipped_by_the_next_lookups_until_the_backoff_ends() {
    let machines = machines();
    let memory = MemoryBackend::default();
    memory.0.lock().unwrap().down = true;
    let mut update = StateUpdate::default();
    let (_, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert_eq!(outcome, RemoteOutcome::Error);
    assert_eq!(counter(&update, "remote.error_reasons.timeout"), 1);
    assert!(backoff::active(&machines.b));

    memory.0.lock().unwrap().down = false;
    let (_, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert_eq!(outcome, RemoteOutcome::Skipped);
    assert_eq!(counter(&update, "remote.skipped"), 1);

    machines.b.state.set_remote_skipped_until(0).unwrap();
    let (_, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert_eq!(outcome, RemoteOutcome::Miss);
}
