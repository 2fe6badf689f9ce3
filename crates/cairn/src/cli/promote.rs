//! `cairn promote`: move the wave tags that hosts without an agent follow,
//! one step per run, as the agent's own decision function would. The plan is
//! `cairn_graph::promote`; the registry reads and writes are
//! `cairn_oci::promote`; this module orders them and reports.

use crate::cli::args::{self, DocumentArgs, HaltKeyArgs};
use crate::cli::publish::CONFLICT_EXIT;
use anyhow::Context;
use cairn_graph::GraphDocument;
use cairn_graph::promote::{
    Action, HaltsInEffect, Observed, Plan, PlanOptions, PromoteError, PromoteState, WaveSpec,
};
use cairn_oci::promote::{self as registry, CopyStats, PromoteStoreError, ReleaseImage};
use cairn_oci::{RegistryClient, Repository, Store};
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Exit code when a wave is stuck on a bad release and may not retreat; the
/// other waves have moved.
pub const STUCK_EXIT: u8 = 4;

/// `--barrier-dwell`'s default, as clap states it.
const DEFAULT_BARRIER_DWELL: &str = "7d";

/// The arguments of `cairn promote` (its help is the `Command` variant's).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: DocumentArgs,
    #[command(flatten)]
    halt_keys: HaltKeyArgs,
    /// A wave: a tag hosts follow and the wariness in [0, 1] they are treated
    /// with, for example stable-early=0.3 (repeatable; at least one). The tag
    /// must be no tag the image build pushes and not start with cairn-.
    #[arg(long = "wave", value_name = "TAG=WARINESS", required = true)]
    waves: Vec<WaveSpec>,
    /// Keep the wave tags and the promote state in this repository
    /// (registry/path), copying each image there first, digests unchanged.
    /// Default: the document's own repository.
    #[arg(long, value_name = "REPOSITORY")]
    to: Option<String>,
    /// How long a wave stays on a barrier release, so that every host checking
    /// at least this often boots through it (s, m, h, d or w).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_BARRIER_DWELL)]
    barrier_dwell: String,
    /// How long a wave stays on any release before its next step (s, m, h, d
    /// or w; 0: no wait).
    #[arg(long, value_name = "DURATION", default_value = "0")]
    min_dwell: String,
    /// Move a wave stuck on a dead-end or halted release with no way forward
    /// back to the release it came from. bootc has no downgrade check: the
    /// wave's hosts go back at their next upgrade.
    #[arg(long)]
    allow_retreat: bool,
    /// An architecture to decide for (repeatable). Default: every
    /// architecture of the wave's release. The tag still moves the whole
    /// image: use it only when every host of the waves is of these.
    #[arg(long = "arch", value_name = "ARCH")]
    architectures: Vec<String>,
    /// The time to plan at (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
    /// How long to wait after writing a tag before checking that the write
    /// stuck, so that a racing writer is noticed (ms, s, m, h, d or w). A
    /// registry that is slow to show its writes everywhere needs longer.
    #[arg(long, value_name = "DURATION", default_value = "500ms")]
    settle: String,
    /// Print the plan and write nothing: no copy, no state, no tag.
    #[arg(long)]
    dry_run: bool,
    /// Print the plan as JSON, with the request counts.
    #[arg(long)]
    json: bool,
}

