//! The OCI image-layout directory (`oci:DIR`), as `skopeo copy … oci:DIR:TAG`
//! writes it: `oci-layout`, `index.json`, and `blobs/sha256/<hex>`.
//!
//! It offers the same operations as a registry, so a single machine, a test or
//! a disconnected site can publish and read documents with no registry at all.

use crate::client::{FetchedManifest, ManifestHead};
use crate::digest::sha256_digest;
use crate::error::{OciError, Result};
use crate::manifest;
use bytes::Bytes;
use cairn_fs::FileLock;
use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, ImageIndex, ImageIndexBuilder, MediaType, OciLayout,
    OciLayoutBuilder, SCHEMA_VERSION,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The annotation that names a manifest in `index.json`.
pub const REF_NAME: &str = ANNOTATION_REF_NAME;

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Open an existing layout.
    pub fn open(root: impl Into<PathBuf>) -> Result<Layout> {
        let root = root.into();
        let marker = root.join("oci-layout");
        let bytes = std::fs::read(&marker).map_err(|e| OciError::io(&marker, e))?;
        // Only its presence and shape matter: skopeo writes 1.0.0, and a newer
        // version is still a directory of blobs and an index.
        manifest::parse::<OciLayout>(&bytes, &marker.display().to_string())?;
        Ok(Layout { root })
    }

    /// Open a layout, creating an empty one if the directory has none.
    pub fn open_or_create(root: impl Into<PathBuf>) -> Result<Layout> {
        let root = root.into();
        if root.join("oci-layout").exists() {
            return Layout::open(root);
        }
        let blobs = root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| OciError::io(&blobs, e))?;
        // Under the index's lock: a second creator must not write an empty
        // index over one the first has already added a tag to.
        let _lock = FileLock::acquire(&cairn_fs::lock_path(&root.join("index.json")))?;
        if !root.join("index.json").exists() {
            let index = ImageIndexBuilder::default()
                .schema_version(SCHEMA_VERSION)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::new())
                .build()
                .map_err(|e| OciError::invalid("index.json", e))?;
            cairn_fs::write_atomic(
                &root.join("index.json"),
                &manifest::to_json(&index, "index.json")?,
            )?;
        }
        let marker = OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()
            .map_err(|e| OciError::invalid("oci-layout", e))?;
        // Written last: it marks a complete layout.
        cairn_fs::write_atomic(
            &root.join("oci-layout"),
            &manifest::to_json(&marker, "oci-layout")?,
        )?;
        Ok(Layout { root })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).map_err(|e| OciError::io(&path, e))?;
        manifest::parse(&bytes, &path.display().to_string())
    }

    fn entries(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_index()?.manifests().clone())
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        if !cairn_graph::digest::is_sha256_digest(digest) {
            return Err(OciError::invalid(
                format!("digest {digest:?}"),
                "not a sha256 digest",
            ));
        }
        Ok(self
            .root
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..]))
    }

    /// Names (`org.opencontainers.image.ref.name`) in `index.json`.
    pub fn list_tags(&self) -> Result<Vec<String>> {
        Ok(self
            .entries()?
            .iter()
            .filter_map(|entry| ref_name(entry).map(str::to_string))
            .collect())
    }

    /// The manifest a name or digest refers to, if any.
    pub fn resolve(&self, reference: &str) -> Result<Option<ManifestHead>> {
        if cairn_graph::digest::is_sha256_digest(reference) {
            let path = self.blob_path(reference)?;
            return match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(ManifestHead {
                    digest: reference.to_string(),
                    media_type: manifest::declared_media_type(&bytes),
                    size: bytes.len() as u64,
                })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(OciError::io(path, e)),
            };
        }
        let entry = self
            .entries()?
            .into_iter()
            .rev()
            .find(|entry| ref_name(entry) == Some(reference));
        Ok(entry.map(|entry| ManifestHead {
            digest: entry.digest().to_string(),
            media_type: entry.media_type().to_string(),
            size: entry.size(),
        }))
    }

    /// A manifest by name or digest.
    pub fn get_manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let head = self.resolve(reference)?.ok_or_else(|| {
            OciError::NotFound(format!("{reference} in oci:{}", self.root.display()))
        })?;
        let bytes = self.get_blob(&head.digest, crate::client::MAX_MANIFEST_BYTES)?;
        let media_type = if head.media_type.is_empty() {
            manifest::declared_media_type(&bytes)
        } else {
            head.media_type
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest: head.digest,
        })
    }

    /// A blob, checked against its digest.
    pub fn get_blob(&self, digest: &str, limit: usize) -> Result<Bytes> {
        let path = self.blob_path(digest)?;
        if let Ok(metadata) = std::fs::metadata(&path)
            && metadata.len() > limit as u64
        {
            return Err(OciError::invalid(
                path.display().to_string(),
                format!("larger than {limit} bytes"),
            ));
        }
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::NotFound(format!(
                    "blob {digest} in oci:{}",
                    self.root.display()
                )));
            }
            Err(e) => return Err(OciError::io(path, e)),
        };
        if bytes.len() > limit {
            return Err(OciError::invalid(
                path.display().to_string(),
                format!("larger than {limit} bytes"),
            ));
        }
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what: path.display().to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(Bytes::from(bytes))
    }

    /// Store a blob; returns its digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            cairn_fs::write_atomic(&path, data)?;
        }
        Ok(digest)
    }

    /// Store a manifest and, with a name, point the name at it (replacing
    /// whatever the name pointed at before).
    pub fn put_manifest(
        &self,
        bytes: &[u8],
        media_type: &str,
        name: Option<&str>,
    ) -> Result<String> {
        let digest = self.put_blob(bytes)?;
        // Under the index's lock (a sidecar file: `index.json` is replaced by
        // rename, and a lock on a renamed-away inode protects nothing), so
        // that two publishers into one layout both keep their tags.
        cairn_fs::update_locked(&self.index_path(), |_| -> Result<_> {
            let index = self.with_manifest(&digest, bytes.len(), media_type, name)?;
            Ok(Some(manifest::to_json(&index, "index.json")?))
        })?;
        Ok(digest)
    }

    /// The index with a manifest added, or a name pointed at it.
    fn with_manifest(
        &self,
        digest: &str,
        size: usize,
        media_type: &str,
        name: Option<&str>,
    ) -> Result<ImageIndex> {
        let mut index = self.read_index()?;
        let mut descriptor = manifest::descriptor(media_type, digest, size)?;
        let mut manifests = index.manifests().clone();
        match name {
            Some(name) => {
                manifests.retain(|entry| ref_name(entry) != Some(name));
                descriptor.set_annotations(Some(HashMap::from([(
                    REF_NAME.to_string(),
                    name.to_string(),
                )])));
                manifests.push(descriptor);
            }
            None => {
                if !manifests
                    .iter()
                    .any(|entry| entry.digest().as_ref() == digest)
                {
                    manifests.push(descriptor);
                }
            }
        }
        index.set_manifests(manifests);
        Ok(index)
    }
}

