use axon::prelude::*;

pub struct Thing;

#[module(nmae = "things.Thing")]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }
}

fn main() {}
