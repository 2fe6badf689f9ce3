//! Trust roots stored next to the graph document, and the walk a reader
//! makes from the root it holds to the newest one (docs/key-rotation.md).
//!
//! Every version is kept under its own tag, `cairn-root-<N>`, so a host that
//! was offline across several rotations can still step through each one: a
//! root is only ever accepted from its predecessor. A root is an OCI artifact
//! (the empty config, one layer holding the signed envelope), so registries,
//! `skopeo sync` and mirrors carry it like the document.

use crate::document::{ArtifactShape, EMPTY_JSON, artifact_layer_sized, artifact_manifest_json};
use crate::error::OciError;
use crate::reference::Location;
use crate::store::Store;
use crate::trust::{
    MAX_ROOT_BYTES, MAX_ROOT_WALK, ROOT_PAYLOAD_TYPE, RootError, SignedRoot, TrustedRoot,
};
use bytes::Bytes;
use jiff::Timestamp;
use std::path::Path;

/// The tag root version `version` is stored under.
pub fn root_tag(version: u64) -> String {
    format!("cairn-root-{version}")
}

/// Why a walk stopped short, or a root could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// A root was refused, or the final one has expired.
    #[error(transparent)]
    Root(#[from] RootError),
    /// The store could not be read or written.
    #[error("{what}: {error}")]
    Store {
        /// What was being read or written.
        what: String,
        /// Why it failed.
        error: OciError,
    },
    /// A tag holds something other than a root.
    #[error("{source_name} holds something other than a Cairn trust root: {reason}")]
    NotARoot {
        /// The tag read.
        source_name: String,
        /// What was found instead.
        reason: String,
    },
    /// The walk stopped at its cap before reaching the newest root: what the
    /// reader holds is not yet current, so nothing is trusted this check.
    #[error(
        "walked {MAX_ROOT_WALK} trust root versions, the most in one check, to version {version}; newer ones remain and the next check walks on"
    )]
    Behind {
        /// The version reached.
        version: u64,
    },
    /// A root version is published already, with other content.
    #[error(
        "{tag} already holds a different root; a published version is never replaced (publish the next version instead)"
    )]
    Replaced {
        /// The tag.
        tag: String,
    },
    /// The roots kept in a directory do not form a chain.
    #[error("{dir}: {message}")]
    Chain {
        /// The directory.
        dir: String,
        /// What is wrong.
        message: String,
    },
}

impl WalkError {
    /// A short fixed label for status and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            WalkError::Root(error) => error.kind(),
            WalkError::Store { .. } => "root_unreachable",
            WalkError::NotARoot { .. } => "root_not_a_root",
            WalkError::Behind { .. } => "root_behind",
            WalkError::Replaced { .. } => "root_replaced",
            WalkError::Chain { .. } => "root_chain",
        }
    }
}

fn store_error(what: String) -> impl FnOnce(OciError) -> WalkError {
    move |error| WalkError::Store { what, error }
}

/// Read root version `version` from `store`, if it is there.
pub async fn fetch_root(store: &Store, version: u64) -> Result<Option<SignedRoot>, WalkError> {
    let tag = root_tag(version);
    let source_name = format!("{}:{tag}", store.describe());
    let manifest = match store.get_manifest(&tag).await {
        Ok(manifest) => manifest,
        Err(OciError::NotFound(_)) => return Ok(None),
        Err(error) => return Err(store_error(source_name)(error)),
    };
    read_manifest(store, &manifest, &source_name)
        .await
        .map(Some)
}

async fn read_manifest(
    store: &Store,
    manifest: &crate::client::FetchedManifest,
    source_name: &str,
) -> Result<SignedRoot, WalkError> {
    let (layer, size) =
        artifact_layer_sized(manifest, source_name, ROOT_PAYLOAD_TYPE, MAX_ROOT_BYTES).map_err(
            |error| WalkError::NotARoot {
                source_name: source_name.to_string(),
                reason: error.to_string(),
            },
        )?;
    let bytes = store
        .get_blob_sized(&layer, size, MAX_ROOT_BYTES)
        .await
        .map_err(store_error(source_name.to_string()))?;
    Ok(SignedRoot::from_envelope(bytes, source_name)?)
}

/// What [`publish_root`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The root was written under its tag.
    Written,
    /// The tag held this very root already.
    AlreadyThere,
}

