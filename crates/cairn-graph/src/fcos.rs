//! Fedora CoreOS metadata: the release index (`releases.json`) and the updates
//! file (`updates/<stream>.json`, current and pre-2019-09 shapes).
//!
//! Two things are built from them: the graph Fedora's own graph builder would
//! serve ([`build_graph`]) and a Cairn document that carries the same
//! information ([`to_document`]), so a stream can move to Cairn without loss.

use crate::digest::TargetId;
use crate::document::{ArchEntry, GraphDocument, Reason, Release, SCHEMA_VERSION};
use crate::graph::{Node, Scheme, UpdateGraph};
use crate::rollout::Rollout;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fedora's release index. Unknown fields are ignored, as Fedora's server does.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ReleaseIndex {
    /// The stream, when the index names it.
    #[serde(default)]
    pub stream: Option<String>,
    /// Releases, oldest first.
    pub releases: Vec<IndexRelease>,
}

/// One release of the index.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct IndexRelease {
    /// ostree commits per architecture; absent on OCI-only releases.
    #[serde(default)]
    pub commits: Option<Vec<Commit>>,
    /// Container images per architecture; present from late 2024 on.
    #[serde(default, rename = "oci-images")]
    pub oci_images: Option<Vec<OciImage>>,
    /// Release version.
    pub version: String,
    /// URL of the release metadata.
    #[serde(default)]
    pub metadata: Option<String>,
}

/// An ostree commit of one architecture.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Commit {
    /// Architecture.
    pub architecture: String,
    /// Commit checksum.
    pub checksum: String,
}

/// A container image of one architecture.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct OciImage {
    /// Architecture.
    pub architecture: String,
    /// The tag it was pushed as.
    #[serde(default)]
    pub image: String,
    /// `repository@sha256:...` of the per-architecture manifest.
    #[serde(rename = "digest-ref")]
    pub digest_ref: String,
}

/// The updates file, normalised to the current shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Updates {
    /// The stream, when the file names it.
    pub stream: Option<String>,
    /// Entries in file order.
    pub releases: Vec<UpdateEntry>,
}

/// Barrier, dead-end and rollout settings of one version.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct UpdateEntry {
    /// The version they apply to.
    pub version: String,
    /// The settings.
    pub metadata: UpdateMetadata,
}

/// The settings of an updates entry.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct UpdateMetadata {
    /// Barrier, with its reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barrier: Option<RequiredReason>,
    /// Dead-end, with its reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadend: Option<RequiredReason>,
    /// Rollout parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Cairn's own: the minutes a paused rollout had left, which `cairn
    /// policy rollout resume` grows it over again. Fedora's tools ignore it.
    #[serde(
        default,
        rename = "cairn_resume_minutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub resume_minutes: Option<u64>,
    /// Cairn's own: halts of this version made at or before this time are
    /// cleared (`cairn policy halt clear`); `cairn publish` records their ids
    /// in the document. A halt made later stays in force.
    #[serde(
        default,
        rename = "cairn_halt_cleared",
        skip_serializing_if = "Option::is_none"
    )]
    pub halt_cleared: Option<Timestamp>,
}

/// Fedora requires `reason` inside `barrier` and `deadend`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct RequiredReason {
    /// The reason.
    pub reason: String,
}

/// Why Fedora metadata could not be read or converted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FcosError {
    /// The JSON has the wrong shape; `path` names the field.
    #[error("field `{path}`: {message}")]
    Shape {
        /// JSON path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An image of another repository than the document's.
    #[error(
        "release {version} ({arch}): digest-ref {digest_ref:?} is not in repository {repository:?}"
    )]
    ForeignRepository {
        /// Release.
        version: String,
        /// Architecture.
        arch: String,
        /// The reference found.
        digest_ref: String,
        /// The document's repository.
        repository: String,
    },
    /// A commit checksum or image digest that is not a valid id.
    #[error("releases.json: `{path}` (release {version}): {error}")]
    InvalidId {
        /// JSON path of the field.
        path: String,
        /// Release.
        version: String,
        /// What is wrong with it.
        error: crate::digest::InvalidId,
    },
    /// A `digest-ref` without `@digest`.
    #[error("release {version} ({arch}): digest-ref {digest_ref:?} has no @digest")]
    NoDigest {
        /// Release.
        version: String,
        /// Architecture.
        arch: String,
        /// The reference found.
        digest_ref: String,
    },
}

impl FcosError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            FcosError::Shape { .. } => "shape",
            FcosError::ForeignRepository { .. } => "foreign_repository",
            FcosError::NoDigest { .. } => "no_digest",
            FcosError::InvalidId { .. } => "invalid_id",
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FcosError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| FcosError::Shape {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
    // Nothing but whitespace may follow the JSON.
    deserializer.end().map_err(|e| FcosError::Shape {
        path: ".".to_string(),
        message: e.to_string(),
    })?;
    Ok(value)
}

