//! `cairn policy`: edit the release team's policy file without hand-editing JSON.

use crate::cli::args;
use anyhow::{Context, bail};
use cairn_graph::fcos::Updates;
use cairn_graph::policy::{PolicyEdit, apply, parse_fraction};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Start, pause, resume and stop rollouts; add and remove barriers and dead-ends.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (Fedora CoreOS updates format); created when missing.
    #[arg(long, default_value = "updates.json", global = true)]
    policy: PathBuf,
    /// The stream: required for a new file, and checked against an existing one.
    #[arg(long, global = true)]
    stream: Option<String>,
    /// The time of the edit (Unix seconds or RFC 3339). Default: now.
    #[arg(long, global = true)]
    now: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rollouts.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Barriers.
    #[command(subcommand)]
    Barrier(MarkCommand),
    /// Dead-ends.
    #[command(subcommand)]
    Deadend(DeadendCommand),
    /// Halts of the stream's halt list.
    #[command(subcommand)]
    Halt(HaltCommand),
}

#[derive(Debug, Subcommand)]
enum HaltCommand {
    /// Clear the halts of a release made up to now, and restart its rollout
    /// (recorded as `cairn_halt_cleared`; the next `cairn publish` clears them
    /// in the document). A halt made later stays in force.
    Clear(HaltClearArgs),
}

#[derive(Debug, clap::Args)]
struct HaltClearArgs {
    /// The release.
    version: String,
    /// Where the rollout restarts: a fraction (0.05) or a percentage (5%).
    /// Default: its progress when it was halted (needs --halt-list).
    #[arg(long)]
    from: Option<String>,
    /// How long until every host is offered it (s, m, h, d or w). Default:
    /// the time it had left when it was halted (needs --halt-list).
    #[arg(long)]
    over: Option<String>,
    /// The halt list, for the time of the halt (a registry reference or
    /// oci:DIR; the tag cairn-halts-<stream> when none is given).
    #[arg(long, value_name = "REF")]
    halt_list: Option<String>,
    /// Require the halt list to be signed by this public key (PEM;
    /// repeatable; a graph or a halt key).
    #[arg(long = "halt-key", value_name = "PEM", requires = "halt_list")]
    halt_keys: Vec<PathBuf>,
    #[command(flatten)]
    registry: args::RegistryArgs,
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Offer a release to a growing part of the fleet.
    Start {
        /// The release.
        version: String,
        /// How long until every host is offered it (s, m, h, d or w).
        #[arg(long)]
        over: String,
        /// When it starts (Unix seconds or RFC 3339). Default: now.
        #[arg(long)]
        at: Option<String>,
        /// Where it starts: a fraction (0.05) or a percentage (5%), never a bare 5.
        #[arg(long, default_value = "0")]
        from: String,
    },
    /// Freeze a rollout at its current progress.
    Pause {
        /// The release.
        version: String,
    },
    /// Let a paused rollout grow again.
    Resume {
        /// The release.
        version: String,
        /// How long until every host is offered it. Default: the time it had
        /// left when it was paused.
        #[arg(long)]
        over: Option<String>,
    },
    /// Remove the rollout: the release becomes a target for nobody.
    Stop {
        /// The release.
        version: String,
    },
}

