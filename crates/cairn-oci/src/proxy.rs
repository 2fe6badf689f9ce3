//! Reading registries through containers/image, by way of skopeo's
//! `experimental-image-proxy` (the `containers-image-proxy` crate).
//!
//! A [`ProxyReader`] owns one skopeo child and reads manifests and blobs
//! with the host's own registry settings: `registries.conf` mirrors,
//! `blocked` and `insecure` entries, certs.d, and auth files. Tag lists
//! come from a separate `skopeo list-tags` run with the same settings,
//! since the proxy protocol has no method for them.
//!
//! Only reads go through it; a [`Store::Proxy`](crate::Store::Proxy)
//! refuses writes. What containers/image does differently from the
//! built-in client:
//!
//! - an index is resolved to the host platform's manifest: an index itself
//!   is never returned;
//! - Docker schema 2 manifests arrive converted to OCI under their
//!   original digest, so they are refused (the bytes are not the digest's);
//! - a blob needs its exact size, and a manifest of its repository read
//!   first (the proxy reads blobs through an open image);
//! - mirrors serve manifest and blob reads, but `list-tags` asks only the
//!   repository named, so [`ProxyReader::list_tags`] asks each mirror place
//!   of [`ProxyConfig::mirrors`] in turn;
//! - skopeo 1.9 (protocol 0.2.3) classifies no errors, so "not found",
//!   "unauthorized" and "unreachable" are read from its messages.

use crate::client::{FetchedManifest, ManifestHead};
use crate::digest::sha256_digest;
use crate::error::{OciError, Result};
use crate::reference::{Repository, is_valid_tag};
use bytes::Bytes;
use containers_image_proxy::{ImageProxy, ImageProxyConfig, OpenedImage};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The OCI manifest media type, which the proxy converts every manifest to.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The most bytes of `skopeo list-tags` output read (a JSON tag list).
pub const MAX_TAG_LIST_OUTPUT: usize = 16 * 1024 * 1024;
/// The most bytes of a skopeo error message kept.
const MAX_STDERR: usize = 16 * 1024;
/// The oldest protocol Cairn (and the crate) speaks: skopeo 1.9.
const OLDEST_PROTOCOL: ProtocolVersion = ProtocolVersion(0, 2, 3);
/// The protocol that added `OpenImageOptional`.
const OPEN_IMAGE_OPTIONAL: ProtocolVersion = ProtocolVersion(0, 2, 4);

/// A proxy protocol version (`major.minor.patch`), as skopeo's `Initialize` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion(pub u64, pub u64, pub u64);

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Which registry credentials skopeo uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyAuth {
    /// containers-auth.json's default places (`$XDG_RUNTIME_DIR/containers/auth.json`, …).
    #[default]
    Default,
    /// This auth file (`--authfile`).
    File(PathBuf),
    /// No credentials at all (`--no-creds`).
    Anonymous,
}

/// How to run skopeo, and which host settings it is pointed at. `None`
/// everywhere means skopeo's own defaults, i.e. the host's files.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// The skopeo binary: a path, or a name looked up on `PATH`.
    pub skopeo: PathBuf,
    /// `registries.conf` to use instead of the system one (global `--registries-conf`).
    pub registries_conf: Option<PathBuf>,
    /// `policy.json` to use instead of the system one (global `--policy`).
    pub policy: Option<PathBuf>,
    /// One certificate directory for every registry (`--cert-dir`); it
    /// replaces the per-host certs.d lookup.
    pub cert_dir: Option<PathBuf>,
    /// Credentials.
    pub auth: ProxyAuth,
    /// `false` sends `--tls-verify=false`, for every registry. A single
    /// registry is better made insecure with `insecure = true` in registries.conf.
    pub tls_verify: bool,
    /// The longest any one call (open, manifest, blob, tag list) may take.
    pub timeout: Duration,
    /// The longest skopeo lives: it is killed then, whatever it is doing.
    /// The crate owns the process, so this bound (coreutils' `timeout`) is
    /// what ends a skopeo stuck on a registry that never answers.
    pub lifetime: Duration,
    /// Let skopeo apply the host's `policy.json` (protocol 0.2.6 and newer
    /// check it at every open). Off by default: Cairn verifies its own
    /// artifacts with its own keys, and an image policy requiring sigstore
    /// signatures would refuse them.
    pub check_policy: bool,
    /// The host's registries.conf as Cairn reads it, for tag lists only:
    /// `skopeo list-tags` asks just the repository it is given, so
    /// [`ProxyReader::list_tags`] asks each mirror place in turn, as a pull
    /// would. Everything else skopeo reads from registries.conf itself.
    pub mirrors: crate::registries_conf::RegistriesConf,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            skopeo: PathBuf::from("skopeo"),
            registries_conf: None,
            policy: None,
            cert_dir: None,
            auth: ProxyAuth::Default,
            tls_verify: true,
            timeout: Duration::from_secs(60),
            lifetime: Duration::from_secs(600),
            check_policy: false,
            mirrors: crate::registries_conf::RegistriesConf::default(),
        }
    }
}

