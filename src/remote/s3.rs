//! The S3 backend, over Apache OpenDAL: SigV4 signing, the AWS credential chain (the standard
//! variables, `~/.aws/credentials` and `~/.aws/config`, web identity, instance metadata), and
//! path-style addressing for MinIO, R2, moto and other compatible servers.
//!
//! OpenDAL is async; rcache is one short process per compile, so each backend owns a current-thread
//! tokio runtime and blocks on it. Several threads may block on it at once (an entry's blobs are
//! fetched on threads of their own): tokio lets one of them drive the runtime's I/O and timers for
//! all, and hands that over when it returns. Every request runs under the request timeout
//! (`tokio::time::timeout`; a transfer gets a second more per MiB), the connection under the
//! connect timeout (reqwest's). Batches run `CONCURRENT_REQUESTS` requests at a time.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use opendal::{ErrorKind, HttpTransporter, Operator, services::S3};
use opendal_http_transport_reqwest::ReqwestTransport;
use tokio::runtime::Runtime;

use super::backend::{Backend, RemoteError, describe, has_io_kind, transfer_timeout};
use super::layout::{Object, s3_candidate_path, s3_candidates_dir, s3_group_dir};
use crate::config::RemoteConfig;
use crate::hash::Key;

/// Requests in flight at once within one batch.
const CONCURRENT_REQUESTS: usize = 8;

/// The AWS region when neither the settings nor the environment name one.
const DEFAULT_REGION: &str = "us-east-1";

pub struct S3Backend {
    operator: Operator,
    runtime: Runtime,
    timeout: Duration,
}

impl S3Backend {
    pub fn new(
        bucket: &str,
        prefix: &str,
        settings: &RemoteConfig,
    ) -> Result<S3Backend, RemoteError> {
        let config_err = |err: &dyn std::error::Error| RemoteError::Config(describe(err));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| config_err(&err))?;
        let region = settings
            .s3_region
            .value
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| {
                std::env::var("AWS_DEFAULT_REGION")
                    .ok()
                    .filter(|r| !r.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint = settings.s3_endpoint.value.as_deref();
        let mut builder = S3::default()
            .bucket(bucket)
            .root(&format!("/{prefix}"))
            .region(&region);
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint(endpoint);
        }
        // AWS wants virtual-hosted style; a custom endpoint (MinIO, moto, R2) usually path style.
        let path_style = settings.s3_path_style.value.unwrap_or(endpoint.is_some());
        if !path_style {
            builder = builder.enable_virtual_host_style();
        }
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            .build()
            .map_err(|err| config_err(&err))?;
        let operator = Operator::new(builder).map_err(|err| config_err(&err))?;
        let context = operator
            .context()
            .with_http_transport(HttpTransporter::new(ReqwestTransport::new(client)));
        Ok(S3Backend {
            operator: operator.with_context(context),
            runtime,
            timeout: settings.timeout.value,
        })
    }

    /// Runs one request that moves `bytes` under its timeout ([`transfer_timeout`]).
    async fn timed<T>(
        &self,
        bytes: u64,
        request: impl Future<Output = opendal::Result<T>>,
    ) -> Result<T, opendal::Error> {
        match tokio::time::timeout(transfer_timeout(self.timeout, bytes), request).await {
            Ok(result) => result,
            Err(_) => Err(opendal::Error::new(ErrorKind::Unexpected, TIMED_OUT)),
        }
    }

    /// Runs one request under the request timeout, blocking.
    fn block<T>(
        &self,
        request: impl Future<Output = opendal::Result<T>>,
    ) -> Result<T, RemoteError> {
        self.runtime
            .block_on(self.timed(0, request))
            .map_err(classify)
    }

    /// Runs `request` on every item, [`CONCURRENT_REQUESTS`] at a time, results in order.
    fn batch<I, T, F>(&self, items: Vec<I>, request: impl Fn(I) -> F) -> Result<Vec<T>, RemoteError>
    where
        F: Future<Output = Result<T, opendal::Error>>,
    {
        self.runtime
            .block_on(
                futures::stream::iter(items)
                    .map(request)
                    .buffered(CONCURRENT_REQUESTS)
                    .try_collect(),
            )
            .map_err(classify)
    }
}

/// The message of a timeout this module raises itself.
const TIMED_OUT: &str = "request timed out";

