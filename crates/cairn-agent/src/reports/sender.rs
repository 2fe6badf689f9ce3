//! Sending queued reports to the collector: one `POST` per report, the
//! answer judged as the wire contract says, and the daemon's sender task,
//! which drains what is due and sleeps until the next report falls due or
//! a new one is queued. It runs beside the passes and never holds one up.
//!
//! Answers: any 2xx (counted, or counted before: a retry) takes the report
//! off the queue. 429, 408, 5xx, no answer, and 401/403 (a configuration
//! problem an operator can fix) keep it, to be tried again after a backoff
//! or the `Retry-After` the collector sent. Any other 4xx drops it with a
//! warning: sending it again cannot help.

use super::queue::{self, Backoff, Settled};
use super::{QUEUED, SENDING, USER_AGENT};
use crate::config::{ConfigDirs, Reports};
use crate::server_http::{error_reply, under_base};
use cairn_oci::http::{Http, RetryPolicy, error_chain};
use jiff::{SignedDuration, Timestamp};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one send of the daemon's sender may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the sender sleeps at most, so a report queued by another
/// process (`cairn verify` without a running agent) is not left waiting.
const IDLE: Duration = Duration::from_secs(60);

/// The collector's answer to one send.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A 2xx: counted now, or counted before (a retry of a report it saw).
    Taken,
    /// Any other status, with the error's kind and value when the body
    /// was `{"kind", "value"}`.
    Status {
        /// HTTP status.
        status: u16,
        /// The error kind (`generic_http_<status>` without one).
        kind: String,
        /// Its message, short.
        value: String,
        /// `Retry-After`, in seconds, when sent.
        retry_after: Option<Duration>,
    },
    /// No answer (refused, reset, timed out), or the request could not be built.
    Unanswered(String),
    /// The token file cannot be read, or holds no usable token.
    NoToken(String),
}

/// What to do with a report after its send.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Off the queue: the collector has it.
    Done,
    /// Off the queue: refused for good.
    Drop(String),
    /// Keep it, and try again later.
    Retry {
        /// The pause the collector asked for (`Retry-After`).
        after: Option<Duration>,
        /// What failed.
        error: String,
        /// The failure is the collector's or the configuration's, not this
        /// report's: the other reports wait too.
        collector_wide: bool,
        /// A token problem (401, 403, no token file).
        token: bool,
    },
}

/// Judge an answer as the wire contract says.
pub fn judge(answer: &Answer) -> Verdict {
    match answer {
        Answer::Taken => Verdict::Done,
        Answer::Unanswered(error) => Verdict::Retry {
            after: None,
            error: error.clone(),
            collector_wide: true,
            token: false,
        },
        Answer::NoToken(error) => Verdict::Retry {
            after: None,
            error: error.clone(),
            collector_wide: true,
            token: true,
        },
        Answer::Status {
            status,
            kind,
            value,
            retry_after,
        } => {
            let error = format!("HTTP {status}: {kind}: {value}");
            match status {
                // One source address, one outcome, one release, one hour:
                // only this report waits.
                429 => Verdict::Retry {
                    after: *retry_after,
                    error,
                    collector_wide: false,
                    token: false,
                },
                401 | 403 => Verdict::Retry {
                    after: *retry_after,
                    error,
                    collector_wide: true,
                    token: true,
                },
                // No collector at that path, or not for this stream (a
                // server restarted without `[reports]`, a proxy's wrong
                // route): a configuration to fix, not a report to drop.
                404 => Verdict::Retry {
                    after: *retry_after,
                    error,
                    collector_wide: true,
                    token: false,
                },
                400..=499 if *status != 408 => Verdict::Drop(error),
                _ => Verdict::Retry {
                    after: *retry_after,
                    error,
                    collector_wide: true,
                    token: false,
                },
            }
        }
    }
}

/// `base` as a directory: a base without a trailing slash keeps its last
/// path segment, as the FleetLock client's does.
pub fn endpoint(base: &url::Url, stream: &str) -> url::Url {
    under_base(base, &format!("v2/reports/{stream}"))
}

/// The collector, as configured.
#[derive(Debug, Clone)]
pub struct Collector {
    http: Http,
    base: url::Url,
    token_file: PathBuf,
}

impl Collector {
    /// A client for `settings` whose sends give up after `timeout`.
    pub fn new(settings: &Reports, timeout: Duration) -> Result<Collector, String> {
        let http = Http::new(timeout, RetryPolicy::NONE).map_err(|e| error_chain(&e))?;
        Ok(Collector {
            http,
            base: settings.url.clone(),
            token_file: settings.token_file.clone(),
        })
    }

