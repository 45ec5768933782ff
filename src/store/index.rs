//! The durable LMDB index: manifests, entries, blob reference counts and store totals.
//!
//! Opened with `NO_META_SYNC`: one flush per commit; a system crash may undo the last commit,
//! which only costs a miss (docs/facts.md §1). Only misses write here, in one transaction
//! ([`Index::commit_compile`]); hits only read. gc and `verify --repair` remove through
//! `index/removal.rs`.

use heed::{EnvFlags, RoTxn, RwTxn, WithoutTls};

use super::StoreError;
use super::entry::{self, Candidate, Entry, Manifest, OutputRecord};
use super::layout::{self, INDEX_MAP_SIZE, Layout, MAX_CANDIDATES, index_db, meta_key};
use super::lmdb::{self, Db, LmdbEnv};
use crate::hash::Key;

mod bulk;
mod removal;

pub use removal::{EntryUsage, Freed};

/// Reference count and size of one blob, 16 bytes little-endian in `blob_refs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    pub refs: u64,
    pub size: u64,
}

impl BlobRef {
    fn encode(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.refs.to_le_bytes());
        bytes[8..].copy_from_slice(&self.size.to_le_bytes());
        bytes
    }
    fn decode(bytes: &[u8]) -> Result<BlobRef, StoreError> {
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("blob_refs value is not 16 bytes".into()))?;
        Ok(BlobRef {
            refs: u64::from_le_bytes(bytes[..8].try_into().unwrap()),
            size: u64::from_le_bytes(bytes[8..].try_into().unwrap()),
        })
    }
}

/// Store-wide figures, read from the index (never by walking the disk).
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub entries: u64,
    pub blobs: u64,
    pub store_bytes: u64,
}

/// An entry as read back, or why it could not be decoded.
pub type DecodedEntry = Result<Entry, String>;

pub struct Index {
    env: &'static LmdbEnv,
    manifests: Db,
    entries: Db,
    blob_refs: Db,
    meta: Db,
}

impl Index {
    pub fn open(layout: &Layout) -> Result<Index, StoreError> {
        let dir = layout.index_dir();
        let env = lmdb::open_env(&dir, INDEX_MAP_SIZE, EnvFlags::NO_META_SYNC)?;
        let [manifests, entries, blob_refs, meta] = lmdb::open_databases(env, index_db::ALL)?;
        let index = Index {
            env,
            manifests,
            entries,
            blob_refs,
            meta,
        };
        index.check_format_version()?;
        Ok(index)
    }

    /// A store of another format version is refused rather than misread.
    fn check_format_version(&self) -> Result<(), StoreError> {
        let rtxn = self.read_txn()?;
        match self.meta.get(&rtxn, meta_key::FORMAT_VERSION)? {
            Some(bytes) if lmdb::read_u64(Some(bytes)) == u64::from(layout::FORMAT_VERSION) => {
                Ok(())
            }
            Some(_) => Err(StoreError::Corrupt(
                "index has a foreign format version".into(),
            )),
            None => {
                drop(rtxn);
                let mut wtxn = self.env.write_txn()?;
                if self.meta.get(&wtxn, meta_key::FORMAT_VERSION)?.is_none() {
                    let version = u64::from(layout::FORMAT_VERSION).to_le_bytes();
                    self.meta
                        .put(&mut wtxn, meta_key::FORMAT_VERSION, &version)?;
                }
                wtxn.commit()?;
                Ok(())
            }
        }
    }

