//! Derived repositories through `cairn serve`: a scan source inherits from
//! the base graph exactly as `cairn publish` does, and a base graph from a
//! Cincinnati server counts every architecture, not just x86_64.

use super::*;
use cairn_testkit::{GraphServer, ImageSpec, add_tags, write_image};

/// What must agree between two documents: each release's base, barrier and
/// dead-end (inherited or not), and the edges.
fn inheritance(shown: &Value) -> (Vec<Value>, Vec<(String, String)>) {
    let releases = shown["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .map(|r| {
            json!({
                "version": r["version"],
                "base": r["base"]["version"],
                "barrier": r["barrier"],
                "deadend": r["deadend"],
                "inherited_from": r["inherited_from"],
            })
        })
        .collect();
    (releases, edges(shown))
}

/// `cairn graph show --format json` of an unsigned document file.
fn show_file(path: &str, arch: &str) -> Value {
    let text = ok(&[
        "graph",
        "show",
        "--document",
        path,
        "--arch",
        arch,
        "--format",
        "json",
    ]);
    serde_json::from_str(&text).expect("JSON")
}

/// The `scan` source's base settings, as `base_args` gives them to `cairn publish`.
fn scan_base(w: &World) -> String {
    match w.kind {
        BaseKind::Document => format!(
            "base_graph = \"{}:cairn-graph-stable\", base_keys = [\"{}\"]",
            w.base_repo,
            w.path("base.pub")
        ),
        BaseKind::Fcos => format!("base_graph = \"fcos:stable:http://{}\"", w.fedora),
    }
}

both_base_kinds!(a_scanning_server_serves_what_publish_publishes);
async fn a_scanning_server_serves_what_publish_publishes(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/served";
    // On 40.1, on the barrier 40.2, on the dead-end 40.4, and on 40.5.
    derive(
        &w,
        repo,
        &[
            ("v1", 0, Index, "2026-01-03", "v1"),
            ("v2", 1, Manifests, "2026-01-17", "v2"),
            ("v4", 3, Index, "2026-02-17", "v4"),
            ("v5", 4, Manifests, "2026-03-03", "v5 stable"),
        ],
    )
    .await;
    publish(&w, repo, &[]);
    let published = inheritance(&show(&w, repo));

    let config = w.dir.path().join("served.toml");
    std::fs::write(
        &config,
        format!(
            "insecure_registries = [\"{}\", \"{}\"]\n[[stream]]\nname = \"stable\"\n\
             scan = {{ repository = \"{}/{repo}\", {} }}\n",
            w.registry.host,
            w.fedora,
            w.registry.host,
            scan_base(&w)
        ),
    )
    .expect("server config");
    let server = GraphServer::with_config(env!("CARGO_BIN_EXE_cairn"), &config);
    let (status, document) = server.get("/v2/graph/stable");
    assert_eq!(status, 200, "{document}");
    let file = w.path("served.json");
    std::fs::write(&file, &document).expect("write");
    let served = inheritance(&show_file(&file, "x86_64"));
    assert_eq!(served, published, "served: {document}");
    // Not two empty lists: the barrier, the dead-end and the edges are there.
    let (releases, edges) = served;
    let of = |version: &str| {
        releases
            .iter()
            .find(|r| r["version"] == version)
            .unwrap_or_else(|| panic!("no {version} in {releases:?}"))
            .clone()
    };
    assert_eq!(of("v2")["barrier"], BARRIER_REASON);
    assert_eq!(of("v4")["deadend"], DEADEND_REASON);
    assert!(edges.contains(&("v1".into(), "v2".into())), "{edges:?}");
    assert!(!edges.contains(&("v1".into(), "v5".into())), "{edges:?}");
}

/// A server refuses a scan whose base graph is a Cairn document without a key,
/// naming the setting.
#[test]
fn a_scan_with_an_unverifiable_base_document_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "[[stream]]\nname = \"stable\"\n\
         scan = { repository = \"registry.example/acme/os\", base_graph = \"registry.example/base:cairn-graph-stable\" }\n",
    )
    .expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--config", &config.display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cairn serve");
    // A wrongly accepted config would serve for ever: give it a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cairn serve accepted the config and kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("key `stream[0].scan.base_keys` (stable)"),
        "{stderr}"
    );
}

