//! The raw SSE writer: the event stream written straight to the socket (read the request head,
//! answer, then one `write_all` per frame); a few kB per client instead of a full HTTP
//! connection. Bounded like the router's stream: places per client and in all, replay length,
//! a write's patience.

use super::sse::{last_event_id, stream_frames};
use super::WebState;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const HEAD_MAX: usize = 8192;

/// The `Last-Event-ID` header or `lastEventId` query parameter of a request head, and the value
/// of the header `client_header` names (the client's address as the edge reports it).
pub(super) fn parse_head(head: &str, client_header: Option<&str>) -> (Option<i64>, Option<String>) {
    let mut lines = head.split("\r\n");
    let target = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or("");
    let query = target
        .split_once('?')
        .map(|(_, q)| q)
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lastEventId=")).map(str::to_owned));
    let (mut last, mut client) = (None, None);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("last-event-id") {
            last = Some(v);
        } else if client_header.is_some_and(|h| k.eq_ignore_ascii_case(h)) {
            client = Some(v.to_owned());
        }
    }
    (last_event_id(last, query.as_deref()), client)
}

pub(super) async fn serve_stream(
    mut tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    state: &WebState,
    shutdown: &CancellationToken,
) {
    let guard = &state.guard;
    let (last, client) = {
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let n = match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return,
            };
            head.extend_from_slice(&chunk[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            if head.len() > HEAD_MAX {
                let _ = tcp.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").await;
                return;
            }
        }
        let wanted = guard.limits.client_header.as_ref().map(|h| h.as_str());
        let (last, value) = parse_head(&String::from_utf8_lossy(&head), wanted);
        (last, guard.client_of(value.as_deref(), Some(peer)))
    };
    let _permit = match guard.stream(client) {
        Ok(p) => p,
        Err(r) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(r.wire().as_bytes())).await;
            return;
        }
    };
    // Subscribed before the answer starts: a client that sees the stream open may rely on
    // every later change coming through it.
    let frames = stream_frames(&state.window, last, guard.limits.replay);
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                x-accel-buffering: no\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n";
    // A client that does not read fills the socket's buffer and then blocks a write: after
    // this long it is dropped, holding no more than the kernel's buffer meanwhile.
    let patience = guard.limits.stream_write_timeout;
    let (mut rd, mut wr) = tcp.split();
    if !send(&mut wr, head.as_bytes(), patience).await {
        return;
    }
    tokio::pin!(frames);
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    ping.tick().await;
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            f = frames.next() => match f {
                Some(f) => if !send(&mut wr, f.to_wire().as_bytes(), patience).await { return },
                None => return,
            },
            _ = ping.tick() => if !send(&mut wr, b": keep-alive\n\n", patience).await { return },
            // The client sends nothing more; a read that ends means it went away.
            r = rd.read(&mut sink) => if !matches!(r, Ok(n) if n > 0) { return },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Writes `bytes` within `patience`; false when the client is gone or does not read.
async fn send(wr: &mut tokio::net::tcp::WriteHalf<'_>, bytes: &[u8], patience: Duration) -> bool {
    matches!(tokio::time::timeout(patience, wr.write_all(bytes)).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_event_id_and_the_edge_header_from_the_head() {
        let h = "GET /api/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 42\r\nCloudFront-Viewer-Address: 203.0.113.5:9\r\n\r\n";
        assert_eq!(super::parse_head(h, None), (Some(42), None));
        let edge = Some("cloudfront-viewer-address");
        assert_eq!(super::parse_head(h, edge).1.as_deref(), Some("203.0.113.5:9"));
        assert_eq!(super::parse_head("GET /api/stream?lastEventId=7 HTTP/1.1\r\n\r\n", edge), (Some(7), None));
        assert_eq!(super::parse_head("GET /api/stream HTTP/1.1\r\n\r\n", None).0, None);
        assert_eq!(super::parse_head("garbage", edge), (None, None));
    }
}
