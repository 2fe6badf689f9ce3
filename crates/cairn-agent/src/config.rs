//! The agent's configuration, read in three steps: raw TOML fragments (every
//! key known), merged by precedence, then validated settings.
//!
//! Fragments are `*.toml` files in `/usr/lib/cairn/config.d`,
//! `/run/cairn/config.d` and `/etc/cairn/config.d`. A file in `/etc` replaces
//! one of the same name in `/run`, which replaces one in `/usr/lib`; a symlink
//! to `/dev/null` masks the name. The survivors apply in file-name order:
//! later values win, and maintenance windows add up.
//!
//! An unknown key or a bad value is never ignored and never fatal: loading
//! returns an error naming the file and the key, and the agent sits in a
//! `config-error` state, staging and finalizing nothing, until it is fixed.
//! A fragment written for a newer agent must not stop an older (rolled-back)
//! host from updating for good, nor be half-applied.

mod check;
pub mod zincati;

pub use check::{Checked, check};

use crate::windows::parse_zone;
use cairn_graph::windows::{self, Schedule, Window};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default time between checks.
pub const DEFAULT_CHECK_SECONDS: u64 = 300;

/// The three fragment directories, lowest precedence first.
#[derive(Debug, Clone)]
pub struct ConfigDirs {
    /// Directories, lowest precedence first.
    pub dirs: Vec<PathBuf>,
}

impl ConfigDirs {
    /// The directories below `root` (`/` on a host, a temporary root in tests).
    pub fn under(root: &Path) -> Self {
        ConfigDirs {
            dirs: ["usr/lib", "run", "etc"]
                .iter()
                .map(|prefix| root.join(prefix).join("cairn/config.d"))
                .collect(),
        }
    }
}

/// A configuration problem, with the file and the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {}{message}", if key.is_empty() { String::new() } else { format!("key `{key}`: ") })]
pub struct ConfigError {
    /// The fragment (or directory).
    pub file: String,
    /// The key, as a dotted path.
    pub key: String,
    /// What is wrong.
    pub message: String,
    kind: &'static str,
    /// A syntax error as the TOML parser renders it, over several lines.
    rendered: Option<String>,
}

impl ConfigError {
    /// A short, fixed label for metrics and status: `read`, `syntax`,
    /// `invalid_key` (unknown, or of the wrong type), `invalid_value`, or the
    /// kind of a source that does not parse (`unknown_source`,
    /// `not_http_url`, `bad_source`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The error over several lines where the parser shows the line and
    /// column (a syntax error); else its one-line form.
    pub fn rendered(&self) -> String {
        match &self.rendered {
            Some(rendered) => format!("{}: {rendered}", self.file),
            None => self.to_string(),
        }
    }
}

/// Why an `updates.source` value does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceParseError {
    /// A source that needs an http(s) URL got something else.
    #[error("{value:?} is not an http(s) URL")]
    NotHttpUrl {
        /// The text after the source's name.
        value: String,
    },
    /// `registry:` followed by something that is not a reference.
    #[error("registry:{value}: {message}")]
    BadReference {
        /// The text after `registry:`.
        value: String,
        /// Why it does not parse.
        message: String,
    },
    /// Not one of the sources Cairn knows.
    #[error(
        "{value:?} is not one of registry, registry:<reference>, tag, fcos[:<base-url>], cincinnati:<url>, server:<url>, file:<path>"
    )]
    Unknown {
        /// The whole value.
        value: String,
    },
}

