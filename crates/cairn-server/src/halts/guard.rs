//! The rollout guard (docs/server.md#the-rollout-guard): the leader reads
//! each stream's outcome counts and halts a release whose failures cross
//! both thresholds; it also keeps each list fresh. Alerts add halts through
//! the same [`add_halt`].
//!
//! A halt is published as a new list signed with the halt key, in the
//! halt-list repository, through a registry client holding only that
//! repository's credentials; then it is held at once (this server's
//! `/v1/graph` drops the edges without waiting for a refresh), audited in
//! the store, and announced to the optional webhook.

use super::config::{GuardConfig, WEBHOOK_TIMEOUT};
use super::{HaltsError, record_of};
use crate::metrics::{KindLabels, StreamLabels, TriggerLabels};
use crate::reports::model::{ReleaseSummary, summarize};
use crate::state::AppState;
use crate::store::halts::{AuditEntry, HaltStore};
use cairn_graph::halts::{SignedAs, TrippedBy};
use cairn_oci::document::PublishOptions;
use cairn_oci::halts::{Floor, UpdateOptions};
use cairn_oci::{Location, Store};
use std::collections::BTreeMap;
use std::time::Duration;

/// The guard of every stream with halts on.
#[derive(Debug)]
pub struct Guard {
    /// The `[guard]` section.
    pub config: GuardConfig,
    /// A registry client with the halt-list repository's credentials only.
    pub client: cairn_oci::RegistryClient,
    webhook: reqwest::Client,
    /// Per (stream, version) with a cleared halt: the counts when this
    /// server first saw it cleared. Only reports since count against it.
    baselines: std::sync::Mutex<BTreeMap<(String, String), Baseline>>,
    /// How long report counts are retained (`[reports] retention_days`).
    retention: Option<jiff::SignedDuration>,
    /// How many checks have run: each starts at the next stream, so a slow
    /// stream cannot starve those after it.
    checks: std::sync::atomic::AtomicUsize,
}

/// The counts of a cleared release when this server first saw the clear.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    counts: Counts,
    seen: jiff::Timestamp,
}

/// A release's counts the guard judges on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    failures: u64,
    rebooting: u64,
    missing: u64,
}

