//! One warning per build: a condition that lasts (a read-only store, a dead remote) is told to
//! the user once, not by each of the hundreds of compiles cargo runs.
//!
//! "Once per build" is a marker file named after the parent process (cargo: its pid and start
//! time), the store and the reason, in the temp dir. When no marker can be written the warning
//! is printed every time, which is noisy but never silent.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Markers older than this are deleted when a new one is written.
const MARKER_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Prints `rcache: warning: <line>` on stderr, the first time in this build for this store and
/// reason.
pub fn warn(store_dir: &Path, reason: &str, line: &str) {
    if first_time_this_build(store_dir, reason) {
        let line = format!("rcache: warning: {line}\n");
        let _ = io::stderr().write_all(line.as_bytes());
    }
}

/// True the first time it is called for this store and reason under this parent process
/// (cargo), and whenever the answer cannot be known.
pub fn first_time_this_build(store_dir: &Path, reason: &str) -> bool {
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
}
