//! The ALB data path end to end, in process: rules, weights, algorithms, health checks,
//! fail-open, draining, ELB errors, forwarded headers, HTTP/2, redirects, fixed responses,
//! stickiness and the load balancer's request attributes.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use model::elb::*;
use support::*;

/// Rules sending `/api/*` to the group "api" and everything else to "web".
fn api_then_web() -> Vec<RouteRule> {
    vec![
        rule(
            Some(1),
            vec![RouteCondition::PathPattern {
                values: vec!["/api/*".into()],
            }],
            forward(&[("api", 1)]),
        ),
        rule(None, vec![], forward(&[("web", 1)])),
    ]
}

#[tokio::test]
async fn path_rules_route_to_their_groups() {
    let (api, web) = (backend("api").await, backend("web").await);
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "paths",
            LoadBalancerKind::Application,
            address,
            api_then_web(),
        )],
        vec![group("api", &[&api]), group("web", &[&web])],
    ))
    .await;
    let client = http_client();
    assert_eq!(get(&client, address, "/api/users").await.body, "api");
    assert_eq!(get(&client, address, "/api/").await.body, "api");
    assert_eq!(get(&client, address, "/index.html").await.body, "web");
    assert_eq!(get(&client, address, "/API/x").await.body, "web");
    assert_eq!(
        node.handle.load_balancer_states().active,
        vec!["arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/paths/50dc6c495c0c9188".to_string()]
    );
}

#[tokio::test]
async fn weighted_forward_splits_90_10() {
    let (blue, green) = (backend("blue").await, backend("green").await);
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "weights",
            LoadBalancerKind::Application,
            address,
            vec![rule(
                None,
                vec![],
                forward(&[("blue", 90), ("green", 10), ("zero", 0)]),
            )],
        )],
        vec![
            group("blue", &[&blue]),
            group("green", &[&green]),
            group("zero", &[]),
        ],
    ))
    .await;
    let client = http_client();
    let mut bodies = Vec::new();
    for _ in 0..2000 {
        bodies.push(get(&client, address, "/").await.body);
    }
    let counts = counts(bodies);
    let blue_share = counts.get("blue").copied().unwrap_or(0) as f64 / 2000.0;
    assert!((0.86..=0.94).contains(&blue_share), "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let backends = [backend("a").await, backend("b").await, backend("c").await];
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "rr",
            LoadBalancerKind::Application,
            address,
            vec![rule(None, vec![], forward(&[("rr", 1)]))],
        )],
        vec![group("rr", &backends.iter().collect::<Vec<_>>())],
    ))
    .await;
    for b in &backends {
        node.wait_for_state("rr", b, "healthy").await;
    }
    let client = http_client();
    let mut bodies = Vec::new();
    for _ in 0..300 {
        bodies.push(get(&client, address, "/").await.body);
    }
    let counts = counts(bodies);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![100, 100, 100],
        "{counts:?}"
    );
}

