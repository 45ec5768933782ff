//! Real remote-storage servers for the remote tests (`remote.rs`): a `redis-server` and moto's
//! S3 server, each started by the test that uses it on a free loopback port (so tests run in
//! parallel), and killed when dropped.
//!
//! - [`RedisServer`] and [`S3Server`] start, [`pause`](RemoteServer::pause) (SIGSTOP: the
//!   kernel still accepts connections, so requests hang into rcache's timeouts),
//!   [`resume`](RemoteServer::resume) and [`stop`](RemoteServer::stop) their process.
//! - [`RemoteServer`] is what the scenarios are generic over: the client settings, and a view
//!   of what rcache stored under the remote layout (format version 1, README.md "Remote
//!   storage"): every object or key by name, read and overwritten byte for byte, so a test can
//!   count, compare and damage it.
//! - Each talks to its server through a tiny client written here over `std::net::TcpStream`
//!   (RESP for Redis, HTTP/1.1 for S3): the tests check rcache's clients, so they must not
//!   share code with them.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

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

    /// The name under which the remote layout keeps the blob whose blake3 is `hex`.
    fn blob_name(&self, hex: &str) -> String;

    /// The names of the stored entries (envelopes), whatever their result key.
    fn entry_names(&self) -> Vec<String>;

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

// ---------------------------------------------------------------------------------------------
// Redis

/// `redis-server` without persistence, database 0.
pub struct RedisServer {
    process: ServerProcess,
}

/// The remote layout's key prefix in Redis.
const REDIS_PREFIX: &str = "rcache-v1:";

impl RedisServer {
    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.process.port)
    }

    /// Runs one command; panics on an I/O error or an error reply.
    #[track_caller]
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        let what = || String::from_utf8_lossy(&args.join(&b' ')).into_owned();
        match resp_command(self.process.port, args) {
            Ok(Reply::Error(e)) => panic!("redis {}: {e}", what()),
            Err(e) => panic!("redis {}: {e}", what()),
            Ok(reply) => reply,
        }
    }

    /// The keys matching a glob `pattern`, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .command(&[b"KEYS", pattern.as_bytes()])
            .array()
            .into_iter()
            .map(|k| String::from_utf8(k.bulk().expect("a key")).expect("utf-8 key"))
            .collect();
        keys.sort();
        keys
    }

    /// `DBSIZE`: how many keys database 0 holds.
    pub fn count_keys(&self) -> i64 {
        self.command(&[b"DBSIZE"]).int()
    }

    /// A string key's value, `None` when it does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.command(&[b"GET", key.as_bytes()]).bulk()
    }

    pub fn set(&self, key: &str, value: &[u8]) {
        self.command(&[b"SET", key.as_bytes(), value]);
    }

    /// How many members a sorted set has.
    pub fn zcard(&self, key: &str) -> i64 {
        self.command(&[b"ZCARD", key.as_bytes()]).int()
    }
}

impl RemoteServer for RedisServer {
    const NAME: &'static str = "redis";

    fn start() -> RedisServer {
        let process = ServerProcess::start(
            "redis-server",
            |port, dir| {
                let mut cmd = Command::new("redis-server");
                cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(dir);
                cmd
            },
            |port| matches!(resp_command(port, &[b"PING"]), Ok(Reply::Simple(s)) if s == "PONG"),
        );
        RedisServer { process }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("RCACHE_REMOTE".into(), self.url())]
    }

    fn process(&self) -> &ServerProcess {
        &self.process
    }

    fn names(&self) -> Vec<String> {
        self.keys("*")
    }

    fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        let mut contents = BTreeMap::new();
        for key in self.names() {
            let kind = self.command(&[b"TYPE", key.as_bytes()]).simple();
            let value = match kind.as_str() {
                "string" => self.get(&key).unwrap_or_default(),
                "zset" => {
                    let members = self.command(&[b"ZRANGE", key.as_bytes(), b"0", b"-1"]);
                    let mut bytes = Vec::new();
                    for member in members.array() {
                        let member = member.bulk().expect("a member");
                        bytes.extend_from_slice(&(member.len() as u64).to_le_bytes());
                        bytes.extend_from_slice(&member);
                    }
                    bytes
                }
                other => panic!("redis key {key} has a type the remote layout never uses: {other}"),
            };
            contents.insert(key, value);
        }
        contents
    }

    #[track_caller]
    fn read(&self, name: &str) -> Vec<u8> {
        self.get(name)
            .unwrap_or_else(|| panic!("redis has no key {name}"))
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        self.set(name, bytes);
    }

    fn blob_name(&self, hex: &str) -> String {
        format!("{REDIS_PREFIX}blob:{hex}")
    }

    fn entry_names(&self) -> Vec<String> {
        self.keys(&format!("{REDIS_PREFIX}entry:*"))
    }

    fn stop(&mut self) {
        self.process.kill();
    }
}

