//! Restored outputs behave like rustc's own: a later real compile over them succeeds, with
//! rcache or without it (disabled, or uninstalled).
//!
//! Restored rlibs are hard links to store blobs. rustc refuses to replace an output file whose
//! mode is read-only ("output file ... is not writeable"), even as root, so a read-only blob
//! would break the next real compile of that crate.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Sandbox, expected_output};

const LEAF_SRC: &str = "demo_leaf/src/lib.rs";

#[test]
fn compiling_over_restored_outputs_succeeds_with_and_without_rcache() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.clean();
    let warm = sb.build();
    warm.assert_hit("demo_leaf");
    for entry in std::fs::read_dir(sb.target.join("debug/deps")).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_ne!(mode & 0o200, 0, "{} is not writable", path.display());
    }

    // A real compile through rcache over the restored outputs.
    sb.edit(LEAF_SRC, "leaf-v1", "leaf-v2");
    let edited = sb.build();
    edited.assert_stored_miss("demo_leaf");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v2")]));

    // Back to restored outputs, then plain cargo without rcache compiles over them.
    sb.edit(LEAF_SRC, "leaf-v2", "leaf-v1");
    sb.build().assert_hit("demo_leaf");
    sb.edit(LEAF_SRC, "leaf-v1", "leaf-v3");
    sb.cargo(&["build"]).plain_remapped().ok();
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v3")]));
}

/// Restoring over an rlib that is already a link to the same blob leaves no temp file behind
/// (a rename between two links to one file is a no-op that succeeds).
#[test]
fn restoring_over_the_same_blob_leaves_no_temp_files() {
    let sb = Sandbox::new();
    let out_dir = sb.root.join("direct-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    sb.compile_leaf_directly(&out_dir)
        .assert_stored_miss("demo_leaf");
    for _ in 0..3 {
        sb.compile_leaf_directly(&out_dir).assert_hit("demo_leaf");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".rcache-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}
