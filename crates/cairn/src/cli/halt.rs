//! `cairn halt`: add a halt to a stream's signed halt list, show a list, and
//! renew it before it expires (docs/rollout-guard.md). Clearing a halt is the
//! release team's act and goes through `cairn policy halt clear`.

use crate::cli::args::{self, RegistryArgs};
use anyhow::{Context, bail};
use cairn_graph::halts::{HaltList, SignedAs, TrippedBy};
use cairn_oci::halts::{FetchedHaltList, Floor, HaltStoreError, HaltTrust, UpdateOptions};
use cairn_oci::signing::{SigningKey, VerifyingKey};
use cairn_oci::{Location, RegistryClient};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The `halt` verbs.
#[derive(Debug, Subcommand)]
pub enum HaltCommand {
    /// Halt a release: add it to the stream's halt list and publish the list.
    Add(AddArgs),
    /// Print a halt list, and verify it when keys are given.
    Show(ShowArgs),
    /// Publish the list again with a new sequence and expiry, so hosts never
    /// see it expire (the nightly job of teams without `cairn serve`'s guard).
    Refresh(RefreshArgs),
}

/// Where the list is, and its stream.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The halt list: a registry reference or oci:DIR, with its tag (the
    /// tag cairn-halts-<stream> when none is given).
    #[arg(long, value_name = "REF")]
    halt_list: String,
    /// The stream. Default: the one the tag cairn-halts-<stream> names, and
    /// for `add` the document's.
    #[arg(long)]
    stream: Option<String>,
}

/// How a list is signed and what the current one must be signed by.
#[derive(Debug, clap::Args)]
struct SignerArgs {
    /// Sign with this ECDSA P-256 private key (PEM): a halt key, or the
    /// release team's graph key (repeatable: one signature per key).
    #[arg(
        long = "sign-key",
        visible_alias = "key",
        value_name = "PEM",
        required = true
    )]
    keys: Vec<PathBuf>,
    /// Another public key (PEM) the current list may be signed with, such as
    /// the graph key when signing with a halt key (repeatable). Only without
    /// a trust root: under a root (--root, or one beside the document) the
    /// root's graph and halt roles and their thresholds judge the list.
    #[arg(long = "trust-key", value_name = "PEM")]
    trust_keys: Vec<PathBuf>,
    /// How long the published list stays valid (s, m, h, d or w).
    #[arg(long, default_value = "48h")]
    lifetime: String,
    /// A file keeping the newest list this writer published (created when
    /// missing): a list under the tag older than it, or lacking one of its
    /// entries (a replayed list), is refused instead of built on. Keep it
    /// between runs of a nightly job.
    #[arg(long, value_name = "FILE")]
    halt_state: Option<PathBuf>,
    /// Build on the list under the tag even though no trusted key signs it,
    /// such as after a leaked key that signed it was removed from the root.
    /// The list is still checked against --halt-state, the document's
    /// halts.min_sequence and the stream; a warning names who signed it.
    #[arg(long)]
    accept_unverified_current: bool,
}

impl SignerArgs {
    /// The list `--halt-state` holds, if any.
    fn held(&self) -> anyhow::Result<Option<cairn_graph::halts::HaltList>> {
        match &self.halt_state {
            Some(path) => args::read_halt_state(path),
            None => Ok(None),
        }
    }

    /// Keep what was published in `--halt-state`.
    fn keep(&self, list: &cairn_graph::halts::HaltList) -> anyhow::Result<()> {
        if let Some(path) = &self.halt_state {
            let bytes = serde_json::to_vec_pretty(list).context("--halt-state")?;
            cairn_fs::write_atomic(path, &bytes)?;
        }
        Ok(())
    }
}