fn from_value<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, FcosError> {
    serde_path_to_error::deserialize(value).map_err(|e| FcosError::Shape {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

impl ReleaseIndex {
    /// Parse `releases.json`.
    pub fn from_json(bytes: &[u8]) -> Result<ReleaseIndex, FcosError> {
        let index: ReleaseIndex = from_json(bytes)?;
        index.check_ids()?;
        Ok(index)
    }

    /// Every checksum and digest becomes a host tool's argument one day:
    /// refuse the whole file if any of them is not a valid id.
    fn check_ids(&self) -> Result<(), FcosError> {
        for (r, release) in self.releases.iter().enumerate() {
            let invalid = |path: String, error| FcosError::InvalidId {
                path,
                version: release.version.clone(),
                error,
            };
            for (c, commit) in release.commits.iter().flatten().enumerate() {
                if !commit.checksum.is_empty() {
                    TargetId::checksum(&commit.checksum)
                        .map_err(|e| invalid(format!("releases[{r}].commits[{c}].checksum"), e))?;
                }
            }
            for (i, image) in release.oci_images.iter().flatten().enumerate() {
                if !image.digest_ref.is_empty() {
                    TargetId::of_pullspec(&image.digest_ref).map_err(|e| {
                        invalid(format!("releases[{r}].oci-images[{i}].digest-ref"), e)
                    })?;
                }
            }
        }
        Ok(())
    }
}

impl IndexRelease {
    /// The payload for one architecture and scheme: `(id, payload)`.
    /// When several entries match, the last one wins, as in Fedora's builder.
    /// An entry whose id is not valid (possible only in an index built by
    /// hand, not parsed) is left out rather than passed on.
    fn payload(&self, arch: &str, scheme: Scheme) -> Option<(TargetId, String)> {
        match scheme {
            Scheme::Checksum => self
                .commits
                .iter()
                .flatten()
                .rfind(|c| c.architecture == arch && !c.checksum.is_empty())
                .and_then(|c| Some((TargetId::checksum(&c.checksum).ok()?, c.checksum.clone()))),
            Scheme::Oci => self
                .oci_images
                .iter()
                .flatten()
                .rfind(|i| i.architecture == arch && !i.digest_ref.is_empty())
                .and_then(|i| {
                    Some((
                        TargetId::of_pullspec(&i.digest_ref).ok()?,
                        i.digest_ref.clone(),
                    ))
                }),
        }
    }
}

/// The pre-2019-09 shape: separate lists, numbers written as strings.
#[derive(Deserialize)]
struct LegacyUpdates {
    #[serde(default)]
    barriers: Vec<LegacyReason>,
    #[serde(default)]
    deadends: Vec<LegacyReason>,
    #[serde(default)]
    rollouts: Vec<LegacyRollout>,
}

#[derive(Deserialize)]
struct LegacyReason {
    version: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct LegacyRollout {
    version: String,
    #[serde(default)]
    start_epoch: Option<LooseNumber>,
    #[serde(default)]
    start_value: Option<LooseNumber>,
    #[serde(default)]
    duration_minutes: Option<LooseNumber>,
}

/// A number that may be written as a JSON string.
#[derive(Deserialize)]
#[serde(untagged)]
enum LooseNumber {
    Number(serde_json::Number),
    Text(String),
}

impl LooseNumber {
    fn parse<T: std::str::FromStr>(&self, version: &str, field: &str) -> Result<T, FcosError> {
        let text = match self {
            LooseNumber::Number(n) => n.to_string(),
            LooseNumber::Text(t) => t.trim().to_string(),
        };
        text.parse().map_err(|_| FcosError::Shape {
            path: format!("updates.rollouts[{version}].{field}"),
            message: format!("{text:?} is not a valid number"),
        })
    }
}

impl Updates {
    /// The current shape as pretty JSON, with `metadata.last-modified` set.
    pub fn to_json_pretty(&self, last_modified: Timestamp) -> String {
        let value = serde_json::json!({
            "stream": self.stream.clone().unwrap_or_default(),
            "metadata": {"last-modified": last_modified.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()},
            "releases": self.releases,
        });
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The entry for a version, created (empty) at the end if missing.
    pub fn entry_mut(&mut self, version: &str) -> &mut UpdateEntry {
        let position = match self.releases.iter().rposition(|e| e.version == version) {
            Some(position) => position,
            None => {
                self.releases.push(UpdateEntry {
                    version: version.to_string(),
                    metadata: UpdateMetadata::default(),
                });
                self.releases.len() - 1
            }
        };
        &mut self.releases[position]
    }

    /// The merged settings of a version, if the file mentions it at all.
    pub fn settings(&self, version: &str) -> Option<UpdateMetadata> {
        self.releases
            .iter()
            .any(|e| e.version == version)
            .then(|| settings_for(self, version))
    }

    /// Parse an updates file in the current or the legacy shape.
    pub fn from_json(bytes: &[u8]) -> Result<Updates, FcosError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| FcosError::Shape {
                path: ".".into(),
                message: e.to_string(),
            })?;
        // Pick the shape by its top-level key, then parse so errors name a field.
        if value.get("releases").is_none() && value.get("updates").is_some() {
            let legacy: LegacyShape = from_value(&value)?;
            return legacy.updates.normalise();
        }
        let current: CurrentShape = from_value(&value)?;
        Ok(Updates {
            stream: current.stream,
            releases: current.releases,
        })
    }
}

#[derive(Deserialize)]
struct CurrentShape {
    #[serde(default)]
    stream: Option<String>,
    releases: Vec<UpdateEntry>,
}

#[derive(Deserialize)]
struct LegacyShape {
    updates: LegacyUpdates,
}

impl LegacyUpdates {
    fn normalise(self) -> Result<Updates, FcosError> {
        let mut releases = Vec::new();
        for barrier in self.barriers {
            releases.push(UpdateEntry {
                version: barrier.version,
                metadata: UpdateMetadata {
                    barrier: Some(RequiredReason {
                        reason: barrier.reason,
                    }),
                    ..UpdateMetadata::default()
                },
            });
        }
        for deadend in self.deadends {
            releases.push(UpdateEntry {
                version: deadend.version,
                metadata: UpdateMetadata {
                    deadend: Some(RequiredReason {
                        reason: deadend.reason,
                    }),
                    ..UpdateMetadata::default()
                },
            });
        }
        for rollout in self.rollouts {
            let v = &rollout.version;
            let parsed = Rollout {
                start_epoch: rollout
                    .start_epoch
                    .map(|n| n.parse(v, "start_epoch"))
                    .transpose()?,
                start_percentage: rollout
                    .start_value
                    .map(|n| n.parse(v, "start_value"))
                    .transpose()?,
                duration_minutes: rollout
                    .duration_minutes
                    .map(|n| n.parse(v, "duration_minutes"))
                    .transpose()?,
            };
            releases.push(UpdateEntry {
                version: rollout.version,
                metadata: UpdateMetadata {
                    rollout: Some(parsed),
                    ..UpdateMetadata::default()
                },
            });
        }
        Ok(Updates {
            stream: None,
            releases,
        })
    }
}

/// The merged settings of a version: every entry for it applies, later ones win.
fn settings_for(updates: &Updates, version: &str) -> UpdateMetadata {
    let mut merged = UpdateMetadata::default();
    for entry in updates.releases.iter().filter(|e| e.version == version) {
        if let Some(barrier) = &entry.metadata.barrier {
            merged.barrier = Some(barrier.clone());
        }
        if let Some(deadend) = &entry.metadata.deadend {
            merged.deadend = Some(deadend.clone());
        }
        if let Some(minutes) = entry.metadata.resume_minutes {
            merged.resume_minutes = Some(minutes);
        }
        if let Some(cleared) = entry.metadata.halt_cleared {
            merged.halt_cleared = Some(cleared);
        }
        if let Some(rollout) = &entry.metadata.rollout {
            // Fedora inserts each present key, so later entries override per field.
            let old = merged.rollout.unwrap_or_default();
            merged.rollout = Some(Rollout {
                start_epoch: rollout.start_epoch.or(old.start_epoch),
                start_percentage: rollout.start_percentage.or(old.start_percentage),
                duration_minutes: rollout.duration_minutes.or(old.duration_minutes),
            });
        }
    }
    merged
}

/// The graph Fedora's graph builder serves for one architecture and scheme.
/// A release whose payload an older release already has is left out: a
/// host booted on it could not tell the two apart, and would be offered
/// the other as an update to what it runs.
pub fn build_graph(
    index: &ReleaseIndex,
    updates: &Updates,
    basearch: &str,
    scheme: Scheme,
) -> UpdateGraph {
    let mut seen = std::collections::HashSet::new();
    let nodes = index
        .releases
        .iter()
        .enumerate()
        .filter_map(|(age, release)| {
            let (id, payload) = release.payload(basearch, scheme)?;
            if !seen.insert(id.clone()) {
                return None;
            }
            let settings = settings_for(updates, &release.version);
            Some(Node {
                version: release.version.clone(),
                age_index: age as u64,
                payload,
                id,
                aliases: Vec::new(),
                config: None,
                available: true,
                barrier: settings.barrier.map(|b| b.reason),
                deadend: settings.deadend.map(|d| d.reason),
                rollout: settings.rollout,
                base_age: None,
            })
        })
        .collect();
    UpdateGraph::from_nodes(scheme, nodes)
}

/// Fedora's map of boot-image digests: version, then architecture, then the
/// digest the release really has (`good`) and the one some boot images carry (`bad`).
pub type BootImageDigests = BTreeMap<String, BTreeMap<String, GoodBad>>;

/// The two digests of one release and architecture.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GoodBad {
    /// The release's real manifest digest.
    pub good: String,
    /// The digest hosts installed from the affected boot images report.
    pub bad: String,
}

/// Parse Fedora's boot-image digest map.
pub fn parse_boot_image_digests(bytes: &[u8]) -> Result<BootImageDigests, FcosError> {
    from_json(bytes)
}

/// What [`to_document`] needs besides the Fedora files.
#[derive(Debug, Clone)]
pub struct ConvertOptions<'a> {
    /// The image repository for the document.
    pub repository: &'a str,
    /// Carry image digests (`true`) or ostree commits (`false`).
    pub oci: bool,
    /// Boot-image digests to record as aliases.
    pub aliases: Option<&'a BootImageDigests>,
    /// Sequence number of the new document.
    pub sequence: u64,
    /// Issue time.
    pub issued: Timestamp,
    /// Expiry time.
    pub expires: Timestamp,
}

/// A converted document plus notes for the operator.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The document (not yet validated; call `validate`).
    pub document: GraphDocument,
    /// Things that did not carry over, one sentence each.
    pub warnings: Vec<String>,
}

