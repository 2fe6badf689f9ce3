//! Release images as the signed document names them: finding the image of a
//! release to point a wave at, and reading which release a wave points at.

use super::{PromoteStoreError, is_index};
use crate::client::FetchedManifest;
use crate::error::OciError;
use crate::scan::{IndexPlatforms, index_platforms};
use crate::store::Store;
use bytes::Bytes;
use cairn_graph::GraphDocument;
use cairn_graph::document::{ArchEntry, Release};
use cairn_graph::promote::Observed;
use std::collections::BTreeMap;

/// The tags publish keeps barrier and target indexes alive under.
const KEEP_PREFIX: &str = "cairn-keep-";

/// The image a wave tag is pointed at for one release, checked against the
/// signed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseImage {
    /// The release.
    pub version: String,
    /// The manifest or index digest the tag will hold.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its exact bytes.
    pub bytes: Bytes,
    /// For an index, every child's digest (attestations included); empty
    /// for a single manifest.
    pub children: Vec<String>,
    /// Where it was found: the version tag, a `cairn-keep-` tag, or the
    /// per-architecture digest.
    pub found_at: String,
}

/// Where `tag` points, in the document's terms, and the digest it holds
/// (`None` when absent). `cache` maps digests already read to what they are,
/// so that waves on one release cost one read.
pub async fn observe(
    store: &Store,
    tag: &str,
    document: &GraphDocument,
    cache: &mut BTreeMap<String, Observed>,
) -> Result<(Observed, Option<String>), OciError> {
    let Some(head) = store.resolve(tag).await? else {
        return Ok((Observed::Absent, None));
    };
    let digest = head.digest;
    if let Some(known) = cache.get(&digest) {
        return Ok((known.clone(), Some(digest)));
    }
    let observed = if let Some(release) = release_of_manifest(document, &digest) {
        Observed::Release {
            version: release.version.clone(),
        }
    } else if is_index(&head.media_type, &[]) || head.media_type.is_empty() {
        let fetched = store.get_manifest(&digest).await?;
        release_of_index(document, &fetched)
            .map(|release| Observed::Release {
                version: release.version.clone(),
            })
            .unwrap_or_else(|| Observed::Unknown {
                digest: digest.clone(),
            })
    } else {
        Observed::Unknown {
            digest: digest.clone(),
        }
    };
    cache.insert(digest.clone(), observed.clone());
    Ok((observed, Some(digest)))
}

/// The release one of whose per-architecture digests (or aliases) is
/// `digest`: a wave on a single-architecture image.
fn release_of_manifest<'d>(document: &'d GraphDocument, digest: &str) -> Option<&'d Release> {
    let by_digest = document.releases.iter().find(|release| {
        release
            .architectures
            .values()
            .any(|entry| entry.digest.as_deref() == Some(digest))
    });
    by_digest.or_else(|| {
        document.releases.iter().find(|release| {
            release
                .architectures
                .values()
                .any(|entry| entry.aliases.iter().any(|alias| alias == digest))
        })
    })
}

/// The release an index is the image of, if it is an index at all.
fn release_of_index<'d>(
    document: &'d GraphDocument,
    fetched: &FetchedManifest,
) -> Option<&'d Release> {
    if !is_index(&fetched.media_type, &fetched.bytes) {
        return None;
    }
    // Something that is not a readable index is no release's image.
    let platforms =
        index_platforms(&fetched.bytes, &format!("image index {}", fetched.digest)).ok()?;
    document
        .releases
        .iter()
        .find(|release| compare_index(release, &platforms).is_ok())
}

/// How an image differs from what the document says of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Difference {
    arch: String,
    image_digest: String,
    document_digest: String,
}

const NOTHING: &str = "nothing";

/// The release's architectures that name an image, with their digests.
fn image_arches(release: &Release) -> BTreeMap<&str, &ArchEntry> {
    release
        .architectures
        .iter()
        .filter(|(_, entry)| entry.digest.is_some())
        .map(|(arch, entry)| (arch.as_str(), entry))
        .collect()
}

