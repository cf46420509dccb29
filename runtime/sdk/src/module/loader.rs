//! From the `modules:` list to running modules: parse the entries, resolve
//! each path among the compiled-in modules, deserialize its typed config,
//! construct it and register its callbacks — in config order, reporting every
//! error together — then run the start hooks before the server listens.

use super::api::{ApiShared, ModuleApi, ServerInfo};
use super::descriptor::{compiled_modules, ModuleDescriptor};
use super::error::{LoadError, LoadErrors};
use super::web::WebResources;
use crate::callbacks::{
    BoxFuture, CallbackFailure, Callbacks, Entry, FailureKind, Instance, ModuleRef,
};
use crate::error::{ConfigError, ModuleError};
use crate::stats::{CallbackRecord, CallbackStats};
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long a callback may run before its failure policy applies, unless
/// the entry sets `callback_timeout`.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

const ENTRY_KEYS: &[&str] = &["module", "config", "callback_timeout", "enabled"];

/// One entry of the `modules:` list.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleEntry {
    pub index: usize,
    pub path: String,
    /// The `config:` value; a missing or null `config:` is an empty mapping.
    pub config: Value,
    pub callback_timeout: Duration,
}

/// Parses the `modules:` value (missing or null: no modules): the entries
/// that parse, and an error for each that does not. Entries with
/// `enabled: false` are checked like the others, then left out; their
/// `config:` is not read, so a disabled block may be incomplete.
pub fn parse_entries(modules: Option<&Value>) -> (Vec<ModuleEntry>, Vec<LoadError>) {
    let list = match modules {
        None | Some(Value::Null) => return (Vec::new(), Vec::new()),
        Some(Value::Sequence(list)) => list,
        Some(other) => {
            let error = LoadError::new(
                None,
                None,
                "modules",
                format!(
                    "expected a list of `- module: <path>` entries, found {}",
                    describe(other)
                ),
            );
            return (Vec::new(), vec![error]);
        }
    };
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, item) in list.iter().enumerate() {
        match parse_entry(index, item) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => tracing::info!("modules[{index}] is disabled (`enabled: false`)"),
            Err(mut e) => errors.append(&mut e),
        }
    }
    (entries, errors)
}

/// An entry, or `None` if it is disabled.
fn parse_entry(index: usize, item: &Value) -> Result<Option<ModuleEntry>, Vec<LoadError>> {
    let at = |key: &str| format!("modules[{index}]{key}");
    let Value::Mapping(map) = item else {
        return Err(vec![LoadError::new(
            Some(index),
            None,
            at(""),
            format!(
                "expected a mapping such as `module: my_crate::MyModule`, found {}",
                describe(item)
            ),
        )]);
    };
    let mut errors = Vec::new();
    let path = match map.get("module") {
        Some(Value::String(path)) if !path.trim().is_empty() => Some(path.clone()),
        Some(other) => {
            errors.push(LoadError::new(
                Some(index),
                None,
                at(".module"),
                format!(
                    "expected the module path as a string, found {}",
                    describe(other)
                ),
            ));
            None
        }
        None => {
            errors.push(LoadError::new(
                Some(index),
                None,
                at(""),
                "missing `module:` key naming the module, such as `module: my_crate::MyModule`",
            ));
            None
        }
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or("");
        if !ENTRY_KEYS.contains(&name) {
            errors.push(LoadError::new(
                Some(index),
                path.as_deref(),
                at(&format!(".{}", key_display(key))),
                "unknown key; an entry has `module`, `config`, `callback_timeout` and `enabled`",
            ));
        }
    }
    let config = match map.get("config") {
        None | Some(Value::Null) => Value::Mapping(Default::default()),
        Some(value) => value.clone(),
    };
    let callback_timeout = match map.get("callback_timeout") {
        None | Some(Value::Null) => DEFAULT_CALLBACK_TIMEOUT,
        Some(value) => match parse_duration(value) {
            Ok(d) => d,
            Err(message) => {
                errors.push(LoadError::new(
                    Some(index),
                    path.as_deref(),
                    at(".callback_timeout"),
                    message,
                ));
                DEFAULT_CALLBACK_TIMEOUT
            }
        },
    };
    let enabled = match map.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(enabled)) => *enabled,
        Some(other) => {
            errors.push(LoadError::new(
                Some(index),
                path.as_deref(),
                at(".enabled"),
                format!("expected `true` or `false`, found {}", describe(other)),
            ));
            true
        }
    };
    match path {
        Some(_) if errors.is_empty() && !enabled => Ok(None),
        Some(path) if errors.is_empty() => Ok(Some(ModuleEntry {
            index,
            path,
            config,
            callback_timeout,
        })),
        _ => Err(errors),
    }
}

