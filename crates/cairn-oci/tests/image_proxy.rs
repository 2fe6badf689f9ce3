//! Reading registries through skopeo's image proxy (`Store::Proxy`), against
//! Debian's docker-registry and the real skopeo, compared with the built-in
//! client.

use bytes::Bytes;
use cairn_graph::halts::TrippedBy;
use cairn_oci::document::{self, TrustPolicy};
use cairn_oci::proxy::{ProtocolVersion, ProxyAuth, ProxyConfig, ProxyReader, ProxyUnavailable};
use cairn_oci::signing::SigningKey;
use cairn_oci::trust::{Role, TrustedRoot};
use cairn_oci::{OciError, Store};
use cairn_oci::{halts, roots};
use cairn_testkit::registry::require_binary;
use cairn_testkit::roots::signed_root;
use cairn_testkit::{Auth, TestRegistry};
use jiff::Timestamp;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TAG: &str = "cairn-graph-stable";
const HALT_TAG: &str = "cairn-halts-stable";

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

/// A registries.conf (v2) for the proxy: `body` is its `[[registry]]` tables.
fn registries_conf(dir: &std::path::Path, body: &str) -> PathBuf {
    let path = dir.join("registries.conf");
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// A table that lets skopeo reach a test registry over plain HTTP.
fn insecure(host: &str) -> String {
    format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n")
}

/// A policy.json that accepts everything, beside `registries_conf`: newer
/// skopeo (protocol 0.2.6+) checks the policy on every open, and the tests
/// must not depend on the machine's own.
fn open_policy(registries_conf: &std::path::Path) -> PathBuf {
    let path = registries_conf.with_file_name("policy.json");
    std::fs::write(
        &path,
        r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

async fn reader(registries_conf: PathBuf) -> Arc<ProxyReader> {
    reader_with(registries_conf, ProxyConfig::default()).await
}

/// [`reader`], starting from `config` (for its `mirrors`).
async fn reader_with(registries_conf: PathBuf, config: ProxyConfig) -> Arc<ProxyReader> {
    require_binary("skopeo", "skopeo");
    let config = ProxyConfig {
        policy: Some(open_policy(&registries_conf)),
        registries_conf: Some(registries_conf),
        auth: ProxyAuth::Anonymous,
        timeout: Duration::from_secs(30),
        ..config
    };
    Arc::new(
        ProxyReader::start(config)
            .await
            .unwrap_or_else(|e| panic!("skopeo proxy: {e}")),
    )
}

async fn publish(store: &Store, key: &SigningKey) -> document::Published {
    let identity = store.describe();
    let options = document::PublishOptions {
        tag: TAG,
        identity: &identity,
        keys: std::slice::from_ref(key),
        root_version: 0,
        settle: Duration::from_millis(300),
        expected: None,
    };
    document::publish(store, cairn_testkit::example_document(24), &options)
        .await
        .unwrap_or_else(|e| panic!("publishing to {identity}: {e}"))
}

fn signature_pairs(fetched: &document::FetchedDocument) -> Vec<(Vec<u8>, String)> {
    fetched
        .signatures
        .iter()
        .map(|s| (s.message.to_vec(), s.signature.clone()))
        .collect()
}

#[tokio::test]
async fn a_signed_document_reads_the_same_through_skopeo_as_through_the_built_in_client() {
    let registry = TestRegistry::start(Auth::None).await;
    let direct = registry.store("acme/os");
    let key = SigningKey::generate();
    let published = publish(&direct, &key).await;
    let conf = registries_conf(registry.scratch(), &insecure(&registry.host));
    let reader = reader(conf).await;
    assert!(reader.protocol_version() >= ProtocolVersion(0, 2, 3));
    let proxied = Store::proxy(reader.clone(), registry.repository("acme/os"));
    assert_eq!(proxied.describe(), direct.describe());

    let before = registry.requests().len();
    let through_proxy = document::fetch(&proxied, TAG)
        .await
        .expect("through skopeo");
    assert!(
        registry.requests().len() > before,
        "skopeo read from the registry"
    );
    let through_client = document::fetch(&direct, TAG).await.expect("built-in");
    assert_eq!(through_proxy.bytes, through_client.bytes);
    assert_eq!(through_proxy.document, through_client.document);
    assert_eq!(through_proxy.document, published.document);
    assert_eq!(
        through_proxy.manifest_digest.as_deref(),
        Some(published.manifest_digest.as_str())
    );
    assert_eq!(
        through_proxy.manifest_digest,
        through_client.manifest_digest
    );
    assert_eq!(
        signature_pairs(&through_proxy),
        signature_pairs(&through_client)
    );
    assert_eq!(through_proxy.signatures.len(), 1);
    assert_eq!(
        through_proxy.unusable_signatures,
        through_client.unusable_signatures
    );
    let keys = [key.verifying_key()];
    let signers = document::configured_role(Role::Graph, &keys);
    let policy = TrustPolicy {
        signers: signers.as_ref(),
        allow_unsigned: false,
        now: Timestamp::now(),
        last_seen: None,
        stream: Some("stable"),
    };
    through_proxy
        .verify("test", &policy)
        .expect("verifies through skopeo");
    // Manifest, layer, signature manifest, signature layer: each a proxy call
    // at least, and the counter is what a proxy store reports.
    assert!(proxied.request_count() >= 4, "{}", proxied.request_count());
    assert_eq!(proxied.request_count(), reader.call_count());
    assert_eq!(proxied.write_count(), 0);

    // The same manifest resolves to the same digest both ways.
    let head = proxied.resolve(TAG).await.expect("resolve").expect("there");
    let direct_head = direct.resolve(TAG).await.expect("resolve").expect("there");
    assert_eq!(head.digest, direct_head.digest);
    assert_eq!(head.size, direct_head.size);

    // Writes are refused by name, before anything is sent.
    let writes = registry.write_requests();
    let refused = proxied
        .put_blob(Bytes::from_static(b"{}"))
        .await
        .expect_err("read-only");
    assert!(refused.to_string().contains("cannot write"), "{refused}");
    assert!(refused.to_string().contains("acme/os"), "{refused}");
    assert_eq!(registry.write_requests(), writes);
}

#[tokio::test]
async fn a_missing_tag_resolves_to_none_and_a_missing_blob_is_named() {
    let registry = TestRegistry::start(Auth::None).await;
    let direct = registry.store("acme/os");
    let published = publish(&direct, &SigningKey::generate()).await;
    let reader = reader(registries_conf(
        registry.scratch(),
        &insecure(&registry.host),
    ))
    .await;
    let proxied = Store::proxy(reader, registry.repository("acme/os"));

    assert_eq!(proxied.resolve("no-such-tag").await.expect("resolve"), None);
    let error = proxied
        .get_manifest("no-such-tag")
        .await
        .expect_err("missing");
    assert!(matches!(error, OciError::NotFound(_)), "{error:?}");
    assert!(error.to_string().contains("no-such-tag"), "{error}");

    // A blob is fetched through an image of its repository.
    proxied
        .get_manifest(&published.manifest_digest)
        .await
        .expect("by digest");
    let missing = format!("sha256:{}", "0".repeat(64));
    let error = proxied
        .get_blob_sized(&missing, 10, 1024)
        .await
        .expect_err("missing blob");
    assert!(matches!(error, OciError::NotFound(_)), "{error:?}");
    assert!(error.to_string().contains(&missing), "{error}");
    assert!(error.to_string().contains("acme/os"), "{error}");

    // A size that is not the blob's is refused, not used.
    let manifest = direct.get_manifest(TAG).await.expect("manifest");
    let parsed: serde_json::Value = serde_json::from_slice(&manifest.bytes).expect("json");
    let layer = parsed["layers"][0]["digest"]
        .as_str()
        .expect("layer digest");
    let size = parsed["layers"][0]["size"].as_u64().expect("layer size");
    let whole = proxied
        .get_blob_sized(layer, size, 1 << 20)
        .await
        .expect("the layer");
    assert_eq!(whole.len() as u64, size);
    let error = proxied
        .get_blob_sized(layer, size - 1, 1 << 20)
        .await
        .expect_err("short size");
    assert!(error.to_string().contains(layer), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("more than the {} bytes", size - 1)),
        "{error}"
    );
    let error = proxied
        .get_blob_sized(layer, size + 1, 1 << 20)
        .await
        .expect_err("long size");
    // skopeo's own check at the end of the pipe says it first.
    let text = error.to_string();
    assert!(
        text.contains(layer)
            && text.contains(&format!("expected {} bytes in blob, got {size}", size + 1)),
        "{error}"
    );
    assert!(!error.is_unreachable(), "{error:?}");
    // The reader still works after both.
    proxied
        .get_blob_sized(layer, size, 1 << 20)
        .await
        .expect("the layer again");
    let error = proxied
        .get_blob_sized(layer, size, usize::try_from(size - 1).expect("fits"))
        .await
        .expect_err("over the limit");
    assert!(matches!(error, OciError::TooLarge { .. }), "{error:?}");
}

#[tokio::test]
async fn a_blocked_registry_is_refused_without_a_request() {
    let registry = TestRegistry::start(Auth::None).await;
    publish(&registry.store("acme/os"), &SigningKey::generate()).await;
    let conf = registries_conf(
        registry.scratch(),
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\nblocked = true\n",
            registry.host
        ),
    );
    let reader = reader(conf).await;
    let proxied = Store::proxy(reader, registry.repository("acme/os"));
    let before = registry.requests();
    let error = document::fetch(&proxied, TAG).await.expect_err("blocked");
    assert!(error.to_string().contains("blocked"), "{error}");
    let error = proxied.list_tags().await.expect_err("blocked");
    assert!(error.to_string().contains("blocked"), "{error}");
    assert!(!error.is_unreachable(), "{error:?}");
    assert_eq!(registry.requests(), before);
}

#[tokio::test]
async fn a_mirror_in_registries_conf_serves_a_tag_pull() {
    let mirror = TestRegistry::start(Auth::None).await;
    let key = SigningKey::generate();
    let published = publish(&mirror.store("mirrorns/os"), &key).await;
    // `insecure` only on the mirror's entry, as a disconnected site writes it.
    let text = format!(
        "[[registry]]\nlocation = \"example.invalid/acme\"\n\n[[registry.mirror]]\nlocation = \"{}/mirrorns\"\ninsecure = true\n",
        mirror.host
    );
    let conf = registries_conf(mirror.scratch(), &text);
    let mut mirrors = cairn_oci::registries_conf::RegistriesConf::default();
    mirrors
        .add(&text, "registries.conf")
        .expect("registries.conf");
    let reader = reader_with(
        conf.clone(),
        ProxyConfig {
            mirrors,
            ..ProxyConfig::default()
        },
    )
    .await;
    let origin = cairn_oci::Repository::parse("example.invalid/acme/os").expect("repository");
    let proxied = Store::proxy(reader, origin);
    // skopeo's own `inspect` through the same registries.conf finds the
    // same manifest at the mirror.
    let inspected = std::process::Command::new("skopeo")
        .arg("--registries-conf")
        .arg(&conf)
        .args(["inspect", "--raw", "--no-creds"])
        .arg(format!("docker://example.invalid/acme/os:{TAG}"))
        .output()
        .expect("skopeo inspect");
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    assert_eq!(
        cairn_oci::digest::sha256_digest(&inspected.stdout),
        published.manifest_digest
    );
    let before = mirror.requests().len();
    let fetched = document::fetch(&proxied, TAG)
        .await
        .expect("read at the mirror");
    assert_eq!(fetched.document, published.document);
    assert_eq!(
        fetched.manifest_digest.as_deref(),
        Some(published.manifest_digest.as_str())
    );
    assert_eq!(fetched.signatures.len(), 1);
    // Tags are listed at the mirror, over plain HTTP (the origin does not
    // exist), where `skopeo list-tags` of the origin alone would fail.
    let mut tags = proxied.list_tags().await.expect("tags at the mirror");
    tags.sort();
    let mut at_mirror = mirror.store("mirrorns/os").list_tags().await.expect("tags");
    at_mirror.sort();
    assert_eq!(tags, at_mirror);
    let requests = mirror.requests();
    assert!(
        requests[before..]
            .iter()
            .any(|r| r.uri == "/v2/mirrorns/os/tags/list" && r.user_agent.starts_with("skopeo/")),
        "{:?}",
        &requests[before..]
    );
    let tag_pull = format!("/v2/mirrorns/os/manifests/{TAG}");
    assert!(
        requests[before..]
            .iter()
            .any(|r| r.method == "GET" && r.uri == tag_pull && r.status == 200),
        "{:?}",
        &requests[before..]
    );
}

#[tokio::test]
async fn tags_listed_by_skopeo_are_the_built_in_list() {
    let registry = TestRegistry::start(Auth::None).await;
    let direct = registry.store("acme/os");
    publish(&direct, &SigningKey::generate()).await;
    let manifest = direct.get_manifest(TAG).await.expect("manifest");
    for tag in ["extra-1", "extra-2"] {
        direct
            .put_manifest(manifest.bytes.clone(), &manifest.media_type, Some(tag))
            .await
            .expect("tag");
    }
    let reader = reader(registries_conf(
        registry.scratch(),
        &insecure(&registry.host),
    ))
    .await;
    let proxied = Store::proxy(reader.clone(), registry.repository("acme/os"));
    let mut through_skopeo = proxied.list_tags().await.expect("skopeo list-tags");
    let mut built_in = direct.list_tags().await.expect("built-in");
    through_skopeo.sort();
    built_in.sort();
    assert_eq!(through_skopeo, built_in);
    assert_eq!(through_skopeo.len(), 4, "{through_skopeo:?}");
    assert_eq!(reader.call_count(), 1);
}

#[tokio::test]
async fn trust_roots_walk_the_same_through_skopeo() {
    let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate()).collect();
    let [a, b, graph] = [&keys[0], &keys[1], &keys[2]];
    let first = signed_root(1, &[a, b], &[graph], &[graph], &[a, b]);
    let second = signed_root(2, &[a, b], &[graph], &[graph], &[a, b]);
    let registry = TestRegistry::start(Auth::None).await;
    let direct = registry.store("acme/os");
    roots::push_missing(&direct, &[first.clone(), second])
        .await
        .expect("roots pushed");
    let reader = reader(registries_conf(
        registry.scratch(),
        &insecure(&registry.host),
    ))
    .await;
    let proxied = Store::proxy(reader, registry.repository("acme/os"));
    let held = TrustedRoot::pin(first).expect("pins");
    let through_proxy = roots::walk(&proxied, &held, Timestamp::now()).await;
    let through_client = roots::walk(&direct, &held, Timestamp::now()).await;
    assert!(
        through_proxy.trusted().is_ok(),
        "{:?}",
        through_proxy.refused
    );
    assert_eq!(through_proxy.root.version(), 2);
    assert_eq!(through_proxy.root.version(), through_client.root.version());
}

