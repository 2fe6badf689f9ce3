//! Fedora CoreOS compatibility: Cairn's graphs against the ones Fedora's own
//! graph builder and policy engine produced from the same inputs.

use cairn_graph::cincinnati::{AGE_INDEX, CincinnatiGraph};
use cairn_graph::fcos::{self, ConvertOptions, ReleaseIndex, Updates};
use cairn_graph::{GraphDocument, Query, Scheme, UpdateGraph};
use jiff::Timestamp;
use std::collections::BTreeSet;
use std::path::PathBuf;

const STREAMS: [&str; 3] = ["stable", "testing", "next"];
const ARCHES: [&str; 4] = ["x86_64", "aarch64", "s390x", "ppc64le"];
const REPOSITORY: &str = "quay.io/fedora/fedora-coreos";

fn data(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fcos")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn inputs(stream: &str) -> (ReleaseIndex, Updates) {
    let index = ReleaseIndex::from_json(&data(&format!("releases/{stream}/releases.json")))
        .expect("release index parses");
    let updates =
        Updates::from_json(&data(&format!("updates/{stream}.json"))).expect("updates parse");
    (index, updates)
}

fn scheme(oci: bool) -> Scheme {
    if oci { Scheme::Oci } else { Scheme::Checksum }
}

fn golden(name: &str) -> CincinnatiGraph {
    CincinnatiGraph::from_json(&data(&format!("fcos-cincinnati-golden/{name}")))
        .expect("golden graph parses")
}

/// Same nodes in the same order with the same payload and metadata, and the same edge set.
fn assert_same_graph(ours: &CincinnatiGraph, theirs: &CincinnatiGraph, label: &str) {
    assert_eq!(ours.nodes.len(), theirs.nodes.len(), "{label}: node count");
    for (i, (a, b)) in ours.nodes.iter().zip(&theirs.nodes).enumerate() {
        assert_eq!(a, b, "{label}: node {i}");
    }
    let edges = |g: &CincinnatiGraph| g.edges.iter().copied().collect::<BTreeSet<_>>();
    assert_eq!(edges(ours), edges(theirs), "{label}: edge set");
    assert_eq!(
        ours.edges.len(),
        edges(ours).len(),
        "{label}: no duplicate edges"
    );
}

