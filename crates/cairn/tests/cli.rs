//! The `cairn` command end to end: real files in, real output and exit codes out.

mod common;
use common::{cairn, ok};

use cairn_graph::cincinnati::CincinnatiGraph;
use cairn_graph::{GraphDocument, Query, UpdateGraph};
use jiff::Timestamp;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const REPOSITORY: &str = "quay.io/fedora/fedora-coreos";
/// Mid-way through the newest stable rollout (progress 0.5).
const MID_ROLLOUT: &str = "1784815200";

fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fcos")
        .join(path)
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/stable.json")
}

/// The words of `fixed` (split on spaces) followed by `values` (paths, digests).
fn cmd(fixed: &str, values: &[&str]) -> Vec<String> {
    fixed
        .split_whitespace()
        .chain(values.iter().copied())
        .map(str::to_string)
        .collect()
}

fn failure<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let out = cairn(args);
    assert!(!out.status.success(), "cairn {args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    String::from_utf8(out.stderr).expect("UTF-8 errors")
}

fn stable_inputs() -> (String, String) {
    (
        testdata("releases/stable/releases.json")
            .display()
            .to_string(),
        testdata("updates/stable.json").display().to_string(),
    )
}

fn fcos_graph(fixed: &str) -> CincinnatiGraph {
    let (releases, updates) = stable_inputs();
    let out = ok(&cmd(
        fixed,
        &["--releases", &releases, "--updates", &updates],
    ));
    CincinnatiGraph::from_json(out.as_bytes()).expect("Cincinnati JSON")
}

fn golden(name: &str) -> CincinnatiGraph {
    let bytes = std::fs::read(testdata(&format!("fcos-cincinnati-golden/{name}"))).expect("golden");
    CincinnatiGraph::from_json(&bytes).expect("golden parses")
}

fn next(document: &str, booted: &str, fixed: &str) -> Value {
    let args = cmd(
        &format!("graph next --arch x86_64 {fixed}"),
        &["--document", document, "--booted", booted],
    );
    serde_json::from_str(&ok(&args)).expect("JSON answer")
}

fn edge_set(graph: &CincinnatiGraph) -> BTreeSet<(u64, u64)> {
    graph.edges.iter().copied().collect()
}

#[test]
fn graph_fcos_reproduces_fedoras_builder_and_policy_engine() {
    let ours = fcos_graph("graph fcos --basearch x86_64 --oci");
    let theirs = golden("gb_stable_x86_64_oci-true.json");
    assert_eq!(ours.nodes, theirs.nodes);
    assert_eq!(edge_set(&ours), edge_set(&theirs));

    let ours = fcos_graph("graph fcos --basearch x86_64 --wariness 1 --now 1790000000");
    let theirs = golden("pe_stable_x86_64_w1.json");
    assert_eq!(ours.nodes, theirs.nodes);
    assert_eq!(edge_set(&ours), edge_set(&theirs));
}

#[test]
fn graph_fcos_filters_by_wariness_mid_rollout() {
    let count = |w: &str| {
        let fixed = format!("graph fcos --basearch x86_64 --wariness {w} --now {MID_ROLLOUT}");
        fcos_graph(&fixed).edges.len()
    };
    assert!(
        count("0.5") > count("0.51"),
        "the rollout is hidden above its progress"
    );
    assert_eq!(count("0.0"), count("0.5"));
}

fn convert(dir: &Path, oci: bool) -> String {
    let (releases, updates) = stable_inputs();
    let name = if oci {
        "stable-oci.json"
    } else {
        "stable-ostree.json"
    };
    let output = dir.join(name).display().to_string();
    let aliases = testdata("real-fixtures/fcos-cincinnati_bootimages_digests.json");
    let aliases = aliases.display().to_string();
    let fixed =
        format!("graph convert-fcos --repository {REPOSITORY} --now 1784000000 --expires-in 1000d");
    let mut args = cmd(
        &fixed,
        &[
            "--releases",
            &releases,
            "--updates",
            &updates,
            "--output",
            &output,
        ],
    );
    if oci {
        args.extend(cmd("--oci --aliases", &[&aliases]));
    }
    ok(&args);
    output
}

