//! The rollout guard: halts a release whose failure reports cross both
//! thresholds.

use super::config::GuardConfig;

/// The guard of every stream with halts on.
#[derive(Debug)]
pub struct Guard {
    /// The `[guard]` section.
    pub config: GuardConfig,
    /// A registry client with the halt-list repository's credentials only.
    pub client: cairn_oci::RegistryClient,
}

impl Guard {
    /// The guard of `config`, with a client of its own credentials.
    pub fn new(config: GuardConfig, server: &crate::Config) -> Result<Guard, cairn_oci::OciError> {
        let credentials = match &config.authfile {
            Some(path) => cairn_oci::auth::Credentials::from_file(path)?,
            None => cairn_oci::auth::Credentials::from_default_files()?,
        };
        let client = cairn_oci::RegistryClient::new(cairn_oci::ClientOptions {
            credentials,
            insecure_registries: server.insecure_registries.clone(),
            registries_conf: Ok(server.registries_conf.clone()),
            timeout: server.timeout,
            ..cairn_oci::ClientOptions::default()
        })?;
        Ok(Guard { config, client })
    }
}
