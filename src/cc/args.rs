//! gcc/clang argv -> a typed [`CcInvocation`], or the [`CcPassthrough`] reason it is not cached.
//!
//! Cached: `-c` of one source to one object. Two steps:
//! 1. [`tokens`]: the argv -> raw tokens, each option with its value, as the driver reads them;
//! 2. the [`rules`] judge the tokens, each rule a named function (a link, recognised before any
//!    compile rule, is `cc_linking`), and `build` makes the invocation from them.
//!
//! Every argument is classified; one that rcache does not know passes the call through, because
//! it might name a file the key does not cover. The key gets every argument except those that
//! only name outputs: `-o`, `-MF`, `-MT` and `-MQ` with their values (the caller's dep-file
//! target is rewritten on a restore instead).

mod rules;
mod tokens;

use std::ffi::OsString;
use std::path::PathBuf;

use super::Language;
use super::passthrough::CcPassthrough;
use tokens::CcToken;

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

/// Classifies a compiler argv (without the compiler itself): the argv is read into
/// [`tokens::CcToken`]s, judged by the [`rules`] in the order that module gives, and the
/// invocation is built from the tokens.
pub fn classify(args: &[OsString]) -> Result<CcInvocation, CcPassthrough> {
    let args: Vec<&str> = args
        .iter()
        .map(|arg| arg.to_str().ok_or(CcPassthrough::NonUtf8Argument))
        .collect::<Result<_, _>>()?;
    rules::reject_probe(&args)?;
    let tokens = tokens::tokenize(&args);
    rules::recognise_link(&tokens)?;
    rules::check_tokens(&tokens)?;
    build(&tokens)
}

