//! Fetching a stream's source and turning it into a [`Snapshot`], cheaply when
//! nothing changed: conditional GETs for URLs, size and time for files, one
//! HEAD of the document tag for registries.

use crate::config::{Input, SourceSpec};
use crate::snapshot::{ServedDocument, Snapshot};
use bytes::Bytes;
use cairn_graph::GraphDocument;
use cairn_graph::fcos::{ReleaseIndex, Updates};
use cairn_oci::client::{Conditional, Validators};
use cairn_oci::document::{self as doc, DocumentStoreError, Seen, TrustPolicy};
use cairn_oci::scan::{ScanCache, ScanOptions};
use cairn_oci::{Location, RegistryClient, Store};
use jiff::Timestamp;
use std::collections::HashMap;
use std::time::SystemTime;

/// Largest Fedora input accepted.
const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// Why a refresh failed. The short kind is the metric label.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// A fixed label: `transport`, `status`, `invalid`, `bad_signature`, ...
    pub kind: &'static str,
    /// What happened, naming the input.
    pub message: String,
}

impl SourceError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        SourceError {
            kind,
            message: message.into(),
        }
    }
}

impl From<cairn_oci::OciError> for SourceError {
    fn from(e: cairn_oci::OciError) -> Self {
        SourceError::new(e.kind(), e.to_string())
    }
}

impl From<DocumentStoreError> for SourceError {
    fn from(e: DocumentStoreError) -> Self {
        SourceError::new(e.kind(), e.to_string())
    }
}

/// What a refresh found.
#[derive(Debug)]
pub enum Refresh {
    /// Nothing changed since the last refresh.
    Unchanged,
    /// A new snapshot.
    Updated(Snapshot),
}

/// What a source remembers between refreshes.
#[derive(Debug, Default)]
pub struct SourceState {
    inputs: HashMap<String, InputState>,
    document_digest: Option<String>,
    seen: Option<(u64, String)>,
    scan_cache: ScanCache,
    previous: Option<GraphDocument>,
}

#[derive(Debug, Clone)]
struct InputState {
    bytes: Bytes,
    validators: Validators,
    file_stamp: Option<(u64, SystemTime)>,
}

/// Fetch the source; `stream` is the stream name documents must carry.
pub async fn refresh(
    spec: &SourceSpec,
    stream: &str,
    state: &mut SourceState,
    client: &RegistryClient,
    now: Timestamp,
) -> Result<Refresh, SourceError> {
    match spec {
        SourceSpec::Fcos { releases, updates } => {
            let (releases_changed, releases_bytes) = read_input(releases, state, client).await?;
            let (updates_changed, updates_bytes) = read_input(updates, state, client).await?;
            if !releases_changed && !updates_changed {
                return Ok(Refresh::Unchanged);
            }
            let index = ReleaseIndex::from_json(&releases_bytes).map_err(|e| {
                SourceError::new("invalid", format!("{}: {e}", releases.describe()))
            })?;
            let updates_file = Updates::from_json(&updates_bytes)
                .map_err(|e| SourceError::new("invalid", format!("{}: {e}", updates.describe())))?;
            // Parsed fine: only now do the new bytes become the ones to compare against.
            commit_input(releases, state);
            commit_input(updates, state);
            Ok(Refresh::Updated(Snapshot::from_fcos(&index, &updates_file)))
        }
        SourceSpec::Document {
            location,
            keys,
            allow_unsigned,
        } => refresh_document(location, keys, *allow_unsigned, stream, state, client, now).await,
        SourceSpec::Scan {
            repository,
            policy,
            tag_pattern,
        } => {
            refresh_scan(
                repository,
                policy.as_deref(),
                tag_pattern.clone(),
                stream,
                state,
                client,
                now,
            )
            .await
        }
    }
}

/// Pending new bytes of an input, kept apart until the whole refresh succeeds.
const PENDING: &str = "\u{0}pending:";