fn parse_duration(value: &Value) -> Result<Duration, String> {
    let parsed = match value {
        Value::Number(n) => n.as_u64().map(Duration::from_millis),
        Value::String(s) => crate::config::ConfigDuration::parse(s).map(|d| d.0),
        _ => None,
    };
    match parsed {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "expected a duration such as `5s` or `500ms` (or a number of milliseconds), found {}",
            describe(value)
        )),
    }
}

fn key_display(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// A short description of a YAML value for error messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("tagged value `{}`", t.tag),
    }
}

/// A start or stop hook, erased like a callback.
pub type HookFn = for<'a> fn(&'a Instance) -> BoxFuture<'a, Result<(), ModuleError>>;

/// One module, constructed.
pub struct LoadedModule {
    pub module: Arc<ModuleRef>,
    pub descriptor: &'static ModuleDescriptor,
    pub(crate) instance: Arc<Instance>,
    /// The entry's `callback_timeout`.
    pub callback_timeout: Duration,
    start: Option<HookFn>,
    stop: Option<HookFn>,
}

impl LoadedModule {
    /// The module itself, if it is an `M`.
    pub fn downcast<M: Send + Sync + 'static>(&self) -> Option<&M> {
        self.instance.downcast_ref()
    }
}

/// The modules of a config, constructed in order, with their callbacks.
pub struct LoadedModules {
    pub modules: Vec<LoadedModule>,
    pub callbacks: Arc<Callbacks>,
    pub web: WebResources,
    /// `(module path, migrations)` the modules declared.
    pub migrations: Vec<(String, Vec<String>)>,
    /// Login types modules handle, by type.
    pub login_types: std::collections::BTreeMap<String, super::api::LoginType>,
    /// Problems that do not stop the server, also logged.
    pub warnings: Vec<String>,
    /// Every registered callback with its stats, in config order.
    pub callback_records: Vec<CallbackRecord>,
    api: Arc<ApiShared>,
    started: usize,
}

impl LoadedModules {
    /// Parses the `modules:` value and constructs every entry in order.
    /// Every error is reported, in list order, and any error means nothing
    /// is returned: a server with a broken module must not start.
    pub fn load(modules: Option<&Value>, server: ServerInfo) -> Result<LoadedModules, LoadErrors> {
        let (entries, errors) = parse_entries(modules);
        Self::load_entries(&entries, errors, server)
    }

