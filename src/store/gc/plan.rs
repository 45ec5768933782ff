//! Which entries gc removes: every entry not used within the age limit, then the least recently
//! used until the store fits the size limit. Decided from one read snapshot of the index and the
//! last-use times; nothing here writes.
//!
//! The size counted is `store_bytes`, the distinct blobs' sizes (docs/design.md §3). Removing an
//! entry frees only the blobs whose count it brings to 0, so the selection walks the entries
//! oldest first with a private copy of the reference counts and stops as soon as what is left
//! fits: exact LRU by bytes, shared blobs included.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::hash::Key;
use crate::store::index::{BlobRef, EntryUsage, Freed, Totals};
use crate::store::{Store, StoreError};

/// What gc keeps the store within. `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Trim least recently used entries until `store_bytes` is at most this.
    pub max_bytes: Option<u64>,
    /// Remove every entry whose last use is older than this.
    pub max_age: Option<Duration>,
}

/// An entry chosen for removal, with the last-use time it was chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Victim {
    pub key: Key,
    pub last_use_ms: u64,
}

/// What gc will remove, as of one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Least recently used first.
    pub victims: Vec<Victim>,
    /// Blobs whose count is already 0 (their entry was replaced or removed): freed first.
    pub unreferenced: Vec<Key>,
    /// The index totals of the snapshot.
    pub before: Totals,
    /// What removing the victims and the unreferenced blobs frees, as of the snapshot.
    pub expected: Freed,
    /// Last-use records of entries that no longer exist.
    pub stale_last_uses: Vec<Key>,
}

/// Plans against the store as it is now; `now_ms` is the current unix time in ms.
pub fn plan(store: &Store, limits: &Limits, now_ms: u64) -> Result<Plan, StoreError> {
    let (before, usage, blob_refs) = {
        let rtxn = store.index.read_txn()?;
        (
            store.index.totals(&rtxn)?,
            store.index.entry_usage(&rtxn)?,
            store.index.all_blob_refs(&rtxn)?,
        )
    };
    let last_uses = store.state.last_uses()?;
    Ok(select(before, usage, blob_refs, &last_uses, limits, now_ms))
}

