//! Documents in a real registry (Debian's docker-registry, three auth
//! flavours), in OCI layouts, and mirrored with skopeo.

use cairn_graph::GraphDocument;
use cairn_oci::document::{self, DocumentStoreError, Seen, TrustPolicy};
use cairn_oci::signing::{SigningKey, VerifyingKey, signature_tag, simple_signing_payload};
use cairn_oci::trust::{Role, RoleKeys};
use cairn_oci::{Store, layout::Layout};
use cairn_testkit::{Auth, TestRegistry, skopeo};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

const TAG: &str = "cairn-graph-stable";
const SETTLE: Duration = Duration::from_millis(300);

/// The graph role of any one of `keys` (none: no key configured).
fn graph_role(keys: &[VerifyingKey]) -> Option<RoleKeys> {
    document::configured_role(Role::Graph, keys)
}

/// The halt role of any one of `keys`.
fn halt_role(keys: &[VerifyingKey]) -> Option<RoleKeys> {
    document::configured_role(Role::Halt, keys)
}

fn policy<'a>(signers: &'a Option<RoleKeys>, last_seen: Option<Seen<'a>>) -> TrustPolicy<'a> {
    TrustPolicy {
        signers: signers.as_ref(),
        allow_unsigned: false,
        now: Timestamp::now(),
        last_seen,
        stream: Some("stable"),
    }
}

fn options<'a>(identity: &'a str, key: Option<&'a SigningKey>) -> document::PublishOptions<'a> {
    document::PublishOptions {
        tag: TAG,
        identity,
        keys: key.map_or(&[], std::slice::from_ref),
        root_version: 0,
        settle: SETTLE,
        expected: None,
    }
}

async fn publish(
    store: &Store,
    document: GraphDocument,
    key: Option<&SigningKey>,
) -> document::Published {
    document::publish(store, document, &options(&store.describe(), key))
        .await
        .unwrap_or_else(|e| panic!("publishing to {}: {e}", store.describe()))
}

#[tokio::test]
async fn publish_read_and_verify_with_every_kind_of_auth() {
    for auth in [Auth::None, Auth::Htpasswd, Auth::Token] {
        let registry = TestRegistry::start(auth).await;
        let store = registry.store("acme/os");
        let key = SigningKey::generate();
        let published = publish(&store, cairn_testkit::example_document(24), Some(&key)).await;
        let fetched = document::fetch(&store, TAG).await.expect("fetch");
        assert_eq!(
            fetched.manifest_digest.as_deref(),
            Some(published.manifest_digest.as_str())
        );
        assert_eq!(fetched.document, published.document, "{auth:?}");
        let keys = [key.verifying_key()];
        fetched
            .verify("test", &policy(&graph_role(&keys), None))
            .expect("verifies");
        // The tag points at a signed document: the signature exists before the tag.
        let signature = store
            .resolve(&signature_tag(&published.manifest_digest))
            .await
            .expect("resolve");
        assert!(signature.is_some(), "{auth:?}");
        // A second publication gets a higher sequence.
        let second = publish(&store, cairn_testkit::example_document(24), Some(&key)).await;
        assert!(second.sequence > published.sequence);
    }
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let registry = TestRegistry::start(Auth::Htpasswd).await;
    let mut options = registry.client_options();
    options.credentials = cairn_oci::auth::Credentials::none();
    let store = Store::registry(
        cairn_oci::RegistryClient::new(options).expect("client"),
        registry.repository("acme/os"),
    );
    let err = document::fetch(&store, TAG).await.expect_err("anonymous");
    assert_eq!(err.kind(), "unauthorized", "{err}");
    assert!(err.to_string().contains("no"), "{err}");
}

