//! `cairn config check`: validate the agent's configuration fragments.

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// The agent's configuration.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Read, merge and validate the fragments; exit non-zero on any error.
    Check(CheckArgs),
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

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check(args) = command;
    // A syntax error keeps the parser's lines, which point at the column.
    let checked =
        cairn_agent::config::check(&args.root).map_err(|e| anyhow::anyhow!(e.rendered()))?;
    for warning in &checked.warnings {
        eprintln!("cairn: warning: {warning}");
    }
    crate::cli::args::emit(&format!("{}ok\n", checked.summary))?;
    Ok(ExitCode::SUCCESS)
}
