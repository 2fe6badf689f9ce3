//! The dashboard's view model, built from the server's state at one instant.
//!
//! Everything here reads the state as handlers do and never writes it,
//! except that a stream page builds the graphs it draws (the same lazy build
//! `/v1/graph` triggers) and the lock view sweeps expired leases first, as
//! `GET /v1/x-cairn/locks` does. The async entry points do the CPU work on
//! the blocking pool; the `_now` functions are the same work, synchronous,
//! for callers already off the request workers (and the benchmark).

use super::model::*;
use crate::error::ApiError;
use crate::halts::{HaltView, Withheld};
use crate::snapshot::{GraphEntry, Snapshot};
use crate::state::AppState;
use crate::store::halts::HaltStore;
use axum::http::StatusCode;
use cairn_graph::document::Reason;
use cairn_graph::halts::{HaltEntry, TrippedBy};
use cairn_graph::{GraphDocument, Node, Query, Release, Rollout, UpdateGraph};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Plain releases in a row that collapse into one graph item.
pub const MIN_RUN: usize = 4;
/// Samples of each rollout's timeline.
pub const TIMELINE_SAMPLES: usize = 48;
/// Longest query string accepted.
pub const MAX_QUERY: usize = 4096;

/// What a stream page asks for (`?arch=&scheme=&expand=&booted=&wariness=`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamQuery {
    /// The architecture to show; default x86_64 when present, else the first.
    pub arch: Option<String>,
    /// `oci` or `checksum`; default the scheme with more releases (ties: oci).
    pub scheme: Option<String>,
    /// Runs expanded, by their first index, or every run.
    pub expand: Expand,
    /// The booted release of the "what would this host get" form.
    pub booted: Option<String>,
    /// The wariness of that form.
    pub wariness: Option<f64>,
}

/// Which collapsed runs are drawn open.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Expand {
    /// None.
    #[default]
    None,
    /// The runs starting at these indexes.
    Runs(BTreeSet<usize>),
    /// Every run (`expand=all`).
    All,
}

impl Expand {
    fn opens(&self, first: usize) -> bool {
        match self {
            Expand::None => false,
            Expand::Runs(firsts) => firsts.contains(&first),
            Expand::All => true,
        }
    }
}

fn invalid(parameter: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_params", format!("{parameter}: {why}"))
}

/// A wariness from a query: a number in [0, 1].
pub fn parse_wariness(text: &str) -> Result<f64, ApiError> {
    match text.trim().parse::<f64>() {
        Ok(w) if (0.0..=1.0).contains(&w) => Ok(w),
        _ => Err(invalid("wariness", "must be a number between 0 and 1")),
    }
}

impl StreamQuery {
    /// Parse a query string; unknown parameters (`notice`, ...) are ignored.
    pub fn parse(raw: Option<&str>) -> Result<StreamQuery, ApiError> {
        let raw = raw.unwrap_or("");
        if raw.len() > MAX_QUERY {
            return Err(invalid("query", format!("longer than {MAX_QUERY} bytes")));
        }
        let mut query = StreamQuery::default();
        let nonempty = |value: String| (!value.trim().is_empty()).then(|| value.trim().to_string());
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "arch" => query.arch = nonempty(value),
                "scheme" => query.scheme = nonempty(value),
                "booted" => query.booted = nonempty(value),
                "wariness" if !value.trim().is_empty() => {
                    query.wariness = Some(parse_wariness(&value)?)
                }
                "expand" => query.expand = parse_expand(&value)?,
                _ => {}
            }
        }
        Ok(query)
    }
}

fn parse_expand(text: &str) -> Result<Expand, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Expand::None);
    }
    if text == "all" {
        return Ok(Expand::All);
    }
    text.split(',')
        .map(|part| part.trim().parse::<usize>())
        .collect::<Result<BTreeSet<usize>, _>>()
        .map(Expand::Runs)
        .map_err(|_| {
            invalid(
                "expand",
                "must be `all` or comma-separated release indexes (the first of each run)",
            )
        })
}

fn time(second: i64) -> String {
    Timestamp::from_second(second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| second.to_string())
}

fn unknown_stream(stream: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "unknown_stream",
        value: format!("unknown stream {stream:?}"),
    }
}

fn internal(what: &str) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "internal_error",
        value: format!("{what} failed"),
    }
}

// ---------------------------------------------------------------------------
// Pieces shared by the views.

/// A stream's source health.
pub fn source_health(state: &AppState, stream: &str, snapshot: Option<&Snapshot>) -> SourceHealth {
    let health = state.health(stream);
    SourceHealth {
        up: snapshot.is_some() && health.failing.is_none(),
        last_success: health.last_success.map(|t| t.to_string()),
        error: health.failing.map(|(kind, message)| SourceError {
            kind: kind.to_string(),
            message,
        }),
        sequence: snapshot.and_then(|s| s.sequence),
        expires: snapshot
            .and_then(|s| s.source_document())
            .map(|d| d.expires.to_string()),
        root_version: state.root_version(stream),
    }
}

