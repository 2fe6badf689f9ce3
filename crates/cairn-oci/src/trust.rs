//! Trust roots: which keys may sign what, and how that changes over time
//! (docs/key-rotation.md, docs/trust-root.schema.json).
//!
//! A trust root lists public keys and three roles, each a set of those keys
//! and a threshold of distinct keys that must sign:
//! - `root` signs the next version of the root;
//! - `graph` signs graph documents, and halt lists that may drop entries;
//! - `halt` signs halt lists that may only add entries.
//!
//! Roots are versioned and chained the way TUF chains them: version N+1 is
//! taken only when a threshold of N's root keys and a threshold of its own
//! root keys sign it. A reader walks forward from the root it holds, never
//! back, and counts a signature only when the newest root lists its key for
//! the role. That is what lets a release team replace a key that expired, left
//! with a person or leaked, without reaching every host first.
//!
//! A root travels as a DSSE envelope (the signing envelope of in-toto and
//! sigstore): the root's exact JSON bytes, base64, with signatures over
//! DSSE's pre-authentication encoding. The envelope carries its signatures,
//! so a root copied into an image or a file stays verifiable.

use crate::document::Signed;
use crate::signing::{KeyId, SigningKey, VerifyingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// The format number of a trust root.
pub const ROOT_FORMAT: u32 = 1;
/// `payloadType` of a root's envelope, and the root artifact's `artifactType`.
pub const ROOT_PAYLOAD_TYPE: &str = "application/vnd.cairn.root.v1+json";
/// Largest root envelope read.
pub const MAX_ROOT_BYTES: usize = 256 * 1024;
/// Most keys one root may list.
pub const MAX_ROOT_KEYS: usize = 64;
/// Most root versions walked in one check; a host further behind walks on at
/// the next check (TUF's reference client stops at 32 as well).
pub const MAX_ROOT_WALK: u64 = 32;
/// Where an image ships the root a freshly installed host starts from.
pub const SHIPPED_ROOT_PATH: &str = "/usr/lib/cairn/root.json";

/// One of the three roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Signs the next root.
    Root,
    /// Signs graph documents, and halt lists that may drop entries.
    Graph,
    /// Signs halt lists that may only add entries.
    Halt,
}

impl Role {
    /// Every role, in the order roots list them.
    pub const ALL: [Role; 3] = [Role::Root, Role::Graph, Role::Halt];

    /// The role's name in a root.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Graph => "graph",
            Role::Halt => "halt",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The keys of one role under one root version, and how many distinct keys
/// must sign.
#[derive(Clone, Debug)]
pub struct RoleKeys {
    /// The role.
    pub role: Role,
    /// The root version the role comes from (0: built from configured keys).
    pub root_version: u64,
    keys: Vec<(KeyId, VerifyingKey)>,
    threshold: usize,
}

/// Too few distinct keys of a role signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{found} of the {role} role's keys signed, {threshold} must (root version {root_version}{signers})",
    signers = signer_note(.signed_by)
)]
pub struct Shortfall {
    /// The role.
    pub role: Role,
    /// The root version the role comes from.
    pub root_version: u64,
    /// Distinct keys of the role whose signature verified.
    pub found: usize,
    /// How many must.
    pub threshold: usize,
    /// Those keys' short ids.
    pub signed_by: Vec<String>,
}

fn signer_note(signed_by: &[String]) -> String {
    if signed_by.is_empty() {
        String::new()
    } else {
        format!("; signed by {}", signed_by.join(", "))
    }
}

impl RoleKeys {
    /// A role with these keys and threshold. Keys repeated (the same key
    /// material twice) are kept once, so they cannot count twice.
    pub fn new(role: Role, root_version: u64, keys: &[VerifyingKey], threshold: usize) -> Self {
        let mut seen = BTreeSet::new();
        let keys = keys
            .iter()
            .filter_map(|key| {
                let id = key.key_id();
                seen.insert(id.clone()).then(|| (id, key.clone()))
            })
            .collect();
        RoleKeys {
            role,
            root_version,
            keys,
            threshold,
        }
    }

    /// Any one of `keys` signs for `role`: a root of version 0, built from
    /// configured keys.
    pub fn any_of(role: Role, keys: &[VerifyingKey]) -> Self {
        RoleKeys::new(role, 0, keys, 1)
    }

    /// Whether the role has no key at all (nothing can sign for it).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many distinct keys must sign.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The role's keys.
    pub fn keys(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter().map(|(_, key)| key)
    }

