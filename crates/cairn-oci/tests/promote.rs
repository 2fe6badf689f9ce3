//! The promoter's registry side on a real registry: the state artifact,
//! conditional tag moves, reading wave tags, finding a release's image, and
//! copying images with their digests kept.

use cairn_graph::GraphDocument;
use cairn_graph::promote::{Observed, PromoteState, WaveState};
use cairn_oci::Store;
use cairn_oci::client::OCI_MANIFEST;
use cairn_oci::digest::sha256_digest;
use cairn_oci::promote::{
    COPY_CHUNK_BYTES, PromoteStoreError, ReleaseImage, STATE_TAG, copy_image, move_tag, observe,
    read_state, release_image, signature_tag, wave_tags, write_state,
};
use cairn_testkit::{
    Auth, ImageSpec, TestRegistry, Written, add_tags, write_cosign_signature, write_image,
    write_release,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const SETTLE: Duration = Duration::from_millis(50);

/// An error and every cause under it, as `cairn` prints it.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}

fn now() -> jiff::Timestamp {
    "2026-03-01T00:00:00Z".parse().expect("timestamp")
}

/// A document naming each release's per-architecture digests, as publish
/// would record them (amd64 first, arm64 second, as `write_release` writes).
fn document(repository: &str, releases: &[(&str, &[Written])]) -> GraphDocument {
    let releases: Vec<_> = releases
        .iter()
        .map(|(version, arches)| {
            let mut architectures = serde_json::Map::new();
            for (arch, written) in ["x86_64", "aarch64"].iter().zip(arches.iter()) {
                architectures.insert(
                    (*arch).to_string(),
                    json!({"digest": written.manifest, "config": written.config}),
                );
            }
            json!({"version": version, "architectures": architectures})
        })
        .collect();
    serde_json::from_value(json!({
        "schema": 1,
        "stream": "stable",
        "repository": repository,
        "sequence": 7,
        "issued": "2026-03-01T00:00:00Z",
        "expires": "2026-04-01T00:00:00Z",
        "releases": releases,
    }))
    .expect("document")
}

/// Two releases of two architectures each in `store`, and their document.
async fn two_releases(registry: &TestRegistry, store: &Store) -> (GraphDocument, [String; 2]) {
    let (index_1, arches_1) = write_release(store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (index_2, arches_2) = write_release(store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    let repository = registry.repository("acme/os").to_string();
    let document = document(&repository, &[("44.1", &arches_1), ("44.2", &arches_2)]);
    (document, [index_1, index_2])
}

#[tokio::test]
async fn state_round_trips_and_a_moved_state_tag_is_a_conflict() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (empty, before) = read_state(&store).await.expect("read absent state");
    assert_eq!(empty, PromoteState::default());
    assert_eq!(before, None);

    let mut state = PromoteState {
        last_sequence: 7,
        ..PromoteState::default()
    };
    state.waves.insert(
        "stable-early".into(),
        WaveState {
            version: "44.1".into(),
            arrived: now(),
            came_from: None,
        },
    );
    let first = write_state(&store, &state, None, now(), SETTLE)
        .await
        .expect("first write");
    let (read, at) = read_state(&store).await.expect("read state");
    assert_eq!(read, state);
    assert_eq!(at.as_deref(), Some(first.as_str()));

    // A second writer that read before the first write must not overwrite it.
    state.last_sequence = 8;
    let conflict = write_state(&store, &state, None, now(), SETTLE)
        .await
        .expect_err("the tag moved since this writer read it");
    assert_eq!(conflict.kind(), "conflict");
    assert!(conflict.is_conflict());
    assert!(
        conflict.to_string().contains(STATE_TAG) && conflict.to_string().contains(&first),
        "{conflict}"
    );
    assert_eq!(read_state(&store).await.expect("reread").0.last_sequence, 7);

    let second = write_state(&store, &state, Some(&first), now(), SETTLE)
        .await
        .expect("write on top of what was read");
    let (read, at) = read_state(&store).await.expect("read again");
    assert_eq!(read.last_sequence, 8);
    assert_eq!(at, Some(second));

    // The scan's view: the waves a state names, once the state tag is listed.
    let tags = store.list_tags().await.expect("tags");
    assert_eq!(
        wave_tags(&store, &tags).await.expect("wave tags"),
        vec!["stable-early".to_string()]
    );
    let requests = store.request_count();
    let without_state = vec!["44.1".to_string()];
    assert!(
        wave_tags(&store, &without_state)
            .await
            .expect("no state tag")
            .is_empty()
    );
    assert_eq!(store.request_count(), requests, "no state tag, no request");
}

#[tokio::test]
async fn an_image_under_the_state_tag_is_not_read_as_a_state() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    write_release(&store, "44.1", "2026-01-01T00:00:00Z", &[STATE_TAG]).await;
    let error = read_state(&store).await.expect_err("an index is no state");
    assert_eq!(error.kind(), "not_a_state", "{error}");
}

#[tokio::test]
async fn move_tag_moves_only_from_what_was_read() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (document, [index_1, index_2]) = two_releases(&registry, &store).await;
    let image_1 = release_image(&store, &document, "44.1")
        .await
        .expect("44.1");
    let image_2 = release_image(&store, &document, "44.2")
        .await
        .expect("44.2");

    move_tag(&store, "stable-early", &image_1, None, SETTLE)
        .await
        .expect("a new wave tag");
    let head = store.resolve("stable-early").await.expect("resolve");
    assert_eq!(head.map(|h| h.digest), Some(index_1.clone()));

    let error = move_tag(&store, "stable-early", &image_2, None, SETTLE)
        .await
        .expect_err("the tag exists now");
    match &error {
        PromoteStoreError::Conflict { tag, found, .. } => {
            assert_eq!(tag, "stable-early");
            assert_eq!(found, &index_1);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let head = store.resolve("stable-early").await.expect("resolve");
    assert_eq!(head.map(|h| h.digest), Some(index_1.clone()));

    move_tag(&store, "stable-early", &image_2, Some(&index_1), SETTLE)
        .await
        .expect("moving from what was read");
    let head = store.resolve("stable-early").await.expect("resolve");
    assert_eq!(head.map(|h| h.digest), Some(index_2));
}

#[tokio::test]
async fn observe_names_releases_by_index_or_manifest_and_nothing_else() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (document, [index_1, _]) = two_releases(&registry, &store).await;
    add_tags(&store, &index_1, &["stable-early", "stable-late"]).await;
    let amd64_of_44_2 = document.releases[1].architectures["x86_64"]
        .digest
        .clone()
        .expect("digest");
    add_tags(&store, &amd64_of_44_2, &["stable-single"]).await;
    let stranger = write_image(
        &store,
        &ImageSpec::bootable("amd64", "9", "stable", "2026-01-01T00:00:00Z"),
        Some("stable-other"),
    )
    .await;

    let mut cache = BTreeMap::new();
    let (observed, digest) = observe(&store, "stable-early", &document, &mut cache)
        .await
        .expect("observe an index");
    assert_eq!(
        observed,
        Observed::Release {
            version: "44.1".into()
        }
    );
    assert_eq!(digest.as_deref(), Some(index_1.as_str()));

    // A second wave on the same index costs only its HEAD.
    let requests = store.request_count();
    let (observed, _) = observe(&store, "stable-late", &document, &mut cache)
        .await
        .expect("observe from the cache");
    assert_eq!(
        observed,
        Observed::Release {
            version: "44.1".into()
        }
    );
    assert_eq!(store.request_count() - requests, 1);

    let (observed, digest) = observe(&store, "stable-single", &document, &mut cache)
        .await
        .expect("observe a manifest");
    assert_eq!(
        observed,
        Observed::Release {
            version: "44.2".into()
        }
    );
    assert_eq!(digest, Some(amd64_of_44_2));

    let (observed, digest) = observe(&store, "stable-other", &document, &mut cache)
        .await
        .expect("observe a stranger");
    assert_eq!(
        observed,
        Observed::Unknown {
            digest: stranger.manifest.clone()
        }
    );
    assert_eq!(digest, Some(stranger.manifest));

    // An index over other images is unknown too, not the release it resembles.
    let (foreign_index, _) =
        write_release(&store, "44.1", "2026-05-05T00:00:00Z", &["stable-rebuilt"]).await;
    let (observed, _) = observe(&store, "stable-rebuilt", &document, &mut cache)
        .await
        .expect("observe a rebuilt index");
    assert_eq!(
        observed,
        Observed::Unknown {
            digest: foreign_index
        }
    );

    let (observed, digest) = observe(&store, "stable-new", &document, &mut cache)
        .await
        .expect("observe an absent tag");
    assert_eq!(observed, Observed::Absent);
    assert_eq!(digest, None);
}

#[tokio::test]
async fn release_image_refuses_a_re_pushed_version_tag() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (document, [index_1, index_2]) = two_releases(&registry, &store).await;
    let image = release_image(&store, &document, "44.1")
        .await
        .expect("44.1");
    assert_eq!(image.digest, index_1);
    assert_eq!(image.found_at, "44.1");
    assert_eq!(image.children.len(), 2);

    // Someone points the unsigned tag 44.1 at 44.2's index.
    add_tags(&store, &index_2, &["44.1"]).await;
    let error = release_image(&store, &document, "44.1")
        .await
        .expect_err("the tag no longer holds what the document signed");
    match &error {
        PromoteStoreError::Mismatch {
            version,
            tag,
            tag_digest,
            document_digest,
            ..
        } => {
            assert_eq!(version, "44.1");
            assert_eq!(tag, "44.1");
            assert_ne!(tag_digest, document_digest);
        }
        other => panic!("expected a mismatch, got {other}"),
    }
    assert_eq!(error.kind(), "mismatch");

    // A keep tag of the right index is found instead.
    add_tags(&store, &index_1, &[&cairn_oci::scan::keep_tag(&index_1)]).await;
    let image = release_image(&store, &document, "44.1")
        .await
        .expect("found under its keep tag");
    assert_eq!(image.digest, index_1);
    assert!(
        image.found_at.starts_with("cairn-keep-"),
        "{}",
        image.found_at
    );
}

