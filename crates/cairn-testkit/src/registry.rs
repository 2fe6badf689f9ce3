//! A real Debian `docker-registry` on 127.0.0.1 and a free port, with its own
//! configuration and storage, in three flavours: no auth, htpasswd and token.
//!
//! The registry logs every request it answers at `info` level to
//! `<scratch>/registry.log`; [`TestRegistry::requests`] reads them back, so a
//! test can count what reached the registry independently of the client.

use crate::token::{ScopedUser, TokenServer};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
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
    settle_marks: AtomicU64,
    /// Serving HTTPS with a test CA's certificate (see [`TestRegistry::serve_tls`]).
    tls: bool,
}

/// One request as the registry logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// `GET`, `HEAD`, `PUT`, `POST`, `PATCH` or `DELETE`.
    pub method: String,
    /// Path and query, as sent (`/v2/os/blobs/uploads/?mount=…&from=…`).
    pub uri: String,
    /// The response status; 401 for a request refused before it reached a
    /// handler (the registry logs no status for those).
    pub status: u16,
    /// The client's `User-Agent` (skopeo's names containers/image); empty
    /// when the registry logged none.
    pub user_agent: String,
}

impl Logged {
    /// PUT, POST, PATCH or DELETE: a request that may change the registry.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE")
    }
}

/// The query of the request [`TestRegistry::requests`] sends to know the log
/// has caught up; such requests are left out of what it returns.
const SETTLE_MARK: &str = "/v2/?cairn-testkit-settled=";

/// The `key=value` fields of one logrus text line; quoted values unescaped.
fn log_fields(line: &str) -> Vec<(&str, String)> {
    let mut fields = Vec::new();
    let mut rest = line.trim_start();
    while let Some(equals) = rest.find('=') {
        let key = &rest[..equals];
        let after = &rest[equals + 1..];
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                    }
                    '"' => {
                        end = at + 1;
                        break;
                    }
                    other => value.push(other),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        fields.push((key, value));
        rest = remainder.trim_start();
    }
    fields
}

