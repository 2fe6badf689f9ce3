//! Alertmanager webhook payloads (version 4) as the halt guard reads them.

#![no_main]
#![forbid(unsafe_code)]

use cairn_server::routes::alerts::Payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = serde_json::from_slice::<Payload>(data) {
        for alert in payload
            .alerts
            .iter()
            .take(cairn_server::routes::alerts::MAX_ALERTS)
        {
            let _ = (
                alert.labels.get("cairn_stream"),
                alert.labels.get("cairn_release"),
            );
        }
    }
});
