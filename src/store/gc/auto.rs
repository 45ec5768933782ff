//! The automatic gc: the wrapper's hook after a store ([`after_store`]).
//!
//! Checking costs one index read (the `store_bytes` total) and, with an age limit, one state
//! read: microseconds. Trimming itself reads every entry, which takes too long to do inside a
//! compile on a large store, so when the store is over its size limit (or an age limit is set
//! and was not applied for [`AUTO_GC_AGE_CHECK_SECS`]) the hook starts `rcache gc --auto` as a
//! detached process and returns:
//! - in its own session (`setsid`), with stdin, stdout and stderr on `/dev/null`, so that cargo,
//!   which waits for EOF on the compiler's output pipes, never waits for it;
//! - with every inherited descriptor above stderr marked close-on-exec and `CARGO_MAKEFLAGS`,
//!   `MAKEFLAGS` and `MFLAGS` removed, so that it holds no jobserver token pipe;
//! - at most one at a time: it holds `gc.lock`, and a store that finds the lock taken starts
//!   nothing. The running gc checks the size again after releasing the lock, so a store that
//!   went over the limit while it ran is not left over it.
//!
//! Faults here never fail a build: they are logged and counted (`auto_gc_faults`).

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
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
    let mut command = detached_command(rcache);
    command.args(["gc", "--auto"]);
    // Not waited for: the wrapper exits right after, and init reaps the child.
    command.spawn().map(drop)
}

/// A command for `program` that runs detached: its own session, stdio on `/dev/null`, no
/// inherited descriptor above stderr, no jobserver variables.
fn detached_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (setsid, close_range, fcntl); it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            mark_inherited_fds_cloexec();
            Ok(())
        });
    }
    command
}

/// Marks every descriptor above stderr close-on-exec: cargo's jobserver pipe (passed to the
/// wrapper without close-on-exec so that rustc inherits it) must not live on in the gc. Marking
/// rather than closing keeps std's own exec-error pipe working.
fn mark_inherited_fds_cloexec() {
    // SAFETY: plain system calls on descriptor numbers; no memory is touched.
    unsafe {
        let all = libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        if all == 0 {
            return;
        }
        // Kernels before 5.11: each descriptor in turn, up to a bound that covers cargo's.
        for fd in 3..4096 {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_detached_command_inherits_no_descriptor_and_leads_its_own_session() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report");
        // A descriptor inherited without close-on-exec, as cargo passes its jobserver pipe.
        // A high number, so that it cannot be confused with one the child opens itself.
        let opened = std::fs::File::open("/dev/null").unwrap();
        let fd = 100;
        // SAFETY: dup2 without O_CLOEXEC onto a descriptor number this test owns.
        assert_eq!(unsafe { libc::dup2(opened.as_raw_fd(), fd) }, fd);
        let script = format!(
            "ls /proc/self/fd > {0}; echo sid $(cut -d' ' -f6 /proc/self/stat) pid $$ >> {0}",
            report.display()
        );
        let mut command = detached_command(Path::new("/bin/sh"));
        command.args(["-c", &script]);
        assert!(command.status().unwrap().success());
        let text = std::fs::read_to_string(&report).unwrap();
        let fds: Vec<&str> = text.lines().filter(|l| !l.starts_with("sid")).collect();
        assert!(
            !fds.contains(&fd.to_string().as_str()),
            "fd {fd} was inherited: {text}"
        );
        // Only stdio, plus the one `ls` opened to read /proc/self/fd.
        assert!(fds.len() <= 4, "{text}");
        let session: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("sid"))
            .unwrap()
            .split(' ')
            .collect();
        assert_eq!(session[1], session[3], "not a session leader: {text}");
        // SAFETY: closes the descriptor dup2 made above.
        unsafe { libc::close(fd) };
    }
}
