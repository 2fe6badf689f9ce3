//! Update metadata that is not a Cairn document: Fedora's release index and
//! updates file, and Cincinnati `/v1/graph` answers. And the base graph of a
//! derived repository, which may be any of these or a Cairn document.

use crate::client::RegistryClient;
use crate::document::TrustPolicy;
use crate::signing::VerifyingKey;
use crate::trust::TrustedRoot;
use cairn_graph::derive::BaseGraph;
use cairn_graph::{GraphDocument, UpdateGraph};
use jiff::Timestamp;

/// Fedora's image repository; Fedora publishes no Cairn document for it.
pub const FEDORA_COREOS_REPOSITORY: &str = "quay.io/fedora/fedora-coreos";

/// Where Fedora serves `prod/streams/<stream>/releases.json` and `updates/<stream>.json`.
pub const FEDORA_METADATA_BASE: &str = "https://builds.coreos.fedoraproject.org";

/// Fedora's files are a few MB, Cincinnati answers less; far larger is not them.
const MAX_METADATA_BYTES: usize = crate::http::limits::METADATA;

/// A document made from Fedora's release index and updates file, valid for a
/// day from `now`. Fedora does not sign these; HTTPS to Fedora's host is the
/// trust, as for Zincati. Returns the document and how to name its source.
/// `oci` chooses the payloads: image digests (`true`), or ostree commit
/// checksums for hosts booted from commits (`false`), as Fedora's graph
/// builder does for `oci=true` and `oci=false`.
///
/// With a `cache` directory, each file is kept there with its `ETag` and
/// `Last-Modified`, so a check that finds nothing new costs two conditional
/// GETs answered with 304, not a few megabytes from Fedora's servers.
pub async fn fcos_document(
    client: &RegistryClient,
    base_url: Option<&str>,
    stream: &str,
    now: Timestamp,
    cache: Option<&std::path::Path>,
    oci: bool,
) -> Result<(GraphDocument, String), SourceError> {
    let base = base_url
        .unwrap_or(FEDORA_METADATA_BASE)
        .trim_end_matches('/');
    let releases_url = format!("{base}/prod/streams/{stream}/releases.json");
    let updates_url = format!("{base}/updates/{stream}.json");
    let get = async |url: &str| -> Result<Vec<u8>, SourceError> {
        let missing = || {
            SourceError::new(
                "not_found",
                format!("{url}: not found (is {stream:?} a Fedora CoreOS stream?)"),
            )
        };
        let Some(dir) = cache else {
            let body = client
                .get_url(url, MAX_METADATA_BYTES)
                .await
                .map_err(|e| SourceError::new(e.kind(), format!("{url}: {e}")))?
                .ok_or_else(missing)?;
            return Ok(body.to_vec());
        };
        let cached = CachedFile::read(dir, url);
        let validators = cached
            .as_ref()
            .map(|c| c.validators.clone())
            .unwrap_or_default();
        match client
            .get_url_conditional(url, MAX_METADATA_BYTES, &validators)
            .await
            .map_err(|e| SourceError::new(e.kind(), format!("{url}: {e}")))?
        {
            crate::client::Conditional::Fetched { bytes, validators } => {
                CachedFile::write(dir, url, &bytes, validators);
                Ok(bytes.to_vec())
            }
            crate::client::Conditional::NotModified => cached.map(|c| c.body).ok_or_else(|| {
                SourceError::new(
                    "not_modified",
                    format!("{url}: 304 Not Modified to a request without validators"),
                )
            }),
            crate::client::Conditional::NotFound => Err(missing()),
        }
    };
    let index = cairn_graph::fcos::ReleaseIndex::from_json(&get(&releases_url).await?)
        .map_err(|e| SourceError::new(e.kind(), format!("{releases_url}: {e}")))?;
    let updates = cairn_graph::fcos::Updates::from_json(&get(&updates_url).await?)
        .map_err(|e| SourceError::new(e.kind(), format!("{updates_url}: {e}")))?;
    let converted = cairn_graph::fcos::to_document(
        &index,
        &updates,
        &cairn_graph::fcos::ConvertOptions {
            // Fedora's digest-refs name its own repository; a mirror carries
            // the same digests.
            repository: FEDORA_COREOS_REPOSITORY,
            oci,
            aliases: None,
            sequence: 1,
            issued: now,
            expires: now + jiff::SignedDuration::from_hours(24),
        },
    )
    .map_err(|e| SourceError::new(e.kind(), format!("{releases_url}: {e}")))?;
    let mut document = converted.document;
    if document.stream.is_empty() {
        document.stream = stream.to_string();
    }
    document.validate().map_err(|errors| {
        let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        SourceError::new(
            "invalid_document",
            format!("{releases_url}: {}", listed.join("; ")),
        )
    })?;
    Ok((document, format!("fcos:{base} ({stream})")))
}

