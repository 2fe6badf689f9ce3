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

use crate::client::{DOCKER_LIST, FetchedManifest, OCI_INDEX, OCI_MANIFEST};
use crate::digest::sha256_digest;
use crate::error::OciError;
use crate::manifest;
use crate::signing::{
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING, SigningKey, VerifyingKey, signature_tag, signed_digest,
    simple_signing_payload,
};
use crate::store::Store;
use crate::trust::{Role, RoleKeys, Shortfall};
use bytes::Bytes;
use cairn_graph::GraphDocument;
use jiff::Timestamp;
use oci_spec::image::{
    ANNOTATION_CREATED, ANNOTATION_TITLE, ConfigBuilder, Descriptor, DescriptorBuilder,
    ImageConfigurationBuilder, ImageManifest, ImageManifestBuilder, MediaType, RootFsBuilder,
    SCHEMA_VERSION,
};
use std::collections::HashMap;

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
    #[error("{source_name}: no signature, and unsigned documents are not accepted{}",
        unusable.iter().map(|why| format!("; skipped: {why}")).collect::<String>())]
    Unsigned {
        /// The document's source.
        source_name: String,
        /// Signatures found but not usable, and why (a malformed signature
        /// manifest, a layer that declares an oversized payload).
        unusable: Vec<String>,
    },
    /// Signatures exist but too few distinct trusted keys signed.
    #[error("{source_name}: {}", refusal_note(.shortfalls, *.signed_under))]
    BadSignature {
        /// Where it came from.
        source_name: String,
        /// For each role that could have signed, what fell short.
        shortfalls: Vec<Shortfall>,
        /// The root version the artifact says it was signed under.
        signed_under: u64,
    },
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
            DocumentStoreError::Unsigned { .. } => "unsigned",
            DocumentStoreError::BadSignature { .. } => "bad_signature",
            DocumentStoreError::Expired { .. } => "expired",
            DocumentStoreError::WrongStream { .. } => "wrong_stream",
            DocumentStoreError::Replayed { .. } => "replayed",
            DocumentStoreError::SequenceConflict { .. } => "sequence_conflict",
            DocumentStoreError::Conflict { .. } => "conflict",
        }
    }
}

type Result<T> = std::result::Result<T, DocumentStoreError>;

/// Why signatures fell short, and whether the signer used a root this reader
/// has not reached (then walking the root chain is what is missing).
fn refusal_note(shortfalls: &[Shortfall], signed_under: u64) -> String {
    let found = shortfalls.iter().map(|s| s.found).max().unwrap_or(0);
    let mut note = if found == 0 {
        "no signature verifies with the trusted key(s)".to_string()
    } else {
        "too few distinct trusted keys signed".to_string()
    };
    for shortfall in shortfalls {
        note.push_str(&format!("; {shortfall}"));
    }
    let held = shortfalls.iter().map(|s| s.root_version).max().unwrap_or(0);
    if signed_under > held {
        note.push_str(&format!(
            "; it was signed under root version {signed_under}, newer than version {held} \
             this reader holds: it needs root version {} (tag {}{})",
            held + 1,
            ROOT_TAG_PREFIX,
            held + 1
        ));
    }
    note
}

/// The prefix of the tags roots are published under (`cairn-root-<N>`).
const ROOT_TAG_PREFIX: &str = "cairn-root-";

