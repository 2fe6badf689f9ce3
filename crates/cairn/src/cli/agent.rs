//! `cairn agent`, `cairn status`, `cairn hold`/`unhold` and `cairn deny-list`.

use crate::cli::args::{self, RegistryArgs};
use anyhow::Context;
use cairn_agent::daemon::{Options, StatusFile};
use cairn_agent::store::AgentState;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the agent keeps its state.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// The agent's state directory.
    #[arg(long, default_value = "/var/lib/cairn")]
    state_dir: PathBuf,
}

/// Run the node agent.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Root of the configuration fragments and /etc/machine-id.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    #[command(flatten)]
    state: StateArgs,
    /// The bootc executable.
    #[arg(long, default_value = "bootc")]
    bootc: String,
    /// The rpm-ostree executable.
    #[arg(long, default_value = "rpm-ostree")]
    rpm_ostree: String,
    /// systemctl, to refuse staging while another updater is enabled.
    #[arg(long, default_value = "systemctl")]
    systemctl: String,
    /// Skip the check for other updaters (for hosts without systemd).
    #[arg(long)]
    no_updater_check: bool,
    /// loginctl, to delay reboots while users are logged in.
    #[arg(long, default_value = "loginctl")]
    loginctl: String,
    /// Reboot even with users logged in (hosts without logind).
    #[arg(long)]
    no_user_check: bool,
    /// This host's architecture (Fedora's names). Default: the running one.
    #[arg(long)]
    arch: Option<String>,
    /// One check, then exit: stage an update if there is one, but never reboot.
    #[arg(long)]
    once: bool,
    /// Check this often instead of the configured interval (benchmarks only).
    #[arg(long, hide = true)]
    check_interval_ms: Option<u64>,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn root_motd(root: &std::path::Path) -> PathBuf {
    root.join("run/motd.d")
}

fn host_arch() -> String {
    match std::env::consts::ARCH {
        "powerpc64" => "ppc64le".to_string(),
        other => other.to_string(),
    }
}

/// Check, stage and reboot now: wariness 0 and no windows or lock, but
/// barriers, dead-ends, the deny-list, max_version and holds still apply.
pub fn run_update_now(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut options = options(&args)?;
    options.finalize = true;
    options.update_now = true;
    let status = args::runtime()?.block_on(cairn_agent::daemon::run_once(
        &options,
        jiff::Timestamp::now(),
    ));
    args::emit(&status.render())?;
    Ok(ExitCode::SUCCESS)
}

fn options(args: &AgentArgs) -> anyhow::Result<Options> {
    Ok(Options {
        root: args.root.clone(),
        state_dir: args.state.state_dir.clone(),
        bootc: args.bootc.clone(),
        rpm_ostree: args.rpm_ostree.clone(),
        systemctl: (!args.no_updater_check).then(|| args.systemctl.clone()),
        loginctl: (!args.no_user_check).then(|| args.loginctl.clone()),
        motd_dir: Some(root_motd(&args.root)),
        arch: args.arch.clone().unwrap_or_else(host_arch),
        client: args.registry.client_options()?,
        finalize: !args.once,
        update_now: false,
        check_interval: args.check_interval_ms.map(std::time::Duration::from_millis),
    })
}

pub fn run_agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let options = options(&args)?;
    // The agent does one thing at a time; one thread keeps its idle memory small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.once {
        let status = runtime.block_on(cairn_agent::daemon::run_once(
            &options,
            jiff::Timestamp::now(),
        ));
        args::emit(&status.render())?;
        return Ok(ExitCode::SUCCESS);
    }
    args::init_logging();
    runtime.block_on(cairn_agent::daemon::run(options));
    Ok(ExitCode::SUCCESS)
}

/// Show what the agent is doing and why.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    state: StateArgs,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let status = StatusFile::read(&args.state.state_dir).map_err(anyhow::Error::msg)?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&status)?)
    } else {
        status.render()
    };
    args::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Hold updates (staging and rebooting) until unheld or a time.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Hold until this time (Unix seconds or RFC 3339); default: until `cairn unhold`.
    #[arg(long)]
    until: Option<String>,
}

pub fn run_hold(args: HoldArgs, hold: bool) -> anyhow::Result<ExitCode> {
    let dir = &args.state.state_dir;
    let mut state = AgentState::load(dir)?;
    state.held = hold;
    state.hold_until = match (&args.until, hold) {
        (Some(until), true) => Some(args::parse_time(until).context("--until")?),
        _ => None,
    };
    state.save(dir)?;
    let text = match (hold, state.hold_until) {
        (true, Some(until)) => format!("updates held until {until}\n"),
        (true, None) => "updates held until `cairn unhold`\n".to_string(),
        (false, _) => "updates no longer held\n".to_string(),
    };
    args::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The releases this host rolled back from.
#[derive(Debug, Subcommand)]
pub enum DenyListCommand {
    /// List them.
    List(StateArgs),
    /// Offer one again (for example a barrier the host must pass).
    Remove {
        #[command(flatten)]
        state: StateArgs,
        /// Its version or digest.
        release: String,
    },
}

pub fn run_deny_list(command: DenyListCommand) -> anyhow::Result<ExitCode> {
    match command {
        DenyListCommand::List(state) => {
            let loaded = AgentState::load(&state.state_dir)?;
            let mut text = String::new();
            for (digest, entry) in &loaded.deny_list {
                text.push_str(&format!(
                    "{} {digest} since {}: {}\n",
                    entry.version, entry.since, entry.reason
                ));
            }
            if text.is_empty() {
                text.push_str("the deny-list is empty\n");
            }
            args::emit(&text)?;
        }
        DenyListCommand::Remove { state, release } => {
            let mut loaded = AgentState::load(&state.state_dir)?;
            let before = loaded.deny_list.len();
            loaded
                .deny_list
                .retain(|digest, entry| digest != &release && entry.version != release);
            anyhow::ensure!(
                loaded.deny_list.len() < before,
                "{release} is not on the deny-list"
            );
            loaded.save(&state.state_dir)?;
            args::emit(&format!(
                "{release} removed from the deny-list; it may be offered again\n"
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
