//! The logging host's configuration against what the services really export: Prometheus'
//! configuration passes `promtool check config` (Debian `prometheus`); every metric a Grafana
//! dashboard or alert rule queries is in the `/metrics` of a running `quake` (scraped live), and
//! every metric `quake` exports is on a dashboard; every log label a dashboard selects on is one
//! the Alloy configuration sets, and the `unid` filter matches the services' real log lines; the
//! web tasks' CloudWatch panels read fields the `Web stats.` line really has. Loki, Grafana and
//! Alloy are in no registry here: their files are checked by these cross-checks only (see
//! docs/production-stack.md "Observability").

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn asset(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets")).join(path)
}

const UNID: &str = "20250305_0000090";
const REPLAY: &str = r#"{"action": "create", "data": {"type": "Feature", "geometry": {"type": "Point", "coordinates": [28.5381, 40.115, -7.0]}, "id": "20250305_0000090", "properties": {"source_id": "1779128", "source_catalog": "EMSC-RTS", "lastupdate": "2025-03-05T10:06:56.102425Z", "time": "2025-03-05T09:45:07.0Z", "flynn_region": "WESTERN TURKEY", "lat": 40.115, "lon": 28.5381, "depth": 7.0, "evtype": "ke", "auth": "AFAD", "mag": 1.4, "magtype": "ml", "unid": "20250305_0000090"}}}
"#;

/// The series names a scrape can hold, from its `# TYPE` lines (a counter `x` is sampled as
/// `x_total`, a histogram as `x_bucket`, `x_sum` and `x_count`).
fn series(exposition: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut it = l.split_whitespace();
        let (Some(name), Some(kind)) = (it.next(), it.next()) else { continue };
        match kind {
            "counter" => drop(out.insert(format!("{name}_total"))),
            "histogram" => out.extend(["bucket", "sum", "count"].map(|s| format!("{name}_{s}"))),
            _ => drop(out.insert(name.to_owned())),
        }
    }
    out
}

/// Every `quake_*` name in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("quake_") {
        let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

/// The label names of a LogQL stream selector `{a=~"x", b="y"} ...`.
fn selector_labels(expr: &str) -> Vec<String> {
    let inner = expr.split_once('{').and_then(|(_, r)| r.split_once('}')).map(|(s, _)| s).unwrap_or_default();
    inner
        .split(',')
        .filter_map(|m| m.split(['=', '!']).next())
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// (datasource type, expression) of every query of every dashboard under `assets/grafana`.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(asset("grafana/dashboards")).unwrap() {
        let path = f.unwrap().path();
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let ds = t["datasource"]["type"].as_str().unwrap_or_default().to_owned();
                // CloudWatch: a Logs Insights query, or a metric by name.
                let expr = ["expr", "expression", "metricName"].iter().find_map(|k| t[*k].as_str()).unwrap_or_default();
                out.push((ds, expr.to_owned()));
            }
        }
    }
    out
}

