//! What a check plans against. A Cairn document (or Fedora's files turned
//! into one) carries every release and its own expiry; a Cincinnati server
//! sends a graph it already computed, edges included, and nothing that
//! expires. Both answer the same questions, so the plan does not care which.

use cairn_graph::{Decision, GraphDocument, Query, UpdateGraph};
use jiff::Timestamp;
use std::borrow::Cow;

/// The update graph of one check.
#[derive(Debug, Clone)]
pub enum SourceGraph {
    /// A verified document.
    Document(GraphDocument),
    /// A Cincinnati `/v1/graph` answer, edges as the server sent them.
    Cincinnati(UpdateGraph),
    /// The document a tag-following host builds for itself at each check:
    /// nothing signed it and nothing expires.
    Followed(GraphDocument),
}

impl SourceGraph {
    /// The graph a host reporting `booted` follows.
    pub fn graph_for(&self, arch: &str, booted: &str) -> Cow<'_, UpdateGraph> {
        match self {
            SourceGraph::Document(document) | SourceGraph::Followed(document) => {
                Cow::Owned(document.graph_for(arch, booted))
            }
            SourceGraph::Cincinnati(graph) => Cow::Borrowed(graph),
        }
    }

    /// Choose the update; an expired document offers nothing.
    pub fn decide(&self, arch: &str, query: &Query<'_>) -> Decision {
        match self {
            SourceGraph::Document(document) => document.decide(arch, query),
            SourceGraph::Cincinnati(graph) => graph.decide_served(query),
            SourceGraph::Followed(document) => document.graph_for(arch, query.booted).decide(query),
        }
    }

    /// Whether a host on `query.booted` may take `release` now (the check
    /// a staged release must keep passing); an expired document offers nothing.
    pub fn offers(
        &self,
        arch: &str,
        query: &Query<'_>,
        release: &str,
    ) -> Result<(), cairn_graph::NotOffered> {
        match self {
            SourceGraph::Document(document) => document.offers(arch, query, release),
            SourceGraph::Cincinnati(graph) => graph.offers_served(query, release),
            SourceGraph::Followed(document) => document
                .graph_for(arch, query.booted)
                .offers(query, release),
        }
    }

    /// When the decision will next change without a new graph.
    pub fn next_change_after(&self, arch: &str, query: &Query<'_>) -> Option<Timestamp> {
        match self {
            SourceGraph::Document(document) => document.next_change_after(arch, query),
            SourceGraph::Cincinnati(graph) => graph.next_change_after_served(query),
            SourceGraph::Followed(document) => document
                .graph_for(arch, query.booted)
                .next_change_after(query),
        }
    }

    /// True when the target is built on a newer base release than the
    /// booted release. Then the base decides what is newer, not build
    /// dates: an image built late on a base barrier may be newer than the
    /// next release, so the host tool's own date check must stay out of it.
    pub fn moves_to_newer_base(&self, arch: &str, booted: &str, target: &str) -> bool {
        let graph = self.graph_for(arch, booted);
        let base_age = |digest: &str| {
            graph
                .find_booted(digest)
                .and_then(|at| graph.nodes()[at].base_age)
        };
        matches!((base_age(booted), base_age(target)), (Some(from), Some(to)) if to > from)
    }

    /// The same graph with the base-barrier guard of a derived document
    /// lifted (`update-now --cross-barrier`); releases whose base is unknown
    /// stay unreachable, and inherited barriers stay barriers.
    pub fn crossing_base_barriers(self) -> SourceGraph {
        match self {
            SourceGraph::Document(mut document) => {
                lift(&mut document);
                SourceGraph::Document(document)
            }
            SourceGraph::Followed(mut document) => {
                lift(&mut document);
                SourceGraph::Followed(document)
            }
            SourceGraph::Cincinnati(graph) => SourceGraph::Cincinnati(graph),
        }
    }

    /// The document's sequence; a Cincinnati graph has none.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            SourceGraph::Document(document) => Some(document.sequence),
            SourceGraph::Cincinnati(_) | SourceGraph::Followed(_) => None,
        }
    }

    /// The age index of a release named by version, on any architecture.
    pub fn age_of_version(&self, version: &str) -> Option<u64> {
        match self {
            SourceGraph::Document(document) | SourceGraph::Followed(document) => document
                .release_in_update_order(version)
                .map(|(age, _)| age),
            SourceGraph::Cincinnati(graph) => graph
                .nodes()
                .iter()
                .find(|node| node.version == version)
                .map(|node| node.age_index),
        }
    }

    /// The release (version, age index) a digest, one of its aliases, or an
    /// ostree commit checksum belongs to.
    pub fn release_of_digest(&self, digest: &str) -> Option<(String, u64)> {
        match self {
            SourceGraph::Document(document) | SourceGraph::Followed(document) => {
                let ranks = document.update_ranks();
                document
                    .releases
                    .iter()
                    .zip(ranks)
                    .find(|(release, _)| {
                        release.architectures.values().any(|entry| {
                            entry.digest.as_deref() == Some(digest)
                                || entry.ostree.as_deref() == Some(digest)
                                || entry.aliases.iter().any(|alias| alias == digest)
                        })
                    })
                    .map(|(release, age)| (release.version.clone(), age))
            }
            SourceGraph::Cincinnati(graph) => graph
                .nodes()
                .iter()
                .find(|node| node.matches(digest) || node.matches_alias(digest))
                .map(|node| (node.version.clone(), node.age_index)),
        }
    }
}