/// The rollout of a release while it is not yet offered to every host.
pub fn rollout_progress(version: &str, rollout: &Rollout, now: i64) -> Option<RolloutProgress> {
    let share = rollout.progress_at(now);
    (share < 1.0).then(|| RolloutProgress {
        version: version.to_string(),
        share,
        start: time(rollout.start()),
        full_at: rollout.end().map(time),
    })
}

/// A halt's trigger, for people.
pub fn describe_trigger(tripped_by: &TrippedBy) -> String {
    match tripped_by {
        TrippedBy::Guard {
            failures,
            rebooting,
        } => format!("guard: {failures} failures of {rebooting} reboots"),
        TrippedBy::Alert { name } => format!("alert {name}"),
        TrippedBy::Person { who } => format!("person {who}"),
    }
}

fn halt_mark(entry: &HaltEntry, location: Option<&str>) -> HaltMark {
    let list = location.map_or(String::new(), |l| format!(" --halt-list {l}"));
    HaltMark {
        version: entry.version.clone(),
        id: entry.id.clone(),
        reason: entry.reason.clone(),
        tripped_by: describe_trigger(&entry.tripped_by),
        time: entry.time.to_string(),
        resume_command: format!(
            "cairn policy halt clear {}{list}, then cairn publish as usual (with the graph key)",
            entry.version
        ),
    }
}

/// The halts in effect on a stream, oldest first.
fn effective_halts(view: &HaltView) -> Vec<HaltMark> {
    let location = view.settings.as_ref().map(|s| s.location.as_str());
    match &view.held {
        Some(held) if view.on => held
            .list
            .effective(&view.cleared)
            .map(|entry| halt_mark(entry, location))
            .collect(),
        _ => Vec::new(),
    }
}

/// The halt in effect on a release, by the digests it is known by.
fn halt_of(view: &HaltView, release_ids: &[&str]) -> Option<HaltMark> {
    if !view.on || !release_ids.iter().any(|id| view.halted.contains(*id)) {
        return None;
    }
    let held = view.held.as_ref()?;
    let location = view.settings.as_ref().map(|s| s.location.as_str());
    held.list
        .effective(&view.cleared)
        .find(|entry| {
            entry
                .digests
                .iter()
                .any(|d| release_ids.contains(&d.as_str()))
        })
        .map(|entry| halt_mark(entry, location))
}

/// Every digest and commit a document release is known by.
fn release_ids(release: &Release) -> Vec<&str> {
    release
        .architectures
        .values()
        .flat_map(|entry| {
            entry
                .digest
                .iter()
                .chain(entry.ostree.iter())
                .chain(entry.aliases.iter())
                .map(String::as_str)
        })
        .collect()
}

fn halt_state(state: &AppState, view: &HaltView, now: Timestamp) -> HaltState {
    let error = match (&view.failing, view.withheld(now)) {
        (Some((kind, message)), _) => Some(format!("{kind}: {message}")),
        (None, Withheld::Everything) => {
            Some("no verified, unexpired halt list is held: no host is offered an update".into())
        }
        _ => None,
    };
    HaltState {
        on: view.on,
        location: view.settings.as_ref().map(|s| s.location.clone()),
        sequence: view.held.as_ref().map(|h| h.list.sequence),
        expires: view.held.as_ref().map(|h| h.list.expires.to_string()),
        error: error.filter(|_| view.on),
        halted: effective_halts(view),
        // A halt needs the guard's key and a document that turns halts on
        // (a Fedora-metadata stream has no list to add to).
        can_publish: state.shared.halts.guard.is_some() && view.on,
    }
}

