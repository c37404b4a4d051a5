//! The map page's USGS-parity and beyond features in Debian's headless Chromium, over the real
//! product with the replay's week: list orders, the view-restricted and virtualised list,
//! keyboard, UTC/local times, downloads that hold the listed events, the largest event, the
//! time-lapse, the heat view, alerts near a (browser-set) position, the basemap without bands
//! across the antimeridian, and axe-core's accessibility rules in light and dark.

mod common;

#[path = "common/cdp.rs"]
mod cdp;

use cdp::Browser;
use common::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const S: Duration = Duration::from_secs(10);

async fn set(b: &Browser, id: &str, value: &str) {
    b.eval(&format!(
        "(() => {{ const e = document.getElementById('{id}'); \
         if (e.type === 'checkbox') e.checked = {value}; else e.value = '{value}'; \
         e.dispatchEvent(new Event(e.type === 'range' ? 'input' : 'change')); return true; }})()"
    ))
    .await;
}

async fn listed(b: &Browser) -> Vec<String> {
    serde_json::from_value(b.eval("window.quakeMap.listed()").await).unwrap()
}

/// The ids of a download link's file, fetched and parsed in the page, in file order.
async fn download(b: &Browser, id: &str) -> Vec<String> {
    let js = format!(
        "(async () => {{
            const a = document.getElementById('{id}');
            const text = await (await fetch(a.href)).text();
            if ('{id}' === 'dl-geojson') return JSON.parse(text).features.map((f) => f.id);
            if ('{id}' === 'dl-csv') return text.trim().split('\\n').slice(1).map((l) => l.split(',')[0]);
            const doc = new DOMParser().parseFromString(text, 'application/xml');
            if (doc.querySelector('parsererror')) throw new Error('QuakeML does not parse');
            return [...doc.getElementsByTagName('event')].map((e) => e.getAttribute('publicID').split('/').pop());
        }})()"
    );
    serde_json::from_value(b.eval(&js).await).unwrap()
}

