//! Finding a derived image's base release: by the digest the image records,
//! which may name the base's index (expanded here into its per-architecture
//! manifests), or, for images that record nothing, by their lower layers.

use crate::client::{DOCKER_LIST, OCI_INDEX};
use crate::error::Result;
use crate::manifest;
use crate::scan::ScanCache;
use crate::store::Store;
use cairn_graph::assemble::Candidate;
use cairn_graph::derive::BaseGraph;
use oci_spec::image::{ImageIndex, ImageManifest};
use std::collections::BTreeMap;

/// The store of another repository next to `store`: the same registry client
/// for a registry, the same layout for a layout (it has no other repositories).
pub fn sibling_store(store: &Store, repository: &str) -> Option<Store> {
    match store {
        Store::Registry { client, .. } => crate::reference::Repository::parse(repository)
            .ok()
            .map(|repository| Store::registry(client.clone(), repository)),
        Store::Layout(layout) => Some(Store::Layout(layout.clone())),
        #[cfg(feature = "image-proxy")]
        Store::Proxy { reader, view, .. } => crate::reference::Repository::parse(repository)
            .ok()
            .map(|repository| Store::Proxy {
                reader: reader.clone(),
                repository,
                view: *view,
            }),
    }
}

/// For each base digest the candidates record that the base graph does not
/// know as a manifest, the per-architecture manifest digests it stands for
/// (an index's children), read from the base repository. Digests that cannot
/// be read are left out with a warning; their releases stay unresolved.
pub async fn expand_base_digests(
    store: &Store,
    candidates: &[Candidate],
    base: &BaseGraph,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut expanded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut read = std::collections::BTreeSet::new();
    for candidate in candidates {
        let Some(image) = &candidate.base else {
            continue;
        };
        // A one-architecture base graph may know another architecture's base manifest.
        if !candidate.base_aliases.is_empty() {
            let names = expanded.entry(image.digest.clone()).or_default();
            for alias in &candidate.base_aliases {
                if !names.contains(alias) {
                    names.push(alias.clone());
                }
            }
        }
        if base.find([image.digest.as_str()]).is_some()
            || expanded
                .get(&image.digest)
                .is_some_and(|names| base.find(names.iter().map(String::as_str)).is_some())
        {
            continue;
        }
        if !read.insert(image.digest.clone()) {
            continue;
        }
        let repository = if image.repository.is_empty() {
            base.repository.as_str()
        } else {
            image.repository.as_str()
        };
        let Some(base_store) = sibling_store(store, repository) else {
            warnings.push(format!(
                "release {}: base repository {repository:?} is not a repository name",
                candidate.version
            ));
            continue;
        };
        match index_children(&base_store, &image.digest).await {
            Ok(children) => {
                expanded
                    .entry(image.digest.clone())
                    .or_default()
                    .extend(children);
            }
            Err(e) => warnings.push(format!(
                "release {}: base {repository}@{} could not be read: {e}",
                candidate.version, image.digest
            )),
        }
    }
    expanded
}

/// The manifests an index lists; empty for a plain manifest. Read through
/// skopeo an index is only the host platform's manifest, which skopeo hands
/// back in its place.
async fn index_children(store: &Store, digest: &str) -> Result<Vec<String>> {
    let fetched = store.get_manifest(digest).await?;
    if fetched.digest != digest {
        return Ok(vec![fetched.digest]);
    }
    let media_type = media_type(&fetched.media_type, &fetched.bytes);
    if media_type != OCI_INDEX && media_type != DOCKER_LIST {
        return Ok(Vec::new());
    }
    let index: ImageIndex = manifest::parse(&fetched.bytes, &format!("image index {digest}"))?;
    Ok(index
        .manifests()
        .iter()
        .map(|m| m.digest().to_string())
        .collect())
}

fn media_type(header: &str, bytes: &[u8]) -> String {
    if !header.is_empty() {
        return header.to_string();
    }
    manifest::declared_media_type(bytes)
}

/// The layer digests of a manifest, read once per digest (digests are immutable).
async fn layers_of(store: &Store, digest: &str, cache: &mut ScanCache) -> Result<Vec<String>> {
    if let Some(known) = cache.layers.get(digest) {
        return Ok(known.clone());
    }
    let fetched = store.get_manifest(digest).await?;
    let parsed: ImageManifest = manifest::parse(&fetched.bytes, &format!("manifest {digest}"))?;
    let layers: Vec<String> = parsed
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect();
    cache.layers.insert(digest.to_string(), layers.clone());
    Ok(layers)
}

/// For candidates that record no base: find the base release whose image's
/// layers are the longest proper prefix of the candidate's, reading every
/// base release's manifests from `base_repository` (once per digest, then
/// from the cache). Returns how many candidates were matched.
///
/// Costs one manifest read per base release and architecture on the first
/// run. It finds nothing for images whose base layers were rewritten:
/// squashed or rechunked builds, or layers recompressed on push.
pub async fn match_base_layers(
    store: &Store,
    base_repository: &str,
    candidates: &mut [Candidate],
    base: &BaseGraph,
    cache: &mut ScanCache,
    warnings: &mut Vec<String>,
) -> Result<usize> {
    if candidates.iter().all(|c| c.base.is_some()) {
        return Ok(0);
    }
    let Some(base_store) = sibling_store(store, base_repository) else {
        warnings.push(format!(
            "--base-layers-from {base_repository:?} is not a repository name"
        ));
        return Ok(0);
    };
    let mut base_layers: Vec<(String, Vec<String>)> = Vec::new();
    for release in &base.releases {
        for digest in &release.digests {
            match layers_of(&base_store, digest, cache).await {
                Ok(layers) if !layers.is_empty() => base_layers.push((digest.clone(), layers)),
                Ok(_) => {}
                // An alias or another architecture's digest may be gone.
                Err(crate::OciError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut matched = 0;
    for candidate in candidates.iter_mut().filter(|c| c.base.is_none()) {
        let Some(manifest) = candidate
            .architectures
            .values()
            .find_map(|entry| entry.digest.clone())
        else {
            continue;
        };
        let layers = layers_of(store, &manifest, cache).await?;
        let best = base_layers
            .iter()
            .filter(|(_, lower)| lower.len() < layers.len() && layers.starts_with(lower))
            .max_by_key(|(_, lower)| lower.len());
        match best {
            Some((digest, _)) => {
                candidate.base = Some(cairn_graph::BaseImage::new(base_repository, digest));
                matched += 1;
            }
            None => warnings.push(format!(
                "release {}: no base release's layers are a prefix of its layers",
                candidate.version
            )),
        }
    }
    Ok(matched)
}
