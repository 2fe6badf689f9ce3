//! The dashboard's stream page for Fedora CoreOS's stable stream (179
//! releases): building its view model from the served graphs and rendering
//! its HTML with the inline SVG, as `GET /streams/stable` does once the
//! graphs are built. Prints each page's size first.
//!
//! Run with `cargo bench -p cairn-server --bench dashboard`.

use cairn_graph::fcos::{ReleaseIndex, Updates};
use cairn_server::AppState;
use cairn_server::dashboard::build::{self, StreamQuery};
use cairn_server::dashboard::model::Viewer;
use cairn_server::dashboard::pages;
use cairn_server::snapshot::Snapshot;
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

/// Mid-way through the newest stable rollout of the shipped metadata.
const NOW: i64 = 1_784_815_200;

fn data(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fcos")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn state() -> AppState {
    let clock = Arc::new(|| Timestamp::from_second(NOW).expect("time"));
    let state = AppState::new(["stable".to_string()], clock, 30);
    let index = ReleaseIndex::from_json(&data("releases/stable/releases.json")).expect("index");
    let updates = Updates::from_json(&data("updates/stable.json")).expect("updates");
    state.install("stable", Snapshot::from_fcos(&index, &updates));
    state
}

/// The page as `GET /streams/stable?<query>` renders it.
fn page(state: &AppState, query: &StreamQuery) -> String {
    let now = Timestamp::from_second(NOW).expect("time");
    let model = build::stream_page_now(state, "stable", query, now, None).expect("a page");
    pages::stream(
        &model,
        &Viewer::default(),
        None,
        None,
        &["stable".to_string()],
    )
    .into_string()
}

fn stream_page(c: &mut Criterion) {
    let state = state();
    let collapsed = StreamQuery::default();
    let expanded = StreamQuery::parse(Some("expand=all")).expect("query");
    for (name, query) in [("collapsed", &collapsed), ("expand=all", &expanded)] {
        let html = page(&state, query);
        let releases = html.matches("<th scope=\"row\">").count();
        println!(
            "stream page, Fedora stable ({name}): {} bytes of HTML, {releases} release rows",
            html.len()
        );
    }
    c.bench_function("dashboard stream page, Fedora stable", |b| {
        b.iter(|| black_box(page(&state, black_box(&collapsed))))
    });
    c.bench_function("dashboard stream page, Fedora stable, expand=all", |b| {
        b.iter(|| black_box(page(&state, black_box(&expanded))))
    });
}

criterion_group!(benches, stream_page);
criterion_main!(benches);
