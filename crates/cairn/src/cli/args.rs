//! Argument values shared by several verbs: times, durations, wariness, input files.
//!
//! A build with fewer verbs (docs/install.md#builds) leaves some of these
//! unused, so only the full build checks them for dead code.
#![cfg_attr(
    not(all(
        feature = "agent",
        feature = "publish",
        feature = "server",
        feature = "sim",
        feature = "demo"
    )),
    allow(dead_code)
)]

use anyhow::{Context, bail};
use cairn_graph::fcos::{ReleaseIndex, Updates};
use jiff::{SignedDuration, Timestamp};
use std::path::{Path, PathBuf};

/// Fedora CoreOS's two metadata files.
#[derive(Debug, clap::Args)]
pub struct FedoraFiles {
    /// Fedora's release index (`releases.json`).
    #[arg(long)]
    releases: PathBuf,
    /// Fedora's updates file (`updates/<stream>.json`).
    #[arg(long)]
    updates: PathBuf,
}

impl FedoraFiles {
    /// Read and parse both files, naming the file in any error.
    pub fn load(&self) -> anyhow::Result<(ReleaseIndex, Updates)> {
        let index = ReleaseIndex::from_json(&read(&self.releases)?)
            .with_context(|| self.releases.display().to_string())?;
        let updates = Updates::from_json(&read(&self.updates)?)
            .with_context(|| self.updates.display().to_string())?;
        Ok((index, updates))
    }
}

/// A node's place in rollouts: given, or derived from its id.
#[derive(Debug, clap::Args)]
pub struct WarinessArgs {
    /// The node's wariness in [0, 1] (0 = first in every rollout).
    #[arg(long, conflicts_with = "node_uuid")]
    wariness: Option<String>,
    /// Derive the wariness from this app-specific node id, as Fedora's server does.
    #[arg(long)]
    node_uuid: Option<String>,
}

impl WarinessArgs {
    /// True when either option was given.
    pub fn given(&self) -> bool {
        self.wariness.is_some() || self.node_uuid.is_some()
    }

    /// The wariness, or `default` when neither option was given.
    pub fn resolve(&self, default: f64) -> anyhow::Result<f64> {
        wariness(self.wariness.as_deref(), self.node_uuid.as_deref(), default)
    }
}

/// A time given as Unix seconds or RFC 3339.
pub fn parse_time(value: &str) -> anyhow::Result<Timestamp> {
    if let Ok(seconds) = value.parse::<i64>() {
        return Timestamp::from_second(seconds)
            .with_context(|| format!("{value} is not a representable Unix time"));
    }
    value
        .parse::<Timestamp>()
        .with_context(|| format!("{value:?} is neither Unix seconds nor an RFC 3339 time"))
}

/// The time to evaluate at: the given one, or the clock.
pub fn now_or(value: Option<&str>) -> anyhow::Result<Timestamp> {
    match value {
        Some(value) => parse_time(value).context("--now"),
        None => Ok(Timestamp::now()),
    }
}

/// A duration such as `90s`, `30m`, `48h`, `14d` or `2w`; a bare `0` needs
/// no unit. Whole seconds: expiries and lifetimes are stored in seconds.
pub fn parse_duration(value: &str) -> anyhow::Result<SignedDuration> {
    let value = value.trim();
    if value == "0" {
        return Ok(SignedDuration::ZERO);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("{value:?} has no unit; use s, m, h, d or w (for example 14d)"))?;
    let (number, unit) = value.split_at(split);
    let number: i64 = number
        .parse()
        .with_context(|| format!("{value:?} does not start with a whole number"))?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("{value:?}: unknown unit {unit:?}; use s, m, h, d or w"),
    };
    let seconds = number
        .checked_mul(seconds_per_unit)
        .with_context(|| format!("{value:?} is too long"))?;
    Ok(SignedDuration::from_secs(seconds))
}

/// A wariness value. Fedora's rules apply: out-of-range values are clamped and
/// NaN is kept (it hides nothing), but text that is not a number is an error.
pub fn parse_wariness(value: &str) -> anyhow::Result<f64> {
    let parsed: f64 = value
        .trim()
        .parse()
        .with_context(|| format!("--wariness {value:?} is not a number in [0, 1]"))?;
    Ok(parsed.clamp(0.0, 1.0))
}

