//! Inline SVG drawings of the dashboard: the update graph and rollout
//! timelines, each with a text alternative.
