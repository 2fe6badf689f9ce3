//! Path 1, "I publish nothing": hosts that follow a tag with the base guard.

use super::*;

both_base_kinds!(a_tag_following_host_stages_the_barrier_image_first);
async fn a_tag_following_host_stages_the_barrier_image_first(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/follow-walk";
    let digests = derive(
        &w,
        repo,
        &[
            ("t1", 0, Manifests, "2026-01-03", "t1"),
            ("t2", 1, Index, "2026-01-17", "t2"),
            ("t3", 2, Manifests, "2026-02-03", "t3 stable"),
        ],
    )
    .await;
    let h = host(
        &w,
        "follow-walk",
        repo,
        (&digests[0], "t1"),
        &tag_config(&w),
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("staged t2"), "the barrier image first: {out}");
    assert_eq!(staged(&h).as_deref(), Some(digests[1].as_str()));
    let status: Value =
        serde_json::from_str(&ok(&["status", "--state-dir", &h.state, "--json"])).expect("JSON");
    assert!(
        status["source"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("tag {}/{repo}:stable", w.registry.host))),
        "{status}"
    );
    h.host.reboot(true);
    // The tag's image carries only its base's version label: it is named
    // by build time and digest, as the brief describes.
    let out = until_staged(&w, &h);
    assert!(
        out.contains("staged 2026-02-03T00:00:00Z-"),
        "then the tag's image: {out}"
    );
    assert_eq!(staged(&h).as_deref(), Some(digests[2].as_str()));
}

