//! Remote format versions (store-format/README.md §8, §9): a client of this version reads and
//! writes only `rcache-v4` names, so what a client of the previous version published (under
//! `rcache-v3`, candidates without a group, no groups) is ignored: never read, never changed.
//! Raw blobs stand for the oldest version too (version 1 held blobs raw).

use std::collections::BTreeMap;

use super::{assert_remote, assert_unchanged, client, decompress, publish, remote_stat};
use crate::harness::{RemoteServer, Sandbox, assert_same_files, expected_output};

/// The remote format version of the names this rcache uses, and of the ones it must ignore.
const CURRENT: &str = "rcache-v4";
const PREVIOUS: &str = "rcache-v3";

/// Machine A publishes; its objects are then turned by hand into what an older client would
/// have left: every name moved from `rcache-v4` to `rcache-v3`, every blob holding the raw
/// output instead of a frame, the groups deleted (older clients wrote none). Machine B finds
/// nothing it can use: every unit is a plain remote miss (no error: nothing old was read),
/// compiled, byte for byte A's; B publishes under `rcache-v4`, and the old objects are left
/// exactly as they were.
pub(super) fn a_remote_written_by_format_version_1_is_ignored<S: RemoteServer>() {
    let server = S::start();
    let sb = Sandbox::new();
    let (units, a_outputs) = publish(&sb, &server, &client(&sb, &server, "a"));
    for name in server.names() {
        let kind = server
            .layout_kind(&name)
            .unwrap_or_else(|| panic!("{}: {name} is not in the remote layout", S::NAME));
        assert!(name.contains(CURRENT), "{name}");
        if kind == "group" {
            server.delete(&name);
            continue;
        }
        let old = name.replacen(CURRENT, PREVIOUS, 1);
        server.rename(&name, &old);
        if kind == "blob" {
            server.write(&old, &decompress(&server.read(&old)));
        }
    }
    let previous: BTreeMap<String, Vec<u8>> = server.contents();
    assert!(
        !previous.is_empty() && previous.keys().all(|name| name.contains(PREVIOUS)),
        "{}: the server should hold only version-1 names now: {:?}",
        S::NAME,
        previous.keys()
    );
    assert!(
        previous
            .keys()
            .all(|name| server.layout_kind(name).is_none()),
        "version-1 names must be outside this version's layout"
    );

    let b = client(&sb, &server, "b");
    let run = b.build();
    for unit in &units {
        assert_remote(&run, unit, "miss", "miss");
    }
    let stats = b.stats();
    assert_eq!(
        remote_stat(&stats, "misses"),
        units.len() as u64,
        "{stats:#}"
    );
    assert_eq!(remote_stat(&stats, "errors"), 0, "{stats:#}");
    assert_eq!(remote_stat(&stats, "bytes_down"), 0, "{stats:#}");
    assert_same_files(
        &a_outputs,
        &sb.deps_outputs(&sb.target),
        "machine B over a version-1 remote vs machine A",
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));

    // B published under this version's names, beside the old ones, which nobody touched.
    let names = server.names();
    for kind in ["blob", "entry", "candidate"] {
        let count = names
            .iter()
            .filter(|name| server.layout_kind(name) == Some(kind))
            .count();
        assert!(
            count >= units.len(),
            "{}: B published {count} {kind} objects for {} units: {names:?}",
            S::NAME,
            units.len()
        );
    }
    let now: BTreeMap<String, Vec<u8>> = server
        .contents()
        .into_iter()
        .filter(|(name, _)| name.contains(PREVIOUS))
        .collect();
    assert_unchanged(S::NAME, &previous, &now);
}
