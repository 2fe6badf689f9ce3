//! The `cairn agent` process: configuration, host tool selection, the
//! document from its source and the operator's requests, around the
//! [`Agent`](crate::agent::Agent) state machine. What a pass leaves for
//! `cairn status` is rendered by [`crate::status`].

use crate::agent::{Agent, AgentError, World};
use crate::config::{ConfigDirs, Settings, Source};
use crate::fleetlock::FleetLockClient;
use crate::host::driver::{Driver, ProcessRunner};
use crate::host::{HostStatus, Tool, repository_of, tag_of};
use crate::machine::{Event, State};
use crate::reason::{Reason, ReasonKind};
use crate::source::{GraphUnavailable, SourceGraph};
use crate::store::AgentState;
use cairn_graph::GraphDocument;
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::status::{
    AgentStatus, METRICS_FILE, MOTD_FILE, STATUS_FILE, StateName, metrics_text, motd,
};

/// Units that update the host on their own; staging waits while any is enabled.
pub const OTHER_UPDATERS: [&str; 3] = [
    "bootc-fetch-apply-updates.timer",
    "zincati.service",
    "rpm-ostreed-automatic.timer",
];

/// Where the agent finds things.
#[derive(Debug, Clone)]
pub struct Options {
    /// Root of the configuration directories, `/etc/machine-id` and
    /// `/proc/sys/kernel/random/boot_id`.
    pub root: PathBuf,
    /// The sysroot the host's deployments live under (`/sysroot`).
    pub sysroot: PathBuf,
    /// Persistent state (`/var/lib/cairn`).
    pub state_dir: PathBuf,
    /// The bootc executable.
    pub bootc: String,
    /// The rpm-ostree executable.
    pub rpm_ostree: String,
    /// `systemctl`, asked about the boot's health and other updaters; `None`:
    /// this host has no systemd (as has `host.systemd = false`), so boots are
    /// recorded as unverified.
    pub systemctl: Option<String>,
    /// Refuse to stage while another updater is enabled.
    pub updater_check: bool,
    /// `loginctl`, to delay reboots while users are logged in; `None` skips the check.
    pub loginctl: Option<String>,
    /// Where the MOTD snippet goes (`/run/motd.d`); `None` writes none.
    pub motd_dir: Option<PathBuf>,
    /// Fedora's name of this host's architecture.
    pub arch: String,
    /// Registry access.
    pub client: cairn_oci::ClientOptions,
    /// Check this often instead of the configured interval, without jitter
    /// (benchmarks).
    pub check_interval: Option<Duration>,
    /// The control socket the daemon listens on; `None` for no socket.
    pub socket: Option<PathBuf>,
    /// The systemd unit this process runs in (`/proc/self/cgroup`), to tell
    /// whether the registration is its own; `None` when not a service.
    pub own_unit: Option<String>,
}

/// What one pass may do, beyond what the configuration says: the daemon's
/// passes, `cairn agent --once`, `cairn verify` and `cairn update-now` differ
/// only in this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassMode {
    /// Go on to finalize (reboot) when the gates allow; a one-shot check does not.
    pub finalize: bool,
    /// `cairn update-now`: wariness 0 and no windows or lock, but barriers,
    /// dead-ends, the deny-list, max_version and holds still apply.
    pub update_now: bool,
    /// `cairn update-now --cross-barrier`: the base-barrier guard of a
    /// derived graph is lifted for this pass, and that is logged.
    pub cross_barrier: bool,
    /// `cairn verify` gave up waiting: a boot that has still not reached
    /// `boot-complete.target` counts as failed.
    pub pending_is_failure: bool,
    /// Register as rpm-ostree's update driver. Only the agent's own passes
    /// do: rpm-ostree ties the driver to the caller's unit, so a
    /// registration from `cairn-verify.service` or a shell would take it
    /// away from `cairn-agent.service` (or be refused).
    pub register_driver: bool,
}

impl PassMode {
    /// A pass of the agent itself: the daemon's (`finalize`) or `--once`.
    pub fn agent(finalize: bool) -> PassMode {
        PassMode {
            finalize,
            update_now: false,
            cross_barrier: false,
            pending_is_failure: false,
            register_driver: true,
        }
    }

