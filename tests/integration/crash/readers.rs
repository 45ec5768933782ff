//! Stale LMDB reader slots: more processes than LMDB has reader slots are SIGKILLed while
//! holding read transactions on both envs, while this process keeps the envs open (so that no
//! opener may reset the reader table); the store still serves a hit.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::Sandbox;
use crate::harness::leaf::{Leaf, assert_verifies, run_clean};

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
