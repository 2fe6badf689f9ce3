//! Derived images: releases built `FROM` a base image that has its own graph.
//!
//! A derived release inherits what its base release is: built on a base
//! barrier it is a barrier, built on a base dead-end it is a dead-end. The
//! hard case is the common one: images are rebuilt on their own schedule and
//! base barriers are often added after the fact, so usually no derived image
//! was built on the exact barrier. Then no edge may cross it, or hosts would
//! skip the migration the barrier exists for. [`crossed_base_barrier`] is
//! that one decision, used by the publisher, the graph (and so the agent and
//! the server), and the tag-following agent alike.

use crate::document::{BaseBarrier, BaseGraphSummary, BaseImage, GraphDocument, Reason};
use crate::graph::UpdateGraph;
use std::collections::{BTreeMap, BTreeSet};

/// Why a move between two derived releases is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Blocked<'a> {
    /// One end's base is not in the base graph: a move would be a blind jump.
    UnknownBase,
    /// The move would cross this base barrier without a release built on it.
    Barrier(&'a BaseBarrier),
    /// The target is built on an older base than the booted release: a
    /// downgrade of the base, even when the derived release is newer.
    OlderBase,
}

/// May a host on a release built on base age `from` move to one built on
/// base age `to`? Not when a base barrier lies strictly between the two: a
/// release built on the barrier itself is the way through (and inherits the
/// barrier), and a release on an older base never passed it. Not backwards
/// across a barrier either (that would undo its migration), and a move to an
/// older base at all is a downgrade ([`Blocked::OlderBase`]). `None` (a base
/// not found in the base graph) refuses every move.
pub fn crossed_base_barrier(
    from: Option<u64>,
    to: Option<u64>,
    barriers: &[BaseBarrier],
) -> Result<(), Blocked<'_>> {
    let (Some(from), Some(to)) = (from, to) else {
        return Err(Blocked::UnknownBase);
    };
    let (low, high) = (from.min(to), from.max(to));
    let crossed = barriers
        .iter()
        .filter(|b| {
            // Forwards: strictly between. Backwards: leaving a barrier's base counts too.
            (from < to && low < b.age_index && b.age_index < high)
                || (to < from && to < b.age_index && b.age_index <= from)
        })
        .min_by_key(|b| b.age_index);
    match crossed {
        Some(barrier) => Err(Blocked::Barrier(barrier)),
        None if to < from => Err(Blocked::OlderBase),
        None => Ok(()),
    }
}

/// The order edges follow, as positions in `releases`, oldest first: by base
/// age, then by position in the document.
///
/// A document's release list is append-only, so a derived image built on a
/// base barrier after the fact (the fix the publisher asks for) lands after
/// images on newer bases. Ordering by position would then make the way
/// through a barrier "newer" than what lies beyond it, and the base guard
/// would strand hosts there. Ordering by base first keeps edges, downgrade
/// checks and "newest" in step with the base; the position stays each
/// release's identity and breaks ties (rebuilds on one base, in publication
/// order). Releases without a known base sort first: they get no edges, and
/// there they cannot shift the edges of the others. A document with no base
/// information keeps its own order.
pub fn update_order(document: &GraphDocument) -> Vec<usize> {
    let releases = &document.releases;
    let mut order: Vec<usize> = (0..releases.len()).collect();
    if document.base.is_some() {
        order.sort_by_key(|&i| (releases[i].base.as_ref().and_then(|b| b.age_index), i));
    }
    order
}

/// Releases built before a release that comes earlier in update order, on an
/// older base: typically the images after a barrier image built late. Cairn's
/// agents go by the update order, but `rpm-ostree deploy --disallow-downgrade`
/// (which Zincati always uses, and Cairn's agent on a move within one base)
/// compares image creation times and refuses them. One line per such release,
/// naming the newest-built release before it and what to rebuild.
pub fn creation_order_warnings(
    document: &GraphDocument,
    created: &BTreeMap<&str, jiff::Timestamp>,
) -> Vec<String> {
    let base_age = |r: &crate::document::Release| r.base.as_ref().and_then(|b| b.age_index);
    let mut warnings = Vec::new();
    let mut latest: Option<(&crate::document::Release, jiff::Timestamp)> = None;
    for position in update_order(document) {
        let release = &document.releases[position];
        let (Some(age), Some(&built)) = (base_age(release), created.get(release.version.as_str()))
        else {
            continue;
        };
        if let Some((before, before_built)) = latest
            && built < before_built
        {
            let who = if base_age(before).is_some_and(|b| b < age) {
                "Cairn's agents move on (it is on a newer base), but Zincati and `rpm-ostree deploy --disallow-downgrade` compare build times and refuse it"
            } else {
                "rpm-ostree hosts (Cairn's agent and Zincati alike) compare build times within one base and refuse it"
            };
            warnings.push(format!(
                "release {} was built before {} ({built} < {before_built}), which comes before it in update order: {who}; rebuild {}",
                release.version, before.version, release.version
            ));
        }
        if latest.is_none_or(|(_, t)| built > t) {
            latest = Some((release, built));
        }
    }
    warnings
}