#[tokio::test]
async fn least_outstanding_requests_avoids_busy_targets() {
    let (busy, idle) = (backend("busy").await, backend("idle").await);
    let node = Node::start().await;
    let address = listener_address();
    let mut lor = group("lor", &[&busy, &idle]);
    lor.algorithm = "least_outstanding_requests".into();
    node.publish(snapshot(
        vec![load_balancer(
            "lor",
            LoadBalancerKind::Application,
            address,
            vec![rule(None, vec![], forward(&[("lor", 1)]))],
        )],
        vec![lor],
    ))
    .await;
    node.wait_for_state("lor", &busy, "healthy").await;
    node.wait_for_state("lor", &idle, "healthy").await;
    let client = http_client();
    // Park requests until each backend holds some; then the idle one must get everything new.
    let mut held = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        held.push(tokio::spawn(
            async move { get(&client, address, "/hold").await },
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while busy.in_flight.load(Ordering::SeqCst) + idle.in_flight.load(Ordering::SeqCst) < 4 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Release only the idle backend's requests.
    while idle.in_flight.load(Ordering::SeqCst) > 0 {
        idle.release.notify_waiters();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..20 {
        assert_eq!(get(&client, address, "/").await.body, "idle");
    }
    while busy.in_flight.load(Ordering::SeqCst) > 0 {
        busy.release.notify_waiters();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for request in held {
        assert_eq!(request.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn failing_health_checks_take_a_target_out_and_back_in() {
    let (good, flaky) = (backend("good").await, backend("flaky").await);
    let node = Node::start().await;
    let address = listener_address();
    let mut checked = group("checked", &[&good, &flaky]);
    checked.health_check = health_check("/health", 2, 2);
    node.publish(snapshot(
        vec![load_balancer(
            "health",
            LoadBalancerKind::Application,
            address,
            vec![rule(None, vec![], forward(&[("checked", 1)]))],
        )],
        vec![checked],
    ))
    .await;
    node.wait_for_state("checked", &flaky, "healthy").await;
    flaky.health_status.store(502, Ordering::SeqCst);
    let health = node
        .wait_for_target("checked", flaky.address, "unhealthy")
        .await;
    assert_code_mismatch(&health, "502");
    let client = http_client();
    for _ in 0..20 {
        assert_eq!(get(&client, address, "/").await.body, "good");
    }
    // The control plane heard about it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reported = node
            .control_plane
            .health_reports()
            .into_iter()
            .any(|report| {
                report.target_groups.iter().any(|g| {
                    g.targets.iter().any(|t| {
                        t.port == i32::from(flaky.address.port()) && t.state == "unhealthy"
                    })
                })
            });
        if reported {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unhealthy state not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flaky.health_status.store(200, Ordering::SeqCst);
    node.wait_for_state("checked", &flaky, "healthy").await;
    let bodies: Vec<String> = {
        let mut bodies = Vec::new();
        for _ in 0..20 {
            bodies.push(get(&client, address, "/").await.body);
        }
        bodies
    };
    assert!(bodies.iter().any(|b| b == "flaky"), "{bodies:?}");
}

#[tokio::test]
async fn groups_with_no_healthy_target_fail_open() {
    let (a, b) = (backend("sick-a").await, backend("sick-b").await);
    a.health_status.store(500, Ordering::SeqCst);
    b.health_status.store(500, Ordering::SeqCst);
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "failopen",
            LoadBalancerKind::Application,
            address,
            vec![rule(None, vec![], forward(&[("sick", 1)]))],
        )],
        vec![group("sick", &[&a, &b])],
    ))
    .await;
    node.wait_for_state("sick", &a, "unhealthy").await;
    node.wait_for_state("sick", &b, "unhealthy").await;
    let client = http_client();
    let mut bodies = Vec::new();
    for _ in 0..10 {
        bodies.push(get(&client, address, "/").await.body);
    }
    assert_eq!(counts(bodies).len(), 2);
}

#[tokio::test]
async fn draining_targets_finish_in_flight_requests_but_get_no_new_ones() {
    let (old, new) = (backend("old").await, backend("new").await);
    let node = Node::start().await;
    let address = listener_address();
    let lb = load_balancer(
        "drain",
        LoadBalancerKind::Application,
        address,
        vec![rule(None, vec![], forward(&[("drain", 1)]))],
    );
    node.publish(snapshot(vec![lb.clone()], vec![group("drain", &[&old])]))
        .await;
    node.wait_for_state("drain", &old, "healthy").await;
    let client = http_client();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, address, "/hold").await })
    };
    while old.in_flight.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut draining = group("drain", &[&old, &new]);
    draining.targets[0].draining_until_ms = Some(model_now_ms() + 60_000);
    node.publish(snapshot(vec![lb.clone()], vec![draining]))
        .await;
    let hits = old.hits.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(get(&client, address, "/").await.body, "new");
    }
    assert_eq!(old.hits.load(Ordering::SeqCst), hits);
    old.release.notify_waiters();
    let answer = in_flight.await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "old"));

    // At the deadline, what is still streaming from the target is cut.
    let held = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, address, "/hold").await })
    };
    while new.in_flight.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut expiring = group("drain", &[&old, &new]);
    expiring.targets[0].draining_until_ms = Some(model_now_ms() + 60_000);
    expiring.targets[1].draining_until_ms = Some(model_now_ms() + 300);
    node.publish(snapshot(vec![lb], vec![expiring])).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    new.release.notify_waiters();
    let answer = held.await.unwrap();
    assert_eq!(answer.status, 502);
    // Only draining targets left: nothing to route to.
    assert_eq!(get(&client, address, "/").await.status, 503);
}

