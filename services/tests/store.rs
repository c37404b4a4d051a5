//! The store contract, checked the same way on SQLite and on DynamoDB (moto server): versions of
//! an event in any order end in one state, identical repeats change nothing, queries filter and
//! order correctly, and the change feed reports content changes.

mod common;

use common::*;
use quake::model::{Envelope, Event};
use quake::store::dynamo::DynamoStore;
use quake::store::sqlite::SqliteStore;
use quake::store::{Store, WindowQuery, WriteOutcome};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{HashMap, HashSet};

/// Every message of events that have more than one, stamped in file order.
fn multi_version_envelopes() -> Vec<Envelope> {
    let lines = fixture_lines(REPLAY);
    let mut envs: Vec<Envelope> = stamped(&lines);
    let mut count: HashMap<String, usize> = HashMap::new();
    for e in &envs {
        *count.entry(e.event.unid.clone()).or_default() += 1;
    }
    envs.retain(|e| count[&e.event.unid] > 1);
    envs
}

fn final_state(envs: &[Envelope]) -> HashMap<String, Event> {
    let mut m = HashMap::new();
    for e in envs {
        m.insert(e.event.unid.clone(), e.event.clone());
    }
    m
}

async fn assert_state(store: &dyn Store, expected: &HashMap<String, Event>) {
    for (unid, e) in expected {
        let got = store.get(unid).await.unwrap().unwrap();
        assert_eq!(&got.event, e, "{unid}");
    }
}

#[tokio::test]
async fn any_delivery_order_gives_the_same_state_sqlite() {
    let envs = multi_version_envelopes();
    assert!(envs.len() > 500, "{} messages of multi-version events", envs.len());
    let expected = final_state(&envs);
    for seed in 0..20 {
        let mut shuffled = envs.clone();
        shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        // Redeliver a third of them too, as a restarted consumer would.
        let again: Vec<Envelope> = shuffled.iter().step_by(3).cloned().collect();
        shuffled.extend(again);
        let store = SqliteStore::in_memory().unwrap();
        for chunk in shuffled.chunks(37) {
            for r in store.upsert_batch(chunk).await {
                r.unwrap();
            }
        }
        assert_state(&store, &expected).await;
    }
}

#[tokio::test]
async fn any_delivery_order_gives_the_same_state_dynamodb() {
    let moto = Moto::start().await;
    let envs: Vec<Envelope> = multi_version_envelopes().into_iter().take(400).collect();
    let expected = final_state(&envs);
    for seed in 0..2 {
        let store = DynamoStore::new(moto.dynamodb(), &format!("quakes-{seed}"));
        store.ensure_table().await.unwrap();
        let mut shuffled = envs.clone();
        shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        for r in store.upsert_batch(&shuffled).await {
            r.unwrap();
        }
        assert_state(&store, &expected).await;
    }
}

fn event(unid: &str, t: &str, mag: Option<f64>, lat: f64, lon: f64) -> Event {
    let us = quake::model::parse_utc(t).unwrap();
    Event {
        unid: unid.into(),
        time_us: us,
        lastupdate_us: us + 1_000_000,
        lat,
        lon,
        depth_km: 10.0,
        mag,
        magtype: Some("ml".into()),
        region: Some("TEST REGION".into()),
        auth: Some("EMSC".into()),
        evtype: Some("ke".into()),
        source_id: None,
        source_catalog: None,
    }
}

fn env(e: &Event, arrival: i64) -> Envelope {
    Envelope { action: quake::model::Action::Create, arrival, source: "test".into(), event: e.clone() }
}

