//! Test fixtures: in-process backends, route snapshot builders, a started node and an HTTP
//! client. Everything listens on loopback; each load balancer gets its own random 127.x.y.z
//! address so tests running in parallel never collide.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb::{LoadBalancerConfig, LoadBalancerHandle, LoadBalancerNode, MemoryControlPlane};
use model::elb::*;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A backend answering `<name>` on every path, except:
/// - `/health`: the status in `health_status`;
/// - `/hold`: answers only after `release` is notified;
/// - `/slow`: answers after `delay_ms`;
/// - `/login` and `…/login`: also set the application cookie `SESSION=<name>`.
///
/// Answers echo `x-forwarded-*`, `x-amzn-trace-id`, `host` and the HTTP version back as
/// `x-seen-*` headers, and the names of all the request's headers as `x-seen-names`.
pub struct Backend {
    pub address: SocketAddr,
    pub name: String,
    pub health_status: Arc<AtomicU16>,
    pub hits: Arc<AtomicUsize>,
    pub in_flight: Arc<AtomicUsize>,
    pub release: Arc<Notify>,
    pub delay_ms: Arc<AtomicU64>,
    pub stop: CancellationToken,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn backend(name: &str) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = Backend {
        address: listener.local_addr().unwrap(),
        name: name.to_string(),
        health_status: Arc::new(AtomicU16::new(200)),
        hits: Arc::new(AtomicUsize::new(0)),
        in_flight: Arc::new(AtomicUsize::new(0)),
        release: Arc::new(Notify::new()),
        delay_ms: Arc::new(AtomicU64::new(2_000)),
        stop: CancellationToken::new(),
    };
    let (name, health, hits, in_flight, release, delay, stop) = (
        backend.name.clone(),
        backend.health_status.clone(),
        backend.hits.clone(),
        backend.in_flight.clone(),
        backend.release.clone(),
        backend.delay_ms.clone(),
        backend.stop.clone(),
    );
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                _ = stop.cancelled() => return,
            };
            let (name, health, hits, in_flight, release, delay) = (
                name.clone(),
                health.clone(),
                hits.clone(),
                in_flight.clone(),
                release.clone(),
                delay.clone(),
            );
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let (name, health, hits, in_flight, release, delay) = (
                            name.clone(),
                            health.clone(),
                            hits.clone(),
                            in_flight.clone(),
                            release.clone(),
                            delay.clone(),
                        );
                        async move {
                            let path = request.uri().path().to_string();
                            if path == "/health" {
                                let status = health.load(Ordering::SeqCst);
                                let mut response =
                                    hyper::Response::new(Full::new(Bytes::from("ok")));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap();
                                return Ok::<_, Infallible>(response);
                            }
                            hits.fetch_add(1, Ordering::SeqCst);
                            in_flight.fetch_add(1, Ordering::SeqCst);
                            match path.as_str() {
                                "/hold" => release.notified().await,
                                "/slow" => {
                                    tokio::time::sleep(Duration::from_millis(
                                        delay.load(Ordering::SeqCst),
                                    ))
                                    .await
                                }
                                _ => {}
                            }
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            let mut response =
                                hyper::Response::new(Full::new(Bytes::from(name.clone())));
                            let seen = response.headers_mut();
                            for header in [
                                "x-forwarded-for",
                                "x-forwarded-proto",
                                "x-forwarded-port",
                                "x-amzn-trace-id",
                                "host",
                                "x-amzn-tls-version",
                                "x-amzn-tls-cipher-suite",
                                "x-tls-cipher",
                            ] {
                                if let Some(value) = request.headers().get(header) {
                                    seen.insert(
                                        hyper::header::HeaderName::from_bytes(
                                            format!("x-seen-{header}").as_bytes(),
                                        )
                                        .unwrap(),
                                        value.clone(),
                                    );
                                }
                            }
                            seen.insert(
                                "x-seen-version",
                                format!("{:?}", request.version()).parse().unwrap(),
                            );
                            let names: Vec<&str> =
                                request.headers().keys().map(|k| k.as_str()).collect();
                            seen.insert("x-seen-names", names.join(",").parse().unwrap());
                            if path.ends_with("/framed") {
                                seen.insert("x-frame-options", "SAMEORIGIN".parse().unwrap());
                            }
                            if path.ends_with("/login") {
                                seen.insert(
                                    "set-cookie",
                                    format!("SESSION={name}; Path=/; HttpOnly").parse().unwrap(),
                                );
                            }
                            Ok(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    backend
}

/// A random loopback address and port for a load balancer's listener.
pub fn listener_address() -> SocketAddr {
    let ip = Ipv4Addr::new(
        127,
        rand::random_range(1..=254),
        rand::random_range(0..=255),
        rand::random_range(1..=254),
    );
    SocketAddr::new(IpAddr::V4(ip), rand::random_range(20_000..60_000))
}

pub fn group_arn(name: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/{name}/{:016x}",
        name.len() * 7919
    )
}

