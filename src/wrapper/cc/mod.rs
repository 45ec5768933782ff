//! The C and C++ job: `rcache cc <args>` (or `gcc`, `clang++`, a compiler path, or a link named
//! `cc` that points at rcache), driven through the one flow ([`super::flow`]).
//!
//! What is C's own:
//! - the argv is classified into a typed [`CcInvocation`]; not cacheable: the real compiler is
//!   exec'd with the same argv, stdin and output;
//! - the key facts are the compiler's identity, the argv without output names, the cwd, the
//!   source's content, the C environment and `-march=native` resolved;
//! - a hit restores the object (and the caller's dep file and `.dwo`) and replays the
//!   compiler's output; no compiler and no preprocessor runs;
//! - a miss runs the compiler writing rcache's own full dep file (`-MD -MF <tmp>`, system
//!   headers included), whose inputs become the manifest candidate.
//!
//! Counted in the compile totals and in `languages.<language>.*`, logged with `kind: "cc"`.

mod restore;
mod store;

use std::borrow::Cow;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use super::flow::{Context, Counting, EXIT_CANNOT_RUN, Job, NotStored, Recorded, Recording, Unit};
use super::keying::{self, KeyError, Keying};
use super::run::{self, Compiled, Program};
use crate::cc::args::{self, CcInvocation};
use crate::cc::depfile;
use crate::cc::driver;
use crate::cc::identity::{self, CcIdentity};
use crate::cc::key::{self, CcKeyFacts};
use crate::cc::passthrough::CcPassthrough;
use crate::hash::Key;
use crate::key::BaseDirs;
use crate::key::base_dirs::{self, PathBound, Role};
use crate::key::compiler::native_cpu_memo_key;
use crate::key::input_paths::InputDirs;
use crate::stats::{self, NotStoredReason};
use crate::store::Store;
use crate::store::entry::{Candidate, Entry};
use crate::store::state::StateUpdate;

/// Runs one C compiler call: `program` is the compiler as rcache was given it (a name, a path,
/// or argv[0] of a link), `args` its arguments. Returns the exit code when it does not exec.
pub fn run(program: OsString, args: Vec<OsString>) -> i32 {
    let mut cx = Context::load();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let real = driver::resolve_compiler(&program, &cwd);
    let language = driver::default_language(&program).name();
    let real_program = Program::plain(
        real.clone()
            .map_or(program.clone(), PathBuf::into_os_string),
        args,
    );
    let Some(real) = real else {
        eprintln!(
            "rcache: no compiler named {} found on PATH (other than rcache itself)",
            Path::new(&program).display()
        );
        let outcome = stats::Outcome::Passthrough {
            reason: CcPassthrough::CompilerNotFound.into(),
        };
        cx.finish(None, &unclassified_unit(language, &cwd), &outcome);
        return EXIT_CANNOT_RUN;
    };
    let classified = if cx.config.disable.value {
        Err(CcPassthrough::Disabled)
    } else if ["DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        Err(CcPassthrough::DependenciesEnv)
    } else {
        args::classify(&real_program.args)
    };
    let invocation = match classified {
        Ok(invocation) => invocation,
        Err(reason) => {
            let store = cx.open_store();
            let unit = unclassified_unit(language, &cwd);
            return cx.pass_through(store.as_ref().ok(), &unit, &real_program, reason.into());
        }
    };
    let mut job = CcJob {
        path_independent: cx.config.path_independent.value,
        bases: BaseDirs::none(),
        path_bound: None,
        keyed: None,
        invocation,
        real,
        cwd,
        own_dep_file: PathBuf::new(),
        dep_pass_ok: true,
    };
    match cx.open_store() {
        Ok(store) => super::flow::run_cached(&mut cx, &store, &real_program, &mut job),
        Err(err) => cx.store_unusable(&err, &job.unit(), &real_program, "compiler"),
    }
}

