//! Blobs on the remote are zstd frames (store-format/README.md §9.6): what a publish uploads
//! decompresses to the blob, what a fetch keeps is checked after decompression against the
//! entry's size and the blob's name, and an entry's blobs are fetched on several threads.

use std::time::Duration;

use super::{
    MemoryBackend, counter, fetch_into, machines, publish_unsigned, remote, store_compile,
    store_outputs,
};
use crate::remote::codec;
use crate::remote::fetch::RemoteOutcome;
use crate::remote::layout::Object;
use crate::store::Store;
use crate::store::entry::OutputKind;
use crate::store::state::StateUpdate;

/// An rlib-like blob that compresses well (repetitive symbol names), 300 KB.
fn compressible() -> Vec<u8> {
    (0..30_000u32)
        .flat_map(|i| format!("_ZN4demo{:05}E ", i % 1000).into_bytes())
        .collect()
}

/// The remote object of the blob whose content is `bytes`.
fn blob_key(bytes: &[u8]) -> String {
    Object::Blob(*blake3::hash(bytes).as_bytes()).redis_key()
}

/// True if `store` holds a blob file with this content's name.
fn has_blob(store: &Store, bytes: &[u8]) -> bool {
    store.layout.blob_path(&blake3::hash(bytes)).exists()
}

#[test]
fn published_blobs_are_frames_of_their_content_and_counted_as_sent() {
    let machines = machines();
    let memory = MemoryBackend::default();
    let rlib = compressible();
    let result_key = store_compile(&machines.a, &rlib);
    let published = publish_unsigned(&memory, &machines.a, &result_key);
    let frame = memory.0.lock().unwrap().objects[&blob_key(&rlib)].clone();
    assert_eq!(frame[..4], codec::FRAME_MAGIC);
    assert!(
        frame.len() * 4 < rlib.len(),
        "{} bytes uploaded as {}",
        rlib.len(),
        frame.len()
    );
    let mut decompressed = Vec::new();
    std::io::Read::read_to_end(&mut codec::decoder(&frame).unwrap(), &mut decompressed).unwrap();
    assert_eq!(decompressed, rlib);
    // bytes_up counts what went over the network: the frames and the entry, not the rlib.
    assert!(published.bytes_up < rlib.len() as u64 / 4, "{published:?}");

    let mut update = StateUpdate::default();
    let (fetched, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert_eq!(outcome, RemoteOutcome::Hit);
    assert!(fetched.is_some());
    // B keeps the blob uncompressed, under the name of its uncompressed content.
    let kept = machines.b.layout.blob_path(&blake3::hash(&rlib));
    assert_eq!(std::fs::read(kept).unwrap(), rlib);
    let down = counter(&update, "remote.bytes_down");
    assert!(
        down >= frame.len() as u64 && down < rlib.len() as u64 / 4,
        "bytes_down {down} for a frame of {}",
        frame.len()
    );
}

#[test]
fn frames_of_the_wrong_size_are_counted_kept_nowhere_and_deleted() {
    let rlib = compressible();
    let longer = [&rlib[..], b"!"].concat();
    // One byte more, one byte less, and much more (a frame that would decompress a lot further
    // than the entry says: read one byte past the size, then refused).
    let cases: [(&str, Vec<u8>); 3] = [
        ("one byte more", longer),
        ("one byte less", rlib[..rlib.len() - 1].to_vec()),
        (
            "a megabyte of zeros more",
            [&rlib[..], &[0; 1 << 20]].concat(),
        ),
    ];
    for (what, content) in cases {
        let machines = machines();
        let memory = MemoryBackend::default();
        let result_key = store_compile(&machines.a, &rlib);
        publish_unsigned(&memory, &machines.a, &result_key);
        let key = blob_key(&rlib);
        let frame = codec::compress(&content).unwrap();
        memory.0.lock().unwrap().objects.insert(key.clone(), frame);

        let mut readonly = remote(&memory, None);
        readonly.readonly = true;
        let mut update = StateUpdate::default();
        let (fetched, outcome) = fetch_into(&readonly, &machines.b, &mut update);
        assert!(fetched.is_none(), "{what}");
        assert_eq!(outcome, RemoteOutcome::Error, "{what}");
        assert_eq!(
            counter(&update, "remote.error_reasons.blob_size_mismatch"),
            1,
            "{what}"
        );
        assert_eq!(counter(&update, "remote.errors"), 1, "{what}");
        assert!(!has_blob(&machines.b, &rlib), "{what}: kept");
        assert!(!has_blob(&machines.b, &content), "{what}: kept");
        let tmp = std::fs::read_dir(machines.b.layout.tmp_dir())
            .unwrap()
            .count();
        assert_eq!(tmp, 0, "{what}: a temp file was left behind");
        let rtxn = machines.b.index.read_txn().unwrap();
        assert_eq!(machines.b.index.entry(&rtxn, &result_key).unwrap(), None);
        drop(rtxn);
        assert!(memory.0.lock().unwrap().objects.contains_key(&key));

        // A writable client deletes it, so that the next publish uploads the right frame.
        let (_, outcome) = fetch_into(
            &remote(&memory, None),
            &machines.b,
            &mut StateUpdate::default(),
        );
        assert_eq!(outcome, RemoteOutcome::Error, "{what}");
        assert!(!memory.0.lock().unwrap().objects.contains_key(&key));
        publish_unsigned(&memory, &machines.a, &result_key);
        let (fetched, _) = fetch_into(
            &remote(&memory, None),
            &machines.b,
            &mut StateUpdate::default(),
        );
        assert!(fetched.is_some(), "{what}: not repaired by a publish");
        assert_eq!(
            std::fs::read(machines.b.layout.blob_path(&blake3::hash(&rlib))).unwrap(),
            rlib
        );
    }
}

#[test]
fn damaged_frames_are_corrupt_blobs() {
    let rlib = compressible();
    let frame = codec::compress(&rlib).unwrap();
    let mut flipped = frame.clone();
    flipped[frame.len() / 2] ^= 0x40;
    // Another blob's frame: the right size even, but not the content the name says.
    let other = rlib.to_ascii_uppercase();
    let cases: [(&str, Vec<u8>); 4] = [
        ("a flipped byte", flipped),
        ("cut short", frame[..frame.len() - 8].to_vec()),
        ("garbage after the frame", [&frame[..], b"junk"].concat()),
        ("another blob's frame", codec::compress(&other).unwrap()),
    ];
    for (what, bad) in cases {
        let machines = machines();
        let memory = MemoryBackend::default();
        let result_key = store_compile(&machines.a, &rlib);
        publish_unsigned(&memory, &machines.a, &result_key);
        memory
            .0
            .lock()
            .unwrap()
            .objects
            .insert(blob_key(&rlib), bad);
        let mut update = StateUpdate::default();
        let (fetched, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
        assert!(fetched.is_none(), "{what}");
        assert_eq!(outcome, RemoteOutcome::Error, "{what}");
        assert_eq!(
            counter(&update, "remote.error_reasons.corrupt_blob"),
            1,
            "{what}"
        );
        assert!(!has_blob(&machines.b, &rlib), "{what}: kept");
        let rtxn = machines.b.index.read_txn().unwrap();
        assert_eq!(machines.b.index.entry(&rtxn, &result_key).unwrap(), None);
    }
}

/// An entry with this many distinct blobs.
const MANY: usize = 12;

/// `count` outputs of at least `size` bytes each, all different.
fn many_outputs(count: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let line = format!("blob {i} ");
            let content = line.repeat(size / line.len() + 1 + i).into_bytes();
            (format!("lib{i}.rlib"), content)
        })
        .collect()
}

