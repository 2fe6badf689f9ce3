//! The publish pipeline: scan a repository, find each image's base release,
//! assemble the next document (inheriting from the base graph, carrying the
//! previous document's barriers, dead-ends and rollouts forward), then keep
//! its images from garbage collection and push it. `cairn publish` runs all
//! of it; `cairn serve`'s scan sources run [`assemble`], so that what they
//! serve is what would be published.

use crate::client::RegistryClient;
use crate::document::{self as doc, DocumentStoreError, FetchedDocument, Published, Seen};
use crate::error::OciError;
use crate::halts::{HaltStoreError, HaltTrust, UpdateOptions};
use crate::reference::Location;
use crate::scan::{self, ScanCache, ScanOptions, ScanReport};
use crate::signing::{SigningKey, VerifyingKey};
use crate::sources::{BaseRead, BaseSource, SourceError};
use crate::store::Store;
use crate::trust::{Role, RoleKeys};
use cairn_graph::assemble::{AssembleError, AssembleOptions, Assembled, BaseInput, Candidate};
use cairn_graph::derive::BaseGraph;
use cairn_graph::document::{ClearedHalt, HaltSettings};
use cairn_graph::fcos::Updates;
use cairn_graph::halts::HaltList;
use cairn_graph::{GraphDocument, Rollout};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Why the pipeline stopped. The message names what failed;
/// [`PublishError::kind`] is a fixed label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The published document could not be read.
    #[error("reading the published document {tag}")]
    Previous {
        /// The document tag.
        tag: String,
        /// Why.
        #[source]
        source: DocumentStoreError,
    },
    /// The published document is not signed by the publishing key.
    #[error("{0}; refusing to build on and re-sign it (check who pushed it)")]
    UnverifiedPrevious(DocumentStoreError),
    /// A refresh, with nothing published to refresh.
    #[error("nothing is published under {0}")]
    NothingPublished(String),
    /// The base graph could not be read or trusted.
    #[error("base graph {source_text}")]
    BaseGraph {
        /// The base source as given.
        source_text: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// The repository could not be scanned.
    #[error("scanning {store}")]
    Scan {
        /// The store.
        store: String,
        /// Why.
        #[source]
        source: OciError,
    },
    /// Base images could not be matched by their layers.
    #[error("matching layers with {repository}")]
    BaseLayers {
        /// The base image repository.
        repository: String,
        /// Why.
        #[source]
        source: OciError,
    },
    /// No valid document could be assembled.
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    /// Tagging barrier and target images failed.
    #[error("tagging images to keep")]
    Keep(#[source] OciError),
    /// The push failed, or another publisher moved the tag.
    #[error(transparent)]
    Push(#[from] DocumentStoreError),
    /// Policy entries name no release, and that was not allowed.
    #[error("the policy names no release {}: its settings would apply to nothing (fix the version, or allow it)", .0.join(", "))]
    UnknownReleases(Vec<String>),
    /// The published document has fields this version does not know:
    /// building on it would silently drop them.
    #[error(
        "the published document {tag} has fields this version of cairn does not know: {}; \
         building on it would drop them (publish with the newer cairn that wrote them)",
        .fields.join(", ")
    )]
    UnknownFields {
        /// The document tag.
        tag: String,
        /// The fields, as JSON paths.
        fields: Vec<String>,
    },
    /// The stream's halt list could not be read, created or trusted.
    #[error("halt list {location}")]
    Halts {
        /// Where it is.
        location: String,
        /// Why.
        #[source]
        source: HaltStoreError,
    },
    /// A `--halt-list` value that names no place a list can live.
    #[error("halt list {location}: {message}")]
    HaltLocation {
        /// As given.
        location: String,
        /// What is wrong.
        message: String,
    },
}

impl PublishError {
    /// A short, fixed label: `unverified_previous`, `nothing_published`, or
    /// the underlying error's own kind.
    pub fn kind(&self) -> &'static str {
        match self {
            PublishError::Previous { source, .. } => source.kind(),
            PublishError::UnverifiedPrevious(_) => "unverified_previous",
            PublishError::NothingPublished(_) => "nothing_published",
            PublishError::BaseGraph { source, .. } => source.kind(),
            PublishError::Scan { source, .. } | PublishError::BaseLayers { source, .. } => {
                source.kind()
            }
            PublishError::Assemble(e) => e.kind(),
            PublishError::Keep(e) => e.kind(),
            PublishError::Push(e) => e.kind(),
            PublishError::UnknownReleases(_) => "unknown_releases",
            PublishError::UnknownFields { .. } => "unknown_fields",
            PublishError::Halts { source, .. } => source.kind(),
            PublishError::HaltLocation { .. } => "halts_location",
        }
    }
}