/// Halt a release.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The release to halt.
    version: String,
    #[command(flatten)]
    list: ListArgs,
    #[command(flatten)]
    signer: SignerArgs,
    /// The stream's document, for the release's digests, the halts it
    /// clears and the lowest list sequence it pairs with
    /// (`halts.min_sequence`): a file, URL, oci:DIR[:TAG] or registry reference.
    #[arg(long, value_name = "DOCUMENT")]
    document: String,
    /// Require the document to be signed by this public key (PEM; repeatable).
    #[arg(long = "document-key", value_name = "PEM")]
    document_keys: Vec<PathBuf>,
    /// Start from this trust root (a root file) instead of --document-key,
    /// and walk to the newest root beside the document: its graph and halt
    /// keys may have signed the list built on, and the list names its version.
    #[arg(long = "root", value_name = "FILE")]
    root: Option<PathBuf>,
    /// Why, shown to operators.
    #[arg(long, default_value = "halted by hand")]
    reason: String,
    /// Who halts it. Default: $USER.
    #[arg(long)]
    who: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Print a halt list.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    list: ListArgs,
    /// A graph key's public half (PEM; repeatable): a list it signs may clear.
    #[arg(long = "key", value_name = "PEM")]
    keys: Vec<PathBuf>,
    /// A halt key's public half (PEM; repeatable): a list it signs may only add.
    #[arg(long = "halt-key", value_name = "PEM")]
    halt_keys: Vec<PathBuf>,
    /// Start from this trust root (a root file) instead of the keys, and walk
    /// to the newest root beside the document (--document), or beside the
    /// list when it lives with the document: its graph and halt roles judge it.
    #[arg(long = "root", value_name = "FILE")]
    root: Option<PathBuf>,
    /// The stream's document (a registry reference or oci:DIR[:TAG]): the
    /// trust roots are walked where it is, since they live beside it. Only
    /// its location is used.
    #[arg(long, value_name = "DOCUMENT")]
    document: Option<String>,
    /// The time expiry is checked at (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Renew a halt list.
#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    list: ListArgs,
    #[command(flatten)]
    signer: SignerArgs,
    /// The stream's document: the list under the tag must be at least as new
    /// as its `halts.min_sequence`, so a list deleted or replaced with an
    /// older one is refused rather than signed again. A file, URL,
    /// oci:DIR[:TAG] or registry reference.
    #[arg(long, value_name = "DOCUMENT")]
    document: Option<String>,
    /// Require the document to be signed by this public key (PEM; repeatable).
    #[arg(long = "document-key", value_name = "PEM", requires = "document")]
    document_keys: Vec<PathBuf>,
    /// Start from this trust root (a root file) instead of --document-key,
    /// and walk to the newest root beside the document: its graph and halt
    /// keys may have signed the list built on, and the list names its version.
    #[arg(long = "root", value_name = "FILE", requires = "document")]
    root: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Run a `halt` verb.
pub fn run(command: HaltCommand) -> anyhow::Result<ExitCode> {
    match command {
        HaltCommand::Add(args) => add(args),
        HaltCommand::Show(args) => show(args),
        HaltCommand::Refresh(args) => refresh(args),
    }
}

/// The stream a halt list's tag names: `cairn-halts-<stream>`.
fn stream_of_tag(location: &Location) -> Option<String> {
    let tag = match location {
        Location::Registry(reference) => reference.tag.as_deref(),
        Location::Layout { tag, .. } => tag.as_deref(),
        _ => None,
    };
    tag.and_then(|tag| tag.strip_prefix("cairn-halts-"))
        .filter(|stream| !stream.is_empty())
        .map(str::to_string)
}

impl ListArgs {
    /// The list's full location and its stream (`stream` when the caller
    /// knows it otherwise).
    fn resolve(&self, stream: Option<&str>) -> anyhow::Result<(String, String)> {
        let parsed = Location::parse(&self.halt_list).context("--halt-list")?;
        let Some(stream) = self
            .stream
            .clone()
            .or_else(|| stream.map(str::to_string))
            .or_else(|| stream_of_tag(&parsed))
        else {
            bail!(
                "--halt-list {}: name the stream with --stream (or use the tag cairn-halts-<stream>)",
                self.halt_list
            );
        };
        let location = cairn_oci::publish::halt_list_location(&self.halt_list, &stream)
            .context("--halt-list")?;
        Ok((location, stream))
    }
}

