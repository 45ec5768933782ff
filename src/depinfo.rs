//! Parser for Makefile-style dep-info files, as written by rustc (`--emit=dep-info`), by gcc and
//! clang (`-MD`), and by GNU ld and lld (`--dependency-file`).
//!
//! What is read (docs/facts.md §3): the prerequisites of the *first* rule, which are the inputs of
//! the compile; and rustc's `# env-dep:NAME=value` lines. Only a space is escaped in rustc's paths
//! (`\ `); gcc also escapes `#` and writes `$$` for `$`, and continues long lines with `\`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// What a dep-info file says about one compile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DepInfo {
    /// The targets of the first rule (usually one).
    pub targets: Vec<PathBuf>,
    /// The prerequisites of the first rule, in order, without duplicates. Relative paths are
    /// relative to the compiler's cwd.
    pub inputs: Vec<PathBuf>,
    /// `# env-dep:` lines: the name, and the value or `None` for an unset variable.
    pub env_deps: Vec<(String, Option<String>)>,
}

/// Parses dep-info text. Never fails: an unparseable line is skipped, and the caller decides
/// whether an empty input list is acceptable.
pub fn parse(text: &[u8]) -> DepInfo {
    let mut info = DepInfo::default();
    let mut seen_rule = false;
    for line in logical_lines(text) {
        if let Some(rest) = line.strip_prefix(b"# env-dep:") {
            info.env_deps.push(parse_env_dep(rest));
            continue;
        }
        if line.is_empty() || line.starts_with(b"#") || seen_rule {
            continue;
        }
        let Some((targets, prerequisites)) = split_rule(&line) else {
            continue;
        };
        seen_rule = true;
        info.targets = split_words(targets);
        for input in split_words(prerequisites) {
            if !info.inputs.contains(&input) {
                info.inputs.push(input);
            }
        }
    }
    info
}

