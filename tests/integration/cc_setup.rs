//! The C/C++ setups README documents, with the real `cc` crate (issue 19): every form builds
//! byte for byte what a plain build builds, probes included (`sysprobe_ws`: compiler-family detection
//! and `flag_if_supported`, whose answers are compiled into the binary), and the C/C++ compiles
//! of a build script that reruns hit. Also rcache started as if it were the compiler
//! (`rcache -E x.c`), which the `cc` crate does when it takes rcache for the compiler.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{RCACHE, Run, Sandbox, assert_same_files, run_command};

/// The C and C++ sources ccsys's build script compiles, as the `cc` crate names them.
const SOURCES: [&str; 2] = ["csrc/sum.c", "csrc/twice.cpp"];

/// Every output a build leaves that a plain build also makes: `debug/deps`, the binary, and
/// the build script's run dir (`OUT_DIR`, its `output` with the directives, `stderr`). The
/// script's binary dir is left out: rcache keeps its launcher there.
fn outputs(target: &Path) -> BTreeMap<String, Vec<u8>> {
    let debug = target.join("debug");
    let mut files = BTreeMap::new();
    let mut roots = vec![debug.join("deps"), debug.join("ccapp")];
    for entry in fs::read_dir(debug.join("build")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("output").is_file() {
            roots.push(dir);
        }
    }
    assert!(roots.len() == 3, "one run dir of ccsys expected: {roots:?}");
    while let Some(path) = roots.pop() {
        if path.is_dir() {
            roots.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let name = path.strip_prefix(&debug).unwrap().display().to_string();
            files.insert(name, fs::read(&path).unwrap());
        }
    }
    files
}

/// One documented form: the environment it adds to a cargo build.
struct Form {
    name: &'static str,
    env: Vec<(&'static str, String)>,
}

impl Form {
    /// Whether the user set `CC`/`CXX`: the `cc` crate then echoes their values into the
    /// script's output (`CC = Some(...)`) and declares the variables it read on that path
    /// (`rerun-if-env-changed=CC_KNOWN_WRAPPER_CUSTOM`, ...), so of that file only the other
    /// directives are compared. Everything else, byte for byte.
    fn sets_cc(&self) -> bool {
        self.env.iter().any(|(name, _)| *name == "CC")
    }

    fn comparable(&self, mut files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
        if self.sets_cc() {
            for (name, bytes) in files.iter_mut() {
                if name.ends_with("/output") {
                    *bytes = directives(bytes);
                }
            }
        }
        files
    }
}

/// The `cargo:` lines of a script's output, without `rerun-if-env-changed`.
fn directives(output: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(output)
        .lines()
        .filter(|line| line.starts_with("cargo:") && !line.contains("rerun-if-env-changed="))
        .flat_map(|line| format!("{line}\n").into_bytes())
        .collect()
}

fn forms(links: &Path) -> Vec<Form> {
    let path = format!("{}:{}", links.display(), std::env::var("PATH").unwrap());
    vec![
        Form {
            name: "CC=\"rcache cc\" with CC_KNOWN_WRAPPER_CUSTOM=rcache",
            env: vec![
                ("CC", format!("{RCACHE} cc")),
                ("CXX", format!("{RCACHE} c++")),
                ("CC_KNOWN_WRAPPER_CUSTOM", "rcache".into()),
            ],
        },
        Form {
            // Without the wrapper setting, the `cc` crate takes rcache for the compiler and
            // probes `rcache -E ...`: answered as `rcache cc -E ...`.
            name: "CC=\"rcache cc\" alone",
            env: vec![
                ("CC", format!("{RCACHE} cc")),
                ("CXX", format!("{RCACHE} c++")),
            ],
        },
        Form {
            name: "the symlink form",
            env: vec![("PATH", path)],
        },
        Form {
            name: "zero config",
            env: vec![],
        },
    ]
}

/// The directory of compiler-named links to rcache, for the symlink form.
fn symlink_dir(sb: &Sandbox) -> PathBuf {
    let dir = sb.root.join("rcache-bin");
    fs::create_dir_all(&dir).unwrap();
    for name in ["cc", "c++", "gcc", "g++"] {
        symlink(RCACHE, dir.join(name)).unwrap();
    }
    dir
}

fn build(sb: &Sandbox, form: &Form, extra: &[(&str, &str)], what: &str) -> Run {
    let mut cargo = sb
        .cargo(&["build"])
        .named(&format!("{what} ({})", form.name))
        .env_remove("CC")
        .env_remove("CXX");
    for (name, value) in &form.env {
        cargo = cargo.env(name, value);
    }
    for (name, value) in extra {
        cargo = cargo.env(name, value);
    }
    cargo.ok()
}

fn cc_events<'a>(run: &'a Run, source: &str) -> Vec<&'a Value> {
    run.events
        .iter()
        .filter(|e| e["kind"] == "cc" && e["crate"] == source)
        .collect()
}

