//! Putting the launcher in place of a build-script binary rcache has just produced, so that
//! cargo's runs of the script come to rcache (docs/design.md §6b; `src/bin/rcache-launcher.rs`).
//!
//! The real binary moves to `<name>.rcache-real` (a rename: same inode, no copy) and a copy of
//! the launcher takes `<name>`, written to a temp name and renamed, so cargo never sees a
//! half-written file. A failure puts the real binary back: the build then runs the script as
//! usual.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::rustc::Invocation;

/// Suffix of the real build-script binary beside the launcher (the launcher has its own copy).
pub const REAL_SUFFIX: &str = ".rcache-real";

/// File name of the launcher binary, installed beside `rcache`.
pub const LAUNCHER_NAME: &str = "rcache-launcher";

/// True for cargo's compile of a build script: a bin crate named `build_script_*`.
pub fn is_build_script(invocation: &Invocation) -> bool {
    invocation.crate_name.starts_with("build_script_")
        && invocation.crate_types.iter().all(|kind| kind == "bin")
        && invocation.emits("link")
}

/// The path of the linked build-script binary of `invocation`, relative to the cwd.
pub fn binary_path(invocation: &Invocation) -> PathBuf {
    invocation.out_dir.join(format!(
        "{}{}",
        invocation.crate_name, invocation.extra_filename
    ))
}

/// The launcher shipped with this rcache: `rcache-launcher` beside the running executable.
pub fn launcher_binary() -> io::Result<PathBuf> {
    let launcher = std::env::current_exe()?.with_file_name(LAUNCHER_NAME);
    if launcher.is_file() {
        Ok(launcher)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is missing", launcher.display()),
        ))
    }
}

/// Moves the build script at `binary` aside and puts a copy of `launcher` in its place.
/// Returns the real binary's new path.
pub fn install(binary: &Path, launcher: &Path) -> io::Result<PathBuf> {
    let real = with_suffix(binary, REAL_SUFFIX);
    let temp = with_suffix(binary, &format!(".rcache-tmp-{}", std::process::id()));
    fs::copy(launcher, &temp)?;
    let placed = fs::set_permissions(&temp, fs::Permissions::from_mode(0o755))
        .and_then(|()| fs::rename(binary, &real))
        .and_then(|()| {
            fs::rename(&temp, binary).inspect_err(|_| {
                let _ = fs::rename(&real, binary);
            })
        });
    if placed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    placed.map(|()| real)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_moves_the_script_aside() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("build_script_build-0123");
        let launcher = dir.path().join("launcher");
        fs::write(&binary, b"real script").unwrap();
        fs::write(&launcher, b"launcher").unwrap();
        let real = install(&binary, &launcher).unwrap();
        assert_eq!(real, dir.path().join("build_script_build-0123.rcache-real"));
        assert_eq!(fs::read(&real).unwrap(), b"real script");
        assert_eq!(fs::read(&binary).unwrap(), b"launcher");
        let mode = fs::metadata(&binary).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let names = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names, 3, "no temp file is left behind");
    }

    #[test]
    fn a_failed_install_leaves_the_script_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("build_script_build-0123");
        fs::write(&binary, b"real script").unwrap();
        assert!(install(&binary, &dir.path().join("no-launcher")).is_err());
        assert_eq!(fs::read(&binary).unwrap(), b"real script");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
