use axon::prelude::*;

/// The smallest module: no config, no callbacks.
pub struct Minimal;

#[module]
impl Minimal {
    fn new(_api: &ModuleApi) -> Self {
        Minimal
    }
}

fn main() {}
