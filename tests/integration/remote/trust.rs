//! Trust: a read-only client never writes; with `RCACHE_REMOTE_KEY`, entries that are unsigned,
//! signed with another key, altered, or moved under another result key are rejected (a remote
//! miss, counted), while the publisher's key hits; the secrets never show; and entries whose
//! output names climb out of the out dir restore nothing.

use super::{
    TIMEOUT, assert_local_hit, assert_remote, assert_unchanged, client, event, publish,
    remote_stat, unit,
};
use crate::harness::{
    RedisServer, RemoteServer, Sandbox, assert_same_files, expected_output, run_command,
};

/// A read-only client restores what the remote has and compiles what it does not (a data
/// file of demo_lib edited), and the remote is byte for byte what it was.
pub(super) fn read_only_client_hits_and_never_writes<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let (units, _) = publish(&sb, &server, &client(&sb, &server, "a"));
    sb.edit("demo_lib/data/message.txt", "data-v1", "data-v2");
    let before = server.contents();

    let b = client(&sb, &server, "b")
        .env("RCACHE_REMOTE_READONLY", "1")
        .env("RCACHE_REMOTE_UPLOAD", "background");
    let run = b.build();
    let changed = [
        unit(&units, "rustc", "demo_lib"),
        unit(&units, "rustc", "demo_bin"),
    ];
    for unit in &units {
        if changed.contains(&unit) {
            assert_remote(&run, unit, "miss", "miss");
        } else {
            assert_remote(&run, unit, "hit", "hit");
        }
    }
    assert_eq!(sb.run_bin(), expected_output(&[("data", "data-v2")]));
    // A flush waits for a background uploader, if a read-only client started one anyway; it
    // may refuse to run read-only, so its status proves nothing either way.
    let _ = run_command(&mut b.rcache(&["remote", "flush"]), "rcache remote flush");

    let stats = b.stats();
    assert_eq!(
        remote_stat(&stats, "hits"),
        units.len() as u64 - 2,
        "{stats:#}"
    );
    for stat in ["uploads", "bytes_up", "pending_uploads"] {
        assert_eq!(remote_stat(&stats, stat), 0, "read-only {stat}:\n{stats:#}");
    }
    assert_unchanged(S::NAME, &before, &server.contents());
}

