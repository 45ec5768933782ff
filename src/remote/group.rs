//! Groups: what one build published, so that a fresh machine can fetch it before cargo asks.
//!
//! A build's group is named by the machine's boot id and the build's id
//! ([`crate::warn_once::build_id`]: cargo's pid and start time, or `RCACHE_BUILD_ID`), hashed:
//! every process of one cargo build on one machine (rustc compiles, build-script runs and the
//! C/C++ compiles of those scripts) publishes into the same group, and two machines, or two
//! builds of one machine, never share one. Each published candidate names its group; the
//! publisher appends the group's records (invocation key and candidate) as it publishes
//! ([`super::publish`]).
//!
//! This file also names the process whose end ends a build (cargo), which the prefetcher
//! watches ([`super::prefetch`]).

use std::fs;

use crate::hash::Key;

/// The group of the build this process belongs to.
pub fn this_build() -> Key {
    static GROUP: std::sync::OnceLock<Key> = std::sync::OnceLock::new();
    *GROUP.get_or_init(|| {
        let mut hasher = blake3::Hasher::new_derive_key("rcache remote group v1");
        hasher.update(&crate::store::state::boot_id().unwrap_or_default());
        hasher.update(&crate::warn_once::build_id().to_le_bytes());
        *hasher.finalize().as_bytes()
    })
}

/// One process, by its pid and start time (which together name it even when pids are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The process `pid` as it is now; `None` if there is none.
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(ProcessIdentity {
            pid,
            start_time: crate::warn_once::start_time(&stat)?,
        })
    }

    /// Whether this very process still runs (a zombie counts as ended).
    pub fn running(&self) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        crate::warn_once::start_time(&stat) == Some(self.start_time) && state(&stat) != Some('Z')
    }

    /// `<pid>:<start time>`, as the prefetcher's command line carries it.
    pub fn to_arg(self) -> String {
        format!("{}:{}", self.pid, self.start_time)
    }

    pub fn from_arg(text: &str) -> Option<ProcessIdentity> {
        let (pid, start_time) = text.split_once(':')?;
        Some(ProcessIdentity {
            pid: pid.parse().ok()?,
            start_time: start_time.parse().ok()?,
        })
    }
}

/// How far up the process tree [`build_process`] looks for cargo.
const MAX_ANCESTORS: usize = 8;

/// The process whose end ends this build: the nearest ancestor named `cargo` (a C compile runs
/// under a build script, under cargo), else the parent.
pub fn build_process() -> Option<ProcessIdentity> {
    let parent = std::os::unix::process::parent_id();
    let mut pid = parent;
    for _ in 0..MAX_ANCESTORS {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            break;
        };
        if command_name(&stat) == Some("cargo") {
            return ProcessIdentity::of(pid);
        }
        match parent_pid(&stat) {
            Some(next) if next > 1 => pid = next,
            _ => break,
        }
    }
    ProcessIdentity::of(parent)
}

/// Field 2 of a `/proc/<pid>/stat` line, without its parentheses.
fn command_name(stat: &str) -> Option<&str> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    stat.get(open + 1..close)
}

/// Field 3: the process state.
fn state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Field 4: the parent's pid.
fn parent_pid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_name_state_and_parent() {
        let stat = "4242 (cargo (x) y) S 17 4242 17 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654";
        assert_eq!(command_name(stat), Some("cargo (x) y"));
        assert_eq!(state(stat), Some('S'));
        assert_eq!(parent_pid(stat), Some(17));
        assert_eq!(crate::warn_once::start_time(stat), Some(987654));
    }

    #[test]
    fn this_process_is_running_until_it_is_not() {
        let me = ProcessIdentity::of(std::process::id()).unwrap();
        assert!(me.running());
        assert_eq!(ProcessIdentity::from_arg(&me.to_arg()), Some(me));
        let gone = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!gone.running(), "another start time is another process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let child_identity = ProcessIdentity::of(child.id()).unwrap();
        child.wait().unwrap();
        assert!(!child_identity.running());
        assert_eq!(ProcessIdentity::from_arg("12"), None);
    }

    #[test]
    fn a_build_has_one_group() {
        assert_eq!(this_build(), this_build());
        assert_ne!(this_build(), [0; 32]);
    }
}
