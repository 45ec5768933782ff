//! Two-level keys (docs/design.md §2): invocation -> manifest candidates -> result.
//!
//! - The **invocation key** covers what is known before compiling: the compiler, the arguments
//!   (without output-neutral paths), the cwd, the content of every `--extern` file, bundled static
//!   archive and target JSON, an explicit env allowlist, and `target-cpu=native` resolved.
//! - Under it, the manifest lists candidates: the source inputs and `# env-dep` values of earlier
//!   compiles. The **result key** of a candidate is `blake3(invocation key, sorted inputs with
//!   their hashes, env-dep values)`, always recomputed by the reader.
//!
//! [`crate::hash`] is the tagged field encoding and hashes files; [`compiler`] identifies
//! the compiler. `store-format/README.md` lists every field and tag.

pub mod base_dirs;
pub(crate) mod build_script;
pub(crate) mod compiler;
pub(crate) mod input_paths;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::hash::{Key, KeyHasher};
use crate::rustc::Invocation;
use crate::store::entry::{Candidate, InputRecord};
use crate::store::layout::KEY_VERSION;
pub use base_dirs::BaseDirs;

/// Environment variables that cargo sets per unit and that can change a compile's output
/// (docs/facts.md §4), plus those rustc itself reads. An explicit list: rustc inherits the whole
/// environment, and a `CARGO_` prefix rule would pull in `CARGO_TARGET_DIR`, `CARGO_HOME`,
/// `CARGO_MAKEFLAGS` and job counts, and break hits.
pub const ENV_ALLOWLIST: [&str; 11] = [
    "CARGO",
    "CARGO_CRATE_NAME",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_BIN_NAME",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
    "RUSTC_BOOTSTRAP",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
];

/// Allowlisted prefixes: every variable starting with one of these is included.
pub const ENV_ALLOWLIST_PREFIXES: [&str; 2] = ["CARGO_PKG_", "CARGO_BIN_EXE_"];

/// The allowlisted environment: fixed names (set or unset) then prefixed names, sorted.
pub fn allowlisted_env() -> Vec<(String, Option<OsString>)> {
    let mut env: Vec<(String, Option<OsString>)> = ENV_ALLOWLIST
        .iter()
        .map(|name| (name.to_string(), std::env::var_os(name)))
        .collect();
    let mut prefixed: Vec<(String, Option<OsString>)> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            ENV_ALLOWLIST_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
                .then_some((name, Some(value)))
        })
        .collect();
    prefixed.sort();
    env.extend(prefixed);
    env
}

/// Environment variables the linker (through the `cc` driver) reads, keyed for crates that link.
pub const LINKER_ENV: [&str; 5] = [
    "LIBRARY_PATH",
    "LD_RUN_PATH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "SDKROOT",
];

/// What identifies the linker of a crate that links.
#[derive(Debug, Clone)]
pub struct LinkerFacts {
    /// Content hash of the linker program (`cc` on PATH, or `-C linker`).
    pub program_hash: Key,
    pub env: Vec<(String, Option<OsString>)>,
}

impl LinkerFacts {
    pub fn new(program_hash: Key) -> Self {
        LinkerFacts {
            program_hash,
            env: LINKER_ENV
                .iter()
                .map(|name| (name.to_string(), std::env::var_os(name)))
                .collect(),
        }
    }
}

/// Everything the invocation key is made of, gathered by the wrapper.
#[derive(Debug, Clone)]
pub struct InvocationFacts<'a> {
    pub invocation: &'a Invocation,
    pub compiler_id: Key,
    /// The workspace wrapper's identity (clippy-driver) and its config, if one is in the chain.
    pub wrapper_id: Option<Key>,
    pub cwd: &'a Path,
    /// The unit's base dirs: the cwd, the input path, `--remap-path-prefix` values and env values
    /// are keyed normalized by them (none: as written).
    pub bases: &'a BaseDirs,
    /// Content hash of each `--extern` path, in argv order.
    pub extern_hashes: Vec<(String, Key)>,
    /// Content hash of each bundled static archive.
    pub static_lib_hashes: Vec<Key>,
    /// Content hash of a `--target` JSON file.
    pub target_json_hash: Option<Key>,
    pub env: Vec<(String, Option<OsString>)>,
    /// What `target-cpu=native` resolved to.
    pub native_cpu: Option<Vec<u8>>,
    /// The linker, for crates that link.
    pub linker: Option<LinkerFacts>,
}