    /// The token, read now (it may be rotated at any time), as a header
    /// value that is never printed.
    fn authorization(&self) -> Result<HeaderValue, String> {
        let file = self.token_file.display();
        let text = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("reports.token_file {file}: {e}"))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("reports.token_file {file} is empty"));
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            format!("reports.token_file {file} holds characters an HTTP header cannot carry")
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Send one queued report.
    pub async fn send(&self, entry: &queue::Entry) -> Answer {
        let authorization = match self.authorization() {
            Ok(value) => value,
            Err(error) => return Answer::NoToken(error),
        };
        let url = endpoint(&self.base, &entry.stream);
        // A URL with a password is never logged with it.
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let body = match serde_json::to_vec(&entry.report) {
            Ok(body) => body,
            Err(e) => return Answer::Unanswered(format!("{shown}: {e}")),
        };
        let response = self
            .http
            .send(|http| {
                http.post(url.clone())
                    .header(AUTHORIZATION, authorization.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/json")
                    .header(reqwest::header::USER_AGENT, USER_AGENT)
                    .body(body.clone())
            })
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => return Answer::Unanswered(format!("{shown}: {}", error_chain(&e))),
        };
        let status = response.status();
        if status.is_success() {
            return Answer::Taken;
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reply = error_reply(response, super::MAX_BODY_BYTES, &shown, "collector").await;
        Answer::Status {
            status: status.as_u16(),
            kind: reply.kind,
            value: reply.value,
            retry_after,
        }
    }
}

/// When a report whose send failed is tried again: after the collector's
/// `Retry-After` (at least a second), else after its backoff.
fn retry_at(
    now: Timestamp,
    after: Option<Duration>,
    failures: u32,
    backoff: &Backoff,
) -> Timestamp {
    let pause = match after {
        Some(after) => after.max(Duration::from_secs(1)),
        None => backoff.pause(failures, super::random_fraction()),
    };
    SignedDuration::try_from(pause)
        .ok()
        .and_then(|pause| now.checked_add(pause).ok())
        .unwrap_or(now)
}

/// Send the queued report `id` through `collector` and record the verdict
/// in the queue. `None` when it is no longer queued.
pub async fn send_one(
    state_dir: &Path,
    collector: &Collector,
    id: &str,
    backoff: &Backoff,
) -> Option<Verdict> {
    let entry = match queue::read(state_dir) {
        Ok(queue) => queue.get(id).cloned()?,
        Err(error) => {
            tracing::warn!(%error, "could not read the report queue");
            return None;
        }
    };
    let answer = collector.send(&entry).await;
    let verdict = judge(&answer);
    let now = Timestamp::now();
    let settled = match &verdict {
        Verdict::Done => Settled::Sent,
        Verdict::Drop(error) => {
            tracing::warn!(%error, outcome = %entry.report.outcome, "the collector refused the report; it is dropped");
            Settled::Refused(error.clone())
        }
        Verdict::Retry { after, error, .. } => Settled::Retry {
            at: retry_at(now, *after, entry.attempts.saturating_add(1), backoff),
            error: error.clone(),
        },
    };
    if let Err(error) = queue::update(state_dir, |q| q.settle(id, settled)) {
        // A report the collector took is then sent again: it counts it once.
        tracing::warn!(%error, "could not record the report's send in the queue");
    }
    Some(verdict)
}

/// Send the queued report `id` now, giving up after `timeout`.
pub(super) async fn send_queued(
    state_dir: &Path,
    settings: &Reports,
    id: &str,
    timeout: Duration,
    backoff: &Backoff,
) {
    match Collector::new(settings, timeout) {
        Ok(collector) => match send_one(state_dir, &collector, id, backoff).await {
            Some(Verdict::Retry { error, .. }) => {
                tracing::warn!(%error, "could not send the report; it stays queued");
            }
            Some(Verdict::Done) => tracing::info!("the report was sent"),
            _ => {}
        },
        Err(error) => tracing::warn!(%error, "could not set up the report client"),
    }
}

/// The daemon's sender: what it remembers between rounds.
#[derive(Debug)]
pub struct Sender {
    state_dir: PathBuf,
    backoff: Backoff,
    /// Rounds in a row that stopped at a failure of the collector.
    failures: u32,
    /// No send before this: the collector failed.
    paused_until: Option<Timestamp>,
}

impl Sender {
    /// A sender for the queue in `state_dir`.
    pub fn new(state_dir: &Path, backoff: Backoff) -> Sender {
        Sender {
            state_dir: state_dir.to_path_buf(),
            backoff,
            failures: 0,
            paused_until: None,
        }
    }

    /// Send what is due; when the next report falls due (or the pause ends).
    pub async fn round(&mut self, settings: &Reports) -> Option<Timestamp> {
        let now = Timestamp::now();
        if let Some(until) = self.paused_until.filter(|until| *until > now) {
            return Some(until);
        }
        self.paused_until = None;
        let queue = match queue::read(&self.state_dir) {
            Ok(queue) => queue,
            Err(error) => {
                tracing::warn!(%error, "could not read the report queue");
                return None;
            }
        };
        if queue.entries.iter().any(|e| e.expired(now))
            && let Err(error) = queue::update(&self.state_dir, |q| q.expire(now))
        {
            tracing::warn!(%error, "could not drop the expired reports");
        }
        let due = queue.due(now);
        if !due.is_empty() {
            self.send(settings, due).await;
        }
        let next = queue::read(&self.state_dir).ok()?.next_due();
        match self.paused_until {
            Some(until) => Some(next.map_or(until, |next| next.max(until))),
            None => next,
        }
    }