/// Derived images of one architecture only, arm64, each recording its base's
/// arm64 manifest. Returns their manifest digests.
async fn derive_arm64(w: &World, repo: &str, builds: &[(&str, usize, &str, &str)]) -> Vec<String> {
    let store = w.registry.store(repo);
    let mut digests = Vec::new();
    for &(own, at, created, tags) in builds {
        let (version, base_created) = BASE[at];
        let created = format!("{created}T00:00:00Z");
        let mut spec = ImageSpec::bootable("arm64", version, "stable", &created);
        spec.lower_layers = vec![format!("{version} arm64 {base_created}")];
        spec.content = format!("derived {own} arm64 {created}");
        spec.annotations.insert(
            "org.opencontainers.image.base.name".into(),
            format!("{}:stable", w.base_repo),
        );
        spec.annotations.insert(
            "org.opencontainers.image.base.digest".into(),
            w.base_manifests[at].1.clone(),
        );
        let tags: Vec<&str> = tags.split_whitespace().collect();
        let written = write_image(&store, &spec, Some(tags[0])).await;
        add_tags(&store, &written.manifest, &tags[1..]).await;
        digests.push(written.manifest);
    }
    digests
}

/// Cairn's own graph server over the base document: the Cincinnati base.
fn base_graph_server(w: &World) -> GraphServer {
    GraphServer::document(
        env!("CARGO_BIN_EXE_cairn"),
        w.dir.path(),
        &w.registry.host,
        &format!("{}:cairn-graph-stable", w.base_repo),
        &w.path("base.pub"),
    )
}

/// A Cincinnati server answers for one architecture; an arm64 repository's
/// base releases are found in its aarch64 graph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cincinnati_base_graph_is_read_for_every_architecture() {
    let w = world(BaseKind::Document).await;
    let server = base_graph_server(&w);
    let repo = "acme/arm";
    derive_arm64(
        &w,
        repo,
        &[
            ("p1", 0, "2026-01-03", "p1"),
            ("p2", 1, "2026-01-17", "p2"),
            ("p3", 2, "2026-02-03", "p3 stable"),
        ],
    )
    .await;
    ok(&["document", "keygen", "--output", &w.path("team")]);
    let stderr = Publish::signed(&format!("{}/{repo}", w.registry.host), w.path("team.key"))
        .insecure_registry(&w.registry.host)
        .insecure_registry(&server.listen)
        .cache(w.path("arm-cache.json"))
        .arg("--base-graph")
        .arg(format!("cincinnati:http://{}#stable", server.listen))
        .run()
        .stderr;
    assert!(
        !stderr.contains("is not in the base graph"),
        "every base is found: {stderr}"
    );
    let shown = show_arch(&w, repo, "aarch64");
    assert_eq!(release(&shown, "p1")["base"]["version"], "40.1", "{shown}");
    let p2 = release(&shown, "p2");
    assert_eq!(p2["base"]["version"], "40.2");
    assert_eq!(p2["barrier"], BARRIER_REASON, "inherited: {p2}");
    let edges = edges(&shown);
    assert!(edges.contains(&("p1".into(), "p2".into())), "{edges:?}");
    assert!(
        !edges.contains(&("p1".into(), "p3".into())),
        "no edge crosses the barrier: {edges:?}"
    );
}

/// A Cincinnati base that does not serve one of the releases' architectures
/// (Cairn's server answers 400 `unknown_basearch`) leaves that architecture
/// out with a warning naming it; one that serves none fails, naming each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cincinnati_base_missing_an_architecture_skips_it_with_a_warning() {
    let w = world(BaseKind::Document).await;
    let server = base_graph_server(&w);
    let repo = "acme/mixed";
    derive_arm64(
        &w,
        repo,
        &[
            ("p1", 0, "2026-01-03", "p1"),
            ("p2", 1, "2026-01-17", "p2 stable"),
        ],
    )
    .await;
    // A ppc64le image the base has no graph for.
    let odd = |repo: &str| {
        let store = w.registry.store(repo);
        async move {
            let spec = ImageSpec::bootable("ppc64le", "41.9", "stable", "2026-02-01T00:00:00Z");
            write_image(&store, &spec, Some("q1")).await;
        }
    };
    odd(repo).await;
    ok(&["document", "keygen", "--output", &w.path("team")]);
    let base_graph = format!("cincinnati:http://{}#stable", server.listen);
    let publish = |repo: &str| {
        Publish::signed(&format!("{}/{repo}", w.registry.host), w.path("team.key"))
            .insecure_registry(&w.registry.host)
            .insecure_registry(&server.listen)
            .arg("--base-graph")
            .arg(&base_graph)
    };
    let stderr = publish(repo).run().stderr;
    assert!(
        stderr.contains("ppc64le: ") && stderr.contains("inherit nothing from the base"),
        "the missing architecture is named: {stderr}"
    );
    let shown = show_arch(&w, repo, "aarch64");
    let p2 = release(&shown, "p2");
    assert_eq!(
        p2["barrier"], BARRIER_REASON,
        "aarch64 still inherits: {p2}"
    );

    let only_odd = "acme/odd";
    odd(only_odd).await;
    let out = publish(only_odd).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no architecture served: {stderr}");
    assert!(
        stderr.contains("serves none of the releases' architectures") && stderr.contains("ppc64le"),
        "{stderr}"
    );
}