impl Guard {
    /// The guard of `config`, with a client of its own credentials.
    pub fn new(config: GuardConfig, server: &crate::Config) -> Result<Guard, cairn_oci::OciError> {
        let credentials = match &config.authfile {
            Some(path) => cairn_oci::auth::Credentials::from_file(path)?,
            None => cairn_oci::auth::Credentials::from_default_files()?,
        };
        let client = cairn_oci::RegistryClient::new(cairn_oci::ClientOptions {
            credentials,
            insecure_registries: server.insecure_registries.clone(),
            registries_conf: Ok(server.registries_conf.clone()),
            timeout: server.timeout,
            ..cairn_oci::ClientOptions::default()
        })?;
        // The call is bounded by a timeout around it as well.
        let webhook = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .unwrap_or_default();
        Ok(Guard {
            config,
            client,
            webhook,
            baselines: std::sync::Mutex::default(),
            retention: server.reports.as_ref().map(|reports| reports.retention),
            checks: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// `release` as the guard judges it: a release whose halt the document
    /// clears counts only the reports since this server first saw the clear.
    /// `None`: a halt of it is in effect. The baselines live in memory: a
    /// new leader starts counting again from the counts it first sees.
    fn since_clear(
        &self,
        stream: &str,
        view: &super::HaltView,
        mut release: ReleaseSummary,
        time: jiff::Timestamp,
    ) -> Option<ReleaseSummary> {
        let key = (stream.to_string(), release.version.clone());
        let mut baselines = self.baselines.lock().unwrap_or_else(|p| p.into_inner());
        let Some(held) = &view.held else {
            return Some(release);
        };
        if held
            .list
            .halting_version(&view.cleared, &release.version)
            .is_some()
        {
            baselines.remove(&key);
            return None;
        }
        let cleared = held
            .list
            .entries
            .iter()
            .any(|e| e.version == release.version && view.cleared.contains(&e.id));
        if !cleared {
            baselines.remove(&key);
            return Some(release);
        }
        let now = Counts {
            failures: release.failures,
            rebooting: release.rebooting,
            missing: release.missing,
        };
        let base = baselines.entry(key).or_insert(Baseline {
            counts: now,
            seen: time,
        });
        let base = base_at(base, self.retention, time);
        release.failures = now.failures.saturating_sub(base.failures);
        release.rebooting = now.rebooting.saturating_sub(base.rebooting);
        release.missing = now.missing.saturating_sub(base.missing);
        release.failure_share =
            (release.rebooting > 0).then(|| release.failures as f64 / release.rebooting as f64);
        Some(release)
    }

    /// Whether a release's counts cross the thresholds (see
    /// [`GuardConfig::trips`]).
    pub fn trips(&self, release: &ReleaseSummary) -> bool {
        self.config.trips(release)
    }
}

/// The counts to subtract at `time`: the noted ones, kept as they are
/// while reports from before the clear may still be retained (counts are
/// per hour, so one hour more than the retention), none after that, when
/// every retained report came after the clear.
fn base_at(
    base: &Baseline,
    retention: Option<jiff::SignedDuration>,
    time: jiff::Timestamp,
) -> Counts {
    let aged_out = retention
        .and_then(|retention| retention.checked_add(jiff::SignedDuration::from_hours(1)))
        .and_then(|window| base.seen.checked_add(window).ok())
        .is_some_and(|all_gone| time >= all_gone);
    if aged_out {
        Counts {
            failures: 0,
            rebooting: 0,
            missing: 0,
        }
    } else {
        base.counts
    }
}

/// Count a failed step of the guard or the alert trigger.
pub(crate) fn failed(app: &AppState, kind: &'static str) {
    app.shared
        .metrics
        .guard_errors
        .get_or_create(&KindLabels { kind })
        .inc();
}

/// The longest one stream's part of a check may take: well below the etcd
/// leader lease's 30 seconds, and leadership is asked again before each
/// stream, so a leader that lost its lease mid-check stops soon after.
pub const STREAM_CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// `streams` rotated to start at the `check`th (modulo their number).
fn rotated<T>(mut streams: Vec<T>, check: usize) -> Vec<T> {
    if !streams.is_empty() {
        let start = check % streams.len();
        streams.rotate_left(start);
    }
    streams
}

/// Whether this server still leads, asked right before it publishes: with
/// etcd, another server may have taken over since the check began.
async fn still_leads(app: &AppState, stream: &str) -> bool {
    let Some(store) = &app.shared.halts.store else {
        return false;
    };
    match store.lead().await {
        Ok(true) => true,
        Ok(false) => {
            tracing::info!(
                stream,
                "no longer leading the rollout guard; not publishing"
            );
            false
        }
        Err(error) => {
            failed(app, error.kind());
            tracing::warn!(stream, %error, "could not tell whether this server still leads the guard; not publishing");
            false
        }
    }
}

/// Run the guard for ever, every check interval.
pub async fn run(app: AppState) {
    let Some(guard) = &app.shared.halts.guard else {
        return;
    };
    let mut interval = tokio::time::interval(guard.config.check_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        interval.tick().await;
        let lead = match &app.shared.halts.store {
            Some(store) => store.lead().await,
            None => Ok(false),
        };
        let now_leading = match lead {
            Ok(lead) => lead,
            Err(error) => {
                failed(&app, error.kind());
                tracing::warn!(%error, "could not tell whether this server leads the guard; not evaluating");
                false
            }
        };
        if now_leading != leading {
            tracing::info!(leading = now_leading, "rollout guard leadership changed");
            leading = now_leading;
        }
        app.shared.metrics.guard_leader.set(i64::from(leading));
        if leading {
            check(&app, guard).await;
        }
    }
}

/// One evaluation of every stream with halts on, and the refreshes due.
/// Each stream's part is time-limited on its own, after asking whether this
/// server still leads; the order rotates from one check to the next.
pub async fn check(app: &AppState, guard: &Guard) {
    let Some(reports) = &app.shared.reports else {
        return;
    };
    let halts = &app.shared.halts;
    let count = guard
        .checks
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for stream in rotated(halts.streams().collect(), count) {
        let stream = stream.as_str();
        if !halts.view(stream).on {
            continue;
        }
        if !still_leads(app, stream).await {
            return;
        }
        match tokio::time::timeout(
            STREAM_CHECK_TIMEOUT,
            check_stream(app, guard, reports, stream),
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                failed(app, "check_timeout");
                tracing::warn!(
                    stream,
                    "checking a stream took longer than {STREAM_CHECK_TIMEOUT:?}; stopped it, trying again at the next check"
                );
            }
        }
    }
}

/// Judge one stream and refresh its list when due. `false`: this server no
/// longer leads.
async fn check_stream(
    app: &AppState,
    guard: &Guard,
    reports: &crate::reports::Reports,
    stream: &str,
) -> bool {
    let view = app.shared.halts.view(stream);
    let now = (app.shared.clock)();
    // A reports-store outage stops the judging, never the list's refresh.
    match reports.tally(&app.shared.metrics, stream, now).await {
        Ok(tally) => {
            if !judge(app, guard, stream, &view, &tally).await {
                return false;
            }
        }
        Err(error) => {
            failed(app, "tally");
            tracing::warn!(stream, kind = error.kind, error = %error.value, "reading the outcome counts failed; not judging this stream now");
        }
    }
    let due = view.held.as_ref().is_none_or(|held| {
        let age = guard.config.lifetime - held.list.expires.duration_since(now);
        age >= jiff::SignedDuration::try_from(guard.config.refresh_interval)
            .unwrap_or(jiff::SignedDuration::MAX)
    });
    if !due {
        return true;
    }
    if !still_leads(app, stream).await {
        return false;
    }
    if let Err(error) = refresh_list(app, stream).await {
        tracing::error!(stream, kind = error.kind, error = %error.message, "refreshing the halt list failed; trying again at the next check");
    }
    true
}

/// Judge each release of `stream` on its counts, halting those that trip.
/// `false`: this server no longer leads.
async fn judge(
    app: &AppState,
    guard: &Guard,
    stream: &str,
    view: &super::HaltView,
    tally: &crate::reports::model::Tally,
) -> bool {
    app.shared
        .metrics
        .guard_evaluations
        .get_or_create(&StreamLabels {
            stream: stream.to_string(),
        })
        .inc();
    for (release, reported) in by_version(summarize(tally)) {
        if reported.iter().any(|d| view.halted.contains(d)) {
            continue;
        }
        let Some(release) = guard.since_clear(stream, view, release, (app.shared.clock)()) else {
            continue;
        };
        if !guard.trips(&release) {
            continue;
        }
        let reason = format!(
            "the rollout guard: {} failures among {} rebooting reports ({} missing)",
            release.failures, release.rebooting, release.missing
        );
        let tripped_by = TrippedBy::Guard {
            failures: release.failures,
            rebooting: release.rebooting,
        };
        let mut digests = release_digests(app, stream, &release.version, "");
        for digest in reported {
            if !digest.is_empty() && !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        if !still_leads(app, stream).await {
            return false;
        }
        if let Err(error) =
            add_halt(app, stream, &release.version, digests, &reason, tripped_by).await
        {
            tracing::error!(stream, version = release.version, kind = error.kind, error = %error.message, "the guard could not halt a failing release; trying again at the next check");
        }
    }
    true
}

/// The counts of each version, summed over its digests (a multi-arch
/// release is reported under one digest per architecture, and the guard
/// judges the release as a whole), with the digests reported.
pub fn by_version(summaries: Vec<ReleaseSummary>) -> Vec<(ReleaseSummary, Vec<String>)> {
    let mut merged: Vec<(ReleaseSummary, Vec<String>)> = Vec::new();
    for summary in summaries {
        match merged
            .iter_mut()
            .find(|(m, _)| m.version == summary.version)
        {
            Some((total, digests)) => {
                for (outcome, n) in &summary.counts {
                    let sum = total.counts.entry(outcome).or_default();
                    *sum = sum.saturating_add(*n);
                }
                total.failures = total.failures.saturating_add(summary.failures);
                total.rebooting = total.rebooting.saturating_add(summary.rebooting);
                total.missing = total.missing.saturating_add(summary.missing);
                total.failure_share =
                    (total.rebooting > 0).then(|| total.failures as f64 / total.rebooting as f64);
                digests.push(summary.digest);
            }
            None => {
                let digests = vec![summary.digest.clone()];
                merged.push((summary, digests));
            }
        }
    }
    merged
}

/// Every digest and checksum of `version` in the stream's document, and the
/// reported one.
pub fn release_digests(app: &AppState, stream: &str, version: &str, reported: &str) -> Vec<String> {
    let mut digests: Vec<String> = app
        .snapshot(stream)
        .and_then(|snapshot| {
            let document = snapshot.source_document()?;
            let release = document.releases.iter().find(|r| r.version == version)?;
            Some(
                release
                    .architectures
                    .values()
                    .flat_map(|entry| entry.digest.iter().chain(entry.ostree.iter()).cloned())
                    .collect(),
            )
        })
        .unwrap_or_default();
    if !reported.is_empty() && !digests.iter().any(|d| d == reported) {
        digests.push(reported.to_string());
    }
    digests
}

/// Where a stream's list is published, and the options to update it with.
struct Target {
    store: Store,
    location: Location,
    tag: String,
    identity: String,
    /// The root judging the list built on; its version is signed under.
    trust: Option<cairn_oci::trust::TrustedRoot>,
    cleared: Vec<String>,
    /// The document's `halts.min_sequence`: the list under the tag must be
    /// at least this new, or the guard would sign a replayed or re-created list.
    min_sequence: u64,
    /// The newest list this server holds: the same check, and its entries kept.
    held: Option<std::sync::Arc<super::HeldList>>,
}

impl Target {
    fn floor(&self) -> Floor<'_> {
        Floor {
            min_sequence: self.min_sequence,
            held: self.held.as_deref().map(|held| &held.list),
        }
    }
}

fn target(app: &AppState, guard: &Guard, stream: &str) -> Result<Target, HaltsError> {
    let view = app.shared.halts.view(stream);
    let settings = view.settings.as_ref().ok_or_else(|| HaltsError {
        kind: "halts_off",
        message: format!("the document of {stream} names no halt list"),
    })?;
    let location = Location::parse(&settings.location).map_err(|e| HaltsError {
        kind: "halts_invalid",
        message: format!("halts.location {:?}: {e}", settings.location),
    })?;
    let Location::Registry(reference) = &location else {
        return Err(HaltsError {
            kind: "halts_invalid",
            message: format!("halts.location {location}: the guard publishes only to a registry"),
        });
    };
    // What the stream's trust root (or, before one, the configuration)
    // vouches for: decided where the root is held, not added to here.
    let trust = view.guard_trust.clone();
    Ok(Target {
        store: Store::registry(guard.client.clone(), reference.repository.clone()),
        tag: reference
            .tag
            .clone()
            .unwrap_or_else(|| cairn_oci::halts::default_tag(stream)),
        identity: reference.repository.to_string(),
        location: location.clone(),
        trust,
        min_sequence: settings.min_sequence,
        held: view.held.clone(),
        cleared: view.cleared,
    })
}

/// Publish the list again, fresh, and hold it.
async fn refresh_list(app: &AppState, stream: &str) -> Result<(), HaltsError> {
    let Some(guard) = &app.shared.halts.guard else {
        return Ok(());
    };
    let target = target(app, guard, stream)?;
    let options = update_options(guard, &target, stream);
    let published = cairn_oci::halts::refresh_above(&target.store, &options, &target.floor())
        .await
        .inspect_err(|_| failed(app, "publish"))?;
    // Pushed: holding it runs on in a task of its own, so a check's time
    // limit cannot stop it halfway.
    let (task_app, task_stream) = (app.clone(), stream.to_string());
    let digest = published.manifest_digest.clone();
    finish_detached(async move { hold_published(&task_app, &task_stream, &target, &digest).await })
        .await?;
    tracing::info!(
        stream,
        sequence = published.list.sequence,
        "refreshed the halt list"
    );
    Ok(())
}

fn update_options<'a>(guard: &'a Guard, target: &'a Target, stream: &'a str) -> UpdateOptions<'a> {
    UpdateOptions {
        publish: PublishOptions {
            tag: &target.tag,
            identity: &target.identity,
            keys: std::slice::from_ref(&guard.config.halt_key),
            root_version: target
                .trust
                .as_ref()
                .map_or(0, cairn_oci::trust::TrustedRoot::version),
            settle: Duration::from_millis(200),
            expected: None,
        },
        // Under a root of version 1 or more, a halt key the root does not
        // name is refused before anything is pushed (`halts_signers_not_in_root`).
        trust: target.trust.as_ref(),
        stream,
        lifetime: guard.config.lifetime,
        cleared: &target.cleared,
        accept_unverified_current: false,
    }
}

