//! The default dev profile: cargo compiles workspace members with `-C incremental`, and no
//! `CARGO_INCREMENTAL` is set here. rcache caches those compiles (docs/design.md §6d): after a
//! clean every unit hits, a reverted edit is served from the cache, and incremental compiles
//! that follow restores build the right program and never crash the compiler.
//!
//! Incremental outputs are not byte-reproducible (rust-lang/rust#139453), so these tests check
//! behaviour: the program's output, `cargo test`'s results, the outcomes, no failed build.

use std::fs;

use serde_json::Value;

use crate::harness::{CargoCmd, LIBS, Run, Sandbox, expected_output};

const LEAF_SRC: &str = "demo_leaf/src/lib.rs";
const LIB_DATA: &str = "demo_lib/data/message.txt";

/// `cargo <args>` in the default profile: the harness's `CARGO_INCREMENTAL=0` removed.
fn dev(sb: &Sandbox, args: &[&str]) -> CargoCmd {
    sb.cargo(args).env_remove("CARGO_INCREMENTAL")
}

#[track_caller]
fn dev_build(sb: &Sandbox) -> Run {
    dev(sb, &["build"]).ok()
}

/// Every compile and build-script run of `run` was restored; only cargo's probes of the
/// compiler went to rustc.
#[track_caller]
fn assert_all_hit(run: &Run) {
    let units: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["reason"] != "probe")
        .collect();
    assert!(!units.is_empty(), "{}: no units", run.what);
    for e in units {
        assert_eq!(e["outcome"], "hit", "{}\n{}", e, run.describe_events());
    }
}

/// Whether cargo compiled with `-C incremental`: its incremental dir holds sessions.
fn incremental_dir_is_used(sb: &Sandbox) -> bool {
    fs::read_dir(sb.target.join("debug/incremental"))
        .map(|entries| entries.count() > 0)
        .unwrap_or(false)
}

#[test]
fn after_clean_every_unit_of_the_default_profile_hits() {
    let sb = Sandbox::new();
    let cold = dev_build(&sb);
    assert!(
        incremental_dir_is_used(&sb),
        "the default profile did not compile incrementally"
    );
    for lib in LIBS {
        cold.assert_stored_miss(lib);
    }
    cold.assert_stored_miss("demo_bin");
    assert!(
        !cold.events.iter().any(|e| e["reason"] == "incremental"),
        "{}",
        cold.describe_events()
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));

    sb.clean();
    let warm = dev_build(&sb);
    assert_all_hit(&warm);
    assert_eq!(sb.run_bin(), expected_output(&[]));

    // `cargo test` and `cargo run` after a clean: the test harnesses and the bin hit too.
    let first_test = dev(&sb, &["test"]).ok();
    assert!(first_test.stdout.contains("test result: ok. 1 passed"));
    sb.clean();
    let test = dev(&sb, &["test"]).ok();
    assert_all_hit(&test);
    assert!(
        test.stdout.contains("test result: ok. 1 passed"),
        "{}",
        test.stdout
    );
    let run = dev(&sb, &["run", "-q", "-p", "demo_bin"]).ok();
    assert_eq!(run.stdout, expected_output(&[]));
}

