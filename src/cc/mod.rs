//! C and C++ compiles: gcc/clang argv -> a typed [`args::CcInvocation`], the compiler's identity,
//! and the invocation key (docs/design.md §6c: "depend mode", as ccache calls it).
//!
//! - [`driver`] tells a C compiler name from rustc's, and finds the real compiler on PATH (the
//!   ccache-style symlink form skips every PATH entry that is rcache itself).
//! - [`args`] classifies the argv: one source compiled to one object with `-c`, or a
//!   [`passthrough::CcPassthrough`] reason.
//! - [`identity`] identifies the compiler by content, memoized by stat data like rustc's.
//! - [`key`] builds the invocation key; candidates and result keys are the Rust ones.
//! - [`depfile`] renders the caller's dep-file target, and scans inputs for time macros.
//!
//! The flow that uses these (look up, restore, compile, store) is `crate::wrapper::cc`.

pub mod args;
pub(crate) mod depfile;
pub(crate) mod driver;
pub(crate) mod identity;
pub(crate) mod key;
pub(crate) mod passthrough;

/// The language of a compile, for the per-language stats (`languages.<name>.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    C,
    Cxx,
    ObjC,
    ObjCxx,
    /// Assembly that goes through the preprocessor (`.S`).
    Asm,
}

impl Language {
    /// The name used in counters and in `rcache stats --json`.
    pub fn name(self) -> &'static str {
        match self {
            Language::C => "c",
            Language::Cxx => "cxx",
            Language::ObjC => "objc",
            Language::ObjCxx => "objcxx",
            Language::Asm => "asm",
        }
    }
}
