//! What a host reports, checked strictly, and how the counts of a stream
//! are read: pure, no I/O and no clock of its own.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The longest release version accepted.
pub const MAX_VERSION_CHARS: usize = 128;
/// The longest agent version accepted.
pub const MAX_AGENT_VERSION_CHARS: usize = 64;

/// The outcome words a host reports (the agent's history vocabulary, less
/// the words that mean nothing was booted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// About to reboot into the new release: the one intermediate word.
    Rebooting,
    /// Booted, and the health checks passed.
    BootedHealthy,
    /// Booted, with nothing to judge its health by.
    BootedUnverified,
    /// Booted, and the health checks failed.
    BootedUnhealthy,
    /// Booted, judged bad and rolled back.
    RolledBack,
    /// The new release did not boot.
    BootFailed,
    /// The rollback after a bad boot failed.
    RollbackFailed,
}

impl Outcome {
    /// Every outcome, in the order answers list them.
    pub const ALL: [Outcome; 7] = [
        Outcome::Rebooting,
        Outcome::BootedHealthy,
        Outcome::BootedUnverified,
        Outcome::BootedUnhealthy,
        Outcome::RolledBack,
        Outcome::BootFailed,
        Outcome::RollbackFailed,
    ];

    /// Its word on the wire, in the store and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rebooting => "rebooting",
            Outcome::BootedHealthy => "booted_healthy",
            Outcome::BootedUnverified => "booted_unverified",
            Outcome::BootedUnhealthy => "booted_unhealthy",
            Outcome::RolledBack => "rolled_back",
            Outcome::BootFailed => "boot_failed",
            Outcome::RollbackFailed => "rollback_failed",
        }
    }

    /// The outcome a word names.
    pub fn parse(word: &str) -> Option<Outcome> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == word)
    }

    /// A failure: what the failure share counts.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::BootFailed
                | Outcome::BootedUnhealthy
                | Outcome::RolledBack
                | Outcome::RollbackFailed
        )
    }

    /// A final outcome: every word but `rebooting`.
    pub fn is_final(self) -> bool {
        self != Outcome::Rebooting
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A release as a report names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Its version, as the graph names it.
    pub version: String,
    /// Its release id: `sha256:<64 hex>` (image digest) or 64 hex (ostree commit).
    pub digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    id: String,
    #[serde(default)]
    from: Option<Release>,
    to: Release,
    outcome: String,
    agent_version: String,
}

/// A checked report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Its random id, used only to count a retried report once.
    pub id: [u8; 16],
    /// The release the host ran; `None` when the agent did not know it.
    pub from: Option<Release>,
    /// The release it went to.
    pub to: Release,
    /// What happened.
    pub outcome: Outcome,
}

/// Why a report body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Not the JSON object of the contract, or a value with bad text.
    #[error("{0}")]
    Malformed(String),
    /// An outcome word that is not reported.
    #[error("unknown outcome {0:?}")]
    UnknownOutcome(String),
}

impl ReportError {
    /// A short fixed label.
    pub fn kind(&self) -> &'static str {
        match self {
            ReportError::Malformed(_) => "malformed",
            ReportError::UnknownOutcome(_) => "unknown_outcome",
        }
    }
}

/// Text a person could read: not empty, at most `max` characters, no
/// control characters.
fn printable(text: &str, max: usize) -> bool {
    !text.is_empty() && text.chars().count() <= max && !text.chars().any(char::is_control)
}

fn check_release(release: &Release, key: &str) -> Result<(), ReportError> {
    if !printable(&release.version, MAX_VERSION_CHARS) {
        return Err(ReportError::Malformed(format!(
            "`{key}.version` must be 1 to {MAX_VERSION_CHARS} characters, none of them control characters"
        )));
    }
    let digest = &release.digest;
    if !cairn_graph::digest::is_sha256_digest(digest)
        && !cairn_graph::digest::is_ostree_commit(digest)
    {
        return Err(ReportError::Malformed(format!(
            "`{key}.digest` must be sha256:<64 lowercase hex> or 64 lowercase hex"
        )));
    }
    Ok(())
}

