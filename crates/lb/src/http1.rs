//! The ALB data path for HTTP/1.x clients, the common case: one task per client connection
//! parses each request head in place (`httparse`, headers borrowed from the read buffer),
//! evaluates the listener's rules, and forwards the request over a pooled keep-alive
//! connection to the chosen target, in the same task: no per-request allocation, channel or
//! task hand-off. HTTP/2 clients go through hyper instead ([`crate::http_proxy`]).
//!
//! What the target receives: the request line in origin form as HTTP/1.1, the client's
//! headers minus hop-by-hop ones (RFC 9110 §7.6.1), `Host` kept, `X-Forwarded-For` (appended
//! to), `X-Forwarded-Proto`, `X-Forwarded-Port` and `X-Amzn-Trace-Id` set. Bodies are
//! relayed as they arrive, framed as the sender framed them (see [`crate::framing`]); an
//! `Expect: 100-continue` is answered by the load balancer. What the client receives: the
//! target's status and headers minus hop-by-hop ones, with stickiness cookies added. An
//! upgrade request (WebSocket) keeps its `Connection: upgrade` and `Upgrade`; when the target
//! answers 101, the connection becomes a byte stream both ways, closed once nothing moves
//! either way for the idle timeout.
//!
//! ALB's own answers: 400 for a malformed request (then the connection closes), 408 when the
//! client stopped sending its body for the idle timeout, 464 when the rule forwards to an HTTP2
//! or GRPC group (those take HTTP/2 clients' requests only), 503 when no rule or no target
//! matches, 502 when the target refused, reset or closed the connection or sent a malformed
//! response, 504 when it did not answer within the idle timeout or could not be connected to
//! within the connect timeout (10 s, as ALB's). A target that stops reading a body and answers
//! early (a 413, say) has that answer relayed. A request on a pooled connection the target had
//! just closed is sent again on a new connection when nothing came back and the request was
//! idempotent and sent whole.
//!
//! A client connection idle longer than the load balancer's idle timeout is closed; at
//! shutdown, idle connections close and busy ones close after their response.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::framing::{relay, tunnel, Buffered, ChunkedDecoder, Framing, IdleTimer, RelayError};
use crate::http_proxy::{
    error_page, incompatible_protocol, parse_sticky_cookie, redirect_location, sticky_set_cookies,
    write_trace_value, AppCookiePlan, HttpShared, StickyCookies,
};
use crate::matching::RequestView;
use crate::metrics::HttpMetrics;
use crate::table::{
    host_with_port, valid_header_name, Action, Algorithm, LoadBalancerEntry, ResponseHeaders,
    RoutingTable, TargetRuntime, XffMode, DEFAULT_RESPONSE_HEADERS,
};
use crate::tls::ClientStream;
use crate::upstream;

/// Headers per message at most (more: 400 from a client, 502 from a target).
pub(crate) const MAX_HEADERS: usize = 128;
/// A request or response head larger than this is refused.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Headers that describe one hop's connection, never forwarded (besides those `Connection`
/// lists). `Transfer-Encoding` is not among them: bodies keep their framing.
pub(crate) const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];
/// Headers a `Connection` list cannot make hop-by-hop: dropping them while relaying the body
/// by them would let the target see a different message boundary (request smuggling).
const NEVER_HOP_BY_HOP: [&str; 3] = ["content-length", "transfer-encoding", "host"];
/// Set by the load balancer; the client's values are replaced (`X-Forwarded-For` is appended
/// to, `X-Amzn-Trace-Id` extended, separately).
const REPLACED: [&str; 4] = [
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-for",
    "x-amzn-trace-id",
];

/// Serves one HTTP/1.x client connection whose first bytes are already in `client.buf`.
pub async fn serve(
    client: Buffered<ClientStream>,
    remote: SocketAddr,
    local: SocketAddr,
    shared: Arc<HttpShared>,
    shutdown: CancellationToken,
) {
    let negotiated = client.stream.negotiated();
    let mut connection = Connection {
        client,
        local,
        client_ip: remote.ip(),
        client_ip_text: remote.ip().to_string(),
        remote,
        opened: Instant::now(),
        shared,
        shutdown: shutdown.clone(),
        request_out: Vec::with_capacity(1024),
        response_out: Vec::with_capacity(1024),
        timer: IdleTimer::default(),
        unread: false,
        negotiated,
    };
    if let Err(end) = connection.run(&shutdown).await {
        tracing::debug!(%remote, reason = end.0, "client connection closed");
    }
    let _ = connection.client.stream.shutdown().await;
    if connection.unread {
        linger(&mut connection.client.stream).await;
    }
}

/// How long a connection closed with request bytes unread goes on reading (and dropping)
/// what its client still sends.
const LINGER: Duration = Duration::from_secs(5);

/// A lingering close (RFC 9112 §9.6): closing a socket with unread bytes makes the kernel
/// reset the connection, and a client still sending its body then fails on its next write
/// without ever reading the answer that was sent. So after the answer and our FIN, what the
/// client still sends is read and dropped until it closes too, for at most [`LINGER`].
async fn linger(stream: &mut ClientStream) {
    use tokio::io::AsyncReadExt;
    let mut scratch = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(1..) = stream.read(&mut scratch).await {}
    })
    .await;
}

