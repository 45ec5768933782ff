//! Killed mid-store and mid-restore: `strace -e inject=<syscall>:signal=KILL:when=<k>` kills at
//! a chosen point of a traced uninjected run, without `-f` (rcache only; the orphaned rustc is
//! killed after) and with `-f` (rustc, or rcache, whichever reaches the point first). The next
//! run must be correct; afterwards `rcache verify` is clean and `rcache gc --grace 0s` reclaims
//! exactly the orphans.

use std::time::Instant;

use crate::harness::leaf::{
    Call, Leaf, Strace, assert_verifies, blob_files, indexed_blobs, kill_leftovers, outputs_of,
    profile, rcache_on, run_clean, run_leaf, settle_sources, spread, walkdir_files,
};
use crate::harness::{Sandbox, expected_output};

/// Kills one run at `call`, then checks the aftermath: leftovers killed, and the next
/// uninjected run correct and a hit or a stored miss (nothing in the store stays broken).
/// Returns who was killed and how many temp files the killed run left in the out dir.
#[track_caller]
fn kill_at(
    sb: &Sandbox,
    leaf: &Leaf,
    call: &Call,
    follow: bool,
    expect_hit: bool,
) -> (Killed, usize) {
    let strace = Strace {
        follow,
        inject: Some(call.inject("signal=KILL")),
        ..Strace::default()
    };
    let temp_files_before = outputs_of(&leaf.out).1;
    let run = run_leaf(sb, &sb.store, leaf, Some(strace));
    let killed = if run.killed() {
        Killed::Rcache
    } else if run.status.code() == Some(128 + libc::SIGKILL) {
        Killed::Rustc
    } else {
        assert!(
            run.status.success(),
            "a run not killed failed: {}\n{}",
            run.status,
            run.stderr
        );
        Killed::Nothing
    };
    kill_leftovers(sb);
    let what = format!(
        "the run after a kill at {} #{} ({})",
        call.name, call.ordinal, call.line
    );
    let temp_files = outputs_of(&leaf.out).1 - temp_files_before;
    leaf.assert_outputs_after(sb, &what, expect_hit);
    (killed, temp_files)
}

impl Leaf {
    /// Runs this compile uninjected: it must be correct, and a hit (or, unless `expect_hit`, a
    /// stored miss).
    #[track_caller]
    fn assert_outputs_after(&self, sb: &Sandbox, what: &str, expect_hit: bool) {
        let rerun = run_clean(sb, &sb.store, self, what);
        let outcome = rerun.describe();
        let fine = outcome == "hit" || (!expect_hit && outcome == "miss");
        assert!(
            fine,
            "{what}: {outcome}, expected a hit{}",
            if expect_hit { "" } else { " or a stored miss" }
        );
    }
}

/// Which process of a run the injected SIGKILL reached.
enum Killed {
    Rcache,
    /// rustc (rcache then exits with 137, after counting a failed compile).
    Rustc,
    /// Neither: this run made fewer calls of that syscall than the traced one did (the LMDB
    /// envs grow, so their page writes vary a little from run to run).
    Nothing,
}

/// What a walk of kills did.
#[derive(Debug, Default)]
struct Kills {
    runs: usize,
    rcache_killed: usize,
    rustc_killed: usize,
    /// `*.rcache-<pid>` temp files the killed runs left in their out dirs.
    temp_files_left: usize,
}

impl Kills {
    fn add(&mut self, (killed, temp_files_left): (Killed, usize)) {
        self.runs += 1;
        match killed {
            Killed::Rcache => self.rcache_killed += 1,
            Killed::Rustc => self.rustc_killed += 1,
            Killed::Nothing => {}
        }
        self.temp_files_left += temp_files_left;
    }

    /// At least 90% of the kills landed (for walks without `-f`, where counts are stable).
    fn landed(&self) -> bool {
        (self.rcache_killed + self.rustc_killed) * 10 >= self.runs * 9
    }
}