/// The base graph derived releases inherit from, and how to read it.
#[derive(Debug, Clone)]
pub struct BaseOptions {
    /// Where it comes from.
    pub source: BaseSource,
    /// Keys a Cairn base document must be signed with.
    pub keys: Vec<VerifyingKey>,
    /// Accept an unsigned Cairn base document.
    pub allow_unsigned: bool,
    /// For images that record no base: match their lower layers against
    /// the base releases' images in this repository.
    pub layers_from: Option<String>,
    /// Reuse the base graph kept in the scan cache until it is this old
    /// (`cairn serve`, which assembles every few seconds); `None` reads it
    /// every time.
    pub reread_after: Option<Duration>,
}

/// The base graph as last read, kept in the [`ScanCache`] between
/// assemblies, and the last Cairn base document accepted, so that an older
/// one (a replay, which could drop a barrier) is refused.
#[derive(Debug, Clone, Default)]
pub struct BaseMemory {
    /// The graph, and when it was read.
    pub graph: Option<(BaseGraph, Timestamp)>,
    /// The architectures it was asked for, for a base that answers per
    /// architecture (served or not): a new one means reading it again.
    pub arches: Vec<String>,
    /// The warnings of that read (architectures the base does not serve),
    /// given again with every assembly that reuses the graph.
    pub warnings: Vec<String>,
    /// The accepted base document's sequence and digest.
    pub seen: Option<(u64, String)>,
    /// The newest base trust root verified: the next read walks on from it.
    pub root: Option<crate::trust::TrustedRoot>,
}

/// What to assemble, and from what.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The stream the document describes.
    pub stream: &'a str,
    /// The release team's policy.
    pub policy: Option<&'a Updates>,
    /// Only tags matching this glob are releases (mutable tags are always read).
    pub tag_pattern: Option<&'a str>,
    /// Tags that move, re-read on every scan.
    pub mutable_tags: &'a [String],
    /// Re-read every tag, not just new and mutable ones.
    pub recheck: bool,
    /// The rollout new releases without a policy entry get.
    pub default_rollout: Option<Rollout>,
    /// The publication time.
    pub now: Timestamp,
    /// When the document expires.
    pub expires: Timestamp,
    /// The base graph, for derived repositories.
    pub base: Option<&'a BaseOptions>,
    /// The repository a layout's document names when no previous one does.
    pub layout_repository: &'a str,
}

/// What the pipeline tells as it goes; every method does nothing by default.
pub trait Observer: Sync {
    /// The base graph was read.
    fn base_read(&self, _base: &BaseGraph) {}
    /// Scanning: `done` of `total` steps.
    fn progress(&self, _done: u64, _total: u64) {}
    /// The scan is over.
    fn scanned(&self) {}
    /// This many images were matched to a base release by their layers.
    fn matched_by_layers(&self, _matched: usize) {}
    /// The releases and tags found, before assembling.
    fn found(&self, _report: &ScanReport) {}
    /// Building on a document the key does not verify, as allowed.
    fn unverified_previous(&self, _error: &DocumentStoreError) {}
    /// The document is assembled; keeping and pushing come next.
    fn assembled(&self, _assembly: &Assembly) {}
    /// This many images were tagged to keep them.
    fn kept(&self, _kept: usize) {}
    /// The halt list was read and verified (`created`: published as a first,
    /// empty list just now; `None`: none yet, in a dry run).
    fn halts(&self, _settings: &HaltSettings, _list: Option<&HaltList>, _created: bool) {}
    /// The halt list verified, but expired at `expires`: the publish goes
    /// on (hosts freeze until `cairn halt refresh` renews the list).
    fn halts_expired(&self, _location: &str, _expires: jiff::Timestamp) {}
}

/// An observer that hears nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// What [`assemble`] found and built.
#[derive(Debug, Clone)]
pub struct Assembly {
    /// The new document and what changed.
    pub assembled: Assembled,
    /// The scan: tags skipped and why, warnings, every tag.
    pub report: ScanReport,
    /// The base graph read, for derived repositories.
    pub base: Option<BaseGraph>,
    /// Notes from finding base releases.
    pub notes: Vec<String>,
    /// HTTP requests the scan made.
    pub requests: u64,
}

