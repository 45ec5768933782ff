//! What a job's record step works with and returns, and why a finished run may not be stored.

use std::io;
use std::path::Path;

use super::super::keying::{KeyError, MemoHasher};
use super::super::run::Compiled;
use crate::hash::Key;
use crate::stats::{NotStoredReason, Outcome, PassthroughReason};
use crate::store::entry::{Candidate, OutputRecord};
use crate::store::state::StateUpdate;
use crate::store::{Store, StoreError};

/// What [`Job::record`] works with.
pub struct Recording<'a, 's> {
    pub store: &'s Store,
    pub hasher: &'a mut MemoHasher<'s>,
    pub invocation_key: &'a Key,
    pub ran: &'a Compiled,
    /// A fresh tick of the clock files are stamped from, read just before the program started
    /// ([`crate::hash::file_hash::filesystem_tick_after`] the flow's start).
    pub started_fs_ns: i128,
    pub update: &'a mut StateUpdate,
}

/// What a record holds, besides the run's output.
pub struct Recorded {
    pub candidate: Candidate,
    pub outputs: Vec<OutputRecord>,
    /// The entry's `out_dir` field: the out dir (rustc, build-script runs) or the target text of
    /// the caller's dep file (C).
    pub out_dir: Vec<u8>,
    /// The stdout and stderr to store, when the job stores them otherwise than captured (with
    /// base dirs templated); `None`: as captured.
    pub stdout: Option<Vec<u8>>,
    pub stderr: Option<Vec<u8>>,
}

/// Why a run that finished was not stored.
#[derive(Debug)]
pub enum NotStored {
    /// A policy decision: counted under `not_stored`.
    Refused(NotStoredReason),
    /// Found not cacheable only once it ran (a C time macro, a build script's foreign link
    /// path): counted under `passthrough_reasons`.
    Uncacheable(PassthroughReason),
    /// A cache fault: counted under `errors`.
    Fault(KeyError),
}

impl NotStored {
    /// The outcome counted for a run that finished but was not stored.
    pub(super) fn into_outcome(self) -> Outcome {
        match self {
            NotStored::Refused(reason) => Outcome::Miss {
                not_stored: Some(reason),
            },
            NotStored::Uncacheable(reason) => Outcome::Passthrough { reason },
            NotStored::Fault(err) => {
                tracing::warn!("storing failed ({err})");
                Outcome::Error {
                    reason: err.reason(),
                }
            }
        }
    }

    /// A file fault on `path`.
    pub fn file(path: &Path) -> impl FnOnce(io::Error) -> NotStored + '_ {
        move |source| {
            NotStored::Fault(KeyError::File {
                path: path.to_path_buf(),
                source,
            })
        }
    }
}

impl NotStored {
    /// A fault while writing a blob into the store.
    pub fn blob_write(source: io::Error) -> NotStored {
        NotStored::Fault(KeyError::Store(StoreError::File(source)))
    }
}

impl From<KeyError> for NotStored {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Passthrough(reason) => NotStored::Uncacheable(reason),
            other => NotStored::Fault(other),
        }
    }
}

impl From<StoreError> for NotStored {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Busy => NotStored::Refused(NotStoredReason::StoreBusy),
            other => NotStored::Fault(KeyError::Store(other)),
        }
    }
}
