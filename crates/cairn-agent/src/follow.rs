//! Following a tag in a repository that publishes no document: the common
//! case for derived images. The host builds a small document for itself
//! from the booted image, the tag's image and the base graph, so the same
//! planning (base barriers, inherited dead-ends, metadata-only changes)
//! applies as for a published document. When the tag's image lies past a
//! base barrier the booted base has not passed, the repository's other tags
//! are searched for an image built on the way.

use crate::config::Settings;
use cairn_graph::GraphDocument;
use cairn_graph::assemble::Candidate;
use cairn_graph::derive::{BaseGraph, tag_following_document};
use cairn_graph::select::Hold;
use cairn_oci::scan::{ScanCache, ScanOptions, keys};
use cairn_oci::sources::{BaseRead, BaseSource, FEDORA_COREOS_REPOSITORY};
use cairn_oci::{ImageRef, RegistryClient, Repository, Store};
use jiff::Timestamp;
use std::path::Path;

/// The scan cache of tag-following mode, in the state directory: digests
/// already read are never read again.
pub const CACHE_FILE: &str = "tag-scan.json";

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
    pub mirrors: &'a crate::mirrors::Mirrors,
}

/// The document a tag-following host plans on, and how to name its source.
pub async fn tag_document(
    settings: &Settings,
    follow: &Follow<'_>,
    client: &RegistryClient,
) -> Result<(GraphDocument, String), String> {
    let reference =
        ImageRef::parse(follow.followed).map_err(|e| format!("{}: {e}", follow.followed))?;
    let tag = reference
        .tag
        .clone()
        .ok_or_else(|| format!("{} names no tag to follow", follow.followed))?;
    let repository = reference.repository.to_string();
    // The host's registries.conf mirrors first, as its own pulls go; the
    // document keeps the canonical name, so staging goes through them too.
    let mut places = follow.mirrors.for_tag(&repository);
    if places.is_empty() {
        places.push(repository.clone());
    }
    let mut failures = Vec::new();
    let mut found = None;
    for place in &places {
        let store = Store::registry(
            client.clone(),
            Repository::parse(place).map_err(|e| format!("{place}: {e}"))?,
        );
        match store.resolve(&tag).await {
            Ok(Some(head)) => {
                found = Some((store, head));
                break;
            }
            Ok(None) => failures.push(format!("{place}:{tag}: the tag does not exist")),
            Err(e) => failures.push(format!("{place}:{tag}: {e}")),
        }
    }
    let Some((store, head)) = found else {
        return Err(failures.join("; "));
    };
    let cache_path = follow.state_dir.join(CACHE_FILE);
    let mut cache: ScanCache = std::fs::read(&cache_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let options = ScanOptions {
        mutable_tags: vec![tag.clone()],
        ..ScanOptions::for_stream(follow.stream)
    };
    let mut notes = Vec::new();
    let booted = read(&store, &options, follow.booted, &[], &mut cache, &mut notes)
        .await
        .map_err(|e| format!("the booted image {repository}@{}: {e}", follow.booted))?;
    let target = read(
        &store,
        &options,
        &head.digest,
        std::slice::from_ref(&tag),
        &mut cache,
        &mut notes,
    )
    .await
    .map_err(|e| format!("{}: {e}", follow.followed))?;

    let source = base_source(settings, &cache, follow)?;
    let base_keys = cairn_oci::signing::VerifyingKey::from_files(&settings.base_keys)
        .map_err(|e| e.to_string())?;
    let base = cairn_oci::sources::read_base_graph(
        client,
        &source,
        &BaseRead {
            keys: &base_keys,
            allow_unsigned: settings.allow_unsigned,
            now: follow.now,
            arch: follow.arch,
        },
    )
    .await
    .map_err(|e| format!("base graph: {e}"))?;

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
            .map_err(|e| {
                format!(
                    "searching {repository} for an image on base {}: {e}",
                    barrier.version
                )
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

async fn read(
    store: &Store,
    options: &ScanOptions,
    digest: &str,
    tags: &[String],
    cache: &mut ScanCache,
    notes: &mut Vec<String>,
) -> Result<Candidate, String> {
    cairn_oci::scan::read_candidate(store, options, digest, tags, cache, notes)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|reason| reason.to_string())
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
) -> Result<BaseSource, String> {
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
        None => Err(format!(
            "the booted image's base ({}) has no known graph: set updates.base_source",
            recorded.as_deref().unwrap_or("not recorded")
        )),
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
