use axon::prelude::*;

pub struct Thing;

#[module]
impl Default for Thing {
    fn default() -> Self {
        Thing
    }
}

fn main() {}
