//! The compile path: classify, look up, restore or run, store.
//!
//! `rcache <compiler> <args>` comes here. Every path ends in exactly one [`Outcome`], counted in
//! the state env and written to the events log:
//! - not cacheable (a probe, an unknown argument, a crate type not cached): the compiler is
//!   exec'd with the same argv, stdin, exit code and output;
//! - a hit: outputs restored, output replayed, no compiler run;
//! - a miss: the compiler runs with its output streamed, and the result is stored;
//! - a cache fault at any step before the replay: the compiler runs instead, and the fault is
//!   counted under `errors`. A build never fails because of rcache.

pub mod build_script;
pub mod cc;
pub mod keying;
pub mod notice;
pub mod record;
pub mod restore;
pub mod run;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::key::hasher::Key;
use crate::key::input_paths::InputDirs;
use crate::remote::fetch::{RemoteOutcome, settle_hit};
use crate::remote::{self, Remote};
use crate::rustc::outputs::dep_info_name;
use crate::rustc::{self, Invocation, Passthrough};
use crate::stats::{self, Event, Outcome};
use crate::store::Store;
use crate::store::entry::Candidate;
use crate::store::state::{State, StateUpdate};
use keying::{KeyError, MemoHasher, WorkspaceWrapper};
use record::Finished;
use run::CompilerChain;

/// Runs one wrapper invocation; `args` starts with the compiler. Returns the exit code (when it
/// does not exec the compiler).
pub fn run(args: Vec<OsString>) -> i32 {
    let config = Config::load();
    crate::logging::init(config.log.value.as_deref());
    let (wrapper, compiler_path, rustc_args) = keying::split_chain(&args);
    let chain = CompilerChain {
        program: args[0].clone(),
        leading_args: args[1..args.len() - rustc_args.len()].to_vec(),
    };
    let mut wrapper_run = WrapperRun {
        config,
        clock: Instant::now(),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        chain,
        rustc_args,
        update: StateUpdate::default(),
        damaged_record: None,
        remote_outcome: None,
    };

    let classified = if wrapper_run.config.disable.value {
        Err(Passthrough::Disabled)
    } else if wrapper
        .as_ref()
        .is_some_and(|wrapper| !is_clippy_driver(&wrapper.path))
    {
        Err(Passthrough::UnknownWorkspaceWrapper)
    } else {
        rustc::classify(&wrapper_run.rustc_args)
    };
    match classified {
        Err(reason) => {
            tracing::debug!(reason = %reason, detail = reason.detail(), "passthrough");
            let store = wrapper_run.open_store();
            let outcome = Outcome::Passthrough {
                reason: reason.to_string(),
            };
            wrapper_run.finish(store.as_ref().ok(), None, &outcome);
            wrapper_run.exec()
        }
        Ok(invocation) => match wrapper_run.open_store() {
            Ok(store) => wrapper_run.cached(&store, &invocation, &compiler_path, wrapper.as_ref()),
            Err(err) => {
                let outcome =
                    notice::store_unusable(&err, &wrapper_run.config.dir.value, "compiler");
                wrapper_run.finish(None, Some(&invocation), &outcome);
                wrapper_run.exec()
            }
        },
    }
}

fn is_clippy_driver(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("clippy-driver"))
}

struct WrapperRun {
    config: Config,
    clock: Instant,
    cwd: PathBuf,
    chain: CompilerChain,
    rustc_args: Vec<OsString>,
    update: StateUpdate,
    /// A manifest or entry record met during the lookup that does not decode: the fault this
    /// invocation counts, whatever its store step does.
    damaged_record: Option<String>,
    /// What the remote said, if it was asked.
    remote_outcome: Option<RemoteOutcome>,
}

impl WrapperRun {
    fn open_store(&self) -> Result<Store, crate::store::StoreError> {
        Store::open(&self.config.dir.value)
    }

