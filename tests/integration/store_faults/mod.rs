//! A store rcache cannot use, or that lies, never breaks a build nor serves a wrong result: the
//! compile runs, the fault is counted with its reason, and the outputs are rustc's.
//!
//! - [`mounts`]: a read-only store, another user's store, a full disk (real mounts).
//! - [`corruption`]: a garbage index and truncated blobs; `rcache clear` recovers the store.
//! - [`hostile_store`]: records that climb out of the out dir, do not decode, or name blobs
//!   whose bytes are not theirs.
//! - [`io_errors`]: strace fails every write, rename, fsync and open of a store (ENOSPC, EIO,
//!   EXDEV, EACCES) during a miss, a miss into a new store, and a hit.

mod corruption;
mod hostile_store;
mod io_errors;
mod mounts;