/// A role of any one of `keys`, or `None` when no key is configured: the
/// version 0 a reader without a trust root builds from its configuration.
pub fn configured_role(role: Role, keys: &[VerifyingKey]) -> Option<RoleKeys> {
    (!keys.is_empty()).then(|| RoleKeys::any_of(role, keys))
}

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
    /// Signatures that were found but could not be used, and why. A
    /// signature is optional data beside the document: a malformed one counts
    /// as absent (so an unsigned document may still be accepted where the
    /// policy allows it), and the reasons explain an "unsigned" refusal.
    pub unusable_signatures: Vec<String>,
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
    /// The graph role: which keys may sign, and how many distinct ones must.
    /// `None`: no key configured, and unsigned documents are accepted.
    pub signers: Option<&'a RoleKeys>,
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

    /// Check, in order: the signatures (a threshold of distinct keys of the
    /// graph role, when one is configured), expiry, and that the sequence
    /// has not gone backwards.
    pub fn verify(&self, source_name: &str, policy: &TrustPolicy<'_>) -> Result<()> {
        if let Some(signers) = policy.signers {
            if self.signatures.is_empty() {
                if !policy.allow_unsigned {
                    return Err(DocumentStoreError::Unsigned {
                        source_name: source_name.to_string(),
                        unusable: self.unusable_signatures.clone(),
                    });
                }
            } else if let Err(shortfall) = signers.check(&self.signatures) {
                return Err(DocumentStoreError::BadSignature {
                    source_name: source_name.to_string(),
                    shortfalls: vec![shortfall],
                    signed_under: self.document.root_version,
                });
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
    let raw = fetch_raw(store, reference, &DOCUMENT_ARTIFACT).await?;
    FetchedDocument::from_raw(raw)
}

/// Read a document from any [`Location`](crate::reference::Location): a
/// registry reference or `oci:` layout (the tag names the document), a file
/// (with `<file>.sig` when present) or a URL (with `<url>.sig`).
pub async fn fetch_location(
    location: &crate::reference::Location,
    client: &crate::client::RegistryClient,
) -> Result<FetchedDocument> {
    fetch_location_in(location, &crate::readers::Readers::builtin(client.clone())).await
}

/// [`fetch_location`], reading a registry location with `readers` (through
/// the image proxy when it has one).
pub async fn fetch_location_in(
    location: &crate::reference::Location,
    readers: &crate::readers::Readers,
) -> Result<FetchedDocument> {
    let raw = fetch_raw_location(location, readers, &DOCUMENT_ARTIFACT).await?;
    FetchedDocument::from_raw(raw)
}

impl FetchedDocument {
    fn from_raw(raw: RawArtifact) -> Result<FetchedDocument> {
        let (document, ignored_fields) =
            FetchedDocument::parse(raw.bytes.clone(), &raw.source_name)?;
        Ok(FetchedDocument {
            bytes: raw.bytes,
            document,
            manifest_digest: raw.manifest_digest,
            signatures: raw.signatures,
            unusable_signatures: raw.unusable_signatures,
            ignored_fields,
        })
    }
}

/// How one kind of Cairn artifact is found and bounded.
pub(crate) struct ArtifactKind {
    /// `artifactType` and layer media type.
    pub media_type: &'static str,
    /// The most bytes its layer may have.
    pub max_bytes: usize,
    /// The prefix of its default tags, which a layout with one such tag may omit.
    pub tag_prefix: &'static str,
    /// An example tag for the "name the tag" error.
    pub tag_example: &'static str,
}

const DOCUMENT_ARTIFACT: ArtifactKind = ArtifactKind {
    media_type: DOCUMENT_MEDIA_TYPE,
    max_bytes: MAX_DOCUMENT_BYTES,
    tag_prefix: "cairn-graph-",
    tag_example: ":cairn-graph-stable",
};

/// An artifact's bytes and signatures, before it is parsed or trusted.
pub(crate) struct RawArtifact {
    /// Where it came from, for messages.
    pub source_name: String,
    /// The layer's bytes.
    pub bytes: Bytes,
    /// The manifest digest, in a registry or layout.
    pub manifest_digest: Option<String>,
    /// Signatures found.
    pub signatures: Vec<Signed>,
    /// Signatures found but unusable, and why.
    pub unusable_signatures: Vec<String>,
}

/// Read an artifact of `kind` under a tag or digest of a store, with its signatures.
pub(crate) async fn fetch_raw(
    store: &Store,
    reference: &str,
    kind: &ArtifactKind,
) -> Result<RawArtifact> {
    let source_name = format!("{}:{reference}", store.describe());
    let manifest = store.get_manifest(reference).await?;
    let (layer, size) =
        artifact_layer_sized(&manifest, &source_name, kind.media_type, kind.max_bytes)?;
    let bytes = store.get_blob_sized(&layer, size, kind.max_bytes).await?;
    let (signatures, unusable_signatures) = fetch_signatures(store, &manifest.digest).await?;
    Ok(RawArtifact {
        source_name,
        bytes,
        manifest_digest: Some(manifest.digest),
        signatures,
        unusable_signatures,
    })
}

impl ArtifactKind {
    /// What people call this kind of artifact, for messages.
    fn noun(&self) -> &'static str {
        match self.tag_prefix {
            "cairn-graph-" => "document",
            "cairn-halts-" => "halt list",
            _ => "artifact",
        }
    }
}

/// Read an artifact of `kind` from any location (see [`fetch_location`]).
pub(crate) async fn fetch_raw_location(
    location: &crate::reference::Location,
    readers: &crate::readers::Readers,
    kind: &ArtifactKind,
) -> Result<RawArtifact> {
    let client = &readers.client;
    use crate::reference::Location;
    let need_tag = |what: &str| {
        OciError::invalid(
            what.to_string(),
            format!(
                "name the {}'s tag, for example {}",
                kind.noun(),
                kind.tag_example
            ),
        )
    };
    match location {
        Location::Registry(reference) => {
            if reference.tag.is_none() && reference.digest.is_none() {
                return Err(need_tag(&reference.to_string()).into());
            }
            let store = readers.store(&reference.repository);
            fetch_raw(&store, reference.reference(), kind).await
        }
        Location::Layout { path, tag } => {
            let layout = crate::layout::Layout::open(path)?;
            let tag = match tag {
                Some(tag) => tag.clone(),
                None => {
                    // A layout with a single artifact of this kind needs no tag.
                    let mut tags: Vec<String> = layout
                        .list_tags()?
                        .into_iter()
                        .filter(|t| t.starts_with(kind.tag_prefix))
                        .collect();
                    if tags.len() != 1 {
                        return Err(need_tag(&location.to_string()).into());
                    }
                    tags.remove(0)
                }
            };
            fetch_raw(&Store::Layout(layout), &tag, kind).await
        }
        Location::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| OciError::io(path, e))?;
            if bytes.len() > kind.max_bytes {
                return Err(OciError::TooLarge {
                    what: path.display().to_string(),
                    limit: kind.max_bytes,
                }
                .into());
            }
            let signature_path = std::path::PathBuf::from(format!("{}.sig", path.display()));
            let signature = match std::fs::read_to_string(&signature_path) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(OciError::io(signature_path, e).into()),
            };
            Ok(raw_from_bytes(
                Bytes::from(bytes),
                signature,
                &path.display().to_string(),
            ))
        }
        Location::Url(url) => {
            let bytes = client
                .get_url(url, kind.max_bytes)
                .await?
                .ok_or_else(|| OciError::NotFound(url.clone()))?;
            let signature = client
                .get_url(&format!("{url}.sig"), MAX_PAYLOAD_BYTES)
                .await?
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            Ok(raw_from_bytes(bytes, signature, url))
        }
    }
}

