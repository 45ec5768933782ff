//! Stores rcache cannot use (README.md, "Faults"): a read-only store, another user's store and a
//! full disk. Each one makes rcache run rustc instead, is counted with its reason, and leaves
//! the build green and its program correct.
//!
//! The read-only and full-disk stores are real mounts (a read-only bind mount, a 1 MiB tmpfs):
//! the tests run as root, who ignores file modes, so a chmod would prove nothing. A failing
//! `mount` fails the test. Each mount is undone by a guard, also when the test panics.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{LIBS, Run, Sandbox, expected_output, run_command};

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

    let tmp = store.join("v2/tmp");
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
