//! `cairn graph fcos`: Fedora CoreOS metadata in, Cincinnati JSON out.

use crate::cli::args;
use anyhow::Context;
use cairn_graph::Scheme;
use cairn_graph::fcos::{ReleaseIndex, Updates, build_graph};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Print the graph Fedora's graph builder serves or, with a wariness, the one its
/// policy engine serves to such a node.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fedora's release index (`releases.json`).
    #[arg(long)]
    releases: PathBuf,
    /// Fedora's updates file (`updates/<stream>.json`).
    #[arg(long)]
    updates: PathBuf,
    /// Architecture, for example x86_64.
    #[arg(long)]
    basearch: String,
    /// The OCI graph (image digests) instead of the ostree checksum graph.
    #[arg(long)]
    oci: bool,
    /// Filter rollouts for this wariness, as Fedora's policy engine does.
    #[arg(long, conflicts_with = "node_uuid")]
    wariness: Option<String>,
    /// Filter rollouts for the wariness Fedora derives from this node id.
    #[arg(long)]
    node_uuid: Option<String>,
    /// The time rollouts are evaluated at (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let index = ReleaseIndex::from_json(&args::read(&args.releases)?)
        .with_context(|| args.releases.display().to_string())?;
    let updates = Updates::from_json(&args::read(&args.updates)?)
        .with_context(|| args.updates.display().to_string())?;
    let scheme = if args.oci {
        Scheme::Oci
    } else {
        Scheme::Checksum
    };
    let mut graph = build_graph(&index, &updates, &args.basearch, scheme);
    if args.wariness.is_some() || args.node_uuid.is_some() {
        let wariness = args::wariness(args.wariness.as_deref(), args.node_uuid.as_deref(), 1.0)?;
        let now = args::now_or(args.now.as_deref())?;
        graph = graph.throttled(wariness, now.as_second());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(graph.to_cincinnati().to_json_pretty().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
