//! rcache's integration tests: real cargo, rustc, C compilers and linker building the fixture
//! workspaces in `tests/fixtures` (`demo_ws`; `native_ws` for native code and a cdylib;
//! `scripts_ws` for build-script runs; `c_src` for C compiles; `sysprobe_ws` for the `cc`
//! crate's probes through each C/C++ setup), with rcache as `RUSTC_WRAPPER`.
//!
//! One test binary (one link, one build of the harness), one suite per feature, as ccache groups
//! its `test/suites`. A suite is a module: `cargo test --test integration <suite>::` runs one.
//!
//! - [`rust_compiles`]: cold then warm builds of every crate type (lib, proc macro, build
//!   script, bin, cdylib, test harness), `cargo check` and `cargo clippy`, the artifact
//!   notifications and dep-info of a hit, diagnostics replayed, `@argfile`s, restored outputs.
//! - [`invalidation`]: what is in the key. Each edit misses exactly the crates it affects
//!   (sources, modules, `include_str!`, env, cfg, build-script output, C code linked in, the
//!   linker); what is not in the key keeps hitting; a source edited mid-compile is not stored.
//! - [`dev_profile`]: the default dev profile (`-C incremental`, no `CARGO_INCREMENTAL`): hits
//!   after a clean, reverted edits served from the cache, incremental recompiles after restores.
//! - [`dev_sessions`]: the incremental sessions kept with entries and put back after a clean, so
//!   the first edit compiles incrementally; never changed, never elsewhere, never over rustc's.
//! - [`paths`]: hits that do not depend on paths: a second checkout, a git worktree, another
//!   target dir, `cargo install` twice, another machine with other paths through Redis; outputs
//!   a plain build's given the same remapping; the traps that must stay path-bound or miss.
//! - [`explain`]: `rcache explain` names the edited file, env value or flag, and the cascade.
//! - [`report`]: `rcache report`: totals equal to the stats' growth, concurrent builds apart,
//!   the `--html` page in headless Chromium.
//! - [`passthrough`]: what rcache does not cache goes to rustc with its reason
//!   (`RCACHE_DISABLE`, unknown arguments).
//! - [`build_scripts`]: build-script runs restored from the cache, rerun on exactly the inputs
//!   they declared.
//! - [`c_depend_mode`]: C and C++ compiles (`rcache cc`, the symlink form, cc-rs in a build
//!   script) with gcc and clang, in ccache's depend mode.
//! - [`cc_setup`]: the documented C/C++ setups (`CC` with `CC_KNOWN_WRAPPER_CUSTOM`, `CC`
//!   alone, the symlink form, zero config) build byte for byte what a plain build does, with
//!   the real `cc` crate's probes, and their compiles hit.
//! - [`store_faults`]: a store that cannot be used or lies (read-only, another user's, full,
//!   garbage, hostile records), and I/O errors injected into its writes, renames, fsyncs and
//!   opens (strace).
//! - [`crash`]: processes killed mid-store and mid-restore (strace `signal=KILL` at each
//!   syscall, whole cargo builds SIGKILLed), and the reader slots of killed LMDB readers.
//! - [`gc`]: gc, prune, the sweep of orphans and temp files, the automatic trim, gc beside
//!   builds.
//! - [`verify`]: `rcache verify` finds damaged blobs; `--repair` removes what depends on them.
//! - [`concurrency`]: builds at once on one store, and four builds beside a gc loop (load).
//! - [`remote`]: remote storage over real Redis and S3 (moto) servers: sharing, faults, trust.
//! - [`one_flow`]: what the three kinds of job (rustc, C/C++, build-script runs) used to do
//!   differently and now do alike: a program that cannot be started, a failed restore.
//! - [`cli`]: `rcache stats`, `config`, `RCACHE_RECACHE`, the store directory's creation, and
//!   the events log.
//!
//! `harness` owns everything the suites share: a fresh sandbox per test (a copy of the fixture,
//! its own store, target dir and events logs), a cargo command builder that clears what
//! `cargo test` leaks into children, helpers for events, stats, the fixture binary's output and
//! byte-for-byte comparisons, the remote servers, and (`harness::leaf`) one rustc compile of
//! demo_leaf through rcache, optionally under strace, for the syscall-level suites.

mod harness;

mod build_scripts;
mod c_depend_mode;
mod cc_setup;
mod cli;
mod concurrency;
mod crash;
mod dev_profile;
mod dev_sessions;
mod explain;
mod gc;
mod invalidation;
mod one_flow;
mod passthrough;
mod paths;
mod remote;
mod report;
mod rust_compiles;
mod store_faults;
mod verify;
