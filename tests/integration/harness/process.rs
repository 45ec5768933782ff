//! Processes: running a command with a timeout, the environment scrub every child gets, the
//! real rustc, the argv cargo uses for demo_leaf, and copying the fixture.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Generous: a whole fixture build takes a few seconds, but the machine may be busy.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The real rustc binary (`$(rustc --print sysroot)/bin/rustc`), resolved once.
pub fn real_rustc() -> &'static Path {
    static RUSTC: OnceLock<PathBuf> = OnceLock::new();
    RUSTC.get_or_init(|| {
        let mut cmd = Command::new("rustc");
        scrub_env(&mut cmd);
        cmd.args(["--print", "sysroot"]);
        let (status, stdout, stderr) = run_command(&mut cmd, "rustc --print sysroot");
        assert!(status.success(), "rustc --print sysroot: {stderr}");
        let rustc = Path::new(stdout.trim()).join("bin/rustc");
        assert!(rustc.is_file(), "{} does not exist", rustc.display());
        rustc
    })
}

/// Removes what `cargo test` (or the developer's shell) would leak into a child cargo or
/// rcache and change its behaviour. `CARGO_HOME` stays: it says where the toolchain's
/// registry and config live.
pub(super) fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaked = (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("RCACHE_")
            || key.starts_with("DEMO_");
        if leaked {
            cmd.env_remove(key);
        }
    }
    for key in [
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "OUT_DIR",
    ] {
        cmd.env_remove(key);
    }
}

/// Runs `cmd` to completion with piped output and a timeout. Returns (status, stdout, stderr).
pub fn run_command(cmd: &mut Command, what: &str) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).expect("read child output");
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} timed out after {TIMEOUT:?}");
        }
        // Polling for the timeout only; the result does not depend on this interval.
        thread::sleep(Duration::from_millis(10));
    };
    (status, stdout.join().unwrap(), stderr.join().unwrap())
}

/// The rustc arguments cargo passes for demo_leaf in `cargo build` (docs/facts.md §4), with fixed
/// `-C metadata`/`extra-filename` and `out_dir` as `--out-dir`. Run from the workspace root.
pub fn leaf_rustc_args(out_dir: &Path) -> Vec<String> {
    let out = out_dir.to_str().expect("utf-8 temp path");
    [
        "--crate-name",
        "demo_leaf",
        "--edition=2021",
        "demo_leaf/src/lib.rs",
        "--error-format=json",
        "--json=diagnostic-rendered-ansi,artifacts,future-incompat",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        "embed-bitcode=no",
        "-C",
        "debuginfo=2",
        "-C",
        "metadata=0123456789abcdef",
        "-C",
        "extra-filename=-0123456789abcdef",
        "--out-dir",
        out,
        "-L",
        &format!("dependency={out}"),
    ]
    .map(String::from)
    .to_vec()
}

pub(super) fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}
