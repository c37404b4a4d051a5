//! Wiring: builds brokers, stores and sources from the parsed settings and runs the chosen
//! mode until SIGINT/SIGTERM, then drains (producer flushes, consumer commits).

use crate::config::{
    Command, Common, ConsumerArgs, LogFormat, ProducerArgs, RunArgs, SourceArgs, StoreArgs, WebArgs, WebOpts,
};
use crate::consumer::{self, ConsumerConfig};
use crate::health::{self, HealthState};
use crate::ingest::Ingest;
use crate::kafka::{LocalBroker, Publisher, Topics};
use crate::metrics::Metrics;
use crate::producer::{self, LiveConfig};
use crate::store::dynamo::DynamoStore;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;
use crate::web::{self, window::Window, WebState};
use anyhow::{bail, Context};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        LogFormat::Json => b.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => b.try_init(),
    };
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Run(a) => run_all(a).await,
        Command::Producer(a) => run_producer(a).await,
        Command::Consumer(a) => run_consumer(a).await,
        Command::Web(a) => run_web(a).await,
    }
}

/// Opens the configured store: DynamoDB when a table is named, SQLite otherwise.
pub async fn open_store(a: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(table) = &a.dynamodb_table {
        let conf = aws_config::load_from_env().await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&conf), table);
        if a.create_table {
            store.ensure_table().await.with_context(|| format!("creating DynamoDB table {table}"))?;
        }
        tracing::info!(table = %table, "Store: DynamoDB.");
        Ok(Arc::new(store))
    } else {
        let store = SqliteStore::open(&a.db).with_context(|| format!("opening {}", a.db.display()))?;
        tracing::info!(path = %a.db.display(), "Store: SQLite.");
        Ok(Arc::new(store))
    }
}

fn topics(c: &Common, brokers: String) -> Topics {
    Topics { brokers, events: c.topic.clone(), dead_letter: c.dead_letter_topic.clone() }
}

/// On real brokers, makes sure both topics exist with the configured partitions.
async fn ensure_topics(c: &Common) -> anyhow::Result<()> {
    crate::kafka::ensure_topics(&c.kafka_brokers, &[(&c.topic, c.partitions), (&c.dead_letter_topic, 1)], c.replication)
        .await
        .context("connecting to Kafka to create topics")
}

fn live_config(s: &SourceArgs) -> LiveConfig {
    let mut cfg = LiveConfig::new(&s.ws_url, &s.fdsn_url);
    cfg.ping_interval = Duration::from_secs(s.ping_secs.max(1));
    cfg.dead_after = cfg.ping_interval * 2 + Duration::from_secs(10);
    cfg.backfill_hours = s.backfill_hours;
    cfg
}

/// Starts the chosen source; the flag turns true while the source is healthy.
fn spawn_source(s: &SourceArgs, ingest: Ingest, shutdown: CancellationToken) -> Arc<AtomicBool> {
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(path) = s.replay.clone() {
        let (speed, shift) = (s.speed, s.replay_shift);
        let r = ready.clone();
        tokio::spawn(async move {
            r.store(true, std::sync::atomic::Ordering::Relaxed);
            match producer::replay(&path, speed, shift, &ingest, &shutdown).await {
                Ok(n) => tracing::info!(lines = n, path = %path.display(), "Replay finished."),
                Err(e) => tracing::error!(error = %e, path = %path.display(), "Replay failed."),
            }
        });
    } else {
        tokio::spawn(producer::run_live(live_config(s), ingest, ready.clone(), shutdown));
    }
    ready
}

async fn serve(listen: std::net::SocketAddr, app: axum::Router, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen} (is it in use?)"))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    });
    Ok(())
}

async fn serve_health(
    listen: std::net::SocketAddr,
    state: HealthState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listen, "Ops endpoints listening: /healthz /readyz /metrics.");
    serve(listen, health::router(state), shutdown).await
}

