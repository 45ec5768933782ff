//! The automatic gc: the wrapper's hook after a store ([`after_store`]).
//!
//! Checking costs one index read (the `store_bytes` total) and, with an age limit, one state
//! read: microseconds. Trimming itself reads every entry, which takes too long to do inside a
//! compile on a large store, so when the store is over its size limit (or an age limit is set
//! and was not applied for [`AUTO_GC_AGE_CHECK_SECS`]) the hook starts `rcache gc --auto` as a
//! detached process ([`crate::detached`]: cargo never waits for it, and it holds no jobserver
//! token pipe) and returns:
//! - at most one at a time: it holds `gc.lock`, and a store that finds the lock taken starts
//!   nothing. The running gc checks the size again after releasing the lock, so a store that
//!   went over the limit while it ran is not left over it.
//!
//! Faults here never fail a build: they are logged and counted (`auto_gc_faults`).

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::stats::unix_ms;
use crate::store::layout::{AUTO_GC_AGE_CHECK_SECS, AUTO_GC_TARGET_PERCENT};
use crate::store::state::StateUpdate;
use crate::store::{Store, StoreError};

/// Why an automatic gc is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// `store_bytes` is over the size limit.
    OverSize,
    /// An age limit is set and was last applied long enough ago.
    AgeCheck,
}

/// Call after a successful store. Starts a detached `rcache gc --auto` when the store is over
/// `max_bytes` (or `max_age` is set and due); never fails, never waits for the gc.
pub fn after_store(store: &Store, max_bytes: u64, max_age: Option<Duration>) {
    if let Err(err) = start_if_due(store, max_bytes, max_age) {
        tracing::warn!("automatic gc not started: {err}");
        count_fault(store);
    }
}

fn start_if_due(
    store: &Store,
    max_bytes: u64,
    max_age: Option<Duration>,
) -> Result<(), StoreError> {
    let now_ms = unix_ms(SystemTime::now());
    let Some(due) = due(store, max_bytes, max_age, now_ms)? else {
        return Ok(());
    };
    // Taken and released at once: a running gc holds it and will check again when it is done.
    if store.try_gc_lock()?.is_none() {
        return Ok(());
    }
    if due == Due::AgeCheck {
        // So that the stores that follow do not each start one.
        store.state.set_auto_gc_started(now_ms)?;
    }
    tracing::debug!(?due, "starting rcache gc --auto");
    let exe = std::env::current_exe().map_err(|source| StoreError::Io {
        path: "/proc/self/exe".into(),
        source,
    })?;
    spawn_detached_gc(&exe).map_err(|source| StoreError::Io { path: exe, source })
}

/// Whether an automatic gc is due now.
pub fn due(
    store: &Store,
    max_bytes: u64,
    max_age: Option<Duration>,
    now_ms: u64,
) -> Result<Option<Due>, StoreError> {
    let store_bytes = {
        let rtxn = store.index.read_txn()?;
        store.index.store_bytes(&rtxn)?
    };
    if store_bytes > max_bytes {
        return Ok(Some(Due::OverSize));
    }
    if max_age.is_some() {
        let last = store.state.auto_gc_started()?.unwrap_or(0);
        if now_ms.saturating_sub(last) >= AUTO_GC_AGE_CHECK_SECS * 1000 {
            return Ok(Some(Due::AgeCheck));
        }
    }
    Ok(None)
}

/// The size an automatic gc trims to: [`AUTO_GC_TARGET_PERCENT`] of the limit.
pub fn target_bytes(max_bytes: u64) -> u64 {
    (u128::from(max_bytes) * u128::from(AUTO_GC_TARGET_PERCENT) / 100) as u64
}

/// Counts a fault of the automatic gc in the state env (best effort).
pub fn count_fault(store: &Store) {
    let mut update = StateUpdate::default();
    update.count("auto_gc_faults", 1);
    let _ = store.state.apply(&update);
}

/// Starts `<rcache> gc --auto` detached from this process and its build (the wrapper passes
/// its own executable).
pub fn spawn_detached_gc(rcache: &Path) -> io::Result<()> {
    crate::detached::spawn(rcache, &["gc", "--auto"])
}
