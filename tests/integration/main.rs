//! rcache's integration tests: real cargo, rustc and linker building the fixture workspaces in
//! `tests/fixtures` (`demo_ws`; `native_ws` for native code and a cdylib; `scripts_ws` for
//! build-script runs; `sysprobe_ws` for the `cc` crate's probes through each C/C++ setup), with rcache as
//! `RUSTC_WRAPPER`.
//!
//! One test binary, one module per behaviour (ripgrep style). `harness` owns everything the
//! tests share: a fresh sandbox per test (a copy of the fixture, its own store, target dir and
//! events logs), a cargo command builder that clears what `cargo test` leaks into children,
//! and helpers for events, stats, the fixture binary's output and byte-for-byte comparisons.

mod harness;

mod argfile;
mod artifacts;
mod build_scripts;
mod c_compiles;
mod cargo_test;
mod cc_setup;
mod cdylib;
mod check;
mod cli;
mod clippy;
mod cold_warm;
mod concurrency;
mod corruption;
mod diagnostics;
mod events_log;
mod faults;
mod gc;
mod hostile_store;
mod input_race;
mod invalidation;
mod key_scope;
mod linked_outputs;
mod linker_identity;
mod load;
mod native_link;
mod passthrough;
mod remote;
mod restored_outputs;
mod syscall_faults;
