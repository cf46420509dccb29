//! The semantic rules of a `#[module]` impl, one small function each.

use super::ast::{Callback, Module};
use super::ctxt::Ctxt;
use crate::catalog;
use syn::{spanned::Spanned, FnArg, ImplItemFn};

pub fn check(cx: &Ctxt, module: &Module) {
    check_constructor(cx, module);
    for hook in [module.start, module.stop].into_iter().flatten() {
        check_lifecycle_hook(cx, hook);
    }
    for callback in &module.callbacks {
        check_callback(cx, callback);
    }
    check_duplicates(cx, module);
    check_pairs(cx, module);
}

const CONSTRUCTOR_HELP: &str =
    "help: write `fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError>` \
     (or `fn new(api: &ModuleApi) -> Result<Self, ConfigError>` for a module without config)";

fn check_constructor(cx: &Ctxt, module: &Module) {
    let Some(ctor) = module.constructor else {
        cx.error_spanned_by(
            module.self_ty,
            format!("a #[module] impl needs a constructor `fn new`\n{CONSTRUCTOR_HELP}"),
        );
        return;
    };
    let sig = &ctor.sig;
    if let Some(asyncness) = sig.asyncness {
        cx.error_spanned_by(
            asyncness,
            "the constructor cannot be async\nhelp: do async set-up in `async fn start(&self) -> Result<(), ModuleError>`, which runs before the server listens",
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            format!("the constructor cannot be generic\n{CONSTRUCTOR_HELP}"),
        );
    }
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        cx.error_spanned_by(
            r,
            format!("the constructor takes no `self`\n{CONSTRUCTOR_HELP}"),
        );
        return;
    }
    match sig.inputs.len() {
        1 | 2 => {}
        0 => cx.error(syn::Error::new(
            sig.paren_token.span.join(),
            format!("the constructor takes the module's config and the `&ModuleApi`\n{CONSTRUCTOR_HELP}"),
        )),
        _ => cx.error_spanned_by(
            &sig.inputs,
            format!("the constructor takes at most two arguments, the config and the `&ModuleApi`\n{CONSTRUCTOR_HELP}"),
        ),
    }
    if let syn::ReturnType::Default = sig.output {
        cx.error_spanned_by(
            &sig.ident,
            format!("the constructor must return the module\n{CONSTRUCTOR_HELP}"),
        );
    }
}

fn check_lifecycle_hook(cx: &Ctxt, hook: &ImplItemFn) {
    let name = hook.sig.ident.to_string();
    let help = format!("help: write `async fn {name}(&self) -> Result<(), ModuleError>`");
    if hook.sig.asyncness.is_none() {
        cx.error_spanned_by(
            hook.sig.fn_token,
            format!("the `{name}` hook must be async\n{help}"),
        );
    }
    if !matches!(hook.sig.inputs.first(), Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none())
        || hook.sig.inputs.len() != 1
    {
        cx.error(syn::Error::new(
            hook.sig.paren_token.span.join(),
            format!("the `{name}` hook takes only `&self`\n{help}"),
        ));
    }
}

fn check_callback(cx: &Ctxt, callback: &Callback) {
    let sig = &callback.func.sig;
    let category_name = callback.category.to_string();
    let Some(category) = catalog::category(&category_name) else {
        let names: Vec<&str> = catalog::CATALOG.iter().map(|c| c.name).collect();
        let mut message = format!("unknown callback category `{category_name}`");
        if let Some(close) = closest(&category_name, &names) {
            message += &format!("\nhelp: did you mean `{close}`?");
        }
        message += &format!("\nnote: the categories are: {}", names.join(", "));
        cx.error_spanned_by(&callback.category, message);
        return;
    };
    let name = sig.ident.to_string();
    let Some(entry) = category.callback(&name) else {
        let names: Vec<&str> = category.callbacks.iter().map(|c| c.name).collect();
        let mut message = format!("`{name}` is not a `{category_name}` callback");
        if let Some(close) = closest(&name, &names) {
            message += &format!("\nhelp: did you mean `{close}`?");
        } else if let Some(other) = catalog::CATALOG
            .iter()
            .find(|c| c.callbacks.iter().any(|cb| cb.name == name))
        {
            message += &format!(
                "\nhelp: `{name}` is a `{}` callback: write `#[callback({})]`",
                other.name, other.name
            );
        }
        message += &format!(
            "\nnote: the `{category_name}` callbacks are: {}",
            names.join(", ")
        );
        cx.error_spanned_by(&sig.ident, message);
        return;
    };
    callback.entry.set(Some(entry));
    let help = format!("help: write `{}`", entry.signature());
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            format!("callbacks must be `async fn`\n{help}"),
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            format!("generic callbacks are not supported\n{help}"),
        );
        return;
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(r))
            if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() => {}
        Some(FnArg::Receiver(r)) => cx.error_spanned_by(
            r,
            format!(
                "callbacks take `&self`: a module is shared by concurrent requests\n\
                 help: keep mutable state behind a `Mutex` or an atomic\n{help}"
            ),
        ),
        _ => {
            cx.error(syn::Error::new(
                sig.paren_token.span.join(),
                format!("callbacks are methods: the first argument is `&self`\n{help}"),
            ));
            return;
        }
    }
    let given: Vec<&FnArg> = sig.inputs.iter().skip(1).collect();
    let expected = entry.args.len();
    if given.len() != expected {
        let span = if given.len() > expected {
            given[expected].span()
        } else {
            sig.paren_token.span.join()
        };
        cx.error(syn::Error::new(
            span,
            format!(
                "`{name}` takes {expected} argument{} after `&self`, not {}\n{help}",
                if expected == 1 { "" } else { "s" },
                given.len()
            ),
        ));
    }
}

fn check_duplicates(cx: &Ctxt, module: &Module) {
    for (i, callback) in module.callbacks.iter().enumerate() {
        let Some(entry) = callback.entry.get() else {
            continue;
        };
        let earlier = module.callbacks[..i]
            .iter()
            .any(|c| c.entry.get().is_some_and(|e| std::ptr::eq(e, entry)));
        if earlier {
            cx.error_spanned_by(
                &callback.func.sig.ident,
                format!(
                    "`{}.{}` is implemented twice in this module\n\
                     help: a module implements each callback once; combine the two methods",
                    callback.category, entry.name
                ),
            );
        }
    }
}

fn check_pairs(cx: &Ctxt, module: &Module) {
    for callback in &module.callbacks {
        let Some(entry) = callback.entry.get() else {
            continue;
        };
        let Some(partner) = entry.paired_with else {
            continue;
        };
        let has_partner = module
            .callbacks
            .iter()
            .any(|c| c.entry.get().is_some_and(|e| e.name == partner));
        if !has_partner {
            let partner_sig = catalog::category(&callback.category.to_string())
                .and_then(|c| c.callback(partner))
                .map(|c| c.signature())
                .unwrap_or_default();
            cx.error_spanned_by(
                &callback.func.sig.ident,
                format!(
                    "`{}` callbacks come in pairs: `{}` needs `{partner}` in the same module\n\
                     help: add `#[callback({})] {partner_sig}`",
                    callback.category, entry.name, callback.category
                ),
            );
        }
    }
}

/// The closest name by edit distance, if it is close enough to be a typo.
fn closest<'n>(name: &str, names: &[&'n str]) -> Option<&'n str> {
    names
        .iter()
        .map(|n| (strsim::normalized_damerau_levenshtein(name, n), *n))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}