impl SourceParseError {
    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceParseError::NotHttpUrl { .. } => "not_http_url",
            SourceParseError::BadReference { .. } => "bad_reference",
            SourceParseError::Unknown { .. } => "unknown_source",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFragment {
    #[serde(default)]
    updates: Option<RawUpdates>,
    #[serde(default)]
    identity: Option<RawIdentity>,
    #[serde(default)]
    strategy: Option<RawStrategy>,
    #[serde(default)]
    hooks: Option<RawHooks>,
    #[serde(default)]
    health: Option<RawHealth>,
    #[serde(default)]
    host: Option<RawHost>,
    #[serde(default)]
    reports: Option<RawReports>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    url: Option<String>,
    token_file: Option<PathBuf>,
    max_delay_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    systemd: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    timeout_seconds: Option<u64>,
    allow_unconfined: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    rollback_on_failure: Option<bool>,
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdates {
    enabled: Option<bool>,
    stream: Option<String>,
    source: Option<String>,
    keys: Option<Vec<PathBuf>>,
    halt_keys: Option<Vec<PathBuf>>,
    root: Option<PathBuf>,
    mirror_root_check: Option<String>,
    registry_reader: Option<String>,
    skopeo: Option<PathBuf>,
    allow_unsigned: Option<bool>,
    base_source: Option<String>,
    base_keys: Option<Vec<PathBuf>>,
    allow_downgrade: Option<bool>,
    max_version: Option<String>,
    check_interval_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    rollout_wariness: Option<f64>,
    group: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    time_zone: Option<String>,
    #[serde(default)]
    window: Vec<RawWindow>,
    fleet_lock: Option<RawFleetLock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Vec<String>,
    start_time: String,
    length_minutes: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleetLock {
    base_url: Option<String>,
    group: Option<String>,
    release_on_failure: Option<bool>,
}

/// Where the agent reads its update graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The Cairn document in a registry; `None` means the repository the host is booted from.
    Registry(Option<String>),
    /// Fedora's release index and updates file for a stream, with an optional base URL.
    Fcos {
        /// The base URL of Fedora's metadata.
        base_url: Option<String>,
    },
    /// A Cincinnati `/v1/graph` server; only the local wariness is sent.
    Cincinnati(String),
    /// A Cairn server's `/v2/graph/<stream>`.
    Server(String),
    /// A document file.
    File(PathBuf),
    /// No document: follow the tag the host was booted from, guarded by the
    /// base graph (derived images whose repository publishes nothing).
    Tag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Registry(None) => f.write_str("registry (the repository the host follows)"),
            Source::Registry(Some(reference)) => write!(f, "registry:{reference}"),
            Source::Fcos { base_url: None } => f.write_str("fcos"),
            Source::Fcos {
                base_url: Some(base),
            } => write!(f, "fcos:{base}"),
            Source::Cincinnati(url) => write!(f, "cincinnati:{url}"),
            Source::Server(url) => write!(f, "server:{url}"),
            Source::File(path) => write!(f, "file:{}", path.display()),
            Source::Tag => f.write_str("tag (the tag the host follows, with the base guard)"),
        }
    }
}

/// A FleetLock reboot lock.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetLock {
    /// Base URL of the lock server.
    pub base_url: url::Url,
    /// The lock group.
    pub group: String,
    /// Release the slot after a boot that failed (unhealthy, rolled back).
    /// Off by default: the slot is kept, so the group stops until an
    /// operator releases it.
    pub release_on_failure: bool,
}

/// Default longest random delay before a report that is not a failure.
pub const DEFAULT_REPORT_DELAY_SECONDS: u64 = 1800;

/// Outcome reports to a `cairn serve` collector (opt-in: without
/// `reports.url` nothing is sent).
#[derive(Debug, Clone, PartialEq)]
pub struct Reports {
    /// Base URL of the collector; reports go to `{url}/v2/reports/{stream}`.
    pub url: url::Url,
    /// The file holding the bearer token, read at each use and never logged.
    pub token_file: PathBuf,
    /// Longest random delay before a `booted_healthy` or
    /// `booted_unverified` report, so its timing does not mark the host.
    pub max_delay: Duration,
}

/// `updates.mirror_root_check`: a document read at a `registries.conf`
/// mirror is taken only if the repository itself has no newer trust root
/// than the mirror's chain; this says what happens when the repository
/// cannot be reached to ask (docs/agent.md, "Trust roots"). An answer that
/// is an error (an HTTP error status, a refusal, a malformed reply) always
/// refuses the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MirrorRootCheck {
    /// `best-effort`: the mirror's chain is trusted as it is, and the trust
    /// root's note says the repository was not asked.
    #[default]
    BestEffort,
    /// `required`: the document is refused until the repository answers.
    Required,
}

impl MirrorRootCheck {
    /// The value as the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorRootCheck::BestEffort => "best-effort",
            MirrorRootCheck::Required => "required",
        }
    }

    fn parse(text: &str) -> Option<MirrorRootCheck> {
        [MirrorRootCheck::BestEffort, MirrorRootCheck::Required]
            .into_iter()
            .find(|value| value.as_str() == text)
    }
}

