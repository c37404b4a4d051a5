//! What one client can make the web server do: store reads at once and how long each may take,
//! live streams in all and per client address, how far back a stream replays, how long a
//! stream may wait on a client that does not read. Each bound answers at once (a 503 or 429
//! with `Retry-After`), never with a queue that grows.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The address of a connection's peer, put on each request of it by [`super::serve`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The bounds, each a flag and an environment variable of `quake web` / `quake run`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests answered from the store (not the window) at once.
    pub store_reads: usize,
    /// How long one store-backed request may take before it is answered 503.
    pub store_timeout: Duration,
    /// Bytes of encoded answers kept for repeats.
    pub cache_bytes: usize,
    /// Live streams open at once, in all.
    pub streams: usize,
    /// Live streams open at once from one client address.
    pub streams_per_client: usize,
    /// Changes a reconnecting stream is re-sent at most; further behind, it gets `reset`.
    pub replay: usize,
    /// How long a write to a stream may wait on a client that does not read.
    pub stream_write_timeout: Duration,
    /// The header carrying the client's address as the edge saw it (CloudFront's
    /// `cloudfront-viewer-address`); empty: the connection's peer address. Only a header the
    /// edge sets and overwrites may be named here: one a client can send decides nothing.
    pub client_header: Option<header::HeaderName>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            store_reads: 2,
            store_timeout: Duration::from_secs(10),
            cache_bytes: 32 << 20,
            streams: 10_000,
            streams_per_client: 16,
            replay: 1000,
            stream_write_timeout: Duration::from_secs(30),
            client_header: None,
        }
    }
}

/// The live bounds of one server: the store-read slots and the open streams by client.
pub struct Guard {
    pub limits: Limits,
    store: Arc<Semaphore>,
    streams: Mutex<Streams>,
}

#[derive(Default)]
struct Streams {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Why a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every store-read slot is taken.
    StoreBusy,
    /// The store did not answer in time.
    StoreSlow,
    /// The server holds all the streams it will.
    Streams,
    /// This client holds all the streams one client may.
    ClientStreams,
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Self::ClientStreams => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::StoreBusy => {
                "the server is answering as many requests from the event store as it will; retry shortly"
            }
            Self::StoreSlow => "the event store did not answer in time; retry shortly, or ask for a shorter span",
            Self::Streams => "the server holds as many live streams as it will; retry shortly",
            Self::ClientStreams => "too many live streams from this address; close one (one per page is enough)",
        }
    }

    /// Seconds a client should wait before asking again.
    pub fn retry_after(self) -> u32 {
        match self {
            Self::StoreBusy => 2,
            Self::StoreSlow => 5,
            Self::Streams | Self::ClientStreams => 30,
        }
    }

    /// The answer as the JSON API gives it.
    pub fn response(self) -> Response {
        let mut r = (
            self.status(),
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({ "error": { "message": self.message() } })),
        )
            .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after()));
        r
    }

    /// The same answer as raw HTTP/1.1, for the raw SSE writer.
    pub fn wire(self) -> String {
        let body = json!({ "error": { "message": self.message() } }).to_string();
        format!(
            "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nretry-after: {}\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            self.status(),
            self.retry_after(),
            body.len()
        )
    }
}

/// A stream's place, given back when it ends.
pub struct StreamPermit {
    guard: Arc<Guard>,
    client: IpAddr,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut s = self.guard.streams.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                s.by_client.remove(&self.client);
            }
        }
    }
}

impl Guard {
    pub fn new(limits: Limits) -> Self {
        Self { store: Arc::new(Semaphore::new(limits.store_reads.max(1))), limits, streams: Mutex::default() }
    }

    /// A store-read slot, or `StoreBusy` at once.
    pub fn store_slot(&self) -> Result<OwnedSemaphorePermit, Refused> {
        self.store.clone().try_acquire_owned().map_err(|_| Refused::StoreBusy)
    }

