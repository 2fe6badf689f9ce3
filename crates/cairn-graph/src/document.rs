//! Cairn's update graph document, schema version 1: types, parsing and validation.
//!
//! One document describes one stream of one repository. Its release list is
//! append-only, in publication order; the position of a release is its
//! identity. Edges follow the update order ([`GraphDocument::update_order`]):
//! the same order, except that derived releases go by their base's age first.
//! The full specification, with examples, is `docs/graph-document.md`.

use crate::digest::{is_ostree_commit, is_sha256_digest};
use crate::rollout::Rollout;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The only schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The longest rollout accepted: 366 days. Longer ones are almost certainly a
/// unit mistake (seconds written as minutes).
pub const MAX_ROLLOUT_MINUTES: u64 = 366 * 24 * 60;

/// Start times must lie between 1970 and the year 9999.
pub const MAX_START_EPOCH: i64 = 253_402_300_799;

/// An update graph document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GraphDocument {
    /// Schema version; always 1 for this format.
    #[schemars(range(min = 1, max = 1))]
    pub schema: u32,
    /// The stream this document describes, for example `stable`.
    #[schemars(length(min = 1))]
    pub stream: String,
    /// The image repository the releases live in, without tag or digest,
    /// for example `quay.io/fedora/fedora-coreos`.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Grows with every publication; readers refuse to go backwards.
    pub sequence: u64,
    /// When this document was issued (RFC 3339).
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub issued: Timestamp,
    /// After this instant the document must not be trusted (RFC 3339).
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub expires: Timestamp,
    /// Releases, oldest first. Append-only: a release never moves or leaves.
    pub releases: Vec<Release>,
    /// For a repository of derived images: the base graph they inherit from.
    /// Its barriers are kept here so every reader applies the same guard: no
    /// edge crosses a base barrier that no release of this document is built on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseGraphSummary>,
    /// The stream's halt list, when halts are on (`cairn publish
    /// --halt-list`): where it is, the oldest list readers may pair with this
    /// document, and the halts the release team cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halts: Option<HaltSettings>,
    /// The trust root version the publisher signed under (docs/key-rotation.md):
    /// a reader holding an older root walks the root chain before checking
    /// the signatures. Absent (0): signed with configured keys, no trust root.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub root_version: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Halts for a stream, as the release team's document states them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct HaltSettings {
    /// Where the halt list is published: an OCI reference, its own
    /// repository recommended (docs/rollout-guard.md).
    #[schemars(length(min = 1))]
    pub location: String,
    /// The newest halt-list sequence the publisher verified: readers refuse
    /// a list below it, so a stale mirror cannot pair this document with an
    /// older list.
    #[serde(default)]
    pub min_sequence: u64,
    /// Halts cleared by the release team (`cairn policy halt clear`), by id:
    /// the halts in effect are the list's entries minus these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleared: Vec<ClearedHalt>,
}

/// A halt the release team cleared.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ClearedHalt {
    /// The halt entry's id.
    #[schemars(length(min = 1))]
    pub id: String,
    /// The release it halted.
    #[schemars(length(min = 1))]
    pub version: String,
}

impl GraphDocument {
    /// The ids of the halts this document clears.
    pub fn cleared_halts(&self) -> Vec<String> {
        self.halts
            .iter()
            .flat_map(|h| h.cleared.iter().map(|c| c.id.clone()))
            .collect()
    }
}

/// What a derived document keeps of its base graph.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BaseGraphSummary {
    /// Where the base graph was read (`fcos:stable`, a registry reference, ...).
    #[schemars(length(min = 1))]
    pub source: String,
    /// The base image repository, for example `quay.io/fedora/fedora-coreos`.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// The base graph's barriers, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub barriers: Vec<BaseBarrier>,
}

/// A barrier of the base graph.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BaseBarrier {
    /// The base release's version.
    #[schemars(length(min = 1))]
    pub version: String,
    /// Its age index in the base graph.
    pub age_index: u64,
    /// The base's reason. May be empty ("generic").
    #[serde(default)]
    pub reason: String,
}

/// One release of the stream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Release {
    /// The version shown to people. Free-form, unique within the document.
    #[schemars(length(min = 1))]
    pub version: String,
    /// Per-architecture payloads, keyed by architecture (`x86_64`, `aarch64`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub architectures: BTreeMap<String, ArchEntry>,
    /// For a derived image: the base image it was built on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseImage>,
    /// Every older node must boot this release before going further.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barrier: Option<Reason>,
    /// Nodes on this release do not update automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadend: Option<Reason>,
    /// This release is offered to a growing part of the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// The payload of a release for one architecture.
