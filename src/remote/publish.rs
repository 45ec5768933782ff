//! Publishing a locally stored entry: the blobs the remote lacks (each compressed into one zstd
//! frame, [`super::codec`]), then the entry (signed when a secret is set), then its candidate,
//! naming the group of the build that stored it; the caller then adds the candidate to that
//! group ([`add_to_group`]). In that order, a reader that finds the candidate (or the group's
//! record of it) finds the rest, unless the remote evicted it meanwhile (a miss).
//!
//! [`after_store`] is the wrapper's hook after every successful store: with
//! `RCACHE_REMOTE_UPLOAD=sync` it publishes before the compile's process exits; by default it
//! queues the entry for the detached uploader ([`super::queue`]), and says whether the caller
//! must start one.

use super::backend::RemoteError;
use super::layout::{GroupRecord, Object, seal_entry};
use super::{Remote, backoff, codec, count, count_error, queue};
use crate::config::{Config, UploadMode};
use crate::hash::Key;
use crate::store::entry::{Candidate, Entry, OutputRecord};
use crate::store::state::StateUpdate;
use crate::store::{Store, StoreError};

/// What publishing one entry did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Published {
    /// False when the entry is no longer in the local store (gc removed it): nothing to do.
    pub entry: bool,
    pub blobs_uploaded: u64,
    pub bytes_up: u64,
    /// The group's record of the published candidate (none when nothing was published).
    pub record: Option<GroupRecord>,
}

/// A publish that could not complete.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Blob {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl PublishError {
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Remote(err) => err.reason(),
            PublishError::Store(err) => err.reason(),
            PublishError::Blob { source, .. } => crate::store::io_reason(source),
        }
    }
}

/// The wrapper's hook after storing `result_key` under `invocation_key`: publishes it, or
/// queues it for the uploader. Returns true when the caller must start the detached uploader
/// (`rcache remote upload`). Never fails; faults are counted in `update`.
#[must_use = "true asks the caller to start the uploader"]
pub fn after_store(
    config: &Config,
    store: &Store,
    invocation_key: &Key,
    result_key: &Key,
    update: &mut StateUpdate,
) -> bool {
    let settings = &config.remote;
    if settings.location.value.is_none() || settings.readonly.value {
        return false;
    }
    match settings.upload.value {
        UploadMode::Background => {
            let group = super::group::this_build();
            if let Err(err) = queue::enqueue(store, invocation_key, result_key, &group) {
                tracing::warn!("could not queue an upload: {err}");
                count_error(update, crate::store::io_reason(&err));
                return false;
            }
            !backoff::active(store) && queue::uploader_needed(store, update)
        }
        UploadMode::Sync => {
            if backoff::active(store) {
                // Published later by `rcache remote flush`, or not at all.
                let group = super::group::this_build();
                let _ = queue::enqueue(store, invocation_key, result_key, &group);
                count(update, "skipped", 1);
                return false;
            }
            let remote = match Remote::from_config(config) {
                Ok(Some(remote)) => remote,
                Ok(None) => return false,
                Err(err) => {
                    count_error(update, err.reason());
                    return false;
                }
            };
            // Counted (and a failure backed off) inside; the build goes on either way.
            let group = super::group::this_build();
            let published = publish_counted(
                &remote,
                store,
                invocation_key,
                result_key,
                Some(&group),
                update,
            );
            if let Ok(Published {
                record: Some(record),
                ..
            }) = published
            {
                add_to_group(&remote, store, &group, &[record], update);
            }
            false
        }
    }
}

/// Appends published candidates to their group; a remote failure is counted and starts the
/// backoff (the entries themselves are published: only a prefetcher misses them).
pub fn add_to_group(
    remote: &Remote,
    store: &Store,
    group: &Key,
    records: &[GroupRecord],
    update: &mut StateUpdate,
) {
    if let Err(err) = remote.add_group_part(group, records) {
        tracing::warn!("adding to the build's group on the remote failed ({err})");
        count_error(update, err.reason());
        backoff::start(store, remote.backoff);
        backoff::warn_once(store, &err, remote.backoff);
    }
}

/// Publishes one entry and counts what happened; a remote failure starts the backoff.
pub fn publish_counted(
    remote: &Remote,
    store: &Store,
    invocation_key: &Key,
    result_key: &Key,
    group: Option<&Key>,
    update: &mut StateUpdate,
) -> Result<Published, PublishError> {
    let published = publish(remote, store, invocation_key, result_key, group);
    match &published {
        Ok(done) => {
            if done.entry {
                count(update, "uploads", 1);
            }
            count(update, "bytes_up", done.bytes_up);
        }
        Err(err) => {
            tracing::warn!("publishing to the remote failed ({err})");
            count_error(update, err.reason());
            if let PublishError::Remote(err) = err {
                backoff::start(store, remote.backoff);
                backoff::warn_once(store, err, remote.backoff);
            }
        }
    }
    published
}