    pub fn read_txn(&self) -> Result<RoTxn<'static, WithoutTls>, StoreError> {
        Ok(self.env.read_txn()?)
    }

    pub fn manifest(&self, rtxn: &RoTxn<WithoutTls>, key: &Key) -> Result<Manifest, StoreError> {
        match self.manifests.get(rtxn, key)? {
            Some(bytes) => entry::decode(bytes).map_err(|err| corrupt("manifest", err)),
            None => Ok(Manifest::default()),
        }
    }

    pub fn entry(&self, rtxn: &RoTxn<WithoutTls>, key: &Key) -> Result<Option<Entry>, StoreError> {
        match self.entries.get(rtxn, key)? {
            Some(bytes) => entry::decode(bytes)
                .map(Some)
                .map_err(|err| corrupt("entry", err)),
            None => Ok(None),
        }
    }

    pub fn totals(&self, rtxn: &RoTxn<WithoutTls>) -> Result<Totals, StoreError> {
        Ok(Totals {
            entries: self.entries.len(rtxn)?,
            blobs: self.blob_refs.len(rtxn)?,
            store_bytes: lmdb::read_u64(self.meta.get(rtxn, meta_key::STORE_BYTES)?),
        })
    }

    /// `store_bytes` alone: what the size limit is compared with after every store.
    pub fn store_bytes(&self, rtxn: &RoTxn<WithoutTls>) -> Result<u64, StoreError> {
        Ok(lmdb::read_u64(self.meta.get(rtxn, meta_key::STORE_BYTES)?))
    }

    /// Size of the index's data file, reported apart from `store_bytes` (it never shrinks).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(self.env.path().join("data.mdb"))
            .map(|meta| meta.len())
            .unwrap_or(0)
    }

    /// Adds a compile's entry and manifest candidate, in one transaction, after checking that
    /// every blob it references exists; increments those blobs' reference counts. An entry that
    /// already exists under the key is replaced and its blobs released.
    pub fn commit_compile(
        &self,
        layout: &Layout,
        invocation_key: &Key,
        candidate: Candidate,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        for blob in entry.outputs.iter().filter_map(OutputRecord::blob) {
            let path = layout.blob_path(&blake3::Hash::from_bytes(blob));
            if !path.exists() {
                return Err(StoreError::BlobVanished(path));
            }
        }
        let result_key = candidate.result_key;
        if let Some(old) = self.entries.get(&wtxn, &result_key)? {
            // An undecodable old entry is replaced all the same (the lookup counted it as a
            // fault). Its blobs' counts cannot be released and stay too high: such blobs are
            // kept until `rcache verify --repair` recounts them, never freed too early.
            match entry::decode::<Entry>(old) {
                Ok(old) => self.release_blobs(&mut wtxn, &old)?,
                Err(err) => tracing::warn!("replacing an undecodable entry: {err}"),
            }
        }
        self.entries
            .put(&mut wtxn, &result_key, &entry::encode(entry))?;
        for output in entry
            .outputs
            .iter()
            .filter(|output| output.blob().is_some())
        {
            self.add_blob_ref(&mut wtxn, &output.blob, output.size)?;
        }
        let mut manifest = match self.manifests.get(&wtxn, invocation_key)? {
            Some(bytes) => entry::decode(bytes).unwrap_or_default(),
            None => Manifest::default(),
        };
        manifest
            .candidates
            .retain(|existing| existing.result_key != result_key);
        manifest.candidates.insert(0, candidate);
        manifest.candidates.truncate(MAX_CANDIDATES);
        self.manifests
            .put(&mut wtxn, invocation_key, &entry::encode(&manifest))?;
        wtxn.commit()?;
        Ok(())
    }

    fn add_blob_ref(&self, wtxn: &mut RwTxn, blob: &Key, size: u64) -> Result<(), StoreError> {
        let current = match self.blob_refs.get(wtxn, blob)? {
            Some(bytes) => BlobRef::decode(bytes)?,
            None => {
                self.add_store_bytes(wtxn, size as i64)?;
                BlobRef { refs: 0, size }
            }
        };
        let updated = BlobRef {
            refs: current.refs + 1,
            ..current
        };
        self.blob_refs.put(wtxn, blob, &updated.encode())?;
        Ok(())
    }

    /// Decrements the reference counts of an entry's blobs. A blob that reaches 0 keeps its
    /// record (refs = 0) until gc deletes the file under the write lock.
    fn release_blobs(&self, wtxn: &mut RwTxn, entry: &Entry) -> Result<(), StoreError> {
        for blob in entry.outputs.iter().filter_map(OutputRecord::blob) {
            if let Some(bytes) = self.blob_refs.get(wtxn, &blob)? {
                let mut current = BlobRef::decode(bytes)?;
                current.refs = current.refs.saturating_sub(1);
                self.blob_refs.put(wtxn, &blob, &current.encode())?;
            }
        }
        Ok(())
    }

    fn add_store_bytes(&self, wtxn: &mut RwTxn, delta: i64) -> Result<(), StoreError> {
        let current = lmdb::read_u64(self.meta.get(wtxn, meta_key::STORE_BYTES)?);
        let updated = current.saturating_add_signed(delta);
        self.meta
            .put(wtxn, meta_key::STORE_BYTES, &updated.to_le_bytes())?;
        Ok(())
    }

    /// Every entry key with its decoded entry (or the decode error), for verify and gc.
    pub fn all_entries(
        &self,
        rtxn: &RoTxn<WithoutTls>,
    ) -> Result<Vec<(Key, DecodedEntry)>, StoreError> {
        let mut all = Vec::new();
        for item in self.entries.iter(rtxn)? {
            let (key, value) = item?;
            let Ok(key) = <Key>::try_from(key) else {
                continue;
            };
            all.push((key, entry::decode(value).map_err(|err| err.to_string())));
        }
        Ok(all)
    }

    /// Every blob reference record, for verify, gc and stats.
    pub fn all_blob_refs(
        &self,
        rtxn: &RoTxn<WithoutTls>,
    ) -> Result<Vec<(Key, BlobRef)>, StoreError> {
        let mut all = Vec::new();
        for item in self.blob_refs.iter(rtxn)? {
            let (key, value) = item?;
            if let (Ok(key), Ok(blob_ref)) = (<Key>::try_from(key), BlobRef::decode(value)) {
                all.push((key, blob_ref));
            }
        }
        Ok(all)
    }

    /// One blob's reference record, if it has one.
    pub fn blob_ref(
        &self,
        rtxn: &RoTxn<WithoutTls>,
        blob: &Key,
    ) -> Result<Option<BlobRef>, StoreError> {
        self.blob_refs
            .get(rtxn, blob)?
            .map(BlobRef::decode)
            .transpose()
    }

    /// Bytes that deduplication saves: each blob is stored once however many entries name it,
    /// so the sum over blobs of `(refs - 1) * size`.
    pub fn dedup_saved_bytes(&self, rtxn: &RoTxn<WithoutTls>) -> Result<u64, StoreError> {
        Ok(self
            .all_blob_refs(rtxn)?
            .iter()
            .map(|(_, record)| record.refs.saturating_sub(1).saturating_mul(record.size))
            .sum())
    }

    /// Empties every database (for `rcache clear`).
    pub fn clear(&self) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        self.manifests.clear(&mut wtxn)?;
        self.entries.clear(&mut wtxn)?;
        self.blob_refs.clear(&mut wtxn)?;
        self.meta.delete(&mut wtxn, meta_key::STORE_BYTES)?;
        wtxn.commit()?;
        Ok(())
    }
}

fn corrupt(what: &str, err: postcard::Error) -> StoreError {
    StoreError::Corrupt(format!("undecodable {what}: {err}"))
}
