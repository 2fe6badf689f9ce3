//! What became of update attempts, and how each host tool was driven, end
//! to end with `cairn agent --once` on the published stream of
//! [`common::fleet`]: targets withdrawn, staging by what the installed bootc
//! accepts, rpm-ostree hosts and the targets rpm-ostree refuses.

mod common;
use common::agent::AgentCommand;
use common::fleet::{
    Node, Published, agent_once, command, count_calls, fragment, history_words, node, published,
    republish,
};
use common::{ok, wait_until};

use cairn_testkit::host::FakeHost;
use serde_json::Value;
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_target_no_longer_offered_ends_its_attempt_as_withdrawn() {
    let p = published().await;
    // On 44.1 at wariness 0.8: 44.3's rollout has not reached it, 44.2 is the target.
    let replaced = node(&p, "replaced", 0, &fragment(&p, 0.8));
    let out = agent_once(&p, &replaced, &[]);
    assert!(out.contains("staged 44.2"), "{out}");
    // On 44.2 at wariness 0.3: 44.3 is staged.
    let dead = node(&p, "dead-end", 1, &fragment(&p, 0.3));
    let out = agent_once(&p, &dead, &[]);
    assert!(out.contains("staged 44.3"), "{out}");

    // 44.3's rollout completes: it replaces the staged 44.2.
    let d = |name: &str| p.dir.path().join(name).display().to_string();
    let yesterday = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24)).to_string();
    ok(&[
        "policy",
        "--policy",
        &d("updates.json"),
        "rollout",
        "start",
        "44.3",
        "--over",
        "1m",
        "--at",
        &yesterday,
    ]);
    republish(&p);
    let out = agent_once(&p, &replaced, &[]);
    assert!(out.contains("staged 44.3"), "{out}");
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(v, w)| (v.to_string(), w.to_string()))
            .collect()
    };
    assert_eq!(
        history_words(&replaced),
        pairs(&[
            ("44.2", "staged"),
            ("44.2", "withdrawn"),
            ("44.3", "staged")
        ])
    );
    let text = ok(&["status", "--state-dir", &replaced.state, "--history"]);
    assert!(
        text.contains("44.1 -> 44.2  withdrawn: 44.3 replaced it as the target"),
        "{text}"
    );

    // 44.3 becomes a dead-end: on 44.2 nothing else is offered, so the staged
    // target goes, and its attempt ends.
    ok(&[
        "policy",
        "--policy",
        &d("updates.json"),
        "deadend",
        "add",
        "44.3",
        "--reason",
        "https://example.org/broken",
    ]);
    republish(&p);
    let out = agent_once(&p, &dead, &[]);
    assert!(out.contains("became a dead-end"), "{out}");
    assert_eq!(
        history_words(&dead),
        pairs(&[("44.3", "staged"), ("44.3", "withdrawn")])
    );
    let text = ok(&["status", "--state-dir", &dead.state, "--history"]);
    assert!(
        text.contains("44.2 -> 44.3  withdrawn: the staged release 44.3 became a dead-end"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_follows_what_the_installed_bootc_accepts() {
    let p = published().await;
    let reference = format!("{}@{}", p.repo, p.digests[2]);
    // (reported version, switch accepts --download-only, the staging commands)
    let cases = [
        (
            "1.17.0",
            false,
            vec![
                format!("switch --enforce-container-sigpolicy {reference}"),
                "upgrade --download-only".to_string(),
            ],
        ),
        (
            "1.16.9",
            true,
            vec![format!(
                "switch --download-only --enforce-container-sigpolicy {reference}"
            )],
        ),
    ];
    for (version, accepts, expected) in cases {
        let n = node(&p, &format!("bootc-{version}"), 1, &fragment(&p, 0.3));
        n.host.set_bootc(version, accepts);
        let out = agent_once(&p, &n, &[]);
        assert!(out.contains("staged 44.3"), "{version}: {out}");
        let host = n.host.state();
        let staged = host.staged.as_ref().expect("staged");
        assert_eq!(staged.digest, p.digests[2]);
        assert!(staged.download_only, "{version}: staged locked");
        let staging: Vec<String> = host
            .calls
            .iter()
            .filter(|c| c.starts_with("switch") || c.starts_with("upgrade"))
            .cloned()
            .collect();
        let mut want = vec!["switch --help".to_string()];
        want.extend(expected);
        assert_eq!(staging, want, "{version}");
        let probe: Value = serde_json::from_slice(
            &std::fs::read(Path::new(&n.state).join("bootc-probe.json")).expect("probe kept"),
        )
        .expect("JSON");
        assert_eq!(probe["version"], format!("bootc {version}"));
        assert_eq!(probe["switch_download_only"], accepts);
    }
}

/// An rpm-ostree host on release `booted` (no bootc there).
struct RpmNode {
    node: Node,
    image: String,
}

fn rpm_node(p: &Published, name: &str, booted: usize, fragment: &str) -> RpmNode {
    let base = p.dir.path().join(name);
    let image = format!("{}:stable", p.repo);
    let host = FakeHost::rpm_ostree(
        &base.join("host"),
        &image,
        (&p.digests[booted], ["44.1", "44.2", "44.3"][booted]),
        std::slice::from_ref(&p.registry.host),
        true,
    );
    RpmNode {
        node: Node::configured(host, &base, fragment),
        image,
    }
}

/// `cairn <verb…>` against an rpm-ostree host, through no agent's socket.
fn on_rpm(p: &Published, n: &RpmNode, verb: &[&str]) -> AgentCommand {
    let socket = format!("{}/none.sock", n.node.state);
    command(p, &n.node, verb).args(["--socket", socket.as_str(), "--no-user-check"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_ostree_hosts_are_driven_through_rpm_ostree_and_keep_their_signed_origin() {
    let p = published().await;
    let n = rpm_node(&p, "rpm", 1, &fragment(&p, 0.3));
    let host = &n.node.host;
    let out = on_rpm(&p, &n, &["agent", "--once"]).ok();
    assert!(out.contains("staged 44.3"), "{out}");
    let fake = host.state();
    assert!(
        fake.calls.contains(&format!(
            "deploy --lock-finalization --bypass-driver --disallow-downgrade {}",
            p.digests[2]
        )),
        "{:?}",
        fake.calls
    );
    assert_eq!(
        fake.update_driver.as_deref(),
        Some("Cairn"),
        "registered as update driver"
    );
    let staged = fake.staged.expect("staged");
    assert_eq!(staged.digest, p.digests[2]);
    assert!(staged.download_only, "finalization stays locked");
    assert!(
        fake.container_policy && fake.spec_image == n.image,
        "signed origin kept"
    );
    // Found unlocked after a restart (as a crash mid-staging leaves bootc's
    // two steps): staged again, locked. It was vetted when first staged, so
    // rpm-ostree's date check is not asked for again.
    let mut unlocked = host.state();
    if let Some(staged) = unlocked.staged.as_mut() {
        staged.download_only = false;
    }
    cairn_testkit::host::write_state(&host.dir, &unlocked);
    on_rpm(&p, &n, &["agent", "--once"]).ok();
    let fake = host.state();
    let deploys: Vec<&String> = fake
        .calls
        .iter()
        .filter(|c| c.starts_with("deploy --lock-finalization"))
        .collect();
    assert_eq!(
        deploys.last().map(|c| c.as_str()),
        Some(
            format!(
                "deploy --lock-finalization --bypass-driver {}",
                p.digests[2]
            )
            .as_str()
        ),
        "{deploys:?}"
    );
    assert!(fake.staged.is_some_and(|s| s.download_only), "locked again");

    let child = on_rpm(&p, &n, &["update-now"]).spawn();
    wait_until("finalization started", || host.state().apply_pid.is_some()).await;
    assert!(
        host.state()
            .calls
            .contains(&format!("finalize-deployment {}", p.digests[2])),
        "{:?}",
        host.state().calls
    );
    let out = host.reboot_under(child, true).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = on_rpm(&p, &n, &["agent", "--once"]).ok();
    assert!(out.contains("44.3"), "{out}");
    assert_eq!(
        host.state().booted.map(|b| b.digest).as_deref(),
        Some(p.digests[2].as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_staged_by_hand_that_is_not_offered_goes_before_the_target_is_staged() {
    let p = published().await;
    // On 44.1 at wariness 0.8 the target is 44.2 (44.3's rollout has not
    // reached it), but 44.3 is staged already, by hand. Left there,
    // rpm-ostree's date check would refuse 44.2 over it, and a reboot could
    // take the host where its rollout has not reached.
    let n = rpm_node(&p, "rpm-by-hand", 0, &fragment(&p, 0.8));
    let mut host = n.node.host.state();
    host.staged = Some(cairn_testkit::host::FakeDeployment {
        digest: p.digests[2].clone(),
        version: Some("44.3".into()),
        image: n.image.clone(),
        download_only: true,
    });
    cairn_testkit::host::write_state(&n.node.host.dir, &host);
    // One pass drops it, then stages the release that is offered.
    let out = on_rpm(&p, &n, &["agent", "--once"]).ok();
    assert!(out.contains("staged 44.2"), "{out}");
    let calls = n.node.host.state().calls;
    let position = |prefix: &str| calls.iter().position(|c| c.starts_with(prefix));
    assert!(
        matches!(
            (position("cleanup -p"), position("deploy --lock-finalization")),
            (Some(cleanup), Some(deploy)) if cleanup < deploy
        ),
        "{calls:?}"
    );
    assert_eq!(count_calls(&n.node.host, "deploy --lock-finalization"), 1);
    assert_eq!(
        n.node.host.state().staged.map(|s| s.digest).as_deref(),
        Some(p.digests[1].as_str())
    );
}
