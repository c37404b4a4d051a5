//! The consumer: reads the events topic in a consumer group, writes batches to the store, and
//! stores offsets only after the store accepted every message of the batch (at-least-once;
//! the conditional upsert makes the stored state exactly-once).

use crate::backoff::Backoff;
use crate::kafka::Publisher;
use crate::metrics::Metrics;
use crate::model::Envelope;
use crate::store::{Store, WriteOutcome};
use futures_util::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub group: String,
    pub topic: String,
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// How long a fetch may wait for data. A real broker answers as soon as data is there, so
    /// this only bounds idle long-polls (each one a request); the in-process mock cluster holds
    /// every fetch this long, so there it is the latency a new event sees.
    pub fetch_wait: Duration,
    /// Session timeout; real brokers reject less than 6 s.
    pub session_timeout: Duration,
    /// Told after every stored batch, so an in-process web server shows writes at once.
    pub stored: Option<Arc<tokio::sync::Notify>>,
}

impl ConsumerConfig {
    pub fn new(brokers: &str, topic: &str, group: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            batch_max: 500,
            batch_wait: Duration::from_millis(5),
            fetch_wait: Duration::from_millis(100),
            session_timeout: Duration::from_secs(10),
            stored: None,
        }
    }
}

/// Feeds librdkafka's statistics into the lag gauge.
pub struct LagContext {
    metrics: Metrics,
    assigned: Arc<AtomicBool>,
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        let lag: i64 = stats
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.metrics.consumer_lag.set(lag);
    }
}

impl ConsumerContext for LagContext {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, r: &rdkafka::consumer::Rebalance<'_>) {
        if let rdkafka::consumer::Rebalance::Assign(tpl) = r {
            self.assigned.store(true, Ordering::Relaxed);
            tracing::info!(partitions = tpl.count(), "Partitions assigned.");
        }
    }
}

/// Why the consumer loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Runs until `shutdown`, then finishes the batch in hand, stores its offsets and commits.
pub async fn run(
    cfg: ConsumerConfig,
    store: Arc<dyn Store>,
    dlq: Publisher,
    metrics: Metrics,
    assigned: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let ctx = LagContext { metrics: metrics.clone(), assigned };
    let consumer: StreamConsumer<LagContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // We decide what is done: an offset is stored only after the store took the message.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", cfg.session_timeout.as_millis().to_string())
        .set("heartbeat.interval.ms", (cfg.session_timeout.as_millis() / 3).to_string())
        .set("statistics.interval.ms", "5000")
        // A topic that does not exist yet is created by the first subscriber (as by the first
        // producer), and noticed within seconds instead of librdkafka's default 5 minutes.
        .set("allow.auto.create.topics", "true")
        .set("topic.metadata.refresh.interval.ms", "10000")
        // Bounded prefetch: the default (64 MB) alone would exceed the consumer's memory target.
        .set("queued.max.messages.kbytes", "8192")
        // ... and when that prefetch is full, fetch again as soon as it drains: librdkafka's
        // default waits a whole second, which stalled ingest for 0.6 s at a time.
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", cfg.fetch_wait.as_millis().to_string())
        .create_with_context(ctx)?;
    consumer.subscribe(&[&cfg.topic])?;
    tracing::info!(topic = %cfg.topic, group = %cfg.group, "Consumer subscribed.");

    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!(error = %e, "Kafka receive error.");
                continue;
            }
        };
        let mut batch = vec![first];
        // What is queued already is taken without a timer; only an empty queue is waited on,
        // and the whole batch waits at most `batch_wait` (a timer per message cost more than
        // the message).
        let deadline = tokio::time::Instant::now() + cfg.batch_wait;
        while batch.len() < cfg.batch_max {
            let next = match consumer.recv().now_or_never() {
                Some(r) => Ok(r),
                None => tokio::time::timeout_at(deadline, consumer.recv()).await,
            };
            match next {
                Ok(Ok(m)) => batch.push(m.detach()),
                _ => break,
            }
        }
        if !process_batch(&batch, store.as_ref(), &dlq, &metrics, &shutdown).await {
            // Shut down while the store was unavailable: the batch's offsets stay unstored, so
            // its messages come again after the restart.
            break;
        }
        if let Some(n) = &cfg.stored {
            n.notify_one();
        }
        let mut tpl = TopicPartitionList::new();
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in &batch {
            let e = next.entry((m.topic().to_owned(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        for ((t, p), o) in next {
            let _ = tpl.add_partition_offset(&t, p, Offset::Offset(o));
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            // A partition revoked meanwhile: its new owner will redo the batch (idempotent).
            tracing::warn!(error = %e, "Could not store offsets.");
        }
    }
    // Dead letters of the last batch must be on the broker before the process goes.
    dlq.flush(Duration::from_secs(10)).await;
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "Final commit failed."),
    }
    tracing::info!("Consumer stopped.");
    Ok(())
}

