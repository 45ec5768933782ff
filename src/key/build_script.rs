//! The invocation key of a build-script run (docs/design.md §6b): the real script binary, the
//! compiler the script may probe, and the environment variables that can change what it does.
//!
//! The environment is an explicit selection, never the whole of it: `PATH`, `TERM`, CI ids,
//! `NUM_JOBS` and the jobserver stay out, or CI would never hit. Candidates under this key are
//! the run's declared inputs (`rerun-if-changed` paths, `rerun-if-env-changed` values), turned
//! into a result key by [`super::result_key`] exactly as a compile's are.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::hash::{Key, KeyHasher};
use crate::store::layout::KEY_VERSION;

/// Variables cargo sets for a script that are keyed by name.
pub const RUN_ENV_NAMES: [&str; 14] = [
    "OUT_DIR",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_ENCODED_RUSTFLAGS",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "RUSTC",
    "RUSTC_LINKER",
    "RUSTC_WRAPPER",
    "RUSTDOC",
];

/// Keyed by prefix: package facts, cfgs, features, `links` metadata of dependencies, and
/// pkg-config's settings (`PKG_CONFIG_PATH`, `PKG_CONFIG_SYSROOT_DIR`, ...).
pub const RUN_ENV_PREFIXES: [&str; 5] = [
    "CARGO_PKG_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "DEP_",
    "PKG_CONFIG_",
];

/// Toolchain variables cargo does not track but that change a run's result, keyed with their
/// target forms: `CC`, `HOST_CC`, `TARGET_CC`, `CC_x86_64-unknown-linux-gnu`,
/// `CC_x86_64_unknown_linux_gnu`.
pub const RUN_TOOLCHAIN_VARS: [&str; 6] = ["CC", "CXX", "AR", "CFLAGS", "CXXFLAGS", "LDFLAGS"];

/// True if a variable of this name goes into a run's key.
pub fn is_run_env(name: &str) -> bool {
    if RUN_ENV_NAMES.contains(&name)
        || name == "PKG_CONFIG"
        || RUN_ENV_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
    {
        return true;
    }
    let base = name
        .strip_prefix("HOST_")
        .or_else(|| name.strip_prefix("TARGET_"))
        .unwrap_or(name);
    RUN_TOOLCHAIN_VARS.iter().any(|var| {
        base == *var
            || name
                .strip_prefix(var)
                .is_some_and(|rest| rest.starts_with('_') && rest.len() > 1)
    })
}

/// The keyed variables of `env`, sorted by name (bytes).
pub fn run_env(env: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let mut selected: Vec<(OsString, OsString)> = env
        .filter(|(name, _)| name.to_str().is_some_and(is_run_env))
        .collect();
    selected.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    selected
}

/// What identifies a build-script run before it runs.
pub struct RunFacts<'a> {
    /// The roles of the run's base dirs (`super::base_dirs`); the cwd, env values and upstream
    /// paths below come templated by them.
    pub base_roles: &'a [&'static str],
    /// blake3 of the real script binary.
    pub script_hash: Key,
    /// The identity of `$RUSTC` (which scripts probe), if set.
    pub rustc_id: Option<Key>,
    pub args: &'a [OsString],
    pub cwd: &'a [u8],
    /// From [`run_env`].
    pub env: &'a [(OsString, OsString)],
    /// Other units' `OUT_DIR`s that `DEP_*` values point into, each with the fingerprint of its
    /// tree: a `links` dependency whose run changed its files without changing their paths.
    pub upstream: &'a [(Vec<u8>, Key)],
}

