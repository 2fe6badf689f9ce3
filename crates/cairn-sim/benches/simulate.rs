//! One million nodes over 30 simulated days on Fedora's stable stream, with
//! the newest release rolling out over two days from the start and the fleet
//! starting two barriers back.
//!
//! `cargo bench -p cairn-sim --bench simulate`

use cairn_graph::GraphDocument;
use cairn_graph::fcos::{self, ConvertOptions, ReleaseIndex, Updates};
use cairn_sim::{Options, Wariness, simulate};
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use std::path::PathBuf;

const START: i64 = 1_790_000_000;

fn data(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fcos")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn stable() -> GraphDocument {
    let index = ReleaseIndex::from_json(&data("releases/stable/releases.json")).expect("index");
    let updates = Updates::from_json(&data("updates/stable.json")).expect("updates");
    let mut document = fcos::to_document(
        &index,
        &updates,
        &ConvertOptions {
            repository: "quay.io/fedora/fedora-coreos",
            oci: true,
            aliases: None,
            sequence: 1,
            issued: Timestamp::from_second(START).expect("time"),
            expires: Timestamp::from_second(START + 86_400 * 60).expect("time"),
        },
    )
    .expect("converts")
    .document;
    // The newest release's rollout moved to the start: 0% to 100% over 2 days.
    if let Some(newest) = document.releases.last_mut() {
        newest.rollout = Some(cairn_graph::Rollout {
            start_epoch: Some(START),
            start_percentage: Some(0.0),
            duration_minutes: Some(2880),
        });
    }
    document
}

fn bench(c: &mut Criterion) {
    let document = stable();
    let options = Options {
        nodes: 1_000_000,
        wariness: Wariness::Uniform,
        arch: "x86_64".into(),
        booted: vec![("43.20260119.3.1".into(), 1.0)],
        start: Timestamp::from_second(START).expect("time"),
        span: SignedDuration::from_hours(24 * 30),
        check_interval: SignedDuration::from_mins(5),
        reboot_time: SignedDuration::from_mins(2),
        schedule: None,
        lock_slots: None,
        samples: 400,
        seed: 1,
        failures: Vec::new(),
        guard: None,
        halted: Vec::new(),
    };
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.bench_function("1M nodes, 30 days, stable", |b| {
        b.iter(|| simulate(&document, &options).expect("runs"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