/// Why a graph source could not be read or trusted. The message names the
/// source; [`SourceError::kind`] is a fixed label for metrics and status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    kind: &'static str,
    message: String,
    http_status: Option<u16>,
}

impl SourceError {
    fn new(kind: &'static str, message: impl Into<String>) -> SourceError {
        SourceError {
            kind,
            message: message.into(),
            http_status: None,
        }
    }

    /// A fetch that failed, with where it was going: the fetch's kind, and
    /// the HTTP status when the server answered with one.
    fn fetch(error: &crate::error::OciError, message: impl Into<String>) -> SourceError {
        let http_status = match error {
            crate::error::OciError::Status { status, .. } => Some(*status),
            _ => None,
        };
        SourceError {
            http_status,
            ..SourceError::new(error.kind(), message)
        }
    }

    /// A server's HTTP error answer, for tests of what callers make of it.
    #[cfg(test)]
    pub(crate) fn answered(status: u16) -> SourceError {
        SourceError {
            http_status: Some(status),
            ..SourceError::new("status", format!("answered {status}"))
        }
    }

    /// The source, or what it points at, does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == "not_found"
    }

    /// The HTTP status the server answered with, when that was the failure.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// A short, fixed label: the underlying error's kind, or `not_found`,
    /// `bad_source`, `invalid_document`, `no_key`, `no_architecture`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// No architecture of a per-architecture base was served: each one's error.
    pub(crate) fn no_architecture(refused: &[SourceError]) -> SourceError {
        let each: Vec<String> = refused.iter().map(ToString::to_string).collect();
        SourceError::new(
            "no_architecture",
            format!(
                "the base serves none of the releases' architectures: {}",
                each.join("; ")
            ),
        )
    }
}

/// A file of Fedora's kept between checks: its body, the validators the
/// server gave, and the body's digest (a damaged cache is simply not used).
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedMeta {
    validators: crate::client::Validators,
    sha256: String,
}

struct CachedFile {
    body: Vec<u8>,
    validators: crate::client::Validators,
}

impl CachedFile {
    fn paths(dir: &std::path::Path, url: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let name: String = url
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        (
            dir.join(format!("{name}.body")),
            dir.join(format!("{name}.meta.json")),
        )
    }

    fn read(dir: &std::path::Path, url: &str) -> Option<CachedFile> {
        let (body_path, meta_path) = Self::paths(dir, url);
        let body = std::fs::read(body_path).ok()?;
        let meta: CachedMeta = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
        (crate::digest::sha256_digest(&body) == meta.sha256).then_some(CachedFile {
            body,
            validators: meta.validators,
        })
    }

    /// Best effort: a cache that cannot be written costs a full fetch next time.
    fn write(dir: &std::path::Path, url: &str, body: &[u8], validators: crate::client::Validators) {
        let (body_path, meta_path) = Self::paths(dir, url);
        let meta = CachedMeta {
            validators,
            sha256: crate::digest::sha256_digest(body),
        };
        let put = |path: &std::path::Path, bytes: &[u8]| -> std::io::Result<()> {
            cairn_fs::write_atomic(path, bytes).map_err(std::io::Error::other)
        };
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| put(&body_path, body))
            .and_then(|()| serde_json::to_vec(&meta).map_err(std::io::Error::other))
            .and_then(|meta| put(&meta_path, &meta));
        if let Err(e) = written {
            tracing::warn!(dir = %dir.display(), error = %e, "could not keep Fedora's file for the next check");
        }
    }
}