/// Room for a head's headers, left uninitialized: zeroing 128 of them (4 KiB) for each
/// request and response took about a tenth of the proxy's user-space time per request.
pub(crate) fn uninit_headers<'b>() -> [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Why a client connection ended (for the debug log).
struct End(&'static str);

struct Connection {
    client: Buffered<ClientStream>,
    local: SocketAddr,
    client_ip: IpAddr,
    client_ip_text: String,
    /// With `routing.http.xff_client_port.enabled`, `X-Forwarded-For` names the port too.
    remote: SocketAddr,
    /// For `client_keep_alive.seconds`.
    opened: Instant,
    shared: Arc<HttpShared>,
    /// This listener's (and the node's) shutdown, for upgraded connections.
    shutdown: CancellationToken,
    request_out: Vec<u8>,
    response_out: Vec<u8>,
    /// Bounds every wait on the client and its targets by the idle timeout.
    timer: IdleTimer,
    /// The client may have sent bytes that were not read: the current request's body, or
    /// whatever followed a malformed request. Closing then lingers (see [`linger`]).
    unread: bool,
    /// The TLS version and cipher suite negotiated (`ClientStream::negotiated`).
    negotiated: Option<(&'static str, &'static str)>,
}

/// What the load balancer does with one request, decided from its head alone.
enum Step<'t> {
    /// Answer with `response_out` (already written into it), then close or not.
    Answer {
        head_len: usize,
        close: bool,
    },
    Forward(Plan<'t>),
}

/// A request to forward: `request_out` holds the head for the target. (References into the
/// connection's routing table: no reference counting per request.)
struct Plan<'t> {
    head_len: usize,
    /// When the head was complete: where the target's response time starts (one clock read
    /// per request fewer than reading it again to send).
    received: Instant,
    target: &'t TargetRuntime,
    /// The group picks by least outstanding requests, so this one counts while it is.
    counts_outstanding: bool,
    load_balancer: &'t LoadBalancerEntry,
    pair: &'t HttpMetrics,
    body: Framing,
    expect_continue: bool,
    head_request: bool,
    keep_alive: bool,
    http10: bool,
    /// Safe to send again on a new connection when nothing came back.
    idempotent: bool,
    /// `Set-Cookie` lines for stickiness (empty without stickiness).
    cookies: String,
    /// `app_cookie` stickiness: its `Set-Cookie` goes out if the target sets the cookie.
    app_cookie: Option<AppCookiePlan<'t>>,
    /// The client asked to switch protocols (WebSocket): on a 101 the connection becomes a
    /// byte stream between client and target.
    upgrade: bool,
    /// The listener's response-header attributes.
    response_headers: &'t ResponseHeaders,
}

impl<'t> Plan<'t> {
    /// How the load balancer's own answer to this request goes out.
    fn reply(&self, close: bool) -> Reply<'t> {
        Reply {
            close,
            head_request: self.head_request,
            http10: self.http10,
            headers: self.response_headers,
        }
    }
}

/// What the target answered, as far as the client's side needs it.
struct Answered {
    head_len: usize,
    status: u16,
    body: Framing,
    /// De-chunk the body (an HTTP/1.0 client).
    decode: bool,
    close_client: bool,
    reusable: bool,
    /// A 101 to an upgrade request: bytes flow both ways from here on.
    switched: bool,
}

