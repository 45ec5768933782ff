//! The prefetcher (src/remote/prefetch.rs, store-format/README.md §9.7), with the default
//! settings: machine A builds every target of the fixture (`cargo build --all-targets`, one
//! build: one group on the remote); machine B, a fresh store, builds the default targets. B's
//! first remote hit starts one detached prefetcher, which pulls A's group into B's store while
//! B builds. It must:
//!
//! - leave B's build green and byte for byte A's, and count what it fetched, what B used and
//!   what B did not;
//! - write nothing outside B's store (checked around a build, and around a prefetcher started
//!   by hand in empty dirs, whose "build" uses nothing: all it fetched counts as unused);
//! - stop when the build ends, even while a request to a hung server is in flight;
//! - never fail the build when the server dies, or hangs, in the middle of the prefetch
//!   ([`FaultProxy`] cuts it off right after the prefetcher read the group).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{prefetching_client, remote_stat};
use crate::harness::{
    Fault, FaultProxy, Machine, RedisServer, RemoteServer, Sandbox, expected_output,
};

/// A prefetcher's figure, `remote.prefetch.<name>` (0 when never counted).
#[track_caller]
fn prefetched(stats: &Value, name: &str) -> u64 {
    stats["remote"]["prefetch"]
        .get(name)
        .map(|value| value.as_u64().expect("a count"))
        .unwrap_or(0)
}

/// Waits until `machine`'s prefetchers have all written their counts (`runs` reaches
/// `started`) and left their markers; panics after two minutes with the stats. A prefetcher
/// counts once the build it watches has ended, so this follows the build by about a second.
#[track_caller]
fn wait_for_prefetchers(machine: &Machine) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = machine.stats();
        let markers = fs::read_dir(machine.store.join("v2/prefetch"))
            .map(|dir| dir.count())
            .unwrap_or(0);
        let started = prefetched(&stats, "started");
        if started > 0 && prefetched(&stats, "runs") == started && markers == 0 {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "the prefetcher did not finish ({markers} markers left):\n{stats:#}"
        );
        // Polling only: the interval changes no result.
        thread::sleep(Duration::from_millis(100));
    }
}

/// Machine A builds every target and publishes them (sync); returns its outputs and how many
/// entries it stored. The target dir is emptied for the next machine.
fn publish_all_targets<S: RemoteServer>(sb: &Sandbox, server: &S) -> BTreeMap<String, Vec<u8>> {
    let a = prefetching_client(sb, server, "a");
    a.cargo(&["build", "--all-targets"]).ok();
    let stats = a.stats();
    assert!(
        remote_stat(&stats, "uploads") > 6 && remote_stat(&stats, "pending_uploads") == 0,
        "A published less than its lib, bin, script and test units:\n{stats:#}"
    );
    let outputs = sb.deps_outputs(&sb.target);
    sb.remove_target();
    outputs
}

/// Every output B wrote is one A wrote, byte for byte (A built more targets than B).
#[track_caller]
fn assert_outputs_are_as(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) {
    assert!(!b.is_empty(), "B wrote no outputs");
    for (name, bytes) in b {
        assert!(
            a.get(name) == Some(bytes),
            "B's {name} is not what A's build wrote"
        );
    }
}

/// The events of a build's cacheable units (not cargo's probes of rustc, passed through).
fn units(run: &crate::harness::Run) -> impl Iterator<Item = &Value> {
    run.events.iter().filter(|e| e["outcome"] != "passthrough")
}

/// Every file under `root` but the `skipped` top-level names, with its content.
fn snapshot(root: &Path, skipped: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            if skipped.iter().any(|skip| relative == *skip) || relative.starts_with("events-") {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                files.insert(relative, fs::read(&path).unwrap());
            } else {
                files.insert(relative, b"(not a file)".to_vec());
            }
        }
    }
    files
}

/// Nothing was written outside `what` (the snapshots skip it): no file appeared, vanished or
/// changed.
#[track_caller]
fn assert_same_snapshot(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let changed: Vec<&String> = after
        .keys()
        .chain(before.keys())
        .filter(|name| before.get(*name) != after.get(*name))
        .collect();
    assert!(changed.is_empty(), "written outside {what}: {changed:?}");
}

