//! The build-script-run job (docs/design.md §6b): `rcache --build-script-run
//! <real script> [args]`, as the launcher execs it when cargo runs a build script, driven through
//! the one flow ([`super::flow`]).
//!
//! What is a run's own:
//! - the key facts are the script binary, `$RUSTC` and the keyed environment
//!   ([`crate::key::build_script`]), and the trees of upstream `OUT_DIR`s that `DEP_*` values
//!   point into;
//! - its candidates are the inputs the recorded run declared ([`inputs`]), matched by their
//!   fingerprints and the `rerun-if-env-changed` values;
//! - a hit empties `OUT_DIR`, restores the recorded tree and replays stdout and stderr; cargo
//!   reads the directives from that stdout, and no script process runs;
//! - a miss runs the real script with its output streamed, and records its directives, its
//!   `OUT_DIR` tree and its output, unless it failed or was killed.
//!
//! Counted under `build_scripts` in the stats, logged with `kind: "build_script_run"`.

pub(crate) mod cc_env;
pub mod directives;
pub(crate) mod inputs;
pub(crate) mod launcher;
mod record;
pub(crate) mod tree;

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::hash::Key;
use crate::key::BaseDirs;
use crate::key::base_dirs::{self, PathBound, Role};
use crate::key::build_script::{RunFacts, run_env, run_invocation_key};
use crate::stats::{BUILD_SCRIPTS_CC_ROUTED, NotStoredReason, RunPassthrough};
use crate::store::Store;
use crate::store::entry::{Candidate, Entry};
use inputs::RunDirs;
use record::remember_tree;

use super::flow::{Context, Counting, Job, NotStored, Recorded, Recording, Unit};
use super::keying::{self, KeyError, Keying};
use super::run::{self, Compiled, Program};

/// The argument the launcher passes before the real script's path.
pub const RUN_FLAG: &str = "--build-script-run";

/// Runs one build script through the cache; `args` is the real script, then its arguments.
/// Returns the exit code when it does not exec the script.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut cx = Context::load();
    let Some((real, script_args)) = args.split_first() else {
        eprintln!("rcache: {RUN_FLAG} needs the build script's path");
        return 2;
    };
    let mut program = Program::plain(real.clone(), script_args.to_vec());
    // The script's C/C++ compiles are its children, not cargo's: they join cargo's build.
    let build = crate::warn_once::build_id_text(crate::warn_once::build_id());
    program
        .chain
        .env
        .push((crate::warn_once::BUILD_ID_VAR.into(), build.into()));
    let cwd = std::env::current_dir().unwrap_or_default();
    let passthrough = if cx.config.disable.value {
        Some(RunPassthrough::Disabled)
    } else if !cx.config.build_scripts.value {
        Some(RunPassthrough::BuildScriptsOff)
    } else {
        None
    };
    let Some(env) = RunEnv::from_process() else {
        cc_env::route(&mut program.chain, &cx.config, &mut cx.update);
        let unit = run_unit(&cwd);
        let reason = RunPassthrough::NotACargoRun.into();
        return cx.pass_through(None, &unit, &program, reason);
    };
    if let Some(reason) = passthrough {
        // Not cached, but its C/C++ compiles still go through rcache (unless turned off).
        cc_env::route(&mut program.chain, &cx.config, &mut cx.update);
        let store = cx.open_store();
        let unit = run_unit(&cwd);
        return cx.pass_through(store.as_ref().ok(), &unit, &program, reason.into());
    }
    let mut job = ScriptJob {
        path_independent: cx.config.path_independent.value,
        bases: BaseDirs::none(),
        path_bound: None,
        keyed: None,
        real: PathBuf::from(real),
        args: script_args.to_vec(),
        cwd,
        env,
        config: cx.config.clone(),
        cc_routed: false,
    };
    match cx.open_store() {
        Ok(store) => super::flow::run_cached(&mut cx, &store, &program, &mut job),
        Err(err) => cx.store_unusable(&err, &job.unit(), &program, "build script"),
    }
}

/// What the stats and the events log know of a run: the package cargo names.
fn run_unit(cwd: &Path) -> Unit<'_> {
    Unit {
        kind: "build_script_run",
        counting: Counting::BuildScriptRun,
        name: std::env::var("CARGO_PKG_NAME").ok().map(Cow::Owned),
        crate_types: Cow::Borrowed(&[]),
        cwd: Cow::Borrowed(cwd),
        path_bound: None,
    }
}

