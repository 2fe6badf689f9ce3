//! The committed JSON Schema of a trust root matches the Rust types, and a
//! root Cairn builds and signs satisfies it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cairn_oci::signing::{SigningKey, VerifyingKey};
use cairn_oci::trust::{SignedRoot, TrustRoot, build_root};
use serde_json::Value;
use std::path::PathBuf;

const SCHEMA_PATH: &str = "docs/trust-root.schema.json";

fn schema_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(SCHEMA_PATH)
}

fn generated_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(TrustRoot)).expect("schema serialises")
}

fn committed_schema() -> Value {
    let path = schema_file();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; run with CAIRN_UPDATE_SCHEMA=1 to write it",
            path.display()
        )
    });
    serde_json::from_slice(&bytes).expect("the committed schema is JSON")
}

/// A root of version 1 as `cairn root init` would build it: two root keys
/// (threshold 2), one graph key, and the graph key plus a halt key in the
/// halt role; signed by both root keys.
fn signed_root_payload() -> Value {
    let root_keys = [SigningKey::generate(), SigningKey::generate()];
    let graph_key = SigningKey::generate();
    let halt_key = SigningKey::generate();
    let root_public: Vec<VerifyingKey> = root_keys.iter().map(|k| k.verifying_key()).collect();
    let graph_public = vec![graph_key.verifying_key()];
    let halt_public = vec![halt_key.verifying_key(), graph_key.verifying_key()];
    let expires = "2030-01-01T00:00:00Z".parse().expect("timestamp");
    let content = build_root(
        1,
        expires,
        [(&root_public, 2), (&graph_public, 1), (&halt_public, 1)],
    )
    .expect("builds");
    let signed = SignedRoot::sign(&content, &root_keys).expect("signs");

    // Read the payload back out of the envelope, as any DSSE consumer would.
    let envelope: Value = serde_json::from_slice(&signed.envelope).expect("envelope is JSON");
    assert_eq!(
        envelope["payloadType"], "application/vnd.cairn.root.v1+json",
        "{envelope}"
    );
    assert_eq!(envelope["signatures"].as_array().map(Vec::len), Some(2));
    let payload = STANDARD
        .decode(envelope["payload"].as_str().expect("payload is a string"))
        .expect("payload is base64");
    serde_json::from_slice(&payload).expect("payload is JSON")
}

#[test]
fn committed_schema_is_generated_from_the_types() {
    let generated = generated_schema();
    if std::env::var_os("CAIRN_UPDATE_SCHEMA").is_some_and(|v| v == "1") {
        let mut text = serde_json::to_string_pretty(&generated).expect("schema serialises");
        text.push('\n');
        // Through a rename, so the other test never reads half a file.
        let path = schema_file();
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, text).expect("writing the schema");
        std::fs::rename(&partial, &path).expect("replacing the schema");
    }
    assert_eq!(
        committed_schema(),
        generated,
        "{SCHEMA_PATH} is stale: run `CAIRN_UPDATE_SCHEMA=1 cargo test -p cairn-oci \
         --test trust_root_schema` to rewrite it from cairn_oci::trust::TrustRoot"
    );
}

#[test]
fn a_signed_root_satisfies_the_schema_and_one_without_expires_does_not() {
    let validator = jsonschema::validator_for(&committed_schema()).expect("schema compiles");
    let payload = signed_root_payload();
    let errors: Vec<String> = validator
        .iter_errors(&payload)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{payload:#}");

    let mut without_expires = payload.clone();
    without_expires
        .as_object_mut()
        .expect("the payload is an object")
        .remove("expires")
        .expect("the payload had expires");
    assert!(
        !validator.is_valid(&without_expires),
        "the schema accepts a root with no expires"
    );
    // The types agree.
    assert!(serde_json::from_value::<TrustRoot>(without_expires).is_err());

    // Other mistakes the schema catches on its own.
    for (name, field, value) in [
        ("format 2", "format", serde_json::json!(2)),
        ("version 0", "version", serde_json::json!(0)),
        ("unknown field", "extra", serde_json::json!(true)),
    ] {
        let mut bad = payload.clone();
        bad[field] = value;
        assert!(!validator.is_valid(&bad), "the schema accepts {name}");
    }
    let mut short_id = payload.clone();
    short_id["keys"][0]["id"] = serde_json::json!("abc");
    assert!(!validator.is_valid(&short_id), "the schema accepts id abc");
    let mut zero_threshold = payload;
    zero_threshold["roles"]["graph"]["threshold"] = serde_json::json!(0);
    assert!(
        !validator.is_valid(&zero_threshold),
        "the schema accepts threshold 0"
    );
}
