//! Halt lists on a host, through whole passes (`run_once`) against a real
//! registry: the document names the list's location; lists are signed with
//! the release team's graph key, the fleet's halt key, or a stranger's.

use super::*;
use cairn_agent::daemon::{Options, PassMode, run_once};
use cairn_agent::status::AgentStatus;
use cairn_graph::document::HaltSettings;
use cairn_graph::halts::{HaltList, TrippedBy};
use cairn_oci::document::PublishOptions;
use cairn_oci::signing::SigningKey;

pub(super) const LIST_TAG: &str = "cairn-halts-stable";

/// The fleet, republished with halt lists on, and the three keys.
pub(super) struct Halting {
    pub(super) fleet: Fleet,
    pub(super) graph_key: SigningKey,
    pub(super) halt_key: SigningKey,
    pub(super) stranger: SigningKey,
    pub(super) keys: tempfile::TempDir,
}

impl Halting {
    pub(super) async fn new() -> Halting {
        let halting = Halting {
            fleet: fleet().await,
            graph_key: SigningKey::generate(),
            halt_key: SigningKey::generate(),
            stranger: SigningKey::generate(),
            keys: tempfile::tempdir().expect("temp dir"),
        };
        for (name, key) in [("graph", &halting.graph_key), ("halt", &halting.halt_key)] {
            let pem = key.verifying_key().to_pem().expect("PEM");
            std::fs::write(halting.key_path(name), pem).expect("write key");
        }
        halting.publish_document(0).await;
        halting
    }

    pub(super) fn key_path(&self, name: &str) -> String {
        self.keys
            .path()
            .join(format!("{name}.pub"))
            .display()
            .to_string()
    }

    pub(super) fn list_repository(&self) -> String {
        format!("{}/acme/halts", self.fleet.registry.host)
    }

    pub(super) fn list_store(&self) -> cairn_oci::Store {
        self.fleet.registry.store("acme/halts")
    }

    /// Sign and push the document with halt lists on, at `min_sequence`.
    pub(super) async fn publish_document(&self, min_sequence: u64) {
        let mut document = self.fleet.document.clone();
        document.issued = Timestamp::now();
        document.halts = Some(HaltSettings {
            location: format!("{}:{LIST_TAG}", self.list_repository()),
            min_sequence,
            cleared: Vec::new(),
        });
        let options = PublishOptions {
            tag: "cairn-graph-stable",
            identity: &self.fleet.repo,
            keys: std::slice::from_ref(&self.graph_key),
            root_version: 0,
            settle: Duration::ZERO,
            expected: None,
        };
        let store = self.fleet.registry.store("acme/os");
        cairn_oci::document::publish(&store, document, &options)
            .await
            .expect("publish the document");
    }

    /// Halt `version` as the guard does: `add`, signed with the halt key.
    pub(super) async fn halt(&self, version: &str, digest: &str) -> HaltList {
        let repository = self.list_repository();
        let trust = cairn_oci::trust::TrustedRoot::from_config(
            &[self.graph_key.verifying_key()],
            &[self.halt_key.verifying_key()],
        );
        let options = cairn_oci::halts::UpdateOptions {
            publish: PublishOptions {
                tag: LIST_TAG,
                identity: &repository,
                keys: std::slice::from_ref(&self.halt_key),
                root_version: 0,
                settle: Duration::ZERO,
                expected: None,
            },
            trust: trust.as_ref(),
            stream: "stable",
            lifetime: cairn_oci::halts::DEFAULT_LIFETIME,
            cleared: &[],
            accept_unverified_current: false,
        };
        let added = cairn_oci::halts::add(
            &self.list_store(),
            &options,
            version,
            vec![digest.to_string()],
            "fails to boot",
            TrippedBy::Person { who: "ops".into() },
        )
        .await
        .expect("add a halt");
        assert!(added.added);
        added.list
    }

    /// Push `list` as it is, signed with `key`.
    pub(super) async fn publish_list(&self, list: &HaltList, key: &SigningKey) {
        let store = self.list_store();
        let before = store
            .resolve(LIST_TAG)
            .await
            .expect("resolve")
            .map(|head| head.digest);
        let repository = self.list_repository();
        let options = PublishOptions {
            tag: LIST_TAG,
            identity: &repository,
            keys: std::slice::from_ref(key),
            root_version: 0,
            settle: Duration::ZERO,
            expected: None,
        };
        cairn_oci::halts::publish(&store, list, before, &options)
            .await
            .expect("publish the list");
    }

    /// A node on 44.2 at wariness 0.2 (the rollout of 44.3 reaches it),
    /// trusting the graph key and, with `halt_keys`, the halt key.
    pub(super) fn node(&self, halt_keys: bool) -> Node {
        let mut config = format!("[updates]\nkeys = [\"{}\"]\n", self.key_path("graph"));
        if halt_keys {
            config.push_str(&format!("halt_keys = [\"{}\"]\n", self.key_path("halt")));
        }
        config.push_str("[identity]\nrollout_wariness = 0.2\n");
        node(&self.fleet, 1, 0.2, &config)
    }

