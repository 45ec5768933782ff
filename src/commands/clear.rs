//! `rcache clear`: empties the cache, keeping the config and the store's directory.
//!
//! It works on a store whose index is corrupt (that is when a user needs it most): if the store
//! cannot be opened, the versioned directory's contents are removed and recreated. Directories of
//! older store formats are removed too.

use anyhow::Context;

use crate::config::Config;
use crate::store::layout::Layout;
use crate::store::{Store, StoreError};

pub fn run(config: &Config) -> anyhow::Result<()> {
    match Store::open(&config.dir.value) {
        Ok(store) => clear_open_store(&store)?,
        // Another user's store is theirs to clear, even for root.
        Err(err @ StoreError::NotOwned { .. }) => return Err(err.into()),
        Err(err) => {
            eprintln!("rcache: the store could not be opened ({err}); removing its files");
            remove_store_files(&Layout::new(&config.dir.value))?;
        }
    }
    super::gc::remove_older_formats(&Layout::new(&config.dir.value), false)?;
    println!("Cache at {} cleared.", config.dir.value.display());
    Ok(())
}

fn clear_open_store(store: &Store) -> anyhow::Result<()> {
    let _lock = store.lock(std::time::Duration::from_secs(30))?;
    // Index first: once no entry points at a blob, deleting the blobs cannot break a hit.
    store.index.clear()?;
    store.state.clear_memos()?;
    for dir in [store.layout.blobs_dir(), store.layout.tmp_dir()] {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        std::fs::create_dir_all(&dir)?;
    }
    // Kept incremental sessions go with their entries.
    match std::fs::remove_dir_all(store.layout.sessions_dir()) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).context("removing the kept incremental sessions");
        }
        _ => {}
    }
    // Queued uploads name entries that are gone now.
    remove_queue(&store.layout)
}

fn remove_queue(layout: &Layout) -> anyhow::Result<()> {
    let dir = layout.remote_queue_dir();
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing {}", dir.display())),
    }
}

fn remove_store_files(layout: &Layout) -> anyhow::Result<()> {
    for dir in [
        layout.index_dir(),
        layout.state_dir(),
        layout.blobs_dir(),
        layout.tmp_dir(),
        layout.remote_queue_dir(),
        layout.sessions_dir(),
    ] {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("removing {}", dir.display())),
        }
    }
    let _ = std::fs::remove_file(layout.state_check_marker());
    Store::open(&layout.root).context("recreating the store")?;
    Ok(())
}
