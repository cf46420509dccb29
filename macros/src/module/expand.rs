//! The registration code `#[module]` emits beside the user's impl: a load
//! function (config → constructor → callbacks and hooks) and one inventory
//! submission of the module's static descriptor.

use super::ast::Module;
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{spanned::Spanned, FnArg, ReturnType, Type};

pub fn registration(module: &Module) -> TokenStream {
    let self_ty = module.self_ty;
    let type_name = type_name(self_ty);
    let path = match &module.name {
        Some(name) => quote!(#name),
        None => quote!(::core::concat!(::core::module_path!(), "::", #type_name)),
    };
    let construct = construct(module);
    let callbacks = module
        .callbacks
        .iter()
        .map(|cb| register_callback(self_ty, cb));
    let hooks = [("start", module.start), ("stop", module.stop)]
        .into_iter()
        .filter_map(|(kind, f)| f.map(|f| register_hook(self_ty, kind, f)));
    let meta = module.callbacks.iter().filter_map(|cb| {
        let entry = cb.entry.get()?;
        let category = cb.category.to_string();
        let name = entry.name;
        Some(quote!((#category, #name)))
    });
    let doc = &module.doc;
    let has_config = module.config_type().is_some();
    let has_start = module.start.is_some();
    let has_stop = module.stop.is_some();
    let status = match &module.status {
        Some(status) => quote!(#status),
        None => quote!("stable"),
    };
    let serves_web = module.serves_web;
    // A module crate's `example.yaml`, if it has one, goes into the binary.
    let has_example = std::env::var_os("CARGO_MANIFEST_DIR")
        .is_some_and(|dir| std::path::Path::new(&dir).join("example.yaml").is_file());
    let example = if has_example {
        quote!(::core::option::Option::Some(::core::include_str!(
            ::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/example.yaml")
        )))
    } else {
        quote!(::core::option::Option::None)
    };
    // The config's JSON Schema if its type derives `schemars::JsonSchema`
    // (picked by autoref specialization; other types get none).
    let config_schema = match module.config_type() {
        Some(ty) => quote! {
            fn __axon_config_schema() -> ::core::option::Option<::axon::__private::JsonValue> {
                #[allow(unused_imports)]
                use ::axon::__private::{SchemaFromJsonSchema as _, SchemaUnknown as _};
                (&&::axon::__private::SchemaProbe::<#ty>::new()).config_schema()
            }
        },
        None => quote! {
            fn __axon_config_schema() -> ::core::option::Option<::axon::__private::JsonValue> {
                ::core::option::Option::Some(::axon::__private::no_config_schema())
            }
        },
    };
    quote! {
        const _: () = {
            #config_schema

            fn __axon_load(
                __ctx: &mut ::axon::__private::LoadContext<'_>,
            ) -> ::core::result::Result<(), ::axon::__private::LoadError> {
                #construct
                #(#callbacks)*
                #(#hooks)*
                ::core::result::Result::Ok(())
            }

            ::axon::__private::inventory::submit! {
                ::axon::__private::ModuleDescriptor {
                    path: #path,
                    type_name: #type_name,
                    crate_name: ::core::env!("CARGO_PKG_NAME"),
                    crate_version: ::core::env!("CARGO_PKG_VERSION"),
                    license: ::core::env!("CARGO_PKG_LICENSE"),
                    status: #status,
                    serves_web: #serves_web,
                    example: #example,
                    config_schema: __axon_config_schema,
                    description: #doc,
                    callbacks: &[#(#meta),*],
                    has_config: #has_config,
                    has_start: #has_start,
                    has_stop: #has_stop,
                    load: __axon_load,
                }
            }
        };
    }
}

fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        other => quote!(#other).to_string(),
    }
}

fn construct(module: &Module) -> TokenStream {
    let self_ty = module.self_ty;
    let Some(ctor) = module.constructor else {
        return TokenStream::new();
    };
    let call = match module.config_type() {
        Some(config_ty) => {
            let load_config = quote_spanned! {config_ty.span()=>
                __ctx.config::<#config_ty>()?
            };
            quote!(<#self_ty>::new(#load_config, __ctx.api()))
        }
        None => quote!({ __ctx.no_config()?; <#self_ty>::new(__ctx.api()) }),
    };
    let returns_self = match &ctor.sig.output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => {
                p.path.is_ident("Self")
                    || type_name(ty) == type_name(self_ty) && p.path.segments.len() == 1
            }
            _ => false,
        },
        ReturnType::Default => false,
    };
    let value = if returns_self {
        call
    } else {
        let span = match &ctor.sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => ctor.sig.ident.span(),
        };
        quote_spanned!(span=> __ctx.constructed::<#self_ty, _>(#call)?)
    };
    quote! {
        let __module: #self_ty = #value;
        let mut __registrar = __ctx.install(__module);
    }
}

fn register_callback(self_ty: &Type, cb: &super::ast::Callback) -> TokenStream {
    let Some(entry) = cb.entry.get() else {
        return TokenStream::new();
    };
    let category = Ident::new(&cb.category.to_string(), cb.category.span());
    let name = &cb.func.sig.ident;
    let register = Ident::new(entry.name, name.span());
    // Each argument is named with the span of the user's declared type, so a
    // type mismatch is reported on that argument.
    let args: Vec<Ident> = cb
        .func
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t.ty.span()),
            FnArg::Receiver(_) => None,
        })
        .enumerate()
        .map(|(i, span)| Ident::new(&format!("__arg{i}"), span))
        .collect();
    let output_span = match &cb.func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => name.span(),
    };
    let output = Ident::new(&entry.output_alias(), output_span);
    let convert = quote_spanned! {output_span=>
        ::axon::__private::into_callback_result::<::axon::__private::catalog::#category::#output, _>(
            __this.#name(#(#args),*).await
        )
    };
    let future = quote_spanned! {name.span()=>
        ::axon::__private::callback_future(async move { #convert })
    };
    quote! {
        ::axon::__private::catalog::#category::#register(
            &mut __registrar,
            |__this, #(#args),*| {
                let __this: &#self_ty = ::axon::__private::downcast(__this);
                #future
            },
        );
    }
}

fn register_hook(self_ty: &Type, kind: &str, hook: &syn::ImplItemFn) -> TokenStream {
    let name = &hook.sig.ident;
    let method = Ident::new(&format!("{kind}_hook"), Span::call_site());
    let output_span = match &hook.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => name.span(),
    };
    let convert = quote_spanned! {output_span=>
        ::axon::__private::into_hook_result(__this.#name().await)
    };
    let future = quote_spanned! {name.span()=>
        ::axon::__private::callback_future(async move { #convert })
    };
    quote! {
        __registrar.#method(|__this| {
            let __this: &#self_ty = ::axon::__private::downcast(__this);
            #future
        });
    }
}
