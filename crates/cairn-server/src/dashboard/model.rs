//! The dashboard's view model: what every page shows, as plain data.
//!
//! The JSON API (`/api/...`) serializes these types and the HTML pages are
//! rendered from the very same values, so the two can never disagree. Times
//! are RFC 3339 strings and shares are fractions in [0, 1]: the model is
//! already in the shape people read, and carries no secret (no token, no key,
//! and lock holders' ids only when the viewer is an admin).

use serde::Serialize;

/// `GET /api/overview`: every configured stream at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// The server's time of this view.
    pub now: String,
    /// Every configured stream, by name.
    pub streams: Vec<StreamSummary>,
    /// Lock groups that are halted (empty without FleetLock).
    pub halted_lock_groups: Vec<LockGroup>,
    /// Whether FleetLock is configured here.
    pub fleet_lock: bool,
    /// Why the lock groups could not be read, if they could not.
    pub fleet_lock_error: Option<String>,
}

/// One stream on the overview.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// The stream's name.
    pub name: String,
    /// How its source is doing.
    pub health: SourceHealth,
    /// The newest release (highest age index), if a graph is served.
    pub newest: Option<ReleaseRef>,
    /// How many releases the served graph has.
    pub releases: usize,
    /// Rollouts in progress now.
    pub rollouts: Vec<RolloutProgress>,
    /// Releases halted now.
    pub halted: Vec<HaltMark>,
}

/// A source's health, as `/readyz` judges it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceHealth {
    /// A graph is served and the last refresh succeeded.
    pub up: bool,
    /// The last successful refresh.
    pub last_success: Option<String>,
    /// The last refresh's failure, if it failed.
    pub error: Option<SourceError>,
    /// The served document's sequence, for document sources.
    pub sequence: Option<u64>,
    /// When the served document expires, for document sources.
    pub expires: Option<String>,
    /// The version of the trust root the source verifies with (0: built
    /// from the configured keys); `None` without one.
    pub root_version: Option<u64>,
}

/// Why a source's last refresh failed.
#[derive(Debug, Clone, Serialize)]
pub struct SourceError {
    /// The error kind (as in metrics).
    pub kind: String,
    /// The message.
    pub message: String,
}

/// A release named by version and age index.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRef {
    /// Version.
    pub version: String,
    /// Age index (update order).
    pub age_index: u64,
}

/// A rollout's progress now.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutProgress {
    /// The release rolling out.
    pub version: String,
    /// Share of the fleet (by wariness) offered it now, in [0, 1].
    pub share: f64,
    /// When it started.
    pub start: String,
    /// When it reaches the whole fleet; `None` if it never grows.
    pub full_at: Option<String>,
}

/// A halt in effect on a release.
#[derive(Debug, Clone, Serialize)]
pub struct HaltMark {
    /// The release.
    pub version: String,
    /// The halt entry's id (what a document names to clear it).
    pub id: String,
    /// Why, as written in the entry.
    pub reason: String,
    /// What tripped it, for people: "guard: 4 failures of 20 reboots",
    /// "alert NodeBootFailures", "person alice".
    pub tripped_by: String,
    /// When it was halted.
    pub time: String,
    /// The release team's command that resumes it (there is no button).
    pub resume_command: String,
}

/// `GET /api/streams/<stream>`: one stream's page.
#[derive(Debug, Clone, Serialize)]
pub struct StreamPage {
    /// The server's time of this view.
    pub now: String,
    /// The stream's name.
    pub name: String,
    /// How its source is doing.
    pub health: SourceHealth,
    /// The architecture shown (`?arch=`; default x86_64 when present).
    pub arch: String,
    /// Every architecture the stream has.
    pub arches: Vec<String>,
    /// The scheme shown: `oci` or `checksum` (`?scheme=`).
    pub scheme: String,
    /// The schemes with a graph for this architecture.
    pub schemes: Vec<String>,
    /// For a derived stream: the base it follows.
    pub base: Option<BaseInfo>,
    /// Every release, oldest first (update order).
    pub releases: Vec<ReleaseRow>,
    /// The graph, laid out in update order with plain runs collapsed.
    pub graph: GraphView,
    /// One series per rollout in progress.
    pub timeline: Vec<TimelineSeries>,
    /// Outcome reports per release, when the collector is configured.
    pub outcomes: Option<Outcomes>,
    /// Halt list state: whether halts are on, the list's sequence, errors.
    pub halts: HaltState,
}

/// The base a derived stream follows.
#[derive(Debug, Clone, Serialize)]
pub struct BaseInfo {
    /// The base's repository.
    pub repository: String,
    /// Where its graph was read.
    pub source: String,
    /// The base's barriers, oldest first: no update crosses one except
    /// through a release built on it.
    pub barriers: Vec<BaseBarrierRow>,
}

