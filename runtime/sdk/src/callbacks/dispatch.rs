//! The machinery behind the generated dispatchers: registry slots, the guard
//! that turns panics and timeouts into failures, and the failure itself.

use crate::error::{ErrCode, ModuleError};
use crate::stats::CallbackStats;
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A module instance with its type erased; generated code downcasts it back.
pub type Instance = dyn Any + Send + Sync;

/// One loaded module: its path and its place in the `modules:` list.
#[derive(Debug, PartialEq, Eq)]
pub struct ModuleRef {
    pub path: String,
    pub index: usize,
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "modules[{}] (`{}`)", self.index, self.path)
    }
}

/// One module's implementation of one callback.
pub struct Entry<F> {
    pub(crate) module: Arc<ModuleRef>,
    pub(crate) instance: Arc<Instance>,
    pub(crate) f: F,
    pub(crate) timeout: Duration,
    pub(crate) stats: Arc<CallbackStats>,
}

impl<F> Entry<F> {
    pub(crate) fn instance(&self) -> &Instance {
        &*self.instance
    }

    pub fn module(&self) -> &ModuleRef {
        &self.module
    }

    pub fn stats(&self) -> &CallbackStats {
        &self.stats
    }

    /// Runs one callback future under the panic and timeout guard.
    pub(crate) fn call<'a, T>(
        &'a self,
        callback: &'static str,
        future: BoxFuture<'a, Result<T, ModuleError>>,
    ) -> Guarded<'a, T> {
        Guarded {
            future,
            module: &self.module,
            callback,
            timeout: self.timeout,
            deadline: None,
            stats: &self.stats,
            timed: self.stats.is_timed(),
            started: None,
        }
    }
}

/// The implementations of one callback, in config order.
pub struct Slot<F> {
    entries: Vec<Entry<F>>,
}

impl<F> Default for Slot<F> {
    fn default() -> Self {
        Slot {
            entries: Vec::new(),
        }
    }
}

impl<F> Slot<F> {
    pub fn entries(&self) -> &[Entry<F>] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn modules(&self) -> Vec<&ModuleRef> {
        self.entries.iter().map(|e| &*e.module).collect()
    }

    /// Adds a module's implementation; false if it is ignored (a callback
    /// only the first module may implement).
    pub(crate) fn push(
        &mut self,
        entry: Entry<F>,
        only_first: bool,
        callback: &'static str,
        warnings: &mut Vec<String>,
    ) -> bool {
        if only_first {
            if let Some(first) = self.entries.first() {
                let warning = format!(
                    "{}: `{callback}` is ignored: only the first module implementing it is used, and that is {}",
                    entry.module, first.module
                );
                tracing::warn!("{warning}");
                warnings.push(warning);
                return false;
            }
        }
        self.entries.push(entry);
        true
    }
}

/// What went wrong in a module's callback.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// The callback returned `Err`.
    Error(ModuleError),
    /// The callback panicked, with this message.
    Panic(String),
    /// The callback did not finish within its module's `callback_timeout`.
    Timeout(Duration),
}

/// A callback that errored, panicked or timed out, with what the client
/// gets. Boxed: failures are rare, and a small `Result` keeps the dispatch
/// path cheap.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackFailure(Box<FailureDetails>);

#[derive(Debug, Clone, PartialEq)]
pub struct FailureDetails {
    pub module: String,
    pub index: usize,
    /// `category.callback`
    pub callback: &'static str,
    pub kind: FailureKind,
    /// Set where the catalog refuses the request on a panic or timeout.
    refusal: Option<ModuleError>,
}

impl std::ops::Deref for CallbackFailure {
    type Target = FailureDetails;
    fn deref(&self) -> &FailureDetails {
        &self.0
    }
}

impl CallbackFailure {
    fn new(module: &ModuleRef, callback: &'static str, kind: FailureKind) -> Self {
        CallbackFailure(Box::new(FailureDetails {
            module: module.path.clone(),
            index: module.index,
            callback,
            kind,
            refusal: None,
        }))
    }

    pub(crate) fn refused_with(mut self, status: u16, errcode: &str, message: &str) -> Self {
        self.0.refusal = Some(ModuleError::new(
            status,
            ErrCode::from_code(errcode),
            message,
        ));
        self
    }

