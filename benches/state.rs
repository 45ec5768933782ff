//! The state transaction every wrapper invocation ends with (docs/design.md §3: unsynced, one per
//! invocation), as a hit makes it: its counters and the entry's last-use time, with and without
//! its record in the build log (`store::builds`, issue 16), in a state env whose log is full
//! (32 builds of 300 units). Also the first unit of a new build, which evicts the oldest build.
//!
//! `cargo bench --bench state`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rcache::hash::Key;
use rcache::store::Store;
use rcache::store::builds::{BuildUnit, MAX_BUILDS};
use rcache::store::state::StateUpdate;

/// Units per build in the full log.
const UNITS_PER_BUILD: u64 = 300;

fn unit(start_ms: u64, pid: u32) -> BuildUnit {
    BuildUnit {
        start_ms,
        duration_us: 1800,
        pid,
        kind: "rustc".into(),
        name: Some("serde_derive".into()),
        package: Some("serde_derive".into()),
        crate_types: vec!["proc-macro".into()],
        outcome: "hit".into(),
        reason: None,
        build_script_run: false,
        saved_ms: 3660,
        remote: None,
        path_bound: None,
        cwd: "/home/user/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde_derive-1.0.228"
            .into(),
    }
}

/// What a rustc hit adds to its transaction, without the build log.
fn hit_update(n: u64) -> StateUpdate {
    let mut update = StateUpdate::default();
    for name in ["requests", "hits", "time_saved_ms"] {
        update.count(name, 1);
    }
    for name in ["requests", "hits", "time_saved_ms"] {
        update.count(format!("languages.rust.{name}"), 1);
    }
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&n.to_le_bytes());
    update.last_use.push((key as Key, n));
    update
}

fn bench_state_apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    for build in 0..MAX_BUILDS as u64 {
        for at in 0..UNITS_PER_BUILD {
            let update = StateUpdate {
                build_units: vec![(build, unit(build * 1000 + at, at as u32))],
                ..StateUpdate::default()
            };
            store.state.apply(&update).unwrap();
        }
    }
    let current = MAX_BUILDS as u64 - 1;
    let mut n = 1_000_000u64;
    let mut group = c.benchmark_group("state_apply");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("hit_without_build_log", |b| {
        b.iter(|| {
            n += 1;
            store.state.apply(black_box(&hit_update(n))).unwrap();
        })
    });
    group.bench_function("hit_with_build_log", |b| {
        b.iter(|| {
            n += 1;
            let mut update = hit_update(n);
            update.build_units.push((current, unit(n, n as u32)));
            store.state.apply(black_box(&update)).unwrap();
        })
    });
    group.bench_function("first_unit_of_a_new_build", |b| {
        b.iter(|| {
            n += 1;
            let mut update = hit_update(n);
            update.build_units.push((n, unit(n, 1)));
            store.state.apply(black_box(&update)).unwrap();
        })
    });
    group.finish();
    assert_eq!(store.state.builds().unwrap().len(), MAX_BUILDS);
}

criterion_group!(benches, bench_state_apply);
criterion_main!(benches);
