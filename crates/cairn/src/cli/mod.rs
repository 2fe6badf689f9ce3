//! The command-line interface: the top-level verbs and their dispatch.
//!
//! Cargo features choose the verbs a build has (docs/install.md#builds);
//! a verb compiled out is simply not offered.

#[cfg(feature = "agent")]
mod agent;
mod args;
// The example pipelines run publish and graph: builds that have them.
#[cfg(all(test, feature = "publish"))]
mod ci_examples;
#[cfg(feature = "agent")]
mod config;
#[cfg(feature = "demo")]
mod demo;
mod document;
mod graph;
#[cfg(feature = "publish")]
mod halt;
#[cfg(feature = "server")]
mod lock;
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
mod manual;
#[cfg(feature = "publish")]
mod policy;
#[cfg(feature = "publish")]
mod promote;
#[cfg(feature = "publish")]
mod publish;
#[cfg(feature = "publish")]
mod root;
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
    #[cfg_attr(feature = "publish", doc = "Inspect and convert update graphs.")]
    #[cfg_attr(not(feature = "publish"), doc = "Inspect update graphs.")]
    #[command(subcommand)]
    Graph(graph::GraphCommand),
    #[cfg(feature = "publish")]
    /// Scan a repository and publish its signed update graph document.
    Publish(publish::Args),
    #[cfg(feature = "publish")]
    /// Edit the release team's policy file.
    Policy(policy::Args),
    #[cfg(feature = "publish")]
    /// Halt a release through the stream's signed halt list; show or renew the list.
    #[command(subcommand)]
    Halt(halt::HaltCommand),
    #[cfg(feature = "publish")]
    /// Make, rotate and show the trust roots that say which keys sign what.
    #[command(subcommand)]
    Root(root::RootCommand),
    #[cfg(feature = "publish")]
    /// Move wave tags that hosts without an agent follow, one safe step per run.
    ///
    /// Each wave tag, followed by hosts without an agent (bootc's timer,
    /// podman auto-update), moves at most one step per run: to the release an
    /// agent of the wave's wariness would be offered now. The promote state
    /// (tag cairn-promote-state beside the wave tags) remembers when each wave
    /// arrived; it is written before any tag moves. Exit codes: 0 done, 1
    /// error (nothing written when the document, its halt list or an image is
    /// refused), 3 another writer moved a tag (re-run), 4 a wave is stuck on a
    /// bad release (the other waves moved).
    #[command(mut_arg("keys", |key| key.help(
        "Verify the document's signature with this public key (PEM; repeatable). \
         Without --key or --root promote refuses to run."
    )))]
    Promote(promote::Args),
    #[cfg_attr(feature = "publish", doc = "Verify documents and make signing keys.")]
    #[cfg_attr(not(feature = "publish"), doc = "Verify documents.")]
    #[command(subcommand)]
    Document(document::DocumentCommand),
    #[cfg(feature = "server")]
    /// Serve the Cincinnati graph API and Cairn documents.
    Serve(serve::Args),
    #[cfg(feature = "server")]
    /// Reboot slots on a `cairn serve` FleetLock service: status, release, ack.
    #[command(subcommand)]
    Lock(lock::LockCommand),
    #[cfg(feature = "agent")]
    /// Check the agent's configuration, or import Zincati's.
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
    #[cfg(feature = "agent")]
    /// Hand back the FleetLock slot this host keeps after a failed boot, so
    /// the rest of its group may reboot again.
    ReleaseSlot(agent::StateArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(manual::CompletionsArgs),
    /// Write a man page for every command into a directory.
    Man(manual::ManArgs),
}

/// Run the chosen verb.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Graph(command) => graph::run(command),
        #[cfg(feature = "publish")]
        Command::Publish(args) => publish::run(args),
        #[cfg(feature = "publish")]
        Command::Policy(args) => policy::run(args),
        #[cfg(feature = "publish")]
        Command::Halt(command) => halt::run(command),
        #[cfg(feature = "publish")]
        Command::Root(command) => root::run(command),
        #[cfg(feature = "publish")]
        Command::Promote(args) => promote::run(args),
        Command::Document(command) => document::run(command),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(args),
        #[cfg(feature = "server")]
        Command::Lock(command) => lock::run(command),
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
        #[cfg(feature = "agent")]
        Command::ReleaseSlot(state) => agent::run_release_slot(state),
        Command::Completions(args) => manual::run_completions(args),
        Command::Man(args) => manual::run_man(args),
    }
}