/// The base graph as a derived graph sees it: each base release with every
/// digest a derived image may name it by.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BaseGraph {
    /// Where it was read, for messages.
    pub source: String,
    /// The base image repository.
    pub repository: String,
    /// Releases, in any order.
    pub releases: Vec<BaseRelease>,
    /// Barriers and dead-ends the merged architectures disagree on.
    pub uneven: Vec<UnevenMark>,
}

/// A barrier or dead-end that some architectures' base graphs have on a
/// release and others do not. The document has one flag per release, so the
/// merged graph keeps it for every architecture (the safe side), and the
/// publisher is told.
#[derive(Debug, Clone, PartialEq)]
pub struct UnevenMark {
    /// The base release.
    pub version: String,
    /// `barrier` or `dead-end`.
    pub mark: &'static str,
    /// Architectures whose graph has it.
    pub on: Vec<String>,
    /// Architectures whose graph has the release without it.
    pub off: Vec<String>,
}

/// One base release.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BaseRelease {
    /// Version.
    pub version: String,
    /// Age index in the base graph.
    pub age_index: u64,
    /// Manifest digests of every architecture, and their aliases.
    pub digests: BTreeSet<String>,
    /// Barrier reason, when it is one.
    pub barrier: Option<String>,
    /// Dead-end reason, when it is one.
    pub deadend: Option<String>,
}

impl BaseGraph {
    /// From a Cairn document (or Fedora's files turned into one).
    pub fn from_document(document: &GraphDocument, source: &str) -> Self {
        BaseGraph {
            source: source.to_string(),
            repository: document.repository.clone(),
            releases: document
                .releases
                .iter()
                .zip(document.update_ranks())
                .map(|(release, age)| BaseRelease {
                    version: release.version.clone(),
                    // A derived base's own update order, not its positions.
                    age_index: age,
                    digests: release
                        .architectures
                        .values()
                        .flat_map(|e| e.digest.iter().chain(&e.aliases))
                        .cloned()
                        .collect(),
                    barrier: release.barrier.as_ref().map(Reason::describe),
                    deadend: release.deadend.as_ref().map(Reason::describe),
                })
                .collect(),
            uneven: Vec::new(),
        }
    }

    /// From a graph a Cincinnati server sent (one architecture).
    pub fn from_update_graph(graph: &UpdateGraph, repository: &str, source: &str) -> Self {
        BaseGraph {
            source: source.to_string(),
            repository: repository.to_string(),
            releases: graph
                .nodes()
                .iter()
                .map(|node| BaseRelease {
                    version: node.version.clone(),
                    age_index: node.age_index,
                    digests: std::iter::once(node.id.to_string())
                        .chain(node.aliases.iter().cloned())
                        .collect(),
                    barrier: node.barrier.clone(),
                    deadend: node.deadend.clone(),
                })
                .collect(),
            uneven: Vec::new(),
        }
    }

