//! Registry access for Cairn: a distribution-API client, the OCI image-layout
//! directory backend, and update graph documents stored, signed and verified
//! as OCI artifacts.
//!
//! - [`client`]: the registry client (tags, manifests, blobs, auth).
//! - [`http`]: the HTTP layer under every request: retries and size limits.
//! - [`layout`]: `oci:DIR` layouts with the same operations.
//! - [`store`]: one interface over both (and, with the `image-proxy`
//!   feature, over skopeo's image proxy: `proxy`).
//! - [`document`]: publishing, reading and verifying documents.
//! - [`derived`]: finding a derived image's base release.
//! - [`publish`]: the publish pipeline, from scan to pushed document.
//! - [`signing`]: cosign-compatible ECDSA P-256 keys and signatures.
//! - [`sources`]: Fedora's files, Cincinnati answers, and base graphs.
//! - [`trust`]: trust roots, key roles and thresholds, and root rotation.
//! - [`roots`]: trust roots stored as artifacts, and walking their chain.

#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod derived;
pub mod digest;
pub mod document;
pub mod error;
pub mod halts;
pub mod http;
pub mod layout;
mod manifest;
pub mod promote;
#[cfg(feature = "image-proxy")]
pub mod proxy;
pub mod publish;
pub mod readers;
pub mod reference;
pub mod registries_conf;
pub mod roots;
pub mod scan;
pub mod signing;
pub mod sources;
pub mod store;
pub mod trust;

pub use client::{ClientOptions, RegistryClient};

/// The environment variable the `cairn` command reads for more registries
/// to reach over plain HTTP (comma-separated `host[:port]`), so that scripts
/// need not repeat `--insecure-registry`.
pub const INSECURE_REGISTRIES_ENV: &str = "CAIRN_INSECURE_REGISTRIES";
pub use error::OciError;
pub use readers::Readers;
pub use reference::{ImageRef, Location, Repository};
pub use store::Store;
