//! What the wrapper does when the store cannot be opened at all, and the one warning a user sees.
//!
//! Faults of one compile are quiet (counted, logged at `RCACHE_LOG=warn`): the next compile
//! usually succeeds. A store that cannot be opened is different: every compile of every build
//! runs uncached until the user acts. For those conditions the wrapper prints one line on stderr,
//! once per build: cargo, the wrapper's parent, runs hundreds of compiles, and the warning must
//! not repeat for each. "Once per build" is a marker file named after cargo's pid and start time
//! in the temp dir; when no marker can be written the warning is printed every time, which is
//! noisy but never silent.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::stats::Outcome;
use crate::store::StoreError;

/// Markers older than this are deleted when a new one is written.
const MARKER_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The outcome of a cacheable invocation whose store cannot be opened, after warning the user
/// where the condition needs them.
/// - A read-only or foreign store is a setting, not a fault: a passthrough, with a warning.
/// - A corrupt store stays corrupt until cleared: an error, with a warning.
/// - Anything else (a busy lock, a transient I/O error) is an error, logged only.
pub fn store_unusable(err: &StoreError, store_dir: &Path, what_runs: &str) -> Outcome {
    tracing::warn!("cache store unusable ({err}); running the {what_runs}");
    let reason = err.reason();
    let line = match reason {
        "read_only_store" => format!("the cache dir is read-only ({err})"),
        "foreign_store" => err.to_string(),
        "corrupt_store" => format!("the cache is corrupt ({err}); `rcache clear` empties it"),
        _ => {
            return Outcome::Error {
                reason: reason.to_string(),
            };
        }
    };
    if first_time_this_build(store_dir, reason) {
        let line = format!("rcache: warning: caching is off for this build: {line}\n");
        let _ = io::stderr().write_all(line.as_bytes());
    }
    match reason {
        "corrupt_store" => Outcome::Error {
            reason: reason.to_string(),
        },
        _ => Outcome::Passthrough {
            reason: reason.to_string(),
        },
    }
}

/// True the first time it is called for this store and reason under this parent process
/// (cargo), and whenever the answer cannot be known.
fn first_time_this_build(store_dir: &Path, reason: &str) -> bool {
    let Some(build) = parent_identity() else {
        return true;
    };
    let mut hasher = DefaultHasher::new();
    (build, store_dir, reason).hash(&mut hasher);
    let dir = markers_dir();
    if fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let marker = dir.join(format!("{:016x}", hasher.finish()));
    match fs::File::create_new(&marker) {
        Ok(_) => {
            remove_old_markers(&dir);
            true
        }
        Err(err) => err.kind() != io::ErrorKind::AlreadyExists,
    }
}

/// `$TMPDIR/rcache-warned-<euid>`: per user, so that users never share markers.
fn markers_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("rcache-warned-{euid}"))
}

/// The parent's pid and start time (field 22 of `/proc/<pid>/stat`), which together name one
/// process even when pids are reused.
fn parent_identity() -> Option<(u32, u64)> {
    let parent = std::os::unix::process::parent_id();
    let stat = fs::read_to_string(format!("/proc/{parent}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start_time = after_name.split_whitespace().nth(19)?.parse().ok()?;
    Some((parent, start_time))
}

fn remove_old_markers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > MARKER_MAX_AGE);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_identified_by_pid_and_start_time() {
        let (pid, start_time) = parent_identity().expect("/proc is mounted");
        assert_eq!(pid, std::os::unix::process::parent_id());
        assert!(start_time > 0);
    }

    #[test]
    fn a_warning_is_due_once_per_parent_store_and_reason() {
        let store = tempfile::tempdir().unwrap();
        assert!(first_time_this_build(store.path(), "read_only_store"));
        assert!(!first_time_this_build(store.path(), "read_only_store"));
        assert!(first_time_this_build(store.path(), "foreign_store"));
    }

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
