//! `#[module]`: parse the impl into a model (`ast`), check it against the
//! catalog (`check`), and generate the registration (`expand`). Errors are
//! accumulated in a `Ctxt` so one compile shows every mistake, and the user's
//! impl is always emitted so no cascade of secondary errors follows.

mod ast;
mod check;
mod ctxt;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;

pub fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => return fallback(input, vec![e]),
    };
    let item = match item {
        syn::Item::Impl(item) => item,
        other => {
            let e = syn::Error::new_spanned(
                item_keyword(&other),
                "#[module] goes on an inherent impl block\n\
                 help: write `#[module] impl MyModule { fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> { ... } }`",
            );
            return fallback(quote!(#other), vec![e]);
        }
    };
    let cx = ctxt::Ctxt::new();
    let module = ast::Module::parse(&cx, args, &item);
    if let Some(module) = &module {
        check::check(&cx, module);
    }
    let stripped = ast::strip_helper_attrs(&item);
    match (cx.check(), module) {
        (Ok(()), Some(module)) => {
            let registration = expand::registration(&module);
            let out = quote!(#stripped #registration);
            if std::env::var_os("AXON_MACROS_DEBUG").is_some() {
                eprintln!("{out}");
            }
            out
        }
        (Err(errors), _) => fallback(quote!(#stripped), errors),
        (Ok(()), None) => quote!(#stripped),
    }
}

/// The user's item as it was (helper attributes stripped) beside the errors.
fn fallback(item: TokenStream, errors: Vec<syn::Error>) -> TokenStream {
    let errors = errors.into_iter().map(|e| e.to_compile_error());
    quote!(#item #(#errors)*)
}

fn item_keyword(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Fn(f) => {
            let t = f.sig.fn_token;
            quote!(#t)
        }
        syn::Item::Struct(s) => {
            let t = s.struct_token;
            quote!(#t)
        }
        syn::Item::Enum(e) => {
            let t = e.enum_token;
            quote!(#t)
        }
        syn::Item::Trait(t) => {
            let t = t.trait_token;
            quote!(#t)
        }
        syn::Item::Mod(m) => {
            let t = m.mod_token;
            quote!(#t)
        }
        other => quote!(#other),
    }
}
