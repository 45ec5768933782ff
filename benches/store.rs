//! The costs that make up a cache hit, from the key to a whole wrapper process, to find what a
//! hit spends its time on and how it compares with the compile it replaces (docs/design.md §1: a
//! hit should cost a few milliseconds).
//!
//! - `key`: classifying a typical cargo lib argv (docs/facts.md §4) and computing its invocation
//!   key from realistic `InvocationFacts`; also reading the env allowlist from the process
//!   environment.
//! - `index_lookup`: one read transaction, the manifest under an invocation key and the entry under
//!   its first candidate's result key, in an index holding N entries (present and absent key).
//! - `blob_put`: `blob::put_file` of a 64 KiB and a 4 MiB file, both for new content (hash, copy,
//!   fsync, rename) and for content already stored (hash and copy only, then the temp is dropped).
//! - `restore_4M`: materializing a 4 MiB blob into an out dir by hard link, by
//!   `reflink_or_copy`, and by `fs::copy`, each to a temp name renamed into place as `restore.rs`
//!   does, into an out dir where the file does not exist yet (a fresh target dir).
//!
//! A whole wrapper process that hits is `benches/wrapper_hit.rs`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use rcache::hash::Key;
use rcache::key::base_dirs::Role;
use rcache::key::{BaseDirs, InvocationFacts, invocation_key, result_key};
use rcache::rustc::{Invocation, classify};
use rcache::store::Store;
use rcache::store::blob;
use rcache::store::entry::OutputKind;
use rcache::store::entry::{Candidate, Entry, EnvRecord, InputRecord, OutputRecord};
use rcache::store::layout::Layout;
use rcache::store::state::StateUpdate;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// A group with short runs: the machine is small and shared.
fn quick<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

