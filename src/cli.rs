//! The command line: wrapper mode or a command, decided by the first argument (docs/design.md §1).
//!
//! - A path, or a compiler name (`rustc`, `clippy-driver`, ...), means wrapper mode:
//!   `rcache /path/to/rustc <args>`, as cargo runs a `RUSTC_WRAPPER`. A C compiler's name or
//!   path (`rcache cc`, `rcache /usr/bin/clang++`) goes to the C path (`wrapper::cc`).
//! - rcache started through a link named like a C compiler (`cc`, `gcc`, `clang++`, ...) is the
//!   ccache-style symlink form: `argv[0]` is the compiler, found further along PATH.
//! - `--build-script-run <script>` is a build-script run, from the launcher (docs/design.md §6b).
//! - rcache started as if it were the compiler (`rcache -E x.c`, `rcache -c x.c -o x.o`: a first
//!   argument that is a compiler option rcache does not own, or a C/C++ source) is `rcache cc`
//!   with those arguments: a build tool that took rcache for the compiler (the `cc` crate does
//!   with `CC="rcache cc"` when it does not know rcache as a wrapper) probes the real `cc`,
//!   and never reads a usage error as "this flag is not supported".
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
    /// Why a unit missed: the nearest earlier record of it and exactly what differs. With no
    /// unit, every unit of the last build that did not hit, grouped by root cause.
    Explain {
        /// A crate name, a C source path as given, or a package (its build-script run).
        unit: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What the last build got from the cache: each unit's outcome, reason and time, the
    /// totals, and the misses by root cause.
    Report {
        /// Another build than the last (its id, from --list).
        #[arg(long)]
        build: Option<String>,
        /// List the builds kept, newest first.
        #[arg(long, conflicts_with_all = ["build", "html"])]
        list: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Write the report as one self-contained HTML page, with a timeline.
        #[arg(long, value_name = "FILE")]
        html: Option<std::path::PathBuf>,
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
    /// Pull a build's group into the store while the build runs (the detached prefetcher that
    /// a remote hit starts).
    #[command(hide = true)]
    Prefetch {
        /// The group, 64 hex digits.
        #[arg(long)]
        group: String,
        /// The build's process to watch, `<pid>:<start time>`.
        #[arg(long)]
        build: String,
    },
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

/// rcache's own options, which stay commands when they come first.
const OWN_LONG_OPTIONS: [&str; 4] = ["--show-stats", "--zero-stats", "--help", "--version"];

/// The short options of rcache's own (`-s`, `-z`, `-h`, `-V`), alone or clustered (`-sz`).
const OWN_SHORT_OPTIONS: &str = "szhV";

/// Extensions of the sources gcc and clang compile (C, C++, Objective-C/C++, assembly,
/// preprocessed forms).
const SOURCE_EXTENSIONS: [&str; 14] = [
    "c", "cc", "cp", "cpp", "cxx", "c++", "C", "CPP", "m", "mm", "M", "S", "s", "i",
];

/// True if rcache was started as if it were the C compiler itself: `first` is an option that is
/// not rcache's own (`-E`, `-c`, `-O2`, `--version=x`...), or a C/C++ source file. Such a call
/// runs as `rcache cc <args>`.
pub fn is_compiler_style_invocation(first: &OsString) -> bool {
    let text = first.to_string_lossy();
    if let Some(rest) = text.strip_prefix('-') {
        if text.starts_with("--") {
            return !OWN_LONG_OPTIONS.contains(&text.as_ref());
        }
        return rest.is_empty() || !rest.chars().all(|c| OWN_SHORT_OPTIONS.contains(c));
    }
    Path::new(first)
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| SOURCE_EXTENSIONS.contains(&ext) || ext == "ii")
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
    // Started as if it were the compiler: the C path, with `cc` found on PATH.
    if args.len() > 1 && is_compiler_style_invocation(&args[1]) {
        return crate::wrapper::cc::run(OsString::from("cc"), args[1..].to_vec());
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
        Some(Command::Explain { unit, json }) => {
            commands::explain::run(&config, unit.as_deref(), json)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Report {
            build,
            list,
            json,
            html,
        }) => {
            let request = commands::report::ReportRequest {
                build: build.as_deref(),
                list,
                json,
                html: html.as_deref(),
            };
            commands::report::run(&config, &request)?;
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
            RemoteCommand::Prefetch { group, build } => {
                commands::remote::prefetch(&config, &group, &build)
            }
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

    #[test]
    fn compiler_style_calls_are_told_from_commands() {
        for compiler_call in [
            "-E",
            "-c",
            "-O0",
            "-ffunction-sections",
            "-",
            "--target=x86_64-linux-gnu",
            "-Sz",
            "x.c",
            "/tmp/out/flag_check.cpp",
            "src/a.S",
            "b.ii",
        ] {
            let arg = OsString::from(compiler_call);
            assert!(is_compiler_style_invocation(&arg), "{compiler_call}");
        }
        for own in [
            "-s",
            "-z",
            "-sz",
            "-h",
            "-V",
            "--help",
            "--version",
            "--show-stats",
            "--zero-stats",
            "stats",
            "gc",
            "/usr/bin/rustc",
            "cc",
        ] {
            assert!(!is_compiler_style_invocation(&OsString::from(own)), "{own}");
        }
    }
}
