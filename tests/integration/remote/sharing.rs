//! Sharing: what machine A publishes (its blobs compressed), machine B restores byte for byte and
//! then keeps in its own store; publishing through the background uploader; a bucket without
//! prefix; and candidates written concurrently for one invocation key, none lost.

use std::process::Command;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use super::{
    assert_blobs_compressed, assert_layout, assert_local_hit, assert_remote, client, compiles,
    publish, remote_stat, stored_units, wait_for_uploads,
};
use crate::harness::{
    RedisServer, RemoteServer, S3Server, Sandbox, assert_same_files, expected_output, run_command,
};

/// A publishes through the background uploader and `rcache remote flush`; B, a fresh store,
/// restores every unit from the remote with the bytes A's compiles wrote; B's next clean build
/// comes from its own store, without asking the remote.
pub(super) fn fresh_machine_hits_every_crate_from_the_remote_byte_identical<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let a = client(&sb, &server, "a").env("RCACHE_REMOTE_UPLOAD", "background");
    let cold = a.build();
    let units = stored_units(&cold);
    let a_outputs = sb.deps_outputs(&sb.target);
    // The detached uploader empties the queue by itself; the flush after it (which CI jobs
    // run last, since runners kill orphan processes) finds nothing left and succeeds.
    wait_for_uploads(&a, units.len());
    a.rcache_ok(&["remote", "flush"]);
    assert_layout(&server, units.len());
    assert_blobs_compressed(&server, &a_outputs);
    sb.remove_target();

    let b = client(&sb, &server, "b");
    let run = b.build();
    for unit in &units {
        assert_remote(&run, unit, "hit", "hit");
    }
    let stats = b.stats();
    assert_eq!(remote_stat(&stats, "hits"), units.len() as u64, "{stats:#}");
    assert_eq!(stats["misses"], 0, "B compiled something:\n{stats:#}");
    assert_eq!(stats["hits"], compiles(&units), "{stats:#}");
    assert_eq!(remote_stat(&stats, "errors"), 0, "{stats:#}");
    assert!(remote_stat(&stats, "bytes_down") > 0, "{stats:#}");
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "machine B's outputs from the remote vs machine A's compiles",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));

    // The remote entries were committed into B's store: a clean build hits locally.
    sb.remove_target();
    let local = b.build();
    for unit in &units {
        assert_local_hit(&local, unit);
    }
    let after = b.stats();
    assert_eq!(
        remote_stat(&after, "hits"),
        remote_stat(&stats, "hits"),
        "{after:#}"
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// Redis: B's lookups open their connections without the client library's `CLIENT SETINFO`
/// (one round trip more per connection on a real link, where each lookup opens one): the server
/// counts only the commands rcache sends itself.
#[test]
fn redis_connections_send_nothing_but_rcache_own_commands() {
    let server = RedisServer::start();
    let sb = Sandbox::new();
    let (units, _) = publish(&sb, &server, &client(&sb, &server, "a"));
    server.reset_stats();
    let run = client(&sb, &server, "b").build();
    for unit in &units {
        assert_remote(&run, unit, "hit", "hit");
    }
    let commands = server.info("commandstats");
    assert!(
        commands.contains("cmdstat_zrevrange:") && commands.contains("cmdstat_mget:"),
        "B's lookups are not in the server's counts:\n{commands}"
    );
    // Besides the lookups': the test's own reset, and the INFO reading this.
    let expected = ["zrevrange", "mget", "config|resetstat", "info"];
    let others: Vec<&str> = commands
        .lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter(|line| {
            !expected
                .iter()
                .any(|name| line.starts_with(&format!("{name}:")))
        })
        .collect();
    assert!(
        others.is_empty(),
        "B sent commands other than its lookups' (prefetcher off, nothing to publish): {others:?}"
    );
    // A Redis older than 7.2 refuses `CLIENT SETINFO` (an unknown subcommand): an error, not a
    // command, in its counts.
    let errors = server.info("errorstats");
    assert!(
        !errors.lines().any(|line| line.starts_with("errorstat_")),
        "B's connections met errors on the server:\n{errors}"
    );
}

/// `s3://bucket` without a prefix: the layout starts at the bucket's root (checked by
/// [`publish`]), and a second machine hits every unit from it.
#[test]
fn s3_remote_without_a_prefix_works_from_the_bucket_root() {
    let server = S3Server::start_without_prefix();
    let sb = Sandbox::new();
    let (units, a_outputs) = publish(&sb, &server, &client(&sb, &server, "a"));
    let run = client(&sb, &server, "b").build();
    for unit in &units {
        assert_remote(&run, unit, "hit", "hit");
    }
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "machine B from a bucket without prefix vs machine A",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// How many writers add a candidate at once in [`concurrent_candidates_child`].
const WRITERS: u8 = 8;

/// Set (to anything) for [`concurrent_candidates_child`] by its parent.
const CANDIDATES_CHILD: &str = "RCACHE_TEST_CANDIDATES_CHILD";

/// The invocation key the concurrent writers share.
const SHARED_KEY: [u8; 32] = [0xab; 32];

/// Writers that add distinct candidates for one invocation key at the same moment lose none
/// of them, and a later candidate lists first. The writers run in a child process
/// ([`concurrent_candidates_child`]): the S3 client takes its credentials from the process
/// environment, which a test must not change while other tests' threads read it. The server
/// is then checked from here, through the harness' own client.
pub(super) fn concurrent_candidates_for_one_key_are_all_kept<S: RemoteServer>() {
    let server = S::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "remote::sharing::concurrent_candidates_child",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .envs(server.env())
    .env("RCACHE_DIR", dir.path().join("store"))
    .env("RCACHE_CONFIG", dir.path().join("none.toml"))
    .env("RCACHE_REMOTE_TIMEOUT", "10s")
    .env(CANDIDATES_CHILD, "1");
    let (status, stdout, stderr) = run_command(&mut cmd, "the concurrent writers");
    assert!(
        status.success() && stdout.contains("1 passed"),
        "{}: the concurrent writers failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        S::NAME
    );
    let hex: String = SHARED_KEY.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        server.candidate_count(&hex),
        usize::from(WRITERS) + 1,
        "{}: candidates on the server: {:?}",
        S::NAME,
        server.names()
    );
}

/// Not a test on its own: the process of [`concurrent_candidates_for_one_key_are_all_kept`],
/// which sets the remote's settings in its environment. Ignored, so that a plain test run does
/// not list it as a passing test.
#[test]
#[ignore = "a process of concurrent_candidates_for_one_key_are_all_kept, not a test"]
fn concurrent_candidates_child() {
    use rcache::config::Config;
    use rcache::remote::Remote;
    use rcache::store::entry::{Candidate, EnvRecord, InputRecord};

    assert!(
        std::env::var_os(CANDIDATES_CHILD).is_some(),
        "run by concurrent_candidates_for_one_key_are_all_kept, with the remote's settings"
    );
    let remote = || {
        Remote::from_config(&Config::load())
            .expect("open the remote")
            .expect("RCACHE_REMOTE is set")
    };
    let candidate = |n: u8| Candidate {
        inputs: vec![InputRecord {
            path: format!("src/writer_{n}.rs").into_bytes(),
            hash: [n; 32],
        }],
        env_deps: vec![EnvRecord {
            name: "WRITER".into(),
            value: Some(n.to_string()),
        }],
        result_key: [n; 32],
        path_bound: None,
    };

    let barrier = Barrier::new(WRITERS.into());
    thread::scope(|scope| {
        for n in 0..WRITERS {
            let (barrier, remote, candidate) = (&barrier, &remote, &candidate);
            scope.spawn(move || {
                let (remote, mine) = (remote(), candidate(n));
                barrier.wait();
                remote
                    .add_candidate(&SHARED_KEY, &mine, Some(&[n + 1; 32]))
                    .unwrap_or_else(|e| panic!("writer {n}: {e}"));
            });
        }
    });
    let remote = remote();
    let listed = remote.candidates(&SHARED_KEY).expect("list the candidates");
    let mut got: Vec<u8> = listed.iter().map(|(c, _)| c.result_key[0]).collect();
    got.sort();
    assert_eq!(
        got,
        (0..WRITERS).collect::<Vec<_>>(),
        "candidates after {WRITERS} concurrent writers"
    );
    for (c, group) in &listed {
        let n = c.result_key[0];
        assert_eq!(
            (c.clone(), *group),
            (candidate(n), Some([n + 1; 32])),
            "a candidate came back altered, or with another group"
        );
    }

    // Newest first: a candidate added after the others lists before them. Candidates are
    // ordered by their time in milliseconds; the sleep puts this one in a later millisecond.
    thread::sleep(Duration::from_millis(20));
    remote
        .add_candidate(&SHARED_KEY, &candidate(WRITERS), None)
        .unwrap();
    let listed = remote.candidates(&SHARED_KEY).unwrap();
    assert_eq!(listed.len(), usize::from(WRITERS) + 1);
    assert_eq!(
        listed[0],
        (candidate(WRITERS), None),
        "the newest candidate is not first"
    );
}