/// The architecture to show: the one asked for, else x86_64, else the first.
fn choose_arch(snapshot: &Snapshot, asked: Option<&str>) -> Result<String, ApiError> {
    match asked {
        Some(arch) if snapshot.arches.contains(arch) => Ok(arch.to_string()),
        Some(arch) => Err(ApiError::bad_request(
            "unknown_arch",
            format!(
                "arch: this stream has no architecture {arch:?} (it has: {})",
                snapshot
                    .arches
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        None if snapshot.arches.contains("x86_64") => Ok("x86_64".into()),
        None => snapshot.arches.iter().next().cloned().ok_or_else(|| {
            ApiError::bad_request("unknown_arch", "arch: this stream has no architecture")
        }),
    }
}

fn parse_scheme(asked: Option<&str>) -> Result<Option<bool>, ApiError> {
    match asked {
        None => Ok(None),
        Some("oci") => Ok(Some(true)),
        Some("checksum") => Ok(Some(false)),
        Some(_) => Err(invalid("scheme", "must be `oci` or `checksum`")),
    }
}

/// The scheme to show: the one asked for, else the one whose graph has
/// more releases (ties: oci). Builds both graphs of `arch`.
fn choose_scheme(snapshot: &Snapshot, arch: &str, asked: Option<bool>) -> bool {
    asked.unwrap_or_else(|| {
        let size = |oci| {
            snapshot
                .view_graph(arch, oci)
                .map_or(0, |entry| entry.nodes)
        };
        size(true) >= size(false)
    })
}

fn scheme_name(oci: bool) -> &'static str {
    if oci { "oci" } else { "checksum" }
}

/// Whether every graph a page of `arch` needs is built already: both
/// schemes of `arch` (to choose one), and the scheme shown of every
/// architecture (for the arcs and the releases' architectures).
fn page_graphs_built(snapshot: &Snapshot, arch: &str, scheme: Option<bool>) -> bool {
    let built = |arch: &str, oci| matches!(snapshot.view_built(arch, oci), Some(Some(_)));
    if !(built(arch, true) && built(arch, false)) {
        return false;
    }
    let oci = choose_scheme(snapshot, arch, scheme);
    snapshot.arches.iter().all(|a| built(a, oci))
}

/// Run `work` on the blocking pool when `cheap` is false, else here.
async fn maybe_blocking<T: Send + 'static>(
    cheap: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if cheap {
        Ok(work())
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| internal("building the graph"))
    }
}

// ---------------------------------------------------------------------------
// The overview.

/// `GET /api/overview`: every stream, and the halted lock groups.
pub async fn overview(state: &AppState, now: Timestamp) -> Overview {
    let mut streams = Vec::new();
    for name in state.shared.streams.keys() {
        let snapshot = state.snapshot(name);
        let cheap = snapshot.as_ref().is_none_or(|s| {
            choose_arch(s, None).is_ok_and(|arch| {
                matches!(s.view_built(&arch, true), Some(Some(_)))
                    && matches!(s.view_built(&arch, false), Some(Some(_)))
            })
        });
        let (task_state, task_name) = (state.clone(), name.clone());
        let summary = maybe_blocking(cheap, move || {
            stream_summary(&task_state, &task_name, snapshot.as_deref(), now)
        })
        .await;
        // A failed summary still lists the stream, as down: never left out.
        streams.push(summary.unwrap_or_else(|_| StreamSummary {
            name: name.clone(),
            health: SourceHealth {
                up: false,
                last_success: None,
                error: Some(SourceError {
                    kind: "internal_error".into(),
                    message: "summarising the stream failed; the server's log says why".into(),
                }),
                sequence: None,
                expires: None,
                root_version: None,
            },
            newest: None,
            releases: 0,
            rollouts: Vec::new(),
            halted: Vec::new(),
        }));
    }
    let (halted_lock_groups, fleet_lock_error) = match &state.shared.fleet_lock {
        None => (Vec::new(), None),
        Some(_) => match locks(state, now, &Viewer::default()).await {
            Ok(locks) => (
                locks
                    .groups
                    .into_iter()
                    .filter(|group| group.halt.is_some())
                    .collect(),
                None,
            ),
            Err(error) => (Vec::new(), Some(error.value)),
        },
    };
    Overview {
        now: now.to_string(),
        streams,
        halted_lock_groups,
        fleet_lock: state.shared.fleet_lock.is_some(),
        fleet_lock_error,
    }
}

/// One stream on the overview (builds the default graphs if needed).
pub fn stream_summary(
    state: &AppState,
    name: &str,
    snapshot: Option<&Snapshot>,
    now: Timestamp,
) -> StreamSummary {
    let health = source_health(state, name, snapshot);
    let view = state.shared.halts.view(name);
    let halted = effective_halts(&view);
    let graph = snapshot.and_then(|s| {
        let arch = choose_arch(s, None).ok()?;
        let oci = choose_scheme(s, &arch, None);
        s.view_graph(&arch, oci).cloned()
    });
    let nodes = graph.as_ref().map_or(&[][..], |g| g.graph().nodes());
    StreamSummary {
        name: name.to_string(),
        health,
        newest: nodes.last().map(|n| ReleaseRef {
            version: n.version.clone(),
            age_index: n.age_index,
        }),
        releases: nodes.len(),
        rollouts: nodes
            .iter()
            .filter_map(|n| rollout_progress(&n.version, n.rollout.as_ref()?, now.as_second()))
            .collect(),
        halted,
    }
}

// ---------------------------------------------------------------------------
// The stream page.

