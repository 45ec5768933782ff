//! Incremental sessions kept beside entries (docs/design.md §6d, store-format §10): the files of
//! the rustc session that a miss of an incremental compile finalized, kept so that a later hit of
//! that entry into an empty incremental dir can put them back, and the next edit of the crate
//! compiles incrementally instead of whole.
//!
//! What this module owns is the keeping: `sessions/<crate>/<result key>/` holds `record` (a
//! [`SessionRecord`], postcard) and `files/`, hard links to the session's files; `<crate>` is a
//! [`Crate`], the incremental dir and crate name the sessions belong to. rustc never writes a
//! session file in place (it deletes and writes anew, because its own sessions share files by
//! hard link), so a link keeps the bytes rustc finalized. A file's inode, size and mtime are
//! recorded and checked again before it is handed back; a session kept in another boot is never
//! handed back (rustc does not sync its session files, so a crash may have emptied one).
//! Whether a session may be put back, and where, is the wrapper's (`wrapper::incremental`).
//!
//! Bounds: a crate keeps its [`MAX_SESSIONS_PER_CRATE`] most recently kept sessions (keeping
//! one reads only that crate's dir: the dev loop's misses pay for nothing more); gc's sweep
//! removes a session whose entry is gone and trims the whole to [`MAX_SESSIONS`] and
//! [`MAX_SESSION_BYTES`] (sizes summed, though sessions share files), least recently kept first;
//! `rcache clear` removes them all.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::entry::{decode, encode};
use super::layout::Layout;
use super::state::boot_id;
use crate::hash::{Key, hex};

/// Sessions a crate keeps: its latest compiles', for a `cargo clean` or a revert to come back to.
pub const MAX_SESSIONS_PER_CRATE: usize = 4;

/// Sessions kept at most, over every crate (gc's sweep).
pub const MAX_SESSIONS: usize = 512;

/// Bytes of session files kept at most (each session's sizes summed; gc's sweep).
pub const MAX_SESSION_BYTES: u64 = 4 << 30;

/// The sessions of one crate name in one incremental dir: 16 hex digits of a hash of both,
/// known on a miss and on a hit alike (rustc's own crate dir name is not, before the run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crate(String);

impl Crate {
    pub fn new(incremental_dir: &Path, crate_name: &str) -> Crate {
        let mut hasher = blake3::Hasher::new();
        hasher.update(incremental_dir.as_os_str().as_encoded_bytes());
        hasher.update(&[0]);
        hasher.update(crate_name.as_bytes());
        Crate(hasher.finalize().to_hex()[..16].to_string())
    }
}

/// One file of a kept session, as it was when kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFile {
    pub name: String,
    pub size: u64,
    pub ino: u64,
    pub mtime_ns: i64,
}

/// Where a kept session came from and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The compile's incremental dir (`-C incremental`), absolute.
    pub incremental_dir: PathBuf,
    /// The compile's real base dirs (cwd, `CARGO_HOME`, target dir): a session names them, so it
    /// goes back only into the same layout.
    pub base_dirs: Vec<u8>,
    /// The crate's dir in the incremental dir (`<crate name>-<hash>`), rustc's name for it.
    pub crate_dir: String,
    /// The finalized session dir's name (`s-<time>-<random>-<svh>`).
    pub session: String,
    /// The blobs of the entry this session was finalized with: it goes back only with them.
    pub outputs: Vec<Key>,
    /// `/proc/sys/kernel/random/boot_id` when kept.
    pub boot_id: Vec<u8>,
    pub files: Vec<SessionFile>,
}

impl SessionRecord {
    fn bytes(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }
}

/// A kept session: its record and the dir holding its files.
pub struct KeptSession {
    pub record: SessionRecord,
    pub files_dir: PathBuf,
}