/// Entries published without a key are rejected (`unsigned`) by a client that has one: no
/// remote hit, everything compiled, green and correct.
pub(super) fn client_with_a_key_rejects_unsigned_entries<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let (units, _) = publish(&sb, &server, &client(&sb, &server, "a"));

    let b = client(&sb, &server, "b").env("RCACHE_REMOTE_KEY", "k1");
    let run = b.build();
    for unit in &units {
        assert_remote(&run, unit, "miss", "rejected");
    }
    let stats = b.stats();
    assert_eq!(remote_stat(&stats, "hits"), 0, "{stats:#}");
    assert!(
        remote_stat(&stats, "rejected_reasons.unsigned") >= 1,
        "{stats:#}"
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// Entries signed with k1: a client with k2 rejects them (`bad_signature`); a client with k1
/// hits them, byte-identical to the publisher's outputs.
pub(super) fn entries_signed_with_another_key_are_rejected_and_the_same_key_hits<
    S: RemoteServer,
>() {
    let server = S::start();
    let sb = Sandbox::new();
    let (units, a_outputs) = publish(
        &sb,
        &server,
        &client(&sb, &server, "a").env("RCACHE_REMOTE_KEY", "k1"),
    );

    // Read-only: a k2 client that compiles would publish its own entries (signed with k2) under
    // the same result keys, and the k1 client below would then reject those.
    let wrong = client(&sb, &server, "wrong-key")
        .env("RCACHE_REMOTE_KEY", "k2")
        .env("RCACHE_REMOTE_READONLY", "1");
    let run = wrong.build();
    for unit in &units {
        assert_remote(&run, unit, "miss", "rejected");
    }
    let stats = wrong.stats();
    assert_eq!(remote_stat(&stats, "hits"), 0, "{stats:#}");
    assert!(
        remote_stat(&stats, "rejected_reasons.bad_signature") >= 1,
        "{stats:#}"
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));

    sb.remove_target();
    let same = client(&sb, &server, "same-key").env("RCACHE_REMOTE_KEY", "k1");
    let run = same.build();
    for unit in &units {
        assert_remote(&run, unit, "hit", "hit");
    }
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "a client with the publisher's key vs the publisher",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));

    // The signature covers the entry and binds it to its result key: one entry with its last
    // byte flipped, another replaced by a copy of a third (validly signed, for another key).
    let entries: Vec<String> = server
        .names()
        .into_iter()
        .filter(|name| server.layout_kind(name) == Some("entry"))
        .collect();
    assert_eq!(entries.len(), units.len(), "{entries:?}");
    let mut tampered = server.read(&entries[0]);
    *tampered.last_mut().unwrap() ^= 0x01;
    server.write(&entries[0], &tampered);
    server.write(&entries[1], &server.read(&entries[2]));
    sb.remove_target();
    let fresh = client(&sb, &server, "same-key-after-tampering").env("RCACHE_REMOTE_KEY", "k1");
    let run = fresh.build();
    let rejected = units
        .iter()
        .filter(|unit| event(&run, unit)["remote"] == "rejected")
        .count();
    assert_eq!(
        rejected,
        2,
        "the altered and the moved entry should be rejected\n{}",
        run.describe_events()
    );
    for unit in &units {
        let e = event(&run, unit);
        let ok = (e["remote"] == "rejected" && e["outcome"] == "miss")
            || (e["remote"] == "hit" && e["outcome"] == "hit");
        assert!(ok, "{unit:?}\n{}", run.describe_events());
    }
    let stats = fresh.stats();
    assert_eq!(
        remote_stat(&stats, "rejected_reasons.bad_signature"),
        2,
        "{stats:#}"
    );
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "a client with the publisher's key over tampered entries vs the publisher",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// A Redis that requires a password, given in the URL percent-encoded (it holds `@`, `:` and
/// `/`): rcache authenticates, and neither `rcache remote check`, `rcache config` nor the stats
/// show the password or the signing key. A wrong password fails the check.
#[test]
fn redis_password_in_the_url_authenticates_and_is_never_shown() {
    const PASSWORD: &str = "pa@ss:w/rd";
    const ENCODED: &str = "pa%40ss%3Aw%2Frd";
    const KEY: &str = "signing-secret-k1";
    let server = RedisServer::start_with_password(PASSWORD);
    let sb = Sandbox::new();
    let url = |password: &str| format!("redis://:{password}@127.0.0.1:{}/0", server.port());
    let machine = sb
        .machine("a")
        .env("RCACHE_REMOTE", url(ENCODED))
        .env("RCACHE_REMOTE_KEY", KEY)
        .env("RCACHE_REMOTE_TIMEOUT", TIMEOUT);

    let (status, check_out, check_err) = run_command(
        &mut machine.rcache(&["remote", "check"]),
        "rcache remote check",
    );
    assert!(
        status.success(),
        "remote check with the right password: {status}\n{check_out}\n{check_err}"
    );
    let config = machine.rcache_ok(&["config"]);
    assert!(
        config.contains(&format!("127.0.0.1:{}", server.port())),
        "rcache config does not show the remote:\n{config}"
    );
    let stats = machine.rcache_ok(&["stats", "--json"]);
    for (what, text) in [
        ("rcache remote check", format!("{check_out}{check_err}")),
        ("rcache config", config),
        ("rcache stats --json", stats),
    ] {
        for secret in [PASSWORD, ENCODED, KEY] {
            assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
        }
    }

    let wrong = sb
        .machine("b")
        .env("RCACHE_REMOTE", url("nope-7f3a"))
        .env("RCACHE_REMOTE_TIMEOUT", TIMEOUT);
    let (status, stdout, stderr) = run_command(
        &mut wrong.rcache(&["remote", "check"]),
        "rcache remote check",
    );
    assert!(
        !status.success(),
        "remote check passed with a wrong password\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !format!("{stdout}{stderr}").contains("nope-7f3a"),
        "a failed check shows the password\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// A poisoned remote, for a client without a key (which trusts the remote): every entry's
/// output names rewritten to climb out of the out dir. The restore refuses them as it refuses
/// a hostile local entry: every unit is compiled, nothing is written outside the out dirs, and
/// the outputs are A's. The fetch is the same for every backend; Redis is the quicker to start.
#[test]
fn hostile_output_names_in_remote_entries_write_nothing_outside_the_out_dir() {
    use rcache::remote::layout::{seal_entry, unseal_entry};

    let server = RedisServer::start();
    let sb = Sandbox::new();
    let (units, a_outputs) = publish(&sb, &server, &client(&sb, &server, "a"));
    let entries: Vec<String> = server
        .names()
        .into_iter()
        .filter(|name| server.layout_kind(name) == Some("entry"))
        .collect();
    assert_eq!(entries.len(), units.len(), "{entries:?}");
    for name in &entries {
        let hex = name.rsplit(':').next().unwrap();
        let key = *blake3::Hash::from_hex(hex).expect("hex").as_bytes();
        let mut entry = unseal_entry(&key, &server.read(name), None)
            .unwrap_or_else(|e| panic!("{name} does not unseal: {e:?}"));
        for output in &mut entry.outputs {
            output.name = format!("../../../escape-by-dotdot-{}", output.name);
        }
        server.write(name, &seal_entry(&key, &entry, None));
    }

    let b = client(&sb, &server, "b");
    let run = b.build();
    for unit in &units {
        let e = event(&run, unit);
        assert!(
            e["outcome"] != "hit",
            "{unit:?} was restored from a hostile entry\n{}",
            run.describe_events()
        );
    }
    let escaped: Vec<_> = walkdir::WalkDir::new(&sb.root)
        .into_iter()
        .map(|entry| entry.unwrap().into_path())
        .filter(|path| path.to_string_lossy().contains("escape-by-dotdot"))
        .collect();
    assert!(
        escaped.is_empty(),
        "hostile remote entries wrote {escaped:?}"
    );
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "machine B over hostile remote entries vs machine A",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
    let b_stats = b.stats();

    // B's compiles replaced the hostile entries, in its store and (published) on the remote.
    sb.remove_target();
    let again = b.build();
    for unit in &units {
        assert_local_hit(&again, unit);
    }
    sb.remove_target();
    let c = client(&sb, &server, "c").build();
    for unit in &units {
        assert_remote(&c, unit, "hit", "hit");
    }

    // The contract: a remote hit is an invocation whose outcome is `hit`, counted in the
    // totals' hits too. An entry the restore refuses is no hit.
    for unit in &units {
        let e = event(&run, unit);
        assert!(
            e["remote"] != "hit",
            "{unit:?}: outcome {} but remote \"hit\" for a hostile entry the restore refused\n{}\
             remote stats: {:#}",
            e["outcome"],
            run.describe_events(),
            b_stats["remote"]
        );
    }
}
