//! `cairn promote --to`: the wave tags and the state live in a mirror on
//! another registry, and each release's image is copied there first with
//! every digest (and its cosign signature) unchanged.

use super::{World, action, world};
use cairn_oci::Store;
use cairn_oci::digest::sha256_digest;
use cairn_oci::promote::{STATE_TAG, signature_tag};
use cairn_testkit::{Auth, TestRegistry, write_release};
use serde_json::Value;

const WAVES: [&str; 2] = ["stable-early", "stable-late"];

/// What skopeo reads at `docker://{host}/{reference}`: the raw manifest
/// with `--raw`, the config blob with `--config --raw` too.
fn skopeo_raw(host: &str, reference: &str, config: bool) -> String {
    let target = format!("docker://{host}/{reference}");
    let mut args = vec!["inspect", "--tls-verify=false"];
    if config {
        args.push("--config");
    }
    args.extend_from_slice(&["--raw", &target]);
    cairn_testkit::skopeo(&args)
}

/// The mirror holds release `index` exactly as the source does: the index
/// bytes, and every child's manifest bytes, config and layers.
async fn assert_same_image(w: &World, mirror: &TestRegistry, index: &str) {
    let source = w.registry.host.as_str();
    let copied = skopeo_raw(&mirror.host, &format!("mirror/os@{index}"), false);
    assert_eq!(
        copied,
        skopeo_raw(source, &format!("acme/os@{index}"), false),
        "the mirror's index {index} differs from the source's"
    );
    assert_eq!(sha256_digest(copied.as_bytes()), index);
    let parsed: Value = serde_json::from_str(&copied).expect("the index is JSON");
    let children = parsed["manifests"].as_array().expect("an index");
    assert_eq!(children.len(), 2, "{parsed}");
    let target = mirror.store("mirror/os");
    for child in children {
        let digest = child["digest"].as_str().expect("a child digest");
        let raw = skopeo_raw(&mirror.host, &format!("mirror/os@{digest}"), false);
        assert_eq!(sha256_digest(raw.as_bytes()), digest);
        assert_eq!(
            raw,
            skopeo_raw(source, &format!("acme/os@{digest}"), false),
            "child {digest}"
        );
        let manifest: Value = serde_json::from_str(&raw).expect("a manifest");
        let config = skopeo_raw(&mirror.host, &format!("mirror/os@{digest}"), true);
        assert_eq!(
            Some(sha256_digest(config.as_bytes()).as_str()),
            manifest["config"]["digest"].as_str(),
            "the config of {digest} in the mirror"
        );
        let layers = manifest["layers"].as_array().expect("layers");
        assert!(!layers.is_empty(), "{manifest}");
        for layer in layers {
            let layer = layer["digest"].as_str().expect("a layer digest");
            assert!(
                target.blob_exists(layer).await.expect("HEAD a layer"),
                "layer {layer} of {digest} is not in the mirror"
            );
        }
    }
}

/// Where `tag` points in `store`, if anywhere.
async fn tag_digest(store: &Store, tag: &str) -> Option<String> {
    store
        .resolve(tag)
        .await
        .unwrap_or_else(|e| panic!("HEAD {tag} in {}: {e}", store.describe()))
        .map(|head| head.digest)
}

/// Waves kept in a mirror on another registry: the first run copies the
/// release and starts the waves there, the source gets no write; a run
/// with nothing due writes to neither registry; the next release is copied,
/// with its cosign signature, and the waves move to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_in_a_mirror_on_another_registry_point_at_identical_copies() {
    let w = world().await;
    let mirror = TestRegistry::start(Auth::None).await;
    let source = w.registry.store("acme/os");
    let target = mirror.store("mirror/os");
    let to = format!("{}/mirror/os", mirror.host);
    let to_mirror = [
        "--insecure-registry",
        mirror.host.as_str(),
        "--to",
        to.as_str(),
    ];
    let promoted = |now: jiff::Timestamp| {
        let out = w.promote(now, &to_mirror);
        assert!(
            out.status.success(),
            "promote --to failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("--json prints JSON")
    };

    let (first, _) = write_release(&source, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    w.publish();
    let start = jiff::Timestamp::now();

    let source_writes = w.registry.write_requests();
    let plan = promoted(start);
    for wave in WAVES {
        assert_eq!(
            action(&plan, wave),
            ("start".into(), Some("44.1".into())),
            "{plan}"
        );
        assert_eq!(
            tag_digest(&target, wave).await,
            Some(first.clone()),
            "{wave}"
        );
        assert_eq!(
            tag_digest(&source, wave).await,
            None,
            "{wave} in the source"
        );
    }
    assert!(tag_digest(&target, STATE_TAG).await.is_some());
    assert_eq!(tag_digest(&source, STATE_TAG).await, None);
    assert_eq!(
        w.registry.write_requests(),
        source_writes,
        "promote --to wrote to the source"
    );
    assert_eq!(
        sha256_digest(skopeo_raw(&mirror.host, "mirror/os:stable-early", false).as_bytes()),
        first
    );
    assert_same_image(&w, &mirror, &first).await;

    // Nothing due: neither registry is written to.
    let writes = (w.registry.write_requests(), mirror.write_requests());
    let plan = promoted(start);
    for wave in WAVES {
        assert_eq!(action(&plan, wave).0, "stay", "{plan}");
    }
    assert_eq!(plan["requests"]["writes"], 0, "{plan}");
    assert!(plan.get("copied").is_none(), "nothing to copy: {plan}");
    assert_eq!(
        (w.registry.write_requests(), mirror.write_requests()),
        writes,
        "a run with nothing due wrote"
    );

    // The next release, signed with cosign after it was published.
    let (second, _) = write_release(&source, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    w.publish();
    let signature = cairn_testkit::write_cosign_signature(&source, &second, "release-team").await;
    let source_writes = w.registry.write_requests();
    // An hour on: a new release is offered from when it is published.
    let plan = promoted(start + jiff::SignedDuration::from_hours(1));
    for wave in WAVES {
        assert_eq!(
            action(&plan, wave),
            ("move".into(), Some("44.2".into())),
            "{plan}"
        );
        assert_eq!(
            tag_digest(&target, wave).await,
            Some(second.clone()),
            "{wave}"
        );
        assert_eq!(
            tag_digest(&source, wave).await,
            None,
            "{wave} in the source"
        );
    }
    assert_eq!(w.registry.write_requests(), source_writes);
    // Another registry: every blob is sent (no mount across hosts), the
    // index and its children are put, and the one signature copied.
    let copied = &plan["copied"];
    assert_eq!(copied["blobs_mounted"], 0, "{plan}");
    assert!(copied["blobs_uploaded"].as_u64() > Some(0), "{plan}");
    assert!(copied["manifests_put"].as_u64() >= Some(3), "{plan}");
    assert_eq!(copied["signatures_copied"], 1, "{plan}");
    assert_eq!(
        sha256_digest(skopeo_raw(&mirror.host, "mirror/os:stable-late", false).as_bytes()),
        second
    );
    assert_same_image(&w, &mirror, &second).await;
    let tag = signature_tag(&second).expect("a sha256 digest");
    assert_eq!(tag_digest(&target, &tag).await, Some(signature.clone()));
    let copied = skopeo_raw(&mirror.host, &format!("mirror/os:{tag}"), false);
    assert_eq!(sha256_digest(copied.as_bytes()), signature);
    // The first release was never signed, and got no signature in the mirror.
    let unsigned = signature_tag(&first).expect("a sha256 digest");
    assert_eq!(tag_digest(&target, &unsigned).await, None);
}
