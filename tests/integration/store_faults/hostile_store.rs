//! Hostile and damaged store records: entries whose output names try to leave the out dir,
//! manifests and entries that do not decode, and blobs whose bytes are not what their name says.
//! Each one makes rcache compile instead (counted as `corrupt_store`), writes nothing outside
//! the out dir, leaves the outputs identical to rustc's, and is repaired by the next store.
//!
//! The records are rewritten through LMDB itself (the test process opens the store's index env
//! with the same flags as rcache), as an attacker or a bug with write access to the store would.

use std::fs;
use std::path::{Path, PathBuf};

use heed::EnvFlags;
use rcache::store::entry::{self, Entry};
use rcache::store::layout::{INDEX_MAP_SIZE, Layout, index_db};
use rcache::store::lmdb::{self, Db};

use crate::harness::{LIBS, Run, Sandbox, assert_same_files, expected_output};

/// Which index database a rewrite touches.
#[derive(Clone, Copy)]
enum Records {
    Manifests,
    Entries,
}

/// Replaces every value of one index database with `rewrite(old value)`; returns how many.
fn rewrite_records(store: &Path, which: Records, rewrite: impl Fn(&[u8]) -> Vec<u8>) -> usize {
    let layout = Layout::new(store);
    let env = lmdb::open_env(&layout.index_dir(), INDEX_MAP_SIZE, EnvFlags::NO_META_SYNC)
        .expect("open the index env");
    let [manifests, entries, _, _]: [Db; 4] =
        lmdb::open_databases(env, index_db::ALL).expect("open the index databases");
    let db = match which {
        Records::Manifests => manifests,
        Records::Entries => entries,
    };
    let mut wtxn = env.write_txn().unwrap();
    let records: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter(&wtxn)
        .unwrap()
        .map(|item| {
            let (key, value) = item.unwrap();
            (key.to_vec(), value.to_vec())
        })
        .collect();
    for (key, value) in &records {
        db.put(&mut wtxn, key, &rewrite(value)).unwrap();
    }
    wtxn.commit().unwrap();
    records.len()
}

/// Every file and directory under `dir`, except the sandbox's workspace, target and store.
fn outside_files(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|entry| {
            !["ws", "target", "store"]
                .iter()
                .any(|skip| entry.path() == root.join(skip))
        })
        .map(|entry| entry.unwrap().into_path())
        .filter(|path| {
            // Per-command event logs are the harness's own.
            !path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("events-"))
        })
        .collect();
    found.sort();
    found
}

#[track_caller]
fn assert_compiled_after_a_fault(run: &Run, lib: &str) {
    let event = run.event(lib).expect("the lib was compiled");
    assert!(
        event["outcome"] == "error" && event["reason"] == "corrupt_store",
        "{lib} over a damaged record should be an error counted as corrupt_store\n{}",
        run.describe_events()
    );
}

#[test]
fn output_names_that_leave_the_out_dir_are_refused() {
    let sb = Sandbox::new();
    sb.cargo(&["build"]).plain_remapped().ok();
    let plain = sb.deps_outputs(&sb.target);
    sb.clean();
    sb.cold_build();

    let outside = sb.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let absolute = sb.root.join("absolute-escape");
    let hostile_names = [
        "../../../escape-by-dotdot".to_string(),
        absolute.to_string_lossy().into_owned(),
        "through-link/escape-by-symlink".to_string(),
    ];
    for hostile in &hostile_names {
        sb.clean();
        let before = outside_files(&sb.root);
        let rewritten = rewrite_records(&sb.store, Records::Entries, |value| {
            let mut entry: Entry = entry::decode(value).expect("an intact entry");
            for output in &mut entry.outputs {
                output.name = format!("{hostile}-{}", output.name);
            }
            entry::encode(&entry)
        });
        assert!(
            rewritten >= LIBS.len(),
            "only {rewritten} entries in the store"
        );
        // A symlink in the out dir pointing outside: a name through it would escape.
        let deps = sb.target.join("debug/deps");
        fs::create_dir_all(&deps).unwrap();
        std::os::unix::fs::symlink(&outside, deps.join("through-link")).unwrap();

        let run = sb.build();
        for lib in LIBS {
            assert_compiled_after_a_fault(&run, lib);
        }
        assert_eq!(sb.run_bin(), expected_output(&[]));
        assert_eq!(
            outside_files(&sb.root),
            before,
            "an entry named {hostile:?} wrote outside the out dir"
        );
        fs::remove_file(deps.join("through-link")).unwrap();
        assert_same_files(
            &plain,
            &sb.deps_outputs(&sb.target),
            "after a hostile entry",
        );
    }

    // Each rebuild stored its entries again under the same keys, replacing the hostile ones.
    sb.clean();
    let run = sb.build();
    for lib in LIBS {
        run.assert_hit(lib);
    }
    sb.rcache_ok(&["verify"]);
}