/// Why a check has no graph to plan against: the source is down, the
/// document is untrusted (bad signature, expired, replayed), the tag cannot
/// be read. The message names the source; the kind is a fixed label for the
/// status and metrics, taken from the error behind it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GraphUnavailable {
    kind: &'static str,
    message: String,
}

impl GraphUnavailable {
    /// `kind` is a fixed label (an error's `kind()`), never text from a source.
    pub fn new(kind: &'static str, message: impl Into<String>) -> GraphUnavailable {
        GraphUnavailable {
            kind,
            message: message.into(),
        }
    }

    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Every place tried (mirrors, then the origin) failed: their messages
    /// joined, and the kind of the first failure that is more than a
    /// `not_found` (an unreachable mirror says more than a missing tag).
    pub fn all_failed(failures: Vec<GraphUnavailable>) -> GraphUnavailable {
        let kind = failures
            .iter()
            .map(GraphUnavailable::kind)
            .find(|kind| *kind != "not_found")
            .unwrap_or("not_found");
        let messages: Vec<String> = failures.into_iter().map(|f| f.message).collect();
        GraphUnavailable::new(kind, messages.join("; "))
    }
}

impl From<cairn_oci::sources::SourceError> for GraphUnavailable {
    fn from(error: cairn_oci::sources::SourceError) -> GraphUnavailable {
        GraphUnavailable::new(error.kind(), error.to_string())
    }
}

fn lift(document: &mut GraphDocument) {
    if let Some(base) = &mut document.base {
        base.barriers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_places_failing_keeps_every_message_and_the_telling_kind() {
        let missing =
            |place: &str| GraphUnavailable::new("not_found", format!("{place}: not found"));
        let joined = GraphUnavailable::all_failed(vec![
            missing("mirror.example.net/os"),
            GraphUnavailable::new("transport", "quay.io/os: connection refused"),
            missing("ghcr.io/os"),
        ]);
        assert_eq!(joined.kind(), "transport");
        assert_eq!(
            joined.to_string(),
            "mirror.example.net/os: not found; quay.io/os: connection refused; ghcr.io/os: not found"
        );
        let joined = GraphUnavailable::all_failed(vec![missing("a"), missing("b")]);
        assert_eq!(joined.kind(), "not_found");
        assert_eq!(joined.to_string(), "a: not found; b: not found");
    }

    fn document() -> GraphDocument {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/examples/stable.json");
        GraphDocument::from_json(&std::fs::read(path).expect("example document"))
            .expect("parses")
            .document
    }

    #[test]
    fn a_served_graph_answers_as_the_document_it_came_from() {
        let document = document();
        let booted = document.releases[1].architectures["x86_64"]
            .digest
            .clone()
            .expect("digest");
        let from_document = SourceGraph::Document(document.clone());
        let served = SourceGraph::Cincinnati(
            UpdateGraph::from_cincinnati(
                &from_document.graph_for("x86_64", &booted).to_cincinnati(),
            )
            .expect("round trip"),
        );
        // Mid-rollout of the newest release, from both sides of it.
        for wariness in [0.1, 0.5, 0.9] {
            let query = Query {
                booted: &booted,
                wariness,
                now: "2025-11-11T16:00:00Z".parse().expect("time"),
                deny: &[],
                halted: &[],
                allow_downgrade: false,
            };
            let expected = from_document.decide("x86_64", &query);
            assert!(expected.target.is_some(), "the example offers an update");
            assert_eq!(expected.target, served.decide("x86_64", &query).target);
            assert_eq!(
                from_document
                    .graph_for("x86_64", &booted)
                    .next_change_after(&query),
                served.next_change_after("x86_64", &query)
            );
        }
        // Releases with an image for this architecture are in both.
        for release in document.releases.iter().filter(|r| {
            r.architectures
                .get("x86_64")
                .is_some_and(|e| e.digest.is_some())
        }) {
            assert_eq!(
                from_document.age_of_version(&release.version),
                served.age_of_version(&release.version),
                "{}",
                release.version
            );
            if let Some(digest) = release
                .architectures
                .get("x86_64")
                .and_then(|e| e.digest.clone())
            {
                assert_eq!(
                    from_document.release_of_digest(&digest),
                    served.release_of_digest(&digest)
                );
            }
        }
        assert_eq!(served.sequence(), None);
        assert_eq!(from_document.sequence(), Some(document.sequence));
    }
}
