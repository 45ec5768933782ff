//! `rcache report` (issue 16): a build's units, totals and miss causes, from the build log.
//! Its totals equal the growth of `rcache stats` over the same build; two cargo builds running at
//! once on one store are reported apart; the C compiles of a build script belong to the build
//! that ran the script; the `--html` page renders in headless Chromium (`browser`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::Sandbox;

mod browser;

/// `rcache report <args> --json`, parsed.
#[track_caller]
pub(crate) fn report(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["report", "--json"];
    all.extend(args);
    let out = sb.rcache_ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The names of a report's units that have one.
fn unit_names(report: &Value) -> BTreeSet<String> {
    report["units"]
        .as_array()
        .expect("units")
        .iter()
        .filter_map(|unit| unit["name"].as_str().map(str::to_string))
        .collect()
}

/// The fields `rcache stats --json` and a report's totals share.
const COUNTED: [&str; 10] = [
    "requests",
    "hits",
    "misses",
    "passthrough",
    "errors",
    "time_saved_ms",
    "passthrough_reasons",
    "not_stored",
    "error_reasons",
    "path_bound",
];

#[test]
fn the_totals_agree_with_stats_for_the_same_build() {
    // Build scripts, their C compiles and a script that is not cacheable: every kind of unit.
    let sb = Sandbox::with_fixture("scripts_ws");
    sb.build();
    sb.rcache_ok(&["stats", "--zero"]);
    sb.edit("bs_cc/csrc/add.h", "#define", "/* edited */\n#define");
    sb.build();

    let stats = sb.stats();
    let report = report(&sb, &[]);
    for field in COUNTED {
        assert_eq!(
            report["compiles"][field], stats[field],
            "compiles.{field}: report {report:#}\nstats {stats:#}"
        );
        assert_eq!(
            report["build_scripts"][field], stats["build_scripts"][field],
            "build_scripts.{field}"
        );
    }
    let units = report["units"].as_array().unwrap();
    let requests =
        stats["requests"].as_u64().unwrap() + stats["build_scripts"]["requests"].as_u64().unwrap();
    assert_eq!(units.len() as u64, requests, "one unit per request");
    // The edit: the C source and the run that compiled it missed; the rest hit.
    let outcome = |kind: &str, name: &str| -> String {
        let found: Vec<&Value> = units
            .iter()
            .filter(|u| u["kind"] == kind && u["name"] == name)
            .collect();
        assert_eq!(found.len(), 1, "{kind} {name} in {report:#}");
        found[0]["outcome"].as_str().unwrap().to_string()
    };
    assert_eq!(outcome("cc", "csrc/add.c"), "miss");
    assert_eq!(outcome("build_script_run", "bs_cc"), "miss");
    assert_eq!(outcome("rustc", "bs_app"), "hit");
    // A C compile started by the script is in cargo's build, named by its package.
    let add_c = units.iter().find(|u| u["name"] == "csrc/add.c").unwrap();
    assert_eq!(add_c["package"], "bs_cc");
    // The causes, as explain gives them: the header, for the C compile and the run.
    let causes = report["causes"].as_array().unwrap();
    let explained: BTreeSet<(String, String)> = causes
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        explained.contains(&("cc".into(), "csrc/add.c".into())),
        "{causes:#?}"
    );
    for explanation in causes.iter().filter(|e| e["outcome"] == "miss") {
        assert_eq!(
            explanation["causes"],
            serde_json::json!([{"cause": "input_changed", "path": "csrc/add.h"}]),
            "{explanation:#}"
        );
    }

    // The text table: a line per unit, then the same totals.
    let text = sb.rcache_ok(&["report"]);
    let compiles = &report["compiles"];
    let totals = format!(
        "Compiles: {} requests: {} hits, {} misses, {} passthrough, {} errors;",
        compiles["requests"],
        compiles["hits"],
        compiles["misses"],
        compiles["passthrough"],
        compiles["errors"]
    );
    assert!(text.contains(&totals), "{totals} in:\n{text}");
    assert!(text.contains("input changed: csrc/add.h:"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("csrc/add.c [bs_cc]") && l.contains("miss")),
        "{text}"
    );
}

