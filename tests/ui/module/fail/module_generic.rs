use axon::prelude::*;

pub struct Thing<T>(T);

#[module]
impl<T: Send + Sync + 'static> Thing<T> {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        unimplemented!()
    }
}

fn main() {}
