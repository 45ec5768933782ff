//! Names the files a cacheable rustc invocation writes into its out dir.
//!
//! Derived from the crate name, `-C extra-filename`, the crate types and `--emit`; never found by
//! diffing the out dir, where cargo runs many rustc processes at once (docs/design.md §4).

use super::Invocation;
use crate::store::entry::OutputKind;

/// One expected output: its kind and file name in the out dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedOutput {
    pub kind: OutputKind,
    pub file_name: String,
}

/// The outputs of an invocation, in a fixed order: one per crate type for `link`, then the
/// rmeta, then the dep-info. File names are those rustc gives on Linux targets (the parser
/// passes other targets' linked crate types through).
pub fn expected_outputs(invocation: &Invocation) -> Vec<ExpectedOutput> {
    let stem = format!("{}{}", invocation.crate_name, invocation.extra_filename);
    let mut outputs: Vec<ExpectedOutput> = Vec::new();
    if invocation.emits("link") {
        for kind in &invocation.crate_types {
            let (kind, file_name) = match kind.as_str() {
                "lib" | "rlib" => (OutputKind::Rlib, format!("lib{stem}.rlib")),
                "bin" => (OutputKind::Linked, stem.clone()),
                "proc-macro" | "dylib" | "cdylib" => (OutputKind::Linked, format!("lib{stem}.so")),
                "staticlib" => (OutputKind::Linked, format!("lib{stem}.a")),
                _ => continue,
            };
            if !outputs.iter().any(|output| output.file_name == file_name) {
                outputs.push(ExpectedOutput { kind, file_name });
            }
        }
    }
    if invocation.emits("metadata") {
        outputs.push(ExpectedOutput {
            kind: OutputKind::Rmeta,
            file_name: format!("lib{stem}.rmeta"),
        });
    }
    if invocation.emits("dep-info") {
        outputs.push(ExpectedOutput {
            kind: OutputKind::DepInfo,
            file_name: format!("{stem}.d"),
        });
    }
    outputs
}

/// The dep-info file name rustc writes for this invocation.
pub fn dep_info_name(invocation: &Invocation) -> String {
    format!("{}{}.d", invocation.crate_name, invocation.extra_filename)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rustc::classify;
    use std::ffi::OsString;

    #[test]
    fn names_lib_outputs() {
        let args: Vec<OsString> = "--crate-name demo src/lib.rs --crate-type lib \
            --emit=dep-info,metadata,link -C extra-filename=-abc --out-dir /o"
            .split_whitespace()
            .map(OsString::from)
            .collect();
        let names: Vec<String> = expected_outputs(&classify(&args).unwrap())
            .into_iter()
            .map(|output| output.file_name)
            .collect();
        assert_eq!(
            names,
            vec!["libdemo-abc.rlib", "libdemo-abc.rmeta", "demo-abc.d"]
        );
    }
}
