//! Trust root envelopes (DSSE): read and checked, pinned, and offered as the
//! next root; a root Cairn signs reads back as the same root.

#![no_main]
#![forbid(unsafe_code)]

use bytes::Bytes;
use cairn_fuzz::note;
use cairn_oci::signing::SigningKey;
use cairn_oci::trust::{Role, SignedRoot, TrustedRoot};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static SigningKey {
    cairn_fuzz::process_key()
}

fuzz_target!(|data: &[u8]| {
    let pieces = cairn_fuzz::split(data, 2);
    let signed = match SignedRoot::from_envelope(Bytes::copy_from_slice(pieces[0]), "root.json") {
        Ok(signed) => signed,
        Err(e) => return note(format_args!("root: {e}")),
    };
    let payload = signed.root.to_json();
    let reread: cairn_oci::trust::TrustRoot = serde_json::from_slice(&payload)
        .unwrap_or_else(|e| panic!("a root does not read back: {e}"));
    assert_eq!(reread, signed.root, "the root changed on a round trip");
    assert_eq!(reread.to_json(), payload, "two writes differ");
    match SignedRoot::sign(&signed.root, std::slice::from_ref(key())) {
        Ok(ours) => {
            let again = SignedRoot::from_envelope(ours.envelope.clone(), "signed.json")
                .unwrap_or_else(|e| panic!("a root Cairn signed does not read back: {e}"));
            assert_eq!(again.root, signed.root, "signing changed the root");
        }
        Err(e) => panic!("a root that read as valid cannot be signed: {e}"),
    }
    let Ok(trusted) = TrustedRoot::pin(signed.clone()) else {
        return;
    };
    let _ = trusted.describe();
    let _ = trusted.check_expiry(jiff::Timestamp::UNIX_EPOCH);
    for role in [Role::Root, Role::Graph, Role::Halt] {
        let keys = trusted.role(role);
        let _ = keys.check(&signed.signatures);
    }
    if let Some(next) = pieces.get(1)
        && let Ok(next) = SignedRoot::from_envelope(Bytes::copy_from_slice(next), "next.json")
    {
        match trusted.accept_next(next, "next.json") {
            Ok(accepted) => {
                note(format_args!("accepted root {}", accepted.version()));
                assert_eq!(
                    accepted.version(),
                    trusted.version() + 1,
                    "a root that skips a version"
                );
            }
            Err(e) => note(format_args!("next root: {e}")),
        }
    }
});
