//! The callback catalog, generated from the one table in `axon-macros`
//! (`macros/src/catalog.rs`): per category a struct of slots and one
//! dispatcher per callback that applies the combine rule and failure policy.

pub mod combine;
mod dispatch;
mod types;
mod verdicts;

pub use dispatch::{
    BoxFuture, CallbackFailure, CallbackInfo, CategoryInfo, Entry, FailureDetails, FailureKind,
    FailurePolicy, Guarded, Instance, ModuleRef, Slot,
};
pub use types::*;
pub use verdicts::*;

use crate::error::ModuleError;
use crate::module::Registrar;
use combine::Combine;
use ruma::{DeviceId, RoomAliasId, RoomId, UserId};
use std::time::Duration;

axon_macros::__define_catalog!();
