//! The HTTPS listener of every front end: connections accepted, TLS handshaken, then served by
//! hyper (HTTP/1.1 with upgrades, and HTTP/2) with a router, until a graceful shutdown.
//!
//! Connections are served either on the runtime that accepts them or, for the proxy, spread
//! round-robin over worker threads that each run a single-threaded runtime with a router of
//! their own, as nginx spreads them over its worker processes. A request and the upstream
//! connection it is forwarded on then stay on one thread: the tasks of one exchange wake each
//! other without a cross-thread wakeup, which on a loaded machine cost a fifth of the proxy's
//! CPU.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tower::ServiceExt;

use portcullis_authn::chain::metrics::Metrics;
use portcullis_authn::chain::{
    Measured, MetricsLayer, MetricsService, PeerCertificates, RemoteAddr,
};
use tower::Layer as _;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send the request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most request headers accepted on HTTP/1.1.
const MAX_HEADERS: usize = 100;
/// Largest header block accepted on HTTP/2, in bytes.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// What serves the accepted connections.
pub(crate) enum Routers {
    /// One router, on the runtime that accepts.
    Shared(Served),
    /// One worker thread (a single-threaded runtime) per router.
    PerWorker(Vec<Served>),
}

/// A front end's router as the listener serves it: every request counted and timed by the
/// front end's metrics (around the whole router, not as a layer on each of its routes: a
/// router clones a route's service for every request), or not at all.
#[derive(Clone)]
pub enum Served {
    /// Counted and timed.
    Measured(MetricsService<axum::Router>),
    /// As it is (benchmarks of the handlers alone).
    #[cfg_attr(
        not(feature = "bench-internals"),
        expect(dead_code, reason = "made only by benchmarks")
    )]
    Plain(axum::Router),
}

impl Served {
    /// `router`, each request counted and timed in `metrics`.
    pub(crate) fn measured(router: axum::Router, metrics: &Arc<Metrics>) -> Served {
        Served::Measured(MetricsLayer::new(metrics.clone()).layer(router))
    }
}

impl tower::Service<http::Request<Body>> for Served {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::Either<
        Measured<axum::routing::future::RouteFuture<std::convert::Infallible>>,
        axum::routing::future::RouteFuture<std::convert::Infallible>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        match self {
            Served::Measured(s) => tower::Service::<http::Request<Body>>::poll_ready(s, cx),
            Served::Plain(r) => tower::Service::<http::Request<Body>>::poll_ready(r, cx),
        }
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match self {
            Served::Measured(s) => futures::future::Either::Left(s.call(req)),
            Served::Plain(r) => futures::future::Either::Right(r.call(req)),
        }
    }
}

/// The number of worker threads for `configured` (0: one per CPU core).
pub(crate) fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// What every connection is served with.
#[derive(Clone)]
struct Serving {
    acceptor: tokio_rustls::TlsAcceptor,
    builder: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    metrics: Arc<Metrics>,
}

impl Serving {
    fn new(tls: Arc<rustls::ServerConfig>, metrics: Arc<Metrics>) -> Serving {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_headers(MAX_HEADERS)
            // The request head (line and headers) is read into this buffer: bounded as
            // HTTP/2's header list is (431 beyond it).
            .max_buf_size(MAX_HEADER_LIST as usize);
        builder.http2().max_header_list_size(MAX_HEADER_LIST);
        Serving {
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            builder,
            metrics,
        }
    }

    /// One connection: the TLS handshake (bounded in time), then its requests.
    async fn connection(
        self,
        router: Served,
        tcp: TcpStream,
        remote: SocketAddr,
        watcher: Watcher,
    ) {
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.metrics.handshake_failures.inc();
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.metrics.handshake_failures.inc();
                return;
            }
        };
        self.metrics.connections.inc();
        // Hashed here, once per connection, for the client-certificate authenticator.
        let peer_certificates = PeerCertificates::new(
            tls.get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        );
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            // Connection facts come from the TLS layer only, never from headers.
            req.extensions_mut().insert(peer_certificates.clone());
            req.extensions_mut().insert(RemoteAddr(remote));
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(remote));
            router.clone().oneshot(req.map(Body::new))
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(tls), service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }
}

