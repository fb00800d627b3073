//! The ALB data path's entry: a client connection's first bytes tell HTTP/2 with prior
//! knowledge (its connection preface) from HTTP/1.x, which [`crate::http1`] serves. HTTP/2
//! connections are served by hyper here: rules evaluated in order, then a fixed response, a
//! redirect, or a forward to a target over pooled keep-alive HTTP/1.1 connections
//! ([`crate::upstream::exchange`]). The pieces
//! both paths share (error pages, stickiness cookies, trace ids, redirect locations) live here.
//!
//! The HTTP/2 path takes the routing table as one `Arc` per request, holds no lock across an
//! await, and streams bodies both ways. Errors the load balancer answers itself are ALB's:
//! 503 when a group has no target, 502 when the target refused, reset or closed the
//! connection, 504 when it did not answer within the load balancer's idle timeout.
//!
//! Stickiness cookies: `AWSALBTG` (target group stickiness, the group's id) and `AWSALB`
//! (`lb_cookie` target stickiness, an opaque hash of the target), both with `Max-Age` for the
//! configured duration. With `app_cookie` stickiness, a response in which the target sets the
//! application's cookie also gets `AWSALBAPP-0`, valid for 7 days as AWS's: it names the
//! target and when the cookie was set, and a request carrying it sticks to that target while
//! the group's duration has not run out since. One `AWSALBAPP-0` holds an entry per target
//! group (up to [`APP_COOKIE_ENTRIES`]), so a client keeps its target in each of the groups
//! a listener's rules forward to.
//!
//! A draining target's in-flight requests finish; once its deadline passes, response bodies
//! still streaming from it are cut at the next frame (a target sending nothing at all is cut
//! at the idle timeout), and responses still awaited fail at the idle timeout at the latest
//! (the request path polls no cancellation token, which would cost a lock per request).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;

