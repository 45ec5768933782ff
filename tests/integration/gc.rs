//! gc, prune, the sweep and the automatic trim, on stores filled by real cargo builds of the
//! fixture (issue 7), and gc, prune and verify in a loop beside builds.
//!
//! Which entry is which is controlled through the builds: `cargo build -p demo_leaf` stores
//! demo_leaf alone (so its size is known), a later full build stores the rest, and a hit on
//! demo_leaf after a `cargo clean` makes it the most recently used.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use filetime::FileTime;
use serde_json::Value;

use crate::harness::{LIBS, Sandbox, expected_output, run_command, verify_clean};

fn number(stats: &Value, key: &str) -> u64 {
    stats[key]
        .as_u64()
        .unwrap_or_else(|| panic!("stats has no integer {key}: {stats}"))
}

/// `cargo build -p demo_leaf` into an empty store; returns the bytes its entry takes.
#[track_caller]
fn store_leaf_alone(sb: &Sandbox) -> u64 {
    sb.cargo(&["build", "-p", "demo_leaf"])
        .ok()
        .assert_stored_miss("demo_leaf");
    let stats = sb.stats();
    assert_eq!(number(&stats, "entries"), 1, "{stats}");
    number(&stats, "store_bytes")
}

/// A hit on demo_leaf (after a clean), which makes it the most recently used entry.
#[track_caller]
fn use_leaf(sb: &Sandbox) {
    sb.clean();
    sb.cargo(&["build", "-p", "demo_leaf"])
        .ok()
        .assert_hit("demo_leaf");
}

