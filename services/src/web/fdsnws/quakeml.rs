//! The FDSN event service's answer formats: QuakeML 1.2 BED and the FDSN pipe-separated text,
//! written from the stored events (one origin and one magnitude each).

use crate::model::{format_utc, Event};
use crate::web::window::Entry;
use std::fmt::Write;
use std::sync::Arc;

/// QuakeML 1.2's `EventType` values.
pub const EVENT_TYPES: &[&str] = &[
    "not existing",
    "not reported",
    "earthquake",
    "anthropogenic event",
    "collapse",
    "cavity collapse",
    "mine collapse",
    "building collapse",
    "explosion",
    "accidental explosion",
    "chemical explosion",
    "controlled explosion",
    "experimental explosion",
    "industrial explosion",
    "mining explosion",
    "quarry blast",
    "road cut",
    "blasting levee",
    "nuclear explosion",
    "induced or triggered event",
    "rock burst",
    "reservoir loading",
    "fluid injection",
    "fluid extraction",
    "crash",
    "plane crash",
    "train crash",
    "boat crash",
    "other event",
    "atmospheric event",
    "sonic boom",
    "sonic blast",
    "acoustic noise",
    "thunder",
    "avalanche",
    "snow avalanche",
    "debris avalanche",
    "hydroacoustic event",
    "ice quake",
    "slide",
    "landslide",
    "rockslide",
    "meteorite",
    "volcanic eruption",
];

/// EMSC's two-letter `evtype` as QuakeML's type and certainty: the first letter says known (k),
/// suspected (s), felt (f, known) or unknown (u); the second the kind. A kind EMSC does not
/// document (seen: `h`) has no QuakeML type rather than a guessed one.
pub fn event_type(evtype: Option<&str>) -> (Option<&'static str>, Option<&'static str>) {
    let Some(code) = evtype.map(str::trim).filter(|c| c.len() == 2) else { return (None, None) };
    let b = code.as_bytes();
    let kind = match b[1].to_ascii_lowercase() {
        b'e' => Some("earthquake"),
        b'r' => Some("rock burst"),
        b'i' => Some("induced or triggered event"),
        b'm' => Some("mining explosion"),
        b'x' => Some("experimental explosion"),
        b'n' => Some("nuclear explosion"),
        b'q' => Some("quarry blast"),
        b's' if b[0] == b'l' => Some("landslide"),
        _ => None,
    };
    let certainty = match b[0].to_ascii_lowercase() {
        b'k' | b'f' => Some("known"),
        b's' => Some("suspected"),
        _ => None,
    };
    (kind, kind.and(certainty))
}

/// Text for an XML element or attribute.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The resource identifiers of an event and its parts; EMSC's unid is the stable key.
fn id(part: &str, unid: &str) -> String {
    format!("smi:eu.emsc-csem/{part}/{}", esc(unid))
}

/// A QuakeML 1.2 document of `entries`, in their order.
pub fn quakeml(entries: &[Arc<Entry>]) -> Vec<u8> {
    let mut out = String::with_capacity(256 + entries.len() * 1200);
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    out.push('\n');
    out.push_str(
        r#"<q:quakeml xmlns:q="http://quakeml.org/xmlns/quakeml/1.2" xmlns="http://quakeml.org/xmlns/bed/1.2">"#,
    );
    out.push_str("\n<eventParameters publicID=\"smi:eu.emsc-csem/fdsnws/event/1/query\">");
    for e in entries {
        event(&mut out, &e.stored.event);
    }
    out.push_str("\n</eventParameters>\n</q:quakeml>\n");
    out.into_bytes()
}

