//! Tests of writing, verifying and opening blobs.

use super::*;

fn layout() -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fs::create_dir_all(layout.tmp_dir()).unwrap();
    fs::create_dir_all(layout.blobs_dir()).unwrap();
    (dir, layout)
}

#[test]
fn identical_content_is_stored_once() {
    let (dir, layout) = layout();
    let source = dir.path().join("src");
    fs::write(&source, b"hello").unwrap();
    let first = put_file(
        &layout,
        &mut File::open(&source).unwrap(),
        &mut StateUpdate::default(),
    )
    .unwrap();
    let second = put_file(
        &layout,
        &mut File::open(&source).unwrap(),
        &mut StateUpdate::default(),
    )
    .unwrap();
    assert_eq!(first.hash, blake3::hash(b"hello"));
    assert_eq!(first.hash, second.hash);
    assert_eq!(fs::read(layout.blob_path(&first.hash)).unwrap(), b"hello");
    assert_eq!(fs::read_dir(layout.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn truncated_blob_is_refused() {
    let (dir, layout) = layout();
    let source = dir.path().join("src");
    fs::write(&source, b"hello world").unwrap();
    let blob = put_file(
        &layout,
        &mut File::open(&source).unwrap(),
        &mut StateUpdate::default(),
    )
    .unwrap();
    assert!(open_checked(&layout, &blob.hash, blob.size).is_ok());
    let path = layout.blob_path(&blob.hash);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(3)
        .unwrap();
    assert!(open_checked(&layout, &blob.hash, blob.size).is_err());
}

#[test]
fn a_blob_changed_on_disk_is_refused_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let mut written = StateUpdate::default();
    let blob = put_file(&store.layout, &mut &b"the real content"[..], &mut written).unwrap();
    assert_eq!(
        written.file_hashes.len(),
        1,
        "a new blob is memoized as verified"
    );
    store.state.apply(&written).unwrap();

    let mut update = StateUpdate::default();
    assert!(open_verified(&store, &blob.hash, blob.size, &mut update).is_ok());
    assert!(
        update.file_hashes.is_empty(),
        "memoized: nothing re-verified"
    );

    // Same size, other bytes: only the content check can tell.
    let path = store.layout.blob_path(&blob.hash);
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&path, b"the fake content").unwrap();
    let err = open_verified(&store, &blob.hash, blob.size, &mut update).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        !path.exists(),
        "the corrupt blob is removed so that a store rewrites it"
    );
}

#[test]
fn an_unmemoized_blob_is_hashed_once_then_memoized() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let blob = put_file(
        &store.layout,
        &mut &b"content"[..],
        &mut StateUpdate::default(),
    )
    .unwrap();
    let mut update = StateUpdate::default();
    let mut opened = open_verified(&store, &blob.hash, blob.size, &mut update).unwrap();
    assert_eq!(
        update.unsynced_verified.len(),
        1,
        "verified by hashing, then memoized until the next reboot"
    );
    // The file handed back is the one hashed, read from its start, whatever gc does to its path.
    fs::remove_file(store.layout.blob_path(&blob.hash)).unwrap();
    let mut content = Vec::new();
    opened.read_to_end(&mut content).unwrap();
    assert_eq!(content, b"content");
}

/// The text of an error and, through the store's error type, its stats reason.
fn described(err: io::Error) -> (String, io::ErrorKind, &'static str) {
    let kind = err.kind();
    let err = StoreError::File(err);
    (err.to_string(), kind, err.reason())
}

#[test]
fn a_failed_rename_into_blobs_names_the_blob_not_tmp() {
    let (_dir, layout) = layout();
    let hash = blake3::hash(b"content");
    let destination = layout.blob_path(&hash);
    // The fan-out directory is a file: the temp file is written, the rename fails.
    fs::write(destination.parent().unwrap(), b"in the way").unwrap();
    let err = put_file(&layout, &mut &b"content"[..], &mut StateUpdate::default()).unwrap_err();
    let (text, kind, reason) = described(err);
    assert!(text.contains("failed to rename"), "{text}");
    assert!(text.contains(&destination.display().to_string()), "{text}");
    assert!(
        text.contains(&layout.tmp_dir().join("blob-").display().to_string()),
        "{text}"
    );
    assert_eq!(kind, io::ErrorKind::NotADirectory);
    assert_eq!(reason, "io_error");
    assert_eq!(
        fs::read_dir(layout.tmp_dir()).unwrap().count(),
        0,
        "temp file removed"
    );
}