/// A stand-in for skopeo: a script run in its place.
fn fake_skopeo(dir: &std::path::Path, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-skopeo");
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

#[tokio::test]
async fn a_proxy_speaking_an_old_protocol_is_unavailable_with_its_version() {
    require_binary("python3", "python3");
    let dir = tempfile::tempdir().expect("tempdir");
    // Answers Initialize the way skopeo 1.5 would (protocol 0.2.1), on the
    // SEQPACKET socket the crate hands over as stdin.
    let skopeo = fake_skopeo(
        dir.path(),
        "#!/usr/bin/env python3\nimport json, socket\ns = socket.socket(fileno=0)\ns.recv(65536)\ns.send(json.dumps({'success': True, 'error': '', 'pipeid': 0, 'value': '0.2.1'}).encode())\ns.recv(65536)\n",
    );
    let config = ProxyConfig {
        skopeo: skopeo.clone(),
        timeout: Duration::from_secs(30),
        ..ProxyConfig::default()
    };
    let error = ProxyReader::start(config).await.expect_err("too old");
    assert!(
        matches!(&error, ProxyUnavailable::TooOld { found, .. } if found == "0.2.1"),
        "{error:?}"
    );
    assert_eq!(error.kind(), "skopeo_too_old");
    assert!(error.to_string().contains("0.2.3"), "{error}");
}

#[tokio::test]
async fn a_proxy_that_never_answers_fails_to_start_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    // It ends by itself a while later: the crate owns the child, and the
    // test runtime waits for the thread still blocked on its socket.
    let skopeo = fake_skopeo(dir.path(), "#!/bin/sh\nexec sleep 5\n");
    let config = ProxyConfig {
        skopeo,
        timeout: Duration::from_millis(500),
        ..ProxyConfig::default()
    };
    let started = std::time::Instant::now();
    let error = ProxyReader::start(config).await.expect_err("no answer");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), "skopeo_failed", "{error:?}");
    assert!(error.to_string().contains("no answer"), "{error}");
}

