//! The shared test harness: a sandbox per test and the helpers every test module uses.
//!
//! - [`Sandbox`] is a fresh temp dir holding a copy of the fixture workspace (`ws/`), an
//!   rcache store that rcache itself creates (`store/`, the test's `RCACHE_DIR`), a target dir
//!   (`target/`), and one events log per command (`events-N.jsonl`).
//! - [`CargoCmd`] builds a cargo command with a scrubbed environment: `cargo test` leaks its
//!   own `CARGO_*`, `RUSTFLAGS`, jobserver and wrapper variables into children, and any of them
//!   would change what the child cargo does. rcache is always the `RUSTC_WRAPPER` unless a test
//!   asks for a plain build.
//! - [`Run`] (`run.rs`) is a finished command: its exit status, output, and the parsed events
//!   rcache logged during it, with assertions on per-crate outcomes.
//! - `process.rs` runs commands (each with a timeout, so a hung wrapper fails the test instead
//!   of stalling the suite) and scrubs their environment.
//! - [`Machine`] (`machine.rs`) is one of several machines sharing a remote cache: its own
//!   store and settings, the sandbox's workspace and target dir.
//! - `servers/` starts the remote tests' Redis and S3 (moto) servers and looks inside them.
//! - `store.rs` looks inside a sandbox's store: the blob of a crate's rlib, a blob cut in half,
//!   a clean `rcache verify`.
//! - [`leaf`] is one rustc compile of demo_leaf through rcache without cargo, checked against
//!   rustc's own outputs, optionally under strace: the `crash` and `store_faults` suites walk
//!   its syscalls.

pub mod leaf;
mod machine;
mod process;
mod run;
mod servers;
mod store;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;

pub use machine::Machine;
pub use process::{leaf_rustc_args, real_rustc, run_command};
pub use run::{Run, assert_no_file_names, assert_same_files};
pub use servers::{Fault, FaultProxy, RedisServer, RemoteServer, S3Server};
pub use store::{rlib_blob, truncate_to_half, verify_clean};

use process::{copy_tree, scrub_env};
use run::read_events;

/// The binary under test.
pub const RCACHE: &str = env!("CARGO_BIN_EXE_rcache");

/// The fixture workspaces, one directory each: `demo_ws` (the default) and `native_ws`.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// How old an edit must be before the next build: well above rcache's slack for racy
/// timestamps (see [`Sandbox::write`]).
pub const EDIT_AGE: Duration = Duration::from_millis(100);

/// The crates rcache caches, leaf first (demo_lib depends on demo_leaf).
pub const LIBS: [&str; 2] = ["demo_leaf", "demo_lib"];

/// The value of `DEMO_GREETING` (read by `env!` in demo_lib) unless a test overrides it.
pub const GREETING: &str = "hello";

/// What demo_bin prints for the unmodified fixture, key by key.
const BASE_OUTPUT: [(&str, &str); 9] = [
    ("leaf", "leaf-v1"),
    ("path", "path-v1"),
    ("data", "data-v1"),
    ("greeting", GREETING),
    ("generated", "generated-v1"),
    ("lib_flag", "off"),
    ("bin_flag", "off"),
    ("answer", "42"),
    ("warn", "7"),
];

