//! Malformed manifests and indexes, from a registry or an `oci:` layout, fail
//! with an error that names where they came from and the field at fault, and
//! never make Cairn fetch what a bad descriptor points at.

use cairn_oci::digest::sha256_digest;
use cairn_oci::document::{self, DOCUMENT_MEDIA_TYPE, EMPTY_CONFIG};
use cairn_oci::layout::Layout;
use cairn_oci::{ClientOptions, Location, RegistryClient, Repository, Store};
use cairn_testkit::HostileServer;
use cairn_testkit::hostile::Reply;
use std::time::Duration;

const OCI_MANIFEST: &str = cairn_oci::client::OCI_MANIFEST;

fn document_bytes() -> Vec<u8> {
    include_bytes!("../../../docs/examples/stable.json").to_vec()
}

/// A document manifest whose one layer is `layer` (JSON text).
fn document_manifest(layer: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{DOCUMENT_MEDIA_TYPE}","config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{}","size":2}},"layers":[{layer}]}}"#,
        sha256_digest(b"{}")
    )
    .into_bytes()
}

/// A registry serving `manifest` as `acme/os:cairn-graph-stable`, the
/// document blob, and `signature` (when given) under the manifest's `.sig` tag.
async fn registry(manifest: Vec<u8>, signature: Option<Vec<u8>>) -> (HostileServer, Store) {
    let document = document_bytes();
    let document_path = format!("/v2/acme/os/blobs/{}", sha256_digest(&document));
    let signature_path = format!(
        "/v2/acme/os/manifests/{}",
        cairn_oci::signing::signature_tag(&sha256_digest(&manifest))
    );
    let server = HostileServer::start(move |request, _| {
        let path = request.target.as_str();
        let manifest_reply =
            |bytes: &Vec<u8>| Reply::with_header(200, "content-type", OCI_MANIFEST, bytes.clone());
        if path == "/v2/acme/os/manifests/cairn-graph-stable" {
            manifest_reply(&manifest)
        } else if path == document_path {
            Reply::full(200, document.clone())
        } else if let Some(signature) = signature.as_ref().filter(|_| path == signature_path) {
            manifest_reply(signature)
        } else {
            Reply::full(404, "")
        }
    })
    .await;
    let client = RegistryClient::new(ClientOptions {
        insecure_registries: vec![server.host.clone()],
        timeout: Duration::from_secs(10),
        retries: 0,
        ..ClientOptions::default()
    })
    .expect("client");
    let repository = Repository::parse(&format!("{}/acme/os", server.host)).expect("repository");
    (server, Store::registry(client, repository))
}

