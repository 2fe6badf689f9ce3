//! `cairn config check` and `cairn config import-zincati`: validate the
//! agent's configuration fragments, or write one from Zincati's.

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// The agent's configuration.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Read, merge and validate the fragments; exit non-zero on any error.
    Check(CheckArgs),
    /// Write the Cairn fragment equivalent to Zincati's configuration, and say
    /// on standard error what is not carried over and why.
    ImportZincati(ImportArgs),
}

/// Where the fragments are.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The root the three fragment directories are under (usr/lib, run and
    /// etc/cairn/config.d). Key files the fragments name are read under it
    /// too, so an image's file system is checked with its own keys.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

/// Where Zincati's fragments are, and where the result goes.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The root Zincati's fragment directories (usr/lib and etc/zincati/config.d)
    /// are under; etc/machine-id and proc/cmdline are read under it too.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Write the fragment to this file (atomically; its directory is created
    /// if missing), for example /etc/cairn/config.d/50-from-zincati.toml.
    /// Default: standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// The value of `${basearch}` in Zincati's URL templates, in Fedora's
    /// names (x86_64, aarch64, ppc64le, s390x). Default: the running one.
    #[arg(long)]
    basearch: Option<String>,
    /// The value of `${platform}` in Zincati's URL templates. Default: the
    /// ignition.platform.id on proc/cmdline under --root.
    #[arg(long)]
    platform: Option<String>,
    /// The value of `${stream}` in Zincati's URL templates (the stream the host
    /// follows); needed only when a URL uses it.
    #[arg(long)]
    stream: Option<String>,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Check(args) => check(args),
        ConfigCommand::ImportZincati(args) => import_zincati(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    // A syntax error keeps the parser's lines, which point at the column.
    let checked =
        cairn_agent::config::check(&args.root).map_err(|e| anyhow::anyhow!(e.rendered()))?;
    for warning in &checked.warnings {
        eprintln!("cairn: warning: {warning}");
    }
    crate::cli::args::emit(&format!("{}ok\n", checked.summary))?;
    Ok(ExitCode::SUCCESS)
}

fn import_zincati(args: ImportArgs) -> anyhow::Result<ExitCode> {
    use cairn_agent::config::zincati::{self, ImportError};
    let host = zincati::host_values(
        &args.root,
        Some(args.basearch.unwrap_or_else(super::agent::host_arch)),
        args.platform,
        args.stream,
    );
    let imported = match zincati::import(&args.root, &host) {
        Ok(imported) => imported,
        Err(ImportError::Refused { refused, notes }) => {
            for note in &notes {
                eprintln!("cairn: note: {note}");
            }
            for line in &refused {
                eprintln!("cairn: refused: {line}");
            }
            anyhow::bail!(ImportError::Refused { refused, notes });
        }
        Err(e) => return Err(e.into()),
    };
    for note in &imported.notes {
        eprintln!("cairn: note: {note}");
    }
    match &args.output {
        None => crate::cli::args::emit(&imported.text)?,
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
            }
            cairn_fs::write_atomic(path, imported.text.as_bytes())?;
            crate::cli::args::emit(&format!("wrote {}\n", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