    /// Runs one store read within its slot and time. A failed read is logged here, once, for
    /// every route: the answers built from it only say the store is unavailable.
    pub async fn store_read<T, E: std::fmt::Display>(
        &self,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Result<T, E>, Refused> {
        let _slot = self.store_slot()?;
        let read = tokio::time::timeout(self.limits.store_timeout, f).await.map_err(|_| Refused::StoreSlow)?;
        if let Err(e) = &read {
            tracing::error!(error = %e, "Store read failed.");
        }
        Ok(read)
    }

    /// A place for one more stream of `client`.
    pub fn stream(self: &Arc<Self>, client: IpAddr) -> Result<StreamPermit, Refused> {
        let mut s = self.streams.lock();
        if s.total >= self.limits.streams {
            return Err(Refused::Streams);
        }
        let n = s.by_client.entry(client).or_default();
        if *n >= self.limits.streams_per_client {
            return Err(Refused::ClientStreams);
        }
        *n += 1;
        s.total += 1;
        Ok(StreamPermit { guard: self.clone(), client })
    }

    /// The streams open now.
    pub fn streams_open(&self) -> usize {
        self.streams.lock().total
    }

    /// The client's address: the edge's header when one is configured and present, else the
    /// connection's peer.
    pub fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
        let value = self.limits.client_header.as_ref().and_then(|h| headers.get(h)).and_then(|v| v.to_str().ok());
        self.client_of(value, peer)
    }

    /// [`Self::client`] from the configured header's value, when the caller read it itself.
    pub fn client_of(&self, header_value: Option<&str>, peer: Option<SocketAddr>) -> IpAddr {
        header_value.and_then(parse_addr).or(peer.map(|p| p.ip())).unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }
}

/// The address of CloudFront's `address:port` forms (`198.51.100.7:46532`,
/// `2001:db8::1:46532`, also `[2001:db8::1]:443`), or a bare address.
pub fn parse_addr(v: &str) -> Option<IpAddr> {
    let v = v.trim();
    // The header always carries a port, so the part before the last colon comes first: a bare
    // IPv6 address would otherwise swallow the port as its last group.
    v.rsplit_once(':').and_then(|(a, _)| a.trim_matches(['[', ']']).parse().ok()).or_else(|| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_in_all_and_per_client_and_given_back() {
        let g = Arc::new(Guard::new(Limits { streams: 3, streams_per_client: 2, ..Limits::default() }));
        let (a, b) = (IpAddr::from([198, 51, 100, 7]), IpAddr::from([203, 0, 113, 5]));
        let a1 = g.stream(a).unwrap();
        let _a2 = g.stream(a).unwrap();
        assert_eq!(g.stream(a).err(), Some(Refused::ClientStreams));
        let _b1 = g.stream(b).unwrap();
        assert_eq!(g.stream(b).err(), Some(Refused::Streams));
        drop(a1);
        assert_eq!(g.streams_open(), 2);
        assert!(g.stream(a).is_ok(), "a place given back is taken again");
    }

    #[tokio::test]
    async fn store_reads_are_bounded_in_number_and_time() {
        let g = Guard::new(Limits { store_reads: 1, store_timeout: Duration::from_millis(50), ..Limits::default() });
        let held = g.store_slot().unwrap();
        assert_eq!(g.store_read(async { Ok::<_, String>(1) }).await.err(), Some(Refused::StoreBusy));
        drop(held);
        assert_eq!(g.store_read(async { Ok::<_, String>(1) }).await, Ok(Ok(1)));
        let slow = g.store_read(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, String>(1)
        });
        assert_eq!(slow.await.err(), Some(Refused::StoreSlow));
        assert!(g.store_slot().is_ok(), "a timed-out read gives its slot back");
    }

    #[test]
    fn the_edges_client_address_forms() {
        assert_eq!(parse_addr("198.51.100.7:46532"), Some(IpAddr::from([198, 51, 100, 7])));
        assert_eq!(parse_addr("198.51.100.7"), Some(IpAddr::from([198, 51, 100, 7])));
        assert_eq!(parse_addr("[2001:db8::1]:443"), "2001:db8::1".parse().ok());
        assert_eq!(parse_addr("2001:db8::1:46532"), "2001:db8::1".parse().ok());
        assert_eq!(parse_addr("2001:db8::1"), "2001:db8::1".parse().ok());
        assert_eq!(parse_addr("nonsense"), None);
        let g = Guard::new(Limits {
            client_header: Some("cloudfront-viewer-address".parse().unwrap()),
            ..Limits::default()
        });
        let mut h = HeaderMap::new();
        let peer = Some("10.0.0.9:5000".parse().unwrap());
        assert_eq!(g.client(&h, peer), IpAddr::from([10, 0, 0, 9]));
        h.insert("cloudfront-viewer-address", HeaderValue::from_static("203.0.113.5:1234"));
        assert_eq!(g.client(&h, peer), IpAddr::from([203, 0, 113, 5]));
    }
}
