//! TLS termination: HTTPS listeners serving HTTP/1.1 and HTTP/2 (by ALPN) with the
//! certificate the client's server name picks, `X-Forwarded-Proto: https` and `https`
//! redirects, and the TLS version and cipher-suite headers when asked for; large answers and
//! WebSockets crossing TLS whole; TLS listeners carrying a flow's bytes in the clear to a TCP
//! target; certificates replaced by a new snapshot; unusable certificates failing the load
//! balancer. TLS to targets: HTTPS groups' requests over pooled TLS connections, TLS groups'
//! flows encrypted again with the client's ALPN, HTTPS health checks.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use model::elb::*;
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// A self-signed certificate for `names`, as ACM would hand it to the data plane.
struct Issued {
    certificate: ServerCertificate,
    der: CertificateDer<'static>,
}

fn issue(arn: &str, names: &[&str]) -> Issued {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    Issued {
        certificate: ServerCertificate {
            arn: arn.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            chain_pem: cert.pem(),
            private_key_pem: key.serialize_pem(),
        },
        der: cert.der().clone(),
    }
}

fn tls_settings(certificates: &[&Issued], policy: &str) -> ListenerTls {
    ListenerTls {
        ssl_policy: policy.into(),
        certificates: certificates.iter().map(|c| c.certificate.clone()).collect(),
        alpn_policy: None,
    }
}

/// An HTTPS listener: `rules`, then forwarding everything else to `group`.
fn https_load_balancer(
    address: SocketAddr,
    group: &str,
    tls: ListenerTls,
    mut rules: Vec<RouteRule>,
) -> LoadBalancerRoutes {
    rules.push(rule(None, vec![], forward(&[(group, 1)])));
    let mut lb = load_balancer("secure", LoadBalancerKind::Application, address, rules);
    lb.listeners[0].protocol = "HTTPS".into();
    lb.listeners[0].tls = Some(tls);
    lb
}

/// Connects with TLS, trusting `trusted`, naming `server_name`, offering `alpn`.
async fn connect_tls(
    address: SocketAddr,
    server_name: &str,
    trusted: &[&Issued],
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for issued in trusted {
        roots.add(issued.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await?;
    connector
        .connect(ServerName::try_from(server_name.to_string()).unwrap(), tcp)
        .await
}

/// Writes `bytes` and flushes them: a TLS stream may hold written bytes until then.
async fn send(stream: &mut TlsStream<tokio::net::TcpStream>, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
}

/// The certificate the server presented.
fn presented(stream: &TlsStream<tokio::net::TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One GET over `stream`, with HTTP/2 when ALPN chose it, else HTTP/1.1.
async fn get_over(
    stream: TlsStream<tokio::net::TcpStream>,
    host: &str,
    path: &str,
) -> (hyper::http::Version, Answer) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let uri = format!("https://{host}{path}");
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.send_request(request).await.unwrap()
    };
    let version = response.version();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        version,
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        },
    )
}

