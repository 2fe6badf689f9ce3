//! Outcome reports end to end: real `cairn agent` daemons on stand-in hosts
//! following the published stream of [`common::fleet`], sending to the
//! collector stand-in of `cairn_testkit::collector`, which keeps every byte.
//! Failures and `rebooting` go at once, healthy boots after their delay,
//! the queue outlives SIGKILL and an outage, nothing at all is sent without
//! `[reports]`, and what is sent is exactly what docs/agent.md lists.

mod common;
use common::agent::{Daemon, Node};
use common::fleet::{Published, command, fragment, history_words, node, published, status_json};
use common::served::serve;
use common::systemctl::FakeSystemctl;
use common::wait_until;

use cairn_testkit::collector::{Answer, Captured, CollectorStandIn};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "report-token-0123456789abcdef";
const MACHINE_ID: &str = "5f1e2d3c4b5a69788796a5b4c3d2e1f0";
const BOOT_ID: &str = "0b5c3d7e-9f21-4a6b-8c0d-e1f2a3b4c5d6";

/// A host on 44.2 at wariness 0.3 (44.3 is its target), reporting to
/// `collector` with healthy boots delayed up to `max_delay` seconds.
fn reporting_node(p: &Published, name: &str, collector: &CollectorStandIn, max_delay: u64) -> Node {
    reporting_to(p, name, &collector.url, max_delay)
}

/// [`reporting_node`], reporting to the server at `url`.
fn reporting_to(p: &Published, name: &str, url: &str, max_delay: u64) -> Node {
    let token = p.dir.path().join(format!("{name}.token"));
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    node(
        p,
        name,
        1,
        &format!(
            "{}[reports]\nurl = \"{}\"\ntoken_file = \"{}\"\nmax_delay_seconds = {max_delay}\n",
            fragment(p, 0.3),
            url,
            token.display()
        ),
    )
}

/// `cairn agent` for `n`, retrying failed sends after 200 ms at first.
fn daemon(p: &Published, n: &Node) -> Daemon {
    command(p, n, &["agent"])
        .args(["--report-backoff-ms", "200"])
        .daemon(&n.state)
}

/// The same, asking a stand-in `systemctl` about the boot's health.
fn daemon_with_health(p: &Published, n: &Node, systemctl: &FakeSystemctl) -> Daemon {
    command(p, n, &["agent"])
        .systemctl(&systemctl.path)
        .args(["--report-backoff-ms", "200"])
        .daemon(&n.state)
}

