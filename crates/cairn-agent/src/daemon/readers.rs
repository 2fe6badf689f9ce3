//! What reads the registries in a pass: skopeo's image proxy, so the
//! host's containers settings apply, or the built-in client when the proxy
//! is off or cannot start (docs/agent.md, "How the agent reads registries").

use super::Options;
use crate::config::{RegistryReader, Settings, Source};
use crate::host::repository_of;
use crate::status::{ReaderBackend, RegistryReaderStatus};
use cairn_oci::Readers;
use cairn_oci::proxy::{ProxyAuth, ProxyConfig, ProxyReader, ProxyUnavailable};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The readers of one pass, and what the status says about them.
pub(super) struct PassReaders {
    pub readers: Readers,
    pub status: RegistryReaderStatus,
}

fn builtin(client: cairn_oci::RegistryClient, reason: String) -> PassReaders {
    PassReaders {
        readers: Readers::builtin(client),
        status: RegistryReaderStatus {
            backend: ReaderBackend::Builtin,
            skopeo_protocol: None,
            reason: Some(reason),
            scans: ReaderBackend::Builtin,
        },
    }
}

/// Start the proxy for this pass unless it is configured off, pointless for
/// the source, or skopeo is absent or too old; the built-in client then.
/// A skopeo that is there but fails to start stops the pass instead: the
/// built-in client would ignore what the host's settings say (a `blocked`
/// registry, its certs.d).
pub(super) async fn start(
    settings: &Settings,
    options: &Options,
    source: &Source,
    followed: &str,
    client: cairn_oci::RegistryClient,
    mirrors: &cairn_oci::registries_conf::RegistriesConf,
) -> Result<PassReaders, ProxyUnavailable> {
    if settings.registry_reader == RegistryReader::Builtin {
        return Ok(builtin(
            client,
            "updates.registry_reader = \"builtin\"".to_string(),
        ));
    }
    let registry = match source {
        Source::Registry(None) => Some(repository_of(followed).to_string()),
        Source::Registry(Some(reference)) => match cairn_oci::Location::parse(reference) {
            Ok(cairn_oci::Location::Registry(reference)) => Some(reference.repository.to_string()),
            _ => None,
        },
        Source::File(_) | Source::Server(_) => None,
        // The tag and barrier scans, and a Cairn base document in a
        // registry; under a test root the followed registry's certs.d.
        Source::Tag => Some(repository_of(followed).to_string()),
        Source::Fcos { .. } | Source::Cincinnati(_) => {
            return Ok(builtin(
                client,
                format!("the source {source} reads no registry artifacts"),
            ));
        }
    };
    // skopeo takes insecure registries from registries.conf only; its one
    // switch (`--tls-verify=false`) would drop TLS checks for every registry.
    if !options.client.insecure_registries.is_empty() {
        return Ok(builtin(
            client,
            format!(
                "--insecure-registry {} is given, which skopeo does not take (mark the registry `insecure = true` in registries.conf instead)",
                options.client.insecure_registries.join(",")
            ),
        ));
    }
    // `--registries-conf` replaces the host's registries.conf.d as well, and
    // skopeo has no flag for another drop-in directory.
    let drop_ins = options.root.join("etc/containers/registries.conf.d");
    if options.root != Path::new("/") && has_drop_ins(&drop_ins) {
        return Ok(builtin(
            client,
            format!(
                "{} cannot be handed to skopeo under a test root (--root {})",
                drop_ins.display(),
                options.root.display()
            ),
        ));
    }
    let config = ProxyConfig {
        mirrors: mirrors.clone(),
        ..proxy_config(settings, options, registry.as_deref())
    };
    match ProxyReader::start(config).await {
        Ok(reader) => {
            let protocol = reader.protocol_version().to_string();
            Ok(PassReaders {
                readers: Readers::with_proxy(client, Some(Arc::new(reader))),
                status: RegistryReaderStatus {
                    backend: ReaderBackend::Proxy,
                    skopeo_protocol: Some(protocol),
                    reason: None,
                    scans: if matches!(source, Source::Tag) {
                        ReaderBackend::Proxy
                    } else {
                        ReaderBackend::Builtin
                    },
                },
            })
        }
        Err(
            unavailable @ (ProxyUnavailable::NotFound { .. } | ProxyUnavailable::TooOld { .. }),
        ) => {
            tracing::warn!(error = %unavailable, kind = unavailable.kind(), "skopeo's image proxy is not available: the built-in client reads registries");
            Ok(builtin(client, unavailable.to_string()))
        }
        Err(failed) => Err(failed),
    }
}

