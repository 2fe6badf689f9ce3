//! Following a tag in a repository that publishes no document: the common
//! case for derived images. The host builds a small document for itself
//! from the booted image, the tag's image and the base graph, so the same
//! planning (base barriers, inherited dead-ends, metadata-only changes)
//! applies as for a published document. When the tag's image lies past a
//! base barrier the booted base has not passed, the repository's other tags
//! are searched for an image built on the way.

use crate::config::Settings;
use crate::source::GraphUnavailable;
use cairn_graph::GraphDocument;
use cairn_graph::assemble::Candidate;
use cairn_graph::derive::{BaseGraph, tag_following_document};
use cairn_graph::select::Hold;
use cairn_oci::scan::{ScanCache, ScanOptions, keys};
use cairn_oci::sources::{BaseRead, BaseSource, FEDORA_COREOS_REPOSITORY, SourceError};
use cairn_oci::{ImageRef, OciError, RegistryClient, Repository, Store};
use jiff::Timestamp;
use std::path::Path;

/// The scan cache of tag-following mode, in the state directory: digests
/// already read are never read again.
pub const CACHE_FILE: &str = "tag-scan.json";

/// Why a tag-following host has no document. The message names what was
/// read (the reference, the image, the base graph or the config key).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// The followed reference, or a mirror's repository, does not parse.
    #[error("{what}: {error}")]
    Reference {
        /// The text that was parsed.
        what: String,
        /// Why it does not parse.
        error: OciError,
    },
    /// The followed reference names a digest, not a tag.
    #[error("{followed} names no tag to follow")]
    NoTag {
        /// The reference followed.
        followed: String,
    },
    /// No place (mirror or the repository) had the tag.
    #[error("{0}")]
    Tag(GraphUnavailable),
    /// An image could not be read.
    #[error("{what}: {error}")]
    Image {
        /// Which image.
        what: String,
        /// Why.
        error: OciError,
    },
    /// An image is not a release Cairn can plan on (no version, say).
    #[error("{what}: {reason}")]
    NotARelease {
        /// Which image.
        what: String,
        /// Why not.
        reason: cairn_oci::scan::NotRelease,
    },
    /// The base graph's keys could not be read.
    #[error("updates.base_keys: {0}")]
    BaseKeys(OciError),
    /// The base graph could not be read or trusted.
    #[error("base graph: {0}")]
    BaseGraph(SourceError),
    /// No base source is configured and the booted image's base has no
    /// known graph.
    #[error("the booted image's base ({recorded}) has no known graph: set updates.base_source")]
    NoBaseSource {
        /// The base the image recorded, or `not recorded`.
        recorded: String,
    },
    /// Searching the repository for an image built on the way failed.
    #[error("searching {repository} for an image on base {version}: {error}")]
    Search {
        /// The repository.
        repository: String,
        /// The base barrier's version.
        version: String,
        /// Why (boxed: with two names beside it, the largest variant).
        error: Box<OciError>,
    },
}

impl FollowError {
    /// A short, fixed label for metrics and status: the underlying error's
    /// kind, or `no_tag`, `not_a_release`, `no_base_source`.
    pub fn kind(&self) -> &'static str {
        match self {
            FollowError::Reference { error, .. }
            | FollowError::Image { error, .. }
            | FollowError::BaseKeys(error) => error.kind(),
            FollowError::Search { error, .. } => error.kind(),
            FollowError::NoTag { .. } => "no_tag",
            FollowError::Tag(unavailable) => unavailable.kind(),
            FollowError::NotARelease { .. } => "not_a_release",
            FollowError::BaseGraph(error) => error.kind(),
            FollowError::NoBaseSource { .. } => "no_base_source",
        }
    }
}

impl From<FollowError> for GraphUnavailable {
    fn from(error: FollowError) -> GraphUnavailable {
        GraphUnavailable::new(error.kind(), error.to_string())
    }
}

