//! Build-script runs (docs/design.md §6b) on the `scripts_ws` fixture: one script per way of
//! declaring inputs (a file, an env var, nothing), one that compiles C with the `cc` crate, a
//! `links` package whose metadata a dependent's script reads, and one whose link search path
//! points into another unit's build dir (not cacheable).
//!
//! Every script appends its package name to `$BS_RUN_LOG`, outside the workspace and not
//! declared by any script, so a test can tell a script that ran from a run rcache restored.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{RCACHE, Run, Sandbox, assert_same_files, run_command};

/// The packages whose script runs rcache caches.
const CACHED: [&str; 6] = [
    "bs_file",
    "bs_env",
    "bs_nothing",
    "bs_cc",
    "bs_links",
    "bs_dependent",
];

/// The package whose runs pass through: its link search path is another unit's.
const FOREIGN: &str = "bs_foreign";

/// What bs_app prints for the unmodified fixture.
const BASE_APP_OUTPUT: &str = "file=file-v1\nenv=plain\nnothing=nothing-v1 extra=false\ncc=103\n\
    dep=links-v1 header=header-v1\n";

struct Scripts {
    sb: Sandbox,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            sb: Sandbox::with_fixture("scripts_ws"),
        }
    }

    fn run_log(&self) -> PathBuf {
        self.sb.root.join("runs.log")
    }

    /// Every script run so far, in order.
    fn runs(&self) -> Vec<String> {
        fs::read_to_string(self.run_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `cargo build <args>` with the run log and `env`; asserts success. Returns the run and
    /// the set of scripts that ran during it.
    #[track_caller]
    fn build(&self, args: &[&str], env: &[(&str, &str)]) -> (Run, BTreeSet<String>) {
        let before = self.runs().len();
        let mut all_args = vec!["build"];
        all_args.extend_from_slice(args);
        let mut cmd = self.sb.cargo(&all_args).env("BS_RUN_LOG", self.run_log());
        for (key, value) in env {
            cmd = cmd.env(key, value);
        }
        let run = cmd.ok();
        let ran = self.runs()[before..].iter().cloned().collect();
        (run, ran)
    }

    /// `cargo clean`, then [`Scripts::build`].
    #[track_caller]
    fn clean_build(&self, args: &[&str], env: &[(&str, &str)]) -> (Run, BTreeSet<String>) {
        self.sb.clean();
        self.build(args, env)
    }

    fn app_output(&self) -> String {
        self.sb.run_program_in(&self.sb.target, "bs_app")
    }

    /// The `OUT_DIR` of `package`'s script run (the `build/<package>-<hash>/out` that exists).
    fn out_dir(&self, package: &str) -> PathBuf {
        let build = self.sb.target.join("debug/build");
        let found: Vec<PathBuf> = fs::read_dir(&build)
            .unwrap()
            .map(|entry| entry.unwrap().path().join("out"))
            .filter(|out| {
                out.is_dir()
                    && out
                        .parent()
                        .and_then(Path::file_name)
                        .and_then(|name| name.to_str())
                        .is_some_and(|name| name.starts_with(&format!("{package}-")))
            })
            .collect();
        assert_eq!(found.len(), 1, "one OUT_DIR for {package}: {found:?}");
        found[0].clone()
    }

    /// The launcher cargo runs for `package`'s script: the `build-script-build` that has a
    /// `.rcache-real` binary beside it.
    fn launcher(&self, package: &str) -> PathBuf {
        let build = self.sb.target.join("debug/build");
        for entry in fs::read_dir(&build).unwrap() {
            let dir = entry.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(&format!("{package}-")) && real_scripts(&dir).len() == 1 {
                return dir.join("build-script-build");
            }
        }
        panic!("no launcher for {package} under {}", build.display());
    }
}

/// The `*.rcache-real` binaries in a directory.
fn real_scripts(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().path())
                .filter(|path| path.to_string_lossy().ends_with(".rcache-real"))
                .collect()
        })
        .unwrap_or_default()
}

