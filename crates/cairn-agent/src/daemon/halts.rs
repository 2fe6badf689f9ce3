//! The halt list a verified document asks for: read from its location
//! (mirrors first, as the document is), verified with the host's graph and
//! halt keys against the document's floor and the list held, and kept.

use crate::config::Settings;
use crate::halts::{Fetched, HaltRefusal, InForce, in_force, refusal_label};
use crate::source::GraphUnavailable;
use crate::store::AgentState;
use cairn_graph::GraphDocument;
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
pub(super) async fn halt_list(
    settings: &Settings,
    document: &GraphDocument,
    stream: &str,
    state: &mut AgentState,
    client: &cairn_oci::RegistryClient,
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
    let fetched = match read(&halts.location, client, mirrors).await {
        Ok(fetched) => verify(
            settings,
            &fetched,
            stream,
            held.as_ref(),
            halts.min_sequence,
            now,
        ),
        Err(refusal) => Fetched::Refused(refusal),
    };
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
        !settings.halt_keys.is_empty(),
        now,
    );
    if let Some(hold) = hold {
        state.halt_lists.insert(stream.to_string(), hold);
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

/// Fetch the list: from the mirrors of a registry location first, then the
/// location itself; the first that answers is the one read.
async fn read(
    location: &str,
    client: &cairn_oci::RegistryClient,
    mirrors: &cairn_oci::registries_conf::RegistriesConf,
) -> Result<FetchedHaltList, HaltRefusal> {
    let parsed = Location::parse(location).map_err(|e| HaltRefusal {
        kind: "halts_other".into(),
        message: format!("halts.location {location:?}: {e}"),
        unreachable: false,
    })?;
    let places = match &parsed {
        Location::Registry(reference) if reference.digest.is_none() => {
            let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
            mirrors
                .for_tag(&reference.repository.to_string())
                .iter()
                .filter_map(|repository| Location::parse(&format!("{repository}:{tag}")).ok())
                .collect()
        }
        _ => vec![parsed],
    };
    let mut failures = Vec::new();
    for place in places {
        match cairn_oci::halts::fetch_location(&place, client).await {
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

/// Verify a fetched list with `updates.keys` (which may also drop halts)
/// and `updates.halt_keys` (which may only add them).
fn verify(
    settings: &Settings,
    fetched: &FetchedHaltList,
    stream: &str,
    held: Option<&cairn_graph::halts::HaltList>,
    min_sequence: u64,
    now: Timestamp,
) -> Fetched {
    let keys = |paths: &[std::path::PathBuf], key: &str| {
        cairn_oci::signing::VerifyingKey::from_files(paths).map_err(|e| HaltRefusal {
            kind: "halts_other".into(),
            message: format!("{key}: {e}"),
            unreachable: false,
        })
    };
    let (graph_keys, halt_keys) = match (
        keys(&settings.keys, "updates.keys"),
        keys(&settings.halt_keys, "updates.halt_keys"),
    ) {
        (Ok(graph), Ok(halt)) => (graph, halt),
        (Err(refusal), _) | (_, Err(refusal)) => return Fetched::Refused(refusal),
    };
    let trust = HaltTrust {
        graph_keys: &graph_keys,
        halt_keys: &halt_keys,
        stream,
        newest_held: held,
        min_sequence,
        now,
    };
    match fetched.verify(&trust) {
        Ok(signed_as) => Fetched::Accepted(fetched.list.clone(), signed_as),
        Err(e) => Fetched::Refused(refusal(&e)),
    }
}

fn refusal(error: &HaltStoreError) -> HaltRefusal {
    HaltRefusal {
        kind: error.kind().to_string(),
        message: error.to_string(),
        unreachable: error.is_unreachable(),
    }
}