/// For every node: the target `graph next` picks on the converted document is
/// the one a client picks from `graph fcos` output for the same wariness and time.
#[test]
fn convert_then_next_agrees_with_graph_fcos() {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = Timestamp::from_second(MID_ROLLOUT.parse().expect("number")).expect("time");
    for oci in [true, false] {
        let document_path = convert(dir.path(), oci);
        let document = GraphDocument::from_json(&std::fs::read(&document_path).expect("written"))
            .expect("valid document")
            .document;
        assert_eq!(document.releases.len(), 179);
        for wariness in ["0.3", "0.7"] {
            let oci_flag = if oci { "--oci" } else { "" };
            let served = fcos_graph(&format!(
                "graph fcos --basearch x86_64 --wariness {wariness} --now {MID_ROLLOUT} {oci_flag}"
            ));
            let graph = UpdateGraph::from_cincinnati(&served).expect("graph");
            // Every 7th node keeps the test quick while covering all barrier windows.
            for node in graph.nodes().iter().step_by(7).chain(graph.nodes().last()) {
                let booted = if oci {
                    node.id.as_str()
                } else {
                    node.payload.as_str()
                };
                let fixed = format!("--wariness {wariness} --now {MID_ROLLOUT}");
                let answer = next(&document_path, booted, &fixed);
                // The served graph is already filtered for this wariness.
                let query = Query {
                    booted,
                    wariness: 0.0,
                    now,
                    deny: &[],
                    halted: &[],
                    allow_downgrade: false,
                };
                let expected = graph.decide(&query).target;
                assert_eq!(
                    answer["target"]["version"].as_str(),
                    expected.as_ref().map(|t| t.version.as_str()),
                    "oci={oci} w={wariness} booted {}",
                    node.version
                );
                if let Some(t) = expected {
                    assert_eq!(answer["target"]["digest"].as_str(), Some(t.digest.as_str()));
                }
            }
        }
    }
}

#[test]
fn graph_next_prints_target_and_reason() {
    let doc = example().display().to_string();
    let unknown = format!("sha256:{}", "f".repeat(64));
    let answer = next(&doc, &unknown, "--now 2025-11-11T16:00:00Z");
    assert!(answer["target"].is_null());
    let reason = answer["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("booted digest not in the graph"),
        "{reason}"
    );

    let document = GraphDocument::from_json(&std::fs::read(example()).expect("read"))
        .expect("parses")
        .document;
    let digest = |version: &str| {
        let (_, release) = document.release(version).expect("release");
        release.architectures["x86_64"]
            .digest
            .clone()
            .expect("digest")
    };
    let booted = digest("42.20250929.0");
    let newest = digest("43.20251110.0");
    let answer = next(&doc, &booted, "--wariness 0.5 --now 2025-11-11T16:00:00Z");
    assert_eq!(answer["target"]["version"], "43.20251110.0");
    assert_eq!(answer["target"]["digest"], newest.as_str());
    assert_eq!(answer["booted"], "42.20250929.0");
    // Denying it (a rollback) falls back to the older rollout.
    let fixed = format!("--wariness 0.5 --now 2025-11-11T16:00:00Z --deny {newest}");
    let answer = next(&doc, &booted, &fixed);
    assert_eq!(answer["target"]["version"], "43.20251027.0");
    assert!(answer["next_change"].is_string());
}

