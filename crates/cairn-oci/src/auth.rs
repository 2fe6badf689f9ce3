//! Registry credentials (containers `auth.json`, docker `config.json`) and
//! `WWW-Authenticate` challenges.
//!
//! Kept although an agent reading through skopeo hands the auth file to
//! skopeo: the publisher, `cairn promote` and the server have no skopeo, and
//! an agent without one (or given `--insecure-registry`) reads with the
//! built-in client.

use crate::error::{OciError, Result};
use crate::reference::Repository;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// User name.
    pub username: String,
    /// Password or identity token.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password, not even in debug logs.
        f.debug_struct("Login")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Credentials by registry or repository prefix, as in `auth.json`.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    entries: BTreeMap<String, Login>,
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// No credentials: anonymous access.
    pub fn none() -> Self {
        Credentials::default()
    }

    /// One login for every repository of `registry`.
    pub fn single(registry: &str, login: Login) -> Self {
        let mut credentials = Credentials::default();
        credentials.entries.insert(registry.to_string(), login);
        credentials
    }

    /// Parse an `auth.json` or docker `config.json`; `source` names it in errors.
    pub fn from_auth_json(bytes: &[u8], source: &str) -> Result<Self> {
        let file: AuthFile =
            serde_json::from_slice(bytes).map_err(|e| OciError::invalid(source, e))?;
        let mut entries = BTreeMap::new();
        for (key, entry) in file.auths {
            let login = match (&entry.auth, &entry.username, &entry.password) {
                (Some(encoded), _, _) if !encoded.is_empty() => {
                    let decoded = STANDARD
                        .decode(encoded.trim())
                        .map_err(|e| OciError::invalid(format!("{source}: auths.{key}.auth"), e))?;
                    let text = String::from_utf8(decoded)
                        .map_err(|e| OciError::invalid(format!("{source}: auths.{key}.auth"), e))?;
                    let (username, password) = text.split_once(':').ok_or_else(|| {
                        OciError::invalid(
                            format!("{source}: auths.{key}.auth"),
                            "expected base64 of user:password",
                        )
                    })?;
                    Login {
                        username: username.to_string(),
                        password: password.to_string(),
                    }
                }
                (_, Some(username), Some(password)) => Login {
                    username: username.clone(),
                    password: password.clone(),
                },
                _ => continue,
            };
            entries.insert(normalise_key(&key), login);
        }
        Ok(Credentials { entries })
    }

    /// Read the first credentials file that exists, in the order containers
    /// tools use: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `~/.config/containers/auth.json`, `$DOCKER_CONFIG/config.json`,
    /// `~/.docker/config.json`. No file means anonymous access.
    pub fn from_default_files() -> Result<Self> {
        for path in default_auth_files() {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    return Credentials::from_auth_json(&bytes, &path.display().to_string());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(OciError::io(path, e)),
            }
        }
        Ok(Credentials::none())
    }

    /// Read one credentials file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| OciError::io(path, e))?;
        Credentials::from_auth_json(&bytes, &path.display().to_string())
    }

    /// The login for a repository: the longest matching `host/path` prefix wins.
    pub fn for_repository(&self, repository: &Repository) -> Option<&Login> {
        let full = format!("{}/{}", repository.registry, repository.path);
        let mut candidate = full.as_str();
        loop {
            if let Some(login) = self.entries.get(candidate) {
                return Some(login);
            }
            candidate = candidate.rsplit_once('/')?.0;
        }
    }
}

fn normalise_key(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    // Docker's legacy key for Docker Hub.
    if key == "index.docker.io/v1" || key == "index.docker.io" {
        return "docker.io".to_string();
    }
    key.to_string()
}

fn default_auth_files() -> Vec<PathBuf> {
    let env = |name| std::env::var_os(name).map(PathBuf::from);
    let mut files = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE"));
    if let Some(runtime) = env("XDG_RUNTIME_DIR") {
        files.push(runtime.join("containers/auth.json"));
    }
    let home = env("HOME");
    if let Some(home) = &home {
        files.push(home.join(".config/containers/auth.json"));
    }
    if let Some(docker) = env("DOCKER_CONFIG") {
        files.push(docker.join("config.json"));
    }
    if let Some(home) = &home {
        files.push(home.join(".docker/config.json"));
    }
    files
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq)]
pub enum Challenge {
    /// `Basic realm=…`
    Basic,
    /// `Bearer realm=…,service=…,scope=…`
    Bearer {
        /// Token endpoint.
        realm: String,
        /// Service name to ask for.
        service: Option<String>,
        /// Scope to ask for.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parse the header value; `None` for schemes Cairn does not speak.
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let params = parse_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// `key="value", key=value` pairs; commas inside quotes belong to the value.
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_json_and_matches_longest_prefix() {
        let json = format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/acme": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}}
            }}}}"#,
            STANDARD.encode("anon:pw1"),
            STANDARD.encode("acme:pw2"),
            STANDARD.encode("hub:pw3")
        );
        let creds = Credentials::from_auth_json(json.as_bytes(), "auth.json").expect("parses");
        let user = |r: &str| {
            creds
                .for_repository(&Repository::parse(r).expect("repo"))
                .map(|l| l.username.clone())
        };
        assert_eq!(user("quay.io/acme/os").as_deref(), Some("acme"));
        assert_eq!(user("quay.io/other/os").as_deref(), Some("anon"));
        assert_eq!(user("docker.io/library/fedora").as_deref(), Some("hub"));
        assert_eq!(user("ghcr.io/x/y"), None);
        let login = creds.for_repository(&Repository::parse("quay.io/acme/os").expect("repo"));
        assert!(
            !format!("{login:?}").contains("pw2"),
            "passwords never print"
        );
    }

    #[test]
    fn bad_auth_files_name_the_entry() {
        let err = Credentials::from_auth_json(br#"{"auths":{"r":{"auth":"%%%"}}}"#, "a.json")
            .expect_err("bad base64");
        assert!(err.to_string().contains("a.json: auths.r.auth"), "{err}");
    }

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="http://127.0.0.1:5058/token",service="test-registry",scope="repository:probe/os:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:5058/token".into(),
                service: Some("test-registry".into()),
                scope: Some("repository:probe/os:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }
}