    /// The base release any of these digests names: an index's digest is
    /// given together with its per-architecture manifests' digests.
    pub fn find<'a>(&self, digests: impl IntoIterator<Item = &'a str>) -> Option<&BaseRelease> {
        let digests: Vec<&str> = digests.into_iter().collect();
        self.releases
            .iter()
            .find(|release| digests.iter().any(|d| release.digests.contains(*d)))
    }

    /// The one base release all these digests name. Architectures built on
    /// different base releases (or nothing known) give `None`: such a
    /// release has no single base age, so it gets no edges.
    pub fn resolve<'a>(
        &self,
        digests: impl IntoIterator<Item = &'a str>,
    ) -> Result<&BaseRelease, Vec<String>> {
        let digests: Vec<&str> = digests.into_iter().collect();
        let found: Vec<&BaseRelease> = self
            .releases
            .iter()
            .filter(|release| digests.iter().any(|d| release.digests.contains(*d)))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            _ => Err(found.iter().map(|r| r.version.clone()).collect()),
        }
    }

    /// The one base release a derived image's recorded base names: by its
    /// digest, or, when that names an index, by the per-architecture
    /// manifest digests `expand` gives for it. Errors as [`Self::resolve`].
    pub fn resolve_image(
        &self,
        image: &BaseImage,
        expand: &BTreeMap<String, Vec<String>>,
    ) -> Result<&BaseRelease, Vec<String>> {
        let expanded = expand.get(&image.digest).into_iter().flatten();
        self.resolve(std::iter::once(image.digest.as_str()).chain(expanded.map(String::as_str)))
    }

    /// The base age of an image built on `image`: `None` unless the base
    /// graph knows it as exactly one release.
    pub fn age_of(&self, image: &BaseImage, expand: &BTreeMap<String, Vec<String>>) -> Option<u64> {
        self.resolve_image(image, expand)
            .ok()
            .map(|found| found.age_index)
    }

    /// The barriers, oldest first.
    pub fn barriers(&self) -> Vec<BaseBarrier> {
        let mut barriers: Vec<BaseBarrier> = self
            .releases
            .iter()
            .filter_map(|release| {
                Some(BaseBarrier {
                    version: release.version.clone(),
                    age_index: release.age_index,
                    reason: release.barrier.clone()?,
                })
            })
            .collect();
        barriers.sort_by_key(|b| b.age_index);
        barriers
    }

    /// One graph from the graphs of one stream's architectures (a Cincinnati
    /// server answers for one at a time), each given with its architecture:
    /// a release is a version, with the digests of every architecture, a
    /// barrier or dead-end if any architecture has one (recorded in
    /// [`BaseGraph::uneven`] when others do not). A version only later graphs
    /// have goes after the release it follows there, and ages are then
    /// renumbered in that order; graphs that agree keep the first one's ages.
    pub fn merge(graphs: Vec<(String, BaseGraph)>) -> BaseGraph {
        let uneven = uneven_marks(&graphs);
        let mut graphs = graphs.into_iter().map(|(_, graph)| graph);
        let Some(mut merged) = graphs.next() else {
            return BaseGraph::default();
        };
        merged.releases.sort_by_key(|r| r.age_index);
        let mut inserted = false;
        for graph in graphs {
            let mut releases = graph.releases;
            releases.sort_by_key(|r| r.age_index);
            let mut after: Option<usize> = None;
            for release in releases {
                let known = merged
                    .releases
                    .iter()
                    .position(|r| r.version == release.version);
                let at = match known {
                    Some(at) => {
                        let known = &mut merged.releases[at];
                        known.digests.extend(release.digests);
                        known.barrier = known.barrier.take().or(release.barrier);
                        known.deadend = known.deadend.take().or(release.deadend);
                        at
                    }
                    None => {
                        let at = after.map_or(0, |a| a + 1);
                        merged.releases.insert(at, release);
                        inserted = true;
                        at
                    }
                };
                after = Some(at);
            }
        }
        if inserted {
            for (age, release) in merged.releases.iter_mut().enumerate() {
                release.age_index = age as u64;
            }
        }
        let order: Vec<&str> = merged.releases.iter().map(|r| r.version.as_str()).collect();
        let mut uneven = uneven;
        uneven.sort_by_key(|u| (order.iter().position(|v| *v == u.version), u.mark));
        merged.uneven = uneven;
        merged
    }

    /// What a derived document records of this graph.
    pub fn summary(&self) -> BaseGraphSummary {
        BaseGraphSummary {
            source: self.source.clone(),
            repository: self.repository.clone(),
            barriers: self.barriers(),
        }
    }
}

/// What an operator should hear after inheriting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inheritance {
    /// Releases whose base is not in the base graph (version, base digest).
    pub unresolved: Vec<(String, String)>,
    /// Releases that record no base at all.
    pub without_base: Vec<String>,
    /// Releases whose architectures were built on different base releases.
    pub mixed: Vec<(String, Vec<String>)>,
    /// Base barriers no release is built on, each with the releases on older
    /// bases that cannot pass it and the newer releases they cannot reach.
    pub missing_barriers: Vec<MissingBarrier>,
    /// Base barriers and dead-ends only some architectures have; inherited
    /// by every architecture.
    pub uneven: Vec<UnevenMark>,
}

/// A base barrier without a derived release on it.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingBarrier {
    /// The base barrier.
    pub barrier: BaseBarrier,
    /// Releases built on older bases: their hosts hold until one is built.
    pub held_back: Vec<String>,
    /// Releases built past the barrier, out of their reach.
    pub beyond: Vec<String>,
}