async fn contract(store: &dyn Store) {
    let a = event("A", "2024-04-10T23:59:00.0Z", Some(4.5), 10.0, 20.0);
    let b = event("B", "2024-04-11T01:00:00.0Z", Some(2.0), -10.0, 179.5);
    let c = event("C", "2024-04-12T12:00:00.5Z", None, 45.0, -179.5);
    assert_eq!(store.upsert(&env(&a, 1)).await.unwrap(), WriteOutcome::Created);
    assert_eq!(store.upsert(&env(&b, 2)).await.unwrap(), WriteOutcome::Created);
    assert_eq!(store.upsert(&env(&c, 3)).await.unwrap(), WriteOutcome::Created);
    // The exact same message again (a redelivery): nothing.
    assert_eq!(store.upsert(&env(&a, 1)).await.unwrap(), WriteOutcome::Older);
    // The same content arriving later (EMSC repeats): only the version moves.
    assert_eq!(store.upsert(&env(&a, 4)).await.unwrap(), WriteOutcome::Unchanged);
    // A real update with an unchanged lastupdate wins by arrival order.
    let mut a2 = a.clone();
    a2.mag = Some(4.9);
    assert_eq!(store.upsert(&env(&a2, 5)).await.unwrap(), WriteOutcome::Updated);
    // An older message arriving late loses.
    assert_eq!(store.upsert(&env(&a, 3)).await.unwrap(), WriteOutcome::Older);
    assert_eq!(store.get("A").await.unwrap().unwrap().event.mag, Some(4.9));
    assert!(store.get("nope").await.unwrap().is_none());

    let all = WindowQuery::new(
        quake::model::parse_utc("2024-04-10T00:00:00Z").unwrap(),
        quake::model::parse_utc("2024-04-13T00:00:00Z").unwrap(),
    );
    let ids = |v: Vec<quake::store::Stored>| v.into_iter().map(|s| s.event.unid).collect::<Vec<_>>();
    assert_eq!(ids(store.window(&all).await.unwrap()), ["C", "B", "A"], "newest first across days");
    let q = WindowQuery { min_mag: Some(3.0), ..all.clone() };
    assert_eq!(ids(store.window(&q).await.unwrap()), ["A"], "null magnitude excluded by a minimum");
    let q = WindowQuery { max_mag: Some(3.0), ..all.clone() };
    assert_eq!(ids(store.window(&q).await.unwrap()), ["B"]);
    let q = WindowQuery { bbox: Some((-20.0, 50.0, 170.0, -170.0)), ..all.clone() };
    assert_eq!(ids(store.window(&q).await.unwrap()), ["C", "B"], "box across the antimeridian");
    let q = WindowQuery { limit: 2, ..all.clone() };
    assert_eq!(ids(store.window(&q).await.unwrap()), ["C", "B"]);
    let q = WindowQuery { limit: 2, oldest: true, ..all.clone() };
    assert_eq!(ids(store.window(&q).await.unwrap()), ["B", "A"], "the oldest two, still newest first");
    let q = WindowQuery::new(b.time_us, c.time_us - 1);
    assert_eq!(ids(store.window(&q).await.unwrap()), ["B"], "inclusive start, end before C");

    // Change feed: every content change, none for the unchanged repeat; dedupe by version.
    let mut cursor = 0;
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let page = store.changes_since(cursor, 100).await.unwrap();
        for s in page.events {
            seen.insert((s.event.unid.clone(), s.event.mag.map(|m| (m * 10.0) as i64)));
        }
        cursor = page.cursor;
    }
    assert!(
        seen.contains(&("A".into(), Some(49)))
            && seen.contains(&("B".into(), Some(20)))
            && seen.contains(&("C".into(), None))
    );
    let d = event("D", "2024-04-12T13:00:00.0Z", Some(1.0), 0.0, 0.0);
    store.upsert(&env(&d, 9)).await.unwrap();
    let page = store.changes_since(cursor, 100).await.unwrap();
    assert!(page.events.iter().any(|s| s.event.unid == "D"), "a new write shows after the cursor");
    assert!(page.cursor >= cursor);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn contract_sqlite() {
    contract(&SqliteStore::in_memory().unwrap()).await;
}

#[tokio::test]
async fn contract_dynamodb() {
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), "contract");
    store.ensure_table().await.unwrap();
    contract(&store).await;
}