#[derive(Debug, Subcommand)]
enum MarkCommand {
    /// Make a release a barrier (--reason is required).
    Add {
        /// The release.
        version: String,
        /// Required: why (a URL to the migration it carries).
        #[arg(long)]
        reason: String,
    },
    /// Remove a barrier.
    Remove {
        /// The release.
        version: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeadendCommand {
    /// Make a release a dead-end (--reason is required).
    Add {
        /// The release.
        version: String,
        /// Required: why; shown to operators of hosts on it.
        #[arg(long)]
        reason: String,
        /// Keep its rollout (Zincati hosts are still sent there).
        #[arg(long)]
        keep_rollout: bool,
    },
    /// Remove a dead-end.
    Remove {
        /// The release.
        version: String,
    },
}

fn minutes(text: &str) -> anyhow::Result<u64> {
    let duration = args::parse_duration(text).context("--over")?;
    let seconds = u64::try_from(duration.as_secs()).unwrap_or(0);
    Ok(seconds.div_ceil(60))
}

fn edit(command: Command, now: i64) -> anyhow::Result<PolicyEdit> {
    Ok(match command {
        Command::Rollout(RolloutCommand::Start {
            version,
            over,
            at,
            from,
        }) => PolicyEdit::RolloutStart {
            version,
            minutes: minutes(&over)?,
            at: match at {
                Some(at) => args::parse_time(&at).context("--at")?.as_second(),
                None => now,
            },
            from: parse_fraction(&from).map_err(|e| anyhow::anyhow!("--from {e}"))?,
        },
        Command::Rollout(RolloutCommand::Pause { version }) => PolicyEdit::RolloutPause { version },
        Command::Rollout(RolloutCommand::Resume { version, over }) => PolicyEdit::RolloutResume {
            version,
            minutes: over.as_deref().map(minutes).transpose()?,
        },
        Command::Rollout(RolloutCommand::Stop { version }) => PolicyEdit::RolloutStop { version },
        Command::Barrier(MarkCommand::Add { version, reason }) => {
            PolicyEdit::BarrierAdd { version, reason }
        }
        Command::Barrier(MarkCommand::Remove { version }) => PolicyEdit::BarrierRemove { version },
        Command::Deadend(DeadendCommand::Add {
            version,
            reason,
            keep_rollout,
        }) => PolicyEdit::DeadendAdd {
            version,
            reason,
            keep_rollout,
        },
        Command::Deadend(DeadendCommand::Remove { version }) => {
            PolicyEdit::DeadendRemove { version }
        }
        Command::Halt(HaltCommand::Clear(clear)) => PolicyEdit::HaltClear {
            version: clear.version,
            // Filled in under the lock, from the halt list and the policy.
            halted_at: None,
            from: clear
                .from
                .as_deref()
                .map(parse_fraction)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--from {e}"))?,
            minutes: clear.over.as_deref().map(minutes).transpose()?,
        },
    })
}

/// The policy as it is, or a new one; either way for the stream named.
fn open(path: &Path, old: Option<&[u8]>, stream: Option<&str>) -> anyhow::Result<Updates> {
    let name = path.display();
    let Some(bytes) = old else {
        // A policy without a stream cannot be checked against the stream it
        // is published for.
        return match stream.map(str::trim) {
            Some(stream) if !stream.is_empty() => Ok(Updates {
                stream: Some(stream.to_string()),
                releases: Vec::new(),
            }),
            _ => bail!(
                "{name} does not exist yet: name the stream it is for with --stream \
                 (the --stream you publish with)"
            ),
        };
    };
    let mut updates = Updates::from_json(bytes).with_context(|| name.to_string())?;
    match (updates.stream.as_deref(), stream) {
        (Some(named), Some(given)) if named != given => {
            bail!("{name}: the policy is for stream {named:?}, not --stream {given:?}")
        }
        (None, Some(given)) if !given.trim().is_empty() => {
            updates.stream = Some(given.to_string());
        }
        _ => {}
    }
    Ok(updates)
}

/// When each halt of `version` in the halt list was made, oldest first.
fn halt_times(
    clear: &HaltClearArgs,
    policy: &Path,
    stream: Option<&str>,
) -> anyhow::Result<Option<Vec<jiff::Timestamp>>> {
    let Some(halt_list) = &clear.halt_list else {
        return Ok(None);
    };
    let policy_stream = match std::fs::read(policy) {
        Ok(bytes) => {
            Updates::from_json(&bytes)
                .with_context(|| policy.display().to_string())?
                .stream
        }
        Err(_) => None,
    };
    let stream = stream
        .map(str::to_string)
        .or(policy_stream)
        .context("--halt-list: name the stream with --stream (or in the policy file)")?;
    let location =
        cairn_oci::publish::halt_list_location(halt_list, &stream).context("--halt-list")?;
    let parsed = cairn_oci::Location::parse(&location).context("--halt-list")?;
    let client = clear.registry.client()?;
    let fetched = args::runtime()?
        .block_on(cairn_oci::halts::fetch_location(&parsed, &client))
        .map_err(|e| {
            let kind = e.kind();
            anyhow::Error::new(e).context(format!("halt list {location} ({kind})"))
        })?;
    let keys = args::verifying_keys(&clear.halt_keys)?;
    if keys.is_empty() {
        eprintln!(
            "cairn: warning: {location}: signature not checked; give the key that signs it with --halt-key"
        );
    } else if fetched
        .signed_as(
            None,
            Some(&cairn_oci::trust::RoleKeys::any_of(
                cairn_oci::trust::Role::Halt,
                &keys,
            )),
        )
        .is_none()
    {
        // Only the signature matters here: an expired list still says
        // when a release was halted.
        bail!(
            "halt list {location}: not signed by {} (halts_bad_signature)",
            args::key_names(&clear.halt_keys)
        );
    }
    if fetched.list.stream != stream {
        bail!(
            "halt list {location}: for stream {:?}, not {stream:?} (halts_wrong_stream)",
            fetched.list.stream
        );
    }
    let mut times: Vec<jiff::Timestamp> = fetched
        .list
        .entries
        .iter()
        .filter(|entry| entry.version == clear.version)
        .map(|entry| entry.time)
        .collect();
    times.sort();
    if times.is_empty() {
        bail!(
            "halt list {location}: {} is not halted; nothing to clear",
            clear.version
        );
    }
    Ok(Some(times))
}

/// The time of the first halt of `version` the policy has not cleared yet.
fn first_uncleared(
    updates: &Updates,
    version: &str,
    times: &[jiff::Timestamp],
) -> anyhow::Result<i64> {
    let mark = updates
        .settings(version)
        .and_then(|settings| settings.halt_cleared);
    times
        .iter()
        .find(|time| mark.is_none_or(|mark| **time > mark))
        .map(|time| time.as_second())
        .with_context(|| {
            format!(
                "every halt of {version} in the halt list was cleared already (up to {})",
                mark.map_or_else(String::new, |m| m.to_string())
            )
        })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let now = jiff::Timestamp::from_second(args::now_or(args.now.as_deref())?.as_second())?;
    let times = match &args.command {
        Command::Halt(HaltCommand::Clear(clear)) => {
            halt_times(clear, &args.policy, args.stream.as_deref())?
        }
        _ => None,
    };
    let mut edit = edit(args.command, now.as_second())?;
    let mut change = None;
    // Under the policy's lock, so that two edits at once both land; written
    // atomically, so a crash never leaves half a policy.
    cairn_fs::update_locked(&args.policy, |old| -> anyhow::Result<_> {
        let mut updates = open(&args.policy, old, args.stream.as_deref())?;
        if let (
            PolicyEdit::HaltClear {
                version, halted_at, ..
            },
            Some(times),
        ) = (&mut edit, &times)
        {
            *halted_at = Some(first_uncleared(&updates, version, times)?);
        }
        let applied = apply(&mut updates, &edit, now.as_second())
            .with_context(|| args.policy.display().to_string())?;
        change = Some(applied);
        Ok(Some(updates.to_json_pretty(now).into_bytes()))
    })?;
    let change = change.context("the policy edit was not applied")?;
    args::emit(&format!(
        "changed: {}\nfleet: {} (once published with `cairn publish`)\n",
        change.changed, change.fleet
    ))?;
    Ok(ExitCode::SUCCESS)
}
