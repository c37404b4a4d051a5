//! Small probes shared by the tests and the benchmarks: free ports, Prometheus scrapes, RSS,
//! and hand-made websocket frames.
#![allow(dead_code)]

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sum of a metric's samples (all label sets) from a running `quake`; 0 while it is not up.
pub async fn metric(port: u16, name: &str) -> u64 {
    let Ok(res) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else { return 0 };
    let text = res.text().await.unwrap_or_default();
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

/// Resident set size of a process in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// A websocket frame for a new event now, with the given values.
pub fn frame_now(unid: &str, mag: f64, lat: f64, lon: f64, region: &str) -> String {
    let now = quake::model::format_utc(chrono::Utc::now().timestamp_micros());
    serde_json::json!({"action": "create", "data": {"type": "Feature", "id": unid,
        "geometry": {"type": "Point", "coordinates": [lon, lat, -10.0]},
        "properties": {"unid": unid, "time": now, "lastupdate": now, "lat": lat, "lon": lon, "depth": 10.0,
            "mag": mag, "magtype": "ml", "flynn_region": region, "auth": "TEST", "evtype": "ke",
            "source_id": "1", "source_catalog": "EMSC-RTS"}}})
    .to_string()
}

/// Threads of this test process spinning on every core until dropped: tests that ask while work
/// is in flight run on a loaded machine, so timing cannot hide a stale answer.
pub struct Busy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    pub fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