#[test]
fn every_documented_form_builds_what_a_plain_build_builds_and_reruns_hit() {
    let sb = Sandbox::with_fixture("sysprobe_ws");
    sb.cargo(&["build"])
        .named("plain build")
        .env_remove("CC")
        .env_remove("CXX")
        .plain_remapped()
        .ok();
    let plain = outputs(&sb.target);
    let app = sb.run_program_in(&sb.target, "ccapp");
    assert!(
        app.contains("family=gnu") && app.contains("-ffunction-sections"),
        "the probes found gcc and its flags:\n{app}"
    );
    let links = symlink_dir(&sb);
    for form in forms(&links) {
        // A fresh store: the first build runs every compile of this form.
        let _ = fs::remove_dir_all(&sb.store);
        sb.clean();
        let cold = build(&sb, &form, &[], "cold build");
        assert!(
            !cold.stderr.contains("Compiler family detection failed")
                && !cold.stderr.contains("unexpected argument"),
            "{}: {}",
            form.name,
            cold.stderr
        );
        let compare = |what: &str| {
            let expected = form.comparable(plain.clone());
            let actual = form.comparable(outputs(&sb.target));
            assert_same_files(&expected, &actual, &format!("{} ({what})", form.name));
        };
        compare("cold build");
        for source in SOURCES {
            let events = cc_events(&cold, source);
            assert!(
                events.iter().any(|e| e["outcome"] == "miss"),
                "{}: {source} compiled through rcache: {events:?}",
                form.name
            );
        }
        // Cargo's own checks see nothing to redo: no compile, no script run.
        let again = build(&sb, &form, &[], "no-op build");
        assert!(
            again.events.is_empty(),
            "{}: {}",
            form.name,
            again.describe_events()
        );
        // The script reruns (its run is not restored): its C/C++ compiles hit.
        sb.clean();
        let rerun = build(&sb, &form, &[("RCACHE_BUILD_SCRIPTS", "off")], "rerun");
        compare("rerun");
        for source in SOURCES {
            let events = cc_events(&rerun, source);
            assert!(
                !events.is_empty() && events.iter().all(|e| e["outcome"] == "hit"),
                "{}: {source} hits on the rerun: {events:?}",
                form.name
            );
        }
        let stats = sb.stats();
        let routed = stats["build_scripts_cc_routed"].as_u64().unwrap();
        let expected = match form.name {
            "zero config" | "the symlink form" => 2,
            _ => 0,
        };
        assert_eq!(routed, expected, "{}: routed script runs", form.name);
    }
}

#[test]
fn zero_config_can_be_turned_off_and_leaves_a_users_cc_alone() {
    let sb = Sandbox::with_fixture("sysprobe_ws");
    let quiet = Form {
        name: "zero config, off",
        env: vec![("RCACHE_BUILD_SCRIPT_CC", "off".into())],
    };
    let run = build(&sb, &quiet, &[], "build");
    for source in SOURCES {
        assert!(cc_events(&run, source).is_empty(), "{source}: not routed");
    }
    assert_eq!(sb.stats()["build_scripts_cc_routed"], 0);
    // A user's own CC (here the real compiler, by path) is what the script uses, unrouted.
    sb.clean();
    let users = Form {
        name: "a user's CC",
        env: vec![("CC", "/usr/bin/cc".into()), ("CXX", "/usr/bin/c++".into())],
    };
    let run = build(&sb, &users, &[("RCACHE_RECACHE", "1")], "build");
    for source in SOURCES {
        assert!(cc_events(&run, source).is_empty(), "{source}: not routed");
    }
    assert_eq!(sb.stats()["build_scripts_cc_routed"], 0);
}

/// `rcache <args>` with a first argument that is a compiler option or a source.
fn rcache_as_compiler(sb: &Sandbox, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut cmd = sb.rcache(args);
    let (status, stdout, _) = run_command(&mut cmd, &format!("rcache {}", args.join(" ")));
    (status, stdout)
}

#[test]
fn rcache_started_as_the_compiler_behaves_as_rcache_cc() {
    let sb = Sandbox::new();
    fs::write(
        sb.ws.join("probe.c"),
        "int probe(void) { return __GNUC__; }\n",
    )
    .unwrap();
    let (status, stdout) = rcache_as_compiler(&sb, &["-E", "probe.c"]);
    let mut cc = Command::new("cc");
    cc.args(["-E", "probe.c"]).current_dir(&sb.ws);
    let (cc_status, cc_stdout, _) = run_command(&mut cc, "cc -E");
    assert!(status.success() && cc_status.success());
    assert_eq!(stdout, cc_stdout, "rcache -E is cc -E");

    for (first, out) in [("-c", "via-rcache.o"), ("probe.c", "source-first.o")] {
        let args: Vec<&str> = if first == "-c" {
            vec!["-c", "probe.c", "-o", out]
        } else {
            vec!["probe.c", "-c", "-o", out]
        };
        let (status, _) = rcache_as_compiler(&sb, &args);
        assert!(status.success(), "rcache {args:?}");
    }
    let mut cc = Command::new("cc");
    cc.args(["-c", "probe.c", "-o", "plain.o"])
        .current_dir(&sb.ws);
    assert!(run_command(&mut cc, "cc -c").0.success());
    let plain = fs::read(sb.ws.join("plain.o")).unwrap();
    assert_eq!(fs::read(sb.ws.join("via-rcache.o")).unwrap(), plain);
    assert_eq!(fs::read(sb.ws.join("source-first.o")).unwrap(), plain);

    // An unsupported flag fails as the compiler fails (1), never with a usage error (2).
    let (status, _) = rcache_as_compiler(&sb, &["-fno-such-option-rcache", "-c", "probe.c"]);
    assert_eq!(status.code(), Some(1));
    // rcache's own options stay commands.
    let (status, stdout) = rcache_as_compiler(&sb, &["--version"]);
    assert!(
        status.success() && stdout.starts_with("rcache "),
        "{stdout}"
    );
}
