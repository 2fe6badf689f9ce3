//! Every body Cairn reads from the network is bounded, and every fetch shares
//! the registry client's retries: a scripted server sends oversized bodies,
//! gigabyte `Content-Length`s, endless replies and passing failures.

use cairn_oci::digest::sha256_digest;
use cairn_oci::http::limits;
use cairn_oci::{ClientOptions, OciError, RegistryClient, Repository, Store};
use cairn_testkit::HostileServer;
use cairn_testkit::hostile::{HUGE_LENGTH, Reply};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

fn client_for(server: &HostileServer, retries: u32) -> (RegistryClient, Repository) {
    let client = RegistryClient::new(ClientOptions {
        insecure_registries: vec![server.host.clone()],
        timeout: TIMEOUT,
        retries,
        backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    })
    .expect("client");
    let repository = Repository::parse(&format!("{}/acme/os", server.host)).expect("repo");
    (client, repository)
}

/// The two ways a peer sends too much: a body that keeps coming, and a length
/// announced far past the limit (with only a little sent).
fn oversized(status: u16) -> [Reply; 2] {
    [
        Reply::Endless { status },
        Reply::Announced {
            status,
            length: HUGE_LENGTH,
            prefix: vec![b'x'; 8 * 1024],
        },
    ]
}

#[tokio::test]
async fn error_bodies_are_read_only_to_their_limit() {
    for reply in oversized(400) {
        let server = HostileServer::start(move |_, _| reply.clone()).await;
        let (client, repo) = client_for(&server, 0);
        let started = Instant::now();
        let err = client.list_tags(&repo).await.expect_err("400");
        // Reading the whole body would have lasted until the timeout, and
        // then given an empty message.
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
        let OciError::Status { status, body, .. } = &err else {
            panic!("expected a status error, got {err}");
        };
        assert_eq!(*status, 400);
        assert_eq!(
            body.len(),
            300,
            "the message keeps the first 300 characters"
        );
        assert!(body.bytes().all(|b| b == b'x'), "{body}");
    }
}