fn model_now_ms() -> i64 {
    lb::clock::epoch_ms()
}

#[tokio::test]
async fn elb_errors_are_502_503_and_504() {
    let slow = backend("slow").await;
    slow.delay_ms.store(3_000, Ordering::SeqCst);
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let node = Node::start().await;
    let address = listener_address();
    let mut lb = load_balancer(
        "errors",
        LoadBalancerKind::Application,
        address,
        vec![
            rule(
                Some(1),
                vec![RouteCondition::PathPattern {
                    values: vec!["/dead".into()],
                }],
                forward(&[("dead", 1)]),
            ),
            rule(
                Some(2),
                vec![RouteCondition::PathPattern {
                    values: vec!["/empty".into()],
                }],
                forward(&[("empty", 1)]),
            ),
            rule(None, vec![], forward(&[("slow", 1)])),
        ],
    );
    lb.idle_timeout_seconds = 1;
    let mut dead_group = group("dead", &[]);
    dead_group.targets.push(target(dead));
    node.publish(snapshot(
        vec![lb],
        vec![dead_group, group("empty", &[]), group("slow", &[&slow])],
    ))
    .await;
    let client = http_client();
    let answer = get(&client, address, "/dead").await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.headers["server"], "awselb/2.0");
    assert!(answer.body.contains("502 Bad Gateway"));
    assert_eq!(get(&client, address, "/empty").await.status, 503);
    assert_eq!(get(&client, address, "/slow").await.status, 504);
}

#[tokio::test]
async fn forwarded_headers_and_trace_ids_are_added() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "headers",
            LoadBalancerKind::Application,
            address,
            vec![rule(None, vec![], forward(&[("web", 1)]))],
        )],
        vec![group("web", &[&web])],
    ))
    .await;
    let client = http_client();
    let answer = get(&client, address, "/").await;
    assert_eq!(answer.headers["x-seen-x-forwarded-for"], "127.0.0.1");
    assert_eq!(answer.headers["x-seen-x-forwarded-proto"], "http");
    assert_eq!(
        answer.headers["x-seen-x-forwarded-port"],
        address.port().to_string().as_str()
    );
    assert_eq!(answer.headers["x-seen-host"], address.to_string().as_str());
    let trace = answer.headers["x-seen-x-amzn-trace-id"].to_str().unwrap();
    assert!(trace.starts_with("Root=1-") && trace.len() == 40, "{trace}");

    let request = hyper::Request::get(format!("http://{address}/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header(
            "x-amzn-trace-id",
            "Root=1-67891233-abcdef012345678912345678",
        )
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(&client, request).await;
    assert_eq!(
        answer.headers["x-seen-x-forwarded-for"],
        "203.0.113.7, 127.0.0.1"
    );
    let trace = answer.headers["x-seen-x-amzn-trace-id"].to_str().unwrap();
    assert!(
        trace.starts_with("Self=1-")
            && trace.ends_with(";Root=1-67891233-abcdef012345678912345678"),
        "{trace}"
    );
}

