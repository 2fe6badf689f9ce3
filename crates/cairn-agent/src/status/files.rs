//! The files a pass leaves from its status: the status file, the metrics
//! textfile for node_exporter and the MOTD snippet.

use super::{AgentStatus, LastOutcome, StateName, StatusError};
use jiff::Timestamp;
use prometheus_client::encoding::text::encode_registry;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::Path;

/// The last successful pass the previous status file records. An
/// unversioned file (an older agent's) still gives its `last_success`.
fn previous_success(state_dir: &Path) -> Option<Timestamp> {
    match AgentStatus::read(state_dir) {
        Ok(previous) => previous.last_success,
        Err(StatusError::Unversioned { last_success, .. }) => last_success,
        Err(StatusError::Missing { .. }) => None,
        Err(e) => {
            tracing::warn!(error = %e, kind = e.kind(), "the previous status is unreadable; its last success is lost");
            None
        }
    }
}

/// Status file, metrics textfile and MOTD (in `motd_dir`, if any), from the
/// outcome of a pass.
pub(crate) fn finish(
    state_dir: &Path,
    motd_dir: Option<&Path>,
    status: &mut AgentStatus,
    now: Timestamp,
) {
    status.last_success = if status.last_error.is_none() {
        Some(Timestamp::from_second(now.as_second()).unwrap_or(now))
    } else {
        previous_success(state_dir)
    };
    status.last_outcome = match crate::history::last_final(state_dir) {
        Ok(last) => last.map(|a| LastOutcome {
            digest: a.to_digest.parse().ok(),
            version: a.to_version,
            outcome: a.result,
            finished: a.finished,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the update history");
            None
        }
    };
    status.write(state_dir);
    let metrics = metrics_text(status, now);
    if let Err(e) = cairn_fs::write_atomic(&state_dir.join(METRICS_FILE), metrics.as_bytes()) {
        tracing::warn!(error = %e, "could not write the metrics file");
    }
    if let Some(dir) = motd_dir {
        let path = dir.join(MOTD_FILE);
        let result = match motd(status) {
            Some(text) => std::fs::create_dir_all(dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    cairn_fs::write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string())
                }),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not update the MOTD");
        }
    }
}

/// The metrics textfile, for node_exporter's textfile collector. A file
/// rather than a listening socket: nothing to secure, and it outlives restarts.
pub const METRICS_FILE: &str = "metrics.prom";
/// The MOTD snippet's name in `/run/motd.d`.
pub const MOTD_FILE: &str = "85-cairn.motd";

/// The MOTD, when an operator must know: a dead-end, a hold, a configuration
/// error, a host not in the graph, another updater in the way, a FleetLock
/// slot kept after a failed boot.
pub fn motd(status: &AgentStatus) -> Option<String> {
    let mut text = String::new();
    if status.needs_attention() {
        text.push_str(&format!("Cairn updates: {}\n", status.reason.message));
    }
    let kept = status
        .fleet_lock_slot
        .as_ref()
        .and_then(|slot| Some((slot.group.as_deref(), slot.kept_after_failure.as_ref()?)));
    if let Some((group, kept)) = kept {
        text.push_str(&format!(
            "Cairn updates: the boot into {} failed, and this host keeps its FleetLock slot: group {} reboots no other host until `cairn release-slot`\n",
            kept.version,
            group.unwrap_or("(no longer configured)")
        ));
    }
    (!text.is_empty()).then_some(text)
}

