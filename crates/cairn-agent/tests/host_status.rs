//! Host status parsing on real bootc output and rpm-ostree's documented shape.

use cairn_agent::host::{SignatureMode, Tool, bootc, rpm_ostree};

fn testdata(path: &str) -> Vec<u8> {
    let full = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn bootc_staged_download_only() {
    for file in [
        "bootc/status-staged-download-only.json",
        "bootc/status-staged-download-only.pretty.json",
    ] {
        let status = bootc::parse_status(&testdata(file)).expect("parses");
        assert_eq!(status.tool, Tool::Bootc);
        let booted = status.booted.expect("booted");
        assert_eq!(
            booted.digest.as_deref(),
            Some("sha256:736b359467c9437c1ac915acaae952aad854e07eb4a16a94999a48af08c83c34")
        );
        assert_eq!(booted.version.as_deref(), Some("nightly"));
        let staged = status.staged.expect("staged");
        assert!(staged.download_only);
        assert_eq!(
            staged.digest.as_deref(),
            Some("sha256:16dc2b6256b4ff0d2ec18d2dbfb06d117904010c8cf9732cdb022818cf7a7566")
        );
        assert!(status.rollback.is_none());
        assert_eq!(
            status.followed.as_deref(),
            Some("quay.io/example/someimage:latest")
        );
        assert_eq!(status.signature, SignatureMode::Unverified);
    }
}

#[test]
fn bootc_booted_with_a_cached_update() {
    let status =
        bootc::parse_status(&testdata("bootc/status-booted-cached-update.json")).expect("parses");
    assert_eq!(
        status.followed.as_deref(),
        Some("quay.io/centos-bootc/centos-bootc:stream9")
    );
    assert!(status.staged.is_none());
    assert!(status.booted.and_then(|b| b.digest).is_some());
}

#[test]
fn bootc_parsing_is_lenient_but_not_blind() {
    let mut value: serde_json::Value =
        serde_json::from_slice(&testdata("bootc/status-staged-download-only.json")).expect("json");
    value["status"]["someFutureField"] = serde_json::json!({"x": 1});
    value["spec"]["image"]["signature"] = serde_json::json!("containerPolicy");
    let status =
        bootc::parse_status(value.to_string().as_bytes()).expect("unknown fields are fine");
    assert_eq!(status.signature, SignatureMode::ContainerPolicy);
    value["spec"]["image"]["signature"] = serde_json::json!({"ostreeRemote": "fedora"});
    let status = bootc::parse_status(value.to_string().as_bytes()).expect("parses");
    assert_eq!(
        status.signature,
        SignatureMode::OstreeRemote("fedora".into())
    );
    assert!(
        bootc::parse_status(b"{\"apiVersion\": \"v1\"}").is_err(),
        "not bootc"
    );
    assert!(bootc::parse_status(b"error: not root").is_err());
}

#[test]
fn rpm_ostree_container_host() {
    let status =
        rpm_ostree::parse_status(&testdata("rpm-ostree/status-container.json")).expect("parses");
    assert_eq!(status.tool, Tool::RpmOstree);
    let booted = status.booted.expect("booted");
    assert_eq!(
        booted.digest.as_deref(),
        Some("sha256:ca99893c80a7b84dd84d4143bd27538207c2f38ab6647a58d9c8caa251f9a087")
    );
    assert_eq!(booted.version.as_deref(), Some("43.20251024.3.0"));
    assert_eq!(status.signature, SignatureMode::ContainerPolicy);
    assert_eq!(
        status.followed.as_deref(),
        Some("quay.io/fedora/fedora-coreos:stable")
    );
    assert_eq!(status.update_driver.as_deref(), Some("Zincati"));
}

#[test]
fn rpm_ostree_staged_and_rollback() {
    let status =
        rpm_ostree::parse_status(&testdata("rpm-ostree/status-staged.json")).expect("parses");
    let staged = status.staged.expect("staged");
    assert!(staged.download_only, "finalization-locked");
    assert_eq!(staged.version.as_deref(), Some("43.20251110.3.1"));
    assert_eq!(
        status.rollback.and_then(|r| r.version).as_deref(),
        Some("43.20251012.3.0")
    );
}

#[test]
fn rpm_ostree_references() {
    let cases = [
        (
            "ostree-image-signed:docker://quay.io/x/y:stable",
            SignatureMode::ContainerPolicy,
            "quay.io/x/y:stable",
        ),
        (
            "ostree-unverified-registry:ghcr.io/u/c:stable-nvidia",
            SignatureMode::Unverified,
            "ghcr.io/u/c:stable-nvidia",
        ),
        (
            "ostree-remote-image:fedora:docker://quay.io/x/y:stable",
            SignatureMode::OstreeRemote("fedora".into()),
            "quay.io/x/y:stable",
        ),
    ];
    for (reference, mode, image) in cases {
        assert_eq!(
            rpm_ostree::split_reference(reference),
            (mode, image.to_string()),
            "{reference}"
        );
    }
}

/// A host booted from an ostree commit (origin `fedora:fedora/x86_64/coreos/stable`),
/// in the shape rpm-ostree prints: the graph's id is the commit, or with
/// local layering the base commit it was built on.
#[test]
fn rpm_ostree_commit_host() {
    let status =
        rpm_ostree::parse_status(&testdata("rpm-ostree/status-commit.json")).expect("parses");
    assert_eq!(status.tool, Tool::RpmOstree);
    assert_eq!(
        status.ostree_origin.as_deref(),
        Some("fedora:fedora/x86_64/coreos/stable")
    );
    assert_eq!(status.followed, None, "no image");
    let booted = status.booted.expect("booted");
    assert_eq!(
        booted.digest.as_deref(),
        Some("5e7f9b1d3c2a4e6f8b0d1c3e5a7f9b2d4c6e8a0f1b3d5c7e9a2f4b6d8c0e1a3f"),
        "layered: the base commit"
    );
    assert_eq!(
        booted.checksum.as_deref(),
        Some("3b0d4c2b6e1f8a9d7c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c")
    );
    assert_eq!(booted.version.as_deref(), Some("44.20260621.3.1"));
    let staged = status.staged.expect("staged");
    assert!(staged.download_only);
    assert_eq!(
        staged.digest.as_deref(),
        Some("961fa74adb5ff62bef2b4ad1a20fd0b339aad25e9bbe914c7487e03aaa13f46c")
    );

    // A checksum that is not one is dropped, never handed back to a tool.
    let mut value: serde_json::Value =
        serde_json::from_slice(&testdata("rpm-ostree/status-commit.json")).expect("json");
    value["deployments"][0]["checksum"] = serde_json::json!("--reboot");
    let status = rpm_ostree::parse_status(value.to_string().as_bytes()).expect("parses");
    assert_eq!(status.staged.expect("staged").digest, None);
}
