//! Background work and caching for modules: periodic and delayed calls and
//! spawned tasks, all stopped at shutdown; and bounded caches with
//! explicit invalidation.

use super::api::ModuleApi;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

impl ModuleApi {
    /// Milliseconds since the epoch.
    pub fn current_time_msec(&self) -> u64 {
        crate::time::now_ms().max(0) as u64
    }

    /// Waits `duration` without blocking the server.
    pub async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }

    /// Runs `f` every `interval`, the first time one interval after the
    /// server started (as Synapse's `looping_background_call`). A panicking
    /// run is logged and the loop goes on. Stopped at shutdown.
    ///
    /// ```no_run
    /// # fn demo(api: &axon::module::ModuleApi) {
    /// let handle = api.clone();
    /// api.looping_background_call(std::time::Duration::from_secs(3600), move || {
    ///     let api = handle.clone();
    ///     async move { tracing::info!("an hour passed on {}", api.server_name()) }
    /// });
    /// # }
    /// ```
    pub fn looping_background_call<F, Fut>(&self, interval: Duration, f: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let module = self.module_path().to_string();
        self.spawn_task(Box::pin(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // Each run is its own task, so a panic ends that run only.
                if let Err(e) = tokio::spawn(f()).await {
                    tracing::error!(module = %module, "a looping background call failed: {e}");
                }
            }
        }));
    }

    /// Runs `future` after `delay` (Synapse's `delayed_background_call`).
    pub fn delayed_background_call<Fut>(&self, delay: Duration, future: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.run_in_background(async move {
            tokio::time::sleep(delay).await;
            future.await
        });
    }

    /// Runs `future` in the background (Synapse's `run_as_background_process`).
    pub fn run_in_background<Fut>(&self, future: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let module = self.module_path().to_string();
        self.spawn_task(Box::pin(async move {
            if let Err(e) = tokio::spawn(future).await {
                tracing::error!(module = %module, "a background task failed: {e}");
            }
        }));
    }

    /// Spawns now if the server runs; otherwise (from the constructor) once
    /// it does, so `--check-config` starts nothing.
    fn spawn_task(&self, task: Task) {
        let shared = self.shared();
        if shared.host.get().is_some() {
            let handle = tokio::spawn(task);
            shared
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
        } else {
            shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(task);
        }
    }

    /// A cache of at most `max_entries` values (Synapse's `@cached`).
    pub fn cache<K, V>(&self, max_entries: usize) -> Cache<K, V>
    where
        K: Hash + Eq + Clone + Send,
        V: Clone + Send,
    {
        Cache::new(max_entries)
    }
}

/// A bounded cache of async lookups with explicit invalidation. Cheap to
/// clone (clones share entries). A lookup that an invalidation overtakes is
/// not cached, so an invalidated value never comes back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let expiry: axon::module::Cache<String, u64> = axon::module::Cache::new(1000);
/// let value = expiry
///     .get_or_insert_with("@alice:example.org".to_string(), || async { Ok::<_, ()>(42) })
///     .await;
/// assert_eq!(value, Ok(42));
/// expiry.invalidate(&"@alice:example.org".to_string());
/// assert_eq!(expiry.get(&"@alice:example.org".to_string()), None);
/// # }
/// ```
pub struct Cache<K, V> {
    inner: Arc<Mutex<CacheInner<K, V>>>,
    max_entries: usize,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
            max_entries: self.max_entries,
        }
    }
}

struct CacheInner<K, V> {
    /// Each value with when it was last used.
    entries: HashMap<K, (V, u64)>,
    clock: u64,
    /// Bumped by every invalidation.
    generation: u64,
}

impl<K: Hash + Eq + Clone + Send, V: Clone + Send> Cache<K, V> {
    /// An empty cache holding at most `max_entries` values.
    pub fn new(max_entries: usize) -> Self {
        Cache {
            inner: Arc::new(Mutex::new(CacheInner {
                entries: HashMap::new(),
                clock: 0,
                generation: 0,
            })),
            max_entries: max_entries.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value, without loading it.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.entries.get_mut(key).map(|(v, used)| {
            *used = now;
            v.clone()
        })
    }

    /// The cached value, or `load`'s (cached if it succeeds).
    pub async fn get_or_insert_with<F, Fut, E>(&self, key: K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let generation = self.lock().generation;
        let value = load().await?;
        let mut inner = self.lock();
        if inner.generation == generation {
            if inner.entries.len() >= self.max_entries && !inner.entries.contains_key(&key) {
                // Evict the least recently used.
                if let Some(oldest) = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone())
                {
                    inner.entries.remove(&oldest);
                }
            }
            inner.clock += 1;
            let now = inner.clock;
            inner.entries.insert(key, (value.clone(), now));
        }
        Ok(value)
    }

    /// Forgets one value (Synapse's `invalidate_cache`).
    pub fn invalidate(&self, key: &K) {
        let mut inner = self.lock();
        inner.entries.remove(key);
        inner.generation += 1;
    }

    /// Forgets every value.
    pub fn invalidate_all(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.generation += 1;
    }

    /// How many values are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
