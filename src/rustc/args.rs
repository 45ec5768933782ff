//! Parses rustc's argv into an [`Invocation`], or a [`Passthrough`] reason why it cannot be cached.
//!
//! Two steps, as in ripgrep: the raw argv is walked once into typed fields, and every shape this
//! version cannot name the outputs of, or cannot key soundly, becomes a reason. An argument this
//! parser does not know is itself a reason (`unknown_argument`): rcache never guesses what an
//! option does to the output.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::argfile;
pub use super::passthrough::Passthrough;

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

const FLAGS: [&str; 8] = [
    "-g",
    "-O",
    "--test",
    "-v",
    "--verbose",
    "-V",
    "-vV",
    "--version",
];

/// Splits argv into (option, value) pairs and positionals.
enum Arg {
    Option(String, Option<String>),
    Positional(String),
}

fn tokenize(args: &[String]) -> Result<Vec<Arg>, Passthrough> {
    let mut tokens = Vec::with_capacity(args.len());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "-" || !arg.starts_with('-') {
            tokens.push(Arg::Positional(arg.clone()));
            continue;
        }
        if FLAGS.contains(&arg.as_str()) || arg == "-h" || arg == "--help" {
            tokens.push(Arg::Option(arg.clone(), None));
            continue;
        }
        if let Some((name, value)) = arg
            .split_once('=')
            .filter(|(name, _)| name.starts_with("--"))
        {
            if VALUE_OPTIONS.contains(&name) {
                tokens.push(Arg::Option(name.to_string(), Some(value.to_string())));
                continue;
            }
            return Err(Passthrough::UnknownArgument(arg.clone()));
        }
        if VALUE_OPTIONS.contains(&arg.as_str()) || SHORT_VALUE_OPTIONS.contains(&arg.as_str()) {
            let value = iter
                .next()
                .ok_or_else(|| Passthrough::MissingValue(arg.clone()))?;
            tokens.push(Arg::Option(arg.clone(), Some(value.clone())));
            continue;
        }
        let glued = SHORT_VALUE_OPTIONS
            .iter()
            .find(|short| arg.len() > 2 && arg.starts_with(*short));
        match glued {
            Some(short) => tokens.push(Arg::Option(short.to_string(), Some(arg[2..].to_string()))),
            None => return Err(Passthrough::UnknownArgument(arg.clone())),
        }
    }
    Ok(tokens)
}

