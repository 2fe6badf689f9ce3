//! Policy mistakes and what publishing says about the policy, through the
//! `cairn` binary, on an OCI layout (no registry needed).

mod common;
use common::publish::Publish;

use cairn_oci::Store;
use cairn_oci::layout::Layout;
use cairn_testkit::{ImageSpec, write_image};
use std::path::{Path, PathBuf};
use std::process::Output;

const T0: &str = "2026-03-10T12:00:00Z";

/// A layout with releases `1.0` and `1.1` of stream `stable`, and a scratch
/// directory for the policy and the cache.
struct Setup {
    dir: tempfile::TempDir,
    location: String,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout_dir = dir.path().join("layout");
        let store = Store::Layout(Layout::open_or_create(&layout_dir).expect("layout"));
        for (version, created) in [
            ("1.0", "2026-01-01T00:00:00Z"),
            ("1.1", "2026-01-02T00:00:00Z"),
        ] {
            let spec = ImageSpec::bootable("amd64", version, "stable", created);
            write_image(&store, &spec, Some(version)).await;
        }
        let location = format!("oci:{}", layout_dir.display());
        Setup { dir, location }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn policy_path(&self) -> String {
        self.path("updates.json").display().to_string()
    }

    /// `cairn policy --policy updates.json --now T0 <args>`.
    fn policy(&self, args: &[&str]) -> Output {
        let policy = self.policy_path();
        let mut all = vec!["policy", "--policy", policy.as_str(), "--now", T0];
        all.extend(args);
        common::cairn(&all)
    }

