//! What rcache does not cache goes straight to rustc, with its reason logged: everything when
//! `RCACHE_DISABLE=1`, and arguments rcache does not know.

use std::fs;
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

/// `--remap-path-scope` is a stable rustc option (`rustc --help -v`) that rcache's argument
/// parser does not list: rcache must not guess what it does, so the compile goes to rustc.
#[test]
fn unknown_argument_passes_through_and_the_build_passes() {
    let sb = Sandbox::new();
    let run = sb
        .cargo(&["build"])
        .env("RUSTFLAGS", "--remap-path-scope=object")
        .ok();
    for lib in LIBS {
        run.assert_passthrough(lib, "unknown_argument");
        let deps = sb.target.join("debug/deps");
        let rlib = fs::read_dir(&deps)
            .unwrap_or_else(|e| panic!("read {}: {e}", deps.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .find(|name| name.starts_with(&format!("lib{lib}-")) && name.ends_with(".rlib"));
        assert!(rlib.is_some(), "rustc wrote no lib{lib}-*.rlib");
    }
    assert_eq!(sb.run_bin(), expected_output(&[]));
    assert_eq!(
        sb.blobs(),
        Vec::<PathBuf>::new(),
        "passed-through compiles stored blobs"
    );
}
