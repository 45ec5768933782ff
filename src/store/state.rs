//! The state env: counters, last-use times and memoized hashes, opened `NO_SYNC`.
//!
//! Everything here is either derivable (memoized file and compiler hashes) or expendable (stats,
//! last-use times), so a hit never pays for an fsync (docs/design.md §3). The price: after an OS
//! crash, ext4 does not preserve write order, and a `NO_SYNC` env may be corrupt rather than behind.
//! So the first process after a reboot (a new `boot_id`) walks every database inside a write
//! transaction, with a marker file beside the env; if the walk fails, or a marker left by a walk
//! that died is found, the env is deleted and recreated.

use std::collections::HashMap;
use std::fs;

use heed::{EnvFlags, RoTxn, WithoutTls};

use super::StoreError;
use super::builds::{BuildLog, BuildSummary, BuildUnit};
use super::history::{UnitHistory, UnitRecord};
use super::layout::{Layout, STATE_MAP_SIZE, state_db};
use super::lmdb::{self, Db, LmdbEnv};
use crate::hash::Key;

const BOOT_ID_KEY: &[u8] = b"\0boot_id";
/// When the last automatic gc was started, unix ms (hidden from the counters by its NUL).
const AUTO_GC_STARTED_KEY: &[u8] = b"\0auto_gc_started_ms";
/// Until when every process skips the remote, unix ms (see `crate::remote::backoff`).
const REMOTE_SKIPPED_UNTIL_KEY: &[u8] = b"\0remote_skipped_until_ms";

pub struct State {
    env: &'static LmdbEnv,
    counters: Db,
    last_use: Db,
    file_hashes: Db,
    compilers: Db,
    unit_history: Db,
    build_log: BuildLog,
    unsynced_verified: Db,
}

/// Changes one invocation makes to the state env, applied in one transaction at its end.
#[derive(Debug, Default)]
pub struct StateUpdate {
    pub counters: Vec<(String, u64)>,
    pub last_use: Vec<(Key, u64)>,
    pub file_hashes: Vec<(Key, Key)>,
    /// Verified memos of blobs written without a sync (`blob::Durability::Refetchable`),
    /// forgotten after a reboot.
    pub unsynced_verified: Vec<(Key, Key)>,
    pub compilers: Vec<(Key, Vec<u8>)>,
    /// Records for the explain history, by unit id (`store::history`).
    pub unit_records: Vec<(Key, UnitRecord)>,
    /// This invocation for the build log (`store::builds`), with its build's id; and a
    /// build-script run counted without running through rcache (its launcher could not be put in
    /// place), so that a build's log adds up to its counters.
    pub build_units: Vec<(u64, BuildUnit)>,
}

impl StateUpdate {
    pub fn count(&mut self, name: impl Into<String>, by: u64) {
        self.counters.push((name.into(), by));
    }
    /// Adds everything `other` holds (the counts of work done on another thread).
    pub fn append(&mut self, mut other: StateUpdate) {
        self.counters.append(&mut other.counters);
        self.last_use.append(&mut other.last_use);
        self.file_hashes.append(&mut other.file_hashes);
        self.unsynced_verified.append(&mut other.unsynced_verified);
        self.compilers.append(&mut other.compilers);
        self.unit_records.append(&mut other.unit_records);
        self.build_units.append(&mut other.build_units);
    }
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
            && self.last_use.is_empty()
            && self.file_hashes.is_empty()
            && self.unsynced_verified.is_empty()
            && self.compilers.is_empty()
            && self.unit_records.is_empty()
            && self.build_units.is_empty()
    }
}

impl State {
    /// Opens the state env. Only corruption makes it recreate the env; any other error (a
    /// read-only dir, a full reader table, too many open files) is returned and loses nothing.
    /// A recreated env cannot be reopened in the same process (heed tracks open paths), so the
    /// process that recreates it reports the error and the next one starts afresh.
    /// Refuses a store of another user, as [`super::Store::open`] does.
    pub fn open(layout: &Layout) -> Result<State, StoreError> {
        super::check_owner(layout)?;
        match Self::open_checked(layout) {
            Err(err) if is_corruption(&err) => {
                tracing::warn!("state env corrupt ({err}); recreating it");
                Self::recreate(layout)?;
                Err(err)
            }
            other => other,
        }
    }