impl Connection {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), End> {
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut cancelled = WokenOnly::new(cancelled);
        // The routing table this connection uses, refreshed when a new one was swapped in.
        let mut generation = self.shared.routes.generation();
        let mut table = self.shared.routes.current();
        // How long the client may stay silent, looked up once per table.
        let mut idle = table.idle_timeout(&self.local);
        loop {
            let step = loop {
                // (Checked with the head complete: a request uses the newest table.)
                if self.shared.routes.generation() != generation {
                    generation = self.shared.routes.generation();
                    table = self.shared.routes.current();
                    idle = table.idle_timeout(&self.local);
                }
                match self.begin(&table) {
                    Ok(Some(step)) => break step,
                    Ok(None) => {}
                    Err(status) => {
                        self.unread = true;
                        answer_error(&mut self.response_out, None, status, Reply::CLOSING);
                        let _ = self.client.stream.send(&self.response_out).await;
                        return Err(End("malformed request"));
                    }
                }
                if self.client.buf.len() >= MAX_HEAD {
                    self.unread = true;
                    answer_error(
                        &mut self.response_out,
                        None,
                        StatusCode::BAD_REQUEST,
                        Reply::CLOSING,
                    );
                    let _ = self.client.stream.send(&self.response_out).await;
                    return Err(End("request head too large"));
                }
                let read = tokio::select! {
                    biased;
                    read = self.client.read_within(&mut self.timer, idle) => read,
                    _ = &mut cancelled => return Ok(()),
                };
                match read {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(RelayError::Timeout) => return Err(End("idle timeout")),
                    Err(_) => return Err(End("read failed")),
                }
            };
            let keep = match step {
                Step::Answer { head_len, close } => {
                    self.client.buf.advance(head_len);
                    self.client
                        .stream
                        .send(&self.response_out)
                        .await
                        .map_err(|_| End("write failed"))?;
                    !close
                }
                Step::Forward(plan) => self.forward(plan).await?,
            };
            // A shutdown (of the node or this listener) comes with a new table generation:
            // only then is the token's lock taken.
            if !keep || (self.shared.routes.generation() != generation && shutdown.is_cancelled()) {
                return Ok(());
            }
        }
    }

    /// Parses the request head at the front of the client's buffer and decides what to do:
    /// `None` while the head is incomplete; `Err` for a malformed request.
    fn begin<'t>(&mut self, table: &'t RoutingTable) -> Result<Option<Step<'t>>, StatusCode> {
        if self.client.buf.is_empty() {
            return Ok(None);
        }
        let mut headers = uninit_headers();
        let mut request = httparse::Request::new(&mut []);
        let head_len = match request.parse_with_uninit_headers(&self.client.buf, &mut headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        };
        let (Some(method), Some(target), Some(version)) =
            (request.method, request.path, request.version)
        else {
            return Err(StatusCode::BAD_REQUEST);
        };
        let headers: &[httparse::Header] = request.headers;
        let scan = Scan::of(headers)?;
        let (authority, path_and_query) = split_target(target)?;
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        // `http://host?q` has an empty path: it is `/`.
        let path = if path.is_empty() { "/" } else { path };
        // An absolute-form target's authority is the host, whatever `Host` says (RFC 9112
        // §3.2.2); HTTP/1.1 requires a `Host`, HTTP/1.0 gets the listener's address.
        if version == 1 && scan.host.is_none() && authority.is_none() {
            return Err(StatusCode::BAD_REQUEST);
        }
        let host = authority.or(scan.host);
        let view = RawRequest {
            method,
            path,
            query,
            host,
            headers,
        };
        let http10 = version == 0;
        let keep_alive = if http10 { scan.keep_alive } else { !scan.close };
        let body = match (scan.chunked, scan.content_length) {
            (true, _) => Framing::Chunked(ChunkedDecoder::default()),
            (false, Some(length)) if length > 0 => Framing::Length(length),
            _ => Framing::Empty,
        };
        let has_body = !matches!(body, Framing::Empty);
        // Unread until forwarding reads it all: an answer made without it closes lingering.
        self.unread = has_body;
        let head_request = method == "HEAD";

        let Some(listener) = table.listeners.get(&self.local) else {
            answer_error(
                &mut self.response_out,
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                Reply {
                    close: true,
                    head_request,
                    http10,
                    headers: &DEFAULT_RESPONSE_HEADERS,
                },
            );
            return Ok(Some(Step::Answer {
                head_len,
                close: true,
            }));
        };
        let lb = &listener.load_balancer;
        let metrics = &lb.metrics.http;
        metrics.request();
        // A connection open longer than `client_keep_alive.seconds` closes after this answer.
        let received = Instant::now();
        let keep_alive =
            keep_alive && received.duration_since(self.opened) < lb.http.client_keep_alive;
        // The load balancer answers without reading the request's body: the connection then
        // closes, since what follows is not a request.
        let close = !keep_alive || has_body;
        let reply = Reply {
            close,
            head_request,
            http10,
            headers: &listener.response_headers,
        };
        let client = self.client_ip;
        let Some(rule) = listener
            .rules
            .iter()
            .find(|rule| rule.conditions.iter().all(|c| c.matches(&view, client)))
        else {
            answer_error(
                &mut self.response_out,
                Some(metrics),
                StatusCode::SERVICE_UNAVAILABLE,
                reply,
            );
            return Ok(Some(Step::Answer { head_len, close }));
        };
        match &rule.action {
            Action::FixedResponse {
                status,
                content_type,
                body,
            } => {
                metrics.fixed_response();
                let content_type = content_type.as_ref().map(|c| c.as_bytes());
                write_answer(
                    &mut self.response_out,
                    *status,
                    &[],
                    content_type,
                    body,
                    reply,
                );
                Ok(Some(Step::Answer { head_len, close }))
            }
            Action::Redirect {
                protocol,
                host,
                port,
                path,
                query,
                status,
            } => {
                metrics.redirect();
                let location = redirect_location(
                    &view,
                    listener.port,
                    self.client.stream.scheme(),
                    [protocol, host, port, path, query],
                );
                if location.bytes().any(|b| b < 0x20 || b == 0x7f) {
                    answer_error(
                        &mut self.response_out,
                        Some(metrics),
                        StatusCode::INTERNAL_SERVER_ERROR,
                        reply,
                    );
                } else {
                    // ALB's redirects carry its HTML page for the status, as its errors do.
                    let headers = [("Location", location.as_bytes())];
                    let page = error_page(*status);
                    write_answer(
                        &mut self.response_out,
                        *status,
                        &headers,
                        Some(b"text/html"),
                        page.as_bytes(),
                        reply,
                    );
                }
                Ok(Some(Step::Answer { head_len, close }))
            }
            Action::Forward(forward) => {
                let Some((weighted, chosen)) = forward.route(&scan.sticky) else {
                    answer_error(
                        &mut self.response_out,
                        Some(metrics),
                        StatusCode::SERVICE_UNAVAILABLE,
                        reply,
                    );
                    return Ok(Some(Step::Answer { head_len, close }));
                };
                if weighted.group.version.is_h2() {
                    // ALB sends HTTP2 and GRPC groups only HTTP/2 clients' requests.
                    answer_error(
                        &mut self.response_out,
                        Some(metrics),
                        incompatible_protocol(),
                        reply,
                    );
                    return Ok(Some(Step::Answer { head_len, close }));
                }
                let mut cookies = String::new();
                for cookie in sticky_set_cookies(forward, &weighted.group, &chosen.runtime) {
                    let _ = write!(cookies, "Set-Cookie: {cookie}\r\n");
                }
                let app_cookie =
                    AppCookiePlan::new(&weighted.group, &chosen.runtime, scan.sticky.app);
                let out = &mut self.request_out;
                out.clear();
                out.extend_from_slice(method.as_bytes());
                out.push(b' ');
                if path_and_query.starts_with('?') {
                    out.push(b'/');
                }
                out.extend_from_slice(path_and_query.as_bytes());
                out.extend_from_slice(b" HTTP/1.1\r\n");
                let settings = &lb.http;
                // The TLS headers this request gets (the client's own are dropped then).
                let tls_headers = self.negotiated.filter(|_| settings.tls_headers);
                for header in headers {
                    if !scan.forwarded(header.name)
                        || header.name.eq_ignore_ascii_case("host")
                        || (settings.drop_invalid_header_fields
                            && !valid_header_name(header.name.as_bytes()))
                        || (tls_headers.is_some()
                            && listener
                                .tls_header_names
                                .iter()
                                .any(|(name, _)| name.eq_ignore_ascii_case(header.name)))
                    {
                        continue;
                    }
                    push_header(out, header.name.as_bytes(), header.value);
                }
                match host {
                    Some(host) => match host_with_port(host, listener.port, settings) {
                        Some(with_port) => push_header(out, b"Host", with_port.as_bytes()),
                        None => push_header(out, b"Host", host.as_bytes()),
                    },
                    None => {
                        let _ = write!(ByteWriter(out), "Host: {}\r\n", self.local);
                    }
                }
                let forwarded_for = || {
                    headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
                };
                match settings.xff {
                    XffMode::Append => {
                        out.extend_from_slice(b"X-Forwarded-For: ");
                        for header in forwarded_for() {
                            out.extend_from_slice(header.value);
                            out.extend_from_slice(b", ");
                        }
                        if settings.xff_client_port {
                            let _ = write!(ByteWriter(out), "{}", self.remote);
                        } else {
                            out.extend_from_slice(self.client_ip_text.as_bytes());
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                    XffMode::Preserve => {
                        for header in forwarded_for() {
                            push_header(out, b"X-Forwarded-For", header.value);
                        }
                    }
                    XffMode::Remove => {}
                }
                out.extend_from_slice(b"X-Forwarded-Proto: ");
                out.extend_from_slice(self.client.stream.scheme().as_bytes());
                out.extend_from_slice(b"\r\nX-Forwarded-Port: ");
                out.extend_from_slice(listener.port_header.as_bytes());
                out.extend_from_slice(b"\r\nX-Amzn-Trace-Id: ");
                write_trace_value(scan.trace, out);
                out.extend_from_slice(b"\r\n");
                if let Some((version, cipher_suite)) = tls_headers {
                    for ((name, _), value) in listener
                        .tls_header_names
                        .iter()
                        .zip([version, cipher_suite])
                    {
                        push_header(out, name.as_bytes(), value.as_bytes());
                    }
                }
                // WebSocket only, as ALB (an `h2c` upgrade could smuggle requests past rules).
                let upgrade = match scan.upgrade.filter(|protocol| {
                    scan.connection_upgrade
                        && !http10
                        && protocol.eq_ignore_ascii_case(b"websocket")
                }) {
                    Some(protocol) => {
                        out.extend_from_slice(b"Connection: upgrade\r\n");
                        push_header(out, b"Upgrade", protocol);
                        true
                    }
                    None => false,
                };
                out.extend_from_slice(b"\r\n");
                Ok(Some(Step::Forward(Plan {
                    head_len,
                    received,
                    target: &chosen.runtime,
                    counts_outstanding: weighted.group.algorithm
                        == Algorithm::LeastOutstandingRequests,
                    load_balancer: lb,
                    pair: &weighted.metrics,
                    body,
                    // HTTP/1.0 clients do not wait for it (RFC 9110 §10.1.1).
                    expect_continue: scan.expect_continue && has_body && !http10,
                    head_request,
                    keep_alive,
                    http10,
                    idempotent: matches!(
                        method,
                        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
                    ),
                    cookies,
                    app_cookie,
                    upgrade,
                    response_headers: &listener.response_headers,
                })))
            }
        }
    }

    /// Forwards one request and relays the answer. Returns whether the client connection
    /// stays open for another request.
    async fn forward(&mut self, mut plan: Plan<'_>) -> Result<bool, End> {
        self.client.buf.advance(plan.head_len);
        let target = plan.target;
        let in_flight = Outstanding::start(target, plan.counts_outstanding);
        let idle = plan.load_balancer.idle_timeout;
        let metrics = &plan.load_balancer.metrics.http;
        // The body bytes already here go out with the head; a request that is then complete
        // can be sent again should a pooled connection turn out to be closed.
        let Ok(whole) = plan
            .body
            .take(&mut self.client.buf, &mut self.request_out, false)
        else {
            answer_error(
                &mut self.response_out,
                Some(metrics),
                StatusCode::BAD_REQUEST,
                plan.reply(true),
            );
            let _ = self.client.stream.send(&self.response_out).await;
            return Err(End("malformed request body"));
        };
        if whole {
            self.unread = false;
        }
        let mut retry = whole && plan.idempotent;
        let mut body_cut = false;
        let sent = plan.received;
        let (mut upstream, answered) = loop {
            let (mut upstream, reused) = match upstream::check_out_raw(target, sent) {
                Some(upstream) => (upstream, true),
                None => match upstream::connect_raw(target).await {
                    Ok(upstream) => (upstream, false),
                    Err(error) => {
                        tracing::debug!(target = %target.address, %error, "target connection failed");
                        let tls = error.is_handshake_error();
                        metrics.target_connection_error(tls);
                        plan.pair.target_connection_error(tls);
                        let status = if error.is_timeout() {
                            StatusCode::GATEWAY_TIMEOUT
                        } else {
                            StatusCode::BAD_GATEWAY
                        };
                        return self.fail(metrics, status, &plan).await;
                    }
                },
            };
            // The client may send its body once a target is there to take it.
            if std::mem::take(&mut plan.expect_continue) {
                self.client
                    .stream
                    .send(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .map_err(|_| End("write failed"))?;
            }
            let written = if whole {
                upstream.stream.send(&self.request_out).await.is_ok()
            } else {
                let relayed = relay(
                    &mut self.client,
                    &mut upstream.stream,
                    &mut self.request_out,
                    &mut plan.body,
                    false,
                    (&mut self.timer, idle),
                    target,
                )
                .await;
                match relayed {
                    Ok(()) => {
                        self.unread = false;
                        true
                    }
                    // The client went away mid-body.
                    Err(RelayError::Read(_) | RelayError::Truncated) => {
                        return Err(End("client closed during its request body"));
                    }
                    Err(error @ (RelayError::Malformed | RelayError::Timeout)) => {
                        // ALB's answers: 400 for a broken body, 408 for a client that stopped
                        // sending it for the idle timeout.
                        let status = match error {
                            RelayError::Timeout => StatusCode::REQUEST_TIMEOUT,
                            _ => StatusCode::BAD_REQUEST,
                        };
                        answer_error(
                            &mut self.response_out,
                            Some(metrics),
                            status,
                            plan.reply(true),
                        );
                        let _ = self.client.stream.send(&self.response_out).await;
                        return Err(End("request body not received"));
                    }
                    // The target stopped reading the body: it may have answered early (413,
                    // say). That answer is relayed, and the client's connection then closes
                    // (the rest of its body is not read).
                    Err(RelayError::Write(_)) => {
                        body_cut = true;
                        plan.keep_alive = false;
                        true
                    }
                    Err(RelayError::Drained) => false,
                }
            };
            let answered = if written {
                self.await_answer(&mut upstream, &plan, idle).await
            } else {
                Err(RelayError::Truncated)
            };
            match answered {
                // The draining deadline passed while the target was answering.
                Ok(_) if target.is_closed() => {
                    return self.fail(metrics, StatusCode::BAD_GATEWAY, &plan).await;
                }
                Ok(answered) => break (upstream, answered),
                Err(RelayError::Timeout) => {
                    return self.fail(metrics, StatusCode::GATEWAY_TIMEOUT, &plan).await;
                }
                Err(_) if reused && retry && upstream.buf.is_empty() => {
                    // The pooled connection was closing: once more on a new one.
                    retry = false;
                    continue;
                }
                Err(error) => {
                    tracing::debug!(target = %target.address, %error, "target request failed");
                    return self.fail(metrics, StatusCode::BAD_GATEWAY, &plan).await;
                }
            }
        };
        let answered_at = Instant::now();
        let elapsed = answered_at.duration_since(sent);
        metrics.target_response(answered.status, elapsed);
        plan.pair.target_response(answered.status, elapsed);

        upstream.buf.advance(answered.head_len);
        if answered.switched {
            return self.tunnel(upstream, target, idle).await;
        }
        let mut body = answered.body;
        let relayed = relay(
            &mut upstream,
            &mut self.client.stream,
            &mut self.response_out,
            &mut body,
            answered.decode,
            (&mut self.timer, idle),
            target,
        )
        .await;
        drop(in_flight);
        match relayed {
            Ok(()) => {
                if answered.reusable && !body_cut && upstream.buf.is_empty() {
                    upstream::check_in_raw(target, upstream, answered_at);
                }
                Ok(!answered.close_client)
            }
            // The client has part of a response: only closing tells it so.
            Err(RelayError::Write(_)) => Err(End("client went away")),
            Err(error) => {
                tracing::debug!(target = %target.address, %error, "target response cut");
                Err(End("target response cut"))
            }
        }
    }

    /// After a 101: the client and the target exchange bytes until both close, nothing moves
    /// either way for the idle timeout, the target's draining deadline passes, or the listener
    /// or node stops. Whatever either side sent already goes first.
    async fn tunnel(
        &mut self,
        mut upstream: Buffered,
        target: &TargetRuntime,
        idle: Duration,
    ) -> Result<bool, End> {
        let mut head = std::mem::take(&mut self.response_out);
        head.extend_from_slice(&upstream.buf);
        upstream.buf.clear();
        let written = self.client.stream.send(&head).await;
        self.response_out = head;
        written.map_err(|_| End("write failed"))?;
        if !self.client.buf.is_empty() {
            upstream
                .stream
                .send(&self.client.buf)
                .await
                .map_err(|_| End("upgraded target went away"))?;
            self.client.buf.clear();
        }
        tokio::select! {
            _ = tunnel(&mut self.client.stream, &mut upstream.stream, idle, &|_| {}) => {}
            _ = target.closed.cancelled() => {}
            _ = self.shutdown.cancelled() => {}
        }
        Err(End("upgraded connection ended"))
    }

    /// Reads the target's response head (skipping interim 1xx responses) and writes the
    /// client's into `response_out`.
    async fn await_answer(
        &mut self,
        upstream: &mut Buffered,
        plan: &Plan<'_>,
        idle: Duration,
    ) -> Result<Answered, RelayError> {
        loop {
            match self.answer_head(&upstream.buf, plan) {
                Ok(Some(answered)) if answered.status < 200 && !answered.switched => {
                    upstream.buf.advance(answered.head_len);
                    continue;
                }
                Ok(Some(answered)) => return Ok(answered),
                Ok(None) if upstream.buf.len() < MAX_HEAD => {}
                _ => return Err(RelayError::Malformed),
            }
            if upstream.read_within(&mut self.timer, idle).await? == 0 {
                return Err(RelayError::Truncated);
            }
        }
    }

    fn answer_head(&mut self, buf: &[u8], plan: &Plan<'_>) -> Result<Option<Answered>, ()> {
        let mut headers = uninit_headers();
        let mut response = httparse::Response::new(&mut []);
        let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(()),
        };
        let (Some(status), Some(version)) = (response.code, response.version) else {
            return Err(());
        };
        let headers: &[httparse::Header] = response.headers;
        let scan = Scan::of(headers).map_err(|_| ())?;
        if status == 101 {
            // Only an upgrade request may be answered so; the protocol goes back with it.
            let Some(protocol) = scan.upgrade.filter(|_| plan.upgrade) else {
                return Err(());
            };
            let out = &mut self.response_out;
            out.clear();
            let reason = response.reason.unwrap_or("");
            let _ = write!(ByteWriter(out), "HTTP/1.1 101 {reason}\r\n");
            for header in headers {
                if scan.passed_back(header.name) {
                    push_header(out, header.name.as_bytes(), header.value);
                }
            }
            out.extend_from_slice(b"Connection: upgrade\r\n");
            push_header(out, b"Upgrade", protocol);
            out.extend_from_slice(b"\r\n");
            return Ok(Some(Answered {
                head_len,
                status,
                body: Framing::Empty,
                decode: false,
                close_client: true,
                reusable: false,
                switched: true,
            }));
        }
        if status < 200 {
            // 100 and 103 are skipped.
            return Ok(Some(Answered {
                head_len,
                status,
                body: Framing::Empty,
                decode: false,
                close_client: false,
                reusable: false,
                switched: false,
            }));
        }
        let body = response_framing(plan.head_request, status, &scan);
        let decode = plan.http10 && matches!(body, Framing::Chunked(_));
        let close_client = !plan.keep_alive || matches!(body, Framing::UntilClose) || decode;
        let reusable = version == 1 && !scan.close && !matches!(body, Framing::UntilClose);

        let out = &mut self.response_out;
        out.clear();
        let reason = response.reason.unwrap_or("");
        let _ = write!(ByteWriter(out), "HTTP/1.1 {status} {reason}\r\n");
        let mut app_cookie_set = false;
        let set = plan.response_headers;
        for header in headers {
            if !scan.passed_back(header.name)
                || (decode && header.name.eq_ignore_ascii_case("transfer-encoding"))
                || (scan.chunked && header.name.eq_ignore_ascii_case("content-length"))
                || set.replaces(header.name)
            {
                continue;
            }
            if let Some(app) = &plan.app_cookie {
                app_cookie_set |=
                    header.name.eq_ignore_ascii_case("set-cookie") && app.is_set_by(header.value);
            }
            push_header(out, header.name.as_bytes(), header.value);
        }
        for (name, _, value) in &set.set {
            push_header(out, name.as_bytes(), value.as_bytes());
        }
        out.extend_from_slice(plan.cookies.as_bytes());
        if let Some(app) = plan.app_cookie.as_ref().filter(|_| app_cookie_set) {
            push_header(out, b"Set-Cookie", app.set_cookie.as_bytes());
        }
        if close_client {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if plan.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(Some(Answered {
            head_len,
            status,
            body,
            decode,
            close_client,
            reusable,
            switched: false,
        }))
    }

    /// Answers a forward that failed before a response came back; the connection stays
    /// open when the request's body was read whole.
    async fn fail(
        &mut self,
        metrics: &HttpMetrics,
        status: StatusCode,
        plan: &Plan<'_>,
    ) -> Result<bool, End> {
        let close = !plan.keep_alive || !plan.body.is_done();
        answer_error(
            &mut self.response_out,
            Some(metrics),
            status,
            plan.reply(close),
        );
        self.client
            .stream
            .send(&self.response_out)
            .await
            .map_err(|_| End("write failed"))?;
        Ok(!close)
    }
}

/// How an answer the load balancer makes itself goes out.
#[derive(Debug, Clone, Copy)]
struct Reply<'l> {
    /// `Connection: close`, and the connection closes after it.
    close: bool,
    /// No body (the request was a HEAD).
    head_request: bool,
    /// An HTTP/1.0 client kept alive is told so (`Connection: keep-alive`).
    http10: bool,
    /// The listener's response-header attributes (AWS's defaults before one is known).
    headers: &'l ResponseHeaders,
}

