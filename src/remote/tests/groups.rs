//! Groups (store-format/README.md §9.7): what a publish files under the build's group, and what
//! the uploader appends, against the in-memory backend.

use super::{INVOCATION, MemoryBackend, machines, remote, store_outputs};
use crate::remote::layout::{decode_candidate, decode_group_part};
use crate::remote::publish::publish;
use crate::remote::{queue, uploader};
use crate::store::entry::OutputKind;
use crate::store::state::StateUpdate;

const GROUP: [u8; 32] = [0x61; 32];

#[test]
fn a_published_candidate_names_its_group_and_a_cc_compile_stays_out_of_it() {
    let m = machines();
    let memory = MemoryBackend::default();
    let rlib = store_outputs(&m.a, &[("libx.rlib", OutputKind::Rlib, b"rlib bytes")]);
    let published = publish(
        &remote(&memory, None),
        &m.a,
        &INVOCATION,
        &rlib,
        Some(&GROUP),
    )
    .unwrap();
    let record = published
        .record
        .expect("an rlib's entry goes into its group");
    assert_eq!(record.invocation_key, INVOCATION);
    let (candidate, group) = decode_candidate(&record.candidate).unwrap();
    assert_eq!((candidate.result_key, group), (rlib, Some(GROUP)));
    // The candidate the remote holds is the record's.
    let listed = memory.0.lock().unwrap().candidates[&INVOCATION].clone();
    assert_eq!(listed[0].1, record.candidate);

    let object = store_outputs(&m.b, &[("x.o", OutputKind::CcObject, b"object bytes")]);
    let published = publish(
        &remote(&memory, None),
        &m.b,
        &INVOCATION,
        &object,
        Some(&GROUP),
    )
    .unwrap();
    assert!(published.entry);
    assert_eq!(
        published.record, None,
        "a C/C++ compile is kept out of groups"
    );
}

#[test]
fn the_uploader_appends_what_it_published_to_each_entry_group() {
    let m = machines();
    let memory = MemoryBackend::default();
    let first = store_outputs(&m.a, &[("liba.rlib", OutputKind::Rlib, b"a")]);
    let second = store_outputs(&m.a, &[("libb.rlib", OutputKind::Rlib, b"b")]);
    queue::enqueue(&m.a, &INVOCATION, &first, &GROUP).unwrap();
    queue::enqueue(&m.a, &INVOCATION, &second, &GROUP).unwrap();
    let mut update = StateUpdate::default();
    let drained = uploader::drain(&remote(&memory, None), &m.a, &mut update).unwrap();
    assert_eq!(drained.published, 2);
    let parts = memory.0.lock().unwrap().groups[&GROUP].clone();
    assert_eq!(parts.len(), 1, "one part for the drain's two entries");
    let records = decode_group_part(&parts[0]).unwrap();
    let mut keys: Vec<_> = records
        .iter()
        .map(|record| decode_candidate(&record.candidate).unwrap().0.result_key)
        .collect();
    keys.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(keys, expected);
    // Read back through the remote, as the prefetcher does.
    assert_eq!(remote(&memory, None).group(&GROUP).unwrap(), records);
}
