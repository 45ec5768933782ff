//! The automatic gc: the check after a store ([`after_store`]).
//!
//! Checking costs one index read (the `store_bytes` total) and, with an age limit, one state
//! read: microseconds. Trimming itself reads every entry, which takes too long to do inside a
//! compile on a large store, so when the store is over its size limit (or an age limit is set
//! and was not applied for [`AUTO_GC_AGE_CHECK_SECS`]) [`after_store`] says a gc is due, and the
//! caller (the wrapper) starts `rcache gc --auto` as a detached process: the store knows nothing
//! of the command line.
//! - At most one at a time: the running gc holds `gc.lock`, and a check that finds the lock
//!   taken says nothing is due. The running gc checks the size again after releasing the lock,
//!   so a store that went over the limit while it ran is not left over it.
//!
//! Faults here never fail a build: they are logged and counted (`auto_gc_faults`, also by the
//! caller when the gc cannot be started: [`count_fault`]).

use std::time::{Duration, SystemTime};

use crate::clock::unix_ms;
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
    /// The directory of an older store format is still there (after an upgrade): nothing reads
    /// it and the size limit does not count it.
    OlderFormat,
}

/// Call after a successful store. Returns why an automatic gc should start now, if one should:
/// the caller then starts `rcache gc --auto` detached. Never fails: a fault is logged and
/// counted, and nothing is due.
pub fn after_store(store: &Store, max_bytes: u64, max_age: Option<Duration>) -> Option<Due> {
    match start_if_due(store, max_bytes, max_age) {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!("automatic gc not started: {err}");
            count_fault(store);
            None
        }
    }
}

fn start_if_due(
    store: &Store,
    max_bytes: u64,
    max_age: Option<Duration>,
) -> Result<Option<Due>, StoreError> {
    let now_ms = unix_ms(SystemTime::now());
    let Some(due) = due(store, max_bytes, max_age, now_ms)? else {
        return Ok(None);
    };
    // Taken and released at once: a running gc holds it and will check again when it is done.
    if store.try_gc_lock()?.is_none() {
        return Ok(None);
    }
    if due == Due::AgeCheck {
        // So that the stores that follow do not each start one.
        store.state.set_auto_gc_started(now_ms)?;
    }
    Ok(Some(due))
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
    // One readdir of the store's root, after a store (never on a hit).
    if !store.layout.older_version_dirs().is_empty() {
        return Ok(Some(Due::OlderFormat));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::{Candidate, Entry, OutputKind, OutputRecord};

    fn store_of(bytes: &[u8]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hash = blake3::hash(bytes);
        let path = store.layout.blob_path(&hash);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let entry = Entry {
            outputs: vec![OutputRecord {
                name: "out".into(),
                kind: OutputKind::Rlib,
                blob: *hash.as_bytes(),
                size: bytes.len() as u64,
                mode: 0o644,
            }],
            stdout: vec![],
            stderr: vec![],
            out_dir: vec![],
            compile_ms: 1,
            created_unix_ms: 1,
        };
        let candidate = Candidate {
            inputs: vec![],
            env_deps: vec![],
            result_key: [2; 32],
            path_bound: None,
        };
        store
            .index
            .commit_compile(&store.layout, &[1; 32], candidate, &entry)
            .unwrap();
        (dir, store)
    }

    #[test]
    fn a_store_over_its_limit_is_due_unless_a_gc_holds_the_lock() {
        let (_dir, store) = store_of(b"ten bytes!");
        assert_eq!(after_store(&store, 10, None), None);
        assert_eq!(after_store(&store, 9, None), Some(Due::OverSize));
        let held = store.try_gc_lock().unwrap().expect("the gc lock is free");
        assert_eq!(after_store(&store, 9, None), None);
        drop(held);
        assert_eq!(after_store(&store, 9, None), Some(Due::OverSize));
    }

    #[test]
    fn an_age_check_is_due_once_per_period() {
        let (_dir, store) = store_of(b"x");
        let age = Some(Duration::from_secs(3600));
        assert_eq!(after_store(&store, u64::MAX, age), Some(Due::AgeCheck));
        // Recorded as started: the stores that follow do not each start one.
        assert_eq!(after_store(&store, u64::MAX, age), None);
        assert_eq!(after_store(&store, u64::MAX, None), None);
    }

    #[test]
    fn an_older_formats_dir_makes_a_gc_due() {
        let (_dir, store) = store_of(b"0123456789");
        assert_eq!(after_store(&store, u64::MAX, None), None);
        std::fs::create_dir_all(store.layout.root.join("v1/blobs")).unwrap();
        assert_eq!(after_store(&store, u64::MAX, None), Some(Due::OlderFormat));
        std::fs::create_dir_all(store.layout.root.join("v99")).unwrap();
        std::fs::remove_dir_all(store.layout.root.join("v1")).unwrap();
        assert_eq!(
            after_store(&store, u64::MAX, None),
            None,
            "a newer format is not ours"
        );
    }
}
