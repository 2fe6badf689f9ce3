//! What the host tools print: `bootc status --json` and `rpm-ostree status
//! --json`, as the agent's drivers read them.

#![no_main]
#![forbid(unsafe_code)]

use cairn_agent::host::{bootc, rpm_ostree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bootc::parse_status(data);
    let _ = rpm_ostree::parse_status(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rpm_ostree::split_reference(text);
        let _ = cairn_agent::host::fcos_stream_of_refspec(text);
        let _ = cairn_agent::host::unit_of_cgroup(text);
    }
});
