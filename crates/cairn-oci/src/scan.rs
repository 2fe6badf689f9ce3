//! Scanning a repository for releases: tags, manifests, configs and labels.
//!
//! Cost matters because release teams re-scan often. A cold scan lists the
//! tags, HEADs each, and fetches each manifest and config once, by digest,
//! concurrently. A warm scan, with the cache of digests already read, costs
//! the tag list plus a HEAD for each new or mutable tag: version tags are
//! taken as immutable unless `recheck` is set.

use crate::client::{DOCKER_LIST, OCI_INDEX};
use crate::error::{OciError, Result};
use crate::reference::ImageRef;
use crate::store::Store;
use cairn_graph::assemble::Candidate;
use cairn_graph::document::{ArchEntry, BaseImage};
use futures::stream::{self, StreamExt, TryStreamExt};
use jiff::Timestamp;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest config blob read.
const MAX_CONFIG_BYTES: usize = crate::http::limits::IMAGE_CONFIG;

/// Label or annotation keys Cairn reads.
pub mod keys {
    /// bootc's bootable marker.
    pub const BOOTC: &str = "containers.bootc";
    /// ostree's bootable marker.
    pub const OSTREE_BOOTABLE: &str = "ostree.bootable";
    /// The version people see.
    pub const VERSION: &str = "org.opencontainers.image.version";
    /// Build time.
    pub const CREATED: &str = "org.opencontainers.image.created";
    /// Fedora CoreOS stream label.
    pub const STREAM: &str = "com.coreos.stream";
    /// Older Fedora CoreOS stream label.
    pub const LEGACY_STREAM: &str = "fedora-coreos.stream";
    /// Base image digest (buildah and podman set it).
    pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
    /// Base image name.
    pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
}

/// What a scan should look at.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Only images of this stream (by label; images without one are included).
    pub stream: String,
    /// Only tags matching this glob (`*`, `?`, `[...]`, `[!...]`).
    pub tag_pattern: Option<String>,
    /// Tags that move, so are re-checked every scan.
    pub mutable_tags: Vec<String>,
    /// Re-check every tag, ignoring the cache.
    pub recheck: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Where base images live when an image records only its base's digest
    /// (the base graph's repository).
    pub base_repository: Option<String>,
}

impl ScanOptions {
    /// Defaults for a stream: `stable`, `testing`, `next` and `latest` are mutable.
    pub fn for_stream(stream: &str) -> Self {
        ScanOptions {
            stream: stream.to_string(),
            tag_pattern: None,
            mutable_tags: ["stable", "testing", "next", "latest"]
                .map(String::from)
                .to_vec(),
            recheck: false,
            concurrency: 16,
            base_repository: None,
        }
    }
}

/// What a scan remembers between runs. Everything is keyed by digest (immutable)
/// except `tags`, which is only trusted for tags that are not mutable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScanCache {
    /// The store this cache describes; a cache of another store is discarded.
    #[serde(default)]
    pub store: String,
    /// The digest each tag pointed at.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// What each digest (index or manifest) holds, per architecture.
    #[serde(default)]
    pub images: BTreeMap<String, BTreeMap<String, ArchImage>>,
    /// Version labels of base images, by digest (`None`: it has none).
    #[serde(default)]
    pub bases: BTreeMap<String, Option<String>>,
    /// Layer digests of manifests, by manifest digest (matching bases by layers).
    #[serde(default)]
    pub layers: BTreeMap<String, Vec<String>>,
    /// The base graph between assemblies; kept in memory only.
    #[serde(skip)]
    pub base: crate::publish::BaseMemory,
}

/// One architecture of an image.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ArchImage {
    /// Manifest digest.
    pub manifest: String,
    /// Config digest.
    pub config: String,
    /// Config labels merged with manifest (and index) annotations; annotations win.
    pub labels: BTreeMap<String, String>,
    /// The config's `created`.
    #[serde(default)]
    pub created: Option<String>,
}

