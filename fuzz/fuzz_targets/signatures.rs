//! Signatures beside a document: a detached signature file (one base64
//! signature per line) checked against a configured key, cosign's
//! simple-signing payload, key ids and PEM public keys.

#![no_main]
#![forbid(unsafe_code)]

use bytes::Bytes;
use cairn_fuzz::split;
use cairn_oci::document::{self, TrustPolicy};
use cairn_oci::signing::{self, KeyId, SigningKey, VerifyingKey};
use cairn_oci::trust::{Role, RoleKeys};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static SigningKey {
    cairn_fuzz::process_key()
}

fuzz_target!(|data: &[u8]| {
    let pieces = split(data, 2);
    let signature = pieces
        .get(1)
        .map(|text| String::from_utf8_lossy(text).into_owned());
    if let Ok(fetched) = document::from_bytes(
        Bytes::copy_from_slice(pieces[0]),
        signature.clone(),
        "doc.json",
    ) {
        let keys = RoleKeys::any_of(Role::Graph, &[key().verifying_key()]);
        let policy = TrustPolicy {
            signers: Some(&keys),
            allow_unsigned: false,
            now: fetched.document.issued,
            last_seen: None,
            stream: None,
        };
        // Nothing from the input was signed by this key.
        assert!(
            fetched.verify("doc.json", &policy).is_err(),
            "a signature nobody made passed"
        );
    }
    let _ = signing::signed_digest(pieces[0]);
    if let Ok(text) = std::str::from_utf8(pieces[0]) {
        if let Some(id) = KeyId::parse(text) {
            let _ = id.short();
        }
        if let Ok(verifying) = VerifyingKey::from_pem(text, "key.pub") {
            let pem = verifying.to_pem().unwrap_or_else(|e| panic!("{e}"));
            let again = VerifyingKey::from_pem(&pem, "again.pub")
                .unwrap_or_else(|e| panic!("a key Cairn wrote does not read back: {e}"));
            assert_eq!(
                again.key_id(),
                verifying.key_id(),
                "the key changed on a round trip"
            );
        }
        let _ = SigningKey::from_pem(text, "key.pem");
        if let Some(sig) = &signature {
            assert!(
                !key().verifying_key().verifies(pieces[0], sig.trim()),
                "a forged signature verifies"
            );
        }
    }
});
