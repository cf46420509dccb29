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
            "--verbose",
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
    let modules = parse_verbose(&listed);
    for (name, dir) in crates {
        let relative = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
        println!("{name} ({relative})");
        let mut any = false;
        for module in modules.iter().filter(|m| m.crate_name == name) {
            any = true;
            println!(
                "  {}: {}",
                module.path,
                if module.categories.is_empty() {
                    "no callbacks".to_string()
                } else {
                    module.categories.join(", ")
                }
            );
        }
        if !any {
            println!("  (not linked into the stock binary: add it to axon_server::homeserver_main! in src/main.rs)");
        }
    }
    Ok(())
}

/// One module as `axon --list-modules --verbose` describes it.
struct Listed {
    path: String,
    crate_name: String,
    /// The callback categories it implements, in order.
    categories: Vec<String>,
}

/// Reads the `--verbose` listing: a block per module, its path unindented,
/// then `  crate:  NAME VERSION …` and `  callbacks:  CATEGORY: a, b` lines
/// (further categories on indented lines of their own).
fn parse_verbose(text: &str) -> Vec<Listed> {
    let mut modules: Vec<Listed> = Vec::new();
    let mut in_callbacks = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            modules.push(Listed {
                path: line.trim().to_string(),
                crate_name: String::new(),
                categories: Vec::new(),
            });
            in_callbacks = false;
            continue;
        }
        let Some(module) = modules.last_mut() else {
            continue;
        };
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("crate:") {
            module.crate_name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            in_callbacks = false;
        } else if let Some(rest) = trimmed.strip_prefix("callbacks:") {
            in_callbacks = rest.trim() != "none";
            if in_callbacks {
                push_category(module, rest);
            }
        } else if in_callbacks && !trimmed.contains(":  ") && line.starts_with("      ") {
            push_category(module, trimmed);
        } else {
            in_callbacks = false;
        }
    }
    modules
}

fn push_category(module: &mut Listed, line: &str) {
    if let Some((category, _)) = line.trim().split_once(':') {
        module.categories.push(category.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::parse_verbose;

    #[test]
    fn reads_the_verbose_listing() {
        let text = "a::A\n  crate:          a 0.1.0 (license: MIT)\n  status:         stable\n  callbacks:      spam_checker: x, y\n                  third_party_rules: z\n  web resources:  no\nb::B\n  crate:          b 0.2.0 (license: none given)\n  callbacks:      none\n  web resources:  yes\n";
        let modules = parse_verbose(text);
        assert_eq!(modules.len(), 2);
        assert_eq!(modules[0].path, "a::A");
        assert_eq!(modules[0].crate_name, "a");
        assert_eq!(modules[0].categories, ["spam_checker", "third_party_rules"]);
        assert_eq!(modules[1].crate_name, "b");
        assert!(modules[1].categories.is_empty());
    }
}
