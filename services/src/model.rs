//! The one event model: parsing EMSC websocket frames and FDSN Features into [`Event`], and back.
//!
//! Parsing works on a `serde_json::Value` rather than a derived struct so that every rejection can
//! name the field and say what was wrong with it (the reason travels to the dead-letter topic).

use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One earthquake, in the newest version this process knows of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// EMSC's stable key of an event (`YYYYMMDD_NNNNNNN`).
    pub unid: String,
    /// Origin time, microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    /// EMSC's revision time, microseconds since the Unix epoch (UTC).
    pub lastupdate_us: i64,
    pub lat: f64,
    pub lon: f64,
    /// Kilometres, positive down (taken from `properties.depth`, not from the geometry's z).
    pub depth_km: f64,
    pub mag: Option<f64>,
    pub magtype: Option<String>,
    /// Flinn-Engdahl region name: untrusted text.
    pub region: Option<String>,
    pub auth: Option<String>,
    pub evtype: Option<String>,
    pub source_id: Option<String>,
    pub source_catalog: Option<String>,
}

/// What a websocket frame asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
}

/// A parsed websocket frame.
// Frames live for one hop; boxing the event would cost an allocation per frame for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Event(Action, Event),
    /// An action EMSC has never been seen to send (third parties claim `delete`): logged and skipped.
    UnknownAction(String),
}

/// Why an input could not become an [`Event`]; the text goes to logs and the dead-letter header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

fn reject<T>(msg: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection(msg.into()))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses one websocket text frame `{"action": ..., "data": <Feature>}`.
pub fn parse_frame(text: &str) -> Result<Frame, Rejection> {
    let v: Value = serde_json::from_str(text).map_err(|e| Rejection(format!("not JSON: {e}")))?;
    let Value::Object(obj) = &v else {
        return reject(format!("frame: expected a JSON object, found {}", kind(&v)));
    };
    let action = match obj.get("action") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return reject(format!("action: expected string, found {}", kind(other))),
        None => return reject("action: missing"),
    };
    let action = match action {
        "create" => Action::Create,
        "update" => Action::Update,
        other => return Ok(Frame::UnknownAction(other.to_owned())),
    };
    let data = obj.get("data").ok_or_else(|| Rejection("data: missing".into()))?;
    Ok(Frame::Event(action, parse_feature(data)?))
}

/// Parses one GeoJSON Feature as EMSC publishes it (websocket `data` or an FDSN JSON feature).
pub fn parse_feature(v: &Value) -> Result<Event, Rejection> {
    let Value::Object(f) = v else {
        return reject(format!("data: expected a Feature object, found {}", kind(v)));
    };
    let props = match f.get("properties") {
        Some(Value::Object(p)) => p,
        Some(other) => return reject(format!("properties: expected object, found {}", kind(other))),
        None => return reject("properties: missing"),
    };
    let coords = geometry_coords(f)?;

    let unid = match props.get("unid") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return reject("properties.unid: empty"),
        Some(other) => return reject(format!("properties.unid: expected string, found {}", kind(other))),
        None => match f.get("id") {
            // FDSN features carry `id` equal to `unid`; the websocket always has both.
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return reject("properties.unid: missing"),
        },
    };
    if unid.len() > 64 {
        return reject(format!("properties.unid: longer than 64 characters ({})", unid.len()));
    }

    let lat = number_or(props, "lat", coords.map(|c| c.1))?;
    let lon = number_or(props, "lon", coords.map(|c| c.0))?;
    // Depth is positive down in properties; the geometry's z is minus the depth.
    let depth_km = number_or(props, "depth", coords.and_then(|c| c.2).map(|z| -z))?;
    if !(-90.0..=90.0).contains(&lat) {
        return reject(format!("properties.lat: {lat} is outside [-90, 90]"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return reject(format!("properties.lon: {lon} is outside [-180, 180]"));
    }
    if !(-15.0..=1000.0).contains(&depth_km) {
        return reject(format!("properties.depth: {depth_km} km is outside [-15, 1000]"));
    }
    let mag = match props.get("mag") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let m = n.as_f64().unwrap_or(f64::NAN);
            if !(-5.0..=12.0).contains(&m) {
                return reject(format!("properties.mag: {m} is outside [-5, 12]"));
            }
            Some(m)
        }
        Some(other) => return reject(format!("properties.mag: expected number or null, found {}", kind(other))),
    };
    let time_us = parse_time(props, "time")?;
    let lastupdate_us = match props.get("lastupdate") {
        None | Some(Value::Null) => time_us,
        Some(_) => parse_time(props, "lastupdate")?,
    };
    Ok(Event {
        unid,
        time_us,
        lastupdate_us,
        lat,
        lon,
        depth_km,
        mag,
        magtype: opt_string(props, "magtype")?,
        region: opt_string(props, "flynn_region")?,
        auth: opt_string(props, "auth")?,
        evtype: opt_string(props, "evtype")?,
        source_id: opt_string(props, "source_id")?,
        source_catalog: opt_string(props, "source_catalog")?,
    })
}

