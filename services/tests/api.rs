//! The query API and the stream, driven with `oneshot` on the router and over a real listener:
//! every parameter, 400s, CSV, ETag/304, compression, SSE resume with Last-Event-ID, and 10k
//! random query strings that must only ever get 2xx or 4xx.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use quake::health::HealthState;
use quake::model::{Action, Envelope, Event};
use quake::store::sqlite::SqliteStore;
use quake::store::Store;
use quake::web::window::Window;
use quake::web::{app, WebState};
use rand::{RngExt, SeedableRng};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const HOUR: i64 = 3_600_000_000;

fn ev(unid: &str, hours_ago: f64, mag: Option<f64>, lat: f64, lon: f64, region: &str) -> Event {
    let t = chrono::Utc::now().timestamp_micros() - (hours_ago * HOUR as f64) as i64;
    Event {
        unid: unid.into(),
        time_us: t,
        lastupdate_us: t + 60_000_000,
        lat,
        lon,
        depth_km: 12.5,
        mag,
        magtype: Some("ml".into()),
        region: Some(region.into()),
        auth: Some("EMSC".into()),
        evtype: Some("ke".into()),
        source_id: Some("1".into()),
        source_catalog: Some("EMSC-RTS".into()),
    }
}

struct Fixture {
    store: Arc<dyn Store>,
    window: Arc<Window>,
    arrival: i64,
}

impl Fixture {
    async fn new() -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let window = Arc::new(Window::new(Duration::from_secs(30 * 86_400), 100_000));
        let mut f = Self { store, window, arrival: 0 };
        for e in [
            ev("A", 0.5, Some(5.1), 38.0, 23.0, "GREECE"),
            ev("B", 3.0, Some(2.0), -33.0, -71.0, "OFFSHORE VALPARAISO, CHILE"),
            ev("C", 30.0, Some(3.4), 64.0, -21.0, "ICELAND \"SOUTH\""),
            ev("D", 100.0, None, 10.0, 179.9, "FIJI ISLANDS REGION"),
            ev("E", 400.0, Some(6.2), 35.0, 139.0, "=HONSHU, JAPAN"),
        ] {
            f.write(e).await;
        }
        f
    }

    async fn write(&mut self, e: Event) {
        self.arrival += 1;
        self.store
            .upsert(&Envelope { action: Action::Create, arrival: self.arrival, source: "t".into(), event: e })
            .await
            .unwrap();
        self.sync().await;
    }

    async fn sync(&self) {
        let page = self.store.changes_since(self.window.cursor(), 10_000).await.unwrap();
        self.window.apply(page.events, page.cursor, quake::web::now_us());
    }

    fn state(&self) -> WebState {
        WebState::new(self.window.clone(), self.store.clone(), assets_dir())
    }

    fn router(&self) -> axum::Router {
        app(self.state(), HealthState::default())
    }

    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self.router().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    }

    async fn unids(&self, query: &str) -> Vec<String> {
        let (st, _, body) = self.get(&format!("/api/quakes?{query}"), &[]).await;
        assert_eq!(st, StatusCode::OK, "{query}: {}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["features"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect()
    }
}

fn iso(hours_ago: f64) -> String {
    quake::model::format_utc(chrono::Utc::now().timestamp_micros() - (hours_ago * HOUR as f64) as i64)
}