#[test]
fn graph_show_has_three_formats() {
    let doc = example().display().to_string();
    let show = |fixed: &str| {
        ok(&cmd(
            &format!("graph show --now 2025-11-11T16:00:00Z {fixed}"),
            &["--document", &doc],
        ))
    };
    let text = show("--wariness 0.6");
    for expected in [
        "stream stable of registry.example.org/acme/os",
        "barrier (https://example.org/docs/barrier-signing-keys)",
        "dead-end (https://example.org/issues/17",
        "rollout 55.0%",
        "hidden from wariness 0.6",
        "  43.20251027.0 [98187510f36a] <- 1 source: 42.20250929.0\n",
        "\nnot a target for any host: 42.20250915.0 (no rollout or barrier), 42.20251013.0 (dead-end)\n",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    let text = show("--arch x86_64");
    assert!(
        text.contains(
            "  43.20251110.0 [487d59a14012] <- 2 sources: 42.20250929.0, 43.20251027.0\n"
        ),
        "{text}"
    );

    let summary: Value = serde_json::from_str(&show("--format json --arch x86_64")).expect("JSON");
    assert_eq!(summary["releases"].as_array().map(Vec::len), Some(6));
    assert_eq!(summary["graphs"].as_array().map(Vec::len), Some(1));
    let progress = summary["releases"][5]["rollout"]["progress"]
        .as_f64()
        .expect("progress");
    assert!((progress - 0.55).abs() < 1e-9, "{progress}");
    assert_eq!(summary["expired"], false);
}

#[test]
fn graph_show_dot_renders_with_graphviz() {
    use std::io::Write;
    use std::process::Stdio;
    let doc = example().display().to_string();
    let fixed = "graph show --format dot --wariness 1 --now 2025-11-11T16:00:00Z";
    let dot = ok(&cmd(fixed, &["--document", &doc]));
    assert!(dot.starts_with("digraph cairn {"));
    assert!(
        dot.contains("style=dotted"),
        "hidden edges are dotted:\n{dot}"
    );
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("Graphviz `dot` is needed for this test (apt-get install -y graphviz): {e}")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dot.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("dot runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dot rejected the output: {stderr}");
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("<svg") && svg.contains("43.20251110.0"));
}

#[test]
fn errors_are_one_line_and_name_file_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let assert_one_line = |err: &str, needles: &[&str]| {
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("cairn: error: "), "{err}");
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} missing from {err}");
        }
    };

    let mut value: Value =
        serde_json::from_slice(&std::fs::read(example()).expect("read")).expect("JSON");
    value["releases"][5]["rollout"]["start_percentage"] = Value::from(1.5);
    let bad = write("bad.json", &value.to_string());
    let err = failure(&cmd("graph show", &["--document", &bad]));
    assert_one_line(&err, &[&bad, "rollout.start_percentage", "43.20251110.0"]);

    let garbage = write("garbage.json", "{\"releases\": [");
    let err = failure(&cmd(
        "graph next --arch x86_64 --booted x",
        &["--document", &garbage],
    ));
    assert_one_line(&err, &[&garbage, "not valid JSON"]);

    let (releases, _) = stable_inputs();
    let updates = write(
        "updates.json",
        r#"{"stream":"stable","releases":[{"version":"1","metadata":{"rollout":{"start_percentage":"lots"}}}]}"#,
    );
    let err = failure(&cmd(
        "graph fcos --basearch x86_64",
        &["--releases", &releases, "--updates", &updates],
    ));
    assert_one_line(
        &err,
        &[&updates, "releases[0].metadata.rollout.start_percentage"],
    );

    let doc = example().display().to_string();
    let err = failure(&cmd("graph show --document /nonexistent/doc.json", &[]));
    assert_one_line(&err, &["/nonexistent/doc.json"]);
    let err = failure(&cmd("graph show --wariness high", &["--document", &doc]));
    assert_one_line(&err, &["--wariness"]);
    let err = failure(&cmd("graph show --arch riscv64", &["--document", &doc]));
    assert_one_line(&err, &["riscv64", "x86_64"]);
}

#[test]
fn cairn_serve_serves_the_shipped_fedora_data() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/server-fcos.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "serve",
            "--config",
            &config.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cairn serve starts");
    let get = |path: &str| -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        Some((status, text))
    };
    let mut ready = false;
    for _ in 0..100 {
        if get("/readyz").is_some_and(|(status, _)| status == 200) {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let graph = get("/v1/graph?basearch=x86_64&stream=stable&oci=true");
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "cairn serve became ready");
    let (status, text) = graph.expect("answer");
    assert_eq!(status, 200);
    assert!(text.contains("org.fedoraproject.coreos.releases.age_index"));

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("server.toml");
    std::fs::write(&bad, "lisen = \"127.0.0.1:1\"\n").expect("write");
    let err = failure(&cmd("serve --config", &[&bad.display().to_string()]));
    assert!(
        err.contains("server.toml") && err.contains("lisen"),
        "{err}"
    );
}

