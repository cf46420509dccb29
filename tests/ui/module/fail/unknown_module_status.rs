use axon::prelude::*;

pub struct Thing;

#[module(status = "beta")]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }
}

fn main() {}
