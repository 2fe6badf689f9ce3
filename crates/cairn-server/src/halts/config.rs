//! The `[halts]` and `[guard]` sections, raw and validated.
//!
//! ```toml
//! [halts]
//! halt_keys = ["halt.pub"]       # besides each stream's document keys
//! database = "halts.sqlite"      # or backend = "etcd", endpoints = [...]
//!
//! [guard]
//! halt_key = "halt.key"
//! authfile = "halt-list-auth.json"
//! min_failures = 3
//! max_failure_share = 0.05
//! ```

use crate::config::{BackendName, RawStore, StoreConfig, store};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The etcd keys' prefix of the halt store when `key_prefix` is not given.
pub const DEFAULT_HALTS_ETCD_PREFIX: &str = "/cairn/halts/";
/// Default failures before the guard may halt.
pub const DEFAULT_MIN_FAILURES: u64 = 3;
/// Default share of failures over `rebooting` reports above which it halts.
pub const DEFAULT_MAX_FAILURE_SHARE: f64 = 0.05;
/// Default time between two evaluations of the counts.
pub const DEFAULT_CHECK_SECONDS: u64 = 10;
/// Longest time between two evaluations: the leader renews its etcd lease
/// at each, and the lease lives 30 s.
pub const MAX_CHECK_SECONDS: u64 = 10;
/// Default time between two refreshes of the list by the leader.
pub const DEFAULT_REFRESH_SECONDS: u64 = 6 * 3600;
/// Default lifetime of a list the guard publishes.
pub const DEFAULT_LIFETIME_SECONDS: u64 = 48 * 3600;
/// The longest a webhook call may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHalts {
    #[serde(default)]
    halt_keys: Vec<PathBuf>,
    #[serde(default)]
    backend: BackendName,
    #[serde(default)]
    database: Option<PathBuf>,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    key_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuard {
    halt_key: PathBuf,
    #[serde(default)]
    authfile: Option<PathBuf>,
    #[serde(default)]
    min_failures: Option<u64>,
    #[serde(default)]
    max_failure_share: Option<f64>,
    #[serde(default)]
    max_missing_share: Option<f64>,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    check_interval_seconds: Option<u64>,
    #[serde(default)]
    refresh_interval_seconds: Option<u64>,
    #[serde(default)]
    lifetime_seconds: Option<u64>,
}

/// The `[halts]` section, validated.
#[derive(Debug, Clone)]
pub struct HaltsConfig {
    /// Keys whose lists may only add halts (each stream's document keys
    /// are trusted as well, and may also clear).
    pub halt_keys: Vec<cairn_oci::signing::VerifyingKey>,
    /// Where the newest lists and the guard's audit are kept.
    pub store: StoreConfig,
}

/// The `[guard]` section, validated.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Signs the lists the guard and alerts publish.
    pub halt_key: cairn_oci::signing::SigningKey,
    /// Registry credentials for the halt-list repository only (containers
    /// `auth.json`); `None`: the default credential files.
    pub authfile: Option<PathBuf>,
    /// Failures of a release before it may be halted.
    pub min_failures: u64,
    /// Failures over `rebooting` reports above which it is halted.
    pub max_failure_share: f64,
    /// Missing outcomes over `rebooting` reports above which it is halted.
    pub max_missing_share: Option<f64>,
    /// Called (POST, JSON) after each halt.
    pub webhook: Option<url::Url>,
    /// Time between two evaluations.
    pub check_interval: Duration,
    /// Time between two refreshes of each list by the leader.
    pub refresh_interval: Duration,
    /// Lifetime of each list published.
    pub lifetime: jiff::SignedDuration,
}

impl GuardConfig {
    /// Whether a release's counts cross the thresholds: at least
    /// `min_failures` failures and a failure share above
    /// `max_failure_share`; or, with `max_missing_share`, at least
    /// `min_failures` failures and missing outcomes together and a missing
    /// share above it. Never without a `rebooting` report.
    pub fn trips(&self, release: &crate::reports::model::ReleaseSummary) -> bool {
        if release.rebooting == 0 {
            return false;
        }
        let share = |n: u64| n as f64 / release.rebooting as f64;
        let failing = release.failures >= self.min_failures
            && share(release.failures) > self.max_failure_share;
        let missing = self.max_missing_share.is_some_and(|max| {
            release.failures.saturating_add(release.missing) >= self.min_failures
                && share(release.missing) > max
        });
        failing || missing
    }
}