async fn hold_published(
    app: &AppState,
    stream: &str,
    target: &Target,
    manifest_digest: &str,
) -> Result<(), HaltsError> {
    let fetched = cairn_oci::halts::fetch(&target.store, manifest_digest).await?;
    let record = record_of(&fetched, Some(&target.store), &target.location);
    // Signed with the halt key: held under the add-only rule like any other.
    let now = (app.shared.clock)();
    app.shared
        .halts
        .hold(stream, fetched.list, record, SignedAs::HaltOnly, now)
        .await
}

/// Halt `version` of `stream`: publish the list with the entry added (no
/// new entry when a halt in effect already names it), hold it at once,
/// audit it and call the webhook. `Ok(false)`: it was already halted.
pub async fn add_halt(
    app: &AppState,
    stream: &str,
    version: &str,
    digests: Vec<String>,
    reason: &str,
    tripped_by: TrippedBy,
) -> Result<bool, HaltsError> {
    let guard = app.shared.halts.guard.as_ref().ok_or_else(|| HaltsError {
        kind: "no_guard",
        message: "this server has no [guard] section, so no halt key to sign with".into(),
    })?;
    let target = target(app, guard, stream)?;
    let options = update_options(guard, &target, stream);
    let published = cairn_oci::halts::add_above(
        &target.store,
        &options,
        &target.floor(),
        version,
        digests.clone(),
        reason,
        tripped_by.clone(),
    )
    .await
    .inspect_err(|_| failed(app, "publish"))?;
    // Pushed: holding, auditing and announcing it run on in a task of their
    // own, so a check's time limit cannot leave the halt unrecorded.
    let (app, stream, version, reason) = (
        app.clone(),
        stream.to_string(),
        version.to_string(),
        reason.to_string(),
    );
    finish_detached(async move {
        let (app, stream, version, reason) =
            (&app, stream.as_str(), version.as_str(), reason.as_str());
        let webhook = app
            .shared
            .halts
            .guard
            .as_ref()
            .and_then(|guard| Some((guard.config.webhook.clone()?, guard.webhook.clone())));
        hold_published(app, stream, &target, &published.manifest_digest).await?;
        if !published.added {
            return Ok(false);
        }
        let trigger = match tripped_by {
            TrippedBy::Guard { .. } => "guard",
            TrippedBy::Alert { .. } => "alert",
            TrippedBy::Person { .. } => "person",
        };
        app.shared
            .metrics
            .halts_added
            .get_or_create(&TriggerLabels {
                stream: stream.to_string(),
                trigger,
            })
            .inc();
        let entry = published
            .list
            .entries
            .iter()
            .rev()
            .find(|entry| entry.version == version);
        let audit = AuditEntry {
            time: (app.shared.clock)(),
            stream: stream.to_string(),
            version: version.to_string(),
            digests,
            halt_id: entry.map(|e| e.id.clone()).unwrap_or_default(),
            tripped_by,
            sequence: published.list.sequence,
        };
        tracing::warn!(
            stream,
            version,
            halt_id = audit.halt_id,
            sequence = audit.sequence,
            reason,
            "halted a release"
        );
        if let Some(store) = &app.shared.halts.store
            && let Err(error) = store.audit(&audit).await
        {
            failed(app, error.kind());
            tracing::error!(%error, "writing the halt's audit entry failed");
        }
        if let Some((url, webhook)) = webhook {
            let body = serde_json::json!({
                "event": "halted",
                "stream": audit.stream,
                "version": audit.version,
                "digests": audit.digests,
                "halt_id": audit.halt_id,
                "sequence": audit.sequence,
                "reason": reason,
                "tripped_by": audit.tripped_by,
                "time": audit.time,
            });
            let call = webhook
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            let answer = tokio::time::timeout(WEBHOOK_TIMEOUT, call.send()).await;
            let error = match answer {
                Ok(Ok(response)) => response.error_for_status().err().map(|e| e.to_string()),
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(format!("no answer within {WEBHOOK_TIMEOUT:?}")),
            };
            if let Some(error) = error {
                failed(app, "webhook");
                tracing::warn!(%error, "the halt webhook call failed (the halt stands)");
            }
        }
        Ok(true)
    })
    .await
}

