//! The planning model of `cairn promote`: where each wave tag goes next.
//!
//! A wave is a registry tag that hosts without an agent follow (bootc's own
//! timer, `podman auto-update`), standing for one wariness. Each run moves a
//! wave at most one hop: to the release the agent's own decision function
//! offers a host of that wariness booted on the wave's release now. Barriers
//! hold a wave for a dwell, so that every host checking at least that often
//! boots through them. Pure: the registry's answers, the state and the time
//! come in as values; the plan says which tags move and what to remember.

use crate::document::{GraphDocument, Release};
use crate::select::{Hold, NoUpdate, Query};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

mod explain;
mod state;

pub use state::{AuditEntry, MAX_AUDIT, PromoteState, STATE_SCHEMA, WaveState};
#[cfg(test)]
mod tests;

/// The default `--barrier-dwell`: a week, so weekly checkers boot through.
pub const DEFAULT_BARRIER_DWELL: SignedDuration = SignedDuration::from_hours(7 * 24);

/// Tags of this prefix are Cairn's own (state, documents, halt lists).
const RESERVED_PREFIX: &str = "cairn-";

/// Why promotion cannot be planned; `kind()` is a fixed label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    /// A `TAG=WARINESS` argument that does not parse or is out of bounds.
    #[error("wave {argument:?}: {message}")]
    BadWave {
        /// The argument as given.
        argument: String,
        /// What is wrong with it.
        message: String,
    },
    /// The same tag is named by two waves.
    #[error("wave tag {tag:?} is given twice")]
    DuplicateWave {
        /// The tag.
        tag: String,
    },
    /// A wave tag the image build also pushes: the two would fight over it.
    #[error(
        "wave tag {tag:?} is also a tag the image build pushes; choose a tag of its own, such as {tag}-wave"
    )]
    ReleaseTag {
        /// The tag.
        tag: String,
    },
    /// The document is older than one already acted on.
    #[error(
        "the document's sequence {sequence} is below {last_sequence}, the sequence the promote state last acted on: refusing a replayed document"
    )]
    Replayed {
        /// The document's sequence.
        sequence: u64,
        /// The state's.
        last_sequence: u64,
    },
    /// The document is past its expiry.
    #[error("the update graph document expired at {expires}; publish a fresh one")]
    Expired {
        /// When it expired.
        expires: Timestamp,
    },
    /// The caller did not say where a wave's tag points.
    #[error("wave {tag:?}: where its tag points was not read")]
    NotObserved {
        /// The wave's tag.
        tag: String,
    },
    /// A plan option out of bounds.
    #[error("option {option}: {message}")]
    BadOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The stored state does not parse.
    #[error("promote state: {0}")]
    BadState(String),
    /// The state's waves follow another stream than the document's.
    #[error(
        "the promote state's waves follow stream {state_stream:?}, but the document is of stream {document_stream:?}: give the {state_stream} document, or keep this stream's waves in another repository (--to)"
    )]
    OtherStream {
        /// The state's stream.
        state_stream: String,
        /// The document's.
        document_stream: String,
    },
    /// The halt list is older than one already acted on.
    #[error(
        "the halt list's sequence {sequence} is below {last_sequence}, the sequence the promote state last acted on: refusing a replayed halt list"
    )]
    HaltsReplayed {
        /// The list's sequence.
        sequence: u64,
        /// The state's.
        last_sequence: u64,
    },
}

impl PromoteError {
    /// A short fixed label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PromoteError::BadWave { .. } => "bad_wave",
            PromoteError::DuplicateWave { .. } => "duplicate_wave",
            PromoteError::ReleaseTag { .. } => "release_tag",
            PromoteError::Replayed { .. } => "replayed",
            PromoteError::Expired { .. } => "expired",
            PromoteError::NotObserved { .. } => "not_observed",
            PromoteError::BadOption { .. } => "bad_option",
            PromoteError::BadState(_) => "bad_state",
            PromoteError::OtherStream { .. } => "other_stream",
            PromoteError::HaltsReplayed { .. } => "halts_replayed",
        }
    }
}

/// A wave: a tag hosts follow, and the wariness it stands for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaveSpec {
    /// The registry tag.
    pub tag: String,
    /// The wariness in [0, 1] its hosts are treated with.
    pub wariness: f64,
}