/// Scan `store`, find base releases, and assemble the document that follows
/// `previous`. `client` reads the base graph. `cache` is read and updated,
/// and holds what was read even when this fails.
pub async fn assemble(
    store: &Store,
    client: &RegistryClient,
    previous: Option<&GraphDocument>,
    options: &Options<'_>,
    cache: &mut ScanCache,
    observer: &dyn Observer,
) -> Result<Assembly, PublishError> {
    let (mut report, requests, base) =
        scan_with_base(store, client, previous, options, cache, observer).await?;
    if let (Some(base), Some(from)) = (&base, options.base.and_then(|b| b.layers_from.as_ref())) {
        let matched = crate::derived::match_base_layers(
            store,
            from,
            &mut report.candidates,
            base,
            cache,
            &mut report.warnings,
        )
        .await
        .map_err(|source| PublishError::BaseLayers {
            repository: from.clone(),
            source,
        })?;
        observer.matched_by_layers(matched);
    }
    observer.found(&report);
    let repository = match store {
        Store::Registry { repository, .. } => repository.to_string(),
        #[cfg(feature = "image-proxy")]
        Store::Proxy { repository, .. } => repository.to_string(),
        Store::Layout(_) => previous
            .map(|p| p.repository.clone())
            .unwrap_or_else(|| options.layout_repository.to_string()),
    };
    let mut notes = Vec::new();
    let expanded = match &base {
        Some(base) => {
            crate::derived::expand_base_digests(store, &report.candidates, base, &mut notes).await
        }
        None => BTreeMap::new(),
    };
    let assembled = cairn_graph::assemble::assemble(
        previous,
        report.candidates.clone(),
        &AssembleOptions {
            stream: options.stream,
            repository: &repository,
            now: options.now,
            expires: options.expires,
            default_rollout: options.default_rollout,
            policy: options.policy,
            present: Some(&report.present),
            base: base.as_ref().map(|graph| BaseInput {
                graph,
                expanded: &expanded,
            }),
        },
    )?;
    Ok(Assembly {
        assembled,
        report,
        base,
        notes,
        requests,
    })
}

/// Scan, and read the base graph: before the scan, which needs its
/// repository, unless the source answers per architecture; then after it,
/// for the architectures found. Returns the report, the scan's HTTP
/// requests, and the base graph.
async fn scan_with_base(
    store: &Store,
    client: &RegistryClient,
    previous: Option<&GraphDocument>,
    options: &Options<'_>,
    cache: &mut ScanCache,
    observer: &dyn Observer,
) -> Result<(ScanReport, u64, Option<BaseGraph>), PublishError> {
    let Some(wanted) = options.base else {
        let (report, requests) = scan(store, options, None, cache, observer).await?;
        return Ok((report, requests, None));
    };
    if !per_architecture(&wanted.source) {
        let base = match recent_base(&cache.base, wanted, options.now) {
            Some(base) => base,
            None => {
                read_base(client, wanted, options.now, &[], cache, observer)
                    .await?
                    .0
            }
        };
        let repository = Some(base.repository.clone());
        let (report, requests) = scan(store, options, repository, cache, observer).await?;
        return Ok((report, requests, Some(base)));
    }
    // Which architectures to ask for is known only after the scan; a kept
    // graph serves only if it was asked for each of them.
    let (report, requests) = scan(store, options, None, cache, observer).await?;
    let arches = architectures(&report.candidates, previous);
    let (base, skipped) = match kept_for(&cache.base, wanted, &arches, options.now) {
        Some(base) => (base, cache.base.warnings.clone()),
        None => read_base(client, wanted, options.now, &arches, cache, observer).await?,
    };
    // Only now is the base repository known: images that record only their
    // base's digest are read again with it (from the cache).
    let nameless = |c: &Candidate| c.base.as_ref().is_some_and(|b| b.repository.is_empty());
    let (mut report, requests) = if report.candidates.iter().any(nameless) {
        let repository = Some(base.repository.clone());
        let (report, again) = scan(store, options, repository, cache, observer).await?;
        (report, requests + again)
    } else {
        (report, requests)
    };
    report.warnings.extend(skipped);
    Ok((report, requests, Some(base)))
}

/// The base graph kept in the cache, when reusing it is asked for and it is
/// recent enough.
fn recent_base(memory: &BaseMemory, wanted: &BaseOptions, now: Timestamp) -> Option<BaseGraph> {
    let after = wanted.reread_after?;
    let (graph, read_at) = memory.graph.as_ref()?;
    let age = now.duration_since(*read_at);
    let fresh = age >= jiff::SignedDuration::ZERO && age.unsigned_abs() < after;
    fresh.then(|| graph.clone())
}

/// The kept graph of a base that answers per architecture, when it is recent
/// and was asked for every one of `arches`.
fn kept_for(
    memory: &BaseMemory,
    wanted: &BaseOptions,
    arches: &[String],
    now: Timestamp,
) -> Option<BaseGraph> {
    recent_base(memory, wanted, now).filter(|_| arches.iter().all(|a| memory.arches.contains(a)))
}

/// A Cincinnati server answers for one architecture at a time; the other
/// sources describe every architecture at once.
fn per_architecture(source: &BaseSource) -> bool {
    matches!(source, BaseSource::Cincinnati { .. })
}

/// Every architecture the current releases have, so each one's base
/// manifests are known; `x86_64` when there are none at all. Architectures
/// of gone releases are left out: a base that dropped one must not fail
/// every later publish.
fn architectures(candidates: &[Candidate], previous: Option<&GraphDocument>) -> Vec<String> {
    let mut arches: BTreeSet<String> = candidates
        .iter()
        .flat_map(|c| c.architectures.keys().cloned())
        .collect();
    if let Some(previous) = previous {
        let available = previous.releases.iter().flat_map(|release| {
            release
                .architectures
                .iter()
                .filter(|(_, entry)| entry.available)
                .map(|(arch, _)| arch.clone())
        });
        arches.extend(available);
    }
    if arches.is_empty() {
        arches.insert("x86_64".to_string());
    }
    arches.into_iter().collect()
}

