//! The cacheability rules of a gcc/clang call, one named function each, so each can be tested
//! alone. `classify` in `args.rs` runs them in this order:
//! 1. [`reject_probe`] on the raw argv (a probe anywhere, even as a value, is a question);
//! 2. [`recognise_link`]: a call that does not stop before the link is a link, whatever else
//!    its arguments say, since every later rule is about caching a compile;
//! 3. the token rules ([`check_tokens`]), over the tokens in argv order, so the first offending
//!    argument names the reason;
//! 4. the compile rules on what the tokens add up to: [`check_mode`], [`single_source`],
//!    [`language_of`], [`object_path`].

use std::path::{Path, PathBuf};

use super::tokens::{CcToken, EXTRA_OUTPUT_PREFIXES, UNLISTED_INPUT_PREFIXES, is_profile};
use crate::cc::Language;
use crate::cc::passthrough::CcPassthrough;

/// `-v`, `--version`, `-print-*`, `-dump*`, `--help`, `-###`, `-Q`: a question to the driver.
fn is_probe(arg: &str) -> bool {
    matches!(
        arg,
        "-v" | "-###"
            | "--version"
            | "-dumpversion"
            | "-dumpfullversion"
            | "-dumpmachine"
            | "-dumpspecs"
            | "--help"
            | "-Q"
    ) || arg.starts_with("-print-")
        || arg.starts_with("--print-")
        || arg.starts_with("--help=")
}

/// A probe anywhere in the argv: the call asks the driver a question and compiles nothing.
pub(super) fn reject_probe(args: &[&str]) -> Result<(), CcPassthrough> {
    if args.iter().any(|arg| is_probe(arg)) {
        return Err(CcPassthrough::Probe);
    }
    Ok(())
}

/// Options after which the driver stops before the link (gcc's long spellings and clang's
/// modes included), or that speak to the compiler proper (`-Xclang`): [`recognise_link`]
/// leaves a call with any of them to the rules that judge compiles.
const NOT_A_LINK: [&str; 16] = [
    "-c",
    "-S",
    "-E",
    "-M",
    "-MM",
    "--compile",
    "--assemble",
    "--preprocess",
    "-fsyntax-only",
    "--precompile",
    "--analyze",
    "-emit-ast",
    "-emit-llvm",
    "-emit-pch",
    "-cc1",
    "-Xclang",
];

/// A link: no option that stops the driver before the link, and no `@file` that could hold
/// one. Links pass through as `cc_linking` whatever their options, even those rcache does not
/// know as compile options (`-nodefaultlibs`, `-B<dir>` in rustc's links): the rules after this
/// one judge compiles. A token of the link that is an option's value is not mistaken for a
/// mode (`-Xlinker -c` links).
pub(super) fn recognise_link(tokens: &[CcToken]) -> Result<(), CcPassthrough> {
    let not_a_link = tokens.iter().any(|token| match token {
        CcToken::ResponseFile(_) => true,
        CcToken::Flag(arg) | CcToken::Unknown(arg) => NOT_A_LINK.contains(arg),
        _ => false,
    });
    if not_a_link {
        return Ok(());
    }
    Err(CcPassthrough::Linking)
}

type TokenRule = fn(&CcToken) -> Result<(), CcPassthrough>;

/// Every token rule, in the order they were first written: each matches a disjoint set of
/// tokens, so the order decides nothing.
const TOKEN_RULES: [TokenRule; 11] = [
    reject_response_file,
    reject_stdin,
    reject_save_temps,
    reject_precompiled_header_flags,
    reject_profile,
    reject_plugin,
    reject_extra_output,
    reject_unlisted_input,
    reject_preprocessor_dep_file,
    reject_unknown,
    reject_missing_value,
];

/// Runs every token rule over the tokens in argv order: the first token that breaks one gives
/// the reason.
pub(super) fn check_tokens(tokens: &[CcToken]) -> Result<(), CcPassthrough> {
    tokens
        .iter()
        .try_for_each(|token| TOKEN_RULES.iter().try_for_each(|rule| rule(token)))
}

