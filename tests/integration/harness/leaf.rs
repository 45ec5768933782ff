//! Faults injected at the syscall level with strace (issue 8, "Crash" and "I/O errors, including
//! inside LMDB"): what a Rust seam cannot reach, LMDB's own writes and fsyncs included.
//!
//! Every test drives one real rustc compile of demo_leaf through rcache, without cargo
//! ([`leaf_rustc_args`], about 40 ms), each with its own `-C metadata` so that every compile
//! has its own outputs and blobs. A reference compile of the same arguments made by rustc alone
//! (in another out dir) says what the outputs must be, byte for byte (the `.d` file names its
//! out dir, which is normalized away).
//!
//! - **Killed mid-store and mid-restore**: `strace -e inject=<syscall>:signal=KILL:when=<k>`
//!   kills at a chosen point of a traced uninjected run (strace counts `when=` per syscall and
//!   per tracee, so each point of a trace is "the k-th call of that syscall"), without `-f`
//!   (rcache only; the orphaned rustc is killed after) and with `-f` (rustc, or rcache, whichever
//!   reaches the point first). The next run must be correct; afterwards `rcache verify` is clean
//!   and `rcache gc --grace 0s` reclaims exactly the orphans.
//! - **Stale LMDB reader slots**: more processes than LMDB has reader slots are SIGKILLed while
//!   holding read transactions on both envs, while this process keeps the envs open (so that
//!   no opener may reset the reader table); the store still serves a hit.
//! - **I/O errors**: `strace -e inject=<syscall>:error=<errno>:when=<k>` on rcache only, for
//!   every write, rename and fsync of a store (a miss into an existing store, a miss into a new
//!   store, a hit) and the store's opens: every compile exits 0 with correct outputs, the store
//!   verifies, and the next run is correct.
//!
//! Runs are walked in a fixed order over fixed points: a failure reproduces.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{RCACHE, Sandbox, expected_output, leaf_rustc_args, real_rustc, run_command};

/// The `-C metadata` value in [`leaf_rustc_args`], replaced per compile.
const LEAF_METADATA: &str = "0123456789abcdef";

/// One compile of demo_leaf with its own `-C metadata` and out dir, and the outputs rustc alone
/// produces for it.
struct Leaf {
    args: Vec<String>,
    out: PathBuf,
    reference: BTreeMap<String, Vec<u8>>,
}

impl Leaf {
    /// Compile number `n` of this sandbox: its reference is compiled here, by rustc alone.
    #[track_caller]
    fn new(sb: &Sandbox, n: u64) -> Leaf {
        let metadata = format!("{:016x}", 0x5eed_0000_0000_0000 + n);
        let args_for = |out: &Path| -> Vec<String> {
            leaf_rustc_args(out)
                .into_iter()
                .map(|arg| arg.replace(LEAF_METADATA, &metadata))
                .collect()
        };
        let reference_dir = sb.root.join("reference").join(&metadata);
        fs::create_dir_all(&reference_dir).unwrap();
        let mut cmd = Command::new(real_rustc());
        copy_env(&sb.rcache(&[]), &mut cmd);
        cmd.args(args_for(&reference_dir)).current_dir(&sb.ws);
        let (status, _, stderr) = run_command(&mut cmd, "reference rustc");
        assert!(status.success(), "reference compile failed: {stderr}");
        let (reference, _) = outputs_of(&reference_dir);
        assert_eq!(reference.len(), 3, "rustc wrote {:?}", reference.keys());

        let out = sb.root.join("out").join(&metadata);
        fs::create_dir_all(&out).unwrap();
        Leaf {
            args: args_for(&out),
            out,
            reference,
        }
    }

    /// Asserts that the out dir holds the reference outputs (temp files of killed runs aside);
    /// returns how many `*.rcache-<pid>` temp files it holds.
    #[track_caller]
    fn assert_outputs(&self, what: &str) -> usize {
        let (outputs, leftovers) = outputs_of(&self.out);
        assert_eq!(
            outputs.keys().collect::<Vec<_>>(),
            self.reference.keys().collect::<Vec<_>>(),
            "{what}: different output files"
        );
        for (name, bytes) in &self.reference {
            assert!(
                outputs[name] == *bytes,
                "{what}: {name} differs from rustc's"
            );
        }
        leftovers
    }
}

