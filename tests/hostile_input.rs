//! Property tests: random bytes and random argv fed to the parsers rcache runs on input it does
//! not control (rustc's and gcc's dep-info, rustc and C compiler argv, cargo's build-script
//! directives, the index's encoded records, the remote's envelopes). None may panic: bad input
//! is a reason to pass through or a decode error, never a crash of the wrapper (README.md,
//! "Faults"). And what is well formed reads back as written: dep-info as rustc and gcc write
//! it, directives among a script's other output, records cut short.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use proptest::prelude::*;

use rcache::depinfo::DepInfo;
use rcache::remote::layout;
use rcache::store::entry::{self, Entry, Manifest};
use rcache::wrapper::build_script::directives::Directives;

/// Arguments drawn from pieces real argv is made of, so that parsers get past their first
/// checks, mixed with arbitrary bytes.
fn argv() -> impl Strategy<Value = Vec<OsString>> {
    let piece = prop_oneof![
        Just("--crate-name".to_string()),
        Just("--crate-type".to_string()),
        Just("--emit=dep-info,metadata,link".to_string()),
        Just("--out-dir".to_string()),
        Just("-C".to_string()),
        Just("-L".to_string()),
        Just("--extern".to_string()),
        Just("--cfg".to_string()),
        Just("-c".to_string()),
        Just("-o".to_string()),
        Just("-MD".to_string()),
        Just("-MF".to_string()),
        Just("-I".to_string()),
        Just("src/lib.rs".to_string()),
        Just("a.c".to_string()),
        Just("@".to_string()),
        "[ -~]{0,12}",
    ];
    let arg = prop_oneof![
        3 => piece.prop_map(OsString::from),
        1 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(OsString::from_vec),
    ];
    proptest::collection::vec(arg, 0..24)
}

/// A path as a dep-info names it: no colon (a rule's separator), no backslash, no newline or
/// tab; spaces and `#` anywhere, `$` only where `gcc` writes it (see [`gcc_dep_info`]).
fn dep_path(dollar: bool) -> impl Strategy<Value = String> {
    let charset = if dollar {
        "[a-z0-9_./ #$-]{1,16}"
    } else {
        "[a-z0-9_./ #-]{1,16}"
    };
    charset.prop_filter("not blank", |path| !path.trim().is_empty())
}

/// A `# env-dep` value. rustc escapes `\`, `\n` and `\r` in it; a value may end with a
/// backslash (escaped `\\` at the end of the line, never a continuation).
fn env_value() -> impl Strategy<Value = String> {
    "[ -~\n\r]{0,16}"
}

/// The dep-info rustc writes for `inputs` and `env` (rustc's `escape_dep_filename` escapes only
/// spaces; `escape_dep_env` escapes `\`, `\n` and `\r`).
fn rustc_dep_info(inputs: &[String], env: &[(String, Option<String>)]) -> String {
    let escape = |path: &String| path.replace(' ', "\\ ");
    let listed: Vec<String> = inputs.iter().map(escape).collect();
    let mut text = format!("/t/deps/x-1.d: {}\n", listed.join(" "));
    text += &format!("/t/deps/libx-1.rlib: {}\n\n", listed.join(" "));
    for path in &listed {
        text += &format!("{path}:\n");
    }
    text += "\n";
    for (name, value) in env {
        match value {
            Some(value) => {
                let value = value
                    .replace('\\', "\\\\")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r");
                text += &format!("# env-dep:{name}={value}\n");
            }
            None => text += &format!("# env-dep:{name}\n"),
        }
    }
    text
}

/// The dep-info `gcc -MD` writes for `inputs`: ` `, `#` and `$` escaped, long rules continued
/// with a backslash-newline (here after every `wrap`-th word), then the phony targets.
fn gcc_dep_info(inputs: &[String], wrap: usize) -> String {
    let escape = |path: &String| {
        path.replace(' ', "\\ ")
            .replace('#', "\\#")
            .replace('$', "$$")
    };
    let mut text = "x.o:".to_string();
    for (n, path) in inputs.iter().enumerate() {
        if n > 0 && n % wrap == 0 {
            text += " \\\n ";
        }
        text += " ";
        text += &escape(path);
    }
    text += "\n";
    for path in inputs.iter().skip(1) {
        text += &format!("\n{}:\n", escape(path));
    }
    text
}