type Coords = (f64, f64, Option<f64>);

fn geometry_coords(f: &Map<String, Value>) -> Result<Option<Coords>, Rejection> {
    let Some(g) = f.get("geometry") else { return Ok(None) };
    let Some(c) = g.get("coordinates") else { return Ok(None) };
    let Value::Array(a) = c else {
        return reject(format!("geometry.coordinates: expected array, found {}", kind(c)));
    };
    let num = |i: usize| a.get(i).and_then(Value::as_f64);
    match (num(0), num(1)) {
        (Some(lon), Some(lat)) => Ok(Some((lon, lat, num(2)))),
        _ => reject("geometry.coordinates: expected [lon, lat, z] numbers"),
    }
}

fn number_or(props: &Map<String, Value>, key: &str, fallback: Option<f64>) -> Result<f64, Rejection> {
    match props.get(key) {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => reject(format!("properties.{key}: not a finite number")),
        },
        Some(Value::Null) | None => fallback.ok_or_else(|| Rejection(format!("properties.{key}: missing"))),
        Some(other) => reject(format!("properties.{key}: expected number, found {}", kind(other))),
    }
}

fn opt_string(props: &Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > 256 => {
            reject(format!("properties.{key}: longer than 256 bytes ({})", s.len()))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // source_id has been seen as digits; accept a bare number rather than lose the event.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => reject(format!("properties.{key}: expected string, found {}", kind(other))),
    }
}

fn parse_time(props: &Map<String, Value>, key: &str) -> Result<i64, Rejection> {
    match props.get(key) {
        Some(Value::String(s)) => parse_utc(s).ok_or_else(|| {
            Rejection(format!("properties.{key}: {s:?} is not a UTC time like 2024-04-11T00:05:07.229343Z"))
        }),
        Some(other) => reject(format!("properties.{key}: expected string, found {}", kind(other))),
        None => reject(format!("properties.{key}: missing")),
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f]Z` (any number of fractional digits, EMSC sends 1 to 6) to
/// microseconds since the epoch. A missing `Z` is tolerated because FDSN text output omits it.
pub fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim();
    let body = s.strip_suffix('Z').unwrap_or(s);
    if body.len() > 40 {
        return None;
    }
    let t = NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(t.and_utc().timestamp_micros())
}

/// Formats microseconds as EMSC does: UTC, `Z`, the fraction trimmed but at least one digit.
pub fn format_utc(us: i64) -> String {
    let Some(t) = DateTime::from_timestamp_micros(us) else { return String::new() };
    let mut s = t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s.push('Z');
    s
}

impl Event {
    /// The Feature in EMSC's shape and property names (geometry z = minus the depth).
    pub fn to_feature(&self) -> Value {
        json!({
            "type": "Feature",
            "id": self.unid,
            "geometry": {"type": "Point", "coordinates": [self.lon, self.lat, -self.depth_km]},
            "properties": {
                "unid": self.unid,
                "time": format_utc(self.time_us),
                "lastupdate": format_utc(self.lastupdate_us),
                "lat": self.lat,
                "lon": self.lon,
                "depth": self.depth_km,
                "mag": self.mag,
                "magtype": self.magtype,
                "flynn_region": self.region,
                "auth": self.auth,
                "evtype": self.evtype,
                "source_id": self.source_id,
                "source_catalog": self.source_catalog,
            }
        })
    }

    /// A hash of the whole event, so identical repeats can be recognised cheaply: FNV-1a of its
    /// serde_json bytes (the SQLite store hashes the body it writes, the same bytes).
    pub fn content_hash(&self) -> u64 {
        fnv1a(&serde_json::to_vec(self).unwrap_or_default())
    }
}

/// FNV-1a: stable across processes and Rust versions (stored hashes and ETags rely on that).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The version of one message about an event: newer is decided by EMSC's `lastupdate` first and
/// by arrival order at the producer second, because real updates sometimes keep `lastupdate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub lastupdate_us: i64,
    pub arrival: i64,
}

