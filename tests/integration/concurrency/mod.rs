//! Concurrent use of one store: builds racing to compile and store the same crates, and
//! builds under load beside a gc loop, all green and leaving a consistent store.
//!
//! - [`two_builds`]: two cargo builds at once on one store.
//! - [`load`]: four builds for several rounds beside `rcache gc` at a tiny size limit.

mod load;
mod two_builds;