/// The base graph, read and checked as its kind requires; for a source that
/// answers per architecture, once per architecture in `arches`, merged.
/// An architecture the base does not serve (not found, or refused with an
/// HTTP status) is left out with a warning, returned; at least one must be
/// read. An unreachable server fails the whole read.
async fn read_base(
    client: &RegistryClient,
    base: &BaseOptions,
    now: Timestamp,
    arches: &[String],
    cache: &mut ScanCache,
    observer: &dyn Observer,
) -> Result<(BaseGraph, Vec<String>), PublishError> {
    let failed = |source| PublishError::BaseGraph {
        source_text: base.source.to_string(),
        source,
    };
    let read = |arch| BaseRead {
        keys: &base.keys,
        allow_unsigned: base.allow_unsigned,
        now,
        arch,
    };
    let mut skipped = Vec::new();
    let graph = if arches.is_empty() {
        // Only a Cincinnati server reads the architecture.
        let memory = &mut cache.base;
        let last_seen = memory.seen.as_ref().map(|(sequence, digest)| Seen {
            sequence: *sequence,
            digest,
        });
        let read = crate::sources::read_base_graph_rooted(
            client,
            &base.source,
            &read(""),
            last_seen,
            &mut memory.root,
        )
        .await
        .map_err(failed)?;
        if read.seen.is_some() {
            memory.seen = read.seen;
        }
        read.graph
    } else {
        let mut graphs = Vec::new();
        let mut refused = Vec::new();
        for arch in arches {
            match crate::sources::read_base_graph(client, &base.source, &read(arch)).await {
                Ok(graph) => graphs.push((arch.clone(), graph)),
                Err(error) if not_served(&error) => refused.push(error),
                Err(error) => return Err(failed(error)),
            }
        }
        if graphs.is_empty() {
            return Err(failed(SourceError::no_architecture(&refused)));
        }
        skipped = refused
            .iter()
            .map(|error| {
                format!("base graph {}: {error}; its releases inherit nothing from the base until it is served", base.source)
            })
            .collect();
        BaseGraph::merge(graphs)
    };
    observer.base_read(&graph);
    cache.base.graph = Some((graph.clone(), now));
    cache.base.arches = arches.to_vec();
    cache.base.warnings.clone_from(&skipped);
    Ok((graph, skipped))
}

/// A per-architecture answer that says the base does not serve that
/// architecture: not found, or refused as a bad request (Cairn's server
/// answers 400 `unknown_basearch`). A server that could not be reached, is
/// overloaded or failed (429, 5xx) fails the read, so it is tried again
/// rather than an architecture published without its base.
fn not_served(error: &SourceError) -> bool {
    error.is_not_found() || matches!(error.http_status(), Some(400 | 404))
}

async fn scan(
    store: &Store,
    options: &Options<'_>,
    base_repository: Option<String>,
    cache: &mut ScanCache,
    observer: &dyn Observer,
) -> Result<(ScanReport, u64), PublishError> {
    if cache.store != store.describe() {
        // A cache of another repository or layout would lie about tags.
        *cache = ScanCache {
            store: store.describe(),
            // The base graph is not the store's.
            base: std::mem::take(&mut cache.base),
            ..ScanCache::default()
        };
    }
    let scan_options = ScanOptions {
        tag_pattern: options.tag_pattern.map(str::to_string),
        mutable_tags: options.mutable_tags.to_vec(),
        recheck: options.recheck,
        base_repository,
        ..ScanOptions::for_stream(options.stream)
    };
    let before = store.request_count();
    let progress = |done, total| observer.progress(done, total);
    let report = scan::scan(store, &scan_options, cache, &progress).await;
    observer.scanned();
    let report = report.map_err(|source| PublishError::Scan {
        store: store.describe(),
        source,
    })?;
    Ok((report, store.request_count() - before))
}

/// What to publish, and how.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    /// What to assemble.
    pub options: Options<'a>,
    /// The document's tag.
    pub tag: &'a str,
    /// Sign with each of these keys (none: unsigned).
    pub keys: &'a [SigningKey],
    /// The trust root version the keys sign under, written into the
    /// document's `root_version` (0: no trust root).
    pub root_version: u64,
    /// Build on a published document none of these keys verifies.
    pub accept_unverified_previous: bool,
    /// Only work out what would change.
    pub dry_run: bool,
    /// Only re-sign the published document with new `issued` and `expires`.
    pub refresh: bool,
    /// Publish even when policy entries name no release (they apply to
    /// nothing); otherwise that is [`PublishError::UnknownReleases`].
    pub allow_unknown_releases: bool,
    /// The stream's halt list: turned on, kept as the previous document
    /// has it, or turned off.
    pub halt_list: HaltListSetting,
    /// Halt keys a halt list may be signed with (the signing key's public
    /// half is trusted as a graph key).
    pub halt_keys: &'a [VerifyingKey],
    /// The newest trust root the publish signs under. When set, its graph
    /// role (with its threshold) alone judges the previous document, and its
    /// graph and halt roles the halt list, in place of the signing keys: a
    /// signing key the newest root revoked does not vouch for what it
    /// signed. `halt_keys` then only let the list be read for its sequence.
    pub root: Option<&'a crate::trust::TrustedRoot>,
    /// Publish a new, empty first halt list although the previous document
    /// proves one was published there (`halts.min_sequence` > 0) and it is
    /// gone: this lifts every halt it held, so only when meant.
    pub recreate_halt_list: bool,
}

