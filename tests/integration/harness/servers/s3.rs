//! [`S3Server`]: moto's S3 server on a free port with one bucket, and an HTTP/1.1 client to
//! list, read, write and delete its objects.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::process::Command;

use super::{RemoteServer, ServerProcess, connect, is_hex_key};

/// moto's S3 server with one bucket; rcache's objects go under a prefix (`ci`), or at the
/// bucket's root ([`S3Server::start_without_prefix`]).
pub struct S3Server {
    process: ServerProcess,
    /// The prefix in `RCACHE_REMOTE`, without slashes; rcache's layout starts below it.
    prefix: Option<&'static str>,
}

impl S3Server {
    pub const BUCKET: &'static str = "rcache-test";

    /// A server whose clients use `s3://<bucket>`: no prefix.
    pub fn start_without_prefix() -> S3Server {
        S3Server::start_as(None)
    }

    fn start_as(prefix: Option<&'static str>) -> S3Server {
        let process = ServerProcess::start(
            "moto's S3 server",
            |port, _dir| {
                let mut cmd = Command::new("python3");
                cmd.args(["-m", "moto.server", "-H", "127.0.0.1"])
                    .args(["-p", &port.to_string()]);
                cmd
            },
            |port| http(port, "GET", "/", None).is_ok(),
        );
        let server = S3Server { process, prefix };
        server.request("PUT", &format!("/{}", Self::BUCKET), Some(b""));
        // moto loads parts of itself on their first use; a test's first requests must not pay
        // that against rcache's 1 s timeout.
        server.put("warm-up", b"x");
        server.request("HEAD", &format!("/{}/warm-up", Self::BUCKET), None);
        server.get("warm-up");
        server.list();
        server.delete("warm-up");
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
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

    /// The object keys that start with `prefix`.
    fn names_under(&self, prefix: &str) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|key| key.starts_with(prefix))
            .collect()
    }

    /// Where the remote layout (format version 4) starts in the bucket: `[<prefix>/]rcache-v4/`.
    pub fn layout_prefix(&self) -> String {
        match self.prefix {
            Some(prefix) => format!("{prefix}/rcache-v4/"),
            None => "rcache-v4/".to_string(),
        }
    }
}

impl RemoteServer for S3Server {
    const NAME: &'static str = "s3";

    fn start() -> S3Server {
        S3Server::start_as(Some("ci"))
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            (
                "RCACHE_REMOTE",
                match self.prefix {
                    Some(prefix) => format!("s3://{}/{prefix}", Self::BUCKET),
                    None => format!("s3://{}", Self::BUCKET),
                },
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

    fn delete(&self, name: &str) {
        self.request("DELETE", &format!("/{}/{name}", Self::BUCKET), None);
    }

    /// S3 has no rename: a copy through this client, then a delete.
    fn rename(&self, from: &str, to: &str) {
        let bytes = self.get(from);
        self.put(to, &bytes);
        self.delete(from);
    }

    fn blob_name(&self, hex: &str) -> String {
        format!("{}blobs/{hex}", self.layout_prefix())
    }

    /// `blobs/<hex>`, `entries/<hex>`, `candidates/<hex>/<16 hex>-<hex>` below the layout prefix.
    fn layout_kind(&self, name: &str) -> Option<&'static str> {
        let rest = name.strip_prefix(&self.layout_prefix())?;
        let (dir, rest) = rest.split_once('/')?;
        match (dir, rest.split_once('/')) {
            ("blobs", None) if is_hex_key(rest) => Some("blob"),
            ("entries", None) if is_hex_key(rest) => Some("entry"),
            ("candidates", Some((key, candidate))) => {
                let (time, result) = candidate.split_once('-')?;
                let time_ok = time.len() == 16 && time.bytes().all(|b| b.is_ascii_hexdigit());
                (is_hex_key(key) && time_ok && is_hex_key(result)).then_some("candidate")
            }
            ("groups", Some((group, part))) => {
                let (time, random) = part.split_once('-')?;
                let hex16 =
                    |text: &str| text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
                (is_hex_key(group) && hex16(time) && hex16(random)).then_some("group")
            }
            _ => None,
        }
    }

    fn candidate_count(&self, hex: &str) -> usize {
        self.names_under(&format!("{}candidates/{hex}/", self.layout_prefix()))
            .len()
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
    parse_response(&response, method == "HEAD")
}

/// Splits a response into its status and body (none for a HEAD request, whatever its
/// `Content-Length` says).
fn parse_response(response: &[u8], head_request: bool) -> io::Result<(u16, Vec<u8>)> {
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
        } else if name.eq_ignore_ascii_case("content-length") && !head_request {
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