    async fn send(&mut self, settings: &Reports, due: Vec<String>) {
        let collector = match Collector::new(settings, SEND_TIMEOUT) {
            Ok(collector) => collector,
            Err(error) => {
                tracing::warn!(%error, "could not set up the report client");
                return;
            }
        };
        for id in due {
            let verdict = {
                let _turn = SENDING.lock().await;
                send_one(&self.state_dir, &collector, &id, &self.backoff).await
            };
            match verdict {
                Some(Verdict::Done) => self.failures = 0,
                Some(Verdict::Retry {
                    after,
                    error,
                    collector_wide: true,
                    token,
                }) => {
                    // One warning per round: the round stops here.
                    if token {
                        tracing::warn!(%error, "the collector does not take this host's token (reports.token_file): reports wait in the queue");
                    } else {
                        tracing::warn!(%error, "the collector is unavailable: reports wait in the queue");
                    }
                    self.failures = self.failures.saturating_add(1);
                    self.paused_until = Some(retry_at(
                        Timestamp::now(),
                        after,
                        self.failures,
                        &self.backoff,
                    ));
                    return;
                }
                Some(Verdict::Retry { error, .. }) => {
                    tracing::info!(%error, "the collector asked to send this report later");
                }
                Some(Verdict::Drop(_)) | None => {}
            }
        }
    }
}

/// Run for ever beside the daemon's passes: drain due reports when
/// `[reports]` is configured under `root`, sleep until the next falls due
/// or one is queued. A configuration without `reports.url` sends nothing.
pub async fn run(root: PathBuf, state_dir: PathBuf, backoff: Backoff) {
    let mut sender = Sender::new(&state_dir, backoff);
    loop {
        let next = match crate::config::load(&ConfigDirs::under(&root)) {
            Ok(settings) => match &settings.reports {
                Some(reports) => sender.round(reports).await,
                None => None,
            },
            // The pass reports a broken configuration.
            Err(_) => None,
        };
        let wait = next
            .map(|at| {
                Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
            })
            .unwrap_or(IDLE)
            .min(IDLE);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = QUEUED.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<u64>) -> Answer {
        Answer::Status {
            status,
            kind: "k".into(),
            value: "v".into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn answers_are_judged_as_the_contract_says() {
        assert_eq!(judge(&Answer::Taken), Verdict::Done);
        for dropped in [400, 413, 415, 422] {
            assert!(
                matches!(judge(&status(dropped, None)), Verdict::Drop(_)),
                "{dropped}"
            );
        }
        // Only this report waits, as long as the collector says.
        assert_eq!(
            judge(&status(429, Some(1200))),
            Verdict::Retry {
                after: Some(Duration::from_secs(1200)),
                error: "HTTP 429: k: v".into(),
                collector_wide: false,
                token: false,
            }
        );
        for wide in [404, 408, 500, 502, 503, 504] {
            assert!(
                matches!(
                    judge(&status(wide, None)),
                    Verdict::Retry {
                        collector_wide: true,
                        token: false,
                        ..
                    }
                ),
                "{wide}"
            );
        }
        for token in [401, 403] {
            assert!(
                matches!(
                    judge(&status(token, None)),
                    Verdict::Retry {
                        collector_wide: true,
                        token: true,
                        ..
                    }
                ),
                "{token}"
            );
        }
        assert!(matches!(
            judge(&Answer::Unanswered("refused".into())),
            Verdict::Retry {
                collector_wide: true,
                ..
            }
        ));
        assert!(matches!(
            judge(&Answer::NoToken("missing".into())),
            Verdict::Retry { token: true, .. }
        ));
    }

    #[test]
    fn the_path_keeps_the_base_s_own_path() {
        let with = url::Url::parse("https://cairn.example/collector/").expect("url");
        let without = url::Url::parse("https://cairn.example/collector").expect("url");
        for base in [with, without] {
            assert_eq!(
                endpoint(&base, "stable").as_str(),
                "https://cairn.example/collector/v2/reports/stable"
            );
        }
        let root = url::Url::parse("http://127.0.0.1:8080").expect("url");
        assert_eq!(
            endpoint(&root, "next-devel").as_str(),
            "http://127.0.0.1:8080/v2/reports/next-devel"
        );
    }

    #[test]
    fn a_retry_waits_for_retry_after_else_for_the_backoff() {
        let now = Timestamp::from_second(1_800_000_000).expect("time");
        let backoff = Backoff::default();
        let later = |at: Timestamp| at.duration_since(now).as_secs();
        assert_eq!(
            later(retry_at(now, Some(Duration::from_secs(1200)), 1, &backoff)),
            1200
        );
        assert_eq!(later(retry_at(now, Some(Duration::ZERO), 1, &backoff)), 1);
        let first = later(retry_at(now, None, 1, &backoff));
        assert!((15..=30).contains(&first), "{first}");
        let fifth = later(retry_at(now, None, 5, &backoff));
        assert!((240..=480).contains(&fifth), "{fifth}");
    }
}
