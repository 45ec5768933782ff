//! What is not in the key must not break a hit: environment outside the allowlist, job counts,
//! colour, and the target dir's path for a crate whose output does not depend on it
//! (docs/design.md §2: `--out-dir`, `-L` and `--extern` paths are not hashed).

use crate::harness::{LIBS, Sandbox, expected_output};

#[test]
fn unrelated_environment_job_count_and_colour_do_not_break_hits() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.clean();

    let warm = sb
        .cargo(&["build", "-j", "1"])
        .env("CARGO_TERM_COLOR", "always")
        .env("CARGO_BUILD_JOBS", "1")
        .env("RCACHE_TEST_UNRELATED", "whatever")
        .ok();
    for lib in LIBS {
        warm.assert_hit(lib);
    }
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// demo_leaf's outputs are the same in any target dir, so it hits there. demo_lib includes a
/// file from `$OUT_DIR`, which lives in the target dir and whose absolute path is in the
/// rlib: it must miss.
#[test]
fn another_target_dir_reuses_only_what_does_not_depend_on_it() {
    let sb = Sandbox::new();
    sb.cold_build();

    let other = sb.root.join("other-target");
    let run = sb.cargo(&["build"]).target_dir(&other).ok();
    run.assert_hit("demo_leaf");
    run.assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin_in(&other), expected_output(&[]));
}
