//! `cairn publish`: scan a repository, merge the policy, sign and push the
//! document. The pipeline is `cairn_oci::publish`; this module parses the
//! arguments and tells the operator what happened.

use crate::cli::args::{self, RegistryArgs};
use anyhow::{Context, bail};
use cairn_graph::Rollout;
use cairn_graph::derive::BaseGraph;
use cairn_graph::fcos::Updates;
use cairn_oci::document::{self as doc, DocumentStoreError};
use cairn_oci::layout::Layout;
use cairn_oci::publish::{
    Assembly, BaseOptions, HaltListSetting, Observer, Options, Outcome, Publication, PublishError,
};
use cairn_oci::scan::{ScanCache, ScanReport, is_release_tag};
use cairn_oci::sources::BaseSource;
use cairn_oci::trust::{Role, TrustedRoot};
use cairn_oci::{Location, RegistryClient, Repository, Store};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when another publisher moved the tag.
pub const CONFLICT_EXIT: u8 = 3;

/// What a new release without a policy entry gets.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DefaultRollout {
    /// Offered to every host at once (`start_percentage: 1.0`, stamped now).
    Immediate,
    /// No rollout: offered to nobody until the policy says so.
    None,
}

/// Scan a repository's images, merge the release team's policy, and publish
/// the signed update graph document next to the images.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository: registry/path (quay.io/acme/os) or oci:DIR.
    #[arg(long)]
    repository: String,
    /// The stream the document describes.
    #[arg(long)]
    stream: String,
    /// The policy file, in Fedora CoreOS's updates/<stream>.json format.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Only tags matching this glob are releases (mutable tags are always read).
    #[arg(long)]
    tag_pattern: Option<String>,
    /// Sign with this ECDSA P-256 private key (PEM; repeatable: one
    /// signature per key, all in one cosign signature manifest).
    #[arg(long = "sign-key", value_name = "PEM")]
    sign_keys: Vec<PathBuf>,
    /// How long the document stays valid (s, m, h, d or w).
    #[arg(long, default_value = "14d")]
    expires_in: String,
    /// Print what would change instead of publishing.
    #[arg(long)]
    dry_run: bool,
    /// Only re-sign the current document with new `issued` and `expires`.
    #[arg(long, conflicts_with_all = ["policy", "tag_pattern", "dry_run", "recheck"])]
    refresh: bool,
    /// Re-read every tag, not just new and mutable ones.
    #[arg(long)]
    recheck: bool,
    /// Tags that move and are re-read on every scan (repeatable).
    #[arg(long = "mutable-tag", default_values = ["stable", "testing", "next", "latest"])]
    mutable_tags: Vec<String>,
    /// The document's tag. Default: cairn-graph-<stream>.
    #[arg(long)]
    tag: Option<String>,
    /// The rollout new releases without a policy entry get.
    #[arg(long, value_enum, default_value = "immediate")]
    default_rollout: DefaultRollout,
    /// Publish even when a policy entry names no release in the repository
    /// (its settings then apply to nothing, until that release appears).
    #[arg(long)]
    allow_unknown_releases: bool,
    /// The scan cache (digests already read). Default: under $XDG_CACHE_HOME/cairn.
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
    /// The publication time (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
    /// Build on the published document even if it is not signed by
    /// --sign-key (with --roots: by the newest root's graph threshold).
    #[arg(long)]
    accept_unverified_previous: bool,
    /// The base graph derived releases inherit barriers and dead-ends from:
    /// fcos:<stream>[:<base-url>], cincinnati:<url>#<stream>, or a Cairn
    /// document (registry reference, oci:DIR[:TAG], file or URL).
    #[arg(long, value_name = "SOURCE")]
    base_graph: Option<String>,
    /// Public key (PEM) a Cairn base document must be signed with (repeatable).
    #[arg(long = "base-key", value_name = "PEM", requires = "base_graph")]
    base_keys: Vec<PathBuf>,
    /// Accept an unsigned Cairn base document.
    #[arg(long, requires = "base_graph")]
    base_unsigned: bool,
    /// A file keeping the newest trust root of a Cairn base document's
    /// repository (created when missing): each publish walks on from it
    /// rather than from the --base-key version 0, so a registry or mirror
    /// that lacks the newest root tags cannot take it back to an older root,
    /// and a chain longer than one walk (32 versions) is read over several
    /// publishes. Keep it between runs; it belongs to that base repository.
    #[arg(long, value_name = "FILE", requires = "base_graph")]
    base_root: Option<PathBuf>,
    /// For images that record no base: match their lower layers against the
    /// base releases' images in this repository.
    #[arg(long, value_name = "REPOSITORY", requires = "base_graph")]
    base_layers_from: Option<String>,
    /// Turn halt lists on for the stream, with the list at this location
    /// (registry reference or oci:DIR; the tag defaults to
    /// cairn-halts-<stream>). Later publishes keep it until --no-halt-list.
    #[arg(long, value_name = "REF", conflicts_with = "no_halt_list")]
    halt_list: Option<String>,
    /// Turn halt lists off for the stream.
    #[arg(long)]
    no_halt_list: bool,
    /// Public key (PEM) of a halt key the halt list may be signed with
    /// (repeatable); the --sign-key's own public half is always trusted.
    #[arg(long = "halt-key", value_name = "PEM")]
    halt_keys: Vec<PathBuf>,
    /// The release team's directory of trust roots (<N>.root.json, written by
    /// `cairn root init` and `rotate`): the versions the repository lacks are
    /// pushed as cairn-root-<N>, the document is signed under the newest,
    /// and the --sign-keys must meet its graph threshold.
    #[arg(long, value_name = "DIR")]
    roots: Option<PathBuf>,
    /// Publish a new, empty halt list when the stream's list is gone although
    /// the previous document paired with one: this lifts every halt it held.
    #[arg(long)]
    recreate_halt_list: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(&args)?;
    let runtime = args::parallel_runtime()?;
    match runtime.block_on(publish(&args, &store)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => match error.downcast_ref::<DocumentStoreError>() {
            Some(conflict @ DocumentStoreError::Conflict { .. }) => {
                eprintln!("cairn: {conflict}");
                Ok(ExitCode::from(CONFLICT_EXIT))
            }
            _ => Err(error),
        },
    }
}

