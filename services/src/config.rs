//! Command line and environment: every setting is a flag with an environment variable, shown
//! in `--help`. Parsing only checks what was typed; [`crate::service`] builds the clients.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "quake", version, about = "Live EMSC earthquakes: websocket -> Kafka -> store")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Producer, consumer and store in one process (the local default: mock Kafka + SQLite).
    Run(RunArgs),
    /// Only the producer: EMSC (or a replay file) to Kafka. Needs --kafka-brokers.
    Producer(ProducerArgs),
    /// Only the consumer: Kafka to the store. Needs --kafka-brokers.
    Consumer(ConsumerArgs),
    /// Only the web server: map page, query API and live stream, following the store.
    Web(WebArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Kafka bootstrap servers; when empty, `run` starts librdkafka's mock cluster in process.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "")]
    pub kafka_brokers: String,
    /// Topic of the events, keyed by unid.
    #[arg(long, env = "QUAKE_TOPIC", default_value = "quakes")]
    pub topic: String,
    /// Topic of frames and messages that could not be processed (reason in a header).
    #[arg(long, env = "QUAKE_DEAD_LETTER_TOPIC", default_value = "quakes.dlq")]
    pub dead_letter_topic: String,
    /// Partitions of the events topic when this process creates it (real brokers only).
    #[arg(long, env = "QUAKE_PARTITIONS", default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor of topics this process creates.
    #[arg(long, env = "QUAKE_REPLICATION", default_value_t = 1)]
    pub replication: i32,
    /// Address of the map, the API and /healthz, /readyz, /metrics.
    #[arg(long, env = "QUAKE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Log format: one JSON object per line, or text for a terminal.
    #[arg(long, env = "QUAKE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// EMSC's websocket.
    #[arg(long, env = "EMSC_WS_URL", default_value = "wss://www.seismicportal.eu/standing_order/websocket")]
    pub ws_url: String,
    /// EMSC's FDSN event service (backfill and catch-up).
    #[arg(long, env = "EMSC_FDSN_URL", default_value = "https://www.seismicportal.eu/fdsnws/event/1/query")]
    pub fdsn_url: String,
    /// Hours of history fetched from FDSN at start, so a new install shows a full map (0 = none).
    #[arg(long, env = "QUAKE_BACKFILL_HOURS", default_value_t = 24)]
    pub backfill_hours: u32,
    /// Seconds between websocket pings.
    #[arg(long, env = "QUAKE_PING_SECS", default_value_t = 15)]
    pub ping_secs: u64,
    /// Replay this file (one websocket message per line) instead of the live feed.
    #[arg(long, env = "QUAKE_REPLAY")]
    pub replay: Option<PathBuf>,
    /// Shift a replay's times so its last revision is now (demos and tests on old recordings).
    #[arg(long, env = "QUAKE_REPLAY_SHIFT")]
    pub replay_shift: bool,
    /// Replay speed: 1 = the gaps between lines' lastupdate in real time, 60 = a minute per
    /// second, 0 = as fast as possible.
    #[arg(long, env = "QUAKE_REPLAY_SPEED", default_value_t = 0.0)]
    pub speed: f64,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// DynamoDB table; when set, events go to DynamoDB (standard AWS settings: AWS_REGION,
    /// credentials chain, AWS_ENDPOINT_URL), otherwise to the SQLite file.
    #[arg(long, env = "DYNAMODB_TABLE")]
    pub dynamodb_table: Option<String>,
    /// Create the DynamoDB table if missing (local and test use; production tables come from
    /// the provisioner).
    #[arg(long, env = "QUAKE_CREATE_TABLE")]
    pub create_table: bool,
    /// SQLite file of the embedded store.
    #[arg(long, env = "QUAKE_DB", default_value = "data/quakes.sqlite")]
    pub db: PathBuf,
    /// Consumer group.
    #[arg(long, env = "QUAKE_GROUP", default_value = "quake-store")]
    pub group: String,
}