/// The wariness from `--wariness`, else `--node-uuid`, else the given default.
pub fn wariness(
    explicit: Option<&str>,
    node_uuid: Option<&str>,
    default: f64,
) -> anyhow::Result<f64> {
    match (explicit, node_uuid) {
        (Some(value), _) => parse_wariness(value),
        (None, Some(id)) => Ok(cairn_graph::wariness::from_app_id(id)),
        (None, None) => Ok(default),
    }
}

/// Write `text` to standard output. Errors, a closed pipe included, reach `main`.
pub fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Read a whole file, naming it in any error.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_take_seconds_or_rfc3339() {
        assert_eq!(parse_time("0").ok(), Some(Timestamp::UNIX_EPOCH));
        assert_eq!(
            parse_time("2026-07-22T14:00:00Z").ok(),
            Timestamp::from_second(1_784_728_800).ok()
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            parse_duration("14d").ok(),
            Some(SignedDuration::from_hours(336))
        );
        assert_eq!(
            parse_duration("90s").ok(),
            Some(SignedDuration::from_secs(90))
        );
        assert!(parse_duration("14").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("500ms").is_err(), "whole seconds only");
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn a_bare_zero_is_the_one_duration_without_a_unit() {
        assert_eq!(parse_duration("0").ok(), Some(SignedDuration::ZERO));
        assert_eq!(parse_duration(" 0 ").ok(), Some(SignedDuration::ZERO));
        assert_eq!(parse_duration("0s").ok(), Some(SignedDuration::ZERO));
        assert!(parse_duration("00").is_err());
        assert!(parse_duration("1").is_err());
    }

    #[test]
    fn insecure_registries_merge_flags_and_the_variable() {
        let flags = vec!["127.0.0.1:5000".to_string()];
        assert_eq!(
            merge_insecure(&flags, " localhost:5001 ,,127.0.0.1:5000, "),
            ["127.0.0.1:5000", "localhost:5001"]
        );
        assert_eq!(merge_insecure(&[], ""), Vec::<String>::new());
    }

    #[test]
    fn wariness_is_clamped_but_must_be_a_number() {
        assert_eq!(parse_wariness("0.5").ok(), Some(0.5));
        assert_eq!(parse_wariness("3").ok(), Some(1.0));
        assert!(parse_wariness("NaN").is_ok_and(f64::is_nan));
        assert!(parse_wariness("half").is_err());
        assert_eq!(wariness(None, None, 1.0).ok(), Some(1.0));
        let derived = wariness(None, Some("e0f3745b108f471cbd4883c6fbed8cdd"), 1.0).ok();
        assert!(derived.is_some_and(|w| (w - 0.65332).abs() < 1e-5));
    }
}

/// The hosts given as flags, then those of the variable's comma-separated
/// list (blanks ignored, each host once).
fn merge_insecure(flags: &[String], from_env: &str) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    let listed = from_env.split(',').map(str::trim).filter(|h| !h.is_empty());
    for host in flags.iter().map(String::as_str).chain(listed) {
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_string());
        }
    }
    hosts
}

/// How to reach registries.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Reach this registry over plain HTTP (repeatable; meant for local test registries).
    /// Hosts in $CAIRN_INSECURE_REGISTRIES (comma-separated) and registries marked
    /// `insecure = true` in registries.conf are added to these.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Registry credentials (auth.json format). Default: the containers tools' lookup
    /// ($REGISTRY_AUTH_FILE, ~/.config/containers/auth.json, ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
}

impl RegistryArgs {
    /// Client options with these settings.
    pub fn client_options(&self) -> anyhow::Result<cairn_oci::ClientOptions> {
        let credentials = match &self.authfile {
            Some(path) => cairn_oci::auth::Credentials::from_file(path)?,
            None => cairn_oci::auth::Credentials::from_default_files()?,
        };
        Ok(cairn_oci::ClientOptions {
            credentials,
            insecure_registries: self.insecure_registries(),
            // Read now, but an unreadable file fails only registry requests:
            // a command on local files does not need it.
            registries_conf: cairn_oci::registries_conf::RegistriesConf::load_for_user()
                .map_err(std::sync::Arc::new),
            ..cairn_oci::ClientOptions::default()
        })
    }

