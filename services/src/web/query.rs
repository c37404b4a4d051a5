//! `/api/quakes` parameters, FDSN-style: parsed strictly, each problem named with the form the
//! parameter accepts, so a bad request is a 400 that says what to change.

use crate::store::{WindowQuery, MAX_SPAN_DAYS};
use serde::Serialize;

/// A rejected parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamError {
    pub parameter: String,
    pub message: String,
    pub accepted: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderBy {
    Time,
    TimeAsc,
    Magnitude,
    MagnitudeAsc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    GeoJson,
    Csv,
}

/// A parsed, normalised request.
#[derive(Debug, Clone, PartialEq)]
pub struct QuakeQuery {
    pub window: WindowQuery,
    pub order: OrderBy,
    pub format: Format,
}

/// What identifies a request's answer over given data: every field of [`QuakeQuery`], with the
/// floating-point bounds by their bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryKey {
    start_us: i64,
    end_us: i64,
    mag: [Option<u64>; 2],
    bbox: Option<[u64; 4]>,
    limit: usize,
    order: OrderBy,
    format: Format,
}

impl QuakeQuery {
    pub fn key(&self) -> QueryKey {
        let w = &self.window;
        QueryKey {
            start_us: w.start_us,
            end_us: w.end_us,
            mag: [w.min_mag.map(f64::to_bits), w.max_mag.map(f64::to_bits)],
            bbox: w.bbox.map(|(a, b, c, d)| [a.to_bits(), b.to_bits(), c.to_bits(), d.to_bits()]),
            limit: w.limit,
            order: self.order,
            format: self.format,
        }
    }
}

pub const MAX_LIMIT: usize = 50_000;

const TIME_FORM: &str = "UTC time YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.ffffff][Z]";

fn err(parameter: &str, message: impl Into<String>, accepted: &'static str) -> ParamError {
    ParamError { parameter: parameter.to_owned(), message: message.into(), accepted }
}

pub(super) fn parse_time(name: &str, v: &str) -> Result<i64, ParamError> {
    let v = v.trim();
    if let Some(us) = crate::model::parse_utc(v) {
        return Ok(us);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    Err(err(name, format!("{v:?} is not a time"), TIME_FORM))
}

pub(super) fn parse_num(name: &str, v: &str, lo: f64, hi: f64, accepted: &'static str) -> Result<f64, ParamError> {
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(x),
        Ok(x) if x.is_finite() => Err(err(name, format!("{x} is outside [{lo}, {hi}]"), accepted)),
        _ => Err(err(name, format!("{v:?} is not a number"), accepted)),
    }
}

impl OrderBy {
    pub(super) fn parse(key: &str, v: &str) -> Result<Self, ParamError> {
        Ok(match v {
            "time" => Self::Time,
            "time-asc" => Self::TimeAsc,
            "magnitude" => Self::Magnitude,
            "magnitude-asc" => Self::MagnitudeAsc,
            _ => return Err(err(key, format!("{v:?} is not an order"), "time, time-asc, magnitude or magnitude-asc")),
        })
    }
}

/// The pairs under their full FDSN names (`minmag` is `minmagnitude`, ...), for both APIs; a
/// name given twice, under either form, is refused.
pub(super) fn named(pairs: &[(String, String)]) -> Result<Vec<(&str, &str)>, ParamError> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .iter()
        .map(|(k, v)| {
            let key = match k.as_str() {
                "start" => "starttime",
                "end" => "endtime",
                "minmag" => "minmagnitude",
                "maxmag" => "maxmagnitude",
                "minlat" => "minlatitude",
                "maxlat" => "maxlatitude",
                "minlon" => "minlongitude",
                "maxlon" => "maxlongitude",
                "lat" => "latitude",
                "lon" => "longitude",
                "magtype" => "magnitudetype",
                other => other,
            };
            if !seen.insert(key) {
                return Err(err(key, "given more than once", "each parameter at most once"));
            }
            Ok((key, v.as_str()))
        })
        .collect()
}

