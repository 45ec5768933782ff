//! The Redis backend, over the `redis` crate's blocking client: connections opened on first use
//! with the connect timeout (and without the crate's `CLIENT SETINFO`, a round trip per
//! connection), with the request timeout on every read and write. A request takes an
//! idle connection (or opens one) and gives it back when it succeeds, so that the threads
//! fetching an entry's blobs at once each have their own; a single-threaded process uses one.
//!
//! Blobs and entries are plain string keys. An invocation key's candidates are one sorted set
//! (member: the encoded candidate, score: its creation time): `ZADD` from two machines at once
//! keeps both, and a lookup reads the newest with one `ZREVRANGE`. A group is one list: `RPUSH`
//! appends a part (and renews its expiry), `LRANGE` reads them all. Batches are pipelined.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, IntoConnectionInfo, RedisError};

use super::backend::{Backend, RemoteError, describe};
use super::layout::{
    Object, REDIS_GROUP_TTL_SECS, REDIS_KEPT_CANDIDATES, redis_candidates_key, redis_group_key,
};
use crate::hash::Key;

pub struct RedisBackend {
    client: Client,
    /// Connections no request is using.
    idle: Mutex<Vec<Connection>>,
    connect_timeout: Duration,
    timeout: Duration,
}

impl RedisBackend {
    /// Parses the URL; connects on first use.
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<RedisBackend, RemoteError> {
        let config = |err: RedisError| RemoteError::Config(describe(&err));
        let info = url.into_connection_info().map_err(config)?;
        // No `CLIENT SETINFO` after connecting: it names the library to the server, at the cost
        // of a round trip on every connection (each lookup opens one), which on a 30 ms link is
        // a third of a miss's lookup.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let client = Client::open(info.set_redis_settings(settings)).map_err(config)?;
        Ok(RedisBackend {
            client,
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            timeout,
        })
    }

    /// Runs `request` on an idle connection, opening one if there is none. A connection whose
    /// request failed is dropped, so the next request starts afresh.
    fn with_connection<T>(
        &self,
        request: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, RemoteError> {
        // A poisoned lock only says another thread panicked holding it; the list stays usable.
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let result = request(&mut connection).map_err(classify);
        if result.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
        result
    }

    fn connect(&self) -> Result<Connection, RemoteError> {
        let connection = self
            .client
            .get_connection_with_timeout(self.connect_timeout)
            .map_err(classify)?;
        connection
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| connection.set_write_timeout(Some(self.timeout)))
            .map_err(classify)?;
        Ok(connection)
    }
}

/// Names a Redis error for the stats.
fn classify(err: RedisError) -> RemoteError {
    let text = describe(&err);
    if err.is_timeout() {
        RemoteError::Timeout(text)
    } else if err.is_connection_refusal() || err.is_connection_dropped() || err.is_io_error() {
        RemoteError::Unreachable(text)
    } else {
        match err.kind() {
            redis::ErrorKind::AuthenticationFailed => RemoteError::Refused(text),
            _ => RemoteError::Other(text),
        }
    }
}

impl Backend for RedisBackend {
    /// The read timeout applies to each read of the socket, so a large value that keeps
    /// arriving never times out: `_largest` is not needed.
    fn get_many(
        &self,
        objects: &[Object],
        _largest: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, RemoteError> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = objects.iter().map(Object::redis_key).collect();
        self.with_connection(|connection| redis::cmd("MGET").arg(&keys).query(connection))
    }

    fn put_many(&self, objects: Vec<(Object, Vec<u8>)>) -> Result<(), RemoteError> {
        if objects.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        for (object, bytes) in &objects {
            pipeline
                .cmd("SET")
                .arg(object.redis_key())
                .arg(bytes)
                .ignore();
        }
        self.with_connection(|connection| pipeline.query(connection))
    }

    fn exists_many(&self, objects: &[Object]) -> Result<Vec<bool>, RemoteError> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for object in objects {
            pipeline.cmd("EXISTS").arg(object.redis_key());
        }
        self.with_connection(|connection| pipeline.query(connection))
    }

    fn delete(&self, object: &Object) -> Result<(), RemoteError> {
        self.with_connection(|connection| {
            redis::cmd("DEL").arg(object.redis_key()).query(connection)
        })
    }

    fn candidates(&self, invocation_key: &Key, limit: usize) -> Result<Vec<Vec<u8>>, RemoteError> {
        let key = redis_candidates_key(invocation_key);
        let last = limit.saturating_sub(1) as isize;
        self.with_connection(|connection| {
            redis::cmd("ZREVRANGE")
                .arg(&key)
                .arg(0)
                .arg(last)
                .query(connection)
        })
    }

    fn add_candidate(
        &self,
        invocation_key: &Key,
        _result_key: &Key,
        created_unix_ms: u64,
        encoded: Vec<u8>,
    ) -> Result<(), RemoteError> {
        let key = redis_candidates_key(invocation_key);
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .cmd("ZADD")
            .arg(&key)
            .arg(created_unix_ms)
            .arg(encoded)
            .ignore()
            .cmd("ZREMRANGEBYRANK")
            .arg(&key)
            .arg(0)
            .arg(-(REDIS_KEPT_CANDIDATES + 1))
            .ignore();
        self.with_connection(|connection| pipeline.query(connection))
    }

    fn add_group_part(&self, group: &Key, part: Vec<u8>) -> Result<(), RemoteError> {
        let key = redis_group_key(group);
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("RPUSH")
            .arg(&key)
            .arg(part)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(REDIS_GROUP_TTL_SECS)
            .ignore();
        self.with_connection(|connection| pipeline.query(connection))
    }

    fn group_parts(&self, group: &Key) -> Result<Vec<Vec<u8>>, RemoteError> {
        let key = redis_group_key(group);
        self.with_connection(|connection| {
            redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(connection)
        })
    }
}