fn open_store(args: &Args) -> anyhow::Result<Store> {
    if args.repository.starts_with("oci:") {
        let Location::Layout { path, .. } = Location::parse(&args.repository)? else {
            bail!("{}: not an oci: layout", args.repository);
        };
        // The canonical path names the layout in the scan cache.
        let path = std::fs::canonicalize(&path)
            .with_context(|| format!("--repository {}", args.repository))?;
        return Ok(Store::Layout(Layout::open(&path)?));
    }
    let repository = Repository::parse(&args.repository)
        .with_context(|| format!("--repository {}", args.repository))?;
    Ok(Store::registry(args.registry.client()?, repository))
}

async fn publish(args: &Args, store: &Store) -> anyhow::Result<()> {
    let now = args::now_or(args.now.as_deref())?;
    let now = jiff::Timestamp::from_second(now.as_second())?;
    let lifetime = args::parse_duration(&args.expires_in).context("--expires-in")?;
    let expires = now
        .checked_add(lifetime)
        .context("--expires-in reaches past the year 9999")?;
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(|| doc::default_tag(&args.stream));
    let keys = args::signing_keys(&args.sign_keys)?;
    let policy = match &args.policy {
        Some(path) => Some(read_policy(path, &args.stream)?),
        None => None,
    };
    let base = match &args.base_graph {
        Some(text) => Some(BaseOptions {
            source: BaseSource::parse(text).context("--base-graph")?,
            keys: args::verifying_keys(&args.base_keys)?,
            allow_unsigned: args.base_unsigned,
            layers_from: args.base_layers_from.clone(),
            reread_after: None,
        }),
        None => None,
    };
    let halt_keys = args::verifying_keys(&args.halt_keys)?;
    let roots = match &args.roots {
        Some(dir) => Some(prepare_roots(dir, store, &keys, now).await?),
        None => {
            // Hosts that walked the repository's roots judge the document
            // by them, not by the keys this publish happens to hold.
            let first = cairn_oci::roots::root_tag(1);
            // Advice only: a registry that cannot answer fails the publish
            // further on, with its own error.
            if store.resolve(&first).await.ok().flatten().is_some() {
                eprintln!(
                    "cairn: warning: {} holds trust roots ({first}, …) but no --roots was given: \
                     the document names no root_version, and nothing checks that the \
                     --sign-keys meet the newest root's graph threshold",
                    store.describe()
                );
            }
            None
        }
    };
    let halt_list = match (&args.halt_list, args.no_halt_list) {
        (Some(location), _) => HaltListSetting::On(location.clone()),
        (None, true) => HaltListSetting::Off,
        (None, false) => HaltListSetting::Keep,
    };
    let reads_registry = base.is_some() || args.halt_list.is_some();
    // Guards rather than `Store::Layout` arms: with the agent in the build,
    // cairn-oci also has a read-only `Store::Proxy`, which publishing never makes.
    let client = match store {
        Store::Registry { client, .. } => client.clone(),
        _ if reads_registry => args.registry.client()?,
        // Nothing to fetch: a layout without a base graph needs no credentials.
        _ => RegistryClient::new(cairn_oci::ClientOptions::default())?,
    };
    let publication = Publication {
        options: Options {
            stream: &args.stream,
            policy: policy.as_ref(),
            tag_pattern: args.tag_pattern.as_deref(),
            mutable_tags: &args.mutable_tags,
            recheck: args.recheck,
            default_rollout: match args.default_rollout {
                DefaultRollout::Immediate => Some(Rollout::immediate()),
                DefaultRollout::None => None,
            },
            now,
            expires,
            base: base.as_ref(),
            layout_repository: &args.repository,
        },
        tag: &tag,
        keys: &keys,
        root_version: roots.as_ref().map_or(0, |r| r.newest.version()),
        accept_unverified_previous: args.accept_unverified_previous,
        dry_run: args.dry_run,
        refresh: args.refresh,
        allow_unknown_releases: args.allow_unknown_releases,
        halt_list,
        halt_keys: &halt_keys,
        // Under roots, the previous document and the halt list are judged as
        // hosts judge them: by the newest root's roles and thresholds. A
        // --sign-key that root revoked vouches for nothing.
        root: roots.as_ref().map(|r| &r.newest),
        recreate_halt_list: args.recreate_halt_list,
    };
    // Read before anything is pushed: a damaged file stops the publish.
    let kept_base_root = match &args.base_root {
        Some(path) => read_base_root(path)?,
        None => None,
    };
    if let Some(roots) = &roots {
        push_roots(store, roots, args.dry_run).await?;
    }
    let cache_path = args
        .cache
        .clone()
        .or_else(|| default_cache(&store.describe()));
    let mut cache = match &cache_path {
        // A damaged cache costs a full scan, never a wrong one.
        Some(path) => std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default(),
        None => ScanCache::default(),
    };
    let kept_version = kept_base_root.as_ref().map(TrustedRoot::version);
    if kept_base_root.is_some() {
        cache.base.root = kept_base_root;
    }
    let printer = Printer {
        policy_versions: policy
            .iter()
            .flat_map(|p| p.releases.iter().map(|e| e.version.clone()))
            .collect(),
        ..Printer::new()
    };
    let outcome =
        cairn_oci::publish::publish(store, &client, &publication, &mut cache, &printer).await;
    // What was read is worth keeping even when publishing failed.
    if let Some(path) = &cache_path
        && !args.refresh
    {
        save_cache(path, &cache);
    }
    // The walk's progress is verified on its own: kept even when the
    // publish then failed.
    if let (Some(path), Some(root)) = (&args.base_root, &cache.base.root)
        && !args.dry_run
        && Some(root.version()) != kept_version
        && let Some(signed) = root.signed()
        && let Err(error) = cairn_fs::write_atomic(path, &signed.envelope)
    {
        // The publish's own outcome is what the exit code reports.
        eprintln!(
            "cairn: warning: --base-root {}: base trust root version {} not kept ({error}); \
             the next publish walks from the one kept before",
            path.display(),
            root.version()
        );
    }
    let outcome = outcome.map_err(cli_error)?;
    // The store's requests go through `client` too (a layout makes none).
    eprintln!("cairn: {} HTTP requests in all", client.request_count());
    match outcome {
        Outcome::DryRun(lines) => {
            let mut text = String::new();
            for line in &lines {
                text.push_str(line);
                text.push('\n');
            }
            if lines.is_empty() {
                text.push_str(
                    "no change to the releases (a publication would only renew issued and expires)\n",
                );
            }
            args::emit(&text)?;
        }
        Outcome::Published(published) => {
            let signed = match keys.len() {
                0 => "unsigned".to_string(),
                1 => "signed".to_string(),
                n => format!("signed ({n} keys)"),
            };
            args::emit(&format!(
                "published {signed} document sequence {} ({} releases) as {}:{tag} ({})\n",
                published.sequence,
                published.document.releases.len(),
                store.describe(),
                published.manifest_digest
            ))?;
        }
    }
    Ok(())
}