    pub(super) fn options(&self, n: &Node) -> Options {
        let client = cairn_oci::ClientOptions {
            insecure_registries: vec![self.fleet.registry.host.clone()],
            ..cairn_oci::ClientOptions::default()
        };
        Options {
            root: n.config_root.clone(),
            sysroot: n.state_dir.join("no-sysroot"),
            state_dir: n.state_dir.clone(),
            bootc: n.host.program.display().to_string(),
            rpm_ostree: n.state_dir.join("no-rpm-ostree").display().to_string(),
            systemctl: None,
            updater_check: false,
            loginctl: None,
            motd_dir: None,
            arch: "x86_64".into(),
            client,
            auth_file: None,
            check_interval: None,
            socket: None,
            own_unit: None,
            report_backoff: None,
        }
    }

    /// One pass of `cairn agent --once` at `now`.
    pub(super) async fn once_at(&self, n: &Node, now: Timestamp) -> AgentStatus {
        run_once(&self.options(n), PassMode::agent(false), now).await
    }

    pub(super) async fn once(&self, n: &Node) -> AgentStatus {
        self.once_at(n, Timestamp::now()).await
    }
}

pub(super) fn refused_kind(status: &AgentStatus) -> Option<String> {
    status
        .halt_list
        .as_ref()
        .and_then(|h| h.refused.as_ref())
        .map(|r| r.kind.clone())
}

