//! Build-script runs (DESIGN.md §6b): `rcache --build-script-run <real script> [args]`, as the
//! launcher execs it when cargo runs a build script.
//!
//! The same two-level shape as a compile: the invocation key covers the script binary, `$RUSTC`
//! and the keyed environment ([`crate::key::build_script`]); its candidates are the inputs the
//! recorded run declared ([`inputs`]). Then:
//! - a hit empties `OUT_DIR`, restores the recorded tree and replays stdout and stderr; cargo
//!   reads the directives from that stdout, and no script process runs;
//! - a miss runs the real script with its output streamed, and records its directives, its
//!   `OUT_DIR` tree and its output, unless it failed or was killed;
//! - anything rcache cannot key or restore runs the script, with the reason counted under
//!   `build_scripts` in the stats; a fault never fails the build.

pub mod cc_env;
pub mod directives;
pub mod inputs;
pub mod launcher;
mod record;
pub mod tree;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::key::build_script::{RunFacts, run_env, run_invocation_key};
use crate::key::file_hash::filesystem_tick;
use crate::key::hasher::Key;
use crate::key::{self};
use crate::remote::fetch::{RemoteOutcome, settle_hit};
use crate::rustc::Passthrough;
use crate::stats::{self, Event, Outcome};
use crate::store::Store;
use crate::store::entry::{Candidate, Entry};
use crate::store::state::StateUpdate;
use inputs::RunDirs;
use record::{Recording, remember_tree};

use super::keying::{self, KeyError, MemoHasher};
use super::run::{self, CompilerChain};

/// The argument the launcher passes before the real script's path.
pub const RUN_FLAG: &str = "--build-script-run";

/// Runs one build script through the cache; `args` is the real script, then its arguments.
/// Returns the exit code when it does not exec the script.
pub fn run(args: Vec<OsString>) -> i32 {
    let config = Config::load();
    crate::logging::init(config.log.value.as_deref());
    let Some((real, script_args)) = args.split_first() else {
        eprintln!("rcache: {RUN_FLAG} needs the build script's path");
        return 2;
    };
    let mut script_run = ScriptRun {
        clock: Instant::now(),
        real: PathBuf::from(real),
        args: script_args.to_vec(),
        update: StateUpdate::default(),
        damaged_record: None,
        remote_outcome: None,
        config,
    };
    let passthrough = if script_run.config.disable.value {
        Some(Passthrough::Disabled)
    } else if !script_run.config.build_scripts.value {
        Some(Passthrough::BuildScriptsOff)
    } else {
        None
    };
    let Some(env) = RunEnv::from_process() else {
        return script_run.pass_through(None, Passthrough::NotACargoRun);
    };
    if let Some(reason) = passthrough {
        let store = Store::open(&script_run.config.dir.value).ok();
        return script_run.pass_through(store.as_ref(), reason);
    }
    match Store::open(&script_run.config.dir.value) {
        Ok(store) => script_run.cached(&store, &env),
        Err(err) => {
            let outcome = crate::wrapper::notice::store_unusable(
                &err,
                &script_run.config.dir.value,
                "build script",
            );
            script_run.finish(None, &outcome);
            script_run.exec()
        }
    }
}

/// The directories cargo gave the run.
struct RunEnv {
    out_dir: PathBuf,
    manifest_dir: PathBuf,
}

impl RunEnv {
    fn from_process() -> Option<RunEnv> {
        let absolute = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|path| path.is_absolute())
        };
        Some(RunEnv {
            out_dir: absolute("OUT_DIR")?,
            manifest_dir: absolute("CARGO_MANIFEST_DIR")?,
        })
    }

    fn dirs(&self) -> RunDirs<'_> {
        RunDirs {
            manifest_dir: &self.manifest_dir,
            out_dir: &self.out_dir,
        }
    }

    /// The target dir's profile dir (`target/debug`): `OUT_DIR` is `<it>/build/<unit>/out`.
    fn profile_dir(&self) -> Option<&Path> {
        self.out_dir.ancestors().nth(3)
    }

    /// The other units' `OUT_DIR`s that `DEP_*` values (metadata of `links` dependencies, such
    /// as `DEP_Z_INCLUDE`) point into, sorted. Their paths are keyed as values; their content,
    /// which a dependency's rerun can change in place, is keyed through these.
    fn upstream_out_dirs(&self, keyed_env: &[(OsString, OsString)]) -> Vec<PathBuf> {
        let Some(build_dir) = self.out_dir.ancestors().nth(2) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = keyed_env
            .iter()
            .filter(|(name, _)| name.as_bytes().starts_with(b"DEP_"))
            .flat_map(|(_, value)| std::env::split_paths(value).collect::<Vec<_>>())
            .filter_map(|path| {
                let unit = inputs::normalize(&path)
                    .strip_prefix(build_dir)
                    .ok()?
                    .components()
                    .next()?
                    .as_os_str()
                    .to_os_string();
                Some(build_dir.join(unit).join("out"))
            })
            .filter(|out_dir| *out_dir != self.out_dir && out_dir.is_dir())
            .collect();
        found.sort();
        found.dedup();
        found
    }
}