/// demo_bin's expected stdout: the base output with `changes` applied (key, new value).
pub fn expected_output(changes: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, base) in BASE_OUTPUT {
        let value = changes
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(base, |(_, v)| *v);
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

/// Downloads the crates.io dependencies a fixture's Cargo.lock pins (scripts_ws uses the `cc`
/// crate), once per fixture and test process, so that the tests' `--offline` builds find them.
/// A fixture with path dependencies only needs nothing.
#[track_caller]
fn fetch_registry_deps(fixture: &Path) {
    static FETCHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let lock = fs::read_to_string(fixture.join("Cargo.lock")).unwrap_or_default();
    if !lock.contains("source = \"registry+") {
        return;
    }
    let mut fetched = FETCHED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if fetched.iter().any(|done| done == fixture) {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    scrub_env(&mut cmd);
    cmd.args(["fetch", "--locked", "--manifest-path"])
        .arg(fixture.join("Cargo.toml"));
    let what = format!("cargo fetch for {}", fixture.display());
    let (status, _, stderr) = run_command(&mut cmd, &what);
    assert!(status.success(), "{what} failed: {status}\n{stderr}");
    fetched.push(fixture.to_path_buf());
}

/// A plain `RUSTC_WRAPPER` that runs rustc with the `--remap-path-prefix` flags README says
/// rcache adds, worked out from README's rules in shell, not from rcache's code.
pub const PLAIN_REMAPPED_RUSTC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bin/plain_remapped_rustc.sh"
);

/// `cc` and `c++` that run `/usr/bin/cc` and `/usr/bin/c++` with the `-ffile-prefix-map` flags
/// README says rcache adds to a C or C++ compile, worked out in shell from README's rules.
pub const PLAIN_REMAPPED_CC_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bin/plain-cc");

/// One test's private world. Dropping it deletes everything.
pub struct Sandbox {
    _dir: TempDir,
    pub root: PathBuf,
    /// The copy of the fixture workspace; cargo and rustc run here.
    pub ws: PathBuf,
    /// `RCACHE_DIR`. Not created by the harness: rcache must create it.
    pub store: PathBuf,
    /// The default `CARGO_TARGET_DIR`.
    pub target: PathBuf,
    commands: AtomicU32,
}

impl Sandbox {
    /// A sandbox holding a copy of `demo_ws`.
    pub fn new() -> Sandbox {
        Sandbox::with_fixture("demo_ws")
    }

    /// A sandbox holding a copy of the fixture workspace `tests/fixtures/<name>`.
    pub fn with_fixture(name: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("rcache-it-")
            .tempdir()
            .expect("create temp dir");
        let root = dir.path().canonicalize().expect("canonicalize temp dir");
        let ws = root.join("ws");
        let fixture = Path::new(FIXTURES).join(name);
        fetch_registry_deps(&fixture);
        copy_tree(&fixture, &ws);
        Sandbox {
            _dir: dir,
            store: root.join("store"),
            target: root.join("target"),
            ws,
            root,
            commands: AtomicU32::new(0),
        }
    }

    /// A path inside the workspace copy.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.ws.join(rel)
    }

    /// `git <args>` in the workspace (commits as a throwaway identity); panics unless it succeeds.
    #[track_caller]
    pub fn git(&self, args: &[&str]) {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(&self.ws);
        let (status, _, stderr) = run_command(&mut cmd, "git");
        assert!(status.success(), "git {args:?}: {stderr}");
    }

    /// Replaces the one occurrence of `from` in a workspace file with `to`.
    #[track_caller]
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.path(rel);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        assert_eq!(
            text.matches(from).count(),
            1,
            "{rel} must contain {from:?} once"
        );
        self.write(rel, &text.replace(from, to));
    }

    /// Overwrites a workspace file, then waits until the write is [`EDIT_AGE`] old.
    ///
    /// rcache refuses to store a compile when an input's mtime or ctime is at or after the
    /// filesystem clock's reading when the compile started, and two writes in the same clock
    /// tick carry the same timestamp. A person edits long before cargo reaches rustc; a test
    /// that builds a few ms after its edit could see that refusal instead of the behaviour it
    /// tests. This waits on the file's own timestamps, not for a fixed time.
    #[track_caller]
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path(rel);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {rel}: {e}"));
        let meta = fs::metadata(&path).unwrap();
        let at = |secs: i64, nanos: i64| UNIX_EPOCH + Duration::new(secs as u64, nanos as u32);
        let stamped = at(meta.mtime(), meta.mtime_nsec()).max(at(meta.ctime(), meta.ctime_nsec()));
        let settled = stamped + EDIT_AGE;
        while let Ok(left) = settled.duration_since(SystemTime::now()) {
            std::thread::sleep(left);
        }
    }

    /// A fresh events log path, one per command, so each [`Run`] sees only its own events.
    fn next_events_path(&self) -> PathBuf {
        let n = self.commands.fetch_add(1, Ordering::SeqCst);
        self.root.join(format!("events-{n}.jsonl"))
    }

    /// Every event every command of this sandbox logged so far.
    pub fn all_events(&self) -> Vec<Value> {
        (0..self.commands.load(Ordering::SeqCst))
            .flat_map(|n| read_events(&self.root.join(format!("events-{n}.jsonl"))))
            .collect()
    }

    /// `cargo <args> --offline` in the workspace, through rcache, into [`Sandbox::target`].
    pub fn cargo(&self, args: &[&str]) -> CargoCmd {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        scrub_env(&mut cmd);
        cmd.args(args)
            .arg("--offline")
            .current_dir(&self.ws)
            .env("CARGO_INCREMENTAL", "0")
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_TARGET_DIR", &self.target)
            .env("DEMO_GREETING", GREETING)
            .env("RUSTC_WRAPPER", RCACHE);
        self.rcache_env(&mut cmd);
        let events = self.next_events_path();
        cmd.env("RCACHE_EVENTS", &events);
        CargoCmd {
            cmd,
            events,
            what: format!("cargo {}", args.join(" ")),
        }
    }

    /// `cargo build` through rcache; asserts success.
    #[track_caller]
    pub fn build(&self) -> Run {
        self.cargo(&["build"]).ok()
    }

    /// A first build into an empty store: both libraries must be compiled and stored.
    #[track_caller]
    pub fn cold_build(&self) -> Run {
        let run = self.build();
        for lib in LIBS {
            run.assert_stored_miss(lib);
        }
        run
    }

    /// `cargo clean` of [`Sandbox::target`].
    #[track_caller]
    pub fn clean(&self) {
        self.cargo(&["clean"]).ok();
    }

    /// Runs demo_bin from [`Sandbox::target`] and returns its stdout.
    #[track_caller]
    pub fn run_bin(&self) -> String {
        self.run_bin_in(&self.target)
    }

    /// Runs demo_bin from another target dir and returns its stdout.
    #[track_caller]
    pub fn run_bin_in(&self, target: &Path) -> String {
        self.run_program_in(target, "demo_bin")
    }

    /// Runs the binary `<target>/debug/<name>` (any fixture's) and returns its stdout.
    #[track_caller]
    pub fn run_program_in(&self, target: &Path, name: &str) -> String {
        let mut cmd = Command::new(target.join("debug").join(name));
        let (status, stdout, stderr) = run_command(&mut cmd, name);
        assert!(status.success(), "{name} failed: {status}\n{stderr}");
        stdout
    }

    /// An `rcache <args>` command with this sandbox's store and a scrubbed environment.
    pub fn rcache(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(RCACHE);
        scrub_env(&mut cmd);
        cmd.args(args).current_dir(&self.ws);
        self.rcache_env(&mut cmd);
        cmd
    }

    /// Runs `rcache <args>`; asserts success and returns stdout.
    #[track_caller]
    pub fn rcache_ok(&self, args: &[&str]) -> String {
        run_ok(
            &mut self.rcache(args),
            &format!("rcache {}", args.join(" ")),
        )
    }

    /// `rcache stats --json`, parsed.
    #[track_caller]
    pub fn stats(&self) -> Value {
        parse_stats(&self.rcache_ok(&["stats", "--json"]))
    }

    fn rcache_env(&self, cmd: &mut Command) {
        cmd.env("RCACHE_DIR", &self.store)
            // Keeps a developer's ~/.config/rcache/config.toml out of the tests.
            .env("XDG_CONFIG_HOME", self.root.join("xdg-config"));
    }

    /// The compiled outputs in `<target>/debug/deps`, by name: `.rlib`, `.rmeta`, `.so` (the
    /// proc macro) and executables (the bin); at least an rmeta for each of [`LIBS`].
    #[track_caller]
    pub fn deps_outputs(&self, target: &Path) -> BTreeMap<String, Vec<u8>> {
        let deps = target.join("debug/deps");
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(&deps).unwrap_or_else(|e| panic!("read {}: {e}", deps.display()))
        {
            let path = entry.unwrap().path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("rlib" | "rmeta" | "so") | None
            ) {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                files.insert(name, fs::read(&path).unwrap());
            }
        }
        for lib in LIBS {
            assert!(
                files
                    .keys()
                    .any(|n| n.starts_with(&format!("lib{lib}-")) && n.ends_with(".rmeta")),
                "no lib{lib}-*.rmeta in {}",
                deps.display()
            );
        }
        files
    }

    /// Every file under `$RCACHE_DIR/v2/blobs` (empty if the directory does not exist).
    pub fn blobs(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut dirs = vec![self.store.join("v2/blobs")];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    /// Runs `rcache <real rustc> <args>` by hand, with the argv cargo uses for demo_leaf
    /// ([`leaf_rustc_args`]) and `out_dir` as `--out-dir`.
    pub fn compile_leaf_directly(&self, out_dir: &Path) -> Run {
        self.compile_leaf_directly_with(out_dir, &[])
    }

    /// [`Sandbox::compile_leaf_directly`] with extra environment variables.
    pub fn compile_leaf_directly_with(&self, out_dir: &Path, env: &[(&str, &str)]) -> Run {
        fs::create_dir_all(out_dir).unwrap();
        self.rcache_rustc(&leaf_rustc_args(out_dir), env)
    }

    /// `rcache <real rustc> <args>` in the workspace, as cargo would run it.
    pub fn rcache_rustc(&self, args: &[String], env: &[(&str, &str)]) -> Run {
        self.rcache_rustc_with(real_rustc(), args, env)
    }

    /// `rcache <compiler> <args>` in the workspace, as cargo would run it.
    pub fn rcache_rustc_with(&self, compiler: &Path, args: &[String], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(RCACHE);
        scrub_env(&mut cmd);
        cmd.arg(compiler).args(args).current_dir(&self.ws);
        self.rcache_env(&mut cmd);
        cmd.envs(env.iter().copied());
        let events = self.next_events_path();
        cmd.env("RCACHE_EVENTS", &events);
        let what = format!("rcache rustc {}", args.join(" "));
        let (status, stdout, stderr) = run_command(&mut cmd, &what);
        Run {
            events: read_events(&events),
            what,
            status,
            stdout,
            stderr,
        }
    }
}

