//! The outputs of linked crates as stored and restored: a restored executable keeps its mode, two
//! invocations that produce byte-identical binaries share one blob, an output written in place
//! after it was stored (the blob is the output's inode) is never restored, a hit whose blobs no
//! target dir holds links them instead of copying them, and a target dir named through `..`
//! stores its linked crates.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::harness::{Sandbox, expected_output};

/// The linked outputs of demo_ws in a target dir, with their permission bits: the bin and the
/// proc macro's `.so` in `deps`, and the build script's executable under `build`.
fn linked_modes(target: &Path) -> BTreeMap<String, u32> {
    let deps = target.join("debug/deps");
    let mut files: Vec<PathBuf> = fs::read_dir(&deps)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            (name.starts_with("demo_bin-") && path.extension().is_none())
                || (name.starts_with("libdemo_macro-") && name.ends_with(".so"))
        })
        .collect();
    for entry in fs::read_dir(target.join("debug/build")).unwrap() {
        let dir = entry.unwrap().path();
        for file in fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if name.starts_with("build_script_build-") && path.extension().is_none() {
                files.push(path);
            }
        }
    }
    let modes: BTreeMap<String, u32> = files
        .iter()
        .map(|path| {
            let name = path.strip_prefix(target).unwrap().display().to_string();
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
            (name, mode)
        })
        .collect();
    assert_eq!(
        modes.len(),
        3,
        "linked outputs in {}: {modes:?}",
        target.display()
    );
    modes
}

#[test]
fn restored_executables_keep_their_mode_and_run() {
    let sb = Sandbox::new();
    sb.cold_build();
    let linked = linked_modes(&sb.target);
    sb.clean();

    let warm = sb.build();
    for krate in ["demo_macro", "build_script_build", "demo_bin"] {
        warm.assert_hit(krate);
    }
    let restored = linked_modes(&sb.target);
    assert_eq!(restored, linked, "modes of restored vs linked outputs");
    for (name, mode) in &restored {
        assert_ne!(mode & 0o111, 0, "{name} is not executable: {mode:o}");
    }
    // Cargo's uplifted copy in target/debug runs.
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// A second entry for demo_bin: a `description` in its manifest changes
/// `CARGO_PKG_DESCRIPTION`, which is in the invocation key, but not the binary (nothing reads
/// it). Rewriting main.rs unchanged makes cargo recompile. The new entry's binary and
/// dep-info are the bytes the store already has: an entry more, no blob more.
#[test]
fn identical_binaries_from_two_invocations_are_one_blob() {
    let sb = Sandbox::new();
    sb.cold_build();
    let bin = sb.target.join("debug/demo_bin");
    let first = fs::read(&bin).unwrap();
    let (blobs, entries) = (sb.blobs().len(), sb.stats()["entries"].clone());

    sb.edit(
        "demo_bin/Cargo.toml",
        "publish.workspace = true\n",
        "publish.workspace = true\ndescription = \"the fixture binary\"\n",
    );
    let main_rs = fs::read_to_string(sb.path("demo_bin/src/main.rs")).unwrap();
    sb.write("demo_bin/src/main.rs", &main_rs);
    let second = sb.build();
    second.assert_stored_miss("demo_bin");
    assert!(
        fs::read(&bin).unwrap() == first,
        "the premise failed: the description changed demo_bin's bytes"
    );
    assert_eq!(
        sb.stats()["entries"],
        entries.as_u64().unwrap() + 1,
        "the second compile of demo_bin is not a new entry"
    );
    assert_eq!(
        sb.blobs().len(),
        blobs,
        "an identical binary was stored as a second blob"
    );
    let copies = sb
        .blobs()
        .iter()
        .filter(|blob| fs::read(blob).unwrap() == first)
        .count();
    assert_eq!(copies, 1, "blobs holding demo_bin's bytes");
}

/// Outputs are stored by hard link, so the blob is the output's inode. A tool that then writes
/// the executable in place (as `strip` may) changes the blob: the next restore must find that
/// out and compile instead, never hand out the modified bytes.
#[test]
fn an_output_written_in_place_after_its_store_is_not_restored() {
    let sb = Sandbox::new();
    sb.cold_build();
    let bin = deps_file(&sb.target, "demo_bin-", "");
    assert_an_edit_in_place_is_not_restored(&sb, &bin);
}

/// Appends to demo_bin's binary in deps (as `strip` may write it in place), then cleans and
/// builds: demo_bin must be compiled, not restored with the edited bytes, and the store stays
/// consistent.
#[track_caller]
fn assert_an_edit_in_place_is_not_restored(sb: &Sandbox, bin: &Path) {
    let mut file = fs::OpenOptions::new().append(true).open(bin).unwrap();
    std::io::Write::write_all(&mut file, b"written in place").unwrap();
    drop(file);
    sb.clean();

    let warm = sb.build();
    let event = warm.event("demo_bin").expect("demo_bin compiled");
    assert_ne!(event["outcome"], "hit", "{}", warm.describe_events());
    assert_eq!(sb.run_bin(), expected_output(&[]));
    let restored = fs::read(sb.target.join("debug/demo_bin")).unwrap();
    assert!(!restored.ends_with(b"written in place"));
    crate::harness::verify_clean(sb);
}

/// The file in `target/debug/deps` whose name starts with `prefix` and ends with `suffix`.
fn deps_file(target: &Path, prefix: &str, suffix: &str) -> PathBuf {
    fs::read_dir(target.join("debug/deps"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix) && !name.ends_with(".d")
        })
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in deps"))
}

