//! The server's TOML configuration, read in two steps: the raw file (every key
//! known, none ignored), then validated settings with real types.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! refresh_interval_seconds = 30
//!
//! [[stream]]
//! name = "stable"
//! fcos = { releases = "releases.json", updates = "updates/stable.json" }
//!
//! [[stream]]
//! name = "acme"
//! document = { location = "quay.io/acme/os:cairn-graph-stable", keys = ["acme.pub"] }
//! ```

use crate::fleetlock::model::{GroupPolicy, OnExpiry};
use crate::tokens::{Scope, Token, Tokens};
use cairn_oci::Location;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The default listen address: loopback, so nothing is exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default refresh interval, as Fedora's graph builder.
pub const DEFAULT_REFRESH_SECONDS: u64 = 30;
/// Default timeout of one refresh.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    refresh_interval_seconds: Option<u64>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    insecure_registries: Vec<String>,
    #[serde(default)]
    authfile: Option<PathBuf>,
    #[serde(default, rename = "stream")]
    streams: Vec<RawStream>,
    #[serde(default)]
    fleet_lock: Option<RawFleetLock>,
    #[serde(default)]
    reports: Option<RawReports>,
    #[serde(default, rename = "token")]
    tokens: Vec<RawToken>,
    #[serde(default)]
    halts: Option<crate::halts::config::RawHalts>,
    #[serde(default)]
    guard: Option<crate::halts::config::RawGuard>,
    #[serde(default)]
    dashboard: Option<RawDashboard>,
    #[serde(default)]
    roots_directory: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    session_hours: Option<u64>,
}

/// Default lifetime of a dashboard session, in hours: a working day.
pub const DEFAULT_SESSION_HOURS: u64 = 8;
/// The longest dashboard session allowed, in hours: a week.
pub const MAX_SESSION_HOURS: u64 = 168;

/// The `[dashboard]` section, validated (all defaults without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Serve the dashboard (pages, `/api/` and the actions) at all.
    pub enabled: bool,
    /// How long a login lasts; the session cookie's `Max-Age`.
    pub session_lifetime: jiff::SignedDuration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            session_lifetime: jiff::SignedDuration::from_hours(DEFAULT_SESSION_HOURS as i64),
        }
    }
}

