//! Assembling the next document from the previous one, what a registry scan
//! found, and the release team's policy.
//!
//! The rules that keep hosts safe live here, not in the scanner: published
//! releases never move, new ones are appended in build order, an image that
//! left the registry stays as a node hosts can find themselves on, and every
//! new release without a policy entry gets the default rollout, written out.

use crate::document::{ArchEntry, BaseImage, GraphDocument, Reason, Release, SCHEMA_VERSION};
use crate::fcos::Updates;
use crate::graph::{Scheme, UpdateGraph};
use crate::rollout::Rollout;
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A release found in the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its version (already disambiguated by the scanner).
    pub version: String,
    /// Its build time, for ordering new releases.
    pub created: Option<Timestamp>,
    /// The tags that point at it, sorted.
    pub tags: Vec<String>,
    /// The digest the tags point at (an index or a manifest).
    pub source_digest: String,
    /// Per-architecture manifest and config digests.
    pub architectures: BTreeMap<String, ArchEntry>,
    /// The base image, for derived images.
    pub base: Option<BaseImage>,
    /// Other digests the image's architectures record for the same base
    /// (each architecture names its own base manifest).
    pub base_aliases: Vec<String>,
}

/// Settings of an assembly.
#[derive(Debug, Clone)]
pub struct AssembleOptions<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The repository.
    pub repository: &'a str,
    /// Issue time.
    pub now: Timestamp,
    /// Expiry time.
    pub expires: Timestamp,
    /// The rollout a new release gets without a policy entry; an absent
    /// `start_epoch` is stamped with `now`.
    pub default_rollout: Option<Rollout>,
    /// The release team's policy.
    pub policy: Option<&'a Updates>,
    /// Every manifest digest the registry still has, releases or not (images
    /// kept only by a keep tag count). `None`: only the candidates' digests.
    pub present: Option<&'a BTreeSet<String>>,
    /// For derived images: the base graph to inherit from. Inheritance comes
    /// before the checks, because the update order depends on the bases.
    pub base: Option<BaseInput<'a>>,
}

/// The base graph of a derived repository, as assembly applies it.
#[derive(Debug, Clone, Copy)]
pub struct BaseInput<'a> {
    /// The base graph.
    pub graph: &'a crate::derive::BaseGraph,
    /// For a base digest naming an image index: its per-architecture
    /// manifest digests.
    pub expanded: &'a BTreeMap<String, Vec<String>>,
}

/// The result, with what an operator should hear about.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// The new document (sequence 0: the publisher sets it).
    pub document: GraphDocument,
    /// Versions appended.
    pub added: Vec<String>,
    /// Versions whose image left the registry in this scan.
    pub gone: Vec<String>,
    /// Releases no host is ever sent to (not a barrier or rollout target).
    pub not_offered: Vec<String>,
    /// Other notes.
    pub warnings: Vec<String>,
    /// Policy entries that name no release (a typo such as `44.50` for
    /// `44.5`): their settings apply to nothing.
    pub unknown_entries: Vec<String>,
    /// Published settings the policy no longer mentions, kept as they were:
    /// one sentence each, naming the release and how to remove them.
    pub unmentioned: Vec<String>,
}

impl Assembled {
    /// What the policy says about this assembly, as warnings: its unknown
    /// entries, and the settings it no longer mentions.
    pub fn policy_warnings(&self) -> Vec<String> {
        self.unknown_entries
            .iter()
            .map(|version| unknown_entry(version))
            .chain(self.unmentioned.iter().cloned())
            .collect()
    }
}

/// The sentence for a policy entry that names no release.
pub fn unknown_entry(version: &str) -> String {
    format!(
        "policy entry for {version} names no release in the repository, so it applies to nothing"
    )
}

/// Why no document could be assembled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// A barrier's image left the registry: hosts below it could never pass.
    #[error(
        "barrier {0} is no longer in the registry; hosts below it could never pass it (restore the image or remove the barrier)"
    )]
    BarrierGone(String),
    /// The newest target's image left the registry.
    #[error(
        "{0} is the newest update target but is no longer in the registry (restore the image or stop its rollout)"
    )]
    TargetGone(String),
    /// The result breaks a document rule.
    #[error("{0}")]
    Invalid(String),
}

impl AssembleError {
    /// A short, fixed label: `barrier_gone`, `target_gone` or `invalid_document`.
    pub fn kind(&self) -> &'static str {
        match self {
            AssembleError::BarrierGone(_) => "barrier_gone",
            AssembleError::TargetGone(_) => "target_gone",
            AssembleError::Invalid(_) => "invalid_document",
        }
    }
}

