//! The host's `registries.conf` (containers-registries.conf(5)), read as
//! containers/image (and so bootc, podman and skopeo) reads it:
//!
//! - mirrors, for the agent's own reads of the document, so that a
//!   disconnected site that mirrors the images for its hosts gets the
//!   document from the same mirror;
//! - registries marked `insecure = true` (or listed under the old
//!   `[registries.insecure]`), which every command reaches over plain HTTP
//!   without a `--insecure-registry` flag.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    registry: Vec<RawRegistry>,
    /// The version 1 format's tables (`[registries.insecure]`).
    #[serde(default)]
    registries: Option<RawVersion1>,
}

#[derive(Debug, Default, Deserialize)]
struct RawVersion1 {
    #[serde(default)]
    insecure: Option<RawVersion1List>,
}

#[derive(Debug, Default, Deserialize)]
struct RawVersion1List {
    #[serde(default)]
    registries: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Debug, Deserialize)]
struct RawMirror {
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(rename = "pull-from-mirror")]
    pull_from_mirror: Option<String>,
}

/// One mirror of a registry or namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// Where it is (`host[:port][/path]`).
    pub location: String,
    /// Reached over plain HTTP.
    pub insecure: bool,
    /// Only used for pulls by digest (`pull-from-mirror = "digest-only"`).
    pub digest_only: bool,
}

/// A `[[registry]]` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    prefix: String,
    location: String,
    /// The location is reached over plain HTTP.
    insecure: bool,
    mirrors: Vec<Mirror>,
}

/// Why the host's `registries.conf` could not be read. The message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistriesConfError {
    /// The file exists but could not be read.
    #[error("{file}: {error}")]
    Read {
        /// The file.
        file: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file is not TOML of the `registries.conf` shape.
    #[error("{file}: {error}")]
    Syntax {
        /// The file.
        file: String,
        /// What does not parse.
        error: toml::de::Error,
    },
    /// A `[[registry]]` entry says neither what it covers nor where it is.
    #[error("{file}: registry[{index}] has neither `prefix` nor `location`")]
    NoPrefix {
        /// The file.
        file: String,
        /// The entry's index in the file.
        index: usize,
    },
}

impl RegistriesConfError {
    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistriesConfError::Read { .. } => "read",
            RegistriesConfError::Syntax { .. } => "syntax",
            RegistriesConfError::NoPrefix { .. } => "no_prefix",
        }
    }
}

/// The environment variable that names another main file, as containers
/// tools honour it.
pub const REGISTRIES_CONF_ENV: &str = "CONTAINERS_REGISTRIES_CONF";

/// The registries configured on the host: mirrors and insecure registries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistriesConf {
    entries: Vec<Entry>,
    /// Hosts of the version 1 `[registries.insecure]` list.
    insecure_v1: Vec<String>,
}

impl RegistriesConf {
    /// The host's files under `root`, as the agent (a system service) reads
    /// them: `etc/containers/registries.conf`, then
    /// `etc/containers/registries.conf.d/*.conf` in name order. A later entry
    /// for the same prefix replaces an earlier one; missing files mean none.
    pub fn load(root: &Path) -> Result<RegistriesConf, RegistriesConfError> {
        let base = root.join("etc/containers");
        RegistriesConf::load_files(
            &base.join("registries.conf"),
            &[base.join("registries.conf.d")],
        )
    }

    /// The files a user's containers tools read: `$CONTAINERS_REGISTRIES_CONF`
    /// if set, else `~/.config/containers/registries.conf` if it exists, else
    /// `/etc/containers/registries.conf`; then the drop-ins of
    /// `/etc/containers/registries.conf.d` and `~/.config/containers/registries.conf.d`.
    pub fn load_for_user() -> Result<RegistriesConf, RegistriesConfError> {
        let (main, dropins) = user_files(
            std::env::var_os(REGISTRIES_CONF_ENV).map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
            Path::new("/"),
        );
        RegistriesConf::load_files(&main, &dropins)
    }