struct ScriptRun {
    config: Config,
    clock: Instant,
    real: PathBuf,
    args: Vec<OsString>,
    update: StateUpdate,
    /// A manifest or entry record met during the lookup that does not decode: the fault this
    /// invocation counts, whatever its store step does.
    damaged_record: Option<String>,
    /// What the remote said, if it was asked.
    remote_outcome: Option<RemoteOutcome>,
}

impl ScriptRun {
    fn cached(&mut self, store: &Store, env: &RunEnv) -> i32 {
        let mut hasher = MemoHasher::new(store);
        let looked_up = self.look_up(store, &mut hasher, env);
        let (invocation_key, found) = match looked_up {
            Ok(found) => found,
            Err(KeyError::Passthrough(reason)) => return self.pass_through(Some(store), reason),
            Err(err) => {
                tracing::warn!("build-script lookup failed ({err}); running the script");
                let outcome = Outcome::Error {
                    reason: err.reason(),
                };
                self.finish(Some(store), &outcome);
                return self.exec();
            }
        };
        let mut fault = self.damaged_record.take();
        let found = found.or_else(|| self.look_up_remote(store, &mut hasher, env, &invocation_key));
        if let Some(found) = found {
            match tree::restore(store, &found.entry, &env.out_dir, &mut self.update) {
                Ok(()) => {
                    settle_hit(&mut self.remote_outcome, None, &mut self.update);
                    let outputs = &found.entry.outputs;
                    remember_tree(&mut hasher, outputs, &env.out_dir, &mut self.update);
                    replay(&found.entry);
                    let now = stats::unix_ms(SystemTime::now());
                    self.update.last_use.push((found.result_key, now));
                    let outcome = Outcome::Hit {
                        saved_ms: found.entry.compile_ms,
                    };
                    self.finish(Some(store), &outcome);
                    return 0;
                }
                Err(err) => {
                    tracing::warn!("restoring OUT_DIR failed ({err}); running the script");
                    let reason = crate::store::io_reason(&err);
                    settle_hit(&mut self.remote_outcome, Some(reason), &mut self.update);
                    fault = Some(reason.to_string());
                }
            }
        }
        self.run_and_record(store, &mut hasher, env, &invocation_key, fault)
    }