    /// Client options for a host agent: without `--authfile`, the first of
    /// `host_files` that exists, as bootc reads `/run/ostree/auth.json`,
    /// `/etc/ostree/auth.json` and `/usr/lib/ostree/auth.json`; never a user's file.
    /// The agent adds the insecure registries of the host's own
    /// `registries.conf` (under its `--root`) itself.
    #[cfg(feature = "agent")]
    pub fn host_client_options(
        &self,
        host_files: &[PathBuf],
    ) -> anyhow::Result<cairn_oci::ClientOptions> {
        let credentials = match self.host_auth_file(host_files) {
            Some(path) => cairn_oci::auth::Credentials::from_file(&path)?,
            None => cairn_oci::auth::Credentials::none(),
        };
        Ok(cairn_oci::ClientOptions {
            credentials,
            insecure_registries: self.insecure_registries(),
            ..cairn_oci::ClientOptions::default()
        })
    }

    /// `--authfile`, else the first of `host_files` that exists.
    #[cfg(feature = "agent")]
    pub fn host_auth_file(&self, host_files: &[PathBuf]) -> Option<PathBuf> {
        self.authfile
            .clone()
            .or_else(|| host_files.iter().find(|path| path.exists()).cloned())
    }

    /// The `--insecure-registry` hosts, then those of
    /// [`cairn_oci::INSECURE_REGISTRIES_ENV`].
    fn insecure_registries(&self) -> Vec<String> {
        let from_env = std::env::var(cairn_oci::INSECURE_REGISTRIES_ENV).unwrap_or_default();
        merge_insecure(&self.insecure_registries, &from_env)
    }

    /// A registry client with these settings.
    pub fn client(&self) -> anyhow::Result<cairn_oci::RegistryClient> {
        Ok(cairn_oci::RegistryClient::new(self.client_options()?)?)
    }
}

/// Log to stderr (the journal, under systemd) at `RUST_LOG`, default `info`.
/// `RUST_LOG` takes a level and `target=level` directives, comma-separated
/// (`cairn_agent=debug,info`); an empty value or one that does not parse
/// means `info`.
/// (Span and field filters would need a regex engine in every agent.)
#[cfg(any(feature = "agent", feature = "server"))]
pub fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .and_then(|value| value.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // The journal shows escape codes literally.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .init();
}

/// A runtime for the verbs that talk to registries one request at a time,
/// on this thread: in the agent build tokio's multi-threaded scheduler (and
/// the libm it needs) is then left out altogether.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A runtime with two workers, for the verbs that hash and move many blobs
/// at once (publish, demo).
#[cfg(any(feature = "publish", feature = "demo"))]
pub fn parallel_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Read private signing keys from PEM files (`--sign-key`, repeatable).
/// The same key given twice would add a signature that counts once, so it
/// is refused as the mistake it most likely is.
pub fn signing_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<cairn_oci::signing::SigningKey>> {
    let mut keys: Vec<cairn_oci::signing::SigningKey> = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let key = cairn_oci::signing::SigningKey::from_pem(&text, &path.display().to_string())?;
        let id = key.verifying_key().key_id();
        if keys.iter().any(|k| k.verifying_key().key_id() == id) {
            anyhow::bail!(
                "{}: the same key is given twice with --sign-key (key id {}); a key's signatures count once",
                path.display(),
                id.short()
            );
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Read public keys from PEM files.
pub fn verifying_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<cairn_oci::signing::VerifyingKey>> {
    Ok(cairn_oci::signing::VerifyingKey::from_files(paths)?)
}

/// Where a document comes from, and how far to trust it.
#[derive(Debug, Clone, clap::Args)]
pub struct DocumentArgs {
    /// The document: a file, an https URL, `oci:DIR[:TAG]`, or a registry
    /// reference such as quay.io/acme/os:cairn-graph-stable.
    #[arg(
        value_name = "DOCUMENT",
        required_unless_present = "document",
        conflicts_with = "document"
    )]
    location: Option<String>,
    /// The document, as an option (the same as the positional DOCUMENT).
    #[arg(long, value_name = "DOCUMENT")]
    document: Option<String>,
    /// Require a signature by this public key (PEM; repeatable). Without one
    /// the signature is not checked, and a warning says so.
    #[arg(long = "key", value_name = "PEM")]
    keys: Vec<PathBuf>,
    /// Refuse a document of another stream. Default: the stream a
    /// `cairn-graph-<stream>` tag names.
    #[arg(long)]
    stream: Option<String>,
    /// Start from this trust root (a root file, such as an image's
    /// /usr/lib/cairn/root.json) instead of the --key files, and walk to the
    /// newest root beside the document (docs/key-rotation.md).
    #[arg(long = "root", value_name = "FILE")]
    root: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The root `load` walked to, for `halts`.
    #[arg(skip)]
    walked: std::sync::OnceLock<Option<Box<cairn_oci::trust::TrustedRoot>>>,
    /// One client for every request of a command, so that its count is the
    /// command's.
    #[arg(skip)]
    client: std::sync::OnceLock<cairn_oci::RegistryClient>,
}