    /// The role's key ids.
    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|(id, _)| id)
    }

    /// Whether `key` is one of the role's keys.
    pub fn contains(&self, key: &KeyId) -> bool {
        self.keys.iter().any(|(id, _)| id == key)
    }

    /// The distinct keys of the role with a signature among `signatures`
    /// that verifies. A key that signed twice is counted once.
    pub fn signers(&self, signatures: &[Signed]) -> BTreeSet<KeyId> {
        self.keys
            .iter()
            .filter(|(_, key)| {
                signatures
                    .iter()
                    .any(|signed| key.verifies(&signed.message, &signed.signature))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether a threshold of distinct keys signed. A role with no key or a
    /// threshold of 0 is never met.
    pub fn check(&self, signatures: &[Signed]) -> Result<BTreeSet<KeyId>, Shortfall> {
        let signers = self.signers(signatures);
        if self.threshold > 0 && signers.len() >= self.threshold {
            Ok(signers)
        } else {
            Err(Shortfall {
                role: self.role,
                root_version: self.root_version,
                found: signers.len(),
                threshold: self.threshold.max(1),
                signed_by: signers.iter().map(|id| id.short().to_string()).collect(),
            })
        }
    }
}

// ---------------------------------------------------------------------------
// The root document.

/// A trust root's content: what its envelope's payload holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Cairn trust root")]
pub struct TrustRoot {
    /// Always 1.
    #[schemars(range(min = 1, max = 1))]
    pub format: u32,
    /// 1 for the first root; each next root is exactly one more.
    #[schemars(range(min = 1))]
    pub version: u64,
    /// After this instant the root is no longer trusted, unless a newer root
    /// replaces it. RFC 3339.
    #[schemars(with = "String")]
    pub expires: Timestamp,
    /// Every public key the roles name.
    pub keys: Vec<RootKey>,
    /// Who signs what.
    pub roles: Roles,
}

/// One public key of a root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RootKey {
    /// The SHA-256 of the key's SPKI DER encoding, lowercase hex.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub id: String,
    /// The key, as a PEM `PUBLIC KEY` (ECDSA P-256).
    pub public_key: String,
}

/// The three roles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Signs the next root.
    pub root: RoleSpec,
    /// Signs graph documents, and halt lists that may drop entries.
    pub graph: RoleSpec,
    /// Signs halt lists that may only add entries.
    pub halt: RoleSpec,
}

/// One role: key ids from the root's `keys`, and how many must sign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Ids of keys listed in the root's `keys`.
    pub keys: Vec<String>,
    /// Distinct keys that must sign; at least 1 and at most the keys listed.
    #[schemars(range(min = 1))]
    pub threshold: u32,
}

impl Roles {
    /// The spec of `role`.
    pub fn get(&self, role: Role) -> &RoleSpec {
        match role {
            Role::Root => &self.root,
            Role::Graph => &self.graph,
            Role::Halt => &self.halt,
        }
    }
}

/// Why a root was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RootError {
    /// The envelope or the root in it is malformed.
    #[error("{source_name}: {field}: {message}")]
    Invalid {
        /// Where it came from.
        source_name: String,
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The next root's version is not exactly one more.
    #[error(
        "{source_name}: root version {found} cannot follow version {held}: each root must be exactly one more than the last"
    )]
    NotNext {
        /// Where it came from.
        source_name: String,
        /// The version this reader holds.
        held: u64,
        /// The version found.
        found: u64,
    },
    /// Too few root keys signed the next root.
    #[error(
        "{source_name}: root version {version} is not signed well enough: by the keys of version {signer_version}: {shortfall}"
    )]
    Unsigned {
        /// Where it came from.
        source_name: String,
        /// The version refused.
        version: u64,
        /// The root whose keys fell short (the held one or the new one).
        signer_version: u64,
        /// What fell short.
        shortfall: Shortfall,
    },
    /// The newest root has expired.
    #[error(
        "trust root version {version} expired at {expires}: nothing it would sign is trusted until this reader takes root version {next}"
    )]
    Expired {
        /// The version held.
        version: u64,
        /// When it expired.
        expires: Timestamp,
        /// The version that would replace it.
        next: u64,
    },
}

impl RootError {
    /// A short fixed label for status and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RootError::Invalid { .. } => "root_invalid",
            RootError::NotNext { .. } => "root_not_next",
            RootError::Unsigned { .. } => "root_unsigned",
            RootError::Expired { .. } => "root_expired",
        }
    }
}

