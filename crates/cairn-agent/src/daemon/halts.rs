//! The halt list a verified document asks for: read from its location
//! (mirrors first, as the document is), verified with the host's graph and
//! halt keys against the document's floor and the list held, and kept.

use crate::config::Settings;
use crate::halts::{Fetched, HaltRefusal, InForce, in_force, refusal_label};
use crate::source::GraphUnavailable;
use crate::store::AgentState;
use cairn_graph::GraphDocument;
use cairn_graph::halts::SignedAs;
use cairn_oci::Location;
use cairn_oci::halts::{FetchedHaltList, HaltStoreError, HaltTrust};
use jiff::Timestamp;

/// What a pass applies: the halted digests (or why no list is in force) and
/// what status shows; `None` when the document turns no halt list on.
pub(super) struct Halts {
    /// The digests halted now, or why no verified, unexpired list is at hand.
    pub halted: Result<Vec<String>, GraphUnavailable>,
    /// For `cairn status`.
    pub status: crate::halts::HaltListStatus,
}

/// Read, verify and keep the halt list `document` turns on; `None` when it
/// turns none on. `state` keeps the newest accepted list and the refusal counts.
#[allow(clippy::too_many_arguments)]
pub(super) async fn halt_list(
    settings: &Settings,
    root: &super::roots::Held,
    document: &GraphDocument,
    stream: &str,
    state: &mut AgentState,
    readers: &cairn_oci::Readers,
    mirrors: &cairn_oci::registries_conf::RegistriesConf,
    now: Timestamp,
) -> Option<Halts> {
    let halts = document.halts.as_ref()?;
    let cleared = document.cleared_halts();
    let held = state
        .halt_lists
        .get(stream)
        .filter(|list| list.stream == stream)
        .cloned();
    // The tag still names the manifest of the list held: that list,
    // re-judged for its expiry and the document's floor, is the answer, and
    // nothing but a HEAD was read. Anything else reads the list in full.
    // It is the same list only under the same trust root: a key a new root
    // (or the configuration, at version 0) dropped must be able to refuse it.
    let trust = root.fingerprint();
    let known = held
        .as_ref()
        .and_then(|_| state.halt_list_digests.get(stream))
        .and_then(|kept| {
            let (digest, kept_trust) = kept.split_once(' ')?;
            (kept_trust == trust).then(|| digest.to_string())
        });
    let unchanged = match (&held, &known) {
        (Some(list), Some(digest)) => unchanged(&halts.location, digest, readers, mirrors)
            .await
            .then(|| list.clone())
            .filter(|list| {
                list.accept(stream, SignedAs::Graph, None, halts.min_sequence, now)
                    .is_ok()
            }),
        _ => None,
    };
    let mut read_digest = None;
    let mut read_signatures = None;
    let fetched = match unchanged {
        Some(list) => {
            read_digest = known;
            Fetched::Accepted(list, SignedAs::Graph)
        }
        None => match read(&halts.location, readers, mirrors).await {
            Ok(fetched) => {
                read_digest = fetched.manifest_digest.clone();
                read_signatures = Some(super::roots::kept(&fetched.signatures));
                verify(
                    root,
                    &fetched,
                    stream,
                    held.as_ref(),
                    halts.min_sequence,
                    now,
                )
            }
            Err(refusal) => Fetched::Refused(refusal),
        },
    };
    let accepted = matches!(fetched, Fetched::Accepted(..));
    if let Fetched::Refused(refusal) = &fetched {
        tracing::warn!(
            location = %halts.location,
            kind = %refusal.kind,
            error = %refusal.message,
            "the halt list was not taken; the held list stays in force only while it is valid"
        );
        let label = if refusal.unreachable {
            "halts_unreachable"
        } else {
            refusal_label(&refusal.kind)
        };
        *state.halt_refusals.entry(label.to_string()).or_default() += 1;
    }
    let InForce {
        list,
        hold,
        mut status,
    } = in_force(
        &halts.location,
        fetched,
        held.as_ref(),
        stream,
        halts.min_sequence,
        &cleared,
        !settings.halt_keys.is_empty() || root.root.as_ref().is_some_and(|r| r.version() >= 1),
        now,
    );
    if let Some(hold) = hold {
        state.halt_lists.insert(stream.to_string(), hold);
    }
    // A list read in full and taken: its signatures are kept, for a new
    // trust root to re-check it.
    if let Some(signatures) = read_signatures.filter(|_| accepted) {
        state
            .halt_list_signatures
            .insert(stream.to_string(), signatures);
    }
    // The digest goes with the list it was read as; a refused read leaves
    // the held list with no digest, so the next check reads in full.
    match read_digest.filter(|_| accepted) {
        Some(digest) => {
            state
                .halt_list_digests
                .insert(stream.to_string(), format!("{digest} {trust}"));
        }
        None => {
            state.halt_list_digests.remove(stream);
        }
    }
    status.refusals = state.halt_refusals.clone();
    let halted = match &list {
        Some(list) => Ok(crate::halts::halted_digests(list, &cleared)),
        None => Err(match &status.refused {
            Some(refused) => GraphUnavailable::new(
                unavailable_kind(&refused.kind),
                format!("{}: {}", halts.location, refused.message),
            ),
            None => GraphUnavailable::new(
                "halts_unavailable",
                format!("{}: no halt list", halts.location),
            ),
        }),
    };
    Some(Halts { halted, status })
}