/// A connection handed to a worker.
struct Accepted {
    tcp: std::net::TcpStream,
    remote: SocketAddr,
    watcher: Watcher,
}

/// A worker thread: its queue of connections and its router (kept to serve a connection here
/// should the thread be gone).
struct Worker {
    queue: mpsc::UnboundedSender<Accepted>,
    router: Served,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn start(
        index: usize,
        router: Served,
        serving: Serving,
        mut stopped: watch::Receiver<bool>,
    ) -> Result<Worker> {
        let (queue, mut connections) = mpsc::unbounded_channel::<Accepted>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a worker's runtime")?;
        let own_router = router.clone();
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-worker-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(a) = connections.recv().await {
                        match TcpStream::from_std(a.tcp) {
                            Ok(tcp) => {
                                tokio::spawn(serving.clone().connection(
                                    own_router.clone(),
                                    tcp,
                                    a.remote,
                                    a.watcher,
                                ));
                            }
                            Err(e) => {
                                tracing::warn!(remote = %a.remote, error = %e, "a worker could not take a connection");
                            }
                        }
                    }
                    // The listener is closed: the connections finish until the accept loop
                    // says the grace period is over.
                    let _ = stopped.wait_for(|s| *s).await;
                });
            })
            .context("starting a worker thread")?;
        Ok(Worker {
            queue,
            router,
            thread,
        })
    }
}

/// Accepts connections on `listener` and serves them with `routers` until `shutdown` fires;
/// then stops accepting (`stopping` turns true, which ends watches), lets the requests in
/// flight finish within `grace`, and returns.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    routers: Routers,
    metrics: Arc<Metrics>,
    mut shutdown: oneshot::Receiver<()>,
    stopping: watch::Sender<bool>,
    grace: Duration,
) -> Result<()> {
    let serving = Serving::new(tls_config, metrics);
    let graceful = GracefulShutdown::new();
    let (stopped_tx, stopped) = watch::channel(false);
    let (shared, workers) = match routers {
        Routers::Shared(router) => (Some(router), Vec::new()),
        Routers::PerWorker(routers) => {
            anyhow::ensure!(!routers.is_empty(), "no router for the worker threads");
            let mut workers = Vec::with_capacity(routers.len());
            for (i, router) in routers.into_iter().enumerate() {
                workers.push(Worker::start(i, router, serving.clone(), stopped.clone())?);
            }
            (None, workers)
        }
    };
    let mut next = 0usize;
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Responses are written whole (head with body, HTTP/2 frames in one flush): Nagle's
        // algorithm would only hold a last small segment back for the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "TCP_NODELAY not set");
        }
        let watcher = graceful.watcher();
        if let Some(router) = &shared {
            tokio::spawn(
                serving
                    .clone()
                    .connection(router.clone(), tcp, remote, watcher),
            );
            continue;
        }
        // Round-robin; `workers` is not empty without a shared router.
        let Some(worker) = next.checked_rem(workers.len()).and_then(|i| workers.get(i)) else {
            continue;
        };
        next = next.wrapping_add(1);
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(%remote, error = %e, "an accepted connection could not be handed over");
                continue;
            }
        };
        if let Err(mpsc::error::SendError(a)) = worker.queue.send(Accepted {
            tcp,
            remote,
            watcher,
        }) {
            // The worker's thread is gone: the connection is served here.
            tracing::error!("a worker thread has stopped; serving its connection on the acceptor");
            match TcpStream::from_std(a.tcp) {
                Ok(tcp) => {
                    tokio::spawn(serving.clone().connection(
                        worker.router.clone(),
                        tcp,
                        remote,
                        a.watcher,
                    ));
                }
                Err(e) => tracing::warn!(%remote, error = %e, "an accepted connection was lost"),
            }
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    let threads: Vec<_> = workers.into_iter().map(|w| w.thread).collect();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period ended with requests still in flight");
        }
    }
    let _ = stopped_tx.send(true);
    if !threads.is_empty() {
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
        })
        .await;
    }
    Ok(())
}
