//! Whole cargo builds SIGKILLed at random points (recache builds, so that every kill lands in a
//! compile, a link or a store write): the store they leave serves the next build, verifies,
//! and hits after a clean.

use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{LIBS, RCACHE, Sandbox, expected_output};

/// The next value of a 64-bit LCG (Knuth's MMIX constants): deterministic delays, so a
/// failure reproduces.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

/// The pids of this sandbox's processes: every process whose command line names a path inside
/// the sandbox (rcache as wrapper, rustc, the linker, build scripts), and every rcache whose
/// environment does (probes such as `rcache rustc -vV`, whose argv names no path). Other
/// tests' processes, running in parallel, are never matched.
fn sandbox_pids(sb: &Sandbox) -> Vec<String> {
    let inside = format!("{}/", sb.root.display());
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc") {
        let Ok(entry) = entry else { continue };
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may exit at any time: unreadable means gone.
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ours = cmdline.contains(&inside)
            || (cmdline.contains(RCACHE)
                && fs::read(entry.path().join("environ"))
                    .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&inside)));
        if ours {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILLs this sandbox's processes until none is left; returns how many were killed.
fn kill_sandbox_processes(sb: &Sandbox) -> usize {
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = sandbox_pids(sb);
        if pids.is_empty() {
            return killed;
        }
        assert!(
            Instant::now() < deadline,
            "processes survive SIGKILL: {pids:?}"
        );
        killed += pids.len();
        // Some may have exited since the scan: kill's exit status is not meaningful here.
        let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_processes_leave_a_usable_store() {
    let sb = Sandbox::new();
    // Kill until enough builds were interrupted mid-way (bounded): a recache build takes about
    // 350 ms here, so delays of 20-320 ms land in compiles, links and store writes.
    const WANTED: u32 = 5;
    const MAX_ITERATIONS: u64 = 30;
    let mut interrupted = 0;
    for iteration in 0..MAX_ITERATIONS {
        if interrupted >= WANTED {
            break;
        }
        sb.clean();
        // Seeded per iteration; the first output of a small seed is poorly mixed, so skip it.
        let mut state = iteration.wrapping_mul(0x9e37_79b9_7f4a_7c15) + 1;
        lcg(&mut state);
        let delay = Duration::from_millis(20 + lcg(&mut state) % 301);
        // Recache: every build compiles and writes to the store (a warm build takes tens of
        // ms, over before the kill), so the kills land in compiles, links and store writes.
        let mut cargo = sb.cargo(&["build"]).env("RCACHE_RECACHE", "1").spawn();
        thread::sleep(delay);
        let _ = cargo.kill();
        if kill_sandbox_processes(&sb) > 0 {
            interrupted += 1;
        }
        cargo.wait().expect("wait for the killed cargo");
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} of {MAX_ITERATIONS} builds were still running when killed: the test \
         proves little"
    );

    sb.clean();
    sb.build();
    assert_eq!(sb.run_bin(), expected_output(&[]));
    sb.rcache_ok(&["verify"]);

    sb.clean();
    let rebuild = sb.build();
    for lib in LIBS {
        rebuild.assert_hit(lib);
    }
    assert_eq!(sb.run_bin(), expected_output(&[]));
}