/// Checks the magnitude range and sets the box from `[minlat, maxlat, minlon, maxlon]` (missing
/// sides open), for both APIs.
pub(super) fn bounds(q: &mut WindowQuery, bbox: [Option<f64>; 4]) -> Result<(), ParamError> {
    if let (Some(a), Some(b)) = (q.min_mag, q.max_mag) {
        if a > b {
            return Err(err("minmagnitude", "is above maxmagnitude", "minmagnitude <= maxmagnitude"));
        }
    }
    if bbox.iter().any(Option::is_some) {
        let [a, b, c, d] = bbox;
        let (a, b) = (a.unwrap_or(-90.0), b.unwrap_or(90.0));
        if a > b {
            return Err(err("minlatitude", "is above maxlatitude", "minlatitude <= maxlatitude"));
        }
        // minlongitude > maxlongitude is a box across the antimeridian, as in FDSN.
        q.bbox = Some((a, b, c.unwrap_or(-180.0), d.unwrap_or(180.0)));
    }
    Ok(())
}

/// Parses the raw query pairs; `now_us` anchors `window=` and the default window (24 h).
pub fn parse(pairs: &[(String, String)], now_us: i64) -> Result<QuakeQuery, ParamError> {
    let mut start = None;
    let mut end = None;
    let mut window = None;
    let mut q = WindowQuery::new(0, 0);
    let mut bbox = [None::<f64>; 4];
    let mut order = OrderBy::Time;
    let mut format = Format::GeoJson;
    for (key, v) in named(pairs)? {
        match key {
            "starttime" => start = Some(parse_time(key, v)?),
            "endtime" => end = Some(parse_time(key, v)?),
            "window" => {
                let hours = match v {
                    "1h" => 1,
                    "24h" => 24,
                    "7d" => 24 * 7,
                    "30d" => 24 * 30,
                    _ => return Err(err(key, format!("{v:?} is not a window"), "1h, 24h, 7d or 30d")),
                };
                window = Some(hours);
            }
            "minmagnitude" => q.min_mag = Some(parse_num(key, v, -5.0, 12.0, "a magnitude in [-5, 12], e.g. 2.5")?),
            "maxmagnitude" => q.max_mag = Some(parse_num(key, v, -5.0, 12.0, "a magnitude in [-5, 12], e.g. 6")?),
            "minlatitude" => bbox[0] = Some(parse_num(key, v, -90.0, 90.0, "degrees in [-90, 90]")?),
            "maxlatitude" => bbox[1] = Some(parse_num(key, v, -90.0, 90.0, "degrees in [-90, 90]")?),
            "minlongitude" => bbox[2] = Some(parse_num(key, v, -180.0, 180.0, "degrees in [-180, 180]")?),
            "maxlongitude" => bbox[3] = Some(parse_num(key, v, -180.0, 180.0, "degrees in [-180, 180]")?),
            "limit" => {
                q.limit = match v.trim().parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                    _ => return Err(err(key, format!("{v:?} is not a count from 1 to {MAX_LIMIT}"), "an integer from 1 to 50000")),
                }
            }
            "orderby" => order = OrderBy::parse(key, v)?,
            "format" => {
                format = match v {
                    "geojson" | "json" => Format::GeoJson,
                    "csv" => Format::Csv,
                    _ => return Err(err(key, format!("{v:?} is not a format"), "geojson or csv")),
                }
            }
            other => {
                return Err(err(
                    other,
                    "unknown parameter",
                    "starttime, endtime, window, minmagnitude, maxmagnitude, minlatitude, maxlatitude, minlongitude, maxlongitude, limit, orderby, format",
                ))
            }
        }
    }
    if window.is_some() && (start.is_some() || end.is_some()) {
        return Err(err(
            "window",
            "cannot be combined with starttime or endtime",
            "either window or starttime/endtime",
        ));
    }
    let hours = window.unwrap_or(24);
    q.end_us = end.unwrap_or(now_us);
    q.start_us = start.unwrap_or(q.end_us - hours * 3_600_000_000);
    if q.start_us > q.end_us {
        return Err(err("starttime", "is after endtime", "a starttime before endtime"));
    }
    // What bounds the store reads of one request (one query per day of the span).
    if q.end_us - q.start_us > MAX_SPAN_DAYS * 86_400_000_000 {
        return Err(err(
            "starttime",
            format!("spans more than {MAX_SPAN_DAYS} days"),
            "a range of at most 366 days; ask for longer ones a year at a time",
        ));
    }
    bounds(&mut q, bbox)?;
    if q.limit == usize::MAX {
        q.limit = MAX_LIMIT;
    }
    // The store reads only what the answer keeps: the newest or oldest `limit` events for a
    // time order; for a magnitude order every event of the range, up to the most one answer
    // holds (one more tells there are too many).
    q.oldest = order == OrderBy::TimeAsc;
    Ok(QuakeQuery { window: q, order, format })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        url_pairs(s)
    }

    fn url_pairs(s: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(s).unwrap()
    }

    const NOW: i64 = 1_713_000_000_000_000;

    #[test]
    fn defaults_to_the_last_24_hours_newest_first() {
        let q = parse(&p(""), NOW).unwrap();
        assert_eq!(q.window.end_us - q.window.start_us, 24 * 3_600_000_000);
        assert_eq!((q.order, q.format, q.window.limit), (OrderBy::Time, Format::GeoJson, MAX_LIMIT));
    }

    #[test]
    fn each_parameter_and_aliases() {
        let q = parse(
            &p("starttime=2024-04-11&end=2024-04-12T06:00:00Z&minmag=2.5&maxmagnitude=6&minlatitude=-10&maxlat=50&minlongitude=170&maxlongitude=-170&limit=10&orderby=magnitude&format=csv"),
            NOW,
        )
        .unwrap();
        assert_eq!(q.window.start_us, crate::model::parse_utc("2024-04-11T00:00:00Z").unwrap());
        assert_eq!(q.window.end_us, crate::model::parse_utc("2024-04-12T06:00:00Z").unwrap());
        assert_eq!((q.window.min_mag, q.window.max_mag), (Some(2.5), Some(6.0)));
        assert_eq!(q.window.bbox, Some((-10.0, 50.0, 170.0, -170.0)));
        assert_eq!((q.window.limit, q.order, q.format), (10, OrderBy::Magnitude, Format::Csv));
        let q = parse(&p("window=7d"), NOW).unwrap();
        assert_eq!(q.window.end_us - q.window.start_us, 7 * 24 * 3_600_000_000);
    }

    #[test]
    fn bad_parameters_are_named_with_the_accepted_form() {
        for (qs, param) in [
            ("minmagnitude=big", "minmagnitude"),
            ("minlatitude=91", "minlatitude"),
            ("limit=0", "limit"),
            ("limit=99999999", "limit"),
            ("orderby=random", "orderby"),
            ("window=2d", "window"),
            ("format=xml", "format"),
            ("starttime=yesterday", "starttime"),
            ("window=1h&starttime=2024-01-01", "window"),
            ("starttime=2024-02-01&endtime=2024-01-01", "starttime"),
            ("minmag=5&maxmag=4", "minmagnitude"),
            ("bogus=1", "bogus"),
            ("limit=1&limit=2", "limit"),
            ("maxlongitude=NaN", "maxlongitude"),
            ("starttime=1976-01-01&endtime=2026-01-01", "starttime"),
        ] {
            let e = parse(&p(qs), NOW).unwrap_err();
            assert_eq!(e.parameter, param, "{qs}: {e:?}");
            assert!(!e.accepted.is_empty());
        }
    }
}
