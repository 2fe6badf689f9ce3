//! Fedora CoreOS metadata: a release index, an updates file and a
//! boot-image digest map (one input, cut at the separator). Each is parsed;
//! the graph Fedora's builder would serve is built and decided on, and the
//! document converted from them, when valid, decides by the same rules.

#![no_main]
#![forbid(unsafe_code)]

use cairn_fuzz::{Choices, Edges, decide_random_queries, interesting_times, split};
use cairn_graph::Scheme;
use cairn_graph::fcos::{self, ConvertOptions, ReleaseIndex, Updates};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pieces = split(data, 3);
    let index = ReleaseIndex::from_json(pieces[0]);
    let updates = pieces.get(1).map(|bytes| Updates::from_json(bytes));
    let aliases = pieces
        .get(2)
        .and_then(|bytes| fcos::parse_boot_image_digests(bytes).ok());
    let (Ok(index), Some(Ok(updates))) = (index, updates) else {
        return;
    };
    // What the publisher writes back reads back the same.
    let now = Timestamp::UNIX_EPOCH;
    let written = updates.to_json_pretty(now);
    match Updates::from_json(written.as_bytes()) {
        Ok(again) => assert_eq!(again.to_json_pretty(now), written, "two writes differ"),
        Err(e) => panic!("a written updates file does not read back: {e}\n{written}"),
    }
    let mut choices = Choices::new(data);
    for arch in ["x86_64", "aarch64"] {
        for scheme in [Scheme::Oci, Scheme::Checksum] {
            let graph = fcos::build_graph(&index, &updates, arch, scheme);
            let times = interesting_times(&graph, &[now]);
            decide_random_queries(&mut choices, &graph, &times, 3, Edges::Rule, |_, _| {});
        }
    }
    let options = ConvertOptions {
        repository: "quay.io/fedora/fedora-coreos",
        oci: choices.flip(),
        aliases: aliases.as_ref(),
        sequence: 1,
        issued: now,
        expires: Timestamp::MAX,
    };
    if let Ok(converted) = fcos::to_document(&index, &updates, &options)
        && converted.document.validate().is_ok()
    {
        cairn_fuzz::decide_document(&converted.document, &mut choices);
    }
});
