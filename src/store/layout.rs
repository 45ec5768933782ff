//! Every on-disk name, version number and size constant of the store, in one place.
//!
//! A change to the meaning of anything stored bumps [`FORMAT_VERSION`] (a new `vN/` directory, so an
//! old store is never misread). A change to what goes into a cache key bumps [`KEY_VERSION`] (old
//! entries simply stop matching). `store-format/README.md` documents both.

use std::path::{Path, PathBuf};

/// Version of the on-disk layout and encodings; names the `v2/` directory.
pub const FORMAT_VERSION: u32 = 2;

/// Version of the key derivation. Hashed into every cache key, right after the key's kind.
pub const KEY_VERSION: u32 = 4;

/// LMDB map size, identical in every process (docs/facts.md §1: a process asking for less gets
/// less). Sparse on Linux: the file grows only with the data written.
pub const INDEX_MAP_SIZE: usize = 64 << 30;

/// Map size of the NO_SYNC state env (stats, last-use times, memoized hashes).
pub const STATE_MAP_SIZE: usize = 16 << 30;

/// Reader slots per env. Each costs 64 bytes in lock.mdb; one per concurrently running rcache.
pub const MAX_READERS: u32 = 1022;

/// How many manifest candidates one invocation key keeps, newest first.
pub const MAX_CANDIDATES: usize = 16;

/// How long a wrapper waits for the store lock before skipping the store step.
pub const STORE_LOCK_TIMEOUT_MS: u64 = 2000;

/// Entries gc removes per index write transaction. The store lock is released between batches,
/// so a wrapper waiting to store (for at most [`STORE_LOCK_TIMEOUT_MS`]) waits for one batch at
/// most: tens of milliseconds (3 blob unlinks per entry, then one commit). Fewer, larger
/// batches pay for fewer commits (each an fdatasync): see `benches/gc.rs`.
pub const GC_BATCH_ENTRIES: usize = 1024;

/// Threads that unlink a batch's freed blob files at once (see `index/removal.rs`).
pub const GC_UNLINK_THREADS: usize = 8;

/// How long gc waits for the store lock before each batch (a wrapper holds it for one commit).
pub const GC_LOCK_TIMEOUT_MS: u64 = 30_000;

/// The sweep removes an orphan blob or a temp file only when it is older than this: a blob
/// written for an entry that is not committed yet, or a temp file of a running compile, is
/// younger (see store-format/README.md, "gc").
pub const GC_GRACE_SECS: u64 = 3600;

/// A unit's explain history is dropped by gc when its newest record is older than this: 30 days.
pub const HISTORY_MAX_AGE_MS: u64 = 30 * 24 * 3600 * 1000;

/// Automatic gc trims to this share of the size limit, so that it does not run again after
/// every store.
pub const AUTO_GC_TARGET_PERCENT: u64 = 90;

/// With an age limit set, how often a store starts an automatic gc even under the size limit.
pub const AUTO_GC_AGE_CHECK_SECS: u64 = 3600;

/// Names of the LMDB databases in the durable index env.
pub mod index_db {
    /// invocation key -> manifest (candidate list).
    pub const MANIFESTS: &str = "manifests";
    /// result key -> entry.
    pub const ENTRIES: &str = "entries";
    /// blob hash -> reference count and size.
    pub const BLOB_REFS: &str = "blob_refs";
    /// fixed keys -> store-wide totals and format metadata.
    pub const META: &str = "meta";
    pub const ALL: [&str; 4] = [MANIFESTS, ENTRIES, BLOB_REFS, META];
}

/// Names of the LMDB databases in the NO_SYNC state env.
pub(crate) mod state_db {
    /// counter name -> u64 LE.
    pub const COUNTERS: &str = "counters";
    /// result key -> last use, unix ms as u64 LE.
    pub const LAST_USE: &str = "last_use";
    /// file memo key -> blake3 of the file's content.
    pub const FILE_HASHES: &str = "file_hashes";
    /// compiler memo key -> compiler identity.
    pub const COMPILERS: &str = "compilers";
    /// unit id -> the unit's explain history (`store::history`).
    pub const UNIT_HISTORY: &str = "unit_history";
    /// build id -> the build's extent (`store::builds`).
    pub const BUILDS: &str = "builds";
    /// build id ++ start ms ++ pid -> one invocation of that build (`store::builds`).
    pub const BUILD_UNITS: &str = "build_units";
    /// blob verified-memo key -> blob hash, for blobs written without a sync (fetched from the
    /// remote); cleared by the first process after a reboot.
    pub const UNSYNCED_VERIFIED: &str = "unsynced_verified";
    pub const ALL: [&str; 8] = [
        COUNTERS,
        LAST_USE,
        FILE_HASHES,
        COMPILERS,
        UNIT_HISTORY,
        BUILDS,
        BUILD_UNITS,
        UNSYNCED_VERIFIED,
    ];
}