    fn look_up(
        &mut self,
        store: &Store,
        hasher: &mut MemoHasher,
        env: &RunEnv,
    ) -> Result<(Key, Option<keying::Match>), KeyError> {
        let script_hash = hasher.hash(&self.real, &mut self.update)?;
        let rustc_id = match std::env::var_os("RUSTC").filter(|rustc| !rustc.is_empty()) {
            Some(rustc) => {
                let path = find_program(&rustc).ok_or_else(|| KeyError::File {
                    path: PathBuf::from(&rustc),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
                Some(keying::compiler_identity(store, &path, &mut self.update)?.id)
            }
            None => None,
        };
        let cwd = std::env::current_dir().unwrap_or_default();
        let keyed_env = run_env(std::env::vars_os());
        let dirs = env.dirs();
        let mut upstream = Vec::new();
        for out_dir in env.upstream_out_dirs(&keyed_env) {
            let path = out_dir.into_os_string().into_vec();
            let tree =
                inputs::fingerprint(hasher, &dirs, &path, &mut Vec::new(), &mut self.update)?;
            upstream.push((path, tree));
        }
        let invocation_key = run_invocation_key(&RunFacts {
            script_hash,
            rustc_id,
            args: &self.args,
            cwd: cwd.as_os_str().as_bytes(),
            env: &keyed_env,
            upstream: &upstream,
        });
        tracing::debug!(key = %key::hasher::hex(&invocation_key), "build-script run key");
        if self.config.recache.value {
            return Ok((invocation_key, None));
        }
        let rtxn = store.index.read_txn()?;
        let manifest =
            keying::read_manifest(store, &rtxn, &invocation_key, &mut self.damaged_record)?;
        drop(rtxn);
        for candidate in &manifest.candidates {
            let Some(result_key) =
                matching_result_key(hasher, &dirs, &invocation_key, candidate, &mut self.update)
            else {
                continue;
            };
            let rtxn = store.index.read_txn()?;
            let entry = keying::read_entry(store, &rtxn, &result_key, &mut self.damaged_record)?;
            if let Some(entry) = entry {
                return Ok((invocation_key, Some(keying::Match { result_key, entry })));
            }
        }
        Ok((invocation_key, None))
    }

    /// After a local miss: the remote, if one is configured.
    fn look_up_remote(
        &mut self,
        store: &Store,
        hasher: &mut MemoHasher,
        env: &RunEnv,
        invocation_key: &Key,
    ) -> Option<keying::Match> {
        let dirs = env.dirs();
        let mut result_key_of = |candidate: &Candidate, update: &mut StateUpdate| {
            matching_result_key(hasher, &dirs, invocation_key, candidate, update)
        };
        let (found, outcome) = super::ask_remote(
            &self.config,
            store,
            invocation_key,
            &mut result_key_of,
            &mut self.update,
        );
        self.remote_outcome = outcome;
        found
    }

    /// The miss: run the script with its output streamed, then record the run.
    fn run_and_record(
        &mut self,
        store: &Store,
        hasher: &mut MemoHasher,
        env: &RunEnv,
        invocation_key: &Key,
        fault: Option<String>,
    ) -> i32 {
        super::apply_memos_now(store, &mut self.update);
        let started_fs_ns = filesystem_tick();
        let chain = CompilerChain {
            program: self.real.clone().into_os_string(),
            leading_args: Vec::new(),
        };
        let mut command = chain.command(&self.args);
        cc_env::prepare_script_env(&mut command, &self.config, &mut self.update);
        let ran = match run::compile_command(command, |_| false) {
            Ok(ran) => ran,
            Err(err) => {
                eprintln!("rcache: could not run {}: {err}", self.real.display());
                return 101;
            }
        };
        let code = run::exit_code(ran.status);
        let outcome = if !ran.status.success() {
            Outcome::Miss {
                not_stored: Some("script_failed".into()),
            }
        } else {
            let recording = Recording {
                invocation_key,
                env,
                stdout: &ran.stdout,
                stderr: &ran.stderr,
                duration_ms: ran.duration_ms,
                started_fs_ns,
            };
            match self.record(store, hasher, &recording) {
                Ok(result_key) => {
                    super::after_store(
                        store,
                        &self.config,
                        invocation_key,
                        &result_key,
                        &mut self.update,
                    );
                    Outcome::Miss { not_stored: None }
                }
                Err(not_recorded) => not_recorded.into_outcome(),
            }
        };
        let outcome = match (fault, outcome) {
            (Some(reason), Outcome::Miss { .. }) => Outcome::Error { reason },
            (_, outcome) => outcome,
        };
        self.finish(Some(store), &outcome);
        code
    }

    fn pass_through(&mut self, store: Option<&Store>, reason: Passthrough) -> i32 {
        let outcome = Outcome::Passthrough {
            reason: reason.to_string(),
        };
        self.finish(store, &outcome);
        self.exec()
    }

    /// Counts the outcome under `build_scripts` and writes the event line.
    fn finish(&mut self, store: Option<&Store>, outcome: &Outcome) {
        outcome.count_build_script_run(&mut self.update);
        super::apply_state_update(store, &self.config.dir.value, &self.update);
        let duration_ms = self.clock.elapsed().as_secs_f64() * 1000.0;
        if let Some(events) = &self.config.events.value {
            let package = std::env::var("CARGO_PKG_NAME").ok();
            stats::append_event(
                events,
                &Event {
                    ts_ms: stats::unix_ms(SystemTime::now()),
                    pid: std::process::id(),
                    kind: "build_script_run",
                    crate_name: package.as_deref(),
                    crate_types: &[],
                    outcome: outcome.name(),
                    reason: outcome.reason(),
                    stored: matches!(outcome, Outcome::Miss { not_stored: None }),
                    duration_ms,
                    cwd: &std::env::current_dir().unwrap_or_default(),
                    remote: self.remote_outcome.map(RemoteOutcome::name),
                },
            );
        }
    }

    /// Replaces this process with the real script.
    fn exec(&self) -> i32 {
        let mut command = std::process::Command::new(&self.real);
        command.args(&self.args);
        cc_env::prepare_script_env_now(&mut command, &self.config);
        let err = command.exec();
        eprintln!("rcache: could not run {}: {err}", self.real.display());
        101
    }
}

/// The result key of a candidate whose env values and input fingerprints are as recorded,
/// recomputed; `None` if it does not match.
fn matching_result_key(
    hasher: &mut MemoHasher,
    dirs: &RunDirs,
    invocation_key: &Key,
    candidate: &Candidate,
    update: &mut StateUpdate,
) -> Option<Key> {
    let env_matches = candidate.env_deps.iter().all(|env| {
        let now = std::env::var_os(&env.name);
        now.as_ref().map(|value| value.as_bytes()) == env.value.as_ref().map(String::as_bytes)
    });
    if !env_matches {
        return None;
    }
    let mut seen = Vec::new();
    for input in &candidate.inputs {
        let now = inputs::fingerprint(hasher, dirs, &input.path, &mut seen, update).ok()?;
        if now != input.hash {
            return None;
        }
    }
    Some(key::result_key(
        invocation_key,
        &candidate.inputs,
        &candidate.env_deps,
    ))
}

/// Writes a recorded run's stdout and stderr, byte for byte.
fn replay(entry: &Entry) {
    let _ = std::io::stdout().lock().write_all(&entry.stdout);
    let _ = std::io::stderr().lock().write_all(&entry.stderr);
}

/// A program named by a path, or found on `PATH` when it is a bare name.
fn find_program(program: &OsString) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return Some(path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
}
