//! Halt lists stored as OCI artifacts: publishing, reading and verifying them
//! (docs/rollout-guard.md).
//!
//! A halt list has the shape of a document (an OCI 1.1 artifact, the empty
//! config, one JSON layer, a cosign signature) with its own media type, so
//! registries, `skopeo sync` and mirrors carry it the same way. What differs is
//! trust: a list verifies under the release team's graph keys, which may do
//! anything, or under halt keys, which may only add entries.

use crate::document::{
    ArtifactKind, ArtifactShape, DocumentStoreError, EMPTY_JSON, PublishOptions, RawArtifact,
    Signed, artifact_manifest_json, fetch_raw, fetch_raw_location, push_signed_and_tag,
};
use crate::error::OciError;
use crate::signing::{SigningKey, VerifyingKey};
use crate::store::Store;
use crate::trust::{Role, RoleKeys, TrustedRoot};
use bytes::Bytes;
use cairn_graph::halts::{HaltEntry, HaltList, HaltListError, SignedAs};
use jiff::{SignedDuration, Timestamp};

/// `artifactType` of a halt list, and media type of its layer.
pub const HALTS_MEDIA_TYPE: &str = "application/vnd.cairn.halts.v1+json";
/// Largest halt list read: 1,000 entries fit in far less.
pub const MAX_HALT_LIST_BYTES: usize = 1024 * 1024;
/// How long a list stays valid unless told otherwise: the guard refreshes it
/// every 6 hours, so a missed refresh or two is not yet a freeze.
pub const DEFAULT_LIFETIME: SignedDuration = SignedDuration::from_hours(48);
/// How many times a publish that lost a race is retried on top of the winner.
const CONFLICT_RETRIES: u32 = 5;

const HALTS_ARTIFACT: ArtifactKind = ArtifactKind {
    media_type: HALTS_MEDIA_TYPE,
    max_bytes: MAX_HALT_LIST_BYTES,
    tag_prefix: "cairn-halts-",
    tag_example: ":cairn-halts-stable",
};

/// The tag a stream's halt list is published under unless configured otherwise.
pub fn default_tag(stream: &str) -> String {
    format!("cairn-halts-{stream}")
}

/// A halt list as fetched, before any trust decision.
#[derive(Debug, Clone)]
pub struct FetchedHaltList {
    /// Where it came from.
    pub source_name: String,
    /// The exact JSON bytes.
    pub bytes: Bytes,
    /// The parsed, validated list.
    pub list: HaltList,
    /// The manifest digest, in a registry or layout.
    pub manifest_digest: Option<String>,
    /// Signatures found, with the message each signs.
    pub signatures: Vec<Signed>,
    /// Signatures found but unusable, and why.
    pub unusable_signatures: Vec<String>,
}

/// What a reader trusts a halt list with.
#[derive(Debug, Clone, Copy)]
pub struct HaltTrust<'a> {
    /// The graph role: a list a threshold of its keys signs may also drop
    /// entries.
    pub graph: Option<&'a RoleKeys>,
    /// The halt role: a list only its keys sign may only add entries.
    pub halt: Option<&'a RoleKeys>,
    /// The stream followed.
    pub stream: &'a str,
    /// The newest list this reader accepted before, for the sequence and
    /// add-only checks.
    pub newest_held: Option<&'a HaltList>,
    /// The trusted document's `halts.min_sequence`.
    pub min_sequence: u64,
    /// Now, for `expires`.
    pub now: Timestamp,
}

/// Why a halt list was refused or could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HaltStoreError {
    /// Reading or writing the store failed, or its signatures are missing or wrong.
    #[error(transparent)]
    Store(#[from] DocumentStoreError),
    /// The list's content is refused.
    #[error("{source_name}: {error}")]
    List {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        error: HaltListError,
    },
    /// The writer's keys meet neither the graph nor the halt role of the
    /// root it writes under: hosts would refuse the list it signs.
    #[error(
        "the signing keys [{}] meet neither the graph nor the halt role of trust root version \
         {root_version} ({}); hosts would refuse the list, so it is not published: sign with \
         keys the root names",
        signers.join(", "),
        shortfalls.join("; ")
    )]
    SignersNotInRoot {
        /// The root version.
        root_version: u64,
        /// The signing keys' short ids.
        signers: Vec<String>,
        /// How far short of each role they fall.
        shortfalls: Vec<String>,
    },
    /// No list under the tag, though the writer knows one was published:
    /// writing a first list now would lift every halt.
    #[error(
        "no halt list under the tag {tag}, though sequence {min_sequence} was published; \
         restore it (push the list back under the tag) rather than start a new one"
    )]
    Missing {
        /// The tag read.
        tag: String,
        /// The lowest sequence the writer knows was published.
        min_sequence: u64,
    },
}

