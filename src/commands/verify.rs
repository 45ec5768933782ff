//! `rcache verify [--repair]`: re-hashes every blob and checks every entry's references.
//!
//! Reports corrupt or missing blobs, undecodable entries, entries that reference a blob the
//! index does not count, reference counts that differ from the entries that use them, and a
//! `store_bytes` total that differs from the blobs' sizes. With `--repair`, broken entries are
//! removed (their blobs released), corrupt blobs deleted, counts and the total recomputed, and
//! manifest candidates left pointing at nothing dropped; the next build simply misses.
//!
//! It runs beside builds and gc: the index is read in one snapshot, and a blob found missing is
//! reported only if the index still counts it afterwards (gc may have freed it meanwhile). A
//! progress bar shows on a terminal (stderr), plain lines otherwise.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::hash::file_hash;
use crate::hash::{Key, hex};
use crate::store::Store;
use crate::store::entry::OutputRecord;
use crate::store::gc::drop_dangling_candidates;
use crate::store::index::BlobRef;
use crate::store::layout::GC_LOCK_TIMEOUT_MS;

pub fn run(config: &Config, repair: bool) -> anyhow::Result<ExitCode> {
    let store = super::stats::open(config)?;
    let (entries, blob_refs, store_bytes) = {
        let rtxn = store.index.read_txn()?;
        (
            store.index.all_entries(&rtxn)?,
            store.index.all_blob_refs(&rtxn)?,
            store.index.store_bytes(&rtxn)?,
        )
    };
    let mut progress = Progress::new(blob_refs.len() as u64);
    let mut bad_blobs: HashSet<Key> = HashSet::new();
    for (blob, record) in &blob_refs {
        if let Some(problem) = check_blob(&store, blob, record)? {
            progress.println(&format!("blob {}: {problem}", hex(blob)));
            bad_blobs.insert(*blob);
        }
        progress.inc();
    }
    progress.finish();

    let counted: HashMap<Key, &BlobRef> = blob_refs.iter().map(|(b, r)| (*b, r)).collect();
    let mut referenced: HashMap<Key, u64> = HashMap::new();
    let mut broken_entries = Vec::new();
    for (key, entry) in &entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                println!("entry {}: undecodable ({err})", hex(key));
                broken_entries.push(*key);
                continue;
            }
        };
        for blob in entry.outputs.iter().filter_map(OutputRecord::blob) {
            *referenced.entry(blob).or_default() += 1;
        }
        let dangling = entry.outputs.iter().find(|output| {
            output
                .blob()
                .is_some_and(|blob| !counted.contains_key(&blob) || bad_blobs.contains(&blob))
        });
        if let Some(output) = dangling {
            println!(
                "entry {}: output {} references a bad blob",
                hex(key),
                output.name
            );
            broken_entries.push(*key);
        }
    }
    let mut miscounted = 0;
    if broken_entries.is_empty() {
        // Counts are only meaningful when every entry could be read.
        for (blob, record) in &blob_refs {
            let uses = referenced.get(blob).copied().unwrap_or(0);
            if uses != record.refs {
                println!(
                    "blob {}: counted {} references, {uses} entries use it",
                    hex(blob),
                    record.refs
                );
                miscounted += 1;
            }
        }
        let sizes: u64 = blob_refs.iter().map(|(_, record)| record.size).sum();
        if sizes != store_bytes {
            println!("store_bytes is {store_bytes}, the blobs' sizes add up to {sizes}");
            miscounted += 1;
        }
    }

    let problems = bad_blobs.len() + broken_entries.len() + miscounted;
    println!(
        "verified {} entries and {} blobs: {problems} problem(s)",
        entries.len(),
        blob_refs.len()
    );
    if problems == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    if !repair {
        println!("run `rcache verify --repair` to remove what is broken");
        return Ok(ExitCode::FAILURE);
    }
    let timeout = Duration::from_millis(GC_LOCK_TIMEOUT_MS);
    let freed = {
        let _lock = store.lock(timeout)?;
        // Corrupt blob files go first, so that the entries released below free their records.
        for blob in &bad_blobs {
            let path = store.layout.blob_path(&blake3::Hash::from_bytes(*blob));
            let _ = std::fs::remove_file(path);
        }
        let also_free: Vec<Key> = bad_blobs.into_iter().collect();
        store
            .index
            .remove_entries_and_free_blobs(&store.layout, &broken_entries, &also_free)?
    };
    let recounted = {
        let _lock = store.lock(timeout)?;
        store.index.recount_blob_refs()?
    };
    let (rewritten, removed) = drop_dangling_candidates(&store, timeout)?;
    println!(
        "repaired: removed {} entries, released {} blobs ({} bytes), corrected {recounted} \
         counts, dropped dangling candidates from {} manifests",
        freed.entries,
        freed.blobs,
        freed.bytes,
        rewritten + removed
    );
    Ok(ExitCode::SUCCESS)
}

/// What is wrong with one blob, if anything.
///
/// Beside builds and gc, a blob can change under the hash without being damaged: a restore
/// hard-links it and gc unlinks it, and both change its ctime, which `hash_file` reports as a
/// change. So a failed hash is tried again, and a missing file is a problem only while the
/// index still counts the blob once no gc batch is in flight.
fn check_blob(store: &Store, blob: &Key, record: &BlobRef) -> anyhow::Result<Option<&'static str>> {
    let path = store.layout.blob_path(&blake3::Hash::from_bytes(*blob));
    for _ in 0..3 {
        match file_hash::hash_file(&path) {
            Ok(digest) => {
                let intact = digest.hash.as_bytes() == blob && digest.stamp.size == record.size;
                return Ok((!intact).then_some("content does not match its name"));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
            Err(_) => continue,
        }
    }
    if path.exists() {
        return Ok(Some("unreadable"));
    }
    // gc deletes a file inside its write transaction, before the commit that drops the count:
    // wait for any batch in flight (they run under the store lock), then look again.
    drop(store.lock(Duration::from_millis(GC_LOCK_TIMEOUT_MS))?);
    let rtxn = store.index.read_txn()?;
    let now = store.index.blob_ref(&rtxn, blob)?;
    Ok(now.is_some_and(|now| now.refs > 0).then_some("missing"))
}

/// A progress bar on a terminal, a line every 1000 blobs otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines { done: u64, total: u64 },
}

impl Progress {
    fn new(total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines { done: 0, total };
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("verifying blobs {bar:40} {pos}/{len} ({eta} left)")
        {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    }

    fn inc(&mut self) {
        match self {
            Progress::Bar(bar) => bar.inc(1),
            Progress::Lines { done, total } => {
                *done += 1;
                if *done % 1000 == 0 {
                    println!("checked {done} of {total} blobs");
                }
            }
        }
    }

    /// Prints a line above the bar (or just prints it).
    fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.suspend(|| println!("{line}")),
            Progress::Lines { .. } => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