/// Build the next document.
pub fn assemble(
    previous: Option<&GraphDocument>,
    mut candidates: Vec<Candidate>,
    options: &AssembleOptions<'_>,
) -> Result<Assembled, AssembleError> {
    let mut releases: Vec<Release> = previous.map(|p| p.releases.clone()).unwrap_or_default();
    let mut warnings = Vec::new();
    let known_before = releases.len();

    // Which existing release owns each digest.
    let mut owner: HashMap<String, usize> = HashMap::new();
    for (i, release) in releases.iter().enumerate() {
        for entry in release.architectures.values() {
            owner.extend(
                entry
                    .digest
                    .iter()
                    .chain(&entry.aliases)
                    .map(|d| (d.clone(), i)),
            );
        }
    }
    let mut seen_digests: BTreeSet<String> = options.present.cloned().unwrap_or_default();
    // Build times by manifest digest, for the creation-order warnings.
    let created_by_digest: HashMap<String, Timestamp> = candidates
        .iter()
        .filter_map(|c| Some((c, c.created?)))
        .flat_map(|(c, created)| {
            c.architectures
                .values()
                .filter_map(|e| e.digest.clone())
                .map(move |digest| (digest, created))
        })
        .collect();
    let mut new = Vec::new();
    for candidate in candidates.drain(..) {
        let existing = candidate
            .architectures
            .values()
            .filter_map(|e| e.digest.as_ref())
            .find_map(|d| owner.get(d).copied());
        seen_digests.extend(
            candidate
                .architectures
                .values()
                .filter_map(|e| e.digest.clone()),
        );
        match existing {
            Some(i) => {
                // A base found later (say, by layers) resolves a release that had none.
                if releases[i].base.is_none() {
                    releases[i].base = candidate.base.clone();
                }
                for (arch, entry) in candidate.architectures {
                    let release = &mut releases[i];
                    match release.architectures.get(&arch) {
                        None => {
                            release.architectures.insert(arch, entry);
                        }
                        // Published digests never change: a rebuilt architecture
                        // under the same release is reported, not swapped in.
                        Some(known) if known.digest != entry.digest => warnings.push(format!(
                            "release {}: {arch} is now {} in the registry but was published as {}; \
                             keeping the published digest (tag the rebuild as a new version)",
                            release.version,
                            entry.digest.as_deref().unwrap_or("nothing"),
                            known.digest.as_deref().unwrap_or("nothing")
                        )),
                        Some(_) => {}
                    }
                }
            }
            None => new.push(candidate),
        }
    }

    // Published releases whose images are gone stay, marked unavailable.
    let mut gone = Vec::new();
    for release in releases.iter_mut().take(known_before) {
        for entry in release.architectures.values_mut() {
            let Some(digest) = &entry.digest else {
                continue;
            };
            let present = seen_digests.contains(digest);
            if entry.available && !present {
                entry.available = false;
                if !gone.contains(&release.version) {
                    gone.push(release.version.clone());
                }
            } else if present {
                entry.available = true;
            }
        }
    }

    // New releases in build order, then tag, then digest.
    new.sort_by(|a, b| {
        (a.created, a.tags.first(), &a.source_digest).cmp(&(
            b.created,
            b.tags.first(),
            &b.source_digest,
        ))
    });
    let mut added = Vec::new();
    for candidate in new {
        // Same config on every architecture: the same OS under a new manifest
        // (re-annotated, re-pushed). Its digests become aliases, not a release.
        if let Some(i) = same_config_release(&releases, &candidate) {
            let release = &mut releases[i];
            for (arch, entry) in &candidate.architectures {
                if let (Some(known), Some(digest)) =
                    (release.architectures.get_mut(arch), &entry.digest)
                    && known.digest.as_ref() != Some(digest)
                    && !known.aliases.contains(digest)
                {
                    known.aliases.push(digest.clone());
                }
            }
            warnings.push(format!(
                "{} ({}) only changes metadata: it has the config of release {}, so it is recorded as an alias of it, not a new release",
                candidate.tags.first().map_or(candidate.source_digest.as_str(), String::as_str),
                crate::digest::short(&candidate.source_digest),
                release.version
            ));
            continue;
        }
        let mut version = candidate.version.clone();
        if releases.iter().any(|r| r.version == version) {
            let short = crate::digest::short(&candidate.source_digest).to_string();
            warnings.push(format!(
                "version {version} is already used by another image; {} is published as {version}+{short}",
                candidate.source_digest
            ));
            version = format!("{version}+{short}");
        }
        added.push(version.clone());
        releases.push(Release {
            version,
            architectures: candidate.architectures,
            base: candidate.base,
            ..Release::default()
        });
    }

    let unmentioned = unmentioned(&releases[..known_before], options.policy);
    let unknown_entries = apply_policy(&mut releases, known_before, options);

    let mut document = GraphDocument {
        schema: SCHEMA_VERSION,
        stream: options.stream.to_string(),
        repository: options.repository.to_string(),
        sequence: 0,
        issued: options.now,
        expires: options.expires,
        releases,
        // Replaced from the base graph, when it is given.
        base: previous.and_then(|p| p.base.clone()),
        // Carried forward on every publish until turned off.
        halts: previous.and_then(|p| p.halts.clone()),
        root_version: 0,
    };
    if let Some(base) = options.base {
        let inheritance = crate::derive::inherit(&mut document, base.graph, base.expanded);
        warnings.extend(inheritance.warnings(base.graph));
        let created: BTreeMap<&str, Timestamp> = candidates_created(&created_by_digest, &document);
        warnings.extend(crate::derive::creation_order_warnings(&document, &created));
    }
    check_gone(&document)?;
    document.validate().map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        AssembleError::Invalid(text.join("; "))
    })?;
    let not_offered = not_offered(&document);
    Ok(Assembled {
        document,
        added,
        gone,
        not_offered,
        warnings,
        unknown_entries,
        unmentioned,
    })
}