/// Plain bytes with an optional detached signature file: one base64
/// signature per line (a single line is exactly `cosign sign-blob` output),
/// blank lines ignored, at most as many as a signature manifest's layers.
fn raw_from_bytes(bytes: Bytes, signature: Option<String>, source_name: &str) -> RawArtifact {
    let text = signature.unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let mut unusable_signatures = Vec::new();
    let signatures = if lines.len() > MAX_SIGNATURE_LAYERS {
        unusable_signatures.push(format!(
            "{source_name}.sig: {} lines; at most {MAX_SIGNATURE_LAYERS} signatures are read",
            lines.len()
        ));
        Vec::new()
    } else {
        lines
            .into_iter()
            .map(|line| Signed {
                message: bytes.clone(),
                signature: line.to_string(),
            })
            .collect()
    };
    RawArtifact {
        source_name: source_name.to_string(),
        bytes,
        manifest_digest: None,
        signatures,
        unusable_signatures,
    }
}

/// A document from plain bytes (a file or URL) with the optional text of its
/// detached signature file (one base64 signature per line).
pub fn from_bytes(
    bytes: Bytes,
    signature: Option<String>,
    source_name: &str,
) -> Result<FetchedDocument> {
    FetchedDocument::from_raw(raw_from_bytes(bytes, signature, source_name))
}

/// The digest of the document layer, after checking the manifest is a document.
#[cfg(test)]
fn document_layer(fetched: &FetchedManifest, source_name: &str) -> Result<String> {
    artifact_layer_sized(
        fetched,
        source_name,
        DOCUMENT_MEDIA_TYPE,
        MAX_DOCUMENT_BYTES,
    )
    .map(|(digest, _)| digest)
}