    /// The error response the client gets: the module's own error as it is,
    /// else the catalog's refusal, else 500 `M_UNKNOWN`.
    pub fn to_error(&self) -> ModuleError {
        match (&self.kind, &self.refusal) {
            (FailureKind::Error(e), _) => e.clone(),
            (_, Some(refusal)) => refusal.clone(),
            _ => ModuleError::new(500, ErrCode::Unknown, "Internal server error"),
        }
    }

    pub(crate) fn log_skipped(&self) {
        tracing::warn!(module = %self.module, callback = self.callback, "{self}; skipped (this callback fails open)");
    }

    pub(crate) fn log_propagated(&self) {
        match &self.kind {
            FailureKind::Error(_) => {
                tracing::info!(module = %self.module, callback = self.callback, "{self}")
            }
            _ => {
                tracing::error!(module = %self.module, callback = self.callback, "{self}; the request fails")
            }
        }
    }
}

impl fmt::Display for CallbackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "modules[{}] (`{}`) {}: ",
            self.index, self.module, self.callback
        )?;
        match &self.kind {
            FailureKind::Error(e) => write!(f, "returned an error: {e}"),
            FailureKind::Panic(message) => write!(f, "panicked: {message}"),
            FailureKind::Timeout(after) => {
                write!(f, "timed out after {}", humantime::format_duration(*after))
            }
        }
    }
}

impl std::error::Error for CallbackFailure {}

impl From<CallbackFailure> for ModuleError {
    fn from(failure: CallbackFailure) -> Self {
        failure.to_error()
    }
}

impl axum::response::IntoResponse for CallbackFailure {
    fn into_response(self) -> axum::response::Response {
        self.to_error().into_response()
    }
}

/// A callback future that cannot unwind into the server and cannot run past
/// its timeout. The timer is armed only once the callback first waits, so a
/// callback that finishes at once costs no clock read.
pub struct Guarded<'a, T> {
    future: BoxFuture<'a, Result<T, ModuleError>>,
    module: &'a ModuleRef,
    callback: &'static str,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    stats: &'a CallbackStats,
    timed: bool,
    /// When the first poll began, if calls are timed.
    started: Option<std::time::Instant>,
}

impl<T> Guarded<'_, T> {
    /// Counts and times the call, if calls are measured (`enable_metrics`):
    /// an atomic add on every call is a sixth of a callback's cost.
    fn finished(&self) {
        if let Some(started) = self.started {
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            self.stats.latency.observe(started.elapsed());
        }
    }
}

impl<T> Future for Guarded<'_, T> {
    type Output = Result<T, CallbackFailure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.timed && this.started.is_none() {
            this.started = Some(std::time::Instant::now());
        }
        let polled = catch_unwind(AssertUnwindSafe(|| this.future.as_mut().poll(cx)));
        let kind = match polled {
            Ok(Poll::Ready(Ok(value))) => {
                this.finished();
                return Poll::Ready(Ok(value));
            }
            Ok(Poll::Ready(Err(error))) => FailureKind::Error(error),
            Err(payload) => FailureKind::Panic(panic_message(&*payload)),
            Ok(Poll::Pending) => {
                let timeout = this.timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => FailureKind::Timeout(timeout),
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        this.finished();
        let counter = match kind {
            FailureKind::Error(_) => &this.stats.errors,
            FailureKind::Panic(_) => &this.stats.panics,
            FailureKind::Timeout(_) => &this.stats.timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let failure = CallbackFailure::new(this.module, this.callback, kind);
        *this
            .stats
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some((crate::time::now_ms(), failure.to_string()));
        Poll::Ready(Err(failure))
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

/// What the catalog says about a category, for introspection and docs.
#[derive(Debug)]
pub struct CategoryInfo {
    pub name: &'static str,
    pub doc: &'static str,
    pub callbacks: &'static [CallbackInfo],
}

/// What the catalog says about a callback.
#[derive(Debug)]
pub struct CallbackInfo {
    pub name: &'static str,
    pub doc: &'static str,
    /// As a module author writes it.
    pub signature: &'static str,
    /// The combine rule's name.
    pub combine: &'static str,
    pub on_failure: FailurePolicy,
}

/// What a failing callback does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Logged and skipped.
    FailOpen,
    /// The request fails: the module's error as it is, or 500.
    Propagate,
    /// The request fails: the module's error as it is, or this refusal.
    Refuse {
        status: u16,
        errcode: &'static str,
        message: &'static str,
    },
}
