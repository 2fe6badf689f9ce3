//! Update reports as agents post them to the collector.

#![no_main]
#![forbid(unsafe_code)]

use cairn_server::reports::model::parse_report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = parse_report(data) {
        // What was accepted is what the collector counts and shows: printable, bounded.
        let _ = format!("{report:?}");
    }
});
