//! [`RedisServer`]: `redis-server` on a free port, and a RESP client to look inside it.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::process::Command;

use super::{RemoteServer, ServerProcess, connect, is_hex_key};

/// `redis-server` without persistence, database 0; with a password
/// ([`RedisServer::start_with_password`]), or open to any client on the loopback.
pub struct RedisServer {
    process: ServerProcess,
    password: Option<String>,
}

/// The remote layout's key prefix in Redis (format version 2).
const REDIS_PREFIX: &str = "rcache-v4:";

impl RedisServer {
    /// A server that refuses clients without `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::start_as(Some(password))
    }

    fn start_as(password: Option<&str>) -> RedisServer {
        let process = ServerProcess::start(
            "redis-server",
            |port, dir| {
                let mut cmd = Command::new("redis-server");
                cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(dir);
                if let Some(password) = password {
                    cmd.args(["--requirepass", password]);
                }
                cmd
            },
            |port| {
                let pong = resp_command(port, password, &[b"PING"]);
                matches!(pong, Ok(Reply::Simple(s)) if s == "PONG")
            },
        );
        RedisServer {
            process,
            password: password.map(str::to_string),
        }
    }

    /// `redis://127.0.0.1:<port>/0`, without the password.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.process.port)
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// Runs one command; panics on an I/O error or an error reply.
    #[track_caller]
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        let what = || String::from_utf8_lossy(&args.join(&b' ')).into_owned();
        match resp_command(self.process.port, self.password.as_deref(), args) {
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

    /// A string key's value, `None` when it does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.command(&[b"GET", key.as_bytes()]).bulk()
    }

    pub fn set(&self, key: &str, value: &[u8]) {
        self.command(&[b"SET", key.as_bytes(), value]);
    }

    /// How many members a sorted set has.
    /// `INFO <section>`, as the server prints it.
    pub fn info(&self, section: &str) -> String {
        let reply = self.command(&[b"INFO", section.as_bytes()]);
        String::from_utf8(reply.bulk().expect("INFO answers a string")).expect("INFO is text")
    }

    /// Zeroes the server's command statistics (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        self.command(&[b"CONFIG", b"RESETSTAT"]).simple();
    }

    pub fn zcard(&self, key: &str) -> i64 {
        self.command(&[b"ZCARD", key.as_bytes()]).int()
    }
}

impl RemoteServer for RedisServer {
    const NAME: &'static str = "redis";

    fn start() -> RedisServer {
        RedisServer::start_as(None)
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
                "zset" => length_prefixed(self.command(&[b"ZRANGE", key.as_bytes(), b"0", b"-1"])),
                "list" => length_prefixed(self.command(&[b"LRANGE", key.as_bytes(), b"0", b"-1"])),
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

    #[track_caller]
    fn delete(&self, name: &str) {
        let deleted = self.command(&[b"DEL", name.as_bytes()]).int();
        assert_eq!(deleted, 1, "redis has no key {name}");
    }

    fn rename(&self, from: &str, to: &str) {
        self.command(&[b"RENAME", from.as_bytes(), to.as_bytes()]);
    }

    fn blob_name(&self, hex: &str) -> String {
        format!("{REDIS_PREFIX}blob:{hex}")
    }

    /// `rcache-v4:blob:<hex>`, `rcache-v4:entry:<hex>`, `rcache-v4:candidates:<hex>` (a sorted
    /// set of candidates: the kind of its members), `rcache-v4:group:<hex>` (a list of parts).
    fn layout_kind(&self, name: &str) -> Option<&'static str> {
        let (kind, key) = name.strip_prefix(REDIS_PREFIX)?.split_once(':')?;
        if !is_hex_key(key) {
            return None;
        }
        match kind {
            "blob" => Some("blob"),
            "entry" => Some("entry"),
            "candidates" => Some("candidate"),
            "group" => Some("group"),
            _ => None,
        }
    }

    fn candidate_count(&self, hex: &str) -> usize {
        let count = self.zcard(&format!("{REDIS_PREFIX}candidates:{hex}"));
        usize::try_from(count).expect("ZCARD is not negative")
    }

    fn stop(&mut self) {
        self.process.kill();
    }
}

/// The elements of an array reply (a set's members, a list's elements), each after its length
/// as 8 little-endian bytes: one byte string that compares equal only if every element does.
fn length_prefixed(reply: Reply) -> Vec<u8> {
    let mut bytes = Vec::new();
    for element in reply.array() {
        let element = element.bulk().expect("a byte string");
        bytes.extend_from_slice(&(element.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&element);
    }
    bytes
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

/// Sends one command on a new connection (authenticated first when there is a `password`)
/// and reads its reply.
fn resp_command(port: u16, password: Option<&str>, args: &[&[u8]]) -> io::Result<Reply> {
    let stream = connect(port)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let send = |args: &[&[u8]]| {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        (&stream).write_all(&request)
    };
    if let Some(password) = password {
        send(&[b"AUTH", password.as_bytes()])?;
        if let Reply::Error(e) = read_reply(&mut reader)? {
            return Ok(Reply::Error(e));
        }
    }
    send(args)?;
    read_reply(&mut reader)
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
