//! The cargo directives a build script printed on stdout, as far as caching its run needs them:
//! the inputs it declared, and the paths it handed to the link of its package.
//!
//! Both syntaxes are read: `cargo::key=value` (cargo 1.77+) and the older `cargo:key=value`.

/// What one run declared.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// `rerun-if-changed` paths, as printed (relative to the package dir, or absolute).
    pub rerun_if_changed: Vec<String>,
    /// `rerun-if-env-changed` variable names.
    pub rerun_if_env_changed: Vec<String>,
    /// `rustc-link-search` paths, without their `KIND=`.
    pub link_search: Vec<String>,
}

impl Directives {
    /// Parses a script's stdout. Lines that are not directives are ignored, as cargo does.
    pub fn parse(stdout: &[u8]) -> Directives {
        let mut directives = Directives::default();
        for line in stdout.split(|&byte| byte == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let line = line.trim_end_matches('\r');
            let Some(rest) = line
                .strip_prefix("cargo::")
                .or_else(|| line.strip_prefix("cargo:"))
            else {
                continue;
            };
            let Some((key, value)) = rest.split_once('=') else {
                continue;
            };
            let value = value.trim().to_string();
            match key.trim() {
                "rerun-if-changed" => directives.rerun_if_changed.push(value),
                "rerun-if-env-changed" => directives.rerun_if_env_changed.push(value),
                "rustc-link-search" => {
                    let path = match value.split_once('=') {
                        Some((kind, path)) if LINK_SEARCH_KINDS.contains(&kind) => path,
                        _ => value.as_str(),
                    };
                    directives.link_search.push(path.to_string());
                }
                _ => {}
            }
        }
        directives
    }

    /// A run that declared no input depends on every file of its package (cargo's rule).
    pub fn declares_nothing(&self) -> bool {
        self.rerun_if_changed.is_empty() && self.rerun_if_env_changed.is_empty()
    }
}

/// The `KIND=` prefixes of `rustc-link-search`.
const LINK_SEARCH_KINDS: [&str; 5] = ["dependency", "crate", "native", "framework", "all"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_syntaxes_and_ignores_other_lines() {
        let stdout = b"cargo:rerun-if-changed=build.rs\n\
            cargo::rerun-if-changed=src/a b.c\r\n\
            cargo:rerun-if-env-changed=CC\n\
            cargo:rustc-link-search=native=/t/out\n\
            cargo::rustc-link-search=/usr/lib\n\
            cargo:rustc-link-lib=static=foo\n\
            cargo:include=/t/out/include\n\
            hello from the script\n";
        let directives = Directives::parse(stdout);
        assert_eq!(directives.rerun_if_changed, ["build.rs", "src/a b.c"]);
        assert_eq!(directives.rerun_if_env_changed, ["CC"]);
        assert_eq!(directives.link_search, ["/t/out", "/usr/lib"]);
        assert!(!directives.declares_nothing());
        assert!(Directives::parse(b"cargo:rustc-cfg=foo\n").declares_nothing());
    }

    #[test]
    fn env_only_declarations_turn_off_the_package_default() {
        assert!(!Directives::parse(b"cargo:rerun-if-env-changed=CC\n").declares_nothing());
    }
}
