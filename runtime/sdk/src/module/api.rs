//! `ModuleApi`: the handle a module gets in its constructor.

use super::error::LoadError;
use super::web::{IntoWebResource, WebResources};
use crate::callbacks::ModuleRef;
use crate::error::{ErrCode, ModuleError};
use ruma::{OwnedServerName, OwnedUserId, UserId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Facts about the server modules may read.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub server_name: OwnedServerName,
    /// Such as `https://matrix.example.com/`.
    pub public_baseurl: String,
    /// Count and time every callback call (`enable_metrics`).
    pub measure_callbacks: bool,
}

/// State shared by every module's `ModuleApi`.
pub(crate) struct ApiShared {
    server: ServerInfo,
    /// The running server, once it exists (before the start hooks run).
    pub(crate) host: std::sync::OnceLock<std::sync::Weak<dyn super::Host>>,
    /// Tasks modules started; aborted at shutdown.
    pub(crate) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Tasks asked for before the server ran; spawned when it does.
    pub(crate) pending: Mutex<Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>>,
    /// Registrations made while modules are constructed; locked only then.
    registrations: Mutex<Registrations>,
    /// Set once the modules are loaded: late registrations are refused.
    sealed: AtomicBool,
}

#[derive(Default)]
struct Registrations {
    web: WebResources,
    /// `(module path, migrations)`, in config order.
    migrations: Vec<(String, Vec<String>)>,
    login_types: std::collections::BTreeMap<String, LoginType>,
    errors: Vec<(usize, LoadError)>,
}

/// A login type password auth provider modules handle in `check_auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginType {
    /// The fields a login of this type must carry.
    pub fields: Vec<String>,
    /// The modules that handle it (their place in the `modules:` list), in order.
    pub modules: Vec<usize>,
}

impl ApiShared {
    pub(crate) fn new(server: ServerInfo) -> Self {
        ApiShared {
            server,
            host: std::sync::OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            registrations: Mutex::new(Registrations::default()),
            sealed: AtomicBool::new(false),
        }
    }

    /// The running server, if it runs.
    pub(crate) fn host(&self) -> Option<Arc<dyn super::Host>> {
        self.host.get()?.upgrade()
    }

    pub(crate) fn measure_callbacks(&self) -> bool {
        self.server.measure_callbacks
    }

    fn registrations(&self) -> MutexGuard<'_, Registrations> {
        // A panic while holding this lock cannot leave it half-written in a
        // way that matters: recover the data.
        self.registrations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Errors the module made while registering (such as a web resource under `/_matrix`).
    pub(crate) fn take_errors(&self, module: &ModuleRef) -> Vec<LoadError> {
        let mut regs = self.registrations();
        let (mine, others) = std::mem::take(&mut regs.errors)
            .into_iter()
            .partition(|(index, _)| *index == module.index);
        regs.errors = others;
        mine.into_iter().map(|(_, e)| e).collect()
    }

    pub(crate) fn web_warnings(&self) -> Vec<String> {
        self.registrations().web.warnings.clone()
    }

    pub(crate) fn take_login_types(&self) -> std::collections::BTreeMap<String, LoginType> {
        std::mem::take(&mut self.registrations().login_types)
    }

    pub(crate) fn take_migrations(&self) -> Vec<(String, Vec<String>)> {
        std::mem::take(&mut self.registrations().migrations)
    }

    pub(crate) fn take_web(&self) -> WebResources {
        std::mem::take(&mut self.registrations().web)
    }

    /// Stops every task modules started.
    pub(crate) fn abort_tasks(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
    }

    pub(crate) fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
    }
}

/// What a module can ask of the server. Cheap to clone; keep one in the
/// module if its callbacks need it.
#[derive(Clone)]
pub struct ModuleApi {
    shared: Arc<ApiShared>,
    module: Arc<ModuleRef>,
}

impl ModuleApi {
    pub(crate) fn new(shared: Arc<ApiShared>, module: Arc<ModuleRef>) -> Self {
        ModuleApi { shared, module }
    }

    pub(crate) fn shared(&self) -> &Arc<ApiShared> {
        &self.shared
    }

    pub(crate) fn module(&self) -> &Arc<ModuleRef> {
        &self.module
    }

    /// The path of the module holding this handle, as its config entry names it.
    pub fn module_path(&self) -> &str {
        &self.module.path
    }

    /// The server's name, the part after `:` in its users' IDs.
    pub fn server_name(&self) -> &ruma::ServerName {
        &self.shared.server.server_name
    }

    /// The public base URL clients reach the server at.
    pub fn public_baseurl(&self) -> &str {
        &self.shared.server.public_baseurl
    }

    /// Whether a user belongs to this server.
    pub fn is_mine(&self, user: &UserId) -> bool {
        user.server_name() == self.server_name()
    }