fn set_mtime(path: &Path, age: Duration) {
    let when = FileTime::from_system_time(SystemTime::now() - age);
    filetime::set_file_mtime(path, when).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes `content` where the store keeps a blob of that content, as a store that died
/// before its index commit would leave it.
fn plant_blob(sb: &Sandbox, content: &[u8]) -> PathBuf {
    let hex = blake3::hash(content).to_hex();
    let path = sb.store.join("v2/blobs").join(&hex[..2]).join(&hex[2..]);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    path
}

/// Waits until no automatic gc holds `gc.lock`, at least one has run, and the store is within
/// `limit`; panics after a minute.
fn wait_for_auto_gc(sb: &Sandbox, limit: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(sb.store.join("v2/gc.lock"))
            .unwrap();
        let idle = lock.try_lock().is_ok();
        drop(lock);
        let stats = sb.stats();
        if idle && number(&stats, "auto_gc_runs") >= 1 && number(&stats, "store_bytes") <= limit {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "no automatic gc brought the store within {limit} bytes: {stats}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn gc_trims_least_recently_used_first_and_a_recent_hit_survives() {
    let sb = Sandbox::new();
    let leaf_bytes = store_leaf_alone(&sb);
    sb.build();
    let before = sb.stats();
    assert!(number(&before, "entries") >= 4, "{before}");
    // demo_leaf was stored first, so without its hit it would be the first to go.
    use_leaf(&sb);

    let limit = leaf_bytes.to_string();
    let dry = sb.rcache_ok(&["gc", "--max-size", &limit, "--dry-run"]);
    let removed = number(&before, "entries") - 1;
    assert!(
        dry.contains(&format!("Would remove {removed} entries")),
        "{dry}"
    );
    assert_eq!(sb.stats()["store_bytes"], before["store_bytes"], "dry run");

    let out = sb.rcache_ok(&["gc", "--max-size", &limit]);
    assert!(out.contains(&format!("Removed {removed} entries")), "{out}");
    assert!(out.contains("Remaining: 1 entries"), "{out}");
    let after = sb.stats();
    assert_eq!(number(&after, "entries"), 1, "{after}");
    assert_eq!(number(&after, "store_bytes"), leaf_bytes, "{after}");
    verify_clean(&sb);

    sb.clean();
    let rebuild = sb.build();
    rebuild.assert_hit("demo_leaf");
    rebuild.assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

#[test]
fn a_store_over_the_limit_is_trimmed_below_it_automatically() {
    let sb = Sandbox::new();
    // The fixture's entries take about 14 MiB, most of it demo_bin and the proc macro.
    let limit: u64 = 8 << 20;
    let first = sb
        .cargo(&["build"])
        .env("RCACHE_CACHE_SIZE", limit.to_string())
        .ok();
    for lib in LIBS {
        first.assert_stored_miss(lib);
    }
    let stats = wait_for_auto_gc(&sb, limit);
    assert!(number(&stats, "entries") >= 1, "{stats}");
    assert_eq!(number(&stats, "auto_gc_faults"), 0, "{stats}");
    verify_clean(&sb);

    assert_eq!(sb.run_bin(), expected_output(&[]));
    sb.clean();
    sb.cargo(&["build"])
        .env("RCACHE_CACHE_SIZE", limit.to_string())
        .ok();
    assert_eq!(sb.run_bin(), expected_output(&[]));
    wait_for_auto_gc(&sb, limit);
    verify_clean(&sb);
}

#[test]
fn prune_removes_by_age_and_dry_run_changes_nothing() {
    let sb = Sandbox::new();
    sb.cold_build();
    let before = sb.stats();
    let entries = number(&before, "entries");
    thread::sleep(Duration::from_secs(4));
    use_leaf(&sb);

    // RCACHE_MAX_AGE makes gc remove the same entries (the size limit is far away).
    let mut gc = sb.rcache(&["gc", "--dry-run"]);
    gc.env("RCACHE_MAX_AGE", "3s");
    let (status, by_age, _) = run_command(&mut gc, "rcache gc --dry-run");
    assert!(status.success());
    assert!(
        by_age.contains(&format!("Would remove {} entries", entries - 1)),
        "{by_age}"
    );
    let dry = sb.rcache_ok(&["prune", "--older-than", "3s", "--dry-run"]);
    assert!(
        dry.contains(&format!("Would remove {} entries", entries - 1)),
        "{dry}"
    );
    let unchanged = sb.stats();
    for key in ["entries", "blobs", "store_bytes"] {
        assert_eq!(unchanged[key], before[key], "--dry-run changed {key}");
    }

    let out = sb.rcache_ok(&["prune", "--older-than", "3s"]);
    assert!(
        out.contains(&format!("Removed {} entries", entries - 1)),
        "{out}"
    );
    assert_eq!(number(&sb.stats(), "entries"), 1);
    verify_clean(&sb);
    sb.clean();
    let rebuild = sb.build();
    rebuild.assert_hit("demo_leaf");
    rebuild.assert_stored_miss("demo_lib");
}

#[test]
fn a_blob_shared_by_two_entries_survives_the_removal_of_one() {
    let sb = Sandbox::new();
    let out = sb.root.join("out");
    // RUSTC_BOOTSTRAP is in the key, and changes the rlib and rmeta rustc writes but not the
    // `.d` file: two entries sharing one blob.
    let bootstrap = [("RUSTC_BOOTSTRAP", "1")];
    sb.compile_leaf_directly(&out)
        .assert_stored_miss("demo_leaf");
    thread::sleep(Duration::from_secs(3));
    sb.compile_leaf_directly_with(&out, &bootstrap)
        .assert_stored_miss("demo_leaf");
    let shared = sb.stats();
    assert_eq!(number(&shared, "entries"), 2, "{shared}");
    let dep_info = fs::read(out.join("demo_leaf-0123456789abcdef.d")).unwrap();
    let shared_blob = sb
        .blobs()
        .into_iter()
        .find(|blob| fs::read(blob).is_ok_and(|bytes| bytes == dep_info))
        .expect("the .d file's blob");
    assert_eq!(
        number(&shared, "dedup_saved_bytes"),
        dep_info.len() as u64,
        "only the .d blob is shared: {shared}"
    );
    let blobs = sb.blobs().len();
    assert_eq!(blobs, 5, "{shared}");

    // The older entry goes; its rlib and rmeta are freed, the shared .d blob is not.
    let pruned = sb.rcache_ok(&["prune", "--older-than", "2s"]);
    assert!(pruned.contains("Removed 1 entries and 2 blobs"), "{pruned}");
    let after = sb.stats();
    assert_eq!(number(&after, "entries"), 1, "{after}");
    assert_eq!(number(&after, "dedup_saved_bytes"), 0, "{after}");
    assert_eq!(sb.blobs().len(), 3, "{after}");
    assert!(shared_blob.exists(), "the shared blob was deleted");
    verify_clean(&sb);

    sb.compile_leaf_directly_with(&out, &bootstrap)
        .assert_hit("demo_leaf");
    sb.compile_leaf_directly(&out)
        .assert_stored_miss("demo_leaf");
}

#[test]
fn the_sweep_removes_old_orphans_and_temp_files_and_keeps_fresh_ones() {
    let sb = Sandbox::new();
    sb.cold_build();
    let hour = Duration::from_secs(3600);
    let old = hour * 2;
    // Referenced blobs as old as the orphans: the index, not the age, protects them.
    let referenced = sb.blobs();
    for blob in &referenced {
        set_mtime(blob, old);
    }
    let old_orphan = plant_blob(&sb, b"left by a store that died before its commit");
    set_mtime(&old_orphan, old);
    let fresh_orphan = plant_blob(&sb, b"written for a commit that is about to happen");
    let tmp = sb.store.join("v2/tmp");
    let old_temp = tmp.join("blob-old");
    fs::write(&old_temp, b"12345").unwrap();
    set_mtime(&old_temp, old);
    let old_dir = tmp.join("staging-old");
    fs::create_dir(&old_dir).unwrap();
    fs::write(old_dir.join("file"), b"123").unwrap();
    set_mtime(&old_dir.join("file"), old);
    set_mtime(&old_dir, old);
    let fresh_temp = tmp.join("dep-info-running.d");
    fs::write(&fresh_temp, b"x").unwrap();

    let dry = sb.rcache_ok(&["gc", "--dry-run"]);
    assert!(
        dry.contains("Would sweep 1 orphan blobs") && dry.contains("and 2 temp files (8 B)"),
        "{dry}"
    );
    assert!(old_orphan.exists() && old_temp.exists() && old_dir.exists());

    let out = sb.rcache_ok(&["gc"]);
    assert!(out.contains("Removed 0 entries"), "{out}");
    assert!(
        out.contains("Swept 1 orphan blobs") && out.contains("and 2 temp files"),
        "{out}"
    );
    assert!(!old_orphan.exists(), "an old orphan blob is kept");
    assert!(
        !old_temp.exists() && !old_dir.exists(),
        "old temp files are kept"
    );
    assert!(fresh_orphan.exists(), "a fresh orphan blob is removed");
    assert!(fresh_temp.exists(), "a fresh temp file is removed");
    for blob in &referenced {
        assert!(blob.exists(), "{} was swept", blob.display());
    }
    verify_clean(&sb);
    sb.clean();
    let rebuild = sb.build();
    for lib in LIBS {
        rebuild.assert_hit(lib);
    }

    let out = sb.rcache_ok(&["gc", "--grace", "0s"]);
    assert!(out.contains("Swept 1 orphan blobs"), "{out}");
    assert!(!fresh_orphan.exists() && !fresh_temp.exists());
}

#[test]
fn gc_prune_and_verify_in_a_loop_beside_two_builds_keep_them_green_and_the_store_consistent() {
    let sb = Sandbox::new();
    sb.cold_build();
    let targets = [sb.root.join("target-a"), sb.root.join("target-b")];
    let building = std::sync::atomic::AtomicBool::new(true);
    let (loops, runs) = thread::scope(|scope| {
        let gc_loop = scope.spawn(|| {
            let mut loops = 0;
            while building.load(std::sync::atomic::Ordering::SeqCst) {
                sb.rcache_ok(&["gc", "--max-size", "64K"]);
                sb.rcache_ok(&["prune", "--older-than", "1s"]);
                let (status, stdout, stderr) =
                    run_command(&mut sb.rcache(&["verify"]), "rcache verify");
                assert!(
                    status.success(),
                    "verify beside builds and gc: {status}\n{stdout}\n{stderr}"
                );
                loops += 1;
            }
            loops
        });
        let builds: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(n, target)| {
                let sb = &sb;
                scope.spawn(move || {
                    let mut runs = Vec::new();
                    for _ in 0..3 {
                        // One of the two also trims automatically, to a limit it keeps passing.
                        let mut cmd = sb.cargo(&["build"]).target_dir(target);
                        if n == 1 {
                            cmd = cmd.env("RCACHE_CACHE_SIZE", "1M");
                        }
                        runs.push(cmd.ok());
                        assert_eq!(sb.run_bin_in(target), expected_output(&[]));
                        sb.cargo(&["clean"]).target_dir(target).ok();
                    }
                    runs
                })
            })
            .collect();
        let runs: Vec<_> = builds
            .into_iter()
            .flat_map(|build| build.join().unwrap())
            .collect();
        building.store(false, std::sync::atomic::Ordering::SeqCst);
        (gc_loop.join().unwrap(), runs)
    });
    assert!(loops >= 1, "the gc loop never ran");
    for run in &runs {
        for lib in LIBS {
            let event = run.event(lib).expect("lib compiled");
            // A fault is allowed only as the race with gc it is: a blob freed between the
            // lookup and the restore, or between its write and the commit.
            let expected = match event["outcome"].as_str() {
                Some("hit" | "miss") => true,
                Some("error") => matches!(
                    event["reason"].as_str(),
                    Some("missing_file" | "blob_vanished")
                ),
                _ => false,
            };
            assert!(expected, "{lib}: {event}\n{}", run.describe_events());
        }
    }
    wait_for_auto_gc(&sb, u64::MAX);
    verify_clean(&sb);
    // A last build beside nothing: green (`build` asserts it) and correct.
    sb.build();
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// An upgrade to a new store format leaves the old `v<N>/` beside the new one, never read and
/// outside the size limit: `rcache gc --dry-run` names it, `rcache gc` removes it, and so do
/// `rcache clear` and the automatic gc a store starts; the current format's dir, a newer one and
/// other names are left alone.
#[test]
fn gc_and_clear_remove_the_dirs_of_older_store_formats() {
    let sb = Sandbox::new();
    sb.cold_build();
    let plant_old = || {
        let old = sb.store.join("v1");
        fs::create_dir_all(old.join("blobs/ab")).unwrap();
        fs::write(old.join("blobs/ab/cdef"), vec![7u8; 4096]).unwrap();
        old
    };
    let old = plant_old();
    let newer = sb.store.join("v99");
    let other = sb.store.join("vendor");
    fs::create_dir_all(&newer).unwrap();
    fs::create_dir_all(&other).unwrap();

    let dry = sb.rcache_ok(&["gc", "--dry-run"]);
    assert!(
        dry.contains("Would remove") && dry.contains("/v1 of an older"),
        "{dry}"
    );
    assert!(old.is_dir(), "a dry run removed v1/");
    let gc = sb.rcache_ok(&["gc"]);
    assert!(gc.contains("v1 of an older store format (4.0 KiB)"), "{gc}");
    assert!(!old.exists(), "gc left v1/");
    assert!(
        newer.is_dir() && other.is_dir(),
        "gc removed what is not an older format"
    );

    let old = plant_old();
    sb.rcache_ok(&["clear"]);
    assert!(!old.exists(), "clear left v1/");
    assert!(sb.store.join("v2").is_dir());
    sb.clean();
    let rebuilt = sb.build();
    assert_eq!(sb.run_bin(), expected_output(&[]));
    rebuilt.assert_stored_miss("demo_lib");

    // Without anyone running gc: a store notices the old dir and starts the automatic gc.
    let old = plant_old();
    sb.clean();
    sb.cargo(&["build"]).env("RCACHE_RECACHE", "1").ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while old.exists() {
        assert!(Instant::now() < deadline, "the automatic gc left v1/");
        thread::sleep(Duration::from_millis(50));
    }
}
