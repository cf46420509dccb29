use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_config: (), _api: &ModuleApi, _extra: u32) -> Result<Self, ConfigError> {
        Ok(Thing)
    }
}

fn main() {}