/// `GET /api/streams/<stream>`: builds the graphs it needs on the blocking
/// pool when they are not built yet, and reads the reports.
pub async fn stream_page(
    state: &AppState,
    stream: &str,
    query: &StreamQuery,
    now: Timestamp,
) -> Result<StreamPage, ApiError> {
    if !state.shared.streams.contains_key(stream) {
        return Err(unknown_stream(stream));
    }
    let outcomes = outcomes(state, stream, now).await;
    let cheap = match state.snapshot(stream) {
        None => true,
        Some(snapshot) => {
            let arch = choose_arch(&snapshot, query.arch.as_deref())?;
            let scheme = parse_scheme(query.scheme.as_deref())?;
            page_graphs_built(&snapshot, &arch, scheme)
        }
    };
    let (state, stream, query) = (state.clone(), stream.to_string(), query.clone());
    maybe_blocking(cheap, move || {
        stream_page_now(&state, &stream, &query, now, outcomes)
    })
    .await?
}

/// [`stream_page`] here and now, with the outcomes given: builds missing
/// graphs on this thread.
pub fn stream_page_now(
    state: &AppState,
    stream: &str,
    query: &StreamQuery,
    now: Timestamp,
    outcomes: Option<Outcomes>,
) -> Result<StreamPage, ApiError> {
    if !state.shared.streams.contains_key(stream) {
        return Err(unknown_stream(stream));
    }
    let snapshot = state.snapshot(stream);
    let view = state.shared.halts.view(stream);
    let health = source_health(state, stream, snapshot.as_deref());
    let halts = halt_state(state, &view, now);
    let Some(snapshot) = snapshot else {
        // No graph yet: the page says why (the source's error).
        parse_scheme(query.scheme.as_deref())?;
        return Ok(StreamPage {
            now: now.to_string(),
            name: stream.to_string(),
            health,
            arch: query.arch.clone().unwrap_or_default(),
            arches: Vec::new(),
            scheme: query.scheme.clone().unwrap_or_else(|| "oci".into()),
            schemes: Vec::new(),
            base: None,
            releases: Vec::new(),
            graph: GraphView {
                items: Vec::new(),
                arcs: Vec::new(),
            },
            timeline: Vec::new(),
            outcomes,
            halts,
        });
    };
    let arch = choose_arch(&snapshot, query.arch.as_deref())?;
    let oci = choose_scheme(&snapshot, &arch, parse_scheme(query.scheme.as_deref())?);
    let schemes: Vec<String> = [true, false]
        .into_iter()
        .filter(|&o| snapshot.view_graph(&arch, o).is_some_and(|e| e.nodes > 0))
        .map(|o| scheme_name(o).to_string())
        .collect();
    // Every architecture's graph of this scheme: for the release rows'
    // architectures and the arcs merged over architectures.
    let graphs: Vec<(String, Arc<GraphEntry>)> = snapshot
        .arches
        .iter()
        .filter_map(|a| Some((a.clone(), snapshot.view_graph(a, oci)?.clone())))
        .collect();
    let graph = snapshot
        .view_graph(&arch, oci)
        .cloned()
        .ok_or_else(|| internal("finding the graph"))?;
    let document = snapshot.source_document();
    let releases = release_rows(graph.graph(), &graphs, document, &view, now);
    let booted_at = query
        .booted
        .as_deref()
        .and_then(|b| find_release(graph.graph(), b));
    let arcs = merged_arcs(graph.graph(), &graphs);
    let items = layout(&releases, &arcs, booted_at, &query.expand);
    let timeline = timeline(graph.graph(), now);
    Ok(StreamPage {
        now: now.to_string(),
        name: stream.to_string(),
        health,
        arch,
        arches: snapshot.arches.iter().cloned().collect(),
        scheme: scheme_name(oci).to_string(),
        schemes,
        base: document.and_then(base_info),
        releases,
        graph: GraphView { items, arcs },
        timeline,
        outcomes,
        halts,
    })
}

fn base_info(document: &GraphDocument) -> Option<BaseInfo> {
    let base = document.base.as_ref()?;
    Some(BaseInfo {
        repository: base.repository.clone(),
        source: base.source.clone(),
        barriers: base
            .barriers
            .iter()
            .map(|barrier| BaseBarrierRow {
                version: barrier.version.clone(),
                reason: barrier.reason.clone(),
                link: first_link(&barrier.reason),
                built_on: document
                    .releases
                    .iter()
                    .filter(|r| {
                        r.base.as_ref().and_then(|b| b.age_index) == Some(barrier.age_index)
                    })
                    .map(|r| r.version.clone())
                    .collect(),
            })
            .collect(),
    })
}

/// The first `http://` or `https://` link in a text.
pub fn first_link(text: &str) -> Option<String> {
    text.split_whitespace()
        .map(|word| word.trim_matches(|c: char| matches!(c, '(' | ')' | '<' | '>' | ',' | ';')))
        .find(|word| word.starts_with("https://") || word.starts_with("http://"))
        .map(|word| word.trim_end_matches('.').to_string())
}

fn marked(reason: Option<&Reason>, node_reason: Option<&String>) -> Option<Marked> {
    match (reason, node_reason) {
        (Some(reason), _) => Some(Marked {
            reason: reason.reason.clone(),
            link: first_link(&reason.reason),
            from_base: reason.from_base.clone(),
        }),
        (None, Some(text)) => Some(Marked {
            reason: text.clone(),
            link: first_link(text),
            from_base: None,
        }),
        (None, None) => None,
    }
}

