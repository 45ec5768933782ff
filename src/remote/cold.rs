//! A build that finds the remote cold stops asking it.
//!
//! On a link with a real round trip every lookup of a miss waits on the network before the
//! compile starts (a connection and a read: two round trips, 60 ms at 30 ms), and a build the
//! remote has never seen (a new toolchain, a first CI run) makes hundreds of them for nothing.
//! So each build keeps a tally of its remote outcomes in the store, `v2/remote-builds/<build>`
//! (one byte per lookup appended: `m` a miss, `h` a hit; `<build>` is the group of
//! [`super::group`]): once it holds `RCACHE_REMOTE_COLD_AFTER` (8) misses and no hit, the
//! build's later lookups are not sent (`remote.not_asked`; their compiles run and are published
//! as usual). One hit anywhere in the build keeps every lookup going. Cargo starts a build with
//! its leaves, which a remote that knows anything of the project has: a build that finds none of
//! its first 8 units there is one the remote cannot serve (a new toolchain, other flags, or the
//! units an edit changed, in a dev loop).
//!
//! The tally is advisory: a file that cannot be read or written means "ask".

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::fetch::RemoteOutcome;
use crate::hash::hex;
use crate::store::Store;

/// Tallies older than this belong to builds long over: removed when a build starts one.
const TALLY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const MISS: u8 = b'm';
const HIT: u8 = b'h';

fn tally_path(store: &Store) -> PathBuf {
    let group = super::group::this_build();
    store.layout.remote_builds_dir().join(hex(&group))
}

/// Whether this build has stopped asking the remote: `cold_after` lookups missed and none hit
/// (never when `cold_after` is 0).
pub fn stopped_asking(store: &Store, cold_after: u64) -> bool {
    if cold_after == 0 {
        return false;
    }
    let Ok(tally) = fs::read(tally_path(store)) else {
        return false;
    };
    !tally.contains(&HIT) && tally.len() as u64 >= cold_after
}

/// Adds a lookup's outcome to this build's tally: a hit, or a miss (a rejected entry is one);
/// faults and skips are left out.
pub fn note(store: &Store, outcome: RemoteOutcome) {
    let byte = match outcome {
        RemoteOutcome::Hit => HIT,
        RemoteOutcome::Miss | RemoteOutcome::Rejected => MISS,
        RemoteOutcome::Error | RemoteOutcome::Skipped | RemoteOutcome::NotAsked => return,
    };
    let path = tally_path(store);
    let new = !path.exists();
    if new {
        let dir = store.layout.remote_builds_dir();
        if fs::create_dir_all(&dir).is_err() {
            return;
        }
        crate::warn_once::remove_files_older_than(&dir, TALLY_MAX_AGE);
    }
    // One byte appended with O_APPEND: concurrent lookups of the build never lose one.
    let appended = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(&[byte]));
    if let Err(err) = appended {
        tracing::debug!("could not note a remote outcome: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_stops_asking_after_its_first_misses_unless_one_hit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        assert!(!stopped_asking(&store, 3));
        for _ in 0..2 {
            note(&store, RemoteOutcome::Miss);
        }
        note(&store, RemoteOutcome::Error); // not counted
        assert!(!stopped_asking(&store, 3));
        note(&store, RemoteOutcome::Rejected);
        assert!(stopped_asking(&store, 3));
        assert!(!stopped_asking(&store, 0), "0: never stops");
        note(&store, RemoteOutcome::Hit);
        assert!(!stopped_asking(&store, 3), "a hit keeps the build asking");
    }
}