/// What a run did, for the report.
struct Ran {
    plan: Plan,
    /// Tag moves another writer got in the way of; the state was written.
    conflicts: Vec<PromoteStoreError>,
    /// What copying to `--to` did; `None` without a copy.
    copied: Option<CopyStats>,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let mut options = plan_options(&args)?;
    if args.now.is_some() && !args.dry_run {
        eprintln!(
            "cairn: warning: --now without --dry-run: arrivals are recorded at {}, dwells counted from it, and the document's and halt list's expiry judged at it",
            options.now
        );
    }
    // A dry run writes nothing, the --halt-state file included.
    args.halt_keys.halt_state_read_only = args.dry_run;
    let settle = parse_settle(&args.settle).context("--settle")?;
    let fetched = args.source.load_verified(options.now, None)?;
    options.document_digest = fetched.manifest_digest;
    let document = fetched.document;
    // With halts on, no verified list means no plan: never a step into a
    // release that may be halted.
    let halts = args.source.halts(&document, &args.halt_keys, options.now)?;
    let halted = HaltsInEffect {
        sequence: halts.as_ref().map(|halts| halts.sequence),
        digests: halts.as_ref().map(args::Halts::digests).unwrap_or_default(),
    };
    let client = args.source.client()?;
    let stores = Stores::open(&args, &document, &client)?;
    let outcome = args::runtime()?.block_on(promote(
        &args, &document, &halted, &stores, &options, settle,
    ));
    let ran = match outcome {
        Ok(ran) => ran,
        Err(error) => {
            report_counts(&client);
            return match error.downcast_ref::<PromoteStoreError>() {
                Some(conflict @ PromoteStoreError::Conflict { .. }) => {
                    eprintln!("cairn: {conflict}");
                    Ok(ExitCode::from(CONFLICT_EXIT))
                }
                _ => Err(error),
            };
        }
    };
    report_counts(&client);
    if let (Some(copied), Some(to)) = (&ran.copied, &args.to) {
        eprintln!(
            "cairn: copied to {to}: {} manifests put ({} already there), {} blobs sent, {} mounted ({} already there), {} signatures copied ({} already there)",
            copied.manifests_put,
            copied.manifests_present,
            copied.blobs_uploaded,
            copied.blobs_mounted,
            copied.blobs_present,
            copied.signatures_copied,
            copied.signatures_present
        );
    }
    print_plan(&args, &ran, &client)?;
    if args.dry_run {
        eprintln!("cairn: dry run: no image copied, no state written, no tag moved");
    }
    for conflict in &ran.conflicts {
        eprintln!("cairn: {conflict}");
    }
    // Said again on stderr, where a cron job's log keeps it.
    for wave in &ran.plan.waves {
        match &wave.action {
            Action::Stuck { .. } => eprintln!("cairn: {wave}"),
            Action::Retreat { warning, .. } => eprintln!("cairn: warning: {warning}"),
            _ => {}
        }
    }
    if !ran.conflicts.is_empty() {
        Ok(ExitCode::from(CONFLICT_EXIT))
    } else if ran.plan.stuck() {
        Ok(ExitCode::from(STUCK_EXIT))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// `--settle`: milliseconds (`500ms`) or any whole-second duration.
fn parse_settle(value: &str) -> anyhow::Result<std::time::Duration> {
    match value.trim().strip_suffix("ms") {
        Some(millis) => {
            let millis: u64 = millis
                .parse()
                .with_context(|| format!("{value:?} is not a whole number of milliseconds"))?;
            Ok(std::time::Duration::from_millis(millis))
        }
        None => Ok(args::parse_duration(value)?.unsigned_abs()),
    }
}

/// The plan options from the flags, each error naming its flag.
fn plan_options(args: &Args) -> anyhow::Result<PlanOptions> {
    let now = args::now_or(args.now.as_deref())?;
    let mut options = PlanOptions::new(now);
    options.barrier_dwell = args::parse_duration(&args.barrier_dwell).context("--barrier-dwell")?;
    options.min_dwell = args::parse_duration(&args.min_dwell).context("--min-dwell")?;
    options.allow_retreat = args.allow_retreat;
    if !args.architectures.is_empty() {
        options.architectures = Some(args.architectures.clone());
    }
    Ok(options)
}

/// Where the images are (the document's repository) and where the waves are.
struct Stores {
    source: Store,
    /// `None`: the waves live beside the images.
    target: Option<Store>,
}

impl Stores {
    fn open(
        args: &Args,
        document: &GraphDocument,
        client: &RegistryClient,
    ) -> anyhow::Result<Self> {
        let source = Repository::parse(&document.repository).with_context(|| {
            format!(
                "{}: the document's repository {:?}",
                args.source.name(),
                document.repository
            )
        })?;
        let target = match &args.to {
            Some(to) => {
                let target = Repository::parse(to).with_context(|| format!("--to {to}"))?;
                (target != source).then(|| Store::registry(client.clone(), target))
            }
            None => None,
        };
        Ok(Stores {
            source: Store::registry(client.clone(), source),
            target,
        })
    }

    /// Where the wave tags and the state live.
    fn target(&self) -> &Store {
        self.target.as_ref().unwrap_or(&self.source)
    }
}

/// Everything after the document and its halts are trusted: read, plan,
/// check the images, copy, store the state, move the tags.
async fn promote(
    args: &Args,
    document: &GraphDocument,
    halted: &HaltsInEffect,
    stores: &Stores,
    options: &PlanOptions,
    settle: std::time::Duration,
) -> anyhow::Result<Ran> {
    let target = stores.target();
    let (state, state_digest) = registry::read_state(target)
        .await
        .with_context(|| format!("reading the promote state in {}", target.describe()))?;
    let mut cache = BTreeMap::new();
    let mut observed = BTreeMap::new();
    let mut before = BTreeMap::new();
    for wave in &args.waves {
        let (seen, digest) = registry::observe(target, &wave.tag, document, &mut cache)
            .await
            .with_context(|| format!("reading wave tag {} in {}", wave.tag, target.describe()))?;
        observed.insert(wave.tag.clone(), seen);
        before.insert(wave.tag.clone(), digest);
    }
    let forbidden = forbidden_tags(document, &state, &observed);
    cairn_graph::promote::check_waves(&args.waves, &forbidden).map_err(|error| {
        let unknown_wave = match &error {
            PromoteError::ReleaseTag { tag } => match observed.get(tag) {
                Some(Observed::Release { version }) if !state.waves.contains_key(tag) => {
                    Some(format!(
                        "{tag} already points at release {version} in {}, and the promote state there does not know it as a wave",
                        target.describe()
                    ))
                }
                _ => None,
            },
            _ => None,
        };
        match unknown_wave {
            Some(context) => anyhow::Error::new(error).context(context),
            None => anyhow::Error::new(error),
        }
    })?;
    let plan =
        cairn_graph::promote::plan(document, halted, &args.waves, &state, &observed, options)?;
    // Every image is found and checked against the signed document before
    // anything is written.
    let mut images: BTreeMap<&str, ReleaseImage> = BTreeMap::new();
    for (_, version) in plan.moves() {
        if !images.contains_key(version) {
            let image = registry::release_image(&stores.source, document, version)
                .await
                .with_context(|| {
                    format!(
                        "release {version} in {}: nothing was written",
                        stores.source.describe()
                    )
                })?;
            images.insert(version, image);
        }
    }
    if args.dry_run {
        return Ok(Ran {
            plan,
            conflicts: Vec::new(),
            copied: None,
        });
    }
    let mut copied = None;
    if let Some(to) = &stores.target {
        let mut total = CopyStats::default();
        for (version, image) in &images {
            total += registry::copy_image(&stores.source, to, image)
                .await
                .with_context(|| {
                    format!(
                        "copying release {version} from {} to {}",
                        stores.source.describe(),
                        to.describe()
                    )
                })?;
        }
        copied = (!images.is_empty()).then_some(total);
    }
    if plan.state_changed {
        registry::write_state(
            target,
            &plan.next_state,
            state_digest.as_deref(),
            options.now,
            settle,
        )
        .await?;
    }
    // The state already records every move: a tag another writer moved is
    // reported, and the other waves still take their step.
    let mut conflicts = Vec::new();
    for (tag, version) in plan.moves() {
        let Some(image) = images.get(version) else {
            continue;
        };
        let was = before.get(tag).and_then(Option::as_deref);
        match registry::move_tag(target, tag, image, was, settle).await {
            Ok(()) => {}
            Err(conflict @ PromoteStoreError::Conflict { .. }) => conflicts.push(conflict),
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "moving {tag} to {version} in {}",
                    target.describe()
                )));
            }
        }
    }
    Ok(Ran {
        plan,
        conflicts,
        copied,
    })
}

