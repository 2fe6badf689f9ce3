//! What one check decides, and whether a staged update may be finalized now.
//! Pure: the host's status, the document and the time come in as values.

use crate::config::Settings;
use crate::host::HostStatus;
use crate::machine::Target;
use crate::reason::{Reason, ReasonKind};
use crate::source::SourceGraph;
use cairn_graph::{NotOffered, Query};
use jiff::Timestamp;

/// What to do after a check.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Stage this target.
    Stage(Target),
    /// The staged target is still the right one.
    Keep(Target),
    /// A newer target replaces the staged one.
    Restage(Target),
    /// The staged target must go (dead-end, gone from the graph, rolled back).
    Unstage(Reason),
    /// The staged target must go, and this one, offered now, takes its
    /// place: drop it first where the host tool can (rpm-ostree compares a
    /// new deployment's date with the pending one's), then stage.
    Replace(Target, Reason),
    /// Nothing to do, and why.
    Nothing(Reason),
}

/// Everything a check needs.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// Settings.
    pub settings: &'a Settings,
    /// The host.
    pub host: &'a HostStatus,
    /// The trusted document, or the graph a Cincinnati server sent.
    pub graph: &'a SourceGraph,
    /// Fedora's architecture name of this host.
    pub arch: &'a str,
    /// This node's wariness.
    pub wariness: f64,
    /// Now.
    pub now: Timestamp,
    /// Rolled-back digests.
    pub deny: &'a [String],
    /// Digests of releases the stream's verified halt list halts (its
    /// entries minus the ids the document clears).
    pub halted: &'a [String],
    /// Held by the operator.
    pub held: bool,
    /// The staged release was staged by the operator on purpose: the
    /// rollout's wariness and the base-barrier guard do not withdraw it.
    pub operator_staged: bool,
}

/// Decide what a check leads to, with the reason an operator sees.
pub fn plan(input: &CheckInput<'_>) -> Plan {
    let Some(booted) = input.host.booted.as_ref().and_then(|b| b.digest.clone()) else {
        return Plan::Nothing(Reason::new(
            ReasonKind::NoBootedDigest,
            "the host reports no booted image digest",
        ));
    };
    let query = Query {
        booted: &booted,
        wariness: input.wariness,
        now: input.now,
        deny: input.deny,
        halted: input.halted,
        allow_downgrade: input.settings.allow_downgrade,
    };
    let decision = input.graph.decide(input.arch, &query);
    // The target to take, or why there is none.
    let mut target = Reason::of_decision(&decision).map(|t| Target {
        version: t.version.clone(),
        digest: t.digest.clone(),
    });
    // A local ceiling: never past max_version.
    if let (Some(max), Some(chosen)) = (&input.settings.max_version, &decision.target) {
        match input.graph.age_of_version(max) {
            Some(ceiling) if chosen.age_index > ceiling => {
                target = Err(Reason::new(
                    ReasonKind::PastMaxVersion,
                    format!("{} is past max_version {max}", chosen.version),
                ));
            }
            None => {
                target = Err(Reason::new(
                    ReasonKind::MaxVersionUnknown,
                    format!(
                        "max_version {max} is not a release of this stream; no update is taken"
                    ),
                ));
            }
            _ => {}
        }
    }
    let staged = input.host.staged.as_ref().and_then(|s| s.digest.clone());
    // A staged release past the local ceiling goes, whatever the graph says.
    if let (Some(max), Some(staged_digest)) = (&input.settings.max_version, &staged) {
        let ceiling = input.graph.age_of_version(max);
        let staged_age = input
            .graph
            .release_of_digest(staged_digest)
            .map(|(_, age)| age);
        if let (Some(ceiling), Some(age)) = (ceiling, staged_age)
            && age > ceiling
        {
            return Plan::Unstage(Reason::new(
                ReasonKind::StagedPastMaxVersion,
                format!("the staged release is past max_version {max}"),
            ));
        }
    }
    // A staged release the graph no longer offers this host, now, goes
    // before anything else is decided: a rollout paused or narrowed, an
    // edge gone, a dead-end, the deny-list, an expired document.
    let frozen = input.held || !input.settings.enabled;
    if let Some(staged_digest) = &staged
        && target.as_ref().map_or(true, |t| t.digest != *staged_digest)
        && let Err(why) = input.graph.offers(input.arch, &query, staged_digest)
        && !(input.operator_staged && why.waived_for_operator())
    {
        // Another release offered now replaces it at once: staging is how
        // bootc, which cannot drop a staged deployment, replaces one.
        let why = withdrawal(input, staged_digest, &why);
        return match target {
            Ok(target) if !frozen => Plan::Replace(target, why),
            _ => Plan::Unstage(why),
        };
    }
    let staged_version = |staged: &str| {
        input
            .graph
            .release_of_digest(staged)
            .map_or_else(|| "the staged release".to_string(), |(version, _)| version)
    };
    let staged_age = |staged: &str| input.graph.release_of_digest(staged).map(|(_, age)| age);
    match (staged, target) {
        (Some(staged), Ok(target)) if target.digest == staged => Plan::Keep(target),
        // Held or disabled: nothing new is staged, not even over an older one.
        (Some(staged), Ok(_)) if frozen => Plan::Keep(Target {
            version: staged_version(&staged),
            digest: staged,
        }),
        // The operator's pick stays unless something newer is offered.
        (Some(staged), Ok(target))
            if input.operator_staged
                && staged_age(&staged).is_some_and(|age| {
                    input
                        .graph
                        .release_of_digest(&target.digest)
                        .is_none_or(|(_, target_age)| target_age <= age)
                }) =>
        {
            Plan::Keep(Target {
                version: staged_version(&staged),
                digest: staged,
            })
        }
        (Some(_), Ok(target)) => Plan::Restage(target),
        // Still offered (checked above), or kept as the operator's pick.
        (Some(staged), Err(_)) => Plan::Keep(Target {
            version: staged_version(&staged),
            digest: staged,
        }),
        // The offered update, in the graph's words, under what keeps it back.
        (None, Ok(_)) if !input.settings.enabled => Plan::Nothing(
            Reason::new(ReasonKind::Disabled, decision.reason())
                .noting("updates are disabled in the configuration"),
        ),
        (None, Ok(_)) if input.held => Plan::Nothing(
            Reason::new(ReasonKind::Held, decision.reason()).noting("held by the operator"),
        ),
        (None, Ok(target)) => Plan::Stage(target),
        (None, Err(why)) => Plan::Nothing(why),
    }
}