impl From<OciError> for HaltStoreError {
    fn from(error: OciError) -> Self {
        HaltStoreError::Store(DocumentStoreError::Store(error))
    }
}

impl HaltStoreError {
    /// A short fixed label for status and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HaltStoreError::Store(DocumentStoreError::NotADocument(_)) => "halts_not_a_list",
            HaltStoreError::Store(DocumentStoreError::Unsigned { .. }) => "halts_unsigned",
            HaltStoreError::Store(DocumentStoreError::BadSignature { .. }) => "halts_bad_signature",
            HaltStoreError::Store(e) => e.kind(),
            HaltStoreError::List { error, .. } => error.kind(),
            HaltStoreError::Missing { .. } => "halts_missing",
            HaltStoreError::SignersNotInRoot { .. } => "halts_signers_not_in_root",
        }
    }

    /// Whether the list could not be reached at all (as opposed to refused).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HaltStoreError::Store(DocumentStoreError::Store(_)))
    }
}

type Result<T> = std::result::Result<T, HaltStoreError>;

impl FetchedHaltList {
    fn from_raw(raw: RawArtifact) -> Result<FetchedHaltList> {
        let list = HaltList::from_json(&raw.bytes).map_err(|error| HaltStoreError::List {
            source_name: raw.source_name.clone(),
            error,
        })?;
        Ok(FetchedHaltList {
            source_name: raw.source_name,
            bytes: raw.bytes,
            list,
            manifest_digest: raw.manifest_digest,
            signatures: raw.signatures,
            unusable_signatures: raw.unusable_signatures,
        })
    }

    /// The strongest role whose threshold of distinct keys signed, if any:
    /// the graph role, else the halt role.
    pub fn signed_as(&self, graph: Option<&RoleKeys>, halt: Option<&RoleKeys>) -> Option<SignedAs> {
        let met = |role: Option<&RoleKeys>| role.is_some_and(|r| r.check(&self.signatures).is_ok());
        if met(graph) {
            Some(SignedAs::Graph)
        } else if met(halt) {
            Some(SignedAs::HaltOnly)
        } else {
            None
        }
    }

    /// Why neither role's threshold was met.
    fn refusal(&self, roles: &[Option<&RoleKeys>]) -> DocumentStoreError {
        if self.signatures.is_empty() {
            return DocumentStoreError::Unsigned {
                source_name: self.source_name.clone(),
                unusable: self.unusable_signatures.clone(),
            };
        }
        DocumentStoreError::BadSignature {
            source_name: self.source_name.clone(),
            shortfalls: roles
                .iter()
                .flatten()
                .filter_map(|role| role.check(&self.signatures).err())
                .collect(),
            signed_under: self.list.root_version,
        }
    }

    /// Check the signature and the list against what the reader holds.
    /// A list must be signed by the graph or the halt role; a reader
    /// configured with no key at all (it trusts unsigned documents) takes an
    /// unsigned list, but only under the add-only rule.
    pub fn verify(&self, trust: &HaltTrust<'_>) -> Result<SignedAs> {
        let source_name = || self.source_name.clone();
        let signed_as = if trust.graph.is_none() && trust.halt.is_none() {
            SignedAs::HaltOnly
        } else if let Some(role) = self.signed_as(trust.graph, trust.halt) {
            role
        } else {
            return Err(self.refusal(&[trust.graph, trust.halt]).into());
        };
        self.list
            .accept(
                trust.stream,
                signed_as,
                trust.newest_held,
                trust.min_sequence,
                trust.now,
            )
            .map_err(|error| HaltStoreError::List {
                source_name: source_name(),
                error,
            })?;
        Ok(signed_as)
    }
}

impl FetchedHaltList {
    /// [`FetchedHaltList::verify`] with expiry aside, for writers: an
    /// expired list is exactly what a refresh or a publish renews, and must
    /// not block it. Signature, stream and sequence floors are still checked.
    pub fn verify_expiry_aside(&self, trust: &HaltTrust<'_>) -> Result<SignedAs> {
        let now = trust.now.min(self.list.expires);
        self.verify(&HaltTrust { now, ..*trust })
    }
}

