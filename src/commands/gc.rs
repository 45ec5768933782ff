//! `rcache gc` and `rcache prune`: trim the store by size and age (docs/design.md §7), and the
//! detached `rcache gc --auto` that a store over the limit starts ([`crate::store::gc::auto`]).
//!
//! - `gc [--max-size SIZE] [--dry-run]`: every entry not used within `RCACHE_MAX_AGE` (if set),
//!   then the least recently used until the store fits SIZE (default: `RCACHE_CACHE_SIZE`); then
//!   the sweep of orphan blobs and stale temp files.
//! - `prune --older-than DURATION [--dry-run]`: every entry not used within DURATION.
//!
//! Both print what they removed (entries, blobs, bytes) and what remains.

use std::time::{Duration, SystemTime};

use crate::clock::unix_ms;
use crate::config::{Config, format_size};
use crate::store::Store;
use crate::store::gc::auto::{self, count_fault, target_bytes};
use crate::store::gc::sweep::{Swept, sweep};
use crate::store::gc::{Limits, Plan, Trimmed, plan, trim};
use crate::store::index::Freed;
use crate::store::layout::{GC_GRACE_SECS, GC_LOCK_TIMEOUT_MS, HISTORY_MAX_AGE_MS, Layout};
use crate::store::state::StateUpdate;

/// How many times the automatic gc checks the size again after releasing its lock, before it
/// leaves the rest to the next store.
const AUTO_GC_ROUNDS: usize = 4;

fn lock_timeout() -> Duration {
    Duration::from_millis(GC_LOCK_TIMEOUT_MS)
}

/// `rcache gc`. `grace` overrides the sweep's grace period (a hidden flag, for tests).
pub fn gc(
    config: &Config,
    max_size: Option<u64>,
    dry_run: bool,
    grace: Option<Duration>,
) -> anyhow::Result<()> {
    let store = super::stats::open(config)?;
    let max_bytes = max_size.unwrap_or(config.cache_size.value);
    let limits = Limits {
        max_bytes: Some(max_bytes),
        max_age: config.max_age.value,
    };
    let grace = grace.unwrap_or(Duration::from_secs(GC_GRACE_SECS));
    let plan = plan(&store, &limits, unix_ms(SystemTime::now()))?;
    let (removed, swept) = if dry_run {
        (None, sweep(&store, grace, true, lock_timeout())?)
    } else {
        let trimmed = trim(&store, &plan, lock_timeout())?;
        (Some(trimmed), sweep(&store, grace, false, lock_timeout())?)
    };
    report(&store, &plan, removed, max_bytes)?;
    let verb = if dry_run { "Would sweep" } else { "Swept" };
    println!("{verb} {}.", describe_swept(&swept));
    if !dry_run {
        trim_histories(&store)?;
    }
    remove_older_formats(&store.layout, dry_run)
}

/// Drops the explain histories of units not seen for [`HISTORY_MAX_AGE_MS`].
fn trim_histories(store: &Store) -> anyhow::Result<()> {
    let cutoff = unix_ms(SystemTime::now()).saturating_sub(HISTORY_MAX_AGE_MS);
    store.state.trim_histories(cutoff)?;
    Ok(())
}

/// Removes the directories an older store format left (an upgrade starts a new `vN/`), and says
/// so: they are never read, and the size limit does not count them.
pub fn remove_older_formats(layout: &Layout, dry_run: bool) -> anyhow::Result<()> {
    for dir in layout.older_version_dirs() {
        let bytes: u64 = walkdir::WalkDir::new(&dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|entry| entry.metadata().ok())
            .filter(|meta| meta.is_file())
            .map(|meta| meta.len())
            .sum();
        let verb = if dry_run { "Would remove" } else { "Removed" };
        println!(
            "{verb} {} of an older store format ({}).",
            dir.display(),
            format_size(bytes)
        );
        if !dry_run {
            fs_err::remove_dir_all(&dir)?;
        }
    }
    Ok(())
}