impl Publication<'_> {
    /// The signing keys' public halves: without a root, what they signed
    /// may be built on.
    fn own_keys(&self) -> Vec<VerifyingKey> {
        crate::halts::own_keys(self.keys)
    }
}

/// Whether a publication turns halt lists on or off for the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HaltListSetting {
    /// As the previous document has it.
    #[default]
    Keep,
    /// Halt lists on, at this location (see [`halt_list_location`]).
    On(String),
    /// Halt lists off.
    Off,
}

/// A halt list's location as documents name it: `oci:DIR` or a registry
/// repository gets the stream's default tag (`cairn-halts-<stream>`); a
/// tag, digest, file or URL is kept as given.
pub fn halt_list_location(text: &str, stream: &str) -> Result<String, PublishError> {
    let bad = |message: String| PublishError::HaltLocation {
        location: text.to_string(),
        message,
    };
    let location = Location::parse(text).map_err(|e| bad(e.to_string()))?;
    let location = match location {
        Location::Registry(mut reference) => {
            if reference.tag.is_none() && reference.digest.is_none() {
                reference.tag = Some(crate::halts::default_tag(stream));
            }
            Location::Registry(reference)
        }
        Location::Layout { path, tag } => Location::Layout {
            path,
            tag: tag.or_else(|| Some(crate::halts::default_tag(stream))),
        },
        other => other,
    };
    Ok(location.to_string())
}

/// Where a halt list can be written: its store and tag. Files, URLs and
/// digests cannot take a new list.
pub fn halt_list_store(
    location: &str,
    client: &RegistryClient,
) -> Result<(Store, String), PublishError> {
    let bad = |message: &str| PublishError::HaltLocation {
        location: location.to_string(),
        message: message.to_string(),
    };
    match Location::parse(location).map_err(|e| bad(&e.to_string()))? {
        Location::Registry(reference) => match (&reference.tag, &reference.digest) {
            (Some(tag), None) => Ok((
                Store::registry(client.clone(), reference.repository.clone()),
                tag.clone(),
            )),
            _ => Err(bad("a list is written under a tag, not a digest")),
        },
        Location::Layout {
            path,
            tag: Some(tag),
        } => {
            let layout =
                crate::layout::Layout::open_or_create(&path).map_err(|e| bad(&e.to_string()))?;
            Ok((Store::Layout(layout), tag))
        }
        _ => Err(bad(
            "a list is written to a registry repository or an oci: layout, with a tag",
        )),
    }
}

/// What [`publish`] did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Pushed: the document as published (boxed: a document is large).
    Published(Box<Published>),
    /// A dry run: the lines that would change (none: only `issued` and
    /// `expires` would).
    DryRun(Vec<String>),
}

/// The whole pipeline: read the published document (and check it is this
/// key's), assemble the next one, tag its barrier and target images so
/// garbage collection keeps them, and push it. A conflict with another
/// publisher is [`PublishError::Push`] with [`DocumentStoreError::Conflict`].
pub async fn publish(
    store: &Store,
    client: &RegistryClient,
    publication: &Publication<'_>,
    cache: &mut ScanCache,
    observer: &dyn Observer,
) -> Result<Outcome, PublishError> {
    let tag = publication.tag;
    let (previous, expected) = match doc::fetch(store, tag).await {
        Ok(fetched) => {
            check_previous(&fetched, publication, observer)?;
            if !fetched.ignored_fields.is_empty() {
                return Err(PublishError::UnknownFields {
                    tag: tag.to_string(),
                    fields: fetched.ignored_fields,
                });
            }
            (Some(fetched.document), Some(fetched.manifest_digest))
        }
        Err(DocumentStoreError::Store(OciError::NotFound(_))) => (None, Some(None)),
        Err(source) => {
            return Err(PublishError::Previous {
                tag: tag.to_string(),
                source,
            });
        }
    };
    if publication.refresh {
        let mut document = previous.ok_or_else(|| PublishError::NothingPublished(tag.into()))?;
        document.issued = publication.options.now;
        document.expires = publication.options.expires;
        let previous = document.clone();
        settle_halts(
            client,
            Some(&previous),
            &mut document,
            publication,
            observer,
        )
        .await?;
        return push(store, document, publication, expected).await;
    }
    let mut assembly = assemble(
        store,
        client,
        previous.as_ref(),
        &publication.options,
        cache,
        observer,
    )
    .await?;
    settle_halts(
        client,
        previous.as_ref(),
        &mut assembly.assembled.document,
        publication,
        observer,
    )
    .await?;
    observer.assembled(&assembly);
    let unknown = &assembly.assembled.unknown_entries;
    if !unknown.is_empty() && !publication.allow_unknown_releases {
        return Err(PublishError::UnknownReleases(unknown.clone()));
    }
    if publication.dry_run {
        let lines = cairn_graph::render::diff(previous.as_ref(), &assembly.assembled.document);
        return Ok(Outcome::DryRun(lines));
    }
    let keep = keep_digests(&assembly.assembled.document, &assembly.report.candidates);
    let kept = scan::keep(store, &keep, &assembly.report.all_tags)
        .await
        .map_err(PublishError::Keep)?;
    observer.kept(kept);
    push(store, assembly.assembled.document, publication, expected).await
}

