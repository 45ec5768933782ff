//! Remote storage: a cache shared between machines, behind the local store (README.md "Remote
//! storage", store-format/README.md §9).
//!
//! The local store stays the first level. On a local miss the wrapper asks the remote ([`fetch`]):
//! a candidate of the invocation key that matches the files here names an entry, whose blobs are
//! fetched (a few at a time, on threads), decompressed, verified against their sizes and blake3
//! names, and committed into the local store, so that the next hit is local. On a miss in both, the
//! compile's result is stored locally and then published ([`publish`]): by the compile's own
//! process, or queued for a detached uploader ([`queue`], drained by [`uploader`]) so that the
//! build does not wait for the network.
//!
//! - [`backend`]: what a remote service must do, and its errors; [`s3`] and [`redis`] do it.
//! - [`layout`]: object names and envelopes (the remote format, versioned).
//! - [`codec`]: blobs travel as zstd frames; the local store keeps them uncompressed.
//! - [`backoff`]: after a failure, every rcache process skips the remote for a while.
//! - [`cold`]: a build whose first lookups all missed stops asking.
//! - [`claims`]: one process of a store fetches a unit at a time; the others wait for it.
//! - [`group`] and [`prefetch`]: what one build published is a group; a fresh machine's first
//!   remote hit starts a detached prefetcher that pulls the rest of that group into the local
//!   store before cargo asks for it.
//!
//! A remote never breaks a build: every fault is counted under `remote.` in the stats, and the
//! compile goes on locally.

pub(crate) mod backend;
pub(crate) mod backoff;
pub(crate) mod claims;
pub mod codec;
pub(crate) mod cold;
pub(crate) mod fetch;
pub(crate) mod group;
pub mod layout;
pub(crate) mod prefetch;
pub(crate) mod publish;
pub(crate) mod queue;
pub(crate) mod redis;
pub(crate) mod s3;
#[cfg(test)]
mod tests;
pub(crate) mod uploader;

use std::time::Duration;

use crate::config::{Config, RemoteLocation, UploadMode};
use crate::hash::Key;
use crate::store::entry::Candidate;
use crate::store::state::StateUpdate;
pub use backend::{Backend, RemoteError};
use layout::{GroupRecord, REMOTE_MAX_CANDIDATES, decode_candidate, encode_candidate};

/// Counter-name prefix of the remote's figures (`remote.hits`, `remote.error_reasons.timeout`).
pub const COUNTER_PREFIX: &str = "remote.";

/// A configured remote. Creating one connects to nothing: the first request does.
pub struct Remote {
    backend: Box<dyn Backend>,
    pub location: RemoteLocation,
    pub readonly: bool,
    /// The shared secret that signs and checks entries.
    secret: Option<Vec<u8>>,
    pub backoff: Duration,
    pub upload: UploadMode,
}

impl Remote {
    /// The remote the settings name; `None` when none is configured.
    pub fn from_config(config: &Config) -> Result<Option<Remote>, RemoteError> {
        let settings = &config.remote;
        let Some(location) = settings.location.value.clone() else {
            return Ok(None);
        };
        // TLS (https S3 endpoints, rediss://) through rustls with ring; an error only says
        // that a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let backend: Box<dyn Backend> = match &location {
            RemoteLocation::S3 { bucket, prefix } => {
                Box::new(s3::S3Backend::new(bucket, prefix, settings)?)
            }
            RemoteLocation::Redis { url } => Box::new(redis::RedisBackend::new(
                url,
                settings.connect_timeout(),
                settings.timeout.value,
            )?),
        };
        let mut remote = Remote::new(backend, location, settings.backoff.value);
        remote.readonly = settings.readonly.value;
        remote.secret = settings
            .key
            .value
            .as_ref()
            .map(|secret| secret.0.as_bytes().to_vec());
        remote.upload = settings.upload.value;
        Ok(Some(remote))
    }

    /// A writable remote over `backend`, with unsigned entries and background uploads.
    pub fn new(backend: Box<dyn Backend>, location: RemoteLocation, backoff: Duration) -> Remote {
        Remote {
            backend,
            location,
            readonly: false,
            secret: None,
            backoff,
            upload: UploadMode::Background,
        }
    }

    /// Signs published entries, and refuses unsigned or badly signed ones, with `secret`.
    pub fn with_secret(mut self, secret: Option<&[u8]>) -> Remote {
        self.secret = secret.map(<[u8]>::to_vec);
        self
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn secret(&self) -> Option<&[u8]> {
        self.secret.as_deref()
    }

    /// The candidates filed under an invocation key, newest first, each with the group it was
    /// published with; undecodable ones are left out. Their result keys are as stored: a lookup
    /// recomputes them.
    pub fn candidates(
        &self,
        invocation_key: &Key,
    ) -> Result<Vec<(Candidate, Option<Key>)>, RemoteError> {
        let encoded = self
            .backend
            .candidates(invocation_key, REMOTE_MAX_CANDIDATES)?;
        Ok(encoded
            .iter()
            .filter_map(|bytes| decode_candidate(bytes))
            .collect())
    }

    /// Files one more candidate under an invocation key, naming the group it is published
    /// with; candidates added at the same time by other machines are all kept. Returns the
    /// envelope as filed, for the group's record of it.
    pub fn add_candidate(
        &self,
        invocation_key: &Key,
        candidate: &Candidate,
        group: Option<&Key>,
    ) -> Result<Vec<u8>, RemoteError> {
        let now = crate::clock::unix_ms(std::time::SystemTime::now());
        let encoded = encode_candidate(candidate, group);
        self.backend
            .add_candidate(invocation_key, &candidate.result_key, now, encoded.clone())?;
        Ok(encoded)
    }

    /// Appends one part to a group (parts from several processes are all kept).
    pub fn add_group_part(&self, group: &Key, records: &[GroupRecord]) -> Result<(), RemoteError> {
        if records.is_empty() {
            return Ok(());
        }
        self.backend
            .add_group_part(group, layout::encode_group_part(records))
    }

    /// The records of a group, in the order they were published; undecodable parts are left
    /// out.
    pub fn group(&self, group: &Key) -> Result<Vec<GroupRecord>, RemoteError> {
        let parts = self.backend.group_parts(group)?;
        Ok(parts
            .iter()
            .filter_map(|part| layout::decode_group_part(part))
            .flatten()
            .collect())
    }
}

/// Adds `by` to the remote counter `name` (`hits`, `error_reasons.timeout`, ...).
pub fn count(update: &mut StateUpdate, name: &str, by: u64) {
    if by > 0 {
        update.count(format!("{COUNTER_PREFIX}{name}"), by);
    }
}

/// Counts a remote fault under `remote.errors` and its reason.
pub fn count_error(update: &mut StateUpdate, reason: &str) {
    count(update, "errors", 1);
    count(update, &format!("error_reasons.{reason}"), 1);
}
