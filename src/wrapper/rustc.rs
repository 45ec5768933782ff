//! The rustc job: `rcache <rustc> <args>` (cargo's `RUSTC_WRAPPER`), driven through the one
//! flow ([`super::flow`]).
//!
//! What is rustc's own: the argv is classified into a typed [`Invocation`]; the key facts are
//! the compiler's identity, the argv, the cwd, the `--extern` files' content and cargo's
//! per-crate variables ([`keying::invocation_key`]); candidates are matched by the dep-info
//! inputs they recorded; a hit restores the crate's outputs and replays rustc's diagnostics and
//! artifact notifications; a miss runs rustc with dep-info (and, for a crate that links, the
//! linker's `--dependency-file`) asked at temp paths when the caller did not ask for them.
//! For a build script it produces, it installs the build-script launcher.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::build_script;
use super::flow::{Context, Counting, Job, NotStored, Recorded, Recording, Unit};
use super::incremental::{Evidence, IncrementalCompile};
use super::keying::{self, KeyError, Keying, MemoHasher, WorkspaceWrapper};
use super::record::{self, Finished};
use super::restore;
use super::run::{self, Compiled, CompilerChain, Program};
use crate::hash::Key;
use crate::key::BaseDirs;
use crate::key::base_dirs::{self, PathBound, Role};
use crate::key::input_paths::InputDirs;
use crate::rustc::outputs::expected_outputs;
use crate::rustc::{self, Invocation, Passthrough};
use crate::stats::{ErrorReason, Outcome, PassthroughReason, RunPassthrough};
use crate::store::Store;
use crate::store::entry::{Candidate, Entry};
use crate::store::state::StateUpdate;

/// Runs one wrapper invocation; `args` starts with the compiler. Returns the exit code (when it
/// does not exec the compiler).
pub fn run(args: Vec<OsString>) -> i32 {
    let mut cx = Context::load();
    let (wrapper, compiler_path, rustc_args) = keying::split_chain(&args);
    let chain = CompilerChain {
        program: args[0].clone(),
        leading_args: args[1..args.len() - rustc_args.len()].to_vec(),
        env: Vec::new(),
    };
    let mut program = Program {
        chain,
        args: rustc_args,
    };
    let rustc_args = &program.args;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let classified = if cx.config.disable.value {
        Err(Passthrough::Disabled)
    } else if wrapper
        .as_ref()
        .is_some_and(|wrapper| !is_clippy_driver(&wrapper.path))
    {
        Err(Passthrough::UnknownWorkspaceWrapper)
    } else {
        rustc::classify(rustc_args)
    };
    let invocation = match classified {
        Ok(invocation) => invocation,
        Err(reason) => {
            let store = cx.open_store();
            let raw_types = crate_types_of(rustc_args);
            let unit = Unit {
                kind: "rustc",
                counting: RUST,
                name: crate_name_of(rustc_args).map(Cow::Borrowed),
                crate_types: Cow::Borrowed(&raw_types),
                cwd: Cow::Borrowed(&cwd),
                path_bound: None,
            };
            return cx.pass_through(store.as_ref().ok(), &unit, &program, reason.into());
        }
    };
    let path_independent = cx.config.path_independent.value;
    // Found once: the flags here, and the key's base dirs (with the sysroot) while keying.
    let base_candidates = if path_independent {
        base_dir_candidates(&invocation, &cwd)
    } else {
        Vec::new()
    };
    if path_independent && let Ok(bases) = BaseDirs::new(base_candidates.clone()) {
        // Every run of a cacheable compile gets rcache's remapping, a fallback after a fault
        // too: its outputs are always a plain build's given these flags. rcache's come first:
        // rustc lets a later `--remap-path-prefix` win, so the user's own keep theirs.
        let mut args = bases.remap_args();
        args.append(&mut program.args);
        program.args = args;
    }
    let incremental = invocation
        .codegen_value("incremental")
        .map(|dir| IncrementalCompile {
            dir: cwd.join(dir),
            crate_name: invocation.crate_name.clone(),
            before: None,
        });
    let mut job = RustcJob {
        incremental,
        stored_outputs: Vec::new(),
        launcher_wanted: build_script::cc_env::launcher_wanted(&cx.config),
        path_independent,
        base_candidates,
        bases: BaseDirs::none(),
        path_bound: None,
        keyed: None,
        invocation,
        compiler_path,
        wrapper,
        cwd,
        own_dep_info: None,
        linker_dep_info: None,
    };
    match cx.open_store() {
        Ok(store) => super::flow::run_cached(&mut cx, &store, &program, &mut job),
        Err(err) => cx.store_unusable(&err, &job.unit(), &program, "compiler"),
    }
}

