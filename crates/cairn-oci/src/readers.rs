//! Which reader a registry repository's artifacts are read with: the
//! built-in client, or skopeo's image proxy when the caller started one.

use crate::client::RegistryClient;
use crate::reference::Repository;
use crate::store::Store;

/// The readers of one pass over the registries.
#[derive(Debug, Clone)]
pub struct Readers {
    /// The built-in client: URLs, and every registry read when there is no proxy.
    pub client: RegistryClient,
    /// The image proxy, when one is running: registry artifacts go through it.
    #[cfg(feature = "image-proxy")]
    pub proxy: Option<std::sync::Arc<crate::proxy::ProxyReader>>,
}

impl Readers {
    /// Only the built-in client.
    pub fn builtin(client: RegistryClient) -> Self {
        Readers {
            client,
            #[cfg(feature = "image-proxy")]
            proxy: None,
        }
    }

    /// The built-in client for URLs, `proxy` for registries.
    #[cfg(feature = "image-proxy")]
    pub fn with_proxy(
        client: RegistryClient,
        proxy: Option<std::sync::Arc<crate::proxy::ProxyReader>>,
    ) -> Self {
        Readers { client, proxy }
    }

    /// The store a registry repository's artifacts are read from.
    pub fn store(&self, repository: &Repository) -> Store {
        #[cfg(feature = "image-proxy")]
        if let Some(proxy) = &self.proxy {
            return Store::proxy(proxy.clone(), repository.clone());
        }
        Store::registry(self.client.clone(), repository.clone())
    }
}
