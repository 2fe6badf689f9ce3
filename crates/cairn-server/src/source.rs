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
use cairn_oci::publish::{self, BaseOptions};
use cairn_oci::roots;
use cairn_oci::scan::ScanCache;
use cairn_oci::trust::{Role, RootError, SignedRoot, TrustedRoot};
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
    /// The graph served must stop being served: its document is no longer
    /// vouched for by the newest trust root.
    pub withdraw: bool,
}

impl SourceError {
    /// An error of this kind; the graph served stays served.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        SourceError {
            kind,
            message: message.into(),
            withdraw: false,
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
    known: Known,
    scan_cache: ScanCache,
    /// The scan's stored base trust root was read into `scan_cache`.
    base_root_loaded: bool,
    /// The version of the base trust root kept on disk.
    base_root_saved: Option<u64>,
    trust: RootHold,
}

/// The trust root a document source verifies with (docs/server.md#trust-roots).
/// Never rolled back with [`Known`]: a root, once taken, is never given up.
#[derive(Debug, Default)]
struct RootHold {
    /// Whether the start root was chosen.
    started: bool,
    /// The newest root verified; `None`: no key at all is configured.
    root: Option<TrustedRoot>,
    /// A root was taken since the served document was last checked.
    recheck_document: bool,
    /// A root was taken since the held halt list was last checked.
    recheck_halts: bool,
}

/// What decides that a refresh found nothing new. A refresh writes it as it
/// accepts a snapshot, but the snapshot may still be refused (a lost
/// architecture): [`SourceState::checkpoint`] and [`SourceState::rollback`]
/// then put back what the served snapshot came from, so the refused one is
/// not taken for "unchanged" next time.
#[derive(Debug, Default, Clone)]
pub struct Known {
    inputs: HashMap<String, InputState>,
    document_digest: Option<String>,
    document_stamps: Option<(FileStamp, Option<FileStamp>)>,
    seen: Option<(u64, String)>,
    expires: Option<Timestamp>,
    previous: Option<std::sync::Arc<GraphDocument>>,
    /// The document served, with its signatures, to check again when a new
    /// trust root is taken.
    served: Option<std::sync::Arc<doc::FetchedDocument>>,
}

impl SourceState {
    /// What the served snapshot came from, to put back with [`Self::rollback`].
    pub fn checkpoint(&self) -> Known {
        self.known.clone()
    }

    /// Forget a refresh whose snapshot was not installed.
    pub fn rollback(&mut self, known: Known) {
        self.known = known;
    }

    /// The trust root the source verifies with, once the first refresh
    /// chose it (`None` also when no key is configured).
    pub fn root(&self) -> Option<&TrustedRoot> {
        self.trust.root.as_ref()
    }

    /// Whether the held halt list must be checked again against the root
    /// (after a start or a new root); [`Self::halts_checked`] clears it.
    pub fn halts_recheck(&self) -> bool {
        self.trust.recheck_halts
    }

    /// The held halt list was checked against the current root.
    pub fn halts_checked(&mut self) {
        self.trust.recheck_halts = false;
    }

