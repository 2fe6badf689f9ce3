//! One pass: load the configuration, gather what the host and the source
//! say, step the state machine until it settles, and leave the status.

use super::probes::{
    HostToolError, WarinessError, agent_status, boot_id, enabled_updaters, node_id, pick_driver,
    users_logged_in, wariness,
};
use super::trust::document;
use super::{Options, PassMode};
use crate::agent::{Agent, AgentError, World};
use crate::config::{ConfigDirs, Settings, Source};
use crate::fleetlock::FleetLockClient;
use crate::host::driver::ProcessRunner;
use crate::host::{Tool, fcos_stream_of_refspec, repository_of, tag_of};
use crate::machine::{Event, State};
use crate::reason::{Reason, ReasonKind};
use crate::source::{GraphUnavailable, SourceGraph};
use crate::status::{AgentStatus, StateName};
use crate::store::{AgentState, StoreError};
use jiff::Timestamp;
use std::path::Path;
use std::time::Duration;

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
            let reason = Reason::new(
                ReasonKind::StateUnreadable,
                "the persistent state cannot be read; nothing is done",
            )
            .caused_by(e.kind());
            return stop_early(options, status, reason, e.to_string(), now);
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
            let reason = Reason::new(
                ReasonKind::ConfigError,
                format!("configuration error: {e}; nothing is staged or finalized"),
            )
            .caused_by(e.kind());
            return stop_early(options, status, reason, e.to_string(), now);
        }
    };
    let mut settings = settings;
    // update-now skips windows and the lock's gate, but keeps the lock
    // client: a slot held or kept must still be released at its server.
    if mode.update_now {
        settings.wariness = Some(0.0);
        settings.schedule = None;
    }
    status.strategy = Some(if mode.update_now {
        "update-now".into()
    } else {
        settings.strategy_name().into()
    });
    // What status says when the pass stops before it decides anything.
    status.state = StateName::from(&state.state);
    // A pass that fails has not set the reason: the failure is the reason.
    if let Err(stopped) = pass(options, mode, &settings, state, now, &mut status).await {
        status.reason = Reason::new(stopped.kind, format!("no action: {}", stopped.message));
        if let Some(cause) = stopped.cause {
            status.reason = status.reason.caused_by(cause);
        }
        status.last_error = Some(stopped.message);
    }
    status.reports = Some(crate::reports::ReportsStatus::read(
        &options.state_dir,
        settings.reports.is_some(),
    ));
    leave(options, status, now)
}

/// End a pass that stopped before it could decide anything: the status says
/// why, and the status, metrics and MOTD files are written as after any pass.
fn stop_early(
    options: &Options,
    mut status: AgentStatus,
    reason: Reason,
    error: String,
    now: Timestamp,
) -> AgentStatus {
    status.reason = reason;
    status.last_error = Some(error);
    leave(options, status, now)
}