impl WaveSpec {
    /// `stable-early=0.3`: a valid OCI tag not starting with `cairn-`, then a wariness in [0, 1].
    pub fn parse(argument: &str) -> Result<WaveSpec, PromoteError> {
        let (tag, wariness) = argument
            .split_once('=')
            .ok_or_else(|| PromoteError::BadWave {
                argument: argument.to_string(),
                message: "expected TAG=WARINESS, for example stable-early=0.3".into(),
            })?;
        let wariness: f64 = wariness.trim().parse().map_err(|_| PromoteError::BadWave {
            argument: argument.to_string(),
            message: format!("wariness {wariness:?} is not a number"),
        })?;
        WaveSpec::new(tag, wariness).map_err(|e| match e {
            PromoteError::BadWave { message, .. } => PromoteError::BadWave {
                argument: argument.to_string(),
                message,
            },
            other => other,
        })
    }

    /// A wave, checked as [`WaveSpec::parse`] checks it.
    pub fn new(tag: &str, wariness: f64) -> Result<WaveSpec, PromoteError> {
        let bad = |message: String| PromoteError::BadWave {
            argument: format!("{tag}={wariness}"),
            message,
        };
        if !is_oci_tag(tag) {
            return Err(bad(format!(
                "{tag:?} is not a valid tag (a letter, digit or _, then up to 127 of letters, digits, . _ -)"
            )));
        }
        if tag.starts_with(RESERVED_PREFIX) {
            return Err(bad(format!(
                "tags starting with {RESERVED_PREFIX} are Cairn's own"
            )));
        }
        if !(0.0..=1.0).contains(&wariness) {
            return Err(bad(format!("wariness {wariness} is outside [0, 1]")));
        }
        Ok(WaveSpec {
            tag: tag.to_string(),
            wariness,
        })
    }
}

impl std::str::FromStr for WaveSpec {
    type Err = PromoteError;

    fn from_str(argument: &str) -> Result<Self, Self::Err> {
        WaveSpec::parse(argument)
    }
}

/// The OCI distribution spec's tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_oci_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok && tag.len() <= 128 && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Refuses a tag given to two waves, and a wave tag among `forbidden_tags`
/// (every tag the image build pushes: release versions, `stable`, `latest`, ...).
pub fn check_waves(waves: &[WaveSpec], forbidden_tags: &[String]) -> Result<(), PromoteError> {
    let mut seen = BTreeSet::new();
    for wave in waves {
        if !seen.insert(wave.tag.as_str()) {
            return Err(PromoteError::DuplicateWave {
                tag: wave.tag.clone(),
            });
        }
        if forbidden_tags.contains(&wave.tag) {
            return Err(PromoteError::ReleaseTag {
                tag: wave.tag.clone(),
            });
        }
    }
    Ok(())
}

/// Where a wave's tag points now, as the registry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observed {
    /// The tag does not exist: a new wave.
    Absent,
    /// The tag points at this release of the document.
    Release {
        /// Its version.
        version: String,
    },
    /// The tag points at an image of no release of the document: someone
    /// else put it there, and the promoter leaves it alone.
    Unknown {
        /// The digest it points at.
        digest: String,
    },
}

/// The halts a run plans with: the verified list's sequence and the
/// digests of its entries in effect. The default is a stream without halts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HaltsInEffect {
    /// The list's sequence; `None` when the document has halts off.
    pub sequence: Option<u64>,
    /// The digests of the entries in effect, as the agent passes them to
    /// [`Query`]: those of [`crate::halts::HaltList::effective`] given the
    /// document's [`GraphDocument::cleared_halts`].
    pub digests: Vec<String>,
}

/// How a run plans.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// The current time.
    pub now: Timestamp,
    /// How long a wave stays on a barrier release.
    pub barrier_dwell: SignedDuration,
    /// How long a wave stays on any release before its next step.
    pub min_dwell: SignedDuration,
    /// Whether a wave stuck on a bad release moves back to where it came from.
    pub allow_retreat: bool,
    /// The architectures to decide for; `None`: those of the wave's release.
    pub architectures: Option<Vec<String>>,
    /// The document's manifest digest, recorded in the state; `None` for a
    /// file or URL.
    pub document_digest: Option<String>,
}

