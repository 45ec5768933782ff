//! scripts_ws in a second checkout with another target dir and another `CARGO_HOME` (a second
//! one, filled by `cargo fetch`): every Rust compile (the registry's `cc` crate and its
//! dependencies included), every C compile of the `cc` crate and every build-script run hits,
//! except the run that passes through by design (`bs_foreign`); the restored directives name the
//! second checkout's `OUT_DIR`s (the first target dir is gone, so a stale one could not link);
//! nothing under the second target dir names the first checkout or `CARGO_HOME`. A third
//! checkout whose scripts run hits their C compiles.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::second_checkout;
use crate::harness::{Sandbox, assert_no_file_names, run_command};

/// What bs_app prints for the unmodified fixture (as in `build_scripts.rs`).
const APP_OUTPUT: &str = "file=file-v1\nenv=plain\nnothing=nothing-v1 extra=false\ncc=103\n\
    dep=links-v1 header=header-v1\n";

/// The one package whose runs pass through (its link search path is another unit's).
const FOREIGN: &str = "bs_foreign";

#[test]
fn runs_and_c_compiles_hit_in_another_checkout_and_cargo_home() {
    let sb = Sandbox::with_fixture("scripts_ws");
    sb.cargo(&["build"]).ok();
    assert_eq!(sb.run_program_in(&sb.target, "bs_app"), APP_OUTPUT);
    let first_home = cargo_home();

    let other = second_checkout(&sb, "b/other/checkout");
    let home = sb.root.join("home-b/.cargo");
    fill_cargo_home(&home, &first_home, &other);
    fs::remove_dir_all(&sb.target).unwrap();
    let other_target = sb.root.join("target-b");
    let run = sb
        .cargo(&["build"])
        .in_dir(&other)
        .target_dir(&other_target)
        .env("CARGO_HOME", &home)
        .ok();
    let misses: Vec<&Value> = run
        .events
        .iter()
        .filter(|event| event["crate"] != "___" && !event["crate"].is_null())
        .filter(|event| event["outcome"] != "hit")
        .filter(|event| !(event["kind"] == "build_script_run" && event["crate"] == FOREIGN))
        .collect();
    assert!(misses.is_empty(), "not hit:\n{}", run.describe_events());
    for kind in ["rustc", "build_script_run"] {
        assert!(
            run.events
                .iter()
                .any(|e| e["kind"] == kind && e["outcome"] == "hit"),
            "no {kind} hit:\n{}",
            run.describe_events()
        );
    }
    assert!(
        run.events
            .iter()
            .any(|e| e["crate"] == "cc" && e["outcome"] == "hit"),
        "the registry's cc crate did not hit"
    );
    assert_eq!(sb.run_program_in(&other_target, "bs_app"), APP_OUTPUT);
    assert_no_file_names(&other_target, &sb.ws);
    assert_no_file_names(&other_target, &first_home);
    assert_no_file_names(&other_target, &sb.target);

    // A third checkout whose scripts run (`RCACHE_BUILD_SCRIPTS=off`): bs_cc's C compiles, and
    // the `cc` crate's flag probe in its `OUT_DIR`, hit what the first checkout compiled.
    let third = second_checkout(&sb, "c/third");
    let third_target = sb.root.join("target-c");
    let rerun = sb
        .cargo(&["build"])
        .in_dir(&third)
        .target_dir(&third_target)
        .env("CARGO_HOME", &home)
        .env("RCACHE_BUILD_SCRIPTS", "off")
        .ok();
    // The `cc` crate's compiler-family detection (`-E`) and a link pass through by design.
    let c_compiles: Vec<&Value> = rerun
        .events
        .iter()
        .filter(|e| e["kind"] == "cc" && e["outcome"] != "passthrough")
        .collect();
    assert!(
        !c_compiles.is_empty() && c_compiles.iter().all(|e| e["outcome"] == "hit"),
        "C compiles:\n{}",
        rerun.describe_events()
    );
    assert_eq!(sb.run_program_in(&third_target, "bs_app"), APP_OUTPUT);
    assert_no_file_names(&third_target, &sb.ws);
    assert_no_file_names(&third_target, &other);
}

/// `CARGO_HOME` as cargo finds it.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"))
}

/// A second `CARGO_HOME` with the first one's config, filled by `cargo fetch` (from crates.io).
fn fill_cargo_home(home: &Path, first: &Path, workspace: &Path) {
    fs::create_dir_all(home).unwrap();
    for name in ["config.toml", "config"] {
        if first.join(name).is_file() {
            fs::copy(first.join(name), home.join(name)).unwrap();
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut fetch = Command::new(cargo);
    fetch
        .args(["fetch", "--locked"])
        .current_dir(workspace)
        .env("CARGO_HOME", home)
        .env_remove("CARGO_TARGET_DIR");
    let (status, _, stderr) = run_command(&mut fetch, "cargo fetch into a second CARGO_HOME");
    assert!(status.success(), "cargo fetch: {stderr}");
}
