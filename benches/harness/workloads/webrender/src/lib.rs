//! Benchmark workload: re-exports the crate so it is linked in.
pub use webrender;
