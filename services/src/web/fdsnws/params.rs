//! The FDSN event `query` parameters (fdsnws-event 1.2), parsed strictly: every name and alias
//! of the specification, each value checked, each problem named with the form it accepts.

use crate::model::Event;
use crate::store::WindowQuery;
use crate::web::query::{bounds, named, parse_num, parse_time, OrderBy, ParamError};

/// What the answer is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FdsnFormat {
    /// QuakeML 1.2 BED, the specification's default.
    Xml,
    /// The FDSN pipe-separated text format.
    Text,
    /// EMSC's GeoJSON, as EMSC's own node also answers.
    Json,
}

/// A circle around a point, radii in degrees of arc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub lat: f64,
    pub lon: f64,
    pub min_r: f64,
    pub max_r: f64,
}

/// A parsed `query` request.
#[derive(Debug, Clone, PartialEq)]
pub struct FdsnQuery {
    /// Origin time, magnitude and box; `limit` stays unlimited here (see [`FdsnQuery::limit`]).
    pub window: WindowQuery,
    pub depth: (Option<f64>, Option<f64>),
    pub circle: Option<Circle>,
    /// Lower-case magnitude types, any of which matches.
    pub magtypes: Vec<String>,
    /// QuakeML event types, any of which matches.
    pub eventtypes: Vec<String>,
    pub catalog: Option<String>,
    pub contributor: Option<String>,
    pub updated_after: Option<i64>,
    pub eventid: Option<String>,
    pub limit: Option<usize>,
    /// Events to skip (the parameter counts from 1).
    pub skip: usize,
    pub order: OrderBy,
    pub format: FdsnFormat,
    /// 204 (the default) or 404 when nothing matches.
    pub nodata: u16,
}

/// Identifies an answer over given data: every field of [`FdsnQuery`] that shapes the body,
/// floating-point values by their bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FdsnKey {
    times: [i64; 2],
    numbers: Vec<Option<u64>>,
    texts: Vec<Option<String>>,
    lists: [Vec<String>; 2],
    updated_after: Option<i64>,
    paging: (Option<usize>, usize),
    order: OrderBy,
    format: FdsnFormat,
}

impl FdsnQuery {
    pub fn key(&self) -> FdsnKey {
        let w = &self.window;
        let bits = |x: Option<f64>| x.map(f64::to_bits);
        let (b, c) = (w.bbox, self.circle);
        FdsnKey {
            times: [w.start_us, w.end_us],
            numbers: vec![
                bits(w.min_mag),
                bits(w.max_mag),
                bits(b.map(|b| b.0)),
                bits(b.map(|b| b.1)),
                bits(b.map(|b| b.2)),
                bits(b.map(|b| b.3)),
                bits(self.depth.0),
                bits(self.depth.1),
                bits(c.map(|c| c.lat)),
                bits(c.map(|c| c.lon)),
                bits(c.map(|c| c.min_r)),
                bits(c.map(|c| c.max_r)),
            ],
            texts: vec![self.catalog.clone(), self.contributor.clone(), self.eventid.clone()],
            lists: [self.magtypes.clone(), self.eventtypes.clone()],
            updated_after: self.updated_after,
            paging: (self.limit, self.skip),
            order: self.order,
            format: self.format,
        }
    }

    /// The filters beyond time, magnitude and box (which the window and the store apply).
    pub fn matches(&self, e: &Event) -> bool {
        let (lo, hi) = self.depth;
        if lo.is_some_and(|d| e.depth_km < d) || hi.is_some_and(|d| e.depth_km > d) {
            return false;
        }
        if let Some(c) = self.circle {
            let r = arc_degrees(c.lat, c.lon, e.lat, e.lon);
            if r < c.min_r || r > c.max_r {
                return false;
            }
        }
        let any = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
        };
        any(&self.magtypes, e.magtype.as_deref())
            && any(&self.eventtypes, super::quakeml::event_type(e.evtype.as_deref()).0)
            && any(self.catalog.as_slice(), e.source_catalog.as_deref())
            && any(self.contributor.as_slice(), e.auth.as_deref())
            && self.updated_after.is_none_or(|t| e.lastupdate_us > t)
    }
}

/// Great-circle distance in degrees (haversine: stable for small and antipodal distances).
pub fn arc_degrees(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    (2.0 * a.sqrt().min(1.0).asin()).to_degrees()
}

/// The most events one answer holds; more need `limit` and `offset` or a narrower request.
pub const MAX_EVENTS: usize = 50_000;
/// The longest origin-time range one request may span (the store reads one day per query).
pub use crate::store::MAX_SPAN_DAYS;
/// The range when `starttime` is not given: the 30 days before `endtime`, as USGS's node does.
pub const DEFAULT_DAYS: i64 = 30;