/// A RESP reply.
#[derive(Debug)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    #[track_caller]
    fn simple(self) -> String {
        match self {
            Reply::Simple(s) => s,
            other => panic!("expected a status reply, got {other:?}"),
        }
    }

    #[track_caller]
    fn int(self) -> i64 {
        match self {
            Reply::Int(n) => n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    #[track_caller]
    fn bulk(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(bytes) => bytes,
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }

    #[track_caller]
    fn array(self) -> Vec<Reply> {
        match self {
            Reply::Array(items) => items,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

/// Sends one command on a new connection and reads its reply.
fn resp_command(port: u16, args: &[&[u8]]) -> io::Result<Reply> {
    let mut stream = connect(port)?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(bad(format!("truncated reply {line:?}")));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let number = || {
        text.parse::<i64>()
            .map_err(|_| bad(format!("bad length {text:?}")))
    };
    match line[0] {
        b'+' => Ok(Reply::Simple(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => Ok(Reply::Int(number()?)),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Bulk(None));
            };
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes)?;
            bytes.truncate(len);
            Ok(Reply::Bulk(Some(bytes)))
        }
        b'*' => {
            let len = usize::try_from(number()?).unwrap_or(0);
            (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<_>>()
                .map(Reply::Array)
        }
        other => Err(bad(format!("unknown reply type {:?}", other as char))),
    }
}

// ---------------------------------------------------------------------------------------------
// S3

/// moto's S3 server with one bucket; rcache's objects go under [`S3Server::PREFIX`].
pub struct S3Server {
    process: ServerProcess,
}

impl S3Server {
    pub const BUCKET: &'static str = "rcache-test";
    /// The prefix in `RCACHE_REMOTE`: rcache's layout starts below it.
    pub const PREFIX: &'static str = "ci";

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    pub fn bucket(&self) -> &'static str {
        Self::BUCKET
    }

    /// Sends one request; panics on an I/O error or a status other than 2xx.
    #[track_caller]
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
        match http(self.process.port, method, path, body) {
            Ok((status, body)) if (200..300).contains(&status) => body,
            Ok((status, body)) => panic!(
                "S3 {method} {path}: HTTP {status}\n{}",
                String::from_utf8_lossy(&body)
            ),
            Err(e) => panic!("S3 {method} {path}: {e}"),
        }
    }

    /// Every object key in the bucket, following ListObjectsV2's continuation tokens.
    pub fn list(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{}?list-type=2", Self::BUCKET);
            if let Some(token) = &token {
                path.push_str("&continuation-token=");
                path.push_str(&percent_encode(token));
            }
            let xml = String::from_utf8(self.request("GET", &path, None)).expect("utf-8 XML");
            keys.extend(xml_elements(&xml, "Key"));
            token = xml_elements(&xml, "NextContinuationToken")
                .into_iter()
                .next();
            let truncated = xml_elements(&xml, "IsTruncated")
                .first()
                .map(String::as_str)
                == Some("true");
            if !truncated {
                break;
            }
            assert!(
                token.is_some(),
                "a truncated listing without a token:\n{xml}"
            );
        }
        keys.sort();
        keys
    }

    /// One object's bytes.
    #[track_caller]
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.request("GET", &format!("/{}/{key}", Self::BUCKET), None)
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        self.request("PUT", &format!("/{}/{key}", Self::BUCKET), Some(bytes));
    }

    fn layout_prefix() -> String {
        format!("{}/rcache-v1/", Self::PREFIX)
    }
}

impl RemoteServer for S3Server {
    const NAME: &'static str = "s3";

    fn start() -> S3Server {
        let process = ServerProcess::start(
            "moto's S3 server",
            |port, _dir| {
                let mut cmd = Command::new("python3");
                cmd.args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ]);
                cmd
            },
            |port| http(port, "GET", "/", None).is_ok(),
        );
        let server = S3Server { process };
        server.request("PUT", &format!("/{}", Self::BUCKET), Some(b""));
        server
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            (
                "RCACHE_REMOTE",
                format!("s3://{}/{}", Self::BUCKET, Self::PREFIX),
            ),
            ("RCACHE_S3_ENDPOINT", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn process(&self) -> &ServerProcess {
        &self.process
    }

    fn names(&self) -> Vec<String> {
        self.list()
    }

    fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        self.list()
            .into_iter()
            .map(|key| {
                let bytes = self.get(&key);
                (key, bytes)
            })
            .collect()
    }

    #[track_caller]
    fn read(&self, name: &str) -> Vec<u8> {
        self.get(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        self.put(name, bytes);
    }

    fn blob_name(&self, hex: &str) -> String {
        format!("{}blobs/{hex}", Self::layout_prefix())
    }

    fn entry_names(&self) -> Vec<String> {
        let entries = format!("{}entries/", Self::layout_prefix());
        self.list()
            .into_iter()
            .filter(|key| key.starts_with(&entries))
            .collect()
    }

    fn stop(&mut self) {
        self.process.kill();
    }
}

/// One HTTP/1.1 request on a new connection; returns the status and the body.
///
/// moto checks no signature, but it treats a request without an `Authorization` header as
/// anonymous and refuses it a private object's GET: a syntactically plausible one is enough.
/// No `Content-Type`: moto (werkzeug) would consume a form-typed body as form fields.
fn http(port: u16, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(port)?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = response[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            let len: usize = value.parse().map_err(|_| bad("bad Content-Length"))?;
            if body.len() < len {
                return Err(bad("body shorter than its Content-Length"));
            }
            body.truncate(len);
        }
    }
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok((status, body))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// The text of every `<tag>...</tag>` in `xml`, entities decoded.
fn xml_elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let end = rest.find(&close).expect("an element without its end tag");
        found.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    found
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