#[tokio::test]
async fn tampered_unsigned_wrong_key_expired_and_replayed_documents_are_rejected() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let key = SigningKey::generate();
    let keys = [key.verifying_key()];
    let original = publish(&store, cairn_testkit::example_document(24), Some(&key)).await;
    let original_fetch = document::fetch(&store, TAG).await.expect("fetch");

    // Wrong key.
    let strangers = [SigningKey::generate().verifying_key()];
    let err = original_fetch
        .verify("t", &policy(&graph_role(&strangers), None))
        .expect_err("wrong key");
    assert_eq!(err.kind(), "bad_signature");

    // Tampered: another document under the tag, with the old signature copied over.
    let mut forged = cairn_testkit::example_document(24);
    forged.releases[5].rollout = None;
    let forged = publish(&store, forged, None).await;
    let old_signature = store
        .get_manifest(&signature_tag(&original.manifest_digest))
        .await
        .expect("old signature");
    store
        .put_manifest(
            old_signature.bytes.clone(),
            &old_signature.media_type,
            Some(&signature_tag(&forged.manifest_digest)),
        )
        .await
        .expect("copy signature");
    let fetched = document::fetch(&store, TAG).await.expect("fetch");
    let err = fetched
        .verify("t", &policy(&graph_role(&keys), None))
        .expect_err("copied signature");
    assert_eq!(
        err.kind(),
        "unsigned",
        "a signature of another digest does not count: {err}"
    );

    // Tampered: a payload naming the new digest with the old signature value.
    let mut signed = fetched.clone();
    signed.signatures.push(cairn_oci::document::Signed {
        message: simple_signing_payload("x", &forged.manifest_digest).into(),
        signature: original_fetch.signatures[0].signature.clone(),
    });
    assert_eq!(
        signed
            .verify("t", &policy(&graph_role(&keys), None))
            .expect_err("forged")
            .kind(),
        "bad_signature"
    );

    // Unsigned is fine only when no key is configured or unsigned is allowed explicitly.
    fetched
        .verify("t", &policy(&graph_role(&[]), None))
        .expect("no key configured");
    let signers = graph_role(&keys);
    let mut lenient = policy(&signers, None);
    lenient.allow_unsigned = true;
    fetched.verify("t", &lenient).expect("explicitly allowed");

    // Expired.
    let mut stale = cairn_testkit::example_document(24);
    stale.issued = Timestamp::now() - SignedDuration::from_hours(48);
    stale.expires = Timestamp::now() - SignedDuration::from_hours(1);
    publish(&store, stale, Some(&key)).await;
    let fetched = document::fetch(&store, TAG).await.expect("fetch");
    let err = fetched
        .verify("t", &policy(&graph_role(&keys), None))
        .expect_err("expired");
    assert_eq!(err.kind(), "expired", "{err}");

    // Replayed: an older sequence than one already seen, or the same one with other bytes.
    let digest = cairn_oci::digest::sha256_digest(&original_fetch.bytes);
    let newer = Seen {
        sequence: original.sequence + 1,
        digest: &digest,
    };
    let err = original_fetch
        .verify("t", &policy(&graph_role(&keys), Some(newer)))
        .expect_err("replay");
    assert!(matches!(err, DocumentStoreError::Replayed { .. }), "{err}");
    let same = Seen {
        sequence: original.sequence,
        digest: "sha256:other",
    };
    let err = original_fetch
        .verify("t", &policy(&graph_role(&keys), Some(same)))
        .expect_err("conflict");
    assert_eq!(err.kind(), "sequence_conflict");
    let same = Seen {
        sequence: original.sequence,
        digest: &digest,
    };
    original_fetch
        .verify("t", &policy(&graph_role(&keys), Some(same)))
        .expect("the same document again is fine");
}

#[tokio::test]
async fn concurrent_publishers_leave_one_complete_document_and_losers_know() {
    let registry = TestRegistry::start(Auth::None).await;
    let key = SigningKey::generate();
    let mut tasks = Vec::new();
    for writer in 0..6 {
        let store = registry.store("acme/os");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut doc = cairn_testkit::example_document(24);
            doc.releases[5].version = format!("43.20251110.{writer}");
            let result = document::publish(&store, doc, &options("acme/os", Some(&key))).await;
            (writer, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (writer, result) = task.await.expect("task");
        match result {
            Ok(published) => winners.push((writer, published.manifest_digest)),
            Err(e) => assert_eq!(e.kind(), "conflict", "writer {writer}: {e}"),
        }
    }
    let store = registry.store("acme/os");
    let on_tag = store
        .resolve(TAG)
        .await
        .expect("resolve")
        .expect("tagged")
        .digest;
    assert_eq!(
        winners.len(),
        1,
        "exactly one writer may believe it won: {winners:?}"
    );
    assert_eq!(winners[0].1, on_tag, "and it is the one on the tag");
    let fetched = document::fetch(&store, TAG).await.expect("fetch");
    fetched
        .verify("t", &policy(&graph_role(&[key.verifying_key()]), None))
        .expect("complete and verifiable");
}

#[tokio::test]
async fn a_registry_outage_fails_cleanly_and_leaves_the_tag_alone() {
    let mut registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let key = SigningKey::generate();
    let first = publish(&store, cairn_testkit::example_document(24), Some(&key)).await;
    registry.stop();
    let err = document::publish(
        &store,
        cairn_testkit::example_document(24),
        &options("acme/os", Some(&key)),
    )
    .await
    .expect_err("registry down");
    assert_eq!(err.kind(), "transport", "{err}");
    assert!(
        err.to_string().contains(&registry.host),
        "names the registry: {err}"
    );
    registry.resume();
    let on_tag = store
        .resolve(TAG)
        .await
        .expect("resolve")
        .expect("tagged")
        .digest;
    assert_eq!(on_tag, first.manifest_digest);
}

#[tokio::test]
async fn mirrored_with_skopeo_sync_and_still_verifiable() {
    let source = TestRegistry::start(Auth::Htpasswd).await;
    let mirror = TestRegistry::start(Auth::None).await;
    let key = SigningKey::generate();
    publish(
        &source.store("acme/os"),
        cairn_testkit::example_document(24),
        Some(&key),
    )
    .await;
    let creds = source.skopeo_creds().expect("credentials");
    skopeo(&[
        "sync",
        "--src",
        "docker",
        "--dest",
        "docker",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("{}/acme/os", source.host),
        &format!("{}/mirror", mirror.host),
    ]);
    let copy = mirror.store("mirror/os");
    let fetched = document::fetch(&copy, TAG)
        .await
        .expect("the mirror has the document");
    fetched
        .verify("mirror", &policy(&graph_role(&[key.verifying_key()]), None))
        .expect("and its signature");
}

#[tokio::test]
async fn oci_layout_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::Layout(Layout::open_or_create(dir.path()).expect("layout"));
    let key = SigningKey::generate();
    let published = publish(&store, cairn_testkit::example_document(24), Some(&key)).await;
    let fetched = document::fetch(&store, TAG).await.expect("fetch");
    assert_eq!(fetched.document, published.document);
    fetched
        .verify("layout", &policy(&graph_role(&[key.verifying_key()]), None))
        .expect("verifies");
}

