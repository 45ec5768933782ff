//! `rcache explain [UNIT] [--json]`: why a unit missed (issue 16, step 1).
//!
//! It reads the explain history (`store::history`): every invocation that did not hit left a
//! record of what went into its key and, for a miss that was stored, its inputs. The **nearest**
//! earlier state of a unit is the record before its newest one (the same crate name, kind and
//! crate types): the last time that unit was compiled or run, which is what stored the entry a
//! hit would have used. The differences are named in this order, the first kind found wins:
//! - a passthrough: its reason; no earlier record: a new unit (or one whose history was cleared);
//! - the key's facts: the compiler, added and removed arguments, environment values, the cwd,
//!   and `--extern` files whose content changed: for those, the upstream crate's own newest
//!   record in the same build is explained in turn (the cascade), down to the crate whose own
//!   inputs changed;
//! - the inputs: files that changed, appeared or vanished, and `env!` values;
//! - nothing: the same key and inputs (the entry was evicted, or the earlier run not stored).
//!
//! With no unit, every unit of the newest build that did not hit, grouped by root cause.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::config::Config;
use crate::store::entry::InputRecord;
use crate::store::history::{UnitHistory, UnitRecord};

/// How deep the cascade is followed: a longer chain is cut (it would be a cycle).
const MAX_CASCADE: usize = 32;

/// Why one unit did not hit.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub kind: String,
    pub name: String,
    pub package: Option<String>,
    pub crate_types: Vec<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub causes: Vec<Cause>,
}

/// One difference from the unit's nearest earlier record.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum Cause {
    Passthrough {
        reason: String,
    },
    NoEarlierRecord,
    Compiler,
    /// A keyed file other than an input: a run's script binary, a C compile's source.
    Changed {
        what: String,
    },
    ArgumentAdded {
        argument: String,
    },
    ArgumentRemoved {
        argument: String,
    },
    Env {
        name: String,
        old: String,
        new: String,
    },
    Cwd {
        old: String,
        new: String,
    },
    /// An `--extern` file changed: `root` is what changed in that crate, or further up.
    Upstream {
        name: String,
        root: Vec<Cause>,
    },
    /// A build-script run: a `links` dependency's `OUT_DIR` (named by a `DEP_*` value) changed.
    UpstreamOutDir {
        dir: String,
    },
    InputChanged {
        path: String,
    },
    InputAdded {
        path: String,
    },
    InputRemoved {
        path: String,
    },
    EnvDep {
        name: String,
        old: String,
        new: String,
    },
    SameKeyAndInputs,
}

pub fn run(config: &Config, unit: Option<&str>, json: bool) -> anyhow::Result<()> {
    let store = super::stats::open(config)?;
    let histories = store.state.unit_histories()?;
    let explanations: Vec<Explanation> = match unit {
        Some(name) => {
            // Every unit of that name, or of that package (its crates, build script, run and
            // C/C++ compiles), whose newest record is in the newest build among them.
            let named: Vec<&UnitHistory> = histories
                .iter()
                .filter(|history| {
                    let newest = &history.records[0];
                    newest.name == name || newest.package.as_deref() == Some(name)
                })
                .collect();
            let newest = named
                .iter()
                .max_by_key(|history| history.records[0].ts_ms)
                .ok_or_else(|| anyhow::anyhow!("no miss of {name} is recorded"))?;
            let build = newest.records[0].build;
            explain_in_build(named.into_iter(), build, &histories)
        }
        None => match super::report::last_build(&store)? {
            Some(build) => explain_build(&histories, build),
            None => Vec::new(),
        },
    };
    let out = if json {
        serde_json::to_string_pretty(&explanations)? + "\n"
    } else {
        text(&explanations)
    };
    super::stats::print_all(&out);
    Ok(())
}

/// Why each unit of `build` that did not hit missed, in start order.
pub fn explain_build(histories: &[UnitHistory], build: u64) -> Vec<Explanation> {
    explain_in_build(histories.iter(), build, histories)
}

/// Why each of `units` that has a record in `build` missed there, in start order; `all` is
/// every history (the cascade follows upstream crates through it).
fn explain_in_build<'a>(
    units: impl Iterator<Item = &'a UnitHistory>,
    build: u64,
    all: &[UnitHistory],
) -> Vec<Explanation> {
    let mut records: Vec<&[UnitRecord]> = units
        .filter_map(|history| in_build(history, build))
        .collect();
    records.sort_by_key(|records| records[0].ts_ms);
    records
        .into_iter()
        .map(|records| explain(records, all))
        .collect()
}

