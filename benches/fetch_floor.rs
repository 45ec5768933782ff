//! The CPU a fresh machine cannot avoid when it takes a workload's blobs from the remote (issue
//! 18, benches/README.md, "The floor of a remote-warm build"): every fetched frame is
//! decompressed, its blake3 checked and its bytes written into the local store. No network and
//! no build: what is left is the work itself, phase by phase, on one thread.
//!
//! `RCACHE_BENCH_CORPUS=<dir>` names the blobs (a store's `v2/blobs`, say the one a cold
//! webrender build left). Each file is compressed once with `codec::compress` (what the uploader
//! publishes); then, `RCACHE_BENCH_PASSES` times (3 by default), three passes over all frames:
//!
//! - `decompress`: `codec::decoder` read to the end into nothing;
//! - `decompress+blake3`: the same, into a blake3 hasher;
//! - `fetch`: `store::blob::put_expected` into a fresh store under the target dir, the fetch's
//!   own path (`remote::fetch`), which decompresses, hashes and writes, unsynced. The store is
//!   `RCACHE_BENCH_STORE` if set (a directory this pass deletes), else under the target dir.
//!
//! Each pass prints its wall time and the process's user and system CPU (`getrusage`). The
//! store of the `fetch` pass is deleted before the next one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rcache::remote::codec;
use rcache::store::Store;
use rcache::store::blob::{self, Durability};
use rcache::store::state::StateUpdate;

/// User and system CPU of this process so far, in seconds.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

/// Runs `pass` and prints its wall time and CPU under `name`.
fn measured(name: &str, raw: usize, pass: impl FnOnce()) {
    let (user, sys) = cpu_seconds();
    let start = Instant::now();
    pass();
    let wall = start.elapsed().as_secs_f64();
    let (user_after, sys_after) = cpu_seconds();
    eprintln!(
        "fetch floor {name}: {:.1} MB, wall {wall:.3} s, user {:.3} s, sys {:.3} s",
        raw as f64 / 1e6,
        user_after - user,
        sys_after - sys,
    );
}

/// Every file under `dir`, read, in a stable order.
fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(entry.path()),
                Ok(kind) if kind.is_file() => paths.push(entry.path()),
                _ => {}
            }
        }
    }
    paths.sort();
    paths
        .iter()
        .filter_map(|path| fs::read(path).ok())
        .collect()
}

/// Where the `fetch` pass's store goes: `RCACHE_BENCH_STORE`, else under the target dir.
fn store_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RCACHE_BENCH_STORE") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-fetch-floor")
}

fn main() {
    let Some(dir) = std::env::var_os("RCACHE_BENCH_CORPUS") else {
        eprintln!("fetch floor: set RCACHE_BENCH_CORPUS to a directory of blobs");
        return;
    };
    let passes: usize = std::env::var("RCACHE_BENCH_PASSES")
        .ok()
        .and_then(|passes| passes.parse().ok())
        .unwrap_or(3);
    let blobs = corpus(Path::new(&dir));
    let raw: usize = blobs.iter().map(Vec::len).sum();
    let frames: Vec<(Vec<u8>, blake3::Hash, u64)> = blobs
        .iter()
        .map(|bytes| {
            let frame = codec::compress(bytes).unwrap();
            (frame, blake3::hash(bytes), bytes.len() as u64)
        })
        .collect();
    drop(blobs);
    let sent: usize = frames.iter().map(|(frame, ..)| frame.len()).sum();
    eprintln!(
        "fetch floor corpus {}: {} blobs, {raw} bytes, {sent} compressed at level {}",
        Path::new(&dir).display(),
        frames.len(),
        codec::LEVEL
    );
    let root = store_dir();
    for _ in 0..passes {
        measured("decompress", raw, || {
            for (frame, ..) in &frames {
                let mut decoder = codec::decoder(frame).unwrap();
                io::copy(&mut decoder, &mut io::sink()).unwrap();
            }
        });
        measured("decompress+blake3", raw, || {
            for (frame, hash, _) in &frames {
                let mut hasher = blake3::Hasher::new();
                io::copy(&mut codec::decoder(frame).unwrap(), &mut hasher).unwrap();
                assert_eq!(hasher.finalize(), *hash);
            }
        });
        let _ = fs::remove_dir_all(&root);
        let store = Store::open(&root).unwrap();
        let mut update = StateUpdate::default();
        measured("fetch", raw, || {
            for (frame, hash, size) in &frames {
                let mut decoder = codec::decoder(frame).unwrap();
                let expected = (hash, *size);
                let refetchable = Durability::Refetchable;
                blob::put_expected(
                    &store.layout,
                    &mut decoder,
                    expected,
                    refetchable,
                    &mut update,
                )
                .map_err(|_| "not as expected")
                .unwrap();
            }
        });
        drop(store);
        let _ = fs::remove_dir_all(&root);
    }
}