/// skopeo's settings: the host's own files on `/`; under a test root, that
/// root's files, passed as flags.
fn proxy_config(settings: &Settings, options: &Options, repository: Option<&str>) -> ProxyConfig {
    let root = options.root.as_path();
    let under_root = |path: &str| {
        let path = root.join(path);
        path.exists().then_some(path)
    };
    let test_root = root != Path::new("/");
    // As ostree-ext: the ostree auth file, or no credentials at all (never
    // a user's containers auth file).
    let auth = match &options.auth_file {
        Some(path) => ProxyAuth::File(path.clone()),
        None => ProxyAuth::Anonymous,
    };
    ProxyConfig {
        skopeo: settings.skopeo.clone(),
        registries_conf: under_root("etc/containers/registries.conf").filter(|_| test_root),
        // skopeo has no flag for a certs.d root, and `--cert-dir` serves
        // every registry: under a test root only, the document registry's
        // directory. On `/` containers/image looks up certs.d itself.
        cert_dir: repository
            .and_then(|repository| repository.split('/').next())
            .filter(|_| test_root)
            .and_then(|host| cert_dir(root, host)),
        auth,
        ..ProxyConfig::default()
    }
}

/// Whether `dir` holds a `.conf` drop-in.
fn has_drop_ins(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.path().extension().is_some_and(|e| e == "conf"))
    })
}

fn cert_dir(root: &Path, host: &str) -> Option<PathBuf> {
    let dir = root.join("etc/containers/certs.d").join(host);
    dir.is_dir().then_some(dir)
}

/// Stop the proxy of a pass, once its reads are done.
pub(super) async fn finish(readers: &mut Readers) {
    let Some(proxy) = readers.proxy.take() else {
        return;
    };
    // The pass's reads are done, so this is the last handle.
    match Arc::try_unwrap(proxy) {
        Ok(reader) => {
            if let Err(e) = reader.finish().await {
                // Its `lifetime` still ends it.
                tracing::warn!(error = %e, "skopeo's image proxy did not stop cleanly");
            }
        }
        Err(_) => tracing::warn!(
            "skopeo's image proxy is still in use at the end of the pass; it ends with its lifetime"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(root: &Path, auth_file: Option<PathBuf>) -> Options {
        Options {
            root: root.to_path_buf(),
            sysroot: root.join("sysroot"),
            state_dir: root.join("state"),
            bootc: "bootc".into(),
            rpm_ostree: "rpm-ostree".into(),
            systemctl: None,
            updater_check: false,
            loginctl: None,
            motd_dir: None,
            arch: "x86_64".into(),
            client: cairn_oci::ClientOptions::default(),
            auth_file,
            check_interval: None,
            socket: None,
            own_unit: None,
            report_backoff: None,
        }
    }

    fn settings() -> Settings {
        crate::config::validate_fragment("[updates]\n", "test.toml").expect("settings")
    }

    #[test]
    fn a_test_root_hands_skopeo_its_files_and_the_source_registry_s_certs_d() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let options = options(root, None);
        // Nothing under the root yet: nothing is passed but "no credentials".
        let bare = proxy_config(&settings(), &options, Some("127.0.0.1:5000/acme/os"));
        assert_eq!(bare.registries_conf, None);
        assert_eq!(bare.policy, None);
        assert_eq!(bare.cert_dir, None);
        assert_eq!(bare.auth, ProxyAuth::Anonymous);

        let containers = root.join("etc/containers");
        let certs = containers.join("certs.d/127.0.0.1:5000");
        std::fs::create_dir_all(&certs).expect("mkdir");
        std::fs::create_dir_all(containers.join("certs.d/other:1")).expect("mkdir");
        std::fs::write(containers.join("registries.conf"), "").expect("write");
        std::fs::write(containers.join("policy.json"), "{}").expect("write");
        let config = proxy_config(&settings(), &options, Some("127.0.0.1:5000/acme/os"));
        assert_eq!(
            config.registries_conf,
            Some(containers.join("registries.conf"))
        );
        // Cairn checks its own signatures: the policy is never handed over.
        assert_eq!(config.policy, None);
        assert!(!config.check_policy);
        assert_eq!(config.cert_dir, Some(certs));
        assert_eq!(config.skopeo, PathBuf::from("skopeo"));
        // No registry known (a file or server source): no certificate directory.
        assert_eq!(proxy_config(&settings(), &options, None).cert_dir, None);
    }

    #[test]
    fn on_the_host_root_skopeo_reads_the_host_s_own_files_and_the_ostree_auth_file() {
        let auth = PathBuf::from("/etc/ostree/auth.json");
        let config = proxy_config(
            &settings(),
            &options(Path::new("/"), Some(auth.clone())),
            Some("quay.io/acme/os"),
        );
        assert_eq!(config.registries_conf, None);
        assert_eq!(config.policy, None);
        assert_eq!(config.cert_dir, None);
        assert_eq!(config.auth, ProxyAuth::File(auth));
    }
}
