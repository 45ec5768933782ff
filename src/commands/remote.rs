//! `rcache remote check | flush`, the detached uploader (`rcache remote upload`) and the
//! detached prefetcher (`rcache remote prefetch`).
//!
//! - `check` tells whether the remote is reachable and, unless read-only, writable: it reads,
//!   then writes, reads back and deletes a scratch object. A check that passes ends a backoff
//!   left by an earlier failure.
//! - `flush` waits for a running uploader, then publishes what is still queued (ignoring the
//!   backoff: it is asked for). CI jobs run it last, since runners kill orphan processes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::config::{Config, format_size};
use crate::remote::layout::Object;
use crate::remote::{Remote, queue, uploader};
use crate::store::Store;
use crate::store::state::StateUpdate;

/// How long `flush` waits for a running uploader to finish.
const FLUSH_WAIT: Duration = Duration::from_secs(600);

fn configured(config: &Config) -> anyhow::Result<Remote> {
    match Remote::from_config(config)? {
        Some(remote) => Ok(remote),
        None => {
            bail!("no remote is configured (set RCACHE_REMOTE, or `remote` in the config file)")
        }
    }
}

pub fn check(config: &Config) -> anyhow::Result<ExitCode> {
    let remote = configured(config)?;
    println!("remote: {}", remote.location);
    let backend = remote.backend();
    let probe = Object::Check(format!(
        "{}-{}",
        std::process::id(),
        crate::clock::unix_ms(std::time::SystemTime::now())
    ));
    let started = Instant::now();
    if let Err(err) = backend.candidates(&[0; 32], 1) {
        println!("reachable: no ({err})");
        return Ok(ExitCode::FAILURE);
    }
    println!("reachable: yes ({:.1} ms)", ms(started));
    if remote.readonly {
        println!("writable: not tried (RCACHE_REMOTE_READONLY is set)");
    } else {
        let payload = format!("rcache remote check {probe:?}").into_bytes();
        let started = Instant::now();
        let written = backend
            .put_many(vec![(probe.clone(), payload.clone())])
            .and_then(|()| backend.get_many(std::slice::from_ref(&probe), 0));
        let _ = backend.delete(&probe);
        match written {
            Ok(read) if read.first() == Some(&Some(payload)) => {
                println!(
                    "writable: yes ({:.1} ms to write, read back and delete)",
                    ms(started)
                );
            }
            Ok(_) => {
                println!("writable: no (an object written could not be read back)");
                return Ok(ExitCode::FAILURE);
            }
            Err(err) => {
                println!("writable: no ({err})");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    println!(
        "entries signed: {}",
        if remote.secret().is_some() {
            "yes (RCACHE_REMOTE_KEY is set; unsigned entries are refused)"
        } else {
            "no"
        }
    );
    if let Ok(store) = Store::open(&config.dir.value) {
        if crate::remote::backoff::active(&store) {
            println!("backoff: ended (builds were skipping the remote after a failure)");
        }
        let _ = store.state.set_remote_skipped_until(0);
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

pub fn flush(config: &Config) -> anyhow::Result<ExitCode> {
    let store = crate::commands::stats::open(config)?;
    let queued = queue::pending(&store)?.len();
    let remote = configured(config)?;
    if remote.readonly {
        println!("read-only remote: nothing is published ({queued} entries stay queued)");
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = store
        .upload_lock(FLUSH_WAIT)
        .context("waiting for the running uploader")?;
    let mut update = StateUpdate::default();
    let drained = uploader::drain(&remote, &store, &mut update)?;
    let _ = store.state.apply(&update);
    println!(
        "published {} entries ({} blobs, {} uploaded); {} no longer in the local store",
        drained.published,
        drained.blobs_uploaded,
        format_size(drained.bytes_up),
        drained.dropped
    );
    if let Some(err) = drained.stopped_by {
        let left = queue::pending(&store)?.len();
        println!("stopped by a remote failure: {err}; {left} entries stay queued");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The detached uploader a store starts. Its stdio is `/dev/null`: faults go to the stats.
///
/// It publishes on a thread at idle priority (`detached::yield_to_the_build`: a cold build keeps
/// every core busy with rustc, and the uploader's compression took from it), and writes its
/// counts from this thread, at normal priority, so that the state env's write lock is never held
/// by a thread the scheduler starves.
pub fn upload(config: &Config) -> anyhow::Result<ExitCode> {
    let store = crate::commands::stats::open(config)?;
    let publish = || -> (StateUpdate, anyhow::Result<()>) {
        crate::detached::yield_to_the_build();
        let mut update = StateUpdate::default();
        let result = match Remote::from_config(config) {
            Ok(Some(remote)) => uploader::run_uploader(&remote, &store, &mut update)
                .map(drop)
                .map_err(anyhow::Error::from),
            Ok(None) => Ok(()),
            Err(err) => Err(err.into()),
        };
        (update, result)
    };
    let (update, result) = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .spawn_scoped(scope, publish)
            .map(|thread| thread.join())
    })
    .context("start the uploader's thread")?
    .map_err(|_| anyhow::anyhow!("the uploader's thread panicked"))?;
    let _ = store.state.apply(&update);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The detached prefetcher (`crate::remote::prefetch`): bad arguments are an error; what the
/// prefetch met is counted in the stats.
pub fn prefetch(config: &Config, group: &str, build: &str) -> anyhow::Result<ExitCode> {
    let group = blake3::Hash::from_hex(group)
        .map(|hash| *hash.as_bytes())
        .with_context(|| format!("--group {group:?} is not 64 hex digits"))?;
    let build = crate::remote::group::ProcessIdentity::from_arg(build)
        .with_context(|| format!("--build {build:?} is not <pid>:<start time>"))?;
    let store = crate::commands::stats::open(config)?;
    let Some(remote) = Remote::from_config(config)? else {
        return Ok(ExitCode::SUCCESS);
    };
    crate::remote::prefetch::run(&remote, &store, &group, build);
    Ok(ExitCode::SUCCESS)
}
