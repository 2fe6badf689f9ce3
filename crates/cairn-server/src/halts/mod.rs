//! Halt lists in `cairn serve` (docs/server.md#halt-lists): reading each
//! stream's list at every refresh, keeping the newest through the store,
//! and what `/v1/graph` withholds because of it; the rollout guard
//! ([`guard`]) and the alert trigger publish new halts.
//!
//! For a stream whose trusted document names a halt list, edges are served
//! only while this server holds a verified, unexpired list: edges into its
//! halted releases are dropped, and without such a list none at all. A list
//! that cannot be read or is refused leaves the one held in force until it
//! expires, and its error kind is the stream's source error.

pub mod config;
pub mod guard;

use crate::store::StoreError;
use crate::store::halts::{HaltBackend, HaltStore, HeldRecord};
use cairn_graph::document::HaltSettings;
use cairn_graph::halts::{HaltList, SignedAs};
use cairn_oci::halts::{FetchedHaltList, HaltStoreError, HaltTrust};
use cairn_oci::signing::VerifyingKey;
use cairn_oci::trust::{RoleKeys, TrustedRoot};
use cairn_oci::{Location, RegistryClient, Store};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

/// What `/v1/graph` leaves out of a stream's answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Withheld {
    /// Halts are off for the stream.
    #[default]
    Nothing,
    /// Edges into releases with these digests (or checksums).
    Halted(Arc<BTreeSet<String>>),
    /// Every edge: halts are on and no verified, unexpired list is held.
    Everything,
}

/// A list accepted, with its parsed form.
#[derive(Debug, Clone)]
pub struct HeldList {
    /// The list.
    pub list: HaltList,
    /// As served on `/v2/halts/<stream>` and kept in the store.
    pub record: HeldRecord,
}

/// One stream's halts, as this server knows them.
#[derive(Debug, Clone, Default)]
pub struct HaltView {
    /// The trusted document names a halt list.
    pub on: bool,
    /// The newest list accepted.
    pub held: Option<Arc<HeldList>>,
    /// Why the last read of the list failed, if it did: kind and message.
    pub failing: Option<(&'static str, String)>,
    /// Halt ids the document clears.
    pub cleared: Vec<String>,
    /// Digests of the releases halted in effect.
    pub halted: Arc<BTreeSet<String>>,
    /// The document's halt settings, while halts are on.
    pub settings: Option<HaltSettings>,
    /// The root whose graph and halt roles (and thresholds) judge the list
    /// the guard builds on, and whose version it signs under: the stream's
    /// trust root, or before a root version 0 from the configured document
    /// and halt keys and the guard's own.
    pub guard_trust: Option<TrustedRoot>,
}

impl HaltView {
    fn recompute(&mut self) {
        let halted = self.held.as_ref().map(|held| {
            held.list
                .effective(&self.cleared)
                .flat_map(|entry| entry.digests.iter().cloned())
                .collect()
        });
        self.halted = Arc::new(halted.unwrap_or_default());
    }

    /// What `/v1/graph` withholds at `now`.
    pub fn withheld(&self, now: Timestamp) -> Withheld {
        if !self.on {
            return Withheld::Nothing;
        }
        let floor = self.settings.as_ref().map_or(0, |s| s.min_sequence);
        match &self.held {
            Some(held) if held.list.expires >= now && held.list.sequence >= floor => {
                Withheld::Halted(self.halted.clone())
            }
            _ => Withheld::Everything,
        }
    }
}

/// Why a stream's halt list was not taken; the kind is a fixed label.
#[derive(Debug, Clone, thiserror::Error)]
#[error("halt list: {message}")]
pub struct HaltsError {
    /// `halts_expired`, `halts_bad_signature`, `halts_unreachable`, ...
    pub kind: &'static str,
    /// What happened, naming the list.
    pub message: String,
}

impl From<HaltStoreError> for HaltsError {
    fn from(error: HaltStoreError) -> Self {
        HaltsError {
            kind: if error.is_unreachable() {
                "halts_unreachable"
            } else {
                error.kind()
            },
            message: error.to_string(),
        }
    }
}

/// The roles a stream's halt list is judged by, from its trust root.
#[derive(Debug, Clone, Copy)]
pub struct HaltRoles<'a> {
    /// A list a threshold of these keys signed may also drop entries.
    pub graph: Option<&'a RoleKeys>,
    /// A list only these keys signed may only add entries.
    pub halt: Option<&'a RoleKeys>,
    /// A new root was taken (or the server started): the list held is read
    /// and judged again even if its tag did not move, and dropped when the
    /// roles no longer vouch for it.
    pub recheck: bool,
}

