//! Planning on small documents built here, at fixed times.

use super::*;
use crate::document::{ArchEntry, BaseBarrier, BaseGraphSummary, BaseImage, Reason};
use crate::rollout::Rollout;

const ARCHES: [&str; 2] = ["aarch64", "x86_64"];

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + minutes * 60).expect("time")
}

fn digest(release: usize, arch: usize) -> String {
    format!("sha256:{:064x}", release * 16 + arch)
}

/// `v{n}` on both architectures, offered to everyone from the start.
fn release(n: usize) -> Release {
    Release {
        version: format!("v{n}"),
        architectures: ARCHES
            .iter()
            .enumerate()
            .map(|(a, arch)| (arch.to_string(), ArchEntry::image(digest(n, a))))
            .collect(),
        rollout: Some(Rollout::immediate()),
        ..Release::default()
    }
}

/// `v1` … `v{count}`, sequence 5, valid for a year from `at(0)`.
fn document(count: usize) -> GraphDocument {
    GraphDocument {
        stream: "stable".into(),
        repository: "registry.example/os".into(),
        sequence: 5,
        issued: at(0),
        expires: at(365 * 24 * 60),
        releases: (1..=count).map(release).collect(),
        ..GraphDocument::default()
    }
}

fn wave(tag: &str, wariness: f64) -> WaveSpec {
    WaveSpec::new(tag, wariness).expect("valid wave")
}

fn on(version: &str) -> Observed {
    Observed::Release {
        version: version.into(),
    }
}

/// A state that put each `(tag, version)` there long before `at(0)`,
/// having acted on the documents' stream and sequence and on halt list 1.
fn settled(waves: &[(&str, &str, Option<&str>)]) -> PromoteState {
    PromoteState {
        last_sequence: 5,
        stream: Some("stable".into()),
        halt_sequence: Some(1),
        waves: waves
            .iter()
            .map(|(tag, version, came_from)| {
                let here = WaveState {
                    version: version.to_string(),
                    arrived: at(-100_000),
                    came_from: came_from.map(str::to_string),
                };
                (tag.to_string(), here)
            })
            .collect(),
        ..PromoteState::default()
    }
}

fn observed(tags: &[(&str, Observed)]) -> BTreeMap<String, Observed> {
    tags.iter()
        .map(|(tag, seen)| (tag.to_string(), seen.clone()))
        .collect()
}

/// A halt list of sequence 1 with these digests in effect.
fn halts_of(digests: &[String]) -> HaltsInEffect {
    HaltsInEffect {
        sequence: Some(1),
        digests: digests.to_vec(),
    }
}

/// Plans one wave found on `version`, which the state put there long ago.
fn plan_one(
    document: &GraphDocument,
    halted: &[String],
    wave: &WaveSpec,
    version: &str,
    came_from: Option<&str>,
    options: &PlanOptions,
) -> Plan {
    let state = settled(&[(&wave.tag, version, came_from)]);
    let seen = observed(&[(&wave.tag, on(version))]);
    plan(
        document,
        &halts_of(halted),
        std::slice::from_ref(wave),
        &state,
        &seen,
        options,
    )
    .expect("plans")
}

fn action(plan: &Plan) -> &Action {
    &plan.waves[0].action
}

#[test]
fn a_wave_two_releases_behind_moves_one_hop_per_run() {
    let mut doc = document(3);
    doc.releases[1].barrier = Some(Reason::new("migration"));
    let early = wave("stable-early", 0.3);
    let options = PlanOptions::new(at(0));
    let first = plan_one(&doc, &[], &early, "v1", None, &options);
    assert!(
        matches!(action(&first), Action::Move { to, .. } if to == "v2"),
        "{first}"
    );
    assert!(first.changes() && first.state_changed);
    assert_eq!(first.moves(), vec![("stable-early", "v2")]);
    let moved = &first.next_state.waves["stable-early"];
    assert_eq!(
        (
            moved.version.as_str(),
            moved.arrived,
            moved.came_from.as_deref()
        ),
        ("v2", at(0), Some("v1"))
    );
    let audit = &first.next_state.audit;
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].from.as_deref(),
            audit[0].to.as_str(),
            audit[0].time
        ),
        (Some("v1"), "v2", at(0))
    );
    assert!(audit[0].why.contains("update available: v2"), "{audit:?}");
}

