//! Keep-alive HTTP/1.1 connections to targets, pooled per target and per worker thread (in
//! its [`TargetRuntime`]): a request checks a connection out, and the connection goes back
//! when the response has been read to its end. A pool keeps at most [`MAX_IDLE`] connections;
//! those idle longer than [`IDLE_TIMEOUT`] are dropped at checkout (the newest end) and at
//! check-in (the oldest end), and one the target closed is noticed at checkout from the
//! reactor's readiness (no system call), see [`check_out_raw`]. An HTTPS group's connections
//! are TLS ([`TargetStream`]), pooled the same way.
//!
//! The HTTP/1.x path ([`crate::http1`]) reads and writes these connections itself;
//! [`exchange`] does the same for the requests hyper parsed (HTTP/2 clients'), handing the
//! response body to hyper as a [`RawBody`].
//!
//! HTTP2 and GRPC groups' targets are spoken to in HTTP/2 instead ([`exchange_h2`]): each
//! worker keeps one multiplexed connection per target (hyper's client; prior knowledge over
//! plain TCP, ALPN `h2` over TLS), opened on first use and again once the target closed it.
//! Only HTTP/2 clients' requests go there, as with ALB (HTTP/1 clients get 464), so the
//! request, its trailers and the response's (a gRPC call's status) pass through as frames.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::framing::{Buffered, Framing, IdleTimer, RelayError, READ_CHUNK};
use crate::http1::{push_header, response_framing, uninit_headers, Scan, MAX_HEAD};
use crate::table::TargetRuntime;
use crate::tls::TargetStream;

/// The sending half of an HTTP/2 connection to a target; the request bodies are the client's.
pub type H2Sender = hyper::client::conn::http2::SendRequest<Incoming>;

/// Shorter than the 5 s keep-alive many application servers (Node.js among them) use, so a
/// connection the target is about to close is rarely reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per target and worker: after a burst, the rest are closed.
pub const MAX_IDLE: usize = 256;
/// How long connecting to a target may take (HTTP and NLB flows alike).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An idle raw connection and when it was last used.
pub type RawIdleConnection = (Buffered, Instant);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {address} timed out")]
    ConnectTimeout { address: SocketAddr },
    #[error("the TLS handshake with {address} failed: {source}")]
    Handshake {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the exchange with {address} failed: {source}")]
    Exchange {
        address: SocketAddr,
        source: RelayError,
    },
    #[error("the HTTP/2 exchange with {address} failed: {source}")]
    H2 {
        address: SocketAddr,
        source: hyper::Error,
    },
    #[error("the client's request body failed: {0}")]
    ClientBody(hyper::Error),
    #[error("the client sent no more of its body within the idle timeout")]
    ClientBodyTimeout,
}

impl UpstreamError {
    /// The target did not answer within the idle timeout, or no connection to it was made
    /// within the connect timeout (504 rather than 502, as ALB answers both).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. }
                | UpstreamError::Exchange {
                    source: RelayError::Timeout,
                    ..
                }
        )
    }

    /// The TLS handshake with the target failed (ALB's `TargetTLSNegotiationErrorCount`).
    pub fn is_handshake_error(&self) -> bool {
        matches!(self, UpstreamError::Handshake { .. })
    }

    /// No connection to the target could be made (ALB's `TargetConnectionErrorCount`).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. }
        )
    }
}

/// A pooled raw connection to `target`, if one is idle and still open. An idle connection
/// has nothing to read: if the reactor saw it readable, the target closed it (or sent
/// something unasked), and it is dropped. `now`: the caller's clock reading (one per request).
pub fn check_out_raw(target: &TargetRuntime, now: Instant) -> Option<Buffered> {
    let mut idle = raw_pool(target).lock().expect("poisoned");
    while let Some((connection, last_used)) = idle.pop_back() {
        if now.duration_since(last_used) >= IDLE_TIMEOUT {
            idle.clear();
            return None;
        }
        let mut context = Context::from_waker(Waker::noop());
        if connection
            .stream
            .tcp()
            .poll_read_ready(&mut context)
            .is_pending()
        {
            return Some(connection);
        }
    }
    None
}