impl Inheritance {
    /// One line per problem, for the publisher's output.
    pub fn warnings(&self, base: &BaseGraph) -> Vec<String> {
        let mut lines = Vec::new();
        for (version, digest) in &self.unresolved {
            lines.push(format!(
                "release {version}: base {digest} is not in the base graph ({}); no edge leads to or from it until it is",
                base.source
            ));
        }
        for (version, bases) in &self.mixed {
            lines.push(format!(
                "release {version}: its architectures were built on different base releases ({}); no edge leads to or from it",
                bases.join(", ")
            ));
        }
        for version in &self.without_base {
            lines.push(format!(
                "release {version}: records no base image (no org.opencontainers.image.base.digest); no edge leads to or from it"
            ));
        }
        for missing in &self.missing_barriers {
            if missing.held_back.is_empty() || missing.beyond.is_empty() {
                continue;
            }
            lines.push(format!(
                "no release is built on base barrier {} {} ({}): {} release(s) on older bases cannot update past it ({}); build an image on {}",
                base.repository,
                missing.barrier.version,
                or_generic(&missing.barrier.reason),
                missing.held_back.len(),
                missing.held_back.join(", "),
                missing.barrier.version
            ));
        }
        for uneven in &self.uneven {
            lines.push(format!(
                "base release {} {} is a {} on {} but not on {}; a release has one {} flag for every architecture, so {} hosts inherit it too",
                base.repository,
                uneven.version,
                uneven.mark,
                uneven.on.join(", "),
                uneven.off.join(", "),
                uneven.mark,
                uneven.off.join(", ")
            ));
        }
        lines
    }
}

/// The barriers and dead-ends that architectures having the same release
/// disagree on.
fn uneven_marks(graphs: &[(String, BaseGraph)]) -> Vec<UnevenMark> {
    // Per version: each architecture having it, with [barrier, dead-end].
    let mut by_version: BTreeMap<&str, Vec<(&str, [bool; 2])>> = BTreeMap::new();
    for (arch, graph) in graphs {
        for release in &graph.releases {
            let marks = [release.barrier.is_some(), release.deadend.is_some()];
            by_version
                .entry(&release.version)
                .or_default()
                .push((arch, marks));
        }
    }
    let mut uneven = Vec::new();
    for (version, arches) in by_version {
        for (index, mark) in ["barrier", "dead-end"].into_iter().enumerate() {
            let (on, off): (Vec<_>, Vec<_>) = arches.iter().partition(|(_, m)| m[index]);
            if on.is_empty() || off.is_empty() {
                continue;
            }
            let names =
                |list: Vec<&(&str, [bool; 2])>| list.iter().map(|a| a.0.to_string()).collect();
            uneven.push(UnevenMark {
                version: version.to_string(),
                mark,
                on: names(on),
                off: names(off),
            });
        }
    }
    uneven
}

fn or_generic(reason: &str) -> &str {
    if reason.is_empty() { "generic" } else { reason }
}

/// Apply the base graph to a derived document: find each release's base
/// release (`expand` gives, for a base digest naming an index, its
/// per-architecture manifest digests), inherit barriers and dead-ends, and
/// record the base's barriers for the edge guard. Inherited reasons from an
/// earlier publication are recomputed; the team's own ones are kept and win.
pub fn inherit(
    document: &mut GraphDocument,
    base: &BaseGraph,
    expand: &BTreeMap<String, Vec<String>>,
) -> Inheritance {
    let mut report = Inheritance {
        uneven: base.uneven.clone(),
        ..Inheritance::default()
    };
    for release in &mut document.releases {
        if release
            .barrier
            .as_ref()
            .is_some_and(|r| r.from_base.is_some())
        {
            release.barrier = None;
        }
        if release
            .deadend
            .as_ref()
            .is_some_and(|r| r.from_base.is_some())
        {
            release.deadend = None;
        }
        let Some(image) = release.base.as_mut() else {
            if !release.architectures.is_empty() {
                report.without_base.push(release.version.clone());
            }
            continue;
        };
        let found = match base.resolve_image(image, expand) {
            Ok(found) => found,
            Err(bases) => {
                image.version = None;
                image.age_index = None;
                if bases.is_empty() {
                    report
                        .unresolved
                        .push((release.version.clone(), image.digest.clone()));
                } else {
                    report.mixed.push((release.version.clone(), bases));
                }
                continue;
            }
        };
        image.version = Some(found.version.clone());
        image.age_index = Some(found.age_index);
        if image.repository.trim().is_empty() {
            image.repository = base.repository.clone();
        }
        let inherited = |reason: &str| Reason {
            reason: reason.to_string(),
            from_base: Some(format!("{} {}", base.repository, found.version)),
        };
        if release.barrier.is_none()
            && let Some(reason) = &found.barrier
        {
            release.barrier = Some(inherited(reason));
        }
        if release.deadend.is_none()
            && let Some(reason) = &found.deadend
        {
            release.deadend = Some(inherited(reason));
        }
    }
    let summary = base.summary();
    let base_age = |r: &crate::document::Release| r.base.as_ref().and_then(|b| b.age_index);
    for barrier in &summary.barriers {
        if document
            .releases
            .iter()
            .any(|r| base_age(r) == Some(barrier.age_index))
        {
            continue;
        }
        let versions = |keep: &dyn Fn(u64) -> bool| -> Vec<String> {
            document
                .releases
                .iter()
                .filter(|r| base_age(r).is_some_and(keep))
                .map(|r| r.version.clone())
                .collect()
        };
        report.missing_barriers.push(MissingBarrier {
            barrier: barrier.clone(),
            held_back: versions(&|age| age < barrier.age_index),
            beyond: versions(&|age| age > barrier.age_index),
        });
    }
    document.base = Some(summary);
    report
}