#[test]
fn a_barrier_holds_the_wave_for_the_dwell_then_releases_it() {
    let mut doc = document(3);
    doc.releases[1].barrier = Some(Reason::new("migration"));
    let early = wave("stable-early", 0.3);
    let state = PromoteState {
        last_sequence: 5,
        waves: [(
            "stable-early".to_string(),
            WaveState {
                version: "v2".into(),
                arrived: at(0),
                came_from: Some("v1".into()),
            },
        )]
        .into(),
        ..PromoteState::default()
    };
    let seen = observed(&[("stable-early", on("v2"))]);
    let week = 7 * 24 * 60;
    let run = |minutes| {
        plan(
            &doc,
            &HaltsInEffect::default(),
            std::slice::from_ref(&early),
            &state,
            &seen,
            &PlanOptions::new(at(minutes)),
        )
        .expect("plans")
    };
    let waiting = run(week - 1);
    assert_eq!(
        action(&waiting),
        &Action::Wait {
            why: WaitReason::BarrierDwell {
                until: at(week),
                then: "v3".into()
            }
        }
    );
    assert!(!waiting.changes());
    assert_eq!(
        waiting.waves[0].describe(),
        format!(
            "stable-early: at v2 (barrier), waits for the barrier dwell until {}, then moves to v3",
            at(week)
        )
    );
    let released = run(week);
    assert!(
        matches!(action(&released), Action::Move { to, .. } if to == "v3"),
        "{released}"
    );
}

#[test]
fn the_minimum_dwell_spaces_ordinary_steps() {
    let doc = document(2);
    let late = wave("stable-late", 1.0);
    let mut options = PlanOptions::new(at(0));
    options.min_dwell = SignedDuration::from_hours(48);
    let state = PromoteState {
        last_sequence: 5,
        waves: [(
            "stable-late".to_string(),
            WaveState {
                version: "v1".into(),
                arrived: at(-60),
                came_from: None,
            },
        )]
        .into(),
        ..PromoteState::default()
    };
    let seen = observed(&[("stable-late", on("v1"))]);
    let planned = plan(
        &doc,
        &HaltsInEffect::default(),
        &[late],
        &state,
        &seen,
        &options,
    )
    .expect("plans");
    assert_eq!(
        action(&planned),
        &Action::Wait {
            why: WaitReason::MinDwell {
                until: at(47 * 60),
                then: "v2".into()
            }
        }
    );
}

#[test]
fn dead_ends_and_halted_releases_are_never_destinations() {
    let early = wave("stable-early", 0.3);
    let options = PlanOptions::new(at(0));
    let mut dead = document(3);
    dead.releases[2].deadend = Some(Reason::new("breaks boot"));
    let halted = vec![digest(3, 0), digest(3, 1)];
    for (doc, halted) in [(&dead, &[][..]), (&document(3), &halted[..])] {
        let from_v1 = plan_one(doc, halted, &early, "v1", None, &options);
        assert!(
            matches!(action(&from_v1), Action::Move { to, .. } if to == "v2"),
            "{from_v1}"
        );
        let from_v2 = plan_one(doc, halted, &early, "v2", None, &options);
        assert!(!from_v2.changes(), "{from_v2}");
        let fresh = plan(
            doc,
            &halts_of(halted),
            std::slice::from_ref(&early),
            &PromoteState::default(),
            &observed(&[("stable-early", Observed::Absent)]),
            &options,
        )
        .expect("plans");
        assert_eq!(
            action(&fresh),
            &Action::Start { to: "v2".into() },
            "{fresh}"
        );
    }
    let stays = |doc, halted| action(&plan_one(doc, halted, &early, "v2", None, &options)).clone();
    assert_eq!(
        stays(&dead, &[]),
        Action::Stay {
            why: StayReason::DeadEndAhead {
                version: "v3".into(),
                reason: "breaks boot".into()
            }
        }
    );
    assert_eq!(
        stays(&document(3), &halted),
        Action::Stay {
            why: StayReason::HaltedAhead {
                version: "v3".into()
            }
        }
    );
}