#[tokio::test]
async fn release_image_falls_back_to_a_single_architecture_and_names_what_is_missing() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let single = write_image(
        &store,
        &ImageSpec::bootable("amd64", "44.3", "stable", "2026-03-01T00:00:00Z"),
        None,
    )
    .await;
    let (_, arches) = write_release(&store, "44.4", "2026-04-01T00:00:00Z", &["build-44.4"]).await;
    let repository = registry.repository("acme/os").to_string();
    let document = document(
        &repository,
        &[("44.3", std::slice::from_ref(&single)), ("44.4", &arches)],
    );

    let image = release_image(&store, &document, "44.3")
        .await
        .expect("one architecture needs no index");
    assert_eq!(image.digest, single.manifest);
    assert!(image.children.is_empty());

    let error = release_image(&store, &document, "44.4")
        .await
        .expect_err("no index of 44.4 is tagged");
    match &error {
        PromoteStoreError::NoImage { version, tried } => {
            assert_eq!(version, "44.4");
            assert!(tried.iter().any(|t| t.starts_with("44.4")), "{tried:?}");
        }
        other => panic!("expected no image, got {other}"),
    }
    assert!(
        error
            .to_string()
            .contains("tag the release's index as 44.4")
    );
}

/// sha256 of what skopeo reads at `reference`.
fn skopeo_digest(registry: &TestRegistry, reference: &str) -> String {
    let raw = cairn_testkit::skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/{reference}", registry.host),
    ]);
    sha256_digest(raw.as_bytes())
}