both_base_kinds!(a_tag_following_host_holds_without_a_barrier_image_and_says_what_is_missing);
async fn a_tag_following_host_holds_without_a_barrier_image_and_says_what_is_missing(
    kind: BaseKind,
) {
    let w = world(kind).await;
    let repo = "acme/follow-gap";
    let digests = derive(
        &w,
        repo,
        &[
            ("u1", 0, Manifests, "2026-01-03", "u1"),
            // Another image on an older base than the barrier does not help.
            ("u1b", 0, Manifests, "2026-01-05", "u1b"),
            ("u3", 2, Manifests, "2026-02-03", "u3 stable"),
        ],
    )
    .await;
    let h = host(&w, "follow-gap", repo, (&digests[0], "u1"), &tag_config(&w));
    let out = agent_once(&w, &h, &["agent", "--once"]);
    let missing = format!(
        "no image in {}/{repo} is built on {} 40.2 (barrier: {BARRIER_REASON}); build one, or run `cairn update-now --cross-barrier` to accept the risk",
        w.registry.host,
        w.base_graph_repository()
    );
    assert!(out.contains(&missing), "{out}");
    assert_eq!(staged(&h), None);
    let motd =
        std::fs::read_to_string(std::path::Path::new(&h.root).join("run/motd.d/85-cairn.motd"))
            .expect("a MOTD");
    assert!(motd.contains(&missing), "{motd}");
    let metrics = std::fs::read_to_string(std::path::Path::new(&h.state).join("metrics.prom"))
        .expect("metrics");
    assert!(
        metrics.contains(&format!(
            "cairn_agent_missing_base_image{{barrier=\"{} 40.2\"}} 1",
            w.base_graph_repository()
        )),
        "{metrics}"
    );
    let out = agent_output(&w, &h, &["update-now", "--once", "--cross-barrier"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("staged 2026-02-03T00:00:00Z-"), "{stdout}");
    assert!(
        stderr.contains("update-now --cross-barrier: the operator lifted the base-barrier guard"),
        "the override is logged: {stderr}"
    );
    assert_eq!(staged(&h).as_deref(), Some(digests[2].as_str()));
}

/// A tag-following host that must stay where it is: what is built (the
/// host boots the first), whether `stable` then moves to a re-annotated copy
/// of the same image, and what the agent must say.
struct StaysPut {
    name: &'static str,
    why: &'static str,
    builds: &'static [Build],
    reannotate_stable: bool,
    says: fn(&World) -> String,
}

const STAYS_PUT: [StaysPut; 2] = [
    StaysPut {
        name: "follow-dead",
        why: "on a base dead-end",
        builds: &[
            ("v4", 3, Manifests, "2026-02-17", "v4"),
            ("v5", 4, Manifests, "2026-03-03", "v5 stable"),
        ],
        reannotate_stable: false,
        says: |w| {
            format!(
                "{DEADEND_REASON} (inherited from base {} 40.4)",
                w.base_graph_repository()
            )
        },
    },
    StaysPut {
        name: "follow-meta",
        why: "when the tag moves to a metadata-only change",
        builds: &[("n3", 2, Manifests, "2026-02-03", "n3 stable")],
        reannotate_stable: true,
        says: |_| "only changes metadata".to_string(),
    },
];

both_base_kinds!(a_tag_following_host_stays_put);
/// Every case of [`STAYS_PUT`], in one world; a failure names its case.
async fn a_tag_following_host_stays_put(kind: BaseKind) {
    let w = world(kind).await;
    for case in &STAYS_PUT {
        let (name, why) = (case.name, case.why);
        let repo = format!("acme/{name}");
        let digests = derive(&w, &repo, case.builds).await;
        if case.reannotate_stable {
            let store = w.registry.store(&repo);
            let index = store
                .resolve("stable")
                .await
                .expect("HEAD")
                .expect("tag")
                .digest;
            reannotate(&w, &repo, &index).await;
        }
        let booted = (digests[0].as_str(), case.builds[0].0);
        let h = host(&w, name, &repo, booted, &tag_config(&w));
        let out = agent_once(&w, &h, &["agent", "--once"]);
        let says = (case.says)(&w);
        assert!(out.contains(&says), "{name} ({why}): {says:?} not in {out}");
        assert_eq!(staged(&h), None, "{name} ({why}): nothing staged");
    }
}

both_base_kinds!(unknown_bases_are_excluded_and_layers_find_unrecorded_ones);
async fn unknown_bases_are_excluded_and_layers_find_unrecorded_ones(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/bases";
    let unknown = UNKNOWN_BASE;
    derive(
        &w,
        repo,
        &[
            // Built on 40.1, but the build recorded no base keys.
            ("x1", 0, Nothing, "2026-01-03", "x1"),
            // Records a base the base graph does not know.
            ("x2", 0, Unknown, "2026-01-04", "x2"),
            ("x3", 0, Manifests, "2026-01-05", "x3 stable"),
        ],
    )
    .await;
    // Published in build order: x1, x2, x3 (positions 0, 1, 2; `graph show`
    // lists them in update order). Neither x1 nor x2 can tell its version
    // label was inherited, so both carry the base's (x2 disambiguated).
    let at = |shown: &Value, i: usize| {
        shown["releases"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["position"] == i))
            .cloned()
            .unwrap_or_default()
    };
    let version = |shown: &Value, i: usize| {
        at(shown, i)["version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let stderr = publish(&w, repo, &[]);
    let shown = show(&w, repo);
    let (x1, x2) = (version(&shown, 0), version(&shown, 1));
    assert_eq!(version(&shown, 2), "x3");
    assert!(
        stderr.contains(&format!("release {x1}: records no base image")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "release {x2}: base {unknown} is not in the base graph"
        )),
        "{stderr}"
    );
    assert!(
        edges(&shown).is_empty(),
        "no edge to or from either: {:?}",
        edges(&shown)
    );
    // With the layer fallback, x1's lower layer is found among the base releases' images.
    let stderr = publish(&w, repo, &["--base-layers-from", &w.base_repo]);
    assert!(
        stderr.contains("matched 1 image(s) to a base release by their layers"),
        "{stderr}"
    );
    let shown = show(&w, repo);
    assert_eq!(at(&shown, 0)["base"]["version"], "40.1", "{shown}");
    assert_eq!(at(&shown, 1)["base"]["version"], Value::Null);
    assert_eq!(
        shown["not_offered"],
        json!([x2]),
        "the unknown base is never a target; x1 is where hosts start"
    );
    let edges = edges(&shown);
    assert_eq!(edges, vec![(x1, "x3".to_string())]);
}

/// The base graph from a Cincinnati server (`cairn serve` over the base document).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_following_host_reads_its_base_graph_from_a_cincinnati_server() {
    let w = world(BaseKind::Document).await;
    let server = cairn_testkit::GraphServer::document(
        env!("CARGO_BIN_EXE_cairn"),
        w.dir.path(),
        &w.registry.host,
        &format!("{}:cairn-graph-stable", w.base_repo),
        &w.path("base.pub"),
    );
    let repo = "acme/follow-cincinnati";
    let digests = derive(
        &w,
        repo,
        &[
            ("c1", 0, Index, "2026-01-03", "c1"),
            ("c2", 1, Manifests, "2026-01-17", "c2"),
            ("c3", 2, Index, "2026-02-03", "c3 stable"),
        ],
    )
    .await;
    let config = format!(
        "[updates]\nsource = \"tag\"\nbase_source = \"cincinnati:http://{}#stable\"\n[identity]\nrollout_wariness = 0.5\n",
        server.listen
    );
    let h = host(&w, "follow-cincinnati", repo, (&digests[0], "c1"), &config);
    let out = agent_once(
        &w,
        &h,
        &["agent", "--once", "--insecure-registry", &server.listen],
    );
    assert!(out.contains("staged c2"), "the barrier image first: {out}");
    assert!(
        out.contains(&format!(
            "base graph cincinnati:http://{} (stable)",
            server.listen
        )),
        "{out}"
    );
    assert_eq!(staged(&h).as_deref(), Some(digests[1].as_str()));
}