#[test]
fn a_bad_release_with_a_way_forward_moves_on_without_the_minimum_dwell() {
    let doc = document(3);
    let halted = vec![digest(2, 0), digest(2, 1)];
    let mut options = PlanOptions::new(at(0));
    options.min_dwell = SignedDuration::from_hours(1_000_000);
    let planned = plan_one(
        &doc,
        &halted,
        &wave("stable-early", 0.3),
        "v2",
        None,
        &options,
    );
    match action(&planned) {
        Action::Move { to, why } => {
            assert_eq!(to, "v3");
            assert!(why.starts_with("v2 is halted"), "{why}");
        }
        other => panic!("expected a move, got {other:?}"),
    }
}

#[test]
fn a_bad_release_without_a_way_forward_is_stuck_unless_retreat_is_allowed() {
    let mut doc = document(3);
    doc.releases[2].deadend = Some(Reason::new("breaks boot"));
    let early = wave("stable-early", 0.3);
    let mut options = PlanOptions::new(at(0));
    let stuck = plan_one(&doc, &[], &early, "v3", Some("v2"), &options);
    assert_eq!(
        action(&stuck),
        &Action::Stuck {
            why: StuckReason::BadRelease {
                version: "v3".into(),
                bad: "a dead-end (breaks boot)".into(),
                retreat_to: Some("v2".into()),
                no_retreat: None,
            }
        }
    );
    assert!(stuck.stuck() && !stuck.changes() && !stuck.state_changed);
    assert!(
        stuck.waves[0]
            .describe()
            .contains("--allow-retreat would move it back to v2"),
        "{stuck}"
    );

    options.allow_retreat = true;
    let retreat = plan_one(&doc, &[], &early, "v3", Some("v2"), &options);
    match action(&retreat) {
        Action::Retreat { to, warning, .. } => {
            assert_eq!(to, "v2");
            assert!(
                warning.contains("bootc has no downgrade check"),
                "{warning}"
            );
        }
        other => panic!("expected a retreat, got {other:?}"),
    }
    assert!(retreat.changes() && !retreat.stuck());
    let back = &retreat.next_state.waves["stable-early"];
    assert_eq!(
        (back.version.as_str(), back.came_from.as_deref()),
        ("v2", None)
    );
    assert!(
        retreat
            .to_string()
            .contains("Warning: bootc has no downgrade check")
    );

    // Where it came from is halted too: nowhere safe to go.
    let nowhere = plan_one(
        &doc,
        &[digest(2, 0), digest(2, 1)],
        &early,
        "v3",
        Some("v2"),
        &options,
    );
    assert!(
        matches!(
            action(&nowhere),
            Action::Stuck { why: StuckReason::BadRelease { retreat_to: None, no_retreat: Some(why), .. } }
                if why.contains("halted")
        ),
        "{nowhere}"
    );
    // Halted, not a dead-end, with nothing newer: the same paths.
    let halted = vec![digest(2, 0), digest(2, 1)];
    let halted_retreat = plan_one(&document(2), &halted, &early, "v2", Some("v1"), &options);
    assert_eq!(halted_retreat.moves(), vec![("stable-early", "v1")]);
}

