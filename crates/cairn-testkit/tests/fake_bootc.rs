//! The bootc stand-in's plain `bootc upgrade [--apply] [--quiet]` and its
//! index resolution, on a real registry whose tags move as a promoter moves
//! them; and the registry's own request log.

use cairn_testkit::host::{FakeHost, Upgraded};
use cairn_testkit::{Auth, TestRegistry, Written, add_tags, write_release};
use std::process::Output;

const REPOSITORY: &str = "os/host";

/// A registry with releases 44.1 and 44.2, `stable` on 44.1, and a host
/// booted on 44.1's amd64 image that follows `stable`.
struct World {
    registry: TestRegistry,
    host: FakeHost,
    /// Index digest and per-architecture images (amd64, arm64) of 44.1.
    first: (String, Vec<Written>),
    /// The same for 44.2.
    second: (String, Vec<Written>),
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store(REPOSITORY);
    let first = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1", "stable"]).await;
    let second = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let image = format!("{}/{REPOSITORY}:stable", registry.host);
    let host = FakeHost::new(
        &dir.path().join("host"),
        "1.17.0",
        &image,
        (&first.1[0].manifest, "44.1"),
        std::slice::from_ref(&registry.host),
        false,
    );
    World {
        registry,
        host,
        first,
        second,
        _dir: dir,
    }
}

impl World {
    fn image(&self) -> String {
        format!("{}/{REPOSITORY}:stable", self.registry.host)
    }

    /// Point `stable` at an index, as a promoter does.
    async fn move_stable(&self, index: &str) {
        add_tags(&self.registry.store(REPOSITORY), index, &["stable"]).await;
    }

    /// Run the stand-in with `args`; it must not block (no `--apply` that reboots).
    async fn bootc(&self, args: &[&str]) -> Output {
        let program = self.host.program.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || std::process::Command::new(program).args(args).output())
            .await
            .unwrap_or_else(|e| panic!("joining {e}"))
            .unwrap_or_else(|e| panic!("running the bootc stand-in: {e}"))
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "bootc failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn an_index_tag_resolves_to_the_host_architectures_image() {
    let w = world().await;
    w.move_stable(&w.second.0).await;
    let output = w.bootc(&["upgrade"]).await;
    assert_success(&output);
    let staged = w
        .host
        .state()
        .staged
        .expect("upgrade staged the new release");
    let (amd64, arm64) = (&w.second.1[0].manifest, &w.second.1[1].manifest);
    assert_eq!(&staged.digest, amd64, "the amd64 image, not the index");
    assert_ne!(staged.digest, w.second.0);
    assert_eq!(staged.version.as_deref(), Some("44.2"));

    let status = w
        .bootc(&["status", "--format=json", "--format-version=1"])
        .await;
    assert_success(&status);
    let status: serde_json::Value =
        serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("status JSON: {e}"));
    assert_eq!(
        status["status"]["staged"]["image"]["imageDigest"],
        amd64.as_str()
    );
    assert_eq!(status["status"]["staged"]["image"]["architecture"], "amd64");

    // An arm64 host resolves the same tag to the arm64 image.
    w.host.set_arch("arm64");
    assert_success(&w.bootc(&["upgrade"]).await);
    let staged = w
        .host
        .state()
        .staged
        .expect("upgrade staged the arm64 image");
    assert_eq!(&staged.digest, arm64);
    let status = w
        .bootc(&["status", "--format=json", "--format-version=1"])
        .await;
    let status: serde_json::Value =
        serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("status JSON: {e}"));
    assert_eq!(status["status"]["staged"]["image"]["architecture"], "arm64");
}