#[test]
fn config_check_names_the_file_and_key_and_recovers() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("etc/cairn/config.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("10-site.toml"),
        "[identity]\nrollout_wariness = 7\n",
    )
    .expect("write");
    let root_arg = root.path().display().to_string();
    let err = failure(&cmd("config check --root", &[&root_arg]));
    assert!(
        err.contains("10-site.toml") && err.contains("identity.rollout_wariness"),
        "{err}"
    );
    std::fs::write(
        dir.join("10-site.toml"),
        "[identity]\nrollout_wariness = 0.7\n",
    )
    .expect("write");
    let out = ok(&cmd("config check --root", &[&root_arg]));
    assert!(
        out.contains("wariness:   0.7  (") && out.contains("10-site.toml)"),
        "{out}"
    );
}

#[test]
fn the_shipped_configuration_fragments_are_valid() {
    let root = tempfile::tempdir().expect("temp dir");
    let usr = root.path().join("usr/lib/cairn/config.d");
    let etc = root.path().join("etc/cairn/config.d");
    std::fs::create_dir_all(&usr).expect("mkdir");
    std::fs::create_dir_all(&etc).expect("mkdir");
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/config.d");
    for entry in std::fs::read_dir(&dist).expect("dist/config.d") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        match name.strip_suffix(".example") {
            Some(live) => std::fs::copy(&path, etc.join(live)).expect("copy"),
            None => std::fs::copy(&path, usr.join(&name)).expect("copy"),
        };
    }
    // The example names the key where a host keeps it; `config check` reads
    // it under --root, so a key is made in that place.
    let keys = root.path().join("etc/cairn/keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    ok(&cmd(
        "document keygen --output",
        &[&keys.join("release-team").display().to_string()],
    ));
    let root_arg = root.path().display().to_string();
    let out = ok(&cmd("config check --root", &[&root_arg]));
    assert!(out.contains("periodic+fleet_lock"), "{out}");
}

#[test]
fn simulate_plots_fedoras_stable_stream_with_a_rollout_moved_into_the_present() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let (releases, updates) = (
        testdata("releases/stable/releases.json")
            .display()
            .to_string(),
        testdata("updates/stable.json").display().to_string(),
    );
    ok(&cmd(
        "graph convert-fcos --oci --repository quay.io/fedora/fedora-coreos --releases",
        &[
            &releases,
            "--updates",
            &updates,
            "--output",
            &d("stable.json"),
        ],
    ));
    // The release team's next step: the newest release over 2 days, from 12 h ago.
    std::fs::copy(testdata("updates/stable.json"), d("updates.json")).expect("copy");
    let started = (Timestamp::now() - jiff::SignedDuration::from_hours(12)).to_string();
    ok(&cmd(
        "policy rollout start 44.20260707.3.1 --over 2d --policy",
        &[&d("updates.json"), "--at", &started],
    ));
    let out = ok(&cmd(
        "simulate --nodes 20000 --days 3 --booted 43.20260119.3.1 --document",
        &[
            &d("stable.json"),
            "--policy",
            &d("updates.json"),
            "--out",
            &d("plot.svg"),
        ],
    ));
    // Progress is 25% now: a quarter of the fleet goes at once, the rest over
    // the next 36 hours; 95% is reached at 12 h + 95% of 48 h - 12 h = about 33.6 h.
    assert!(out.contains("20000 nodes"), "{out}");
    assert!(
        out.contains("95% on 44.20260707.3.1 after 1 d 9 h"),
        "{out}"
    );
    assert!(out.contains("wariness 0.00-0.25: last move after"), "{out}");
    assert!(
        out.contains("at the end: 44.20260707.3.1 ")
            && out.contains("windows: none, nodes reboot at any time\n"),
        "{out}"
    );
    let svg = std::fs::read_to_string(d("plot.svg")).expect("plot");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for label in [
        "43.20260217.3.1 (barrier)",
        "43.20260413.3.2 (barrier)",
        "44.20260707.3.1 rollout end",
    ] {
        assert!(svg.contains(label), "{label} in the plot");
    }
    // A fleet of canaries from a wariness file: all in the first quartile,
    // all through at once (the rollout is at 25%).
    std::fs::write(d("wariness.txt"), "0.1\n0.2\n\n0.05\n").expect("write");
    let out = ok(&cmd(
        "simulate --nodes 300 --days 1 --booted 44.20260621.3.1 --wariness-dist",
        &[
            &d("wariness.txt"),
            "--document",
            &d("stable.json"),
            "--policy",
            &d("updates.json"),
        ],
    ));
    assert!(out.contains("95% on 44.20260707.3.1 after"), "{out}");
    assert!(out.contains("wariness 0.25-0.50: no node moved"), "{out}");
    std::fs::write(d("bad.txt"), "0.1\nlots\n").expect("write");
    let err = failure(&cmd(
        "simulate --wariness-dist",
        &[&d("bad.txt"), "--document", &d("stable.json")],
    ));
    assert!(err.contains("bad.txt:2") && err.contains("lots"), "{err}");
    let err = failure(&cmd(
        "simulate --strategy periodic --document",
        &[&d("stable.json")],
    ));
    assert!(err.contains("--window"), "{err}");
    let err = failure(&cmd(
        "simulate --window",
        &["Funday 02:00 60", "--document", &d("stable.json")],
    ));
    assert!(err.contains("Funday"), "{err}");
    // The summary names the windows and their time zone.
    let out = ok(&cmd(
        "simulate --nodes 50 --days 1 --time-zone Europe/Berlin --window",
        &["Sat,Sun 02:00 120", "--document", &d("stable.json")],
    ));
    assert!(
        out.contains("windows: Sat,Sun 02:00 120 (time zone Europe/Berlin)\n"),
        "{out}"
    );
}