/// Halt lists of every stream.
#[derive(Debug)]
pub struct Halts {
    /// Keys whose lists may only add halts.
    pub halt_keys: Vec<VerifyingKey>,
    /// Where the newest lists are kept; `None`: in memory only.
    pub store: Option<HaltBackend>,
    /// The guard, when configured.
    pub guard: Option<guard::Guard>,
    views: BTreeMap<String, RwLock<HaltView>>,
}

impl Halts {
    /// The streams.
    pub fn streams(&self) -> impl Iterator<Item = &String> {
        self.views.keys()
    }
}

impl Halts {
    /// Halts of these streams, kept in `store`.
    pub fn new(
        streams: impl IntoIterator<Item = String>,
        halt_keys: Vec<VerifyingKey>,
        store: Option<HaltBackend>,
        guard: Option<guard::Guard>,
    ) -> Halts {
        Halts {
            halt_keys,
            store,
            guard,
            views: streams
                .into_iter()
                .map(|s| (s, RwLock::default()))
                .collect(),
        }
    }

    /// A stream's view (a default one for an unknown stream).
    pub fn view(&self, stream: &str) -> HaltView {
        self.views
            .get(stream)
            .and_then(|view| view.read().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    fn update(&self, stream: &str, change: impl FnOnce(&mut HaltView)) {
        if let Some(mut view) = self.views.get(stream).and_then(|v| v.write().ok()) {
            change(&mut view);
            view.recompute();
        }
    }

    /// Take back the lists the store kept, before anything is served.
    pub async fn restore(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        for stream in self.views.keys() {
            if let Some(record) = store.newest(stream).await? {
                match HaltList::from_json(&record.body) {
                    Ok(list) => self.update(stream, |view| {
                        view.held = Some(Arc::new(HeldList { list, record }));
                    }),
                    Err(error) => {
                        tracing::error!(stream, %error, "the halt list kept in the store is unreadable; ignoring it")
                    }
                }
            }
        }
        Ok(())
    }

    /// Hold `list` (verified as `signed_as`, or published by this server
    /// with the halt key) for `stream`, and keep it in the store; a newer one
    /// the store holds wins. The list must pass [`HaltList::accept`] against
    /// the list held (sequence floors, add-only for `HaltOnly`), checked and
    /// installed under one lock. A store failure is logged: the list applies
    /// at once all the same.
    pub async fn hold(
        &self,
        stream: &str,
        list: HaltList,
        record: HeldRecord,
        signed_as: SignedAs,
        now: Timestamp,
    ) -> Result<(), HaltsError> {
        let view = self.view(stream);
        let floor = view.settings.as_ref().map_or(0, |s| s.min_sequence);
        let newest = view.held.as_ref().map(|held| &held.list);
        list.accept(stream, signed_as, newest, floor, now)
            .map_err(refused)?;
        let mut held = HeldList { list, record };
        let mut from_store = false;
        if let Some(store) = &self.store {
            match store.keep(stream, &held.record).await {
                Ok(kept) if kept.sequence > held.record.sequence => {
                    match HaltList::from_json(&kept.body) {
                        Ok(list) => {
                            held = HeldList { list, record: kept };
                            from_store = true;
                        }
                        Err(error) => {
                            tracing::error!(stream, %error, "the halt list kept in the store is unreadable")
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(stream, %error, "keeping the halt list in the store failed; a restart may accept an older list")
                }
            }
        }
        let Some(mut view) = self.views.get(stream).and_then(|v| v.write().ok()) else {
            return Ok(());
        };
        let current = view.held.as_ref().map(|held| &held.list);
        if from_store {
            // Accepted by a server sharing the store: only the newest wins.
            if current.is_some_and(|c| c.sequence > held.list.sequence) {
                return Ok(());
            }
        } else {
            let floor = view.settings.as_ref().map_or(0, |s| s.min_sequence);
            held.list
                .accept(stream, signed_as, current, floor, now)
                .map_err(refused)?;
        }
        view.held = Some(Arc::new(held));
        view.recompute();
        Ok(())
    }

    /// Apply a document's halt settings (`None`: halts off), its cleared
    /// ids and keys, to what `/v1/graph` withholds. The refresh calls this
    /// before it installs a document that turns halts on, so that no answer
    /// ever comes from such a document without its halts applied.
    pub fn configure(
        &self,
        stream: &str,
        settings: Option<&HaltSettings>,
        cleared: Vec<String>,
        guard_trust: Option<&TrustedRoot>,
    ) {
        self.update(stream, |view| match settings {
            None => {
                view.on = false;
                view.failing = None;
                view.settings = None;
            }
            Some(settings) => {
                view.on = true;
                view.cleared = cleared;
                view.settings = Some(settings.clone());
                view.guard_trust = guard_trust.cloned();
            }
        });
    }

    /// Read `stream`'s list at `settings.location` (or note that halts are
    /// off), verify it with the roles of the stream's trust root against the
    /// list held, and hold it. `guard_trust` judges the list the guard
    /// builds on (see [`HaltView::guard_trust`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn refresh(
        &self,
        stream: &str,
        settings: Option<&HaltSettings>,
        cleared: Vec<String>,
        guard_trust: Option<&TrustedRoot>,
        roles: &HaltRoles<'_>,
        client: &RegistryClient,
        now: Timestamp,
    ) -> Result<(), HaltsError> {
        self.configure(stream, settings, cleared, guard_trust);
        let Some(settings) = settings else {
            return Ok(());
        };
        let outcome = self.read(stream, settings, roles, client, now).await;
        let failing = outcome
            .as_ref()
            .err()
            .map(|error| (error.kind, error.message.clone()));
        self.update(stream, |view| view.failing = failing);
        outcome
    }

    async fn read(
        &self,
        stream: &str,
        settings: &HaltSettings,
        roles: &HaltRoles<'_>,
        client: &RegistryClient,
        now: Timestamp,
    ) -> Result<(), HaltsError> {
        let held = self.view(stream).held;
        let location = Location::parse(&settings.location).map_err(|e| HaltsError {
            kind: "halts_invalid",
            message: format!("halts.location {:?}: {e}", settings.location),
        })?;
        let store = match &location {
            Location::Registry(reference) => Some((
                Store::registry(client.clone(), reference.repository.clone()),
                reference.reference().to_string(),
            )),
            Location::Layout { path, tag } => Some((
                Store::Layout(
                    cairn_oci::layout::Layout::open(path)
                        .map_err(|e| HaltsError::from(HaltStoreError::from(e)))?,
                ),
                tag.clone()
                    .unwrap_or_else(|| cairn_oci::halts::default_tag(stream)),
            )),
            _ => None,
        };
        if roles.recheck
            && let Some(held) = &held
        {
            self.recheck_held(
                stream,
                held,
                store.as_ref().map(|(s, _)| s),
                &location,
                roles,
                client,
            )
            .await?;
        }
        let fetched = match &store {
            Some((store, reference)) => {
                let head = store
                    .resolve(reference)
                    .await
                    .map_err(|e| HaltsError::from(HaltStoreError::from(e)))?
                    .ok_or_else(|| HaltsError {
                        kind: "halts_not_found",
                        message: format!("{location}: no halt list"),
                    })?;
                // Unchanged: the list held only needs to be still valid.
                if let Some(held) = &held
                    && !roles.recheck
                    && held.record.manifest_digest.as_deref() == Some(head.digest.as_str())
                {
                    return valid(&held.list, settings.min_sequence, &location, now);
                }
                cairn_oci::halts::fetch(store, &head.digest).await?
            }
            None => cairn_oci::halts::fetch_location(&location, client).await?,
        };
        let trust = HaltTrust {
            graph: roles.graph,
            halt: roles.halt,
            stream,
            newest_held: held.as_ref().map(|h| &h.list),
            min_sequence: settings.min_sequence,
            now,
        };
        let signed_as = fetched.verify(&trust)?;
        let record = record_of(&fetched, store.as_ref().map(|(store, _)| store), &location);
        self.hold(stream, fetched.list, record, signed_as, now)
            .await
    }
}

impl Halts {
    /// Judge the list held again under the roles of a new trust root (its
    /// signatures read again by digest, or from the file or URL while it
    /// still holds the same list), and drop it when they no longer vouch for
    /// it: edges are then withheld until a list they vouch for arrives. A
    /// list that cannot be read again is kept, and the check is tried again
    /// at the next refresh.
    async fn recheck_held(
        &self,
        stream: &str,
        held: &HeldList,
        store: Option<&Store>,
        location: &Location,
        roles: &HaltRoles<'_>,
        client: &RegistryClient,
    ) -> Result<(), HaltsError> {
        let again = match (store, &held.record.manifest_digest) {
            (Some(store), Some(digest)) => cairn_oci::halts::fetch(store, digest).await?,
            _ => {
                let fetched = cairn_oci::halts::fetch_location(location, client).await?;
                if fetched.bytes.as_ref() != held.record.body.as_slice() {
                    // Replaced since: the new list is judged as any other.
                    return Ok(());
                }
                fetched
            }
        };
        let trust = HaltTrust {
            graph: roles.graph,
            halt: roles.halt,
            stream,
            newest_held: None,
            min_sequence: 0,
            now: held.list.expires,
        };
        let Err(error) = again.verify_expiry_aside(&trust) else {
            return Ok(());
        };
        let error = HaltsError::from(error);
        if !matches!(error.kind, "halts_bad_signature" | "halts_unsigned") {
            return Err(error);
        }
        self.update(stream, |view| view.held = None);
        let version = roles
            .graph
            .or(roles.halt)
            .map_or(0, |role| role.root_version);
        Err(HaltsError {
            kind: error.kind,
            message: format!(
                "{}; the list held (sequence {}) is dropped: trust root version {version} does not vouch for it",
                error.message, held.list.sequence
            ),
        })
    }
}

fn refused(error: cairn_graph::halts::HaltListError) -> HaltsError {
    HaltsError {
        kind: error.kind(),
        message: error.to_string(),
    }
}

/// The served form of a fetched list: its bytes and where its signature is.
pub fn record_of(
    fetched: &FetchedHaltList,
    store: Option<&Store>,
    location: &Location,
) -> HeldRecord {
    let signature = match (store, &fetched.manifest_digest) {
        (Some(store), Some(manifest)) => Some(format!(
            "{}:{}",
            store.describe(),
            cairn_oci::signing::signature_tag(manifest)
        )),
        _ => (!fetched.signatures.is_empty()).then(|| format!("{location}.sig")),
    };
    HeldRecord {
        sequence: fetched.list.sequence,
        body: fetched.bytes.to_vec(),
        manifest_digest: fetched.manifest_digest.clone(),
        signature,
    }
}

fn valid(
    list: &HaltList,
    min_sequence: u64,
    location: &Location,
    now: Timestamp,
) -> Result<(), HaltsError> {
    if list.sequence < min_sequence {
        return Err(HaltsError {
            kind: "halts_replayed",
            message: format!(
                "{location}: the halt list has sequence {}, below the document's halts.min_sequence {min_sequence}; no update is offered until a newer one is published",
                list.sequence
            ),
        });
    }
    if now > list.expires {
        return Err(HaltsError {
            kind: "halts_expired",
            message: format!(
                "{location}: the halt list expired at {}; no update is offered until a fresh one is published",
                list.expires
            ),
        });
    }
    Ok(())
}