impl KeptSession {
    /// Whether every file is still the one kept: same inode, size and mtime, and kept in this
    /// boot. A file changed, gone or of another boot makes the whole session unusable.
    pub fn intact(&self) -> bool {
        if boot_id().is_none_or(|boot| boot != self.record.boot_id) {
            return false;
        }
        self.record.files.iter().all(|file| {
            fs::symlink_metadata(self.files_dir.join(&file.name)).is_ok_and(|meta| file.is(&meta))
        })
    }
}

impl SessionFile {
    /// Whether `meta` is this file as kept: a regular file with its inode, size and mtime.
    pub fn is(&self, meta: &fs::Metadata) -> bool {
        meta.is_file()
            && meta.ino() == self.ino
            && meta.len() == self.size
            && mtime_ns(meta) == self.mtime_ns
    }
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

fn crate_dir(layout: &Layout, of: &Crate) -> PathBuf {
    layout.sessions_dir().join(&of.0)
}

fn session_dir(layout: &Layout, of: &Crate, result_key: &Key) -> PathBuf {
    crate_dir(layout, of).join(hex(result_key))
}

/// Keeps the session in `source` (a finalized session dir) for the entry `result_key` of the
/// crate `of`: every regular file hard-linked, or nothing kept. `record.files` is filled here. A
/// session kept before for the same entry is replaced; the crate's oldest beyond
/// [`MAX_SESSIONS_PER_CRATE`] are removed.
pub fn keep(
    layout: &Layout,
    of: &Crate,
    result_key: &Key,
    mut record: SessionRecord,
    source: &Path,
) -> io::Result<()> {
    let root = crate_dir(layout, of);
    fs::create_dir_all(&root)?;
    let temp = tempfile::Builder::new()
        .prefix(".keep-")
        .tempdir_in(&root)?;
    let files_dir = temp.path().join("files");
    fs::create_dir(&files_dir)?;
    record.files.clear();
    for item in fs::read_dir(source)? {
        let item = item?;
        let name = item
            .file_name()
            .into_string()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a non-UTF-8 name"))?;
        if !item.file_type()?.is_file() {
            // rustc's sessions are flat: anything else is not a session rcache understands.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name} in the session is not a regular file"),
            ));
        }
        let link = files_dir.join(&name);
        fs::hard_link(item.path(), &link)?;
        let meta = fs::symlink_metadata(&link)?;
        record.files.push(SessionFile {
            name,
            size: meta.len(),
            ino: meta.ino(),
            mtime_ns: mtime_ns(&meta),
        });
    }
    record.files.sort_by(|a, b| a.name.cmp(&b.name));
    fs::write(temp.path().join("record"), encode(&record))?;
    let destination = session_dir(layout, of, result_key);
    remove_dir(&destination)?;
    let temp = temp.keep();
    if let Err(err) = fs::rename(&temp, &destination) {
        let _ = fs::remove_dir_all(&temp);
        return Err(err);
    }
    trim_listed(listed_in(&root)?, MAX_SESSIONS_PER_CRATE, u64::MAX);
    Ok(())
}

/// The session kept for `result_key` of the crate `of`, if any (a record that does not decode
/// counts as none).
pub fn find(layout: &Layout, of: &Crate, result_key: &Key) -> Option<KeptSession> {
    let dir = session_dir(layout, of, result_key);
    let bytes = fs::read(dir.join("record")).ok()?;
    let record = decode::<SessionRecord>(&bytes).ok()?;
    Some(KeptSession {
        record,
        files_dir: dir.join("files"),
    })
}

/// Removes the session kept for `result_key` of the crate `of`, if any.
pub fn remove(layout: &Layout, of: &Crate, result_key: &Key) -> io::Result<()> {
    remove_dir(&session_dir(layout, of, result_key))
}