#[tokio::test]
async fn copy_within_one_registry_mounts_every_blob() {
    let registry = TestRegistry::start(Auth::None).await;
    let from = registry.store("acme/os");
    let to = registry.store("acme/mirror");
    let (document, [index_1, _]) = two_releases(&registry, &from).await;
    let image = release_image(&from, &document, "44.1").await.expect("44.1");

    let stats = copy_image(&from, &to, &image).await.expect("copy");
    // Two images: a config and a layer each.
    assert_eq!(stats.blobs_mounted, 4, "{stats:?}");
    assert_eq!(stats.blobs_uploaded, 0, "{stats:?}");
    assert_eq!(stats.manifests_put, 3, "{stats:?}");
    assert_eq!(
        to.resolve(&index_1)
            .await
            .expect("resolve")
            .map(|h| h.digest),
        Some(index_1.clone())
    );

    // A second copy finds the index there and writes nothing.
    let writes = to.write_count();
    let again = copy_image(&from, &to, &image).await.expect("copy again");
    assert_eq!(again.manifests_present, 1, "{again:?}");
    assert_eq!(again.manifests_put, 0, "{again:?}");
    assert_eq!(to.write_count(), writes);
}

#[tokio::test]
async fn copy_across_registries_keeps_index_and_child_digests() {
    let source = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let from = source.store("acme/os");
    let to = target.store("acme/os");
    let (document, [index_1, _]) = two_releases(&source, &from).await;
    let image = release_image(&from, &document, "44.1").await.expect("44.1");

    let stats = copy_image(&from, &to, &image).await.expect("copy");
    assert_eq!(stats.blobs_mounted, 0, "{stats:?}");
    assert_eq!(stats.blobs_uploaded, 4, "{stats:?}");
    assert_eq!(stats.manifests_put, 3, "{stats:?}");

    move_tag(&to, "stable-early", &image, None, SETTLE)
        .await
        .expect("tag the copy");
    assert_eq!(skopeo_digest(&target, "acme/os:stable-early"), index_1);
    assert_eq!(
        skopeo_digest(&target, &format!("acme/os@{index_1}")),
        skopeo_digest(&source, &format!("acme/os@{index_1}"))
    );
    for child in &image.children {
        let copied = skopeo_digest(&target, &format!("acme/os@{child}"));
        assert_eq!(&copied, child);
        assert_eq!(copied, skopeo_digest(&source, &format!("acme/os@{child}")));
    }
    // The copy is the release in the target's terms too.
    let mut cache = BTreeMap::new();
    let (observed, _) = observe(&to, "stable-early", &document, &mut cache)
        .await
        .expect("observe the copy");
    assert_eq!(
        observed,
        Observed::Release {
            version: "44.1".into()
        }
    );
}