/// A request from one registry log line: a completed response (with its
/// status), or a request refused for want of authorization (401, logged
/// without a status). Other lines, and the extra lines a refused request
/// also gets, give none.
fn logged_request(line: &str) -> Option<Logged> {
    let fields = log_fields(line);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    };
    let message = field("msg")?;
    let status = if message.starts_with("response completed") {
        field("http.response.status")?.parse().ok()?
    } else if message.starts_with("error authorizing context") {
        401
    } else {
        return None;
    };
    Some(Logged {
        method: field("http.request.method")?.to_string(),
        uri: field("http.request.uri")?.to_string(),
        status,
        user_agent: field("http.request.useragent")
            .unwrap_or_default()
            .to_string(),
    })
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
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth_section}",
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
            settle_marks: AtomicU64::new(0),
            tls: false,
        };
        registry.resume();
        registry
    }

    /// Start (again) the registry process on the same port and storage.
    /// This starts a new log: [`TestRegistry::requests`] forgets the
    /// requests of earlier runs.
    pub fn resume(&mut self) {
        let log =
            std::fs::File::create(self.log_path()).unwrap_or_else(|e| panic!("registry log: {e}"));
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
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        panic!("docker-registry did not start on {}: {log}", self.host);
    }

    /// Stop the registry process (storage is kept, [`TestRegistry::resume`] restarts it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.directory.path().join("registry.log")
    }

    /// Every request the registry answered since it last (re)started, in
    /// the order it logged them. [`TestRegistry::resume`] starts a new log,
    /// so a test that counts across a restart adds up both sides itself.
    /// Tests count a step's requests as the difference between a call
    /// before and one after it.
    ///
    /// The registry writes a request's line as its handler finishes, which
    /// for a large body can be just after the client has the reply. So when
    /// the registry runs, this first sends a request of its own and waits
    /// until that one is logged: every request a caller finished before the
    /// call is then in the answer (requests still in flight may or may not
    /// be). Those marker requests are left out. It blocks the calling thread
    /// for that round trip, a few milliseconds.
    pub fn requests(&self) -> Vec<Logged> {
        // The marker is a plain HTTP request: over TLS the log is read as it is.
        let mark = (self.child.is_some() && !self.tls).then(|| self.send_settle_mark());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read(self.log_path())
                .unwrap_or_else(|e| panic!("reading {}: {e}", self.log_path().display()));
            // A line is only whole once its newline is written.
            let whole = log
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(&log[..0], |end| &log[..end]);
            let text = String::from_utf8_lossy(whole);
            let requests: Vec<Logged> = text.lines().filter_map(logged_request).collect();
            let marked = mark
                .as_ref()
                .is_none_or(|mark| requests.iter().any(|r| &r.uri == mark));
            if marked {
                return requests
                    .into_iter()
                    .filter(|r| !r.uri.starts_with(SETTLE_MARK))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "the registry on {} never logged the request {mark:?}",
                self.host
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How many of [`TestRegistry::requests`] were PUT, POST, PATCH or
    /// DELETE, whatever the registry answered (refusals included).
    pub fn write_requests(&self) -> usize {
        self.requests().iter().filter(|r| r.is_write()).count()
    }

    /// Send the marker request that [`TestRegistry::requests`] waits to see
    /// logged; returns its URI.
    fn send_settle_mark(&self) -> String {
        use std::io::{Read, Write};
        let uri = format!(
            "{SETTLE_MARK}{}",
            self.settle_marks.fetch_add(1, Ordering::Relaxed)
        );
        let mut stream = std::net::TcpStream::connect(&self.host)
            .unwrap_or_else(|e| panic!("connecting to the registry on {}: {e}", self.host));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        write!(
            stream,
            "GET {uri} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        )
        .unwrap_or_else(|e| panic!("asking the registry on {}: {e}", self.host));
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .unwrap_or_else(|e| panic!("reading the registry on {}: {e}", self.host));
        uri
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
        let mut insecure_registries = Vec::new();
        if !self.tls {
            insecure_registries.push(self.host.clone());
        }
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

    /// Restart the registry on the same port and storage, now over HTTPS
    /// with a certificate (for `127.0.0.1`) from a new test CA that nothing
    /// trusts by default. Returns a directory holding that CA as `ca.crt`,
    /// the layout containers' certs.d and skopeo's `--cert-dir` read.
    /// [`TestRegistry::client_options`] then no longer lists the registry as
    /// insecure, and [`TestRegistry::requests`] reads the log without waiting
    /// for it to settle.
    pub fn serve_tls(&mut self) -> PathBuf {
        require_binary("openssl", "openssl");
        let dir = self.directory.path().join("tls");
        let certs = dir.join("certs.d");
        std::fs::create_dir_all(&certs).unwrap_or_else(|e| panic!("{}: {e}", certs.display()));
        let file = |name: &str| dir.join(name).display().to_string();
        let extensions = dir.join("server.ext");
        std::fs::write(
            &extensions,
            "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .unwrap_or_else(|e| panic!("{}: {e}", extensions.display()));
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("running openssl: {e}"));
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let (ca_key, ca_crt) = (file("ca.key"), certs.join("ca.crt").display().to_string());
        let (server_key, server_csr, server_crt) =
            (file("server.key"), file("server.csr"), file("server.crt"));
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=cairn test CA"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            &ca_key,
            "-out",
            &ca_crt,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&ca);
        let mut request = vec!["req", "-subj", "/CN=127.0.0.1"];
        request.extend(ec);
        request.extend(["-keyout", &server_key, "-out", &server_csr]);
        openssl(&request);
        let extfile = extensions.display().to_string();
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &server_csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &extfile,
            "-out",
            &server_crt,
        ]);
        let config_path = self.directory.path().join("config.yml");
        let config = std::fs::read_to_string(&config_path)
            .unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
        let addr = format!("http:\n  addr: {}\n", self.host);
        assert!(config.contains(&addr), "registry config without {addr:?}");
        let config = config.replacen(
            &addr,
            &format!("{addr}  tls:\n    certificate: {server_crt}\n    key: {server_key}\n"),
            1,
        );
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
        self.stop();
        self.tls = true;
        self.resume();
        certs
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