fn event(out: &mut String, e: &Event) {
    let agency = e.auth.as_deref().map(|a| format!("<agencyID>{}</agencyID>", esc(a))).unwrap_or_default();
    let _ = write!(out, "\n<event publicID=\"{}\">", id("event", &e.unid));
    let _ = write!(out, "<preferredOriginID>{}</preferredOriginID>", id("origin", &e.unid));
    if e.mag.is_some() {
        let _ = write!(out, "<preferredMagnitudeID>{}</preferredMagnitudeID>", id("magnitude", &e.unid));
    }
    let (kind, certainty) = event_type(e.evtype.as_deref());
    if let Some(k) = kind {
        let _ = write!(out, "<type>{k}</type>");
    }
    if let Some(c) = certainty {
        let _ = write!(out, "<typeCertainty>{c}</typeCertainty>");
    }
    if let Some(r) = &e.region {
        let _ = write!(out, "<description><text>{}</text><type>region name</type></description>", esc(r));
    }
    let _ = write!(
        out,
        "<creationInfo>{agency}<creationTime>{}</creationTime></creationInfo>",
        format_utc(e.lastupdate_us)
    );
    let _ = write!(
        out,
        "<origin publicID=\"{}\"><time><value>{}</value></time><latitude><value>{}</value></latitude>\
         <longitude><value>{}</value></longitude><depth><value>{}</value></depth>\
         <creationInfo>{agency}</creationInfo></origin>",
        id("origin", &e.unid),
        format_utc(e.time_us),
        e.lat,
        e.lon,
        // QuakeML depths are metres.
        (e.depth_km * 1000.0).round(),
    );
    if let Some(m) = e.mag {
        let _ = write!(out, "<magnitude publicID=\"{}\"><mag><value>{m}</value></mag>", id("magnitude", &e.unid));
        if let Some(t) = &e.magtype {
            let _ = write!(out, "<type>{}</type>", esc(t));
        }
        let _ = write!(
            out,
            "<originID>{}</originID><creationInfo>{agency}</creationInfo></magnitude>",
            id("origin", &e.unid)
        );
    }
    out.push_str("</event>");
}

pub const TEXT_HEADER: &str = "#EventID|Time|Latitude|Longitude|Depth/km|Author|Catalog|Contributor|ContributorID|MagType|Magnitude|MagAuthor|EventLocationName|EventType";

/// A text field: the separator and line breaks cannot appear inside one.
fn field(s: Option<&str>) -> String {
    s.unwrap_or("").replace(['|', '\n', '\r'], " ")
}

/// The FDSN text format: a header, then one line per event.
pub fn text(entries: &[Arc<Entry>]) -> Vec<u8> {
    let mut out = String::with_capacity(TEXT_HEADER.len() + 1 + entries.len() * 140);
    out.push_str(TEXT_HEADER);
    out.push('\n');
    for e in entries {
        let e = &e.stored.event;
        let time = format_utc(e.time_us);
        let auth = field(e.auth.as_deref());
        let _ = writeln!(
            out,
            "{}|{}|{}|{}|{}|{auth}|{}|{auth}|{}|{}|{}|{auth}|{}|{}",
            field(Some(&e.unid)),
            time.trim_end_matches('Z'),
            e.lat,
            e.lon,
            e.depth_km,
            field(e.source_catalog.as_deref()),
            field(e.source_id.as_deref()),
            field(e.magtype.as_deref()),
            e.mag.map(|m| m.to_string()).unwrap_or_default(),
            field(e.region.as_deref()),
            event_type(e.evtype.as_deref()).0.unwrap_or(""),
        );
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emsc_codes_as_quakeml_types() {
        assert_eq!(event_type(Some("ke")), (Some("earthquake"), Some("known")));
        assert_eq!(event_type(Some("se")), (Some("earthquake"), Some("suspected")));
        assert_eq!(event_type(Some("ue")), (Some("earthquake"), None));
        assert_eq!(event_type(Some("kh")), (None, None));
        assert_eq!(event_type(None), (None, None));
        for (k, _) in ["ke", "kr", "ki", "km", "kx", "kn", "kq", "ls"].map(|c| event_type(Some(c))) {
            assert!(EVENT_TYPES.contains(&k.unwrap()));
        }
    }

    #[test]
    fn hostile_text_stays_inside_its_field() {
        assert_eq!(esc("A<b>&\"c\"\u{1}"), "A&lt;b&gt;&amp;&quot;c&quot; ");
        assert_eq!(field(Some("X|Y\nZ")), "X Y Z");
    }
}
