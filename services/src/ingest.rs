//! The shared front half of every source (websocket, FDSN, replay): parse, stamp with the
//! arrival order, publish to Kafka or dead-letter.

use crate::kafka::{PublishError, Publisher};
use crate::metrics::Metrics;
use crate::model::{parse_feature, parse_frame, Action, Envelope, Event, Frame};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The shared front half of every source: parse, stamp, publish or dead-letter.
#[derive(Clone)]
pub struct Ingest {
    publisher: Publisher,
    metrics: Metrics,
    last_arrival: Arc<AtomicI64>,
    /// Newest `lastupdate` seen from any source: where the next catch-up starts.
    watermark: Arc<AtomicI64>,
}

impl Ingest {
    pub fn new(publisher: Publisher, metrics: Metrics) -> Self {
        Self { publisher, metrics, last_arrival: Arc::new(AtomicI64::new(0)), watermark: Arc::new(AtomicI64::new(0)) }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Microseconds since the epoch, strictly increasing in this process, so two messages about
    /// one event that share a `lastupdate` are still ordered as they arrived.
    fn arrival(&self) -> i64 {
        crate::model::monotonic_micros(&self.last_arrival)
    }

    pub fn watermark(&self) -> i64 {
        self.watermark.load(Ordering::Relaxed)
    }

    /// Handles one websocket-format message (live frame or replay line).
    pub async fn frame(&self, source: &str, text: &str) -> Result<(), PublishError> {
        self.metrics.frame(source);
        match parse_frame(text) {
            Ok(Frame::Event(action, event)) => self.event(source, action, event).await,
            Ok(Frame::UnknownAction(a)) => {
                tracing::warn!(action = %a, source, "Frame with an unknown action skipped.");
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(%reason, source, "Frame rejected; sent to the dead-letter topic.");
                self.publisher.dead_letter(source, text.as_bytes(), &reason.0).await
            }
        }
    }

    /// Handles one FDSN Feature.
    pub async fn feature(&self, value: &serde_json::Value) -> Result<(), PublishError> {
        self.metrics.frame("fdsn");
        self.metrics.fdsn_events.inc();
        match parse_feature(value) {
            Ok(event) => self.event("fdsn", Action::Update, event).await,
            Err(reason) => {
                tracing::warn!(%reason, "FDSN feature rejected; sent to the dead-letter topic.");
                self.publisher.dead_letter("fdsn", value.to_string().as_bytes(), &reason.0).await
            }
        }
    }

    async fn event(&self, source: &str, action: Action, event: Event) -> Result<(), PublishError> {
        self.watermark.fetch_max(event.lastupdate_us, Ordering::Relaxed);
        let env = Envelope { action, arrival: self.arrival(), source: source.to_owned(), event };
        tracing::info!(unid = %env.event.unid, source, hop = "produce", "Event published.");
        self.publisher.publish(&env).await
    }
}
