//! Kafka plumbing: client settings, the in-process mock cluster, and the publisher that never
//! drops a message (it re-sends whatever the broker could not take).

use crate::metrics::Metrics;
use crate::model::Envelope;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Topic names and the broker list.
#[derive(Clone, Debug)]
pub struct Topics {
    pub brokers: String,
    pub events: String,
    pub dead_letter: String,
}

/// Settings of the idempotent producer (`acks=all` is implied by idempotence, set anyway).
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // A message that cannot be delivered in this time comes back to us and is re-sent.
        .set("message.timeout.ms", "30000")
        .set("queue.buffering.max.messages", "200000");
    c
}

/// The in-process librdkafka mock cluster for the local default and tests: real Kafka protocol,
/// random ports, gone with the process.
pub struct LocalBroker {
    holder: BaseProducer,
}

impl LocalBroker {
    /// Starts `brokers` mock brokers and creates the topics.
    pub fn start(brokers: i32, topics: &[(&str, i32)]) -> Result<Self, KafkaError> {
        let holder: BaseProducer = ClientConfig::new().set("test.mock.num.brokers", brokers.to_string()).create()?;
        let b = Self { holder };
        b.no_initial_rebalance_delay();
        {
            let cluster = b.cluster();
            for (name, partitions) in topics {
                cluster.create_topic(name, *partitions, brokers.min(3))?;
            }
        }
        Ok(b)
    }

    /// The cluster, for fault injection (broker down, leader moves, request errors).
    pub fn cluster(&self) -> MockCluster<'_, rdkafka::producer::DefaultProducerContext> {
        self.holder.client().mock_cluster().expect("holder was created with test.mock.num.brokers")
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster().bootstrap_servers()
    }

    /// The mock coordinator waits 3 s before the first assignment; real brokers are configured
    /// the same way but that only slows tests and local start-up.
    #[allow(unsafe_code)]
    fn no_initial_rebalance_delay(&self) {
        // SAFETY: the holder owns the mock cluster, and the handle lives as long as `self`.
        unsafe {
            let mc = rdkafka_sys::rd_kafka_handle_mock_cluster(self.holder.client().native_ptr());
            if !mc.is_null() {
                rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(mc, 0);
            }
        }
    }
}

/// Why a publish failed for good.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka refused the message: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot serialise the message: {0}")]
    Serialise(#[from] serde_json::Error),
    #[error("publisher is shut down")]
    Closed,
}

/// Sends to the events and dead-letter topics. Delivery reports are watched by one task that
/// re-sends every failed delivery, so "enqueued" means "will reach the broker".
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topics: Topics,
    pending: Arc<AtomicUsize>,
    reports: mpsc::Sender<DeliveryFuture>,
    metrics: Metrics,
}

impl Publisher {
    pub fn new(topics: Topics, metrics: Metrics) -> Result<Self, KafkaError> {
        let producer: FutureProducer = producer_config(&topics.brokers).create()?;
        let (tx, rx) = mpsc::channel(50_000);
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(watch_deliveries(producer.clone(), rx, pending.clone(), metrics.clone()));
        Ok(Self { producer, topics, pending, reports: tx, metrics })
    }

    /// Publishes one event keyed by `unid`.
    pub async fn publish(&self, env: &Envelope) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(env)?;
        let record = FutureRecord::to(&self.topics.events).key(env.event.unid.as_bytes()).payload(payload.as_slice());
        self.enqueue(record).await
    }

    /// Sends an input that could not be processed to the dead-letter topic with the reason.
    pub async fn dead_letter(&self, stage: &str, payload: &[u8], reason: &str) -> Result<(), PublishError> {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "reason", value: Some(reason) })
            .insert(Header { key: "stage", value: Some(stage) });
        let record = FutureRecord::<(), [u8]>::to(&self.topics.dead_letter).payload(payload).headers(headers);
        self.metrics.dead_letter(stage);
        self.enqueue(record).await
    }

    async fn enqueue<K: rdkafka::message::ToBytes + ?Sized>(
        &self,
        mut record: FutureRecord<'_, K, [u8]>,
    ) -> Result<(), PublishError> {
        loop {
            match self.producer.send_result(record) {
                Ok(fut) => {
                    self.pending.fetch_add(1, Ordering::SeqCst);
                    return self.reports.send(fut).await.map_err(|_| PublishError::Closed);
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Messages enqueued but not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Waits until every enqueued message is acknowledged, or the timeout passes.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

async fn watch_deliveries(
    producer: FutureProducer,
    mut rx: mpsc::Receiver<DeliveryFuture>,
    pending: Arc<AtomicUsize>,
    metrics: Metrics,
) {
    let mut inflight = FuturesUnordered::new();
    loop {
        tokio::select! {
            fut = rx.recv() => match fut {
                Some(f) => inflight.push(f),
                None if inflight.is_empty() => return,
                None => {}
            },
            Some(res) = inflight.next(), if !inflight.is_empty() => match res {
                Ok(Ok(_)) => {
                    metrics.events_produced.inc();
                    pending.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(Err((err, msg))) => {
                    metrics.produce_retries.inc();
                    tracing::warn!(error = %err, topic = msg.topic(), "Delivery failed; sending again.");
                    match resend(&producer, &msg).await {
                        Some(f) => inflight.push(f),
                        None => { pending.fetch_sub(1, Ordering::SeqCst); }
                    }
                    continue;
                }
                Err(_canceled) => {
                    // The producer went away (process shutting down): nothing left to wait for.
                    pending.fetch_sub(1, Ordering::SeqCst);
                }
            },
        }
    }
}

/// Re-sends a message the broker did not acknowledge; `None` only for errors that can never
/// succeed (the message is then lost, and logged as an error an operator must act on).
async fn resend(producer: &FutureProducer, msg: &OwnedMessage) -> Option<DeliveryFuture> {
    let payload = msg.payload().unwrap_or_default();
    let mut headers = OwnedHeaders::new();
    if let Some(h) = msg.headers() {
        for i in 0..h.count() {
            let hd = h.get(i);
            headers = headers.insert(Header { key: hd.key, value: hd.value });
        }
    }
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(msg.topic()).payload(payload).headers(headers.clone());
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        match producer.send_result(record) {
            Ok(f) => return Some(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                tracing::error!(error = %e, topic = msg.topic(), "Message could not be sent again and is lost.");
                return None;
            }
        }
    }
}

/// Creates the topics on a real cluster if they are missing (partitions, replication factor);
/// "already exists" is success. Brokers that refuse the admin call (no CreateTopics, no ACL)
/// leave it to auto-creation, which is logged.
pub async fn ensure_topics(brokers: &str, topics: &[(&str, i32)], replication: i32) -> Result<(), KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    // Look first: some brokers (librdkafka's mock) have no CreateTopics and would only time out.
    let probe: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let existing: std::collections::HashSet<String> = tokio::task::spawn_blocking(move || {
        probe
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|m| m.topics().iter().map(|t| t.name().to_owned()).collect())
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|(n, _)| !existing.contains(*n))
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(replication)))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics(new.iter(), &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(name) => tracing::info!(topic = %name, "Topic created."),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => {
                        tracing::warn!(topic = %name, %code, "Topic not created; relying on auto-creation.")
                    }
                }
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "Topic creation failed; relying on auto-creation.");
            Ok(())
        }
    }
}