/// A unit's records from its newest one in `build` on (that record, then the earlier ones).
fn in_build(history: &UnitHistory, build: u64) -> Option<&[UnitRecord]> {
    let at = history.records.iter().position(|r| r.build == build)?;
    Some(&history.records[at..])
}

/// Why `records[0]` did not hit; `records[1..]` are the unit's earlier records.
pub fn explain(records: &[UnitRecord], all: &[UnitHistory]) -> Explanation {
    let latest = &records[0];
    Explanation {
        kind: latest.kind.clone(),
        name: latest.name.clone(),
        package: latest.package.clone(),
        crate_types: latest.crate_types.clone(),
        outcome: latest.outcome.clone(),
        reason: latest.reason.clone(),
        causes: causes(records, all, 0),
    }
}

fn causes(records: &[UnitRecord], all: &[UnitHistory], depth: usize) -> Vec<Cause> {
    let latest = &records[0];
    if latest.outcome == "passthrough" {
        let reason = latest.reason.clone().unwrap_or_default();
        return vec![Cause::Passthrough { reason }];
    }
    // The nearest earlier record that knew its key (a passthrough knows none).
    let Some(previous) = records[1..].iter().find(|r| !r.facts.is_empty()) else {
        return vec![Cause::NoEarlierRecord];
    };
    let mut found = fact_causes(previous, latest);
    for cause in &mut found {
        if let Cause::Upstream { name, root } = cause
            && depth < MAX_CASCADE
            && let Some(upstream) = upstream_records(all, name, latest.build)
        {
            *root = causes(upstream, all, depth + 1);
        }
    }
    if found.is_empty() {
        found = input_causes(previous, latest);
    }
    if found.is_empty() {
        found.push(Cause::SameKeyAndInputs);
    }
    found
}

/// The records of crate `name`'s rustc compile from its newest one in `build` on (an `--extern`
/// names a crate).
fn upstream_records<'a>(
    all: &'a [UnitHistory],
    name: &str,
    build: u64,
) -> Option<&'a [UnitRecord]> {
    all.iter()
        .filter(|h| h.records[0].kind == "rustc" && h.records[0].name == name)
        .filter_map(|history| in_build(history, build))
        .max_by_key(|records| records[0].ts_ms)
}

/// The differences between two records' key facts.
fn fact_causes(old: &UnitRecord, new: &UnitRecord) -> Vec<Cause> {
    let of = |record: &UnitRecord, field: &str| -> Vec<String> {
        record
            .facts
            .iter()
            .filter(|(name, _)| name == field)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let mut found = Vec::new();
    if of(old, "compiler") != of(new, "compiler") {
        found.push(Cause::Compiler);
    }
    for (field, what) in [
        ("script", "the build script's binary"),
        ("source", "the source file"),
    ] {
        if of(old, field) != of(new, field) {
            found.push(Cause::Changed { what: what.into() });
        }
    }
    let (old_args, new_args): (BTreeSet<String>, BTreeSet<String>) = (
        of(old, "arg").into_iter().collect(),
        of(new, "arg").into_iter().collect(),
    );
    // Cargo derives `-C metadata`, `-C extra-filename` and the hash in `OUT_DIR` from the unit's
    // other settings: they are named only when nothing else differs.
    let mut derived = Vec::new();
    let is_derived = |argument: &str| {
        argument.starts_with("-C metadata=") || argument.starts_with("-C extra-filename=")
    };
    let added = new_args.difference(&old_args).map(|argument| {
        let cause = Cause::ArgumentAdded {
            argument: argument.clone(),
        };
        (argument, cause)
    });
    let removed = old_args.difference(&new_args).map(|argument| {
        let cause = Cause::ArgumentRemoved {
            argument: argument.clone(),
        };
        (argument, cause)
    });
    for (argument, cause) in added.chain(removed) {
        if is_derived(argument) {
            derived.push(cause);
        } else {
            found.push(cause);
        }
    }
    for (name, old_value, new_value) in changed_pairs(&of(old, "env"), &of(new, "env")) {
        let out_dir = name == "OUT_DIR";
        let cause = Cause::Env {
            old: masked(&name, shown(old_value.as_bytes())),
            new: masked(&name, shown(new_value.as_bytes())),
            name,
        };
        if out_dir {
            derived.push(cause);
        } else {
            found.push(cause);
        }
    }
    if let (Some(old_cwd), Some(new_cwd)) = (of(old, "cwd").pop(), of(new, "cwd").pop())
        && old_cwd != new_cwd
    {
        found.push(Cause::Cwd {
            old: shown(old_cwd.as_bytes()),
            new: shown(new_cwd.as_bytes()),
        });
    }
    for (name, _, _) in changed_pairs(&of(old, "extern"), &of(new, "extern")) {
        found.push(Cause::Upstream { name, root: vec![] });
    }
    for (dir, _, _) in changed_pairs(&of(old, "upstream"), &of(new, "upstream")) {
        found.push(Cause::UpstreamOutDir {
            dir: shown(dir.as_bytes()),
        });
    }
    if found.is_empty() {
        found = derived;
    }
    found
}

/// `name=value` facts whose value differs (or that one side lacks), by name.
fn changed_pairs(old: &[String], new: &[String]) -> Vec<(String, String, String)> {
    let split = |facts: &[String]| -> BTreeMap<String, String> {
        facts
            .iter()
            .map(|fact| match fact.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => (fact.clone(), String::new()),
            })
            .collect()
    };
    let (old, new) = (split(old), split(new));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|name| old.get(*name) != new.get(*name))
        .map(|name| {
            let value = |map: &BTreeMap<String, String>| {
                map.get(name).cloned().unwrap_or_else(|| "(none)".into())
            };
            (name.clone(), value(&old), value(&new))
        })
        .collect()
}

