//! Crashes: rcache, rustc or a whole build killed at any point never leaves a store that
//! breaks or misleads a later build. The next run is correct, `rcache verify` is clean, and gc
//! reclaims what the dead runs left.
//!
//! - [`kills`]: strace kills rcache (and, with `-f`, rustc) at each syscall of a miss's store
//!   and a hit's restore; compiles killed before their index commit leave orphans that gc
//!   reclaims exactly.
//! - [`killed_builds`]: whole cargo builds SIGKILLed at random delays.
//! - [`readers`]: more killed LMDB readers than the reader table has slots.
//!
//! The syscall-level walks drive [`crate::harness::leaf`]; injected I/O errors (the process
//! lives on) are `store_faults::io_errors`.

mod killed_builds;
mod kills;
mod readers;
