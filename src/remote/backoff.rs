//! After a remote failure, every rcache process skips the remote for a while, not just the one
//! that saw it fail: a dead or hanging server then costs one timeout per backoff period, not
//! one per compile.
//!
//! The deadline lives in the state env (`\0remote_skipped_until_ms`), which every process of
//! the store reads anyway; writing it is one unsynced transaction. Only a lookup or upload that
//! failed sets it. A remote that comes back is used again once the period ends, or at once after
//! an `rcache remote check` that passes, which clears the deadline (`commands::remote`).

use std::time::{Duration, SystemTime};

use super::backend::RemoteError;
use crate::clock::unix_ms;
use crate::store::Store;

/// True while an earlier failure keeps the remote skipped. A state env that cannot be read
/// does not stop the remote from being asked.
pub fn active(store: &Store) -> bool {
    let now = unix_ms(SystemTime::now());
    matches!(store.state.remote_skipped_until(), Ok(Some(until)) if now < until)
}

/// Skips the remote for `period` from now, for every process of this store.
pub fn start(store: &Store, period: Duration) {
    let until = unix_ms(SystemTime::now()).saturating_add(period.as_millis() as u64);
    if let Err(err) = store.state.set_remote_skipped_until(until) {
        tracing::debug!("could not record the remote's backoff: {err}");
    }
}

/// Tells the user, once per build, that the remote failed and is skipped for a while.
pub fn warn_once(store: &Store, err: &RemoteError, period: Duration) {
    crate::warn_once::warn(
        &store.layout.root,
        "remote",
        &format!(
            "the remote cache failed ({err}); rcache skips it for {}",
            humantime::format_duration(period)
        ),
    );
}
