//! Background publishing: the compile's process queues its entry and leaves; one detached
//! uploader (`rcache remote upload`) publishes the queue. The cold build never waits for the
//! network, and CI jobs run `rcache remote flush` at their end, since runners kill orphans.
//!
//! The queue is a directory of empty files, `v2/remote-queue/<invocation key>-<result key>-<group>`
//! (hex; the group of the build that stored it, [`super::group`]): creating one is atomic, and
//! two stores of one entry in one build make one file. A name without the group (queued by an
//! older rcache) is published with none. The uploader holds
//! `v2/remote-upload.lock` while it runs. A store queues its file *before* trying that lock, and
//! the uploader lists the queue again after releasing it: so a file queued while an uploader is
//! finishing is either seen by it or finds the lock free and starts another.
//!
//! This file owns the queue directory and the uploader's lock test; [`super::uploader`] drains
//! the queue.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::Duration;

use super::count_error;
use crate::hash::{Key, hex};
use crate::store::state::StateUpdate;
use crate::store::{Store, io_failed};

/// One queued entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub invocation_key: Key,
    pub result_key: Key,
    /// The group it is published with.
    pub group: Option<Key>,
    pub path: PathBuf,
}

/// Queues an entry for publishing with `group`.
pub fn enqueue(
    store: &Store,
    invocation_key: &Key,
    result_key: &Key,
    group: &Key,
) -> io::Result<()> {
    let dir = store.layout.remote_queue_dir();
    let name = format!("{}-{}-{}", hex(invocation_key), hex(result_key), hex(group));
    let path = dir.join(name);
    let create = || fs_err::File::create(&path).map(drop);
    match create() {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&dir)
                .map_err(io_failed("create directory", &dir))?;
            create()
        }
        other => other,
    }
}

/// The queued entries, oldest first.
pub fn pending(store: &Store) -> io::Result<Vec<Queued>> {
    let dir = store.layout.remote_queue_dir();
    let entries = match fs_err::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut queued = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some((invocation_key, result_key, group)) = name.to_str().and_then(parse_name) else {
            let _ = fs::remove_file(entry.path()); // a stray file: not ours to keep
            continue;
        };
        let modified = entry.metadata().and_then(|meta| meta.modified()).ok();
        queued.push((
            modified,
            Queued {
                invocation_key,
                result_key,
                group,
                path: entry.path(),
            },
        ));
    }
    queued.sort_by_key(|(modified, _)| *modified);
    Ok(queued.into_iter().map(|(_, item)| item).collect())
}

fn parse_name(name: &str) -> Option<(Key, Key, Option<Key>)> {
    let parse = |text: &str| -> Option<Key> {
        blake3::Hash::from_hex(text)
            .ok()
            .map(|hash| *hash.as_bytes())
    };
    let mut parts = name.split('-');
    let invocation = parse(parts.next()?)?;
    let result = parse(parts.next()?)?;
    let group = match parts.next() {
        Some(text) => Some(parse(text)?),
        None => None,
    };
    parts
        .next()
        .is_none()
        .then_some((invocation, result, group))
}

/// Whether an uploader must start: true unless one is running (it holds the upload lock). The
/// caller (the wrapper) then starts `rcache remote upload` detached; the remote knows nothing of
/// the command line. A fault is counted, and no uploader is asked for.
pub fn uploader_needed(store: &Store, update: &mut StateUpdate) -> bool {
    // Taken and released at once: a running uploader holds it and will list again.
    match store.upload_lock(Duration::ZERO) {
        Ok(lock) => lock.is_some(),
        Err(err) => {
            tracing::warn!("could not start the remote uploader: {err}");
            count_error(update, err.reason());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_queued_twice_is_listed_once_and_stray_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        assert!(pending(&store).unwrap().is_empty());
        enqueue(&store, &[1; 32], &[2; 32], &[9; 32]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        enqueue(&store, &[3; 32], &[4; 32], &[9; 32]).unwrap();
        enqueue(&store, &[1; 32], &[2; 32], &[9; 32]).unwrap();
        // Queued by an older rcache: no group.
        let old = format!("{}-{}", hex(&[5; 32]), hex(&[6; 32]));
        fs::write(store.layout.remote_queue_dir().join(old), b"").unwrap();
        fs::write(store.layout.remote_queue_dir().join("stray"), b"").unwrap();
        let queued = pending(&store).unwrap();
        let keys: Vec<(Key, Key, Option<Key>)> = queued
            .iter()
            .map(|item| (item.invocation_key, item.result_key, item.group))
            .collect();
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&([1; 32], [2; 32], Some([9; 32]))));
        assert!(keys.contains(&([3; 32], [4; 32], Some([9; 32]))));
        assert!(keys.contains(&([5; 32], [6; 32], None)));
        assert!(!store.layout.remote_queue_dir().join("stray").exists());
    }

    #[test]
    fn a_failed_enqueue_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let queue_dir = store.layout.remote_queue_dir();
        fs::write(&queue_dir, b"in the way").unwrap();
        let err = enqueue(&store, &[1; 32], &[2; 32], &[3; 32]).unwrap_err();
        assert!(
            err.to_string().contains(&queue_dir.display().to_string()),
            "{err}"
        );
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
        let err = pending(&store).unwrap_err();
        assert!(
            err.to_string().contains(&queue_dir.display().to_string()),
            "{err}"
        );
    }
}
