//! The map page in Debian's headless Chromium over the DevTools protocol, against the whole
//! local product in process: symbols, live arrival, filters in the URL, details, hostile
//! region text, no request leaving localhost, and a screenshot.

mod common;

#[path = "common/cdp.rs"]
mod cdp;

use cdp::Browser;
use common::*;
use std::time::Duration;

fn screenshot_dir() -> std::path::PathBuf {
    std::env::var("QUAKE_SCREENSHOTS").map(Into::into).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .join("screenshots")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_map_in_chromium() {
    let lines = shifted_to_now(&fixture_lines(REPLAY)[..400]);
    let now = chrono::Utc::now().timestamp_micros();
    let week = now - 7 * 86_400_000_000;
    let in_week: std::collections::HashMap<String, quake::model::Event> =
        expected_final(&lines).into_iter().filter(|(_, e)| e.time_us >= week + 60_000_000).collect();
    let stack = LiveStack::start(lines.clone()).await;
    // Wait until the pipeline stored everything before the page loads.
    let expected_all = expected_final(&lines);
    wait_for_store(stack.pipeline.store.as_ref(), &expected_all, Duration::from_secs(60)).await;
    let b = Browser::start(1280, 800).await;
    b.goto(&format!("{}/?window=7d", stack.url)).await;
    b.wait_for("document.body.dataset.loaded === 'true'", Duration::from_secs(20), "the page to load").await;
    let n = in_week.len();
    b.wait_for(
        &format!("document.querySelectorAll('path.quake').length === {n}"),
        Duration::from_secs(10),
        &format!("{n} symbols"),
    )
    .await;
    b.wait_for(&format!("document.getElementById('count').textContent === '{n}'"), Duration::from_secs(2), "the count")
        .await;
    b.wait_for("document.getElementById('conn').dataset.state === 'live'", Duration::from_secs(10), "live").await;

    // One more event: it appears without reload, within 2 s of being sent.
    stack.push(frame_now("29991231_0000001", 5.5, 38.0, 23.7, "GREECE"));
    let took = b
        .wait_for(
            "!!document.querySelector('path.quake[data-unid=\"29991231_0000001\"]')",
            Duration::from_secs(2),
            "the new event's symbol within 2 s",
        )
        .await;
    println!("new event visible after {took:?}");
    b.wait_for(
        &format!("document.getElementById('count').textContent === '{}'", n + 1),
        Duration::from_secs(2),
        "the count",
    )
    .await;

    // Hostile region text is shown as text and runs nothing.
    let evil = "<img src=x onerror=alert(1)>";
    stack.push(frame_now("29991231_0000002", 4.2, -20.0, -70.0, evil));
    b.wait_for(
        "!!document.querySelector('path.quake[data-unid=\"29991231_0000002\"]')",
        Duration::from_secs(5),
        "evil event",
    )
    .await;
    b.eval("document.querySelector('path.quake[data-unid=\"29991231_0000002\"]').dispatchEvent(new MouseEvent('click', {bubbles: true})); true").await;
    b.wait_for(
        "!!document.querySelector('.leaflet-popup-content .details')",
        Duration::from_secs(5),
        "the details popup",
    )
    .await;
    let popup = b.eval("document.querySelector('.leaflet-popup-content').textContent").await;
    let popup = popup.as_str().unwrap();
    assert!(popup.contains(evil), "region shown literally: {popup}");
    for label in ["Origin (UTC)", "Origin (local)", "Magnitude", "Depth", "Agency", "Revised", "This event on EMSC"] {
        assert!(popup.contains(label), "details show {label}: {popup}");
    }
    assert_eq!(b.eval("document.querySelectorAll('#list img, .leaflet-popup img').length").await, 0);
    assert!(b.eval("location.search").await.as_str().unwrap().contains("sel=29991231_0000002"), "selection in the URL");

    // Selecting in the list highlights on the map and vice versa.
    b.eval("document.querySelector('#list button[data-unid=\"29991231_0000001\"]').click(); true").await;
    b.wait_for("window.quakeMap.state.sel === '29991231_0000001'", Duration::from_secs(2), "selection from the list")
        .await;
    assert_eq!(
        b.eval("window.quakeMap.quakes.get('29991231_0000001').marker.options.weight").await,
        serde_json::json!(4),
        "the selected symbol is highlighted"
    );

    tokio::time::sleep(Duration::from_millis(400)).await; // the popup's fade-in
    let shot = screenshot_dir().join("map.png");
    b.screenshot(&shot).await;
    println!("screenshot: {}", shot.display());

    // Filters change the URL and the symbols; the URL alone reproduces the view.
    b.eval("const s = document.getElementById('minmag'); s.value = '4'; s.dispatchEvent(new Event('change')); true")
        .await;
    let big = in_week.values().filter(|e| e.mag.is_some_and(|m| m >= 4.0)).count() + 2;
    b.wait_for(
        &format!("location.search.includes('minmag=4') && document.querySelectorAll('path.quake').length === {big}"),
        Duration::from_secs(10),
        &format!("{big} symbols of magnitude 4 or more"),
    )
    .await;
    let url = b.eval("location.href").await.as_str().unwrap().to_owned();
    b.goto(&url).await;
    b.wait_for("document.body.dataset.loaded === 'true'", Duration::from_secs(20), "the reload").await;
    b.wait_for(
        &format!("document.getElementById('minmag').value === '4' && document.querySelectorAll('path.quake').length === {big}"),
        Duration::from_secs(10),
        "the same view from the URL",
    )
    .await;
    b.eval("const w = document.getElementById('window'); w.value = '1h'; w.dispatchEvent(new Event('change')); true")
        .await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let hour: serde_json::Value = http
        .get(format!("{}/api/quakes?window=1h&minmagnitude=4", stack.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let in_hour = hour["features"].as_array().unwrap().len();
    assert!(in_hour >= 2, "the two new events are in the last hour");
    b.wait_for(
        &format!(
            "location.search.includes('window=1h') && document.querySelectorAll('path.quake').length === {in_hour}"
        ),
        Duration::from_secs(10),
        &format!("the last hour's {in_hour} events of magnitude 4 or more"),
    )
    .await;

    // An event about to leave the hour: shown, then dropped once the window has moved past it.
    let edge = quake::producer::shifted(&frame_now("29991231_0000003", 4.8, 10.0, 10.0, "EDGE"), -3_592_000_000)
        .expect("a frame");
    stack.push(edge);
    b.wait_for("!!window.quakeMap.quakes.get('29991231_0000003')", Duration::from_secs(5), "the event 59 min 52 s old")
        .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    b.eval("window.quakeMap.expire(); true").await;
    assert_eq!(
        b.eval("window.quakeMap.quakes.has('29991231_0000003')").await,
        serde_json::json!(false),
        "an event older than the window is no longer shown"
    );

    assert!(b.dialogs.lock().unwrap().is_empty(), "no dialog opened: {:?}", b.dialogs.lock().unwrap());
    let outside: Vec<String> = b
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|u| !(u.starts_with("http://127.0.0.1") || u.starts_with("data:") || u.starts_with("about:")))
        .cloned()
        .collect();
    assert!(outside.is_empty(), "requests outside localhost: {outside:?}");
    assert!(b.errors.lock().unwrap().is_empty(), "page errors: {:?}", b.errors.lock().unwrap());
    drop(b);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_distinct_replay_event_in_the_seven_day_view() {
    let _busy = Busy::start();
    let lines = shifted_to_now(&fixture_lines(REPLAY));
    let expected = expected_final(&lines);
    let stack = LiveStack::start(lines.clone()).await;
    // Paced so the replay takes seconds, and asked about while it flows: each answer must catch
    // up, within the follower's period, with what the store held when it was asked.
    *stack.emsc.state.pace.lock().unwrap() = Duration::from_millis(2);
    let t = |d: i64| quake::model::format_utc(chrono::Utc::now().timestamp_micros() + d * 86_400_000_000);
    let (from, to) = (t(-29), t(1));
    let range =
        quake::store::WindowQuery::new(quake::model::parse_utc(&from).unwrap(), quake::model::parse_utc(&to).unwrap());
    let url = format!("{}/api/quakes?starttime={from}&endtime={to}", stack.url);
    let (mut during, mut partial) = (0, 0);
    loop {
        let stored = stack.pipeline.store.window(&range).await.unwrap().len();
        if stored == expected.len() {
            break;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            let n = body["features"].as_array().unwrap().len();
            if n >= stored {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the answer stayed at {n} with {stored} stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        during += 1;
        partial += usize::from(stored > 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("asked {during} times during the replay");
    assert!(partial >= 3, "asked while the replay was in flight: {partial} times");
    wait_for_store(stack.pipeline.store.as_ref(), &expected, Duration::from_secs(120)).await;
    let now = chrono::Utc::now().timestamp_micros();
    let in_week: Vec<&quake::model::Event> =
        expected.values().filter(|e| e.time_us >= now - 7 * 86_400_000_000 + 60_000_000).collect();
    // The file holds a week of revisions; events revised in it whose origin is older than the
    // week (EMSC revises events for weeks) fall outside the 7-day view by definition.
    println!("{} of {} distinct events have an origin time in the last 7 days", in_week.len(), expected.len());
    assert!(in_week.len() > 2000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body: serde_json::Value = loop {
        let body: serde_json::Value =
            reqwest::get(format!("{}/api/quakes?window=7d", stack.url)).await.unwrap().json().await.unwrap();
        if body["features"].as_array().unwrap().len() >= in_week.len() || tokio::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got: std::collections::HashSet<&str> =
        body["features"].as_array().unwrap().iter().map(|f| f["properties"]["unid"].as_str().unwrap()).collect();
    assert_eq!(got.len(), body["features"].as_array().unwrap().len(), "each event once");
    for e in &in_week {
        assert!(got.contains(e.unid.as_str()), "{} missing from the 7-day view", e.unid);
    }
    assert!(got.len() <= in_week.len() + 5, "only the week: {} shown for {}", got.len(), in_week.len());
    // Each shown in its last version.
    for f in body["features"].as_array().unwrap() {
        let e = quake::model::parse_feature(f).unwrap();
        assert_eq!(Some(&e), expected.get(&e.unid), "{} in its last version", e.unid);
    }
    stack.stop().await;
}

/// A local TLS front playing the edge (CloudFront ends TLS for the map in production): a
/// certificate for `localhost` made by openssl, each connection's bytes relayed to the plain
/// HTTP server behind. Returns the front's port and the certificate's SPKI hash, which
/// Chromium is told to trust.
async fn tls_front(upstream: &str) -> (u16, String, tempfile::TempDir) {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(st.success(), "openssl made a certificate");
    let spki = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()
        .unwrap();
    let spki = String::from_utf8(spki.stdout).unwrap().trim().to_owned();
    let identity = tokio_native_tls::native_tls::Identity::from_pkcs8(
        &std::fs::read(&cert).unwrap(),
        &std::fs::read(&key).unwrap(),
    )
    .unwrap();
    let acceptor =
        tokio_native_tls::TlsAcceptor::from(tokio_native_tls::native_tls::TlsAcceptor::new(identity).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = upstream.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut back) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
            });
        }
    });
    (port, spki, dir)
}

/// The map over HTTPS, as CloudFront serves it: a secure context, so the browser offers
/// geolocation and notifications; the near-me alert fires for a nearby event pushed live over
/// the encrypted stream; the page's Content-Security-Policy holds with no console error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_over_https_is_a_secure_context_and_alerts_near_me() {
    let lines = shifted_to_now(&fixture_lines(REPLAY)[..100]);
    let stack = LiveStack::start(lines.clone()).await;
    wait_for_store(stack.pipeline.store.as_ref(), &expected_final(&lines), Duration::from_secs(60)).await;
    let (port, spki, _certs) = tls_front(&stack.url).await;
    let origin = format!("https://localhost:{port}");
    let b = Browser::start_with(1280, 800, &[&format!("--ignore-certificate-errors-spki-list={spki}")]).await;
    b.goto(&format!("{origin}/?window=24h")).await;
    b.wait_for("document.body.dataset.loaded === 'true'", Duration::from_secs(30), "the page over HTTPS").await;
    b.wait_for("document.getElementById('conn').dataset.state === 'live'", Duration::from_secs(10), "live").await;
    let secure = b
        .eval("[location.protocol, window.isSecureContext, 'geolocation' in navigator, 'Notification' in window]")
        .await;
    assert_eq!(secure, serde_json::json!(["https:", true, true, true]), "a secure context");
    b.call(
        "Browser.grantPermissions",
        serde_json::json!({"permissions": ["geolocation", "notifications"], "origin": origin}),
    )
    .await;
    assert_eq!(b.eval("Notification.permission").await, "granted", "desktop notifications may be shown");
    b.call(
        "Emulation.setGeolocationOverride",
        serde_json::json!({"latitude": 37.98, "longitude": 23.73, "accuracy": 10}),
    )
    .await;
    b.eval("document.getElementById('alerts').open = true; true").await;
    b.eval(
        "const on = document.getElementById('near-on'); on.checked = true; \
         on.dispatchEvent(new Event('change', { bubbles: true })); true",
    )
    .await;
    b.wait_for(
        "document.getElementById('near-status').textContent.startsWith('Your location: 37.98, 23.73')",
        Duration::from_secs(10),
        "the position, given to a secure page",
    )
    .await;
    stack.push(frame_now("29991231_0000021", 4.6, 38.2, 23.9, "NEAR OVER HTTPS"));
    b.wait_for(
        "window.quakeMap.alerts.log.some((a) => a.unid === '29991231_0000021' && a.kind === 'near')",
        Duration::from_secs(10),
        "the near-me alert",
    )
    .await;
    let banner = b.eval("document.getElementById('alert-banner').textContent").await;
    assert!(banner.as_str().unwrap().starts_with("Near you: M4.6 NEAR OVER HTTPS"), "{banner}");
    assert!(b.errors.lock().unwrap().is_empty(), "{:?}", b.errors.lock().unwrap());
    assert!(b.console.lock().unwrap().is_empty(), "no console error (CSP included): {:?}", b.console.lock().unwrap());
}