/// Read the halt list a tag (or digest) of a store points at.
pub async fn fetch(store: &Store, reference: &str) -> Result<FetchedHaltList> {
    let raw = fetch_raw(store, reference, &HALTS_ARTIFACT).await?;
    FetchedHaltList::from_raw(raw)
}

/// Read a halt list from any location: a registry reference or `oci:`
/// layout (with its tag), a file (with `<file>.sig`) or a URL (with `<url>.sig`).
pub async fn fetch_location(
    location: &crate::reference::Location,
    client: &crate::client::RegistryClient,
) -> Result<FetchedHaltList> {
    fetch_location_in(location, &crate::readers::Readers::builtin(client.clone())).await
}

/// [`fetch_location`], reading a registry location with `readers` (through
/// the image proxy when it has one).
pub async fn fetch_location_in(
    location: &crate::reference::Location,
    readers: &crate::readers::Readers,
) -> Result<FetchedHaltList> {
    let raw = fetch_raw_location(location, readers, &HALTS_ARTIFACT).await?;
    FetchedHaltList::from_raw(raw)
}

/// What [`publish`], [`add`] and [`refresh`] did.
#[derive(Debug, Clone)]
pub struct PublishedHaltList {
    /// The manifest digest now under the tag.
    pub manifest_digest: String,
    /// The list as published.
    pub list: HaltList,
    /// Whether the list gained an entry (false: the release was already halted).
    pub added: bool,
    /// The list built on, when no trusted key signed it and
    /// [`UpdateOptions::accept_unverified_current`] let it through.
    pub built_on_unverified: Option<UnverifiedCurrent>,
}

/// A list under the tag that no trusted key signs, built on anyway because
/// the writer was told to ([`UpdateOptions::accept_unverified_current`]).
#[derive(Debug, Clone)]
pub struct UnverifiedCurrent {
    /// Where it came from.
    pub source_name: String,
    /// Its manifest digest.
    pub manifest_digest: String,
    /// Its sequence.
    pub sequence: u64,
    /// Its signatures, so the caller can name the keys it knows among them.
    pub signatures: Vec<Signed>,
    /// Why the trusted roles refused it.
    pub refusal: String,
}

/// Publish `list` under `options.tag`, moving the tag only if it still holds
/// `before` (see [`crate::document::publish`] for how conflicts are caught).
pub async fn publish(
    store: &Store,
    list: &HaltList,
    before: Option<String>,
    options: &PublishOptions<'_>,
) -> Result<String> {
    list.validate().map_err(|error| HaltStoreError::List {
        source_name: "halt list to publish".into(),
        error,
    })?;
    let body = Bytes::from(
        serde_json::to_vec_pretty(list)
            .map_err(|e| OciError::invalid("halt list to publish", e.to_string()))?,
    );
    let size = body.len();
    let config_digest = store.put_blob(Bytes::from_static(EMPTY_JSON)).await?;
    let layer_digest = store.put_blob(body).await?;
    let manifest = artifact_manifest_json(
        &ArtifactShape {
            media_type: HALTS_MEDIA_TYPE,
            title: format!("{}.json", default_tag(&list.stream)),
            created: Timestamp::now(),
            annotations: vec![
                ("dev.cairn.halts.stream", list.stream.clone()),
                ("dev.cairn.halts.sequence", list.sequence.to_string()),
            ],
        },
        &config_digest,
        &layer_digest,
        size,
    )?;
    Ok(push_signed_and_tag(store, manifest, before, options).await?)
}

/// How [`add`] and [`refresh`] read the list they build on and write the next.
#[derive(Debug, Clone)]
pub struct UpdateOptions<'a> {
    /// Where to publish.
    pub publish: PublishOptions<'a>,
    /// The root whose graph and halt roles (with their thresholds) must
    /// vouch for the current list. A writer with no root builds one with
    /// [`TrustedRoot::from_config`] (graph keys and its own, halt keys).
    /// `None`: the current list is taken unverified. Under a root of version
    /// 1 or more, the writer's keys must also meet its graph or halt role.
    pub trust: Option<&'a TrustedRoot>,
    /// The stream.
    pub stream: &'a str,
    /// How long the new list stays valid.
    pub lifetime: SignedDuration,
    /// Halt ids the document clears: a release halted only by a cleared
    /// entry is halted again by a new one.
    pub cleared: &'a [String],
    /// Build on the list under the tag even though no trusted key signs it
    /// (after a leaked key that signed it was removed from the root). The
    /// floor and the stream are still checked; the list built on is reported
    /// in [`PublishedHaltList::built_on_unverified`].
    pub accept_unverified_current: bool,
}