/// A Cairn document with the releases, payloads and policy of Fedora's files.
pub fn to_document(
    index: &ReleaseIndex,
    updates: &Updates,
    options: &ConvertOptions<'_>,
) -> Result<Converted, FcosError> {
    let mut warnings = Vec::new();
    let mut releases = Vec::with_capacity(index.releases.len());
    for release in &index.releases {
        let settings = settings_for(updates, &release.version);
        releases.push(Release {
            version: release.version.clone(),
            architectures: convert_entries(release, options, &mut warnings)?,
            base: None,
            barrier: settings.barrier.map(|b| Reason::new(b.reason)),
            deadend: settings.deadend.map(|d| Reason::new(d.reason)),
            rollout: settings.rollout,
        });
    }
    for entry in &updates.releases {
        if !index.releases.iter().any(|r| r.version == entry.version) {
            warnings.push(format!(
                "updates entry for {} names no release in the index; Fedora ignores it too",
                entry.version
            ));
        }
    }
    let stream = updates
        .stream
        .clone()
        .or_else(|| index.stream.clone())
        .unwrap_or_default();
    Ok(Converted {
        document: GraphDocument {
            schema: SCHEMA_VERSION,
            stream,
            repository: options.repository.to_string(),
            sequence: options.sequence,
            issued: options.issued,
            expires: options.expires,
            releases,
            base: None,
            halts: None,
            root_version: 0,
        },
        warnings,
    })
}

