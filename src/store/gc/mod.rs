//! gc: keeps the store within its size and age limits, from the index (docs/design.md §7).
//!
//! - [`mod@plan`]: which entries go, least recently used first, decided from one read snapshot.
//! - [`trim`] (here): removes them in small batches, each one index write transaction under the
//!   store lock, which is released between batches so that a build waiting to store waits for
//!   one batch at most. Then drops the manifest candidates left pointing at nothing.
//! - [`sweep`]: what a crash left behind (orphan blobs, stale temp files), older than a grace
//!   period, found by walking `blobs/` and `tmp/`.
//! - [`auto`]: the check the wrapper calls after a store: over the limit, it says a gc is due
//!   (the wrapper then starts `rcache gc --auto` detached from the build).
//!
//! Blob files are deleted only inside the write transaction that finds their count at 0
//! (`index/removal.rs`); store-format/README.md ("gc") gives the argument that a concurrent
//! store never loses a blob it is about to reference.

pub mod auto;
pub(crate) mod plan;
pub mod sweep;

use std::time::Duration;

use crate::hash::Key;
use crate::store::index::Freed;
use crate::store::layout::GC_BATCH_ENTRIES;
use crate::store::{Store, StoreError};
pub use auto::after_store;
pub use plan::{Limits, Plan, Victim, plan};

/// What [`trim`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Entries removed, and the blobs (and bytes) whose count reached 0 and were deleted.
    pub freed: Freed,
    /// Planned entries skipped because they were used after the plan was made.
    pub used_since: u64,
    /// Manifests rewritten without their dangling candidates, and manifests removed.
    pub manifests_rewritten: u64,
    pub manifests_removed: u64,
}

/// Removes what `plan` chose, in batches of [`GC_BATCH_ENTRIES`], each taking the store lock
/// (waiting up to `lock_timeout`). An entry used since the plan was made is kept.
pub fn trim(store: &Store, plan: &Plan, lock_timeout: Duration) -> Result<Trimmed, StoreError> {
    let mut trimmed = Trimmed::default();
    for blobs in plan.unreferenced.chunks(GC_BATCH_ENTRIES * 4) {
        let _lock = store.lock(lock_timeout)?;
        trimmed.freed += store
            .index
            .remove_entries_and_free_blobs(&store.layout, &[], blobs)?;
    }
    for batch in plan.victims.chunks(GC_BATCH_ENTRIES) {
        let keys = still_unused(store, batch)?;
        trimmed.used_since += (batch.len() - keys.len()) as u64;
        let freed = {
            let _lock = store.lock(lock_timeout)?;
            store
                .index
                .remove_entries_and_free_blobs(&store.layout, &keys, &[])?
        };
        trimmed.freed += freed;
        forget_last_uses(store, &keys);
    }
    forget_last_uses(store, &plan.stale_last_uses);
    if trimmed.freed.entries > 0 {
        let (rewritten, removed) = drop_dangling_candidates(store, lock_timeout)?;
        trimmed.manifests_rewritten = rewritten;
        trimmed.manifests_removed = removed;
    }
    Ok(trimmed)
}

/// The keys of a batch whose last use is still the one they were chosen by.
fn still_unused(store: &Store, batch: &[Victim]) -> Result<Vec<Key>, StoreError> {
    let keys: Vec<Key> = batch.iter().map(|victim| victim.key).collect();
    let now = store.state.last_uses_of(&keys)?;
    Ok(batch
        .iter()
        .zip(now)
        .filter(|(victim, used)| used.is_none_or(|used| used <= victim.last_use_ms))
        .map(|(victim, _)| victim.key)
        .collect())
}

/// Last-use times are expendable (the state env): failing to forget some only leaves records
/// the next gc finds stale.
fn forget_last_uses(store: &Store, keys: &[Key]) {
    for batch in keys.chunks(GC_BATCH_ENTRIES * 4) {
        if let Err(err) = store.state.forget_last_uses(batch) {
            tracing::debug!("could not forget last-use times: {err}");
            return;
        }
    }
}

