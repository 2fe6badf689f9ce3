//! Trust roots for tests: a version with its root, graph and halt keys,
//! signed by the keys given, valid for a year.

use cairn_oci::signing::SigningKey;
use cairn_oci::trust::{SignedRoot, build_root};

/// Root `version`: `root` keys (2 must sign the next root), `graph` and
/// `halt` keys (1 must sign), signed by `by`.
pub fn signed_root(
    version: u64,
    root: &[&SigningKey],
    graph: &[&SigningKey],
    halt: &[&SigningKey],
    by: &[&SigningKey],
) -> SignedRoot {
    let public = |keys: &[&SigningKey]| keys.iter().map(|k| k.verifying_key()).collect::<Vec<_>>();
    let (root, graph, halt) = (public(root), public(graph), public(halt));
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
    let content =
        build_root(version, expires, [(&root, 2), (&graph, 1), (&halt, 1)]).expect("root");
    let by: Vec<SigningKey> = by.iter().map(|k| (*k).clone()).collect();
    SignedRoot::sign(&content, &by).expect("signs")
}
