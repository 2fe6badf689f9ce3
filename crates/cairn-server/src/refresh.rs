//! The refresh loop: one task per stream, keeping the last good graph through
//! any fault and logging once per change of state, not once per attempt.
//!
//! Refreshes run on a runtime of their own ([`Refreshers`]), never on the
//! workers that answer requests: reading a 16 MiB input, hashing it, checking
//! its signature and building eight graphs from it takes long enough to stall
//! every request queued behind it. The refresh threads also run at a lower
//! priority, so that on a busy machine answers come first.

use crate::config::{SourceSpec, StreamConfig};
use crate::metrics::{RefreshLabels, StreamLabels, record_graph};
use crate::snapshot::Snapshot;
use crate::source::{Refresh, SourceError, SourceState, refresh};
use crate::state::{AppState, Health};
use cairn_oci::RegistryClient;
use cairn_oci::document::configured_role;
use cairn_oci::trust::{Role, RoleKeys, TrustedRoot};
use std::time::Duration;

/// One stream's source, with what it remembers between refreshes.
#[derive(Debug)]
pub struct StreamSource {
    /// Stream name.
    pub stream: String,
    spec: SourceSpec,
    state: SourceState,
    client: RegistryClient,
    timeout: Duration,
    /// The document's keys, which halt lists may also be signed with.
    graph_keys: Vec<cairn_oci::signing::VerifyingKey>,
}

impl StreamSource {
    /// A source for a configured stream.
    pub fn new(config: &StreamConfig, client: RegistryClient, timeout: Duration) -> Self {
        let graph_keys = match &config.source {
            SourceSpec::Document { keys, .. } => keys.clone(),
            _ => Vec::new(),
        };
        StreamSource {
            graph_keys,
            stream: config.name.clone(),
            spec: config.source.clone(),
            state: SourceState::default(),
            client,
            timeout,
        }
    }

    /// Refresh once and apply the outcome to the served state: the source,
    /// then the halt list of the document served (if it names one).
    pub async fn refresh_once(&mut self, app: &AppState) -> Result<bool, SourceError> {
        let updated = self.refresh_source(app).await;
        app.set_root_version(&self.stream, self.state.root().map(|r| r.version()));
        self.refresh_halts(app).await;
        updated
    }

    /// The roles a halt list is judged by: those of the stream's trust root,
    /// or (a stream with no document keys) the `[halts] halt_keys` alone.
    fn halt_roles(&self, app: &AppState) -> (Option<RoleKeys>, Option<RoleKeys>) {
        match self.state.root() {
            Some(root) => {
                let graph = root.role(Role::Graph);
                let halt = root.role(Role::Halt);
                let empty_v0 = |role: &RoleKeys| root.version() == 0 && role.is_empty();
                (
                    (!empty_v0(&graph)).then_some(graph),
                    (!empty_v0(&halt)).then_some(halt),
                )
            }
            None => (
                None,
                configured_role(Role::Halt, &app.shared.halts.halt_keys),
            ),
        }
    }

    /// The root that judges the list the guard builds on, with its roles'
    /// thresholds, and whose version it signs under: the stream's root of
    /// version 1 or more (never a key it dropped, the guard's own included);
    /// else version 0 from the configured document keys and the guard's key
    /// (graph) and the halt keys (halt).
    fn guard_trust(&self, app: &AppState) -> Option<TrustedRoot> {
        if let Some(root) = self.state.root().filter(|root| root.version() > 0) {
            return Some(root.clone());
        }
        let halts = &app.shared.halts;
        let mut graph = self.graph_keys.clone();
        graph.extend(
            halts
                .guard
                .as_ref()
                .map(|g| g.config.halt_key.verifying_key()),
        );
        TrustedRoot::from_config(&graph, &halts.halt_keys)
    }

