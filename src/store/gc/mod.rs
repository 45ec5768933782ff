//! gc: keeps the store within its size and age limits, from the index (DESIGN.md §7).
//!
//! - [`mod@plan`]: which entries go, least recently used first, decided from one read snapshot.
//! - [`trim`] (here): removes them in small batches, each one index write transaction under the
//!   store lock, which is released between batches so that a build waiting to store waits for
//!   one batch at most. Then drops the manifest candidates left pointing at nothing.
//! - [`sweep`]: what a crash left behind (orphan blobs, stale temp files), older than a grace
//!   period, found by walking `blobs/` and `tmp/`.
//! - [`auto`]: the hook the wrapper calls after a store: over the limit, it starts
//!   `rcache gc --auto` detached from the build.
//!
//! Blob files are deleted only inside the write transaction that finds their count at 0
//! (`index/removal.rs`); store-format/README.md ("gc") gives the argument that a concurrent
//! store never loses a blob it is about to reference.

pub mod auto;
pub mod plan;
pub mod sweep;

use std::time::Duration;

use crate::key::hasher::Key;
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
    for batch in dangling.chunks(GC_BATCH_ENTRIES) {
        let _lock = store.lock(lock_timeout)?;
        let (batch_rewritten, batch_removed) = store.index.drop_dangling_candidates(batch)?;
        rewritten += batch_rewritten;
        removed += batch_removed;
    }
    Ok((rewritten, removed))
}