#[tokio::test]
async fn https_listeners_terminate_tls_for_http1_and_http2() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    let app = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/app",
        &["app.example.com"],
    );
    let api = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/api",
        &["*.api.example.com"],
    );
    let redirect = rule(
        Some(1),
        vec![RouteCondition::PathPattern {
            values: vec!["/old".into()],
        }],
        RouteAction::Redirect {
            protocol: "#{protocol}".into(),
            host: "#{host}".into(),
            port: "#{port}".into(),
            path: "/new".into(),
            query: "#{query}".into(),
            status_code: 301,
        },
    );
    node.publish(snapshot(
        vec![https_load_balancer(
            address,
            "web",
            tls_settings(&[&app, &api], "ELBSecurityPolicy-TLS13-1-2-2021-06"),
            vec![redirect],
        )],
        vec![group("web", &[&web])],
    ))
    .await;

    // The server name picks the certificate; an unknown one gets the default.
    let both = [&app, &api];
    let stream = connect_tls(address, "eu.api.example.com", &both, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(presented(&stream), api.der);
    let (version, answer) = get_over(stream, "eu.api.example.com", "/").await;
    assert_eq!(version, hyper::http::Version::HTTP_2);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "web");
    assert_eq!(answer.headers["x-seen-x-forwarded-proto"], "https");
    assert_eq!(
        answer.headers["x-seen-x-forwarded-port"],
        address.port().to_string().as_str()
    );

    let stream = connect_tls(address, "app.example.com", &both, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(presented(&stream), app.der);
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (version, answer) = get_over(stream, "app.example.com", "/").await;
    assert_eq!(version, hyper::http::Version::HTTP_11);
    assert_eq!(answer.body, "web");
    assert_eq!(answer.headers["x-seen-x-forwarded-proto"], "https");
    assert_eq!(answer.headers["x-seen-version"], "HTTP/1.1");

    // No ALPN at all: HTTP/1.1, and a client that does not know the name is given the
    // default certificate (which it then has to trust).
    let stream = connect_tls(address, "other.test", &[&app], &[]).await;
    assert!(
        stream.is_err(),
        "the default certificate is not for other.test"
    );
    let mut stream = connect_tls(address, "app.example.com", &[&app], &[])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    send(
        &mut stream,
        b"GET /old?x=1 HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 301 "), "{raw}");
    // `#{protocol}` is https here, and `#{port}` the listener's.
    let location = format!(
        "location: https://app.example.com:{}/new?x=1\r\n",
        address.port()
    );
    assert!(raw.to_ascii_lowercase().contains(&location), "{raw}");

    // Plain HTTP to the HTTPS listener gets no answer: the handshake fails.
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn new_certificates_apply_to_new_connections_and_bad_ones_fail_the_load_balancer() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    let first = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/first",
        &["app.example.com"],
    );
    let second = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/second",
        &["app.example.com"],
    );
    let publish = |tls: ListenerTls| {
        snapshot(
            vec![https_load_balancer(address, "web", tls, vec![])],
            vec![group("web", &[&web])],
        )
    };
    node.publish(publish(tls_settings(
        &[&first],
        "ELBSecurityPolicy-2016-08",
    )))
    .await;
    let both = [&first, &second];
    let kept = connect_tls(address, "app.example.com", &both, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(presented(&kept), first.der);
    // The old policy offers TLS 1.2 only.
    assert_eq!(
        kept.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    // A re-imported certificate reaches new connections; the open one goes on.
    node.publish(publish(tls_settings(
        &[&second],
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
    )))
    .await;
    let fresh = connect_tls(address, "app.example.com", &both, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(presented(&fresh), second.der);
    assert_eq!(
        fresh.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(get_over(kept, "app.example.com", "/").await.1.body, "web");
    assert_eq!(node.handle.load_balancer_states().failed, vec![]);

    // A key that cannot be used fails the load balancer, saying which certificate.
    let mut broken = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/broken",
        &["app.example.com"],
    );
    broken.certificate.private_key_pem = first.certificate.chain_pem.clone();
    node.publish(publish(tls_settings(
        &[&broken],
        "ELBSecurityPolicy-2016-08",
    )))
    .await;
    let states = node.handle.load_balancer_states();
    assert_eq!(states.failed.len(), 1, "{states:?}");
    assert!(
        states.failed[0].reason.contains("certificate/broken"),
        "{}",
        states.failed[0].reason
    );
}

/// An NLB whose TLS listener (`cert`, `alpn_policy`) forwards to the `protocol` group `upper`
/// of one target, checked with a TCP connect.
fn tls_flows(
    address: SocketAddr,
    cert: &Issued,
    alpn_policy: &str,
    protocol: &str,
    target_address: SocketAddr,
) -> RouteSnapshot {
    let mut upper = TargetGroupRoutes {
        protocol: protocol.into(),
        ..group("upper", &[])
    };
    upper.health_check.protocol = "TCP".into();
    upper.health_check.path = None;
    upper.targets.push(target(target_address));
    let mut lb = load_balancer(
        "flows",
        LoadBalancerKind::Network,
        address,
        vec![rule(None, vec![], forward(&[("upper", 1)]))],
    );
    lb.listeners[0].protocol = "TLS".into();
    let mut tls = tls_settings(&[cert], "ELBSecurityPolicy-TLS13-1-2-2021-06");
    tls.alpn_policy = Some(alpn_policy.into());
    lb.listeners[0].tls = Some(tls);
    snapshot(vec![lb], vec![upper])
}

#[tokio::test]
async fn tls_listeners_carry_the_flow_in_the_clear_to_the_target() {
    // The target sees plaintext: it echoes each line upper-cased.
    let upper = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_address = upper.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = upper.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let upper = buf[..n].to_ascii_uppercase();
                    if stream.write_all(&upper).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let node = Node::start().await;
    let address = listener_address();
    let cert = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/tcp",
        &["db.example.com"],
    );
    node.publish(tls_flows(
        address,
        &cert,
        "HTTP2Preferred",
        "TCP",
        target_address,
    ))
    .await;

    let mut stream = connect_tls(address, "db.example.com", &[&cert], &[b"http/1.1", b"h2"])
        .await
        .unwrap();
    // The listener's ALPN policy prefers h2.
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    send(&mut stream, b"hello over tls").await;
    let mut answer = [0u8; 14];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_exact(&mut answer),
    )
    .await
    .expect("the target answers through the listener")
    .unwrap();
    assert_eq!(&answer, b"HELLO OVER TLS");
    // The flow counts as a TLS one, and as nothing else.
    let tls_flows = node
        .wait_for_metric_sum("NewFlowCount_TLS", nlb_datum, 1.0)
        .await;
    assert_eq!(tls_flows, 1.0);
    for name in ["NewFlowCount_TCP", "ActiveFlowCount_TCP"] {
        assert!(node.datums(name, nlb_datum).is_empty(), "{name}");
    }

    // A client that speaks no TLS fails the handshake, which counts.
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        plain.read_to_end(&mut rest),
    )
    .await
    .expect("the listener closes the connection");
    let negotiation_errors = node
        .wait_for_metric_sum("ClientTLSNegotiationErrorCount", nlb_datum, 1.0)
        .await;
    assert_eq!(negotiation_errors, 1.0);
}