/// Gives a raw connection back after its response was read to the end (and nothing more),
/// last used at `now`.
pub fn check_in_raw(target: &TargetRuntime, connection: Buffered, now: Instant) {
    if target.is_closed() {
        return;
    }
    let mut idle = raw_pool(target).lock().expect("poisoned");
    // The oldest are at the front: those past the idle timeout, or beyond the cap, go.
    while idle
        .front()
        .is_some_and(|(_, last_used)| now.duration_since(*last_used) >= IDLE_TIMEOUT)
        || idle.len() >= MAX_IDLE
    {
        idle.pop_front();
    }
    idle.push_back((connection, now));
}

/// This worker's pool of raw connections to `target`.
fn raw_pool(target: &TargetRuntime) -> &std::sync::Mutex<VecDeque<RawIdleConnection>> {
    let slot = crate::workers::current_worker();
    &target.raw_idle[slot % target.raw_idle.len()]
}

/// A new raw connection to `target`: TLS for an HTTPS group (offering only HTTP/1.1).
pub async fn connect_raw(target: &TargetRuntime) -> Result<Buffered, UpstreamError> {
    connect(target, b"http/1.1").await.map(Buffered::new)
}

/// A new connection to `target`, TLS offering `alpn` for an HTTPS group.
async fn connect(target: &TargetRuntime, alpn: &[u8]) -> Result<TargetStream, UpstreamError> {
    connect_to(target.address, target.tls, alpn).await
}

/// A new connection to `address` ([`open`]), then TLS offering `alpn` when `tls`.
pub(crate) async fn connect_to(
    address: SocketAddr,
    tls: bool,
    alpn: &[u8],
) -> Result<TargetStream, UpstreamError> {
    let stream = open(address).await?;
    if !tls {
        return Ok(TargetStream::Plain(stream));
    }
    match crate::tls::connect_to_target(stream, Some(alpn)).await {
        Ok(stream) => Ok(TargetStream::Tls(Box::new(stream))),
        Err(source) => Err(UpstreamError::Handshake { address, source }),
    }
}

/// This worker's HTTP/2 connection to `target`, while it is open.
fn h2_slot(target: &TargetRuntime) -> &tokio::sync::Mutex<Option<H2Sender>> {
    let slot = crate::workers::current_worker();
    &target.h2[slot % target.h2.len()]
}

/// A new HTTP/2 connection to `target`, driven by a task of its own on this worker: prior
/// knowledge over plain TCP, ALPN `h2` over TLS.
pub async fn connect_h2(target: &TargetRuntime) -> Result<H2Sender, UpstreamError> {
    let address = target.address;
    let stream = connect(target, b"h2").await?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::H2 { address, source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(target = %address, %error, "HTTP/2 connection to a target ended with an error");
        }
    });
    Ok(sender)
}

/// Sends a request hyper parsed (already rewritten for the target, see
/// `http_proxy::for_h2_target`) over this worker's HTTP/2 connection to `target`, opening one
/// when there is none, and waits at most `idle` for the response head. A request the pooled
/// connection could not take (the target had closed it) is sent on a new one.
pub async fn exchange_h2(
    target: &TargetRuntime,
    mut request: http::Request<Incoming>,
    idle: Duration,
) -> Result<http::Response<Incoming>, UpstreamError> {
    let address = target.address;
    let slot = h2_slot(target);
    let mut retried = false;
    loop {
        // Waiting for another request's connection attempt and making one's own take at most
        // the connect timeout together, so requests queued behind attempts at an unreachable
        // target fail as soon as they would on their own connections.
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let timed_out = |_| UpstreamError::ConnectTimeout { address };
        let (mut sender, fresh) = {
            let mut pooled = tokio::time::timeout_at(deadline, slot.lock())
                .await
                .map_err(timed_out)?;
            match pooled.as_ref().filter(|sender| !sender.is_closed()) {
                Some(sender) => (sender.clone(), false),
                None => {
                    // Held while connecting: requests meanwhile wait for this connection.
                    let sender = tokio::time::timeout_at(deadline, connect_h2(target))
                        .await
                        .map_err(timed_out)??;
                    *pooled = Some(sender.clone());
                    (sender, true)
                }
            }
        };
        match tokio::time::timeout(idle, sender.try_send_request(request)).await {
            Err(_) => {
                return Err(UpstreamError::Exchange {
                    address,
                    source: RelayError::Timeout,
                })
            }
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(mut error)) => match error.take_message() {
                Some(unsent) if !fresh && !retried => {
                    // Never sent: the connection was closing. Once more on a new one.
                    retried = true;
                    // The closed connection is replaced at the next checkout.
                    request = unsent;
                }
                _ => {
                    let source = error.into_error();
                    return Err(UpstreamError::H2 { address, source });
                }
            },
        }
    }
}