#[test]
fn all_24_graphs_match_fedoras_graph_builder() {
    let mut checked = 0;
    for stream in STREAMS {
        let (index, updates) = inputs(stream);
        for arch in ARCHES {
            for oci in [false, true] {
                let name = format!("gb_{stream}_{arch}_oci-{oci}.json");
                let ours = fcos::build_graph(&index, &updates, arch, scheme(oci)).to_cincinnati();
                assert!(!ours.nodes.is_empty(), "{name}: empty graph");
                assert_same_graph(&ours, &golden(&name), &name);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 24);
}

#[test]
fn policy_engine_outputs_match_after_every_rollout_finished() {
    let (index, updates) = inputs("stable");
    let graph = fcos::build_graph(&index, &updates, "x86_64", Scheme::Checksum);
    // Any time after the last rollout ended reproduces the shipped outputs.
    let now = Timestamp::from_second(1_790_000_000).expect("valid time");
    for (wariness, name) in [
        (0.0, "pe_stable_x86_64_w0.json"),
        (1.0, "pe_stable_x86_64_w1.json"),
    ] {
        let ours = graph.throttled(wariness, now.as_second()).to_cincinnati();
        assert_same_graph(&ours, &golden(name), name);
    }
    // Those outputs equal the unthrottled graph, so they alone cannot show that
    // throttling works: mid-rollout, wariness 1 must see fewer edges.
    let mid = ROLLOUT_START + 1440 * 60;
    let throttled = graph.throttled(1.0, mid).edge_list().len();
    assert!(throttled < graph.edge_list().len());
    assert_eq!(
        graph.throttled(0.0, mid).edge_list().len(),
        graph.edge_list().len()
    );
}

/// The newest stable rollout: 2880 minutes from 1784728800, start value 0.
const ROLLOUT_VERSION: &str = "44.20260707.3.1";
const ROLLOUT_START: i64 = 1_784_728_800;
const ROLLOUT_END: i64 = ROLLOUT_START + 2880 * 60;

fn edges_into(graph: &UpdateGraph, version: &str) -> usize {
    let target = graph
        .nodes()
        .iter()
        .position(|n| n.version == version)
        .expect("version in graph");
    graph.edges().filter(|&(_, to)| to == target).count()
}

#[test]
fn policy_vectors_from_the_formula() {
    let (index, updates) = inputs("stable");
    let graph = fcos::build_graph(&index, &updates, "x86_64", Scheme::Checksum);
    let all = edges_into(&graph, ROLLOUT_VERSION);
    assert!(all > 0, "the rollout has in-edges before throttling");
    let half = ROLLOUT_START + 1440 * 60;
    // (now, wariness, visible)
    let vectors = [
        (ROLLOUT_START - 3600, 0.0, true), // before the start: only wariness 0 sees it
        (ROLLOUT_START - 3600, 0.000001, false),
        (ROLLOUT_START - 3600, 0.3, false),
        (ROLLOUT_START, 0.0, true), // at the start, progress = start value 0
        (ROLLOUT_START, 0.1, false),
        (half, 0.3, true), // mid-rollout, progress 0.5
        (half, 0.49, true),
        (half, 0.5, true), // equal wariness is offered (strict >)
        (half, 0.500001, false),
        (half, 0.51, false),
        (half, 0.7, false),
        (half, 1.0, false),
        (ROLLOUT_END, 1.0, true), // at the end progress is 1 (within rounding)
        (ROLLOUT_END + 1, 1.0, true), // after the end everyone
        (ROLLOUT_END + 86_400, 0.99, true),
        (half, f64::NAN, true), // NaN hides nothing, as in Fedora
    ];
    for (now, wariness, visible) in vectors {
        let seen = edges_into(&graph.throttled(wariness, now), ROLLOUT_VERSION);
        let expected = if visible { all } else { 0 };
        assert_eq!(seen, expected, "now={now} wariness={wariness}");
    }
}

#[test]
fn rollout_without_duration_stays_at_its_start_value() {
    let (index, mut updates) = inputs("stable");
    let entry = updates
        .releases
        .iter_mut()
        .find(|e| e.version == ROLLOUT_VERSION)
        .expect("rollout entry");
    let rollout = entry.metadata.rollout.as_mut().expect("rollout");
    rollout.duration_minutes = None;
    rollout.start_percentage = Some(0.25);
    let graph = fcos::build_graph(&index, &updates, "x86_64", Scheme::Checksum);
    let all = edges_into(&graph, ROLLOUT_VERSION);
    let later = ROLLOUT_START + 365 * 86_400;
    assert_eq!(
        edges_into(&graph.throttled(0.25, later), ROLLOUT_VERSION),
        all
    );
    assert_eq!(
        edges_into(&graph.throttled(0.26, later), ROLLOUT_VERSION),
        0
    );
    assert_eq!(
        edges_into(&graph.throttled(0.1, ROLLOUT_START - 1), ROLLOUT_VERSION),
        0
    );
}

fn convert(stream: &str, oci: bool) -> GraphDocument {
    let (index, updates) = inputs(stream);
    let aliases = fcos::parse_boot_image_digests(&data(
        "real-fixtures/fcos-cincinnati_bootimages_digests.json",
    ))
    .expect("alias map parses");
    let issued = Timestamp::from_second(1_780_000_000).expect("time");
    let converted = fcos::to_document(
        &index,
        &updates,
        &ConvertOptions {
            repository: REPOSITORY,
            oci,
            aliases: Some(&aliases),
            sequence: 1,
            issued,
            expires: Timestamp::from_second(1_900_000_000).expect("time"),
        },
    )
    .expect("converts");
    converted
        .document
        .validate()
        .expect("converted document is valid");
    // And it survives a JSON round trip.
    let parsed = GraphDocument::from_json(converted.document.to_json_pretty().as_bytes())
        .expect("round trip");
    assert!(parsed.ignored_fields.is_empty());
    assert_eq!(parsed.document, converted.document);
    parsed.document
}

#[test]
fn converted_documents_render_fedoras_graphs() {
    for stream in STREAMS {
        for oci in [false, true] {
            let document = convert(stream, oci);
            let (index, _) = inputs(stream);
            assert_eq!(
                document.releases.len(),
                index.releases.len(),
                "every release kept"
            );
            for arch in ARCHES {
                let name = format!("gb_{stream}_{arch}_oci-{oci}.json");
                let ours = UpdateGraph::from_document(&document, arch, scheme(oci)).to_cincinnati();
                assert_same_graph(&ours, &golden(&name), &format!("converted {name}"));
            }
        }
    }
}

#[test]
fn converted_documents_keep_age_indexes_of_source_only_releases() {
    let document = convert("stable", true);
    let graph = UpdateGraph::from_document(&document, "x86_64", Scheme::Oci);
    let first = &graph.nodes()[0];
    assert!(first.age_index > 0, "older releases had no OCI image");
    assert_eq!(
        document.releases[first.age_index as usize].version,
        first.version
    );
    assert!(document.releases[0].architectures.is_empty());
    let cin = graph.to_cincinnati();
    assert_eq!(
        cin.nodes[0].metadata[AGE_INDEX],
        first.age_index.to_string()
    );
}

#[test]
fn boot_image_aliases_find_stuck_hosts() {
    let document = convert("stable", true);
    let aliases = fcos::parse_boot_image_digests(&data(
        "real-fixtures/fcos-cincinnati_bootimages_digests.json",
    ))
    .expect("alias map parses");
    let mut found = 0;
    for (version, arches) in &aliases {
        let Some((_, release)) = document.release(version) else {
            continue;
        };
        for (arch, pair) in arches {
            let entry = &release.architectures[arch];
            assert_eq!(entry.digest.as_deref(), Some(pair.good.as_str()));
            assert_eq!(entry.aliases, vec![pair.bad.clone()]);
            let graph = UpdateGraph::from_document(&document, arch, Scheme::Oci);
            let at = graph
                .find_booted(&pair.bad)
                .expect("bad digest finds its release");
            assert_eq!(graph.nodes()[at].version, *version);
            found += 1;
        }
    }
    assert!(found > 0, "the stable stream has aliased releases");
}

/// The decision a node makes on the graph Fedora's own builder produced (the
/// golden files, read as a Zincati client reads `/v1/graph`) equals the one it
/// makes on the converted document, for every node, several wariness values and times.
#[test]
fn next_on_converted_document_matches_next_on_fedoras_own_graph() {
    let times = [
        ROLLOUT_START - 3600,
        ROLLOUT_START + 1440 * 60,
        ROLLOUT_END + 1,
    ];
    let wariness_values = [0.0, 0.2, 0.5, 0.65332, 1.0];
    let mut compared = 0;
    for stream in STREAMS {
        for oci in [false, true] {
            let document = convert(stream, oci);
            for arch in ARCHES {
                let served = golden(&format!("gb_{stream}_{arch}_oci-{oci}.json"));
                let fedora = UpdateGraph::from_cincinnati(&served).expect("golden graph reads");
                for node in fedora.nodes() {
                    for &now in &times {
                        for &wariness in &wariness_values {
                            let query = Query {
                                booted: &node.payload,
                                wariness,
                                now: Timestamp::from_second(now).expect("time"),
                                deny: &[],
                                halted: &[],
                                allow_downgrade: false,
                            };
                            let a = fedora.decide(&query);
                            let b = document.decide(arch, &query);
                            let label = format!(
                                "{stream} {arch} oci={oci} {} w={wariness} t={now}",
                                node.version
                            );
                            assert_eq!(a.target, b.target, "{label}");
                            assert_eq!(a.reason(), b.reason(), "{label}");
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(compared > 10_000, "compared {compared} decisions");
}

#[test]
fn rendering_and_parsing_rules_of_the_cincinnati_format() {
    use cairn_graph::cincinnati::{
        BARRIER_REASON, DEADEND_REASON, DURATION, ROLLOUT, START_EPOCH, START_VALUE,
    };
    let [a, b, c, one, two] = ["a", "b", "c", "1", "2"].map(|x| x.repeat(64));
    let index = ReleaseIndex::from_json(
        format!(r#"{{"releases":[
        {{"version":"1","commits":[{{"architecture":"x86_64","checksum":"{a}"}},{{"architecture":"x86_64","checksum":"{b}"}}],
         "oci-images":[{{"architecture":"x86_64","image":"r:t","digest-ref":"r@sha256:{one}"}},{{"architecture":"x86_64","image":"r:t","digest-ref":"r@sha256:{two}"}}]}},
        {{"version":"2","commits":[{{"architecture":"x86_64","checksum":"{c}"}}]}}]}}"#)
        .as_bytes(),
    )
    .expect("index");
    let updates = Updates::from_json(
        br#"{"stream":"s","releases":[
        {"version":"1","metadata":{"deadend":{"reason":""}}},
        {"version":"2","metadata":{"barrier":{"reason":""}}},
        {"version":"9","metadata":{"barrier":{"reason":"not in the index"}}}]}"#,
    )
    .expect("updates");
    // The last matching entry wins, as in Fedora's builder.
    let checksum = fcos::build_graph(&index, &updates, "x86_64", Scheme::Checksum);
    assert_eq!(checksum.nodes()[0].payload, b);
    let oci = fcos::build_graph(&index, &updates, "x86_64", Scheme::Oci);
    assert_eq!(oci.nodes()[0].payload, format!("r@sha256:{two}"));
    assert_eq!(oci.nodes().len(), 1, "release 2 has no image");
    // Empty reasons are rendered as "generic"; entries for unknown versions are ignored.
    let rendered = checksum.to_cincinnati();
    assert_eq!(rendered.nodes.len(), 2);
    assert_eq!(rendered.nodes[0].metadata[DEADEND_REASON], "generic");
    assert_eq!(rendered.nodes[1].metadata[BARRIER_REASON], "generic");
    assert!(rendered.edges.is_empty(), "a dead-end has no way out");
    // Unparsable rollout values fall back to Fedora's defaults.
    let mut served = rendered.clone();
    let meta = &mut served.nodes[1].metadata;
    meta.insert(ROLLOUT.into(), "true".into());
    meta.insert(START_EPOCH.into(), "soon".into());
    meta.insert(START_VALUE.into(), "half".into());
    meta.insert(DURATION.into(), "-5".into());
    let parsed = UpdateGraph::from_cincinnati(&served).expect("parses");
    let rollout = parsed.nodes()[1].rollout.expect("rollout");
    assert_eq!(rollout.start_epoch, Some(0));
    assert_eq!(rollout.start_percentage, Some(0.0));
    assert_eq!(rollout.duration_minutes, None);
    // Conversion says what it could not carry over.
    let options = ConvertOptions {
        repository: "r",
        oci: false,
        aliases: None,
        sequence: 1,
        issued: Timestamp::UNIX_EPOCH,
        expires: Timestamp::UNIX_EPOCH,
    };
    let converted = fcos::to_document(&index, &updates, &options).expect("converts");
    assert_eq!(converted.warnings.len(), 1, "{:?}", converted.warnings);
    assert!(converted.warnings[0].contains("updates entry for 9"));
}

#[test]
fn a_foreign_repository_is_refused_when_converting() {
    let (index, updates) = inputs("stable");
    let options = ConvertOptions {
        repository: "registry.example/other",
        oci: true,
        aliases: None,
        sequence: 1,
        issued: Timestamp::UNIX_EPOCH,
        expires: Timestamp::UNIX_EPOCH,
    };
    let err = fcos::to_document(&index, &updates, &options).expect_err("another repository");
    assert_eq!(err.kind(), "foreign_repository");
    assert!(
        err.to_string()
            .contains("quay.io/fedora/fedora-coreos@sha256:"),
        "{err}"
    );
}

#[test]
fn legacy_updates_shape_is_read() {
    let legacy = br#"{"updates":{
        "barriers":[{"version":"30.1","reason":"https://example.org/b"}],
        "deadends":[{"version":"30.2","reason":"broken"}],
        "rollouts":[{"version":"30.3","start_epoch":"1560000000","start_value":"0.25","duration_minutes":"60"}]}}"#;
    let updates = Updates::from_json(legacy).expect("legacy parses");
    assert_eq!(updates.releases.len(), 3);
    let rollout = updates.releases[2].metadata.rollout.expect("rollout");
    assert_eq!(rollout.start_epoch, Some(1_560_000_000));
    assert_eq!(rollout.start_percentage, Some(0.25));
    assert_eq!(rollout.duration_minutes, Some(60));
    assert_eq!(
        updates.releases[0]
            .metadata
            .barrier
            .as_ref()
            .map(|b| b.reason.as_str()),
        Some("https://example.org/b")
    );
    let bad = br#"{"updates":{"rollouts":[{"version":"30.3","start_epoch":"soon"}]}}"#;
    let err = Updates::from_json(bad).expect_err("a non-number is rejected");
    assert!(err.to_string().contains("start_epoch"), "{err}");
}

#[test]
fn malformed_fedora_inputs_name_the_field() {
    let err = ReleaseIndex::from_json(br#"{"releases":[{"version":3}]}"#).expect_err("bad type");
    assert!(err.to_string().contains("releases[0].version"), "{err}");
    let err = Updates::from_json(
        br#"{"stream":"s","releases":[{"version":"1","metadata":{"barrier":{}}}]}"#,
    )
    .expect_err("reason is required");
    assert!(
        err.to_string().contains("releases[0].metadata.barrier"),
        "{err}"
    );
    assert!(Updates::from_json(b"[1,2").is_err());
}

#[test]
fn ids_that_are_not_digests_or_checksums_refuse_the_whole_file() {
    let good = "a".repeat(64);
    for bad in [
        "--reboot",
        "sha256:../../x",
        "abc",
        &"A".repeat(64),
        &format!("{} ", &good[..63]),
    ] {
        let commits = format!(
            r#"{{"releases":[{{"version":"1","commits":[{{"architecture":"x86_64","checksum":"{good}"}}]}},
            {{"version":"2","commits":[{{"architecture":"x86_64","checksum":"{bad}"}}]}}]}}"#
        );
        let err = ReleaseIndex::from_json(commits.as_bytes()).expect_err(bad);
        assert_eq!(err.kind(), "invalid_id");
        assert!(
            err.to_string().contains("releases[1].commits[0].checksum")
                && err.to_string().contains("release 2"),
            "{err}"
        );
        for digest_ref in [
            format!("r@{bad}"),
            format!("r@sha256:{bad}"),
            bad.to_string(),
        ] {
            let images = format!(
                r#"{{"releases":[{{"version":"1","oci-images":[{{"architecture":"x86_64","digest-ref":"{digest_ref}"}}]}}]}}"#
            );
            let err = ReleaseIndex::from_json(images.as_bytes()).expect_err(&digest_ref);
            assert!(
                err.to_string()
                    .contains("releases[0].oci-images[0].digest-ref"),
                "{err}"
            );
        }
    }
}

