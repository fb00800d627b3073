//! HTTP2 and GRPC target groups: HTTP/2 clients' requests reach the targets as HTTP/2 (prior
//! knowledge, or ALPN `h2` over TLS) on a shared connection, gRPC calls pass with their
//! trailers, health checks speak HTTP/2 or call a gRPC method and match gRPC codes, and
//! requests a group's protocol version cannot take are answered 464, as ALB does.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use model::elb::{LoadBalancerKind, TargetGroupRoutes};
use support::*;

/// One request an HTTP/2 target received.
#[derive(Debug, Clone)]
struct Seen {
    /// The load balancer's end of the connection it came on.
    peer: SocketAddr,
    version: http::Version,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

/// An HTTP/2-only target (prior knowledge, or TLS offering only `h2`). It answers:
/// - `GET /health`: 200;
/// - gRPC calls (`content-type: application/grpc`) of `/echo.Echo/Say`: the request's
///   messages back, then trailers `grpc-status: 0` and `x-echo: done`;
/// - other gRPC calls: trailers only, `grpc-status` from `grpc_code` (12, `UNIMPLEMENTED`,
///   unless changed);
/// - `/stall`: 200 and part of a body, then nothing;
/// - anything else: 200, `<version> <method> <uri>`.
///
/// Every request but health checks is recorded in `seen`.
struct H2Target {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    grpc_code: Arc<AtomicU16>,
}

type TargetBody = BoxBody<Bytes, Infallible>;

fn trailers_only(code: u16) -> http::Response<TargetBody> {
    http::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

async fn answer(
    request: http::Request<Incoming>,
    peer: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    grpc_code: Arc<AtomicU16>,
) -> http::Response<TargetBody> {
    let grpc = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let health = request.uri().path() == "/health" || request.uri().path().starts_with("/AWS.ALB");
    if !health {
        seen.lock().unwrap().push(Seen {
            peer,
            version: request.version(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        });
    }
    if grpc && request.uri().path() == "/echo.Echo/Say" {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("x-echo", "done".parse().unwrap());
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(body)),
            Ok(Frame::trailers(trailers)),
        ];
        return http::Response::builder()
            .header("content-type", "application/grpc")
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
            .unwrap();
    }
    if grpc {
        return trailers_only(grpc_code.load(Ordering::Relaxed));
    }
    if request.uri().path() == "/stall" {
        // Part of a body, then nothing.
        let first = futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(
            Bytes::from_static(b"part"),
        ))]);
        let body = StreamBody::new(futures_util::StreamExt::chain(
            first,
            futures_util::stream::pending(),
        ));
        return http::Response::new(body.boxed());
    }
    let text = format!(
        "{:?} {} {}",
        request.version(),
        request.method(),
        request.uri()
    );
    http::Response::new(Full::new(Bytes::from(text)).boxed())
}

async fn h2_target(tls: Option<tokio_rustls::TlsAcceptor>) -> H2Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = H2Target {
        address: listener.local_addr().unwrap(),
        seen: Arc::default(),
        grpc_code: Arc::new(AtomicU16::new(12)),
    };
    let (seen, grpc_code) = (target.seen.clone(), target.grpc_code.clone());
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let (seen, grpc_code, tls) = (seen.clone(), grpc_code.clone(), tls.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let (seen, grpc_code) = (seen.clone(), grpc_code.clone());
                    async move { Ok::<_, Infallible>(answer(request, peer, seen, grpc_code).await) }
                });
                let server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = server.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                    None => {
                        let _ = server.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    target
}

/// The group `name` of `target`, of protocol version `version`, checked every second.
fn h2_group(name: &str, version: &str, target: &H2Target) -> TargetGroupRoutes {
    let mut group = group(name, &[]);
    group.protocol_version = Some(version.into());
    if version == "GRPC" {
        group.health_check.path = Some(model::elb::GRPC_HEALTH_CHECK_PATH.into());
        group.health_check.matcher_http_code = None;
        group.health_check.matcher_grpc_code = Some("12".into());
    }
    group.targets.push(support::target(target.address));
    group
}

/// One HTTP/2 client connection (prior knowledge) to the load balancer.
async fn h2_connection(
    address: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// A gRPC call's request: one length-prefixed message.
fn grpc_call(address: SocketAddr, path: &str, message: &[u8]) -> http::Request<Full<Bytes>> {
    let mut body = BytesMut::new();
    body.extend_from_slice(&[0]);
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(body.freeze()))
        .unwrap()
}

