//! Reading one setting: the environment first, then the TOML file, then the default, with a
//! warning (and the default) for a value that does not parse.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Setting, Source};

/// One row of the settings table: env var, TOML key.
pub(crate) struct Names {
    pub env: &'static str,
    pub toml: &'static str,
}

/// The sources of settings, and the warnings met while reading them.
pub(crate) struct Loader<'e> {
    env: &'e dyn Fn(&str) -> Option<OsString>,
    table: toml::Table,
    pub config_file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

impl<'e> Loader<'e> {
    /// Reads the config file (`$RCACHE_CONFIG`, else `~/.config/rcache/config.toml`); a file
    /// that does not parse leaves a warning and no values.
    pub fn new(env: &'e dyn Fn(&str) -> Option<OsString>) -> Self {
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
        Loader {
            env,
            table,
            config_file,
            warnings,
        }
    }

    /// A raw value from the env (as a string) or from the file (a TOML value as text).
    fn raw(&self, names: &Names) -> Option<(String, Source)> {
        if let Some(value) = (self.env)(names.env) {
            return Some((value.to_string_lossy().into_owned(), Source::Env(names.env)));
        }
        let value = self.table.get(names.toml)?;
        let text = match value {
            toml::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Some((
            text,
            Source::File(self.config_file.clone().unwrap_or_default()),
        ))
    }

    /// The setting parsed by `parse`, or `None` when it is not set or does not parse (with a
    /// warning).
    pub fn parsed<T>(
        &mut self,
        names: &Names,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<Setting<T>> {
        let (text, source) = self.raw(names)?;
        match parse(&text) {
            Some(value) => Some(Setting { value, source }),
            None => {
                self.warnings.push(format!(
                    "{} = {text:?} from {source} is invalid; using the default",
                    names.env
                ));
                None
            }
        }
    }

    /// The setting parsed by `parse`, else `default`.
    pub fn or<T>(
        &mut self,
        names: &Names,
        parse: impl Fn(&str) -> Option<T>,
        default: T,
    ) -> Setting<T> {
        self.parsed(names, parse).unwrap_or(Setting {
            value: default,
            source: Source::Default,
        })
    }

    /// An optional setting: `None` unless set and valid.
    pub fn optional<T>(
        &mut self,
        names: &Names,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Setting<Option<T>> {
        match self.parsed(names, parse) {
            Some(setting) => Setting {
                value: Some(setting.value),
                source: setting.source,
            },
            None => Setting {
                value: None,
                source: Source::Default,
            },
        }
    }

    /// A boolean setting (`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`).
    pub fn flag(&mut self, names: &Names, default: bool) -> Setting<bool> {
        self.or(names, parse_bool, default)
    }
}

pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "" | "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Any text that is not empty.
pub(crate) fn non_empty(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.trim().to_string())
}

/// A humantime duration (`5s`, `500ms`, `2m`).
pub(crate) fn duration(text: &str) -> Option<std::time::Duration> {
    humantime::parse_duration(text.trim()).ok()
}