/// axe-core's violations on the page as it is, as `rule: target (summary)` lines, and how many
/// rules passed (so a run that checked nothing cannot pass).
async fn axe(b: &Browser) -> (Vec<String>, usize) {
    let v = b
        .eval(
            "axe.run(document).then((r) => [r.violations.flatMap((v) => \
             v.nodes.slice(0, 4).map((n) => `${v.id}: ${n.target.join(' ')} (${n.failureSummary})`)), r.passes.length])",
        )
        .await;
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_beyond_the_usgs_map() {
    let lines = shifted_to_now(&fixture_lines(REPLAY));
    let expected = expected_final(&lines);
    let stack = LiveStack::start(lines).await;
    wait_for_store(stack.pipeline.store.as_ref(), &expected, Duration::from_secs(120)).await;
    let b = Browser::start(1280, 800).await;
    b.call("Emulation.setTimezoneOverride", json!({"timezoneId": "Asia/Tokyo"})).await;
    b.goto(&format!("{}/?window=7d&inview=0", stack.url)).await;
    b.wait_for("document.body.dataset.loaded === 'true'", Duration::from_secs(30), "the page to load").await;
    let since_ms = b.eval("window.quakeMap.since()").await.as_f64().unwrap() as i64;
    let in_window: HashMap<&str, &quake::model::Event> =
        expected.iter().filter(|(_, e)| e.time_us / 1000 >= since_ms).map(|(k, e)| (k.as_str(), e)).collect();
    let n = in_window.len();
    assert!(n > 2000, "the week holds {n} events");

    // Every event of the week is in the list, which keeps only a screenful of rows in the page.
    b.wait_for(&format!("window.quakeMap.listed().length === {n}"), S, "every event listed").await;
    let rows = b.eval("document.querySelectorAll('#list li').length").await.as_u64().unwrap();
    assert!(rows < 80, "{rows} rows in the document for {n} events");
    let size = b.eval("document.querySelector('#list li').getAttribute('aria-setsize')").await;
    assert_eq!(size, json!(n.to_string()), "the list announces its length");
    // By keyboard: the first row, then End, reaches the last event.
    b.eval("document.querySelector('#list li[data-index=\"0\"] button').focus(); true").await;
    b.call(
        "Input.dispatchKeyEvent",
        json!({"type": "keyDown", "key": "End", "code": "End", "windowsVirtualKeyCode": 35}),
    )
    .await;
    b.wait_for(
        &format!("document.activeElement.closest('li')?.getAttribute('aria-posinset') === '{n}'"),
        S,
        "End to focus the last of the list",
    )
    .await;
    b.call(
        "Input.dispatchKeyEvent",
        json!({"type": "keyDown", "key": "ArrowUp", "code": "ArrowUp", "windowsVirtualKeyCode": 38}),
    )
    .await;
    b.wait_for(
        &format!("document.activeElement.closest('li')?.getAttribute('aria-posinset') === '{}'", n - 1),
        S,
        "ArrowUp to the row before",
    )
    .await;

    // Each order is the order of the API's answer for the same view, and the three downloads
    // hold exactly the listed events.
    for order in ["newest", "oldest", "largest", "smallest"] {
        set(&b, "sort", order).await;
        b.wait_for(
            &format!("location.search.includes('sort={order}') || '{order}' === 'newest'"),
            S,
            "the order in the URL",
        )
        .await;
        let list = listed(&b).await;
        assert_eq!(list.len(), n);
        let file = download(&b, "dl-geojson").await;
        let diff = file.iter().zip(&list).position(|(a, b)| a != b);
        assert!(
            file.len() == list.len() && diff.is_none(),
            "{order}: the GeoJSON download in the list's order; first difference at {diff:?}"
        );
        let mags: Vec<f64> = list.iter().map(|u| in_window[u.as_str()].mag.unwrap_or(f64::NEG_INFINITY)).collect();
        let times: Vec<i64> = list.iter().map(|u| in_window[u.as_str()].time_us).collect();
        let ok = match order {
            "newest" => times.windows(2).all(|w| w[0] >= w[1]),
            "oldest" => times.windows(2).all(|w| w[0] <= w[1]),
            "largest" => mags.windows(2).all(|w| w[0] >= w[1]),
            _ => mags.windows(2).all(|w| w[0] <= w[1]),
        };
        assert!(ok, "the list is {order} first");
    }
    let all: HashSet<String> = listed(&b).await.into_iter().collect();
    assert_eq!(download(&b, "dl-csv").await.into_iter().collect::<HashSet<_>>(), all, "the CSV download");
    assert_eq!(download(&b, "dl-quakeml").await.into_iter().collect::<HashSet<_>>(), all, "the QuakeML download");

    // Only what the map shows: zoomed on Turkey, the list and the downloads are that box.
    set(&b, "sort", "newest").await;
    set(&b, "inview", "true").await;
    b.eval("window.quakeMap.map.setView([39, 35], 6, { animate: false }); true").await;
    b.wait_for("new URLSearchParams(location.search).get('at') === '39.00,35.00,6'", S, "the view in the URL").await;
    let bounds = b.eval("(() => { const b = window.quakeMap.map.getBounds(); return [b.getSouth(), b.getNorth(), b.getWest(), b.getEast()]; })()").await;
    let [s, nn, w, e]: [f64; 4] = serde_json::from_value(bounds).unwrap();
    let in_view: HashSet<String> = in_window
        .values()
        .filter(|ev| ev.lat >= s + 1e-3 && ev.lat <= nn - 1e-3 && ev.lon >= w + 1e-3 && ev.lon <= e - 1e-3)
        .map(|ev| ev.unid.clone())
        .collect();
    b.wait_for("document.getElementById('listed').textContent.endsWith('listed')", S, "the listed count").await;
    let list: HashSet<String> = listed(&b).await.into_iter().collect();
    assert!(in_view.len() > 100 && in_view.is_subset(&list), "{} in view, {} listed", in_view.len(), list.len());
    assert!(list.len() <= in_view.len() + 5, "only the view: {} listed for {} inside it", list.len(), in_view.len());
    assert_eq!(download(&b, "dl-geojson").await.into_iter().collect::<HashSet<_>>(), list, "the view's GeoJSON");
    assert_eq!(download(&b, "dl-quakeml").await.into_iter().collect::<HashSet<_>>(), list, "the view's QuakeML");

    // Times: local (Tokyo here) or UTC, in the list.
    let first = listed(&b).await[0].clone();
    let t = chrono::DateTime::from_timestamp_micros(in_window[first.as_str()].time_us).unwrap();
    let row_time = "document.querySelector('#list li[data-index=\"0\"] .when').textContent";
    let tokyo = (t + chrono::Duration::hours(9)).format("%-I:%M:%S %p").to_string();
    let local = b.eval(row_time).await;
    assert!(
        local.as_str().unwrap().contains(&tokyo) && !local.as_str().unwrap().contains("UTC"),
        "{local} in Tokyo time ({tokyo})"
    );
    set(&b, "tz", "utc").await;
    let utc = b.eval(row_time).await;
    assert!(utc.as_str().unwrap().starts_with(&t.format("%Y-%m-%d %H:%M:%S UTC").to_string()), "{utc} in UTC");
    assert!(b.eval("location.search.includes('tz=utc')").await.as_bool().unwrap());

    // The largest event of the window is named and ringed, whatever the swarm around it.
    let top = in_window.values().filter_map(|e| e.mag).fold(f64::NEG_INFINITY, f64::max);
    let largest = b.eval("document.getElementById('largest').textContent").await;
    assert!(largest.as_str().unwrap().starts_with(&format!("Largest: M{top} ")), "{largest} (M{top})");
    assert_eq!(b.eval("document.querySelectorAll('path.halo').length").await, json!(1));

    // The time-lapse at mid-window shows the events up to that moment, then plays forward.
    b.eval("window.quakeMap.map.setView([20, 10], 2, { animate: false }); true").await;
    set(&b, "lapse", "500").await;
    let at_ms = b.eval("window.quakeMap.state.lapse").await.as_f64().unwrap() as i64;
    let upto = in_window.values().filter(|e| e.time_us / 1000 <= at_ms).count();
    assert!(upto > 100 && upto < n, "{upto} of {n} events by mid-window");
    b.wait_for(
        &format!("document.querySelectorAll('path.quake').length === {upto}"),
        S,
        &format!("{upto} symbols at mid-window"),
    )
    .await;
    // The moment is in the URL: the link opens the time-lapse there.
    let href = b.eval("location.href").await.as_str().unwrap().to_owned();
    assert!(href.contains("lapse="), "{href}");
    b.goto(&href).await;
    b.wait_for("document.body.dataset.loaded === 'true'", Duration::from_secs(30), "the page at that moment").await;
    let since_now = b.eval("window.quakeMap.since()").await.as_f64().unwrap() as i64;
    let held_now =
        |until: i64| expected.values().filter(|e| e.time_us / 1000 >= since_now && e.time_us / 1000 <= until).count();
    let upto = held_now(at_ms);
    b.wait_for(
        &format!(
            "Math.abs(window.quakeMap.state.lapse - {at_ms}) < 1000 && document.querySelectorAll('path.quake').length === {upto}"
        ),
        S,
        "the same moment from the link",
    )
    .await;
    set(&b, "lapse-speed", "8").await;
    b.eval("document.getElementById('lapse-play').click(); true").await;
    b.wait_for(&format!("document.querySelectorAll('path.quake').length > {upto}"), S, "more symbols as it plays")
        .await;
    b.eval("document.getElementById('lapse-live').click(); true").await;
    let n_now = held_now(i64::MAX);
    b.wait_for(&format!("document.querySelectorAll('path.quake').length === {n_now}"), S, "every symbol again, live")
        .await;
    assert!(!b.eval("location.search").await.as_str().unwrap().contains("lapse="), "live: no moment in the URL");

    // The heat view instead of symbols, and back.
    set(&b, "view", "heat").await;
    b.wait_for("document.querySelectorAll('path.quake').length === 0 && !!document.querySelector('canvas.leaflet-heatmap-layer')", S, "the heat map").await;
    set(&b, "view", "symbols").await;
    b.wait_for(&format!("document.querySelectorAll('path.quake').length === {n_now}"), S, "the symbols again").await;

    // Alerts near me: the browser's position (granted and set through DevTools) is Athens.
    b.call("Browser.grantPermissions", json!({"permissions": ["geolocation"], "origin": stack.url})).await;
    b.call("Emulation.setGeolocationOverride", json!({"latitude": 37.98, "longitude": 23.73, "accuracy": 10})).await;
    b.eval("document.getElementById('alerts').open = true; true").await;
    set(&b, "near-km", "300").await;
    set(&b, "near-mag", "3").await;
    set(&b, "near-on", "true").await;
    b.wait_for(
        "document.getElementById('near-status').textContent.startsWith('Your location: 37.98, 23.73')",
        S,
        "the position",
    )
    .await;
    assert!(
        b.eval("location.search.includes('near=300%2C3')").await.as_bool().unwrap(),
        "the alert settings in the URL"
    );
    stack.push(frame_now("29991231_0000011", 6.8, -33.0, -71.0, "FAR AWAY"));
    stack.push(frame_now("29991231_0000012", 2.0, 38.1, 23.8, "NEAR BUT SMALL"));
    stack.push(frame_now("29991231_0000013", 4.1, 38.2, 23.9, "NEAR"));
    b.wait_for("window.quakeMap.quakes.has('29991231_0000013')", S, "the near event").await;
    b.wait_for("window.quakeMap.alerts.log.length >= 1", S, "an alert").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = b.eval("window.quakeMap.alerts.log.map((a) => `${a.unid} ${a.kind}`)").await;
    assert_eq!(log, json!(["29991231_0000013 near"]), "only the near event of magnitude 3+ alerts");
    let banner = b.eval("document.getElementById('alert-banner').textContent").await;
    assert!(banner.as_str().unwrap().starts_with("Near you: M4.1 NEAR, 2"), "{banner}");

    // The basemap: no edge of any land ring is longer than 180 degrees of longitude.
    let step = b.eval("window.quakeMap.landStep()").await.as_f64().unwrap();
    assert!(step < 180.0, "a land edge spans {step} degrees");

    // Accessibility: axe-core finds nothing, in the light and the dark theme.
    let axe_js = std::fs::read_to_string(assets_dir().join("node_modules/axe-core/axe.min.js"))
        .expect("axe-core is installed by `make web`");
    for theme in ["light", "dark"] {
        b.call("Emulation.setEmulatedMedia", json!({"features": [{"name": "prefers-color-scheme", "value": theme}]}))
            .await;
        b.goto(&format!("{}/?window=24h", stack.url)).await;
        b.wait_for("document.body.dataset.loaded === 'true'", Duration::from_secs(30), "the page").await;
        // The alerts' settings open, so their controls are checked too.
        b.eval("document.getElementById('alerts').open = true; true").await;
        b.eval(&format!("{axe_js}; true")).await;
        let (v, passed) = axe(&b).await;
        println!("axe-core, {theme} theme: {passed} rules passed, {} violations", v.len());
        assert!(passed > 20 && v.is_empty(), "axe-core in the {theme} theme:\n{}", v.join("\n"));
        let dir = std::path::PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
        b.screenshot(&dir.join("screenshots").join(format!("map-{theme}.png"))).await;
    }
    // A phone: everything stacks, nothing is wider than the screen, the list still scrolls.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": true}),
    )
    .await;
    b.goto(&format!("{}/?window=7d", stack.url)).await;
    b.wait_for("document.body.dataset.loaded === 'true'", Duration::from_secs(30), "the page on a phone").await;
    b.wait_for(
        "document.documentElement.scrollWidth <= window.innerWidth && document.querySelectorAll('#list li').length > 3",
        S,
        "a phone layout without horizontal scrolling, with list rows",
    )
    .await;
    let dir = std::path::PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    b.screenshot(&dir.join("screenshots").join("map-phone.png")).await;
    assert!(b.errors.lock().unwrap().is_empty(), "page errors: {:?}", b.errors.lock().unwrap());
    drop(b);
    stack.stop().await;
}
