//! `cairn publish`: scan a repository, merge the policy, sign and push the document.

use crate::cli::args::{self, RegistryArgs};
use anyhow::{Context, bail};
use cairn_graph::assemble::{AssembleOptions, BaseInput, assemble};
use cairn_graph::fcos::Updates;
use cairn_graph::{GraphDocument, Rollout};
use cairn_oci::document::{self as doc, DocumentStoreError};
use cairn_oci::layout::Layout;
use cairn_oci::scan::{self, ScanCache, ScanOptions};
use cairn_oci::{Location, Repository, Store};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Sign with this ECDSA P-256 private key (PEM).
    #[arg(long, value_name = "PEM")]
    sign_key: Option<PathBuf>,
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
    /// The scan cache (digests already read). Default: under $XDG_CACHE_HOME/cairn.
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
    /// The publication time (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
    /// Build on the published document even if it is not signed by --sign-key.
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
    /// For images that record no base: match their lower layers against the
    /// base releases' images in this repository.
    #[arg(long, value_name = "REPOSITORY", requires = "base_graph")]
    base_layers_from: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(&args)?;
    let runtime = args::runtime()?;
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
    let key = match &args.sign_key {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(cairn_oci::signing::SigningKey::from_pem(
                &text,
                &path.display().to_string(),
            )?)
        }
        None => None,
    };
    let (previous, expected) = match doc::fetch(store, &tag).await {
        Ok(fetched) => {
            check_previous(
                &fetched,
                key.as_ref(),
                &tag,
                args.accept_unverified_previous,
            )?;
            (Some(fetched.document), Some(fetched.manifest_digest))
        }
        Err(DocumentStoreError::Store(cairn_oci::OciError::NotFound(_))) => (None, Some(None)),
        Err(e) => return Err(e).with_context(|| format!("reading the published document {tag}")),
    };
    if args.refresh {
        let mut document =
            previous.with_context(|| format!("--refresh: nothing is published under {tag}"))?;
        document.issued = now;
        document.expires = expires;
        return push(store, &tag, document, key.as_ref(), expected).await;
    }
    let policy = match &args.policy {
        Some(path) => Some(
            Updates::from_json(&args::read(path)?).with_context(|| path.display().to_string())?,
        ),
        None => None,
    };
    let base = match &args.base_graph {
        Some(text) => Some(read_base(args, text, now).await?),
        None => None,
    };
    let (mut report, mut cache, requests) =
        scan_repository(args, store, base.as_ref().map(|b| b.repository.clone())).await?;
    if let (Some(base), Some(from)) = (&base, &args.base_layers_from) {
        let matched = cairn_oci::derived::match_base_layers(
            store,
            from,
            &mut report.candidates,
            base,
            &mut cache,
            &mut report.warnings,
        )
        .await
        .with_context(|| format!("--base-layers-from {from}"))?;
        eprintln!("cairn: matched {matched} image(s) to a base release by their layers");
        save_scan_cache(args, store, &cache);
    }
    for (tag, reason) in &report.skipped {
        eprintln!("cairn: skipped tag {tag}: {reason}");
    }
    for warning in &report.warnings {
        eprintln!("cairn: warning: {warning}");
    }
    let repository = match store {
        Store::Registry { repository, .. } => repository.to_string(),
        Store::Layout(_) => previous
            .as_ref()
            .map(|p| p.repository.clone())
            .unwrap_or_else(|| args.repository.clone()),
    };
    let default_rollout = match args.default_rollout {
        DefaultRollout::Immediate => Some(Rollout::immediate()),
        DefaultRollout::None => None,
    };
    let mut notes = Vec::new();
    let expanded = match &base {
        Some(base) => {
            cairn_oci::derived::expand_base_digests(store, &report.candidates, base, &mut notes)
                .await
        }
        None => Default::default(),
    };
    let assembled = assemble(
        previous.as_ref(),
        report.candidates.clone(),
        &AssembleOptions {
            stream: &args.stream,
            repository: &repository,
            now,
            expires,
            default_rollout,
            policy: policy.as_ref(),
            present: Some(&report.present),
            base: base.as_ref().map(|graph| BaseInput {
                graph,
                expanded: &expanded,
            }),
        },
    )?;
    for warning in notes.iter().chain(&assembled.warnings) {
        eprintln!("cairn: warning: {warning}");
    }
    if !assembled.gone.is_empty() {
        eprintln!(
            "cairn: no longer in the registry (kept as nodes hosts can find themselves on): {}",
            assembled.gone.join(", ")
        );
    }
    if !assembled.not_offered.is_empty() {
        eprintln!(
            "cairn: not a target for any host: {}",
            assembled.not_offered.join(", ")
        );
    }
    eprintln!(
        "cairn: scanned {} tags, {} releases ({} new), {requests} HTTP requests",
        report.all_tags.len(),
        assembled.document.releases.len(),
        assembled.added.len()
    );
    if args.dry_run {
        let lines = cairn_graph::render::diff(previous.as_ref(), &assembled.document);
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
        return Ok(());
    }
    let keep: Vec<String> = keep_digests(&assembled.document, &report.candidates);
    let kept = scan::keep(store, &keep, &report.all_tags).await?;
    if kept > 0 {
        eprintln!(
            "cairn: tagged {kept} barrier or target image(s) so garbage collection keeps them"
        );
    }
    push(store, &tag, assembled.document, key.as_ref(), expected).await
}

