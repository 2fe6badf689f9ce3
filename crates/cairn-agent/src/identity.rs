//! The node's identity: the Zincati-compatible app-specific machine id.
//!
//! systemd derives app-specific ids as HMAC-SHA256 keyed with the 16-byte
//! machine id over the 16-byte app id, truncated to 16 bytes and marked as a
//! version 4 UUID. Zincati uses the app id below, so a host moving from Zincati
//! keeps its rollout position and its identity at the FleetLock server. The raw
//! machine id never leaves the host.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Zincati's application id.
pub const ZINCATI_APP_ID: &str = "de35106b6ec24688b63afddaa156679b";

/// Why an id could not be derived.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} {value:?} is not 32 hexadecimal digits")]
pub struct IdError {
    /// Which id.
    pub what: &'static str,
    /// The value.
    pub value: String,
}

fn parse_id128(what: &'static str, text: &str) -> Result<[u8; 16], IdError> {
    let clean: String = text.trim().chars().filter(|c| *c != '-').collect();
    let bytes = hex::decode(&clean).ok().filter(|b| b.len() == 16);
    let mut id = [0u8; 16];
    match bytes {
        Some(bytes) => {
            id.copy_from_slice(&bytes);
            Ok(id)
        }
        None => Err(IdError {
            what,
            value: text.trim().to_string(),
        }),
    }
}

/// `sd_id128_get_machine_app_specific`: 32 lower-case hex digits.
pub fn app_specific_id(machine_id: &str, app_id: &str) -> Result<String, IdError> {
    let machine = parse_id128("machine id", machine_id)?;
    let app = parse_id128("app id", app_id)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&machine).map_err(|_| IdError {
        what: "machine id",
        value: machine_id.to_string(),
    })?;
    mac.update(&app);
    let digest = mac.finalize().into_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    // Mark as a random (version 4, variant 1) UUID, as systemd does.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(hex::encode(id))
}

/// The node id Zincati would send as `node_uuid` and to FleetLock servers.
pub fn node_id(machine_id: &str) -> Result<String, IdError> {
    app_specific_id(machine_id, ZINCATI_APP_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_systemd() {
        // `systemd-id128 machine-id --app-specific=de35106b…` on a host whose
        // /etc/machine-id is 3d1219c7…: printed by systemd 252.
        assert_eq!(
            node_id("3d1219c7c4c5404aaa1f6d2a48adfda4").expect("valid"),
            "975228d46dc94622b9bbe16671e2b58d"
        );
        assert_eq!(
            node_id("3d1219c7-c4c5-404a-aa1f-6d2a48adfda4\n").expect("dashes and newline"),
            "975228d46dc94622b9bbe16671e2b58d"
        );
    }

    #[test]
    fn refuses_malformed_ids() {
        assert!(node_id("").is_err());
        assert!(node_id("xyz").is_err());
        assert!(node_id(&"0".repeat(34)).is_err());
    }
}