/// `updates.registry_reader`: how the agent reads registry artifacts
/// (docs/agent.md, "How the agent reads registries").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistryReader {
    /// `auto`: through skopeo's image proxy (containers/image, with the
    /// host's registries.conf, certs.d and auth) when skopeo starts, else
    /// the built-in client.
    #[default]
    Auto,
    /// `builtin`: always the built-in client.
    Builtin,
}

impl RegistryReader {
    /// The value as the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryReader::Auto => "auto",
            RegistryReader::Builtin => "builtin",
        }
    }

    fn parse(text: &str) -> Option<RegistryReader> {
        [RegistryReader::Auto, RegistryReader::Builtin]
            .into_iter()
            .find(|value| value.as_str() == text)
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// False: check and report, never stage or reboot.
    pub enabled: bool,
    /// The stream; `None` means the tag the host follows.
    pub stream: Option<String>,
    /// Where the graph comes from.
    pub source: Source,
    /// Trusted public keys (PEM files).
    pub keys: Vec<PathBuf>,
    /// Public keys (PEM files) that may only add halts to the stream's
    /// halt list; `keys` may halt and clear too (docs/rollout-guard.md).
    pub halt_keys: Vec<PathBuf>,
    /// The trust root file shipped in the image, read under the host root
    /// (docs/agent.md, "Trust roots"): pinned when the state holds no root,
    /// otherwise only a link to walk.
    pub root: PathBuf,
    /// What a document read at a mirror needs of the repository itself
    /// when it cannot be asked for the next trust root.
    pub mirror_root_check: MirrorRootCheck,
    /// Whether registry artifacts are read through skopeo.
    pub registry_reader: RegistryReader,
    /// The skopeo binary for `registry_reader = "auto"`: a path, or a
    /// name looked up on the agent's `PATH`.
    pub skopeo: PathBuf,
    /// Accept unsigned documents although keys are configured.
    pub allow_unsigned: bool,
    /// Where the base graph of a derived image comes from; `None`: Fedora's
    /// files when the image is built on Fedora CoreOS.
    pub base_source: Option<cairn_oci::sources::BaseSource>,
    /// Keys a Cairn base document must be signed with.
    pub base_keys: Vec<PathBuf>,
    /// Follow edges to older releases.
    pub allow_downgrade: bool,
    /// Never update past this version.
    pub max_version: Option<String>,
    /// Time between checks (jitter is added at run time).
    pub check_interval: Duration,
    /// Explicit wariness; `None` derives it from the node id.
    pub wariness: Option<f64>,
    /// The node's group (FleetLock default).
    pub group: String,
    /// Maintenance windows, if reboots are limited to them.
    pub schedule: Option<Schedule>,
    /// A reboot lock, if reboots need one.
    pub fleet_lock: Option<FleetLock>,
    /// Longest a single update hook may run.
    pub hook_timeout: Duration,
    /// Run a new image's hooks even where systemd cannot confine them (it
    /// is not PID 1): as root, on the host. Off by default.
    pub allow_unconfined_hooks: bool,
    /// Roll back (and reboot) when the health checks fail after an update.
    pub rollback_on_failure: bool,
    /// Longest the post-boot verification waits for `boot-complete.target`.
    pub health_timeout: Duration,
    /// The host runs systemd: boot health and other updaters are asked of
    /// `systemctl`. False: boots are recorded as unverified, and no other
    /// updater can be seen.
    pub systemd: bool,
    /// Where outcome reports go; `None`: nothing is reported.
    pub reports: Option<Reports>,
}

impl Settings {
    /// The strategy in words: `immediate`, `periodic`, `fleet_lock` or both.
    pub fn strategy_name(&self) -> &'static str {
        match (&self.schedule, &self.fleet_lock) {
            (None, None) => "immediate",
            (Some(_), None) => "periodic",
            (None, Some(_)) => "fleet_lock",
            (Some(_), Some(_)) => "periodic+fleet_lock",
        }
    }
}