    /// `main`, then each directory's `*.conf` files in name order.
    fn load_files(
        main: &Path,
        dropin_dirs: &[PathBuf],
    ) -> Result<RegistriesConf, RegistriesConfError> {
        let mut files = vec![main.to_path_buf()];
        for dir in dropin_dirs {
            if let Ok(entries) = std::fs::read_dir(dir) {
                let mut fragments: Vec<_> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                    .collect();
                fragments.sort();
                files.extend(fragments);
            }
        }
        let mut mirrors = RegistriesConf::default();
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(RegistriesConfError::Read {
                        file: file.display().to_string(),
                        error,
                    });
                }
            };
            mirrors.add(&text, &file.display().to_string())?;
        }
        Ok(mirrors)
    }

    /// Add the entries of one file's text; `source` names it in errors.
    pub fn add(&mut self, text: &str, source: &str) -> Result<(), RegistriesConfError> {
        let raw: RawFile = toml::from_str(text).map_err(|error| RegistriesConfError::Syntax {
            file: source.to_string(),
            error,
        })?;
        if let Some(list) = raw.registries.and_then(|r| r.insecure) {
            self.insecure_v1 = list.registries;
        }
        for (index, registry) in raw.registry.into_iter().enumerate() {
            let Some(prefix) = registry.prefix.or(registry.location.clone()) else {
                return Err(RegistriesConfError::NoPrefix {
                    file: source.to_string(),
                    index,
                });
            };
            let prefix = prefix.trim_end_matches('/').to_string();
            let location = registry
                .location
                .unwrap_or_else(|| prefix.clone())
                .trim_end_matches('/')
                .to_string();
            let mirrors = registry
                .mirror
                .into_iter()
                .map(|m| Mirror {
                    location: m.location.trim_end_matches('/').to_string(),
                    insecure: m.insecure,
                    digest_only: m.pull_from_mirror.as_deref() == Some("digest-only"),
                })
                .collect();
            self.entries.retain(|e| e.prefix != prefix);
            self.entries.push(Entry {
                prefix,
                location,
                insecure: registry.insecure,
                mirrors,
            });
        }
        Ok(())
    }

    /// Repositories to read a tag of `repository` from, in order: its mirrors
    /// (except digest-only ones), then its own (possibly relocated) place.
    pub fn for_tag(&self, repository: &str) -> Vec<String> {
        let Some(entry) = self
            .entries
            .iter()
            .filter(|e| matches_prefix(repository, &e.prefix))
            .max_by_key(|e| e.prefix.len())
        else {
            return vec![repository.to_string()];
        };
        let rest = &repository[entry.prefix.len()..];
        entry
            .mirrors
            .iter()
            .filter(|m| !m.digest_only)
            .map(|m| format!("{}{rest}", m.location))
            .chain(std::iter::once(format!("{}{rest}", entry.location)))
            .collect()
    }

    /// Hosts (`host[:port]`, or a `*.domain` pattern) configured as insecure:
    /// registries and mirrors with `insecure = true`, and the version 1
    /// `[registries.insecure]` list. Cairn reaches them over plain HTTP.
    pub fn insecure_hosts(&self) -> Vec<String> {
        let registries = self
            .entries
            .iter()
            .filter(|e| e.insecure)
            .map(|e| e.location.as_str());
        let mirrors = self
            .entries
            .iter()
            .flat_map(|e| &e.mirrors)
            .filter(|m| m.insecure)
            .map(|m| m.location.as_str());
        let mut hosts: Vec<String> = Vec::new();
        for location in registries
            .chain(mirrors)
            .chain(self.insecure_v1.iter().map(String::as_str))
        {
            let host = location.split('/').next().unwrap_or_default().to_string();
            if !host.is_empty() && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }
}

/// The main file and drop-in directories a user's containers tools read:
/// `env` is `$CONTAINERS_REGISTRIES_CONF`, `home` is `$HOME`, `root` is `/`
/// except in tests.
fn user_files(env: Option<PathBuf>, home: Option<PathBuf>, root: &Path) -> (PathBuf, Vec<PathBuf>) {
    let user = home.map(|h| h.join(".config/containers"));
    let main = match (env, &user) {
        (Some(path), _) => path,
        (None, Some(user)) if user.join("registries.conf").exists() => user.join("registries.conf"),
        _ => root.join("etc/containers/registries.conf"),
    };
    let mut dropins = vec![root.join("etc/containers/registries.conf.d")];
    dropins.extend(user.map(|u| u.join("registries.conf.d")));
    (main, dropins)
}