pub(crate) fn halts(raw: RawHalts, base: &Path) -> Result<HaltsConfig, String> {
    let halt_keys =
        cairn_oci::signing::VerifyingKey::from_files(raw.halt_keys.iter().map(|p| base.join(p)))
            .map_err(|e| format!("key `halts.halt_keys`: {e}"))?;
    let store = store(
        RawStore {
            section: "halts",
            holds: "the newest halt lists",
            backend: raw.backend,
            database: raw.database.as_ref(),
            endpoints: &raw.endpoints,
            key_prefix: raw.key_prefix.as_ref(),
            default_prefix: DEFAULT_HALTS_ETCD_PREFIX,
        },
        base,
    )?;
    Ok(HaltsConfig { halt_keys, store })
}

fn share(value: Option<f64>, default: Option<f64>, key: &str) -> Result<Option<f64>, String> {
    match value.or(default) {
        Some(share) if !(0.0..=1.0).contains(&share) => Err(format!(
            "key `guard.{key}`: {share} is not a share between 0 and 1"
        )),
        other => Ok(other),
    }
}

fn seconds(value: Option<u64>, default: u64, key: &str) -> Result<u64, String> {
    match value.unwrap_or(default) {
        0 => Err(format!("key `guard.{key}`: must be at least 1")),
        s if s > 366 * 86_400 => Err(format!("key `guard.{key}`: at most a year")),
        s => Ok(s),
    }
}

pub(crate) fn guard(raw: RawGuard, base: &Path) -> Result<GuardConfig, String> {
    let key_path = base.join(&raw.halt_key);
    let text = std::fs::read_to_string(&key_path)
        .map_err(|e| format!("key `guard.halt_key`: {}: {e}", key_path.display()))?;
    let halt_key = cairn_oci::signing::SigningKey::from_pem(&text, &key_path.display().to_string())
        .map_err(|e| format!("key `guard.halt_key`: {e}"))?;
    let webhook = raw
        .webhook
        .map(|text| {
            url::Url::parse(&text)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .ok_or_else(|| format!("key `guard.webhook`: {text:?} is not an http(s) URL"))
        })
        .transpose()?;
    let check = seconds(
        raw.check_interval_seconds,
        DEFAULT_CHECK_SECONDS,
        "check_interval_seconds",
    )?;
    if check > MAX_CHECK_SECONDS {
        return Err(format!(
            "key `guard.check_interval_seconds`: at most {MAX_CHECK_SECONDS} (the leader renews its lease at each check)"
        ));
    }
    let refresh = seconds(
        raw.refresh_interval_seconds,
        DEFAULT_REFRESH_SECONDS,
        "refresh_interval_seconds",
    )?;
    let lifetime = seconds(
        raw.lifetime_seconds,
        DEFAULT_LIFETIME_SECONDS,
        "lifetime_seconds",
    )?;
    if refresh >= lifetime {
        return Err(format!(
            "key `guard.refresh_interval_seconds`: {refresh} must be shorter than the lifetime ({lifetime} s), or lists expire between refreshes"
        ));
    }
    Ok(GuardConfig {
        halt_key,
        authfile: raw.authfile.map(|p| base.join(p)),
        min_failures: match raw.min_failures.unwrap_or(DEFAULT_MIN_FAILURES) {
            0 => return Err("key `guard.min_failures`: must be at least 1".into()),
            n => n,
        },
        max_failure_share: share(
            raw.max_failure_share,
            Some(DEFAULT_MAX_FAILURE_SHARE),
            "max_failure_share",
        )?
        .unwrap_or(DEFAULT_MAX_FAILURE_SHARE),
        max_missing_share: share(raw.max_missing_share, None, "max_missing_share")?,
        webhook,
        check_interval: Duration::from_secs(check),
        refresh_interval: Duration::from_secs(refresh),
        lifetime: jiff::SignedDuration::from_secs(i64::try_from(lifetime).unwrap_or(i64::MAX)),
    })
}