/// A root as read: the envelope's bytes, the root, and its signatures.
#[derive(Clone, Debug)]
pub struct SignedRoot {
    /// The envelope, exactly as read or written.
    pub envelope: Bytes,
    /// The root the envelope's payload holds.
    pub root: TrustRoot,
    /// Each signature with the bytes it signs (DSSE's encoding of the payload).
    pub signatures: Vec<Signed>,
    /// The key ids the signatures claim, for messages only: every signature
    /// is verified against the role's keys, whatever id it names.
    pub claimed_key_ids: Vec<String>,
}

/// A DSSE envelope.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

/// DSSE's pre-authentication encoding: what each signature signs. It binds
/// the payload type, so a root's signature cannot pass for anything else.
fn pre_authentication(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    message.extend_from_slice(payload);
    message
}

/// Most signatures one root envelope may carry.
const MAX_ROOT_SIGNATURES: usize = 64;

impl TrustRoot {
    /// Check the root's own rules: format, version, key ids that match their
    /// key material, no key twice, roles that name listed keys, and
    /// thresholds that can be met. Returns the parsed keys by id.
    pub fn validate(&self, source_name: &str) -> Result<Vec<(KeyId, VerifyingKey)>, RootError> {
        let invalid = |field: String, message: String| RootError::Invalid {
            source_name: source_name.to_string(),
            field,
            message,
        };
        if self.format != ROOT_FORMAT {
            return Err(invalid(
                "format".into(),
                format!("{} is not a format this reader knows (1)", self.format),
            ));
        }
        if self.version == 0 {
            return Err(invalid(
                "version".into(),
                "must be 1 or more (0 is the root a host builds from its configured keys)".into(),
            ));
        }
        if self.keys.len() > MAX_ROOT_KEYS {
            return Err(invalid(
                "keys".into(),
                format!("{} keys; at most {MAX_ROOT_KEYS}", self.keys.len()),
            ));
        }
        let mut keys: Vec<(KeyId, VerifyingKey)> = Vec::new();
        for (index, entry) in self.keys.iter().enumerate() {
            let field = format!("keys[{index}]");
            let key = VerifyingKey::from_pem(&entry.public_key, &format!("{field}.public_key"))
                .map_err(|e| invalid(format!("{field}.public_key"), e.to_string()))?;
            let id = key.key_id();
            if entry.id != id.as_str() {
                return Err(invalid(
                    format!("{field}.id"),
                    format!(
                        "{:?} is not the key's id; the SHA-256 of its SPKI DER encoding is {id}",
                        entry.id
                    ),
                ));
            }
            if keys.iter().any(|(known, _)| *known == id) {
                return Err(invalid(
                    field,
                    format!("the key {} is listed twice", id.short()),
                ));
            }
            keys.push((id, key));
        }
        for role in Role::ALL {
            let spec = self.roles.get(role);
            let field = format!("roles.{role}");
            if spec.keys.is_empty() {
                return Err(invalid(format!("{field}.keys"), "names no key".into()));
            }
            let mut named = BTreeSet::new();
            for (index, id) in spec.keys.iter().enumerate() {
                if !keys.iter().any(|(known, _)| known.as_str() == id) {
                    return Err(invalid(
                        format!("{field}.keys[{index}]"),
                        format!("{id:?} is not a key this root lists"),
                    ));
                }
                if !named.insert(id) {
                    return Err(invalid(
                        format!("{field}.keys[{index}]"),
                        format!("{id:?} is named twice"),
                    ));
                }
            }
            let threshold = spec.threshold as usize;
            if threshold == 0 || threshold > spec.keys.len() {
                return Err(invalid(
                    format!("{field}.threshold"),
                    format!(
                        "{} cannot be met: it must be between 1 and the role's {} keys",
                        spec.threshold,
                        spec.keys.len()
                    ),
                ));
            }
        }
        Ok(keys)
    }