#[tokio::test]
async fn each_parameter_and_combinations() {
    let f = Fixture::new().await;
    assert_eq!(f.unids("").await, ["A", "B"], "default: last 24 h, newest first");
    assert_eq!(f.unids("window=1h").await, ["A"]);
    assert_eq!(f.unids("window=7d").await, ["A", "B", "C", "D"]);
    assert_eq!(f.unids("window=30d").await, ["A", "B", "C", "D", "E"]);
    assert_eq!(f.unids(&format!("starttime={}&endtime={}", iso(50.0), iso(2.0))).await, ["B", "C"]);
    assert_eq!(f.unids("window=30d&minmagnitude=3").await, ["A", "C", "E"]);
    assert_eq!(f.unids("window=30d&maxmagnitude=3.4").await, ["B", "C"]);
    assert_eq!(f.unids("window=30d&minmagnitude=3&maxmagnitude=5.5").await, ["A", "C"]);
    assert_eq!(f.unids("window=30d&minlatitude=30&maxlatitude=70").await, ["A", "C", "E"]);
    assert_eq!(f.unids("window=30d&minlongitude=170&maxlongitude=-60").await, ["B", "D"], "across the antimeridian");
    assert_eq!(f.unids("window=30d&minlat=30&minlon=0").await, ["A", "E"], "FDSN aliases");
    assert_eq!(f.unids("window=30d&limit=2").await, ["A", "B"]);
    assert_eq!(f.unids("window=30d&orderby=time-asc").await, ["E", "D", "C", "B", "A"]);
    assert_eq!(f.unids("window=30d&orderby=magnitude").await, ["E", "A", "C", "B", "D"]);
    assert_eq!(f.unids("window=30d&orderby=magnitude-asc&limit=2").await, ["D", "B"]);
    // Further back than the window holds: answered by the store.
    assert_eq!(f.unids(&format!("starttime={}&endtime={}", iso(24.0 * 60.0), iso(200.0))).await, ["E"]);
    let (_, _, body) = f.get("/api/quakes?window=1h", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let p = &v["features"][0]["properties"];
    for key in ["unid", "time", "lastupdate", "lat", "lon", "depth", "mag", "magtype", "flynn_region", "auth", "evtype"]
    {
        assert!(p.get(key).is_some(), "EMSC property {key} kept");
    }
    assert_eq!(v["features"][0]["geometry"]["coordinates"][2], -12.5, "z is minus the depth, as EMSC");
    assert_eq!(v["metadata"]["count"], 1);
}

#[tokio::test]
async fn bad_parameters_get_400_naming_them() {
    let f = Fixture::new().await;
    for (q, param) in [
        ("minmagnitude=abc", "minmagnitude"),
        ("window=2w", "window"),
        ("limit=-1", "limit"),
        ("orderby=size", "orderby"),
        ("format=xml", "format"),
        ("maxlatitude=100", "maxlatitude"),
        ("nonsense=1", "nonsense"),
        ("window=1h&endtime=2024-01-01", "window"),
    ] {
        let (st, h, body) = f.get(&format!("/api/quakes?{q}"), &[]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["parameter"], param, "{q}: {v}");
        assert!(v["error"]["accepted"].as_str().is_some_and(|s| !s.is_empty()), "{q}: {v}");
    }
    let (st, _, body) = f.get("/api/quakes/NOPE", &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("no event"));
}

#[tokio::test]
async fn csv_quotes_regions_and_defuses_formulas() {
    let f = Fixture::new().await;
    let (st, h, body) = f.get("/api/quakes?window=30d&format=csv&orderby=time-asc", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "unid,time,lastupdate,latitude,longitude,depth,mag,magtype,flynn_region,auth,evtype");
    assert_eq!(lines.len(), 6);
    assert!(lines[1].contains(",'=HONSHU, JAPAN") || lines[1].contains("\"'=HONSHU, JAPAN\""), "{}", lines[1]);
    assert!(text.contains("\"OFFSHORE VALPARAISO, CHILE\""));
    assert!(text.contains("\"ICELAND \"\"SOUTH\"\"\""));
    assert!(lines[2].contains(",,ml,"), "null magnitude is an empty field: {}", lines[2]);
}

#[tokio::test]
async fn one_event_by_unid() {
    let f = Fixture::new().await;
    let (st, h, body) = f.get("/api/quakes/C", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/geo+json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["properties"]["flynn_region"], "ICELAND \"SOUTH\"");
}

#[tokio::test]
async fn etag_304_cache_headers_and_compression() {
    let mut f = Fixture::new().await;
    let (st, h, plain) = f.get("/api/quakes?window=7d", &[]).await;
    assert_eq!(st, StatusCode::OK);
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    assert!(h[header::CACHE_CONTROL].to_str().unwrap().contains("max-age"));
    assert_eq!(h[header::VARY], "accept-encoding");
    let (st, h304, body) = f.get("/api/quakes?window=7d", &[("if-none-match", &etag)]).await;
    assert_eq!(st, StatusCode::NOT_MODIFIED, "{etag} vs {:?}", h304.get(header::ETAG));
    assert!(body.is_empty());
    assert_eq!(h304[header::ETAG], etag.as_str());

    let (_, h, gz) = f.get("/api/quakes?window=7d", &[("accept-encoding", "gzip")]).await;
    assert_eq!(h[header::CONTENT_ENCODING], "gzip");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
    assert_eq!(out, plain);
    let (_, h, br) = f.get("/api/quakes?window=7d", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(h[header::CONTENT_ENCODING], "br");
    let mut out = Vec::new();
    brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut out).unwrap();
    assert_eq!(out, plain);

    // A new event changes the answer and its ETag.
    f.write(ev("F", 1.0, Some(4.0), 0.0, 0.0, "NEW")).await;
    let (st, h, _) = f.get("/api/quakes?window=7d", &[("if-none-match", &etag)]).await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(h[header::ETAG].to_str().unwrap(), etag);

    // The page and its files are compressed too.
    let (st, h, _) = f.get("/app.js", &[("accept-encoding", "gzip")]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h[header::CONTENT_ENCODING], "gzip");
    let (st, h, _) = f.get("/", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
}

/// The FDSN service answers from the same window and cache: a kept answer is not served once
/// an event changed, in either the window or the store; text rows name each event once; the
/// WADL names the host the client reached.
#[tokio::test]
async fn fdsn_answers_follow_changes_and_speak_the_fdsn_formats() {
    let mut f = Fixture::new().await;
    let ids = |body: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(body).lines().skip(1).map(|l| l.split('|').next().unwrap().to_owned()).collect()
    };
    let week = format!("/fdsnws/event/1/query?format=text&starttime={}&orderby=magnitude", iso(24.0 * 7.0));
    let (st, h, body) = f.get(&week, &[]).await;
    assert_eq!((st, h[header::CONTENT_TYPE].to_str().unwrap()), (StatusCode::OK, "text/plain; charset=utf-8"));
    assert_eq!(ids(&body), ["A", "C", "B", "D"], "by magnitude, the one without last");
    let old = format!("/fdsnws/event/1/query?format=text&starttime={}&endtime={}", iso(24.0 * 40.0), iso(24.0 * 7.0));
    assert_eq!(ids(&f.get(&old, &[]).await.2), ["E"]);
    f.write(ev("F", 1.0, Some(4.0), 0.0, 0.0, "NEW")).await;
    f.write(ev("G", 24.0 * 30.0, Some(1.0), 0.0, 0.0, "OLD")).await;
    assert_eq!(ids(&f.get(&week, &[]).await.2), ["A", "F", "C", "B", "D"], "a new event in the window");
    assert_eq!(ids(&f.get(&old, &[]).await.2), ["E", "G"], "a new event in the store");

    let (st, h, body) = f.get("/fdsnws/event/1/query?minmag=11", &[]).await;
    assert_eq!((st, body.len()), (StatusCode::NO_CONTENT, 0));
    assert!(h.get(header::CONTENT_TYPE).is_none());
    let (st, _, body) = f.get("/fdsnws/event/1/query?eventid=C&format=xml", &[]).await;
    assert_eq!(st, StatusCode::OK);
    let xml = String::from_utf8(body).unwrap();
    assert!(xml.contains("<text>ICELAND &quot;SOUTH&quot;</text>"), "{xml}");
    let (st, _, body) = f.get("/fdsnws/event/1/query?eventid=NONE&nodata=404", &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body.starts_with(b"Error 404: Not Found\n"));
    let (_, _, wadl) = f.get("/fdsnws/event/1/application.wadl", &[("host", "quake.example:8443")]).await;
    assert!(String::from_utf8(wadl).unwrap().contains(r#"base="http://quake.example:8443/fdsnws/event/1/""#));
    let (_, _, list) = f.get("/fdsnws/event/1/contributors", &[]).await;
    assert_eq!(
        String::from_utf8(list).unwrap().trim_end(),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Contributors><Contributor>EMSC</Contributor></Contributors>"#
    );
}

/// Reads SSE frames `(event, id, data)` from a real connection.
async fn sse(
    client: &reqwest::Client,
    url: &str,
    last_id: Option<&str>,
) -> impl futures_util::Stream<Item = (String, String, String)> {
    let mut req = client.get(url);
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut buf = String::new();
    let chunks = futures_util::stream::unfold(res, |mut res| async move {
        match res.chunk().await {
            Ok(Some(c)) => Some((c, res)),
            _ => None,
        }
    });
    chunks.flat_map(move |chunk| {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        let mut frames = Vec::new();
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut ev, mut id, mut data) = (String::from("message"), String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev = v.trim().into();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().into();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim_start().into();
                }
            }
            if !frame.starts_with(':') {
                frames.push((ev, id, data));
            }
        }
        futures_util::stream::iter(frames)
    })
}