/// Store `root` under its tag. A tag that holds the same envelope is left
/// alone; one that holds another root is an error, never overwritten.
pub async fn publish_root(store: &Store, root: &SignedRoot) -> Result<Pushed, WalkError> {
    let tag = root_tag(root.version());
    let source_name = format!("{}:{tag}", store.describe());
    match store.get_manifest(&tag).await {
        Ok(manifest) => {
            let held = read_manifest(store, &manifest, &source_name).await;
            return match held {
                Ok(held) if held.envelope == root.envelope => Ok(Pushed::AlreadyThere),
                _ => Err(WalkError::Replaced { tag: source_name }),
            };
        }
        Err(OciError::NotFound(_)) => {}
        Err(error) => return Err(store_error(source_name)(error)),
    }
    let write = store_error(source_name.clone());
    let manifest = async {
        let config_digest = store.put_blob(Bytes::from_static(EMPTY_JSON)).await?;
        let layer_digest = store.put_blob(root.envelope.clone()).await?;
        let shape = ArtifactShape {
            media_type: ROOT_PAYLOAD_TYPE,
            title: format!("{tag}.json"),
            created: Timestamp::now(),
            annotations: vec![("dev.cairn.root.version", root.version().to_string())],
        };
        let manifest =
            artifact_manifest_json(&shape, &config_digest, &layer_digest, root.envelope.len())?;
        store
            .put_manifest(manifest, crate::client::OCI_MANIFEST, Some(&tag))
            .await
    }
    .await;
    manifest.map_err(write)?;
    Ok(Pushed::Written)
}

/// Store every root of `chain` (oldest first) the store lacks. Returns the
/// versions written.
pub async fn push_missing(store: &Store, chain: &[SignedRoot]) -> Result<Vec<u64>, WalkError> {
    let mut written = Vec::new();
    for root in chain {
        if publish_root(store, root).await? == Pushed::Written {
            written.push(root.version());
        }
    }
    Ok(written)
}

/// Where a walk ended.
#[derive(Debug)]
pub struct Walked {
    /// The newest root verified: store it, whatever else happened.
    pub root: TrustedRoot,
    /// The versions taken on this walk, in order.
    pub adopted: Vec<u64>,
    /// Why the walk stopped short, or why the final root cannot be trusted
    /// (expired). `None`: the root is the newest there is, and current.
    pub refused: Option<WalkError>,
    /// Something people should know that is not a refusal: a source that
    /// carries no chain.
    pub note: Option<String>,
}

impl Walked {
    /// The root to verify with, or why there is none.
    pub fn trusted(&self) -> Result<&TrustedRoot, &WalkError> {
        match &self.refused {
            None => Ok(&self.root),
            Some(error) => Err(error),
        }
    }
}

/// Walk from `held` to the newest root in `store`: ask for version N+1 by
/// tag (one HEAD when there is none), take it only if [`TrustedRoot::accept_next`]
/// does, and go on, at most [`MAX_ROOT_WALK`] versions per call.
pub async fn walk(store: &Store, held: &TrustedRoot, now: Timestamp) -> Walked {
    let mut root = held.clone();
    let mut adopted = Vec::new();
    let mut refused = None;
    while let Some(next) = root.version().checked_add(1) {
        let tag = root_tag(next);
        let source_name = format!("{}:{tag}", store.describe());
        // The cheap question first: most checks find no new root.
        match store.resolve(&tag).await {
            Ok(None) => break,
            Ok(Some(_)) => {}
            Err(error) => {
                refused = Some(store_error(source_name)(error));
                break;
            }
        }
        if adopted.len() as u64 >= MAX_ROOT_WALK {
            // Not current yet: a key a newer root dropped may still count
            // under this one, so nothing is trusted until the walk is done.
            refused = Some(WalkError::Behind {
                version: root.version(),
            });
            break;
        }
        let signed = match fetch_root(store, next).await {
            Ok(Some(signed)) => signed,
            // Gone between the two requests: as if it never was.
            Ok(None) => break,
            Err(error) => {
                refused = Some(error);
                break;
            }
        };
        match root.accept_next(signed, &source_name) {
            Ok(taken) => {
                adopted.push(taken.version());
                root = taken;
            }
            Err(error) => {
                refused = Some(error.into());
                break;
            }
        }
    }
    if refused.is_none()
        && let Err(error) = root.check_expiry(now)
    {
        refused = Some(error.into());
    }
    Walked {
        root,
        adopted,
        refused,
        note: None,
    }
}