    /// The root's JSON, as its envelope carries it.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

impl SignedRoot {
    /// Read an envelope. Checks its shape and the root's own rules, not its
    /// signatures: whom they must come from depends on the root held.
    pub fn from_envelope(bytes: Bytes, source_name: &str) -> Result<SignedRoot, RootError> {
        let invalid = |field: &str, message: String| RootError::Invalid {
            source_name: source_name.to_string(),
            field: field.to_string(),
            message,
        };
        if bytes.len() > MAX_ROOT_BYTES {
            return Err(invalid(
                "envelope",
                format!("{} bytes; at most {MAX_ROOT_BYTES}", bytes.len()),
            ));
        }
        let envelope: Envelope = {
            let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                let path = e.path().to_string();
                invalid(
                    if path == "." { "envelope" } else { &path },
                    e.inner().to_string(),
                )
            })?
        };
        if envelope.payload_type != ROOT_PAYLOAD_TYPE {
            return Err(invalid(
                "payloadType",
                format!(
                    "{:?} is not a Cairn trust root ({ROOT_PAYLOAD_TYPE})",
                    envelope.payload_type
                ),
            ));
        }
        if envelope.signatures.len() > MAX_ROOT_SIGNATURES {
            return Err(invalid(
                "signatures",
                format!(
                    "{} signatures; at most {MAX_ROOT_SIGNATURES}",
                    envelope.signatures.len()
                ),
            ));
        }
        let payload = STANDARD
            .decode(envelope.payload.as_bytes())
            .map_err(|e| invalid("payload", format!("not base64: {e}")))?;
        let root: TrustRoot = {
            let deserializer = &mut serde_json::Deserializer::from_slice(&payload);
            serde_path_to_error::deserialize(deserializer)
                .map_err(|e| invalid(&format!("payload: {}", e.path()), e.inner().to_string()))?
        };
        root.validate(source_name)?;
        let message = Bytes::from(pre_authentication(ROOT_PAYLOAD_TYPE, &payload));
        let signatures = envelope
            .signatures
            .iter()
            .map(|s| Signed {
                message: message.clone(),
                signature: s.sig.clone(),
            })
            .collect();
        Ok(SignedRoot {
            envelope: bytes,
            root,
            signatures,
            claimed_key_ids: envelope.signatures.into_iter().map(|s| s.keyid).collect(),
        })
    }

    /// Sign `root` with `keys`, one signature each, after checking its rules.
    pub fn sign(root: &TrustRoot, keys: &[SigningKey]) -> Result<SignedRoot, RootError> {
        root.validate("the new root")?;
        let payload = root.to_json();
        let message = pre_authentication(ROOT_PAYLOAD_TYPE, &payload);
        let envelope = Envelope {
            payload_type: ROOT_PAYLOAD_TYPE.to_string(),
            payload: STANDARD.encode(&payload),
            signatures: keys
                .iter()
                .map(|key| EnvelopeSignature {
                    keyid: key.verifying_key().key_id().to_string(),
                    sig: key.sign(&message),
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&envelope).unwrap_or_default();
        bytes.push(b'\n');
        SignedRoot::from_envelope(Bytes::from(bytes), "the new root")
    }

    /// The root's version.
    pub fn version(&self) -> u64 {
        self.root.version
    }
}

// ---------------------------------------------------------------------------
// The root a reader trusts.

/// How a reader came to hold its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootOrigin {
    /// Version 0, built from configured keys.
    Configured,
    /// Pinned as given: shipped in the image, stored in state, or named on
    /// the command line.
    Pinned,
    /// Walked to from a root held before.
    Walked,
}

/// The root a reader trusts, with its keys parsed.
#[derive(Clone, Debug)]
pub struct TrustedRoot {
    version: u64,
    expires: Option<Timestamp>,
    /// The envelope; `None` for version 0.
    signed: Option<SignedRoot>,
    keys: Vec<(KeyId, VerifyingKey)>,
    roles: [(Vec<KeyId>, usize); 3],
    origin: RootOrigin,
}

impl TrustedRoot {
    /// Version 0, from configured keys: `graph_keys` form the root role (all
    /// must sign version 1) and the graph role (any one); the halt role is
    /// `halt_keys` and `graph_keys`, any one. `None` when no key at all is
    /// configured: there is nothing to trust, and the reader runs unsigned.
    /// With halt keys only, the graph and root roles are empty: documents
    /// are read as unsigned, halt lists still need a halt key, and no root
    /// can follow (an empty root role never signs).
    pub fn from_config(graph_keys: &[VerifyingKey], halt_keys: &[VerifyingKey]) -> Option<Self> {
        if graph_keys.is_empty() && halt_keys.is_empty() {
            return None;
        }
        let mut keys: Vec<(KeyId, VerifyingKey)> = Vec::new();
        for key in graph_keys.iter().chain(halt_keys) {
            let id = key.key_id();
            if !keys.iter().any(|(known, _)| *known == id) {
                keys.push((id, key.clone()));
            }
        }
        let graph: Vec<KeyId> = dedup_ids(graph_keys);
        let halt: Vec<KeyId> = dedup_ids(&[halt_keys, graph_keys].concat());
        Some(TrustedRoot {
            version: 0,
            expires: None,
            signed: None,
            keys,
            roles: [(graph.clone(), graph.len()), (graph, 1), (halt, 1)],
            origin: RootOrigin::Configured,
        })
    }

