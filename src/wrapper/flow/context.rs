//! The per-process side of the flow: the settings and pending state update of one wrapper
//! invocation, what the stats and the events log know of it ([`Unit`]), and the two ways an
//! invocation ends without the cache: a passthrough and a store that cannot be opened.

use std::borrow::Cow;
use std::path::Path;
use std::time::{Instant, SystemTime};

use super::super::keying::KeyError;
use super::super::run::{self, Program};
use super::EXIT_CANNOT_RUN;
use crate::config::Config;
use crate::remote::fetch::RemoteOutcome;
use crate::stats::{self, Event, Outcome, PassthroughReason};
use crate::store::builds::BuildUnit;
use crate::store::entry::{EnvRecord, InputRecord};
use crate::store::history::{UnitIdentity, UnitRecord, unit_id, version_line};
use crate::store::state::{State, StateUpdate};
use crate::store::{Store, StoreError};

/// How an outcome is counted: a compile (in the totals and its language's split) or a
/// build-script run (under `build_scripts.`).
#[derive(Debug, Clone, Copy)]
pub enum Counting {
    Compile { language: &'static str },
    BuildScriptRun,
}

/// What an invocation that did not hit knew, for its explain history: the key's facts
/// ([`super::Job::explain_facts`]) and the inputs its record held.
#[derive(Debug, Default)]
pub struct RanFacts {
    pub facts: Vec<(String, String)>,
    pub inputs: Vec<InputRecord>,
    pub env_deps: Vec<EnvRecord>,
}

/// What the stats and the events log know of one invocation.
pub struct Unit<'a> {
    /// The event's `kind`: `rustc`, `cc` or `build_script_run`.
    pub kind: &'static str,
    pub counting: Counting,
    /// The crate, the C source, or the build script's package.
    pub name: Option<Cow<'a, str>>,
    pub crate_types: Cow<'a, [String]>,
    pub cwd: Cow<'a, Path>,
    /// Why the unit is keyed with its real paths, when it is (`key::base_dirs::PathBound`).
    pub path_bound: Option<&'static str>,
}

/// The state of one wrapper process: its settings, clock, pending state update and what the
/// remote said.
pub struct Context {
    pub config: Config,
    clock: Instant,
    /// When the invocation started, unix ms (the build log's timeline).
    started_ms: u64,
    /// The package cargo names (`CARGO_PKG_NAME`): cargo sets it for compiles and runs, and a
    /// build script's C/C++ compiles inherit it.
    package: Option<String>,
    /// The semver line of its version (`store::history::version_line`).
    version_line: Option<String>,
    pub update: StateUpdate,
    pub(super) remote_outcome: Option<RemoteOutcome>,
    /// What the first cache fault of this invocation said, for the event's `detail` when the
    /// outcome is an error ([`Context::fault`]).
    fault_detail: Option<String>,
    /// The clock files are stamped from, read when the process started, before any input is
    /// hashed: a miss's run waits for the next tick of this clock only if none passed since
    /// (`file_hash::filesystem_tick_after`). Reading it here rather than when the flow starts
    /// gives the run the time spent loading the settings and opening the store as a head start.
    pub(super) started_fs_ns: i128,
}

impl Context {
    /// Loads the settings and starts logging.
    pub fn load() -> Context {
        // Read before anything else: see `started_fs_ns`.
        let started_fs_ns = crate::hash::file_hash::filesystem_clock_ns();
        let config = Config::load();
        crate::logging::init(config.log.value.as_deref());
        Context {
            config,
            clock: Instant::now(),
            started_ms: crate::clock::unix_ms(SystemTime::now()),
            package: std::env::var("CARGO_PKG_NAME").ok(),
            version_line: std::env::var("CARGO_PKG_VERSION")
                .ok()
                .map(|version| version_line(&version)),
            update: StateUpdate::default(),
            remote_outcome: None,
            fault_detail: None,
            started_fs_ns,
        }
    }

    /// Keeps what a cache fault said; the first one is what the outcome counts.
    pub(super) fn fault(&mut self, detail: impl std::fmt::Display) {
        if self.fault_detail.is_none() {
            self.fault_detail = Some(detail.to_string());
        }
    }