fn dashboard(raw: RawDashboard) -> Result<DashboardConfig, String> {
    let hours = raw.session_hours.unwrap_or(DEFAULT_SESSION_HOURS);
    if !(1..=MAX_SESSION_HOURS).contains(&hours) {
        return Err(format!(
            "key `dashboard.session_hours`: {hours} is not between 1 and {MAX_SESSION_HOURS} (a week)"
        ));
    }
    Ok(DashboardConfig {
        enabled: raw.enabled.unwrap_or(true),
        // At most 168: the cast cannot wrap.
        session_lifetime: jiff::SignedDuration::from_hours(hours as i64),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleetLock {
    #[serde(default)]
    backend: BackendName,
    #[serde(default)]
    database: Option<PathBuf>,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    key_prefix: Option<String>,
    allowed_networks: Vec<String>,
    #[serde(default)]
    unknown_groups: UnknownGroups,
    #[serde(default)]
    default_group: Option<RawPolicy>,
    #[serde(default, rename = "group")]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    #[serde(default)]
    backend: BackendName,
    #[serde(default)]
    database: Option<PathBuf>,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    key_prefix: Option<String>,
    #[serde(default)]
    dedup_window_seconds: Option<u64>,
    #[serde(default)]
    missing_after_seconds: Option<u64>,
    #[serde(default)]
    retention_days: Option<u64>,
    #[serde(default)]
    per_address_per_hour: Option<u32>,
    #[serde(default)]
    exempt_networks: Vec<String>,
    #[serde(default)]
    log_client_addresses: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    slots: Option<u32>,
    #[serde(default)]
    lease_seconds: Option<u64>,
    #[serde(default)]
    on_expiry: Option<OnExpiry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    #[serde(default)]
    slots: Option<u32>,
    #[serde(default)]
    lease_seconds: Option<u64>,
    #[serde(default)]
    on_expiry: Option<OnExpiry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    file: PathBuf,
    scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BackendName {
    #[default]
    Embedded,
    Etcd,
}

/// Where a service's durable state (FleetLock's, the reports') is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// SQLite on this server's disk (`database`).
    Embedded {
        /// The SQLite file.
        database: PathBuf,
    },
    /// An etcd cluster shared by several servers.
    Etcd {
        /// Client URLs of the cluster's members (`http://host:port`).
        endpoints: Vec<String>,
        /// Every key this server writes starts with it.
        key_prefix: String,
    },
}

/// The etcd keys' prefix of FleetLock when `key_prefix` is not given.
pub const DEFAULT_ETCD_PREFIX: &str = "/cairn/fleet-lock/";

/// The etcd keys' prefix of the reports when `key_prefix` is not given.
pub const DEFAULT_REPORTS_ETCD_PREFIX: &str = "/cairn/reports/";

/// The agent's retry horizon: it drops a report it could not deliver within
/// 72 hours, so a de-duplication window shorter than that would count a late
/// retry twice.
pub const AGENT_RETRY_HORIZON: jiff::SignedDuration = jiff::SignedDuration::from_hours(72);

/// Default de-duplication window: 7 days, well past the agent's retry horizon.
pub const DEFAULT_DEDUP_WINDOW_SECONDS: u64 = 7 * 86_400;
/// Default time after which a `rebooting` report with no final one counts as missing.
pub const DEFAULT_MISSING_AFTER_SECONDS: u64 = 3600;
/// Default time counts are kept.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;
/// Default reports of one outcome per release per hour from one address.
pub const DEFAULT_PER_ADDRESS_PER_HOUR: u32 = 1;

/// The `[reports]` section, validated.
#[derive(Debug, Clone)]
pub struct ReportsConfig {
    /// The backend and where it keeps the counts.
    pub store: StoreConfig,
    /// A report id seen within this window counts once.
    pub dedup_window: jiff::SignedDuration,
    /// A `rebooting` report with no final outcome this long after it came
    /// counts as missing.
    pub missing_after: jiff::SignedDuration,
    /// Counts of hours older than this are pruned.
    pub retention: jiff::SignedDuration,
    /// Reports of one outcome for one release counted per source address
    /// and hour; 0 turns the limit off.
    pub per_address_per_hour: u32,
    /// Source networks the limit does not apply to.
    pub exempt_networks: Vec<ipnet::IpNet>,
    /// Log the client address of refused reports.
    pub log_client_addresses: bool,
}

impl ReportsConfig {
    /// Whether the per-address limit leaves `address` alone.
    pub fn exempt(&self, address: std::net::IpAddr) -> bool {
        let address = address.to_canonical();
        self.exempt_networks
            .iter()
            .any(|net| net.contains(&address))
    }
}

/// What a FleetLock call for a group not listed in the configuration gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownGroups {
    /// The default group's rules.
    #[default]
    Default,
    /// A 403 `unknown_group`.
    Refuse,
}

/// The `[fleet_lock]` section, validated.
#[derive(Debug, Clone)]
pub struct FleetLockConfig {
    /// The backend and where it keeps the state.
    pub store: StoreConfig,
    /// Networks FleetLock clients may call from.
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Rules of `default` and, under `unknown_groups = "default"`, of every
    /// group not listed.
    pub default_group: GroupPolicy,
    /// Listed groups.
    pub groups: BTreeMap<String, GroupPolicy>,
    /// What unlisted groups get.
    pub unknown_groups: UnknownGroups,
}

impl FleetLockConfig {
    /// A group's rules; `None` when the group is refused.
    pub fn policy(&self, group: &str) -> Option<GroupPolicy> {
        match self.groups.get(group) {
            Some(policy) => Some(*policy),
            None if group == DEFAULT_GROUP || self.unknown_groups == UnknownGroups::Default => {
                Some(self.default_group)
            }
            None => None,
        }
    }

    /// Whether a FleetLock client at `address` may call.
    pub fn allows(&self, address: std::net::IpAddr) -> bool {
        let address = address.to_canonical();
        self.allowed_networks
            .iter()
            .any(|net| net.contains(&address))
    }
}

/// The group FleetLock clients use when none is configured.
pub const DEFAULT_GROUP: &str = "default";

/// A FleetLock group name: `^[a-zA-Z0-9.-]+$`, as the protocol defines it.
pub fn valid_group(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: String,
    #[serde(default)]
    fcos: Option<RawFcos>,
    #[serde(default)]
    document: Option<RawDocument>,
    #[serde(default)]
    scan: Option<RawScan>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFcos {
    releases: String,
    updates: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    location: String,
    #[serde(default)]
    keys: Vec<PathBuf>,
    #[serde(default)]
    allow_unsigned: bool,
    #[serde(default)]
    root: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    repository: String,
    #[serde(default)]
    policy: Option<PathBuf>,
    #[serde(default)]
    tag_pattern: Option<String>,
    #[serde(default)]
    base_graph: Option<String>,
    #[serde(default)]
    base_keys: Vec<PathBuf>,
    #[serde(default)]
    base_unsigned: bool,
    #[serde(default)]
    base_layers_from: Option<String>,
    #[serde(default)]
    base_refresh_interval_seconds: Option<u64>,
}

/// How long a scan reuses the base graph it read: the base changes rarely,
/// and reading it can mean megabytes per stream.
const DEFAULT_BASE_REFRESH: Duration = Duration::from_secs(600);

/// A file path or an http(s) URL.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A local file.
    Path(PathBuf),
    /// A URL.
    Url(String),
}

impl Input {
    fn parse(text: &str, base: &Path) -> Input {
        if text.starts_with("https://") || text.starts_with("http://") {
            Input::Url(text.to_string())
        } else {
            Input::Path(base.join(text))
        }
    }

    /// How to name it in messages.
    pub fn describe(&self) -> String {
        match self {
            Input::Path(path) => path.display().to_string(),
            Input::Url(url) => url.clone(),
        }
    }
}

/// Where a stream's graph comes from.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// Fedora CoreOS's release index and updates file.
    Fcos {
        /// `releases.json`.
        releases: Input,
        /// `updates/<stream>.json`.
        updates: Input,
    },
    /// A published Cairn document.
    Document {
        /// Where it is.
        location: Location,
        /// Trusted keys; with any, a signature is required.
        keys: Vec<cairn_oci::signing::VerifyingKey>,
        /// Accept unsigned documents even with keys configured.
        allow_unsigned: bool,
        /// The trust root to start from (`root = "FILE"`), pinned as given
        /// when this server has stored none yet.
        root: Option<cairn_oci::trust::SignedRoot>,
        /// Where this server keeps the newest root it verified for the
        /// stream; `None`: in memory only.
        root_state: Option<PathBuf>,
    },
    /// A live scan of a repository, assembled like `cairn publish`.
    Scan {
        /// The repository (registry path or `oci:DIR`).
        repository: String,
        /// The policy file.
        policy: Option<PathBuf>,
        /// Tag glob.
        tag_pattern: Option<String>,
        /// The base graph derived releases inherit from, as `cairn publish
        /// --base-graph` reads it.
        base: Option<cairn_oci::publish::BaseOptions>,
        /// Where the newest base trust root walked to is kept, so a restart
        /// walks on from it instead of from `base_keys` (`None`: memory only).
        base_root_state: Option<PathBuf>,
    },
}

/// One served stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Its name in `?stream=`.
    pub name: String,
    /// Its source.
    pub source: SourceSpec,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Time between refreshes of each source.
    pub refresh_interval: Duration,
    /// Longest a refresh may take.
    pub timeout: Duration,
    /// Registries reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// The containers tools' `registries.conf` (empty unless the caller
    /// reads it): repositories it marks insecure may use plain HTTP.
    pub registries_conf: cairn_oci::registries_conf::RegistriesConf,
    /// Registry credentials file.
    pub authfile: Option<PathBuf>,
    /// Streams.
    pub streams: Vec<StreamConfig>,
    /// FleetLock, when configured.
    pub fleet_lock: Option<FleetLockConfig>,
    /// The outcome-report collector, when configured.
    pub reports: Option<ReportsConfig>,
    /// Bearer tokens for the calls that need one.
    pub tokens: Arc<Tokens>,
    /// Where halt lists are kept, and the halt keys, when configured.
    pub halts: Option<crate::halts::config::HaltsConfig>,
    /// The rollout guard, when configured.
    pub guard: Option<crate::halts::config::GuardConfig>,
    /// The web dashboard at `/`.
    pub dashboard: DashboardConfig,
}

/// A configuration that cannot be used; names the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// What is wrong, with the key.
    pub message: String,
}

