//! File hashing strategies by file size, to pick `MMAP_THRESHOLD` and `RAYON_THRESHOLD` in
//! `src/hash/file_hash.rs`.
//!
//! For each size from 4 KiB to 256 MiB (with 8 MiB added to pin the rayon crossover), one file
//! is written once into a temp dir (so every iteration reads from a warm page cache, as a wrapper
//! does for rlibs cargo has just written), then hashed by each strategy the library offers.
//! Every iteration opens the file, as `hash_file` does:
//! - `read`: [`hash_reader`], plain reads (one `read_to_end` up to 256 KiB, `update_reader` above);
//! - `mmap`: [`hash_mmap`], one thread over a memory map;
//! - `mmap_rayon`: [`hash_mmap_rayon`], rayon's global pool over a memory map (the pool is warm
//!   after the first iteration);
//! - `mmap_rayon_cold`: the same on a freshly built pool (one thread per core) each iteration.
//!   rcache runs one process per rustc invocation, so the first rayon hash of a process pays for
//!   starting the pool (BLAKE3#245); this is what a wrapper that hashes one large file pays.
//!
//! A second group, `hash_file_busy`, repeats `mmap` and `mmap_rayon` for sizes from 1 MiB while
//! one spinning thread per core keeps every core busy, as `cargo build -jN` does: that is when
//! the wrapper hashes, and rayon can only win with an idle core.
//!
//! Throughput is in bytes of file. The crossover where `mmap` overtakes `read` is the mmap
//! threshold; where `mmap_rayon_cold` overtakes `mmap` is the rayon threshold.

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rcache::hash::file_hash::{hash_mmap, hash_mmap_rayon, hash_reader};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

const SIZES: [u64; 9] = [
    4 * KIB,
    64 * KIB,
    256 * KIB,
    MIB,
    4 * MIB,
    8 * MIB,
    16 * MIB,
    64 * MIB,
    256 * MIB,
];

fn label(size: u64) -> String {
    if size >= MIB {
        format!("{}M", size / MIB)
    } else {
        format!("{}K", size / KIB)
    }
}

/// Writes `size` bytes of incompressible-looking data (an xorshift stream), so that nothing along
/// the way (filesystem, page cache) can special-case it.
fn write_file(path: &Path, size: u64) {
    let mut file = File::create(path).expect("create bench file");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ size;
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let take = left.min(MIB) as usize;
        file.write_all(&chunk[..take]).expect("write bench file");
        left -= take as u64;
    }
    file.sync_all().expect("sync bench file");
}

fn open(path: &Path) -> File {
    File::open(path).expect("open bench file")
}

/// One spinning thread per core until dropped: the cores a parallel cargo build keeps busy.
struct BusyCores {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl BusyCores {
    fn start() -> BusyCores {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                })
            })
            .collect();
        BusyCores { stop, threads }
    }
}

impl Drop for BusyCores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn bench_hashing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<(u64, PathBuf)> = SIZES
        .iter()
        .map(|&size| {
            let path = dir.path().join(format!("file-{}.rlib", label(size)));
            write_file(&path, size);
            (size, path)
        })
        .collect();

    // All strategies agree, or the figures mean nothing.
    for (size, path) in &files {
        let expected = hash_reader(&mut open(path), *size).unwrap();
        assert_eq!(hash_mmap(&open(path)).unwrap(), expected);
        assert_eq!(hash_mmap_rayon(&open(path)).unwrap(), expected);
    }

    let mut group = c.benchmark_group("hash_file");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (size, path) in &files {
        let size = *size;
        group.throughput(Throughput::Bytes(size));
        let id = label(size);
        group.bench_with_input(BenchmarkId::new("read", &id), path, |b, path| {
            b.iter(|| hash_reader(&mut open(path), size).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("mmap", &id), path, |b, path| {
            b.iter(|| hash_mmap(&open(path)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("mmap_rayon", &id), path, |b, path| {
            b.iter(|| hash_mmap_rayon(&open(path)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("mmap_rayon_cold", &id), path, |b, path| {
            b.iter(|| {
                let pool = rayon::ThreadPoolBuilder::new().build().expect("rayon pool");
                let hash = pool.install(|| hash_mmap_rayon(&open(path)).unwrap());
                drop(black_box(pool));
                hash
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("hash_file_busy");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let busy = BusyCores::start();
    for (size, path) in files.iter().filter(|(size, _)| *size >= MIB) {
        group.throughput(Throughput::Bytes(*size));
        let id = label(*size);
        group.bench_with_input(BenchmarkId::new("mmap", &id), path, |b, path| {
            b.iter(|| hash_mmap(&open(path)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("mmap_rayon", &id), path, |b, path| {
            b.iter(|| hash_mmap_rayon(&open(path)).unwrap())
        });
    }
    drop(busy);
    group.finish();
}

criterion_group!(benches, bench_hashing);
criterion_main!(benches);