impl SignerArgs {
    /// The signing keys, the `--trust-key` keys and the lifetime.
    fn load(&self) -> anyhow::Result<(Vec<SigningKey>, Vec<VerifyingKey>, jiff::SignedDuration)> {
        let keys = args::signing_keys(&self.keys)?;
        let trust = args::verifying_keys(&self.trust_keys)?;
        let lifetime = args::parse_duration(&self.lifetime).context("--lifetime")?;
        if lifetime <= jiff::SignedDuration::ZERO {
            bail!("--lifetime {} must be longer than nothing", self.lifetime);
        }
        Ok((keys, trust, lifetime))
    }
}

/// A halt-list error with its kind, which is also its metric label.
fn list_error(location: &str, error: HaltStoreError) -> anyhow::Error {
    let kind = error.kind();
    anyhow::Error::new(error).context(format!("halt list {location} ({kind})"))
}

fn add(args: AddArgs) -> anyhow::Result<ExitCode> {
    let client = args.registry.client()?;
    let (document, root) = load_document(
        &args.document,
        &args.document_keys,
        args.root.as_deref(),
        args.list.stream.as_deref(),
        &client,
    )?;
    let (location, stream) = args.list.resolve(Some(&document.stream))?;
    if stream != document.stream {
        bail!(
            "{}: the document is for stream {:?}, not {stream:?}",
            args.document,
            document.stream
        );
    }
    if let Some(halts) = &document.halts
        && halts.location != location
    {
        eprintln!(
            "cairn: warning: {} names the halt list {}, not {location}; hosts read that one",
            args.document, halts.location
        );
    }
    let (_, release) = document.release(&args.version).with_context(|| {
        format!(
            "{}: no release {} in the document",
            args.document, args.version
        )
    })?;
    let mut digests: Vec<String> = Vec::new();
    for entry in release.architectures.values() {
        for id in entry
            .digest
            .iter()
            .chain(&entry.ostree)
            .chain(&entry.aliases)
        {
            if !digests.contains(id) {
                digests.push(id.clone());
            }
        }
    }
    if digests.is_empty() {
        bail!(
            "{}: release {} has no image digest or commit to halt",
            args.document,
            args.version
        );
    }
    let who = match &args.who {
        Some(who) => who.clone(),
        None => std::env::var("USER")
            .ok()
            .filter(|user| !user.trim().is_empty())
            .context("--who: name who halts the release ($USER is not set)")?,
    };
    let (keys, trust_keys, lifetime) = args.signer.load()?;
    let trust = root_trust(root, &args.signer, &keys, &trust_keys, &args.document_keys)?;
    let cleared = document.cleared_halts();
    let (store, tag) =
        cairn_oci::publish::halt_list_store(&location, &client).context("--halt-list")?;
    let identity = identity_of(&location);
    let mut options = update_options(
        &tag,
        &identity,
        &keys,
        trust.as_ref(),
        &stream,
        lifetime,
        &cleared,
    );
    options.accept_unverified_current = args.signer.accept_unverified_current;
    let held = args.signer.held()?;
    let floor = Floor {
        held: held.as_ref(),
        ..floor_of(&document, &location)
    };
    let published = args::runtime()?
        .block_on(cairn_oci::halts::add_above(
            &store,
            &options,
            &floor,
            &args.version,
            digests,
            &args.reason,
            TrippedBy::Person { who },
        ))
        .map_err(|e| list_error(&location, e))?;
    // Kept first: what was published is the floor of the next run, whatever
    // happens after.
    args.signer.keep(&published.list)?;
    warn_unverified(
        &location,
        &published,
        &known_keys(args.root.as_deref(), trust.as_ref(), &trust_keys)?,
    );
    let list = &published.list;
    let entry = list.halting_version(&cleared, &args.version);
    let id = entry.map_or("?", |e| e.id.as_str());
    let text = if published.added {
        format!(
            "halted {} (halt {id}) in {location}: sequence {}, expires {}\n",
            args.version, list.sequence, list.expires
        )
    } else if published.built_on_unverified.is_some() {
        format!(
            "{} is already halted (halt {id}) in {location}; published the list again as \
             sequence {}, expires {}, since no trusted key signed it\n",
            args.version, list.sequence, list.expires
        )
    } else {
        format!(
            "{} is already halted (halt {id}) in {location}; nothing published\n",
            args.version
        )
    };
    args::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The floor a writer builds on: the document's `halts.min_sequence` when it
/// names this list (a document naming another list proves nothing here).
fn floor_of(document: &cairn_graph::GraphDocument, location: &str) -> Floor<'static> {
    Floor {
        min_sequence: document
            .halts
            .as_ref()
            .filter(|halts| halts.location == location)
            .map_or(0, |halts| halts.min_sequence),
        held: None,
    }
}