    /// The cacheable path: key, look up, then restore or compile.
    fn cached(
        &mut self,
        store: &Store,
        invocation: &Invocation,
        compiler_path: &Path,
        wrapper: Option<&WorkspaceWrapper>,
    ) -> i32 {
        let mut hasher = MemoHasher::new(store);
        let looked_up = self.look_up(store, &mut hasher, invocation, compiler_path, wrapper);
        let (invocation_key, found) = match looked_up {
            Ok(found) => found,
            Err(KeyError::Passthrough(reason)) => {
                let outcome = Outcome::Passthrough {
                    reason: reason.to_string(),
                };
                self.finish(Some(store), Some(invocation), &outcome);
                return self.exec();
            }
            Err(err) => {
                tracing::warn!("lookup failed ({err}); running the compiler");
                let outcome = Outcome::Error {
                    reason: err.reason(),
                };
                self.finish(Some(store), Some(invocation), &outcome);
                return self.exec();
            }
        };
        let mut fault = self.damaged_record.take();
        let found = found.or_else(|| {
            let dirs = InputDirs::of(invocation, &self.cwd);
            let (found, outcome) = ask_remote_for_compile(
                &self.config,
                store,
                &mut hasher,
                &invocation_key,
                &dirs,
                &mut self.update,
            );
            self.remote_outcome = outcome;
            found
        });
        if let Some(found) = found {
            let out_dir = self.cwd.join(&invocation.out_dir);
            let expected = rustc::outputs::expected_outputs(invocation);
            let restored = restore::materialize(
                store,
                &found.entry,
                &expected,
                &out_dir,
                &invocation.out_dir,
                &mut self.update,
            );
            match restored {
                Ok(restored) => {
                    settle_hit(&mut self.remote_outcome, None, &mut self.update);
                    for output in restored {
                        if let Some(hash) = output.known_hash {
                            hasher.remember_written(&output.path, hash, &mut self.update);
                        }
                    }
                    self.install_launcher(&mut hasher, invocation);
                    restore::replay(&found.entry, &invocation.out_dir, invocation.json_artifacts);
                    let now = stats::unix_ms(SystemTime::now());
                    self.update.last_use.push((found.result_key, now));
                    let outcome = Outcome::Hit {
                        saved_ms: found.entry.compile_ms,
                    };
                    self.finish(Some(store), Some(invocation), &outcome);
                    return 0;
                }
                Err(err) => {
                    // Compile instead, and let the store step replace the broken entry.
                    tracing::warn!("restore failed ({err}); compiling instead");
                    let reason = crate::store::io_reason(&err);
                    settle_hit(&mut self.remote_outcome, Some(reason), &mut self.update);
                    fault = Some(reason.to_string());
                }
            }
        }
        self.compile_and_store(store, &mut hasher, invocation, &invocation_key, fault)
    }

    fn look_up(
        &mut self,
        store: &Store,
        hasher: &mut MemoHasher,
        invocation: &Invocation,
        compiler_path: &Path,
        wrapper: Option<&WorkspaceWrapper>,
    ) -> Result<([u8; 32], Option<keying::Match>), KeyError> {
        let identity = keying::compiler_identity(store, compiler_path, &mut self.update)?;
        let invocation_key = keying::invocation_key(
            hasher,
            invocation,
            compiler_path,
            &identity,
            wrapper,
            &self.cwd,
            &mut self.update,
        )?;
        tracing::debug!(key = %crate::key::hasher::hex(&invocation_key), "invocation key");
        if self.config.recache.value {
            return Ok((invocation_key, None));
        }
        let dirs = InputDirs::of(invocation, &self.cwd);
        let lookup = keying::find_match(hasher, &invocation_key, &dirs, &mut self.update)?;
        self.damaged_record = lookup.damaged;
        Ok((invocation_key, lookup.found))
    }