    /// `alice` → `@alice:server.name`; a full user ID is checked and returned.
    ///
    /// ```
    /// # fn demo(api: &axon::module::ModuleApi) -> Result<(), axon::ModuleError> {
    /// let alice = api.get_qualified_user_id("alice")?;
    /// assert_eq!(alice.localpart(), "alice");
    /// # Ok(()) }
    /// ```
    pub fn get_qualified_user_id(&self, username: &str) -> Result<OwnedUserId, ModuleError> {
        let full = if username.starts_with('@') {
            username.to_string()
        } else {
            format!("@{username}:{}", self.server_name())
        };
        UserId::parse(&full).map_err(|e| {
            ModuleError::new(
                400,
                ErrCode::InvalidUsername,
                format!("invalid user ID `{full}`: {e}"),
            )
        })
    }

    /// Declares a login type this module handles in its
    /// `#[callback(password_auth_provider)] check_auth`, with the fields a
    /// login of that type must carry (Synapse's `auth_checkers`). `GET
    /// /login` lists it, and `POST /login` of that type asks the modules
    /// that declared it, in config order. Declaring `m.login.password` makes
    /// the module answer password logins before the local password check.
    /// Two modules declaring one type with different fields is a start-up
    /// error, as in Synapse. Call it from the constructor.
    ///
    /// ```
    /// # fn demo(api: &axon::module::ModuleApi) {
    /// api.register_login_type("org.example.token", &["token"]);
    /// # }
    /// ```
    pub fn register_login_type(&self, login_type: &str, fields: &[&str]) {
        let mut regs = self.shared.registrations();
        let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        let index = self.module.index;
        let conflict = match regs.login_types.get_mut(login_type) {
            Some(existing) if existing.fields != fields => Some(existing.modules[0]),
            Some(existing) => {
                if !existing.modules.contains(&index) {
                    existing.modules.push(index);
                }
                None
            }
            None => {
                regs.login_types.insert(
                    login_type.to_string(),
                    LoginType {
                        fields: fields.clone(),
                        modules: vec![index],
                    },
                );
                None
            }
        };
        if let Some(first) = conflict {
            let existing = regs.login_types[login_type].fields.clone();
            regs.errors.push((
                index,
                LoadError::new(
                    Some(index),
                    Some(&self.module.path),
                    format!("modules[{index}]"),
                    format!(
                        "login type `{login_type}` is registered with fields {fields:?}, but modules[{first}] registered it with {existing:?}"
                    ),
                ),
            ));
        }
    }

    /// Declares this module's tables: SQL migrations, applied in order, each
    /// once, before the start hooks run (and so before the server listens).
    /// `{prefix}` in them stands for the module's table prefix: a module
    /// may only touch tables whose names start with it. Append new
    /// migrations; never change applied ones. Call it from the constructor.
    ///
    /// ```
    /// # fn demo(api: &axon::module::ModuleApi) {
    /// api.database_migrations(&[
    ///     "CREATE TABLE {prefix}expiry (user_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)",
    ///     "CREATE INDEX {prefix}expiry_by_time ON {prefix}expiry (expires_at)",
    /// ]);
    /// # }
    /// ```
    pub fn database_migrations(&self, migrations: &[&str]) {
        let mut regs = self.shared.registrations();
        let path = self.module.path.clone();
        if regs.migrations.iter().any(|(p, _)| *p == path) {
            // The module is listed twice: one namespace, migrated once.
            return;
        }
        regs.migrations
            .push((path, migrations.iter().map(|m| m.to_string()).collect()));
    }

    /// The prefix of this module's table names (`{prefix}` in its SQL).
    pub fn table_prefix(&self) -> String {
        crate::db::table_prefix(&self.module.path)
    }

    /// Serves `resource` at `path` on the client listener. Call it from the
    /// constructor. `resource` is an axum `MethodRouter` (such as
    /// `get(handler)`), served at exactly `path`, or a `Router`, nested
    /// under it.
    ///
    /// Paths under `/_matrix` are refused (the server's own API lives
    /// there): loading fails with an error. Prefer `/_synapse/client/<module>/…`.
    /// If another module already registered `path`, the first in config order
    /// keeps it and this registration is ignored with a warning.
    ///
    /// ```
    /// use axon::prelude::*;
    /// use axum::{extract::Query, routing::get, Json};
    /// # fn demo(api: &ModuleApi) {
    /// #[derive(serde::Deserialize)]
    /// struct Hello { name: String }
    /// api.register_web_resource(
    ///     "/_synapse/client/demo/hello",
    ///     get(|Query(q): Query<Hello>| async move { Json(serde_json::json!({ "hello": q.name })) }),
    /// );
    /// # }
    /// ```
    pub fn register_web_resource(&self, path: &str, resource: impl IntoWebResource) {
        let mut regs = self.shared.registrations();
        let at = |message: String| {
            (
                self.module.index,
                LoadError::new(
                    Some(self.module.index),
                    Some(&self.module.path),
                    format!("modules[{}]", self.module.index),
                    message,
                ),
            )
        };
        if self.shared.sealed.load(Ordering::Acquire) {
            tracing::error!(
                "{}: register_web_resource({path}) after start-up is ignored: register web resources in the constructor",
                self.module
            );
            return;
        }
        if let Err(message) = regs
            .web
            .add(path, resource.into_web_resource(), &self.module)
        {
            regs.errors.push(at(message));
        }
    }
}