/// The text of a [`CcToken::Flag`].
fn flag<'a>(token: &CcToken<'a>) -> Option<&'a str> {
    match token {
        CcToken::Flag(arg) => Some(arg),
        _ => None,
    }
}

/// `@file`: arguments rcache cannot see without reading the file.
pub(super) fn reject_response_file(token: &CcToken) -> Result<(), CcPassthrough> {
    match token {
        CcToken::ResponseFile(_) => Err(CcPassthrough::ResponseFile),
        _ => Ok(()),
    }
}

/// `-`: a source on stdin is not hashed.
pub(super) fn reject_stdin(token: &CcToken) -> Result<(), CcPassthrough> {
    match token {
        CcToken::Stdin => Err(CcPassthrough::StdinInput),
        _ => Ok(()),
    }
}

/// `-save-temps[=...]`: intermediate files rcache would not restore.
pub(super) fn reject_save_temps(token: &CcToken) -> Result<(), CcPassthrough> {
    match flag(token) {
        Some("-save-temps" | "--save-temps") => Err(CcPassthrough::SaveTemps),
        Some(arg) if arg.starts_with("-save-temps=") => Err(CcPassthrough::SaveTemps),
        _ => Ok(()),
    }
}

/// `-include-pch`, `-emit-pch`, `-fpch-*`: precompiled headers.
pub(super) fn reject_precompiled_header_flags(token: &CcToken) -> Result<(), CcPassthrough> {
    match flag(token) {
        Some("-include-pch" | "-emit-pch") => Err(CcPassthrough::PrecompiledHeader),
        Some(arg) if arg.starts_with("-fpch") => Err(CcPassthrough::PrecompiledHeader),
        _ => Ok(()),
    }
}

/// `-fprofile-*`, `--coverage` and kin: profile files read or written at run time.
pub(super) fn reject_profile(token: &CcToken) -> Result<(), CcPassthrough> {
    match flag(token) {
        Some(arg) if is_profile(arg) => Err(CcPassthrough::Profile),
        _ => Ok(()),
    }
}

/// `-fplugin=`: the plugin's content is not keyed.
pub(super) fn reject_plugin(token: &CcToken) -> Result<(), CcPassthrough> {
    match flag(token) {
        Some(arg) if arg.starts_with("-fplugin") => Err(CcPassthrough::Plugin),
        _ => Ok(()),
    }
}

/// `-fdump-*`, `-fstack-usage`, `-ftime-trace`...: files rcache would not restore.
pub(super) fn reject_extra_output(token: &CcToken) -> Result<(), CcPassthrough> {
    match flag(token) {
        Some(arg) if EXTRA_OUTPUT_PREFIXES.iter().any(|p| arg.starts_with(p)) => {
            Err(CcPassthrough::ExtraOutput)
        }
        _ => Ok(()),
    }
}

/// `-fsanitize-ignorelist=` and kin name an input file the dep file does not list: passed
/// through as an unknown argument rather than keyed by the file's name alone.
pub(super) fn reject_unlisted_input(token: &CcToken) -> Result<(), CcPassthrough> {
    match flag(token) {
        Some(arg) if UNLISTED_INPUT_PREFIXES.iter().any(|p| arg.starts_with(p)) => {
            Err(CcPassthrough::UnknownArgument(arg.to_string()))
        }
        _ => Ok(()),
    }
}

/// `-Wp,-MD,file` asks the preprocessor for a dep file no driver option names.
pub(super) fn reject_preprocessor_dep_file(token: &CcToken) -> Result<(), CcPassthrough> {
    match flag(token) {
        Some(arg)
            if arg.starts_with("-Wp,")
                && arg.split(',').skip(1).any(|part| part.starts_with("-M")) =>
        {
            Err(CcPassthrough::UnknownArgument(arg.to_string()))
        }
        _ => Ok(()),
    }
}

/// An option rcache does not know might name an input or an output.
pub(super) fn reject_unknown(token: &CcToken) -> Result<(), CcPassthrough> {
    match token {
        CcToken::Unknown(arg) => Err(CcPassthrough::UnknownArgument(arg.to_string())),
        _ => Ok(()),
    }
}