/// The page's releases: the nodes of the graph shown, enriched from the
/// document when there is one.
fn release_rows(
    graph: &UpdateGraph,
    graphs: &[(String, Arc<GraphEntry>)],
    document: Option<&GraphDocument>,
    view: &HaltView,
    now: Timestamp,
) -> Vec<ReleaseRow> {
    let by_version: HashMap<&str, &Release> = document
        .map(|d| d.releases.iter().map(|r| (r.version.as_str(), r)).collect())
        .unwrap_or_default();
    let mut arches_of: HashMap<&str, Vec<String>> = HashMap::new();
    for (arch, entry) in graphs {
        for node in entry.graph().nodes() {
            arches_of
                .entry(node.version.as_str())
                .or_default()
                .push(arch.clone());
        }
    }
    graph
        .nodes()
        .iter()
        .map(|node| {
            let release = by_version.get(node.version.as_str()).copied();
            let halt = match release {
                Some(release) => halt_of(view, &release_ids(release)),
                None => {
                    let mut ids = vec![node.id.as_str()];
                    ids.extend(node.aliases.iter().map(String::as_str));
                    halt_of(view, &ids)
                }
            };
            ReleaseRow {
                age_index: node.age_index,
                version: node.version.clone(),
                architectures: arches_of.remove(node.version.as_str()).unwrap_or_default(),
                base_release: release
                    .and_then(|r| r.base.as_ref())
                    .map(|base| base.version.clone().unwrap_or_else(|| base.digest.clone())),
                available: node.available,
                state: ReleaseState {
                    barrier: marked(
                        release.and_then(|r| r.barrier.as_ref()),
                        node.barrier.as_ref(),
                    ),
                    deadend: marked(
                        release.and_then(|r| r.deadend.as_ref()),
                        node.deadend.as_ref(),
                    ),
                    halt,
                    rollout: node
                        .rollout
                        .and_then(|r| rollout_progress(&node.version, &r, now.as_second())),
                },
            }
        })
        .collect()
}

/// A release by version, digest, alias or checksum.
fn find_release(graph: &UpdateGraph, booted: &str) -> Option<usize> {
    graph
        .nodes()
        .iter()
        .position(|n| n.version == booted)
        .or_else(|| graph.find_booted(booted))
}

/// For each release, the newest release a host on it is offered once every
/// rollout is done (ignoring halts), by position: `None` when none is.
pub fn update_arcs(graph: &UpdateGraph) -> Vec<Option<usize>> {
    // After every rollout's start and end, at wariness 0, no rollout holds.
    let after = graph
        .nodes()
        .iter()
        .filter_map(|n| n.rollout)
        .map(|r| r.end().unwrap_or(r.start()).max(r.start()))
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let when = Timestamp::from_second(after).unwrap_or(Timestamp::MAX);
    let position: HashMap<&str, usize> = graph
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    (0..graph.nodes().len())
        .map(|from| {
            let node = &graph.nodes()[from];
            let query = Query {
                booted: node.id.as_str(),
                wariness: 0.0,
                now: when,
                deny: &[],
                halted: &[],
                allow_downgrade: false,
            };
            let target = graph.decide_at(from, &query).target?;
            position.get(target.digest.as_str()).copied()
        })
        .collect()
}

/// Update arcs of `shown`, merged with those of every architecture's graph.
fn merged_arcs(shown: &UpdateGraph, graphs: &[(String, Arc<GraphEntry>)]) -> Vec<GraphArc> {
    let index: HashMap<&str, usize> = shown
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| (n.version.as_str(), i))
        .collect();
    // (from, to) → architectures with the arc; and per from: architectures having it.
    let mut arcs: BTreeMap<(usize, usize), Vec<&str>> = BTreeMap::new();
    let mut having: HashMap<usize, Vec<&str>> = HashMap::new();
    for (arch, entry) in graphs {
        let graph = entry.graph();
        for (from, to) in update_arcs(graph).into_iter().enumerate() {
            let nodes = graph.nodes();
            let Some(&from_at) = index.get(nodes[from].version.as_str()) else {
                continue;
            };
            having.entry(from_at).or_default().push(arch);
            if let Some(to) = to
                && let Some(&to_at) = index.get(nodes[to].version.as_str())
            {
                arcs.entry((from_at, to_at)).or_default().push(arch);
            }
        }
    }
    arcs.into_iter()
        .map(|((from, to), with)| {
            let everywhere = having.get(&from).is_some_and(|all| all.len() == with.len());
            GraphArc {
                from,
                to,
                arches: if everywhere {
                    Vec::new()
                } else {
                    with.into_iter().map(String::from).collect()
                },
            }
        })
        .collect()
}