/// A registry that sends every `/v2/` request without a token to `/token`,
/// and answers a tag list to those with one.
fn token_script(
    token_reply: Reply,
) -> impl Fn(&cairn_testkit::hostile::SeenRequest, usize) -> Reply {
    move |request, _| {
        if request.target.starts_with("/token") {
            return token_reply.clone();
        }
        if request.header("authorization") == Some("Bearer small") {
            return Reply::full(200, r#"{"tags":["a"]}"#);
        }
        let host = request.header("host").unwrap_or_default();
        Reply::with_header(
            401,
            "www-authenticate",
            &format!("Bearer realm=\"http://{host}/token\",service=\"test\""),
            "",
        )
    }
}

#[tokio::test]
async fn token_replies_over_their_limit_are_refused() {
    // A token reply of the normal kind works through the same server.
    let server = HostileServer::start(token_script(Reply::full(200, r#"{"token":"small"}"#))).await;
    let (client, repo) = client_for(&server, 0);
    assert_eq!(client.list_tags(&repo).await.expect("token"), vec!["a"]);

    let padded = format!(
        r#"{{"token":"small","pad":"{}"}}"#,
        "x".repeat(limits::TOKEN_REPLY)
    );
    for reply in oversized(200).into_iter().chain([Reply::full(200, padded)]) {
        let server = HostileServer::start(token_script(reply)).await;
        let (client, repo) = client_for(&server, 0);
        let err = client.list_tags(&repo).await.expect_err("token too large");
        assert_eq!(err.kind(), "too_large", "{err}");
        assert!(err.to_string().contains("/token"), "{err}");
        let token_requests = server
            .requests()
            .iter()
            .filter(|r| r.target.starts_with("/token"))
            .count();
        assert_eq!(
            token_requests, 1,
            "a reply too large is not asked for again"
        );
    }
}

const BLOB: &str = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

#[tokio::test]
async fn manifests_blobs_and_urls_are_read_only_to_their_limit() {
    for reply in oversized(200) {
        let server = HostileServer::start(move |_, _| reply.clone()).await;
        let (client, repo) = client_for(&server, 3);
        let started = Instant::now();
        let manifest = client
            .get_manifest(&repo, "latest")
            .await
            .expect_err("manifest");
        let blob = client.get_blob(&repo, BLOB, 1024).await.expect_err("blob");
        let url = client
            .get_url(&server.url("/releases.json"), 1024)
            .await
            .expect_err("url");
        let json = client
            .get_json_url(&server.url("/v1/graph"), 1024)
            .await
            .expect_err("json");
        for err in [&manifest, &blob, &url, &json] {
            assert_eq!(err.kind(), "too_large", "{err}");
        }
        assert!(
            manifest.to_string().contains(&limits::MANIFEST.to_string()),
            "{manifest}"
        );
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
        assert_eq!(server.requests().len(), 4, "too large is not retried");
    }
    // One byte past the limit, honestly announced, is refused; at the limit it is read.
    let server = HostileServer::start(|request, _| {
        let size = if request.target == "/over" {
            1025
        } else {
            1024
        };
        Reply::full(200, vec![b'x'; size])
    })
    .await;
    let (client, _) = client_for(&server, 0);
    let fitting = client
        .get_url(&server.url("/fits"), 1024)
        .await
        .expect("fits");
    assert_eq!(fitting.map(|b| b.len()), Some(1024));
    let err = client
        .get_url(&server.url("/over"), 1024)
        .await
        .expect_err("over");
    assert_eq!(err.kind(), "too_large", "{err}");
}

#[tokio::test]
async fn a_malformed_digest_never_reaches_the_registry() {
    let server = HostileServer::start(|_, _| Reply::full(404, "")).await;
    let (client, repo) = client_for(&server, 0);
    let hex = &BLOB["sha256:".len()..];
    let malformed = [
        "sha256:../../../v2/other/blobs/x".to_string(),
        format!("sha256:{}", hex.to_uppercase()),
        format!("sha256:{}", &hex[1..]),
        format!("sha256:{hex}/../../x"),
        format!("sha256:{hex}?x=1"),
        "--reboot".to_string(),
        hex.to_string(),
        String::new(),
    ];
    for digest in &malformed {
        let err = client
            .get_blob(&repo, digest, 1024)
            .await
            .expect_err(digest);
        assert_eq!(err.kind(), "invalid", "{digest}: {err}");
        let err = client.blob_exists(&repo, digest).await.expect_err(digest);
        assert_eq!(err.kind(), "invalid", "{digest}: {err}");
    }
    for reference in ["../x", "a/b", "latest?x", ""] {
        let err = client
            .get_manifest(&repo, reference)
            .await
            .expect_err(reference);
        assert_eq!(err.kind(), "invalid", "{reference}: {err}");
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    // The server was there all along: a valid digest reaches it.
    let err = client.get_blob(&repo, BLOB, 1024).await.expect_err("404");
    assert_eq!(err.kind(), "not_found", "{err}");
    assert_eq!(server.requests().len(), 1);
}

/// A registry holding one document whose signature manifest has `layers`
/// layers, all the same valid signature.
async fn signed_document_registry(layers: usize) -> HostileServer {
    let document = include_bytes!("../../../docs/examples/stable.json").to_vec();
    let document_digest = sha256_digest(&document);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": cairn_oci::client::OCI_MANIFEST,
        "artifactType": cairn_oci::document::DOCUMENT_MEDIA_TYPE,
        "config": {"mediaType": cairn_oci::document::EMPTY_CONFIG, "digest": sha256_digest(b"{}"), "size": 2},
        "layers": [{"mediaType": cairn_oci::document::DOCUMENT_MEDIA_TYPE, "digest": document_digest, "size": document.len()}],
    })
    .to_string()
    .into_bytes();
    let manifest_digest = sha256_digest(&manifest);
    let payload = cairn_oci::signing::simple_signing_payload("acme/os", &manifest_digest);
    let payload_digest = sha256_digest(&payload);
    let layer = serde_json::json!({
        "mediaType": cairn_oci::signing::SIMPLE_SIGNING,
        "digest": payload_digest,
        "size": payload.len(),
        "annotations": {cairn_oci::signing::SIGNATURE_ANNOTATION: "c2lnbmF0dXJl"},
    });
    let signature_manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": cairn_oci::client::OCI_MANIFEST,
        "config": {"mediaType": cairn_oci::document::EMPTY_CONFIG, "digest": sha256_digest(b"{}"), "size": 2},
        "layers": vec![layer; layers],
    })
    .to_string()
    .into_bytes();
    let signature_tag = cairn_oci::signing::signature_tag(&manifest_digest);
    HostileServer::start(move |request, _| {
        let path = request.target.as_str();
        let manifest_reply = |bytes: &Vec<u8>| {
            Reply::with_header(
                200,
                "content-type",
                cairn_oci::client::OCI_MANIFEST,
                bytes.clone(),
            )
        };
        if path == "/v2/acme/os/manifests/cairn-graph-stable" {
            manifest_reply(&manifest)
        } else if path == format!("/v2/acme/os/manifests/{signature_tag}") {
            manifest_reply(&signature_manifest)
        } else if path == format!("/v2/acme/os/blobs/{document_digest}") {
            Reply::full(200, document.clone())
        } else if path == format!("/v2/acme/os/blobs/{payload_digest}") {
            Reply::full(200, payload.clone())
        } else {
            Reply::full(404, "")
        }
    })
    .await
}

#[tokio::test]
async fn signature_manifests_with_too_many_layers_are_not_read() {
    let most = limits::SIGNATURE_LAYERS;
    let server = signed_document_registry(most).await;
    let (client, repo) = client_for(&server, 0);
    let fetched = cairn_oci::document::fetch(&Store::registry(client, repo), "cairn-graph-stable")
        .await
        .expect("at the limit");
    assert_eq!(fetched.signatures.len(), most);
    assert!(fetched.unusable_signatures.is_empty());
    assert_eq!(server.blob_requests(), 1 + most);

    // One layer more and none is read: the document counts as unsigned, and
    // says why.
    let server = signed_document_registry(most + 1).await;
    let (client, repo) = client_for(&server, 0);
    let fetched = cairn_oci::document::fetch(&Store::registry(client, repo), "cairn-graph-stable")
        .await
        .expect("the document itself is read");
    assert!(fetched.signatures.is_empty());
    assert!(
        fetched
            .unusable_signatures
            .iter()
            .any(|why| why.contains(&format!("{} layers; at most {most}", most + 1))),
        "{:?}",
        fetched.unusable_signatures
    );
    assert_eq!(
        server.blob_requests(),
        1,
        "only the document itself was fetched"
    );
}

#[tokio::test]
async fn plain_urls_are_retried_like_registry_calls() {
    for (name, first) in [
        ("503", Reply::full(503, "busy")),
        (
            "429",
            Reply::with_header(429, "retry-after", "0", "slow down"),
        ),
        ("hang-up", Reply::Hangup),
    ] {
        let server = HostileServer::start(move |_, n| {
            if n < 2 {
                first.clone()
            } else {
                Reply::full(200, r#"{"nodes":[]}"#)
            }
        })
        .await;
        let (client, _) = client_for(&server, 3);
        let body = client
            .get_url(&server.url("/releases.json"), 1024)
            .await
            .expect(name)
            .expect("found");
        assert_eq!(&body[..], br#"{"nodes":[]}"#, "{name}");
        assert_eq!(
            server.requests().len(),
            3,
            "{name}: two failures, then the answer"
        );
    }
    // Cincinnati's JSON and conditional GETs take the same path.
    let server = HostileServer::start(|_, n| {
        if n % 3 < 2 {
            Reply::full(503, "")
        } else {
            Reply::full(200, "{}")
        }
    })
    .await;
    let (client, _) = client_for(&server, 3);
    let json = client
        .get_json_url(&server.url("/v1/graph"), 1024)
        .await
        .expect("json");
    assert_eq!(json.as_deref(), Some(&b"{}"[..]));
    let conditional = client
        .get_url_conditional(&server.url("/updates.json"), 1024, &Default::default())
        .await
        .expect("conditional");
    assert!(matches!(
        conditional,
        cairn_oci::client::Conditional::Fetched { .. }
    ));
    assert_eq!(server.requests().len(), 6);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = HostileServer::start(|request, _| {
        if request.target == "/missing" {
            Reply::full(404, "")
        } else {
            Reply::full(400, "bad")
        }
    })
    .await;
    let (client, _) = client_for(&server, 3);
    assert!(
        client
            .get_url(&server.url("/missing"), 1024)
            .await
            .expect("404")
            .is_none()
    );
    assert_eq!(server.requests().len(), 1, "a 404 is an answer");
    let err = client
        .get_url(&server.url("/bad"), 1024)
        .await
        .expect_err("400");
    assert_eq!(err.kind(), "status", "{err}");
    assert_eq!(server.requests().len(), 2, "a 400 is not retried either");
}

#[tokio::test]
async fn persistent_failures_give_up_after_the_retries() {
    let server = HostileServer::start(|_, _| Reply::full(502, "gateway")).await;
    let (client, _) = client_for(&server, 2);
    let err = client
        .get_url(&server.url("/releases.json"), 1024)
        .await
        .expect_err("502");
    assert!(
        err.to_string().contains("HTTP 502") && err.to_string().contains("gateway"),
        "{err}"
    );
    assert_eq!(server.requests().len(), 3, "one try and two retries");
}

#[tokio::test]
async fn writes_are_not_retried() {
    // HEAD (does the blob exist?) is a read and is retried; the POST that
    // starts an upload is a write and is not: a lost answer may hide an
    // upload that did start.
    let server = HostileServer::start(|request, _| {
        if request.method == "HEAD" {
            Reply::full(404, "")
        } else {
            Reply::full(503, "busy")
        }
    })
    .await;
    let (client, repository) = client_for(&server, 3);
    let err = client
        .push_blob(&repository, bytes::Bytes::from_static(b"layer"))
        .await
        .expect_err("503");
    assert!(err.to_string().contains("503"), "{err}");
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["HEAD", "POST"], "the POST was sent once");
}