/// Run `work` as a task of its own and wait for it: dropping the waiting
/// future (a time limit) leaves the task running to its end.
async fn finish_detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, HaltsError>> + Send + 'static,
) -> Result<T, HaltsError> {
    tokio::spawn(work).await.map_err(|error| HaltsError {
        kind: "task_failed",
        message: format!("the task finishing a published halt list failed: {error}"),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::model::{Outcome, Release, ReleaseTally, Tally};

    fn counted(rebooting: u64, failed: u64) -> ReleaseTally {
        let mut tally = ReleaseTally::default();
        tally.add(Outcome::Rebooting, rebooting);
        tally.add(Outcome::BootFailed, failed);
        tally
    }

    #[test]
    fn failures_after_a_clear_stay_counted_while_old_reports_age_out() {
        let counts = |failures| Counts {
            failures,
            rebooting: 20,
            missing: 0,
        };
        let seen: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let base = Baseline {
            counts: counts(10),
            seen,
        };
        let retention = Some(jiff::SignedDuration::from_hours(48));
        // Before every pre-clear report can have aged out, the noted counts
        // stay as they were (never lowered to a smaller total).
        let during = seen + jiff::SignedDuration::from_hours(30);
        assert_eq!(base_at(&base, retention, during), counts(10));
        // After retention and an hour, every retained report is post-clear.
        let after = seen + jiff::SignedDuration::from_hours(49);
        assert_eq!(base_at(&base, retention, after).failures, 0);
        // Without a reports section nothing ages out.
        assert_eq!(base_at(&base, None, after), counts(10));
    }

    #[test]
    fn each_check_starts_at_the_next_stream() {
        let streams = || vec!["a", "b", "c"];
        assert_eq!(rotated(streams(), 0), ["a", "b", "c"]);
        assert_eq!(rotated(streams(), 1), ["b", "c", "a"]);
        assert_eq!(rotated(streams(), 5), ["c", "a", "b"]);
        assert!(rotated(Vec::<&str>::new(), 3).is_empty());
    }

    #[tokio::test]
    async fn work_finished_detached_outlives_a_cancelled_wait() {
        let (done, finished) = tokio::sync::oneshot::channel();
        let (go, start) = tokio::sync::oneshot::channel::<()>();
        let waiting = finish_detached(async move {
            let _ = start.await;
            let _ = done.send(());
            Ok(())
        });
        // The wait is cut off before the work can finish...
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err()
        );
        // ...and the work still runs to its end.
        go.send(()).expect("the task is alive");
        finished.await.expect("the detached work finished");
    }

    #[test]
    fn a_multi_arch_release_is_judged_on_the_sum_over_its_digests() {
        let release = |digest: &str| Release {
            version: "44.3".into(),
            digest: digest.into(),
        };
        let tally = Tally::from([
            (release("sha256:aa"), counted(10, 2)),
            (release("sha256:bb"), counted(10, 1)),
        ]);
        let merged = by_version(summarize(&tally));
        let [(total, digests)] = merged.as_slice() else {
            panic!("one version: {merged:?}");
        };
        assert_eq!((total.failures, total.rebooting), (3, 20));
        assert_eq!(total.counts["boot_failed"], 3);
        assert_eq!(total.failure_share, Some(0.15));
        assert_eq!(digests, &["sha256:aa", "sha256:bb"]);
    }
}