#[test]
fn killed_mid_store_and_mid_restore_lose_nothing() {
    let started = Instant::now();
    let sb = Sandbox::new();
    settle_sources(&sb);
    let mut next = 0u64;
    let mut leaf = || {
        next += 1;
        Leaf::new(&sb, next)
    };
    // The store exists and knows the compiler: the walks see the steady state.
    let warm = leaf();
    assert_eq!(
        run_clean(&sb, &sb.store, &warm, "warm-up").describe(),
        "miss"
    );
    let miss = profile(&sb, &sb.store, &leaf(), false, "traced miss");
    let miss_f = profile(&sb, &sb.store, &leaf(), true, "traced miss (-f)");
    let stored = leaf();
    run_clean(&sb, &sb.store, &stored, "store for the restore walk");
    let hit = profile(&sb, &sb.store, &stored, false, "traced hit");

    // Store: the tail after rustc exits (blobs, the lock, the index commit, the stats) at
    // every other call; the start and the compile more sparsely.
    let tail = miss
        .iter()
        .rposition(|call| call.name == "wait4")
        .expect("rcache waits for rustc");
    // From 1: strace itself makes the first call (execve) before it can inject.
    let mut points = spread(1..tail, 12);
    points.extend((tail..miss.len()).step_by(2));
    let mut store = Kills::default();
    for &point in &points {
        store.add(kill_at(&sb, &leaf(), &miss[point], false, false));
    }
    // Store with -f: a point of rustc's run or rcache's, whichever tracee gets there first.
    let mut store_f = Kills::default();
    for point in spread(1..miss_f.len(), 24) {
        store_f.add(kill_at(&sb, &leaf(), &miss_f[point], true, false));
    }
    // Restore: every call from the index's opening on (the lookup, the blob checks, every
    // output's temp file and rename, the replay, the stats), the start more sparsely.
    let lookup = hit
        .iter()
        .position(|call| call.line.contains("/v2/index/data.mdb"))
        .expect("the hit opens the index");
    let mut points = spread(1..lookup, 8);
    points.extend(lookup..hit.len());
    let mut restore = Kills::default();
    for &point in &points {
        restore.add(kill_at(&sb, &stored, &hit[point], false, true));
    }
    eprintln!(
        "killed mid-store: {store:?}; mid-store with -f: {store_f:?}; mid-restore: {restore:?}"
    );
    eprintln!(
        "traced uninjected runs: a miss makes {} calls (rustc exits at call {tail}), {} with -f \
         (every tracee); a hit makes {} (the index opens at call {lookup})",
        miss.len(),
        miss_f.len(),
        hit.len()
    );
    assert!(
        store.landed() && restore.landed(),
        "most kills did not land: the walk proves little"
    );
    // With -f, which tracee reaches a point first depends on rustc's threads: only ask that
    // both rcache and rustc were killed, and most runs were.
    assert!(
        store_f.rcache_killed > 0
            && store_f.rustc_killed > 0
            && (store_f.rcache_killed + store_f.rustc_killed) * 2 >= store_f.runs,
        "the kills with -f did not reach both rcache and rustc: {store_f:?}"
    );
    assert_verifies(&sb, &sb.store, "after the kills");

    // Orphans: compiles killed after their blobs were written, before their index commit
    // (at the store lock), never run again.
    let lock = miss
        .iter()
        .find(|call| call.name == "flock")
        .expect("the store takes its lock");
    let before = blob_files(&sb.store) - indexed_blobs(&sb, &sb.store);
    for _ in 0..3 {
        let orphaned = leaf();
        let strace = Strace {
            inject: Some(lock.inject("signal=KILL")),
            ..Strace::default()
        };
        assert!(run_leaf(&sb, &sb.store, &orphaned, Some(strace)).killed());
        kill_leftovers(&sb);
    }
    let orphans = blob_files(&sb.store) - indexed_blobs(&sb, &sb.store);
    let tmp = sb.store.join("v2/tmp");
    let temp_files = walkdir_files(&tmp);
    assert_eq!(
        orphans,
        before + 9,
        "three compiles of three outputs each were orphaned"
    );
    assert_verifies(&sb, &sb.store, "with orphans");
    let (ok, stdout, report) = rcache_on(&sb, &sb.store, &["gc", "--grace", "0s"]);
    assert!(ok, "{report}");
    eprintln!(
        "before gc: {orphans} orphan blobs, {temp_files} temp files; gc: {}",
        stdout.trim()
    );
    assert_eq!(
        blob_files(&sb.store),
        indexed_blobs(&sb, &sb.store),
        "gc left blob files the index does not count\n{report}"
    );
    assert_eq!(walkdir_files(&tmp), 0, "gc left files in v2/tmp\n{report}");
    assert_verifies(&sb, &sb.store, "after gc");

    sb.build();
    assert_eq!(sb.run_bin(), expected_output(&[]));
    eprintln!(
        "killed_mid_store_and_mid_restore_lose_nothing: {:?}",
        started.elapsed()
    );
}