/// What a tag-following check starts from.
#[derive(Debug, Clone, Copy)]
pub struct Follow<'a> {
    /// `repository:tag` the host follows.
    pub followed: &'a str,
    /// The stream (the tag, unless configured).
    pub stream: &'a str,
    /// The booted manifest digest.
    pub booted: &'a str,
    /// Fedora's name of this host's architecture.
    pub arch: &'a str,
    /// Now.
    pub now: Timestamp,
    /// The agent's state directory.
    pub state_dir: &'a Path,
    /// The host's registries.conf mirrors.
    pub mirrors: &'a cairn_oci::registries_conf::RegistriesConf,
}

/// The document a tag-following host plans on, and how to name its source.
pub async fn tag_document(
    settings: &Settings,
    follow: &Follow<'_>,
    client: &RegistryClient,
) -> Result<(GraphDocument, String), FollowError> {
    tag_document_in(
        settings,
        follow,
        &cairn_oci::Readers::builtin(client.clone()),
    )
    .await
}

/// [`tag_document`], reading with `readers`: through the image proxy when
/// it has one, which reads each image as the host's pull would (from the
/// mirror containers/image picks; an index as the host platform's image).
pub async fn tag_document_in(
    settings: &Settings,
    follow: &Follow<'_>,
    readers: &cairn_oci::Readers,
) -> Result<(GraphDocument, String), FollowError> {
    let reference = ImageRef::parse(follow.followed).map_err(|error| FollowError::Reference {
        what: follow.followed.to_string(),
        error,
    })?;
    let tag = reference.tag.clone().ok_or_else(|| FollowError::NoTag {
        followed: follow.followed.to_string(),
    })?;
    let repository = reference.repository.to_string();
    // The host's registries.conf mirrors first, as its own pulls go; the
    // document keeps the canonical name, so staging goes through them too.
    // skopeo picks the mirror itself (and lists tags at each place in turn).
    let mut places = match readers.proxy {
        Some(_) => Vec::new(),
        None => follow.mirrors.for_tag(&repository),
    };
    if places.is_empty() {
        places.push(repository.clone());
    }
    let mut failures = Vec::new();
    let mut found = None;
    for place in &places {
        let repository = Repository::parse(place).map_err(|error| FollowError::Reference {
            what: place.clone(),
            error,
        })?;
        let store = scan_store(readers, repository);
        match store.resolve(&tag).await {
            Ok(Some(head)) => {
                found = Some((store, head));
                break;
            }
            Ok(None) => failures.push(GraphUnavailable::new(
                "not_found",
                format!("{place}:{tag}: the tag does not exist"),
            )),
            Err(e) => failures.push(GraphUnavailable::new(
                e.kind(),
                format!("{place}:{tag}: {e}"),
            )),
        }
    }
    let Some((store, head)) = found else {
        return Err(FollowError::Tag(GraphUnavailable::all_failed(failures)));
    };
    let cache_path = follow.state_dir.join(CACHE_FILE);
    // Per backend: the built-in client reads an index's digest as the index,
    // skopeo as one platform's image.
    let cache_key = scan_cache_key(readers, &repository);
    let mut cache: ScanCache = std::fs::read(&cache_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ScanCache>(&bytes).ok())
        .filter(|cache| cache.store == cache_key)
        .unwrap_or_else(|| ScanCache {
            store: cache_key,
            ..ScanCache::default()
        });
    let options = ScanOptions {
        mutable_tags: vec![tag.clone()],
        ..ScanOptions::for_stream(follow.stream)
    };
    let mut notes = Vec::new();
    let booted = read(
        &store,
        &options,
        &format!("the booted image {repository}@{}", follow.booted),
        follow.booted,
        &[],
        &mut cache,
        &mut notes,
    )
    .await?;
    let target = read(
        &store,
        &options,
        follow.followed,
        &head.digest,
        std::slice::from_ref(&tag),
        &mut cache,
        &mut notes,
    )
    .await?;

    let source = base_source(settings, &cache, follow)?;
    let base_keys = cairn_oci::signing::VerifyingKey::from_files(&settings.base_keys)
        .map_err(FollowError::BaseKeys)?;
    let base = cairn_oci::sources::read_base_graph_in(
        readers,
        &source,
        &BaseRead {
            keys: &base_keys,
            allow_unsigned: settings.allow_unsigned,
            now: follow.now,
            arch: follow.arch,
        },
    )
    .await
    .map_err(FollowError::BaseGraph)?;

    let mut candidates = vec![booted.clone(), target];
    let mut document = build(&store, follow, &repository, &candidates, &base, &mut notes).await;
    // Held by a base barrier: look for images built on the way to it.
    if let Some(barrier) = blocking_barrier(&document, follow) {
        let booted_age = document
            .releases
            .iter()
            .find(|r| {
                r.architectures
                    .values()
                    .any(|e| e.digest.as_deref() == Some(follow.booted))
            })
            .and_then(|r| r.base.as_ref()?.age_index);
        let search = ScanOptions {
            mutable_tags: Vec::new(),
            ..ScanOptions::for_stream(follow.stream)
        };
        let report = cairn_oci::scan::scan(&store, &search, &mut cache, &|_, _| {})
            .await
            .map_err(|error| FollowError::Search {
                repository: repository.clone(),
                version: barrier.version.clone(),
                error: Box::new(error),
            })?;
        let expanded =
            cairn_oci::derived::expand_base_digests(&store, &report.candidates, &base, &mut notes)
                .await;
        let on_the_way = |c: &Candidate| {
            let age = base.age_of(c.base.as_ref()?, &expanded)?;
            let after_booted = booted_age.is_none_or(|b| age > b);
            (after_booted && age <= barrier.age_index).then_some(())
        };
        candidates.extend(
            report
                .candidates
                .into_iter()
                .filter(|c| on_the_way(c).is_some()),
        );
        document = build(&store, follow, &repository, &candidates, &base, &mut notes).await;
    }
    save(&cache_path, &cache);
    for note in notes {
        tracing::warn!("{note}");
    }
    Ok((
        document,
        format!("tag {} (base graph {})", follow.followed, base.source),
    ))
}

