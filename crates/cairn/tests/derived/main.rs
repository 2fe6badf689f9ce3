//! Derived images, end to end: a base repository and derived repositories of
//! real images in the registry harness (each derived image is its base's
//! layers plus one more, with buildah's annotations), `cairn publish
//! --base-graph`, and agents on stand-in hosts. Every scenario runs twice:
//! with the base graph as a signed Cairn document, and as Fedora-format
//! files served over loopback HTTP.

#[path = "../common/mod.rs"]
mod common;
use common::agent::Node as Host;
use common::ok;
use common::publish::Publish;

use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, Base, Recorded, TestRegistry, write_derived_release, write_release};
use serde_json::{Value, json};
use std::process::Output;

/// The base stream: a barrier at 40.2 and a dead-end at 40.4.
const BASE: [(&str, &str); 5] = [
    ("40.1", "2026-01-01T00:00:00Z"),
    ("40.2", "2026-01-15T00:00:00Z"),
    ("40.3", "2026-02-01T00:00:00Z"),
    ("40.4", "2026-02-15T00:00:00Z"),
    ("40.5", "2026-03-01T00:00:00Z"),
];
const BARRIER_REASON: &str = "https://example.org/migrate-bootloader";
const DEADEND_REASON: &str = "broken kernel on some NICs";

#[derive(Debug, Clone, Copy, PartialEq)]
enum BaseKind {
    /// A signed Cairn document in the base repository.
    Document,
    /// Fedora's release index and updates file over loopback HTTP.
    Fcos,
}

struct World {
    registry: TestRegistry,
    dir: tempfile::TempDir,
    kind: BaseKind,
    base_repo: String,
    base_index: Vec<String>,
    base_manifests: Vec<(String, String)>,
    fedora: String,
}

impl World {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `--base-graph` and what goes with it.
    fn base_args(&self) -> Vec<String> {
        match self.kind {
            BaseKind::Document => vec![
                "--base-graph".into(),
                format!("{}:cairn-graph-stable", self.base_repo),
                "--base-key".into(),
                self.path("base.pub"),
            ],
            BaseKind::Fcos => vec![
                "--base-graph".into(),
                format!("fcos:stable:http://{}", self.fedora),
                "--insecure-registry".into(),
                self.fedora.clone(),
            ],
        }
    }

    /// The repository the base graph names (Fedora's files name quay.io).
    fn base_graph_repository(&self) -> String {
        match self.kind {
            BaseKind::Document => self.base_repo.clone(),
            BaseKind::Fcos => "quay.io/fedora/fedora-coreos".into(),
        }
    }

    fn base(&self, at: usize, recorded: Recorded) -> Base<'_> {
        Base {
            name: "",
            version: BASE[at].0,
            created: BASE[at].1,
            recorded,
        }
    }

    fn by_index(&self, at: usize) -> Recorded {
        Recorded::Index(self.base_index[at].clone())
    }

    fn by_manifest(&self, at: usize) -> Recorded {
        let (amd64, arm64) = self.base_manifests[at].clone();
        Recorded::Manifests(amd64, arm64)
    }
}

async fn world(kind: BaseKind) -> World {
    world_with_barriers(kind, &["40.2"]).await
}

