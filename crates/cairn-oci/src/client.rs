//! A small registry client for the OCI distribution API, on reqwest with rustls.
//!
//! Written for Cairn rather than taken from a general-purpose crate because
//! the scanner needs things those hide: the `Link` header for tag pagination,
//! exact `Accept` lists (Debian's registry returns 404 for OCI manifests
//! otherwise), HEAD requests with `Docker-Content-Digest`, and a request
//! counter so that the cost of a scan can be measured.

use crate::auth::{Challenge, Credentials, Login};
use crate::digest::sha256_digest;
use crate::error::{OciError, Result};
use crate::http::{BodyError, Http, Overflow, RetryPolicy, error_chain, limits, met_plain_http};
use crate::reference::Repository;
use crate::registries_conf::{RegistriesConf, RegistriesConfError};
use base64::Engine;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest type Cairn reads, for `Accept`.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest Cairn accepts (registries cap manifests at 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = limits::MANIFEST;

/// The slowest link a blob transfer is given time for, in bytes a second
/// (on top of [`ClientOptions::timeout`]): 256 KiB/s, a 1 GiB layer in about
/// 70 minutes.
pub const SLOWEST_TRANSFER_BYTES_PER_SECOND: u64 = 256 * 1024;

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Logins by registry.
    pub credentials: Credentials,
    /// Registries spoken to over plain HTTP (for example `127.0.0.1:5000` in tests).
    /// Every other registry is reached over HTTPS only.
    pub insecure_registries: Vec<String>,
    /// Timeout of each request.
    pub timeout: Duration,
    /// Retries after a 429, a 5xx or a transport error, for registry calls
    /// and plain URLs alike.
    pub retries: u32,
    /// First pause between retries; it doubles each time.
    pub backoff: Duration,
    /// The containers tools' `registries.conf`: a repository it marks
    /// insecure is tried over HTTPS first and over plain HTTP when its
    /// registry does not speak TLS. A file that could not be read fails
    /// every registry request (not a local file's read) with its error.
    pub registries_conf: std::result::Result<RegistriesConf, Arc<RegistriesConfError>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: Credentials::none(),
            insecure_registries: Vec::new(),
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(200),
            registries_conf: Ok(RegistriesConf::default()),
        }
    }
}

/// What a HEAD or GET of a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The manifest digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A fetched manifest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes.
    pub bytes: Bytes,
    /// The media type the registry gave.
    pub media_type: String,
    /// The sha256 digest of the bytes.
    pub digest: String,
}

/// What a server said about a resource's version, for the next conditional GET.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
}

/// The outcome of a conditional GET.
#[derive(Debug, Clone)]
pub enum Conditional {
    /// New content, with its validators.
    Fetched {
        /// The body.
        bytes: Bytes,
        /// For the next request.
        validators: Validators,
    },
    /// 304: unchanged since the validators given.
    NotModified,
    /// 404.
    NotFound,
}

/// What a cross-repository mount request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The registry linked the blob in: nothing to send.
    Mounted,
    /// The registry declined and opened this upload session instead (an
    /// absolute URL).
    Upload(String),
}

/// A registry client; cheap to clone, shares its connection pool and tokens.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: Http,
    options: ClientOptions,
    /// `Authorization` values by `host/repository`.
    authorizations: Mutex<HashMap<String, HeaderValue>>,
    /// Hosts that `registries.conf` lets speak plain HTTP and that did.
    plain_http_hosts: Mutex<std::collections::HashSet<String>>,
}