impl Version {
    /// A fixed-width string whose byte order is the version order (DynamoDB compares strings so).
    pub fn key(&self) -> String {
        // Offsetting keeps the digits non-negative for times before 1970.
        format!("{:020}.{:020}", self.lastupdate_us as i128 + (1i128 << 62), self.arrival as i128 + (1i128 << 62))
    }
}

/// Microseconds since the epoch from the wall clock, but strictly greater than the last value
/// handed out through `last`: an arrival order (or change-feed position) that never ties.
pub fn monotonic_micros(last: &std::sync::atomic::AtomicI64) -> i64 {
    use std::sync::atomic::Ordering;
    let now = chrono::Utc::now().timestamp_micros();
    let mut prev = last.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match last.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// What travels on the Kafka topic: the event, its version and what the producer was told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub action: Action,
    /// Producer arrival stamp: microseconds since the epoch, strictly increasing per producer.
    pub arrival: i64,
    /// Where it came from: `ws`, `fdsn`, `replay`.
    pub source: String,
    pub event: Event,
}

impl Envelope {
    pub fn version(&self) -> Version {
        Version { lastupdate_us: self.event.lastupdate_us, arrival: self.arrival }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: &str = r#"{"action": "create",
 "data": {"type": "Feature",
   "geometry": {"type": "Point", "coordinates": [28.5381, 40.115, -7.0]},
   "id": "20250305_0000090",
   "properties": {"source_id": "1779128", "source_catalog": "EMSC-RTS",
     "lastupdate": "2025-03-05T10:06:56.102425Z", "time": "2025-03-05T09:45:07.0Z",
     "flynn_region": "WESTERN TURKEY", "lat": 40.115, "lon": 28.5381, "depth": 7.0,
     "evtype": "ke", "auth": "AFAD", "mag": 1.4, "magtype": "ml", "unid": "20250305_0000090"}}}"#;

    fn event(text: &str) -> Event {
        match parse_frame(text).unwrap() {
            Frame::Event(_, e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn parses_the_published_example() {
        let e = event(FRAME);
        assert_eq!(e.unid, "20250305_0000090");
        assert_eq!(e.depth_km, 7.0);
        assert_eq!(e.mag, Some(1.4));
        assert_eq!(format_utc(e.time_us), "2025-03-05T09:45:07.0Z");
        assert_eq!(format_utc(e.lastupdate_us), "2025-03-05T10:06:56.102425Z");
        assert_eq!(e.region.as_deref(), Some("WESTERN TURKEY"));
    }

    #[test]
    fn key_order_and_unknown_keys_do_not_matter() {
        let text = r#"{"data":{"properties":{"unid":"X1","zzz":[1,2],"mag":2.0,"time":"2024-01-01T00:00:00.5Z",
            "depth":10,"lon":1,"lat":2,"lastupdate":"2024-01-01T00:01:00.1Z","extra":{"a":1}},"id":"X1",
            "geometry":{"coordinates":[1,2,-10],"type":"Point"},"type":"Feature"},"_observed_snapshot":"x","action":"update"}"#;
        let Frame::Event(a, e) = parse_frame(text).unwrap() else { panic!() };
        assert_eq!(a, Action::Update);
        assert_eq!((e.lat, e.lon, e.depth_km), (2.0, 1.0, 10.0));
    }

    #[test]
    fn one_to_six_fractional_digits() {
        for (s, us) in [
            ("2024-01-01T00:00:00.0Z", 0),
            ("2024-01-01T00:00:00.8Z", 800_000),
            ("2024-01-01T00:00:00.87Z", 870_000),
            ("2024-01-01T00:00:00.582Z", 582_000),
            ("2024-01-01T00:00:00.981805Z", 981_805),
        ] {
            assert_eq!(parse_utc(s).unwrap() - 1_704_067_200_000_000, us, "{s}");
            assert_eq!(parse_utc(&format_utc(parse_utc(s).unwrap())), parse_utc(s));
        }
        assert_eq!(format_utc(1_704_067_200_870_000), "2024-01-01T00:00:00.87Z");
        assert!(parse_utc("2024-01-01 00:00:00").is_none());
        assert!(parse_utc("yesterday").is_none());
    }