#[test]
fn the_canary_takes_a_rollout_release_before_the_late_wave() {
    let mut doc = document(2);
    doc.releases[1].rollout = Some(Rollout {
        start_epoch: Some(at(0).as_second()),
        start_percentage: Some(0.0),
        duration_minutes: Some(100),
    });
    let waves = [wave("stable-canary", 0.05), wave("stable-late", 1.0)];
    let state = settled(&[("stable-canary", "v1", None), ("stable-late", "v1", None)]);
    let seen = observed(&[("stable-canary", on("v1")), ("stable-late", on("v1"))]);
    let planned = plan(
        &doc,
        &HaltsInEffect::default(),
        &waves,
        &state,
        &seen,
        &PlanOptions::new(at(50)),
    )
    .expect("plans");
    assert_eq!(planned.moves(), vec![("stable-canary", "v2")]);
    match &planned.waves[1].action {
        Action::Stay {
            why:
                StayReason::Rollout {
                    version,
                    progress,
                    reaches: Some(reaches),
                },
        } => {
            assert_eq!(version, "v2");
            assert!((progress - 0.5).abs() < 1e-9, "{progress}");
            assert!(*reaches > at(99) && *reaches <= at(101), "{reaches}");
        }
        other => panic!("expected the late wave to stay, got {other:?}"),
    }
    assert!(
        planned.waves[1]
            .describe()
            .contains("the rollout of v2 is at 50%, not yet at this wave's wariness"),
        "{planned}"
    );
    let later = plan(
        &doc,
        &HaltsInEffect::default(),
        &waves,
        &state,
        &seen,
        &PlanOptions::new(at(102)),
    )
    .expect("plans");
    assert_eq!(
        later.moves(),
        vec![("stable-canary", "v2"), ("stable-late", "v2")]
    );
}

/// d0 on base b0; d1 on b2, across base barrier b1 that no image is built on.
fn derived() -> GraphDocument {
    let mut doc = document(2);
    doc.base = Some(BaseGraphSummary {
        source: "test".into(),
        repository: "quay.io/base".into(),
        barriers: vec![BaseBarrier {
            version: "b1".into(),
            age_index: 1,
            reason: "new storage format".into(),
        }],
    });
    for (release, base_age) in doc.releases.iter_mut().zip([0, 2]) {
        release.base = Some(base(base_age));
    }
    doc
}

fn base(age: u64) -> BaseImage {
    BaseImage {
        version: Some(format!("b{age}")),
        age_index: Some(age),
        ..BaseImage::new("quay.io/base", digest(100 + age as usize, 0))
    }
}

#[test]
fn a_derived_graphs_base_barrier_is_respected() {
    let early = wave("stable-early", 0.3);
    let options = PlanOptions::new(at(0));
    let doc = derived();
    let held = plan_one(&doc, &[], &early, "v1", None, &options);
    assert_eq!(
        action(&held),
        &Action::Stay {
            why: StayReason::BaseBarrier {
                version: "v2".into(),
                base_version: "b1".into()
            }
        }
    );
    // An image built on the barrier is published later: the wave goes through it.
    let mut doc = derived();
    let mut on_barrier = release(3);
    on_barrier.base = Some(base(1));
    doc.releases.push(on_barrier);
    let through = plan_one(&doc, &[], &early, "v1", None, &options);
    assert_eq!(through.moves(), vec![("stable-early", "v3")], "{through}");
}

#[test]
fn a_replayed_or_expired_document_is_refused() {
    let doc = document(2);
    let early = wave("stable-early", 0.3);
    let mut state = settled(&[("stable-early", "v1", None)]);
    state.last_sequence = 6;
    let seen = observed(&[("stable-early", on("v1"))]);
    let options = PlanOptions::new(at(0));
    let replayed = plan(
        &doc,
        &HaltsInEffect::default(),
        std::slice::from_ref(&early),
        &state,
        &seen,
        &options,
    )
    .expect_err("replayed");
    assert_eq!(replayed.kind(), "replayed");
    assert!(
        replayed.to_string().contains("sequence 5 is below 6"),
        "{replayed}"
    );
    state.last_sequence = 5;
    let expired = plan(
        &doc,
        &HaltsInEffect::default(),
        &[early],
        &state,
        &seen,
        &PlanOptions::new(doc.expires + SignedDuration::from_secs(1)),
    )
    .expect_err("expired");
    assert_eq!(expired.kind(), "expired");
}