impl PlanOptions {
    /// The defaults at `now`: a 7-day barrier dwell, no minimum dwell, no retreat.
    pub fn new(now: Timestamp) -> Self {
        PlanOptions {
            now,
            barrier_dwell: DEFAULT_BARRIER_DWELL,
            min_dwell: SignedDuration::ZERO,
            allow_retreat: false,
            architectures: None,
            document_digest: None,
        }
    }

    fn check(&self) -> Result<(), PromoteError> {
        let negative = |option, duration: SignedDuration| {
            if duration.is_negative() {
                Err(PromoteError::BadOption {
                    option,
                    message: format!("{duration:#} is negative"),
                })
            } else {
                Ok(())
            }
        };
        negative("barrier-dwell", self.barrier_dwell)?;
        negative("min-dwell", self.min_dwell)?;
        if self.architectures.as_ref().is_some_and(Vec::is_empty) {
            return Err(PromoteError::BadOption {
                option: "architectures",
                message: "names no architecture".into(),
            });
        }
        Ok(())
    }
}

/// What happens to one wave in this run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A new wave: the tag is created at `to`.
    Start {
        /// The release.
        to: String,
    },
    /// The tag moves one hop forward.
    Move {
        /// The release.
        to: String,
        /// Why, for people.
        why: String,
    },
    /// The tag moves back from a bad release to the one it came from.
    Retreat {
        /// The release.
        to: String,
        /// Why, for people.
        why: String,
        /// What the retreat does to the wave's hosts.
        warning: String,
    },
    /// A step is due but held by time or by disagreement.
    Wait {
        /// Why.
        why: WaitReason,
    },
    /// The graph offers nothing to this wave now.
    Stay {
        /// Why.
        why: StayReason,
    },
    /// The wave cannot be moved safely; the run must fail.
    Stuck {
        /// Why.
        why: StuckReason,
    },
}

/// Why a wave waits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitReason {
    /// On a barrier release, for the barrier dwell.
    BarrierDwell {
        /// When the dwell ends.
        until: Timestamp,
        /// Where the wave goes then, as the graph stands.
        then: String,
    },
    /// On any release, for the minimum dwell.
    MinDwell {
        /// When the dwell ends.
        until: Timestamp,
        /// Where the wave goes then, as the graph stands.
        then: String,
    },
    /// The architectures' next releases differ.
    ArchitecturesDisagree {
        /// Each architecture's next release (`None`: none).
        targets: BTreeMap<String, Option<String>>,
    },
    /// A new wave, and no release is offered to every host yet.
    NoStartingRelease,
}

/// Why the graph offers a wave nothing now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StayReason {
    /// Nothing newer is offered.
    UpToDate,
    /// The next release's rollout has not reached this wave's wariness.
    Rollout {
        /// The release.
        version: String,
        /// Its rollout's progress now.
        progress: f64,
        /// When it reaches this wave, if it ever does under this document.
        reaches: Option<Timestamp>,
    },
    /// The release ahead is a dead-end.
    DeadEndAhead {
        /// The release.
        version: String,
        /// Its reason.
        reason: String,
    },
    /// The release ahead is halted.
    HaltedAhead {
        /// The release.
        version: String,
    },
    /// A base barrier of a derived graph that no release is built on.
    BaseBarrier {
        /// The release beyond it.
        version: String,
        /// The base release that is the barrier.
        base_version: String,
    },
    /// Any other hold, in the selection's words.
    Held {
        /// The release.
        version: String,
        /// Why.
        why: String,
    },
}

/// Why a wave cannot move safely.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StuckReason {
    /// On a dead-end or halted release, with no way forward.
    BadRelease {
        /// The release.
        version: String,
        /// What makes it bad.
        bad: String,
        /// Where a retreat would go (`--allow-retreat`), if anywhere.
        retreat_to: Option<String>,
        /// Why no retreat is possible, when none is.
        no_retreat: Option<String>,
    },
    /// The tag points at an image of no release of the document.
    UnknownImage {
        /// The digest.
        digest: String,
    },
    /// The tag's release has no image for an architecture to decide for,
    /// or the graph does not find it.
    NotDecidable {
        /// The release.
        version: String,
        /// Why.
        why: String,
    },
}

/// One wave's part of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WavePlan {
    /// The wave's tag.
    pub tag: String,
    /// Its wariness.
    pub wariness: f64,
    /// The release its tag points at now (`None`: absent or unknown).
    pub at: Option<String>,
    /// Whether that release is a barrier.
    pub at_barrier: bool,
    /// What happens.
    pub action: Action,
}

