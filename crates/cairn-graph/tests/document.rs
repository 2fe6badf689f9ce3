//! Parsing and validation of the update graph document, schema 1.

use cairn_graph::document::{DocumentError, GraphDocument, ValidationError};
use serde_json::{Value, json};
use std::path::PathBuf;

fn example_bytes() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/stable.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn example() -> Value {
    serde_json::from_slice(&example_bytes()).expect("example is JSON")
}

fn parse(value: &Value) -> Result<GraphDocument, DocumentError> {
    GraphDocument::from_json(value.to_string().as_bytes()).map(|parsed| parsed.document)
}

fn errors(value: &Value) -> Vec<ValidationError> {
    match parse(value) {
        Err(DocumentError::Invalid(errors)) => errors,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

fn one_error(value: &Value) -> ValidationError {
    let mut all = errors(value);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[test]
fn the_example_document_is_valid_and_round_trips() {
    let parsed = GraphDocument::from_json(&example_bytes()).expect("example parses");
    assert!(parsed.ignored_fields.is_empty());
    let document = parsed.document;
    assert_eq!(document.releases.len(), 6);
    let again = GraphDocument::from_json(document.to_json_pretty().as_bytes()).expect("round trip");
    assert_eq!(again.document, document);
}

#[test]
fn unknown_fields_are_ignored_and_reported() {
    let mut value = example();
    value["publisher"] = json!("someone");
    value["releases"][2]["barrier"]["ticket"] = json!(7);
    let parsed = GraphDocument::from_json(value.to_string().as_bytes()).expect("still parses");
    assert_eq!(
        parsed.ignored_fields,
        vec![
            "publisher".to_string(),
            "releases.2.barrier.ticket".to_string()
        ]
    );
}

#[test]
fn duplicate_versions_are_rejected() {
    let mut value = example();
    value["releases"][4]["version"] = json!("42.20250929.0");
    let error = one_error(&value);
    assert_eq!(error.kind(), "duplicate_version");
    let text = error.to_string();
    assert!(
        text.contains("release 42.20250929.0 (releases[4]) field `version`"),
        "{text}"
    );
    assert!(text.contains("releases[2]"), "{text}");
}

#[test]
fn a_digest_may_appear_only_once() {
    let mut value = example();
    let digest = value["releases"][1]["architectures"]["x86_64"]["digest"].clone();
    value["releases"][5]["architectures"]["x86_64"]["digest"] = digest;
    let error = one_error(&value);
    assert_eq!(error.kind(), "duplicate_digest");
    let text = error.to_string();
    assert!(text.contains("release 43.20251110.0"), "{text}");
    assert!(text.contains("architectures.x86_64.digest"), "{text}");
    assert!(
        text.contains("42.20250915.0"),
        "names the first use: {text}"
    );
}

#[test]
fn an_alias_may_not_repeat_a_digest() {
    let mut value = example();
    let digest = value["releases"][2]["architectures"]["x86_64"]["digest"].clone();
    value["releases"][1]["architectures"]["x86_64"]["aliases"] = json!([digest]);
    let error = one_error(&value);
    assert_eq!(error.kind(), "duplicate_digest");
    assert!(error.to_string().contains("aliases[0]"), "{error}");
}

#[test]
fn digests_must_be_lowercase_sha256() {
    let hex = "a".repeat(64);
    for bad in [
        format!("sha256:{}", hex.to_uppercase()),
        format!("sha512:{hex}"),
        hex.clone(),
        format!("sha256:{}", &hex[1..]),
        "sha256:xyz".to_string(),
        "--reboot".to_string(),
        "sha256:../../x".to_string(),
        format!("sha256:{} --reboot", &hex[..50]),
        format!("sha256:{hex} "),
    ] {
        let mut value = example();
        value["releases"][3]["architectures"]["aarch64"]["digest"] = json!(bad);
        let error = one_error(&value);
        assert_eq!(error.kind(), "bad_digest", "{bad}");
        assert!(
            error.to_string().contains(
                "release 42.20251013.0 (releases[3]) field `architectures.aarch64.digest`"
            ),
            "{error}"
        );
    }
    let mut value = example();
    value["releases"][3]["architectures"]["aarch64"]["config"] = json!("sha256:NOPE");
    assert_eq!(one_error(&value).kind(), "bad_digest");
    let mut value = example();
    value["releases"][5]["base"]["digest"] = json!("latest");
    assert!(one_error(&value).to_string().contains("base.digest"));
    let mut value = example();
    value["releases"][0]["architectures"]["x86_64"]["ostree"] = json!("sha256:abc");
    assert_eq!(one_error(&value).kind(), "bad_commit");
}

#[test]
fn config_and_aliases_need_a_digest() {
    let mut value = example();
    value["releases"][0]["architectures"]["x86_64"]["config"] =
        json!(format!("sha256:{}", "b".repeat(64)));
    let error = one_error(&value);
    assert_eq!(error.kind(), "without_digest");
    assert!(error.to_string().contains("architectures.x86_64.config"));
}

#[test]
fn percentages_must_be_fractions() {
    for bad in [-0.1, 1.01, 5.0] {
        let mut value = example();
        value["releases"][5]["rollout"]["start_percentage"] = json!(bad);
        let error = one_error(&value);
        assert_eq!(error.kind(), "percentage_out_of_range");
        assert!(
            error.to_string().contains("release 43.20251110.0"),
            "{error}"
        );
        assert!(
            error.to_string().contains("rollout.start_percentage"),
            "{error}"
        );
    }
    for good in [0.0, 1.0, 0.5] {
        let mut value = example();
        value["releases"][5]["rollout"]["start_percentage"] = json!(good);
        parse(&value).expect("a fraction is fine");
    }
}

#[test]
fn durations_must_be_non_negative_and_sane() {
    let mut value = example();
    value["releases"][5]["rollout"]["duration_minutes"] = json!(-60);
    match parse(&value) {
        Err(DocumentError::Shape { path, release, .. }) => {
            assert_eq!(path, "releases[5].rollout.duration_minutes");
            assert_eq!(release.as_deref(), Some("43.20251110.0"));
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    let mut value = example();
    value["releases"][5]["rollout"]["duration_minutes"] = json!(60 * 24 * 400);
    assert_eq!(one_error(&value).kind(), "absurd_duration");
    let mut value = example();
    value["releases"][5]["rollout"]["duration_minutes"] = json!(60 * 24 * 366);
    parse(&value).expect("a year is the limit");
    let mut value = example();
    value["releases"][5]["rollout"]["start_epoch"] = json!(-1);
    assert_eq!(one_error(&value).kind(), "start_out_of_range");
}

#[test]
fn only_schema_1_is_read() {
    let mut value = example();
    value["schema"] = json!(2);
    // A newer schema is reported as such, even if its shape changed too.
    value["releases"] = json!("something else");
    let error = one_error(&value);
    assert_eq!(error.kind(), "unknown_schema");
    assert!(error.to_string().contains("unsupported schema version 2"));
}

#[test]
fn expiry_must_follow_issue() {
    let mut value = example();
    value["expires"] = json!("2025-11-01T00:00:00Z");
    let error = one_error(&value);
    assert_eq!(error.kind(), "expires_before_issued");
    assert!(error.to_string().contains("`expires`"));
}

#[test]
fn all_broken_rules_are_reported_together() {
    let mut value = example();
    value["stream"] = json!("");
    value["releases"][1]["version"] = json!("42.20250901.0");
    value["releases"][5]["rollout"]["start_percentage"] = json!(3);
    let kinds: Vec<&str> = errors(&value).iter().map(ValidationError::kind).collect();
    assert_eq!(
        kinds,
        vec![
            "empty_field",
            "duplicate_version",
            "percentage_out_of_range"
        ]
    );
}

#[test]
fn malformed_json_gets_a_clear_error() {
    let error = GraphDocument::from_json(b"{\"schema\": 1,").expect_err("truncated");
    assert_eq!(error.kind(), "syntax");
    let mut value = example();
    value["releases"][2]["version"] = json!(42);
    match parse(&value) {
        Err(error @ DocumentError::Shape { .. }) => {
            assert!(error.to_string().contains("releases[2].version"), "{error}")
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    let mut value = example();
    value.as_object_mut().expect("object").remove("expires");
    let error = parse(&value).expect_err("missing field");
    assert!(error.to_string().contains("expires"), "{error}");
    let mut value = example();
    value["issued"] = json!("last tuesday");
    let error = parse(&value).expect_err("bad time");
    assert!(error.to_string().contains("field `issued`"), "{error}");
}

#[test]
fn contradictions_that_are_allowed_are_warned_about() {
    let mut value = example();
    value["releases"][3]["rollout"] = json!({"start_percentage": 1.0});
    value["releases"][2]["deadend"] = json!({"reason": "oops"});
    let document = parse(&value).expect("allowed");
    let warnings = document.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("42.20251013.0") && w.contains("dead-end with a rollout"))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("42.20250929.0") && w.contains("barrier that is also a dead-end"))
    );
}