/// The files of an out dir by name, the `.d` file's mentions of the dir replaced by `<out>`,
/// and how many temp files of restores (`<name>.rcache-<pid>`) it holds beside them.
fn outputs_of(dir: &Path) -> (BTreeMap<String, Vec<u8>>, usize) {
    let mut files = BTreeMap::new();
    let mut leftovers = 0;
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".rcache-") {
            leftovers += 1;
            continue;
        }
        let mut bytes = fs::read(&path).unwrap();
        if name.ends_with(".d") {
            let text = String::from_utf8(bytes).expect("utf-8 dep-info");
            bytes = text.replace(dir.to_str().unwrap(), "<out>").into_bytes();
        }
        files.insert(name, bytes);
    }
    (files, leftovers)
}

/// Gives `to` the environment changes of `from` (the harness's scrubbed rcache environment).
fn copy_env(from: &Command, to: &mut Command) {
    for (key, value) in from.get_envs() {
        match value {
            Some(value) => to.env(key, value),
            None => to.env_remove(key),
        };
    }
}

/// A finished run of `rcache <rustc> <args>`, possibly under strace.
struct Outcome {
    status: ExitStatus,
    stderr: String,
    /// The rcache events it logged (none if rcache was killed before its end, or if the write
    /// of the events line itself was failed).
    events: Vec<Value>,
}

impl Outcome {
    fn killed(&self) -> bool {
        self.status.signal() == Some(libc::SIGKILL)
    }

    /// The one event's `outcome`, with its reason (`hit`, `miss`, `miss:compile_failed`,
    /// `error:disk_full`, ...), or `none`.
    fn describe(&self) -> String {
        match self.events.as_slice() {
            [] => "none".into(),
            [event] => match event["reason"].as_str() {
                Some(reason) => format!("{}:{reason}", event["outcome"].as_str().unwrap()),
                None => event["outcome"].as_str().unwrap().to_string(),
            },
            more => panic!("{} events for one compile: {more:?}", more.len()),
        }
    }

    /// A fault was counted: an error, or a miss not stored for a reason other than a failed
    /// compile.
    fn counted_fault(&self) -> bool {
        self.events.iter().any(|event| {
            event["outcome"] == "error" || (event["outcome"] == "miss" && event["stored"] == false)
        })
    }
}

/// How to run strace around rcache.
#[derive(Default)]
struct Strace<'a> {
    /// `-f`: also trace (and count, and inject into) rustc and rcache's threads.
    follow: bool,
    /// `-e trace=...`; every syscall by default.
    trace: Option<&'a str>,
    /// `-e inject=...`.
    inject: Option<String>,
    /// Where the trace goes (with `-y`, fd paths); `/dev/null` by default.
    output: Option<&'a Path>,
}

/// Runs `rcache <real rustc> <leaf args>` in the sandbox, under strace if `strace` is given,
/// with `RCACHE_DIR=store`.
fn run_leaf(sb: &Sandbox, store: &Path, leaf: &Leaf, strace: Option<Strace>) -> Outcome {
    let base = sb.rcache(&[]);
    let mut cmd = match &strace {
        None => Command::new(RCACHE),
        Some(strace) => {
            let mut cmd = Command::new("strace");
            cmd.args(["-qq", "-y", "-o"]);
            cmd.arg(strace.output.unwrap_or(Path::new("/dev/null")));
            if strace.follow {
                cmd.arg("-f");
            }
            if let Some(trace) = strace.trace {
                cmd.arg(format!("--trace={trace}"));
            }
            if let Some(inject) = &strace.inject {
                cmd.arg(format!("--inject={inject}"));
            }
            cmd.arg("--").arg(RCACHE);
            cmd
        }
    };
    copy_env(&base, &mut cmd);
    let events = sb.root.join("events.jsonl");
    let _ = fs::remove_file(&events);
    cmd.arg(real_rustc())
        .args(&leaf.args)
        .current_dir(&sb.ws)
        .env("RCACHE_DIR", store)
        .env("RCACHE_EVENTS", &events);
    let (status, _, stderr) = run_command(&mut cmd, "rcache rustc (strace)");
    let events = fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("events line"))
        .collect();
    Outcome {
        status,
        stderr,
        events,
    }
}

