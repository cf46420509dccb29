use axon::prelude::*;

#[module]
pub struct NotAnImpl;

fn main() {}