/// The document a host builds for itself when it follows a tag in a
/// repository that publishes none: the booted image, the tag's image and any
/// images found on the way to a base barrier, ordered by their base's age
/// and then build time, each offered at once (the derived team runs no
/// rollouts here), with the base's barriers and dead-ends inherited. Planning
/// on it applies the same guard and explanations as a published document.
pub fn tag_following_document(
    repository: &str,
    stream: &str,
    candidates: Vec<crate::assemble::Candidate>,
    base: &BaseGraph,
    expand: &BTreeMap<String, Vec<String>>,
    now: jiff::Timestamp,
) -> (GraphDocument, Inheritance) {
    let base_age =
        |candidate: &crate::assemble::Candidate| base.age_of(candidate.base.as_ref()?, expand);
    let mut seen = BTreeSet::new();
    let mut ordered: Vec<(Option<u64>, crate::assemble::Candidate)> = candidates
        .into_iter()
        .filter(|c| seen.insert(c.source_digest.clone()))
        .map(|c| (base_age(&c), c))
        .collect();
    ordered.sort_by(|(a_age, a), (b_age, b)| {
        (a_age, a.created, &a.source_digest).cmp(&(b_age, b.created, &b.source_digest))
    });
    let mut releases: Vec<crate::document::Release> = Vec::new();
    for (_, candidate) in ordered {
        let mut version = candidate.version.clone();
        if releases.iter().any(|r| r.version == version) {
            version = format!(
                "{version}+{}",
                crate::digest::short(&candidate.source_digest)
            );
        }
        releases.push(crate::document::Release {
            version,
            architectures: candidate.architectures,
            base: candidate.base,
            rollout: Some(crate::rollout::Rollout {
                start_epoch: Some(0),
                start_percentage: Some(1.0),
                duration_minutes: None,
            }),
            ..crate::document::Release::default()
        });
    }
    let mut document = GraphDocument {
        stream: stream.to_string(),
        repository: repository.to_string(),
        issued: now,
        // Rebuilt at every check; the hour only keeps it from reading as expired.
        expires: now + jiff::SignedDuration::from_hours(1),
        releases,
        ..GraphDocument::default()
    };
    let report = inherit(&mut document, base, expand);
    (document, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(version: &str, age_index: u64) -> BaseBarrier {
        BaseBarrier {
            version: version.into(),
            age_index,
            reason: "migration".into(),
        }
    }

    fn digest(n: u64) -> String {
        format!("sha256:{n:064x}")
    }

    fn base_graph(barrier_at: Option<u64>) -> BaseGraph {
        BaseGraph {
            source: "test".into(),
            repository: "quay.io/base".into(),
            releases: (0..4)
                .map(|age| BaseRelease {
                    version: format!("b{age}"),
                    age_index: age,
                    digests: [digest(100 + age)].into(),
                    barrier: (Some(age) == barrier_at).then(|| "migrate".to_string()),
                    deadend: (age == 3).then(|| "broken".to_string()),
                })
                .collect(),
            uneven: Vec::new(),
        }
    }

    fn derived(bases: &[u64]) -> GraphDocument {
        GraphDocument {
            stream: "stable".into(),
            repository: "quay.io/derived".into(),
            releases: bases
                .iter()
                .enumerate()
                .map(|(i, &base)| crate::document::Release {
                    version: format!("d{i}"),
                    architectures: [(
                        "x86_64".to_string(),
                        crate::document::ArchEntry::image(digest(i as u64)),
                    )]
                    .into(),
                    base: Some(crate::document::BaseImage::new("", digest(base))),
                    ..crate::document::Release::default()
                })
                .collect(),
            ..GraphDocument::default()
        }
    }

    #[test]
    fn inheritance_is_recomputed_and_the_teams_own_reasons_win() {
        let mut document = derived(&[100, 101, 103, 999]);
        document.releases[1].deadend = Some(Reason::new("ours"));
        let report = inherit(&mut document, &base_graph(Some(1)), &BTreeMap::new());
        let r = &document.releases;
        assert_eq!(
            r[1].barrier.as_ref().map(Reason::describe).as_deref(),
            Some("migrate (inherited from base quay.io/base b1)")
        );
        assert_eq!(
            r[1].deadend,
            Some(Reason::new("ours")),
            "the team's own dead-end stays"
        );
        assert_eq!(
            r[2].deadend
                .as_ref()
                .and_then(|d| d.from_base.clone())
                .as_deref(),
            Some("quay.io/base b3")
        );
        assert_eq!(
            r[0].base.as_ref().map(|b| b.repository.as_str()),
            Some("quay.io/base"),
            "filled in"
        );
        assert_eq!(report.unresolved, vec![("d3".to_string(), digest(999))]);
        assert!(report.missing_barriers.is_empty(), "d1 is on the barrier");
        // The base drops its barrier: the inherited one goes at the next publication.
        let report = inherit(&mut document, &base_graph(None), &BTreeMap::new());
        assert_eq!(document.releases[1].barrier, None);
        assert!(report.missing_barriers.is_empty());
        // A barrier no release is built on is reported with who it holds back.
        let mut document = derived(&[100, 102]);
        let report = inherit(&mut document, &base_graph(Some(1)), &BTreeMap::new());
        assert_eq!(report.missing_barriers.len(), 1);
        assert_eq!(report.missing_barriers[0].held_back, vec!["d0".to_string()]);
        assert_eq!(report.missing_barriers[0].beyond, vec!["d1".to_string()]);
        let graph = document.graph_for("x86_64", &digest(0));
        assert_eq!(
            graph.edge_list(),
            Vec::<(usize, usize)>::new(),
            "no rollouts, and the guard"
        );
    }

    #[test]
    fn a_barrier_image_published_late_is_walked_through_then_onwards() {
        // d0 on b0 and d1 on b2 first; d2 on the barrier b1 is built after the fact.
        let mut document = derived(&[100, 102, 101]);
        for release in &mut document.releases {
            release.rollout = Some(crate::rollout::Rollout::immediate());
        }
        inherit(&mut document, &base_graph(Some(1)), &BTreeMap::new());
        assert_eq!(
            document.update_order(),
            vec![0, 2, 1],
            "by base, then position"
        );
        assert_eq!(document.update_ranks(), vec![0, 2, 1]);
        let graph = document.graph_for("x86_64", &digest(0));
        let versions: Vec<&str> = graph.nodes().iter().map(|n| n.version.as_str()).collect();
        assert_eq!(versions, ["d0", "d2", "d1"]);
        let ages: Vec<u64> = graph.nodes().iter().map(|n| n.age_index).collect();
        assert_eq!(ages, [0, 1, 2], "age indexes follow update order");
        let mut edges = graph.edge_list();
        edges.sort();
        assert_eq!(
            edges,
            vec![(0, 1), (1, 2)],
            "through the barrier image, then on"
        );
        assert_eq!(
            crate::assemble::not_offered(&document),
            Vec::<String>::new()
        );
    }

    #[test]
    fn releases_without_a_known_base_sort_first_and_plain_documents_keep_their_order() {
        let mut document = derived(&[102, 999, 100]);
        inherit(&mut document, &base_graph(None), &BTreeMap::new());
        assert_eq!(document.update_order(), vec![1, 2, 0]);
        let plain = GraphDocument {
            releases: vec![crate::document::Release::default(); 3],
            ..GraphDocument::default()
        };
        assert_eq!(plain.update_order(), vec![0, 1, 2]);
    }

    #[test]
    fn a_derived_base_gives_its_update_order_as_base_ages() {
        // The base is itself derived, with its barrier image built late.
        let mut base_document = derived(&[100, 102, 101]);
        inherit(&mut base_document, &base_graph(Some(1)), &BTreeMap::new());
        let base = BaseGraph::from_document(&base_document, "test");
        let ages: Vec<(&str, u64)> = base
            .releases
            .iter()
            .map(|r| (r.version.as_str(), r.age_index))
            .collect();
        assert_eq!(ages, [("d0", 0), ("d1", 2), ("d2", 1)]);
        assert_eq!(
            base.barriers()
                .iter()
                .map(|b| (b.version.as_str(), b.age_index))
                .collect::<Vec<_>>(),
            [("d2", 1)],
            "the inherited barrier sits at its rank"
        );
    }

    #[test]
    fn architectures_on_different_base_releases_have_no_single_base() {
        let mut document = derived(&[100]);
        let aliases: BTreeMap<String, Vec<String>> = [(digest(100), vec![digest(102)])].into();
        let report = inherit(&mut document, &base_graph(Some(1)), &aliases);
        assert_eq!(
            report.mixed,
            vec![("d0".to_string(), vec!["b0".to_string(), "b2".to_string()])]
        );
        assert_eq!(
            document.releases[0].base.as_ref().and_then(|b| b.age_index),
            None
        );
    }

    #[test]
    fn a_base_image_has_an_age_only_when_it_names_one_known_release() {
        let base = base_graph(None);
        let index = digest(900);
        let image = |d: &str| BaseImage::new("quay.io/base", d);
        let none = BTreeMap::new();
        // By its own digest.
        assert_eq!(base.age_of(&image(&digest(102)), &none), Some(2));
        // An index: by the manifests it expands to, all on one release.
        let one: BTreeMap<String, Vec<String>> = [(index.clone(), vec![digest(101)])].into();
        assert_eq!(base.age_of(&image(&index), &one), Some(1));
        assert_eq!(base.age_of(&image(&index), &none), None, "unknown index");
        // Architectures on different base releases: no single age.
        let mixed: BTreeMap<String, Vec<String>> =
            [(index.clone(), vec![digest(101), digest(103)])].into();
        assert_eq!(base.age_of(&image(&index), &mixed), None);
        assert_eq!(
            base.resolve_image(&image(&index), &mixed)
                .map(|r| r.version.clone()),
            Err(vec!["b1".to_string(), "b3".to_string()])
        );
    }

    #[test]
    fn no_move_crosses_a_base_barrier_strictly_between_its_ends() {
        let barriers = [barrier("b5", 5), barrier("b9", 9)];
        assert_eq!(crossed_base_barrier(Some(1), Some(4), &barriers), Ok(()));
        // Onto the barrier itself, and onwards from it: allowed.
        assert_eq!(crossed_base_barrier(Some(1), Some(5), &barriers), Ok(()));
        assert_eq!(crossed_base_barrier(Some(5), Some(8), &barriers), Ok(()));
        // Past it from below: the first barrier crossed is named.
        assert_eq!(
            crossed_base_barrier(Some(1), Some(6), &barriers),
            Err(Blocked::Barrier(&barriers[0]))
        );
        assert_eq!(
            crossed_base_barrier(Some(1), Some(12), &barriers),
            Err(Blocked::Barrier(&barriers[0]))
        );
        assert_eq!(
            crossed_base_barrier(Some(6), Some(12), &barriers),
            Err(Blocked::Barrier(&barriers[1]))
        );
        // Same base (a rebuild): nothing crossed.
        assert_eq!(crossed_base_barrier(Some(6), Some(6), &barriers), Ok(()));
        // Backwards: an older base is a downgrade, and never back over a barrier.
        assert_eq!(
            crossed_base_barrier(Some(8), Some(6), &barriers),
            Err(Blocked::OlderBase)
        );
        assert_eq!(
            crossed_base_barrier(Some(6), Some(5), &barriers),
            Err(Blocked::OlderBase),
            "onto the barrier from above is no crossing"
        );
        assert_eq!(
            crossed_base_barrier(Some(5), Some(4), &barriers),
            Err(Blocked::Barrier(&barriers[0]))
        );
        assert_eq!(
            crossed_base_barrier(Some(12), Some(1), &barriers),
            Err(Blocked::Barrier(&barriers[0]))
        );
        assert_eq!(
            crossed_base_barrier(None, Some(1), &barriers),
            Err(Blocked::UnknownBase)
        );
        assert_eq!(
            crossed_base_barrier(Some(1), None, &[]),
            Err(Blocked::UnknownBase)
        );
    }

    #[test]
    fn per_architecture_graphs_merge_into_one_release_per_version() {
        let x86 = base_graph(Some(1));
        // aarch64 lacks b1 and has b2a, which only it shipped, after b2; its
        // b2 is a barrier, its b2a a dead-end, and its b3 is no dead-end.
        let mut arm = base_graph(None);
        arm.releases.remove(1);
        for release in &mut arm.releases {
            release.digests = [digest(200 + release.age_index)].into();
            release.deadend = None;
        }
        arm.releases[1].barrier = Some("arm-migrate".into());
        arm.releases.insert(
            2,
            BaseRelease {
                version: "b2a".into(),
                age_index: 9,
                digests: [digest(299)].into(),
                deadend: Some("arm-broken".into()),
                ..BaseRelease::default()
            },
        );
        for (age, release) in arm.releases.iter_mut().enumerate() {
            release.age_index = age as u64;
        }
        let merged = BaseGraph::merge(vec![
            ("x86_64".into(), x86.clone()),
            ("aarch64".into(), arm),
        ]);
        let order: Vec<(&str, u64)> = merged
            .releases
            .iter()
            .map(|r| (r.version.as_str(), r.age_index))
            .collect();
        assert_eq!(
            order,
            [("b0", 0), ("b1", 1), ("b2", 2), ("b2a", 3), ("b3", 4)]
        );
        let b2 = merged.find([digest(202).as_str()]).map(|r| &r.version);
        assert_eq!(b2.map(String::as_str), Some("b2"), "aarch64's digest of b2");
        let marks: Vec<(Option<&str>, Option<&str>)> = merged
            .releases
            .iter()
            .map(|r| (r.barrier.as_deref(), r.deadend.as_deref()))
            .collect();
        assert_eq!(
            marks,
            [
                (None, None),
                (Some("migrate"), None),
                (Some("arm-migrate"), None),
                (None, Some("arm-broken")),
                (None, Some("broken")),
            ],
            "the union, whichever graph has the mark"
        );
        // b1 and b2a are on one architecture only: nothing to disagree on.
        let uneven: Vec<(&str, &str, Vec<String>, Vec<String>)> = merged
            .uneven
            .iter()
            .map(|u| (u.version.as_str(), u.mark, u.on.clone(), u.off.clone()))
            .collect();
        assert_eq!(
            uneven,
            [
                (
                    "b2",
                    "barrier",
                    vec!["aarch64".into()],
                    vec!["x86_64".into()]
                ),
                (
                    "b3",
                    "dead-end",
                    vec!["x86_64".into()],
                    vec!["aarch64".into()]
                ),
            ]
        );
        let mut document = derived(&[100, 102]);
        let warnings = inherit(&mut document, &merged, &BTreeMap::new()).warnings(&merged);
        let b2_warning = warnings
            .iter()
            .find(|w| w.contains("b2 is a barrier on aarch64 but not on x86_64"));
        assert!(b2_warning.is_some(), "{warnings:?}");
        // One graph, or graphs that agree, keep their ages.
        let one = |graph: &BaseGraph| vec![("x86_64".to_string(), graph.clone())];
        assert_eq!(BaseGraph::merge(one(&x86)), x86);
        let twice = [one(&x86), vec![("aarch64".into(), x86.clone())]].concat();
        assert_eq!(BaseGraph::merge(twice), x86);
    }

    #[test]
    fn graphs_that_order_releases_differently_keep_the_first_graphs_order() {
        let chain = |versions: &[&str]| BaseGraph {
            releases: versions
                .iter()
                .enumerate()
                .map(|(age, version)| BaseRelease {
                    version: version.to_string(),
                    age_index: age as u64,
                    ..BaseRelease::default()
                })
                .collect(),
            ..BaseGraph::default()
        };
        let versions = |graph: &BaseGraph| -> Vec<(String, u64)> {
            let mut releases: Vec<_> = graph
                .releases
                .iter()
                .map(|r| (r.version.clone(), r.age_index))
                .collect();
            releases.sort_by_key(|r| r.1);
            releases
        };
        let x86 = chain(&["c0", "c1", "c2"]);
        let swapped = BaseGraph::merge(vec![
            ("x86_64".into(), x86.clone()),
            ("aarch64".into(), chain(&["c0", "c2", "c1"])),
        ]);
        assert_eq!(
            versions(&swapped),
            versions(&x86),
            "no release added: ages kept"
        );
        // A release only the second graph has goes after the one it follows
        // there, even where the two disagree.
        let with_new = BaseGraph::merge(vec![
            ("x86_64".into(), x86),
            ("aarch64".into(), chain(&["c0", "c2", "n", "c1"])),
        ]);
        let expected: Vec<(String, u64)> = [("c0", 0), ("c1", 1), ("c2", 2), ("n", 3)]
            .map(|(v, a)| (v.to_string(), a))
            .into();
        assert_eq!(versions(&with_new), expected);
    }
}