/// Joins backslash-newline continuations and splits into lines. rustc's `# env-dep:` lines
/// are never continued: their values escape a backslash as `\\`, so one may end in one.
fn logical_lines(text: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut current = Vec::new();
    let mut iter = text.iter().copied().peekable();
    while let Some(byte) = iter.next() {
        let continues = byte == b'\\' && !current.starts_with(b"# env-dep:");
        match byte {
            b'\\' if continues && iter.peek() == Some(&b'\n') => {
                iter.next();
                current.push(b' ');
            }
            b'\\' if continues && iter.peek() == Some(&b'\r') => {
                iter.next();
                if iter.peek() == Some(&b'\n') {
                    iter.next();
                }
                current.push(b' ');
            }
            b'\n' => lines.push(std::mem::take(&mut current)),
            b'\r' if iter.peek() == Some(&b'\n') => {}
            _ => current.push(byte),
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// Splits `targets: prerequisites` at the first unescaped colon followed by whitespace or the end.
fn split_rule(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut index = 0;
    while index < line.len() {
        match line[index] {
            b'\\' => index += 2,
            b':' if line
                .get(index + 1)
                .is_none_or(|next| next.is_ascii_whitespace()) =>
            {
                return Some((&line[..index], &line[index + 1..]));
            }
            _ => index += 1,
        }
    }
    None
}

/// Splits on unescaped whitespace and unescapes `\ `, `\#` and `$$`.
fn split_words(text: &[u8]) -> Vec<PathBuf> {
    let mut words = Vec::new();
    let mut word = Vec::new();
    let mut index = 0;
    while index < text.len() {
        let byte = text[index];
        match byte {
            b'\\' if matches!(text.get(index + 1), Some(b' ' | b'#' | b'\t')) => {
                word.push(text[index + 1]);
                index += 2;
                continue;
            }
            b'$' if text.get(index + 1) == Some(&b'$') => {
                word.push(b'$');
                index += 2;
                continue;
            }
            b' ' | b'\t' => {
                if !word.is_empty() {
                    words.push(PathBuf::from(OsString::from_vec(std::mem::take(&mut word))));
                }
            }
            _ => word.push(byte),
        }
        index += 1;
    }
    if !word.is_empty() {
        words.push(PathBuf::from(OsString::from_vec(word)));
    }
    words
}

/// `NAME=value` with `\n`, `\r` and `\\` escaped, or `NAME` alone for an unset variable.
fn parse_env_dep(rest: &[u8]) -> (String, Option<String>) {
    let text = String::from_utf8_lossy(rest);
    match text.split_once('=') {
        Some((name, value)) => (name.to_string(), Some(unescape_env(value))),
        None => (text.to_string(), None),
    }
}

fn unescape_env(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Escapes a path the way rustc writes it in a dep-info file (only spaces).
pub fn escape_path(path: &str) -> String {
    path.replace(' ', "\\ ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUSTC_D: &str = "/P/target/debug/deps/demo-01.d: src/lib.rs src/sub\\ dir/weird\\ mod.rs src/../data/greeting\\ file.txt /P/target/debug/build/demo-71/out/gen.txt

/P/target/debug/deps/libdemo-01.rlib: src/lib.rs src/sub\\ dir/weird\\ mod.rs src/../data/greeting\\ file.txt /P/target/debug/build/demo-71/out/gen.txt

src/lib.rs:
src/sub\\ dir/weird\\ mod.rs:
src/../data/greeting\\ file.txt:
/P/target/debug/build/demo-71/out/gen.txt:

# env-dep:CARGO_PKG_VERSION=0.1.0
# env-dep:MY_UNSET_VAR
# env-dep:MY_VAR=a b=c\\nline2
# checksum:blake3=00 file_len:441 src/lib.rs
";

    #[test]
    fn parses_rustc_dep_info() {
        let info = parse(RUSTC_D.as_bytes());
        assert_eq!(
            info.targets,
            vec![PathBuf::from("/P/target/debug/deps/demo-01.d")]
        );
        assert_eq!(
            info.inputs,
            vec![
                PathBuf::from("src/lib.rs"),
                PathBuf::from("src/sub dir/weird mod.rs"),
                PathBuf::from("src/../data/greeting file.txt"),
                PathBuf::from("/P/target/debug/build/demo-71/out/gen.txt"),
            ]
        );
        assert_eq!(
            info.env_deps,
            vec![
                ("CARGO_PKG_VERSION".into(), Some("0.1.0".into())),
                ("MY_UNSET_VAR".into(), None),
                ("MY_VAR".into(), Some("a b=c\nline2".into())),
            ]
        );
    }

    #[test]
    fn an_env_dep_value_ending_in_a_backslash_does_not_swallow_the_next_line() {
        let text =
            b"out.d: src/lib.rs\n\n# env-dep:ESCAPE=ESCAPE\\nESCAPE\\\\\n# env-dep:OTHER=1\n";
        let info = parse(text);
        assert_eq!(
            info.env_deps,
            vec![
                ("ESCAPE".into(), Some("ESCAPE\nESCAPE\\".into())),
                ("OTHER".into(), Some("1".into())),
            ]
        );
    }

    #[test]
    fn parses_gcc_continuations() {
        let info = parse(b"foo.o: foo.c \\\n  /usr/include/stdio.h \\\n  a\\#b.h $$x.h\n");
        assert_eq!(info.targets, vec![PathBuf::from("foo.o")]);
        assert_eq!(
            info.inputs,
            vec![
                PathBuf::from("foo.c"),
                PathBuf::from("/usr/include/stdio.h"),
                PathBuf::from("a#b.h"),
                PathBuf::from("$x.h"),
            ]
        );
    }

    #[test]
    fn empty_rule_has_no_inputs() {
        let info = parse(b"out.d:\n");
        assert_eq!(info.targets, vec![PathBuf::from("out.d")]);
        assert!(info.inputs.is_empty());
    }
}