/// The digest of an artifact's one layer of `media_type`, after checking the
/// manifest is such an artifact (by `artifactType` or by that layer), and
/// the layer's declared size, which a read through skopeo must give exactly.
pub(crate) fn artifact_layer_sized(
    fetched: &FetchedManifest,
    source_name: &str,
    media_type: &str,
    max_bytes: usize,
) -> Result<(String, u64)> {
    let not_a_document = || DocumentStoreError::NotADocument(source_name.to_string());
    let declared = if fetched.media_type.is_empty() {
        manifest::declared_media_type(&fetched.bytes)
    } else {
        fetched.media_type.clone()
    };
    // An image index under the tag is something else, not a broken document.
    if declared == OCI_INDEX || declared == DOCKER_LIST {
        return Err(not_a_document());
    }
    let what = format!("manifest of {source_name}");
    let parsed: ImageManifest = manifest::parse(&fetched.bytes, &what)?;
    let is_artifact_layer = |layer: &Descriptor| layer.media_type().as_ref() == media_type;
    let is_artifact = parsed
        .artifact_type()
        .as_ref()
        .is_some_and(|t| t.as_ref() == media_type)
        || parsed.layers().iter().any(is_artifact_layer);
    if !is_artifact {
        return Err(not_a_document());
    }
    let (index, layer) = parsed
        .layers()
        .iter()
        .enumerate()
        .find(|(_, layer)| is_artifact_layer(layer))
        .ok_or_else(not_a_document)?;
    let digest = manifest::blob_digest(layer, max_bytes, &what, &format!("layers[{index}]"))?;
    Ok((digest, layer.size()))
}

/// Signatures under the cosign tag that vouch for exactly this manifest digest.
pub(crate) async fn fetch_signatures(
    store: &Store,
    manifest_digest: &str,
) -> Result<(Vec<Signed>, Vec<String>)> {
    let tag = signature_tag(manifest_digest);
    let fetched = match store.get_manifest(&tag).await {
        Ok(fetched) => fetched,
        Err(OciError::NotFound(_)) => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e.into()),
    };
    let what = format!("signature manifest {}:{tag}", store.describe());
    let mut unusable = Vec::new();
    let parsed: ImageManifest = match manifest::parse(&fetched.bytes, &what) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "a malformed signature manifest counts as no signature");
            unusable.push(e.to_string());
            return Ok((Vec::new(), unusable));
        }
    };
    let layers = parsed.layers();
    // Each layer costs a blob request: an untrusted manifest must not choose how many.
    if layers.len() > MAX_SIGNATURE_LAYERS {
        unusable.push(format!(
            "{what}: {} layers; at most {MAX_SIGNATURE_LAYERS} signatures are read",
            layers.len()
        ));
        return Ok((Vec::new(), unusable));
    }
    let mut signatures = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        if layer.media_type().as_ref() != SIMPLE_SIGNING {
            continue;
        }
        let Some(signature) = layer
            .annotations()
            .as_ref()
            .and_then(|annotations| annotations.get(SIGNATURE_ANNOTATION))
        else {
            continue;
        };
        let digest = match manifest::blob_digest(
            layer,
            MAX_PAYLOAD_BYTES,
            &what,
            &format!("layers[{index}]"),
        ) {
            Ok(digest) => digest,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a signature layer");
                unusable.push(e.to_string());
                continue;
            }
        };
        let payload = match store
            .get_blob_sized(&digest, layer.size(), MAX_PAYLOAD_BYTES)
            .await
        {
            Ok(payload) => payload,
            // What the signature layer points at is missing, too large or not
            // what it claims: that signature is unusable, the document is not.
            // A registry that cannot be reached is still an error.
            Err(
                e @ (OciError::NotFound(_)
                | OciError::TooLarge { .. }
                | OciError::DigestMismatch { .. }
                | OciError::Invalid { .. }),
            ) => {
                tracing::warn!(error = %e, "skipping a signature layer");
                unusable.push(format!("{what}: layers[{index}]: {e}"));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // A valid signature of another manifest must not count for this one.
        if signed_digest(&payload).as_deref() == Some(manifest_digest) {
            signatures.push(Signed {
                message: payload,
                signature: signature.clone(),
            });
        }
    }
    Ok((signatures, unusable))
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
    /// Sign with each of these keys (none: unsigned). All signatures go in
    /// one cosign signature manifest, a layer each.
    pub keys: &'a [SigningKey],
    /// The trust root version the keys sign under, written into the
    /// document (0: no trust root, only configured keys).
    pub root_version: u64,
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
    document.root_version = options.root_version;
    document
        .validate()
        .map_err(|errors| DocumentStoreError::Document {
            source_name: "document to publish".into(),
            error: cairn_graph::document::DocumentError::Invalid(errors),
        })?;
    let body = Bytes::from(document.to_json_pretty());
    let manifest = document_manifest(store, &document, body).await?;
    let manifest_digest = push_signed_and_tag(store, manifest, before, options).await?;
    Ok(Published {
        manifest_digest,
        sequence: document.sequence,
        document,
    })
}