/// The policy file, which must be for the stream published: another
/// stream's barriers and rollouts would land on releases of the same names.
/// The release team's chain of roots, checked against the repository and
/// the signing keys.
struct Roots {
    chain: Vec<cairn_oci::trust::SignedRoot>,
    newest: cairn_oci::trust::TrustedRoot,
}

/// Read `dir`'s chain and refuse to publish under it when a host would
/// refuse the result: the newest root expired, a newer root in the
/// repository that `dir` lacks, or signing keys short of the graph role.
async fn prepare_roots(
    dir: &std::path::Path,
    store: &Store,
    keys: &[cairn_oci::signing::SigningKey],
    now: jiff::Timestamp,
) -> anyhow::Result<Roots> {
    let chain = cairn_oci::roots::read_chain_dir(dir).context("--roots")?;
    let last = chain.last().cloned().context("--roots: no root")?;
    let newest = cairn_oci::trust::TrustedRoot::pin(last)?;
    newest.check_expiry(now).with_context(|| {
        format!(
            "--roots {}: rotate (`cairn root rotate --expires …`) before publishing",
            dir.display()
        )
    })?;
    let next = cairn_oci::roots::root_tag(newest.version() + 1);
    if store.resolve(&next).await?.is_some() {
        bail!(
            "{} holds {next}, which {} lacks: copy the newer roots into the directory \
             before publishing (hosts that walked to it would refuse a document signed \
             under version {})",
            store.describe(),
            dir.display(),
            newest.version()
        );
    }
    // Sign a probe with every key: what hosts count is what these keys give.
    let probe = bytes::Bytes::from_static(b"cairn publish --roots: which keys sign");
    let probes: Vec<cairn_oci::document::Signed> = keys
        .iter()
        .map(|key| cairn_oci::document::Signed {
            message: probe.clone(),
            signature: key.sign(&probe),
        })
        .collect();
    newest.role(Role::Graph).check(&probes).map_err(|shortfall| {
        anyhow::anyhow!(
            "--sign-key: hosts would refuse this document under trust root version {}: {shortfall}",
            newest.version()
        )
    })?;
    Ok(Roots { chain, newest })
}