fn store_many(store: &Store, files: &[(String, Vec<u8>)]) -> crate::hash::Key {
    let outputs: Vec<(&str, OutputKind, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), OutputKind::Rlib, bytes.as_slice()))
        .collect();
    store_outputs(store, &outputs)
}

#[test]
fn an_entrys_small_blobs_come_in_one_request() {
    let machines = machines();
    let memory = MemoryBackend::default();
    let files = many_outputs(MANY, 8 * 1024);
    let result_key = store_many(&machines.a, &files);
    publish_unsigned(&memory, &machines.a, &result_key);
    memory.0.lock().unwrap().gets = 0;

    let mut update = StateUpdate::default();
    let (fetched, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert_eq!(outcome, RemoteOutcome::Hit);
    assert_eq!(fetched.unwrap().entry.outputs.len(), MANY);
    for (name, bytes) in &files {
        let kept = machines.b.layout.blob_path(&blake3::hash(bytes));
        assert_eq!(std::fs::read(kept).unwrap(), *bytes, "{name}");
    }
    // The entry, then its blobs: two requests, one thread.
    let memory = memory.0.lock().unwrap();
    assert_eq!(memory.gets, 2);
    assert_eq!(memory.get_threads.len(), 1);
}

#[test]
fn an_entrys_large_blobs_are_fetched_on_several_threads_at_once() {
    let machines = machines();
    let memory = MemoryBackend::default();
    // Above the size fetched in one batch, so each gets a thread.
    let files = many_outputs(6, (1 << 20) + 1);
    let result_key = store_many(&machines.a, &files);
    publish_unsigned(&memory, &machines.a, &result_key);
    // Every get takes a while, so that gets on several threads overlap.
    memory.0.lock().unwrap().get_delay = Duration::from_millis(30);

    let mut update = StateUpdate::default();
    let (fetched, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert_eq!(outcome, RemoteOutcome::Hit);
    assert_eq!(fetched.unwrap().entry.outputs.len(), 6);
    for (name, bytes) in &files {
        let kept = machines.b.layout.blob_path(&blake3::hash(bytes));
        assert_eq!(std::fs::read(kept).unwrap(), *bytes, "{name}");
    }
    let memory = memory.0.lock().unwrap();
    assert!(
        memory.most_gets_in_flight >= 2 && memory.most_gets_in_flight <= 4,
        "at most {} gets ran at once; expected 2 to 4",
        memory.most_gets_in_flight
    );
    // The entry and candidates are read on the caller's thread, the blobs on 2 to 4 others.
    assert!(
        memory.get_threads.len() >= 3,
        "gets came from {} threads",
        memory.get_threads.len()
    );
    // Every blob's frame was counted, on whichever thread fetched it.
    let frames: u64 = files
        .iter()
        .map(|(_, bytes)| memory.objects[&blob_key(bytes)].len() as u64)
        .sum();
    assert!(counter(&update, "remote.bytes_down") > frames);
}

#[test]
fn one_evicted_blob_among_many_is_a_miss_and_nothing_is_committed() {
    let machines = machines();
    let memory = MemoryBackend::default();
    let files = many_outputs(MANY, 8 * 1024);
    let result_key = store_many(&machines.a, &files);
    publish_unsigned(&memory, &machines.a, &result_key);
    memory
        .0
        .lock()
        .unwrap()
        .objects
        .remove(&blob_key(&files[MANY / 2].1));
    let mut update = StateUpdate::default();
    let (fetched, outcome) = fetch_into(&remote(&memory, None), &machines.b, &mut update);
    assert!(fetched.is_none());
    assert_eq!(outcome, RemoteOutcome::Miss);
    assert_eq!(counter(&update, "remote.errors"), 0);
    let rtxn = machines.b.index.read_txn().unwrap();
    assert_eq!(machines.b.index.entry(&rtxn, &result_key).unwrap(), None);
}
