//! `cairn graph next`: the update a node would take from a document, and why.

use crate::cli::args::{self, WarinessArgs};
use cairn_graph::Query;
use serde_json::json;
use std::process::ExitCode;

/// Print `{"target": {"version", "digest"} | null, "reason": "..."}`; exits 0
/// whether or not there is an update. Without `--wariness` or `--node-uuid`
/// the node is the last of every rollout (wariness 1).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: args::DocumentArgs,
    /// The node's architecture.
    #[arg(long)]
    arch: String,
    /// The booted release: its version, manifest digest (`sha256:...`) or
    /// ostree checksum.
    #[arg(long)]
    booted: String,
    #[command(flatten)]
    wariness: WarinessArgs,
    /// The time to decide at (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
    /// A digest this node rolled back from; never offered. Repeatable.
    #[arg(long = "deny", value_name = "DIGEST")]
    deny: Vec<String>,
    /// Allow an edge to an older release.
    #[arg(long)]
    allow_downgrade: bool,
    #[command(flatten)]
    halt_keys: args::HaltKeyArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let document = args.source.load()?;
    let booted = args::booted_id(&document, &args.arch, &args.booted)?;
    let now = args::now_or(args.now.as_deref())?;
    // With halts on, no verified list means no answer: never an edge into
    // a release that may be halted.
    let halts = args.source.halts(&document, &args.halt_keys, now)?;
    let halted = halts.as_ref().map(args::Halts::digests).unwrap_or_default();
    let query = Query {
        booted: &booted,
        wariness: args.wariness.resolve(1.0)?,
        now,
        deny: &args.deny,
        halted: &halted,
        allow_downgrade: args.allow_downgrade,
    };
    let decision = document.decide(&args.arch, &query);
    let next_change = document.next_change_after(&args.arch, &query);
    let answer = json!({
        "target": decision.target.as_ref().map(|t| json!({
            "version": t.version,
            "digest": t.digest,
        })),
        "reason": decision.reason(),
        "booted": decision.booted_version,
        "wariness": query.wariness,
        "held": decision.held.iter().map(|h| json!({
            "version": h.version,
            "reason": h.hold.to_string(),
        })).collect::<Vec<_>>(),
        "next_change": next_change.map(|t| t.to_string()),
        "halts": halts.as_ref().map(|h| json!({
            "location": h.location,
            "sequence": h.sequence,
            "halted": h.entries.iter().map(|e| json!({
                "id": e.id,
                "version": e.version,
                "reason": e.reason,
                "time": e.time.to_string(),
            })).collect::<Vec<_>>(),
        })),
    });
    args::emit(&format!("{}\n", serde_json::to_string_pretty(&answer)?))?;
    args.source.warn_if_unchecked();
    Ok(ExitCode::SUCCESS)
}