/// Write the status, metrics and MOTD files a pass leaves, and return the status.
fn leave(options: &Options, mut status: AgentStatus, now: Timestamp) -> AgentStatus {
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

/// Why a pass stopped before the state machine decided: the reason's kind,
/// the error's own kind when it has one, and the error.
#[derive(Debug)]
struct Stopped {
    kind: ReasonKind,
    cause: Option<&'static str>,
    message: String,
}

/// Map an error without a kind of its own to a [`Stopped`] of `kind`.
fn stopped<E: std::fmt::Display>(kind: ReasonKind) -> impl FnOnce(E) -> Stopped {
    move |e| Stopped {
        kind,
        cause: None,
        message: e.to_string(),
    }
}

/// Map an error to a [`Stopped`] of `kind`, caused by the error's `cause` (its `kind()`).
fn stopped_by<E: std::fmt::Display>(
    kind: ReasonKind,
    cause: fn(&E) -> &'static str,
) -> impl FnOnce(E) -> Stopped {
    move |e| Stopped {
        kind,
        cause: Some(cause(&e)),
        message: e.to_string(),
    }
}

impl From<AgentError> for Stopped {
    fn from(e: AgentError) -> Stopped {
        Stopped {
            kind: e.reason_kind(),
            cause: Some(e.kind()),
            message: e.to_string(),
        }
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
    let wariness = wariness(settings, &options.root)
        .map_err(stopped_by(ReasonKind::WarinessUnknown, WarinessError::kind))?;
    status.wariness = Some(wariness);
    let (driver, host) = pick_driver(options)
        .await
        .map_err(stopped_by(ReasonKind::HostUnreadable, HostToolError::kind))?;
    status.booted = release_of(host.booted.as_ref(), None);
    // The tag is recorded once: after a digest switch bootc's spec shows the digest.
    if state.followed.is_none() && host.followed.as_ref().is_some_and(|f| !f.contains('@')) {
        state.followed = host.followed.clone();
        state
            .save(&options.state_dir)
            .map_err(stopped_by(ReasonKind::StateUnwritable, StoreError::kind))?;
    }
    let (followed, stream, source) = match &host.ostree_origin {
        // Booted from an ostree commit: the branch is followed, and the
        // graph's payloads are commit checksums.
        Some(origin) => {
            let stream = settings
                .stream
                .clone()
                .or_else(|| fcos_stream_of_refspec(origin).map(str::to_string))
                .ok_or_else(|| {
                    format!(
                        "the host boots from ostree commits on {origin}, which is not a Fedora CoreOS branch: set updates.stream"
                    )
                })
                .map_err(stopped(ReasonKind::StreamUnknown))?;
            let source = commit_source(&settings.source, origin).map_err(stopped_by(
                ReasonKind::NoFollowedImage,
                CommitSourceError::kind,
            ))?;
            (origin.clone(), stream, source)
        }
        None => {
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
                .ok_or(
                    "the followed tag is not known (the host is on a digest): set updates.stream",
                )
                .map_err(stopped(ReasonKind::StreamUnknown))?;
            (followed, stream, settings.source.clone())
        }
    };
    let oci = host.ostree_origin.is_none();
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
    let mirrors =
        cairn_oci::registries_conf::RegistriesConf::load(&options.root).map_err(stopped_by(
            ReasonKind::RegistriesConfInvalid,
            cairn_oci::registries_conf::RegistriesConfError::kind,
        ))?;
    let mut client_options = options.client.clone();
    client_options.registries_conf = Ok(mirrors.clone());
    let client = cairn_oci::RegistryClient::new(client_options).map_err(stopped_by(
        ReasonKind::SetupFailed,
        cairn_oci::OciError::kind,
    ))?;
    let super::readers::PassReaders {
        mut readers,
        status: reader_status,
    } = super::readers::start(
        settings,
        options,
        &source,
        &followed,
        client.clone(),
        &mirrors,
    )
    .await
    .map_err(stopped_by(
        ReasonKind::SetupFailed,
        cairn_oci::proxy::ProxyUnavailable::kind,
    ))?;
    status.registry_reader = Some(reader_status);
    // The trust root a Cairn document was verified with, for its halt list.
    let mut held = None;
    let fetched = match &source {
        Source::Cincinnati(url) => {
            // A host booted from an image needs the OCI graph; one booted
            // from a commit, the checksum graph (no `oci=true`).
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
            crate::follow::tag_document_in(settings, &follow, &readers)
                .await
                .map(|(document, described)| (SourceGraph::Followed(document), described))
                .map_err(GraphUnavailable::from)
        }
        _ => match super::roots::start(settings, &options.root, &mut state) {
            Ok(mut started) => {
                status.trust_root = started.status();
                let read = document(
                    settings,
                    &source,
                    oci,
                    &followed,
                    &stream,
                    &mut state,
                    &readers,
                    &mirrors,
                    now,
                    &options.state_dir.join("fcos"),
                    &mut started,
                    &mut status.trust_root,
                )
                .await
                .map(|(document, described)| (SourceGraph::Document(document), described));
                held = Some(started);
                read
            }
            Err(e) => Err(e),
        },
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
    // A verified document that turns halt lists on: the list, verified too.
    let halts = match &fetched {
        Ok((SourceGraph::Document(document), _)) => {
            let unsigned = super::roots::Held {
                root: None,
                origin: "configured",
                note: None,
                unasked: std::collections::BTreeMap::new(),
            };
            super::halts::halt_list(
                settings,
                held.as_ref().unwrap_or(&unsigned),
                document,
                &stream,
                &mut state,
                &readers,
                &mirrors,
                now,
            )
            .await
        }
        _ => None,
    };
    super::readers::finish(&mut readers).await;
    let halted = match &halts {
        Some(halts) => {
            status.halt_list = Some(halts.status.clone());
            if let Some(refused) = &halts.status.refused {
                status.last_error = Some(refused.message.clone());
            }
            halts.halted.clone()
        }
        None => Ok(Vec::new()),
    };
    // The trust state is kept as soon as a document is accepted.
    state
        .save(&options.state_dir)
        .map_err(stopped_by(ReasonKind::StateUnwritable, StoreError::kind))?;
    status.source = Some(match &fetched {
        Ok((_, described)) => described.clone(),
        Err(_) => source.to_string(),
    });
    // An unreachable or untrusted source is an error operators must see,
    // and it keeps `last_success` (and its metric) from advancing.
    if let Err(e) = &fetched {
        status.last_error = Some(e.to_string());
    }
    let halted_now = halted.as_ref().map(Vec::as_slice).unwrap_or_default();
    let lock = match &settings.fleet_lock {
        Some(lock) => Some(
            FleetLockClient::new(
                lock.base_url.clone(),
                &node_id(&options.root)
                    .map_err(stopped_by(ReasonKind::WarinessUnknown, WarinessError::kind))?,
                &lock.group,
                Duration::from_secs(30),
            )
            .map_err(stopped_by(
                ReasonKind::SetupFailed,
                crate::fleetlock::LockError::kind,
            ))?,
        ),
        None => None,
    };
    // Only image staging names a repository; a commit is staged by checksum.
    let repository = repository_of(&followed).to_string();
    state
        .save(&options.state_dir)
        .map_err(stopped_by(ReasonKind::StateUnwritable, StoreError::kind))?;
    let mut agent = Agent::new(
        settings.clone(),
        driver,
        lock,
        options.state_dir.clone(),
        wariness,
        &options.arch,
        &repository,
    )
    .map_err(Stopped::from)?
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
    agent = agent.with_halts(halted.clone());
    if mode.update_now {
        agent = agent
            .without_lock_gate()
            .staging_for_operator(if mode.cross_barrier {
                "cairn update-now --cross-barrier"
            } else {
                "cairn update-now"
            });
    }
    if let Some(reports) = &settings.reports
        && let Some(reporter) = crate::reports::Reporter::new(
            &options.state_dir,
            reports,
            &stream,
            options.report_backoff(),
        )
    {
        agent = agent.with_reports(reporter);
    }
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
                halted: halted_now,
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
    let mut report = agent.recover(now).await.map_err(Stopped::from)?;
    // Step until the state stops changing (a pass stages, or gates, or waits).
    for _ in 0..6 {
        let before = agent.state().clone();
        report = match agent.tick(&world).await {
            Ok(report) => report,
            Err(e @ (AgentError::Host(_) | AgentError::Refused { .. })) => {
                return Err(Stopped {
                    message: format!("host: {e}"),
                    ..Stopped::from(e)
                });
            }
            Err(e) => return Err(Stopped::from(e)),
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
    let kept = agent.persisted.slot_kept.clone();
    status.fleet_lock_slot = agent
        .persisted
        .lock_held
        .then(|| crate::status::FleetLockSlot {
            group: settings
                .fleet_lock
                .as_ref()
                .map(|lock| lock.group.clone())
                .or_else(|| kept.as_ref().and_then(|k| k.group.clone())),
            kept_after_failure: kept,
        });
    if let Ok(host) = agent_status(options).await {
        let graph = fetched.as_ref().ok().map(|(graph, _)| graph);
        status.staged = release_of(host.staged.as_ref(), graph);
    }
    Ok(())
}

/// The source a host booted from ostree commits on `origin` reads. With
/// `updates.source` unset, a Fedora CoreOS branch reads Fedora's own files
/// (`fcos`), in the checksum scheme; any other branch must be told. The
/// `tag` source follows an image's tag, which such a host has not.
fn commit_source(configured: &Source, origin: &str) -> Result<Source, CommitSourceError> {
    match configured {
        Source::Registry(None) if fcos_stream_of_refspec(origin).is_some() => {
            Ok(Source::Fcos { base_url: None })
        }
        Source::Registry(None) => Err(CommitSourceError::NotFedoraBranch {
            origin: origin.to_string(),
        }),
        Source::Tag => Err(CommitSourceError::NoTag {
            origin: origin.to_string(),
        }),
        other => Ok(other.clone()),
    }
}

/// Why a host booted from ostree commits has no graph to follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CommitSourceError {
    /// No `updates.source`, on a branch that is not Fedora CoreOS's.
    #[error(
        "the host boots from ostree commits on {origin}, not from an image, and that is not a Fedora CoreOS branch: set updates.source"
    )]
    NotFedoraBranch {
        /// The booted origin.
        origin: String,
    },
    /// `updates.source = "tag"`, which needs an image's tag.
    #[error(
        "updates.source = \"tag\" follows an image's tag, and the host boots from ostree commits on {origin}: set another updates.source"
    )]
    NoTag {
        /// The booted origin.
        origin: String,
    },
}

