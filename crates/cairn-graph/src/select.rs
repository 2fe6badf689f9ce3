//! Target selection on a node, and when that choice will next change.
//!
//! The rules, in the order they are checked for each out-edge of the booted
//! release: never a dead-end, never an image that left the registry, never a
//! release this host rolled back from, never a downgrade unless allowed, never
//! a release with the booted config digest (a metadata-only change), and never
//! a rollout that has not reached this node's wariness. Of what remains, the
//! highest age index wins. When nothing remains the decision says why, in words
//! an operator can act on.

use crate::document::GraphDocument;
use crate::graph::{Node, Scheme, UpdateGraph};
use jiff::Timestamp;
use std::fmt;

/// What a node asks.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The booted manifest digest, pull spec or ostree checksum.
    pub booted: &'a str,
    /// This node's wariness in [0, 1].
    pub wariness: f64,
    /// The current time.
    pub now: Timestamp,
    /// Digests this host rolled back from; never offered again.
    pub deny: &'a [String],
    /// Digests of releases halted for this stream (the halt list's entries
    /// in effect): offered to no host; hosts already on one may move on.
    pub halted: &'a [String],
    /// Whether an out-edge to an older release may be taken.
    pub allow_downgrade: bool,
}

/// The release chosen as the next update.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Release version.
    pub version: String,
    /// Manifest digest or ostree checksum to stage.
    pub digest: crate::digest::TargetId,
    /// Full payload (`repository@digest` for images).
    pub payload: String,
    /// Age index of the release.
    pub age_index: u64,
}

/// Why an out-edge was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// The target is a dead-end.
    DeadEnd {
        /// Its reason.
        reason: String,
    },
    /// The image is no longer in the registry.
    Unavailable,
    /// The host rolled back from it.
    RolledBack,
    /// The stream's halt list halts it.
    Halted,
    /// It is older than the booted release.
    Downgrade,
    /// Same config digest as the booted release.
    SameConfig,
    /// Reaching it would cross a base barrier no derived image is built on.
    BaseBarrier {
        /// The base barrier.
        barrier: crate::document::BaseBarrier,
        /// The derived repository.
        repository: String,
        /// The base repository.
        base_repository: String,
    },
    /// Its base image, or the booted one's, is not in the base graph.
    UnknownBase,
    /// Its rollout has not reached this node yet.
    Rollout {
        /// Rollout progress now.
        progress: f64,
        /// This node's wariness.
        wariness: f64,
    },
}

/// A release the node could reach but does not take, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// Release version.
    pub version: String,
    /// Age index.
    pub age_index: u64,
    /// Why it is held.
    pub hold: Hold,
}

/// Why there is (or is not) an update.
#[derive(Debug, Clone, PartialEq)]
pub enum NoUpdate {
    /// Nothing newer is offered.
    UpToDate,
    /// The booted identifier is in no release of this graph.
    BootedNotInGraph {
        /// What the host reported.
        booted: String,
    },
    /// The booted release is a dead-end.
    DeadEnd {
        /// Booted version.
        version: String,
        /// Reason.
        reason: String,
    },
    /// The document is past its expiry and must not be trusted.
    DocumentExpired {
        /// When it expired.
        expires: Timestamp,
    },
    /// The newest reachable release is held back.
    Held(Held),
}

/// The outcome of target selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The booted release's version, when it was found.
    pub booted_version: Option<String>,
    /// The update to take, if any.
    pub target: Option<Target>,
    /// Why there is no update; `None` when there is a target.
    pub no_update: Option<NoUpdate>,
    /// Every reachable release not taken, newest first.
    pub held: Vec<Held>,
}

impl Decision {
    fn without_update(booted_version: Option<String>, why: NoUpdate) -> Self {
        Decision {
            booted_version,
            target: None,
            no_update: Some(why),
            held: Vec::new(),
        }
    }

