//! The cacheability rules of a rustc invocation, one named function each, so each can be tested
//! alone.
//!
//! - Token rules ([`TOKEN_RULES`]) judge one option at a time; [`check_tokens`] runs them over the
//!   argv in order, so the first offending argument names the reason.
//! - Invocation rules judge what the tokens add up to (inputs, crate types, target); the builder
//!   in `args.rs` calls them in a fixed order once every token has passed.

use std::path::PathBuf;

use super::Extern;
use super::tokens::Token;
use crate::rustc::Passthrough;

/// Crate types cached by this version. Those that run the linker are cached with the linker's
/// inputs, as listed by the linker itself (`--dependency-file`).
const CACHED_CRATE_TYPES: [&str; 7] = [
    "lib",
    "rlib",
    "bin",
    "proc-macro",
    "dylib",
    "cdylib",
    "staticlib",
];

/// Crate types whose file names depend on the target (`.so`, no `.exe`): derived for Linux only.
const TARGET_NAMED_CRATE_TYPES: [&str; 5] = ["bin", "proc-macro", "dylib", "cdylib", "staticlib"];

/// Emit kinds whose output names are derived here.
const CACHED_EMITS: [&str; 3] = ["dep-info", "metadata", "link"];

type TokenRule = fn(&Token) -> Result<(), Passthrough>;

/// Every token rule. Each matches a disjoint set of tokens, so their order here does not matter.
const TOKEN_RULES: [TokenRule; 7] = [
    check_emit,
    reject_output_file,
    reject_custom_sysroot,
    reject_save_temps,
    reject_split_debuginfo,
    reject_profile,
    reject_linker_response_file,
];

/// Runs every token rule over the tokens in argv order: the first token that breaks one gives
/// the reason.
pub(super) fn check_tokens(tokens: &[Token]) -> Result<(), Passthrough> {
    tokens
        .iter()
        .try_for_each(|token| TOKEN_RULES.iter().try_for_each(|rule| rule(token)))
}

/// `-C key[=value]` split at the first `=`.
pub(super) fn split_codegen(value: &str) -> (&str, Option<&str>) {
    match value.split_once('=') {
        Some((key, setting)) => (key, Some(setting)),
        None => (value, None),
    }
}

/// The setting of a `-C key` token (`Some(None)` for a bare `-C key`), if the token is one.
fn codegen_setting<'a>(token: &'a Token, key: &str) -> Option<Option<&'a str>> {
    match token {
        Token::Codegen(value) => {
            let (name, setting) = split_codegen(value);
            (name == key).then_some(setting)
        }
        _ => None,
    }
}

/// `--emit`: only dep-info, metadata and link, at the paths rustc derives (no `kind=path`).
/// Kinds are checked in the order given.
pub(super) fn check_emit(token: &Token) -> Result<(), Passthrough> {
    let Token::Emit(value) = token else {
        return Ok(());
    };
    for emit in value.split(',') {
        if emit.contains('=') {
            return Err(Passthrough::EmitPath);
        }
        if !CACHED_EMITS.contains(&emit) {
            return Err(Passthrough::EmitKind(emit.to_string()));
        }
    }
    Ok(())
}

/// `-o`: the caller names the output, so rustc's own names cannot be derived.
pub(super) fn reject_output_file(token: &Token) -> Result<(), Passthrough> {
    match token {
        Token::Output(_) => Err(Passthrough::OutputFile),
        _ => Ok(()),
    }
}

/// `--sysroot`: a sysroot other than the one the compiler's identity hashes.
pub(super) fn reject_custom_sysroot(token: &Token) -> Result<(), Passthrough> {
    match token {
        Token::Sysroot(_) => Err(Passthrough::CustomSysroot),
        _ => Ok(()),
    }
}

/// `-C save-temps` (unless `=no`): intermediate files rcache would not restore.
pub(super) fn reject_save_temps(token: &Token) -> Result<(), Passthrough> {
    match codegen_setting(token, "save-temps") {
        Some(setting) if setting != Some("no") => Err(Passthrough::SaveTemps),
        _ => Ok(()),
    }
}

