//! What a graph source says is not trusted blindly: ids that are not digests
//! or checksums never reach a host tool, and the Cincinnati request carries
//! nothing that singles the host out. Every source here is a real HTTP
//! server on loopback; every host is a stand-in that records its calls.

mod common;

use cairn_testkit::host::FakeHost;
use common::agent::Node;
use common::ok;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const BOOTED_VERSION: &str = "44.1";
const REPO: &str = "quay.io/fedora/fedora-coreos";

/// Ids an attacker might put where a digest belongs.
const HOSTILE: [&str; 5] = [
    "--reboot",
    "sha256:../../x",
    "sha256:abc",
    "SHA256:44528ECC3FE8AB2C2A4D0990CDC0898ACA334AA632D4A77F23118F8900435636",
    "sha256:44528ecc3fe8ab2c2a4d0990cdc0898aca334aa6 --reboot",
];

fn booted_digest() -> String {
    format!("sha256:{}", "1".repeat(64))
}

/// A loopback server answering `path` with `body` and keeping each
/// request's query string.
struct Served {
    address: String,
    queries: Arc<Mutex<Vec<String>>>,
}

async fn serve(routes: Vec<(&'static str, String)>) -> Served {
    let queries = Arc::new(Mutex::new(Vec::new()));
    let mut router = axum::Router::new();
    for (path, body) in routes {
        let seen = queries.clone();
        router = router.route(
            path,
            axum::routing::get(move |uri: axum::http::Uri| {
                let body = body.clone();
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .expect("lock")
                        .push(uri.query().unwrap_or_default().to_string());
                    ([("content-type", "application/json")], body)
                }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Served { address, queries }
}

impl Served {
    fn queries(&self) -> Vec<String> {
        self.queries.lock().expect("lock").clone()
    }
}

/// Which stand-in drives the host.
#[derive(Clone, Copy, Debug)]
enum Tool {
    Bootc,
    RpmOstree,
}

struct Host {
    node: Node,
    server: String,
    _dir: tempfile::TempDir,
}

fn host(tool: Tool, fragment: &str, server: &str) -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = format!("{REPO}:stable");
    let booted = booted_digest();
    let host = match tool {
        Tool::Bootc => FakeHost::new(
            &dir.path().join("host"),
            "1.17.0",
            &image,
            (&booted, BOOTED_VERSION),
            &[],
            true,
        ),
        Tool::RpmOstree => FakeHost::rpm_ostree(
            &dir.path().join("host"),
            &image,
            (&booted, BOOTED_VERSION),
            &[],
            true,
        ),
    };
    Host {
        node: Node::configured(host, dir.path(), fragment),
        server: server.to_string(),
        _dir: dir,
    }
}

impl Host {
    fn run_once(&self) -> String {
        self.node
            .command(&["agent", "--once"])
            .insecure_registry(&self.server)
            .ok()
    }

    fn last_error(&self) -> String {
        let status: Value =
            serde_json::from_str(&ok(&["status", "--state-dir", &self.node.state, "--json"]))
                .expect("JSON");
        status["lastError"].as_str().unwrap_or_default().to_string()
    }

    /// The stand-in's calls that would change the host.
    fn changes(&self) -> Vec<String> {
        let reads = [
            "status",
            "--version",
            "switch --help",
            "deploy  --register-driver",
        ];
        self.node
            .host
            .state()
            .calls
            .into_iter()
            .filter(|call| !reads.iter().any(|read| call.starts_with(read)))
            .collect()
    }

    /// Run one pass against `server`: it must have been asked, nothing
    /// must have changed on the host, and the status must say `why`.
    fn assert_refused(&self, server: &Served, label: &str, why: &[&str]) {
        let out = self.run_once();
        assert!(self.asked_status(), "{label}: the agent ran: {out}");
        assert!(
            !server.queries().is_empty(),
            "{label}: the server was asked"
        );
        assert_eq!(self.changes(), Vec::<String>::new(), "{label}: {out}");
        let error = self.last_error();
        assert!(
            why.iter().all(|part| error.contains(part)),
            "{label}: {error}"
        );
    }

    fn asked_status(&self) -> bool {
        self.node
            .host
            .state()
            .calls
            .iter()
            .any(|c| c.starts_with("status"))
    }
}

fn cincinnati_node(version: &str, age: usize, payload: &str, rollout: bool) -> Value {
    let mut metadata = json!({
        "org.fedoraproject.coreos.scheme": "oci",
        "org.fedoraproject.coreos.releases.age_index": age.to_string(),
    });
    if rollout {
        // Half-way through a two-day rollout.
        let yesterday = jiff::Timestamp::now().as_second() - 24 * 3600;
        metadata["org.fedoraproject.coreos.updates.rollout"] = json!("true");
        metadata["org.fedoraproject.coreos.updates.start_epoch"] = json!(yesterday.to_string());
        metadata["org.fedoraproject.coreos.updates.start_value"] = json!("0");
        metadata["org.fedoraproject.coreos.updates.duration_minutes"] = json!("2880");
    }
    json!({"version": version, "metadata": metadata, "payload": payload})
}

fn cincinnati_answer(newer_payload: &str, rollout: bool) -> String {
    json!({
        "nodes": [
            cincinnati_node(BOOTED_VERSION, 0, &format!("{REPO}@{}", booted_digest()), false),
            cincinnati_node("44.2", 1, newer_payload, rollout),
        ],
        "edges": [[0, 1]],
    })
    .to_string()
}

fn cincinnati_fragment(server: &str, wariness: f64) -> String {
    format!(
        "[updates]\nsource = \"cincinnati:http://{server}\"\n[identity]\nrollout_wariness = {wariness}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cincinnati_payloads_never_reach_a_host_tool() {
    for bad in HOSTILE {
        for payload in [bad.to_string(), format!("{REPO}@{bad}")] {
            let server = serve(vec![("/v1/graph", cincinnati_answer(&payload, false))]).await;
            for tool in [Tool::Bootc, Tool::RpmOstree] {
                let label = format!("{payload:?} on {tool:?}");
                let node = host(
                    tool,
                    &cincinnati_fragment(&server.address, 0.5),
                    &server.address,
                );
                let source = format!("cincinnati:http://{}", server.address);
                node.assert_refused(
                    &server,
                    &label,
                    &[&source, "node 1 (44.2): payload:", "is not a release id"],
                );
            }
        }
    }
}

/// Fedora's two files: the booted release and a newer one whose image is `digest_ref`.
async fn serve_fedora(digest_ref: &str) -> Served {
    let image = |version: &str, digest_ref: &str| {
        json!({"version": version, "oci-images": [
            {"architecture": "x86_64", "image": format!("{REPO}:{version}"), "digest-ref": digest_ref}
        ]})
    };
    let index = json!({"stream": "stable", "releases": [
        image(BOOTED_VERSION, &format!("{REPO}@{}", booted_digest())),
        image("44.2", digest_ref),
    ]});
    let updates = json!({"stream": "stable", "releases": []});
    serve(vec![
        ("/prod/streams/stable/releases.json", index.to_string()),
        ("/updates/stable.json", updates.to_string()),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_fedora_digests_never_reach_a_host_tool() {
    for bad in HOSTILE {
        for digest_ref in [bad.to_string(), format!("{REPO}@{bad}")] {
            let server = serve_fedora(&digest_ref).await;
            let fragment = format!(
                "[updates]\nsource = \"fcos:http://{}\"\n[identity]\nrollout_wariness = 0.5\n",
                server.address
            );
            for tool in [Tool::Bootc, Tool::RpmOstree] {
                let label = format!("{digest_ref:?} on {tool:?}");
                let node = host(tool, &fragment, &server.address);
                node.assert_refused(
                    &server,
                    &label,
                    &[
                        "releases[1].oci-images[0].digest-ref",
                        "is not a release id",
                    ],
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_newer_payload_is_staged_as_the_control_case() {
    // Without this, the tests above would pass for an agent that never stages.
    let registry = cairn_testkit::TestRegistry::start(cairn_testkit::Auth::None).await;
    let store = registry.store("fedora/fedora-coreos");
    let (_, old) =
        cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (_, new) =
        cairn_testkit::write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"])
            .await;
    let repo = format!("{}/fedora/fedora-coreos", registry.host);
    let answer = json!({
        "nodes": [
            cincinnati_node("44.1", 0, &format!("{repo}@{}", old[0].manifest), false),
            cincinnati_node("44.2", 1, &format!("{repo}@{}", new[0].manifest), false),
        ],
        "edges": [[0, 1]],
    });
    let server = serve(vec![("/v1/graph", answer.to_string())]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = FakeHost::new(
        &dir.path().join("host"),
        "1.17.0",
        &format!("{repo}:stable"),
        (&old[0].manifest, "44.1"),
        std::slice::from_ref(&registry.host),
        true,
    );
    let node = Node::configured(host, dir.path(), &cincinnati_fragment(&server.address, 0.5));
    let out = node
        .command(&["agent", "--once"])
        .insecure_registry(&registry.host)
        .insecure_registry(&server.address)
        .ok();
    assert!(out.contains("staged 44.2"), "{out}");
    assert_eq!(
        node.host.state().staged.map(|s| s.digest).as_deref(),
        Some(new[0].manifest.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cincinnati_request_does_not_single_the_host_out() {
    // The wariness a machine id gives: sixteen digits that never change.
    let wariness = 0.7193282501649758;
    let newer = format!("{REPO}@sha256:{}", "2".repeat(64));
    let first = "basearch=x86_64&stream=stable&rollout_wariness=0&oci=true".to_string();
    // Fedora's kind of answer: rollout metadata in the nodes. Wariness 0 is
    // sent, and the host's own wariness holds it back, locally.
    let server = serve(vec![("/v1/graph", cincinnati_answer(&newer, true))]).await;
    let node = host(
        Tool::RpmOstree,
        &cincinnati_fragment(&server.address, wariness),
        &server.address,
    );
    let out = node.run_once();
    assert_eq!(server.queries(), vec![first.clone()], "{out}");
    assert!(out.contains("rollout of 44.2 at 50"), "{out}");
    assert!(out.contains("this node's wariness is 0.719"), "{out}");
    assert_eq!(node.changes(), Vec::<String>::new(), "{out}");

    // An update offered with no rollout metadata: the server may be
    // filtering on its side, so it is asked again with two decimals.
    let server = serve(vec![("/v1/graph", cincinnati_answer(&newer, false))]).await;
    let node = host(
        Tool::Bootc,
        &cincinnati_fragment(&server.address, wariness),
        &server.address,
    );
    let out = node.run_once();
    assert_eq!(
        server.queries(),
        vec![
            first.clone(),
            "basearch=x86_64&stream=stable&rollout_wariness=0.72&oci=true".to_string(),
        ],
        "{out}"
    );

    // Nothing offered at wariness 0: a higher wariness could only take edges
    // away, so there is no second question.
    let answer = json!({
        "nodes": [cincinnati_node(BOOTED_VERSION, 0, &format!("{REPO}@{}", booted_digest()), false)],
        "edges": [],
    });
    let server = serve(vec![("/v1/graph", answer.to_string())]).await;
    let node = host(
        Tool::Bootc,
        &cincinnati_fragment(&server.address, wariness),
        &server.address,
    );
    let out = node.run_once();
    assert!(node.asked_status(), "{out}");
    assert_eq!(server.queries(), vec![first], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_document_digests_never_reach_a_host_tool() {
    let now = jiff::Timestamp::now();
    for bad in HOSTILE {
        let dir = tempfile::tempdir().expect("temp dir");
        let document = dir.path().join("stable.json");
        let release = |version: &str, digest: &str| json!({"version": version, "architectures": {"x86_64": {"digest": digest}}});
        std::fs::write(
            &document,
            json!({
                "schema": 1,
                "stream": "stable",
                "repository": REPO,
                "sequence": 1,
                "issued": (now - jiff::SignedDuration::from_hours(1)).to_string(),
                "expires": (now + jiff::SignedDuration::from_hours(24)).to_string(),
                "releases": [release(BOOTED_VERSION, &booted_digest()), release("44.2", bad)],
            })
            .to_string(),
        )
        .expect("write");
        let fragment = format!(
            "[updates]\nsource = \"file:{}\"\nallow_unsigned = true\n[identity]\nrollout_wariness = 0.5\n",
            document.display()
        );
        for tool in [Tool::Bootc, Tool::RpmOstree] {
            let label = format!("{bad:?} on {tool:?}");
            let node = host(tool, &fragment, "127.0.0.1:1");
            let out = node.run_once();
            assert!(node.asked_status(), "{label}: the agent ran: {out}");
            assert_eq!(node.changes(), Vec::<String>::new(), "{label}: {out}");
            let error = node.last_error();
            assert!(
                error.contains("releases[1]") && error.contains("architectures.x86_64.digest"),
                "{label}: {error}"
            );
        }
    }
}