///
/// An empty entry (or a missing architecture) marks a source-only release:
/// it keeps its age index but no host can update to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArchEntry {
    /// The per-architecture image manifest digest (never an index digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: Option<String>,
    /// The image config digest; two releases with the same config are the same OS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub config: Option<String>,
    /// Other manifest digests that hosts of this release may be booted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^sha256:[0-9a-f]{64}$")))]
    pub aliases: Vec<String>,
    /// The ostree commit checksum, for hosts that update from ostree commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub ostree: Option<String>,
    /// False once the image has left the registry: hosts booted on it still
    /// find themselves, but it is never offered as a target.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    #[schemars(extend("default" = true))]
    pub available: bool,
}

impl Default for ArchEntry {
    fn default() -> Self {
        ArchEntry {
            digest: None,
            config: None,
            aliases: Vec::new(),
            ostree: None,
            available: true,
        }
    }
}

impl ArchEntry {
    /// An entry for an image manifest digest.
    pub fn image(digest: impl Into<String>) -> Self {
        ArchEntry {
            digest: Some(digest.into()),
            ..ArchEntry::default()
        }
    }

    /// An entry for an ostree commit.
    pub fn ostree(commit: impl Into<String>) -> Self {
        ArchEntry {
            ostree: Some(commit.into()),
            ..ArchEntry::default()
        }
    }
}

impl Default for GraphDocument {
    fn default() -> Self {
        GraphDocument {
            schema: SCHEMA_VERSION,
            stream: String::new(),
            repository: String::new(),
            sequence: 0,
            issued: Timestamp::UNIX_EPOCH,
            expires: Timestamp::UNIX_EPOCH,
            releases: Vec::new(),
            base: None,
            halts: None,
            root_version: 0,
        }
    }
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// The base image a derived release was built on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BaseImage {
    /// The base image repository, for example `quay.io/fedora/fedora-coreos`;
    /// empty when the image records only its base's digest.
    #[serde(default)]
    pub repository: String,
    /// The base image digest: its index or one architecture's manifest.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: String,
    /// The base release's version, once found in the base graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The base release's age index in the base graph; absent while the base
    /// digest is unknown to it, and then no edge leads to or from this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_index: Option<u64>,
}

impl BaseImage {
    /// A base known by repository and digest, not yet found in a base graph.
    pub fn new(repository: impl Into<String>, digest: impl Into<String>) -> Self {
        BaseImage {
            repository: repository.into(),
            digest: digest.into(),
            version: None,
            age_index: None,
        }
    }
}

/// Why a release is a barrier or a dead-end.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Reason {
    /// A URL or a sentence for operators. May be empty ("generic").
    #[serde(default)]
    pub reason: String,
    /// Set when the reason was inherited: the base release it came from.
    /// Inherited reasons are recomputed at every publication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_base: Option<String>,
}

impl Reason {
    /// A reason with the given text.
    pub fn new(text: impl Into<String>) -> Self {
        Reason {
            reason: text.into(),
            from_base: None,
        }
    }

    /// The text operators see: an inherited reason names the base release.
    pub fn describe(&self) -> String {
        match &self.from_base {
            Some(base) if self.reason.is_empty() => format!("inherited from base {base}"),
            Some(base) => format!("{} (inherited from base {base})", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// A document that parsed and validated, with any fields it ignored.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The document.
    pub document: GraphDocument,
    /// JSON paths of fields this version does not know; they were ignored.
    pub ignored_fields: Vec<String>,
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// JSON of the wrong shape; `path` names the field.
    #[error("{}field `{path}`: {message}", release_prefix(.release))]
    Shape {
        /// Where the bad field is, as a JSON path.
        path: String,
        /// The release the field belongs to, when it belongs to one.
        release: Option<String>,
        /// What is wrong with it.
        message: String,
    },
    /// The content breaks one or more rules.
    #[error("{}", join(.0))]
    Invalid(Vec<ValidationError>),
}

impl DocumentError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            DocumentError::Syntax(_) => "syntax",
            DocumentError::Shape { .. } => "shape",
            DocumentError::Invalid(errors) => errors.first().map_or("invalid", |e| e.kind()),
        }
    }
}

fn release_prefix(release: &Option<String>) -> String {
    release
        .as_ref()
        .map(|version| format!("release {version}: "))
        .unwrap_or_default()
}

