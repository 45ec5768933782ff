//! Content hashes of files with blake3, and the stat stamp that memoizes them.
//!
//! How a file is read depends on its size and on whether it can be rewritten in place
//! (docs/design.md §2, docs/facts.md §2):
//! - below [`MMAP_THRESHOLD`], or for any file an editor may truncate (sources), plain reads;
//! - above it, for files that are only ever replaced by rename, told by their extension (rlib,
//!   rmeta, .so, .a, .dylib: [`Mutability::of`]), a memory map, hashed on rayon's pool above
//!   [`RAYON_THRESHOLD`]. Store blobs have no extension, so they are always read.
//!
//! A memory-mapped file truncated underneath kills the process with SIGBUS, which is why sources
//! are never mapped. The thresholds come from `benches/hashing.rs`.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Key, KeyHasher};

/// Files at least this large and immutable are memory-mapped.
pub const MMAP_THRESHOLD: u64 = 1 << 20;

/// Mapped files at least this large are hashed on several threads.
pub const RAYON_THRESHOLD: u64 = 16 << 20;

/// Margin for the racy-timestamp rule: filesystem timestamps come from a coarse clock, and a
/// change made in the same tick as (or just before) hashing would be invisible to a stat-keyed memo.
pub const RACY_MARGIN: Duration = Duration::from_secs(1);

/// How a file may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Replaced only by rename: rlib, rmeta, shared objects, archives.
    ReplacedByRename,
    /// May be rewritten or truncated in place at any moment: sources and everything unknown.
    InPlace,
}

impl Mutability {
    /// Classifies a path by its extension.
    pub fn of(path: &Path) -> Mutability {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("rlib" | "rmeta" | "so" | "a" | "dylib") => Mutability::ReplacedByRename,
            _ => Mutability::InPlace,
        }
    }
}

/// The stat data that identifies one version of a file, for memoizing its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileStamp {
    pub fn of(meta: &Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }

    /// True if `other` is the same version of the content: the same inode, size and mtime. The
    /// ctime is left out: it also moves when the link count does, and the store links and
    /// unlinks outputs it holds as blobs (docs/design.md §3, "Outputs stored by link") while
    /// other processes hash them. A write changes the mtime; the memo key keeps the ctime.
    pub fn same_content_version(&self, other: &FileStamp) -> bool {
        (self.dev, self.ino, self.size, self.mtime_ns)
            == (other.dev, other.ino, other.size, other.mtime_ns)
    }

    /// The memo key: LMDB keys are at most 511 bytes, so the path is hashed in.
    pub fn memo_key(&self, path: &Path) -> Key {
        KeyHasher::new("file-memo", 1)
            .field("path", path.as_os_str().as_bytes())
            .field("dev", &self.dev.to_le_bytes())
            .field("ino", &self.ino.to_le_bytes())
            .field("size", &self.size.to_le_bytes())
            .field("mtime", &self.mtime_ns.to_le_bytes())
            .field("ctime", &self.ctime_ns.to_le_bytes())
            .finish()
    }

    /// True if the file was modified at or after `moment` (either timestamp).
    pub fn changed_since(&self, moment: SystemTime) -> bool {
        self.changed_since_ns(unix_ns(moment))
    }

    /// True if either timestamp is at or after `moment_ns`. A timestamp with no sub-second part
    /// probably comes from a filesystem with whole-second granularity, and is compared with the
    /// moment truncated to its second, so that a change later in that same second is not missed.
    pub fn changed_since_ns(&self, moment_ns: i128) -> bool {
        [self.mtime_ns, self.ctime_ns].into_iter().any(|stamp| {
            let reference = if stamp % NANOS_PER_SECOND == 0 {
                moment_ns.div_euclid(NANOS_PER_SECOND) * NANOS_PER_SECOND
            } else {
                moment_ns
            };
            stamp >= reference
        })
    }

    /// Git's racy rule: a hash taken at `hashing_started` may be memoized only if the file's
    /// timestamps are older than that moment minus the clock's granularity.
    pub fn is_racy(&self, hashing_started: SystemTime) -> bool {
        self.changed_since(hashing_started - RACY_MARGIN)
    }
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// The longest [`filesystem_tick`] waits for the clock to move.
const TICK_WAIT_LIMIT: Duration = Duration::from_millis(30);