#[tokio::test]
async fn a_layout_written_by_skopeo_is_read() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let key = SigningKey::generate();
    let published = publish(&store, cairn_testkit::example_document(24), Some(&key)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = dir.path().display().to_string();
    let sig = signature_tag(&published.manifest_digest);
    for tag in [TAG, sig.as_str()] {
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/acme/os:{tag}", registry.host),
            &format!("oci:{layout}:{tag}"),
        ]);
    }
    let store = Store::Layout(Layout::open(dir.path()).expect("skopeo wrote a layout"));
    let fetched = document::fetch(&store, TAG).await.expect("fetch");
    assert_eq!(
        fetched.manifest_digest.as_deref(),
        Some(published.manifest_digest.as_str())
    );
    fetched
        .verify(
            "skopeo layout",
            &policy(&graph_role(&[key.verifying_key()]), None),
        )
        .expect("verifies");
}

#[tokio::test]
async fn a_signed_document_of_another_stream_is_refused() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let key = SigningKey::generate();
    let mut testing = cairn_testkit::example_document(24);
    testing.stream = "testing".into();
    // Someone who can push but not sign retags the testing document as stable.
    publish(&store, testing, Some(&key)).await;
    let fetched = document::fetch(&store, TAG).await.expect("fetch");
    let err = fetched
        .verify("t", &policy(&graph_role(&[key.verifying_key()]), None))
        .expect_err("wrong stream");
    assert_eq!(err.kind(), "wrong_stream", "{err}");
}

#[tokio::test]
async fn a_publication_that_landed_since_the_read_is_a_conflict() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let first = publish(&store, cairn_testkit::example_document(24), None).await;
    // Built on `first`, but someone else published meanwhile.
    publish(&store, cairn_testkit::example_document(24), None).await;
    let mut stale = options("acme/os", None);
    stale.expected = Some(Some(first.manifest_digest.clone()));
    let err = document::publish(&store, cairn_testkit::example_document(24), &stale)
        .await
        .expect_err("conflict");
    assert_eq!(err.kind(), "conflict", "{err}");
    // Built on nothing while something is there: also a conflict.
    stale.expected = Some(None);
    assert_eq!(
        document::publish(&store, cairn_testkit::example_document(24), &stale)
            .await
            .expect_err("conflict")
            .kind(),
        "conflict"
    );
}

mod halt_lists {
    use super::*;
    use cairn_graph::halts::{SignedAs, TrippedBy};
    use cairn_oci::halts::{self, HaltTrust, UpdateOptions};

    const HALT_TAG: &str = "cairn-halts-stable";
    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    /// Version 0 from `keys` (graph, any one), as a writer with no root uses.
    fn configured(keys: &[VerifyingKey]) -> Option<cairn_oci::trust::TrustedRoot> {
        cairn_oci::trust::TrustedRoot::from_config(keys, &[])
    }

