//! `cargo clippy` through rcache: cargo runs `rcache clippy-driver rustc <args>`
//! (`RUSTC_WORKSPACE_WRAPPER` nested inside `RUSTC_WRAPPER`). The argv looks like a check,
//! so an rcache that ignored the driver would serve the `cargo check` entry and lose clippy's
//! lints. demo_lib has one (`needless_return`) that rustc alone never reports.

use crate::harness::{LIBS, Sandbox};

const LINT: &str = "warning: unneeded `return` statement";

#[test]
fn check_entries_are_never_served_to_clippy_and_its_lints_show_every_time() {
    let sb = Sandbox::new();
    let check = sb.cargo(&["check"]).ok();
    for lib in LIBS {
        check.assert_stored_miss(lib);
    }
    assert!(!check.stderr.contains(LINT), "rustc reported a clippy lint");

    let clippy = sb.cargo(&["clippy"]).ok();
    assert!(
        clippy.stderr.contains(LINT),
        "clippy's lint is missing after a cargo check\n{}\nstderr:\n{}",
        clippy.describe_events(),
        clippy.stderr
    );

    sb.clean();
    let again = sb.cargo(&["clippy"]).ok();
    assert_eq!(
        again.diagnostics(),
        clippy.diagnostics(),
        "clippy's diagnostics differ on the second run\n{}",
        again.describe_events()
    );
}