#[test]
fn the_demo_runs_and_leaves_a_plot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = dir.path().join("demo");
    let started = std::time::Instant::now();
    let out = ok(&cmd(
        "demo --nodes 2000 --dir",
        &[&demo.display().to_string()],
    ));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    for expected in [
        "staged 1.1",
        "dead-end: 1.2: kernel regression on some NICs",
        "rollout of 1.4 at 25%, this node's wariness is 0.9",
        "-> now on 1.4 after 2 reboot(s)",
        "2000 nodes",
        "Plot: ",
        "6. Suppose 1.4 fails to boot on 30% of the hosts that take it.",
        "guard: halted 1.4 after ",
        "Guard plot: ",
    ] {
        assert!(out.contains(expected), "{expected} in {out}");
    }
    let svg = std::fs::read_to_string(demo.join("rollout.svg")).expect("plot");
    assert!(svg.starts_with("<svg") && svg.contains("1.1 (barrier)"));
    // The guard halts 1.4 while the quarter of the fleet its rollout has
    // reached is still taking it; without it everybody takes it in 3 days.
    let took = line_starting(&out, "   1.4 fails to boot on 30.0% of hosts: ");
    let with = number_before(took, "hosts took it with the guard");
    assert_eq!(number_before(took, "without"), 2000, "{out}");
    assert!(with > 0 && with < 2000 * 35 / 100, "{out}");
    let guard = std::fs::read_to_string(demo.join("guard.svg")).expect("guard plot");
    assert!(
        guard.contains(&format!("hosts that took 1.4, with the guard: {with}"))
            && guard.contains("hosts that took 1.4, without the guard: 2000")
            && guard.contains("guard halted 1.4"),
        "the guard plot's labels"
    );
    // The command it suggests runs on the document it published.
    let suggested = out
        .lines()
        .find(|l| l.starts_with("   cairn simulate ") && l.contains("--failure"))
        .expect("a suggested simulate --failure");
    let words: Vec<&str> = suggested.split_whitespace().skip(1).collect();
    let tried = ok(&words);
    assert!(
        tried.contains("1.4 fails to boot on 30.0% of hosts"),
        "{tried}"
    );
    // The document it published verifies with the key it printed.
    let shown = ok(&cmd(
        "graph show --document",
        &[
            &format!("oci:{}:cairn-graph-stable", demo.join("repo").display()),
            "--key",
            &demo.join("demo.pub").display().to_string(),
        ],
    ));
    assert!(shown.contains("5 releases"), "{shown}");
}

const EXAMPLE_NOW: &str = "2025-11-11T16:00:00Z";

/// The example document signed with a fresh key: (document, public key).
fn signed_example(dir: &Path) -> (String, String) {
    let doc = dir.join("stable.json");
    std::fs::copy(example(), &doc).expect("copy");
    let prefix = dir.join("team").display().to_string();
    ok(&["document", "keygen", "--output", &prefix]);
    let doc = doc.display().to_string();
    ok(&["document", "sign", "--key", &format!("{prefix}.key"), &doc]);
    (doc, format!("{prefix}.pub"))
}