    /// The miss: compile with output streamed, then store. `fault` is a restore failure that
    /// sent a hit here; it makes the outcome an error whatever the store step does.
    fn compile_and_store(
        &mut self,
        store: &Store,
        hasher: &mut MemoHasher,
        invocation: &Invocation,
        invocation_key: &[u8; 32],
        fault: Option<String>,
    ) -> i32 {
        let out_dir = self.cwd.join(&invocation.out_dir);
        let mut args = self.rustc_args.clone();
        // Cargo always asks for dep-info; when a caller did not, ask for it at a temp path so
        // that what the caller sees is unchanged.
        let own_dep_info = (!invocation.emits("dep-info"))
            .then(|| add_temp_output_arg(store, "dep-info", "--emit=dep-info=", &mut args));
        // A crate that links: the linker lists every file it reads (DESIGN.md §6).
        let linker_dep_info = invocation.runs_linker().then(|| {
            add_temp_output_arg(
                store,
                "link-deps",
                "-Clink-arg=-Wl,--dependency-file=",
                &mut args,
            )
        });
        let dropped = own_dep_info.clone();
        let drop_line = move |line: &[u8]| match (&dropped, restore::artifact(line)) {
            (Some(own), Some((path, emit))) => emit == "dep-info" && Path::new(&path) == own,
            _ => false,
        };
        apply_memos_now(store, &mut self.update);
        let started_fs_ns = crate::key::file_hash::filesystem_tick();
        let compiled = match run::compile(&self.chain, &args, drop_line) {
            Ok(compiled) => compiled,
            Err(err) => {
                eprintln!(
                    "rcache: could not run {}: {err}",
                    Path::new(&self.chain.program).display()
                );
                return 1;
            }
        };
        if !compiled.status.success()
            && linker_dep_info.is_some()
            && compiled
                .stderr
                .windows(15)
                .any(|window| window == b"dependency-file")
        {
            // This linker does not know the flag: compile again exactly as asked (exec, with the
            // original argv). The first attempt's linker error has already been shown.
            let outcome = Outcome::Passthrough {
                reason: Passthrough::LinkerDependencyFile.to_string(),
            };
            self.finish(Some(store), Some(invocation), &outcome);
            return self.exec();
        }
        let code = run::exit_code(compiled.status);
        let outcome = if !compiled.status.success() {
            Outcome::Miss {
                not_stored: Some("compile_failed".into()),
            }
        } else {
            let dep_info_path = own_dep_info
                .clone()
                .unwrap_or_else(|| out_dir.join(dep_info_name(invocation)));
            let finished = Finished {
                invocation,
                invocation_key,
                compiled: &compiled,
                cwd: &self.cwd,
                dep_info_path: &dep_info_path,
                linker_dep_info_path: linker_dep_info.as_deref(),
                started_fs_ns,
            };
            match record::record(store, hasher, &finished, &mut self.update) {
                Ok(result_key) => {
                    after_store(
                        store,
                        &self.config,
                        invocation_key,
                        &result_key,
                        &mut self.update,
                    );
                    Outcome::Miss { not_stored: None }
                }
                Err(not_stored) => not_stored.into_outcome(),
            }
        };
        for path in own_dep_info.iter().chain(&linker_dep_info) {
            let _ = std::fs::remove_file(path);
        }
        if compiled.status.success() {
            self.install_launcher(hasher, invocation);
        }
        let outcome = match fault {
            Some(reason) => Outcome::Error { reason },
            None => outcome,
        };
        self.finish(Some(store), Some(invocation), &outcome);
        code
    }

    /// For a build script rcache has just produced: puts the launcher in its place, so that
    /// cargo's runs of it come to rcache. A failure leaves the script as it was, to run uncached,
    /// and is counted under `build_scripts`.
    fn install_launcher(&mut self, hasher: &mut MemoHasher, invocation: &Invocation) {
        if !build_script::launcher::is_build_script(invocation)
            || !build_script::cc_env::launcher_wanted(&self.config)
        {
            return;
        }
        let binary = self
            .cwd
            .join(build_script::launcher::binary_path(invocation));
        let installed = build_script::launcher::launcher_binary()
            .map_err(|err| {
                tracing::warn!("{err}; build-script runs will not be cached");
                Outcome::Passthrough {
                    reason: Passthrough::LauncherMissing.to_string(),
                }
            })
            .and_then(|launcher| {
                build_script::launcher::install(&binary, &launcher).map_err(|err| {
                    tracing::warn!("could not install the build-script launcher: {err}");
                    Outcome::Error {
                        reason: crate::store::io_reason(&err).to_string(),
                    }
                })
            });
        match installed {
            Ok(real) => hasher.remember_renamed(&binary, &real, &mut self.update),
            Err(outcome) => outcome.count_build_script_run(&mut self.update),
        }
    }

    /// Counts the outcome (one unsynced state transaction) and writes the event line.
    fn finish(
        &mut self,
        store: Option<&Store>,
        invocation: Option<&Invocation>,
        outcome: &Outcome,
    ) {
        outcome.count(&mut self.update);
        outcome.count_language(&mut self.update, "rust");
        apply_state_update(store, &self.config.dir.value, &self.update);
        let duration_ms = self.clock.elapsed().as_secs_f64() * 1000.0;
        tracing::debug!(
            outcome = outcome.name(),
            reason = outcome.reason(),
            duration_ms,
            "done"
        );
        if let Some(events) = &self.config.events.value {
            let raw_types = crate_types_of(&self.rustc_args);
            stats::append_event(
                events,
                &Event {
                    ts_ms: stats::unix_ms(SystemTime::now()),
                    pid: std::process::id(),
                    kind: "rustc",
                    crate_name: invocation
                        .map(|inv| inv.crate_name.as_str())
                        .or_else(|| crate_name_of(&self.rustc_args)),
                    crate_types: invocation.map_or(&raw_types[..], |inv| &inv.crate_types),
                    outcome: outcome.name(),
                    reason: outcome.reason(),
                    stored: matches!(outcome, Outcome::Miss { not_stored: None }),
                    duration_ms,
                    cwd: &self.cwd,
                    remote: self.remote_outcome.map(RemoteOutcome::name),
                },
            );
        }
    }

