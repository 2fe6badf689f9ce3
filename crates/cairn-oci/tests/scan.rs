//! Scanning a real registry: labels, indexes, derived images, skipped tags,
//! warm-scan cost, and an outage in the middle of a scan.

use cairn_oci::document;
use cairn_oci::scan::{NotRelease, ScanCache, ScanOptions, scan};
use cairn_testkit::{
    Auth, ImageSpec, TestRegistry, add_tags, write_image, write_release as release,
};
use std::sync::{Arc, Mutex};

fn no_progress(_: u64, _: u64) {}

#[tokio::test]
async fn scan_reads_labels_resolves_indexes_and_skips_what_is_not_a_release() {
    let registry = TestRegistry::start(Auth::Htpasswd).await;
    let store = registry.store("acme/os");
    let (index_1, arches_1) = release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (index_2, _) = release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"]).await;
    // Not releases: an application image, another stream, signature and referrer tags.
    let mut app = ImageSpec::bootable("amd64", "9", "stable", "2026-01-01T00:00:00Z");
    app.labels.remove("containers.bootc");
    app.labels.remove("ostree.bootable");
    write_image(&store, &app, Some("app")).await;
    write_image(
        &store,
        &ImageSpec::bootable("amd64", "45.1", "next", "2026-02-01T00:00:00Z"),
        Some("45.1"),
    )
    .await;
    let sig = write_image(
        &store,
        &ImageSpec::bootable("amd64", "x", "stable", "2026-01-01T00:00:00Z"),
        None,
    )
    .await;
    let referrer_tag = index_1.replace(':', "-");
    let signature_tag = format!("{referrer_tag}.sig");
    add_tags(&store, &sig.manifest, &[&referrer_tag, &signature_tag]).await;

    let mut cache = ScanCache::default();
    let report = scan(
        &store,
        &ScanOptions::for_stream("stable"),
        &mut cache,
        &no_progress,
    )
    .await
    .expect("scan");
    let mut versions: Vec<&str> = report
        .candidates
        .iter()
        .map(|c| c.version.as_str())
        .collect();
    versions.sort();
    assert_eq!(versions, vec!["44.1", "44.2"]);
    let first = report
        .candidates
        .iter()
        .find(|c| c.version == "44.1")
        .expect("44.1");
    assert_eq!(first.source_digest, index_1);
    assert_eq!(
        first.architectures["x86_64"].digest.as_deref(),
        Some(arches_1[0].manifest.as_str())
    );
    assert_eq!(
        first.architectures["x86_64"].config.as_deref(),
        Some(arches_1[0].config.as_str())
    );
    assert_eq!(
        first.architectures["aarch64"].digest.as_deref(),
        Some(arches_1[1].manifest.as_str())
    );
    let second = report
        .candidates
        .iter()
        .find(|c| c.version == "44.2")
        .expect("44.2");
    assert_eq!(second.tags, vec!["44.2".to_string(), "stable".to_string()]);
    assert_eq!(second.source_digest, index_2);
    let skipped: Vec<&str> = report.skipped.iter().map(|(t, _)| t.as_str()).collect();
    assert!(
        skipped.contains(&"app") && skipped.contains(&"45.1"),
        "{:?}",
        report.skipped
    );
    assert!(
        report
            .skipped
            .iter()
            .any(|(t, r)| t == "45.1" && matches!(r, NotRelease::OtherStream(s) if s == "next"))
    );
    assert!(
        !skipped.iter().any(|t| t.starts_with("sha256-")),
        "signature tags are not even considered"
    );
}