/// Step two: the typed invocation from tokens that passed every token rule. Every flag and
/// positional is keyed as written; `-o`, `-MF`, `-MT` and `-MQ` only name outputs.
fn build(tokens: &[CcToken]) -> Result<CcInvocation, CcPassthrough> {
    let mut key_args: Vec<String> = Vec::with_capacity(tokens.len());
    let mut sources: Vec<(&str, Option<&str>)> = Vec::new();
    let mut language_flag: Option<&str> = None;
    let mut output: Option<&str> = None;
    let mut dep_mode = false;
    let mut dep_path: Option<&str> = None;
    let mut targets: Vec<DepTarget> = Vec::new();
    let mut split_dwarf = false;
    let mut native_flags = Vec::new();

    for token in tokens {
        match *token {
            CcToken::Input(arg) => {
                sources.push((arg, language_flag));
                key_args.push(arg.to_string());
            }
            CcToken::Flag(arg) => {
                match arg {
                    "-MD" | "-MMD" => dep_mode = true,
                    "-gsplit-dwarf" => split_dwarf = true,
                    _ if tokens::is_native_flag(arg) => native_flags.push(arg.to_string()),
                    _ => {}
                }
                key_args.push(arg.to_string());
            }
            CcToken::Value { option, value } => match option {
                "-o" => output = Some(value),
                "-MF" => dep_path = Some(value),
                "-MT" => targets.push(DepTarget::Raw(value.to_string())),
                "-MQ" => targets.push(DepTarget::Quoted(value.to_string())),
                "-x" => {
                    key_args.extend(["-x".to_string(), value.to_string()]);
                    language_flag = Some(value);
                }
                _ => key_args.extend([option.to_string(), value.to_string()]),
            },
            // Refused by the token rules before the build.
            CcToken::ResponseFile(_)
            | CcToken::Stdin
            | CcToken::Unknown(_)
            | CcToken::MissingValue(_) => {}
        }
    }

    rules::check_mode(tokens)?;
    let (source, x) = rules::single_source(&sources)?;
    let language = rules::language_of(source, x)?;
    let object = rules::object_path(output, source)?;
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

    /// The link rustc 1.95.0 runs for a `fn main() {}` bin (`rustc --print link-args`), without
    /// the `cc` word; toolchain paths shortened to `$TC`.
    const RUSTC_BIN_LINK: &str = "-m64 /t/rustcyUHQi4/symbols.o \
        /t/app.main.235e3519f142be8b-cgu.0.rcgu.o /t/app.7uphl2gdwrzn8975hpe22o7c7.rcgu.o \
        -Wl,--as-needed -Wl,-Bstatic $TC/lib/libstd-d1237ef7159db0a2.rlib \
        $TC/lib/libpanic_unwind-4be5972b22d3a6da.rlib $TC/lib/libobject-2a81194c9d07bbf6.rlib \
        $TC/lib/libcore-120cbae4e86ec454.rlib $TC/lib/libcompiler_builtins-27cfc16bdf3bb694.rlib \
        -Wl,-Bdynamic -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -L /t/rustcyUHQi4/raw-dylibs \
        -B$TC/bin/gcc-ld -fuse-ld=lld -Wl,--eh-frame-hdr -Wl,-z,noexecstack -L $TC/lib \
        -o /t/app -Wl,--gc-sections -pie -Wl,-z,relro,-z,now -nodefaultlibs";

    /// The same for a `cdylib` (rlibs left out).
    const RUSTC_CDYLIB_LINK: &str = "-Wl,--version-script=/t/out/rustcEw3c41/list \
        -Wl,--no-undefined-version -m64 /t/out/rustcEw3c41/symbols.o \
        /t/out/lib.lib.c6f551dc431569fb-cgu.0.rcgu.o /t/out/lib.8nzksehaabot1t4lzbzhnb3r2.rcgu.o \
        -Wl,--as-needed -Wl,-Bstatic -Wl,-Bdynamic -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc \
        -L /t/out/rustcEw3c41/raw-dylibs -B$TC/bin/gcc-ld -fuse-ld=lld -Wl,--eh-frame-hdr \
        -Wl,-z,noexecstack -L $TC/lib -o /t/out/liblib.so -Wl,--gc-sections -shared \
        -Wl,-z,relro,-z,now -nodefaultlibs";

    #[test]
    fn rustc_links_are_counted_as_links() {
        for line in [RUSTC_BIN_LINK, RUSTC_CDYLIB_LINK] {
            assert_eq!(parse(line), Err(CcPassthrough::Linking), "{line}");
        }
        // What rustc adds for `-C link-arg`s the compile rules would refuse is still a link.
        for extra in [
            "-T link.x",
            "-fprofile-generate",
            "-save-temps",
            "-Wl,-Map=/t/app.map",
        ] {
            let line = format!("{RUSTC_BIN_LINK} {extra}");
            assert_eq!(parse(&line), Err(CcPassthrough::Linking), "{extra}");
        }
    }

    #[test]
    fn a_compile_with_link_options_is_never_a_link() {
        for (line, reason) in [
            ("-c x.c -B/tc/bin -o x.o", "cc_unknown_argument"),
            ("-c x.c -nodefaultlibs -o x.o", "cc_unknown_argument"),
            ("-S x.c -B/tc/bin", "cc_unknown_argument"),
            ("-E x.c -nodefaultlibs", "cc_unknown_argument"),
            ("-MM x.c -B/tc/bin", "cc_unknown_argument"),
            ("--compile x.c -B/tc/bin", "cc_unknown_argument"),
            ("-Xclang -emit-obj x.c -B/tc/bin", "cc_unknown_argument"),
            ("@args.rsp -B/tc/bin", "cc_response_file"),
            ("-c x.c -fuse-ld=lld -pie -Wl,-z,now -o x.o", "ok"),
            ("-S x.c -fuse-ld=lld", "cc_assembly_output"),
        ] {
            let got = parse(line).map_or_else(|reason| reason.to_string(), |_| "ok".into());
            assert_eq!(got, reason, "{line}");
        }
        // A `-c` that is the value of `-Xlinker` goes to the linker: the call links.
        assert_eq!(parse("x.o -Xlinker -c -B/x"), Err(CcPassthrough::Linking));
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