/// Deterministic pseudo-random bytes (xorshift), different for each `seed`.
fn data(size: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

fn key_of(parts: &[u64]) -> Key {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&part.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}

// ---------------------------------------------------------------------------------------------
// key

/// The argv cargo passes for a dev-profile lib with features and three dependencies
/// (docs/facts.md §4), without `-C incremental` (which is a passthrough: path packages with
/// incremental on are not cached).
fn cargo_lib_argv() -> Vec<OsString> {
    let target = "/home/user/project/target/debug/deps";
    let mut args: Vec<String> = [
        "--crate-name",
        "demo",
        "--edition=2024",
        "src/lib.rs",
        "--error-format=json",
        "--json=diagnostic-rendered-ansi,artifacts,future-incompat",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        "embed-bitcode=no",
        "-C",
        "debuginfo=2",
        "--cfg",
        "feature=\"std\"",
        "--cfg",
        "feature=\"default\"",
        "--check-cfg",
        "cfg(docsrs,test)",
        "--check-cfg",
        "cfg(feature, values(\"default\", \"serde\", \"std\"))",
        "-C",
        "metadata=8dd7c3b0c2a1e0f4",
        "-C",
        "extra-filename=-01f2a3b4c5d6e7f8",
        "--out-dir",
        target,
        "-L",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.push(format!("dependency={target}"));
    for (name, hash) in [
        ("memchr", "0123456789abcdef"),
        ("serde", "fedcba9876543210"),
        ("smallvec", "00112233445566ff"),
    ] {
        args.push("--extern".into());
        args.push(format!("{name}={target}/lib{name}-{hash}.rmeta"));
    }
    args.into_iter().map(OsString::from).collect()
}

/// The allowlisted environment cargo gives a lib unit: the fixed names (most unset) and the
/// `CARGO_PKG_*` variables.
fn cargo_lib_env() -> Vec<(String, Option<OsString>)> {
    let set = |name: &str, value: &str| (name.to_string(), Some(OsString::from(value)));
    let unset = |name: &str| (name.to_string(), None);
    vec![
        set(
            "CARGO",
            "/home/user/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin/cargo",
        ),
        set("CARGO_CRATE_NAME", "demo"),
        set("CARGO_MANIFEST_DIR", "/home/user/project"),
        set("CARGO_MANIFEST_PATH", "/home/user/project/Cargo.toml"),
        set("CARGO_PRIMARY_PACKAGE", "1"),
        unset("CARGO_BIN_NAME"),
        unset("CARGO_TARGET_TMPDIR"),
        unset("OUT_DIR"),
        unset("RUSTC_BOOTSTRAP"),
        unset("CLIPPY_ARGS"),
        unset("CLIPPY_CONF_DIR"),
        set("CARGO_PKG_AUTHORS", "A. Person <a@example.org>"),
        set("CARGO_PKG_DESCRIPTION", "A demo crate"),
        set("CARGO_PKG_HOMEPAGE", ""),
        set("CARGO_PKG_LICENSE", "MIT OR Apache-2.0"),
        set("CARGO_PKG_LICENSE_FILE", ""),
        set("CARGO_PKG_NAME", "demo"),
        set("CARGO_PKG_README", "README.md"),
        set("CARGO_PKG_REPOSITORY", "https://example.org/demo"),
        set("CARGO_PKG_RUST_VERSION", "1.89"),
        set("CARGO_PKG_VERSION", "0.3.1"),
        set("CARGO_PKG_VERSION_MAJOR", "0"),
        set("CARGO_PKG_VERSION_MINOR", "3"),
        set("CARGO_PKG_VERSION_PATCH", "1"),
        set("CARGO_PKG_VERSION_PRE", ""),
    ]
}

fn bench_key(c: &mut Criterion) {
    let argv = cargo_lib_argv();
    let invocation = classify(&argv).expect("the cargo lib argv is cacheable");
    let cwd = Path::new("/home/user/project");
    // The base dirs of a workspace member (keys normalize the cwd, input and env values by them).
    let bases = BaseDirs::new(vec![
        (Role::Cwd, cwd.to_path_buf()),
        (Role::CargoHome, "/home/user/.cargo".into()),
        (Role::Target, "/home/user/project/target".into()),
        (Role::Sysroot, "/home/user/.rustup/toolchains/stable".into()),
    ])
    .expect("usual dirs");
    fn facts<'a>(
        invocation: &'a Invocation,
        cwd: &'a Path,
        bases: &'a BaseDirs,
    ) -> InvocationFacts<'a> {
        InvocationFacts {
            invocation,
            compiler_id: key_of(&[1]),
            wrapper_id: None,
            cwd,
            bases,
            extern_hashes: invocation
                .externs
                .iter()
                .enumerate()
                .map(|(i, ext)| (ext.name.clone(), key_of(&[2, i as u64])))
                .collect(),
            static_lib_hashes: vec![],
            target_json_hash: None,
            env: cargo_lib_env(),
            native_cpu: None,
            // A lib does not link.
            linker: None,
        }
    }

    let mut group = quick(c, "key");
    group.bench_function("classify", |b| {
        b.iter(|| classify(black_box(&argv)).unwrap())
    });
    let prepared = facts(&invocation, cwd, &bases);
    group.bench_function("invocation_key", |b| {
        b.iter(|| invocation_key(black_box(&prepared)))
    });
    group.bench_function("classify+facts+invocation_key", |b| {
        b.iter(|| {
            let invocation = classify(black_box(&argv)).unwrap();
            invocation_key(&facts(&invocation, cwd, &bases))
        })
    });
    group.bench_function("allowlisted_env", |b| b.iter(rcache::key::allowlisted_env));
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// index lookup

/// A lib compile's entry: rlib, rmeta and `.d` outputs and the artifact lines rustc printed.
fn synthetic_entry(blobs: &[(OutputKind, &str, blob::StoredBlob)]) -> Entry {
    let out_dir = "/home/user/project/target/debug/deps";
    let mut stderr = Vec::new();
    for (emit, name) in [
        ("metadata", "libdemo-01f2a3b4c5d6e7f8.rmeta"),
        ("dep-info", "demo-01f2a3b4c5d6e7f8.d"),
        ("link", "libdemo-01f2a3b4c5d6e7f8.rlib"),
    ] {
        writeln!(
            stderr,
            r#"{{"$message_type":"artifact","artifact":"{out_dir}/{name}","emit":"{emit}"}}"#
        )
        .unwrap();
    }
    Entry {
        outputs: blobs
            .iter()
            .map(|(kind, name, stored)| OutputRecord {
                name: name.to_string(),
                kind: *kind,
                blob: *stored.hash.as_bytes(),
                size: stored.size,
                mode: 0o644,
            })
            .collect(),
        stdout: vec![],
        stderr,
        out_dir: out_dir.as_bytes().to_vec(),
        compile_ms: 1234,
        created_unix_ms: 1_700_000_000_000,
    }
}

/// A candidate with 12 source inputs and one env-dep, as a small crate's dep-info gives.
fn synthetic_candidate(invocation: &Key, i: u64) -> Candidate {
    let inputs: Vec<InputRecord> = (0..12u64)
        .map(|j| InputRecord {
            path: format!("src/module_{j}/mod.rs").into_bytes(),
            hash: key_of(&[3, i, j]),
        })
        .collect();
    let env_deps = vec![EnvRecord {
        name: "CARGO_PKG_VERSION".into(),
        value: Some("0.3.1".into()),
    }];
    let mut candidate = Candidate {
        inputs,
        env_deps,
        result_key: [0; 32],
        path_bound: None,
    };
    candidate.result_key = result_key(invocation, &candidate, b"");
    candidate
}

fn put_bytes(layout: &Layout, dir: &Path, name: &str, bytes: &[u8]) -> blob::StoredBlob {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    blob::put_file(
        layout,
        &mut File::open(&path).unwrap(),
        &mut StateUpdate::default(),
    )
    .unwrap()
}

fn bench_index_lookup(c: &mut Criterion) {
    let mut group = quick(c, "index_lookup");
    let mut stores = Vec::new();
    for entries in [100u64, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let scratch = dir.path();
        let blobs = [
            (
                OutputKind::Rlib,
                "libdemo-01f2a3b4c5d6e7f8.rlib",
                put_bytes(&store.layout, scratch, "a", &data(300 * KIB, 1)),
            ),
            (
                OutputKind::Rmeta,
                "libdemo-01f2a3b4c5d6e7f8.rmeta",
                put_bytes(&store.layout, scratch, "b", &data(60 * KIB, 2)),
            ),
            (
                OutputKind::DepInfo,
                "demo-01f2a3b4c5d6e7f8.d",
                put_bytes(&store.layout, scratch, "c", &data(600, 3)),
            ),
        ];
        let entry = synthetic_entry(&blobs);
        let started = Instant::now();
        for i in 0..entries {
            let invocation = key_of(&[4, i]);
            let candidate = synthetic_candidate(&invocation, i);
            store
                .index
                .commit_compile(&store.layout, &invocation, candidate, &entry)
                .unwrap();
        }
        eprintln!(
            "index_lookup: committed {entries} entries in {:.2?} ({:.0} µs per commit_compile)",
            started.elapsed(),
            started.elapsed().as_secs_f64() * 1e6 / entries as f64
        );

        let present = key_of(&[4, entries / 2]);
        let index = &store.index;
        group.bench_function(BenchmarkId::new("present", entries), |b| {
            b.iter(|| {
                let rtxn = index.read_txn().unwrap();
                let manifest = index.manifest(&rtxn, black_box(&present)).unwrap();
                let candidate = manifest.candidates.first().expect("a candidate");
                let entry = index.entry(&rtxn, &candidate.result_key).unwrap();
                entry.expect("the entry is present").outputs.len()
            })
        });
        let absent = key_of(&[5, 0]);
        group.bench_function(BenchmarkId::new("absent", entries), |b| {
            b.iter(|| {
                let rtxn = index.read_txn().unwrap();
                index
                    .manifest(&rtxn, black_box(&absent))
                    .unwrap()
                    .candidates
                    .len()
            })
        });
        // The env stays open for the process (see store::lmdb); keep the dir until the end.
        stores.push((dir, store));
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// blob put

fn bench_blob_put(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let layout = &store.layout;
    let mut group = quick(c, "blob_put");
    for (label, size) in [("64K", 64 * KIB), ("4M", 4 * MIB)] {
        let source_path = dir.path().join(format!("source-{label}"));
        fs::write(&source_path, data(size, size as u64)).unwrap();
        group.throughput(Throughput::Bytes(size as u64));

        // New content every iteration: the first 8 bytes carry a counter (written untimed), and
        // the blob is deleted again untimed, so the store does not grow.
        group.bench_function(BenchmarkId::new("new", label), |b| {
            let mut source = File::options()
                .read(true)
                .write(true)
                .open(&source_path)
                .unwrap();
            let mut counter = 0u64;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    counter += 1;
                    source.write_all_at(&counter.to_le_bytes(), 0).unwrap();
                    source.seek(SeekFrom::Start(0)).unwrap();
                    let started = Instant::now();
                    let stored =
                        blob::put_file(layout, &mut source, &mut StateUpdate::default()).unwrap();
                    total += started.elapsed();
                    fs::remove_file(layout.blob_path(&stored.hash)).unwrap();
                }
                total
            })
        });

        // Content already in the store: hashed and copied to a temp file, which is dropped.
        let mut source = File::open(&source_path).unwrap();
        let stored = blob::put_file(layout, &mut source, &mut StateUpdate::default()).unwrap();
        group.bench_function(BenchmarkId::new("already_stored", label), |b| {
            b.iter(|| {
                source.seek(SeekFrom::Start(0)).unwrap();
                let again =
                    blob::put_file(layout, &mut source, &mut StateUpdate::default()).unwrap();
                assert_eq!(again.hash, stored.hash);
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// restore

fn bench_restore(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let size = 4 * MIB;
    let stored = put_bytes(&store.layout, dir.path(), "source", &data(size, 7));
    let blob_path = store.layout.blob_path(&stored.hash);
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let destination = out_dir.join("libdemo-01f2a3b4c5d6e7f8.rlib");
    let temp = out_dir.join("libdemo-01f2a3b4c5d6e7f8.rlib.rcache-1");

    type Strategy = fn(&Path, &Path) -> std::io::Result<()>;
    let strategies: [(&str, Strategy); 3] = [
        ("hard_link", |from, to| fs::hard_link(from, to)),
        ("reflink_or_copy", |from, to| {
            reflink_copy::reflink_or_copy(from, to).map(drop)
        }),
        ("fs_copy", |from, to| fs::copy(from, to).map(drop)),
    ];

    let mut group = quick(c, "restore_4M");
    group.throughput(Throughput::Bytes(size as u64));
    for (name, strategy) in strategies {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    strategy(&blob_path, &temp).unwrap();
                    fs::rename(&temp, &destination).unwrap();
                    total += started.elapsed();
                    // A fresh out dir every time (untimed). This also avoids rename()'s no-op
                    // when source and destination are links to the same inode.
                    fs::remove_file(&destination).unwrap();
                }
                total
            })
        });
    }
    group.finish();
    assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
criterion_group!(
    benches,
    bench_key,
    bench_index_lookup,
    bench_blob_put,
    bench_restore
);
criterion_main!(benches);