/// The document, verified under the newest trust root beside it, and that
/// root (`None`: no key and no root given).
fn load_document(
    text: &str,
    document_keys: &[PathBuf],
    root_file: Option<&std::path::Path>,
    stream: Option<&str>,
    client: &RegistryClient,
) -> anyhow::Result<(
    cairn_graph::GraphDocument,
    Option<cairn_oci::trust::TrustedRoot>,
)> {
    let location = Location::parse(text).context("--document")?;
    let fetched = args::fetch_document(text, &location, client)?;
    let keys = args::verifying_keys(document_keys)?;
    let stream = args::expected_stream(&location, stream);
    let root = args::trusted_root(
        &location,
        client,
        root_file,
        &keys,
        &[],
        jiff::Timestamp::now(),
    )
    .with_context(|| text.to_string())?;
    let signers = root
        .as_ref()
        .map(|root| root.role(cairn_oci::trust::Role::Graph));
    let policy = cairn_oci::document::TrustPolicy {
        signers: signers.as_ref(),
        allow_unsigned: root.is_none(),
        now: fetched.document.issued,
        last_seen: None,
        stream: stream.as_deref(),
    };
    fetched.verify(text, &policy)?;
    if root.is_none() {
        eprintln!(
            "cairn: warning: {text}: signature not checked; give the publisher's key with --document-key"
        );
    }
    Ok((fetched.document, root))
}

/// The root that judges the list a writer builds on: the newest root
/// (version 1 or more) beside the document, else version 0 from the keys
/// given (the document's, `--trust-key`'s and the writer's own, any one).
fn root_trust(
    root: Option<cairn_oci::trust::TrustedRoot>,
    signer: &SignerArgs,
    keys: &[SigningKey],
    trust_keys: &[VerifyingKey],
    document_keys: &[PathBuf],
) -> anyhow::Result<Option<cairn_oci::trust::TrustedRoot>> {
    if let Some(root) = root.filter(|root| root.version() > 0) {
        if !signer.trust_keys.is_empty() {
            eprintln!(
                "cairn: warning: --trust-key is not used: trust root version {} judges the list built on",
                root.version()
            );
        }
        return Ok(Some(root));
    }
    let mut graph = cairn_oci::halts::own_keys(keys);
    graph.extend(trust_keys.iter().cloned());
    graph.extend(args::verifying_keys(document_keys)?);
    Ok(cairn_oci::trust::TrustedRoot::from_config(&graph, &[]))
}

/// Every key this writer knows of, to name who signed a list no trusted key
/// signs: the keys it trusts and those of the `--root` file it started from
/// (a key removed since is named there).
fn known_keys(
    root_file: Option<&std::path::Path>,
    trust: Option<&cairn_oci::trust::TrustedRoot>,
    trust_keys: &[VerifyingKey],
) -> anyhow::Result<Vec<VerifyingKey>> {
    let mut known = trust_keys.to_vec();
    let start = args::start_root(root_file, &[], &[])?;
    for root in start.iter().chain(trust) {
        for role in cairn_oci::trust::Role::ALL {
            known.extend(root.role(role).keys().cloned());
        }
    }
    Ok(known)
}