    fn load_entries(
        entries: &[ModuleEntry],
        mut errors: Vec<LoadError>,
        server: ServerInfo,
    ) -> Result<LoadedModules, LoadErrors> {
        let api = Arc::new(ApiShared::new(server));
        let mut callbacks = Callbacks::default();
        let mut modules = Vec::new();
        let mut warnings = Vec::new();
        let mut records = Vec::new();
        let registry = compiled_modules();
        for entry in entries {
            let descriptor = match registry.find(&entry.path) {
                Ok(d) => d,
                Err(message) => {
                    errors.push(LoadError::new(
                        Some(entry.index),
                        None,
                        format!("modules[{}].module", entry.index),
                        message,
                    ));
                    continue;
                }
            };
            let module = Arc::new(ModuleRef {
                path: entry.path.clone(),
                index: entry.index,
            });
            let _span =
                tracing::info_span!("module", index = entry.index, path = %entry.path).entered();
            let mut cx = LoadContext {
                entry,
                api: ModuleApi::new(api.clone(), module.clone()),
                callbacks: &mut callbacks,
                warnings: &mut warnings,
                records: &mut records,
                modules: &mut modules,
                descriptor,
            };
            if let Err(e) = (descriptor.load)(&mut cx) {
                errors.push(e);
            }
            errors.extend(api.take_errors(&module));
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.index);
            return Err(LoadErrors(errors));
        }
        warnings.extend(api.web_warnings());
        for module in &modules {
            tracing::info!("loaded {}", module.module);
        }
        let migrations = api.take_migrations();
        let login_types = api.take_login_types();
        for (login_type, declared) in &login_types {
            for index in &declared.modules {
                let Some(module) = modules.iter().find(|m| m.module.index == *index) else {
                    continue;
                };
                if !module
                    .descriptor
                    .callbacks
                    .contains(&("password_auth_provider", "check_auth"))
                {
                    errors.push(LoadError::new(
                        Some(*index),
                        Some(&module.module.path),
                        format!("modules[{index}]"),
                        format!(
                            "registers login type `{login_type}` but does not implement `#[callback(password_auth_provider)] async fn check_auth`"
                        ),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.index);
            return Err(LoadErrors(errors));
        }
        let web = api.take_web();
        Ok(LoadedModules {
            modules,
            callbacks: Arc::new(callbacks),
            web,
            migrations,
            login_types,
            warnings,
            callback_records: records,
            api,
            started: 0,
        })
    }

    /// Connects the modules' `ModuleApi` handles to the running server
    /// (held weakly: the server owns the modules, not the other way round),
    /// and spawns the tasks they asked for in their constructors.
    pub fn bind(&self, host: std::sync::Weak<dyn super::Host>) {
        let _ = self.api.host.set(host);
        let pending =
            std::mem::take(&mut *self.api.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut tasks = self.api.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for task in pending {
            tasks.push(tokio::spawn(task));
        }
    }

    /// Runs the start hooks in config order. If one fails, the modules
    /// already started are stopped in reverse order and the error returned.
    pub async fn start(&mut self) -> Result<(), LoadErrors> {
        self.api.seal();
        for (i, module) in self.modules.iter().enumerate() {
            if let Some(start) = module.start {
                if let Err(failure) = run_hook(module, "start", start).await {
                    let error = LoadError::new(
                        Some(module.module.index),
                        Some(&module.module.path),
                        format!("modules[{}]", module.module.index),
                        format!("start failed: {}", failure_text(&failure)),
                    );
                    self.started = i;
                    self.stop().await;
                    return Err(LoadErrors(vec![error]));
                }
            }
        }
        self.started = self.modules.len();
        Ok(())
    }

    /// Runs the stop hooks of the started modules in reverse config order,
    /// after stopping the tasks they started.
    pub async fn stop(&mut self) {
        self.api.abort_tasks();
        for module in self.modules[..self.started].iter().rev() {
            if let Some(stop) = module.stop {
                if let Err(failure) = run_hook(module, "stop", stop).await {
                    tracing::error!("{}: stop failed: {}", module.module, failure_text(&failure));
                }
            }
        }
        self.started = 0;
    }
}

async fn run_hook(
    module: &LoadedModule,
    name: &'static str,
    hook: HookFn,
) -> Result<(), CallbackFailure> {
    let entry = Entry {
        module: module.module.clone(),
        instance: module.instance.clone(),
        f: hook,
        // Start-up work such as migrations may take long; hooks are guarded
        // against panics, not time.
        timeout: Duration::MAX,
        stats: Default::default(),
    };
    entry.call(name, (entry.f)(entry.instance())).await
}

fn failure_text(failure: &CallbackFailure) -> String {
    match &failure.kind {
        FailureKind::Error(e) => e.message.clone(),
        FailureKind::Panic(message) => format!("panicked: {message}"),
        FailureKind::Timeout(_) => "timed out".into(),
    }
}

/// A module's config type: anything serde can deserialize.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a module config: it does not implement `serde::Deserialize`",
    label = "the config type of this constructor",
    note = "add `#[derive(Deserialize)]` (and `#[serde(deny_unknown_fields)]` to catch typos) to `{Self}`"
)]
pub trait ModuleConfig: DeserializeOwned {}
impl<T: DeserializeOwned> ModuleConfig for T {}

/// What a constructor may return besides `Self`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for a module constructor",
    label = "expected `Result<Self, ConfigError>` or `Self`",
    note = "write `fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError>`"
)]
pub trait ConstructorResult<M> {
    fn into_constructor_result(self) -> Result<M, ConfigError>;
}

impl<M> ConstructorResult<M> for Result<M, ConfigError> {
    fn into_constructor_result(self) -> Result<M, ConfigError> {
        self
    }
}

/// What a module's generated load function works with.
pub struct LoadContext<'a> {
    entry: &'a ModuleEntry,
    api: ModuleApi,
    callbacks: &'a mut Callbacks,
    warnings: &'a mut Vec<String>,
    records: &'a mut Vec<CallbackRecord>,
    modules: &'a mut Vec<LoadedModule>,
    descriptor: &'static ModuleDescriptor,
}

