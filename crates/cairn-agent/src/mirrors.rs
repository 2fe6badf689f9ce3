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

/// The mirrors configured on the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mirrors {
    entries: Vec<Entry>,
}

impl Mirrors {
    /// Read `etc/containers/registries.conf` and then `registries.conf.d/*.conf`
    /// in name order under `root`; a later entry for the same prefix replaces an
    /// earlier one. Missing files mean no mirrors.
    pub fn load(root: &Path) -> Result<Mirrors, String> {
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
                Err(e) => return Err(format!("{}: {e}", file.display())),
            };
            mirrors.add(&text, &file.display().to_string())?;
        }
        Ok(mirrors)
    }

    /// Add the entries of one file's text; `source` names it in errors.
    pub fn add(&mut self, text: &str, source: &str) -> Result<(), String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| format!("{source}: {e}"))?;
        for (index, registry) in raw.registry.into_iter().enumerate() {
            let Some(prefix) = registry.prefix.or(registry.location.clone()) else {
                return Err(format!(
                    "{source}: registry[{index}] has neither `prefix` nor `location`"
                ));
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
        assert!(
            err.contains("/etc/containers/registries.conf: registry[0]"),
            "{err}"
        );
        let err = mirrors
            .add("[[registry]\n", "x.conf")
            .expect_err("bad TOML");
        assert!(err.starts_with("x.conf: "), "{err}");
    }
}