/// A target's HTTP/2 response body (with its trailers), for hyper to send on: a target that
/// sends nothing for the idle timeout fails it.
pub struct H2Body {
    body: Incoming,
    idle: Duration,
    timer: IdleTimer,
}

impl H2Body {
    pub fn new(body: Incoming, idle: Duration) -> H2Body {
        H2Body {
            body,
            idle,
            timer: IdleTimer::default(),
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer.end_wait();
                Poll::Ready(frame.map(|frame| frame.map_err(|error| Box::new(error) as BoxError)))
            }
            Poll::Pending => {
                ready!(this.timer.poll_wait(this.idle, cx));
                Poll::Ready(Some(Err(Box::new(RelayError::Timeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A TCP connection to a target, with Nagle off (requests and responses are written whole).
pub(crate) async fn open(address: SocketAddr) -> Result<TcpStream, UpstreamError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| UpstreamError::ConnectTimeout { address })?
        .map_err(|source| UpstreamError::Connect { address, source })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends a request hyper parsed (its headers already rewritten for the target) as HTTP/1.1
/// over a pooled connection, and reads the response head (at most `idle` per read). A request
/// without a body goes out whole, so an idempotent one is sent again on a new connection when
/// a pooled one turns out to be closed.
pub async fn exchange(
    target: &Arc<TargetRuntime>,
    parts: &http::request::Parts,
    mut body: Incoming,
    idle: Duration,
) -> Result<http::Response<RawBody>, UpstreamError> {
    let address = target.address;
    let failed = |source| UpstreamError::Exchange { address, source };
    let chunked = !body.is_end_stream() && body.size_hint().exact().is_none();
    let head = request_head(parts, &body, chunked);
    let head_request = parts.method == http::Method::HEAD;
    let mut retry = body.is_end_stream()
        && matches!(
            parts.method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        );
    loop {
        let (mut connection, reused) = match check_out_raw(target, Instant::now()) {
            Some(connection) => (connection, true),
            None => (connect_raw(target).await?, false),
        };
        let sent = match write_within(&mut connection.stream, &head, idle, address).await {
            Ok(()) => send_body(&mut connection.stream, &mut body, chunked, address, idle).await,
            Err(error) => Err(error),
        };
        let answered = match sent {
            Ok(()) => read_head(&mut connection, head_request, idle)
                .await
                .map_err(failed),
            Err(error) => Err(error),
        };
        match answered {
            Ok((mut response, reusable)) => {
                let framing = std::mem::replace(&mut response.body_mut().framing, Framing::Empty);
                let body = RawBody::new(target.clone(), connection, framing, reusable, idle);
                return Ok(response.map(|_| body));
            }
            Err(UpstreamError::Exchange { source, .. })
                if reused
                    && retry
                    && connection.buf.is_empty()
                    && !matches!(source, RelayError::Timeout) =>
            {
                // The pooled connection was closing: once more on a new one.
                retry = false;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The request line and headers, framed by `Content-Length` or chunked encoding.
fn request_head(parts: &http::request::Parts, body: &Incoming, chunked: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        push_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if let Some(length) = body.size_hint().exact().filter(|&l| l > 0) {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    } else if !matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "DELETE") {
        head.extend_from_slice(b"content-length: 0\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Streams the client's body to the target as it arrives.
/// Streams the client's body to the target as it arrives; each wait for the client or the
/// target is bounded by `idle`.
async fn send_body(
    stream: &mut TargetStream,
    body: &mut Incoming,
    chunked: bool,
    address: SocketAddr,
    idle: Duration,
) -> Result<(), UpstreamError> {
    let mut out = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(frame)) => frame.map_err(UpstreamError::ClientBody)?,
            Ok(None) => break,
            Err(_) => return Err(UpstreamError::ClientBodyTimeout),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        out.clear();
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            write_within(stream, &out, idle, address).await?;
        } else {
            write_within(stream, &data, idle, address).await?;
        }
    }
    if chunked {
        write_within(stream, b"0\r\n\r\n", idle, address).await?;
    }
    Ok(())
}

/// Writes `bytes` to a target that must take them within `idle`.
async fn write_within(
    stream: &mut TargetStream,
    bytes: &[u8],
    idle: Duration,
    address: SocketAddr,
) -> Result<(), UpstreamError> {
    stream
        .write_within(bytes, idle)
        .await
        .map_err(|source| UpstreamError::Exchange { address, source })
}

/// Reads the final response head (interim 1xx responses skipped): the response with its
/// framing in a placeholder body, and whether the connection can be reused after it.
async fn read_head(
    connection: &mut Buffered,
    head_request: bool,
    idle: Duration,
) -> Result<(http::Response<RawHead>, bool), RelayError> {
    loop {
        match parse_head(&connection.buf, head_request)? {
            Some((head_len, None)) => {
                let _ = connection.buf.split_to(head_len);
            }
            Some((head_len, Some(answer))) => {
                let _ = connection.buf.split_to(head_len);
                return Ok(answer);
            }
            None if connection.buf.len() >= MAX_HEAD => return Err(RelayError::Malformed),
            None => {
                if connection.read_more(idle).await? == 0 {
                    return Err(RelayError::Truncated);
                }
            }
        }
    }
}

/// The framing of a response, before [`RawBody`] takes over.
pub struct RawHead {
    framing: Framing,
}

type ParsedHead = (usize, Option<(http::Response<RawHead>, bool)>);

/// A complete head at the front of `buf`: its length, and the response (`None` for an
/// interim 1xx one).
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<ParsedHead>, RelayError> {
    let mut headers = uninit_headers();
    let mut response = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(RelayError::Malformed),
    };
    let (Some(status), Some(version)) = (response.code, response.version) else {
        return Err(RelayError::Malformed);
    };
    let headers: &[httparse::Header] = response.headers;
    if status < 200 {
        // 101 cannot happen (`Upgrade` is not forwarded); 100 and 103 are skipped.
        return if status == 101 {
            Err(RelayError::Malformed)
        } else {
            Ok(Some((head_len, None)))
        };
    }
    let scan = Scan::of(headers).map_err(|_| RelayError::Malformed)?;
    let framing = response_framing(head_request, status, &scan);
    let reusable = version == 1 && !scan.close && !matches!(framing, Framing::UntilClose);
    let chunked = matches!(framing, Framing::Chunked(_));
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in headers {
        // HTTP/2 frames the body itself: no transfer coding, and no length next to chunks.
        if !scan.passed_back(header.name)
            || header.name.eq_ignore_ascii_case("transfer-encoding")
            || (chunked && header.name.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Err(RelayError::Malformed);
        };
        map.append(name, value);
    }
    let mut answer = http::Response::new(RawHead { framing });
    *answer.status_mut() = http::StatusCode::from_u16(status).map_err(|_| RelayError::Malformed)?;
    *answer.headers_mut() = map;
    Ok(Some((head_len, Some((answer, reusable)))))
}

/// A target's response body read from a raw connection (de-chunked), for hyper to send on.
/// The connection goes back to the pool once the body was read to its end.
pub struct RawBody {
    target: Arc<TargetRuntime>,
    connection: Option<Buffered>,
    framing: Framing,
    reusable: bool,
    /// How long the target may send nothing; the timer runs while a read waits.
    idle: Duration,
    timer: IdleTimer,
}

impl RawBody {
    fn new(
        target: Arc<TargetRuntime>,
        connection: Buffered,
        framing: Framing,
        reusable: bool,
        idle: Duration,
    ) -> RawBody {
        let mut body = RawBody {
            target,
            connection: Some(connection),
            framing,
            reusable,
            idle,
            timer: IdleTimer::default(),
        };
        if body.framing.is_done() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(connection) = self.connection.take() {
            if self.reusable && connection.buf.is_empty() {
                check_in_raw(&self.target, connection, Instant::now());
            }
        }
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            let mut data = Vec::new();
            let done = match this.framing.take(&mut connection.buf, &mut data, true) {
                Ok(done) => done,
                Err(error) => return Poll::Ready(Some(Err(Box::new(error)))),
            };
            if done {
                this.finish();
                return Poll::Ready((!data.is_empty()).then(|| Ok(Frame::data(Bytes::from(data)))));
            }
            if !data.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(data)))));
            }
            connection.buf.reserve(READ_CHUNK);
            let read = match tokio_util::io::poll_read_buf(
                Pin::new(&mut connection.stream),
                cx,
                &mut connection.buf,
            ) {
                Poll::Ready(read) => {
                    this.timer.end_wait();
                    read
                }
                Poll::Pending => {
                    ready!(this.timer.poll_wait(this.idle, cx));
                    this.connection = None;
                    return Poll::Ready(Some(Err(Box::new(RelayError::Timeout))));
                }
            };
            match read {
                Ok(0) if matches!(this.framing, Framing::UntilClose) => {
                    this.connection = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(Box::new(RelayError::Truncated)))),
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(Box::new(RelayError::Read(error))))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.connection.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(remaining) if self.connection.is_some() => {
                SizeHint::with_exact(remaining)
            }
            _ if self.connection.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use model::elb::{RouteSnapshot, TargetGroupRoutes};

    use super::*;
    use crate::table::Registry;

    #[tokio::test]
    async fn pools_keep_the_newest_connections_up_to_their_cap() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let group: TargetGroupRoutes = serde_json::from_value(serde_json::json!({
            "arn": "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/pool/1",
            "name": "pool",
            "dimension": "targetgroup/pool/1",
            "protocol": "HTTP",
            "healthCheck": {
                "enabled": false, "protocol": "HTTP", "port": "traffic-port",
                "intervalSeconds": 30, "timeoutSeconds": 5,
                "healthyThresholdCount": 5, "unhealthyThresholdCount": 2
            },
            "deregistrationDelaySeconds": 300,
            "slowStartSeconds": 0,
            "algorithm": "round_robin",
            "targets": [{"id": "127.0.0.1", "port": address.port(), "address": address.to_string()}],
        }))
        .unwrap();
        let snapshot = RouteSnapshot {
            revision: 1,
            now_ms: 0,
            load_balancers: vec![],
            target_groups: vec![group],
        };
        let (table, _) = Registry::with_pool_slots(1).compile(&snapshot, Instant::now());
        let target = table.groups[0].targets[0].runtime.clone();

        let mut first = None;
        for _ in 0..MAX_IDLE + 10 {
            let connection = connect_raw(&target).await.unwrap();
            let port = connection.stream.tcp().local_addr().unwrap().port();
            first.get_or_insert(port);
            check_in_raw(&target, connection, Instant::now());
        }
        let pool = target.raw_idle[0].lock().unwrap();
        assert_eq!(pool.len(), MAX_IDLE, "capped");
        let kept: Vec<u16> = pool
            .iter()
            .map(|(c, _)| c.stream.tcp().local_addr().unwrap().port())
            .collect();
        assert!(!kept.contains(&first.unwrap()), "the oldest went first");
        drop(pool);
        // The newest is the next one out.
        let newest = check_out_raw(&target, Instant::now()).unwrap();
        assert_eq!(
            Some(&newest.stream.tcp().local_addr().unwrap().port()),
            kept.last()
        );
        accepting.abort();
    }
}