#[tokio::test]
async fn targets_are_told_the_tls_version_and_cipher_suite_when_asked() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    let cert = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/app",
        &["app.example.com"],
    );
    let tls = tls_settings(&[&cert], "ELBSecurityPolicy-TLS13-1-2-2021-06");
    let mut lb = https_load_balancer(address, "web", tls, vec![]);
    let publish = |lb: LoadBalancerRoutes| snapshot(vec![lb], vec![group("web", &[&web])]);
    node.publish(publish(lb.clone())).await;
    // Off by default: nothing is added.
    let stream = connect_tls(address, "app.example.com", &[&cert], &[b"h2"])
        .await
        .unwrap();
    let (_, answer) = get_over(stream, "app.example.com", "/").await;
    assert!(answer.headers.get("x-seen-x-amzn-tls-version").is_none());

    // On, with the cipher-suite header renamed: over HTTP/2 and HTTP/1.1 (where a client's
    // own header of that name is replaced).
    lb.http.tls_version_and_cipher_suite = true;
    lb.listeners[0].tls_header_names = Some(("X-Amzn-Tls-Version".into(), "X-Tls-Cipher".into()));
    node.publish(publish(lb)).await;
    let stream = connect_tls(address, "app.example.com", &[&cert], &[b"h2"])
        .await
        .unwrap();
    let (version, answer) = get_over(stream, "app.example.com", "/").await;
    assert_eq!(version, hyper::http::Version::HTTP_2);
    assert_eq!(answer.headers["x-seen-x-amzn-tls-version"], "TLSv1.3");
    let cipher = answer.headers["x-seen-x-tls-cipher"].to_str().unwrap();
    assert!(
        cipher.starts_with("TLS_") && cipher != "TLS_UNKNOWN",
        "{cipher}"
    );
    assert!(answer
        .headers
        .get("x-seen-x-amzn-tls-cipher-suite")
        .is_none());

    let mut stream = connect_tls(address, "app.example.com", &[&cert], &[b"http/1.1"])
        .await
        .unwrap();
    send(&mut stream, b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Tls-Cipher: forged\r\nConnection: close\r\n\r\n").await;
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw).await;
    let raw = raw.to_ascii_lowercase();
    assert!(
        raw.contains("x-seen-x-amzn-tls-version: tlsv1.3\r\n"),
        "{raw}"
    );
    assert!(raw.contains("x-seen-x-tls-cipher: tls_"), "{raw}");
    assert!(!raw.contains("forged"), "{raw}");
}

/// A raw target: `GET /big` gets 4 MiB of `x`; anything else switches protocols (sending
/// `hello` with the 101) and then echoes bytes back upper-cased.
async fn raw_target() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if !matches!(stream.read(&mut byte).await, Ok(1)) {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    if head.starts_with(b"GET /big ") {
                        let body = vec![b'x'; 4 << 20];
                        let answer =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        if stream.write_all(answer.as_bytes()).await.is_err()
                            || stream.write_all(&body).await.is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello")
                        .await;
                    while let Ok(1) = stream.read(&mut byte).await {
                        if stream.write_all(&byte.to_ascii_uppercase()).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
            });
        }
    });
    address
}

/// Reads a response head (within 10 s, else fails saying `what` did not arrive).
async fn read_head(stream: &mut TlsStream<tokio::net::TcpStream>, what: &str) -> Vec<u8> {
    let mut head = Vec::new();
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await?);
        }
        std::io::Result::Ok(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
        Ok(Ok(())) => head,
        Ok(Err(error)) => panic!("{what}: {error} after {:?}", String::from_utf8_lossy(&head)),
        Err(_) => panic!(
            "{what} did not arrive: {:?}",
            String::from_utf8_lossy(&head)
        ),
    }
}