/// A prefix matches whole path components only: `quay.io/fedora` covers
/// `quay.io/fedora/x` but not `quay.io/fedorax`.
fn matches_prefix(repository: &str, prefix: &str) -> bool {
    repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["registry.fedoraproject.org"]

[[registry]]
prefix = "quay.io/fedora"
location = "quay.io/fedora"
[[registry.mirror]]
location = "mirror.example.net:5000/fedora"
insecure = true
[[registry.mirror]]
location = "digests.example.net/fedora"
pull-from-mirror = "digest-only"

[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "whole.example.net"
"#;

    #[test]
    fn longest_prefix_wins_and_digest_only_mirrors_are_skipped_for_tags() {
        let mut mirrors = RegistriesConf::default();
        mirrors.add(CONF, "registries.conf").expect("parses");
        assert_eq!(
            mirrors.for_tag("quay.io/fedora/fedora-coreos"),
            vec![
                "mirror.example.net:5000/fedora/fedora-coreos".to_string(),
                "quay.io/fedora/fedora-coreos".to_string()
            ]
        );
        assert_eq!(
            mirrors.for_tag("quay.io/fedorax/os"),
            vec![
                "whole.example.net/fedorax/os".to_string(),
                "quay.io/fedorax/os".to_string()
            ]
        );
        assert_eq!(
            mirrors.for_tag("ghcr.io/a/b"),
            vec!["ghcr.io/a/b".to_string()]
        );
        assert_eq!(
            mirrors.insecure_hosts(),
            vec!["mirror.example.net:5000".to_string()]
        );
    }

    #[test]
    fn insecure_registries_come_from_entries_mirrors_and_the_old_list() {
        let mut conf = RegistriesConf::default();
        conf.add(
            r#"
[[registry]]
location = "localhost:5000"
insecure = true
[[registry]]
prefix = "*.lab.example"
insecure = true
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "mirror.lab:5001/quay"
insecure = true
"#,
            "/etc/containers/registries.conf",
        )
        .expect("parses");
        conf.add(
            "[registries.insecure]\nregistries = [\"old.example:5002\", \"localhost:5000\"]\n",
            "/etc/containers/registries.conf.d/10-old.conf",
        )
        .expect("parses");
        assert_eq!(
            conf.insecure_hosts(),
            [
                "localhost:5000",
                "*.lab.example",
                "mirror.lab:5001",
                "old.example:5002"
            ]
        );
    }

    #[test]
    fn a_users_files_follow_the_containers_lookup() {
        let root = tempfile::tempdir().expect("temp dir");
        let home = root.path().join("home/u");
        let system = root.path().join("etc/containers");
        let (main, dropins) = user_files(None, Some(home.clone()), root.path());
        assert_eq!(main, system.join("registries.conf"));
        assert_eq!(
            dropins,
            [
                system.join("registries.conf.d"),
                home.join(".config/containers/registries.conf.d")
            ]
        );
        // The user's own file replaces the system's once it exists.
        std::fs::create_dir_all(home.join(".config/containers")).expect("mkdir");
        std::fs::write(home.join(".config/containers/registries.conf"), "").expect("write");
        let (main, _) = user_files(None, Some(home.clone()), root.path());
        assert_eq!(main, home.join(".config/containers/registries.conf"));
        // The variable wins over both.
        let named = root.path().join("named.conf");
        let (main, _) = user_files(Some(named.clone()), Some(home), root.path());
        assert_eq!(main, named);
    }

    #[test]
    fn a_broken_file_is_named() {
        let mut mirrors = RegistriesConf::default();
        let err = mirrors
            .add(
                "[[registry]]\n[[registry.mirror]]\nlocation = \"m\"\n",
                "/etc/containers/registries.conf",
            )
            .expect_err("no prefix");
        assert_eq!(err.kind(), "no_prefix");
        assert!(
            err.to_string()
                .contains("/etc/containers/registries.conf: registry[0]"),
            "{err}"
        );
        let err = mirrors
            .add("[[registry]\n", "x.conf")
            .expect_err("bad TOML");
        assert_eq!(err.kind(), "syntax");
        assert!(err.to_string().starts_with("x.conf: "), "{err}");
    }

    #[test]
    fn loading_names_the_fragment_with_a_bad_entry_or_that_cannot_be_read() {
        let root = tempfile::tempdir().expect("temp dir");
        let fragments = root.path().join("etc/containers/registries.conf.d");
        std::fs::create_dir_all(&fragments).expect("mkdir");
        assert_eq!(
            RegistriesConf::load(root.path()).expect("no files"),
            RegistriesConf::default()
        );
        std::fs::write(fragments.join("10-good.conf"), CONF).expect("write");
        let bad = fragments.join("20-bad.conf");
        std::fs::write(&bad, "[[registry]]\ninsecure = true\n").expect("write");
        let err = RegistriesConf::load(root.path()).expect_err("no prefix");
        assert_eq!(err.kind(), "no_prefix");
        assert!(
            err.to_string()
                .starts_with(&format!("{}: registry[0]", bad.display())),
            "{err}"
        );
        // A directory where a file should be cannot be read.
        std::fs::remove_file(&bad).expect("remove");
        std::fs::create_dir(&bad).expect("mkdir");
        let err = RegistriesConf::load(root.path()).expect_err("unreadable");
        assert_eq!(err.kind(), "read");
        assert!(
            err.to_string().starts_with(&format!("{}: ", bad.display())),
            "{err}"
        );
    }
}