#[derive(Debug, Clone, Args)]
pub struct WebOpts {
    /// Directory of the map page (index.html and its scripts, with `vendor/` from npm).
    #[arg(long, env = "QUAKE_ASSETS", default_value = "assets/web")]
    pub assets: PathBuf,
    /// Days of events held in memory; queries reaching further back read the store.
    #[arg(long, env = "QUAKE_WINDOW_DAYS", default_value_t = 30)]
    pub window_days: u64,
    /// Most events held in memory (the oldest go first).
    #[arg(long, env = "QUAKE_WINDOW_MAX", default_value_t = 200_000)]
    pub window_max: usize,
    /// Online map tiles (e.g. https://tile.example.org/{z}/{x}/{y}.png); empty = the built-in
    /// Natural Earth basemap, which needs no tile server and no internet.
    #[arg(long, env = "QUAKE_TILES_URL", default_value = "")]
    pub tiles_url: String,
    /// Attribution shown with the online tiles.
    #[arg(long, env = "QUAKE_TILES_ATTRIBUTION", default_value = "")]
    pub tiles_attribution: String,
    /// Milliseconds between change-feed reads (in `run`, writes also wake it at once).
    #[arg(long, env = "QUAKE_FEED_POLL_MS", default_value_t = 500)]
    pub feed_poll_ms: u64,
    /// Seconds between `Web stats.` log lines (SSE clients, events in the window); 0 = none.
    /// On Fargate they are how these two numbers reach Grafana, through CloudWatch Logs.
    #[arg(long, env = "QUAKE_STATS_SECS", default_value_t = 60)]
    pub stats_secs: u64,
    /// Serve `/metrics` here only (e.g. 0.0.0.0:9464, a port the load balancer does not
    /// forward); unset: on the main address, beside the map.
    #[arg(long, env = "QUAKE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Requests answered from the store (reaching past the in-memory window) at once; more are
    /// answered 503 with Retry-After, not queued. One may hold up to about 80 MB while it reads
    /// and renders 50,000 events.
    #[arg(long, env = "QUAKE_MAX_STORE_READS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_store_reads: u32,
    /// Seconds one store-backed request may take before it is answered 503.
    #[arg(long, env = "QUAKE_STORE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub store_timeout_secs: u64,
    /// Megabytes of encoded answers kept for repeated requests (least recently used go first).
    #[arg(long, env = "QUAKE_BODY_CACHE_MB", default_value_t = 32)]
    pub body_cache_mb: usize,
    /// Live streams (`/api/stream`) open at once, in all; more are answered 503 (10,000 fit in
    /// 150 MB: `make bench`).
    #[arg(long, env = "QUAKE_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Live streams open at once from one client address; more are answered 429.
    #[arg(long, env = "QUAKE_MAX_STREAMS_PER_CLIENT", default_value_t = 16)]
    pub max_streams_per_client: usize,
    /// Changes a reconnecting stream is re-sent at most; a client further behind gets `reset`
    /// (the page reloads its list).
    #[arg(long, env = "QUAKE_MAX_REPLAY", default_value_t = 1000)]
    pub max_replay: usize,
    /// Seconds a write to a live stream may wait on a client that does not read before the
    /// stream is dropped.
    #[arg(long, env = "QUAKE_STREAM_WRITE_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_write_timeout_secs: u64,
    /// Header holding the client's address as the edge saw it, for the per-client bounds
    /// (behind CloudFront: cloudfront-viewer-address); empty: the connection's peer. Name only
    /// a header the edge sets itself: one a client can send would let it pick its address.
    #[arg(long, env = "QUAKE_CLIENT_ADDRESS_HEADER", default_value = "", value_parser = header_name)]
    pub client_address_header: String,
}

/// An HTTP header name, or empty.
fn header_name(s: &str) -> Result<String, String> {
    let ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| s.to_ascii_lowercase()).ok_or_else(|| format!("{s:?} is not a header name (letters, digits and '-')"))
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub web: WebOpts,
}

#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub web: WebOpts,
}

#[derive(Debug, Clone, Args)]
pub struct ProducerArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ConsumerArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_local_mode() {
        let cli = Cli::try_parse_from(["quake", "run"]).unwrap();
        let Command::Run(a) = cli.command else { panic!() };
        assert!(a.common.kafka_brokers.is_empty());
        assert_eq!(a.source.backfill_hours, 24);
        assert_eq!(a.store.dynamodb_table, None);
        assert_eq!(a.common.listen.port(), 8080);
        assert_eq!((a.web.max_store_reads, a.web.max_streams_per_client, a.web.metrics_listen), (2, 16, None));
    }

    #[test]
    fn bounds_are_checked_as_typed() {
        for bad in [
            &["quake", "web", "--max-store-reads", "0"][..],
            &["quake", "web", "--client-address-header", "x y"],
            &["quake", "web", "--store-timeout-secs", "0"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let cli =
            Cli::try_parse_from(["quake", "web", "--client-address-header", "CloudFront-Viewer-Address"]).unwrap();
        let Command::Web(a) = cli.command else { panic!() };
        assert_eq!(a.web.client_address_header, "cloudfront-viewer-address");
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "quake",
            "consumer",
            "--kafka-brokers",
            "k:9092",
            "--dynamodb-table",
            "quakes",
            "--listen",
            "0.0.0.0:9090",
        ])
        .unwrap();
        let Command::Consumer(a) = cli.command else { panic!() };
        assert_eq!(a.common.kafka_brokers, "k:9092");
        assert_eq!(a.store.dynamodb_table.as_deref(), Some("quakes"));
        assert!(Cli::try_parse_from(["quake", "run", "--listen", "nope"]).is_err());
    }
}
