//! Test support for Cairn: a real registry harness, its token server, and
//! builders for small real OCI images. Used only by tests and benchmarks.

#![forbid(unsafe_code)]

pub mod browser;
pub mod collector;
pub mod etcd;
pub mod host;
pub mod hostile;
pub mod images;
pub mod lockserver;
pub mod registry;
pub mod roots;
pub mod serve;
pub mod standins;
pub mod token;

pub use browser::{Browser, Page, PageOptions};
pub use collector::CollectorStandIn;
pub use etcd::EtcdCluster;
pub use hostile::HostileServer;
pub use images::{
    Base, ImageSpec, Recorded, Written, add_tags, write_cosign_signature, write_derived_release,
    write_image, write_index, write_release,
};
pub use lockserver::LockServer;
pub use registry::{Auth, TestRegistry};
pub use serve::GraphServer;

/// Run `skopeo` with arguments; panics with its stderr when it fails, and with
/// install instructions when it is missing.
pub fn skopeo(args: &[&str]) -> String {
    registry::require_binary("skopeo", "skopeo");
    let output = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running skopeo: {e}"));
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The shipped example document (`docs/examples/stable.json`), issued an
/// hour ago and expiring `hours_valid` hours from now, for tests that sign
/// and publish a fresh one.
pub fn example_document(hours_valid: i64) -> cairn_graph::GraphDocument {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/stable.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut document = cairn_graph::GraphDocument::from_json(&bytes)
        .expect("the example parses")
        .document;
    let now = jiff::Timestamp::now();
    document.issued = now - jiff::SignedDuration::from_hours(1);
    document.expires = now + jiff::SignedDuration::from_hours(hours_valid);
    document
}
