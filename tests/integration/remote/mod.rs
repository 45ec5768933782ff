//! Remote storage (issue 9): machines that share one cache through a real Redis or S3 server
//! (moto), building the fixture workspace with real cargo.
//!
//! Every scenario is written once, generic over [`RemoteServer`], and instantiated for each
//! backend at the bottom (`remote::redis::*`, `remote::s3::*`); a few tests of one backend's own
//! settings stand alone. A "machine" is a fresh store building the same checkout into the same
//! (emptied) target dir ([`Machine`]): machine A compiles and publishes, machine B starts from
//! nothing and should get A's outputs from the remote, byte for byte. Each test starts its own
//! server on a free port.
//!
//! - [`sharing`]: B restores every unit from the remote, byte-identical to A, then hits its own
//!   store; the background uploader and `rcache remote flush`; a bucket without prefix;
//!   concurrent writers of one key's candidates lose none.
//! - [`faults`]: a corrupt or evicted remote blob, a server that stops answering, a dead
//!   server (and `rcache remote check` on it): the build stays green and correct, and each
//!   fault is counted with its reason.
//! - [`trust`]: read-only clients write nothing; with `RCACHE_REMOTE_KEY`, unsigned, foreign,
//!   altered and moved entries are rejected; secrets never show; hostile output names in a
//!   remote entry write nothing outside the out dir.
//! - [`cold`]: a build whose first lookups all miss stops asking; a hit keeps it asking.
//! - [`prefetch`]: a fresh machine's first remote hit starts the prefetcher, which pulls the rest
//!   of the build A published into B's store, counts what B used and did not, stops when the
//!   build ends (even in a request to a hung server), writes nothing outside the store, and
//!   cannot fail the build when the server dies or hangs in the middle of it.
//! - [`versions`]: what a client of the previous remote format (version 1: raw blobs) left on
//!   the server is ignored, and left as it was.
//!
//! Blobs on the server are zstd frames of the outputs (store-format/README.md §9.6): the tests
//! decompress them with the `zstd` crate itself, not through rcache's code ([`decompress`]).
//!
//! Requests time out after 1 s (`RCACHE_REMOTE_TIMEOUT`): the servers answer in milliseconds,
//! and the hung-server scenario pays the timeout. Assertions are on counts, never on wall time.

mod cold;
mod faults;
mod prefetch;
mod sharing;
mod trust;
mod versions;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Machine, RemoteServer, Run, Sandbox, expected_output};

/// `RCACHE_REMOTE_TIMEOUT` for every client of these tests.
const TIMEOUT: &str = "1s";

/// A client of `server` on a machine named `name`: the server's settings, the tests' timeout,
/// and uploads published before each compile's process exits (`sync`), so that a build's
/// entries are on the server when it ends. [`sharing`] covers the background uploader. The
/// prefetcher is off, so that each unit's remote outcome is its own lookup's; [`prefetch`]
/// tests it, with the default settings.
fn client<'a, S: RemoteServer>(sb: &'a Sandbox, server: &S, name: &str) -> Machine<'a> {
    prefetching_client(sb, server, name).env("RCACHE_REMOTE_PREFETCH", "0")
}

/// [`client`] with the prefetcher on, as by default.
fn prefetching_client<'a, S: RemoteServer>(sb: &'a Sandbox, server: &S, name: &str) -> Machine<'a> {
    sb.machine(name)
        .envs(server.env())
        .env("RCACHE_REMOTE_TIMEOUT", TIMEOUT)
        .env("RCACHE_REMOTE_UPLOAD", "sync")
}

/// A number in `stats["remote"]`, by a dotted path (`hits`, `error_reasons.timeout`). A reason
/// that never happened may be left out of its map: it reads as 0.
#[track_caller]
fn remote_stat(stats: &Value, path: &str) -> u64 {
    let remote = &stats["remote"];
    let value = match path.split_once('.') {
        Some((map, reason)) => {
            assert!(
                remote[map].is_object(),
                "stats has no object remote.{map}:\n{stats:#}"
            );
            remote[map].get(reason).unwrap_or(&Value::from(0)).clone()
        }
        None => remote[path].clone(),
    };
    value
        .as_u64()
        .unwrap_or_else(|| panic!("stats has no integer remote.{path}:\n{stats:#}"))
}

