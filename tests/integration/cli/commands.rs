//! The command line and the store's outward shape: `rcache stats` and its aliases,
//! `rcache config`, `RCACHE_RECACHE`, and how the store directory is created.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;

use crate::harness::{LIBS, Sandbox, real_rustc, run_command};

fn count(stats: &Value, key: &str) -> u64 {
    stats[key]
        .as_u64()
        .unwrap_or_else(|| panic!("stats has no integer {key}: {stats}"))
}

/// `rcache <rustc> -vV`: a probe, which passes through and counts as one request.
fn probe(sb: &Sandbox) {
    let rustc = real_rustc().to_str().unwrap();
    let stdout = sb.rcache_ok(&[rustc, "-vV"]);
    let (_, direct, _) = run_command(Command::new(rustc).arg("-vV"), "rustc -vV");
    assert_eq!(stdout, direct, "a probe's output must be rustc's");
}

#[test]
fn stats_json_agrees_with_the_events_log_after_cold_and_warm_builds() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.clean();
    sb.build();

    let stats = sb.stats();
    let requests = count(&stats, "requests");
    let [hits, misses, passthrough, errors] =
        ["hits", "misses", "passthrough", "errors"].map(|k| count(&stats, k));
    assert_eq!(requests, hits + misses + passthrough + errors, "{stats}");
    assert!(hits >= 2 && misses >= 2, "{stats}");

    let events = sb.all_events();
    let (runs, compiles): (Vec<_>, Vec<_>) =
        events.iter().partition(|e| e["kind"] == "build_script_run");
    let logged = |events: &[&serde_json::Value], outcome: &str| {
        events.iter().filter(|e| e["outcome"] == outcome).count() as u64
    };
    assert_eq!(
        requests,
        compiles.len() as u64,
        "one request per logged compile invocation: {stats}"
    );
    assert_eq!(
        [hits, misses, passthrough, errors],
        ["hit", "miss", "passthrough", "error"].map(|outcome| logged(&compiles, outcome)),
        "stats vs events log: {stats}"
    );
    // demo_lib's build script: run and recorded cold, restored warm, counted apart.
    let scripts = &stats["build_scripts"];
    assert_eq!(
        scripts["requests"].as_u64(),
        Some(runs.len() as u64),
        "{stats}"
    );
    assert_eq!(
        ["hits", "misses"].map(|k| scripts[k].as_u64().unwrap_or(0)),
        ["hit", "miss"].map(|outcome| logged(&runs, outcome)),
        "{stats}"
    );
    assert_eq!(scripts["hits"], 1, "{stats}");

    assert!(
        stats["passthrough_reasons"]["probe"].as_u64() >= Some(1),
        "passthrough_reasons.probe: {stats}"
    );
    assert!(stats["not_stored"].is_object(), "{stats}");
    assert!(stats["time_saved_ms"].is_number(), "{stats}");
    assert!(count(&stats, "entries") >= 2, "{stats}");
    assert!(count(&stats, "blobs") >= 2, "{stats}");
    assert!(count(&stats, "store_bytes") > 0, "{stats}");
    assert_eq!(
        stats["cache_dir"].as_str(),
        sb.store.to_str(),
        "cache_dir: {stats}"
    );
}

#[test]
fn stats_zero_and_the_sccache_style_aliases_reset_and_show_counters() {
    let sb = Sandbox::new();
    probe(&sb);
    let stats = sb.stats();
    assert_eq!(count(&stats, "requests"), 1, "{stats}");
    assert_eq!(count(&stats, "passthrough"), 1, "{stats}");
    assert_eq!(stats["passthrough_reasons"]["probe"], 1, "{stats}");

    sb.rcache_ok(&["stats", "--zero"]);
    assert_eq!(count(&sb.stats(), "requests"), 0);

    probe(&sb);
    let shown = sb.rcache_ok(&["--show-stats"]);
    let table = sb.rcache_ok(&["stats"]);
    assert_eq!(shown, table, "--show-stats is `rcache stats`");
    assert!(
        table.to_lowercase().contains("hits"),
        "the table names hits:\n{table}"
    );
    sb.rcache_ok(&["--zero-stats"]);
    assert_eq!(count(&sb.stats(), "requests"), 0);
}

#[test]
fn store_dir_is_created_private_with_a_cachedir_tag() {
    let sb = Sandbox::new();
    assert!(!sb.store.exists());
    sb.compile_leaf_directly(&sb.root.join("out"))
        .assert_stored_miss("demo_leaf");

    let mode = fs::metadata(&sb.store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "store dir mode is {mode:o}");
    let tag = fs::read_to_string(sb.store.join("CACHEDIR.TAG")).expect("CACHEDIR.TAG");
    assert!(
        tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
        "CACHEDIR.TAG must start with the standard signature:\n{tag}"
    );
    assert!(sb.store.join("v2").is_dir(), "no v2/ in the store");
}

#[test]
fn config_shows_rcache_dir_and_that_it_came_from_the_environment() {
    let sb = Sandbox::new();
    let out = sb.rcache_ok(&["config"]);
    let dir = sb.store.to_str().unwrap();
    let line = out
        .lines()
        .find(|l| l.contains(dir))
        .unwrap_or_else(|| panic!("rcache config does not show RCACHE_DIR's value:\n{out}"));
    let lower = line.to_lowercase();
    assert!(
        lower.contains("env") || (lower.contains("rcache_dir") && !lower.contains("default")),
        "the dir's line does not say it came from the environment: {line}\n{out}"
    );
}

/// `RCACHE_RECACHE=1` compiles even when an entry exists, and stores the result again.
#[test]
fn recache_compiles_instead_of_hitting_and_stores() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.clean();
    let recached = sb.cargo(&["build"]).env("RCACHE_RECACHE", "1").ok();
    for lib in LIBS {
        recached.assert_stored_miss(lib);
    }
    sb.clean();
    let warm = sb.build();
    for lib in LIBS {
        warm.assert_hit(lib);
    }
}
