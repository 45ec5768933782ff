//! [`Machine`]: one of several machines sharing a remote cache, inside one [`Sandbox`].
//!
//! A machine is a store of its own (a fresh `RCACHE_DIR`) plus the settings it runs with (the
//! remote's, a key, read-only, ...). Every machine builds the sandbox's workspace into the
//! sandbox's target dir unless a test points it elsewhere (`paths.rs` gives machine B other
//! paths throughout). A test empties the target dir ([`Sandbox::remove_target`]) before the next
//! machine builds, which is what a fresh runner starts with.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::{CargoCmd, Run, Sandbox, parse_stats, run_ok};

/// A store and the settings it runs with; see the module docs.
pub struct Machine<'a> {
    sb: &'a Sandbox,
    /// This machine's `RCACHE_DIR`, created by rcache.
    pub store: PathBuf,
    env: Vec<(String, OsString)>,
    name: String,
}

impl Sandbox {
    /// A machine named `name`, with its store at `<root>/store-<name>`.
    pub fn machine(&self, name: &str) -> Machine<'_> {
        Machine {
            sb: self,
            store: self.root.join(format!("store-{name}")),
            env: Vec::new(),
            name: name.to_string(),
        }
    }

    /// Deletes the target dir, as on a fresh machine (no cargo involved).
    #[track_caller]
    pub fn remove_target(&self) {
        match fs::remove_dir_all(&self.target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                panic!("remove {}: {e}", self.target.display())
            }
            _ => {}
        }
    }
}

impl<'a> Machine<'a> {
    /// Adds a setting (`RCACHE_*`, `AWS_*`, ...) to every command of this machine.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Machine<'a> {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Adds several settings, e.g. a server's `env()`.
    pub fn envs<K: AsRef<str>, V: Into<OsString>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Machine<'a> {
        for (key, value) in vars {
            self.env.push((key.as_ref().to_string(), value.into()));
        }
        self
    }

    /// `cargo <args>` in the sandbox's workspace and target dir, with this machine's store.
    pub fn cargo(&self, args: &[&str]) -> CargoCmd {
        let mut cmd = self.sb.cargo(args).env("RCACHE_DIR", &self.store);
        for (key, value) in &self.env {
            cmd = cmd.env(key, value);
        }
        cmd.named(&format!("machine {}: cargo {}", self.name, args.join(" ")))
    }

    /// `cargo build`; asserts success.
    #[track_caller]
    pub fn build(&self) -> Run {
        self.cargo(&["build"]).ok()
    }

    /// `rcache <args>` with this machine's store and settings.
    pub fn rcache(&self, args: &[&str]) -> Command {
        let mut cmd = self.sb.rcache(args);
        cmd.env("RCACHE_DIR", &self.store);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `rcache <args>`; asserts success and returns stdout.
    #[track_caller]
    pub fn rcache_ok(&self, args: &[&str]) -> String {
        let what = format!("machine {}: rcache {}", self.name, args.join(" "));
        run_ok(&mut self.rcache(args), &what)
    }

    /// `rcache stats --json`, parsed.
    #[track_caller]
    pub fn stats(&self) -> Value {
        parse_stats(&self.rcache_ok(&["stats", "--json"]))
    }
}