#[tokio::test]
async fn http2_clients_are_served() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "h2",
            LoadBalancerKind::Application,
            address,
            vec![rule(None, vec![], forward(&[("web", 1)]))],
        )],
        vec![group("web", &[&web])],
    ))
    .await;
    let client = http2_client();
    for _ in 0..5 {
        let response = client
            .request(
                hyper::Request::get(format!("http://{address}/h2"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.headers()["x-seen-version"], "HTTP/1.1");
        assert_eq!(
            response.headers()["x-seen-host"],
            address.to_string().as_str()
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"web");
    }
}

#[tokio::test]
async fn redirects_and_fixed_responses() {
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "actions",
            LoadBalancerKind::Application,
            address,
            vec![
                rule(
                    Some(1),
                    vec![RouteCondition::PathPattern {
                        values: vec!["/old/*".into()],
                    }],
                    RouteAction::Redirect {
                        protocol: "#{protocol}".into(),
                        host: "new.example.com".into(),
                        port: "#{port}".into(),
                        path: "/#{path}".into(),
                        query: "#{query}".into(),
                        status_code: 301,
                    },
                ),
                rule(
                    Some(2),
                    vec![
                        RouteCondition::HostHeader {
                            values: vec!["*.example.com".into()],
                        },
                        RouteCondition::HttpRequestMethod {
                            values: vec!["POST".into()],
                        },
                    ],
                    RouteAction::FixedResponse {
                        status_code: 201,
                        content_type: Some("application/json".into()),
                        message_body: Some("{\"ok\":true}".into()),
                    },
                ),
                rule(
                    None,
                    vec![],
                    RouteAction::FixedResponse {
                        status_code: 404,
                        content_type: Some("text/plain".into()),
                        message_body: Some("nothing here".into()),
                    },
                ),
            ],
        )],
        vec![],
    ))
    .await;
    let client = http_client();
    for client in [&client, &http2_client()] {
        let answer = get(client, address, "/old/page?x=1").await;
        assert_eq!(answer.status, 301);
        assert_eq!(
            answer.headers["location"],
            format!("http://new.example.com:{}/old/page?x=1", address.port()).as_str()
        );
        // As ALB's: its server name and its 134-byte page.
        assert_eq!(answer.headers["server"], "awselb/2.0");
        assert_eq!(answer.headers["content-type"], "text/html");
        assert!(
            answer.body.contains("<title>301 Moved Permanently</title>"),
            "{}",
            answer.body
        );
        assert_eq!(answer.body.len(), 134);
    }
    let request = hyper::Request::post(format!("http://{address}/"))
        .header("host", "API.example.com")
        .body(Full::new(Bytes::from("x")))
        .unwrap();
    let answer = send(&client, request).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (201, "{\"ok\":true}")
    );
    assert_eq!(answer.headers["content-type"], "application/json");
    let answer = get(&client, address, "/").await;
    assert_eq!((answer.status, answer.body.as_str()), (404, "nothing here"));
    assert_eq!(answer.headers["server"], "awselb/2.0");
}

#[tokio::test]
async fn stickiness_keeps_a_client_on_its_target() {
    let backends = [backend("s1").await, backend("s2").await];
    let node = Node::start().await;
    let address = listener_address();
    let mut sticky = group("sticky", &backends.iter().collect::<Vec<_>>());
    sticky.stickiness = Some(Stickiness {
        kind: "lb_cookie".into(),
        duration_seconds: 3600,
        cookie_name: None,
    });
    node.publish(snapshot(
        vec![load_balancer(
            "sticky",
            LoadBalancerKind::Application,
            address,
            vec![rule(None, vec![], forward(&[("sticky", 1)]))],
        )],
        vec![sticky],
    ))
    .await;
    for b in &backends {
        node.wait_for_state("sticky", b, "healthy").await;
    }
    let client = http_client();
    let first = get(&client, address, "/").await;
    let cookie = first.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("AWSALB="), "{cookie}");
    for _ in 0..10 {
        let answer = get_with_cookie(&client, address, "/", &cookie).await;
        assert_eq!(answer.body, first.body);
    }
}

/// What the target saw of one request with `Host: example.com`, `X-Forwarded-For: 1.2.3.4`
/// and an `x_under` header, sent by HTTP/1.1 or HTTP/2: (host, X-Forwarded-For, header names).
async fn seen(client: &HttpClient, address: std::net::SocketAddr) -> (String, String, String) {
    let request = hyper::Request::get(format!("http://{address}/"))
        .header("host", "example.com")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x_under", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(client, request).await;
    assert_eq!(answer.status, 200);
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (
        header("x-seen-host"),
        header("x-seen-x-forwarded-for"),
        header("x-seen-names"),
    )
}

