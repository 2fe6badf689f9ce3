//! Building graphs and answering `next`, for Fedora's stable stream (179
//! releases) and a synthetic stream of 10,000 releases.
//!
//! Run with `cargo bench -p cairn-graph --bench graph`.

use cairn_graph::fcos::{self, ConvertOptions, ReleaseIndex, Updates};
use cairn_graph::{ArchEntry, GraphDocument, Query, Reason, Release, Rollout, Scheme, UpdateGraph};
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use std::hint::black_box;
use std::path::PathBuf;

const NOW: i64 = 1_784_815_200; // mid-way through the newest stable rollout

fn data(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fcos")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn stable_document(index: &ReleaseIndex, updates: &Updates) -> GraphDocument {
    fcos::to_document(
        index,
        updates,
        &ConvertOptions {
            repository: "quay.io/fedora/fedora-coreos",
            oci: true,
            aliases: None,
            sequence: 1,
            issued: Timestamp::from_second(NOW - 86_400).expect("time"),
            expires: Timestamp::from_second(NOW + 86_400 * 14).expect("time"),
        },
    )
    .expect("converts")
    .document
}

/// 10,000 releases the way `cairn publish` writes them: every release an
/// immediate rollout, a barrier every 1,000, a dead-end now and then, and
/// the last three rolling out.
fn synthetic_document(releases: usize) -> GraphDocument {
    let releases = (0..releases)
        .map(|i| Release {
            version: format!("1.{i}"),
            architectures: [(
                "x86_64".to_string(),
                ArchEntry {
                    config: Some(format!("sha256:{:064x}", i + 1_000_000)),
                    ..ArchEntry::image(format!("sha256:{i:064x}"))
                },
            )]
            .into(),
            barrier: (i % 1000 == 999).then(|| Reason::new("migration")),
            deadend: (i % 997 == 500).then(|| Reason::new("bad build")),
            rollout: Some(if i + 3 >= releases {
                Rollout {
                    start_epoch: Some(NOW - 3600),
                    start_percentage: Some(0.0),
                    duration_minutes: Some(2880),
                }
            } else {
                Rollout::immediate()
            }),
            ..Release::default()
        })
        .collect();
    GraphDocument {
        stream: "synthetic".into(),
        repository: "registry.example/os".into(),
        sequence: 1,
        issued: Timestamp::from_second(NOW - 86_400).expect("time"),
        expires: Timestamp::from_second(NOW + 86_400 * 14).expect("time"),
        releases,
        ..GraphDocument::default()
    }
}

fn query(booted: &str) -> Query<'_> {
    Query {
        booted,
        wariness: 0.42,
        now: Timestamp::from_second(NOW).expect("time"),
        deny: &[],
        halted: &[],
        allow_downgrade: false,
    }
}

fn bench_stable(c: &mut Criterion) {
    let index = ReleaseIndex::from_json(&data("releases/stable/releases.json")).expect("index");
    let updates = Updates::from_json(&data("updates/stable.json")).expect("updates");
    let document = stable_document(&index, &updates);
    let graph = UpdateGraph::from_document(&document, "x86_64", Scheme::Oci);
    let oldest = graph.nodes()[0].id.clone();
    let mut group = c.benchmark_group("stable");
    group.bench_function("build_fcos_checksum_graph", |b| {
        b.iter(|| {
            fcos::build_graph(
                black_box(&index),
                black_box(&updates),
                "x86_64",
                Scheme::Checksum,
            )
        })
    });
    group.bench_function("build_from_document", |b| {
        b.iter(|| UpdateGraph::from_document(black_box(&document), "x86_64", Scheme::Oci))
    });
    group.bench_function("next_on_built_graph", |b| {
        b.iter(|| graph.decide(black_box(&query(&oldest))))
    });
    group.bench_function("next_from_document", |b| {
        b.iter(|| black_box(&document).decide("x86_64", black_box(&query(&oldest))))
    });
    group.bench_function("throttle_and_render_cincinnati", |b| {
        b.iter(|| {
            graph
                .throttled(black_box(0.42), NOW)
                .to_cincinnati()
                .to_json_pretty()
        })
    });
    group.finish();
}

fn bench_synthetic(c: &mut Criterion) {
    let document = synthetic_document(10_000);
    let graph = UpdateGraph::from_document(&document, "x86_64", Scheme::Oci);
    let middle = graph.nodes()[5_000].id.clone();
    let mut group = c.benchmark_group("synthetic_10k");
    group.sample_size(20);
    group.bench_function("build_from_document", |b| {
        b.iter(|| UpdateGraph::from_document(black_box(&document), "x86_64", Scheme::Oci))
    });
    group.bench_function("next_on_built_graph", |b| {
        b.iter(|| graph.decide(black_box(&query(&middle))))
    });
    group.bench_function("next_from_document", |b| {
        b.iter(|| black_box(&document).decide("x86_64", black_box(&query(&middle))))
    });
    group.finish();
}

criterion_group!(benches, bench_stable, bench_synthetic);
criterion_main!(benches);
