//! What rcache does not cache goes straight to rustc, with its reason logged: everything when
//! `RCACHE_DISABLE=1`, and `-C incremental` compiles, whose outputs are not reproducible.

use std::path::PathBuf;

use crate::harness::{LIBS, Sandbox, expected_output};

#[test]
fn disabled_rcache_passes_everything_through_and_stores_nothing() {
    let sb = Sandbox::new();
    let run = sb.cargo(&["build"]).env("RCACHE_DISABLE", "1").ok();
    assert!(!run.events.is_empty(), "no events logged");
    for e in &run.events {
        assert_eq!(e["outcome"], "passthrough", "{e}");
        if !e["crate"].is_null() {
            assert_eq!(e["reason"], "disabled", "{e}");
        }
    }
    assert_eq!(sb.run_bin(), expected_output(&[]));
    assert_eq!(
        sb.blobs(),
        Vec::<PathBuf>::new(),
        "blobs stored while disabled"
    );
}

#[test]
fn incremental_compiles_pass_through_with_their_reason() {
    let sb = Sandbox::new();
    let run = sb.cargo(&["build"]).env("CARGO_INCREMENTAL", "1").ok();
    for lib in LIBS {
        run.assert_passthrough(lib, "incremental");
    }
    assert_eq!(sb.run_bin(), expected_output(&[]));
}