/// The store the scans read `repository` through: skopeo's image proxy as
/// the host's pulls see it, when the pass has one.
fn scan_store(readers: &cairn_oci::Readers, repository: Repository) -> Store {
    match &readers.proxy {
        Some(proxy) => Store::proxy_as_host_pulls(proxy.clone(), repository),
        None => Store::registry(readers.client.clone(), repository),
    }
}

/// What the scan cache of `repository` is kept for: the backend matters, as
/// the two read an index differently.
fn scan_cache_key(readers: &cairn_oci::Readers, repository: &str) -> String {
    match &readers.proxy {
        Some(_) => format!("{repository} through skopeo"),
        None => repository.to_string(),
    }
}

/// Read one image as a candidate; `what` names it in errors.
async fn read(
    store: &Store,
    options: &ScanOptions,
    what: &str,
    digest: &str,
    tags: &[String],
    cache: &mut ScanCache,
    notes: &mut Vec<String>,
) -> Result<Candidate, FollowError> {
    cairn_oci::scan::read_candidate(store, options, digest, tags, cache, notes)
        .await
        .map_err(|error| FollowError::Image {
            what: what.to_string(),
            error,
        })?
        .map_err(|reason| FollowError::NotARelease {
            what: what.to_string(),
            reason,
        })
}

async fn build(
    store: &Store,
    follow: &Follow<'_>,
    repository: &str,
    candidates: &[Candidate],
    base: &BaseGraph,
    notes: &mut Vec<String>,
) -> GraphDocument {
    let expanded = cairn_oci::derived::expand_base_digests(store, candidates, base, notes).await;
    tag_following_document(
        repository,
        follow.stream,
        candidates.to_vec(),
        base,
        &expanded,
        follow.now,
    )
    .0
}

/// The base barrier that keeps the booted release from the tag's image.
fn blocking_barrier(
    document: &GraphDocument,
    follow: &Follow<'_>,
) -> Option<cairn_graph::BaseBarrier> {
    let query = cairn_graph::Query {
        booted: follow.booted,
        wariness: 0.0,
        now: follow.now,
        deny: &[],
        halted: &[],
        allow_downgrade: false,
    };
    document
        .decide(follow.arch, &query)
        .held
        .into_iter()
        .find_map(|held| match held.hold {
            Hold::BaseBarrier { barrier, .. } => Some(barrier),
            _ => None,
        })
}

