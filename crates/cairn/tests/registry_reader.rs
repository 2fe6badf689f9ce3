//! The agent reads registry artifacts through skopeo's image proxy, with
//! the settings of the host (here: its test `--root`), and falls back to
//! the built-in client when skopeo is not there; `cairn status` says which.

mod common;
use common::agent::{AgentCommand, BehindLogin, behind_login};
use common::fleet::{Published, fragment, published};
use common::ok;

use cairn_testkit::host::FakeHost;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A host booted on the newest release (so a trusted document means
/// "up to date"), its root configured with `fragment` and `extra` keys
/// of `[updates]`.
fn host_at_newest(p: &Published, base: &Path, extra: &str) -> (FakeHost, PathBuf) {
    let host = FakeHost::new(
        &base.join("host"),
        "1.17.0",
        &format!("{}:stable", p.repo),
        (&p.digests[2], "44.3"),
        &[],
        true,
    );
    let root = base.join("root");
    std::fs::create_dir_all(root.join("etc/cairn/config.d")).expect("mkdir");
    std::fs::write(
        root.join("etc/cairn/config.d/50-site.toml"),
        fragment(p, 0.5),
    )
    .expect("config");
    std::fs::write(
        root.join("etc/cairn/config.d/60-reader.toml"),
        format!("[updates]\n{extra}"),
    )
    .expect("config");
    (host, root)
}

/// `<root>/etc/containers/registries.conf` with `text`.
fn registries_conf(root: &Path, text: &str) {
    std::fs::create_dir_all(root.join("etc/containers")).expect("mkdir");
    std::fs::write(root.join("etc/containers/registries.conf"), text).expect("registries.conf");
}

/// One `cairn agent --once` (no `--insecure-registry`: only the root's
/// files say how to reach the registry), and the status it left.
fn once(host: &FakeHost, root: &Path, state: &Path) -> (String, Value) {
    let out = AgentCommand::new(&["agent", "--once"], host, root, state)
        .output()
        .stdout;
    let status = ok(&[
        "status",
        "--json",
        "--state-dir",
        &state.display().to_string(),
    ]);
    (
        String::from_utf8_lossy(&out).into_owned(),
        serde_json::from_str(&status).expect("status JSON"),
    )
}

fn insecure(host: &str) -> String {
    format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_trusted_only_through_the_roots_certs_d_is_read_through_skopeo() {
    let mut p = published().await;
    let ca = p.registry.serve_tls().join("ca.crt");
    let base = p.dir.path().join("tls");
    let (host, root) = host_at_newest(&p, &base, "");
    registries_conf(&root, "unqualified-search-registries = []\n");
    let certs = root.join("etc/containers/certs.d").join(&p.registry.host);
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(&ca, certs.join("ca.crt")).expect("ca.crt");

    let (out, status) = once(&host, &root, &base.join("state"));
    assert!(out.contains("State:      steady — up to date"), "{out}");
    assert!(
        out.contains("Registries: through skopeo (image proxy protocol"),
        "{out}"
    );
    assert!(
        out.contains("tag and barrier scans: built-in client"),
        "{out}"
    );
    let reader = &status["registryReader"];
    assert_eq!(reader["backend"], "proxy", "{status}");
    assert_eq!(reader["scans"], "builtin", "{status}");
    assert!(reader["skopeoProtocol"].as_str().is_some(), "{status}");
    assert_eq!(reader["reason"], Value::Null, "{status}");

    // The certs.d made the difference: the built-in client, which does
    // not read it, cannot verify the registry's certificate.
    let (host, root) = host_at_newest(&p, &base.join("builtin"), "registry_reader = \"builtin\"\n");
    registries_conf(&root, "unqualified-search-registries = []\n");
    let (out, status) = once(&host, &root, &base.join("builtin/state"));
    assert_eq!(status["registryReader"]["backend"], "builtin", "{status}");
    assert!(out.contains("certificate"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_registry_is_not_asked_and_the_agent_says_so() {
    let p = published().await;
    let base = p.dir.path().join("blocked");
    let (host, root) = host_at_newest(&p, &base, "");
    registries_conf(
        &root,
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\nblocked = true\n",
            p.registry.host
        ),
    );
    let before = p.registry.requests().len();
    let (out, status) = once(&host, &root, &base.join("state"));
    assert_eq!(status["registryReader"]["backend"], "proxy", "{status}");
    let error = status["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("blocked"), "{status}");
    assert!(error.contains("cairn-graph-stable"), "{status}");
    assert!(out.contains("Last error:"), "{out}");
    let asked: Vec<String> = p.registry.requests()[before..]
        .iter()
        .filter(|r| r.uri.starts_with("/v2/"))
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert!(
        asked.is_empty(),
        "the blocked registry was asked: {asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_skopeo_the_built_in_client_reads_and_status_says_why() {
    let p = published().await;
    let base = p.dir.path().join("no-skopeo");
    let missing = base.join("bin/skopeo");
    let (host, root) = host_at_newest(&p, &base, &format!("skopeo = \"{}\"\n", missing.display()));
    registries_conf(&root, &insecure(&p.registry.host));
    let (out, status) = once(&host, &root, &base.join("state"));
    assert!(out.contains("State:      steady — up to date"), "{out}");
    let reader = &status["registryReader"];
    assert_eq!(reader["backend"], "builtin", "{status}");
    assert_eq!(reader["skopeoProtocol"], Value::Null, "{status}");
    let reason = reader["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("skopeo not found"), "{status}");
    assert!(reason.contains(&missing.display().to_string()), "{status}");
    assert!(
        out.contains("Registries: built-in client: skopeo not found"),
        "{out}"
    );
}

/// A skopeo that is there but does not start does not hand the pass to
/// the built-in client, which would ignore the host's settings (a blocked
/// registry, its certs.d): the pass stops and says why, and the registry
/// is not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skopeo_that_fails_to_start_stops_the_pass_rather_than_fall_back() {
    let p = published().await;
    let base = p.dir.path().join("broken-skopeo");
    std::fs::create_dir_all(base.join("bin")).expect("mkdir");
    let broken = base.join("bin/skopeo");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'skopeo: broken install' >&2\nexit 1\n",
    )
    .expect("write");
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (host, root) = host_at_newest(&p, &base, &format!("skopeo = \"{}\"\n", broken.display()));
    registries_conf(&root, &insecure(&p.registry.host));
    let before = p.registry.requests().len();
    let (out, status) = once(&host, &root, &base.join("state"));
    let error = status["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("did not start"), "{status}");
    assert!(error.contains(&broken.display().to_string()), "{status}");
    assert!(!out.contains("up to date"), "{out}");
    let asked: Vec<String> = p.registry.requests()[before..]
        .iter()
        .filter(|r| r.uri.starts_with("/v2/"))
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert!(asked.is_empty(), "the registry was asked: {asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_and_the_built_in_client_read_the_same_document() {
    let p = published().await;
    let mut statuses = Vec::new();
    for (name, extra) in [
        ("proxy", ""),
        ("builtin", "registry_reader = \"builtin\"\n"),
    ] {
        let base = p.dir.path().join(name);
        let (host, root) = host_at_newest(&p, &base, extra);
        registries_conf(&root, &insecure(&p.registry.host));
        let (out, status) = once(&host, &root, &base.join("state"));
        assert!(out.contains("State:      steady — up to date"), "{out}");
        assert_eq!(status["registryReader"]["backend"], name, "{status}");
        // A second, idle check: what it costs each way, for the record.
        let before = p.registry.requests().len();
        let started = std::time::Instant::now();
        let (out, _) = once(&host, &root, &base.join("state"));
        let took = started.elapsed();
        assert!(out.contains("State:      steady — up to date"), "{out}");
        let requests = p.registry.requests().len() - before;
        assert!(requests > 0, "{name}: the idle check asked nothing");
        eprintln!(
            "idle check through the {name}: {requests} registry requests, {} ms for `cairn agent --once`",
            took.as_millis()
        );
        statuses.push(status);
    }
    let builtin = statuses.pop().expect("two statuses");
    let proxy = statuses.pop().expect("two statuses");
    assert!(proxy["documentSequence"].as_u64().is_some(), "{proxy}");
    for field in ["documentSequence", "source", "trustRoot", "state", "reason"] {
        assert_eq!(proxy[field], builtin[field], "{field}");
    }
    assert_eq!(
        builtin["registryReader"]["reason"],
        "updates.registry_reader = \"builtin\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_with_the_hosts_ostree_credentials_and_without_them_anonymously() {
    let BehindLogin {
        registry,
        dir,
        host,
        root,
        auth,
    } = behind_login(false).await;
    registries_conf(&root, &insecure(&registry.host));
    // No ostree auth file: skopeo is told to send no credentials (never a
    // user's auth.json), and the registry refuses.
    let (out, status) = once(&host, &root, &dir.path().join("state"));
    assert_eq!(status["registryReader"]["backend"], "proxy", "{status}");
    assert!(out.contains("Last error: 127.0.0.1"), "{out}");
    assert!(
        status["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("authentication required") || e.contains("unauthorized")),
        "{status}"
    );
    std::fs::create_dir_all(root.join("etc/ostree")).expect("mkdir");
    std::fs::write(root.join("etc/ostree/auth.json"), &auth).expect("auth.json");
    let (out, status) = once(&host, &root, &dir.path().join("state"));
    assert_eq!(status["registryReader"]["backend"], "proxy", "{status}");
    assert!(out.contains("State:      steady — up to date"), "{out}");
    assert!(out.contains("Last error: none"), "{out}");
}
