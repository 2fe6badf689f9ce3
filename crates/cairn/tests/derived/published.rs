//! Path 2, "I publish my own graph": `cairn publish --base-graph` and
//! agents following the published document.

use super::*;

both_base_kinds!(a_release_on_the_base_barrier_is_walked_through_first);
async fn a_release_on_the_base_barrier_is_walked_through_first(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/walk";
    // 40.1 records the base index; 40.2 and 40.3 record per-architecture manifests.
    let digests = derive(
        &w,
        repo,
        &[
            ("a1", 0, Index, "2026-01-03", "a1"),
            ("a2", 1, Manifests, "2026-01-17", "a2"),
            ("a3", 2, Manifests, "2026-02-03", "a3 stable"),
        ],
    )
    .await;
    // The derived team's own rollout of a3, half-way, on top of the inherited barrier.
    let policy = w.path("walk-updates.json");
    let yesterday = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24)).to_string();
    ok(&[
        "policy", "--policy", &policy, "--stream", "stable", "rollout", "start", "a3", "--over",
        "2d", "--at", &yesterday,
    ]);
    publish(&w, repo, &["--policy", &policy]);
    let shown = show(&w, repo);
    let a2 = release(&shown, "a2");
    assert_eq!(a2["base"]["version"], "40.2");
    assert_eq!(a2["barrier"], BARRIER_REASON);
    assert!(
        a2["inherited_from"]
            .as_str()
            .is_some_and(|b| b.ends_with("40.2")),
        "{a2}"
    );
    assert_eq!(
        release(&shown, "a1")["base"]["version"],
        "40.1",
        "index digest resolved"
    );
    let edges = edges(&shown);
    assert!(edges.contains(&("a1".into(), "a2".into())), "{edges:?}");
    assert!(!edges.contains(&("a1".into(), "a3".into())), "{edges:?}");
    let text = show_text(&w, repo);
    assert!(text.contains("on base 40.2"), "{text}");

    // An old host goes to the barrier image first.
    let old = host(
        &w,
        "walk-old",
        repo,
        (&digests[0], "a1"),
        &team_config(&w, 0.3),
    );
    let out = agent_once(&w, &old, &["agent", "--once"]);
    assert!(out.contains("staged a2"), "{out}");
    assert_eq!(staged(&old).as_deref(), Some(digests[1].as_str()));
    // From the barrier, the team's rollout decides.
    let early = host(
        &w,
        "walk-early",
        repo,
        (&digests[1], "a2"),
        &team_config(&w, 0.3),
    );
    let out = agent_once(&w, &early, &["agent", "--once"]);
    assert!(out.contains("staged a3"), "{out}");
    let late = host(
        &w,
        "walk-late",
        repo,
        (&digests[1], "a2"),
        &team_config(&w, 0.8),
    );
    let out = agent_once(&w, &late, &["agent", "--once"]);
    assert!(out.contains("rollout of a3 at 50"), "{out}");
    assert_eq!(staged(&late), None);
}

