//! Real, small OCI images for tests: a one-file layer, a config with labels,
//! optional manifest annotations, and multi-architecture indexes.

use bytes::Bytes;
use cairn_oci::Store;
use cairn_oci::client::{OCI_INDEX, OCI_MANIFEST};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One architecture's image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// OCI architecture name (`amd64`, `arm64`).
    pub arch: String,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Makes the layer (and so the digests) unique.
    pub content: String,
    /// Contents of the layers below this image's own, oldest first: a
    /// derived image repeats its base's layers exactly.
    pub lower_layers: Vec<String>,
    /// More files in this image's own layer: path, content, mode (hooks).
    pub files: Vec<(String, String, u32)>,
}

impl ImageSpec {
    /// A bootable image with the labels bootc images carry.
    pub fn bootable(arch: &str, version: &str, stream: &str, created: &str) -> ImageSpec {
        let labels = [
            ("containers.bootc", "1"),
            ("ostree.bootable", "true"),
            ("org.opencontainers.image.version", version),
            ("org.opencontainers.image.created", created),
            ("com.coreos.stream", stream),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        ImageSpec {
            arch: arch.to_string(),
            labels,
            annotations: BTreeMap::new(),
            content: format!("{version} {arch} {created}"),
            lower_layers: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// Digests of a written image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Manifest digest.
    pub manifest: String,
    /// Config digest.
    pub config: String,
}

fn layer(content: &str, files: &[(String, String, u32)]) -> Bytes {
    let mut builder = tar::Builder::new(Vec::new());
    let release = (
        "usr/lib/cairn-test-release".to_string(),
        content.to_string(),
        0o644,
    );
    for (path, data, mode) in std::iter::once(&release).chain(files) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, path, data.as_bytes())
            .unwrap_or_else(|e| panic!("tar: {e}"));
    }
    Bytes::from(builder.into_inner().unwrap_or_else(|e| panic!("tar: {e}")))
}

async fn put(store: &Store, data: Bytes) -> String {
    store
        .put_blob(data)
        .await
        .unwrap_or_else(|e| panic!("pushing a blob to {}: {e}", store.describe()))
}

/// Write one image (blobs and manifest; tagged when `tag` is given).
pub async fn write_image(store: &Store, spec: &ImageSpec, tag: Option<&str>) -> Written {
    let mut layers = Vec::new();
    let own = [(&spec.content, spec.files.as_slice())];
    let lower = spec.lower_layers.iter().map(|c| (c, &[][..]));
    for (content, files) in lower.chain(own) {
        let bytes = layer(content, files);
        let size = bytes.len();
        layers.push((put(store, bytes).await, size));
    }
    let created = spec
        .labels
        .get("org.opencontainers.image.created")
        .cloned()
        .unwrap_or_else(|| "2026-01-01T00:00:00Z".into());
    let config = json!({
        "architecture": spec.arch,
        "os": "linux",
        "created": created,
        "config": {"Labels": spec.labels},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d).collect::<Vec<_>>()},
        "history": [{"created": created, "created_by": "cairn-testkit"}]
    });
    let config = Bytes::from(config.to_string());
    let config_size = config.len();
    let config_digest = put(store, config).await;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layers.iter().map(|(digest, size)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size
        })).collect::<Vec<_>>()
    });
    if !spec.annotations.is_empty() {
        manifest["annotations"] = json!(spec.annotations);
    }
    let manifest = store
        .put_manifest(Bytes::from(manifest.to_string()), OCI_MANIFEST, tag)
        .await
        .unwrap_or_else(|e| panic!("pushing a manifest to {}: {e}", store.describe()));
    Written {
        manifest,
        config: config_digest,
    }
}

/// Write an image index over one image per spec, tagged `tag`.
/// Returns the index digest and each architecture's digests.
pub async fn write_index(store: &Store, specs: &[ImageSpec], tag: &str) -> (String, Vec<Written>) {
    let mut written = Vec::new();
    let mut manifests: Vec<Value> = Vec::new();
    for spec in specs {
        let image = write_image(store, spec, None).await;
        let fetched = store
            .get_manifest(&image.manifest)
            .await
            .unwrap_or_else(|e| panic!("re-reading a manifest: {e}"));
        manifests.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest,
            "size": fetched.bytes.len(),
            "platform": {"architecture": spec.arch, "os": "linux"}
        }));
        written.push(image);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let digest = store
        .put_manifest(Bytes::from(index.to_string()), OCI_INDEX, Some(tag))
        .await
        .unwrap_or_else(|e| panic!("pushing an index: {e}"));
    (digest, written)
}

