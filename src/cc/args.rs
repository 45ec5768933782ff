//! gcc/clang argv -> a typed [`CcInvocation`], or the [`CcPassthrough`] reason it is not cached.
//!
//! Cached: `-c` of one source to one object. Every argument is classified; one that rcache does
//! not know passes the call through, because it might name a file the key does not cover. The
//! key gets every argument except those that only name outputs: `-o`, `-MF`, `-MT` and `-MQ`
//! with their values (the caller's dep-file target is rewritten on a restore instead).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Language;
use super::passthrough::CcPassthrough;

/// One cacheable compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcInvocation {
    pub language: Language,
    /// The source as given (relative to the cwd, or absolute).
    pub source: PathBuf,
    /// The object: `-o`, or the source's stem with `.o` in the cwd.
    pub object: PathBuf,
    /// The arguments that go into the key, in order.
    pub key_args: Vec<String>,
    /// The dep file the caller asked for with `-MD`/`-MMD`.
    pub dep_file: Option<CallerDepFile>,
    /// `-gsplit-dwarf`: a `.dwo` beside the object.
    pub split_dwarf: bool,
    /// `-march=native`, `-mcpu=native`, `-mtune=native` as given, resolved for the key.
    pub native_flags: Vec<String>,
}

/// The caller's own dep file: where, and which targets its rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerDepFile {
    pub path: PathBuf,
    /// `-MT` (raw) and `-MQ` (quoted) targets in order; empty means the object, quoted.
    pub targets: Vec<DepTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepTarget {
    /// `-MT`: written exactly as given.
    Raw(String),
    /// `-MQ`: with Make's special characters quoted.
    Quoted(String),
}

impl CcInvocation {
    /// The `.dwo` file `-gsplit-dwarf` writes: the object with its extension replaced.
    pub fn dwo_path(&self) -> PathBuf {
        self.object.with_extension("dwo")
    }
}

