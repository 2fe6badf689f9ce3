//! Cincinnati `/v1/graph` answers: parsed, turned into a graph and decided
//! on (the edges are the server's, so only the rules that hold for any edge
//! list are checked); a graph written out reads back the same.

#![no_main]
#![forbid(unsafe_code)]

use cairn_fuzz::{Choices, Edges, decide_random_queries, interesting_times};
use cairn_graph::UpdateGraph;
use cairn_graph::cincinnati::CincinnatiGraph;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = CincinnatiGraph::from_json(data) else {
        return;
    };
    let text = answer.to_json_pretty();
    match CincinnatiGraph::from_json(text.as_bytes()) {
        Ok(again) => assert_eq!(again.to_json_pretty(), text, "two writes differ"),
        Err(e) => panic!("a written answer does not read back: {e}\n{text}"),
    }
    let Ok(graph) = UpdateGraph::from_cincinnati(&answer) else {
        return;
    };
    // Written once (empty reasons become the generic one), Cairn's own
    // answer is a fixed point: written again, it is the same text.
    let once = graph.to_cincinnati().to_json_pretty();
    let reread = CincinnatiGraph::from_json(once.as_bytes())
        .ok()
        .and_then(|answer| UpdateGraph::from_cincinnati(&answer).ok())
        .unwrap_or_else(|| panic!("an answer Cairn writes does not read back:\n{once}"));
    assert_eq!(
        reread.to_cincinnati().to_json_pretty(),
        once,
        "the answer changed on a round trip"
    );
    let mut choices = Choices::new(data);
    let times = interesting_times(&graph, &[]);
    decide_random_queries(
        &mut choices,
        &graph,
        &times,
        4,
        Edges::Explicit,
        |query, decision| {
            let served = graph.decide_served(query);
            assert_eq!(
                served.target, decision.target,
                "a throttled graph changed the target"
            );
            let _ = graph.offers_served(query, query.booted);
            let _ = graph.next_change_after_served(query);
        },
    );
});