/// The reason a staged release is withdrawn, with the kind that names why.
fn withdrawal(input: &CheckInput<'_>, staged: &str, why: &NotOffered) -> Reason {
    use cairn_graph::select::Hold;
    let version = input
        .graph
        .release_of_digest(staged)
        .map_or_else(|| staged.to_string(), |(version, _)| version);
    let kind = match why {
        NotOffered::NotInGraph => ReasonKind::StagedLeftGraph,
        NotOffered::Held(Hold::DeadEnd { .. }) => ReasonKind::StagedDeadEnd,
        NotOffered::Held(Hold::RolledBack) => ReasonKind::StagedDenied,
        NotOffered::Held(Hold::BaseBarrier { .. } | Hold::UnknownBase) => {
            ReasonKind::StagedCrossesBaseBarrier
        }
        NotOffered::Held(Hold::Halted) => ReasonKind::StagedHalted,
        _ => ReasonKind::StagedNotOffered,
    };
    let message = match why {
        NotOffered::NotInGraph => {
            format!("the staged release {staged} is no longer in the graph")
        }
        NotOffered::Held(Hold::DeadEnd { reason }) => {
            format!("the staged release {version} became a dead-end: {reason}")
        }
        NotOffered::Held(Hold::RolledBack) => {
            format!("the staged release {version} was rolled back from")
        }
        NotOffered::Held(Hold::Halted) => {
            format!("the staged release {version} is halted by the stream's halt list")
        }
        why => format!("the staged release {version} is no longer offered to this host: {why}"),
    };
    Reason::new(kind, message)
}

/// Why finalization must wait.
#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    /// Outside every maintenance window.
    Window {
        /// When the next one opens, as `Sat 02:00 Europe/Berlin`.
        next: String,
    },
    /// Held by the operator.
    Held,
    /// Interactive users are logged in.
    Users,
    /// Updates are disabled in the configuration.
    Disabled,
}