/// The `/v1/graph` request: the architecture, stream, payload scheme and the
/// locally computed wariness, nothing that identifies the node.
pub fn cincinnati_request(
    url: &str,
    stream: &str,
    arch: &str,
    wariness: f64,
    oci: bool,
) -> Result<url::Url, SourceError> {
    let base = url.trim_end_matches('/');
    let endpoint = if base.ends_with("/v1/graph") {
        base.to_string()
    } else {
        format!("{base}/v1/graph")
    };
    let mut request = url::Url::parse(&endpoint)
        .map_err(|e| SourceError::new("bad_source", format!("cincinnati:{url}: {e}")))?;
    if request.query().is_some() {
        return Err(SourceError::new(
            "bad_source",
            format!("cincinnati:{url}: give the server's base URL, without a query"),
        ));
    }
    request
        .query_pairs_mut()
        .append_pair("basearch", arch)
        .append_pair("stream", stream)
        .append_pair("rollout_wariness", &wariness.to_string());
    // A host booted from an image needs the OCI graph (payloads are pull specs).
    if oci {
        request.query_pairs_mut().append_pair("oci", "true");
    }
    Ok(request)
}

/// The graph a Cincinnati `/v1/graph` server computes for `wariness`, in
/// one request. The answer is unsigned; HTTPS to the configured server is
/// the trust, as for Zincati, and every payload must be a valid id. Returns
/// the graph and how to name its source. Hosts use
/// [`cincinnati_graph_for_host`].
pub async fn cincinnati_graph(
    client: &RegistryClient,
    url: &str,
    stream: &str,
    arch: &str,
    wariness: f64,
    oci: bool,
) -> Result<(UpdateGraph, String), SourceError> {
    let request = cincinnati_request(url, stream, arch, wariness, oci)?;
    let shown = format!("cincinnati:{} ({stream})", url.trim_end_matches('/'));
    let body = client
        .get_json_url(request.as_str(), MAX_METADATA_BYTES)
        .await
        .map_err(|e| SourceError::fetch(&e, format!("{shown}: {e}")))?
        .ok_or_else(|| {
            SourceError::new("not_found", format!("{shown}: {request} was not found"))
        })?;
    let parsed = cairn_graph::cincinnati::CincinnatiGraph::from_json(&body)
        .map_err(|e| SourceError::new(e.kind(), format!("{shown}: {e}")))?;
    let graph = UpdateGraph::from_cincinnati(&parsed)
        .map_err(|e| SourceError::new(e.kind(), format!("{shown}: {e}")))?;
    Ok((graph, shown))
}

/// The wariness a host sends when it must send one: two decimals, so it is
/// one of 101 values, each shared by about a hundredth of every fleet.
/// Rounded up, so the host is never taken for less wary than it is.
pub fn coarse_wariness(wariness: f64) -> f64 {
    if wariness.is_nan() {
        return 1.0;
    }
    if wariness <= 0.0 {
        return 0.0;
    }
    // The small margin keeps 0.72 (71.99999… or 72.00000…1 times 100) at 0.72.
    (wariness.min(1.0) * 100.0 - 1e-9).ceil() / 100.0
}

/// The graph a Cincinnati server serves a host, asked for without singling
/// the host out.
///
/// A host's wariness comes from its machine id and never changes: sent in
/// full with every request, it is a node id under another name. So the
/// first request says `rollout_wariness=0`, which hides no rollout edge,
/// and the host applies its own wariness to the rollout metadata the nodes
/// carry, as Fedora's graph does. Only an answer that offers `booted` an
/// update and has no rollout metadata at all (a server that keeps its
/// rollouts to itself and filters edges on its side) is asked again, with
/// [`coarse_wariness`]: a higher wariness can only take edges away, so an
/// answer with nothing to offer needs no second question.
pub async fn cincinnati_graph_for_host(
    client: &RegistryClient,
    url: &str,
    stream: &str,
    arch: &str,
    wariness: f64,
    oci: bool,
    booted: Option<&str>,
) -> Result<(UpdateGraph, String), SourceError> {
    let (graph, shown) = cincinnati_graph(client, url, stream, arch, 0.0, oci).await?;
    let offers_update = booted
        .and_then(|booted| graph.find_booted(booted))
        .is_some_and(|at| graph.successors(at).iter().any(|&to| to != at));
    if !offers_update || graph.nodes().iter().any(|node| node.rollout.is_some()) {
        return Ok((graph, shown));
    }
    cincinnati_graph(client, url, stream, arch, coarse_wariness(wariness), oci).await
}

