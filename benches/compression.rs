//! The codec of remote blobs (`src/remote/codec.rs`, issue 18): zstd at levels 1, 3, 6 and 9,
//! and with 2 worker threads (zstd's multithreaded mode, on a 2-core machine), on real rustc
//! outputs, to choose `codec::LEVEL` (benches/README.md, "Remote blobs compressed").
//!
//! - `compress/<file>/<level>`: `codec::compress_at`, what the publisher (the background
//!   uploader) pays per blob;
//! - `compress_mt2/<file>/<level>`: the same frame format, compressed by 2 zstd worker threads;
//! - `decompress/<file>/<level>`: `codec::decoder` read to the end, what a fresh machine pays per
//!   fetched blob besides the download (the fetch also hashes and writes it, as it did before).
//!
//! Throughput is in bytes of the *uncompressed* blob, for both directions. The compressed sizes
//! (the ratio) are printed before the measurements, and `benches/harness/codec_levels.py` turns
//! criterion's estimates and these sizes into the cost of a download at 1 Gbit/s.
//!
//! Inputs, from a dev build (`cargo build` first): the rlib `RCACHE_BENCH_RLIB`, by default the
//! newest `target/debug/deps/libtokio-*.rlib` (about 20 MB); and the debug binary
//! `RCACHE_BENCH_BINARY`, by default `target/debug/rcache-launcher` (about 5 MB, a std-only
//! binary like a build script). A missing input is skipped with a message.
//!
//! With `RCACHE_BENCH_CORPUS=<dir>` (a store's `v1/blobs`, say the one the e2e harness filled
//! building webrender), every file under it is also compressed once at each level and
//! decompressed again, one after the other on one thread, and the totals printed ("codec corpus
//! ..."): a whole workload's bytes down and CPU, not a criterion measurement.

use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use rcache::remote::codec;
use zstd::stream::raw::CParameter;

/// The levels compared.
const LEVELS: [i32; 4] = [1, 3, 6, 9];

/// Worker threads of the multithreaded case: the machine's 2 cores.
const WORKERS: u32 = 2;

/// A group with few, long samples: a sample compresses a whole rlib.
fn group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The newest file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn newest(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .max_by_key(|entry| {
            entry
                .metadata()
                .and_then(|meta| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        })
        .map(|entry| entry.path())
}

/// The inputs: (label, bytes), each read once.
fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let debug = target_dir().join("debug");
    let rlib = std::env::var_os("RCACHE_BENCH_RLIB")
        .map(PathBuf::from)
        .or_else(|| newest(&debug.join("deps"), "libtokio-", ".rlib"));
    let binary = std::env::var_os("RCACHE_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| debug.join("rcache-launcher"));
    let mut found = Vec::new();
    for (label, path) in [("rlib", rlib), ("debug_binary", Some(binary))] {
        match path.map(|path| (fs::read(&path), path)) {
            Some((Ok(bytes), path)) => {
                eprintln!(
                    "codec input {label}: {} ({:.2} MB)",
                    path.display(),
                    bytes.len() as f64 / 1e6
                );
                found.push((label, bytes));
            }
            Some((Err(err), path)) => {
                eprintln!("codec input {label}: {} skipped: {err}", path.display());
            }
            None => eprintln!("codec input {label}: none found; run `cargo build` first"),
        }
    }
    found
}

/// `bytes` compressed at `level` by `workers` zstd worker threads (0: on the calling thread).
fn compress_with_workers(bytes: &[u8], level: i32, workers: u32) -> Vec<u8> {
    let mut compressor = zstd::bulk::Compressor::new(level).unwrap();
    compressor
        .set_parameter(CParameter::NbWorkers(workers))
        .unwrap();
    compressor.compress(bytes).unwrap()
}

fn decompressed_len(frame: &[u8]) -> usize {
    let mut out = Vec::new();
    codec::decoder(frame)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out.len()
}

/// Every file under `dir`, read.
fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(path),
                Ok(kind) if kind.is_file() => files.extend(fs::read(&path).ok()),
                _ => {}
            }
        }
    }
    files
}