#[tokio::test]
async fn upgrade_stages_once_and_then_says_the_staged_update_is_present() {
    let w = world().await;
    w.move_stable(&w.second.0).await;
    let digest = &w.second.1[0].manifest;

    let first = w.bootc(&["upgrade"]).await;
    assert_success(&first);
    assert_eq!(
        stdout(&first),
        format!(
            "Queued for next boot: {}\n  Version: 44.2\n  Digest: {digest}\n",
            w.image()
        )
    );
    let state = w.host.state();
    let staged = state.staged.expect("staged");
    assert_eq!(&staged.digest, digest);
    assert!(
        !staged.download_only,
        "a plain upgrade applies at the next boot"
    );
    assert_eq!(staged.image, w.image());
    assert_eq!(
        state.spec_image,
        w.image(),
        "the host still follows the tag"
    );
    assert_eq!(
        w.host.booted().map(|b| b.digest).as_ref(),
        Some(&w.first.1[0].manifest),
        "nothing rebooted"
    );

    let again = w.bootc(&["upgrade", "--quiet"]).await;
    assert_success(&again);
    assert_eq!(stdout(&again), "Staged update present, not changed\n");
    assert_eq!(
        w.host.state().staged.map(|s| s.digest).as_ref(),
        Some(digest)
    );
}

#[tokio::test]
async fn upgrade_of_a_locked_staged_image_unlocks_it() {
    let w = world().await;
    let target = format!("{}/{REPOSITORY}:44.2", w.registry.host);
    assert_success(&w.bootc(&["switch", "--download-only", &target]).await);
    // Back to following the tag, which now names what is staged locked.
    let mut state = w.host.state();
    state.spec_image = w.image();
    cairn_testkit::host::write_state(&w.host.dir, &state);
    w.move_stable(&w.second.0).await;

    let output = w.bootc(&["upgrade"]).await;
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        "Staged deployment will now be applied on reboot\n"
    );
    let staged = w.host.state().staged.expect("still staged");
    assert!(!staged.download_only);
    assert_eq!(staged.digest, w.second.1[0].manifest);
}

#[tokio::test]
async fn the_update_timer_boots_what_the_tag_names() {
    let w = world().await;
    w.move_stable(&w.second.0).await;
    let upgraded = w.host.timer_run().await;
    assert_eq!(
        upgraded,
        Upgraded::Rebooted {
            digest: w.second.1[0].manifest.clone(),
            version: Some("44.2".into())
        }
    );
    let state = w.host.state();
    assert_eq!(state.staged, None);
    assert_eq!(state.apply_pid, None);
    assert_eq!(
        state.rollback.map(|r| r.digest).as_ref(),
        Some(&w.first.1[0].manifest)
    );
    assert!(
        state.calls.iter().any(|c| c == "upgrade --apply --quiet"),
        "{:?}",
        state.calls
    );

    // The tag has not moved since: the next run finds nothing to do.
    assert_eq!(w.host.timer_run().await, Upgraded::NoUpdate);
    assert_eq!(
        w.host.booted().map(|b| b.digest).as_ref(),
        Some(&w.second.1[0].manifest)
    );
}

#[tokio::test]
async fn upgrade_apply_reboots_into_an_already_staged_update() {
    let w = world().await;
    w.move_stable(&w.second.0).await;
    assert_success(&w.bootc(&["upgrade"]).await);
    assert_eq!(
        w.host.timer_run().await,
        Upgraded::Rebooted {
            digest: w.second.1[0].manifest.clone(),
            version: Some("44.2".into())
        }
    );
}

#[tokio::test]
async fn a_tag_moved_back_stages_the_older_release() {
    let w = world().await;
    w.move_stable(&w.second.0).await;
    assert!(matches!(
        w.host.timer_run().await,
        Upgraded::Rebooted { .. }
    ));

    // bootc has no downgrade check: the older release is queued and booted.
    w.move_stable(&w.first.0).await;
    let older = &w.first.1[0].manifest;
    let output = w.bootc(&["upgrade"]).await;
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        format!(
            "Queued for next boot: {}\n  Version: 44.1\n  Digest: {older}\n",
            w.image()
        )
    );
    assert_eq!(
        w.host.timer_run().await,
        Upgraded::Rebooted {
            digest: older.clone(),
            version: Some("44.1".into())
        }
    );
}

