//! A release team's full loop through the `cairn` command against a real
//! registry: push images, edit the policy, publish signed, read it back.

mod common;
use common::publish::Publish;

use cairn_oci::Store;
use cairn_oci::layout::Layout;
use cairn_testkit::{Auth, ImageSpec, TestRegistry, write_image};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const T0: &str = "2026-03-10T12:00:00Z";
const DAY_LATER: &str = "2026-03-11T12:00:00Z";

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("cairn-test-cache-unused"),
        )
        .output()
        .expect("cairn runs")
}

fn ok(args: &[&str]) -> String {
    let out = cairn(args);
    assert!(
        out.status.success(),
        "cairn {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn auth_file(dir: &Path, registry: &TestRegistry) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        cairn_testkit::registry::USER,
        cairn_testkit::registry::PASSWORD
    ));
    let path = dir.join("auth.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host),
    )
    .expect("auth.json");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_team_loop() {
    let registry = TestRegistry::start(Auth::Htpasswd).await;
    let store = registry.store("acme/os");
    let (_, r1) =
        cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (_, r2) =
        cairn_testkit::write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    cairn_testkit::write_release(&store, "44.3", "2026-03-01T00:00:00Z", &["44.3", "stable"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let auth = auth_file(dir.path(), &registry);
    let host = registry.host.clone();
    let repo = format!("{host}/acme/os");
    let doc_ref = format!("{repo}:cairn-graph-stable");
    let reg = [
        "--insecure-registry",
        host.as_str(),
        "--authfile",
        auth.as_str(),
    ];

    ok(&["document", "keygen", "--output", &d("team")]);
    let changed = ok(&[
        "policy",
        "--policy",
        &d("updates.json"),
        "--stream",
        "stable",
        "--now",
        T0,
        "rollout",
        "start",
        "44.3",
        "--over",
        "2d",
        "--from",
        "5%",
    ]);
    assert!(
        changed.contains("changed: 44.3: rollout from 5%"),
        "{changed}"
    );
    assert!(
        changed.contains("fleet: 44.3 is offered to 5% of hosts"),
        "{changed}"
    );
    ok(&[
        "policy",
        "--policy",
        &d("updates.json"),
        "--now",
        T0,
        "barrier",
        "add",
        "44.2",
        "--reason",
        "https://example.org/keys",
    ]);
    let bare = cairn(&[
        "policy",
        "--policy",
        &d("updates.json"),
        "rollout",
        "start",
        "44.3",
        "--over",
        "1d",
        "--from",
        "5",
    ]);
    assert!(!bare.status.success() && String::from_utf8_lossy(&bare.stderr).contains("ambiguous"));

    let key = d("team.key");
    let cache = d("cache.json");
    let publish = Publish::signed(&repo, &key)
        .policy(d("updates.json"))
        .cache(&cache)
        .args(["--now", T0])
        .args(reg);
    let out = publish.run();
    assert!(
        out.stdout.contains("published signed document sequence"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(
            "cairn: scanned 4 image tags: 3 releases (3 new); also 0 of Cairn's own tags \
             (documents, keep tags)\n\
             cairn: 1 new release(s) without a policy entry get rollout 100.0%, offered to \
             every host at once: 44.1 (--default-rollout none offers new releases to nobody \
             until the policy names them)\n"
        ),
        "{}",
        out.stderr
    );

    // Read it back through the registry, checking the signature.
    let public = d("team.pub");
    let mut show = vec![
        "graph",
        "show",
        "--document",
        doc_ref.as_str(),
        "--key",
        public.as_str(),
        "--now",
        DAY_LATER,
        "--wariness",
        "0.5",
    ];
    show.extend(reg);
    let text = ok(&show);
    assert!(
        text.contains("barrier (https://example.org/keys)"),
        "{text}"
    );
    assert!(text.contains("rollout 52.5%"), "{text}");

    let next = |booted: &str| -> Value {
        let mut args = vec![
            "graph",
            "next",
            "--document",
            doc_ref.as_str(),
            "--key",
            public.as_str(),
            "--arch",
            "x86_64",
            "--booted",
            booted,
            "--now",
            DAY_LATER,
            "--wariness",
            "0.5",
        ];
        args.extend(reg);
        serde_json::from_str(&ok(&args)).expect("JSON")
    };
    assert_eq!(
        next(&r1[0].manifest)["target"]["version"],
        "44.2",
        "the barrier first"
    );
    assert_eq!(
        next(&r2[0].manifest)["target"]["version"],
        "44.3",
        "then the rollout"
    );

    // Verification: good key, wrong key, replay state.
    let mut verify = vec![
        "document",
        "verify",
        doc_ref.as_str(),
        "--key",
        public.as_str(),
        "--state",
        cache.as_str(),
        "--now",
        DAY_LATER,
    ];
    verify.extend(reg);
    let _ = std::fs::remove_file(&cache);
    assert!(ok(&verify).contains("signature valid"));
    ok(&["document", "keygen", "--output", &d("other")]);
    let other = d("other.pub");
    let mut wrong = vec![
        "document",
        "verify",
        doc_ref.as_str(),
        "--key",
        other.as_str(),
        "--now",
        DAY_LATER,
    ];
    wrong.extend(reg);
    let out = cairn(&wrong);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no signature verifies"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Barrier and target images are tagged against garbage collection.
    let tags = store.list_tags().await.expect("tags");
    // 44.1 got the default rollout as a new release, 44.2 is a barrier, 44.3 rolls out.
    assert_eq!(
        tags.iter().filter(|t| t.starts_with("cairn-keep-")).count(),
        3,
        "{tags:?}"
    );

    // A dry run after a new image shows the diff and publishes nothing.
    cairn_testkit::write_release(&store, "44.4", "2026-03-09T00:00:00Z", &["44.4"]).await;
    let before = store.resolve("cairn-graph-stable").await.expect("resolve");
    let diff = publish.clone().arg("--dry-run").run().stdout;
    assert!(
        diff.contains("44.4: new release [aarch64,x86_64], rollout 100%\n"),
        "{diff}"
    );
    assert_eq!(
        store.resolve("cairn-graph-stable").await.expect("resolve"),
        before
    );

    // Refresh re-signs with a new sequence and keeps the releases.
    let refreshed = Publish::signed(&repo, &key)
        .args(["--refresh", "--now", DAY_LATER])
        .args(reg)
        .run()
        .stdout;
    assert!(refreshed.contains("(3 releases)"), "{refreshed}");
    let fetched = cairn_oci::document::fetch(&store, "cairn-graph-stable")
        .await
        .expect("fetch");
    assert_eq!(fetched.document.issued.to_string(), DAY_LATER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_without_a_policy_makes_the_newest_release_reachable() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let old = write_image(
        &store,
        &ImageSpec::bootable("amd64", "1.0", "stable", "2026-01-01T00:00:00Z"),
        Some("1.0"),
    )
    .await;
    write_image(
        &store,
        &ImageSpec::bootable("amd64", "1.1", "stable", "2026-01-02T00:00:00Z"),
        Some("1.1"),
    )
    .await;
    let repo = format!("{}/acme/os", registry.host);
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache.json").display().to_string();
    Publish::unsigned(&repo)
        .insecure_registry(&registry.host)
        .cache(&cache)
        .run();
    let doc_ref = format!("{repo}:cairn-graph-stable");
    let answer: Value = serde_json::from_str(&ok(&[
        "graph",
        "next",
        "--document",
        &doc_ref,
        "--insecure-registry",
        &registry.host,
        "--arch",
        "x86_64",
        "--booted",
        &old.manifest,
        "--wariness",
        "1",
    ]))
    .expect("JSON");
    assert_eq!(answer["target"]["version"], "1.1", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_into_an_oci_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout_dir = dir.path().join("layout");
    let store = Store::Layout(Layout::open_or_create(&layout_dir).expect("layout"));
    write_image(
        &store,
        &ImageSpec::bootable("amd64", "1.0", "stable", "2026-01-01T00:00:00Z"),
        Some("1.0"),
    )
    .await;
    write_image(
        &store,
        &ImageSpec::bootable("amd64", "1.1", "stable", "2026-01-02T00:00:00Z"),
        Some("1.1"),
    )
    .await;
    let location = format!("oci:{}", layout_dir.display());
    let cache = dir.path().join("cache.json").display().to_string();
    ok(&[
        "document",
        "keygen",
        "--output",
        &dir.path().join("k").display().to_string(),
    ]);
    let key = dir.path().join("k.key").display().to_string();
    let public = dir.path().join("k.pub").display().to_string();
    let publish = Publish::signed(&location, &key).cache(&cache);
    publish.run();
    let summary: Value = serde_json::from_str(&ok(&[
        "graph",
        "show",
        "--document",
        &location,
        "--key",
        &public,
        "--format",
        "json",
    ]))
    .expect("JSON");
    assert_eq!(summary["releases"].as_array().map(Vec::len), Some(2));
    assert!(ok(&["document", "verify", &location, "--key", &public]).contains("signature valid"));

    // Delete the release tag of 1.1: its keep tag still holds the image, so it
    // is not "gone", and publishing again works.
    let index_path = layout_dir.join("index.json");
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("JSON");
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != "1.1");
    std::fs::write(&index_path, index.to_string()).expect("write");
    let out = publish.run();
    assert!(!out.stderr.contains("no longer in the registry"));

    // Someone without the key replaces the document: the team's next publish
    // refuses to build on it and sign it, unless told to.
    Publish::unsigned(&location).cache(&cache).run();
    let refused = publish.output();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refusing to build on and re-sign it")
    );
    publish.arg("--accept-unverified-previous").run();

    // Two --sign-keys: one signature layer each, and a graph role of
    // threshold 2 is met. Either key alone may then build on the document.
    ok(&[
        "document",
        "keygen",
        "--output",
        &dir.path().join("k2").display().to_string(),
    ]);
    let second = dir.path().join("k2.key").display().to_string();
    let both = Publish::signed(&location, &key)
        .cache(&cache)
        .args(["--sign-key", &second])
        .run();
    assert!(
        both.stdout.contains("published signed (2 keys)"),
        "{}",
        both.stdout
    );
    let fetched = cairn_oci::document::fetch(&store, "cairn-graph-stable")
        .await
        .expect("fetch");
    assert_eq!(fetched.signatures.len(), 2, "one signature layer per key");
    let keys = cairn_oci::signing::VerifyingKey::from_files([
        public.clone(),
        dir.path().join("k2.pub").display().to_string(),
    ])
    .expect("keys");
    let role = cairn_oci::trust::RoleKeys::new(cairn_oci::trust::Role::Graph, 0, &keys, 2);
    fetched
        .verify(
            "layout",
            &cairn_oci::document::TrustPolicy {
                signers: Some(&role),
                allow_unsigned: false,
                now: fetched.document.issued,
                last_seen: None,
                stream: Some("stable"),
            },
        )
        .expect("two keys signed");
    Publish::signed(&location, &second).cache(&cache).run();
}

/// What `graph next` answers for the first host of every rollout on 44.1.
fn next_for_first_host(doc_ref: &str, dir: &Path, host: &str, auth: &str) -> Output {
    let d = |name: &str| dir.join(name).display().to_string();
    cairn(&[
        "graph",
        "next",
        "--document",
        doc_ref,
        "--key",
        &d("team.pub"),
        "--halt-key",
        &d("halt.pub"),
        "--insecure-registry",
        host,
        "--authfile",
        auth,
        "--arch",
        "x86_64",
        "--booted",
        "44.1",
        "--wariness",
        "0",
    ])
}

fn next_target(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "graph next failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    answer["target"]["version"].clone()
}

async fn published_halts(store: &cairn_oci::Store) -> cairn_graph::document::HaltSettings {
    cairn_oci::document::fetch(store, "cairn-graph-stable")
        .await
        .expect("the document")
        .document
        .halts
        .expect("halts are on")
}

/// Halts through the release team's tools: turned on by a publish, carried
/// by later publishes from a policy file that knows nothing of them, cleared
/// only through `cairn policy halt clear`, and in force again once re-halted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_survives_publishes_and_is_cleared_only_through_the_policy() {
    let registry = TestRegistry::start(Auth::Htpasswd).await;
    let store = registry.store("acme/os");
    cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    cairn_testkit::write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let auth = auth_file(dir.path(), &registry);
    let host = registry.host.clone();
    let repo = format!("{host}/acme/os");
    let doc_ref = format!("{repo}:cairn-graph-stable");
    let halt_repo = format!("{host}/acme/os-halts");
    let halt_ref = format!("{halt_repo}:cairn-halts-stable");
    let reg = [
        "--insecure-registry",
        host.as_str(),
        "--authfile",
        auth.as_str(),
    ];
    ok(&["document", "keygen", "--output", &d("team")]);
    ok(&["document", "keygen", "--output", &d("halt")]);
    let policy = |args: &[&str]| {
        let policy_file = d("updates.json");
        let mut all = vec!["policy", "--policy", &policy_file, "--stream", "stable"];
        all.extend(args);

        ok(&all)
    };
    policy(&["rollout", "start", "44.2", "--over", "2d", "--from", "5%"]);
    // The release team's policy file as it is before any halt.
    std::fs::copy(d("updates.json"), d("old-updates.json")).expect("copy");
    let publish = |policy_file: &str| {
        Publish::signed(&repo, d("team.key"))
            .policy(policy_file)
            .cache(d("cache.json"))
            .args(["--halt-key", &d("halt.pub")])
            .args(reg)
    };
    // Turning halts on publishes an empty first list, signed with the graph key.
    let first = publish(&d("updates.json"))
        .arg("--halt-list")
        .arg(&halt_repo)
        .run();
    assert!(
        first.stderr.contains("published an empty first list"),
        "{}",
        first.stderr
    );
    let halts = published_halts(&store).await;
    assert_eq!(halts.location, halt_ref);
    let halt_store = registry.store("acme/os-halts");
    let list = cairn_oci::halts::fetch(&halt_store, "cairn-halts-stable")
        .await
        .expect("the first list");
    assert_eq!(halts.min_sequence, list.list.sequence);
    assert!(list.list.entries.is_empty());
    let next = || next_for_first_host(&doc_ref, dir.path(), &host, &auth);
    assert_eq!(next_target(&next()), "44.2");

    // A halt, signed with the halt key on top of the graph key's list.
    let halt = |reason: &str| {
        let mut args = vec!["halt", "add", "44.2", "--halt-list", &halt_ref, "--key"];
        let key = d("halt.key");
        let team = d("team.pub");
        args.extend([key.as_str(), "--trust-key", team.as_str()]);
        args.extend(["--document", &doc_ref, "--document-key", team.as_str()]);
        args.extend(["--who", "tester", "--reason", reason]);
        args.extend(reg);
        ok(&args)
    };
    let added = halt("3 of 20 boots failed");
    assert!(added.starts_with("halted 44.2 (halt 44.2-"), "{added}");
    let next_out = next();
    assert_eq!(next_target(&next_out), Value::Null);
    let answer: Value = serde_json::from_slice(&next_out.stdout).expect("JSON");
    assert_eq!(answer["halts"]["halted"][0]["version"], "44.2", "{answer}");
    let shown = ok(&[
        "halt",
        "show",
        "--halt-list",
        &halt_ref,
        "--key",
        &d("team.pub"),
        "--halt-key",
        &d("halt.pub"),
        "--insecure-registry",
        &host,
        "--authfile",
        &auth,
    ]);
    assert!(shown.contains("verified, signed by a halt key"), "{shown}");
    assert!(
        shown.contains(" 44.2 at ") && shown.contains("(by tester): 3 of 20 boots failed"),
        "{shown}"
    );
    // Shown with only the graph key, the halt key's list is refused by kind.
    let refused = cairn(&[
        "halt",
        "show",
        "--halt-list",
        &halt_ref,
        "--key",
        &d("team.pub"),
        "--insecure-registry",
        &host,
        "--authfile",
        &auth,
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("(halts_bad_signature)"));

    // The team's routine publish from its old policy file keeps the halt.
    publish(&d("old-updates.json")).run();
    let halts = published_halts(&store).await;
    assert_eq!(halts.location, halt_ref, "carried without --halt-list");
    assert!(halts.cleared.is_empty());
    let list = cairn_oci::halts::fetch(&halt_store, "cairn-halts-stable")
        .await
        .expect("the list");
    assert_eq!(halts.min_sequence, list.list.sequence);
    assert_eq!(next_target(&next()), Value::Null);

    // Cleared through the policy: the rollout restarts at 5%, offered again.
    let cleared = policy(&["halt", "clear", "44.2", "--from", "5%", "--over", "1d"]);
    assert!(
        cleared.contains("rollout restarts from 5% over 1 d"),
        "{cleared}"
    );
    let text = std::fs::read_to_string(d("updates.json")).expect("policy");
    assert!(text.contains("\"cairn_halt_cleared\""), "{text}");
    publish(&d("updates.json")).run();
    let halts = published_halts(&store).await;
    assert_eq!(halts.cleared.len(), 1);
    assert_eq!(halts.cleared[0].id, list.list.entries[0].id);
    let document = cairn_oci::document::fetch(&store, "cairn-graph-stable")
        .await
        .expect("document")
        .document;
    let rollout = document
        .release("44.2")
        .and_then(|(_, r)| r.rollout)
        .expect("a rollout");
    assert_eq!(rollout.start_percentage, Some(0.05));
    assert_eq!(rollout.duration_minutes, Some(24 * 60));
    assert_eq!(next_target(&next()), "44.2");

    // A halt made after the clear stays in force through the next publish.
    let again = halt("it failed again");
    assert!(again.starts_with("halted 44.2"), "{again}");
    publish(&d("updates.json")).run();
    assert_eq!(published_halts(&store).await.cleared.len(), 1);
    assert_eq!(next_target(&next()), Value::Null);

    // The simulator applies the halt: a fleet on 44.1 never moves to 44.2,
    // though its rollout (restarted at 5%) reaches everybody within the run.
    let simulate = || {
        cairn(&[
            "simulate",
            "--document",
            &doc_ref,
            "--key",
            &d("team.pub"),
            "--halt-key",
            &d("halt.pub"),
            "--halt-state",
            &d("held-halts.json"),
            "--insecure-registry",
            &host,
            "--authfile",
            &auth,
            "--booted",
            "44.1",
            "--nodes",
            "200",
            "--days",
            "3",
        ])
    };
    let simulated = simulate();
    let summary = String::from_utf8_lossy(&simulated.stdout);
    assert!(
        simulated.status.success(),
        "{}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    assert!(
        summary.contains("95% on 44.1 from the start"),
        "nobody leaves 44.1 for the halted 44.2: {summary}"
    );
    assert!(
        std::path::Path::new(&d("held-halts.json")).exists(),
        "--halt-state keeps the list accepted"
    );
    // A list signed with the halt key that drops the halt is refused by a
    // simulator holding the newer one, as hosts and cairn serve refuse it.
    let halt_key = cairn_oci::signing::SigningKey::from_pem(
        &std::fs::read_to_string(d("halt.key")).expect("key"),
        "halt.key",
    )
    .expect("key");
    let mut dropped = cairn_oci::halts::fetch(&halt_store, "cairn-halts-stable")
        .await
        .expect("list")
        .list;
    dropped.entries.pop();
    dropped.sequence += 1;
    let dropped_identity = halt_store.describe();
    let head = halt_store
        .resolve("cairn-halts-stable")
        .await
        .expect("resolve")
        .map(|h| h.digest);
    cairn_oci::halts::publish(
        &halt_store,
        &dropped,
        head,
        &cairn_oci::document::PublishOptions {
            tag: "cairn-halts-stable",
            identity: &dropped_identity,
            keys: std::slice::from_ref(&halt_key),
            root_version: 0,
            settle: std::time::Duration::ZERO,
            expected: None,
        },
    )
    .await
    .expect("the halt key can push");
    let refused = simulate();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("(halts_dropped_entry)"), "{stderr}");

    // A stale list (below the document's min_sequence) is refused by kind.
    let halts = published_halts(&store).await;
    let mut stale = cairn_oci::halts::fetch(&halt_store, "cairn-halts-stable")
        .await
        .expect("list")
        .list;
    stale.sequence = halts.min_sequence - 1;
    let team_key = cairn_oci::signing::SigningKey::from_pem(
        &std::fs::read_to_string(d("team.key")).expect("key"),
        "team.key",
    )
    .expect("key");
    let identity = halt_store.describe();
    let options = cairn_oci::document::PublishOptions {
        tag: "cairn-halts-stable",
        identity: &identity,
        keys: std::slice::from_ref(&team_key),
        root_version: 0,
        settle: std::time::Duration::ZERO,
        expected: None,
    };
    let head = halt_store
        .resolve("cairn-halts-stable")
        .await
        .expect("resolve")
        .map(|h| h.digest);
    cairn_oci::halts::publish(&halt_store, &stale, head, &options)
        .await
        .expect("a stale list pushed");
    let out = next();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(halts_replayed)"), "{stderr}");
    assert!(out.stdout.is_empty(), "no answer without a list");

    // --no-halt-list turns halts off.
    let off = Publish::signed(&repo, d("team.key"))
        .policy(d("updates.json"))
        .cache(d("cache.json"))
        .arg("--no-halt-list")
        .args(reg);
    off.run();
    let document = cairn_oci::document::fetch(&store, "cairn-graph-stable")
        .await
        .expect("document")
        .document;
    assert_eq!(document.halts, None);
}

/// The release team's tools never build on a halt list that someone with
/// push rights on its repository deleted or put back older: a routine
/// publish does not create an empty one, and `halt refresh --document` does
/// not sign the older one again. An expired list blocks no publish, and
/// `halt refresh` renews it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_replayed_halt_list_is_refused_and_an_expired_one_renewed() {
    let registry = TestRegistry::start(Auth::Htpasswd).await;
    let store = registry.store("acme/os");
    cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    cairn_testkit::write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let auth = auth_file(dir.path(), &registry);
    let host = registry.host.clone();
    let repo = format!("{host}/acme/os");
    let doc_ref = format!("{repo}:cairn-graph-stable");
    let halt_repo = format!("{host}/acme/os-halts");
    let halt_ref = format!("{halt_repo}:cairn-halts-stable");
    let reg = [
        "--insecure-registry",
        host.as_str(),
        "--authfile",
        auth.as_str(),
    ];
    ok(&["document", "keygen", "--output", &d("team")]);
    ok(&["document", "keygen", "--output", &d("halt")]);
    let publish = || {
        Publish::signed(&repo, d("team.key"))
            .cache(d("cache.json"))
            .args(["--halt-key", &d("halt.pub")])
            .args(reg)
    };
    publish().arg("--halt-list").arg(&halt_repo).run();
    let halt_store = registry.store("acme/os-halts");
    let tag = "cairn-halts-stable";
    let first = halt_store.get_manifest(tag).await.expect("first list");
    let team_pub = d("team.pub");
    let halt_key = d("halt.key");
    let mut add = vec!["halt", "add", "44.2", "--halt-list", &halt_ref];
    add.extend(["--key", &halt_key, "--trust-key", &team_pub]);
    add.extend(["--document", &doc_ref, "--document-key", &team_pub]);
    add.extend(["--who", "tester"]);
    add.extend(reg);
    ok(&add);
    publish().run();
    let halted = halt_store.get_manifest(tag).await.expect("halted list");
    let min_sequence = published_halts(&store).await.min_sequence;
    let retag = |manifest: &cairn_oci::client::FetchedManifest| {
        let (bytes, media_type) = (manifest.bytes.clone(), manifest.media_type.clone());
        let halt_store = halt_store.clone();
        async move {
            halt_store
                .put_manifest(bytes, &media_type, Some(tag))
                .await
                .expect("re-tag");
        }
    };
    let mut refresh = vec!["halt", "refresh", "--halt-list", &halt_ref];
    refresh.extend(["--key", &halt_key, "--trust-key", &team_pub]);
    refresh.extend(["--document", &doc_ref, "--document-key", &team_pub]);
    refresh.extend(reg);

    // The first, empty list put back: the nightly refresh refuses it.
    retag(&first).await;
    let out = cairn(&refresh);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(halts_replayed)"), "{stderr}");
    assert!(stderr.contains("halts.min_sequence"), "{stderr}");
    let under_tag = halt_store.get_manifest(tag).await.expect("list");
    assert_eq!(
        under_tag.digest, first.digest,
        "nothing signed on top of it"
    );

    // A list at the document's floor but older than the newest one the
    // writer published: with --halt-state, the refresh refuses to build on it.
    retag(&halted).await;
    let state = d("writer-halts.json");
    let mut add_kept = vec!["halt", "add", "44.1", "--halt-list", &halt_ref];
    add_kept.extend(["--key", &halt_key, "--trust-key", &team_pub]);
    add_kept.extend(["--document", &doc_ref, "--document-key", &team_pub]);
    add_kept.extend(["--who", "tester", "--halt-state", &state]);
    add_kept.extend(reg);
    ok(&add_kept);
    let newest = halt_store.get_manifest(tag).await.expect("newest list");
    retag(&halted).await;
    let mut kept_refresh = refresh.clone();
    kept_refresh.extend(["--halt-state", &state]);
    let out = cairn(&kept_refresh);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(halts_replayed)"), "{stderr}");
    assert_eq!(
        halt_store.get_manifest(tag).await.expect("list").digest,
        halted.digest,
        "nothing signed on top of the replayed list"
    );
    // Put back, the newest list is renewed and kept.
    retag(&newest).await;
    ok(&kept_refresh);
    let kept = std::fs::read(&state).expect("state");
    let kept: Value = serde_json::from_slice(&kept).expect("JSON");
    assert_eq!(kept["entries"].as_array().map(Vec::len), Some(2), "{kept}");

    // The tag deleted: a routine publish creates no empty list, nor does
    // the refresh; both say what to do.
    retag(&halted).await;
    cairn_testkit::skopeo(&[
        "delete",
        "--tls-verify=false",
        "--authfile",
        &auth,
        &format!("docker://{halt_ref}"),
    ]);
    let refused = publish().output();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("sequence {min_sequence} was published")),
        "{stderr}"
    );
    assert!(stderr.contains("--recreate-halt-list"), "{stderr}");
    let refused = publish().arg("--refresh").output();
    assert!(!refused.status.success(), "nor a --refresh");
    let out = cairn(&refresh);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(halts_missing)"), "{stderr}");
    assert!(halt_store.resolve(tag).await.expect("resolve").is_none());

    // Restored, then expired: `publish --refresh` goes on with a warning,
    // and `halt refresh` renews the list with its halt.
    retag(&halted).await;
    let team_key = cairn_oci::signing::SigningKey::from_pem(
        &std::fs::read_to_string(d("team.key")).expect("key"),
        "team.key",
    )
    .expect("key");
    let mut expired = cairn_oci::halts::fetch(&halt_store, tag)
        .await
        .expect("list")
        .list;
    expired.sequence += 1;
    expired.expires = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let identity = halt_store.describe();
    cairn_oci::halts::publish(
        &halt_store,
        &expired,
        Some(halted.digest.clone()),
        &cairn_oci::document::PublishOptions {
            tag,
            identity: &identity,
            keys: std::slice::from_ref(&team_key),
            root_version: 0,
            settle: std::time::Duration::ZERO,
            expected: None,
        },
    )
    .await
    .expect("an expired list");
    let refreshed = publish().arg("--refresh").run();
    assert!(
        refreshed.stderr.contains("expired at") && refreshed.stderr.contains("cairn halt refresh"),
        "{}",
        refreshed.stderr
    );
    assert_eq!(published_halts(&store).await.min_sequence, expired.sequence);
    let renewed = ok(&refresh);
    assert!(renewed.contains("1 entries"), "{renewed}");
    let list = cairn_oci::halts::fetch(&halt_store, tag)
        .await
        .expect("list");
    assert!(list.list.expires > jiff::Timestamp::now());
    assert_eq!(list.list.entries, expired.entries);
}