    fn update_options<'a>(
        identity: &'a str,
        key: &'a SigningKey,
        trust: &'a Option<cairn_oci::trust::TrustedRoot>,
    ) -> UpdateOptions<'a> {
        UpdateOptions {
            publish: document::PublishOptions {
                tag: HALT_TAG,
                identity,
                keys: std::slice::from_ref(key),
                root_version: 0,
                settle: SETTLE,
                expected: None,
            },
            trust: trust.as_ref(),
            stream: "stable",
            lifetime: halts::DEFAULT_LIFETIME,
            cleared: &[],
            accept_unverified_current: false,
        }
    }

    fn trust<'a>(
        graph: &'a Option<RoleKeys>,
        halt: &'a Option<RoleKeys>,
        newest_held: Option<&'a cairn_graph::halts::HaltList>,
    ) -> HaltTrust<'a> {
        HaltTrust {
            graph: graph.as_ref(),
            halt: halt.as_ref(),
            stream: "stable",
            newest_held,
            min_sequence: 0,
            now: Timestamp::now(),
        }
    }

    fn person() -> TrippedBy {
        TrippedBy::Person { who: "ops".into() }
    }

    #[tokio::test]
    async fn halt_keys_add_the_graph_key_clears_and_every_role_is_checked() {
        let registry = TestRegistry::start(Auth::Token).await;
        let store = registry.store("acme/os-halts");
        let identity = store.describe();
        let graph = SigningKey::generate();
        let halt = SigningKey::generate();
        let stranger = SigningKey::generate();
        let graph_keys = [graph.verifying_key()];
        let halt_keys = [halt.verifying_key()];
        let both = configured(&[graph.verifying_key(), halt.verifying_key()]);

        // The release team starts an empty list; the guard adds to it.
        let first = halts::refresh(&store, &update_options(&identity, &graph, &both))
            .await
            .expect("first list");
        assert!(first.list.entries.is_empty());
        let added = halts::add(
            &store,
            &update_options(&identity, &halt, &both),
            "1.2",
            vec![DIGEST.into()],
            "3 of 20 boots failed",
            person(),
        )
        .await
        .expect("halt");
        assert!(added.added);
        assert!(added.list.sequence > first.list.sequence);
        // Halting a halted release again changes nothing.
        let again = halts::add(
            &store,
            &update_options(&identity, &halt, &both),
            "1.2",
            vec![DIGEST.into()],
            "again",
            person(),
        )
        .await
        .expect("halt again");
        assert!(!again.added);
        assert_eq!(again.list.sequence, added.list.sequence);

        let fetched = halts::fetch(&store, HALT_TAG).await.expect("fetch");
        assert_eq!(fetched.list, added.list);
        let held = first.list.clone();
        assert_eq!(
            fetched
                .verify(&trust(
                    &graph_role(&graph_keys),
                    &halt_role(&halt_keys),
                    Some(&held)
                ))
                .expect("a halt key's list"),
            SignedAs::HaltOnly
        );
        assert_eq!(
            fetched
                .list
                .halting(&[], DIGEST)
                .map(|entry| entry.version.as_str()),
            Some("1.2")
        );
        // Without the halt key, a reader refuses it and says why.
        let err = fetched
            .verify(&trust(&graph_role(&graph_keys), &None, None))
            .expect_err("unknown key");
        assert_eq!(err.kind(), "halts_bad_signature", "{err}");
        // A halt key's list that drops an entry is refused; the graph key's is not.
        let mut dropped = added.list.clone();
        dropped.entries.clear();
        dropped.sequence += 1;
        for (key, expected) in [
            (&halt, Err("halts_dropped_entry")),
            (&graph, Ok(SignedAs::Graph)),
        ] {
            let head = store
                .resolve(HALT_TAG)
                .await
                .expect("resolve")
                .map(|h| h.digest);
            halts::publish(
                &store,
                &dropped,
                head,
                &document::PublishOptions {
                    tag: HALT_TAG,
                    identity: &identity,
                    keys: std::slice::from_ref(key),
                    root_version: 0,
                    settle: SETTLE,
                    expected: None,
                },
            )
            .await
            .expect("publish");
            dropped.sequence += 1;
            let fetched = halts::fetch(&store, HALT_TAG).await.expect("fetch");
            let verdict = fetched
                .verify(&trust(
                    &graph_role(&graph_keys),
                    &halt_role(&halt_keys),
                    Some(&added.list),
                ))
                .map_err(|e| e.kind());
            assert_eq!(verdict, expected);
        }
        // A list signed by a stranger, and one older than held, are refused.
        let strangers = halts::refresh(&store, &update_options(&identity, &stranger, &None))
            .await
            .expect("stranger publishes (it can push)");
        let fetched = halts::fetch(&store, HALT_TAG).await.expect("fetch");
        assert_eq!(
            fetched
                .verify(&trust(
                    &graph_role(&graph_keys),
                    &halt_role(&halt_keys),
                    None
                ))
                .map_err(|e| e.kind()),
            Err("halts_bad_signature")
        );
        let mut newer = strangers.list.clone();
        newer.sequence += 10;
        assert_eq!(
            fetched
                .verify(&trust(
                    &graph_role(&graph_keys),
                    &halt_role(&[stranger.verifying_key()]),
                    Some(&newer)
                ))
                .map_err(|e| e.kind()),
            Err("halts_replayed")
        );
        // The guard refuses to build on a list its trusted keys did not sign.
        let err = halts::add(
            &store,
            &update_options(&identity, &halt, &both),
            "1.3",
            vec![OTHER.into()],
            "x",
            person(),
        )
        .await
        .expect_err("the stranger's list is not built on");
        assert_eq!(err.kind(), "halts_bad_signature", "{err}");
    }

    #[tokio::test]
    async fn a_halt_list_is_mirrored_with_skopeo_and_a_document_is_not_taken_for_one() {
        let source = TestRegistry::start(Auth::None).await;
        let mirror = TestRegistry::start(Auth::None).await;
        let store = source.store("acme/os");
        let identity = store.describe();
        let halt = SigningKey::generate();
        let keys = [halt.verifying_key()];
        halts::add(
            &store,
            &update_options(&identity, &halt, &configured(&keys)),
            "1.2",
            vec![DIGEST.into()],
            "bad",
            person(),
        )
        .await
        .expect("halt");
        publish(&store, cairn_testkit::example_document(24), None).await;
        skopeo(&[
            "sync",
            "--src",
            "docker",
            "--dest",
            "docker",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("{}/acme/os", source.host),
            &format!("{}/mirror", mirror.host),
        ]);
        let copy = mirror.store("mirror/os");
        let fetched = halts::fetch(&copy, HALT_TAG)
            .await
            .expect("the mirror has the list");
        fetched
            .verify(&trust(&None, &halt_role(&keys), None))
            .expect("and its signature");
        let err = halts::fetch(&copy, TAG).await.expect_err("a document");
        assert_eq!(err.kind(), "halts_not_a_list", "{err}");
        let err = document::fetch(&copy, HALT_TAG)
            .await
            .expect_err("a halt list");
        assert_eq!(err.kind(), "not_a_document", "{err}");
    }

    /// Re-tag `manifest` (as fetched before) under the halt tag, as anyone
    /// with push rights on the repository can.
    async fn retag(store: &cairn_oci::Store, manifest: &cairn_oci::client::FetchedManifest) {
        store
            .put_manifest(manifest.bytes.clone(), &manifest.media_type, Some(HALT_TAG))
            .await
            .expect("re-tag");
    }

    /// A writer that knows a list was published never builds on a list
    /// deleted or put back older: its next list would be signed by it and
    /// lift the halts since. An expired list is still renewed.
    #[tokio::test]
    async fn a_writer_refuses_a_deleted_or_replayed_list_and_renews_an_expired_one() {
        let registry = TestRegistry::start(Auth::None).await;
        let store = registry.store("acme/os-halts");
        let identity = store.describe();
        let graph = SigningKey::generate();
        let halt = SigningKey::generate();
        let both = configured(&[graph.verifying_key(), halt.verifying_key()]);
        let by_graph = update_options(&identity, &graph, &both);
        let by_halt = update_options(&identity, &halt, &both);

        let first = halts::refresh(&store, &by_graph).await.expect("first list");
        let old = store
            .get_manifest(&first.manifest_digest)
            .await
            .expect("first manifest");
        let halted = halts::add(
            &store,
            &by_halt,
            "1.2",
            vec![DIGEST.into()],
            "bad",
            person(),
        )
        .await
        .expect("halt");
        let newest = store
            .get_manifest(&halted.manifest_digest)
            .await
            .expect("newest manifest");
        let by_document = halts::Floor {
            min_sequence: halted.list.sequence,
            held: None,
        };
        let by_held = halts::Floor {
            min_sequence: 0,
            held: Some(&halted.list),
        };

        // The older, graph-signed list put back under the tag.
        retag(&store, &old).await;
        for floor in [&by_document, &by_held] {
            let err = halts::refresh_above(&store, &by_graph, floor)
                .await
                .expect_err("an older list is not renewed");
            assert_eq!(err.kind(), "halts_replayed", "{err}");
            let err = halts::add_above(
                &store,
                &by_halt,
                floor,
                "1.3",
                vec![OTHER.into()],
                "bad",
                person(),
            )
            .await
            .expect_err("nor added to");
            assert_eq!(err.kind(), "halts_replayed", "{err}");
        }
        // Newer, but without the held halt: refused whoever signed it.
        let mut dropped = halted.list.clone();
        dropped.entries.clear();
        dropped.sequence += 1;
        let head = store
            .resolve(HALT_TAG)
            .await
            .expect("head")
            .map(|h| h.digest);
        halts::publish(&store, &dropped, head, &by_graph.publish)
            .await
            .expect("a graph-signed list without the halt");
        let err = halts::refresh_above(&store, &by_graph, &by_held)
            .await
            .expect_err("a list dropping a held halt");
        assert_eq!(err.kind(), "halts_dropped_entry", "{err}");

        // The tag deleted: no new, empty first list.
        retag(&store, &newest).await;
        skopeo(&[
            "delete",
            "--tls-verify=false",
            &format!("docker://{}/acme/os-halts:{HALT_TAG}", registry.host),
        ]);
        assert!(store.resolve(HALT_TAG).await.expect("resolve").is_none());
        for floor in [&by_document, &by_held] {
            let err = halts::refresh_above(&store, &by_graph, floor)
                .await
                .expect_err("a missing list is not re-created");
            assert_eq!(err.kind(), "halts_missing", "{err}");
            assert!(err.to_string().contains("restore it"), "{err}");
        }
        assert!(store.resolve(HALT_TAG).await.expect("resolve").is_none());

        // Restored, then expired: a refresh above both floors renews it.
        retag(&store, &newest).await;
        let mut expired = halted.list.clone();
        expired.sequence += 1;
        expired.expires = Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let head = store
            .resolve(HALT_TAG)
            .await
            .expect("head")
            .map(|h| h.digest);
        halts::publish(&store, &expired, head, &by_graph.publish)
            .await
            .expect("an expired list");
        let renewed = halts::refresh_above(&store, &by_halt, &by_held)
            .await
            .expect("renewed");
        assert!(renewed.list.sequence > expired.sequence);
        assert!(renewed.list.expires > Timestamp::now());
        assert_eq!(renewed.list.entries, halted.list.entries);
    }
}

