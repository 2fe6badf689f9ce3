//! Derived images, end to end: a base repository and derived repositories of
//! real images in the registry harness (each derived image is its base's
//! layers plus one more, with buildah's annotations), `cairn publish
//! --base-graph`, and agents on stand-in hosts. Every scenario runs twice:
//! with the base graph as a signed Cairn document, and as Fedora-format
//! files served over loopback HTTP.

mod common;
use common::{cairn, ok};

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
        "deadend",
        "add",
        "40.4",
        "--reason",
        DEADEND_REASON,
    ]);
    if kind == BaseKind::Document {
        ok(&["document", "keygen", "--output", &d("base")]);
        ok(&[
            "publish",
            "--repository",
            &base_repo,
            "--stream",
            "stable",
            "--policy",
            &policy,
            "--sign-key",
            &d("base.key"),
            "--insecure-registry",
            &registry.host,
            "--cache",
            &d("base-cache.json"),
        ]);
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

/// One derived release to build: its own name, base position, what it
/// records of its base, build time and tags.
struct Build<'a> {
    own: &'a str,
    base: usize,
    recorded: Recorded,
    created: &'a str,
    tags: &'a [&'a str],
}

/// Build derived releases into `repo`; returns each one's amd64 manifest digest.
async fn derive(w: &World, repo: &str, builds: Vec<Build<'_>>) -> Vec<String> {
    let store = w.registry.store(repo);
    let name = format!("{}:stable", w.base_repo);
    let mut digests = Vec::new();
    for build in builds {
        let base = Base {
            name: &name,
            ..w.base(build.base, build.recorded)
        };
        let (_, written) =
            write_derived_release(&store, &base, build.own, build.created, build.tags).await;
        digests.push(written[0].manifest.clone());
    }
    digests
}