    /// One sentence for operators.
    pub fn reason(&self) -> String {
        match (&self.target, &self.no_update) {
            (Some(target), _) => {
                let mut text = format!("update available: {}", target.version);
                if let Some(newer) = self.held.iter().find(|h| h.age_index > target.age_index) {
                    text.push_str(&format!(" (newer {} held: {})", newer.version, newer.hold));
                }
                text
            }
            (None, Some(why)) => why.to_string(),
            (None, None) => NoUpdate::UpToDate.to_string(),
        }
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::DeadEnd { reason } => write!(f, "it is a dead-end: {}", or_generic(reason)),
            Hold::Unavailable => f.write_str("its image is no longer in the registry"),
            Hold::RolledBack => f.write_str("this host rolled back from it"),
            Hold::Halted => f.write_str("the stream's halt list halts it"),
            Hold::Downgrade => f.write_str("it is older than the booted release"),
            Hold::SameConfig => {
                f.write_str("it has the booted config digest (metadata-only change)")
            }
            Hold::BaseBarrier {
                barrier,
                repository,
                base_repository,
            } => write!(
                f,
                "no image in {repository} is built on {base_repository} {} (barrier: {}); \
                 build one, or run `cairn update-now --cross-barrier` to accept the risk",
                barrier.version,
                or_generic(&barrier.reason)
            ),
            Hold::UnknownBase => f.write_str(
                "its base image (or the booted one's) is not in the base graph, so the move would be blind",
            ),
            Hold::Rollout { progress, wariness } => write!(
                f,
                "rollout at {}, this node's wariness is {}",
                percent(*progress),
                trimmed(*wariness, 3)
            ),
        }
    }
}

impl fmt::Display for NoUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoUpdate::UpToDate => f.write_str("up to date"),
            NoUpdate::BootedNotInGraph { booted } => write!(
                f,
                "booted digest not in the graph: {booted} is in no release of this stream and \
                 architecture; no update is taken until it is"
            ),
            NoUpdate::DeadEnd { version, reason } => {
                write!(f, "dead-end: {version}: {}", or_generic(reason))
            }
            NoUpdate::DocumentExpired { expires } => write!(
                f,
                "the update graph document expired at {expires}; no update is taken until a fresh one is published"
            ),
            NoUpdate::Held(held) => match &held.hold {
                Hold::Rollout { progress, wariness } => write!(
                    f,
                    "rollout of {} at {}, this node's wariness is {}",
                    held.version,
                    percent(*progress),
                    trimmed(*wariness, 3)
                ),
                Hold::SameConfig => write!(
                    f,
                    "up to date: {} only changes metadata (same config digest)",
                    held.version
                ),
                hold => write!(f, "{} is not offered: {hold}", held.version),
            },
        }
    }
}

/// Why a host may not take one given release now: the check a staged
/// release must pass at every later check to stay staged.
#[derive(Debug, Clone, PartialEq)]
pub enum NotOffered {
    /// The release is in no node of this graph.
    NotInGraph,
    /// The booted release is in no node of this graph.
    BootedNotInGraph,
    /// The booted release is a dead-end: nothing is offered from it.
    BootedDeadEnd {
        /// Its reason.
        reason: String,
    },
    /// No edge leads from the booted release to it.
    NotAnEdge,
    /// The document is past its expiry.
    DocumentExpired {
        /// When it expired.
        expires: Timestamp,
    },
    /// An edge leads there, but a rule holds it back.
    Held(Hold),
}

impl NotOffered {
    /// True for the parts of the check an operator's deliberate staging
    /// overrides (`update-now` at wariness 0, `--cross-barrier`): the
    /// rollout's wariness and the base-barrier guard. Dead-ends, the
    /// deny-list and a missing edge still withdraw it.
    pub fn waived_for_operator(&self) -> bool {
        matches!(
            self,
            NotOffered::Held(Hold::Rollout { .. } | Hold::BaseBarrier { .. })
        )
    }
}

impl fmt::Display for NotOffered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotOffered::NotInGraph => f.write_str("it is no longer in the graph"),
            NotOffered::BootedNotInGraph => f.write_str("the booted release is not in the graph"),
            NotOffered::BootedDeadEnd { reason } => write!(
                f,
                "the booted release became a dead-end ({}), so nothing is offered from it",
                or_generic(reason)
            ),
            NotOffered::NotAnEdge => {
                f.write_str("the graph no longer has an edge to it from the booted release")
            }
            NotOffered::DocumentExpired { expires } => {
                write!(f, "the update graph document expired at {expires}")
            }
            NotOffered::Held(hold) => hold.fmt(f),
        }
    }
}