/// Several signatures per document: one cosign layer per key, and a
/// verifier that counts distinct keys of the role.
mod several_signatures {
    use super::*;
    use cairn_graph::halts::{SignedAs, TrippedBy};
    use cairn_oci::halts::{self, HaltTrust, UpdateOptions};
    use cairn_oci::trust::{SignedRoot, TrustedRoot, build_root};

    async fn publish_signed(
        store: &Store,
        keys: &[SigningKey],
        root_version: u64,
    ) -> document::Published {
        let options = document::PublishOptions {
            tag: TAG,
            identity: &store.describe(),
            keys,
            root_version,
            settle: SETTLE,
            expected: None,
        };
        document::publish(store, cairn_testkit::example_document(24), &options)
            .await
            .unwrap_or_else(|e| panic!("publishing to {}: {e}", store.describe()))
    }

    fn role(keys: &[&SigningKey], root_version: u64, threshold: usize) -> RoleKeys {
        let keys: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
        RoleKeys::new(Role::Graph, root_version, &keys, threshold)
    }

    #[tokio::test]
    async fn a_threshold_counts_distinct_keys_of_the_graph_role() {
        let registry = TestRegistry::start(Auth::None).await;
        let first = SigningKey::generate();
        let second = SigningKey::generate();
        let outsider = SigningKey::generate();
        let both = role(&[&first, &second], 1, 2);

        // Two keys of the role: threshold 2 met, and the document says
        // which root it was signed under.
        let store = registry.store("acme/two-keys");
        let published = publish_signed(&store, &[first.clone(), second.clone()], 1).await;
        assert_eq!(published.document.root_version, 1);
        let fetched = document::fetch(&store, TAG).await.expect("fetch");
        assert_eq!(fetched.signatures.len(), 2, "one signature per key");
        assert_eq!(fetched.document.root_version, 1);
        let signers = Some(both.clone());
        fetched
            .verify("two keys", &policy(&signers, None))
            .expect("two distinct keys of the role signed");

        // The same key twice: two layers, one key.
        let store = registry.store("acme/one-key-twice");
        publish_signed(&store, &[first.clone(), first.clone()], 1).await;
        let fetched = document::fetch(&store, TAG).await.expect("fetch");
        assert_eq!(fetched.signatures.len(), 2, "both layers are read");
        let err = fetched
            .verify("same key twice", &policy(&signers, None))
            .expect_err("one key counts once");
        assert_eq!(err.kind(), "bad_signature", "{err}");
        let message = err.to_string();
        assert!(
            message.contains("1 of the graph role's keys signed, 2 must (root version 1")
                && message.contains(first.verifying_key().key_id().short()),
            "{message}"
        );

        // A key outside the role does not count.
        let store = registry.store("acme/outsider");
        publish_signed(&store, &[first.clone(), outsider.clone()], 1).await;
        let fetched = document::fetch(&store, TAG).await.expect("fetch");
        let err = fetched
            .verify("outsider", &policy(&signers, None))
            .expect_err("the outsider does not count");
        let message = err.to_string();
        assert!(
            message.contains("1 of the graph role's keys signed, 2 must")
                && !message.contains(outsider.verifying_key().key_id().short()),
            "{message}"
        );

        // Signed under a root this reader has not reached: the refusal
        // says which root it needs.
        let store = registry.store("acme/newer-root");
        publish_signed(&store, std::slice::from_ref(&outsider), 3).await;
        let fetched = document::fetch(&store, TAG).await.expect("fetch");
        let err = fetched
            .verify("newer root", &policy(&signers, None))
            .expect_err("no key of root 1 signed");
        let message = err.to_string();
        assert!(
            message.contains("no signature verifies")
                && message.contains("signed under root version 3")
                && message.contains("cairn-root-2"),
            "{message}"
        );
    }