/// Deterministic noise, so a failure reproduces.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
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
fn undecodable_manifests_and_entries_are_faults_that_the_next_store_repairs() {
    let sb = Sandbox::new();
    sb.cargo(&["build"]).plain_remapped().ok();
    let plain = sb.deps_outputs(&sb.target);
    sb.clean();
    sb.cold_build();

    for (which, seed) in [(Records::Manifests, 7), (Records::Entries, 11)] {
        let rewritten = rewrite_records(&sb.store, which, |value| garbage(value.len(), seed));
        assert!(rewritten >= LIBS.len());
        sb.clean();
        let run = sb.build();
        for lib in LIBS {
            assert_compiled_after_a_fault(&run, lib);
        }
        assert_eq!(sb.run_bin(), expected_output(&[]));
        assert_same_files(
            &plain,
            &sb.deps_outputs(&sb.target),
            "after garbage records",
        );

        sb.clean();
        let again = sb.build();
        for lib in LIBS {
            // The damaged record was replaced by the store step of the build before.
            again.assert_hit(lib);
        }
    }
    // The garbage entries' blob counts could not be released: verify says so, repair fixes it.
    sb.rcache_ok(&["verify", "--repair"]);
    sb.rcache_ok(&["verify"]);
}

/// A blob overwritten with other bytes of the same size passes every size check: only its
/// content says it is wrong. It is detected, removed, compiled around and stored again.
#[test]
fn a_blob_with_other_bytes_of_the_same_size_is_never_restored() {
    let sb = Sandbox::new();
    sb.cargo(&["build"]).plain_remapped().ok();
    let plain = sb.deps_outputs(&sb.target);
    sb.clean();
    sb.cold_build();
    sb.clean();

    let (_, rlib) = plain
        .iter()
        .find(|(name, _)| name.starts_with("libdemo_lib-") && name.ends_with(".rlib"))
        .expect("demo_lib rlib");
    let blob = sb
        .blobs()
        .into_iter()
        .find(|blob| fs::read(blob).is_ok_and(|bytes| bytes == *rlib))
        .expect("the store holds demo_lib's rlib");
    // Later than the blob's own write, so its mtime moves as any real modification's would.
    std::thread::sleep(crate::harness::EDIT_AGE);
    fs::write(&blob, garbage(rlib.len(), 3)).unwrap();

    let run = sb.build();
    run.assert_hit("demo_leaf");
    assert_compiled_after_a_fault(&run, "demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[]));
    assert_same_files(&plain, &sb.deps_outputs(&sb.target), "after a garbage blob");
    assert_eq!(
        fs::read(&blob).unwrap(),
        *rlib,
        "the store step did not write the blob again"
    );

    sb.clean();
    let again = sb.build();
    for lib in LIBS {
        again.assert_hit(lib);
    }
    sb.rcache_ok(&["verify"]);
}

/// A compiler whose dep-info is garbage (here a script that runs rustc, then overwrites the
/// `.d` files it wrote): rcache cannot know the inputs, so it stores nothing, and the compile
/// still succeeds with rustc's outputs. Called directly, as cargo would, since cargo itself
/// reads the `.d` too.
#[test]
fn garbage_dep_info_from_the_compiler_is_never_stored() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let script = sb.root.join("garbage-dep-info-rustc");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\"{rustc}\" \"$@\" || exit $?\nout=; prev=\nfor arg in \"$@\"; do\n  \
             [ \"$prev\" = --out-dir ] && out=$arg\n  prev=$arg\ndone\n\
             [ -n \"$out\" ] && for d in \"$out\"/*.d; do\n  \
             printf '\\377\\376 : ::\\n\\\\\\n\\000%s' \"$d\" > \"$d\"\ndone\nexit 0\n",
            rustc = crate::harness::real_rustc().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();

    let reference = sb.root.join("reference");
    fs::create_dir_all(&reference).unwrap();
    let mut plain = std::process::Command::new(crate::harness::PLAIN_REMAPPED_RUSTC);
    plain.arg(crate::harness::real_rustc());
    plain
        .args(crate::harness::leaf_rustc_args(&reference))
        .current_dir(&sb.ws);
    let (status, _, stderr) = crate::harness::run_command(&mut plain, "plain rustc");
    assert!(status.success(), "{stderr}");

    let out = sb.root.join("out");
    for attempt in 0..2 {
        fs::create_dir_all(&out).unwrap();
        let run = sb.rcache_rustc_with(&script, &crate::harness::leaf_rustc_args(&out), &[]);
        assert!(run.status.success(), "attempt {attempt}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        let event = run.event("demo_leaf").expect("an event for the compile");
        assert!(
            event["outcome"] == "error"
                || (event["outcome"] == "miss" && event["reason"].is_string()),
            "attempt {attempt}: a compile with garbage dep-info was stored or hit\n{}",
            run.describe_events()
        );
        let name = "libdemo_leaf-0123456789abcdef.rlib";
        assert_eq!(
            fs::read(out.join(name)).unwrap(),
            fs::read(reference.join(name)).unwrap(),
            "the rlib differs from rustc's"
        );
    }
    assert_eq!(sb.stats()["entries"], 0, "an entry was stored");
}
