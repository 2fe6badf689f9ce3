//! Halt lists as readers fetch them: parsed and validated; a valid list
//! written again reads back the same, and the next list the publisher
//! would write from it is valid too.

#![no_main]
#![forbid(unsafe_code)]

use cairn_fuzz::Choices;
use cairn_graph::halts::{HaltList, SignedAs};
use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = HaltList::from_json(data) else {
        return;
    };
    let written = serde_json::to_vec_pretty(&list).unwrap_or_else(|e| panic!("{e}"));
    match HaltList::from_json(&written) {
        Ok(again) => {
            assert_eq!(again, list, "the list changed on a round trip");
            let twice = serde_json::to_vec_pretty(&again).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(twice, written, "two writes differ");
        }
        Err(e) => panic!("a valid list does not read back: {e}"),
    }
    let mut choices = Choices::new(data);
    let now = if choices.flip() {
        list.expires
    } else {
        Timestamp::UNIX_EPOCH
    };
    let signed_as = if choices.flip() {
        SignedAs::Graph
    } else {
        SignedAs::HaltOnly
    };
    let _ = list.accept(&list.stream, signed_as, Some(&list), 0, now);
    let cleared: Vec<String> = list.entries.iter().take(1).map(|e| e.id.clone()).collect();
    for entry in list.effective(&cleared) {
        for digest in &entry.digests {
            assert!(
                list.halting(&cleared, digest).is_some(),
                "{digest} halted but not halting"
            );
        }
    }
    if let Ok(next) = HaltList::successor(
        Some(&list),
        &list.stream,
        None,
        now,
        SignedDuration::from_hours(24),
    ) {
        let text = serde_json::to_vec(&next).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = HaltList::from_json(&text) {
            panic!("the successor list is invalid: {e}");
        }
        // The sequence saturates at the top; below it, it grows.
        assert!(
            next.sequence > list.sequence || list.sequence == u64::MAX,
            "the successor does not grow the sequence"
        );
    }
});
