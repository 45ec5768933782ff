//! The prefetcher (store-format/README.md §9.7) pulling a group from the in-memory backend: its
//! workers share the group's entries, large and small, and no entry or blob is fetched twice.

use std::process::Command;
use std::time::Duration;

use super::{MemoryBackend, machines, remote, store_outputs_as};
use crate::remote::group::ProcessIdentity;
use crate::remote::prefetch::{StoppedBy, run};
use crate::remote::{queue, uploader};
use crate::store::entry::OutputKind;
use crate::store::state::StateUpdate;

const GROUP: [u8; 32] = [0x62; 32];

/// Pseudo-random bytes that zstd cannot shrink, `seed` apart.
fn incompressible(size: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15 ^ seed;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn counter(counters: &[(String, u64)], name: &str) -> u64 {
    counters
        .iter()
        .find(|(counter, _)| counter == name)
        .map_or(0, |(_, value)| *value)
}

#[test]
fn large_and_small_entries_are_each_fetched_once() {
    let m = machines();
    let memory = MemoryBackend::default();
    // Ten small entries and three large ones, each its own unit.
    let mut sizes = vec![4096; 10];
    sizes.extend([9 << 20, 12 << 20, 10 << 20]);
    for (index, size) in sizes.iter().enumerate() {
        let invocation = [index as u8 + 1; 32];
        let bytes = incompressible(*size, index as u64);
        let name = format!("lib{index}.rlib");
        let result = store_outputs_as(&m.a, &invocation, &[(&name, OutputKind::Rlib, &bytes)]);
        queue::enqueue(&m.a, &invocation, &result, &GROUP).unwrap();
    }
    let drained = uploader::drain(&remote(&memory, None), &m.a, &mut StateUpdate::default());
    assert_eq!(drained.unwrap().published, sizes.len() as u64);
    let published_bytes: u64 = {
        let mut memory = memory.0.lock().unwrap();
        memory.get_delay = Duration::from_millis(5); // requests overlap across the threads
        memory
            .objects
            .values()
            .map(|object| object.len() as u64)
            .sum()
    };

    // The "build" the prefetcher watches: it ends once the pull is long done.
    let mut build = Command::new("sleep").arg("1").spawn().unwrap();
    let identity = ProcessIdentity::of(build.id()).expect("the build's identity");
    let stopped = run(&remote(&memory, None), &m.b, &GROUP, identity);
    build.wait().unwrap();

    assert_eq!(stopped, StoppedBy::Done);
    let counters = m.b.state.counters().unwrap();
    assert_eq!(
        counter(&counters, "remote.prefetch.fetched"),
        sizes.len() as u64
    );
    assert_eq!(
        counter(&counters, "remote.bytes_down"),
        published_bytes,
        "every entry and blob downloaded once: {counters:?}"
    );
    let memory = memory.0.lock().unwrap();
    assert!(
        memory.get_threads.len() >= 2,
        "the workers fetched on threads of their own"
    );
}
