//! `rcache clear`: empties the cache, keeping the config and the store's directory.

use anyhow::Context;

use crate::config::Config;
use crate::store::Store;

pub fn run(config: &Config) -> anyhow::Result<()> {
    let store = Store::open(&config.dir.value)
        .with_context(|| format!("opening the cache at {}", config.dir.value.display()))?;
    let _lock = store.lock(std::time::Duration::from_secs(30))?;
    // Index first: once no entry points at a blob, deleting the blobs cannot break a hit.
    store.index.clear()?;
    store.state.clear_memos()?;
    for dir in [store.layout.blobs_dir(), store.layout.tmp_dir()] {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        std::fs::create_dir_all(&dir)?;
    }
    println!("Cache at {} cleared.", config.dir.value.display());
    Ok(())
}