/// Both ways a stream is served: a connection that opens with it (the lean writer) and a
/// keep-alive connection that served another request first (the general HTTP path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_pushes_changes_and_resumes_with_last_event_id() {
    for warm in [false, true] {
        sse_case(warm).await;
    }
}

async fn sse_case(warm: bool) {
    let mut f = Fixture::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/api/stream");
    let stop = tokio_util::sync::CancellationToken::new();
    let state = f.state();
    tokio::spawn(quake::web::serve(listener, app(state.clone(), HealthState::default()), state, stop.clone()));
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let warm_up = |c: reqwest::Client| {
        let base = base.clone();
        async move {
            if warm {
                let r = c.get(format!("{base}/healthz")).send().await.unwrap();
                assert_eq!(r.text().await.unwrap(), "ok\n");
            }
        }
    };
    warm_up(client.clone()).await;
    let mut s = Box::pin(sse(&client, &url, None).await);
    let (ev0, _, _) = s.next().await.unwrap();
    assert_eq!(ev0, "hello");
    f.write(ev("G", 0.1, Some(3.0), 1.0, 1.0, "FIRST")).await;
    let (ev1, id1, data1) = tokio::time::timeout(Duration::from_secs(2), s.next()).await.unwrap().unwrap();
    assert_eq!(ev1, "created");
    assert!(data1.contains("\"FIRST\""));
    let mut moved = ev("G", 0.1, Some(3.6), 1.5, 1.0, "FIRST");
    moved.lastupdate_us += 1;
    f.write(moved).await;
    let (ev2, id2, data2) = tokio::time::timeout(Duration::from_secs(2), s.next()).await.unwrap().unwrap();
    assert_eq!(ev2, "updated");
    assert!(data2.contains("3.6"));
    assert!(id2.parse::<i64>().unwrap() > id1.parse::<i64>().unwrap());
    drop(s);

    // Missed while away: two more; a reconnect with the last id it saw gets exactly those.
    f.write(ev("H", 0.1, Some(2.2), 2.0, 2.0, "MISSED ONE")).await;
    f.write(ev("I", 0.1, Some(2.3), 3.0, 3.0, "MISSED TWO")).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    warm_up(client.clone()).await;
    let mut s = Box::pin(sse(&client, &url, Some(&id2)).await);
    let mut got = Vec::new();
    while got.len() < 3 {
        let (e, _, d) = tokio::time::timeout(Duration::from_secs(2), s.next()).await.unwrap().unwrap();
        got.push((e, d));
    }
    assert_eq!(got[0].0, "hello");
    assert!(got[1].1.contains("MISSED ONE") && got[2].1.contains("MISSED TWO"), "{got:?}");
    // And then live again, nothing repeated.
    f.write(ev("J", 0.1, Some(2.4), 4.0, 4.0, "LIVE AGAIN")).await;
    let (e, _, d) = tokio::time::timeout(Duration::from_secs(2), s.next()).await.unwrap().unwrap();
    assert_eq!(e, "created");
    assert!(d.contains("LIVE AGAIN"), "{d}");
    stop.cancel();
}

