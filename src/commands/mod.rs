//! The user-facing commands, one file each: `stats`, `config`, `verify`, `clear`, `gc` (with
//! `prune`), and `remote`.

pub mod clear;
pub mod config;
pub mod gc;
pub mod remote;
pub mod stats;
pub mod verify;
