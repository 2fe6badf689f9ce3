//! Trust roots stored in a real registry (Debian's docker-registry) and in
//! OCI layouts, and the walk a reader makes through them.

use cairn_oci::layout::Layout;
use cairn_oci::roots::{self, Pushed, WalkError};
use cairn_oci::signing::{SigningKey, VerifyingKey};
use cairn_oci::trust::{Role, RootError, SignedRoot, TrustRoot, TrustedRoot, build_root};
use cairn_oci::{Location, Store};
use cairn_testkit::{Auth, TestRegistry};
use jiff::{SignedDuration, Timestamp};

fn in_a_year() -> Timestamp {
    Timestamp::now() + SignedDuration::from_hours(24 * 365)
}

fn public(keys: &[&SigningKey]) -> Vec<VerifyingKey> {
    keys.iter().map(|k| k.verifying_key()).collect()
}

/// A root: `root` keys with threshold `t`, `graph` keys for graph and halt.
fn content(version: u64, root: &[&SigningKey], t: u32, graph: &[&SigningKey]) -> TrustRoot {
    let (root, graph) = (public(root), public(graph));
    build_root(version, in_a_year(), [(&root, t), (&graph, 1), (&graph, 1)]).expect("builds")
}

fn sign(root: &TrustRoot, by: &[&SigningKey]) -> SignedRoot {
    let keys: Vec<SigningKey> = by.iter().map(|k| (*k).clone()).collect();
    SignedRoot::sign(root, &keys).expect("signs")
}

/// Roots 1 to 3: root keys a+b, then a+c, then c+d (threshold 2 each); the
/// graph key moves from g1 to g3 at version 3.
struct Chain {
    keys: Vec<SigningKey>,
    roots: Vec<SignedRoot>,
}

impl Chain {
    fn new() -> Chain {
        let keys: Vec<SigningKey> = (0..6).map(|_| SigningKey::generate()).collect();
        let [a, b, c, d, g1, g3] = [0, 1, 2, 3, 4, 5].map(|i| &keys[i]);
        let roots = vec![
            sign(&content(1, &[a, b], 2, &[g1]), &[a, b]),
            sign(&content(2, &[a, c], 2, &[g1]), &[a, b, c]),
            sign(&content(3, &[c, d], 2, &[g3]), &[a, c, d]),
        ];
        Chain { keys, roots }
    }

    fn first(&self) -> TrustedRoot {
        TrustedRoot::pin(self.roots[0].clone()).expect("pins")
    }
}