/// [`walk`] in the repository or layout a document's location names. A file
/// or URL carries no chain: the held root stays, and the note says so.
pub async fn walk_location(
    location: &Location,
    client: &crate::client::RegistryClient,
    held: &TrustedRoot,
    now: Timestamp,
) -> Walked {
    walk_location_in(
        location,
        &crate::readers::Readers::builtin(client.clone()),
        held,
        now,
    )
    .await
}

/// [`walk_location`], reading a registry location with `readers` (through
/// the image proxy when it has one).
pub async fn walk_location_in(
    location: &Location,
    readers: &crate::readers::Readers,
    held: &TrustedRoot,
    now: Timestamp,
) -> Walked {
    let store = match location {
        Location::Registry(reference) => readers.store(&reference.repository),
        Location::Layout { path, .. } => match crate::layout::Layout::open(path) {
            Ok(layout) => Store::Layout(layout),
            Err(error) => {
                return Walked {
                    root: held.clone(),
                    adopted: Vec::new(),
                    refused: Some(store_error(location.to_string())(error)),
                    note: None,
                };
            }
        },
        Location::File(_) | Location::Url(_) => {
            let refused = held.check_expiry(now).err().map(WalkError::from);
            return Walked {
                root: held.clone(),
                adopted: Vec::new(),
                refused,
                note: Some(format!(
                    "{location} carries no trust root chain: trust root version {} is used as held",
                    held.version()
                )),
            };
        }
    };
    walk(&store, held, now).await
}

/// Read a root file, at most one byte more than a root may hold, so that
/// [`SignedRoot::from_envelope`] refuses a larger one without it being read
/// whole.
pub fn read_root_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_ROOT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The file name root version `version` is kept under in a release team's
/// directory of roots.
pub fn root_file_name(version: u64) -> String {
    format!("{version}.root.json")
}

/// Read the roots kept in `dir` (`<N>.root.json`), oldest first, and check
/// they form a chain from version 1: each version one more than the last and
/// accepted by its predecessor.
pub fn read_chain_dir(dir: &Path) -> Result<Vec<SignedRoot>, WalkError> {
    let chain_error = |message: String| WalkError::Chain {
        dir: dir.display().to_string(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| chain_error(e.to_string()))?;
    let mut found: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| chain_error(e.to_string()))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(number) = name.strip_suffix(".root.json") else {
            continue;
        };
        let version = number
            .parse::<u64>()
            .map_err(|_| chain_error(format!("{name}: expected <version>.root.json")))?;
        found.push((version, path));
    }
    found.sort();
    if let Some(pair) = found.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(chain_error(format!(
            "{} and {} both hold version {}: keep one file per version",
            pair[0].1.display(),
            pair[1].1.display(),
            pair[0].0
        )));
    }
    if found.is_empty() {
        return Err(chain_error(
            "holds no root (<version>.root.json); `cairn root init` writes the first".into(),
        ));
    }
    let mut chain: Vec<SignedRoot> = Vec::new();
    let mut trusted: Option<TrustedRoot> = None;
    for (expected, (version, path)) in (1u64..).zip(found) {
        let name = path.display().to_string();
        if version != expected {
            return Err(chain_error(format!(
                "root version {expected} is missing: the chain must run from 1 without a gap"
            )));
        }
        let bytes = read_root_file(&path).map_err(|e| chain_error(format!("{name}: {e}")))?;
        if bytes.len() > MAX_ROOT_BYTES {
            return Err(chain_error(format!(
                "{name}: larger than {MAX_ROOT_BYTES} bytes"
            )));
        }
        let signed = SignedRoot::from_envelope(Bytes::from(bytes), &name)?;
        if signed.version() != version {
            return Err(chain_error(format!(
                "{name} holds root version {}",
                signed.version()
            )));
        }
        let next = match &trusted {
            // The first root has no predecessor here; it must at least meet
            // its own root threshold, as every later one does.
            None => {
                let first = TrustedRoot::pin(signed.clone())?;
                first
                    .role(crate::trust::Role::Root)
                    .check(&signed.signatures)
                    .map_err(|shortfall| RootError::Unsigned {
                        source_name: name.clone(),
                        version,
                        signer_version: version,
                        shortfall,
                    })?;
                first
            }
            Some(previous) => previous.accept_next(signed.clone(), &name)?,
        };
        trusted = Some(next);
        chain.push(signed);
    }
    Ok(chain)
}