/// The graph's rows: runs of at least [`MIN_RUN`] plain releases collapse,
/// unless expanded. Never collapsed: the newest release, the booted one
/// asked about, and any release an arc leads to.
fn layout(
    releases: &[ReleaseRow],
    arcs: &[GraphArc],
    booted_at: Option<usize>,
    expand: &Expand,
) -> Vec<GraphItem> {
    let targets: BTreeSet<usize> = arcs.iter().map(|a| a.to).collect();
    let plain = |i: usize| {
        releases[i].state.word() == "plain"
            && i + 1 != releases.len()
            && Some(i) != booted_at
            && !targets.contains(&i)
    };
    let mut items = Vec::new();
    // Runs drawn open: each collapsed run's link keeps them open. Only real
    // run starts are kept, so a crafted `expand=` cannot grow every link.
    let mut open = BTreeSet::new();
    let mut i = 0;
    while i < releases.len() {
        let mut end = i;
        while end < releases.len() && plain(end) {
            end += 1;
        }
        let run = end - i;
        if run >= MIN_RUN && expand.opens(i) && !matches!(expand, Expand::All) {
            open.insert(i);
        }
        if run >= MIN_RUN && !expand.opens(i) {
            items.push(GraphItem::Collapsed {
                first: i,
                last: end - 1,
                expand: String::new(),
            });
            i = end;
        } else if run > 0 {
            items.extend((i..end).map(|index| GraphItem::Release { index }));
            i = end;
        } else {
            items.push(GraphItem::Release { index: i });
            i += 1;
        }
    }
    for item in &mut items {
        if let GraphItem::Collapsed { first, expand, .. } = item {
            let mut firsts = open.clone();
            firsts.insert(*first);
            let list: Vec<String> = firsts.iter().map(usize::to_string).collect();
            *expand = format!("expand={}", list.join(","));
        }
    }
    items
}