#[test]
fn a_failed_temp_file_or_read_names_the_path() {
    let (_dir, layout) = layout();
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        }
    }
    let err = put_file(&layout, &mut Failing, &mut StateUpdate::default()).unwrap_err();
    let (text, _, reason) = described(err);
    assert!(
        text.contains("failed to read the output being stored into"),
        "{text}"
    );
    assert!(
        text.contains(&layout.tmp_dir().display().to_string()),
        "{text}"
    );
    assert_eq!(
        reason, "read_only_store",
        "the kind, and so the reason, is kept"
    );

    fs::remove_dir(layout.tmp_dir()).unwrap();
    let hash = blake3::hash(b"x");
    let err = put_expected(
        &layout,
        &mut &b"x"[..],
        (&hash, 1),
        Durability::Refetchable,
        &mut StateUpdate::default(),
    );
    let Err(NotAsExpected::Store(err)) = err else {
        panic!("a missing tmp dir is a store error: {err:?}")
    };
    let (text, kind, reason) = described(err);
    assert!(text.contains("failed to create a temp file in"), "{text}");
    assert!(
        text.contains(&layout.tmp_dir().display().to_string()),
        "{text}"
    );
    assert_eq!((kind, reason), (io::ErrorKind::NotFound, "missing_file"));
}

#[test]
fn an_expected_blob_is_kept_only_with_its_size_and_hash() {
    let (_dir, layout) = layout();
    let content = b"the expected content";
    let hash = blake3::hash(content);
    let size = content.len() as u64;
    let temps = || fs::read_dir(layout.tmp_dir()).unwrap().count();
    let put = |source: &mut dyn Read, update: &mut StateUpdate| {
        put_expected(
            &layout,
            &mut &mut *source,
            (&hash, size),
            Durability::Refetchable,
            update,
        )
    };

    // One byte more, one byte less, other bytes of the same size: nothing is kept.
    let longer = [&content[..], b"!"].concat();
    assert!(matches!(
        put(&mut &longer[..], &mut StateUpdate::default()),
        Err(NotAsExpected::TooLong { expected }) if expected == size
    ));
    assert!(matches!(
        put(&mut &content[1..], &mut StateUpdate::default()),
        Err(NotAsExpected::TooShort { expected, got }) if expected == size && got == size - 1
    ));
    let other = content.to_ascii_uppercase();
    assert!(matches!(
        put(&mut &other[..], &mut StateUpdate::default()),
        Err(NotAsExpected::WrongHash)
    ));
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::InvalidData))
        }
    }
    assert!(matches!(
        put(&mut Failing, &mut StateUpdate::default()),
        Err(NotAsExpected::Source(err)) if err.kind() == io::ErrorKind::InvalidData
    ));
    assert!(!layout.blob_path(&hash).exists());
    assert_eq!(temps(), 0, "refused temp files are removed");

    let mut update = StateUpdate::default();
    let kept = put(&mut &content[..], &mut update).unwrap();
    assert_eq!((kept.hash, kept.size), (hash, size));
    assert_eq!(fs::read(layout.blob_path(&hash)).unwrap(), content);
    assert_eq!(
        update.unsynced_verified.len(),
        1,
        "memoized as verified, unsynced"
    );
    assert_eq!(temps(), 0);
}

#[test]
fn an_endless_source_stops_one_byte_past_the_expected_size() {
    let (_dir, layout) = layout();
    /// Counts what was read from an endless source of zeros.
    struct Endless(u64);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
    }
    let mut source = Endless(0);
    let hash = blake3::hash(&[0; 1000]);
    let err = put_expected(
        &layout,
        &mut source,
        (&hash, 1000),
        Durability::Refetchable,
        &mut StateUpdate::default(),
    );
    assert!(matches!(
        err,
        Err(NotAsExpected::TooLong { expected: 1000 })
    ));
    assert_eq!(source.0, 1001, "read exactly one byte past the size");
    assert_eq!(fs::read_dir(layout.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn a_missing_blob_names_its_path() {
    let (_dir, layout) = layout();
    let hash = blake3::hash(b"never stored");
    let err = open_checked(&layout, &hash, 12).unwrap_err();
    let (text, kind, reason) = described(err);
    assert!(
        text.contains(&layout.blob_path(&hash).display().to_string()),
        "{text}"
    );
    assert_eq!((kind, reason), (io::ErrorKind::NotFound, "missing_file"));
}