/// The selection itself, on plain data. An entry's last use is its last-use record, or its
/// creation time when it has none (the state env is expendable).
pub fn select(
    before: Totals,
    usage: Vec<EntryUsage>,
    blob_refs: Vec<(Key, BlobRef)>,
    last_uses: &HashMap<Key, u64>,
    limits: &Limits,
    now_ms: u64,
) -> Plan {
    let mut refs: HashMap<Key, BlobRef> = blob_refs.into_iter().collect();
    let mut unreferenced: Vec<Key> = refs
        .iter()
        .filter(|(_, record)| record.refs == 0)
        .map(|(blob, _)| *blob)
        .collect();
    unreferenced.sort_unstable();
    let mut expected = Freed::default();
    for blob in &unreferenced {
        expected.blobs += 1;
        expected.bytes += refs[blob].size;
    }
    let mut remaining = before.store_bytes.saturating_sub(expected.bytes);

    let existing: HashSet<Key> = usage.iter().map(|entry| entry.key).collect();
    let mut stale_last_uses: Vec<Key> = last_uses
        .keys()
        .filter(|key| !existing.contains(*key))
        .copied()
        .collect();
    stale_last_uses.sort_unstable();

    let mut ordered: Vec<(u64, EntryUsage)> = usage
        .into_iter()
        .map(|entry| {
            let used = last_uses
                .get(&entry.key)
                .map_or(entry.created_unix_ms, |&used| {
                    used.max(entry.created_unix_ms)
                });
            (used, entry)
        })
        .collect();
    ordered.sort_unstable_by_key(|(used, entry)| (*used, entry.key));

    let cutoff = limits
        .max_age
        .map(|age| now_ms.saturating_sub(age.as_millis() as u64));
    let mut victims = Vec::new();
    for (last_use_ms, entry) in ordered {
        let too_old = cutoff.is_some_and(|cutoff| last_use_ms < cutoff);
        let too_big = limits.max_bytes.is_some_and(|max| remaining > max);
        if !too_old && !too_big {
            // Sorted oldest first: every later entry is newer, and the store already fits.
            break;
        }
        for blob in &entry.blobs {
            let Some(record) = refs.get_mut(blob) else {
                continue;
            };
            if record.refs == 0 {
                continue;
            }
            record.refs -= 1;
            if record.refs == 0 {
                remaining = remaining.saturating_sub(record.size);
                expected.blobs += 1;
                expected.bytes += record.size;
            }
        }
        expected.entries += 1;
        victims.push(Victim {
            key: entry.key,
            last_use_ms,
        });
    }
    Plan {
        victims,
        unreferenced,
        before,
        expected,
        stale_last_uses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    /// Entries 1..=n, entry i created at i ms, each with one blob of its own (10 bytes) and a
    /// blob shared by all (100 bytes).
    fn store_of(n: u8) -> (Totals, Vec<EntryUsage>, Vec<(Key, BlobRef)>) {
        let shared = key(200);
        let usage: Vec<EntryUsage> = (1..=n)
            .map(|i| EntryUsage {
                key: key(i),
                created_unix_ms: u64::from(i),
                blobs: vec![key(100 + i), shared],
            })
            .collect();
        let mut refs: Vec<(Key, BlobRef)> = (1..=n)
            .map(|i| (key(100 + i), BlobRef { refs: 1, size: 10 }))
            .collect();
        refs.push((
            shared,
            BlobRef {
                refs: u64::from(n),
                size: 100,
            },
        ));
        let totals = Totals {
            entries: u64::from(n),
            blobs: u64::from(n) + 1,
            store_bytes: u64::from(n) * 10 + 100,
        };
        (totals, usage, refs)
    }

    fn keys(plan: &Plan) -> Vec<Key> {
        plan.victims.iter().map(|victim| victim.key).collect()
    }

    #[test]
    fn least_recently_used_go_first_until_the_store_fits() {
        let (totals, usage, refs) = store_of(5);
        // Entry 1 is the oldest by creation but was used last.
        let last_uses = HashMap::from([(key(1), 1_000)]);
        let limits = Limits {
            max_bytes: Some(130),
            max_age: None,
        };
        let plan = select(totals, usage, refs, &last_uses, &limits, 2_000);
        assert_eq!(keys(&plan), vec![key(2), key(3)]);
        assert_eq!(
            plan.expected,
            Freed {
                entries: 2,
                blobs: 2,
                bytes: 20
            }
        );
    }

    #[test]
    fn a_shared_blob_is_freed_only_with_its_last_entry() {
        let (totals, usage, refs) = store_of(3);
        let limits = Limits {
            max_bytes: Some(0),
            max_age: None,
        };
        let plan = select(totals, usage, refs, &HashMap::new(), &limits, 10);
        assert_eq!(plan.victims.len(), 3);
        assert_eq!(plan.expected.blobs, 4);
        assert_eq!(plan.expected.bytes, 130);
    }

    #[test]
    fn the_age_limit_removes_old_entries_even_under_the_size_limit() {
        let (totals, usage, refs) = store_of(4);
        let last_uses = HashMap::from([(key(9), 1)]);
        let limits = Limits {
            max_bytes: Some(u64::MAX),
            max_age: Some(Duration::from_millis(7)),
        };
        // now 10, cutoff 3: entries 1 and 2 were last used before it.
        let plan = select(totals, usage, refs, &last_uses, &limits, 10);
        assert_eq!(keys(&plan), vec![key(1), key(2)]);
        assert_eq!(plan.stale_last_uses, vec![key(9)]);
    }

    #[test]
    fn unreferenced_blobs_count_as_freed_before_any_entry() {
        let (mut totals, usage, mut refs) = store_of(2);
        refs.push((key(250), BlobRef { refs: 0, size: 50 }));
        totals.store_bytes += 50;
        let limits = Limits {
            max_bytes: Some(120),
            max_age: None,
        };
        let plan = select(totals, usage, refs, &HashMap::new(), &limits, 10);
        assert_eq!(plan.unreferenced, vec![key(250)]);
        assert!(
            plan.victims.is_empty(),
            "freeing the zero-count blob is enough"
        );
    }
}