impl Reply<'static> {
    /// Before a request could be read: close, and nothing more is known.
    const CLOSING: Reply<'static> = Reply {
        close: true,
        head_request: false,
        http10: false,
        headers: &DEFAULT_RESPONSE_HEADERS,
    };
}

/// Writes one of ALB's error pages into `out` (and counts it).
fn answer_error(
    out: &mut Vec<u8>,
    metrics: Option<&HttpMetrics>,
    status: StatusCode,
    reply: Reply,
) {
    if let Some(metrics) = metrics {
        metrics.elb_error(status.as_u16());
    }
    let page = error_page(status);
    write_answer(out, status, &[], Some(b"text/html"), page.as_bytes(), reply);
}

/// A future polled again only once it woke its task (or the task's waker changed). A
/// connection waiting for its client's next request also waits for the shutdown token, and
/// polling the token's `cancelled()` takes two mutexes (the token's and its `Notify`'s):
/// twice per request, for a wake-up that comes once in the connection's life.
struct WokenOnly<F> {
    future: F,
    flag: Arc<WakeFlag>,
    /// The task's waker the flag was last given (a local copy: comparing it costs no atomic).
    task: Option<std::task::Waker>,
}

/// Set when the wrapped future's waker is woken, which then wakes the task.
#[derive(Default)]
struct WakeFlag {
    woken: std::sync::atomic::AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F> WokenOnly<F> {
    fn new(future: F) -> WokenOnly<F> {
        WokenOnly {
            future,
            flag: Arc::default(),
            task: None,
        }
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = &mut *self;
        let first = this.task.is_none();
        if !this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            this.flag.task.register(cx.waker());
            this.task = Some(cx.waker().clone());
        }
        // A load, not a swap: most polls find the flag unset, and need no locked instruction.
        if !first && !this.flag.woken.load(Ordering::Acquire) {
            return std::task::Poll::Pending;
        }
        // (Cleared before polling: a wake-up during the poll is seen next time.)
        this.flag.woken.store(false, Ordering::Relaxed);
        let waker = std::task::Waker::from(this.flag.clone());
        std::pin::Pin::new(&mut this.future).poll(&mut std::task::Context::from_waker(&waker))
    }
}