    fn open_checked(layout: &Layout) -> Result<State, StoreError> {
        let dir = layout.state_dir();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let env = lmdb::open_env(&dir, STATE_MAP_SIZE, EnvFlags::NO_SYNC)?;
        let [
            counters,
            last_use,
            file_hashes,
            compilers,
            unit_history,
            builds,
            build_units,
            unsynced_verified,
        ] = lmdb::open_databases(env, state_db::ALL)?;
        let state = State {
            env,
            counters,
            last_use,
            file_hashes,
            compilers,
            unit_history,
            build_log: BuildLog {
                builds,
                units: build_units,
            },
            unsynced_verified,
        };
        state.check_after_reboot(layout)?;
        Ok(state)
    }

    fn recreate(layout: &Layout) -> Result<(), StoreError> {
        let dir = layout.state_dir();
        lmdb::forget_env(&dir);
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_file(layout.state_check_marker());
        Ok(())
    }

    fn check_after_reboot(&self, layout: &Layout) -> Result<(), StoreError> {
        let boot_id = current_boot_id();
        {
            let rtxn = self.env.read_txn()?;
            if self.counters.get(&rtxn, BOOT_ID_KEY)? == Some(boot_id.as_slice()) {
                return Ok(());
            }
        }
        let marker = layout.state_check_marker();
        let mut wtxn = self.env.write_txn()?;
        if self.counters.get(&wtxn, BOOT_ID_KEY)? == Some(boot_id.as_slice()) {
            return Ok(());
        }
        if marker.exists() {
            return Err(StoreError::Corrupt(
                "an earlier check of the state env died".into(),
            ));
        }
        fs::write(&marker, b"").map_err(|source| StoreError::Io {
            path: marker.clone(),
            source,
        })?;
        for db in [
            self.counters,
            self.last_use,
            self.file_hashes,
            self.compilers,
            self.unit_history,
            self.build_log.builds,
            self.build_log.units,
            self.unsynced_verified,
        ] {
            for item in db.iter(&wtxn)? {
                item?;
            }
        }
        // Blobs written without a sync may have lost their content in a crash: each is hashed
        // again at its next restore.
        self.unsynced_verified.clear(&mut wtxn)?;
        // Every record was read: the env is sound. A failure from here on (a full disk, an I/O
        // error in the commit or the sync) says nothing about corruption, so the marker goes
        // either way: the next process checks again rather than deleting the env.
        let finished = self
            .counters
            .put(&mut wtxn, BOOT_ID_KEY, &boot_id)
            .and_then(|()| wtxn.commit())
            .and_then(|()| self.env.force_sync());
        let _ = fs::remove_file(&marker);
        Ok(finished?)
    }

