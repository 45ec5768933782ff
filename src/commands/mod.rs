//! The user-facing commands, one file each: `stats`, `config`, `verify`, `clear`, and `gc` (with
//! `prune`).

pub mod clear;
pub mod config;
pub mod gc;
pub mod stats;
pub mod verify;
