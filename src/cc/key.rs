//! The invocation key of a C or C++ compile (store-format/README.md lists every field).
//!
//! It covers the compiler's identity, the language, the arguments without output names, the
//! cwd (absolute paths end up in debug info and `__FILE__`), the source's content, the
//! environment variables the driver and preprocessor read ([`CC_ENV`]), and the native CPU
//! flags resolved. Headers are not in it: they are the manifest candidates' inputs, taken from
//! the compiler's own full dep file, exactly as rustc's sources are.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::args::CcInvocation;
use crate::hash::{Key, KeyHasher};
use crate::key::BaseDirs;
use crate::store::layout::KEY_VERSION;

/// Environment variables that change what gcc or clang produce: include search paths, the
/// time macros' and debug info's clock, the driver's program search, the locale (gcc reads
/// the input charset and the diagnostics' language from it), and clang's option override.
pub const CC_ENV: [&str; 15] = [
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "OBJCPLUS_INCLUDE_PATH",
    "SOURCE_DATE_EPOCH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "GCC_COMPARE_DEBUG",
    "CCC_OVERRIDE_OPTIONS",
    "SDKROOT",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
];

/// [`CC_ENV`] as it is now: each name with its value or `None` when unset.
pub fn cc_env() -> Vec<(String, Option<OsString>)> {
    CC_ENV
        .iter()
        .map(|name| (name.to_string(), std::env::var_os(name)))
        .collect()
}

/// Everything the key of one compile is made of, gathered by the wrapper.
#[derive(Debug, Clone)]
pub struct CcKeyFacts<'a> {
    pub invocation: &'a CcInvocation,
    /// The compile's base dirs (`crate::key::base_dirs`): the arguments (every file they name is
    /// in the dep file, checked by content), the cwd and env values are keyed templated.
    pub bases: &'a BaseDirs,
    pub compiler_id: Key,
    pub cwd: &'a Path,
    pub source_hash: Key,
    pub env: Vec<(String, Option<OsString>)>,
    /// What the native CPU flags resolved to, if any were given.
    pub native: Option<Vec<u8>>,
}

/// The invocation key. Field order and tags are pinned by the golden test below.
pub fn invocation_key(facts: &CcKeyFacts) -> Key {
    let mut key = KeyHasher::new("cc-invocation", KEY_VERSION);
    key.field("compiler", &facts.compiler_id);
    key.str_field("language", facts.invocation.language.name());
    let bases = facts.bases;
    for role in bases.roles() {
        key.str_field("base-dir", role);
    }
    for arg in &facts.invocation.key_args {
        key.field("arg", &bases.template(arg.as_bytes()));
    }
    key.field("cwd", &bases.normalize(facts.cwd.as_os_str().as_bytes()));
    key.field("source-hash", &facts.source_hash);
    crate::key::env_fields(&mut key, &facts.env, bases);
    key.opt_field("native-cpu", facts.native.as_deref());
    key.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc::args::classify;
    use crate::hash::hex;

    /// Changing what goes into the key changes this value: bump `KEY_VERSION` (store-format).
    const GOLDEN: (u32, &str) = (
        4,
        "21251c877b1a7a37762b029b20a4f3893d35d2efa6eb6b0389c6a498144ec55d",
    );

    #[test]
    fn key_derivation_is_pinned() {
        let args: Vec<OsString> = "-O2 -Iinc -c src/a.c -o /o/a.o -MD -MF /o/a.d"
            .split_whitespace()
            .map(OsString::from)
            .collect();
        let invocation = classify(&args).unwrap();
        let bases = BaseDirs::new(vec![(
            crate::key::base_dirs::Role::Cwd,
            "/work/demo".into(),
        )])
        .unwrap();
        let facts = CcKeyFacts {
            invocation: &invocation,
            bases: &bases,
            compiler_id: [1; 32],
            cwd: Path::new("/work/demo"),
            source_hash: [2; 32],
            env: vec![("CPATH".into(), None), ("LANG".into(), Some("C".into()))],
            native: None,
        };
        assert_eq!(
            GOLDEN.0, KEY_VERSION,
            "add a golden value for the new key version"
        );
        assert_eq!(hex(&invocation_key(&facts)), GOLDEN.1);
    }
}