/// Publishes the locally stored entry `result_key` with its candidate under `invocation_key`,
/// the candidate naming `group`.
pub fn publish(
    remote: &Remote,
    store: &Store,
    invocation_key: &Key,
    result_key: &Key,
    group: Option<&Key>,
) -> Result<Published, PublishError> {
    let Some((entry, candidate)) = local_entry(store, invocation_key, result_key)? else {
        return Ok(Published::default());
    };
    let backend = remote.backend();
    let blobs = entry_blobs(&entry);
    let objects: Vec<Object> = blobs.iter().map(|blob| Object::Blob(*blob)).collect();
    let present = backend.exists_many(&objects)?;
    let mut uploads = Vec::new();
    let mut published = Published {
        entry: true,
        ..Published::default()
    };
    for (blob, present) in blobs.iter().zip(present) {
        if present {
            continue;
        }
        let path = store.layout.blob_path(&blake3::Hash::from_bytes(*blob));
        // Checked against its name before it leaves: a blob stored without a sync (an output
        // stored by link, a fetched blob) may have been damaged by a crash since.
        let frame = read_checked(&path, blob)
            .and_then(|bytes| codec::compress(&bytes))
            .map_err(|source| PublishError::Blob {
                path: path.clone(),
                source,
            })?;
        published.blobs_uploaded += 1;
        published.bytes_up += frame.len() as u64;
        uploads.push((Object::Blob(*blob), frame));
    }
    backend.put_many(uploads)?;
    let sealed = seal_entry(result_key, &entry, remote.secret());
    published.bytes_up += sealed.len() as u64;
    backend.put_many(vec![(Object::Entry(*result_key), sealed)])?;
    let envelope = remote.add_candidate(invocation_key, &candidate, group)?;
    if !is_cc_compile(&entry) {
        published.record = Some(GroupRecord {
            invocation_key: *invocation_key,
            candidate: envelope,
        });
    }
    Ok(published)
}

/// A blob's bytes, checked against its name: one stored without a sync (an output stored by
/// link, a fetched blob) may have been damaged by a crash since. A damaged one is removed (the
/// file read, not one stored again under its name meanwhile) and is an `InvalidData` error.
fn read_checked(path: &std::path::Path, blob: &Key) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if blake3::hash(&bytes).as_bytes() == blob {
        return Ok(bytes);
    }
    let read = file.metadata()?;
    if std::fs::metadata(path).is_ok_and(|now| (now.dev(), now.ino()) == (read.dev(), read.ino())) {
        let _ = std::fs::remove_file(path);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the blob does not hold the content its name says (removed)",
    ))
}

/// The entry and its candidate, from the local index; `None` if gc removed either.
fn local_entry(
    store: &Store,
    invocation_key: &Key,
    result_key: &Key,
) -> Result<Option<(Entry, Candidate)>, StoreError> {
    let rtxn = store.index.read_txn()?;
    let Some(entry) = store.index.entry(&rtxn, result_key)? else {
        return Ok(None);
    };
    let manifest = store.index.manifest(&rtxn, invocation_key)?;
    Ok(manifest
        .candidates
        .into_iter()
        .find(|candidate| candidate.result_key == *result_key)
        .map(|candidate| (entry, candidate)))
}

/// Whether an entry is a C/C++ compile's (it has an object file). Those stay out of groups: a
/// fresh machine that restores the build-script run they belong to never runs them, and one
/// whose run misses asks the remote for each of them itself (store-format/README.md §9.7).
fn is_cc_compile(entry: &Entry) -> bool {
    entry
        .outputs
        .iter()
        .any(|output| output.kind == crate::store::entry::OutputKind::CcObject)
}

/// The distinct blobs an entry references (the publisher uploads those the remote lacks).
pub fn entry_blobs(entry: &Entry) -> Vec<Key> {
    let mut blobs: Vec<Key> = entry
        .outputs
        .iter()
        .filter_map(OutputRecord::blob)
        .collect();
    blobs.sort();
    blobs.dedup();
    blobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_read_for_upload_only_when_it_is_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"content").unwrap();
        let name = *blake3::hash(b"content").as_bytes();
        assert_eq!(read_checked(&path, &name).unwrap(), b"content");

        // What a crash can leave of an unsynced blob: its size, other bytes.
        std::fs::write(&path, [0u8; 7]).unwrap();
        let err = read_checked(&path, &name).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(!path.exists(), "the damaged blob is removed");
    }
}
