//! Clean rebuilds come from the cache: a cold build, `cargo clean`, then a warm build that
//! restores every crate (libs, the proc macro, the build script and the bin), byte for byte
//! what rustc and the linker themselves write.

use crate::harness::{LIBS, Sandbox, assert_same_files, expected_output};

/// The reference is a build without rcache at the same workspace and target paths, because
/// rustc embeds absolute paths in its outputs. Its files are set aside before the rcache builds
/// reuse the target dir.
#[test]
fn warm_build_after_clean_hits_every_crate_and_matches_plain_rustc() {
    let sb = Sandbox::new();
    sb.cargo(&["build"]).plain_remapped().ok();
    let plain = sb.deps_outputs(&sb.target);
    let plain_stdout = sb.run_bin();
    assert_eq!(plain_stdout, expected_output(&[]));
    sb.clean();

    sb.cold_build();
    sb.clean();
    let warm = sb.build();

    for krate in LIBS
        .iter()
        .chain(&["demo_macro", "build_script_build", "demo_bin"])
    {
        warm.assert_hit(krate);
    }
    let unexpected: Vec<_> = warm
        .events
        .iter()
        .filter(|e| e["outcome"] == "miss" || e["outcome"] == "error")
        .collect();
    assert!(
        unexpected.is_empty(),
        "warm build had misses or errors\n{}",
        warm.describe_events()
    );

    assert_same_files(
        &plain,
        &sb.deps_outputs(&sb.target),
        "warm rcache vs plain rustc",
    );
    assert_eq!(sb.run_bin(), plain_stdout);
}

/// A warm build whose outputs are all present is a no-op for cargo: restored files must not
/// look newer than their dependents, or cargo would rebuild forever (docs/design.md §4).
#[test]
fn build_after_warm_build_is_fresh() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.clean();
    sb.build();
    let again = sb.build();
    let compiled: Vec<_> = again
        .events
        .iter()
        .filter(|e| !e["crate"].is_null())
        .collect();
    assert!(
        compiled.is_empty(),
        "cargo recompiled after a warm build\n{}\nstderr:\n{}",
        again.describe_events(),
        again.stderr
    );
}