/// Push the root versions the repository lacks (or say which, for a dry run).
async fn push_roots(store: &Store, roots: &Roots, dry_run: bool) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for root in &roots.chain {
        let tag = cairn_oci::roots::root_tag(root.version());
        if store.resolve(&tag).await?.is_none() {
            missing.push(root.version());
        }
    }
    if dry_run {
        if !missing.is_empty() {
            args::emit(&format!(
                "would push trust root versions {}\n",
                join_versions(&missing)
            ))?;
        }
        return Ok(());
    }
    let written = cairn_oci::roots::push_missing(store, &roots.chain).await?;
    if !written.is_empty() {
        args::emit(&format!(
            "pushed trust root versions {} to {}\n",
            join_versions(&written),
            store.describe()
        ))?;
    }
    Ok(())
}

/// The base root `--base-root` keeps, pinned as verified before; `None`
/// when the file does not exist yet.
fn read_base_root(path: &std::path::Path) -> anyhow::Result<Option<TrustedRoot>> {
    let name = format!("--base-root {}", path.display());
    let bytes = match cairn_oci::roots::read_root_file(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(anyhow::Error::new(error).context(name)),
    };
    // Never fall back to --base-key: that would be going back.
    let signed = cairn_oci::trust::SignedRoot::from_envelope(bytes.into(), &name)
        .with_context(|| format!("{name}: fix or remove it"))?;
    let root = TrustedRoot::pin(signed).with_context(|| format!("{name}: fix or remove it"))?;
    Ok(Some(root))
}