/// The fragment files in effect, in the order they apply.
pub fn fragments(dirs: &ConfigDirs) -> Result<Vec<PathBuf>, ConfigError> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in &dirs.dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ConfigError {
                    file: dir.display().to_string(),
                    key: String::new(),
                    message: e.to_string(),
                    kind: "read",
                    rendered: None,
                });
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".toml") {
                continue;
            }
            by_name.insert(name, entry.path());
        }
    }
    let masked =
        |path: &Path| std::fs::read_link(path).is_ok_and(|target| target == Path::new("/dev/null"));
    Ok(by_name.into_values().filter(|path| !masked(path)).collect())
}

#[derive(Debug, Default)]
struct Merged {
    values: BTreeMap<&'static str, (toml::Value, String)>,
    windows: Vec<(RawWindow, String)>,
}

impl Merged {
    fn set<T: Into<toml::Value>>(&mut self, key: &'static str, value: Option<T>, file: &str) {
        if let Some(value) = value {
            self.values.insert(key, (value.into(), file.to_string()));
        }
    }

    fn get(&self, key: &'static str) -> Option<&(toml::Value, String)> {
        self.values.get(key)
    }
}

fn merge(merged: &mut Merged, fragment: RawFragment, file: &str) {
    if let Some(u) = fragment.updates {
        merged.set("updates.enabled", u.enabled, file);
        merged.set("updates.stream", u.stream, file);
        merged.set("updates.source", u.source, file);
        merged.set(
            "updates.keys",
            u.keys.map(|keys| {
                keys.iter()
                    .map(|k| k.display().to_string())
                    .collect::<Vec<_>>()
            }),
            file,
        );
        merged.set(
            "updates.halt_keys",
            u.halt_keys.map(|keys| {
                keys.iter()
                    .map(|k| k.display().to_string())
                    .collect::<Vec<_>>()
            }),
            file,
        );
        merged.set(
            "updates.root",
            u.root.map(|path| path.display().to_string()),
            file,
        );
        merged.set("updates.mirror_root_check", u.mirror_root_check, file);
        merged.set("updates.registry_reader", u.registry_reader, file);
        merged.set(
            "updates.skopeo",
            u.skopeo.map(|path| path.display().to_string()),
            file,
        );
        merged.set("updates.allow_unsigned", u.allow_unsigned, file);
        merged.set("updates.base_source", u.base_source, file);
        merged.set(
            "updates.base_keys",
            u.base_keys.map(|keys| {
                keys.iter()
                    .map(|k| k.display().to_string())
                    .collect::<Vec<_>>()
            }),
            file,
        );
        merged.set("updates.allow_downgrade", u.allow_downgrade, file);
        merged.set("updates.max_version", u.max_version, file);
        merged.set(
            "updates.check_interval_seconds",
            u.check_interval_seconds
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            file,
        );
    }
    if let Some(i) = fragment.identity {
        merged.set("identity.rollout_wariness", i.rollout_wariness, file);
        merged.set("identity.group", i.group, file);
    }
    if let Some(h) = fragment.hooks {
        merged.set(
            "hooks.timeout_seconds",
            h.timeout_seconds
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            file,
        );
        merged.set("hooks.allow_unconfined", h.allow_unconfined, file);
    }
    if let Some(h) = fragment.health {
        merged.set("health.rollback_on_failure", h.rollback_on_failure, file);
        merged.set(
            "health.timeout_seconds",
            h.timeout_seconds
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            file,
        );
    }
    if let Some(h) = fragment.host {
        merged.set("host.systemd", h.systemd, file);
    }
    if let Some(r) = fragment.reports {
        merged.set("reports.url", r.url, file);
        merged.set(
            "reports.token_file",
            r.token_file.map(|path| path.display().to_string()),
            file,
        );
        merged.set(
            "reports.max_delay_seconds",
            r.max_delay_seconds
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            file,
        );
    }
    if let Some(s) = fragment.strategy {
        merged.set("strategy.time_zone", s.time_zone, file);
        merged
            .windows
            .extend(s.window.into_iter().map(|w| (w, file.to_string())));
        if let Some(lock) = s.fleet_lock {
            merged.set("strategy.fleet_lock.base_url", lock.base_url, file);
            merged.set("strategy.fleet_lock.group", lock.group, file);
            merged.set(
                "strategy.fleet_lock.release_on_failure",
                lock.release_on_failure,
                file,
            );
        }
    }
}