/// Set the document's `halts` as the publication says: off, or on at a
/// location, with the sequence of the list verified now as the floor readers
/// pair with this document, and the halts the policy clears added to those
/// already cleared. With halts on and no list yet, a first, empty list is
/// published with the signing key, so that hosts have one to verify.
async fn settle_halts(
    client: &RegistryClient,
    previous: Option<&GraphDocument>,
    document: &mut GraphDocument,
    publication: &Publication<'_>,
    observer: &dyn Observer,
) -> Result<(), PublishError> {
    let options = &publication.options;
    let held = previous.and_then(|p| p.halts.as_ref());
    let location = match (&publication.halt_list, held) {
        (HaltListSetting::On(text), _) => halt_list_location(text, options.stream)?,
        (HaltListSetting::Keep, Some(held)) => held.location.clone(),
        (HaltListSetting::Off, _) | (HaltListSetting::Keep, None) => {
            document.halts = None;
            return Ok(());
        }
    };
    let failed = |source| PublishError::Halts {
        location: location.clone(),
        source,
    };
    let graph_keys = publication.own_keys();
    // The floor the list must reach: what the previous document paired with
    // the list at this location. A new location starts from nothing.
    let floor = held
        .filter(|h| h.location == location)
        .map_or(0, |h| h.min_sequence);
    let mut created = false;
    let fetched = match halt_list_store(&location, client) {
        Ok((store, tag)) => match store.resolve(&tag).await.map_err(|e| failed(e.into()))? {
            Some(_) => Some(crate::halts::fetch(&store, &tag).await.map_err(failed)?),
            // The previous document proves a list was here: a new, empty
            // one would lift every halt it held.
            None if floor > 0 && !publication.recreate_halt_list => {
                return Err(failed(HaltStoreError::Missing {
                    tag: tag.clone(),
                    min_sequence: floor,
                }));
            }
            None if publication.dry_run => None,
            None => {
                if publication.keys.is_empty() {
                    return Err(PublishError::HaltLocation {
                        location: location.clone(),
                        message: "no halt list there yet, and a first one must be signed: \
                              publish with --sign-key"
                            .into(),
                    });
                }
                let identity = store_identity(&store, &document.repository);
                // A first list: nothing is built on, but the writer's keys
                // and those it trusts judge a list that appears meanwhile.
                let trust = match publication.root {
                    Some(root) => Some(root.clone()),
                    None => {
                        crate::trust::TrustedRoot::from_config(&graph_keys, publication.halt_keys)
                    }
                };
                let update = UpdateOptions {
                    publish: doc::PublishOptions {
                        tag: &tag,
                        identity: &identity,
                        keys: publication.keys,
                        root_version: publication.root_version,
                        settle: Duration::from_millis(500),
                        expected: Some(None),
                    },
                    trust: trust.as_ref(),
                    stream: options.stream,
                    lifetime: crate::halts::DEFAULT_LIFETIME,
                    cleared: &[],
                    accept_unverified_current: false,
                };
                // No floor: a first list (or one re-created as asked), and
                // `expected: Some(None)` refuses one that appeared meanwhile.
                crate::halts::refresh_above(&store, &update, &crate::halts::Floor::NONE)
                    .await
                    .map_err(failed)?;
                created = true;
                Some(crate::halts::fetch(&store, &tag).await.map_err(failed)?)
            }
        },
        // A file or URL: read only.
        Err(_) => {
            let parsed = Location::parse(&location).map_err(|e| failed(e.into()))?;
            Some(
                crate::halts::fetch_location(&parsed, client)
                    .await
                    .map_err(failed)?,
            )
        }
    };
    let mut cleared = held.map(|h| h.cleared.clone()).unwrap_or_default();
    let mut min_sequence = 0;
    if let Some(fetched) = &fetched {
        // Expiry aside: an expired list must not block the publish (least of
        // all `--refresh`); hosts freeze on it until `cairn halt refresh`.
        let floor = if created { 0 } else { floor };
        let (graph, halt, also_halt) = match publication.root {
            Some(root) => (
                Some(root.role(Role::Graph)),
                Some(root.role(Role::Halt)).filter(|role| !role.is_empty()),
                doc::configured_role(Role::Halt, publication.halt_keys),
            ),
            None => (
                doc::configured_role(Role::Graph, &graph_keys),
                doc::configured_role(Role::Halt, &[publication.halt_keys, &graph_keys].concat()),
                None,
            ),
        };
        let judge = |graph: Option<&RoleKeys>, halt: Option<&RoleKeys>| {
            fetched.verify_expiry_aside(&HaltTrust {
                graph,
                halt,
                stream: options.stream,
                newest_held: None,
                min_sequence: floor,
                now: options.now,
            })
        };
        match (judge(graph.as_ref(), halt.as_ref()), &also_halt) {
            (Ok(_), _) => {}
            // Under a root, a `--halt-key` the root does not list (the
            // leaked key of docs/key-rotation.md's emergency) lets the list
            // be read for its sequence; hosts still judge it by their root.
            // When that fails too, the root's refusal is the one to report.
            (Err(error), Some(extra)) => {
                if judge(None, Some(extra)).is_err() {
                    return Err(failed(error));
                }
            }
            (Err(error), None) => return Err(failed(error)),
        }
        if fetched.list.expires < options.now {
            observer.halts_expired(&location, fetched.list.expires);
        }
        min_sequence = fetched.list.sequence;
        if let Some(policy) = options.policy {
            clear_marked(&fetched.list, policy, &mut cleared);
        }
    }
    let settings = HaltSettings {
        location,
        min_sequence,
        cleared,
    };
    observer.halts(&settings, fetched.as_ref().map(|f| &f.list), created);
    document.halts = Some(settings);
    Ok(())
}

