//! Every module crate under `modules/` is linked into the stock binary: a
//! crate left out of `homeserver_main!` would silently lose its modules.

use std::process::Command;

#[test]
fn every_crate_under_modules_is_in_the_stock_binary() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut crates: Vec<String> = std::fs::read_dir(format!("{root}/modules"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| {
            let manifest = std::fs::read_to_string(e.path().join("Cargo.toml")).unwrap();
            let name_line = manifest
                .lines()
                .find(|l| l.trim_start().starts_with("name"))
                .expect("a package name");
            name_line.split('"').nth(1).unwrap().to_string()
        })
        .collect();
    crates.sort();
    let out = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["--list-modules", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut linked: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["crate"].as_str().unwrap().to_string())
        .collect();
    linked.sort();
    linked.dedup();
    assert_eq!(
        linked, crates,
        "add the missing crates to axon_server::homeserver_main!(…) in src/main.rs"
    );
}

#[test]
fn list_modules_json_describes_each_module() {
    let out = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["--list-modules", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let demo = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["crate"] == "axon_demo")
        .unwrap();
    assert_eq!(demo["path"], "axon_demo::DemoModule");
    assert_eq!(demo["crate"], "axon_demo");
    assert_eq!(
        demo["callbacks"],
        serde_json::json!({ "spam_checker": ["user_may_create_room"] })
    );
    assert_eq!(
        demo["description"],
        "Refuses room creation to one user; serves `GET /_synapse/client/demo/hello?name=X`."
    );
}
