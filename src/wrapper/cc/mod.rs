//! The C and C++ compile path: classify, look up, restore or compile, store; the C twin of the
//! rustc flow in `wrapper/mod.rs`, with the same store and the same failure rules.
//!
//! `rcache cc <args>` (or `gcc`, `clang++`, a compiler path, or a link named `cc` that points at
//! rcache) comes here. Every call ends in exactly one [`Outcome`], counted in the compile
//! totals and in `languages.<language>.*`, and logged with `kind: "cc"`:
//! - not cacheable: the real compiler is exec'd with the same argv, stdin and output;
//! - a hit: the object (and the caller's dep file and `.dwo`) restored, the compiler's output
//!   replayed; no compiler and no preprocessor runs;
//! - a miss: the compiler runs with its output streamed, writing rcache's own full dep file
//!   (`-MD -MF <tmp>`, system headers included), whose inputs become the manifest candidate;
//! - a cache fault before the replay: the compiler runs instead, counted under `errors`.

mod restore;
mod store;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use super::keying::{self, KeyError, MemoHasher};
use super::run::{self, CompilerChain};
use crate::cc::args::{self, CcInvocation};
use crate::cc::depfile;
use crate::cc::driver;
use crate::cc::identity::{self, CcIdentity};
use crate::cc::key::{self, CcKeyFacts};
use crate::cc::passthrough::CcPassthrough;
use crate::config::Config;
use crate::hash::Key;
use crate::key::compiler::native_cpu_memo_key;
use crate::key::input_paths::InputDirs;
use crate::remote::fetch::{RemoteOutcome, settle_hit};
use crate::stats::{self, Event, Outcome};
use crate::store::Store;
use crate::store::state::StateUpdate;
use store::CcFinished;

/// Runs one C compiler call: `program` is the compiler as rcache was given it (a name, a path,
/// or argv[0] of a link), `args` its arguments. Returns the exit code when it does not exec.
pub fn run(program: OsString, args: Vec<OsString>) -> i32 {
    let config = Config::load();
    crate::logging::init(config.log.value.as_deref());
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let real = driver::resolve_compiler(&program, &cwd);
    let mut cc_run = CcRun {
        config,
        clock: Instant::now(),
        chain: CompilerChain {
            program: real
                .clone()
                .map_or(program.clone(), PathBuf::into_os_string),
            leading_args: Vec::new(),
        },
        cwd,
        args,
        language: driver::default_language(&program).name(),
        update: StateUpdate::default(),
        damaged_record: None,
        remote_outcome: None,
    };
    let Some(real) = real else {
        eprintln!(
            "rcache: no compiler named {} found on PATH (other than rcache itself)",
            Path::new(&program).display()
        );
        let outcome = passthrough(CcPassthrough::CompilerNotFound);
        cc_run.finish(None, None, &outcome);
        return 127;
    };
    let classified = if cc_run.config.disable.value {
        Err(CcPassthrough::Disabled)
    } else if ["DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        Err(CcPassthrough::DependenciesEnv)
    } else {
        args::classify(&cc_run.args)
    };
    match classified {
        Err(reason) => {
            tracing::debug!(reason = %reason, detail = reason.detail(), "passthrough");
            let store = cc_run.open_store();
            cc_run.finish(store.as_ref().ok(), None, &passthrough(reason));
            cc_run.exec()
        }
        Ok(invocation) => {
            cc_run.language = invocation.language.name();
            match cc_run.open_store() {
                Ok(store) => cc_run.cached(&store, &invocation, &real),
                Err(err) => {
                    let outcome = crate::wrapper::notice::store_unusable(
                        &err,
                        &cc_run.config.dir.value,
                        "compiler",
                    );
                    cc_run.finish(None, Some(&invocation), &outcome);
                    cc_run.exec()
                }
            }
        }
    }
}

fn passthrough(reason: CcPassthrough) -> Outcome {
    Outcome::Passthrough {
        reason: reason.to_string(),
    }
}