/// Read, merge and validate the configuration.
pub fn load(dirs: &ConfigDirs) -> Result<Settings, ConfigError> {
    validate(&read_merged(&fragments(dirs)?)?)
}

/// Read and merge these fragments, in this order.
fn read_merged(files: &[PathBuf]) -> Result<Merged, ConfigError> {
    let mut merged = Merged::default();
    for path in files {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            message: e.to_string(),
            kind: "read",
            rendered: None,
        })?;
        merge(&mut merged, parse_fragment(&text, &file)?, &file);
    }
    Ok(merged)
}

/// Validate one fragment on its own, as if it were the only one: what a
/// generated fragment must pass before it is written.
pub fn validate_fragment(text: &str, file: &str) -> Result<Settings, ConfigError> {
    let mut merged = Merged::default();
    merge(&mut merged, parse_fragment(text, file)?, file);
    validate(&merged)
}

/// One fragment's text, every key known.
fn parse_fragment(text: &str, file: &str) -> Result<RawFragment, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        // A syntax error has no key; its full text says the line and
        // column, folded onto one line for the status.
        if key == "." {
            let text = inner.to_string();
            let folded: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            ConfigError {
                file: file.to_string(),
                key: String::new(),
                message: format!("TOML syntax: {}", folded.join(" ")),
                kind: "syntax",
                rendered: Some(text.trim_end().to_string()),
            }
        } else {
            ConfigError {
                file: file.to_string(),
                key,
                message: in_user_terms(inner.message()),
                kind: "invalid_key",
                rendered: None,
            }
        }
    })
}

/// serde's type names in the words of a TOML file.
fn in_user_terms(message: &str) -> String {
    message
        .replace("expected f64", "expected a number")
        .replace("expected u64", "expected a whole number, 0 or more")
        .replace("expected u32", "expected a whole number, 0 or more")
        .replace("expected a sequence", "expected a list")
}

