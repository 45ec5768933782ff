//! The uploader's work: publishing the queue ([`super::queue`]) oldest first, for the detached
//! `rcache remote upload` ([`run_uploader`]) and for `rcache remote flush` ([`drain`]).
//!
//! A queued entry that gc removed meanwhile is dropped. A remote failure stops the uploader,
//! leaving the rest queued for the next one (after the backoff) or for `rcache remote flush`.

use std::fs;
use std::io;
use std::time::Duration;

use std::collections::BTreeMap;

use super::Remote;
use super::layout::GroupRecord;
use super::publish::{PublishError, add_to_group, publish_counted};
use super::queue::pending;
use crate::hash::Key;
use crate::store::state::StateUpdate;
use crate::store::{Store, StoreError};

/// What a drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub published: u64,
    pub blobs_uploaded: u64,
    pub bytes_up: u64,
    /// Entries dropped from the queue because the local store no longer has them.
    pub dropped: u64,
    /// The remote failure that stopped the drain, if one did.
    pub stopped_by: Option<String>,
}

/// How many published candidates the uploader gathers before it appends them to their group:
/// one request per this many entries, and a prefetcher on another machine sees a build's
/// entries soon after they are published.
const GROUP_PART_RECORDS: usize = 16;

/// Published candidates waiting to be appended to their groups.
#[derive(Default)]
struct GroupParts(BTreeMap<Key, Vec<GroupRecord>>);

impl GroupParts {
    fn add(
        &mut self,
        remote: &Remote,
        store: &Store,
        group: Key,
        record: GroupRecord,
        update: &mut StateUpdate,
    ) {
        let records = self.0.entry(group).or_default();
        records.push(record);
        if records.len() >= GROUP_PART_RECORDS {
            let full = std::mem::take(records);
            add_to_group(remote, store, &group, &full, update);
        }
    }

    fn flush(&mut self, remote: &Remote, store: &Store, update: &mut StateUpdate) {
        for (group, records) in std::mem::take(&mut self.0) {
            add_to_group(remote, store, &group, &records, update);
        }
    }
}

/// Publishes the queue, oldest first, until it is empty or the remote fails. The caller holds
/// the upload lock.
pub fn drain(
    remote: &Remote,
    store: &Store,
    update: &mut StateUpdate,
) -> Result<Drained, io::Error> {
    let mut parts = GroupParts::default();
    let drained = drain_into(remote, store, &mut parts, update);
    parts.flush(remote, store, update);
    drained
}

fn drain_into(
    remote: &Remote,
    store: &Store,
    parts: &mut GroupParts,
    update: &mut StateUpdate,
) -> Result<Drained, io::Error> {
    let mut drained = Drained::default();
    loop {
        let queued = pending(store)?;
        if queued.is_empty() {
            return Ok(drained);
        }
        for item in queued {
            match publish_counted(
                remote,
                store,
                &item.invocation_key,
                &item.result_key,
                item.group.as_ref(),
                update,
            ) {
                Ok(published) => {
                    if let (Some(group), Some(record)) = (item.group, published.record.clone()) {
                        parts.add(remote, store, group, record, update);
                    }
                    if published.entry {
                        drained.published += 1;
                    } else {
                        drained.dropped += 1;
                    }
                    drained.blobs_uploaded += published.blobs_uploaded;
                    drained.bytes_up += published.bytes_up;
                    let _ = fs::remove_file(&item.path);
                }
                Err(PublishError::Remote(err)) => {
                    drained.stopped_by = Some(err.to_string());
                    return Ok(drained);
                }
                Err(err) => {
                    // The local side cannot give this entry (a blob gc removed, a damaged
                    // record): it will never publish, so it leaves the queue.
                    tracing::warn!("dropping a queued upload: {err}");
                    drained.dropped += 1;
                    let _ = fs::remove_file(&item.path);
                }
            }
        }
    }
}

/// The detached uploader: drains the queue under the upload lock, then lists it once more after
/// releasing the lock, and goes on if something was queued meanwhile and no other uploader
/// took over.
pub fn run_uploader(
    remote: &Remote,
    store: &Store,
    update: &mut StateUpdate,
) -> io::Result<Drained> {
    let mut total = Drained::default();
    loop {
        let Some(lock) = store.upload_lock(Duration::ZERO).map_err(store_io)? else {
            return Ok(total);
        };
        let drained = drain(remote, store, update)?;
        drop(lock);
        total.published += drained.published;
        total.blobs_uploaded += drained.blobs_uploaded;
        total.bytes_up += drained.bytes_up;
        total.dropped += drained.dropped;
        if drained.stopped_by.is_some() {
            total.stopped_by = drained.stopped_by;
            return Ok(total);
        }
        if pending(store)?.is_empty() {
            return Ok(total);
        }
    }
}

/// A store error as an I/O error for the uploader's caller: the same kind (so the same reason
/// in the stats), and the store error's message, which names the path.
fn store_io(err: StoreError) -> io::Error {
    let kind = match &err {
        StoreError::Io { source, .. } | StoreError::File(source) => source.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_keeps_its_path_and_kind_as_an_io_error() {
        let err = store_io(StoreError::Io {
            path: "/store/v2/remote-upload.lock".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert!(
            err.to_string().contains("/store/v2/remote-upload.lock"),
            "{err}"
        );
        assert_eq!(crate::store::io_reason(&err), "read_only_store");
        assert_eq!(store_io(StoreError::Busy).kind(), io::ErrorKind::Other);
    }
}