/// The release whose config digest equals the candidate's on every
/// architecture the candidate has (and that has one).
fn same_config_release(releases: &[Release], candidate: &Candidate) -> Option<usize> {
    if candidate.architectures.is_empty()
        || candidate.architectures.values().any(|e| e.config.is_none())
    {
        return None;
    }
    releases.iter().position(|release| {
        candidate.architectures.iter().all(|(arch, entry)| {
            release
                .architectures
                .get(arch)
                .is_some_and(|known| known.config.is_some() && known.config == entry.config)
        })
    })
}

/// Policy entries are authoritative for the versions they name; new releases
/// without one get the default rollout; older ones keep what they had.
/// Returns the entries that name no release.
fn apply_policy(
    releases: &mut [Release],
    known_before: usize,
    options: &AssembleOptions<'_>,
) -> Vec<String> {
    for (i, release) in releases.iter_mut().enumerate() {
        match options.policy.and_then(|p| p.settings(&release.version)) {
            Some(settings) => {
                release.barrier = settings.barrier.map(|b| Reason::new(b.reason));
                release.deadend = settings.deadend.map(|d| Reason::new(d.reason));
                release.rollout = settings.rollout;
            }
            None if i >= known_before => {
                release.rollout = options.default_rollout.map(|mut rollout| {
                    rollout.start_epoch.get_or_insert(options.now.as_second());
                    rollout
                });
            }
            None => {}
        }
    }
    let mut unknown: Vec<String> = Vec::new();
    for entry in options.policy.map_or(&[][..], |p| &p.releases[..]) {
        let named = releases.iter().any(|r| r.version == entry.version);
        if !named && !unknown.contains(&entry.version) {
            unknown.push(entry.version.clone());
        }
    }
    unknown
}

/// Published settings that only a policy can have set (a barrier or dead-end
/// not inherited from a base, a rollout other than the immediate default) on
/// releases the policy has no entry for. They stay published, which is a
/// surprise for whoever deleted the entry to remove them.
fn unmentioned(published: &[Release], policy: Option<&Updates>) -> Vec<String> {
    let Some(policy) = policy else {
        return Vec::new();
    };
    let mut sentences = Vec::new();
    for release in published {
        let version = &release.version;
        if policy.settings(version).is_some() {
            continue;
        }
        let mut kept = Vec::new();
        let mut remove = Vec::new();
        if let Some(barrier) = release.barrier.as_ref().filter(|b| b.from_base.is_none()) {
            kept.push(format!("barrier {:?}", barrier.reason));
            remove.push(format!("`cairn policy barrier remove {version}`"));
        }
        if let Some(deadend) = release.deadend.as_ref().filter(|d| d.from_base.is_none()) {
            kept.push(format!("dead-end {:?}", deadend.reason));
            remove.push(format!("`cairn policy deadend remove {version}`"));
        }
        if let Some(rollout) = release.rollout.filter(|r| !crate::policy::is_default(r)) {
            kept.push(format!(
                "rollout {}",
                crate::policy::describe_rollout(&rollout)
            ));
            remove.push(format!("`cairn policy rollout stop {version}`"));
        }
        if !kept.is_empty() {
            sentences.push(format!(
                "{version}: the published document has {}, which the policy no longer mentions; \
                 it stays published (remove it with {})",
                kept.join(" and "),
                remove.join(" and ")
            ));
        }
    }
    sentences
}

