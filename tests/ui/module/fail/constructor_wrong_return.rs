use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Option<Self> {
        Some(Thing)
    }
}

fn main() {}
