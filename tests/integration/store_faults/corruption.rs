//! A damaged store never breaks a build: garbage in the LMDB index and truncated blobs make
//! rcache run rustc, and the outputs are still byte-identical to rustc's; `rcache clear`
//! recovers a store whose index is garbage.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use crate::harness::{Sandbox, assert_same_files, expected_output, truncate_to_half};

/// A plain build (the reference outputs, set aside), then a cold rcache build into the same
/// target dir. Returns the reference and the store blob holding demo_lib's rlib.
fn reference_and_cold_build(sb: &Sandbox) -> (BTreeMap<String, Vec<u8>>, PathBuf) {
    sb.cargo(&["build"]).plain_remapped().ok();
    let plain = sb.deps_outputs(&sb.target);
    sb.clean();
    sb.cold_build();

    let (_, rlib) = plain
        .iter()
        .find(|(name, _)| name.starts_with("libdemo_lib-") && name.ends_with(".rlib"))
        .expect("demo_lib rlib");
    let blob = sb
        .blobs()
        .into_iter()
        .find(|b| fs::read(b).is_ok_and(|bytes| bytes == *rlib))
        .expect("no blob in the store holds demo_lib's rlib");
    sb.clean();
    (plain, blob)
}

/// Deterministic noise, so a failure reproduces.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garbage_index_and_truncated_blob_leave_the_rebuild_green_and_correct() {
    let sb = Sandbox::new();
    let (plain, blob) = reference_and_cold_build(&sb);

    let index = sb.store.join("v2/index/data.mdb");
    let len = fs::metadata(&index)
        .expect("v2/index/data.mdb exists")
        .len();
    fs::write(&index, garbage(len.max(64 * 1024) as usize)).unwrap();
    truncate_to_half(&blob);

    let rebuild = sb.build();
    for lib in ["demo_leaf", "demo_lib"] {
        let outcome = &rebuild.event(lib).expect("lib compiled")["outcome"];
        assert!(
            outcome == "miss" || outcome == "error",
            "{lib} was {outcome} with a garbage index\n{}",
            rebuild.describe_events()
        );
    }
    assert_same_files(
        &plain,
        &sb.deps_outputs(&sb.target),
        "rebuild over a corrupt store",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

#[test]
fn truncated_blob_is_a_counted_fault_never_a_hit() {
    let sb = Sandbox::new();
    let (plain, blob) = reference_and_cold_build(&sb);
    truncate_to_half(&blob);

    let rebuild = sb.build();
    rebuild.assert_hit("demo_leaf");
    let lib = rebuild.event("demo_lib").expect("demo_lib compiled");
    assert_eq!(
        lib["outcome"],
        "error",
        "a truncated blob is a cache fault (issue 2: counted in errors)\n{}",
        rebuild.describe_events()
    );
    // The event says what failed, and where: the blob the entry names.
    let detail = lib["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("restore failed") && detail.contains(&blob.display().to_string()),
        "{lib}"
    );
    assert!(
        rebuild.event("demo_leaf").unwrap().get("detail").is_none(),
        "a hit has no detail"
    );
    assert_same_files(
        &plain,
        &sb.deps_outputs(&sb.target),
        "rebuild over a truncated blob",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));

    let stats = sb.stats();
    assert!(
        stats["errors"].as_u64().unwrap_or(0) >= 1,
        "the fault is not counted: {stats}"
    );
}

#[test]
fn clear_recovers_a_store_whose_index_is_garbage() {
    let sb = Sandbox::new();
    sb.cold_build();
    let index = sb.store.join("v2/index/data.mdb");
    std::fs::write(&index, vec![0xa5u8; 64 * 1024]).unwrap();
    let failed = sb.rcache(&["stats"]).output().unwrap();
    assert!(
        !failed.status.success(),
        "stats on a garbage index must fail"
    );
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("rcache clear"),
        "the error must say how to recover: {}",
        String::from_utf8_lossy(&failed.stderr)
    );
    sb.rcache_ok(&["clear"]);
    sb.clean();
    let rebuilt = sb.build();
    rebuilt.assert_stored_miss("demo_lib");
    sb.clean();
    sb.build().assert_hit("demo_lib");
}
