//! `cairn graph`: inspect and convert update graphs.

//! Hosts get `show` and `next`; the release team's conversions need the
//! `publish` feature.

#[cfg(feature = "publish")]
mod convert_fcos;
#[cfg(feature = "publish")]
mod fcos;
mod next;
#[cfg(feature = "publish")]
mod schema;
mod show;

use clap::Subcommand;
use std::process::ExitCode;

/// The `graph` verbs.
#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// Print the Cincinnati graph Fedora CoreOS's servers would serve.
    #[cfg(feature = "publish")]
    Fcos(fcos::Args),
    /// Summarise a Cairn update graph document.
    Show(show::Args),
    /// Print the update a node would take, and why.
    ///
    /// Without `--wariness` or `--node-uuid` the node is the last of every
    /// rollout (wariness 1). Exits 0 whether or not there is an update.
    Next(next::Args),
    /// Write a Cairn document from Fedora CoreOS metadata.
    #[cfg(feature = "publish")]
    ConvertFcos(convert_fcos::Args),
    /// Print the JSON Schema of the update graph document.
    #[cfg(feature = "publish")]
    Schema(schema::Args),
}

/// Run a `graph` verb.
pub fn run(command: GraphCommand) -> anyhow::Result<ExitCode> {
    match command {
        #[cfg(feature = "publish")]
        GraphCommand::Fcos(args) => fcos::run(args),
        GraphCommand::Show(args) => show::run(args),
        GraphCommand::Next(args) => next::run(args),
        #[cfg(feature = "publish")]
        GraphCommand::ConvertFcos(args) => convert_fcos::run(args),
        #[cfg(feature = "publish")]
        GraphCommand::Schema(args) => schema::run(args),
    }
}