/// Writes one batch; returns false only if shutdown came while a retryable error persisted.
async fn process_batch(
    batch: &[OwnedMessage],
    store: &dyn Store,
    dlq: &Publisher,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> bool {
    let mut envs = Vec::with_capacity(batch.len());
    for m in batch {
        let payload = m.payload().unwrap_or_default();
        match serde_json::from_slice::<Envelope>(payload) {
            Ok(env) => envs.push(env),
            Err(e) => poison(dlq, payload, &format!("not an event envelope: {e}"), m).await,
        }
    }
    let mut todo: Vec<usize> = (0..envs.len()).collect();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
    while !todo.is_empty() {
        // Only retries need a subset: the first attempt writes the batch as it came.
        let results = if todo.len() == envs.len() {
            store.upsert_batch(&envs).await
        } else {
            let retry: Vec<Envelope> = todo.iter().map(|&i| envs[i].clone()).collect();
            store.upsert_batch(&retry).await
        };
        let mut again = Vec::new();
        for (&i, res) in todo.iter().zip(results) {
            let env = &envs[i];
            match res {
                Ok(outcome) => {
                    metrics.written(outcome.as_str());
                    log_write(env, outcome);
                }
                Err(e) if e.is_retryable() => again.push(i),
                Err(e) => {
                    let reason = e.to_string();
                    let payload = serde_json::to_vec(env).unwrap_or_default();
                    tracing::warn!(unid = %env.event.unid, %reason, "Store refused the event; dead-lettered.");
                    if let Err(e) = dlq.dead_letter("consumer", &payload, &reason).await {
                        tracing::error!(error = %e, "Dead-letter publish failed.");
                    }
                }
            }
        }
        if !again.is_empty() {
            metrics.store_retries.inc_by(again.len() as u64);
            tracing::warn!(count = again.len(), "Store writes to retry.");
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.cancelled() => return false,
            }
        }
        todo = again;
    }
    true
}

fn log_write(env: &Envelope, outcome: WriteOutcome) {
    let e = &env.event;
    match outcome {
        WriteOutcome::Created | WriteOutcome::Updated => tracing::info!(
            unid = %e.unid, hop = "store", outcome = outcome.as_str(), mag = e.mag, region = e.region.as_deref(),
            time = %crate::model::format_utc(e.time_us), "Event stored."
        ),
        _ => tracing::debug!(unid = %e.unid, hop = "store", outcome = outcome.as_str(), "Event not changed."),
    }
}

async fn poison(dlq: &Publisher, payload: &[u8], reason: &str, m: &OwnedMessage) {
    tracing::warn!(%reason, partition = m.partition(), offset = m.offset(), "Poison message; dead-lettered.");
    if let Err(e) = dlq.dead_letter("consumer", payload, reason).await {
        tracing::error!(error = %e, "Dead-letter publish failed.");
    }
}