use crate::framing::{Buffered, RelayError};
use crate::matching::{strip_port, RequestView};
use crate::table::{
    host_with_port, valid_header_name, Action, Forward, GroupEntry, ListenerTable, ProtocolVersion,
    Routes, TargetRuntime, TargetStickiness, XffMode, DEFAULT_RESPONSE_HEADERS,
};
use crate::tls::ClientStream;
use crate::upstream::{H2Body, RawBody};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
pub(crate) const TG_COOKIE: &str = "AWSALBTG";
pub(crate) const TARGET_COOKIE: &str = "AWSALB";
pub(crate) const APP_COOKIE: &str = "AWSALBAPP-0";
/// How long a browser keeps `AWSALBAPP-0`: AWS's fixed 7 days (the stickiness duration is
/// checked against the time inside the cookie).
const APP_COOKIE_MAX_AGE: u64 = 7 * 24 * 3600;
/// The most target groups one `AWSALBAPP-0` remembers a target in; the oldest entry goes.
pub(crate) const APP_COOKIE_ENTRIES: usize = 8;
/// ALB's answer to a request its target group's protocol version cannot take: an HTTP/1
/// request for an HTTP2 or GRPC group, a gRPC call for an HTTP1 group, anything but a `POST`
/// for a GRPC group.
pub(crate) fn incompatible_protocol() -> StatusCode {
    StatusCode::from_u16(464).unwrap_or(StatusCode::BAD_REQUEST)
}
/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every HTTP connection shares.
#[derive(Debug)]
pub struct HttpShared {
    pub routes: Arc<Routes>,
    server: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl HttpShared {
    pub fn new(routes: Arc<Routes>) -> Self {
        Self {
            routes,
            server: hyper::server::conn::http2::Builder::new(TokioExecutor::new()),
        }
    }
}

struct Connection {
    shared: Arc<HttpShared>,
    local: SocketAddr,
    remote: SocketAddr,
    /// The client's IP, for `X-Forwarded-For` when the request has none.
    client_ip: HeaderValue,
    /// `http` or `https` ([`ClientStream::scheme`]).
    scheme: &'static str,
    /// The TLS version and cipher suite negotiated (`ClientStream::negotiated`).
    negotiated: Option<(&'static str, &'static str)>,
}

/// Serves one client connection until it closes or `shutdown` (then gracefully: in-flight
/// requests finish): HTTP/1.x by [`crate::http1`], HTTP/2 by hyper.
pub async fn serve_connection(
    stream: ClientStream,
    remote: SocketAddr,
    local: SocketAddr,
    shared: Arc<HttpShared>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut client = Buffered::new(stream);
    // Enough bytes to tell the HTTP/2 preface from an HTTP/1 request line.
    loop {
        let seen = client.buf.len().min(H2_PREFACE.len());
        if client.buf[..seen] != H2_PREFACE[..seen] {
            break;
        }
        if seen == H2_PREFACE.len() {
            if !shared.routes.current().http_settings(&local).http2 {
                // `routing.http2.enabled` is off: the preface is a malformed HTTP/1 request
                // line, answered 400.
                break;
            }
            serve_http2(client, remote, local, shared, shutdown).await;
            return;
        }
        let idle = shared.routes.current().idle_timeout(&local);
        let read = tokio::select! {
            read = client.read_more(idle) => read,
            _ = shutdown.cancelled() => return,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
    }
    crate::http1::serve(client, remote, local, shared, shutdown).await;
}

async fn serve_http2(
    client: Buffered<ClientStream>,
    remote: SocketAddr,
    local: SocketAddr,
    shared: Arc<HttpShared>,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(AtomicU64::new(crate::clock::monotonic_ms(Instant::now())));
    let stream = Prefixed {
        prefix: client.buf.freeze(),
        stream: client.stream,
        activity: activity.clone(),
    };
    let (idle, keep_alive) = {
        let table = shared.routes.current();
        let settings = table.http_settings(&local);
        (table.idle_timeout(&local), settings.client_keep_alive)
    };
    let opened = Instant::now();
    let connection = Arc::new(Connection {
        scheme: stream.stream.scheme(),
        negotiated: stream.stream.negotiated(),
        client_ip: HeaderValue::from_str(&remote.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown")),
        shared: shared.clone(),
        local,
        remote,
    });
    let service = hyper::service::service_fn(move |request| {
        let connection = connection.clone();
        async move { Ok::<_, Infallible>(connection.handle(request).await) }
    });
    let serving = shared
        .server
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(serving);
    // The idle timeout: no byte either way for that long closes the connection (GOAWAY, then
    // what is in flight finishes). Checked at a tenth of it, from the activity the stream notes.
    let mut check = tokio::time::interval(idle / 10);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, error = %error, "client connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled() => break,
            _ = check.tick() => {
                let last = activity.load(Ordering::Relaxed);
                let now = crate::clock::monotonic_ms(Instant::now());
                if now.saturating_sub(last) >= idle.as_millis() as u64 {
                    tracing::debug!(%remote, "closing an idle HTTP/2 connection");
                    break;
                }
                if opened.elapsed() >= keep_alive {
                    tracing::debug!(%remote, "closing an HTTP/2 connection open for the client keep-alive duration");
                    break;
                }
            }
        }
    }
    serving.as_mut().graceful_shutdown();
    let _ = serving.await;
}

impl Connection {
    async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let table = self.shared.routes.current();
        let listener = table.listeners.get(&self.local);
        let settings = listener.map_or(&DEFAULT_RESPONSE_HEADERS, |l| &l.response_headers);
        let mut response = self.respond(listener, request).await;
        // ALB's own answers name it, unless `routing.http.response.server.enabled` is off.
        if settings.server && response.extensions().get::<ElbAnswer>().is_some() {
            response
                .headers_mut()
                .insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
        }
        for (_, name, value) in &settings.set {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }

    async fn respond(
        &self,
        listener: Option<&ListenerTable>,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let Some(listener) = listener else {
            return elb_error(StatusCode::SERVICE_UNAVAILABLE);
        };
        let metrics = &listener.load_balancer.metrics.http;
        metrics.request();
        if is_grpc(request.headers()) {
            metrics.grpc_request();
        }
        let (parts, body) = request.into_parts();
        let client = self.remote.ip();
        let Some(rule) = listener
            .rules
            .iter()
            .find(|rule| rule.conditions.iter().all(|c| c.matches(&parts, client)))
        else {
            metrics.elb_error(503);
            return elb_error(StatusCode::SERVICE_UNAVAILABLE);
        };
        match &rule.action {
            Action::Forward(forward) => self.forward(listener, forward, parts, body).await,
            Action::FixedResponse {
                status,
                content_type,
                body,
            } => {
                metrics.fixed_response();
                let mut response = Response::new(ProxyBody::full(body.clone()));
                *response.status_mut() = *status;
                response.extensions_mut().insert(ElbAnswer);
                if let Some(content_type) = content_type {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, content_type.clone());
                }
                response
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
                    &parts,
                    listener.port,
                    self.scheme,
                    [protocol, host, port, path, query],
                );
                // ALB's redirects carry its HTML page for the status, as its errors do.
                let mut response = elb_error(*status);
                match HeaderValue::try_from(location) {
                    Ok(location) => {
                        response.headers_mut().insert(header::LOCATION, location);
                        response
                    }
                    Err(_) => {
                        metrics.elb_error(500);
                        elb_error(StatusCode::INTERNAL_SERVER_ERROR)
                    }
                }
            }
        }
    }

    async fn forward(
        &self,
        listener: &ListenerTable,
        forward: &Forward,
        mut parts: Parts,
        body: Incoming,
    ) -> Response<ProxyBody> {
        let lb_metrics = &listener.load_balancer.metrics.http;
        let mut sticky = StickyCookies::default();
        for value in parts.headers.get_all(header::COOKIE) {
            if let Ok(value) = value.to_str() {
                parse_sticky_cookie(value, &mut sticky);
            }
        }
        let Some((weighted, target)) = forward.route(&sticky) else {
            lb_metrics.elb_error(503);
            return elb_error(StatusCode::SERVICE_UNAVAILABLE);
        };
        let version = weighted.group.version;
        if !compatible(version, &parts) {
            lb_metrics.elb_error(464);
            return elb_error(incompatible_protocol());
        }
        let in_flight = InFlight::start(&target.runtime);
        let app_cookie = AppCookiePlan::new(&weighted.group, &target.runtime, sticky.app);

        let te_trailers = asks_for_trailers(&parts.headers);
        self.prepare_upstream(&mut parts, listener);
        let sent = Instant::now();
        let idle_timeout = listener.load_balancer.idle_timeout;
        let answer = if version.is_h2() {
            for_h2_target(&mut parts, &target.runtime, te_trailers);
            let request = Request::from_parts(parts, body);
            crate::upstream::exchange_h2(&target.runtime, request, idle_timeout)
                .await
                .map(|response| response.map(|body| Either::Right(H2Body::new(body, idle_timeout))))
        } else {
            crate::upstream::exchange(&target.runtime, &parts, body, idle_timeout)
                .await
                .map(|response| response.map(Either::Left))
        };
        if let Err(error) = &answer {
            let tls = error.is_handshake_error();
            if tls || error.is_connection_error() {
                lb_metrics.target_connection_error(tls);
                weighted.metrics.target_connection_error(tls);
            }
        }
        let mut response = match answer {
            // The draining deadline passed while the target was answering.
            Ok(_) if in_flight.0.is_closed() => {
                lb_metrics.elb_error(502);
                return elb_error(StatusCode::BAD_GATEWAY);
            }
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                lb_metrics.elb_error(504);
                return elb_error(StatusCode::GATEWAY_TIMEOUT);
            }
            Err(crate::upstream::UpstreamError::ClientBodyTimeout) => {
                lb_metrics.elb_error(408);
                return elb_error(StatusCode::REQUEST_TIMEOUT);
            }
            Err(error) => {
                tracing::debug!(target = %in_flight.0.address, error = %error_chain(&error), "target request failed");
                lb_metrics.elb_error(502);
                return elb_error(StatusCode::BAD_GATEWAY);
            }
        };
        let elapsed = sent.elapsed();
        let status = response.status().as_u16();
        lb_metrics.target_response(status, elapsed);
        weighted.metrics.target_response(status, elapsed);

        let app_cookie = app_cookie.filter(|plan| {
            response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .any(|value| plan.is_set_by(value.as_bytes()))
        });
        let cookies = sticky_set_cookies(forward, &weighted.group, &target.runtime)
            .chain(app_cookie.map(|plan| plan.set_cookie));
        for cookie in cookies {
            if let Ok(cookie) = HeaderValue::try_from(cookie) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
        }
        response.map(|body| ProxyBody::Upstream { body, in_flight })
    }

    /// Rewrites the client's request for the target: origin-form URI, HTTP/1.1,
    /// no hop-by-hop headers, `Host` kept, `X-Forwarded-*` and `X-Amzn-Trace-Id` added.
    fn prepare_upstream(&self, parts: &mut Parts, listener: &ListenerTable) {
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        if !headers.contains_key(header::HOST) {
            // HTTP/2 clients send `:authority` instead of `Host`.
            if let Some(authority) = parts.uri.authority() {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    headers.insert(header::HOST, host);
                }
            }
        }
        let settings = &listener.load_balancer.http;
        if settings.drop_invalid_header_fields {
            let invalid: Vec<HeaderName> = headers
                .keys()
                .filter(|name| !valid_header_name(name.as_str().as_bytes()))
                .cloned()
                .collect();
            for name in invalid {
                headers.remove(name);
            }
        }
        if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            if let Some(with_port) = host_with_port(host, listener.port, settings) {
                if let Ok(value) = HeaderValue::try_from(with_port) {
                    headers.insert(header::HOST, value);
                }
            }
        }
        match settings.xff {
            XffMode::Append => {
                let client = if settings.xff_client_port {
                    HeaderValue::try_from(self.remote.to_string())
                        .unwrap_or_else(|_| self.client_ip.clone())
                } else {
                    self.client_ip.clone()
                };
                let existing: Vec<&[u8]> = headers
                    .get_all(&X_FORWARDED_FOR)
                    .iter()
                    .map(HeaderValue::as_bytes)
                    .collect();
                let forwarded_for = if existing.is_empty() {
                    client
                } else {
                    let mut value = existing.join(&b", "[..]);
                    value.extend_from_slice(b", ");
                    value.extend_from_slice(client.as_bytes());
                    HeaderValue::from_bytes(&value).unwrap_or(client)
                };
                headers.insert(X_FORWARDED_FOR, forwarded_for);
            }
            XffMode::Preserve => {}
            XffMode::Remove => {
                headers.remove(&X_FORWARDED_FOR);
            }
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(self.scheme));
        headers.insert(X_FORWARDED_PORT, listener.port_header.clone());
        let trace = trace_header(headers.get(&X_AMZN_TRACE_ID));
        headers.insert(X_AMZN_TRACE_ID, trace);
        if let (true, Some((version, cipher_suite))) = (settings.tls_headers, self.negotiated) {
            for ((_, name), value) in listener
                .tls_header_names
                .iter()
                .zip([version, cipher_suite])
            {
                headers.insert(name.clone(), HeaderValue::from_static(value));
            }
        }

        // Origin form (`/path?query`): the connection already goes to the target.
        let path_and_query = std::mem::take(&mut parts.uri)
            .into_parts()
            .path_and_query
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path_and_query);
        parts.version = Version::HTTP_11;
    }
}