    /// Choose the root to start from, once: the newest this server stored,
    /// else the `root` file, else version 0 from the configured keys (and
    /// `halt_keys` for the halt role). A stored root of version 1 or more
    /// means the configured keys are ignored; a `root` file is then only a
    /// link to walk, never a new pin.
    pub async fn start_root(
        &mut self,
        spec: &SourceSpec,
        stream: &str,
        halt_keys: &[cairn_oci::signing::VerifyingKey],
    ) -> Result<(), SourceError> {
        if self.trust.started {
            return Ok(());
        }
        let SourceSpec::Document {
            keys,
            root,
            root_state,
            ..
        } = spec
        else {
            self.trust.started = true;
            return Ok(());
        };
        let stored = match root_state {
            Some(path) => load_root(path).await?,
            None => None,
        };
        let start = match (stored, root) {
            (Some(stored), pinned) => {
                match pinned.as_ref().filter(|p| p.version() > stored.version()) {
                    Some(link) => match stored.accept_next(link.clone(), "document.root") {
                        Ok(next) => {
                            tracing::info!(
                                stream,
                                version = next.version(),
                                "took the configured trust root as the next link of the stored one"
                            );
                            if let Some(path) = root_state {
                                save_root(path, &next).await?;
                            }
                            next
                        }
                        Err(error) => {
                            tracing::warn!(stream, %error, "the configured trust root does not follow the stored one; walking from the stored root");
                            stored
                        }
                    },
                    None => stored,
                }
            }
            (None, Some(pinned)) => {
                let pinned = TrustedRoot::pin(pinned.clone())
                    .map_err(|e| SourceError::new(e.kind(), format!("document.root: {e}")))?;
                // Kept from the start, so a restart holds it even if the
                // `root` file changes before a newer one is walked to.
                if let Some(path) = root_state
                    && let Err(error) = save_root(path, &pinned).await
                {
                    tracing::error!(stream, error = %error.message, "a restart pins the configured root again");
                }
                pinned
            }
            (None, None) => match TrustedRoot::from_config(keys, halt_keys) {
                Some(root) => root,
                None => {
                    self.trust.started = true;
                    return Ok(());
                }
            },
        };
        if start.version() >= 1 && !keys.is_empty() {
            tracing::info!(
                stream,
                version = start.version(),
                "holding a trust root of version 1 or more: the configured document.keys are ignored"
            );
        }
        self.trust = RootHold {
            started: true,
            root: Some(start),
            // What was held before this start is checked again.
            recheck_document: true,
            recheck_halts: true,
        };
        Ok(())
    }
}

/// Read the root this server stored, pinned as verified before.
async fn load_root(path: &std::path::Path) -> Result<Option<TrustedRoot>, SourceError> {
    let name = path.display().to_string();
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || cairn_oci::roots::read_root_file(&owned))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(SourceError::new("root_state", format!("{name}: {error}"))),
    };
    // Never fall back to an older start: that is going back.
    let unreadable = |e: cairn_oci::trust::RootError| {
        SourceError::new(
            "root_state",
            format!("{name}: the stored trust root is unreadable ({e}); fix or remove it"),
        )
    };
    let signed = SignedRoot::from_envelope(Bytes::from(bytes), &name).map_err(unreadable)?;
    TrustedRoot::pin(signed).map(Some).map_err(unreadable)
}

/// Keep `root` at `path`, replacing the file whole and synced
/// ([`cairn_fs::write_atomic`]), so a crash leaves the old root or the new one.
async fn save_root(path: &std::path::Path, root: &TrustedRoot) -> Result<(), SourceError> {
    let Some(signed) = root.signed() else {
        return Ok(());
    };
    let (path, envelope) = (path.to_path_buf(), signed.envelope.clone());
    let failed = |detail: String| {
        SourceError::new("root_state", format!("keeping the trust root: {detail}"))
    };
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        }
        // Its error names the file written.
        cairn_fs::write_atomic(&path, &envelope).map_err(|e| failed(e.to_string()))
    })
    .await
    .map_err(|e| SourceError::new("panic", e.to_string()))?
}

/// What identifies a file's content without reading it: a replacement with
/// the same size and a preserved mtime still changes the inode or ctime.
type FileStamp = (u64, SystemTime, u64, (i64, i64));

