//! One real rustc compile of demo_leaf through rcache, without cargo ([`leaf_rustc_args`],
//! about 40 ms), optionally under strace: what the syscall-level suites (`crash`,
//! `store_faults::io_errors`) drive, to reach what a Rust seam cannot, LMDB's own writes and
//! fsyncs included.
//!
//! Each [`Leaf`] has its own `-C metadata`, so that every compile has its own outputs and blobs.
//! A reference compile of the same arguments made by rustc alone (in another out dir) says what
//! the outputs must be, byte for byte (the `.d` file names its out dir, which is normalized
//! away). [`run_leaf`] runs it, under [`Strace`] if asked (`-e inject=...` kills or fails a
//! chosen call); [`profile`] traces an uninjected run into [`Call`]s, each "the k-th call of
//! that syscall", which is how strace's `when=` counts (per syscall and per tracee).
//!
//! Walks go over fixed points in a fixed order: a failure reproduces.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{RCACHE, Sandbox, leaf_rustc_args, real_rustc, run_command};

/// The `-C metadata` value in [`leaf_rustc_args`], replaced per compile.
const LEAF_METADATA: &str = "0123456789abcdef";

/// One compile of demo_leaf with its own `-C metadata` and out dir, and the outputs rustc alone
/// produces for it.
pub struct Leaf {
    pub args: Vec<String>,
    pub out: PathBuf,
    pub reference: BTreeMap<String, Vec<u8>>,
}

impl Leaf {
    /// Compile number `n` of this sandbox: its reference is compiled here, by rustc alone.
    #[track_caller]
    pub fn new(sb: &Sandbox, n: u64) -> Leaf {
        let metadata = format!("{:016x}", 0x5eed_0000_0000_0000 + n);
        let args_for = |out: &Path| -> Vec<String> {
            leaf_rustc_args(out)
                .into_iter()
                .map(|arg| arg.replace(LEAF_METADATA, &metadata))
                .collect()
        };
        let reference_dir = sb.root.join("reference").join(&metadata);
        fs::create_dir_all(&reference_dir).unwrap();
        let mut cmd = Command::new(crate::harness::PLAIN_REMAPPED_RUSTC);
        cmd.arg(real_rustc());
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
    pub fn assert_outputs(&self, what: &str) -> usize {
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
/// and how many temp files of restores (`<name>.rcache-<pid>`) it holds beside them. A
/// directory is rustc's own temporary (`rmetaXXXXXX`, left when a walk kills rustc itself, as
/// it would be without rcache): not an output, not rcache's leftover.
pub fn outputs_of(dir: &Path) -> (BTreeMap<String, Vec<u8>>, usize) {
    let mut files = BTreeMap::new();
    let mut leftovers = 0;
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            continue;
        }
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
pub struct Outcome {
    pub status: ExitStatus,
    pub stderr: String,
    /// The rcache events it logged (none if rcache was killed before its end, or if the write
    /// of the events line itself was failed).
    pub events: Vec<Value>,
}

impl Outcome {
    pub fn killed(&self) -> bool {
        self.status.signal() == Some(libc::SIGKILL)
    }

    /// The one event's `outcome`, with its reason (`hit`, `miss`, `miss:compile_failed`,
    /// `error:disk_full`, ...), or `none`.
    pub fn describe(&self) -> String {
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
    pub fn counted_fault(&self) -> bool {
        self.events.iter().any(|event| {
            event["outcome"] == "error" || (event["outcome"] == "miss" && event["stored"] == false)
        })
    }
}

/// How to run strace around rcache.
#[derive(Default)]
pub struct Strace<'a> {
    /// `-f`: also trace (and count, and inject into) rustc and rcache's threads.
    pub follow: bool,
    /// `-e trace=...`; every syscall by default.
    pub trace: Option<&'a str>,
    /// `-e inject=...`.
    pub inject: Option<String>,
    /// Where the trace goes (with `-y`, fd paths); `/dev/null` by default.
    pub output: Option<&'a Path>,
}

/// Runs `rcache <real rustc> <leaf args>` in the sandbox, under strace if `strace` is given,
/// with `RCACHE_DIR=store`.
pub fn run_leaf(sb: &Sandbox, store: &Path, leaf: &Leaf, strace: Option<Strace>) -> Outcome {
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
pub fn run_clean(sb: &Sandbox, store: &Path, leaf: &Leaf, what: &str) -> Outcome {
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
pub struct Call {
    pub name: String,
    /// 1-based ordinal among this tracee's calls of this syscall.
    pub ordinal: u32,
    pub line: String,
}

impl Call {
    /// The injection that hits this call (or an earlier call of another tracee that reaches
    /// the same ordinal of the same syscall first).
    pub fn inject(&self, action: &str) -> String {
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
pub fn profile(sb: &Sandbox, store: &Path, leaf: &Leaf, follow: bool, what: &str) -> Vec<Call> {
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
pub fn settle_sources(sb: &Sandbox) {
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
pub fn kill_leftovers(sb: &Sandbox) -> usize {
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
pub fn rcache_on(sb: &Sandbox, store: &Path, args: &[&str]) -> (bool, String, String) {
    let what = format!("rcache {}", args.join(" "));
    let (status, stdout, stderr) = run_command(sb.rcache(args).env("RCACHE_DIR", store), &what);
    let report = format!("{what}: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    (status.success(), stdout, report)
}

#[track_caller]
pub fn assert_verifies(sb: &Sandbox, store: &Path, what: &str) {
    let (ok, _, report) = rcache_on(sb, store, &["verify"]);
    assert!(ok, "{what}: the store does not verify\n{report}");
}

/// Blob files on disk under `store`.
pub fn blob_files(store: &Path) -> usize {
    walkdir_files(&store.join("v2/blobs"))
}

pub fn walkdir_files(dir: &Path) -> usize {
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
pub fn indexed_blobs(sb: &Sandbox, store: &Path) -> usize {
    let (ok, stdout, report) = rcache_on(sb, store, &["stats", "--json"]);
    assert!(ok, "{report}");
    let stats: Value = serde_json::from_str(stdout.trim()).expect("stats --json");
    stats["blobs"].as_u64().expect("stats blobs") as usize
}

/// Up to `count` indices spread evenly over `range`, in order.
pub fn spread(range: std::ops::Range<usize>, count: usize) -> Vec<usize> {
    let len = range.end.saturating_sub(range.start);
    if len == 0 || count == 0 {
        return Vec::new();
    }
    let step = len.div_ceil(count);
    range.step_by(step.max(1)).collect()
}