/// Whether a request can go to a group of `version` (ALB's rules; otherwise it answers
/// [`incompatible_protocol`]): a gRPC call not to an HTTP1 group, and only `POST`s to a GRPC
/// group. (HTTP/1 clients' requests go to HTTP1 groups only, see `crate::http1`.)
fn compatible(version: ProtocolVersion, parts: &Parts) -> bool {
    match version {
        ProtocolVersion::Http1 => !is_grpc(&parts.headers),
        ProtocolVersion::Http2 => true,
        ProtocolVersion::Grpc => parts.method == http::Method::POST,
    }
}

/// A gRPC call: its content type is `application/grpc` or `application/grpc+<codec>`.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// `TE: trailers`, which gRPC requires and HTTP/2 allows (the only `TE` it does).
fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| coding.trim().eq_ignore_ascii_case("trailers"))
}

/// Turns a request prepared for an HTTP/1.1 target ([`Connection::prepare_upstream`]) into
/// one for an HTTP/2 target: its `Host` becomes the `:authority` of an absolute URI (the
/// target's address when it has none fit for one), with the scheme of the group's protocol,
/// and the client's `TE: trailers` is kept.
fn for_h2_target(parts: &mut Parts, target: &TargetRuntime, te_trailers: bool) {
    let authority = parts
        .headers
        .remove(header::HOST)
        .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok())
        .or_else(|| http::uri::Authority::try_from(target.address.to_string()).ok());
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(if target.tls {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    uri.authority = authority;
    uri.path_and_query = Some(path_and_query);
    if let Ok(uri) = Uri::from_parts(uri) {
        parts.uri = uri;
    }
    parts.version = Version::HTTP_2;
    if te_trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Counts a request outstanding on its target until its response body is done or dropped.
pub struct InFlight(Arc<TargetRuntime>);

impl InFlight {
    pub fn start(target: &Arc<TargetRuntime>) -> InFlight {
        target.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(target.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body: streamed from a target, or made by the load balancer.
pub enum ProxyBody {
    Upstream {
        body: UpstreamBody,
        in_flight: InFlight,
    },
    Full(Option<Bytes>),
}

/// A target's response body, read from an HTTP/1.1 connection or an HTTP/2 stream.
pub type UpstreamBody = Either<RawBody, H2Body>;

impl ProxyBody {
    fn full(bytes: Bytes) -> ProxyBody {
        ProxyBody::Full((!bytes.is_empty()).then_some(bytes))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream { body, in_flight } => {
                if in_flight.0.is_closed() {
                    return Poll::Ready(Some(Err(Box::new(RelayError::Drained))));
                }
                Pin::new(body).poll_frame(cx)
            }
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The body of an error page as ALB sends it.
pub(crate) fn error_page(status: StatusCode) -> String {
    let code = status.as_str();
    let reason = status.canonical_reason().unwrap_or("");
    format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
}

/// Marks a response the load balancer made itself (it gets ALB's `Server` header).
#[derive(Debug, Clone, Copy)]
struct ElbAnswer;

/// An error page as ALB sends it.
fn elb_error(status: StatusCode) -> Response<ProxyBody> {
    let body = error_page(status);
    let mut response = Response::new(ProxyBody::full(Bytes::from(body)));
    *response.status_mut() = status;
    response.extensions_mut().insert(ElbAnswer);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

/// Removes the headers that describe one hop's connection (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers.remove(header::CONNECTION) {
        if let Ok(listed) = connection.to_str() {
            for name in listed.split(',') {
                let name = name.trim();
                if !name.is_empty() {
                    headers.remove(name);
                }
            }
        }
    }
    for name in crate::http1::HOP_BY_HOP {
        headers.remove(name);
    }
    // The request's framing is the target connection's own (see `upstream::exchange`).
    headers.remove(header::TRANSFER_ENCODING);
}

/// The stickiness cookies a request carries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StickyCookies<'a> {
    /// `AWSALBTG`: the target group's id.
    pub group: Option<&'a str>,
    /// `AWSALB`, parsed: the target's cookie value.
    pub target: Option<u64>,
    /// `AWSALBAPP-0` as sent (see [`app_cookie_entries`]).
    pub app: Option<&'a str>,
}

/// Picks the `AWSALBTG`, `AWSALB` and `AWSALBAPP-0` values out of one `Cookie` header's value.
pub(crate) fn parse_sticky_cookie<'a>(value: &'a str, found: &mut StickyCookies<'a>) {
    // Every name looked for starts so; most requests' cookies are skipped at this one search.
    if !value.contains(TARGET_COOKIE) {
        return;
    }
    for pair in value.split(';') {
        let Some((name, value)) = pair.trim().split_once('=') else {
            continue;
        };
        match name {
            TG_COOKIE => found.group = Some(value),
            TARGET_COOKIE => found.target = u64::from_str_radix(value, 16).ok(),
            APP_COOKIE => found.app = Some(value),
            _ => {}
        }
    }
}

/// The `Set-Cookie` values a forwarded response carries whatever the target answers:
/// `AWSALBTG` with group stickiness, `AWSALB` with the group's `lb_cookie` stickiness.
pub(crate) fn sticky_set_cookies(
    forward: &Forward,
    group: &GroupEntry,
    target: &TargetRuntime,
) -> impl Iterator<Item = String> {
    let group_cookie = forward
        .stickiness_seconds
        .map(|seconds| format!("{TG_COOKIE}={}; Max-Age={seconds}; Path=/", group.id));
    let target_cookie = match group.stickiness {
        TargetStickiness::LbCookie { seconds } => Some(format!(
            "{TARGET_COOKIE}={:016x}; Max-Age={seconds}; Path=/",
            target.cookie
        )),
        _ => None,
    };
    group_cookie.into_iter().chain(target_cookie)
}

/// One entry of `AWSALBAPP-0`: a target's cookie value and when (Unix seconds) its
/// application cookie was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppCookieEntry {
    pub target: u64,
    pub issued: u64,
}

/// The entries of an `AWSALBAPP-0` value: 24 hex digits each, the target's 16 then the
/// time's 8. Anything malformed ends the list (the cookie is the client's to corrupt).
pub fn app_cookie_entries(value: &str) -> impl Iterator<Item = AppCookieEntry> + '_ {
    value
        .as_bytes()
        .chunks(24)
        .map_while(|chunk| {
            let chunk = std::str::from_utf8(chunk).ok().filter(|c| c.len() == 24)?;
            Some(AppCookieEntry {
                target: u64::from_str_radix(&chunk[..16], 16).ok()?,
                issued: u64::from_str_radix(&chunk[16..], 16).ok()?,
            })
        })
        .take(APP_COOKIE_ENTRIES)
}

/// What a forwarded request needs to answer `app_cookie` stickiness: the application cookie's
/// name, and the `Set-Cookie` value that sticks the client to the target, added only if the
/// target's response sets that cookie.
#[derive(Debug)]
pub(crate) struct AppCookiePlan<'a> {
    pub name: &'a str,
    pub set_cookie: String,
}

impl<'a> AppCookiePlan<'a> {
    /// The plan for a request to `target` of `group` carrying `previous` (its `AWSALBAPP-0`):
    /// the new cookie's first entry is the target's, then the previous entries of other
    /// groups' targets.
    pub fn new(
        group: &'a GroupEntry,
        target: &TargetRuntime,
        previous: Option<&str>,
    ) -> Option<Self> {
        let TargetStickiness::AppCookie { name, .. } = &group.stickiness else {
            return None;
        };
        let ours = |cookie: u64| group.targets.iter().any(|t| t.runtime.cookie == cookie);
        let mut value = String::with_capacity(APP_COOKIE.len() + 24 * 2 + 40);
        let _ = write!(
            value,
            "{APP_COOKIE}={:016x}{:08x}",
            target.cookie,
            unix_seconds() & 0xffff_ffff
        );
        for entry in previous
            .into_iter()
            .flat_map(app_cookie_entries)
            .filter(|entry| !ours(entry.target))
            .take(APP_COOKIE_ENTRIES - 1)
        {
            let _ = write!(value, "{:016x}{:08x}", entry.target, entry.issued);
        }
        let _ = write!(value, "; Max-Age={APP_COOKIE_MAX_AGE}; Path=/");
        Some(AppCookiePlan {
            name: name.as_str(),
            set_cookie: value,
        })
    }

    /// Whether one `Set-Cookie` value of the target's response sets the application cookie.
    pub fn is_set_by(&self, set_cookie: &[u8]) -> bool {
        let name = set_cookie
            .iter()
            .position(|&b| b == b'=')
            .map_or(set_cookie, |end| &set_cookie[..end]);
        name.trim_ascii() == self.name.as_bytes()
    }
}

/// Wall-clock seconds since the Unix epoch: `AWSALBAPP-0` must mean the same on every node.
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `X-Amzn-Trace-Id` as a header value (see [`write_trace_value`]).
fn trace_header(existing: Option<&HeaderValue>) -> HeaderValue {
    let mut value = Vec::with_capacity(64);
    write_trace_value(existing.map(HeaderValue::as_bytes), &mut value);
    HeaderValue::from_bytes(&value).unwrap_or(HeaderValue::from_static(
        "Root=1-00000000-000000000000000000000000",
    ))
}

/// Appends the `X-Amzn-Trace-Id` value for the target: a new
/// `Root=1-<epoch hex>-<96 random bits>`, or, when the request has a valid one, that one with
/// its `Self` field set to a new id (as ALB does).
pub(crate) fn write_trace_value(existing: Option<&[u8]>, out: &mut Vec<u8>) {
    let mut id = [0u8; 35];
    write_trace_id(&mut id);
    let existing = existing
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| v.contains("Root=") && v.bytes().all(|b| b >= 0x20 && b != 0x7f));
    match existing {
        Some(existing) => {
            out.extend_from_slice(b"Self=");
            out.extend_from_slice(&id);
            for field in existing
                .split(';')
                .filter(|f| !f.trim_start().starts_with("Self="))
            {
                out.push(b';');
                out.extend_from_slice(field.as_bytes());
            }
        }
        None => {
            out.extend_from_slice(b"Root=");
            out.extend_from_slice(&id);
        }
    }
}

