//! Encoded answers: content negotiation (identity, gzip, brotli), ETags and 304s, and the cache
//! of recent bodies keyed by what they answer and the data version they were made from.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::Write;
use std::sync::Arc;

/// Which data an answer was made from, at which version: a kept answer is used only while that
/// version is current. Window-answered queries follow the window's content; store-answered ones
/// (older than the window) follow every change the store's feed shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Window(u64),
    Store(u64),
}

/// What an answer answers: a normalised request of one of the APIs, compared field by field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnswerKey {
    Quakes(super::query::QueryKey),
    Fdsn(super::fdsnws::params::FdsnKey),
}

/// Encoded bodies of recent answers: a repeated page view costs a hash lookup, not a
/// serialisation and a compression. Bounded in bytes, least recently used first out: requests
/// that differ only to defeat it (any float changes the key) push out each other, never the
/// server's memory.
pub struct BodyCache {
    // No poisoning: see `Window::inner` for the crate's policy on locks. Keyed by the request
    // alone, one slot per encoding, so a lookup borrows the key instead of cloning it.
    inner: parking_lot::Mutex<Lru>,
    budget: usize,
}

struct Lru {
    bodies: lru::LruCache<AnswerKey, [Option<Kept>; 3]>,
    bytes: usize,
}

/// A kept answer and the data version it was made from.
type Kept = (Source, Arc<Encoded>);

/// What an entry costs besides its body: the key, the slots, the map's bookkeeping.
const ENTRY_OVERHEAD: usize = 256;

fn cost(slots: &[Option<Kept>; 3]) -> usize {
    ENTRY_OVERHEAD + slots.iter().flatten().map(|(_, e)| e.body.len() + e.etag.len()).sum::<usize>()
}

impl Default for BodyCache {
    fn default() -> Self {
        Self::new(32 << 20)
    }
}

impl BodyCache {
    /// A cache of at most `budget` bytes of bodies.
    pub fn new(budget: usize) -> Self {
        Self { inner: parking_lot::Mutex::new(Lru { bodies: lru::LruCache::unbounded(), bytes: 0 }), budget }
    }

    /// The kept answer, if it was made from the data version that is `current`.
    pub fn get(&self, key: &AnswerKey, enc: Encoding, current: Source) -> Option<Arc<Encoded>> {
        let mut c = self.inner.lock();
        let (src, e) = c.bodies.get(key)?[enc as usize].as_ref()?;
        (*src == current).then(|| e.clone())
    }

    pub fn put(&self, key: AnswerKey, enc: Encoding, source: Source, e: Arc<Encoded>) {
        // One answer larger than a quarter of the budget would empty the cache for itself.
        if e.body.len() > self.budget / 4 {
            return;
        }
        let mut c = self.inner.lock();
        let mut slots = c.bodies.pop(&key).unwrap_or_default();
        c.bytes -= cost(&slots).min(c.bytes);
        // Kept answers of an older data version are of no use any more.
        for s in &mut slots {
            if s.as_ref().is_some_and(|(src, _)| *src != source) {
                *s = None;
            }
        }
        slots[enc as usize] = Some((source, e));
        c.bytes += cost(&slots);
        c.bodies.put(key, slots);
        while c.bytes > self.budget {
            let Some((_, old)) = c.bodies.pop_lru() else { break };
            c.bytes -= cost(&old).min(c.bytes);
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

/// One encoded answer body and what identifies it.
pub struct Encoded {
    pub etag: String,
    pub body: bytes::Bytes,
    pub content_type: &'static str,
}

/// A body's content coding; its discriminant is its slot in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    pub fn from_headers(h: &HeaderMap) -> Self {
        let accept = h.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
        let has = |name: &str| {
            accept.split(',').any(|part| {
                let mut it = part.trim().split(';');
                let token = it.next().unwrap_or("").trim();
                let q_zero = it.any(|p| p.trim().replace(' ', "") == "q=0");
                token.eq_ignore_ascii_case(name) && !q_zero
            })
        };
        if has("br") {
            Self::Brotli
        } else if has("gzip") {
            Self::Gzip
        } else {
            Self::Identity
        }
    }

    fn header(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }
}

pub fn encode(body: &[u8], enc: Encoding) -> Vec<u8> {
    match enc {
        Encoding::Identity => body.to_vec(),
        Encoding::Gzip => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            let _ = w.write_all(body);
            w.finish().unwrap_or_default()
        }
        Encoding::Brotli => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                let _ = w.write_all(body);
            }
            out
        }
    }
}

impl Encoded {
    /// `body` encoded for `enc`, tagged by the unencoded bytes (the same answer has one ETag in
    /// every encoding).
    pub fn new(body: &[u8], enc: Encoding, content_type: &'static str) -> Self {
        Self { etag: format!("\"{:016x}\"", crate::model::fnv1a(body)), body: encode(body, enc).into(), content_type }
    }
}

/// The answer, or 304 when the request's `If-None-Match` names its ETag.
pub fn respond(e: &Encoded, enc: Encoding, req: &HeaderMap, cache: &'static str) -> Response {
    let etag = HeaderValue::from_str(&e.etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let matches = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == e.etag || t.trim() == "*"));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, e.body.clone()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(e.content_type));
        if let Some(ce) = enc.header() {
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(ce));
        }
        r
    };
    let h = r.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_prefers_br_then_gzip() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            Encoding::from_headers(&m)
        };
        assert_eq!(h("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(h("gzip"), Encoding::Gzip);
        assert_eq!(h("br;q=0, gzip"), Encoding::Gzip);
        assert_eq!(h("identity"), Encoding::Identity);
    }

    fn key(n: usize) -> AnswerKey {
        AnswerKey::Quakes(super::super::query::parse(&[("limit".into(), n.to_string())], 0).unwrap().key())
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_and_drops_the_least_recently_used() {
        let c = BodyCache::new(100_000);
        let body = vec![b'x'; 20_000];
        for n in 1..=10 {
            c.put(
                key(n),
                Encoding::Identity,
                Source::Window(1),
                Arc::new(Encoded::new(&body, Encoding::Identity, "t")),
            );
            // The first one stays in use.
            assert!(c.get(&key(1), Encoding::Identity, Source::Window(1)).is_some(), "{n}");
            assert!(c.bytes() <= 100_000, "{}", c.bytes());
        }
        assert!(c.get(&key(2), Encoding::Identity, Source::Window(1)).is_none(), "the least recently used went");
        assert!(c.get(&key(10), Encoding::Identity, Source::Window(1)).is_some());
        assert!(c.get(&key(10), Encoding::Identity, Source::Window(2)).is_none(), "only at its data version");
        // An answer of more than a quarter of the budget is not kept.
        c.put(
            key(11),
            Encoding::Identity,
            Source::Window(1),
            Arc::new(Encoded::new(&[0; 30_000], Encoding::Identity, "t")),
        );
        assert!(c.get(&key(11), Encoding::Identity, Source::Window(1)).is_none());
    }
}