/// Options whose value is the next argument (or joined), that change the object: keyed.
const KEYED_WITH_VALUE: [&str; 18] = [
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

/// `-f` options that write files rcache would not restore.
const EXTRA_OUTPUT_PREFIXES: [&str; 9] = [
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

/// `-f` options that name an input file the dep file does not list: the call is passed through
/// as an unknown argument rather than keyed by the file's name alone.
const UNLISTED_INPUT_PREFIXES: [&str; 9] = [
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

fn is_profile(arg: &str) -> bool {
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

/// The language of a source: `-x` if given (and not `none`), else its extension.
fn language_of(source: &str, x: Option<&str>) -> Result<Language, CcPassthrough> {
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

/// Classifies a compiler argv (without the compiler itself).
pub fn classify(args: &[OsString]) -> Result<CcInvocation, CcPassthrough> {
    let args: Vec<&str> = args
        .iter()
        .map(|arg| arg.to_str().ok_or(CcPassthrough::NonUtf8Argument))
        .collect::<Result<_, _>>()?;
    if args.iter().any(|arg| is_probe(arg)) {
        return Err(CcPassthrough::Probe);
    }
    let mut key_args: Vec<String> = Vec::with_capacity(args.len());
    let mut sources: Vec<(String, Option<String>)> = Vec::new();
    let mut language_flag: Option<String> = None;
    let (mut compile, mut preprocess, mut dependency_only, mut assembly) =
        (false, false, false, false);
    let mut output: Option<String> = None;
    let mut dep_mode = false;
    let mut dep_path: Option<String> = None;
    let mut targets: Vec<DepTarget> = Vec::new();
    let mut split_dwarf = false;
    let mut native_flags = Vec::new();

    let mut index = 0;
    while index < args.len() {
        let arg = args[index];
        index += 1;
        // The value of an option taking one: joined (`-ofoo`) or the next argument.
        let mut value_of = |option: &str| -> Result<String, CcPassthrough> {
            let joined = &arg[option.len()..];
            if !joined.is_empty() {
                return Ok(joined.to_string());
            }
            let next = args
                .get(index)
                .ok_or_else(|| CcPassthrough::MissingValue(option.to_string()))?;
            index += 1;
            Ok(next.to_string())
        };
        if arg.starts_with('@') {
            return Err(CcPassthrough::ResponseFile);
        }
        if arg == "-" {
            return Err(CcPassthrough::StdinInput);
        }
        if !arg.starts_with('-') {
            sources.push((arg.to_string(), language_flag.clone()));
            key_args.push(arg.to_string());
            continue;
        }
        match arg {
            "-c" => compile = true,
            "-E" => preprocess = true,
            "-S" => assembly = true,
            "-M" | "-MM" => dependency_only = true,
            "-MD" | "-MMD" => dep_mode = true,
            "-MP" => {}
            "-save-temps" | "--save-temps" => return Err(CcPassthrough::SaveTemps),
            "-gsplit-dwarf" => split_dwarf = true,
            "-include-pch" | "-emit-pch" => return Err(CcPassthrough::PrecompiledHeader),
            _ if arg.starts_with("-save-temps=") => return Err(CcPassthrough::SaveTemps),
            _ if arg.starts_with("-fpch") => return Err(CcPassthrough::PrecompiledHeader),
            _ if is_profile(arg) => return Err(CcPassthrough::Profile),
            _ if arg.starts_with("-fplugin") => return Err(CcPassthrough::Plugin),
            _ if EXTRA_OUTPUT_PREFIXES.iter().any(|p| arg.starts_with(p)) => {
                return Err(CcPassthrough::ExtraOutput);
            }
            _ if UNLISTED_INPUT_PREFIXES.iter().any(|p| arg.starts_with(p)) => {
                return Err(CcPassthrough::UnknownArgument(arg.to_string()));
            }
            _ if arg.starts_with("-o") => {
                output = Some(value_of("-o")?);
                continue;
            }
            _ if arg.starts_with("-MF") => {
                dep_path = Some(value_of("-MF")?);
                continue;
            }
            _ if arg.starts_with("-MT") => {
                targets.push(DepTarget::Raw(value_of("-MT")?));
                continue;
            }
            _ if arg.starts_with("-MQ") => {
                targets.push(DepTarget::Quoted(value_of("-MQ")?));
                continue;
            }
            _ if arg.starts_with("-x") => {
                let language = value_of("-x")?;
                key_args.push("-x".into());
                key_args.push(language.clone());
                language_flag = Some(language);
                continue;
            }
            _ if arg.starts_with("-Wp,") => {
                // `-Wp,-MD,file` asks the preprocessor for a dep file no driver option names.
                if arg.split(',').skip(1).any(|part| part.starts_with("-M")) {
                    return Err(CcPassthrough::UnknownArgument(arg.to_string()));
                }
            }
            _ if matches!(arg, "-march=native" | "-mcpu=native" | "-mtune=native") => {
                native_flags.push(arg.to_string());
            }
            _ => {
                if let Some(option) = KEYED_WITH_VALUE
                    .iter()
                    .filter(|option| arg.starts_with(**option))
                    .max_by_key(|option| option.len())
                {
                    let value = value_of(option)?;
                    key_args.push(option.to_string());
                    key_args.push(value);
                    continue;
                }
                if !KEYED_FLAG_PREFIXES.iter().any(|p| arg.starts_with(p)) {
                    return Err(CcPassthrough::UnknownArgument(arg.to_string()));
                }
            }
        }
        key_args.push(arg.to_string());
    }

    if preprocess {
        return Err(CcPassthrough::Preprocess);
    }
    if dependency_only {
        return Err(CcPassthrough::DependencyOnly);
    }
    if assembly {
        return Err(CcPassthrough::AssemblyOutput);
    }
    if !compile {
        return Err(CcPassthrough::Linking);
    }
    let (source, x) = match sources.as_slice() {
        [] => return Err(CcPassthrough::NoSource),
        [one] => one.clone(),
        _ => return Err(CcPassthrough::MultipleSources),
    };
    let language = language_of(&source, x.as_deref())?;
    let object = match output.as_deref() {
        Some("-") => return Err(CcPassthrough::OutputToStdout),
        Some(path) => PathBuf::from(path),
        None => {
            PathBuf::from(Path::new(&source).file_stem().unwrap_or_default()).with_extension("o")
        }
    };
    if split_dwarf {
        // The object names its `.dwo` (DW_AT_dwo_name), so with split DWARF the object's own
        // path changes its content and is keyed.
        key_args.push("-o".into());
        key_args.push(object.to_string_lossy().into_owned());
    }
    let dep_file = dep_mode.then(|| CallerDepFile {
        path: dep_path.map_or_else(|| object.with_extension("d"), PathBuf::from),
        targets,
    });
    Ok(CcInvocation {
        language,
        source: PathBuf::from(source),
        object,
        key_args,
        dep_file,
        split_dwarf,
        native_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<CcInvocation, CcPassthrough> {
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        classify(&args)
    }

    #[test]
    fn a_cc_rs_compile_is_cacheable() {
        let inv = parse(
            "-O0 -ffunction-sections -fdata-sections -fPIC -g -fno-omit-frame-pointer -m64 \
             -I csrc -Wall -Wextra -o /t/out/abc-add.o -c csrc/add.c",
        )
        .unwrap();
        assert_eq!(inv.language, Language::C);
        assert_eq!(inv.source, PathBuf::from("csrc/add.c"));
        assert_eq!(inv.object, PathBuf::from("/t/out/abc-add.o"));
        assert!(!inv.key_args.iter().any(|arg| arg.contains("/t/out")));
        assert!(inv.key_args.windows(2).any(|w| w == ["-I", "csrc"]));
        assert_eq!(inv.dep_file, None);
    }

    #[test]
    fn output_names_are_not_keyed() {
        let a = parse("-c x.cpp -o a.o -MD -MF a.d -MT a").unwrap();
        let b = parse("-c x.cpp -ob.o -MD -MFb.d -MQ b").unwrap();
        assert_eq!(a.key_args, b.key_args);
        assert_eq!(a.language, Language::Cxx);
        let dep = b.dep_file.unwrap();
        assert_eq!(dep.path, PathBuf::from("b.d"));
        assert_eq!(dep.targets, vec![DepTarget::Quoted("b".into())]);
        let default = parse("-c x.c -o obj/x.o -MMD").unwrap().dep_file.unwrap();
        assert_eq!(default.path, PathBuf::from("obj/x.d"));
        assert!(default.targets.is_empty());
        assert_eq!(parse("-c dir/x.c").unwrap().object, PathBuf::from("x.o"));
    }

    #[test]
    fn uncacheable_calls_have_reasons() {
        for (line, reason) in [
            ("x.o -o app", "cc_linking"),
            ("-E x.c", "cc_preprocess_only"),
            ("-M x.c", "cc_dependency_only"),
            ("-c a.c b.c", "cc_multiple_sources"),
            ("-c -", "cc_stdin_input"),
            ("-c x.h", "cc_precompiled_header"),
            ("-c x.c -fprofile-generate", "cc_profile"),
            ("-c x.c --coverage", "cc_profile"),
            ("-c x.c -save-temps", "cc_save_temps"),
            ("-c x.c --frobnicate", "cc_unknown_argument"),
            ("-c x.c -dM", "cc_unknown_argument"),
            (
                "-c x.c -fsanitize-ignorelist=list.txt",
                "cc_unknown_argument",
            ),
            ("-c x.c -fplugin=p.so", "cc_plugin"),
            ("-c x.c -fdump-tree-all", "cc_extra_output"),
            ("-c x.c -S", "cc_assembly_output"),
            ("-c x.c -o -", "cc_output_to_stdout"),
            ("-c x.c -Xclang -emit-pch", "cc_unknown_argument"),
            ("-c x.c -Wp,-MD,x.d", "cc_unknown_argument"),
            ("-c x.s", "cc_unsupported_language"),
            ("--version", "probe"),
            ("@args.txt", "cc_response_file"),
            ("-c x.c -o", "cc_missing_value"),
        ] {
            let got = parse(line).map(|_| ()).unwrap_err().to_string();
            assert_eq!(got, reason, "{line}");
        }
    }

    #[test]
    fn native_flags_and_split_dwarf_are_noted() {
        let inv = parse("-c x.c -march=native -g -gsplit-dwarf -o o/x.o").unwrap();
        assert_eq!(inv.native_flags, vec!["-march=native".to_string()]);
        assert!(inv.split_dwarf);
        assert_eq!(inv.dwo_path(), PathBuf::from("o/x.dwo"));
        let other = parse("-c x.c -march=native -g -gsplit-dwarf -o p/x.o").unwrap();
        assert_ne!(inv.key_args, other.key_args, "the object names its .dwo");
    }
}