/// `1-<8 hex digits of epoch seconds>-<24 random hex digits>`.
fn write_trace_id(out: &mut [u8; 35]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let seconds = (crate::clock::epoch_ms() / 1000) as u32;
    let random: u128 = rand::random();
    out[0] = b'1';
    out[1] = b'-';
    for i in 0..8 {
        out[2 + i] = HEX[((seconds >> (28 - 4 * i)) & 0xf) as usize];
    }
    out[10] = b'-';
    for i in 0..24 {
        out[11 + i] = HEX[((random >> (4 * i)) & 0xf) as usize];
    }
}

/// The `Location` of a redirect: each part with `#{protocol}`, `#{host}`, `#{port}`,
/// `#{path}` (without its leading `/`) and `#{query}` replaced by the request's; the port is
/// left out when it is the protocol's default.
pub(crate) fn redirect_location<R: RequestView + ?Sized>(
    request: &R,
    listener_port: u16,
    listener_scheme: &str,
    [protocol, host, port, path, query]: [&String; 5],
) -> String {
    let request_host = request.host().map(strip_port).unwrap_or("");
    let listener_port = listener_port.to_string();
    let request_path = request.path().strip_prefix('/').unwrap_or(request.path());
    let request_query = request.query().unwrap_or("");
    let fill = |text: &str| {
        text.replace("#{protocol}", listener_scheme)
            .replace("#{host}", request_host)
            .replace("#{port}", &listener_port)
            .replace("#{path}", request_path)
            .replace("#{query}", request_query)
    };
    let protocol = fill(protocol).to_ascii_lowercase();
    let port = fill(port);
    let default_port = match protocol.as_str() {
        "https" => "443",
        _ => "80",
    };
    let mut location = format!("{protocol}://{}", fill(host));
    if port != default_port && !port.is_empty() {
        location.push(':');
        location.push_str(&port);
    }
    let path = fill(path);
    if !path.starts_with('/') {
        location.push('/');
    }
    location.push_str(&path);
    let query = fill(query);
    if !query.is_empty() {
        location.push('?');
        location.push_str(&query);
    }
    location
}

