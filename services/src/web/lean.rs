//! The event stream written straight to the socket: read the request head, answer, then
//! one `write_all` per frame; a few kB per client instead of a full HTTP connection.

use super::sse::{last_event_id, stream_frames};
use super::window::Window;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const HEAD_MAX: usize = 8192;

/// The `Last-Event-ID` header or `lastEventId` query parameter of a request head.
pub(super) fn parse_head(head: &str) -> Option<i64> {
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?;
    let query = target
        .split_once('?')
        .map(|(_, q)| q)
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lastEventId=")).map(str::to_owned));
    let header = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("last-event-id").then(|| v.trim().to_owned())
    });
    last_event_id(header.as_deref(), query.as_deref())
}

pub(super) async fn serve_stream(mut tcp: tokio::net::TcpStream, window: &Window, shutdown: &CancellationToken) {
    let last = {
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
        parse_head(&String::from_utf8_lossy(&head))
    };
    // Subscribed before the answer starts: a client that sees the stream open may rely on
    // every later change coming through it.
    let frames = stream_frames(window, last);
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                x-accel-buffering: no\r\nconnection: close\r\n\r\n";
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    tokio::pin!(frames);
    let (mut rd, mut wr) = tcp.split();
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    ping.tick().await;
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            f = frames.next() => match f {
                Some(f) => if wr.write_all(f.to_wire().as_bytes()).await.is_err() { return },
                None => return,
            },
            _ = ping.tick() => if wr.write_all(b": keep-alive\n\n").await.is_err() { return },
            // The client sends nothing more; a read that ends means it went away.
            r = rd.read(&mut sink) => if !matches!(r, Ok(n) if n > 0) { return },
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_event_id_from_header_or_query() {
        let h = "GET /api/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 42\r\n\r\n";
        assert_eq!(super::parse_head(h), Some(42));
        assert_eq!(super::parse_head("GET /api/stream?lastEventId=7 HTTP/1.1\r\n\r\n"), Some(7));
        assert_eq!(super::parse_head("GET /api/stream HTTP/1.1\r\n\r\n"), None);
        assert_eq!(super::parse_head("garbage"), None);
    }
}