fn or_generic(reason: &str) -> &str {
    if reason.is_empty() { "generic" } else { reason }
}

/// `0.37` as `37%`, `0.375` as `37.5%`.
fn percent(fraction: f64) -> String {
    format!("{}%", trimmed(fraction * 100.0, 1))
}

fn trimmed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn is_denied(node: &Node, deny: &[String]) -> bool {
    deny.iter()
        .any(|digest| node.matches(digest) || node.matches_alias(digest))
}

/// Why `candidate` is not taken from `booted`, if it is not.
fn hold_for(booted: &Node, candidate: &Node, query: &Query<'_>) -> Option<Hold> {
    if let Some(reason) = &candidate.deadend {
        return Some(Hold::DeadEnd {
            reason: reason.clone(),
        });
    }
    if !candidate.available {
        return Some(Hold::Unavailable);
    }
    if is_denied(candidate, query.deny) {
        return Some(Hold::RolledBack);
    }
    if is_denied(candidate, query.halted) {
        return Some(Hold::Halted);
    }
    if candidate.age_index < booted.age_index && !query.allow_downgrade {
        return Some(Hold::Downgrade);
    }
    if candidate.config.is_some() && candidate.config == booted.config {
        return Some(Hold::SameConfig);
    }
    let now = query.now.as_second();
    if let Some(rollout) = candidate.rollout
        && rollout.hides(query.wariness, now)
    {
        return Some(Hold::Rollout {
            progress: rollout.progress_at(now),
            wariness: query.wariness,
        });
    }
    None
}

impl UpdateGraph {
    /// Choose the update for a node.
    pub fn decide(&self, query: &Query<'_>) -> Decision {
        match self.find_booted(query.booted) {
            Some(booted_at) => self.decide_at(booted_at, query),
            None => Decision::without_update(
                None,
                NoUpdate::BootedNotInGraph {
                    booted: query.booted.to_string(),
                },
            ),
        }
    }

    /// [`UpdateGraph::decide`] for a node already found at `booted_at`
    /// (the simulator decides for a million nodes and skips the lookup).
    pub fn decide_at(&self, booted_at: usize, query: &Query<'_>) -> Decision {
        let Some(booted) = self.nodes().get(booted_at) else {
            return Decision::without_update(
                None,
                NoUpdate::BootedNotInGraph {
                    booted: query.booted.to_string(),
                },
            );
        };
        if let Some(reason) = &booted.deadend {
            return Decision::without_update(
                Some(booted.version.clone()),
                NoUpdate::DeadEnd {
                    version: booted.version.clone(),
                    reason: reason.clone(),
                },
            );
        }
        let mut target = None;
        let mut held = Vec::new();
        for candidate in self.candidates(booted_at) {
            match self.hold(booted, candidate, query) {
                Some(hold) => held.push(Held {
                    version: candidate.version.clone(),
                    age_index: candidate.age_index,
                    hold,
                }),
                None if target.is_none() => target = Some(candidate),
                None => {}
            }
        }
        let no_update = match (&target, held.first()) {
            (Some(_), _) => None,
            (None, Some(first)) => Some(NoUpdate::Held(first.clone())),
            (None, None) => Some(NoUpdate::UpToDate),
        };
        Decision {
            booted_version: Some(booted.version.clone()),
            target: target.map(|node| Target {
                version: node.version.clone(),
                digest: node.id.clone(),
                payload: node.payload.clone(),
                age_index: node.age_index,
            }),
            no_update,
            held,
        }
    }

    /// The first time after `query.now` at which [`UpdateGraph::decide`] gives a
    /// better target: a held rollout newer than today's target reaching this
    /// node's wariness (or starting). `None` when only a new document can change it.
    pub fn next_change_after(&self, query: &Query<'_>) -> Option<Timestamp> {
        self.next_change_after_at(self.find_booted(query.booted)?, query)
    }

    /// [`UpdateGraph::next_change_after`] for a node already found at `booted_at`.
    pub fn next_change_after_at(&self, booted_at: usize, query: &Query<'_>) -> Option<Timestamp> {
        self.decide_and_next_change_at(booted_at, query).1
    }

