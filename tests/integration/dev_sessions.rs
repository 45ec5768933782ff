//! The dev profile's incremental sessions (docs/design.md §6d): a miss of an incremental compile
//! keeps the session rustc finalized with its entry, and a hit into a crate dir with no session
//! (after `cargo clean`) puts it back, so the first edit after a clean compiles incrementally.
//! A session goes back only whole, unchanged, at the paths it was kept at, and never over state
//! rustc has. Checked by behaviour (incremental outputs are not reproducible): the program and
//! the tests right after every build, rustc reusing the restored session's objects, and the
//! `incremental` figures of `rcache stats`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{CargoCmd, Run, Sandbox, expected_output};

const LEAF_SRC: &str = "demo_leaf/src/lib.rs";

/// `cargo <args>` in the default profile: the harness's `CARGO_INCREMENTAL=0` removed.
fn dev(sb: &Sandbox, args: &[&str]) -> CargoCmd {
    sb.cargo(args).env_remove("CARGO_INCREMENTAL")
}

#[track_caller]
fn dev_build(sb: &Sandbox) -> Run {
    dev(sb, &["build"]).ok()
}

/// demo_ws with a second module in demo_leaf: a codegen unit of its own, which an edit of the
/// crate root leaves unchanged, so rustc reuses its object from the session it starts from.
fn sandbox_with_two_codegen_units() -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "demo_leaf/src/extra.rs",
        "pub fn extra_value() -> u64 {\n    (1..10u64).map(|x| x * 3).sum()\n}\n",
    );
    let lib = fs::read_to_string(sb.path(LEAF_SRC)).unwrap();
    sb.write(LEAF_SRC, &format!("{lib}\npub mod extra;\n"));
    sb
}

fn incremental(stats: &Value, field: &str) -> u64 {
    stats["incremental"][field].as_u64().unwrap_or(0)
}

fn not_restored(stats: &Value, reason: &str) -> u64 {
    stats["incremental"]["not_restored"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// The `(device, inode)` of every file under `dir`.
fn inodes_under(dir: &Path) -> BTreeSet<(u64, u64)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|item| item.file_type().is_file())
        .map(|item| {
            let meta = item.metadata().unwrap();
            (meta.dev(), meta.ino())
        })
        .collect()
}

/// The newest finalized session of `crate_name` (sessions are named `s-<time>-...`, the time
/// in base 36 of fixed width).
fn newest_session(target: &Path, crate_name: &str) -> PathBuf {
    let incremental = target.join("debug/incremental");
    let mut sessions: Vec<PathBuf> = fs::read_dir(&incremental)
        .unwrap()
        .map(|item| item.unwrap().path())
        .filter(|dir| {
            let name = dir.file_name().unwrap().to_str().unwrap();
            name.strip_prefix(crate_name)
                .is_some_and(|rest| rest.starts_with('-') && !rest[1..].contains('-'))
        })
        .flat_map(|crate_dir| fs::read_dir(crate_dir).unwrap())
        .map(|item| item.unwrap().path())
        .filter(|path| path.is_dir() && !path.to_str().unwrap().ends_with("-working"))
        .collect();
    sessions.sort_by_key(|path| path.file_name().unwrap().to_owned());
    sessions.pop().expect("a finalized session")
}

#[test]
fn after_clean_the_first_edit_compiles_incrementally_from_the_restored_session() {
    let sb = sandbox_with_two_codegen_units();
    dev_build(&sb);
    let kept = incremental(&sb.stats(), "kept");
    // demo_leaf, demo_lib, demo_macro, demo_bin and the build script compile incrementally.
    assert!(kept >= 5, "{kept} sessions kept\n{}", sb.stats());

    sb.clean();
    let warm = dev_build(&sb);
    for unit in ["demo_leaf", "demo_lib", "demo_bin"] {
        warm.assert_hit(unit);
    }
    let stats = sb.stats();
    assert_eq!(incremental(&stats, "restored"), kept, "{stats}");
    assert_eq!(sb.run_bin(), expected_output(&[]));
    let restored = inodes_under(&sb.target.join("debug/incremental"));

    sb.edit(LEAF_SRC, "leaf-v1", "leaf-v2");
    let edited = dev_build(&sb);
    edited.assert_stored_miss("demo_leaf");
    edited.assert_stored_miss("demo_lib");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v2")]));
    // rustc started from the restored session: the unchanged module's object is the very file
    // put back (rustc hard-links what it reuses), not one compiled again.
    let session = newest_session(&sb.target, "demo_leaf");
    let reused: Vec<String> = fs::read_dir(&session)
        .unwrap()
        .map(|item| item.unwrap())
        .filter(|item| item.file_name().to_str().unwrap().ends_with(".o"))
        .filter(|item| {
            let meta = item.metadata().unwrap();
            restored.contains(&(meta.dev(), meta.ino()))
        })
        .map(|item| item.file_name().into_string().unwrap())
        .collect();
    assert!(
        !reused.is_empty(),
        "no object of {} came from the restored session",
        session.display()
    );
    let test = dev(&sb, &["test", "-p", "demo_leaf"]).ok();
    assert!(test.stdout.contains("1 passed"), "{}", test.stdout);

    // A second edit and a revert go on from there, right each time.
    sb.edit(LEAF_SRC, "leaf-v2", "leaf-v3");
    dev_build(&sb).assert_stored_miss("demo_leaf");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v3")]));
    sb.edit(LEAF_SRC, "leaf-v3", "leaf-v1");
    let reverted = dev_build(&sb);
    reverted.assert_hit("demo_leaf");
    assert_eq!(sb.run_bin(), expected_output(&[]));
    // The crate dir holds rustc's own sessions now: a hit leaves them alone.
    assert!(not_restored(&sb.stats(), "state_present") >= 1);
}

