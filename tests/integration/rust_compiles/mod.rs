//! Rust compiles from the cache: what a warm build restores is what rustc and the linker write,
//! for every kind of compile cargo runs.
//!
//! - [`cold_warm`]: a clean rebuild restores every crate byte for byte, and is fresh after.
//! - [`check`], [`clippy`]: `cargo check` is cached; clippy's driver never gets a check's entry.
//! - [`cdylib`], [`cargo_test`], [`linked_outputs`]: linked outputs (a cdylib that loads, test
//!   harnesses that pass, executables that keep their mode, identical binaries in one blob).
//! - [`artifacts`]: the JSON artifact notifications and the dep-info name this out dir.
//! - [`diagnostics`]: warnings replayed exactly, errors never cached.
//! - [`argfile`]: `@argfile` compiles share the entry of the inline compile.
//! - [`restored_outputs`]: a real compile over restored outputs succeeds, with or without rcache.

mod argfile;
mod artifacts;
mod cargo_test;
mod cdylib;
mod check;
mod clippy;
mod cold_warm;
mod diagnostics;
mod linked_outputs;
mod restored_outputs;