    /// [`UpdateGraph::decide_at`] and [`UpdateGraph::next_change_after_at`]
    /// together, deciding once (the simulator needs both for every event).
    pub fn decide_and_next_change_at(
        &self,
        booted_at: usize,
        query: &Query<'_>,
    ) -> (Decision, Option<Timestamp>) {
        let decision = self.decide_at(booted_at, query);
        let next = self.next_change_given(booted_at, query, &decision);
        (decision, next)
    }

    fn next_change_given(
        &self,
        booted_at: usize,
        query: &Query<'_>,
        decision: &Decision,
    ) -> Option<Timestamp> {
        let booted = self.nodes().get(booted_at)?;
        if booted.deadend.is_some() {
            return None;
        }
        let current = decision.target.as_ref().map(|t| t.digest.as_str());
        let now = query.now.as_second();
        // The decision takes the first candidate not held, so it changes only
        // when one ahead of today's target is released (same-age nodes of a
        // server graph included).
        self.candidates(booted_at)
            .into_iter()
            .take_while(|node| current != Some(node.id.as_str()))
            .filter(|node| matches!(self.hold(booted, node, query), Some(Hold::Rollout { .. })))
            .filter_map(|node| node.rollout?.visible_from(query.wariness, now))
            .min()
            .and_then(|second| Timestamp::from_second(second).ok())
    }

    /// Why `candidate` is not taken from `booted`: [`hold_for`], with the
    /// base guard of a derived graph ahead of the rollout check.
    fn hold(&self, booted: &Node, candidate: &Node, query: &Query<'_>) -> Option<Hold> {
        let hold = hold_for(booted, candidate, query);
        if !matches!(hold, None | Some(Hold::Rollout { .. })) {
            return hold;
        }
        let Some(guard) = self.base_guard() else {
            return hold;
        };
        match guard.allows(booted, candidate) {
            Ok(()) => hold,
            Err(crate::derive::Blocked::OlderBase) if query.allow_downgrade => hold,
            Err(crate::derive::Blocked::OlderBase) => Some(Hold::Downgrade),
            Err(crate::derive::Blocked::UnknownBase) => Some(Hold::UnknownBase),
            Err(crate::derive::Blocked::Barrier(barrier)) => Some(Hold::BaseBarrier {
                barrier: barrier.clone(),
                repository: guard.repository.clone(),
                base_repository: guard.base_repository.clone(),
            }),
        }
    }

    /// [`UpdateGraph::decide`] on a graph a Cincinnati server already
    /// throttled with this node's wariness. Such a server drops the edges into
    /// rollouts that have not reached the node, which would leave the node
    /// saying "up to date". The nodes keep their rollout metadata, so those
    /// releases (up to the next barrier, as Fedora's edge rule allows) are
    /// named as held, and the node can still say why it waits.
    pub fn decide_served(&self, query: &Query<'_>) -> Decision {
        let mut decision = self.decide(query);
        let Some(booted_at) = self.find_booted(query.booted) else {
            return decision;
        };
        if self.nodes()[booted_at].deadend.is_some() {
            return decision;
        }
        let floor = decision
            .target
            .as_ref()
            .map_or(self.nodes()[booted_at].age_index, |t| t.age_index);
        for (node, hold) in self.withheld_rollouts(booted_at, query) {
            if node.age_index > floor && !decision.held.iter().any(|h| h.version == node.version) {
                decision.held.push(Held {
                    version: node.version.clone(),
                    age_index: node.age_index,
                    hold,
                });
            }
        }
        decision
            .held
            .sort_by_key(|held| std::cmp::Reverse(held.age_index));
        if decision.target.is_none()
            && matches!(decision.no_update, Some(NoUpdate::UpToDate))
            && let Some(first) = decision.held.first()
        {
            decision.no_update = Some(NoUpdate::Held(first.clone()));
        }
        decision
    }