/// The invocation key of a run. Changing what goes in bumps `KEY_VERSION`.
pub fn run_invocation_key(facts: &RunFacts) -> Key {
    let mut key = KeyHasher::new("build-script-run", KEY_VERSION);
    for role in facts.base_roles {
        key.str_field("base-dir", role);
    }
    key.field("script", &facts.script_hash);
    key.opt_field("rustc-id", facts.rustc_id.as_ref().map(|id| &id[..]));
    key.field("argc", &(facts.args.len() as u64).to_le_bytes());
    for arg in facts.args {
        key.os_field("arg", arg);
    }
    key.field("cwd", facts.cwd);
    key.field("envc", &(facts.env.len() as u64).to_le_bytes());
    for (name, value) in facts.env {
        key.os_field("env-name", name);
        key.os_field("env-value", value);
    }
    key.field("upstreamc", &(facts.upstream.len() as u64).to_le_bytes());
    for (out_dir, tree) in facts.upstream {
        key.field("upstream-out-dir", out_dir);
        key.field("upstream-tree", tree);
    }
    key.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_cargo_facts_and_toolchain_vars_only() {
        for keyed in [
            "OUT_DIR",
            "CARGO_MANIFEST_LINKS",
            "CARGO_PKG_VERSION",
            "CARGO_CFG_TARGET_OS",
            "CARGO_FEATURE_STD",
            "DEP_Z_INCLUDE",
            "PKG_CONFIG_PATH",
            "PKG_CONFIG",
            "CC",
            "HOST_CXX",
            "TARGET_AR",
            "CFLAGS_x86_64-unknown-linux-gnu",
            "CXXFLAGS_x86_64_unknown_linux_gnu",
            "LDFLAGS",
            "RUSTC_WRAPPER",
        ] {
            assert!(is_run_env(keyed), "{keyed} should be keyed");
        }
        for unkeyed in [
            "PATH",
            "TERM",
            "NUM_JOBS",
            "CARGO_MAKEFLAGS",
            "CI",
            "GITHUB_RUN_ID",
            "HOME",
            "CARGO_TARGET_DIR",
            "CC_",
            "CCACHE_DIR",
            "ARCH",
            "RCACHE_DIR",
        ] {
            assert!(!is_run_env(unkeyed), "{unkeyed} should not be keyed");
        }
    }

    /// Pins the derivation (store-format §5.5): changing what goes into a run key fails this
    /// test until `KEY_VERSION` is bumped and the format documented.
    #[test]
    fn golden_run_key() {
        let env = vec![
            (OsString::from("CARGO_PKG_NAME"), OsString::from("demo")),
            (
                OsString::from("OUT_DIR"),
                OsString::from("/t/debug/build/demo-1/out"),
            ),
        ];
        let key = run_invocation_key(&RunFacts {
            base_roles: &["cwd", "target"],
            script_hash: [7; 32],
            rustc_id: Some([9; 32]),
            args: &[],
            cwd: b"/ws/demo",
            env: &env,
            upstream: &[],
        });
        assert_eq!(KEY_VERSION, 4);
        assert_eq!(
            crate::hash::hex(&key),
            "5c0f729a4e99c0be9934918287264a0886880c6aa182f64eb9c90cd206655674"
        );
    }

    #[test]
    fn every_fact_changes_the_key() {
        let env = vec![(OsString::from("OUT_DIR"), OsString::from("/t/out"))];
        let base = RunFacts {
            base_roles: &[],
            script_hash: [1; 32],
            rustc_id: None,
            args: &[],
            cwd: b"/p",
            env: &env,
            upstream: &[],
        };
        let reference = run_invocation_key(&base);
        let other_env = vec![(OsString::from("OUT_DIR"), OsString::from("/u/out"))];
        let args = [OsString::from("x")];
        let upstream = [(b"/t/debug/build/z-1/out".to_vec(), [4; 32])];
        let variants = [
            RunFacts {
                script_hash: [2; 32],
                ..base
            },
            RunFacts {
                rustc_id: Some([3; 32]),
                ..base
            },
            RunFacts {
                args: &args,
                ..base
            },
            RunFacts { cwd: b"/q", ..base },
            RunFacts {
                env: &other_env,
                ..base
            },
            RunFacts {
                upstream: &upstream,
                ..base
            },
        ];
        for variant in &variants {
            assert_ne!(run_invocation_key(variant), reference);
        }
        assert_eq!(run_invocation_key(&base), reference);
    }
}