/// The trust root a command verifies with: `root_file` pinned, else version
/// 0 built from the configured keys, then walked to the newest root beside
/// `location`. `None`: no key and no root, so nothing is verified. A walk
/// refused (a bad next root, an expired final root, a registry that cannot
/// be asked) is an error: nothing may be trusted then.
pub fn trusted_root(
    location: &cairn_oci::Location,
    client: &cairn_oci::RegistryClient,
    root_file: Option<&Path>,
    graph_keys: &[cairn_oci::signing::VerifyingKey],
    halt_keys: &[cairn_oci::signing::VerifyingKey],
    now: Timestamp,
) -> anyhow::Result<Option<cairn_oci::trust::TrustedRoot>> {
    match start_root(root_file, graph_keys, halt_keys)? {
        Some(start) => walk_root(location, client, &start, now).map(Some),
        None => Ok(None),
    }
}

/// Where trust starts: `root_file` pinned, else version 0 from the keys.
pub fn start_root(
    root_file: Option<&Path>,
    graph_keys: &[cairn_oci::signing::VerifyingKey],
    halt_keys: &[cairn_oci::signing::VerifyingKey],
) -> anyhow::Result<Option<cairn_oci::trust::TrustedRoot>> {
    use cairn_oci::trust::{SignedRoot, TrustedRoot};
    match root_file {
        Some(path) => {
            let bytes = cairn_oci::roots::read_root_file(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let name = format!("{} (--root)", path.display());
            let signed = SignedRoot::from_envelope(bytes.into(), &name)?;
            Ok(Some(
                TrustedRoot::pin(signed).with_context(|| name.clone())?,
            ))
        }
        None => Ok(TrustedRoot::from_config(graph_keys, halt_keys)),
    }
}

/// Walk from `start` to the newest root beside `location`; refused walks
/// are errors.
pub fn walk_root(
    location: &cairn_oci::Location,
    client: &cairn_oci::RegistryClient,
    start: &cairn_oci::trust::TrustedRoot,
    now: Timestamp,
) -> anyhow::Result<cairn_oci::trust::TrustedRoot> {
    let walked = runtime()?.block_on(cairn_oci::roots::walk_location(
        location, client, start, now,
    ));
    // Version 0 on a file or URL is the plain --key check: nothing to say.
    if let Some(note) = walked.note.as_ref().filter(|_| start.version() > 0) {
        eprintln!("cairn: note: {note}");
    }
    if let Some(refused) = &walked.refused {
        anyhow::bail!(
            "trust root version {} held ({}): {refused}",
            walked.root.version(),
            refused.kind()
        );
    }
    Ok(walked.root)
}

/// How a root's keys read in a signature note.
pub fn root_note(root: &cairn_oci::trust::TrustedRoot, keys: &[PathBuf]) -> String {
    if root.version() == 0 {
        format!("signature verified with {}", key_names(keys))
    } else {
        let graph = root.role(cairn_oci::trust::Role::Graph);
        let ids: Vec<&str> = graph.key_ids().map(|id| id.short()).collect();
        format!(
            "signature verified under trust root version {} ({} of graph keys {})",
            root.version(),
            graph.threshold(),
            ids.join(", ")
        )
    }
}

/// The stream a document location implies: `--stream`, else its default tag.
pub fn expected_stream(location: &cairn_oci::Location, explicit: Option<&str>) -> Option<String> {
    if let Some(stream) = explicit {
        return Some(stream.to_string());
    }
    let tag = match location {
        cairn_oci::Location::Registry(reference) => reference.tag.as_deref(),
        cairn_oci::Location::Layout { tag, .. } => tag.as_deref(),
        _ => None,
    };
    tag.and_then(cairn_oci::document::stream_of_tag)
        .map(str::to_string)
}

/// Fetch a document, naming `name` (as the user wrote it) in any error that
/// does not already name the location.
pub fn fetch_document(
    name: &str,
    location: &cairn_oci::Location,
    client: &cairn_oci::RegistryClient,
) -> anyhow::Result<cairn_oci::document::FetchedDocument> {
    use cairn_oci::OciError;
    use cairn_oci::document::DocumentStoreError;
    match runtime()?.block_on(cairn_oci::document::fetch_location(location, client)) {
        Ok(fetched) => Ok(fetched),
        // A location the reader cannot use (no tag) is already its subject.
        Err(DocumentStoreError::Store(error @ OciError::Invalid { .. })) if matches!(&error, OciError::Invalid { what, .. } if *what == location.to_string()) => {
            Err(error.into())
        }
        Err(error) => Err(anyhow::Error::new(error).context(name.to_string())),
    }
}

/// How `--key` files read for people: `a.pub` or `one of a.pub, b.pub`.
pub fn key_names(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    match names.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", names.join(", ")),
    }
}