#[derive(Debug, Clone)]
struct InputState {
    bytes: Bytes,
    validators: Validators,
    file_stamp: Option<FileStamp>,
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
            let (releases_changed, releases_state) = read_input(
                releases,
                state.known.inputs.get(&releases.describe()),
                client,
            )
            .await?;
            let (updates_changed, updates_state) =
                read_input(updates, state.known.inputs.get(&updates.describe()), client).await?;
            let commit = |state: &mut SourceState, releases_state, updates_state| {
                state
                    .known
                    .inputs
                    .insert(releases.describe(), releases_state);
                state.known.inputs.insert(updates.describe(), updates_state);
            };
            if !releases_changed && !updates_changed {
                commit(state, releases_state, updates_state);
                return Ok(Refresh::Unchanged);
            }
            let (releases_bytes, updates_bytes) =
                (releases_state.bytes.clone(), updates_state.bytes.clone());
            let (releases_name, updates_name) = (releases.describe(), updates.describe());
            // Parsing and building eight graphs is CPU work: off the async workers.
            let snapshot = tokio::task::spawn_blocking(move || {
                let index = ReleaseIndex::from_json(&releases_bytes)
                    .map_err(|e| SourceError::new("invalid", format!("{releases_name}: {e}")))?;
                let updates = Updates::from_json(&updates_bytes)
                    .map_err(|e| SourceError::new("invalid", format!("{updates_name}: {e}")))?;
                Ok::<_, SourceError>(Snapshot::from_fcos(&index, &updates))
            })
            .await
            .map_err(|e| SourceError::new("panic", e.to_string()))??;
            // Parsed fine: only now do the new bytes become the ones to compare against.
            commit(state, releases_state, updates_state);
            Ok(Refresh::Updated(snapshot))
        }
        SourceSpec::Document {
            location,
            allow_unsigned,
            root_state,
            ..
        } => {
            let document = DocumentSource {
                location,
                allow_unsigned: *allow_unsigned,
                root_state: root_state.as_deref(),
            };
            refresh_document(&document, stream, state, client, now).await
        }
        SourceSpec::Scan {
            repository,
            policy,
            tag_pattern,
            base,
            base_root_state,
        } => {
            let scan = Scan {
                repository,
                policy: policy.as_deref(),
                tag_pattern: tag_pattern.as_deref(),
                base: base.as_ref(),
                base_root_state: base_root_state.as_deref(),
            };
            refresh_scan(&scan, stream, state, client, now).await
        }
    }
}

