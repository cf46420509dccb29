//! The callback catalog, generated from the one table in `axon-catalog`
//! (`macros/catalog/src/lib.rs`) into `catalog.rs` by `cargo xtask
//! codegen`: per category a struct of slots and one dispatcher per callback
//! that applies the combine rule and failure policy.

mod catalog;
pub mod combine;
mod dispatch;
mod types;
mod verdicts;

pub use catalog::*;
pub use dispatch::{
    BoxFuture, CallbackFailure, CallbackInfo, CategoryInfo, Entry, FailureDetails, FailureKind,
    FailurePolicy, Guarded, Instance, ModuleRef, Slot,
};
pub use types::*;
pub use verdicts::*;
