use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    fn start(&self) -> Result<(), ModuleError> {
        Ok(())
    }
}

fn main() {}