/// Verbs a build may leave out, with the feature that brings each in.
const GATED_VERBS: &[(&str, &str)] = &[
    ("publish", "publish"),
    ("policy", "publish"),
    ("halt", "publish"),
    ("root", "publish"),
    ("promote", "publish"),
    ("fcos", "publish"),
    ("convert-fcos", "publish"),
    ("schema", "publish"),
    ("keygen", "publish"),
    ("sign", "publish"),
    ("serve", "server"),
    ("lock", "server"),
    ("simulate", "sim"),
    ("demo", "demo"),
    ("agent", "agent"),
    ("verify", "agent"),
    ("update-now", "agent"),
    ("status", "agent"),
    ("hold", "agent"),
    ("unhold", "agent"),
    ("deny-list", "agent"),
    ("release-slot", "agent"),
    ("config", "agent"),
];

fn feature_enabled(feature: &str) -> bool {
    let enabled = [
        ("agent", cfg!(feature = "agent")),
        ("publish", cfg!(feature = "publish")),
        ("server", cfg!(feature = "server")),
        ("sim", cfg!(feature = "sim")),
        ("demo", cfg!(feature = "demo")),
    ];
    enabled.iter().any(|&(name, on)| name == feature && on)
}

/// For a verb clap did not know: a note when this build left it out, so
/// that the agent build does not just say the verb does not exist.
pub fn compiled_out(error: &clap::Error) -> Option<String> {
    if error.kind() != clap::error::ErrorKind::InvalidSubcommand {
        return None;
    }
    let clap::error::ContextValue::String(verb) =
        error.get(clap::error::ContextKind::InvalidSubcommand)?
    else {
        return None;
    };
    missing_feature(verb).map(|feature| {
        format!(
            "cairn: `{verb}` is not in this build of cairn: it needs the `{feature}` feature \
             (the full build has every verb; see docs/install.md#builds)"
        )
    })
}

/// The feature a verb needs, when this build lacks it.
fn missing_feature(verb: &str) -> Option<&'static str> {
    GATED_VERBS
        .iter()
        .find(|(name, _)| *name == verb)
        .map(|(_, feature)| *feature)
        .filter(|feature| !feature_enabled(feature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The table names real verbs of the full build, with real features.
    #[cfg(all(
        feature = "agent",
        feature = "publish",
        feature = "server",
        feature = "sim",
        feature = "demo"
    ))]
    #[test]
    fn every_gated_verb_exists_in_the_full_build() {
        fn verb_names(command: &clap::Command, names: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                names.push(sub.get_name().to_string());
                verb_names(sub, names);
            }
        }
        let mut names = Vec::new();
        verb_names(&Cli::command(), &mut names);
        for (verb, feature) in GATED_VERBS {
            assert!(names.iter().any(|name| name == verb), "{verb} is no verb");
            assert!(feature_enabled(feature), "{feature} is no feature");
            assert_eq!(missing_feature(verb), None, "{verb}");
        }
    }

    #[cfg(not(feature = "publish"))]
    #[test]
    fn a_build_without_publish_names_the_feature_publish_needs() {
        let error = Cli::try_parse_from(["cairn", "publish", "--stream", "s"])
            .expect_err("publish is compiled out");
        let note = compiled_out(&error).expect("a note");
        assert!(note.contains("`publish` feature"), "{note}");
        let error = Cli::try_parse_from(["cairn", "no-such-verb"]).expect_err("no verb");
        assert_eq!(compiled_out(&error), None);
    }

    #[cfg(not(feature = "publish"))]
    #[test]
    fn a_build_without_publish_says_promote_needs_it() {
        let error = Cli::try_parse_from(["cairn", "promote", "--wave", "stable-early=0.3"])
            .expect_err("promote is compiled out");
        let note = compiled_out(&error).expect("a note");
        assert!(note.contains("`promote`"), "{note}");
        assert!(note.contains("`publish` feature"), "{note}");
    }
}