#[tokio::test]
async fn derived_images_inheriting_the_base_version_are_named_by_tag() {
    let registry = TestRegistry::start(Auth::None).await;
    let base_store = registry.store("fedora/base");
    let base = write_image(
        &base_store,
        &ImageSpec::bootable("amd64", "44.20260707.3.1", "stable", "2026-07-07T00:00:00Z"),
        Some("stable"),
    )
    .await;
    let store = registry.store("acme/derived");
    let derived = |content: &str, created: &str| {
        let mut spec = ImageSpec::bootable("amd64", "44.20260707.3.1", "stable", created);
        spec.content = content.to_string();
        spec.annotations.insert(
            "org.opencontainers.image.base.name".into(),
            format!("{}/fedora/base:stable", registry.host),
        );
        spec.annotations.insert(
            "org.opencontainers.image.base.digest".into(),
            base.manifest.clone(),
        );
        spec
    };
    write_image(
        &store,
        &derived("a", "2026-07-08T00:00:00Z"),
        Some("2026.07.08"),
    )
    .await;
    let untagged = write_image(
        &store,
        &derived("b", "2026-07-15T00:00:00Z"),
        Some("latest"),
    )
    .await;
    let mut own = derived("c", "2026-07-20T00:00:00Z");
    own.labels
        .insert("org.opencontainers.image.version".into(), "acme-7".into());
    write_image(&store, &own, Some("acme-7")).await;
    // Any tag that does not move names the release, not only date-like ones.
    write_image(
        &store,
        &derived("d", "2026-07-22T00:00:00Z"),
        Some("build-1234"),
    )
    .await;

    let mut cache = ScanCache::default();
    let report = scan(
        &store,
        &ScanOptions::for_stream("stable"),
        &mut cache,
        &no_progress,
    )
    .await
    .expect("scan");
    let mut versions: Vec<String> = report
        .candidates
        .iter()
        .map(|c| c.version.clone())
        .collect();
    versions.sort();
    let fallback = format!("2026-07-15T00:00:00Z-{}", &untagged.manifest[7..19]);
    let mut expected = vec![
        "2026.07.08".to_string(),
        fallback,
        "acme-7".to_string(),
        "build-1234".to_string(),
    ];
    expected.sort();
    assert_eq!(versions, expected);
    let base_record = report.candidates[0].base.as_ref().expect("base recorded");
    assert_eq!(base_record.digest, base.manifest);
    assert_eq!(
        base_record.repository,
        format!("{}/fedora/base", registry.host)
    );
}

#[tokio::test]
async fn warm_scans_cost_the_tag_list_and_mutable_tags_only() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    for n in 0..8 {
        let tags = if n == 7 {
            vec![format!("44.{n}"), "stable".to_string()]
        } else {
            vec![format!("44.{n}")]
        };
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        release(
            &store,
            &format!("44.{n}"),
            &format!("2026-01-0{}T00:00:00Z", n + 1),
            &tags,
        )
        .await;
    }
    let options = ScanOptions::for_stream("stable");
    let mut cache = ScanCache::default();
    let before = store.request_count();
    let cold = scan(&store, &options, &mut cache, &no_progress)
        .await
        .expect("cold");
    let cold_requests = store.request_count() - before;
    // 1 tag list + 9 HEADs + 8 indexes + 16 manifests + 16 configs.
    assert_eq!(cold.candidates.len(), 8);
    assert_eq!(
        cold_requests,
        1 + 9 + 8 + 16 + 16,
        "cold scan reads each manifest and config once"
    );

    let before = store.request_count();
    let warm = scan(&store, &options, &mut cache, &no_progress)
        .await
        .expect("warm");
    let warm_requests = store.request_count() - before;
    assert_eq!(warm.candidates.len(), 8);
    assert_eq!(
        warm_requests,
        1 + 1,
        "the tag list plus a HEAD of the mutable tag `stable`"
    );

    // A new tag costs its HEAD and its reads; recheck re-HEADs everything.
    release(&store, "44.8", "2026-01-09T00:00:00Z", &["44.8"]).await;
    let before = store.request_count();
    let next = scan(&store, &options, &mut cache, &no_progress)
        .await
        .expect("new tag");
    assert_eq!(next.candidates.len(), 9);
    assert_eq!(store.request_count() - before, 1 + 1 + 1 + 1 + 2 + 2);
    let recheck = ScanOptions {
        recheck: true,
        ..options
    };
    let before = store.request_count();
    scan(&store, &recheck, &mut cache, &no_progress)
        .await
        .expect("recheck");
    assert_eq!(store.request_count() - before, 1 + 10);
}