impl RegistryClient {
    /// A client with these options.
    pub fn new(options: ClientOptions) -> Result<Self> {
        let retry = RetryPolicy {
            retries: options.retries,
            backoff: options.backoff,
        };
        let http =
            Http::new(options.timeout, retry).map_err(|e| OciError::invalid("HTTP client", e))?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                options,
                authorizations: Mutex::new(HashMap::new()),
                plain_http_hosts: Mutex::new(std::collections::HashSet::new()),
            }),
        })
    }

    /// HTTP requests sent so far, token requests and retries included.
    pub fn request_count(&self) -> u64 {
        self.inner.http.request_count()
    }

    /// Requests sent so far other than GET and HEAD: the ones that may
    /// change a registry.
    pub fn write_count(&self) -> u64 {
        self.inner.http.write_count()
    }

    fn base_url(&self, repository: &Repository) -> String {
        let host = repository.api_host();
        let scheme = if self.is_insecure(host)
            || self.is_insecure(&repository.registry)
            || self.fell_back_to_plain_http(host)
        {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}/v2/{}", repository.path)
    }

    /// `host` (`name[:port]`) is listed as insecure, by name or by a
    /// `*.domain` pattern as `registries.conf` writes one.
    fn is_insecure(&self, host: &str) -> bool {
        self.inner.options.insecure_registries.iter().any(|listed| {
            listed == host
                || listed.strip_prefix("*.").is_some_and(|domain| {
                    host.strip_suffix(domain)
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
                })
        })
    }

    /// `registries.conf` marks `repository` insecure.
    fn conf_allows_plain_http(&self, repository: &Repository) -> bool {
        let name = format!("{}/{}", repository.registry, repository.path);
        self.inner
            .options
            .registries_conf
            .as_ref()
            .is_ok_and(|conf| conf.allows_plain_http(&name))
    }

    /// `host` was found to speak plain HTTP for a repository `registries.conf`
    /// marks insecure.
    fn fell_back_to_plain_http(&self, host: &str) -> bool {
        self.inner
            .plain_http_hosts
            .lock()
            .is_ok_and(|hosts| hosts.contains(host))
    }

    fn auth_key(repository: &Repository) -> String {
        format!("{}/{}", repository.api_host(), repository.path)
    }

    fn cached_authorization(&self, repository: &Repository) -> Option<HeaderValue> {
        let map = self.inner.authorizations.lock().ok()?;
        map.get(&Self::auth_key(repository)).cloned()
    }

    fn remember_authorization(&self, repository: &Repository, value: HeaderValue) {
        if let Ok(mut map) = self.inner.authorizations.lock() {
            map.insert(Self::auth_key(repository), value);
        }
    }

    /// Send a request through the retrying HTTP layer, authenticating on a 401.
    async fn send(
        &self,
        repository: &Repository,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response> {
        self.send_timed(repository, method, url, headers, body, None)
            .await
    }

    /// [`RegistryClient::send`], with `timeout` (the whole exchange, body
    /// included) instead of the client's own when given.
    async fn send_timed(
        &self,
        repository: &Repository,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response> {
        if let Err(error) = &self.inner.options.registries_conf {
            return Err(OciError::RegistriesConf(error.clone()));
        }
        let mut url = url.to_string();
        // Credentials go only to the registry itself, never to another origin
        // an upload `Location` or a `Link` header may name.
        let mut same_origin = origin(&url) == origin(&self.base_url(repository));
        let mut authenticated = !same_origin;
        loop {
            let authorization = if same_origin {
                self.cached_authorization(repository)
            } else {
                None
            };
            let sent = self
                .inner
                .http
                .send(|http| {
                    let mut request = http
                        .request(method.clone(), url.as_str())
                        .headers(headers.clone());
                    if let Some(body) = &body {
                        request = request.body(body.clone());
                    }
                    if let Some(value) = &authorization {
                        request = request.header(header::AUTHORIZATION, value.clone());
                    }
                    if let Some(timeout) = timeout {
                        request = request.timeout(timeout);
                    }
                    request
                })
                .await
                .map_err(|e| transport(method.as_str(), &url, &e));
            let response = match sent {
                Ok(response) => response,
                // As containers/image does for an insecure registry: HTTPS
                // first, plain HTTP once the registry shows it has no TLS.
                Err(OciError::PlainHttp { host, .. })
                    if self.conf_allows_plain_http(repository)
                        && host == repository.api_host()
                        && url.starts_with("https://") =>
                {
                    tracing::info!(%host, "registries.conf marks it insecure and it speaks plain HTTP: using HTTP");
                    if let Ok(mut hosts) = self.inner.plain_http_hosts.lock() {
                        hosts.insert(host);
                    }
                    url = format!("http://{}", &url["https://".len()..]);
                    same_origin = origin(&url) == origin(&self.base_url(repository));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated {
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse);
                let value = self.authorize(repository, &url, challenge).await?;
                self.remember_authorization(repository, value);
                authenticated = true;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(OciError::Unauthorized {
                    url: url.to_string(),
                    message: format!("HTTP {}", status.as_u16()),
                });
            }
            return Ok(response);
        }
    }

    /// Work out the `Authorization` value a challenge asks for.
    async fn authorize(
        &self,
        repository: &Repository,
        url: &str,
        challenge: Option<Challenge>,
    ) -> Result<HeaderValue> {
        let login = self.inner.options.credentials.for_repository(repository);
        match challenge {
            Some(Challenge::Basic) => {
                let login = login.ok_or_else(|| OciError::Unauthorized {
                    url: url.to_string(),
                    message: format!(
                        "the registry wants a login and none is configured for {repository}"
                    ),
                })?;
                header_value(&basic(login))
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let token = self
                    .fetch_token(&realm, service.as_deref(), scope.as_deref(), login)
                    .await?;
                header_value(&format!("Bearer {token}"))
            }
            None => Err(OciError::Unauthorized {
                url: url.to_string(),
                message: "HTTP 401 without a challenge Cairn understands".into(),
            }),
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        login: Option<&Login>,
    ) -> Result<String> {
        // A password or token request over plain HTTP only for hosts the
        // operator named as insecure.
        let realm_host = url::Url::parse(realm)
            .ok()
            .map(|u| match u.port() {
                Some(port) => format!("{}:{port}", u.host_str().unwrap_or_default()),
                None => u.host_str().unwrap_or_default().to_string(),
            })
            .unwrap_or_default();
        if !realm.starts_with("https://")
            && !self.is_insecure(&realm_host)
            && !self.fell_back_to_plain_http(&realm_host)
        {
            return Err(OciError::Unauthorized {
                url: realm.to_string(),
                message: "the token endpoint is not https and its host is not listed as insecure"
                    .into(),
            });
        }
        let mut query = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        if let Some(scope) = scope {
            query.push(("scope", scope));
        }
        let response = self
            .inner
            .http
            .send(|http| {
                let request = http.get(realm).query(&query);
                match login {
                    Some(login) => request.basic_auth(&login.username, Some(&login.password)),
                    None => request,
                }
            })
            .await
            .map_err(|e| transport("GET", realm, &e))?;
        if !response.status().is_success() {
            return Err(OciError::Unauthorized {
                url: realm.to_string(),
                message: format!(
                    "token endpoint answered HTTP {}",
                    response.status().as_u16()
                ),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        // The realm is wherever the registry points: read no more than a token needs.
        let bytes = read_limited(response, "GET", realm, limits::TOKEN_REPLY).await?;
        let reply: TokenReply = serde_json::from_slice(&bytes)
            .map_err(|e| OciError::invalid(format!("token reply from {realm}"), e))?;
        reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OciError::invalid(format!("token reply from {realm}"), "no token"))
    }

    /// Every tag of a repository, following `Link` pagination when the registry uses it.
    pub async fn list_tags(&self, repository: &Repository) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let base = self.base_url(repository);
        let mut url = format!("{base}/tags/list?n=1000");
        let mut tags = Vec::new();
        // A registry that loops its Link header must not loop us for ever.
        for _ in 0..10_000 {
            let response = self
                .send(repository, Method::GET, &url, HeaderMap::new(), None)
                .await?;
            let response = expect_success(response, "GET", &url).await?;
            let next = next_link(response.headers(), &url);
            if let Some(next) = &next
                && origin(next) != origin(&base)
            {
                return Err(OciError::invalid(
                    format!("tag list of {repository}"),
                    format!("pagination link to another origin refused: {next}"),
                ));
            }
            let bytes = read_limited(response, "GET", &url, limits::TAG_LIST_PAGE).await?;
            let page: TagList = serde_json::from_slice(&bytes)
                .map_err(|e| OciError::invalid(format!("tag list of {repository}"), e))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
        Err(OciError::invalid(
            format!("tag list of {repository}"),
            "too many pages",
        ))
    }

    /// GET a plain URL (a document or its `.sig`); `None` on 404. Plain HTTP
    /// only for hosts listed as insecure registries.
    pub async fn get_url(&self, url: &str, limit: usize) -> Result<Option<Bytes>> {
        match self
            .get_url_conditional(url, limit, &Validators::default())
            .await?
        {
            Conditional::Fetched { bytes, .. } => Ok(Some(bytes)),
            Conditional::NotFound => Ok(None),
            // Never happens without validators; treat as absent rather than guess.
            Conditional::NotModified => Ok(None),
        }
    }

    /// GET a URL with `If-None-Match`/`If-Modified-Since`, so that an
    /// unchanged source costs one small request.
    pub async fn get_url_conditional(
        &self,
        url: &str,
        limit: usize,
        validators: &Validators,
    ) -> Result<Conditional> {
        self.fetch_url(url, limit, validators, None).await
    }

    /// GET a JSON API (Cincinnati's `/v1/graph` insists on `Accept:
    /// application/json`); `None` when the URL is not found.
    pub async fn get_json_url(&self, url: &str, limit: usize) -> Result<Option<Bytes>> {
        match self
            .fetch_url(url, limit, &Validators::default(), Some("application/json"))
            .await?
        {
            Conditional::Fetched { bytes, .. } => Ok(Some(bytes)),
            Conditional::NotFound | Conditional::NotModified => Ok(None),
        }
    }

    async fn fetch_url(
        &self,
        url: &str,
        limit: usize,
        validators: &Validators,
        accept: Option<&'static str>,
    ) -> Result<Conditional> {
        let parsed = url::Url::parse(url).map_err(|e| OciError::invalid(url.to_string(), e))?;
        let host = match parsed.port() {
            Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
            None => parsed.host_str().unwrap_or_default().to_string(),
        };
        let insecure = self.is_insecure(&host);
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && insecure) {
            return Err(OciError::invalid(
                url.to_string(),
                "only https URLs are accepted (plain http only for hosts given as insecure)",
            ));
        }
        // The same retrying layer as registry calls: a mirror's 503 or a
        // dropped connection is retried here too.
        let response = self
            .inner
            .http
            .send(|http| {
                let mut request = http.get(url);
                if let Some(accept) = accept {
                    request = request.header(header::ACCEPT, accept);
                }
                if let Some(etag) = &validators.etag {
                    request = request.header(header::IF_NONE_MATCH, etag);
                }
                if let Some(modified) = &validators.last_modified {
                    request = request.header(header::IF_MODIFIED_SINCE, modified);
                }
                request
            })
            .await
            .map_err(|e| transport("GET", url, &e))?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(Conditional::NotFound),
            StatusCode::NOT_MODIFIED => return Ok(Conditional::NotModified),
            _ => {}
        }
        let response = expect_success(response, "GET", url).await?;
        let header_text = |name: header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let validators = Validators {
            etag: header_text(header::ETAG),
            last_modified: header_text(header::LAST_MODIFIED),
        };
        let bytes = read_limited(response, "GET", url, limit).await?;
        Ok(Conditional::Fetched { bytes, validators })
    }

    /// HEAD a manifest by tag or digest; `None` when it does not exist.
    pub async fn head_manifest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<Option<ManifestHead>> {
        check_reference(reference)?;
        let url = format!("{}/manifests/{reference}", self.base_url(repository));
        let response = self
            .send(repository, Method::HEAD, &url, accept_manifests(), None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_success(response, "HEAD", &url).await?;
        let headers = response.headers();
        let digest = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let media_type = content_type(headers);
        let size = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match digest {
            Some(digest) if cairn_graph::digest::is_sha256_digest(&digest) => {
                Ok(Some(ManifestHead {
                    digest,
                    media_type,
                    size,
                }))
            }
            // Older registries may omit the header: fall back to GET and hash.
            _ => match self.get_manifest(repository, reference).await {
                Ok(manifest) => Ok(Some(ManifestHead {
                    digest: manifest.digest,
                    media_type: manifest.media_type,
                    size: manifest.bytes.len() as u64,
                })),
                Err(OciError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// GET a manifest by tag or digest, checking the digest of what arrives.
    pub async fn get_manifest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<FetchedManifest> {
        check_reference(reference)?;
        let url = format!("{}/manifests/{reference}", self.base_url(repository));
        let response = self
            .send(repository, Method::GET, &url, accept_manifests(), None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(OciError::NotFound(format!(
                "manifest {repository}:{reference}"
            )));
        }
        let response = expect_success(response, "GET", &url).await?;
        let media_type = content_type(response.headers());
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_limited(response, "GET", &url, limits::MANIFEST).await?;
        let digest = sha256_digest(&bytes);
        let expected = if cairn_graph::digest::is_sha256_digest(reference) {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(OciError::DigestMismatch {
                what: format!("manifest {repository}:{reference}"),
                expected,
                actual: digest,
            });
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// GET a blob, checking its digest; `limit` bounds its size.
    pub async fn get_blob(
        &self,
        repository: &Repository,
        digest: &str,
        limit: usize,
    ) -> Result<Bytes> {
        check_digest(digest)?;
        let url = format!("{}/blobs/{digest}", self.base_url(repository));
        let response = self
            .send(repository, Method::GET, &url, HeaderMap::new(), None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(OciError::NotFound(format!("blob {repository}@{digest}")));
        }
        let response = expect_success(response, "GET", &url).await?;
        let bytes = read_limited(response, "GET", &url, limit).await?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what: format!("blob {repository}@{digest}"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// True when the registry has this blob.
    pub async fn blob_exists(&self, repository: &Repository, digest: &str) -> Result<bool> {
        check_digest(digest)?;
        let url = format!("{}/blobs/{digest}", self.base_url(repository));
        let response = self
            .send(repository, Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            _ => Err(expect_success(response, "HEAD", &url)
                .await
                .err()
                .unwrap_or_else(|| OciError::invalid(url.clone(), "unexpected status"))),
        }
    }

    /// Upload a blob (monolithically) unless the registry already has it.
    pub async fn push_blob(&self, repository: &Repository, data: Bytes) -> Result<String> {
        let digest = sha256_digest(&data);
        if self.blob_exists(repository, &digest).await? {
            return Ok(digest);
        }
        let upload = self.start_upload(repository).await?;
        self.finish_upload(repository, &upload, data).await
    }

    /// How long moving `bytes` may take, one way: the client's own timeout
    /// plus the bytes at [`SLOWEST_TRANSFER_BYTES_PER_SECOND`]. A fixed
    /// timeout would fail every large blob on a slow link.
    pub fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.inner
            .options
            .timeout
            .saturating_add(Duration::from_secs(
                bytes / SLOWEST_TRANSFER_BYTES_PER_SECOND,
            ))
    }

    /// Open an upload session (a POST); returns its `Location`, resolved.
    pub async fn start_upload(&self, repository: &Repository) -> Result<String> {
        let start = format!("{}/blobs/uploads/", self.base_url(repository));
        let response = self
            .send(repository, Method::POST, &start, HeaderMap::new(), None)
            .await?;
        let response = expect_success(response, "POST", &start).await?;
        Ok(upload_location(&response, &start, repository)?.to_string())
    }

    /// GET a blob to be read a chunk at a time, nothing checked yet: the
    /// caller bounds the size and checks the digest. `timeout` covers the
    /// whole read.
    pub async fn open_blob(
        &self,
        repository: &Repository,
        digest: &str,
        timeout: Duration,
    ) -> Result<BlobReader> {
        check_digest(digest)?;
        let url = format!("{}/blobs/{digest}", self.base_url(repository));
        let response = self
            .send_timed(
                repository,
                Method::GET,
                &url,
                HeaderMap::new(),
                None,
                Some(timeout),
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(OciError::NotFound(format!("blob {repository}@{digest}")));
        }
        let response = expect_success(response, "GET", &url).await?;
        Ok(BlobReader { response, url })
    }

    /// Send the bytes at `offset` of a blob into upload session `upload`
    /// (a chunked PATCH); returns the session's next `Location`.
    pub async fn append_upload(
        &self,
        repository: &Repository,
        upload: &str,
        offset: u64,
        data: Bytes,
    ) -> Result<String> {
        let url = resolve_url(&self.base_url(repository), upload)?;
        let Some(last) = (offset + data.len() as u64).checked_sub(1) else {
            return Ok(url.to_string());
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("{offset}-{last}"))?,
        );
        let timeout = self.transfer_timeout(data.len() as u64);
        let response = self
            .send_timed(
                repository,
                Method::PATCH,
                url.as_str(),
                headers,
                Some(data),
                Some(timeout),
            )
            .await?;
        let response = expect_success(response, "PATCH", url.as_str()).await?;
        Ok(upload_location(&response, url.as_str(), repository)?.to_string())
    }

    /// Abandon upload session `upload` (a DELETE).
    pub async fn cancel_upload(&self, repository: &Repository, upload: &str) -> Result<()> {
        let url = resolve_url(&self.base_url(repository), upload)?;
        let response = self
            .send(
                repository,
                Method::DELETE,
                url.as_str(),
                HeaderMap::new(),
                None,
            )
            .await?;
        expect_success(response, "DELETE", url.as_str()).await?;
        Ok(())
    }

    /// Close upload session `upload`, whose `size` bytes were all sent, as
    /// blob `digest`; the registry checks the digest of what it received,
    /// which for a large blob on remote storage takes a while.
    pub async fn commit_upload(
        &self,
        repository: &Repository,
        upload: &str,
        digest: &str,
        size: u64,
    ) -> Result<()> {
        check_digest(digest)?;
        let mut url = resolve_url(&self.base_url(repository), upload)?;
        url.query_pairs_mut().append_pair("digest", digest);
        let response = self
            .send_timed(
                repository,
                Method::PUT,
                url.as_str(),
                HeaderMap::new(),
                Some(Bytes::new()),
                Some(self.transfer_timeout(size)),
            )
            .await?;
        expect_success(response, "PUT", url.as_str()).await?;
        Ok(())
    }

    /// Ask the registry to link blob `digest` of `from` into `to` without
    /// sending it (a cross-repository mount; both on one registry host).
    /// A registry that declines opens an upload session instead, which the
    /// caller finishes with [`RegistryClient::finish_upload`].
    pub async fn mount_blob(
        &self,
        to: &Repository,
        digest: &str,
        from: &Repository,
    ) -> Result<Mount> {
        check_digest(digest)?;
        let start = format!("{}/blobs/uploads/", self.base_url(to));
        let mut url = resolve_url(&start, "")?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", &from.path);
        let response = self
            .send(to, Method::POST, url.as_str(), HeaderMap::new(), None)
            .await?;
        let status = response.status();
        let response = expect_success(response, "POST", url.as_str()).await?;
        if status == StatusCode::CREATED {
            return Ok(Mount::Mounted);
        }
        Ok(Mount::Upload(
            upload_location(&response, url.as_str(), to)?.to_string(),
        ))
    }

    /// Send a whole blob into an upload session a POST opened (`upload` is
    /// its `Location`, resolved); returns the blob's digest.
    pub async fn finish_upload(
        &self,
        repository: &Repository,
        upload: &str,
        data: Bytes,
    ) -> Result<String> {
        let digest = sha256_digest(&data);
        let mut upload = resolve_url(&self.base_url(repository), upload)?;
        upload.query_pairs_mut().append_pair("digest", &digest);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let timeout = self.transfer_timeout(data.len() as u64);
        let response = self
            .send_timed(
                repository,
                Method::PUT,
                upload.as_str(),
                headers,
                Some(data),
                Some(timeout),
            )
            .await?;
        expect_success(response, "PUT", upload.as_str()).await?;
        Ok(digest)
    }

    /// Upload a manifest under a tag or its digest; returns its digest.
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<String> {
        check_reference(reference)?;
        let digest = sha256_digest(&bytes);
        let url = format!("{}/manifests/{reference}", self.base_url(repository));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, header_value(media_type)?);
        let response = self
            .send(repository, Method::PUT, &url, headers, Some(bytes))
            .await?;
        let response = expect_success(response, "PUT", &url).await?;
        if let Some(returned) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && returned.starts_with("sha256:")
            && returned != digest
        {
            return Err(OciError::DigestMismatch {
                what: format!("manifest pushed to {repository}:{reference}"),
                expected: digest,
                actual: returned.to_string(),
            });
        }
        Ok(digest)
    }
}

/// A blob being read from a registry, a chunk at a time.
#[derive(Debug)]
pub struct BlobReader {
    response: reqwest::Response,
    url: String,
}

impl BlobReader {
    /// The next bytes as they arrive; `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        self.response
            .chunk()
            .await
            .map_err(|e| OciError::Transport {
                method: "GET".to_string(),
                url: self.url.clone(),
                message: error_chain(&e),
            })
    }
}

/// The upload session a POST opened, as an absolute URL.
fn upload_location(
    response: &reqwest::Response,
    request_url: &str,
    repository: &Repository,
) -> Result<url::Url> {
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| OciError::invalid(format!("upload to {repository}"), "no Location"))?;
    resolve_url(request_url, location)
}

fn accept_manifests() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
    headers
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .unwrap_or_default()
}

fn basic(login: &Login) -> String {
    let raw = format!("{}:{}", login.username, login.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn header_value(text: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(text).map_err(|e| OciError::invalid("header value", e))
}

/// The URL of `rel="next"` in a `Link` header, resolved against `current`.
fn next_link(headers: &HeaderMap, current: &str) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.replace(' ', "").contains("rel=\"next\"") {
            return None;
        }
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        resolve_url(current, target).ok().map(|u| u.to_string())
    })
}

/// Scheme, host and port of a URL.
fn origin(url: &str) -> Option<(String, String, Option<u16>)> {
    let parsed = url::Url::parse(url).ok()?;
    Some((
        parsed.scheme().to_string(),
        parsed.host_str()?.to_string(),
        parsed.port_or_known_default(),
    ))
}

fn resolve_url(base: &str, target: &str) -> Result<url::Url> {
    let base = url::Url::parse(base).map_err(|e| OciError::invalid(base.to_string(), e))?;
    base.join(target)
        .map_err(|e| OciError::invalid(target.to_string(), e))
}

/// A digest as it goes into a URL path: only `sha256:` and 64 lower-case hex,
/// so that a digest from an untrusted manifest can never reshape the URL.
fn check_digest(digest: &str) -> Result<()> {
    if cairn_graph::digest::is_sha256_digest(digest) {
        Ok(())
    } else {
        Err(OciError::invalid(
            format!("digest {digest:?}"),
            "expected sha256: and 64 lower-case hex digits",
        ))
    }
}

/// A manifest reference: a tag or a digest, nothing that changes the path.
fn check_reference(reference: &str) -> Result<()> {
    if crate::reference::is_valid_tag(reference) || cairn_graph::digest::is_sha256_digest(reference)
    {
        Ok(())
    } else {
        Err(OciError::invalid(
            format!("manifest reference {reference:?}"),
            "expected a tag or a sha256 digest",
        ))
    }
}

fn transport(method: &str, url: &str, error: &reqwest::Error) -> OciError {
    if met_plain_http(error) {
        return OciError::PlainHttp {
            method: method.to_string(),
            url: url.to_string(),
            host: url_host(url),
        };
    }
    OciError::Transport {
        method: method.to_string(),
        url: url.to_string(),
        message: error_chain(error),
    }
}

/// `host[:port]` of a URL, as an insecure-registry list names it.
fn url_host(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let host = parsed.host_str().unwrap_or_default();
    match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

async fn expect_success(
    response: reqwest::Response,
    method: &str,
    url: &str,
) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(OciError::Status {
        method: method.to_string(),
        url: url.to_string(),
        status: status.as_u16(),
        body: crate::http::error_text(response, 300).await,
    })
}

/// Read a whole body through the shared size-limited reader.
async fn read_limited(
    response: reqwest::Response,
    method: &str,
    url: &str,
    limit: usize,
) -> Result<Bytes> {
    crate::http::read_body(response, limit, Overflow::Fail)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => OciError::TooLarge {
                what: format!("{method} {url}"),
                limit,
            },
            e => OciError::Transport {
                method: method.to_string(),
                url: url.to_string(),
                message: e.to_string(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_relative_and_absolute_links() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LINK,
            HeaderValue::from_static("</v2/os/tags/list?n=2&last=b>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&headers, "http://127.0.0.1:5000/v2/os/tags/list?n=2").as_deref(),
            Some("http://127.0.0.1:5000/v2/os/tags/list?n=2&last=b")
        );
        headers.insert(
            header::LINK,
            HeaderValue::from_static("<https://r.example/x>; rel=\"prev\""),
        );
        assert_eq!(
            next_link(&headers, "https://r.example/v2/os/tags/list"),
            None
        );
    }

    #[test]
    fn insecure_hosts_match_by_name_or_by_a_domain_pattern() {
        let client = RegistryClient::new(ClientOptions {
            insecure_registries: vec!["localhost:5000".into(), "*.lab.example".into()],
            ..ClientOptions::default()
        })
        .expect("client");
        assert!(client.is_insecure("localhost:5000"));
        assert!(!client.is_insecure("localhost:5001"));
        assert!(client.is_insecure("reg.lab.example"));
        assert!(client.is_insecure("a.b.lab.example"));
        assert!(!client.is_insecure("lab.example"));
        assert!(!client.is_insecure("evillab.example"));
        assert!(!client.is_insecure("reg.lab.example.com"));
    }
}