#[test]
fn cincinnati_payloads_that_are_not_ids_refuse_the_whole_answer() {
    use cairn_graph::cincinnati::CincinnatiNode;
    let node = |payload: &str, scheme: &str| CincinnatiNode {
        version: "1".into(),
        metadata: [
            (
                "org.fedoraproject.coreos.scheme".to_string(),
                scheme.to_string(),
            ),
            (
                "org.fedoraproject.coreos.releases.age_index".to_string(),
                "0".to_string(),
            ),
        ]
        .into(),
        payload: payload.into(),
    };
    let answer = |payload: &str, scheme: &str| CincinnatiGraph {
        nodes: vec![node(&"c".repeat(64), "checksum"), node(payload, scheme)],
        edges: vec![(0, 1)],
    };
    let digest = format!("sha256:{}", "d".repeat(64));
    assert!(UpdateGraph::from_cincinnati(&answer(&"e".repeat(64), "checksum")).is_ok());
    assert!(UpdateGraph::from_cincinnati(&answer(&format!("quay.io/x/y@{digest}"), "oci")).is_ok());
    assert!(UpdateGraph::from_cincinnati(&answer(&digest, "oci")).is_ok());
    for bad in [
        "--reboot",
        "sha256:../../x",
        "abc",
        &"E".repeat(64),
        &format!("{} x", "e".repeat(62)),
    ] {
        for (payload, scheme) in [
            (bad.to_string(), "checksum"),
            (bad.to_string(), "oci"),
            (format!("quay.io/x/y@{bad}"), "oci"),
            (digest.clone(), "checksum"),
        ] {
            let err = UpdateGraph::from_cincinnati(&answer(&payload, scheme))
                .expect_err(&format!("{payload} ({scheme})"));
            assert_eq!(err.kind(), "invalid_payload");
            assert!(err.to_string().starts_with("node 1 (1): payload:"), "{err}");
        }
    }
}