/// B's build with the prefetcher: green, A's bytes, every unit a hit (from the remote or, once
/// prefetched, from B's store); one prefetcher, which stopped when it had pulled the group or
/// when the build ended, and whose used and unused entries add up to what it fetched; nothing
/// written outside B's store and target dir (B's `TMPDIR` included).
pub(super) fn prefetcher_pulls_the_build_and_counts_what_was_used<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let a_outputs = publish_all_targets(&sb, &server);
    let tmp = sb.root.join("tmp-b");
    fs::create_dir_all(&tmp).unwrap();
    let before = snapshot(&sb.root, &["store-b", "target"]);

    let b = prefetching_client(&sb, &server, "b").env("TMPDIR", &tmp);
    let run = b.build();
    let stats = wait_for_prefetchers(&b);
    assert_outputs_are_as(&a_outputs, &sb.deps_outputs(&sb.target));
    assert_eq!(sb.run_bin(), expected_output(&[]));
    assert_eq!(stats["misses"], 0, "B compiled something:\n{stats:#}");
    assert!(
        units(&run).all(|e| e["outcome"] == "hit"),
        "every unit of B should be a hit\n{}",
        run.describe_events()
    );
    assert_eq!(remote_stat(&stats, "errors"), 0, "{stats:#}");
    assert_eq!(
        prefetched(&stats, "started"),
        1,
        "one group, one build:\n{stats:#}"
    );
    assert_eq!(
        prefetched(&stats, "stopped_by.done") + prefetched(&stats, "stopped_by.build_end"),
        1,
        "{stats:#}"
    );
    let fetched = prefetched(&stats, "fetched");
    let (used, unused) = (prefetched(&stats, "used"), prefetched(&stats, "unused"));
    assert_eq!(used + unused, fetched, "{stats:#}");
    // Whatever B hit without asking the remote came from the prefetcher.
    let local_hits = units(&run).filter(|e| e["remote"].is_null()).count() as u64;
    assert!(
        used >= local_hits,
        "{local_hits} local hits, {used} used from the prefetcher:\n{stats:#}"
    );
    let after = snapshot(&sb.root, &["store-b", "target"]);
    assert_same_snapshot(&before, &after, "B's store and target dir");
}

