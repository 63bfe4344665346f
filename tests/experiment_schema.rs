//! The committed JSON Schema is what the types generate, and it validates experiments with an
//! independent validator (the `jsonschema` crate).

use std::path::Path;

use doge::experiment::schema::{schema_json, schema_text};
use serde_json::{json, Value};

const SCHEMA_FILE: &str = "schemas/experiment.schema.json";

#[test]
fn committed_schema_is_up_to_date() {
    let committed =
        std::fs::read_to_string(SCHEMA_FILE).expect("schemas/experiment.schema.json exists");
    assert!(
        committed == schema_text(),
        "{SCHEMA_FILE} is stale: regenerate it with `cargo run --release -- schema > {SCHEMA_FILE}`"
    );
}

#[test]
fn doge_schema_prints_the_committed_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_doge"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(SCHEMA_FILE).unwrap()
    );
}

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(SCHEMA_FILE).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

fn assert_valid(v: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not validate:\n{}",
        errors.join("\n")
    );
}

#[test]
fn kdl_to_json_mapping_of_a_sample_validates() {
    let v = validator();
    // As written (only what the file says, `extends` already merged), and fully resolved.
    for file in [
        "experiments/doge-tiny.kdl",
        "experiments/doge-20m.kdl",
        "experiments/doge-tiny-sweep.kdl",
    ] {
        let raw = doge::experiment::to_json(Path::new(file), &[]).unwrap();
        assert_valid(&v, &raw, &format!("{file} (KDL -> JSON)"));
        let exp = doge::experiment::load(Path::new(file), &[]).unwrap();
        assert_valid(
            &v,
            &doge::experiment::canonical_json(&exp),
            &format!("{file} (resolved)"),
        );
    }
}

#[test]
fn every_preset_resolves_to_valid_json() {
    let v = validator();
    for entry in std::fs::read_dir("experiments").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "kdl") {
            let exp = doge::experiment::load(&path, &[]).unwrap();
            assert_valid(
                &v,
                &doge::experiment::canonical_json(&exp),
                &path.display().to_string(),
            );
        }
    }
}

#[test]
fn the_validator_rejects_what_the_kdl_mapping_rejects() {
    let v = validator();
    let good = doge::experiment::to_json(Path::new("experiments/doge-tiny.kdl"), &[]).unwrap();
    assert!(v.is_valid(&good));
    let mut unknown = good.clone();
    unknown["colour"] = json!("red");
    assert!(!v.is_valid(&unknown), "unknown keys are errors");
    let mut wrong = good.clone();
    wrong["stage"][0]["schedule"] = json!({"kind": "wsd", "warmup": 0.1, "min_lr_rate": 0.0});
    assert!(!v.is_valid(&wrong), "snake_case key inside a schedule");
    let mut kind = good.clone();
    kind["stage"][0]["kind"] = json!("finetune");
    assert!(!v.is_valid(&kind), "unknown stage kind");
    let mut ty = good;
    ty["data"]["seq-len"] = json!("long");
    assert!(!v.is_valid(&ty), "wrong type");
}

#[test]
fn schema_documents_the_kdl_mapping() {
    let s = schema_json();
    assert_eq!(s["$defs"]["Stage"]["x-kdl-arg"], "kind");
    assert_eq!(s["$defs"]["Schedule"]["x-kdl-arg"], "kind");
    assert_eq!(s["$defs"]["Source"]["x-kdl-arg"], "from");
    assert_eq!(s["$defs"]["ModelSpec"]["x-kdl-arg"], "preset");
    assert_eq!(s["properties"]["registry"]["x-path"], "local-or-url");
    assert_eq!(s["properties"]["runs-dir"]["x-path"], "local");
}