fn join_versions(versions: &[u64]) -> String {
    versions
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_policy(path: &std::path::Path, stream: &str) -> anyhow::Result<Updates> {
    let name = path.display().to_string();
    let policy = Updates::from_json(&args::read(path)?).with_context(|| name.clone())?;
    match policy.stream.as_deref() {
        Some(named) if named != stream => bail!(
            "{name}: the policy is for stream {named:?}, not --stream {stream:?} \
             (publish --stream {named:?}, or use the policy of stream {stream:?})"
        ),
        _ => Ok(policy),
    }
}

/// The pipeline's errors, named by the options that caused them.
fn cli_error(error: PublishError) -> anyhow::Error {
    match error {
        PublishError::UnverifiedPrevious(error) => anyhow::anyhow!(
            "{error}; refusing to build on and re-sign it (check who pushed it; \
             --accept-unverified-previous overrides)"
        ),
        PublishError::NothingPublished(tag) => {
            anyhow::anyhow!("--refresh: nothing is published under {tag}")
        }
        PublishError::BaseGraph { source, .. } => {
            anyhow::Error::new(source).context("--base-graph")
        }
        PublishError::BaseLayers { repository, source } => {
            anyhow::Error::new(source).context(format!("--base-layers-from {repository}"))
        }
        PublishError::Keep(error) => error.into(),
        PublishError::UnknownReleases(versions) => anyhow::anyhow!(
            "--policy: the policy names no release {}, so its settings there would apply to \
             nothing (a typo? fix the version with `cairn policy`, or publish with \
             --allow-unknown-releases if the release is still to come)",
            versions.join(", ")
        ),
        // Unwrapped, so a conflict is recognised by its type.
        PublishError::Push(error) => error.into(),
        PublishError::Halts { location, source } if source.kind() == "halts_missing" => {
            anyhow::Error::new(source).context(format!(
                "halt list {location} (restore it; or, knowing that it lifts every halt, \
                 publish an empty one with --recreate-halt-list)"
            ))
        }
        PublishError::Halts { location, source } => anyhow::Error::new(source).context(format!(
            "halt list {location} (a list signed by another key needs --halt-key)"
        )),
        other => other.into(),
    }
}

/// Tells the operator, on stderr, what the pipeline does; a progress bar
/// while scanning on a terminal.
struct Printer {
    bar: Option<indicatif::ProgressBar>,
    /// The versions the policy names: the others got the default rollout.
    policy_versions: Vec<String>,
}

impl Printer {
    fn new() -> Printer {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "scanning {bar:30} {pos}/{len} ({elapsed})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Printer {
            bar,
            policy_versions: Vec::new(),
        }
    }
}

impl Printer {
    /// New releases the policy does not name got the default rollout, 100%
    /// at once: on a first publish, every release. Say so, and how not to.
    fn defaults(&self, assembled: &cairn_graph::assemble::Assembled) {
        let defaulted: Vec<&str> = assembled
            .document
            .releases
            .iter()
            .filter(|r| assembled.added.contains(&r.version))
            .filter(|r| !self.policy_versions.contains(&r.version))
            .filter(|r| {
                r.rollout
                    .as_ref()
                    .is_some_and(cairn_graph::policy::is_default)
            })
            .map(|r| r.version.as_str())
            .collect();
        if !defaulted.is_empty() {
            eprintln!(
                "cairn: {} new release(s) without a policy entry get rollout 100.0%, offered to \
                 every host at once: {} (--default-rollout none offers new releases to nobody \
                 until the policy names them)",
                defaulted.len(),
                defaulted.join(", ")
            );
        }
    }
}