#[tokio::test]
async fn request_attributes_shape_what_targets_see() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    let publish = |http: HttpAttributes| {
        let mut alb = forwarding_to("attrs", LoadBalancerKind::Application, address, "web");
        alb.http = http;
        node.publish(snapshot(vec![alb], vec![group("web", &[&web])]))
    };
    let http1 = http_client();
    let http2 = http2_client();
    let port = address.port();

    // AWS's defaults: the listener's port added to a portless Host, the client appended.
    publish(HttpAttributes::default()).await;
    let (host, xff, names) = seen(&http1, address).await;
    assert_eq!(host, format!("example.com:{port}"));
    assert_eq!(xff, "1.2.3.4, 127.0.0.1");
    assert!(names.split(',').any(|n| n == "x_under"), "{names}");
    let (_, xff, names) = seen(&http2, address).await;
    assert_eq!(xff, "1.2.3.4, 127.0.0.1");
    assert!(names.split(',').any(|n| n == "x_under"), "{names}");

    // Host preserved, X-Forwarded-For preserved, invalid header names dropped.
    publish(HttpAttributes {
        preserve_host_header: true,
        xff_mode: "preserve".into(),
        drop_invalid_header_fields: true,
        ..HttpAttributes::default()
    })
    .await;
    for client in [&http1, &http2] {
        let (host, xff, names) = seen(client, address).await;
        if std::ptr::eq(client, &http1) {
            assert_eq!(host, "example.com");
        }
        assert_eq!(xff, "1.2.3.4");
        assert!(!names.split(',').any(|n| n == "x_under"), "{names}");
    }

    // X-Forwarded-For removed; then appended with the client's port.
    publish(HttpAttributes {
        xff_mode: "remove".into(),
        ..HttpAttributes::default()
    })
    .await;
    for client in [&http1, &http2] {
        assert_eq!(seen(client, address).await.1, "");
    }
    publish(HttpAttributes {
        xff_client_port: true,
        ..HttpAttributes::default()
    })
    .await;
    for client in [&http1, &http2] {
        let xff = seen(client, address).await.1;
        let port: u16 = xff
            .strip_prefix("1.2.3.4, 127.0.0.1:")
            .unwrap_or_else(|| panic!("{xff}"))
            .parse()
            .unwrap();
        assert_ne!(port, 0);
    }

    // HTTP/2 off: the preface is not HTTP/1, so it gets 400; HTTP/1.1 is served.
    publish(HttpAttributes {
        http2: false,
        ..HttpAttributes::default()
    })
    .await;
    let fresh_http2 = http2_client();
    let refused = fresh_http2
        .request(
            hyper::Request::get(format!("http://{address}/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(get(&http1, address, "/").await.status, 200);
}

#[tokio::test]
async fn listener_response_headers_are_set_on_every_answer() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    let publish = |response_headers: ResponseHeaderSettings, targets: &[&Backend]| {
        let mut alb = forwarding_to("headers", LoadBalancerKind::Application, address, "web");
        alb.listeners[0].response_headers = response_headers;
        node.publish(snapshot(vec![alb], vec![group("web", targets)]))
    };
    let http1 = http_client();
    let http2 = http2_client();
    let header = |answer: &Answer, name: &str| -> Vec<String> {
        answer
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };

    // AWS's defaults: the target's headers pass, ALB's own answers name it.
    publish(ResponseHeaderSettings::default(), &[&web]).await;
    for client in [&http1, &http2] {
        let answer = get(client, address, "/framed").await;
        assert_eq!(header(&answer, "x-frame-options"), ["SAMEORIGIN"]);
        assert!(header(&answer, "strict-transport-security").is_empty());
    }

    // Set headers replace the target's and are added to everything else.
    let set = ResponseHeaderSettings {
        set: vec![
            ("X-Frame-Options".into(), "DENY".into()),
            (
                "Strict-Transport-Security".into(),
                "max-age=31536000".into(),
            ),
        ],
        server: true,
    };
    publish(set.clone(), &[&web]).await;
    for client in [&http1, &http2] {
        let answer = get(client, address, "/framed").await;
        assert_eq!(answer.body, "web");
        assert_eq!(header(&answer, "x-frame-options"), ["DENY"]);
        assert_eq!(
            header(&answer, "strict-transport-security"),
            ["max-age=31536000"]
        );
    }

    // The load balancer's own answers (here a 503: no target) get them too, with `Server`
    // unless that is turned off.
    publish(set.clone(), &[]).await;
    for client in [&http1, &http2] {
        let answer = get(client, address, "/").await;
        assert_eq!(answer.status, 503);
        assert_eq!(header(&answer, "server"), ["awselb/2.0"]);
        assert_eq!(header(&answer, "x-frame-options"), ["DENY"]);
    }
    publish(
        ResponseHeaderSettings {
            server: false,
            ..set
        },
        &[],
    )
    .await;
    for client in [&http1, &http2] {
        let answer = get(client, address, "/").await;
        assert_eq!(answer.status, 503);
        assert!(header(&answer, "server").is_empty(), "{:?}", answer.headers);
        assert_eq!(
            header(&answer, "strict-transport-security"),
            ["max-age=31536000"]
        );
    }
}

#[tokio::test]
async fn client_connections_close_after_the_keep_alive_duration() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    let mut alb = forwarding_to("keepalive", LoadBalancerKind::Application, address, "web");
    alb.http.client_keep_alive_seconds = 1;
    node.publish(snapshot(vec![alb], vec![group("web", &[&web])]))
        .await;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {address}\r\n\r\n");
    // Within the duration the connection stays open...
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(!first.contains("connection: close"), "{first}");
    // ...and the first answer after it says so and closes.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the connection closes")
        .unwrap();
    let second = String::from_utf8_lossy(&rest).to_lowercase();
    assert!(second.starts_with("http/1.1 200"), "{second}");
    assert!(second.contains("connection: close"), "{second}");
}

