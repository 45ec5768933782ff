//! rcache: a compiler cache for Rust, used as cargo's `RUSTC_WRAPPER`.
//!
//! Read top-down, the modules are the pipeline; each imports only those below it:
//! - [`cli`]: the command line; dispatches to the wrapper or a command.
//! - [`commands`]: `stats`, `config`, `verify`, `clear`.
//! - [`wrapper`]: the compile path: classify, look up, restore or run, store.
//! - [`key`]: two-level keys (invocation -> manifest candidates -> result) and file hashing.
//! - [`rustc`]: rustc argv -> a typed invocation or a reason not to cache.
//! - [`cc`]: gcc/clang argv -> a typed invocation, the C compiler's identity and key.
//! - [`depinfo`]: the dep-info parser.
//! - [`remote`]: the shared second level behind the store (S3, Redis).
//! - [`stats`], [`config`], [`logging`], [`warn_once`], [`detached`]: counters and events,
//!   settings, diagnostics, helper processes.
//! - [`store`]: the content-addressed store (blobs + LMDB index).
//!
//! <!-- layers: the one place the order is written; tests/layering.rs reads it -->
//! Layers, top to bottom: a module imports only modules below its own layer (`{...}` is one
//! layer whose members import none of each other), and tests/layering.rs fails otherwise:
//!
//! cli > commands > wrapper > remote > stats > cc > key > rustc > depinfo > store > hash >
//! {clock, config, detached, logging, warn_once}
//! <!-- /layers -->

pub mod cc;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod depinfo;
pub mod detached;
pub mod hash;
pub mod key;
pub mod logging;
pub mod remote;
pub mod rustc;
pub mod stats;
pub mod store;
pub mod warn_once;
pub mod wrapper;
