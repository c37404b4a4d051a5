//! Prometheus metrics of the pipeline, one registry per process, rendered at `/metrics`.

use crate::store::WriteOutcome as Outcome;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

/// An HTTP request: its route (a fixed set, so the series stay few) and status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

/// Reads gauges that are state elsewhere (the web server's subscribers and window) when
/// `/metrics` is scraped.
type Sampler = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Every counter and gauge the services export; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub frames_received: Family<SourceLabel, Counter>,
    pub events_produced: Counter,
    pub produce_retries: Counter,
    pub events_written: Family<OutcomeLabel, Counter>,
    pub dead_lettered: Family<StageLabel, Counter>,
    pub reconnects: Counter,
    pub fdsn_events: Counter,
    pub store_retries: Counter,
    pub consumer_lag: Gauge,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_seconds: Family<RouteLabel, Histogram>,
    pub sse_clients: Gauge,
    pub window_events: Gauge,
    sampler: Arc<OnceLock<Sampler>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("quake");
        let m = Self {
            registry: Arc::new(Registry::default()),
            frames_received: Family::default(),
            events_produced: Counter::default(),
            produce_retries: Counter::default(),
            events_written: Family::default(),
            dead_lettered: Family::default(),
            reconnects: Counter::default(),
            fdsn_events: Counter::default(),
            store_retries: Counter::default(),
            consumer_lag: Gauge::default(),
            http_requests: Family::default(),
            // 0.5 ms to about 4 s: an answer from the window's cache to a slow store query.
            http_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 14))),
            sse_clients: Gauge::default(),
            window_events: Gauge::default(),
            sampler: Arc::default(),
        };
        r.register(
            "frames_received",
            "Websocket frames, FDSN features and replay lines read",
            m.frames_received.clone(),
        );
        r.register(
            "events_produced",
            "Messages acknowledged by Kafka (events and dead letters)",
            m.events_produced.clone(),
        );
        r.register("produce_retries", "Kafka deliveries that failed and were sent again", m.produce_retries.clone());
        r.register(
            "events_written",
            "Store upserts by outcome (created, updated, unchanged, older)",
            m.events_written.clone(),
        );
        r.register("dead_lettered", "Messages sent to the dead-letter topic, by stage", m.dead_lettered.clone());
        r.register("ws_reconnects", "Websocket reconnects after the first connect", m.reconnects.clone());
        r.register("fdsn_events", "Events read from the FDSN service (backfill and catch-up)", m.fdsn_events.clone());
        r.register("store_retries", "Store writes retried after throttling or unavailability", m.store_retries.clone());
        r.register(
            "consumer_lag",
            "Messages behind the partition ends, summed over assigned partitions",
            m.consumer_lag.clone(),
        );
        r.register("http_requests", "HTTP requests answered, by route and status class", m.http_requests.clone());
        r.register(
            "http_request_duration_seconds",
            "Time to the response head, by route (a stream's lifetime is not in it)",
            m.http_seconds.clone(),
        );
        r.register("sse_clients", "Browsers subscribed to the live stream", m.sse_clients.clone());
        r.register("window_events", "Events held in the web server's window", m.window_events.clone());
        // Every known label value at zero from the start: the series exist before the first
        // dead letter or stale write, so `increase()` and the alerts on them see it.
        for source in ["ws", "fdsn", "replay"] {
            drop(m.frames_received.get_or_create(&SourceLabel { source: source.into() }));
        }
        for stage in ["ws", "fdsn", "replay", "consumer"] {
            drop(m.dead_lettered.get_or_create(&StageLabel { stage: stage.into() }));
        }
        for o in [Outcome::Created, Outcome::Updated, Outcome::Unchanged, Outcome::Older] {
            drop(m.events_written.get_or_create(&OutcomeLabel { outcome: o.as_str().into() }));
        }
        Self { registry: Arc::new(r), ..m }
    }

    /// One answered request.
    pub fn http(&self, route: &'static str, status: u16, seconds: f64) {
        let code = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests.get_or_create(&HttpLabels { route, code }).inc();
        self.http_seconds.get_or_create(&RouteLabel { route }).observe(seconds);
    }

    /// Sets `f` to run before every render (the first one set stays).
    pub fn sample_with(&self, f: impl Fn(&Metrics) + Send + Sync + 'static) {
        let _ = self.sampler.set(Box::new(f));
    }

    pub fn frame(&self, source: &str) {
        self.frames_received.get_or_create(&SourceLabel { source: source.to_owned() }).inc();
    }

    pub fn written(&self, outcome: &str) {
        self.events_written.get_or_create(&OutcomeLabel { outcome: outcome.to_owned() }).inc();
    }

    pub fn written_count(&self, outcome: &str) -> u64 {
        self.events_written.get_or_create(&OutcomeLabel { outcome: outcome.to_owned() }).get()
    }

    pub fn dead_letter(&self, stage: &str) {
        self.dead_lettered.get_or_create(&StageLabel { stage: stage.to_owned() }).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Some(f) = self.sampler.get() {
            f(self);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