/// Up to 12 paths, some of them repeated (a dep-info may name a file twice).
fn dep_inputs(dollar: bool) -> impl Strategy<Value = Vec<String>> {
    (
        proptest::collection::vec(dep_path(dollar), 1..12),
        proptest::collection::vec(any::<proptest::sample::Index>(), 0..3),
    )
        .prop_map(|(mut paths, repeats)| {
            for repeat in repeats {
                paths.push(repeat.get(&paths).clone());
            }
            paths
        })
}

/// `list` without its repeats, in first-seen order.
fn first_seen(list: &[String]) -> Vec<PathBuf> {
    let mut seen: Vec<PathBuf> = Vec::new();
    for item in list {
        if !seen.contains(&PathBuf::from(item)) {
            seen.push(PathBuf::from(item));
        }
    }
    seen
}

/// Inputs are listed once each, none empty, none spanning lines.
fn assert_inputs_well_formed(parsed: &DepInfo) -> Result<(), TestCaseError> {
    for (n, input) in parsed.inputs.iter().enumerate() {
        let raw = input.as_os_str().as_encoded_bytes();
        prop_assert!(!raw.is_empty() && !raw.contains(&b'\n'), "{:?}", input);
        prop_assert!(!parsed.inputs[..n].contains(input), "{:?} twice", input);
    }
    Ok(())
}

/// One line of a build script's stdout: a directive cargo reads (and rcache may), or anything
/// else a script prints, non-UTF-8 included.
#[derive(Debug, Clone)]
enum ScriptLine {
    Directive {
        syntax: &'static str,
        key: &'static str,
        value: String,
        crlf: bool,
    },
    Other(Vec<u8>),
}

fn script_line() -> impl Strategy<Value = ScriptLine> {
    // Trimmed by cargo and rcache alike: generated without spaces around it.
    const VALUE: &str = "[!-~]([ -~]{0,16}[!-~])?";
    let directive = (
        prop_oneof![Just("cargo:"), Just("cargo::")],
        prop_oneof![
            Just("rerun-if-changed"),
            Just("rerun-if-env-changed"),
            Just("rustc-link-search"),
            Just("rustc-link-lib"),
            Just("rustc-cfg"),
        ],
        prop_oneof![
            VALUE,
            // A `KIND=` in front, as `rustc-link-search` takes it, or a word that is no kind.
            (
                prop_oneof![Just("native"), Just("all"), Just("crate"), Just("static")],
                VALUE,
            )
                .prop_map(|(kind, value)| format!("{kind}={value}")),
        ],
        any::<bool>(),
    )
        .prop_map(|(syntax, key, value, crlf)| ScriptLine::Directive {
            syntax,
            key,
            value,
            crlf,
        });
    let other = prop_oneof![
        "[ -~]{0,24}"
            .prop_filter("not a directive", |line| !line.starts_with("cargo:"))
            .prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(|mut bytes| {
            bytes.retain(|&byte| byte != b'\n');
            bytes.insert(0, 0xff);
            bytes
        }),
    ];
    prop_oneof![3 => directive, 1 => other.prop_map(ScriptLine::Other)]
}

