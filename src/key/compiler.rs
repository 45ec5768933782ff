//! The compiler's identity: content-based, so that two machines with the same toolchain agree.
//!
//! It is made of `rustc -vV` plus the content hashes of the sysroot's shared libraries
//! (`librustc_driver-*.so`, LLVM), of every file under `lib/rustlib/*/lib` (the target
//! libraries) and under `lib/rustlib/*/bin` (rust-lld and its `gcc-ld` shims, which link);
//! the `rustc` binary itself is a small stub. Computing it hashes about 500 MB, so it
//! is memoized in the state env, keyed by the binary's path, inode, size and mtime. That stat data
//! is only the memo key, never part of the cache key.
//!
//! A rustup proxy (`~/.cargo/bin/rustc`) picks its toolchain per directory, so its stat data says
//! nothing: for a proxy the sysroot is asked for first and the real `bin/rustc` is memoized.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hash::file_hash::{self, FileStamp};
use crate::hash::{Key, KeyHasher};
use crate::store::layout::KEY_VERSION;

/// What is known about one compiler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompilerIdentity {
    /// The content-based identity hashed into every key.
    pub id: Key,
    /// `rustc -vV` output.
    pub version_text: String,
    pub sysroot: Vec<u8>,
    /// The `host:` line of `rustc -vV`.
    pub host: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("running `{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("hashing the sysroot at {path}: {source}")]
    Sysroot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The memo key of a compiler binary, or `None` when its stat data does not pin the toolchain
/// (a rustup proxy): then [`resolve_proxy`] gives the real binary to memoize instead.
pub fn memo_key(compiler: &Path) -> Option<Key> {
    let canonical = compiler.canonicalize().ok()?;
    if is_rustup_proxy(&canonical) {
        return None;
    }
    let stamp = FileStamp::of(&std::fs::metadata(&canonical).ok()?);
    Some(
        KeyHasher::new("compiler-memo", KEY_VERSION)
            .field("path", canonical.as_os_str().as_bytes())
            .field("ino", &stamp.ino.to_le_bytes())
            .field("size", &stamp.size.to_le_bytes())
            .field("mtime", &stamp.mtime_ns.to_le_bytes())
            .finish(),
    )
}

fn is_rustup_proxy(canonical: &Path) -> bool {
    canonical
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| name.starts_with("rustup"))
}

/// For a rustup proxy: the toolchain's real `rustc`, from `--print sysroot`.
pub fn resolve_proxy(compiler: &Path) -> Result<PathBuf, IdentityError> {
    let sysroot = run(compiler, &["--print", "sysroot"])?;
    Ok(PathBuf::from(OsStr::from_bytes(sysroot.trim_ascii())).join("bin/rustc"))
}

/// Computes the identity of `compiler` from scratch.
///
/// `rustc -vV` runs on a thread while the sysroot is asked for and hashed: only the key needs
/// it, and each run of rustc costs a fresh store's first units about 13 ms of their wait.
pub fn identify(compiler: &Path) -> Result<CompilerIdentity, IdentityError> {
    let (version, hashed) = std::thread::scope(|scope| {
        let version = scope.spawn(|| run(compiler, &["-vV"]));
        let hashed = hash_sysroot(compiler);
        let version = version
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (version, hashed)
    });
    let version_text = String::from_utf8_lossy(&version?).into_owned();
    let (sysroot, hashes) = hashed?;
    let sysroot_path = PathBuf::from(OsStr::from_bytes(&sysroot));
    let host = version_text
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .unwrap_or_default()
        .to_string();

    let mut key = KeyHasher::new("compiler", KEY_VERSION);
    key.str_field("version", &version_text);
    for (path, hash) in &hashes {
        let relative = path.strip_prefix(&sysroot_path).unwrap_or(path);
        key.field("file", relative.as_os_str().as_bytes());
        key.field("hash", hash.as_bytes());
    }
    Ok(CompilerIdentity {
        id: key.finish(),
        version_text,
        sysroot,
        host,
    })
}

/// A sysroot's path bytes, and the content hash of each of its files in the identity.
type SysrootHashes = (Vec<u8>, Vec<(PathBuf, blake3::Hash)>);

