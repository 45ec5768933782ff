//! Faults on the wrapper path (README.md, "Faults"): a read-only store, a full disk, processes
//! killed mid-build and an argument rcache does not know. Each one makes rcache run rustc
//! instead, is counted with its reason, and leaves the build green and its program correct.
//!
//! The read-only and full-disk stores are real mounts (a read-only bind mount, a 1 MiB tmpfs):
//! the tests run as root, who ignores file modes, so a chmod would prove nothing. A failing
//! `mount` fails the test. Each mount is undone by a guard, also when the test panics.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{LIBS, RCACHE, Run, Sandbox, expected_output, run_command};

/// A mount made by a test; unmounted when dropped. Declare it after the [`Sandbox`] so it is
/// dropped first, before the sandbox deletes the directory it is mounted on.
struct MountGuard {
    point: PathBuf,
}

impl MountGuard {
    /// Bind-mounts `source` on `point` (created here), then makes that mount read-only.
    #[track_caller]
    fn bind_read_only(source: &Path, point: &Path) -> MountGuard {
        fs::create_dir_all(point).unwrap();
        run_mount(&["--bind".as_ref(), source.as_os_str(), point.as_os_str()]);
        let guard = MountGuard {
            point: point.to_path_buf(),
        };
        run_mount(&["-o".as_ref(), "remount,bind,ro".as_ref(), point.as_os_str()]);
        guard
    }

