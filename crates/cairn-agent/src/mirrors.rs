//! `registries.conf` mirrors for the agent's own reads of the document, as
//! containers/image (and so bootc) applies them to pulls: a disconnected site
//! that mirrors the images for its hosts gets the document from the same mirror.

use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    registry: Vec<RawRegistry>,
}

#[derive(Debug, Deserialize)]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
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

/// A `[[registry]]` entry that has mirrors or a new location.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    prefix: String,
    location: String,
    mirrors: Vec<Mirror>,
}

/// Why the host's mirrors could not be read. The message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorsError {
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

impl MirrorsError {
    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            MirrorsError::Read { .. } => "read",
            MirrorsError::Syntax { .. } => "syntax",
            MirrorsError::NoPrefix { .. } => "no_prefix",
        }
    }
}

/// The mirrors configured on the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mirrors {
    entries: Vec<Entry>,
}

impl Mirrors {
    /// Read `etc/containers/registries.conf` and then `registries.conf.d/*.conf`
    /// in name order under `root`; a later entry for the same prefix replaces an
    /// earlier one. Missing files mean no mirrors.
    pub fn load(root: &Path) -> Result<Mirrors, MirrorsError> {
        let base = root.join("etc/containers");
        let mut files = vec![base.join("registries.conf")];
        if let Ok(dir) = std::fs::read_dir(base.join("registries.conf.d")) {
            let mut fragments: Vec<_> = dir
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            fragments.sort();
            files.extend(fragments);
        }
        let mut mirrors = Mirrors::default();
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(MirrorsError::Read {
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
    pub fn add(&mut self, text: &str, source: &str) -> Result<(), MirrorsError> {
        let raw: RawFile = toml::from_str(text).map_err(|error| MirrorsError::Syntax {
            file: source.to_string(),
            error,
        })?;
        for (index, registry) in raw.registry.into_iter().enumerate() {
            let Some(prefix) = registry.prefix.or(registry.location.clone()) else {
                return Err(MirrorsError::NoPrefix {
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

    /// Mirror hosts configured as insecure (plain HTTP).
    pub fn insecure_hosts(&self) -> Vec<String> {
        self.entries
            .iter()
            .flat_map(|e| &e.mirrors)
            .filter(|m| m.insecure)
            .map(|m| m.location.split('/').next().unwrap_or_default().to_string())
            .collect()
    }
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
        let mut mirrors = Mirrors::default();
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
    fn a_broken_file_is_named() {
        let mut mirrors = Mirrors::default();
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
            Mirrors::load(root.path()).expect("no files"),
            Mirrors::default()
        );
        std::fs::write(fragments.join("10-good.conf"), CONF).expect("write");
        let bad = fragments.join("20-bad.conf");
        std::fs::write(&bad, "[[registry]]\ninsecure = true\n").expect("write");
        let err = Mirrors::load(root.path()).expect_err("no prefix");
        assert_eq!(err.kind(), "no_prefix");
        assert!(
            err.to_string()
                .starts_with(&format!("{}: registry[0]", bad.display())),
            "{err}"
        );
        // A directory where a file should be cannot be read.
        std::fs::remove_file(&bad).expect("remove");
        std::fs::create_dir(&bad).expect("mkdir");
        let err = Mirrors::load(root.path()).expect_err("unreadable");
        assert_eq!(err.kind(), "read");
        assert!(
            err.to_string().starts_with(&format!("{}: ", bad.display())),
            "{err}"
        );
    }
}
