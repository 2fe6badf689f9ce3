//! The document, fetched from its source (mirrors first) and verified as
//! the trust model says: keys, expiry, replay and stream.

use crate::config::{Settings, Source};
use crate::host::repository_of;
use crate::source::GraphUnavailable;
use crate::store::AgentState;
use cairn_graph::GraphDocument;
// Fedora publishes no Cairn document for its own repository: its release
// index and updates file are the source there.
use cairn_oci::sources::FEDORA_COREOS_REPOSITORY;
use cairn_oci::trust::TrustedRoot;
use jiff::Timestamp;
use std::path::Path;

/// The document, fetched and verified as the trust model says. `source` is
/// the effective one (a commit-booted Fedora CoreOS host's default is
/// Fedora's files); `oci` is false on a host booted from ostree commits, whose
/// graph from Fedora's files carries commit checksums.
#[allow(clippy::too_many_arguments)]
pub(super) async fn document(
    settings: &Settings,
    source: &Source,
    oci: bool,
    followed: &str,
    stream: &str,
    state: &mut AgentState,
    readers: &cairn_oci::Readers,
    mirrors: &cairn_oci::registries_conf::RegistriesConf,
    now: Timestamp,
    fcos_cache: &Path,
    held: &mut super::roots::Held,
    root_status: &mut Option<crate::status::TrustRootStatus>,
) -> Result<(GraphDocument, String), GraphUnavailable> {
    let client = &readers.client;
    // Fedora's own files: configured, or the default for Fedora's repository.
    let fedora_files = |base_url| {
        cairn_oci::sources::fcos_document(client, base_url, stream, now, Some(fcos_cache), oci)
    };
    let locations = match source {
        Source::Fcos { base_url } => {
            return fedora_files(base_url.as_deref())
                .await
                .map_err(GraphUnavailable::from);
        }
        Source::Registry(None) if repository_of(followed) == FEDORA_COREOS_REPOSITORY => {
            return fedora_files(None).await.map_err(GraphUnavailable::from);
        }
        // Mirrors first, as the host's own pulls go.
        Source::Registry(None) => mirrors
            .for_tag(repository_of(followed))
            .iter()
            .map(|repository| {
                cairn_oci::Location::parse(&format!(
                    "{repository}:{}",
                    cairn_oci::document::default_tag(stream)
                ))
                .map_err(|e| GraphUnavailable::new(e.kind(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Source::Registry(Some(reference)) => {
            vec![
                cairn_oci::Location::parse(reference)
                    .map_err(|e| GraphUnavailable::new(e.kind(), format!("updates.source: {e}")))?,
            ]
        }
        Source::File(path) => vec![cairn_oci::Location::File(path.clone())],
        Source::Server(url) => vec![cairn_oci::Location::Url(format!(
            "{}/v2/graph/{stream}",
            url.trim_end_matches('/')
        ))],
        Source::Tag => {
            return Err(GraphUnavailable::new(
                "bad_source",
                "the tag-following source builds its own document",
            ));
        }
        // Read by `cincinnati_graph`: a Cincinnati server sends no document.
        Source::Cincinnati(url) => {
            return Err(GraphUnavailable::new(
                "bad_source",
                format!("cincinnati:{url} serves a graph, not a document"),
            ));
        }
    };
    let origin = locations.last().cloned();
    let mut failures = Vec::new();
    let mut found = None;
    for location in locations {
        let described = location.to_string();
        match cairn_oci::document::fetch_location_in(&location, readers).await {
            Ok(fetched) => {
                found = Some((fetched, described, location));
                break;
            }
            Err(e) => failures.push(GraphUnavailable::new(e.kind(), format!("{described}: {e}"))),
        }
    }
    let Some((fetched, described, location)) = found else {
        return Err(GraphUnavailable::all_failed(failures));
    };
    // The walk happens where the document was found, before it is
    // verified: a key the next root removed must not count here. At a
    // mirror, the repository itself is also asked for the next root, so a
    // mirror without the chain cannot keep a removed key counting.
    let walked = super::roots::walk(held, &location, readers, state, now).await;
    *root_status = held.status();
    walked?;
    if let (Some(root), Some(origin)) = (held.root.as_ref(), origin.as_ref())
        && origin != &location
    {
        let checked =
            super::roots::check_origin(root, &location, origin, client, settings.mirror_root_check)
                .await;
        let note = match &checked {
            Ok(None) => None,
            Ok(Some(unasked)) => {
                tracing::warn!(note = %unasked.note, kind = unasked.kind, "the trust root check at the repository failed open");
                *state
                    .root_origin_unasked
                    .entry(unasked.kind.to_string())
                    .or_default() += 1;
                held.unasked = state.root_origin_unasked.clone();
                Some(unasked.note.clone())
            }
            Err(refused) => Some(refused.to_string()),
        };
        if let Some(note) = note {
            held.note = Some(match held.note.take() {
                Some(earlier) => format!("{earlier}; {note}"),
                None => note,
            });
            *root_status = held.status();
        }
        checked?;
    }
    let last = state.last_document.clone();
    let signers = held.graph();
    let policy = cairn_oci::document::TrustPolicy {
        signers: signers.as_ref(),
        allow_unsigned: settings.allow_unsigned,
        now,
        last_seen: last
            .as_ref()
            .map(|(sequence, digest)| cairn_oci::document::Seen {
                sequence: *sequence,
                digest,
            }),
        stream: Some(stream),
    };
    if let Err(e) = fetched.verify(&described, &policy) {
        let version = held.root.as_ref().map_or(0, TrustedRoot::version);
        return Err(GraphUnavailable::new(
            e.kind(),
            format!("{e} (verified under trust root version {version})"),
        ));
    }
    state.last_document = Some((
        fetched.document.sequence,
        cairn_oci::digest::sha256_digest(&fetched.bytes),
    ));
    Ok((fetched.document, described))
}
