//! gc on a synthetic store, and what the automatic trim costs a compile (issue 7).
//!
//! - `gc/trim_oldest_half_of_100k`: `plan` + `trim` (what `rcache gc --max-size` does before its
//!   sweep) on a store of 100,000 entries, each a lib compile with its own rlib, rmeta and `.d`
//!   blobs (300,000 blob files, 12-input manifests), trimmed to half its bytes: 50,000 entries
//!   and 150,000 blob files removed in batches, then the manifest pass. Each sample starts from
//!   a full store: the removed half is loaded again, with newer times, before it (not timed).
//! - `gc/plan_100k`, `gc/manifest_scan_100k`: the two read passes of that trim alone, on the
//!   full store (choosing every entry; finding no dangling candidate), so that what is left of
//!   the trim's time is its batches: mostly unlinking 150,000 files.
//! - `gc/sweep_100k`: the walk of `blobs/` and `tmp/` over that store, finding nothing to
//!   remove (what the sweep costs on a clean store).
//! - `auto_gc/check_under_limit`: what the wrapper's hook costs after every store while the
//!   store is under its limit (one index read).
//! - `auto_gc/spawn_detached`: what it costs when over the limit: starting the detached
//!   `rcache gc --auto` (fork and exec; the gc itself runs in the background). Uses the `rcache`
//!   binary cargo builds for the bench run, pointed at an empty store so the child exits at
//!   once.
//!
//! Blob files are a few bytes each (gc never reads them), written without fsync and then
//! flushed with one sync(2), and the index is loaded in one transaction per 10,000 entries, so
//! that setting up 100,000 entries takes seconds rather than the minutes one commit per compile
//! would. The whole run takes several minutes, most of it reloading the removed half before
//! each sample.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use rcache::hash::Key;
use rcache::store::Store;
use rcache::store::entry::OutputKind;
use rcache::store::entry::{Candidate, Entry, EnvRecord, InputRecord, OutputRecord};
use rcache::store::gc::auto::after_store;
use rcache::store::gc::sweep::sweep;
use rcache::store::gc::{Limits, drop_dangling_candidates, plan, trim};
use rcache::store::state::StateUpdate;
use rcache::wrapper::background::spawn_gc;

const ENTRIES: u64 = 100_000;
const LOAD_BATCH: u64 = 10_000;
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

fn key_of(parts: &[u64]) -> Key {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&part.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}

/// Compile number `n`: its invocation key, a 12-input candidate, and an entry whose three
/// outputs are blobs of its own, created at `n` ms.
fn synthetic_compile(n: u64) -> (Key, Candidate, Entry, Vec<(Key, Vec<u8>)>) {
    let invocation = key_of(&[1, n]);
    let inputs: Vec<InputRecord> = (0..12u64)
        .map(|j| InputRecord {
            path: format!("src/module_{j}/mod.rs").into_bytes(),
            hash: key_of(&[3, n, j]),
        })
        .collect();
    let candidate = Candidate {
        inputs,
        env_deps: vec![EnvRecord {
            name: "CARGO_PKG_VERSION".into(),
            value: Some("0.3.1".into()),
        }],
        result_key: key_of(&[2, n]),
        path_bound: None,
    };
    let mut blobs = Vec::new();
    let mut outputs = Vec::new();
    for (kind, name) in [
        (OutputKind::Rlib, "libdemo.rlib"),
        (OutputKind::Rmeta, "libdemo.rmeta"),
        (OutputKind::DepInfo, "demo.d"),
    ] {
        let content = format!("{name} of compile {n:012}").into_bytes();
        let hash = *blake3::hash(&content).as_bytes();
        outputs.push(OutputRecord {
            name: name.into(),
            kind,
            blob: hash,
            size: content.len() as u64,
            mode: 0o644,
        });
        blobs.push((hash, content));
    }
    let entry = Entry {
        outputs,
        stdout: vec![],
        stderr: br#"{"$message_type":"artifact","artifact":"/p/target/debug/deps/libdemo.rmeta","emit":"metadata"}"#.to_vec(),
        out_dir: b"/p/target/debug/deps".to_vec(),
        compile_ms: 1234,
        created_unix_ms: n,
    };
    (invocation, candidate, entry, blobs)
}

