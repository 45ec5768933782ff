//! The command line and what rcache reports about itself.
//!
//! - [`commands`]: `rcache stats` and its aliases, `rcache config`, `RCACHE_RECACHE`, and how
//!   the store directory is created.
//! - [`events_log`]: the values of the events log (`RCACHE_EVENTS`).

mod commands;
mod events_log;
