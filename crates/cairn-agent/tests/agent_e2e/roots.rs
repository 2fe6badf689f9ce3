//! Trust roots on a host, through whole passes (`run_once`) against a real
//! registry and OCI layouts: where a host starts (stored, shipped), the walk
//! before each document is verified, and what is refused with no action.
//!
//! Keys: root keys a, b, c, d; graph keys g1 (the fleet's graph key) and
//! g3; the halt key h. Root 1: root a+b (2), graph g1. Root 2: root a+c
//! (2), graph g1. Root 3: root c+d (2), graph g3 (g1 removed).

use super::halts::{Halting, refused_kind};
use super::*;
use cairn_agent::status::AgentStatus;
use cairn_agent::store::AgentState;
use cairn_oci::Store;
use cairn_oci::document::PublishOptions;
use cairn_oci::layout::Layout;
use cairn_oci::roots;
use cairn_oci::signing::{SigningKey, VerifyingKey};
use cairn_oci::trust::{SignedRoot, build_root};

struct Rooted {
    h: Halting,
    a: SigningKey,
    b: SigningKey,
    c: SigningKey,
    d: SigningKey,
    g3: SigningKey,
    roots: Vec<SignedRoot>,
}

fn public(keys: &[&SigningKey]) -> Vec<VerifyingKey> {
    keys.iter().map(|k| k.verifying_key()).collect()
}

fn in_a_year() -> Timestamp {
    Timestamp::now() + SignedDuration::from_hours(24 * 365)
}

/// Root `version`: `root` keys at threshold 2, `graph` keys for the graph
/// role, `halt` and `graph` keys for the halt role; signed by `by`.
fn root(
    version: u64,
    expires: Timestamp,
    keys: [&[&SigningKey]; 3],
    by: &[&SigningKey],
) -> SignedRoot {
    let [root_keys, graph, halt] = keys;
    let halt: Vec<&SigningKey> = halt.iter().chain(graph).copied().collect();
    let content = build_root(
        version,
        expires,
        [
            (&public(root_keys), 2),
            (&public(graph), 1),
            (&public(&halt), 1),
        ],
    )
    .expect("root builds");
    let by: Vec<SigningKey> = by.iter().map(|k| (*k).clone()).collect();
    SignedRoot::sign(&content, &by).expect("root signs")
}

fn envelope(root: &SignedRoot) -> String {
    String::from_utf8(root.envelope.to_vec()).expect("UTF-8")
}

impl Rooted {
    async fn new() -> Rooted {
        let h = Halting::new().await;
        let [a, b, c, d, g3] = [(); 5].map(|()| SigningKey::generate());
        let (g1, hk) = (&h.graph_key, &h.halt_key);
        let roots = vec![
            root(1, in_a_year(), [&[&a, &b], &[g1], &[hk]], &[&a, &b]),
            root(2, in_a_year(), [&[&a, &c], &[g1], &[hk]], &[&a, &b, &c]),
            root(3, in_a_year(), [&[&c, &d], &[&g3], &[hk]], &[&a, &c, &d]),
        ];
        Rooted {
            h,
            a,
            b,
            c,
            d,
            g3,
            roots,
        }
    }

    /// The fleet's document (no halt list), signed with `key`, in `store`.
    async fn publish(&self, store: &Store, key: &SigningKey) {
        let mut document = self.h.fleet.document.clone();
        document.issued = Timestamp::now();
        document.sequence += 1;
        let options = PublishOptions {
            tag: "cairn-graph-stable",
            identity: &self.h.fleet.repo,
            keys: std::slice::from_ref(key),
            root_version: 0,
            settle: Duration::ZERO,
            expected: None,
        };
        cairn_oci::document::publish(store, document, &options)
            .await
            .expect("publish the document");
    }

    /// A layout holding the document signed with `key` and `roots`.
    async fn layout(&self, key: &SigningKey, roots: &[SignedRoot]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::Layout(Layout::open_or_create(dir.path()).expect("layout"));
        self.publish(&store, key).await;
        roots::push_missing(&store, roots).await.expect("roots");
        let source = format!("registry:oci:{}:cairn-graph-stable", dir.path().display());
        (dir, source)
    }