impl LoadContext<'_> {
    fn error(&self, yaml_path: String, message: impl Into<String>) -> LoadError {
        LoadError::new(
            Some(self.entry.index),
            Some(&self.entry.path),
            yaml_path,
            message,
        )
    }

    /// The YAML path of the entry's `config:`, or of a place inside it
    /// (`name`, `rules[2].domain`, `[0]`).
    fn config_path(&self, inner: Option<&str>) -> String {
        let mut path = format!("modules[{}].config", self.entry.index);
        if let Some(inner) = inner {
            if !inner.starts_with('[') {
                path.push('.');
            }
            path.push_str(inner);
        }
        path
    }

    /// Deserializes the entry's `config:` into the module's config type.
    pub fn config<C: ModuleConfig>(&self) -> Result<C, LoadError> {
        serde_path_to_error::deserialize(self.entry.config.clone()).map_err(|e| {
            let inner = e.path().to_string();
            let inner = (inner != ".").then_some(inner);
            self.error(
                self.config_path(inner.as_deref()),
                e.into_inner().to_string(),
            )
        })
    }

    /// Checks that a module whose constructor takes no config got none.
    pub fn no_config(&self) -> Result<(), LoadError> {
        match &self.entry.config {
            Value::Mapping(m) if m.is_empty() => Ok(()),
            other => Err(self.error(
                self.config_path(None),
                format!(
                    "this module takes no config, found {}; remove `config:`",
                    describe(other)
                ),
            )),
        }
    }

    pub fn api(&self) -> &ModuleApi {
        &self.api
    }

    /// The constructor's result; its `ConfigError` gets the entry's context.
    pub fn constructed<M, R: ConstructorResult<M>>(&self, result: R) -> Result<M, LoadError> {
        result
            .into_constructor_result()
            .map_err(|e| self.error(self.config_path(e.path.as_deref()), e.message))
    }

    /// Keeps the constructed module; its callbacks are registered next.
    pub fn install<M: Send + Sync + 'static>(&mut self, module: M) -> Registrar<'_> {
        let instance: Arc<Instance> = Arc::new(module);
        self.modules.push(LoadedModule {
            module: self.api.module().clone(),
            descriptor: self.descriptor,
            instance: instance.clone(),
            callback_timeout: self.entry.callback_timeout,
            start: None,
            stop: None,
        });
        Registrar {
            callbacks: self.callbacks,
            warnings: self.warnings,
            records: self.records,
            measure: self.api.shared().measure_callbacks(),
            instance,
            module: self.api.module().clone(),
            timeout: self.entry.callback_timeout,
            loaded: self.modules,
        }
    }
}

/// Registers one constructed module's callbacks and hooks.
pub struct Registrar<'a> {
    pub(crate) callbacks: &'a mut Callbacks,
    pub(crate) warnings: &'a mut Vec<String>,
    records: &'a mut Vec<CallbackRecord>,
    /// Whether calls are counted and timed (`enable_metrics`).
    measure: bool,
    instance: Arc<Instance>,
    module: Arc<ModuleRef>,
    timeout: Duration,
    loaded: &'a mut Vec<LoadedModule>,
}

impl Registrar<'_> {
    /// An entry for callback function `f`, and its stats.
    pub(crate) fn entry<F>(&self, f: F) -> (Entry<F>, Arc<CallbackStats>) {
        let stats = Arc::new(CallbackStats {
            timed: self.measure,
            ..Default::default()
        });
        let entry = Entry {
            module: self.module.clone(),
            instance: self.instance.clone(),
            f,
            timeout: self.timeout,
            stats: stats.clone(),
        };
        (entry, stats)
    }

    /// Keeps the stats of a registered callback, for metrics and the status page.
    pub(crate) fn record(&mut self, callback: &'static str, stats: Arc<CallbackStats>) {
        self.records.push(CallbackRecord {
            module: self.module.clone(),
            callback,
            stats,
        });
    }

    pub fn start_hook(&mut self, hook: HookFn) {
        if let Some(m) = self.loaded.last_mut() {
            m.start = Some(hook);
        }
    }

    pub fn stop_hook(&mut self, hook: HookFn) {
        if let Some(m) = self.loaded.last_mut() {
            m.stop = Some(hook);
        }
    }
}