/// Why a tag's image is not a release. [`NotRelease::kind`] is a fixed label;
/// the message is for people.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NotRelease {
    /// The tag was listed but gone when resolved.
    #[error("the tag vanished during the scan")]
    Vanished,
    /// The image could not be read: broken, missing, or refused by the registry.
    #[error(transparent)]
    Unreadable(std::sync::Arc<OciError>),
    /// An index with no Linux image.
    #[error("no image for any architecture")]
    NoImage,
    /// Neither bootable label.
    #[error("not bootable (no containers.bootc=1 or ostree.bootable label)")]
    NotBootable,
    /// Labelled with another stream.
    #[error("belongs to stream {0}")]
    OtherStream(String),
}

impl NotRelease {
    /// A short, fixed label: `vanished`, `unreadable`, `no_image`,
    /// `not_bootable` or `other_stream`.
    pub fn kind(&self) -> &'static str {
        match self {
            NotRelease::Vanished => "vanished",
            NotRelease::Unreadable(_) => "unreadable",
            NotRelease::NoImage => "no_image",
            NotRelease::NotBootable => "not_bootable",
            NotRelease::OtherStream(_) => "other_stream",
        }
    }
}

/// The outcome of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    /// Releases found.
    pub candidates: Vec<Candidate>,
    /// Tags passed over, with the reason.
    pub skipped: Vec<(String, NotRelease)>,
    /// Notes for the operator.
    pub warnings: Vec<String>,
    /// Every tag of the repository, release or not.
    pub all_tags: Vec<String>,
    /// Every per-architecture manifest digest still reachable through a tag
    /// (keep tags included), so that assembly can tell what has gone.
    pub present: std::collections::BTreeSet<String>,
}

/// True for tags that can name a release: not signature, attestation, SBOM or
/// referrer-fallback tags, and not Cairn's own tags.
pub fn is_release_tag(tag: &str) -> bool {
    !(tag.starts_with("sha256-")
        || tag.ends_with(".sig")
        || tag.ends_with(".att")
        || tag.ends_with(".sbom")
        || tag.starts_with("cairn-"))
}

/// Fedora's architecture names from OCI's.
pub fn basearch(oci_arch: &str) -> String {
    match oci_arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i686",
        other => other,
    }
    .to_string()
}

/// A tag pattern: a shell glob (`*`, `?`, `[...]`, `[!...]`). A plain
/// matcher rather than a regex engine keeps the agent, which scans base
/// repositories too, small.
fn tag_pattern(glob: &str) -> Result<glob::Pattern> {
    glob::Pattern::new(glob).map_err(|e| OciError::invalid(format!("tag pattern {glob:?}"), e))
}