struct CcRun {
    config: Config,
    clock: Instant,
    chain: CompilerChain,
    cwd: PathBuf,
    args: Vec<OsString>,
    language: &'static str,
    update: StateUpdate,
    /// A manifest or entry record met during the lookup that does not decode: the fault this
    /// invocation counts, whatever its store step does.
    damaged_record: Option<String>,
    /// What the remote said, if it was asked.
    remote_outcome: Option<RemoteOutcome>,
}

impl CcRun {
    fn open_store(&self) -> Result<Store, crate::store::StoreError> {
        Store::open(&self.config.dir.value)
    }

    /// The cacheable path: key, look up, then restore or compile.
    fn cached(&mut self, store: &Store, invocation: &CcInvocation, real: &Path) -> i32 {
        let mut hasher = MemoHasher::new(store);
        let (invocation_key, found) = match self.look_up(store, &mut hasher, invocation, real) {
            Ok(found) => found,
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
            let (found, outcome) = super::ask_remote_for_compile(
                &self.config,
                store,
                &mut hasher,
                &invocation_key,
                &InputDirs::cwd_only(&self.cwd),
                &mut self.update,
            );
            self.remote_outcome = outcome;
            found
        });
        if let Some(found) = found {
            match restore::materialize(store, &found.entry, invocation, &self.cwd, &mut self.update)
            {
                Ok(restored) => {
                    settle_hit(&mut self.remote_outcome, None, &mut self.update);
                    for (path, hash) in restored {
                        hasher.remember_written(&path, hash, &mut self.update);
                    }
                    super::restore::replay(&found.entry, Path::new(""), false);
                    let now = stats::unix_ms(SystemTime::now());
                    self.update.last_use.push((found.result_key, now));
                    let outcome = Outcome::Hit {
                        saved_ms: found.entry.compile_ms,
                    };
                    self.finish(Some(store), Some(invocation), &outcome);
                    return 0;
                }
                Err(err) => {
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
        invocation: &CcInvocation,
        real: &Path,
    ) -> Result<(Key, Option<keying::Match>), KeyError> {
        let identity = cc_identity(store, real, &mut self.update)?;
        let native = if invocation.native_flags.is_empty() {
            None
        } else {
            Some(native_target(
                store,
                real,
                &identity,
                &invocation.native_flags,
                &mut self.update,
            )?)
        };
        let source_hash = hasher.hash(&self.cwd.join(&invocation.source), &mut self.update)?;
        let facts = CcKeyFacts {
            invocation,
            compiler_id: identity.id,
            cwd: &self.cwd,
            source_hash,
            env: key::cc_env(),
            native,
        };
        let invocation_key = key::invocation_key(&facts);
        tracing::debug!(key = %crate::hash::hex(&invocation_key), "cc invocation key");
        if self.config.recache.value {
            return Ok((invocation_key, None));
        }
        let dirs = InputDirs::cwd_only(&self.cwd);
        let lookup = keying::find_match(hasher, &invocation_key, &dirs, &mut self.update)?;
        self.damaged_record = lookup.damaged;
        Ok((invocation_key, lookup.found))
    }

    /// The miss: compile with output streamed, then store.
    fn compile_and_store(
        &mut self,
        store: &Store,
        hasher: &mut MemoHasher,
        invocation: &CcInvocation,
        invocation_key: &Key,
        fault: Option<String>,
    ) -> i32 {
        let own_dep_file = store.layout.tmp_dir().join(format!(
            "cc-deps-{}-{}.d",
            std::process::id(),
            stats::unix_ms(SystemTime::now())
        ));
        super::apply_memos_now(store, &mut self.update);
        let started_fs_ns = crate::hash::file_hash::filesystem_tick();
        let mut args = self.args.clone();
        let mut dep_pass_ok = true;
        if invocation.dep_file.is_some() {
            // The caller's dep options take the compiler's one dep file, and `-MMD` leaves system
            // headers out: list every input in a preprocess-only run of its own.
            dep_pass_ok = Command::new(&self.chain.program)
                .args(depfile::dep_pass_args(&self.args, &own_dep_file))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
        } else {
            args.extend(["-MD".into(), "-MF".into(), own_dep_file.clone().into()]);
        }
        let compiled = match run::compile(&self.chain, &args, |_| false) {
            Ok(compiled) => compiled,
            Err(err) => {
                eprintln!(
                    "rcache: could not run {}: {err}",
                    Path::new(&self.chain.program).display()
                );
                let _ = std::fs::remove_file(&own_dep_file);
                return 1;
            }
        };
        let code = run::exit_code(compiled.status);
        let outcome = if !compiled.status.success() {
            Outcome::Miss {
                not_stored: Some("compile_failed".into()),
            }
        } else if !dep_pass_ok {
            Outcome::Miss {
                not_stored: Some("dep_pass_failed".into()),
            }
        } else {
            let finished = CcFinished {
                invocation,
                invocation_key,
                compiled: &compiled,
                cwd: &self.cwd,
                own_dep_file: &own_dep_file,
                started_fs_ns,
            };
            match store::record(store, hasher, &finished, &mut self.update) {
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
                Err(not_stored) => not_stored.into_outcome(),
            }
        };
        let _ = std::fs::remove_file(&own_dep_file);
        let outcome = match fault {
            Some(reason) => Outcome::Error { reason },
            None => outcome,
        };
        self.finish(Some(store), Some(invocation), &outcome);
        code
    }

    /// Counts the outcome (totals and language split) and writes the event line.
    fn finish(
        &mut self,
        store: Option<&Store>,
        invocation: Option<&CcInvocation>,
        outcome: &Outcome,
    ) {
        outcome.count(&mut self.update);
        outcome.count_language(&mut self.update, self.language);
        super::apply_state_update(store, &self.config.dir.value, &self.update);
        let duration_ms = self.clock.elapsed().as_secs_f64() * 1000.0;
        tracing::debug!(
            outcome = outcome.name(),
            reason = outcome.reason(),
            duration_ms,
            "done"
        );
        if let Some(events) = &self.config.events.value {
            let source = invocation.map(|inv| inv.source.to_string_lossy().into_owned());
            stats::append_event(
                events,
                &Event {
                    ts_ms: stats::unix_ms(SystemTime::now()),
                    pid: std::process::id(),
                    kind: "cc",
                    crate_name: source.as_deref(),
                    crate_types: &[],
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

    /// Replaces this process with the real compiler.
    fn exec(&self) -> i32 {
        let err = run::exec(&self.chain, &self.args);
        eprintln!(
            "rcache: could not run {}: {err}",
            Path::new(&self.chain.program).display()
        );
        1
    }
}

/// The compiler's identity, from the memo or computed (and memoized).
fn cc_identity(
    store: &Store,
    compiler: &Path,
    update: &mut StateUpdate,
) -> Result<CcIdentity, KeyError> {
    let memo_key = identity::memo_key(compiler);
    if let Some(memo_key) = &memo_key {
        let rtxn = store.state.read_txn()?;
        let memoized = store.state.compiler(&rtxn, memo_key)?;
        if let Some(Ok(identity)) = memoized
            .as_deref()
            .map(crate::store::entry::decode::<CcIdentity>)
        {
            return Ok(identity);
        }
    }
    let identity = identity::identify(compiler)?;
    if let Some(memo_key) = memo_key {
        update
            .compilers
            .push((memo_key, crate::store::entry::encode(&identity)));
    }
    Ok(identity)
}

/// The native CPU flags resolved, memoized per compiler, flags and CPU.
fn native_target(
    store: &Store,
    compiler: &Path,
    identity: &CcIdentity,
    flags: &[String],
    update: &mut StateUpdate,
) -> Result<Vec<u8>, KeyError> {
    let memo_key = native_cpu_memo_key(&identity.id, Some(&format!("cc {}", flags.join(" "))));
    let rtxn = store.state.read_txn()?;
    if let Some(bytes) = store.state.compiler(&rtxn, &memo_key)? {
        return Ok(bytes);
    }
    drop(rtxn);
    let resolved = identity::native_target(compiler, flags)?;
    update.compilers.push((memo_key, resolved.clone()));
    Ok(resolved)
}
