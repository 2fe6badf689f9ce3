//! Update graph documents stored as OCI artifacts: publishing, reading and
//! verifying them.
//!
//! A document is an OCI image manifest with `artifactType`
//! `application/vnd.cairn.graph.v1+json`, the empty config, and one layer: the
//! document's JSON. That shape is what OCI 1.1 recommends for artifacts, and
//! `skopeo copy`/`skopeo sync` copy it byte for byte (checked by the tests), so
//! mirrors carry documents along with the images.
//!
//! Publishing order: blobs, the manifest by digest, the signature, then the
//! tag, so the tag never points at an unsigned document.

use crate::client::{FetchedManifest, OCI_MANIFEST};
use crate::digest::sha256_digest;
use crate::error::OciError;
use crate::signing::{
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING, SigningKey, VerifyingKey, signature_tag, signed_digest,
    simple_signing_payload,
};
use crate::store::Store;
use bytes::Bytes;
use cairn_graph::GraphDocument;
use jiff::Timestamp;
use serde_json::{Value, json};

/// `artifactType` of a document manifest, and media type of its layer.
pub const DOCUMENT_MEDIA_TYPE: &str = "application/vnd.cairn.graph.v1+json";
/// The OCI empty config.
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// Largest document accepted: 16 MiB, far above 10,000 releases.
pub const MAX_DOCUMENT_BYTES: usize = crate::http::limits::DOCUMENT;
/// Largest signature payload accepted.
const MAX_PAYLOAD_BYTES: usize = crate::http::limits::SIGNATURE_PAYLOAD;
/// Most layers read from one signature manifest.
const MAX_SIGNATURE_LAYERS: usize = crate::http::limits::SIGNATURE_LAYERS;

/// The tag a stream's document is published under unless configured otherwise.
pub fn default_tag(stream: &str) -> String {
    format!("cairn-graph-{stream}")
}

/// The stream a default tag names, if it is one.
pub fn stream_of_tag(tag: &str) -> Option<&str> {
    tag.strip_prefix("cairn-graph-").filter(|s| !s.is_empty())
}

/// Why a document could not be published, read or trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentStoreError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] OciError),
    /// The bytes are not a valid document.
    #[error("{source_name}: {error}")]
    Document {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        error: cairn_graph::document::DocumentError,
    },
    /// The manifest is not a Cairn document.
    #[error("{0} is not a Cairn update graph document")]
    NotADocument(String),
    /// A signature is required and there is none.
    #[error("{0}: no signature, and unsigned documents are not accepted")]
    Unsigned(String),
    /// Signatures exist but none verifies with a trusted key.
    #[error("{0}: no signature verifies with the trusted key(s)")]
    BadSignature(String),
    /// The document expired.
    #[error("{source_name}: expired at {expires}")]
    Expired {
        /// Where it came from.
        source_name: String,
        /// When.
        expires: Timestamp,
    },
    /// An older sequence than one already accepted: a lagging mirror or a replay.
    #[error(
        "{source_name}: sequence {found} is older than {seen}, already accepted (replayed or lagging copy)"
    )]
    Replayed {
        /// Where it came from.
        source_name: String,
        /// Its sequence.
        found: u64,
        /// The highest accepted.
        seen: u64,
    },
    /// A validly signed document of another stream.
    #[error("{source_name}: the document is for stream {found}, not {expected}")]
    WrongStream {
        /// Where it came from.
        source_name: String,
        /// Its stream.
        found: String,
        /// The stream asked for.
        expected: String,
    },
    /// The same sequence with other bytes.
    #[error("{source_name}: sequence {sequence} was already accepted with different content")]
    SequenceConflict {
        /// Where it came from.
        source_name: String,
        /// The sequence.
        sequence: u64,
    },
    /// Someone else moved the tag while we published.
    #[error(
        "conflict: {tag} in {store} changed while publishing (now {found}); nothing was lost, re-run to publish on top of it"
    )]
    Conflict {
        /// Store.
        store: String,
        /// Tag.
        tag: String,
        /// What the tag points at now.
        found: String,
    },
}

