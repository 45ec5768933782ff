//! The seam between rcache and a remote service: what every backend can do, and its errors.
//!
//! Operations come in batches (`get_many`, `put_many`, `exists_many`) so that a backend can
//! send them at once: Redis pipelines them in one round trip, S3 runs them concurrently. A
//! backend also serves calls from several threads at once (an entry's blobs are fetched on
//! their own threads). A missing object is `None`, never an error: the remote may evict anything
//! at any time.

use super::layout::Object;
use crate::hash::Key;
use crate::stats::reason::RemoteErrorReason;

/// A remote fault. Every one of them leaves the build going; the ones that say the remote is
/// unwell (all but [`RemoteError::Config`]) also make every rcache process skip it for a while.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// A request, or the connection, took longer than the configured timeout.
    #[error("remote timed out: {0}")]
    Timeout(String),
    /// The connection failed (refused, reset, name not resolved, TLS).
    #[error("remote unreachable: {0}")]
    Unreachable(String),
    /// The service answered with a refusal (credentials, permissions, no such bucket).
    #[error("remote refused the request: {0}")]
    Refused(String),
    /// Any other answer the client could not use.
    #[error("remote error: {0}")]
    Other(String),
    /// The settings do not describe a usable remote.
    #[error("remote settings: {0}")]
    Config(String),
}

impl RemoteError {
    /// A short snake_case name for the stats.
    pub fn reason(&self) -> &'static str {
        match self {
            RemoteError::Timeout(_) => RemoteErrorReason::Timeout,
            RemoteError::Unreachable(_) => RemoteErrorReason::Unreachable,
            RemoteError::Refused(_) => RemoteErrorReason::Refused,
            RemoteError::Other(_) => RemoteErrorReason::RemoteError,
            RemoteError::Config(_) => RemoteErrorReason::Config,
        }
        .as_str()
    }
}

/// What rcache needs from a remote service. A backend is shared by the threads that fetch an
/// entry's blobs at once (`remote::fetch`), so every method may be called from several threads
/// at the same time.
pub trait Backend: Send + Sync {
    /// The objects' contents, `None` for each one the remote does not have. `largest` is the
    /// size of the largest one, if known (0 otherwise), so that a large transfer gets the time
    /// it needs ([`transfer_timeout`]).
    fn get_many(
        &self,
        objects: &[Object],
        largest: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, RemoteError>;
    /// Writes the objects (an existing one is overwritten).
    fn put_many(&self, objects: Vec<(Object, Vec<u8>)>) -> Result<(), RemoteError>;
    /// Whether each object exists.
    fn exists_many(&self, objects: &[Object]) -> Result<Vec<bool>, RemoteError>;
    fn delete(&self, object: &Object) -> Result<(), RemoteError>;
    /// The encoded candidates filed under an invocation key, newest first, at most `limit`.
    fn candidates(&self, invocation_key: &Key, limit: usize) -> Result<Vec<Vec<u8>>, RemoteError>;
    /// Files one more candidate under an invocation key, without touching the others.
    fn add_candidate(
        &self,
        invocation_key: &Key,
        result_key: &Key,
        created_unix_ms: u64,
        encoded: Vec<u8>,
    ) -> Result<(), RemoteError>;
    /// Appends one part to a group, without touching the others.
    fn add_group_part(&self, group: &Key, part: Vec<u8>) -> Result<(), RemoteError>;
    /// A group's parts, in the order they were added (empty when the remote has none).
    fn group_parts(&self, group: &Key) -> Result<Vec<Vec<u8>>, RemoteError>;
}

/// Bytes per second a transfer is allowed on top of the request timeout: a large blob over a
/// slow link must not read as a hung server. 1 MiB/s is conservative on purpose: a hung
/// transfer of a 50 MiB rlib is found after 55 s, not after 5.
pub const MIN_TRANSFER_BYTES_PER_SEC: u64 = 1 << 20;

/// The time one request that moves `bytes` may take: the request timeout, plus a second per MiB.
pub fn transfer_timeout(request_timeout: std::time::Duration, bytes: u64) -> std::time::Duration {
    request_timeout
        + std::time::Duration::from_secs_f64(bytes as f64 / MIN_TRANSFER_BYTES_PER_SEC as f64)
}

/// The text of an error and its sources, for a [`RemoteError`]'s message.
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// True if an error, or any of its sources, is an I/O error of one of `kinds`.
pub fn has_io_kind(err: &(dyn std::error::Error + 'static), kinds: &[std::io::ErrorKind]) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && kinds.contains(&io.kind())
        {
            return true;
        }
        current = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_transfer_gets_a_second_more_per_mib() {
        let base = Duration::from_secs(5);
        assert_eq!(transfer_timeout(base, 0), base);
        assert_eq!(transfer_timeout(base, 50 << 20), Duration::from_secs(55));
    }
}