/// One series per rollout in progress (or not yet started) with an end.
fn timeline(graph: &UpdateGraph, now: Timestamp) -> Vec<TimelineSeries> {
    let second = now.as_second();
    graph
        .nodes()
        .iter()
        .filter_map(|node| {
            let rollout = node.rollout?;
            let share_now = rollout.progress_at(second);
            let end = rollout.end()?;
            if share_now >= 1.0 {
                return None;
            }
            let start = rollout.start();
            let span = end.saturating_sub(start).max(1);
            let steps = TIMELINE_SAMPLES.saturating_sub(1).max(1) as i64;
            let points = (0..=steps)
                .map(|k| {
                    let t = start.saturating_add(span.saturating_mul(k) / steps);
                    (time(t), rollout.progress_at(t))
                })
                .collect();
            Some(TimelineSeries {
                version: node.version.clone(),
                points,
                now: now.to_string(),
                share_now,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Outcomes.

/// The stream's outcome reports and halt audits; `None` without the
/// collector. A store that cannot be read leaves an error, never fails.
pub async fn outcomes(state: &AppState, stream: &str, now: Timestamp) -> Option<Outcomes> {
    let reports = state.shared.reports.as_ref()?;
    let mut errors = Vec::new();
    let summaries = match reports.tally(&state.shared.metrics, stream, now).await {
        Ok(tally) => crate::reports::model::summarize(&tally),
        Err(error) => {
            errors.push(error.value);
            Vec::new()
        }
    };
    // Newest first: by the stream's document order where known.
    let order: HashMap<String, u64> = state
        .snapshot(stream)
        .and_then(|s| {
            let document = s.source_document()?;
            Some(
                document
                    .update_ranks()
                    .into_iter()
                    .zip(&document.releases)
                    .map(|(rank, r)| (r.version.clone(), rank))
                    .collect(),
            )
        })
        .unwrap_or_default();
    let mut releases: Vec<ReleaseOutcomes> = crate::halts::guard::by_version(summaries)
        .into_iter()
        .map(|(summary, _)| ReleaseOutcomes {
            counts: crate::reports::model::Outcome::ALL
                .into_iter()
                .map(|o| {
                    let word = o.as_str();
                    (
                        word.to_string(),
                        summary.counts.get(word).copied().unwrap_or(0),
                    )
                })
                .collect(),
            failures: summary.failures,
            rebooting: summary.rebooting,
            failure_share: summary.failure_share,
            missing: summary.missing,
            version: summary.version,
        })
        .collect();
    releases.sort_by(|a, b| {
        let rank = |r: &ReleaseOutcomes| order.get(&r.version).copied();
        rank(b)
            .cmp(&rank(a))
            .then_with(|| b.version.cmp(&a.version))
    });
    let audit = match &state.shared.halts.store {
        None => Vec::new(),
        Some(store) => match store.audits(stream).await {
            Ok(entries) => entries
                .into_iter()
                .map(|entry| AuditLine {
                    time: entry.time.to_string(),
                    version: entry.version,
                    halt_id: entry.halt_id,
                    tripped_by: describe_trigger(&entry.tripped_by),
                    sequence: entry.sequence,
                })
                .collect(),
            Err(error) => {
                errors.push(format!("the halts store failed ({})", error.kind()));
                Vec::new()
            }
        },
    };
    Some(Outcomes {
        releases,
        guard: state
            .shared
            .halts
            .guard
            .as_ref()
            .map(|guard| GuardThresholds {
                min_failures: guard.config.min_failures,
                max_failure_share: guard.config.max_failure_share,
                max_missing_share: guard.config.max_missing_share,
                missing_after_seconds: u64::try_from(reports.config.missing_after.as_secs())
                    .unwrap_or(0),
            }),
        audit,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    })
}

// ---------------------------------------------------------------------------
// What a host would get.

/// [`decide`] on the blocking pool: deciding on a document builds its
/// graph, CPU work to keep off the request workers.
pub async fn decide_off_worker(
    state: &AppState,
    stream: &str,
    arch: Option<String>,
    booted: Option<String>,
    wariness: Option<f64>,
    now: Timestamp,
) -> Result<HostDecision, ApiError> {
    let (state, stream) = (state.clone(), stream.to_string());
    tokio::task::spawn_blocking(move || {
        decide(
            &state,
            &stream,
            arch.as_deref(),
            booted.as_deref(),
            wariness,
            now,
        )
    })
    .await
    .map_err(|_| internal("deciding"))?
}

/// `GET /api/streams/<stream>/decide`: exactly what `cairn graph next`
/// decides for a host of `arch` booted on `booted` (a version, digest or
/// checksum; default: the newest release every host is offered) with
/// `wariness` (default 1), with the stream's halts applied. CPU work: from
/// a handler, call it on the blocking pool.
pub fn decide(
    state: &AppState,
    stream: &str,
    arch: Option<&str>,
    booted: Option<&str>,
    wariness: Option<f64>,
    now: Timestamp,
) -> Result<HostDecision, ApiError> {
    if !state.shared.streams.contains_key(stream) {
        return Err(unknown_stream(stream));
    }
    let wariness = wariness.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&wariness) {
        return Err(invalid("wariness", "must be a number between 0 and 1"));
    }
    let snapshot = state.snapshot(stream).ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "not_ready",
        value: format!("stream {stream} has no graph yet"),
    })?;
    let arch = choose_arch(&snapshot, arch)?;
    let document = snapshot.source_document();
    let view = state.shared.halts.view(stream);
    let withheld = view.withheld(now);
    let booted = match booted {
        Some(booted) => match document {
            Some(document) => document
                .booted_id(&arch, booted)
                .map_err(|e| invalid("booted", e))?,
            None => fedora_booted_id(&snapshot, &arch, booted),
        },
        None => {
            let oci = choose_scheme(&snapshot, &arch, None);
            let graph = snapshot
                .view_graph(&arch, oci)
                .ok_or_else(|| internal("finding the graph"))?;
            let nodes = graph.graph().nodes();
            let halted = match &withheld {
                Withheld::Halted(digests) => Some(digests.as_ref()),
                _ => None,
            };
            default_booted(nodes, now, halted)
                .map(|n| n.id.to_string())
                .ok_or_else(|| invalid("booted", "the graph has no release to start from"))?
        }
    };
    let halted: Vec<String> = match withheld {
        Withheld::Nothing => Vec::new(),
        Withheld::Halted(digests) => digests.iter().cloned().collect(),
        Withheld::Everything => {
            let why = view
                .failing
                .as_ref()
                .map_or("none is held".to_string(), |(_, message)| message.clone());
            return Ok(HostDecision {
                arch,
                booted: version_of(&snapshot, &booted),
                wariness,
                target: None,
                reason: format!(
                    "no action: the stream turns halt lists on and no verified, unexpired list is at hand: {why}"
                ),
                held: Vec::new(),
                next_change: None,
            });
        }
    };
    let query = Query {
        booted: &booted,
        wariness,
        now,
        deny: &[],
        halted: &halted,
        allow_downgrade: false,
    };
    let (decision, next_change) = match document {
        Some(document) => (
            document.decide(&arch, &query),
            document.next_change_after(&arch, &query),
        ),
        None => {
            let oci = cairn_graph::Scheme::of_booted(&booted) == cairn_graph::Scheme::Oci;
            let graph = snapshot
                .view_graph(&arch, oci)
                .ok_or_else(|| internal("finding the graph"))?;
            (
                graph.graph().decide(&query),
                graph.graph().next_change_after(&query),
            )
        }
    };
    Ok(HostDecision {
        arch,
        booted: decision.booted_version.clone(),
        wariness,
        reason: decision.reason(),
        target: decision.target.as_ref().map(|t| DecisionTarget {
            version: t.version.clone(),
            digest: t.digest.to_string(),
        }),
        held: decision
            .held
            .iter()
            .map(|h| HeldRelease {
                version: h.version.clone(),
                reason: h.hold.to_string(),
            })
            .collect(),
        next_change: next_change.map(|t| t.to_string()),
    })
}

/// A Fedora-metadata stream's booted id: a version becomes its digest in
/// the default scheme's graph; anything else passes as given.
fn fedora_booted_id(snapshot: &Snapshot, arch: &str, booted: &str) -> String {
    let oci = choose_scheme(snapshot, arch, None);
    snapshot
        .view_graph(arch, oci)
        .and_then(|entry| {
            let nodes = entry.graph().nodes();
            nodes
                .iter()
                .find(|n| n.version == booted)
                .map(|n| n.id.to_string())
        })
        .unwrap_or_else(|| booted.to_string())
}

fn version_of(snapshot: &Snapshot, booted: &str) -> Option<String> {
    snapshot.arches.iter().find_map(|arch| {
        [true, false].into_iter().find_map(|oci| {
            let entry = snapshot.view_built(arch, oci).flatten()?;
            let at = entry.graph().find_booted(booted)?;
            Some(entry.graph().nodes()[at].version.clone())
        })
    })
}

/// The newest release every host is offered now: no rollout in progress,
/// not a dead-end, available, not halted. A host on it is up to date but
/// for rollouts.
pub fn default_booted<'a>(
    nodes: &'a [Node],
    now: Timestamp,
    halted: Option<&BTreeSet<String>>,
) -> Option<&'a Node> {
    let is_halted = |n: &Node| {
        halted.is_some_and(|h| h.contains(n.id.as_str()) || n.aliases.iter().any(|a| h.contains(a)))
    };
    nodes
        .iter()
        .rev()
        .find(|n| {
            n.deadend.is_none()
                && n.available
                && !is_halted(n)
                && n.rollout.is_none_or(|r| !r.hides(1.0, now.as_second()))
        })
        .or_else(|| nodes.first())
}

