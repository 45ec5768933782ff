//! What the wrapper does when the store cannot be opened at all, and the one warning a user sees.
//!
//! Faults of one compile are quiet (counted, logged at `RCACHE_LOG=warn`): the next compile
//! usually succeeds. A store that cannot be opened is different: every compile of every build
//! runs uncached until the user acts. For those conditions the wrapper prints one line on stderr,
//! once per build: cargo, the wrapper's parent, runs hundreds of compiles, and the warning must
//! not repeat for each ([`crate::warn_once`]).

use std::path::Path;

use crate::stats::{ErrorReason, Outcome, PassthroughReason};
use crate::store::StoreError;

/// The outcome of a cacheable invocation whose store cannot be opened, after warning the user
/// where the condition needs them.
/// - A read-only or foreign store is a setting, not a fault: a passthrough, with a warning.
/// - A corrupt store stays corrupt until cleared: an error, with a warning.
/// - Anything else (a busy lock, a transient I/O error) is an error, logged only.
pub fn store_unusable(err: &StoreError, store_dir: &Path, what_runs: &str) -> Outcome {
    tracing::warn!("cache store unusable ({err}); running the {what_runs}");
    let reason = ErrorReason::of_store(err);
    let (line, outcome) = match reason {
        ErrorReason::ReadOnlyStore => (
            format!("the cache dir is read-only ({err})"),
            Outcome::Passthrough {
                reason: PassthroughReason::ReadOnlyStore,
            },
        ),
        ErrorReason::ForeignStore => (
            err.to_string(),
            Outcome::Passthrough {
                reason: PassthroughReason::ForeignStore,
            },
        ),
        ErrorReason::CorruptStore => (
            format!("the cache is corrupt ({err}); `rcache clear` empties it"),
            Outcome::Error { reason },
        ),
        _ => return Outcome::Error { reason },
    };
    crate::warn_once::warn(
        store_dir,
        reason.as_str(),
        &format!("caching is off for this build: {line}"),
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_faults_are_errors_and_settings_are_passthroughs() {
        let store = tempfile::tempdir().unwrap();
        let foreign = StoreError::NotOwned {
            path: store.path().to_path_buf(),
            owner: 1,
            euid: 2,
        };
        let outcome = store_unusable(&foreign, store.path(), "compiler");
        assert_eq!(outcome.name(), "passthrough");
        assert_eq!(outcome.reason(), Some("foreign_store"));
        let busy = store_unusable(&StoreError::Busy, store.path(), "compiler");
        assert_eq!(busy.name(), "error");
    }
}