/// Each release's build time, by version, from what the scan found.
fn candidates_created<'d>(
    created_by_digest: &HashMap<String, Timestamp>,
    document: &'d GraphDocument,
) -> BTreeMap<&'d str, Timestamp> {
    document
        .releases
        .iter()
        .filter_map(|release| {
            let created = release
                .architectures
                .values()
                .filter_map(|entry| entry.digest.as_ref())
                .find_map(|digest| created_by_digest.get(digest))?;
            Some((release.version.as_str(), *created))
        })
        .collect()
}

fn check_gone(document: &GraphDocument) -> Result<(), AssembleError> {
    let releases = &document.releases;
    let unavailable = |r: &Release| {
        !r.architectures.is_empty()
            && r.architectures
                .values()
                .filter(|e| e.digest.is_some())
                .all(|e| !e.available)
            && r.architectures.values().any(|e| e.digest.is_some())
    };
    if let Some(barrier) = releases
        .iter()
        .find(|r| r.barrier.is_some() && unavailable(r))
    {
        return Err(AssembleError::BarrierGone(barrier.version.clone()));
    }
    let newest_target = document
        .update_order()
        .into_iter()
        .rev()
        .map(|position| &releases[position])
        .find(|r| (r.rollout.is_some() || r.barrier.is_some()) && r.deadend.is_none());
    if let Some(target) = newest_target.filter(|r| unavailable(r)) {
        return Err(AssembleError::TargetGone(target.version.clone()));
    }
    Ok(())
}

