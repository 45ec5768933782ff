//! [`FaultProxy`]: a TCP proxy on loopback in front of a server, that forwards bytes as they
//! come until a request holding a given pattern has passed and a given number of bytes came back
//! after it, and then fails on purpose, for every connection at once:
//!
//! - [`Fault::Die`]: every connection is shut down, and new ones are closed as soon as they are
//!   accepted (the server is gone mid-transfer);
//! - [`Fault::Hang`]: nothing more is forwarded either way, connections stay open and new ones
//!   are accepted and never answered (the server hangs).
//!
//! It lets a test cut the remote off at a chosen point of what rcache does (after the
//! prefetcher read a group, say), which killing or pausing the server cannot aim at.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does once it is triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Die,
    Hang,
}

struct Shared {
    upstream: u16,
    pattern: Vec<u8>,
    fault: Fault,
    /// Set once a request with the pattern went through.
    armed: AtomicBool,
    /// Bytes still let through towards the clients once armed.
    budget: AtomicI64,
    /// Set once the fault happened.
    failed: AtomicBool,
    /// Every stream opened, to shut them all down on [`Fault::Die`].
    streams: Mutex<Vec<TcpStream>>,
}

pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy to `127.0.0.1:<upstream>` that fails with `fault` once a request holding
    /// `pattern` has passed and `bytes_after` bytes came back from the server after it.
    pub fn start(upstream: u16, pattern: &[u8], bytes_after: u64, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Shared {
            upstream,
            pattern: pattern.to_vec(),
            fault,
            armed: AtomicBool::new(false),
            budget: AtomicI64::new(i64::try_from(bytes_after).expect("a budget that fits")),
            failed: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if accepting.failed.load(Ordering::SeqCst) && accepting.fault == Fault::Die {
                    drop(client);
                    continue;
                }
                let shared = Arc::clone(&accepting);
                thread::spawn(move || serve(shared, client));
            }
        });
        FaultProxy { port, shared }
    }

    /// Whether the fault has happened.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// A Redis URL through the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

fn serve(shared: Arc<Shared>, client: TcpStream) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", shared.upstream)) else {
        return;
    };
    {
        let mut streams = shared.streams.lock().unwrap();
        for stream in [&client, &server] {
            if let Ok(clone) = stream.try_clone() {
                streams.push(clone);
            }
        }
    }
    let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = Arc::clone(&shared);
    thread::spawn(move || pump(&up, client_reader, server, Direction::ToServer));
    pump(&shared, server_reader, client, Direction::ToClient);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

fn pump(shared: &Shared, mut from: TcpStream, mut to: TcpStream, direction: Direction) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        if shared.failed.load(Ordering::SeqCst) {
            return hold(shared, &from, &to);
        }
        if direction == Direction::ToServer && contains(chunk, &shared.pattern) {
            shared.armed.store(true, Ordering::SeqCst);
        }
        let mut allowed = chunk.len();
        if direction == Direction::ToClient && shared.armed.load(Ordering::SeqCst) {
            let before = shared
                .budget
                .fetch_sub(chunk.len() as i64, Ordering::SeqCst);
            allowed = usize::try_from(before.max(0)).unwrap().min(chunk.len());
            if allowed < chunk.len() {
                let _ = to.write_all(&chunk[..allowed]);
                trigger(shared);
                return hold(shared, &from, &to);
            }
        }
        if to.write_all(&chunk[..allowed]).is_err() {
            return;
        }
    }
}

/// The fault: [`Fault::Die`] shuts every connection down; [`Fault::Hang`] only stops the
/// pumps, which then sit in [`hold`].
fn trigger(shared: &Shared) {
    shared.failed.store(true, Ordering::SeqCst);
    if shared.fault == Fault::Die {
        for stream in shared.streams.lock().unwrap().iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// After the fault: a dead proxy's pump shuts its sockets down (also those of a connection
/// that opened while the fault happened) and ends; a hung one keeps its connection open and
/// forwards nothing, for as long as the test runs.
fn hold(shared: &Shared, from: &TcpStream, to: &TcpStream) {
    match shared.fault {
        Fault::Die => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
        Fault::Hang => loop {
            thread::sleep(Duration::from_secs(3600));
        },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}