    /// A node on 44.2 (44.3's rollout reaches it), with `source` if given
    /// and root `stored` in its state. Its configured key is a stranger's,
    /// which a held root makes irrelevant.
    fn node(&self, source: Option<&str>, stored: Option<&SignedRoot>) -> Node {
        let mut config = format!("[updates]\nkeys = [\"{}\"]\n", self.h.key_path("nobody"));
        std::fs::write(
            self.h.key_path("nobody"),
            self.h.stranger.verifying_key().to_pem().expect("PEM"),
        )
        .expect("write key");
        if let Some(source) = source {
            config.push_str(&format!("source = \"{source}\"\n"));
        }
        config.push_str("[identity]\nrollout_wariness = 0.2\n");
        let n = node(&self.h.fleet, 1, 0.2, &config);
        if let Some(stored) = stored {
            std::fs::create_dir_all(&n.state_dir).expect("state dir");
            let state = AgentState {
                trust_root: Some(envelope(stored)),
                ..AgentState::default()
            };
            state.save(&n.state_dir).expect("save the state");
        }
        n
    }

    fn ship(&self, n: &Node, root: &SignedRoot) {
        let path = n.config_root.join("usr/lib/cairn/root.json");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, &root.envelope).expect("ship the root");
    }
}

/// The root version the node's state holds.
fn stored_version(n: &Node) -> Option<u64> {
    let state = AgentState::load(&n.state_dir).expect("state");
    let text = state.trust_root?;
    let signed = SignedRoot::from_envelope(bytes_of(text), "state").expect("stored root");
    Some(signed.version())
}

fn bytes_of(text: String) -> bytes::Bytes {
    bytes::Bytes::from(text.into_bytes())
}

fn root_version(status: &AgentStatus) -> Option<u64> {
    status.trust_root.as_ref().map(|r| r.version)
}

