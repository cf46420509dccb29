//! Procedural macros of Axon. Use them through the `axon` crate
//! (`use axon::prelude::*`), never directly: the code they generate names
//! `::axon::__private` paths.

use axon_catalog as catalog;

mod module;

use proc_macro::TokenStream;

/// Turns an inherent `impl` block into an Axon module: finds the constructor
/// (`fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError>`),
/// the optional `async fn start(&self)` / `async fn stop(&self)` hooks and
/// every `#[callback(category)]` method, checks them against the callback
/// catalog, and registers the module so a `modules:` entry can enable it.
///
/// `#[module(name = "my_modules.Thing")]` overrides the module path
/// (default: the Rust path of the type, `crate_name::module::Type`).
#[proc_macro_attribute]
pub fn module(args: TokenStream, input: TokenStream) -> TokenStream {
    module::expand(args.into(), input.into()).into()
}

/// Marks a method of a `#[module]` impl as a callback of a category, e.g.
/// `#[callback(spam_checker)] async fn user_may_create_room(...)`.
/// `#[module]` consumes it; used anywhere else it is an error.
#[proc_macro_attribute]
pub fn callback(_args: TokenStream, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "#[callback] is only valid on methods inside a #[module] impl block\n\
         help: put `#[module]` on the impl block: `#[module] impl MyModule { #[callback(spam_checker)] async fn ... }`",
    )
    .to_compile_error();
    quote::quote!(#error #input).into()
}