    /// A pass `cairn verify` or `cairn update-now` runs in its own process
    /// because no agent answered: it never registers the driver.
    pub fn fallback(self) -> PassMode {
        PassMode {
            register_driver: false,
            ..self
        }
    }
}

/// Units among [`OTHER_UPDATERS`] that are enabled, or whose state cannot be
/// told: the agent does nothing rather than race another updater.
pub async fn enabled_updaters(systemctl: &str, root: &Path) -> Vec<String> {
    let mut enabled = Vec::new();
    for unit in OTHER_UPDATERS {
        let output = tokio::process::Command::new(systemctl)
            .args(["is-enabled", unit])
            .output()
            .await;
        // A `systemctl` that cannot answer (no bus, no systemd) is not a "no".
        let is_enabled = match output {
            Ok(o) => {
                let answer = String::from_utf8_lossy(&o.stdout).trim().to_string();
                answer.starts_with("enabled") || (answer.is_empty() && !o.status.success())
            }
            Err(_) => true,
        };
        // rpm-ostreed's automatic timer only stages with a policy other than "none".
        let matters = unit != "rpm-ostreed-automatic.timer"
            || std::fs::read_to_string(root.join("etc/rpm-ostreed.conf")).map_or(true, |conf| {
                !conf.lines().any(|l| {
                    l.replace(' ', "")
                        .eq_ignore_ascii_case("AutomaticUpdatePolicy=none")
                })
            });
        if is_enabled && matters {
            enabled.push(unit.to_string());
        }
    }
    enabled
}

fn wariness(settings: &Settings, root: &Path) -> Result<f64, String> {
    if let Some(w) = settings.wariness {
        return Ok(w);
    }
    let path = root.join("etc/machine-id");
    let machine_id = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}; set identity.rollout_wariness", path.display()))?;
    let node = crate::identity::node_id(&machine_id).map_err(|e| e.to_string())?;
    Ok(cairn_graph::wariness::from_app_id(&node))
}

fn node_id(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/machine-id"))
        .ok()
        .and_then(|m| crate::identity::node_id(&m).ok())
        .unwrap_or_else(|| "unknown".into())
}

/// This boot's ID, under `root` (`/` on a host) so tests can give one.
fn boot_id(root: &Path) -> Option<String> {
    let path = root.join("proc/sys/kernel/random/boot_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Some(id.trim().to_string()),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "no boot ID");
            None
        }
    }
}

/// True when an interactive user session exists; a `loginctl` that fails
/// counts as "users present", so nobody is rebooted out from under them.
pub async fn users_logged_in(loginctl: &str) -> bool {
    let output = tokio::process::Command::new(loginctl)
        .args(["list-sessions", "--no-legend"])
        .output()
        .await;
    match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| !l.trim().is_empty()),
        _ => true,
    }
}