    /// [`UpdateGraph::next_change_after`] for a server-throttled graph: also
    /// the moment a withheld rollout reaches this node.
    pub fn next_change_after_served(&self, query: &Query<'_>) -> Option<Timestamp> {
        let booted_at = self.find_booted(query.booted)?;
        let booted = &self.nodes()[booted_at];
        if booted.deadend.is_some() {
            return None;
        }
        let floor = self
            .decide(query)
            .target
            .map_or(booted.age_index, |t| t.age_index);
        let now = query.now.as_second();
        let withheld = self
            .withheld_rollouts(booted_at, query)
            .into_iter()
            .filter(|(node, _)| node.age_index > floor)
            .filter_map(|(node, _)| node.rollout?.visible_from(query.wariness, now))
            .min()
            .and_then(|second| Timestamp::from_second(second).ok());
        match (self.next_change_after(query), withheld) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Newer releases up to the next barrier whose rollout hides them from
    /// this node, whether or not an edge leads there.
    fn withheld_rollouts(&self, booted_at: usize, query: &Query<'_>) -> Vec<(&Node, Hold)> {
        let booted = &self.nodes()[booted_at];
        let barrier = self
            .nodes()
            .iter()
            .filter(|n| n.age_index > booted.age_index && n.barrier.is_some())
            .map(|n| n.age_index)
            .min();
        self.nodes()
            .iter()
            .filter(|n| n.age_index > booted.age_index && barrier.is_none_or(|b| n.age_index <= b))
            .filter_map(|n| match hold_for(booted, n, query) {
                Some(hold @ Hold::Rollout { .. }) => Some((n, hold)),
                _ => None,
            })
            .collect()
    }

    /// Whether a host on `query.booted` may take `release` (a digest,
    /// alias or checksum) now, by the same rules as [`UpdateGraph::decide`],
    /// whether or not it is the newest such release.
    pub fn offers(&self, query: &Query<'_>, release: &str) -> Result<(), NotOffered> {
        let booted_at = self
            .find_booted(query.booted)
            .ok_or(NotOffered::BootedNotInGraph)?;
        let booted = &self.nodes()[booted_at];
        if let Some(reason) = &booted.deadend {
            return Err(NotOffered::BootedDeadEnd {
                reason: reason.clone(),
            });
        }
        let at = self.find_booted(release).ok_or(NotOffered::NotInGraph)?;
        let candidate = &self.nodes()[at];
        // What the release itself is (a dead-end, gone, rolled back from)
        // before whether an edge leads there: a rule graph has no edges
        // into a dead-end, and the operator must hear why.
        if let Some(
            hold @ (Hold::DeadEnd { .. } | Hold::Unavailable | Hold::RolledBack | Hold::Halted),
        ) = hold_for(booted, candidate, query)
        {
            return Err(NotOffered::Held(hold));
        }
        if !self
            .candidates(booted_at)
            .iter()
            .any(|node| std::ptr::eq(*node, candidate))
        {
            return Err(NotOffered::NotAnEdge);
        }
        match self.hold(booted, candidate, query) {
            Some(hold) => Err(NotOffered::Held(hold)),
            None => Ok(()),
        }
    }

    /// [`UpdateGraph::offers`] on a graph a Cincinnati server already
    /// throttled: a release missing its edge only because its rollout has
    /// not reached this node is held by that rollout, not edgeless.
    pub fn offers_served(&self, query: &Query<'_>, release: &str) -> Result<(), NotOffered> {
        match self.offers(query, release) {
            Err(NotOffered::NotAnEdge) => {
                let (Some(booted_at), Some(at)) =
                    (self.find_booted(query.booted), self.find_booted(release))
                else {
                    return Err(NotOffered::NotAnEdge);
                };
                let candidate = &self.nodes()[at];
                self.withheld_rollouts(booted_at, query)
                    .into_iter()
                    .find(|(node, _)| std::ptr::eq(*node, candidate))
                    .map_or(Err(NotOffered::NotAnEdge), |(_, hold)| {
                        Err(NotOffered::Held(hold))
                    })
            }
            other => other,
        }
    }

    /// The out-edge targets of the booted node, newest first: each node once,
    /// never the booted node itself nor another node of the same age (a
    /// server may send such edges; following them would re-stage the same release).
    fn candidates(&self, booted_at: usize) -> Vec<&Node> {
        let booted_age = self.nodes()[booted_at].age_index;
        // Before the base guard: a node it holds says which barrier holds it.
        let mut positions = self.rule_successors(booted_at);
        positions.sort_unstable();
        positions.dedup();
        let mut nodes: Vec<&Node> = positions
            .into_iter()
            .filter(|&to| to != booted_at)
            .filter_map(|to| self.nodes().get(to))
            .filter(|node| node.age_index != booted_age)
            .collect();
        nodes.sort_by_key(|node| std::cmp::Reverse(node.age_index));
        nodes
    }
}

/// A booted release named by version that has no payload to boot on `arch`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BootedError {
    /// The release has no entry for the architecture.
    #[error("release {version} has no {arch} image (it has: {have})")]
    NoArch {
        /// The release.
        version: String,
        /// The architecture asked about.
        arch: String,
        /// The architectures it has, comma-separated.
        have: String,
    },
    /// The entry names neither a digest nor a commit.
    #[error("release {version} has no {arch} digest")]
    NoDigest {
        /// The release.
        version: String,
        /// The architecture asked about.
        arch: String,
    },
}