impl Config {
    /// Read a configuration; relative paths are relative to the file's directory.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let error = |message: String| ConfigError {
            file: file.display().to_string(),
            message,
        };
        // The parser's own rendering, on several lines, shows the line, the
        // column and a caret under the mistake.
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| error(in_user_terms(e.to_string().trim_end())))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let listen = raw
            .listen
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN)
            .parse()
            .map_err(|e| error(format!("key `listen`: {e}")))?;
        let refresh = raw
            .refresh_interval_seconds
            .unwrap_or(DEFAULT_REFRESH_SECONDS);
        if refresh == 0 {
            return Err(error(
                "key `refresh_interval_seconds`: must be at least 1".into(),
            ));
        }
        let timeout = raw.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        if timeout == 0 {
            return Err(error("key `timeout_seconds`: must be at least 1".into()));
        }
        if raw.streams.is_empty() && raw.fleet_lock.is_none() {
            return Err(error(
                "nothing to serve: no [[stream]] and no [fleet_lock] is configured".into(),
            ));
        }
        let fleet_lock = raw
            .fleet_lock
            .map(|section| fleet_lock(section, base))
            .transpose()
            .map_err(error)?;
        let reports = raw
            .reports
            .map(|section| reports(section, base))
            .transpose()
            .map_err(error)?;
        if let (Some(reports), Some(lock)) = (&reports, &fleet_lock)
            && let (
                StoreConfig::Embedded { database: ours },
                StoreConfig::Embedded { database: theirs },
            ) = (&reports.store, &lock.store)
            && ours == theirs
        {
            return Err(error(format!(
                "key `reports.database`: {} is FleetLock's database too; give each its own file (each store holds its file alone)",
                ours.display()
            )));
        }
        let halts = raw
            .halts
            .map(|section| crate::halts::config::halts(section, base))
            .transpose()
            .map_err(error)?;
        let guard = raw
            .guard
            .map(|section| crate::halts::config::guard(section, base))
            .transpose()
            .map_err(error)?;
        if guard.is_some() && (halts.is_none() || reports.is_none()) {
            return Err(error(
                "key `guard`: the guard needs [reports] (the counts it judges) and [halts] (where it keeps its audit and, with etcd, elects its leader)".into(),
            ));
        }
        if let Some(StoreConfig::Embedded { database: ours }) = halts.as_ref().map(|h| &h.store) {
            let theirs = [
                reports.as_ref().map(|r| &r.store),
                fleet_lock.as_ref().map(|l| &l.store),
            ];
            if theirs.into_iter().flatten().any(
                |store| matches!(store, StoreConfig::Embedded { database } if database == ours),
            ) {
                return Err(error(format!(
                    "key `halts.database`: {} is another section's database too; give each its own file",
                    ours.display()
                )));
            }
        }
        if reports.is_some() && raw.streams.is_empty() {
            return Err(error(
                "key `reports`: the collector needs at least one [[stream]]: a report is checked against its stream's graph".into(),
            ));
        }
        let dashboard = raw
            .dashboard
            .map(dashboard)
            .transpose()
            .map_err(error)?
            .unwrap_or_default();
        let mut tokens = Vec::new();
        for (n, token) in raw.tokens.into_iter().enumerate() {
            let file = base.join(&token.file);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| error(format!("key `token[{n}].file`: {}: {e}", file.display())))?;
            tokens.push(
                Token::from_text(file, &text, token.scopes)
                    .map_err(|e| error(format!("key `token[{n}].file`: {e}")))?,
            );
        }
        if reports.is_some()
            && !tokens
                .iter()
                .any(|token: &Token| token.scopes.contains(&Scope::Report))
        {
            return Err(error(
                "key `reports`: the collector needs at least one [[token]] with scope \"report\", which the hosts send their reports with".into(),
            ));
        }
        // Beside the halt lists' database unless said otherwise: both are
        // what a restart must not forget.
        let roots_directory = match (&raw.roots_directory, halts.as_ref().map(|h| &h.store)) {
            (Some(dir), _) => Some(base.join(dir)),
            (None, Some(StoreConfig::Embedded { database })) => Some(
                database
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(DEFAULT_ROOTS_DIRECTORY),
            ),
            (None, _) => None,
        };
        let mut streams = Vec::new();
        for (n, stream) in raw.streams.into_iter().enumerate() {
            let at = |key: &str| format!("key `stream[{n}].{key}` ({})", stream.name);
            if stream.name.trim().is_empty()
                || streams.iter().any(|s: &StreamConfig| s.name == stream.name)
            {
                return Err(error(format!(
                    "{}: empty or repeated stream name",
                    at("name")
                )));
            }
            // Agents report only for such names; and in the etcd store a
            // `/` would let one stream's key prefix cover another's.
            if reports.is_some() && !reportable_stream_name(&stream.name) {
                return Err(error(format!(
                    "{}: with [reports], a stream name is 1 to 64 of A-Z a-z 0-9 . _ - (not `.` or `..`), as agents report only for such names",
                    at("name")
                )));
            }
            let source = match (stream.fcos, stream.document, stream.scan) {
                (Some(fcos), None, None) => SourceSpec::Fcos {
                    releases: Input::parse(&fcos.releases, base),
                    updates: Input::parse(&fcos.updates, base),
                },
                (None, Some(document), None) => {
                    let location = Location::parse(&document.location)
                        .map_err(|e| error(format!("{}: {e}", at("document.location"))))?;
                    let location = match location {
                        Location::File(path) => Location::File(base.join(path)),
                        other => other,
                    };
                    let keys = cairn_oci::signing::VerifyingKey::from_files(
                        document.keys.iter().map(|path| base.join(path)),
                    )
                    .map_err(|e| error(format!("{}: {e}", at("document.keys"))))?;
                    let root = document
                        .root
                        .map(|path| read_root(&base.join(path)))
                        .transpose()
                        .map_err(|e| error(format!("{}: {e}", at("document.root"))))?;
                    SourceSpec::Document {
                        location,
                        keys,
                        allow_unsigned: document.allow_unsigned,
                        root,
                        root_state: roots_directory
                            .as_ref()
                            .map(|dir| dir.join(root_state_name(&stream.name))),
                    }
                }
                (None, None, Some(scan)) => {
                    let base_options = scan_base(&scan, base).map_err(|(key, message)| {
                        error(format!("{}: {message}", at(&format!("scan.{key}"))))
                    })?;
                    SourceSpec::Scan {
                        repository: scan.repository,
                        policy: scan.policy.map(|p| base.join(p)),
                        tag_pattern: scan.tag_pattern,
                        base_root_state: roots_directory
                            .as_ref()
                            .filter(|_| base_options.is_some())
                            .map(|dir| dir.join(base_root_state_name(&stream.name))),
                        base: base_options,
                    }
                }
                _ => {
                    return Err(error(format!(
                        "{}: give exactly one of `fcos`, `document` or `scan`",
                        at("")
                    )));
                }
            };
            streams.push(StreamConfig {
                name: stream.name,
                source,
            });
        }
        Ok(Config {
            listen,
            refresh_interval: Duration::from_secs(refresh),
            timeout: Duration::from_secs(timeout),
            insecure_registries: raw.insecure_registries,
            registries_conf: Default::default(),
            authfile: raw.authfile.map(|p| base.join(p)),
            streams,
            fleet_lock,
            reports,
            tokens: Arc::new(Tokens(tokens)),
            halts,
            guard,
            dashboard,
        })
    }
}

fn policy(
    raw_slots: Option<u32>,
    lease_seconds: Option<u64>,
    on_expiry: Option<OnExpiry>,
    at: &str,
) -> Result<GroupPolicy, String> {
    let defaults = GroupPolicy::default();
    let slots = raw_slots.unwrap_or(defaults.slots);
    if slots == 0 {
        return Err(format!("key `{at}.slots`: must be at least 1"));
    }
    let lease = match lease_seconds {
        None => defaults.lease,
        Some(0) => return Err(format!("key `{at}.lease_seconds`: must be at least 1")),
        Some(seconds) => i64::try_from(seconds)
            .ok()
            .filter(|s| *s <= 366 * 86_400)
            .map(jiff::SignedDuration::from_secs)
            .ok_or_else(|| format!("key `{at}.lease_seconds`: at most a year"))?,
    };
    Ok(GroupPolicy {
        slots,
        lease,
        on_expiry: on_expiry.unwrap_or_default(),
    })
}

fn fleet_lock(raw: RawFleetLock, base: &Path) -> Result<FleetLockConfig, String> {
    if raw.allowed_networks.is_empty() {
        return Err(
            "key `fleet_lock.allowed_networks`: give the networks FleetLock clients call from (CIDR, e.g. \"10.0.0.0/8\")".into(),
        );
    }
    let allowed_networks = networks(&raw.allowed_networks, "fleet_lock.allowed_networks")?;
    let store = store(
        RawStore {
            section: "fleet_lock",
            holds: "the locks",
            backend: raw.backend,
            database: raw.database.as_ref(),
            endpoints: &raw.endpoints,
            key_prefix: raw.key_prefix.as_ref(),
            default_prefix: DEFAULT_ETCD_PREFIX,
        },
        base,
    )?;
    let default_group = match raw.default_group {
        Some(p) => policy(
            p.slots,
            p.lease_seconds,
            p.on_expiry,
            "fleet_lock.default_group",
        )?,
        None => GroupPolicy::default(),
    };
    let mut groups = BTreeMap::new();
    for (n, group) in raw.groups.into_iter().enumerate() {
        let at = format!("fleet_lock.group[{n}]");
        if !valid_group(&group.name) {
            return Err(format!(
                "key `{at}.name`: {:?} is not a FleetLock group name (letters, digits, `.` and `-`)",
                group.name
            ));
        }
        let rules = policy(group.slots, group.lease_seconds, group.on_expiry, &at)?;
        if groups.insert(group.name.clone(), rules).is_some() {
            return Err(format!(
                "key `{at}.name`: group {:?} is listed twice",
                group.name
            ));
        }
    }
    Ok(FleetLockConfig {
        store,
        allowed_networks,
        default_group,
        groups,
        unknown_groups: raw.unknown_groups,
    })
}