/// `-C split-debuginfo` (unless `=off`): `.dwo`/`.dwp` files beside the outputs.
pub(super) fn reject_split_debuginfo(token: &Token) -> Result<(), Passthrough> {
    match codegen_setting(token, "split-debuginfo") {
        Some(setting) if setting != Some("off") => Err(Passthrough::SplitDebuginfo),
        _ => Ok(()),
    }
}

/// `-C profile-use`, `profile-generate`, `profile-sample-use`: profile files that are not keyed,
/// or profile data written at run time.
pub(super) fn reject_profile(token: &Token) -> Result<(), Passthrough> {
    let profiled = ["profile-use", "profile-generate", "profile-sample-use"]
        .iter()
        .any(|key| codegen_setting(token, key).is_some());
    if profiled {
        return Err(Passthrough::Profile);
    }
    Ok(())
}

/// `-C link-arg(s)` handing the linker driver an `@file` (directly, or through `-Wl,@file` /
/// `-Xlinker @file`): the driver reads it, and the linker's dependency file does not list it.
pub(super) fn reject_linker_response_file(token: &Token) -> Result<(), Passthrough> {
    let setting =
        codegen_setting(token, "link-arg").or_else(|| codegen_setting(token, "link-args"));
    if setting.flatten().is_some_and(names_response_file) {
        return Err(Passthrough::LinkerResponseFile);
    }
    Ok(())
}

/// True if a `-C link-arg(s)` value names an `@file` in one of its words.
fn names_response_file(value: &str) -> bool {
    value
        .split([' ', ','])
        .any(|word| word.starts_with('@') && word.len() > 1)
}

/// A probe (`-vV`, `--help`, `--explain`, `--print` with no input) asks rustc a question and
/// compiles nothing; `--print` beside a compile prints to stdout what is not replayed.
pub(super) fn reject_probe(probe: bool, print: bool, inputs: &[String]) -> Result<(), Passthrough> {
    if probe || (print && (inputs.is_empty() || inputs == ["-"])) {
        return Err(Passthrough::Probe);
    }
    if print {
        return Err(Passthrough::PrintRequest);
    }
    Ok(())
}

/// Exactly one input, from a file (stdin is not hashed).
pub(super) fn single_input(inputs: &[String]) -> Result<PathBuf, Passthrough> {
    match inputs {
        [] => Err(Passthrough::NoInput),
        [single] if single == "-" => Err(Passthrough::StdinInput),
        [single] => Ok(PathBuf::from(single)),
        _ => Err(Passthrough::MultipleInputs),
    }
}

/// `--crate-name`: the outputs are named after it.
pub(super) fn require_crate_name(crate_name: Option<String>) -> Result<String, Passthrough> {
    crate_name.ok_or(Passthrough::NoCrateName)
}

/// The crate types, each one cached by this version. `--test` with none given builds a `bin`.
pub(super) fn check_crate_types(
    mut crate_types: Vec<String>,
    test_harness: bool,
) -> Result<Vec<String>, Passthrough> {
    if test_harness && crate_types.is_empty() {
        crate_types.push("bin".to_string());
    }
    if crate_types.is_empty() {
        return Err(Passthrough::NoCrateType);
    }
    if let Some(other) = crate_types
        .iter()
        .find(|kind| !CACHED_CRATE_TYPES.contains(&kind.as_str()))
    {
        return Err(Passthrough::CrateType(other.clone()));
    }
    Ok(crate_types)
}

/// Linked and archive crate types are named for Linux targets only (no target means the host,
/// which rcache supports on Linux); a target spec file (`.json`) could name them otherwise.
pub(super) fn check_target_naming(
    target: Option<&str>,
    crate_types: &[String],
) -> Result<(), Passthrough> {
    let target_is_linux =
        target.is_none_or(|target| target.contains("-linux-") && !target.ends_with(".json"));
    if !target_is_linux
        && crate_types
            .iter()
            .any(|kind| TARGET_NAMED_CRATE_TYPES.contains(&kind.as_str()))
    {
        return Err(Passthrough::TargetNaming);
    }
    Ok(())
}

