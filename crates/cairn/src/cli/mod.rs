//! The command-line interface: the top-level verbs and their dispatch.

mod agent;
mod args;
#[cfg(test)]
mod ci_examples;
mod config;
mod demo;
mod document;
mod graph;
#[cfg(test)]
mod help_defaults;
mod manual;
mod policy;
mod publish;
mod serve;
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
    /// Scan a repository and publish its signed update graph document.
    Publish(publish::Args),
    /// Edit the release team's policy file.
    Policy(policy::Args),
    /// Verify documents and make signing keys.
    #[command(subcommand)]
    Document(document::DocumentCommand),
    /// Serve the Cincinnati graph API and Cairn documents.
    Serve(serve::Args),
    /// Check the agent's configuration, or import Zincati's.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// See Cairn work in a minute: images, a signed graph, agents, a fleet plot.
    Demo(demo::Args),
    /// Simulate a fleet following a document, and plot it.
    Simulate(simulate::Args),
    /// Run the node agent.
    Agent(agent::AgentArgs),
    /// Judge the boot into a new release and record it (cairn-verify.service).
    Verify(agent::AgentArgs),
    /// Check, stage and reboot into the newest allowed release now.
    UpdateNow(agent::UpdateNowArgs),
    /// Show what the agent is doing and why.
    Status(agent::StatusArgs),
    /// Hold updates.
    Hold(agent::HoldArgs),
    /// Stop holding updates.
    Unhold(agent::HoldArgs),
    /// The releases this host rolled back from.
    #[command(subcommand)]
    DenyList(agent::DenyListCommand),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(manual::CompletionsArgs),
    /// Write a man page for every command into a directory.
    Man(manual::ManArgs),
}

/// Run the chosen verb.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Graph(command) => graph::run(command),
        Command::Publish(args) => publish::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Document(command) => document::run(command),
        Command::Serve(args) => serve::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Config(command) => config::run(command),
        Command::Agent(args) => agent::run_agent(args),
        Command::UpdateNow(args) => agent::run_update_now(args),
        Command::Verify(args) => agent::run_verify(args),
        Command::Status(args) => agent::run_status(args),
        Command::Hold(args) => agent::run_hold(args, true),
        Command::Unhold(args) => agent::run_hold(args, false),
        Command::DenyList(command) => agent::run_deny_list(command),
        Command::Completions(args) => manual::run_completions(args),
        Command::Man(args) => manual::run_man(args),
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
