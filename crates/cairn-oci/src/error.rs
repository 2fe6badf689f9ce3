//! The errors of registry and layout access, with a short `kind()` for metrics.

use std::path::PathBuf;

/// Anything that can go wrong talking to a registry, a layout or a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The request never got an HTTP answer (connection refused, timeout, TLS).
    #[error("{method} {url}: {message}")]
    Transport {
        /// HTTP method.
        method: String,
        /// The URL, without credentials.
        url: String,
        /// What the HTTP stack said.
        message: String,
    },
    /// A TLS handshake met a server speaking plain HTTP: the registry is
    /// probably a local one that must be listed as insecure.
    // Wrappers up the chain may be transparent, so the message itself says
    // what to do rather than leaving a hint to the caller.
    #[error(
        "{method} {url}: {host} answered in plain HTTP, not TLS; if that is meant (a local registry), pass --insecure-registry {host} or set {env}={host} (for `cairn serve`: insecure_registries = [\"{host}\"])",
        env = crate::INSECURE_REGISTRIES_ENV
    )]
    PlainHttp {
        /// HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// `host[:port]` as an insecure-registry list names it.
        host: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: HTTP {status}{}", body_suffix(.body))]
    Status {
        /// HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body, for the error message.
        body: String,
    },
    /// The registry refused our credentials, or we have none.
    #[error("{url}: not authorized ({message})")]
    Unauthorized {
        /// The URL.
        url: String,
        /// Details.
        message: String,
    },
    /// Content whose digest is not what it should be.
    #[error("{what}: expected digest {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A manifest, index or reply that does not parse.
    #[error("{what}: {message}")]
    Invalid {
        /// What was being read.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A reply larger than Cairn reads for its kind.
    #[error("{what}: larger than {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit for that kind of reply.
        limit: usize,
    },
    /// A reference that cannot be parsed.
    #[error("invalid reference {reference:?}: {message}")]
    Reference {
        /// The text given.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// Something the caller asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A local file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The containers tools' `registries.conf` could not be read; no
    /// registry is contacted without it, as podman would not either.
    #[error("{0}")]
    RegistriesConf(std::sync::Arc<crate::registries_conf::RegistriesConfError>),
    /// A key that cannot be used.
    #[error("key {what}: {message}")]
    Key {
        /// Which key.
        what: String,
        /// What is wrong.
        message: String,
    },
}

impl OciError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            OciError::Transport { .. } => "transport",
            OciError::PlainHttp { .. } => "plain_http",
            OciError::Status { .. } => "status",
            OciError::Unauthorized { .. } => "unauthorized",
            OciError::DigestMismatch { .. } => "digest_mismatch",
            OciError::Invalid { .. } => "invalid",
            OciError::TooLarge { .. } => "too_large",
            OciError::Reference { .. } => "reference",
            OciError::NotFound(_) => "not_found",
            OciError::Io { .. } => "io",
            OciError::Key { .. } => "key",
            OciError::RegistriesConf(_) => "registries_conf",
        }
    }

    /// The registry could not be reached: no HTTP answer came (DNS,
    /// connection refused, timeout, TLS), or the answer was cut off. Any
    /// answer, an error status included, is not unreachable.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, OciError::Transport { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OciError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl ToString) -> Self {
        OciError::Invalid {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

fn body_suffix(body: &str) -> String {
    if body.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", body.trim())
    }
}

impl From<cairn_fs::FsError> for OciError {
    fn from(error: cairn_fs::FsError) -> Self {
        let (path, source) = error.into_parts();
        OciError::Io { path, source }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, OciError>;