fn join(errors: &[ValidationError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// Where in a document a problem is: a release (by position and version) and a field.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// Position of the release in `releases`, if the field belongs to one.
    pub index: Option<usize>,
    /// Version of that release.
    pub version: Option<String>,
    /// The field, as a path below the release (or the document).
    pub field: String,
}

impl Location {
    fn document(field: &str) -> Self {
        Location {
            index: None,
            version: None,
            field: field.to_string(),
        }
    }

    fn release(index: usize, release: &Release, field: impl Into<String>) -> Self {
        Location {
            index: Some(index),
            version: Some(release.version.clone()),
            field: field.into(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.index, &self.version) {
            (Some(index), Some(version)) => {
                write!(
                    f,
                    "release {version} (releases[{index}]) field `{}`",
                    self.field
                )
            }
            _ => write!(f, "field `{}`", self.field),
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The schema version is not one this build understands.
    #[error(
        "field `schema`: unsupported schema version {found}; this build reads version {SCHEMA_VERSION}"
    )]
    UnknownSchema {
        /// The version found.
        found: u32,
    },
    /// A required text field is empty.
    #[error("{at}: must not be empty")]
    Empty {
        /// Where.
        at: Location,
    },
    /// `expires` is before `issued`.
    #[error("field `expires`: {expires} is earlier than `issued` {issued}")]
    ExpiresBeforeIssued {
        /// Issued.
        issued: Timestamp,
        /// Expires.
        expires: Timestamp,
    },
    /// Two releases share a version.
    #[error("{at}: version {version:?} already used by releases[{first}]")]
    DuplicateVersion {
        /// The second release.
        at: Location,
        /// The version.
        version: String,
        /// Position of the first release with it.
        first: usize,
    },
    /// A digest, alias or commit appears twice.
    #[error("{at}: {value} already appears at {first}")]
    DuplicateDigest {
        /// The second occurrence.
        at: Location,
        /// The digest.
        value: String,
        /// The first occurrence.
        first: Location,
    },
    /// A digest with the wrong syntax.
    #[error(
        "{at}: {value:?} is not a digest (expected `sha256:` and 64 lower-case hex characters)"
    )]
    BadDigest {
        /// Where.
        at: Location,
        /// The value found.
        value: String,
    },
    /// An ostree commit with the wrong syntax.
    #[error("{at}: {value:?} is not an ostree commit (expected 64 lower-case hex characters)")]
    BadCommit {
        /// Where.
        at: Location,
        /// The value found.
        value: String,
    },
    /// `config` or `aliases` without the manifest `digest` they qualify.
    #[error("{at}: needs `digest` in the same entry")]
    WithoutDigest {
        /// Where.
        at: Location,
    },
    /// A fraction outside [0, 1].
    #[error("{at}: {value} is outside [0, 1]")]
    PercentageOutOfRange {
        /// Where.
        at: Location,
        /// The value found.
        value: f64,
    },
    /// A rollout longer than [`MAX_ROLLOUT_MINUTES`].
    #[error("{at}: {minutes} minutes is longer than the limit of {MAX_ROLLOUT_MINUTES} (366 days)")]
    AbsurdDuration {
        /// Where.
        at: Location,
        /// The value found.
        minutes: u64,
    },
    /// A start time outside 1970..=9999.
    #[error("{at}: {value} is not a Unix time between 1970 and 9999")]
    StartOutOfRange {
        /// Where.
        at: Location,
        /// The value found.
        value: i64,
    },
}

impl ValidationError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ValidationError::UnknownSchema { .. } => "unknown_schema",
            ValidationError::Empty { .. } => "empty_field",
            ValidationError::ExpiresBeforeIssued { .. } => "expires_before_issued",
            ValidationError::DuplicateVersion { .. } => "duplicate_version",
            ValidationError::DuplicateDigest { .. } => "duplicate_digest",
            ValidationError::BadDigest { .. } => "bad_digest",
            ValidationError::BadCommit { .. } => "bad_commit",
            ValidationError::WithoutDigest { .. } => "without_digest",
            ValidationError::PercentageOutOfRange { .. } => "percentage_out_of_range",
            ValidationError::AbsurdDuration { .. } => "absurd_duration",
            ValidationError::StartOutOfRange { .. } => "start_out_of_range",
        }
    }
}