#[tokio::test]
async fn an_outage_mid_scan_is_a_clear_error_and_publishes_nothing() {
    let registry = Arc::new(Mutex::new(TestRegistry::start(Auth::None).await));
    let (store, host) = {
        let r = registry.lock().expect("lock");
        (r.store("acme/os"), r.host.clone())
    };
    for n in 0..12 {
        release(
            &store,
            &format!("44.{n}"),
            "2026-01-01T00:00:00Z",
            &[&format!("44.{n}")],
        )
        .await;
    }
    let key = cairn_oci::signing::SigningKey::generate();
    let mut doc = cairn_graph::GraphDocument {
        stream: "stable".into(),
        repository: format!("{host}/acme/os"),
        issued: jiff::Timestamp::now(),
        expires: jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24),
        ..Default::default()
    };
    doc.releases.push(cairn_graph::Release {
        version: "0".into(),
        ..Default::default()
    });
    let options = document::PublishOptions {
        tag: "cairn-graph-stable",
        identity: "acme/os",
        keys: std::slice::from_ref(&key),
        root_version: 0,
        settle: std::time::Duration::ZERO,
        expected: None,
    };
    let first = document::publish(&store, doc, &options)
        .await
        .expect("publish");

    // Stop the registry once a few tags have been resolved.
    let stopper = Arc::clone(&registry);
    let stop_after_some = move |done: u64, _total: u64| {
        if done == 3 {
            stopper.lock().expect("lock").stop();
        }
    };
    let mut options = ScanOptions::for_stream("stable");
    options.concurrency = 1;
    let mut cache = ScanCache::default();
    let err = scan(&store, &options, &mut cache, &stop_after_some)
        .await
        .expect_err("the registry went away");
    assert_eq!(err.kind(), "transport", "{err}");
    assert!(
        err.to_string().contains(&host),
        "the error names the registry: {err}"
    );

    registry.lock().expect("lock").resume();
    let fetched = document::fetch(&store, "cairn-graph-stable")
        .await
        .expect("still there");
    assert_eq!(
        fetched.manifest_digest.as_deref(),
        Some(first.manifest_digest.as_str())
    );
}

#[tokio::test]
async fn an_index_naming_too_many_architectures_is_not_read_through() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let specs: Vec<ImageSpec> = (0..17)
        .map(|n| {
            ImageSpec::bootable(
                &format!("arch{n}"),
                "44.1",
                "stable",
                "2026-01-01T00:00:00Z",
            )
        })
        .collect();
    cairn_testkit::write_index(&store, &specs, "44.1").await;
    let mut cache = ScanCache::default();
    let outcome = scan(
        &store,
        &ScanOptions::for_stream("stable"),
        &mut cache,
        &no_progress,
    )
    .await;
    let text = match &outcome {
        Ok(report) => format!("{:?}", report.skipped),
        Err(e) => e.to_string(),
    };
    assert!(text.contains("more than 16 architectures"), "{text}");
    if let Ok(report) = outcome {
        assert!(report.candidates.is_empty(), "{:?}", report.candidates);
    }
}

/// A wave tag `cairn promote` moves is not a release tag: once the promote
/// state names it, the scan neither reads it nor lists it among a release's
/// tags, and the cache never holds it; the state costs two requests.
#[tokio::test]
async fn wave_tags_named_by_the_promote_state_are_not_read() {
    use cairn_graph::promote::{PromoteState, WaveState};
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (index_1, _) = release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"]).await;
    add_tags(&store, &index_1, &["stable-early"]).await;
    let options = ScanOptions::for_stream("stable");

    // Before the state names it, the wave tag is read like any other.
    let mut cache = ScanCache::default();
    let before = scan(&store, &options, &mut cache, &no_progress)
        .await
        .expect("scan");
    assert!(cache.tags.contains_key("stable-early"));
    let tags_of = |report: &cairn_oci::scan::ScanReport, version: &str| {
        report
            .candidates
            .iter()
            .find(|c| c.version == version)
            .map(|c| c.tags.clone())
            .unwrap_or_default()
    };
    assert!(tags_of(&before, "44.1").contains(&"stable-early".to_string()));

    let mut state = PromoteState::default();
    state.waves.insert(
        "stable-early".into(),
        WaveState {
            version: "44.1".into(),
            arrived: jiff::Timestamp::now(),
            came_from: None,
        },
    );
    cairn_oci::promote::write_state(
        &store,
        &state,
        None,
        jiff::Timestamp::now(),
        std::time::Duration::ZERO,
    )
    .await
    .expect("state");
    let mut cache = ScanCache::default();
    let requests = store.request_count();
    let after = scan(&store, &options, &mut cache, &no_progress)
        .await
        .expect("scan");
    let cost = store.request_count() - requests;
    assert!(!cache.tags.contains_key("stable-early"), "{:?}", cache.tags);
    assert_eq!(tags_of(&after, "44.1"), vec!["44.1".to_string()]);
    assert_eq!(after.candidates.len(), 2);
    // 1 tag list + 2 for the state + 3 HEADs + 2 indexes + 4 manifests + 4 configs.
    assert_eq!(cost, 1 + 2 + 3 + 2 + 4 + 4);
}