#[test]
fn graph_show_says_what_was_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (doc, public) = signed_example(dir.path());
    let out = cairn(&cmd("graph show --now", &[EXAMPLE_NOW, &doc]));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "{doc}: signature NOT checked (no --key)\nstream stable"
        )),
        "{stdout}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "cairn: warning: {doc}: signature not checked; give the publisher's key with --key\n"
        )
    );

    let out = cairn(&cmd(
        "graph show --now",
        &[EXAMPLE_NOW, &doc, "--key", &public],
    ));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "{doc}: signature verified with {public}\nstream stable"
        )),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn document_verify_without_a_key_fails_unless_unsigned_is_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (doc, public) = signed_example(dir.path());
    let out = cairn(&cmd("document verify --now", &[EXAMPLE_NOW, &doc]));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "cairn: error: {doc}: no --key or --root, so the signature cannot be checked; give \
             the publisher's public key with --key (or a trust root with --root), or \
             --allow-unsigned to check only stream, expiry and sequence\n"
        )
    );

    let out = ok(&cmd(
        "document verify --allow-unsigned --now",
        &[EXAMPLE_NOW, &doc],
    ));
    assert_eq!(
        out,
        format!(
            "checked {doc}: stream stable, sequence 1762790400000, 6 releases, issued \
             2025-11-10T16:00:00Z, expires 2025-11-24T16:00:00Z, signature NOT checked \
             (--allow-unsigned)\n"
        )
    );
    assert!(!out.contains("verified"), "{out}");

    let out = ok(&cmd(
        "document verify --now",
        &[EXAMPLE_NOW, &doc, "--key", &public],
    ));
    assert!(
        out.starts_with(&format!("verified {doc}: stream stable")),
        "{out}"
    );
    assert!(
        out.ends_with(&format!("signature valid ({public})\n")),
        "{out}"
    );
}

#[test]
fn documents_are_named_the_same_way_everywhere() {
    let doc = example().display().to_string();
    let positional = ok(&cmd("graph show --now", &[EXAMPLE_NOW, &doc]));
    let option = ok(&cmd("graph show --now", &[EXAMPLE_NOW, "--document", &doc]));
    assert_eq!(positional, option);
    let fixed = format!("graph next --arch x86_64 --booted 42.20250929.0 --now {EXAMPLE_NOW}");
    assert_eq!(
        ok(&cmd(&fixed, &[&doc])),
        ok(&cmd(&fixed, &["--document", &doc]))
    );
    let out = ok(&cmd(
        "simulate --nodes 50 --days 1 --start",
        &[EXAMPLE_NOW, &doc],
    ));
    assert!(out.contains("50 nodes"), "{out}");

    let err = failure(&cmd("graph show", &[&doc, "--document", &doc]));
    assert!(err.contains("cannot be used with"), "{err}");
    let err = failure(&cmd("graph show localhost:1/acme/os", &[]));
    assert_eq!(
        err,
        "cairn: error: localhost:1/acme/os: name the document's tag, for example :cairn-graph-stable\n"
    );
}

#[test]
fn booted_takes_a_version_or_a_digest() {
    let doc = example().display().to_string();
    let document = GraphDocument::from_json(&std::fs::read(example()).expect("read"))
        .expect("parses")
        .document;
    let digest = document
        .release("42.20250929.0")
        .expect("release")
        .1
        .architectures["x86_64"]
        .digest
        .clone()
        .expect("digest");
    let by_version = next(&doc, "42.20250929.0", &format!("--now {EXAMPLE_NOW}"));
    let by_digest = next(&doc, &digest, &format!("--now {EXAMPLE_NOW}"));
    assert_eq!(by_version, by_digest);
    assert_eq!(by_version["booted"], "42.20250929.0");
    assert_eq!(by_version["target"]["version"], "43.20251027.0");

    let err = failure(&cmd(
        "graph next --arch aarch64 --booted 42.20250901.0 --now",
        &[EXAMPLE_NOW, &doc],
    ));
    assert!(
        err.ends_with(
            "cairn: error: --booted 42.20250901.0: release 42.20250901.0 has no aarch64 image (it has: x86_64)\n"
        ),
        "{err}"
    );

    let simulate = |booted: &str| {
        ok(&cmd(
            "simulate --nodes 50 --days 2 --start",
            &[EXAMPLE_NOW, &doc, "--booted", booted],
        ))
    };
    assert_eq!(simulate("42.20250929.0"), simulate(&digest));
    let err = failure(&cmd("simulate --booted 44.4 --start", &[EXAMPLE_NOW, &doc]));
    assert!(
        err.ends_with(
            "cairn: error: --booted 44.4: no x86_64 release has this version or digest\n"
        ),
        "{err}"
    );
}