/// The unit of a call that was not classified: no source is known.
fn unclassified_unit<'a>(language: &'static str, cwd: &'a Path) -> Unit<'a> {
    Unit {
        kind: "cc",
        counting: Counting::Compile { language },
        name: None,
        crate_types: Cow::Borrowed(&[]),
        cwd: Cow::Borrowed(cwd),
        path_bound: None,
    }
}

/// A C or C++ compile's base dirs (`crate::key::base_dirs`, docs/design.md §6e): its cwd,
/// `CARGO_HOME`, and, under a build script (`OUT_DIR` set), the target dir.
fn cc_base_dirs(cwd: &Path) -> Result<BaseDirs, PathBound> {
    let mut candidates = vec![(Role::Cwd, cwd.to_path_buf())];
    if let Some(home) = base_dirs::cargo_home() {
        candidates.push((Role::CargoHome, home));
    }
    let out_dir = std::env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute());
    if let Some(profile_dir) = out_dir.as_deref().and_then(|dir| dir.ancestors().nth(3)) {
        let target = std::env::var("TARGET").ok();
        let deps = [profile_dir.join("deps")];
        if let Some(target_dir) = base_dirs::cargo_target_dir(&deps, target.as_deref()) {
            candidates.push((Role::Target, target_dir));
        }
    }
    BaseDirs::new(candidates)
}

/// A cacheable C or C++ compile.
struct CcJob {
    /// `RCACHE_PATH_INDEPENDENT`: hits in other checkouts and target dirs.
    path_independent: bool,
    /// The compile's base dirs, found while keying.
    bases: BaseDirs,
    /// Why this compile is keyed with its real paths, when it is.
    path_bound: Option<PathBound>,
    /// The compiler's identity and the source's content hash keyed, for the explain history.
    keyed: Option<(Key, Key)>,
    invocation: CcInvocation,
    /// The real compiler.
    real: PathBuf,
    cwd: PathBuf,
    /// rcache's own full dep file, at a temp path, once the compiler ran.
    own_dep_file: PathBuf,
    /// Whether the dependency-only run (for a caller's own dep file) succeeded.
    dep_pass_ok: bool,
}

