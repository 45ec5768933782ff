//! Parses rustc's argv into an [`Invocation`], or a [`Passthrough`] reason why it cannot be cached.
//!
//! Two steps:
//! 1. [`tokens`]: the expanded argv -> raw tokens, each option rustc would read with its value,
//!    uninterpreted. An argument this parser does not know is itself a reason
//!    (`unknown_argument`): rcache never guesses what an option does to the output.
//! 2. [`build`]: the tokens -> the typed [`Invocation`] and the arguments of its key. Every shape
//!    this version cannot name the outputs of, or cannot key soundly, is refused by a named rule
//!    in [`rules`], each testable alone.
//!
//! `-C incremental` (cargo's dev profile) is cached: the key says that the compile is
//! incremental, not where its incremental dir is (docs/design.md §6d).

mod rules;
mod tokens;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::argfile;
pub use super::passthrough::Passthrough;
use tokens::Token;

/// One `--extern name[=path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extern {
    pub name: String,
    pub path: Option<PathBuf>,
}

/// A cacheable rustc invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub crate_name: String,
    pub crate_types: Vec<String>,
    /// `--emit` kinds (dep-info, metadata, link); `link` when none was given.
    pub emits: Vec<String>,
    pub out_dir: PathBuf,
    pub input: PathBuf,
    pub externs: Vec<Extern>,
    /// `--cfg` values, sorted.
    pub cfgs: Vec<String>,
    /// `-C key[=value]` in order.
    pub codegen: Vec<(String, Option<String>)>,
    pub edition: Option<String>,
    pub target: Option<String>,
    /// `-L [kind=]path` values.
    pub library_paths: Vec<String>,
    /// `-l [kind[:modifiers]=]name[:rename]` values.
    pub native_libs: Vec<String>,
    pub extra_filename: String,
    /// `--json=...artifacts...`: rustc prints artifact notifications.
    pub json_artifacts: bool,
    /// `--test`: a test harness executable (a `bin` for naming and restoring).
    pub test_harness: bool,
    /// The arguments that go into the key, in order, with output-neutral paths removed
    /// (`--out-dir`, `-L`, `--extern` paths, `--diagnostic-width`, `--color`) and `--cfg` sorted.
    pub key_args: Vec<String>,
}

impl Invocation {
    pub fn emits(&self, kind: &str) -> bool {
        self.emits.iter().any(|emit| emit == kind)
    }

    /// The `-C target-cpu` value, if any.
    pub fn target_cpu(&self) -> Option<&str> {
        self.codegen_value("target-cpu")
    }

    /// True if producing the `link` outputs runs the linker (bin, test, proc-macro, dylib,
    /// cdylib). rlib and staticlib are archives rustc writes itself.
    pub fn runs_linker(&self) -> bool {
        self.emits("link")
            && self
                .crate_types
                .iter()
                .any(|kind| matches!(kind.as_str(), "bin" | "proc-macro" | "dylib" | "cdylib"))
    }

    /// The last value of `-C key=value`, if any.
    pub fn codegen_value(&self, key: &str) -> Option<&str> {
        self.codegen
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .and_then(|(_, value)| value.as_deref())
    }
}

/// Classifies a rustc argv (without the compiler path). `@argfile`s are expanded first, then
/// the argv is read into [`tokens::Token`]s, which [`build`] turns into the invocation.
pub fn classify(raw_args: &[OsString]) -> Result<Invocation, Passthrough> {
    let expanded = argfile::expand(raw_args).map_err(|_| Passthrough::BadArgfile)?;
    let args: Vec<String> = expanded
        .into_iter()
        .map(|arg| arg.into_string().map_err(|_| Passthrough::NonUtf8Argument))
        .collect::<Result<_, _>>()?;
    build(tokens::tokenize(&args)?)
}

