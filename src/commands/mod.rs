//! The user-facing commands, one file each: `stats`, `config`, `verify`, `clear`, `gc` (with
//! `prune`), and `remote`.

pub(crate) mod clear;
pub(crate) mod config;
pub(crate) mod explain;
pub(crate) mod gc;
pub(crate) mod remote;
pub(crate) mod report;
pub(crate) mod report_html;
pub(crate) mod stats;
pub(crate) mod verify;
