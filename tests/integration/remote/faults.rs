//! Faults of the remote: a blob whose frame is damaged, frames that decompress to more or fewer
//! bytes than their entry says, a blob evicted under its entry, a server that stops answering,
//! and one that is gone. Each is counted with its reason; the build compiles what it must and
//! stays green, with the outputs machine A wrote.

use super::{assert_remote, client, decompress, event, publish, remote_stat, stored_units, unit};
use crate::harness::{RemoteServer, Sandbox, assert_same_files, expected_output, run_command};

/// One remote blob's frame with one byte flipped in its middle (same size): B finds it wrong
/// (it does not decode, or not to the rlib), compiles that crate instead, and its outputs are
/// still byte for byte A's.
pub(super) fn corrupt_remote_blob_is_detected_and_compiled_around<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let (units, a_outputs) = publish(&sb, &server, &client(&sb, &server, "a"));
    let (_, rlib) = a_outputs
        .iter()
        .find(|(name, _)| name.starts_with("libdemo_leaf-") && name.ends_with(".rlib"))
        .expect("A wrote demo_leaf's rlib");
    let blob = server.blob_name(blake3::hash(rlib).to_hex().as_str());
    let mut bytes = server.read(&blob);
    assert!(
        decompress(&bytes) == *rlib,
        "the remote blob named by the rlib's blake3 does not decompress to the rlib"
    );
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    server.write(&blob, &bytes);

    let b = client(&sb, &server, "b");
    let run = b.build();
    let leaf = unit(&units, "rustc", "demo_leaf");
    assert_remote(&run, leaf, "miss", "error");
    // demo_leaf's recompiled rlib is byte-identical, so its dependents' keys are unchanged.
    for unit in units.iter().filter(|u| *u != leaf) {
        assert_remote(&run, unit, "hit", "hit");
    }
    let stats = b.stats();
    assert!(
        remote_stat(&stats, "error_reasons.corrupt_blob") >= 1,
        "{stats:#}"
    );
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "machine B over a corrupt remote blob vs machine A",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
    // A writable client deletes a blob it found wrong, and its publish of the recompiled crate
    // uploads it again (src/remote/fetch.rs).
    assert!(
        decompress(&server.read(&blob)) == *rlib,
        "{}: the corrupt blob was not repaired by B's publish",
        S::NAME
    );
}

/// Two remote blobs replaced by valid zstd frames of the wrong size: demo_leaf's rlib one byte
/// longer, demo_lib's one byte shorter. B refuses both (`blob_size_mismatch`), compiles those two
/// crates, hits the others, and its outputs are A's; its publishes put the right frames back.
pub(super) fn remote_blobs_of_the_wrong_size_are_detected_and_compiled_around<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let (units, a_outputs) = publish(&sb, &server, &client(&sb, &server, "a"));
    let rlib_of = |name: &str| {
        a_outputs
            .iter()
            .find(|(file, _)| file.starts_with(&format!("lib{name}-")) && file.ends_with(".rlib"))
            .map(|(_, bytes)| bytes.clone())
            .unwrap_or_else(|| panic!("A wrote no {name} rlib"))
    };
    let (leaf, lib) = (rlib_of("demo_leaf"), rlib_of("demo_lib"));
    let blob_of = |bytes: &[u8]| server.blob_name(blake3::hash(bytes).to_hex().as_str());
    let longer = [&leaf[..], b"\0"].concat();
    let shorter = &lib[..lib.len() - 1];
    for (bytes, content) in [(&leaf, &longer[..]), (&lib, shorter)] {
        let frame = zstd::bulk::compress(content, 3).expect("compress");
        server.write(&blob_of(bytes), &frame);
    }

    let b = client(&sb, &server, "b");
    let run = b.build();
    let wrong = [
        unit(&units, "rustc", "demo_leaf"),
        unit(&units, "rustc", "demo_lib"),
    ];
    for unit in &units {
        if wrong.contains(&unit) {
            assert_remote(&run, unit, "miss", "error");
        } else {
            assert_remote(&run, unit, "hit", "hit");
        }
    }
    let stats = b.stats();
    assert_eq!(
        remote_stat(&stats, "error_reasons.blob_size_mismatch"),
        2,
        "{stats:#}"
    );
    assert_eq!(remote_stat(&stats, "errors"), 2, "{stats:#}");
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "machine B over frames of the wrong size vs machine A",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
    for bytes in [&leaf, &lib] {
        assert!(
            decompress(&server.read(&blob_of(bytes))) == *bytes,
            "{}: a blob of the wrong size was not repaired by B's publish",
            S::NAME
        );
    }
}