/// Where a derived repository's base graph comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum BaseSource {
    /// Fedora's files for a stream: `fcos:<stream>` or `fcos:<stream>:<base-url>`.
    Fcos {
        /// The stream.
        stream: String,
        /// Where Fedora's files are served; Fedora's host when absent.
        base_url: Option<String>,
    },
    /// A Cincinnati server: `cincinnati:<url>`, asked for `stream`.
    Cincinnati {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
    },
    /// A Cairn document: a registry reference, `oci:DIR[:TAG]`, a file or a URL.
    Document(String),
}

impl BaseSource {
    /// Parse a base source. A Cincinnati server needs the stream to ask for,
    /// given as `cincinnati:<url>#<stream>`.
    pub fn parse(text: &str) -> Result<BaseSource, SourceError> {
        if let Some(rest) = text.strip_prefix("fcos:") {
            let (stream, base_url) = match rest.split_once(':') {
                Some((stream, url)) => (stream, Some(url.to_string())),
                None => (rest, None),
            };
            if stream.is_empty() || stream.contains('/') {
                return Err(SourceError::new(
                    "bad_source",
                    format!("{text:?}: expected fcos:<stream> or fcos:<stream>:<base-url>"),
                ));
            }
            if let Some(url) = &base_url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(SourceError::new(
                    "bad_source",
                    format!("{text:?}: {url:?} is not an http(s) URL"),
                ));
            }
            return Ok(BaseSource::Fcos {
                stream: stream.to_string(),
                base_url,
            });
        }
        if let Some(rest) = text.strip_prefix("cincinnati:") {
            let Some((url, stream)) = rest.rsplit_once('#') else {
                return Err(SourceError::new(
                    "bad_source",
                    format!(
                        "{text:?}: expected cincinnati:<url>#<stream>, for example cincinnati:https://updates.example.org#stable"
                    ),
                ));
            };
            if !(url.starts_with("https://") || url.starts_with("http://")) || stream.is_empty() {
                return Err(SourceError::new(
                    "bad_source",
                    format!("{text:?}: expected cincinnati:<http(s) url>#<stream>"),
                ));
            }
            return Ok(BaseSource::Cincinnati {
                url: url.to_string(),
                stream: stream.to_string(),
            });
        }
        if text.trim().is_empty() {
            return Err(SourceError::new(
                "bad_source",
                "the base graph source is empty",
            ));
        }
        Ok(BaseSource::Document(text.to_string()))
    }
}

impl std::fmt::Display for BaseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaseSource::Fcos {
                stream,
                base_url: None,
            } => write!(f, "fcos:{stream}"),
            BaseSource::Fcos {
                stream,
                base_url: Some(url),
            } => write!(f, "fcos:{stream}:{url}"),
            BaseSource::Cincinnati { url, stream } => write!(f, "cincinnati:{url}#{stream}"),
            BaseSource::Document(location) => f.write_str(location),
        }
    }
}

/// How a base graph is read and trusted.
#[derive(Debug, Clone, Copy)]
pub struct BaseRead<'a> {
    /// Keys a Cairn document must be signed with.
    pub keys: &'a [VerifyingKey],
    /// Accept an unsigned Cairn document.
    pub allow_unsigned: bool,
    /// Now, for expiry.
    pub now: Timestamp,
    /// The host's architecture (a Cincinnati server answers for one).
    pub arch: &'a str,
}

/// Read a base graph and check it as its kind requires: a Cairn document's
/// signature (unless unsigned documents are allowed) and expiry; HTTPS for
/// Fedora's files and a Cincinnati server.
pub async fn read_base_graph(
    client: &RegistryClient,
    source: &BaseSource,
    read: &BaseRead<'_>,
) -> Result<BaseGraph, SourceError> {
    Ok(read_base_graph_after(client, source, read, None).await?.0)
}

/// [`read_base_graph`], reading a Cairn document in a registry with
/// `readers` (through the image proxy when it has one).
pub async fn read_base_graph_in(
    readers: &crate::readers::Readers,
    source: &BaseSource,
    read: &BaseRead<'_>,
) -> Result<BaseGraph, SourceError> {
    read_base_graph_rooted_in(readers, source, read, None, &mut None)
        .await
        .map(|read| read.graph)
}