/// What a writer knows was published before, so that it never builds on a
/// list someone with push rights deleted or replaced with an older one: its
/// next list would be signed by the writer and drop the halts since.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor<'a> {
    /// The trusted document's `halts.min_sequence` (0: none known).
    pub min_sequence: u64,
    /// The newest list the writer holds: the current one must be at least as
    /// new and keep all its entries.
    pub held: Option<&'a HaltList>,
}

impl Floor<'_> {
    /// No floor: any list under the tag, or none, is built on. Only for a
    /// writer that knows of no list (the first one, or tests).
    pub const NONE: Floor<'static> = Floor {
        min_sequence: 0,
        held: None,
    };

    /// The lowest sequence the current list may have.
    fn sequence(&self) -> u64 {
        self.min_sequence
            .max(self.held.map_or(0, |held| held.sequence))
    }

    /// Refuse a list below the floor or lacking an entry of the held list,
    /// whoever signed it: a person must look at a list that went back.
    fn check(&self, source_name: &str, list: &HaltList) -> Result<()> {
        let refuse = |error| HaltStoreError::List {
            source_name: source_name.to_string(),
            error,
        };
        if list.sequence < self.min_sequence {
            return Err(refuse(HaltListError::Replayed {
                found: list.sequence,
                floor: self.min_sequence,
                why: "the document's halts.min_sequence",
            }));
        }
        let Some(held) = self.held else {
            return Ok(());
        };
        if list.sequence < held.sequence {
            return Err(refuse(HaltListError::Replayed {
                found: list.sequence,
                floor: held.sequence,
                why: "the newest list this writer holds",
            }));
        }
        if let Some(gone) = held
            .entries
            .iter()
            .find(|held| !list.entries.iter().any(|e| e.id == held.id))
        {
            return Err(refuse(HaltListError::DroppedEntry {
                id: gone.id.clone(),
                version: gone.version.clone(),
            }));
        }
        Ok(())
    }
}

/// A root's graph and halt roles, each only when it has a key: an empty
/// role vouches for nothing and is left out of refusals.
fn roles_of(root: &TrustedRoot) -> (Option<RoleKeys>, Option<RoleKeys>) {
    let role = |role| Some(root.role(role)).filter(|keys| !keys.is_empty());
    (role(Role::Graph), role(Role::Halt))
}

/// Refuse to sign under a root of version 1 or more with keys that meet
/// neither its graph nor its halt role: hosts would refuse the list.
fn check_signers(options: &UpdateOptions<'_>) -> Result<()> {
    let Some(root) = options.trust.filter(|root| root.version() > 0) else {
        return Ok(());
    };
    // Distinct keys, as hosts count them: one key given twice counts once.
    let ids: std::collections::BTreeSet<crate::signing::KeyId> = options
        .publish
        .keys
        .iter()
        .map(|key| key.verifying_key().key_id())
        .collect();
    let mut shortfalls = Vec::new();
    for role in [Role::Graph, Role::Halt] {
        let keys = root.role(role);
        let found = ids.iter().filter(|id| keys.contains(id)).count();
        if keys.threshold() > 0 && found >= keys.threshold() {
            return Ok(());
        }
        shortfalls.push(format!(
            "{found} of the {role} role's keys, {} must",
            keys.threshold().max(1)
        ));
    }
    Err(HaltStoreError::SignersNotInRoot {
        root_version: root.version(),
        signers: ids.iter().map(|id| id.short().to_string()).collect(),
        shortfalls,
    })
}