#[test]
fn the_signature_tag_is_cosigns() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        signature_tag(&digest),
        Some(format!("sha256-{}.sig", "ab".repeat(32)))
    );
    assert_eq!(signature_tag("sha256:short"), None);
    assert_eq!(signature_tag("sha512:ab"), None);
}

#[tokio::test]
async fn copy_takes_the_cosign_signatures_of_the_index_and_its_children() {
    let source = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let from = source.store("acme/os");
    let to = target.store("mirror/os");
    let (document, [index_1, _]) = two_releases(&source, &from).await;
    let image = release_image(&from, &document, "44.1").await.expect("44.1");
    let amd64 = image.children[0].clone();
    let arm64 = image.children[1].clone();
    let index_signature = write_cosign_signature(&from, &index_1, "release-team").await;
    let amd64_signature = write_cosign_signature(&from, &amd64, "release-team").await;

    let stats = copy_image(&from, &to, &image).await.expect("copy");
    assert_eq!(stats.signatures_copied, 2, "{stats:?}");
    assert_eq!(stats.signatures_present, 0, "{stats:?}");
    // Two images of a config and a layer, two signatures of a config and a payload.
    assert_eq!(stats.blobs_uploaded, 8, "{stats:?}");
    for (digest, signature) in [(&index_1, &index_signature), (&amd64, &amd64_signature)] {
        let tag = signature_tag(digest).expect("a sha256 digest");
        let copied = to.resolve(&tag).await.expect("HEAD").map(|h| h.digest);
        assert_eq!(copied.as_ref(), Some(signature), "{tag}");
        assert_eq!(
            &skopeo_digest(&target, &format!("mirror/os:{tag}")),
            signature
        );
    }
    // The unsigned child has none, and that is no error.
    let unsigned = signature_tag(&arm64).expect("a sha256 digest");
    assert_eq!(to.resolve(&unsigned).await.expect("HEAD"), None);

    // Again: everything is there, nothing is written.
    let writes = to.write_count();
    let again = copy_image(&from, &to, &image).await.expect("copy again");
    assert_eq!(again.signatures_present, 2, "{again:?}");
    assert_eq!(again.signatures_copied, 0, "{again:?}");
    assert_eq!(to.write_count(), writes);

    // Signed again in the source (cosign rewrites the tag): the image is in
    // the target already, and the new signature still follows.
    let resigned = write_cosign_signature(&from, &index_1, "second-signer").await;
    assert_ne!(resigned, index_signature);
    let third = copy_image(&from, &to, &image)
        .await
        .expect("copy a new signature");
    assert_eq!(third.manifests_present, 1, "{third:?}");
    assert_eq!(third.signatures_copied, 1, "{third:?}");
    assert_eq!(third.signatures_present, 1, "{third:?}");
    let tag = signature_tag(&index_1).expect("a sha256 digest");
    assert_eq!(
        to.resolve(&tag).await.expect("HEAD").map(|h| h.digest),
        Some(resigned)
    );
}