    /// Replaces this process with the compiler.
    fn exec(&self) -> i32 {
        let err = run::exec(&self.chain, &self.rustc_args);
        eprintln!(
            "rcache: could not run {}: {err}",
            Path::new(&self.chain.program).display()
        );
        1
    }
}

/// After a store: keeps the store within its size and age limits (a detached gc when over),
/// and publishes the new entry to the remote, if one is configured (or queues it).
fn after_store(
    store: &Store,
    config: &Config,
    invocation_key: &Key,
    result_key: &Key,
    update: &mut StateUpdate,
) {
    crate::store::gc::after_store(store, config.cache_size.value, config.max_age.value);
    crate::remote::publish::after_store(config, store, invocation_key, result_key, update);
}

/// After a local miss: asks the remote, if one is configured and this is not a recache.
/// `result_key_of` matches a candidate against the files here. Returns the entry found (now in
/// the local store) and what the remote said, for the events log; faults are counted.
fn ask_remote(
    config: &Config,
    store: &Store,
    invocation_key: &Key,
    result_key_of: &mut dyn FnMut(&Candidate, &mut StateUpdate) -> Option<Key>,
    update: &mut StateUpdate,
) -> (Option<keying::Match>, Option<RemoteOutcome>) {
    if config.recache.value || config.remote.location.value.is_none() {
        return (None, None);
    }
    if remote::fetch::skipped(store, update) {
        return (None, Some(RemoteOutcome::Skipped));
    }
    match Remote::from_config(config) {
        Ok(Some(remote)) => {
            let (fetched, outcome) =
                remote::fetch::fetch(&remote, store, invocation_key, result_key_of, update);
            let found = fetched.map(|fetched| keying::Match {
                result_key: fetched.result_key,
                entry: fetched.entry,
            });
            (found, Some(outcome))
        }
        Ok(None) => (None, None),
        Err(err) => {
            tracing::warn!("{err}");
            remote::count_error(update, err.reason());
            (None, Some(RemoteOutcome::Error))
        }
    }
}

/// [`ask_remote`] for a rustc or C compile, whose candidates are matched by their recorded
/// input paths, resolved against `dirs`.
fn ask_remote_for_compile(
    config: &Config,
    store: &Store,
    hasher: &mut MemoHasher,
    invocation_key: &Key,
    dirs: &InputDirs,
    update: &mut StateUpdate,
) -> (Option<keying::Match>, Option<RemoteOutcome>) {
    let mut result_key_of = |candidate: &Candidate, update: &mut StateUpdate| {
        keying::matching_result_key(hasher, invocation_key, candidate, dirs, update)
    };
    ask_remote(config, store, invocation_key, &mut result_key_of, update)
}

/// Writes the memos learned while keying (the compiler identity, file hashes) before a long
/// compile or script run, so that invocations starting meanwhile do not compute them again.
fn apply_memos_now(store: &Store, update: &mut StateUpdate) {
    let memos = StateUpdate {
        file_hashes: std::mem::take(&mut update.file_hashes),
        compilers: std::mem::take(&mut update.compilers),
        ..StateUpdate::default()
    };
    if let Err(err) = store.state.apply(&memos) {
        tracing::debug!("could not record memos: {err}");
    }
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

/// Appends `flag<path>` to `args` for a file rustc or the linker writes on rcache's behalf, at a
/// per-process temp path in the store, and returns the path.
fn add_temp_output_arg(store: &Store, stem: &str, flag: &str, args: &mut Vec<OsString>) -> PathBuf {
    let path = store.layout.tmp_dir().join(format!(
        "{stem}-{}-{}.d",
        std::process::id(),
        stats::unix_ms(SystemTime::now())
    ));
    let mut arg = OsString::from(flag);
    arg.push(&path);
    args.push(arg);
    path
}

/// The `--crate-type` values of an argv that was not parsed into an invocation.
fn crate_types_of(args: &[OsString]) -> Vec<String> {
    let mut types = Vec::new();
    let mut iter = args.iter().filter_map(|arg| arg.to_str());
    while let Some(arg) = iter.next() {
        let value = match arg.strip_prefix("--crate-type") {
            Some("") => iter.next(),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        types.extend(
            value
                .into_iter()
                .flat_map(|value| value.split(','))
                .map(str::to_string),
        );
    }
    types
}

/// The `--crate-name` of an argv that was not parsed into an invocation, for the events log.
fn crate_name_of(args: &[OsString]) -> Option<&str> {
    let position = args.iter().position(|arg| arg == "--crate-name")?;
    args.get(position + 1)?.to_str()
}