/// An option at the end of the argv without its value.
pub(super) fn reject_missing_value(token: &CcToken) -> Result<(), CcPassthrough> {
    match token {
        CcToken::MissingValue(option) => Err(CcPassthrough::MissingValue(option.to_string())),
        _ => Ok(()),
    }
}

/// Only `-c` is cached: `-E`, `-M`/`-MM` and `-S` write something else than an object, and a
/// call with none of them links.
pub(super) fn check_mode(tokens: &[CcToken]) -> Result<(), CcPassthrough> {
    let has = |names: &[&str]| {
        tokens
            .iter()
            .any(|token| flag(token).is_some_and(|arg| names.contains(&arg)))
    };
    if has(&["-E"]) {
        return Err(CcPassthrough::Preprocess);
    }
    if has(&["-M", "-MM"]) {
        return Err(CcPassthrough::DependencyOnly);
    }
    if has(&["-S"]) {
        return Err(CcPassthrough::AssemblyOutput);
    }
    if !has(&["-c"]) {
        return Err(CcPassthrough::Linking);
    }
    Ok(())
}

/// Exactly one source, with the `-x` language in force where it appeared.
pub(super) fn single_source<'a>(
    sources: &[(&'a str, Option<&'a str>)],
) -> Result<(&'a str, Option<&'a str>), CcPassthrough> {
    match sources {
        [] => Err(CcPassthrough::NoSource),
        [one] => Ok(*one),
        _ => Err(CcPassthrough::MultipleSources),
    }
}

/// The language of a source: `-x` if given (and not `none`), else its extension. Headers are
/// precompiled-header builds; languages whose compile writes no dep file are not cached.
pub(super) fn language_of(source: &str, x: Option<&str>) -> Result<Language, CcPassthrough> {
    let unsupported = |what: &str| Err(CcPassthrough::UnsupportedLanguage(what.to_string()));
    if let Some(x) = x.filter(|x| *x != "none") {
        return match x {
            "c" => Ok(Language::C),
            "c++" => Ok(Language::Cxx),
            "objective-c" => Ok(Language::ObjC),
            "objective-c++" => Ok(Language::ObjCxx),
            "assembler-with-cpp" => Ok(Language::Asm),
            header if header.ends_with("-header") => Err(CcPassthrough::PrecompiledHeader),
            other => unsupported(other),
        };
    }
    let extension = Path::new(source)
        .extension()
        .and_then(|ext| ext.to_str())
        .unwrap_or("");
    match extension {
        "c" => Ok(Language::C),
        "cc" | "cpp" | "cxx" | "c++" | "cp" | "CPP" | "C" => Ok(Language::Cxx),
        "m" => Ok(Language::ObjC),
        "mm" | "M" => Ok(Language::ObjCxx),
        "S" | "sx" => Ok(Language::Asm),
        "h" | "hh" | "hpp" | "hxx" | "H" | "h++" => Err(CcPassthrough::PrecompiledHeader),
        other => unsupported(other),
    }
}