/// Read an input unless it is unchanged since `known`. Returns whether its
/// content changed and its new state; the caller stores the state only when
/// the refresh as a whole succeeds.
async fn read_input(
    input: &Input,
    known: Option<&InputState>,
    client: &RegistryClient,
) -> Result<(bool, InputState), SourceError> {
    let fresh = match input {
        Input::Path(path) => {
            let (metadata, stamp) = file_stamp(path).await?;
            if let Some(known) = known
                && known.file_stamp == Some(stamp)
            {
                return Ok((false, known.clone()));
            }
            if metadata.len() > MAX_INPUT_BYTES as u64 {
                return Err(SourceError::new(
                    "invalid",
                    format!("{}: too large", path.display()),
                ));
            }
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| SourceError::new("io", format!("{}: {e}", path.display())))?;
            InputState {
                bytes: Bytes::from(bytes),
                validators: Validators::default(),
                file_stamp: Some(stamp),
            }
        }
        Input::Url(url) => {
            let validators = known.map(|k| k.validators.clone()).unwrap_or_default();
            match client
                .get_url_conditional(url, MAX_INPUT_BYTES, &validators)
                .await?
            {
                Conditional::NotModified => match known {
                    Some(known) => return Ok((false, known.clone())),
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
    let changed = known.is_none_or(|k| k.bytes != fresh.bytes);
    Ok((changed, fresh))
}

/// A file's metadata and stamp.
async fn file_stamp(path: &std::path::Path) -> Result<(std::fs::Metadata, FileStamp), SourceError> {
    use std::os::unix::fs::MetadataExt;
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|e| SourceError::new("io", format!("{}: {e}", path.display())))?;
    let stamp = (
        metadata.len(),
        metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        metadata.ino(),
        (metadata.ctime(), metadata.ctime_nsec()),
    );
    Ok((metadata, stamp))
}

/// The stamps of a document file and of its `.sig`, which may be absent.
async fn document_stamps(
    path: &std::path::Path,
) -> Result<(FileStamp, Option<FileStamp>), SourceError> {
    let (_, document) = file_stamp(path).await?;
    let signature = std::path::PathBuf::from(format!("{}.sig", path.display()));
    let signature = match tokio::fs::try_exists(&signature).await {
        Ok(true) => Some(file_stamp(&signature).await?.1),
        _ => None,
    };
    Ok((document, signature))
}

/// An expired document stays served (Zincati hosts know no expiry), but the
/// source is reported as failing until a fresh one is published.
fn check_expiry(state: &SourceState, now: Timestamp) -> Result<(), SourceError> {
    match state.known.expires {
        Some(expires) if now.as_second() > expires.as_second() => Err(SourceError::new(
            "expired",
            format!(
                "the document expired at {expires}; still serving it until a fresh one is published"
            ),
        )),
        _ => Ok(()),
    }
}

/// A document source's settings.
struct DocumentSource<'a> {
    location: &'a Location,
    allow_unsigned: bool,
    root_state: Option<&'a std::path::Path>,
}

/// Walk the trust root chain in the document's repository or layout (one
/// HEAD when nothing is new), keep a root taken, and check the document
/// served against it: one it no longer vouches for is withdrawn. A walk
/// refused fails the refresh; an expired final root or a walk stopped at its
/// cap also withdraws the graph served.
async fn walk_roots(
    source: &DocumentSource<'_>,
    stream: &str,
    state: &mut SourceState,
    client: &RegistryClient,
    now: Timestamp,
) -> Result<(), SourceError> {
    let Some(held) = &state.trust.root else {
        return Ok(());
    };
    let location = source.location;
    let walked = roots::walk_location(location, client, held, now).await;
    if !walked.adopted.is_empty() {
        tracing::info!(stream, versions = ?walked.adopted, "took new trust root versions: {}", walked.root.describe());
        state.trust.root = Some(walked.root.clone());
        state.trust.recheck_document = true;
        state.trust.recheck_halts = true;
        if let Some(path) = source.root_state
            && let Err(error) = save_root(path, &walked.root).await
        {
            tracing::error!(stream, error = %error.message, "a restart will walk again from the root kept before");
        }
    }
    if state.trust.recheck_document {
        if let Some(served) = state.known.served.clone()
            && let Err(error) = vouched(&served, &walked.root, source)
        {
            // Read and judged afresh by the next refresh; `seen` stays, so
            // no older document comes back either.
            state.known.served = None;
            state.known.document_digest = None;
            state.known.document_stamps = None;
            return Err(error);
        }
        state.trust.recheck_document = false;
    }
    let Some(error) = walked.refused else {
        return Ok(());
    };
    let holding = walked.root.version();
    // An expired final root, or a chain not yet walked to its end, leaves no
    // current root to vouch for the served graph: Zincati clients verify no
    // signature, so it stops being served. A next root refused (malformed,
    // badly signed) or a registry not answering says nothing against the one
    // held: the last good graph stays served.
    let withdraw = matches!(
        error,
        roots::WalkError::Root(RootError::Expired { .. }) | roots::WalkError::Behind { .. }
    );
    if withdraw {
        // Read and judged afresh once a current root is held; `seen` stays.
        state.known.served = None;
        state.known.document_digest = None;
        state.known.document_stamps = None;
        return Err(SourceError {
            kind: error.kind(),
            message: format!(
                "{location}: trust root: {error} (holding trust root version {holding}); no longer serving the graph until a current root is held"
            ),
            withdraw: true,
        });
    }
    Err(SourceError::new(
        // An unreachable registry is reported as such, root or not.
        match &error {
            roots::WalkError::Store { error, .. } => error.kind(),
            _ => error.kind(),
        },
        format!(
            "{location}: trust root: {error} (holding trust root version {holding}); no newer document is taken until it is"
        ),
    ))
}

/// Whether `root`'s graph role still vouches for the document served.
fn vouched(
    served: &doc::FetchedDocument,
    root: &TrustedRoot,
    source: &DocumentSource<'_>,
) -> Result<(), SourceError> {
    let Some(signers) = graph_signers(root) else {
        return Ok(());
    };
    let withdrawn = |reason: String| SourceError {
        kind: "root_revoked",
        message: format!(
            "{}: the document served (sequence {}) is not vouched for by trust root version {}: {reason}; no longer serving it",
            source.location,
            served.document.sequence,
            root.version()
        ),
        withdraw: true,
    };
    if served.signatures.is_empty() {
        return match source.allow_unsigned {
            true => Ok(()),
            false => Err(withdrawn("it is unsigned".into())),
        };
    }
    signers
        .check(&served.signatures)
        .map(|_| ())
        .map_err(|shortfall| withdrawn(shortfall.to_string()))
}

/// The keys a document must be signed with under `root`: `None` when the
/// root is version 0 without a graph key (halt keys only: documents are read
/// as unsigned, as before roots).
fn graph_signers(root: &TrustedRoot) -> Option<cairn_oci::trust::RoleKeys> {
    let role = root.role(Role::Graph);
    (root.version() >= 1 || !role.is_empty()).then_some(role)
}

async fn refresh_document(
    source: &DocumentSource<'_>,
    stream: &str,
    state: &mut SourceState,
    client: &RegistryClient,
    now: Timestamp,
) -> Result<Refresh, SourceError> {
    let (location, allow_unsigned) = (source.location, source.allow_unsigned);
    // Before anything is judged: a new root may revoke what is served.
    walk_roots(source, stream, state, client, now).await?;
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
    // For a file, its stamps tell whether anything changed, without reading it.
    let stamps = match location {
        Location::File(path) => Some(document_stamps(path).await?),
        _ => None,
    };
    if stamps.is_some() && state.known.document_stamps == stamps {
        check_expiry(state, now)?;
        return Ok(Refresh::Unchanged);
    }
    let fetched = match &store {
        Some(store) => {
            let head = store
                .resolve(&reference)
                .await?
                .ok_or_else(|| SourceError::new("not_found", format!("{location}: no document")))?;
            if state.known.document_digest.as_deref() == Some(head.digest.as_str()) {
                check_expiry(state, now)?;
                return Ok(Refresh::Unchanged);
            }
            doc::fetch(store, &head.digest).await?
        }
        None => doc::fetch_location(location, client).await?,
    };
    let digest = cairn_oci::digest::sha256_digest(&fetched.bytes);
    if state.known.served.is_some() && state.known.seen.as_ref().is_some_and(|(_, d)| d == &digest)
    {
        // The same bytes under another manifest or file stamp: remember it,
        // so the next refresh costs one HEAD or stat again.
        state.known.document_digest = fetched.manifest_digest.clone();
        state.known.document_stamps = stamps;
        check_expiry(state, now)?;
        return Ok(Refresh::Unchanged);
    }
    let root = state.trust.root.as_ref();
    let signers = root.and_then(graph_signers);
    let policy = TrustPolicy {
        signers: signers.as_ref(),
        allow_unsigned,
        now,
        last_seen: state.known.seen.as_ref().map(|(sequence, digest)| Seen {
            sequence: *sequence,
            digest,
        }),
        stream: Some(stream),
    };
    fetched
        .verify(&location.to_string(), &policy)
        .map_err(|error| refused_under(error, root))?;
    let signature = match (&store, &fetched.manifest_digest) {
        (Some(store), Some(manifest)) => Some(format!(
            "{}:{}",
            store.describe(),
            cairn_oci::signing::signature_tag(manifest)
        )),
        _ => (!fetched.signatures.is_empty()).then(|| format!("{location}.sig")),
    };
    state.known.document_digest = fetched.manifest_digest.clone();
    state.known.document_stamps = stamps;
    state.known.seen = Some((fetched.document.sequence, digest));
    state.known.expires = Some(fetched.document.expires);
    let fetched = std::sync::Arc::new(fetched);
    state.known.served = Some(fetched.clone());
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

/// A verifier's refusal, naming the trust root it was judged under.
fn refused_under(error: DocumentStoreError, root: Option<&TrustedRoot>) -> SourceError {
    let mut refused = SourceError::from(error);
    if let Some(root) = root
        && matches!(refused.kind, "bad_signature" | "unsigned")
    {
        refused.message = format!(
            "{} (judged under trust root version {})",
            refused.message,
            root.version()
        );
    }
    refused
}

/// A scan source's settings.
struct Scan<'a> {
    repository: &'a str,
    policy: Option<&'a std::path::Path>,
    tag_pattern: Option<&'a str>,
    base: Option<&'a BaseOptions>,
    base_root_state: Option<&'a std::path::Path>,
}

/// Tags that move and are read again at every refresh, as `cairn publish`'s default.
const MUTABLE_TAGS: [&str; 4] = ["stable", "testing", "next", "latest"];

/// Assemble the document `cairn publish` would publish now, base inheritance
/// included, and serve it unsigned.
async fn refresh_scan(
    scan: &Scan<'_>,
    stream: &str,
    state: &mut SourceState,
    client: &RegistryClient,
    now: Timestamp,
) -> Result<Refresh, SourceError> {
    let repository = scan.repository;
    let store = match Location::parse(repository)? {
        Location::Layout { path, .. } => Store::Layout(cairn_oci::layout::Layout::open(path)?),
        _ => Store::registry(client.clone(), cairn_oci::Repository::parse(repository)?),
    };
    let policy = match scan.policy {
        Some(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| SourceError::new("io", format!("{}: {e}", path.display())))?;
            Some(
                Updates::from_json(&bytes)
                    .map_err(|e| SourceError::new("invalid", format!("{}: {e}", path.display())))?,
            )
        }
        None => None,
    };
    if let Some(path) = scan.base_root_state
        && !state.base_root_loaded
    {
        // A stored root that cannot be read stops the scan: walking from
        // `base_keys` instead would be going back.
        state.scan_cache.base.root = load_root(path).await?;
        state.base_root_saved = state
            .scan_cache
            .base
            .root
            .as_ref()
            .map(TrustedRoot::version);
        state.base_root_loaded = true;
    }
    let assembled = assemble_scan(scan, stream, state, client, now, &store, policy.as_ref()).await;
    // Kept whether or not the scan then succeeded: the walk's progress is
    // verified on its own, and a long chain is walked over several refreshes.
    // A failed save is tried again at the next refresh; it never hides what
    // the scan found.
    if let Some(path) = scan.base_root_state
        && let Some(root) = &state.scan_cache.base.root
        && Some(root.version()) != state.base_root_saved
    {
        match save_root(path, root).await {
            Ok(()) => state.base_root_saved = Some(root.version()),
            Err(error) => tracing::error!(
                stream,
                error = %error.message,
                "the base trust root walked to is not kept: a restart walks from the one kept before"
            ),
        }
    }
    assembled
}