impl DocumentStoreError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            DocumentStoreError::Store(e) => e.kind(),
            DocumentStoreError::Document { .. } => "invalid_document",
            DocumentStoreError::NotADocument(_) => "not_a_document",
            DocumentStoreError::Unsigned(_) => "unsigned",
            DocumentStoreError::BadSignature(_) => "bad_signature",
            DocumentStoreError::Expired { .. } => "expired",
            DocumentStoreError::WrongStream { .. } => "wrong_stream",
            DocumentStoreError::Replayed { .. } => "replayed",
            DocumentStoreError::SequenceConflict { .. } => "sequence_conflict",
            DocumentStoreError::Conflict { .. } => "conflict",
        }
    }
}

type Result<T> = std::result::Result<T, DocumentStoreError>;

/// A document as fetched, before any trust decision.
#[derive(Debug, Clone)]
pub struct FetchedDocument {
    /// The exact JSON bytes.
    pub bytes: Bytes,
    /// The parsed, validated document.
    pub document: GraphDocument,
    /// The manifest digest, for documents in a registry or layout.
    pub manifest_digest: Option<String>,
    /// Base64 signatures found, with the message each signs.
    pub signatures: Vec<Signed>,
    /// Unknown fields that were ignored.
    pub ignored_fields: Vec<String>,
}

/// One signature and the exact message it covers.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The signed message (payload or document bytes).
    pub message: Bytes,
    /// Base64 signature.
    pub signature: String,
}

/// What a reader remembers of the last document it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen<'a> {
    /// Its sequence.
    pub sequence: u64,
    /// The sha256 digest of its bytes.
    pub digest: &'a str,
}

/// How much to trust.
#[derive(Debug, Clone, Copy)]
pub struct TrustPolicy<'a> {
    /// Keys that may sign. With any key configured, a signature is required.
    pub keys: &'a [VerifyingKey],
    /// Accept unsigned documents even though keys are configured (explicit opt-out).
    pub allow_unsigned: bool,
    /// The current time, for `expires`.
    pub now: Timestamp,
    /// The last accepted document, for replay protection.
    pub last_seen: Option<Seen<'a>>,
    /// The stream the reader follows: a signed document of another stream
    /// (retagged by someone who can push but cannot sign) is refused.
    pub stream: Option<&'a str>,
}

impl FetchedDocument {
    fn parse(bytes: Bytes, source_name: &str) -> Result<(GraphDocument, Vec<String>)> {
        GraphDocument::from_json(&bytes)
            .map(|parsed| (parsed.document, parsed.ignored_fields))
            .map_err(|error| DocumentStoreError::Document {
                source_name: source_name.to_string(),
                error,
            })
    }

    /// Check, in order: the signature (when keys are configured), expiry, and
    /// that the sequence has not gone backwards.
    pub fn verify(&self, source_name: &str, policy: &TrustPolicy<'_>) -> Result<()> {
        if !policy.keys.is_empty() {
            if self.signatures.is_empty() {
                if !policy.allow_unsigned {
                    return Err(DocumentStoreError::Unsigned(source_name.to_string()));
                }
            } else if !self.signatures.iter().any(|signed| {
                policy
                    .keys
                    .iter()
                    .any(|key| key.verifies(&signed.message, &signed.signature))
            }) {
                return Err(DocumentStoreError::BadSignature(source_name.to_string()));
            }
        }
        if let Some(expected) = policy.stream
            && self.document.stream != expected
        {
            return Err(DocumentStoreError::WrongStream {
                source_name: source_name.to_string(),
                found: self.document.stream.clone(),
                expected: expected.to_string(),
            });
        }
        if self.document.is_expired(policy.now) {
            return Err(DocumentStoreError::Expired {
                source_name: source_name.to_string(),
                expires: self.document.expires,
            });
        }
        if let Some(seen) = policy.last_seen {
            let sequence = self.document.sequence;
            if sequence < seen.sequence {
                return Err(DocumentStoreError::Replayed {
                    source_name: source_name.to_string(),
                    found: sequence,
                    seen: seen.sequence,
                });
            }
            if sequence == seen.sequence && sha256_digest(&self.bytes) != seen.digest {
                return Err(DocumentStoreError::SequenceConflict {
                    source_name: source_name.to_string(),
                    sequence,
                });
            }
        }
        Ok(())
    }
}

