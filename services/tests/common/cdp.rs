//! A minimal Chrome DevTools Protocol client: Debian's headless Chromium, driven over its
//! websocket, for the browser tests (navigate, evaluate, screenshot, watch requests and dialogs).
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    tx: mpsc::UnboundedSender<(Value, oneshot::Sender<Value>)>,
    /// Every URL the page requested.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Every JavaScript dialog (alert, confirm, prompt) the page opened.
    pub dialogs: Arc<Mutex<Vec<String>>>,
    /// Console errors and uncaught exceptions.
    pub errors: Arc<Mutex<Vec<String>>>,
    /// Bytes received over the network (compressed, headers included), for page weight.
    pub received: Arc<Mutex<f64>>,
    /// Every response: URL and HTTP status.
    pub responses: Arc<Mutex<Vec<(String, u16)>>>,
    /// What the browser reported as errors besides exceptions: `console.error`, failed loads,
    /// Content-Security-Policy violations.
    pub console: Arc<Mutex<Vec<String>>>,
}

impl Browser {
    /// Starts Chromium with one blank page and attaches to it.
    pub async fn start(width: u32, height: u32) -> Self {
        Self::start_with(width, height, &[]).await
    }

    /// [`Self::start`] with more command-line flags (a certificate to trust, say).
    pub async fn start_with(width: u32, height: u32, extra: &[&str]) -> Self {
        let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("Debian's chromium is not installed: run `make deps`");
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
            ])
            .args(extra)
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let stderr = child.stderr.take().unwrap();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("DevTools listening on ") {
                    let _ = port_tx.send(rest.to_owned());
                }
            }
        });
        let browser_ws = port_rx.recv_timeout(Duration::from_secs(30)).expect("chromium prints its DevTools address");
        let port = browser_ws.split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
        let targets: Vec<Value> =
            reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await.unwrap().json().await.unwrap();
        let page_ws = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (ws, _) = tokio_tungstenite::connect_async(page_ws).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<(Value, oneshot::Sender<Value>)>();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let dialogs: Arc<Mutex<Vec<String>>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let received: Arc<Mutex<f64>> = Arc::default();
        let responses: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
        let console: Arc<Mutex<Vec<String>>> = Arc::default();
        let p = pending.clone();
        tokio::spawn(async move {
            let mut id = 0u64;
            while let Some((mut msg, reply)) = rx.recv().await {
                id += 1;
                msg["id"] = json!(id);
                p.lock().unwrap().insert(id, reply);
                if sink.send(Message::Text(msg.to_string().into())).await.is_err() {
                    return;
                }
            }
        });
        let (p, r, d, e, bytes) =
            (pending.clone(), requests.clone(), dialogs.clone(), errors.clone(), received.clone());
        let (resp, cons) = (responses.clone(), console.clone());
        let tx2 = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(t))) = stream.next().await {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if let Some(id) = v["id"].as_u64() {
                    if let Some(reply) = p.lock().unwrap().remove(&id) {
                        let _ = reply.send(v);
                    }
                    continue;
                }
                match v["method"].as_str() {
                    Some("Network.requestWillBeSent") => {
                        r.lock().unwrap().push(v["params"]["request"]["url"].as_str().unwrap_or("").to_owned())
                    }
                    Some("Page.javascriptDialogOpening") => {
                        d.lock().unwrap().push(v["params"]["message"].as_str().unwrap_or("").to_owned());
                        // Dismiss it so the page goes on; the test fails on the record.
                        let (ack, _) = oneshot::channel();
                        let _ = tx2
                            .send((json!({"method": "Page.handleJavaScriptDialog", "params": {"accept": false}}), ack));
                    }
                    Some("Network.loadingFinished") => {
                        *bytes.lock().unwrap() += v["params"]["encodedDataLength"].as_f64().unwrap_or(0.0)
                    }
                    Some("Runtime.exceptionThrown") => {
                        e.lock().unwrap().push(v["params"]["exceptionDetails"].to_string())
                    }
                    Some("Network.responseReceived") => {
                        let res = &v["params"]["response"];
                        let status = u16::try_from(res["status"].as_u64().unwrap_or(0)).unwrap_or(0);
                        resp.lock().unwrap().push((res["url"].as_str().unwrap_or("").to_owned(), status));
                    }
                    Some("Log.entryAdded") if v["params"]["entry"]["level"] == "error" => {
                        cons.lock().unwrap().push(v["params"]["entry"].to_string())
                    }
                    Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                        cons.lock().unwrap().push(v["params"]["args"].to_string())
                    }
                    _ => {}
                }
            }
        });
        let b = Self { child, _profile: profile, tx, requests, dialogs, errors, received, responses, console };
        for m in ["Page.enable", "Network.enable", "Runtime.enable", "Log.enable"] {
            b.call(m, json!({})).await;
        }
        b
    }

    pub async fn call(&self, method: &str, params: Value) -> Value {
        let (reply, rx) = oneshot::channel();
        self.tx.send((json!({"method": method, "params": params}), reply)).unwrap();
        let v = tokio::time::timeout(Duration::from_secs(30), rx).await.expect("CDP answers").unwrap();
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Evaluates an expression (awaiting promises) and returns its JSON value.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}))
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls an expression until it is true, or panics with `what` after `timeout`.
    pub async fn wait_for(&self, expr: &str, timeout: Duration, what: &str) -> Duration {
        let start = tokio::time::Instant::now();
        loop {
            // Between navigations the document may be half there: an exception is a "not yet".
            let guarded = format!("(() => {{ try {{ return ({expr}) === true; }} catch (e) {{ return false; }} }})()");
            if self.eval(&guarded).await == Value::Bool(true) {
                return start.elapsed();
            }
            assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"})).await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
