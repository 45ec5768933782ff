//! Concurrent builds on one store: two cargo builds race to compile and store the same
//! crates, both succeed, and the store they leave behind is consistent and usable.

use std::thread;

use crate::harness::{LIBS, Sandbox, expected_output};

#[test]
fn two_builds_at_once_on_one_store_succeed_and_leave_it_consistent() {
    let sb = Sandbox::new();
    let targets = [sb.root.join("target-a"), sb.root.join("target-b")];

    let runs: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| {
                let cmd = sb.cargo(&["build"]).target_dir(t);
                scope.spawn(move || cmd.ok())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (run, target) in runs.iter().zip(&targets) {
        for lib in LIBS {
            let outcome = &run.event(lib).expect("lib compiled")["outcome"];
            assert!(
                outcome == "miss" || outcome == "hit",
                "{lib}: {outcome}\n{}",
                run.describe_events()
            );
        }
        assert_eq!(sb.run_bin_in(target), expected_output(&[]));
    }

    let (status, stdout, stderr) =
        crate::harness::run_command(&mut sb.rcache(&["verify"]), "rcache verify");
    assert!(
        status.success(),
        "rcache verify after concurrent builds: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // What build A stored serves A again after a clean (the OUT_DIR path is part of demo_lib's
    // inputs, so only A's own entries, or B's entries for demo_leaf, can match).
    sb.cargo(&["clean"]).target_dir(&targets[0]).ok();
    let again = sb.cargo(&["build"]).target_dir(&targets[0]).ok();
    for lib in LIBS {
        let stored = |run: &crate::harness::Run| {
            run.event(lib)
                .is_some_and(|e| e["outcome"] == "hit" || e["stored"] == true)
        };
        assert!(
            stored(&runs[0]) || stored(&runs[1]),
            "neither concurrent build stored {lib}\n{}\n{}",
            runs[0].describe_events(),
            runs[1].describe_events()
        );
        if stored(&runs[0]) || (lib == "demo_leaf" && stored(&runs[1])) {
            again.assert_hit(lib);
        }
    }
    assert_eq!(sb.run_bin_in(&targets[0]), expected_output(&[]));
}
