//! The committed JSON Schema matches the Rust types, and agrees with them on
//! what a valid document is.

use cairn_graph::GraphDocument;
use serde_json::{Value, json};
use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read_json(path: &str) -> Value {
    let full = repo(path);
    let bytes = std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()));
    serde_json::from_slice(&bytes).expect("JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&read_json("docs/graph-document.schema.json"))
        .expect("schema compiles")
}

#[test]
fn committed_schema_is_generated_from_the_types() {
    assert_eq!(
        read_json("docs/graph-document.schema.json"),
        GraphDocument::json_schema(),
        "docs/graph-document.schema.json is stale: run \
         `cargo run -p cairn -- graph schema > docs/graph-document.schema.json`"
    );
}

#[test]
fn valid_documents_satisfy_the_schema() {
    let validator = validator();
    let example = read_json("docs/examples/stable.json");
    let errors: Vec<String> = validator
        .iter_errors(&example)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // A document the types build and serialise is valid too.
    let parsed = GraphDocument::from_json(example.to_string().as_bytes()).expect("parses");
    let written: Value = serde_json::from_str(&parsed.document.to_json_pretty()).expect("JSON");
    assert!(validator.is_valid(&written));
}

#[test]
fn schema_and_types_reject_the_same_mistakes() {
    let validator = validator();
    type Mutation = Box<dyn Fn(&mut Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "bad digest",
            Box::new(|v| {
                v["releases"][1]["architectures"]["x86_64"]["digest"] = json!("sha256:ABC")
            }),
        ),
        (
            "bad alias",
            Box::new(|v| {
                v["releases"][1]["architectures"]["x86_64"]["aliases"] = json!(["latest"])
            }),
        ),
        (
            "bad commit",
            Box::new(|v| v["releases"][0]["architectures"]["x86_64"]["ostree"] = json!("xyz")),
        ),
        (
            "percentage above 1",
            Box::new(|v| v["releases"][5]["rollout"]["start_percentage"] = json!(1.5)),
        ),
        (
            "negative duration",
            Box::new(|v| v["releases"][5]["rollout"]["duration_minutes"] = json!(-1)),
        ),
        (
            "absurd duration",
            Box::new(|v| v["releases"][5]["rollout"]["duration_minutes"] = json!(10_000_000)),
        ),
        ("schema 2", Box::new(|v| v["schema"] = json!(2))),
        ("empty stream", Box::new(|v| v["stream"] = json!(""))),
        (
            "missing releases",
            Box::new(|v| {
                v.as_object_mut().map(|o| o.remove("releases"));
            }),
        ),
        (
            "version is a number",
            Box::new(|v| v["releases"][0]["version"] = json!(7)),
        ),
    ];
    for (name, mutate) in mutations {
        let mut value = read_json("docs/examples/stable.json");
        mutate(&mut value);
        assert!(!validator.is_valid(&value), "schema accepts: {name}");
        assert!(
            GraphDocument::from_json(value.to_string().as_bytes()).is_err(),
            "types accept: {name}"
        );
    }
}