/// The invocation key. Field order and tags are pinned by the golden test below.
pub fn invocation_key(facts: &InvocationFacts) -> Key {
    let mut key = KeyHasher::new("invocation", KEY_VERSION);
    key.field("compiler", &facts.compiler_id);
    key.opt_field("wrapper", facts.wrapper_id.as_ref().map(|id| id.as_slice()));
    let bases = facts.bases;
    for role in bases.roles() {
        key.str_field("base-dir", role);
    }
    let mut path_valued = false;
    for arg in &facts.invocation.key_args {
        if path_valued {
            key.field("arg", &bases.template(arg.as_bytes()));
        } else {
            key.str_field("arg", arg);
        }
        // The values that name paths and reach the output only as remapped names.
        path_valued = arg == "input" || arg == "--remap-path-prefix";
    }
    key.field("cwd", &bases.normalize(facts.cwd.as_os_str().as_bytes()));
    for (name, hash) in &facts.extern_hashes {
        key.str_field("extern", name);
        key.field("extern-hash", hash);
    }
    for hash in &facts.static_lib_hashes {
        key.field("static-lib", hash);
    }
    key.opt_field(
        "target-json",
        facts.target_json_hash.as_ref().map(|h| h.as_slice()),
    );
    env_fields(&mut key, &facts.env, bases);
    key.opt_field("native-cpu", facts.native_cpu.as_deref());
    match &facts.linker {
        Some(linker) => {
            key.field("linker", &linker.program_hash);
            for (name, value) in &linker.env {
                key.str_field("linker-env", name);
                key.opt_field(
                    "linker-env-value",
                    value.as_ref().map(|value| value.as_bytes()),
                );
            }
        }
        None => {
            key.opt_field("linker", None);
        }
    }
    key.finish()
}

/// Keys an environment, each variable as `env` then `env-value` (or `env-value:unset`), the
/// value templated by the unit's base dirs (rustc's and C/C++ keys alike).
pub fn env_fields(key: &mut KeyHasher, env: &[(String, Option<OsString>)], bases: &BaseDirs) {
    for (name, value) in env {
        key.str_field("env", name);
        let value = value.as_ref().map(|value| bases.template(value.as_bytes()));
        key.opt_field("env-value", value.as_deref());
    }
}