/// The start of a fresh tick of the clock files are stamped from, in nanoseconds.
///
/// The kernel stamps files from a coarse clock (a tick of 1-10 ms), so two writes in one tick
/// carry the same timestamp and cannot be ordered. This waits (bounded) for that clock to move
/// to a new tick and returns it. A compile started after this call reads every file written
/// before it; a file written after it has a timestamp at or after the one returned, on every
/// filesystem: on Linux the clock read is `CLOCK_REALTIME_COARSE`, the one non-multigrain
/// filesystems stamp from, and multigrain timestamps (Linux 6.13+) are never below it. Reading a
/// file's timestamp instead would not do: on a multigrain filesystem it can be fine-grained, above
/// the coarse stamps another filesystem gives a later write. If the clock does not move in time,
/// the last reading is returned, which only makes the caller more cautious.
pub fn filesystem_tick() -> i128 {
    let first = coarse_now_ns();
    let deadline = std::time::Instant::now() + TICK_WAIT_LIMIT;
    loop {
        let now = coarse_now_ns();
        if now != first || std::time::Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// [`filesystem_tick`] with a head start: `earlier` is a reading of the same clock
/// ([`filesystem_clock_ns`]) taken before the work that led here. If the clock has moved since,
/// its current tick is already a fresh one for every file written before `earlier` was read, and
/// nothing is waited for; otherwise this waits as [`filesystem_tick`] does. A file written
/// between the two readings may look as new as one written after the call, which only makes the
/// caller more cautious. A wrapper process reads the clock first thing, so its start, the key
/// and the lookup take the place of most of the wait (a tick is 4 ms at `HZ=250`).
pub fn filesystem_tick_after(earlier: i128) -> i128 {
    let now = coarse_now_ns();
    if now != earlier {
        return now;
    }
    filesystem_tick()
}

/// A reading of the clock files are stamped from, for [`filesystem_tick_after`].
pub fn filesystem_clock_ns() -> i128 {
    coarse_now_ns()
}

#[cfg(target_os = "linux")]
fn coarse_now_ns() -> i128 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; the coarse realtime
    // clock exists on every Linux since 2.6.32.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    if status != 0 {
        return unix_ns(SystemTime::now() - TICK_WAIT_LIMIT);
    }
    now.tv_sec as i128 * NANOS_PER_SECOND + now.tv_nsec as i128
}

/// Elsewhere there is no coarse clock to read: the wall clock minus a margin larger than a tick.
#[cfg(not(target_os = "linux"))]
fn coarse_now_ns() -> i128 {
    unix_ns(SystemTime::now() - TICK_WAIT_LIMIT)
}

