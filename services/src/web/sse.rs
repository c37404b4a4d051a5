//! Server-Sent Events of new and updated events: what a client gets on connect (hello, what it
//! missed or `reset`), then every change; framed for axum's SSE or for the raw writer ([`super::sse_raw`]).

use super::limits::PeerAddr;
use super::window::{Change, Window};
use super::WebState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// One frame of the event stream, whichever server path writes it.
pub enum StreamFrame {
    Hello(usize),
    Change(Change),
    /// The client missed more than is held: reload the list.
    Reset,
}

impl StreamFrame {
    fn to_sse(&self) -> SseEvent {
        match self {
            Self::Hello(n) => SseEvent::default().event("hello").data(json!({ "events": n }).to_string()),
            Self::Change(c) => SseEvent::default().id(c.id.to_string()).event(c.kind).data(&*c.feature),
            Self::Reset => SseEvent::default().event("reset").data("reload"),
        }
    }

    /// The same frame in the text/event-stream wire format.
    pub fn to_wire(&self) -> String {
        match self {
            Self::Hello(n) => format!("event: hello\ndata: {}\n\n", json!({ "events": n })),
            // Features are single-line JSON, so one data line carries them.
            Self::Change(c) => format!("id: {}\nevent: {}\ndata: {}\n\n", c.id, c.kind, c.feature),
            Self::Reset => "event: reset\ndata: reload\n\n".to_owned(),
        }
    }
}

/// What a client gets: `hello`, then what it missed since `last` (or `reset` when that is more
/// than `max_replay` changes or more than the window holds), then every change as it happens;
/// a client that falls behind the bounded buffer gets `reset`.
pub fn stream_frames(
    window: &Window,
    last: Option<i64>,
    max_replay: usize,
) -> impl Stream<Item = StreamFrame> + Send + 'static {
    // Subscribe before reading the backlog so nothing falls between the two; what is in both is
    // told apart by arrival position, not by feed id (feed ids may arrive out of order).
    let rx = window.subscribe();
    let (missed, sent) = window.resume(last);
    let backlog: Vec<StreamFrame> = match missed {
        Some(m) if m.len() <= max_replay => m.into_iter().map(StreamFrame::Change).collect(),
        _ => vec![StreamFrame::Reset],
    };
    let hello = StreamFrame::Hello(window.len());
    let live = stream::unfold(rx, move |mut rx| async move {
        match rx.recv().await {
            Ok(c) => Some((Some(c), rx)),
            Err(RecvError::Lagged(_)) => Some((None, rx)),
            Err(RecvError::Closed) => None,
        }
    })
    .filter_map(move |c| {
        let out = match c {
            // Held when the backlog was read: sent in it, or known to the client already.
            Some(c) if sent.is_some_and(|p| c.pos <= p) => None,
            Some(c) => Some(StreamFrame::Change(c)),
            None => Some(StreamFrame::Reset),
        };
        async move { out }
    });
    stream::iter(std::iter::once(hello).chain(backlog)).chain(live)
}

/// `Last-Event-ID` (header) or `lastEventId` (query, for a first connect that resumes).
pub(super) fn last_event_id(header: Option<&str>, query: Option<&str>) -> Option<i64> {
    header.or(query).and_then(|v| v.trim().parse().ok())
}

/// `GET /api/stream` over a general HTTP connection (a keep-alive connection that served other
/// requests first); connections that open with this request take the raw path ([`super::sse_raw`]) in [`serve`].
/// Bounded like the raw path: streams per client and in all, replay length.
pub(super) async fn stream_events(
    State(s): State<WebState>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let client = s.guard.client(&headers, peer.map(|Extension(PeerAddr(p))| p));
    let permit = match s.guard.stream(client) {
        Ok(p) => p,
        Err(r) => return r.response(),
    };
    let last = last_event_id(
        headers.get("last-event-id").and_then(|v| v.to_str().ok()),
        params.get("lastEventId").map(String::as_str),
    );
    // The permit lives as long as the stream: the place is given back when the client goes.
    let all: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(stream_frames(&s.window, last, s.guard.limits.replay).map(move |f| {
            let _held = &permit;
            Ok(f.to_sse())
        }));
    (
        [(header::CACHE_CONTROL, "no-cache"), (header::HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(all).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
        .into_response()
}