/// Scan a repository. `progress(done, total)` is called as tags are resolved
/// and images read.
pub async fn scan(
    store: &Store,
    options: &ScanOptions,
    cache: &mut ScanCache,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ScanReport> {
    let pattern = options
        .tag_pattern
        .as_deref()
        .map(tag_pattern)
        .transpose()?;
    let mut report = ScanReport {
        all_tags: store.list_tags().await?,
        ..ScanReport::default()
    };
    // Wave tags that `cairn promote` moves point at releases already tagged
    // by the build: read as tags of their own they would be trusted forever
    // by the cache, or become a release's version. The promote state names
    // them (two requests, only when it exists).
    let waves = crate::promote::wave_tags(store, &report.all_tags).await?;
    let tags: Vec<String> = report
        .all_tags
        .iter()
        .filter(|tag| is_release_tag(tag) && !waves.contains(tag))
        .filter(|tag| {
            pattern.as_ref().is_none_or(|p| p.matches(tag)) || options.mutable_tags.contains(tag)
        })
        .cloned()
        .collect();
    let total = tags.len() as u64 * 2;
    let done = std::sync::atomic::AtomicU64::new(0);
    let tick = || {
        progress(
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            total,
        )
    };

    // 1. Which digest each tag points at.
    let cached_tags = &cache.tags;
    type Resolved = (String, std::result::Result<Option<String>, NotRelease>);
    let resolved: Vec<Resolved> = stream::iter(tags)
        .map(|tag| async {
            let trusted = !options.recheck && !options.mutable_tags.contains(&tag);
            let digest = match cached_tags.get(&tag).filter(|_| trusted) {
                Some(digest) => Ok(Some(digest.clone())),
                None => match store.resolve(&tag).await {
                    Ok(head) => Ok(head.map(|head| head.digest)),
                    // Through skopeo a tag is resolved to this host's image:
                    // an index without this host's platform, or a manifest
                    // skopeo cannot take, is one unusable tag, not a failed
                    // scan. Anywhere else (the publisher's scans) it fails
                    // the scan, since a skipped tag would read as a release
                    // gone from the registry; so does an unreachable one.
                    Err(e @ (OciError::Invalid { .. } | OciError::DigestMismatch { .. }))
                        if store.reads_as_host_pulls() =>
                    {
                        Err(NotRelease::Unreadable(std::sync::Arc::new(e)))
                    }
                    Err(e) => return Err(e),
                },
            };
            tick();
            Ok::<_, OciError>((tag, digest))
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
    cache.tags.clear();
    for (tag, digest) in resolved {
        match digest {
            Ok(Some(digest)) => {
                cache.tags.insert(tag.clone(), digest.clone());
                by_digest.entry(digest).or_default().push(tag);
            }
            Ok(None) => report.skipped.push((tag, NotRelease::Vanished)),
            Err(unusable) => report.skipped.push((tag, unusable)),
        }
    }

    // Images held only by a keep tag are still in the registry; the tag names
    // the digest, so it costs no request.
    let kept: Vec<String> = report
        .all_tags
        .iter()
        .filter_map(|tag| tag.strip_prefix("cairn-keep-"))
        .map(|hex| format!("sha256:{hex}"))
        .filter(|digest| cairn_graph::digest::is_sha256_digest(digest))
        .collect();

    // 2. Read each image not read before: manifest (or index) and configs.
    let mut unknown: Vec<String> = by_digest
        .keys()
        .chain(&kept)
        .filter(|d| !cache.images.contains_key(*d))
        .cloned()
        .collect();
    unknown.sort();
    unknown.dedup();
    type ReadResult = (
        String,
        std::result::Result<BTreeMap<String, ArchImage>, NotRelease>,
    );
    let read: Vec<ReadResult> = stream::iter(unknown)
        .map(|digest| async {
            let result = read_image(store, &digest).await;
            tick();
            match result {
                Ok(image) => Ok((digest, Ok(image))),
                // A broken image is skipped; an unreachable registry fails the scan.
                Err(
                    e @ (OciError::Invalid { .. }
                    | OciError::NotFound(_)
                    | OciError::DigestMismatch { .. }
                    | OciError::Status { .. }),
                ) => Ok((digest, Err(NotRelease::Unreadable(std::sync::Arc::new(e))))),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    let mut broken = BTreeMap::new();
    for (digest, result) in read {
        match result {
            Ok(image) => {
                cache.images.insert(digest, image);
            }
            Err(reason) => {
                broken.insert(digest, reason);
            }
        }
    }

    report.present = by_digest
        .keys()
        .chain(&kept)
        .filter_map(|digest| cache.images.get(digest))
        .flat_map(|image| image.values().map(|arch| arch.manifest.clone()))
        .collect();

    // 3. Releases.
    let mut failed_bases = std::collections::BTreeSet::new();
    for (digest, mut tags) in by_digest {
        tags.sort();
        if let Some(reason) = broken.get(&digest) {
            for tag in tags {
                report.skipped.push((tag, reason.clone()));
            }
            continue;
        }
        let Some(image) = cache.images.get(&digest).cloned() else {
            continue;
        };
        match candidate(
            store,
            options,
            pattern.as_ref(),
            &digest,
            &tags,
            &image,
            cache,
            &mut failed_bases,
            &mut report.warnings,
        )
        .await?
        {
            Ok(candidate) => report.candidates.push(candidate),
            Err(reason) => {
                for tag in tags {
                    report.skipped.push((tag, reason.clone()));
                }
            }
        }
    }
    Ok(report)
}

/// Most architectures one image index may name.
const MAX_ARCHITECTURES: usize = 16;

/// What Cairn reads of an image index: the one rule the scan and the
/// promoter share, so that they agree on which child is which release's
/// image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IndexPlatforms {
    /// Base architecture to child manifest digest: Linux children only, the
    /// first variant of an architecture wins, attestations (`unknown`) left out.
    pub by_arch: BTreeMap<String, String>,
    /// Every child's digest in index order, attestations included.
    pub children: Vec<String>,
    /// Every Linux child (base architecture, digest), every variant, in
    /// index order, attestations left out: a client may pick any of them.
    pub linux: Vec<(String, String)>,
    /// The index's own annotations.
    pub annotations: std::collections::HashMap<String, String>,
}

/// Parse an image index (`what` names it in errors) into its platforms.
pub(crate) fn index_platforms(bytes: &[u8], what: &str) -> Result<IndexPlatforms> {
    let index: ImageIndex = crate::manifest::parse(bytes, what)?;
    let mut platforms = IndexPlatforms {
        annotations: index.annotations().clone().unwrap_or_default(),
        ..IndexPlatforms::default()
    };
    for child in index.manifests() {
        platforms.children.push(child.digest().to_string());
        let Some(platform) = child.platform() else {
            continue;
        };
        let arch = platform.architecture().to_string();
        // Attestation manifests hide under "unknown".
        if platform.os().to_string() != "linux" || arch == "unknown" {
            continue;
        }
        platforms
            .linux
            .push((basearch(&arch), child.digest().to_string()));
        // The first variant of an architecture is the one read.
        if platforms.by_arch.contains_key(&basearch(&arch)) {
            continue;
        }
        // Each architecture costs a request: an index from an untrusted
        // registry may name thousands.
        if platforms.by_arch.len() >= MAX_ARCHITECTURES {
            return Err(OciError::invalid(
                what.to_string(),
                format!("names more than {MAX_ARCHITECTURES} architectures"),
            ));
        }
        platforms
            .by_arch
            .insert(basearch(&arch), child.digest().to_string());
    }
    Ok(platforms)
}

/// Read one image by digest: an index with its children, or a manifest.
async fn read_image(store: &Store, digest: &str) -> Result<BTreeMap<String, ArchImage>> {
    let fetched = store.get_manifest(digest).await?;
    let media_type = if fetched.media_type.is_empty() {
        crate::manifest::declared_media_type(&fetched.bytes)
    } else {
        fetched.media_type.clone()
    };
    let mut images = BTreeMap::new();
    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        let index = index_platforms(&fetched.bytes, &format!("image index {digest}"))?;
        for (arch, child_digest) in &index.by_arch {
            let mut image = read_manifest(store, child_digest).await?;
            for (key, value) in &index.annotations {
                image
                    .labels
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
            images.insert(arch.clone(), image);
        }
    } else {
        // Through skopeo an index's digest gives the host platform's
        // manifest, under its own digest.
        let image = read_manifest_bytes(store, &fetched.digest, &fetched.bytes).await?;
        let arch = image.1;
        images.insert(basearch(&arch), image.0);
    }
    Ok(images)
}

async fn read_manifest(store: &Store, digest: &str) -> Result<ArchImage> {
    let fetched = store.get_manifest(digest).await?;
    Ok(read_manifest_bytes(store, digest, &fetched.bytes).await?.0)
}

/// A manifest's config labels plus its annotations, and its architecture.
async fn read_manifest_bytes(
    store: &Store,
    digest: &str,
    bytes: &[u8],
) -> Result<(ArchImage, String)> {
    let manifest: ImageManifest = crate::manifest::parse(bytes, &format!("manifest {digest}"))?;
    let config_digest = manifest.config().digest().to_string();
    let config_bytes = store
        .get_blob_sized(&config_digest, manifest.config().size(), MAX_CONFIG_BYTES)
        .await?;
    let config: ImageConfiguration = crate::manifest::parse(
        &config_bytes,
        &format!("config {config_digest} of {digest}"),
    )?;
    let mut labels: BTreeMap<String, String> = config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (key, value) in manifest.annotations().clone().unwrap_or_default() {
        labels.insert(key, value);
    }
    Ok((
        ArchImage {
            manifest: digest.to_string(),
            config: config_digest,
            labels,
            created: config.created().clone(),
        },
        config.architecture().to_string(),
    ))
}

fn is_bootable(labels: &BTreeMap<String, String>) -> bool {
    labels.get(keys::BOOTC).is_some_and(|v| v == "1")
        || labels
            .get(keys::OSTREE_BOOTABLE)
            .is_some_and(|v| v == "1" || v == "true")
}

/// The candidate for one image, or why it is not a release.
#[allow(clippy::too_many_arguments)]
async fn candidate(
    store: &Store,
    options: &ScanOptions,
    pattern: Option<&glob::Pattern>,
    digest: &str,
    tags: &[String],
    image: &BTreeMap<String, ArchImage>,
    cache: &mut ScanCache,
    failed_bases: &mut std::collections::BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> Result<std::result::Result<Candidate, NotRelease>> {
    let Some(first) = image.values().next() else {
        return Ok(Err(NotRelease::NoImage));
    };
    if !image.values().any(|arch| is_bootable(&arch.labels)) {
        return Ok(Err(NotRelease::NotBootable));
    }
    let labels = &first.labels;
    if let Some(stream) = labels
        .get(keys::STREAM)
        .or_else(|| labels.get(keys::LEGACY_STREAM))
        && stream != &options.stream
    {
        return Ok(Err(NotRelease::OtherStream(stream.clone())));
    }
    let created_text = labels
        .get(keys::CREATED)
        .cloned()
        .or_else(|| first.created.clone());
    let created = created_text
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    // The digest is authoritative; the name (often a tag) only says where.
    let base = match (labels.get(keys::BASE_NAME), labels.get(keys::BASE_DIGEST)) {
        (name, Some(base_digest)) if cairn_graph::digest::is_sha256_digest(base_digest) => {
            let repository = name
                .map(|name| {
                    ImageRef::parse(name)
                        .map(|r| r.repository.to_string())
                        .unwrap_or_else(|_| name.clone())
                })
                .unwrap_or_default();
            let repository = match (repository.is_empty(), &options.base_repository) {
                (true, Some(fallback)) => fallback.clone(),
                _ => repository,
            };
            Some(BaseImage::new(repository, base_digest.clone()))
        }
        (_, Some(bad)) => {
            warnings.push(format!(
                "{digest}: {} {bad:?} is not a sha256 digest; the base is ignored",
                keys::BASE_DIGEST
            ));
            None
        }
        _ => None,
    };
    // Other architectures record their own base manifests: the same base release.
    let base_aliases: Vec<String> = image
        .values()
        .filter_map(|arch| arch.labels.get(keys::BASE_DIGEST))
        .filter(|d| cairn_graph::digest::is_sha256_digest(d))
        .filter(|d| base.as_ref().is_some_and(|b| &b.digest != *d))
        .cloned()
        .collect();
    let label_version = labels.get(keys::VERSION).cloned();
    let inherited = match (&base, &label_version) {
        (Some(base), Some(version)) => {
            base_version(store, base, cache, failed_bases, warnings)
                .await
                .as_deref()
                == Some(version.as_str())
        }
        _ => false,
    };
    let version = match label_version.filter(|_| !inherited) {
        Some(version) => version,
        None => tags
            .iter()
            .find(|t| !options.mutable_tags.contains(t) && pattern.is_none_or(|p| p.matches(t)))
            .cloned()
            .unwrap_or_else(|| {
                let when = created_text.clone().unwrap_or_else(|| "unknown".into());
                format!("{when}-{}", cairn_graph::digest::short(digest))
            }),
    };
    let architectures = image
        .iter()
        .map(|(arch, image)| {
            (
                arch.clone(),
                ArchEntry {
                    config: Some(image.config.clone()),
                    ..ArchEntry::image(image.manifest.clone())
                },
            )
        })
        .collect();
    Ok(Ok(Candidate {
        version,
        created,
        tags: tags.to_vec(),
        source_digest: digest.to_string(),
        architectures,
        base,
        base_aliases,
    }))
}

/// Read one image by digest (a manifest or an index) as a candidate, as a
/// scan would: `tags` are the tags known to point at it. `Ok(Err(reason))`
/// when it is not a release.
pub async fn read_candidate(
    store: &Store,
    options: &ScanOptions,
    digest: &str,
    tags: &[String],
    cache: &mut ScanCache,
    warnings: &mut Vec<String>,
) -> Result<std::result::Result<Candidate, NotRelease>> {
    let image = match cache.images.get(digest) {
        Some(image) => image.clone(),
        None => {
            let image = read_image(store, digest).await?;
            cache.images.insert(digest.to_string(), image.clone());
            image
        }
    };
    let mut failed_bases = std::collections::BTreeSet::new();
    candidate(
        store,
        options,
        None,
        digest,
        tags,
        &image,
        cache,
        &mut failed_bases,
        warnings,
    )
    .await
}

/// The version label of a base image, read once per digest. The base usually
/// lives in another repository of another registry; a failure to read it is a
/// warning, not an error.
async fn base_version(
    store: &Store,
    base: &BaseImage,
    cache: &mut ScanCache,
    failed_bases: &mut std::collections::BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    if let Some(known) = cache.bases.get(&base.digest) {
        return known.clone();
    }
    // One failed read per base per scan: not again for every derived image.
    if failed_bases.contains(&base.digest) {
        return None;
    }
    let base_store = crate::derived::sibling_store(store, &base.repository)?;
    match read_image(&base_store, &base.digest).await {
        Ok(image) => {
            let version = image
                .values()
                .find_map(|a| a.labels.get(keys::VERSION).cloned());
            cache.bases.insert(base.digest.clone(), version.clone());
            version
        }
        Err(e) => {
            failed_bases.insert(base.digest.clone());
            warnings.push(format!(
                "base image {}@{} could not be read: {e}",
                base.repository, base.digest
            ));
            None
        }
    }
}

/// The tag that keeps a digest alive through registry garbage collection.
pub fn keep_tag(digest: &str) -> String {
    format!("cairn-keep-{}", digest.trim_start_matches("sha256:"))
}

/// Tag each digest that has no keep tag yet, so that garbage collection cannot
/// remove a barrier or a target. Returns how many tags were added.
pub async fn keep(store: &Store, digests: &[String], existing_tags: &[String]) -> Result<usize> {
    let mut added = 0;
    for digest in digests {
        let tag = keep_tag(digest);
        if existing_tags.contains(&tag) {
            continue;
        }
        let manifest = store.get_manifest(digest).await?;
        store
            .put_manifest(manifest.bytes, &manifest.media_type, Some(&tag))
            .await?;
        added += 1;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_and_referrer_tags_are_not_releases() {
        for tag in [
            "sha256-abc",
            "sha256-abc.sig",
            "v1.att",
            "v1.sbom",
            "x.sig",
            "cairn-graph-stable",
            "cairn-keep-abc",
        ] {
            assert!(!is_release_tag(tag), "{tag}");
        }
        for tag in ["stable", "44.20260707.3.1", "latest", "v1.signed"] {
            assert!(is_release_tag(tag), "{tag}");
        }
    }

    #[test]
    fn tag_patterns_are_shell_globs() {
        let year = tag_pattern("2026.*").expect("valid");
        assert!(year.matches("2026.03.1"));
        assert!(!year.matches("2025.12.1"));
        assert!(!year.matches("x2026.03"));
        let minor = tag_pattern("44.[0-3]?").expect("valid");
        assert!(minor.matches("44.2a"));
        assert!(!minor.matches("44.5a"));
        assert!(tag_pattern("v[!0]*").expect("valid").matches("v1.2"));
        let error = tag_pattern("44.[0-").expect_err("unclosed class");
        assert!(error.to_string().contains("\"44.[0-\""), "{error}");
    }

    #[test]
    fn architectures_use_fedora_names() {
        assert_eq!(basearch("amd64"), "x86_64");
        assert_eq!(basearch("arm64"), "aarch64");
        assert_eq!(basearch("s390x"), "s390x");
    }
}