#[tokio::test]
async fn slow_clients_are_told_to_reload_instead_of_holding_others_up() {
    let mut f = Fixture::new().await;
    let mut slow = f.window.subscribe();
    let mut fast = f.window.subscribe();
    for i in 0..5000 {
        f.arrival += 1;
        let e = ev(&format!("X{i}"), 0.2, Some(1.0), 0.0, 0.0, "BURST");
        f.store
            .upsert(&Envelope { action: Action::Create, arrival: f.arrival, source: "t".into(), event: e })
            .await
            .unwrap();
        if i % 500 == 499 {
            f.sync().await;
            // The fast client keeps up.
            while let Ok(c) = fast.try_recv() {
                assert_eq!(c.kind, "created");
            }
        }
    }
    assert!(matches!(slow.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))), "bounded buffer");
}

#[tokio::test]
async fn ten_thousand_random_query_strings_get_only_2xx_or_4xx() {
    let f = Fixture::new().await;
    let router = f.router();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let keys = [
        "starttime",
        "endtime",
        "start",
        "end",
        "window",
        "minmagnitude",
        "maxmagnitude",
        "minmag",
        "maxmag",
        "minlatitude",
        "maxlatitude",
        "minlongitude",
        "maxlongitude",
        "limit",
        "orderby",
        "format",
        "x",
        "",
        "%00",
        "limit[]",
        // The FDSN service's own.
        "latitude",
        "maxradius",
        "mindepth",
        "eventtype",
        "eventid",
        "offset",
        "updatedafter",
        "nodata",
        "magnitudetype",
        "includearrivals",
    ];
    let values = [
        "",
        "0",
        "-1",
        "1e309",
        "NaN",
        "inf",
        "5.5",
        "-91",
        "181",
        "2024-04-11",
        "2024-13-45",
        "2024-04-11T00:00:00Z",
        "1h",
        "24h",
        "7d",
        "30d",
        "99d",
        "time",
        "magnitude",
        "csv",
        "geojson",
        "%ZZ",
        "%F0%9F%92%A5",
        "9999999999999999999",
        "<script>",
        "'",
        "\"",
        "2024-04-11T00:00:00.1234567891Z",
        "+3",
        " 3 ",
        "text",
        "xml",
        "404",
        "true",
        "earthquake",
        "A",
    ];
    let mut seen = std::collections::HashMap::new();
    for _ in 0..10_000 {
        let n = rng.random_range(0..6);
        let mut qs = String::new();
        for i in 0..n {
            if i > 0 {
                qs.push('&');
            }
            if rng.random_bool(0.1) {
                // Raw random bytes, percent-encoded or not.
                let len = rng.random_range(0..12);
                for _ in 0..len {
                    let c = rng.random_range(0x21u8..0x7f);
                    if c != b'#' {
                        qs.push(c as char);
                    }
                }
            } else {
                qs.push_str(keys[rng.random_range(0..keys.len())]);
                qs.push('=');
                qs.push_str(values[rng.random_range(0..values.len())]);
            }
        }
        let path = if rng.random_bool(0.5) { "/api/quakes" } else { "/fdsnws/event/1/query" };
        let uri = format!("{path}?{qs}");
        let Ok(req) = Request::get(uri.as_str()).body(Body::empty()) else { continue };
        let res = router.clone().oneshot(req).await.unwrap();
        let code = res.status().as_u16();
        assert!((200..500).contains(&code), "{uri} -> {code}");
        *seen.entry(code).or_insert(0) += 1;
    }
    assert!(seen.get(&200).copied().unwrap_or(0) > 100 && seen.get(&400).copied().unwrap_or(0) > 100, "{seen:?}");
}

