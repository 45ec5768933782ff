//! A build that finds the remote cold stops asking it (src/remote/cold.rs,
//! store-format/README.md §9.4): after `RCACHE_REMOTE_COLD_AFTER` lookups of one build all
//! missed, its later units compile without a lookup and are still published; a hit keeps the
//! build asking.

use super::{client, publish, remote_stat, stored_units};
use crate::harness::{RedisServer, RemoteServer, Sandbox, expected_output};

/// An empty remote and a threshold of 2: the build's first lookups miss, the later units are
/// not asked for (at most cargo's two job slots' worth of lookups were already in flight), every
/// unit is compiled and published, and the program is right.
#[test]
fn a_build_whose_first_lookups_all_miss_stops_asking() {
    let server = RedisServer::start();
    let sb = Sandbox::new();
    let b = client(&sb, &server, "b").env("RCACHE_REMOTE_COLD_AFTER", "2");
    let run = b.build();
    let units = stored_units(&run);
    let asked: Vec<&str> = run
        .events
        .iter()
        .filter(|e| e["stored"] == true)
        .map(|e| e["remote"].as_str().unwrap_or("(none)"))
        .collect();
    assert!(
        asked.iter().all(|r| *r == "miss" || *r == "not_asked"),
        "every unit should be a remote miss or not asked: {asked:?}\n{}",
        run.describe_events()
    );
    let stats = b.stats();
    let (misses, not_asked) = (
        remote_stat(&stats, "misses"),
        remote_stat(&stats, "not_asked"),
    );
    assert_eq!(misses + not_asked, units.len() as u64, "{stats:#}");
    assert!(misses >= 2, "{stats:#}");
    assert!(
        not_asked >= 2,
        "the build went on asking after its first misses:\n{stats:#}"
    );
    assert_eq!(remote_stat(&stats, "errors"), 0, "{stats:#}");
    assert_eq!(
        remote_stat(&stats, "uploads"),
        units.len() as u64,
        "what was not asked for is still published:\n{stats:#}"
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
}

/// A warm remote with a threshold of 1: the first lookup hits, so every later one is asked too
/// and hits.
#[test]
fn a_hit_keeps_the_build_asking() {
    let server = RedisServer::start();
    let sb = Sandbox::new();
    let (units, _) = publish(&sb, &server, &client(&sb, &server, "a"));
    let b = client(&sb, &server, "b").env("RCACHE_REMOTE_COLD_AFTER", "1");
    b.build();
    let stats = b.stats();
    assert_eq!(remote_stat(&stats, "hits"), units.len() as u64, "{stats:#}");
    assert_eq!(remote_stat(&stats, "not_asked"), 0, "{stats:#}");
    assert_eq!(sb.run_bin(), expected_output(&[]));
}