/// Keys of the index `meta` database.
pub(crate) mod meta_key {
    pub const FORMAT_VERSION: &[u8] = b"format_version";
    pub const STORE_BYTES: &[u8] = b"store_bytes";
}

/// Content of the `CACHEDIR.TAG` file (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by rcache.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// Paths of one store rooted at `root` (`$RCACHE_DIR`).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn cachedir_tag(&self) -> PathBuf {
        self.root.join("CACHEDIR.TAG")
    }
    pub fn version_dir(&self) -> PathBuf {
        self.root.join(format!("v{FORMAT_VERSION}"))
    }
    /// The directories of older store formats (`v1/` beside `v2/`): never read, left behind by an
    /// upgrade until `rcache gc` or `rcache clear` removes them.
    pub fn older_version_dirs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name();
                let version = name.to_str().and_then(|name| name.strip_prefix('v'));
                version
                    .and_then(|version| version.parse::<u32>().ok())
                    .is_some_and(|version| version < FORMAT_VERSION)
                    && entry.file_type().is_ok_and(|kind| kind.is_dir())
            })
            .map(|entry| entry.path())
            .collect();
        dirs.sort();
        dirs
    }
    pub fn index_dir(&self) -> PathBuf {
        self.version_dir().join("index")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.version_dir().join("state")
    }
    /// Marker present while the state env is being checked after a reboot (see `store::state`).
    pub fn state_check_marker(&self) -> PathBuf {
        self.version_dir().join("state.checking")
    }
    pub fn blobs_dir(&self) -> PathBuf {
        self.version_dir().join("blobs")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.version_dir().join("tmp")
    }
    /// Short-timeout lock taken before the index write transaction of a store or gc batch.
    pub fn store_lock(&self) -> PathBuf {
        self.version_dir().join("store.lock")
    }
    /// Held by the automatic gc while it runs, so that stores start at most one.
    pub fn gc_lock(&self) -> PathBuf {
        self.version_dir().join("gc.lock")
    }
    /// Incremental sessions kept beside entries (`store::sessions`).
    pub fn sessions_dir(&self) -> PathBuf {
        self.version_dir().join("sessions")
    }
    /// One claim per unit a process of this store is fetching from the remote (see
    /// `crate::remote::claims`).
    pub fn claims_dir(&self) -> PathBuf {
        self.version_dir().join("claims")
    }
    /// One tally of remote outcomes per build (see `crate::remote::cold`).
    pub fn remote_builds_dir(&self) -> PathBuf {
        self.version_dir().join("remote-builds")
    }
    /// One marker per prefetcher started for a build (see `crate::remote::prefetch`).
    pub fn prefetch_dir(&self) -> PathBuf {
        self.version_dir().join("prefetch")
    }
    /// Entries waiting for the remote uploader, one empty file each (see `crate::remote::queue`).
    pub fn remote_queue_dir(&self) -> PathBuf {
        self.version_dir().join("remote-queue")
    }
    /// Held by a process computing a compiler's identity (`Store::identity_lock`).
    pub fn identity_lock(&self) -> PathBuf {
        self.version_dir().join("identity.lock")
    }
    /// Held by the remote uploader while it runs, so that stores start at most one.
    pub fn remote_upload_lock(&self) -> PathBuf {
        self.version_dir().join("remote-upload.lock")
    }
    /// `blobs/ab/cdef...`: two hex digits of fan-out, then the remaining 62.
    pub fn blob_path(&self, hash: &blake3::Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.blobs_dir().join(&hex[..2]).join(&hex[2..])
    }
    /// Parses a path under `blobs/` back into its hash; `None` for anything else.
    pub fn blob_hash_of(path: &Path) -> Option<blake3::Hash> {
        let name = path.file_name()?.to_str()?;
        let fan = path.parent()?.file_name()?.to_str()?;
        if fan.len() != 2 || name.len() != 62 {
            return None;
        }
        blake3::Hash::from_hex(format!("{fan}{name}")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_round_trip() {
        let layout = Layout::new("/c");
        let hash = blake3::hash(b"x");
        let path = layout.blob_path(&hash);
        assert!(path.starts_with("/c/v2/blobs"));
        assert_eq!(Layout::blob_hash_of(&path), Some(hash));
        assert_eq!(
            Layout::blob_hash_of(Path::new("/c/v2/blobs/ab/short")),
            None
        );
    }
}