    fn publish(&self) -> Publish {
        Publish::unsigned(&self.location)
            .cache(self.path("cache.json"))
            .policy(self.path("updates.json"))
            .args(["--now", T0])
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    stderr(out)
}

fn exists(path: &Path) -> bool {
    path.try_exists().expect("stat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_is_for_one_stream() {
    let s = Setup::new().await;
    let policy = s.policy_path();
    // A new policy names its stream.
    for stream in [&[][..], &["--stream", ""][..], &["--stream", "  "][..]] {
        let mut args = stream.to_vec();
        args.extend(["rollout", "start", "1.1", "--over", "2d"]);
        assert_eq!(
            failed(&s.policy(&args)),
            format!(
                "cairn: error: {policy} does not exist yet: name the stream it is for with \
                 --stream (the --stream you publish with)\n"
            )
        );
    }
    assert!(!exists(&s.path("updates.json")));
    let args = [
        "--stream", "stable", "rollout", "start", "1.1", "--over", "2d",
    ];
    assert!(s.policy(&args).status.success());
    // Another stream's edit is refused, and so is publishing it as another stream.
    let args = [
        "--stream", "testing", "barrier", "add", "1.0", "--reason", "x",
    ];
    assert_eq!(
        failed(&s.policy(&args)),
        format!(
            "cairn: error: {policy}: the policy is for stream \"stable\", not --stream \"testing\"\n"
        )
    );
    let out = s.publish().stream("testing").output();
    assert_eq!(
        failed(&out),
        format!(
            "cairn: error: {policy}: the policy is for stream \"stable\", not --stream \
             \"testing\" (publish --stream \"stable\", or use the policy of stream \"testing\")\n"
        )
    );
    assert!(
        s.publish()
            .run()
            .stdout
            .contains("published unsigned document")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_entry_that_names_no_release_fails_the_publish_unless_allowed() {
    let s = Setup::new().await;
    let args = [
        "--stream", "stable", "rollout", "start", "1.10", "--over", "2d",
    ];
    assert!(s.policy(&args).status.success());
    let expected = "cairn: error: --policy: the policy names no release 1.10, so its settings \
                    there would apply to nothing (a typo? fix the version with `cairn policy`, \
                    or publish with --allow-unknown-releases if the release is still to come)\n";
    for dry_run in [false, true] {
        let publish = if dry_run {
            s.publish().arg("--dry-run")
        } else {
            s.publish()
        };
        let err = failed(&publish.output());
        assert!(err.ends_with(expected), "{err}");
    }
    let out = s.publish().arg("--allow-unknown-releases").run();
    assert!(
        out.stderr.contains(
            "cairn: warning: policy entry for 1.10 names no release in the repository, \
             so it applies to nothing\n"
        ),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_value_the_policy_no_longer_mentions_is_named_with_its_remedy() {
    let s = Setup::new().await;
    let args = [
        "--stream",
        "stable",
        "barrier",
        "add",
        "1.0",
        "--reason",
        "https://x",
    ];
    assert!(s.policy(&args).status.success());
    s.publish().run();
    // The release team deletes the entry by hand, expecting the barrier to go.
    std::fs::write(
        s.path("updates.json"),
        r#"{"stream": "stable", "releases": []}"#,
    )
    .expect("write");
    let warning = "cairn: warning: 1.0: the published document has barrier \"https://x\", \
                   which the policy no longer mentions; it stays published (remove it with \
                   `cairn policy barrier remove 1.0`)\n";
    let out = s.publish().run();
    assert!(out.stderr.contains(warning), "{}", out.stderr);
    // The remedy works on a policy without the entry, and the warning goes.
    let out = s.policy(&["barrier", "remove", "1.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.publish().run();
    assert!(!out.stderr.contains("no longer mentions"), "{}", out.stderr);
    let show = common::ok(&["graph", "show", "--document", &s.location]);
    assert!(!show.contains("barrier ("), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_rollout_resumes_at_its_pace_and_reasons_are_required() {
    let s = Setup::new().await;
    let args = [
        "--stream", "stable", "rollout", "start", "1.1", "--over", "2d",
    ];
    assert!(s.policy(&args).status.success());
    let policy = s.policy_path();
    let at = |now: &str, args: &[&str]| {
        let mut all = vec!["policy", "--policy", policy.as_str(), "--now", now];
        all.extend(args);
        common::ok(&all)
    };
    let paused = at("2026-03-11T12:00:00Z", &["rollout", "pause", "1.1"]);
    assert!(
        paused.starts_with(
            "changed: 1.1: rollout paused at 50%; `resume` grows it again over the 1 d it had left\n"
        ),
        "{paused}"
    );
    let resumed = at("2026-03-20T00:00:00Z", &["rollout", "resume", "1.1"]);
    assert!(
        resumed.starts_with("changed: 1.1: rollout resumed from 50% over 1 d\n"),
        "{resumed}"
    );
    // --reason is required, and the help says so.
    let out = s.policy(&["barrier", "add", "1.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--reason <REASON>"),
        "{}",
        stderr(&out)
    );
    for what in ["barrier", "deadend"] {
        let help = common::ok(&["policy", what, "add", "--help"]);
        assert!(help.contains("Required: why"), "{help}");
        let help = common::ok(&["policy", what, "--help"]);
        assert!(help.contains("(--reason is required)"), "{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_says_what_changes_in_the_policy_words() {
    let s = Setup::new().await;
    let start = [
        "--stream", "stable", "rollout", "start", "1.1", "--over", "2d", "--from", "5%",
    ];
    assert!(s.policy(&start).status.success());
    let barrier = ["barrier", "add", "1.0", "--reason", "https://example.org/a"];
    assert!(s.policy(&barrier).status.success());
    s.publish().run();
    let barrier = ["barrier", "add", "1.0", "--reason", "x"];
    assert!(s.policy(&barrier).status.success());
    let pause = ["rollout", "pause", "1.1"];
    assert!(s.policy(&pause).status.success());
    let diff = s.publish().arg("--dry-run").run().stdout;
    assert_eq!(
        diff,
        "1.0: barrier reason \"x\" (was \"https://example.org/a\")\n\
         1.1: rollout paused at 5% (was 5% → 100% over 2 d from 2026-03-10 12:00 UTC)\n"
    );
    s.publish().run();
    let show = common::ok(&["graph", "show", "--document", &s.location, "--now", T0]);
    assert!(show.contains("rollout 5.0%, paused"), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_publish_explains_its_defaults_and_counts_cairns_own_tags_apart() {
    let s = Setup::new().await;
    let first = Publish::unsigned(&s.location)
        .cache(s.path("cache.json"))
        .args(["--now", T0])
        .run();
    assert_eq!(
        first.stderr,
        "cairn: scanned 2 image tags: 2 releases (2 new); also 0 of Cairn's own tags \
         (documents, keep tags)\n\
         cairn: 2 new release(s) without a policy entry get rollout 100.0%, offered to every \
         host at once: 1.0, 1.1 (--default-rollout none offers new releases to nobody until \
         the policy names them)\n\
         cairn: tagged 2 barrier or target image(s) so garbage collection keeps them\n\
         cairn: 0 HTTP requests in all\n"
    );
    let again = Publish::unsigned(&s.location)
        .cache(s.path("cache.json"))
        .args(["--now", T0])
        .run();
    assert!(
        again.stderr.starts_with(
            "cairn: scanned 2 image tags: 2 releases (0 new); also 3 of Cairn's own tags \
             (documents, keep tags)\n"
        ),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("without a policy entry"));
}

/// A 2-day rollout halted at about 5% and cleared 2 days later restarts at
/// about 5% over the time it had left, not at the clock's 100%: the clear
/// reads the halt's time from the halt list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_halt_restarts_the_rollout_where_it_stood_when_halted() {
    let s = Setup::new().await;
    let now = jiff::Timestamp::now();
    let policy = s.policy_path();
    let key = s.path("team.key").display().to_string();
    common::ok(&[
        "document",
        "keygen",
        "--output",
        &s.path("team").display().to_string(),
    ]);
    // Started 2 h 24 min ago over 2 days: at 5% now, when it is halted.
    let started = (now - jiff::SignedDuration::from_mins(144))
        .as_second()
        .to_string();
    common::ok(&[
        "policy", "--policy", &policy, "--stream", "stable", "rollout", "start", "1.1", "--over",
        "2d", "--at", &started,
    ]);
    let halts = format!("oci:{}", s.path("halts").display());
    Publish::signed(&s.location, &key)
        .cache(s.path("cache.json"))
        .policy(s.path("updates.json"))
        .args(["--halt-list", &halts])
        .run();
    let document = format!("{}:cairn-graph-stable", s.location);
    let added = common::ok(&[
        "halt",
        "add",
        "1.1",
        "--halt-list",
        &halts,
        "--key",
        &key,
        "--document",
        &document,
        "--who",
        "tester",
    ]);
    assert!(added.starts_with("halted 1.1"), "{added}");
    // Neither --from nor --halt-list: the clear cannot tell where it stood.
    let two_days_later = (now + jiff::SignedDuration::from_hours(48)).to_string();
    let clear = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "--policy",
            &policy,
            "--now",
            &two_days_later,
            "halt",
            "clear",
            "1.1",
        ];
        args.extend(extra);
        common::cairn(&args)
    };
    let refused = clear(&[]);
    assert!(
        failed(&refused).contains("give the halt list (--halt-list, for the time of the halt) or the starting point (--from)"),
        "{}",
        stderr(&refused)
    );
    let out = clear(&[
        "--halt-list",
        &halts,
        "--halt-key",
        &s.path("team.pub").display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&policy).expect("policy");
    let updates = cairn_graph::fcos::Updates::from_json(text.as_bytes()).expect("policy");
    let settings = updates.settings("1.1").expect("entry");
    let rollout = settings.rollout.expect("rollout");
    let from = rollout.start_value();
    assert!(
        (0.05..0.051).contains(&from),
        "restarts at {from}, not about 5%"
    );
    assert_eq!(
        rollout.start(),
        two_days_later
            .parse::<jiff::Timestamp>()
            .expect("time")
            .as_second()
    );
    // The 95% of 2 days it had left, give or take the test's own seconds.
    let minutes = rollout.duration_minutes.expect("a duration");
    assert!((2730..=2736).contains(&minutes), "{minutes} minutes");
    assert!(settings.halt_cleared.is_some());
}