/// The reports the collector took, by outcome word.
fn outcomes(reports: &[Value]) -> Vec<String> {
    reports
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn queue(n: &Node) -> Value {
    std::fs::read(Path::new(&n.state).join("reports.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn queued_outcomes(n: &Node) -> Vec<String> {
    queue(n)["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    e["report"]["outcome"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// When the history recorded `word` (the time the report was made).
fn recorded(n: &Node, word: &str) -> jiff::Timestamp {
    let text = std::fs::read_to_string(Path::new(&n.state).join("history.jsonl")).expect("history");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["result"] == word)
        .and_then(|r| r["finished"].as_str().and_then(|t| t.parse().ok()))
        .unwrap_or_else(|| panic!("no {word} in {text}"))
}

fn at(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_is_reported_at_once_and_rebooting_before_the_reboot() {
    let p = published().await;
    let collector = CollectorStandIn::start(Answer::Counted).await;
    // Healthy boots would wait up to an hour: failures must not.
    let n = reporting_node(&p, "fails", &collector, 3600);
    let _agent = daemon(&p, &n);
    n.host.wait_for_apply().await;
    // The host is going down: `rebooting` left before it.
    assert_eq!(outcomes(&collector.counted()), ["rebooting"]);
    n.host.reboot(false);
    wait_until("the failed boot is reported", || {
        collector.counted().len() == 2
    })
    .await;
    let reports = collector.counted();
    assert_eq!(outcomes(&reports), ["rebooting", "boot_failed"]);
    let requests = collector.requests();
    let failed = &requests[1];
    let waited = failed.received.duration_since(recorded(&n, "boot_failed"));
    assert!(waited.as_secs() < 5, "sent {waited} after it was recorded");
    let digest = |i: usize| p.digests[i].as_str();
    for report in &reports {
        assert_eq!(report["from"]["version"], "44.2", "{report}");
        assert_eq!(report["from"]["digest"], digest(1), "{report}");
        assert_eq!(report["to"]["version"], "44.3", "{report}");
        assert_eq!(report["to"]["digest"], digest(2), "{report}");
    }
    assert_ne!(reports[0]["id"], reports[1]["id"], "a fresh id per report");
    wait_until("status shows the queue empty", || {
        let status = status_json(&n);
        status["reports"]["queued"] == 0 && status["reports"]["sent"] == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_boot_is_reported_after_its_random_delay() {
    let p = published().await;
    let collector = CollectorStandIn::start(Answer::Counted).await;
    let n = reporting_node(&p, "healthy", &collector, 4);
    let systemctl = FakeSystemctl::new(&p.dir.path().join("healthy-systemctl"));
    let _agent = daemon_with_health(&p, &n, &systemctl);
    n.host.wait_for_apply().await;
    // Each answer waits a second, so the report is still queued (with its
    // delay) when the request arrives.
    collector.hold(Duration::from_secs(1));
    systemctl.boot(false, None);
    n.host.reboot(true);
    wait_until("the healthy boot is reported", || {
        collector
            .requests()
            .iter()
            .any(|r| r.json()["outcome"] == "booted_healthy")
    })
    .await;
    let request = collector
        .requests()
        .into_iter()
        .find(|r| r.json()["outcome"] == "booted_healthy")
        .expect("the request");
    let entry = queue(&n)["entries"]
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e["report"]["id"] == request.json()["id"])
                .cloned()
        })
        .expect("still queued while the answer is held");
    let (created, not_before) = (at(&entry["created"]), at(&entry["not_before"]));
    assert_eq!(created, recorded(&n, "booted_healthy"));
    let delay = not_before.duration_since(created);
    assert!(
        delay >= jiff::SignedDuration::ZERO && delay <= jiff::SignedDuration::from_secs(4),
        "a delay of {delay} is outside [0, 4 s]"
    );
    assert!(
        request.received >= not_before,
        "sent at {}, before its time {not_before}",
        request.received
    );
    wait_until("the queue drains", || queued_outcomes(&n).is_empty()).await;
    assert_eq!(
        outcomes(&collector.counted()),
        ["rebooting", "booted_healthy"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_survives_sigkill_and_an_outage_and_drains_afterwards() {
    let p = published().await;
    let collector = CollectorStandIn::start(Answer::Down).await;
    let n = reporting_node(&p, "outage", &collector, 3600);
    let agent = daemon(&p, &n);
    n.host.wait_for_apply().await;
    n.host.reboot(false);
    wait_until("both reports wait in the queue", || {
        queued_outcomes(&n) == ["rebooting", "boot_failed"]
    })
    .await;
    wait_until("the agent tried the collector", || {
        collector.connections() >= 2
    })
    .await;
    wait_until("status shows why they wait", || {
        status_json(&n)["reports"]["lastError"].is_string()
    })
    .await;
    let ids: Vec<Value> = queue(&n)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["report"]["id"].clone())
        .collect();
    // SIGKILL: nothing of the agent's runs after it.
    drop(agent);
    assert!(collector.counted().is_empty());

    // Back, but over the per-address limit for a second.
    collector.answer(Answer::AddressLimit(1));
    let _agent = daemon(&p, &n);
    let limited_ids = || -> BTreeSet<String> {
        collector
            .requests()
            .iter()
            .filter(|r| r.status == 429)
            .map(|r| r.json()["id"].to_string())
            .collect()
    };
    wait_until("both reports met the limit", || limited_ids().len() == 2).await;
    let limited = collector
        .requests()
        .into_iter()
        .find(|r| r.status == 429)
        .expect("limited");
    collector.answer(Answer::Counted);
    wait_until("the queue drains", || collector.counted().len() == 2).await;
    let counted = collector.counted();
    let sent: BTreeSet<String> = counted.iter().map(|r| r["id"].to_string()).collect();
    let kept: BTreeSet<String> = ids.iter().map(Value::to_string).collect();
    assert_eq!(
        sent, kept,
        "the same reports, with the ids they were made with"
    );
    let retried = collector
        .requests()
        .into_iter()
        .find(|r| r.status == 200 && r.json()["id"] == limited.json()["id"])
        .expect("the limited report, sent again");
    assert!(
        retried.received.duration_since(limited.received) >= jiff::SignedDuration::from_secs(1),
        "Retry-After is honoured"
    );
    wait_until("status shows the queue empty", || {
        let reports = &status_json(&n)["reports"];
        reports["queued"] == 0 && reports["lastError"].is_null()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_when_reports_are_not_configured() {
    let p = published().await;
    // The same host and stream, without `[reports]`.
    let n = node(&p, "silent", 1, &fragment(&p, 0.3));
    let _agent = daemon(&p, &n);
    n.host.wait_for_apply().await;
    n.host.reboot(false);
    wait_until("the failed boot is judged", || {
        status_json(&n)["lastOutcome"]["outcome"] == "boot_failed"
    })
    .await;
    let status = status_json(&n);
    assert_eq!(status["reports"]["enabled"], false, "{status}");
    assert_eq!(status["reports"]["queued"], 0, "{status}");
    assert!(!Path::new(&n.state).join("reports.json").exists());
    let text = common::ok(&[
        "status",
        "--state-dir",
        &n.state,
        "--socket",
        &format!("{}/agent.sock", n.state),
    ]);
    assert!(text.contains("Reports:    off"), "{text}");
}

/// The headers and body keys docs/agent.md lists, from its table of what a
/// report carries: rows `| header | `name` | … |` and `| body | `key` | … |`.
fn documented() -> (BTreeSet<String>, BTreeSet<String>) {
    let doc = include_str!("../../../docs/agent.md");
    let table = &doc[doc
        .find("### What a report carries")
        .expect("docs/agent.md: a table of what a report carries")..];
    let mut headers = BTreeSet::new();
    let mut body = BTreeSet::new();
    for row in table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let names = cells.get(2).copied().unwrap_or_default();
        let quoted = names.split('`').skip(1).step_by(2).map(str::to_string);
        match cells.get(1).copied() {
            Some("header") => headers.extend(quoted),
            Some("body") => body.extend(quoted),
            _ => {}
        }
    }
    (headers, body)
}

/// A JSON object's keys, nested ones as `outer.inner`.
fn keys(value: &Value, prefix: &str, into: &mut BTreeSet<String>) {
    if let Some(object) = value.as_object() {
        for (key, inner) in object {
            let name = format!("{prefix}{key}");
            if inner.is_object() {
                keys(inner, &format!("{name}."), into);
            } else {
                into.insert(name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_sent_is_on_the_documented_list_and_nothing_identifies_the_host() {
    let p = published().await;
    let collector = CollectorStandIn::start(Answer::Counted).await;
    let n = reporting_node(&p, "private", &collector, 0);
    std::fs::write(
        Path::new(&n.root).join("etc/machine-id"),
        format!("{MACHINE_ID}\n"),
    )
    .expect("machine-id");
    let boot_id = Path::new(&n.root).join("proc/sys/kernel/random");
    std::fs::create_dir_all(&boot_id).expect("mkdir");
    std::fs::write(boot_id.join("boot_id"), format!("{BOOT_ID}\n")).expect("boot_id");
    let _agent = daemon(&p, &n);
    n.host.wait_for_apply().await;
    n.host.reboot(false);
    wait_until("both reports arrived", || collector.counted().len() == 2).await;

    let (documented_headers, documented_body) = documented();
    let requests: Vec<Captured> = collector.requests();
    assert_eq!(requests.len(), 2);
    let host = collector.url.trim_start_matches("http://");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let hostname = hostname.trim();
    let mut ids = BTreeSet::new();
    for request in &requests {
        assert_eq!(request.request_line(), "POST /v2/reports/stable HTTP/1.1");
        let headers = request.headers();
        let names: BTreeSet<String> = headers.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, documented_headers, "every header, and only those");
        assert_eq!(names.len(), headers.len(), "each once: {headers:?}");
        let body = request.json();
        let mut body_keys = BTreeSet::new();
        keys(&body, "", &mut body_keys);
        assert_eq!(
            body_keys, documented_body,
            "every key, and only those: {body}"
        );
        // Every value is one the docs name, from public facts of the release.
        let mut expected = [
            ("host", host.to_string()),
            ("authorization", format!("Bearer {TOKEN}")),
            ("content-type", "application/json".to_string()),
            ("accept", "application/json".to_string()),
            (
                "user-agent",
                format!("cairn-agent/{}", env!("CARGO_PKG_VERSION")),
            ),
            ("content-length", request.body().len().to_string()),
        ];
        expected.sort();
        let mut seen = headers.clone();
        seen.sort();
        assert_eq!(
            seen,
            expected
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect::<Vec<_>>()
        );
        assert_eq!(body["from"]["version"], "44.2");
        assert_eq!(body["from"]["digest"], p.digests[1].as_str());
        assert_eq!(body["to"]["version"], "44.3");
        assert_eq!(body["to"]["digest"], p.digests[2].as_str());
        assert_eq!(body["agent_version"], env!("CARGO_PKG_VERSION"));
        let id = body["id"].as_str().expect("an id");
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        ids.insert(id.to_string());
        // Nothing stable of the host, anywhere in the bytes.
        let raw = String::from_utf8_lossy(&request.raw);
        for secret in [MACHINE_ID, BOOT_ID, "0.3"] {
            assert!(!raw.contains(secret), "{secret:?} was sent: {raw}");
        }
        let allowed: String = expected.iter().map(|(_, v)| v.as_str()).collect();
        if !hostname.is_empty() && !allowed.contains(hostname) {
            assert!(!raw.contains(hostname), "the host name was sent: {raw}");
        }
    }
    assert_eq!(ids.len(), 2, "a fresh id for each report");
    assert_eq!(outcomes(&collector.counted()), ["rebooting", "boot_failed"]);
}

/// Poll `done` every 100 ms for up to `seconds`; a fleet of daemons on two
/// cores needs longer than [`wait_until`]'s bound.
async fn wait_long(what: &str, seconds: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {seconds} s waiting until {what}");
}

/// The collector's answer for 44.3 in `GET /v2/reports/stable`.
async fn counts_of_44_3(url: &str) -> Value {
    let Ok(answer) = reqwest::get(format!("{url}/v2/reports/stable")).await else {
        return Value::Null;
    };
    let Ok(body) = answer.bytes().await else {
        return Value::Null;
    };
    let Ok(summary) = serde_json::from_slice::<Value>(&body) else {
        return Value::Null;
    };
    summary["releases"]
        .as_array()
        .and_then(|releases| releases.iter().find(|r| r["version"] == "44.3").cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hosts_report_to_cairn_serve_and_its_counts_match_their_boots() {
    let p = published().await;
    let dir = p.dir.path().join("collector");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("report.token"), format!("{TOKEN}\n")).expect("token");
    // Every host reports from 127.0.0.1: the loopback range is exempt from
    // the per-address limit, as a fleet behind one NAT would be.
    std::fs::write(
        dir.join("server.toml"),
        format!(
            "refresh_interval_seconds = 1\ninsecure_registries = [\"{registry}\"]\n\
             [[stream]]\nname = \"stable\"\n\
             document = {{ location = \"{repo}:cairn-graph-stable\", keys = [\"{key}\"] }}\n\
             [reports]\ndatabase = \"reports.sqlite\"\nexempt_networks = [\"127.0.0.0/8\"]\n\
             missing_after_seconds = 2\n\
             [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n",
            registry = p.registry.host,
            repo = p.repo,
            key = p.public_key,
        ),
    )
    .expect("server config");
    let server = serve(&dir);
    // 12 boots come up healthy, 5 fail (the host comes back on 44.2), and 3
    // hosts reboot and are never heard from again.
    const HEALTHY: usize = 12;
    const FAILED: usize = 5;
    const GONE: usize = 3;
    let mut healthy = Vec::new();
    for i in 0..HEALTHY {
        let n = reporting_to(&p, &format!("healthy-{i}"), &server.url, 3);
        let systemctl = FakeSystemctl::new(&p.dir.path().join(format!("healthy-{i}-systemctl")));
        let agent = daemon_with_health(&p, &n, &systemctl);
        healthy.push((n, systemctl, agent));
    }
    let mut failed = Vec::new();
    for i in 0..FAILED {
        let n = reporting_to(&p, &format!("failed-{i}"), &server.url, 3);
        let agent = daemon(&p, &n);
        failed.push((n, agent));
    }
    let mut gone = Vec::new();
    for i in 0..GONE {
        let n = reporting_to(&p, &format!("gone-{i}"), &server.url, 3);
        let agent = daemon(&p, &n);
        gone.push((n, agent));
    }
    for (n, systemctl, _) in &healthy {
        n.host.wait_for_apply().await;
        systemctl.boot(false, None);
        n.host.reboot(true);
    }
    for (n, _) in &failed {
        n.host.wait_for_apply().await;
        n.host.reboot(false);
    }
    // The rest go down for good once their `rebooting` left.
    for (n, _) in &gone {
        n.host.wait_for_apply().await;
    }
    let url = server.url.clone();
    wait_long(
        "every host's rebooting report was counted",
        120,
        async || counts_of_44_3(&url).await["counts"]["rebooting"] == 20,
    )
    .await;
    for (_, agent) in gone.drain(..) {
        drop(agent);
    }
    // Healthy boots arrive after their random delay (up to 3 s here).
    wait_long("every final outcome was counted", 180, async || {
        let release = counts_of_44_3(&url).await;
        release["counts"]["booted_healthy"] == HEALTHY && release["counts"]["boot_failed"] == FAILED
    })
    .await;
    wait_long(
        "the hosts that never came back count as missing",
        60,
        async || counts_of_44_3(&url).await["missing"] == GONE,
    )
    .await;
    let release = counts_of_44_3(&url).await;
    assert_eq!(release["digest"], p.digests[2].as_str(), "{release}");
    assert_eq!(release["rebooting"], 20, "{release}");
    assert_eq!(release["failures"], FAILED, "{release}");
    assert_eq!(release["failure_share"], 0.25, "{release}");
    for (outcome, expected) in [
        ("rebooting", 20),
        ("booted_healthy", HEALTHY),
        ("boot_failed", FAILED),
        ("booted_unverified", 0),
        ("booted_unhealthy", 0),
        ("rolled_back", 0),
        ("rollback_failed", 0),
    ] {
        assert_eq!(release["counts"][outcome], expected, "{outcome}: {release}");
    }
    // Each host agrees with what the server counted for it.
    for (n, _, _) in &healthy {
        assert_eq!(
            status_json(n)["lastOutcome"]["outcome"],
            "booted_healthy",
            "{}",
            n.state
        );
    }
    for (n, _) in &failed {
        assert_eq!(status_json(n)["lastOutcome"]["outcome"], "boot_failed");
    }
}

/// Poll `n`'s status until `done` holds, for up to 2 minutes; a timeout
/// shows the last status.
async fn status_until(n: &common::agent::Node, what: &str, done: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = Value::Null;
    while std::time::Instant::now() < deadline {
        last = status_json(n);
        if done(&last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting until {what}: {last:#}");
}

/// The versions `/v1/graph` (as Zincati asks it, at wariness 0) has edges into.
async fn v1_edge_targets(url: &str) -> BTreeSet<String> {
    let Ok(reply) = reqwest::get(format!(
        "{url}/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0"
    ))
    .await
    else {
        return BTreeSet::new();
    };
    let answer: Value = match reply.bytes().await {
        Ok(body) => serde_json::from_slice(&body).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let nodes = answer["nodes"].as_array().cloned().unwrap_or_default();
    answer["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge[1].as_u64())
        .filter_map(|to| nodes.get(to as usize))
        .filter_map(|node| node["version"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_halts_a_release_failing_on_its_first_hosts_and_no_host_takes_it_after() {
    let p = published().await;
    let d = |name: &str| p.dir.path().join(name).display().to_string();
    let host = p.registry.host.clone();
    let halt_repo = format!("{host}/acme/os-halts");
    common::ok(&["document", "keygen", "--output", &d("halt")]);
    // The release team turns halt lists on for the stream.
    let publish = || {
        common::publish::Publish::signed(&p.repo, d("team.key"))
            .policy(d("updates.json"))
            .insecure_registry(&host)
            .cache(d("cache.json"))
            .args(["--halt-key", &d("halt.pub")])
    };
    publish().arg("--halt-list").arg(&halt_repo).run();

    let dir = p.dir.path().join("server");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("report.token"), format!("{TOKEN}\n")).expect("token");
    std::fs::write(
        dir.join("server.toml"),
        format!(
            "refresh_interval_seconds = 1\ninsecure_registries = [\"{host}\"]\n\
             [[stream]]\nname = \"stable\"\n\
             document = {{ location = \"{repo}:cairn-graph-stable\", keys = [\"{team}\"] }}\n\
             [reports]\ndatabase = \"reports.sqlite\"\nexempt_networks = [\"127.0.0.0/8\"]\n\
             [halts]\nhalt_keys = [\"{halt_pub}\"]\ndatabase = \"halts.sqlite\"\n\
             [guard]\nhalt_key = \"{halt_key}\"\ncheck_interval_seconds = 1\n\
             [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n",
            repo = p.repo,
            team = p.public_key,
            halt_pub = d("halt.pub"),
            halt_key = d("halt.key"),
        ),
    )
    .expect("server config");
    let server = serve(&dir);
    let url = server.url.clone();
    wait_long("cairn serve offers 44.3", 60, async || {
        v1_edge_targets(&url).await.contains("44.3")
    })
    .await;

    // 44.3's rollout is half way: hosts below wariness 0.5 are offered it.
    let token = p.dir.path().join("hosts.token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let config = |wariness: f64, extra: &str| {
        format!(
            "[updates]\nkeys = [\"{}\"]\nhalt_keys = [\"{}\"]\n[identity]\nrollout_wariness = {wariness}\n\
             [reports]\nurl = \"{url}\"\ntoken_file = \"{}\"\nmax_delay_seconds = 3\n{extra}",
            p.public_key,
            d("halt.pub"),
            token.display()
        )
    };
    // 4 hosts stage 44.3 but may reboot only in a window two days away.
    // Formatted in UTC, the agents' default time zone.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48);
    let window = format!(
        "[[strategy.window]]\ndays = [\"{}\"]\nstart_time = \"{}\"\nlength_minutes = 60\n",
        later.strftime("%a"),
        later.strftime("%H:%M")
    );
    let mut waiting = Vec::new();
    for i in 0..4 {
        let n = node(&p, &format!("waiting-{i}"), 1, &config(0.1, &window));
        let agent = daemon(&p, &n);
        waiting.push((n, agent));
    }
    // 13 hosts the rollout has not reached yet.
    let mut unreached = Vec::new();
    for i in 0..13 {
        let n = node(&p, &format!("unreached-{i}"), 1, &config(0.95, ""));
        let agent = daemon(&p, &n);
        unreached.push((n, agent));
    }
    for (n, _) in &waiting {
        status_until(n, "a waiting host staged 44.3", |status| {
            status["reason"]["kind"] == "window_closed"
                && status["staged"]["digest"] == p.digests[2].as_str()
        })
        .await;
    }
    // 3 hosts take 44.3 first, and it fails to boot on each.
    let mut first = Vec::new();
    for i in 0..3 {
        let n = node(&p, &format!("first-{i}"), 1, &config(0.05, ""));
        let agent = daemon(&p, &n);
        first.push((n, agent));
    }
    for (n, _) in &first {
        n.host.wait_for_apply().await;
        n.host.reboot(false);
    }
    // The guard trips on 3 failures of 3 `rebooting` reports and publishes
    // the halt, signed with its halt key.
    let halt_store = p.registry.store("acme/os-halts");
    let halt_key =
        cairn_oci::signing::VerifyingKey::from_file(Path::new(&d("halt.pub"))).expect("halt key");
    let mut list = None;
    for _ in 0..240 {
        if let Ok(fetched) = cairn_oci::halts::fetch(&halt_store, "cairn-halts-stable").await
            && fetched.list.entries.iter().any(|e| e.version == "44.3")
        {
            list = Some(fetched);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let list = list.expect("the guard published a halt of 44.3 within 2 minutes");
    assert_eq!(
        list.signed_as(
            None,
            Some(&cairn_oci::trust::RoleKeys::any_of(
                cairn_oci::trust::Role::Halt,
                std::slice::from_ref(&halt_key)
            ))
        ),
        Some(cairn_graph::halts::SignedAs::HaltOnly)
    );
    let entry = list
        .list
        .entries
        .iter()
        .find(|e| e.version == "44.3")
        .expect("entry");
    // Every architecture's image of 44.3 is halted.
    assert!(entry.digests.contains(&p.digests[2]), "{entry:?}");
    match &entry.tripped_by {
        cairn_graph::halts::TrippedBy::Guard {
            failures,
            rebooting,
        } => {
            assert!(*failures >= 3, "{entry:?}");
            assert!(*rebooting >= *failures, "{entry:?}");
        }
        other => panic!("tripped by {other:?}"),
    }
    for (n, _) in &first {
        assert_eq!(status_json(n)["lastOutcome"]["outcome"], "boot_failed");
    }

    // Zincati-style readers no longer see an edge into 44.3.
    wait_long("/v1/graph drops the edge into 44.3", 60, async || {
        !v1_edge_targets(&url).await.contains("44.3")
    })
    .await;
    // The hosts that had staged it withdraw it.
    // (bootc has no command that drops a download-only deployment: it stays
    // on disk, locked, and is never finalized; see docs/agent.md.)
    for (n, _) in &waiting {
        status_until(n, "a waiting host withdrew 44.3", |status| {
            status["lastOutcome"]["outcome"] == "withdrawn"
                && status["lastOutcome"]["version"] == "44.3"
                && status["reason"]["kind"] == "staged_halted"
                && status["target"].is_null()
        })
        .await;
        assert!(
            history_words(n).contains(&("44.3".to_string(), "withdrawn".to_string())),
            "{:?}",
            history_words(n)
        );
    }
    // The release team's next routine publish moves the rollout to the whole
    // fleet: the halt survives it, and no unreached host ever stages 44.3.
    common::ok(&[
        "policy",
        "--policy",
        &d("updates.json"),
        "--stream",
        "stable",
        "rollout",
        "start",
        "44.3",
        "--over",
        "1m",
        "--from",
        "100%",
    ]);
    publish().run();
    for (n, _) in &unreached {
        status_until(n, "an unreached host is told 44.3 is halted", |status| {
            status["reason"]["kind"] == "target_halted"
        })
        .await;
    }
    for (n, _) in unreached.iter().chain(&waiting) {
        let status = status_json(n);
        assert_eq!(
            status["booted"]["digest"],
            p.digests[1].as_str(),
            "{status}"
        );
        assert!(status["target"].is_null(), "{status}");
        assert_eq!(n.host.state().apply_pid, None, "never finalized");
    }
    for (n, _) in &unreached {
        let calls = n.host.state().calls;
        assert!(
            !calls.iter().any(|c| c.contains(&p.digests[2])),
            "an unreached host never pulls 44.3: {calls:?}"
        );
        assert!(status_json(n)["staged"].is_null());
    }
    assert!(!v1_edge_targets(&url).await.contains("44.3"));
}