/// An uninjected run that must succeed with the reference outputs; returns its outcome.
#[track_caller]
fn run_clean(sb: &Sandbox, store: &Path, leaf: &Leaf, what: &str) -> Outcome {
    let run = run_leaf(sb, store, leaf, None);
    assert!(
        run.status.success(),
        "{what}: exit {}\n{}",
        run.status,
        run.stderr
    );
    leaf.assert_outputs(what);
    run
}

/// One syscall of a trace, and how strace's `when=` counts it.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    /// 1-based ordinal among this tracee's calls of this syscall.
    ordinal: u32,
    line: String,
}

impl Call {
    /// The injection that hits this call (or an earlier call of another tracee that reaches
    /// the same ordinal of the same syscall first).
    fn inject(&self, action: &str) -> String {
        format!("{}:{action}:when={}", self.name, self.ordinal)
    }
}

/// Parses an strace output file (with or without `-f` pids) into its calls, in order.
fn parse_trace(path: &Path) -> Vec<Call> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut counts: BTreeMap<(u32, String), u32> = BTreeMap::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        let (tid, rest) = match line.split_once(' ') {
            Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => {
                (pid.parse().unwrap(), rest.trim_start())
            }
            _ => (0, line),
        };
        let Some(paren) = rest.find('(') else {
            continue;
        };
        let name = &rest[..paren];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // `<... resumed>`, `--- SIGCHLD`, `+++ exited`
        }
        let ordinal = counts.entry((tid, name.to_string())).or_default();
        *ordinal += 1;
        calls.push(Call {
            name: name.to_string(),
            ordinal: *ordinal,
            line: line.to_string(),
        });
    }
    calls
}

/// Traces an uninjected run and returns its calls.
#[track_caller]
fn profile(sb: &Sandbox, store: &Path, leaf: &Leaf, follow: bool, what: &str) -> Vec<Call> {
    let output = sb.root.join("profile.trace");
    let strace = Strace {
        follow,
        output: Some(&output),
        ..Strace::default()
    };
    let run = run_leaf(sb, store, leaf, Some(strace));
    assert!(
        run.status.success(),
        "{what}: {}\n{}",
        run.status,
        run.stderr
    );
    leaf.assert_outputs(what);
    let calls = parse_trace(&output);
    assert!(
        calls.len() > 100,
        "{what}: only {} calls traced",
        calls.len()
    );
    calls
}

/// Waits until the fixture's sources are old enough for rcache to memoize their hashes (their
/// mtime and ctime over a second before a compile starts, git's rule against racy timestamps):
/// until then every run hashes them again, and the number of syscalls of a run, which the
/// walks count on, would depend on the time it starts.
fn settle_sources(sb: &Sandbox) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(sb.path("demo_leaf/src/lib.rs")).unwrap();
    let stamped = meta.mtime().max(meta.ctime()) as u64;
    let settled = std::time::UNIX_EPOCH + Duration::from_secs(stamped + 2);
    while let Ok(left) = settled.duration_since(std::time::SystemTime::now()) {
        thread::sleep(left);
    }
}

