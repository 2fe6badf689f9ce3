//! `cairn graph show`: a summary of a document for people, scripts or Graphviz.

use crate::cli::args;
use cairn_graph::render::{self, ShowOptions};
use std::io::Write;
use std::process::ExitCode;

/// Output formats of `graph show`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Dot,
}

/// Summarise releases, their barrier, dead-end and rollout state, and the edges.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: args::DocumentArgs,
    /// Only this architecture.
    #[arg(long)]
    arch: Option<String>,
    /// Show the graph as a node of this wariness sees it.
    #[arg(long)]
    wariness: Option<String>,
    /// The time rollouts are evaluated at (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    #[command(flatten)]
    halt_keys: args::HaltKeyArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let document = args.source.load()?;
    if let Some(arch) = &args.arch
        && !document.architectures().contains(arch)
    {
        anyhow::bail!(
            "{}: no release has architecture {arch:?} (it has: {})",
            args.source.name(),
            document.architectures().join(", ")
        );
    }
    let now = args::now_or(args.now.as_deref())?;
    let halts = args.source.halts(&document, &args.halt_keys, now)?;
    let options = ShowOptions {
        arch: args.arch,
        wariness: args
            .wariness
            .as_deref()
            .map(args::parse_wariness)
            .transpose()?,
        now,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Text => {
            writeln!(
                out,
                "{}: {}",
                args.source.name(),
                args.source.signature_note()
            )?;
            if let Some(halts) = &halts {
                write_halts(halts, &mut out)?;
            }
            render::text(&document, &options, &mut out)?
        }
        Format::Json => render::json(&document, &options, &mut out)?,
        Format::Dot => render::dot(&document, &options, &mut out)?,
    }
    out.flush()?;
    args.source.warn_if_unchecked();
    Ok(ExitCode::SUCCESS)
}

/// The halt list's state and each halt in effect: offered to no host.
fn write_halts(halts: &args::Halts, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{}", halts.note())?;
    if halts.entries.is_empty() {
        return writeln!(out, "halted: none");
    }
    for entry in &halts.entries {
        writeln!(
            out,
            "halted: {} (halt {} at {}): {}; offered to no host",
            entry.version, entry.id, entry.time, entry.reason
        )?;
    }
    Ok(())
}