/// Add to `cleared` every entry of `list` made at or before the time the
/// policy marks its release's halts cleared (`cairn_halt_cleared`).
fn clear_marked(list: &HaltList, policy: &Updates, cleared: &mut Vec<ClearedHalt>) {
    for entry in &list.entries {
        let mark = policy
            .settings(&entry.version)
            .and_then(|settings| settings.halt_cleared);
        let marked = mark.is_some_and(|mark| entry.time <= mark);
        if marked && !cleared.iter().any(|c| c.id == entry.id) {
            cleared.push(ClearedHalt {
                id: entry.id.clone(),
                version: entry.version.clone(),
            });
        }
    }
}

/// The repository a signature names: the registry repository, or for a
/// layout the document's repository.
fn store_identity(store: &Store, repository: &str) -> String {
    match store {
        Store::Registry { repository, .. } => repository.to_string(),
        #[cfg(feature = "image-proxy")]
        Store::Proxy { repository, .. } => repository.to_string(),
        Store::Layout(_) => repository.to_string(),
    }
}

/// Refuse to build on (and so re-sign) a document this key did not sign:
/// someone who can push but cannot sign must not get their releases signed.
/// Under trust roots, only the newest root's graph role counts, with its
/// threshold: a document a revoked key signed is not built on, even when
/// that key is among the signing keys.
fn check_previous(
    previous: &FetchedDocument,
    publication: &Publication<'_>,
    observer: &dyn Observer,
) -> Result<(), PublishError> {
    let signers = match publication.root {
        Some(root) => root.role(Role::Graph),
        None => match doc::configured_role(Role::Graph, &publication.own_keys()) {
            Some(role) => role,
            None => return Ok(()),
        },
    };
    let policy = doc::TrustPolicy {
        signers: Some(&signers),
        allow_unsigned: false,
        now: previous.document.issued,
        last_seen: None,
        stream: None,
    };
    match previous.verify(publication.tag, &policy) {
        Ok(()) => Ok(()),
        Err(error) if publication.accept_unverified_previous => {
            observer.unverified_previous(&error);
            Ok(())
        }
        Err(error) => Err(PublishError::UnverifiedPrevious(error)),
    }
}

/// The tagged digests of barrier and rollout-target releases.
fn keep_digests(document: &GraphDocument, candidates: &[Candidate]) -> Vec<String> {
    let mut digests = Vec::new();
    for release in &document.releases {
        let wanted =
            release.barrier.is_some() || (release.rollout.is_some() && release.deadend.is_none());
        if !wanted {
            continue;
        }
        for entry in release.architectures.values().filter(|e| e.available) {
            let Some(digest) = &entry.digest else {
                continue;
            };
            let source = candidates.iter().find(|c| {
                c.architectures
                    .values()
                    .any(|e| e.digest.as_ref() == Some(digest))
            });
            if let Some(source) = source
                && !digests.contains(&source.source_digest)
            {
                digests.push(source.source_digest.clone());
            }
        }
    }
    digests
}

