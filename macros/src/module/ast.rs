//! The model of a `#[module]` impl, built from syn's AST. Every node keeps the
//! user's tokens so errors can point at them.

use super::ctxt::Ctxt;
use crate::catalog;
use proc_macro2::TokenStream;
use syn::{spanned::Spanned, FnArg, ImplItem, ImplItemFn, ItemImpl, LitStr, Type};

pub const CALLBACK: &str = "callback";
pub const CONSTRUCTOR: &str = "new";
pub const START: &str = "start";
pub const STOP: &str = "stop";

pub struct Module<'a> {
    pub self_ty: &'a Type,
    /// `#[module(name = "...")]`
    pub name: Option<LitStr>,
    /// `#[module(status = "...")]`: stable (the default), experimental or deprecated.
    pub status: Option<LitStr>,
    /// Whether the impl calls `register_web_resource` (what `--list-modules` reports).
    pub serves_web: bool,
    pub doc: String,
    pub constructor: Option<&'a ImplItemFn>,
    pub start: Option<&'a ImplItemFn>,
    pub stop: Option<&'a ImplItemFn>,
    pub callbacks: Vec<Callback<'a>>,
}

pub struct Callback<'a> {
    pub func: &'a ImplItemFn,
    /// The `category` of `#[callback(category)]`.
    pub category: syn::Ident,
    /// Filled in by `check` once the category and name are known.
    pub entry: std::cell::Cell<Option<&'static catalog::Callback>>,
}

impl<'a> Module<'a> {
    pub fn parse(cx: &Ctxt, args: TokenStream, item: &'a ItemImpl) -> Option<Module<'a>> {
        let ModuleArgs { name, status } = parse_module_args(cx, args);
        if let Some((_, path, _)) = &item.trait_ {
            cx.error_spanned_by(
                path,
                "#[module] goes on an inherent impl, not a trait impl\n\
                 help: write `#[module] impl MyModule { ... }` and put the callbacks there",
            );
            return None;
        }
        if !item.generics.params.is_empty() {
            cx.error_spanned_by(
                &item.generics,
                "a #[module] cannot be generic: the homeserver instantiates it from config\n\
                 help: use a concrete type, and put the varying part in its config",
            );
            return None;
        }
        let mut module = Module {
            self_ty: &item.self_ty,
            name,
            status,
            serves_web: mentions(
                quote::ToTokens::to_token_stream(item),
                "register_web_resource",
            ),
            doc: doc_string(&item.attrs),
            constructor: None,
            start: None,
            stop: None,
            callbacks: Vec::new(),
        };
        for impl_item in &item.items {
            let ImplItem::Fn(func) = impl_item else {
                continue;
            };
            let attrs: Vec<&syn::Attribute> = func
                .attrs
                .iter()
                .filter(|a| a.path().is_ident(CALLBACK))
                .collect();
            if let Some(extra) = attrs.get(1) {
                cx.error_spanned_by(
                    extra,
                    "a method can be only one callback\n\
                     help: write a second method for the other callback",
                );
            }
            match attrs.first() {
                Some(attr) => {
                    if let Some(category) = parse_callback_attr(cx, attr) {
                        module.callbacks.push(Callback {
                            func,
                            category,
                            entry: std::cell::Cell::new(None),
                        });
                    }
                }
                None => {
                    let ident = func.sig.ident.to_string();
                    match ident.as_str() {
                        CONSTRUCTOR => module.constructor = Some(func),
                        START => module.start = Some(func),
                        STOP => module.stop = Some(func),
                        _ => {}
                    }
                }
            }
        }
        Some(module)
    }

    /// Position of the constructor's config parameter type, if it takes one.
    pub fn config_type(&self) -> Option<&'a Type> {
        let ctor = self.constructor?;
        let typed: Vec<&syn::PatType> = ctor
            .sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(t) => Some(t),
                FnArg::Receiver(_) => None,
            })
            .collect();
        if typed.len() == 2 {
            Some(&typed[0].ty)
        } else {
            None
        }
    }
}

/// The arguments of `#[module(...)]`.
#[derive(Default)]
pub struct ModuleArgs {
    pub name: Option<LitStr>,
    pub status: Option<LitStr>,
}

/// What `status = "..."` may say.
pub const STATUSES: &[&str] = &["stable", "experimental", "deprecated"];

fn parse_module_args(cx: &Ctxt, args: TokenStream) -> ModuleArgs {
    let mut parsed = ModuleArgs::default();
    if args.is_empty() {
        return parsed;
    }
    let parser = syn::meta::parser(|meta| {
        let slot = if meta.path.is_ident("name") {
            &mut parsed.name
        } else if meta.path.is_ident("status") {
            &mut parsed.status
        } else {
            return Err(meta.error(
                "unknown #[module] argument\nhelp: the arguments are `name` and `status`: `#[module(name = \"my_modules.MyModule\", status = \"experimental\")]`",
            ));
        };
        let value: LitStr = meta.value()?.parse()?;
        if slot.is_some() {
            return Err(meta.error("duplicate argument"));
        }
        if value.value().trim().is_empty() {
            return Err(syn::Error::new(value.span(), "the value cannot be empty"));
        }
        if meta.path.is_ident("status") && !STATUSES.contains(&value.value().as_str()) {
            return Err(syn::Error::new(
                value.span(),
                format!(
                    "unknown module status `{}`\nhelp: write one of {}",
                    value.value(),
                    STATUSES
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        *slot = Some(value);
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.error(e);
    }
    parsed
}

fn parse_callback_attr(cx: &Ctxt, attr: &syn::Attribute) -> Option<syn::Ident> {
    let help = format!(
        "expected `#[callback(category)]`\nhelp: the categories are: {}",
        catalog::CATALOG
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &attr.meta {
        syn::Meta::List(list) => match syn::parse2::<syn::Ident>(list.tokens.clone()) {
            Ok(ident) => Some(ident),
            Err(_) => {
                cx.error(syn::Error::new(list.tokens.span(), help));
                None
            }
        },
        other => {
            cx.error_spanned_by(other, help);
            None
        }
    }
}

fn doc_string(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|l| l.trim().to_string())
        .collect();
    lines.join("\n").trim().to_string()
}

/// The impl as the user wrote it, minus `#[callback]` and `#[module]` helper attributes.
pub fn strip_helper_attrs(item: &ItemImpl) -> ItemImpl {
    let mut item = item.clone();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(func) = impl_item {
            func.attrs.retain(|a| !a.path().is_ident(CALLBACK));
        }
    }
    item
}

/// Whether `ident` appears anywhere in `tokens`.
fn mentions(tokens: TokenStream, ident: &str) -> bool {
    tokens.into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(i) => i == ident,
        proc_macro2::TokenTree::Group(g) => mentions(g.stream(), ident),
        _ => false,
    })
}