/// The fixed label a refusal's kind stands for (a `GraphUnavailable` kind
/// must be static).
fn unavailable_kind(kind: &str) -> &'static str {
    match refusal_label(kind) {
        "halts_other" => "halts_unavailable",
        label => label,
    }
}

/// The places a list is read from: the mirrors of a registry location
/// first, then the location itself.
fn places(
    location: &str,
    mirrors: &cairn_oci::registries_conf::RegistriesConf,
) -> Result<Vec<Location>, HaltRefusal> {
    let parsed = Location::parse(location).map_err(|e| HaltRefusal {
        kind: "halts_other".into(),
        message: format!("halts.location {location:?}: {e}"),
        unreachable: false,
    })?;
    Ok(match &parsed {
        Location::Registry(reference) if reference.digest.is_none() => {
            let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
            mirrors
                .for_tag(&reference.repository.to_string())
                .iter()
                .filter_map(|repository| Location::parse(&format!("{repository}:{tag}")).ok())
                .collect()
        }
        _ => vec![parsed],
    })
}

/// Whether the first place that answers a HEAD of the list's tag names
/// `digest` there. Only registry tags are asked; any failure says no, and
/// the list is then read in full (which reports the failure).
async fn unchanged(
    location: &str,
    digest: &str,
    readers: &cairn_oci::Readers,
    mirrors: &cairn_oci::registries_conf::RegistriesConf,
) -> bool {
    let Ok(places) = places(location, mirrors) else {
        return false;
    };
    for place in places {
        let Location::Registry(reference) = place else {
            return false;
        };
        let Some(tag) = reference.tag.as_deref() else {
            return false;
        };
        let store = readers.store(&reference.repository);
        match store.resolve(tag).await {
            Ok(Some(head)) => return head.digest == digest,
            // Not there, or not reachable: the next place, as a read does.
            Ok(None) | Err(_) => continue,
        }
    }
    false
}

/// Fetch the list: from the mirrors of a registry location first, then the
/// location itself; the first that answers is the one read.
async fn read(
    location: &str,
    readers: &cairn_oci::Readers,
    mirrors: &cairn_oci::registries_conf::RegistriesConf,
) -> Result<FetchedHaltList, HaltRefusal> {
    let places = places(location, mirrors)?;
    let mut failures = Vec::new();
    for place in places {
        match cairn_oci::halts::fetch_location_in(&place, readers).await {
            Ok(fetched) => return Ok(fetched),
            Err(e) => failures.push((place.to_string(), e)),
        }
    }
    // Unreachable only when every place was; a refusal anywhere is a refusal.
    let unreachable = failures.iter().all(|(_, e)| e.is_unreachable());
    let kind = failures
        .iter()
        .find(|(_, e)| !e.is_unreachable() || unreachable)
        .map_or("halts_other", |(_, e)| e.kind());
    let message = failures
        .iter()
        .map(|(place, e)| format!("{place}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(HaltRefusal {
        kind: kind.to_string(),
        message,
        unreachable,
    })
}

/// Verify a fetched list with the trust root's graph role (which may also
/// drop halts) and halt role (which may only add them).
fn verify(
    root: &super::roots::Held,
    fetched: &FetchedHaltList,
    stream: &str,
    held: Option<&cairn_graph::halts::HaltList>,
    min_sequence: u64,
    now: Timestamp,
) -> Fetched {
    let (graph, halt) = (root.graph(), root.halt());
    let trust = HaltTrust {
        graph: graph.as_ref(),
        halt: halt.as_ref(),
        stream,
        newest_held: held,
        min_sequence,
        now,
    };
    match fetched.verify(&trust) {
        Ok(signed_as) => Fetched::Accepted(fetched.list.clone(), signed_as),
        Err(e) => {
            let mut refused = refusal(&e);
            if let Some(root) = &root.root {
                refused.message = format!(
                    "{} (verified under trust root version {})",
                    refused.message,
                    root.version()
                );
            }
            Fetched::Refused(refused)
        }
    }
}

fn refusal(error: &HaltStoreError) -> HaltRefusal {
    HaltRefusal {
        kind: error.kind().to_string(),
        message: error.to_string(),
        unreachable: error.is_unreachable(),
    }
}
