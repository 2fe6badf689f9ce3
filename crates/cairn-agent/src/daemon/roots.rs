//! The trust root a check verifies with (docs/agent.md, "Trust roots"):
//! where a host starts, the walk to the newest root where the document was
//! found, and what is re-checked once a new root is taken.

use crate::config::{MirrorRootCheck, Settings};
use crate::source::GraphUnavailable;
use crate::status::TrustRootStatus;
use crate::store::{AgentState, KeptSignature, MAX_KEPT_MESSAGE_BYTES, MAX_KEPT_SIGNATURES};
use bytes::Bytes;
use cairn_oci::Location;
use cairn_oci::document::Signed;
use cairn_oci::roots::{WalkError, root_tag};
use cairn_oci::trust::{MAX_ROOT_BYTES, Role, RoleKeys, SignedRoot, TrustedRoot};
use jiff::Timestamp;
use std::path::{Path, PathBuf};

/// The root a check starts from, and how the host came to hold it.
#[derive(Debug, Clone)]
pub(super) struct Held {
    /// `None`: no key and no root at all, documents are read unsigned.
    pub root: Option<TrustedRoot>,
    /// `configured`, `shipped`, `stored` or `walked`.
    pub origin: &'static str,
    /// A shipped root that was not taken, and why.
    pub note: Option<String>,
    /// The state's count of mirror checks that could not ask the
    /// repository, by kind, for status and metrics.
    pub unasked: std::collections::BTreeMap<String, u64>,
}

impl Held {
    /// What status shows of it.
    pub fn status(&self) -> Option<TrustRootStatus> {
        let root = self.root.as_ref()?;
        let mut status = TrustRootStatus::of(root, self.origin);
        status.note = self.note.clone();
        status.origin_unasked = self.unasked.clone();
        Some(status)
    }

    /// The graph role documents are verified with: `None` for no root, and
    /// for a version 0 without graph keys (halt keys only), as before roots.
    pub fn graph(&self) -> Option<RoleKeys> {
        role(self.root.as_ref()?, Role::Graph)
    }

    /// The halt role halt lists may be signed with.
    pub fn halt(&self) -> Option<RoleKeys> {
        role(self.root.as_ref()?, Role::Halt)
    }

    /// A digest that changes whenever what a halt list is verified with
    /// does: the root's version and each role's threshold and key ids.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        match &self.root {
            None => hasher.update(b"unsigned"),
            Some(root) => {
                hasher.update(root.version().to_be_bytes());
                for role in Role::ALL {
                    let keys = root.role(role);
                    hasher.update(role.name().as_bytes());
                    hasher.update((keys.threshold() as u64).to_be_bytes());
                    for id in keys.key_ids() {
                        hasher.update(id.as_str().as_bytes());
                    }
                    hasher.update(b"/");
                }
            }
        }
        hex::encode(hasher.finalize())
    }
}

fn role(root: &TrustedRoot, role: Role) -> Option<RoleKeys> {
    let keys = root.role(role);
    (root.version() >= 1 || !keys.is_empty()).then_some(keys)
}

/// Where `updates.root` is on this host: under the host root.
fn shipped_path(settings: &Settings, host_root: &Path) -> PathBuf {
    host_root.join(settings.root.strip_prefix("/").unwrap_or(&settings.root))
}