impl DocumentArgs {
    /// The document as given on the command line.
    pub fn name(&self) -> &str {
        // Clap requires one of the two.
        self.location
            .as_deref()
            .or(self.document.as_deref())
            .unwrap_or_default()
    }

    /// The registry client `load` and `halts` use (made once; clones share
    /// its connections, tokens and request counts).
    pub fn client(&self) -> anyhow::Result<cairn_oci::RegistryClient> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client = self.registry.client()?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// What `load` checked of the signature, in words.
    pub fn signature_note(&self) -> String {
        match self.walked.get() {
            Some(Some(root)) => root_note(root, &self.keys),
            _ => "signature NOT checked (no --key)".to_string(),
        }
    }

    /// True when `--key` or `--root` was given, so `load` checks a signature.
    pub fn has_trust(&self) -> bool {
        !self.keys.is_empty() || self.root.is_some()
    }

    /// Read the document and check its signature when keys are given
    /// (callers then say what was checked: [`DocumentArgs::warn_if_unchecked`]).
    /// Expiry is left to the caller, which reports it in its own terms.
    pub fn load(&self) -> anyhow::Result<cairn_graph::GraphDocument> {
        Ok(self.load_with(Timestamp::now(), None, None)?.document)
    }

    /// As [`DocumentArgs::load`], for verbs that act on the document
    /// (promote), as an agent trusts it: refuses to run without `--key` or
    /// `--root`, walks the root at `now`, refuses a document expired at
    /// `now` and, given `floor`, one older than it. The whole fetch is
    /// returned, for its manifest digest.
    pub fn load_verified(
        &self,
        now: Timestamp,
        floor: Option<cairn_oci::document::Seen<'_>>,
    ) -> anyhow::Result<cairn_oci::document::FetchedDocument> {
        if !self.has_trust() {
            bail!(
                "{}: no --key or --root: refusing to act on an unverified document",
                self.name()
            );
        }
        self.load_with(now, Some(now), floor)
    }