fn validate(merged: &Merged) -> Result<Settings, ConfigError> {
    let error = |key: &'static str, message: String| {
        let file = merged
            .get(key)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| "(defaults)".into());
        ConfigError {
            file,
            key: key.to_string(),
            message,
            kind: "invalid_value",
            rendered: None,
        }
    };
    let text = |key: &'static str| {
        merged
            .get(key)
            .and_then(|(v, _)| v.as_str().map(str::to_string))
    };
    let flag = |key: &'static str, default: bool| {
        merged
            .get(key)
            .and_then(|(v, _)| v.as_bool())
            .unwrap_or(default)
    };

    let source = match text("updates.source").as_deref() {
        None | Some("registry") => Source::Registry(None),
        Some(other) => parse_source(other).map_err(|e| ConfigError {
            kind: e.kind(),
            ..error("updates.source", e.to_string())
        })?,
    };
    let stream = text("updates.stream");
    if stream.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(error("updates.stream", "must not be empty".into()));
    }
    let check_seconds = merged
        .get("updates.check_interval_seconds")
        .and_then(|(v, _)| v.as_integer())
        .unwrap_or(DEFAULT_CHECK_SECONDS as i64);
    if !(10..=7 * 24 * 3600).contains(&check_seconds) {
        return Err(error(
            "updates.check_interval_seconds",
            format!("{check_seconds} is outside 10 seconds to 7 days"),
        ));
    }
    let wariness = merged
        .get("identity.rollout_wariness")
        .and_then(|(v, _)| v.as_float());
    if let Some(w) = wariness
        && !(0.0..=1.0).contains(&w)
    {
        return Err(error(
            "identity.rollout_wariness",
            format!("{w} is outside [0, 1]"),
        ));
    }
    let group = text("identity.group").unwrap_or_else(|| "default".into());
    if group.trim().is_empty() {
        return Err(error("identity.group", "must not be empty".into()));
    }
    let paths = |key: &'static str| -> Vec<PathBuf> {
        merged
            .get(key)
            .and_then(|(v, _)| v.as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(PathBuf::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let keys = paths("updates.keys");
    let halt_keys = paths("updates.halt_keys");
    let base_keys = paths("updates.base_keys");
    let root = match text("updates.root") {
        Some(path) if !path.starts_with('/') => {
            return Err(error(
                "updates.root",
                format!("{path:?} is not an absolute path"),
            ));
        }
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(cairn_oci::trust::SHIPPED_ROOT_PATH),
    };
    let mirror_root_check = match text("updates.mirror_root_check") {
        None => MirrorRootCheck::default(),
        Some(value) => MirrorRootCheck::parse(&value).ok_or_else(|| {
            error(
                "updates.mirror_root_check",
                format!("{value:?} is neither \"best-effort\" nor \"required\""),
            )
        })?,
    };
    let registry_reader = match text("updates.registry_reader") {
        None => RegistryReader::default(),
        Some(value) => RegistryReader::parse(&value).ok_or_else(|| {
            error(
                "updates.registry_reader",
                format!("{value:?} is neither \"auto\" nor \"builtin\""),
            )
        })?,
    };
    let skopeo = match text("updates.skopeo") {
        Some(path) if path.is_empty() => {
            return Err(error("updates.skopeo", "is empty".to_string()));
        }
        Some(path) => PathBuf::from(path),
        None => PathBuf::from("skopeo"),
    };
    let base_source = match text("updates.base_source") {
        Some(text) => {
            Some(
                cairn_oci::sources::BaseSource::parse(&text).map_err(|e| ConfigError {
                    kind: e.kind(),
                    ..error("updates.base_source", e.to_string())
                })?,
            )
        }
        None => None,
    };
    let seconds = |key: &'static str, default: i64, range: std::ops::RangeInclusive<i64>| {
        let value = merged
            .get(key)
            .and_then(|(v, _)| v.as_integer())
            .unwrap_or(default);
        if range.contains(&value) {
            Ok(Duration::from_secs(value.unsigned_abs()))
        } else {
            Err(error(
                key,
                format!(
                    "{value} is outside {} to {} seconds",
                    range.start(),
                    range.end()
                ),
            ))
        }
    };
    let hook_timeout = seconds("hooks.timeout_seconds", 300, 1..=24 * 3600)?;
    let health_timeout = seconds("health.timeout_seconds", 900, 1..=24 * 3600)?;
    let schedule = schedule(merged, &error)?;
    let fleet_lock = match text("strategy.fleet_lock.base_url") {
        Some(base) => {
            let url = url::Url::parse(&base)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    error(
                        "strategy.fleet_lock.base_url",
                        format!("{base:?} is not an http(s) URL"),
                    )
                })?;
            let group = text("strategy.fleet_lock.group").unwrap_or_else(|| group.clone());
            if group.trim().is_empty() {
                return Err(error(
                    "strategy.fleet_lock.group",
                    "must not be empty".into(),
                ));
            }
            Some(FleetLock {
                base_url: url,
                group,
                release_on_failure: flag("strategy.fleet_lock.release_on_failure", false),
            })
        }
        None => {
            for key in [
                "strategy.fleet_lock.group",
                "strategy.fleet_lock.release_on_failure",
            ] {
                if merged.get(key).is_some() {
                    return Err(error(
                        key,
                        "set without strategy.fleet_lock.base_url".into(),
                    ));
                }
            }
            None
        }
    };
    let reports = reports(merged, &error, &seconds)?;
    Ok(Settings {
        enabled: flag("updates.enabled", true),
        stream,
        source,
        keys,
        halt_keys,
        root,
        mirror_root_check,
        registry_reader,
        skopeo,
        allow_unsigned: flag("updates.allow_unsigned", false),
        base_source,
        base_keys,
        allow_downgrade: flag("updates.allow_downgrade", false),
        max_version: text("updates.max_version"),
        check_interval: Duration::from_secs(check_seconds.unsigned_abs()),
        wariness,
        group,
        schedule,
        fleet_lock,
        hook_timeout,
        allow_unconfined_hooks: flag("hooks.allow_unconfined", false),
        rollback_on_failure: flag("health.rollback_on_failure", false),
        health_timeout,
        systemd: flag("host.systemd", true),
        reports,
    })
}