const RUST: Counting = Counting::Compile { language: "rust" };

fn is_clippy_driver(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("clippy-driver"))
}

/// A cacheable rustc compile.
struct RustcJob {
    /// Whether cargo's runs of build scripts come to rcache (the launcher is installed): to be
    /// cached, or to have their C/C++ compiles routed through rcache.
    launcher_wanted: bool,
    invocation: Invocation,
    compiler_path: PathBuf,
    wrapper: Option<WorkspaceWrapper>,
    cwd: PathBuf,
    /// The dep-info rcache asked for at a temp path, when the caller did not.
    own_dep_info: Option<PathBuf>,
    /// The linker's `--dependency-file`, for a crate that links.
    linker_dep_info: Option<PathBuf>,
    /// `RCACHE_PATH_INDEPENDENT`: hits in other checkouts, target dirs and `CARGO_HOME`s.
    path_independent: bool,
    /// The base dirs known before keying (cwd, `CARGO_HOME`, target dir); the sysroot joins
    /// them once the compiler is identified. A dir rcache cannot template makes the unit
    /// path-bound (`--remap-path-scope`, which would scope rcache's remapping too, is not
    /// cached at all: `unknown_argument`).
    base_candidates: Vec<(Role, PathBuf)>,
    /// The unit's base dirs, found while keying (none when path independence is off or the
    /// unit is path-bound from the start).
    bases: BaseDirs,
    /// Why this unit is keyed with its real paths, when it is.
    path_bound: Option<PathBound>,
    /// What keying learned that the explain history records after a miss.
    keyed: Option<Keyed>,
    /// `-C incremental`: the session kept with a miss's entry and put back on a hit.
    incremental: Option<IncrementalCompile>,
    /// The blobs of the outputs a miss stored, which its kept session goes with.
    stored_outputs: Vec<Key>,
}

/// The facts of a rustc key that cannot be read again from the invocation after the run.
struct Keyed {
    compiler: Key,
    /// Each `--extern` name with the content hash keyed.
    extern_hashes: Vec<(String, Key)>,
}