pub fn health_check(path: &str, healthy: i32, unhealthy: i32) -> HealthCheckConfig {
    HealthCheckConfig {
        path: Some(path.into()),
        interval_seconds: 1,
        timeout_seconds: 1,
        healthy_threshold_count: healthy,
        unhealthy_threshold_count: unhealthy,
        ..HealthCheckConfig::aws_default("HTTP")
    }
}

pub fn target(address: SocketAddr) -> RouteTarget {
    RouteTarget {
        id: address.ip().to_string(),
        port: address.port(),
        address: address.to_string(),
        availability_zone: None,
        draining_until_ms: None,
        registered_at_ms: None,
    }
}

pub fn group(name: &str, targets: &[&Backend]) -> TargetGroupRoutes {
    TargetGroupRoutes {
        arn: group_arn(name),
        name: name.into(),
        dimension: format!("targetgroup/{name}/{:016x}", name.len() * 7919),
        protocol: "HTTP".into(),
        protocol_version: None,
        health_check: health_check("/health", 1, 1),
        deregistration_delay_seconds: 300,
        slow_start_seconds: 0,
        stickiness: None,
        algorithm: "round_robin".into(),
        targets: targets.iter().map(|b| target(b.address)).collect(),
        proxy_protocol_v2: false,
        connection_termination: false,
    }
}

pub fn forward(groups: &[(&str, u32)]) -> RouteAction {
    RouteAction::Forward {
        target_groups: groups
            .iter()
            .map(|(name, weight)| WeightedTargetGroup {
                arn: group_arn(name),
                weight: *weight,
            })
            .collect(),
        stickiness_seconds: None,
    }
}

pub fn rule(
    priority: Option<i32>,
    conditions: Vec<RouteCondition>,
    action: RouteAction,
) -> RouteRule {
    RouteRule {
        arn: format!(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener-rule/app/web/1/1/{}",
            priority.unwrap_or(0)
        ),
        priority,
        conditions,
        action,
    }
}

pub fn load_balancer(
    name: &str,
    kind: LoadBalancerKind,
    address: SocketAddr,
    rules: Vec<RouteRule>,
) -> LoadBalancerRoutes {
    let prefix = match kind {
        LoadBalancerKind::Application => "app",
        LoadBalancerKind::Network => "net",
    };
    LoadBalancerRoutes {
        arn: format!("arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/{prefix}/{name}/50dc6c495c0c9188"),
        name: name.into(),
        kind,
        address: address.ip().to_string(),
        dimension: format!("{prefix}/{name}/50dc6c495c0c9188"),
        idle_timeout_seconds: 60,
        listeners: vec![ListenerRoutes {
            arn: format!("arn:aws:elasticloadbalancing:us-east-1:000000000000:listener/{prefix}/{name}/50dc6c495c0c9188/1"),
            port: address.port(),
            protocol: match kind {
                LoadBalancerKind::Application => "HTTP".into(),
                LoadBalancerKind::Network => "TCP".into(),
            },
            rules,
            idle_timeout_seconds: None,
            response_headers: ResponseHeaderSettings::default(),
            tls: None,
            tls_header_names: None,
        }],
        http: HttpAttributes::default(),
    }
}

/// A load balancer whose one listener, on `address`, forwards everything to `group`.
pub fn forwarding_to(
    name: &str,
    kind: LoadBalancerKind,
    address: SocketAddr,
    group: &str,
) -> LoadBalancerRoutes {
    load_balancer(
        name,
        kind,
        address,
        vec![rule(None, vec![], forward(&[(group, 1)]))],
    )
}

pub fn snapshot(
    load_balancers: Vec<LoadBalancerRoutes>,
    target_groups: Vec<TargetGroupRoutes>,
) -> RouteSnapshot {
    RouteSnapshot {
        revision: 0,
        now_ms: 0,
        load_balancers,
        target_groups,
    }
}