/// A run's base dirs (`crate::key::base_dirs`, docs/design.md §6e): its cwd (the package dir),
/// `CARGO_HOME`, the target dir above the profile dir `OUT_DIR` lies in (and above the target
/// triple's dir), and the sysroot of `$RUSTC`.
fn run_base_dirs(cwd: &Path, env: &RunEnv, sysroot: Option<&[u8]>) -> Result<BaseDirs, PathBound> {
    let mut candidates = vec![(Role::Cwd, cwd.to_path_buf())];
    if let Some(home) = base_dirs::cargo_home() {
        candidates.push((Role::CargoHome, home));
    }
    if let Some(profile_dir) = env.profile_dir() {
        let target = std::env::var("TARGET").ok();
        let deps = [profile_dir.join("deps")];
        if let Some(target_dir) = base_dirs::cargo_target_dir(&deps, target.as_deref()) {
            candidates.push((Role::Target, target_dir));
        }
    }
    if let Some(sysroot) = sysroot.filter(|sysroot| !sysroot.is_empty()) {
        candidates.push((
            Role::Sysroot,
            PathBuf::from(std::ffi::OsStr::from_bytes(sysroot)),
        ));
    }
    BaseDirs::new(candidates)
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

    fn dirs<'a>(&'a self, bases: &'a BaseDirs) -> RunDirs<'a> {
        RunDirs {
            manifest_dir: &self.manifest_dir,
            out_dir: &self.out_dir,
            bases,
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

/// The facts of a run's key, kept (moved, not copied) for the explain history.
struct RunKeyed {
    script_hash: Key,
    rustc_id: Option<Key>,
    /// The keyed environment, templated.
    env: Vec<(OsString, OsString)>,
    /// Upstream `OUT_DIR`s (templated) with their trees' fingerprints.
    upstream: Vec<(Vec<u8>, Key)>,
}

/// A cacheable build-script run.
struct ScriptJob {
    /// `RCACHE_PATH_INDEPENDENT`: runs hit in other checkouts, target dirs and `CARGO_HOME`s.
    path_independent: bool,
    /// The run's base dirs, found while keying (none when path independence is off).
    bases: BaseDirs,
    /// Why this run is keyed with its real paths, when it is.
    path_bound: Option<PathBound>,
    /// What keying learned that the explain history records after a run.
    keyed: Option<RunKeyed>,
    /// The real script binary.
    real: PathBuf,
    /// The script's arguments: keyed.
    args: Vec<OsString>,
    cwd: PathBuf,
    env: RunEnv,
    /// The settings, for routing the script's C/C++ compiles when it runs ([`cc_env`]).
    config: Config,
    /// Whether the run's C/C++ compiles were routed through rcache.
    cc_routed: bool,
}

impl Job for ScriptJob {
    fn unit(&self) -> Unit<'_> {
        Unit {
            path_bound: self.path_bound.map(PathBound::as_str),
            ..run_unit(&self.cwd)
        }
    }

    fn verbatim_dirs(&self) -> Vec<u8> {
        self.bases.verbatim()
    }

    fn invocation_key(&mut self, Keying { hasher, update }: Keying) -> Result<Key, KeyError> {
        let script_hash = hasher.hash(&self.real, update)?;
        let rustc = match std::env::var_os("RUSTC").filter(|rustc| !rustc.is_empty()) {
            Some(rustc) => {
                let path = find_program(&rustc).ok_or_else(|| KeyError::File {
                    path: PathBuf::from(&rustc),
                    source: io::Error::from(io::ErrorKind::NotFound),
                })?;
                Some(super::compiler_memo::compiler_identity(
                    hasher.store(),
                    &path,
                )?)
            }
            None => None,
        };
        if self.path_independent {
            let sysroot = rustc.as_ref().map(|identity| identity.sysroot.as_slice());
            match run_base_dirs(&self.cwd, &self.env, sysroot) {
                Ok(bases) => self.bases = bases,
                Err(reason) => self.path_bound = Some(reason),
            }
        }
        let bases = &self.bases;
        let keyed_env = run_env(std::env::vars_os());
        let dirs = self.env.dirs(bases);
        let mut upstream = Vec::new();
        for out_dir in self.env.upstream_out_dirs(&keyed_env) {
            let path = out_dir.into_os_string().into_vec();
            let tree = inputs::fingerprint(hasher, &dirs, &path, &mut Vec::new(), update)?;
            upstream.push((bases.template(&path), tree));
        }
        let templated_env: Vec<(OsString, OsString)> = keyed_env
            .iter()
            .map(|(name, value)| {
                let value = OsString::from_vec(bases.template(value.as_bytes()));
                (name.clone(), value)
            })
            .collect();
        let rustc_id = rustc.map(|identity| identity.id);
        let key = run_invocation_key(&RunFacts {
            base_roles: &bases.roles(),
            script_hash,
            rustc_id,
            args: &self.args,
            cwd: &bases.normalize(self.cwd.as_os_str().as_bytes()),
            env: &templated_env,
            upstream: &upstream,
        });
        self.keyed = Some(RunKeyed {
            script_hash,
            rustc_id,
            env: templated_env,
            upstream,
        });
        Ok(key)
    }

    fn explain_facts(&self) -> Vec<(String, String)> {
        let Some(keyed) = &self.keyed else {
            return Vec::new();
        };
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut facts = vec![("script".to_string(), crate::hash::hex(&keyed.script_hash))];
        if let Some(id) = &keyed.rustc_id {
            facts.push(("compiler".into(), crate::hash::hex(id)));
        }
        for arg in &self.args {
            facts.push(("arg".into(), text(arg.as_bytes())));
        }
        let cwd = self.bases.normalize(self.cwd.as_os_str().as_bytes());
        facts.push(("cwd".into(), text(&cwd)));
        for (name, value) in &keyed.env {
            let fact = format!("{}={}", text(name.as_bytes()), text(value.as_bytes()));
            facts.push(("env".into(), fact));
        }
        for (dir, tree) in &keyed.upstream {
            let fact = format!("{}={}", text(dir), crate::hash::hex(tree));
            facts.push(("upstream".into(), fact));
        }
        facts
    }

    fn candidate_matches(&self, Keying { hasher, update }: Keying, candidate: &Candidate) -> bool {
        let dirs = self.env.dirs(&self.bases);
        let mut seen = Vec::new();
        keying::env_deps_match(candidate, &self.bases)
            && candidate.inputs.iter().all(|input| {
                inputs::fingerprint(hasher, &dirs, &input.path, &mut seen, update)
                    .is_ok_and(|now| now == input.hash)
            })
    }

    fn restore(&mut self, Keying { hasher, update }: Keying, entry: &Entry) -> io::Result<()> {
        if [&entry.stdout, &entry.stderr]
            .iter()
            .any(|template| self.bases.expand(template).is_none())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the run's output names a base dir this run does not have",
            ));
        }
        tree::restore(
            hasher.store(),
            entry,
            &self.env.out_dir,
            &self.bases,
            update,
        )?;
        remember_tree(hasher, &entry.outputs, &self.env.out_dir, update);
        Ok(())
    }

    /// Writes a recorded run's stdout and stderr, byte for byte, with this run's dirs in place
    /// of the recorded run's (the directives name this `OUT_DIR`).
    fn replay(&self, entry: &Entry) {
        let fill = |template: &[u8]| self.bases.expand(template).unwrap_or_default();
        let _ = std::io::stdout().lock().write_all(&fill(&entry.stdout));
        let _ = std::io::stderr().lock().write_all(&fill(&entry.stderr));
    }

    fn run(&mut self, _store: &Store, program: &Program) -> io::Result<Compiled> {
        let mut chain = program.chain.clone();
        if let Some(path) = cc_env::routed_path(&self.config) {
            chain.env.push(("PATH".into(), path));
            self.cc_routed = true;
        }
        run::compile(&chain, &program.args, |_| true)
    }

    fn failed_run_reason(&self) -> NotStoredReason {
        NotStoredReason::ScriptFailed
    }

    fn record(&mut self, recording: &mut Recording) -> Result<Recorded, NotStored> {
        let recorded = record::record(recording, &self.real, &self.env, &self.bases)?;
        if recorded.candidate.path_bound.is_some() {
            self.path_bound = Some(PathBound::OutputHoldsPath);
        }
        Ok(recorded)
    }

    fn after_run(&mut self, keying: Keying, _succeeded: bool) {
        if self.cc_routed {
            keying.update.count(BUILD_SCRIPTS_CC_ROUTED, 1);
        }
    }
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
