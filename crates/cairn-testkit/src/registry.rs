//! A real Debian `docker-registry` on 127.0.0.1 and a free port, with its own
//! configuration and storage, in three flavours: no auth, htpasswd and token.

use crate::token::{ScopedUser, TokenServer};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary Debian's `docker-registry` package installs.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// The user and password of the htpasswd and token flavours.
pub const USER: &str = "cairn";
/// See [`USER`].
pub const PASSWORD: &str = "correct horse battery staple";

/// Which authentication the registry demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous read and write.
    None,
    /// HTTP basic auth from an htpasswd file.
    Htpasswd,
    /// Bearer tokens from a token server run by the harness.
    Token,
}

/// A running registry; stopped when dropped.
#[derive(Debug)]
pub struct TestRegistry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// The flavour.
    pub auth: Auth,
    directory: tempfile::TempDir,
    child: Option<Child>,
    _token: Option<TokenServer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// Fail with instructions when a tool the tests need is missing.
pub fn require_binary(path: &str, package: &str) {
    if !Path::new(path).exists() && which(path).is_none() {
        panic!("{path} is needed for this test: apt-get update && apt-get install -y {package}");
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.exists())
    })
}

impl TestRegistry {
    /// Start a registry. Token flavours need a Tokio runtime (the token server runs on it).
    pub async fn start(auth: Auth) -> TestRegistry {
        TestRegistry::start_with(auth, Vec::new()).await
    }

    /// Start a token-flavour registry whose token server also knows `users`,
    /// each granted only its scopes.
    pub async fn start_scoped(users: Vec<ScopedUser>) -> TestRegistry {
        TestRegistry::start_with(Auth::Token, users).await
    }

    async fn start_with(auth: Auth, scoped: Vec<ScopedUser>) -> TestRegistry {
        require_binary(REGISTRY_BINARY, "docker-registry");
        let directory = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let token = match auth {
            Auth::Token => Some(TokenServer::start(directory.path(), scoped).await),
            _ => None,
        };
        let auth_section = match (&auth, &token) {
            (Auth::None, _) => String::new(),
            (Auth::Htpasswd, _) => {
                let hash = bcrypt::hash(PASSWORD, 5).unwrap_or_else(|e| panic!("bcrypt: {e}"));
                let file = directory.path().join("htpasswd");
                std::fs::write(&file, format!("{USER}:{hash}\n"))
                    .unwrap_or_else(|e| panic!("htpasswd: {e}"));
                format!(
                    "auth:\n  htpasswd:\n    realm: cairn-test\n    path: {}\n",
                    file.display()
                )
            }
            (Auth::Token, Some(token)) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                token.realm,
                crate::token::SERVICE,
                crate::token::ISSUER,
                token.certificate.display()
            ),
            (Auth::Token, None) => unreachable!("token server started above"),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth_section}",
            directory.path().join("data").display()
        );
        std::fs::write(directory.path().join("config.yml"), config)
            .unwrap_or_else(|e| panic!("registry config: {e}"));
        let mut registry = TestRegistry {
            host,
            auth,
            directory,
            child: None,
            _token: token,
        };
        registry.resume();
        registry
    }

    /// Start (again) the registry process on the same port and storage.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.directory.path().join("registry.log"))
            .unwrap_or_else(|e| panic!("registry log: {e}"));
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(self.directory.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {REGISTRY_BINARY}: {e}"));
        self.child = Some(child);
        self.wait_until_listening();
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.host).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log =
            std::fs::read_to_string(self.directory.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not start on {}: {log}", self.host);
    }

    /// Stop the registry process (storage is kept, [`TestRegistry::resume`] restarts it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Client options that reach this registry (plain HTTP, its credentials).
    pub fn client_options(&self) -> cairn_oci::ClientOptions {
        let credentials = match self.auth {
            Auth::None => cairn_oci::auth::Credentials::none(),
            _ => cairn_oci::auth::Credentials::single(
                &self.host,
                cairn_oci::auth::Login {
                    username: USER.into(),
                    password: PASSWORD.into(),
                },
            ),
        };
        let mut insecure_registries = vec![self.host.clone()];
        // The token server is plain HTTP on loopback too.
        if let Some(token) = &self._token {
            let host = token
                .realm
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            insecure_registries.push(host.to_string());
        }
        cairn_oci::ClientOptions {
            credentials,
            insecure_registries,
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(50),
            registries_conf: Ok(Default::default()),
        }
    }

    /// A containers `auth.json` holding `username`'s login to this registry.
    pub fn auth_json(&self, username: &str, password: &str) -> String {
        use base64::Engine;
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        serde_json::json!({"auths": {self.host.clone(): {"auth": auth}}}).to_string()
    }

    /// A client for this registry.
    pub fn client(&self) -> cairn_oci::RegistryClient {
        cairn_oci::RegistryClient::new(self.client_options())
            .unwrap_or_else(|e| panic!("client: {e}"))
    }

    /// A repository in this registry.
    pub fn repository(&self, path: &str) -> cairn_oci::Repository {
        cairn_oci::Repository::parse(&format!("{}/{path}", self.host))
            .unwrap_or_else(|e| panic!("repository: {e}"))
    }

    /// A store for a repository in this registry.
    pub fn store(&self, path: &str) -> cairn_oci::Store {
        cairn_oci::Store::registry(self.client(), self.repository(path))
    }

    /// `--creds`/`--dest-creds` value for skopeo, if the registry wants one.
    pub fn skopeo_creds(&self) -> Option<String> {
        (self.auth != Auth::None).then(|| format!("{USER}:{PASSWORD}"))
    }

    /// A scratch directory that lives as long as the registry.
    pub fn scratch(&self) -> &Path {
        self.directory.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