fn applied(n: &Node) -> bool {
    n.host
        .state()
        .calls
        .iter()
        .any(|c| c.contains("--apply") || c.contains("unlock"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_release_is_never_staged_and_a_staged_one_is_withdrawn() {
    let h = Halting::new().await;
    let first = h.halt("44.1", &h.fleet.digests[0]).await;
    // Staged while only 44.1 is halted.
    let early = h.node(true);
    let status = h.once(&early).await;
    assert_eq!(
        staged(&early).as_deref(),
        Some(h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    let halts = status.halt_list.expect("halt list status");
    assert_eq!(halts.sequence, Some(first.sequence));
    assert_eq!(halts.halted, vec!["44.1".to_string()]);
    assert_eq!(halts.refused, None);
    // The guard halts 44.3.
    let second = h.halt("44.3", &h.fleet.digests[2]).await;
    let late = h.node(true);
    let status = h.once(&late).await;
    assert_eq!(status.reason.kind, ReasonKind::TargetHalted, "{status:?}");
    assert_eq!(staged(&late), None);
    let status = h.once(&early).await;
    assert_eq!(status.reason.kind, ReasonKind::StagedHalted, "{status:?}");
    assert!(status.reason.message.contains("44.3"), "{}", status.reason);
    assert_eq!(status.target, None, "{status:?}");
    assert_eq!(
        status.halt_list.as_ref().and_then(|h| h.sequence),
        Some(second.sequence)
    );
    // The release team drops the halt of 44.3 under the graph key: taken.
    let mut cleared = second.clone();
    cleared.sequence += 1;
    cleared.entries.retain(|entry| entry.version != "44.3");
    h.publish_list(&cleared, &h.graph_key).await;
    let status = h.once(&late).await;
    assert_eq!(refused_kind(&status), None, "{status:?}");
    assert_eq!(
        staged(&late).as_deref(),
        Some(h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    let metrics = std::fs::read_to_string(late.state_dir.join("metrics.prom")).expect("metrics");
    assert!(
        metrics.contains(&format!(
            "cairn_agent_halt_list_sequence {}\n",
            cleared.sequence
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_agent_halts_effective 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_lists_never_lift_the_halts_held() {
    let h = Halting::new().await;
    let halted = h.halt("44.3", &h.fleet.digests[2]).await;
    let n = h.node(true);
    assert_eq!(h.once(&n).await.reason.kind, ReasonKind::TargetHalted);
    // Under the halt key, a list may only add: dropping the halt is refused.
    let mut dropped = halted.clone();
    dropped.sequence += 1;
    dropped.entries.clear();
    h.publish_list(&dropped, &h.halt_key).await;
    let status = h.once(&n).await;
    assert_eq!(
        refused_kind(&status).as_deref(),
        Some("halts_dropped_entry"),
        "{status:?}"
    );
    assert_eq!(status.reason.kind, ReasonKind::TargetHalted, "{status:?}");
    assert_eq!(staged(&n), None);
    let metrics = std::fs::read_to_string(n.state_dir.join("metrics.prom")).expect("metrics");
    assert!(
        metrics.contains("cairn_agent_halt_list_refused_total{kind=\"halts_dropped_entry\"} 1\n"),
        "{metrics}"
    );
    // Signed by a key nobody trusts: refused too, the held halts stay.
    h.publish_list(&dropped, &h.stranger).await;
    let status = h.once(&n).await;
    assert_eq!(
        refused_kind(&status).as_deref(),
        Some("halts_bad_signature"),
        "{status:?}"
    );
    assert_eq!(status.reason.kind, ReasonKind::TargetHalted, "{status:?}");
    assert_eq!(staged(&n), None);
    // A host holding nothing, with no halt key configured: no list at all,
    // so nothing is staged, and status names the missing key.
    let keyless = h.node(false);
    let status = h.once(&keyless).await;
    assert_eq!(
        status.reason.kind,
        ReasonKind::HaltsUnavailable,
        "{status:?}"
    );
    assert_eq!(status.reason.cause.as_deref(), Some("halts_bad_signature"));
    assert_eq!(
        status.halt_list.as_ref().and_then(|h| h.hint.as_deref()),
        Some(cairn_agent::halts::MISSING_HALT_KEY)
    );
    assert!(
        status.render().contains("updates.halt_keys"),
        "{}",
        status.render()
    );
    assert_eq!(staged(&keyless), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_below_the_documents_floor_is_refused() {
    let h = Halting::new().await;
    let list = h.halt("44.1", &h.fleet.digests[0]).await;
    // The publisher verified a newer list than the one a stale mirror serves.
    h.publish_document(list.sequence + 1).await;
    let n = h.node(true);
    let status = h.once(&n).await;
    assert_eq!(
        status.reason.kind,
        ReasonKind::HaltsUnavailable,
        "{status:?}"
    );
    assert_eq!(status.reason.cause.as_deref(), Some("halts_replayed"));
    assert_eq!(refused_kind(&status).as_deref(), Some("halts_replayed"));
    assert_eq!(staged(&n), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_unexpired_list_nothing_is_staged_or_finalized() {
    let h = Halting::new().await;
    let list = h.halt("44.1", &h.fleet.digests[0]).await;
    let staged_early = h.node(true);
    let status = h.once(&staged_early).await;
    assert_eq!(
        staged(&staged_early).as_deref(),
        Some(h.fleet.digests[2].as_str()),
        "{status:?}"
    );
    // Three days on, the document (14 days) is still valid and the list
    // (48 hours) has expired, the one in the registry and the one held.
    let later = list.expires + SignedDuration::from_hours(24);
    let fresh = h.node(true);
    let status = h.once_at(&fresh, later).await;
    assert_eq!(
        status.reason.kind,
        ReasonKind::HaltsUnavailable,
        "{status:?}"
    );
    assert_eq!(status.reason.cause.as_deref(), Some("halts_expired"));
    assert_eq!(staged(&fresh), None);
    // The daemon's pass, free to reboot (no window, no lock): the staged
    // release is not finalized. A finalizing pass would block on `--apply`
    // until the stand-in reboots, so the pass returning is the event.
    let options = h.options(&staged_early);
    let finalizing = run_once(&options, PassMode::agent(true), later);
    let status = tokio::time::timeout(Duration::from_secs(120), finalizing)
        .await
        .expect("the pass ends without rebooting");
    assert_eq!(
        status.reason.kind,
        ReasonKind::HaltsUnavailable,
        "{status:?}"
    );
    assert_eq!(
        status.state,
        cairn_agent::status::StateName::Staged,
        "{status:?}"
    );
    assert!(
        !applied(&staged_early),
        "{:?}",
        staged_early.host.state().calls
    );
    assert_eq!(
        staged(&staged_early).as_deref(),
        Some(h.fleet.digests[2].as_str())
    );
    // Back at the present the list is valid again, and in force.
    let status = h.once(&staged_early).await;
    assert_eq!(
        status.halt_list.and_then(|h| h.sequence),
        Some(list.sequence)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_list_is_asked_for_by_tag_only_unless_the_keys_changed() {
    let h = Halting::new().await;
    let list = h.halt("44.3", &h.fleet.digests[2]).await;
    let n = h.node(true);
    let first = h.once(&n).await;
    assert_eq!(refused_kind(&first), None, "{first:?}");
    assert_eq!(first.reason.kind, ReasonKind::TargetHalted, "{first:?}");
    // The list's layer goes from the registry, its manifest and tag stay:
    // reading the list in full can no longer succeed.
    let fetched = cairn_oci::halts::fetch(&h.list_store(), LIST_TAG)
        .await
        .expect("the list");
    let layer = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&fetched.bytes))
    );
    let deleted = reqwest::Client::new()
        .delete(format!(
            "http://{}/v2/acme/halts/blobs/{layer}",
            h.fleet.registry.host
        ))
        .send()
        .await
        .expect("delete the layer");
    assert_eq!(deleted.status(), 202, "the registry deleted the layer");
    // The tag still names the manifest held: only it is asked for.
    let second = h.once(&n).await;
    assert_eq!(refused_kind(&second), None, "{second:?}");
    assert_eq!(second.reason.kind, ReasonKind::TargetHalted, "{second:?}");
    assert_eq!(
        second.halt_list.as_ref().and_then(|h| h.sequence),
        Some(list.sequence)
    );
    // The host's halt key changes: the list is read and verified anew, and
    // with its layer gone that read fails; the halt held stays in force.
    std::fs::write(
        h.key_path("halt"),
        h.stranger.verifying_key().to_pem().expect("PEM"),
    )
    .expect("write key");
    let third = h.once(&n).await;
    assert!(refused_kind(&third).is_some(), "read in full: {third:?}");
    assert_eq!(staged(&n), None, "the halt held stays in force");
}
