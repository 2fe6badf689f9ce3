//! `cairn root init`, `rotate` and `show` on the real binary: a chain made,
//! rotated twice and shown; rotations and first roots that hosts would
//! refuse are refused and write nothing; a chain pushed to a real registry
//! (Debian's docker-registry) and to an OCI layout is walked by `show`.

mod common;
use common::{cairn, ok};

use cairn_oci::Store;
use cairn_oci::layout::Layout;
use cairn_oci::roots;
use cairn_oci::signing::SigningKey;
use cairn_oci::trust::{SignedRoot, build_root};
use cairn_testkit::{Auth, TestRegistry};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Key pairs written as `<name>.key` and `<name>.pub` in a directory.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new(names: &[&str]) -> Keys {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in names {
            let key = SigningKey::generate();
            std::fs::write(
                dir.path().join(format!("{name}.key")),
                key.to_pem().expect("pem"),
            )
            .expect("write key");
            std::fs::write(
                dir.path().join(format!("{name}.pub")),
                key.verifying_key().to_pem().expect("pem"),
            )
            .expect("write pub");
        }
        Keys { dir }
    }

    fn private(&self, name: &str) -> String {
        self.path(&format!("{name}.key"))
    }

    fn public(&self, name: &str) -> String {
        self.path(&format!("{name}.pub"))
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// The full key id of `name`.
    fn id(&self, name: &str) -> String {
        cairn_oci::signing::VerifyingKey::from_file(Path::new(&self.public(name)))
            .expect("reads")
            .key_id()
            .to_string()
    }

    fn signing(&self, name: &str) -> SigningKey {
        let text = std::fs::read_to_string(self.private(name)).expect("reads");
        SigningKey::from_pem(&text, name).expect("parses")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn refused(args: &[&str]) -> String {
    let out = cairn(args);
    assert!(
        !out.status.success(),
        "cairn {args:?} should fail; it printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(&out)
}

/// The `<N>.root.json` files in `dir`, sorted.
fn root_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".root.json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Roots 1 to 3 in `<tmp>/roots`: root keys a+b, then a+b+n, then b+n
/// (threshold 2 throughout), graph key g.
fn three_roots(keys: &Keys, tmp: &Path) -> PathBuf {
    let dir = tmp.join("roots");
    let dir_text = dir.display().to_string();
    ok(&[
        "root",
        "init",
        "--graph-key",
        &keys.public("g"),
        "--root-key",
        &keys.public("a"),
        "--root-key",
        &keys.public("b"),
        "--sign-key",
        &keys.private("a"),
        "--sign-key",
        &keys.private("b"),
        "--out",
        &dir_text,
    ]);
    let added = ok(&[
        "root",
        "rotate",
        "--dir",
        &dir_text,
        "--add-key",
        &format!("root={}", keys.public("n")),
        "--sign-key",
        &keys.private("a"),
        "--sign-key",
        &keys.private("b"),
        "--sign-key",
        &keys.private("n"),
    ]);
    assert!(
        added.contains("2.root.json") && added.contains("root 2/3"),
        "{added}"
    );
    // The old key goes, named by a prefix of its id as `show` prints it.
    let removed = ok(&[
        "root",
        "rotate",
        "--dir",
        &dir_text,
        "--remove-key",
        &format!("root={}", &keys.id("a")[..12]),
        "--sign-key",
        &keys.private("b"),
        "--sign-key",
        &keys.private("n"),
    ]);
    assert!(
        removed.contains("3.root.json")
            && removed.contains(&format!("keys gone from the root: {}", &keys.id("a")[..12])),
        "{removed}"
    );
    dir
}

#[test]
fn a_root_is_made_rotated_twice_and_shown() {
    let keys = Keys::new(&["a", "b", "n", "g"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = three_roots(&keys, tmp.path());
    assert_eq!(
        root_files(&dir),
        ["1.root.json", "2.root.json", "3.root.json"]
    );
    // The library reads the same chain, each version accepted by the last.
    let chain = roots::read_chain_dir(&dir).expect("a chain");
    assert_eq!(chain.len(), 3);

    let text = ok(&["root", "show", &dir.display().to_string()]);
    assert!(text.contains("versions 1, 2, 3"), "{text}");
    assert!(text.contains("trust root version 3"), "{text}");
    assert!(
        text.contains(&format!("{}  root\n", keys.id("n"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}  graph, halt\n", keys.id("g"))),
        "{text}"
    );
    assert!(text.contains("root: 2 of 2 keys must sign"), "{text}");
    assert!(!text.contains(&keys.id("a")), "a was removed: {text}");

    let json: Value =
        serde_json::from_str(&ok(&["root", "show", "--json", &dir.display().to_string()]))
            .expect("JSON");
    assert_eq!(json["versions"], serde_json::json!([1, 2, 3]));
    assert_eq!(json["root"]["expired"], false);
    let ids: Vec<&str> = json["root"]["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    // A removed key leaves `keys` once no role names it.
    assert_eq!(ids.len(), 3, "{json}");
    assert!(!ids.contains(&keys.id("a").as_str()));
    assert_eq!(json["root"]["roles"]["root"]["threshold"], 2);

    // One file: its signatures, each checked against its own root keys.
    let file = ok(&[
        "root",
        "show",
        &dir.join("3.root.json").display().to_string(),
    ]);
    for signer in ["b", "n"] {
        assert!(
            file.contains(&format!("{}: verifies with this root key", keys.id(signer))),
            "{file}"
        );
    }
}

#[test]
fn a_rotation_too_few_keys_signed_is_refused_and_writes_nothing() {
    let keys = Keys::new(&["a", "b", "n", "g"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("roots");
    let dir_text = dir.display().to_string();
    ok(&[
        "root",
        "init",
        "--graph-key",
        &keys.public("g"),
        "--root-key",
        &keys.public("a"),
        "--root-key",
        &keys.public("b"),
        "--sign-key",
        &keys.private("a"),
        "--sign-key",
        &keys.private("b"),
        "--out",
        &dir_text,
    ]);
    // One old root key of the two version 1 needs.
    let error = refused(&[
        "root",
        "rotate",
        "--dir",
        &dir_text,
        "--add-key",
        &format!("graph={}", keys.public("n")),
        "--sign-key",
        &keys.private("a"),
        "--sign-key",
        &keys.private("n"),
    ]);
    assert!(error.contains("nothing was written"), "{error}");
    assert!(
        error.contains("the root role of version 1 needs 2 distinct signatures and has 1"),
        "{error}"
    );
    // It names the key that would make up the threshold.
    assert!(
        error.contains(&format!("1 more of: {}", &keys.id("b")[..12])),
        "{error}"
    );
    assert_eq!(root_files(&dir), ["1.root.json"]);

    // Old keys enough, but the new root's own threshold not met: a removes
    // b and adds n, and only a and b sign.
    let error = refused(&[
        "root",
        "rotate",
        "--dir",
        &dir_text,
        "--remove-key",
        &format!("root={}", keys.public("b")),
        "--add-key",
        &format!("root={}", keys.public("n")),
        "--sign-key",
        &keys.private("a"),
        "--sign-key",
        &keys.private("b"),
    ]);
    assert!(
        error.contains("the root role of version 2 needs 2 distinct signatures and has 1"),
        "{error}"
    );
    assert!(error.contains(&keys.id("n")[..12]), "{error}");
    assert_eq!(root_files(&dir), ["1.root.json"]);

    // A threshold no longer met once a key leaves.
    let error = refused(&[
        "root",
        "rotate",
        "--dir",
        &dir_text,
        "--remove-key",
        &format!("root={}", keys.public("b")),
        "--sign-key",
        &keys.private("a"),
        "--sign-key",
        &keys.private("b"),
    ]);
    assert!(error.contains("cannot be met"), "{error}");
    assert_eq!(root_files(&dir), ["1.root.json"]);
}

#[test]
fn a_single_root_key_needs_allow_single_key() {
    let keys = Keys::new(&["g"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("roots");
    let dir_text = dir.display().to_string();
    let args = [
        "root",
        "init",
        "--graph-key",
        &keys.public("g"),
        "--sign-key",
        &keys.private("g"),
        "--out",
        &dir_text,
    ];
    let error = refused(&args);
    assert!(
        error.contains("one stolen or lost key would then decide every later root"),
        "{error}"
    );
    assert!(error.contains("--allow-single-key"), "{error}");
    assert!(root_files(&dir).is_empty());

    let mut allowed = args.to_vec();
    allowed.push("--allow-single-key");
    let written = ok(&allowed);
    assert!(written.contains("root 1/1"), "{written}");
    assert_eq!(root_files(&dir), ["1.root.json"]);
    // The root keys are the graph keys when none is given.
    let text = ok(&["root", "show", &dir_text]);
    assert!(
        text.contains(&format!("{}  root, graph, halt\n", keys.id("g"))),
        "{text}"
    );
    // Never overwritten.
    let error = refused(&allowed);
    assert!(error.contains("holds roots already"), "{error}");
}

#[test]
fn the_same_key_twice_is_refused() {
    let keys = Keys::new(&["a", "b", "g"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    // The same key material under another file name.
    let copy = keys.path("a-copy.pub");
    std::fs::copy(keys.public("a"), &copy).expect("copy");
    let dir = tmp.path().join("roots");
    let dir_text = dir.display().to_string();
    let error = refused(&[
        "root",
        "init",
        "--graph-key",
        &keys.public("g"),
        "--root-key",
        &keys.public("a"),
        "--root-key",
        &copy,
        "--sign-key",
        &keys.private("a"),
        "--out",
        &dir_text,
    ]);
    assert!(
        error.contains(&format!(
            "--root-key {copy} is the same key as --root-key {}",
            keys.public("a")
        )),
        "{error}"
    );
    assert!(root_files(&dir).is_empty());

    // A rotation that gives a role a key it has.
    ok(&[
        "root",
        "init",
        "--graph-key",
        &keys.public("g"),
        "--root-key",
        &keys.public("a"),
        "--root-key",
        &keys.public("b"),
        "--sign-key",
        &keys.private("a"),
        "--sign-key",
        &keys.private("b"),
        "--out",
        &dir_text,
    ]);
    let error = refused(&[
        "root",
        "rotate",
        "--dir",
        &dir_text,
        "--add-key",
        &format!("root={copy}"),
        "--sign-key",
        &keys.private("a"),
        "--sign-key",
        &keys.private("b"),
    ]);
    assert!(
        error.contains("the root role has this key already"),
        "{error}"
    );
    assert_eq!(root_files(&dir), ["1.root.json"]);
}

#[test]
fn an_expired_root_file_is_shown_as_expired() {
    let keys = Keys::new(&["a", "b"]);
    let (a, b) = (keys.signing("a"), keys.signing("b"));
    let public = [a.verifying_key(), b.verifying_key()];
    let expired = jiff::Timestamp::from_second(1_700_000_000).expect("time");
    let content = build_root(
        1,
        expired,
        [(&public, 2), (&public[..1], 1), (&public[..1], 1)],
    )
    .expect("builds");
    // Signed by a alone: the root's own threshold of 2 is not met either.
    let signed = SignedRoot::sign(&content, &[a]).expect("signs");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("1.root.json");
    std::fs::write(&file, &signed.envelope).expect("write");
    let out = cairn(&["root", "show", &file.display().to_string()]);
    assert!(!out.status.success(), "an expired root exits non-zero");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(EXPIRED)"), "{text}");
    assert!(
        text.contains("REFUSED: root version 1 fails its own root threshold"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}: verifies with this root key", keys.id("a"))),
        "{text}"
    );
}

#[tokio::test]
async fn show_walks_the_chain_in_a_registry_and_a_layout() {
    let keys = Keys::new(&["a", "b", "n", "g"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = three_roots(&keys, tmp.path());
    let chain = roots::read_chain_dir(&dir).expect("a chain");

    let registry = TestRegistry::start(Auth::None).await;
    let layout_dir = tmp.path().join("layout");
    let stores = [
        (
            registry.store("acme/os"),
            // A document reference: only its repository counts.
            format!("{}/acme/os:cairn-graph-stable", registry.host),
        ),
        (
            Store::Layout(Layout::open_or_create(&layout_dir).expect("layout")),
            format!("oci:{}:cairn-graph-stable", layout_dir.display()),
        ),
    ];
    for (store, reference) in &stores {
        // Nothing there yet: show says what is missing.
        let error = refused(&[
            "root",
            "show",
            reference,
            "--insecure-registry",
            &registry.host,
        ]);
        assert!(error.contains("has no cairn-root-1"), "{error}");

        let written = roots::push_missing(store, &chain).await.expect("pushed");
        assert_eq!(written, [1, 2, 3]);
        let text = ok(&[
            "root",
            "show",
            reference,
            "--insecure-registry",
            &registry.host,
        ]);
        assert!(
            text.contains("walked from cairn-root-1 through versions 1, 2, 3"),
            "{text}"
        );
        assert!(text.contains("trust root version 3"), "{text}");
        assert!(!text.contains("REFUSED"), "{text}");
        let json: Value = serde_json::from_str(&ok(&[
            "root",
            "show",
            "--json",
            reference,
            "--insecure-registry",
            &registry.host,
        ]))
        .expect("JSON");
        assert_eq!(json["versions"], serde_json::json!([1, 2, 3]), "{json}");
        assert_eq!(json["kind"], "repository");
    }

    // A root 2 that root 1's keys did not sign enough: the walk stops at 1
    // and says why.
    let store = registry.store("acme/forged");
    roots::publish_root(&store, &chain[0])
        .await
        .expect("root 1");
    let forged = SignedRoot::sign(&chain[1].root, &[keys.signing("a")]).expect("signs");
    roots::publish_root(&store, &forged).await.expect("root 2");
    let out = cairn(&[
        "root",
        "show",
        &format!("{}/acme/forged", registry.host),
        "--insecure-registry",
        &registry.host,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a refused walk exits non-zero: {text}"
    );
    assert!(
        text.contains("walked from cairn-root-1 through version 1\n"),
        "{text}"
    );
    assert!(
        text.contains("REFUSED: ") && text.contains("root version 2 is not signed well enough"),
        "{text}"
    );
    assert!(text.contains("trust root version 1\n"), "{text}");
}

/// The example document, current, published in `store` signed by `key`.
async fn publish_signed(store: &Store, key: &SigningKey) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/stable.json");
    let bytes = std::fs::read(path).expect("example");
    let mut document = cairn_graph::GraphDocument::from_json(&bytes)
        .expect("parses")
        .document;
    let now = jiff::Timestamp::now();
    document.issued = now - jiff::SignedDuration::from_hours(1);
    document.expires = now + jiff::SignedDuration::from_hours(48);
    let identity = store.describe();
    let options = cairn_oci::document::PublishOptions {
        tag: "cairn-graph-stable",
        identity: &identity,
        keys: std::slice::from_ref(key),
        root_version: 0,
        settle: std::time::Duration::from_millis(50),
        expected: None,
    };
    cairn_oci::document::publish(store, document, &options)
        .await
        .expect("publishes");
}

#[tokio::test]
async fn verifiers_walk_to_the_newest_root_before_they_trust_a_document() {
    let keys = Keys::new(&["a", "b", "g1", "g3"]);
    let public = |name: &str| vec![keys.signing(name).verifying_key()];
    let in_a_year = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
    let root_keys = [
        keys.signing("a").verifying_key(),
        keys.signing("b").verifying_key(),
    ];
    let make = |version, graph: &[cairn_oci::signing::VerifyingKey], expires| {
        build_root(version, expires, [(&root_keys, 2), (graph, 1), (graph, 1)]).expect("builds")
    };
    let by = |names: &[&str]| names.iter().map(|n| keys.signing(n)).collect::<Vec<_>>();
    // Root 1 is signed by g1 too: hosts on `--key g1.pub` (version 0) need it.
    let one = SignedRoot::sign(&make(1, &public("g1"), in_a_year), &by(&["a", "b", "g1"]))
        .expect("signs");
    let two =
        SignedRoot::sign(&make(2, &public("g1"), in_a_year), &by(&["a", "b"])).expect("signs");
    // Root 3 drops g1 for g3.
    let three =
        SignedRoot::sign(&make(3, &public("g3"), in_a_year), &by(&["a", "b"])).expect("signs");
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = tmp.path().join("1.root.json");
    std::fs::write(&first, &one.envelope).expect("write");
    let first = first.display().to_string();

    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let reference = format!("{}/acme/os:cairn-graph-stable", registry.host);
    let insecure = ["--insecure-registry", registry.host.as_str()];
    let verify = |extra: &[&str]| {
        let mut args = vec!["document", "verify", reference.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&insecure);
        cairn(&args)
    };
    roots::push_missing(&store, &[one.clone(), two.clone()])
        .await
        .expect("pushed");
    publish_signed(&store, &keys.signing("g1")).await;
    for start in [["--root", first.as_str()], ["--key", &keys.public("g1")]] {
        let out = verify(&start);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{start:?}: {}", stderr(&out));
        assert!(text.contains("trust root version 2"), "{text}");
    }
    let shown = ok(&[
        "graph",
        "show",
        &reference,
        "--root",
        &first,
        "--insecure-registry",
        &registry.host,
    ]);
    assert!(shown.contains("trust root version 2"), "{shown}");

    // Root 3 is published: the same document, signed by g1, is refused by
    // every reader, even one that has not walked before.
    roots::publish_root(&store, &three).await.expect("root 3");
    for start in [["--root", first.as_str()], ["--key", &keys.public("g1")]] {
        let out = verify(&start);
        assert!(
            !out.status.success(),
            "{start:?} trusted a key root 3 dropped"
        );
        let error = stderr(&out);
        assert!(
            error.contains("0 of the graph role's keys signed, 1 must (root version 3"),
            "{error}"
        );
    }
    // Signed by g3, it verifies; --state keeps root 3.
    publish_signed(&store, &keys.signing("g3")).await;
    let state = tmp.path().join("state.json").display().to_string();
    let out = verify(&["--root", &first, "--state", &state]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kept: Value = serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("JSON");
    let kept_root = kept["root"].as_str().expect("a root kept");
    assert_eq!(kept_root.as_bytes(), &three.envelope[..]);

    // A repository that only has root 1 and a document g1 signed: a reader
    // holding root 3 does not go back.
    let old = registry.store("acme/old");
    roots::publish_root(&old, &one).await.expect("root 1");
    publish_signed(&old, &keys.signing("g1")).await;
    let out = cairn(&[
        "document",
        "verify",
        &format!("{}/acme/old:cairn-graph-stable", registry.host),
        "--root",
        &first,
        "--state",
        &state,
        "--insecure-registry",
        &registry.host,
    ]);
    assert!(!out.status.success(), "went back to root 1");
    assert!(stderr(&out).contains("root version 3"), "{}", stderr(&out));

    // An expired final root stops trust, naming itself.
    let expired = registry.store("acme/expired");
    let stale = SignedRoot::sign(
        &make(
            2,
            &public("g1"),
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        ),
        &by(&["a", "b"]),
    )
    .expect("signs");
    roots::push_missing(&expired, &[one.clone(), stale])
        .await
        .expect("pushed");
    publish_signed(&expired, &keys.signing("g1")).await;
    let out = cairn(&[
        "document",
        "verify",
        &format!("{}/acme/expired:cairn-graph-stable", registry.host),
        "--root",
        &first,
        "--insecure-registry",
        &registry.host,
    ]);
    assert!(!out.status.success(), "an expired root was trusted");
    let error = stderr(&out);
    assert!(
        error.contains("root_expired") && error.contains("trust root version 2 expired"),
        "{error}"
    );
}

/// A release team's first root in `<tmp>/roots` (root keys a and b, graph
/// key `graph`, and `extra` flags such as a halt key), and a registry
/// holding release 44.1 under `stable`.
async fn team_with_a_release(
    keys: &Keys,
    tmp: &Path,
    graph: &str,
    extra: &[String],
) -> (String, TestRegistry, Store) {
    let dir = tmp.join("roots").display().to_string();
    let mut args: Vec<String> = ["root", "init", "--out", &dir, "--graph-key"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(keys.public(graph));
    args.extend(extra.iter().cloned());
    for name in ["a", "b"] {
        args.extend(["--root-key".to_string(), keys.public(name)]);
    }
    for name in ["a", "b", graph] {
        args.extend(["--sign-key".to_string(), keys.private(name)]);
    }
    ok(&args);
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1", "stable"]).await;
    (dir, registry, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_pushes_the_roots_signs_under_the_newest_and_refuses_short_keys() {
    let keys = Keys::new(&["a", "b", "g1", "g2"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, registry, store) = team_with_a_release(&keys, tmp.path(), "g1", &[]).await;
    let repository = format!("{}/acme/os", registry.host);
    let cache = tmp.path().join("cache.json").display().to_string();
    let publish = |sign: &[&str]| {
        let mut args = vec![
            "publish",
            "--repository",
            repository.as_str(),
            "--stream",
            "stable",
            "--roots",
            dir.as_str(),
            "--cache",
            cache.as_str(),
            "--insecure-registry",
            registry.host.as_str(),
        ];
        for key in sign {
            args.extend(["--sign-key", key]);
        }
        cairn(&args)
    };
    // A key the root does not give the graph role: refused before any push.
    let out = publish(&[&keys.private("g2")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("hosts would refuse this document under trust root version 1"),
        "{}",
        stderr(&out)
    );
    assert!(roots::fetch_root(&store, 1).await.expect("reads").is_none());

    let out = publish(&[&keys.private("g1")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pushed trust root versions 1"));
    let fetched = cairn_oci::document::fetch(&store, "cairn-graph-stable")
        .await
        .expect("document");
    assert_eq!(fetched.document.root_version, 1);

    // Rotate the graph key from g1 to g2 as the playbook says: add g2 and
    // sign with both (root 2), then drop g1 (root 3).
    let rotate = |change: &[&str]| {
        let mut args = vec!["root", "rotate", "--dir", dir.as_str()];
        args.extend_from_slice(change);
        let (a, b) = (keys.private("a"), keys.private("b"));
        args.extend(["--sign-key", a.as_str(), "--sign-key", b.as_str()]);
        ok(&args);
    };
    let g2 = format!("graph={}", keys.public("g2"));
    rotate(&["--add-key", &g2]);
    let out = publish(&[&keys.private("g1"), &keys.private("g2")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pushed trust root versions 2"));
    // Once root 3 drops g1, a publish by g2 alone builds on what g1 and g2
    // signed; but not on a document g1 alone signed (a revoked key's).
    let g1 = format!("graph={}", keys.public("g1"));
    rotate(&["--remove-key", &g1]);
    let out = publish(&[&keys.private("g2")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fetched = cairn_oci::document::fetch(&store, "cairn-graph-stable")
        .await
        .expect("document");
    assert_eq!(fetched.document.root_version, 3);
    let mut forged = fetched.document.clone();
    forged.issued = jiff::Timestamp::now();
    let identity = store.describe();
    cairn_oci::document::publish(
        &store,
        forged,
        &cairn_oci::document::PublishOptions {
            tag: "cairn-graph-stable",
            identity: &identity,
            keys: &[keys.signing("g1")],
            root_version: 2,
            settle: std::time::Duration::ZERO,
            expected: None,
        },
    )
    .await
    .expect("the thief publishes");
    let out = publish(&[&keys.private("g2")]);
    assert!(!out.status.success(), "re-signed what a revoked key signed");
    assert!(
        stderr(&out).contains("accept-unverified-previous"),
        "{}",
        stderr(&out)
    );
    // A reader starting from root 1 walks to 3 and refuses g1's document.
    let out = cairn(&[
        "document",
        "verify",
        &format!("{repository}:cairn-graph-stable"),
        "--root",
        &format!("{dir}/1.root.json"),
        "--insecure-registry",
        &registry.host,
    ]);
    assert!(!out.status.success(), "a revoked key's document verified");
    assert!(stderr(&out).contains("root version 3"), "{}", stderr(&out));
    // g1 alone is now short of root 3's graph role.
    let out = publish(&[&keys.private("g1")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("trust root version 3"),
        "{}",
        stderr(&out)
    );

    // A repository that holds a newer root than the directory: refused.
    let newer = roots::read_chain_dir(Path::new(&dir)).expect("chain");
    let four = build_root(
        4,
        newer[1].root.expires,
        [
            (
                &[
                    keys.signing("a").verifying_key(),
                    keys.signing("b").verifying_key(),
                ],
                2,
            ),
            (&[keys.signing("g2").verifying_key()], 1),
            (&[keys.signing("g2").verifying_key()], 1),
        ],
    )
    .expect("builds");
    let four = SignedRoot::sign(&four, &[keys.signing("a"), keys.signing("b")]).expect("signs");
    roots::publish_root(&store, &four).await.expect("root 4");
    let out = publish(&[&keys.private("g2")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds cairn-root-4"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_commands_trust_the_newest_roots_graph_and_halt_keys() {
    let keys = Keys::new(&["a", "b", "g", "h"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let halt_key = ["--halt-key".to_string(), keys.public("h")];
    let (dir, registry, store) = team_with_a_release(&keys, tmp.path(), "g", &halt_key).await;
    let repository = format!("{}/acme/os", registry.host);
    let document = format!("{repository}:cairn-graph-stable");
    let list = format!("{repository}:cairn-halts-stable");
    let cache = tmp.path().join("cache.json").display().to_string();
    ok(&[
        "publish",
        "--repository",
        &repository,
        "--stream",
        "stable",
        "--roots",
        &dir,
        "--cache",
        &cache,
        "--halt-list",
        &list,
        "--sign-key",
        &keys.private("g"),
        "--insecure-registry",
        &registry.host,
    ]);
    let first = format!("{dir}/1.root.json");
    let halt = |with_root: bool| {
        let mut args = vec![
            "halt",
            "add",
            "44.1",
            "--halt-list",
            list.as_str(),
            "--document",
            document.as_str(),
            "--reason",
            "bad boots",
            "--who",
            "ops",
            "--insecure-registry",
            registry.host.as_str(),
        ];
        let (h, root) = (keys.private("h"), first.clone());
        let mut owned = vec!["--sign-key".to_string(), h];
        if with_root {
            owned.extend(["--root".to_string(), root]);
        }
        let owned: Vec<&str> = owned.iter().map(String::as_str).collect();
        args.extend(owned.iter().copied());
        cairn(&args)
    };
    // Without the root, the halt key does not trust the graph key's list.
    let out = halt(false);
    assert!(!out.status.success(), "built on a list it could not verify");
    assert!(
        stderr(&out).contains("halts_bad_signature"),
        "{}",
        stderr(&out)
    );
    // With it, the root's graph key vouches for the list built on.
    let out = halt(true);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = ok(&[
        "halt",
        "show",
        "--halt-list",
        &list,
        "--root",
        &first,
        "--insecure-registry",
        &registry.host,
    ]);
    assert!(
        shown.contains("signed by a halt key (may only add halts)"),
        "{shown}"
    );
    assert!(shown.contains("44.1"), "{shown}");
    let fetched = cairn_oci::halts::fetch(&store, "cairn-halts-stable")
        .await
        .expect("list");
    assert_eq!(fetched.list.root_version, 1);
}

mod emergency_playbook {
    //! docs/key-rotation.md, "Emergency revocation", run as the page writes
    //! it (only paths and references differ) against a real registry: the
    //! leaked graph key stops counting, the new one takes over, and what the
    //! leaked key signed is reviewed, then replaced. Also: under --roots, a
    //! --sign-key the newest root revoked does not vouch for the previous
    //! document.

    use super::*;
    use cairn_oci::trust::{Role, RoleKeys};

    /// The team's repository and the files a publish needs.
    struct Team {
        keys: Keys,
        tmp: tempfile::TempDir,
        dir: String,
        registry: TestRegistry,
        store: Store,
    }

    impl Team {
        /// Root keys a and b, graph key `graph`, release 44.1 in the registry.
        async fn new(names: &[&str], graph: &str) -> Team {
            let keys = Keys::new(names);
            let tmp = tempfile::tempdir().expect("tempdir");
            let (dir, registry, store) = team_with_a_release(&keys, tmp.path(), graph, &[]).await;
            Team {
                keys,
                tmp,
                dir,
                registry,
                store,
            }
        }

        fn repository(&self) -> String {
            format!("{}/acme/os", self.registry.host)
        }

        fn document(&self) -> String {
            format!("{}:cairn-graph-stable", self.repository())
        }

        fn halt_list(&self) -> String {
            format!("{}:cairn-halts-stable", self.repository())
        }

        fn first_root(&self) -> String {
            format!("{}/1.root.json", self.dir)
        }

        /// `cairn` with the test registry allowed over plain HTTP.
        fn run(&self, args: &[&str]) -> Output {
            let mut args = args.to_vec();
            args.extend(["--insecure-registry", self.registry.host.as_str()]);
            cairn(&args)
        }

        /// `cairn publish …`: what the page writes as `…` (repository,
        /// stream, and here a scan cache of the test's own), then `rest`.
        fn publish(&self, rest: &[&str]) -> Output {
            let (repository, cache) = (self.repository(), self.path("cache.json"));
            let mut args = vec![
                "publish",
                "--repository",
                repository.as_str(),
                "--stream",
                "stable",
                "--cache",
                cache.as_str(),
            ];
            args.extend_from_slice(rest);
            self.run(&args)
        }

        fn path(&self, name: &str) -> String {
            self.tmp.path().join(name).display().to_string()
        }

        /// The document under the tag, signed by `key` alone, as someone
        /// holding only that key (and push access) would publish it.
        async fn publish_as(&self, key: &str, root_version: u64) {
            let fetched = cairn_oci::document::fetch(&self.store, "cairn-graph-stable")
                .await
                .expect("document");
            let mut document = fetched.document;
            document.issued = jiff::Timestamp::now();
            let identity = self.store.describe();
            cairn_oci::document::publish(
                &self.store,
                document,
                &cairn_oci::document::PublishOptions {
                    tag: "cairn-graph-stable",
                    identity: &identity,
                    keys: &[self.keys.signing(key)],
                    root_version,
                    settle: std::time::Duration::ZERO,
                    expected: None,
                },
            )
            .await
            .expect("published");
        }

        /// The sequence of the document under the tag.
        async fn sequence(&self) -> u64 {
            cairn_oci::document::fetch(&self.store, "cairn-graph-stable")
                .await
                .expect("document")
                .document
                .sequence
        }
    }

    fn succeeded(out: &Output) -> String {
        assert!(out.status.success(), "{}", stderr(out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_emergency_revocation_playbook_works_as_written() {
        let team = Team::new(&["a", "b", "release-2027"], "release-2027").await;
        let (keys, dir) = (&team.keys, team.dir.as_str());
        let (document, list) = (team.document(), team.halt_list());
        // The CI publishes with the graph key, halt lists on; then the key
        // leaks and the thief publishes a document of their own.
        let leaked = keys.private("release-2027");
        succeeded(&team.publish(&["--roots", dir, "--halt-list", &list, "--sign-key", &leaked]));
        let by_ci = team.sequence().await;
        team.publish_as("release-2027", 1).await;
        let by_thief = team.sequence().await;
        assert!(by_thief > by_ci);

        // Step 1: a new key, and a root without the leaked one.
        let new_prefix = keys.path("release-2027b");
        succeeded(&cairn(&["document", "keygen", "--output", &new_prefix]));
        let (leaked_pub, new_pub) = (keys.public("release-2027"), keys.public("release-2027b"));
        let rotated = succeeded(&cairn(&[
            "root",
            "rotate",
            "--dir",
            dir,
            "--remove-key",
            &format!("graph={leaked_pub}"),
            "--remove-key",
            &format!("halt={leaked_pub}"),
            "--add-key",
            &format!("graph={new_pub}"),
            "--add-key",
            &format!("halt={new_pub}"),
            "--expires",
            "365d",
            "--sign-key",
            &keys.private("a"),
            "--sign-key",
            &keys.private("b"),
        ]));
        assert!(rotated.contains("2.root.json"), "{rotated}");

        // Step 2, the review: under the last root that lists the leaked key
        // (here root 1), the thief's document and the list still verify.
        let last = team.first_root();
        let verified = succeeded(&team.run(&["document", "verify", &document, "--root", &last]));
        assert!(
            verified.contains(&format!("sequence {by_thief}"))
                && verified.contains("trust root version 1"),
            "the thief's document, under root 1: {verified}"
        );
        let shown = succeeded(&team.run(&["graph", "show", &document, "--root", &last]));
        assert!(shown.contains("44.1"), "{shown}");
        let halts = succeeded(&team.run(&["halt", "show", "--halt-list", &list, "--root", &last]));
        assert!(halts.contains("signed by a graph key"), "{halts}");
        let new_key = keys.private("release-2027b");
        // Under root 2 the leaked key's halt list counts for nothing, even
        // with the leaked key among the signing keys: read only with it
        // named as a --halt-key.
        let out = team.publish(&[
            "--roots",
            dir,
            "--sign-key",
            &new_key,
            "--sign-key",
            &leaked,
            "--accept-unverified-previous",
            "--dry-run",
        ]);
        assert!(!out.status.success(), "built on the leaked key's list");
        assert!(stderr(&out).contains("--halt-key"), "{}", stderr(&out));
        let dry = succeeded(&team.publish(&[
            "--roots",
            dir,
            "--sign-key",
            &new_key,
            "--accept-unverified-previous",
            "--halt-key",
            &leaked_pub,
            "--dry-run",
        ]));
        assert!(dry.contains("would push trust root versions 2"), "{dry}");
        assert!(
            roots::fetch_root(&team.store, 2)
                .await
                .expect("reads")
                .is_none(),
            "a dry run pushed a root"
        );

        // Step 2, the publish and the halt list.
        let published = succeeded(&team.publish(&[
            "--roots",
            dir,
            "--sign-key",
            &new_key,
            "--accept-unverified-previous",
            "--halt-key",
            &leaked_pub,
        ]));
        assert!(
            published.contains("pushed trust root versions 2"),
            "{published}"
        );
        // Without the flag, the leaked key's list is not built on.
        let out = team.run(&[
            "halt",
            "refresh",
            "--halt-list",
            &list,
            "--document",
            &document,
            "--root",
            &team.first_root(),
            "--sign-key",
            &new_key,
        ]);
        assert!(!out.status.success(), "built on the leaked key's list");
        succeeded(&team.run(&[
            "halt",
            "refresh",
            "--halt-list",
            &list,
            "--document",
            &document,
            "--root",
            &team.first_root(),
            "--sign-key",
            &new_key,
            "--accept-unverified-current",
        ]));

        // The document: under root 2, signed by the new key and not the
        // leaked one; a host starting from root 1 walks to 2 and takes it.
        let fetched = cairn_oci::document::fetch(&team.store, "cairn-graph-stable")
            .await
            .expect("document");
        assert_eq!(fetched.document.root_version, 2);
        let by = |name: &str| RoleKeys::any_of(Role::Graph, &[keys.signing(name).verifying_key()]);
        assert!(by("release-2027b").check(&fetched.signatures).is_ok());
        assert!(by("release-2027").check(&fetched.signatures).is_err());
        let verified = succeeded(&team.run(&["document", "verify", &document, "--root", &last]));
        assert!(verified.contains("trust root version 2"), "{verified}");
        // The halt list: signed under root 2, verified by its graph role.
        let fetched = cairn_oci::halts::fetch(&team.store, "cairn-halts-stable")
            .await
            .expect("list");
        assert_eq!(fetched.list.root_version, 2);
        let halts = succeeded(&team.run(&["halt", "show", "--halt-list", &list, "--root", &last]));
        assert!(halts.contains("signed by a graph key"), "{halts}");

        // A host that cannot walk (a file source here; server: and URLs
        // alike) keeps root 1: the new key alone does not count for it, the
        // leaked key co-signing does, as the page says.
        let bytes = cairn_oci::document::fetch(&team.store, "cairn-graph-stable")
            .await
            .expect("document")
            .bytes;
        let copy = team.path("stable.json");
        std::fs::write(&copy, &bytes).expect("copy");
        succeeded(&cairn(&["document", "sign", &copy, "--sign-key", &new_key]));
        let out = team.run(&["document", "verify", &copy, "--root", &last]);
        assert!(!out.status.success(), "root 1 trusted the new key");
        assert!(stderr(&out).contains("(root version 1"), "{}", stderr(&out));
        succeeded(&cairn(&[
            "document",
            "sign",
            &copy,
            "--sign-key",
            &new_key,
            "--sign-key",
            &leaked,
        ]));
        let verified = succeeded(&team.run(&["document", "verify", &copy, "--root", &last]));
        assert!(verified.contains("trust root version 1"), "{verified}");
        // Co-signing is accepted by the writers too, and counts only the
        // new key's signature under root 2.
        succeeded(&team.publish(&[
            "--roots",
            dir,
            "--sign-key",
            &new_key,
            "--sign-key",
            &leaked,
        ]));
        succeeded(&team.run(&[
            "halt",
            "refresh",
            "--halt-list",
            &list,
            "--document",
            &document,
            "--root",
            &last,
            "--sign-key",
            &new_key,
            "--sign-key",
            &leaked,
        ]));
        let halts = succeeded(&team.run(&["halt", "show", "--halt-list", &list, "--root", &last]));
        assert!(halts.contains("signed by a graph key"), "{halts}");

        // The thief signs again with the leaked key: refused by a reader
        // that starts from root 1, whatever root version the document names.
        for named in [1, 2] {
            team.publish_as("release-2027", named).await;
            let out = team.run(&["document", "verify", &document, "--root", &last]);
            assert!(!out.status.success(), "the leaked key's document verified");
            assert!(
                stderr(&out).contains("0 of the graph role's keys signed, 1 must (root version 2"),
                "{}",
                stderr(&out)
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sign_key_the_newest_root_revoked_does_not_vouch_for_the_previous_document() {
        let team = Team::new(&["a", "b", "old", "new", "third"], "old").await;
        let (keys, dir) = (&team.keys, team.dir.as_str());
        let (old, new) = (keys.private("old"), keys.private("new"));
        succeeded(&team.publish(&["--roots", dir, "--sign-key", &old]));
        let first = team.sequence().await;
        let (old_pub, new_pub) = (keys.public("old"), keys.public("new"));
        succeeded(&cairn(&[
            "root",
            "rotate",
            "--dir",
            dir,
            "--remove-key",
            &format!("graph={old_pub}"),
            "--remove-key",
            &format!("halt={old_pub}"),
            "--add-key",
            &format!("graph={new_pub}"),
            "--add-key",
            &format!("halt={new_pub}"),
            "--sign-key",
            &keys.private("a"),
            "--sign-key",
            &keys.private("b"),
        ]));
        // The previous document is the revoked key's alone: signing with it
        // too does not make it count.
        let out = team.publish(&["--roots", dir, "--sign-key", &new, "--sign-key", &old]);
        assert!(!out.status.success(), "built on a revoked key's document");
        let error = stderr(&out);
        assert!(
            error.contains("accept-unverified-previous")
                && error.contains("0 of the graph role's keys signed, 1 must (root version 2"),
            "{error}"
        );
        assert_eq!(team.sequence().await, first, "the refused publish pushed");
        // Reviewed and accepted, it is built on, signed by both.
        succeeded(&team.publish(&[
            "--roots",
            dir,
            "--sign-key",
            &new,
            "--sign-key",
            &old,
            "--accept-unverified-previous",
        ]));
        let fetched = cairn_oci::document::fetch(&team.store, "cairn-graph-stable")
            .await
            .expect("document");
        assert!(fetched.document.sequence > first);
        assert_eq!(fetched.document.root_version, 2);
        // Now the new key vouches for it: a publish by both builds on it.
        succeeded(&team.publish(&["--roots", dir, "--sign-key", &new, "--sign-key", &old]));

        // The role's threshold counts too: once two graph keys must sign,
        // a document one of them signed is not built on, though both sign
        // this publish.
        let third_pub = keys.public("third");
        succeeded(&cairn(&[
            "root",
            "rotate",
            "--dir",
            dir,
            "--add-key",
            &format!("graph={third_pub}"),
            "--graph-threshold",
            "2",
            "--sign-key",
            &keys.private("a"),
            "--sign-key",
            &keys.private("b"),
        ]));
        let third = keys.private("third");
        let out = team.publish(&["--roots", dir, "--sign-key", &new, "--sign-key", &third]);
        assert!(
            !out.status.success(),
            "built on a document short of the threshold"
        );
        let error = stderr(&out);
        assert!(
            error.contains("1 of the graph role's keys signed, 2 must (root version 3"),
            "{error}"
        );
        succeeded(&team.publish(&[
            "--roots",
            dir,
            "--sign-key",
            &new,
            "--sign-key",
            &third,
            "--accept-unverified-previous",
        ]));
        succeeded(&team.publish(&["--roots", dir, "--sign-key", &new, "--sign-key", &third]));
    }
}

/// `cairn halt add` and `refresh` under a trust root: the walked root's
/// roles and thresholds judge the list built on and the keys signing the
/// next; `--accept-unverified-current` builds on a list a dropped key
/// signed; `halt show` walks the roots beside the document.
mod halt_writers {
    use super::*;

    /// A team with root 1 (graph g, halt keys g and `old`), the document
    /// published with its halt list in `acme/halts` (no roots there), and a
    /// halt of 44.1 signed by `old` alone.
    struct Team {
        keys: Keys,
        _tmp: tempfile::TempDir,
        dir: String,
        registry: TestRegistry,
        store: Store,
        document: String,
        list: String,
        first: String,
    }

    impl Team {
        async fn new() -> Team {
            let keys = Keys::new(&["a", "b", "g", "old", "new", "second", "stranger"]);
            let tmp = tempfile::tempdir().expect("tempdir");
            let halt_key = ["--halt-key".to_string(), keys.public("old")];
            let (dir, registry, store) =
                team_with_a_release(&keys, tmp.path(), "g", &halt_key).await;
            let repository = format!("{}/acme/os", registry.host);
            let document = format!("{repository}:cairn-graph-stable");
            let list = format!("{}/acme/halts:cairn-halts-stable", registry.host);
            let cache = tmp.path().join("cache.json").display().to_string();
            ok(&[
                "publish",
                "--repository",
                &repository,
                "--stream",
                "stable",
                "--roots",
                &dir,
                "--cache",
                &cache,
                "--halt-list",
                &list,
                "--sign-key",
                &keys.private("g"),
                "--insecure-registry",
                &registry.host,
            ]);
            let first = format!("{dir}/1.root.json");
            let team = Team {
                keys,
                _tmp: tmp,
                dir,
                registry,
                store,
                document,
                list,
                first,
            };
            let out = team.write(
                &["add", "44.1", "--reason", "bad boots", "--who", "ops"],
                &["old"],
                &[],
            );
            assert!(out.status.success(), "{}", stderr(&out));
            team
        }

        /// `cairn halt <verb>` on the team's list and document, from root
        /// 1, signed by `signers`.
        fn write(&self, verb: &[&str], signers: &[&str], extra: &[&str]) -> Output {
            let mut args: Vec<String> = verb.iter().map(|s| s.to_string()).collect();
            args.insert(0, "halt".into());
            for (flag, value) in [
                ("--halt-list", self.list.as_str()),
                ("--document", self.document.as_str()),
                ("--root", self.first.as_str()),
                ("--insecure-registry", self.registry.host.as_str()),
            ] {
                args.extend([flag.to_string(), value.to_string()]);
            }
            for name in signers {
                args.extend(["--sign-key".to_string(), self.keys.private(name)]);
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            cairn(&args)
        }

        /// Write the next root (signed by a and b) and push the chain
        /// beside the document.
        async fn rotate(&self, change: &[&str]) {
            let mut args = vec!["root", "rotate", "--dir", self.dir.as_str()];
            args.extend_from_slice(change);
            let (a, b) = (self.keys.private("a"), self.keys.private("b"));
            args.extend(["--sign-key", a.as_str(), "--sign-key", b.as_str()]);
            ok(&args);
            for root in roots::read_chain_dir(Path::new(&self.dir)).expect("chain") {
                roots::publish_root(&self.store, &root)
                    .await
                    .expect("root pushed");
            }
        }

        /// Root 2: `old` (leaked) leaves the halt role, `new` joins it.
        async fn drop_the_leaked_halt_key(&self) {
            let new = format!("halt={}", self.keys.public("new"));
            let old = format!("halt={}", &self.keys.id("old")[..12]);
            self.rotate(&["--add-key", &new, "--remove-key", &old])
                .await;
        }

        fn show(&self, with_document: bool) -> Output {
            let mut args = vec![
                "halt",
                "show",
                "--halt-list",
                self.list.as_str(),
                "--root",
                self.first.as_str(),
                "--insecure-registry",
                self.registry.host.as_str(),
            ];
            if with_document {
                args.extend(["--document", self.document.as_str()]);
            }
            cairn(&args)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_list_a_dropped_key_signed_is_built_on_only_when_accepted_unverified() {
        let team = Team::new().await;
        team.drop_the_leaked_halt_key().await;
        let before =
            cairn_oci::halts::fetch(&team.registry.store("acme/halts"), "cairn-halts-stable")
                .await
                .expect("list")
                .list;

        // The leaked key alone signed the list under the tag: root 2's roles
        // do not vouch for it, so the new halt key does not build on it.
        let out = team.write(&["refresh"], &["new"], &[]);
        assert!(!out.status.success(), "built on the leaked key's list");
        assert!(
            stderr(&out).contains("halts_bad_signature") && stderr(&out).contains("root version 2"),
            "{}",
            stderr(&out)
        );

        let out = team.write(&["refresh"], &["new"], &["--accept-unverified-current"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let warning = stderr(&out);
        assert!(
            warning.contains("--accept-unverified-current")
                && warning.contains(&team.list)
                && warning.contains(&format!("signed by key(s) {}", &team.keys.id("old")[..12])),
            "{warning}"
        );
        let after =
            cairn_oci::halts::fetch(&team.registry.store("acme/halts"), "cairn-halts-stable")
                .await
                .expect("list")
                .list;
        assert_eq!(after.root_version, 2);
        assert!(after.sequence > before.sequence);
        assert_eq!(after.entries, before.entries, "the halts are kept");

        // Shown under the roots beside the document: root 2's halt key.
        let out = team.show(true);
        assert!(out.status.success(), "{}", stderr(&out));
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            shown.contains("verified, signed by a halt key (may only add halts)")
                && shown.contains("44.1"),
            "{shown}"
        );
        // The list's own repository holds no root: --document is asked for.
        let out = team.show(false);
        assert!(!out.status.success(), "judged by the root file alone");
        assert!(
            stderr(&out).contains("holds no trust root (cairn-root-1)")
                && stderr(&out).contains("--document"),
            "{}",
            stderr(&out)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_that_meet_no_role_of_the_root_sign_nothing() {
        let team = Team::new().await;
        let (store, tag) = (team.registry.store("acme/halts"), "cairn-halts-stable");
        let head = || async { store.resolve(tag).await.expect("resolve").map(|h| h.digest) };
        let before = head().await;

        // A key the root names in no role.
        let out = team.write(&["refresh"], &["stranger"], &[]);
        assert!(!out.status.success(), "signed with a stranger's key");
        let error = stderr(&out);
        assert!(
            error.contains("halts_signers_not_in_root")
                && error.contains("trust root version 1")
                && error.contains(&team.keys.id("stranger")[..12]),
            "{error}"
        );

        // Root 2 asks two halt keys; one alone is short, even though the
        // list under the tag is built on unverified.
        let second = format!("halt={}", team.keys.public("second"));
        team.rotate(&["--add-key", &second, "--halt-threshold", "2"])
            .await;
        let out = team.write(&["refresh"], &["old"], &["--accept-unverified-current"]);
        assert!(!out.status.success(), "one halt key of two signed");
        let error = stderr(&out);
        assert!(
            error.contains("halts_signers_not_in_root")
                && error.contains("trust root version 2")
                && error.contains("1 of the halt role's keys, 2 must"),
            "{error}"
        );
        assert_eq!(head().await, before, "nothing was pushed");

        // Two halt keys meet the threshold; the list the old key alone
        // signed no longer does, so it is built on only when accepted.
        let out = team.write(&["refresh"], &["old", "second"], &[]);
        assert!(
            !out.status.success(),
            "built on a list short of the threshold"
        );
        assert!(
            stderr(&out).contains("halts_bad_signature"),
            "{}",
            stderr(&out)
        );
        // Adding a halt the list already holds still signs it again, so
        // that hosts hold a list the root vouches for.
        let out = team.write(
            &["add", "44.1", "--who", "ops"],
            &["old", "second"],
            &["--accept-unverified-current"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("already halted") && said.contains("published the list again"),
            "{said}"
        );
        let shown = team.show(true);
        assert!(shown.status.success(), "{}", stderr(&shown));
        assert!(
            String::from_utf8_lossy(&shown.stdout).contains("signed by a halt key"),
            "{}",
            String::from_utf8_lossy(&shown.stdout)
        );
    }
}