#[test]
fn the_state_keeps_the_stream_document_and_halt_floor_and_refuses_what_is_older() {
    let doc = document(2);
    let early = wave("stable-early", 0.3);
    let seen = observed(&[("stable-early", Observed::Absent)]);
    let mut options = PlanOptions::new(at(0));
    options.document_digest = Some(digest(9, 9));
    let halts = HaltsInEffect {
        sequence: Some(4),
        digests: Vec::new(),
    };
    let run = |state: &PromoteState, halts: &HaltsInEffect, doc: &GraphDocument| {
        plan(
            doc,
            halts,
            std::slice::from_ref(&early),
            state,
            &seen,
            &options,
        )
    };
    let first = run(&PromoteState::default(), &halts, &doc).expect("plans");
    let state = first.next_state;
    assert_eq!(state.stream.as_deref(), Some("stable"));
    assert_eq!(state.document_digest, Some(digest(9, 9)));
    assert_eq!(state.halt_sequence, Some(4));
    assert_eq!(state.audit.last().and_then(|entry| entry.sequence), Some(5));
    let stored = PromoteState::from_json(state.to_json_pretty().as_bytes()).expect("reads");
    assert_eq!(stored, state);

    // An older halt list could lift a halt: refused.
    let older = HaltsInEffect {
        sequence: Some(3),
        ..halts.clone()
    };
    let error = run(&state, &older, &doc).expect_err("replayed halts");
    assert_eq!(error.kind(), "halts_replayed");
    assert!(error.to_string().contains("3 is below 4"), "{error}");

    // A document that turns halts off keeps the floor for when they return.
    let off = run(&state, &HaltsInEffect::default(), &doc).expect("plans");
    assert_eq!(off.next_state.halt_sequence, Some(4));

    // The digest is the last document's: none for one read from a file.
    let from_file = plan(
        &doc,
        &halts,
        std::slice::from_ref(&early),
        &state,
        &seen,
        &PlanOptions::new(at(0)),
    )
    .expect("plans");
    assert_eq!(from_file.next_state.document_digest, None);
    assert!(from_file.state_changed);

    // Another stream's document never moves these waves.
    let mut other = document(2);
    other.stream = "testing".into();
    // Its lower sequence says nothing: sequences belong to a stream.
    other.sequence = 1;
    let error = run(&state, &halts, &other).expect_err("other stream");
    assert_eq!(error.kind(), "other_stream");
    assert!(
        error.to_string().contains("\"stable\"") && error.to_string().contains("\"testing\""),
        "{error}"
    );
}

#[test]
fn a_tag_moved_by_someone_else_restarts_the_dwell() {
    let mut doc = document(3);
    doc.releases[1].barrier = Some(Reason::new("migration"));
    let state = settled(&[("stable-early", "v1", None)]);
    let seen = observed(&[("stable-early", on("v2"))]);
    let planned = plan(
        &doc,
        &HaltsInEffect::default(),
        &[wave("stable-early", 0.3)],
        &state,
        &seen,
        &PlanOptions::new(at(0)),
    )
    .expect("plans");
    assert_eq!(
        action(&planned),
        &Action::Wait {
            why: WaitReason::BarrierDwell {
                until: at(7 * 24 * 60),
                then: "v3".into()
            }
        }
    );
    assert!(!planned.changes() && planned.state_changed);
    let found = &planned.next_state.waves["stable-early"];
    assert_eq!((found.version.as_str(), found.arrived), ("v2", at(0)));
    let audit = &planned.next_state.audit;
    assert_eq!(
        (audit.len(), audit[0].from.as_deref(), audit[0].to.as_str()),
        (1, Some("v1"), "v2")
    );
}

#[test]
fn nothing_due_leaves_the_state_as_it_was() {
    let mut doc = document(3);
    doc.releases[2].barrier = Some(Reason::new("migration"));
    let waves = [wave("stable-early", 0.3), wave("stable-late", 1.0)];
    let mut state = settled(&[
        ("stable-early", "v3", Some("v2")),
        ("stable-late", "v2", None),
    ]);
    state.waves.get_mut("stable-early").expect("wave").arrived = at(0);
    let seen = observed(&[("stable-early", on("v3")), ("stable-late", on("v1"))]);
    // The late wave was moved back by hand: the first run records that, and
    // moves it on.
    let first = plan(
        &doc,
        &HaltsInEffect::default(),
        &waves,
        &state,
        &seen,
        &PlanOptions::new(at(10)),
    )
    .expect("plans");
    assert_eq!(first.moves(), vec![("stable-late", "v3")]);
    let state = first.next_state;
    let seen = observed(&[("stable-early", on("v3")), ("stable-late", on("v3"))]);
    let second = plan(
        &doc,
        &HaltsInEffect::default(),
        &waves,
        &state,
        &seen,
        &PlanOptions::new(at(20)),
    )
    .expect("plans");
    assert!(!second.changes() && !second.state_changed, "{second}");
    assert_eq!(second.next_state, state);
    assert_eq!(
        second.to_string(),
        "stable-early: at v3 (barrier), stays: up to date\n\
         stable-late: at v3 (barrier), stays: up to date\n"
    );
    // A newer document with nothing due still needs its sequence stored.
    doc.sequence = 6;
    let newer = plan(
        &doc,
        &HaltsInEffect::default(),
        &waves,
        &state,
        &seen,
        &PlanOptions::new(at(20)),
    )
    .expect("plans");
    assert!(!newer.changes() && newer.state_changed);
    assert_eq!(newer.next_state.last_sequence, 6);
}

