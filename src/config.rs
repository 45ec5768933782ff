//! Settings from the environment and the TOML config file, each with where its value came from.
//!
//! Precedence: environment, then `$RCACHE_CONFIG` (or `~/.config/rcache/config.toml`), then the
//! default. Loading never fails: a bad value keeps the default and leaves a warning, because the
//! wrapper must not break a build over a typo (`rcache config` shows the warnings).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Cache build-script runs (DESIGN.md §6b); `off` leaves every run to cargo.
    pub build_scripts: Setting<bool>,
    /// The config file consulted, and whether it exists.
    pub config_file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

/// One row of the settings table: env var, TOML key.
struct Names {
    env: &'static str,
    toml: &'static str,
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

impl Config {
    /// Loads the settings from the process environment.
    pub fn load() -> Config {
        Self::load_from(|name| std::env::var_os(name))
    }

    /// Loads the settings with `env` standing in for the environment (for tests).
    pub fn load_from(env: impl Fn(&str) -> Option<OsString>) -> Config {
        let mut warnings = Vec::new();
        let config_file = env("RCACHE_CONFIG")
            .map(PathBuf::from)
            .or_else(|| dirs::config_dir().map(|dir| dir.join("rcache/config.toml")));
        let table = config_file
            .as_ref()
            .and_then(|path| match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<toml::Table>() {
                    Ok(table) => Some(table),
                    Err(err) => {
                        warnings.push(format!("{}: {err}", path.display()));
                        None
                    }
                },
                Err(_) => None,
            })
            .unwrap_or_default();
        let file_source = || Source::File(config_file.clone().unwrap_or_default());

        // A raw value from the env (as a string) or from the file (as a TOML value).
        let raw = |names: &Names| -> Option<(String, Source)> {
            if let Some(value) = env(names.env) {
                return Some((value.to_string_lossy().into_owned(), Source::Env(names.env)));
            }
            let value = table.get(names.toml)?;
            let text = match value {
                toml::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some((text, file_source()))
        };

        let mut parsed =
            |names: &Names, parse: &dyn Fn(&str) -> Option<()>| -> Option<(String, Source)> {
                let (text, source) = raw(names)?;
                if parse(&text).is_none() {
                    warnings.push(format!(
                        "{} = {text:?} from {source} is invalid; using the default",
                        names.env
                    ));
                    return None;
                }
                Some((text, source))
            };

        let dir = match parsed(&DIR, &|_| Some(())) {
            Some((text, source)) => Setting {
                value: PathBuf::from(text),
                source,
            },
            None => Setting {
                value: default_dir(),
                source: Source::Default,
            },
        };
        let cache_size = match parsed(&CACHE_SIZE, &|text| parse_size(text).map(|_| ())) {
            Some((text, source)) => Setting {
                value: parse_size(&text).unwrap_or(DEFAULT_CACHE_SIZE),
                source,
            },
            None => Setting {
                value: DEFAULT_CACHE_SIZE,
                source: Source::Default,
            },
        };
        let max_age = match parsed(&MAX_AGE, &|text| {
            humantime::parse_duration(text).ok().map(|_| ())
        }) {
            Some((text, source)) => Setting {
                value: humantime::parse_duration(&text).ok(),
                source,
            },
            None => Setting {
                value: None,
                source: Source::Default,
            },
        };
        let log = match parsed(&LOG, &|_| Some(())) {
            Some((text, source)) => Setting {
                value: Some(text),
                source,
            },
            None => Setting {
                value: None,
                source: Source::Default,
            },
        };
        let events = match parsed(&EVENTS, &|text| (!text.is_empty()).then_some(())) {
            Some((text, source)) => Setting {
                value: Some(PathBuf::from(text)),
                source,
            },
            None => Setting {
                value: None,
                source: Source::Default,
            },
        };
        let flag = |parsed: Option<(String, Source)>, default: bool| match parsed {
            Some((text, source)) => Setting {
                value: parse_bool(&text).unwrap_or(default),
                source,
            },
            None => Setting {
                value: default,
                source: Source::Default,
            },
        };
        let is_bool = |text: &str| parse_bool(text).map(|_| ());
        let disable = flag(parsed(&DISABLE, &is_bool), false);
        let recache = flag(parsed(&RECACHE, &is_bool), false);
        let build_scripts = flag(parsed(&BUILD_SCRIPTS, &is_bool), true);

        Config {
            dir,
            cache_size,
            max_age,
            log,
            events,
            disable,
            recache,
            build_scripts,
            config_file,
            warnings,
        }
    }

    /// The rows of `rcache config`: env var, TOML key, value, source.
    pub fn rows(&self) -> Vec<(&'static str, &'static str, String, &Source)> {
        let show = |value: Option<String>| value.unwrap_or_else(|| "(unset)".into());
        vec![
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
        ]
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

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "" | "0" | "false" | "no" | "off" => Some(false),
        _ => None,
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
}