/// A disconnected host: the registry it follows is unreachable, and its
/// registries.conf names a mirror that has the images, marked insecure on
/// the mirror's entry alone. In a drop-in (which a test root cannot hand
/// to skopeo) the built-in client reads; in registries.conf itself, skopeo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_following_host_reads_through_its_registries_conf_mirror() {
    for reader in ["builtin", "proxy"] {
        follow_through_a_mirror(reader).await;
    }
}

async fn follow_through_a_mirror(reader: &str) {
    // Fedora's files come over plain HTTP here, which takes
    // --insecure-registry and so the built-in client; skopeo's host reads a
    // Cairn base document instead.
    let w = world(match reader {
        "builtin" => BaseKind::Fcos,
        _ => BaseKind::Document,
    })
    .await;
    let repo = "acme/follow-mirror";
    let digests = derive(
        &w,
        repo,
        &[
            ("m1", 0, Manifests, "2026-01-03", "m1"),
            ("m3", 2, Manifests, "2026-02-03", "m3 stable"),
        ],
    )
    .await;
    let base = w.dir.path().join("follow-mirror");
    let host = FakeHost::new(
        &base.join("host"),
        "1.17.0",
        &format!("127.0.0.1:1/{repo}:stable"),
        (&digests[0], "m1"),
        &[],
        true,
    );
    let h = Host::configured(host, &base, &tag_config(&w));
    let root = std::path::Path::new(&h.root);
    let conf = format!(
        "[[registry]]\nprefix = \"127.0.0.1:1/acme\"\nlocation = \"127.0.0.1:1/acme\"\n[[registry.mirror]]\nlocation = \"{}/acme\"\ninsecure = true\n\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
        w.registry.host, w.base_repo
    );
    let path = match reader {
        "builtin" => root.join("etc/containers/registries.conf.d/50-mirror.conf"),
        _ => root.join("etc/containers/registries.conf"),
    };
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, conf).expect("registries.conf");
    // The mirror's entry says how to reach it.
    let before = w.registry.requests().len();
    let out = match reader {
        "builtin" => h
            .command(&["agent", "--once"])
            .insecure_registry(&w.fedora)
            .ok(),
        _ => h.command(&["agent", "--once"]).ok(),
    };
    // Both images and the repository's tags were read through the mirror.
    assert!(
        out.contains(&format!("no image in 127.0.0.1:1/{repo} is built on "))
            && out.contains("40.2"),
        "{reader}: {out}"
    );
    assert!(out.contains("Last error: none"), "{reader}: {out}");
    let status: Value =
        serde_json::from_str(&ok(&["status", "--state-dir", &h.state, "--json"])).expect("JSON");
    assert_eq!(status["registryReader"]["scans"], reader, "{status}");
    let listed = w.registry.requests()[before..]
        .iter()
        .filter(|r| r.uri.starts_with(&format!("/v2/{repo}/tags/list")))
        .map(|r| r.user_agent.clone())
        .collect::<Vec<_>>();
    let by_skopeo = listed.iter().any(|agent| agent.starts_with("skopeo/"));
    assert!(
        !listed.is_empty(),
        "{reader}: the tags were listed at the mirror"
    );
    assert_eq!(by_skopeo, reader == "proxy", "{reader}: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scans_and_a_cairn_base_document_are_read_through_skopeo() {
    let w = world(BaseKind::Document).await;
    let repo = "acme/follow-proxy";
    let digests = derive(
        &w,
        repo,
        &[
            ("p1", 0, Manifests, "2026-01-03", "p1"),
            ("p2", 1, Index, "2026-01-17", "p2"),
            ("p3", 2, Manifests, "2026-02-03", "p3 stable"),
        ],
    )
    .await;
    let h = host(
        &w,
        "follow-proxy",
        repo,
        (&digests[0], "p1"),
        &tag_config(&w),
    );
    // No --insecure-registry: the root's registries.conf says how to reach
    // the registry, for skopeo and the built-in client alike.
    let conf = std::path::Path::new(&h.root).join("etc/containers");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("registries.conf"),
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            w.registry.host
        ),
    )
    .expect("registries.conf");
    let before = w.registry.requests().len();
    let out = h.command(&["agent", "--once"]).ok();
    assert!(out.contains("staged p2"), "the barrier image first: {out}");
    assert_eq!(staged(&h).as_deref(), Some(digests[1].as_str()));
    let status: Value =
        serde_json::from_str(&ok(&["status", "--state-dir", &h.state, "--json"])).expect("JSON");
    let reader = &status["registryReader"];
    assert_eq!(reader["backend"], "proxy", "{status}");
    assert_eq!(reader["scans"], "proxy", "{status}");
    // The followed repository was read by containers/image alone: its tag
    // list, the tag, and the barrier search's images.
    let pass = w.registry.requests().split_off(before);
    let of_repo: Vec<_> = pass
        .iter()
        .filter(|r| r.uri.starts_with(&format!("/v2/{repo}/")))
        .collect();
    assert!(
        of_repo.iter().any(|r| r.uri.ends_with("/tags/list")),
        "the barrier search listed tags: {of_repo:?}"
    );
    assert!(
        of_repo.iter().any(|r| r.uri.ends_with("/manifests/stable")),
        "{of_repo:?}"
    );
    // The stand-in bootc pulls with Cairn's own client, and only once the
    // agent has decided: every read before its pull is skopeo's.
    let skopeo = |r: &&&cairn_testkit::registry::Logged| r.user_agent.starts_with("skopeo/");
    let last_skopeo = of_repo
        .iter()
        .rposition(|r| skopeo(&r))
        .expect("skopeo read");
    let first_other = of_repo.iter().position(|r| !skopeo(&r));
    assert!(
        first_other.is_none_or(|first| first > last_skopeo),
        "the built-in client read the followed repository during the pass: {of_repo:?}"
    );
    assert!(
        of_repo
            .iter()
            .any(|r| skopeo(&r) && r.uri.ends_with("/tags/list")),
        "{of_repo:?}"
    );

    // On to p3, then an idle check through each reader, for the record.
    h.host.reboot(true);
    for _ in 0..3 {
        h.command(&["agent", "--once"]).ok();
        if staged(&h).as_deref() == Some(digests[2].as_str()) {
            break;
        }
    }
    assert_eq!(staged(&h).as_deref(), Some(digests[2].as_str()));
    h.host.reboot(true);
    h.command(&["agent", "--once"]).ok();
    let idle = |reader: &str| {
        let before = w.registry.requests().len();
        let started = std::time::Instant::now();
        let out = h.command(&["agent", "--once"]).ok();
        let took = started.elapsed();
        let requests = w.registry.requests().len() - before;
        let status: Value =
            serde_json::from_str(&ok(&["status", "--state-dir", &h.state, "--json"]))
                .expect("JSON");
        assert_eq!(status["registryReader"]["scans"], reader, "{status}");
        assert_eq!(staged(&h), None, "{out}");
        assert_eq!(status["lastError"], Value::Null, "{status}");
        println!(
            "idle tag-following check, scans {reader}: {requests} registry requests, {} ms for `cairn agent --once`",
            took.as_millis()
        );
        requests
    };
    let through_skopeo = idle("proxy");
    let fragment = std::path::Path::new(&h.root).join("etc/cairn/config.d/90-builtin.toml");
    std::fs::write(&fragment, "[updates]\nregistry_reader = \"builtin\"\n").expect("config");
    // The scan cache is kept per reader: one pass to warm the built-in's.
    h.command(&["agent", "--once"]).ok();
    let built_in = idle("builtin");
    assert!(through_skopeo > 0 && built_in > 0);
}