/// The sysroot `compiler` reports, and the content hash of every file of it that goes into the
/// identity (module docs), sorted by path.
fn hash_sysroot(compiler: &Path) -> Result<SysrootHashes, IdentityError> {
    let sysroot = run(compiler, &["--print", "sysroot"])?
        .trim_ascii()
        .to_vec();
    let sysroot_path = PathBuf::from(OsStr::from_bytes(&sysroot));
    let mut files: Vec<PathBuf> = Vec::new();
    let lib = sysroot_path.join("lib");
    let read_dir = std::fs::read_dir(&lib).map_err(|source| IdentityError::Sysroot {
        path: lib.clone(),
        source,
    })?;
    for item in read_dir.flatten() {
        let path = item.path();
        let is_file = item.file_type().is_ok_and(|kind| kind.is_file());
        if is_file && path.to_string_lossy().contains(".so") {
            files.push(path);
        }
    }
    for item in walkdir::WalkDir::new(lib.join("rustlib"))
        .min_depth(3)
        .into_iter()
        .flatten()
    {
        let in_target_dirs = item
            .path()
            .strip_prefix(lib.join("rustlib"))
            .ok()
            .and_then(|rest| rest.components().nth(1))
            .is_some_and(|component| matches!(component.as_os_str().to_str(), Some("lib" | "bin")));
        if in_target_dirs && item.file_type().is_file() {
            files.push(item.into_path());
        }
    }
    files.sort();
    let hashes: Vec<(PathBuf, blake3::Hash)> = files
        .into_par_iter()
        .map(|path| {
            let digest = file_hash::hash_file(&path).map_err(|source| IdentityError::Sysroot {
                path: path.clone(),
                source,
            })?;
            Ok((path, digest.hash))
        })
        .collect::<Result<_, IdentityError>>()?;
    Ok((sysroot, hashes))
}

/// The CPU that `-C target-cpu=native` means on this machine: the CPU name and the target
/// features rustc resolves it to. Hashed instead of the word `native`, so that a shared cache
/// never hands one machine's code to another (SIGILL).
pub fn native_cpu(compiler: &Path, target: Option<&str>) -> Result<Vec<u8>, IdentityError> {
    let mut args = vec![
        "-C",
        "target-cpu=native",
        "--print",
        "cfg",
        "--print",
        "target-cpus",
    ];
    if let Some(target) = target {
        args.extend(["--target", target]);
    }
    let output = run(compiler, &args)?;
    // Keep the cfg lines and the `native` description line; the list of all CPUs is constant.
    let text = String::from_utf8_lossy(&output);
    let relevant: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("    ") || line.trim_start().starts_with("native"))
        .collect();
    Ok(relevant.join("\n").into_bytes())
}

/// The memo key for [`native_cpu`]: the compiler, the target and this machine's CPU model and
/// flags (from /proc/cpuinfo, without the ever-changing MHz line).
pub fn native_cpu_memo_key(compiler_id: &Key, target: Option<&str>) -> Key {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first_cpu = cpuinfo.split("\n\n").next().unwrap_or_default();
    let mut key = KeyHasher::new("native-cpu-memo", KEY_VERSION);
    key.field("compiler", compiler_id);
    key.opt_field("target", target.map(str::as_bytes));
    for line in first_cpu.lines() {
        let name = line.split(':').next().unwrap_or_default().trim();
        if matches!(
            name,
            "vendor_id" | "cpu family" | "model" | "model name" | "stepping" | "flags"
        ) {
            key.str_field("cpuinfo", line);
        }
    }
    key.finish()
}

fn run(compiler: &Path, args: &[&str]) -> Result<Vec<u8>, IdentityError> {
    run_probe(compiler, args, &[]).map(|output| output.stdout)
}

/// Runs a compiler probe (`-vV`, `--print sysroot`, `-v`, ...) with `env` added and stdin
/// closed; its output, or an error naming the command when it cannot run or fails.
pub fn run_probe(
    compiler: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<std::process::Output, IdentityError> {
    let command = format!("{} {}", compiler.display(), args.join(" "));
    let output = Command::new(compiler)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|err| IdentityError::Command {
            command: command.clone(),
            detail: err.to_string(),
        })?;
    if !output.status.success() {
        return Err(IdentityError::Command {
            command,
            detail: output.status.to_string(),
        });
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_rustc() -> PathBuf {
        let sysroot = run(Path::new("rustc"), &["--print", "sysroot"]).unwrap();
        PathBuf::from(OsStr::from_bytes(sysroot.trim_ascii())).join("bin/rustc")
    }

    #[test]
    fn native_cpu_is_resolved_to_features_not_the_word() {
        let resolved = String::from_utf8(native_cpu(&real_rustc(), None).unwrap()).unwrap();
        assert!(resolved.contains("target_feature=\"sse2\""), "{resolved}");
        assert!(
            resolved.contains("native"),
            "the CPU name line is kept: {resolved}"
        );
        let memo_a = native_cpu_memo_key(&[1; 32], None);
        let memo_b = native_cpu_memo_key(&[2; 32], None);
        assert_ne!(memo_a, memo_b, "the memo is per compiler");
    }

    #[test]
    fn identity_is_content_based_and_memo_is_stat_based() {
        let rustc = real_rustc();
        let identity = identify(&rustc).unwrap();
        assert!(identity.version_text.contains("release:"));
        assert!(!identity.host.is_empty());
        assert_eq!(identify(&rustc).unwrap().id, identity.id);
        assert!(memo_key(&rustc).is_some());
    }
}
