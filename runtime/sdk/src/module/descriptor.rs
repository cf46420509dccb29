//! The static descriptor each `#[module]` submits, and the table of every
//! module compiled into this binary.

use super::error::LoadError;
use super::loader::LoadContext;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What `#[module]` knows about a module at compile time.
#[derive(Debug)]
pub struct ModuleDescriptor {
    /// The path a `modules:` entry names it by.
    pub path: &'static str,
    pub type_name: &'static str,
    pub crate_name: &'static str,
    pub crate_version: &'static str,
    /// Its crate's `license` (empty if none).
    pub license: &'static str,
    /// `stable`, `experimental` or `deprecated` (`#[module(status = "...")]`).
    pub status: &'static str,
    /// Whether it registers web resources (it calls `register_web_resource`).
    pub serves_web: bool,
    /// Its crate's `example.yaml`: a `modules:` list using it.
    pub example: Option<&'static str>,
    /// The JSON Schema of its `config:`, if its config type derives
    /// `schemars::JsonSchema`.
    pub config_schema: fn() -> Option<serde_json::Value>,
    /// The doc comment on its `#[module]` impl.
    pub description: &'static str,
    /// `(category, callback)` for each callback it implements.
    pub callbacks: &'static [(&'static str, &'static str)],
    pub has_config: bool,
    pub has_start: bool,
    pub has_stop: bool,
    /// Deserializes the config, constructs the module and registers its callbacks.
    pub load: fn(&mut LoadContext<'_>) -> Result<(), LoadError>,
}

inventory::collect!(ModuleDescriptor);

/// Every module compiled into this binary, by path; built once, sorted
/// (inventory's order is unspecified).
pub struct CompiledModules {
    by_path: BTreeMap<&'static str, &'static ModuleDescriptor>,
    /// Paths claimed by more than one module: the error names both crates.
    conflicts: BTreeMap<&'static str, Vec<&'static ModuleDescriptor>>,
}

pub fn compiled_modules() -> &'static CompiledModules {
    static MODULES: OnceLock<CompiledModules> = OnceLock::new();
    MODULES.get_or_init(|| {
        let mut by_path = BTreeMap::new();
        let mut conflicts: BTreeMap<&'static str, Vec<&'static ModuleDescriptor>> = BTreeMap::new();
        for descriptor in inventory::iter::<ModuleDescriptor> {
            if let Some(previous) = by_path.insert(descriptor.path, descriptor) {
                conflicts
                    .entry(descriptor.path)
                    .or_insert_with(|| vec![previous])
                    .push(descriptor);
            }
        }
        for claimants in conflicts.values_mut() {
            claimants.sort_by_key(|d| (d.crate_name, d.type_name));
        }
        CompiledModules { by_path, conflicts }
    })
}

impl CompiledModules {
    pub fn iter(&self) -> impl Iterator<Item = &'static ModuleDescriptor> + '_ {
        self.by_path.values().copied()
    }

    pub fn paths(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_path.keys().copied()
    }

    /// The module named `path`, or an error saying what is compiled in.
    pub fn find(&self, path: &str) -> Result<&'static ModuleDescriptor, String> {
        if let Some(claimants) = self.conflicts.get(path) {
            let names: Vec<String> = claimants
                .iter()
                .map(|d| format!("`{}` in crate `{}`", d.type_name, d.crate_name))
                .collect();
            return Err(format!(
                "module path `{path}` is claimed by more than one compiled-in module ({}); give each a unique #[module(name = \"...\")]",
                names.join(" and ")
            ));
        }
        if let Some(descriptor) = self.by_path.get(path) {
            return Ok(descriptor);
        }
        let mut message = format!("unknown module `{path}`");
        if let Some(krate) = source_modules()
            .into_iter()
            .find(|(p, _)| p == path)
            .map(|(_, krate)| krate)
        {
            let mut crates: Vec<&str> = self.iter().map(|d| d.crate_name).collect();
            crates.push(&krate);
            crates.sort_unstable();
            crates.dedup();
            return Err(format!(
                "{message}: it is in crate `{krate}` under modules/, but this binary was not built with it; build one that is: `cargo xtask build-server --modules {}`",
                crates.join(",")
            ));
        }
        if let Some(close) = closest(path, self.paths()) {
            message += &format!("; did you mean `{close}`?");
        }
        if self.by_path.is_empty() {
            message += " (no modules are compiled into this binary)";
        } else {
            let all: Vec<&str> = self.paths().collect();
            message += &format!(" Modules compiled into this binary: {}", all.join(", "));
        }
        Err(message)
    }
}

/// The closest path by edit distance, compared on the type name too so
/// `demo.DemoModule` finds `axon_demo::DemoModule`.
fn closest<'a>(path: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let last = |p: &str| -> String {
        p.rsplit([':', '.'])
            .next()
            .unwrap_or(p)
            .to_ascii_lowercase()
    };
    candidates
        .map(|c| {
            let whole = strsim::normalized_damerau_levenshtein(
                &path.to_ascii_lowercase(),
                &c.to_ascii_lowercase(),
            );
            let tail = strsim::normalized_damerau_levenshtein(&last(path), &last(c));
            (whole.max(tail * 0.9), c)
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The `modules/` directory of the workspace this binary was built from.
const SOURCE_MODULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../modules");

/// `(module path, crate)` of each `#[module]` in the crates under
/// `modules/`, read from their source, if that tree is still where this
/// binary was built (so an unknown module can be told apart from one that
/// exists but was not built in). Read only when a path is unknown.
pub fn source_modules() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(dirs) = std::fs::read_dir(SOURCE_MODULES) else {
        return found;
    };
    for dir in dirs.flatten() {
        let root = dir.path();
        let Some(krate) = std::fs::read_to_string(root.join("Cargo.toml"))
            .ok()
            .and_then(|toml| axon_catalog::package_name(&toml))
        else {
            continue;
        };
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        for file in files {
            let Ok(source) = std::fs::read_to_string(&file) else {
                continue;
            };
            let Ok(relative) = file.strip_prefix(root.join("src")) else {
                continue;
            };
            let mut segments: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(segments.last().map(String::as_str), Some("lib" | "mod")) {
                segments.pop();
            }
            let prefix: String = std::iter::once(krate.clone())
                .chain(segments)
                .collect::<Vec<_>>()
                .join("::");
            for path in module_paths(&source, &prefix) {
                found.push((path, krate.clone()));
            }
        }
    }
    found
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths of the `#[module]` impls in one file: `name = "..."` if given,
/// else `prefix::Type`. Comment lines are skipped.
fn module_paths(source: &str, prefix: &str) -> Vec<String> {
    let code: Vec<&str> = source
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .collect();
    let mut paths = Vec::new();
    for (i, line) in code.iter().enumerate() {
        let Some(args) = line.strip_prefix("#[module") else {
            continue;
        };
        if let Some(name) = args
            .split("name")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
        {
            paths.push(name.to_string());
            continue;
        }
        let type_name = code[i + 1..].iter().find_map(|l| {
            let rest = l.strip_prefix("impl")?;
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        });
        if let Some(type_name) = type_name {
            paths.push(format!("{prefix}::{type_name}"));
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::module_paths;

    #[test]
    fn module_paths_come_from_the_attribute_or_the_impl() {
        let source = "//! #[module]\n//! impl Doc {}\nuse x;\n/// Docs.\n#[module]\nimpl Thing {\n}\n#[module(name = \"a.B\", status = \"experimental\")]\nimpl Other {}\n";
        assert_eq!(
            module_paths(source, "my_crate::sub"),
            ["my_crate::sub::Thing", "a.B"]
        );
    }
}