/// The result key of a candidate: inputs sorted by path, env-deps in dep-info order (sorted),
/// and for a path-bound candidate the looking-up unit's real base dirs (`verbatim_dirs`), so
/// that it is found only where its outputs' paths are right.
pub fn result_key(invocation_key: &Key, candidate: &Candidate, verbatim_dirs: &[u8]) -> Key {
    let Candidate {
        inputs,
        env_deps,
        path_bound,
        ..
    } = candidate;
    let mut sorted: Vec<&InputRecord> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut key = KeyHasher::new("result", KEY_VERSION);
    key.field("invocation", invocation_key);
    for input in sorted {
        key.field("input", &input.path);
        key.field("input-hash", &input.hash);
    }
    for env in env_deps {
        key.str_field("env-dep", &env.name);
        key.opt_field("env-dep-value", env.value.as_ref().map(String::as_bytes));
    }
    key.opt_field("path-bound", path_bound.as_ref().map(|_| verbatim_dirs));
    key.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rustc::classify;
    use crate::store::entry::EnvRecord;

    /// Golden key per key version. Changing what goes into a key changes these values: bump
    /// `KEY_VERSION`, add the new line, and document the change in store-format/README.md.
    const GOLDEN: &[(u32, &str, &str)] = &[
        (
            1,
            "a48d06a1f70191f25c1fc6f4bf2870cff3f5f317cd07c031a1488d637f86b891",
            "5f3d3cbe08ea4fc46be31cf2e7d76271e366d3d4581473cbf6161a373fb67e7f",
        ),
        (
            2,
            "d58d12eee2cbe367622cbf6e541842be126b5c871c5e32029f38ab8a0cfe8560",
            "605e05ee7ca939bc5c661ceecfa863815245146bced6cf0756644fe417633a35",
        ),
        (
            3,
            "cd2dfae8982cddaffce0b8cc804f372397ec82d461e694827c3604c87972c3c9",
            "fdafb9ed4dd6d221556c1dd7ed55153cdd8544749efec43ace8db94609936c67",
        ),
        (
            4,
            "1d1669ada42d6f7459cc2bbd14f9d27bfa9b99b45c13791ffd5ca140aadc9af3",
            "f9cac48ba3515f67a97db798b2276dac497216834fa9e1a1cae9963284f5f778",
        ),
    ];

    fn golden_keys() -> (String, String) {
        let args: Vec<OsString> = "--crate-name demo --edition=2024 src/lib.rs --crate-type lib \
            --emit=dep-info,metadata,link -C extra-filename=-abc --out-dir /o --cfg b --cfg a \
            --extern dep=/o/libdep.rmeta"
            .split_whitespace()
            .map(OsString::from)
            .collect();
        let invocation = classify(&args).unwrap();
        let bases = if KEY_VERSION >= 4 {
            BaseDirs::new(vec![
                (base_dirs::Role::Cwd, "/work/demo".into()),
                (base_dirs::Role::Target, "/o".into()),
            ])
            .unwrap()
        } else {
            BaseDirs::none()
        };
        let facts = InvocationFacts {
            invocation: &invocation,
            compiler_id: [1; 32],
            wrapper_id: None,
            cwd: Path::new("/work/demo"),
            bases: &bases,
            extern_hashes: vec![("dep".into(), [2; 32])],
            static_lib_hashes: vec![],
            target_json_hash: None,
            env: vec![
                ("CARGO_PKG_NAME".into(), Some("demo".into())),
                ("OUT_DIR".into(), None),
            ],
            native_cpu: None,
            linker: Some(LinkerFacts {
                program_hash: [5; 32],
                env: vec![("LIBRARY_PATH".into(), None)],
            }),
        };
        let invocation_key = invocation_key(&facts);
        let inputs = vec![
            InputRecord {
                path: b"src/lib.rs".to_vec(),
                hash: [3; 32],
            },
            InputRecord {
                path: b"data/a.txt".to_vec(),
                hash: [4; 32],
            },
        ];
        let env_deps = vec![EnvRecord {
            name: "GREETING".into(),
            value: Some("hi".into()),
        }];
        let candidate = Candidate {
            inputs,
            env_deps,
            result_key: [0; 32],
            path_bound: None,
        };
        let result = result_key(&invocation_key, &candidate, b"");
        (crate::hash::hex(&invocation_key), crate::hash::hex(&result))
    }

    #[test]
    fn key_derivation_is_pinned_to_the_key_version() {
        let (invocation, result) = golden_keys();
        let golden = GOLDEN
            .iter()
            .find(|(version, _, _)| *version == KEY_VERSION)
            .expect("every key version has a golden line");
        assert_eq!(
            (invocation.as_str(), result.as_str()),
            (golden.1, golden.2),
            "the key derivation changed: bump KEY_VERSION and add a golden line"
        );
    }

    #[test]
    fn result_key_ignores_input_order() {
        let a = InputRecord {
            path: b"a".to_vec(),
            hash: [1; 32],
        };
        let b = InputRecord {
            path: b"b".to_vec(),
            hash: [2; 32],
        };
        let key = [9; 32];
        let candidate = |inputs: Vec<InputRecord>| Candidate {
            inputs,
            env_deps: vec![],
            result_key: [0; 32],
            path_bound: None,
        };
        assert_eq!(
            result_key(&key, &candidate(vec![a.clone(), b.clone()]), b""),
            result_key(&key, &candidate(vec![b, a]), b"")
        );
    }

    #[test]
    fn a_path_bound_candidate_is_found_only_with_the_same_dirs() {
        let key = [9; 32];
        let mut candidate = Candidate {
            inputs: vec![],
            env_deps: vec![],
            result_key: [0; 32],
            path_bound: None,
        };
        assert_eq!(
            result_key(&key, &candidate, b"/one"),
            result_key(&key, &candidate, b"/two")
        );
        candidate.path_bound = Some("output_holds_path".into());
        assert_ne!(
            result_key(&key, &candidate, b"/one"),
            result_key(&key, &candidate, b"/two")
        );
    }
}