#[tokio::test]
async fn large_answers_and_websockets_cross_tls_whole() {
    let target_address = raw_target().await;
    let node = Node::start().await;
    let address = listener_address();
    let cert = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/app",
        &["app.example.com"],
    );
    let mut raw = group("raw", &[]);
    raw.health_check.enabled = false;
    raw.targets.push(target(target_address));
    node.publish(snapshot(
        vec![https_load_balancer(
            address,
            "raw",
            tls_settings(&[&cert], "ELBSecurityPolicy-TLS13-1-2-2021-06"),
            vec![],
        )],
        vec![raw],
    ))
    .await;
    let mut stream = connect_tls(address, "app.example.com", &[&cert], &[b"http/1.1"])
        .await
        .unwrap();
    // Two 4 MiB answers on one connection: each arrives whole before the next is asked for
    // (nothing is left in TLS's buffers).
    for _ in 0..2 {
        send(
            &mut stream,
            b"GET /big HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        )
        .await;
        let head = read_head(&mut stream, "a 200 head").await;
        assert!(
            head.starts_with(b"HTTP/1.1 200 "),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let mut body = vec![0u8; 4 << 20];
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            stream.read_exact(&mut body),
        )
        .await
        .expect("the whole answer arrives")
        .unwrap();
        assert!(body.iter().all(|b| *b == b'x'));
    }

    // A WebSocket over TLS (wss): the 101, then bytes both ways.
    send(&mut stream, b"GET /chat HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
    let head = read_head(&mut stream, "the 101 head").await;
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut hello = [0u8; 5];
    stream.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello");
    send(&mut stream, b"wss works").await;
    let mut echoed = [0u8; 9];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_exact(&mut echoed),
    )
    .await
    .expect("the echo comes back")
    .unwrap();
    assert_eq!(&echoed, b"WSS WORKS");
}

