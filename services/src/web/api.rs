//! `/api/quakes` and `/api/quakes/{unid}`: the GeoJSON/CSV query API, and the one place that
//! decides whether an answer comes from the window or the store (the FDSN service uses it too).

use super::body::{respond, AnswerKey, Encoded, Encoding, Source};
use super::limits::Refused;
use super::query::OrderBy;
use super::window::{Entry, Versions};
use super::{render, ApiError, WebState};
use crate::store::WindowQuery;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

/// Relative windows end at the next whole minute: answers (and their ETags) then stay the same
/// for a minute unless an event changes, so caches and 304s work.
pub fn minute_anchor(now_us: i64) -> i64 {
    (now_us / 60_000_000 + 1) * 60_000_000
}

/// Where a query's answer comes from, decided (with the versions of that moment) before any data
/// is read: a change the read misses then moves the version past the one the answer is kept under.
pub struct Origin {
    from_window: bool,
    versions: Versions,
}

impl Origin {
    pub fn of(s: &WebState, start_us: i64, now_us: i64) -> Self {
        let (from_window, versions) = s.window.covers(start_us, now_us);
        Self { from_window, versions }
    }

    /// The version a kept answer must have been made at to be served.
    pub fn current(&self) -> Source {
        if self.from_window {
            Source::Window(self.versions.window)
        } else {
            Source::Store(self.versions.store)
        }
    }
}

/// Matching events, the version they reflect, and whether an answer made of them may be kept.
pub struct Fetched {
    pub entries: Vec<Arc<Entry>>,
    pub source: Source,
    pub keep: bool,
}

/// The most events a store-backed request reads when the store's limit is not the answer's
/// own (magnitude orders, FDSN's further filters); one more read tells there are too many.
pub const STORE_ROWS_MAX: usize = super::query::MAX_LIMIT;

/// Why `fetch` has no events to give.
pub enum Failed {
    Store(crate::store::StoreError),
    Refused(Refused),
    /// More than [`STORE_ROWS_MAX`] events in the range: the request must be narrowed.
    TooMany,
}

/// The events matching `q`, newest first: from the window when it holds the range, else from
/// the store (one Query per day of at most a year), within a store-read slot and its time.
/// `cut`: the store's `limit` (newest or oldest first) is what the answer keeps; otherwise
/// every event of the range is read, up to [`STORE_ROWS_MAX`].
pub async fn fetch(s: &WebState, origin: &Origin, q: &WindowQuery, cut: bool) -> Result<Fetched, Failed> {
    if origin.from_window {
        let snap = s.window.query(q);
        return Ok(Fetched { entries: snap.entries, source: Source::Window(snap.versions.window), keep: true });
    }
    let read_at = std::time::Instant::now();
    let limit = if cut { q.limit } else { STORE_ROWS_MAX + 1 };
    let asked = WindowQuery { limit, oldest: cut && q.oldest, ..q.clone() };
    let rows = s.guard.store_read(s.store.window(&asked)).await.map_err(Failed::Refused)?.map_err(Failed::Store)?;
    if !cut && rows.len() > STORE_ROWS_MAX {
        return Err(Failed::TooMany);
    }
    let entries = rows
        .into_iter()
        .map(|st| {
            let feature = st.event.to_feature().to_string().into();
            Arc::new(Entry { stored: st, feature })
        })
        .collect();
    // A change seen less than the store's read lag before the query may be missing from its
    // indexes still: such an answer is served but not kept.
    let settled = read_at.saturating_duration_since(origin.versions.store_changed_at) >= s.store.read_lag();
    Ok(Fetched { entries, source: Source::Store(origin.versions.store), keep: settled })
}

impl From<Failed> for ApiError {
    fn from(f: Failed) -> Self {
        match f {
            Failed::Store(_) => store_unavailable(),
            Failed::Refused(r) => ApiError::Refused(r),
            Failed::TooMany => ApiError::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": { "message": format!("more than {STORE_ROWS_MAX} events match; narrow the time range, magnitudes or box, or order by time with a limit") } }),
            ),
        }
    }
}

/// A failed store read's answer (the failure is logged where the read ran).
pub fn store_unavailable() -> ApiError {
    ApiError::Status(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": { "message": "the event store is unavailable; retry shortly" } }),
    )
}

pub async fn quakes_index(
    State(s): State<WebState>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let now = (s.now)();
    let q = super::query::parse(&pairs, minute_anchor(now))?;
    let enc = Encoding::from_headers(&headers);
    let key = AnswerKey::Quakes(q.key());
    let origin = Origin::of(&s, q.window.start_us, now);
    if let Some(e) = s.cache.get(&key, enc, origin.current()) {
        return Ok(respond(&e, enc, &headers, "public, max-age=10"));
    }
    let cut = matches!(q.order, OrderBy::Time | OrderBy::TimeAsc);
    let got = fetch(&s, &origin, &q.window, cut).await?;
    let (body, ctype) = render::render(got.entries, &q);
    let e = Arc::new(Encoded::new(&body, enc, ctype));
    if got.keep {
        s.cache.put(key, enc, got.source, e.clone());
    }
    Ok(respond(&e, enc, &headers, "public, max-age=10"))
}

pub async fn quakes_show(
    State(s): State<WebState>,
    Path(unid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let feature: Arc<str> = match s.window.get(&unid) {
        Some(e) => e.feature.clone(),
        None => match s
            .guard
            .store_read(s.store.get(&unid))
            .await
            .map_err(ApiError::Refused)?
            .map_err(|_| store_unavailable())?
        {
            Some(st) => st.event.to_feature().to_string().into(),
            None => {
                return Err(ApiError::Status(
                    StatusCode::NOT_FOUND,
                    json!({ "error": { "parameter": "unid", "message": format!("no event {unid:?}"), "accepted": "an EMSC unid such as 20240411_0000003" } }),
                ))
            }
        },
    };
    let enc = Encoding::from_headers(&headers);
    Ok(respond(&Encoded::new(feature.as_bytes(), enc, "application/geo+json"), enc, &headers, "public, max-age=30"))
}