impl BootedError {
    /// A short label.
    pub fn kind(&self) -> &'static str {
        match self {
            BootedError::NoArch { .. } => "no_arch",
            BootedError::NoDigest { .. } => "no_digest",
        }
    }
}

impl GraphDocument {
    /// What a host booted on `booted` reports: a release version becomes its
    /// `arch` manifest digest (or commit, for an ostree-only release);
    /// anything else (a digest, a checksum, a pull spec) is passed as given.
    pub fn booted_id(&self, arch: &str, booted: &str) -> Result<String, BootedError> {
        let Some((_, release)) = self.release(booted) else {
            return Ok(booted.to_string());
        };
        let entry = release
            .architectures
            .get(arch)
            .ok_or_else(|| BootedError::NoArch {
                version: booted.to_string(),
                arch: arch.to_string(),
                have: release
                    .architectures
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        entry
            .digest
            .clone()
            .or_else(|| entry.ostree.clone())
            .ok_or_else(|| BootedError::NoDigest {
                version: booted.to_string(),
                arch: arch.to_string(),
            })
    }
}

impl GraphDocument {
    /// True from the first whole second after `expires` on. Whole seconds keep
    /// this in step with rollouts, whose times are Unix seconds too.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now.as_second() > self.expires.as_second()
    }

    /// The graph of this document that a host reporting `booted` follows.
    pub fn graph_for(&self, arch: &str, booted: &str) -> UpdateGraph {
        UpdateGraph::from_document(self, arch, Scheme::of_booted(booted))
    }

    /// Choose the update for a node of `arch`. An expired document offers nothing.
    pub fn decide(&self, arch: &str, query: &Query<'_>) -> Decision {
        if self.is_expired(query.now) {
            let graph = self.graph_for(arch, query.booted);
            let version = graph
                .find_booted(query.booted)
                .map(|i| graph.nodes()[i].version.clone());
            return Decision::without_update(
                version,
                NoUpdate::DocumentExpired {
                    expires: self.expires,
                },
            );
        }
        self.graph_for(arch, query.booted).decide(query)
    }

    /// [`UpdateGraph::offers`] for a node of `arch`; an expired document
    /// offers nothing.
    pub fn offers(&self, arch: &str, query: &Query<'_>, release: &str) -> Result<(), NotOffered> {
        if self.is_expired(query.now) {
            return Err(NotOffered::DocumentExpired {
                expires: self.expires,
            });
        }
        self.graph_for(arch, query.booted).offers(query, release)
    }

    /// When this node's decision will next change: a rollout reaching its
    /// wariness or starting, or the document expiring, whichever comes first.
    pub fn next_change_after(&self, arch: &str, query: &Query<'_>) -> Option<Timestamp> {
        if query.now > self.expires {
            return None;
        }
        let rollout = self.graph_for(arch, query.booted).next_change_after(query);
        // The document stops being trusted one second after `expires`.
        let expiry = self
            .expires
            .checked_add(jiff::SignedDuration::from_secs(1))
            .ok();
        match (rollout, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