/// As [`read_base_graph`], refusing a Cairn base document older than
/// `last_seen` (a replay: kind `replayed`). Returns the graph and, for a
/// Cairn document, its sequence and digest, to give as `last_seen` next time.
pub async fn read_base_graph_after(
    client: &RegistryClient,
    source: &BaseSource,
    read: &BaseRead<'_>,
    last_seen: Option<crate::document::Seen<'_>>,
) -> Result<(BaseGraph, Option<(u64, String)>), SourceError> {
    read_base_graph_rooted(client, source, read, last_seen, &mut None)
        .await
        .map(|read| (read.graph, read.seen))
}

/// A base graph as [`read_base_graph_rooted`] read it.
#[derive(Debug)]
pub struct BaseRoot {
    /// The graph.
    pub graph: BaseGraph,
    /// A Cairn document's sequence and digest.
    pub seen: Option<(u64, String)>,
}

/// As [`read_base_graph_after`], for a Cairn document verified under a
/// trust root (docs/key-rotation.md): `held`, or version 0 built from the
/// base keys, walked in the document's repository or layout first. A walk
/// refused and a document the newest root's graph role does not vouch for
/// are refused, naming the root version. `held` is advanced to every root
/// the walk verified, even when the read is then refused: a chain longer
/// than one walk's cap is read over several calls, never from the start
/// again.
pub async fn read_base_graph_rooted(
    client: &RegistryClient,
    source: &BaseSource,
    read: &BaseRead<'_>,
    last_seen: Option<crate::document::Seen<'_>>,
    held: &mut Option<TrustedRoot>,
) -> Result<BaseRoot, SourceError> {
    let readers = crate::readers::Readers::builtin(client.clone());
    read_base_graph_rooted_in(&readers, source, read, last_seen, held).await
}

