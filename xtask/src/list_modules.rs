//! `cargo xtask list-modules`: the module crates under `modules/`, with the
//! module paths and callbacks the stock binary reports for them.

use crate::util::{cargo, module_crates};
use std::path::Path;

pub fn run(root: &Path) -> Result<(), String> {
    let crates = module_crates(root)?;
    let output = cargo()
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--package",
            "axon-homeserver",
            "--bin",
            "axon",
            "--",
            "--list-modules",
            "--json",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the stock binary failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let listed = String::from_utf8_lossy(&output.stdout).to_string();
    for (name, dir) in crates {
        let relative = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
        println!("{name} ({relative})");
        let mut any = false;
        // Each module is one JSON object: {"callbacks":[…],"crate":"…",…,"path":"…"}.
        for module in listed.split("},{") {
            if module.contains(&format!("\"crate\":\"{name}\"")) {
                any = true;
                let path = field(module, "path").unwrap_or_default();
                let callbacks = module
                    .split("\"callbacks\":[")
                    .nth(1)
                    .and_then(|rest| rest.split(']').next())
                    .unwrap_or("")
                    .replace('"', "");
                let mut categories: Vec<&str> = callbacks
                    .split(',')
                    .filter_map(|c| c.split('.').next())
                    .filter(|c| !c.is_empty())
                    .collect();
                categories.dedup();
                println!(
                    "  {path}: {}",
                    if categories.is_empty() {
                        "no callbacks".to_string()
                    } else {
                        categories.join(", ")
                    }
                );
            }
        }
        if !any {
            println!("  (not linked into the stock binary: add it to axon::homeserver_main! in src/main.rs)");
        }
    }
    Ok(())
}

fn field(object: &str, key: &str) -> Option<String> {
    object
        .split(&format!("\"{key}\":\""))
        .nth(1)?
        .split('"')
        .next()
        .map(str::to_string)
}
