//! A C compiler's identity: content-based, so that two machines with the same toolchain agree.
//!
//! It is made of the driver's `-v` output (version, target, configuration; the `COLLECT_GCC=`
//! line, which names the path the driver was started by, is left out) and the content hashes of
//! the driver binary and, for gcc, of the programs it runs: `cc1`, `cc1plus` and the assembler
//! (`-print-prog-name=...`). clang compiles and assembles in one binary. Computing it runs the
//! driver a few times, so the caller memoizes it by the binary's path, inode, size and mtime
//! ([`memo_key`]), as for rustc; that stat data is never part of the cache key.
//!
//! `-march=native` and friends are resolved with `-###`, which prints the commands the driver
//! would run with the native CPU and features spelled out ([`native_target`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::driver::real_program_on_path;
use crate::hash::file_hash;
use crate::hash::{Key, KeyHasher};
use crate::key::compiler::{self, IdentityError};
use crate::store::layout::KEY_VERSION;

/// What is known about one C compiler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CcIdentity {
    /// The content-based identity hashed into every key.
    pub id: Key,
    /// The `-v` output that went into it.
    pub version_text: String,
}

/// The memo key of a C compiler binary (its own namespace, apart from rustc identities).
pub fn memo_key(compiler: &Path) -> Option<Key> {
    let stat_key = compiler::memo_key(compiler)?;
    Some(
        KeyHasher::new("cc-compiler-memo", KEY_VERSION)
            .field("stat", &stat_key)
            .finish(),
    )
}

/// Computes the identity of `compiler` from scratch.
pub fn identify(compiler: &Path) -> Result<CcIdentity, IdentityError> {
    let version_text: String = String::from_utf8_lossy(&run_stderr(compiler, &["-v"])?)
        .lines()
        .filter(|line| !line.starts_with("COLLECT_GCC="))
        .map(|line| format!("{line}\n"))
        .collect();
    let driver = compiler
        .canonicalize()
        .map_err(|err| command_error(compiler, "canonicalize", err))?;
    let mut programs: Vec<(String, PathBuf)> = vec![("driver".into(), driver)];
    if version_text.contains("gcc version") && !version_text.contains("clang version") {
        for program in ["cc1", "cc1plus", "as"] {
            let printed = run_stdout(compiler, &[&format!("-print-prog-name={program}")])?;
            let printed = PathBuf::from(String::from_utf8_lossy(printed.trim_ascii()).as_ref());
            let resolved = if printed.is_absolute() {
                Some(printed)
            } else {
                real_program_on_path(printed.as_os_str())
            };
            // A missing cc1plus only means this gcc compiles no C++ (which then fails).
            if let Some(path) = resolved.filter(|path| path.is_file()) {
                programs.push((program.to_string(), path));
            }
        }
    }
    let mut key = KeyHasher::new("cc-compiler", KEY_VERSION);
    key.str_field("version", &version_text);
    for (role, path) in &programs {
        let digest = file_hash::hash_file(path).map_err(|err| command_error(path, "hash", err))?;
        key.str_field("program", role);
        key.field("hash", digest.hash.as_bytes());
    }
    Ok(CcIdentity {
        id: key.finish(),
        version_text,
    })
}

/// What the native CPU flags (`-march=native`, ...) resolve to: the driver's `-###` plan for a
/// compile of nothing with those flags, which names the real CPU and its features.
pub fn native_target(compiler: &Path, flags: &[String]) -> Result<Vec<u8>, IdentityError> {
    let mut args: Vec<&str> = vec!["-###", "-S", "-x", "c", "-o", "/dev/null", "/dev/null"];
    args.extend(flags.iter().map(String::as_str));
    run_stderr(compiler, &args)
}

fn command_error(path: &Path, what: &str, err: impl std::fmt::Display) -> IdentityError {
    IdentityError::Command {
        command: format!("{what} {}", path.display()),
        detail: err.to_string(),
    }
}

fn run_stdout(compiler: &Path, args: &[&str]) -> Result<Vec<u8>, IdentityError> {
    Ok(run(compiler, args)?.stdout)
}

fn run_stderr(compiler: &Path, args: &[&str]) -> Result<Vec<u8>, IdentityError> {
    Ok(run(compiler, args)?.stderr)
}

fn run(compiler: &Path, args: &[&str]) -> Result<std::process::Output, IdentityError> {
    compiler::run_probe(compiler, args, &[("LC_ALL", "C")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcc_identity_covers_cc1_and_is_stable() {
        let gcc = real_program_on_path("gcc".as_ref()).expect("gcc on PATH");
        let identity = identify(&gcc).unwrap();
        assert!(identity.version_text.contains("gcc version"));
        assert!(!identity.version_text.contains("COLLECT_GCC="));
        assert_eq!(identify(&gcc).unwrap().id, identity.id);
        let native =
            String::from_utf8(native_target(&gcc, &["-march=native".into()]).unwrap()).unwrap();
        // gcc's plan spells out the CPU's features for cc1.
        assert!(native.contains(" -msse2"), "resolved: {native}");
    }
}