#[test]
fn a_new_wave_starts_at_the_newest_release_offered_to_everyone() {
    let mut doc = document(6);
    // v2: a barrier without a rollout is an edge target for everyone.
    doc.releases[1].rollout = None;
    doc.releases[1].barrier = Some(Reason::new("migration"));
    // v3: no aarch64 image.
    doc.releases[2].architectures.remove("aarch64");
    // v4: a rollout still under way.
    doc.releases[3].rollout = Some(Rollout {
        start_epoch: Some(at(0).as_second()),
        start_percentage: Some(0.0),
        duration_minutes: Some(100),
    });
    // v5: a dead-end; v6: a plain release, which no edge leads to.
    doc.releases[4].deadend = Some(Reason::default());
    doc.releases[5].rollout = None;
    let seen = observed(&[("stable-late", Observed::Absent)]);
    let late = [wave("stable-late", 1.0)];
    let state = PromoteState::default();
    let planned = plan(
        &doc,
        &HaltsInEffect::default(),
        &late,
        &state,
        &seen,
        &PlanOptions::new(at(50)),
    )
    .expect("plans");
    assert_eq!(action(&planned), &Action::Start { to: "v2".into() });
    assert_eq!(planned.moves(), vec![("stable-late", "v2")]);
    let started = &planned.next_state.waves["stable-late"];
    assert_eq!(
        (started.version.as_str(), started.came_from.as_deref()),
        ("v2", None)
    );
    assert_eq!(planned.next_state.audit[0].from, None);
    assert_eq!(planned.next_state.last_sequence, 5);

    for release in &mut doc.releases {
        release.rollout = Some(Rollout::default());
        release.barrier = None;
    }
    let none = plan(
        &doc,
        &HaltsInEffect::default(),
        &late,
        &state,
        &seen,
        &PlanOptions::new(at(50)),
    )
    .expect("plans");
    assert_eq!(
        action(&none),
        &Action::Wait {
            why: WaitReason::NoStartingRelease
        }
    );
    assert!(!none.changes());
}

#[test]
fn wave_arguments_are_checked() {
    assert_eq!(
        WaveSpec::parse("stable-early=0.3"),
        Ok(WaveSpec {
            tag: "stable-early".into(),
            wariness: 0.3
        })
    );
    assert!("_x.y-z=1".parse::<WaveSpec>().is_ok());
    let long = format!("{}=0.5", "a".repeat(129));
    for (argument, says) in [
        ("stable-early", "expected TAG=WARINESS"),
        ("stable-early=soon", "\"soon\" is not a number"),
        ("stable-early=1.5", "outside [0, 1]"),
        ("stable-early=-0.1", "outside [0, 1]"),
        ("stable-early=NaN", "outside [0, 1]"),
        (".early=0.3", "not a valid tag"),
        ("ear ly=0.3", "not a valid tag"),
        ("=0.3", "not a valid tag"),
        (long.as_str(), "not a valid tag"),
        ("cairn-early=0.3", "Cairn's own"),
    ] {
        let error = WaveSpec::parse(argument).expect_err(argument);
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("wave {argument:?}: ")) && text.contains(says),
            "{argument}: {text}"
        );
        assert_eq!(error.kind(), "bad_wave");
    }
    let waves = [wave("stable-early", 0.3), wave("stable-late", 1.0)];
    assert_eq!(check_waves(&waves, &["stable".into(), "v1".into()]), Ok(()));
    let twice = [wave("stable-early", 0.3), wave("stable-early", 1.0)];
    assert_eq!(
        check_waves(&twice, &[]).map_err(|e| e.kind()),
        Err("duplicate_wave")
    );
    let release_tag = [wave("latest", 0.3)];
    assert_eq!(
        check_waves(&release_tag, &["latest".into()]).map_err(|e| e.kind()),
        Err("release_tag")
    );
    // plan() refuses a wave tag that is a release version of the document.
    let versioned = [wave("v1", 0.3)];
    let error = plan(
        &document(1),
        &HaltsInEffect::default(),
        &versioned,
        &PromoteState::default(),
        &observed(&[("v1", Observed::Absent)]),
        &PlanOptions::new(at(0)),
    )
    .expect_err("release tag");
    assert_eq!(error.kind(), "release_tag");
}