/// A cacheable unit of the fixture's build: a compile (`rustc`, named by its crate) or a
/// build-script run (`build_script_run`, named by its package).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unit {
    kind: String,
    name: String,
}

/// The units a cold build stored: what a remote can share.
#[track_caller]
fn stored_units(run: &Run) -> Vec<Unit> {
    let units: Vec<Unit> = run
        .events
        .iter()
        .filter(|e| e["stored"] == true)
        .map(|e| Unit {
            kind: e["kind"].as_str().expect("an event has a kind").to_string(),
            name: e["crate"]
                .as_str()
                .expect("a stored unit has a name")
                .to_string(),
        })
        .collect();
    // demo_leaf, demo_lib, demo_macro, demo_lib's build script and demo_bin; the script's run.
    let compiles = units.iter().filter(|u| u.kind == "rustc").count();
    assert!(
        compiles == 5 && units.len() == 6,
        "the cold build did not store every compile and the script run\n{}",
        run.describe_events()
    );
    units
}

/// The compiles among `units`.
fn compiles(units: &[Unit]) -> u64 {
    units.iter().filter(|u| u.kind == "rustc").count() as u64
}

/// `unit`'s one event in `run`.
#[track_caller]
fn event<'r>(run: &'r Run, unit: &Unit) -> &'r Value {
    let found: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["kind"] == unit.kind.as_str() && e["crate"] == unit.name.as_str())
        .collect();
    assert!(
        found.len() == 1,
        "{}: {} events for {unit:?}\n{}",
        run.what,
        found.len(),
        run.describe_events()
    );
    found[0]
}

/// `unit`'s event has this `outcome` and `remote` field.
#[track_caller]
fn assert_remote(run: &Run, unit: &Unit, outcome: &str, remote: &str) {
    let e = event(run, unit);
    assert!(
        e["outcome"] == outcome && e["remote"] == remote,
        "{}: {unit:?} should be outcome {outcome} with remote {remote}\n{}",
        run.what,
        run.describe_events()
    );
}

/// `unit` hit the local store: the remote was not asked (`remote` null or absent).
#[track_caller]
fn assert_local_hit(run: &Run, unit: &Unit) {
    let e = event(run, unit);
    assert!(
        e["outcome"] == "hit" && e["remote"].is_null(),
        "{}: {unit:?} should hit the local store without asking the remote\n{}",
        run.what,
        run.describe_events()
    );
}

/// The unit named `name` (a crate, or a package's script run) among `units`.
#[track_caller]
fn unit<'u>(units: &'u [Unit], kind: &str, name: &str) -> &'u Unit {
    units
        .iter()
        .find(|u| u.kind == kind && u.name == name)
        .unwrap_or_else(|| panic!("no {kind} unit {name} in {units:?}"))
}

/// Machine A builds the fixture into an empty store and publishes it (`sync`: no flush).
/// Returns what it stored and its outputs; the target dir is empty afterwards, ready for the
/// next machine.
#[track_caller]
fn publish<S: RemoteServer>(
    sb: &Sandbox,
    server: &S,
    a: &Machine,
) -> (Vec<Unit>, BTreeMap<String, Vec<u8>>) {
    let cold = a.build();
    let units = stored_units(&cold);
    assert_eq!(sb.run_bin(), expected_output(&[]));
    let outputs = sb.deps_outputs(&sb.target);
    assert_layout(server, units.len());
    let stats = a.stats();
    assert_eq!(remote_stat(&stats, "pending_uploads"), 0, "{stats:#}");
    assert!(
        remote_stat(&stats, "uploads") >= units.len() as u64 && remote_stat(&stats, "bytes_up") > 0,
        "machine A published less than the {} units it stored:\n{stats:#}",
        units.len()
    );
    sb.remove_target();
    (units, outputs)
}

/// Waits until the background uploader published `units` entries and nothing is queued; panics
/// after a minute with the stats.
#[track_caller]
fn wait_for_uploads(machine: &Machine, units: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = machine.stats();
        if remote_stat(&stats, "pending_uploads") == 0
            && remote_stat(&stats, "uploads") >= units as u64
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the background uploader did not publish {units} entries:\n{stats:#}"
        );
        // Polling only: the interval changes no result.
        thread::sleep(Duration::from_millis(100));
    }
}

