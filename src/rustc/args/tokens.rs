//! Step one of the rustc argv parse: the expanded argv -> [`Token`]s, each option rustc would read
//! with its value, recognised by its spelling and not yet interpreted (an `--emit` list is not
//! split, a `-C` setting is not judged). An argument rustc would not read as an option this table
//! knows is a reason on its own (`unknown_argument`), as is an option missing its value.

use crate::rustc::Passthrough;

/// One option or positional of rustc's argv, as rustc reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// A positional argument: the input file (`-` for stdin).
    Input(String),
    /// `-V`, `-vV`, `--version`, `-v`, `--verbose`, `-h`, `--help`, as spelled.
    Probe(&'static str),
    /// `--explain CODE`.
    Explain(String),
    /// `--print WHAT`.
    Print(String),
    /// `--test`.
    Test,
    /// `-g` (`-C debuginfo=2`).
    Debuginfo,
    /// `-O` (`-C opt-level=2`).
    Optimize,
    CrateName(String),
    /// `--crate-type`, a comma-separated list.
    CrateType(String),
    Edition(String),
    /// `--emit`, a comma-separated list of `kind[=path]`.
    Emit(String),
    OutDir(String),
    /// `-o FILE`.
    Output(String),
    Target(String),
    Cfg(String),
    /// `--extern name[=path]`.
    Extern(String),
    Sysroot(String),
    /// `--json`, a comma-separated list.
    Json(String),
    Color(String),
    DiagnosticWidth(String),
    /// `-C key[=value]` or `--codegen key[=value]`.
    Codegen(String),
    /// `-L [kind=]path`.
    LibraryPath(String),
    /// `-l [kind[:modifiers]=]name[:rename]`.
    NativeLib(String),
    /// Any other option with a value (`--cap-lints`, `-W`, `-Z`, `--remap-path-prefix`...), by
    /// its spelling: rcache keys it as written.
    Other(&'static str, String),
}

/// Options that take a value, by their spellings. Short forms accept the value glued (`-Cfoo`).
const VALUE_OPTIONS: [&str; 26] = [
    "--crate-name",
    "--crate-type",
    "--edition",
    "--emit",
    "--print",
    "--out-dir",
    "--explain",
    "--target",
    "--cfg",
    "--check-cfg",
    "--extern",
    "--sysroot",
    "--error-format",
    "--json",
    "--color",
    "--diagnostic-width",
    "--remap-path-prefix",
    "--cap-lints",
    "--codegen",
    "--warn",
    "--allow",
    "--deny",
    "--forbid",
    "--force-warn",
    "--env-set",
    "--crate-attr",
];

const SHORT_VALUE_OPTIONS: [&str; 9] = ["-C", "-L", "-l", "-o", "-W", "-A", "-D", "-F", "-Z"];

const FLAGS: [&str; 10] = [
    "-g",
    "-O",
    "--test",
    "-v",
    "--verbose",
    "-V",
    "-vV",
    "--version",
    "-h",
    "--help",
];

/// The token of an option with a value, by the option's spelling (one of the tables above).
fn value_token(name: &'static str, value: String) -> Token {
    match name {
        "--crate-name" => Token::CrateName(value),
        "--crate-type" => Token::CrateType(value),
        "--edition" => Token::Edition(value),
        "--emit" => Token::Emit(value),
        "--print" => Token::Print(value),
        "--out-dir" => Token::OutDir(value),
        "--explain" => Token::Explain(value),
        "--target" => Token::Target(value),
        "--cfg" => Token::Cfg(value),
        "--extern" => Token::Extern(value),
        "--sysroot" => Token::Sysroot(value),
        "--json" => Token::Json(value),
        "--color" => Token::Color(value),
        "--diagnostic-width" => Token::DiagnosticWidth(value),
        "-C" | "--codegen" => Token::Codegen(value),
        "-L" => Token::LibraryPath(value),
        "-l" => Token::NativeLib(value),
        "-o" => Token::Output(value),
        other => Token::Other(other, value),
    }
}

/// The token of a flag, by its spelling (one of [`FLAGS`]).
fn flag_token(name: &'static str) -> Token {
    match name {
        "-g" => Token::Debuginfo,
        "-O" => Token::Optimize,
        "--test" => Token::Test,
        probe => Token::Probe(probe),
    }
}

/// The spelling of `name` in `table`, with the table's `'static` lifetime.
fn spelled(table: &[&'static str], name: &str) -> Option<&'static str> {
    table.iter().copied().find(|option| *option == name)
}

/// Splits an expanded, UTF-8 argv into tokens. `Err` names the first argument that is not an
/// option in the tables (`unknown_argument`), or an option missing its value.
pub(super) fn tokenize(args: &[String]) -> Result<Vec<Token>, Passthrough> {
    let mut tokens = Vec::with_capacity(args.len());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "-" || !arg.starts_with('-') {
            tokens.push(Token::Input(arg.clone()));
            continue;
        }
        if let Some(flag) = spelled(&FLAGS, arg) {
            tokens.push(flag_token(flag));
            continue;
        }
        if let Some((name, value)) = arg
            .split_once('=')
            .filter(|(name, _)| name.starts_with("--"))
        {
            let Some(name) = spelled(&VALUE_OPTIONS, name) else {
                return Err(Passthrough::UnknownArgument(arg.clone()));
            };
            tokens.push(value_token(name, value.to_string()));
            continue;
        }
        if let Some(name) =
            spelled(&VALUE_OPTIONS, arg).or_else(|| spelled(&SHORT_VALUE_OPTIONS, arg))
        {
            let value = iter
                .next()
                .ok_or_else(|| Passthrough::MissingValue(arg.clone()))?;
            tokens.push(value_token(name, value.clone()));
            continue;
        }
        let glued = SHORT_VALUE_OPTIONS
            .iter()
            .find(|short| arg.len() > 2 && arg.starts_with(**short));
        match glued {
            Some(short) => tokens.push(value_token(short, arg[2..].to_string())),
            None => return Err(Passthrough::UnknownArgument(arg.clone())),
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(line: &str) -> Result<Vec<Token>, Passthrough> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        tokenize(&args)
    }

    #[test]
    fn every_spelling_of_a_value_reads_the_same() {
        for line in [
            "-C opt-level=3",
            "-Copt-level=3",
            "--codegen opt-level=3",
            "--codegen=opt-level=3",
        ] {
            assert_eq!(
                tokens(line).unwrap(),
                vec![Token::Codegen("opt-level=3".into())],
                "{line}"
            );
        }
        assert_eq!(
            tokens("--edition=2021 --emit dep-info,link").unwrap(),
            vec![
                Token::Edition("2021".into()),
                Token::Emit("dep-info,link".into())
            ]
        );
    }

    #[test]
    fn values_stay_uninterpreted() {
        // A value is taken whole, even when it looks like an option or holds `=`.
        assert_eq!(
            tokens("--crate-name --test --emit=link=out.rlib -o -").unwrap(),
            vec![
                Token::CrateName("--test".into()),
                Token::Emit("link=out.rlib".into()),
                Token::Output("-".into()),
            ]
        );
    }

    #[test]
    fn flags_positionals_and_other_options() {
        assert_eq!(
            tokens("src/lib.rs - -g -O --test -vV -W unused --cap-lints=allow -Zfoo").unwrap(),
            vec![
                Token::Input("src/lib.rs".into()),
                Token::Input("-".into()),
                Token::Debuginfo,
                Token::Optimize,
                Token::Test,
                Token::Probe("-vV"),
                Token::Other("-W", "unused".into()),
                Token::Other("--cap-lints", "allow".into()),
                Token::Other("-Z", "foo".into()),
            ]
        );
    }

    #[test]
    fn unknown_options_and_missing_values_are_reasons() {
        for line in [
            "--frobnicate",
            "--frob=1",
            "-q",
            "-C",
            "--crate-name",
            "-g -x",
        ] {
            let err = tokens(line).unwrap_err();
            assert!(
                matches!(
                    err,
                    Passthrough::UnknownArgument(_) | Passthrough::MissingValue(_)
                ),
                "{line}: {err:?}"
            );
        }
        assert_eq!(tokens("-L"), Err(Passthrough::MissingValue("-L".into())));
        // A short option alone is not glued to nothing: `-C` needs the next argument.
        assert_eq!(
            tokens("--test -X"),
            Err(Passthrough::UnknownArgument("-X".into()))
        );
    }
}