/// Warn that the list built on was taken unverified
/// (`--accept-unverified-current`), naming the known keys that signed it.
fn warn_unverified(
    location: &str,
    published: &cairn_oci::halts::PublishedHaltList,
    known: &[VerifyingKey],
) {
    let Some(base) = &published.built_on_unverified else {
        return;
    };
    let mut signers: Vec<String> = Vec::new();
    for key in known {
        let id = key.key_id().short().to_string();
        let signed = base
            .signatures
            .iter()
            .any(|signed| key.verifies(&signed.message, &signed.signature));
        if signed && !signers.contains(&id) {
            signers.push(id);
        }
    }
    let who = if signers.is_empty() {
        format!(
            "{} signature(s) by no key this writer knows",
            base.signatures.len()
        )
    } else {
        format!("signed by key(s) {}", signers.join(", "))
    };
    eprintln!(
        "cairn: warning: --accept-unverified-current: built on the halt list under {location} \
         ({}, sequence {}, {}) although no trusted key signs it: {who}; {}",
        base.source_name, base.sequence, base.manifest_digest, base.refusal
    );
}

/// The repository a list's signature names.
fn identity_of(location: &str) -> String {
    match Location::parse(location) {
        Ok(Location::Registry(reference)) => reference.repository.to_string(),
        _ => location.to_string(),
    }
}

fn update_options<'a>(
    tag: &'a str,
    identity: &'a str,
    keys: &'a [SigningKey],
    trust: Option<&'a cairn_oci::trust::TrustedRoot>,
    stream: &'a str,
    lifetime: jiff::SignedDuration,
    cleared: &'a [String],
) -> UpdateOptions<'a> {
    UpdateOptions {
        publish: cairn_oci::document::PublishOptions {
            tag,
            identity,
            keys,
            root_version: trust.map_or(0, cairn_oci::trust::TrustedRoot::version),
            settle: Duration::from_millis(500),
            expected: None,
        },
        trust,
        stream,
        lifetime,
        cleared,
        accept_unverified_current: false,
    }
}

