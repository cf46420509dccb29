//! Errors found while loading the `modules:` config. Each names the entry's
//! place in the list, the module, the YAML path and what was expected.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The entry's index in the `modules:` list, if the error is about one.
    pub index: Option<usize>,
    /// The module path the entry names, if known.
    pub module: Option<String>,
    /// The YAML path of the offending value, such as `modules[1].config.rules[0]`.
    pub yaml_path: String,
    pub message: String,
}

impl LoadError {
    pub fn new(
        index: Option<usize>,
        module: Option<&str>,
        yaml_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        LoadError {
            index,
            module: module.map(str::to_string),
            yaml_path: yaml_path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(module) = &self.module {
            write!(f, "module `{module}` ")?;
        }
        write!(f, "at `{}`: {}", self.yaml_path, self.message)
    }
}

impl std::error::Error for LoadError {}

/// Every error found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in the modules config:",
            if n == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}