/// What a run does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The document sequence planned on.
    pub sequence: u64,
    /// One entry per wave, in the order given.
    pub waves: Vec<WavePlan>,
    /// Whether `next_state` differs from the state read, so must be written
    /// (before any tag moves): a tag moves, a tag was found somewhere the
    /// state did not put it, or the document's sequence is newer than the one
    /// last acted on (stored so that the older document is refused from then on).
    pub state_changed: bool,
    /// The state to store.
    #[serde(skip)]
    pub next_state: PromoteState,
}

impl Plan {
    /// True when some tag is created or moved.
    pub fn changes(&self) -> bool {
        self.waves
            .iter()
            .any(|wave| wave.action.moves_to().is_some())
    }

    /// True when some wave is stuck: the run must exit non-zero.
    pub fn stuck(&self) -> bool {
        self.waves
            .iter()
            .any(|wave| matches!(wave.action, Action::Stuck { .. }))
    }

    /// The tags to point elsewhere, with their releases.
    pub fn moves(&self) -> Vec<(&str, &str)> {
        self.waves
            .iter()
            .filter_map(|wave| Some((wave.tag.as_str(), wave.action.moves_to()?)))
            .collect()
    }
}

impl Action {
    /// The release the tag is pointed at, when it moves.
    pub fn moves_to(&self) -> Option<&str> {
        match self {
            Action::Start { to } | Action::Move { to, .. } | Action::Retreat { to, .. } => Some(to),
            Action::Wait { .. } | Action::Stay { .. } | Action::Stuck { .. } => None,
        }
    }
}

/// The retreat's consequence, said plainly wherever a retreat is shown.
fn retreat_warning(tag: &str, to: &str) -> String {
    format!(
        "bootc has no downgrade check: hosts following {tag} go back to {to} at their next upgrade"
    )
}

/// Plans one run: for each wave, where its tag goes (at most one hop), or
/// why it stays. `observed` says where each wave's tag points now; every
/// wave must have an entry. The caller has verified the signatures of the
/// document and the halt list; their sequences, the document's expiry and
/// its stream are checked here against the state.
pub fn plan(
    document: &GraphDocument,
    halts: &HaltsInEffect,
    waves: &[WaveSpec],
    state: &PromoteState,
    observed: &BTreeMap<String, Observed>,
    options: &PlanOptions,
) -> Result<Plan, PromoteError> {
    options.check()?;
    let versions: Vec<String> = document
        .releases
        .iter()
        .map(|r| r.version.clone())
        .collect();
    check_waves(waves, &versions)?;
    for wave in waves {
        WaveSpec::new(&wave.tag, wave.wariness)?;
    }
    // First: sequences only compare within one stream.
    if let Some(state_stream) = state.stream.as_ref().filter(|s| **s != document.stream) {
        return Err(PromoteError::OtherStream {
            state_stream: state_stream.clone(),
            document_stream: document.stream.clone(),
        });
    }
    if document.sequence < state.last_sequence {
        return Err(PromoteError::Replayed {
            sequence: document.sequence,
            last_sequence: state.last_sequence,
        });
    }
    if let (Some(sequence), Some(last_sequence)) = (halts.sequence, state.halt_sequence)
        && sequence < last_sequence
    {
        return Err(PromoteError::HaltsReplayed {
            sequence,
            last_sequence,
        });
    }
    if document.is_expired(options.now) {
        return Err(PromoteError::Expired {
            expires: document.expires,
        });
    }
    let planner = Planner {
        document,
        halted: &halts.digests,
        options,
    };
    let mut next_state = state.clone();
    // Written back in this version's schema (once, for a schema 1 state).
    next_state.schema = STATE_SCHEMA;
    next_state.last_sequence = document.sequence;
    next_state.stream = Some(document.stream.clone());
    next_state.document_digest = options.document_digest.clone();
    // A document that turns halts off keeps the floor, should they return.
    next_state.halt_sequence = halts.sequence.max(state.halt_sequence);
    let mut planned = Vec::with_capacity(waves.len());
    for wave in waves {
        let seen = observed
            .get(&wave.tag)
            .ok_or_else(|| PromoteError::NotObserved {
                tag: wave.tag.clone(),
            })?;
        planned.push(planner.plan_wave(wave, seen, &mut next_state));
    }
    Ok(Plan {
        sequence: document.sequence,
        waves: planned,
        state_changed: next_state != *state,
        next_state,
    })
}