/// Drops every manifest candidate whose entry is gone, and the manifests left empty, in
/// batches under the store lock. Returns (manifests rewritten, manifests removed).
pub fn drop_dangling_candidates(
    store: &Store,
    lock_timeout: Duration,
) -> Result<(u64, u64), StoreError> {
    let dangling = {
        let rtxn = store.index.read_txn()?;
        store.index.manifests_with_dangling_candidates(&rtxn)?
    };
    let (mut rewritten, mut removed) = (0, 0);
    // Larger batches than for entries: a manifest costs a read and a write or delete, with no
    // file to unlink, so 8192 of them hold the lock for about as long as 1024 entries do, and
    // each batch saves a commit (an fdatasync).
    for batch in dangling.chunks(GC_BATCH_ENTRIES * 8) {
        let _lock = store.lock(lock_timeout)?;
        let (batch_rewritten, batch_removed) = store.index.drop_dangling_candidates(batch)?;
        rewritten += batch_rewritten;
        removed += batch_removed;
    }
    Ok((rewritten, removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::OutputKind;
    use crate::store::entry::{Candidate, Entry, OutputRecord};
    use crate::store::state::StateUpdate;

    type Blob = (Key, u64);

    fn put_blob(store: &Store, content: &[u8]) -> Blob {
        let hash = blake3::hash(content);
        let path = store.layout.blob_path(&hash);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        (*hash.as_bytes(), content.len() as u64)
    }

    fn blob_exists(store: &Store, blob: &Blob) -> bool {
        store
            .layout
            .blob_path(&blake3::Hash::from_bytes(blob.0))
            .exists()
    }

    /// Commits entry `[result; 32]` under invocation `[invocation; 32]`.
    fn commit(store: &Store, invocation: u8, result: u8, blobs: &[Blob], created: u64) {
        let entry = Entry {
            outputs: blobs
                .iter()
                .enumerate()
                .map(|(i, (blob, size))| OutputRecord {
                    name: format!("out{i}"),
                    kind: OutputKind::Rlib,
                    blob: *blob,
                    size: *size,
                    mode: 0o644,
                })
                .collect(),
            stdout: vec![],
            stderr: vec![],
            out_dir: vec![],
            compile_ms: 1,
            created_unix_ms: created,
        };
        let candidate = Candidate {
            inputs: vec![],
            env_deps: vec![],
            result_key: [result; 32],
            path_bound: None,
        };
        store
            .index
            .commit_compile(&store.layout, &[invocation; 32], candidate, &entry)
            .unwrap();
    }

    /// Entries a (oldest) and b share a blob and invocation 1; c, under invocation 2, was used
    /// last. Every blob is 6 bytes: 24 in all.
    fn three_entries() -> (tempfile::TempDir, Store, [Blob; 4]) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blobs = [b"shared", b"only a", b"only b", b"only c"].map(|c| put_blob(&store, c));
        let [shared, a, b, c] = blobs;
        commit(&store, 1, 0xa, &[shared, a], 1);
        commit(&store, 1, 0xb, &[shared, b], 2);
        commit(&store, 2, 0xc, &[c], 3);
        let update = StateUpdate {
            last_use: vec![([0xc; 32], 10)],
            ..StateUpdate::default()
        };
        store.state.apply(&update).unwrap();
        (dir, store, blobs)
    }

    fn trim_to(store: &Store, max_bytes: u64) -> Trimmed {
        let limits = Limits {
            max_bytes: Some(max_bytes),
            max_age: None,
        };
        let plan = plan(store, &limits, 100).unwrap();
        trim(store, &plan, Duration::from_secs(5)).unwrap()
    }

    fn candidates(store: &Store, invocation: u8) -> Vec<Key> {
        let rtxn = store.index.read_txn().unwrap();
        let manifest = store.index.manifest(&rtxn, &[invocation; 32]).unwrap();
        manifest.candidates.iter().map(|c| c.result_key).collect()
    }

    #[test]
    fn a_manifest_whose_every_entry_is_removed_goes_and_shared_blobs_go_last() {
        let (_dir, store, [shared, a, b, c]) = three_entries();
        let trimmed = trim_to(&store, 12);
        let freed = Freed {
            entries: 2,
            blobs: 3,
            bytes: 18,
        };
        assert_eq!(trimmed.freed, freed);
        assert_eq!(trimmed.manifests_removed, 1);
        assert!(candidates(&store, 1).is_empty());
        assert_eq!(candidates(&store, 2), vec![[0xc; 32]]);
        for gone in [shared, a, b] {
            assert!(!blob_exists(&store, &gone));
        }
        assert!(blob_exists(&store, &c));
        let rtxn = store.index.read_txn().unwrap();
        assert_eq!(store.index.store_bytes(&rtxn).unwrap(), 6);
        assert!(store.state.last_uses().unwrap().contains_key(&[0xc; 32]));
    }

    #[test]
    fn a_removed_entry_leaves_its_manifest_with_the_other_candidates() {
        let (_dir, store, [shared, a, b, _]) = three_entries();
        let trimmed = trim_to(&store, 18);
        assert_eq!(trimmed.freed.entries, 1);
        assert_eq!(trimmed.manifests_rewritten, 1);
        assert_eq!(candidates(&store, 1), vec![[0xb; 32]]);
        assert!(!blob_exists(&store, &a));
        assert!(blob_exists(&store, &shared) && blob_exists(&store, &b));
    }

    #[test]
    fn an_entry_used_after_the_plan_is_kept() {
        let (_dir, store, _) = three_entries();
        let limits = Limits {
            max_bytes: Some(0),
            max_age: None,
        };
        let plan = plan(&store, &limits, 100).unwrap();
        let update = StateUpdate {
            last_use: vec![([0xa; 32], 50)],
            ..StateUpdate::default()
        };
        store.state.apply(&update).unwrap();
        let trimmed = trim(&store, &plan, Duration::from_secs(5)).unwrap();
        assert_eq!(trimmed.used_since, 1);
        assert_eq!(trimmed.freed.entries, 2);
        assert_eq!(candidates(&store, 1), vec![[0xa; 32]]);
    }
}