#[tokio::test]
async fn nothing_new_is_no_update_and_no_reboot() {
    let w = world().await;
    let output = w.bootc(&["upgrade"]).await;
    assert_success(&output);
    assert_eq!(stdout(&output), "No update available.\n");
    // `--apply` in either order returns at once when nothing changed.
    let output = w.bootc(&["upgrade", "--quiet", "--apply"]).await;
    assert_success(&output);
    assert_eq!(stdout(&output), "No update available.\n");
    let state = w.host.state();
    assert_eq!(state.staged, None);
    assert_eq!(state.apply_pid, None);
    assert_eq!(w.host.timer_run().await, Upgraded::NoUpdate);
    assert_eq!(
        w.host.booted().map(|b| b.digest).as_ref(),
        Some(&w.first.1[0].manifest)
    );
}

#[tokio::test]
async fn unknown_or_repeated_upgrade_flags_are_usage_errors() {
    let w = world().await;
    for args in [
        &["upgrade", "--apply", "--apply"][..],
        &["upgrade", "--check"],
        &["upgrade", "--quiet", "--download-only"],
    ] {
        let output = w.bootc(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    assert_eq!(w.host.state().staged, None);
}

#[tokio::test]
async fn the_registry_log_counts_a_manifest_put_and_not_a_get() {
    let w = world().await;
    let before = w.registry.requests();
    let writes_before = w.registry.write_requests();
    assert_eq!(
        writes_before,
        before.iter().filter(|r| r.is_write()).count()
    );
    assert!(writes_before > 0, "writing the releases wrote: {before:?}");

    // Tagging reads the manifest (GET) and writes it under the tag (PUT).
    w.move_stable(&w.second.0).await;
    let after = w.registry.requests();
    let new = &after[before.len()..];
    let manifest = format!("/v2/{REPOSITORY}/manifests/");
    assert!(
        new.iter()
            .any(|r| r.method == "GET" && r.uri == format!("{manifest}{}", w.second.0)),
        "{new:?}"
    );
    assert!(
        new.iter()
            .any(|r| r.method == "PUT" && r.uri == format!("{manifest}stable") && r.status == 201),
        "{new:?}"
    );
    assert_eq!(w.registry.write_requests(), writes_before + 1, "{new:?}");

    // Reads alone write nothing, and the log's own marker requests never show.
    let read = w.bootc(&["upgrade"]).await;
    assert_success(&read);
    assert_eq!(w.registry.write_requests(), writes_before + 1);
    assert!(
        w.registry
            .requests()
            .iter()
            .all(|r| !r.uri.contains("cairn-testkit")),
        "marker requests leaked"
    );
}

#[tokio::test]
async fn a_resumed_registry_starts_a_new_log() {
    let mut w = world().await;
    assert!(!w.registry.requests().is_empty());
    w.registry.stop();
    w.registry.resume();
    assert_eq!(w.registry.requests(), Vec::new());
    w.move_stable(&w.second.0).await;
    assert_eq!(w.registry.write_requests(), 1);
}

#[tokio::test]
async fn the_registry_log_also_counts_on_registries_that_demand_credentials() {
    for auth in [Auth::Htpasswd, Auth::Token] {
        let registry = TestRegistry::start(auth).await;
        let store = registry.store(REPOSITORY);
        let before = registry.write_requests();
        let (index, _) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
        let between = registry.requests();
        add_tags(&store, &index, &["stable"]).await;
        let after = registry.requests();
        let tagged: Vec<_> = after[between.len()..]
            .iter()
            .filter(|r| r.is_write() && r.status == 201)
            .collect();
        assert_eq!(tagged.len(), 1, "{auth:?}: {:?}", &after[between.len()..]);
        assert_eq!(tagged[0].uri, format!("/v2/{REPOSITORY}/manifests/stable"));
        assert!(
            registry.write_requests() > before,
            "{auth:?}: writing a release wrote nothing: {after:?}"
        );
        assert!(
            after.iter().all(|r| !r.uri.contains("cairn-testkit")),
            "{auth:?}: marker requests leaked"
        );
    }
}