#[tokio::test]
async fn a_call_that_times_out_is_unreachable_and_later_calls_fail_at_once() {
    require_binary("python3", "python3");
    let dir = tempfile::tempdir().expect("tempdir");
    // Starts like skopeo 1.9 (protocol 0.2.3), then never answers OpenImage.
    let skopeo = fake_skopeo(
        dir.path(),
        "#!/usr/bin/env python3\nimport json, socket, time\ns = socket.socket(fileno=0)\ns.recv(65536)\ns.send(json.dumps({'success': True, 'error': '', 'pipeid': 0, 'value': '0.2.3'}).encode())\ns.recv(65536)\ntime.sleep(4)\n",
    );
    // Long enough to start on a loaded machine; the call then times out.
    let config = ProxyConfig {
        skopeo,
        timeout: Duration::from_secs(2),
        ..ProxyConfig::default()
    };
    let reader = Arc::new(ProxyReader::start(config).await.expect("starts"));
    assert_eq!(reader.protocol_version(), ProtocolVersion(0, 2, 3));
    let store = Store::proxy(
        reader.clone(),
        cairn_oci::Repository::parse("registry.example/acme/os").expect("repository"),
    );
    let error = store.get_manifest(TAG).await.expect_err("no answer");
    assert!(error.is_unreachable(), "{error:?}");
    assert!(
        error.to_string().contains("no answer from skopeo"),
        "{error}"
    );
    assert!(error.to_string().contains(TAG), "{error}");
    let started = std::time::Instant::now();
    let again = store.resolve("other").await.expect_err("unusable");
    assert!(again.is_unreachable(), "{again:?}");
    assert!(again.to_string().contains("unusable"), "{again}");
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(reader.call_count(), 2);
}

