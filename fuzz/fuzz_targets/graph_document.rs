//! Graph documents: parse and validate, build each architecture's graph,
//! decide for queries drawn from the input and check the decision
//! invariants; a valid document survives a write and a second read unchanged.

#![no_main]
#![forbid(unsafe_code)]

use cairn_fuzz::{Choices, decide_document};
use cairn_graph::GraphDocument;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = match GraphDocument::from_json(data) {
        Ok(parsed) => parsed,
        Err(e) => return cairn_fuzz::note(format_args!("document: {e}")),
    };
    let document = parsed.document;
    let text = document.to_json_pretty();
    let again = match GraphDocument::from_json(text.as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("a valid document does not read back: {e}\n{text}"),
    };
    assert_eq!(
        again.document, document,
        "the document changed on a round trip"
    );
    assert!(
        again.ignored_fields.is_empty(),
        "the writer wrote unknown fields"
    );
    assert_eq!(again.document.to_json_pretty(), text, "two writes differ");
    let _ = document.warnings();
    let _ = document.update_ranks();
    decide_document(&document, &mut Choices::new(data));
});