#[tokio::test]
async fn copy_streams_a_blob_larger_than_a_chunk_in_order() {
    let source = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let from = source.store("acme/os");
    let to = target.store("acme/os");
    // An uncompressed layer of two and a half chunks, not all one byte.
    let mut spec = ImageSpec::bootable("amd64", "44.3", "stable", "2026-03-01T00:00:00Z");
    spec.content = (0..COPY_CHUNK_BYTES * 5 / 2 / 16)
        .map(|n| format!("{:015x}\n", n.wrapping_mul(2_654_435_761)))
        .collect();
    let single = write_image(&from, &spec, Some("44.3")).await;
    let repository = source.repository("acme/os").to_string();
    let document = document(&repository, &[("44.3", std::slice::from_ref(&single))]);
    let image = release_image(&from, &document, "44.3").await.expect("44.3");

    let before = target.requests().len();
    let stats = copy_image(&from, &to, &image).await.expect("copy");
    assert_eq!(stats.blobs_uploaded, 2, "{stats:?}");
    let patches: Vec<_> = target.requests()[before..]
        .iter()
        .filter(|r| r.method == "PATCH")
        .cloned()
        .collect();
    // The layer in three chunks; the config, smaller than one, in one PUT.
    assert_eq!(patches.len(), 3, "{patches:?}");
    assert_eq!(
        skopeo_digest(&target, &format!("acme/os@{}", single.manifest)),
        single.manifest
    );
    let manifest = to.get_manifest(&single.manifest).await.expect("the copy");
    let parsed: serde_json::Value = serde_json::from_slice(&manifest.bytes).expect("JSON");
    let layer = parsed["layers"][0]["digest"].as_str().expect("a layer");
    let size = parsed["layers"][0]["size"].as_u64().expect("a size");
    assert!(size > 2 * COPY_CHUNK_BYTES as u64, "{size}");
    let copied = to
        .get_blob(layer, usize::try_from(size).expect("fits"))
        .await
        .expect("the layer in the target, its digest checked");
    assert_eq!(copied.len() as u64, size);
}

