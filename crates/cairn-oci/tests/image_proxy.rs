//! Reading registries through skopeo's image proxy (`Store::Proxy`), against
//! Debian's docker-registry and the real skopeo, compared with the built-in
//! client.

use cairn_oci::proxy::{ProxyConfig, ProxyReader, ProxyUnavailable};
use std::path::PathBuf;

#[tokio::test]
async fn a_missing_skopeo_is_unavailable_and_named() {
    let missing = PathBuf::from("/nonexistent/cairn-test/skopeo");
    let config = ProxyConfig {
        skopeo: missing.clone(),
        ..ProxyConfig::default()
    };
    let error = ProxyReader::start(config)
        .await
        .expect_err("no skopeo there");
    assert!(
        matches!(&error, ProxyUnavailable::NotFound { skopeo, .. } if *skopeo == missing),
        "{error:?}"
    );
    assert_eq!(error.kind(), "skopeo_not_found");
    assert!(
        error.to_string().contains("/nonexistent/cairn-test/skopeo"),
        "{error}"
    );

    let not_on_path = ProxyConfig {
        skopeo: PathBuf::from("cairn-test-no-such-skopeo"),
        ..ProxyConfig::default()
    };
    let error = ProxyReader::start(not_on_path)
        .await
        .expect_err("not on PATH");
    assert_eq!(error.kind(), "skopeo_not_found");
    assert!(
        error.to_string().contains("cairn-test-no-such-skopeo"),
        "{error}"
    );
    assert!(error.to_string().contains("PATH"), "{error}");
}
