//! `rpm-ostree status --json`.

use super::{Deployment, HostStatus, SignatureMode, StatusError, Tool};
use cairn_graph::digest::TargetId;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Status {
    deployments: Vec<RawDeployment>,
    #[serde(rename = "update-driver")]
    update_driver: Option<Driver>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Driver {
    #[serde(rename = "driver-name")]
    name: Option<String>,
    #[serde(rename = "driver-sd-unit")]
    unit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawDeployment {
    booted: bool,
    staged: bool,
    #[serde(rename = "finalization-locked")]
    finalization_locked: bool,
    checksum: Option<String>,
    version: Option<String>,
    #[serde(rename = "container-image-reference")]
    image: Option<String>,
    #[serde(rename = "container-image-reference-digest")]
    digest: Option<String>,
    /// The ostree branch, for a deployment of a commit (not of an image).
    origin: Option<String>,
    /// The commit the local layering was built on, when there is layering:
    /// the graph knows the base, not the layered commit.
    #[serde(rename = "base-checksum")]
    base_checksum: Option<String>,
    osname: Option<String>,
    serial: u32,
}

impl RawDeployment {
    /// The graph's id: the image's digest, or for a deployment of an ostree
    /// commit, its base commit's checksum (checked like every other id).
    fn id(&self) -> Option<TargetId> {
        if self.image.is_some() || self.origin.is_none() {
            return super::checked_digest("rpm-ostree", self.digest.as_deref());
        }
        let checksum = self.base_checksum.as_deref().or(self.checksum.as_deref())?;
        match TargetId::checksum(checksum) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "rpm-ostree's status names a commit checksum that is not valid; ignoring it");
                None
            }
        }
    }

    fn deployment(&self) -> Deployment {
        Deployment {
            digest: self.id(),
            version: self.version.clone(),
            checksum: self.checksum.clone(),
            image: self.image.clone(),
            download_only: self.staged && self.finalization_locked,
            incompatible: false,
            deploy_path: super::ostree_deploy_path(
                self.osname.as_deref().unwrap_or("default"),
                self.checksum.as_deref().unwrap_or_default(),
                self.serial,
            ),
        }
    }
}

/// The transport prefix of an rpm-ostree image reference, and the image.
/// `ostree-image-signed:docker://quay.io/x:tag` → (ContainerPolicy, `quay.io/x:tag`).
pub fn split_reference(reference: &str) -> (SignatureMode, String) {
    let strip = |rest: &str| {
        rest.trim_start_matches("docker://")
            .trim_start_matches("registry:")
            .to_string()
    };
    if let Some(rest) = reference.strip_prefix("ostree-image-signed:") {
        (SignatureMode::ContainerPolicy, strip(rest))
    } else if let Some(rest) = reference.strip_prefix("ostree-unverified-registry:") {
        (SignatureMode::Unverified, rest.to_string())
    } else if let Some(rest) = reference.strip_prefix("ostree-unverified-image:") {
        (SignatureMode::Unverified, strip(rest))
    } else if let Some(rest) = reference.strip_prefix("ostree-remote-image:") {
        // ostree-remote-image:<remote>:docker://<image>
        match rest.split_once(':') {
            Some((remote, image)) => (
                SignatureMode::OstreeRemote(remote.to_string()),
                strip(image),
            ),
            None => (SignatureMode::Unverified, rest.to_string()),
        }
    } else {
        (SignatureMode::Unverified, reference.to_string())
    }
}

/// Parse rpm-ostree's status JSON.
pub fn parse_status(bytes: &[u8]) -> Result<HostStatus, StatusError> {
    let status: Status = serde_json::from_slice(bytes).map_err(|e| StatusError {
        tool: "rpm-ostree",
        message: e.to_string(),
    })?;
    let booted_index = status.deployments.iter().position(|d| d.booted);
    let staged = status.deployments.iter().find(|d| d.staged);
    // The rollback is the first deployment after the booted one that is neither booted nor staged.
    let rollback = booted_index.and_then(|i| {
        status.deployments[i + 1..]
            .iter()
            .find(|d| !d.booted && !d.staged)
    });
    let booted = booted_index.map(|i| &status.deployments[i]);
    let (signature, followed) = match booted.and_then(|d| d.image.as_deref()) {
        Some(reference) => {
            let (mode, image) = split_reference(reference);
            (mode, Some(image))
        }
        None => (SignatureMode::Unverified, None),
    };
    Ok(HostStatus {
        tool: Tool::RpmOstree,
        booted: booted.map(RawDeployment::deployment),
        staged: staged.map(RawDeployment::deployment),
        rollback: rollback.map(RawDeployment::deployment),
        followed,
        // Only a deployment of a commit has an ostree origin; an image's is
        // its container reference.
        ostree_origin: booted
            .filter(|d| d.image.is_none())
            .and_then(|d| d.origin.clone()),
        signature,
        update_driver_unit: status.update_driver.as_ref().and_then(|d| d.unit.clone()),
        update_driver: status.update_driver.and_then(|d| d.name),
    })
}
