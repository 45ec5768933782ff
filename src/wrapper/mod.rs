//! The wrapper path: every invocation that cargo or a build tool hands to rcache, through the
//! one cache flow.
//!
//! Three kinds of job share [`flow`]: a rustc compile ([`rustc`], cargo's `RUSTC_WRAPPER`), a
//! C/C++ compile ([`cc`]) and a build-script run ([`build_script`], through the launcher). Every
//! invocation ends in exactly one [`crate::stats::Outcome`], counted in the state env and
//! written to the events log:
//! - not cacheable (a probe, an unknown argument, a crate type not cached): the real program is
//!   exec'd with the same argv, stdin, exit code and output;
//! - a hit: outputs restored, output replayed, no program run;
//! - a miss: the program runs with its output streamed, and the result is stored;
//! - a cache fault at any step before the replay: the program runs instead, and the fault is
//!   counted under `errors`. A build never fails because of rcache.
//!
//! The shared pieces: [`keying`] (memoized file hashes, candidate lookup), [`compiler_memo`]
//! (compiler identities, computed once per store), [`input_hashes`]
//! (inputs' hashes, templated for generated files that name base dirs), [`run`] (exec and the
//! streamed run), [`restore`] (materializing outputs, replaying rustc's output), [`notice`] (the
//! one warning per build for an unusable store), [`incremental`] (the dev profile's incremental
//! sessions kept with entries and put back on hits).

pub mod background;
pub mod build_script;
pub(crate) mod cc;
pub(crate) mod compiler_memo;
pub(crate) mod flow;
pub(crate) mod incremental;
pub(crate) mod input_hashes;
pub(crate) mod keying;
pub(crate) mod notice;
pub(crate) mod record;
pub(crate) mod restore;
pub(crate) mod run;
pub(crate) mod rustc;

pub use rustc::run;
