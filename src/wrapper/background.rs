//! Starting rcache's own helper processes after a store: the automatic gc (`rcache gc --auto`)
//! and the remote uploader (`rcache remote upload`).
//!
//! The store and the remote only say that one is due ([`crate::store::gc::auto::after_store`],
//! [`crate::remote::publish::after_store`]); the wrapper knows the command line and starts the
//! process detached from the build ([`crate::detached`]: cargo never waits for it, and it holds
//! no jobserver token). A process that cannot be started never fails a build: the fault is
//! logged and counted, under `auto_gc_faults` or the remote's error reasons.

use std::io;
use std::path::{Path, PathBuf};

use crate::store::gc::auto;
use crate::store::state::StateUpdate;
use crate::store::{Store, StoreError};

/// Starts `rcache gc --auto` detached.
pub fn start_gc(store: &Store) {
    tracing::debug!("starting rcache gc --auto");
    if let Err(err) = current_exe().and_then(|exe| spawn_gc(&exe).map_err(spawn_fault(exe))) {
        tracing::warn!("automatic gc not started: {err}");
        auto::count_fault(store);
    }
}

/// Starts the remote uploader, `rcache remote upload`, detached.
pub fn start_uploader(update: &mut StateUpdate) {
    let started = current_exe().and_then(|exe| {
        crate::detached::spawn(&exe, &["remote", "upload"]).map_err(spawn_fault(exe))
    });
    if let Err(err) = started {
        tracing::warn!("could not start the remote uploader: {err}");
        crate::remote::count_error(update, err.reason());
    }
}

/// Starts `<rcache> gc --auto` detached from this process and its build (the wrapper passes
/// its own executable).
pub fn spawn_gc(rcache: &Path) -> io::Result<()> {
    crate::detached::spawn(rcache, &["gc", "--auto"])
}

fn current_exe() -> Result<PathBuf, StoreError> {
    std::env::current_exe().map_err(|source| StoreError::Io {
        path: "/proc/self/exe".into(),
        source,
    })
}

fn spawn_fault(exe: PathBuf) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Io { path: exe, source }
}