/// After `cargo clean` the store alone holds every blob. The hits of the next build then link
/// their rmeta, binary and proc macro to the blob rather than copy it, with a fresh mtime: the
/// build after that runs nothing (cargo finds every unit fresh), the binary runs, and an edit in
/// place of the restored binary is caught at the next restore, as for an output stored by link.
/// Another target dir, built while the first holds the blobs, gets copies.
#[test]
fn a_hit_links_blobs_no_target_holds_and_stays_fresh() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.clean();
    let warm = sb.build();
    for krate in ["demo_leaf", "demo_lib", "demo_macro", "demo_bin"] {
        warm.assert_hit(krate);
    }
    let blob_inodes: Vec<u64> = sb
        .blobs()
        .iter()
        .map(|blob| fs::metadata(blob).unwrap().ino())
        .collect();
    let restored = [
        deps_file(&sb.target, "libdemo_lib-", ".rmeta"),
        deps_file(&sb.target, "libdemo_macro-", ".so"),
        deps_file(&sb.target, "demo_bin-", ""),
    ];
    for path in &restored {
        let ino = fs::metadata(path).unwrap().ino();
        assert!(
            blob_inodes.contains(&ino),
            "{} is a copy, not the blob",
            path.display()
        );
    }
    assert_eq!(sb.run_bin(), expected_output(&[]));
    let again = sb.build();
    assert!(
        again.events.is_empty(),
        "cargo ran units again after a restore by link:\n{}",
        again.describe_events()
    );

    // A second target dir while the first holds the blobs: copies, the blobs untouched.
    let other = sb.root.join("other-target");
    let second = sb.cargo(&["build"]).target_dir(&other).ok();
    second.assert_hit("demo_bin");
    let other_bin = deps_file(&other, "demo_bin-", "");
    assert!(!blob_inodes.contains(&fs::metadata(&other_bin).unwrap().ino()));
    assert_eq!(sb.run_bin_in(&other), expected_output(&[]));

    // `strip` may write the binary in place: the shared blob changes, and is not restored.
    assert_an_edit_in_place_is_not_restored(&sb, &restored[2]);
}

/// `CARGO_TARGET_DIR` spelled with `..`: rustc's own temporaries, which the linker lists, are
/// named under the normalized path; they are not inputs that vanished.
#[test]
fn a_target_dir_named_through_dotdot_stores_linked_crates() {
    let sb = Sandbox::new();
    let target = sb.ws.join("../target-through-dotdot");
    let run = sb.cargo(&["build"]).target_dir(&target).ok();
    for krate in ["demo_macro", "build_script_build", "demo_bin"] {
        run.assert_stored_miss(krate);
    }
}