/// The name an `index.json` entry carries, if any.
fn ref_name(entry: &Descriptor) -> Option<&str> {
    entry
        .annotations()
        .as_ref()?
        .get(REF_NAME)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_blobs_and_named_manifests() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::open_or_create(dir.path()).expect("created");
        let blob = layout.put_blob(b"hello").expect("blob");
        assert_eq!(
            layout.get_blob(&blob, 100).expect("read").as_ref(),
            b"hello"
        );
        let manifest =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        let first = layout
            .put_manifest(manifest, crate::client::OCI_MANIFEST, Some("graph-stable"))
            .expect("manifest");
        assert_eq!(
            layout.list_tags().expect("tags"),
            vec!["graph-stable".to_string()]
        );
        let fetched = layout.get_manifest("graph-stable").expect("by name");
        assert_eq!(fetched.digest, first);
        assert_eq!(fetched.media_type, crate::client::OCI_MANIFEST);
        // Re-pointing a name replaces the entry.
        let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","x":1}"#;
        let second = layout
            .put_manifest(other, crate::client::OCI_MANIFEST, Some("graph-stable"))
            .expect("manifest");
        assert_eq!(
            layout
                .resolve("graph-stable")
                .expect("ok")
                .map(|h| h.digest),
            Some(second)
        );
        assert_eq!(layout.list_tags().expect("tags").len(), 1);
        // Reopening works, and corruption is detected.
        let reopened = Layout::open(dir.path()).expect("reopens");
        std::fs::write(reopened.blob_path(&blob).expect("path"), b"tampered").expect("write");
        assert!(matches!(
            reopened.get_blob(&blob, 100),
            Err(OciError::DigestMismatch { .. })
        ));
        assert!(matches!(
            reopened.get_manifest("missing"),
            Err(OciError::NotFound(_))
        ));
    }

    #[test]
    fn publishers_into_one_layout_at_once_keep_every_tag() {
        let dir = tempfile::tempdir().expect("temp dir");
        const TAGS: usize = 30;
        std::thread::scope(|scope| {
            for publisher in 0..3 {
                let root = dir.path().to_path_buf();
                scope.spawn(move || {
                    // Each creates the layout too: a late creator must not
                    // empty an index another has already tagged into.
                    let layout = Layout::open_or_create(root).expect("layout");
                    for n in 0..TAGS {
                        let manifest = format!(
                            r#"{{"schemaVersion":2,"mediaType":"{}","n":"{publisher}-{n}"}}"#,
                            crate::client::OCI_MANIFEST
                        );
                        let name = format!("graph-{publisher}-{n}");
                        layout
                            .put_manifest(
                                manifest.as_bytes(),
                                crate::client::OCI_MANIFEST,
                                Some(&name),
                            )
                            .expect("manifest");
                    }
                });
            }
        });
        let mut tags = Layout::open(dir.path())
            .expect("layout")
            .list_tags()
            .expect("tags");
        tags.sort();
        let mut expected: Vec<String> = (0..3)
            .flat_map(|p| (0..TAGS).map(move |n| format!("graph-{p}-{n}")))
            .collect();
        expected.sort();
        assert_eq!(tags, expected);
    }

    #[test]
    fn a_directory_without_a_layout_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(matches!(Layout::open(dir.path()), Err(OciError::Io { .. })));
    }
}