/// A client stream whose first bytes were already read (to tell HTTP/2 from HTTP/1.x): they
/// are read again first. It notes when bytes last moved (for the idle timeout).
struct Prefixed {
    prefix: Bytes,
    stream: ClientStream,
    activity: Arc<AtomicU64>,
}

impl Prefixed {
    fn moved(&self) {
        self.activity.store(
            crate::clock::monotonic_ms(Instant::now()),
            Ordering::Relaxed,
        );
    }
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.moved();
        }
        read
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.moved();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.moved();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn trace_ids_are_new_or_extended() {
        let fresh = trace_header(None);
        let fresh = fresh.to_str().unwrap();
        assert_eq!(fresh.len(), 40);
        assert!(fresh.starts_with("Root=1-"));
        let incoming =
            HeaderValue::from_static("Root=1-67891233-abcdef012345678912345678;Self=old");
        let extended = trace_header(Some(&incoming));
        let extended = extended.to_str().unwrap();
        assert!(extended.starts_with("Self=1-"));
        assert!(extended.ends_with(";Root=1-67891233-abcdef012345678912345678"));
        assert!(!extended.contains("Self=old"));
    }

    #[test]
    fn redirects_fill_placeholders() {
        let parts = Request::get("/a/b?x=1")
            .header("host", "example.com:8080")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let s = |v: &str| v.to_string();
        let location = redirect_location(
            &parts,
            8080,
            "http",
            [
                &s("HTTPS"),
                &s("#{host}"),
                &s("443"),
                &s("/#{path}"),
                &s("#{query}"),
            ],
        );
        assert_eq!(location, "https://example.com/a/b?x=1");
        let location = redirect_location(
            &parts,
            8080,
            "http",
            [
                &s("#{protocol}"),
                &s("new.#{host}"),
                &s("#{port}"),
                &s("/v2/#{path}"),
                &s(""),
            ],
        );
        assert_eq!(location, "http://new.example.com:8080/v2/a/b");
        // On an HTTPS listener, `#{protocol}` is https (whose default port is then left out).
        let location = redirect_location(
            &parts,
            443,
            "https",
            [
                &s("#{protocol}"),
                &s("#{host}"),
                &s("#{port}"),
                &s("/#{path}"),
                &s("#{query}"),
            ],
        );
        assert_eq!(location, "https://example.com/a/b?x=1");
    }

    #[test]
    fn sticky_cookies_are_found() {
        let mut found = StickyCookies::default();
        parse_sticky_cookie(
            "a=1; AWSALBTG=73e2; AWSALB=00000000000000ff; AWSALBAPP-0=xyz",
            &mut found,
        );
        assert_eq!(found.group, Some("73e2"));
        assert_eq!(found.target, Some(255));
        assert_eq!(found.app, Some("xyz"));
    }

    #[test]
    fn app_cookie_entries_stop_at_anything_malformed() {
        let entries: Vec<_> =
            app_cookie_entries("00000000000000ff6740a1b2000000000000000100000010zz").collect();
        assert_eq!(
            entries,
            vec![
                AppCookieEntry {
                    target: 255,
                    issued: 0x6740_a1b2
                },
                AppCookieEntry {
                    target: 1,
                    issued: 0x10
                },
            ]
        );
        assert_eq!(app_cookie_entries("not hex at all, 24 chars").count(), 0);
        assert_eq!(
            app_cookie_entries(&"0".repeat(24 * 20)).count(),
            APP_COOKIE_ENTRIES
        );
    }

    #[test]
    fn the_application_cookie_is_found_by_name_only() {
        let plan = AppCookiePlan {
            name: "SESSION",
            set_cookie: String::new(),
        };
        assert!(plan.is_set_by(b"SESSION=abc; Path=/"));
        assert!(plan.is_set_by(b" SESSION =abc"));
        assert!(!plan.is_set_by(b"SESSIONS=abc"));
        assert!(!plan.is_set_by(b"other=SESSION"));
    }
}
