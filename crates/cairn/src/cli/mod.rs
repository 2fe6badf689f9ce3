//! The command-line interface: the top-level verbs and their dispatch.
//!
//! Cargo features choose the verbs a build has (docs/install.md#builds);
//! a verb compiled out is simply not offered.

#[cfg(feature = "agent")]
mod agent;
mod args;
#[cfg(feature = "agent")]
mod config;
#[cfg(feature = "demo")]
mod demo;
mod document;
mod graph;
// It checks every verb's help, so it needs them all: the default build.
#[cfg(all(
    test,
    feature = "agent",
    feature = "publish",
    feature = "server",
    feature = "sim",
    feature = "demo"
))]
mod help_defaults;
#[cfg(feature = "publish")]
mod policy;
#[cfg(feature = "publish")]
mod publish;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "sim")]
mod simulate;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Safe, staged OS updates for hosts that boot from OCI images.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and convert update graphs.
    #[command(subcommand)]
    Graph(graph::GraphCommand),
    #[cfg(feature = "publish")]
    /// Scan a repository and publish its signed update graph document.
    Publish(publish::Args),
    #[cfg(feature = "publish")]
    /// Edit the release team's policy file.
    Policy(policy::Args),
    /// Verify documents and make signing keys.
    #[command(subcommand)]
    Document(document::DocumentCommand),
    #[cfg(feature = "server")]
    /// Serve the Cincinnati graph API and Cairn documents.
    Serve(serve::Args),
    #[cfg(feature = "agent")]
    /// Check the agent's configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    #[cfg(feature = "demo")]
    /// See Cairn work in a minute: images, a signed graph, agents, a fleet plot.
    Demo(demo::Args),
    #[cfg(feature = "sim")]
    /// Simulate a fleet following a document, and plot it.
    Simulate(simulate::Args),
    #[cfg(feature = "agent")]
    /// Run the node agent.
    Agent(agent::AgentArgs),
    #[cfg(feature = "agent")]
    /// Judge the boot into a new release and record it (cairn-verify.service).
    Verify(agent::AgentArgs),
    #[cfg(feature = "agent")]
    /// Check, stage and reboot into the newest allowed release now.
    UpdateNow(agent::UpdateNowArgs),
    #[cfg(feature = "agent")]
    /// Show what the agent is doing and why.
    Status(agent::StatusArgs),
    #[cfg(feature = "agent")]
    /// Hold updates.
    Hold(agent::HoldArgs),
    #[cfg(feature = "agent")]
    /// Stop holding updates.
    Unhold(agent::HoldArgs),
    #[cfg(feature = "agent")]
    /// The releases this host rolled back from.
    #[command(subcommand)]
    DenyList(agent::DenyListCommand),
}

/// Run the chosen verb.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Graph(command) => graph::run(command),
        #[cfg(feature = "publish")]
        Command::Publish(args) => publish::run(args),
        #[cfg(feature = "publish")]
        Command::Policy(args) => policy::run(args),
        Command::Document(command) => document::run(command),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(args),
        #[cfg(feature = "sim")]
        Command::Simulate(args) => simulate::run(args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args),
        #[cfg(feature = "agent")]
        Command::Config(command) => config::run(command),
        #[cfg(feature = "agent")]
        Command::Agent(args) => agent::run_agent(args),
        #[cfg(feature = "agent")]
        Command::UpdateNow(args) => agent::run_update_now(args),
        #[cfg(feature = "agent")]
        Command::Verify(args) => agent::run_verify(args),
        #[cfg(feature = "agent")]
        Command::Status(args) => agent::run_status(args),
        #[cfg(feature = "agent")]
        Command::Hold(args) => agent::run_hold(args, true),
        #[cfg(feature = "agent")]
        Command::Unhold(args) => agent::run_hold(args, false),
        #[cfg(feature = "agent")]
        Command::DenyList(command) => agent::run_deny_list(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
