//! Benchmark workload: re-exports the crate so it is linked in (stylo's library is named `style`).
pub use style;