/// A counter's value in `cairn serve`'s OpenMetrics text (0 when absent).
fn counter(metrics: &str, sample: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `cairn serve` on port 0 logs the port it bound (the testkit reads it from
/// the log); a new document sequence is logged once, however many refreshes
/// follow; and a checksum-graph request to an image-only architecture is
/// answered with an empty graph and counted.
#[test]
fn cairn_serve_logs_its_port_and_each_new_sequence_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Unsigned, so its expiry can move past today.
    let text = std::fs::read_to_string(example())
        .expect("example")
        .replace("2025-11-24T16:00:00Z", "2099-01-01T00:00:00Z");
    let document = dir.path().join("stable.json");
    std::fs::write(&document, &text).expect("write");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "refresh_interval_seconds = 1\n[[stream]]\nname = \"stable\"\n\
             document = {{ location = \"{}\", allow_unsigned = true }}\n",
            document.display()
        ),
    )
    .expect("write");
    let server = cairn_testkit::GraphServer::with_config(env!("CARGO_BIN_EXE_cairn"), &config);
    let port = server
        .listen
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok());
    assert!(port.is_some_and(|p| p != 0), "bound {}", server.listen);

    // aarch64 has images only: without oci=true its graph is empty, and counted.
    let empty = "cairn_graph_empty_checksum_answers_total{stream=\"stable\"}";
    let (status, body) = server.get("/v1/graph?basearch=aarch64&stream=stable");
    assert_eq!(status, 200);
    let graph: Value = serde_json::from_str(&body).expect("graph JSON");
    assert_eq!(graph["nodes"], serde_json::json!([]), "{body}");
    assert_eq!(counter(&server.get("/metrics").1, empty), 1);
    let (_, body) = server.get("/v1/graph?basearch=aarch64&stream=stable&oci=true");
    assert!(body.contains("43.20251110.0"), "{body}");
    assert_eq!(counter(&server.get("/metrics").1, empty), 1);

    // A new sequence, replaced as publishers do.
    let next = text.replace("1762790400000", "1762790400001");
    std::fs::write(dir.path().join("next.json"), next).expect("write");
    std::fs::rename(dir.path().join("next.json"), &document).expect("rename");
    let log_path = config.with_extension("log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !log().contains("serving a new document sequence") {
        assert!(
            std::time::Instant::now() < deadline,
            "no update logged:\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Two more refreshes that find nothing new.
    let unchanged = "cairn_source_refreshes_total{stream=\"stable\",result=\"unchanged\"}";
    let before = counter(&server.get("/metrics").1, unchanged);
    while counter(&server.get("/metrics").1, unchanged) < before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no refreshes:\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = log();
    let updates: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("serving a new document sequence"))
        .collect();
    assert_eq!(updates.len(), 1, "{log}");
    assert!(
        updates[0].contains("sequence=1762790400001 previous=1762790400000"),
        "{log}"
    );
    assert_eq!(
        log.matches("serving the document's sequence").count(),
        1,
        "{log}"
    );
}

/// A configuration mistake is shown as the TOML parser renders it: the
/// file, then the line, a caret under the mistake, and what was expected.
#[test]
fn cairn_serve_shows_a_config_mistake_on_several_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\ntimeout_seconds = 1.5\n").expect("write");
    let output = cairn(&["serve", "--config", &config.display().to_string()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr,
        format!(
            "cairn: error: {}: TOML parse error at line 2, column 19\n  |\n2 | timeout_seconds = 1.5\n  |                   ^^^\ninvalid type: floating point `1.5`, expected a whole number, 0 or more\n",
            config.display()
        )
    );
}

/// A line of `out` that starts with `prefix`.
fn line_starting<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in {out}"))
}