/// A `[fleet_lock]` or `[reports]` section's store keys, as one.
pub(crate) struct RawStore<'a> {
    /// The section, as keys are named: `fleet_lock`, `reports`.
    pub(crate) section: &'static str,
    /// What the database holds, for messages: "the locks", "the counts".
    pub(crate) holds: &'static str,
    pub(crate) backend: BackendName,
    pub(crate) database: Option<&'a PathBuf>,
    pub(crate) endpoints: &'a [String],
    pub(crate) key_prefix: Option<&'a String>,
    pub(crate) default_prefix: &'static str,
}

pub(crate) fn store(raw: RawStore<'_>, base: &Path) -> Result<StoreConfig, String> {
    let section = raw.section;
    match raw.backend {
        BackendName::Embedded => {
            if !raw.endpoints.is_empty() || raw.key_prefix.is_some() {
                return Err(format!(
                    "key `{section}.endpoints`/`key_prefix`: only mean something with `backend = \"etcd\"`"
                ));
            }
            let database = raw.database.ok_or_else(|| {
                format!(
                    "key `{section}.database`: give the SQLite file {} are kept in (or `backend = \"etcd\"`)",
                    raw.holds
                )
            })?;
            Ok(StoreConfig::Embedded {
                database: base.join(database),
            })
        }
        BackendName::Etcd => {
            if raw.database.is_some() {
                return Err(format!(
                    "key `{section}.database`: the etcd backend keeps no local database; remove it"
                ));
            }
            if raw.endpoints.is_empty() {
                return Err(format!(
                    "key `{section}.endpoints`: give the etcd members' client URLs (e.g. \"http://10.0.0.5:2379\")"
                ));
            }
            for endpoint in raw.endpoints {
                let parsed = url::Url::parse(endpoint)
                    .map_err(|e| format!("key `{section}.endpoints`: {endpoint:?}: {e}"))?;
                if parsed.scheme() != "http" || parsed.host().is_none() {
                    return Err(format!(
                        "key `{section}.endpoints`: {endpoint:?}: give http://host:port (TLS is not supported yet)"
                    ));
                }
            }
            let key_prefix = raw
                .key_prefix
                .cloned()
                .unwrap_or_else(|| raw.default_prefix.to_string());
            if key_prefix.is_empty() {
                return Err(format!("key `{section}.key_prefix`: must not be empty"));
            }
            Ok(StoreConfig::Etcd {
                endpoints: raw.endpoints.to_vec(),
                key_prefix,
            })
        }
    }
}

/// CIDR networks or single addresses, as `key` lists them.
fn networks(texts: &[String], key: &str) -> Result<Vec<ipnet::IpNet>, String> {
    texts
        .iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|e| format!("key `{key}`: {text:?}: {e}"))
        })
        .collect()
}

/// `^[A-Za-z0-9._-]{1,64}$`, less `.` and `..`: the stream names agents
/// send reports for.
pub fn reportable_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != ".."
}

fn reports(raw: RawReports, base: &Path) -> Result<ReportsConfig, String> {
    let store = store(
        RawStore {
            section: "reports",
            holds: "the counts",
            backend: raw.backend,
            database: raw.database.as_ref(),
            endpoints: &raw.endpoints,
            key_prefix: raw.key_prefix.as_ref(),
            default_prefix: DEFAULT_REPORTS_ETCD_PREFIX,
        },
        base,
    )?;
    let seconds = |value: u64, key: &str| {
        i64::try_from(value)
            .ok()
            .filter(|s| *s <= 10 * 366 * 86_400)
            .map(jiff::SignedDuration::from_secs)
            .ok_or_else(|| format!("key `reports.{key}`: at most ten years"))
    };
    let dedup_window = seconds(
        raw.dedup_window_seconds
            .unwrap_or(DEFAULT_DEDUP_WINDOW_SECONDS),
        "dedup_window_seconds",
    )?;
    if dedup_window < AGENT_RETRY_HORIZON {
        return Err(format!(
            "key `reports.dedup_window_seconds`: must be at least {} (72 hours): agents retry a report for up to 72 hours, and a retry after the window would count twice",
            AGENT_RETRY_HORIZON.as_secs()
        ));
    }
    let missing_after = seconds(
        raw.missing_after_seconds
            .unwrap_or(DEFAULT_MISSING_AFTER_SECONDS),
        "missing_after_seconds",
    )?;
    let retention_days = raw.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if retention_days == 0 {
        return Err("key `reports.retention_days`: must be at least 1".into());
    }
    let retention = seconds(retention_days.saturating_mul(86_400), "retention_days")?;
    if missing_after.is_zero() || missing_after >= retention {
        return Err(format!(
            "key `reports.missing_after_seconds`: must be at least 1 and less than the retention ({} s)",
            retention.as_secs()
        ));
    }
    Ok(ReportsConfig {
        store,
        dedup_window,
        missing_after,
        retention,
        per_address_per_hour: raw
            .per_address_per_hour
            .unwrap_or(DEFAULT_PER_ADDRESS_PER_HOUR),
        exempt_networks: networks(&raw.exempt_networks, "reports.exempt_networks")?,
        log_client_addresses: raw.log_client_addresses,
    })
}

/// The directory beside `[halts] database` the newest trust roots are kept
/// in when `roots_directory` is not given.
pub const DEFAULT_ROOTS_DIRECTORY: &str = "roots";

/// Read and parse a root envelope to pin (`document.root`).
fn read_root(path: &Path) -> Result<cairn_oci::trust::SignedRoot, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > cairn_oci::trust::MAX_ROOT_BYTES {
        return Err(format!(
            "{}: larger than {} bytes",
            path.display(),
            cairn_oci::trust::MAX_ROOT_BYTES
        ));
    }
    let name = path.display().to_string();
    let signed = cairn_oci::trust::SignedRoot::from_envelope(bytes.into(), &name)
        .map_err(|e| e.to_string())?;
    // Checked now, so a root that cannot be pinned stops the start.
    cairn_oci::trust::TrustedRoot::pin(signed.clone()).map_err(|e| format!("{name}: {e}"))?;
    Ok(signed)
}

/// The file a stream's newest root is kept in: its name, with every byte
/// outside `A-Z a-z 0-9 _ -` written `%XX`, so no name can leave the
/// directory or name another stream's file.
pub fn root_state_name(stream: &str) -> String {
    let mut name = String::new();
    for byte in stream.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{name}.root.json")
}

/// The file a scan stream's newest base trust root is kept in. A stream's
/// escaped name holds no `.`, so this never names another stream's file.
pub fn base_root_state_name(stream: &str) -> String {
    let own = root_state_name(stream);
    let name = own.strip_suffix(".root.json").unwrap_or(&own);
    format!("{name}.base.root.json")
}