/// The tags no wave may take besides the release versions `plan` refuses:
/// those the image build pushes by convention, Cairn's own document and halt
/// list tags, and a wave tag the state does not know that already points at
/// a release (a build tag such as `44` or `stable-44`).
fn forbidden_tags(
    document: &GraphDocument,
    state: &PromoteState,
    observed: &BTreeMap<String, Observed>,
) -> Vec<String> {
    let stream = &document.stream;
    let mut forbidden = cairn_oci::scan::ScanOptions::for_stream(stream).mutable_tags;
    forbidden.push(cairn_oci::document::default_tag(stream));
    forbidden.push(cairn_oci::halts::default_tag(stream));
    forbidden.extend(
        observed
            .iter()
            .filter(|(tag, seen)| {
                matches!(seen, Observed::Release { .. }) && !state.waves.contains_key(*tag)
            })
            .map(|(tag, _)| tag.clone()),
    );
    forbidden
}

/// `cairn: N HTTP requests, W writes` on stderr.
fn report_counts(client: &RegistryClient) {
    eprintln!(
        "cairn: {} HTTP requests, {} writes",
        client.request_count(),
        client.write_count()
    );
}

/// The plan on stdout: a line per wave, or JSON with the request counts
/// and what a copy did.
fn print_plan(args: &Args, ran: &Ran, client: &RegistryClient) -> anyhow::Result<()> {
    if !args.json {
        args::emit(&ran.plan.to_string())?;
        return Ok(());
    }
    let mut value = plan_json(
        &ran.plan,
        args.dry_run,
        client.request_count(),
        client.write_count(),
    )?;
    if let (Some(copied), Some(object)) = (&ran.copied, value.as_object_mut()) {
        object.insert("copied".into(), serde_json::to_value(copied)?);
    }
    args::emit(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
    Ok(())
}

/// `--json`: the plan (without the state to store), the run's HTTP requests
/// and writes, and whether it was a dry run.
fn plan_json(
    plan: &Plan,
    dry_run: bool,
    total: u64,
    writes: u64,
) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(plan)?;
    let object = value
        .as_object_mut()
        .context("the plan does not serialize as an object")?;
    object.insert(
        "requests".into(),
        serde_json::json!({ "total": total, "writes": writes }),
    );
    object.insert("dry_run".into(), dry_run.into());
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;
    use jiff::{SignedDuration, Timestamp};

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec![
            "cairn",
            "promote",
            "--document",
            "quay.io/acme/os:cairn-graph-stable",
            "--key",
            "graph.pub",
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            crate::cli::Command::Promote(args) => Ok(args),
            other => panic!("not promote: {other:?}"),
        }
    }

    #[test]
    fn waves_parse_in_order_and_the_dwells_default() {
        let args = parse(&[
            "--wave",
            "stable-canary=0.05",
            "--wave",
            "stable-late=1",
            "--to",
            "mirror.example/acme/os",
        ])
        .expect("parses");
        let tags: Vec<&str> = args.waves.iter().map(|w| w.tag.as_str()).collect();
        assert_eq!(tags, ["stable-canary", "stable-late"]);
        assert_eq!(args.waves[0].wariness, 0.05);
        assert_eq!(args.to.as_deref(), Some("mirror.example/acme/os"));
        let options = plan_options(&args).expect("options");
        assert_eq!(options.min_dwell, SignedDuration::ZERO);
        assert_eq!(
            options.barrier_dwell,
            cairn_graph::promote::DEFAULT_BARRIER_DWELL
        );
        assert_eq!(options.architectures, None);
        assert!(!options.allow_retreat && !args.dry_run && !args.json);
    }

    #[test]
    fn the_settle_default_is_half_a_second() {
        let args = parse(&["--wave", "stable-early=0.3"]).expect("parses");
        assert_eq!(
            parse_settle(&args.settle).ok(),
            Some(cairn_oci::promote::SETTLE)
        );
        assert_eq!(
            parse_settle("5s").ok(),
            Some(std::time::Duration::from_secs(5))
        );
        assert!(parse_settle("-5ms").is_err());
        assert!(parse_settle("fast").is_err());
    }

    #[test]
    fn the_stated_barrier_dwell_default_is_the_models() {
        assert_eq!(
            args::parse_duration(DEFAULT_BARRIER_DWELL).ok(),
            Some(cairn_graph::promote::DEFAULT_BARRIER_DWELL)
        );
    }

    #[test]
    fn flags_reach_the_plan_options() {
        let args = parse(&[
            "--wave",
            "stable-early=0.3",
            "--barrier-dwell",
            "2w",
            "--min-dwell",
            "1d",
            "--allow-retreat",
            "--arch",
            "x86_64",
            "--arch",
            "aarch64",
            "--now",
            "2026-07-22T14:00:00Z",
        ])
        .expect("parses");
        let options = plan_options(&args).expect("options");
        assert_eq!(options.barrier_dwell, SignedDuration::from_hours(14 * 24));
        assert_eq!(options.min_dwell, SignedDuration::from_hours(24));
        assert!(options.allow_retreat);
        assert_eq!(
            options.architectures,
            Some(vec!["x86_64".to_string(), "aarch64".to_string()])
        );
        assert_eq!(
            options.now,
            Timestamp::from_second(1_784_728_800).expect("time")
        );
    }

    #[test]
    fn without_a_key_or_root_the_document_is_not_even_read() {
        let cli = Cli::try_parse_from([
            "cairn",
            "promote",
            "/nonexistent/document.json",
            "--wave",
            "stable-early=0.3",
        ])
        .expect("parses");
        let crate::cli::Command::Promote(args) = cli.command else {
            panic!("not promote");
        };
        assert!(!args.source.has_trust());
        let error = args
            .source
            .load_verified(Timestamp::UNIX_EPOCH, None)
            .expect_err("refused");
        let text = format!("{error:#}");
        assert!(
            text.contains("no --key or --root: refusing to act on an unverified document"),
            "{text}"
        );
        assert!(!text.contains("reading"), "{text}");
    }

    #[test]
    fn the_json_is_the_plan_with_requests_and_dry_run() {
        let plan = Plan {
            sequence: 7,
            waves: vec![cairn_graph::promote::WavePlan {
                tag: "stable-early".into(),
                wariness: 0.3,
                at: Some("44.1".into()),
                at_barrier: false,
                action: Action::Move {
                    to: "44.2".into(),
                    why: "offered".into(),
                },
            }],
            state_changed: true,
            next_state: PromoteState::default(),
        };
        let value = plan_json(&plan, true, 19, 4).expect("json");
        assert_eq!(value["sequence"], 7);
        assert_eq!(value["state_changed"], true);
        assert_eq!(value["waves"][0]["action"]["action"], "move");
        assert_eq!(value["waves"][0]["action"]["to"], "44.2");
        assert_eq!(
            value["requests"],
            serde_json::json!({"total": 19, "writes": 4})
        );
        assert_eq!(value["dry_run"], true);
        assert!(value.get("next_state").is_none(), "{value}");
        assert_eq!(
            plan.to_string(),
            "stable-early: at 44.1, moves to 44.2: offered\n"
        );
    }

    #[test]
    fn a_bad_duration_names_its_flag() {
        let args = parse(&["--wave", "stable-early=0.3", "--min-dwell", "3"]).expect("parses");
        let error = plan_options(&args).expect_err("no unit");
        assert!(format!("{error:#}").contains("--min-dwell"), "{error:#}");
    }

    #[test]
    fn a_wave_is_required() {
        let error = parse(&[]).expect_err("no wave");
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(error.to_string().contains("--wave"), "{error}");
    }

    #[test]
    fn a_bad_wave_is_refused_naming_the_argument() {
        for (wave, says) in [
            ("stable-early", "expected TAG=WARINESS"),
            ("stable-early=often", "not a number"),
            ("stable-early=1.5", "outside [0, 1]"),
            ("cairn-early=0.3", "Cairn's own"),
            (".bad=0.3", "not a valid tag"),
        ] {
            let error = parse(&["--wave", wave]).expect_err(wave);
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{wave}"
            );
            let text = error.to_string();
            assert!(text.contains("--wave <TAG=WARINESS>"), "{wave}: {text}");
            assert!(text.contains(says), "{wave}: {text}");
        }
    }

    #[test]
    fn build_and_cairn_tags_are_forbidden_and_known_waves_are_not() {
        let document: GraphDocument = serde_json::from_value(serde_json::json!({
            "schema": 1,
            "stream": "stable",
            "repository": "quay.io/acme/os",
            "sequence": 3,
            "issued": "2026-07-01T00:00:00Z",
            "expires": "2026-08-01T00:00:00Z",
            "releases": [],
        }))
        .expect("a document");
        let mut state = PromoteState::default();
        state.waves.insert(
            "stable-early".into(),
            cairn_graph::promote::WaveState {
                version: "44.1".into(),
                arrived: Timestamp::UNIX_EPOCH,
                came_from: None,
            },
        );
        let at = |version: &str| Observed::Release {
            version: version.into(),
        };
        let observed = BTreeMap::from([
            ("stable-early".to_string(), at("44.1")),
            ("stable-44".to_string(), at("44.1")),
            ("stable-new".to_string(), Observed::Absent),
        ]);
        let forbidden = forbidden_tags(&document, &state, &observed);
        for tag in ["stable", "latest", "cairn-graph-stable", "stable-44"] {
            assert!(forbidden.iter().any(|t| t == tag), "{tag}: {forbidden:?}");
        }
        for tag in ["stable-early", "stable-new"] {
            assert!(!forbidden.iter().any(|t| t == tag), "{tag}: {forbidden:?}");
        }
        assert!(
            forbidden.contains(&cairn_oci::halts::default_tag("stable")),
            "{forbidden:?}"
        );
    }
}
