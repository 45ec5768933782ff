//! What is not in the key must not break a hit: environment outside the allowlist, job counts,
//! colour, and the target dir's path for a crate whose output does not depend on it
//! (docs/design.md §2: `--out-dir`, `-L` and `--extern` paths are not hashed).

use crate::harness::{LIBS, Sandbox, assert_no_file_names, expected_output};

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

/// Another target dir (docs/design.md §6e): every crate hits, demo_lib too, whose rlib names a
/// file it includes from `$OUT_DIR` (remapped to `/rcache/target`), and no output names the
/// first target dir. With `RCACHE_PATH_INDEPENDENT=off` the target dir's path is keyed as
/// written: demo_lib misses.
#[test]
fn another_target_dir_hits_every_crate_and_names_only_its_own_paths() {
    let sb = Sandbox::new();
    sb.cold_build();

    let other = sb.root.join("other-target");
    let run = sb.cargo(&["build"]).target_dir(&other).ok();
    for krate in [
        "demo_leaf",
        "demo_lib",
        "demo_macro",
        "demo_bin",
        "build_script_build",
    ] {
        run.assert_hit(krate);
    }
    assert_eq!(sb.run_bin_in(&other), expected_output(&[]));
    assert_no_file_names(&other, &sb.target);

    let third = sb.root.join("third-target");
    let off = sb
        .cargo(&["build"])
        .target_dir(&third)
        .env("RCACHE_PATH_INDEPENDENT", "off")
        .ok();
    off.assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin_in(&third), expected_output(&[]));
}
