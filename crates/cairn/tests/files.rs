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

/// `document sign` with two `--sign-key`s writes a line per key, and the
/// file meets a graph role of threshold 2 only with both lines.
#[test]
fn two_sign_keys_write_two_lines_that_meet_threshold_two() {
    use cairn_oci::trust::{Role, RoleKeys};
    let dir = tempfile::tempdir().expect("temp dir");
    let doc = example_document(dir.path());
    let mut publics = Vec::new();
    let mut private = Vec::new();
    for name in ["first", "second"] {
        let prefix = dir.path().join(name).display().to_string();
        let made = cairn(&["document", "keygen", "--output", &prefix]);
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        private.push(format!("{prefix}.key"));
        publics.push(std::path::PathBuf::from(format!("{prefix}.pub")));
    }
    let signed = cairn(&[
        "document",
        "sign",
        &doc,
        "--sign-key",
        &private[0],
        "--sign-key",
        &private[1],
    ]);
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let lines = std::fs::read_to_string(format!("{doc}.sig")).expect("signature file");
    assert_eq!(lines.lines().count(), 2, "{lines}");

    // The same key twice is refused rather than written as a second line.
    let twice = cairn(&[
        "document",
        "sign",
        &doc,
        "--sign-key",
        &private[0],
        "--sign-key",
        &private[0],
    ]);
    assert!(!twice.status.success());
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("the same key is given twice"),
        "{}",
        String::from_utf8_lossy(&twice.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(format!("{doc}.sig")).expect("signature file"),
        lines,
        "the file is left as it was"
    );

    let keys = cairn_oci::signing::VerifyingKey::from_files(&publics).expect("keys");
    let role = RoleKeys::new(Role::Graph, 0, &keys, 2);
    let bytes = bytes::Bytes::from(std::fs::read(&doc).expect("document"));
    let policy = cairn_oci::document::TrustPolicy {
        signers: Some(&role),
        allow_unsigned: false,
        now: "2025-11-11T00:00:00Z".parse().expect("time"),
        last_seen: None,
        stream: None,
    };
    cairn_oci::document::from_bytes(bytes.clone(), Some(lines.clone()), &doc)
        .expect("parses")
        .verify(&doc, &policy)
        .expect("both keys signed");
    let first_line = lines.lines().next().map(str::to_string);
    let err = cairn_oci::document::from_bytes(bytes, first_line, &doc)
        .expect("parses")
        .verify(&doc, &policy)
        .expect_err("one line is one key");
    assert!(
        err.to_string()
            .contains("1 of the graph role's keys signed, 2 must"),
        "{err}"
    );
    // The CLI trusts either key given with --key.
    let ok = cairn(&[
        "document",
        "verify",
        &doc,
        "--key",
        &publics[1].display().to_string(),
        "--now",
        "2025-11-11T00:00:00Z",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
