//! Starting a helper process that outlives the wrapper (the automatic gc, the remote uploader)
//! without holding up the build:
//! - in its own session (`setsid`), with stdin, stdout and stderr on `/dev/null`, so that cargo,
//!   which waits for EOF on the compiler's output pipes, never waits for it;
//! - with every inherited descriptor above stderr marked close-on-exec and `CARGO_MAKEFLAGS`,
//!   `MAKEFLAGS` and `MFLAGS` removed, so that it holds no jobserver token pipe.
//!
//! A helper whose work can wait (the uploader) also runs at idle priority
//! ([`yield_to_the_build`]): it takes only the CPU and disk time the build leaves.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Starts `program args` detached; not waited for (init reaps it once the wrapper has exited).
pub fn spawn(program: &Path, args: &[&str]) -> io::Result<()> {
    let mut command = detached_command(program);
    command.args(args);
    command.spawn().map(drop)
}

/// A command for `program` that runs detached: its own session, stdio on `/dev/null`, no
/// inherited descriptor above stderr, no jobserver variables.
pub fn detached_command(program: &Path) -> Command {
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

/// Puts the calling thread (and the threads it starts) at idle priority: the CPU scheduler's
/// `SCHED_IDLE` class (it runs only when nothing else wants the CPU) and the idle I/O class;
/// Linux keeps both per thread. A cold build keeps every core busy with rustc; the uploader then
/// compresses and sends in the gaps, and `rcache remote flush` waits for what is left. Failures
/// are ignored: the thread then runs at normal priority.
pub fn yield_to_the_build() {
    // SAFETY: plain system calls on this process, with a valid parameter struct.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        let _ = libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        // ioprio_set(IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << 13): no libc wrapper.
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_IDLE: libc::c_long = 3;
        let _ = libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << 13,
        );
    }
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
    #[test]
    fn yielding_puts_the_process_in_the_idle_class() {
        // In a child, so that this test process keeps its priority.
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "detached::tests::idle_child", "--ignored"])
            .env("RCACHE_TEST_IDLE_CHILD", "1")
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stdout)
        );
    }

    #[test]
    #[ignore = "the child of yielding_puts_the_process_in_the_idle_class"]
    fn idle_child() {
        assert!(std::env::var_os("RCACHE_TEST_IDLE_CHILD").is_some());
        super::yield_to_the_build();
        // SAFETY: reads this process's scheduling class.
        let policy = unsafe { libc::sched_getscheduler(0) };
        assert_eq!(policy, libc::SCHED_IDLE);
    }

    use super::*;
    use std::os::fd::AsRawFd;
    use std::path::Path;

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
