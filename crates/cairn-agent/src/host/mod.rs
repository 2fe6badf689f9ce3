//! The host: what is booted, staged and kept for rollback, as bootc or
//! rpm-ostree report it, in one shape the agent's decisions use.
//!
//! Parsing is lenient (unknown fields ignored, missing ones defaulted), as
//! bootc's own API types are: a newer host tool must not blind the agent.

use cairn_graph::digest::TargetId;

pub mod bootc;
pub mod driver;
pub mod probe;
pub mod rpm_ostree;

/// Which tool drives the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `bootc`.
    Bootc,
    /// `rpm-ostree`.
    RpmOstree,
}

/// How the host verifies the images it pulls; kept when staging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureMode {
    /// containers-policy.json applies (`--enforce-container-sigpolicy`).
    ContainerPolicy,
    /// An ostree remote's keys.
    OstreeRemote(String),
    /// No verification.
    Unverified,
}

/// One deployment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deployment {
    /// The id the update graph knows the deployment by: the per-architecture
    /// manifest digest of an image deployment, or the (base) commit checksum
    /// of a deployment of an ostree commit. `None` when the tool reported
    /// something that is not a valid id.
    pub digest: Option<TargetId>,
    /// The version label.
    pub version: Option<String>,
    /// The ostree commit.
    pub checksum: Option<String>,
    /// The image reference as the tool records it.
    pub image: Option<String>,
    /// Staged with finalization locked (download only).
    pub download_only: bool,
    /// bootc cannot manage it (rpm-ostree layering); use rpm-ostree.
    pub incompatible: bool,
    /// Where its tree is, relative to the sysroot:
    /// `ostree/deploy/<stateroot>/deploy/<checksum>.<serial>`. `None` on the
    /// composefs backend, which has no such directory.
    pub deploy_path: Option<String>,
}

/// A digest from a host tool's status, checked like every other id: one that
/// is not valid is dropped (and logged), never passed back to a tool.
pub fn checked_digest(tool: &str, value: Option<&str>) -> Option<TargetId> {
    let value = value?;
    match TargetId::digest(value) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(tool, error = %e, "the host status names an image digest that is not valid; ignoring it");
            None
        }
    }
}

/// The systemd service this process runs in, from `/proc/self/cgroup`.
pub fn own_systemd_unit() -> Option<String> {
    unit_of_cgroup(&std::fs::read_to_string("/proc/self/cgroup").ok()?)
}

/// The service named by a cgroup file's unified (`0::`) line, if it ends in one.
pub fn unit_of_cgroup(text: &str) -> Option<String> {
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let last = path.trim_end().rsplit('/').next()?;
    last.ends_with(".service").then(|| last.to_string())
}

/// Whether Cairn must register (again) as rpm-ostree's update driver: it is
/// not the driver, or it registered from another unit than the one it runs
/// in now (older agents did so from a transient `systemd-run` unit, which
/// rpm-ostree stops honouring as soon as that unit ends).
pub fn needs_driver_registration(status: &HostStatus, own_unit: Option<&str>) -> bool {
    if status.update_driver.as_deref() != Some("Cairn") {
        return true;
    }
    match (status.update_driver_unit.as_deref(), own_unit) {
        (Some(registered), Some(own)) => registered != own,
        (Some(registered), None) => registered.starts_with("run-"),
        (None, _) => false,
    }
}

/// The ostree deployment directory of a checksum, relative to the sysroot.
pub fn ostree_deploy_path(stateroot: &str, checksum: &str, serial: u32) -> Option<String> {
    // Names from a status file become a path: refuse anything but plain names.
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    (plain(stateroot) && plain(checksum))
        .then(|| format!("ostree/deploy/{stateroot}/deploy/{checksum}.{serial}"))
}

/// What the agent needs to know about the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostStatus {
    /// The tool that reported it.
    pub tool: Tool,
    /// Running now.
    pub booted: Option<Deployment>,
    /// Queued for the next boot.
    pub staged: Option<Deployment>,
    /// What a rollback would boot.
    pub rollback: Option<Deployment>,
    /// The image the host follows, as its spec or origin records it.
    pub followed: Option<String>,
    /// The ostree branch (`remote:ref`) the booted deployment follows, on a
    /// host booted from an ostree commit rather than an image.
    pub ostree_origin: Option<String>,
    /// How pulls are verified.
    pub signature: SignatureMode,
    /// The registered rpm-ostree update driver, if any.
    pub update_driver: Option<String>,
    /// The systemd unit that driver registered from.
    pub update_driver_unit: Option<String>,
}

