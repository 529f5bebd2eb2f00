//! Serving an axum [`Router`] over HTTP/1.1 with the deadlines `axum::serve` does not set: a client must
//! send its request headers within [`Limits::header_timeout`], and a connection lives at most
//! [`Limits::connection_timeout`]. The artifact, ops (metrics and health) and webhook servers use it.
use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

/// The deadlines of a server's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// The longest a connection is served.
    pub connection_timeout: Duration,
}

impl Limits {
    /// Limits for small request/response servers (ops, webhooks): 10 s for headers, 60 s a connection.
    pub const SHORT: Limits = Limits {
        header_timeout: Duration::from_secs(10),
        connection_timeout: Duration::from_secs(60),
    };
}

/// Serve `app` on `listener` until `shutdown` completes, then let the requests in flight finish (each
/// within the connection deadline) and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve_connection(tcp, app.clone(), limits, stopping.clone()));
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection ends by its deadline; the bound is only a backstop.
    let drained = tokio::time::timeout(limits.connection_timeout, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
    Ok(())
}

/// Serve one connection until it closes, its deadline passes, or the server stops (gracefully: the
/// request in flight is answered, then the connection closes).
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    app: Router,
    limits: Limits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    // HTTP/1.1 only: cleartext HTTP/2 would let one connection open many concurrent streams.
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
    tokio::pin!(connection);
    let deadline = tokio::time::sleep(limits.connection_timeout);
    tokio::pin!(deadline);
    let mut graceful = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = &mut deadline => return,
            changed = stopping.changed(), if !graceful => {
                graceful = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
