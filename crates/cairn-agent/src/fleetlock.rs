//! The FleetLock client: a reboot slot from a lock server.
//!
//! `POST {base}/v1/pre-reboot` takes the slot, `POST {base}/v1/steady-state`
//! releases it, both with `fleet-lock-protocol: true` and a JSON body naming
//! the node (its app-specific id, never the raw machine id) and its group.
//! Any 2xx is success; errors come as `{"kind", "value"}`. Some servers
//! (airlock) never expire a slot, so callers release it on every way out of
//! the reboot path that does not reboot.
//!
//! Requests go through Cairn's shared HTTP layer (`cairn_oci::http`) for its
//! client settings and its size-limited reader, but without its retries: the
//! agent's loop already asks again at every tick, and a lock call held up by
//! backoff would only delay the tick that reports the failure.

use crate::server_http::{error_reply, under_base};
use cairn_oci::http::{Http, RetryPolicy, error_chain, limits};
use serde_json::json;
use std::time::Duration;

/// The largest FleetLock reply read; servers send a short JSON object.
pub const MAX_REPLY_BYTES: usize = limits::FLEETLOCK_REPLY;

/// The longest failure reason sent to the lock server.
pub const MAX_REASON_CHARS: usize = 200;

/// Why the lock server did not grant or release the slot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// No HTTP answer.
    #[error("{url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server answered with an error.
    #[error("{url}: HTTP {status}: {kind}: {value}")]
    Refused {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's error kind (or `generic_http_<status>`).
        kind: String,
        /// Its message.
        value: String,
    },
}

impl LockError {
    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LockError::Transport { .. } => "transport",
            _ if self.held_by_others() => "held_by_others",
            _ if self.group_halted() => "group_halted",
            LockError::Refused { .. } => "refused",
        }
    }

    /// True when the server answered that other nodes hold every slot
    /// (409, the FleetLock protocol's answer): a wait, not a failure.
    pub fn held_by_others(&self) -> bool {
        matches!(self, LockError::Refused { status: 409, .. })
    }

    /// True when a Cairn lock server halted the group (after a failed boot
    /// or an expired lease) until an operator acknowledges it: a wait too.
    pub fn group_halted(&self) -> bool {
        matches!(self, LockError::Refused { kind, .. } if kind == "group_halted")
    }
}

/// The URL of an operation: the base always counts as a directory, so a base
/// without a trailing slash keeps its last path segment.
pub fn endpoint(base: &url::Url, operation: &str) -> url::Url {
    under_base(base, &format!("v1/{operation}"))
}

/// A FleetLock client for one node.
#[derive(Debug, Clone)]
pub struct FleetLockClient {
    http: Http,
    base: url::Url,
    id: String,
    group: String,
}

impl FleetLockClient {
    /// A client for node `id` in `group`.
    pub fn new(
        base: url::Url,
        id: &str,
        group: &str,
        timeout: Duration,
    ) -> Result<Self, LockError> {
        let http = Http::new(timeout, RetryPolicy::NONE).map_err(|e| LockError::Transport {
            url: base.to_string(),
            message: error_chain(&e),
        })?;
        Ok(FleetLockClient {
            http,
            base,
            id: id.to_string(),
            group: group.to_string(),
        })
    }

    /// Take the reboot slot (recursive: holding it already is success).
    pub async fn pre_reboot(&self) -> Result<(), LockError> {
        self.call("pre-reboot").await
    }

    /// Release the slot if held.
    pub async fn steady_state(&self) -> Result<(), LockError> {
        self.call("steady-state").await
    }

    /// Tell a Cairn lock server that this node's boot failed, so it halts the
    /// group at once (Cairn's extension `POST {base}/v1/x-cairn/boot-failed`).
    /// A server without the extension (airlock) answers 404 or 405: that is
    /// success here, as the slot kept by the node halts its group anyway.
    pub async fn boot_failed(&self, reason: &str) -> Result<(), LockError> {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        match self.send("x-cairn/boot-failed", Some(&reason)).await {
            Err(LockError::Refused {
                status: 404 | 405, ..
            }) => Ok(()),
            // The server no longer counts this node as a holder (its lease
            // ran out, or an operator released it): asking again cannot help.
            Err(LockError::Refused { kind, value, .. }) if kind == "not_holder" => {
                tracing::warn!(%value, "the lock server did not take the failed-boot report");
                Ok(())
            }
            other => other,
        }
    }

    async fn call(&self, operation: &str) -> Result<(), LockError> {
        self.send(operation, None).await
    }

    async fn send(&self, operation: &str, reason: Option<&str>) -> Result<(), LockError> {
        let url = endpoint(&self.base, operation);
        let mut body = json!({"client_params": {"id": self.id, "group": self.group}});
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        let body = body.to_string();
        let response = self
            .http
            .send(|http| {
                http.post(url.clone())
                    .header("fleet-lock-protocol", "true")
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(|e| LockError::Transport {
                url: url.to_string(),
                message: error_chain(&e),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let reply = error_reply(response, MAX_REPLY_BYTES, &url, "lock server").await;
        Err(LockError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            kind: reply.kind,
            value: reply.value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_trailing_slash_keeps_the_path() {
        let with = url::Url::parse("http://locks.example/fleet_lock/").expect("url");
        let without = url::Url::parse("http://locks.example/fleet_lock").expect("url");
        for base in [with, without] {
            assert_eq!(
                endpoint(&base, "pre-reboot").as_str(),
                "http://locks.example/fleet_lock/v1/pre-reboot"
            );
        }
        let root = url::Url::parse("https://locks.example").expect("url");
        assert_eq!(
            endpoint(&root, "steady-state").as_str(),
            "https://locks.example/v1/steady-state"
        );
    }
}