both_base_kinds!(no_edge_crosses_a_base_barrier_without_an_image_on_it);
async fn no_edge_crosses_a_base_barrier_without_an_image_on_it(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/gap";
    let digests = derive(
        &w,
        repo,
        &[
            ("g1", 0, Manifests, "2026-01-03", "g1"),
            ("g3", 2, Index, "2026-02-03", "g3 stable"),
        ],
    )
    .await;
    let stderr = publish(&w, repo, &[]);
    assert!(
        stderr.contains("no release is built on base barrier")
            && stderr.contains("40.2")
            && stderr.contains("1 release(s) on older bases cannot update past it (g1)"),
        "{stderr}"
    );
    let shown = show(&w, repo);
    assert!(edges(&shown).is_empty(), "{:?}", edges(&shown));

    let h = host(
        &w,
        "gap-old",
        repo,
        (&digests[0], "g1"),
        &team_config(&w, 0.0),
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    let expected = format!(
        "no image in {}/{repo} is built on {} 40.2 (barrier: {BARRIER_REASON}); build one, or run `cairn update-now --cross-barrier`",
        w.registry.host,
        w.base_graph_repository()
    );
    assert!(out.contains(&expected), "{out}\nexpected: {expected}");
    assert_eq!(staged(&h), None);
    // update-now alone still obeys the guard; --cross-barrier is the logged override.
    let out = agent_once(&w, &h, &["update-now", "--once"]);
    assert!(out.contains("no image in"), "{out}");
    assert_eq!(staged(&h), None);
    let out = agent_once(&w, &h, &["update-now", "--once", "--cross-barrier"]);
    assert!(out.contains("staged g3"), "{out}");
    assert_eq!(staged(&h).as_deref(), Some(digests[1].as_str()));
    // The operator's pick: the next ordinary check, with the guard back in
    // place, keeps it rather than withdraw it.
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert_eq!(staged(&h).as_deref(), Some(digests[1].as_str()), "{out}");
    assert!(!out.contains("withdrawn"), "{out}");
}

both_base_kinds!(a_base_dead_end_propagates_and_names_the_base_release);
async fn a_base_dead_end_propagates_and_names_the_base_release(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/dead";
    let digests = derive(
        &w,
        repo,
        &[
            ("d4", 3, Manifests, "2026-02-17", "d4"),
            ("d5", 4, Manifests, "2026-03-03", "d5 stable"),
        ],
    )
    .await;
    publish(&w, repo, &[]);
    let shown = show(&w, repo);
    assert_eq!(release(&shown, "d4")["deadend"], DEADEND_REASON);
    let h = host(
        &w,
        "dead-host",
        repo,
        (&digests[0], "d4"),
        &team_config(&w, 0.0),
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(
        out.contains(&format!(
            "dead-end: d4: {DEADEND_REASON} (inherited from base {} 40.4)",
            w.base_graph_repository()
        )),
        "{out}"
    );
    assert_eq!(staged(&h), None);
}

both_base_kinds!(a_metadata_only_republish_is_not_a_release);
async fn a_metadata_only_republish_is_not_a_release(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/meta";
    let digests = derive(
        &w,
        repo,
        &[
            ("m2", 1, Manifests, "2026-01-17", "m2"),
            ("m3", 2, Manifests, "2026-02-03", "m3 stable"),
        ],
    )
    .await;
    publish(&w, repo, &[]);
    // Re-annotate m3: a new manifest with the same config and layers, pushed
    // as the new `stable` (what `skopeo copy` with other annotations does).
    let republished = reannotate(&w, repo, &digests[1]).await;
    assert_ne!(republished, digests[1]);
    let stderr = publish(&w, repo, &[]);
    assert!(stderr.contains("only changes metadata"), "{stderr}");
    let shown = show(&w, repo);
    assert_eq!(
        shown["releases"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );
    // A host booted on the re-annotated manifest has nothing to do.
    let h = host(
        &w,
        "meta-host",
        repo,
        (&republished, "m3"),
        &team_config(&w, 0.0),
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(staged(&h), None);
}

both_base_kinds!(rebuilds_on_one_base_get_distinct_versions);
async fn rebuilds_on_one_base_get_distinct_versions(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/rebuilds";
    // Both carry the base's version label 40.3; neither may be published as "40.3".
    derive(
        &w,
        repo,
        &[
            ("r1", 2, Manifests, "2026-02-03", "2026.02.03"),
            ("r2", 2, Manifests, "2026-02-10", "2026.02.10 stable"),
        ],
    )
    .await;
    publish(&w, repo, &["--tag-pattern", "2026.*"]);
    let shown = show(&w, repo);
    let versions: Vec<&str> = shown["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .filter_map(|r| r["version"].as_str())
        .collect();
    assert_eq!(versions, ["2026.02.03", "2026.02.10"]);
    for version in versions {
        assert_eq!(release(&shown, version)["base"]["version"], "40.3");
    }
}

/// `--base-root` keeps the base repository's newest trust root between
/// publishes: a base chain longer than one walk (32 versions) is refused as
/// behind at first, the file keeps where the walk stopped, and the next
/// publish walks on from it and succeeds (from `--base-key` it would be
/// behind again).
#[tokio::test]
async fn base_root_keeps_the_walk_between_publishes() {
    let w = world(BaseKind::Document).await;
    let repo = "acme/rooted";
    derive(&w, repo, &[("a1", 0, Index, "2026-01-03", "a1 stable")]).await;
    let (roots, base_pub, base_key) =
        (w.path("base-roots"), w.path("base.pub"), w.path("base.key"));
    ok(&[
        "root",
        "init",
        "--graph-key",
        &base_pub,
        "--sign-key",
        &base_key,
        "--out",
        &roots,
        "--allow-single-key",
    ]);
    let versions = cairn_oci::trust::MAX_ROOT_WALK + 2;
    for _ in 2..=versions {
        ok(&[
            "root",
            "rotate",
            "--dir",
            &roots,
            "--sign-key",
            &base_key,
            "--allow-single-key",
        ]);
    }
    let chain = cairn_oci::roots::read_chain_dir(std::path::Path::new(&roots)).expect("chain");
    assert_eq!(chain.len() as u64, versions);
    cairn_oci::roots::push_missing(&w.registry.store("fedora/fedora-coreos"), &chain)
        .await
        .expect("push the base roots");
    let kept = w.path("base-root.json");
    let kept_version = || {
        let bytes = std::fs::read(&kept).expect("--base-root is written");
        let signed =
            cairn_oci::trust::SignedRoot::from_envelope(bytes.into(), "kept").expect("envelope");
        signed.version()
    };
    let publish_rooted = || {
        let key = w.path("team.key");
        if !std::path::Path::new(&key).exists() {
            ok(&["document", "keygen", "--output", &w.path("team")]);
        }
        Publish::signed(&format!("{}/{repo}", w.registry.host), key)
            .insecure_registry(&w.registry.host)
            .cache(w.path("rooted-cache.json"))
            .args(w.base_args())
            .args(["--base-root", kept.as_str()])
            .output()
    };
    let behind = publish_rooted();
    let stderr = String::from_utf8_lossy(&behind.stderr);
    assert!(!behind.status.success(), "{stderr}");
    assert!(
        stderr.contains("newer ones remain and the next check walks on"),
        "{stderr}"
    );
    assert_eq!(kept_version(), cairn_oci::trust::MAX_ROOT_WALK);
    let walked_on = publish_rooted();
    assert!(
        walked_on.status.success(),
        "{}",
        String::from_utf8_lossy(&walked_on.stderr)
    );
    assert_eq!(kept_version(), versions);
}
