//! Settings from the environment and the TOML config file, each with where its value came from.
//!
//! Precedence: environment, then `$RCACHE_CONFIG` (or `~/.config/rcache/config.toml`), then the
//! default. Loading never fails: a bad value keeps the default and leaves a warning, because the
//! wrapper must not break a build over a typo (`rcache config` shows the warnings).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod loader;
pub(crate) mod remote;

use loader::{Loader, Names};
pub use remote::{RemoteConfig, RemoteLocation, UploadMode};

/// Default size limit: 10 GiB.
pub const DEFAULT_CACHE_SIZE: u64 = 10 << 30;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    Env(&'static str),
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Env(name) => write!(f, "environment ({name})"),
            Source::File(path) => write!(f, "config file ({})", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub dir: Setting<PathBuf>,
    pub cache_size: Setting<u64>,
    pub max_age: Setting<Option<Duration>>,
    pub log: Setting<Option<String>>,
    pub events: Setting<Option<PathBuf>>,
    pub disable: Setting<bool>,
    pub recache: Setting<bool>,
    /// Cache build-script runs (docs/design.md §6b); `off` leaves every run to cargo.
    pub build_scripts: Setting<bool>,
    /// Route the C/C++ compiles of the build scripts rcache runs through rcache, when the
    /// user set no `CC`/`CXX` (`wrapper::build_script::cc_env`); `off` runs them untouched.
    pub build_script_cc: Setting<bool>,
    /// Hits that do not depend on paths (`key::base_dirs`, docs/design.md §6e): base dirs
    /// remapped in outputs and normalized in keys; `off` keys every path as written.
    pub path_independent: Setting<bool>,
    /// Remote storage (README.md "Remote storage").
    pub remote: RemoteConfig,
    /// The config file consulted, and whether it exists.
    pub config_file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

const DIR: Names = Names {
    env: "RCACHE_DIR",
    toml: "dir",
};
const CACHE_SIZE: Names = Names {
    env: "RCACHE_CACHE_SIZE",
    toml: "cache_size",
};
const MAX_AGE: Names = Names {
    env: "RCACHE_MAX_AGE",
    toml: "max_age",
};
const LOG: Names = Names {
    env: "RCACHE_LOG",
    toml: "log",
};
const EVENTS: Names = Names {
    env: "RCACHE_EVENTS",
    toml: "events",
};
const DISABLE: Names = Names {
    env: "RCACHE_DISABLE",
    toml: "disable",
};
const RECACHE: Names = Names {
    env: "RCACHE_RECACHE",
    toml: "recache",
};
const BUILD_SCRIPTS: Names = Names {
    env: "RCACHE_BUILD_SCRIPTS",
    toml: "build_scripts",
};
const PATH_INDEPENDENT: Names = Names {
    env: "RCACHE_PATH_INDEPENDENT",
    toml: "path_independent",
};
const BUILD_SCRIPT_CC: Names = Names {
    env: "RCACHE_BUILD_SCRIPT_CC",
    toml: "build_script_cc",
};

impl Config {
    /// Loads the settings from the process environment.
    pub fn load() -> Config {
        Self::load_from(|name| std::env::var_os(name))
    }

    /// Loads the settings with `env` standing in for the environment (for tests).
    pub fn load_from(env: impl Fn(&str) -> Option<OsString>) -> Config {
        let mut loader = Loader::new(&env);
        let dir = loader.or(&DIR, |text| Some(PathBuf::from(text)), default_dir());
        let cache_size = loader.or(&CACHE_SIZE, parse_size, DEFAULT_CACHE_SIZE);
        let max_age = loader.optional(&MAX_AGE, loader::duration);
        let log = loader.optional(&LOG, |text| Some(text.to_string()));
        let events = loader.optional(&EVENTS, |text| {
            (!text.is_empty()).then(|| PathBuf::from(text))
        });
        let disable = loader.flag(&DISABLE, false);
        let recache = loader.flag(&RECACHE, false);
        let build_scripts = loader.flag(&BUILD_SCRIPTS, true);
        let build_script_cc = loader.flag(&BUILD_SCRIPT_CC, true);
        let path_independent = loader.flag(&PATH_INDEPENDENT, true);
        let remote = RemoteConfig::load(&mut loader);
        Config {
            dir,
            cache_size,
            max_age,
            log,
            events,
            disable,
            recache,
            build_scripts,
            build_script_cc,
            path_independent,
            remote,
            config_file: loader.config_file,
            warnings: loader.warnings,
        }
    }

    /// The rows of `rcache config`: env var, TOML key, value, source.
    pub fn rows(&self) -> Vec<(&'static str, &'static str, String, &Source)> {
        let show = |value: Option<String>| value.unwrap_or_else(|| "(unset)".into());
        let mut rows = vec![
            (
                DIR.env,
                DIR.toml,
                self.dir.value.display().to_string(),
                &self.dir.source,
            ),
            (
                CACHE_SIZE.env,
                CACHE_SIZE.toml,
                format_size(self.cache_size.value),
                &self.cache_size.source,
            ),
            (
                MAX_AGE.env,
                MAX_AGE.toml,
                show(
                    self.max_age
                        .value
                        .map(|age| humantime::format_duration(age).to_string()),
                ),
                &self.max_age.source,
            ),
            (
                LOG.env,
                LOG.toml,
                show(self.log.value.clone()),
                &self.log.source,
            ),
            (
                EVENTS.env,
                EVENTS.toml,
                show(self.events.value.as_ref().map(|p| p.display().to_string())),
                &self.events.source,
            ),
            (
                DISABLE.env,
                DISABLE.toml,
                self.disable.value.to_string(),
                &self.disable.source,
            ),
            (
                RECACHE.env,
                RECACHE.toml,
                self.recache.value.to_string(),
                &self.recache.source,
            ),
            (
                BUILD_SCRIPTS.env,
                BUILD_SCRIPTS.toml,
                if self.build_scripts.value {
                    "on"
                } else {
                    "off"
                }
                .to_string(),
                &self.build_scripts.source,
            ),
            (
                BUILD_SCRIPT_CC.env,
                BUILD_SCRIPT_CC.toml,
                if self.build_script_cc.value {
                    "on"
                } else {
                    "off"
                }
                .to_string(),
                &self.build_script_cc.source,
            ),
            (
                PATH_INDEPENDENT.env,
                PATH_INDEPENDENT.toml,
                if self.path_independent.value {
                    "on"
                } else {
                    "off"
                }
                .to_string(),
                &self.path_independent.source,
            ),
        ];
        rows.extend(self.remote.rows());
        rows
    }
}

/// The platform cache dir (`~/.cache/rcache` on Linux), or `.rcache` if there is none.
fn default_dir() -> PathBuf {
    dirs::cache_dir()
        .map(|dir| dir.join("rcache"))
        .unwrap_or_else(|| PathBuf::from(".rcache"))
}

/// `10G`, `500M`, `64K`, `1T`, plain bytes; binary units; an optional `iB`/`B` suffix.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text
        .strip_suffix("iB")
        .or_else(|| text.strip_suffix('B'))
        .unwrap_or(text);
    let (number, shift) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 10),
        'M' | 'm' => (&text[..text.len() - 1], 20),
        'G' | 'g' => (&text[..text.len() - 1], 30),
        'T' | 't' => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let number: f64 = number.trim().parse().ok()?;
    (number >= 0.0 && number.is_finite()).then(|| (number * (1u64 << shift) as f64) as u64)
}