/// Everything on the server is a blob, an entry or a candidate of the remote layout, and
/// there are at least as many entries and candidates as `units` were published.
#[track_caller]
fn assert_layout<S: RemoteServer>(server: &S, units: usize) {
    let names = server.names();
    let mut kinds = BTreeMap::<&str, usize>::new();
    for name in &names {
        let kind = server
            .layout_kind(name)
            .unwrap_or_else(|| panic!("{}: {name} is not in the remote layout", S::NAME));
        *kinds.entry(kind).or_default() += 1;
    }
    assert!(
        kinds.get("blob") >= Some(&units)
            && kinds.get("entry") >= Some(&units)
            && kinds.get("candidate") >= Some(&units),
        "{}: {units} units published, but the server holds {kinds:?}: {names:?}",
        S::NAME
    );
}

/// What a remote blob (one zstd frame) decompresses to; panics if it is not zstd.
#[track_caller]
fn decompress(frame: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(frame).unwrap_or_else(|e| panic!("a remote blob is not zstd: {e}"))
}

/// Every output in `outputs` is on the server as a blob named by its blake3, holding one zstd
/// frame that decompresses to the output byte for byte; and the frames are smaller than the
/// outputs, taken together.
#[track_caller]
fn assert_blobs_compressed<S: RemoteServer>(server: &S, outputs: &BTreeMap<String, Vec<u8>>) {
    let (mut raw, mut sent) = (0, 0);
    for (name, bytes) in outputs {
        let frame = server.read(&server.blob_name(blake3::hash(bytes).to_hex().as_str()));
        assert_eq!(
            frame[..4],
            [0x28, 0xb5, 0x2f, 0xfd],
            "{}: the blob of {name} is not a zstd frame",
            S::NAME
        );
        assert!(
            decompress(&frame) == *bytes,
            "{}: the blob of {name} does not decompress to it",
            S::NAME
        );
        raw += bytes.len();
        sent += frame.len();
    }
    assert!(
        sent * 2 < raw,
        "{}: {raw} bytes of outputs take {sent} bytes on the server",
        S::NAME
    );
}

/// `a` and `b` hold the same names with the same bytes; panics naming those that differ.
#[track_caller]
fn assert_unchanged(
    server_name: &str,
    a: &BTreeMap<String, Vec<u8>>,
    b: &BTreeMap<String, Vec<u8>>,
) {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let changed: Vec<&&String> = names.iter().filter(|n| a.get(**n) != b.get(**n)).collect();
    assert!(
        changed.is_empty(),
        "{server_name}: changed on the server: {changed:?}"
    );
}

/// Instantiates every scenario for each backend, as `remote::<backend>::<scenario>`.
macro_rules! per_backend {
    ($($module:ident::$scenario:ident),* $(,)?) => {
        mod redis {
            $(
                #[test]
                fn $scenario() {
                    super::$module::$scenario::<crate::harness::RedisServer>();
                }
            )*
        }
        mod s3 {
            $(
                #[test]
                fn $scenario() {
                    super::$module::$scenario::<crate::harness::S3Server>();
                }
            )*
        }
    };
}

per_backend!(
    sharing::fresh_machine_hits_every_crate_from_the_remote_byte_identical,
    sharing::concurrent_candidates_for_one_key_are_all_kept,
    faults::corrupt_remote_blob_is_detected_and_compiled_around,
    faults::evicted_remote_blob_is_a_miss_and_published_again,
    faults::hung_server_costs_a_timeout_then_the_build_skips_it,
    faults::dead_server_fails_the_check_and_the_build_goes_on_without_it,
    trust::read_only_client_hits_and_never_writes,
    trust::client_with_a_key_rejects_unsigned_entries,
    trust::entries_signed_with_another_key_are_rejected_and_the_same_key_hits,
    faults::remote_blobs_of_the_wrong_size_are_detected_and_compiled_around,
    versions::a_remote_written_by_format_version_1_is_ignored,
    prefetch::prefetcher_pulls_the_build_and_counts_what_was_used,
);