#[test]
fn prometheus_configuration_passes_promtool() {
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(asset("observability/prometheus.yml"))
        .output()
        .expect("promtool (Debian package prometheus: run `make deps`)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dashboards_query_what_the_services_export_and_label_what_alloy_sets() {
    let dir = tempfile::tempdir().unwrap();
    let replay = dir.path().join("replay.jsonl");
    std::fs::write(&replay, REPLAY).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut quake = Command::new(env!("CARGO_BIN_EXE_quake"))
        .args(["run", "--replay"])
        .arg(&replay)
        .args(["--replay-shift", "--backfill-hours", "0", "--log-format", "json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(dir.path().join("q.sqlite"))
        .env("QUAKE_ASSETS", asset("web"))
        .env("QUAKE_STATS_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(quake.stdout.take().unwrap()).lines();
    // A stored event is logged with its unid: the logs panel's filter finds it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let logged = loop {
        let Some(Ok(l)) = lines.next() else { panic!("quake ended before logging the event") };
        if l.contains(UNID) {
            break l;
        }
        assert!(Instant::now() < deadline, "no log line of {UNID}");
    };
    let line: serde_json::Value = serde_json::from_str(&logged).expect("one JSON object per line");
    assert!(line["level"].is_string(), "the level Alloy labels: {logged}");
    // The web tasks' numbers on Fargate: a `Web stats.` line, read by CloudWatch Logs Insights.
    let stats = loop {
        let Some(Ok(l)) = lines.next() else { panic!("quake ended before a Web stats. line") };
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        if v["message"] == "Web stats." {
            break v;
        }
        assert!(Instant::now() < deadline, "no Web stats. line");
    };
    let http = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    http("/api/quakes");
    let exposition = http("/metrics");
    let _ = quake.kill();
    let _ = quake.wait();
    let exported = series(&exposition);
    assert!(exported.len() > 10, "{exposition}");

    let queries = dashboard_queries();
    let mut used = BTreeSet::new();
    for (ds, expr) in queries.iter().filter(|(ds, _)| ds == "prometheus") {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{ds} query without a quake metric: {expr}");
        for n in names {
            assert!(exported.contains(&n), "{n} (in `{expr}`) is not in quake's /metrics:\n{exposition}");
            used.insert(n);
        }
    }
    // No blind spot: every family quake exports is on a dashboard (histograms by their buckets).
    let families: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    for f in &families {
        assert!(used.iter().any(|u| u.starts_with(f.as_str())), "{f} is exported but on no dashboard");
    }

    // CloudWatch: Logs Insights queries filter the lines by their message and read fields those
    // lines have; metrics are the load balancer's, by their documented names.
    for (_, q) in queries.iter().filter(|(ds, _)| ds == "cloudwatch") {
        if let Some(f) = q.split("filter message = \"").nth(1).and_then(|r| r.split('"').next()) {
            assert_eq!(stats["message"], f, "`{q}` filters lines by a message quake logs");
            let mut read = 0;
            for (before, after) in q.split('(').zip(q.split('(').skip(1)) {
                if ["sum", "max", "min", "avg"].iter().any(|f| before.ends_with(f)) {
                    let field = after.split(')').next().unwrap_or_default();
                    assert!(stats[field].is_u64(), "`{q}` reads {field}, not a number of {stats}");
                    read += 1;
                }
            }
            assert!(read >= 2, "`{q}`: SSE clients and window size");
        } else if let Some(rest) = q.strip_prefix("fields ") {
            let wanted = rest.split('|').next().unwrap_or_default();
            for field in wanted.split(',').map(str::trim).filter(|f| !f.starts_with('@')) {
                assert!(!line[field].is_null(), "`{q}` reads {field}, which the logged event has not: {logged}");
            }
        } else {
            assert!(ALB_METRICS.contains(&q.as_str()), "{q} is not a metric of AWS/ApplicationELB");
        }
    }

    let alloy = std::fs::read_to_string(asset("observability/config.alloy")).unwrap();
    let mut set_by_alloy: BTreeSet<String> = BTreeSet::new();
    for l in alloy.lines().map(str::trim) {
        if let Some(v) = l.strip_prefix("target_label").and_then(|r| r.split('"').nth(1)) {
            set_by_alloy.insert(v.to_owned());
        }
        if let Some(v) = l.strip_prefix("values = {").and_then(|r| r.split('=').next()) {
            set_by_alloy.insert(v.trim().to_owned());
        }
    }
    let logql: Vec<&String> = queries.iter().filter(|(ds, _)| ds == "loki").map(|(_, e)| e).collect();
    assert!(!logql.is_empty(), "a logs panel");
    for expr in logql {
        for label in selector_labels(expr) {
            assert!(
                set_by_alloy.contains(&label),
                "label {label} (in `{expr}`) is set by no Alloy rule: {set_by_alloy:?}"
            );
        }
        assert!(expr.contains("|= \"$unid\""), "the logs panel filters by unid: {expr}");
    }
}

/// Metrics of AWS/ApplicationELB the web dashboard and the 5xx alert use (CloudWatch's
/// "CloudWatch metrics for your Application Load Balancer").
const ALB_METRICS: &[&str] =
    &["RequestCount", "TargetResponseTime", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"];

/// The alert rules the logging host provisions: the ones the issue names, each on a data source
/// Grafana is given, on metrics that exist (the services' scraped live; the host's from the
/// collector Alloy enables), to the contact point the host fills in.
#[test]
fn alert_rules_watch_what_exists() {
    let rules: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(asset("grafana/alerting/quake.json")).unwrap()).unwrap();
    let sources = std::fs::read_to_string(asset("grafana/datasources.yaml")).unwrap();
    let uids: BTreeSet<&str> = sources.lines().filter_map(|l| l.trim().strip_prefix("uid: ")).collect();
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    for r in rules["groups"][0]["rules"].as_array().unwrap() {
        seen.insert(r["uid"].as_str().unwrap().to_owned());
        for q in r["data"].as_array().unwrap() {
            let uid = q["datasourceUid"].as_str().unwrap();
            assert!(uid == "__expr__" || uids.contains(uid), "{}: data source {uid} is not provisioned", r["uid"]);
            if let Some(expr) = q["model"]["expr"].as_str() {
                names.extend(metric_names(expr));
                if expr.contains("node_") {
                    assert!(expr.contains("node_filesystem_avail_bytes") && expr.contains("by (host)"), "{expr}");
                }
            }
            if let Some(m) = q["model"]["metricName"].as_str() {
                assert!(ALB_METRICS.contains(&m), "{m}");
            }
        }
    }
    let wanted =
        ["quake-no-event-stored", "quake-dead-letters", "quake-consumer-lag", "quake-web-5xx", "quake-host-disk"];
    assert_eq!(seen, wanted.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    let alloy = std::fs::read_to_string(asset("observability/config.alloy")).unwrap();
    assert!(
        alloy.contains("\"filesystem\"") && alloy.contains("target_label = \"host\""),
        "the disk rule's metric and label"
    );
    // Alloy sees the root volume through its storage directory only (no `/` of the host is
    // mounted): the rule's `mountpoint="/"` exists because Alloy relabels that mount to `/`.
    let disk = alloy.split("prometheus.relabel \"host\"").nth(1).unwrap_or_default();
    assert!(
        disk.contains("regex         = \"/var/lib/alloy\"") && disk.contains("replacement   = \"/\""),
        "the root volume labelled as the disk rule asks"
    );
    // E-mail through SNS, signed with the host's role: the topic and region filled in at boot.
    let receiver = &rules["contactPoints"][0]["receivers"][0];
    assert_eq!(receiver["type"], "sns");
    assert_eq!(receiver["settings"]["topic_arn"], "@ALERT_TOPIC@");
    assert!(receiver["settings"]["sigv4"].get("access_key").is_none(), "no stored credential");

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut quake = Command::new(env!("CARGO_BIN_EXE_quake"))
        .args(["run", "--backfill-hours", "0", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("q.sqlite"))
        .env("EMSC_WS_URL", "ws://127.0.0.1:9/")
        .env("EMSC_FDSN_URL", "http://127.0.0.1:9/")
        .env("QUAKE_ASSETS", asset("web"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exposition = scrape(port);
    let _ = quake.kill();
    let _ = quake.wait();
    let exported = series(&exposition);
    for n in &names {
        assert!(exported.contains(n), "alert rule metric {n} is not in quake's /metrics:\n{exposition}");
    }
    assert!(names.len() >= 3, "{names:?}");
}

/// `/metrics` of the quake on `port`, once it answers.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(s, "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/1.1 200") {
                return out;
            }
        }
        assert!(Instant::now() < deadline, "quake's /metrics did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_helpers_read_what_they_should() {
    assert_eq!(metric_names("sum(rate(quake_a_total[5m])) / quake_b"), ["quake_a_total", "quake_b"]);
    assert_eq!(selector_labels(r#"{service=~".+", level!="x"} |= "u""#), ["service", "level"]);
    let s = series("# TYPE quake_x counter\n# TYPE quake_h histogram\n# TYPE quake_g gauge\n");
    assert!(s.contains("quake_x_total") && s.contains("quake_h_bucket") && s.contains("quake_g"));
}
