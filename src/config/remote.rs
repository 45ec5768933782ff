//! The remote storage settings (README.md "Remote storage"): where the remote is, how to reach
//! it, and how rcache behaves towards it. Parsing only; `crate::remote` connects.

use std::fmt;
use std::time::Duration;

use super::Setting;
use super::loader::{Loader, Names, duration, non_empty, parse_bool};

/// Default per-request timeout.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(5);
/// The connect timeout is this, or the request timeout if shorter.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time every process skips the remote after a failure.
pub const DEFAULT_REMOTE_BACKOFF: Duration = Duration::from_secs(60);
/// After this many remote lookups of one build that all missed, the build stops asking
/// (`crate::remote::cold`). Measured in benches/README.md ("A cold build: eight lookups, not
/// 32"): on a 30 ms link 32 missed lookups put 1.2 s on a webrender build's critical path.
pub const DEFAULT_REMOTE_COLD_AFTER: u64 = 8;

/// Where the remote is.
#[derive(Clone, PartialEq, Eq)]
pub enum RemoteLocation {
    /// `s3://bucket/prefix`: objects under `prefix/` (which may be empty) in `bucket`.
    S3 { bucket: String, prefix: String },
    /// `redis://...` or `rediss://...` (TLS), passed to the client as written.
    Redis { url: String },
}

impl RemoteLocation {
    pub fn parse(text: &str) -> Option<RemoteLocation> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return None;
            }
            return Some(RemoteLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if text.starts_with("redis://") || text.starts_with("rediss://") {
            return Some(RemoteLocation::Redis {
                url: text.to_string(),
            });
        }
        None
    }
}

/// Shown with any password masked: `redis://user:***@host:6379/0`.
impl fmt::Display for RemoteLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            RemoteLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RemoteLocation::Redis { url } => f.write_str(&mask_password(url)),
        }
    }
}

impl fmt::Debug for RemoteLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Replaces the password of a URL's userinfo with `***`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// A secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(set, hidden)")
    }
}

/// When a store's entry is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// Queued; a detached uploader publishes it (the compile's process does not wait).
    Background,
    /// Published by the compile's own process before it exits.
    Sync,
}

impl UploadMode {
    fn parse(text: &str) -> Option<UploadMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "background" | "detached" => Some(UploadMode::Background),
            "sync" | "synchronous" => Some(UploadMode::Sync),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            UploadMode::Background => "background",
            UploadMode::Sync => "sync",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub location: Setting<Option<RemoteLocation>>,
    pub s3_endpoint: Setting<Option<String>>,
    pub s3_region: Setting<Option<String>>,
    /// `None`: path style when an endpoint is set, virtual-hosted style for AWS.
    pub s3_path_style: Setting<Option<bool>>,
    pub readonly: Setting<bool>,
    /// The shared secret that signs entries.
    pub key: Setting<Option<Secret>>,
    pub timeout: Setting<Duration>,
    pub backoff: Setting<Duration>,
    pub upload: Setting<UploadMode>,
    /// Whether a remote hit starts the prefetcher (`crate::remote::prefetch`).
    pub prefetch: Setting<bool>,
    /// A build whose first this many lookups all missed stops asking; 0: never stops.
    pub cold_after: Setting<u64>,
}

pub(crate) const REMOTE: Names = Names {
    env: "RCACHE_REMOTE",
    toml: "remote",
};
const S3_ENDPOINT: Names = Names {
    env: "RCACHE_S3_ENDPOINT",
    toml: "s3_endpoint",
};
const S3_REGION: Names = Names {
    env: "RCACHE_S3_REGION",
    toml: "s3_region",
};
const S3_PATH_STYLE: Names = Names {
    env: "RCACHE_S3_PATH_STYLE",
    toml: "s3_path_style",
};
const REMOTE_READONLY: Names = Names {
    env: "RCACHE_REMOTE_READONLY",
    toml: "remote_readonly",
};
const REMOTE_KEY: Names = Names {
    env: "RCACHE_REMOTE_KEY",
    toml: "remote_key",
};
const REMOTE_TIMEOUT: Names = Names {
    env: "RCACHE_REMOTE_TIMEOUT",
    toml: "remote_timeout",
};
const REMOTE_BACKOFF: Names = Names {
    env: "RCACHE_REMOTE_BACKOFF",
    toml: "remote_backoff",
};
const REMOTE_COLD_AFTER: Names = Names {
    env: "RCACHE_REMOTE_COLD_AFTER",
    toml: "remote_cold_after",
};
const REMOTE_PREFETCH: Names = Names {
    env: "RCACHE_REMOTE_PREFETCH",
    toml: "remote_prefetch",
};
const REMOTE_UPLOAD: Names = Names {
    env: "RCACHE_REMOTE_UPLOAD",
    toml: "remote_upload",
};

