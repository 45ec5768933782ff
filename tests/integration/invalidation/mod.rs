//! What is in the key, and what is not: an input change misses exactly the crates it affects
//! and going back hits again; a change outside the key keeps hitting; an input that changes
//! during the compile is never stored.
//!
//! - [`edits`]: sources, path modules, `include_str!` files, `env!` variables, cfgs, build-script
//!   output.
//! - [`native_link`]: C code of a transitive dependency, seen only by the linker, relinks the bin.
//! - [`linker_identity`]: the linker program is in the key of every crate that links.
//! - [`key_scope`]: unrelated environment, job counts, colour and the target dir do not miss.
//! - [`input_race`]: a source edited while rustc compiles it is not stored.

mod edits;
mod input_race;
mod key_scope;
mod linker_identity;
mod native_link;