/// The configured base source, or Fedora's files when the booted image was
/// built on Fedora CoreOS (its recorded base name says which stream).
fn base_source(
    settings: &Settings,
    cache: &ScanCache,
    follow: &Follow<'_>,
) -> Result<BaseSource, FollowError> {
    if let Some(source) = &settings.base_source {
        return Ok(source.clone());
    }
    let recorded = cache.images.get(follow.booted).and_then(|image| {
        image
            .values()
            .find_map(|a| a.labels.get(keys::BASE_NAME).cloned())
    });
    let fedora = recorded.as_deref().and_then(|name| {
        let reference = ImageRef::parse(name).ok()?;
        (reference.repository.to_string() == FEDORA_COREOS_REPOSITORY).then_some(reference.tag)?
    });
    match fedora {
        Some(stream) => Ok(BaseSource::Fcos {
            stream,
            base_url: None,
        }),
        None => Err(FollowError::NoBaseSource {
            recorded: recorded.unwrap_or_else(|| "not recorded".into()),
        }),
    }
}

fn save(path: &Path, cache: &ScanCache) {
    let written = serde_json::to_vec(cache)
        .map_err(std::io::Error::other)
        .and_then(|bytes| cairn_fs::write_atomic(path, &bytes).map_err(std::io::Error::other));
    if let Err(e) = written {
        // The cache only saves requests; losing it costs a full read next time.
        tracing::warn!(path = %path.display(), error = %e, "could not save the tag scan cache");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tag_document_of(followed: &str) -> FollowError {
        let root = tempfile::tempdir().expect("temp dir");
        let settings = crate::config::load(&crate::config::ConfigDirs::under(root.path()))
            .expect("the defaults");
        let mirrors = cairn_oci::registries_conf::RegistriesConf::default();
        let follow = Follow {
            followed,
            stream: "stable",
            booted: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            arch: "x86_64",
            now: Timestamp::UNIX_EPOCH,
            state_dir: root.path(),
            mirrors: &mirrors,
        };
        // Nothing listens on port 1: refused at once, and not retried.
        let client = RegistryClient::new(cairn_oci::ClientOptions {
            insecure_registries: vec!["127.0.0.1:1".into()],
            retries: 0,
            ..Default::default()
        })
        .expect("client");
        match tag_document(&settings, &follow, &client).await {
            Ok((_, described)) => panic!("{followed}: a document from {described}"),
            Err(error) => error,
        }
    }

    #[tokio::test]
    async fn a_tag_that_cannot_be_followed_says_why_and_names_the_reference() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("quay.io/Not A Reference", "reference"),
            (&*format!("quay.io/example/os@{digest}"), "no_tag"),
            ("127.0.0.1:1/example/os:stable", "transport"),
        ];
        for (followed, kind) in cases {
            let error = tag_document_of(followed).await;
            assert_eq!(error.kind(), kind, "{followed}: {error}");
            let unavailable = GraphUnavailable::from(error);
            assert_eq!(unavailable.kind(), kind);
            assert!(
                unavailable.to_string().contains(followed),
                "{followed} missing from {unavailable}"
            );
        }
    }

    #[test]
    fn an_unknown_base_asks_for_the_config_key() {
        let root = tempfile::tempdir().expect("temp dir");
        let settings = crate::config::load(&crate::config::ConfigDirs::under(root.path()))
            .expect("the defaults");
        let mirrors = cairn_oci::registries_conf::RegistriesConf::default();
        let follow = Follow {
            followed: "quay.io/example/os:stable",
            stream: "stable",
            booted: "sha256:1",
            arch: "x86_64",
            now: Timestamp::UNIX_EPOCH,
            state_dir: root.path(),
            mirrors: &mirrors,
        };
        let error = base_source(&settings, &ScanCache::default(), &follow).expect_err("unknown");
        assert_eq!(error.kind(), "no_base_source");
        let message = error.to_string();
        assert!(
            message.contains("(not recorded)") && message.contains("set updates.base_source"),
            "{message}"
        );
    }
}
