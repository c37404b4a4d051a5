//! End to end: the real replay file, played by a local EMSC websocket, through the producer, a
//! Kafka broker and the consumer into each store; every unid exactly once, in its last version.

mod common;

use common::*;
use quake::producer::{run_live, LiveConfig};
use quake::store::dynamo::DynamoStore;
use quake::store::sqlite::SqliteStore;
use quake::store::Store;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn live(emsc: &FakeEmsc) -> LiveConfig {
    let mut cfg = LiveConfig::new(&emsc.ws_url, &emsc.fdsn_url);
    cfg.backfill_hours = 0;
    cfg.backoff_base = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(500);
    cfg
}

async fn replay_through(p: &Pipeline) {
    let lines = fixture_lines(REPLAY);
    assert_eq!(lines.len(), 3171);
    let expected = expected_final(&lines);
    let emsc = FakeEmsc::start(lines).await;
    let (stop_consumer, consumer) = p.consumer("store");
    let stop = CancellationToken::new();
    let producer = tokio::spawn(run_live(live(&emsc), p.ingest(), Arc::new(AtomicBool::new(false)), stop.clone()));
    wait_for_store(p.store.as_ref(), &expected, Duration::from_secs(240)).await;
    assert_eq!(expected.len(), 2504, "distinct unids in the replay file");
    stop.cancel();
    stop_consumer.cancel();
    producer.await.unwrap();
    consumer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_into_embedded_store_through_mock_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("q.sqlite")).unwrap());
    replay_through(&Pipeline::mock(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_into_dynamodb_on_moto_through_mock_cluster() {
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), "quakes");
    store.ensure_table().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    replay_through(&Pipeline::mock(store)).await;
}

/// The real-broker tier: `make test` starts noida-db and sets QUAKE_TEST_KAFKA. Running without
/// it fails, unless QUAKE_SKIP_BROKER_TIER=1 says so on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_into_embedded_store_through_noida_broker() {
    let Some(brokers) = real_broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("q.sqlite")).unwrap());
    replay_through(&Pipeline::real(&brokers, store)).await;
}