    /// Fetch, walk the root at `root_now`, and verify. `policy_now: None`
    /// leaves expiry to the caller (checked at the document's own `issued`).
    fn load_with(
        &self,
        root_now: Timestamp,
        policy_now: Option<Timestamp>,
        last_seen: Option<cairn_oci::document::Seen<'_>>,
    ) -> anyhow::Result<cairn_oci::document::FetchedDocument> {
        let name = self.name();
        let location = cairn_oci::Location::parse(name)?;
        let client = self.client()?;
        let fetched = fetch_document(name, &location, &client)?;
        for field in &fetched.ignored_fields {
            eprintln!("cairn: warning: {name}: unknown field `{field}` ignored");
        }
        let keys = verifying_keys(&self.keys)?;
        let stream = expected_stream(&location, self.stream.as_deref());
        let root = trusted_root(
            &location,
            &client,
            self.root.as_deref(),
            &keys,
            &[],
            root_now,
        )
        .with_context(|| name.to_string())?;
        let signers = root
            .as_ref()
            .map(|root| root.role(cairn_oci::trust::Role::Graph));
        let _ = self.walked.set(root.map(Box::new));
        let policy = cairn_oci::document::TrustPolicy {
            signers: signers.as_ref(),
            allow_unsigned: false,
            // Without `policy_now`, expiry is the caller's, at its own `--now`.
            now: policy_now.unwrap_or(fetched.document.issued),
            last_seen,
            stream: stream.as_deref(),
        };
        fetched.verify(name, &policy)?;
        Ok(fetched)
    }

    /// The halts in effect for `document`, when it has halts on: its halt
    /// list fetched and verified (the document's `--key`s as graph keys,
    /// `halt_keys` as halt keys, the document's `min_sequence` as the floor),
    /// minus the halts the document clears. A list refused, expired or
    /// unreachable is an error naming its kind: with halts on, no list means
    /// no rollout.
    pub fn halts(
        &self,
        document: &cairn_graph::GraphDocument,
        halt_args: &HaltKeyArgs,
        now: Timestamp,
    ) -> anyhow::Result<Option<Halts>> {
        let halt_keys = &halt_args.halt_keys;
        let Some(settings) = &document.halts else {
            return Ok(None);
        };
        let location = &settings.location;
        let failed = |error: cairn_oci::halts::HaltStoreError| {
            let kind = error.kind();
            anyhow::Error::new(error).context(format!("halt list {location} ({kind})"))
        };
        let parsed = cairn_oci::Location::parse(location)
            .with_context(|| format!("{}: halts.location", self.name()))?;
        let client = self.client()?;
        let fetched = runtime()?
            .block_on(cairn_oci::halts::fetch_location(&parsed, &client))
            .map_err(failed)?;
        let graph_keys = verifying_keys(&self.keys)?;
        let halt_keys = verifying_keys(halt_keys)?;
        let held = halt_args.held()?;
        // The root `load` walked to; at version 0 the --halt-keys join its
        // halt role, from a root of version 1 on only the root decides.
        let root = match self.walked.get() {
            Some(Some(root)) if root.version() > 0 => Some(root.as_ref().clone()),
            _ => cairn_oci::trust::TrustedRoot::from_config(&graph_keys, &halt_keys),
        };
        let role = |role| {
            root.as_ref()
                .map(|root| root.role(role))
                .filter(|keys| !keys.is_empty())
        };
        let graph = role(cairn_oci::trust::Role::Graph);
        let halt = role(cairn_oci::trust::Role::Halt);
        let signed_as = fetched
            .verify(&cairn_oci::halts::HaltTrust {
                graph: graph.as_ref(),
                halt: halt.as_ref(),
                stream: &document.stream,
                newest_held: held.as_ref(),
                min_sequence: settings.min_sequence,
                now,
            })
            .map_err(failed)?;
        halt_args.hold(&fetched.bytes, held.as_ref(), &fetched.list)?;
        let cleared = document.cleared_halts();
        let entries: Vec<cairn_graph::halts::HaltEntry> =
            fetched.list.effective(&cleared).cloned().collect();
        Ok(Some(Halts {
            location: location.clone(),
            sequence: fetched.list.sequence,
            signed_as: root.is_some().then_some(signed_as),
            entries,
        }))
    }

