use axon::prelude::*;

pub struct Config {
    pub limit: u32,
}

pub struct Thing;

#[module]
impl Thing {
    fn new(_config: Config, _api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }
}

fn main() {}
