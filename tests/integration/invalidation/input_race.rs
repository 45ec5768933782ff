//! A source file edited while rustc compiles it: rcache must not store the result, because the
//! output may come from the old content while a recorded hash would come from the new one.
//!
//! The timing comes from a compiler script set as `RUSTC`: cargo runs
//! `rcache <script> <args>`, the script runs the real rustc and then, once, edits demo_leaf's
//! source before exiting, which is after rustc read the file and before rcache can store.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::harness::{Sandbox, expected_output, real_rustc};

#[test]
fn source_edited_during_compile_is_not_stored_and_next_build_shows_edit() {
    let sb = Sandbox::new();
    let script = sb.root.join("editing-rustc.sh");
    let marker = sb.root.join("edited.marker");
    let source = sb.path("demo_leaf/src/lib.rs");
    fs::write(
        &script,
        format!(
            r#"#!/bin/sh
# Runs the real rustc (every argument passed through, probes included), then edits
# demo_leaf's source once, right after rustc compiled it.
"{rustc}" "$@"
status=$?
case " $* " in
  *" --crate-name demo_leaf "*)
    if [ ! -e "{marker}" ]; then
      : > "{marker}"
      sed -i 's/leaf-v1/leaf-v2/' "{source}"
    fi
    ;;
esac
exit $status
"#,
            rustc = real_rustc().display(),
            marker = marker.display(),
            source = source.display(),
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();

    let first = sb.cargo(&["build"]).env("RUSTC", &script).ok();
    assert!(
        marker.exists(),
        "the script never saw demo_leaf being compiled"
    );
    first.assert_unstored_miss("demo_leaf", "input_changed_during_compile");
    // The binary of this build was linked from the pre-edit compile.
    assert_eq!(sb.run_bin(), expected_output(&[]));

    let second = sb.cargo(&["build"]).env("RUSTC", &script).ok();
    second.assert_stored_miss("demo_leaf");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v2")]));
}