/// A barrier of the base graph, as a derived stream inherits it.
#[derive(Debug, Clone, Serialize)]
pub struct BaseBarrierRow {
    /// The base release's version.
    pub version: String,
    /// The base's reason (may be empty: generic).
    pub reason: String,
    /// The first `http(s)://` link in the reason, if any.
    pub link: Option<String>,
    /// The releases of this stream built on it (each inherits the barrier);
    /// empty: none is, and hosts on older bases cannot update past it.
    pub built_on: Vec<String>,
}

/// One release on the stream page.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRow {
    /// Age index.
    pub age_index: u64,
    /// Version.
    pub version: String,
    /// Architectures it is built for.
    pub architectures: Vec<String>,
    /// For a derived image: the base release it is built on (version, or
    /// the base digest when the version is unknown).
    pub base_release: Option<String>,
    /// Whether the release is available (not withdrawn) on the arch shown.
    pub available: bool,
    /// What is special about it; all `None`: a plain release.
    pub state: ReleaseState,
}

/// A release's state; several may hold at once (a halted rollout).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReleaseState {
    /// A barrier every host must boot on the way past.
    pub barrier: Option<Marked>,
    /// A dead-end no host leaves automatically.
    pub deadend: Option<Marked>,
    /// A halt in effect.
    pub halt: Option<HaltMark>,
    /// A rollout in progress (or not yet started).
    pub rollout: Option<RolloutProgress>,
}

impl ReleaseState {
    /// One word for the state, for tables and text alternatives:
    /// `halted`, `dead-end`, `barrier`, `rollout` or `plain`, the most
    /// severe first.
    pub fn word(&self) -> &'static str {
        if self.halt.is_some() {
            "halted"
        } else if self.deadend.is_some() {
            "dead-end"
        } else if self.barrier.is_some() {
            "barrier"
        } else if self.rollout.is_some() {
            "rollout"
        } else {
            "plain"
        }
    }
}

/// A barrier or dead-end and why.
#[derive(Debug, Clone, Serialize)]
pub struct Marked {
    /// The reason text.
    pub reason: String,
    /// The first `http(s)://` link in the reason, if any.
    pub link: Option<String>,
    /// Inherited from the base graph: the base release it came from
    /// (`<repository> <version>`).
    pub from_base: Option<String>,
}

/// The graph as drawn: releases in update order, long runs of plain
/// releases collapsed into one item unless expanded.
#[derive(Debug, Clone, Serialize)]
pub struct GraphView {
    /// Items top to bottom.
    pub items: Vec<GraphItem>,
    /// Each release's update: an arc from a release to the newest release
    /// a host on it is offered with the whole rollout done, merged over
    /// architectures (indexes into `releases` of the page).
    pub arcs: Vec<GraphArc>,
}

/// One row of the graph drawing.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GraphItem {
    /// One release, by index into the page's `releases`.
    Release {
        /// Index into `releases`.
        index: usize,
    },
    /// A run of plain releases drawn as one row.
    Collapsed {
        /// First index into `releases`.
        first: usize,
        /// Last index into `releases` (inclusive).
        last: usize,
        /// The query that expands it, keeping open the runs already open
        /// (`expand=<first>[,<first>…]`).
        expand: String,
    },
}

/// An update arc of the graph drawing.
#[derive(Debug, Clone, Serialize)]
pub struct GraphArc {
    /// From (index into `releases`).
    pub from: usize,
    /// To (index into `releases`).
    pub to: usize,
    /// The architectures with this arc; empty: every architecture.
    pub arches: Vec<String>,
}

/// The share of the fleet offered one rollout over time.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineSeries {
    /// The release.
    pub version: String,
    /// Samples from the start to the end of the rollout: (time, share).
    pub points: Vec<(String, f64)>,
    /// The server's time, to mark "now".
    pub now: String,
    /// The share now.
    pub share_now: f64,
}

/// `GET /api/streams/<stream>/decide`: what a host would be offered now.
#[derive(Debug, Clone, Serialize)]
pub struct HostDecision {
    /// The architecture asked about.
    pub arch: String,
    /// The booted release asked about (version), as found in the graph.
    pub booted: Option<String>,
    /// The wariness asked about.
    pub wariness: f64,
    /// The update offered now, if any.
    pub target: Option<DecisionTarget>,
    /// Why, in the agent's words (`Decision::reason`).
    pub reason: String,
    /// Releases held back and why.
    pub held: Vec<HeldRelease>,
    /// When the answer next changes, if it will.
    pub next_change: Option<String>,
}

/// The update a host would take.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionTarget {
    /// Version.
    pub version: String,
    /// Digest or commit checksum.
    pub digest: String,
}