/// The in-memory window, kept current by a follower task of the change feed.
fn start_window(
    o: &WebOpts,
    store: Arc<dyn Store>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) -> Arc<Window> {
    let window = Arc::new(
        Window::new(Duration::from_secs(o.window_days * 86_400), o.window_max).with_feed_overlap(store.feed_overlap()),
    );
    tokio::spawn(web::window::follow(
        window.clone(),
        store,
        wake,
        Duration::from_millis(o.feed_poll_ms.max(10)),
        web::now_us,
        shutdown,
    ));
    window
}

/// Serves the map, the API and the operations endpoints on one address.
async fn serve_web(
    listen: std::net::SocketAddr,
    o: &WebOpts,
    window: Arc<Window>,
    store: Arc<dyn Store>,
    health_state: HealthState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !o.assets.join("index.html").exists() {
        tracing::warn!(path = %o.assets.display(), "No map page there: run `make run` (it installs the page's libraries) or set QUAKE_ASSETS.");
    }
    let mut state = WebState::with_limits(window.clone(), store, o.assets.clone(), limits(o));
    if !o.tiles_url.is_empty() {
        state.page_config = serde_json::json!({ "tiles": o.tiles_url, "tiles_attribution": o.tiles_attribution });
    }
    let app = web::app_with(state.clone(), health_state.clone(), o.metrics_listen.is_none());
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen} (is it in use?)"))?;
    tracing::info!(url = %format!("http://{listen}/"), "Live map and API listening.");
    if let Some(m) = o.metrics_listen {
        serve_health(m, health_state, shutdown.clone()).await?;
    }
    if o.stats_secs > 0 {
        tokio::spawn(log_stats(window.clone(), Duration::from_secs(o.stats_secs), shutdown.clone()));
    }
    tokio::spawn(web::serve(listener, app, state, shutdown));
    Ok(())
}

/// The web server's bounds from its flags.
fn limits(o: &WebOpts) -> web::limits::Limits {
    web::limits::Limits {
        store_reads: o.max_store_reads as usize,
        store_timeout: Duration::from_secs(o.store_timeout_secs),
        cache_bytes: o.body_cache_mb.saturating_mul(1 << 20),
        streams: o.max_streams,
        streams_per_client: o.max_streams_per_client,
        replay: o.max_replay,
        stream_write_timeout: Duration::from_secs(o.stream_write_timeout_secs),
        client_header: (!o.client_address_header.is_empty())
            .then(|| axum::http::HeaderName::from_bytes(o.client_address_header.as_bytes()).ok())
            .flatten(),
    }
}