/// Refuse to build on (and so re-sign) a document this key did not sign:
/// someone who can push but cannot sign must not get their releases signed.
fn check_previous(
    previous: &doc::FetchedDocument,
    key: Option<&cairn_oci::signing::SigningKey>,
    tag: &str,
    accept_unverified: bool,
) -> anyhow::Result<()> {
    let Some(key) = key else { return Ok(()) };
    let keys = [key.verifying_key()];
    let policy = doc::TrustPolicy {
        keys: &keys,
        allow_unsigned: false,
        now: previous.document.issued,
        last_seen: None,
        stream: None,
    };
    match previous.verify(tag, &policy) {
        Ok(()) => Ok(()),
        Err(error) if accept_unverified => {
            eprintln!("cairn: warning: building on an unverified document ({error})");
            Ok(())
        }
        Err(error) => Err(anyhow::anyhow!(
            "{error}; refusing to build on and re-sign it (check who pushed it; \
             --accept-unverified-previous overrides)"
        )),
    }
}

/// The base graph, read and checked as its kind requires.
async fn read_base(
    args: &Args,
    text: &str,
    now: jiff::Timestamp,
) -> anyhow::Result<cairn_graph::derive::BaseGraph> {
    let source = cairn_oci::sources::BaseSource::parse(text)
        .map_err(anyhow::Error::msg)
        .context("--base-graph")?;
    let keys = args::verifying_keys(&args.base_keys)?;
    let client = args.registry.client()?;
    let base = cairn_oci::sources::read_base_graph(
        &client,
        &source,
        &cairn_oci::sources::BaseRead {
            keys: &keys,
            allow_unsigned: args.base_unsigned,
            now,
            arch: "x86_64",
        },
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("--base-graph")?;
    eprintln!(
        "cairn: base graph {}: {} releases, {} barriers",
        base.source,
        base.releases.len(),
        base.barriers().len()
    );
    Ok(base)
}

fn cache_path(args: &Args, store: &Store) -> Option<PathBuf> {
    args.cache
        .clone()
        .or_else(|| default_cache(&store.describe()))
}

fn save_scan_cache(args: &Args, store: &Store, cache: &ScanCache) {
    if let Some(path) = cache_path(args, store) {
        save_cache(&path, cache);
    }
}

async fn scan_repository(
    args: &Args,
    store: &Store,
    base_repository: Option<String>,
) -> anyhow::Result<(scan::ScanReport, ScanCache, u64)> {
    let cache_path = cache_path(args, store);
    let mut cache: ScanCache = match &cache_path {
        // A damaged cache costs a full scan, never a wrong one.
        Some(path) => std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default(),
        None => ScanCache::default(),
    };
    if cache.store != store.describe() {
        // A cache of another repository or layout would lie about tags.
        cache = ScanCache {
            store: store.describe(),
            ..ScanCache::default()
        };
    }
    let options = ScanOptions {
        tag_pattern: args.tag_pattern.clone(),
        mutable_tags: args.mutable_tags.clone(),
        recheck: args.recheck,
        base_repository,
        ..ScanOptions::for_stream(&args.stream)
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("scanning {bar:30} {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let progress = |done: u64, total: u64| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let before = store.request_count();
    let report = scan::scan(store, &options, &mut cache, &progress)
        .await
        .with_context(|| format!("scanning {}", store.describe()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(path) = &cache_path {
        save_cache(path, &cache);
    }
    Ok((report, cache, store.request_count() - before))
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

/// The tagged digests of barrier and rollout-target releases.
fn keep_digests(
    document: &GraphDocument,
    candidates: &[cairn_graph::assemble::Candidate],
) -> Vec<String> {
    let mut digests = Vec::new();
    for release in &document.releases {
        let wanted =
            release.barrier.is_some() || (release.rollout.is_some() && release.deadend.is_none());
        if !wanted {
            continue;
        }
        for entry in release.architectures.values().filter(|e| e.available) {
            let Some(digest) = &entry.digest else {
                continue;
            };
            let source = candidates.iter().find(|c| {
                c.architectures
                    .values()
                    .any(|e| e.digest.as_ref() == Some(digest))
            });
            if let Some(source) = source
                && !digests.contains(&source.source_digest)
            {
                digests.push(source.source_digest.clone());
            }
        }
    }
    digests
}

async fn push(
    store: &Store,
    tag: &str,
    document: GraphDocument,
    key: Option<&cairn_oci::signing::SigningKey>,
    expected: Option<Option<String>>,
) -> anyhow::Result<()> {
    let identity = match store {
        Store::Registry { repository, .. } => repository.to_string(),
        Store::Layout(_) => document.repository.clone(),
    };
    let options = doc::PublishOptions {
        tag,
        identity: &identity,
        key,
        settle: Duration::from_millis(500),
        expected,
    };
    let published = doc::publish(store, document, &options).await?;
    let signed = if key.is_some() { "signed" } else { "unsigned" };
    args::emit(&format!(
        "published {signed} document sequence {} ({} releases) as {}:{tag} ({})\n",
        published.sequence,
        published.document.releases.len(),
        store.describe(),
        published.manifest_digest
    ))?;
    Ok(())
}
