use super::*;

#[test]
fn a_garbage_state_env_is_recreated_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fs::create_dir_all(layout.state_dir()).unwrap();
    let data = layout.state_dir().join("data.mdb");
    fs::write(&data, vec![0x5a; 32 * 1024]).unwrap();
    assert!(State::open(&layout).is_err());
    assert!(
        !data.exists(),
        "the damaged env was removed for the next process"
    );
}

#[test]
fn counters_add_up_and_zero() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let state = State::open(&layout).unwrap();
    let mut update = StateUpdate::default();
    update.count("hits", 2);
    update.count("hits", 3);
    state.apply(&update).unwrap();
    assert_eq!(state.counters().unwrap(), vec![("hits".to_string(), 5)]);
    state.zero_counters().unwrap();
    assert!(state.counters().unwrap().is_empty());
}

#[test]
fn histories_keep_their_newest_records_and_gc_drops_old_units() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let state = State::open(&layout).unwrap();
    let record = |name: &str, ts_ms: u64| UnitRecord {
        ts_ms,
        build: 1,
        kind: "rustc".into(),
        name: name.into(),
        package: None,
        crate_types: vec![],
        outcome: "miss".into(),
        reason: None,
        facts: vec![],
        inputs: vec![],
        env_deps: vec![],
    };
    let mut update = StateUpdate::default();
    update.unit_records.push(([1; 32], record("old", 1_000)));
    update.unit_records.push(([2; 32], record("new", 2_000)));
    update.unit_records.push(([2; 32], record("new", 9_000)));
    state.apply(&update).unwrap();
    let histories = state.unit_histories().unwrap();
    assert_eq!(histories.len(), 2);
    let new = histories
        .iter()
        .find(|h| h.records[0].name == "new")
        .unwrap();
    assert_eq!(
        new.records.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
        [9_000, 2_000]
    );
    assert_eq!(state.trim_histories(5_000).unwrap(), 1);
    let left = state.unit_histories().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].records[0].name, "new");
}

#[test]
fn a_fetched_blob_is_hashed_again_after_a_reboot() {
    use crate::store::blob::{Durability, put_expected};

    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let content = vec![7u8; 64 * 1024];
    let hash = blake3::hash(&content);
    let mut update = StateUpdate::default();
    let expected = (&hash, content.len() as u64);
    put_expected(
        &store.layout,
        &mut &content[..],
        expected,
        Durability::Refetchable,
        &mut update,
    )
    .unwrap();
    assert_unsynced_blob_is_checked_after_a_reboot(&store, update, hash, content.len());
}

#[test]
fn an_output_stored_by_link_is_hashed_again_after_a_reboot() {
    use crate::store::linked_blob::{Linked, put_linked};

    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path().join("store")).unwrap();
    let content = vec![5u8; 64 * 1024];
    let output = dir.path().join("libdemo.rlib");
    fs::write(&output, &content).unwrap();
    let mut update = StateUpdate::default();
    let Linked::Stored { blob, .. } = put_linked(&store.layout, &output, &mut update).unwrap()
    else {
        panic!("not stored");
    };
    // The output's own name goes: only the blob's link to the inode is left to damage.
    fs::remove_file(&output).unwrap();
    assert_unsynced_blob_is_checked_after_a_reboot(&store, update, blob.hash, content.len());
}

/// A blob written without a sync (`update` holds what its store memoized): trusted within
/// its boot; after a reboot, one a crash damaged is hashed, refused and removed.
fn assert_unsynced_blob_is_checked_after_a_reboot(
    store: &crate::store::Store,
    update: StateUpdate,
    hash: blake3::Hash,
    len: usize,
) {
    use crate::store::blob::open_verified;
    use std::io::Write;

    let size = len as u64;
    assert!(
        update.file_hashes.is_empty(),
        "not memoized as a synced blob"
    );
    assert_eq!(update.unsynced_verified.len(), 1);
    store.state.apply(&update).unwrap();

    // What a crash can leave of a blob that was never synced: the file, its size and its
    // mtime, but not its content (blocks never written read as zeros).
    let path = store.layout.blob_path(&hash);
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(&vec![0u8; len]).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    // Within the boot that wrote it, the memo stands (only a crash loses written data).
    assert!(open_verified(store, &hash, size, &mut StateUpdate::default()).is_ok());

    // The first process after a reboot forgets every unsynced memo, and only those.
    let mut synced = StateUpdate::default();
    synced.file_hashes.push(([9; 32], [8; 32]));
    store.state.apply(&synced).unwrap();
    let mut wtxn = store.state.env.write_txn().unwrap();
    store
        .state
        .counters
        .put(&mut wtxn, BOOT_ID_KEY, b"an earlier boot")
        .unwrap();
    wtxn.commit().unwrap();
    store.state.check_after_reboot(&store.layout).unwrap();
    let rtxn = store.state.read_txn().unwrap();
    assert_eq!(
        store.state.file_hash(&rtxn, &[9; 32]).unwrap(),
        Some([8; 32])
    );
    drop(rtxn);

    // So the restore hashes it, refuses it and removes it: the compile runs instead.
    let err = open_verified(store, &hash, size, &mut StateUpdate::default()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(!path.exists(), "the damaged blob is removed");
}