#[test]
fn architectures_that_disagree_hold_the_wave() {
    let mut doc = document(2);
    doc.releases[1].architectures.remove("aarch64");
    let planned = plan_one(
        &doc,
        &[],
        &wave("stable-early", 0.3),
        "v1",
        None,
        &PlanOptions::new(at(0)),
    );
    assert_eq!(
        action(&planned),
        &Action::Wait {
            why: WaitReason::ArchitecturesDisagree {
                targets: [
                    ("aarch64".to_string(), None),
                    ("x86_64".to_string(), Some("v2".to_string()))
                ]
                .into()
            }
        }
    );
    assert!(
        planned
            .to_string()
            .contains("the architectures' next releases differ (aarch64: none, x86_64: v2)"),
        "{planned}"
    );
    // Deciding for x86_64 only, the wave moves.
    let mut options = PlanOptions::new(at(0));
    options.architectures = Some(vec!["x86_64".into()]);
    let x86 = plan_one(&doc, &[], &wave("stable-early", 0.3), "v1", None, &options);
    assert_eq!(x86.moves(), vec![("stable-early", "v2")]);
}

#[test]
fn an_unknown_image_under_a_wave_is_left_alone_and_fails_the_run() {
    let doc = document(2);
    let seen = observed(&[(
        "stable-early",
        Observed::Unknown {
            digest: digest(99, 0),
        },
    )]);
    let state = settled(&[("stable-early", "v1", None)]);
    let planned = plan(
        &doc,
        &HaltsInEffect::default(),
        &[wave("stable-early", 0.3)],
        &state,
        &seen,
        &PlanOptions::new(at(0)),
    )
    .expect("plans");
    assert!(planned.stuck() && !planned.changes() && !planned.state_changed);
    let missing = plan(
        &doc,
        &HaltsInEffect::default(),
        &[wave("stable-early", 0.3)],
        &state,
        &BTreeMap::new(),
        &PlanOptions::new(at(0)),
    )
    .expect_err("not observed");
    assert_eq!(missing.kind(), "not_observed");
}

