//! Real remote-storage servers for the remote tests (`remote/`): a `redis-server` and moto's
//! S3 server, each started by the test that uses it on a free loopback port (so tests run in
//! parallel), and killed when dropped.
//!
//! - [`RedisServer`] and [`S3Server`] start, [`pause`](RemoteServer::pause) (SIGSTOP: the
//!   kernel still accepts connections, so requests hang into rcache's timeouts),
//!   [`resume`](RemoteServer::resume) and [`stop`](RemoteServer::stop) their process.
//! - [`RemoteServer`] is what the scenarios are generic over: the client settings, and a view
//!   of what rcache stored under the remote layout (format version 2, src/remote/layout.rs and
//!   store-format/README.md §9, the contract): every object or key by name, read, overwritten and
//!   renamed byte for byte, so a test can count, compare, damage it, or turn it into what an
//!   older version would have written.
//! - [`FaultProxy`] sits in front of a server and cuts it off (dead or hung) at a chosen point.
//! - Each talks to its server through a tiny client written here over `std::net::TcpStream`
//!   (RESP for Redis in `redis.rs`, HTTP/1.1 for S3 in `s3.rs`): the tests check rcache's
//!   clients, so they must not share code with them.

mod proxy;
mod redis;
mod s3;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use proxy::{Fault, FaultProxy};
pub use redis::RedisServer;
pub use s3::S3Server;

/// How long a server may take to answer after it was started. moto imports flask and boto3
/// first, which takes seconds on a machine busy with parallel builds.
const STARTUP: Duration = Duration::from_secs(60);

/// How many times a server that exits before answering is started again on another port: a
/// free port found by binding port 0 can be taken by a parallel test before the server binds it.
const START_ATTEMPTS: u32 = 5;

/// Every request of the test clients gives up after this (a paused server never answers).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the remote tests need from a server, whatever its protocol.
pub trait RemoteServer: Sized {
    /// The backend's name, for failure messages.
    const NAME: &'static str;

    /// Starts a fresh, empty server; panics with its log if it does not come up.
    fn start() -> Self;

    /// The settings a client needs: `RCACHE_REMOTE`, and for S3 the endpoint and credentials.
    fn env(&self) -> Vec<(String, String)>;

    /// The server process, for [`pause`](RemoteServer::pause) and the others.
    fn process(&self) -> &ServerProcess;

    /// Every object (S3) or key (Redis) on the server, sorted.
    fn names(&self) -> Vec<String>;

    /// Everything on the server, name by name: an object's or string key's bytes; a sorted set's
    /// members in order, each with its length (so a new member shows as a change).
    fn contents(&self) -> BTreeMap<String, Vec<u8>>;

    /// The bytes of one object or string key; panics if it does not exist.
    fn read(&self, name: &str) -> Vec<u8>;

    /// Overwrites one object or string key.
    fn write(&self, name: &str, bytes: &[u8]);

    /// Deletes one object or key, as an eviction would.
    fn delete(&self, name: &str);

    /// Moves one object or key (a sorted set included) to another name.
    fn rename(&self, from: &str, to: &str);

    /// The name under which the remote layout keeps the blob whose blake3 is `hex`.
    fn blob_name(&self, hex: &str) -> String;

    /// How many candidates the remote layout holds for the invocation key `hex`.
    fn candidate_count(&self, hex: &str) -> usize;

    /// What the remote layout (format version 2) says `name` is: `blob`, `entry` or
    /// `candidate`; `None` for a name outside it (another version's names included).
    fn layout_kind(&self, name: &str) -> Option<&'static str>;

    /// SIGSTOP: the server keeps its port, and every request to it hangs.
    fn pause(&self) {
        self.process().signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`pause`](RemoteServer::pause).
    fn resume(&self) {
        self.process().signal(libc::SIGCONT);
    }

    /// Kills the server: connections are refused from then on.
    fn stop(&mut self);
}

/// A server's process and log; killed (and reaped) when dropped.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// Holds the log and whatever else the server writes; deleted last.
    _dir: TempDir,
}

impl ServerProcess {
    /// Starts `command(port, dir)` on a free loopback port until `ready(port)` answers; starts
    /// it again on another port if it exits first (its port was taken), and panics with its log
    /// if it neither exits nor answers within [`STARTUP`].
    fn start(
        what: &str,
        command: impl Fn(u16, &Path) -> Command,
        ready: impl Fn(u16) -> bool,
    ) -> ServerProcess {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("rcache-server-")
                .tempdir()
                .expect("create the server's temp dir");
            let port = free_port();
            let log = dir.path().join("server.log");
            let out = File::create(&log).expect("create the server log");
            let mut cmd = command(port, dir.path());
            cmd.stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {what} ({cmd:?}): {e}; .ci/run installs it"));
            let mut server = ServerProcess {
                child,
                port,
                log,
                _dir: dir,
            };
            let deadline = Instant::now() + STARTUP;
            loop {
                if ready(port) {
                    return server;
                }
                if let Some(status) = server.child.try_wait().expect("wait for the server") {
                    last_log =
                        format!("{what} exited ({status}) on port {port}:\n{}", server.log());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what} did not answer on port {port} within {STARTUP:?}:\n{}",
                    server.log()
                );
                // Polling for readiness only: the interval changes no result.
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("{what} did not start in {START_ATTEMPTS} attempts; the last:\n{last_log}");
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and have not reaped (Drop reaps it).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    fn kill(&mut self) {
        // SIGKILL also ends a stopped process; the error is "already exited".
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 32-byte key as the remote layout writes it: 64 lowercase hex digits.
fn is_hex_key(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A port nobody listens on now (the kernel's pick for port 0).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().unwrap().port()
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = ([127, 0, 0, 1], port).into();
    let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    Ok(stream)
}
