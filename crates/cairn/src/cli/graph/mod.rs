//! `cairn graph`: inspect and convert update graphs.

mod convert_fcos;
mod fcos;
mod next;
mod schema;
mod show;

use clap::Subcommand;
use std::process::ExitCode;

/// The `graph` verbs.
#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// Print the Cincinnati graph Fedora CoreOS's servers would serve.
    Fcos(fcos::Args),
    /// Summarise a Cairn update graph document.
    Show(show::Args),
    /// Print the update a node would take, and why.
    ///
    /// Without `--wariness` or `--node-uuid` the node is the last of every
    /// rollout (wariness 1). Exits 0 whether or not there is an update.
    Next(next::Args),
    /// Write a Cairn document from Fedora CoreOS metadata.
    ConvertFcos(convert_fcos::Args),
    /// Print the JSON Schema of the update graph document.
    Schema(schema::Args),
}

/// Run a `graph` verb.
pub fn run(command: GraphCommand) -> anyhow::Result<ExitCode> {
    match command {
        GraphCommand::Fcos(args) => fcos::run(args),
        GraphCommand::Show(args) => show::run(args),
        GraphCommand::Next(args) => next::run(args),
        GraphCommand::ConvertFcos(args) => convert_fcos::run(args),
        GraphCommand::Schema(args) => schema::run(args),
    }
}
