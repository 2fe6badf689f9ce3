//! What the agent's two clients of a Cairn-style server (the FleetLock
//! client and the report sender) share: URLs under a configured base, and
//! the reading of a `{"kind", "value"}` error reply.

use cairn_oci::http::{Overflow, read_body};

/// `path` under `base`, taken as a directory: a base without a trailing
/// slash keeps its last path segment.
pub fn under_base(base: &url::Url, path: &str) -> url::Url {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let dir = format!("{}/", base.path());
        base.set_path(&dir);
    }
    base.join(path).unwrap_or(base)
}

/// A server's error reply: its kind (or `generic_http_<status>`) and the
/// start of its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The server's error kind.
    pub kind: String,
    /// Its message, at most 200 characters (it is shown in status and the
    /// MOTD).
    pub value: String,
}

/// Read the error reply of `response` (a non-2xx answer from `url`): only
/// its first `max_bytes`, whatever the server sends. `server` names it in
/// the debug line of a reply that could not be read.
pub async fn error_reply(
    response: reqwest::Response,
    max_bytes: usize,
    url: &(impl std::fmt::Display + Sync),
    server: &str,
) -> ErrorReply {
    let status = response.status().as_u16();
    let text = match read_body(response, max_bytes, Overflow::Truncate).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            tracing::debug!(%url, error = %e, "could not read the {server}'s reply");
            String::new()
        }
    };
    let error: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    ErrorReply {
        kind: error["kind"]
            .as_str()
            .map_or_else(|| format!("generic_http_{status}"), str::to_string),
        value: error["value"]
            .as_str()
            .unwrap_or(&text)
            .chars()
            .take(200)
            .collect(),
    }
}