/// A release held back from a host, and why.
#[derive(Debug, Clone, Serialize)]
pub struct HeldRelease {
    /// Version.
    pub version: String,
    /// Why.
    pub reason: String,
}

/// Outcome reports of a stream.
#[derive(Debug, Clone, Serialize)]
pub struct Outcomes {
    /// Per release, newest first.
    pub releases: Vec<ReleaseOutcomes>,
    /// The guard's thresholds, when the guard is configured.
    pub guard: Option<GuardThresholds>,
    /// Halts of this stream as audited, oldest first.
    pub audit: Vec<AuditLine>,
    /// Why the counts could not be read, if they could not.
    pub error: Option<String>,
}

/// One release's report counts.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseOutcomes {
    /// Version.
    pub version: String,
    /// Reports by outcome word, every outcome listed.
    pub counts: Vec<(String, u64)>,
    /// Failure reports.
    pub failures: u64,
    /// `rebooting` reports.
    pub rebooting: u64,
    /// failures / rebooting.
    pub failure_share: Option<f64>,
    /// Hosts that said they were rebooting and never reported after.
    pub missing: u64,
}

/// When the guard halts a release.
#[derive(Debug, Clone, Serialize)]
pub struct GuardThresholds {
    /// At least this many failures…
    pub min_failures: u64,
    /// …and a failure share above this.
    pub max_failure_share: f64,
    /// Or: missing outcomes over `rebooting` reports above this (if set).
    pub max_missing_share: Option<f64>,
    /// A `rebooting` report with no final one after this many seconds
    /// counts as missing (`[reports] missing_after`).
    pub missing_after_seconds: u64,
}

/// One audited halt.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLine {
    /// When.
    pub time: String,
    /// The release.
    pub version: String,
    /// The halt entry's id.
    pub halt_id: String,
    /// What tripped it, for people.
    pub tripped_by: String,
    /// The halt list's sequence published.
    pub sequence: u64,
}

/// A stream's halt list state.
#[derive(Debug, Clone, Serialize)]
pub struct HaltState {
    /// The document turns halts on.
    pub on: bool,
    /// Where the list is.
    pub location: Option<String>,
    /// The sequence of the list held.
    pub sequence: Option<u64>,
    /// When the list held expires.
    pub expires: Option<String>,
    /// Why no list could be read, if none could.
    pub error: Option<String>,
    /// Halts in effect.
    pub halted: Vec<HaltMark>,
    /// This server can publish a halt: it has a `[guard]` with a halt key,
    /// and the stream's document turns halts on.
    pub can_publish: bool,
}

/// `GET /api/locks`: the reboot lock groups.
#[derive(Debug, Clone, Serialize)]
pub struct Locks {
    /// The server's time of this view.
    pub now: String,
    /// Every group.
    pub groups: Vec<LockGroup>,
    /// Whether holder ids are shown (the viewer is a lock admin).
    pub holders_shown: bool,
}

/// One FleetLock group.
#[derive(Debug, Clone, Serialize)]
pub struct LockGroup {
    /// Its name.
    pub name: String,
    /// Slots (hosts that may reboot at once).
    pub slots: u64,
    /// Slots taken.
    pub taken: u64,
    /// Lease length in seconds.
    pub lease_seconds: u64,
    /// Holders: ids only for an admin, otherwise `None` each.
    pub holders: Vec<LockHolder>,
    /// The halt, if the group is halted.
    pub halt: Option<LockHalt>,
}

/// One slot holder.
#[derive(Debug, Clone, Serialize)]
pub struct LockHolder {
    /// The node's FleetLock id: shown only to an admin.
    pub id: Option<String>,
    /// When it took the slot.
    pub taken: String,
    /// Seconds of lease left.
    pub lease_left_seconds: u64,
}

/// Why a lock group is halted.
#[derive(Debug, Clone, Serialize)]
pub struct LockHalt {
    /// When.
    pub at: String,
    /// `boot_failed` or `lease_expired`.
    pub reason: String,
    /// The detail the host gave, if any: shown only to an admin (empty
    /// otherwise), as it is the host's own text.
    pub detail: String,
    /// The node: shown only to an admin.
    pub node: Option<String>,
}

/// What a viewer may do on a page: from their session, if any.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Viewer {
    /// Logged in, under this token's name (its file name, never the token).
    pub name: Option<String>,
    /// May halt releases (`halt` scope).
    pub can_halt: bool,
    /// May see lock holders and acknowledge halted groups (`lock-admin`).
    pub can_admin_locks: bool,
    /// The session's CSRF token, for forms. Never serialized.
    #[serde(skip)]
    pub csrf: Option<String>,
}