/// Parse and check a report body.
pub fn parse_report(bytes: &[u8]) -> Result<Report, ReportError> {
    let raw: RawReport = serde_json::from_slice(bytes).map_err(|e| {
        ReportError::Malformed(format!(
            "expected {{\"id\", \"from\": {{\"version\", \"digest\"}}, \"to\": {{…}}, \"outcome\", \"agent_version\"}}: {e}"
        ))
    })?;
    let lower_hex = raw.id.len() == 32
        && raw
            .id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mut id = [0u8; 16];
    if !lower_hex || hex::decode_to_slice(&raw.id, &mut id).is_err() {
        return Err(ReportError::Malformed(
            "`id` must be 32 lowercase hex characters".into(),
        ));
    }
    if let Some(from) = &raw.from {
        check_release(from, "from")?;
    }
    check_release(&raw.to, "to")?;
    if !printable(&raw.agent_version, MAX_AGENT_VERSION_CHARS) {
        return Err(ReportError::Malformed(format!(
            "`agent_version` must be 1 to {MAX_AGENT_VERSION_CHARS} characters, none of them control characters"
        )));
    }
    let outcome =
        Outcome::parse(&raw.outcome).ok_or(ReportError::UnknownOutcome(raw.outcome.clone()))?;
    Ok(Report {
        id,
        from: raw.from,
        to: raw.to,
        outcome,
    })
}

/// One release's counts as the store keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseTally {
    /// Reports counted, by outcome (in [`Outcome::ALL`] order), over the
    /// retained hours.
    pub counts: [u64; 7],
    /// `rebooting` reports received less than `missing_after` ago.
    pub recent_rebooting: u64,
}

impl ReleaseTally {
    /// The count of one outcome.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts[outcome.index()]
    }

    /// Add `n` reports of `outcome`.
    pub fn add(&mut self, outcome: Outcome, n: u64) {
        self.counts[outcome.index()] = self.counts[outcome.index()].saturating_add(n);
    }
}

/// A stream's counts, by release.
pub type Tally = BTreeMap<Release, ReleaseTally>;

/// One release as `GET /v2/reports/<stream>` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReleaseSummary {
    /// Version.
    pub version: String,
    /// Release id.
    pub digest: String,
    /// Reports by outcome word, every outcome listed.
    pub counts: BTreeMap<&'static str, u64>,
    /// `boot_failed` + `booted_unhealthy` + `rolled_back` + `rollback_failed`.
    pub failures: u64,
    /// `rebooting` reports.
    pub rebooting: u64,
    /// `failures / rebooting`; `None` with no `rebooting` report.
    pub failure_share: Option<f64>,
    /// `rebooting` reports older than `missing_after` not matched by a final
    /// report: a shortfall in aggregate, as reports cannot be linked.
    pub missing: u64,
}