/// One pass over a whole corpus per level: total bytes, compressed bytes, and the seconds spent
/// compressing and decompressing (one thread).
fn corpus_totals(dir: &Path) {
    let files = corpus(dir);
    let raw: usize = files.iter().map(Vec::len).sum();
    eprintln!(
        "codec corpus {}: {} files, {:.1} MB",
        dir.display(),
        files.len(),
        raw as f64 / 1e6
    );
    for level in LEVELS {
        let (mut sent, mut compress, mut decompress) = (0, Duration::ZERO, Duration::ZERO);
        for bytes in &files {
            let start = Instant::now();
            let frame = codec::compress_at(bytes, level).unwrap();
            compress += start.elapsed();
            let start = Instant::now();
            assert_eq!(decompressed_len(&frame), bytes.len());
            decompress += start.elapsed();
            sent += frame.len();
        }
        eprintln!(
            "codec corpus level {level}: {raw} -> {sent} bytes (ratio {:.2}), compress {:.2} s \
             ({:.0} MB/s), decompress {:.2} s ({:.0} MB/s)",
            raw as f64 / sent as f64,
            compress.as_secs_f64(),
            raw as f64 / 1e6 / compress.as_secs_f64(),
            decompress.as_secs_f64(),
            raw as f64 / 1e6 / decompress.as_secs_f64(),
        );
    }
}

fn codec_levels(c: &mut Criterion) {
    if let Some(dir) = std::env::var_os("RCACHE_BENCH_CORPUS") {
        corpus_totals(Path::new(&dir));
    }
    let inputs = inputs();
    // The ratios first: one line per input and level, for codec_levels.py.
    let mut frames = Vec::new();
    for (label, bytes) in &inputs {
        for level in LEVELS {
            let frame = codec::compress_at(bytes, level).unwrap();
            let threaded = compress_with_workers(bytes, level, WORKERS);
            assert_eq!(decompressed_len(&frame), bytes.len());
            assert_eq!(decompressed_len(&threaded), bytes.len());
            eprintln!(
                "codec size {label} level {level}: {} -> {} bytes (ratio {:.2}; {WORKERS} workers: {} bytes)",
                bytes.len(),
                frame.len(),
                bytes.len() as f64 / frame.len() as f64,
                threaded.len()
            );
            frames.push((*label, level, frame));
        }
    }

    let mut compress = group(c, "compress");
    for (label, bytes) in &inputs {
        compress.throughput(Throughput::Bytes(bytes.len() as u64));
        for level in LEVELS {
            compress.bench_with_input(BenchmarkId::new(*label, level), bytes, |b, bytes| {
                b.iter(|| codec::compress_at(black_box(bytes), level).unwrap())
            });
        }
    }
    compress.finish();

    let mut threaded = group(c, "compress_mt2");
    for (label, bytes) in &inputs {
        threaded.throughput(Throughput::Bytes(bytes.len() as u64));
        for level in LEVELS {
            threaded.bench_with_input(BenchmarkId::new(*label, level), bytes, |b, bytes| {
                b.iter(|| compress_with_workers(black_box(bytes), level, WORKERS))
            });
        }
    }
    threaded.finish();

    let mut decompress = group(c, "decompress");
    for (label, level, frame) in &frames {
        let size = inputs
            .iter()
            .find(|(input, _)| input == label)
            .map_or(0, |(_, bytes)| bytes.len());
        decompress.throughput(Throughput::Bytes(size as u64));
        decompress.bench_with_input(BenchmarkId::new(*label, level), frame, |b, frame| {
            b.iter(|| decompressed_len(black_box(frame)))
        });
    }
    decompress.finish();
}

criterion_group!(benches, codec_levels);
criterion_main!(benches);
