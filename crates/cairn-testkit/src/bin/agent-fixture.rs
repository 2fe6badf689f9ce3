//! A registry with three releases and a stand-in host booted on the newest,
//! for `scripts/bench-agent`. Prints shell assignments, then keeps the
//! registry running until its standard input closes. A line `halts <key>`
//! on standard input turns halt lists on: the published document is signed
//! again with `<key>` naming a halt list, which is published (empty, signed
//! with the same key) in `acme/halts`; then `halts=<sequence>` is printed.

use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, TestRegistry, write_release};
use std::io::BufRead;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let work = std::env::args()
        .nth(1)
        .unwrap_or_else(|| panic!("usage: agent-fixture <work-dir>"));
    let work = std::path::PathBuf::from(work);
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let mut newest = None;
    for (version, created, tags) in [
        ("44.1", "2026-01-01T00:00:00Z", &["44.1"][..]),
        ("44.2", "2026-02-01T00:00:00Z", &["44.2"][..]),
        ("44.3", "2026-03-01T00:00:00Z", &["44.3", "stable"][..]),
    ] {
        let (_, written) = write_release(&store, version, created, tags).await;
        newest = written.first().map(|w| w.manifest.clone());
    }
    let newest = newest.unwrap_or_else(|| panic!("no release written"));
    let repository = format!("{}/acme/os", registry.host);
    let host = FakeHost::new(
        &work.join("host"),
        "1.17.0",
        &format!("{repository}:stable"),
        (&newest, "44.3"),
        std::slice::from_ref(&registry.host),
        true,
    );
    println!("registry={}", registry.host);
    println!("repository={repository}");
    println!("bootc={}", host.program.display());
    // The caller reads the lines above before we block.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(key) = line.strip_prefix("halts ") {
            let sequence = halts_on(&registry, &repository, key.trim()).await;
            println!("halts={sequence}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
    }
    drop(registry);
}

/// Sign the document again with halt lists on, and publish the first list.
async fn halts_on(registry: &TestRegistry, repository: &str, key: &str) -> u64 {
    let pem = std::fs::read_to_string(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let key = cairn_oci::signing::SigningKey::from_pem(&pem, key)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    let halts_repository = format!("{}/acme/halts", registry.host);
    let tag = cairn_oci::halts::default_tag("stable");
    let published = cairn_oci::halts::refresh(
        &registry.store("acme/halts"),
        &cairn_oci::halts::UpdateOptions {
            publish: publish_options(&tag, &halts_repository, &key),
            trust: cairn_oci::trust::TrustedRoot::from_config(&[key.verifying_key()], &[]).as_ref(),
            stream: "stable",
            lifetime: cairn_oci::halts::DEFAULT_LIFETIME,
            cleared: &[],
            accept_unverified_current: false,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("publish the halt list: {e}"));
    let store = registry.store("acme/os");
    let graph_tag = cairn_oci::document::default_tag("stable");
    let mut document = cairn_oci::document::fetch(&store, &graph_tag)
        .await
        .unwrap_or_else(|e| panic!("read the document: {e}"))
        .document;
    document.issued = jiff::Timestamp::now();
    document.halts = Some(cairn_graph::document::HaltSettings {
        location: format!("{halts_repository}:{tag}"),
        min_sequence: published.list.sequence,
        cleared: Vec::new(),
    });
    cairn_oci::document::publish(
        &store,
        document,
        &publish_options(&graph_tag, repository, &key),
    )
    .await
    .unwrap_or_else(|e| panic!("publish the document: {e}"));
    published.list.sequence
}

fn publish_options<'a>(
    tag: &'a str,
    identity: &'a str,
    key: &'a cairn_oci::signing::SigningKey,
) -> cairn_oci::document::PublishOptions<'a> {
    cairn_oci::document::PublishOptions {
        tag,
        identity,
        keys: std::slice::from_ref(key),
        root_version: 0,
        settle: std::time::Duration::ZERO,
        expected: None,
    }
}