    /// Read the served document's halt list. A failure becomes the
    /// stream's source error unless the source failed itself; `/readyz`
    /// stays as it is.
    async fn refresh_halts(&mut self, app: &AppState) {
        let Some(snapshot) = app.snapshot(&self.stream) else {
            return;
        };
        let halts = &app.shared.halts;
        let settings = snapshot.halt_settings();
        let cleared = snapshot
            .source_document()
            .map(cairn_graph::GraphDocument::cleared_halts)
            .unwrap_or_default();
        let before = halts.view(&self.stream).failing.map(|(kind, _)| kind);
        let now = (app.shared.clock)();
        let (graph, halt) = self.halt_roles(app);
        let trust = crate::halts::HaltRoles {
            graph: graph.as_ref(),
            halt: halt.as_ref(),
            recheck: self.state.halts_recheck(),
        };
        let guard_trust = self.guard_trust(app);
        let read = halts.refresh(
            &self.stream,
            settings,
            cleared,
            guard_trust.as_ref(),
            &trust,
            &self.client,
            now,
        );
        let error = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(())) => {
                self.state.halts_checked();
                if let Some(kind) = before {
                    tracing::info!(stream = %self.stream, previous_error = kind, "halt list recovered");
                }
                return;
            }
            Ok(Err(error)) => error,
            Err(_) => crate::halts::HaltsError {
                kind: "halts_unreachable",
                message: format!("reading the halt list took longer than {:?}", self.timeout),
            },
        };
        if before != Some(error.kind) {
            tracing::warn!(stream = %self.stream, kind = error.kind, error = %error.message, "halt list refused or unreadable; edges are served only while a verified, unexpired list is held");
        }
        let health = app.health(&self.stream);
        if health.failing.is_none() {
            app.set_health(
                &self.stream,
                Health {
                    last_success: health.last_success,
                    failing: Some((error.kind, error.message.clone())),
                },
            );
        }
        app.shared
            .metrics
            .refreshes
            .get_or_create(&RefreshLabels {
                stream: self.stream.clone(),
                result: error.kind,
            })
            .inc();
    }

    async fn refresh_source(&mut self, app: &AppState) -> Result<bool, SourceError> {
        let now = (app.shared.clock)();
        let served_from = self.state.checkpoint();
        let halt_keys = &app.shared.halts.halt_keys;
        let attempt = async {
            self.state
                .start_root(&self.spec, &self.stream, halt_keys)
                .await?;
            refresh(&self.spec, &self.stream, &mut self.state, &self.client, now).await
        };
        let mut outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SourceError::new(
                "timeout",
                format!("refresh took longer than {:?}", self.timeout),
            )),
        };
        // A source that suddenly lacks an architecture is far more likely broken
        // than retired: hosts of that architecture would lose their graph.
        if let (Ok(Refresh::Updated(snapshot)), Some(current)) =
            (&outcome, app.snapshot(&self.stream))
            && let Some(lost) = current.arches.difference(&snapshot.arches).next()
        {
            // Not installed, so not what the next refresh compares against.
            self.state.rollback(served_from);
            outcome = Err(SourceError::new(
                "lost_architecture",
                format!(
                    "the new graph has no {lost} releases; keeping the last good graph (restart the server to accept the change)"
                ),
            ));
        }
        let metrics = &app.shared.metrics;
        let stream = StreamLabels {
            stream: self.stream.clone(),
        };
        match outcome {
            Ok(refreshed) => {
                let updated = matches!(refreshed, Refresh::Updated(_));
                if let Refresh::Updated(snapshot) = refreshed {
                    let current = app.snapshot(&self.stream);
                    log_update(&self.stream, current.as_deref(), &snapshot);
                    // The graphs clients asked of the last snapshot are built
                    // here, on the refresh runtime, so no request waits for them.
                    if let Some(current) = current {
                        snapshot.build_like(&current);
                    }
                    for (arch, oci, entry) in snapshot.graphs() {
                        record_graph(metrics, &self.stream, arch, oci, entry.nodes, entry.edges);
                    }
                    // Halts turned on apply before the document is served:
                    // after a restart, the list restored from the store
                    // withholds its edges from the first answer on.
                    if let Some(settings) = snapshot.halt_settings() {
                        let cleared = snapshot
                            .source_document()
                            .map(cairn_graph::GraphDocument::cleared_halts)
                            .unwrap_or_default();
                        app.shared.halts.configure(
                            &self.stream,
                            Some(settings),
                            cleared,
                            self.guard_trust(app).as_ref(),
                        );
                    }
                    if let Some(served) = app.install(&self.stream, snapshot) {
                        app.keep_steps(&self.stream, &served).await;
                    }
                }
                let previous = app.set_health(
                    &self.stream,
                    Health {
                        last_success: Some(now),
                        failing: None,
                    },
                );
                if let Some((kind, _)) = previous.failing {
                    tracing::info!(stream = %self.stream, previous_error = kind, "source recovered");
                }
                let result = if updated { "updated" } else { "unchanged" };
                metrics
                    .refreshes
                    .get_or_create(&RefreshLabels {
                        stream: self.stream.clone(),
                        result,
                    })
                    .inc();
                metrics
                    .last_success
                    .get_or_create(&stream)
                    .set(now.as_millisecond() as f64 / 1000.0);
                metrics.source_up.get_or_create(&stream).set(1);
                Ok(updated)
            }
            Err(error) => {
                if error.withdraw && app.withdraw(&self.stream) {
                    tracing::error!(stream = %self.stream, kind = error.kind, error = %error.message, "stopped serving the stream's graph");
                }
                let previous = app.set_health(
                    &self.stream,
                    Health {
                        last_success: app.health(&self.stream).last_success,
                        failing: Some((error.kind, error.message.clone())),
                    },
                );
                // Log on a change of state only: a source down for a day logs once.
                if previous.failing.as_ref().map(|(kind, _)| *kind) != Some(error.kind) {
                    if app.snapshot(&self.stream).is_some() {
                        tracing::warn!(stream = %self.stream, kind = error.kind, error = %error.message, "source refresh failed; serving the last good graph");
                    } else {
                        tracing::warn!(stream = %self.stream, kind = error.kind, error = %error.message, "source refresh failed and no refresh has succeeded yet: no graph to serve, so this stream's requests get 503 until one does");
                    }
                }
                metrics
                    .refreshes
                    .get_or_create(&RefreshLabels {
                        stream: self.stream.clone(),
                        result: error.kind,
                    })
                    .inc();
                metrics.source_up.get_or_create(&stream).set(0);
                Err(error)
            }
        }
    }

    /// Refresh for ever, every `interval`. A panic in one refresh is counted
    /// and logged, and the loop goes on: a bug must not freeze a stream for good.
    pub async fn run(mut self, app: AppState, interval: Duration) {
        use futures::FutureExt;
        loop {
            let attempt = std::panic::AssertUnwindSafe(self.refresh_once(&app)).catch_unwind();
            if attempt.await.is_err() {
                tracing::error!(stream = %self.stream, "a refresh panicked; retrying at the next interval");
                app.shared
                    .metrics
                    .refreshes
                    .get_or_create(&RefreshLabels {
                        stream: self.stream.clone(),
                        result: "panic",
                    })
                    .inc();
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// One line per new graph: a refresh that finds nothing new logs nothing.
fn log_update(stream: &str, current: Option<&Snapshot>, new: &Snapshot) {
    let arches = new.arches.iter().cloned().collect::<Vec<_>>().join(",");
    let previous = current.and_then(|c| c.sequence);
    match (new.sequence, previous) {
        (Some(sequence), Some(previous)) => {
            tracing::info!(stream, sequence, previous, %arches, "serving a new document sequence")
        }
        (Some(sequence), None) => {
            tracing::info!(stream, sequence, %arches, "serving the document's sequence")
        }
        (None, _) => tracing::info!(stream, %arches, "serving new release metadata"),
    }
}

/// The runtime that runs every stream's refresh loop, apart from the request
/// workers. Dropping it stops the refreshes.
#[derive(Debug)]
pub struct Refreshers {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Refreshers {
    /// Start one refresh loop per source on a runtime of its own, with one
    /// worker per stream so a slow source does not hold back the others.
    pub fn start(
        sources: Vec<StreamSource>,
        app: &AppState,
        interval: Duration,
    ) -> std::io::Result<Refreshers> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(sources.len().clamp(1, MAX_REFRESH_WORKERS))
            .max_blocking_threads(MAX_REFRESH_WORKERS)
            .thread_name("cairn-refresh")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        for source in sources {
            runtime.spawn(source.run(app.clone(), interval));
        }
        Ok(Refreshers {
            runtime: Some(runtime),
        })
    }
}

impl Drop for Refreshers {
    fn drop(&mut self) {
        // A plain drop would block, which panics inside an async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Refresh threads at most: sources are few, and their work is mostly waiting.
const MAX_REFRESH_WORKERS: usize = 4;

/// The nice value of refresh threads. When the CPU is short, a refresh takes
/// longer rather than answers: a graph a few seconds late harms nobody.
const REFRESH_NICE: i32 = 10;

/// Run the calling thread at [`REFRESH_NICE`]; on Linux, a thread id given to
/// `setpriority` sets that thread's nice value alone.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), REFRESH_NICE)
    {
        tracing::warn!(%error, "could not lower the priority of a refresh thread");
    }
}
