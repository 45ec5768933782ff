//! The command line: wrapper mode or a command, decided by the first argument (docs/design.md §1).
//!
//! - A path, or a compiler name (`rustc`, `clippy-driver`, ...), means wrapper mode:
//!   `rcache /path/to/rustc <args>`, as cargo runs a `RUSTC_WRAPPER`. A C compiler's name or
//!   path (`rcache cc`, `rcache /usr/bin/clang++`) goes to the C path (`wrapper::cc`).
//! - rcache started through a link named like a C compiler (`cc`, `gcc`, `clang++`, ...) is the
//!   ccache-style symlink form: `argv[0]` is the compiler, found further along PATH.
//! - `--build-script-run <script>` is a build-script run, from the launcher (docs/design.md §6b).
//! - Anything else is parsed by clap as a command.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::config::Config;
use crate::wrapper::build_script;

#[derive(Debug, Parser)]
#[command(
    name = "rcache",
    version,
    about = "A compiler cache for Rust. Use it as cargo's RUSTC_WRAPPER: RUSTC_WRAPPER=rcache cargo build",
    after_help = "Wrapper mode: rcache /path/to/rustc <rustc args>  (what cargo runs)"
)]
pub struct Cli {
    /// Print the statistics (as `rcache stats`), for sccache users.
    #[arg(long, short = 's')]
    pub show_stats: bool,
    /// Reset the statistics (as `rcache stats --zero`).
    #[arg(long, short = 'z')]
    pub zero_stats: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show hit/miss counters, reasons and store size.
    Stats {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Reset the counters.
        #[arg(long)]
        zero: bool,
    },
    /// Show the effective settings and where each came from.
    Config,
    /// Re-hash every blob and check every entry's references.
    Verify {
        /// Remove what is broken; the next build simply misses.
        #[arg(long)]
        repair: bool,
    },
    /// Empty the cache (the config is kept).
    Clear,
    /// Trim the cache to its size limit, least recently used first, and sweep what crashes
    /// left behind.
    Gc {
        /// Trim to this size instead of the configured limit (`10G`, `500M`, `64K`, bytes).
        #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
        max_size: Option<u64>,
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run as the automatic gc that a store over the limit starts.
        #[arg(long, hide = true)]
        auto: bool,
        /// The sweep's grace period (default 1h), for tests.
        #[arg(long, hide = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
    },
    /// The remote cache shared between machines (RCACHE_REMOTE).
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
    /// Remove the entries not used for DURATION (`30d`, `12h`, `90s`).
    Prune {
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Tell whether the remote is reachable and writable.
    Check,
    /// Wait for background uploads, then publish what is still queued.
    Flush,
    /// Publish the queue (the detached uploader that stores start).
    #[command(hide = true)]
    Upload,
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    crate::config::parse_size(text)
        .ok_or_else(|| format!("{text:?} is not a size (10G, 500M, 64K, bytes)"))
}

/// Compiler names that select wrapper mode when given without a path.
const COMPILER_NAMES: [&str; 9] = [
    "rustc",
    "clippy-driver",
    "cc",
    "gcc",
    "clang",
    "c++",
    "g++",
    "clang++",
    "rustc.exe",
];

/// True if `first` (the first argument) names a compiler rather than a command.
pub fn is_wrapper_invocation(first: &OsString) -> bool {
    let text = first.to_string_lossy();
    if text.starts_with('-') {
        return false;
    }
    text.contains('/')
        || COMPILER_NAMES.contains(&text.as_ref())
        || Path::new(first)
            .file_name()
            .is_some_and(|name| COMPILER_NAMES.contains(&name.to_string_lossy().as_ref()))
}

/// Runs rcache with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|first| first == build_script::RUN_FLAG)
    {
        return build_script::run(args[2..].to_vec());
    }
    // The ccache-style symlink form: rcache started through a link named `cc`, `gcc`, ...
    if args
        .first()
        .is_some_and(|argv0| crate::cc::driver::is_c_compiler(argv0))
    {
        return crate::wrapper::cc::run(args[0].clone(), args[1..].to_vec());
    }
    if args.len() > 1 && is_wrapper_invocation(&args[1]) {
        if crate::cc::driver::is_c_compiler(&args[1]) {
            return crate::wrapper::cc::run(args[1].clone(), args[2..].to_vec());
        }
        return crate::wrapper::run(args[1..].to_vec());
    }
    let cli = Cli::parse_from(&args);
    match run_command(cli) {
        Ok(code) => exit_code_value(code),
        Err(err) => {
            eprintln!("rcache: {err:#}");
            2
        }
    }
}

fn exit_code_value(code: ExitCode) -> i32 {
    if code == ExitCode::SUCCESS { 0 } else { 1 }
}

/// Dispatches a parsed command line.
pub fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load();
    crate::logging::init(config.log.value.as_deref());
    if cli.zero_stats {
        commands::stats::zero(&config)?;
    }
    if cli.show_stats {
        commands::stats::show(&config, false)?;
    }
    match cli.command {
        Some(Command::Stats { json, zero }) => {
            if zero {
                commands::stats::zero(&config)?;
            } else {
                commands::stats::show(&config, json)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Config) => {
            commands::config::show(&config);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Verify { repair }) => commands::verify::run(&config, repair),
        Some(Command::Clear) => {
            commands::clear::run(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Gc {
            max_size,
            dry_run,
            auto,
            grace,
        }) => {
            if auto {
                commands::gc::auto(&config)?;
            } else {
                commands::gc::gc(&config, max_size, dry_run, grace)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Prune {
            older_than,
            dry_run,
        }) => {
            commands::gc::prune(&config, older_than, dry_run)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Remote { command }) => match command {
            RemoteCommand::Check => commands::remote::check(&config),
            RemoteCommand::Flush => commands::remote::flush(&config),
            RemoteCommand::Upload => commands::remote::upload(&config),
        },
        None if cli.show_stats || cli.zero_stats => Ok(ExitCode::SUCCESS),
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_told_apart() {
        for wrapper in [
            "/usr/bin/rustc",
            "rustc",
            "./rustc",
            "clippy-driver",
            "/x/clippy-driver",
        ] {
            assert!(is_wrapper_invocation(&OsString::from(wrapper)), "{wrapper}");
        }
        for command in [
            "stats",
            "config",
            "verify",
            "--show-stats",
            "-s",
            "clear",
            "gc",
            "prune",
        ] {
            assert!(
                !is_wrapper_invocation(&OsString::from(command)),
                "{command}"
            );
        }
    }
}
