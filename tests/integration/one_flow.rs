//! The one cache flow: what the three kinds of job (a rustc compile, a C/C++ compile, a
//! build-script run) used to do differently, and now do the same way.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::{Sandbox, run_command};

/// `rcache` with the sandbox's store and events log, and the environment a cargo build script
/// sees (`OUT_DIR`, `CARGO_MANIFEST_DIR`), so that a `--build-script-run` call is cacheable.
fn rcache_call(sb: &Sandbox, args: &[&str]) -> (i32, String, Vec<serde_json::Value>) {
    let out_dir = sb.root.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let events = sb.root.join(format!("one-flow-events-{call}.jsonl"));
    let mut cmd = sb.rcache(args);
    cmd.env("RCACHE_EVENTS", &events)
        .env("OUT_DIR", &out_dir)
        .env("CARGO_MANIFEST_DIR", &sb.ws);
    let (status, _stdout, stderr) = run_command(&mut cmd, "rcache");
    let events = fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (status.code().unwrap_or(-1), stderr, events)
}

#[test]
fn a_program_that_cannot_be_started_ends_the_same_way_in_every_kind_of_job() {
    let sb = Sandbox::new();
    // A build script that exists (it is keyed, looked up, missed) but cannot be executed: the
    // flow's run step fails to start it.
    let script = sb.root.join("build-script-build");
    fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let missing_rustc = sb.root.join("no-such-toolchain/bin/rustc");
    let missing_rustc = missing_rustc.to_str().unwrap();
    let missing_cc = sb.root.join("no-such-dir/gcc");
    let missing_cc = missing_cc.to_str().unwrap();
    let calls: [(&str, Vec<&str>); 3] = [
        (
            "rustc",
            vec![
                missing_rustc,
                "--crate-name",
                "demo",
                "--crate-type",
                "lib",
                "--emit=dep-info,metadata,link",
                "--out-dir",
                "out",
                "src/lib.rs",
            ],
        ),
        ("cc", vec![missing_cc, "-c", "x.c", "-o", "x.o"]),
        (
            "build_script_run",
            vec!["--build-script-run", script.to_str().unwrap()],
        ),
    ];
    for (kind, args) in calls {
        let (code, stderr, events) = rcache_call(&sb, &args);
        assert_eq!(
            code, 127,
            "{kind}: a program that cannot be started exits 127\n{stderr}"
        );
        assert!(
            stderr.starts_with("rcache: "),
            "{kind}: rcache says why, once: {stderr:?}"
        );
        assert_eq!(events.len(), 1, "{kind}: one outcome counted: {events:?}");
        let event = &events[0];
        assert_eq!(event["kind"], kind, "{event}");
        assert!(
            event["outcome"] == "error" || event["outcome"] == "passthrough",
            "{kind}: counted as a fault or a reason, never a miss: {event}"
        );
    }
    // The run step itself: the build script was keyed and missed, then could not start.
    let (_, _, events) = rcache_call(&sb, &["--build-script-run", script.to_str().unwrap()]);
    assert_eq!(events[0]["outcome"], "error", "{:?}", events);
    assert_eq!(events[0]["reason"], "spawn_failed", "{:?}", events);
    let stats = sb.stats();
    assert_eq!(
        stats["build_scripts"]["error_reasons"]["spawn_failed"], 2,
        "{stats}"
    );
}

#[test]
fn a_build_script_run_whose_restore_fails_is_an_error_and_the_script_runs() {
    let sb = Sandbox::with_fixture("scripts_ws");
    let log = sb.root.join("runs.log");
    let build = |clean: bool| {
        if clean {
            sb.clean();
        }
        sb.cargo(&["build"]).env("BS_RUN_LOG", &log).ok()
    };
    build(false);
    let plain_app = app_output(&sb);
    // Damage every blob: each restore fails its check, for compiles and runs alike.
    for blob in sb.blobs() {
        let mut permissions = fs::metadata(&blob).unwrap().permissions();
        permissions.set_mode(0o644);
        fs::set_permissions(&blob, permissions).unwrap();
        fs::write(&blob, b"damaged").unwrap();
    }
    fs::remove_file(&log).unwrap();
    let rebuild = build(true);
    let runs: Vec<_> = rebuild
        .events
        .iter()
        .filter(|e| e["kind"] == "build_script_run" && e["crate"] != "bs_foreign")
        .collect();
    assert!(!runs.is_empty(), "{}", rebuild.describe_events());
    for run in runs {
        assert_eq!(
            run["outcome"], "error",
            "a failed restore is a counted fault whatever the run then does: {run}"
        );
    }
    assert!(
        fs::read_to_string(&log).is_ok_and(|ran| !ran.is_empty()),
        "the scripts ran instead"
    );
    assert_eq!(app_output(&sb), plain_app);
}

fn app_output(sb: &Sandbox) -> String {
    let mut cmd = Command::new(sb.target.join("debug").join("bs_app"));
    let (status, stdout, stderr) = run_command(&mut cmd, "bs_app");
    assert!(status.success(), "{stderr}");
    stdout
}