    /// What `cosign verify` checks, written here without Cairn's reader or
    /// verifier: the signature manifest under `sha256-<hex>.sig`, a
    /// simple-signing layer per key naming the document's manifest digest,
    /// and an ECDSA P-256 signature over each payload's exact bytes.
    #[tokio::test]
    async fn signatures_verify_with_an_independent_cosign_format_check() {
        use base64::Engine;
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        use sha2::Digest;

        let registry = TestRegistry::start(Auth::None).await;
        let store = registry.store("acme/cosign");
        let keys = [SigningKey::generate(), SigningKey::generate()];
        let published = publish_signed(&store, &keys, 0).await;

        let http = reqwest::Client::new();
        let base = format!("http://{}/v2/acme/cosign", registry.host);
        let get = |url: String, accept: &'static str| {
            let http = http.clone();
            async move {
                let response = http
                    .get(&url)
                    .header("Accept", accept)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                assert!(
                    response.status().is_success(),
                    "GET {url}: {}",
                    response.status()
                );
                response.bytes().await.expect("body").to_vec()
            }
        };
        const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

        // The tag holds the manifest the signatures must name.
        let manifest = get(format!("{base}/manifests/{TAG}"), OCI_MANIFEST).await;
        let manifest_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
        assert_eq!(manifest_digest, published.manifest_digest);

