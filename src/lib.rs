//! rcache: a compiler cache for Rust, used as cargo's `RUSTC_WRAPPER`; it also caches C/C++
//! compiles and build-script runs. ARCHITECTURE.md is the map; docs/design.md gives the reasons.
//!
//! Three kinds of job come in through [`cli`] and go through one cache flow
//! (`wrapper::flow::run_cached`): key, look up locally then remotely, restore and replay or run
//! and record, then count the one outcome:
//! - a rustc compile (`rcache <rustc> <args>`): `wrapper::rustc`, parsed by [`rustc`], keyed by
//!   [`key`];
//! - a C/C++ compile (`rcache cc <args>`, a compiler-named link): `wrapper::cc`, parsed and keyed
//!   by [`cc`];
//! - a build-script run (`rcache --build-script-run`, from the launcher): `wrapper::build_script`,
//!   keyed by `key::build_script`.
//!
//! A fourth kind of job is a new `wrapper::flow::Job` (ARCHITECTURE.md, "The cache flow").
//!
//! The modules, top to bottom:
//! - [`cli`]: the command line; dispatches to the wrapper or a command.
//! - [`commands`]: `stats`, `config`, `explain`, `report`, `verify`, `clear`, `gc` (and
//!   `prune`), `remote`.
//! - [`wrapper`]: the cache flow and the three jobs; starts the detached gc and uploader.
//! - [`remote`]: the shared second level behind the store (S3, Redis).
//! - [`stats`]: outcomes, their typed reasons, counters and the events log.
//! - [`cc`]: gcc/clang argv -> a typed invocation, the C compiler's identity and key.
//! - [`key`]: two-level keys (invocation -> manifest candidates -> result).
//! - [`rustc`]: rustc argv -> a typed invocation or a reason not to cache.
//! - [`depinfo`]: the dep-info parser.
//! - [`store`]: the content-addressed store (blobs + LMDB index), gc.
//! - [`hash`]: blake3 keys and file hashing.
//! - [`clock`], [`config`], [`detached`], [`logging`], [`warn_once`]: utilities.
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
pub(crate) mod clock;
pub(crate) mod commands;
pub mod config;
pub mod depinfo;
pub(crate) mod detached;
pub mod hash;
pub mod key;
pub(crate) mod logging;
pub mod remote;
pub mod rustc;
pub(crate) mod stats;
pub mod store;
pub(crate) mod warn_once;
pub mod wrapper;