    pub fn open_store(&self) -> Result<Store, StoreError> {
        Store::open(&self.config.dir.value)
    }

    /// An invocation that is not cached: counted, then the real program exec'd.
    pub fn pass_through(
        &mut self,
        store: Option<&Store>,
        unit: &Unit,
        program: &Program,
        reason: PassthroughReason,
    ) -> i32 {
        tracing::debug!(
            reason = reason.as_str(),
            detail = reason.detail(),
            "passthrough"
        );
        // Cargo's `rustc -vV` and `--print` probes are not units a user asks about.
        let probe = matches!(
            reason,
            PassthroughReason::Rustc(crate::rustc::Passthrough::Probe)
        );
        let outcome = Outcome::Passthrough { reason };
        if !probe {
            self.record_history(unit, &outcome, RanFacts::default());
        }
        self.finish(store, unit, &outcome);
        exec(program)
    }

    /// A cacheable invocation whose store cannot be opened: warned about where the user must
    /// act ([`super::notice`]), counted, then the real program exec'd.
    pub fn store_unusable(
        &mut self,
        err: &StoreError,
        unit: &Unit,
        program: &Program,
        what_runs: &str,
    ) -> i32 {
        let outcome = super::super::notice::store_unusable(err, &self.config.dir.value, what_runs);
        self.fault(err);
        self.finish(None, unit, &outcome);
        exec(program)
    }

    /// A fault before anything ran: counted, then the real program exec'd.
    pub(super) fn fall_back(
        &mut self,
        store: &Store,
        unit: &Unit,
        program: &Program,
        err: &KeyError,
    ) -> i32 {
        tracing::warn!("lookup failed ({err}); running the real program");
        self.fault(err);
        let outcome = Outcome::Error {
            reason: err.reason(),
        };
        self.finish(Some(store), unit, &outcome);
        exec(program)
    }

    /// Adds the invocation to its unit's explain history (`store::history`), applied with the
    /// outcome's counters. Only invocations that did not hit, and units with a name.
    pub fn record_history(&mut self, unit: &Unit, outcome: &Outcome, ran: RanFacts) {
        let Some(name) = unit.name.as_deref() else {
            return;
        };
        let record = UnitRecord {
            ts_ms: crate::clock::unix_ms(SystemTime::now()),
            build: crate::warn_once::build_id(),
            kind: unit.kind.to_string(),
            name: name.to_string(),
            package: self.package.clone(),
            crate_types: unit.crate_types.to_vec(),
            outcome: outcome.name().to_string(),
            reason: outcome.reason().map(str::to_string),
            facts: ran.facts,
            inputs: ran.inputs,
            env_deps: ran.env_deps,
        };
        let id = unit_id(&UnitIdentity {
            kind: unit.kind,
            package: self.package.as_deref(),
            version_line: self.version_line.as_deref(),
            name,
            crate_types: &unit.crate_types,
        });
        self.update.unit_records.push((id, record));
    }