#[test]
fn two_builds_at_once_are_reported_apart() {
    let demo = Sandbox::new();
    let scripts = Sandbox::with_fixture("scripts_ws");
    // One store for both, as on a machine where two checkouts build at once.
    std::thread::scope(|scope| {
        scope.spawn(|| demo.build());
        scope.spawn(|| {
            scripts
                .cargo(&["build"])
                .env("RCACHE_DIR", &demo.store)
                .ok()
        });
    });

    let listed: Vec<Value> =
        serde_json::from_str(&demo.rcache_ok(&["report", "--list", "--json"])).unwrap();
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let reports: Vec<Value> = listed
        .iter()
        .map(|build| report(&demo, &["--build", build["build"].as_str().unwrap()]))
        .collect();
    let names: Vec<BTreeSet<String>> = reports.iter().map(unit_names).collect();
    let demo_at = names
        .iter()
        .position(|n| n.contains("demo_lib"))
        .expect("a build with demo_lib");
    let (demo_names, script_names) = (&names[demo_at], &names[1 - demo_at]);
    for crate_name in ["demo_leaf", "demo_lib", "demo_bin", "demo_macro"] {
        assert!(demo_names.contains(crate_name), "{demo_names:?}");
        assert!(!script_names.contains(crate_name), "{script_names:?}");
    }
    for crate_name in ["bs_app", "bs_cc", "csrc/add.c"] {
        assert!(script_names.contains(crate_name), "{script_names:?}");
        assert!(!demo_names.contains(crate_name), "{demo_names:?}");
    }
    // Each names the other as having run at the same time; the units of both add up to the
    // store's counters.
    for (at, report) in reports.iter().enumerate() {
        let other = &listed[1 - at]["build"];
        assert_eq!(
            report["concurrent"],
            serde_json::json!([other]),
            "{report:#}"
        );
    }
    let stats = demo.stats();
    let units: usize = reports
        .iter()
        .map(|r| r["units"].as_array().unwrap().len())
        .sum();
    let requests =
        stats["requests"].as_u64().unwrap() + stats["build_scripts"]["requests"].as_u64().unwrap();
    assert_eq!(units as u64, requests);
    // The last build is one of them, and its text says the other ran beside it.
    let text = demo.rcache_ok(&["report"]);
    assert!(text.contains("ran at the same time"), "{text}");
}

#[test]
fn the_last_build_is_the_latest_that_compiled_and_an_unknown_build_is_an_error() {
    let sb = Sandbox::new();
    let nothing = sb.rcache(&["report"]).output().unwrap();
    assert!(!nothing.status.success());
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("no build is recorded yet"),
        "{nothing:?}"
    );
    sb.cold_build();
    let first = report(&sb, &[]);
    assert_eq!(first["compiles"]["hits"], 0, "{first:#}");
    assert!(
        first["compiles"]["misses"].as_u64().unwrap() >= 4,
        "{first:#}"
    );
    sb.clean();
    sb.build();
    // A tool asking rustc for its version through the wrapper (an IDE does), and `cargo
    // metadata` into a new target dir (cargo's `--print` probes of the target, crate `___`):
    // builds of probes, logged, but not what a user calls the last build.
    assert!(sb.rcache_rustc(&["-vV".to_string()], &[]).status.success());
    sb.cargo(&["metadata", "--format-version", "1"])
        .target_dir(&sb.root.join("metadata-target"))
        .ok();
    let listed: Vec<Value> =
        serde_json::from_str(&sb.rcache_ok(&["report", "--list", "--json"])).unwrap();
    assert_eq!(listed.len(), 4, "both probe builds are logged: {listed:#?}");
    let last = report(&sb, &[]);
    assert_ne!(last["build"], first["build"]);
    assert_eq!(last["compiles"]["misses"], 0, "{last:#}");
    assert!(last["compiles"]["hits"].as_u64().unwrap() >= 4, "{last:#}");
    assert_eq!(
        report(&sb, &["--build", first["build"].as_str().unwrap()])["build"],
        first["build"]
    );
    let unknown = sb
        .rcache(&["report", "--build", "00000000000000ff"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not in the log"));
}

#[test]
fn a_run_whose_launcher_is_missing_is_in_the_report() {
    // rcache installed without its launcher beside it: the build scripts run uncached, each
    // counted when its script was compiled.
    let sb = Sandbox::with_fixture("scripts_ws");
    let alone = sb.root.join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(crate::harness::RCACHE, alone.join("rcache")).unwrap();
    sb.cargo(&["build"])
        .env("RUSTC_WRAPPER", alone.join("rcache"))
        .ok();
    let stats = sb.stats();
    let missing = &stats["build_scripts"]["passthrough_reasons"]["launcher_missing"];
    assert!(missing.as_u64().unwrap() > 0, "{stats:#}");
    let report = report(&sb, &[]);
    for field in COUNTED {
        assert_eq!(
            report["build_scripts"][field], stats["build_scripts"][field],
            "build_scripts.{field}: report {report:#}"
        );
    }
}