/// Names an OpenDAL error for the stats.
fn classify(err: opendal::Error) -> RemoteError {
    let text = describe(&err);
    if text.contains(TIMED_OUT) {
        return RemoteError::Timeout(text);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if let Some(http) = cause.downcast_ref::<reqwest::Error>() {
            if http.is_timeout() {
                return RemoteError::Timeout(text);
            }
            if http.is_connect() {
                return RemoteError::Unreachable(text);
            }
        }
        source = cause.source();
    }
    use std::io::ErrorKind as Io;
    if has_io_kind(
        &err,
        &[
            Io::ConnectionRefused,
            Io::ConnectionReset,
            Io::ConnectionAborted,
            Io::BrokenPipe,
        ],
    ) {
        return RemoteError::Unreachable(text);
    }
    match err.kind() {
        ErrorKind::PermissionDenied => RemoteError::Refused(text),
        ErrorKind::ConfigInvalid => RemoteError::Config(text),
        _ => RemoteError::Other(text),
    }
}

impl S3Backend {
    /// The contents of the first `limit` objects under `dir`, in the order of their names
    /// (objects deleted between the listing and the read are left out).
    fn read_listed(&self, dir: &str, limit: usize) -> Result<Vec<Vec<u8>>, RemoteError> {
        let listed = async {
            let lister = self.operator.lister(dir).await?;
            lister
                .try_filter(|entry| std::future::ready(!entry.path().ends_with('/')))
                .take(limit)
                .map_ok(|entry| entry.path().to_string())
                .try_collect::<Vec<String>>()
                .await
        };
        let mut paths = self.block(listed)?;
        paths.sort();
        let read: Vec<Option<Vec<u8>>> = self.batch(paths, |path| async move {
            let read = found(self.timed(0, self.operator.read(&path)).await)?;
            Ok(read.map(|buffer| buffer.to_vec()))
        })?;
        Ok(read.into_iter().flatten().collect())
    }
}

/// A read's result with "not found" as `None`.
fn found<T>(result: opendal::Result<T>) -> opendal::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

impl Backend for S3Backend {
    fn get_many(
        &self,
        objects: &[Object],
        largest: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, RemoteError> {
        let paths: Vec<String> = objects.iter().map(Object::s3_path).collect();
        self.batch(paths, |path| async move {
            let read = found(self.timed(largest, self.operator.read(&path)).await)?;
            Ok(read.map(|buffer| buffer.to_vec()))
        })
    }

    fn put_many(&self, objects: Vec<(Object, Vec<u8>)>) -> Result<(), RemoteError> {
        self.batch(objects, |(object, bytes)| async move {
            let path = object.s3_path();
            let size = bytes.len() as u64;
            self.timed(size, self.operator.write(&path, bytes))
                .await
                .map(|_| ())
        })
        .map(|_: Vec<()>| ())
    }

    fn exists_many(&self, objects: &[Object]) -> Result<Vec<bool>, RemoteError> {
        let paths: Vec<String> = objects.iter().map(Object::s3_path).collect();
        self.batch(paths, |path| async move {
            self.timed(0, self.operator.exists(&path)).await
        })
    }

    fn delete(&self, object: &Object) -> Result<(), RemoteError> {
        self.block(self.operator.delete(&object.s3_path()))
    }

    fn candidates(&self, invocation_key: &Key, limit: usize) -> Result<Vec<Vec<u8>>, RemoteError> {
        // S3 lists keys in ascending order and candidate names sort newest first, so the first
        // `limit` names are the newest: the listing stops there (one page), however many
        // candidates the key has gathered.
        self.read_listed(&s3_candidates_dir(invocation_key), limit)
    }

    fn add_candidate(
        &self,
        invocation_key: &Key,
        result_key: &Key,
        created_unix_ms: u64,
        encoded: Vec<u8>,
    ) -> Result<(), RemoteError> {
        let path = s3_candidate_path(invocation_key, result_key, created_unix_ms);
        self.block(self.operator.write(&path, encoded)).map(|_| ())
    }

    fn add_group_part(&self, group: &Key, part: Vec<u8>) -> Result<(), RemoteError> {
        let object = Object::GroupPart {
            group: *group,
            name: group_part_name(),
        };
        self.put_many(vec![(object, part)])
    }

    fn group_parts(&self, group: &Key) -> Result<Vec<Vec<u8>>, RemoteError> {
        self.read_listed(&s3_group_dir(group), usize::MAX)
    }
}

/// A new part's name: the time (so that parts list in the order they were added), then a
/// random number (so that two processes adding a part in the same millisecond keep both).
fn group_part_name() -> String {
    let now = crate::clock::unix_ms(std::time::SystemTime::now());
    format!("{now:016x}-{:016x}", rand_u64())
}

/// 64 random bits from the OS (getrandom(2)); the pid and the clock's nanoseconds if it fails,
/// which still rarely collide.
fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if filled == bytes.len() as isize {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    (u64::from(std::process::id()) << 32) | u64::from(nanos)
}