/// A remote blob evicted (deleted) under a published entry: B's lookup of that crate is a
/// plain remote miss, not a fault; B compiles it and its publish uploads the blob again.
pub(super) fn evicted_remote_blob_is_a_miss_and_published_again<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let (units, a_outputs) = publish(&sb, &server, &client(&sb, &server, "a"));
    let (_, rlib) = a_outputs
        .iter()
        .find(|(name, _)| name.starts_with("libdemo_lib-") && name.ends_with(".rlib"))
        .expect("A wrote demo_lib's rlib");
    let blob = server.blob_name(blake3::hash(rlib).to_hex().as_str());
    server.delete(&blob);

    let b = client(&sb, &server, "b");
    let run = b.build();
    let lib = unit(&units, "rustc", "demo_lib");
    assert_remote(&run, lib, "miss", "miss");
    for unit in units.iter().filter(|u| *u != lib) {
        assert_remote(&run, unit, "hit", "hit");
    }
    let stats = b.stats();
    assert_eq!(remote_stat(&stats, "misses"), 1, "{stats:#}");
    assert_eq!(remote_stat(&stats, "errors"), 0, "{stats:#}");
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "machine B with an evicted remote blob vs machine A",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
    assert!(
        decompress(&server.read(&blob)) == *rlib,
        "{}: B's publish did not upload the evicted blob again",
        S::NAME
    );
}

/// The server stops answering (SIGSTOP: connections are accepted, requests hang) before B
/// builds: a request times out, every later invocation skips the remote during the backoff,
/// and the build compiles everything, green and correct. The harness' command timeout fails
/// the test if the build hangs. Once the server answers again, a flush publishes what was
/// queued meanwhile, and a passing check ends the backoff.
pub(super) fn hung_server_costs_a_timeout_then_the_build_skips_it<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let (units, a_outputs) = publish(&sb, &server, &client(&sb, &server, "a"));

    server.pause();
    let b = client(&sb, &server, "b");
    let run = b.build();
    server.resume();

    for unit in &units {
        let e = event(&run, unit);
        assert!(
            e["outcome"] == "miss" && matches!(e["remote"].as_str(), Some("error" | "skipped")),
            "{unit:?} should be compiled after a remote error or skip\n{}",
            run.describe_events()
        );
    }
    let stats = b.stats();
    assert!(
        remote_stat(&stats, "error_reasons.timeout") >= 1,
        "{stats:#}"
    );
    assert!(remote_stat(&stats, "skipped") >= 1, "{stats:#}");
    assert_eq!(remote_stat(&stats, "hits"), 0, "{stats:#}");
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "machine B with a hung server vs machine A",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));

    // What B stored during the backoff was queued; a flush, which ignores the backoff,
    // publishes it once the server answers again.
    let queued = remote_stat(&stats, "pending_uploads");
    assert!(
        queued >= 1,
        "nothing was queued during the backoff:\n{stats:#}"
    );
    b.rcache_ok(&["remote", "flush"]);
    let flushed = b.stats();
    assert_eq!(remote_stat(&flushed, "pending_uploads"), 0, "{flushed:#}");
    assert_eq!(
        remote_stat(&flushed, "uploads"),
        remote_stat(&stats, "uploads") + queued,
        "{flushed:#}"
    );

    // The backoff still runs (60 s by default); a passing `rcache remote check` ends it, so the
    // next local miss (demo_leaf edited) asks the remote again instead of skipping it.
    b.rcache_ok(&["remote", "check"]);
    sb.edit("demo_leaf/src/lib.rs", "leaf-v1", "leaf-v2");
    let edited = b.build();
    let leaf = unit(&units, "rustc", "demo_leaf");
    assert_remote(&edited, leaf, "miss", "miss");
    assert_eq!(sb.run_bin(), expected_output(&[("leaf", "leaf-v2")]));
}

/// A server that is gone (killed: connections are refused): `rcache remote check` fails where
/// it passed before, and a build compiles everything, green and correct, with the remote
/// counted unreachable and then skipped.
pub(super) fn dead_server_fails_the_check_and_the_build_goes_on_without_it<S: RemoteServer>() {
    let mut server = S::start();
    let sb = Sandbox::new();
    let machine = client(&sb, &server, "a");
    machine.rcache_ok(&["remote", "check"]);
    server.stop();
    let (status, stdout, stderr) = run_command(
        &mut machine.rcache(&["remote", "check"]),
        "rcache remote check",
    );
    assert!(
        !status.success(),
        "{}: remote check passed with the server killed\nstdout:\n{stdout}\nstderr:\n{stderr}",
        S::NAME
    );

    let run = machine.build();
    let units = stored_units(&run);
    for unit in &units {
        let e = event(&run, unit);
        assert!(
            matches!(e["remote"].as_str(), Some("error" | "skipped")),
            "{unit:?} should be compiled after a remote error or skip\n{}",
            run.describe_events()
        );
    }
    let stats = machine.stats();
    assert!(
        remote_stat(&stats, "error_reasons.unreachable") >= 1,
        "{stats:#}"
    );
    assert!(remote_stat(&stats, "skipped") >= 1, "{stats:#}");
    assert_eq!(sb.run_bin(), expected_output(&[]));
}
