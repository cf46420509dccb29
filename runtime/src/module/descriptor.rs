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