/// A size in binary units, for people.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Config {
        let env: HashMap<String, OsString> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), OsString::from(value)))
            .collect();
        Config::load_from(move |name| env.get(name).cloned())
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("10G"), Some(10 << 30));
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("ten"), None);
    }

    #[test]
    fn env_wins_over_file_and_sources_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "cache_size = \"1G\"\ndir = \"/from/file\"\n").unwrap();
        let config = load(&[
            ("RCACHE_CONFIG", file.to_str().unwrap()),
            ("RCACHE_DIR", "/from/env"),
        ]);
        assert_eq!(config.dir.value, PathBuf::from("/from/env"));
        assert_eq!(config.dir.source, Source::Env("RCACHE_DIR"));
        assert_eq!(config.cache_size.value, 1 << 30);
        assert_eq!(config.cache_size.source, Source::File(file));
    }

    #[test]
    fn bad_values_keep_defaults_with_a_warning() {
        let config = load(&[("RCACHE_CACHE_SIZE", "lots"), ("RCACHE_DISABLE", "1")]);
        assert_eq!(config.cache_size.value, DEFAULT_CACHE_SIZE);
        assert_eq!(config.warnings.len(), 1);
        assert!(config.disable.value);
    }

    #[test]
    fn build_script_caching_is_on_unless_turned_off() {
        assert!(load(&[]).build_scripts.value);
        assert!(!load(&[("RCACHE_BUILD_SCRIPTS", "off")]).build_scripts.value);
        assert!(load(&[("RCACHE_BUILD_SCRIPTS", "on")]).build_scripts.value);
    }

    #[test]
    fn build_script_cc_routing_is_on_unless_turned_off() {
        assert!(load(&[]).build_script_cc.value);
        assert!(
            !load(&[("RCACHE_BUILD_SCRIPT_CC", "off")])
                .build_script_cc
                .value
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "build_script_cc = \"off\"\n").unwrap();
        let config = load(&[("RCACHE_CONFIG", file.to_str().unwrap())]);
        assert!(!config.build_script_cc.value);
        assert_eq!(config.build_script_cc.source, Source::File(file));
    }
}