/// Put `manifest` by digest, sign it, then move `options.tag` to it unless
/// the tag no longer holds `before`; check again `options.settle` later.
/// Returns the manifest digest.
pub(crate) async fn push_signed_and_tag(
    store: &Store,
    manifest: Bytes,
    before: Option<String>,
    options: &PublishOptions<'_>,
) -> Result<String> {
    let tag = options.tag;
    let conflict = |found: Option<String>| DocumentStoreError::Conflict {
        store: store.describe(),
        tag: tag.to_string(),
        found: found.unwrap_or_else(|| "nothing".into()),
    };
    let manifest_digest = store
        .put_manifest(manifest.clone(), OCI_MANIFEST, None)
        .await?;
    if !options.keys.is_empty() {
        sign_manifest(store, options.identity, &manifest_digest, options.keys).await?;
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
    Ok(manifest_digest)
}

/// Push the blobs of a document and return its manifest bytes.
pub(crate) async fn document_manifest(
    store: &Store,
    document: &GraphDocument,
    body: Bytes,
) -> Result<Bytes> {
    let size = body.len();
    let config_digest = store.put_blob(Bytes::from_static(EMPTY_JSON)).await?;
    let layer_digest = store.put_blob(body).await?;
    Ok(document_manifest_json(
        document,
        &config_digest,
        &layer_digest,
        size,
    )?)
}

/// The empty config's bytes.
pub(crate) const EMPTY_JSON: &[u8] = b"{}";

/// A document's manifest: the empty config, the document as its one layer, and
/// annotations a registry UI shows (stream, sequence, creation time).
fn document_manifest_json(
    document: &GraphDocument,
    config_digest: &str,
    layer_digest: &str,
    size: usize,
) -> crate::error::Result<Bytes> {
    artifact_manifest_json(
        &ArtifactShape {
            media_type: DOCUMENT_MEDIA_TYPE,
            title: format!("{}.json", default_tag(&document.stream)),
            created: document.issued,
            annotations: vec![
                ("dev.cairn.graph.stream", document.stream.clone()),
                ("dev.cairn.graph.sequence", document.sequence.to_string()),
            ],
        },
        config_digest,
        layer_digest,
        size,
    )
}

/// What distinguishes one kind of Cairn artifact from another.
pub(crate) struct ArtifactShape {
    /// `artifactType`, and the media type of the one layer.
    pub media_type: &'static str,
    /// The layer's file name, for tools that unpack artifacts.
    pub title: String,
    /// When it was made.
    pub created: Timestamp,
    /// Further manifest annotations a registry UI shows.
    pub annotations: Vec<(&'static str, String)>,
}

/// An artifact manifest: the empty config and one layer.
pub(crate) fn artifact_manifest_json(
    shape: &ArtifactShape,
    config_digest: &str,
    layer_digest: &str,
    size: usize,
) -> crate::error::Result<Bytes> {
    const WHAT: &str = "artifact manifest";
    let layer = DescriptorBuilder::default()
        .media_type(MediaType::from(shape.media_type))
        .digest(manifest::digest(layer_digest)?)
        .size(size as u64)
        .annotations(HashMap::from([(
            ANNOTATION_TITLE.to_string(),
            shape.title.clone(),
        )]))
        .build()
        .map_err(|e| OciError::invalid(WHAT, e))?;
    let mut annotations =
        HashMap::from([(ANNOTATION_CREATED.to_string(), shape.created.to_string())]);
    for (key, value) in &shape.annotations {
        annotations.insert((*key).to_string(), value.clone());
    }
    let built = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::from(shape.media_type))
        .config(manifest::descriptor(
            EMPTY_CONFIG,
            config_digest,
            EMPTY_JSON.len(),
        )?)
        .layers(vec![layer])
        .annotations(annotations)
        .build()
        .map_err(|e| OciError::invalid(WHAT, e))?;
    Ok(Bytes::from(manifest::to_json(&built, WHAT)?))
}

/// Store cosign signatures of `manifest_digest` by each of `keys` under its
/// `.sig` tag: one manifest, one layer per key, every layer the same
/// simple-signing payload (how cosign stores several signatures).
pub(crate) async fn sign_manifest(
    store: &Store,
    identity: &str,
    manifest_digest: &str,
    keys: &[SigningKey],
) -> Result<()> {
    let payload = Bytes::from(simple_signing_payload(identity, manifest_digest));
    let signatures: Vec<String> = keys.iter().map(|key| key.sign(&payload)).collect();
    let payload_size = payload.len();
    let payload_digest = store.put_blob(payload).await?;
    let config = signature_config_json(&payload_digest, signatures.len())?;
    let config_size = config.len();
    let config_digest = store.put_blob(config).await?;
    let signature_manifest = signature_manifest_json(
        &config_digest,
        config_size,
        &payload_digest,
        payload_size,
        signatures,
    )?;
    store
        .put_manifest(
            signature_manifest,
            OCI_MANIFEST,
            Some(&signature_tag(manifest_digest)),
        )
        .await?;
    Ok(())
}

/// The image config cosign writes next to signatures: no platform, and the
/// payload once per signature layer.
fn signature_config_json(payload_digest: &str, layers: usize) -> crate::error::Result<Bytes> {
    const WHAT: &str = "signature config";
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![payload_digest.to_string(); layers])
        .build()
        .map_err(|e| OciError::invalid(WHAT, e))?;
    let config = ImageConfigurationBuilder::default()
        .architecture("")
        .os("")
        .config(
            ConfigBuilder::default()
                .build()
                .map_err(|e| OciError::invalid(WHAT, e))?,
        )
        .rootfs(rootfs)
        .build()
        .map_err(|e| OciError::invalid(WHAT, e))?;
    Ok(Bytes::from(manifest::to_json(&config, WHAT)?))
}