/// Found by fuzzing (`fuzz/regressions/fcos_metadata/`): two releases of
/// Fedora's index with one checksum. The graph keeps the older; a host
/// booted on that checksum is never offered itself, and what it is
/// offered, `offers` agrees to (the agent re-checks a staged release so).
#[test]
fn a_checksum_two_releases_share_is_one_release_never_an_update_to_itself() {
    let mut index: serde_json::Value =
        serde_json::from_slice(&data("releases/stable/releases.json")).expect("JSON");
    let releases = index["releases"].as_array_mut().expect("releases");
    let x86_64 = |release: &serde_json::Value| {
        release["commits"]
            .as_array()
            .and_then(|commits| commits.iter().position(|c| c["architecture"] == "x86_64"))
            .expect("an x86_64 commit")
    };
    let count = releases.len();
    let (older, newest) = (count - 3, count - 1);
    let at = x86_64(&releases[older]);
    let shared = releases[older]["commits"][at]["checksum"].clone();
    let at = x86_64(&releases[newest]);
    releases[newest]["commits"][at]["checksum"] = shared.clone();
    let index = ReleaseIndex::from_json(&serde_json::to_vec(&index).expect("JSON"))
        .expect("the index still parses");
    let (_, updates) = inputs("stable");
    let graph = fcos::build_graph(&index, &updates, "x86_64", Scheme::Checksum);
    let shared = shared.as_str().expect("checksum");
    assert_eq!(
        graph.nodes().iter().filter(|n| n.payload == shared).count(),
        1
    );
    for wariness in [0.0, 0.5, 1.0] {
        let query = Query {
            booted: shared,
            wariness,
            now: Timestamp::from_second(ROLLOUT_END + 1).expect("time"),
            deny: &[],
            halted: &[],
            allow_downgrade: false,
        };
        let decision = graph.decide(&query);
        let target = decision.target.as_ref().expect("an update");
        assert_ne!(target.digest.as_str(), shared);
        assert_eq!(graph.offers(&query, target.digest.as_str()), Ok(()));
    }
}

