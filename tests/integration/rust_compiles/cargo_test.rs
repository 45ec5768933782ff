//! `cargo test` from the cache: the test harnesses (`rustc --test`, linked executables that
//! rcache logs as `crate_types == ["bin"]`) are restored after `cargo clean`, and the restored
//! harnesses run the fixture's tests and pass. Doctests run rustdoc, not rustc: not involved.

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;

use crate::harness::{Run, Sandbox, assert_same_files};

/// The crates whose unit-test harness `cargo test` compiles: every member of demo_ws.
const HARNESSES: [&str; 4] = ["demo_leaf", "demo_lib", "demo_macro", "demo_bin"];

/// The one unit test of the fixture (in demo_leaf), as the harness reports it.
const LEAF_TEST: &str = "test tests::leaf_value_names_the_leaf ... ok";

/// The event of `krate`'s test harness. In `cargo test` a library crate is compiled twice, as
/// a `lib` for its dependents and as a `--test` executable; only the harness is a `bin`
/// (demo_bin has no other compile, since no integration test asks for the plain bin).
#[track_caller]
fn harness_event<'r>(run: &'r Run, krate: &str) -> &'r Value {
    let found: Vec<_> = run
        .events_for(krate)
        .into_iter()
        .filter(|e| e["crate_types"] == serde_json::json!(["bin"]))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{}: expected one test-harness event for {krate}\n{}",
        run.what,
        run.describe_events()
    );
    found[0]
}

/// The test executables in `<target>/debug/deps`: files without an extension, by name.
fn harness_files(sb: &Sandbox) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(sb.target.join("debug/deps"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_none() && path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect()
}

#[track_caller]
fn assert_tests_pass(run: &Run) {
    assert!(
        run.stdout.contains(LEAF_TEST) && run.stdout.contains("test result: ok. 1 passed"),
        "{}: demo_leaf's test did not run and pass\nstdout:\n{}",
        run.what,
        run.stdout
    );
    assert!(
        !run.stdout.contains("FAILED"),
        "{}: a test failed\nstdout:\n{}",
        run.what,
        run.stdout
    );
}

#[test]
fn test_harnesses_hit_after_clean_and_their_tests_pass() {
    let sb = Sandbox::new();
    let cold = sb.cargo(&["test"]).ok();
    for krate in HARNESSES {
        let e = harness_event(&cold, krate);
        assert!(
            e["outcome"] == "miss" && e["stored"] == true,
            "cold: {krate}'s test harness should be a stored miss\n{}",
            cold.describe_events()
        );
    }
    assert_tests_pass(&cold);
    let compiled = harness_files(&sb);
    assert_eq!(
        compiled.len(),
        HARNESSES.len(),
        "test executables: {:?}",
        compiled.keys()
    );
    sb.clean();

    let warm = sb.cargo(&["test"]).ok();
    for krate in HARNESSES {
        assert_eq!(
            harness_event(&warm, krate)["outcome"],
            "hit",
            "warm: {krate}'s test harness should hit\n{}",
            warm.describe_events()
        );
    }
    let compiled_again: Vec<_> = warm
        .events
        .iter()
        .filter(|e| e["outcome"] == "miss" || e["outcome"] == "error")
        .collect();
    assert!(
        compiled_again.is_empty(),
        "warm cargo test had misses or errors\n{}",
        warm.describe_events()
    );
    assert_tests_pass(&warm);
    // Same paths, same inputs: the restored harnesses are the linker's bytes of the cold run.
    assert_same_files(&compiled, &harness_files(&sb), "test harnesses");
}