fn refresh(args: RefreshArgs) -> anyhow::Result<ExitCode> {
    let client = args.registry.client()?;
    let (document, root) = match &args.document {
        Some(text) => {
            let (document, root) = load_document(
                text,
                &args.document_keys,
                args.root.as_deref(),
                args.list.stream.as_deref(),
                &client,
            )?;
            (Some(document), root)
        }
        None => (None, None),
    };
    let (location, stream) = args
        .list
        .resolve(document.as_ref().map(|d| d.stream.as_str()))?;
    let floor = match &document {
        Some(document) => {
            if document.stream != stream {
                bail!(
                    "{}: the document is for stream {:?}, not {stream:?}",
                    args.document.as_deref().unwrap_or_default(),
                    document.stream
                );
            }
            floor_of(document, &location)
        }
        None => {
            eprintln!(
                "cairn: warning: no --document: the list under {location} is not checked against \
                 the document's halts.min_sequence, so a deleted or older list would be renewed"
            );
            Floor::NONE
        }
    };
    let (keys, trust_keys, lifetime) = args.signer.load()?;
    let trust = root_trust(root, &args.signer, &keys, &trust_keys, &args.document_keys)?;
    let (store, tag) =
        cairn_oci::publish::halt_list_store(&location, &client).context("--halt-list")?;
    let identity = identity_of(&location);
    let mut options = update_options(
        &tag,
        &identity,
        &keys,
        trust.as_ref(),
        &stream,
        lifetime,
        &[],
    );
    options.accept_unverified_current = args.signer.accept_unverified_current;
    let held = args.signer.held()?;
    let floor = Floor {
        held: held.as_ref(),
        ..floor
    };
    let published = args::runtime()?
        .block_on(cairn_oci::halts::refresh_above(&store, &options, &floor))
        .map_err(|e| list_error(&location, e))?;
    // Kept first: what was published is the floor of the next run, whatever
    // happens after.
    args.signer.keep(&published.list)?;
    warn_unverified(
        &location,
        &published,
        &known_keys(args.root.as_deref(), trust.as_ref(), &trust_keys)?,
    );
    let list = &published.list;
    args::emit(&format!(
        "refreshed {location}: sequence {}, expires {}, {} entries\n",
        list.sequence,
        list.expires,
        list.entries.len()
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let client = args.registry.client()?;
    let (location, stream) = args.list.resolve(None)?;
    let now = args::now_or(args.now.as_deref())?;
    let parsed = Location::parse(&location).context("--halt-list")?;
    let fetched = args::runtime()?
        .block_on(cairn_oci::halts::fetch_location(&parsed, &client))
        .map_err(|e| list_error(&location, e))?;
    let graph_keys = args::verifying_keys(&args.keys)?;
    let halt_keys = args::verifying_keys(&args.halt_keys)?;
    // The roots live beside the document; a list kept elsewhere has none.
    let roots_at = match &args.document {
        Some(text) => Location::parse(text).context("--document")?,
        None => {
            if args.root.is_some() {
                require_roots_beside_list(&parsed, &location, &client)?;
            }
            parsed.clone()
        }
    };
    let root = args::trusted_root(
        &roots_at,
        &client,
        args.root.as_deref(),
        &graph_keys,
        &halt_keys,
        jiff::Timestamp::now(),
    )
    .with_context(|| location.clone())?;
    let checked = if let Some(root) = &root {
        let role = |role| Some(root.role(role)).filter(|keys| !keys.is_empty());
        let graph = role(cairn_oci::trust::Role::Graph);
        let halt = role(cairn_oci::trust::Role::Halt);
        let trust = HaltTrust {
            graph: graph.as_ref(),
            halt: halt.as_ref(),
            stream: &stream,
            newest_held: None,
            min_sequence: 0,
            now,
        };
        Some(
            fetched
                .verify(&trust)
                .map_err(|e| list_error(&location, e))?,
        )
    } else {
        None
    };
    args::emit(&render(&location, &fetched, checked, now))?;
    if checked.is_none() {
        eprintln!(
            "cairn: warning: {location}: signature not checked; give the graph key with --key \
             or a halt key with --halt-key"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuse `--root` without `--document` when the list's repository holds no
/// trust root: walking there would judge the list by the root file alone,
/// whatever rotations the document's repository records since.
fn require_roots_beside_list(
    parsed: &Location,
    location: &str,
    client: &RegistryClient,
) -> anyhow::Result<()> {
    let store = match parsed {
        Location::Registry(reference) => {
            cairn_oci::Store::registry(client.clone(), reference.repository.clone())
        }
        Location::Layout { path, .. } => cairn_oci::Store::Layout(
            cairn_oci::layout::Layout::open(path).with_context(|| location.to_string())?,
        ),
        // A file or URL carries no chain; the walk says so itself.
        _ => return Ok(()),
    };
    let tag = cairn_oci::roots::root_tag(1);
    let found = args::runtime()?
        .block_on(store.resolve(&tag))
        .with_context(|| format!("{location}: looking for {tag}"))?;
    if found.is_none() {
        bail!(
            "--root: the halt list's repository ({location}) holds no trust root ({tag}); the roots \
             live beside the stream's document: pass --document with the document's reference"
        );
    }
    Ok(())
}

/// The list for people: who signed it, its sequence and expiry, each entry.
fn render(
    location: &str,
    fetched: &FetchedHaltList,
    checked: Option<SignedAs>,
    now: jiff::Timestamp,
) -> String {
    let list: &HaltList = &fetched.list;
    let signer = match checked {
        Some(SignedAs::Graph) => "verified, signed by a graph key (may clear halts)",
        Some(SignedAs::HaltOnly) => "verified, signed by a halt key (may only add halts)",
        None => "signature NOT checked (no --key or --halt-key)",
    };
    let expiry = if list.expires < now { " (EXPIRED)" } else { "" };
    let mut text = format!(
        "{location}: {signer}\nstream: {}\nsequence: {}\nexpires: {}{expiry}\nentries: {}\n",
        list.stream,
        list.sequence,
        list.expires,
        list.entries.len()
    );
    for entry in &list.entries {
        let by = match &entry.tripped_by {
            TrippedBy::Guard {
                failures,
                rebooting,
            } => format!("guard: {failures} failed of {rebooting} rebooting"),
            TrippedBy::Alert { name } => format!("alert {name}"),
            TrippedBy::Person { who } => format!("by {who}"),
        };
        text.push_str(&format!(
            "  {} {} at {} ({by}): {}\n",
            entry.id, entry.version, entry.time, entry.reason
        ));
    }
    text
}