/// Releases with an image that no edge of any architecture leads to.
pub fn not_offered(document: &GraphDocument) -> Vec<String> {
    let mut targets = std::collections::HashSet::new();
    for arch in document.architectures() {
        for scheme in [Scheme::Oci, Scheme::Checksum] {
            let graph = UpdateGraph::from_document(document, &arch, scheme);
            for (_, to) in graph.edges() {
                targets.insert(graph.nodes()[to].version.clone());
            }
        }
    }
    // The oldest release in update order is where hosts start, not a target.
    // In a derived document releases without a known base sort first and
    // have no edges at all: they are not offered, and the oldest release
    // with a known base is the start.
    let known = |r: &Release| {
        document.base.is_none() || r.base.as_ref().is_some_and(|b| b.age_index.is_some())
    };
    let start = document
        .update_order()
        .into_iter()
        .find(|&position| known(&document.releases[position]));
    document
        .update_order()
        .into_iter()
        .filter(|&position| Some(position) != start)
        .map(|position| &document.releases[position])
        .filter(|r| !r.architectures.is_empty() && !targets.contains(&r.version))
        .map(|r| r.version.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcos::{RequiredReason, UpdateEntry, UpdateMetadata};

    fn candidate(version: &str, n: u64, created: i64) -> Candidate {
        Candidate {
            version: version.into(),
            created: Timestamp::from_second(created).ok(),
            tags: vec![version.into()],
            source_digest: format!("sha256:{:064x}", n + 1000),
            architectures: [(
                "x86_64".to_string(),
                ArchEntry::image(format!("sha256:{n:064x}")),
            )]
            .into(),
            base: None,
            base_aliases: Vec::new(),
        }
    }

    fn options(policy: Option<&Updates>) -> AssembleOptions<'_> {
        AssembleOptions {
            stream: "stable",
            repository: "registry.example/os",
            now: Timestamp::from_second(2_000).expect("time"),
            expires: Timestamp::from_second(100_000).expect("time"),
            default_rollout: Some(Rollout::immediate()),
            policy,
            present: None,
            base: None,
        }
    }

    fn with_config(mut c: Candidate, config: u64) -> Candidate {
        for entry in c.architectures.values_mut() {
            entry.config = Some(format!("sha256:{config:064x}"));
        }
        c
    }

    #[test]
    fn a_manifest_with_a_known_config_is_an_alias_not_a_release() {
        let first = assemble(
            None,
            vec![with_config(candidate("1", 1, 100), 77)],
            &options(None),
        )
        .expect("assembles");
        // Re-annotated: new manifest digest, same config.
        let republished = with_config(candidate("1-reannotated", 2, 200), 77);
        // The first manifest is still there (a keep tag holds it).
        let present: BTreeSet<String> = [1, 2].map(|n| format!("sha256:{n:064x}")).into();
        let next = assemble(
            Some(&first.document),
            vec![republished],
            &AssembleOptions {
                present: Some(&present),
                ..options(None)
            },
        )
        .expect("assembles");
        assert_eq!(next.document.releases.len(), 1, "{:?}", next.added);
        assert!(next.added.is_empty());
        assert_eq!(
            next.document.releases[0].architectures["x86_64"].aliases,
            vec![format!("sha256:{:064x}", 2)]
        );
        assert!(
            next.warnings
                .iter()
                .any(|w| w.contains("only changes metadata"))
        );
        // A real rebuild has another config and is a release.
        let rebuilt = with_config(candidate("2", 3, 300), 78);
        let next =
            assemble(Some(&next.document), vec![rebuilt], &options(None)).expect("assembles");
        assert_eq!(next.added, vec!["2".to_string()]);
    }

    #[test]
    fn new_releases_are_appended_in_build_order_with_the_default_rollout() {
        let scan = vec![candidate("b", 2, 200), candidate("a", 1, 100)];
        let result = assemble(None, scan, &options(None)).expect("assembles");
        let versions: Vec<&str> = result
            .document
            .releases
            .iter()
            .map(|r| r.version.as_str())
            .collect();
        assert_eq!(versions, vec!["a", "b"]);
        let rollout = result.document.releases[1]
            .rollout
            .expect("default rollout");
        assert_eq!(rollout.start_epoch, Some(2_000), "stamped at publish time");
        assert_eq!(rollout.start_percentage, Some(1.0));
        assert!(result.not_offered.is_empty(), "{:?}", result.not_offered);
    }

    #[test]
    fn published_releases_keep_their_positions() {
        let first = assemble(None, vec![candidate("b", 2, 200)], &options(None)).expect("first");
        // An image built earlier but found later is still appended.
        let scan = vec![
            candidate("a", 1, 100),
            candidate("b", 2, 200),
            candidate("c", 3, 300),
        ];
        let second = assemble(Some(&first.document), scan, &options(None)).expect("second");
        let versions: Vec<&str> = second
            .document
            .releases
            .iter()
            .map(|r| r.version.as_str())
            .collect();
        assert_eq!(versions, vec!["b", "a", "c"]);
        assert_eq!(second.added, vec!["a".to_string(), "c".to_string()]);
    }

    #[test]
    fn gone_images_stay_as_unavailable_nodes_unless_they_matter() {
        let first = assemble(
            None,
            vec![
                candidate("a", 1, 100),
                candidate("b", 2, 200),
                candidate("c", 3, 300),
            ],
            &options(None),
        )
        .expect("first");
        let second = assemble(
            Some(&first.document),
            vec![candidate("b", 2, 200), candidate("c", 3, 300)],
            &options(None),
        )
        .expect("an old release may go");
        assert_eq!(second.gone, vec!["a".to_string()]);
        assert!(!second.document.releases[0].architectures["x86_64"].available);
        let err = assemble(
            Some(&first.document),
            vec![candidate("a", 1, 100), candidate("b", 2, 200)],
            &options(None),
        )
        .expect_err("the newest target may not");
        assert_eq!(err, AssembleError::TargetGone("c".into()));
        let mut policy = Updates::default();
        policy.releases.push(UpdateEntry {
            version: "a".into(),
            metadata: UpdateMetadata {
                barrier: Some(RequiredReason {
                    reason: "keys".into(),
                }),
                ..UpdateMetadata::default()
            },
        });
        let err = assemble(
            Some(&first.document),
            vec![candidate("b", 2, 200), candidate("c", 3, 300)],
            &options(Some(&policy)),
        )
        .expect_err("nor a barrier");
        assert_eq!(err, AssembleError::BarrierGone("a".into()));
    }

    #[test]
    fn policy_entries_are_authoritative() {
        let mut policy = Updates::default();
        policy.entry_mut("b"); // an empty entry: a stopped rollout stays stopped
        policy.entry_mut("zzz");
        let result = assemble(
            None,
            vec![candidate("a", 1, 100), candidate("b", 2, 200)],
            &options(Some(&policy)),
        )
        .expect("assembles");
        assert!(result.document.releases[1].rollout.is_none());
        assert_eq!(result.not_offered, vec!["b".to_string()]);
        assert_eq!(result.unknown_entries, vec!["zzz".to_string()]);
    }

    #[test]
    fn images_kept_by_keep_tags_are_not_gone() {
        let first = assemble(
            None,
            vec![candidate("a", 1, 100), candidate("b", 2, 200)],
            &options(None),
        )
        .expect("first");
        // The release tag of b was deleted; only its keep tag holds the image.
        let present: BTreeSet<String> = [1, 2].iter().map(|n| format!("sha256:{n:064x}")).collect();
        let mut with_present = options(None);
        with_present.present = Some(&present);
        let second = assemble(
            Some(&first.document),
            vec![candidate("a", 1, 100)],
            &with_present,
        )
        .expect("b is still there");
        assert!(second.gone.is_empty());
        assert!(second.document.releases[1].architectures["x86_64"].available);
    }

    #[test]
    fn duplicate_versions_are_disambiguated() {
        let result = assemble(
            None,
            vec![candidate("a", 1, 100), candidate("a", 2, 200)],
            &options(None),
        )
        .expect("assembles");
        assert_eq!(
            result.document.releases[1].version,
            format!("a+{}", &format!("{:064x}", 1002)[..12])
        );
        assert_eq!(result.warnings.len(), 1);
    }

    fn on_base(mut c: Candidate, base: u64) -> Candidate {
        c.base = Some(BaseImage::new("", format!("sha256:{:064x}", 500 + base)));
        c
    }

    fn base_chain(barrier: Option<u64>) -> crate::derive::BaseGraph {
        crate::derive::BaseGraph {
            source: "test".into(),
            repository: "quay.io/base".into(),
            releases: (0..3)
                .map(|age| crate::derive::BaseRelease {
                    version: format!("b{age}"),
                    age_index: age,
                    digests: [format!("sha256:{:064x}", 500 + age)].into(),
                    barrier: (Some(age) == barrier).then(|| "migrate".to_string()),
                    deadend: None,
                })
                .collect(),
            uneven: Vec::new(),
        }
    }

    #[test]
    fn a_derived_release_replacing_a_gone_newest_target_is_published() {
        let base = base_chain(None);
        let expanded = BTreeMap::new();
        let derived = |present| AssembleOptions {
            present,
            base: Some(BaseInput {
                graph: &base,
                expanded: &expanded,
            }),
            ..options(None)
        };
        let first = assemble(
            None,
            vec![
                on_base(candidate("d1", 1, 100), 0),
                on_base(candidate("d2", 2, 200), 1),
            ],
            &derived(None),
        )
        .expect("assembles");
        // d2's image is deleted and d3, on a newer base, pushed in the same run.
        let present: BTreeSet<String> = [1, 3].map(|n| format!("sha256:{n:064x}")).into();
        let next = assemble(
            Some(&first.document),
            vec![
                on_base(candidate("d1", 1, 100), 0),
                on_base(candidate("d3", 3, 300), 2),
            ],
            &derived(Some(&present)),
        )
        .expect("the newest target is d3, which is present");
        assert_eq!(next.gone, vec!["d2".to_string()]);
        assert_eq!(next.document.releases[2].version, "d3");
        assert_eq!(
            next.document.releases[2]
                .base
                .as_ref()
                .and_then(|b| b.age_index),
            Some(2),
            "inherited during assembly"
        );
    }

    #[test]
    fn images_built_out_of_update_order_are_named() {
        let base = base_chain(Some(1));
        let expanded = BTreeMap::new();
        // The barrier image d2 (base 1) is built last, after d3 (base 2).
        let result = assemble(
            None,
            vec![
                on_base(candidate("d1", 1, 100), 0),
                on_base(candidate("d3", 3, 300), 2),
                on_base(candidate("d2", 2, 400), 1),
            ],
            &AssembleOptions {
                base: Some(BaseInput {
                    graph: &base,
                    expanded: &expanded,
                }),
                ..options(None)
            },
        )
        .expect("assembles");
        let named: Vec<&String> = result
            .warnings
            .iter()
            .filter(|w| w.contains("was built before"))
            .collect();
        assert_eq!(named.len(), 1, "{:?}", result.warnings);
        assert!(
            named[0].starts_with("release d3 was built before d2")
                && named[0].contains("Zincati")
                && named[0].ends_with("rebuild d3"),
            "{}",
            named[0]
        );
    }
}