async fn push(
    store: &Store,
    document: GraphDocument,
    publication: &Publication<'_>,
    expected: Option<Option<String>>,
) -> Result<Outcome, PublishError> {
    let identity = match store {
        Store::Registry { repository, .. } => repository.to_string(),
        #[cfg(feature = "image-proxy")]
        Store::Proxy { repository, .. } => repository.to_string(),
        Store::Layout(_) => document.repository.clone(),
    };
    let options = doc::PublishOptions {
        tag: publication.tag,
        identity: &identity,
        keys: publication.keys,
        root_version: publication.root_version,
        settle: Duration::from_millis(500),
        expected,
    };
    Ok(Outcome::Published(Box::new(
        doc::publish(store, document, &options).await?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document written by a newer publisher, with a field this version
    /// does not know, is not built on: re-serialising it would drop the field.
    #[tokio::test]
    async fn a_document_with_unknown_fields_is_not_built_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = crate::layout::Layout::open_or_create(dir.path()).expect("layout");
        let store = Store::Layout(layout);
        let issued: Timestamp = "2026-03-10T12:00:00Z".parse().expect("time");
        let document = GraphDocument {
            schema: 1,
            stream: "stable".into(),
            repository: "example.org/acme/os".into(),
            sequence: 1,
            issued,
            expires: issued + jiff::SignedDuration::from_hours(24),
            releases: Vec::new(),
            base: None,
            halts: None,
            root_version: 0,
        };
        let text =
            document
                .to_json_pretty()
                .replacen('{', "{\n  \"future_setting\": {\"on\": true},", 1);
        let manifest = doc::document_manifest(&store, &document, text.into())
            .await
            .expect("manifest");
        let tag = doc::default_tag("stable");
        let push = doc::PublishOptions {
            tag: &tag,
            identity: "example.org/acme/os",
            keys: &[],
            root_version: 0,
            settle: Duration::ZERO,
            expected: None,
        };
        doc::push_signed_and_tag(&store, manifest, None, &push)
            .await
            .expect("pushed");
        let client = RegistryClient::new(crate::ClientOptions::default()).expect("client");
        let publication = Publication {
            options: Options {
                stream: "stable",
                policy: None,
                tag_pattern: None,
                mutable_tags: &[],
                recheck: false,
                default_rollout: None,
                now: issued,
                expires: issued + jiff::SignedDuration::from_hours(24),
                base: None,
                layout_repository: "example.org/acme/os",
            },
            tag: &tag,
            keys: &[],
            root_version: 0,
            accept_unverified_previous: false,
            dry_run: false,
            refresh: false,
            allow_unknown_releases: false,
            halt_list: HaltListSetting::Keep,
            halt_keys: &[],
            root: None,
            recreate_halt_list: false,
        };
        let mut cache = ScanCache::default();
        let error = publish(&store, &client, &publication, &mut cache, &Quiet)
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), "unknown_fields");
        assert!(error.to_string().contains("future_setting"), "{error}");
        let refresh = Publication {
            refresh: true,
            ..publication
        };
        let error = publish(&store, &client, &refresh, &mut cache, &Quiet)
            .await
            .expect_err("a refresh too");
        assert_eq!(error.kind(), "unknown_fields");
    }

    /// Only an answer that the architecture is not there skips it; an
    /// overloaded or failing server fails the read, to be tried again.
    #[test]
    fn only_not_found_and_bad_request_mean_an_architecture_is_not_served() {
        for status in [400, 404] {
            assert!(not_served(&SourceError::answered(status)), "{status}");
        }
        for status in [401, 429, 500, 502, 503, 504] {
            assert!(!not_served(&SourceError::answered(status)), "{status}");
        }
    }

    /// A kept per-architecture base graph serves only while it is recent and
    /// only for the architectures it was asked for: one that appears later
    /// is read, not left without its base's barriers.
    #[test]
    fn a_kept_base_graph_serves_only_recent_and_only_its_architectures() {
        let read_at: Timestamp = "2026-11-29T12:00:00Z".parse().expect("time");
        let memory = BaseMemory {
            graph: Some((BaseGraph::default(), read_at)),
            seen: None,
            root: None,
            arches: vec!["x86_64".into(), "ppc64le".into()],
            warnings: Vec::new(),
        };
        let wanted = BaseOptions {
            source: BaseSource::Cincinnati {
                url: "https://base.example".into(),
                stream: "stable".into(),
            },
            keys: Vec::new(),
            allow_unsigned: false,
            layers_from: None,
            reread_after: Some(Duration::from_secs(600)),
        };
        let soon = read_at + jiff::SignedDuration::from_secs(60);
        let later = read_at + jiff::SignedDuration::from_secs(601);
        let arches = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(kept_for(&memory, &wanted, &arches(&["x86_64"]), soon).is_some());
        assert!(kept_for(&memory, &wanted, &arches(&["x86_64", "aarch64"]), soon).is_none());
        assert!(kept_for(&memory, &wanted, &arches(&["x86_64"]), later).is_none());
        let every_time = BaseOptions {
            reread_after: None,
            ..wanted
        };
        assert!(kept_for(&memory, &every_time, &arches(&["x86_64"]), soon).is_none());
    }
}
