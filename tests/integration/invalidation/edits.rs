//! Invalidation: each kind of input change gives a miss on exactly the crates it affects (per
//! the events log of that build), the program's output shows the change, and going back to
//! the old input hits the entry stored before.
//!
//! Cargo decides which crates to recompile; these tests assert on rcache's outcome for the
//! crates cargo did recompile. A crate the change does not affect must not miss.

use crate::harness::{GREETING, Sandbox, expected_output};

const LEAF_SRC: &str = "demo_leaf/src/lib.rs";

#[test]
fn editing_leaf_source_misses_both_libs_and_reverting_hits() {
    let sb = Sandbox::new();
    sb.cold_build();

    sb.edit(LEAF_SRC, "leaf-v1", "leaf-v2");
    let edited = sb.build();
    // demo_lib takes demo_leaf's rmeta as an --extern, and that rmeta changed.
    edited.assert_stored_miss("demo_leaf");
    edited.assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v2")]));

    // The source is the original again (same size, new mtime): the first entries match, and
    // the restored leaf rmeta is the one demo_lib's first entry was keyed on.
    sb.edit(LEAF_SRC, "leaf-v2", "leaf-v1");
    let reverted = sb.build();
    reverted.assert_hit("demo_leaf");
    reverted.assert_hit("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

#[test]
fn editing_path_module_misses_only_that_lib() {
    let sb = Sandbox::new();
    sb.cold_build();

    sb.edit("demo_lib/src/extra/path_mod.rs", "path-v1", "path-v2");
    let edited = sb.build();
    edited.assert_not_miss("demo_leaf");
    edited.assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[("path", "path-v2")]));
}

#[test]
fn editing_include_str_file_misses_only_that_lib_and_reverting_hits() {
    let sb = Sandbox::new();
    sb.cold_build();

    let data = "demo_lib/data/message.txt";
    sb.edit(data, "data-v1", "data-v2");
    let edited = sb.build();
    edited.assert_not_miss("demo_leaf");
    edited.assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[("data", "data-v2")]));

    sb.edit(data, "data-v2", "data-v1");
    let reverted = sb.build();
    reverted.assert_not_miss("demo_leaf");
    reverted.assert_hit("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// `DEMO_GREETING` is in no allowlist; only the `# env-dep` line of demo_lib's dep-info ties
/// the entry to its value.
#[test]
fn changing_env_var_read_by_env_macro_misses_and_restoring_it_hits() {
    let sb = Sandbox::new();
    sb.cold_build();

    let changed = sb.cargo(&["build"]).env("DEMO_GREETING", "hola").ok();
    changed.assert_not_miss("demo_leaf");
    changed.assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[("greeting", "hola")]));

    let restored = sb.cargo(&["build"]).env("DEMO_GREETING", GREETING).ok();
    restored.assert_not_miss("demo_leaf");
    restored.assert_hit("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// RUSTFLAGS reach every crate, so both libraries miss.
#[test]
fn cfg_added_through_rustflags_misses_both_libs() {
    let sb = Sandbox::new();
    sb.cold_build();

    let flagged = sb
        .cargo(&["build"])
        .env("RUSTFLAGS", "--cfg demo_flag")
        .ok();
    flagged.assert_stored_miss("demo_leaf");
    flagged.assert_stored_miss("demo_lib");
    assert_eq!(
        sb.run_bin(),
        expected_output(&[("lib_flag", "on"), ("bin_flag", "on")])
    );
}

/// The build script turns `build_input.txt` into `$OUT_DIR/gen.rs`: the generated file's
/// contents, not its mtime, decide. Restoring the input regenerates the first gen.rs.
#[test]
fn changing_build_script_output_misses_and_regenerating_the_old_one_hits() {
    let sb = Sandbox::new();
    sb.cold_build();

    let input = "demo_lib/build_input.txt";
    sb.edit(input, "generated-v1", "generated-v2");
    let changed = sb.build();
    changed.assert_not_miss("demo_leaf");
    changed.assert_stored_miss("demo_lib");
    assert_eq!(
        sb.run_bin(),
        expected_output(&[("generated", "generated-v2")])
    );

    sb.edit(input, "generated-v2", "generated-v1");
    let restored = sb.build();
    restored.assert_not_miss("demo_leaf");
    restored.assert_hit("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[]));
}