/// Read the document a tag (or digest) of a store points at, with its signatures.
pub async fn fetch(store: &Store, reference: &str) -> Result<FetchedDocument> {
    let source_name = format!("{}:{reference}", store.describe());
    let manifest = store.get_manifest(reference).await?;
    let layer = document_layer(&manifest, &source_name)?;
    let bytes = store.get_blob(&layer, MAX_DOCUMENT_BYTES).await?;
    let (document, ignored_fields) = FetchedDocument::parse(bytes.clone(), &source_name)?;
    let signatures = fetch_signatures(store, &manifest.digest).await?;
    Ok(FetchedDocument {
        bytes,
        document,
        manifest_digest: Some(manifest.digest),
        signatures,
        ignored_fields,
    })
}

/// Read a document from any [`Location`](crate::reference::Location): a
/// registry reference or `oci:` layout (the tag names the document), a file
/// (with `<file>.sig` when present) or a URL (with `<url>.sig`).
pub async fn fetch_location(
    location: &crate::reference::Location,
    client: &crate::client::RegistryClient,
) -> Result<FetchedDocument> {
    use crate::reference::Location;
    let need_tag = |what: &str| {
        OciError::invalid(
            what.to_string(),
            "name the document's tag, for example :cairn-graph-stable",
        )
    };
    match location {
        Location::Registry(reference) => {
            if reference.tag.is_none() && reference.digest.is_none() {
                return Err(need_tag(&reference.to_string()).into());
            }
            let store = Store::registry(client.clone(), reference.repository.clone());
            fetch(&store, reference.reference()).await
        }
        Location::Layout { path, tag } => {
            let layout = crate::layout::Layout::open(path)?;
            let tag = match tag {
                Some(tag) => tag.clone(),
                None => {
                    // A layout with a single document needs no tag.
                    let mut tags: Vec<String> = layout
                        .list_tags()?
                        .into_iter()
                        .filter(|t| t.starts_with("cairn-graph-"))
                        .collect();
                    if tags.len() != 1 {
                        return Err(need_tag(&location.to_string()).into());
                    }
                    tags.remove(0)
                }
            };
            fetch(&Store::Layout(layout), &tag).await
        }
        Location::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| OciError::io(path, e))?;
            let signature_path = std::path::PathBuf::from(format!("{}.sig", path.display()));
            let signature = match std::fs::read_to_string(&signature_path) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(OciError::io(signature_path, e).into()),
            };
            from_bytes(Bytes::from(bytes), signature, &path.display().to_string())
        }
        Location::Url(url) => {
            let bytes = client
                .get_url(url, MAX_DOCUMENT_BYTES)
                .await?
                .ok_or_else(|| OciError::NotFound(url.clone()))?;
            let signature = client
                .get_url(&format!("{url}.sig"), MAX_PAYLOAD_BYTES)
                .await?
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            from_bytes(bytes, signature, url)
        }
    }
}

/// A document from plain bytes (a file or URL) with an optional detached
/// `cosign sign-blob` signature.
pub fn from_bytes(
    bytes: Bytes,
    signature: Option<String>,
    source_name: &str,
) -> Result<FetchedDocument> {
    let (document, ignored_fields) = FetchedDocument::parse(bytes.clone(), source_name)?;
    let signatures = signature
        .map(|signature| Signed {
            message: bytes.clone(),
            signature: signature.trim().to_string(),
        })
        .into_iter()
        .collect();
    Ok(FetchedDocument {
        bytes,
        document,
        manifest_digest: None,
        signatures,
        ignored_fields,
    })
}