struct Planner<'a> {
    document: &'a GraphDocument,
    halted: &'a [String],
    options: &'a PlanOptions,
}

impl Planner<'_> {
    fn plan_wave(&self, wave: &WaveSpec, seen: &Observed, state: &mut PromoteState) -> WavePlan {
        let unplaced = |action| WavePlan {
            tag: wave.tag.clone(),
            wariness: wave.wariness,
            at: None,
            at_barrier: false,
            action,
        };
        match seen {
            Observed::Absent if state.waves.contains_key(&wave.tag) => self.restore(wave, state),
            Observed::Absent => {
                let Some(start) = self.starting_release() else {
                    return unplaced(Action::Wait {
                        why: WaitReason::NoStartingRelease,
                    });
                };
                let why = "new wave: the newest release offered to every host";
                self.arrive(state, &wave.tag, None, &start.version, None, why);
                unplaced(Action::Start {
                    to: start.version.clone(),
                })
            }
            Observed::Unknown { digest } => unplaced(Action::Stuck {
                why: StuckReason::UnknownImage {
                    digest: digest.clone(),
                },
            }),
            Observed::Release { version } => match self.document.release(version) {
                Some((_, release)) => self.plan_placed(wave, release, state),
                None => WavePlan {
                    at: Some(version.clone()),
                    ..unplaced(Action::Stuck {
                        why: StuckReason::NotDecidable {
                            version: version.clone(),
                            why: "it is in no release of the document".into(),
                        },
                    })
                },
            },
        }
    }

    /// A wave the state knows whose tag is gone (registry retention, or
    /// deleted by hand): its hosts are still where the state put it, so the
    /// tag goes back there, and the dwell restarts. Starting it afresh at the
    /// newest release could take them across barriers in one step.
    fn restore(&self, wave: &WaveSpec, state: &mut PromoteState) -> WavePlan {
        let recorded = state.waves[&wave.tag].clone();
        let version = recorded.version.clone();
        let stuck = |why: String| WavePlan {
            tag: wave.tag.clone(),
            wariness: wave.wariness,
            at: None,
            at_barrier: false,
            action: Action::Stuck {
                why: StuckReason::NotDecidable {
                    version: version.clone(),
                    why,
                },
            },
        };
        let Some((_, release)) = self.document.release(&version) else {
            return stuck("the tag is gone, and the release the promote state had it on is in no release of the document".into());
        };
        if let Some(bad) = self.badness(release) {
            return stuck(format!(
                "the tag is gone, and the release the promote state had it on is {bad}: put the tag back by hand"
            ));
        }
        let why = "the tag was gone: put back where the promote state had it; the dwell restarts";
        self.arrive(state, &wave.tag, None, &version, recorded.came_from, why);
        WavePlan {
            tag: wave.tag.clone(),
            wariness: wave.wariness,
            at: None,
            at_barrier: release.barrier.is_some(),
            action: Action::Start { to: version },
        }
    }

    /// The plan for a wave whose tag points at `release`.
    fn plan_placed(
        &self,
        wave: &WaveSpec,
        release: &Release,
        state: &mut PromoteState,
    ) -> WavePlan {
        let current = &release.version;
        let here = match state.waves.get(&wave.tag) {
            Some(recorded) if recorded.version == *current => recorded.clone(),
            // Moved by someone else, or a move that did not finish: the
            // dwell restarts rather than being skipped.
            other => {
                let from = other.map(|r| r.version.clone());
                let why = "found here, not where the promote state put it: the dwell restarts";
                self.arrive(state, &wave.tag, from, current, None, why);
                state.waves[&wave.tag].clone()
            }
        };
        let action = self.next_step(wave, release, &here);
        if let Some(to) = action.moves_to() {
            // After a retreat the wave's history is unknown: no second retreat.
            let (came_from, why) = match &action {
                Action::Retreat { why, warning, .. } => (None, format!("{why}; {warning}")),
                Action::Move { why, .. } => (Some(current.clone()), why.clone()),
                _ => (Some(current.clone()), String::new()),
            };
            self.arrive(state, &wave.tag, Some(current.clone()), to, came_from, &why);
        }
        WavePlan {
            tag: wave.tag.clone(),
            wariness: wave.wariness,
            at: Some(current.clone()),
            at_barrier: release.barrier.is_some(),
            action,
        }
    }

    /// Records that the wave's tag is (or will be) at `to` from now on.
    fn arrive(
        &self,
        state: &mut PromoteState,
        tag: &str,
        from: Option<String>,
        to: &str,
        came_from: Option<String>,
        why: &str,
    ) {
        let now = self.options.now;
        state.waves.insert(
            tag.to_string(),
            WaveState {
                version: to.to_string(),
                arrived: now,
                came_from,
            },
        );
        state.record(AuditEntry {
            time: now,
            tag: tag.to_string(),
            from,
            to: to.to_string(),
            why: why.to_string(),
            sequence: Some(self.document.sequence),
        });
    }

    /// The architectures decided for a wave on `release`.
    fn architectures(&self, release: &Release) -> Vec<String> {
        match &self.options.architectures {
            Some(given) => given.clone(),
            None => release
                .architectures
                .iter()
                .filter(|(_, entry)| entry.digest.is_some())
                .map(|(arch, _)| arch.clone())
                .collect(),
        }
    }

    fn is_halted(&self, release: &Release) -> bool {
        release.architectures.values().any(|entry| {
            entry
                .digest
                .iter()
                .chain(&entry.aliases)
                .any(|digest| self.halted.contains(digest))
        })
    }

    /// Why a release must not be a wave's home, if it must not.
    fn badness(&self, release: &Release) -> Option<String> {
        if let Some(deadend) = &release.deadend {
            let reason = deadend.describe();
            let reason = if reason.is_empty() {
                "generic".into()
            } else {
                reason
            };
            return Some(format!("a dead-end ({reason})"));
        }
        self.is_halted(release)
            .then(|| "halted by the stream's halt list".to_string())
    }

    /// The newest release offered to every host now: an edge target whose
    /// rollout (if any) is complete, with an available image for every
    /// architecture, neither a dead-end nor halted, and with a known base in
    /// a derived graph.
    fn starting_release(&self) -> Option<&Release> {
        let now = self.options.now.as_second();
        let arches = self
            .options
            .architectures
            .clone()
            .unwrap_or_else(|| self.document.architectures());
        let derived = self.document.base.is_some();
        self.document
            .update_order()
            .into_iter()
            .rev()
            .filter_map(|position| self.document.releases.get(position))
            .find(|release| {
                let offered = match release.rollout {
                    Some(rollout) => !rollout.hides(1.0, now),
                    None => release.barrier.is_some(),
                };
                let complete = arches.iter().all(|arch| {
                    release
                        .architectures
                        .get(arch)
                        .is_some_and(|entry| entry.digest.is_some() && entry.available)
                });
                let base_known =
                    !derived || release.base.as_ref().is_some_and(|b| b.age_index.is_some());
                offered && complete && base_known && self.badness(release).is_none()
            })
    }

    /// The step for a wave found on `release`, there since `here.arrived`.
    fn next_step(&self, wave: &WaveSpec, release: &Release, here: &WaveState) -> Action {
        let now = self.options.now;
        let arches = self.architectures(release);
        let mut targets = BTreeMap::new();
        let mut first_decision = None;
        for arch in &arches {
            let booted = match self.document.booted_id(arch, &release.version) {
                Ok(booted) => booted,
                Err(e) => {
                    return Action::Stuck {
                        why: StuckReason::NotDecidable {
                            version: release.version.clone(),
                            why: e.to_string(),
                        },
                    };
                }
            };
            let query = Query {
                booted: &booted,
                wariness: wave.wariness,
                now,
                deny: &[],
                halted: self.halted,
                allow_downgrade: false,
            };
            let decision = self.document.decide(arch, &query);
            targets.insert(
                arch.clone(),
                decision.target.as_ref().map(|t| t.version.clone()),
            );
            first_decision.get_or_insert(decision);
        }
        let distinct: BTreeSet<&Option<String>> = targets.values().collect();
        if distinct.len() > 1 {
            return Action::Wait {
                why: WaitReason::ArchitecturesDisagree { targets },
            };
        }
        let Some(decision) = first_decision else {
            return Action::Stuck {
                why: StuckReason::NotDecidable {
                    version: release.version.clone(),
                    why: "it has no image digest for any architecture".into(),
                },
            };
        };
        let bad = self.badness(release);
        if let Some(target) = &decision.target {
            let why = match &bad {
                Some(bad) => format!("{} is {bad}; {}", release.version, decision.reason()),
                None => decision.reason(),
            };
            return self
                .dwell(release, here, &target.version, bad.is_some())
                .unwrap_or_else(|| Action::Move {
                    to: target.version.clone(),
                    why,
                });
        }
        if let Some(bad) = bad {
            return self.off_bad_release(wave, release, here, bad);
        }
        match &decision.no_update {
            Some(NoUpdate::BootedNotInGraph { booted }) => Action::Stuck {
                why: StuckReason::NotDecidable {
                    version: release.version.clone(),
                    why: format!("the graph does not find its image {booted}"),
                },
            },
            Some(why) => Action::Stay {
                why: self.stay_reason(wave, why),
            },
            None => Action::Stay {
                why: StayReason::UpToDate,
            },
        }
    }

    /// A pending dwell before moving to `then`. Leaving a bad release waives
    /// the minimum dwell, but never a barrier's.
    fn dwell(&self, release: &Release, here: &WaveState, then: &str, bad: bool) -> Option<Action> {
        let now = self.options.now;
        let until =
            |dwell: SignedDuration| here.arrived.checked_add(dwell).unwrap_or(Timestamp::MAX);
        if release.barrier.is_some() && now < until(self.options.barrier_dwell) {
            return Some(Action::Wait {
                why: WaitReason::BarrierDwell {
                    until: until(self.options.barrier_dwell),
                    then: then.to_string(),
                },
            });
        }
        if !bad && now < until(self.options.min_dwell) {
            return Some(Action::Wait {
                why: WaitReason::MinDwell {
                    until: until(self.options.min_dwell),
                    then: then.to_string(),
                },
            });
        }
        None
    }

    /// A wave on a dead-end or halted release the graph offers no way off.
    fn off_bad_release(
        &self,
        wave: &WaveSpec,
        release: &Release,
        here: &WaveState,
        bad: String,
    ) -> Action {
        let retreat = match &here.came_from {
            None => Err("the promote state records no release it came from".to_string()),
            Some(from) => match self.document.release(from) {
                None => Err(format!(
                    "{from}, where it came from, is not in the document"
                )),
                Some((_, earlier)) => match self.badness(earlier) {
                    Some(also) => Err(format!("{from}, where it came from, is {also} too")),
                    None => Ok(from.clone()),
                },
            },
        };
        match retreat {
            Ok(to) if self.options.allow_retreat => Action::Retreat {
                warning: retreat_warning(&wave.tag, &to),
                why: format!(
                    "{} is {bad} and the graph offers no way forward",
                    release.version
                ),
                to,
            },
            retreat => {
                let (retreat_to, no_retreat) = match retreat {
                    Ok(to) => (Some(to), None),
                    Err(why) => (None, Some(why)),
                };
                Action::Stuck {
                    why: StuckReason::BadRelease {
                        version: release.version.clone(),
                        bad,
                        retreat_to,
                        no_retreat,
                    },
                }
            }
        }
    }

    fn stay_reason(&self, wave: &WaveSpec, why: &NoUpdate) -> StayReason {
        let NoUpdate::Held(held) = why else {
            return StayReason::UpToDate;
        };
        let version = held.version.clone();
        match &held.hold {
            Hold::Rollout { progress, .. } => {
                let reaches = self
                    .document
                    .release(&version)
                    .and_then(|(_, r)| r.rollout)
                    .and_then(|r| r.visible_from(wave.wariness, self.options.now.as_second()))
                    .and_then(|second| Timestamp::from_second(second).ok());
                StayReason::Rollout {
                    version,
                    progress: *progress,
                    reaches,
                }
            }
            Hold::DeadEnd { reason } => StayReason::DeadEndAhead {
                version,
                reason: reason.clone(),
            },
            Hold::Halted => StayReason::HaltedAhead { version },
            Hold::BaseBarrier { barrier, .. } => StayReason::BaseBarrier {
                version,
                base_version: barrier.version.clone(),
            },
            Hold::SameConfig => StayReason::UpToDate,
            hold => StayReason::Held {
                version,
                why: hold.to_string(),
            },
        }
    }
}