pub const PARAMETERS: &str = "starttime (start), endtime (end), minlatitude (minlat), maxlatitude (maxlat), \
minlongitude (minlon), maxlongitude (maxlon), latitude (lat), longitude (lon), minradius, maxradius, \
mindepth, maxdepth, minmagnitude (minmag), maxmagnitude (maxmag), magnitudetype (magtype), eventtype, \
includeallorigins, includeallmagnitudes, includearrivals, eventid, limit, offset, orderby, catalog, \
contributor, updatedafter, format, nodata";

fn err(parameter: &str, message: impl Into<String>, accepted: &'static str) -> ParamError {
    ParamError { parameter: parameter.to_owned(), message: message.into(), accepted }
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ParamError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(err(name, format!("{v:?} is not a boolean"), "true or false")),
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// Parses the raw pairs; `now_us` is the end of the range when `endtime` is not given.
pub fn parse(pairs: &[(String, String)], now_us: i64) -> Result<FdsnQuery, ParamError> {
    let mut q = FdsnQuery {
        window: WindowQuery::new(0, 0),
        depth: (None, None),
        circle: None,
        magtypes: vec![],
        eventtypes: vec![],
        catalog: None,
        contributor: None,
        updated_after: None,
        eventid: None,
        limit: None,
        skip: 0,
        order: OrderBy::Time,
        format: FdsnFormat::Xml,
        nodata: 204,
    };
    let (mut start, mut end) = (None, None);
    let mut bbox = [None::<f64>; 4];
    let mut circle = [None::<f64>; 4];
    for (key, v) in named(pairs)? {
        const MAG: &str = "a magnitude in [-5, 12], e.g. 2.5";
        match key {
            "starttime" => start = Some(parse_time(key, v)?),
            "endtime" => end = Some(parse_time(key, v)?),
            "updatedafter" => q.updated_after = Some(parse_time(key, v)?),
            "minmagnitude" => q.window.min_mag = Some(parse_num(key, v, -5.0, 12.0, MAG)?),
            "maxmagnitude" => q.window.max_mag = Some(parse_num(key, v, -5.0, 12.0, MAG)?),
            "minlatitude" => bbox[0] = Some(parse_num(key, v, -90.0, 90.0, "degrees in [-90, 90]")?),
            "maxlatitude" => bbox[1] = Some(parse_num(key, v, -90.0, 90.0, "degrees in [-90, 90]")?),
            "minlongitude" => bbox[2] = Some(parse_num(key, v, -180.0, 180.0, "degrees in [-180, 180]")?),
            "maxlongitude" => bbox[3] = Some(parse_num(key, v, -180.0, 180.0, "degrees in [-180, 180]")?),
            "latitude" => circle[0] = Some(parse_num(key, v, -90.0, 90.0, "degrees in [-90, 90]")?),
            "longitude" => circle[1] = Some(parse_num(key, v, -180.0, 180.0, "degrees in [-180, 180]")?),
            "minradius" => circle[2] = Some(parse_num(key, v, 0.0, 180.0, "degrees of arc in [0, 180]")?),
            "maxradius" => circle[3] = Some(parse_num(key, v, 0.0, 180.0, "degrees of arc in [0, 180]")?),
            "mindepth" => q.depth.0 = Some(parse_num(key, v, -10.0, 7000.0, "kilometres in [-10, 7000]")?),
            "maxdepth" => q.depth.1 = Some(parse_num(key, v, -10.0, 7000.0, "kilometres in [-10, 7000]")?),
            "magnitudetype" => q.magtypes = list(v).into_iter().map(|s| s.to_ascii_lowercase()).collect(),
            "eventtype" => {
                q.eventtypes = list(v);
                if let Some(t) = q.eventtypes.iter().find(|t| !super::quakeml::EVENT_TYPES.contains(&t.as_str())) {
                    return Err(err(
                        key,
                        format!("{t:?} is not a QuakeML event type"),
                        "QuakeML 1.2 event types, comma separated, e.g. earthquake,quarry blast",
                    ));
                }
            }
            // One origin and one magnitude are held per event and no arrivals: the answer is
            // the same either way, but the value is still checked.
            "includeallorigins" | "includeallmagnitudes" | "includearrivals" => {
                parse_bool(key, v)?;
            }
            "eventid" => {
                let id = v.trim();
                if id.is_empty() || id.len() > 64 || id.contains(',') {
                    return Err(err(
                        key,
                        format!("{v:?} is not one event id"),
                        "one EMSC unid such as 20240411_0000003",
                    ));
                }
                q.eventid = Some(id.to_owned());
            }
            "limit" => {
                q.limit = Some(match v.trim().parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(err(key, format!("{v:?} is not a positive count"), "an integer of 1 or more")),
                })
            }
            "offset" => {
                q.skip = match v.trim().parse::<usize>() {
                    Ok(n) if n >= 1 => n - 1,
                    _ => {
                        return Err(err(
                            key,
                            format!("{v:?} is not a position"),
                            "an integer of 1 or more (1 is the first event)",
                        ))
                    }
                }
            }
            "orderby" => q.order = OrderBy::parse(key, v)?,
            "catalog" => q.catalog = Some(v.trim().to_owned()),
            "contributor" => q.contributor = Some(v.trim().to_owned()),
            "format" => {
                q.format = match v {
                    "xml" | "quakeml" => FdsnFormat::Xml,
                    "text" => FdsnFormat::Text,
                    "json" | "geojson" => FdsnFormat::Json,
                    _ => return Err(err(key, format!("{v:?} is not a format"), "xml, text or json")),
                }
            }
            "nodata" => {
                q.nodata = match v.trim() {
                    "204" => 204,
                    "404" => 404,
                    _ => return Err(err(key, format!("{v:?} is not a status"), "204 or 404")),
                }
            }
            other => return Err(err(other, "unknown parameter", PARAMETERS)),
        }
    }
    q.window.end_us = end.unwrap_or(now_us);
    q.window.start_us = start.unwrap_or(q.window.end_us - DEFAULT_DAYS * 86_400_000_000);
    if q.window.start_us > q.window.end_us {
        return Err(err("starttime", "is after endtime", "a starttime before endtime"));
    }
    if q.eventid.is_none() && q.window.end_us - q.window.start_us > MAX_SPAN_DAYS * 86_400_000_000 {
        return Err(err(
            "starttime",
            format!("spans more than {MAX_SPAN_DAYS} days"),
            "a range of at most 366 days; page through longer ones",
        ));
    }
    bounds(&mut q.window, bbox)?;
    if let (Some(a), Some(b)) = q.depth {
        if a > b {
            return Err(err("mindepth", "is below maxdepth", "mindepth <= maxdepth"));
        }
    }
    if circle.iter().any(Option::is_some) {
        let [lat, lon, min_r, max_r] = circle;
        let c = Circle {
            lat: lat.unwrap_or(0.0),
            lon: lon.unwrap_or(0.0),
            min_r: min_r.unwrap_or(0.0),
            max_r: max_r.unwrap_or(180.0),
        };
        if c.min_r > c.max_r {
            return Err(err("minradius", "is above maxradius", "minradius <= maxradius"));
        }
        q.circle = Some(c);
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<FdsnQuery, ParamError> {
        parse(&serde_urlencoded::from_str::<Vec<(String, String)>>(s).unwrap(), 1_713_000_000_000_000)
    }

    #[test]
    fn defaults_and_aliases() {
        let q = p("").unwrap();
        assert_eq!(q.window.end_us - q.window.start_us, DEFAULT_DAYS * 86_400_000_000);
        assert_eq!((q.format, q.nodata, q.order, q.limit, q.skip), (FdsnFormat::Xml, 204, OrderBy::Time, None, 0));
        let q = p("start=2024-04-11&end=2024-04-12T00:00:00.000000&minlat=30&maxlon=-170&minlon=170&lat=38&lon=23&maxradius=5&magtype=ML,mb&offset=11&limit=5&format=text&nodata=404").unwrap();
        assert_eq!(q.window.bbox, Some((30.0, 90.0, 170.0, -170.0)));
        assert_eq!(q.circle, Some(Circle { lat: 38.0, lon: 23.0, min_r: 0.0, max_r: 5.0 }));
        assert_eq!(q.magtypes, ["ml", "mb"]);
        assert_eq!((q.skip, q.limit, q.format, q.nodata), (10, Some(5), FdsnFormat::Text, 404));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (qs, name) in [
            ("minmag=x", "minmagnitude"),
            ("maxradius=181", "maxradius"),
            ("minradius=5&maxradius=1", "minradius"),
            ("mindepth=50&maxdepth=10", "mindepth"),
            ("offset=0", "offset"),
            ("limit=0", "limit"),
            ("eventtype=quake", "eventtype"),
            ("includearrivals=yes", "includearrivals"),
            ("nodata=500", "nodata"),
            ("format=miniseed", "format"),
            ("starttime=2020-01-01&endtime=2024-01-01", "starttime"),
            ("eventid=a,b", "eventid"),
            ("minmag=1&minmagnitude=2", "minmagnitude"),
            ("network=IU", "network"),
        ] {
            assert_eq!(p(qs).unwrap_err().parameter, name, "{qs}");
        }
    }

    #[test]
    fn arc_distances() {
        assert!((arc_degrees(0.0, 0.0, 0.0, 90.0) - 90.0).abs() < 1e-9);
        assert!((arc_degrees(10.0, 179.5, 10.0, -179.5) - 0.985).abs() < 0.01);
        assert!((arc_degrees(90.0, 0.0, -90.0, 0.0) - 180.0).abs() < 1e-9);
    }
}
