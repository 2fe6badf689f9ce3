//! `bootc status --format=json --format-version=1`.

use super::{Deployment, HostStatus, SignatureMode, StatusError, Tool};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Host {
    api_version: String,
    spec: Spec,
    status: Status,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    image: Option<ImageReference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ImageReference {
    image: String,
    transport: String,
    signature: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Status {
    staged: Option<BootEntry>,
    booted: Option<BootEntry>,
    rollback: Option<BootEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BootEntry {
    image: Option<ImageStatus>,
    download_only: bool,
    incompatible: bool,
    ostree: Option<Ostree>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ImageStatus {
    image: ImageReference,
    version: Option<String>,
    image_digest: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Ostree {
    checksum: Option<String>,
    deploy_serial: u32,
    stateroot: Option<String>,
}

impl BootEntry {
    fn deployment(&self) -> Deployment {
        Deployment {
            digest: super::checked_digest(
                "bootc",
                self.image.as_ref().and_then(|i| i.image_digest.as_deref()),
            ),
            version: self.image.as_ref().and_then(|i| i.version.clone()),
            checksum: self.ostree.as_ref().and_then(|o| o.checksum.clone()),
            image: self.image.as_ref().map(|i| i.image.image.clone()),
            download_only: self.download_only,
            incompatible: self.incompatible,
            deploy_path: self.ostree.as_ref().and_then(|o| {
                super::ostree_deploy_path(
                    o.stateroot.as_deref().unwrap_or("default"),
                    o.checksum.as_deref()?,
                    o.deploy_serial,
                )
            }),
        }
    }
}

/// Parse bootc's status JSON (API `org.containers.bootc/v1`, older `v1alpha1` too).
pub fn parse_status(bytes: &[u8]) -> Result<HostStatus, StatusError> {
    let host: Host = serde_json::from_slice(bytes).map_err(|e| StatusError {
        tool: "bootc",
        message: e.to_string(),
    })?;
    if !host.api_version.starts_with("org.containers.bootc/") {
        return Err(StatusError {
            tool: "bootc",
            message: format!("unexpected apiVersion {:?}", host.api_version),
        });
    }
    // Signature mode from the spec; containers-policy is a string, an ostree
    // remote an object, and an absent field means no verification.
    let signature = match host.spec.image.as_ref().and_then(|i| i.signature.as_ref()) {
        Some(serde_json::Value::String(s)) if s == "containerPolicy" => {
            SignatureMode::ContainerPolicy
        }
        Some(serde_json::Value::Object(map)) => {
            match map.get("ostreeRemote").and_then(|v| v.as_str()) {
                Some(remote) => SignatureMode::OstreeRemote(remote.to_string()),
                None => SignatureMode::Unverified,
            }
        }
        _ => SignatureMode::Unverified,
    };
    let followed = host
        .spec
        .image
        .as_ref()
        .filter(|i| i.transport.is_empty() || i.transport == "registry")
        .map(|i| i.image.clone());
    Ok(HostStatus {
        tool: Tool::Bootc,
        booted: host.status.booted.as_ref().map(BootEntry::deployment),
        staged: host.status.staged.as_ref().map(BootEntry::deployment),
        rollback: host.status.rollback.as_ref().map(BootEntry::deployment),
        ostree_origin: None,
        followed,
        signature,
        update_driver: None,
        update_driver_unit: None,
    })
}