/// A prefetcher started by hand for A's group, in an empty working dir with an empty `HOME` and
/// `TMPDIR`, watching a stand-in for cargo that builds nothing: it pulls every entry A published
/// into B's store, writes nowhere else, and once the "build" ends counts them all as fetched and
/// unused. B's next build then hits every unit from its own store without asking the remote.
#[test]
fn a_prefetch_no_build_used_counts_everything_unused_and_writes_only_the_store() {
    let server = RedisServer::start();
    let sb = Sandbox::new();
    let a_outputs = publish_all_targets(&sb, &server);
    let published = prefetching_client(&sb, &server, "a").stats()["entries"]
        .as_u64()
        .expect("A's entry count");
    let group = group_of(&server);
    let b = prefetching_client(&sb, &server, "b");
    b.rcache_ok(&["stats"]); // creates B's store
    let empty = sb.root.join("empty");
    for dir in ["cwd", "home", "tmp"] {
        fs::create_dir_all(empty.join(dir)).unwrap();
    }
    let before = snapshot(&sb.root, &["store-b"]);

    let mut build = Command::new("sleep").arg("600").spawn().unwrap();
    let mut prefetcher = prefetch_command(&b, &group, &build)
        .current_dir(empty.join("cwd"))
        .env("HOME", empty.join("home"))
        .env("TMPDIR", empty.join("tmp"))
        .spawn()
        .unwrap();
    // B's store fills while the "build" runs; the prefetcher counts only once it ends.
    let deadline = Instant::now() + Duration::from_secs(120);
    while b.stats()["entries"].as_u64() != Some(published) {
        assert!(
            Instant::now() < deadline,
            "B's store did not get A's {published} entries:\n{:#}",
            b.stats()
        );
        thread::sleep(Duration::from_millis(50));
    }
    end_build_and_wait(&mut build, &mut prefetcher);

    let stats = b.stats();
    assert_eq!(prefetched(&stats, "runs"), 1, "{stats:#}");
    assert_eq!(prefetched(&stats, "stopped_by.done"), 1, "{stats:#}");
    assert_eq!(prefetched(&stats, "fetched"), published, "{stats:#}");
    assert_eq!(prefetched(&stats, "used"), 0, "{stats:#}");
    assert_eq!(prefetched(&stats, "unused"), published, "{stats:#}");
    assert_eq!(remote_stat(&stats, "errors"), 0, "{stats:#}");
    assert!(remote_stat(&stats, "bytes_down") > 0, "{stats:#}");
    let after = snapshot(&sb.root, &["store-b"]);
    assert_same_snapshot(&before, &after, "B's store");

    let run = b.build();
    assert!(
        units(&run).all(|e| e["outcome"] == "hit" && e["remote"].is_null()),
        "B's build should hit what the prefetcher stored\n{}",
        run.describe_events()
    );
    assert_outputs_are_as(&a_outputs, &sb.deps_outputs(&sb.target));
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// The server dies right after the prefetcher read the group, in the middle of the transfers
/// that follow: B's build is green with A's bytes (what it could not get, it compiled), the
/// prefetcher stopped on the remote error, and the faults are counted.
#[test]
fn a_server_dying_mid_prefetch_fails_nothing() {
    fault_mid_prefetch(Fault::Die);
}

/// The same with a server that stops answering (connections stay open, nothing comes back).
#[test]
fn a_server_hanging_mid_prefetch_fails_nothing() {
    fault_mid_prefetch(Fault::Hang);
}

fn fault_mid_prefetch(fault: Fault) {
    let server = RedisServer::start();
    let sb = Sandbox::new();
    let a_outputs = publish_all_targets(&sb, &server);
    // Let the group's reply through (it is small), and a few KiB more: the rlibs after it are
    // cut off mid-transfer.
    let proxy = FaultProxy::start(server.port(), b"rcache-v4:group:", 64 * 1024, fault);
    let b = sb
        .machine("b")
        .env("RCACHE_REMOTE", proxy.redis_url())
        .env("RCACHE_REMOTE_TIMEOUT", super::TIMEOUT)
        .env("RCACHE_REMOTE_UPLOAD", "sync");
    let run = b.build();
    let stats = wait_for_prefetchers(&b);
    assert!(
        proxy.failed(),
        "{fault:?}: the proxy never cut the server off"
    );
    assert_outputs_are_as(&a_outputs, &sb.deps_outputs(&sb.target));
    assert_eq!(sb.run_bin(), expected_output(&[]));
    assert!(run.status.success());
    assert_eq!(prefetched(&stats, "runs"), 1, "{stats:#}");
    // A dead server fails the request in flight at once. A hung one fails it after the
    // timeout, unless the build ended first (then the prefetcher stopped for that).
    let stopped = match fault {
        Fault::Die => prefetched(&stats, "stopped_by.remote_error"),
        Fault::Hang => {
            prefetched(&stats, "stopped_by.remote_error")
                + prefetched(&stats, "stopped_by.build_end")
        }
    };
    assert_eq!(
        stopped, 1,
        "{fault:?}: the prefetcher did not stop on the fault:\n{stats:#}"
    );
    let reason = match fault {
        Fault::Die => "error_reasons.unreachable",
        Fault::Hang => "error_reasons.timeout",
    };
    assert!(remote_stat(&stats, reason) >= 1, "{fault:?}:\n{stats:#}");
}

/// A prefetcher started by hand on a server that hangs from the start, with a request timeout
/// of ten minutes, watching a stand-in for cargo: once that process ends, the prefetcher stops
/// (its request still in flight), counts, and exits, long before its request would time out.
#[test]
fn the_prefetcher_stops_when_the_build_ends() {
    let server = RedisServer::start();
    let sb = Sandbox::new();
    publish_all_targets(&sb, &server);
    let group = group_of(&server);
    let proxy = FaultProxy::start(server.port(), b"rcache-v4:group:", 0, Fault::Hang);
    let b = sb
        .machine("b")
        .env("RCACHE_REMOTE", proxy.redis_url())
        .env("RCACHE_REMOTE_TIMEOUT", "600s");
    b.rcache_ok(&["stats"]); // creates B's store
    let mut build = Command::new("sleep").arg("600").spawn().unwrap();
    let mut prefetcher = prefetch_command(&b, &group, &build).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.failed() {
        assert!(
            Instant::now() < deadline,
            "the prefetcher never asked for the group"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        prefetcher.try_wait().unwrap().is_none(),
        "the prefetcher left while the build runs"
    );
    end_build_and_wait(&mut build, &mut prefetcher);
    let stats = b.stats();
    assert_eq!(prefetched(&stats, "runs"), 1, "{stats:#}");
    assert_eq!(prefetched(&stats, "stopped_by.build_end"), 1, "{stats:#}");
    assert_eq!(prefetched(&stats, "fetched"), 0, "{stats:#}");
}

/// The one group on the server, in hex.
fn group_of(server: &RedisServer) -> String {
    let groups: Vec<String> = server
        .names()
        .into_iter()
        .filter(|name| server.layout_kind(name) == Some("group"))
        .collect();
    assert_eq!(groups.len(), 1, "one build, one group: {groups:?}");
    groups[0].rsplit(':').next().unwrap().to_string()
}

/// `rcache remote prefetch` for `group`, on `machine`, watching `build` as cargo.
fn prefetch_command(machine: &Machine, group: &str, build: &Child) -> Command {
    let build = identity(build);
    machine.rcache(&["remote", "prefetch", "--group", group, "--build", &build])
}

/// `<pid>:<start time>` of a process, as `--build` takes it: the start time is field 22 of
/// `/proc/<pid>/stat`.
fn identity(child: &Child) -> String {
    let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    let start_time = after_name.split_whitespace().nth(19).unwrap();
    format!("{}:{start_time}", child.id())
}

/// Ends the stand-in for cargo, then waits for the prefetcher, which must exit by itself and
/// with success.
#[track_caller]
fn end_build_and_wait(build: &mut Child, prefetcher: &mut Child) {
    build.kill().unwrap();
    build.wait().unwrap();
    let status = wait_with_deadline(prefetcher, Duration::from_secs(60));
    assert!(status.success(), "the prefetcher exited with {status}");
}

/// Waits for `child`, failing the test (and killing it) after `limit`: a liveness bound, far
/// above what the wait takes, not a measurement.
#[track_caller]
fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the prefetcher still runs {limit:?} after the build ended");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