    /// After a command's output: warn when `load` checked no signature.
    /// Not before, so that an error stays the only line of a failure.
    pub fn warn_if_unchecked(&self) {
        if !matches!(self.walked.get(), Some(Some(_))) {
            eprintln!(
                "cairn: warning: {}: signature not checked; give the publisher's key with --key",
                self.name()
            );
        }
    }
}

/// Keys a stream's halt list may be signed with besides the document's.
#[derive(Debug, Clone, clap::Args)]
pub struct HaltKeyArgs {
    /// A halt key's public half (PEM; repeatable): a halt list it signs may
    /// only add halts. The document's --key may also sign the list.
    #[arg(long = "halt-key", value_name = "PEM")]
    pub halt_keys: Vec<PathBuf>,
    /// A file keeping the newest halt list accepted (created when missing):
    /// a later list older than it, or signed only by a halt key and lacking
    /// one of its entries, is refused, as hosts and `cairn serve` refuse it.
    #[arg(long, value_name = "FILE")]
    pub halt_state: Option<PathBuf>,
    /// Read `--halt-state` but never write it (a dry run).
    #[arg(skip)]
    pub halt_state_read_only: bool,
}

/// The halt list a `--halt-state` file holds, if it exists.
pub fn read_halt_state(path: &Path) -> anyhow::Result<Option<cairn_graph::halts::HaltList>> {
    let Some(bytes) = cairn_fs::read_optional(path)? else {
        return Ok(None);
    };
    let list = cairn_graph::halts::HaltList::from_json(&bytes)
        .with_context(|| format!("{} (--halt-state)", path.display()))?;
    Ok(Some(list))
}

impl HaltKeyArgs {
    /// The list `--halt-state` holds, if any.
    fn held(&self) -> anyhow::Result<Option<cairn_graph::halts::HaltList>> {
        match &self.halt_state {
            Some(path) => read_halt_state(path),
            None => Ok(None),
        }
    }

    /// Keep `accepted` in `--halt-state` when it is newer than what it held.
    fn hold(
        &self,
        bytes: &[u8],
        held: Option<&cairn_graph::halts::HaltList>,
        accepted: &cairn_graph::halts::HaltList,
    ) -> anyhow::Result<()> {
        let Some(path) = self
            .halt_state
            .as_ref()
            .filter(|_| !self.halt_state_read_only)
        else {
            return Ok(());
        };
        if held.is_some_and(|held| held.sequence >= accepted.sequence) {
            return Ok(());
        }
        cairn_fs::write_atomic(path, bytes)?;
        Ok(())
    }
}

/// The halts in effect for a document, from its verified halt list.
#[derive(Debug, Clone)]
pub struct Halts {
    /// Where the list was read.
    pub location: String,
    /// Its sequence.
    pub sequence: u64,
    /// The role of the key it verified under; `None`: no key given.
    pub signed_as: Option<cairn_graph::halts::SignedAs>,
    /// The halts in effect (the document's cleared ones left out).
    pub entries: Vec<cairn_graph::halts::HaltEntry>,
}

impl Halts {
    /// Every digest (and commit) a halt in effect names.
    pub fn digests(&self) -> Vec<String> {
        self.entries
            .iter()
            .flat_map(|entry| entry.digests.iter().cloned())
            .collect()
    }

    /// How the list was checked, in words.
    pub fn note(&self) -> String {
        let how = match self.signed_as {
            Some(cairn_graph::halts::SignedAs::Graph) => "verified with a graph key",
            Some(cairn_graph::halts::SignedAs::HaltOnly) => "verified with a halt key",
            None => "signature NOT checked (no --key or --halt-key)",
        };
        format!(
            "halt list {} sequence {}: {how}",
            self.location, self.sequence
        )
    }
}

/// The identifier the graph knows a `--booted` version by on `arch`: its
/// manifest digest, else its ostree checksum. Digests and unknown values
/// pass through, so the decision can say what is wrong with them.
pub fn booted_id(
    document: &cairn_graph::GraphDocument,
    arch: &str,
    booted: &str,
) -> anyhow::Result<String> {
    document
        .booted_id(arch, booted)
        .with_context(|| format!("--booted {booted}"))
}