/// The TLS server side of a target with `cert`, offering `alpn`.
fn target_acceptor(cert: &Issued, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(
        cert.certificate.private_key_pem.as_bytes(),
    )
    .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A target serving HTTPS with `cert`: `/health` answers 200, `/sick` 503, anything else 200
/// with `conn=<n> <method> <path> <body bytes> alpn=<protocol>`, `n` counting the TLS
/// connections the target accepted.
async fn https_target(cert: &Issued) -> SocketAddr {
    let acceptor = target_acceptor(cert, &[b"http/1.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for connection in 1.. {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let alpn =
                    String::from_utf8_lossy(stream.get_ref().1.alpn_protocol().unwrap_or(b"-"))
                        .into_owned();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let alpn = alpn.clone();
                        async move {
                            let (status, body) = match request.uri().path() {
                                "/health" => (200, String::new()),
                                "/sick" => (503, String::new()),
                                path => {
                                    let path = path.to_string();
                                    let method = request.method().to_string();
                                    let length =
                                        request.into_body().collect().await?.to_bytes().len();
                                    (200, format!("conn={connection} {method} {path} {length} alpn={alpn}"))
                                }
                            };
                            let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// An HTTPS target group of `target_address`, checked over HTTPS.
fn https_group(name: &str, target_address: SocketAddr) -> TargetGroupRoutes {
    let mut https = group(name, &[]);
    https.protocol = "HTTPS".into();
    https.health_check.protocol = "HTTPS".into();
    https.targets.push(target(target_address));
    https
}

#[tokio::test]
async fn https_target_groups_get_requests_over_tls() {
    // A self-signed certificate the load balancer has never seen: ALB does not verify
    // targets' certificates.
    let cert = issue("unused", &["target.internal"]);
    let target_address = https_target(&cert).await;
    let plain = backend("plain").await;
    let node = Node::start().await;
    let address = listener_address();
    let mut lb = forwarding_to(
        "reencrypt",
        LoadBalancerKind::Application,
        address,
        "secure",
    );
    // `/plain/*` goes to a target that does not speak TLS, in an HTTPS group.
    lb.listeners[0].rules.insert(
        0,
        rule(
            Some(1),
            vec![RouteCondition::PathPattern {
                values: vec!["/plain/*".into()],
            }],
            forward(&[("wrong", 1)]),
        ),
    );
    let mut wrong = https_group("wrong", plain.address);
    wrong.health_check.protocol = "HTTP".into();
    node.publish(snapshot(
        vec![lb],
        vec![https_group("secure", target_address), wrong],
    ))
    .await;

    // HTTP/1.1 from the client: the requests go over one pooled TLS connection, offering
    // HTTP/1.1 by ALPN.
    let client = http_client();
    let mut connections = std::collections::BTreeSet::new();
    for i in 0..5 {
        let answer = get(&client, address, &format!("/item/{i}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let (connection, rest) = answer.body.split_once(' ').unwrap();
        assert_eq!(rest, format!("GET /item/{i} 0 alpn=http/1.1"));
        connections.insert(connection.to_string());
    }
    assert_eq!(
        connections.len(),
        1,
        "one kept-alive TLS connection: {connections:?}"
    );
    // A body crosses whole.
    let body = vec![b'x'; 3 << 20];
    let request = hyper::Request::post(format!("http://{address}/upload"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let answer = support::send(&client, request).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .body
            .ends_with(&format!("POST /upload {} alpn=http/1.1", 3 << 20)),
        "{}",
        answer.body
    );
    // HTTP/2 from the client: the same, through the HTTP/2 path.
    let answer = get(&http2_client(), address, "/h2").await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.body.ends_with(" GET /h2 0 alpn=http/1.1"),
        "{}",
        answer.body
    );
    // A target that does not speak TLS fails the handshake: 502, as ALB answers, counted as
    // a TLS negotiation error with the target (not a connection error).
    let answer = get(&client, address, "/plain/x").await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let own = |d: &MetricDatum| d.dimensions.len() == 1;
    let tls_errors = node
        .wait_for_metric_sum("TargetTLSNegotiationErrorCount", own, 1.0)
        .await;
    assert_eq!(tls_errors, 1.0);
    assert_eq!(node.metric_sum("TargetConnectionErrorCount", own), 0.0);
}

#[tokio::test]
async fn tls_target_groups_get_flows_over_tls_with_the_clients_alpn() {
    // The target speaks TLS itself, and tells what ALPN settled on before echoing
    // upper-cased.
    let cert = issue("unused", &["db.internal"]);
    let acceptor = target_acceptor(&cert, &[b"h2", b"http/1.1"]);
    let upper = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_address = upper.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = upper.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let alpn = stream.get_ref().1.alpn_protocol().unwrap_or(b"-").to_vec();
                let mut buf = [0u8; 1024];
                let Ok(n @ 1..) = stream.read(&mut buf).await else {
                    return;
                };
                let mut answer = alpn;
                answer.push(b' ');
                answer.extend(buf[..n].to_ascii_uppercase());
                let _ = stream.write_all(&answer).await;
                let _ = stream.flush().await;
            });
        }
    });
    let node = Node::start().await;
    let address = listener_address();
    let listener_cert = issue(
        "arn:aws:acm:us-east-1:000000000000:certificate/db",
        &["db.example.com"],
    );
    node.publish(tls_flows(
        address,
        &listener_cert,
        "HTTP2Optional",
        "TLS",
        target_address,
    ))
    .await;

    for (offered, settled) in [
        (&[&b"h2"[..]][..], "h2"),
        (&[&b"http/1.1"[..], &b"h2"[..]][..], "http/1.1"),
    ] {
        let mut stream = connect_tls(address, "db.example.com", &[&listener_cert], offered)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(settled.as_bytes()));
        send(&mut stream, b"hello again").await;
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await
        .expect("the target answers through the listener")
        .unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("{settled} HELLO AGAIN")
        );
    }
}

#[tokio::test]
async fn https_health_checks_speak_tls_to_targets() {
    // A self-signed certificate the load balancer has never seen: ALB does not verify
    // targets' certificates.
    let cert = issue("unused", &["target.internal"]);
    let target_address = https_target(&cert).await;
    let node = Node::start().await;
    let address = listener_address();
    let checked = |path: &str| {
        let mut checked = group("checked", &[]);
        checked.health_check = HealthCheckConfig {
            protocol: "HTTPS".into(),
            ..health_check(path, 1, 1)
        };
        checked.targets.push(target(target_address));
        checked
    };
    let lb = forwarding_to("checks", LoadBalancerKind::Application, address, "checked");
    // Healthy only if the check's request went over TLS (plain HTTP to this target fails).
    node.publish(snapshot(vec![lb.clone()], vec![checked("/health")]))
        .await;
    node.wait_for_target("checked", target_address, "healthy")
        .await;
    // A 503 from the target, read through TLS, is a response-code mismatch.
    node.publish(snapshot(vec![lb], vec![checked("/sick")]))
        .await;
    let health = node
        .wait_for_target("checked", target_address, "unhealthy")
        .await;
    assert_code_mismatch(&health, "503");
}