impl GraphDocument {
    /// The JSON Schema of this format, generated from these types.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(GraphDocument)).unwrap_or_default()
    }

    /// Parse and validate a document. Unknown fields are ignored and reported,
    /// so a document from a newer publisher still reads.
    pub fn from_json(bytes: &[u8]) -> Result<Parsed, DocumentError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| DocumentError::Syntax(e.to_string()))?;
        // The schema comes first: a newer schema should say so, not fail on shape.
        if let Some(found) = value.get("schema").and_then(serde_json::Value::as_u64)
            && found != u64::from(SCHEMA_VERSION)
        {
            let found = u32::try_from(found).unwrap_or(u32::MAX);
            return Err(DocumentError::Invalid(vec![
                ValidationError::UnknownSchema { found },
            ]));
        }
        let mut ignored_fields = Vec::new();
        // serde_ignored writes `?` for each Option level; people expect plain paths.
        let mut record =
            |path: serde_ignored::Path<'_>| ignored_fields.push(path.to_string().replace(".?", ""));
        let ignoring = serde_ignored::Deserializer::new(&value, &mut record);
        let document: GraphDocument = serde_path_to_error::deserialize(ignoring).map_err(|e| {
            let path = e.path().to_string();
            DocumentError::Shape {
                release: release_version_at(&value, &path),
                path,
                message: e.into_inner().to_string(),
            }
        })?;
        document.validate().map_err(DocumentError::Invalid)?;
        Ok(Parsed {
            document,
            ignored_fields,
        })
    }

    /// Serialize as pretty JSON with a trailing newline.
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Check every rule of schema 1; returns all broken rules, not just the first.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut errors = Vec::new();
        if self.schema != SCHEMA_VERSION {
            errors.push(ValidationError::UnknownSchema { found: self.schema });
        }
        for (field, value) in [("stream", &self.stream), ("repository", &self.repository)] {
            if value.trim().is_empty() {
                errors.push(ValidationError::Empty {
                    at: Location::document(field),
                });
            }
        }
        if self.expires < self.issued {
            errors.push(ValidationError::ExpiresBeforeIssued {
                issued: self.issued,
                expires: self.expires,
            });
        }
        if let Some(base) = &self.base {
            for (field, value) in [
                ("base.source", &base.source),
                ("base.repository", &base.repository),
            ] {
                if value.trim().is_empty() {
                    errors.push(ValidationError::Empty {
                        at: Location::document(field),
                    });
                }
            }
            for (i, barrier) in base.barriers.iter().enumerate() {
                if barrier.version.trim().is_empty() {
                    errors.push(ValidationError::Empty {
                        at: Location::document(&format!("base.barriers[{i}].version")),
                    });
                }
            }
        }
        let mut versions: HashMap<&str, usize> = HashMap::new();
        let mut digests: HashMap<String, Location> = HashMap::new();
        for (index, release) in self.releases.iter().enumerate() {
            if release.version.trim().is_empty() {
                errors.push(ValidationError::Empty {
                    at: Location::release(index, release, "version"),
                });
            } else if let Some(&first) = versions.get(release.version.as_str()) {
                errors.push(ValidationError::DuplicateVersion {
                    at: Location::release(index, release, "version"),
                    version: release.version.clone(),
                    first,
                });
            } else {
                versions.insert(&release.version, index);
            }
            validate_release(index, release, &mut digests, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Positions of the releases in the order edges follow, oldest first
    /// ([`crate::derive::update_order`]): the document's own order, except
    /// that derived releases go by their base's age first.
    pub fn update_order(&self) -> Vec<usize> {
        crate::derive::update_order(self)
    }

    /// Each release's age index in update order, by position in `releases`.
    /// This is the age index graphs, selection and `/v1/graph` use.
    pub fn update_ranks(&self) -> Vec<u64> {
        let mut ranks = vec![0; self.releases.len()];
        for (rank, position) in self.update_order().into_iter().enumerate() {
            ranks[position] = rank as u64;
        }
        ranks
    }

    /// The release with this version, with its age index in update order.
    pub fn release_in_update_order(&self, version: &str) -> Option<(u64, &Release)> {
        let (position, release) = self.release(version)?;
        let ranks = self.update_ranks();
        Some((ranks[position], release))
    }

    /// The release with this version, with its position in the document.
    pub fn release(&self, version: &str) -> Option<(usize, &Release)> {
        self.releases
            .iter()
            .enumerate()
            .find(|(_, release)| release.version == version)
    }

    /// Every architecture that some release has an entry for, sorted.
    pub fn architectures(&self) -> Vec<String> {
        let mut arches: Vec<String> = self
            .releases
            .iter()
            .flat_map(|release| release.architectures.keys().cloned())
            .collect();
        arches.sort();
        arches.dedup();
        arches
    }

    /// Rules that are legal but probably not what the publisher meant.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for release in &self.releases {
            if release.barrier.is_some() && release.deadend.is_some() {
                warnings.push(format!(
                    "release {}: a barrier that is also a dead-end stops every older host there",
                    release.version
                ));
            }
            if release.deadend.is_some() && release.rollout.is_some() {
                warnings.push(format!(
                    "release {}: dead-end with a rollout: Cairn agents never update to it, \
                     Cincinnati clients still see the edges",
                    release.version
                ));
            }
        }
        warnings
    }
}