/// The `[reports]` table: nothing unless `url` is set, and then a token file too.
fn reports(
    merged: &Merged,
    error: &impl Fn(&'static str, String) -> ConfigError,
    seconds: &impl Fn(&'static str, i64, std::ops::RangeInclusive<i64>) -> Result<Duration, ConfigError>,
) -> Result<Option<Reports>, ConfigError> {
    let text = |key: &'static str| {
        merged
            .get(key)
            .and_then(|(v, _)| v.as_str().map(str::to_string))
    };
    let Some(base) = text("reports.url") else {
        for key in ["reports.token_file", "reports.max_delay_seconds"] {
            if merged.get(key).is_some() {
                return Err(error(key, "set without reports.url".into()));
            }
        }
        return Ok(None);
    };
    let url = url::Url::parse(&base)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| error("reports.url", format!("{base:?} is not an http(s) URL")))?;
    // Missing: the error names the file that set the URL.
    let token_file = text("reports.token_file")
        .filter(|path| !path.trim().is_empty())
        .ok_or_else(|| ConfigError {
            key: "reports.token_file".into(),
            ..error(
                "reports.url",
                "must be set with reports.url (the file holding the collector's token)".into(),
            )
        })?;
    let max_delay = seconds(
        "reports.max_delay_seconds",
        DEFAULT_REPORT_DELAY_SECONDS as i64,
        0..=24 * 3600,
    )?;
    Ok(Some(Reports {
        url,
        token_file: PathBuf::from(token_file),
        max_delay,
    }))
}

fn schedule(
    merged: &Merged,
    error: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Option<Schedule>, ConfigError> {
    let zone_name = merged
        .get("strategy.time_zone")
        .and_then(|(v, _)| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "UTC".into());
    let zone = parse_zone(&zone_name).ok_or_else(|| {
        error(
            "strategy.time_zone",
            format!("unknown time zone {zone_name:?} (an IANA name or \"localtime\")"),
        )
    })?;
    if merged.windows.is_empty() {
        return Ok(None);
    }
    let mut list = Vec::new();
    for (raw, file) in &merged.windows {
        let window_error = |message: String| ConfigError {
            file: file.clone(),
            key: "strategy.window".into(),
            message,
            kind: "invalid_value",
            rendered: None,
        };
        let mut days = Vec::new();
        for day in &raw.days {
            days.push(
                windows::parse_day(day)
                    .ok_or_else(|| window_error(format!("unknown day {day:?}")))?,
            );
        }
        if days.is_empty() {
            return Err(window_error("days must not be empty".into()));
        }
        let start = windows::parse_time(&raw.start_time)
            .ok_or_else(|| window_error(format!("start_time {:?} is not HH:MM", raw.start_time)))?;
        if !(1..=windows::MAX_LENGTH_MINUTES).contains(&raw.length_minutes) {
            return Err(window_error(format!(
                "length_minutes {} is outside 1 minute to 1 week",
                raw.length_minutes
            )));
        }
        list.push(Window {
            days,
            start,
            length_minutes: raw.length_minutes,
        });
    }
    Ok(Some(Schedule {
        windows: list,
        zone,
        zone_name,
    }))
}

/// Parse `registry:<ref>`, `fcos:<stream-free base URL>`, `cincinnati:<url>`,
/// `server:<url>` or `file:<path>`.
pub fn parse_source(text: &str) -> Result<Source, SourceParseError> {
    let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
    let url = |rest: &str| -> Result<String, SourceParseError> {
        url::Url::parse(rest)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(|_| rest.to_string())
            .ok_or_else(|| SourceParseError::NotHttpUrl {
                value: rest.to_string(),
            })
    };
    match kind {
        // Read by the agent at every check: a reference that cannot parse would fail each one.
        "registry" if !rest.is_empty() => match cairn_oci::Location::parse(rest) {
            Ok(_) => Ok(Source::Registry(Some(rest.to_string()))),
            Err(e) => Err(SourceParseError::BadReference {
                value: rest.to_string(),
                message: e.to_string(),
            }),
        },
        "fcos" => Ok(Source::Fcos {
            base_url: if rest.is_empty() {
                None
            } else {
                Some(url(rest)?)
            },
        }),
        "cincinnati" => Ok(Source::Cincinnati(url(rest)?)),
        "server" => Ok(Source::Server(url(rest)?)),
        "file" if !rest.is_empty() => Ok(Source::File(PathBuf::from(rest))),
        "tag" if rest.is_empty() => Ok(Source::Tag),
        _ => Err(SourceParseError::Unknown {
            value: text.to_string(),
        }),
    }
}
