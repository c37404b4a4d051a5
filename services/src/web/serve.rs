//! The listener: connections that open with `GET /api/stream` go to the raw SSE writer
//! (`sse_raw`), every other connection to a general HTTP/1 or HTTP/2 connection of the router.

use super::limits::PeerAddr;
use super::sse_raw;
use super::WebState;
use axum::Router;
use std::time::Duration;

/// Serves `app` on `listener` until `shutdown`. A connection whose first request is
/// `GET /api/stream` is answered by a small writer of its own instead of a general HTTP/1
/// connection: a browser holds that connection open for hours, and the general one keeps about
/// 30 kB of buffers per client, which 10,000 clients turn into hundreds of megabytes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    state: WebState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let (app, state, shutdown) = (app.clone(), state.clone(), shutdown.clone());
        tokio::spawn(async move {
            if opens_with_stream(&tcp).await {
                sse_raw::serve_stream(tcp, peer, &state, &shutdown).await;
            } else {
                serve_http(tcp, peer, app, &shutdown).await;
            }
        });
    }
}

/// Peeks at the first bytes without consuming them.
async fn opens_with_stream(tcp: &tokio::net::TcpStream) -> bool {
    const WANT: &[u8] = b"GET /api/stream";
    let mut buf = [0u8; 16];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 {
            return false;
        }
        let k = n.min(WANT.len());
        if buf[..k] != WANT[..k] {
            return false;
        }
        if n > WANT.len() {
            return matches!(buf[WANT.len()], b' ' | b'?');
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve_http(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    // Every request of the connection knows its peer (the client's address when no edge
    // header names it).
    let app = app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        req
    });
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // What one connection may hold unsent for a client that does not read (a stream on a
    // keep-alive connection): 64 kB instead of hyper's ~400 kB; past it the stream stops being
    // polled and falls behind its bounded channel (`reset`).
    builder.http1().max_buf_size(64 * 1024);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
