//! A registry with three releases and a stand-in host booted on the newest,
//! for `scripts/bench-agent`. Prints shell assignments, then keeps the
//! registry running until its standard input closes.

use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, TestRegistry, write_release};
use std::io::Read;

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
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(registry);
}