/// The list under the tag now, verified under `options.trust` and checked
/// against `floor` (expiry aside: an expired list is exactly what a refresh
/// renews). `None`: no list yet, which the floor must allow.
async fn current(store: &Store, options: &UpdateOptions<'_>, floor: &Floor<'_>) -> Result<Current> {
    let tag = options.publish.tag;
    let Some(head) = store.resolve(tag).await? else {
        if floor.min_sequence > 0 || floor.held.is_some() {
            return Err(HaltStoreError::Missing {
                tag: tag.to_string(),
                min_sequence: floor.sequence(),
            });
        }
        return Ok(Current::default());
    };
    let fetched = fetch(store, &head.digest).await?;
    let mut unverified = None;
    if let Some(root) = options.trust {
        let (graph, halt) = roles_of(root);
        if fetched.signed_as(graph.as_ref(), halt.as_ref()).is_none() {
            let refusal = fetched.refusal(&[graph.as_ref(), halt.as_ref()]);
            if !options.accept_unverified_current {
                return Err(refusal.into());
            }
            unverified = Some(UnverifiedCurrent {
                source_name: fetched.source_name.clone(),
                manifest_digest: head.digest.clone(),
                sequence: fetched.list.sequence,
                signatures: fetched.signatures.clone(),
                refusal: refusal.to_string(),
            });
        }
    }
    if fetched.list.stream != options.stream {
        return Err(HaltStoreError::List {
            source_name: fetched.source_name,
            error: HaltListError::WrongStream {
                wanted: options.stream.to_string(),
                found: fetched.list.stream,
            },
        });
    }
    floor.check(&fetched.source_name, &fetched.list)?;
    if let Some(unverified) = &unverified {
        tracing::warn!(
            list = %unverified.source_name,
            refusal = %unverified.refusal,
            "building on a halt list no trusted key signs, as asked"
        );
    }
    Ok(Current {
        head: Some(head.digest),
        list: Some(fetched.list),
        unverified,
    })
}

/// The list under the tag, as [`current`] read it.
#[derive(Debug, Default)]
struct Current {
    /// The manifest digest under the tag (`None`: no list yet).
    head: Option<String>,
    /// The list.
    list: Option<HaltList>,
    /// Set when it was taken although no trusted key signs it.
    unverified: Option<UnverifiedCurrent>,
}

/// [`add_above`] with no floor: builds on whatever is under the tag. For
/// tests and fixtures; writers that know of a list use [`add_above`].
pub async fn add(
    store: &Store,
    options: &UpdateOptions<'_>,
    version: &str,
    digests: Vec<String>,
    reason: &str,
    tripped_by: cairn_graph::halts::TrippedBy,
) -> Result<PublishedHaltList> {
    add_above(
        store,
        options,
        &Floor::NONE,
        version,
        digests,
        reason,
        tripped_by,
    )
    .await
}

/// Add a halt of `version` (with `digests`) to the stream's list and publish
/// it, unless an entry in effect already halts that version (and the list is
/// unexpired and vouched for: one taken unverified is always signed again). The list under
/// the tag must pass `floor` ([`HaltStoreError::Missing`] or `halts_replayed`
/// otherwise). A race with another writer is retried on top of what it
/// published.
pub async fn add_above(
    store: &Store,
    options: &UpdateOptions<'_>,
    floor: &Floor<'_>,
    version: &str,
    digests: Vec<String>,
    reason: &str,
    tripped_by: cairn_graph::halts::TrippedBy,
) -> Result<PublishedHaltList> {
    publish_next(store, options, floor, |previous, now| {
        let already =
            previous.is_some_and(|list| list.halting_version(options.cleared, version).is_some());
        if already && previous.is_some_and(|list| list.expires > now) {
            return Step::Unchanged;
        }
        Step::Publish((!already).then(|| HaltEntry {
            id: HaltList::new_id(previous, version, now),
            version: version.to_string(),
            digests: digests.clone(),
            reason: reason.to_string(),
            time: now,
            tripped_by: tripped_by.clone(),
        }))
    })
    .await
}

/// What [`publish_next`] does with the list under the tag.
enum Step {
    /// Leave it as it is.
    Unchanged,
    /// Publish its successor, with this entry added.
    Publish(Option<HaltEntry>),
}

