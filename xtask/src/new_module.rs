//! `cargo xtask new-module NAME`: a module crate under `modules/NAME` with a
//! typed config, one callback and a passing end-to-end test, linked into the
//! stock binary and listed (commented) in the sample config. Every check
//! happens before anything is written: a refusal changes nothing.

use crate::util::{camel_case, module_crates};
use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/lib.rs.tmpl");
const E2E_RS: &str = include_str!("../templates/e2e.rs.tmpl");

/// Names Cargo or this workspace already use.
const RESERVED: &[&str] = &[
    "axon",
    "axon_macros",
    "axon_homeserver",
    "xtask",
    "test",
    "core",
    "std",
    "alloc",
    "self",
    "super",
    "crate",
];

fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__");
    if !valid {
        return Err(format!(
            "`{name}` is not a valid module crate name: use lowercase letters, digits and single underscores, starting with a letter (such as `no_spam`)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!("`{name}` is reserved; choose another name"));
    }
    Ok(())
}

/// The files to write, in full, before any is written.
struct Plan {
    writes: Vec<(PathBuf, String)>,
}

fn insert_dependency(manifest: &str, name: &str) -> Result<String, String> {
    let marker = "[dependencies]\n";
    let start = manifest
        .find(marker)
        .ok_or("the root Cargo.toml has no [dependencies] section")?
        + marker.len();
    let end = manifest[start..]
        .find("\n[")
        .map(|i| start + i + 1)
        .unwrap_or(manifest.len());
    let mut lines: Vec<&str> = manifest[start..end]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let line = format!("{name} = {{ path = \"modules/{name}\" }}");
    lines.push(&line);
    lines.sort();
    Ok(format!(
        "{}{}\n\n{}",
        &manifest[..start],
        lines.join("\n"),
        &manifest[end..]
    ))
}

fn insert_in_main(main: &str, name: &str) -> Result<String, String> {
    let call = "axon_server::homeserver_main!(";
    let start = main
        .find(call)
        .ok_or("src/main.rs does not call axon_server::homeserver_main!")?
        + call.len();
    let end = start
        + main[start..]
            .find(')')
            .ok_or("unterminated axon_server::homeserver_main!")?;
    let mut crates: Vec<String> = main[start..end]
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    crates.push(name.to_string());
    crates.sort();
    Ok(format!(
        "{}{}{}",
        &main[..start],
        crates.join(", "),
        &main[end..]
    ))
}

/// The module's example config: shown by `axon --list-modules`, and checked
/// through its config type by the workspace's tests.
const EXAMPLE_YAML: &str = "modules:\n  - module: __NAME__::__TYPE__\n    config:\n      blocked: [\"@spammer:example.com\"]\n";

fn sample_entry(name: &str, type_name: &str) -> String {
    format!(
        "\n# {name}: refuses room creation to the users in `blocked`.\n#modules:\n#  - module: {name}::{type_name}\n#    config:\n#      blocked: [\"@spammer:example.com\"]\n"
    )
}

fn plan(root: &Path, name: &str) -> Result<Plan, String> {
    check_name(name)?;
    let dir = root.join("modules").join(name);
    if dir.exists() {
        return Err(format!(
            "modules/{name} exists already; choose another name"
        ));
    }
    if module_crates(root)?
        .iter()
        .any(|(crate_name, _)| crate_name == name)
    {
        return Err(format!(
            "a module crate named `{name}` exists already; choose another name"
        ));
    }
    let type_name = camel_case(name);
    let fill = |template: &str| {
        template
            .replace("__NAME__", name)
            .replace("__TYPE__", &type_name)
    };
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let manifest_path = root.join("Cargo.toml");
    let main_path = root.join("src/main.rs");
    let template_path = root.join("runtime/server/src/config/sample.yaml");
    let sample_path = root.join("homeserver.yaml");
    let template = read(&template_path)? + &sample_entry(name, &type_name);
    Ok(Plan {
        writes: vec![
            (dir.join("Cargo.toml"), fill(CARGO_TOML)),
            (dir.join("src/lib.rs"), fill(LIB_RS)),
            (dir.join("example.yaml"), fill(EXAMPLE_YAML)),
            (dir.join("tests/e2e.rs"), fill(E2E_RS)),
            (
                manifest_path.clone(),
                insert_dependency(&read(&manifest_path)?, name)?,
            ),
            (main_path.clone(), insert_in_main(&read(&main_path)?, name)?),
            (template_path.clone(), template.clone()),
            (sample_path, crate::codegen::sample_config(&template)),
        ],
    })
}

pub fn run(root: &Path, name: &str) -> Result<(), String> {
    let plan = plan(root, name)?;
    for (path, text) in &plan.writes {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!(
        "created modules/{name}: module path `{name}::{}`",
        camel_case(name)
    );
    println!(
        "linked into the stock binary (src/main.rs) and listed, commented, in homeserver.yaml"
    );
    println!("next: cargo test -p {name}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("no_spam").is_ok());
        assert!(check_name("NoSpam").is_err());
        assert!(check_name("1spam").is_err());
        assert!(check_name("no-spam").is_err());
        assert!(check_name("axon").is_err());
        assert!(check_name("spam_").is_err());
    }

    #[test]
    fn edits() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\naxon = { path = \"runtime\" }\naxon_demo = { path = \"modules/demo\" }\n\n[dev-dependencies]\nfoo = \"1\"\n";
        let edited = insert_dependency(manifest, "zed").unwrap();
        assert!(edited.contains("axon_demo = { path = \"modules/demo\" }\nzed = { path = \"modules/zed\" }\n\n[dev-dependencies]"), "{edited}");
        let main = "//! doc\n\naxon_server::homeserver_main!(axon_demo);\n";
        assert_eq!(
            insert_in_main(main, "abc").unwrap(),
            "//! doc\n\naxon_server::homeserver_main!(abc, axon_demo);\n"
        );
    }
}