/// The document, fetched and verified as the trust model says.
#[allow(clippy::too_many_arguments)]
async fn document(
    settings: &Settings,
    followed: &str,
    stream: &str,
    state: &mut AgentState,
    client: &cairn_oci::RegistryClient,
    mirrors: &crate::mirrors::Mirrors,
    now: Timestamp,
    fcos_cache: &Path,
) -> Result<(GraphDocument, String), GraphUnavailable> {
    let locations = match &settings.source {
        Source::Fcos { base_url } => {
            return cairn_oci::sources::fcos_document(
                client,
                base_url.as_deref(),
                stream,
                now,
                Some(fcos_cache),
            )
            .await
            .map_err(GraphUnavailable::from);
        }
        Source::Registry(None) if repository_of(followed) == FEDORA_COREOS_REPOSITORY => {
            return cairn_oci::sources::fcos_document(client, None, stream, now, Some(fcos_cache))
                .await
                .map_err(GraphUnavailable::from);
        }
        // Mirrors first, as the host's own pulls go.
        Source::Registry(None) => mirrors
            .for_tag(repository_of(followed))
            .iter()
            .map(|repository| {
                cairn_oci::Location::parse(&format!(
                    "{repository}:{}",
                    cairn_oci::document::default_tag(stream)
                ))
                .map_err(|e| GraphUnavailable::new(e.kind(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Source::Registry(Some(reference)) => {
            vec![
                cairn_oci::Location::parse(reference)
                    .map_err(|e| GraphUnavailable::new(e.kind(), format!("updates.source: {e}")))?,
            ]
        }
        Source::File(path) => vec![cairn_oci::Location::File(path.clone())],
        Source::Server(url) => vec![cairn_oci::Location::Url(format!(
            "{}/v2/graph/{stream}",
            url.trim_end_matches('/')
        ))],
        Source::Tag => {
            return Err(GraphUnavailable::new(
                "bad_source",
                "the tag-following source builds its own document",
            ));
        }
        // Read by `cincinnati_graph`: a Cincinnati server sends no document.
        Source::Cincinnati(url) => {
            return Err(GraphUnavailable::new(
                "bad_source",
                format!("cincinnati:{url} serves a graph, not a document"),
            ));
        }
    };
    let mut failures = Vec::new();
    let mut found = None;
    for location in locations {
        let described = location.to_string();
        match cairn_oci::document::fetch_location(&location, client).await {
            Ok(fetched) => {
                found = Some((fetched, described));
                break;
            }
            Err(e) => failures.push(GraphUnavailable::new(e.kind(), format!("{described}: {e}"))),
        }
    }
    let Some((fetched, described)) = found else {
        return Err(GraphUnavailable::all_failed(failures));
    };
    let keys = cairn_oci::signing::VerifyingKey::from_files(&settings.keys)
        .map_err(|e| GraphUnavailable::new(e.kind(), format!("updates.keys: {e}")))?;
    let last = state.last_document.clone();
    let policy = cairn_oci::document::TrustPolicy {
        keys: &keys,
        allow_unsigned: settings.allow_unsigned,
        now,
        last_seen: last
            .as_ref()
            .map(|(sequence, digest)| cairn_oci::document::Seen {
                sequence: *sequence,
                digest,
            }),
        stream: Some(stream),
    };
    fetched
        .verify(&described, &policy)
        .map_err(|e| GraphUnavailable::new(e.kind(), e.to_string()))?;
    state.last_document = Some((
        fetched.document.sequence,
        cairn_oci::digest::sha256_digest(&fetched.bytes),
    ));
    Ok((fetched.document, described))
}

/// Fedora publishes no Cairn document for its own repository; its release
/// index and updates file are the source there.
pub use cairn_oci::sources::{FEDORA_COREOS_REPOSITORY, FEDORA_METADATA_BASE};

/// Which tool drives this host: bootc when it reports a booted image it can
/// manage, else rpm-ostree.
async fn pick_driver(options: &Options) -> Result<(Driver<ProcessRunner>, HostStatus), String> {
    let runner = ProcessRunner::detect();
    let bootc = Driver::new(
        runner.clone(),
        Tool::Bootc,
        &options.bootc,
        Duration::from_secs(600),
    )
    .with_probe_file(options.state_dir.join(crate::host::probe::PROBE_FILE));
    match bootc.status().await {
        Ok(status)
            if status
                .booted
                .as_ref()
                .is_some_and(|b| !b.incompatible && b.digest.is_some()) =>
        {
            return Ok((bootc, status));
        }
        // bootc answered, but cannot manage this deployment: rpm-ostree can.
        Ok(_) => {}
        // bootc is not installed: an rpm-ostree host.
        Err(crate::host::driver::DriverError::Run { .. }) => {}
        // bootc failed: falling back would drive the host behind bootc's back.
        Err(e) => return Err(format!("bootc status failed: {e}")),
    }
    let rpm = Driver::new(
        runner,
        Tool::RpmOstree,
        &options.rpm_ostree,
        Duration::from_secs(600),
    );
    let status = rpm
        .status()
        .await
        .map_err(|e| format!("neither bootc nor rpm-ostree reports a booted image: {e}"))?;
    Ok((rpm, status))
}

/// One pass: load the configuration, recover, and step until the state settles.
pub async fn run_once(options: &Options, mode: PassMode, now: Timestamp) -> AgentStatus {
    // Every way out of the pass sets the state and reason.
    let mut status = AgentStatus::new(
        Timestamp::from_second(now.as_second()).unwrap_or(now),
        StateName::Initialized,
        Reason::new(ReasonKind::Resuming, "resuming"),
    );
    let dirs = ConfigDirs::under(&options.root);
    // The pass is one read-modify-write of the state: an operator's change
    // made meanwhile (`cairn hold` without a socket) waits for it to end
    // instead of being overwritten by its saves.
    let locked = match lock_for_pass(&options.state_dir).await {
        Ok(lock) => AgentState::load(&options.state_dir).map(|state| (lock, state)),
        Err(e) => Err(e),
    };
    let (_pass, mut state) = match locked {
        Ok(locked) => locked,
        Err(e) => {
            status.state = StateName::Error;
            status.reason = Reason::new(
                ReasonKind::StateUnreadable,
                "the persistent state cannot be read; nothing is done",
            );
            status.last_error = Some(e.to_string());
            crate::status::finish(
                &options.state_dir,
                options.motd_dir.as_deref(),
                &mut status,
                now,
            );
            return status;
        }
    };
    let settings = match crate::config::load(&dirs) {
        Ok(settings) => {
            if let State::ConfigError { .. } = state.state
                && let Ok(next) = state.state.next(&Event::ConfigLoaded)
            {
                state.state = next;
                if let Err(e) = state.save(&options.state_dir) {
                    status.last_error = Some(e.to_string());
                }
            }
            settings
        }
        Err(e) => {
            if let Ok(next) = state.state.next(&Event::ConfigFailed(e.to_string())) {
                state.state = next;
                if let Err(save) = state.save(&options.state_dir) {
                    tracing::warn!(error = %save, "could not record the config-error state");
                }
            }
            status.state = StateName::from(&state.state);
            status.reason = Reason::new(
                ReasonKind::ConfigError,
                format!("configuration error: {e}; nothing is staged or finalized"),
            );
            status.last_error = Some(e.to_string());
            crate::status::finish(
                &options.state_dir,
                options.motd_dir.as_deref(),
                &mut status,
                now,
            );
            return status;
        }
    };
    let mut settings = settings;
    if mode.update_now {
        settings.wariness = Some(0.0);
        settings.schedule = None;
        settings.fleet_lock = None;
    }
    status.strategy = if mode.update_now {
        "update-now".into()
    } else {
        settings.strategy_name().into()
    };
    // What status says when the pass stops before it decides anything.
    status.state = StateName::from(&state.state);
    // A pass that fails has not set the reason: the failure is the reason.
    if let Err(stopped) = pass(options, mode, &settings, state, now, &mut status).await {
        status.reason = Reason::new(stopped.kind, format!("no action: {}", stopped.message));
        status.last_error = Some(stopped.message);
    }
    crate::status::finish(
        &options.state_dir,
        options.motd_dir.as_deref(),
        &mut status,
        now,
    );
    status
}

/// Wait for the state's lock without stalling the runtime.
async fn lock_for_pass(state_dir: &Path) -> Result<cairn_fs::FileLock, crate::store::StoreError> {
    let dir = state_dir.to_path_buf();
    match tokio::task::spawn_blocking(move || crate::store::lock(&dir)).await {
        Ok(locked) => locked,
        // Only a panic ends the task early; wait here instead.
        Err(_) => crate::store::lock(state_dir),
    }
}

/// Why a pass stopped before the state machine decided: the reason's kind
/// and the error.
#[derive(Debug)]
struct Stopped {
    kind: ReasonKind,
    message: String,
}

/// Map an error to a [`Stopped`] of `kind`.
fn stopped<E: std::fmt::Display>(kind: ReasonKind) -> impl FnOnce(E) -> Stopped {
    move |e| Stopped {
        kind,
        message: e.to_string(),
    }
}

/// A release on the host, with its age in the graph when there is one.
fn release_of(
    deployment: Option<&crate::host::Deployment>,
    graph: Option<&SourceGraph>,
) -> Option<crate::status::Release> {
    let deployment = deployment?;
    Some(crate::status::Release {
        version: deployment.version.clone(),
        digest: deployment.digest.clone(),
        age_index: graph.and_then(|g| age_in(g, deployment.digest.as_deref())),
    })
}

async fn pass(
    options: &Options,
    mode: PassMode,
    settings: &Settings,
    mut state: AgentState,
    now: Timestamp,
    status: &mut AgentStatus,
) -> Result<(), Stopped> {
    let wariness =
        wariness(settings, &options.root).map_err(stopped(ReasonKind::WarinessUnknown))?;
    status.wariness = Some(wariness);
    let (driver, host) = pick_driver(options)
        .await
        .map_err(stopped(ReasonKind::HostUnreadable))?;
    status.booted = release_of(host.booted.as_ref(), None);
    // The tag is recorded once: after a digest switch bootc's spec shows the digest.
    if state.followed.is_none() && host.followed.as_ref().is_some_and(|f| !f.contains('@')) {
        state.followed = host.followed.clone();
        state
            .save(&options.state_dir)
            .map_err(stopped(ReasonKind::StateUnwritable))?;
    }
    // Without a recorded tag (a reset after a digest switch), the repository
    // still comes from the digest reference; the stream must then be configured.
    let followed = state
        .followed
        .clone()
        .or_else(|| host.followed.clone())
        .ok_or("the host follows no image; set updates.source")
        .map_err(stopped(ReasonKind::NoFollowedImage))?;
    let stream = settings
        .stream
        .clone()
        .or_else(|| tag_of(&followed).map(str::to_string))
        .ok_or("the followed tag is not known (the host is on a digest): set updates.stream")
        .map_err(stopped(ReasonKind::StreamUnknown))?;
    status.stream = Some(stream.clone());
    status.deny_list = state
        .deny_list
        .values()
        .map(|d| d.version.clone())
        .collect();
    status.held = state.is_held(now);
    // Without systemd there is neither a boot verdict nor another updater to ask about.
    let systemctl = options.systemctl.as_deref().filter(|_| settings.systemd);
    if let Some(systemctl) = systemctl.filter(|_| options.updater_check) {
        let others = enabled_updaters(systemctl, &options.root).await;
        if !others.is_empty() {
            status.state = StateName::from(&state.state);
            status.reason = Reason::new(
                ReasonKind::OtherUpdaterEnabled,
                format!(
                    "refusing to stage while another updater is enabled: {} (disable with `systemctl disable --now {}`)",
                    others.join(", "),
                    others.join(" ")
                ),
            );
            return Ok(());
        }
    }
    if mode.register_driver
        && driver.tool() == Tool::RpmOstree
        && crate::host::needs_driver_registration(&host, options.own_unit.as_deref())
    {
        // Not being the driver only means other tools are not warned off:
        // no reason to stop updating.
        if let Err(e) = driver.register().await {
            tracing::warn!(error = %e, "could not register as rpm-ostree's update driver");
            status.driver_registration = Some(e.to_string());
        }
    }
    // A broken registries.conf breaks the host's own pulls too: do nothing.
    let mirrors = crate::mirrors::Mirrors::load(&options.root)
        .map_err(stopped(ReasonKind::RegistriesConfInvalid))?;
    let mut client_options = options.client.clone();
    client_options
        .insecure_registries
        .extend(mirrors.insecure_hosts());
    let client =
        cairn_oci::RegistryClient::new(client_options).map_err(stopped(ReasonKind::SetupFailed))?;
    let fetched = match &settings.source {
        Source::Cincinnati(url) => {
            // A host booted from an image needs the OCI graph.
            let oci = host
                .booted
                .as_ref()
                .and_then(|b| b.digest.as_deref())
                .is_some_and(|d| cairn_graph::Scheme::of_booted(d) == cairn_graph::Scheme::Oci);
            cairn_oci::sources::cincinnati_graph_for_host(
                &client,
                url,
                &stream,
                &options.arch,
                wariness,
                oci,
                host.booted
                    .as_ref()
                    .and_then(|b| b.digest.as_deref().or(b.checksum.as_deref())),
            )
            .await
            .map(|(graph, shown)| (SourceGraph::Cincinnati(graph), shown))
            .map_err(GraphUnavailable::from)
        }
        Source::Tag => {
            let booted = host
                .booted
                .as_ref()
                .and_then(|b| b.digest.as_ref().map(ToString::to_string))
                .unwrap_or_default();
            // After a digest switch the spec names a digest: the recorded tag is followed.
            let follow = crate::follow::Follow {
                followed: &followed,
                stream: &stream,
                booted: &booted,
                arch: &options.arch,
                now,
                state_dir: &options.state_dir,
                mirrors: &mirrors,
            };
            crate::follow::tag_document(settings, &follow, &client)
                .await
                .map(|(document, described)| (SourceGraph::Followed(document), described))
                .map_err(GraphUnavailable::from)
        }
        _ => document(
            settings,
            &followed,
            &stream,
            &mut state,
            &client,
            &mirrors,
            now,
            &options.state_dir.join("fcos"),
        )
        .await
        .map(|(document, described)| (SourceGraph::Document(document), described)),
    };
    let fetched = fetched.map(|(graph, described)| {
        if mode.cross_barrier {
            tracing::warn!(
                source = %described,
                "update-now --cross-barrier: the operator lifted the base-barrier guard for this pass"
            );
            (graph.crossing_base_barriers(), described)
        } else {
            (graph, described)
        }
    });
    // The trust state is kept as soon as a document is accepted.
    state
        .save(&options.state_dir)
        .map_err(stopped(ReasonKind::StateUnwritable))?;
    status.source = match &fetched {
        Ok((_, described)) => described.clone(),
        Err(_) => settings.source.to_string(),
    };
    // An unreachable or untrusted source is an error operators must see,
    // and it keeps `last_success` (and its metric) from advancing.
    if let Err(e) = &fetched {
        status.last_error = Some(e.to_string());
    }
    let lock = match &settings.fleet_lock {
        Some(lock) => Some(
            FleetLockClient::new(
                lock.base_url.clone(),
                &node_id(&options.root),
                &lock.group,
                Duration::from_secs(30),
            )
            .map_err(stopped(ReasonKind::SetupFailed))?,
        ),
        None => None,
    };
    let repository = repository_of(&followed).to_string();
    state
        .save(&options.state_dir)
        .map_err(stopped(ReasonKind::StateUnwritable))?;
    let mut agent = Agent::new(
        settings.clone(),
        driver,
        lock,
        options.state_dir.clone(),
        wariness,
        &options.arch,
        &repository,
    )
    .map_err(|e| Stopped {
        kind: e.reason_kind(),
        message: e.to_string(),
    })?
    .with_hooks(
        crate::hooks::HookSettings {
            root: options.root.clone(),
            sysroot: options.sysroot.clone(),
            timeout: settings.hook_timeout,
            systemd: ProcessRunner::detect().use_systemd_run,
            allow_unconfined: settings.allow_unconfined_hooks,
        },
        &stream,
    );
    // Only a boot into a target needs a verdict.
    let boot_health = match (systemctl, agent.state()) {
        (Some(systemctl), State::Rebooting { .. } | State::Verifying { .. }) => {
            match crate::health::boot_health(systemctl, Duration::from_secs(30)).await {
                crate::health::BootHealth::Pending if mode.pending_is_failure => {
                    crate::health::BootHealth::Failed(format!(
                        "boot-complete.target was not reached within {} s",
                        settings.health_timeout.as_secs()
                    ))
                }
                crate::health::BootHealth::Unanswered(why) if mode.pending_is_failure => {
                    crate::health::BootHealth::Failed(format!(
                        "systemctl did not answer within {} s ({why}), so the boot was never seen healthy",
                        settings.health_timeout.as_secs()
                    ))
                }
                verdict => verdict,
            }
        }
        _ => crate::health::BootHealth::Unknown,
    };
    let world = World {
        now,
        graph: fetched
            .as_ref()
            .map(|(graph, _)| graph.clone())
            .map_err(Clone::clone),
        users_logged_in: match &options.loginctl {
            Some(loginctl) => users_logged_in(loginctl).await,
            None => false,
        },
        may_reboot: mode.finalize,
        boot_health,
        boot_id: boot_id(&options.root),
    };
    if let Ok((graph, _)) = &fetched {
        status.document_sequence = graph.sequence();
        status.booted = release_of(host.booted.as_ref(), Some(graph));
        if let Some(booted) = host.booted.as_ref().and_then(|b| b.digest.clone()) {
            let query = cairn_graph::Query {
                booted: &booted,
                wariness,
                now,
                deny: &agent.persisted.denied(),
                allow_downgrade: settings.allow_downgrade,
            };
            status.next_change = graph.next_change_after(&options.arch, &query);
            status.missing_base_image = graph
                .decide(&options.arch, &query)
                .held
                .into_iter()
                .find_map(|held| match held.hold {
                    cairn_graph::select::Hold::BaseBarrier {
                        barrier,
                        base_repository,
                        ..
                    } => Some(crate::status::MissingBaseImage {
                        base_repository,
                        version: barrier.version,
                    }),
                    _ => None,
                });
        }
    }
    let mut report = agent.recover(now).await.map_err(|e| Stopped {
        kind: e.reason_kind(),
        message: e.to_string(),
    })?;
    // Step until the state stops changing (a pass stages, or gates, or waits).
    for _ in 0..6 {
        let before = agent.state().clone();
        report = match agent.tick(&world).await {
            Ok(report) => report,
            Err(e @ (AgentError::Host(_) | AgentError::Refused { .. })) => {
                return Err(Stopped {
                    kind: e.reason_kind(),
                    message: format!("host: {e}"),
                });
            }
            Err(e) => {
                return Err(Stopped {
                    kind: e.reason_kind(),
                    message: e.to_string(),
                });
            }
        };
        // The host is going down, the state settled, or a boot was just
        // judged (its outcome is what this pass reports): stop here.
        if agent.state() == &before
            || matches!(agent.state(), State::Rebooting { .. })
            || matches!(before, State::Verifying { .. })
        {
            break;
        }
    }
    status.state = report.state;
    status.reason = report.reason;
    status.target = agent.state().target().map(|t| crate::status::Release {
        version: Some(t.version.clone()),
        digest: Some(t.digest.clone()),
        age_index: fetched
            .as_ref()
            .ok()
            .and_then(|(graph, _)| age_in(graph, Some(t.digest.as_str()))),
    });
    status.deny_list = agent
        .persisted
        .deny_list
        .values()
        .map(|d| d.version.clone())
        .collect();
    status.hook_veto = agent
        .persisted
        .vetoes
        .values()
        .find(|veto| veto.retry_after > now)
        .map(|veto| crate::status::HookVeto {
            hook: veto.hook.clone(),
            version: veto.version.clone(),
            reason: veto.reason.clone(),
            retry_after: veto.retry_after,
        });
    if let Ok(host) = agent_status(options).await {
        let graph = fetched.as_ref().ok().map(|(graph, _)| graph);
        status.staged = release_of(host.staged.as_ref(), graph);
    }
    Ok(())
}

/// The age index of the release a digest (or alias) belongs to.
fn age_in(graph: &SourceGraph, digest: Option<&str>) -> Option<u64> {
    graph.release_of_digest(digest?).map(|(_, age)| age)
}

async fn agent_status(options: &Options) -> Result<HostStatus, String> {
    pick_driver(options).await.map(|(_, status)| status)
}

/// Tell systemd (a `Type=notify` service) that the agent is up and what it
/// is doing; a no-op outside systemd.
pub fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|address| socket.send_to_addr(message.as_bytes(), &address))
        }
        None => socket.send_to(message.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Run for ever: one pass per check interval, with up to 10% jitter so a
/// fleet does not check in lockstep.
pub async fn run(options: Options) -> Result<(), String> {
    let listener = match options
        .socket
        .as_deref()
        .map(|path| (path, crate::control::bind(path)))
    {
        None => None,
        Some((_, Ok(listener))) => Some(listener),
        Some((_, Err(e))) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e.to_string()),
        Some((path, Err(e))) => {
            tracing::warn!(socket = %path.display(), error = %e, "no control socket; operator commands fall back to the state directory");
            None
        }
    };
    let mut ready = false;
    let mut status = run_once(&options, PassMode::agent(true), Timestamp::now()).await;
    loop {
        tracing::info!(state = %status.state, reason = %status.reason, kind = %status.reason.kind, "check done");
        let line = format!("{}: {}", status.state, status.reason).replace('\n', " ");
        if ready {
            notify(&format!("STATUS={line}"));
        } else {
            notify(&format!("READY=1\nSTATUS={line}"));
            ready = true;
        }
        let sleep = tokio::time::sleep(next_interval(&options));
        tokio::pin!(sleep);
        // Operator requests are served here, between passes, so they never race one.
        status = loop {
            let accepted = async {
                match &listener {
                    Some(listener) => listener.accept().await.map(|(stream, _)| stream),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut sleep => break run_once(&options, PassMode::agent(true), Timestamp::now()).await,
                stream = accepted => {
                    let Ok(mut stream) = stream else { continue };
                    if let Some(status) = serve_request(&options, &mut stream).await {
                        break status;
                    }
                }
            }
        };
    }
}

fn next_interval(options: &Options) -> Duration {
    if let Some(interval) = options.check_interval {
        return interval;
    }
    let interval = crate::config::load(&ConfigDirs::under(&options.root))
        .map(|s| s.check_interval)
        .unwrap_or(Duration::from_secs(crate::config::DEFAULT_CHECK_SECONDS));
    let jitter = Duration::from_millis(
        u64::from(std::process::id()) % (interval.as_millis() as u64 / 10).max(1),
    );
    interval + jitter
}

/// After an operator's change to the state, a pass right away, so that
/// status shows its effect.
async fn after_change(
    options: &Options,
    change: Result<String, crate::control::ControlError>,
) -> (crate::control::Response, Option<AgentStatus>) {
    match change {
        Ok(message) => {
            let status = run_once(options, PassMode::agent(true), Timestamp::now()).await;
            (
                crate::control::Response {
                    ok: true,
                    message,
                    status: Some(status.clone()),
                },
                Some(status),
            )
        }
        Err(error) => (
            crate::control::Response {
                ok: false,
                message: error.to_string(),
                status: None,
            },
            None,
        ),
    }
}

/// Carry out one operator request. Returns the status of a pass it ran, so
/// the loop reports it and starts a new interval.
async fn serve_request(
    options: &Options,
    stream: &mut tokio::net::UnixStream,
) -> Option<AgentStatus> {
    use crate::control::{Request, Response, apply_hold, read_request, write_response};
    let request = read_request(stream).await?;
    tracing::info!(?request, "operator request");
    let (response, ran) = match request {
        Request::Status => (
            match AgentStatus::read(&options.state_dir) {
                Ok(status) => Response {
                    ok: true,
                    message: String::new(),
                    status: Some(status),
                },
                Err(e) => Response {
                    ok: false,
                    message: e.to_string(),
                    status: None,
                },
            },
            None,
        ),
        Request::Hold { until } => match crate::control::hold_end(until) {
            Ok(until) => after_change(options, apply_hold(&options.state_dir, true, until)).await,
            Err(error) => after_change(options, Err(error)).await,
        },
        Request::Unhold => after_change(options, apply_hold(&options.state_dir, false, None)).await,
        Request::DenyListRemove { release } => {
            after_change(
                options,
                crate::control::remove_from_deny_list(&options.state_dir, &release),
            )
            .await
        }
        Request::Verify { pending_is_failure } => {
            let mode = PassMode {
                pending_is_failure,
                ..PassMode::agent(true)
            };
            let status = run_once(options, mode, Timestamp::now()).await;
            (
                Response {
                    ok: status.last_error.is_none(),
                    message: String::new(),
                    status: Some(status.clone()),
                },
                Some(status),
            )
        }
        Request::UpdateNow {
            cross_barrier,
            stage_only,
        } => {
            let mode = PassMode {
                finalize: !stage_only,
                update_now: true,
                cross_barrier,
                ..PassMode::agent(true)
            };
            let status = run_once(options, mode, Timestamp::now()).await;
            (
                Response {
                    ok: status.last_error.is_none(),
                    message: String::new(),
                    status: Some(status.clone()),
                },
                Some(status),
            )
        }
    };
    if let Err(e) = write_response(stream, &response).await {
        tracing::warn!(error = %e, "could not answer an operator request");
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_id_is_read_under_the_root() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(boot_id(dir.path()), None);
        let file = dir.path().join("proc/sys/kernel/random/boot_id");
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(&file, "6f1c2e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b\n").expect("write");
        assert_eq!(
            boot_id(dir.path()).as_deref(),
            Some("6f1c2e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
        );
    }
}
