//! Generates the runtime side of the catalog: for each category a struct of
//! slots with one dispatcher per callback, the registration item that
//! `#[module]` output calls, and the catalog's metadata.

use crate::catalog::{camel_case, Callback, Category, Combine, Failure, CATALOG};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use syn::visit_mut::VisitMut;

pub fn expand() -> TokenStream {
    let categories = CATALOG.iter().map(category);
    let fields = CATALOG.iter().map(|c| {
        let name = Ident::new(c.name, Span::call_site());
        let ty = category_struct(c);
        let doc = c.doc;
        quote!(#[doc = #doc] pub #name: #name::#ty,)
    });
    let order_arms = CATALOG.iter().flat_map(|c| {
        let cat = Ident::new(c.name, Span::call_site());
        c.callbacks.iter().map(move |cb| {
            let name = Ident::new(cb.name, Span::call_site());
            let qualified = format!("{}.{}", c.name, cb.name);
            quote!(f(#qualified, self.#cat.#name.modules());)
        })
    });
    let meta = CATALOG.iter().map(|c| {
        let name = c.name;
        let doc = c.doc;
        let callbacks = c.callbacks.iter().map(|cb| {
            let cb_name = cb.name;
            let doc = cb.doc;
            let signature = cb.signature();
            let combine = cb.combine.rule_type();
            let failure = match cb.on_failure {
                Failure::FailOpen => quote!(FailurePolicy::FailOpen),
                Failure::Propagate => quote!(FailurePolicy::Propagate),
                Failure::Refuse { status, errcode, message } => {
                    quote!(FailurePolicy::Refuse { status: #status, errcode: #errcode, message: #message })
                }
            };
            quote!(CallbackInfo { name: #cb_name, doc: #doc, signature: #signature, combine: #combine, on_failure: #failure })
        });
        quote!(CategoryInfo { name: #name, doc: #doc, callbacks: &[#(#callbacks),*] })
    });
    // Every concrete output type is a `CallbackOutput`; `Option<T>` has one
    // blanket impl in the runtime.
    let mut outputs: Vec<&str> = CATALOG
        .iter()
        .flat_map(|c| c.callbacks.iter().map(|cb| cb.output))
        .filter(|output| !output.starts_with("Option<"))
        .collect();
    outputs.sort_unstable();
    outputs.dedup();
    let output_impls = outputs.iter().map(|output| {
        let ty = parse_type(output);
        quote!(impl crate::__private::CallbackOutput for #ty {})
    });
    quote! {
        #(#categories)*
        #(#output_impls)*

        /// Every callback registered by the loaded modules, in config order.
        /// Built once at startup; read-only afterwards.
        #[derive(Default)]
        pub struct Callbacks {
            #(#fields)*
        }

        impl Callbacks {
            /// Calls `f` with each callback's qualified name and the modules
            /// implementing it, in the order they run.
            pub fn for_each_callback(&self, mut f: impl FnMut(&'static str, Vec<&ModuleRef>)) {
                #(#order_arms)*
            }
        }

        /// The catalog: every category and callback with its combine rule and failure policy.
        pub static CATALOG: &[CategoryInfo] = &[#(#meta),*];
    }
}

fn category_struct(c: &Category) -> Ident {
    Ident::new(&camel_case(c.name), Span::call_site())
}

/// Gives every reference in a type the lifetime `'a`.
struct WithLifetime;
impl VisitMut for WithLifetime {
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        r.lifetime = Some(syn::Lifetime::new("'a", Span::call_site()));
        syn::visit_mut::visit_type_reference_mut(self, r);
    }
}

fn parse_type(src: &str) -> syn::Type {
    syn::parse_str(src).unwrap_or_else(|e| panic!("catalog type `{src}` does not parse: {e}"))
}

fn category(c: &Category) -> TokenStream {
    let module = Ident::new(c.name, Span::call_site());
    let strukt = category_struct(c);
    let doc = c.doc;
    let slots = c.callbacks.iter().map(|cb| {
        let name = Ident::new(cb.name, Span::call_site());
        let fn_ty = fn_type_name(cb);
        quote!(pub #name: Slot<#fn_ty>,)
    });
    let fn_types = c.callbacks.iter().map(|cb| {
        let fn_ty = fn_type_name(cb);
        let output = parse_type(cb.output);
        let args = cb.args.iter().map(|a| {
            let mut ty = parse_type(a.ty);
            WithLifetime.visit_type_mut(&mut ty);
            ty
        });
        let doc = format!("The erased form of `{}.{}`.", c.name, cb.name);
        let alias = Ident::new(&cb.output_alias(), Span::call_site());
        let alias_doc = format!("What `{}.{}` returns.", c.name, cb.name);
        quote! {
            #[doc = #alias_doc]
            pub type #alias = #output;
            #[doc = #doc]
            pub type #fn_ty = for<'a> fn(&'a Instance, #(#args),*) -> BoxFuture<'a, Result<#output, ModuleError>>;
        }
    });
    let dispatchers = c.callbacks.iter().map(|cb| dispatcher(c, cb));
    let registrations = c.callbacks.iter().map(|cb| {
        let name = Ident::new(cb.name, Span::call_site());
        let fn_ty = fn_type_name(cb);
        let rule = rule_type(cb);
        let output = parse_type(cb.output);
        let qualified = format!("{}.{}", c.name, cb.name);
        quote! {
            #[doc(hidden)]
            pub fn #name(registrar: &mut Registrar<'_>, f: #fn_ty) {
                let (entry, stats) = registrar.entry(f);
                let warnings = &mut registrar.warnings;
                if registrar.callbacks.#module.#name.push(
                    entry,
                    <#rule as Combine<#output>>::ONLY_FIRST,
                    #qualified,
                    warnings,
                ) {
                    registrar.record(#qualified, stats);
                }
            }
        }
    });
    quote! {
        #[doc = #doc]
        pub mod #module {
            use super::*;

            #(#fn_types)*

            #[doc = #doc]
            #[derive(Default)]
            pub struct #strukt {
                #(#slots)*
            }

            impl #strukt {
                #(#dispatchers)*
            }

            #(#registrations)*
        }
    }
}

fn fn_type_name(cb: &Callback) -> Ident {
    format_ident!("{}Fn", camel_case(cb.name))
}

fn rule_type(cb: &Callback) -> TokenStream {
    let rule = Ident::new(cb.combine.rule_type(), Span::call_site());
    quote!(combine::#rule)
}

fn dispatcher(c: &Category, cb: &Callback) -> TokenStream {
    let name = Ident::new(cb.name, Span::call_site());
    let qualified = format!("{}.{}", c.name, cb.name);
    let output = parse_type(cb.output);
    let rule = rule_type(cb);
    let params = cb.args.iter().map(|a| {
        let n = Ident::new(a.name, Span::call_site());
        let ty = parse_type(a.ty);
        quote!(#n: #ty)
    });
    // `&mut` arguments are reborrowed for each module in turn.
    let call_args = cb.args.iter().map(|a| {
        let n = Ident::new(a.name, Span::call_site());
        if a.ty.starts_with("&mut") {
            quote!(&mut *#n)
        } else {
            quote!(#n)
        }
    });
    let combined = quote!(<#rule as Combine<#output>>::Output);
    let (ret, on_failure, ok) = match cb.on_failure {
        Failure::FailOpen => (
            combined.clone(),
            quote!(__failure.log_skipped(); continue;),
            quote!(<#rule as Combine<#output>>::finish(__state)),
        ),
        Failure::Propagate => (
            quote!(Result<#combined, CallbackFailure>),
            quote!(__failure.log_propagated(); return Err(__failure);),
            quote!(Ok(<#rule as Combine<#output>>::finish(__state))),
        ),
        Failure::Refuse {
            status,
            errcode,
            message,
        } => (
            quote!(Result<#combined, CallbackFailure>),
            quote!(__failure.log_propagated(); return Err(__failure.refused_with(#status, #errcode, #message));),
            quote!(Ok(<#rule as Combine<#output>>::finish(__state))),
        ),
    };
    let policy = match cb.on_failure {
        Failure::FailOpen => "Fails open: a module that errors, panics or times out is logged and skipped.".to_string(),
        Failure::Propagate => "Fails the request: a `ModuleError` reaches the client as it is; a panic or timeout is a 500.".to_string(),
        Failure::Refuse { status, errcode, message } => format!(
            "Fails the request: a `ModuleError` reaches the client as it is; a panic or timeout is {status} `{errcode}` \"{message}\"."
        ),
    };
    let combine_doc = match cb.combine {
        Combine::FirstNonAllow => {
            "The first module whose verdict is not allow decides; later modules are not called."
        }
        Combine::AllTrue => {
            "The first module answering `false` decides; later modules are not called."
        }
        Combine::AnyTrue => {
            "The first module answering `true` decides; later modules are not called."
        }
        Combine::FirstSome => {
            "The first module answering `Some` decides; later modules are not called."
        }
        Combine::All => "Every module is called in config order.",
        Combine::Merge => "Every module is called; the results are merged.",
        Combine::FirstRegistered => "Only the first module in config order is used.",
    };
    let doc = cb.doc;
    let among = format_ident!("{}_among", cb.name);
    let params: Vec<TokenStream> = params.collect();
    let forward = cb
        .args
        .iter()
        .map(|a| Ident::new(a.name, Span::call_site()));
    let among_doc = format!("`{}`, asking only the modules `keep` accepts (such as those that registered a login type).", cb.name);
    quote! {
        #[doc = #doc]
        #[doc = ""]
        #[doc = #combine_doc]
        #[doc = #policy]
        pub async fn #name(&self, #(#params),*) -> #ret {
            self.#among(|_| true, #(#forward),*).await
        }

        #[doc = #among_doc]
        pub async fn #among(&self, keep: impl Fn(&ModuleRef) -> bool + Send + Sync, #(#params),*) -> #ret {
            let mut __state = <#rule as Combine<#output>>::init();
            for __entry in self.#name.entries() {
                if !keep(__entry.module()) {
                    continue;
                }
                match __entry.call(#qualified, (__entry.f)(__entry.instance(), #(#call_args),*)).await {
                    Ok(__value) => {
                        if <#rule as Combine<#output>>::fold(&mut __state, __value).is_break() {
                            if <#rule as Combine<#output>>::BREAK_DENIES {
                                __entry.stats().denials.fetch_add(1, ::std::sync::atomic::Ordering::Relaxed);
                            }
                            break;
                        }
                    }
                    Err(__failure) => { #on_failure }
                }
            }
            #ok
        }
    }
}
