//! The caller's dep file and the inputs' content checks.
//!
//! - [`target_text`] renders the target of the rule a compiler writes for `-MD`/`-MMD`: the
//!   `-MT`/`-MQ` values, or the object path quoted for Make. A stored dep file is checked to
//!   start with that text (or it is not stored), and on a restore that text is replaced by this
//!   invocation's own, so a dep file never names another build's object.
//! - [`dep_pass_args`] builds the preprocess-only run that lists every input (system headers
//!   included) when the caller's own dep options take the compiler's one dep file.
//! - [`mentions_time_macro`] finds `__DATE__`, `__TIME__` and `__TIMESTAMP__`, whose expansion
//!   differs between a compile and its replay.

use std::ffi::OsString;
use std::path::Path;

use super::args::{CallerDepFile, CcInvocation, DepTarget};

/// Quotes a target the way gcc's and clang's `-MQ` do: a space or tab becomes `\ ` (with the
/// backslashes before it doubled), `$` becomes `$$`, `#` becomes `\#`.
pub fn quote_target(target: &str) -> String {
    let mut quoted = String::with_capacity(target.len() + 8);
    let mut backslashes = 0;
    for c in target.chars() {
        match c {
            ' ' | '\t' => {
                quoted.extend(std::iter::repeat_n('\\', backslashes + 1));
            }
            '$' => quoted.push('$'),
            '#' => quoted.push('\\'),
            _ => {}
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
        quoted.push(c);
    }
    quoted
}

/// The target text of the rule the compiler writes into the caller's dep file.
pub fn target_text(invocation: &CcInvocation, dep_file: &CallerDepFile) -> String {
    if dep_file.targets.is_empty() {
        return quote_target(&invocation.object.to_string_lossy());
    }
    dep_file
        .targets
        .iter()
        .map(|target| match target {
            DepTarget::Raw(raw) => raw.clone(),
            DepTarget::Quoted(text) => quote_target(text),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with its leading `old_target` replaced by `new_target`; `None` if it does not start
/// with `old_target:`.
pub fn retarget(text: &[u8], old_target: &[u8], new_target: &[u8]) -> Option<Vec<u8>> {
    let rest = text.strip_prefix(old_target)?;
    if !rest.starts_with(b":") {
        return None;
    }
    let mut rewritten = Vec::with_capacity(new_target.len() + rest.len());
    rewritten.extend_from_slice(new_target);
    rewritten.extend_from_slice(rest);
    Some(rewritten)
}

/// The argv of a dependency-only run listing every input into `dep_path`: the caller's
/// arguments without `-c`, `-o` and the dep-file options, plus `-M -MF <dep_path>`.
pub fn dep_pass_args(args: &[OsString], dep_path: &Path) -> Vec<OsString> {
    let mut kept = Vec::with_capacity(args.len() + 3);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-c" | "-MD" | "-MMD" | "-MP" => continue,
            "-o" | "-MF" | "-MT" | "-MQ" => {
                iter.next();
                continue;
            }
            _ if ["-o", "-MF", "-MT", "-MQ"]
                .iter()
                .any(|option| text.starts_with(option)) =>
            {
                continue;
            }
            _ => kept.push(arg.clone()),
        }
    }
    kept.push("-M".into());
    kept.push("-MF".into());
    kept.push(dep_path.as_os_str().to_os_string());
    kept
}

/// The time macros that make a compile's output depend on when it ran.
const TIME_MACROS: [&[u8]; 3] = [b"__DATE__", b"__TIME__", b"__TIMESTAMP__"];

/// True if `content` mentions a time macro.
pub fn mentions_time_macro(content: &[u8]) -> bool {
    TIME_MACROS
        .iter()
        .any(|name| memchr::memmem::find(content, name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc::args::classify;

    fn invocation(line: &str) -> CcInvocation {
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        classify(&args).unwrap()
    }

    #[test]
    fn targets_render_like_the_compiler() {
        assert_eq!(quote_target("out/x y.o"), "out/x\\ y.o");
        assert_eq!(quote_target("a$b#c"), "a$$b\\#c");
        let inv = invocation("-c x.c -o obj/x.o -MD -MT raw$ -MQ q$");
        assert_eq!(
            target_text(&inv, inv.dep_file.as_ref().unwrap()),
            "raw$ q$$"
        );
        let inv = invocation("-c x.c -o obj/x.o -MMD");
        assert_eq!(target_text(&inv, inv.dep_file.as_ref().unwrap()), "obj/x.o");
    }

    #[test]
    fn retargeting_replaces_only_the_rule_target() {
        let text = b"a/x.o: x.c a/x.h\n";
        assert_eq!(
            retarget(text, b"a/x.o", b"b/x.o").unwrap(),
            b"b/x.o: x.c a/x.h\n".to_vec()
        );
        assert_eq!(retarget(text, b"a/x", b"b/x"), None);
    }

    #[test]
    fn the_dep_pass_drops_outputs_and_compiles_nothing() {
        let args: Vec<OsString> = "-O2 -c x.c -o x.o -MMD -MF x.d -MT t -MQx -Iinc"
            .split_whitespace()
            .map(OsString::from)
            .collect();
        let pass = dep_pass_args(&args, Path::new("/tmp/d"));
        let pass: Vec<String> = pass.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(pass, ["-O2", "x.c", "-Iinc", "-M", "-MF", "/tmp/d"]);
    }
}