/// The `AWSALBAPP-0` pair (`name=value`) among an answer's `Set-Cookie` headers.
fn app_cookie(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .find(|pair| pair.starts_with("AWSALBAPP-0="))
}

#[tokio::test]
async fn app_cookie_stickiness_follows_the_application_cookie() {
    let backends = [
        backend("a1").await,
        backend("a2").await,
        backend("a3").await,
    ];
    let node = Node::start().await;
    let address = listener_address();
    let mut sticky = group("app", &backends.iter().collect::<Vec<_>>());
    sticky.stickiness = Some(Stickiness {
        kind: "app_cookie".into(),
        duration_seconds: 3600,
        cookie_name: Some("SESSION".into()),
    });
    node.publish(snapshot(
        vec![forwarding_to(
            "app",
            LoadBalancerKind::Application,
            address,
            "app",
        )],
        vec![sticky],
    ))
    .await;
    for b in &backends {
        node.wait_for_state("app", b, "healthy").await;
    }
    let http1 = http_client();
    let http2 = http2_client();
    for client in [&http1, &http2] {
        // A response without the application's cookie gets no stickiness cookie.
        let plain = get(client, address, "/").await;
        assert_eq!(app_cookie(&plain.headers), None, "{:?}", plain.headers);
        // The target sets it: both cookies go back.
        let login = get(client, address, "/login").await;
        let set: Vec<_> = login.headers.get_all("set-cookie").iter().collect();
        assert!(
            set.iter()
                .any(|v| v.to_str().unwrap().starts_with("SESSION=")),
            "{set:?}"
        );
        let stuck = app_cookie(&login.headers).expect("AWSALBAPP-0 is set");
        let session = &login.body;
        let ask = |cookie: String| async move {
            let cookie = format!("SESSION={session}; {cookie}");
            get_with_cookie(client, address, "/", &cookie).await
        };
        for _ in 0..9 {
            assert_eq!(ask(stuck.clone()).await.body, login.body);
        }
        // A cookie whose stickiness duration has run out sticks no more: round robin again.
        let value = &stuck["AWSALBAPP-0=".len()..];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let stale = format!("AWSALBAPP-0={}{:08x}", &value[..16], now - 3601);
        let mut bodies = Vec::new();
        for _ in 0..6 {
            bodies.push(ask(stale.clone()).await.body);
        }
        assert_eq!(counts(bodies).len(), 3, "stale cookie still sticks");
    }
}