    /// Trust `signed` as a starting point, without checking who signed it:
    /// for a root shipped in the image a host was installed from, or one
    /// this reader stored after verifying it.
    pub fn pin(signed: SignedRoot) -> Result<Self, RootError> {
        Self::trusting(signed, RootOrigin::Pinned)
    }

    fn trusting(signed: SignedRoot, origin: RootOrigin) -> Result<Self, RootError> {
        let keys = signed.root.validate("the trust root")?;
        let role = |role: Role| {
            let spec = signed.root.roles.get(role);
            let ids = spec.keys.iter().filter_map(|id| KeyId::parse(id)).collect();
            (ids, spec.threshold as usize)
        };
        Ok(TrustedRoot {
            version: signed.root.version,
            expires: Some(signed.root.expires),
            roles: [role(Role::Root), role(Role::Graph), role(Role::Halt)],
            keys,
            signed: Some(signed),
            origin,
        })
    }

    /// The version held (0: built from configured keys).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When it expires (`None` for version 0, which does not).
    pub fn expires(&self) -> Option<Timestamp> {
        self.expires
    }

    /// How the reader came to hold it.
    pub fn origin(&self) -> RootOrigin {
        self.origin
    }

    /// The envelope, to store (`None` for version 0).
    pub fn signed(&self) -> Option<&SignedRoot> {
        self.signed.as_ref()
    }

    /// The keys and threshold of `role`.
    pub fn role(&self, role: Role) -> RoleKeys {
        let index = match role {
            Role::Root => 0,
            Role::Graph => 1,
            Role::Halt => 2,
        };
        let (ids, threshold) = &self.roles[index];
        let keys: Vec<VerifyingKey> = ids
            .iter()
            .filter_map(|id| {
                self.keys
                    .iter()
                    .find(|(known, _)| known == id)
                    .map(|(_, key)| key.clone())
            })
            .collect();
        RoleKeys::new(role, self.version, &keys, *threshold)
    }

    /// Every key id the root lists.
    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|(id, _)| id)
    }

    /// Take `next` in place of this root: only version N+1, and only when a
    /// threshold of this root's root keys and a threshold of `next`'s own
    /// root keys signed it. Expiry is not checked here: only the final root
    /// of a walk must be unexpired ([`TrustedRoot::check_expiry`]).
    pub fn accept_next(&self, next: SignedRoot, source_name: &str) -> Result<Self, RootError> {
        let found = next.root.version;
        if Some(found) != self.version.checked_add(1) {
            return Err(RootError::NotNext {
                source_name: source_name.to_string(),
                held: self.version,
                found,
            });
        }
        let unsigned = |signer_version, shortfall| RootError::Unsigned {
            source_name: source_name.to_string(),
            version: found,
            signer_version,
            shortfall,
        };
        self.role(Role::Root)
            .check(&next.signatures)
            .map_err(|s| unsigned(self.version, s))?;
        let candidate = Self::trusting(next, RootOrigin::Walked)?;
        candidate
            .role(Role::Root)
            .check(
                &candidate
                    .signed
                    .as_ref()
                    .map(|s| s.signatures.clone())
                    .unwrap_or_default(),
            )
            .map_err(|s| unsigned(found, s))?;
        Ok(candidate)
    }

    /// Refuse an expired root: nothing it would sign is trusted.
    pub fn check_expiry(&self, now: Timestamp) -> Result<(), RootError> {
        match self.expires {
            Some(expires) if now > expires => Err(RootError::Expired {
                version: self.version,
                expires,
                next: self.version.saturating_add(1),
            }),
            _ => Ok(()),
        }
    }

    /// One line for status: the version and the key ids of each role.
    pub fn describe(&self) -> String {
        let roles: Vec<String> = Role::ALL
            .iter()
            .map(|&role| {
                let keys = self.role(role);
                let ids: Vec<&str> = keys.key_ids().map(KeyId::short).collect();
                format!(
                    "{role} {}/{} [{}]",
                    keys.threshold(),
                    ids.len(),
                    ids.join(" ")
                )
            })
            .collect();
        format!("trust root version {}: {}", self.version, roles.join("; "))
    }
}

