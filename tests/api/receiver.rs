//! A real HTTP endpoint standing in for a customer's webhook receiver: it
//! records what it gets and answers as a test tells it to.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use tokio_util::task::AbortOnDropHandle;

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// One answer: a status after an optional delay.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
}

pub fn status(status: u16) -> Reply {
    Reply {
        status,
        delay: Duration::ZERO,
    }
}

pub fn slow(status: u16, delay: Duration) -> Reply {
    Reply { status, delay }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Answers for the next requests, in order.
    script: VecDeque<Reply>,
    /// The answer once the script is used up.
    otherwise: Option<Reply>,
}

/// Clones share one server, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    _server: Arc<AbortOnDropHandle<std::io::Result<()>>>,
}

impl Receiver {
    /// Starts answering 200 to everything.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/hook", post(handle))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            AbortOnDropHandle::new(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ));
        Receiver {
            url: format!("http://{addr}/hook"),
            inner,
            _server: Arc::new(server),
        }
    }

    /// Answers the next requests with these replies, then `otherwise`.
    pub fn script(&self, replies: &[Reply]) {
        self.inner.lock().unwrap().script = replies.iter().copied().collect();
    }

    pub fn otherwise(&self, reply: Reply) {
        self.inner.lock().unwrap().otherwise = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().received.len()
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let reply = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(Received {
            headers,
            body,
            at: Instant::now(),
        });
        let otherwise = inner.otherwise.unwrap_or(status(200));
        inner.script.pop_front().unwrap_or(otherwise)
    };
    tokio::time::sleep(reply.delay).await;
    StatusCode::from_u16(reply.status).unwrap()
}
