//! The answers' bodies: GeoJSON FeatureCollections of the kept Feature text, and CSV.

use super::query::{Format, OrderBy, QuakeQuery};
use super::window::Entry;
use crate::model::format_utc;
use std::io::Write;
use std::sync::Arc;

/// Orders entries given newest first (as the window and [`super::api::fetch`] give them); ties
/// keep that order.
pub fn sort(entries: &mut [Arc<Entry>], order: OrderBy) {
    let mag = |e: &Arc<Entry>| e.stored.event.mag.unwrap_or(f64::NEG_INFINITY);
    match order {
        OrderBy::Time => {} // the window answers newest first
        OrderBy::TimeAsc => entries.reverse(),
        OrderBy::Magnitude => entries.sort_by(|a, b| mag(b).total_cmp(&mag(a))),
        OrderBy::MagnitudeAsc => entries.sort_by(|a, b| mag(a).total_cmp(&mag(b))),
    }
}

/// The body of an `/api/quakes` answer: `entries` (newest first) ordered and cut as asked.
pub fn render(mut entries: Vec<Arc<Entry>>, q: &QuakeQuery) -> (Vec<u8>, &'static str) {
    sort(&mut entries, q.order);
    entries.truncate(q.window.limit);
    match q.format {
        Format::GeoJson => (geojson(&entries, q.window.start_us, q.window.end_us), "application/geo+json"),
        Format::Csv => (csv(&entries), "text/csv; charset=utf-8"),
    }
}

/// A FeatureCollection of the kept Feature text of each entry, with its time range and the
/// attribution EMSC's licence asks for.
pub fn geojson(entries: &[Arc<Entry>], start_us: i64, end_us: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 420);
    let _ = write!(
        out,
        r#"{{"type":"FeatureCollection","metadata":{{"count":{},"starttime":"{}","endtime":"{}","attribution":"Data: EMSC-CSEM (CC BY 4.0)"}},"features":["#,
        entries.len(),
        format_utc(start_us),
        format_utc(end_us)
    );
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e.feature.as_bytes());
    }
    out.extend_from_slice(b"]}");
    out
}

pub fn csv(entries: &[Arc<Entry>]) -> Vec<u8> {
    let mut out = String::from("unid,time,lastupdate,latitude,longitude,depth,mag,magtype,flynn_region,auth,evtype\n");
    for e in entries {
        let ev = &e.stored.event;
        let row = [
            csv_field(&ev.unid),
            format_utc(ev.time_us),
            format_utc(ev.lastupdate_us),
            ev.lat.to_string(),
            ev.lon.to_string(),
            ev.depth_km.to_string(),
            ev.mag.map(|m| m.to_string()).unwrap_or_default(),
            csv_field(ev.magtype.as_deref().unwrap_or("")),
            csv_field(ev.region.as_deref().unwrap_or("")),
            csv_field(ev.auth.as_deref().unwrap_or("")),
            csv_field(ev.evtype.as_deref().unwrap_or("")),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

/// RFC 4180 quoting; a leading formula character is neutralised so a spreadsheet shows text.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("EAST OF GUADELOUPE, LEEWARD ISL."), "\"EAST OF GUADELOUPE, LEEWARD ISL.\"");
        assert_eq!(csv_field("A \"B\""), "\"A \"\"B\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("PLAIN"), "PLAIN");
    }
}
