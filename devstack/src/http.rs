//! The HTTP/1.1 server every devstack stand-in runs on: a `Listener` that
//! accepts under a connection cap, a task per connection, and a graceful
//! shutdown that waits for in-flight requests.
//!
//! A stand-in implements [`Handler`]; answering [`Drop`] closes the connection
//! without a response (how devstack simulates a connection lost mid-request).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 1024;

/// Close the connection instead of answering.
#[derive(Debug)]
pub struct Drop;

impl std::fmt::Display for Drop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by devstack fault injection")
    }
}

impl std::error::Error for Drop {}

pub type Answer = Result<Response<Full<Bytes>>, Drop>;

/// Answers one request.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, req: Request<Incoming>, peer: SocketAddr)
        -> impl Future<Output = Answer> + Send;
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `listen` and serves `handler` until [`Server::shutdown`].
    pub async fn start<H: Handler>(listen: SocketAddr, handler: Arc<H>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let l = Listener {
            listener,
            handler,
            limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            shutdown: shutdown.clone(),
            tracker: TaskTracker::new(),
        };
        let done = tokio::spawn(l.run());
        Ok(Server {
            addr,
            shutdown,
            done,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, returns when every
    /// connection is closed.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.done.await;
    }

    /// Resolves when the server has stopped.
    pub async fn stopped(&mut self) {
        let _ = (&mut self.done).await;
    }
}

struct Listener<H> {
    listener: TcpListener,
    handler: Arc<H>,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl<H: Handler> Listener<H> {
    async fn run(self) {
        loop {
            // Wait for a free slot before accepting: excess load waits in the backlog.
            let permit = tokio::select! {
                p = self.limit.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = self.shutdown.cancelled() => break,
            };
            let (stream, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.shutdown.cancelled() => break,
            };
            let handler = self.handler.clone();
            let shutdown = self.shutdown.clone();
            self.tracker.spawn(async move {
                serve_connection(stream, peer, handler, shutdown).await;
                drop(permit);
            });
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { handler.call(req, peer).await }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The decoded `k=v` pairs of a request's query string.
pub fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// A response with a JSON body.
pub fn json_response(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).expect("values serialize"),
    )));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