/// Classifies a rustc argv (without the compiler path). `@argfile`s are expanded first.
pub fn classify(raw_args: &[OsString]) -> Result<Invocation, Passthrough> {
    let expanded = argfile::expand(raw_args).map_err(|_| Passthrough::BadArgfile)?;
    let args: Vec<String> = expanded
        .into_iter()
        .map(|arg| arg.into_string().map_err(|_| Passthrough::NonUtf8Argument))
        .collect::<Result<_, _>>()?;
    let tokens = tokenize(&args)?;

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
    let mut key_args = Vec::new();
    let mut probe = false;
    let mut print = false;
    let mut test_harness = false;

    for token in tokens {
        let (name, value) = match token {
            Arg::Positional(input) => {
                inputs.push(input);
                continue;
            }
            Arg::Option(name, value) => (name, value.unwrap_or_default()),
        };
        match name.as_str() {
            "-V" | "-vV" | "--version" | "-v" | "--verbose" | "-h" | "--help" | "--explain" => {
                probe = true;
                key_args.push(name);
            }
            "--print" => print = true,
            "--crate-name" => {
                crate_name = Some(value.clone());
                key_args.extend([name, value]);
            }
            "--crate-type" => {
                crate_types.extend(value.split(',').map(str::to_string));
                key_args.extend([name, value]);
            }
            "--emit" => {
                for emit in value.split(',') {
                    if emit.contains('=') {
                        return Err(Passthrough::EmitPath);
                    }
                    if !CACHED_EMITS.contains(&emit) {
                        return Err(Passthrough::EmitKind(emit.to_string()));
                    }
                    emits.push(emit.to_string());
                }
                key_args.extend([name, value]);
            }
            "--out-dir" => out_dir = Some(PathBuf::from(value)),
            "-o" => return Err(Passthrough::OutputFile),
            "--test" => {
                test_harness = true;
                key_args.push(name);
            }
            "--sysroot" => return Err(Passthrough::CustomSysroot),
            "--edition" => {
                edition = Some(value.clone());
                key_args.extend([name, value]);
            }
            "--target" => {
                target = Some(value.clone());
                key_args.extend([name, value]);
            }
            "--cfg" => cfgs.push(value),
            "--extern" => {
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
                key_args.extend([name, parsed.name.clone()]);
                externs.push(parsed);
            }
            "-L" => library_paths.push(value),
            "-l" => {
                native_libs.push(value.clone());
                key_args.extend([name, value]);
            }
            "--json" => {
                json_artifacts |= value.split(',').any(|kind| kind == "artifacts");
                key_args.extend([name, value]);
            }
            "--color" | "--diagnostic-width" => {}
            "-C" | "--codegen" => {
                let (key, setting) = match value.split_once('=') {
                    Some((key, setting)) => (key.to_string(), Some(setting.to_string())),
                    None => (value.clone(), None),
                };
                match key.as_str() {
                    "incremental" => return Err(Passthrough::Incremental),
                    "save-temps" if setting.as_deref() != Some("no") => {
                        return Err(Passthrough::SaveTemps);
                    }
                    "split-debuginfo" if setting.as_deref() != Some("off") => {
                        return Err(Passthrough::SplitDebuginfo);
                    }
                    "profile-use" | "profile-generate" | "profile-sample-use" => {
                        return Err(Passthrough::Profile);
                    }
                    "link-arg" | "link-args"
                        if setting.as_deref().is_some_and(names_response_file) =>
                    {
                        return Err(Passthrough::LinkerResponseFile);
                    }
                    _ => {}
                }
                key_args.extend(["-C".to_string(), value]);
                codegen.push((key, setting));
            }
            "-g" => {
                codegen.push(("debuginfo".into(), Some("2".into())));
                key_args.push(name);
            }
            "-O" => {
                codegen.push(("opt-level".into(), Some("2".into())));
                key_args.push(name);
            }
            _ => key_args.extend([name, value]),
        }
    }

    if probe || (print && (inputs.is_empty() || inputs == ["-"])) {
        return Err(Passthrough::Probe);
    }
    if print {
        return Err(Passthrough::PrintRequest);
    }
    let input = match inputs.as_slice() {
        [] => return Err(Passthrough::NoInput),
        [single] if single == "-" => return Err(Passthrough::StdinInput),
        [single] => PathBuf::from(single),
        _ => return Err(Passthrough::MultipleInputs),
    };
    let crate_name = crate_name.ok_or(Passthrough::NoCrateName)?;
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
    let target_is_linux = target
        .as_deref()
        .is_none_or(|target| target.contains("-linux-") && !target.ends_with(".json"));
    if !target_is_linux
        && crate_types
            .iter()
            .any(|kind| TARGET_NAMED_CRATE_TYPES.contains(&kind.as_str()))
    {
        return Err(Passthrough::TargetNaming);
    }
    if crate_types.iter().any(|kind| kind == "staticlib")
        && externs.iter().any(|ext| ext.path.is_some())
    {
        return Err(Passthrough::StaticlibDependencies);
    }
    let out_dir = out_dir.ok_or(Passthrough::NoOutDir)?;
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

/// True if a `-C link-arg(s)` value hands the linker driver an `@file` (directly, or through
/// `-Wl,@file` / `-Xlinker @file`).
fn names_response_file(value: &str) -> bool {
    value
        .split([' ', ','])
        .any(|word| word.starts_with('@') && word.len() > 1)
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
            ("-C incremental=/tmp/x", "incremental"),
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