/// A blob of exactly one chunk goes whole, in the one PUT every registry
/// takes: no PATCH.
#[tokio::test]
async fn a_blob_of_exactly_one_chunk_goes_in_one_put() {
    let source = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let from = source.store("acme/os");
    let to = target.store("acme/os");
    let layer: bytes::Bytes = (0..COPY_CHUNK_BYTES)
        .map(|n| (n % 239) as u8)
        .collect::<Vec<u8>>()
        .into();
    let image = image_with_layer(&from, layer.clone(), layer.len() as u64).await;
    let before = target.requests().len();
    copy_image(&from, &to, &image).await.expect("copy");
    let requests = target.requests();
    let uploads: Vec<&str> = requests[before..]
        .iter()
        .filter(|r| r.uri.contains("/blobs/uploads/"))
        .map(|r| r.method.as_str())
        .collect();
    // Config and layer: a POST and a PUT each.
    assert_eq!(uploads, ["POST", "PUT", "POST", "PUT"], "{requests:?}");
    assert!(
        to.blob_exists(&sha256_digest(&layer))
            .await
            .expect("HEAD blob")
    );
}

/// A single-manifest release image in `store` whose one layer is `layer`,
/// its descriptor claiming `claimed` bytes.
async fn image_with_layer(store: &Store, layer: bytes::Bytes, claimed: u64) -> ReleaseImage {
    let layer_digest = store.put_blob(layer).await.expect("layer");
    let config = bytes::Bytes::from(json!({"architecture": "amd64", "os": "linux"}).to_string());
    let config_size = config.len();
    let config_digest = store.put_blob(config).await.expect("config");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": claimed}],
    });
    let bytes = bytes::Bytes::from(manifest.to_string());
    let digest = store
        .put_manifest(bytes.clone(), OCI_MANIFEST, None)
        .await
        .expect("manifest");
    ReleaseImage {
        version: "44.9".into(),
        digest,
        media_type: OCI_MANIFEST.into(),
        bytes,
        children: Vec::new(),
        found_at: "44.9".into(),
    }
}