/// The scan proper: assemble the document and decide whether it is news.
async fn assemble_scan(
    scan: &Scan<'_>,
    stream: &str,
    state: &mut SourceState,
    client: &RegistryClient,
    now: Timestamp,
    store: &Store,
    policy: Option<&Updates>,
) -> Result<Refresh, SourceError> {
    let repository = scan.repository;
    let mutable_tags = MUTABLE_TAGS.map(String::from);
    let options = publish::Options {
        stream,
        policy,
        tag_pattern: scan.tag_pattern,
        mutable_tags: &mutable_tags,
        recheck: false,
        default_rollout: Some(cairn_graph::Rollout::immediate()),
        now,
        expires: now + jiff::SignedDuration::from_hours(24 * 14),
        base: scan.base,
        layout_repository: repository,
    };
    let assembly = publish::assemble(
        store,
        client,
        state.known.previous.as_deref(),
        &options,
        &mut state.scan_cache,
        &publish::Quiet,
    )
    .await
    .map_err(|e| scan_error(repository, &e))?;
    let document = assembly.assembled.document;
    // Unchanged releases and base barriers need no new snapshot, unless the
    // served document is within a day of expiring.
    let fresh_enough =
        |previous: &GraphDocument| previous.expires.as_second() - now.as_second() > 24 * 3600;
    if state.known.previous.as_ref().is_some_and(|previous| {
        previous.releases == document.releases
            && previous.base == document.base
            && fresh_enough(previous)
    }) {
        return Ok(Refresh::Unchanged);
    }
    // Said once per new snapshot, not at every refresh.
    let report = &assembly.report;
    for (tag, reason) in &report.skipped {
        tracing::info!(stream, tag, kind = reason.kind(), reason = %reason, "tag skipped");
    }
    let warnings = report.warnings.iter().chain(&assembly.notes);
    let unknown = assembly.assembled.unknown_entries.iter();
    let policy = unknown.map(|v| cairn_graph::assemble::unknown_entry(v));
    let policy: Vec<String> = policy.chain(assembly.assembled.unmentioned).collect();
    for warning in warnings.chain(&assembly.assembled.warnings).chain(&policy) {
        tracing::warn!(stream, "{warning}");
    }
    let served = ServedDocument {
        bytes: Bytes::from(document.to_json_pretty()),
        manifest_digest: None,
        signature: None,
    };
    let snapshot = Snapshot::from_document(&document, Some(served));
    state.known.previous = Some(std::sync::Arc::new(document));
    Ok(Refresh::Updated(snapshot))
}

/// A pipeline error, named by the setting behind it, with the whole chain.
fn scan_error(repository: &str, error: &publish::PublishError) -> SourceError {
    let mut message = match error {
        publish::PublishError::BaseGraph { .. } => format!("scan.base_graph: {error}"),
        publish::PublishError::BaseLayers { .. } => format!("scan.base_layers_from: {error}"),
        _ => format!("{repository}: {error}"),
    };
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        message.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    SourceError::new(error.kind(), message)
}