impl Observer for Printer {
    fn base_read(&self, base: &BaseGraph) {
        eprintln!(
            "cairn: base graph {}: {} releases, {} barriers",
            base.source,
            base.releases.len(),
            base.barriers().len()
        );
    }

    fn progress(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    fn scanned(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn matched_by_layers(&self, matched: usize) {
        eprintln!("cairn: matched {matched} image(s) to a base release by their layers");
    }

    fn unverified_previous(&self, error: &DocumentStoreError) {
        eprintln!("cairn: warning: building on an unverified document ({error})");
    }

    fn found(&self, report: &ScanReport) {
        for (tag, reason) in &report.skipped {
            eprintln!("cairn: skipped tag {tag}: {reason}");
        }
        for warning in &report.warnings {
            eprintln!("cairn: warning: {warning}");
        }
    }

    fn assembled(&self, assembly: &Assembly) {
        let assembled = &assembly.assembled;
        let policy = assembled.policy_warnings();
        for warning in assembly
            .notes
            .iter()
            .chain(&assembled.warnings)
            .chain(&policy)
        {
            eprintln!("cairn: warning: {warning}");
        }
        if !assembled.gone.is_empty() {
            eprintln!(
                "cairn: no longer in the registry (kept as nodes hosts can find themselves on): {}",
                assembled.gone.join(", ")
            );
        }
        // Information, not a warning: dead-ends are often meant.
        if let Some(line) = cairn_graph::render::not_offered_line(&assembled.document) {
            eprintln!("{line}");
        }
        let tags = &assembly.report.all_tags;
        let own = tags.iter().filter(|t| t.starts_with("cairn-")).count();
        let images = tags.iter().filter(|t| is_release_tag(t)).count();
        let other = tags.len() - own - images;
        let other = if other > 0 {
            format!(", {other} signature or attachment tags")
        } else {
            String::new()
        };
        eprintln!(
            "cairn: scanned {images} image tags: {} releases ({} new); \
             also {own} of Cairn's own tags (documents, keep tags){other}",
            assembled.document.releases.len(),
            assembled.added.len(),
        );
        self.defaults(assembled);
    }

    fn halts_expired(&self, location: &str, expires: jiff::Timestamp) {
        eprintln!(
            "cairn: warning: the halt list {location} expired at {expires}, so hosts stage \
             nothing; run `cairn halt refresh --halt-list {location} --key <key> --document <document>`"
        );
    }

    fn halts(
        &self,
        settings: &cairn_graph::document::HaltSettings,
        list: Option<&cairn_graph::halts::HaltList>,
        created: bool,
    ) {
        let Some(list) = list else {
            eprintln!(
                "cairn: halt list {}: none yet; publishing creates an empty first one",
                settings.location
            );
            return;
        };
        let cleared: Vec<String> = settings.cleared.iter().map(|c| c.id.clone()).collect();
        let in_effect: Vec<&str> = list
            .effective(&cleared)
            .map(|entry| entry.version.as_str())
            .collect();
        let made = if created {
            "published an empty first list, "
        } else {
            ""
        };
        eprintln!(
            "cairn: halt list {}: {made}sequence {} verified, expires {}; halted: {}; \
             {} halt(s) cleared",
            settings.location,
            list.sequence,
            list.expires,
            if in_effect.is_empty() {
                "none".to_string()
            } else {
                in_effect.join(", ")
            },
            settings.cleared.len()
        );
    }

    fn kept(&self, kept: usize) {
        if kept > 0 {
            eprintln!(
                "cairn: tagged {kept} barrier or target image(s) so garbage collection keeps them"
            );
        }
    }
}

fn default_cache(repository: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    let name: String = repository
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(base.join("cairn").join(format!("scan-{name}.json")))
}

fn save_cache(path: &std::path::Path, cache: &ScanCache) {
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| serde_json::to_vec(cache).map_err(std::io::Error::other))
        .and_then(|bytes| cairn_fs::write_atomic(path, &bytes).map_err(std::io::Error::other));
    if let Err(e) = result {
        // The cache only saves time; losing it is worth a warning, not a failure.
        eprintln!(
            "cairn: warning: could not save the scan cache {}: {e}",
            path.display()
        );
    }
}
