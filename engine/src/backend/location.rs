//! Repository locations: what a `-r/--repo` value and the `--option key=value` settings name, and
//! how a remote one becomes an OpenDAL operator. Parsing only: nothing here touches storage.
//!
//! Spellings (restic's where restic has one):
//! - a path, or `local:PATH`: a folder on a local file system;
//! - `s3:http://HOST:PORT/BUCKET[/PREFIX]`, `s3:https://...`: an S3-compatible server;
//! - `s3:HOST/BUCKET[/PREFIX]` (such as `s3:s3.amazonaws.com/BUCKET`): the same over HTTPS;
//! - `opendal:SCHEME`: any OpenDAL service compiled in, configured by `--option` settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// The OpenDAL services this build can store to, for `opendal:SCHEME` (and their names in errors).
pub const COMPILED_SERVICES: &[&str] = &["fs", "memory", "s3"];

/// A repository location: where its objects are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local filesystem.
    Local(PathBuf),
    /// An object store or other service reached through OpenDAL.
    Remote(Remote),
}

/// A location on a remote service: an OpenDAL scheme and its configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// OpenDAL's name of the service (`s3`, `fs`...).
    scheme: String,
    /// The location as the user wrote it (it holds no secret), for messages.
    text: String,
    /// The service's configuration, in OpenDAL's keys. May hold secrets: never printed.
    config: BTreeMap<String, String>,
    /// How cairn talks to it.
    pub settings: RemoteSettings,
}

/// Connection settings of a remote location (`--option connections=N`, `retries=N`, `timeout=SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSettings {
    /// Requests in flight at most (uploads of packs run this many at once).
    pub connections: usize,
    /// Retries of a request that failed in a way that may pass (a reset connection, a 5xx answer,
    /// a timeout), with exponential backoff and jitter.
    pub retries: usize,
    /// Longest wait for one request (a listing page, a stat, a deletion) or one transfer.
    pub timeout: Duration,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        Self { connections: 8, retries: 6, timeout: Duration::from_secs(120) }
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration may hold a secret key: show its keys only.
        f.debug_struct("Remote")
            .field("scheme", &self.scheme)
            .field("text", &self.text)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .field("settings", &self.settings)
            .finish()
    }
}

impl Remote {
    /// OpenDAL's name of the service.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The service configuration handed to OpenDAL.
    pub(crate) fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    /// The bucket, for an S3 location.
    pub fn bucket(&self) -> Option<&str> {
        (self.scheme == "s3").then(|| self.config.get("bucket").map(String::as_str)).flatten()
    }
}

impl Location {
    /// Parses a `-r/--repo` value with no `--option` settings.
    pub fn parse(s: &str) -> Result<Self> {
        Self::parse_with_options(s, &[])
    }

    /// Parses a `-r/--repo` value together with the `--option key=value` settings given with it.
    /// A plain path (or `local:PATH`) is a local directory.
    pub fn parse_with_options(s: &str, options: &[(String, String)]) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::invalid("the repository location is empty; set -r/--repo or CAIRN_REPOSITORY"));
        }
        let mut settings = RemoteSettings::default();
        let mut service = Vec::new();
        for (key, value) in options {
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| Error::invalid(format!("option {key}={value}: expected a whole number")))
            };
            match key.as_str() {
                "connections" => settings.connections = number()?.clamp(1, 256) as usize,
                "retries" => settings.retries = number()?.min(100) as usize,
                "timeout" => settings.timeout = Duration::from_secs(number()?.max(1)),
                _ => service.push((key.as_str(), value.as_str())),
            }
        }
        match scheme_of(s) {
            Some("s3") => parse_s3(s, &s["s3:".len()..], &service, settings),
            Some("opendal") => parse_opendal(s, &s["opendal:".len()..], &service, settings),
            Some(scheme) => Err(Error::invalid(format!(
                "repository location '{s}': '{scheme}:' locations are not supported; use a local folder (a path or \
                 local:PATH), s3:http(s)://HOST/BUCKET[/PREFIX], or opendal:SCHEME with one of the services built \
                 in ({})",
                COMPILED_SERVICES.join(", ")
            ))),
            None => {
                if let Some((key, _)) = service.first() {
                    return Err(Error::invalid(format!(
                        "option '{key}' does not apply to a local folder (only connections, retries and timeout do, \
                         and only to remote locations)"
                    )));
                }
                let path = s.strip_prefix("local:").unwrap_or(s);
                let path = std::path::absolute(path).map_err(|e| Error::io(format!("resolving {path}"), e))?;
                Ok(Location::Local(path))
            }
        }
    }
}

/// The scheme of a location such as `s3:bucket/path` or `sftp:host:/path`: a `scheme:` prefix of two
/// or more letters, digits, `+`, `-` or `.` (starting with a letter), other than `local`. Such a
/// location must never be taken for a local folder named `s3:...`. (A path meant literally can be
/// written `./s3:...` or `local:s3:...`.)
fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let well_formed = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (well_formed && scheme != "local").then_some(scheme)
}