/// Nanoseconds since the epoch (negative before it).
pub fn unix_ns(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// A file's content hash, with the stamp it had while being hashed.
#[derive(Debug, Clone, Copy)]
pub struct FileDigest {
    pub hash: blake3::Hash,
    pub stamp: FileStamp,
}

/// Hashes `path`, choosing plain reads or a memory map as described in the module docs.
/// Fails if the file changed while it was being read.
pub fn hash_file(path: &Path) -> io::Result<FileDigest> {
    let mut file = File::open(path)?;
    let before = FileStamp::of(&file.metadata()?);
    let hash = hash_open(&mut file, before.size, Mutability::of(path))?;
    let after = FileStamp::of(&file.metadata()?);
    if !after.same_content_version(&before) {
        return Err(io::Error::other(format!(
            "{} changed while it was being hashed",
            path.display()
        )));
    }
    Ok(FileDigest {
        hash,
        stamp: before,
    })
}

/// Hashes an open file of `size` bytes from its start, with the strategy the module docs give
/// for its [`Mutability`].
pub fn hash_open(file: &mut File, size: u64, mutability: Mutability) -> io::Result<blake3::Hash> {
    if size >= MMAP_THRESHOLD && mutability == Mutability::ReplacedByRename {
        if size >= RAYON_THRESHOLD {
            hash_mmap_rayon(file)
        } else {
            hash_mmap(file)
        }
    } else {
        hash_reader(file, size)
    }
}

/// Plain reads. Small files are read whole in one call.
pub fn hash_reader(file: &mut File, size_hint: u64) -> io::Result<blake3::Hash> {
    if size_hint <= 256 * 1024 {
        let mut buf = Vec::with_capacity(size_hint as usize + 1);
        file.read_to_end(&mut buf)?;
        return Ok(blake3::hash(&buf));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file)?;
    Ok(hasher.finalize())
}

/// One thread over a memory map.
pub fn hash_mmap(file: &File) -> io::Result<blake3::Hash> {
    // SAFETY: only called for files replaced by rename, never truncated in place (module docs).
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(blake3::hash(&map))
}

/// rayon's pool over a memory map.
pub fn hash_mmap_rayon(file: &File) -> io::Result<blake3::Hash> {
    // SAFETY: as in `hash_mmap`.
    let map = unsafe { memmap2::Mmap::map(file)? };
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(&map);
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_new_link_is_the_same_content_version_and_a_write_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libx.rlib");
        std::fs::write(&path, b"one").unwrap();
        let first = FileStamp::of(&std::fs::metadata(&path).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        std::fs::hard_link(&path, dir.path().join("blob")).unwrap();
        let linked = FileStamp::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(first.ctime_ns, linked.ctime_ns, "a link moves the ctime");
        assert!(first.same_content_version(&linked));
        std::fs::write(&path, b"two").unwrap();
        let written = FileStamp::of(&std::fs::metadata(&path).unwrap());
        assert!(!first.same_content_version(&written));
    }

    #[test]
    fn all_strategies_agree() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 10, 300 * 1024, (1 << 20) + 7] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{size}.rlib"));
            File::create(&path).unwrap().write_all(&data).unwrap();
            let expected = blake3::hash(&data);
            assert_eq!(hash_file(&path).unwrap().hash, expected);
            let mut file = File::open(&path).unwrap();
            assert_eq!(hash_reader(&mut file, size as u64).unwrap(), expected);
            if size > 0 {
                let file = File::open(&path).unwrap();
                assert_eq!(hash_mmap(&file).unwrap(), expected);
                assert_eq!(hash_mmap_rayon(&file).unwrap(), expected);
            }
        }
    }

    #[test]
    fn racy_rule_uses_both_timestamps() {
        let now = SystemTime::now();
        let old = unix_ns(now - Duration::from_secs(10));
        let stamp = FileStamp {
            dev: 1,
            ino: 1,
            size: 1,
            mtime_ns: old,
            ctime_ns: unix_ns(now),
        };
        assert!(stamp.is_racy(now));
        let settled = FileStamp {
            ctime_ns: old,
            ..stamp
        };
        assert!(!settled.is_racy(now));
    }

    #[test]
    fn whole_second_timestamps_compare_by_second() {
        let moment = 10 * NANOS_PER_SECOND + 500_000_000;
        let coarse = FileStamp {
            dev: 1,
            ino: 1,
            size: 1,
            mtime_ns: 10 * NANOS_PER_SECOND,
            ctime_ns: 9 * NANOS_PER_SECOND,
        };
        assert!(coarse.changed_since_ns(moment));
        let fine = FileStamp {
            mtime_ns: 10 * NANOS_PER_SECOND + 499_999_999,
            ..coarse
        };
        assert!(!fine.changed_since_ns(moment));
    }

    /// Whether a file written before `reference` is called looks older than the tick it
    /// returns, and (asserted) one written after looks newer. Retried a few times: a starved
    /// (virtual) CPU can miss the tick within TICK_WAIT_LIMIT, and then the tick is the last
    /// reading, which only makes callers more cautious. A real ordering bug fails every attempt.
    fn writes_are_ordered_around(reference: impl Fn(usize) -> i128) -> bool {
        let dir = tempfile::tempdir().unwrap();
        (0..5).any(|attempt| {
            let earlier = dir.path().join(format!("earlier-{attempt}"));
            std::fs::write(&earlier, b"x").unwrap();
            let reference = reference(attempt);
            let later = dir.path().join(format!("later-{attempt}"));
            std::fs::write(&later, b"x").unwrap();
            let after = FileStamp::of(&std::fs::metadata(&later).unwrap());
            assert!(
                after.changed_since_ns(reference),
                "a write after the tick is newer"
            );
            let before = FileStamp::of(&std::fs::metadata(&earlier).unwrap());
            !before.changed_since_ns(reference)
        })
    }

    #[test]
    fn filesystem_clock_orders_earlier_and_later_writes() {
        assert!(
            writes_are_ordered_around(|_| filesystem_tick()),
            "a write before the tick is older"
        );
    }

    #[test]
    fn a_tick_after_an_earlier_reading_orders_writes_around_both() {
        let ordered = writes_are_ordered_around(|attempt| {
            let earlier = filesystem_clock_ns();
            // Every other attempt lets the clock move first, so both paths are taken.
            if attempt % 2 == 0 {
                std::thread::sleep(Duration::from_millis(15));
            }
            filesystem_tick_after(earlier)
        });
        assert!(
            ordered,
            "a write before the earlier reading is older than the tick"
        );
    }
}
