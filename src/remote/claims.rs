//! Claims: one process of a store fetches a unit from the remote at a time.
//!
//! The prefetcher and the build's own lookups reach for the same entries: without a word
//! between them, a lookup that finds nothing locally fetches what the prefetcher is bringing in
//! at that moment, and the prefetcher fetches what a lookup is bringing in, and the link carries
//! both (on `100mbit-30ms`, webrender's remote-warm build took 137 MiB down instead of 92).
//! So whoever fetches a unit first claims its invocation key: an empty-named file
//! `v2/claims/<invocation key>` created with `create_new`, holding the claimer's pid and start
//! time, removed when the fetch ends ([`Claim`]'s drop). A lookup that finds a claim waits for it
//! to go (bounded, and never on a claimer that no longer runs) and then looks in the local store
//! again; the prefetcher skips a unit someone else claimed.
//!
//! Claims are advisory: one that cannot be made or read changes nothing but the duplicate work.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::group::ProcessIdentity;
use crate::hash::{Key, hex};
use crate::store::Store;

/// The longest a lookup waits for another process's fetch of its unit before asking the remote
/// itself.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting lookup looks at the claim.
const POLL: Duration = Duration::from_millis(5);

/// A claim this process holds; removed when dropped.
pub struct Claim {
    path: PathBuf,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn claim_path(store: &Store, invocation_key: &Key) -> PathBuf {
    store.layout.claims_dir().join(hex(invocation_key))
}

/// Claims the unit for this process; `None` when another process holds it (or the claim
/// cannot be written).
pub fn claim(store: &Store, invocation_key: &Key) -> Option<Claim> {
    let path = claim_path(store, invocation_key);
    let me = ProcessIdentity::of(std::process::id())?;
    let create = || fs::File::create_new(&path);
    let mut file = match create() {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(store.layout.claims_dir()).ok()?;
            create().ok()?
        }
        other => other.ok()?,
    };
    // The owner is written after the create: a reader that finds the file empty waits (the
    // owner is alive, writing), and a crash here leaves an empty claim that `MAX_WAIT` ends.
    let _ = file.write_all(me.to_arg().as_bytes());
    Some(Claim { path })
}

/// Waits while another running process holds the unit's claim, at most [`MAX_WAIT`]; a claim
/// whose owner is gone is removed. True if there was a claim to wait for.
pub fn wait_for_others(store: &Store, invocation_key: &Key) -> bool {
    let path = claim_path(store, invocation_key);
    let started = Instant::now();
    let mut waited = false;
    while started.elapsed() < MAX_WAIT {
        let owner = match fs::read_to_string(&path) {
            Ok(text) => ProcessIdentity::from_arg(text.trim()),
            Err(_) => return waited, // no claim (or none readable): go on
        };
        if owner.is_some_and(|owner| !owner.running()) {
            let _ = fs::remove_file(&path);
            return waited;
        }
        waited = true;
        thread::sleep(POLL);
    }
    waited
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_at_a_time_and_a_dead_owner_is_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let key = [3; 32];
        assert!(!wait_for_others(&store, &key), "no claim: no wait");
        let held = claim(&store, &key).expect("the first claim");
        assert!(
            claim(&store, &key).is_none(),
            "a second claim while one is held"
        );
        let path = claim_path(&store, &key);
        drop(held);
        assert!(!path.exists(), "a dropped claim is removed");

        // A claim left by a process that is gone: removed, not waited on for a minute.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = ProcessIdentity::of(child.id()).unwrap();
        child.wait().unwrap();
        fs::write(&path, gone.to_arg()).unwrap();
        let started = Instant::now();
        assert!(!wait_for_others(&store, &key));
        assert!(started.elapsed() < MAX_WAIT);
        assert!(!path.exists());
        assert!(claim(&store, &key).is_some());
    }

    #[test]
    fn a_lookup_waits_while_the_owner_fetches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let key = [4; 32];
        let held = claim(&store, &key).unwrap();
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        assert!(wait_for_others(&store, &key), "a held claim is waited for");
        assert!(!claim_path(&store, &key).exists());
        releaser.join().unwrap();
    }
}