/// serde's type names in the words of a TOML file.
fn in_user_terms(message: &str) -> String {
    message
        .replace("expected f64", "expected a number")
        .replace("expected u64", "expected a whole number, 0 or more")
        .replace("expected a sequence", "expected a list")
}

/// A scan's base graph settings, checked as `cairn publish` checks its
/// `--base-*` options. An error names the key (under `scan.`) and the fault.
fn scan_base(
    scan: &RawScan,
    dir: &Path,
) -> Result<Option<cairn_oci::publish::BaseOptions>, (&'static str, String)> {
    use cairn_oci::sources::BaseSource;
    let Some(text) = &scan.base_graph else {
        let orphan = [
            ("base_keys", !scan.base_keys.is_empty()),
            ("base_unsigned", scan.base_unsigned),
            ("base_layers_from", scan.base_layers_from.is_some()),
            (
                "base_refresh_interval_seconds",
                scan.base_refresh_interval_seconds.is_some(),
            ),
        ];
        return match orphan.into_iter().find(|(_, given)| *given) {
            Some((key, _)) => Err((key, "only means something with `base_graph`".into())),
            None => Ok(None),
        };
    };
    let source = BaseSource::parse(text).map_err(|e| ("base_graph", e.to_string()))?;
    let keys = cairn_oci::signing::VerifyingKey::from_files(
        scan.base_keys.iter().map(|path| dir.join(path)),
    )
    .map_err(|e| ("base_keys", e.to_string()))?;
    if matches!(source, BaseSource::Document(_)) && keys.is_empty() && !scan.base_unsigned {
        return Err((
            "base_keys",
            format!(
                "the base graph {text} is a Cairn document: give the public key it is signed with (or `base_unsigned = true`)"
            ),
        ));
    }
    if let Some(repository) = &scan.base_layers_from {
        cairn_oci::Repository::parse(repository)
            .map_err(|e| ("base_layers_from", format!("{repository:?}: {e}")))?;
    }
    Ok(Some(cairn_oci::publish::BaseOptions {
        source,
        keys,
        allow_unsigned: scan.base_unsigned,
        layers_from: scan.base_layers_from.clone(),
        reread_after: Some(
            scan.base_refresh_interval_seconds
                .map_or(DEFAULT_BASE_REFRESH, Duration::from_secs),
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_complete_configuration() {
        let text = r#"
            listen = "127.0.0.1:9000"
            refresh_interval_seconds = 5
            [[stream]]
            name = "stable"
            fcos = { releases = "releases.json", updates = "https://example.org/updates/stable.json" }
            [[stream]]
            name = "acme"
            scan = { repository = "quay.io/acme/os" }
        "#;
        let config = Config::from_toml(text, Path::new("/etc/cairn/server.toml")).expect("valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.refresh_interval, Duration::from_secs(5));
        match &config.streams[0].source {
            SourceSpec::Fcos { releases, updates } => {
                assert_eq!(releases, &Input::Path("/etc/cairn/releases.json".into()));
                assert!(matches!(updates, Input::Url(_)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_a_fleet_lock_section_without_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("admin.token"), "0123456789abcdef-admin\n").expect("write");
        let text = r#"
            [fleet_lock]
            database = "locks.sqlite"
            allowed_networks = ["10.0.0.0/8", "192.0.2.7", "fd00::/8"]
            unknown_groups = "refuse"
            default_group = { slots = 2 }
            [[fleet_lock.group]]
            name = "workers"
            slots = 3
            lease_seconds = 7200
            on_expiry = "release"
            [[token]]
            file = "admin.token"
            scopes = ["lock-admin", "report"]
        "#;
        let config = Config::from_toml(text, &dir.path().join("server.toml")).expect("valid");
        assert!(config.streams.is_empty());
        let lock = config.fleet_lock.expect("fleet_lock");
        assert_eq!(
            lock.store,
            StoreConfig::Embedded {
                database: dir.path().join("locks.sqlite")
            }
        );
        assert_eq!(lock.policy("default").map(|p| p.slots), Some(2));
        let workers = lock.policy("workers").expect("workers");
        assert_eq!(workers.lease, jiff::SignedDuration::from_hours(2));
        assert_eq!(workers.on_expiry, OnExpiry::Release);
        assert_eq!(lock.policy("other"), None);
        assert!(lock.allows("10.1.2.3".parse().expect("ip")));
        assert!(lock.allows("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(lock.allows("192.0.2.7".parse().expect("ip")));
        assert!(!lock.allows("192.0.2.8".parse().expect("ip")));
        assert_eq!(config.tokens.0.len(), 1);
    }

    #[test]
    fn reads_an_etcd_backend() {
        let text = r#"
            [fleet_lock]
            backend = "etcd"
            endpoints = ["http://10.0.0.5:2379", "http://10.0.0.6:2379"]
            allowed_networks = ["10.0.0.0/8"]
        "#;
        let config = Config::from_toml(text, Path::new("/etc/cairn/server.toml")).expect("valid");
        let lock = config.fleet_lock.expect("fleet_lock");
        assert_eq!(
            lock.store,
            StoreConfig::Etcd {
                endpoints: vec!["http://10.0.0.5:2379".into(), "http://10.0.0.6:2379".into()],
                key_prefix: DEFAULT_ETCD_PREFIX.into(),
            }
        );
    }

    #[test]
    fn reads_a_reports_section_with_its_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("report.token"), "0123456789abcdef-report\n")
            .expect("write");
        let head = "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }\n\
                    [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n";
        let text = format!("{head}[reports]\ndatabase = \"reports.sqlite\"\n");
        let config = Config::from_toml(&text, &dir.path().join("server.toml")).expect("valid");
        let reports = config.reports.expect("reports");
        assert_eq!(
            reports.store,
            StoreConfig::Embedded {
                database: dir.path().join("reports.sqlite")
            }
        );
        assert_eq!(
            reports.dedup_window,
            jiff::SignedDuration::from_hours(7 * 24)
        );
        assert_eq!(reports.missing_after, jiff::SignedDuration::from_hours(1));
        assert_eq!(reports.retention, jiff::SignedDuration::from_hours(30 * 24));
        assert_eq!(reports.per_address_per_hour, 1);
        assert!(!reports.log_client_addresses);
        assert!(!reports.exempt("127.0.0.1".parse().expect("ip")));
        let text = format!(
            "{head}[reports]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.0.5:2379\"]\n\
             dedup_window_seconds = 259200\nmissing_after_seconds = 5\nretention_days = 2\n\
             per_address_per_hour = 0\nexempt_networks = [\"127.0.0.0/8\", \"::1\"]\nlog_client_addresses = true\n"
        );
        let config = Config::from_toml(&text, &dir.path().join("server.toml")).expect("valid");
        let reports = config.reports.expect("reports");
        assert_eq!(
            reports.store,
            StoreConfig::Etcd {
                endpoints: vec!["http://10.0.0.5:2379".into()],
                key_prefix: DEFAULT_REPORTS_ETCD_PREFIX.into(),
            }
        );
        assert_eq!(reports.missing_after, jiff::SignedDuration::from_secs(5));
        assert_eq!(reports.per_address_per_hour, 0);
        assert!(reports.exempt("127.9.9.9".parse().expect("ip")));
        assert!(reports.exempt("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(reports.exempt("::1".parse().expect("ip")));
        assert!(!reports.exempt("10.0.0.1".parse().expect("ip")));
        assert!(reports.log_client_addresses);
    }

    #[test]
    fn reports_mistakes_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("report.token"), "0123456789abcdef-report").expect("write");
        std::fs::write(dir.path().join("admin.token"), "0123456789abcdef-admin").expect("write");
        let stream = "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }\n";
        let token = "[[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n";
        let admin = "[[token]]\nfile = \"admin.token\"\nscopes = [\"lock-admin\"]\n";
        let db = "[reports]\ndatabase = \"r.db\"\n";
        let named = |name: &str| {
            format!(
                "[[stream]]\nname = {name:?}\nfcos = {{ releases = \"r\", updates = \"u\" }}\n{token}{db}"
            )
        };
        let bad_name =
            "with [reports], a stream name is 1 to 64 of A-Z a-z 0-9 . _ - (not `.` or `..`)";
        let cases = [
            (named("a/b"), "key `stream[0].name` (a/b): with [reports]"),
            (named(".."), bad_name),
            (named("."), bad_name),
            (named("stable "), bad_name),
            (named(&"x".repeat(65)), bad_name),
            (format!("{token}{db}"), "no [[stream]]"),
            (
                format!(
                    "{token}[fleet_lock]\ndatabase = \"l.db\"\nallowed_networks = [\"10.0.0.0/8\"]\n{db}"
                ),
                "key `reports`: the collector needs at least one [[stream]]",
            ),
            (
                format!("{stream}{admin}{db}"),
                "key `reports`: the collector needs at least one [[token]] with scope \"report\"",
            ),
            (
                format!("{stream}{token}[reports]\n"),
                "key `reports.database`: give the SQLite file the counts",
            ),
            (
                format!("{stream}{token}[reports]\nbackend = \"etcd\"\n"),
                "key `reports.endpoints`: give",
            ),
            (
                format!(
                    "{stream}{token}[reports]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\n"
                ),
                "key `reports.endpoints`: \"https://e:2379\": give http://host:port",
            ),
            (
                format!("{stream}{token}{db}endpoints = [\"http://e:2379\"]\n"),
                "key `reports.endpoints`/`key_prefix`: only mean something",
            ),
            (
                format!("{stream}{token}{db}dedup_window_seconds = 259199\n"),
                "key `reports.dedup_window_seconds`: must be at least 259200",
            ),
            (
                format!("{stream}{token}{db}missing_after_seconds = 0\n"),
                "key `reports.missing_after_seconds`",
            ),
            (
                format!("{stream}{token}{db}retention_days = 1\nmissing_after_seconds = 86400\n"),
                "key `reports.missing_after_seconds`",
            ),
            (
                format!("{stream}{token}{db}retention_days = 0\n"),
                "key `reports.retention_days`",
            ),
            (
                format!("{stream}{token}{db}exempt_networks = [\"10.0.0.0/33\"]\n"),
                "key `reports.exempt_networks`: \"10.0.0.0/33\"",
            ),
            (
                format!("{stream}{token}{db}per_address_per_hour = -1\n"),
                "per_address_per_hour",
            ),
            (format!("{stream}{token}{db}limit = 3\n"), "limit"),
            (
                format!(
                    "{stream}{token}[fleet_lock]\ndatabase = \"r.db\"\nallowed_networks = [\"10.0.0.0/8\"]\n{db}"
                ),
                "key `reports.database`: ",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::from_toml(&text, &dir.path().join("server.toml")).expect_err(&text);
            let message = err.to_string();
            assert!(
                message.contains(needle),
                "{needle:?} missing from {message}"
            );
        }
        // Without [reports] such names are still served; good names load.
        let loads = |text: &str| Config::from_toml(text, &dir.path().join("server.toml"));
        let plain = "[[stream]]\nname = \"a/b\"\nfcos = { releases = \"r\", updates = \"u\" }\n";
        assert!(loads(plain).is_ok());
        let long = named(&format!("Stable-1.x_{}", "y".repeat(53)));
        if let Err(error) = loads(&long) {
            panic!("{error}");
        }
    }

    #[test]
    fn a_document_stream_reads_its_root_and_keeps_roots_beside_the_halts_database() {
        use cairn_oci::signing::SigningKey;
        use cairn_oci::trust::{SignedRoot, build_root};
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = [SigningKey::generate(), SigningKey::generate()];
        let public: Vec<_> = keys.iter().map(|k| k.verifying_key()).collect();
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let root =
            build_root(1, expires, [(&public, 2), (&public, 1), (&public, 1)]).expect("root");
        let signed = SignedRoot::sign(&root, &keys).expect("signs");
        std::fs::write(dir.path().join("1.root.json"), &signed.envelope).expect("write");
        std::fs::write(dir.path().join("bad.root.json"), "{}").expect("write");
        let file = dir.path().join("server.toml");
        let stream = |root: &str| {
            format!(
                "[[stream]]\nname = \"a/b\"\ndocument = {{ location = \"doc.json\", root = \"{root}\" }}\n"
            )
        };
        let halts = "[halts]\ndatabase = \"state/halts.sqlite\"\n";
        let config =
            Config::from_toml(&format!("{}{halts}", stream("1.root.json")), &file).expect("valid");
        let SourceSpec::Document {
            root, root_state, ..
        } = &config.streams[0].source
        else {
            panic!("a document source");
        };
        assert_eq!(root.as_ref().map(SignedRoot::version), Some(1));
        assert_eq!(
            root_state.as_deref(),
            Some(dir.path().join("state/roots/a%2Fb.root.json").as_path())
        );
        // Said otherwise, or in memory only without an embedded [halts].
        let elsewhere = format!("roots_directory = \"kept\"\n{}", stream("1.root.json"));
        let config = Config::from_toml(&elsewhere, &file).expect("valid");
        let SourceSpec::Document { root_state, .. } = &config.streams[0].source else {
            panic!("a document source");
        };
        assert_eq!(
            root_state.as_deref(),
            Some(dir.path().join("kept/a%2Fb.root.json").as_path())
        );
        let config = Config::from_toml(&stream("1.root.json"), &file).expect("valid");
        assert!(matches!(
            &config.streams[0].source,
            SourceSpec::Document {
                root_state: None,
                ..
            }
        ));
        let error = Config::from_toml(&stream("bad.root.json"), &file).expect_err("bad root");
        assert!(
            error
                .to_string()
                .contains("key `stream[0].document.root` (a/b)"),
            "{error}"
        );
    }

    #[test]
    fn a_scan_with_a_base_graph_keeps_its_base_root_in_the_roots_directory() {
        let file = Path::new("/etc/cairn/server.toml");
        let scan = |base: &str| {
            format!(
                "roots_directory = \"kept\"\n[[stream]]\nname = \"a/b\"\nscan = {{ repository = \"quay.io/acme/os\"{base} }}\n"
            )
        };
        let config = Config::from_toml(
            &scan(", base_graph = \"quay.io/acme/base:cairn-graph-stable\", base_unsigned = true"),
            file,
        )
        .expect("valid");
        let SourceSpec::Scan {
            base_root_state, ..
        } = &config.streams[0].source
        else {
            panic!("a scan source");
        };
        assert_eq!(
            base_root_state.as_deref(),
            Some(Path::new("/etc/cairn/kept/a%2Fb.base.root.json"))
        );
        // No base graph, no base root to keep.
        let config = Config::from_toml(&scan(""), file).expect("valid");
        assert!(matches!(
            &config.streams[0].source,
            SourceSpec::Scan {
                base_root_state: None,
                ..
            }
        ));
    }

    #[test]
    fn a_scan_reads_its_base_graph_settings() {
        let text = r#"
            [[stream]]
            name = "stable"
            scan = { repository = "quay.io/acme/os", base_graph = "cincinnati:https://updates.example.org#stable", base_layers_from = "quay.io/fedora/fedora-coreos" }
            [[stream]]
            name = "next"
            scan = { repository = "quay.io/acme/os", base_graph = "quay.io/acme/base:cairn-graph-next", base_unsigned = true }
        "#;
        let config = Config::from_toml(text, Path::new("/etc/cairn/server.toml")).expect("valid");
        let SourceSpec::Scan {
            base: Some(base), ..
        } = &config.streams[0].source
        else {
            panic!("{:?}", config.streams[0].source);
        };
        assert_eq!(
            base.source.to_string(),
            "cincinnati:https://updates.example.org#stable"
        );
        assert_eq!(
            base.layers_from.as_deref(),
            Some("quay.io/fedora/fedora-coreos")
        );
        let SourceSpec::Scan {
            base: Some(base), ..
        } = &config.streams[1].source
        else {
            panic!("{:?}", config.streams[1].source);
        };
        assert!(base.allow_unsigned && base.keys.is_empty());
    }

    #[test]
    fn defaults_are_safe() {
        let text = "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }\n";
        let config = Config::from_toml(text, Path::new("c.toml")).expect("valid");
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.refresh_interval, Duration::from_secs(30));
        assert!(config.dashboard.enabled);
        assert_eq!(
            config.dashboard.session_lifetime,
            jiff::SignedDuration::from_hours(8)
        );
    }

    #[test]
    fn the_dashboard_section_is_read() {
        let text = "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }\n\
                    [dashboard]\nenabled = false\nsession_hours = 168\n";
        let config = Config::from_toml(text, Path::new("c.toml")).expect("valid");
        assert_eq!(
            config.dashboard,
            DashboardConfig {
                enabled: false,
                session_lifetime: jiff::SignedDuration::from_hours(168),
            }
        );
    }

    #[test]
    fn a_toml_mistake_is_shown_as_the_parser_renders_it() {
        let text = "listen = \"127.0.0.1:8080\"\nrefresh_interval_seconds = \"soon\"\n";
        let err = Config::from_toml(text, Path::new("/etc/cairn/server.toml")).expect_err(text);
        let message = err.to_string();
        assert!(
            message.starts_with("/etc/cairn/server.toml: TOML parse error at line 2, column 28\n"),
            "{message}"
        );
        assert!(
            message.contains("2 | refresh_interval_seconds = \"soon\"\n"),
            "{message}"
        );
        assert!(
            message.ends_with("expected a whole number, 0 or more"),
            "{message}"
        );
    }

    #[test]
    fn mistakes_name_the_file_and_key() {
        let cases = [
            ("lisen = \"x\"", "lisen"),
            ("listen = \"nowhere\"", "listen"),
            ("[[stream]]\nname = \"s\"", "exactly one"),
            (
                "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\", extra = 1 }",
                "extra",
            ),
            (
                "refresh_interval_seconds = 0\n[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }",
                "refresh_interval_seconds",
            ),
            ("", "no [[stream]] and no [fleet_lock]"),
            (
                "[fleet_lock]\nallowed_networks = [\"10.0.0.0/8\"]",
                "key `fleet_lock.database`",
            ),
            (
                "[fleet_lock]\nbackend = \"etcd\"\nallowed_networks = [\"10.0.0.0/8\"]",
                "key `fleet_lock.endpoints`: give",
            ),
            (
                "[fleet_lock]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\nallowed_networks = [\"10.0.0.0/8\"]",
                "TLS is not supported yet",
            ),
            (
                "[fleet_lock]\nbackend = \"etcd\"\nendpoints = [\"http://e:2379\"]\ndatabase = \"l.db\"\nallowed_networks = [\"10.0.0.0/8\"]",
                "key `fleet_lock.database`: the etcd backend",
            ),
            (
                "[fleet_lock]\ndatabase = \"l.db\"\nendpoints = [\"http://e:2379\"]\nallowed_networks = [\"10.0.0.0/8\"]",
                "only mean something with `backend = \"etcd\"`",
            ),
            (
                "[fleet_lock]\ndatabase = \"l.db\"\nallowed_networks = []",
                "key `fleet_lock.allowed_networks`",
            ),
            (
                "[fleet_lock]\ndatabase = \"l.db\"\nallowed_networks = [\"10.0.0.0/33\"]",
                "key `fleet_lock.allowed_networks`: \"10.0.0.0/33\"",
            ),
            (
                "[fleet_lock]\ndatabase = \"l.db\"\nallowed_networks = [\"10.0.0.0/8\"]\n[[fleet_lock.group]]\nname = \"a b\"",
                "key `fleet_lock.group[0].name`",
            ),
            (
                "[fleet_lock]\ndatabase = \"l.db\"\nallowed_networks = [\"10.0.0.0/8\"]\n[[fleet_lock.group]]\nname = \"w\"\nslots = 0",
                "key `fleet_lock.group[0].slots`",
            ),
            (
                "[fleet_lock]\ndatabase = \"l.db\"\nallowed_networks = [\"10.0.0.0/8\"]\n[[fleet_lock.group]]\nname = \"w\"\non_expiry = \"later\"",
                "on_expiry",
            ),
            (
                "[fleet_lock]\ndatabase = \"l.db\"\nallowed_networks = [\"10.0.0.0/8\"]\n[[token]]\nfile = \"missing-token\"\nscopes = [\"lock-admin\"]",
                "key `token[0].file`: /etc/cairn/missing-token",
            ),
            (
                "[fleet_lock]\ndatabase = \"l.db\"\nallowed_networks = [\"10.0.0.0/8\"]\n[[token]]\nfile = \"t\"\nscopes = [\"everything\"]",
                "everything",
            ),
            (
                "[[stream]]\nname = \"s\"\nscan = { repository = \"r.example/os\", base_graph = \"fcos:\" }",
                "key `stream[0].scan.base_graph` (s): ",
            ),
            (
                "[[stream]]\nname = \"s\"\nscan = { repository = \"r.example/os\", base_graph = \"r.example/base:cairn-graph-s\" }",
                "key `stream[0].scan.base_keys` (s): the base graph r.example/base:cairn-graph-s is a Cairn document",
            ),
            (
                "[[stream]]\nname = \"s\"\nscan = { repository = \"r.example/os\", base_graph = \"fcos:s\", base_keys = [\"missing.pub\"] }",
                "key `stream[0].scan.base_keys` (s): ",
            ),
            (
                "[[stream]]\nname = \"s\"\nscan = { repository = \"r.example/os\", base_unsigned = true }",
                "key `stream[0].scan.base_unsigned` (s): only means something with `base_graph`",
            ),
            (
                "[[stream]]\nname = \"s\"\nscan = { repository = \"r.example/os\", base_refresh_interval_seconds = 60 }",
                "key `stream[0].scan.base_refresh_interval_seconds` (s): only means something with `base_graph`",
            ),
            (
                "[[stream]]\nname = \"s\"\nscan = { repository = \"r.example/os\", base_graph = \"fcos:s\", base_layers_from = \"Not A Repo\" }",
                "key `stream[0].scan.base_layers_from` (s): ",
            ),
            (
                "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }\n[dashboard]\nsession_hours = 0",
                "key `dashboard.session_hours`: 0 is not between 1 and 168",
            ),
            (
                "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }\n[dashboard]\nsession_hours = 169",
                "key `dashboard.session_hours`: 169 is not between 1 and 168",
            ),
            (
                "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }\n[dashboard]\nsesion_hours = 8",
                "sesion_hours",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::from_toml(text, Path::new("/etc/cairn/server.toml")).expect_err(text);
            let message = err.to_string();
            assert!(message.starts_with("/etc/cairn/server.toml: "), "{message}");
            assert!(
                message.contains(needle),
                "{needle:?} missing from {message}"
            );
        }
    }

    /// A directory with a halt key and a report token, and the head of a
    /// configuration that a `[guard]` may follow.
    fn guard_setup() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = cairn_oci::signing::SigningKey::generate();
        std::fs::write(dir.path().join("halt.key"), key.to_pem().expect("pem")).expect("write");
        std::fs::write(dir.path().join("not-a-key"), "hello").expect("write");
        std::fs::write(dir.path().join("report.token"), "0123456789abcdef-report").expect("write");
        let head = "[[stream]]\nname = \"s\"\nfcos = { releases = \"r\", updates = \"u\" }\n\
                    [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n\
                    [reports]\ndatabase = \"reports.sqlite\"\n";
        (dir, head.to_string())
    }

    fn guard_of(dir: &Path, head: &str, keys: &str) -> crate::halts::config::GuardConfig {
        let text = format!(
            "{head}[halts]\ndatabase = \"halts.sqlite\"\n[guard]\nhalt_key = \"halt.key\"\n{keys}"
        );
        let config = Config::from_toml(&text, &dir.join("server.toml")).expect("valid");
        config.guard.expect("guard")
    }

    fn summary(
        failures: u64,
        rebooting: u64,
        missing: u64,
    ) -> crate::reports::model::ReleaseSummary {
        crate::reports::model::ReleaseSummary {
            version: "44.3".into(),
            digest: "sha256:03".into(),
            counts: Default::default(),
            failures,
            rebooting,
            failure_share: None,
            missing,
        }
    }

    #[test]
    fn the_guard_trips_only_past_both_failure_thresholds() {
        let (dir, head) = guard_setup();
        // The defaults: 3 failures and a share above 0.05.
        let guard = guard_of(dir.path(), &head, "");
        assert_eq!(guard.min_failures, 3);
        assert_eq!(guard.max_failure_share, 0.05);
        assert_eq!(guard.max_missing_share, None);
        // min_failures reached, share exactly 0.05: not above it.
        assert!(!guard.trips(&summary(3, 60, 0)));
        // Both: 3 failures, 3/59 above 0.05.
        assert!(guard.trips(&summary(3, 59, 0)));
        // The share far above, the failures one short.
        assert!(!guard.trips(&summary(2, 10, 0)));
        assert!(!guard.trips(&summary(2, 2, 0)));
        // No rebooting report: never.
        assert!(!guard.trips(&summary(50, 0, 0)));
        // Missing outcomes count for nothing without max_missing_share.
        assert!(!guard.trips(&summary(0, 50, 50)));
        // Set thresholds are read and used.
        let guard = guard_of(
            dir.path(),
            &head,
            "min_failures = 1\nmax_failure_share = 0.5\n",
        );
        assert!(!guard.trips(&summary(1, 2, 0)), "1/2 is not above 0.5");
        assert!(guard.trips(&summary(1, 1, 0)));
    }

    #[test]
    fn the_guard_trips_on_missing_outcomes_past_max_missing_share() {
        let (dir, head) = guard_setup();
        let guard = guard_of(dir.path(), &head, "max_missing_share = 0.2\n");
        assert_eq!(guard.max_missing_share, Some(0.2));
        // 10 of 50 missing: exactly 0.2, not above it.
        assert!(!guard.trips(&summary(0, 50, 10)));
        assert!(guard.trips(&summary(0, 50, 11)));
        // A share of 0.4, but failures and missing together under min_failures.
        assert!(!guard.trips(&summary(0, 5, 2)));
        // Together they reach it: 1 failure and 2 missing.
        assert!(guard.trips(&summary(1, 5, 2)));
        // The failure thresholds still apply on their own.
        assert!(guard.trips(&summary(3, 59, 0)));
    }

    #[test]
    fn guard_and_halts_mistakes_name_the_file_and_key() {
        let (dir, head) = guard_setup();
        let halts = "[halts]\ndatabase = \"halts.sqlite\"\n";
        let guard = "[guard]\nhalt_key = \"halt.key\"\n";
        let with = |keys: &str| format!("{head}{halts}{guard}{keys}");
        let missing_key = dir.path().join("missing.key");
        let cases = [
            (with("min_failures = 0\n"), "key `guard.min_failures`: must be at least 1".to_string()),
            (with("min_failures = -1\n"), "min_failures".into()),
            (
                with("max_failure_share = 1.5\n"),
                "key `guard.max_failure_share`: 1.5 is not a share between 0 and 1".into(),
            ),
            (
                with("max_failure_share = -0.1\n"),
                "key `guard.max_failure_share`: -0.1 is not a share".into(),
            ),
            (
                with("max_missing_share = 2.0\n"),
                "key `guard.max_missing_share`: 2 is not a share".into(),
            ),
            (
                with("webhook = \"ftp://chat.example.org/hook\"\n"),
                "key `guard.webhook`: \"ftp://chat.example.org/hook\" is not an http(s) URL".into(),
            ),
            (
                with("check_interval_seconds = 0\n"),
                "key `guard.check_interval_seconds`: must be at least 1".into(),
            ),
            (
                with("check_interval_seconds = 11\n"),
                "key `guard.check_interval_seconds`: at most 10".into(),
            ),
            (
                with("refresh_interval_seconds = 172800\n"),
                "key `guard.refresh_interval_seconds`: 172800 must be shorter than the lifetime (172800 s)".into(),
            ),
            (
                with("lifetime_seconds = 0\n"),
                "key `guard.lifetime_seconds`: must be at least 1".into(),
            ),
            (with("min_failure = 3\n"), "min_failure".into()),
            (
                format!("{head}{halts}[guard]\nhalt_key = \"missing.key\"\n"),
                format!("key `guard.halt_key`: {}", missing_key.display()),
            ),
            (
                format!("{head}{halts}[guard]\nhalt_key = \"not-a-key\"\n"),
                "key `guard.halt_key`: ".into(),
            ),
            (format!("{head}{halts}[guard]\n"), "halt_key".into()),
            (
                format!("{head}{guard}"),
                "key `guard`: the guard needs [reports] (the counts it judges) and [halts]".into(),
            ),
            (
                format!("{head}[halts]\nhalt_keys = [\"missing.pub\"]\ndatabase = \"h.db\"\n"),
                "key `halts.halt_keys`: ".into(),
            ),
            (format!("{head}[halts]\n"), "key `halts.database`".into()),
            (
                format!("{head}[halts]\ndatabase = \"reports.sqlite\"\n"),
                "is another section's database too".into(),
            ),
            (format!("{head}{halts}clear = true\n"), "clear".into()),
        ];
        let file = dir.path().join("server.toml");
        for (text, needle) in cases {
            let err = Config::from_toml(&text, &file).expect_err(&text);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("{}: ", file.display())),
                "{message}"
            );
            assert!(
                message.contains(&needle),
                "{needle:?} missing from {message}"
            );
        }
    }
}
