//! Documents as plain files and https-style URLs, signed like `cosign sign-blob`.

mod common;
use common::cairn;

use std::process::Command;

fn example_document(dir: &std::path::Path) -> String {
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/stable.json");
    let path = dir.join("stable.json");
    std::fs::copy(&source, &path).expect("copy");
    path.display().to_string()
}

#[test]
fn signed_files_verify_and_tampering_is_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    let doc = example_document(dir.path());
    let prefix = dir.path().join("team").display().to_string();
    assert!(
        cairn(&["document", "keygen", "--output", &prefix])
            .status
            .success()
    );
    let key = format!("{prefix}.key");
    let public = format!("{prefix}.pub");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("key").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the private key is private");
    assert!(
        cairn(&["document", "sign", &doc, "--key", &key])
            .status
            .success()
    );
    let ok = cairn(&[
        "document",
        "verify",
        &doc,
        "--key",
        &public,
        "--now",
        "2025-11-11T00:00:00Z",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Expired at the real clock.
    let late = cairn(&[
        "document",
        "verify",
        &doc,
        "--key",
        &public,
        "--now",
        "2025-12-01T00:00:00Z",
    ]);
    assert!(String::from_utf8_lossy(&late.stderr).contains("expired at 2025-11-24T16:00:00Z"));
    // One changed byte.
    let text = std::fs::read_to_string(&doc)
        .expect("read")
        .replace("breaks NFS", "breaks NFZ");
    std::fs::write(&doc, text).expect("write");
    let bad = cairn(&[
        "document",
        "verify",
        &doc,
        "--key",
        &public,
        "--now",
        "2025-11-11T00:00:00Z",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no signature verifies"));
    // An unsigned file is refused once a key is required.
    std::fs::remove_file(format!("{doc}.sig")).expect("remove");
    let unsigned = cairn(&[
        "graph",
        "show",
        "--document",
        &doc,
        "--key",
        &public,
        "--now",
        "2025-11-11T00:00:00Z",
    ]);
    assert!(
        String::from_utf8_lossy(&unsigned.stderr)
            .contains("no signature, and unsigned documents are not accepted")
    );
    // Keys are never overwritten.
    assert!(
        !cairn(&["document", "keygen", "--output", &prefix])
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_read_from_urls_with_their_signature() {
    let dir = tempfile::tempdir().expect("temp dir");
    let doc = example_document(dir.path());
    let prefix = dir.path().join("k").display().to_string();
    assert!(
        cairn(&["document", "keygen", "--output", &prefix])
            .status
            .success()
    );
    assert!(
        cairn(&["document", "sign", &doc, "--key", &format!("{prefix}.key")])
            .status
            .success()
    );
    let body = std::fs::read(&doc).expect("doc");
    let signature = std::fs::read(format!("{doc}.sig")).expect("sig");
    let app = axum::Router::new()
        .route(
            "/graph/stable.json",
            axum::routing::get(move || async move { body.clone() }),
        )
        .route(
            "/graph/stable.json.sig",
            axum::routing::get(move || async move { signature.clone() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{host}/graph/stable.json");
    let public = format!("{prefix}.pub");
    let args: Vec<String> = [
        "document",
        "verify",
        &url,
        "--key",
        &public,
        "--insecure-registry",
        &host,
        "--now",
        "2025-11-11T00:00:00Z",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(&args)
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without being listed as insecure, plain http is refused.
    let refused = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["document", "verify", "--allow-unsigned", &url])
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only https"));
}