/// `cairn publish` of a derived repository with the base graph; stderr.
fn publish(w: &World, repo: &str, extra: &[&str]) -> String {
    let repository = format!("{}/{repo}", w.registry.host);
    let cache = w.path(&format!("{}-cache.json", repo.replace('/', "-")));
    let key = w.path("team.key");
    if !std::path::Path::new(&key).exists() {
        ok(&["document", "keygen", "--output", &w.path("team")]);
    }
    let mut args: Vec<String> = [
        "publish",
        "--repository",
        &repository,
        "--stream",
        "stable",
        "--sign-key",
        &key,
        "--insecure-registry",
        &w.registry.host,
        "--cache",
        &cache,
    ]
    .map(String::from)
    .to_vec();
    args.extend(w.base_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cairn(&refs);
    assert!(
        out.status.success(),
        "cairn {refs:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The published document as `cairn graph show --format json` reports it.
fn show(w: &World, repo: &str) -> Value {
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
        "x86_64",
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

struct Host {
    host: FakeHost,
    root: String,
    state: String,
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
    configured(host, &base, config)
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
    configured(host, &base, config)
}

fn configured(host: FakeHost, base: &std::path::Path, config: &str) -> Host {
    let dir = base.join("root/etc/cairn/config.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("50-site.toml"), config).expect("write");
    Host {
        host,
        root: base.join("root").display().to_string(),
        state: base.join("state").display().to_string(),
    }
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
    let program = h.host.program.display().to_string();
    let rpm_ostree = h.host.program.ends_with("rpm-ostree");
    let no_bootc = format!("{}/no-bootc", h.root);
    let mut args: Vec<&str> = verb.to_vec();
    if rpm_ostree {
        args.extend([
            "--rpm-ostree",
            program.as_str(),
            "--bootc",
            no_bootc.as_str(),
        ]);
    } else {
        args.extend(["--bootc", program.as_str()]);
    }
    args.extend([
        "--root",
        h.root.as_str(),
        "--state-dir",
        h.state.as_str(),
        "--arch",
        "x86_64",
        "--insecure-registry",
        w.registry.host.as_str(),
        "--insecure-registry",
        w.fedora.as_str(),
        "--no-updater-check",
        "--no-systemd",
    ]);
    cairn(&args)
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

both_base_kinds!(a_release_on_the_base_barrier_is_walked_through_first);
async fn a_release_on_the_base_barrier_is_walked_through_first(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/walk";
    // 40.1 records the base index; 40.2 and 40.3 record per-architecture manifests.
    let digests = derive(
        &w,
        repo,
        vec![
            Build {
                own: "a1",
                base: 0,
                recorded: w.by_index(0),
                created: "2026-01-03T00:00:00Z",
                tags: &["a1"],
            },
            Build {
                own: "a2",
                base: 1,
                recorded: w.by_manifest(1),
                created: "2026-01-17T00:00:00Z",
                tags: &["a2"],
            },
            Build {
                own: "a3",
                base: 2,
                recorded: w.by_manifest(2),
                created: "2026-02-03T00:00:00Z",
                tags: &["a3", "stable"],
            },
        ],
    )
    .await;
    // The derived team's own rollout of a3, half-way, on top of the inherited barrier.
    let policy = w.path("walk-updates.json");
    let yesterday = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24)).to_string();
    ok(&[
        "policy", "--policy", &policy, "rollout", "start", "a3", "--over", "2d", "--at", &yesterday,
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
    let text = ok(&[
        "graph",
        "show",
        "--document",
        &format!("{}/{repo}:cairn-graph-stable", w.registry.host),
        "--key",
        &w.path("team.pub"),
        "--insecure-registry",
        &w.registry.host,
    ]);
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
        vec![
            Build {
                own: "g1",
                base: 0,
                recorded: w.by_manifest(0),
                created: "2026-01-03T00:00:00Z",
                tags: &["g1"],
            },
            Build {
                own: "g3",
                base: 2,
                recorded: w.by_index(2),
                created: "2026-02-03T00:00:00Z",
                tags: &["g3", "stable"],
            },
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
}

both_base_kinds!(a_base_dead_end_propagates_and_names_the_base_release);
async fn a_base_dead_end_propagates_and_names_the_base_release(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/dead";
    let digests = derive(
        &w,
        repo,
        vec![
            Build {
                own: "d4",
                base: 3,
                recorded: w.by_manifest(3),
                created: "2026-02-17T00:00:00Z",
                tags: &["d4"],
            },
            Build {
                own: "d5",
                base: 4,
                recorded: w.by_manifest(4),
                created: "2026-03-03T00:00:00Z",
                tags: &["d5", "stable"],
            },
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
        vec![
            Build {
                own: "m2",
                base: 1,
                recorded: w.by_manifest(1),
                created: "2026-01-17T00:00:00Z",
                tags: &["m2"],
            },
            Build {
                own: "m3",
                base: 2,
                recorded: w.by_manifest(2),
                created: "2026-02-03T00:00:00Z",
                tags: &["m3", "stable"],
            },
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
        vec![
            Build {
                own: "r1",
                base: 2,
                recorded: w.by_manifest(2),
                created: "2026-02-03T00:00:00Z",
                tags: &["2026.02.03"],
            },
            Build {
                own: "r2",
                base: 2,
                recorded: w.by_manifest(2),
                created: "2026-02-10T00:00:00Z",
                tags: &["2026.02.10", "stable"],
            },
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

both_base_kinds!(a_tag_following_host_stages_the_barrier_image_first);
async fn a_tag_following_host_stages_the_barrier_image_first(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/follow-walk";
    let digests = derive(
        &w,
        repo,
        vec![
            Build {
                own: "t1",
                base: 0,
                recorded: w.by_manifest(0),
                created: "2026-01-03T00:00:00Z",
                tags: &["t1"],
            },
            Build {
                own: "t2",
                base: 1,
                recorded: w.by_index(1),
                created: "2026-01-17T00:00:00Z",
                tags: &["t2"],
            },
            Build {
                own: "t3",
                base: 2,
                recorded: w.by_manifest(2),
                created: "2026-02-03T00:00:00Z",
                tags: &["t3", "stable"],
            },
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
        vec![
            Build {
                own: "u1",
                base: 0,
                recorded: w.by_manifest(0),
                created: "2026-01-03T00:00:00Z",
                tags: &["u1"],
            },
            // Another image on an older base than the barrier does not help.
            Build {
                own: "u1b",
                base: 0,
                recorded: w.by_manifest(0),
                created: "2026-01-05T00:00:00Z",
                tags: &["u1b"],
            },
            Build {
                own: "u3",
                base: 2,
                recorded: w.by_manifest(2),
                created: "2026-02-03T00:00:00Z",
                tags: &["u3", "stable"],
            },
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

both_base_kinds!(a_tag_following_host_stays_on_a_base_dead_end);
async fn a_tag_following_host_stays_on_a_base_dead_end(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/follow-dead";
    let digests = derive(
        &w,
        repo,
        vec![
            Build {
                own: "v4",
                base: 3,
                recorded: w.by_manifest(3),
                created: "2026-02-17T00:00:00Z",
                tags: &["v4"],
            },
            Build {
                own: "v5",
                base: 4,
                recorded: w.by_manifest(4),
                created: "2026-03-03T00:00:00Z",
                tags: &["v5", "stable"],
            },
        ],
    )
    .await;
    let h = host(
        &w,
        "follow-dead",
        repo,
        (&digests[0], "v4"),
        &tag_config(&w),
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(
        out.contains(&format!(
            "{DEADEND_REASON} (inherited from base {} 40.4)",
            w.base_graph_repository()
        )),
        "{out}"
    );
    assert_eq!(staged(&h), None);
}

both_base_kinds!(a_tag_following_host_ignores_a_metadata_only_change);
async fn a_tag_following_host_ignores_a_metadata_only_change(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/follow-meta";
    let digests = derive(
        &w,
        repo,
        vec![Build {
            own: "n3",
            base: 2,
            recorded: w.by_manifest(2),
            created: "2026-02-03T00:00:00Z",
            tags: &["n3", "stable"],
        }],
    )
    .await;
    // `stable` moves to a re-annotated copy of the same image.
    let store = w.registry.store(repo);
    let index = store
        .resolve("stable")
        .await
        .expect("HEAD")
        .expect("tag")
        .digest;
    reannotate(&w, repo, &index).await;
    let h = host(
        &w,
        "follow-meta",
        repo,
        (&digests[0], "n3"),
        &tag_config(&w),
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("only changes metadata"), "{out}");
    assert_eq!(staged(&h), None);
}

both_base_kinds!(unknown_bases_are_excluded_and_layers_find_unrecorded_ones);
async fn unknown_bases_are_excluded_and_layers_find_unrecorded_ones(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/bases";
    let unknown = format!("sha256:{}", "ab".repeat(32));
    derive(
        &w,
        repo,
        vec![
            // Built on 40.1, but the build recorded no base keys.
            Build {
                own: "x1",
                base: 0,
                recorded: Recorded::Nothing,
                created: "2026-01-03T00:00:00Z",
                tags: &["x1"],
            },
            // Records a base the base graph does not know.
            Build {
                own: "x2",
                base: 0,
                recorded: Recorded::Manifests(unknown.clone(), unknown.clone()),
                created: "2026-01-04T00:00:00Z",
                tags: &["x2"],
            },
            Build {
                own: "x3",
                base: 0,
                recorded: w.by_manifest(0),
                created: "2026-01-05T00:00:00Z",
                tags: &["x3", "stable"],
            },
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
        vec![
            Build {
                own: "c1",
                base: 0,
                recorded: w.by_index(0),
                created: "2026-01-03T00:00:00Z",
                tags: &["c1"],
            },
            Build {
                own: "c2",
                base: 1,
                recorded: w.by_manifest(1),
                created: "2026-01-17T00:00:00Z",
                tags: &["c2"],
            },
            Build {
                own: "c3",
                base: 2,
                recorded: w.by_index(2),
                created: "2026-02-03T00:00:00Z",
                tags: &["c3", "stable"],
            },
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
/// registries.conf names a mirror that has the images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_following_host_reads_through_its_registries_conf_mirror() {
    let w = world(BaseKind::Fcos).await;
    let repo = "acme/follow-mirror";
    let digests = derive(
        &w,
        repo,
        vec![
            Build {
                own: "m1",
                base: 0,
                recorded: w.by_manifest(0),
                created: "2026-01-03T00:00:00Z",
                tags: &["m1"],
            },
            Build {
                own: "m3",
                base: 2,
                recorded: w.by_manifest(2),
                created: "2026-02-03T00:00:00Z",
                tags: &["m3", "stable"],
            },
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
    let root = base.join("root");
    std::fs::create_dir_all(root.join("etc/cairn/config.d")).expect("mkdir");
    std::fs::write(root.join("etc/cairn/config.d/50-site.toml"), tag_config(&w)).expect("config");
    std::fs::create_dir_all(root.join("etc/containers/registries.conf.d")).expect("mkdir");
    std::fs::write(
        root.join("etc/containers/registries.conf.d/50-mirror.conf"),
        format!(
            "[[registry]]\nprefix = \"127.0.0.1:1/acme\"\nlocation = \"127.0.0.1:1/acme\"\n[[registry.mirror]]\nlocation = \"{}/acme\"\ninsecure = true\n",
            w.registry.host
        ),
    )
    .expect("registries.conf");
    let h = Host {
        host,
        root: root.display().to_string(),
        state: base.join("state").display().to_string(),
    };
    let out = agent_once(&w, &h, &["agent", "--once"]);
    // Both images and the repository's tags were read through the mirror.
    assert!(
        out.contains(&format!(
            "no image in 127.0.0.1:1/{repo} is built on quay.io/fedora/fedora-coreos 40.2"
        )),
        "{out}"
    );
    assert!(out.contains("Last error: none"), "{out}");
}

/// A derived release to build: own name, base position, what it records,
/// build time and tags.
fn build<'a>(
    own: &'a str,
    base: usize,
    recorded: Recorded,
    created: &'a str,
    tags: &'a [&'a str],
) -> Build<'a> {
    Build {
        own,
        base,
        recorded,
        created,
        tags,
    }
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

both_base_kinds!(a_barrier_image_built_late_is_walked_through_and_then_onwards);
async fn a_barrier_image_built_late_is_walked_through_and_then_onwards(kind: BaseKind) {
    let w = world(kind).await;
    let repo = "acme/late";
    let first = derive(
        &w,
        repo,
        vec![
            build("l1", 0, w.by_manifest(0), "2026-01-03T00:00:00Z", &["l1"]),
            build(
                "l3",
                2,
                w.by_manifest(2),
                "2026-02-03T00:00:00Z",
                &["l3", "stable"],
            ),
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
    let late = derive(
        &w,
        repo,
        vec![build(
            "l2",
            1,
            w.by_manifest(1),
            "2026-03-05T00:00:00Z",
            &["l2"],
        )],
    )
    .await;
    let stderr = publish(&w, repo, &[]);
    assert!(!stderr.contains("build an image on"), "{stderr}");
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
        vec![
            build("r1", 0, w.by_manifest(0), "2026-01-03T00:00:00Z", &["r1"]),
            build(
                "r5",
                4,
                w.by_index(4),
                "2026-03-03T00:00:00Z",
                &["r5", "stable"],
            ),
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
    let r3 = derive(
        &w,
        repo,
        vec![build(
            "r3",
            2,
            w.by_manifest(2),
            "2026-03-10T00:00:00Z",
            &["r3"],
        )],
    )
    .await;
    let stderr = publish(&w, repo, &[]);
    assert!(
        stderr.contains("build an image on 40.2") && !stderr.contains("build an image on 40.3"),
        "{stderr}"
    );
    let out = agent_once(&w, &h, &["agent", "--once"]);
    assert!(out.contains("no image in") && out.contains("40.2"), "{out}");
    assert_eq!(staged(&h), None);
    let r2 = derive(
        &w,
        repo,
        vec![build(
            "r2",
            1,
            w.by_index(1),
            "2026-03-20T00:00:00Z",
            &["r2"],
        )],
    )
    .await;
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
        vec![
            build("p1", 0, w.by_manifest(0), "2026-01-03T00:00:00Z", &["p1"]),
            build(
                "p3",
                2,
                w.by_manifest(2),
                "2026-02-03T00:00:00Z",
                &["p3", "stable"],
            ),
            build("p2", 1, w.by_manifest(1), "2026-03-05T00:00:00Z", &["p2"]),
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
        calls.contains(&format!("deploy --lock-finalization {}", digests[1])),
        "a move to a newer base leaves rpm-ostree's date check off: {calls:?}"
    );

    // A rebuild on p3's base, built before p3 but pushed after it.
    digests.extend(
        derive(
            &w,
            repo,
            vec![build(
                "p3-rebuild",
                2,
                w.by_manifest(2),
                "2026-02-01T00:00:00Z",
                &["p3-rebuild"],
            )],
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
            "deploy --lock-finalization --disallow-downgrade {}",
            digests[3]
        )),
        "on one base the date check stays: {calls:?}"
    );
    assert_eq!(staged(&h), None);
}
