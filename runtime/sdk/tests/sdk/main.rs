//! The SDK without a server: loading `modules:` lists, the dispatchers'
//! combine rules and failure policies, web resources and lifecycle hooks.
//! One test binary; `no_alloc.rs` is its own, as it replaces the allocator.

mod dispatch;
mod loading;
mod web_and_lifecycle;