fn dedup_ids(keys: &[VerifyingKey]) -> Vec<KeyId> {
    let mut ids: Vec<KeyId> = Vec::new();
    for key in keys {
        let id = key.key_id();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// A new root's content, for `cairn root init` and `rotate`: the keys each
/// role names, listed once each in `keys`.
pub fn build_root(
    version: u64,
    expires: Timestamp,
    roles: [(&[VerifyingKey], u32); 3],
) -> Result<TrustRoot, crate::error::OciError> {
    let mut keys: Vec<RootKey> = Vec::new();
    let mut specs = Vec::new();
    for (role_keys, threshold) in roles {
        let mut ids = Vec::new();
        for key in role_keys {
            let id = key.key_id().to_string();
            if !keys.iter().any(|k| k.id == id) {
                keys.push(RootKey {
                    id: id.clone(),
                    public_key: key.to_pem()?,
                });
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        specs.push(RoleSpec {
            keys: ids,
            threshold,
        });
    }
    let mut specs = specs.into_iter();
    let mut next = || {
        specs.next().unwrap_or(RoleSpec {
            keys: Vec::new(),
            threshold: 0,
        })
    };
    Ok(TrustRoot {
        format: ROOT_FORMAT,
        version,
        expires,
        keys,
        roles: Roles {
            root: next(),
            graph: next(),
            halt: next(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("time")
    }

    fn keys(n: usize) -> Vec<SigningKey> {
        (0..n).map(|_| SigningKey::generate()).collect()
    }

    fn public(keys: &[&SigningKey]) -> Vec<VerifyingKey> {
        keys.iter().map(|k| k.verifying_key()).collect()
    }

    /// A root whose three roles are `root` (threshold `t`), `graph` and `halt`.
    fn root(version: u64, root: &[&SigningKey], t: u32, graph: &[&SigningKey]) -> TrustRoot {
        let (root, graph) = (public(root), public(graph));
        build_root(
            version,
            at(2_000_000_000),
            [(&root, t), (&graph, 1), (&graph, 1)],
        )
        .expect("builds")
    }

    #[test]
    fn a_root_round_trips_through_its_envelope_and_bad_fields_are_named() {
        let k = keys(3);
        let content = root(1, &[&k[0], &k[1]], 2, &[&k[2]]);
        let signed = SignedRoot::sign(&content, &[k[0].clone(), k[1].clone()]).expect("signs");
        let again = SignedRoot::from_envelope(signed.envelope.clone(), "r").expect("reads");
        assert_eq!(again.root, content);
        assert_eq!(again.signatures.len(), 2);
        assert_eq!(
            again.claimed_key_ids[0],
            k[0].verifying_key().key_id().as_str()
        );

        let refused = |mutate: &dyn Fn(&mut TrustRoot), field: &str| {
            let mut bad = content.clone();
            mutate(&mut bad);
            let error = bad.validate("r").expect_err(field);
            assert!(
                matches!(&error, RootError::Invalid { field: f, .. } if f == field),
                "{field}: {error}"
            );
        };
        refused(&|r| r.format = 2, "format");
        refused(&|r| r.version = 0, "version");
        refused(&|r| r.keys[0].id = "00".repeat(32), "keys[0].id");
        refused(&|r| r.keys.push(r.keys[0].clone()), "keys[3]");
        refused(&|r| r.roles.graph.keys.clear(), "roles.graph.keys");
        refused(
            &|r| r.roles.halt.keys.push("ab".repeat(32)),
            "roles.halt.keys[1]",
        );
        refused(
            &|r| r.roles.root.keys.push(r.roles.root.keys[0].clone()),
            "roles.root.keys[2]",
        );
        refused(&|r| r.roles.root.threshold = 3, "roles.root.threshold");
        refused(&|r| r.roles.graph.threshold = 0, "roles.graph.threshold");

        for (text, field) in [
            ("[]", "envelope"),
            (
                r#"{"payloadType":"text/plain","payload":"","signatures":[]}"#,
                "payloadType",
            ),
            (
                r#"{"payloadType":"application/vnd.cairn.root.v1+json","payload":"%%","signatures":[]}"#,
                "payload",
            ),
        ] {
            let error = SignedRoot::from_envelope(Bytes::from(text), "r").expect_err(text);
            assert!(
                matches!(&error, RootError::Invalid { field: f, .. } if f == field),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn the_next_root_needs_a_threshold_of_the_old_and_of_its_own_root_keys() {
        let k = keys(5);
        let first = TrustedRoot::pin(
            SignedRoot::sign(&root(1, &[&k[0], &k[1]], 2, &[&k[4]]), &[k[0].clone()])
                .expect("signs"),
        )
        .expect("pins");
        // Version 2 replaces k1 with k2 and k3.
        let content = root(2, &[&k[0], &k[2], &k[3]], 2, &[&k[4]]);
        let sign = |by: &[&SigningKey]| {
            SignedRoot::sign(
                &content,
                &by.iter().map(|k| (*k).clone()).collect::<Vec<_>>(),
            )
            .expect("signs")
        };
        let next = first
            .accept_next(sign(&[&k[0], &k[1], &k[2]]), "r2")
            .expect("two old and two new keys signed");
        assert_eq!((next.version(), next.origin()), (2, RootOrigin::Walked));

        // Only one old key: the old root's threshold is not met.
        let error = first
            .accept_next(sign(&[&k[0], &k[2], &k[3]]), "r2")
            .expect_err("one old key");
        assert!(
            matches!(
                &error,
                RootError::Unsigned {
                    signer_version: 1,
                    ..
                }
            ),
            "{error}"
        );
        // Two old keys, one new: the new root's own threshold is not met.
        let error = first
            .accept_next(sign(&[&k[0], &k[1]]), "r2")
            .expect_err("one new key");
        assert!(
            matches!(
                &error,
                RootError::Unsigned {
                    signer_version: 2,
                    ..
                }
            ),
            "{error}"
        );
        // The same key twice counts once.
        let mut doubled = sign(&[&k[0], &k[2]]);
        doubled.signatures.extend(doubled.signatures.clone());
        let error = first.accept_next(doubled, "r2").expect_err("repeated key");
        assert!(
            error
                .to_string()
                .contains("1 of the root role's keys signed, 2 must"),
            "{error}"
        );
        // A gap or a step back is refused.
        let skip = SignedRoot::sign(
            &root(3, &[&k[0], &k[1]], 2, &[&k[4]]),
            &[k[0].clone(), k[1].clone()],
        )
        .expect("signs");
        let error = first.accept_next(skip, "r3").expect_err("gap");
        assert!(
            matches!(
                error,
                RootError::NotNext {
                    held: 1,
                    found: 3,
                    ..
                }
            ),
            "{error}"
        );
        let back = next
            .accept_next(sign(&[&k[0], &k[2], &k[3]]), "r2")
            .expect_err("same version");
        assert!(
            matches!(
                back,
                RootError::NotNext {
                    held: 2,
                    found: 2,
                    ..
                }
            ),
            "{back}"
        );
    }

    #[test]
    fn version_zero_comes_from_configured_keys() {
        assert!(TrustedRoot::from_config(&[], &[]).is_none());
        let halt_only = SigningKey::generate().verifying_key();
        let halt_only = TrustedRoot::from_config(&[], &[halt_only]).expect("a halt key");
        assert!(halt_only.role(Role::Graph).is_empty() && halt_only.role(Role::Root).is_empty());
        assert_eq!(halt_only.role(Role::Halt).key_ids().count(), 1);
        let k = keys(3);
        let graph = public(&[&k[0], &k[1]]);
        let halt = public(&[&k[2]]);
        let zero = TrustedRoot::from_config(&graph, &halt).expect("keys");
        assert_eq!((zero.version(), zero.expires()), (0, None));
        assert_eq!(
            zero.role(Role::Root).threshold(),
            2,
            "every configured key signs version 1"
        );
        assert_eq!(zero.role(Role::Graph).threshold(), 1);
        let halt_role = zero.role(Role::Halt);
        assert_eq!(halt_role.key_ids().count(), 3);
        assert!(halt_role.contains(&k[2].verifying_key().key_id()));
        assert!(
            !zero
                .role(Role::Graph)
                .contains(&k[2].verifying_key().key_id())
        );
        assert!(zero.check_expiry(at(i64::from(i32::MAX))).is_ok());
        // Version 1 signed by one configured key of two is refused.
        let one =
            SignedRoot::sign(&root(1, &[&k[0]], 1, &[&k[0]]), &[k[0].clone()]).expect("signs");
        assert!(zero.accept_next(one, "r1").is_err());
        let both = SignedRoot::sign(
            &root(1, &[&k[0]], 1, &[&k[0]]),
            &[k[0].clone(), k[1].clone()],
        )
        .expect("signs");
        assert_eq!(
            zero.accept_next(both, "r1").expect("both signed").version(),
            1
        );
    }

    #[test]
    fn an_expired_root_is_refused_with_the_version_to_wait_for() {
        let k = keys(1);
        let mut content = root(4, &[&k[0]], 1, &[&k[0]]);
        content.expires = at(1_000);
        let held = TrustedRoot::pin(SignedRoot::sign(&content, &[k[0].clone()]).expect("signs"))
            .expect("pins");
        assert!(held.check_expiry(at(1_000)).is_ok());
        let error = held.check_expiry(at(1_001)).expect_err("expired");
        assert_eq!(error.kind(), "root_expired");
        assert!(error.to_string().contains("root version 5"), "{error}");
    }

    #[test]
    fn role_keys_count_distinct_keys_that_verify() {
        let k = keys(3);
        let message = Bytes::from_static(b"payload");
        let signed = |key: &SigningKey| Signed {
            message: message.clone(),
            signature: key.sign(&message),
        };
        // The same key given twice is one key.
        let role = RoleKeys::new(Role::Graph, 3, &public(&[&k[0], &k[0], &k[1]]), 2);
        assert_eq!(role.key_ids().count(), 2);
        let twice = [signed(&k[0]), signed(&k[0])];
        let error = role.check(&twice).expect_err("one key twice");
        assert_eq!(
            (error.found, error.threshold, error.root_version),
            (1, 2, 3)
        );
        assert!(role.check(&[signed(&k[0]), signed(&k[1])]).is_ok());
        // A key outside the role does not count.
        assert!(role.check(&[signed(&k[0]), signed(&k[2])]).is_err());
        assert!(
            RoleKeys::any_of(Role::Graph, &[])
                .check(&[signed(&k[0])])
                .is_err()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// However a chain of roots is signed and offered, the root a reader
        /// ends up with only has keys that some accepted root listed, each
        /// accepted root is exactly one more than the last, and a key whose
        /// signature counts for a role is one the newest root gives that role.
        #[test]
        fn no_chain_makes_a_reader_trust_a_key_the_newest_root_does_not_list(
            steps in proptest::collection::vec(
                (0u8..16, 0u8..16, 1u32..3, 0u8..16, 0u8..16, 0u64..3),
                1..8,
            )
        ) {
            let pool = keys(4);
            let pick = |mask: u8| -> Vec<&SigningKey> {
                let chosen: Vec<&SigningKey> = pool
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, k)| k)
                    .collect();
                if chosen.is_empty() { vec![&pool[0]] } else { chosen }
            };
            let mut held = TrustedRoot::pin(
                SignedRoot::sign(&root(1, &[&pool[0]], 1, &[&pool[1]]), &[pool[0].clone()])
                    .expect("signs"),
            )
            .expect("pins");
            for (root_mask, graph_mask, threshold, signer_mask, doc_mask, skew) in steps {
                let root_keys = pick(root_mask);
                let threshold = threshold.min(root_keys.len() as u32);
                let version = held.version() + skew; // 0: a replay, 2: a gap
                let content = root(version.max(1), &root_keys, threshold, &pick(graph_mask));
                let signers: Vec<SigningKey> = pick(signer_mask).into_iter().cloned().collect();
                let before = held.clone();
                if let Ok(signed) = SignedRoot::sign(&content, &signers)
                    && let Ok(next) = held.accept_next(signed, "r")
                {
                    proptest::prop_assert_eq!(next.version(), before.version() + 1);
                    // The old root's own threshold was met.
                    let old_root = before.role(Role::Root);
                    let signer_ids: BTreeSet<KeyId> =
                        signers.iter().map(|k| k.verifying_key().key_id()).collect();
                    let counted = old_root.key_ids().filter(|id| signer_ids.contains(id)).count();
                    proptest::prop_assert!(counted >= old_root.threshold());
                    held = next;
                }
                // A document signed by `doc_mask` counts only through keys the
                // held root gives the graph role.
                let message = Bytes::from_static(b"document");
                let signatures: Vec<Signed> = pick(doc_mask)
                    .iter()
                    .map(|k| Signed { message: message.clone(), signature: k.sign(&message) })
                    .collect();
                let graph = held.role(Role::Graph);
                for id in graph.signers(&signatures) {
                    proptest::prop_assert!(held
                        .signed()
                        .is_some_and(|s| s.root.roles.graph.keys.contains(&id.to_string())));
                }
            }
        }
    }
}
