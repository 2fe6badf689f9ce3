//! `cairn graph convert-fcos`: a Cairn document from Fedora CoreOS metadata.

use crate::cli::args::{self, FedoraFiles};
use anyhow::Context;
use cairn_graph::fcos::{self, ConvertOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Convert Fedora's release index and updates file, keeping every release and
/// its age index.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    files: FedoraFiles,
    /// The image repository the document describes, e.g. quay.io/fedora/fedora-coreos.
    #[arg(long)]
    repository: String,
    /// Carry image digests; without it, entries carry ostree commits.
    #[arg(long)]
    oci: bool,
    /// Fedora's boot-image digest map, recorded as aliases (implies images).
    #[arg(long, requires = "oci")]
    aliases: Option<PathBuf>,
    /// How long the document stays valid (s, m, h, d or w).
    #[arg(long, default_value = "14d")]
    expires_in: String,
    /// The issue time (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (index, updates) = args.files.load()?;
    let aliases = match &args.aliases {
        Some(path) => Some(
            fcos::parse_boot_image_digests(&args::read(path)?)
                .with_context(|| path.display().to_string())?,
        ),
        None => None,
    };
    // Whole seconds: sub-second precision in a published document only adds noise.
    let issued = jiff::Timestamp::from_second(args::now_or(args.now.as_deref())?.as_second())?;
    let lifetime = args::parse_duration(&args.expires_in).context("--expires-in")?;
    let expires = issued
        .checked_add(lifetime)
        .context("--expires-in reaches past the year 9999")?;
    let sequence = u64::try_from(issued.as_millisecond()).unwrap_or(0);
    let converted = fcos::to_document(
        &index,
        &updates,
        &ConvertOptions {
            repository: &args.repository,
            oci: args.oci,
            aliases: aliases.as_ref(),
            sequence,
            issued,
            expires,
        },
    )?;
    for warning in &converted.warnings {
        eprintln!("cairn: warning: {warning}");
    }
    converted.document.validate().map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the converted document is not valid: {}", text.join("; "))
    })?;
    let text = converted.document.to_json_pretty();
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => args::emit(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}
