//! Barrier images built after the fact: hosts walk through them and move
//! on, whatever order the images were built and published in.

use super::*;

both_base_kinds!(a_barrier_image_built_late_is_walked_through_and_then_onwards);
async fn a_barrier_image_built_late_is_walked_through_and_then_onwards(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/late";
    let first = derive(
        &w,
        repo,
        &[
            ("l1", 0, Manifests, "2026-01-03", "l1"),
            ("l3", 2, Manifests, "2026-02-03", "l3 stable"),
        ],
    )
    .await;
    let stderr = publish(&w, repo, &[]);
    assert!(stderr.contains("build an image on 40.2"), "{stderr}");
    let h = host(&w, "late", repo, (&first[0], "l1"), &team_config(&w, 0.5));
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("no image in"), "held: {out}");
    assert_eq!(staged(&h), None);

    // The team follows the advice: an image on the barrier, built and
    // published last (after l3).
    let late = derive(&w, repo, &[("l2", 1, Manifests, "2026-03-05", "l2")]).await;
    let stderr = publish(&w, repo, &[]);
    assert!(!stderr.contains("build an image on"), "{stderr}");
    assert!(
        stderr.contains("release l3 was built before l2") && stderr.contains("rebuild l3"),
        "Zincati and rpm-ostree's date check are warned about: {stderr}"
    );
    let text = show_text(&w, repo);
    let order: Vec<&str> = ["l1", "l2", "l3"]
        .iter()
        .map(|v| {
            text.lines()
                .find(|l| l.split_whitespace().nth(1) == Some(v))
                .unwrap_or_else(|| panic!("{v} in {text}"))
        })
        .collect();
    assert!(
        order[0].trim_start().starts_with("0 ")
            && order[1].trim_start().starts_with("1 ")
            && order[2].trim_start().starts_with("2 "),
        "update order by base: {text}"
    );
    assert!(!text.contains("not a target for any host"), "{text}");
    let edges = edges(&show(&w, repo));
    assert!(edges.contains(&("l1".into(), "l2".into())), "{edges:?}");
    assert!(edges.contains(&("l2".into(), "l3".into())), "{edges:?}");

    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("staged l2"), "the barrier image first: {out}");
    assert_eq!(staged(&h).as_deref(), Some(late[0].as_str()));
    reboot_and_stage_next(&w, &h, &first[1]);
    h.host.reboot(true);
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert_eq!(
        h.host.state().booted.map(|b| b.digest).as_deref(),
        Some(first[1].as_str())
    );
    assert!(out.contains("up to date"), "on the newest release: {out}");
    assert_eq!(staged(&h), None);
}

both_base_kinds!(two_missing_barrier_images_filled_in_reverse_order);
async fn two_missing_barrier_images_filled_in_reverse_order(kind: BaseKind) {
    let w = world_with_barriers(kind, &["40.2", "40.3"]).await;
    let repo = "acme/reverse";
    let first = derive(
        &w,
        repo,
        &[
            ("r1", 0, Manifests, "2026-01-03", "r1"),
            ("r5", 4, Index, "2026-03-03", "r5 stable"),
        ],
    )
    .await;
    let stderr = publish(&w, repo, &[]);
    assert!(
        stderr.contains("build an image on 40.2") && stderr.contains("build an image on 40.3"),
        "{stderr}"
    );
    let h = host(
        &w,
        "reverse",
        repo,
        (&first[0], "r1"),
        &team_config(&w, 0.5),
    );
    // The later barrier's image comes first: still held, by the earlier one.
    let r3 = derive(&w, repo, &[("r3", 2, Manifests, "2026-03-10", "r3")]).await;
    let stderr = publish(&w, repo, &[]);
    assert!(
        stderr.contains("build an image on 40.2") && !stderr.contains("build an image on 40.3"),
        "{stderr}"
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("no image in") && out.contains("40.2"), "{out}");
    assert_eq!(staged(&h), None);
    let r2 = derive(&w, repo, &[("r2", 1, Index, "2026-03-20", "r2")]).await;
    let stderr = publish(&w, repo, &[]);
    assert!(!stderr.contains("build an image on"), "{stderr}");
    assert!(
        !show_text(&w, repo).contains("not a target for any host"),
        "every release is reachable"
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("staged r2"), "{out}");
    assert_eq!(staged(&h).as_deref(), Some(r2[0].as_str()));
    reboot_and_stage_next(&w, &h, &r3[0]);
    reboot_and_stage_next(&w, &h, &first[1]);
}

/// rpm-ostree's `--disallow-downgrade` compares image creation times. A barrier
/// image built late is newer than the release after it; Cairn leaves the flag
/// off for moves to a newer base, so the host still moves on. On one base
/// the flag stays, and a rebuild pushed out of order is refused with a
/// message that names the release to rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpm_ostree_host_moves_on_from_a_late_barrier_image() {
    let w = world(BaseKind::Document).await;
    let repo = "acme/rpm-late";
    let mut digests = derive(
        &w,
        repo,
        &[
            ("p1", 0, Manifests, "2026-01-03", "p1"),
            ("p3", 2, Manifests, "2026-02-03", "p3 stable"),
            ("p2", 1, Manifests, "2026-03-05", "p2"),
        ],
    )
    .await;
    publish(&w, repo, &[]);
    let h = rpm_host(
        &w,
        "rpm-late",
        repo,
        (&digests[0], "p1"),
        &team_config(&w, 0.5),
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("staged p2"), "{out}");
    reboot_and_stage_next(&w, &h, &digests[1]);
    let calls = h.host.state().calls;
    assert!(
        calls.contains(&format!(
            "deploy --lock-finalization --bypass-driver {}",
            digests[1]
        )),
        "a move to a newer base leaves rpm-ostree's date check off: {calls:?}"
    );

    // A rebuild on p3's base, built before p3 but pushed after it.
    digests.extend(
        derive(
            &w,
            repo,
            &[("p3-rebuild", 2, Manifests, "2026-02-01", "p3-rebuild")],
        )
        .await,
    );
    publish(&w, repo, &[]);
    h.host.reboot(true);
    let _ = agent_output(&w, &h, &["agent", "--once"]);
    let out = agent_output(&w, &h, &["agent", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let status = ok(&["status", "--state-dir", &h.state]);
    let said = format!("{stdout}{stderr}{status}");
    assert!(
        said.contains("rpm-ostree refuses p3-rebuild")
            && said.contains("created before the current deployment")
            && said.contains("rebuild it so it is the newest image on its base"),
        "{said}"
    );
    let calls = h.host.state().calls;
    assert!(
        calls.contains(&format!(
            "deploy --lock-finalization --bypass-driver --disallow-downgrade {}",
            digests[3]
        )),
        "on one base the date check stays: {calls:?}"
    );
    assert_eq!(staged(&h), None);
}
