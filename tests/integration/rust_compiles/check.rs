//! `cargo check` (metadata-only compiles) is cached like `cargo build`.

use crate::harness::{LIBS, Sandbox, assert_same_files};

#[test]
fn check_after_clean_hits_and_restores_identical_rmeta() {
    let sb = Sandbox::new();
    let first = sb.cargo(&["check"]).ok();
    for lib in LIBS {
        first.assert_stored_miss(lib);
    }
    let checked = sb.deps_outputs(&sb.target);
    assert!(
        checked
            .keys()
            .all(|name| name.ends_with(".rmeta") || name.ends_with(".so")),
        "cargo check wrote more than metadata: {:?}",
        checked.keys()
    );
    sb.clean();

    let second = sb.cargo(&["check"]).ok();
    for lib in LIBS {
        second.assert_hit(lib);
    }
    second.assert_hit("demo_bin");
    assert_same_files(
        &checked,
        &sb.deps_outputs(&sb.target),
        "rmeta after check hit",
    );
}
