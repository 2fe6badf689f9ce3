//! The `cairn` command end to end: real files in, real output and exit codes out.

use cairn_graph::cincinnati::CincinnatiGraph;
use cairn_graph::{GraphDocument, Query, UpdateGraph};
use jiff::Timestamp;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("cairn runs")
}

fn ok(args: &[&str]) -> String {
    let out = cairn(args);
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn failure(args: &[&str]) -> String {
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

fn edge_set(graph: &CincinnatiGraph) -> BTreeSet<(u64, u64)> {
    graph.edges.iter().copied().collect()
}

#[test]
fn graph_fcos_reproduces_fedoras_builder_and_policy_engine() {
    let (releases, updates) = stable_inputs();
    let out = ok(&[
        "graph",
        "fcos",
        "--releases",
        &releases,
        "--updates",
        &updates,
        "--basearch",
        "x86_64",
        "--oci",
    ]);
    let ours = CincinnatiGraph::from_json(out.as_bytes()).expect("Cincinnati JSON");
    let golden = CincinnatiGraph::from_json(
        &std::fs::read(testdata(
            "fcos-cincinnati-golden/gb_stable_x86_64_oci-true.json",
        ))
        .expect("golden"),
    )
    .expect("golden parses");
    assert_eq!(ours.nodes, golden.nodes);
    assert_eq!(edge_set(&ours), edge_set(&golden));

    let out = ok(&[
        "graph",
        "fcos",
        "--releases",
        &releases,
        "--updates",
        &updates,
        "--basearch",
        "x86_64",
        "--wariness",
        "1",
        "--now",
        "1790000000",
    ]);
    let ours = CincinnatiGraph::from_json(out.as_bytes()).expect("Cincinnati JSON");
    let golden = CincinnatiGraph::from_json(
        &std::fs::read(testdata("fcos-cincinnati-golden/pe_stable_x86_64_w1.json"))
            .expect("golden"),
    )
    .expect("golden parses");
    assert_eq!(ours.nodes, golden.nodes);
    assert_eq!(edge_set(&ours), edge_set(&golden));
}

#[test]
fn graph_fcos_filters_by_wariness_mid_rollout() {
    let (releases, updates) = stable_inputs();
    let count = |w: &str| {
        let out = ok(&[
            "graph",
            "fcos",
            "--releases",
            &releases,
            "--updates",
            &updates,
            "--basearch",
            "x86_64",
            "--wariness",
            w,
            "--now",
            MID_ROLLOUT,
        ]);
        CincinnatiGraph::from_json(out.as_bytes())
            .expect("JSON")
            .edges
            .len()
    };
    assert!(
        count("0.5") > count("0.51"),
        "the rollout is hidden above its progress"
    );
    assert_eq!(count("0.0"), count("0.5"));
}

fn convert(dir: &Path, oci: bool) -> PathBuf {
    let (releases, updates) = stable_inputs();
    let output = dir.join(if oci {
        "stable-oci.json"
    } else {
        "stable-ostree.json"
    });
    let aliases = testdata("real-fixtures/fcos-cincinnati_bootimages_digests.json");
    let mut args = vec![
        "graph",
        "convert-fcos",
        "--releases",
        &releases,
        "--updates",
        &updates,
        "--repository",
        REPOSITORY,
        "--now",
        "1784000000",
        "--expires-in",
        "1000d",
    ];
    let aliases = aliases.display().to_string();
    if oci {
        args.extend(["--oci", "--aliases", &aliases]);
    }
    let out_path = output.display().to_string();
    args.extend(["--output", &out_path]);
    ok(&args);
    output
}

/// For every node: the target `graph next` picks on the converted document is
/// the one a client picks from `graph fcos` output for the same wariness and time.
#[test]
fn convert_then_next_agrees_with_graph_fcos() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (releases, updates) = stable_inputs();
    for oci in [true, false] {
        let document_path = convert(dir.path(), oci);
        let document = GraphDocument::from_json(&std::fs::read(&document_path).expect("written"))
            .expect("valid document")
            .document;
        assert_eq!(document.releases.len(), 179);
        for wariness in ["0.3", "0.7"] {
            let mut args = vec![
                "graph",
                "fcos",
                "--releases",
                &releases,
                "--updates",
                &updates,
                "--basearch",
                "x86_64",
                "--wariness",
                wariness,
                "--now",
                MID_ROLLOUT,
            ];
            if oci {
                args.push("--oci");
            }
            let served = CincinnatiGraph::from_json(ok(&args).as_bytes()).expect("JSON");
            let graph = UpdateGraph::from_cincinnati(&served).expect("graph");
            // Every 7th node keeps the test quick while covering all barrier windows.
            for node in graph.nodes().iter().step_by(7).chain(graph.nodes().last()) {
                let booted = if oci {
                    node.id.clone()
                } else {
                    node.payload.clone()
                };
                let out = ok(&[
                    "graph",
                    "next",
                    "--document",
                    &document_path.display().to_string(),
                    "--arch",
                    "x86_64",
                    "--booted",
                    &booted,
                    "--wariness",
                    wariness,
                    "--now",
                    MID_ROLLOUT,
                ]);
                let answer: Value = serde_json::from_str(&out).expect("JSON answer");
                let query = Query {
                    booted: &booted,
                    // The served graph is already filtered for this wariness.
                    wariness: 0.0,
                    now: Timestamp::from_second(MID_ROLLOUT.parse().expect("n")).expect("t"),
                    deny: &[],
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
    let doc = example();
    let doc = doc.display().to_string();
    let booted = "sha256:f279c7c604ff1a5e8c34a8ee2a1b3e3a1ac1f5fcd9a94a8d4aa89e2b3f8a8a3b";
    let out = ok(&[
        "graph",
        "next",
        "--document",
        &doc,
        "--arch",
        "x86_64",
        "--booted",
        booted,
        "--now",
        "2025-11-11T16:00:00Z",
    ]);
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert!(answer["target"].is_null());
    assert!(
        answer["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("booted digest not in the graph"))
    );

    let document = GraphDocument::from_json(&std::fs::read(example()).expect("read"))
        .expect("parses")
        .document;
    let (_, release) = document.release("42.20250929.0").expect("release");
    let booted = release.architectures["x86_64"]
        .digest
        .clone()
        .expect("digest");
    let (_, newest) = document.release("43.20251110.0").expect("release");
    let newest_digest = newest.architectures["x86_64"]
        .digest
        .clone()
        .expect("digest");
    let out = ok(&[
        "graph",
        "next",
        "--document",
        &doc,
        "--arch",
        "x86_64",
        "--booted",
        &booted,
        "--wariness",
        "0.5",
        "--now",
        "2025-11-11T16:00:00Z",
    ]);
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["target"]["version"], "43.20251110.0");
    assert_eq!(answer["target"]["digest"], newest_digest.as_str());
    // Denying it (a rollback) falls back to the older rollout.
    let out = ok(&[
        "graph",
        "next",
        "--document",
        &doc,
        "--arch",
        "x86_64",
        "--booted",
        &booted,
        "--wariness",
        "0.5",
        "--now",
        "2025-11-11T16:00:00Z",
        "--deny",
        &newest_digest,
    ]);
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["target"]["version"], "43.20251027.0");
    assert!(answer["next_change"].is_string());
}

#[test]
fn graph_show_has_three_formats() {
    let doc = example().display().to_string();
    let text = ok(&[
        "graph",
        "show",
        "--document",
        &doc,
        "--now",
        "2025-11-11T16:00:00Z",
        "--wariness",
        "0.6",
    ]);
    assert!(
        text.contains("stream stable of registry.example.org/acme/os"),
        "{text}"
    );
    assert!(
        text.contains("barrier (https://example.org/docs/barrier-signing-keys)"),
        "{text}"
    );
    assert!(
        text.contains("dead-end (https://example.org/issues/17"),
        "{text}"
    );
    assert!(text.contains("rollout 55.0%"), "{text}");
    assert!(text.contains("hidden from wariness 0.6"), "{text}");

    let json = ok(&[
        "graph",
        "show",
        "--document",
        &doc,
        "--format",
        "json",
        "--arch",
        "x86_64",
        "--now",
        "2025-11-11T16:00:00Z",
    ]);
    let summary: Value = serde_json::from_str(&json).expect("JSON");
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
    let doc = example().display().to_string();
    let dot = ok(&[
        "graph",
        "show",
        "--document",
        &doc,
        "--format",
        "dot",
        "--wariness",
        "1",
        "--now",
        "2025-11-11T16:00:00Z",
    ]);
    assert!(dot.starts_with("digraph cairn {"));
    assert!(
        dot.contains("style=dotted"),
        "hidden edges are dotted:\n{dot}"
    );
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("Graphviz `dot` is needed for this test (apt-get install -y graphviz): {e}")
        });
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dot.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("dot runs");
    assert!(
        out.status.success(),
        "dot rejected the output: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("<svg") && svg.contains("43.20251110.0"));
}

#[test]
fn errors_are_one_line_and_name_file_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.json");
    let mut value: Value =
        serde_json::from_slice(&std::fs::read(example()).expect("read")).expect("JSON");
    value["releases"][5]["rollout"]["start_percentage"] = Value::from(1.5);
    std::fs::write(&bad, value.to_string()).expect("write");
    let bad = bad.display().to_string();
    let err = failure(&["graph", "show", "--document", &bad]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&bad), "{err}");
    assert!(
        err.contains("rollout.start_percentage") && err.contains("43.20251110.0"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"releases\": [").expect("write");
    let garbage = garbage.display().to_string();
    let err = failure(&[
        "graph",
        "next",
        "--document",
        &garbage,
        "--arch",
        "x86_64",
        "--booted",
        "x",
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&garbage) && err.contains("not valid JSON"),
        "{err}"
    );

    let (releases, _) = stable_inputs();
    let updates = dir.path().join("updates.json");
    std::fs::write(&updates, r#"{"stream":"stable","releases":[{"version":"1","metadata":{"rollout":{"start_percentage":"lots"}}}]}"#).expect("write");
    let updates = updates.display().to_string();
    let err = failure(&[
        "graph",
        "fcos",
        "--releases",
        &releases,
        "--updates",
        &updates,
        "--basearch",
        "x86_64",
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&updates) && err.contains("releases[0].metadata.rollout.start_percentage"),
        "{err}"
    );

    let err = failure(&["graph", "show", "--document", "/nonexistent/doc.json"]);
    assert!(err.contains("/nonexistent/doc.json"), "{err}");
    let err = failure(&[
        "graph",
        "show",
        "--document",
        &example().display().to_string(),
        "--wariness",
        "high",
    ]);
    assert!(err.contains("--wariness"), "{err}");
    let err = failure(&[
        "graph",
        "show",
        "--document",
        &example().display().to_string(),
        "--arch",
        "riscv64",
    ]);
    assert!(err.contains("riscv64") && err.contains("x86_64"), "{err}");
}