/// The stream of a Fedora CoreOS ostree branch:
/// `fedora:fedora/x86_64/coreos/stable` (remote optional) → `stable`. `None`
/// for any other branch.
pub fn fcos_stream_of_refspec(refspec: &str) -> Option<&str> {
    let branch = refspec
        .split_once(':')
        .map_or(refspec, |(_, branch)| branch);
    match branch.split('/').collect::<Vec<_>>().as_slice() {
        ["fedora", arch, "coreos", stream]
            if !arch.is_empty()
                && !stream.is_empty()
                && stream
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Some(stream)
        }
        _ => None,
    }
}

/// A status that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{tool} status: {message}")]
pub struct StatusError {
    /// `bootc` or `rpm-ostree`.
    pub tool: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The repository part of an image reference (`quay.io/x/y:tag` → `quay.io/x/y`).
pub fn repository_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(i) => &without_digest[..last_slash + i],
        None => without_digest,
    }
}

/// The tag of an image reference, if it has one.
pub fn tag_of(reference: &str) -> Option<&str> {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    without_digest[last_slash..]
        .rfind(':')
        .map(|i| &without_digest[last_slash + i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_unit_comes_from_the_unified_cgroup_line() {
        assert_eq!(
            unit_of_cgroup("0::/system.slice/cairn-agent.service\n").as_deref(),
            Some("cairn-agent.service")
        );
        assert_eq!(
            unit_of_cgroup("12:pids:/x\n0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(unit_of_cgroup("0::/\n"), None);
        assert_eq!(unit_of_cgroup(""), None);
    }

    #[test]
    fn registration_is_renewed_from_the_agents_own_unit() {
        let status = |name: Option<&str>, unit: Option<&str>| HostStatus {
            tool: Tool::RpmOstree,
            booted: None,
            staged: None,
            rollback: None,
            followed: None,
            ostree_origin: None,
            signature: SignatureMode::Unverified,
            update_driver: name.map(String::from),
            update_driver_unit: unit.map(String::from),
        };
        let own = Some("cairn-agent.service");
        assert!(needs_driver_registration(&status(None, None), own));
        assert!(needs_driver_registration(
            &status(Some("Zincati"), Some("zincati.service")),
            own
        ));
        assert!(!needs_driver_registration(&status(Some("Cairn"), own), own));
        assert!(needs_driver_registration(
            &status(Some("Cairn"), Some("run-u7.service")),
            own
        ));
        assert!(needs_driver_registration(
            &status(Some("Cairn"), Some("run-u7.service")),
            None
        ));
        assert!(!needs_driver_registration(
            &status(Some("Cairn"), Some("cairn-agent.service")),
            None
        ));
    }

    #[test]
    fn fedora_coreos_branches_name_their_stream() {
        assert_eq!(
            fcos_stream_of_refspec("fedora:fedora/x86_64/coreos/stable"),
            Some("stable")
        );
        assert_eq!(
            fcos_stream_of_refspec("fedora/aarch64/coreos/testing-devel"),
            Some("testing-devel")
        );
        assert_eq!(fcos_stream_of_refspec("fedora:fedora/x86_64/coreos/"), None);
        assert_eq!(fcos_stream_of_refspec("acme:acme/x86_64/os/stable"), None);
        assert_eq!(
            fcos_stream_of_refspec("fedora:fedora/x86_64/coreos/stable/extra"),
            None
        );
        assert_eq!(
            fcos_stream_of_refspec("fedora:fedora/x86_64/coreos/a b"),
            None
        );
    }

    #[test]
    fn repositories_and_tags() {
        assert_eq!(
            repository_of("quay.io/fedora/fedora-coreos:stable"),
            "quay.io/fedora/fedora-coreos"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/os@sha256:abc"),
            "127.0.0.1:5000/os"
        );
        assert_eq!(
            tag_of("quay.io/fedora/fedora-coreos:stable"),
            Some("stable")
        );
        assert_eq!(tag_of("127.0.0.1:5000/os"), None);
        assert_eq!(tag_of("127.0.0.1:5000/os:44@sha256:abc"), Some("44"));
    }
}