/// The digest of the document layer, after checking the manifest is a document.
fn document_layer(manifest: &FetchedManifest, source_name: &str) -> Result<String> {
    let value: Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| OciError::invalid(format!("manifest of {source_name}"), e))?;
    let layers = value["layers"].as_array().cloned().unwrap_or_default();
    let is_document = value["artifactType"].as_str() == Some(DOCUMENT_MEDIA_TYPE)
        || layers
            .iter()
            .any(|l| l["mediaType"].as_str() == Some(DOCUMENT_MEDIA_TYPE));
    if !is_document {
        return Err(DocumentStoreError::NotADocument(source_name.to_string()));
    }
    layers
        .iter()
        .find(|l| l["mediaType"].as_str() == Some(DOCUMENT_MEDIA_TYPE))
        .and_then(|l| l["digest"].as_str())
        .filter(|d| cairn_graph::digest::is_sha256_digest(d))
        .map(str::to_string)
        .ok_or_else(|| DocumentStoreError::NotADocument(source_name.to_string()))
}

/// Signatures under the cosign tag that vouch for exactly this manifest digest.
async fn fetch_signatures(store: &Store, manifest_digest: &str) -> Result<Vec<Signed>> {
    let tag = signature_tag(manifest_digest);
    let manifest = match store.get_manifest(&tag).await {
        Ok(manifest) => manifest,
        Err(OciError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let value: Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| OciError::invalid(format!("signature manifest {tag}"), e))?;
    let layers = value["layers"].as_array().map_or(&[][..], Vec::as_slice);
    // Each layer costs a blob request: an untrusted manifest must not choose how many.
    if layers.len() > MAX_SIGNATURE_LAYERS {
        return Err(OciError::invalid(
            format!("signature manifest {tag}"),
            format!(
                "{} layers; at most {MAX_SIGNATURE_LAYERS} signatures are read",
                layers.len()
            ),
        )
        .into());
    }
    let mut signatures = Vec::new();
    for layer in layers {
        let (Some(digest), Some(signature)) = (
            layer["digest"].as_str(),
            layer["annotations"][SIGNATURE_ANNOTATION].as_str(),
        ) else {
            continue;
        };
        if layer["mediaType"].as_str() != Some(SIMPLE_SIGNING) {
            continue;
        }
        let payload = store.get_blob(digest, MAX_PAYLOAD_BYTES).await?;
        // A valid signature of another manifest must not count for this one.
        if signed_digest(&payload).as_deref() == Some(manifest_digest) {
            signatures.push(Signed {
                message: payload,
                signature: signature.to_string(),
            });
        }
    }
    Ok(signatures)
}

/// What [`publish`] did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The manifest digest now under the tag.
    pub manifest_digest: String,
    /// The sequence written.
    pub sequence: u64,
    /// The document as published (with its final sequence).
    pub document: GraphDocument,
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions<'a> {
    /// The tag to move.
    pub tag: &'a str,
    /// The repository named in the signature payload.
    pub identity: &'a str,
    /// Sign with this key.
    pub key: Option<&'a SigningKey>,
    /// Wait after tagging before the final check (see [`publish`]).
    pub settle: std::time::Duration,
    /// What the tag held when the caller read the document it built on
    /// (`Some(None)`: nothing). A publication that landed since then is a
    /// conflict. `None` reads it at the start of the publication.
    pub expected: Option<Option<String>>,
}

/// The sequence a new document gets: `max(previous + 1, issued in milliseconds)`.
pub fn next_sequence(previous: Option<u64>, issued: Timestamp) -> u64 {
    let issued_ms = u64::try_from(issued.as_millisecond()).unwrap_or(0);
    previous.map_or(issued_ms, |p| issued_ms.max(p.saturating_add(1)))
}