impl Job for RustcJob {
    fn unit(&self) -> Unit<'_> {
        Unit {
            kind: "rustc",
            counting: RUST,
            name: Some(Cow::Borrowed(&self.invocation.crate_name)),
            crate_types: Cow::Borrowed(&self.invocation.crate_types),
            cwd: Cow::Borrowed(&self.cwd),
            path_bound: self.path_bound.map(PathBound::as_str),
        }
    }

    fn invocation_key(&mut self, Keying { hasher, update }: Keying) -> Result<Key, KeyError> {
        let identity =
            super::compiler_memo::compiler_identity(hasher.store(), &self.compiler_path)?;
        if self.path_independent {
            let mut candidates = self.base_candidates.clone();
            if !identity.sysroot.is_empty() {
                let sysroot = std::ffi::OsStr::from_bytes(&identity.sysroot);
                candidates.push((Role::Sysroot, PathBuf::from(sysroot)));
            }
            match BaseDirs::new(candidates) {
                Ok(bases) => self.bases = bases,
                Err(reason) => self.path_bound = Some(reason),
            }
        }
        let (key, extern_hashes) = keying::invocation_key(
            hasher,
            &self.invocation,
            &self.compiler_path,
            &identity,
            self.wrapper.as_ref(),
            &self.cwd,
            &self.bases,
            update,
        )?;
        self.keyed = Some(Keyed {
            compiler: identity.id,
            extern_hashes,
        });
        Ok(key)
    }

    fn explain_facts(&self) -> Vec<(String, String)> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let bases = &self.bases;
        let mut facts = Vec::new();
        if let Some(keyed) = &self.keyed {
            facts.push(("compiler".into(), crate::hash::hex(&keyed.compiler)));
        }
        // The key's arguments, one fact per option with its value.
        let mut args = self.invocation.key_args.iter().peekable();
        while let Some(arg) = args.next() {
            let takes_value = arg.starts_with('-') || arg == "input";
            let value = args.next_if(|next| takes_value && !next.starts_with('-'));
            let arg = match value {
                Some(value) => format!("{arg} {value}"),
                None => arg.clone(),
            };
            facts.push(("arg".into(), text(&bases.template(arg.as_bytes()))));
        }
        facts.push((
            "cwd".into(),
            text(&bases.normalize(self.cwd.as_os_str().as_bytes())),
        ));
        for (name, value) in crate::key::allowlisted_env() {
            let value = value.map_or("(unset)".into(), |value| {
                text(&bases.template(value.as_bytes()))
            });
            facts.push(("env".into(), format!("{name}={value}")));
        }
        for (name, hash) in self.keyed.iter().flat_map(|keyed| &keyed.extern_hashes) {
            facts.push((
                "extern".into(),
                format!("{name}={}", crate::hash::hex(hash)),
            ));
        }
        facts
    }

    fn candidate_matches(&self, Keying { hasher, update }: Keying, candidate: &Candidate) -> bool {
        let dirs = InputDirs::of(&self.invocation, &self.cwd, &self.bases);
        keying::inputs_match(hasher, candidate, &dirs, update)
    }

    fn verbatim_dirs(&self) -> Vec<u8> {
        self.bases.verbatim()
    }

    fn restore(&mut self, Keying { hasher, update }: Keying, entry: &Entry) -> io::Result<()> {
        let out_dir = self.cwd.join(&self.invocation.out_dir);
        let expected = expected_outputs(&self.invocation);
        let restored = restore::materialize(
            hasher.store(),
            entry,
            &expected,
            &out_dir,
            &self.invocation.out_dir,
            &self.bases,
            update,
        )?;
        for output in restored {
            if let Some(hash) = output.known_hash {
                hasher.remember_written(&output.path, hash, update);
            }
        }
        self.install_launcher(hasher, update);
        Ok(())
    }

    fn replay(&self, entry: &Entry) {
        // The key holds the unit's roles: an entry found under it names no role this unit lacks.
        let stderr = self.bases.expand(&entry.stderr).unwrap_or_default();
        restore::replay(
            entry,
            &stderr,
            &self.invocation.out_dir,
            self.invocation.json_artifacts,
        );
    }

    fn run(&mut self, store: &Store, program: &Program) -> io::Result<Compiled> {
        // `program` already carries rcache's `--remap-path-prefix` flags (see `run`).
        let mut args = program.args.clone();
        // Cargo always asks for dep-info; when a caller did not, ask for it at a temp path so
        // that what the caller sees is unchanged.
        self.own_dep_info = (!self.invocation.emits("dep-info"))
            .then(|| add_temp_output_arg(store, "dep-info", "--emit=dep-info=", &mut args));
        // A crate that links: the linker lists every file it reads (docs/design.md §6).
        self.linker_dep_info = self.invocation.runs_linker().then(|| {
            add_temp_output_arg(
                store,
                "link-deps",
                "-Clink-arg=-Wl,--dependency-file=",
                &mut args,
            )
        });
        if let Some(incremental) = &mut self.incremental {
            incremental.note_before();
        }
        let dropped = self.own_dep_info.clone();
        let bases = self.bases.clone();
        let remap_root = format!("{}/", base_dirs::REMAP_ROOT);
        let keep_line = move |line: &mut Vec<u8>| {
            if let (Some(own), Some((path, emit))) = (&dropped, restore::artifact(line))
                && emit == "dep-info"
                && Path::new(&path) == own
            {
                return false;
            }
            // Diagnostics name what a plain build would: the real dirs, not the remapped names.
            if memchr::memmem::find(line, remap_root.as_bytes()).is_some() {
                *line = bases.unremap(line);
            }
            true
        };
        run::compile(&program.chain, &args, keep_line)
    }

    fn rerun_as_asked(&self, ran: &Compiled) -> Option<PassthroughReason> {
        // A linker that does not know `--dependency-file`: compile again exactly as asked.
        let rejected = !ran.status.success()
            && self.linker_dep_info.is_some()
            && ran
                .stderr
                .windows(15)
                .any(|window| window == b"dependency-file");
        rejected.then_some(Passthrough::LinkerDependencyFile.into())
    }

    fn record(&mut self, recording: &mut Recording) -> Result<Recorded, NotStored> {
        let out_dir = self.cwd.join(&self.invocation.out_dir);
        let dep_info_path = self
            .own_dep_info
            .clone()
            .unwrap_or_else(|| out_dir.join(rustc::outputs::dep_info_name(&self.invocation)));
        let finished = Finished {
            invocation: &self.invocation,
            cwd: &self.cwd,
            dep_info_path: &dep_info_path,
            linker_dep_info_path: self.linker_dep_info.as_deref(),
            bases: &self.bases,
        };
        let recorded = record::record(recording, &finished)?;
        self.stored_outputs = recorded.outputs.iter().filter_map(|o| o.blob()).collect();
        if recorded.candidate.path_bound.is_some() {
            self.path_bound = Some(PathBound::OutputHoldsPath);
        }
        Ok(recorded)
    }

    fn restored(
        &mut self,
        store: &Store,
        result_key: &Key,
        entry: &Entry,
        update: &mut StateUpdate,
    ) {
        if let Some(incremental) = &self.incremental {
            incremental.put_back(store, result_key, entry, &self.layout(), update);
        }
    }

    fn stored(&mut self, store: &Store, result_key: &Key, update: &mut StateUpdate) {
        let Some(incremental) = &self.incremental else {
            return;
        };
        let rmeta = expected_outputs(&self.invocation)
            .into_iter()
            .find(|output| output.kind == crate::store::entry::OutputKind::Rmeta)
            .map(|output| {
                self.cwd
                    .join(&self.invocation.out_dir)
                    .join(output.file_name)
            });
        let evidence = Evidence {
            rmeta: rmeta.as_deref(),
            linker_dep_info: self.linker_dep_info.as_deref(),
        };
        let outputs = std::mem::take(&mut self.stored_outputs);
        incremental.keep(store, result_key, outputs, self.layout(), &evidence, update);
    }

    fn after_run(&mut self, Keying { hasher, update }: Keying, succeeded: bool) {
        for path in self.own_dep_info.iter().chain(&self.linker_dep_info) {
            let _ = std::fs::remove_file(path);
        }
        if succeeded {
            self.install_launcher(hasher, update);
        }
    }
}