#[tokio::test]
async fn app_cookie_stickiness_remembers_a_target_per_group() {
    let backends = [
        backend("web1").await,
        backend("web2").await,
        backend("api1").await,
        backend("api2").await,
    ];
    let node = Node::start().await;
    let address = listener_address();
    let sticky = |name: &str, members: &[&Backend]| {
        let mut routes = group(name, members);
        routes.stickiness = Some(Stickiness {
            kind: "app_cookie".into(),
            duration_seconds: 3600,
            cookie_name: Some("SESSION".into()),
        });
        routes
    };
    node.publish(snapshot(
        vec![load_balancer(
            "two",
            LoadBalancerKind::Application,
            address,
            api_then_web(),
        )],
        vec![
            sticky("web", &[&backends[0], &backends[1]]),
            sticky("api", &[&backends[2], &backends[3]]),
        ],
    ))
    .await;
    for (name, b) in [("web", 0), ("web", 1), ("api", 2), ("api", 3)] {
        node.wait_for_state(name, &backends[b], "healthy").await;
    }
    let client = http_client();
    let web = get(&client, address, "/login").await;
    let first = app_cookie(&web.headers).unwrap();
    // The API login carries the web entry on in the same cookie.
    let api = get_with_cookie(&client, address, "/api/login", &first).await;
    let both = app_cookie(&api.headers).unwrap();
    assert_eq!(both.len(), "AWSALBAPP-0=".len() + 48, "{both}");
    for (path, expected) in [("/", &web.body), ("/api/x", &api.body)] {
        for _ in 0..4 {
            let answer = get_with_cookie(&client, address, path, &both).await;
            assert_eq!(&answer.body, expected, "{path}");
        }
    }
}

