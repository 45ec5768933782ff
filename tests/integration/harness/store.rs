//! Looking inside a sandbox's store, as the store suites do: the blob that holds a crate's
//! rlib, a blob cut in half, and a clean `rcache verify`.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Sandbox, run_command};

/// The blob of `<target>/debug/deps/lib<krate>-*.rlib`, found by content.
#[track_caller]
pub fn rlib_blob(sb: &Sandbox, krate: &str) -> PathBuf {
    let outputs = sb.deps_outputs(&sb.target);
    let (_, rlib) = outputs
        .iter()
        .find(|(name, _)| name.starts_with(&format!("lib{krate}-")) && name.ends_with(".rlib"))
        .unwrap_or_else(|| panic!("no {krate} rlib"));
    sb.blobs()
        .into_iter()
        .find(|blob| fs::read(blob).is_ok_and(|bytes| bytes == *rlib))
        .unwrap_or_else(|| panic!("no blob holds {krate}'s rlib"))
}

/// Cuts the file at `path` to half its length (a blob: made writable first).
#[track_caller]
pub fn truncate_to_half(path: &Path) {
    let len = fs::metadata(path).unwrap().len();
    assert!(len > 1, "{}: too small to truncate", path.display());
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len / 2).unwrap();
}

/// `rcache verify` succeeds and reports no problem.
#[track_caller]
pub fn verify_clean(sb: &Sandbox) {
    let (status, stdout, stderr) = run_command(&mut sb.rcache(&["verify"]), "rcache verify");
    assert!(
        status.success() && stdout.contains(": 0 problem(s)"),
        "rcache verify: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