impl RustcJob {
    /// The unit's real dirs, which a kept incremental session names: its base dirs and cwd.
    fn layout(&self) -> Vec<u8> {
        let mut layout = self.bases.verbatim();
        layout.push(0);
        layout.extend_from_slice(self.cwd.as_os_str().as_bytes());
        layout
    }

    /// For a build script rcache has just produced: puts the launcher in its place, so that
    /// cargo's runs of it come to rcache. A failure leaves the script as it was, to run
    /// uncached, and is counted under `build_scripts`.
    fn install_launcher(&self, hasher: &mut MemoHasher, update: &mut StateUpdate) {
        if !build_script::launcher::is_build_script(&self.invocation) || !self.launcher_wanted {
            return;
        }
        let binary = self
            .cwd
            .join(build_script::launcher::binary_path(&self.invocation));
        let installed = build_script::launcher::launcher_binary()
            .map_err(|err| {
                tracing::warn!("{err}; build-script runs will not be cached");
                Outcome::Passthrough {
                    reason: RunPassthrough::LauncherMissing.into(),
                }
            })
            .and_then(|launcher| {
                build_script::launcher::install(&binary, &launcher).map_err(|err| {
                    tracing::warn!("could not install the build-script launcher: {err}");
                    Outcome::Error {
                        reason: ErrorReason::of_io(&err),
                    }
                })
            });
        match installed {
            Ok(real) => hasher.remember_renamed(&binary, &real, update),
            Err(outcome) => super::flow::count_unlaunched_run(update, &outcome, &self.cwd),
        }
    }
}

/// A unit's base dirs before its compiler is known (`key::base_dirs`): its cwd, `CARGO_HOME`
/// and the target dir above its `-L dependency=` dir.
fn base_dir_candidates(invocation: &Invocation, cwd: &Path) -> Vec<(Role, PathBuf)> {
    let mut candidates = vec![(Role::Cwd, cwd.to_path_buf())];
    if let Some(home) = base_dirs::cargo_home() {
        candidates.push((Role::CargoHome, home));
    }
    let dependency_dirs: Vec<PathBuf> = invocation
        .library_paths
        .iter()
        .filter_map(|search| search.strip_prefix("dependency="))
        .map(|dir| cwd.join(dir))
        .collect();
    let target = invocation.target.as_deref();
    if let Some(target_dir) = base_dirs::cargo_target_dir(&dependency_dirs, target) {
        candidates.push((Role::Target, target_dir));
    }
    candidates
}

/// Appends `flag<path>` to `args` for a file rustc or the linker writes on rcache's behalf, at a
/// per-process temp path in the store, and returns the path.
fn add_temp_output_arg(store: &Store, stem: &str, flag: &str, args: &mut Vec<OsString>) -> PathBuf {
    let path = store.layout.tmp_dir().join(format!(
        "{stem}-{}-{}.d",
        std::process::id(),
        crate::clock::unix_ms(SystemTime::now())
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