/// Point more tags at an existing manifest or index.
pub async fn add_tags(store: &Store, digest: &str, tags: &[&str]) {
    let manifest = store
        .get_manifest(digest)
        .await
        .unwrap_or_else(|e| panic!("reading {digest}: {e}"));
    for tag in tags {
        store
            .put_manifest(manifest.bytes.clone(), &manifest.media_type, Some(tag))
            .await
            .unwrap_or_else(|e| panic!("tagging {digest} as {tag}: {e}"));
    }
}

/// A bootable two-architecture release (amd64 and arm64) of the `stable`
/// stream, tagged with every tag given. Returns the index digest and each
/// architecture's digests.
pub async fn write_release(
    store: &Store,
    version: &str,
    created: &str,
    tags: &[&str],
) -> (String, Vec<Written>) {
    let specs = [
        ImageSpec::bootable("amd64", version, "stable", created),
        ImageSpec::bootable("arm64", version, "stable", created),
    ];
    let (first, rest) = tags.split_first().unwrap_or((&"latest", &[]));
    let (index, written) = write_index(store, &specs, first).await;
    add_tags(store, &index, rest).await;
    (index, written)
}

/// The base a derived image is built `FROM`.
#[derive(Debug, Clone)]
pub struct Base<'a> {
    /// What `FROM` named, recorded as `org.opencontainers.image.base.name`
    /// (a tag, as in `quay.io/fedora/fedora-coreos:stable`).
    pub name: &'a str,
    /// The base release's version label (inherited by the derived image).
    pub version: &'a str,
    /// The base release's build time, as `write_release` was given it.
    pub created: &'a str,
    /// What each architecture records as `org.opencontainers.image.base.digest`.
    pub recorded: Recorded,
}

/// The base digest a derived image records.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// The base's index digest, on every architecture.
    Index(String),
    /// Each architecture's own base manifest digest: amd64, then arm64.
    Manifests(String, String),
    /// No base keys at all.
    Nothing,
}

/// A two-architecture derived release: each architecture is its base's
/// image (same layers, same labels, version label included) plus one layer
/// of its own, with the annotations buildah and podman write. `own` makes
/// the derived layer unique.
pub async fn write_derived_release(
    store: &Store,
    base: &Base<'_>,
    own: &str,
    created: &str,
    tags: &[&str],
) -> (String, Vec<Written>) {
    let specs: Vec<ImageSpec> = ["amd64", "arm64"]
        .into_iter()
        .map(|arch| {
            let mut spec = ImageSpec::bootable(arch, base.version, "stable", created);
            spec.lower_layers = vec![format!("{} {arch} {}", base.version, base.created)];
            spec.content = format!("derived {own} {arch} {created}");
            let digest = match (&base.recorded, arch) {
                (Recorded::Index(digest), _) => Some(digest.clone()),
                (Recorded::Manifests(amd64, _), "amd64") => Some(amd64.clone()),
                (Recorded::Manifests(_, arm64), _) => Some(arm64.clone()),
                (Recorded::Nothing, _) => None,
            };
            if let Some(digest) = digest {
                spec.annotations.insert(
                    "org.opencontainers.image.base.name".into(),
                    base.name.to_string(),
                );
                spec.annotations
                    .insert("org.opencontainers.image.base.digest".into(), digest);
            }
            spec
        })
        .collect();
    let (first, rest) = tags.split_first().unwrap_or((&"latest", &[]));
    let (index, written) = write_index(store, &specs, first).await;
    add_tags(store, &index, rest).await;
    (index, written)
}

/// A cosign-shaped signature of manifest `digest` in `store`, under
/// `sha256-<hex>.sig`: a simple-signing payload layer with the signature
/// annotation, as cosign writes it (no real signature: copies and
/// lookups only). `signer` makes it unique. Returns its manifest digest.
pub async fn write_cosign_signature(store: &Store, digest: &str, signer: &str) -> String {
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": store.describe()},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": {"signer": signer},
    });
    let payload = Bytes::from(payload.to_string());
    let payload_size = payload.len();
    let payload_digest = store.put_blob(payload).await.expect("payload blob");
    let config = json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
    });
    let config = Bytes::from(config.to_string());
    let config_size = config.len();
    let config_digest = store.put_blob(config).await.expect("config blob");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": payload_digest,
            "size": payload_size,
            "annotations": {"dev.cosignproject.cosign/signature": format!("MEUC-{signer}")},
        }],
    });
    let tag = cairn_oci::promote::signature_tag(digest).expect("a sha256 digest");
    store
        .put_manifest(Bytes::from(manifest.to_string()), OCI_MANIFEST, Some(&tag))
        .await
        .expect("signature manifest")
}