fn names(entry: &ArchEntry, digest: &str) -> bool {
    entry.digest.as_deref() == Some(digest) || entry.aliases.iter().any(|alias| alias == digest)
}

/// An index is a release's image when its Linux children are exactly the
/// release's per-architecture images: none missing, none different, none
/// extra (attestations aside).
fn compare_index(release: &Release, platforms: &IndexPlatforms) -> Result<(), Difference> {
    let expected = image_arches(release);
    if expected.is_empty() {
        return Err(Difference {
            arch: "any".into(),
            image_digest: NOTHING.into(),
            document_digest: NOTHING.into(),
        });
    }
    for (arch, entry) in &expected {
        let found = platforms.by_arch.get(*arch);
        if !found.is_some_and(|digest| names(entry, digest)) {
            return Err(Difference {
                arch: (*arch).to_string(),
                image_digest: found.cloned().unwrap_or_else(|| NOTHING.into()),
                document_digest: entry.digest.clone().unwrap_or_default(),
            });
        }
    }
    // Every Linux child, each variant included: a client picks the variant
    // that fits it best, so an unsigned second variant would reach hosts.
    if let Some((arch, digest)) = platforms.linux.iter().find(|(arch, digest)| {
        !expected
            .get(arch.as_str())
            .is_some_and(|entry| names(entry, digest))
    }) {
        return Err(Difference {
            arch: arch.clone(),
            image_digest: digest.clone(),
            document_digest: expected
                .get(arch.as_str())
                .and_then(|entry| entry.digest.clone())
                .unwrap_or_else(|| NOTHING.into()),
        });
    }
    Ok(())
}

/// A single manifest is a release's image only for a release of one
/// architecture that names it.
fn compare_manifest(release: &Release, digest: &str) -> Result<(), Difference> {
    let expected = image_arches(release);
    let mut arches = expected.iter();
    match (arches.next(), arches.next()) {
        (Some((_, entry)), None) if names(entry, digest) => Ok(()),
        (Some((arch, entry)), None) => Err(Difference {
            arch: (*arch).to_string(),
            image_digest: digest.to_string(),
            document_digest: entry.digest.clone().unwrap_or_default(),
        }),
        (Some((arch, entry)), Some(_)) => {
            // A release of several architectures needs an index; name the
            // first one the manifest does not stand for.
            let (arch, entry) = expected
                .iter()
                .find(|(_, entry)| !names(entry, digest))
                .unwrap_or((arch, entry));
            Err(Difference {
                arch: (*arch).to_string(),
                image_digest: NOTHING.into(),
                document_digest: entry.digest.clone().unwrap_or_default(),
            })
        }
        (None, _) => Err(Difference {
            arch: "any".into(),
            image_digest: digest.to_string(),
            document_digest: NOTHING.into(),
        }),
    }
}

/// `fetched` as the image of `release`, or how it differs.
fn verify_against(
    release: &Release,
    fetched: FetchedManifest,
    found_at: &str,
) -> Result<ReleaseImage, Difference> {
    let children = if is_index(&fetched.media_type, &fetched.bytes) {
        let platforms = index_platforms(&fetched.bytes, &format!("image index {found_at}"))
            .map_err(|e| Difference {
                arch: "any".into(),
                image_digest: format!("an unreadable index ({e})"),
                document_digest: NOTHING.into(),
            })?;
        compare_index(release, &platforms)?;
        platforms.children
    } else {
        compare_manifest(release, &fetched.digest)?;
        Vec::new()
    };
    let media_type = if fetched.media_type.is_empty() {
        crate::manifest::declared_media_type(&fetched.bytes)
    } else {
        fetched.media_type
    };
    Ok(ReleaseImage {
        version: release.version.clone(),
        digest: fetched.digest,
        media_type,
        bytes: fetched.bytes,
        children,
        found_at: found_at.to_string(),
    })
}