/// The number just before `word` in `line`.
fn number_before(line: &str, word: &str) -> u64 {
    let head = &line[..line
        .find(word)
        .unwrap_or_else(|| panic!("{word} in {line}"))];
    head.split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number before {word} in {line}"))
}

#[test]
fn simulate_a_failing_release_with_and_without_the_rollout_guard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let doc = example().display().to_string();
    let plot = dir.path().join("plot.svg");
    // 43.20251110.0 is at 55% of its rollout: about 5,500 of the 10,000
    // hosts on the barrier take it within their first 5-minute check.
    let out = ok(&cmd(
        "simulate --nodes 10000 --days 3 --booted 42.20250929.0 --failure 43.20251110.0=0.3 --guard min_failures=3,max_share=0.05 --start",
        &[EXAMPLE_NOW, &doc, "--out", &plot.display().to_string()],
    ));
    let took = line_starting(&out, "43.20251110.0 fails to boot on 30.0% of hosts: ");
    let with = number_before(took, "hosts took it with the guard");
    let without = number_before(took, "without");
    // Without the guard every host takes it in the end; with it, only those
    // that checked in the minutes before the failures came in.
    assert_eq!(without, 10_000, "{out}");
    assert!((5_000..=6_000).contains(&with), "{out}");
    let halted = line_starting(&out, "guard: halted 43.20251110.0 after ");
    let failures = number_before(halted, "failures of");
    let rebooting = number_before(halted, "rebooting reports");
    assert_eq!(rebooting, with, "{out}");
    assert!(failures >= 3 && failures * 20 > rebooting, "{out}");
    // Failure reports come 2 reboots (4 min) after `rebooting`: the share
    // crosses 5% a few readings in, not at the first.
    assert!(
        halted.contains("after 5 min (2025-11-11T16:05:00Z)"),
        "{out}"
    );
    // The release hosts took instead was never near the thresholds.
    assert!(
        out.contains("guard: 43.20251027.0 not tripped: 0 failures of "),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "failures plot: {}\n",
            dir.path().join("plot-failures.svg").display()
        )),
        "{out}"
    );
    let svg = std::fs::read_to_string(dir.path().join("plot-failures.svg")).expect("plot");
    for label in [
        format!("hosts that took 43.20251110.0, with the guard: {with}"),
        "hosts that took 43.20251110.0, without the guard: 10000".to_string(),
        "guard halted 43.20251110.0".to_string(),
    ] {
        assert!(svg.contains(&label), "{label} in the plot");
    }
    assert!(
        std::fs::read_to_string(&plot)
            .expect("plot")
            .contains("43.20251110.0")
    );

    // No failing release: the guard trips on nothing.
    let out = ok(&cmd(
        "simulate --nodes 2000 --days 3 --booted 42.20250929.0 --guard min_failures=3 --start",
        &[EXAMPLE_NOW, &doc],
    ));
    assert!(!out.contains("guard: halted"), "{out}");
    for version in ["43.20251027.0", "43.20251110.0"] {
        let line = line_starting(
            &out,
            &format!("guard: {version} not tripped: 0 failures of "),
        );
        assert!(number_before(line, "rebooting reports") > 0, "{out}");
    }

    for (args, expected) in [
        (
            "--failure 9.9=0.3",
            "cairn: error: --failure 9.9=0.3: no x86_64 release has the version or digest 9.9\n",
        ),
        (
            "--failure 43.20251110.0=1.5",
            "cairn: error: --failure 43.20251110.0=1.5: the share must be a number from 0 to 1\n",
        ),
        (
            "--guard min_failures=many",
            "cairn: error: --guard min_failures=many: expected a whole number, at least 1\n",
        ),
        (
            "--guard max_share=0.05,max_missing=some",
            "cairn: error: --guard max_missing=some: expected a whole number: invalid digit found in string\n",
        ),
        (
            "--guard max_failures=3",
            "cairn: error: --guard max_failures: unknown key; the keys are min_failures, max_share and max_missing\n",
        ),
    ] {
        let err = failure(&cmd(
            &format!("simulate --nodes 10 --days 1 {args} --start"),
            &[EXAMPLE_NOW, &doc],
        ));
        assert!(err.ends_with(expected), "{args}: {err}");
    }
}