/// Read the shipped root; `Ok(None)` when there is no such file.
fn read_shipped(path: &Path) -> Result<Option<SignedRoot>, String> {
    let name = format!("updates.root {}", path.display());
    let bytes = match cairn_oci::roots::read_root_file(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{name}: {e}")),
    };
    if bytes.len() > MAX_ROOT_BYTES {
        return Err(format!("{name}: larger than {MAX_ROOT_BYTES} bytes"));
    }
    SignedRoot::from_envelope(Bytes::from(bytes), &name)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The root a check starts from: the one stored in the state (version 1 or
/// more) > the one shipped in the image (pinned only when nothing is
/// stored) > version 0 from `updates.keys` and `updates.halt_keys`. A host
/// that stores a root takes a shipped root only as the next link.
pub(super) fn start(
    settings: &Settings,
    host_root: &Path,
    state: &mut AgentState,
) -> Result<Held, GraphUnavailable> {
    let shipped_at = shipped_path(settings, host_root);
    if let Some(text) = &state.trust_root {
        let stored = SignedRoot::from_envelope(
            Bytes::from(text.clone().into_bytes()),
            "the trust root stored in the agent state",
        )
        .and_then(TrustedRoot::pin)
        .map_err(|e| {
            GraphUnavailable::new(
                e.kind(),
                format!("{e}; nothing is trusted until the state is repaired"),
            )
        })?;
        let mut held = Held {
            root: Some(stored),
            origin: "stored",
            note: None,
            unasked: state.root_origin_unasked.clone(),
        };
        let shipped = match read_shipped(&shipped_at) {
            Ok(shipped) => shipped,
            Err(why) => {
                held.note = Some(format!("the shipped root is not used: {why}"));
                None
            }
        };
        if let (Some(shipped), Some(stored)) = (shipped, held.root.clone()) {
            let version = shipped.version();
            let name = format!("updates.root {}", shipped_at.display());
            if Some(version) == stored.version().checked_add(1) {
                match stored.accept_next(shipped, &name) {
                    Ok(taken) => {
                        keep(state, &taken);
                        recheck(state, Some(&stored), &taken);
                        held.root = Some(taken);
                        held.origin = "walked";
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the shipped trust root was not taken");
                        held.note = Some(format!(
                            "the shipped root (version {version}) was not taken: {e}"
                        ));
                    }
                }
            } else if version > stored.version() {
                held.note = Some(format!(
                    "the shipped root (version {version}) is not the next of the stored version {}: the chain is walked in the registry instead",
                    stored.version()
                ));
            }
        }
        return Ok(held);
    }
    let shipped = read_shipped(&shipped_at).map_err(|why| {
        GraphUnavailable::new(
            "root_invalid",
            format!("{why}; nothing is trusted until it is fixed or removed"),
        )
    })?;
    if let Some(shipped) = shipped {
        let pinned = TrustedRoot::pin(shipped)
            .map_err(|e| GraphUnavailable::new(e.kind(), e.to_string()))?;
        // The host may have run before at version 0: what it holds was
        // trusted under the configured keys, and is checked again under the
        // pinned root as after any new root. With no key to compare with
        // (none configured, or their files gone with the image that brought
        // the root), every key counts as removed.
        let holds_trusted = state.last_document.is_some() || !state.halt_lists.is_empty();
        if holds_trusted {
            let version_0 = configured(settings).ok().flatten();
            recheck(state, version_0.as_ref(), &pinned);
        }
        keep(state, &pinned);
        return Ok(Held {
            root: Some(pinned),
            origin: "shipped",
            note: None,
            unasked: state.root_origin_unasked.clone(),
        });
    }
    Ok(Held {
        root: configured(settings)?,
        origin: "configured",
        note: None,
        unasked: state.root_origin_unasked.clone(),
    })
}

/// Version 0 from `updates.keys` and `updates.halt_keys`; `None` without
/// any key.
fn configured(settings: &Settings) -> Result<Option<TrustedRoot>, GraphUnavailable> {
    let read = |paths: &[PathBuf], key: &str| {
        cairn_oci::signing::VerifyingKey::from_files(paths)
            .map_err(|e| GraphUnavailable::new(e.kind(), format!("{key}: {e}")))
    };
    let graph_keys = read(&settings.keys, "updates.keys")?;
    let halt_keys = read(&settings.halt_keys, "updates.halt_keys")?;
    Ok(TrustedRoot::from_config(&graph_keys, &halt_keys))
}

/// Store `root` as the newest verified, if it is newer than the one stored.
fn keep(state: &mut AgentState, root: &TrustedRoot) {
    let Some(signed) = root.signed() else {
        return;
    };
    let stored_version = state
        .trust_root
        .as_ref()
        .and_then(|text| {
            SignedRoot::from_envelope(Bytes::from(text.clone().into_bytes()), "state").ok()
        })
        .map_or(0, |s| s.version());
    if signed.version() > stored_version || state.trust_root.is_none() {
        state.trust_root = Some(String::from_utf8_lossy(&signed.envelope).into_owned());
    }
}

/// Walk from the held root in `location` (where the document was found),
/// store what was verified, and re-check what was trusted under the old
/// root. Returns the root to verify with, or why there is none.
pub(super) async fn walk(
    held: &mut Held,
    location: &Location,
    readers: &cairn_oci::Readers,
    state: &mut AgentState,
    now: Timestamp,
) -> Result<(), GraphUnavailable> {
    let Some(before) = held.root.clone() else {
        return Ok(());
    };
    let walked = cairn_oci::roots::walk_location_in(location, readers, &before, now).await;
    if !walked.adopted.is_empty() {
        keep(state, &walked.root);
        recheck(state, Some(&before), &walked.root);
        held.origin = "walked";
    }
    if let Some(note) = &walked.note {
        held.note = Some(note.clone());
    }
    held.root = Some(walked.root.clone());
    match &walked.refused {
        None => Ok(()),
        Some(error) => Err(refusal(&walked.root, location, error)),
    }
}

fn refusal(root: &TrustedRoot, location: &Location, error: &WalkError) -> GraphUnavailable {
    GraphUnavailable::new(
        error.kind(),
        format!(
            "trust root version {} is held; the walk in {location} stopped: {error}",
            root.version()
        ),
    )
}

/// After a new root is taken: halt lists held are kept only if the new
/// root's graph or halt role still signs them; the last document's
/// sequence is forgotten when the new root removed a graph key (it was
/// vouched for by keys no longer all trusted).
/// `before` is `None` when what was trusted before is not known: every key
/// counts as removed.
fn recheck(state: &mut AgentState, before: Option<&TrustedRoot>, after: &TrustedRoot) {
    // A role is weakened when it lost a key or now needs more signatures
    // (a common answer to a leak): what it vouched for may not hold now.
    let removed = |role: Role| {
        let Some(before) = before else {
            return true;
        };
        let (old, new) = (before.role(role), after.role(role));
        new.threshold() > old.threshold() || old.key_ids().any(|id| !new.contains(id))
    };
    // Whether every key that could have signed a list held still counts.
    let removed_a_list_key = removed(Role::Graph) || removed(Role::Halt);
    // The replay floor came from a document a graph key signed. Adding keys
    // cannot make it untrustworthy; removing one might (a leaked key's
    // document with a high sequence would block every later one), so only
    // then is it forgotten. Until the next document, one the kept keys
    // signed earlier could be replayed, as far as its own expiry allows.
    if removed(Role::Graph) {
        state.last_document = None;
    }
    let graph = after.role(Role::Graph);
    let halt = after.role(Role::Halt);
    let streams: Vec<String> = state.halt_lists.keys().cloned().collect();
    for stream in streams {
        let Some(kept) = state.halt_list_signatures.get(&stream) else {
            // Held since before the agent kept signatures: who signed it is
            // not known. While every key that could have is still trusted,
            // it stays (dropping it would lift its halts and the add-only
            // floor) and the next check reads the list again (the HEAD-only
            // shortcut is forgotten). Once a key is removed, it may have
            // been that key's: dropped, as a list whose signatures fail.
            if removed_a_list_key {
                tracing::warn!(
                    stream = %stream,
                    version = after.version(),
                    "the halt list held has no kept signatures and trust root version {} removed a key: dropped",
                    after.version()
                );
                state.halt_lists.remove(&stream);
            }
            state.halt_list_digests.remove(&stream);
            continue;
        };
        let signatures = restore(kept);
        if graph.check(&signatures).is_ok() || halt.check(&signatures).is_ok() {
            continue;
        }
        tracing::warn!(
            stream = %stream,
            version = after.version(),
            "the halt list held is not signed by trust root version {}'s keys: dropped",
            after.version()
        );
        state.halt_lists.remove(&stream);
        state.halt_list_digests.remove(&stream);
        state.halt_list_signatures.remove(&stream);
    }
}

/// The signatures a halt list was accepted with, as kept in the state.
pub(super) fn kept(signatures: &[Signed]) -> Vec<KeptSignature> {
    signatures
        .iter()
        .filter(|s| s.message.len() <= MAX_KEPT_MESSAGE_BYTES)
        .take(MAX_KEPT_SIGNATURES)
        .map(|s| KeptSignature {
            message: hex::encode(&s.message),
            signature: s.signature.clone(),
        })
        .collect()
}

fn restore(kept: &[KeptSignature]) -> Vec<Signed> {
    kept.iter()
        .filter_map(|k| {
            Some(Signed {
                message: Bytes::from(hex::decode(&k.message).ok()?),
                signature: k.signature.clone(),
            })
        })
        .collect()
}

/// The repository could not be reached to ask for the next root, and the
/// mirror's chain was trusted as it is.
#[derive(Debug)]
pub(super) struct Unasked {
    /// What `trustRoot.note` says.
    pub note: String,
    /// The error's kind: the label of the counter of such checks.
    pub kind: &'static str,
}

/// When the document was read at a mirror: whether the repository itself
/// (`origin`) has the root after the one the walk at the mirror ended on.
/// Asked before the document is verified, so a mirror that lacks
/// `cairn-root-<N+1>` cannot make a key that root removed count. `Err`: the
/// origin has it and the mirror does not, or the origin answered with an
/// error, or (`updates.mirror_root_check = "required"`) it could not be
/// reached; refused. `Ok(Some(_))`: the origin could not be reached, the
/// mirror's answer stands and the note says so. `Ok(None)`: the mirror is
/// not behind.
pub(super) async fn check_origin(
    held: &TrustedRoot,
    mirror: &Location,
    origin: &Location,
    client: &cairn_oci::RegistryClient,
    check: MirrorRootCheck,
) -> Result<Option<Unasked>, GraphUnavailable> {
    let Location::Registry(reference) = origin else {
        return Ok(None);
    };
    let Some(next) = held.version().checked_add(1) else {
        return Ok(None);
    };
    let tag = root_tag(next);
    let repository = &reference.repository;
    let version = held.version();
    // The built-in client, even when the proxy reads the rest: skopeo
    // applies registries.conf mirrors itself, so asked for the repository
    // it could answer from the very mirror this check is about.
    let store = cairn_oci::Store::registry(client.clone(), repository.clone());
    match store.resolve(&tag).await {
        Ok(None) => Ok(None),
        Ok(Some(_)) => Err(GraphUnavailable::new(
            "root_missing_at_mirror",
            format!(
                "the mirror {mirror} carries the document but not {tag}, which the repository {repository} has: the document is not verified, and trust root version {version} is held until the mirror carries the root chain (copy the cairn-root-* tags)",
            ),
        )),
        // Serving while the repository cannot is what a mirror is for.
        Err(e) if e.is_unreachable() && check == MirrorRootCheck::BestEffort => Ok(Some(Unasked {
            note: format!(
                "the repository {repository} could not be asked for {tag}, it could not be reached ({e}): the mirror {mirror}'s root chain is trusted as it is (updates.mirror_root_check = \"best-effort\")",
            ),
            kind: e.kind(),
        })),
        Err(e) if e.is_unreachable() => Err(GraphUnavailable::new(
            "root_origin_unreachable",
            format!(
                "the repository {repository} could not be reached to ask for {tag} ({e}), and updates.mirror_root_check = \"required\": the document read at the mirror {mirror} is not verified, and trust root version {version} is held",
            ),
        )),
        // An answer that is an error (a failing or refusing registry, a
        // reply that does not parse) could hide the next root: no check
        // passes on it.
        Err(e) => Err(GraphUnavailable::new(
            "root_origin_unanswered",
            format!(
                "the repository {repository} answered the request for {tag} with an error ({e}): the document read at the mirror {mirror} is not verified, and trust root version {version} is held",
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_oci::signing::SigningKey;
    use cairn_oci::trust::build_root;

    fn root(version: u64, root_key: &SigningKey, graph: &[&SigningKey]) -> TrustedRoot {
        let graph: Vec<_> = graph.iter().map(|k| k.verifying_key()).collect();
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let content = build_root(
            version,
            expires,
            [(&[root_key.verifying_key()], 1), (&graph, 1), (&graph, 1)],
        )
        .expect("builds");
        TrustedRoot::pin(SignedRoot::sign(&content, std::slice::from_ref(root_key)).expect("signs"))
            .expect("pins")
    }

    #[test]
    fn a_raised_threshold_counts_as_a_removal() {
        let [r, g1, g2] = [(); 3].map(|()| SigningKey::generate());
        let graph = [g1.verifying_key(), g2.verifying_key()];
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let with = |version, threshold| {
            let content = build_root(
                version,
                expires,
                [
                    (&[r.verifying_key()], 1),
                    (&graph, threshold),
                    (&graph, threshold),
                ],
            )
            .expect("builds");
            TrustedRoot::pin(SignedRoot::sign(&content, std::slice::from_ref(&r)).expect("signs"))
                .expect("pins")
        };
        let mut state = AgentState {
            last_document: Some((7, "sha256:aa".into())),
            ..holding(&g1)
        };
        recheck(&mut state, Some(&with(1, 1)), &with(2, 2));
        assert_eq!(state.last_document, None, "one key no longer vouches");
        assert!(!state.halt_lists.contains_key("stable"));
        assert!(
            !state.halt_lists.contains_key("other"),
            "g1 alone is below the new threshold"
        );
    }

    fn list() -> cairn_graph::halts::HaltList {
        cairn_graph::halts::HaltList::successor(
            None,
            "stable",
            None,
            jiff::Timestamp::now(),
            jiff::SignedDuration::from_hours(1),
        )
        .expect("a list")
    }

    #[test]
    fn a_root_that_only_adds_keys_keeps_the_replay_floor_and_one_that_removes_forgets_it() {
        let [r, g1, g2] = [(); 3].map(|()| SigningKey::generate());
        let (one, two, three) = (
            root(1, &r, &[&g1]),
            root(2, &r, &[&g1, &g2]),
            root(3, &r, &[&g2]),
        );
        let mut state = AgentState {
            last_document: Some((7, "sha256:aa".into())),
            ..AgentState::default()
        };
        recheck(&mut state, Some(&one), &two);
        assert_eq!(state.last_document, Some((7, "sha256:aa".into())));
        recheck(&mut state, Some(&two), &three);
        assert_eq!(state.last_document, None);
    }

    /// A kept signature by `key`.
    fn signed_by(key: &SigningKey) -> Vec<KeptSignature> {
        let message = Bytes::from_static(b"list");
        kept(&[Signed {
            message: message.clone(),
            signature: key.sign(&message),
        }])
    }

    /// A state holding `stable` without kept signatures (read under the
    /// HEAD-only shortcut) and `other`, signed by `other_key`.
    fn holding(other_key: &SigningKey) -> AgentState {
        let mut state = AgentState::default();
        state.halt_lists.insert("stable".into(), list());
        state
            .halt_list_digests
            .insert("stable".into(), "sha256:bb keys".into());
        state.halt_lists.insert("other".into(), list());
        state
            .halt_list_signatures
            .insert("other".into(), signed_by(other_key));
        state
    }

    #[test]
    fn a_list_held_without_kept_signatures_stays_and_is_read_again() {
        let [r, g1, g2, stranger] = [(); 4].map(|()| SigningKey::generate());
        // A list whose kept signature the new root does not vouch for.
        let mut state = holding(&stranger);
        // Root 2 only adds a key.
        recheck(
            &mut state,
            Some(&root(1, &r, &[&g1])),
            &root(2, &r, &[&g1, &g2]),
        );
        assert!(state.halt_lists.contains_key("stable"), "its halts stay");
        assert!(
            !state.halt_list_digests.contains_key("stable"),
            "read again"
        );
        assert!(
            !state.halt_lists.contains_key("other"),
            "no longer vouched for"
        );
    }

    #[test]
    fn a_list_held_without_kept_signatures_is_dropped_when_the_new_root_removes_a_key() {
        let [r, g1, g2] = [(); 3].map(|()| SigningKey::generate());
        let mut state = holding(&g2);
        recheck(&mut state, Some(&root(1, &r, &[&g1])), &root(2, &r, &[&g2]));
        assert!(
            !state.halt_lists.contains_key("stable"),
            "g1, which may have signed it, was removed"
        );
        assert!(!state.halt_list_digests.contains_key("stable"));
        assert!(
            state.halt_lists.contains_key("other"),
            "its kept signature is g2's, which root 2 vouches for"
        );
    }

    /// Settings trusting `graph` as `updates.keys` (written under `dir`).
    fn configured_with(dir: &Path, graph: &SigningKey) -> Settings {
        let key = dir.join("graph.pub");
        std::fs::write(&key, graph.verifying_key().to_pem().expect("PEM")).expect("write key");
        let text = format!("[updates]\nkeys = [\"{}\"]\n", key.display());
        crate::config::validate_fragment(&text, "test.toml").expect("settings")
    }

    fn ship(host_root: &Path, root: &TrustedRoot) {
        let path = host_root.join("usr/lib/cairn/root.json");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let signed = root.signed().expect("a signed root");
        std::fs::write(path, &signed.envelope).expect("ship the root");
    }

    #[test]
    fn a_shipped_root_first_pinned_re_checks_what_version_0_trusted() {
        let [r, g1, g2] = [(); 3].map(|()| SigningKey::generate());
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = configured_with(dir.path(), &g1);
        // The shipped root keeps g1: nothing the configured key vouched for
        // is lost.
        let keeps = tempfile::tempdir().expect("temp dir");
        ship(keeps.path(), &root(1, &r, &[&g1, &g2]));
        let mut state = AgentState {
            last_document: Some((7, "sha256:aa".into())),
            ..holding(&g1)
        };
        let held = start(&settings, keeps.path(), &mut state).expect("starts");
        assert_eq!(
            (held.origin, held.root.map(|r| r.version())),
            ("shipped", Some(1))
        );
        assert!(state.trust_root.is_some(), "the pinned root is stored");
        assert_eq!(state.last_document, Some((7, "sha256:aa".into())));
        assert!(state.halt_lists.contains_key("stable"));
        assert!(state.halt_lists.contains_key("other"));
        // The shipped root replaces g1 with g2: the replay floor, the list
        // without kept signatures and the list g1 signed all go.
        let replaces = tempfile::tempdir().expect("temp dir");
        ship(replaces.path(), &root(1, &r, &[&g2]));
        let mut state = AgentState {
            last_document: Some((7, "sha256:aa".into())),
            ..holding(&g1)
        };
        let held = start(&settings, replaces.path(), &mut state).expect("starts");
        assert_eq!(held.origin, "shipped");
        assert_eq!(state.last_document, None);
        assert!(state.halt_lists.is_empty(), "{:?}", state.halt_lists);
        assert!(state.halt_list_signatures.is_empty());
        // The image that brought the root dropped the key files: nothing to
        // compare with, so every key counts as removed, and the host still
        // starts from the shipped root.
        let gone = configured_with(dir.path(), &g1);
        std::fs::remove_file(dir.path().join("graph.pub")).expect("remove key");
        let mut dropped = AgentState {
            last_document: Some((7, "sha256:aa".into())),
            ..holding(&g1)
        };
        let held = start(&gone, keeps.path(), &mut dropped).expect("starts without the keys");
        assert_eq!(held.origin, "shipped");
        assert_eq!(dropped.last_document, None);
        assert!(
            !dropped.halt_lists.contains_key("stable"),
            "no kept signatures"
        );
        assert!(
            dropped.halt_lists.contains_key("other"),
            "its kept signature is g1's, which the shipped root vouches for"
        );
        // Once stored, the next start is from the stored root and checks
        // nothing again.
        state.halt_lists.insert("stable".into(), list());
        let held = start(&settings, replaces.path(), &mut state).expect("starts");
        assert_eq!(held.origin, "stored");
        assert!(state.halt_lists.contains_key("stable"));
    }
}