/// A `Web stats.` line every `every`: the numbers a scrape would read from `/metrics`, for a
/// web server nothing scrapes (a Fargate task logs to CloudWatch, and Grafana reads them there).
async fn log_stats(window: Arc<Window>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => tracing::info!(
                sse_clients = window.subscribers(),
                window_events = window.len(),
                "Web stats."
            ),
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn run_all(a: RunArgs) -> anyhow::Result<()> {
    init_logging(a.common.log_format);
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    // The mock cluster lives as long as this function: the whole process.
    let mut local_broker = None;
    let brokers = if a.common.kafka_brokers.is_empty() {
        let b = LocalBroker::start(1, &[(&a.common.topic, 3), (&a.common.dead_letter_topic, 1)])
            .context("starting the in-process Kafka mock cluster")?;
        let list = b.bootstrap_servers();
        tracing::info!(brokers = %list, "Kafka: librdkafka mock cluster in process.");
        local_broker = Some(b);
        list
    } else {
        ensure_topics(&a.common).await?;
        a.common.kafka_brokers.clone()
    };
    let store = open_store(&a.store).await?;
    let publisher = Publisher::new(topics(&a.common, brokers.clone()), metrics.clone())?;
    let ingest = Ingest::new(publisher.clone(), metrics.clone());
    let source_ready = spawn_source(&a.source, ingest, shutdown.clone());
    let assigned = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut ccfg = ConsumerConfig::new(&brokers, &a.common.topic, &a.store.group);
    ccfg.stored = Some(wake.clone());
    if local_broker.is_some() {
        // An in-process fetch costs no request: do not hold a new event back for one.
        ccfg.fetch_wait = std::time::Duration::from_millis(10);
    }
    let window = start_window(&a.web, store.clone(), wake, shutdown.clone());
    let consumer = tokio::spawn(consumer::run(
        ccfg,
        store.clone(),
        publisher.clone(),
        metrics.clone(),
        assigned.clone(),
        shutdown.clone(),
    ));
    let state = HealthState {
        metrics,
        checks: vec![
            ("source", source_ready),
            ("partitions assigned", assigned),
            ("window loaded", window.loaded_flag()),
            ("store answering (change feed)", window.feed_flag()),
        ],
        store: None,
    };
    serve_web(a.common.listen, &a.web, window, store, state, shutdown.clone()).await?;
    shutdown_signal().await;
    tracing::info!("Shutting down: flushing the producer, draining the consumer.");
    shutdown.cancel();
    publisher.flush(Duration::from_secs(10)).await;
    consumer.await.context("consumer task")??;
    // Keep the mock cluster up until the process exits: clients still held by background
    // tasks would otherwise log connection errors while the runtime winds down.
    std::mem::forget(local_broker);
    Ok(())
}

async fn run_producer(a: ProducerArgs) -> anyhow::Result<()> {
    init_logging(a.common.log_format);
    if a.common.kafka_brokers.is_empty() {
        bail!("the producer alone needs --kafka-brokers (or KAFKA_BROKERS); use `quake run` for the local mode");
    }
    ensure_topics(&a.common).await?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let publisher = Publisher::new(topics(&a.common, a.common.kafka_brokers.clone()), metrics.clone())?;
    let ingest = Ingest::new(publisher.clone(), metrics.clone());
    let ready = spawn_source(&a.source, ingest, shutdown.clone());
    let state = HealthState { metrics, checks: vec![("source", ready)], store: None };
    serve_health(a.common.listen, state, shutdown.clone()).await?;
    shutdown_signal().await;
    shutdown.cancel();
    if !publisher.flush(Duration::from_secs(10)).await {
        tracing::error!(pending = publisher.pending(), "Messages still unacknowledged at exit.");
    }
    Ok(())
}

async fn run_consumer(a: ConsumerArgs) -> anyhow::Result<()> {
    init_logging(a.common.log_format);
    if a.common.kafka_brokers.is_empty() {
        bail!("the consumer alone needs --kafka-brokers (or KAFKA_BROKERS); use `quake run` for the local mode");
    }
    ensure_topics(&a.common).await?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let store = open_store(&a.store).await?;
    let publisher = Publisher::new(topics(&a.common, a.common.kafka_brokers.clone()), metrics.clone())?;
    let assigned = Arc::new(AtomicBool::new(false));
    let ccfg = ConsumerConfig::new(&a.common.kafka_brokers, &a.common.topic, &a.store.group);
    let task = tokio::spawn(consumer::run(
        ccfg,
        store.clone(),
        publisher,
        metrics.clone(),
        assigned.clone(),
        shutdown.clone(),
    ));
    let state = HealthState { metrics, checks: vec![("partitions assigned", assigned)], store: Some(store) };
    serve_health(a.common.listen, state, shutdown.clone()).await?;
    shutdown_signal().await;
    shutdown.cancel();
    task.await.context("consumer task")??;
    Ok(())
}

async fn run_web(a: WebArgs) -> anyhow::Result<()> {
    init_logging(a.common.log_format);
    let shutdown = CancellationToken::new();
    let store = open_store(&a.store).await?;
    let window = start_window(&a.web, store.clone(), Arc::new(tokio::sync::Notify::new()), shutdown.clone());
    let state = HealthState {
        metrics: Metrics::new(),
        checks: vec![("window loaded", window.loaded_flag()), ("store answering (change feed)", window.feed_flag())],
        store: None,
    };
    serve_web(a.common.listen, &a.web, window, store, state, shutdown.clone()).await?;
    shutdown_signal().await;
    shutdown.cancel();
    Ok(())
}
