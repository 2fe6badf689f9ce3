//! What a publisher's scan costs against a local registry holding 1,000
//! tagged images: the cold `publish --dry-run` path (scan and assemble with an
//! empty cache) and the warm re-run (nothing changed, cache kept). Prints the
//! HTTP request count of each once; criterion reports the wall time.
//!
//! Run with `cargo bench -p cairn-oci --bench scan` (needs docker-registry).

use cairn_graph::assemble::{AssembleOptions, assemble};
use cairn_oci::Store;
use cairn_oci::scan::{ScanCache, ScanOptions, scan};
use cairn_testkit::{Auth, ImageSpec, TestRegistry, write_image};
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use std::time::Duration;

const IMAGES: usize = 1_000;

fn populate(runtime: &tokio::runtime::Runtime) -> (TestRegistry, Store) {
    runtime.block_on(async {
        let registry = TestRegistry::start(Auth::None).await;
        let store = registry.store("bench/os");
        futures::stream::iter(0..IMAGES)
            .map(|n| {
                let store = store.clone();
                async move {
                    let created = "2026-01-01T00:00:00Z";
                    let mut spec =
                        ImageSpec::bootable("amd64", &format!("1.0.{n}"), "stable", created);
                    spec.content = format!("image {n}");
                    let tag = format!("1.0.{n}");
                    let written = write_image(&store, &spec, Some(&tag)).await;
                    if n == IMAGES - 1 {
                        cairn_testkit::add_tags(&store, &written.manifest, &["stable", "latest"])
                            .await;
                    }
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        (registry, store)
    })
}

async fn dry_run(store: &Store, cache: &mut ScanCache) -> usize {
    let report = scan(store, &ScanOptions::for_stream("stable"), cache, &|_, _| {})
        .await
        .expect("scan");
    let now = jiff::Timestamp::now();
    let options = AssembleOptions {
        stream: "stable",
        repository: "bench/os",
        now,
        expires: now + jiff::SignedDuration::from_hours(24 * 14),
        default_rollout: Some(cairn_graph::Rollout::immediate()),
        policy: None,
        present: None,
        base: None,
    };
    assemble(None, report.candidates, &options)
        .expect("assemble")
        .document
        .releases
        .len()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (_registry, store) = populate(&runtime);

    // Request counts, once.
    let mut cache = ScanCache::default();
    let before = store.request_count();
    let releases = runtime.block_on(dry_run(&store, &mut cache));
    let cold = store.request_count() - before;
    let before = store.request_count();
    runtime.block_on(dry_run(&store, &mut cache));
    let warm = store.request_count() - before;
    eprintln!(
        "scan of {IMAGES} images: {releases} releases; cold {cold} HTTP requests, warm {warm} HTTP requests"
    );

    let mut group = c.benchmark_group("publish_dry_run_1000_images");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("cold", |b| {
        b.iter(|| runtime.block_on(dry_run(&store, &mut ScanCache::default())))
    });
    group.bench_function("warm", |b| {
        b.iter(|| runtime.block_on(dry_run(&store, &mut cache)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