    pub fn read_txn(&self) -> Result<RoTxn<'static, WithoutTls>, StoreError> {
        Ok(self.env.read_txn()?)
    }

    pub fn file_hash(
        &self,
        rtxn: &RoTxn<WithoutTls>,
        memo_key: &Key,
    ) -> Result<Option<Key>, StoreError> {
        Ok(self
            .file_hashes
            .get(rtxn, memo_key)?
            .and_then(|bytes| bytes.try_into().ok()))
    }

    /// The verified memo of a blob written without a sync, in this boot.
    pub fn unsynced_verified(
        &self,
        rtxn: &RoTxn<WithoutTls>,
        memo_key: &Key,
    ) -> Result<Option<Key>, StoreError> {
        Ok(self
            .unsynced_verified
            .get(rtxn, memo_key)?
            .and_then(|bytes| bytes.try_into().ok()))
    }

    pub fn compiler(
        &self,
        rtxn: &RoTxn<WithoutTls>,
        memo_key: &Key,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.compilers.get(rtxn, memo_key)?.map(<[u8]>::to_vec))
    }

    /// Applies an invocation's changes in one (unsynced) write transaction.
    pub fn apply(&self, update: &StateUpdate) -> Result<(), StoreError> {
        if update.is_empty() {
            return Ok(());
        }
        let mut wtxn = self.env.write_txn()?;
        for (name, by) in &update.counters {
            let current = lmdb::read_u64(self.counters.get(&wtxn, name.as_bytes())?);
            self.counters.put(
                &mut wtxn,
                name.as_bytes(),
                &current.saturating_add(*by).to_le_bytes(),
            )?;
        }
        for (key, unix_ms) in &update.last_use {
            self.last_use.put(&mut wtxn, key, &unix_ms.to_le_bytes())?;
        }
        for (memo_key, hash) in &update.file_hashes {
            self.file_hashes.put(&mut wtxn, memo_key, hash)?;
        }
        for (memo_key, hash) in &update.unsynced_verified {
            self.unsynced_verified.put(&mut wtxn, memo_key, hash)?;
        }
        for (memo_key, identity) in &update.compilers {
            self.compilers.put(&mut wtxn, memo_key, identity)?;
        }
        for (unit, record) in &update.unit_records {
            // An undecodable history (another version's, or damaged) starts afresh.
            let mut history: UnitHistory = self
                .unit_history
                .get(&wtxn, unit)?
                .and_then(|bytes| crate::store::entry::decode(bytes).ok())
                .unwrap_or_default();
            history.push(record.clone());
            self.unit_history
                .put(&mut wtxn, unit, &crate::store::entry::encode(&history))?;
        }
        for (build, unit) in &update.build_units {
            self.build_log.add(&mut wtxn, *build, unit)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// Drops the explain histories whose newest record is older than `cutoff_ms` (or that do not
    /// decode); returns how many.
    pub fn trim_histories(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut wtxn = self.env.write_txn()?;
        let mut stale: Vec<Vec<u8>> = Vec::new();
        for item in self.unit_history.iter(&wtxn)? {
            let (key, bytes) = item?;
            let newest = crate::store::entry::decode::<UnitHistory>(bytes)
                .ok()
                .and_then(|history| history.records.first().map(|record| record.ts_ms));
            if newest.is_none_or(|ts_ms| ts_ms < cutoff_ms) {
                stale.push(key.to_vec());
            }
        }
        for key in &stale {
            self.unit_history.delete(&mut wtxn, key)?;
        }
        wtxn.commit()?;
        Ok(stale.len())
    }

    /// Every unit's explain history that decodes.
    pub fn unit_histories(&self) -> Result<Vec<UnitHistory>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut all = Vec::new();
        for item in self.unit_history.iter(&rtxn)? {
            let (_, bytes) = item?;
            if let Ok(history) = crate::store::entry::decode::<UnitHistory>(bytes) {
                all.push(history);
            }
        }
        Ok(all)
    }

    /// Every build the build log keeps, with its extent.
    pub fn builds(&self) -> Result<Vec<(u64, BuildSummary)>, StoreError> {
        self.build_log.summaries(&self.read_txn()?)
    }

    /// One build's units, in start order.
    pub fn build_units(&self, build: u64) -> Result<Vec<BuildUnit>, StoreError> {
        self.build_log.units(&self.read_txn()?, build)
    }

    /// Every last-use time, by result key (for gc).
    pub fn last_uses(&self) -> Result<HashMap<Key, u64>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut all = HashMap::new();
        for item in self.last_use.iter(&rtxn)? {
            let (key, value) = item?;
            if let Ok(key) = <Key>::try_from(key) {
                all.insert(key, lmdb::read_u64(Some(value)));
            }
        }
        Ok(all)
    }

    /// The last-use times of these result keys, in order (`None`: never recorded).
    pub fn last_uses_of(&self, keys: &[Key]) -> Result<Vec<Option<u64>>, StoreError> {
        let rtxn = self.read_txn()?;
        keys.iter()
            .map(|key| {
                Ok(self
                    .last_use
                    .get(&rtxn, key)?
                    .map(|v| lmdb::read_u64(Some(v))))
            })
            .collect()
    }

    /// Forgets the last-use times of removed entries.
    pub fn forget_last_uses(&self, keys: &[Key]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut wtxn = self.env.write_txn()?;
        for key in keys {
            self.last_use.delete(&mut wtxn, key)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// When the last automatic gc was started (unix ms), if ever.
    pub fn auto_gc_started(&self) -> Result<Option<u64>, StoreError> {
        self.hidden_u64(AUTO_GC_STARTED_KEY)
    }

    pub fn set_auto_gc_started(&self, unix_ms: u64) -> Result<(), StoreError> {
        self.set_hidden_u64(AUTO_GC_STARTED_KEY, unix_ms)
    }

    /// Until when (unix ms) every process skips the remote, after a failure.
    pub fn remote_skipped_until(&self) -> Result<Option<u64>, StoreError> {
        self.hidden_u64(REMOTE_SKIPPED_UNTIL_KEY)
    }

    pub fn set_remote_skipped_until(&self, unix_ms: u64) -> Result<(), StoreError> {
        self.set_hidden_u64(REMOTE_SKIPPED_UNTIL_KEY, unix_ms)
    }

    /// A value kept under a NUL-prefixed name in `counters` (not shown as a counter).
    fn hidden_u64(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        let rtxn = self.read_txn()?;
        Ok(self
            .counters
            .get(&rtxn, key)?
            .map(|v| lmdb::read_u64(Some(v))))
    }

    fn set_hidden_u64(&self, key: &[u8], value: u64) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        self.counters.put(&mut wtxn, key, &value.to_le_bytes())?;
        wtxn.commit()?;
        Ok(())
    }

    /// Every counter, by name.
    pub fn counters(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut all = Vec::new();
        for item in self.counters.iter(&rtxn)? {
            let (name, value) = item?;
            if name.first() == Some(&0) {
                continue;
            }
            all.push((
                String::from_utf8_lossy(name).into_owned(),
                lmdb::read_u64(Some(value)),
            ));
        }
        Ok(all)
    }

    /// Resets every counter (`rcache stats --zero`).
    pub fn zero_counters(&self) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        let names: Vec<Vec<u8>> = self
            .counters
            .iter(&wtxn)?
            .filter_map(|item| item.ok())
            .map(|(name, _)| name.to_vec())
            .filter(|name| name.first() != Some(&0))
            .collect();
        for name in names {
            self.counters.delete(&mut wtxn, &name)?;
        }
        wtxn.commit()?;
        self.env.force_sync()?;
        Ok(())
    }

    /// Forgets every memoized hash and last-use time (`rcache clear`).
    pub fn clear_memos(&self) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        self.file_hashes.clear(&mut wtxn)?;
        self.unsynced_verified.clear(&mut wtxn)?;
        self.compilers.clear(&mut wtxn)?;
        self.last_use.clear(&mut wtxn)?;
        self.unit_history.clear(&mut wtxn)?;
        self.build_log.clear(&mut wtxn)?;
        wtxn.commit()?;
        Ok(())
    }
}

/// Errors that mean the env's files are damaged, rather than unreachable.
fn is_corruption(err: &StoreError) -> bool {
    use heed::MdbError;
    match err {
        StoreError::Corrupt(_) => true,
        StoreError::Lmdb(heed::Error::Mdb(code)) => matches!(
            code,
            MdbError::Corrupted
                | MdbError::Invalid
                | MdbError::PageNotFound
                | MdbError::VersionMismatch
        ),
        _ => false,
    }
}

/// The kernel's id of this boot; constant when unavailable (non-Linux), which disables the check.
fn current_boot_id() -> Vec<u8> {
    boot_id().unwrap_or_else(|| b"unknown".to_vec())
}

/// The kernel's id of this boot, if it says (`/proc/sys/kernel/random/boot_id`). Without it a
/// reboot cannot be told apart, so nothing may rely on being forgotten after one: blobs stored by
/// link are synced and no incremental session is kept.
pub fn boot_id() -> Option<Vec<u8>> {
    fs::read("/proc/sys/kernel/random/boot_id").ok()
}

#[cfg(test)]
mod tests;