#[test]
fn a_kept_session_that_changed_is_not_put_back_and_clear_removes_them() {
    let sb = sandbox_with_two_codegen_units();
    dev_build(&sb);
    // Every kept session's dep graph written in place, as a tool (or a crash) might: no longer
    // the file kept.
    let sessions = sb.store.join("v2/sessions");
    let mut damaged = 0;
    let kept_sessions = fs::read_dir(&sessions)
        .unwrap()
        .flat_map(|crate_dir| fs::read_dir(crate_dir.unwrap().path()).unwrap());
    for session in kept_sessions {
        let graph = session.unwrap().path().join("files/dep-graph.bin");
        if graph.exists() {
            let mut bytes = fs::read(&graph).unwrap();
            bytes.push(0);
            fs::write(&graph, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged >= 5, "{damaged} sessions damaged");

    sb.clean();
    let warm = dev_build(&sb);
    warm.assert_hit("demo_leaf");
    let stats = sb.stats();
    assert_eq!(incremental(&stats, "restored"), 0, "{stats}");
    assert_eq!(not_restored(&stats, "changed"), damaged, "{stats}");
    assert_eq!(sb.run_bin(), expected_output(&[]));
    sb.edit(LEAF_SRC, "leaf-v1", "leaf-v2");
    dev_build(&sb).assert_stored_miss("demo_leaf");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v2")]));

    sb.rcache_ok(&["clear"]);
    assert!(
        !sessions.exists(),
        "rcache clear left {}",
        sessions.display()
    );
}

/// A git worktree in the dev profile: every crate hits, but a session kept at the first
/// checkout's paths is not put back into the worktree's; its edits compile right, and it keeps
/// and puts back sessions of its own.
#[test]
fn a_git_worktree_hits_and_keeps_its_own_sessions() {
    let sb = sandbox_with_two_codegen_units();
    sb.git(&["init", "-q"]);
    sb.git(&["add", "-A"]);
    sb.git(&["commit", "-q", "-m", "fixture"]);
    dev_build(&sb);
    let second = sb.root.join("worktree");
    sb.git(&["worktree", "add", "-q", second.to_str().unwrap()]);
    let second_target = second.join("target");
    let build = || {
        dev(&sb, &["build"])
            .in_dir(&second)
            .target_dir(&second_target)
            .ok()
    };
    let warm = build();
    for unit in ["demo_leaf", "demo_lib", "demo_bin"] {
        warm.assert_hit(unit);
    }
    let stats = sb.stats();
    // The first checkout's sessions are not even looked at: they are kept under its paths.
    assert_eq!(incremental(&stats, "restored"), 0, "{stats}");
    assert_eq!(sb.run_bin_in(&second_target), expected_output(&[]));
    let kept_before_edit = incremental(&stats, "kept");

    fs::write(
        second.join(LEAF_SRC),
        fs::read_to_string(second.join(LEAF_SRC))
            .unwrap()
            .replace("leaf-v1", "leaf-v9"),
    )
    .unwrap();
    build().assert_stored_miss("demo_leaf");
    assert_eq!(
        sb.run_bin_in(&second_target),
        expected_output(&[("leaf", "leaf-v9")])
    );
    assert!(incremental(&sb.stats(), "kept") > kept_before_edit);

    // A clean of the second checkout then puts back the sessions it kept itself.
    dev(&sb, &["clean"])
        .in_dir(&second)
        .target_dir(&second_target)
        .ok();
    build().assert_hit("demo_leaf");
    assert!(incremental(&sb.stats(), "restored") >= 1);
    assert_eq!(
        sb.run_bin_in(&second_target),
        expected_output(&[("leaf", "leaf-v9")])
    );
}
