//! What the server exposes to Prometheus: per module and callback (the
//! SDK's [`CallbackStats`]: calls, denials, failures by kind, latency) and
//! per HTTP endpoint (requests, latency), in the text format
//! (prometheus-client); the admin status page reads the same numbers.

use axon::stats::{CallbackRecord, CallbackStats, LATENCY_BUCKETS};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The callbacks' stats, exposed at each scrape.
#[derive(Debug)]
struct CallbackCollector(Arc<Vec<CallbackRecord>>);

impl CallbackCollector {
    fn counter(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: fn(&CallbackStats) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for record in self.0.iter() {
            ConstCounter::new(value(&record.stats))
                .encode(family.encode_family(&labels(record))?)?;
        }
        Ok(())
    }
}

fn labels(record: &CallbackRecord) -> [(&'static str, &str); 2] {
    [
        ("module", record.module.path.as_str()),
        ("callback", record.callback),
    ]
}

impl prometheus_client::collector::Collector for CallbackCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.counter(
            &mut encoder,
            "axon_module_callback_calls",
            "Calls of a module's callback.",
            |s| s.calls.load(Ordering::Relaxed),
        )?;
        self.counter(
            &mut encoder,
            "axon_module_callback_denials",
            "Calls whose verdict refused (a deny, a veto or a hide).",
            |s| s.denials.load(Ordering::Relaxed),
        )?;
        let mut family = encoder.encode_descriptor(
            "axon_module_callback_failures",
            "Calls that failed, by kind: error, panic or timeout.",
            None,
            MetricType::Counter,
        )?;
        for record in self.0.iter() {
            let [module, callback] = labels(record);
            let stats = &record.stats;
            for (kind, value) in [
                ("error", &stats.errors),
                ("panic", &stats.panics),
                ("timeout", &stats.timeouts),
            ] {
                ConstCounter::new(value.load(Ordering::Relaxed))
                    .encode(family.encode_family(&[module, callback, ("kind", kind)])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "axon_module_callback_duration_seconds",
            "How long a module's callback took (with enable_metrics).",
            None,
            MetricType::Histogram,
        )?;
        for record in self.0.iter() {
            let (sum, count, buckets) = record.stats.latency.snapshot();
            family
                .encode_family(&labels(record))?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
        }
        Ok(())
    }
}

type HttpLabels = [(&'static str, String); 3];
type EndpointLabels = [(&'static str, String); 2];

/// The server's metrics: the modules' callbacks, and HTTP requests.
pub struct Metrics {
    /// Whether requests and callbacks are timed and `/metrics` is served.
    pub enabled: bool,
    registry: Registry,
    callbacks: Arc<Vec<CallbackRecord>>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<EndpointLabels, Histogram>,
    /// Syncs computed, a long-poll's recomputations included: how often
    /// waiters are woken, which a commit should do only for those concerned.
    pub sync_computations: Counter,
}

impl Metrics {
    pub fn new(enabled: bool, callbacks: Vec<CallbackRecord>) -> Metrics {
        let callbacks = Arc::new(callbacks);
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        let mut registry = Registry::default();
        registry.register(
            "axon_http_requests",
            "HTTP requests, by method, endpoint (the route's pattern) and status.",
            http_requests.clone(),
        );
        registry.register(
            "axon_http_request_duration_seconds",
            "How long HTTP requests took, by method and endpoint.",
            http_duration.clone(),
        );
        let sync_computations = Counter::default();
        registry.register(
            "axon_sync_computations",
            "Syncs computed, including a long-poll's recomputations when woken.",
            sync_computations.clone(),
        );
        registry.register_collector(Box::new(CallbackCollector(callbacks.clone())));
        Metrics {
            enabled,
            registry,
            callbacks,
            http_requests,
            http_duration,
            sync_computations,
        }
    }

    /// Every registered callback, in config order.
    pub fn callbacks(&self) -> &[CallbackRecord] {
        &self.callbacks
    }

    pub fn observe_request(&self, method: &str, endpoint: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&[
                ("method", method.to_string()),
                ("endpoint", endpoint.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.http_duration
            .get_or_create(&[
                ("method", method.to_string()),
                ("endpoint", endpoint.to_string()),
            ])
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