/// The differences between two records' inputs and `env!` values.
fn input_causes(old: &UnitRecord, new: &UnitRecord) -> Vec<Cause> {
    let by_path = |inputs: &[InputRecord]| -> HashMap<Vec<u8>, [u8; 32]> {
        inputs
            .iter()
            .map(|input| (input.path.clone(), input.hash))
            .collect()
    };
    let (old_inputs, new_inputs) = (by_path(&old.inputs), by_path(&new.inputs));
    let mut found = Vec::new();
    for input in &new.inputs {
        let path = shown(&input.path);
        match old_inputs.get(&input.path) {
            Some(hash) if *hash != input.hash => found.push(Cause::InputChanged { path }),
            None => found.push(Cause::InputAdded { path }),
            _ => {}
        }
    }
    for input in &old.inputs {
        if !new_inputs.contains_key(&input.path) {
            found.push(Cause::InputRemoved {
                path: shown(&input.path),
            });
        }
    }
    let env = |record: &UnitRecord| -> BTreeMap<String, Option<String>> {
        record
            .env_deps
            .iter()
            .map(|env| (env.name.clone(), env.value.clone()))
            .collect()
    };
    let (old_env, new_env) = (env(old), env(new));
    for name in old_env
        .keys()
        .chain(new_env.keys())
        .collect::<BTreeSet<_>>()
    {
        let value = |map: &BTreeMap<String, Option<String>>| {
            map.get(name)
                .cloned()
                .flatten()
                .map_or_else(|| "(unset)".to_string(), |value| shown(value.as_bytes()))
        };
        if old_env.get(name) != new_env.get(name) {
            found.push(Cause::EnvDep {
                old: masked(name, value(&old_env)),
                new: masked(name, value(&new_env)),
                name: name.clone(),
            });
        }
    }
    found
}

/// A recorded path or value as a user reads it: a base dir's placeholder as `<role>`, an out-dir
/// or `-L` anchor as `<out-dir>` / `<-L N>`.
fn shown(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut parts = bytes.split(|&byte| byte == 0);
    if let Some(first) = parts.next() {
        out.push_str(&String::from_utf8_lossy(first));
    }
    let mut in_placeholder = true;
    for part in parts {
        let text = String::from_utf8_lossy(part);
        if in_placeholder {
            match text.parse::<usize>() {
                Ok(0) => out.push_str("<out-dir>/"),
                Ok(n) => out.push_str(&format!("<-L {n}>/")),
                Err(_) => out.push_str(&format!("<{text}>")),
            }
        } else {
            out.push_str(&text);
        }
        in_placeholder = !in_placeholder;
    }
    lexically_normal(&out)
}