fn convert_entries(
    release: &IndexRelease,
    options: &ConvertOptions<'_>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, ArchEntry>, FcosError> {
    let mut entries: BTreeMap<String, ArchEntry> = BTreeMap::new();
    if !options.oci {
        for commit in release.commits.iter().flatten() {
            if !commit.checksum.is_empty() {
                entries.insert(
                    commit.architecture.clone(),
                    ArchEntry::ostree(&commit.checksum),
                );
            }
        }
        return Ok(entries);
    }
    for image in release.oci_images.iter().flatten() {
        if image.digest_ref.is_empty() {
            continue;
        }
        let (repository, digest) =
            image
                .digest_ref
                .rsplit_once('@')
                .ok_or_else(|| FcosError::NoDigest {
                    version: release.version.clone(),
                    arch: image.architecture.clone(),
                    digest_ref: image.digest_ref.clone(),
                })?;
        if repository != options.repository {
            return Err(FcosError::ForeignRepository {
                version: release.version.clone(),
                arch: image.architecture.clone(),
                digest_ref: image.digest_ref.clone(),
                repository: options.repository.to_string(),
            });
        }
        entries.insert(image.architecture.clone(), ArchEntry::image(digest));
    }
    let boot_images = options
        .aliases
        .and_then(|aliases| aliases.get(&release.version));
    for (arch, pair) in boot_images.into_iter().flatten() {
        match entries.get_mut(arch) {
            Some(entry) if entry.digest.as_deref() == Some(pair.good.as_str()) => {
                entry.aliases.push(pair.bad.clone());
            }
            _ => warnings.push(format!(
                "boot-image alias for {} ({arch}) skipped: the release has no image with digest {}",
                release.version, pair.good
            )),
        }
    }
    Ok(entries)
}