/// The pids of every process whose command line names a path in the sandbox (rustc orphaned
/// by a killed rcache); other tests' processes are never matched.
fn sandbox_pids(sb: &Sandbox) -> Vec<i32> {
    let inside = format!("{}/", sb.root.display());
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc") {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A process may exit at any time: unreadable means gone. A zombie has no cmdline.
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if pid != me && String::from_utf8_lossy(&cmdline).contains(&inside) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILLs what is left of a killed run until nothing is; returns how many were left.
fn kill_leftovers(sb: &Sandbox) -> usize {
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = sandbox_pids(sb);
        if pids.is_empty() {
            return killed;
        }
        assert!(
            Instant::now() < deadline,
            "processes survive SIGKILL: {pids:?}"
        );
        killed += pids.len();
        for pid in pids {
            // SAFETY: kill(2) has no memory effects; a pid that exited meanwhile gives ESRCH.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// `rcache <args>` on `store`; returns (success, stdout, report).
fn rcache_on(sb: &Sandbox, store: &Path, args: &[&str]) -> (bool, String, String) {
    let what = format!("rcache {}", args.join(" "));
    let (status, stdout, stderr) = run_command(sb.rcache(args).env("RCACHE_DIR", store), &what);
    let report = format!("{what}: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    (status.success(), stdout, report)
}

#[track_caller]
fn assert_verifies(sb: &Sandbox, store: &Path, what: &str) {
    let (ok, _, report) = rcache_on(sb, store, &["verify"]);
    assert!(ok, "{what}: the store does not verify\n{report}");
}

/// Blob files on disk under `store`.
fn blob_files(store: &Path) -> usize {
    walkdir_files(&store.join("v1/blobs"))
}

fn walkdir_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            if path.is_dir() {
                walkdir_files(&path)
            } else {
                1
            }
        })
        .sum()
}

/// The index's blob count, from `rcache stats --json`.
#[track_caller]
fn indexed_blobs(sb: &Sandbox, store: &Path) -> usize {
    let (ok, stdout, report) = rcache_on(sb, store, &["stats", "--json"]);
    assert!(ok, "{report}");
    let stats: Value = serde_json::from_str(stdout.trim()).expect("stats --json");
    stats["blobs"].as_u64().expect("stats blobs") as usize
}

/// Up to `count` indices spread evenly over `range`, in order.
fn spread(range: std::ops::Range<usize>, count: usize) -> Vec<usize> {
    let len = range.end.saturating_sub(range.start);
    if len == 0 || count == 0 {
        return Vec::new();
    }
    let step = len.div_ceil(count);
    range.step_by(step.max(1)).collect()
}

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
        .position(|call| call.line.contains("/v1/index/data.mdb"))
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
    let tmp = sb.store.join("v1/tmp");
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
    assert_eq!(walkdir_files(&tmp), 0, "gc left files in v1/tmp\n{report}");
    assert_verifies(&sb, &sb.store, "after gc");

    sb.build();
    assert_eq!(sb.run_bin(), expected_output(&[]));
    eprintln!(
        "killed_mid_store_and_mid_restore_lose_nothing: {:?}",
        started.elapsed()
    );
}

/// Set in the environment of [`stale_reader_child`]'s processes: the store to read.
const READER_CHILD_STORE: &str = "RCACHE_TEST_READER_CHILD_STORE";

/// What a reader prints once it holds its transactions.
const READER_READY: &str = "reader-ready";

/// More than `MAX_READERS` (1022): had the slots of killed readers stayed taken, the table
/// would be full before the end.
const KILLED_READERS: usize = 1100;

/// Readers alive at once.
const READERS_AT_ONCE: usize = 8;

/// Not a test on its own: a process of [`stale_reader_slots_do_not_wear_the_store_out`]. Opens
/// the store through the library, starts a read transaction on the index and one on the state
/// env, says [`READER_READY`] and waits to be killed. Ignored, so that a plain test run does not
/// list it as a passing test; [`start_reader`] runs it with `--ignored`.
#[test]
#[ignore = "a process of stale_reader_slots_do_not_wear_the_store_out, not a test"]
fn stale_reader_child() {
    let Some(store) = std::env::var_os(READER_CHILD_STORE) else {
        return;
    };
    let store = rcache::store::Store::open(PathBuf::from(store)).expect("open the store");
    let index_txn = store.index.read_txn().expect("index read transaction");
    let state_txn = store.state.read_txn().expect("state read transaction");
    println!("{READER_READY}");
    loop {
        thread::sleep(Duration::from_secs(60));
        // Keeps the transactions alive until the kill.
        let _ = (&index_txn, &state_txn);
    }
}