impl ProxyConfig {
    /// The global options that must precede skopeo's subcommand.
    fn global_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if let Some(path) = &self.registries_conf {
            args.push("--registries-conf".into());
            args.push(path.clone().into_os_string());
        }
        if let Some(path) = &self.policy {
            args.push("--policy".into());
            args.push(path.clone().into_os_string());
        }
        if !self.check_policy {
            args.push("--insecure-policy".into());
        }
        args
    }
}

/// Why no proxy could be started; the caller falls back to the built-in
/// client and can show this reason.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyUnavailable {
    /// The skopeo binary is not there.
    #[error("skopeo not found: {} ({searched})", .skopeo.display())]
    NotFound {
        /// What was asked for.
        skopeo: PathBuf,
        /// Where it was looked for.
        searched: String,
    },
    /// skopeo speaks a protocol older than Cairn needs.
    #[error("{}: image proxy protocol {found} is too old (Cairn needs {OLDEST_PROTOCOL} or newer, skopeo 1.9+)", .skopeo.display())]
    TooOld {
        /// The binary.
        skopeo: PathBuf,
        /// The version it reported.
        found: String,
    },
    /// skopeo is there but the proxy did not start or answer.
    #[error("{}: experimental-image-proxy did not start: {message}", .skopeo.display())]
    Failed {
        /// The binary.
        skopeo: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl ProxyUnavailable {
    /// A short, fixed label for status and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyUnavailable::NotFound { .. } => "skopeo_not_found",
            ProxyUnavailable::TooOld { .. } => "skopeo_too_old",
            ProxyUnavailable::Failed { .. } => "skopeo_failed",
        }
    }
}

/// An image opened in the proxy, with its manifest once read.
struct Opened {
    image: Arc<OpenedImage>,
    /// Its digest and bytes, once read.
    manifest: Option<(String, Bytes)>,
}

/// Reads manifests, blobs and tags through one skopeo proxy process.
///
/// Opened images are cached by reference for the reader's life: a tag
/// read twice answers the same both times, so a reader is meant to live
/// for one pass over the registries and be dropped (or [`finish`]ed) after.
///
/// [`finish`]: ProxyReader::finish
pub struct ProxyReader {
    proxy: ImageProxy,
    config: ProxyConfig,
    /// The skopeo binary as found.
    skopeo: PathBuf,
    protocol: ProtocolVersion,
    /// By `docker://` reference.
    opened: Mutex<HashMap<String, Opened>>,
    /// The last image opened in each repository: blobs are fetched through
    /// it (the proxy serves any blob of the image's repository).
    by_repository: Mutex<HashMap<String, Arc<OpenedImage>>>,
    calls: AtomicU64,
    /// Set when a call timed out: the proxy may still be busy with it, so
    /// later calls fail at once rather than queue behind it.
    stuck: Mutex<Option<String>>,
}