/// `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]` or `s3:HOST/BUCKET[/PREFIX]` (HTTPS).
fn parse_s3(text: &str, rest: &str, options: &[(&str, &str)], settings: RemoteSettings) -> Result<Location> {
    let usage = || {
        Error::invalid(format!(
            "repository location '{text}': expected s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] or s3:HOST/BUCKET[/PREFIX]"
        ))
    };
    let (protocol, rest) = match rest.split_once("://") {
        Some((p @ ("http" | "https"), rest)) => (p, rest),
        Some(_) => return Err(usage()),
        None => ("https", rest),
    };
    let (host, path) = rest.split_once('/').ok_or_else(usage)?;
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if host.is_empty() || bucket.is_empty() {
        return Err(usage());
    }
    let mut config = BTreeMap::new();
    config.insert("endpoint".to_owned(), format!("{protocol}://{host}"));
    config.insert("bucket".to_owned(), bucket.to_owned());
    config.insert("root".to_owned(), format!("/{}", prefix.trim_matches('/')));
    // Amazon prefers virtual-host-style addressing; most other servers (MinIO, SeaweedFS, Ceph) are
    // reached by path (restic's and the AWS tools' defaults alike).
    let mut path_style = !host.ends_with("amazonaws.com");
    for &(key, value) in options {
        match key {
            "s3.path-style" => {
                path_style = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(Error::invalid(format!("option s3.path-style={value}: expected true or false"))),
                }
            }
            "s3.region" => {
                config.insert("region".to_owned(), value.to_owned());
            }
            // Any other setting of OpenDAL's S3 service, by its own name (s3.default_storage_class=...).
            _ => match key.strip_prefix("s3.") {
                Some(k) if !k.is_empty() => {
                    config.insert(k.to_owned(), value.to_owned());
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "option '{key}' does not apply to an s3: location (use s3.path-style, s3.region, \
                         s3.<OpenDAL S3 setting>, connections, retries or timeout)"
                    )));
                }
            },
        }
    }
    if !path_style {
        config.insert("enable_virtual_host_style".to_owned(), "true".to_owned());
    }
    // As restic: without a region anywhere, us-east-1 (which S3-compatible servers accept).
    if !config.contains_key("region") && ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().all(|v| env_unset(v)) {
        config.insert("region".to_owned(), "us-east-1".to_owned());
    }
    let text = text.trim_end_matches('/').to_owned();
    Ok(Location::Remote(Remote { scheme: "s3".to_owned(), text, config, settings }))
}

fn env_unset(name: &str) -> bool {
    std::env::var_os(name).is_none_or(|v| v.is_empty())
}

/// `opendal:SCHEME`, configured only by options (OpenDAL's own keys for that service).
fn parse_opendal(text: &str, scheme: &str, options: &[(&str, &str)], settings: RemoteSettings) -> Result<Location> {
    if !COMPILED_SERVICES.contains(&scheme) {
        return Err(Error::invalid(format!(
            "repository location '{text}': the OpenDAL service '{scheme}' is not built into this cairn (built in: {})",
            COMPILED_SERVICES.join(", ")
        )));
    }
    let config = options.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
    Ok(Location::Remote(Remote { scheme: scheme.to_owned(), text: text.to_owned(), config, settings }))
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Remote(r) => match r.config.get("root").filter(|_| r.scheme != "s3") {
                // opendal:SCHEME says little by itself; its root tells which repository.
                Some(root) => write!(f, "{} (root {root})", r.text),
                None => f.write_str(&r.text),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn remote(s: &str, options: &[(&str, &str)]) -> Remote {
        match Location::parse_with_options(s, &opts(options)) {
            Ok(Location::Remote(r)) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn locations_with_a_scheme_cairn_cannot_store_to_are_refused() {
        for s in ["sftp:host:/srv", "rest:http://x/", "b2:b", "azure:c", "s3+x.y-z:p"] {
            let e = Location::parse(s).expect_err(s);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("not supported") && e.to_string().contains("fs, memory, s3"), "{e}");
        }
        for s in ["/srv/repo", "repo", "./s3:bucket", "local:s3:bucket", "local:/srv/repo", "c:repo", "a b:c", "9p:x"] {
            assert!(matches!(Location::parse(s), Ok(Location::Local(_))), "{s}");
        }
        assert_eq!(Location::parse("local:/srv/repo").ok(), Some(Location::Local(PathBuf::from("/srv/repo"))));
        let e = Location::parse("opendal:sftp").expect_err("not compiled in");
        assert!(e.to_string().contains("not built into"), "{e}");
    }

    #[test]
    fn s3_locations_name_endpoint_bucket_and_prefix() {
        let r = remote("s3:http://127.0.0.1:8333/bucket/some/prefix/", &[]);
        assert_eq!(r.config["endpoint"], "http://127.0.0.1:8333");
        assert_eq!(r.config["bucket"], "bucket");
        assert_eq!(r.config["root"], "/some/prefix");
        assert!(!r.config.contains_key("enable_virtual_host_style"));
        assert_eq!(r.bucket(), Some("bucket"));
        assert_eq!(Location::Remote(r).to_string(), "s3:http://127.0.0.1:8333/bucket/some/prefix");

        let r = remote("s3:s3.amazonaws.com/b", &[]);
        assert_eq!(r.config["endpoint"], "https://s3.amazonaws.com");
        assert_eq!(r.config["root"], "/");
        assert_eq!(r.config["enable_virtual_host_style"], "true");

        let r = remote("s3:https://minio.example:9000/b", &[("s3.path-style", "false"), ("connections", "3")]);
        assert_eq!(r.config["enable_virtual_host_style"], "true");
        assert_eq!(r.settings.connections, 3);

        for bad in ["s3:", "s3:host", "s3:http://host", "s3:http://host/", "s3:ftp://h/b"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        assert!(Location::parse_with_options("s3:h/b", &opts(&[("bogus", "1")])).is_err());
        assert!(Location::parse_with_options("/srv/repo", &opts(&[("s3.region", "x")])).is_err());
    }

    #[test]
    fn secrets_given_as_options_never_show() {
        let r = remote("opendal:s3", &[("bucket", "b"), ("secret_access_key", "hunter2")]);
        assert!(!format!("{r:?}").contains("hunter2"));
        assert!(!Location::Remote(r).to_string().contains("hunter2"));
    }
}