/// A cargo command being set up; see [`Sandbox::cargo`].
pub struct CargoCmd {
    cmd: Command,
    events: PathBuf,
    what: String,
}

impl CargoCmd {
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> CargoCmd {
        self.cmd.env(key, value);
        self
    }

    /// Names the command in failure messages.
    pub fn named(mut self, what: &str) -> CargoCmd {
        self.what = what.to_string();
        self
    }

    pub fn target_dir(self, dir: &Path) -> CargoCmd {
        self.env("CARGO_TARGET_DIR", dir)
    }

    /// Removes a variable the test process may have (`CC`, `CXX`).
    pub fn env_remove(mut self, key: &str) -> CargoCmd {
        self.cmd.env_remove(key);
        self
    }

    /// Runs cargo in `dir` (another checkout of the workspace) instead of the sandbox's copy.
    pub fn in_dir(mut self, dir: &Path) -> CargoCmd {
        self.cmd.current_dir(dir);
        self
    }

    /// A plain cargo build, without rcache.
    pub fn without_wrapper(mut self) -> CargoCmd {
        self.cmd.env_remove("RUSTC_WRAPPER");
        self
    }

    /// A plain cargo build whose rustc gets the `--remap-path-prefix` flags rcache adds
    /// ([`PLAIN_REMAPPED_RUSTC`]) and whose `cc` and `c++` on PATH add the `-ffile-prefix-map`
    /// flags rcache adds to C/C++ compiles ([`PLAIN_REMAPPED_CC_DIR`]): what rcache's outputs
    /// must equal byte for byte.
    pub fn plain_remapped(mut self) -> CargoCmd {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![PathBuf::from(PLAIN_REMAPPED_CC_DIR)];
        dirs.extend(std::env::split_paths(&path));
        self.cmd
            .env("RUSTC_WRAPPER", PLAIN_REMAPPED_RUSTC)
            .env("PATH", std::env::join_paths(dirs).expect("PATH entries"));
        self
    }

    /// Starts the command in the background, its output discarded, for a test that stops it
    /// midway (see `crash/killed_builds.rs`).
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.what))
    }

    /// Runs the command, whatever its outcome.
    pub fn run(mut self) -> Run {
        let (status, stdout, stderr) = run_command(&mut self.cmd, &self.what);
        Run {
            events: read_events(&self.events),
            what: self.what,
            status,
            stdout,
            stderr,
        }
    }

    /// Runs the command and asserts that it succeeded.
    #[track_caller]
    pub fn ok(self) -> Run {
        let run = self.run();
        assert!(
            run.status.success(),
            "{} failed: {}\nstderr:\n{}\n{}",
            run.what,
            run.status,
            run.stderr,
            run.describe_events()
        );
        run
    }
}

/// Runs a command; asserts success and returns stdout.
#[track_caller]
pub fn run_ok(command: &mut Command, what: &str) -> String {
    let (status, stdout, stderr) = run_command(command, what);
    assert!(
        status.success(),
        "{what} failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// The output of `rcache stats --json`, parsed.
#[track_caller]
pub fn parse_stats(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stats --json is not one JSON object ({e}):\n{stdout}"))
}