impl CommitSourceError {
    /// A short, fixed label (the status reason's cause).
    fn kind(&self) -> &'static str {
        match self {
            CommitSourceError::NotFedoraBranch { .. } => "not_fedora_branch",
            CommitSourceError::NoTag { .. } => "tag_source_without_tag",
        }
    }
}

/// The age index of the release a digest (or alias) belongs to.
fn age_in(graph: &SourceGraph, digest: Option<&str>) -> Option<u64> {
    graph.release_of_digest(digest?).map(|(_, age)| age)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FCOS: &str = "fedora:fedora/x86_64/coreos/stable";

    #[test]
    fn a_commit_booted_fedora_coreos_host_reads_fedoras_files_by_default() {
        assert_eq!(
            commit_source(&Source::Registry(None), FCOS),
            Ok(Source::Fcos { base_url: None })
        );
        // What is configured is read, in the checksum scheme.
        for configured in [
            Source::Cincinnati("https://updates.coreos.fedoraproject.org".into()),
            Source::Fcos {
                base_url: Some("https://mirror.example.org".into()),
            },
            Source::Server("https://cairn.example.org".into()),
        ] {
            assert_eq!(commit_source(&configured, FCOS), Ok(configured.clone()));
        }
        let other = commit_source(&Source::Registry(None), "acme:acme/x86_64/os/stable")
            .expect_err("not Fedora's branch");
        assert_eq!(other.kind(), "not_fedora_branch");
        let other = other.to_string();
        assert!(other.contains("acme:acme/x86_64/os/stable"), "{other}");
        assert!(other.contains("set updates.source"), "{other}");
        let tag = commit_source(&Source::Tag, FCOS).expect_err("no tag to follow");
        assert_eq!(tag.kind(), "tag_source_without_tag");
        assert!(tag.to_string().contains(FCOS), "{tag}");
    }
}
