//! Hits that do not depend on paths (README "Other checkouts, target dirs and machines";
//! docs/design.md §6e): a second checkout at another length and depth, a git worktree, another
//! target dir (`cargo install`), another `CARGO_HOME` and another machine through Redis hit every
//! Rust compile whose content is the same; outputs are byte for byte a plain build's given the
//! same `--remap-path-prefix` flags, and never name the other checkout's paths. The traps (a
//! crate that reads a data file through `env!("CARGO_MANIFEST_DIR")`, one that prints its
//! `OUT_DIR`, a source that differs between checkouts, a path dependency outside the workspace,
//! the user's own `--remap-path-prefix`) each come out right in each checkout.
//!
//! - [`checkouts`]: demo_ws (Rust compiles) across checkouts, a worktree, installs, machines;
//! - [`scripts`]: scripts_ws (build-script runs, and the C compiles of the `cc` crate) in
//!   another checkout and another `CARGO_HOME`.

mod checkouts;
mod scripts;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Run, Sandbox, run_command};

/// A copy of the sandbox's workspace at `<root>/<rel>`; returns its path.
fn second_checkout(sb: &Sandbox, rel: &str) -> PathBuf {
    let dir = sb.root.join(rel);
    fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&sb.ws).arg(&dir);
    let (status, _, stderr) = run_command(&mut cp, "cp -a");
    assert!(status.success(), "copy the workspace: {stderr}");
    dir
}

#[track_caller]
fn assert_all_hit(run: &Run, crates: &[&str]) {
    for krate in crates {
        run.assert_hit(krate);
    }
}
