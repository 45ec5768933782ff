use super::*;

fn session_with(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let session = dir.join("s-abc-def-ghi");
    fs::create_dir_all(&session).unwrap();
    for (name, content) in files {
        fs::write(session.join(name), content).unwrap();
    }
    session
}

fn demo() -> Crate {
    Crate::new(Path::new("/t/debug/incremental"), "demo")
}

fn record() -> SessionRecord {
    SessionRecord {
        incremental_dir: "/t/debug/incremental".into(),
        base_dirs: b"/w".to_vec(),
        crate_dir: "demo-abc".into(),
        session: "s-abc-def-ghi".into(),
        outputs: vec![[1; 32]],
        boot_id: boot_id().unwrap(),
        files: Vec::new(),
    }
}

#[test]
fn a_kept_session_is_found_whole_and_a_changed_file_makes_it_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("store"));
    let source = session_with(dir.path(), &[("dep-graph.bin", b"graph"), ("a.o", b"obj")]);
    keep(&layout, &demo(), &[7; 32], record(), &source).unwrap();
    let kept = find(&layout, &demo(), &[7; 32]).unwrap();
    assert_eq!(kept.record.crate_dir, "demo-abc");
    let names: Vec<&str> = kept.record.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a.o", "dep-graph.bin"]);
    assert!(kept.intact());
    assert!(find(&layout, &demo(), &[8; 32]).is_none());

    // rustc deletes its session: the kept links keep the bytes.
    fs::remove_dir_all(&source).unwrap();
    assert!(find(&layout, &demo(), &[7; 32]).unwrap().intact());
    assert_eq!(fs::read(kept.files_dir.join("a.o")).unwrap(), b"obj");

    // Written in place (what rustc never does): no longer the file kept.
    fs::write(kept.files_dir.join("a.o"), b"OBJ").unwrap();
    assert!(!find(&layout, &demo(), &[7; 32]).unwrap().intact());
}

#[test]
fn a_session_of_another_boot_or_with_a_file_gone_is_not_intact() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("store"));
    let source = session_with(dir.path(), &[("a.o", b"obj"), ("b.o", b"obj2")]);
    let mut other_boot = record();
    other_boot.boot_id = b"an earlier boot".to_vec();
    keep(&layout, &demo(), &[1; 32], other_boot, &source).unwrap();
    assert!(!find(&layout, &demo(), &[1; 32]).unwrap().intact());

    keep(&layout, &demo(), &[2; 32], record(), &source).unwrap();
    let kept = find(&layout, &demo(), &[2; 32]).unwrap();
    fs::remove_file(kept.files_dir.join("b.o")).unwrap();
    assert!(!kept.intact());
}

#[test]
fn a_session_holding_a_directory_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("store"));
    let source = session_with(dir.path(), &[("a.o", b"obj")]);
    fs::create_dir(source.join("nested")).unwrap();
    assert!(keep(&layout, &demo(), &[3; 32], record(), &source).is_err());
    assert!(find(&layout, &demo(), &[3; 32]).is_none());
    // Nothing half-kept is left behind.
    let crate_dir = session_dir(&layout, &demo(), &[3; 32]);
    assert_eq!(
        fs::read_dir(crate_dir.parent().unwrap()).unwrap().count(),
        0
    );
}

#[test]
fn trim_removes_the_least_recently_kept_and_sweep_those_without_entry() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("store"));
    let source = session_with(dir.path(), &[("a.o", &[0; 100])]);
    for key in 1..=4u8 {
        keep(&layout, &demo(), &[key; 32], record(), &source).unwrap();
        // Distinct kept times, oldest first.
        let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(key as u64);
        let record_file = fs::File::options()
            .write(true)
            .open(session_dir(&layout, &demo(), &[key; 32]).join("record"))
            .unwrap();
        record_file.set_modified(when).unwrap();
    }
    trim(&layout, 3, u64::MAX).unwrap();
    assert!(find(&layout, &demo(), &[1; 32]).is_none());
    trim(&layout, 10, 200).unwrap();
    assert!(find(&layout, &demo(), &[2; 32]).is_none());
    assert!(
        find(&layout, &demo(), &[3; 32]).is_some() && find(&layout, &demo(), &[4; 32]).is_some()
    );

    let removed = sweep(
        &layout,
        &mut |key| key[0] == 4,
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(removed, 1);
    assert!(
        find(&layout, &demo(), &[3; 32]).is_none() && find(&layout, &demo(), &[4; 32]).is_some()
    );
}

#[test]
fn a_crate_keeps_its_latest_sessions_and_leaves_other_crates_alone() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("store"));
    let source = session_with(dir.path(), &[("a.o", b"obj")]);
    let other = Crate::new(Path::new("/t/debug/incremental"), "other");
    keep(&layout, &other, &[100; 32], record(), &source).unwrap();
    for key in 1..=(MAX_SESSIONS_PER_CRATE as u8 + 2) {
        keep(&layout, &demo(), &[key; 32], record(), &source).unwrap();
        // Distinct kept times, in keeping order (a fast filesystem may give two the same).
        let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(key as u64);
        fs::File::options()
            .write(true)
            .open(session_dir(&layout, &demo(), &[key; 32]).join("record"))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    let kept: Vec<u8> = (1..=(MAX_SESSIONS_PER_CRATE as u8 + 2))
        .filter(|key| find(&layout, &demo(), &[*key; 32]).is_some())
        .collect();
    // The last keep trims after its own rename: the newest MAX_SESSIONS_PER_CRATE stay.
    assert_eq!(kept.len(), MAX_SESSIONS_PER_CRATE, "{kept:?}");
    assert!(!kept.contains(&1), "{kept:?}");
    assert!(kept.contains(&(MAX_SESSIONS_PER_CRATE as u8 + 2)));
    assert!(find(&layout, &other, &[100; 32]).is_some());
}

#[test]
fn a_stray_file_among_the_sessions_is_removed_and_breaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("store"));
    let source = session_with(dir.path(), &[("a.o", b"obj")]);
    keep(&layout, &demo(), &[1; 32], record(), &source).unwrap();
    fs::write(layout.sessions_dir().join("stray"), b"x").unwrap();
    fs::write(
        session_dir(&layout, &demo(), &[1; 32])
            .parent()
            .unwrap()
            .join("stray"),
        b"x",
    )
    .unwrap();
    keep(&layout, &demo(), &[2; 32], record(), &source).unwrap();
    sweep(&layout, &mut |_| true, std::time::SystemTime::now()).unwrap();
    assert!(!layout.sessions_dir().join("stray").exists());
    assert!(find(&layout, &demo(), &[1; 32]).is_some());
    assert!(find(&layout, &demo(), &[2; 32]).is_some());
}