/// A base stream with barriers at `barriers` (and the dead-end at 40.4).
async fn world_with_barriers(kind: BaseKind, barriers: &[&str]) -> World {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("fedora/fedora-coreos");
    let mut base_index = Vec::new();
    let mut base_manifests = Vec::new();
    for (i, (version, created)) in BASE.iter().enumerate() {
        let mut tags = vec![*version];
        if i == BASE.len() - 1 {
            tags.push("stable");
        }
        let (index, written) = write_release(&store, version, created, &tags).await;
        base_index.push(index);
        base_manifests.push((written[0].manifest.clone(), written[1].manifest.clone()));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let base_repo = format!("{}/fedora/fedora-coreos", registry.host);
    let d = |name: &str| dir.path().join(name).display().to_string();
    let policy = d("base-updates.json");
    for barrier in barriers {
        ok(&[
            "policy",
            "--policy",
            &policy,
            "--stream",
            "stable",
            "barrier",
            "add",
            barrier,
            "--reason",
            BARRIER_REASON,
        ]);
    }
    ok(&[
        "policy",
        "--policy",
        &policy,
        "--stream",
        "stable",
        "deadend",
        "add",
        "40.4",
        "--reason",
        DEADEND_REASON,
    ]);
    if kind == BaseKind::Document {
        ok(&["document", "keygen", "--output", &d("base")]);
        Publish::signed(&base_repo, d("base.key"))
            .policy(&policy)
            .insecure_registry(&registry.host)
            .cache(d("base-cache.json"))
            .run();
    }
    let fedora = serve_fedora_files(&base_manifests, &policy).await;
    World {
        registry,
        dir,
        kind,
        base_repo,
        base_index,
        base_manifests,
        fedora,
    }
}

/// Fedora-format files for the base stream, with the base policy as the updates file.
async fn serve_fedora_files(manifests: &[(String, String)], policy: &str) -> String {
    let releases: Vec<Value> = BASE
        .iter()
        .zip(manifests)
        .map(|((version, _), (amd64, arm64))| {
            json!({
                "version": version,
                "oci-images": [
                    {"architecture": "x86_64", "image": "quay.io/fedora/fedora-coreos:stable",
                     "digest-ref": format!("quay.io/fedora/fedora-coreos@{amd64}")},
                    {"architecture": "aarch64", "image": "quay.io/fedora/fedora-coreos:stable",
                     "digest-ref": format!("quay.io/fedora/fedora-coreos@{arm64}")},
                ],
                "metadata": format!("https://example.org/{version}/release.json"),
            })
        })
        .collect();
    let index = json!({"stream": "stable", "metadata": {"last-modified": "2026-03-01T00:00:00Z"}, "releases": releases});
    let updates = std::fs::read_to_string(policy).expect("base policy");
    let router = axum::Router::new()
        .route(
            "/prod/streams/stable/releases.json",
            axum::routing::get(move || async move { index.to_string() }),
        )
        .route(
            "/updates/stable.json",
            axum::routing::get(move || async move { updates }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address.to_string()
}

/// What a derived image records of the base it is built on.
#[derive(Debug, Clone, Copy)]
enum Records {
    /// The base's index digest.
    Index,
    /// The base's per-architecture manifest digests.
    Manifests,
    /// No base keys at all.
    Nothing,
    /// Manifest digests the base graph does not know ([`UNKNOWN_BASE`]).
    Unknown,
}
use Records::{Index, Manifests, Nothing, Unknown};

/// The base digest no base release has.
const UNKNOWN_BASE: &str =
    "sha256:abababababababababababababababababababababababababababababababab";

/// One derived release to build: its own name, base position, what it
/// records of its base, build day (at midnight UTC) and tags (space-separated).
type Build = (&'static str, usize, Records, &'static str, &'static str);

/// Build derived releases into `repo`; returns each one's amd64 manifest digest.
async fn derive(w: &World, repo: &str, builds: &[Build]) -> Vec<String> {
    let store = w.registry.store(repo);
    let name = format!("{}:stable", w.base_repo);
    let mut digests = Vec::new();
    for &(own, at, records, created, tags) in builds {
        let recorded = match records {
            Index => w.by_index(at),
            Manifests => w.by_manifest(at),
            Nothing => Recorded::Nothing,
            Unknown => Recorded::Manifests(UNKNOWN_BASE.into(), UNKNOWN_BASE.into()),
        };
        let base = Base {
            name: &name,
            ..w.base(at, recorded)
        };
        let created = format!("{created}T00:00:00Z");
        let tags: Vec<&str> = tags.split_whitespace().collect();
        let (_, written) = write_derived_release(&store, &base, own, &created, &tags).await;
        digests.push(written[0].manifest.clone());
    }
    digests
}

/// `cairn publish` of a derived repository with the base graph; stderr.
fn publish(w: &World, repo: &str, extra: &[&str]) -> String {
    let key = w.path("team.key");
    if !std::path::Path::new(&key).exists() {
        ok(&["document", "keygen", "--output", &w.path("team")]);
    }
    Publish::signed(&format!("{}/{repo}", w.registry.host), key)
        .insecure_registry(&w.registry.host)
        .cache(w.path(&format!("{}-cache.json", repo.replace('/', "-"))))
        .args(w.base_args())
        .args(extra)
        .run()
        .stderr
}

/// The published document as `cairn graph show --format json` reports it.
fn show(w: &World, repo: &str) -> Value {
    show_arch(w, repo, "x86_64")
}

/// The same, for one architecture.
fn show_arch(w: &World, repo: &str, arch: &str) -> Value {
    let text = ok(&[
        "graph",
        "show",
        "--document",
        &format!("{}/{repo}:cairn-graph-stable", w.registry.host),
        "--key",
        &w.path("team.pub"),
        "--insecure-registry",
        &w.registry.host,
        "--arch",
        arch,
        "--format",
        "json",
    ]);
    serde_json::from_str(&text).expect("JSON")
}

fn release<'a>(shown: &'a Value, version: &str) -> &'a Value {
    shown["releases"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["version"] == version))
        .unwrap_or_else(|| panic!("no release {version} in {shown}"))
}

fn edges(shown: &Value) -> Vec<(String, String)> {
    let versions: Vec<String> = shown["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .map(|r| r["version"].as_str().unwrap_or_default().to_string())
        .collect();
    shown["graphs"][0]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            let at = |i: usize| versions[e[i].as_u64().expect("age") as usize].clone();
            (at(0), at(1))
        })
        .collect()
}