/// Starts a reader process and waits until it holds its transactions.
#[track_caller]
fn start_reader(store: &Path, killed_before: usize) -> std::process::Child {
    // The test's name as libtest knows it: its module path without the crate's name.
    let name = concat!(module_path!(), "::stale_reader_child");
    let name = name.split_once("::").map_or(name, |(_, path)| path);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(READER_CHILD_STORE, store)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a reader");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    loop {
        match lines.next() {
            // libtest may print the test's name on the same line first.
            Some(Ok(line)) if line.contains(READER_READY) => return child,
            Some(Ok(line)) => said.push(line),
            _ => {
                let _ = child.kill();
                let output = child.wait_with_output().unwrap();
                panic!(
                    "a reader ended without holding its transactions, after {killed_before} \
                     killed readers: {}\nstdout:\n{}\nstderr:\n{}",
                    output.status,
                    said.join("\n"),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

#[test]
fn stale_reader_slots_do_not_wear_the_store_out() {
    let started = Instant::now();
    let sb = Sandbox::new();
    let leaf = Leaf::new(&sb, 1);
    assert_eq!(run_clean(&sb, &sb.store, &leaf, "cold").describe(), "miss");
    // This process keeps both envs open throughout, as a long build's other rcache processes
    // would: LMDB resets its reader table only when an env is opened by nobody else.
    let _held = rcache::store::Store::open(&sb.store).expect("open the store");

    let mut killed = 0;
    while killed < KILLED_READERS {
        let readers: Vec<_> = (0..READERS_AT_ONCE.min(KILLED_READERS - killed))
            .map(|_| start_reader(&sb.store, killed))
            .collect();
        for mut reader in readers {
            reader.kill().expect("SIGKILL a reader");
            let status = reader.wait().unwrap();
            assert_eq!(status.signal(), Some(libc::SIGKILL));
            killed += 1;
        }
    }

    let run = run_clean(&sb, &sb.store, &leaf, "after the killed readers");
    assert_eq!(
        run.describe(),
        "hit",
        "the store no longer serves hits after {killed} killed readers\n{}",
        run.stderr
    );
    assert_verifies(&sb, &sb.store, "after the killed readers");
    eprintln!(
        "stale_reader_slots_do_not_wear_the_store_out: {killed} readers killed in {:?}",
        started.elapsed()
    );
}

/// Syscalls failed together in one walk, and the errors they are failed with.
struct Group {
    name: &'static str,
    syscalls: &'static [&'static str],
    errnos: &'static [&'static str],
}

const GROUPS: [Group; 4] = [
    Group {
        name: "writes",
        syscalls: &[
            "write",
            "pwrite64",
            "writev",
            "pwritev",
            "pwritev2",
            "copy_file_range",
            "ftruncate",
            "fallocate",
        ],
        errnos: &["ENOSPC", "EIO"],
    },
    Group {
        name: "renames",
        syscalls: &["rename", "renameat", "renameat2", "linkat"],
        errnos: &["EIO", "EXDEV"],
    },
    Group {
        name: "fsyncs",
        syscalls: &["fsync", "fdatasync", "msync", "sync_file_range"],
        errnos: &["EIO"],
    },
    Group {
        name: "opens",
        syscalls: &["openat"],
        errnos: &["EACCES", "ENOSPC"],
    },
];

/// The file a traced call names: the destination of a rename or link, otherwise its first path
/// or fd path (`-y`), the `AT_FDCWD<cwd>` of `*at` calls aside.
fn path_of(line: &str) -> &str {
    let Some(open) = line.find('(') else {
        return "";
    };
    let mut paths = Vec::new();
    let mut rest = &line[open + 1..];
    while let Some(start) = rest.find(['<', '"']) {
        let close = if rest.as_bytes()[start] == b'<' {
            '>'
        } else {
            '"'
        };
        let Some(len) = rest[start + 1..].find(close) else {
            break;
        };
        let token = &rest[start + 1..start + 1 + len];
        if !rest[..start].ends_with("AT_FDCWD") {
            paths.push(token);
        }
        rest = &rest[start + 1 + len + 1..];
    }
    let name = &line[..open];
    let destination = name.contains("rename") || name.contains("link");
    let path = if destination {
        paths.last()
    } else {
        paths.first()
    };
    path.copied().unwrap_or("")
}

/// What a traced call was writing or opening, by its path.
fn target_of(line: &str, sb: &Sandbox) -> &'static str {
    let path = path_of(line);
    let store = |dir: &str| path.contains(&format!("/v1/{dir}/"));
    if store("index") {
        "index"
    } else if store("state") {
        "state env"
    } else if store("tmp") || store("blobs") {
        "blobs"
    } else if path.ends_with("events.jsonl") {
        "events log"
    } else if path.starts_with(sb.root.join("out").to_str().unwrap()) {
        "out dir"
    } else if path.starts_with("pipe:") {
        "stderr"
    } else if path.starts_with(sb.root.to_str().unwrap()) || !path.starts_with('/') {
        "sandbox (store dir, sources)"
    } else {
        "other"
    }
}

/// What the walks of one scenario did, for the report.
#[derive(Default)]
struct Walked {
    /// Per group: points walked, faults injected (strace reached the point), counted faults.
    groups: BTreeMap<&'static str, (usize, usize, usize)>,
    /// Injected faults by what the call was for, and by the run's outcome.
    targets: BTreeMap<(&'static str, String), usize>,
    /// Temp files of restores (`*.rcache-<pid>`) left in out dirs.
    out_dir_temp_files: usize,
}

/// One scenario of the I/O error walk.
enum Scenario {
    /// A miss into the existing store.
    Miss,
    /// A miss into a store that does not exist yet (created by the run).
    NewStore,
    /// A hit.
    Hit,
}

/// One injected I/O error: `call` (the k-th call of its syscall) fails with `errno`.
struct Fault<'a> {
    call: &'a Call,
    errno: &'a str,
    group: &'static str,
}

/// Injects `fault` into a run of `leaf` on `store`, then checks the run and its store, and the
/// next uninjected run.
fn fail_at(
    sb: &Sandbox,
    scenario: &Scenario,
    store: &Path,
    leaf: &Leaf,
    fault: Fault,
    walked: &mut Walked,
) {
    let Fault { call, errno, group } = fault;
    let trace = sb.root.join("inject.trace");
    let strace = Strace {
        trace: Some(&call.name),
        inject: Some(call.inject(&format!("error={errno}"))),
        output: Some(&trace),
        ..Strace::default()
    };
    let what = format!(
        "{} failed with {errno} at #{} ({})",
        call.name, call.ordinal, call.line
    );
    let temp_files_before = outputs_of(&leaf.out).1;
    let run = run_leaf(sb, store, leaf, Some(strace));
    assert!(
        run.status.success(),
        "{what}: the compile failed: {}\n{}",
        run.status,
        run.stderr
    );
    leaf.assert_outputs(&what);
    walked.out_dir_temp_files += outputs_of(&leaf.out).1 - temp_files_before;
    let injected = fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .find(|line| line.ends_with("(INJECTED)"))
        .map(str::to_string);
    let counts = walked.groups.entry(group).or_default();
    counts.0 += 1;
    if let Some(line) = &injected {
        counts.1 += 1;
        counts.2 += usize::from(run.counted_fault());
        *walked
            .targets
            .entry((target_of(line, sb), run.describe()))
            .or_default() += 1;
    }
    assert_verifies(sb, store, &what);
    let tmp = store.join("v1/tmp");
    assert_eq!(walkdir_files(&tmp), 0, "{what}: files left in v1/tmp");

    let rerun = run_clean(sb, store, leaf, &format!("the run after: {what}"));
    let outcome = rerun.describe();
    let fine = match scenario {
        Scenario::Hit => outcome == "hit",
        Scenario::Miss | Scenario::NewStore => outcome == "hit" || outcome == "miss",
    };
    assert!(fine, "the run after: {what}: {outcome}");
}

#[test]
fn io_errors_in_stores_and_restores_break_no_build() {
    let started = Instant::now();
    let sb = Sandbox::new();
    settle_sources(&sb);
    let mut next = 0u64;
    let mut leaf = || {
        next += 1;
        Leaf::new(&sb, next)
    };
    let warm = leaf();
    assert_eq!(
        run_clean(&sb, &sb.store, &warm, "warm-up").describe(),
        "miss"
    );
    let stored = leaf();
    run_clean(&sb, &sb.store, &stored, "store for the hit walk");
    let new_store = |n: usize| sb.root.join("new-stores").join(n.to_string());
    let mut new_stores = 0;

    let scenarios = [Scenario::Miss, Scenario::NewStore, Scenario::Hit];
    let mut report = String::new();
    for scenario in &scenarios {
        let (label, calls) = match scenario {
            Scenario::Miss => (
                "miss",
                profile(&sb, &sb.store, &leaf(), false, "traced miss"),
            ),
            Scenario::NewStore => {
                new_stores += 1;
                let store = new_store(new_stores);
                let calls = profile(&sb, &store, &leaf(), false, "traced miss into a new store");
                ("miss into a new store", calls)
            }
            Scenario::Hit => ("hit", profile(&sb, &sb.store, &stored, false, "traced hit")),
        };
        let scenario_started = Instant::now();
        let mut walked = Walked::default();
        for group in &GROUPS {
            // A new store costs the compiler's identity (about 0.5 s): one errno per group,
            // and its opens are left to the other scenarios.
            let errnos = match scenario {
                Scenario::NewStore if group.name == "opens" => continue,
                Scenario::NewStore => &group.errnos[..1],
                _ => group.errnos,
            };
            let points = calls.iter().filter(|call| {
                group.syscalls.contains(&call.name.as_str())
                    // Opens of the sandbox's files only: failing the dynamic loader's opens
                    // of libc tests ld.so, not rcache.
                    && (group.name != "opens" || target_of(&call.line, &sb) != "other")
            });
            for call in points {
                for errno in errnos {
                    let fresh;
                    let (store, leaf) = match scenario {
                        Scenario::Miss => {
                            fresh = leaf();
                            (sb.store.clone(), &fresh)
                        }
                        Scenario::NewStore => {
                            new_stores += 1;
                            fresh = leaf();
                            (new_store(new_stores), &fresh)
                        }
                        Scenario::Hit => (sb.store.clone(), &stored),
                    };
                    let fault = Fault {
                        call,
                        errno,
                        group: group.name,
                    };
                    fail_at(&sb, scenario, &store, leaf, fault, &mut walked);
                }
            }
        }
        report.push_str(&format!("{label} ({:?}):\n", scenario_started.elapsed()));
        for (group, (points, injected, counted)) in &walked.groups {
            report.push_str(&format!(
                "  {group}: {points} points walked, {injected} faults injected, {counted} \
                 counted as errors or misses not stored\n"
            ));
        }
        for ((target, outcome), count) in &walked.targets {
            report.push_str(&format!("  fault in {target} -> {outcome}: {count}\n"));
        }
        report.push_str(&format!(
            "  restore temp files left in out dirs: {}\n",
            walked.out_dir_temp_files
        ));
        assert_eq!(
            walked.out_dir_temp_files, 0,
            "{label}: failed restores left temp files in out dirs\n{report}"
        );
        for group in ["writes", "renames", "fsyncs"] {
            let (_, _, counted) = walked.groups.get(group).copied().unwrap_or_default();
            assert!(
                counted > 0 || matches!(scenario, Scenario::Hit) && group == "fsyncs",
                "{label}: no fault in {group} was counted: the walk proves little\n{report}"
            );
        }
    }
    eprintln!(
        "io_errors_in_stores_and_restores_break_no_build ({:?}):\n{report}",
        started.elapsed()
    );
}
