//! `cairn agent`, `cairn status`, `cairn hold`/`unhold` and `cairn deny-list`.

use crate::cli::args::{self, RegistryArgs};
use anyhow::Context;
use cairn_agent::control::{self, AskError, Request, Response};
use cairn_agent::daemon::{Options, PassMode};
use cairn_agent::status::AgentStatus;
use cairn_agent::store::AgentState;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the agent keeps its state.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// The agent's state directory.
    #[arg(long, default_value = "/var/lib/cairn")]
    state_dir: PathBuf,
    /// The running agent's control socket.
    #[arg(long, default_value = cairn_agent::control::DEFAULT_SOCKET)]
    socket: PathBuf,
}

/// Ask the running agent; `Ok(None)` when none is running.
fn ask_agent(
    state: &StateArgs,
    request: &Request,
    timeout: Duration,
) -> anyhow::Result<Option<Response>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let response = match runtime.block_on(control::ask(&state.socket, request, timeout)) {
        Ok(response) => response,
        Err(AskError::NotRunning(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // The socket's agent may keep its state elsewhere (the default socket
    // and another `--state-dir`): its answer would be about another host state.
    if let Some(theirs) = &response.state_dir
        && !same_directory(theirs, &state.state_dir)
    {
        anyhow::bail!(
            "the agent on {} keeps its state in {}, not {}; pass --socket with the socket of the agent for {} (or --state-dir {})",
            state.socket.display(),
            theirs.display(),
            state.state_dir.display(),
            state.state_dir.display(),
            theirs.display()
        );
    }
    Ok(Some(response))
}

/// Two spellings of one directory (relative, with `..`, through links).
fn same_directory(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The credentials the agent reads without `--authfile`, below `--root`:
/// the first that exists, as bootc reads them; never a user's file.
pub const OSTREE_AUTH_FILES: [&str; 3] = [
    "run/ostree/auth.json",
    "etc/ostree/auth.json",
    "usr/lib/ostree/auth.json",
];

/// `--authfile` as the agent reads it: the registry commands' text names a
/// user's files, which the agent never reads.
fn agent_authfile_help() -> String {
    let files: Vec<String> = OSTREE_AUTH_FILES
        .iter()
        .map(|path| format!("/{path}"))
        .collect();
    format!(
        "Registry credentials (auth.json format). Default: the first of the host's ostree auth files that exists, as bootc reads them ({}, below --root); never a user's file",
        files.join(", ")
    )
}

/// Run the node agent.
#[derive(Debug, clap::Args)]
#[command(mut_arg("authfile", |arg| arg.help(agent_authfile_help())))]
pub struct AgentArgs {
    /// Root of the configuration fragments and /etc/machine-id.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The sysroot the host's deployments live under (hooks run in the staged one).
    #[arg(long, default_value = "/sysroot")]
    sysroot: PathBuf,
    #[command(flatten)]
    state: StateArgs,
    /// The bootc executable.
    #[arg(long, default_value = "bootc")]
    bootc: String,
    /// The rpm-ostree executable.
    #[arg(long, default_value = "rpm-ostree")]
    rpm_ostree: String,
    /// systemctl, asked whether the boot into a new release is healthy and
    /// whether another updater is enabled.
    #[arg(long, default_value = "systemctl")]
    systemctl: String,
    /// Skip only the check for other updaters; boot health is still asked.
    #[arg(long)]
    no_updater_check: bool,
    /// This host has no systemd: nothing is asked of systemctl, and boots
    /// are recorded as unverified (as `host.systemd = false` does).
    #[arg(long)]
    no_systemd: bool,
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
    /// The first pause after a failed report send instead of 30 s (tests only).
    #[arg(long, hide = true)]
    report_backoff_ms: Option<u64>,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn root_motd(root: &std::path::Path) -> PathBuf {
    root.join("run/motd.d")
}

pub(super) fn host_arch() -> String {
    match std::env::consts::ARCH {
        "powerpc64" => "ppc64le".to_string(),
        other => other.to_string(),
    }
}

/// After a reboot into a new release: wait for `boot-complete.target`
/// (at most `health.timeout_seconds`), judge the boot, record the outcome,
/// and roll back if it failed and `health.rollback_on_failure` is set.
/// Run by `cairn-verify.service`.
pub fn run_verify(args: AgentArgs) -> anyhow::Result<ExitCode> {
    args::init_logging();
    let mut options = options(&args)?;
    options.socket = None;
    let settings = cairn_agent::config::load(&cairn_agent::config::ConfigDirs::under(&args.root));
    let deadline = std::time::Instant::now()
        + settings
            .as_ref()
            .map_or(Duration::from_secs(900), |s| s.health_timeout);
    let runtime = args::runtime()?;
    loop {
        let last_try = std::time::Instant::now() >= deadline;
        let mode = PassMode {
            pending_is_failure: last_try,
            ..PassMode::agent(false)
        }
        .fallback();
        // The running agent does the pass when there is one, so that two
        // processes never act on the host at once.
        let request = Request::Verify {
            pending_is_failure: last_try,
        };
        let status = match ask_agent(&args.state, &request, Duration::from_secs(600))? {
            Some(Response {
                status: Some(status),
                ..
            }) => status,
            Some(response) => anyhow::bail!("the agent answered: {}", response.message),
            None => runtime.block_on(cairn_agent::daemon::run_once(
                &options,
                mode,
                jiff::Timestamp::now(),
            )),
        };
        if !status.waiting_for_boot() || last_try {
            args::emit(&status.render())?;
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Check, stage and reboot into the newest allowed release now.
#[derive(Debug, clap::Args)]
pub struct UpdateNowArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Cross a base barrier that no image of this repository is built on:
    /// the operator accepts skipping that base migration. Logged.
    #[arg(long)]
    cross_barrier: bool,
}

/// Check, stage and reboot now: wariness 0 and no windows or lock, but
/// barriers, dead-ends, the deny-list, max_version and holds still apply.
/// `--once` stages without rebooting.
pub fn run_update_now(args: UpdateNowArgs) -> anyhow::Result<ExitCode> {
    let UpdateNowArgs {
        agent: args,
        cross_barrier,
    } = args;
    let request = Request::UpdateNow {
        cross_barrier,
        stage_only: args.once,
    };
    // Staging can take a while; the agent answers when its pass is done.
    if let Some(response) = ask_agent(&args.state, &request, Duration::from_secs(3600))? {
        if let Some(status) = &response.status {
            args::emit(&status.render())?;
        }
        if !response.message.is_empty() {
            eprintln!("cairn: {}", response.message);
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "cairn: no agent is running (nothing answers on {}); checking in this process",
        args.state.socket.display()
    );
    // The override of a base barrier must leave a trace.
    args::init_logging();
    let options = options(&args)?;
    let mode = PassMode {
        update_now: true,
        cross_barrier,
        ..PassMode::agent(!args.once)
    }
    .fallback();
    let status = args::runtime()?.block_on(cairn_agent::daemon::run_once(
        &options,
        mode,
        jiff::Timestamp::now(),
    ));
    args::emit(&status.render())?;
    Ok(ExitCode::SUCCESS)
}

fn options(args: &AgentArgs) -> anyhow::Result<Options> {
    Ok(Options {
        root: args.root.clone(),
        sysroot: args.sysroot.clone(),
        state_dir: args.state.state_dir.clone(),
        bootc: args.bootc.clone(),
        rpm_ostree: args.rpm_ostree.clone(),
        systemctl: (!args.no_systemd).then(|| args.systemctl.clone()),
        updater_check: !args.no_updater_check,
        loginctl: (!args.no_user_check).then(|| args.loginctl.clone()),
        motd_dir: Some(root_motd(&args.root)),
        arch: args.arch.clone().unwrap_or_else(host_arch),
        client: args
            .registry
            .host_client_options(&OSTREE_AUTH_FILES.map(|path| args.root.join(path)))?,
        auth_file: args
            .registry
            .host_auth_file(&OSTREE_AUTH_FILES.map(|path| args.root.join(path))),
        check_interval: args.check_interval_ms.map(Duration::from_millis),
        socket: (!args.once).then(|| args.state.socket.clone()),
        own_unit: cairn_agent::host::own_systemd_unit(),
        report_backoff: args.report_backoff_ms.map(Duration::from_millis),
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
            PassMode::agent(false),
            jiff::Timestamp::now(),
        ));
        args::emit(&status.render())?;
        return Ok(ExitCode::SUCCESS);
    }
    args::init_logging();
    runtime.block_on(cairn_agent::daemon::run(options))?;
    Ok(ExitCode::SUCCESS)
}

/// Show what the agent is doing and why.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    state: StateArgs,
    /// JSON instead of text; a failure is an object `{"error": {"kind", "message", "socket", "stateDir"}}`.
    #[arg(long)]
    json: bool,
    /// The update attempts and their outcomes (from, to, times, result, reason), newest first.
    #[arg(long)]
    history: bool,
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.history {
        return run_history(&args);
    }
    let dir = &args.state.state_dir;
    let (mut status, mut note) = match ask_agent(
        &args.state,
        &Request::Status,
        Duration::from_secs(10),
    )? {
        Some(Response {
            status: Some(status),
            ..
        }) => (status, None),
        Some(response) => anyhow::bail!("the agent answered: {}", response.message),
        None => match AgentStatus::read(dir) {
            Ok(status) => (
                status,
                Some(format!(
                    "no agent is running (nothing answers on {}); this is the last status it wrote in {}",
                    args.state.socket.display(),
                    dir.display()
                )),
            ),
            Err(e) => return no_status(&args, &e),
        },
    };
    // A hold or unhold recorded while no agent runs is in the state, not yet
    // in the status the agent last wrote.
    if let Some(note) = &mut note {
        match AgentState::load(dir) {
            Ok(state) => {
                let held = state.is_held(jiff::Timestamp::now());
                if held != status.held {
                    status.held = held;
                    note.push_str(&if held {
                        format!("; updates held {} since then", hold_until(&state))
                    } else {
                        "; the hold was lifted since then".to_string()
                    });
                }
            }
            Err(e) => eprintln!("cairn: warning: a hold cannot be shown: {e}"),
        }
    }
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&status)?)
    } else {
        let mut text = status.render();
        if let Some(note) = &note {
            text.push_str(&format!("Agent:      {note}\n"));
        }
        text
    };
    if let (Some(note), true) = (&note, args.json) {
        eprintln!("cairn: {note}");
    }
    args::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn hold_until(state: &AgentState) -> String {
    state
        .hold_until
        .map_or("until `cairn unhold`".to_string(), |until| {
            format!("until {until}")
        })
}

/// No agent answers and no status can be read: name both places tried.
fn no_status(
    args: &StatusArgs,
    error: &cairn_agent::status::StatusError,
) -> anyhow::Result<ExitCode> {
    let dir = &args.state.state_dir;
    let (kind, found) = if !dir.exists() {
        (
            "no_state_dir",
            format!("the state directory {} does not exist", dir.display()),
        )
    } else if matches!(error, cairn_agent::status::StatusError::Missing { .. }) {
        (
            "no_status",
            format!("the state directory {} has no status yet", dir.display()),
        )
    } else {
        (error.kind(), error.to_string())
    };
    let held = AgentState::load(dir)
        .ok()
        .filter(|state| state.is_held(jiff::Timestamp::now()))
        .map(|state| format!("; updates are held {}", hold_until(&state)))
        .unwrap_or_default();
    let message = format!(
        "no agent is running (nothing answers on {}), and {found}{held}: is `cairn agent` running, with this --socket and --state-dir?",
        args.state.socket.display()
    );
    fail(args.json, kind, &message, &args.state)
}

/// A failure as `--json` promises it (an error object on stdout, exit 1), or as an error.
fn fail(json: bool, kind: &str, message: &str, state: &StateArgs) -> anyhow::Result<ExitCode> {
    if !json {
        anyhow::bail!("{message}");
    }
    let object = serde_json::json!({
        "error": {
            "kind": kind,
            "message": message,
            "socket": state.socket,
            "stateDir": state.state_dir,
        }
    });
    args::emit(&format!("{}\n", serde_json::to_string_pretty(&object)?))?;
    Ok(ExitCode::FAILURE)
}

fn run_history(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.state.state_dir;
    if !dir.exists() {
        let message = format!(
            "the state directory {} does not exist, so it holds no history: has `cairn agent` run on this host, with this --state-dir?",
            dir.display()
        );
        return fail(args.json, "no_state_dir", &message, &args.state);
    }
    let (attempts, damaged) = cairn_agent::history::read(dir)
        .with_context(|| format!("reading the history in {}", dir.display()))?;
    if damaged > 0 {
        eprintln!("cairn: warning: {damaged} damaged line(s) in the history were skipped");
    }
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&attempts)?)
    } else {
        cairn_agent::history::render(&attempts)
    };
    args::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Without a socket to ask, a change to the state waits for a pass under
/// way (`cairn agent --once`, say); say so rather than hang silently.
fn say_if_waiting(state: &StateArgs) {
    if cairn_agent::store::is_locked(&state.state_dir) {
        eprintln!(
            "cairn: an agent pass is under way in {}; waiting for it to end",
            state.state_dir.display()
        );
    }
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
    let until = match (&args.until, hold) {
        (Some(until), true) => Some(args::parse_time(until).context("--until")?),
        _ => None,
    };
    let request = if hold {
        Request::Hold {
            until: until.map(|t| t.as_second()),
        }
    } else {
        Request::Unhold
    };
    let message = match ask_agent(&args.state, &request, Duration::from_secs(600))? {
        Some(response) if response.ok => response.message,
        Some(response) => anyhow::bail!("the agent refused: {}", response.message),
        None => {
            say_if_waiting(&args.state);
            let message = control::apply_hold(&args.state.state_dir, hold, until)
                .map_err(anyhow::Error::msg)?;
            format!(
                "{message} (no agent is running on {}; recorded in {}, it applies when the agent starts)",
                args.state.socket.display(),
                args.state.state_dir.display()
            )
        }
    };
    args::emit(&format!("{message}\n"))?;
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
            let request = Request::DenyListRemove {
                release: release.clone(),
            };
            let message = match ask_agent(&state, &request, Duration::from_secs(600))? {
                Some(response) if response.ok => response.message,
                Some(response) => anyhow::bail!("{}", response.message),
                None => {
                    say_if_waiting(&state);
                    control::remove_from_deny_list(&state.state_dir, &release)
                        .map_err(anyhow::Error::msg)?
                }
            };
            args::emit(&format!("{message}\n"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Hand back the FleetLock slot this host keeps after a failed boot.
pub fn run_release_slot(state: StateArgs) -> anyhow::Result<ExitCode> {
    let message = match ask_agent(&state, &Request::ReleaseSlot, Duration::from_secs(600))? {
        Some(response) if response.ok => response.message,
        Some(response) => anyhow::bail!("{}", response.message),
        None => {
            say_if_waiting(&state);
            let message =
                control::release_kept_slot(&state.state_dir).map_err(anyhow::Error::msg)?;
            format!(
                "{message} when the agent starts (no agent is running on {}; recorded in {})",
                state.socket.display(),
                state.state_dir.display()
            )
        }
    };
    args::emit(&format!("{message}\n"))?;
    Ok(ExitCode::SUCCESS)
}