/// `rcache prune --older-than DURATION`.
pub fn prune(config: &Config, older_than: Duration, dry_run: bool) -> anyhow::Result<()> {
    let store = super::stats::open(config)?;
    let limits = Limits {
        max_bytes: None,
        max_age: Some(older_than),
    };
    let plan = plan(&store, &limits, unix_ms(SystemTime::now()))?;
    let removed = if dry_run {
        None
    } else {
        Some(trim(&store, &plan, lock_timeout())?)
    };
    report(&store, &plan, removed, config.cache_size.value)
}

/// Prints what was removed (or, with `removed` `None`, what would be) and what remains.
fn report(store: &Store, plan: &Plan, removed: Option<Trimmed>, limit: u64) -> anyhow::Result<()> {
    let remaining = match &removed {
        Some(trimmed) => {
            println!("Removed {}.", describe_freed(&trimmed.freed));
            if trimmed.used_since > 0 {
                println!("Kept {} entries used while gc ran.", trimmed.used_since);
            }
            let rtxn = store.index.read_txn()?;
            store.index.totals(&rtxn)?
        }
        None => {
            println!("Would remove {}.", describe_freed(&plan.expected));
            let mut after = plan.before;
            after.entries = after.entries.saturating_sub(plan.expected.entries);
            after.blobs = after.blobs.saturating_sub(plan.expected.blobs);
            after.store_bytes = after.store_bytes.saturating_sub(plan.expected.bytes);
            after
        }
    };
    println!(
        "{}: {} entries, {} blobs, {} (limit {}).",
        if removed.is_some() {
            "Remaining"
        } else {
            "Would remain"
        },
        remaining.entries,
        remaining.blobs,
        format_size(remaining.store_bytes),
        format_size(limit)
    );
    Ok(())
}

fn describe_freed(freed: &Freed) -> String {
    format!(
        "{} entries and {} blobs ({}, {} bytes)",
        freed.entries,
        freed.blobs,
        format_size(freed.bytes),
        freed.bytes
    )
}

fn describe_swept(swept: &Swept) -> String {
    format!(
        "{} orphan blobs ({}) and {} temp files ({})",
        swept.orphan_blobs,
        format_size(swept.orphan_bytes),
        swept.temp_files,
        format_size(swept.temp_bytes)
    )
}

/// `rcache gc --auto`: started detached by a store that found the cache over its limit (or an
/// age limit due). Holds `gc.lock` while it works, trims to 90% of the limit, applies the age
/// limit, sweeps once, and checks again after releasing the lock. Prints nothing (its output
/// is `/dev/null`); a fault is counted in `auto_gc_faults`.
pub fn auto(config: &Config) -> anyhow::Result<()> {
    let store = super::stats::open(config)?;
    let result = auto_rounds(&store, config);
    if let Err(err) = &result {
        tracing::warn!("automatic gc failed: {err:#}");
        count_fault(&store);
    }
    result
}

fn auto_rounds(store: &Store, config: &Config) -> anyhow::Result<()> {
    // An upgrade's old format dir goes first: it is never read, and it is not counted below.
    remove_older_formats(&store.layout, false)?;
    let limit = config.cache_size.value;
    let mut swept = false;
    for _ in 0..AUTO_GC_ROUNDS {
        let Some(gc_lock) = store.try_gc_lock()? else {
            return Ok(());
        };
        let now_ms = unix_ms(SystemTime::now());
        store.state.set_auto_gc_started(now_ms)?;
        let over = auto::due(store, limit, None, now_ms)?.is_some();
        let limits = Limits {
            max_bytes: over.then(|| target_bytes(limit)),
            max_age: config.max_age.value,
        };
        let mut update = StateUpdate::default();
        if limits != Limits::default() {
            let trimmed = trim(store, &plan(store, &limits, now_ms)?, lock_timeout())?;
            update.count("auto_gc_removed_entries", trimmed.freed.entries);
        }
        if !swept {
            sweep(
                store,
                Duration::from_secs(GC_GRACE_SECS),
                false,
                lock_timeout(),
            )?;
            trim_histories(store)?;
            swept = true;
        }
        update.count("auto_gc_runs", 1);
        store.state.apply(&update)?;
        drop(gc_lock);
        // Checked after releasing the lock: a store that went over the limit while this gc held
        // it found the lock taken and started nothing, so this gc looks once more.
        if auto::due(store, limit, None, now_ms)?.is_none() {
            return Ok(());
        }
    }
    Ok(())
}
