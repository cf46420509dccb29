//! Web resources modules serve: validated at registration, first in config
//! order wins a path.

use crate::callbacks::ModuleRef;
use axum::routing::MethodRouter;
use axum::Router;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Something a module can serve: a handler for one path, or a router for a subtree.
pub enum WebResource {
    /// Served at exactly the registered path.
    Method(Box<MethodRouter>),
    /// Nested under the registered path.
    Router(Router),
}

pub trait IntoWebResource {
    fn into_web_resource(self) -> WebResource;
}

impl IntoWebResource for MethodRouter {
    fn into_web_resource(self) -> WebResource {
        WebResource::Method(Box::new(self))
    }
}

impl IntoWebResource for Router {
    fn into_web_resource(self) -> WebResource {
        WebResource::Router(self)
    }
}

impl IntoWebResource for WebResource {
    fn into_web_resource(self) -> WebResource {
        self
    }
}

/// The modules' web resources, merged into one router.
#[derive(Default)]
pub struct WebResources {
    router: Router,
    /// `(path, module)` in registration order.
    paths: Vec<(String, Arc<ModuleRef>)>,
    /// Each resource's own router, in the same order, to tell which one
    /// overlaps a route of the homeserver.
    each: Vec<Router>,
    pub(crate) warnings: Vec<String>,
}

impl WebResources {
    pub(crate) fn add(
        &mut self,
        path: &str,
        resource: WebResource,
        module: &Arc<ModuleRef>,
    ) -> Result<(), String> {
        if !path.starts_with('/') {
            return Err(format!("web resource path `{path}` must start with `/`, such as `/_synapse/client/my_module`"));
        }
        if path == "/_matrix" || path.starts_with("/_matrix/") {
            return Err(format!(
                "web resource path `{path}` is under `/_matrix`, which belongs to the Matrix APIs; use `/_synapse/client/<module>/…`"
            ));
        }
        if let Some((_, owner)) = self.paths.iter().find(|(p, _)| p == path) {
            let warning =
                format!("{module}: web resource `{path}` is ignored: {owner} registered it first");
            tracing::warn!("{warning}");
            self.warnings.push(warning);
            return Ok(());
        }
        // axum panics on a path it cannot route or a route that overlaps
        // another; turn that into a load error naming the module.
        let router = self.router.clone();
        let merged = catch_unwind(AssertUnwindSafe(move || {
            let alone = match resource {
                WebResource::Method(method) => Router::new().route(path, *method),
                WebResource::Router(nested) => Router::new().nest(path, nested),
            };
            (router.merge(alone.clone()), alone)
        }));
        match merged {
            Ok((router, alone)) => {
                self.router = router;
                self.paths.push((path.to_string(), module.clone()));
                self.each.push(alone);
                Ok(())
            }
            Err(_) => Err(format!("web resource path `{path}` cannot be routed (invalid, or overlapping another module's resource)")),
        }
    }

    /// The paths served, with the module serving each, in registration order.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &ModuleRef)> {
        self.paths.iter().map(|(p, m)| (p.as_str(), &**m))
    }

    /// One router serving every resource.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The homeserver's own routes with every resource added, or the load
    /// error of the module whose resource overlaps one of them (axum
    /// panics on overlapping routes; the server must not).
    pub fn merge_into(&self, core: Router) -> Result<Router, crate::module::LoadError> {
        let all = self.router.clone();
        let base = core.clone();
        if let Ok(router) = catch_unwind(AssertUnwindSafe(move || base.merge(all))) {
            return Ok(router);
        }
        let mut router = core;
        for ((path, module), alone) in self.paths.iter().zip(&self.each) {
            let (base, alone) = (router.clone(), alone.clone());
            match catch_unwind(AssertUnwindSafe(move || base.merge(alone))) {
                Ok(merged) => router = merged,
                Err(_) => {
                    return Err(crate::module::LoadError::new(
                        Some(module.index),
                        Some(&module.path),
                        format!("modules[{}]", module.index),
                        format!("web resource path `{path}` overlaps a route of the homeserver; serve it under `/_synapse/client/<module>/…`"),
                    ))
                }
            }
        }
        Ok(router)
    }
}
