//! A fault-injecting HTTP proxy in front of the soak's registry: every
//! agent, the stand-in bootc, `cairn serve` and the publisher reach the
//! registry through it, and the soak switches its mode to make the registry
//! fail, hang, or serve a tampered or expired document.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What the proxy does to the requests it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything unchanged.
    Normal,
    /// Answer every request with a 5xx of its own.
    Fail5xx,
    /// Hold every request unanswered until the mode changes.
    Hang,
    /// Answer the document's tag with a forged document (a higher sequence,
    /// in a manifest of its own) and, for its signature, the real document's.
    Tamper,
    /// Answer the document's tag with an older document, long expired.
    Expired,
}

impl Mode {
    /// Its name in the soak's counts.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Fail5xx => "registry 5xx",
            Mode::Hang => "registry hang",
            Mode::Tamper => "registry tampered document",
            Mode::Expired => "registry expired document",
        }
    }
}

struct Inner {
    upstream: String,
    listen: String,
    client: reqwest::Client,
    mode: watch::Sender<Mode>,
    /// Requests the faults touched, by what was done to them.
    touched: Mutex<BTreeMap<&'static str, u64>>,
    /// Forged documents by their manifest digest, and the real manifest's digest.
    forged: Mutex<BTreeMap<String, Forged>>,
    repository: String,
    document_tag: String,
    expired_tag: String,
}

/// The running proxy; it stops with the test's runtime.
pub struct FaultProxy {
    inner: Arc<Inner>,
    /// `127.0.0.1:<port>`: the registry as everyone but the image writer sees it.
    pub host: String,
}

impl FaultProxy {
    /// Proxy `upstream` (`host:port`); the document of `repository` is under
    /// `document_tag`, and the expired one to serve instead under `expired_tag`.
    pub async fn start(
        upstream: &str,
        repository: &str,
        document_tag: &str,
        expired_tag: &str,
    ) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let listen = listener.local_addr().expect("address").to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let inner = Arc::new(Inner {
            upstream: upstream.to_string(),
            listen: listen.clone(),
            client,
            mode: watch::Sender::new(Mode::Normal),
            touched: Mutex::new(BTreeMap::new()),
            forged: Mutex::new(BTreeMap::new()),
            repository: repository.to_string(),
            document_tag: document_tag.to_string(),
            expired_tag: expired_tag.to_string(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            inner,
            host: listen,
        }
    }

    /// Switch the mode.
    pub fn set(&self, mode: Mode) {
        self.inner.mode.send_replace(mode);
    }

    /// Requests the faults touched, by what was done.
    pub fn touched(&self) -> BTreeMap<&'static str, u64> {
        self.inner.touched.lock().expect("counts").clone()
    }
}

fn count(inner: &Inner, what: &'static str) {
    *inner
        .touched
        .lock()
        .expect("counts")
        .entry(what)
        .or_default() += 1;
}

async fn forward(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let mode = *inner.mode.borrow();
    match mode {
        Mode::Fail5xx => {
            count(&inner, "answered 5xx");
            let status = [500, 502, 503][request.uri().path().len() % 3];
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                "injected failure",
            )
                .into_response();
        }
        Mode::Hang => {
            count(&inner, "held unanswered");
            let mut changes = inner.mode.subscribe();
            let _ = tokio::time::timeout(
                Duration::from_secs(120),
                changes.wait_for(|m| *m != Mode::Hang),
            )
            .await;
        }
        _ => {}
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 256 << 20).await else {
        return (StatusCode::BAD_REQUEST, "body too large").into_response();
    };
    let document_path = format!("/v2/{}/manifests/{}", inner.repository, inner.document_tag);
    let mut target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string());
    let is_document = parts.uri.path() == document_path;
    // The mode now, after a hang: a request held through a hang is forwarded as is.
    let mode = *inner.mode.borrow();
    if is_document && mode == Mode::Expired && parts.method != Method::PUT {
        count(&inner, "served the expired document");
        target = format!("/v2/{}/manifests/{}", inner.repository, inner.expired_tag);
    }
    if mode == Mode::Tamper
        && is_document
        && parts.method != Method::PUT
        && let Some(forged) = forge(&inner).await
    {
        count(&inner, "served a forged document");
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, forged.media_type.as_str())
            .header("docker-content-digest", forged.digest.as_str());
        if parts.method == Method::HEAD {
            response = response.header(header::CONTENT_LENGTH, forged.manifest.len());
            return response.body(Body::empty()).unwrap_or_default();
        }
        return response
            .body(Body::from(forged.manifest))
            .unwrap_or_default();
    }
    if let Some(response) = forged_parts(&inner, parts.uri.path(), &mut target) {
        return response;
    }
    let url = format!("http://{}{target}", inner.upstream);
    let mut outgoing = inner.client.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    let Ok(bytes) = answer.bytes().await else {
        return (StatusCode::BAD_GATEWAY, "upstream body").into_response();
    };
    rewrite_location(&inner, &mut headers);
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        let length_of_head = name == header::CONTENT_LENGTH && parts.method == Method::HEAD;
        if (name != header::CONTENT_LENGTH || length_of_head)
            && name != header::TRANSFER_ENCODING
            && name != header::CONNECTION
        {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(bytes))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