/// Push `digest` again as `stable` with one more annotation: a new manifest
/// with the same config and layers (what `skopeo copy` with other annotations
/// does). Returns the new manifest's digest.
async fn reannotate(w: &World, repo: &str, digest: &str) -> String {
    let store = w.registry.store(repo);
    let fetched = store.get_manifest(digest).await.expect("manifest");
    let mut manifest: Value = serde_json::from_slice(&fetched.bytes).expect("JSON");
    manifest["annotations"]["org.example.reviewed-by"] = json!("release-team");
    store
        .put_manifest(
            bytes::Bytes::from(manifest.to_string()),
            &fetched.media_type,
            Some("stable"),
        )
        .await
        .expect("push")
}

/// A stand-in bootc host booted on `digest` (version `version`) following `repo:stable`.
fn host(w: &World, name: &str, repo: &str, booted: (&str, &str), config: &str) -> Host {
    let base = w.dir.path().join(name);
    let host = FakeHost::new(
        &base.join("host"),
        "1.17.0",
        &format!("{}/{repo}:stable", w.registry.host),
        booted,
        std::slice::from_ref(&w.registry.host),
        true,
    );
    Host::configured(host, &base, config)
}

/// The same as an rpm-ostree host (a signed container origin).
fn rpm_host(w: &World, name: &str, repo: &str, booted: (&str, &str), config: &str) -> Host {
    let base = w.dir.path().join(name);
    let host = FakeHost::rpm_ostree(
        &base.join("host"),
        &format!("{}/{repo}:stable", w.registry.host),
        booted,
        std::slice::from_ref(&w.registry.host),
        true,
    );
    Host::configured(host, &base, config)
}

fn agent_once(w: &World, h: &Host, verb: &[&str]) -> String {
    let out = agent_output(w, h, verb);
    assert!(
        out.status.success(),
        "cairn {verb:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn agent_output(w: &World, h: &Host, verb: &[&str]) -> Output {
    h.command(verb)
        .insecure_registry(&w.registry.host)
        .insecure_registry(&w.fedora)
        .output()
}

fn staged(h: &Host) -> Option<String> {
    h.host.state().staged.map(|s| s.digest)
}

fn team_config(w: &World, wariness: f64) -> String {
    format!(
        "[updates]\nkeys = [\"{}\"]\n[identity]\nrollout_wariness = {wariness}\n",
        w.path("team.pub")
    )
}

macro_rules! both_base_kinds {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn with_a_cairn_base_document() {
                super::$name(super::BaseKind::Document).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn with_fedora_files() {
                super::$name(super::BaseKind::Fcos).await;
            }
        }
    };
}

/// A host that follows the tag with no document: `source = "tag"` and the base graph.
fn tag_config(w: &World) -> String {
    let base = match w.kind {
        BaseKind::Document => format!(
            "base_source = \"{}:cairn-graph-stable\"\nbase_keys = [\"{}\"]\n",
            w.base_repo,
            w.path("base.pub")
        ),
        BaseKind::Fcos => format!("base_source = \"fcos:stable:http://{}\"\n", w.fedora),
    };
    format!("[updates]\nsource = \"tag\"\n{base}[identity]\nrollout_wariness = 0.5\n")
}

/// Agent passes until something is staged (a reboot's first pass verifies it).
fn until_staged(w: &World, h: &Host) -> String {
    let mut out = String::new();
    for _ in 0..3 {
        out = agent_once(w, h, &["agent", "--once"]);
        if staged(h).is_some() {
            break;
        }
    }
    out
}

/// The text of `cairn graph show` for the published document.
fn show_text(w: &World, repo: &str) -> String {
    ok(&[
        "graph",
        "show",
        "--document",
        &format!("{}/{repo}:cairn-graph-stable", w.registry.host),
        "--key",
        &w.path("team.pub"),
        "--insecure-registry",
        &w.registry.host,
    ])
}

/// Boot what is staged, then check until the next release is staged.
fn reboot_and_stage_next(w: &World, h: &Host, expected: &str) {
    h.host.reboot(true);
    let out = until_staged(w, h);
    assert_eq!(
        staged(h).as_deref(),
        Some(expected),
        "after the reboot into {:?}: {out}",
        h.host.state().booted.map(|b| b.version)
    );
}

mod following;
mod late_barriers;
mod published;
mod served;
