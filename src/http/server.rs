//! The HTTP/1.1 server: hyper driven directly, because `axum::serve` has
//! no knobs for what an internet-facing server needs.
//!
//! * A connection must send a complete request head within the header
//!   timeout, counted from when it opens or finished its previous request:
//!   hyper's timer covers slowloris heads and idle keep-alive connections.
//! * A head larger than the limit is answered 431 and the connection closed.
//! * Each request carries the body timeout, enforced where bodies are read.
//! * At most `max_connections` are open; a connection beyond that is closed
//!   as soon as it is accepted, so a client fails fast (and a load balancer
//!   tries another replica) instead of queueing unseen in the backlog.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::extract::BodyTimeout;
use crate::{
    config::HttpLimits,
    metrics::{HTTP_CONNECTIONS_OPEN, HTTP_CONNECTIONS_REFUSED},
};

/// Pause after a failed accept (e.g. out of file descriptors), so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `shutdown`, then lets open requests
/// finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut http = http1::Builder::new();
    let max_head = limits.max_header_bytes as usize;
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(max_head)
        // The read buffer stops growing at the head limit too, so a head
        // that never ends is refused without buffering more of it.
        .max_buf_size(max_head.max(8192));
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let body_timeout = BodyTimeout(limits.body_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!(HTTP_CONNECTIONS_REFUSED).increment(1);
            tracing::warn!(%peer, "connection limit reached; connection closed");
            drop(tcp);
            continue;
        };
        // Answers are small and latency-bound: send them at once, not when
        // Nagle's algorithm decides to.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            request.extensions_mut().insert(body_timeout);
            let app = app.clone();
            app.oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            metrics::gauge!(HTTP_CONNECTIONS_OPEN).increment(1.0);
            if let Err(err) = connection.await {
                // Timeouts, resets and malformed requests: the client's doing.
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            metrics::gauge!(HTTP_CONNECTIONS_OPEN).decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}