    #[test]
    fn depth_sign_comes_from_properties() {
        let e = event(&FRAME.replace("\"depth\": 7.0", "\"depth\": -1.5"));
        assert_eq!(e.depth_km, -1.5);
        // Without properties.depth the geometry's z (minus the depth) is used.
        let e = event(&FRAME.replace("\"depth\": 7.0,", ""));
        assert_eq!(e.depth_km, 7.0);
    }

    #[test]
    fn null_magnitude_is_allowed() {
        let e = event(&FRAME.replace("\"mag\": 1.4", "\"mag\": null"));
        assert_eq!(e.mag, None);
    }

    #[test]
    fn out_of_range_coordinates_are_rejected_with_a_reason() {
        let err = parse_frame(&FRAME.replace("\"lat\": 40.115", "\"lat\": 91.0")).unwrap_err();
        assert!(err.0.contains("properties.lat") && err.0.contains("outside"), "{err}");
        let err = parse_frame(&FRAME.replace("\"lon\": 28.5381", "\"lon\": -180.5")).unwrap_err();
        assert!(err.0.contains("properties.lon"), "{err}");
    }

    #[test]
    fn missing_unid_is_rejected() {
        let text = FRAME.replace(", \"unid\": \"20250305_0000090\"", "").replace("\"id\": \"20250305_0000090\",", "");
        let err = parse_frame(&text).unwrap_err();
        assert_eq!(err.0, "properties.unid: missing");
    }

    #[test]
    fn wrong_types_and_broken_json_name_the_problem() {
        assert!(parse_frame("{\"action\":").unwrap_err().0.starts_with("not JSON"));
        let err = parse_frame(&FRAME.replace("\"mag\": 1.4", "\"mag\": \"big\"")).unwrap_err();
        assert_eq!(err.0, "properties.mag: expected number or null, found string");
        let err = parse_frame(&FRAME.replace("\"time\": \"2025-03-05T09:45:07.0Z\"", "\"time\": 5")).unwrap_err();
        assert_eq!(err.0, "properties.time: expected string, found number");
        assert_eq!(parse_frame("[]").unwrap_err().0, "frame: expected a JSON object, found array");
    }

    #[test]
    fn region_with_commas_and_quotes_survives() {
        let e = event(&FRAME.replace("WESTERN TURKEY", r#"EAST OF GUADELOUPE, LEEWARD ISL. \"<b>\""#));
        assert_eq!(e.region.as_deref(), Some(r#"EAST OF GUADELOUPE, LEEWARD ISL. "<b>""#));
        let back = parse_feature(&e.to_feature()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_action_is_skipped_not_rejected() {
        let f = parse_frame(&FRAME.replace("\"create\"", "\"delete\"")).unwrap();
        assert_eq!(f, Frame::UnknownAction("delete".into()));
    }

    #[test]
    fn same_lastupdate_new_values_is_newer_by_arrival() {
        let a = event(FRAME);
        let b = event(&FRAME.replace("\"mag\": 1.4", "\"mag\": 1.7"));
        assert_eq!(a.lastupdate_us, b.lastupdate_us);
        assert_ne!(a.content_hash(), b.content_hash());
        assert_eq!(
            a.content_hash(),
            fnv1a(serde_json::to_string(&a).unwrap().as_bytes()),
            "the SQLite store hashes its body"
        );
        let va = Version { lastupdate_us: a.lastupdate_us, arrival: 1 };
        let vb = Version { lastupdate_us: b.lastupdate_us, arrival: 2 };
        assert!(vb > va);
        assert!(vb.key() > va.key());
        let older = Version { lastupdate_us: a.lastupdate_us - 1, arrival: 99 };
        assert!(older.key() < va.key());
    }

    #[test]
    fn feature_round_trips() {
        let e = event(FRAME);
        assert_eq!(parse_feature(&e.to_feature()).unwrap(), e);
    }
}