/// A label value, escaped as the text format asks (`\\`, `\"`, `\n`):
/// prometheus-client 0.23 writes label values as given, and hook names and
/// base versions come from images.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabel {
    hook: Escaped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BarrierLabel {
    barrier: Escaped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorKindLabel {
    kind: Escaped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabel {
    reason: &'static str,
}

/// The report metrics: the queue's size, and what was sent and dropped
/// since the queue file was made (counters, kept in that file).
fn register_reports(registry: &mut Registry, reports: &crate::reports::ReportsStatus) {
    registry.register(
        "cairn_agent_reports_queued",
        "Outcome reports waiting to be sent",
        gauge(i64::try_from(reports.queued).unwrap_or(i64::MAX)),
    );
    let sent = Counter::<u64>::default();
    sent.inc_by(reports.sent);
    registry.register(
        "cairn_agent_reports_sent",
        "Outcome reports the collector took",
        sent,
    );
    let dropped = Family::<DropLabel, Counter>::default();
    let counts = reports.dropped;
    for (reason, count) in [
        ("full", counts.full),
        ("expired", counts.expired),
        ("refused", counts.refused),
    ] {
        dropped.get_or_create(&DropLabel { reason }).inc_by(count);
    }
    registry.register(
        "cairn_agent_reports_dropped",
        "Outcome reports dropped unsent: the queue was full, past the retry horizon, or refused by the collector",
        dropped,
    );
}

/// The halt list metrics, for a stream that turns halt lists on: the list
/// in force (its sequence and expiry; absent when none is), how many halts
/// it holds, and refusals since the state began, by kind (counters, kept in
/// the state file).
fn register_halts(registry: &mut Registry, halts: &crate::halts::HaltListStatus) {
    if let (Some(sequence), Some(expires)) = (halts.sequence, halts.expires) {
        registry.register(
            "cairn_agent_halt_list_sequence",
            "Sequence of the halt list in force",
            gauge(i64::try_from(sequence).unwrap_or(i64::MAX)),
        );
        registry.register(
            "cairn_agent_halt_list_expires_seconds",
            "Unix time the halt list in force expires",
            gauge(expires.as_second()),
        );
    }
    registry.register(
        "cairn_agent_halt_list_valid",
        "1 while a verified, unexpired halt list is in force",
        gauge(i64::from(halts.sequence.is_some())),
    );
    registry.register(
        "cairn_agent_halts_effective",
        "Releases the halt list in force halts",
        gauge(i64::try_from(halts.halted.len()).unwrap_or(i64::MAX)),
    );
    let refused = Family::<KindLabel, Counter>::default();
    for kind in crate::halts::REFUSAL_KINDS {
        let count = halts.refusals.get(kind).copied().unwrap_or(0);
        refused.get_or_create(&KindLabel { kind }).inc_by(count);
    }
    registry.register(
        "cairn_agent_halt_list_refused",
        "Halt lists refused or unreachable, by kind",
        refused,
    );
}

/// Checks whose document was read at a mirror while the repository could
/// not be reached to ask for the next trust root (the check failed open),
/// by the error's kind, since the state began (counters, kept in the state
/// file). `transport` is always shown, so a dashboard sees 0 rather than no
/// data.
fn register_trust_root(registry: &mut Registry, trust: &super::TrustRootStatus) {
    let unasked = Family::<ErrorKindLabel, Counter>::default();
    let mut counts = trust.origin_unasked.clone();
    counts.entry("transport".into()).or_insert(0);
    for (kind, count) in counts {
        unasked
            .get_or_create(&ErrorKindLabel {
                kind: Escaped(kind),
            })
            .inc_by(count);
    }
    registry.register(
        "cairn_agent_trust_root_origin_unasked",
        "Documents read at a mirror whose repository could not be reached to ask for the next trust root, by kind",
        unasked,
    );
}

/// A gauge holding `value`.
fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

/// A gauge family of one series per label set given.
fn family<L>(series: impl IntoIterator<Item = (L, i64)>) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (labels, value) in series {
        family.get_or_create(&labels).set(value);
    }
    family
}

/// Prometheus text for a status. Every metric is a gauge: a textfile is
/// rewritten whole at each pass, so no series outlives the state it shows.
pub fn metrics_text(status: &AgentStatus, now: Timestamp) -> String {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut registry = Registry::default();
    registry.register(
        "cairn_agent_last_check_timestamp_seconds",
        "Unix time of the last check",
        gauge(now.as_second()),
    );
    if let Some(success) = status.last_success {
        registry.register(
            "cairn_agent_last_success_timestamp_seconds",
            "Unix time of the last check without error",
            gauge(success.as_second()),
        );
    }
    if let Some(age) = status.booted.as_ref().and_then(|r| r.age_index) {
        registry.register(
            "cairn_agent_booted_age_index",
            "Age index of the booted release",
            gauge(count(age)),
        );
    }
    if let Some(age) = status.staged.as_ref().and_then(|r| r.age_index) {
        registry.register(
            "cairn_agent_staged_age_index",
            "Age index of the staged release",
            gauge(count(age)),
        );
    }
    registry.register(
        "cairn_agent_deny_list_size",
        "Releases this host rolled back from",
        gauge(count(status.deny_list.len() as u64)),
    );
    registry.register(
        "cairn_agent_held",
        "1 while updates are held by the operator",
        gauge(i64::from(status.held)),
    );
    registry.register(
        "cairn_agent_fleet_lock_kept",
        "1 while this host keeps its FleetLock slot after a failed boot",
        gauge(i64::from(
            status
                .fleet_lock_slot
                .as_ref()
                .is_some_and(|slot| slot.kept_after_failure.is_some()),
        )),
    );
    if let Some(reports) = &status.reports {
        register_reports(&mut registry, reports);
    }
    if let Some(halts) = &status.halt_list {
        register_halts(&mut registry, halts);
    }
    if let Some(trust) = &status.trust_root {
        register_trust_root(&mut registry, trust);
    }
    if let Some(reader) = &status.registry_reader {
        registry.register(
            "cairn_agent_registry_reader",
            "1 for what read the registry artifacts in the last pass",
            family(
                [
                    crate::status::ReaderBackend::Proxy,
                    crate::status::ReaderBackend::Builtin,
                ]
                .map(|backend| {
                    let labels = BackendLabel {
                        backend: backend.as_str(),
                    };
                    (labels, i64::from(reader.backend == backend))
                }),
            ),
        );
    }
    // One series even when nothing is missing or vetoed, so a dashboard
    // sees 0 rather than no data.
    let missing = match &status.missing_base_image {
        Some(missing) => (
            format!("{} {}", missing.base_repository, missing.version),
            1,
        ),
        None => (String::new(), 0),
    };
    registry.register(
        "cairn_agent_missing_base_image",
        "1 while updates wait for an image built on this base barrier",
        family([(
            BarrierLabel {
                barrier: Escaped(missing.0),
            },
            missing.1,
        )]),
    );
    let veto = match &status.hook_veto {
        Some(veto) => (veto.hook.clone(), 1),
        None => (String::new(), 0),
    };
    registry.register(
        "cairn_agent_hook_veto",
        "1 while a pre-update hook's veto holds the update back",
        family([(
            HookLabel {
                hook: Escaped(veto.0),
            },
            veto.1,
        )]),
    );
    let last = status.last_outcome.as_ref().map(|l| l.outcome);
    registry.register(
        "cairn_agent_last_outcome",
        "1 for the final outcome of the newest finished update attempt",
        family(
            crate::history::Outcome::ALL
                .iter()
                .filter(|o| o.is_final())
                .map(|o| {
                    let labels = OutcomeLabel {
                        outcome: o.as_str(),
                    };
                    (labels, i64::from(last == Some(*o)))
                }),
        ),
    );
    registry.register(
        "cairn_agent_state",
        "1 for the current state",
        family(StateName::ALL.map(|state| {
            let labels = StateLabel {
                state: state.as_str(),
            };
            (labels, i64::from(status.state == state))
        })),
    );
    // Only the current kind: a textfile is rewritten whole, so the previous
    // kind's series goes with it.
    registry.register(
        "cairn_agent_reason",
        "1 for the kind of the current reason",
        family([(
            KindLabel {
                kind: status.reason.kind.as_str(),
            },
            1,
        )]),
    );
    let mut text = String::new();
    // Writing to a String cannot fail; the encoder's signature is fmt's.
    if let Err(e) = encode_registry(&mut text, &registry) {
        tracing::warn!(error = %e, "could not encode the metrics");
    }
    sorted_samples(&text)
}

/// The encoder's text with each metric's sample lines sorted. A `Family`
/// keeps its series in a hash map, so their order changes from pass to
/// pass; the file is rewritten every pass, and a stable order keeps diffs
/// and file churn to what changed. Comment lines (`# HELP`, `# TYPE`) stay
/// where they are, first in their metric's block.
fn sorted_samples(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut samples: Vec<&str> = Vec::new();
    let flush = |samples: &mut Vec<&str>, out: &mut String| {
        samples.sort_unstable();
        for line in samples.drain(..) {
            out.push_str(line);
            out.push('\n');
        }
    };
    for line in text.lines() {
        if line.starts_with('#') {
            flush(&mut samples, &mut out);
            out.push_str(line);
            out.push('\n');
        } else {
            samples.push(line);
        }
    }
    flush(&mut samples, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::ReasonKind;
    use crate::status::STATUS_FILE;
    use crate::status::sample::{at, status};

    #[test]
    fn a_pass_leaves_status_metrics_and_a_motd_only_when_needed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (state, run) = (dir.path().join("state"), dir.path().join("run"));
        let now = at(1_800_000_000);
        let mut held = AgentStatus {
            held: true,
            ..status(StateName::Steady, ReasonKind::Held, "held by the operator")
        };
        finish(&state, Some(&run), &mut held, now);
        let read = AgentStatus::read(&state).expect("status");
        assert_eq!(read.last_success, Some(now));
        assert!(read.held);
        let metrics = std::fs::read_to_string(state.join(METRICS_FILE)).expect("metrics");
        assert!(metrics.contains("cairn_agent_held 1\n"), "{metrics}");
        assert!(
            metrics.contains("cairn_agent_reason{kind=\"held\"} 1\n"),
            "{metrics}"
        );
        assert_eq!(
            std::fs::read_to_string(run.join(MOTD_FILE)).expect("motd"),
            "Cairn updates: held by the operator\n"
        );
        // Released, and a failed pass: the MOTD goes, the last success stays.
        let mut failed = AgentStatus {
            last_error: Some("registry down".into()),
            ..status(StateName::Steady, ReasonKind::SourceError, "no action")
        };
        finish(&state, Some(&run), &mut failed, at(1_800_000_600));
        assert_eq!(
            AgentStatus::read(&state).expect("status").last_success,
            Some(now)
        );
        assert!(!run.join(MOTD_FILE).exists());
    }

    /// The value of `label` in the one series of `metric`, unescaped as a
    /// Prometheus text parser reads it.
    fn label_value(text: &str, metric: &str, label: &str) -> Option<String> {
        let start = format!("{metric}{{{label}=\"");
        let line = text.lines().find(|l| l.starts_with(&start))?;
        let mut value = String::new();
        let mut chars = line[start.len()..].chars();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                c => value.push(c),
            }
        }
        (chars.as_str().starts_with("} 1")).then_some(value)
    }

    #[test]
    fn a_slot_kept_after_a_failed_boot_is_in_the_motd_the_metric_and_status() {
        let mut kept = status(StateName::Steady, ReasonKind::UpToDate, "up to date");
        let slot = |kept_after_failure| crate::status::FleetLockSlot {
            group: Some("workers".into()),
            kept_after_failure,
        };
        // Held for a reboot under way: no MOTD, metric 0.
        kept.fleet_lock_slot = Some(slot(None));
        assert_eq!(motd(&kept), None);
        let text = metrics_text(&kept, at(1_800_000_000));
        assert!(text.contains("\ncairn_agent_fleet_lock_kept 0\n"), "{text}");
        assert!(kept.render().contains(
            "Lock:       holds a FleetLock slot of group workers for the reboot under way\n"
        ));
        kept.fleet_lock_slot = Some(slot(Some(crate::store::KeptSlot {
            group: Some("workers".into()),
            version: "44.3".into(),
            reason: "rolled back from it".into(),
            since: at(1_800_000_000),
            reported: true,
        })));
        assert_eq!(
            motd(&kept).as_deref(),
            Some(
                "Cairn updates: the boot into 44.3 failed, and this host keeps its FleetLock slot: group workers reboots no other host until `cairn release-slot`\n"
            )
        );
        let text = metrics_text(&kept, at(1_800_000_000));
        assert!(text.contains("\ncairn_agent_fleet_lock_kept 1\n"), "{text}");
        let shown = kept.render();
        assert!(
            shown.contains("Lock:       keeps a FleetLock slot of group workers since Fri 2027-01-15 08:00 UTC: the boot into 44.3 failed (rolled back from it)"),
            "{shown}"
        );
    }

    #[test]
    fn metrics_keep_their_names_and_escape_label_values() {
        let awkward = "quay.io/a\"b\\c\nd";
        let mut veto = status(StateName::Staged, ReasonKind::HookVeto, "vetoed");
        veto.hook_veto = Some(crate::status::HookVeto {
            hook: "image:10-\"check\"\\\n".into(),
            version: "44.3".into(),
            reason: "no".into(),
            retry_after: at(1_800_000_300),
        });
        veto.missing_base_image = Some(crate::status::MissingBaseImage {
            base_repository: awkward.into(),
            version: "42.1\"".into(),
        });
        let text = metrics_text(&veto, at(1_800_000_000));
        assert_eq!(
            label_value(&text, "cairn_agent_hook_veto", "hook").as_deref(),
            Some("image:10-\"check\"\\\n"),
            "{text}"
        );
        assert_eq!(
            label_value(&text, "cairn_agent_missing_base_image", "barrier"),
            Some(format!("{awkward} 42.1\"")),
            "{text}"
        );
        // No value broke a line: every line is a comment or a sample.
        assert!(
            text.lines()
                .all(|l| l.starts_with("# ") || l.starts_with("cairn_agent_")),
            "{text}"
        );
        for line in [
            "# TYPE cairn_agent_last_check_timestamp_seconds gauge\n",
            "cairn_agent_last_check_timestamp_seconds 1800000000\n",
            "cairn_agent_deny_list_size 0\n",
            "cairn_agent_held 0\n",
            "cairn_agent_state{state=\"staged\"} 1\n",
            "cairn_agent_state{state=\"steady\"} 0\n",
            "cairn_agent_last_outcome{outcome=\"booted_healthy\"} 0\n",
            "cairn_agent_reason{kind=\"hook_veto\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // Plain text format for node_exporter: no OpenMetrics end marker.
        assert!(!text.contains("# EOF"), "{text}");
        let calm = metrics_text(
            &status(StateName::Steady, ReasonKind::UpToDate, "fine"),
            at(1_800_000_000),
        );
        assert!(
            calm.contains("cairn_agent_hook_veto{hook=\"\"} 0\n"),
            "{calm}"
        );
        assert!(
            calm.contains("cairn_agent_missing_base_image{barrier=\"\"} 0\n"),
            "{calm}"
        );
    }

    #[test]
    fn the_registry_reader_metric_marks_the_backend_of_the_pass_and_only_once_one_read() {
        let mut read = status(StateName::Steady, ReasonKind::UpToDate, "fine");
        let none = metrics_text(&read, at(1_800_000_000));
        assert!(!none.contains("cairn_agent_registry_reader"), "{none}");
        read.registry_reader = Some(crate::status::RegistryReaderStatus {
            backend: crate::status::ReaderBackend::Builtin,
            skopeo_protocol: None,
            reason: Some("skopeo not found: skopeo".into()),
            scans: crate::status::ReaderBackend::Builtin,
        });
        let text = metrics_text(&read, at(1_800_000_000));
        for line in [
            "cairn_agent_registry_reader{backend=\"builtin\"} 1\n",
            "cairn_agent_registry_reader{backend=\"proxy\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(
            read.render()
                .contains("Registries: built-in client: skopeo not found: skopeo; tag and barrier scans: built-in client\n"),
            "{}",
            read.render()
        );
    }

    #[test]
    fn report_metrics_have_fixed_labels_and_only_a_pass_that_read_the_configuration_has_them() {
        let mut on = status(StateName::Steady, ReasonKind::UpToDate, "fine");
        on.reports = Some(crate::reports::ReportsStatus {
            enabled: true,
            queued: 3,
            last_error: Some("HTTP 503: backend_unavailable: down".into()),
            sent: 7,
            dropped: crate::reports::queue::Dropped {
                full: 1,
                expired: 2,
                refused: 0,
            },
        });
        let text = metrics_text(&on, at(1_800_000_000));
        for line in [
            "# TYPE cairn_agent_reports_queued gauge\n",
            "cairn_agent_reports_queued 3\n",
            "# TYPE cairn_agent_reports_sent counter\n",
            "cairn_agent_reports_sent_total 7\n",
            "cairn_agent_reports_dropped_total{reason=\"full\"} 1\n",
            "cairn_agent_reports_dropped_total{reason=\"expired\"} 2\n",
            "cairn_agent_reports_dropped_total{reason=\"refused\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let stopped = metrics_text(
            &status(StateName::ConfigError, ReasonKind::ConfigError, "broken"),
            at(1_800_000_000),
        );
        assert!(!stopped.contains("cairn_agent_reports"), "{stopped}");
    }

    #[test]
    fn mirror_checks_that_failed_open_are_counted_by_kind() {
        let mut checked = status(StateName::Steady, ReasonKind::UpToDate, "fine");
        let calm = metrics_text(&checked, at(1_800_000_000));
        assert!(!calm.contains("origin_unasked"), "{calm}");
        checked.trust_root = Some(crate::status::TrustRootStatus {
            version: 2,
            origin: "stored".into(),
            expires: None,
            roles: std::collections::BTreeMap::new(),
            configured_keys_ignored: true,
            note: None,
            origin_unasked: std::collections::BTreeMap::new(),
        });
        let none = metrics_text(&checked, at(1_800_000_000));
        assert!(
            none.contains("cairn_agent_trust_root_origin_unasked_total{kind=\"transport\"} 0\n"),
            "{none}"
        );
        if let Some(trust) = checked.trust_root.as_mut() {
            trust.origin_unasked.insert("transport".into(), 3);
        }
        let three = metrics_text(&checked, at(1_800_000_000));
        assert!(
            three.contains("cairn_agent_trust_root_origin_unasked_total{kind=\"transport\"} 3\n"),
            "{three}"
        );
    }

    #[test]
    fn metrics_are_the_same_bytes_for_the_same_status_with_series_in_order() {
        let mut staged = status(StateName::Staged, ReasonKind::Staged, "staged 44.3");
        staged.last_outcome = Some(LastOutcome {
            digest: None,
            version: "44.2".into(),
            outcome: crate::history::Outcome::BootedHealthy,
            finished: at(1_799_999_000),
        });
        let first = metrics_text(&staged, at(1_800_000_000));
        // Families hash with a random seed per map: many encodings would
        // differ somewhere if the order were left to them.
        for _ in 0..20 {
            assert_eq!(metrics_text(&staged, at(1_800_000_000)), first);
        }
        for metric in ["cairn_agent_state{", "cairn_agent_last_outcome{"] {
            let series: Vec<&str> = first.lines().filter(|l| l.starts_with(metric)).collect();
            assert!(series.len() > 1, "{metric} in {first}");
            assert!(series.is_sorted(), "{series:?}");
        }
        // Each block still opens with its HELP and TYPE lines.
        let state = first.find("# HELP cairn_agent_state ").expect("state help");
        assert!(
            first[state..]
                .lines()
                .nth(1)
                .is_some_and(|l| l == "# TYPE cairn_agent_state gauge"),
            "{first}"
        );
        assert!(
            first[state..]
                .lines()
                .nth(2)
                .is_some_and(|l| l.starts_with("cairn_agent_state{state=\"")),
            "{first}"
        );
    }

    #[test]
    fn sorting_keeps_comments_in_place_and_sorts_each_block() {
        let text = "# HELP b b\n# TYPE b gauge\nb{x=\"z\"} 0\nb{x=\"a\"} 1\n# HELP a a\na 1\n";
        assert_eq!(
            sorted_samples(text),
            "# HELP b b\n# TYPE b gauge\nb{x=\"a\"} 1\nb{x=\"z\"} 0\n# HELP a a\na 1\n"
        );
    }

    #[test]
    fn the_motd_and_verify_decide_on_kinds_not_words() {
        // Reworded messages that match none of the old phrases.
        let dead_end = status(
            StateName::Steady,
            ReasonKind::BootedDeadEnd,
            "the booted release is withdrawn",
        );
        assert_eq!(
            motd(&dead_end).as_deref(),
            Some("Cairn updates: the booted release is withdrawn\n")
        );
        let other = status(
            StateName::Steady,
            ReasonKind::OtherUpdaterEnabled,
            "zincati is on",
        );
        assert!(motd(&other).is_some());
        // The old phrases, under a kind that needs no attention.
        let fine = status(
            StateName::Steady,
            ReasonKind::StagedDeadEnd,
            "dead-end: not in the graph; refusing to stage",
        );
        assert_eq!(motd(&fine), None);
        let config = status(StateName::ConfigError, ReasonKind::ConfigError, "bad key");
        assert!(motd(&config).is_some());

        let waiting = status(
            StateName::Verifying,
            ReasonKind::WaitingForBootComplete,
            "patience",
        );
        assert!(waiting.waiting_for_boot());
        let worded = status(
            StateName::Verifying,
            ReasonKind::BootedHealthy,
            "verifying 44.3: waiting for boot-complete.target",
        );
        assert!(!worded.waiting_for_boot());
        let elsewhere = status(StateName::Steady, ReasonKind::WaitingForBootComplete, "");
        assert!(!elsewhere.waiting_for_boot());
    }

    #[test]
    fn an_old_status_file_is_refused_cleanly_but_keeps_its_last_success() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = r#"{"updated":"2026-11-26T13:59:50Z","state":"steady","reason":"up to date",
            "booted":["44.2","sha256:00"],"staged":null,"stream":"stable","source":"x",
            "document_sequence":1,"wariness":0.5,"strategy":"immediate","next_change":null,
            "deny_list":[],"held":false,"last_error":null,"last_success":1795701590}"#;
        std::fs::write(dir.path().join(STATUS_FILE), old).expect("write");
        let e = AgentStatus::read(dir.path()).expect_err("unversioned");
        assert_eq!(e.kind(), "unversioned", "{e}");
        assert_eq!(previous_success(dir.path()), Some(at(1_795_701_590)));
        // A failed pass after the upgrade keeps it, in the new format.
        let mut failed = AgentStatus {
            last_error: Some("registry down".into()),
            ..status(StateName::Steady, ReasonKind::SourceError, "no action")
        };
        finish(dir.path(), None, &mut failed, at(1_800_000_000));
        let read = AgentStatus::read(dir.path()).expect("rewritten");
        assert_eq!(read.last_success, Some(at(1_795_701_590)));

        std::fs::write(
            dir.path().join(STATUS_FILE),
            r#"{"apiVersion":"cairn.dev/v2"}"#,
        )
        .expect("write");
        let e = AgentStatus::read(dir.path()).expect_err("v2");
        assert_eq!(e.kind(), "unsupported_version", "{e}");
        std::fs::write(dir.path().join(STATUS_FILE), "{").expect("write");
        assert_eq!(
            AgentStatus::read(dir.path()).expect_err("junk").kind(),
            "invalid"
        );
        let empty = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            AgentStatus::read(empty.path()).expect_err("none").kind(),
            "missing"
        );
    }
}
