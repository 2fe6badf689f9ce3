//! `cairn graph fcos`: Fedora CoreOS metadata in, Cincinnati JSON out.

use crate::cli::args::{self, FedoraFiles, WarinessArgs};
use cairn_graph::Scheme;
use cairn_graph::fcos::build_graph;
use std::process::ExitCode;

/// Print the graph Fedora's graph builder serves or, with a wariness, the one its
/// policy engine serves to such a node.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    files: FedoraFiles,
    /// Architecture, for example x86_64.
    #[arg(long)]
    basearch: String,
    /// The OCI graph (image digests) instead of the ostree checksum graph.
    #[arg(long)]
    oci: bool,
    /// With either option, filter rollouts as Fedora's policy engine does.
    #[command(flatten)]
    wariness: WarinessArgs,
    /// The time rollouts are evaluated at (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (index, updates) = args.files.load()?;
    let scheme = if args.oci {
        Scheme::Oci
    } else {
        Scheme::Checksum
    };
    let mut graph = build_graph(&index, &updates, &args.basearch, scheme);
    if args.wariness.given() {
        let wariness = args.wariness.resolve(1.0)?;
        let now = args::now_or(args.now.as_deref())?;
        graph = graph.throttled(wariness, now.as_second());
    }
    args::emit(&graph.to_cincinnati().to_json_pretty())?;
    Ok(ExitCode::SUCCESS)
}