/// What the counts say about each release.
pub fn summarize(tally: &Tally) -> Vec<ReleaseSummary> {
    tally
        .iter()
        .map(|(release, counted)| {
            let failures: u64 = Outcome::ALL
                .into_iter()
                .filter(|outcome| outcome.is_failure())
                .map(|outcome| counted.count(outcome))
                .sum();
            let finals: u64 = Outcome::ALL
                .into_iter()
                .filter(|outcome| outcome.is_final())
                .map(|outcome| counted.count(outcome))
                .sum();
            let rebooting = counted.count(Outcome::Rebooting);
            let old_rebooting = rebooting.saturating_sub(counted.recent_rebooting);
            ReleaseSummary {
                version: release.version.clone(),
                digest: release.digest.clone(),
                counts: Outcome::ALL
                    .into_iter()
                    .map(|outcome| (outcome.as_str(), counted.count(outcome)))
                    .collect(),
                failures,
                rebooting,
                failure_share: (rebooting > 0).then(|| failures as f64 / rebooting as f64),
                missing: old_rebooting.saturating_sub(finals),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const COMMIT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn body(changes: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut value = json!({
            "id": "00112233445566778899aabbccddeeff",
            "from": {"version": "44.1", "digest": DIGEST},
            "to": {"version": "44.2", "digest": COMMIT},
            "outcome": "boot_failed",
            "agent_version": "0.1.0",
        });
        changes(&mut value);
        value.to_string().into_bytes()
    }

    #[test]
    fn a_report_of_the_contract_is_read() {
        let report = parse_report(&body(|_| {})).expect("valid");
        assert_eq!(report.id[0], 0x00);
        assert_eq!(report.id[15], 0xff);
        assert_eq!(report.outcome, Outcome::BootFailed);
        assert_eq!(report.to.digest, COMMIT);
        let report = parse_report(&body(|v| {
            v.as_object_mut().expect("object").remove("from");
        }))
        .expect("valid");
        assert_eq!(report.from, None);
        for outcome in Outcome::ALL {
            let parsed = parse_report(&body(|v| v["outcome"] = json!(outcome.as_str())));
            assert_eq!(parsed.expect("valid").outcome, outcome);
        }
    }

    #[test]
    fn every_bad_value_is_refused_with_its_kind() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "malformed"),
            (b"[]".to_vec(), "malformed"),
            (body(|v| v["extra"] = json!(1)), "malformed"),
            (body(|v| v["to"]["extra"] = json!(1)), "malformed"),
            (
                body(|v| {
                    v.as_object_mut().expect("object").remove("agent_version");
                }),
                "malformed",
            ),
            (
                body(|v| v["id"] = json!("00112233445566778899AABBCCDDEEFF")),
                "malformed",
            ),
            (body(|v| v["id"] = json!("0011223344556677")), "malformed"),
            (
                body(|v| v["id"] = json!("g0112233445566778899aabbccddeeff")),
                "malformed",
            ),
            (
                body(|v| v["to"]["digest"] = json!("sha256:abc")),
                "malformed",
            ),
            (
                body(|v| v["from"]["digest"] = json!("quay.io/os@sha256:0123")),
                "malformed",
            ),
            (body(|v| v["to"]["version"] = json!("")), "malformed"),
            (body(|v| v["to"]["version"] = json!("44\n2")), "malformed"),
            (
                body(|v| v["to"]["version"] = json!("4".repeat(129))),
                "malformed",
            ),
            (
                body(|v| v["agent_version"] = json!("x".repeat(65))),
                "malformed",
            ),
            (body(|v| v["outcome"] = json!("staged")), "unknown_outcome"),
            (
                body(|v| v["outcome"] = json!("withdrawn")),
                "unknown_outcome",
            ),
            (body(|v| v["outcome"] = json!(3)), "malformed"),
        ];
        for (bytes, kind) in cases {
            let err = parse_report(&bytes).expect_err(&String::from_utf8_lossy(&bytes));
            assert_eq!(
                err.kind(),
                kind,
                "{err} for {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn the_summary_counts_failures_and_the_missing() {
        let release = Release {
            version: "44.2".into(),
            digest: DIGEST.into(),
        };
        let mut counted = ReleaseTally::default();
        counted.add(Outcome::Rebooting, 10);
        counted.add(Outcome::BootedHealthy, 4);
        counted.add(Outcome::BootFailed, 1);
        counted.add(Outcome::RolledBack, 1);
        counted.recent_rebooting = 3;
        let summary = summarize(&Tally::from([(release, counted)]));
        let summary = &summary[0];
        assert_eq!(summary.failures, 2);
        assert_eq!(summary.rebooting, 10);
        assert_eq!(summary.failure_share, Some(0.2));
        // 7 rebooting reports are old enough, 6 final ones came.
        assert_eq!(summary.missing, 1);
        assert_eq!(summary.counts["booted_healthy"], 4);
        assert_eq!(summary.counts["rollback_failed"], 0);
        assert_eq!(summary.counts.len(), 7);
        let only_final = ReleaseTally {
            counts: [0, 3, 0, 0, 0, 0, 0],
            recent_rebooting: 0,
        };
        let summary = summarize(&Tally::from([(
            Release {
                version: "1".into(),
                digest: COMMIT.into(),
            },
            only_final,
        )]));
        assert_eq!(summary[0].failure_share, None);
        assert_eq!(summary[0].missing, 0);
    }
}