pub struct Node {
    pub control_plane: Arc<MemoryControlPlane>,
    pub handle: LoadBalancerHandle,
    pub cancel: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Node {
    pub async fn start() -> Node {
        Node::start_with(|_| {}).await
    }

    /// A node whose configuration `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut LoadBalancerConfig)) -> Node {
        let control_plane = Arc::new(MemoryControlPlane::new());
        let cancel = CancellationToken::new();
        let mut config = LoadBalancerConfig::new("test-node");
        config.health_report_interval = Duration::from_millis(300);
        config.metrics_interval = Duration::from_millis(300);
        config.routes_wait = Duration::from_secs(1);
        config.bind_retry_interval = Duration::from_millis(200);
        adjust(&mut config);
        let handle = LoadBalancerNode::start(
            config,
            control_plane.clone(),
            control_plane.clone(),
            cancel.clone(),
        );
        Node {
            control_plane,
            handle,
            cancel,
        }
    }

    /// Publishes `snapshot` and waits until it is served.
    pub async fn publish(&self, snapshot: RouteSnapshot) {
        let revision = self.control_plane.publish(snapshot);
        tokio::time::timeout(
            Duration::from_secs(10),
            self.handle.wait_for_revision(revision),
        )
        .await
        .expect("the node serves the snapshot");
    }

    /// Waits until the backend's state is `state`.
    pub async fn wait_for_state(&self, group: &str, backend: &Backend, state: &str) {
        self.wait_for_target(group, backend.address, state).await;
    }

    /// Waits until the target at `address` in `group` is `state`; what the node then reports
    /// of it.
    pub async fn wait_for_target(
        &self,
        group: &str,
        address: SocketAddr,
        state: &str,
    ) -> TargetHealthReport {
        let arn = group_arn(group);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let current =
                self.handle
                    .target_health(&arn, &address.ip().to_string(), address.port());
            if let Some(health) = current.as_ref().filter(|h| h.state == state) {
                return health.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "target {address} stays {current:?}, not {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Node {
    /// The datums named `name` that the node has reported so far and `keep` accepts.
    pub fn datums(&self, name: &str, keep: impl Fn(&MetricDatum) -> bool) -> Vec<MetricDatum> {
        self.control_plane
            .metric_reports()
            .iter()
            .flat_map(|r| r.datums.clone())
            .filter(|d| d.metric_name == name && keep(d))
            .collect()
    }

    /// The sum of those datums' sums.
    pub fn metric_sum(&self, name: &str, keep: impl Fn(&MetricDatum) -> bool) -> f64 {
        self.datums(name, keep).iter().map(|d| d.sum).sum()
    }

    /// Waits (10 s at most) until [`Node::metric_sum`] reaches `wanted`; the sum then, which
    /// callers compare with `wanted` to see nothing more was counted.
    pub async fn wait_for_metric_sum(
        &self,
        name: &str,
        keep: impl Fn(&MetricDatum) -> bool,
        wanted: f64,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reported = self.metric_sum(name, &keep);
            if reported >= wanted {
                return reported;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {reported} reported, waiting for {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Datums of a Network Load Balancer.
pub fn nlb_datum(datum: &MetricDatum) -> bool {
    datum.namespace == "AWS/NetworkELB"
}

/// Asserts that `health` is unhealthy because its checks got `codes` (as AWS words it).
pub fn assert_code_mismatch(health: &TargetHealthReport, codes: &str) {
    assert_eq!(
        health.reason.as_deref(),
        Some("Target.ResponseCodeMismatch")
    );
    let description = format!("Health checks failed with these codes: [{codes}]");
    assert_eq!(health.description.as_deref(), Some(description.as_str()));
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A client speaking HTTP/2 with prior knowledge (h2c).
pub fn http2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

pub async fn send(client: &HttpClient, request: hyper::Request<Full<Bytes>>) -> Answer {
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("the load balancer answers in time")
        .expect("the load balancer answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &HttpClient, address: SocketAddr, path: &str) -> Answer {
    let request = hyper::Request::get(format!("http://{address}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(client, request).await
}

/// [`get`] with a `Cookie` header.
pub async fn get_with_cookie(
    client: &HttpClient,
    address: SocketAddr,
    path: &str,
    cookie: &str,
) -> Answer {
    let request = hyper::Request::get(format!("http://{address}{path}"))
        .header("cookie", cookie)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(client, request).await
}

pub fn counts(bodies: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for body in bodies {
        *counts.entry(body).or_insert(0) += 1;
    }
    counts
}