/// `a/src/../data/x` as `a/data/x`: rustc names an `include_str!("../data/x")` file that way.
fn lexically_normal(path: &str) -> String {
    if !path.contains("/..") && !path.contains("/./") {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "." => {}
            ".." if parts
                .last()
                .is_some_and(|last| !last.is_empty() && *last != "..") =>
            {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// A value of a variable whose name says it is a secret, masked as `rcache config` does.
fn masked(name: &str, value: String) -> String {
    let upper = name.to_ascii_uppercase();
    let secret = ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|word| upper.contains(word));
    if secret && value != "(unset)" && value != "(none)" {
        "****".into()
    } else {
        value
    }
}

/// The explanations grouped by root cause (the causes at the end of every cascade), so that
/// one edited file explains every crate it cascades to.
pub(super) fn by_root_cause(explanations: &[Explanation]) -> BTreeMap<String, Vec<&Explanation>> {
    let mut groups: BTreeMap<String, Vec<&Explanation>> = BTreeMap::new();
    for explanation in explanations {
        let root = explanation
            .causes
            .iter()
            .flat_map(root_causes)
            .map(describe)
            .collect::<Vec<_>>()
            .join("; ");
        groups.entry(root).or_default().push(explanation);
    }
    groups
}

pub(super) fn text(explanations: &[Explanation]) -> String {
    let mut out = String::new();
    if explanations.is_empty() {
        out.push_str("Nothing to explain: no unit of the last build missed.\n");
        return out;
    }
    for (root, group) in by_root_cause(explanations) {
        out.push_str(&format!("{root}:\n"));
        for explanation in group {
            out.push_str(&format!("  {}\n", unit_line(explanation)));
            for cause in &explanation.causes {
                cause_text(cause, 2, &mut out);
            }
        }
    }
    out
}

/// `name (kind types): outcome (reason)`.
pub(super) fn unit_line(explanation: &Explanation) -> String {
    let types = match explanation.crate_types.as_slice() {
        [] => String::new(),
        types => format!(" {}", types.join(",")),
    };
    let reason = explanation
        .reason
        .as_deref()
        .map_or(String::new(), |reason| format!(" ({reason})"));
    let package = match &explanation.package {
        Some(package) if *package != explanation.name => format!(" [{package}]"),
        _ => String::new(),
    };
    format!(
        "{}{package} ({}{types}): {}{reason}",
        explanation.name, explanation.kind, explanation.outcome
    )
}

fn cause_text(cause: &Cause, indent: usize, out: &mut String) {
    out.push_str(&format!("{}{}\n", "  ".repeat(indent), describe(cause)));
    if let Cause::Upstream { root, .. } = cause {
        for cause in root {
            cause_text(cause, indent + 1, out);
        }
    }
}

/// The causes at the end of every cascade.
fn root_causes(cause: &Cause) -> Vec<&Cause> {
    match cause {
        Cause::Upstream { root, .. } if !root.is_empty() => {
            root.iter().flat_map(root_causes).collect()
        }
        other => vec![other],
    }
}

pub(super) fn describe(cause: &Cause) -> String {
    match cause {
        Cause::Passthrough { reason } => format!("not cacheable: {reason}"),
        Cause::NoEarlierRecord => {
            "no earlier record: a new unit, or another profile or target".into()
        }
        Cause::Compiler => "the compiler changed".into(),
        Cause::Changed { what } => format!("{what} changed"),
        Cause::ArgumentAdded { argument } => format!("argument added: {argument}"),
        Cause::ArgumentRemoved { argument } => format!("argument removed: {argument}"),
        Cause::Env { name, old, new } => format!("environment {name}: {old} -> {new}"),
        Cause::Cwd { old, new } => format!("working directory: {old} -> {new}"),
        Cause::Upstream { name, .. } => format!("upstream crate {name} changed"),
        Cause::UpstreamOutDir { dir } => format!("upstream OUT_DIR changed: {dir}"),
        Cause::InputChanged { path } => format!("input changed: {path}"),
        Cause::InputAdded { path } => format!("new input: {path}"),
        Cause::InputRemoved { path } => format!("input gone: {path}"),
        Cause::EnvDep { name, old, new } => format!("env! {name}: {old} -> {new}"),
        Cause::SameKeyAndInputs => {
            "same key and inputs as before: the entry was evicted, or not stored then".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_paths_read_as_this_checkouts() {
        assert_eq!(shown(b"src/lib.rs"), "src/lib.rs");
        assert_eq!(
            shown(b"\0cargo-home\0/registry/x.rs"),
            "<cargo-home>/registry/x.rs"
        );
        assert_eq!(shown(b"\x000\x00libx.rlib"), "<out-dir>/libx.rlib");
        assert_eq!(shown(b"demo/src/../data/m.txt"), "demo/data/m.txt");
        assert_eq!(shown(b"/a/./b/../c"), "/a/c");
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(masked("API_TOKEN", "abc".into()), "****");
        assert_eq!(masked("GREETING", "hi".into()), "hi");
    }
}