/// Publish a document under `options.tag`, signing it when a key is given.
///
/// Registries without conditional writes (Debian's ignores `If-Match`) cannot
/// make this atomic, so conflicts are detected instead: the tag is compared
/// with what the caller built on, checked again just before tagging, and once
/// more `settle` after tagging, so that of two writers racing, at least the
/// loser is told. The tag always holds one complete document from one writer.
pub async fn publish(
    store: &Store,
    mut document: GraphDocument,
    options: &PublishOptions<'_>,
) -> Result<Published> {
    let tag = options.tag;
    let current = store.resolve(tag).await?.map(|head| head.digest);
    let conflict = |found: Option<String>| DocumentStoreError::Conflict {
        store: store.describe(),
        tag: tag.to_string(),
        found: found.unwrap_or_else(|| "nothing".into()),
    };
    if let Some(expected) = &options.expected
        && &current != expected
    {
        return Err(conflict(current));
    }
    let before = current;
    let previous_sequence = match &before {
        Some(digest) => match fetch(store, digest).await {
            Ok(previous) => Some(previous.document.sequence),
            // A tag holding something else is replaced; its history is not ours.
            Err(DocumentStoreError::NotADocument(_) | DocumentStoreError::Document { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    document.sequence = next_sequence(previous_sequence, document.issued);
    document
        .validate()
        .map_err(|errors| DocumentStoreError::Document {
            source_name: "document to publish".into(),
            error: cairn_graph::document::DocumentError::Invalid(errors),
        })?;
    let body = Bytes::from(document.to_json_pretty());
    let manifest = document_manifest(store, &document, body).await?;
    let manifest_digest = store
        .put_manifest(manifest.clone(), OCI_MANIFEST, None)
        .await?;
    if let Some(key) = options.key {
        sign_manifest(store, options.identity, &manifest_digest, key).await?;
    }
    let current = store.resolve(tag).await?.map(|head| head.digest);
    if current != before {
        return Err(conflict(current));
    }
    store
        .put_manifest(manifest, OCI_MANIFEST, Some(tag))
        .await?;
    tokio::time::sleep(options.settle).await;
    let after = store.resolve(tag).await?.map(|head| head.digest);
    if after.as_deref() != Some(manifest_digest.as_str()) {
        return Err(conflict(after));
    }
    Ok(Published {
        manifest_digest,
        sequence: document.sequence,
        document,
    })
}

/// Push the blobs of a document and return its manifest bytes.
async fn document_manifest(store: &Store, document: &GraphDocument, body: Bytes) -> Result<Bytes> {
    let empty = Bytes::from_static(b"{}");
    let size = body.len();
    let config_digest = store.put_blob(empty).await?;
    let layer_digest = store.put_blob(body).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": DOCUMENT_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": 2},
        "layers": [{
            "mediaType": DOCUMENT_MEDIA_TYPE,
            "digest": layer_digest,
            "size": size,
            "annotations": {"org.opencontainers.image.title": format!("{}.json", default_tag(&document.stream))}
        }],
        "annotations": {
            "org.opencontainers.image.created": document.issued.to_string(),
            "dev.cairn.graph.stream": document.stream,
            "dev.cairn.graph.sequence": document.sequence.to_string(),
        }
    });
    Ok(Bytes::from(manifest.to_string()))
}

/// Store a cosign signature of `manifest_digest` under its `.sig` tag.
async fn sign_manifest(
    store: &Store,
    identity: &str,
    manifest_digest: &str,
    key: &SigningKey,
) -> Result<()> {
    let payload = Bytes::from(simple_signing_payload(identity, manifest_digest));
    let signature = key.sign(&payload);
    let payload_size = payload.len();
    let payload_digest = store.put_blob(payload).await?;
    let config = json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [payload_digest]}
    });
    let config = Bytes::from(config.to_string());
    let config_size = config.len();
    let config_digest = store.put_blob(config).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{
            "mediaType": SIMPLE_SIGNING,
            "digest": payload_digest,
            "size": payload_size,
            "annotations": {SIGNATURE_ANNOTATION: signature}
        }]
    });
    store
        .put_manifest(
            Bytes::from(manifest.to_string()),
            OCI_MANIFEST,
            Some(&signature_tag(manifest_digest)),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_never_goes_backwards() {
        let issued = Timestamp::from_second(1_000).expect("time");
        assert_eq!(next_sequence(None, issued), 1_000_000);
        assert_eq!(next_sequence(Some(5), issued), 1_000_000);
        assert_eq!(next_sequence(Some(2_000_000), issued), 2_000_001);
    }
}
