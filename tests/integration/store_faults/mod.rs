//! A store rcache cannot use, or that lies, never breaks a build nor serves a wrong result: the
//! compile runs, the fault is counted with its reason, and the outputs are rustc's.
//!
//! - [`mounts`]: a read-only store, another user's store, a full disk (real mounts).
//! - [`corruption`]: a garbage index and truncated blobs; `rcache clear` recovers the store.
//! - [`hostile_store`]: records that climb out of the out dir, do not decode, or name blobs
//!   whose bytes are not theirs.

mod corruption;
mod hostile_store;
mod mounts;