impl RemoteConfig {
    pub(crate) fn load(loader: &mut Loader) -> RemoteConfig {
        let positive = |text: &str| duration(text).filter(|value| !value.is_zero());
        RemoteConfig {
            location: loader.optional(&REMOTE, RemoteLocation::parse),
            s3_endpoint: loader.optional(&S3_ENDPOINT, non_empty),
            s3_region: loader.optional(&S3_REGION, non_empty),
            s3_path_style: loader.optional(&S3_PATH_STYLE, parse_bool),
            readonly: loader.flag(&REMOTE_READONLY, false),
            key: loader.optional(&REMOTE_KEY, |text| non_empty(text).map(Secret)),
            timeout: loader.or(&REMOTE_TIMEOUT, positive, DEFAULT_REMOTE_TIMEOUT),
            backoff: loader.or(&REMOTE_BACKOFF, duration, DEFAULT_REMOTE_BACKOFF),
            upload: loader.or(&REMOTE_UPLOAD, UploadMode::parse, UploadMode::Background),
            prefetch: loader.flag(&REMOTE_PREFETCH, true),
            cold_after: loader.or(
                &REMOTE_COLD_AFTER,
                |text| text.trim().parse().ok(),
                DEFAULT_REMOTE_COLD_AFTER,
            ),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        self.timeout.value.min(MAX_CONNECT_TIMEOUT)
    }

    /// Rows for `rcache config`: env var, TOML key, value (secrets masked), source.
    pub(crate) fn rows(&self) -> Vec<(&'static str, &'static str, String, &super::Source)> {
        let show = |value: Option<String>| value.unwrap_or_else(|| "(unset)".into());
        let seconds = |value: Duration| humantime::format_duration(value).to_string();
        vec![
            (
                REMOTE.env,
                REMOTE.toml,
                show(self.location.value.as_ref().map(ToString::to_string)),
                &self.location.source,
            ),
            (
                S3_ENDPOINT.env,
                S3_ENDPOINT.toml,
                show(self.s3_endpoint.value.clone()),
                &self.s3_endpoint.source,
            ),
            (
                S3_REGION.env,
                S3_REGION.toml,
                show(self.s3_region.value.clone()),
                &self.s3_region.source,
            ),
            (
                S3_PATH_STYLE.env,
                S3_PATH_STYLE.toml,
                match self.s3_path_style.value {
                    Some(value) => value.to_string(),
                    None => "(auto: on with an endpoint)".into(),
                },
                &self.s3_path_style.source,
            ),
            (
                REMOTE_READONLY.env,
                REMOTE_READONLY.toml,
                self.readonly.value.to_string(),
                &self.readonly.source,
            ),
            (
                REMOTE_PREFETCH.env,
                REMOTE_PREFETCH.toml,
                self.prefetch.value.to_string(),
                &self.prefetch.source,
            ),
            (
                REMOTE_COLD_AFTER.env,
                REMOTE_COLD_AFTER.toml,
                self.cold_after.value.to_string(),
                &self.cold_after.source,
            ),
            (
                REMOTE_KEY.env,
                REMOTE_KEY.toml,
                show(self.key.value.as_ref().map(|_| "(set, hidden)".into())),
                &self.key.source,
            ),
            (
                REMOTE_TIMEOUT.env,
                REMOTE_TIMEOUT.toml,
                seconds(self.timeout.value),
                &self.timeout.source,
            ),
            (
                REMOTE_BACKOFF.env,
                REMOTE_BACKOFF.toml,
                seconds(self.backoff.value),
                &self.backoff.source,
            ),
            (
                REMOTE_UPLOAD.env,
                REMOTE_UPLOAD.toml,
                self.upload.value.name().to_string(),
                &self.upload.source,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_show_without_secrets() {
        assert_eq!(
            RemoteLocation::parse("s3://bucket/some/prefix/"),
            Some(RemoteLocation::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            })
        );
        assert_eq!(
            RemoteLocation::parse("s3://bucket"),
            Some(RemoteLocation::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(RemoteLocation::parse("s3:///x"), None);
        assert_eq!(RemoteLocation::parse("http://x"), None);
        let redis = RemoteLocation::parse("rediss://me:hunter2@cache.example:6380/3").unwrap();
        assert_eq!(redis.to_string(), "rediss://me:***@cache.example:6380/3");
        assert_eq!(format!("{redis:?}"), "rediss://me:***@cache.example:6380/3");
        let no_user = RemoteLocation::parse("redis://:hunter2@h:6379/0").unwrap();
        assert_eq!(no_user.to_string(), "redis://:***@h:6379/0");
        let plain = RemoteLocation::parse("redis://127.0.0.1:6379/0").unwrap();
        assert_eq!(plain.to_string(), "redis://127.0.0.1:6379/0");
        assert_eq!(format!("{:?}", Secret("k".into())), "(set, hidden)");
    }
}