/// A document as a registry between a host and the real one could forge it.
#[derive(Clone)]
struct Forged {
    /// The real manifest's digest, whose signature is replayed for the forgery.
    real_digest: String,
    manifest: Vec<u8>,
    digest: String,
    media_type: String,
    blob_digest: String,
    blob: Vec<u8>,
}

fn sha256(bytes: &[u8]) -> String {
    cairn_oci::digest::sha256_digest(bytes)
}

/// The document under the tag now, forged: its sequence raised by 1,000 and
/// its manifest pointing at the changed bytes.
async fn forge(inner: &Inner) -> Option<Forged> {
    let base = format!("http://{}/v2/{}", inner.upstream, inner.repository);
    let answer = inner
        .client
        .get(format!("{base}/manifests/{}", inner.document_tag))
        .header(header::ACCEPT, "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .ok()?;
    let media_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    let real = answer.bytes().await.ok()?;
    let real_digest = sha256(&real);
    if let Some(forged) = inner
        .forged
        .lock()
        .expect("forged")
        .values()
        .find(|f| f.real_digest == real_digest)
    {
        return Some(forged.clone());
    }
    let mut manifest: serde_json::Value = serde_json::from_slice(&real).ok()?;
    let layer = manifest["layers"][0]["digest"].as_str()?.to_string();
    let document = inner
        .client
        .get(format!("{base}/blobs/{layer}"))
        .send()
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    let mut document: serde_json::Value = serde_json::from_slice(&document).ok()?;
    let sequence = document["sequence"].as_u64()?;
    document["sequence"] = serde_json::json!(sequence + 1000);
    let blob = serde_json::to_vec(&document).ok()?;
    let blob_digest = sha256(&blob);
    manifest["layers"][0]["digest"] = serde_json::json!(blob_digest);
    manifest["layers"][0]["size"] = serde_json::json!(blob.len());
    let bytes = serde_json::to_vec(&manifest).ok()?;
    let forged = Forged {
        real_digest,
        digest: sha256(&bytes),
        manifest: bytes,
        media_type,
        blob_digest,
        blob,
    };
    inner
        .forged
        .lock()
        .expect("forged")
        .insert(forged.digest.clone(), forged.clone());
    Some(forged)
}

/// A forged document's blob is served from here, by any mode (readers may
/// come back for it); its signature tag names the real document's signature.
fn forged_parts(inner: &Inner, path: &str, target: &mut String) -> Option<Response> {
    let forged = inner.forged.lock().expect("forged");
    let blobs = format!("/v2/{}/blobs/", inner.repository);
    if let Some(digest) = path.strip_prefix(&blobs)
        && let Some(f) = forged.values().find(|f| f.blob_digest == digest)
    {
        return Some(
            Response::builder()
                .status(StatusCode::OK)
                .header("docker-content-digest", digest)
                .body(Body::from(f.blob.clone()))
                .unwrap_or_default(),
        );
    }
    let manifests = format!("/v2/{}/manifests/", inner.repository);
    if let Some(tag) = path.strip_prefix(&manifests)
        && let Some(hex) = tag
            .strip_prefix("sha256-")
            .and_then(|t| t.strip_suffix(".sig"))
        && let Some(f) = forged.get(&format!("sha256:{hex}"))
    {
        let real = f.real_digest.replace(':', "-");
        *target = format!("{manifests}{real}.sig");
    }
    None
}

/// Upload locations name the registry; clients must come back through the proxy.
fn rewrite_location(inner: &Inner, headers: &mut HeaderMap) {
    if let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        let rewritten = location.replace(&inner.upstream, &inner.listen);
        if let Ok(value) = HeaderValue::from_str(&rewritten) {
            headers.insert(header::LOCATION, value);
        }
    }
}