/// Counts a request outstanding on its target while it is being forwarded, for groups that
/// pick by least outstanding requests (only they read the count, and it is a cache line
/// every worker writes: two contended atomic operations per request otherwise).
struct Outstanding<'t>(Option<&'t TargetRuntime>);

impl<'t> Outstanding<'t> {
    fn start(target: &'t TargetRuntime, counted: bool) -> Self {
        if !counted {
            return Outstanding(None);
        }
        target.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(Some(target))
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.0 {
            target.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How a target's response body is delimited (RFC 9112 §6.3).
pub(crate) fn response_framing(head_request: bool, status: u16, scan: &Scan<'_>) -> Framing {
    if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else if scan.chunked {
        Framing::Chunked(ChunkedDecoder::default())
    } else if let Some(length) = scan.content_length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    }
}

/// A whole response the load balancer makes itself.
fn write_answer(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &[(&str, &[u8])],
    content_type: Option<&[u8]>,
    body: &[u8],
    reply: Reply,
) {
    out.clear();
    let reason = status.canonical_reason().unwrap_or("");
    let _ = write!(
        ByteWriter(out),
        "HTTP/1.1 {} {reason}\r\nDate: {}\r\n",
        status.as_u16(),
        httpdate::fmt_http_date(std::time::SystemTime::now())
    );
    // ALB's own answers name it, unless `routing.http.response.server.enabled` is off.
    if reply.headers.server {
        out.extend_from_slice(b"Server: awselb/2.0\r\n");
    }
    for (name, value) in headers {
        push_header(out, name.as_bytes(), value);
    }
    for (name, _, value) in &reply.headers.set {
        push_header(out, name.as_bytes(), value.as_bytes());
    }
    if let Some(content_type) = content_type {
        push_header(out, b"Content-Type", content_type);
    }
    let _ = write!(ByteWriter(out), "Content-Length: {}\r\n", body.len());
    if reply.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if reply.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !reply.head_request {
        out.extend_from_slice(body);
    }
}

pub(crate) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `fmt::Write` into a byte buffer.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The request target as (authority of an absolute-form target, path and query).
fn split_target(target: &str) -> Result<(Option<&str>, &str), StatusCode> {
    if target.starts_with('/') || target == "*" {
        return Ok((None, target));
    }
    let scheme_end = target.find("://").ok_or(StatusCode::BAD_REQUEST)?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(StatusCode::BAD_REQUEST);
    }
    let rest = &target[scheme_end + 3..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok((Some(authority), if path.is_empty() { "/" } else { path }))
}

/// What one pass over a message's headers finds.
#[derive(Default)]
pub(crate) struct Scan<'b> {
    host: Option<&'b str>,
    content_length: Option<u64>,
    chunked: bool,
    pub close: bool,
    keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header: the protocol asked for.
    connection_upgrade: bool,
    upgrade: Option<&'b [u8]>,
    expect_continue: bool,
    trace: Option<&'b [u8]>,
    sticky: StickyCookies<'b>,
    /// Further headers `Connection` names as hop-by-hop.
    listed: [&'b str; 8],
    listed_count: usize,
}

impl<'b> Scan<'b> {
    pub(crate) fn of(headers: &[httparse::Header<'b>]) -> Result<Scan<'b>, StatusCode> {
        let mut scan = Scan::default();
        let bad = StatusCode::BAD_REQUEST;
        for header in headers {
            let name = header.name;
            let value = header.value;
            if name.eq_ignore_ascii_case("content-length") {
                // Digits only (`u64::from_str` would take `+5`, which a target may not).
                let length = std::str::from_utf8(value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(bad)?;
                if scan.content_length.is_some_and(|seen| seen != length) {
                    return Err(bad);
                }
                scan.content_length = Some(length);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Only `chunked`, last, is a framing this proxy relays.
                let value = std::str::from_utf8(value).map_err(|_| bad)?;
                let last = value.rsplit(',').next().unwrap_or("").trim();
                if !last.eq_ignore_ascii_case("chunked") {
                    return Err(StatusCode::NOT_IMPLEMENTED);
                }
                scan.chunked = true;
            } else if name.eq_ignore_ascii_case("host") {
                // Two could route by one and be served by the other (RFC 9112 §3.2).
                if scan.host.is_some() {
                    return Err(bad);
                }
                scan.host = Some(std::str::from_utf8(value).map_err(|_| bad)?.trim());
            } else if name.eq_ignore_ascii_case("connection") {
                for token in std::str::from_utf8(value).unwrap_or("").split(',') {
                    let token = token.trim();
                    if token.eq_ignore_ascii_case("close") {
                        scan.close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        scan.keep_alive = true;
                    } else if token.eq_ignore_ascii_case("upgrade") {
                        scan.connection_upgrade = true;
                    } else if !token.is_empty()
                        && !NEVER_HOP_BY_HOP
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(token))
                        && scan.listed_count < scan.listed.len()
                    {
                        scan.listed[scan.listed_count] = token;
                        scan.listed_count += 1;
                    }
                }
            } else if name.eq_ignore_ascii_case("upgrade") {
                scan.upgrade = Some(value);
            } else if name.eq_ignore_ascii_case("expect") {
                scan.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
            } else if name.eq_ignore_ascii_case("x-amzn-trace-id") {
                scan.trace = Some(value);
            } else if name.eq_ignore_ascii_case("cookie") {
                if let Ok(value) = std::str::from_utf8(value) {
                    parse_sticky_cookie(value, &mut scan.sticky);
                }
            }
        }
        if scan.chunked && scan.content_length.is_some() {
            // Both: a request smuggling attempt or a broken sender (RFC 9112 §6.1).
            return Err(bad);
        }
        Ok(scan)
    }

    /// Whether a request header with this name is passed on to the target.
    fn forwarded(&self, name: &str) -> bool {
        let is = |n: &&str| n.eq_ignore_ascii_case(name);
        self.passed_back(name)
            && !(REPLACED.iter().any(is)
                || (self.expect_continue && name.eq_ignore_ascii_case("expect")))
    }

    /// Whether a response header with this name is passed on to the client (a target's own
    /// `X-Forwarded-*` or `X-Amzn-Trace-Id` are, as ALB does).
    pub(crate) fn passed_back(&self, name: &str) -> bool {
        let is = |n: &&str| n.eq_ignore_ascii_case(name);
        !(HOP_BY_HOP.iter().any(is) || self.listed[..self.listed_count].iter().any(is))
    }
}

/// The raw path's request, for rule conditions.
struct RawRequest<'b> {
    method: &'b str,
    path: &'b str,
    query: Option<&'b str>,
    host: Option<&'b str>,
    headers: &'b [httparse::Header<'b>],
}

impl RequestView for RawRequest<'_> {
    fn method(&self) -> &str {
        self.method
    }

    fn path(&self) -> &str {
        self.path
    }

    fn query(&self) -> Option<&str> {
        self.query
    }

    fn host(&self) -> Option<&str> {
        self.host
    }

    fn any_header_value(&self, name: &str, matches: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| matches(h.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn woken_only_futures_finish_when_what_they_wait_for_happens() {
        let token = CancellationToken::new();
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut waiting = WokenOnly::new(cancelled);
        // Polled many times while nothing happens (as a connection's select does)...
        for _ in 0..3 {
            let polled = futures_util::poll!(&mut waiting);
            assert!(polled.is_pending());
        }
        // ...it finishes once the token is cancelled, from another task.
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.cancel();
        });
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken when cancelled");
    }

    #[test]
    fn targets_split_into_authority_and_path() {
        assert_eq!(split_target("/a?b"), Ok((None, "/a?b")));
        assert_eq!(
            split_target("http://example.com:8080/x?y"),
            Ok((Some("example.com:8080"), "/x?y"))
        );
        assert_eq!(
            split_target("http://example.com?q"),
            Ok((Some("example.com"), "?q"))
        );
        assert_eq!(
            split_target("HTTP://example.com"),
            Ok((Some("example.com"), "/"))
        );
        assert!(split_target("example.com:443").is_err());
        assert!(split_target("ftp://x/").is_err());
    }

    #[test]
    fn scans_refuse_conflicting_framing() {
        let h = |name: &'static str, value: &'static [u8]| httparse::Header { name, value };
        assert!(Scan::of(&[h("Content-Length", b"3"), h("content-length", b"4")]).is_err());
        assert!(Scan::of(&[
            h("Content-Length", b"3"),
            h("Transfer-Encoding", b"chunked")
        ])
        .is_err());
        assert_eq!(
            Scan::of(&[h("Transfer-Encoding", b"gzip")]).err(),
            Some(StatusCode::NOT_IMPLEMENTED)
        );
        let scan = Scan::of(&[
            h("Connection", b"close, X-Private"),
            h("X-Private", b"1"),
            h("Host", b"a"),
        ])
        .unwrap();
        assert!(scan.close);
        assert!(!scan.forwarded("x-private"));
        assert!(!scan.forwarded("Keep-Alive"));
        assert!(!scan.forwarded("X-Forwarded-For"));
        assert!(scan.forwarded("host"));
        assert!(scan.forwarded("transfer-encoding"));
    }
}
