//! The host's `registries.conf` (containers-registries.conf(5)), read as
//! containers/image (and so bootc, podman and skopeo) reads it:
//!
//! - mirrors, for the agent's own reads of the document, so that a
//!   disconnected site that mirrors the images for its hosts gets the
//!   document from the same mirror;
//! - registries marked `insecure = true` (or listed under the old
//!   `[registries.insecure]`), which every command reaches over plain HTTP
//!   without a `--insecure-registry` flag.
//!
//! On a host whose agent reads through skopeo's image proxy, containers/image
//! applies this file itself; the agent still needs this reading where skopeo
//! cannot help: the places a barrier scan lists tags at (`skopeo list-tags`
//! ignores mirrors), the check of a mirror against its origin, and every
//! read when skopeo is absent or too old. The publisher, `cairn promote`
//! and the server, which never run skopeo, read registries with it too.

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
    /// The older, registry-wide form of `pull-from-mirror = "digest-only"`.
    #[serde(rename = "mirror-by-digest-only", default)]
    mirror_by_digest_only: bool,
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
        // An empty variable is unset: a relative path would let the working
        // directory decide which registries are insecure.
        let set = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let named = set(REGISTRIES_CONF_ENV);
        let (main, dropins) = user_files(named.clone(), set("HOME"), Path::new("/"));
        // A file named on purpose must be there; the default ones need not be.
        if let Some(named) = &named
            && let Err(error) = std::fs::metadata(named)
        {
            return Err(RegistriesConfError::Read {
                file: named.display().to_string(),
                error,
            });
        }
        RegistriesConf::load_files(&main, &dropins)
    }

    /// `main`, then each directory's `*.conf` files in name order. Only the
    /// main file may use the version 1 format, as in containers/image.
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
            let is_main = file == main;
            mirrors.add_file(&text, &file.display().to_string(), is_main)?;
        }
        Ok(mirrors)
    }

    /// Add the entries of one main file's text; `source` names it in errors.
    pub fn add(&mut self, text: &str, source: &str) -> Result<(), RegistriesConfError> {
        self.add_file(text, source, true)
    }

    fn add_file(
        &mut self,
        text: &str,
        source: &str,
        is_main: bool,
    ) -> Result<(), RegistriesConfError> {
        let raw: RawFile = toml::from_str(text).map_err(|error| RegistriesConfError::Syntax {
            file: source.to_string(),
            error,
        })?;
        if is_main && let Some(list) = raw.registries.and_then(|r| r.insecure) {
            self.insecure_v1 = list.registries;
        }
        for (index, registry) in raw.registry.into_iter().enumerate() {
            // An empty prefix is no prefix: the location stands for it.
            let prefix = registry.prefix.filter(|p| !p.is_empty());
            let Some(prefix) = prefix.or(registry.location.clone()) else {
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
            let by_digest_only = registry.mirror_by_digest_only;
            let mirrors = registry
                .mirror
                .into_iter()
                .map(|m| Mirror {
                    location: m.location.trim_end_matches('/').to_string(),
                    insecure: m.insecure,
                    digest_only: by_digest_only
                        || m.pull_from_mirror.as_deref() == Some("digest-only"),
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

    /// Whether `repository` (`host[:port]/path`) may be reached over plain
    /// HTTP when its registry does not speak TLS, as containers/image decides:
    /// the entry with the longest matching prefix (or mirror or relocated
    /// location, for the places the agent reads from) says, so a namespace
    /// marked insecure does not make its whole host so; a host in the version 1
    /// `[registries.insecure]` list counts for every repository on it.
    pub fn allows_plain_http(&self, repository: &str) -> bool {
        let places = self.entries.iter().flat_map(|e| {
            let relocated = (e.location != e.prefix).then_some((e.location.as_str(), e.insecure));
            std::iter::once((e.prefix.as_str(), e.insecure))
                .chain(relocated)
                .chain(e.mirrors.iter().map(|m| (m.location.as_str(), m.insecure)))
        });
        let hosts = self.insecure_v1.iter().map(|h| (h.as_str(), true));
        places
            .chain(hosts)
            .filter(|(place, _)| covers(place, repository))
            .max_by_key(|(place, _)| place.len())
            .is_some_and(|(_, insecure)| insecure)
    }
}
/// The main file and drop-in directories a user's containers tools read:
/// `env` is `$CONTAINERS_REGISTRIES_CONF`, `home` is `$HOME`, `root` is `/`
/// except in tests.
fn user_files(env: Option<PathBuf>, home: Option<PathBuf>, root: &Path) -> (PathBuf, Vec<PathBuf>) {
    let user = home.map(|h| h.join(".config/containers"));
    let system_dropins = root.join("etc/containers/registries.conf.d");
    let user_dropins = user.as_ref().map(|u| u.join("registries.conf.d"));
    match (env, &user) {
        (Some(path), _) => (
            path,
            [Some(system_dropins), user_dropins]
                .into_iter()
                .flatten()
                .collect(),
        ),
        // The user's own file replaces the system's, drop-ins included.
        (None, Some(user)) if user.join("registries.conf").exists() => (
            user.join("registries.conf"),
            user_dropins.into_iter().collect(),
        ),
        _ => (
            root.join("etc/containers/registries.conf"),
            [Some(system_dropins), user_dropins]
                .into_iter()
                .flatten()
                .collect(),
        ),
    }
}

/// `place` (a `host[:port][/path]` prefix, or `*.domain`) covers `repository`.
fn covers(place: &str, repository: &str) -> bool {
    match place.strip_prefix("*.") {
        // A subdomain of `domain`, any port and path.
        Some(domain) => {
            let host = repository.split('/').next().unwrap_or_default();
            let name = host.split(':').next().unwrap_or_default();
            name.strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        }
        None => matches_prefix(repository, place),
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
        assert!(mirrors.allows_plain_http("mirror.example.net:5000/fedora/fedora-coreos"));
        assert!(!mirrors.allows_plain_http("quay.io/fedora/fedora-coreos"));
    }

    #[test]
    fn a_registry_wide_mirror_by_digest_only_keeps_tags_at_the_registry() {
        let mut conf = RegistriesConf::default();
        conf.add(
            r#"
[[registry]]
location = "quay.io/acme"
blocked = true
mirror-by-digest-only = true
[[registry.mirror]]
location = "mirror.example.net/acme"
"#,
            "registries.conf",
        )
        .expect("parses");
        assert_eq!(
            conf.for_tag("quay.io/acme/os"),
            vec!["quay.io/acme/os".to_string()]
        );
    }

    #[test]
    fn plain_http_follows_the_longest_prefix_mirrors_and_the_old_list() {
        let mut conf = RegistriesConf::default();
        conf.add(
            r#"
[registries.insecure]
registries = ["old.example:5002"]

[[registry]]
location = "localhost:5000"
insecure = true
[[registry]]
location = "localhost:5000/secure"
[[registry]]
prefix = "ns.example/team"
location = "ns.example/team"
insecure = true
[[registry]]
prefix = "*.lab.example"
insecure = true
[[registry]]
prefix = ""
location = "quay.io"
[[registry.mirror]]
location = "mirror.lab:5001/quay"
insecure = true
"#,
            "/etc/containers/registries.conf",
        )
        .expect("parses");
        let plain = |repository: &str| conf.allows_plain_http(repository);
        assert!(plain("localhost:5000/acme/os"));
        // A more specific entry without the flag wins.
        assert!(!plain("localhost:5000/secure/os"));
        // A namespace marked insecure does not make its whole host so.
        assert!(plain("ns.example/team/os"));
        assert!(!plain("ns.example/other/os"));
        // A wildcard covers subdomains, with or without a port.
        assert!(plain("reg.lab.example/os"));
        assert!(plain("reg.lab.example:5000/os"));
        assert!(!plain("lab.example/os"));
        assert!(!plain("evillab.example/os"));
        // A mirror's own flag; the registry it mirrors keeps TLS. An empty
        // prefix stands for the location.
        assert!(plain("mirror.lab:5001/quay/fedora/os"));
        assert!(!plain("quay.io/fedora/os"));
        assert_eq!(conf.for_tag("quay.io/x")[0], "mirror.lab:5001/quay/x");
        // The version 1 list covers the whole host.
        assert!(plain("old.example:5002/any/os"));
        assert!(!plain("other.example/os"));
    }

    #[test]
    fn only_the_main_file_may_use_the_old_list() {
        let root = tempfile::tempdir().expect("temp dir");
        let main = root.path().join("registries.conf");
        let dropins = root.path().join("registries.conf.d");
        std::fs::create_dir_all(&dropins).expect("mkdir");
        std::fs::write(
            dropins.join("10-old.conf"),
            "[registries.insecure]\nregistries = [\"old.example:5002\"]\n",
        )
        .expect("write");
        let conf =
            RegistriesConf::load_files(&main, std::slice::from_ref(&dropins)).expect("loads");
        assert!(!conf.allows_plain_http("old.example:5002/os"));
        std::fs::write(
            &main,
            "[registries.insecure]\nregistries = [\"old.example:5002\"]\n",
        )
        .expect("write");
        let conf = RegistriesConf::load_files(&main, &[dropins]).expect("loads");
        assert!(conf.allows_plain_http("old.example:5002/os"));
    }

    #[test]
    fn a_users_files_follow_the_containers_lookup() {
        let root = tempfile::tempdir().expect("temp dir");
        let home = root.path().join("home/u");
        let system = root.path().join("etc/containers");
        let user = home.join(".config/containers");
        let both = [
            system.join("registries.conf.d"),
            user.join("registries.conf.d"),
        ];
        let (main, dropins) = user_files(None, Some(home.clone()), root.path());
        assert_eq!(main, system.join("registries.conf"));
        assert_eq!(dropins, both);
        // The user's own file replaces the system's, and its drop-ins too.
        std::fs::create_dir_all(&user).expect("mkdir");
        std::fs::write(user.join("registries.conf"), "").expect("write");
        let (main, dropins) = user_files(None, Some(home.clone()), root.path());
        assert_eq!(main, user.join("registries.conf"));
        assert_eq!(dropins, [user.join("registries.conf.d")]);
        // The variable wins over both, and both drop-in directories count.
        let named = root.path().join("named.conf");
        let (main, dropins) = user_files(Some(named.clone()), Some(home), root.path());
        assert_eq!(main, named);
        assert_eq!(dropins, both);
        // Without a home, only the system's.
        let (main, dropins) = user_files(None, None, root.path());
        assert_eq!(main, system.join("registries.conf"));
        assert_eq!(dropins, [system.join("registries.conf.d")]);
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