// ---------------------------------------------------------------------------
// Reboot locks.

/// `GET /api/locks`: as `GET /v1/x-cairn/locks`, with holder ids and the
/// halting node only for a lock admin. 404 without FleetLock.
pub async fn locks(state: &AppState, now: Timestamp, viewer: &Viewer) -> Result<Locks, ApiError> {
    let lock = state.shared.fleet_lock.as_ref().ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "fleet_lock_not_configured",
        value: "FleetLock is not configured on this server".into(),
    })?;
    let admin = viewer.can_admin_locks;
    // The store's own message may name files or endpoints: a viewer is
    // told its kind only (the log has the rest).
    let listed = lock
        .overview(&state.shared.metrics, now)
        .await
        .map_err(|error| ApiError {
            value: format!("the lock store is unavailable ({})", error.kind),
            ..error
        })?;
    let groups = listed
        .into_iter()
        .map(|(name, _, policy, group)| LockGroup {
            name,
            slots: u64::from(policy.slots),
            taken: group.holders.len() as u64,
            lease_seconds: u64::try_from(policy.lease.as_secs()).unwrap_or(0),
            holders: group
                .holders
                .iter()
                .map(|(id, holder)| LockHolder {
                    id: admin.then(|| id.clone()),
                    taken: holder.taken.to_string(),
                    lease_left_seconds: u64::try_from(holder.expires.duration_since(now).as_secs())
                        .unwrap_or(0),
                })
                .collect(),
            halt: group.halt.as_ref().map(|halt| LockHalt {
                at: halt.at.to_string(),
                reason: halt.reason.kind().to_string(),
                // What the host said is its own text: for admins only.
                detail: if admin {
                    halt.reason.detail().to_string()
                } else {
                    String::new()
                },
                node: admin.then(|| halt.node.clone()),
            }),
        })
        .collect();
    Ok(Locks {
        now: now.to_string(),
        groups,
        holders_shown: admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_form_with_empty_fields_asks_nothing_and_a_bad_wariness_is_named() {
        let query = StreamQuery::parse(Some("arch=x86_64&booted=+&wariness=&notice=halted"))
            .expect("query");
        assert_eq!(query.booted, None);
        assert_eq!(query.wariness, None);
        assert_eq!(query.arch.as_deref(), Some("x86_64"));
        let query = StreamQuery::parse(Some("booted=40.1&wariness=0.25")).expect("query");
        assert_eq!(query.booted.as_deref(), Some("40.1"));
        assert_eq!(query.wariness, Some(0.25));
        let error = StreamQuery::parse(Some("wariness=7")).expect_err("out of range");
        assert!(error.value.starts_with("wariness:"), "{}", error.value);
        let error = StreamQuery::parse(Some("expand=x")).expect_err("not an index");
        assert!(error.value.starts_with("expand:"), "{}", error.value);
    }
}
