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
    /// etc/cairn/config.d).
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check(args) = command;
    let dirs = cairn_agent::config::ConfigDirs::under(&args.root);
    let files = cairn_agent::config::fragments(&dirs)?;
    let settings = cairn_agent::config::load(&dirs)?;
    let mut text = String::new();
    for file in &files {
        text.push_str(&format!("fragment: {}\n", file.display()));
    }
    text.push_str(&format!(
        "ok: stream {}, source {:?}, strategy {}, wariness {}, check every {}s{}\n",
        settings
            .stream
            .as_deref()
            .unwrap_or("(the tag the host follows)"),
        settings.source,
        settings.strategy_name(),
        settings
            .wariness
            .map_or("derived from the node id".to_string(), |w| w.to_string()),
        settings.check_interval.as_secs(),
        if settings.enabled {
            ""
        } else {
            ", updates disabled"
        }
    ));
    crate::cli::args::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
