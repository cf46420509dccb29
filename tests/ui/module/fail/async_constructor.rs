use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    async fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }
}

fn main() {}