/// Removes a kept session's dir, or whatever else is at that name (a stray file).
fn remove_dir(dir: &Path) -> io::Result<()> {
    let removed = match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(dir),
        Ok(_) => fs::remove_file(dir),
        Err(err) => Err(err),
    };
    match removed {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// A kept session's dir, its key (`None`: a name that is not one, to be removed), when it was
/// kept (its record's mtime) and its files' bytes.
type Listed = (PathBuf, Option<Key>, std::time::SystemTime, u64);

fn names_in(dir: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut names = Vec::new();
    for item in entries {
        let path = item?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        let name = name.to_string();
        names.push((path, name));
    }
    Ok(names)
}

/// The sessions kept in one crate's dir, as [`Listed`] (`.keep-` dirs aside).
fn listed_in(dir: &Path) -> io::Result<Vec<Listed>> {
    let mut found = Vec::new();
    for (path, name) in names_in(dir)? {
        if name.starts_with(".keep-") {
            continue; // being kept now, or left by a killed process: gc's sweep ages them out
        }
        let key = blake3::Hash::from_hex(&name)
            .ok()
            .map(|hash| *hash.as_bytes());
        let record_path = path.join("record");
        let kept_at = fs::metadata(&record_path)
            .and_then(|meta| meta.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let bytes = fs::read(&record_path)
            .ok()
            .and_then(|bytes| decode::<SessionRecord>(&bytes).ok())
            .map_or(0, |record| record.bytes());
        found.push((path, key, kept_at, bytes));
    }
    Ok(found)
}

/// Every kept session of every crate.
fn listed(layout: &Layout) -> io::Result<Vec<Listed>> {
    let mut found = Vec::new();
    for (path, _) in names_in(&layout.sessions_dir())? {
        if path.is_dir() {
            found.extend(listed_in(&path)?);
        } else {
            let _ = remove_dir(&path); // not rcache's
        }
    }
    Ok(found)
}

/// Removes the least recently kept of `sessions` until at most `max_sessions` and `max_bytes`
/// remain (and any whose name is not a key). One that cannot be removed is left for next time.
fn trim_listed(mut sessions: Vec<Listed>, max_sessions: usize, max_bytes: u64) {
    sessions.sort_by_key(|(_, key, kept_at, _)| (key.is_some(), *kept_at));
    let mut count = sessions.len();
    let mut bytes: u64 = sessions.iter().map(|(_, _, _, bytes)| bytes).sum();
    for (path, key, _, size) in sessions {
        if count <= max_sessions && bytes <= max_bytes && key.is_some() {
            break;
        }
        if let Err(err) = remove_dir(&path) {
            tracing::debug!("kept session {} not removed: {err}", path.display());
        }
        count -= 1;
        bytes -= size;
    }
}

/// Removes the least recently kept sessions, over every crate, until at most `max_sessions` and
/// `max_bytes` remain.
pub fn trim(layout: &Layout, max_sessions: usize, max_bytes: u64) -> io::Result<()> {
    trim_listed(listed(layout)?, max_sessions, max_bytes);
    Ok(())
}

/// Removes every kept session whose entry `has_entry` says is gone, `.keep-` dirs older than
/// `cutoff`, and crate dirs left empty, then trims to [`MAX_SESSIONS`] and
/// [`MAX_SESSION_BYTES`]. Returns how many sessions went for a missing entry.
pub fn sweep(
    layout: &Layout,
    has_entry: &mut dyn FnMut(&Key) -> bool,
    cutoff: std::time::SystemTime,
) -> io::Result<u64> {
    let mut removed = 0;
    for (path, key, _, _) in listed(layout)? {
        if key.is_none_or(|key| !has_entry(&key)) && remove_dir(&path).is_ok() {
            removed += 1;
        }
    }
    for (crate_path, _) in names_in(&layout.sessions_dir())? {
        for (path, name) in names_in(&crate_path).unwrap_or_default() {
            let stale = name.starts_with(".keep-")
                && fs::symlink_metadata(&path)
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|modified| modified < cutoff);
            if stale {
                let _ = remove_dir(&path);
            }
        }
        // Only an empty one goes.
        let _ = fs::remove_dir(&crate_path);
    }
    trim(layout, MAX_SESSIONS, MAX_SESSION_BYTES)?;
    Ok(removed)
}

#[cfg(test)]
mod tests;