/// [`read_base_graph_rooted`], reading a Cairn document in a registry, and
/// its trust roots, with `readers` (through the image proxy when it has one).
pub async fn read_base_graph_rooted_in(
    readers: &crate::readers::Readers,
    source: &BaseSource,
    read: &BaseRead<'_>,
    last_seen: Option<crate::document::Seen<'_>>,
    held: &mut Option<TrustedRoot>,
) -> Result<BaseRoot, SourceError> {
    let client = &readers.client;
    let unrooted = |(graph, seen)| BaseRoot { graph, seen };
    match source {
        BaseSource::Fcos { stream, base_url } => {
            let (document, shown) =
                fcos_document(client, base_url.as_deref(), stream, read.now, None, true).await?;
            Ok(unrooted((
                BaseGraph::from_document(&document, &shown),
                None,
            )))
        }
        BaseSource::Cincinnati { url, stream } => {
            // Wariness 1: a base release counts once the whole fleet may have it.
            let (graph, shown) = cincinnati_graph(client, url, stream, read.arch, 1.0, true)
                .await
                .map_err(|e| SourceError {
                    message: format!("{}: {}", read.arch, e.message),
                    ..e
                })?;
            // OCI payloads are `<repository>@<digest>`.
            let repository = graph
                .nodes()
                .iter()
                .find_map(|node| node.payload.split_once('@').map(|(r, _)| r.to_string()))
                .unwrap_or_else(|| FEDORA_COREOS_REPOSITORY.to_string());
            Ok(unrooted((
                BaseGraph::from_update_graph(&graph, &repository, &shown),
                None,
            )))
        }
        BaseSource::Document(text) => {
            let location = crate::Location::parse(text)
                .map_err(|e| SourceError::new("bad_source", format!("{text}: {e}")))?;
            let fetched = crate::document::fetch_location_in(&location, readers)
                .await
                .map_err(|e| SourceError::new(e.kind(), format!("{text}: {e}")))?;
            if read.keys.is_empty() && !read.allow_unsigned {
                return Err(SourceError::new(
                    "no_key",
                    format!(
                        "{text}: no key to verify the base graph with (give its public key, or allow unsigned base graphs)"
                    ),
                ));
            }
            let start = held
                .clone()
                .or_else(|| TrustedRoot::from_config(read.keys, &[]));
            let root = match start {
                Some(start) => {
                    let walked =
                        crate::roots::walk_location_in(&location, readers, &start, read.now).await;
                    if !walked.adopted.is_empty() {
                        *held = Some(walked.root.clone());
                    }
                    if let Some(error) = walked.refused {
                        return Err(SourceError::new(
                            error.kind(),
                            format!(
                                "{text}: trust root: {error} (holding base trust root version {})",
                                walked.root.version()
                            ),
                        ));
                    }
                    Some(walked.root)
                }
                None => None,
            };
            let signers = root.as_ref().and_then(|root| {
                let role = root.role(crate::trust::Role::Graph);
                (root.version() >= 1 || !role.is_empty()).then_some(role)
            });
            let policy = TrustPolicy {
                signers: signers.as_ref(),
                allow_unsigned: read.allow_unsigned,
                now: read.now,
                last_seen,
                stream: None,
            };
            fetched.verify(text, &policy).map_err(|e| {
                let under = root
                    .as_ref()
                    .map(|r| format!(" (judged under base trust root version {})", r.version()))
                    .unwrap_or_default();
                SourceError::new(e.kind(), format!("{text}: {e}{under}"))
            })?;
            let seen = (
                fetched.document.sequence,
                crate::digest::sha256_digest(&fetched.bytes),
            );
            Ok(BaseRoot {
                graph: BaseGraph::from_document(&fetched.document, text),
                seen: Some(seen),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_sources_parse_and_print_back() {
        for text in [
            "fcos:stable",
            "fcos:next:http://127.0.0.1:8080/fedora",
            "cincinnati:https://updates.example.org#stable",
            "quay.io/acme/base:cairn-graph-stable",
            "oci:/srv/layout:cairn-graph-stable",
        ] {
            let parsed = BaseSource::parse(text).expect(text);
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(
            BaseSource::parse("fcos:next:http://h:1").expect("valid"),
            BaseSource::Fcos {
                stream: "next".into(),
                base_url: Some("http://h:1".into())
            }
        );
        for bad in [
            "fcos:",
            "fcos:stable:ftp://x",
            "cincinnati:https://u.example",
            "cincinnati:ftp://u#s",
            "",
        ] {
            let err = BaseSource::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), "bad_source", "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_coarse_wariness_has_two_decimals() {
        assert_eq!(coarse_wariness(0.7193282501649758).to_string(), "0.72");
        assert_eq!(coarse_wariness(0.7203).to_string(), "0.73", "rounded up");
        assert_eq!(coarse_wariness(0.72).to_string(), "0.72");
        assert_eq!(coarse_wariness(0.29).to_string(), "0.29");
        assert_eq!(coarse_wariness(0.57).to_string(), "0.57");
        assert_eq!(coarse_wariness(0.0001).to_string(), "0.01");
        assert_eq!(coarse_wariness(f64::NAN).to_string(), "1");
        assert_eq!(coarse_wariness(0.0).to_string(), "0");
        assert_eq!(coarse_wariness(1.0).to_string(), "1");
        assert_eq!(coarse_wariness(7.0).to_string(), "1");
        assert_eq!(coarse_wariness(-1.0).to_string(), "0");
    }

    #[test]
    fn a_cincinnati_request_carries_the_wariness_and_nothing_that_identifies_the_node() {
        let request = cincinnati_request(
            "https://updates.example.org/",
            "stable",
            "x86_64",
            0.25,
            true,
        )
        .expect("valid");
        assert_eq!(
            request.as_str(),
            "https://updates.example.org/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0.25&oci=true"
        );
        for pair in request.query_pairs() {
            assert!(
                !matches!(
                    &*pair.0,
                    "node_uuid" | "os_checksum" | "os_version" | "group"
                ),
                "{pair:?}"
            );
        }
        // An ostree commit host asks for the checksum graph; a full endpoint is kept.
        let request = cincinnati_request(
            "https://updates.example.org/v1/graph",
            "next",
            "aarch64",
            1.0,
            false,
        )
        .expect("valid");
        assert_eq!(
            request.as_str(),
            "https://updates.example.org/v1/graph?basearch=aarch64&stream=next&rollout_wariness=1"
        );
        let err = cincinnati_request(
            "https://u.example/v1/graph?stream=x",
            "s",
            "x86_64",
            0.5,
            false,
        )
        .expect_err("a query is refused");
        assert_eq!(err.kind(), "bad_source");
        assert!(err.to_string().contains("without a query"), "{err}");
    }
}
