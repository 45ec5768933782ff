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

/// The variable naming the build a process belongs to: set by rcache for the build scripts it
/// runs, so that their C/C++ compiles (children of the script, not of cargo) join cargo's build;
/// a user may set it to group builds as they choose.
pub const BUILD_ID_VAR: &str = "RCACHE_BUILD_ID";

/// The build this process belongs to, as a number: [`BUILD_ID_VAR`] when it holds one (16 hex
/// digits), else a hash of [`parent_identity`] (cargo's pid and start time; the pid alone where
/// `/proc` cannot tell the start time). The explain history and the build log group records by
/// it. Worked out once per process.
pub fn build_id() -> u64 {
    static BUILD_ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BUILD_ID.get_or_init(|| {
        if let Some(id) = std::env::var(BUILD_ID_VAR)
            .ok()
            .and_then(|value| u64::from_str_radix(value.trim(), 16).ok())
        {
            return id;
        }
        let parent = parent_identity().unwrap_or((std::os::unix::process::parent_id(), 0));
        let mut hasher = DefaultHasher::new();
        parent.hash(&mut hasher);
        hasher.finish()
    })
}

/// [`build_id`] as [`BUILD_ID_VAR`] holds it.
pub fn build_id_text(id: u64) -> String {
    format!("{id:016x}")
}

/// The parent's pid and start time (field 22 of `/proc/<pid>/stat`), which together name one
/// process even when pids are reused.
fn parent_identity() -> Option<(u32, u64)> {
    let parent = std::os::unix::process::parent_id();
    let stat = fs::read_to_string(format!("/proc/{parent}/stat")).ok()?;
    Some((parent, start_time(&stat)?))
}

/// Field 22 of a `/proc/<pid>/stat` line: when the process started, in clock ticks since boot.
pub(crate) fn start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn remove_old_markers(dir: &Path) {
    remove_files_older_than(dir, MARKER_MAX_AGE);
}

/// Removes the files of `dir` last modified more than `max_age` ago (markers left by processes
/// that did not remove their own); faults are ignored.
pub(crate) fn remove_files_older_than(dir: &Path, max_age: Duration) {
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
            .is_some_and(|age| age > max_age);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A stat line whose command name holds `) (` and spaces, and whose field n (from field 3
    /// on, the state aside) is n: the parser must count after the last `)`.
    #[test]
    fn the_start_time_is_field_22_whatever_the_command_name() {
        let fields: Vec<String> = (4..=52).map(|n| n.to_string()).collect();
        let stat = format!("4242 (a) (b c) ) S {}\n", fields.join(" "));
        assert_eq!(start_time(&stat), Some(22));
        let cut = format!("4242 (x) S {}", fields[..17].join(" "));
        assert_eq!(start_time(&cut), None, "a line without field 22");
        assert_eq!(start_time("4242 (no end S 4 5"), None);
    }

    /// Set in the environment of [`warning_due_child`]: the store it asks about.
    const CHILD_STORE: &str = "RCACHE_TEST_WARN_ONCE_STORE";

    /// Not a test on its own: a process of [`a_warning_is_due_once_per_parent_process`]. Prints
    /// its parent's identity and whether a warning is due. Ignored, so that a plain test run
    /// does not list it as a passing test.
    #[test]
    #[ignore = "a process of a_warning_is_due_once_per_parent_process, not a test"]
    fn warning_due_child() {
        let store = std::env::var_os(CHILD_STORE).expect("run by its parent test");
        let (pid, start) = parent_identity().expect("/proc is mounted");
        let due = first_time_this_build(Path::new(&store), "read_only_store");
        println!("parent={pid}:{start} due={due}");
    }

    /// What [`warning_due_child`] says, started by this process or, `through_shell`, by a shell
    /// that waits for it (`; :` keeps the shell from exec-ing it): the child of another parent.
    fn ask_child(through_shell: bool, store: &Path) -> String {
        let name = concat!(module_path!(), "::warning_due_child");
        let name = name.split_once("::").map_or(name, |(_, path)| path);
        let exe = std::env::current_exe().unwrap();
        let mut cmd = if through_shell {
            let mut shell = Command::new("sh");
            shell.args(["-c", "\"$@\"; :", "sh"]).arg(&exe);
            shell
        } else {
            Command::new(&exe)
        };
        let output = cmd
            .args(["--exact", name, "--ignored", "--nocapture"])
            .env(CHILD_STORE, store)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        // libtest may print the test's name on the same line first.
        let line = stdout
            .lines()
            .find_map(|line| line.find("parent=").map(|at| &line[at..]))
            .unwrap_or_else(|| panic!("the child did not answer: {stdout}"));
        line.to_string()
    }

    /// Siblings under one parent (the compiles of one cargo build) are told once; a process
    /// under another parent (the next build) is told again. The identity each child reads is
    /// this process's pid and start time, as /proc/self/stat says.
    #[test]
    fn a_warning_is_due_once_per_parent_process() {
        let store = tempfile::tempdir().unwrap();
        let own_start = start_time(&fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        let me = format!("parent={}:{own_start}", std::process::id());
        assert_eq!(ask_child(false, store.path()), format!("{me} due=true"));
        assert_eq!(ask_child(false, store.path()), format!("{me} due=false"));
        let under_shell = ask_child(true, store.path());
        assert!(under_shell.ends_with(" due=true"), "{under_shell}");
        assert!(!under_shell.starts_with(&format!("{me} ")), "{under_shell}");
    }

    #[test]
    fn a_warning_is_due_once_per_store_and_reason() {
        let store = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        assert!(first_time_this_build(store.path(), "read_only_store"));
        assert!(!first_time_this_build(store.path(), "read_only_store"));
        assert!(first_time_this_build(store.path(), "foreign_store"));
        assert!(first_time_this_build(other.path(), "read_only_store"));
    }
}