#[test]
fn state_round_trips_and_bad_state_is_refused() {
    let mut state = settled(&[("stable-early", "v2", Some("v1"))]);
    for n in 0..MAX_AUDIT + 5 {
        state.record(AuditEntry {
            time: at(n as i64),
            tag: "stable-early".into(),
            from: None,
            to: format!("v{n}"),
            why: "test".into(),
            sequence: Some(1),
        });
    }
    assert_eq!(state.audit.len(), MAX_AUDIT);
    assert_eq!(state.audit[0].to, "v5", "the oldest go first");
    let json = state.to_json_pretty();
    assert!(json.contains("\"schema\": 2"), "{json}");
    assert_eq!(PromoteState::from_json(json.as_bytes()), Ok(state));
    for (bytes, says) in [
        (&b"not json"[..], "not valid state JSON"),
        (br#"{"schema": 3}"#, "field `schema`: 3"),
        (br#"{"schema": 2, "extra": true}"#, "unknown field `extra`"),
        (br#"{"schema": 1, "extra": true}"#, "unknown field `extra`"),
        (
            br#"{"schema": 1, "waves": {"w": {"version": "v1", "arrived": "yesterday"}}}"#,
            "not valid state JSON",
        ),
    ] {
        let error = PromoteState::from_json(bytes).expect_err(says);
        assert_eq!(error.kind(), "bad_state");
        assert!(error.to_string().contains(says), "{error}");
    }
}

/// A state as the first promoter wrote it (schema 1: no stream, document
/// digest, halt floor or audit sequence) reads, plans, and is written back
/// as schema 2 with the new fields.
#[test]
fn a_schema_1_state_reads_and_is_written_back_as_schema_2() {
    let old = br#"{
  "schema": 1,
  "last_sequence": 5,
  "waves": {
    "stable-early": {"version": "v1", "arrived": "2026-07-01T00:00:00Z", "came_from": null}
  },
  "audit": [
    {"time": "2026-07-01T00:00:00Z", "tag": "stable-early", "from": null, "to": "v1", "why": "new wave"}
  ]
}"#;
    let state = PromoteState::from_json(old).expect("schema 1 reads");
    assert_eq!(state.schema, 1);
    assert_eq!(state.stream, None);
    assert_eq!(state.audit[0].sequence, None);
    let planned = plan(
        &document(2),
        &halts_of(&[]),
        &[wave("stable-early", 0.3)],
        &state,
        &observed(&[("stable-early", on("v1"))]),
        &PlanOptions::new(at(0)),
    )
    .expect("plans");
    assert!(planned.state_changed, "the new fields are recorded once");
    let written = planned.next_state.to_json_pretty();
    let again = PromoteState::from_json(written.as_bytes()).expect("reads back");
    assert_eq!(again.stream.as_deref(), Some("stable"));
    assert_eq!(again.halt_sequence, Some(1));
    assert!(written.contains("\"schema\": 2"), "{written}");
    // The old audit entry stays without a sequence; the move has one.
    assert!(!written.contains("\"sequence\": null"), "{written}");
    assert_eq!(
        again.audit.last().and_then(|entry| entry.sequence),
        Some(5),
        "{written}"
    );
}

#[test]
fn the_plan_serializes_for_scripts() {
    let mut doc = document(3);
    doc.releases[1].barrier = Some(Reason::new("migration"));
    let planned = plan_one(
        &doc,
        &[],
        &wave("stable-early", 0.3),
        "v1",
        None,
        &PlanOptions::new(at(0)),
    );
    let json = serde_json::to_value(&planned).expect("serializes");
    assert_eq!(json["waves"][0]["action"]["action"], "move");
    assert_eq!(json["waves"][0]["action"]["to"], "v2");
    assert_eq!(json["state_changed"], true);
    assert!(json.get("next_state").is_none());
}

#[test]
fn a_wave_whose_tag_is_gone_goes_back_where_the_state_had_it() {
    let mut doc = document(4);
    doc.releases[1].barrier = Some(Reason::new("migration"));
    let early = wave("stable-early", 0.3);
    let options = PlanOptions::new(at(0));
    let state = settled(&[("stable-early", "v1", None)]);
    let gone = observed(&[("stable-early", Observed::Absent)]);
    let restored = plan(
        &doc,
        &HaltsInEffect::default(),
        std::slice::from_ref(&early),
        &state,
        &gone,
        &options,
    )
    .expect("plans");
    // Not the newest release (v4, past the barrier): back to v1.
    assert_eq!(
        action(&restored),
        &Action::Start { to: "v1".into() },
        "{restored}"
    );
    let kept = &restored.next_state.waves["stable-early"];
    assert_eq!((kept.version.as_str(), kept.arrived), ("v1", at(0)));
    // The release it was on became a dead-end meanwhile: stuck, not moved.
    doc.releases[0].deadend = Some(Reason::new("breaks boot"));
    let stuck = plan(
        &doc,
        &HaltsInEffect::default(),
        std::slice::from_ref(&early),
        &state,
        &gone,
        &options,
    )
    .expect("plans");
    assert!(stuck.stuck(), "{stuck}");
    assert!(!stuck.changes(), "{stuck}");
}