/// Step two: the typed invocation from the tokens. Every token rule is checked first, in argv
/// order; then the tokens are gathered into fields and the key's arguments; then the invocation
/// rules run in a fixed order.
fn build(tokens: Vec<Token>) -> Result<Invocation, Passthrough> {
    rules::check_tokens(&tokens)?;

    let mut crate_name = None;
    let mut crate_types = Vec::new();
    let mut emits = Vec::new();
    let mut out_dir = None;
    let mut inputs = Vec::new();
    let mut externs = Vec::new();
    let mut cfgs = Vec::new();
    let mut codegen = Vec::new();
    let mut edition = None;
    let mut target = None;
    let mut library_paths = Vec::new();
    let mut native_libs = Vec::new();
    let mut json_artifacts = false;
    let mut key_args: Vec<String> = Vec::new();
    let mut probe = false;
    let mut print = false;
    let mut test_harness = false;

    for token in tokens {
        match token {
            Token::Input(input) => inputs.push(input),
            Token::Probe(spelling) => {
                probe = true;
                key_args.push(spelling.to_string());
            }
            Token::Explain(_) => {
                probe = true;
                key_args.push("--explain".to_string());
            }
            Token::Print(_) => print = true,
            Token::CrateName(value) => {
                crate_name = Some(value.clone());
                key_args.extend(["--crate-name".to_string(), value]);
            }
            Token::CrateType(value) => {
                crate_types.extend(value.split(',').map(str::to_string));
                key_args.extend(["--crate-type".to_string(), value]);
            }
            Token::Emit(value) => {
                // Checked by `rules::check_emit`: plain cached kinds only.
                emits.extend(value.split(',').map(str::to_string));
                key_args.extend(["--emit".to_string(), value]);
            }
            Token::OutDir(value) => out_dir = Some(PathBuf::from(value)),
            // Refused by `rules::reject_output_file` and `rules::reject_custom_sysroot`.
            Token::Output(_) | Token::Sysroot(_) => {}
            Token::Test => {
                test_harness = true;
                key_args.push("--test".to_string());
            }
            Token::Edition(value) => {
                edition = Some(value.clone());
                key_args.extend(["--edition".to_string(), value]);
            }
            Token::Target(value) => {
                target = Some(value.clone());
                key_args.extend(["--target".to_string(), value]);
            }
            Token::Cfg(value) => cfgs.push(value),
            Token::Extern(value) => {
                let parsed = match value.split_once('=') {
                    Some((name, path)) => Extern {
                        name: name.to_string(),
                        path: Some(PathBuf::from(path)),
                    },
                    None => Extern {
                        name: value.clone(),
                        path: None,
                    },
                };
                // The path is replaced by the file's content hash in the key.
                key_args.extend(["--extern".to_string(), parsed.name.clone()]);
                externs.push(parsed);
            }
            Token::LibraryPath(value) => library_paths.push(value),
            Token::NativeLib(value) => {
                native_libs.push(value.clone());
                key_args.extend(["-l".to_string(), value]);
            }
            Token::Json(value) => {
                json_artifacts |= value.split(',').any(|kind| kind == "artifacts");
                key_args.extend(["--json".to_string(), value]);
            }
            Token::Color(_) | Token::DiagnosticWidth(_) => {}
            Token::Codegen(value) => {
                let (key, setting) = rules::split_codegen(&value);
                codegen.push((key.to_string(), setting.map(str::to_string)));
                // The incremental dir is rustc's own state, not an input: keyed as whether the
                // compile is incremental, not where (docs/design.md §2c).
                let keyed = if key == "incremental" {
                    key.to_string()
                } else {
                    value
                };
                key_args.extend(["-C".to_string(), keyed]);
            }
            Token::Debuginfo => {
                codegen.push(("debuginfo".into(), Some("2".into())));
                key_args.push("-g".to_string());
            }
            Token::Optimize => {
                codegen.push(("opt-level".into(), Some("2".into())));
                key_args.push("-O".to_string());
            }
            Token::Other(spelling, value) => key_args.extend([spelling.to_string(), value]),
        }
    }

    rules::reject_probe(probe, print, &inputs)?;
    let input = rules::single_input(&inputs)?;
    let crate_name = rules::require_crate_name(crate_name)?;
    let crate_types = rules::check_crate_types(crate_types, test_harness)?;
    rules::check_target_naming(target.as_deref(), &crate_types)?;
    rules::reject_staticlib_dependencies(&crate_types, &externs)?;
    let out_dir = rules::require_out_dir(out_dir)?;

    if emits.is_empty() {
        emits.push("link".to_string());
    }
    cfgs.sort();
    for cfg in &cfgs {
        key_args.extend(["--cfg".to_string(), cfg.clone()]);
    }
    let extra_filename = codegen
        .iter()
        .rev()
        .find(|(key, _)| key == "extra-filename")
        .and_then(|(_, value)| value.clone())
        .unwrap_or_default();
    key_args.extend(["input".to_string(), input.to_string_lossy().into_owned()]);

    Ok(Invocation {
        crate_name,
        crate_types,
        emits,
        out_dir,
        input,
        externs,
        cfgs,
        codegen,
        edition,
        target,
        library_paths,
        native_libs,
        extra_filename,
        json_artifacts,
        test_harness,
        key_args,
    })
}