impl Job for CcJob {
    fn unit(&self) -> Unit<'_> {
        Unit {
            kind: "cc",
            counting: Counting::Compile {
                language: self.invocation.language.name(),
            },
            name: Some(self.invocation.source.to_string_lossy()),
            crate_types: Cow::Borrowed(&[]),
            cwd: Cow::Borrowed(&self.cwd),
            path_bound: self.path_bound.map(PathBound::as_str),
        }
    }

    fn verbatim_dirs(&self) -> Vec<u8> {
        self.bases.verbatim()
    }

    fn invocation_key(&mut self, Keying { hasher, update }: Keying) -> Result<Key, KeyError> {
        let store = hasher.store();
        let identity = cc_identity(store, &self.real)?;
        let native = if self.invocation.native_flags.is_empty() {
            None
        } else {
            Some(native_target(
                store,
                &self.real,
                &identity,
                &self.invocation.native_flags,
                update,
            )?)
        };
        let source_hash = hasher.hash(&self.cwd.join(&self.invocation.source), update)?;
        if self.path_independent {
            match cc_base_dirs(&self.cwd) {
                Ok(bases) => self.bases = bases,
                Err(reason) => self.path_bound = Some(reason),
            }
        }
        let facts = CcKeyFacts {
            invocation: &self.invocation,
            bases: &self.bases,
            compiler_id: identity.id,
            cwd: &self.cwd,
            source_hash,
            env: key::cc_env(),
            native,
        };
        let key = key::invocation_key(&facts);
        self.keyed = Some((identity.id, source_hash));
        Ok(key)
    }

    fn explain_facts(&self) -> Vec<(String, String)> {
        let Some((compiler, source)) = &self.keyed else {
            return Vec::new();
        };
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let bases = &self.bases;
        let mut facts = vec![("compiler".to_string(), crate::hash::hex(compiler))];
        for arg in &self.invocation.key_args {
            facts.push(("arg".into(), text(&bases.template(arg.as_bytes()))));
        }
        facts.push((
            "cwd".into(),
            text(&bases.normalize(self.cwd.as_os_str().as_bytes())),
        ));
        for (name, value) in key::cc_env() {
            let value = value.map_or("(unset)".into(), |v| text(&bases.template(v.as_bytes())));
            facts.push(("env".into(), format!("{name}={value}")));
        }
        facts.push(("source".into(), crate::hash::hex(source)));
        facts
    }

    fn candidate_matches(&self, Keying { hasher, update }: Keying, candidate: &Candidate) -> bool {
        let dirs = InputDirs::cwd_only(&self.cwd, &self.bases);
        keying::inputs_match(hasher, candidate, &dirs, update)
    }

    fn restore(&mut self, Keying { hasher, update }: Keying, entry: &Entry) -> io::Result<()> {
        let store = hasher.store();
        let restored = restore::materialize(
            store,
            entry,
            &self.invocation,
            &self.cwd,
            &self.bases,
            update,
        )?;
        for (path, hash) in restored {
            hasher.remember_written(&path, hash, update);
        }
        Ok(())
    }

    fn replay(&self, entry: &Entry) {
        // The key holds the compile's roles: an entry found under it names no role it lacks.
        let stderr = self.bases.expand(&entry.stderr).unwrap_or_default();
        super::restore::replay(entry, &stderr, Path::new(""), false);
    }

    fn run(&mut self, store: &Store, program: &Program) -> io::Result<Compiled> {
        self.own_dep_file = store.layout.tmp_dir().join(format!(
            "cc-deps-{}-{}.d",
            std::process::id(),
            crate::clock::unix_ms(SystemTime::now())
        ));
        // rcache's prefix maps first: the compiler lets a later one win, so the caller's own
        // keep theirs. Only on this run, not on a fallback: an old compiler may reject them.
        let mut args = self.bases.prefix_map_args();
        args.extend(program.args.iter().cloned());
        if self.invocation.dep_file.is_some() {
            // The caller's dep options take the compiler's one dep file, and `-MMD` leaves system
            // headers out: list every input in a preprocess-only run of its own.
            self.dep_pass_ok = Command::new(&program.chain.program)
                .args(depfile::dep_pass_args(&args, &self.own_dep_file))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
        } else {
            args.extend(["-MD".into(), "-MF".into(), self.own_dep_file.clone().into()]);
        }
        run::compile(&program.chain, &args, |_| true)
    }

    fn rerun_as_asked(&self, ran: &Compiled) -> Option<stats::PassthroughReason> {
        let rejected = !ran.status.success()
            && !self.bases.is_empty()
            && memchr::memmem::find(&ran.stderr, b"file-prefix-map").is_some();
        rejected.then_some(CcPassthrough::FilePrefixMapUnsupported.into())
    }

    fn record(&mut self, recording: &mut Recording) -> Result<Recorded, NotStored> {
        if !self.dep_pass_ok {
            return Err(NotStored::Refused(NotStoredReason::DepPassFailed));
        }
        let recorded = store::record(
            recording,
            &self.invocation,
            &self.cwd,
            &self.own_dep_file,
            &self.bases,
        )?;
        if recorded.candidate.path_bound.is_some() {
            self.path_bound = Some(PathBound::OutputHoldsPath);
        }
        Ok(recorded)
    }

    fn after_run(&mut self, _keying: Keying, _succeeded: bool) {
        if !self.own_dep_file.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.own_dep_file);
        }
    }
}

/// The compiler's identity, from the memo or computed (and memoized).
fn cc_identity(store: &Store, compiler: &Path) -> Result<CcIdentity, KeyError> {
    super::compiler_memo::memoized_identity(store, identity::memo_key(compiler), || {
        Ok(identity::identify(compiler)?)
    })
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
