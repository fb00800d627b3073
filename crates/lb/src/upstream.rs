//! Keep-alive HTTP/1.1 connections to targets, pooled per target (in its
//! [`TargetRuntime`]): a request checks a connection out, and the connection goes back when
//! the response body has been read to its end. Connections idle longer than [`IDLE_TIMEOUT`]
//! are dropped at the next checkout.
//!
//! Two kinds, one pool each: raw connections ([`Buffered`]) for the HTTP/1.x path, which
//! reads and writes them itself, and hyper client connections for HTTP/2 clients' requests,
//! each driven by a task in the node's tracker. A pooled hyper connection the target closed is
//! noticed before the request is written (hyper hands the request back), and the request is
//! retried on another connection; a raw one the target closed is noticed at checkout from the
//! reactor's readiness (no system call), see [`check_out_raw`].

use std::net::SocketAddr;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::framing::Buffered;
use crate::table::TargetRuntime;

/// Shorter than the 5 s keep-alive many application servers (Node.js among them) use, so a
/// connection the target is about to close is rarely reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a node's shutdown waits for a response still coming from a target.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long connecting to a target may take (HTTP and NLB flows alike).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An idle connection and when it was last used.
pub type IdleConnection = (SendRequest<Incoming>, Instant);
/// An idle raw connection and when it was last used.
pub type RawIdleConnection = (Buffered, Instant);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {address} timed out")]
    ConnectTimeout { address: SocketAddr },
    #[error("the HTTP handshake with {address} failed: {source}")]
    Handshake {
        address: SocketAddr,
        source: hyper::Error,
    },
    #[error("the request to {address} failed: {source}")]
    Request {
        address: SocketAddr,
        source: hyper::Error,
    },
}

/// A pooled raw connection to `target`, if one is idle and still open. An idle connection
/// has nothing to read: if the reactor saw it readable, the target closed it (or sent
/// something unasked), and it is dropped.
pub fn check_out_raw(target: &TargetRuntime) -> Option<Buffered> {
    let now = Instant::now();
    let mut idle = raw_pool(target).lock().expect("poisoned");
    while let Some((connection, last_used)) = idle.pop() {
        if now.duration_since(last_used) >= IDLE_TIMEOUT {
            idle.clear();
            return None;
        }
        let mut context = Context::from_waker(Waker::noop());
        if connection.stream.poll_read_ready(&mut context).is_pending() {
            return Some(connection);
        }
    }
    None
}

/// Gives a raw connection back after its response was read to the end (and nothing more).
pub fn check_in_raw(target: &TargetRuntime, connection: Buffered) {
    if target.is_closed() {
        return;
    }
    raw_pool(target)
        .lock()
        .expect("poisoned")
        .push((connection, Instant::now()));
}

/// This worker's pool of raw connections to `target`.
fn raw_pool(target: &TargetRuntime) -> &std::sync::Mutex<Vec<RawIdleConnection>> {
    let slot = crate::workers::current_worker();
    &target.raw_idle[slot % target.raw_idle.len()]
}

/// A new raw connection to `address`.
pub async fn connect_raw(address: SocketAddr) -> Result<Buffered, UpstreamError> {
    Ok(Buffered::new(open(address).await?))
}

/// A TCP connection to a target, with Nagle off (requests and responses are written whole).
async fn open(address: SocketAddr) -> Result<TcpStream, UpstreamError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| UpstreamError::ConnectTimeout { address })?
        .map_err(|source| UpstreamError::Connect { address, source })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends `request` to `target`: the response, and the connection to give back with
/// [`check_in`] once the response body is done.
pub async fn send(
    target: &TargetRuntime,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    mut request: Request<Incoming>,
) -> Result<(Response<Incoming>, SendRequest<Incoming>), UpstreamError> {
    loop {
        let (mut sender, reused) = match check_out(target) {
            Some(sender) => (sender, true),
            None => (connect(target.address, tracker, shutdown).await?, false),
        };
        if reused && sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, sender)),
            Err(mut error) => match error.take_message() {
                // Not written: the pooled connection was closing. Another one will do.
                Some(unsent) if reused => request = unsent,
                _ => {
                    return Err(UpstreamError::Request {
                        address: target.address,
                        source: error.into_error(),
                    })
                }
            },
        }
    }
}

fn check_out(target: &TargetRuntime) -> Option<SendRequest<Incoming>> {
    let now = Instant::now();
    let mut idle = target.idle.lock().expect("poisoned");
    while let Some((sender, last_used)) = idle.pop() {
        if now.duration_since(last_used) >= IDLE_TIMEOUT {
            // The rest are older still (the pool is a stack): drop them all.
            idle.clear();
            return None;
        }
        if !sender.is_closed() {
            return Some(sender);
        }
    }
    None
}

/// Gives a connection back after its response body was read to the end.
pub fn check_in(target: &TargetRuntime, sender: SendRequest<Incoming>) {
    if sender.is_closed() || target.is_closed() {
        return;
    }
    target
        .idle
        .lock()
        .expect("poisoned")
        .push((sender, Instant::now()));
}

async fn connect(
    address: SocketAddr,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<SendRequest<Incoming>, UpstreamError> {
    let stream = open(address).await?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| UpstreamError::Handshake { address, source })?;
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        tokio::pin!(connection);
        let result = tokio::select! {
            result = &mut connection => result,
            // The node is stopping: responses in flight may still finish (client connections
            // shut down gracefully), and an idle pooled connection ends once the node clears
            // the pools (`LoadBalancerHandle::wait`); never hold the shutdown longer than this.
            _ = shutdown.cancelled() => {
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut connection).await {
                    Ok(result) => result,
                    Err(_) => Ok(()),
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%address, %error, "target connection ended with an error");
        }
    });
    Ok(sender)
}