/// A signature manifest in cosign's format: a simple-signing layer (the
/// payload) per signature, the signature in the layer's annotation.
fn signature_manifest_json(
    config_digest: &str,
    config_size: usize,
    payload_digest: &str,
    payload_size: usize,
    signatures: Vec<String>,
) -> crate::error::Result<Bytes> {
    const WHAT: &str = "signature manifest";
    let digest = manifest::digest(payload_digest)?;
    let layers = signatures
        .into_iter()
        .map(|signature| {
            DescriptorBuilder::default()
                .media_type(MediaType::from(SIMPLE_SIGNING))
                .digest(digest.clone())
                .size(payload_size as u64)
                .annotations(HashMap::from([(
                    SIGNATURE_ANNOTATION.to_string(),
                    signature,
                )]))
                .build()
                .map_err(|e| OciError::invalid(WHAT, e))
        })
        .collect::<crate::error::Result<Vec<Descriptor>>>()?;
    let built = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_size as u64,
            manifest::digest(config_digest)?,
        ))
        .layers(layers)
        .build()
        .map_err(|e| OciError::invalid(WHAT, e))?;
    Ok(Bytes::from(manifest::to_json(&built, WHAT)?))
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

    fn example() -> GraphDocument {
        GraphDocument::from_json(include_bytes!("../../../docs/examples/stable.json"))
            .expect("example document")
            .document
    }

    fn fetched(bytes: Bytes, media_type: &str) -> FetchedManifest {
        FetchedManifest {
            digest: sha256_digest(&bytes),
            bytes,
            media_type: media_type.to_string(),
        }
    }

    /// The JSON these manifests had when they were written by hand with
    /// `serde_json::json!`: the oci-spec types must give the same bytes, so
    /// that cosign and skopeo see what they saw before.
    #[test]
    fn manifests_are_byte_for_byte_what_the_hand_written_json_was() {
        let document = example();
        let config_digest = sha256_digest(b"{}");
        let layer_digest = sha256_digest(b"the document");
        let built = document_manifest_json(&document, &config_digest, &layer_digest, 12)
            .expect("document manifest");
        let before = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": DOCUMENT_MEDIA_TYPE,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": 2},
            "layers": [{
                "mediaType": DOCUMENT_MEDIA_TYPE,
                "digest": layer_digest,
                "size": 12,
                "annotations": {"org.opencontainers.image.title": format!("{}.json", default_tag(&document.stream))}
            }],
            "annotations": {
                "org.opencontainers.image.created": document.issued.to_string(),
                "dev.cairn.graph.stream": document.stream,
                "dev.cairn.graph.sequence": document.sequence.to_string(),
            }
        });
        assert_eq!(std::str::from_utf8(&built), Ok(before.to_string().as_str()));
        let sorted_annotations = format!(
            r#"{{"annotations":{{"dev.cairn.graph.sequence":"{}","dev.cairn.graph.stream":"{}","org.opencontainers.image.created":"{}"}},"artifactType":"#,
            document.sequence, document.stream, document.issued
        );
        assert!(
            String::from_utf8_lossy(&built).starts_with(&sorted_annotations),
            "keys sorted at every level"
        );
        // What is written is read back as a document.
        assert_eq!(
            document_layer(&fetched(built, OCI_MANIFEST), "test").expect("a document"),
            layer_digest
        );

        let payload_digest = sha256_digest(b"payload");
        let config = signature_config_json(&payload_digest, 1).expect("config");
        let before = serde_json::json!({
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [payload_digest]}
        });
        assert_eq!(
            std::str::from_utf8(&config),
            Ok(before.to_string().as_str())
        );
        let config_digest = sha256_digest(&config);
        let signature = signature_manifest_json(
            &config_digest,
            config.len(),
            &payload_digest,
            7,
            vec!["c2lnbmF0dXJl".to_string()],
        )
        .expect("signature manifest");
        let before = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{
                "mediaType": SIMPLE_SIGNING,
                "digest": payload_digest,
                "size": 7,
                "annotations": {SIGNATURE_ANNOTATION: "c2lnbmF0dXJl"}
            }]
        });
        assert_eq!(
            std::str::from_utf8(&signature),
            Ok(before.to_string().as_str())
        );
        // Spelled out, so a change in how `json!` orders keys cannot hide one
        // in the manifests: these bytes are what signatures and digests cover.
        let golden = format!(
            r#"{{"config":{{"digest":"{config_digest}","mediaType":"application/vnd.oci.image.config.v1+json","size":{}}},"layers":[{{"annotations":{{"{SIGNATURE_ANNOTATION}":"c2lnbmF0dXJl"}},"digest":"{payload_digest}","mediaType":"{SIMPLE_SIGNING}","size":7}}],"mediaType":"{OCI_MANIFEST}","schemaVersion":2}}"#,
            config.len()
        );
        assert_eq!(std::str::from_utf8(&signature), Ok(golden.as_str()));
    }

    #[test]
    fn malformed_document_manifests_fail_naming_the_field() {
        let digest = sha256_digest(b"x");
        let manifest = |layer: String| {
            Bytes::from(format!(
                r#"{{"schemaVersion":2,"artifactType":"{DOCUMENT_MEDIA_TYPE}","config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{digest}","size":2}},"layers":[{layer}]}}"#
            ))
        };
        let cases = [
            (
                format!(r#"{{"digest":"{digest}","size":1}}"#),
                "layers[0]: missing field `mediaType`",
            ),
            (
                format!(r#"{{"mediaType":"{DOCUMENT_MEDIA_TYPE}","digest":"{digest}","size":-5}}"#),
                "layers[0].size: invalid value: integer `-5`",
            ),
            (
                format!(
                    r#"{{"mediaType":"{DOCUMENT_MEDIA_TYPE}","digest":"{digest}","size":18446744073709551615}}"#
                ),
                "layers[0].size: 18446744073709551615 bytes, more than",
            ),
            (
                format!(
                    r#"{{"mediaType":"{DOCUMENT_MEDIA_TYPE}","digest":["{digest}"],"size":1}}"#
                ),
                "layers[0].digest: invalid type: sequence",
            ),
        ];
        for (layer, expected) in cases {
            let err = document_layer(&fetched(manifest(layer), OCI_MANIFEST), "r/os:tag")
                .expect_err(expected);
            assert_eq!(err.kind(), "invalid", "{err}");
            let message = err.to_string();
            assert!(
                message.starts_with("manifest of r/os:tag: ") && message.contains(expected),
                "{message}\n  wanted: {expected}"
            );
        }
        // An image index under the tag is something else, not a broken document.
        let index = Bytes::from_static(br#"{"schemaVersion":2,"manifests":[]}"#);
        let err = document_layer(&fetched(index, OCI_INDEX), "r/os:tag").expect_err("index");
        assert_eq!(err.kind(), "not_a_document", "{err}");
    }
}