/// Found by fuzzing (`fuzz/regressions/cincinnati/`): an answer naming one
/// payload on two nodes is refused whole, as a document with a duplicate
/// digest is.
#[test]
fn a_cincinnati_answer_with_one_payload_on_two_nodes_is_refused() {
    let mut served = golden("gb_stable_x86_64_oci-false.json");
    served.nodes[3].payload = served.nodes[1].payload.clone();
    let error = UpdateGraph::from_cincinnati(&served).expect_err("refused");
    assert_eq!(error.kind(), "duplicate_payload");
    assert!(error.to_string().contains("node 3"), "{error}");
}

/// Found by fuzzing: bytes after the JSON were ignored. Whitespace is fine;
/// anything else refuses the file, naming it.
#[test]
fn bytes_after_the_json_refuse_fedoras_files_and_cincinnati_answers() {
    let mut index = data("releases/stable/releases.json");
    assert!(ReleaseIndex::from_json(&[index.as_slice(), b"\n \n"].concat()).is_ok());
    index.extend_from_slice(b"{}");
    let error = ReleaseIndex::from_json(&index).expect_err("trailing bytes");
    assert!(error.to_string().contains("trailing"), "{error}");
    let mut answer = data("fcos-cincinnati-golden/gb_stable_x86_64_oci-false.json");
    answer.extend_from_slice(b"]");
    let error = CincinnatiGraph::from_json(&answer).expect_err("trailing bytes");
    assert!(error.to_string().contains("trailing"), "{error}");
}