impl Wait {
    /// The reason kind a status carries while finalization waits.
    pub fn kind(&self) -> ReasonKind {
        match self {
            Wait::Window { .. } => ReasonKind::WindowClosed,
            Wait::Held => ReasonKind::Held,
            Wait::Users => ReasonKind::UsersLoggedIn,
            Wait::Disabled => ReasonKind::Disabled,
        }
    }

    /// The wait, in kind and words.
    pub fn reason(&self) -> Reason {
        Reason::new(self.kind(), self.to_string())
    }
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Window { next } => write!(f, "waiting for window {next}"),
            Wait::Held => f.write_str("held by operator"),
            Wait::Users => f.write_str("waiting for interactive users to log out"),
            Wait::Disabled => f.write_str("updates are disabled in the configuration"),
        }
    }
}

/// The gates before the reboot lock, in order: inside a window, not held,
/// no interactive users. The lock itself is taken by the caller afterwards.
pub fn finalize_gate(
    settings: &Settings,
    now: Timestamp,
    held: bool,
    users_logged_in: bool,
) -> Result<(), Wait> {
    if !settings.enabled {
        return Err(Wait::Disabled);
    }
    if let Some(schedule) = &settings.schedule
        && !schedule.is_open(now)
    {
        let next = schedule.next_opening(now).map_or_else(
            || "(none in the next week)".to_string(),
            |t| schedule.describe(t),
        );
        return Err(Wait::Window { next });
    }
    if held {
        return Err(Wait::Held);
    }
    if users_logged_in {
        return Err(Wait::Users);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigDirs, load};
    use crate::host::{Deployment, SignatureMode, Tool};

    fn document() -> SourceGraph {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/examples/stable.json");
        SourceGraph::Document(
            cairn_graph::GraphDocument::from_json(&std::fs::read(path).expect("example"))
                .expect("parses")
                .document,
        )
    }

    fn digest(doc: &SourceGraph, version: &str) -> String {
        let SourceGraph::Document(doc) = doc else {
            panic!("a document")
        };
        doc.release(version)
            .and_then(|(_, r)| r.architectures["x86_64"].digest.clone())
            .expect("digest")
    }

    fn host(booted: &str, staged: Option<&str>) -> HostStatus {
        let deployment = |d: &str| Deployment {
            digest: Some(d.parse().expect("an id")),
            ..Deployment::default()
        };
        HostStatus {
            tool: Tool::Bootc,
            booted: Some(deployment(booted)),
            staged: staged.map(deployment),
            rollback: None,
            followed: None,
            ostree_origin: None,
            signature: SignatureMode::ContainerPolicy,
            update_driver: None,
            update_driver_unit: None,
        }
    }

    fn settings(text: &str) -> Settings {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("etc/cairn/config.d");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("50-test.toml"), text).expect("write");
        load(&ConfigDirs::under(root.path())).expect("valid")
    }

    const NOW: &str = "2025-11-11T16:00:00Z"; // the rollout of 43.20251110.0 is at 55%

    fn input<'a>(
        settings: &'a Settings,
        host: &'a HostStatus,
        doc: &'a SourceGraph,
        wariness: f64,
        deny: &'a [String],
        held: bool,
    ) -> CheckInput<'a> {
        CheckInput {
            settings,
            host,
            graph: doc,
            arch: "x86_64",
            wariness,
            now: NOW.parse().expect("time"),
            deny,
            halted: &[],
            held,
            operator_staged: false,
        }
    }

    #[test]
    fn stage_keep_restage_and_unstage() {
        let doc = document();
        let s = settings("");
        let barrier = digest(&doc, "42.20250929.0");
        let newest = digest(&doc, "43.20251110.0");
        let older = digest(&doc, "43.20251027.0");
        let booted = host(&barrier, None);
        assert_eq!(
            plan(&input(&s, &booted, &doc, 0.5, &[], false)),
            Plan::Stage(Target {
                version: "43.20251110.0".into(),
                digest: newest.parse().expect("an id")
            })
        );
        let staged_newest = host(&barrier, Some(&newest));
        assert!(matches!(
            plan(&input(&s, &staged_newest, &doc, 0.5, &[], false)),
            Plan::Keep(_)
        ));
        let staged_older = host(&barrier, Some(&older));
        assert!(
            matches!(plan(&input(&s, &staged_older, &doc, 0.5, &[], false)), Plan::Restage(t) if t.digest == newest)
        );
        // The staged release becomes a dead-end: un-stage.
        let SourceGraph::Document(mut dead) = doc.clone() else {
            panic!("a document")
        };
        dead.releases[5].deadend = Some(cairn_graph::Reason::new("bad"));
        dead.releases[4].deadend = Some(cairn_graph::Reason::new("bad too"));
        let dead = SourceGraph::Document(dead);
        assert!(
            matches!(plan(&input(&s, &staged_newest, &dead, 0.5, &[], false)), Plan::Unstage(r) if r.kind == ReasonKind::StagedDeadEnd)
        );
    }

    #[test]
    fn every_decision_without_an_update_has_its_own_kind() {
        use cairn_graph::select::{Decision, Held, Hold, NoUpdate};
        let held = |hold: Hold| {
            NoUpdate::Held(Held {
                version: "44.3".into(),
                age_index: 2,
                hold,
            })
        };
        let barrier = Hold::BaseBarrier {
            barrier: cairn_graph::document::BaseBarrier::default(),
            repository: "acme/os".into(),
            base_repository: "fedora/fedora-coreos".into(),
        };
        let expires = NOW.parse().expect("time");
        let cases = [
            (None, ReasonKind::UpToDate),
            (Some(NoUpdate::UpToDate), ReasonKind::UpToDate),
            (
                Some(NoUpdate::BootedNotInGraph {
                    booted: "sha256:a".into(),
                }),
                ReasonKind::BootedNotInGraph,
            ),
            (
                Some(NoUpdate::DeadEnd {
                    version: "44.2".into(),
                    reason: String::new(),
                }),
                ReasonKind::BootedDeadEnd,
            ),
            (
                Some(NoUpdate::DocumentExpired { expires }),
                ReasonKind::DocumentExpired,
            ),
            (
                Some(held(Hold::Rollout {
                    progress: 0.5,
                    wariness: 0.9,
                })),
                ReasonKind::RolloutPending,
            ),
            (Some(held(Hold::SameConfig)), ReasonKind::UpToDate),
            (
                Some(held(Hold::DeadEnd {
                    reason: String::new(),
                })),
                ReasonKind::TargetDeadEnd,
            ),
            (Some(held(Hold::Unavailable)), ReasonKind::TargetUnavailable),
            (Some(held(Hold::RolledBack)), ReasonKind::TargetRolledBack),
            (Some(held(Hold::Downgrade)), ReasonKind::TargetDowngrade),
            (Some(held(barrier)), ReasonKind::BaseBarrier),
            (Some(held(Hold::UnknownBase)), ReasonKind::UnknownBase),
        ];
        for (no_update, kind) in cases {
            let decision = Decision {
                booted_version: Some("44.2".into()),
                target: None,
                no_update: no_update.clone(),
                held: Vec::new(),
            };
            let reason = Reason::of_decision(&decision).expect_err("no target");
            assert_eq!(reason.kind, kind, "{no_update:?}");
            assert_eq!(reason.message, decision.reason());
        }
    }

    #[test]
    fn holds_ceilings_and_disabled_updates() {
        let doc = document();
        let barrier = digest(&doc, "42.20250929.0");
        let booted = host(&barrier, None);
        // The offered update in the graph's words, under the kind that keeps it back.
        let held = plan(&input(&settings(""), &booted, &doc, 0.5, &[], true));
        assert_eq!(
            held,
            Plan::Nothing(Reason::new(
                ReasonKind::Held,
                "update available: 43.20251110.0; held by the operator"
            ))
        );
        let unknown = settings("[updates]\nmax_version = \"99.0\"\n");
        assert!(
            matches!(plan(&input(&unknown, &booted, &doc, 0.5, &[], false)), Plan::Nothing(r) if r.kind == ReasonKind::MaxVersionUnknown)
        );
        let capped = settings("[updates]\nmax_version = \"43.20251027.0\"\n");
        assert_eq!(
            plan(&input(&capped, &booted, &doc, 0.5, &[], false)),
            Plan::Nothing(Reason::new(
                ReasonKind::PastMaxVersion,
                "43.20251110.0 is past max_version 43.20251027.0"
            ))
        );
        let disabled = settings("[updates]\nenabled = false\n");
        assert!(
            matches!(plan(&input(&disabled, &booted, &doc, 0.5, &[], false)), Plan::Nothing(r) if r.kind == ReasonKind::Disabled && r.message.starts_with("update available: 43.20251110.0"))
        );
        // A held rollout says so.
        let late = plan(&input(
            &settings(""),
            &host(&digest(&doc, "43.20251027.0"), None),
            &doc,
            0.9,
            &[],
            false,
        ));
        assert_eq!(
            late,
            Plan::Nothing(Reason::new(
                ReasonKind::RolloutPending,
                "rollout of 43.20251110.0 at 55%, this node's wariness is 0.9"
            ))
        );
    }

    #[test]
    fn a_staged_update_stays_put_while_held_and_goes_past_the_ceiling() {
        let doc = document();
        let barrier = digest(&doc, "42.20250929.0");
        let older = digest(&doc, "43.20251027.0");
        let newest = digest(&doc, "43.20251110.0");
        let staged_older = host(&barrier, Some(&older));
        let held = plan(&input(&settings(""), &staged_older, &doc, 0.5, &[], true));
        assert_eq!(
            held,
            Plan::Keep(Target {
                version: "43.20251027.0".into(),
                digest: older.parse().expect("an id")
            }),
            "no re-stage while held"
        );
        let disabled = plan(&input(
            &settings("[updates]\nenabled = false\n"),
            &staged_older,
            &doc,
            0.5,
            &[],
            false,
        ));
        assert!(matches!(disabled, Plan::Keep(_)));
        let staged_newest = host(&barrier, Some(&newest));
        let capped = plan(&input(
            &settings("[updates]\nmax_version = \"43.20251027.0\"\n"),
            &staged_newest,
            &doc,
            0.5,
            &[],
            false,
        ));
        assert!(matches!(capped, Plan::Unstage(r) if r.kind == ReasonKind::StagedPastMaxVersion));
        assert_eq!(
            finalize_gate(
                &settings("[updates]\nenabled = false\n"),
                NOW.parse().expect("time"),
                false,
                false
            ),
            Err(Wait::Disabled)
        );
    }

    #[test]
    fn a_staged_release_no_longer_offered_goes_unless_the_operator_staged_it() {
        let doc = document();
        let s = settings("");
        let barrier = digest(&doc, "42.20250929.0");
        let newest = digest(&doc, "43.20251110.0");
        let staged_newest = host(&barrier, Some(&newest));
        // At 55%, the rollout of the staged release no longer reaches 0.9:
        // the older release offered replaces it.
        let narrowed = plan(&input(&s, &staged_newest, &doc, 0.9, &[], false));
        assert_eq!(
            narrowed,
            Plan::Replace(
                Target {
                    version: "43.20251027.0".into(),
                    digest: digest(&doc, "43.20251027.0").parse().expect("an id")
                },
                Reason::new(
                    ReasonKind::StagedNotOffered,
                    "the staged release 43.20251110.0 is no longer offered to this host: rollout at 55%, this node's wariness is 0.9"
                )
            )
        );
        // Held, or with updates disabled, it goes and nothing replaces it.
        let held = plan(&input(&s, &staged_newest, &doc, 0.9, &[], true));
        assert_eq!(
            held,
            Plan::Unstage(Reason::new(
                ReasonKind::StagedNotOffered,
                "the staged release 43.20251110.0 is no longer offered to this host: rollout at 55%, this node's wariness is 0.9"
            ))
        );
        let disabled = settings("[updates]\nenabled = false\n");
        let off = plan(&input(&disabled, &staged_newest, &doc, 0.9, &[], false));
        assert!(matches!(off, Plan::Unstage(r) if r.kind == ReasonKind::StagedNotOffered));
        // Staged by the operator (update-now at wariness 0): kept, not
        // replaced by the older release the rollout offers.
        let operator = CheckInput {
            operator_staged: true,
            ..input(&s, &staged_newest, &doc, 0.9, &[], false)
        };
        assert_eq!(
            plan(&operator),
            Plan::Keep(Target {
                version: "43.20251110.0".into(),
                digest: newest.parse().expect("an id")
            })
        );
        // ...but not once it is a dead-end or deny-listed.
        let SourceGraph::Document(mut dead) = doc.clone() else {
            panic!("a document")
        };
        dead.releases[5].deadend = Some(cairn_graph::Reason::new("bad"));
        dead.releases[4].deadend = Some(cairn_graph::Reason::new("bad too"));
        let dead = SourceGraph::Document(dead);
        let operator_dead = CheckInput {
            graph: &dead,
            ..operator
        };
        assert!(
            matches!(plan(&operator_dead), Plan::Unstage(r) if r.kind == ReasonKind::StagedDeadEnd)
        );
        let deny = [newest.clone()];
        let operator_denied = CheckInput {
            deny: &deny,
            ..operator
        };
        // Deny-listed: the older release offered replaces it.
        assert!(
            matches!(plan(&operator_denied), Plan::Replace(t, r) if t.version == "43.20251027.0" && r.kind == ReasonKind::StagedDenied)
        );
        // An expired document offers nothing: the staged release goes too.
        let SourceGraph::Document(mut expired) = doc.clone() else {
            panic!("a document")
        };
        expired.expires = "2025-11-01T00:00:00Z".parse().expect("time");
        let expired = SourceGraph::Document(expired);
        let stale = CheckInput {
            graph: &expired,
            ..input(&s, &staged_newest, &doc, 0.5, &[], false)
        };
        assert!(
            matches!(plan(&stale), Plan::Unstage(r) if r.kind == ReasonKind::StagedNotOffered && r.message.contains("expired"))
        );
    }

    #[test]
    fn a_halted_release_is_not_staged_and_a_staged_one_is_withdrawn_even_if_the_operator_picked_it()
    {
        let doc = document();
        let s = settings("");
        let older = digest(&doc, "43.20251027.0");
        let newest = digest(&doc, "43.20251110.0");
        let halted = [newest.clone()];
        let booted_old = host(&older, None);
        let fresh = CheckInput {
            halted: &halted,
            ..input(&s, &booted_old, &doc, 0.0, &[], false)
        };
        assert!(
            matches!(plan(&fresh), Plan::Nothing(r) if r.kind == ReasonKind::TargetHalted),
            "{:?}",
            plan(&fresh)
        );
        let staged = host(&older, Some(&newest));
        let picked = CheckInput {
            halted: &halted,
            operator_staged: true,
            ..input(&s, &staged, &doc, 0.0, &[], false)
        };
        assert!(
            matches!(plan(&picked), Plan::Unstage(ref r) if r.kind == ReasonKind::StagedHalted && r.message.contains("halt list")),
            "{:?}",
            plan(&picked)
        );
    }

    #[test]
    fn gates_in_order() {
        let s = settings(
            "[strategy]\ntime_zone = \"UTC\"\n[[strategy.window]]\ndays = [\"Sat\"]\nstart_time = \"02:00\"\nlength_minutes = 60\n",
        );
        let thursday: Timestamp = "2026-11-26T12:00:00Z".parse().expect("time");
        assert_eq!(
            finalize_gate(&s, thursday, false, false),
            Err(Wait::Window {
                next: "Sat 02:00 UTC".into()
            })
        );
        assert_eq!(
            finalize_gate(&s, thursday, false, false).map_err(|w| w.to_string()),
            Err("waiting for window Sat 02:00 UTC".into())
        );
        let saturday: Timestamp = "2026-11-28T02:30:00Z".parse().expect("time");
        assert_eq!(finalize_gate(&s, saturday, true, false), Err(Wait::Held));
        assert_eq!(finalize_gate(&s, saturday, false, true), Err(Wait::Users));
        assert_eq!(finalize_gate(&s, saturday, false, false), Ok(()));
        assert_eq!(
            finalize_gate(&settings(""), thursday, false, false),
            Ok(()),
            "immediate"
        );
    }
}