/// The web server's own numbers at `/metrics` (what the Grafana web dashboard reads): requests
/// by route and status class, their latency, the window's size and the stream's subscribers,
/// sampled when scraped.
#[tokio::test]
async fn metrics_count_requests_by_route_and_sample_the_window() {
    let f = Fixture::new().await;
    let ops = HealthState::default();
    let router = app(WebState::new(f.window.clone(), f.store.clone(), assets_dir()), ops.clone());
    for uri in [
        "/api/quakes",
        "/api/quakes?window=7d",
        "/api/quakes/A",
        "/api/quakes/nope",
        "/api/quakes?minmag=x",
        "/fdsnws/event/1/query?format=text",
        "/fdsnws/event/1/query?minmag=x",
        "/fdsnws/event/1/version",
    ] {
        router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    }
    let streams = [f.window.subscribe(), f.window.subscribe()];
    let res = router.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for line in [
        r#"quake_http_requests_total{route="/api/quakes",code="2xx"} 2"#,
        r#"quake_http_requests_total{route="/api/quakes",code="4xx"} 1"#,
        r#"quake_http_requests_total{route="/api/quakes/{unid}",code="2xx"} 1"#,
        r#"quake_http_requests_total{route="/api/quakes/{unid}",code="4xx"} 1"#,
        r#"quake_http_request_duration_seconds_count{route="/api/quakes"} 3"#,
        r#"quake_http_requests_total{route="/fdsnws/event/1/query",code="2xx"} 1"#,
        r#"quake_http_requests_total{route="/fdsnws/event/1/query",code="4xx"} 1"#,
        r#"quake_http_requests_total{route="/fdsnws/event/1/*",code="2xx"} 1"#,
        "quake_sse_clients 2",
        "quake_window_events 5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    drop(streams);
    let res = router.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.lines().any(|l| l == "quake_sse_clients 0"), "{text}");
    assert!(text.lines().any(|l| l == r#"quake_http_requests_total{route="/metrics",code="2xx"} 1"#), "{text}");
}
