//! A published stream for end-to-end tests of `cairn agent`: releases 44.1,
//! 44.2 and 44.3 of `acme/os` in a real registry, a document signed and
//! pushed with `cairn policy` and `cairn publish` (44.3 half-way through a
//! two-day rollout), and stand-in hosts that follow it.

use super::agent::AgentCommand;
pub use super::agent::Node;
use super::ok;
use super::publish::Publish;
use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, TestRegistry, write_release};
use serde_json::Value;

pub struct Published {
    pub registry: TestRegistry,
    pub repo: String,
    pub digests: Vec<String>,
    pub public_key: String,
    pub dir: tempfile::TempDir,
}

pub async fn published() -> Published {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let mut digests = Vec::new();
    for (version, created, tags) in [
        ("44.1", "2026-01-01T00:00:00Z", vec!["44.1"]),
        ("44.2", "2026-02-01T00:00:00Z", vec!["44.2"]),
        ("44.3", "2026-03-01T00:00:00Z", vec!["44.3", "stable"]),
    ] {
        let (_, written) = write_release(&store, version, created, &tags).await;
        digests.push(written[0].manifest.clone());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let repo = format!("{}/acme/os", registry.host);
    ok(&["document", "keygen", "--output", &d("team")]);
    let yesterday = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24)).to_string();
    ok(&[
        "policy",
        "--policy",
        &d("updates.json"),
        "--stream",
        "stable",
        "rollout",
        "start",
        "44.3",
        "--over",
        "2d",
        "--at",
        &yesterday,
    ]);
    let published = Published {
        public_key: d("team.pub"),
        registry,
        repo,
        digests,
        dir,
    };
    republish(&published);
    published
}

pub fn node(p: &Published, name: &str, booted: usize, fragment: &str) -> Node {
    let base = p.dir.path().join(name);
    let host = FakeHost::new(
        &base.join("host"),
        "1.17.0",
        &format!("{}:stable", p.repo),
        (&p.digests[booted], ["44.1", "44.2", "44.3"][booted]),
        std::slice::from_ref(&p.registry.host),
        true,
    );
    Node::configured(host, &base, fragment)
}

/// A node on release 44.2 at wariness 0.3 that reboots only holding a slot
/// of `group` at the FleetLock server `base_url`, with `machine_id` (where
/// its FleetLock id comes from).
pub fn node_with_lock(
    p: &Published,
    name: &str,
    base_url: &str,
    group: &str,
    machine_id: &str,
) -> Node {
    let n = node(
        p,
        name,
        1,
        &format!(
            "{}[strategy.fleet_lock]\nbase_url = \"{base_url}\"\ngroup = \"{group}\"\n",
            fragment(p, 0.3)
        ),
    );
    std::fs::write(
        std::path::Path::new(&n.root).join("etc/machine-id"),
        format!("{machine_id}\n"),
    )
    .expect("machine-id");
    n
}

/// `cairn <verb…>` against `node`, reaching the stream's registry.
pub fn command(p: &Published, node: &Node, verb: &[&str]) -> AgentCommand {
    node.command(verb).insecure_registry(&p.registry.host)
}

/// `cairn agent --once` against `node`, with `extra` arguments; its output.
pub fn agent_once(p: &Published, node: &Node, extra: &[&str]) -> String {
    command(p, node, &["agent", "--once"]).args(extra).ok()
}

/// The node's status, asking the socket its daemon would listen on (never
/// the default one, where another test's agent may answer).
pub fn status_json(node: &Node) -> Value {
    let socket = format!("{}/agent.sock", node.state);
    let args = [
        "status",
        "--state-dir",
        &node.state,
        "--socket",
        &socket,
        "--json",
    ];
    serde_json::from_str(&ok(&args)).expect("JSON")
}

pub fn fragment(p: &Published, wariness: f64) -> String {
    format!(
        "[updates]\nkeys = [\"{}\"]\n[identity]\nrollout_wariness = {wariness}\n",
        p.public_key
    )
}

/// Sign and push the document (again, after a policy edit).
pub fn republish(p: &Published) {
    let d = |name: &str| p.dir.path().join(name);
    Publish::signed(&p.repo, d("team.key"))
        .policy(d("updates.json"))
        .insecure_registry(&p.registry.host)
        .cache(d("cache.json"))
        .run();
}

/// The history's records, oldest first, as (to_version, result).
pub fn history_words(n: &Node) -> Vec<(String, String)> {
    let text = ok(&["status", "--state-dir", &n.state, "--history", "--json"]);
    serde_json::from_str::<Vec<Value>>(&text)
        .expect("JSON")
        .iter()
        .map(|r| {
            (
                r["to_version"].as_str().unwrap_or_default().to_string(),
                r["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// How many command lines the stand-in received that start with `prefix`.
pub fn count_calls(host: &FakeHost, prefix: &str) -> usize {
    host.state()
        .calls
        .iter()
        .filter(|c| c.starts_with(prefix))
        .count()
}