#[tokio::test]
async fn request_metrics_are_counted_and_reported() {
    let web = backend("web").await;
    // A target nothing listens on: requests to it fail to connect.
    let mut refused = backend("refused").await;
    refused.address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "metrics",
            LoadBalancerKind::Application,
            address,
            vec![
                rule(
                    Some(1),
                    vec![RouteCondition::PathPattern {
                        values: vec!["/missing".into()],
                    }],
                    forward(&[("empty", 1)]),
                ),
                rule(
                    Some(2),
                    vec![RouteCondition::PathPattern {
                        values: vec!["/refused".into()],
                    }],
                    forward(&[("refused", 1)]),
                ),
                rule(None, vec![], forward(&[("web", 1)])),
            ],
        )],
        vec![
            group("web", &[&web]),
            group("empty", &[]),
            group("refused", &[&refused]),
        ],
    ))
    .await;
    node.wait_for_state("web", &web, "healthy").await;
    let client = http_client();
    for _ in 0..7 {
        assert_eq!(get(&client, address, "/").await.status, 200);
    }
    assert_eq!(get(&client, address, "/missing").await.status, 503);
    assert_eq!(get(&client, address, "/refused").await.status, 502);
    // This load balancer's datums with `dimensions` dimensions (1: its own, 2: a pair's).
    let of_lb = |dimensions: usize| {
        move |d: &MetricDatum| {
            d.dimensions.len() == dimensions
                && d.namespace == "AWS/ApplicationELB"
                && d.dimensions
                    .iter()
                    .any(|(_, v)| v == "app/metrics/50dc6c495c0c9188")
        }
    };
    let sum = |metric: &str, dimensions: usize| node.metric_sum(metric, of_lb(dimensions));
    let requests = node
        .wait_for_metric_sum("RequestCount", of_lb(1), 9.0)
        .await;
    assert_eq!(requests, 9.0);
    assert_eq!(sum("HTTPCode_Target_2XX_Count", 1), 7.0);
    assert_eq!(sum("HTTPCode_ELB_5XX_Count", 1), 2.0);
    assert_eq!(sum("HTTPCode_ELB_503_Count", 1), 1.0);
    assert_eq!(sum("HTTPCode_ELB_502_Count", 1), 1.0);
    assert_eq!(sum("HTTPCode_Target_2XX_Count", 2), 7.0);
    assert!(sum("HealthyHostCount", 2) >= 1.0);
    // The refused connection, for the load balancer and for its group.
    assert_eq!(sum("TargetConnectionErrorCount", 1), 1.0);
    assert_eq!(sum("TargetConnectionErrorCount", 2), 1.0);
    // Per target: web's 7 requests over its one healthy target, refused's 1 over its one
    // (unhealthy, routed to failing open).
    assert_eq!(sum("RequestCountPerTarget", 2), 8.0);
    let by_group = node.metric_sum("RequestCountPerTarget", |d| {
        d.dimensions.len() == 1
            && d.dimensions[0].0 == "TargetGroup"
            && d.dimensions[0].1.contains("/web/")
    });
    assert_eq!(by_group, 7.0);
    // The client's connections (it keeps them alive, so at least one).
    assert!(sum("NewConnectionCount", 1) >= 1.0);
    assert!(!node.datums("ActiveConnectionCount", |_| true).is_empty());
    let response_times = node.datums("TargetResponseTime", |d| d.dimensions.len() == 1);
    assert_eq!(
        response_times.iter().map(|d| d.sample_count).sum::<f64>(),
        7.0
    );
    assert!(response_times
        .iter()
        .all(|d| d.unit == "Seconds" && d.minimum <= d.maximum));
}

#[tokio::test]
async fn a_target_registered_again_while_draining_starts_over_without_health() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    let lb = load_balancer(
        "again",
        LoadBalancerKind::Application,
        address,
        vec![rule(None, vec![], forward(&[("again", 1)]))],
    );
    // Two passing checks to turn healthy, 5 s apart: a new registration stays `initial` for
    // a while, long enough to see.
    let registered = |at: i64, draining: bool| {
        let mut group = group("again", &[&web]);
        group.health_check = health_check("/health", 2, 2);
        group.health_check.interval_seconds = 5;
        group.targets[0].registered_at_ms = Some(at);
        if draining {
            group.targets[0].draining_until_ms = Some(model_now_ms() + 60_000);
        }
        group
    };
    node.publish(snapshot(vec![lb.clone()], vec![registered(1, false)]))
        .await;
    node.wait_for_state("again", &web, "healthy").await;
    // A request in flight to this registration, which is then deregistered and registered
    // again: it still finishes.
    let client = http_client();
    let held = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, address, "/hold").await })
    };
    while web.in_flight.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.publish(snapshot(vec![lb.clone()], vec![registered(1, true)]))
        .await;
    assert_eq!(
        node.handle
            .target_health(
                &group_arn("again"),
                &web.address.ip().to_string(),
                web.address.port()
            )
            .map(|h| (h.state, h.registered_at_ms)),
        Some(("healthy".to_string(), Some(1)))
    );
    // Registered again before its deadline: a new target, reported as such.
    node.publish(snapshot(vec![lb], vec![registered(2, false)]))
        .await;
    web.release.notify_waiters();
    let answer = held.await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "web"));
    let report = node
        .handle
        .target_health(
            &group_arn("again"),
            &web.address.ip().to_string(),
            web.address.port(),
        )
        .unwrap();
    assert_eq!(
        (report.state.as_str(), report.registered_at_ms),
        ("initial", Some(2))
    );
    node.wait_for_state("again", &web, "healthy").await;
}