async fn push_all(store: &Store, roots: &[SignedRoot]) {
    let written = roots::push_missing(store, roots)
        .await
        .unwrap_or_else(|e| panic!("pushing roots to {}: {e}", store.describe()));
    assert_eq!(
        written,
        roots.iter().map(|r| r.version()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_reader_pinned_at_root_1_walks_to_root_3_in_a_registry_and_a_layout() {
    let chain = Chain::new();
    let registry = TestRegistry::start(Auth::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let stores = [
        registry.store("acme/os"),
        Store::Layout(Layout::open_or_create(&layout).expect("layout")),
    ];
    for store in &stores {
        push_all(store, &chain.roots).await;
        let walked = roots::walk(store, &chain.first(), Timestamp::now()).await;
        assert!(walked.refused.is_none(), "{:?}", walked.refused);
        assert_eq!(walked.adopted, [2, 3]);
        let graph = walked.trusted().expect("current").role(Role::Graph);
        assert!(graph.contains(&chain.keys[5].verifying_key().key_id()));
        assert!(!graph.contains(&chain.keys[4].verifying_key().key_id()));
        // Walking again from 3 finds nothing new.
        let again = roots::walk(store, &walked.root, Timestamp::now()).await;
        assert!(again.adopted.is_empty() && again.refused.is_none());
    }
    // The same through the document's location.
    let location =
        Location::parse(&format!("oci:{}:cairn-graph-stable", layout.display())).expect("location");
    let walked = roots::walk_location(
        &location,
        &registry.client(),
        &chain.first(),
        Timestamp::now(),
    )
    .await;
    assert_eq!(walked.root.version(), 3);
}

#[tokio::test]
async fn a_check_with_no_new_root_costs_one_request() {
    let chain = Chain::new();
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    push_all(&store, &chain.roots).await;
    let held = roots::walk(&store, &chain.first(), Timestamp::now())
        .await
        .root;
    let before = store.request_count();
    let walked = roots::walk(&store, &held, Timestamp::now()).await;
    assert_eq!(walked.root.version(), 3);
    assert_eq!(
        store.request_count() - before,
        1,
        "one HEAD of cairn-root-4"
    );
}

#[tokio::test]
async fn bad_links_stop_the_walk_where_they_are_and_keep_what_was_verified() {
    let chain = Chain::new();
    let [a, b, c, d, g1, _] = [0, 1, 2, 3, 4, 5].map(|i| &chain.keys[i]);
    let registry = TestRegistry::start(Auth::None).await;

    // Root 2 signed by a key root 1 does not list (and one that it does).
    let store = registry.store("acme/foreign");
    let foreign = sign(&content(2, &[a, c], 2, &[g1]), &[a, c, d]);
    push_all(&store, &[chain.roots[0].clone(), foreign]).await;
    let walked = roots::walk(&store, &chain.first(), Timestamp::now()).await;
    assert_eq!(walked.root.version(), 1);
    let refused = walked.refused.expect("refused");
    assert!(
        matches!(
            &refused,
            WalkError::Root(RootError::Unsigned {
                signer_version: 1,
                ..
            })
        ),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("1 of the root role's keys signed, 2 must"),
        "{refused}"
    );

    // A chain with a gap: 1 and 3 only. Nothing is taken past 1.
    let store = registry.store("acme/gap");
    roots::publish_root(&store, &chain.roots[0])
        .await
        .expect("1");
    roots::publish_root(&store, &chain.roots[2])
        .await
        .expect("3");
    let walked = roots::walk(&store, &chain.first(), Timestamp::now()).await;
    assert_eq!((walked.root.version(), walked.adopted.len()), (1, 0));
    assert!(walked.refused.is_none());

    // Root 2 good, root 3 bad: 2 is kept, with the refusal of 3.
    let store = registry.store("acme/half");
    let bad_three = sign(&content(3, &[c, d], 2, &[g1]), &[c, d]);
    push_all(
        &store,
        &[chain.roots[0].clone(), chain.roots[1].clone(), bad_three],
    )
    .await;
    let walked = roots::walk(&store, &chain.first(), Timestamp::now()).await;
    assert_eq!(
        (walked.root.version(), walked.adopted.clone()),
        (2, vec![2])
    );
    assert_eq!(walked.refused.expect("3 refused").kind(), "root_unsigned");

    // An expired root in the middle is walked through; an expired final root
    // stops trust, naming the version to wait for.
    let store = registry.store("acme/expired");
    let mut old_two = content(2, &[a, b], 2, &[g1]);
    old_two.expires = Timestamp::now() - SignedDuration::from_hours(1);
    let old_two = sign(&old_two, &[a, b]);
    push_all(&store, &[chain.roots[0].clone(), old_two.clone()]).await;
    let walked = roots::walk(&store, &chain.first(), Timestamp::now()).await;
    assert_eq!(walked.root.version(), 2);
    let refused = walked.trusted().expect_err("expired");
    assert_eq!(refused.kind(), "root_expired");
    assert!(refused.to_string().contains("root version 3"), "{refused}");
    let three = sign(&content(3, &[a, b], 2, &[g1]), &[a, b]);
    roots::publish_root(&store, &three).await.expect("3");
    let walked = roots::walk(&store, &chain.first(), Timestamp::now()).await;
    assert_eq!(walked.trusted().expect("current").version(), 3);

    // Never back: a reader at 3 is not moved by root 2 again.
    let error = walked
        .root
        .accept_next(chain.roots[1].clone(), "replayed")
        .expect_err("older");
    assert!(
        matches!(
            error,
            RootError::NotNext {
                held: 3,
                found: 2,
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_published_version_is_never_replaced() {
    let chain = Chain::new();
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    assert_eq!(
        roots::publish_root(&store, &chain.roots[0])
            .await
            .expect("first"),
        Pushed::Written
    );
    assert_eq!(
        roots::publish_root(&store, &chain.roots[0])
            .await
            .expect("again"),
        Pushed::AlreadyThere
    );
    let [a, b, _, _, _, g3] = [0, 1, 2, 3, 4, 5].map(|i| &chain.keys[i]);
    let other = sign(&content(1, &[a, b], 2, &[g3]), &[a, b]);
    let error = roots::publish_root(&store, &other)
        .await
        .expect_err("replaced");
    assert_eq!(error.kind(), "root_replaced");
    let held = roots::fetch_root(&store, 1)
        .await
        .expect("reads")
        .expect("there");
    assert_eq!(held.envelope, chain.roots[0].envelope);
    assert!(roots::fetch_root(&store, 2).await.expect("reads").is_none());
    // A tag holding something else is not a root.
    let spec = cairn_testkit::images::ImageSpec::bootable(
        "x86_64",
        "1.0",
        "stable",
        "2026-01-01T00:00:00Z",
    );
    cairn_testkit::images::write_image(&store, &spec, Some("cairn-root-2")).await;
    let error = roots::fetch_root(&store, 2).await.expect_err("an image");
    assert_eq!(error.kind(), "root_not_a_root");
}

#[tokio::test]
async fn version_zero_from_configured_keys_takes_root_1_only_when_every_key_signed() {
    let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate()).collect();
    let [k1, k2, k3] = [0, 1, 2].map(|i| &keys[i]);
    let zero = TrustedRoot::from_config(&public(&[k1, k2]), &[]).expect("keys");
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/zero");
    let one = content(1, &[k1, k3], 2, &[k3]);
    roots::publish_root(&store, &sign(&one, &[k1, k3]))
        .await
        .expect("1");
    let walked = roots::walk(&store, &zero, Timestamp::now()).await;
    assert_eq!(walked.root.version(), 0);
    assert!(walked.refused.is_some(), "k2 did not sign");

    let store = registry.store("acme/zero-ok");
    roots::publish_root(&store, &sign(&one, &[k1, k2, k3]))
        .await
        .expect("1");
    let walked = roots::walk(&store, &zero, Timestamp::now()).await;
    assert_eq!(walked.trusted().expect("taken").version(), 1);
}

#[test]
fn a_directory_of_roots_must_chain_from_1() {
    let chain = Chain::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |version: u64, root: &SignedRoot| {
        std::fs::write(
            dir.path().join(roots::root_file_name(version)),
            &root.envelope,
        )
        .expect("write")
    };
    let error = roots::read_chain_dir(dir.path()).expect_err("empty");
    assert!(error.to_string().contains("cairn root init"), "{error}");
    write(1, &chain.roots[0]);
    write(3, &chain.roots[2]);
    let error = roots::read_chain_dir(dir.path()).expect_err("gap");
    assert!(
        error.to_string().contains("root version 2 is missing"),
        "{error}"
    );
    write(2, &chain.roots[1]);
    let read = roots::read_chain_dir(dir.path()).expect("chain");
    assert_eq!(
        read.iter().map(|r| r.version()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // A file under the wrong number.
    write(4, &chain.roots[2]);
    let error = roots::read_chain_dir(dir.path()).expect_err("misnamed");
    assert!(
        error.to_string().contains("holds root version 3"),
        "{error}"
    );
}

#[tokio::test]
async fn a_reader_far_behind_walks_on_over_several_checks_and_trusts_nothing_until_current() {
    let key = SigningKey::generate();
    let versions = cairn_oci::trust::MAX_ROOT_WALK + 3;
    let chain: Vec<SignedRoot> = (1..=versions)
        .map(|v| sign(&content(v, &[&key], 1, &[&key]), &[&key]))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::Layout(Layout::open_or_create(dir.path()).expect("layout"));
    push_all(&store, &chain).await;
    let first = TrustedRoot::pin(chain[0].clone()).expect("pins");
    let walked = roots::walk(&store, &first, Timestamp::now()).await;
    assert_eq!(walked.root.version(), 1 + cairn_oci::trust::MAX_ROOT_WALK);
    let behind = walked.trusted().expect_err("not current");
    assert_eq!(behind.kind(), "root_behind");
    let walked = roots::walk(&store, &walked.root, Timestamp::now()).await;
    assert_eq!(walked.trusted().expect("current").version(), versions);
}

#[test]
fn two_files_of_one_version_are_named() {
    let chain = Chain::new();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("1.root.json"), &chain.roots[0].envelope).expect("write");
    std::fs::write(dir.path().join("01.root.json"), &chain.roots[0].envelope).expect("write");
    let error = roots::read_chain_dir(dir.path()).expect_err("two files");
    assert!(error.to_string().contains("both hold version 1"), "{error}");
}

mod property {
    //! Roots, documents and halt lists judged by the code and by a small
    //! reference model of TUF's rules that knows keys only as indices into a
    //! pool: a next root counts when its version is exactly N+1 and a
    //! threshold of N's root keys and of its own signed it, each key once;
    //! a document or list counts only through the newest root's roles. The
    //! thresholds vary from 1 to 3, so "one key is enough" is never assumed.

    use super::*;
    use bytes::Bytes;
    use cairn_graph::halts::{HaltList, SignedAs};
    use cairn_oci::document::{FetchedDocument, Signed, TrustPolicy};
    use cairn_oci::halts::{FetchedHaltList, HaltTrust};
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::OnceLock;

    const POOL: usize = 6;

    fn pool() -> &'static [SigningKey] {
        static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
        KEYS.get_or_init(|| (0..POOL).map(|_| SigningKey::generate()).collect())
    }

    /// A role as the model sees it: pool indices and a threshold.
    #[derive(Debug, Clone)]
    struct ModelRole {
        keys: BTreeSet<usize>,
        threshold: usize,
    }

    impl ModelRole {
        /// From a non-empty bit mask over the pool; the threshold is capped
        /// at the number of keys, as a root may not ask for more.
        fn new(mask: u8, threshold: usize) -> ModelRole {
            let keys: BTreeSet<usize> = (0..POOL).filter(|i| mask & (1 << i) != 0).collect();
            let threshold = threshold.min(keys.len());
            ModelRole { keys, threshold }
        }

        /// Met by these signers, each distinct key counted once.
        fn met_by(&self, signers: &[usize]) -> bool {
            let distinct: BTreeSet<usize> = signers.iter().copied().collect();
            self.keys.intersection(&distinct).count() >= self.threshold
        }

        fn public(&self) -> Vec<VerifyingKey> {
            self.keys
                .iter()
                .map(|&i| pool()[i].verifying_key())
                .collect()
        }

        fn ids(&self) -> BTreeSet<String> {
            self.keys
                .iter()
                .map(|&i| pool()[i].verifying_key().key_id().to_string())
                .collect()
        }
    }

    #[derive(Debug, Clone)]
    struct ModelRoot {
        version: u64,
        root: ModelRole,
        graph: ModelRole,
        halt: ModelRole,
    }

    impl ModelRoot {
        /// TUF's rule for taking `next` after this root.
        fn accepts(&self, next: &ModelRoot, signers: &[usize]) -> bool {
            Some(next.version) == self.version.checked_add(1)
                && self.root.met_by(signers)
                && next.root.met_by(signers)
        }

        fn content(&self) -> TrustRoot {
            let threshold = |role: &ModelRole| u32::try_from(role.threshold).expect("small");
            build_root(
                self.version,
                in_a_year(),
                [
                    (&self.root.public(), threshold(&self.root)),
                    (&self.graph.public(), threshold(&self.graph)),
                    (&self.halt.public(), threshold(&self.halt)),
                ],
            )
            .expect("builds")
        }

        fn signed(&self, signers: &[usize]) -> SignedRoot {
            let keys: Vec<SigningKey> = signers.iter().map(|&i| pool()[i].clone()).collect();
            SignedRoot::sign(&self.content(), &keys).expect("signs")
        }
    }

    /// A role: a non-empty key mask and a threshold of 1 to 3.
    fn role() -> impl Strategy<Value = (u8, usize)> {
        (1u8..(1 << POOL), 1usize..=3)
    }

    /// Who signs: pool indices, repeats allowed (they must count once).
    fn signers() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0..POOL, 0..8)
    }

    fn model_root(version: u64, roles: [(u8, usize); 3]) -> ModelRoot {
        let [root, graph, halt] = roles.map(|(mask, threshold)| ModelRole::new(mask, threshold));
        ModelRoot {
            version,
            root,
            graph,
            halt,
        }
    }

    fn signed_by(message: &Bytes, signers: &[usize]) -> Vec<Signed> {
        signers
            .iter()
            .map(|&i| Signed {
                message: message.clone(),
                signature: pool()[i].sign(message),
            })
            .collect()
    }

    fn document() -> FetchedDocument {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/examples/stable.json");
        let bytes = Bytes::from(std::fs::read(path).expect("example"));
        let document = cairn_graph::GraphDocument::from_json(&bytes)
            .expect("parses")
            .document;
        FetchedDocument {
            bytes,
            document,
            manifest_digest: None,
            signatures: Vec::new(),
            unusable_signatures: Vec::new(),
            ignored_fields: Vec::new(),
        }
    }

    fn halt_list() -> FetchedHaltList {
        let list = HaltList::successor(
            None,
            "stable",
            None,
            Timestamp::now(),
            SignedDuration::from_hours(1),
        )
        .expect("a list");
        FetchedHaltList {
            source_name: "list".into(),
            bytes: Bytes::from(serde_json::to_vec(&list).expect("JSON")),
            list,
            manifest_digest: None,
            signatures: Vec::new(),
            unusable_signatures: Vec::new(),
        }
    }

    /// How the model says a halt list signed by `signers` counts.
    fn model_list(held: &ModelRoot, signers: &[usize]) -> Option<SignedAs> {
        if held.graph.met_by(signers) {
            Some(SignedAs::Graph)
        } else if held.halt.met_by(signers) {
            Some(SignedAs::HaltOnly)
        } else {
            None
        }
    }

    /// Roles as (key mask, threshold), the version's distance, and three
    /// lists of signers.
    type Step = ([(u8, usize); 3], u64, Vec<usize>, Vec<usize>, Vec<usize>);

    /// One offered root: its roles, the version's distance from the one
    /// held (0: the same again, 1: the next, 2: a gap), and its signers;
    /// then who signs a document and a halt list under the root held after.
    fn step() -> impl Strategy<Value = Step> {
        (
            [role(), role(), role()],
            prop_oneof![1 => Just(0u64), 4 => Just(1u64), 1 => Just(2u64)],
            signers(),
            signers(),
            signers(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn accept_next_and_the_roles_after_it_agree_with_the_model(
            first in [role(), role(), role()],
            steps in proptest::collection::vec(step(), 1..7),
        ) {
            let mut model = model_root(1, first);
            // Pinned: a start is trusted as given, whoever signed it.
            let mut held = TrustedRoot::pin(model.signed(&[])).expect("pins");
            let now = Timestamp::now();
            for (roles, skew, root_signers, doc_signers, list_signers) in steps {
                let offered = model_root(model.version + skew, roles);
                let expected = model.accepts(&offered, &root_signers);
                let taken = held.accept_next(offered.signed(&root_signers), "offered");
                prop_assert_eq!(taken.is_ok(), expected, "{:?}", taken.as_ref().err());
                if let Ok(next) = taken {
                    held = next;
                    model = offered;
                }
                prop_assert_eq!(held.version(), model.version);
                let ids = |role: Role| -> BTreeSet<String> {
                    held.role(role).key_ids().map(|id| id.to_string()).collect()
                };
                prop_assert_eq!(ids(Role::Graph), model.graph.ids());
                prop_assert_eq!(ids(Role::Halt), model.halt.ids());

                let mut fetched = document();
                fetched.signatures = signed_by(&fetched.bytes, &doc_signers);
                let graph = held.role(Role::Graph);
                let policy = TrustPolicy {
                    signers: Some(&graph),
                    allow_unsigned: false,
                    now: fetched.document.issued,
                    last_seen: None,
                    stream: None,
                };
                let verified = fetched.verify("document", &policy);
                prop_assert_eq!(verified.is_ok(), model.graph.met_by(&doc_signers), "{:?}", verified.err());

                let mut list = halt_list();
                list.signatures = signed_by(&list.bytes, &list_signers);
                let halt = held.role(Role::Halt);
                let trust = HaltTrust {
                    graph: Some(&graph),
                    halt: Some(&halt),
                    stream: "stable",
                    newest_held: None,
                    min_sequence: 0,
                    now,
                };
                prop_assert_eq!(list.verify(&trust).ok(), model_list(&model, &list_signers));
            }
        }

        #[test]
        fn a_walk_takes_exactly_the_versions_the_model_takes(
            first in [role(), role(), role()],
            links in proptest::collection::vec(([role(), role(), role()], signers()), 1..6),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::Layout(Layout::open_or_create(dir.path()).expect("layout"));
            let start = model_root(1, first);
            // Every version is published under its tag, however badly signed.
            let mut chain = Vec::new();
            for (version, (roles, signers)) in (2u64..).zip(&links) {
                let root = model_root(version, *roles);
                let signed = root.signed(signers);
                runtime
                    .block_on(roots::publish_root(&store, &signed))
                    .expect("publishes");
                chain.push((root, signers.clone()));
            }
            let mut model = start.clone();
            let mut expected = Vec::new();
            for (next, signers) in &chain {
                if !model.accepts(next, signers) {
                    break;
                }
                expected.push(next.version);
                model = next.clone();
            }
            let pinned = TrustedRoot::pin(start.signed(&[])).expect("pins");
            let walked = runtime.block_on(roots::walk(&store, &pinned, Timestamp::now()));
            prop_assert_eq!(&walked.adopted, &expected);
            prop_assert_eq!(walked.root.version(), model.version);
            // Stopped short exactly when a published link was refused.
            let stopped = expected.len() < chain.len();
            prop_assert_eq!(walked.refused.is_some(), stopped, "{:?}", walked.refused);
            if let Some(refused) = &walked.refused {
                prop_assert_eq!(refused.kind(), "root_unsigned");
            }
            let graph: BTreeSet<String> = walked
                .root
                .role(Role::Graph)
                .key_ids()
                .map(|id| id.to_string())
                .collect();
            prop_assert_eq!(graph, model.graph.ids());
        }
    }
}

/// A base graph given with `base_keys` starts from the version 0 those keys
/// make and walks the base document's repository: once a root removes the
/// key, a base document it signs is refused, and one signed by the key the
/// root brought in is read though no configured key names it.
#[tokio::test]
async fn a_base_graph_follows_its_repositorys_roots() {
    use cairn_oci::document::PublishOptions;
    use cairn_oci::sources::{BaseRead, BaseSource, read_base_graph, read_base_graph_rooted};
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/base");
    let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate()).collect();
    let [a, b, g1, g2] = [0, 1, 2, 3].map(|i| &keys[i]);
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples/stable.json");
    let mut document =
        cairn_graph::GraphDocument::from_json(&std::fs::read(path).expect("example"))
            .expect("parses")
            .document;
    document.issued = Timestamp::now();
    document.expires = document.issued + SignedDuration::from_hours(24);
    let publish = |key: &SigningKey| {
        let (store, document, key) = (store.clone(), document.clone(), key.clone());
        async move {
            let options = PublishOptions {
                tag: "cairn-graph-stable",
                identity: "acme/base",
                keys: std::slice::from_ref(&key),
                root_version: 0,
                settle: std::time::Duration::ZERO,
                expected: None,
            };
            cairn_oci::document::publish(&store, document, &options)
                .await
                .expect("publish");
        }
    };
    let source = BaseSource::parse(&format!("{}/acme/base:cairn-graph-stable", registry.host))
        .expect("source");
    let base_keys = [g1.verifying_key()];
    let read = BaseRead {
        keys: &base_keys,
        allow_unsigned: false,
        now: Timestamp::now(),
        arch: "",
    };
    // Root 1 follows the version 0 of the base key (g1 signs it), root 2
    // drops g1 for g2.
    let one = sign(&content(1, &[a, b], 2, &[g1]), &[g1, a, b]);
    let two = sign(&content(2, &[a, b], 2, &[g2]), &[a, b]);
    push_all(&store, &[one, two]).await;

    publish(g1).await;
    let refused = read_base_graph(&registry.client(), &source, &read)
        .await
        .expect_err("g1 was removed by root 2");
    assert_eq!(refused.kind(), "bad_signature", "{refused}");
    assert!(
        refused.to_string().contains("base trust root version 2"),
        "{refused}"
    );

    publish(g2).await;
    let mut held = None;
    read_base_graph_rooted(&registry.client(), &source, &read, None, &mut held)
        .await
        .expect("g2 signs under root 2");
    assert_eq!(held.as_ref().map(TrustedRoot::version), Some(2));

    // Walking on from the root held: an expired final root is refused.
    let later = BaseRead {
        now: in_a_year() + SignedDuration::from_hours(1),
        ..read
    };
    let expired = read_base_graph_rooted(&registry.client(), &source, &later, None, &mut held)
        .await
        .expect_err("root 2 expired");
    assert_eq!(expired.kind(), "root_expired", "{expired}");
    assert_eq!(held.as_ref().map(TrustedRoot::version), Some(2));
}

/// A base chain longer than one walk's cap: the first read is refused as
/// behind, but keeps the roots it verified, so the next read walks on from
/// there and takes the document; it never starts from version 0 again.
#[tokio::test]
async fn a_base_graph_far_behind_is_read_over_several_calls() {
    use cairn_oci::document::PublishOptions;
    use cairn_oci::sources::{BaseRead, BaseSource, read_base_graph_rooted};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::Layout(Layout::open_or_create(dir.path()).expect("layout"));
    let key = SigningKey::generate();
    let versions = cairn_oci::trust::MAX_ROOT_WALK + 3;
    let chain: Vec<SignedRoot> = (1..=versions)
        .map(|v| sign(&content(v, &[&key], 1, &[&key]), &[&key]))
        .collect();
    push_all(&store, &chain).await;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples/stable.json");
    let mut document =
        cairn_graph::GraphDocument::from_json(&std::fs::read(path).expect("example"))
            .expect("parses")
            .document;
    document.issued = Timestamp::now();
    document.expires = document.issued + SignedDuration::from_hours(24);
    let options = PublishOptions {
        tag: "cairn-graph-stable",
        identity: "acme/base",
        keys: std::slice::from_ref(&key),
        root_version: versions,
        settle: std::time::Duration::ZERO,
        expected: None,
    };
    cairn_oci::document::publish(&store, document, &options)
        .await
        .expect("publish");
    let source = BaseSource::parse(&format!("oci:{}:cairn-graph-stable", dir.path().display()))
        .expect("source");
    let base_keys = [key.verifying_key()];
    let read = BaseRead {
        keys: &base_keys,
        allow_unsigned: false,
        now: Timestamp::now(),
        arch: "",
    };
    let client =
        cairn_oci::RegistryClient::new(cairn_oci::ClientOptions::default()).expect("client");
    let mut held = None;
    let behind = read_base_graph_rooted(&client, &source, &read, None, &mut held)
        .await
        .expect_err("more roots than one walk takes");
    assert_eq!(behind.kind(), "root_behind", "{behind}");
    // Version 0 of the base keys, then as many versions as one walk takes.
    assert_eq!(
        held.as_ref().map(TrustedRoot::version),
        Some(cairn_oci::trust::MAX_ROOT_WALK)
    );
    let read_on = read_base_graph_rooted(&client, &source, &read, None, &mut held)
        .await
        .expect("the walk goes on from the root held");
    assert!(read_on.seen.is_some());
    assert_eq!(held.as_ref().map(TrustedRoot::version), Some(versions));
}