/// The object: `-o` (not stdout), or the source's stem with `.o` in the cwd.
pub(super) fn object_path(output: Option<&str>, source: &str) -> Result<PathBuf, CcPassthrough> {
    match output {
        Some("-") => Err(CcPassthrough::OutputToStdout),
        Some(path) => Ok(PathBuf::from(path)),
        None => Ok(
            PathBuf::from(Path::new(source).file_stem().unwrap_or_default()).with_extension("o"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<(), CcPassthrough>) -> String {
        result.map_or_else(|reason| reason.to_string(), |()| "ok".to_string())
    }

    #[test]
    fn probes_anywhere_in_the_argv() {
        assert_eq!(
            reject_probe(&["-c", "x.c", "-v"]),
            Err(CcPassthrough::Probe)
        );
        assert_eq!(
            reject_probe(&["-print-file-name=libc.a"]),
            Err(CcPassthrough::Probe)
        );
        assert_eq!(
            reject_probe(&["-o", "--version"]),
            Err(CcPassthrough::Probe)
        );
        assert_eq!(reject_probe(&["-c", "x.c", "-vv"]), Ok(()));
    }

    fn tokens(line: &str) -> Vec<CcToken<'_>> {
        let args: Vec<&str> = line.split_whitespace().collect();
        super::super::tokens::tokenize(&args)
    }

    #[test]
    fn a_call_that_does_not_stop_before_the_link_is_a_link() {
        for line in [
            "-m64 a.o b.o -Wl,--as-needed x.rlib -lc -L /r -B/tc/gcc-ld -fuse-ld=lld -o app -pie \
             -nodefaultlibs",
            "x.o -o app",
            // Compiling and linking in one call links, and was passed through as a link before.
            "main.c -o app",
            "a.o -nostartfiles -T link.x -save-temps -o app",
            "a.o -Xlinker -c -o app",
        ] {
            assert_eq!(
                recognise_link(&tokens(line)),
                Err(CcPassthrough::Linking),
                "{line}"
            );
        }
    }

    #[test]
    fn a_mode_or_a_response_file_is_left_to_the_compile_rules() {
        for mode in NOT_A_LINK {
            let line = format!("a.c -B/tc {mode} -o a.o");
            assert_eq!(recognise_link(&tokens(&line)), Ok(()), "{line}");
        }
        assert_eq!(recognise_link(&tokens("a.o @more -o app")), Ok(()));
    }

    #[test]
    fn response_files_and_stdin() {
        assert_eq!(
            reject_response_file(&CcToken::ResponseFile("@a")),
            Err(CcPassthrough::ResponseFile)
        );
        assert_eq!(reject_response_file(&CcToken::Input("a")), Ok(()));
        assert_eq!(
            reject_stdin(&CcToken::Stdin),
            Err(CcPassthrough::StdinInput)
        );
        assert_eq!(reject_stdin(&CcToken::Input("-")), Ok(()));
    }

    #[test]
    fn flag_rules_refuse_their_own_flags_only() {
        let cases: [(TokenRule, &str, &str); 14] = [
            (reject_save_temps, "-save-temps", "cc_save_temps"),
            (reject_save_temps, "-save-temps=obj", "cc_save_temps"),
            (
                reject_precompiled_header_flags,
                "-include-pch",
                "cc_precompiled_header",
            ),
            (
                reject_precompiled_header_flags,
                "-fpch-preprocess",
                "cc_precompiled_header",
            ),
            (reject_profile, "-fprofile-use=x", "cc_profile"),
            (reject_profile, "--coverage", "cc_profile"),
            (reject_plugin, "-fplugin=p.so", "cc_plugin"),
            (reject_extra_output, "-fstack-usage", "cc_extra_output"),
            (reject_extra_output, "-fdump-tree-all", "cc_extra_output"),
            (
                reject_unlisted_input,
                "-fsanitize-ignorelist=l",
                "cc_unknown_argument",
            ),
            (
                reject_unlisted_input,
                "-fxray-attr-list=l",
                "cc_unknown_argument",
            ),
            (
                reject_preprocessor_dep_file,
                "-Wp,-MD,x.d",
                "cc_unknown_argument",
            ),
            (
                reject_preprocessor_dep_file,
                "-Wp,-DX,-MMD,y.d",
                "cc_unknown_argument",
            ),
            (
                reject_preprocessor_dep_file,
                "-Wp,-MF,y.d",
                "cc_unknown_argument",
            ),
        ];
        for (rule, arg, expected) in cases {
            assert_eq!(reason(rule(&CcToken::Flag(arg))), expected, "{arg}");
            for other in ["-fPIC", "-O2", "-Wp,-DX", "-Wall"] {
                assert_eq!(rule(&CcToken::Flag(other)), Ok(()), "{arg} rule on {other}");
            }
            // A value is never judged as a flag.
            let value = CcToken::Value {
                option: "-o",
                value: arg,
            };
            assert_eq!(rule(&value), Ok(()), "{arg} as a value");
        }
    }

    #[test]
    fn unknown_arguments_and_missing_values() {
        assert_eq!(
            reject_unknown(&CcToken::Unknown("-B/x")),
            Err(CcPassthrough::UnknownArgument("-B/x".into()))
        );
        assert_eq!(reject_unknown(&CcToken::Flag("-fPIC")), Ok(()));
        assert_eq!(
            reject_missing_value(&CcToken::MissingValue("-o")),
            Err(CcPassthrough::MissingValue("-o".into()))
        );
    }

    #[test]
    fn token_rules_report_the_first_offending_argument() {
        let tokens = [
            CcToken::Flag("-c"),
            CcToken::Flag("-fplugin=p.so"),
            CcToken::Unknown("--frob"),
            CcToken::Flag("-save-temps"),
        ];
        assert_eq!(check_tokens(&tokens), Err(CcPassthrough::Plugin));
        assert_eq!(
            check_tokens(&tokens[2..]),
            Err(CcPassthrough::UnknownArgument("--frob".into()))
        );
        assert_eq!(check_tokens(&tokens[..1]), Ok(()));
    }

    #[test]
    fn only_a_compile_to_an_object_passes_the_mode_rule() {
        let flags = |list: &[&'static str]| -> Vec<CcToken<'static>> {
            list.iter().map(|arg| CcToken::Flag(arg)).collect()
        };
        assert_eq!(check_mode(&flags(&["-c", "-O2"])), Ok(()));
        assert_eq!(
            check_mode(&flags(&["-c", "-S", "-E"])),
            Err(CcPassthrough::Preprocess)
        );
        assert_eq!(
            check_mode(&flags(&["-c", "-S", "-MM"])),
            Err(CcPassthrough::DependencyOnly)
        );
        assert_eq!(
            check_mode(&flags(&["-c", "-S"])),
            Err(CcPassthrough::AssemblyOutput)
        );
        assert_eq!(check_mode(&flags(&["-O2"])), Err(CcPassthrough::Linking));
        // `-c` as the value of `-o` is no mode.
        let output = [CcToken::Value {
            option: "-o",
            value: "-c",
        }];
        assert_eq!(check_mode(&output), Err(CcPassthrough::Linking));
    }

    #[test]
    fn one_source() {
        assert_eq!(single_source(&[]), Err(CcPassthrough::NoSource));
        assert_eq!(single_source(&[("a.c", Some("c"))]), Ok(("a.c", Some("c"))));
        assert_eq!(
            single_source(&[("a.c", None), ("b.c", None)]),
            Err(CcPassthrough::MultipleSources)
        );
    }

    #[test]
    fn languages_from_x_or_the_extension() {
        assert_eq!(language_of("a.c", None), Ok(Language::C));
        assert_eq!(language_of("a.c", Some("c++")), Ok(Language::Cxx));
        assert_eq!(language_of("a.cpp", Some("none")), Ok(Language::Cxx));
        assert_eq!(language_of("a.S", None), Ok(Language::Asm));
        assert_eq!(language_of("a.mm", None), Ok(Language::ObjCxx));
        assert_eq!(
            language_of("a.h", None),
            Err(CcPassthrough::PrecompiledHeader)
        );
        assert_eq!(
            language_of("a.c", Some("c-header")),
            Err(CcPassthrough::PrecompiledHeader)
        );
        assert_eq!(
            language_of("a.s", None),
            Err(CcPassthrough::UnsupportedLanguage("s".into()))
        );
        assert_eq!(
            language_of("a.c", Some("assembler")),
            Err(CcPassthrough::UnsupportedLanguage("assembler".into()))
        );
    }

    #[test]
    fn the_object_is_named_by_o_or_the_stem() {
        assert_eq!(
            object_path(Some("o/x.o"), "a.c"),
            Ok(PathBuf::from("o/x.o"))
        );
        assert_eq!(object_path(None, "src/dir/a.c"), Ok(PathBuf::from("a.o")));
        assert_eq!(
            object_path(Some("-"), "a.c"),
            Err(CcPassthrough::OutputToStdout)
        );
    }
}