/// The build-script run events of a command, by package: (outcome, reason, stored).
fn script_events(events: &[Value]) -> BTreeMap<String, Vec<(String, Option<String>, bool)>> {
    let mut by_package: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for event in events.iter().filter(|e| e["kind"] == "build_script_run") {
        by_package
            .entry(event["crate"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push((
                event["outcome"].as_str().unwrap_or_default().to_string(),
                event["reason"].as_str().map(str::to_string),
                event["stored"].as_bool().unwrap_or_default(),
            ));
    }
    by_package
}

/// Every file under `dir` with its bytes, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            let name = entry.path().strip_prefix(dir).unwrap();
            (
                name.to_string_lossy().into_owned(),
                fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| name.to_string()).collect()
}

#[test]
fn a_clean_build_restores_every_run_and_runs_no_script() {
    let scripts = Scripts::new();
    let (cold, ran) = scripts.build(&[], &[]);
    let mut every = CACHED.to_vec();
    every.push(FOREIGN);
    assert_eq!(ran, names(&every), "the cold build runs every script");
    let events = script_events(&cold.events);
    for package in CACHED {
        assert_eq!(
            events[package],
            [("miss".to_string(), None, true)],
            "{package}: run and recorded"
        );
    }
    assert_eq!(
        events[FOREIGN],
        [(
            "passthrough".to_string(),
            Some("link_search_outside_out_dir".to_string()),
            false
        )]
    );
    assert_eq!(scripts.app_output(), BASE_APP_OUTPUT);
    let cc_out_dir = tree(&scripts.out_dir("bs_cc"));
    assert!(
        cc_out_dir.keys().any(|name| name.ends_with("libbsadd.a")),
        "the cc crate's archive is in OUT_DIR: {:?}",
        cc_out_dir.keys()
    );
    let file_out_dir = tree(&scripts.out_dir("bs_file"));

    let (warm, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(
        ran,
        names(&[FOREIGN]),
        "after cargo clean no cached script process runs"
    );
    let events = script_events(&warm.events);
    for package in CACHED {
        assert_eq!(
            events[package],
            [("hit".to_string(), None, false)],
            "{package}: restored"
        );
    }
    assert_eq!(scripts.app_output(), BASE_APP_OUTPUT);
    assert_same_files(
        &cc_out_dir,
        &tree(&scripts.out_dir("bs_cc")),
        "bs_cc OUT_DIR",
    );
    assert_same_files(
        &file_out_dir,
        &tree(&scripts.out_dir("bs_file")),
        "bs_file OUT_DIR",
    );

    let stats = scripts.sb.stats();
    let runs = &stats["build_scripts"];
    assert_eq!(runs["requests"], 14, "{stats:#}");
    assert_eq!(runs["hits"], 6, "{stats:#}");
    assert_eq!(runs["misses"], 6, "{stats:#}");
    assert_eq!(
        runs["passthrough_reasons"]["link_search_outside_out_dir"], 2,
        "{stats:#}"
    );
    // Runs are counted apart: the compile totals still add up on their own.
    let total = |name: &str| stats[name].as_u64().unwrap();
    assert_eq!(
        total("requests"),
        total("hits") + total("misses") + total("passthrough") + total("errors"),
        "{stats:#}"
    );
}

#[test]
fn each_declared_input_reruns_exactly_the_scripts_that_declared_it() {
    let scripts = Scripts::new();
    scripts.build(&[], &[]);
    let sb = &scripts.sb;

    sb.edit("bs_file/input.txt", "file-v1", "file-v2");
    let (_, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(ran, names(&["bs_file", FOREIGN]), "rerun-if-changed file");
    assert!(scripts.app_output().contains("file=file-v2\n"));

    let (_, ran) = scripts.clean_build(&[], &[("BS_FLAVOR", "spicy")]);
    assert_eq!(ran, names(&["bs_env", FOREIGN]), "rerun-if-env-changed");
    assert!(scripts.app_output().contains("env=spicy\n"));

    sb.edit("bs_nothing/data/value.txt", "nothing-v1", "nothing-v2");
    let (run, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(
        ran,
        names(&["bs_nothing", FOREIGN]),
        "an undeclared file of a package that declares nothing; BS_FLAVOR unset again hits"
    );
    assert_eq!(script_events(&run.events)["bs_env"][0].0, "hit");
    assert!(
        scripts
            .app_output()
            .contains("nothing=nothing-v2 extra=false\n")
    );

    sb.write("bs_nothing/notes.md", "a file added to the package\n");
    let (_, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(ran, names(&["bs_nothing", FOREIGN]), "a new package file");

    let (_, ran) = scripts.clean_build(&["--features", "bs_nothing/extra"], &[]);
    assert_eq!(ran, names(&["bs_nothing", FOREIGN]), "a feature change");
    assert!(scripts.app_output().contains("extra=true\n"));

    sb.edit("bs_cc/csrc/add.h", "BS_OFFSET 100", "BS_OFFSET 200");
    let (_, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(ran, names(&["bs_cc", FOREIGN]), "a declared C header");
    assert!(scripts.app_output().contains("cc=203\n"));

    sb.edit("bs_links/links_value.txt", "links-v1", "links-v2");
    let (_, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(
        ran,
        names(&["bs_links", "bs_dependent", FOREIGN]),
        "links metadata reaches the dependent's script as DEP_BSDEMO_VALUE"
    );
    assert_eq!(
        scripts.app_output(),
        "file=file-v2\nenv=plain\nnothing=nothing-v2 extra=false\ncc=203\n\
         dep=links-v2 header=header-v1\n"
    );

    // Same DEP_* values, new content in bs_links's OUT_DIR: the dependent's run reads it.
    sb.edit("bs_links/header.txt", "header-v1", "header-v2");
    let (_, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(
        ran,
        names(&["bs_links", "bs_dependent", FOREIGN]),
        "a links dependency's OUT_DIR changed in place"
    );
    assert!(
        scripts
            .app_output()
            .contains("dep=links-v2 header=header-v2\n")
    );

    let (_, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(
        ran,
        names(&[FOREIGN]),
        "nothing changed: every run restored"
    );
}

#[test]
fn recache_reruns_and_rerecords_scripts() {
    let scripts = Scripts::new();
    scripts.build(&[], &[]);
    let (run, ran) = scripts.clean_build(&[], &[("RCACHE_RECACHE", "1")]);
    let mut every = CACHED.to_vec();
    every.push(FOREIGN);
    assert_eq!(ran, names(&every), "RCACHE_RECACHE=1 runs every script");
    let events = script_events(&run.events);
    for package in CACHED {
        assert_eq!(events[package], [("miss".to_string(), None, true)]);
    }
    assert_eq!(scripts.app_output(), BASE_APP_OUTPUT);
    let (_, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(ran, names(&[FOREIGN]));
}

#[test]
fn a_script_killed_mid_run_is_not_recorded() {
    let scripts = Scripts::new();
    let pidfile = scripts.sb.root.join("script.pid");
    let mut cargo = scripts
        .sb
        .cargo(&["build"])
        .env("BS_RUN_LOG", scripts.run_log())
        .env("BS_HANG_PIDFILE", &pidfile)
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(300);
    let pid = loop {
        if let Ok(pid) = fs::read_to_string(&pidfile)
            && !pid.is_empty()
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "bs_file's script never started");
        thread::sleep(Duration::from_millis(50));
    };
    let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(status.success(), "kill -KILL {pid}");
    let status = cargo.wait().unwrap();
    assert!(
        !status.success(),
        "cargo fails when its build script is killed"
    );
    let events = script_events(&scripts.sb.all_events());
    assert_eq!(
        events["bs_file"],
        [("miss".to_string(), Some("script_failed".to_string()), false)],
        "the killed run is not recorded"
    );

    let (run, ran) = scripts.build(&[], &[]);
    assert!(ran.contains("bs_file"), "the script runs again: {ran:?}");
    assert_eq!(
        script_events(&run.events)["bs_file"],
        [("miss".to_string(), None, true)]
    );
    assert_eq!(scripts.app_output(), BASE_APP_OUTPUT);
    let (_, ran) = scripts.clean_build(&[], &[]);
    assert_eq!(ran, names(&[FOREIGN]));
    assert_eq!(scripts.app_output(), BASE_APP_OUTPUT);
}

#[test]
fn the_launcher_runs_the_real_script_when_rcache_is_not_the_wrapper() {
    let scripts = Scripts::new();
    scripts.build(&[], &[]);
    let launcher = scripts.launcher("bs_env");
    let meta = fs::symlink_metadata(&launcher).unwrap();
    assert!(meta.file_type().is_file(), "a real file, not a symlink");
    assert_ne!(
        fs::read(&launcher).unwrap(),
        fs::read(RCACHE).unwrap(),
        "a launcher, not a copy of rcache"
    );
    let cases = [
        ("no RUSTC_WRAPPER", None, false),
        ("another wrapper", Some("/usr/bin/sccache"), false),
        ("rcache uninstalled", Some("/nonexistent/rcache"), false),
        ("RCACHE_DISABLE=1", Some(RCACHE), true),
    ];
    // One fresh out dir per case: a file an earlier case wrote proves nothing.
    for (n, (case, wrapper, disable)) in cases.into_iter().enumerate() {
        let out_dir = scripts.sb.root.join(format!("out-{n}"));
        fs::create_dir_all(&out_dir).unwrap();
        let before = scripts.runs().len();
        let mut cmd = Command::new(&launcher);
        cmd.current_dir(scripts.sb.path("bs_env"))
            .env_remove("RUSTC_WRAPPER")
            .env("OUT_DIR", &out_dir)
            .env("CARGO_MANIFEST_DIR", scripts.sb.path("bs_env"))
            .env("BS_RUN_LOG", scripts.run_log())
            .env("RCACHE_DIR", &scripts.sb.store);
        if let Some(wrapper) = wrapper {
            cmd.env("RUSTC_WRAPPER", wrapper);
        }
        if disable {
            cmd.env("RCACHE_DISABLE", "1");
        }
        let (status, stdout, stderr) = run_command(&mut cmd, case);
        assert!(status.success(), "{case}: {status}\n{stderr}");
        assert!(
            stdout.contains("rerun-if-env-changed=BS_FLAVOR"),
            "{case}: {stdout}"
        );
        assert_eq!(
            scripts.runs()[before..],
            ["bs_env"],
            "{case}: the script ran"
        );
        assert!(out_dir.join("flavor.rs").is_file(), "{case}");
    }
}

#[test]
fn build_script_caching_can_be_turned_off() {
    let scripts = Scripts::new();
    // Both off: cargo runs every script itself (no launcher); with RCACHE_BUILD_SCRIPT_CC on,
    // the launcher would still bring the runs to rcache for their C/C++ compiles.
    let off = [
        ("RCACHE_BUILD_SCRIPTS", "off"),
        ("RCACHE_BUILD_SCRIPT_CC", "off"),
    ];
    let (run, ran) = scripts.build(&[], &off);
    assert_eq!(ran.len(), 7, "every script ran: {ran:?}");
    assert!(script_events(&run.events).is_empty());
    let build = scripts.sb.target.join("debug/build");
    for entry in fs::read_dir(&build).unwrap() {
        let dir = entry.unwrap().path();
        assert!(
            real_scripts(&dir).is_empty(),
            "no launcher in {}",
            dir.display()
        );
    }
    let (_, ran) = scripts.clean_build(&[], &off);
    assert_eq!(ran.len(), 7, "every script ran again: {ran:?}");
    assert_eq!(scripts.app_output(), BASE_APP_OUTPUT);
    assert_eq!(scripts.sb.stats()["build_scripts"]["requests"], 0);

    // Run caching alone off: every run comes to rcache and runs at once, recording nothing.
    let runs_only = [("RCACHE_BUILD_SCRIPTS", "off")];
    let (run, ran) = scripts.clean_build(&[], &runs_only);
    assert_eq!(ran.len(), 7, "every script ran again: {ran:?}");
    let events = script_events(&run.events);
    assert_eq!(events.len(), 7, "{events:?}");
    for (package, outcomes) in &events {
        for (outcome, reason, _) in outcomes {
            assert_eq!(outcome, "passthrough", "{package}");
            assert_eq!(reason.as_deref(), Some("build_scripts_off"), "{package}");
        }
    }
    let (_, ran) = scripts.clean_build(&[], &runs_only);
    assert_eq!(ran.len(), 7, "nothing was recorded: {ran:?}");
    assert_eq!(scripts.app_output(), BASE_APP_OUTPUT);
}
