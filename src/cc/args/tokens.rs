//! Step one of the gcc/clang argv parse: the argv -> [`CcToken`]s, each argument as the driver
//! reads it (an option with its value, joined or in the next argument), recognised by spelling
//! and not yet judged. An argument no table knows becomes [`CcToken::Unknown`], and an option
//! at the end of the argv without its value [`CcToken::MissingValue`]: the rules decide.

/// One argument (or option and value) of a gcc/clang argv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CcToken<'a> {
    /// `@file`: more arguments, read from a file.
    ResponseFile(&'a str),
    /// `-`: the source on stdin.
    Stdin,
    /// A positional: a source, or an object or library for the link.
    Input(&'a str),
    /// A known option in one argument (a value, if any, joined): `-c`, `-MD`, `-fPIC`,
    /// `-Wl,--as-needed`, `-fprofile-generate`.
    Flag(&'a str),
    /// An option with a value, by the option's spelling: `-o`, `-MF`, `-MT`, `-MQ`, `-x`, and
    /// [`KEYED_WITH_VALUE`].
    Value {
        option: &'static str,
        value: &'a str,
    },
    /// An option no table here knows.
    Unknown(&'a str),
    /// An option that takes a value, last in the argv without one.
    MissingValue(&'static str),
}

/// Options whose value is the next argument (or joined), that change the object: keyed.
pub(super) const KEYED_WITH_VALUE: [&str; 18] = [
    "-I",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "-include",
    "-imacros",
    "-D",
    "-U",
    "--param",
    "-target",
    "--sysroot",
    "-Xassembler",
    "-Xlinker",
    "-L",
];

/// Options with a value that name outputs or the language (`-o`, the dep file, its targets,
/// `-x`), matched before [`KEYED_WITH_VALUE`].
const OUTPUT_AND_LANGUAGE: [&str; 5] = ["-o", "-MF", "-MT", "-MQ", "-x"];

/// Option prefixes that are plain flags (the value, if any, joined): keyed as they are.
const KEYED_FLAG_PREFIXES: [&str; 27] = [
    "-W",
    "-f",
    "-m",
    "-O",
    "-g",
    "-std=",
    "-pedantic",
    "-w",
    "-ansi",
    "-pthread",
    "-nostdinc",
    "-nostdlib",
    "-static",
    "-shared",
    "-rdynamic",
    "-pie",
    "-no-pie",
    "-H",
    "-pipe",
    "-l",
    "--target=",
    "--sysroot=",
    "-stdlib=",
    "--gcc-toolchain=",
    "-rtlib=",
    "-integrated-as",
    "-Qunused-arguments",
];

/// Flags matched whole, before any prefix: modes, dep-file switches, and the flags the rules
/// refuse by name.
const EXACT_FLAGS: [&str; 13] = [
    "-c",
    "-E",
    "-S",
    "-M",
    "-MM",
    "-MD",
    "-MMD",
    "-MP",
    "-save-temps",
    "--save-temps",
    "-gsplit-dwarf",
    "-include-pch",
    "-emit-pch",
];

/// `-f` options that write files rcache would not restore.
pub(super) const EXTRA_OUTPUT_PREFIXES: [&str; 9] = [
    "-fdump-",
    "-fstack-usage",
    "-ftime-trace",
    "-fcallgraph-info",
    "-fsave-optimization-record",
    "-foptimization-record-file",
    "-fopt-info",
    "-fmodules",
    "-fcompare-debug",
];

/// `-f` options that name an input file the dep file does not list.
pub(super) const UNLISTED_INPUT_PREFIXES: [&str; 9] = [
    "-fsanitize-blacklist",
    "-fsanitize-ignorelist",
    "-fsanitize-coverage-allowlist",
    "-fsanitize-coverage-ignorelist",
    "-fxray-attr-list",
    "-fxray-always-instrument",
    "-fxray-never-instrument",
    "-fprebuilt-module",
    "-fembed-offload",
];

/// Profile and coverage options: `--coverage`, `-fprofile-*`, `-fauto-profile`...
pub(super) fn is_profile(arg: &str) -> bool {
    matches!(
        arg,
        "--coverage"
            | "-coverage"
            | "-ftest-coverage"
            | "-fprofile-arcs"
            | "-fbranch-probabilities"
    ) || [
        "-fprofile-",
        "-fauto-profile",
        "-fcs-profile-generate",
        "-fcreate-profile",
    ]
    .iter()
    .any(|prefix| arg.starts_with(prefix))
}

/// Flags known by a prefix that the rules refuse (or treat apart), matched before the option
/// tables so that a keyed prefix (`-f`) never hides them.
fn is_refusable_flag(arg: &str) -> bool {
    arg.starts_with("-save-temps=")
        || arg.starts_with("-fpch")
        || is_profile(arg)
        || arg.starts_with("-fplugin")
        || EXTRA_OUTPUT_PREFIXES.iter().any(|p| arg.starts_with(p))
        || UNLISTED_INPUT_PREFIXES.iter().any(|p| arg.starts_with(p))
}

/// `-march=native` and its kin, resolved for the key.
pub(super) fn is_native_flag(arg: &str) -> bool {
    matches!(arg, "-march=native" | "-mcpu=native" | "-mtune=native")
}

/// The option of [`OUTPUT_AND_LANGUAGE`] or [`KEYED_WITH_VALUE`] `arg` starts with (the longest
/// of the keyed ones).
fn value_option(arg: &str) -> Option<&'static str> {
    if let Some(option) = OUTPUT_AND_LANGUAGE.iter().find(|o| arg.starts_with(**o)) {
        return Some(option);
    }
    KEYED_WITH_VALUE
        .iter()
        .copied()
        .filter(|option| arg.starts_with(option))
        .max_by_key(|option| option.len())
}

/// Splits a UTF-8 argv into tokens. Never fails: what is wrong is a token for the rules.
pub(super) fn tokenize<'a>(args: &[&'a str]) -> Vec<CcToken<'a>> {
    let mut tokens = Vec::with_capacity(args.len());
    let mut index = 0;
    while let Some(&arg) = args.get(index) {
        index += 1;
        let token = if arg.starts_with('@') {
            CcToken::ResponseFile(arg)
        } else if arg == "-" {
            CcToken::Stdin
        } else if !arg.starts_with('-') {
            CcToken::Input(arg)
        } else if EXACT_FLAGS.contains(&arg) || is_refusable_flag(arg) {
            CcToken::Flag(arg)
        } else if let Some(option) = value_option(arg) {
            // The value is joined (`-ofoo`) or the next argument, whatever it looks like.
            let joined = &arg[option.len()..];
            if !joined.is_empty() {
                CcToken::Value {
                    option,
                    value: joined,
                }
            } else if let Some(&value) = args.get(index) {
                index += 1;
                CcToken::Value { option, value }
            } else {
                CcToken::MissingValue(option)
            }
        } else if arg.starts_with("-Wp,")
            || is_native_flag(arg)
            || KEYED_FLAG_PREFIXES.iter().any(|p| arg.starts_with(p))
        {
            CcToken::Flag(arg)
        } else {
            CcToken::Unknown(arg)
        };
        tokens.push(token);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(line: &str) -> Vec<CcToken<'_>> {
        let args: Vec<&str> = line.split_whitespace().collect();
        tokenize(&args)
    }

    #[test]
    fn values_joined_or_next() {
        assert_eq!(
            tokens("-o a.o -ob.o -I inc -Iinc2 -MF d -MTt -x c"),
            vec![
                CcToken::Value {
                    option: "-o",
                    value: "a.o"
                },
                CcToken::Value {
                    option: "-o",
                    value: "b.o"
                },
                CcToken::Value {
                    option: "-I",
                    value: "inc"
                },
                CcToken::Value {
                    option: "-I",
                    value: "inc2"
                },
                CcToken::Value {
                    option: "-MF",
                    value: "d"
                },
                CcToken::Value {
                    option: "-MT",
                    value: "t"
                },
                CcToken::Value {
                    option: "-x",
                    value: "c"
                },
            ]
        );
        // The next argument is the value whatever it looks like: `-c` here is the output.
        assert_eq!(
            tokens("-o -c"),
            vec![CcToken::Value {
                option: "-o",
                value: "-c"
            }]
        );
        assert_eq!(
            tokens("-c -MF"),
            vec![CcToken::Flag("-c"), CcToken::MissingValue("-MF")]
        );
    }

    #[test]
    fn the_longest_keyed_option_wins() {
        assert_eq!(
            tokens("-iwithprefixbefore/x -iwithprefix /y -includecfg.h"),
            vec![
                CcToken::Value {
                    option: "-iwithprefixbefore",
                    value: "/x"
                },
                CcToken::Value {
                    option: "-iwithprefix",
                    value: "/y"
                },
                CcToken::Value {
                    option: "-include",
                    value: "cfg.h"
                },
            ]
        );
    }

    #[test]
    fn exact_and_refusable_flags_come_before_the_option_tables() {
        // `-include-pch` is not `-include` with the value `-pch`; `-fprofile-generate` is not a
        // plain `-f` flag: each stays whole for its rule.
        assert_eq!(
            tokens("-include-pch -fprofile-generate -save-temps=obj -MD -MMD -MP"),
            vec![
                CcToken::Flag("-include-pch"),
                CcToken::Flag("-fprofile-generate"),
                CcToken::Flag("-save-temps=obj"),
                CcToken::Flag("-MD"),
                CcToken::Flag("-MMD"),
                CcToken::Flag("-MP"),
            ]
        );
    }

    #[test]
    fn positionals_files_and_unknowns() {
        assert_eq!(
            tokens("a.c - @rsp -Wp,-MD,x.d -march=native -Wl,--as-needed -B/x -nodefaultlibs"),
            vec![
                CcToken::Input("a.c"),
                CcToken::Stdin,
                CcToken::ResponseFile("@rsp"),
                CcToken::Flag("-Wp,-MD,x.d"),
                CcToken::Flag("-march=native"),
                CcToken::Flag("-Wl,--as-needed"),
                CcToken::Unknown("-B/x"),
                CcToken::Unknown("-nodefaultlibs"),
            ]
        );
    }
}