impl fmt::Debug for ProxyReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyReader")
            .field("skopeo", &self.skopeo)
            .field("protocol", &self.protocol)
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// `name` as a path: itself when it has a `/`, else the first match on `PATH`.
fn find_binary(name: &Path) -> std::result::Result<PathBuf, ProxyUnavailable> {
    let not_found = |searched: String| ProxyUnavailable::NotFound {
        skopeo: name.to_path_buf(),
        searched,
    };
    if name.components().count() > 1 || name.is_absolute() {
        return if name.is_file() {
            Ok(name.to_path_buf())
        } else {
            Err(not_found("no such file".into()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| not_found(format!("not on PATH={}", path.to_string_lossy())))
}

/// `docker://repo:tag` or `docker://repo@digest`, after checking the reference.
/// The media type a manifest declares; skopeo hands over OCI when it says none.
fn declared_or_oci(bytes: &[u8]) -> String {
    let declared = crate::manifest::declared_media_type(bytes);
    if declared.is_empty() {
        OCI_MANIFEST.to_string()
    } else {
        declared
    }
}

fn docker_reference(repository: &Repository, reference: &str) -> Result<String> {
    if reference.starts_with("sha256:") {
        if !cairn_graph::digest::is_sha256_digest(reference) {
            return Err(OciError::Reference {
                reference: reference.into(),
                message: "the digest must be sha256: and 64 lower-case hex digits".into(),
            });
        }
        Ok(format!("docker://{repository}@{reference}"))
    } else if is_valid_tag(reference) {
        Ok(format!("docker://{repository}:{reference}"))
    } else {
        Err(OciError::Reference {
            reference: reference.into(),
            message: "invalid tag".into(),
        })
    }
}

/// What skopeo's error text says happened.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    NotFound,
    Unauthorized,
    Unreachable,
    Status(u16),
    Other,
}

/// Sort an error message of skopeo (containers/image) into what Cairn
/// tells apart. Before protocol 0.2.8 the proxy gives text only, so the
/// text decides, and three rules keep a refusal from passing for an
/// absence (which a caller may take as "nothing there, go on"):
/// - names Cairn put in the request (`names`: the reference, repository,
///   tag) are taken out first, so a tag such as `name-unknown` says nothing;
/// - with mirrors, containers/image joins every place's error; only the
///   primary location's, the last, counts;
/// - a transport failure wins over everything else in the text.
fn classify_text(text: &str, names: &[&str]) -> Failure {
    let mut lower = text.to_ascii_lowercase();
    for name in names.iter().filter(|name| !name.is_empty()) {
        lower = lower.replace(&name.to_ascii_lowercase(), "");
    }
    if lower.contains("mirrors also failed")
        && let Some(at) = lower.rfind("]): ")
    {
        lower = lower[at + "]): ".len()..].to_string();
    }
    let has = |needle: &str| lower.contains(needle);
    // containers/image words an HTTP status several ways.
    let status = [
        "status code from registry ",
        "unexpected http status: ",
        "statuscode: ",
    ]
    .iter()
    .find_map(|marker| {
        lower
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
    })
    .or_else(|| has("toomanyrequests").then_some(429));
    let unreachable = [
        "pinging container registry",
        "dial tcp",
        "connection refused",
        "connection reset",
        "no such host",
        "lookup ",
        "server misbehaving",
        "temporary failure in name resolution",
        "i/o timeout",
        "deadline exceeded",
        "client.timeout",
        "tls handshake",
        "tls:",
        "x509:",
        "http response to https client",
        "unexpected eof",
        "broken pipe",
    ];
    if unreachable.iter().any(|needle| has(needle)) || lower.trim_end().ends_with(": eof") {
        Failure::Unreachable
    } else if has("manifest unknown")
        || has("blob unknown")
        || has("name unknown")
        || status == Some(404)
        || has("404 (not found)")
    {
        Failure::NotFound
    } else if has("unauthorized")
        || has("authentication required")
        || (has("denied") && !has("permission denied"))
        || matches!(status, Some(401 | 403))
    {
        Failure::Unauthorized
    } else if let Some(code) = status {
        Failure::Status(code)
    } else {
        Failure::Other
    }
}

/// The message of skopeo's last log line (`time=… level=fatal msg="…"`),
/// or the whole text when it is not such a line.
fn skopeo_message(stderr: &str) -> String {
    let last = stderr.trim().lines().last().unwrap_or_default();
    match last.split_once("msg=\"") {
        Some((_, rest)) => rest.strip_suffix('"').unwrap_or(rest).replace("\\\"", "\""),
        None => stderr.trim().to_string(),
    }
}

/// Map a proxy error of `method` on `target` to Cairn's error kinds;
/// `missing` is what a not-found error names.
fn map_error(
    method: &str,
    target: &str,
    missing: &str,
    error: &containers_image_proxy::Error,
) -> OciError {
    use containers_image_proxy::Error as E;
    let message = error.to_string();
    let transport = |message: String| OciError::Transport {
        method: method.to_string(),
        url: target.to_string(),
        message,
    };
    // Failures of the proxy itself (it died, its socket broke) are not an
    // answer from the registry either.
    if matches!(
        error,
        E::Io(_) | E::SkopeoSpawnError(_) | E::SerDe(_) | E::Other(_)
    ) {
        return transport(format!("skopeo proxy: {message}"));
    }
    // The text first, as for skopeo 1.9, so every version sorts alike
    // (protocol 0.2.8 calls a 503 retryable; here it stays a status).
    let names = [
        target,
        target.strip_prefix("docker://").unwrap_or(target),
        missing,
    ];
    let failure = match classify_text(&message, &names) {
        Failure::Other if error.is_retryable() => Failure::Unreachable,
        failure => failure,
    };
    match failure {
        Failure::NotFound => OciError::NotFound(missing.to_string()),
        Failure::Unauthorized => OciError::Unauthorized {
            url: target.to_string(),
            message,
        },
        Failure::Unreachable => transport(message),
        Failure::Status(status) => OciError::Status {
            method: method.to_string(),
            url: target.to_string(),
            status,
            body: message,
        },
        // Refused without a status: a `blocked` registry, a policy, a
        // manifest skopeo cannot use.
        Failure::Other => OciError::invalid(format!("{method} {target} (through skopeo)"), message),
    }
}

impl ProxyReader {
    /// Find skopeo, start its proxy and check its protocol version.
    pub async fn start(config: ProxyConfig) -> std::result::Result<Self, ProxyUnavailable> {
        let skopeo = find_binary(&config.skopeo)?;
        let failed = |message: String| ProxyUnavailable::Failed {
            skopeo: skopeo.clone(),
            message,
        };
        // Giving the crate a command (for the global flags) drops its own
        // parent-death signal; util-linux's setpriv puts it back, as
        // ostree-ext does, so skopeo ends with the agent. (The signal comes
        // when the thread that started it ends: start readers on a thread
        // that outlives them, as a runtime's own threads do.)
        let mut command = match find_binary(Path::new("setpriv")) {
            Ok(setpriv) => {
                let mut command = std::process::Command::new(setpriv);
                command.args(["--pdeathsig", "TERM", "--"]);
                command
            }
            Err(_) => {
                tracing::debug!("setpriv not found: skopeo runs without a parent-death signal");
                std::process::Command::new("env")
            }
        };
        // coreutils' timeout bounds skopeo's life (it forwards TERM too).
        match find_binary(Path::new("timeout")) {
            Ok(timeout) => {
                command.arg(timeout).args([
                    "--signal=KILL".to_string(),
                    format!("{}s", config.lifetime.as_secs().max(1)),
                ]);
            }
            Err(_) => tracing::debug!("timeout not found: skopeo's life is not bounded"),
        }
        command.arg(&skopeo).args(config.global_args());
        let mut proxy_config = ImageProxyConfig::default();
        proxy_config.skopeo_cmd = Some(command);
        match &config.auth {
            ProxyAuth::Default => {}
            ProxyAuth::File(path) => proxy_config.authfile = Some(path.clone()),
            ProxyAuth::Anonymous => proxy_config.auth_anonymous = true,
        }
        proxy_config.certificate_directory = config.cert_dir.clone();
        if !config.tls_verify {
            proxy_config.insecure_skip_tls_verification = Some(true);
        }
        let started =
            tokio::time::timeout(config.timeout, ImageProxy::new_with_config(proxy_config))
                .await
                .map_err(|_| failed(format!("no answer within {:?}", config.timeout)))?;
        let proxy = match started {
            Ok(proxy) => proxy,
            Err(containers_image_proxy::Error::ProxyTooOld { found_version, .. }) => {
                return Err(ProxyUnavailable::TooOld {
                    skopeo,
                    found: found_version.to_string(),
                });
            }
            Err(containers_image_proxy::Error::SkopeoSpawnError(error))
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(ProxyUnavailable::NotFound {
                    skopeo,
                    searched: error.to_string(),
                });
            }
            Err(error) => return Err(failed(error.to_string())),
        };
        let version = proxy.protocol_version();
        let protocol = ProtocolVersion(version.major, version.minor, version.patch);
        // The crate accepts 0.2.3 and newer itself; this keeps Cairn's floor
        // explicit should the crate ever accept less.
        if protocol < OLDEST_PROTOCOL {
            return Err(ProxyUnavailable::TooOld {
                skopeo,
                found: protocol.to_string(),
            });
        }
        tracing::debug!(skopeo = %skopeo.display(), %protocol, "skopeo image proxy started");
        Ok(ProxyReader {
            proxy,
            config,
            skopeo,
            protocol,
            opened: Mutex::new(HashMap::new()),
            by_repository: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            stuck: Mutex::new(None),
        })
    }

    /// The protocol version skopeo speaks.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.protocol
    }

    /// The skopeo binary in use.
    pub fn skopeo(&self) -> &Path {
        &self.skopeo
    }

    /// Calls made so far: proxy requests and `skopeo list-tags` runs. The
    /// HTTP requests behind them are skopeo's and not counted.
    pub fn call_count(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Run one call under the timeout; a call that times out leaves the
    /// reader unusable, as the proxy may still be working on it.
    async fn call<T>(
        &self,
        method: &str,
        target: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let stuck = self.stuck.lock().ok().and_then(|stuck| stuck.clone());
        if let Some(stuck) = stuck {
            return Err(OciError::Transport {
                method: method.to_string(),
                url: target.to_string(),
                message: format!("skopeo proxy unusable: {stuck}"),
            });
        }
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                let message = format!(
                    "no answer from skopeo within {:?} ({method} {target})",
                    self.config.timeout
                );
                if let Ok(mut stuck) = self.stuck.lock() {
                    *stuck = Some(message.clone());
                }
                Err(OciError::Transport {
                    method: method.to_string(),
                    url: target.to_string(),
                    message,
                })
            }
        }
    }

    fn cached_image(&self, target: &str) -> Option<Arc<OpenedImage>> {
        let opened = self.opened.lock().ok()?;
        opened.get(target).map(|o| Arc::clone(&o.image))
    }

    fn remember(
        &self,
        repository: &Repository,
        target: &str,
        image: OpenedImage,
    ) -> Arc<OpenedImage> {
        let image = Arc::new(image);
        if let Ok(mut opened) = self.opened.lock() {
            opened.entry(target.to_string()).or_insert(Opened {
                image: Arc::clone(&image),
                manifest: None,
            });
        }
        if let Ok(mut by_repository) = self.by_repository.lock() {
            by_repository.insert(repository.to_string(), Arc::clone(&image));
        }
        image
    }

    /// Open `target` (cached); `None` when there is no such manifest.
    async fn open(
        &self,
        repository: &Repository,
        target: &str,
    ) -> Result<Option<Arc<OpenedImage>>> {
        if let Some(image) = self.cached_image(target) {
            return Ok(Some(image));
        }
        let opened = self
            .call("OpenImage", target, async {
                if self.protocol >= OPEN_IMAGE_OPTIONAL {
                    self.proxy
                        .open_image_optional(target)
                        .await
                        .map_err(|e| map_error("OpenImageOptional", target, target, &e))
                } else {
                    match self.proxy.open_image(target).await {
                        Ok(image) => Ok(Some(image)),
                        Err(e) => match map_error("OpenImage", target, target, &e) {
                            OciError::NotFound(_) => Ok(None),
                            other => Err(other),
                        },
                    }
                }
            })
            .await?;
        Ok(opened.map(|image| self.remember(repository, target, image)))
    }

    /// The manifest of an open image as skopeo gives it (cached): its
    /// digest, of the bytes the registry holds, and its bytes, converted to
    /// OCI where they were not.
    async fn raw_manifest(&self, target: &str, image: &OpenedImage) -> Result<(String, Bytes)> {
        if let Some(raw) = self
            .opened
            .lock()
            .ok()
            .and_then(|opened| opened.get(target).and_then(|o| o.manifest.clone()))
        {
            return Ok(raw);
        }
        let (digest, raw) = self
            .call("GetManifest", target, async {
                self.proxy
                    .fetch_manifest_raw_oci(image)
                    .await
                    .map_err(|e| map_error("GetManifest", target, target, &e))
            })
            .await?;
        if raw.len() > crate::client::MAX_MANIFEST_BYTES {
            return Err(OciError::TooLarge {
                what: format!("manifest of {target}"),
                limit: crate::client::MAX_MANIFEST_BYTES,
            });
        }
        let raw = (digest, Bytes::from(raw));
        if let Ok(mut opened) = self.opened.lock()
            && let Some(entry) = opened.get_mut(target)
        {
            entry.manifest = Some(raw.clone());
        }
        Ok(raw)
    }

    /// Open `reference` and read its manifest's digest and bytes; for a
    /// digest reference, the digest must be the one asked for: skopeo
    /// answers an index's digest with one platform's image, which is not
    /// what was asked.
    async fn open_manifest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<Option<(String, Bytes)>> {
        let target = docker_reference(repository, reference)?;
        let Some(image) = self.open(repository, &target).await? else {
            return Ok(None);
        };
        let (digest, bytes) = self.raw_manifest(&target, &image).await?;
        if reference.starts_with("sha256:") && digest != reference {
            return Err(OciError::DigestMismatch {
                what: format!(
                    "manifest of {target} (skopeo resolved an index to one platform's image; read indexes with the built-in client)"
                ),
                expected: reference.to_string(),
                actual: digest,
            });
        }
        Ok(Some((digest, bytes)))
    }

    /// The manifest under a tag or digest, its bytes checked against its
    /// digest. An index is resolved by skopeo to the host's platform: what
    /// comes back is never an index, and an index asked for by digest is
    /// refused.
    pub async fn get_manifest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<FetchedManifest> {
        let target = docker_reference(repository, reference)?;
        let (digest, bytes) = self
            .open_manifest(repository, reference)
            .await?
            .ok_or_else(|| OciError::NotFound(target.clone()))?;
        // skopeo converts Docker schema 2 manifests to OCI and still gives
        // the original digest: such bytes are not what the digest names,
        // and signatures are over the digest, so they are refused.
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what: format!(
                    "manifest of {target} (skopeo converts non-OCI manifests; read those with the built-in client)"
                ),
                expected: digest,
                actual,
            });
        }
        Ok(FetchedManifest {
            media_type: declared_or_oci(&bytes),
            bytes,
            digest,
        })
    }

    /// The image manifest `reference` gives this host, the way bootc's
    /// pull sees it: an index (by tag or by digest) resolved to the host's
    /// platform, and a Docker manifest converted to OCI. The digest is
    /// skopeo's, of the registry's bytes of that image, so it can differ
    /// from a digest asked for (an index's) and need not be the digest of
    /// the bytes (a converted manifest). For reading labels and layers,
    /// never for checking a signature over the bytes.
    pub async fn get_manifest_as_host_pulls(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<FetchedManifest> {
        let target = docker_reference(repository, reference)?;
        let Some(image) = self.open(repository, &target).await? else {
            return Err(OciError::NotFound(target));
        };
        let (digest, bytes) = self.raw_manifest(&target, &image).await?;
        Ok(FetchedManifest {
            media_type: declared_or_oci(&bytes),
            bytes,
            digest,
        })
    }

    /// The manifest a tag or digest points at, `None` when there is none.
    /// Only its digest is vouched for: skopeo's, of the registry's bytes
    /// (the size and media type are of what skopeo hands over, converted to
    /// OCI where it was not).
    pub async fn resolve(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<Option<ManifestHead>> {
        let Some((digest, bytes)) = self.open_manifest(repository, reference).await? else {
            return Ok(None);
        };
        Ok(Some(ManifestHead {
            size: bytes.len() as u64,
            digest,
            media_type: declared_or_oci(&bytes),
        }))
    }

    /// A blob of exactly `size` bytes, at most `limit`, checked against
    /// `digest` by skopeo and again here. Some manifest of `repository`
    /// must have been read through this reader first: the proxy fetches
    /// blobs through an open image.
    pub async fn get_blob(
        &self,
        repository: &Repository,
        digest: &str,
        size: u64,
        limit: usize,
    ) -> Result<Bytes> {
        let target = format!("docker://{repository}@{digest}");
        let what = format!("blob {digest} in {repository}");
        if !cairn_graph::digest::is_sha256_digest(digest) {
            return Err(OciError::invalid(what, "not a sha256 digest"));
        }
        let parsed: containers_image_proxy::oci_spec::image::Digest = digest
            .parse()
            .map_err(|e| OciError::invalid(what.clone(), e))?;
        if size > limit as u64 {
            return Err(OciError::TooLarge { what, limit });
        }
        let image = self
            .by_repository
            .lock()
            .ok()
            .and_then(|by_repository| by_repository.get(&repository.to_string()).cloned())
            .ok_or_else(|| {
                OciError::invalid(
                    what.clone(),
                    "no manifest of the repository was read through skopeo yet; blobs are fetched through an open image",
                )
            })?;
        let bytes = self
            .call("GetBlob", &target, async {
                let (reader, finish) = self
                    .proxy
                    .get_blob(&image, &parsed, size)
                    .await
                    .map_err(|e| map_error("GetBlob", &target, &what, &e))?;
                // The reader is dropped once `size + 1` bytes are in (or it
                // ends), so skopeo is never left blocked on a full pipe while
                // FinishPipe waits for it.
                let read = async move {
                    let mut data = Vec::new();
                    let result = reader.take(size + 1).read_to_end(&mut data).await;
                    result.map(|_| data)
                };
                let (read, finished) = tokio::join!(read, finish);
                let data = read.map_err(|e| OciError::Transport {
                    method: "GetBlob".into(),
                    url: target.clone(),
                    message: format!("reading the blob pipe: {e}"),
                })?;
                let read_size = data.len() as u64;
                if read_size > size {
                    return Err(OciError::invalid(
                        what.clone(),
                        format!("more than the {size} bytes its descriptor says"),
                    ));
                }
                // A short read is most often the transfer failing: skopeo's
                // own word on it says which.
                finished.map_err(|e| map_error("GetBlob", &target, &what, &e))?;
                if read_size != size {
                    return Err(OciError::invalid(
                        what.clone(),
                        format!("{read_size} bytes, its descriptor says {size}"),
                    ));
                }
                let actual = sha256_digest(&data);
                if actual != digest {
                    return Err(OciError::DigestMismatch {
                        what: what.clone(),
                        expected: digest.to_string(),
                        actual,
                    });
                }
                Ok(Bytes::from(data))
            })
            .await?;
        Ok(bytes)
    }

    /// Every tag of `repository`, from `skopeo list-tags` run with the
    /// same settings. `skopeo list-tags` asks only the repository it is
    /// given, so each place of [`ProxyConfig::mirrors`] is asked in turn
    /// (mirrors first, as a pull goes), moving on when one fails; the
    /// repository's own error is the one reported.
    pub async fn list_tags(&self, repository: &Repository) -> Result<Vec<String>> {
        let name = repository.to_string();
        let mut last = None;
        for place in self.config.mirrors.for_tag(&name) {
            let at = match Repository::parse(&place) {
                Ok(at) => at,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            // skopeo finds no registries.conf entry for a mirror named
            // directly: its `insecure` is passed along.
            let insecure = place != name && self.config.mirrors.allows_plain_http(&place);
            match self.list_tags_at(&at, insecure).await {
                Ok(tags) => return Ok(tags),
                Err(e) => {
                    if place != name {
                        tracing::warn!(mirror = %place, repository = %name, error = %e, "listing tags at a mirror failed; trying the next place");
                    }
                    last = Some(e);
                }
            }
        }
        // The last place is the repository's own: its error is the one to report.
        Err(last.unwrap_or_else(|| OciError::NotFound(format!("docker://{name}"))))
    }

    /// `skopeo list-tags` of exactly `repository`; `insecure` lets it
    /// reach that registry over plain HTTP or without a TLS check.
    async fn list_tags_at(&self, repository: &Repository, insecure: bool) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(rename = "Tags", default)]
            tags: Option<Vec<String>>,
        }
        let target = format!("docker://{repository}");
        let what = format!("tag list of {repository}");
        let mut command = tokio::process::Command::new(&self.skopeo);
        command.args(self.config.global_args()).arg("list-tags");
        match &self.config.auth {
            ProxyAuth::Default => {}
            ProxyAuth::File(path) => {
                command.arg("--authfile").arg(path);
            }
            ProxyAuth::Anonymous => {
                command.arg("--no-creds");
            }
        }
        if let Some(dir) = &self.config.cert_dir {
            command.arg("--cert-dir").arg(dir);
        }
        if !self.config.tls_verify || insecure {
            command.arg("--tls-verify=false");
        }
        command
            .arg(&target)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // A process of its own, killed when dropped: its timeout leaves the
        // proxy usable, unlike a proxy call's.
        self.calls.fetch_add(1, Ordering::Relaxed);
        let listing = async {
            let spawn_error = |e: std::io::Error| OciError::Transport {
                method: "list-tags".into(),
                url: target.clone(),
                message: format!("running {}: {e}", self.skopeo.display()),
            };
            let mut child = command.spawn().map_err(spawn_error)?;
            let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
                return Err(spawn_error(std::io::Error::other("no pipes")));
            };
            // Each pipe is dropped as soon as its limit is reached, so a
            // skopeo that writes more gets EPIPE rather than blocking.
            let read_out = async move {
                let mut out = Vec::new();
                let limit = MAX_TAG_LIST_OUTPUT as u64 + 1;
                stdout.take(limit).read_to_end(&mut out).await.map(|_| out)
            };
            let read_err = async move {
                let mut err = Vec::new();
                let limit = MAX_STDERR as u64;
                stderr.take(limit).read_to_end(&mut err).await.map(|_| err)
            };
            let (out, err) = tokio::join!(read_out, read_err);
            let out = out.map_err(spawn_error)?;
            let err = err.map_err(spawn_error)?;
            if out.len() > MAX_TAG_LIST_OUTPUT {
                // Dropping the child kills it.
                return Err(OciError::TooLarge {
                    what: what.clone(),
                    limit: MAX_TAG_LIST_OUTPUT,
                });
            }
            let status = child.wait().await.map_err(spawn_error)?;
            Ok((status, out, err))
        };
        let (status, out, err) = tokio::time::timeout(self.config.timeout, listing)
            .await
            .map_err(|_| OciError::Transport {
                method: "list-tags".into(),
                url: target.clone(),
                message: format!("no answer from skopeo within {:?}", self.config.timeout),
            })??;
        if !status.success() {
            let message = skopeo_message(&String::from_utf8_lossy(&err));
            return Err(
                match classify_text(&message, &[target.as_str(), &repository.to_string()]) {
                    Failure::NotFound => OciError::NotFound(target),
                    Failure::Unauthorized => OciError::Unauthorized {
                        url: target,
                        message,
                    },
                    Failure::Unreachable => OciError::Transport {
                        method: "list-tags".into(),
                        url: target,
                        message,
                    },
                    Failure::Status(status) => OciError::Status {
                        method: "list-tags".into(),
                        url: target,
                        status,
                        body: message,
                    },
                    Failure::Other => OciError::invalid(
                        format!("skopeo list-tags {target}"),
                        format!("{status}: {message}"),
                    ),
                },
            );
        }
        let list: TagList = serde_json::from_slice(&out).map_err(|e| OciError::invalid(what, e))?;
        Ok(list.tags.unwrap_or_default())
    }

    /// Stop skopeo, reporting how it ended. A reader whose call timed out
    /// is only dropped: the crate's shutdown needs every request finished,
    /// and the timed-out one may never be. Its skopeo ends with the agent
    /// (setpriv's parent-death signal) or when its request does.
    pub async fn finish(self) -> Result<()> {
        let target = self.skopeo.display().to_string();
        let failed = |message: String| OciError::Transport {
            method: "Shutdown".into(),
            url: target.clone(),
            message,
        };
        let stuck = self.stuck.lock().ok().and_then(|stuck| stuck.clone());
        if let Some(stuck) = stuck {
            return Err(failed(format!("not shut down cleanly: {stuck}")));
        }
        // On its own task: should the crate panic, that is an error here;
        // and bounded, since a skopeo that never exits must not hold the
        // caller (its `lifetime` ends it).
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, tokio::spawn(self.proxy.finalize())).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(failed(e.to_string())),
            Ok(Err(e)) => Err(failed(format!("the proxy's shutdown failed: {e}"))),
            Err(_) => Err(failed(format!("skopeo did not stop within {timeout:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skopeo_messages_sort_into_cairn_s_kinds() {
        let cases = [
            (
                "reading manifest latest in 127.0.0.1:5000/x: manifest unknown: manifest unknown",
                Failure::NotFound,
            ),
            (
                "fetching blob: invalid status code from registry 404 (Not Found)",
                Failure::NotFound,
            ),
            (
                "pinging container registry 127.0.0.1:1: Get \"https://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                Failure::Unreachable,
            ),
            (
                "reading manifest x: unauthorized: authentication required",
                Failure::Unauthorized,
            ),
            (
                "fetching blob: invalid status code from registry 503 (Service Unavailable)",
                Failure::Status(503),
            ),
            (
                "registry 127.0.0.1:5000/blockedns is blocked in /etc/containers/registries.conf",
                Failure::Other,
            ),
            // skopeo 1.9.3 against a gateway answering 502: a status, which
            // fails a scan, never an unusable image it would skip.
            (
                "reading manifest sha256:0a1d in 127.0.0.1:5000/x: received unexpected HTTP status: 502 Bad Gateway",
                Failure::Status(502),
            ),
            (
                "reading manifest latest in quay.io/x: toomanyrequests: Rate limit exceeded",
                Failure::Status(429),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(classify_text(text, &[]), expected, "{text}");
        }
    }

    /// Refusals never pass for absences: names in the request say nothing,
    /// a mirror's "unknown" does not hide the origin's failure, transport
    /// failures win, and a local "permission denied" is no login problem.
    #[test]
    fn refusals_and_outages_never_read_as_absent() {
        let cases = [
            (
                "registry r.example/denied-os is blocked in /etc/containers/registries.conf",
                &["r.example/denied-os"][..],
                Failure::Other,
            ),
            (
                "reading manifest v1 in r.example/os: (Mirrors also failed: [m.example/os:v1: reading manifest v1 in m.example/os: manifest unknown]): r.example/os:v1: pinging container registry r.example: Get \"https://r.example/v2/\": dial tcp: lookup r.example: no such host",
                &[],
                Failure::Unreachable,
            ),
            (
                "pinging container registry r.example: invalid status code from registry 404 (Not Found)",
                &[],
                Failure::Unreachable,
            ),
            (
                "reading manifest v1 in r.example/os: Get \"https://r.example/v2/os/manifests/v1\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                &[],
                Failure::Unreachable,
            ),
            (
                "reading blob sha256:aa: remote error: tls: bad certificate",
                &[],
                Failure::Unreachable,
            ),
            (
                "open /etc/ostree/auth.json: permission denied",
                &[],
                Failure::Other,
            ),
            (
                "reading manifest v1 in r.example/os: denied: requested access to the resource is denied",
                &[],
                Failure::Unauthorized,
            ),
        ];
        for (text, names, expected) in cases {
            assert_eq!(classify_text(text, names), expected, "{text}");
        }
    }

    #[test]
    fn references_become_docker_references_and_bad_ones_are_refused() {
        let repository = Repository::parse("registry.example:5000/os/graph").expect("repository");
        assert_eq!(
            docker_reference(&repository, "cairn-graph-stable").expect("tag"),
            "docker://registry.example:5000/os/graph:cairn-graph-stable"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            docker_reference(&repository, &digest).expect("digest"),
            format!("docker://registry.example:5000/os/graph@{digest}")
        );
        assert!(docker_reference(&repository, "sha256:short").is_err());
        assert!(docker_reference(&repository, "bad tag").is_err());
    }

    #[test]
    fn skopeo_s_log_line_gives_its_message() {
        assert_eq!(
            skopeo_message(
                "time=\"2026-11-30T22:54:13Z\" level=fatal msg=\"Error listing: \\\"x\\\" is blocked\"\n"
            ),
            "Error listing: \"x\" is blocked"
        );
        assert_eq!(skopeo_message(" plain text\n"), "plain text");
    }

    /// The agent shares one reader between tasks and awaits store reads
    /// inside spawned ones.
    #[test]
    fn readers_and_their_reads_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<ProxyReader>();
        send_sync::<crate::Store>();
        let repository = Repository::parse("registry.example/os").expect("repository");
        let reads = |store: crate::Store| async move {
            let _ = store.get_manifest("tag").await;
            let _ = store.resolve("tag").await;
            let _ = store.get_blob_sized("sha256:x", 1, 1).await;
            let _ = store.list_tags().await;
        };
        // Built, never run: only its type is checked.
        let _ = |reader: Arc<ProxyReader>| {
            send(&reads(crate::Store::proxy(reader, repository.clone())))
        };
    }

    #[test]
    fn protocol_versions_order_numerically() {
        assert!(ProtocolVersion(0, 2, 10) > OPEN_IMAGE_OPTIONAL);
        assert!(ProtocolVersion(0, 2, 3) < OPEN_IMAGE_OPTIONAL);
        assert_eq!(OLDEST_PROTOCOL.to_string(), "0.2.3");
    }
}
