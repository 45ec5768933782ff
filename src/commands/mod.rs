//! The user-facing commands, one file each: `stats`, `config`, `verify`, `clear`.

pub mod clear;
pub mod config;
pub mod stats;
pub mod verify;