        let signature_tag = format!("{}.sig", manifest_digest.replacen(':', "-", 1));
        let signature_manifest: serde_json::Value = serde_json::from_slice(
            &get(format!("{base}/manifests/{signature_tag}"), OCI_MANIFEST).await,
        )
        .expect("signature manifest is JSON");
        let layers = signature_manifest["layers"]
            .as_array()
            .expect("layers")
            .clone();
        assert_eq!(layers.len(), 2, "one layer per key: {signature_manifest}");
        let config: serde_json::Value = serde_json::from_slice(
            &get(
                format!(
                    "{base}/blobs/{}",
                    signature_manifest["config"]["digest"]
                        .as_str()
                        .expect("config digest")
                ),
                "*/*",
            )
            .await,
        )
        .expect("config is JSON");
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(2),
            "{config}"
        );

        let publics: Vec<p256::ecdsa::VerifyingKey> = keys
            .iter()
            .map(|key| {
                let pem = key.verifying_key().to_pem().expect("pem");
                p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).expect("a P-256 key")
            })
            .collect();
        let mut verified_by = vec![0; publics.len()];
        for layer in &layers {
            assert_eq!(
                layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json",
                "{layer}"
            );
            let digest = layer["digest"].as_str().expect("layer digest");
            let payload = get(format!("{base}/blobs/{digest}"), "*/*").await;
            assert_eq!(
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(&payload))),
                digest
            );
            let simple: serde_json::Value =
                serde_json::from_slice(&payload).expect("payload is JSON");
            assert_eq!(
                simple["critical"]["type"], "cosign container image signature",
                "{simple}"
            );
            assert_eq!(
                simple["critical"]["image"]["docker-manifest-digest"], manifest_digest,
                "{simple}"
            );
            assert_eq!(
                simple["critical"]["identity"]["docker-reference"],
                format!("{}/acme/cosign", registry.host),
                "{simple}"
            );
            let encoded = layer["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .expect("signature annotation");
            let der = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64");
            let signature = p256::ecdsa::Signature::from_der(&der).expect("DER ECDSA signature");
            for (index, public) in publics.iter().enumerate() {
                if public.verify(&payload, &signature).is_ok() {
                    verified_by[index] += 1;
                }
            }
        }
        assert_eq!(verified_by, vec![1, 1], "each key signed exactly one layer");
    }

    /// A root whose graph role is one key and whose halt role is another.
    fn root(graph: &SigningKey, halt: &SigningKey) -> TrustedRoot {
        let root_keys = [SigningKey::generate(), SigningKey::generate()];
        let root_public: Vec<VerifyingKey> = root_keys.iter().map(|k| k.verifying_key()).collect();
        let content = build_root(
            1,
            Timestamp::now() + SignedDuration::from_hours(24 * 365),
            [
                (&root_public, 2),
                (&[graph.verifying_key()], 1),
                (&[halt.verifying_key()], 1),
            ],
        )
        .expect("root");
        TrustedRoot::pin(SignedRoot::sign(&content, &root_keys).expect("signed")).expect("pinned")
    }

    #[tokio::test]
    async fn a_halt_key_signs_add_only_halt_lists_and_no_document() {
        let registry = TestRegistry::start(Auth::None).await;
        let graph = SigningKey::generate();
        let halt = SigningKey::generate();
        let root = root(&graph, &halt);
        let graph_role = root.role(Role::Graph);
        let halt_role = root.role(Role::Halt);

        let store = registry.store("acme/halt-role");
        let identity = store.describe();
        let halt_keys = [halt.clone()];
        let trusted = TrustedRoot::from_config(&[halt.verifying_key()], &[]);
        let options = UpdateOptions {
            publish: document::PublishOptions {
                tag: "cairn-halts-stable",
                identity: &identity,
                keys: &halt_keys,
                root_version: 1,
                settle: SETTLE,
                expected: None,
            },
            trust: trusted.as_ref(),
            stream: "stable",
            lifetime: halts::DEFAULT_LIFETIME,
            cleared: &[],
            accept_unverified_current: false,
        };
        let added = halts::add(
            &store,
            &options,
            "1.2",
            vec![format!("sha256:{}", "1".repeat(64))],
            "boots failed",
            TrippedBy::Person { who: "ops".into() },
        )
        .await
        .expect("a halt key adds");
        assert_eq!(added.list.root_version, 1);
        let fetched = halts::fetch(&store, "cairn-halts-stable")
            .await
            .expect("fetch");
        let trust = HaltTrust {
            graph: Some(&graph_role),
            halt: Some(&halt_role),
            stream: "stable",
            newest_held: None,
            min_sequence: 0,
            now: Timestamp::now(),
        };
        assert_eq!(
            fetched.verify(&trust).expect("accepted"),
            SignedAs::HaltOnly,
            "a halt key's list may only add"
        );

        // A document signed only by the halt key is refused.
        let store = registry.store("acme/halt-signed-document");
        publish_signed(&store, &halt_keys, 1).await;
        let fetched = document::fetch(&store, TAG).await.expect("fetch");
        let signers = Some(graph_role.clone());
        let err = fetched
            .verify("halt-signed", &policy(&signers, None))
            .expect_err("a halt key does not sign documents");
        assert_eq!(err.kind(), "bad_signature", "{err}");
        assert!(
            err.to_string()
                .contains("0 of the graph role's keys signed, 1 must (root version 1)"),
            "{err}"
        );
        // The graph key's document is accepted under the same root.
        let store = registry.store("acme/graph-signed-document");
        publish_signed(&store, std::slice::from_ref(&graph), 1).await;
        document::fetch(&store, TAG)
            .await
            .expect("fetch")
            .verify("graph-signed", &policy(&signers, None))
            .expect("the graph key signs documents");
    }

    /// A `.sig` file holds one signature per line; blank lines are skipped.
    #[test]
    fn a_signature_file_with_two_lines_meets_threshold_two() {
        let first = SigningKey::generate();
        let second = SigningKey::generate();
        let bytes = bytes::Bytes::from(cairn_testkit::example_document(24).to_json_pretty());
        let lines = format!("{}\n\n{}\n", first.sign(&bytes), second.sign(&bytes));
        let fetched = document::from_bytes(bytes.clone(), Some(lines), "doc.json").expect("parses");
        assert_eq!(fetched.signatures.len(), 2);
        let signers = Some(role(&[&first, &second], 0, 2));
        fetched
            .verify("doc.json", &policy(&signers, None))
            .expect("two keys, two lines");
        let one_line = format!("{}\n", first.sign(&bytes));
        let err = document::from_bytes(bytes, Some(one_line), "doc.json")
            .expect("parses")
            .verify("doc.json", &policy(&signers, None))
            .expect_err("one line is one key");
        assert!(
            err.to_string()
                .contains("1 of the graph role's keys signed, 2 must"),
            "{err}"
        );
    }
}
