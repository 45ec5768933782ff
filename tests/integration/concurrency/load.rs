//! Load: four cargo builds at once on one store, each in its own target dir, for several
//! rounds, while `rcache gc` loops beside them at a size limit far below what the builds store
//! (and the builds' own automatic gc trims too). Every build is green and its program correct,
//! every gc succeeds, and `rcache verify` finds the store consistent at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::harness::{Sandbox, expected_output, run_command};

const BUILDS: usize = 4;
const ROUNDS: usize = 3;
/// Below what the four builds store (about 14 MB: each target dir has its own entries for the
/// crates whose key holds an `OUT_DIR`), so gc keeps removing entries, and high enough that
/// many restores still happen, racing with it.
const SMALL_LIMIT: &str = "12M";

#[test]
fn four_builds_and_a_gc_loop_on_one_store_stay_green_and_consistent() {
    let sb = Sandbox::new();
    let targets: Vec<_> = (0..BUILDS)
        .map(|n| sb.root.join(format!("target-{n}")))
        .collect();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut gc_runs = 0;

    for round in 0..ROUNDS {
        for target in &targets {
            let _ = std::fs::remove_dir_all(target);
        }
        let builds_done = AtomicBool::new(false);
        let (runs, gcs) = thread::scope(|scope| {
            let gc_loop = scope.spawn(|| {
                let mut runs = 0;
                while !builds_done.load(Ordering::Relaxed) {
                    let mut gc = sb.rcache(&["gc", "--max-size", SMALL_LIMIT]);
                    let (status, stdout, stderr) = run_command(&mut gc, "rcache gc");
                    assert!(
                        status.success(),
                        "round {round}: rcache gc failed beside the builds: {status}\n\
                         stdout:\n{stdout}\nstderr:\n{stderr}"
                    );
                    runs += 1;
                }
                runs
            });
            let builds: Vec<_> = targets
                .iter()
                .map(|target| {
                    let cmd = sb
                        .cargo(&["build"])
                        .target_dir(target)
                        .env("RCACHE_CACHE_SIZE", SMALL_LIMIT);
                    scope.spawn(move || cmd.ok())
                })
                .collect();
            let runs: Vec<_> = builds.into_iter().map(|b| b.join().unwrap()).collect();
            builds_done.store(true, Ordering::Relaxed);
            (runs, gc_loop.join().unwrap())
        });
        gc_runs += gcs;
        for (run, target) in runs.iter().zip(&targets) {
            assert_eq!(
                sb.run_bin_in(target),
                expected_output(&[]),
                "round {round}: {} built a wrong program",
                target.display()
            );
            for event in &run.events {
                let outcome = event["outcome"].as_str().unwrap_or("?");
                let reason = event["reason"].as_str().unwrap_or("");
                *outcomes.entry(format!("{outcome} {reason}")).or_default() += 1;
            }
        }
        assert!(gcs >= 1, "round {round}: the gc loop never ran");
    }
    eprintln!(
        "load: {} builds in {ROUNDS} rounds, {gc_runs} gc runs beside them; outcomes {outcomes:?}",
        BUILDS * ROUNDS
    );
    // No fault but the ones a trimmed store explains (a blob freed by gc between a lookup and
    // its restore, or between a blob write and its entry's commit).
    for (outcome, count) in &outcomes {
        let explained = outcome.starts_with("hit")
            || outcome.starts_with("miss")
            || outcome.starts_with("passthrough")
            || outcome == "error missing_file"
            || outcome == "error blob_vanished";
        assert!(explained, "{count} x {outcome} under load: {outcomes:?}");
    }
    eprintln!("load: store_bytes at the end {}", sb.stats()["store_bytes"]);
    sb.rcache_ok(&["verify"]);
    sb.rcache_ok(&["gc", "--max-size", "0"]);
    sb.rcache_ok(&["verify"]);
}