#[tokio::test]
async fn http2_groups_take_http2_clients_requests_over_one_http2_connection() {
    let target = h2_target(None).await;
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![forwarding_to(
            "h2",
            LoadBalancerKind::Application,
            address,
            "h2",
        )],
        vec![h2_group("h2", "HTTP2", &target)],
    ))
    .await;
    // The checks are HTTP/2 `GET`s: an HTTP/1.1 check would fail against this target.
    node.wait_for_target("h2", target.address, "healthy").await;

    let sender = h2_connection(address).await;
    let calls = (0..10).map(|i| {
        let mut sender = sender.clone();
        async move {
            let request = http::Request::get(format!("http://app.example:8080/items/{i}?q=1"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            body,
            &format!("HTTP/2.0 GET http://app.example:8080/items/{i}?q=1")
        );
    }
    let seen = target.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 10);
    let first = &seen[0];
    assert!(
        seen.iter().all(|s| s.peer == first.peer),
        "the requests share one connection: {:?}",
        seen.iter().map(|s| s.peer).collect::<Vec<_>>()
    );
    assert_eq!(first.version, http::Version::HTTP_2);
    assert_eq!(first.uri.authority().unwrap().as_str(), "app.example:8080");
    assert!(
        first.headers.get("host").is_none(),
        "the authority is :authority"
    );
    assert_eq!(first.headers["x-forwarded-proto"], "http");
    assert_eq!(first.headers["x-forwarded-for"], "127.0.0.1");
    assert!(first.headers.contains_key("x-amzn-trace-id"));

    // HTTP/1 clients' requests cannot go to an HTTP2 group: 464, ALB's "incompatible
    // protocol".
    let answer = get(&http_client(), address, "/items/1").await;
    assert_eq!(answer.status, 464, "{}", answer.body);
    assert_eq!(answer.headers["server"], "awselb/2.0");
    assert_eq!(target.seen.lock().unwrap().len(), 10);
}

#[tokio::test]
async fn https_http2_groups_speak_http2_over_tls_offering_h2() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["target.internal".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    // Only `h2`: a client offering only `http/1.1` fails the handshake.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let target = h2_target(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await;
    let node = Node::start().await;
    let address = listener_address();
    let mut group = h2_group("secure", "HTTP2", &target);
    group.protocol = "HTTPS".into();
    group.health_check.protocol = "HTTPS".into();
    node.publish(snapshot(
        vec![forwarding_to(
            "secure",
            LoadBalancerKind::Application,
            address,
            "secure",
        )],
        vec![group],
    ))
    .await;
    node.wait_for_target("secure", target.address, "healthy")
        .await;

    let answer = get(&http2_client(), address, "/over-tls").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        format!("HTTP/2.0 GET https://{address}/over-tls")
    );
}

#[tokio::test]
async fn grpc_groups_pass_calls_with_their_trailers() {
    let target = h2_target(None).await;
    let plain = backend("plain").await;
    let node = Node::start().await;
    let address = listener_address();
    let rules = vec![
        rule(
            Some(1),
            vec![model::elb::RouteCondition::PathPattern {
                values: vec!["/echo.Echo/*".into()],
            }],
            forward(&[("grpc", 1)]),
        ),
        rule(None, vec![], forward(&[("plain", 1)])),
    ];
    node.publish(snapshot(
        vec![load_balancer(
            "grpc",
            LoadBalancerKind::Application,
            address,
            rules,
        )],
        vec![h2_group("grpc", "GRPC", &target), group("plain", &[&plain])],
    ))
    .await;
    // The default check calls /AWS.ALB/healthcheck, which the target does not implement:
    // 12 is what the default matcher wants.
    node.wait_for_target("grpc", target.address, "healthy")
        .await;

    let mut sender = h2_connection(address).await;
    let response = sender
        .send_request(grpc_call(address, "/echo.Echo/Say", b"hello"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("the call's trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-echo"], "done");
    assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x05hello");
    let seen = target.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.headers["te"], "trailers", "gRPC needs TE: trailers");

    // A call the target does not implement: its trailers-only answer passes through.
    let response = sender
        .send_request(grpc_call(address, "/echo.Echo/Missing", b""))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "12");

    // Not a POST, to a GRPC group: 464.
    let request = http::Request::get(format!("http://{address}/echo.Echo/Say"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 464);
    // A gRPC call to an HTTP1 group: 464.
    let response = sender
        .send_request(grpc_call(address, "/other.Service/Call", b""))
        .await
        .unwrap();
    assert_eq!(response.status(), 464);
    assert_eq!(plain.hits.load(Ordering::Relaxed), 0);
    // HTTP/1 clients' requests to the GRPC group: 464 as well; the HTTP1 group serves them.
    assert_eq!(
        get(&http_client(), address, "/echo.Echo/Say").await.status,
        464
    );
    assert_eq!(get(&http_client(), address, "/page").await.body, "plain");

    // The three gRPC calls (the 464 one included) count as gRPC requests; the GET does not.
    let grpc_requests = node
        .wait_for_metric_sum("GrpcRequestCount", |d| d.dimensions.len() == 1, 3.0)
        .await;
    assert_eq!(grpc_requests, 3.0);
}

#[tokio::test]
async fn grpc_health_checks_match_grpc_status_codes() {
    let target = h2_target(None).await;
    let node = Node::start().await;
    let address = listener_address();
    let mut group = h2_group("checked", "GRPC", &target);
    group.health_check.path = Some("/grpc.health.v1.Health/Check".into());
    group.health_check.matcher_grpc_code = Some("0".into());
    node.publish(snapshot(
        vec![forwarding_to(
            "checked",
            LoadBalancerKind::Application,
            address,
            "checked",
        )],
        vec![group],
    ))
    .await;
    // The target answers 12 to every unknown method; the matcher wants 0.
    let health = node
        .wait_for_target("checked", target.address, "unhealthy")
        .await;
    assert_code_mismatch(&health, "12");
    target.grpc_code.store(0, Ordering::Relaxed);
    node.wait_for_target("checked", target.address, "healthy")
        .await;
}

#[tokio::test]
async fn http2_target_bodies_that_stall_end_at_the_idle_timeout() {
    let target = h2_target(None).await;
    let node = Node::start().await;
    let address = listener_address();
    let mut lb = forwarding_to("stall", LoadBalancerKind::Application, address, "stall");
    lb.idle_timeout_seconds = 1;
    node.publish(snapshot(
        vec![lb],
        vec![h2_group("stall", "HTTP2", &target)],
    ))
    .await;
    node.wait_for_target("stall", target.address, "healthy")
        .await;
    let mut sender = h2_connection(address).await;
    let request = http::Request::get(format!("http://{address}/stall"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        response.into_body().collect(),
    )
    .await
    .expect("the body ends within the idle timeout");
    assert!(body.is_err(), "a cut body is an error, not a short success");
}