/// A skopeo stuck on a call is not waited for at the end of the pass, and
/// its lifetime ends it: nothing is left running.
#[tokio::test]
async fn a_stuck_skopeo_is_not_waited_for_and_its_lifetime_ends_it() {
    require_binary("python3", "python3");
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let skopeo = fake_skopeo(
        dir.path(),
        &format!(
            "#!/usr/bin/env python3\nimport json, os, socket, time\nopen({pid:?}, 'w').write(str(os.getpid()))\ns = socket.socket(fileno=0)\ns.recv(65536)\ns.send(json.dumps({{'success': True, 'error': '', 'pipeid': 0, 'value': '0.2.3'}}).encode())\ns.recv(65536)\ntime.sleep(1000)\n",
            pid = pid_file.display().to_string()
        ),
    );
    let config = ProxyConfig {
        skopeo,
        timeout: Duration::from_secs(2),
        lifetime: Duration::from_secs(4),
        ..ProxyConfig::default()
    };
    let reader = ProxyReader::start(config).await.expect("starts");
    let pid = std::fs::read_to_string(&pid_file).expect("the stand-in's pid");
    let alive = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(alive.exists(), "the stand-in runs");
    let store = Store::proxy(
        Arc::new(reader),
        cairn_oci::Repository::parse("registry.example/acme/os").expect("repository"),
    );
    store.get_manifest(TAG).await.expect_err("no answer");
    let Store::Proxy { reader, .. } = store else {
        panic!("a proxy store");
    };
    let reader = Arc::try_unwrap(reader).expect("the one handle");
    let started = std::time::Instant::now();
    let error = reader.finish().await.expect_err("not a clean stop");
    assert!(
        error.to_string().contains("not shut down cleanly"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "finish waited");
    // The lifetime kills it; wait for that, with room for a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while alive.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stuck stand-in {pid} outlived its lifetime"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_registry_whose_ca_is_only_in_the_cert_dir_is_read_through_skopeo_alone() {
    let mut registry = TestRegistry::start(Auth::None).await;
    let published = publish(&registry.store("acme/os"), &SigningKey::generate()).await;
    let certs = registry.serve_tls();
    // Nothing marks the registry insecure: TLS with the test CA or nothing.
    let conf = registries_conf(registry.scratch(), "unqualified-search-registries = []\n");
    let config = ProxyConfig {
        policy: Some(open_policy(&conf)),
        registries_conf: Some(conf.clone()),
        cert_dir: Some(certs),
        auth: ProxyAuth::Anonymous,
        timeout: Duration::from_secs(30),
        ..ProxyConfig::default()
    };
    let trusting = Arc::new(ProxyReader::start(config).await.expect("skopeo proxy"));
    let proxied = Store::proxy(trusting, registry.repository("acme/os"));
    let fetched = document::fetch(&proxied, TAG)
        .await
        .expect("read over TLS with the test CA");
    assert_eq!(fetched.document, published.document);
    assert_eq!(fetched.signatures.len(), 1);

    // Without the CA, neither skopeo nor the built-in client gets an answer.
    let untrusting = reader(conf).await;
    let error = document::fetch(
        &Store::proxy(untrusting, registry.repository("acme/os")),
        TAG,
    )
    .await
    .expect_err("unknown CA");
    assert!(error.to_string().contains("certificate"), "{error}");
    let error = document::fetch(&registry.store("acme/os"), TAG)
        .await
        .expect_err("built-in client, unknown CA");
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[tokio::test]
async fn a_halt_list_reads_the_same_through_skopeo() {
    let registry = TestRegistry::start(Auth::None).await;
    let direct = registry.store("acme/os-halts");
    let identity = direct.describe();
    let key = SigningKey::generate();
    let trust = TrustedRoot::from_config(&[key.verifying_key()], &[]);
    let options = halts::UpdateOptions {
        publish: document::PublishOptions {
            tag: HALT_TAG,
            identity: &identity,
            keys: std::slice::from_ref(&key),
            root_version: 0,
            settle: Duration::from_millis(300),
            expected: None,
        },
        trust: trust.as_ref(),
        stream: "stable",
        lifetime: halts::DEFAULT_LIFETIME,
        cleared: &[],
        accept_unverified_current: false,
    };
    let digest = format!("sha256:{}", "1".repeat(64));
    let added = halts::add(
        &direct,
        &options,
        "1.2",
        vec![digest],
        "3 of 20 boots failed",
        TrippedBy::Person { who: "ops".into() },
    )
    .await
    .expect("halt");
    let reader = reader(registries_conf(
        registry.scratch(),
        &insecure(&registry.host),
    ))
    .await;
    let proxied = Store::proxy(reader, registry.repository("acme/os-halts"));
    let through_proxy = halts::fetch(&proxied, HALT_TAG)
        .await
        .expect("through skopeo");
    let through_client = halts::fetch(&direct, HALT_TAG).await.expect("built-in");
    assert_eq!(through_proxy.list, added.list);
    assert_eq!(through_proxy.bytes, through_client.bytes);
    assert_eq!(
        through_proxy.manifest_digest,
        through_client.manifest_digest
    );
    assert_eq!(through_proxy.source_name, through_client.source_name);
    assert_eq!(
        through_proxy
            .signatures
            .iter()
            .map(|s| (s.message.clone(), s.signature.clone()))
            .collect::<Vec<_>>(),
        through_client
            .signatures
            .iter()
            .map(|s| (s.message.clone(), s.signature.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(through_proxy.signatures.len(), 1);
}

/// Single-architecture releases read alike; a multi-architecture release
/// reads as the host's platform alone, the image bootc would pull here.
#[tokio::test]
async fn a_tag_scan_reads_the_same_through_skopeo_as_the_built_in_client_for_the_host_platform() {
    use cairn_oci::scan::{ScanCache, ScanOptions, scan};
    use cairn_testkit::images::{ImageSpec, write_image, write_release};
    let registry = TestRegistry::start(Auth::None).await;
    let direct = registry.store("acme/os");
    for (version, created) in [
        ("41.1", "2026-01-03T00:00:00Z"),
        ("41.2", "2026-01-10T00:00:00Z"),
    ] {
        let spec = ImageSpec::bootable("amd64", version, "stable", created);
        write_image(&direct, &spec, Some(version)).await;
    }
    let (index, children) =
        write_release(&direct, "41.3", "2026-01-17T00:00:00Z", &["41.3", "stable"]).await;
    // Something that is not a release: skipped alike.
    publish(&direct, &SigningKey::generate()).await;
    // A release for another platform only: skopeo finds no image for this
    // host under it, which skips that one tag rather than fail the scan.
    let (foreign, _) = cairn_testkit::images::write_index(
        &direct,
        &[ImageSpec::bootable(
            "s390x",
            "41.4",
            "stable",
            "2026-01-20T00:00:00Z",
        )],
        "41.4",
    )
    .await;
    // A promote state naming a wave tag: read through skopeo too.
    let mut state = cairn_graph::promote::PromoteState::default();
    state.waves.insert(
        "stable-early".into(),
        cairn_graph::promote::WaveState {
            version: "41.2".into(),
            arrived: Timestamp::now(),
            came_from: None,
        },
    );
    cairn_oci::promote::write_state(&direct, &state, None, Timestamp::now(), Duration::ZERO)
        .await
        .expect("promote state");
    cairn_testkit::images::add_tags(
        &direct,
        &direct
            .resolve("41.2")
            .await
            .expect("head")
            .expect("41.2")
            .digest,
        &["stable-early"],
    )
    .await;

    let reader = reader(registries_conf(
        registry.scratch(),
        &insecure(&registry.host),
    ))
    .await;
    let proxied = Store::proxy_as_host_pulls(reader.clone(), registry.repository("acme/os"));
    let options = ScanOptions::for_stream("stable");
    let no_progress = |_: u64, _: u64| {};
    let built_in = scan(&direct, &options, &mut ScanCache::default(), &no_progress)
        .await
        .expect("built-in scan");
    let through_skopeo = scan(&proxied, &options, &mut ScanCache::default(), &no_progress)
        .await
        .expect("scan through skopeo");
    assert!(reader.call_count() > 0, "skopeo answered the scan");

    let versions = |report: &cairn_oci::scan::ScanReport| {
        let mut v: Vec<String> = report
            .candidates
            .iter()
            .map(|c| c.version.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(versions(&built_in), ["41.1", "41.2", "41.3", "41.4"]);
    assert_eq!(versions(&through_skopeo), ["41.1", "41.2", "41.3"]);
    let unusable: Vec<_> = through_skopeo
        .skipped
        .iter()
        .filter(|(tag, _)| !built_in.skipped.iter().any(|(t, _)| t == tag))
        .collect();
    assert_eq!(unusable.len(), 1, "{:?}", through_skopeo.skipped);
    assert_eq!(unusable[0].0, "41.4");
    assert_eq!(unusable[0].1.kind(), "unreadable", "{:?}", unusable[0].1);
    assert_eq!(through_skopeo.skipped.len(), built_in.skipped.len() + 1);
    for candidate in &built_in.candidates {
        if candidate.source_digest == foreign {
            continue;
        }
        let other = through_skopeo
            .candidates
            .iter()
            .find(|c| c.version == candidate.version)
            .expect("the same release");
        if candidate.source_digest == index {
            // skopeo reads the index as this machine's platform: that
            // child alone, with the same labels.
            let (arch, child) = match std::env::consts::ARCH {
                "aarch64" => ("aarch64", &children[1]),
                _ => ("x86_64", &children[0]),
            };
            assert_eq!(other.source_digest, child.manifest);
            assert_eq!(candidate.architectures.len(), 2);
            assert_eq!(other.architectures.keys().collect::<Vec<_>>(), [arch]);
            assert_eq!(other.architectures[arch], candidate.architectures[arch]);
            assert_eq!(other.created, candidate.created);
            assert_eq!(other.tags, candidate.tags);
        } else {
            assert_eq!(other, candidate);
        }
    }
}

/// Tag lists walk the mirrors in order past one that fails, and when every
/// place fails, the repository's own error is the one given.
#[tokio::test]
async fn tag_lists_move_past_a_failing_mirror_and_report_the_origin_s_error() {
    let mirror = TestRegistry::start(Auth::None).await;
    publish(&mirror.store("good/os"), &SigningKey::generate()).await;
    let text = |second: &str| {
        format!(
            "[[registry]]\nlocation = \"example.invalid/acme\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:1/dead\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"{second}\"\ninsecure = true\n"
        )
    };
    let origin = cairn_oci::Repository::parse("example.invalid/acme/os").expect("repository");
    let start = |body: String, dir: &str| {
        let dir = mirror.scratch().join(dir);
        async move {
            std::fs::create_dir_all(&dir).expect("mkdir");
            let conf = registries_conf(&dir, &body);
            let mut mirrors = cairn_oci::registries_conf::RegistriesConf::default();
            mirrors
                .add(&body, "registries.conf")
                .expect("registries.conf");
            reader_with(
                conf,
                ProxyConfig {
                    mirrors,
                    ..ProxyConfig::default()
                },
            )
            .await
        }
    };
    let working = start(text(&format!("{}/good", mirror.host)), "working").await;
    let tags = Store::proxy(working, origin.clone())
        .list_tags()
        .await
        .expect("the second mirror answers");
    assert!(tags.contains(&TAG.to_string()), "{tags:?}");

    let failing = start(text("127.0.0.1:1/also-dead"), "failing").await;
    let error = Store::proxy(failing, origin)
        .list_tags()
        .await
        .expect_err("no place answers");
    let message = error.to_string();
    assert!(message.contains("example.invalid"), "{message}");
    assert_eq!(error.kind(), "transport", "{message}");
}