    /// Counts the outcome (one unsynced state transaction) and writes the event line.
    pub fn finish(&mut self, store: Option<&Store>, unit: &Unit, outcome: &Outcome) {
        match unit.counting {
            Counting::Compile { language } => {
                outcome.count(&mut self.update);
                outcome.count_language(&mut self.update, language);
            }
            Counting::BuildScriptRun => outcome.count_build_script_run(&mut self.update),
        }
        if let Some(reason) = unit.path_bound {
            let prefix = match unit.counting {
                Counting::Compile { .. } => "",
                Counting::BuildScriptRun => stats::BUILD_SCRIPTS_PREFIX,
            };
            self.update.count(format!("{prefix}path_bound.{reason}"), 1);
        }
        let elapsed = self.clock.elapsed();
        let logged = LoggedRun {
            started_ms: self.started_ms,
            duration_us: elapsed.as_micros() as u64,
            package: self.package.clone(),
            remote: self.remote_outcome.map(|r| r.name().to_string()),
        };
        self.update
            .build_units
            .push((crate::warn_once::build_id(), logged.unit(unit, outcome)));
        apply_state_update(store, &self.config.dir.value, &self.update);
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        tracing::debug!(
            outcome = outcome.name(),
            reason = outcome.reason(),
            duration_ms,
            "done"
        );
        if let Some(events) = &self.config.events.value {
            stats::append_event(
                events,
                &Event {
                    ts_ms: crate::clock::unix_ms(SystemTime::now()),
                    pid: std::process::id(),
                    kind: unit.kind,
                    crate_name: unit.name.as_deref(),
                    crate_types: &unit.crate_types,
                    outcome: outcome.name(),
                    reason: outcome.reason(),
                    stored: matches!(outcome, Outcome::Miss { not_stored: None }),
                    duration_ms,
                    cwd: &unit.cwd,
                    remote: self.remote_outcome.map(RemoteOutcome::name),
                    path_bound: unit.path_bound,
                    detail: match outcome {
                        Outcome::Error { .. } => self.fault_detail.as_deref(),
                        _ => None,
                    },
                },
            );
        }
    }
}

/// What the build log keeps of an invocation besides its unit and outcome.
struct LoggedRun {
    started_ms: u64,
    duration_us: u64,
    package: Option<String>,
    remote: Option<String>,
}

impl LoggedRun {
    /// The invocation as the build log (`store::builds`) keeps it.
    fn unit(self, unit: &Unit, outcome: &Outcome) -> BuildUnit {
        BuildUnit {
            start_ms: self.started_ms,
            duration_us: self.duration_us,
            pid: std::process::id(),
            kind: unit.kind.to_string(),
            name: unit.name.as_deref().map(str::to_string),
            package: self.package,
            crate_types: unit.crate_types.to_vec(),
            outcome: outcome.name().to_string(),
            reason: outcome.reason().map(str::to_string),
            build_script_run: matches!(unit.counting, Counting::BuildScriptRun),
            saved_ms: match outcome {
                Outcome::Hit { saved_ms } => *saved_ms,
                _ => 0,
            },
            remote: self.remote,
            path_bound: unit.path_bound.map(str::to_string),
            cwd: unit.cwd.to_string_lossy().into_owned(),
        }
    }
}

/// Counts a build-script run that will not come to rcache (its launcher could not be put in
/// place, so cargo runs the script itself), and logs it in the build, so that the build's log
/// adds up to its counters.
pub fn count_unlaunched_run(update: &mut StateUpdate, outcome: &Outcome, cwd: &Path) {
    outcome.count_build_script_run(update);
    let package = std::env::var("CARGO_PKG_NAME").ok();
    let unit = Unit {
        kind: "build_script_run",
        counting: Counting::BuildScriptRun,
        name: package.clone().map(Cow::Owned),
        crate_types: Cow::Borrowed(&[]),
        cwd: Cow::Borrowed(cwd),
        path_bound: None,
    };
    let logged = LoggedRun {
        started_ms: crate::clock::unix_ms(SystemTime::now()),
        duration_us: 0,
        package,
        remote: None,
    };
    update
        .build_units
        .push((crate::warn_once::build_id(), logged.unit(&unit, outcome)));
}

/// Replaces this process with the real program; returns only if that failed.
pub(super) fn exec(program: &Program) -> i32 {
    let err = run::exec(&program.chain, &program.args);
    eprintln!("rcache: could not run {}: {err}", program.path().display());
    EXIT_CANNOT_RUN
}

/// Applies an invocation's counters, last-use times and memos in one unsynced transaction;
/// without an open store (it could not be opened), through the state env alone. A failure is
/// logged, never fatal: stats are not worth a build.
fn apply_state_update(store: Option<&Store>, store_dir: &Path, update: &StateUpdate) {
    let applied = match store {
        Some(store) => store.state.apply(update),
        None => State::open(&crate::store::layout::Layout::new(store_dir))
            .and_then(|state| state.apply(update)),
    };
    if let Err(err) = applied {
        tracing::warn!("could not record stats: {err}");
    }
}