/// The static archives an rlib bundles: `-l static=name` (unless `-bundle`), found on the `-L`
/// paths that can hold native libraries. `Err` names a library that cannot be found.
pub fn bundled_static_libs(
    invocation: &Invocation,
    cwd: &Path,
) -> Result<Vec<PathBuf>, Passthrough> {
    let mut found = Vec::new();
    for lib in &invocation.native_libs {
        let Some((kind, name)) = lib.split_once('=') else {
            continue;
        };
        let (kind, modifiers) = kind.split_once(':').unwrap_or((kind, ""));
        if kind != "static" || modifiers.split(',').any(|modifier| modifier == "-bundle") {
            continue;
        }
        let name = name.split_once(':').map_or(name, |(name, _)| name);
        let file_name = if modifiers.split(',').any(|modifier| modifier == "+verbatim") {
            name.to_string()
        } else {
            format!("lib{name}.a")
        };
        let candidate = invocation.library_paths.iter().find_map(|search| {
            let (kind, dir) = search.split_once('=').unwrap_or(("all", search));
            if !matches!(kind, "all" | "native") {
                return None;
            }
            let path = cwd.join(dir).join(&file_name);
            path.is_file().then_some(path)
        });
        match candidate {
            Some(path) => found.push(path),
            None => return Err(Passthrough::StaticLibNotFound(name.to_string())),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    const CARGO_LIB: &str = "--crate-name demo --edition=2024 src/lib.rs --error-format=json \
        --json=diagnostic-rendered-ansi,artifacts,future-incompat --crate-type lib \
        --emit=dep-info,metadata,link -C embed-bitcode=no -C debuginfo=2 \
        --check-cfg cfg(docsrs,test) -C metadata=8dd7 -C extra-filename=-01f2 \
        --out-dir /p/target/debug/deps -L dependency=/p/target/debug/deps \
        --extern dep=/p/target/debug/deps/libdep-aa.rmeta --cfg feature=\"b\" --cfg feature=\"a\"";

    #[test]
    fn parses_a_cargo_lib_invocation() {
        let inv = classify(&args(CARGO_LIB)).unwrap();
        assert_eq!(inv.crate_name, "demo");
        assert_eq!(inv.crate_types, vec!["lib"]);
        assert_eq!(inv.emits, vec!["dep-info", "metadata", "link"]);
        assert_eq!(inv.out_dir, PathBuf::from("/p/target/debug/deps"));
        assert_eq!(inv.input, PathBuf::from("src/lib.rs"));
        assert_eq!(inv.extra_filename, "-01f2");
        assert_eq!(inv.edition.as_deref(), Some("2024"));
        assert!(inv.json_artifacts);
        assert_eq!(inv.cfgs, vec!["feature=\"a\"", "feature=\"b\""]);
        assert_eq!(
            inv.externs,
            vec![Extern {
                name: "dep".into(),
                path: Some("/p/target/debug/deps/libdep-aa.rmeta".into())
            }]
        );
        let joined = inv.key_args.join(" ");
        assert!(
            !joined.contains("/p/target"),
            "paths leaked into key: {joined}"
        );
    }

    #[test]
    fn incremental_compiles_are_keyed_apart_but_not_by_their_dir() {
        let plain = classify(&args(CARGO_LIB)).unwrap();
        let here = classify(&args(&format!(
            "{CARGO_LIB} -C incremental=/p/target/debug/incremental"
        )))
        .unwrap();
        let there = classify(&args(&format!(
            "{CARGO_LIB} -Cincremental=/q/t/debug/incremental"
        )))
        .unwrap();
        assert_eq!(here.key_args, there.key_args);
        assert_ne!(here.key_args, plain.key_args);
        assert!(!here.key_args.iter().any(|arg| arg.contains("/p/")));
    }

    #[test]
    fn key_args_ignore_cfg_order_and_out_dir() {
        let a = classify(&args(CARGO_LIB)).unwrap();
        let swapped = CARGO_LIB
            .replace(
                "--cfg feature=\"b\" --cfg feature=\"a\"",
                "--cfg feature=\"a\" --cfg feature=\"b\"",
            )
            .replace("/p/target/debug/deps ", "/q/other/deps ");
        let b = classify(&args(&swapped)).unwrap();
        assert_eq!(a.key_args, b.key_args);
    }

    #[test]
    fn probes_pass_through() {
        assert_eq!(classify(&args("-vV")), Err(Passthrough::Probe));
        assert_eq!(
            classify(&args(
                "- --crate-name ___ --print=file-names --crate-type bin"
            )),
            Err(Passthrough::Probe)
        );
    }

    #[test]
    fn uncacheable_shapes_have_reasons() {
        let cases = [
            (
                "--crate-type cdylib --target x86_64-pc-windows-msvc",
                "target_naming",
            ),
            ("--crate-type staticlib", "staticlib_dependencies"),
            ("-o out.rlib", "output_file"),
            ("--emit=link=foo.rlib", "emit_path"),
            ("--emit=llvm-ir", "emit_kind"),
            ("-C save-temps", "save_temps"),
            ("--frobnicate", "unknown_argument"),
            ("-C link-arg=@/tmp/args", "linker_response_file"),
            ("-C link-arg=-Wl,@/tmp/args", "linker_response_file"),
            (
                "-C link-arg=-Xlinker -C link-arg=@/tmp/args",
                "linker_response_file",
            ),
        ];
        for (extra, reason) in cases {
            let line = format!("{CARGO_LIB} {extra}");
            let err = classify(&args(&line)).unwrap_err();
            assert_eq!(err.to_string(), reason, "for {extra}");
        }
    }

    #[test]
    fn linked_crate_types_are_cacheable() {
        for kind in ["bin", "proc-macro", "dylib", "cdylib"] {
            let line = CARGO_LIB.replace("--crate-type lib", &format!("--crate-type {kind}"));
            let inv = classify(&args(&line)).unwrap();
            assert!(inv.runs_linker(), "{kind}");
        }
        let test = CARGO_LIB.replace("--crate-type lib", "--test");
        let inv = classify(&args(&test)).unwrap();
        assert!(inv.test_harness && inv.runs_linker());
        assert!(!classify(&args(CARGO_LIB)).unwrap().runs_linker());
    }

    #[test]
    fn glued_short_options() {
        let inv = classify(&args(&format!("{CARGO_LIB} -Copt-level=3 -Ldependency=/x"))).unwrap();
        assert!(
            inv.codegen
                .contains(&("opt-level".into(), Some("3".into())))
        );
        assert!(inv.library_paths.contains(&"dependency=/x".to_string()));
    }

    #[test]
    fn finds_bundled_static_libs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libfoo.a"), b"!<arch>\n").unwrap();
        let line = format!(
            "{CARGO_LIB} -l static=foo -L native={} -l dylib=m",
            dir.path().display()
        );
        let inv = classify(&args(&line)).unwrap();
        let libs = bundled_static_libs(&inv, Path::new("/")).unwrap();
        assert_eq!(libs, vec![dir.path().join("libfoo.a")]);
        let missing = classify(&args(&format!("{CARGO_LIB} -l static=nope"))).unwrap();
        assert!(bundled_static_libs(&missing, Path::new("/")).is_err());
    }
}