#[tokio::test]
async fn malformed_document_manifests_from_a_registry_name_the_field() {
    let digest = sha256_digest(&document_bytes());
    let cases = [
        (
            format!(r#"{{"digest":"{digest}","size":10}}"#),
            "layers[0]: missing field `mediaType`",
        ),
        (
            format!(r#"{{"mediaType":"{DOCUMENT_MEDIA_TYPE}","digest":"{digest}","size":-1}}"#),
            "layers[0].size: invalid value: integer `-1`",
        ),
        (
            format!(r#"{{"mediaType":"{DOCUMENT_MEDIA_TYPE}","digest":"{digest}","size":1e40}}"#),
            "layers[0].size: invalid type: floating point",
        ),
        (
            format!(
                r#"{{"mediaType":"{DOCUMENT_MEDIA_TYPE}","digest":"{digest}","size":9007199254740993}}"#
            ),
            "layers[0].size: 9007199254740993 bytes, more than",
        ),
        (
            format!(r#"{{"mediaType":"{DOCUMENT_MEDIA_TYPE}","digest":42,"size":10}}"#),
            "layers[0].digest: invalid type: integer `42`",
        ),
        (
            format!(r#"{{"mediaType":["{DOCUMENT_MEDIA_TYPE}"],"digest":"{digest}","size":10}}"#),
            "layers[0].mediaType: invalid type: sequence",
        ),
    ];
    for (layer, expected) in cases {
        let (server, store) = registry(document_manifest(&layer), None).await;
        let source = format!("manifest of {}/acme/os:cairn-graph-stable: ", server.host);
        let err = document::fetch(&store, "cairn-graph-stable")
            .await
            .expect_err(expected);
        let message = err.to_string();
        assert_eq!(err.kind(), "invalid", "{message}");
        assert!(
            message.starts_with(&source) && message.contains(expected),
            "{message}\n  wanted: {source}…{expected}"
        );
        assert_eq!(server.blob_requests(), 0, "{expected}: nothing fetched");
    }
}

/// A signature is optional data beside the document: a malformed one counts
/// as absent, so a policy that requires a signature refuses the document as
/// unsigned (saying what was skipped), and one that allows unsigned
/// documents still reads it.
#[tokio::test]
async fn a_malformed_signature_counts_as_none_names_the_field_and_fetches_no_payload() {
    let document = document_bytes();
    let manifest = document_manifest(&format!(
        r#"{{"mediaType":"{DOCUMENT_MEDIA_TYPE}","digest":"{}","size":{}}}"#,
        sha256_digest(&document),
        document.len()
    ));
    let huge_payload = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{}","size":2}},"layers":[{{"mediaType":"{}","digest":"{}","size":18446744073709551615,"annotations":{{"{}":"c2ln"}}}}]}}"#,
        sha256_digest(b"{}"),
        cairn_oci::signing::SIMPLE_SIGNING,
        sha256_digest(b"payload"),
        cairn_oci::signing::SIGNATURE_ANNOTATION,
    );
    let no_config = r#"{"schemaVersion":2,"layers":[]}"#.to_string();
    let missing_payload = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{}","size":2}},"layers":[{{"mediaType":"{}","digest":"{}","size":7,"annotations":{{"{}":"c2ln"}}}}]}}"#,
        sha256_digest(b"{}"),
        cairn_oci::signing::SIMPLE_SIGNING,
        sha256_digest(b"payload"),
        cairn_oci::signing::SIGNATURE_ANNOTATION,
    );
    for (signature, expected, blobs_fetched) in [
        (
            huge_payload,
            "layers[0].size: 18446744073709551615 bytes, more than",
            1,
        ),
        (no_config, "missing field `config`", 1),
        // The payload it points at is not in the registry: asked for, then skipped.
        (missing_payload, "layers[0]: ", 2),
    ] {
        let (server, store) = registry(manifest.clone(), Some(signature.into_bytes())).await;
        let fetched = document::fetch(&store, "cairn-graph-stable")
            .await
            .expect("a malformed signature does not stop the fetch");
        assert!(fetched.signatures.is_empty(), "{expected}");
        assert_eq!(
            server.blob_requests(),
            blobs_fetched,
            "{expected}: blobs fetched"
        );
        let key = cairn_oci::signing::SigningKey::generate().verifying_key();
        let signers = cairn_oci::trust::RoleKeys::any_of(cairn_oci::trust::Role::Graph, &[key]);
        let now = fetched.document.expires - jiff::SignedDuration::from_hours(1);
        let policy = |allow_unsigned| document::TrustPolicy {
            signers: Some(&signers),
            allow_unsigned,
            now,
            last_seen: None,
            stream: None,
        };
        let refused = fetched
            .verify("the source", &policy(false))
            .expect_err("a signature is required");
        let message = refused.to_string();
        assert_eq!(refused.kind(), "unsigned", "{message}");
        assert!(
            message.contains(&format!("signature manifest {}/acme/os:", server.host))
                && message.contains(expected),
            "{message}\n  wanted: {expected}"
        );
        fetched
            .verify("the source", &policy(true))
            .expect("unsigned documents are allowed");
    }
}

#[tokio::test]
async fn a_malformed_layout_index_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = Layout::open_or_create(dir.path()).expect("layout");
    let digest = layout.put_blob(b"{}").expect("blob");
    let index = dir.path().join("index.json");
    let location = Location::parse(&format!("oci:{}:cairn-graph-stable", dir.path().display()))
        .expect("location");
    let client = RegistryClient::new(ClientOptions::default()).expect("client");
    let entry = |fields: &str| {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{{fields},"annotations":{{"org.opencontainers.image.ref.name":"cairn-graph-stable"}}}}]}}"#
        )
    };
    let cases = [
        (
            entry(&format!(r#""digest":"{digest}","size":2"#)),
            "manifests[0]: missing field `mediaType`",
        ),
        (
            entry(&format!(
                r#""mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":"2""#
            )),
            "manifests[0].size: invalid type: string \"2\"",
        ),
        (
            entry(&format!(
                r#""mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":-2"#
            )),
            "manifests[0].size: invalid value: integer `-2`",
        ),
        (
            r#"{"schemaVersion":2,"manifests":{}}"#.to_string(),
            "manifests: invalid type: map",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&index, &text).expect("write index");
        let err = document::fetch_location(&location, &client)
            .await
            .expect_err(expected);
        let message = err.to_string();
        assert_eq!(err.kind(), "invalid", "{message}");
        assert!(
            message.starts_with(&format!("{}: ", index.display())) && message.contains(expected),
            "{message}\n  wanted: {expected}"
        );
        // Writers refuse to rewrite an index they cannot read (and so lose no entry).
        let err = layout
            .put_manifest(b"{}", OCI_MANIFEST, Some("other"))
            .expect_err("unreadable index");
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(std::fs::read_to_string(&index).expect("index"), text);
    }
    std::fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":1}"#,
    )
    .expect("write");
    let err = Layout::open(dir.path()).expect_err("bad marker");
    assert!(
        err.to_string()
            .contains("imageLayoutVersion: invalid type: integer `1`"),
        "{err}"
    );
}