    /// Mounts a tmpfs of `size` (mount's syntax, e.g. `1m`) on `point` (created here).
    #[track_caller]
    fn tmpfs(size: &str, point: &Path) -> MountGuard {
        fs::create_dir_all(point).unwrap();
        let options = format!("size={size}");
        run_mount(&[
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "tmpfs".as_ref(),
            point.as_os_str(),
        ]);
        MountGuard {
            point: point.to_path_buf(),
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.point).status();
        if !status.is_ok_and(|s| s.success()) {
            // Something still holds the mount: detach it so the sandbox can be deleted.
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

#[track_caller]
fn run_mount(args: &[&std::ffi::OsStr]) {
    let mut cmd = Command::new("mount");
    cmd.args(args);
    let what = format!("mount {args:?}");
    let (status, stdout, stderr) = run_command(&mut cmd, &what);
    assert!(
        status.success(),
        "{what} failed ({status}); these tests need root\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// `rcache <args>` with `RCACHE_DIR=<store>` instead of the sandbox's own store.
fn rcache_in(sb: &Sandbox, store: &Path, args: &[&str]) -> (bool, String) {
    let what = format!("rcache {} (RCACHE_DIR={})", args.join(" "), store.display());
    let (status, stdout, stderr) = run_command(sb.rcache(args).env("RCACHE_DIR", store), &what);
    (
        status.success(),
        format!("{what}: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"),
    )
}

#[test]
fn read_only_store_falls_back_and_builds_correctly() {
    let sb = Sandbox::new();
    sb.cold_build();
    let ro = sb.root.join("ro-store");
    let _mount = MountGuard::bind_read_only(&sb.store, &ro);
    let probe = fs::write(ro.join("probe"), b"x");
    assert_eq!(
        probe.as_ref().map_err(io::Error::kind).err(),
        Some(io::ErrorKind::ReadOnlyFilesystem),
        "the bind mount is not read-only: writing into it gave {probe:?}"
    );

    sb.clean();
    let run = sb.cargo(&["build"]).env("RCACHE_DIR", &ro).ok();
    assert_eq!(sb.run_bin(), expected_output(&[]));
    for lib in LIBS {
        run.assert_passthrough(lib, "read_only_store");
    }
    assert_one_warning(&run, "the cache dir is read-only");
}

/// The build's stderr holds exactly one rcache warning, and it says `what`.
#[track_caller]
fn assert_one_warning(run: &Run, what: &str) {
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("rcache: warning"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "expected one rcache warning for the whole build\n{}",
        run.stderr
    );
    assert!(warnings[0].contains(what), "{}", warnings[0]);
}

/// Every file under `dir` with its size and modification time: what a build wrote shows.
fn tree_snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut files: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (
                entry.path().to_path_buf(),
                meta.len(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// `sudo cargo build` over a user's store: root must neither use nor write it.
#[test]
fn store_of_another_user_is_refused_and_left_untouched() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    sb.cold_build();
    const OTHER_UID: u32 = 4242;
    for entry in walkdir::WalkDir::new(&sb.store) {
        let path = entry.unwrap().into_path();
        std::os::unix::fs::lchown(&path, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    }
    assert_ne!(fs::metadata(&sb.store).unwrap().uid(), unsafe {
        libc::geteuid()
    });
    let before = tree_snapshot(&sb.store);

    sb.clean();
    let run = sb.build();
    assert_eq!(sb.run_bin(), expected_output(&[]));
    for lib in LIBS {
        run.assert_passthrough(lib, "foreign_store");
    }
    assert_one_warning(&run, "belongs to uid 4242");
    assert_eq!(
        tree_snapshot(&sb.store),
        before,
        "a build as another user changed files in the store"
    );
    let (ok, report) = rcache_in(&sb, &sb.store, &["stats"]);
    assert!(!ok && report.contains("uid 4242"), "{report}");
    assert_eq!(
        tree_snapshot(&sb.store),
        before,
        "rcache stats wrote into it"
    );
}

#[test]
fn full_disk_store_falls_back_and_leaves_a_valid_index() {
    let sb = Sandbox::new();
    let small = sb.root.join("small");
    let _mount = MountGuard::tmpfs("1m", &small);
    let store = small.join("store");

    sb.clean();
    let run = sb.cargo(&["build"]).env("RCACHE_DIR", &store).ok();
    assert_eq!(sb.run_bin(), expected_output(&[]));
    assert!(
        run.events
            .iter()
            .any(|e| e["outcome"] == "error" && e["reason"] == "disk_full"),
        "no compile was counted as disk_full in a 1 MiB store\n{}",
        run.describe_events()
    );

    let tmp = store.join("v1/tmp");
    let leftovers: Vec<PathBuf> = fs::read_dir(&tmp)
        .unwrap_or_else(|e| panic!("read {}: {e}", tmp.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(
        leftovers.is_empty(),
        "failed writes left files in the store's tmp dir: {leftovers:?}"
    );
    let (ok, report) = rcache_in(&sb, &store, &["verify"]);
    assert!(ok, "the store is not valid after a full disk\n{report}");
    let (ok, stats) = rcache_in(&sb, &store, &["stats", "--json"]);
    assert!(ok, "{stats}");
    assert!(
        stats.contains("\"disk_full\""),
        "the full disk is not counted in the stats\n{stats}"
    );
}

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

/// `--remap-path-scope` is a stable rustc option (`rustc --help -v`) that rcache's argument
/// parser does not list: rcache must not guess what it does, so the compile goes to rustc.
#[test]
fn unknown_argument_passes_through_and_the_build_passes() {
    let sb = Sandbox::new();
    let run = sb
        .cargo(&["build"])
        .env("RUSTFLAGS", "--remap-path-scope=object")
        .ok();
    for lib in LIBS {
        run.assert_passthrough(lib, "unknown_argument");
        let deps = sb.target.join("debug/deps");
        let rlib = fs::read_dir(&deps)
            .unwrap_or_else(|e| panic!("read {}: {e}", deps.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .find(|name| name.starts_with(&format!("lib{lib}-")) && name.ends_with(".rlib"));
        assert!(rlib.is_some(), "rustc wrote no lib{lib}-*.rlib");
    }
    assert_eq!(sb.run_bin(), expected_output(&[]));
    assert_eq!(
        sb.blobs(),
        Vec::<PathBuf>::new(),
        "passed-through compiles stored blobs"
    );
}