/// Read the list under the tag (it must pass `floor`), decide with `step`,
/// and publish the successor; a race with another writer is retried on top
/// of what it published.
async fn publish_next(
    store: &Store,
    options: &UpdateOptions<'_>,
    floor: &Floor<'_>,
    step: impl Fn(Option<&HaltList>, Timestamp) -> Step,
) -> Result<PublishedHaltList> {
    check_signers(options)?;
    let mut attempt = 0;
    loop {
        let Current {
            head: before,
            list: previous,
            unverified,
        } = current(store, options, floor).await?;
        let now = Timestamp::now();
        let entry = match step(previous.as_ref(), now) {
            // A list no trusted key signs is never left as it is: hosts
            // refuse it, so its successor is signed even with nothing new.
            Step::Unchanged if unverified.is_some() => None,
            Step::Unchanged => match previous {
                Some(list) => {
                    return Ok(PublishedHaltList {
                        manifest_digest: before.unwrap_or_default(),
                        list,
                        added: false,
                        built_on_unverified: unverified,
                    });
                }
                // Nothing to leave as it is: a first list, then.
                None => None,
            },
            Step::Publish(entry) => entry,
        };
        let added = entry.is_some();
        let next = HaltList::successor(
            previous.as_ref(),
            options.stream,
            entry,
            now,
            options.lifetime,
        )
        .map_err(|error| HaltStoreError::List {
            source_name: "halt list to publish".into(),
            error,
        })?;
        // The list names the root its signers sign under, when one is given.
        let mut next = next;
        let root_version = options
            .trust
            .map_or(0, TrustedRoot::version)
            .max(options.publish.root_version);
        if root_version > 0 {
            next.root_version = root_version;
        }
        match publish(store, &next, before, &options.publish).await {
            Ok(manifest_digest) => {
                return Ok(PublishedHaltList {
                    manifest_digest,
                    list: next,
                    added,
                    built_on_unverified: unverified,
                });
            }
            Err(HaltStoreError::Store(DocumentStoreError::Conflict { .. }))
                if attempt < CONFLICT_RETRIES =>
            {
                attempt += 1;
                tracing::info!(
                    attempt,
                    "the halt list moved while publishing; retrying on top of it"
                );
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`refresh_above`] with no floor: an empty first list when there is none.
/// For a first list, tests and fixtures; writers that know of a list use
/// [`refresh_above`].
pub async fn refresh(store: &Store, options: &UpdateOptions<'_>) -> Result<PublishedHaltList> {
    refresh_above(store, options, &Floor::NONE).await
}

/// Publish the stream's list again with a new sequence and expiry and the
/// same entries (or an empty first list, if `floor` allows none), so hosts
/// never see it expire. The list under the tag must pass `floor`.
pub async fn refresh_above(
    store: &Store,
    options: &UpdateOptions<'_>,
    floor: &Floor<'_>,
) -> Result<PublishedHaltList> {
    publish_next(store, options, floor, |_, _| Step::Publish(None)).await
}

/// The signing keys' public halves, for callers that must also trust the
/// lists they published themselves.
pub fn own_keys(keys: &[SigningKey]) -> Vec<VerifyingKey> {
    keys.iter().map(SigningKey::verifying_key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{SignedRoot, TrustedRoot, build_root};

    /// A root whose halt role needs two of `halt`'s keys and whose graph
    /// role is `graph`'s one key.
    fn root(root_key: &SigningKey, graph: &SigningKey, halt: &[&SigningKey]) -> TrustedRoot {
        let halt: Vec<_> = halt.iter().map(|k| k.verifying_key()).collect();
        let content = build_root(
            1,
            Timestamp::now() + SignedDuration::from_hours(24),
            [
                (&[root_key.verifying_key()], 1),
                (&[graph.verifying_key()], 1),
                (&halt, 2),
            ],
        )
        .expect("builds");
        TrustedRoot::pin(SignedRoot::sign(&content, std::slice::from_ref(root_key)).expect("signs"))
            .expect("pins")
    }

    fn options<'a>(keys: &'a [SigningKey], trust: &'a TrustedRoot) -> UpdateOptions<'a> {
        UpdateOptions {
            publish: PublishOptions {
                tag: "cairn-halts-stable",
                identity: "acme/os",
                keys,
                root_version: trust.version(),
                settle: std::time::Duration::ZERO,
                expected: None,
            },
            trust: Some(trust),
            stream: "stable",
            lifetime: DEFAULT_LIFETIME,
            cleared: &[],
            accept_unverified_current: false,
        }
    }

    #[test]
    fn one_key_given_twice_counts_once_against_a_threshold() {
        let [r, g, h1, h2] = [(); 4].map(|()| SigningKey::generate());
        let trust = root(&r, &g, &[&h1, &h2]);
        let twice = [h1.clone(), h1.clone()];
        let refused = check_signers(&options(&twice, &trust)).expect_err("one key, twice");
        assert_eq!(refused.kind(), "halts_signers_not_in_root", "{refused}");
        assert!(
            refused.to_string().contains("1 of the halt role's keys"),
            "{refused}"
        );
        let both = [h1, h2];
        check_signers(&options(&both, &trust)).expect("two distinct halt keys");
        check_signers(&options(std::slice::from_ref(&g), &trust)).expect("the graph key");
    }
}