/// The directives of `a` followed by those of `b`.
fn concat(a: Directives, b: Directives) -> Directives {
    Directives {
        rerun_if_changed: [a.rerun_if_changed, b.rerun_if_changed].concat(),
        rerun_if_env_changed: [a.rerun_if_env_changed, b.rerun_if_env_changed].concat(),
        link_search: [a.link_search, b.link_search].concat(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn dep_info_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        assert_inputs_well_formed(&rcache::depinfo::parse(&bytes))?;
    }

    #[test]
    fn dep_info_reads_back_what_rustc_writes(
        inputs in dep_inputs(false),
        env in proptest::collection::vec(
            ("[A-Z_][A-Z0-9_]{0,8}", proptest::option::of(env_value())),
            0..6,
        ),
    ) {
        let text = rustc_dep_info(&inputs, &env);
        let parsed = rcache::depinfo::parse(text.as_bytes());
        prop_assert_eq!(parsed.targets, vec![PathBuf::from("/t/deps/x-1.d")]);
        prop_assert_eq!(parsed.inputs, first_seen(&inputs), "{}", text);
        prop_assert_eq!(parsed.env_deps, env, "{}", text);
    }

    #[test]
    fn dep_info_reads_back_what_gcc_writes(
        inputs in dep_inputs(true),
        wrap in 1usize..4,
    ) {
        let text = gcc_dep_info(&inputs, wrap);
        let parsed = rcache::depinfo::parse(text.as_bytes());
        prop_assert_eq!(parsed.targets, vec![PathBuf::from("x.o")]);
        prop_assert_eq!(parsed.inputs, first_seen(&inputs), "{}", text);
    }

    #[test]
    fn dep_info_parser_takes_makefile_like_text(text in "([a-z/.\\\\ :$#\\n]|env-dep:|# ){0,200}") {
        assert_inputs_well_formed(&rcache::depinfo::parse(text.as_bytes()))?;
    }

    #[test]
    fn rustc_argv_classifier_takes_any_argv(args in argv()) {
        let _ = rcache::rustc::classify(&args);
    }

    #[test]
    fn c_argv_classifier_takes_any_argv(args in argv()) {
        let _ = rcache::cc::args::classify(&args);
    }

    #[test]
    fn directive_parser_takes_any_stdout(
        first in proptest::collection::vec(any::<u8>(), 0..256),
        second in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        // Line by line: two outputs joined by a newline declare what each declares, in order.
        let mut joined = first.clone();
        joined.push(b'\n');
        joined.extend(&second);
        prop_assert_eq!(
            Directives::parse(&joined),
            concat(Directives::parse(&first), Directives::parse(&second))
        );
    }

    #[test]
    fn directives_read_back_among_other_output(
        lines in proptest::collection::vec(script_line(), 0..16),
    ) {
        let mut stdout = Vec::new();
        let mut expected = Directives::default();
        for line in &lines {
            match line {
                ScriptLine::Directive { syntax, key, value, crlf } => {
                    stdout.extend(format!("{syntax}{key}={value}").as_bytes());
                    if *crlf {
                        stdout.push(b'\r');
                    }
                    match *key {
                        "rerun-if-changed" => expected.rerun_if_changed.push(value.clone()),
                        "rerun-if-env-changed" => {
                            expected.rerun_if_env_changed.push(value.clone())
                        }
                        "rustc-link-search" => {
                            // Cargo's `KIND=` prefixes are not part of the path.
                            let path = match value.split_once('=') {
                                Some((kind, path))
                                    if ["dependency", "crate", "native", "framework", "all"]
                                        .contains(&kind) =>
                                {
                                    path
                                }
                                _ => value,
                            };
                            expected.link_search.push(path.to_string());
                        }
                        _ => {}
                    }
                }
                ScriptLine::Other(bytes) => stdout.extend(bytes),
            }
            stdout.push(b'\n');
        }
        prop_assert_eq!(Directives::parse(&stdout), expected);
    }

    #[test]
    fn record_decoders_reject_garbage_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = entry::decode::<Entry>(&bytes);
        let _ = entry::decode::<Manifest>(&bytes);
    }

    #[test]
    fn remote_envelopes_reject_garbage_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        signed in any::<bool>(),
    ) {
        // With the envelopes' magic in front, so that the decoders get past the first check.
        for prefix in [&b""[..], b"RCE1\0", b"RCE1\x01", b"RCC1"] {
            let mut input = prefix.to_vec();
            input.extend(&bytes);
            let secret: Option<&[u8]> = signed.then_some(b"k");
            let _ = layout::unseal_entry(&[0; 32], &input, secret);
            let _ = layout::decode_candidate(&input);
        }
    }

    #[test]
    fn truncated_entries_never_decode_as_another_entry(
        stdout in proptest::collection::vec(any::<u8>(), 0..48),
        stderr in proptest::collection::vec(any::<u8>(), 0..48),
        out_dir in proptest::collection::vec(any::<u8>(), 0..24),
        compile_ms in any::<u64>(),
        created_unix_ms in any::<u64>(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let original = Entry {
            outputs: vec![],
            stdout,
            stderr,
            out_dir,
            compile_ms,
            created_unix_ms,
        };
        let bytes = entry::encode(&original);
        // The whole encoding decodes back, and every strict prefix of it fails.
        prop_assert_eq!(entry::decode::<Entry>(&bytes).ok(), Some(original));
        let cut = cut.index(bytes.len());
        prop_assert!(entry::decode::<Entry>(&bytes[..cut]).is_err(), "cut at {}", cut);
    }
}