async fn read_input(
    input: &Input,
    state: &mut SourceState,
    client: &RegistryClient,
) -> Result<(bool, Bytes), SourceError> {
    let key = input.describe();
    let known = state.inputs.get(&key).cloned();
    let fresh = match input {
        Input::Path(path) => {
            let metadata = std::fs::metadata(path)
                .map_err(|e| SourceError::new("io", format!("{}: {e}", path.display())))?;
            let stamp = (
                metadata.len(),
                metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if let Some(known) = &known
                && known.file_stamp == Some(stamp)
            {
                return Ok((false, known.bytes.clone()));
            }
            if metadata.len() > MAX_INPUT_BYTES as u64 {
                return Err(SourceError::new(
                    "invalid",
                    format!("{}: too large", path.display()),
                ));
            }
            let bytes = std::fs::read(path)
                .map_err(|e| SourceError::new("io", format!("{}: {e}", path.display())))?;
            InputState {
                bytes: Bytes::from(bytes),
                validators: Validators::default(),
                file_stamp: Some(stamp),
            }
        }
        Input::Url(url) => {
            let validators = known
                .as_ref()
                .map(|k| k.validators.clone())
                .unwrap_or_default();
            match client
                .get_url_conditional(url, MAX_INPUT_BYTES, &validators)
                .await?
            {
                Conditional::NotModified => match &known {
                    Some(known) => return Ok((false, known.bytes.clone())),
                    None => {
                        return Err(SourceError::new(
                            "status",
                            format!("{url}: 304 without a cached copy"),
                        ));
                    }
                },
                Conditional::NotFound => {
                    return Err(SourceError::new("not_found", format!("{url}: 404")));
                }
                Conditional::Fetched { bytes, validators } => InputState {
                    bytes,
                    validators,
                    file_stamp: None,
                },
            }
        }
    };
    let changed = known.as_ref().is_none_or(|k| k.bytes != fresh.bytes);
    let bytes = fresh.bytes.clone();
    state.inputs.insert(format!("{PENDING}{key}"), fresh);
    Ok((changed, bytes))
}

fn commit_input(input: &Input, state: &mut SourceState) {
    let key = input.describe();
    if let Some(pending) = state.inputs.remove(&format!("{PENDING}{key}")) {
        state.inputs.insert(key, pending);
    }
}

async fn refresh_document(
    location: &Location,
    keys: &[cairn_oci::signing::VerifyingKey],
    allow_unsigned: bool,
    stream: &str,
    state: &mut SourceState,
    client: &RegistryClient,
    now: Timestamp,
) -> Result<Refresh, SourceError> {
    // For a registry or layout, one HEAD tells whether anything changed.
    let (store, reference) = match location {
        Location::Registry(reference) => (
            Some(Store::registry(
                client.clone(),
                reference.repository.clone(),
            )),
            reference.reference().to_string(),
        ),
        Location::Layout { path, tag } => (
            Some(Store::Layout(cairn_oci::layout::Layout::open(path)?)),
            tag.clone().unwrap_or_else(|| doc::default_tag(stream)),
        ),
        _ => (None, String::new()),
    };
    let fetched = match &store {
        Some(store) => {
            let head = store
                .resolve(&reference)
                .await?
                .ok_or_else(|| SourceError::new("not_found", format!("{location}: no document")))?;
            if state.document_digest.as_deref() == Some(head.digest.as_str()) {
                return Ok(Refresh::Unchanged);
            }
            doc::fetch(store, &head.digest).await?
        }
        None => doc::fetch_location(location, client).await?,
    };
    let digest = cairn_oci::digest::sha256_digest(&fetched.bytes);
    if state.seen.as_ref().is_some_and(|(_, d)| d == &digest) {
        return Ok(Refresh::Unchanged);
    }
    let policy = TrustPolicy {
        keys,
        allow_unsigned,
        now,
        last_seen: state.seen.as_ref().map(|(sequence, digest)| Seen {
            sequence: *sequence,
            digest,
        }),
        stream: Some(stream),
    };
    fetched.verify(&location.to_string(), &policy)?;
    let signature = match (&store, &fetched.manifest_digest) {
        (Some(store), Some(manifest)) => Some(format!(
            "{}:{}",
            store.describe(),
            cairn_oci::signing::signature_tag(manifest)
        )),
        _ => (!fetched.signatures.is_empty()).then(|| format!("{location}.sig")),
    };
    state.document_digest = fetched.manifest_digest.clone();
    state.seen = Some((fetched.document.sequence, digest));
    let served = ServedDocument {
        bytes: fetched.bytes.clone(),
        manifest_digest: fetched.manifest_digest.clone(),
        signature,
    };
    Ok(Refresh::Updated(Snapshot::from_document(
        &fetched.document,
        Some(served),
    )))
}

async fn refresh_scan(
    repository: &str,
    policy: Option<&std::path::Path>,
    tag_pattern: Option<String>,
    stream: &str,
    state: &mut SourceState,
    client: &RegistryClient,
    now: Timestamp,
) -> Result<Refresh, SourceError> {
    let store = match Location::parse(repository)? {
        Location::Layout { path, .. } => Store::Layout(cairn_oci::layout::Layout::open(path)?),
        _ => Store::registry(client.clone(), cairn_oci::Repository::parse(repository)?),
    };
    let policy = match policy {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| SourceError::new("io", format!("{}: {e}", path.display())))?;
            Some(
                Updates::from_json(&bytes)
                    .map_err(|e| SourceError::new("invalid", format!("{}: {e}", path.display())))?,
            )
        }
        None => None,
    };
    let options = ScanOptions {
        tag_pattern,
        ..ScanOptions::for_stream(stream)
    };
    let report = cairn_oci::scan::scan(&store, &options, &mut state.scan_cache, &|_, _| {}).await?;
    let options = cairn_graph::assemble::AssembleOptions {
        stream,
        repository,
        now,
        expires: now + jiff::SignedDuration::from_hours(24),
        default_rollout: Some(cairn_graph::Rollout::immediate()),
        policy: policy.as_ref(),
        present: Some(&report.present),
    };
    let assembled =
        cairn_graph::assemble::assemble(state.previous.as_ref(), report.candidates, &options)
            .map_err(|e| SourceError::new("invalid", format!("{repository}: {e}")))?;
    let document = assembled.document;
    if state
        .previous
        .as_ref()
        .is_some_and(|previous| previous.releases == document.releases)
    {
        return Ok(Refresh::Unchanged);
    }
    let served = ServedDocument {
        bytes: Bytes::from(document.to_json_pretty()),
        manifest_digest: None,
        signature: None,
    };
    let snapshot = Snapshot::from_document(&document, Some(served));
    state.previous = Some(document);
    Ok(Refresh::Updated(snapshot))
}