/// Refused before anything is staged: the cause, and the message names
/// the root version held.
fn assert_refused(n: &Node, status: &AgentStatus, cause: &str, version: u64) {
    assert_eq!(status.reason.kind, ReasonKind::SourceError, "{status:?}");
    assert_eq!(status.reason.cause.as_deref(), Some(cause), "{status:?}");
    assert!(
        status
            .reason
            .message
            .contains(&format!("trust root version {version}")),
        "{}",
        status.reason.message
    );
    assert_eq!(staged(n), None, "{:?}", n.host.state().calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_at_root_1_walks_to_root_3_and_takes_a_key_root_3_introduced() {
    let r = Rooted::new().await;
    let registry = r.h.fleet.registry.store("acme/os");
    r.publish(&registry, &r.g3).await;
    roots::push_missing(&registry, &r.roots)
        .await
        .expect("roots");
    // Stored root 1, reading the registry the host follows.
    let stored = r.node(None, Some(&r.roots[0]));
    let status = r.h.once(&stored).await;
    assert_eq!(
        staged(&stored).as_deref(),
        Some(r.h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    let trust = status.trust_root.as_ref().expect("trust root status");
    assert_eq!((trust.version, trust.origin.as_str()), (3, "walked"));
    assert!(trust.configured_keys_ignored);
    assert_eq!(
        trust.roles["graph"].keys,
        vec![r.g3.verifying_key().key_id().to_string()]
    );
    let text = status.render();
    assert!(
        text.contains("updates.keys is ignored: trust root version 3 is held"),
        "{text}"
    );
    assert_eq!(stored_version(&stored), Some(3));
    // Root 1 shipped in the image and nothing stored; from an `oci:` layout.
    let (_dir, source) = r.layout(&r.g3, &r.roots).await;
    let shipped = r.node(Some(&source), None);
    r.ship(&shipped, &r.roots[0]);
    let status = r.h.once(&shipped).await;
    assert_eq!(
        staged(&shipped).as_deref(),
        Some(r.h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    assert_eq!(root_version(&status), Some(3));
    assert_eq!(stored_version(&shipped), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_roots_are_refused_and_nothing_is_done() {
    let r = Rooted::new().await;
    let g1 = &r.h.graph_key;
    let stranger = &r.h.stranger;
    let first = &r.roots[0];
    let next = |by: &[&SigningKey]| root(2, in_a_year(), [&[&r.a, &r.c], &[g1], &[]], by);
    // Root 2 signed by a key root 1 does not list (with a, one short).
    let (_dir, source) = r
        .layout(g1, &[first.clone(), next(&[&r.a, stranger, &r.c])])
        .await;
    let n = r.node(Some(&source), Some(first));
    assert_refused(&n, &r.h.once(&n).await, "root_unsigned", 1);
    assert_eq!(stored_version(&n), Some(1));
    // Below root 1's threshold: a alone of a+b.
    let (_dir, source) = r.layout(g1, &[first.clone(), next(&[&r.a, &r.c])]).await;
    let n = r.node(Some(&source), Some(first));
    assert_refused(&n, &r.h.once(&n).await, "root_unsigned", 1);
    // Below the new root's own threshold: a and b sign, c (root 2's) not.
    let (_dir, source) = r.layout(g1, &[first.clone(), next(&[&r.a, &r.b])]).await;
    let n = r.node(Some(&source), Some(first));
    assert_refused(&n, &r.h.once(&n).await, "root_unsigned", 1);
    // A gap: root 3 is there, root 2 is not. The walk ends at 1, and g3's
    // document does not verify under it.
    let (_dir, source) = r.layout(&r.g3, &[first.clone(), r.roots[2].clone()]).await;
    let n = r.node(Some(&source), Some(first));
    assert_refused(&n, &r.h.once(&n).await, "bad_signature", 1);
    assert_eq!(stored_version(&n), Some(1));
    // An expired final root: taken and stored (it is verified), but
    // nothing it would sign is trusted.
    let past = Timestamp::now() - SignedDuration::from_hours(1);
    let expired = root(2, past, [&[&r.a, &r.c], &[g1], &[]], &[&r.a, &r.b, &r.c]);
    let (_dir, source) = r.layout(g1, &[first.clone(), expired]).await;
    let n = r.node(Some(&source), Some(first));
    let status = r.h.once(&n).await;
    assert_refused(&n, &status, "root_expired", 2);
    assert_eq!(stored_version(&n), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_a_newer_root_removed_stops_counting_even_before_the_host_walked() {
    let r = Rooted::new().await;
    let g1 = &r.h.graph_key;
    // Root 3 is published, the document is still signed by g1 (under root
    // 1); the host holds root 1 and walks in this very check.
    let (_dir, source) = r.layout(g1, &r.roots).await;
    let n = r.node(Some(&source), Some(&r.roots[0]));
    let status = r.h.once(&n).await;
    assert_refused(&n, &status, "bad_signature", 3);
    assert_eq!(root_version(&status), Some(3));
    assert_eq!(stored_version(&n), Some(3));
    // A document trusted under root 2 no longer verifies once root 3 is out.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::Layout(Layout::open_or_create(dir.path()).expect("layout"));
    r.publish(&store, g1).await;
    roots::push_missing(&store, &r.roots[..2])
        .await
        .expect("roots");
    let source = format!("registry:oci:{}:cairn-graph-stable", dir.path().display());
    let n = r.node(Some(&source), Some(&r.roots[0]));
    let status = r.h.once(&n).await;
    assert_eq!(root_version(&status), Some(2), "{status:?}");
    assert_eq!(
        staged(&n).as_deref(),
        Some(r.h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    let calls = n.host.state().calls.len();
    roots::publish_root(&store, &r.roots[2])
        .await
        .expect("root 3");
    let status = r.h.once(&n).await;
    assert_eq!(
        status.reason.cause.as_deref(),
        Some("bad_signature"),
        "{status:?}"
    );
    assert!(
        status.reason.message.contains("trust root version 3"),
        "{}",
        status.reason.message
    );
    let after = n.host.state().calls;
    assert!(
        !after[calls..]
            .iter()
            .any(|c| c.contains("switch") || c.contains("--apply")),
        "no action: {after:?}"
    );
    // Rolling back: a source that serves only root 1 and a document g1
    // signed. The state keeps root 3, and the document stays refused.
    let (_dir, source) = r.layout(g1, &r.roots[..1]).await;
    std::fs::write(
        n.config_root.join("etc/cairn/config.d/60-back.toml"),
        format!("[updates]\nsource = \"{source}\"\n"),
    )
    .expect("write config");
    r.ship(&n, &r.roots[0]);
    let status = r.h.once(&n).await;
    assert_eq!(
        status.reason.cause.as_deref(),
        Some("bad_signature"),
        "{status:?}"
    );
    assert_eq!(root_version(&status), Some(3));
    assert_eq!(stored_version(&n), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_root_signed_by_graph_keys_does_not_replace_the_stored_root() {
    let r = Rooted::new().await;
    let g1 = &r.h.graph_key;
    // A graph-key holder's root 2: g1 as the only root key, signed by g1.
    let grab = {
        let content = build_root(
            2,
            in_a_year(),
            [
                (&public(&[g1]), 1),
                (&public(&[g1]), 1),
                (&public(&[g1]), 1),
            ],
        )
        .expect("builds");
        SignedRoot::sign(&content, std::slice::from_ref(g1)).expect("signs")
    };
    let (_dir, source) = r.layout(g1, &r.roots[..1]).await;
    let n = r.node(Some(&source), Some(&r.roots[0]));
    r.ship(&n, &grab);
    let status = r.h.once(&n).await;
    let trust = status.trust_root.as_ref().expect("trust root status");
    assert_eq!(
        (trust.version, trust.origin.as_str()),
        (1, "stored"),
        "{status:?}"
    );
    let note = trust.note.as_deref().unwrap_or_default();
    assert!(note.contains("was not taken"), "{note}");
    assert_eq!(stored_version(&n), Some(1));
    // The document signed by g1 under root 1 is still taken.
    assert_eq!(
        staged(&n).as_deref(),
        Some(r.h.fleet.digests[2].as_str()),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_key_signs_halt_lists_and_never_documents() {
    let r = Rooted::new().await;
    // The document with halt lists on (Halting's, signed by g1), root 1 in
    // the registry, a host storing root 1.
    roots::push_missing(&r.h.fleet.registry.store("acme/os"), &r.roots[..1])
        .await
        .expect("roots");
    let n = r.node(None, Some(&r.roots[0]));
    r.h.halt("44.3", &r.h.fleet.digests[2]).await;
    let status = r.h.once(&n).await;
    assert_eq!(refused_kind(&status), None, "{status:?}");
    assert_eq!(status.reason.kind, ReasonKind::TargetHalted, "{status:?}");
    assert_eq!(staged(&n), None);
    // A document signed only by the halt key: refused.
    r.publish(&r.h.fleet.registry.store("acme/os"), &r.h.halt_key)
        .await;
    let status = r.h.once(&n).await;
    assert_refused(&n, &status, "bad_signature", 1);
}

/// Point the node's `registries.conf` for the fleet's repository at
/// `location` (the repository itself), with `mirror/os` as its mirror.
fn mirrored(n: &Node, host: &str, location: &str) {
    let conf = n.config_root.join("etc/containers/registries.conf");
    std::fs::create_dir_all(conf.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"{host}/acme/os\"\nlocation = \"{location}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{host}/mirror/os\"\ninsecure = true\n"
        ),
    )
    .expect("registries.conf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_without_the_root_chain_keeps_the_stored_root_and_says_what_is_missing() {
    let r = Rooted::new().await;
    let host = r.h.fleet.registry.host.clone();
    let origin = r.h.fleet.registry.store("acme/os");
    r.publish(&origin, &r.g3).await;
    roots::push_missing(&origin, &r.roots).await.expect("roots");
    // The mirror has the document, not the roots.
    r.publish(&r.h.fleet.registry.store("mirror/os"), &r.g3)
        .await;
    let n = r.node(None, Some(&r.roots[0]));
    mirrored(&n, &host, &format!("{host}/acme/os"));
    let status = r.h.once(&n).await;
    assert_refused(&n, &status, "root_missing_at_mirror", 1);
    let message = &status.reason.message;
    assert!(message.contains("cairn-root-2"), "{message}");
    assert!(message.contains("mirror/os"), "{message}");
    assert_eq!(stored_version(&n), Some(1));
    let note = status
        .trust_root
        .as_ref()
        .and_then(|t| t.note.clone())
        .unwrap_or_default();
    assert!(note.contains("cairn-root-2"), "{note}");
    let _ = (&r.d, &r.b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_without_the_next_root_cannot_keep_a_removed_key_counting() {
    let r = Rooted::new().await;
    let g1 = &r.h.graph_key;
    let host = r.h.fleet.registry.host.clone();
    // Root 2 drops g1 for g3; the mirror serves a document g1 signed and
    // only root 1.
    let hk = &r.h.halt_key;
    let without_g1 = root(
        2,
        in_a_year(),
        [&[&r.a, &r.c], &[&r.g3], &[hk]],
        &[&r.a, &r.b, &r.c],
    );
    let origin = r.h.fleet.registry.store("acme/os");
    r.publish(&origin, &r.g3).await;
    roots::push_missing(&origin, &r.roots[..1])
        .await
        .expect("root 1");
    let mirror = r.h.fleet.registry.store("mirror/os");
    r.publish(&mirror, g1).await;
    roots::push_missing(&mirror, &r.roots[..1])
        .await
        .expect("root 1");
    // Before root 2 is out, g1 counts at the mirror.
    let n = r.node(None, Some(&r.roots[0]));
    mirrored(&n, &host, &format!("{host}/acme/os"));
    let status = r.h.once(&n).await;
    assert_eq!(
        staged(&n).as_deref(),
        Some(r.h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    // Root 2 is published at the origin only: the mirror's document is
    // refused by a host that never walked to root 2.
    roots::publish_root(&origin, &without_g1)
        .await
        .expect("root 2");
    let n = r.node(None, Some(&r.roots[0]));
    mirrored(&n, &host, &format!("{host}/acme/os"));
    let status = r.h.once(&n).await;
    assert_refused(&n, &status, "root_missing_at_mirror", 1);
    let message = &status.reason.message;
    assert!(message.contains("cairn-root-2"), "{message}");
    assert!(message.contains(&format!("{host}/mirror/os")), "{message}");
    assert!(message.contains("acme/os"), "{message}");
    assert_eq!(stored_version(&n), Some(1));
    // An origin that cannot be reached: the mirror's answer stands, and
    // the note says the origin was not asked.
    let n = r.node(None, Some(&r.roots[0]));
    mirrored(&n, &host, "127.0.0.1:9/acme/os");
    let status = r.h.once(&n).await;
    assert_eq!(
        staged(&n).as_deref(),
        Some(r.h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    let note = status
        .trust_root
        .as_ref()
        .and_then(|t| t.note.clone())
        .unwrap_or_default();
    assert!(
        note.contains("could not be asked for cairn-root-2"),
        "{note}"
    );
    let _ = &r.d;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_signing_twice_does_not_meet_a_graph_threshold_of_two() {
    let r = Rooted::new().await;
    let g1 = r.h.graph_key.clone();
    let content = build_root(
        1,
        in_a_year(),
        [
            (&public(&[&r.a, &r.b]), 2),
            (&public(&[&g1, &r.g3]), 2),
            (&public(&[&g1]), 1),
        ],
    )
    .expect("root builds");
    let first = SignedRoot::sign(&content, &[r.a.clone(), r.b.clone()]).expect("root signs");
    let publish_with = |keys: Vec<SigningKey>| {
        let (store_dir, document) = (
            tempfile::tempdir().expect("temp dir"),
            r.h.fleet.document.clone(),
        );
        let (repo, first) = (r.h.fleet.repo.clone(), first.clone());
        async move {
            let store = Store::Layout(Layout::open_or_create(store_dir.path()).expect("layout"));
            let mut document = document;
            document.issued = Timestamp::now();
            let options = PublishOptions {
                tag: "cairn-graph-stable",
                identity: &repo,
                keys: &keys,
                root_version: 1,
                settle: Duration::ZERO,
                expected: None,
            };
            cairn_oci::document::publish(&store, document, &options)
                .await
                .expect("publish the document");
            roots::push_missing(&store, &[first]).await.expect("roots");
            let source = format!(
                "registry:oci:{}:cairn-graph-stable",
                store_dir.path().display()
            );
            (store_dir, source)
        }
    };
    // g1 twice: two signature layers, one key.
    let (_dir, source) = publish_with(vec![g1.clone(), g1.clone()]).await;
    let n = r.node(Some(&source), Some(&first));
    let status = r.h.once(&n).await;
    assert_refused(&n, &status, "bad_signature", 1);
    assert!(
        status
            .reason
            .message
            .contains("1 of the graph role's keys signed, 2 must"),
        "{}",
        status.reason.message
    );
    // g1 and g3: two distinct keys of the role.
    let (_dir, source) = publish_with(vec![g1.clone(), r.g3.clone()]).await;
    let n = r.node(Some(&source), Some(&first));
    let status = r.h.once(&n).await;
    assert_eq!(
        staged(&n).as_deref(),
        Some(r.h.fleet.digests[2].as_str()),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_list_signed_by_a_key_the_next_root_removed_is_dropped_and_the_new_key_s_list_read()
{
    let r = Rooted::new().await;
    let g1 = &r.h.graph_key;
    let registry = r.h.fleet.registry.store("acme/os");
    roots::push_missing(&registry, &r.roots[..1])
        .await
        .expect("root 1");
    // Two hosts at root 1 hold the list the halt key signed: one kept its
    // signatures, the other's state is an older agent's, without them.
    let held = r.h.halt("44.3", &r.h.fleet.digests[2]).await;
    let kept = r.node(None, Some(&r.roots[0]));
    let legacy = r.node(None, Some(&r.roots[0]));
    for n in [&kept, &legacy] {
        let status = r.h.once(n).await;
        assert_eq!(status.reason.kind, ReasonKind::TargetHalted, "{status:?}");
        let state = AgentState::load(&n.state_dir).expect("state");
        assert!(state.halt_list_signatures.contains_key("stable"));
    }
    let mut state = AgentState::load(&legacy.state_dir).expect("state");
    state.halt_list_signatures.clear();
    state.save(&legacy.state_dir).expect("save the state");
    // Root 2 replaces the halt key with h2.
    let h2 = SigningKey::generate();
    let replaced = root(
        2,
        in_a_year(),
        [&[&r.a, &r.c], &[g1], &[&h2]],
        &[&r.a, &r.b, &r.c],
    );
    roots::publish_root(&registry, &replaced)
        .await
        .expect("root 2");
    for n in [&kept, &legacy] {
        let status = r.h.once(n).await;
        assert_eq!(root_version(&status), Some(2), "{status:?}");
        // The list held is gone, and the one at the registry is still the
        // old key's: refused, so no list is in force and nothing is staged.
        let state = AgentState::load(&n.state_dir).expect("state");
        assert!(!state.halt_lists.contains_key("stable"), "{state:?}");
        assert!(refused_kind(&status).is_some(), "{status:?}");
        let halts = status.halt_list.as_ref().expect("halt list status");
        assert_eq!(halts.sequence, None, "{halts:?}");
        assert_eq!(staged(n), None);
    }
    // The same halt, signed with h2: read and in force on both hosts.
    let mut resigned = held.clone();
    resigned.sequence += 1;
    r.h.publish_list(&resigned, &h2).await;
    for n in [&kept, &legacy] {
        let status = r.h.once(n).await;
        assert_eq!(refused_kind(&status), None, "{status:?}");
        assert_eq!(status.reason.kind, ReasonKind::TargetHalted, "{status:?}");
        let halts = status.halt_list.as_ref().expect("halt list status");
        assert_eq!(halts.sequence, Some(resigned.sequence), "{halts:?}");
        let state = AgentState::load(&n.state_dir).expect("state");
        assert_eq!(
            state.halt_lists.get("stable").map(|l| l.sequence),
            Some(resigned.sequence)
        );
        assert_eq!(staged(n), None);
    }
}

/// A `127.0.0.1` port nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    address
}

/// A server that answers HTTP `status` to every request, and to a TLS hello
/// too (which then meets plain HTTP, so the client goes on in plain HTTP, as
/// for a registry marked insecure). Returns its `127.0.0.1:PORT` and how
/// many requests in plain HTTP it answered.
async fn failing_with(status: u16) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&answered);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = std::sync::Arc::clone(&counted);
            tokio::spawn(async move {
                let reply = format!(
                    "HTTP/1.1 {status} Failing\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let mut read = Vec::new();
                let mut buffer = [0u8; 4096];
                // A TLS record starts with 0x16; a request ends with a blank line.
                while !read.starts_with(&[0x16]) && !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(n) if n > 0 => read.extend_from_slice(&buffer[..n]),
                        _ => return,
                    }
                }
                if !read.starts_with(&[0x16]) {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (address, answered)
}

fn trust_note(status: &AgentStatus) -> String {
    status
        .trust_root
        .as_ref()
        .and_then(|t| t.note.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_answers_an_error_refuses_the_mirror_s_document_and_an_unreachable_one_is_as_configured()
 {
    let r = Rooted::new().await;
    let host = r.h.fleet.registry.host.clone();
    let mirror = r.h.fleet.registry.store("mirror/os");
    r.publish(&mirror, &r.h.graph_key).await;
    roots::push_missing(&mirror, &r.roots[..1])
        .await
        .expect("root 1");
    // The repository answers, with an error: a failing registry, then one
    // refusing the host.
    for code in [500, 403] {
        let (failing, connections) = failing_with(code).await;
        let n = r.node(None, Some(&r.roots[0]));
        mirrored(&n, &host, &format!("{failing}/acme/os"));
        let status = r.h.once(&n).await;
        assert_refused(&n, &status, "root_origin_unanswered", 1);
        let message = &status.reason.message;
        for part in [
            "cairn-root-2".to_string(),
            format!("{failing}/acme/os"),
            format!("{host}/mirror/os"),
            code.to_string(),
        ] {
            assert!(message.contains(&part), "{part} in {message}");
        }
        let note = trust_note(&status);
        assert!(
            note.contains("answered the request for cairn-root-2"),
            "{note}"
        );
        assert!(connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
        assert_eq!(stored_version(&n), Some(1));
    }
    // Unreachable, best-effort (the default): the mirror's chain stands,
    // the note says so and the counter counts it.
    let closed = closed_port().await;
    let n = r.node(None, Some(&r.roots[0]));
    mirrored(&n, &host, &format!("{closed}/acme/os"));
    let status = r.h.once(&n).await;
    assert_eq!(
        staged(&n).as_deref(),
        Some(r.h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    let note = trust_note(&status);
    assert!(
        note.contains("could not be asked for cairn-root-2"),
        "{note}"
    );
    assert!(note.contains("best-effort"), "{note}");
    let trust = status.trust_root.as_ref().expect("trust root status");
    assert_eq!(trust.origin_unasked.get("transport"), Some(&1), "{trust:?}");
    let metrics = std::fs::read_to_string(n.state_dir.join("metrics.prom")).expect("metrics");
    assert!(
        metrics.contains("cairn_agent_trust_root_origin_unasked_total{kind=\"transport\"} 1\n"),
        "{metrics}"
    );
    // Unreachable, required: refused.
    let n = r.node(None, Some(&r.roots[0]));
    mirrored(&n, &host, &format!("{closed}/acme/os"));
    std::fs::write(
        n.config_root.join("etc/cairn/config.d/60-required.toml"),
        "[updates]\nmirror_root_check = \"required\"\n",
    )
    .expect("write config");
    let status = r.h.once(&n).await;
    assert_refused(&n, &status, "root_origin_unreachable", 1);
    let message = &status.reason.message;
    assert!(message.contains("cairn-root-2"), "{message}");
    assert!(message.contains("required"), "{message}");
    assert_eq!(stored_version(&n), Some(1));
}