/// A manifest by reference, or `None` when there is none.
async fn fetch_if_present(
    store: &Store,
    reference: &str,
) -> Result<Option<FetchedManifest>, OciError> {
    match store.get_manifest(reference).await {
        Ok(fetched) => Ok(Some(fetched)),
        Err(OciError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The image to point a wave at for release `version`: the index (or
/// manifest) under the version tag, else under a `cairn-keep-` tag, whose
/// per-architecture digests are exactly the document's; else, for a release
/// of one architecture, that manifest by digest. A version tag holding
/// other digests is refused ([`PromoteStoreError::Mismatch`]) when nothing
/// else matches; nothing at all is [`PromoteStoreError::NoImage`].
pub async fn release_image(
    store: &Store,
    document: &GraphDocument,
    version: &str,
) -> Result<ReleaseImage, PromoteStoreError> {
    let Some((_, release)) = document.release(version) else {
        return Err(PromoteStoreError::NoImage {
            version: version.to_string(),
            tried: vec![format!("no release {version} in the document")],
        });
    };
    let mut tried = Vec::new();
    let mut checked = Vec::new();
    // Only the version tag and the document's own digest speak for this
    // release; a keep tag that differs is simply another release's.
    let mut refused: Option<(String, Difference)> = None;

    if crate::reference::is_valid_tag(version) {
        match fetch_if_present(store, version).await? {
            Some(fetched) => {
                tried.push(version.to_string());
                checked.push(fetched.digest.clone());
                match verify_against(release, fetched, version) {
                    Ok(image) => return Ok(image),
                    Err(difference) => refused = Some((version.to_string(), difference)),
                }
            }
            None => tried.push(format!("{version} (absent)")),
        }
    }

    // Publish keeps barrier and target indexes alive under keep tags, which
    // name the digest but not the release: try each until one matches.
    let tags = store.list_tags().await?;
    for tag in tags.iter().filter(|tag| tag.starts_with(KEEP_PREFIX)) {
        let digest = format!("sha256:{}", &tag[KEEP_PREFIX.len()..]);
        if !cairn_graph::digest::is_sha256_digest(&digest) || checked.contains(&digest) {
            continue;
        }
        checked.push(digest);
        if let Some(fetched) = fetch_if_present(store, tag).await? {
            tried.push(tag.clone());
            if let Ok(image) = verify_against(release, fetched, tag) {
                return Ok(image);
            }
        }
    }

    // One architecture needs no index: the manifest the document names will do.
    let arches = image_arches(release);
    if arches.len() == 1
        && let Some(digest) = arches.values().find_map(|entry| entry.digest.clone())
        && !checked.contains(&digest)
    {
        match fetch_if_present(store, &digest).await? {
            Some(fetched) => {
                tried.push(digest.clone());
                match verify_against(release, fetched, &digest) {
                    Ok(image) => return Ok(image),
                    Err(difference) => {
                        refused.get_or_insert((digest, difference));
                    }
                }
            }
            None => tried.push(format!("{digest} (absent)")),
        }
    }

    match refused {
        Some((tag, difference)) => Err(PromoteStoreError::Mismatch {
            version: version.to_string(),
            tag,
            arch: difference.arch,
            tag_digest: difference.image_digest,
            document_digest: difference.document_digest,
        }),
        None => Err(PromoteStoreError::NoImage {
            version: version.to_string(),
            tried,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex_of(n))
    }

    fn hex_of(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn release(arches: &[(&str, String, &[String])]) -> Release {
        Release {
            version: "44.1".into(),
            architectures: arches
                .iter()
                .map(|(arch, digest, aliases)| {
                    let mut entry = ArchEntry::image(digest.clone());
                    entry.aliases = aliases.to_vec();
                    ((*arch).to_string(), entry)
                })
                .collect(),
            ..Release::default()
        }
    }

    fn index(children: &[(&str, &str, String)]) -> IndexPlatforms {
        let manifests: Vec<_> = children
            .iter()
            .map(|(os, arch, digest)| {
                json!({
                    "mediaType": crate::client::OCI_MANIFEST,
                    "digest": digest,
                    "size": 100,
                    "platform": {"architecture": arch, "os": os}
                })
            })
            .collect();
        let bytes = json!({"schemaVersion": 2, "mediaType": crate::client::OCI_INDEX, "manifests": manifests})
            .to_string();
        index_platforms(bytes.as_bytes(), "test index").expect("index")
    }

    #[test]
    fn a_second_variant_the_document_does_not_name_is_refused() {
        let release = release(&[("x86_64", digest(1), &[]), ("aarch64", digest(2), &[])]);
        let platforms = index(&[
            ("linux", "amd64", digest(1)),
            ("linux", "arm64", digest(2)),
            ("linux", "arm64", digest(7)),
        ]);
        let refused = compare_index(&release, &platforms).expect_err("an unsigned variant");
        assert_eq!(
            (refused.arch.as_str(), refused.image_digest.clone()),
            ("aarch64", digest(7))
        );
    }

    #[test]
    fn an_index_matches_when_its_linux_children_are_the_documents() {
        let release = release(&[("x86_64", digest(1), &[]), ("aarch64", digest(2), &[])]);
        let platforms = index(&[
            ("linux", "amd64", digest(1)),
            ("linux", "arm64", digest(2)),
            ("unknown", "unknown", digest(9)),
        ]);
        assert_eq!(compare_index(&release, &platforms), Ok(()));
        assert_eq!(platforms.children.len(), 3, "attestations are still copied");
    }

    #[test]
    fn an_alias_stands_for_the_architecture() {
        let release = release(&[("x86_64", digest(1), &[digest(3)])]);
        assert_eq!(
            compare_index(&release, &index(&[("linux", "amd64", digest(3))])),
            Ok(())
        );
        assert_eq!(compare_manifest(&release, &digest(3)), Ok(()));
    }

    #[test]
    fn a_missing_a_different_or_an_extra_architecture_is_refused() {
        let release = release(&[("x86_64", digest(1), &[]), ("aarch64", digest(2), &[])]);
        let missing = compare_index(&release, &index(&[("linux", "amd64", digest(1))]))
            .expect_err("aarch64 is missing");
        assert_eq!(missing.arch, "aarch64");
        assert_eq!(missing.image_digest, NOTHING);

        let different = compare_index(
            &release,
            &index(&[("linux", "amd64", digest(1)), ("linux", "arm64", digest(5))]),
        )
        .expect_err("aarch64 differs");
        assert_eq!(different.image_digest, digest(5));
        assert_eq!(different.document_digest, digest(2));

        let extra = compare_index(
            &release,
            &index(&[
                ("linux", "amd64", digest(1)),
                ("linux", "arm64", digest(2)),
                ("linux", "s390x", digest(6)),
            ]),
        )
        .expect_err("s390x is not in the document");
        assert_eq!(extra.arch, "s390x");
        assert_eq!(extra.document_digest, NOTHING);
    }

    #[test]
    fn a_single_manifest_is_only_the_image_of_a_single_architecture_release() {
        let two = release(&[("x86_64", digest(1), &[]), ("aarch64", digest(2), &[])]);
        let refused = compare_manifest(&two, &digest(1)).expect_err("aarch64 is missing");
        assert_eq!(refused.arch, "aarch64");
        let one = release(&[("x86_64", digest(1), &[])]);
        assert_eq!(compare_manifest(&one, &digest(1)), Ok(()));
        assert!(compare_manifest(&one, &digest(4)).is_err());
        let none = release(&[]);
        assert!(
            compare_index(&none, &index(&[])).is_err(),
            "an empty release matches nothing"
        );
    }
}
