//! rustc's command line: raw argv -> a typed [`Invocation`], or a typed [`Passthrough`] reason.
//!
//! - [`argfile`] expands `@file` arguments.
//! - [`args`] parses the expanded argv into an [`Invocation`] and decides cacheability.
//! - [`passthrough`] names every reason an invocation is not cached.
//! - [`outputs`] names the files a cacheable invocation writes, from the crate name,
//!   `-C extra-filename`, the crate types and `--emit` (never by diffing the out dir).

pub(crate) mod argfile;
pub(crate) mod args;
pub mod outputs;
pub(crate) mod passthrough;

pub use args::{Extern, Invocation, classify};
pub use passthrough::Passthrough;