fn validate_release(
    index: usize,
    release: &Release,
    digests: &mut HashMap<String, Location>,
    errors: &mut Vec<ValidationError>,
) {
    let at = |field: String| Location::release(index, release, field);
    for (arch, entry) in &release.architectures {
        let field = |name: &str| format!("architectures.{arch}.{name}");
        let mut check_digest = |value: &str, field: String| {
            if !is_sha256_digest(value) {
                errors.push(ValidationError::BadDigest {
                    at: at(field),
                    value: value.to_string(),
                });
            } else if let Some(first) = digests.get(value) {
                errors.push(ValidationError::DuplicateDigest {
                    at: at(field),
                    value: value.to_string(),
                    first: first.clone(),
                });
            } else {
                digests.insert(value.to_string(), at(field));
            }
        };
        if let Some(digest) = &entry.digest {
            check_digest(digest, field("digest"));
        }
        for (n, alias) in entry.aliases.iter().enumerate() {
            check_digest(alias, format!("architectures.{arch}.aliases[{n}]"));
        }
        if let Some(commit) = &entry.ostree {
            // Commits live in their own namespace, so prefix the key.
            let key = format!("ostree:{arch}:{commit}");
            if !is_ostree_commit(commit) {
                errors.push(ValidationError::BadCommit {
                    at: at(field("ostree")),
                    value: commit.clone(),
                });
            } else if let Some(first) = digests.get(&key) {
                errors.push(ValidationError::DuplicateDigest {
                    at: at(field("ostree")),
                    value: commit.clone(),
                    first: first.clone(),
                });
            } else {
                digests.insert(key, at(field("ostree")));
            }
        }
        if let Some(config) = &entry.config
            && !is_sha256_digest(config)
        {
            errors.push(ValidationError::BadDigest {
                at: at(field("config")),
                value: config.clone(),
            });
        }
        if entry.digest.is_none() {
            if entry.config.is_some() {
                errors.push(ValidationError::WithoutDigest {
                    at: at(field("config")),
                });
            }
            if !entry.aliases.is_empty() {
                errors.push(ValidationError::WithoutDigest {
                    at: at(field("aliases")),
                });
            }
        }
    }
    if let Some(base) = &release.base
        && !is_sha256_digest(&base.digest)
    {
        errors.push(ValidationError::BadDigest {
            at: at("base.digest".into()),
            value: base.digest.clone(),
        });
    }
    if let Some(rollout) = &release.rollout {
        validate_rollout(rollout, |field| at(format!("rollout.{field}")), errors);
    }
}

fn validate_rollout(
    rollout: &Rollout,
    at: impl Fn(&str) -> Location,
    errors: &mut Vec<ValidationError>,
) {
    if let Some(value) = rollout.start_percentage
        && !(0.0..=1.0).contains(&value)
    {
        errors.push(ValidationError::PercentageOutOfRange {
            at: at("start_percentage"),
            value,
        });
    }
    if let Some(minutes) = rollout.duration_minutes
        && minutes > MAX_ROLLOUT_MINUTES
    {
        errors.push(ValidationError::AbsurdDuration {
            at: at("duration_minutes"),
            minutes,
        });
    }
    if let Some(value) = rollout.start_epoch
        && !(0..=MAX_START_EPOCH).contains(&value)
    {
        errors.push(ValidationError::StartOutOfRange {
            at: at("start_epoch"),
            value,
        });
    }
}

/// For a path such as `releases[3].rollout.x`, the version of release 3.
fn release_version_at(value: &serde_json::Value, path: &str) -> Option<String> {
    let rest = path.strip_prefix("releases[")?;
    let index: usize = rest.split(']').next()?.parse().ok()?;
    let version = value
        .get("releases")?
        .get(index)?
        .get("version")?
        .as_str()?;
    Some(version.to_string())
}