/// Adds compiles `range` to the store: blob files, index records and last-use times (= n).
fn load(store: &Store, range: std::ops::Range<u64>) {
    let mut start = range.start;
    while start < range.end {
        let end = (start + LOAD_BATCH).min(range.end);
        let mut compiles = Vec::new();
        let mut update = StateUpdate::default();
        for n in start..end {
            let (invocation, candidate, entry, blobs) = synthetic_compile(n);
            for (hash, content) in blobs {
                fs::write(
                    store.layout.blob_path(&blake3::Hash::from_bytes(hash)),
                    content,
                )
                .unwrap();
            }
            update.last_use.push((candidate.result_key, n));
            compiles.push((invocation, candidate, entry));
        }
        store.index.load_compiles(&compiles).unwrap();
        store.state.apply(&update).unwrap();
        start = end;
    }
    // A real store's blobs were synced when written (blob::put_file): flush these too, so that
    // their writeback does not compete with the unlinks being measured.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn open_store(dir: &Path) -> Store {
    let store = Store::open(dir).unwrap();
    for fan in 0..=255u8 {
        let _ = fs::create_dir(store.layout.blobs_dir().join(format!("{fan:02x}")));
    }
    store
}

fn store_bytes(store: &Store) -> u64 {
    let rtxn = store.index.read_txn().unwrap();
    store.index.store_bytes(&rtxn).unwrap()
}

fn bench_gc(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let started = Instant::now();
    load(&store, 0..ENTRIES);
    eprintln!(
        "gc bench: loaded {ENTRIES} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The newest compile loaded so far; the oldest still present is `next - ENTRIES`.
    let mut next = ENTRIES;

    let mut group = c.benchmark_group("gc");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    group.bench_function("trim_oldest_half_of_100k", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            for _ in 0..iterations {
                let entries = {
                    let rtxn = store.index.read_txn().unwrap();
                    store.index.totals(&rtxn).unwrap().entries
                };
                if entries < ENTRIES {
                    load(&store, next..next + (ENTRIES - entries));
                    next += ENTRIES - entries;
                }
                let limits = Limits {
                    max_bytes: Some(store_bytes(&store) / 2),
                    max_age: None,
                };
                let start = Instant::now();
                let plan = plan(&store, &limits, next).unwrap();
                let trimmed = trim(&store, &plan, LOCK_TIMEOUT).unwrap();
                timed += start.elapsed();
                assert_eq!(trimmed.freed.entries, ENTRIES / 2);
                assert_eq!(trimmed.freed.blobs, 3 * ENTRIES / 2);
            }
            timed
        })
    });
    load(&store, next..next + ENTRIES / 2);
    let everything = Limits {
        max_bytes: Some(0),
        max_age: None,
    };
    group.bench_function("plan_100k", |b| {
        b.iter(|| assert_eq!(plan(&store, &everything, 0).unwrap().victims.len(), 100_000))
    });
    group.bench_function("manifest_scan_100k", |b| {
        b.iter(|| {
            assert_eq!(
                drop_dangling_candidates(&store, LOCK_TIMEOUT).unwrap(),
                (0, 0)
            )
        })
    });
    group.bench_function("sweep_100k", |b| {
        b.iter(|| {
            let swept = sweep(&store, Duration::from_secs(3600), false, LOCK_TIMEOUT).unwrap();
            assert_eq!(swept.orphan_blobs, 0);
        })
    });
    group.finish();
}

/// The rcache binary cargo built for this bench run (`CARGO_BIN_EXE_rcache`), or
/// `RCACHE_BENCH_BIN`.
fn rcache_binary() -> PathBuf {
    std::env::var_os("RCACHE_BENCH_BIN")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_rcache").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/release/rcache"))
}

fn bench_auto_gc(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    load(&store, 0..1000);
    let mut group = c.benchmark_group("auto_gc");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("check_under_limit", |b| {
        b.iter(|| after_store(&store, u64::MAX, None))
    });
    // The children read RCACHE_DIR: an empty store, under the default limit, so each exits
    // at once. Set before any thread starts.
    let empty = tempfile::tempdir().unwrap();
    // SAFETY: criterion runs benchmarks on this one thread; nothing reads the env concurrently.
    unsafe { std::env::set_var("RCACHE_DIR", empty.path()) };
    let rcache = rcache_binary();
    group.bench_function("spawn_detached", |b| b.iter(|| spawn_gc(&rcache).unwrap()));
    group.finish();
    // Let the last children exit before their store is deleted.
    std::thread::sleep(Duration::from_millis(500));
}

// The automatic gc first: a fork's cost grows with the parent's mapped pages, and the 100,000
// entry store's would make it look dearer than in a wrapper process.
criterion_group!(benches, bench_auto_gc, bench_gc);
criterion_main!(benches);
