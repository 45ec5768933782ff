//! `rcache-launcher`: stands where cargo expects a build-script binary, and hands the run to
//! rcache (docs/design.md §6b).
//!
//! When rcache produces a build script (compiled or restored), it moves the real binary to
//! `<name>.rcache-real` beside it and copies this launcher to `<name>`; cargo then hard-links
//! `build-script-build` to the launcher and runs it. The launcher:
//! - finds the real script: `<own name>.rcache-real`, else the only `*.rcache-real` in its
//!   directory (cargo runs it through that hard link, under another name);
//! - execs `$RUSTC_WRAPPER --build-script-run <real> <args>` when `RUSTC_WRAPPER` names rcache
//!   and `RCACHE_DISABLE` is not set; the environment passes through untouched (`DEP_*` names
//!   included, which a shell would drop);
//! - otherwise, or when that exec fails (rcache uninstalled or unusable), execs the real script.
//!
//! It is self-contained: a copy, never a link to rcache, so it keeps working when rcache is gone.
//! It uses nothing but std, and costs one exec.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Suffix of the real build-script binary beside the launcher. Shared with rcache's installer.
const REAL_SUFFIX: &str = ".rcache-real";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(real) = real_script() else {
        eprintln!(
            "rcache-launcher: the real build script ({REAL_SUFFIX}) is missing beside {}; \
             `cargo clean` rebuilds it",
            std::env::current_exe().unwrap_or_default().display()
        );
        return ExitCode::from(101);
    };
    if let Some(rcache) = rcache_to_use() {
        let _ = Command::new(rcache)
            .arg("--build-script-run")
            .arg(&real)
            .args(&args)
            .exec();
        // rcache is gone or unusable: run the script as cargo would have.
    }
    let err = Command::new(&real).args(&args).exec();
    eprintln!("rcache-launcher: could not run {}: {err}", real.display());
    ExitCode::from(101)
}

/// The real script beside this launcher.
fn real_script() -> Option<PathBuf> {
    let own = std::env::current_exe().ok()?;
    let mut beside = own.clone().into_os_string();
    beside.push(REAL_SUFFIX);
    let beside = PathBuf::from(beside);
    if beside.is_file() {
        return Some(beside);
    }
    let dir = own.parent()?;
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|name| name.ends_with(REAL_SUFFIX))
        });
    let first = found.next()?;
    // Two candidates would be a guess: refuse rather than run the wrong script.
    found.next().is_none().then_some(first)
}

/// `RUSTC_WRAPPER`, when it names rcache and rcache is not disabled.
fn rcache_to_use() -> Option<OsString> {
    if std::env::var_os("RCACHE_DISABLE").is_some_and(|value| is_truthy(&value)) {
        return None;
    }
    let wrapper = std::env::var_os("RUSTC_WRAPPER")?;
    let names_rcache = Path::new(&wrapper)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| name == "rcache");
    names_rcache.then_some(wrapper)
}

fn is_truthy(value: &OsStr) -> bool {
    matches!(
        value.to_string_lossy().trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}