#[test]
fn a_reverted_edit_is_served_from_the_cache() {
    let sb = Sandbox::new();
    dev_build(&sb);

    sb.edit(LEAF_SRC, "leaf-v1", "leaf-v2");
    let edited = dev_build(&sb);
    edited.assert_stored_miss("demo_leaf");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v2")]));

    sb.edit(LEAF_SRC, "leaf-v2", "leaf-v1");
    let reverted = dev_build(&sb);
    reverted.assert_hit("demo_leaf");
    reverted.assert_hit("demo_lib");
    reverted.assert_hit("demo_bin");
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// A restored crate, then an edit of that crate: rustc compiles incrementally against the state
/// its last real compile left (of another version than the restored one), and must build the
/// edited version right.
#[test]
fn an_edit_after_a_restore_recompiles_incrementally_and_right() {
    let sb = Sandbox::new();
    dev_build(&sb);
    sb.edit(LEAF_SRC, "leaf-v1", "leaf-v2");
    dev_build(&sb).assert_stored_miss("demo_leaf");

    // Back to v1: restored; the incremental dir still holds v2's session.
    sb.edit(LEAF_SRC, "leaf-v2", "leaf-v1");
    dev_build(&sb).assert_hit("demo_leaf");

    sb.edit(LEAF_SRC, "leaf-v1", "leaf-v3");
    let edited = dev_build(&sb);
    edited.assert_stored_miss("demo_leaf");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v3")]));
    let test = dev(&sb, &["test", "-p", "demo_leaf"]).ok();
    assert!(test.stdout.contains("1 passed"), "{}", test.stdout);
}

#[test]
fn clean_of_one_member_between_builds_hits_it() {
    let sb = Sandbox::new();
    dev_build(&sb);
    dev(&sb, &["clean", "-p", "demo_lib"]).ok();
    let rebuilt = dev_build(&sb);
    rebuilt.assert_hit("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[]));

    // An edit of the member cleaned and restored compiles with no incremental state of its own.
    sb.edit(LIB_DATA, "data-v1", "data-v2");
    dev_build(&sb).assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[("data", "data-v2")]));
}

/// Twenty edit-and-build rounds through versions of two crates, reverts among them, and a
/// `cargo clean` before every fifth: a mix of hits, incremental recompiles against rustc's own
/// state and against sessions put back after the clean, each giving the program of that
/// round's sources.
#[test]
fn twenty_rounds_of_edits_hits_and_incremental_recompiles() {
    let sb = Sandbox::new();
    dev_build(&sb);
    // (leaf version, data version) per round; versions come back, in other combinations.
    let rounds: [(u32, u32); 20] = [
        (2, 1),
        (2, 2),
        (1, 2),
        (1, 1),
        (3, 1),
        (3, 3),
        (2, 3),
        (2, 1),
        (1, 1),
        (4, 2),
        (4, 4),
        (3, 4),
        (1, 4),
        (1, 1),
        (5, 5),
        (2, 2),
        (5, 2),
        (5, 5),
        (3, 3),
        (1, 1),
    ];
    let (mut leaf, mut data) = (1, 1);
    let (mut hits, mut misses) = (0, 0);
    for (round, (next_leaf, next_data)) in rounds.into_iter().enumerate() {
        if next_leaf != leaf {
            sb.edit(
                LEAF_SRC,
                &format!("leaf-v{leaf}"),
                &format!("leaf-v{next_leaf}"),
            );
        }
        if next_data != data {
            sb.edit(
                LIB_DATA,
                &format!("data-v{data}"),
                &format!("data-v{next_data}"),
            );
        }
        (leaf, data) = (next_leaf, next_data);
        if round % 5 == 4 {
            sb.clean();
        }
        let run = dev(&sb, &["build"]).named(&format!("round {round}")).ok();
        for e in run.events.iter().filter(|e| e["kind"] == "rustc") {
            match e["outcome"].as_str() {
                Some("hit") => hits += 1,
                Some("miss") => misses += 1,
                _ => {}
            }
        }
        let (leaf_value, data_value) = (format!("leaf-v{leaf}"), format!("data-v{data}"));
        assert_eq!(
            sb.run_bin(),
            expected_output(&[("leaf", &leaf_value), ("data", &data_value)]),
            "round {round}"
        );
    }
    assert!(hits >= 10, "{hits} hits in 20 rounds");
    assert!(misses >= 10, "{misses} misses in 20 rounds");
    let restored = sb.stats()["incremental"]["restored"].as_u64().unwrap_or(0);
    assert!(restored >= 3, "{restored} sessions put back after 4 cleans");
}

/// Incremental and non-incremental compiles of the same source do not serve each other: their
/// outputs differ (codegen units, object names), and a `CARGO_INCREMENTAL=0` build must come
/// out byte for byte as a plain one (docs/design.md §6d).
#[test]
fn incremental_and_non_incremental_entries_are_kept_apart() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.clean();
    let dev_run = dev_build(&sb);
    for lib in LIBS {
        dev_run.assert_stored_miss(lib);
    }
    sb.clean();
    let plain = sb.build();
    for lib in LIBS {
        plain.assert_hit(lib);
    }
}
