//! `rcache verify [--repair]`: re-hashes every blob and checks every entry's references.
//!
//! Reports corrupt or missing blobs, undecodable entries and entries that reference a blob the
//! index does not count. With `--repair`, broken entries are removed (their blobs released) and
//! corrupt blobs deleted; the next build simply misses.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use crate::config::Config;
use crate::key::file_hash;
use crate::key::hasher::{Key, hex};

pub fn run(config: &Config, repair: bool) -> anyhow::Result<ExitCode> {
    let store = super::stats::open(config)?;
    let blob_refs = store.index.all_blob_refs()?;
    let mut bad_blobs: HashSet<Key> = HashSet::new();
    for (position, (blob, record)) in blob_refs.iter().enumerate() {
        let path = store.layout.blob_path(&blake3::Hash::from_bytes(*blob));
        let problem = match file_hash::hash_file(&path) {
            Ok(digest) if digest.hash.as_bytes() == blob && digest.stamp.size == record.size => {
                None
            }
            Ok(_) => Some("content does not match its name"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                (record.refs > 0).then_some("missing")
            }
            Err(_) => Some("unreadable"),
        };
        if let Some(problem) = problem {
            println!("blob {}: {problem}", hex(blob));
            bad_blobs.insert(*blob);
        }
        if (position + 1) % 1000 == 0 {
            println!("checked {} of {} blobs", position + 1, blob_refs.len());
        }
    }
    let counted: HashMap<Key, u64> = blob_refs
        .iter()
        .map(|(blob, record)| (*blob, record.refs))
        .collect();
    let mut broken_entries = Vec::new();
    let entries = store.index.all_entries()?;
    for (key, entry) in &entries {
        match entry {
            Err(err) => {
                println!("entry {}: undecodable ({err})", hex(key));
                broken_entries.push(*key);
            }
            Ok(entry) => {
                let dangling = entry.outputs.iter().find(|output| {
                    output.blob().is_some_and(|blob| {
                        !counted.contains_key(&blob) || bad_blobs.contains(&blob)
                    })
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
        }
    }
    let problems = bad_blobs.len() + broken_entries.len();
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
    let _lock = store.lock(std::time::Duration::from_secs(30))?;
    // Corrupt blob files go first, so that the entries released below free their records.
    for blob in &bad_blobs {
        let path = store.layout.blob_path(&blake3::Hash::from_bytes(*blob));
        let _ = std::fs::remove_file(path);
    }
    let also_free: Vec<Key> = bad_blobs.into_iter().collect();
    let (blobs, bytes) =
        store
            .index
            .remove_entries_and_free_blobs(&store.layout, &broken_entries, &also_free)?;
    println!(
        "repaired: removed {} entries, released {blobs} blobs ({bytes} bytes)",
        broken_entries.len()
    );
    Ok(ExitCode::SUCCESS)
}