#[tokio::test]
async fn a_streamed_blob_of_another_size_than_its_descriptor_is_refused_and_its_upload_cancelled() {
    let source = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let from = source.store("acme/os");
    let to = target.store("acme/os");
    let layer: bytes::Bytes = (0..COPY_CHUNK_BYTES * 2)
        .map(|n| (n % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let real = layer.len() as u64;
    for (claimed, says) in [
        (real - 1, format!("more than the {} bytes", real - 1)),
        (
            real + 1,
            format!("sent {real} bytes, but its descriptor says {}", real + 1),
        ),
    ] {
        let image = image_with_layer(&from, layer.clone(), claimed).await;
        let before = target.requests().len();
        let error = copy_image(&from, &to, &image)
            .await
            .expect_err("a blob of another size");
        let text = with_causes(&error);
        assert!(text.contains(&says), "{text}");
        assert_eq!(to.resolve(&image.digest).await.expect("HEAD"), None);
        let requests = target.requests();
        let deleted = requests[before..]
            .iter()
            .filter(|r| r.method == "DELETE" && r.uri.contains("/blobs/uploads/"))
            .map(|r| r.status)
            .collect::<Vec<_>>();
        // 204: the session the last PATCH named was the one cancelled.
        assert_eq!(deleted, vec![204], "{:?}", &requests[before..]);
    }
}

/// Flip one byte of blob `digest` in the registry's own storage, as a
/// failing disk would: the registry serves it as it is.
fn corrupt_stored_blob(registry: &TestRegistry, digest: &str) {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let path = registry
        .scratch()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data[0] ^= 0xff;
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A source that serves a blob of the right size but other bytes: refused
/// by digest, naming the blob and its manifest, with nothing left behind:
/// a streamed blob's session is cancelled, and a small blob is read whole
/// before any session is opened.
#[tokio::test]
async fn a_corrupted_source_blob_is_refused_by_digest_and_leaves_no_upload() {
    let source = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let from = source.store("acme/os");
    let to = target.store("acme/os");
    for (size, streamed) in [(COPY_CHUNK_BYTES * 2, true), (4096, false)] {
        let layer: bytes::Bytes = (0..size)
            .map(|n| (n % 241) as u8)
            .chain(std::iter::once(streamed as u8))
            .collect::<Vec<u8>>()
            .into();
        let layer_digest = sha256_digest(&layer);
        let image = image_with_layer(&from, layer.clone(), layer.len() as u64).await;
        corrupt_stored_blob(&source, &layer_digest);
        let before = target.requests().len();
        let error = copy_image(&from, &to, &image)
            .await
            .expect_err("a corrupted blob");
        assert_eq!(error.kind(), "digest_mismatch", "{error}");
        let text = with_causes(&error);
        assert!(
            text.contains(&layer_digest) && text.contains(&image.digest),
            "names the blob and its manifest: {text}"
        );
        assert_eq!(to.resolve(&image.digest).await.expect("HEAD"), None);
        assert!(!to.blob_exists(&layer_digest).await.expect("HEAD blob"));
        let requests = target.requests();
        let requests = &requests[before..];
        let count = |method: &str| {
            requests
                .iter()
                .filter(|r| r.method == method && r.uri.contains("/blobs/uploads/"))
                .count()
        };
        if streamed {
            assert!(count("PATCH") >= 1, "{requests:?}");
            let cancelled: Vec<u16> = requests
                .iter()
                .filter(|r| r.method == "DELETE" && r.uri.contains("/blobs/uploads/"))
                .map(|r| r.status)
                .collect();
            assert_eq!(
                cancelled,
                vec![204],
                "the session is cancelled: {requests:?}"
            );
        } else {
            // The config is there from the first round, and the layer,
            // read whole first, never opened a session: no write at all.
            assert!(requests.iter().all(|r| !r.is_write()), "{requests:?}");
        }
    }
}

#[tokio::test]
async fn copy_from_a_layout_refuses_a_blob_too_large_to_hold() {
    let registry = TestRegistry::start(Auth::None).await;
    let directory = tempfile::tempdir().expect("temp dir");
    let layout = cairn_oci::layout::Layout::open_or_create(directory.path()).expect("layout");
    let from = Store::Layout(layout);
    let to = registry.store("acme/os");
    let huge = cairn_oci::promote::MAX_COPY_BLOB_BYTES + 1;
    let config = format!("sha256:{}", "c0".repeat(32));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": huge},
        "layers": [],
    });
    let bytes = bytes::Bytes::from(manifest.to_string());
    let image = ReleaseImage {
        version: "44.9".into(),
        digest: sha256_digest(&bytes),
        media_type: OCI_MANIFEST.into(),
        bytes,
        children: Vec::new(),
        found_at: "44.9".into(),
    };
    let writes = to.write_count();
    let error = copy_image(&from, &to, &image)
        .await
        .expect_err("too large to hold in memory");
    assert_eq!(error.kind(), "too_large", "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&config) && text.contains(&huge.to_string()) && text.contains("OCI layout"),
        "{text}"
    );
    assert_eq!(to.write_count(), writes, "nothing was sent");
}

#[tokio::test]
async fn write_count_counts_only_writes() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (index, _) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (requests, writes) = (store.request_count(), store.write_count());
    store.resolve("44.1").await.expect("HEAD");
    store.get_manifest(&index).await.expect("GET");
    store.list_tags().await.expect("GET tags");
    assert_eq!(store.write_count(), writes, "reads are not writes");
    assert!(store.request_count() >= requests + 3);

    // A new blob: HEAD (absent), POST, PUT.
    let requests = store.request_count();
    store
        .put_blob(bytes::Bytes::from_static(b"a blob of its own"))
        .await
        .expect("put blob");
    assert_eq!(store.write_count(), writes + 2);
    assert_eq!(store.request_count(), requests + 3);
    // The same blob again: one HEAD, no write.
    store
        .put_blob(bytes::Bytes::from_static(b"a blob of its own"))
        .await
        .expect("put blob again");
    assert_eq!(store.write_count(), writes + 2);
}