/// A staticlib bundles the rlibs of its dependencies and of theirs, which no argument names.
pub(super) fn reject_staticlib_dependencies(
    crate_types: &[String],
    externs: &[Extern],
) -> Result<(), Passthrough> {
    if crate_types.iter().any(|kind| kind == "staticlib")
        && externs.iter().any(|ext| ext.path.is_some())
    {
        return Err(Passthrough::StaticlibDependencies);
    }
    Ok(())
}

/// `--out-dir`: where rustc writes the outputs whose names are derived here.
pub(super) fn require_out_dir(out_dir: Option<PathBuf>) -> Result<PathBuf, Passthrough> {
    out_dir.ok_or(Passthrough::NoOutDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codegen(value: &str) -> Token {
        Token::Codegen(value.to_string())
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn emit_takes_cached_kinds_at_derived_paths() {
        assert_eq!(
            check_emit(&Token::Emit("dep-info,metadata,link".into())),
            Ok(())
        );
        assert_eq!(
            check_emit(&Token::Emit("link=out.rlib".into())),
            Err(Passthrough::EmitPath)
        );
        assert_eq!(
            check_emit(&Token::Emit("asm,link=x".into())),
            Err(Passthrough::EmitKind("asm".into())),
            "kinds are judged in the order given"
        );
        assert_eq!(
            check_emit(&Token::Emit("link,".into())),
            Err(Passthrough::EmitKind(String::new()))
        );
        assert_eq!(check_emit(&Token::Json("asm".into())), Ok(()));
    }

    #[test]
    fn output_file_and_sysroot_are_refused() {
        assert_eq!(
            reject_output_file(&Token::Output("a".into())),
            Err(Passthrough::OutputFile)
        );
        assert_eq!(reject_output_file(&Token::OutDir("a".into())), Ok(()));
        assert_eq!(
            reject_custom_sysroot(&Token::Sysroot("/s".into())),
            Err(Passthrough::CustomSysroot)
        );
        assert_eq!(reject_custom_sysroot(&Token::Target("/s".into())), Ok(()));
    }

    #[test]
    fn save_temps_and_split_debuginfo_pass_only_when_off() {
        assert_eq!(
            reject_save_temps(&codegen("save-temps")),
            Err(Passthrough::SaveTemps)
        );
        assert_eq!(
            reject_save_temps(&codegen("save-temps=yes")),
            Err(Passthrough::SaveTemps)
        );
        assert_eq!(reject_save_temps(&codegen("save-temps=no")), Ok(()));
        assert_eq!(
            reject_split_debuginfo(&codegen("split-debuginfo=packed")),
            Err(Passthrough::SplitDebuginfo)
        );
        assert_eq!(
            reject_split_debuginfo(&codegen("split-debuginfo")),
            Err(Passthrough::SplitDebuginfo)
        );
        assert_eq!(
            reject_split_debuginfo(&codegen("split-debuginfo=off")),
            Ok(())
        );
    }

    #[test]
    fn profile_options_are_refused() {
        for value in [
            "profile-use=/p.profdata",
            "profile-generate",
            "profile-sample-use=x",
        ] {
            assert_eq!(
                reject_profile(&codegen(value)),
                Err(Passthrough::Profile),
                "{value}"
            );
        }
        assert_eq!(reject_profile(&codegen("opt-level=3")), Ok(()));
    }

    #[test]
    fn linker_response_files_are_refused() {
        for value in [
            "link-arg=@/tmp/args",
            "link-arg=-Wl,@args",
            "link-args=-Xlinker @args",
        ] {
            assert_eq!(
                reject_linker_response_file(&codegen(value)),
                Err(Passthrough::LinkerResponseFile),
                "{value}"
            );
        }
        for value in [
            "link-arg=-Wl,--as-needed",
            "link-arg=@",
            "link-arg",
            "linker=@cc",
        ] {
            assert_eq!(
                reject_linker_response_file(&codegen(value)),
                Ok(()),
                "{value}"
            );
        }
    }

    #[test]
    fn token_rules_report_the_first_offending_argument() {
        let tokens = [
            codegen("opt-level=1"),
            codegen("save-temps"),
            codegen("incremental=/i"),
            Token::Output("x".into()),
        ];
        assert_eq!(check_tokens(&tokens), Err(Passthrough::SaveTemps));
        assert_eq!(check_tokens(&tokens[2..]), Err(Passthrough::OutputFile));
        assert_eq!(check_tokens(&tokens[..1]), Ok(()));
    }

    #[test]
    fn probes_and_print_requests() {
        assert_eq!(
            reject_probe(true, false, &strings(&["a.rs"])),
            Err(Passthrough::Probe)
        );
        assert_eq!(reject_probe(false, true, &[]), Err(Passthrough::Probe));
        assert_eq!(
            reject_probe(false, true, &strings(&["-"])),
            Err(Passthrough::Probe)
        );
        assert_eq!(
            reject_probe(false, true, &strings(&["a.rs"])),
            Err(Passthrough::PrintRequest)
        );
        assert_eq!(reject_probe(false, false, &[]), Ok(()));
    }

    #[test]
    fn one_input_from_a_file() {
        assert_eq!(single_input(&[]), Err(Passthrough::NoInput));
        assert_eq!(single_input(&strings(&["-"])), Err(Passthrough::StdinInput));
        assert_eq!(
            single_input(&strings(&["a.rs", "b.rs"])),
            Err(Passthrough::MultipleInputs)
        );
        assert_eq!(single_input(&strings(&["a.rs"])), Ok(PathBuf::from("a.rs")));
    }

    #[test]
    fn crate_name_and_out_dir_are_required() {
        assert_eq!(require_crate_name(None), Err(Passthrough::NoCrateName));
        assert_eq!(require_crate_name(Some("c".into())), Ok("c".into()));
        assert_eq!(require_out_dir(None), Err(Passthrough::NoOutDir));
        assert_eq!(require_out_dir(Some("/o".into())), Ok(PathBuf::from("/o")));
    }

    #[test]
    fn crate_types_are_cached_kinds() {
        assert_eq!(
            check_crate_types(vec![], false),
            Err(Passthrough::NoCrateType)
        );
        assert_eq!(check_crate_types(vec![], true), Ok(strings(&["bin"])));
        assert_eq!(
            check_crate_types(strings(&["lib"]), true),
            Ok(strings(&["lib"])),
            "--test adds no type when one is given"
        );
        assert_eq!(
            check_crate_types(strings(&["rlib", "sdylib"]), false),
            Err(Passthrough::CrateType("sdylib".into()))
        );
        for kind in CACHED_CRATE_TYPES {
            assert!(check_crate_types(strings(&[kind]), false).is_ok(), "{kind}");
        }
    }

    #[test]
    fn linked_types_need_a_linux_target() {
        let bin = strings(&["bin"]);
        let rlib = strings(&["rlib"]);
        assert_eq!(check_target_naming(None, &bin), Ok(()));
        assert_eq!(
            check_target_naming(Some("x86_64-unknown-linux-gnu"), &bin),
            Ok(())
        );
        assert_eq!(
            check_target_naming(Some("x86_64-pc-windows-msvc"), &bin),
            Err(Passthrough::TargetNaming)
        );
        assert_eq!(
            check_target_naming(Some("/t/my-linux-spec.json"), &bin),
            Err(Passthrough::TargetNaming)
        );
        assert_eq!(
            check_target_naming(Some("x86_64-pc-windows-msvc"), &rlib),
            Ok(())
        );
    }

    #[test]
    fn staticlib_with_dependencies_is_refused() {
        let with_path = [Extern {
            name: "dep".into(),
            path: Some("/d/libdep.rlib".into()),
        }];
        let name_only = [Extern {
            name: "proc_macro".into(),
            path: None,
        }];
        let staticlib = strings(&["staticlib"]);
        assert_eq!(
            reject_staticlib_dependencies(&staticlib, &with_path),
            Err(Passthrough::StaticlibDependencies)
        );
        assert_eq!(
            reject_staticlib_dependencies(&staticlib, &name_only),
            Ok(())
        );
        assert_eq!(
            reject_staticlib_dependencies(&strings(&["rlib"]), &with_path),
            Ok(())
        );
    }
}
