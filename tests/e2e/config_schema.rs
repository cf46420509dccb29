//! `axon --config-schema`: a JSON Schema of the whole config, the
//! homeserver's keys and each compiled-in module's `config:`, checked by a
//! real validator (boon) against the configs an operator writes.

use axon_testkit::test_config;
use serde_json::Value;
use std::process::Command;

struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn from_binary() -> Validator {
        let out = Command::new(env!("CARGO_BIN_EXE_axon"))
            .arg("--config-schema")
            .output()
            .unwrap();
        assert!(out.status.success());
        let schema: Value = serde_json::from_slice(&out.stdout).expect("the schema is JSON");
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler
            .add_resource("file:///axon-config.schema.json", schema)
            .unwrap();
        let index = compiler
            .compile("file:///axon-config.schema.json", &mut schemas)
            .unwrap_or_else(|e| panic!("not a valid JSON Schema: {e:#}"));
        Validator { schemas, index }
    }

    /// The YAML checked against the schema: `Ok`, or the validator's report.
    fn check(&self, yaml: &str) -> Result<(), String> {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        let json = serde_json::to_value(value).unwrap();
        self.schemas
            .validate(&json, self.index)
            .map_err(|e| format!("{e:#}"))
    }
}

#[test]
fn the_sample_config_and_a_generated_one_validate() {
    let v = Validator::from_binary();
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/homeserver.yaml")).unwrap();
    v.check(&sample).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["--generate-config", "--server-name", "example.org"])
        .output()
        .unwrap();
    v.check(&String::from_utf8(out.stdout).unwrap()).unwrap();
}

#[test]
fn every_module_example_validates_and_module_configs_are_checked_by_their_types() {
    let v = Validator::from_binary();
    let dir = tempfile::tempdir().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/modules");
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        let example = entry.path().join("example.yaml");
        let text = std::fs::read_to_string(&example).unwrap();
        v.check(&test_config(dir.path(), &text))
            .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    }

    let bad_type =
        "modules:\n  - module: mjolnir_antispam::Module\n    config: {block_invites: 'yes'}\n";
    let report = v.check(&test_config(dir.path(), bad_type)).unwrap_err();
    assert!(
        report.contains("/modules/0/config/block_invites"),
        "{report}"
    );

    let unknown_key =
        "modules:\n  - module: freeze_room::FreezeRoom\n    config: {unfreeze_blacklst: []}\n";
    let report = v.check(&test_config(dir.path(), unknown_key)).unwrap_err();
    assert!(report.contains("unfreeze_blacklst"), "{report}");

    let missing = "modules:\n  - module: email_account_validity::EmailAccountValidity\n    config: {period: 6w}\n";
    let report = v.check(&test_config(dir.path(), missing)).unwrap_err();
    assert!(report.contains("renew_at"), "{report}");

    let bad_duration = "modules:\n  - module: email_account_validity::EmailAccountValidity\n    config: {period: 6 weeks, renew_at: 1w}\n";
    assert!(v.check(&test_config(dir.path(), bad_duration)).is_err());
}

#[test]
fn module_paths_and_homeserver_keys_are_checked() {
    let v = Validator::from_binary();
    let dir = tempfile::tempdir().unwrap();
    let unknown_module = "modules:\n  - module: freeze_room::FreezeRom\n";
    let report = v
        .check(&test_config(dir.path(), unknown_module))
        .unwrap_err();
    assert!(report.contains("/modules/0/module"), "{report}");
    // A disabled entry may name a module this binary lacks.
    v.check(&test_config(
        dir.path(),
        "modules:\n  - module: not_built::Thing\n    enabled: false\n",
    ))
    .unwrap();
    let bad_key = "modules:\n  - module: freeze_room::FreezeRoom\n    timeout: 5s\n";
    assert!(v.check(&test_config(dir.path(), bad_key)).is_err());

    let bad_homeserver = test_config(dir.path(), "")
        .replace("enable_registration: true", "enable_registration: maybe");
    let report = v.check(&bad_homeserver).unwrap_err();
    assert!(report.contains("/enable_registration"), "{report}");
    let bad_size = test_config(dir.path(), "max_upload_size: [50]\n");
    assert!(v.check(&bad_size).is_err());
}
