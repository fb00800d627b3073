//! The routing table: a [`model::elb::RouteSnapshot`] compiled for serving. It is immutable
//! once built and swapped whole (readers hold an `Arc` to the table they started with), so a
//! request never sees half a snapshot. What must outlive a swap lives in the [`Registry`]:
//! each target's runtime state (health, outstanding requests, draining), and the metrics
//! counters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use model::elb::{
    ListenerTls, LoadBalancerKind, RouteAction, RouteSnapshot, RouteTarget, TargetGroupRoutes,
};
use tokio_util::sync::CancellationToken;

use crate::health::{HealthCheckSpec, HealthStatus, STATE_HEALTHY, STATE_INITIAL};
use crate::matching::Condition;
use crate::metrics::{HttpMetrics, LoadBalancerMetrics};
use crate::tls::Terminated;

/// A target group's `ProtocolVersion`: what requests are sent to its targets as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolVersion {
    /// `HTTP1` (and every network group): HTTP/1.1 over pooled keep-alive connections.
    #[default]
    Http1,
    /// `HTTP2`: HTTP/2, multiplexed on one connection per target and worker (prior knowledge
    /// over plain TCP, ALPN `h2` over TLS). Only HTTP/2 clients' requests can go there.
    Http2,
    /// `GRPC`: HTTP/2 as above, for gRPC calls (`POST`s) only; checked with gRPC calls.
    Grpc,
}

impl ProtocolVersion {
    /// The version a snapshot names (absent or unknown: HTTP/1.1).
    pub fn of(version: Option<&str>) -> ProtocolVersion {
        match version {
            Some("HTTP2") => ProtocolVersion::Http2,
            Some("GRPC") => ProtocolVersion::Grpc,
            _ => ProtocolVersion::Http1,
        }
    }

    /// Requests go to the targets as HTTP/2.
    pub fn is_h2(self) -> bool {
        self != ProtocolVersion::Http1
    }
}

const HEALTH_INITIAL: u8 = 0;
const HEALTH_HEALTHY: u8 = 1;
const HEALTH_UNHEALTHY: u8 = 2;

/// One target's state that survives snapshot swaps, keyed by target group ARN and `id:port`.
#[derive(Debug)]
pub struct TargetRuntime {
    pub group_arn: String,
    pub id: String,
    pub port: u16,
    pub address: SocketAddr,
    /// Its group speaks TLS to it (an HTTPS or TLS group; a group's protocol never changes).
    pub tls: bool,
    /// Its group's protocol version (which never changes either).
    pub version: ProtocolVersion,
    /// Which registration of `id:port` this is ([`model::elb::RouteTarget::registered_at_ms`]).
    pub registered_at_ms: Option<i64>,
    /// The `AWSALB` stickiness cookie value naming this target.
    pub cookie: u64,
    /// Routing reads this; the health checker writes it.
    health: AtomicU8,
    /// [`crate::clock::monotonic_ms`] of the last turn to healthy (slow start).
    healthy_since_ms: AtomicU64,
    /// Requests forwarded to this target and not yet answered whole (HTTP/1 clients' counted
    /// only in least-outstanding-requests groups, the ones reading it).
    pub outstanding: AtomicUsize,
    /// Set with `closed`: the request path reads this flag (an atomic load) rather than the
    /// token (a mutex).
    closed_flag: AtomicBool,
    /// Cancelled when the draining deadline passes or the target leaves the snapshot: open
    /// connections and in-flight requests to it are closed.
    pub closed: CancellationToken,
    /// Stops the health-check task.
    pub stop: CancellationToken,
    /// Idle keep-alive connections (see [`crate::upstream`]), one pool per worker thread
    /// ([`crate::workers::current_worker`]).
    pub raw_idle: Box<[Mutex<VecDeque<crate::upstream::RawIdleConnection>>]>,
    /// HTTP2 and GRPC groups: the HTTP/2 connection requests share, one per worker thread.
    /// An async lock, held while a connection is opened, so that the requests arriving
    /// meanwhile wait for it rather than each opening their own.
    pub h2: Box<[tokio::sync::Mutex<Option<crate::upstream::H2Sender>>]>,
    status: Mutex<HealthStatus>,
    health_check: RwLock<HealthCheckSpec>,
    /// The draining deadline a timer is armed for, and that timer's cancellation.
    drain_timer: Mutex<Option<(Instant, CancellationToken)>>,
}

impl TargetRuntime {
    fn new(
        group: &TargetGroupRoutes,
        spec: &HealthCheckSpec,
        target: &RouteTarget,
        address: SocketAddr,
        pool_slots: usize,
    ) -> Self {
        let key = model::elb::target_key(&target.id, i32::from(target.port));
        Self {
            group_arn: group.arn.clone(),
            id: target.id.clone(),
            port: target.port,
            address,
            tls: matches!(group.protocol.as_str(), "HTTPS" | "TLS"),
            version: ProtocolVersion::of(group.protocol_version.as_deref()),
            registered_at_ms: target.registered_at_ms,
            cookie: cookie_value(&group.arn, &key),
            health: AtomicU8::new(HEALTH_INITIAL),
            healthy_since_ms: AtomicU64::new(0),
            outstanding: AtomicUsize::new(0),
            closed_flag: AtomicBool::new(false),
            closed: CancellationToken::new(),
            stop: CancellationToken::new(),
            raw_idle: (0..pool_slots)
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            h2: (0..pool_slots)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            status: Mutex::new(HealthStatus::initial()),
            health_check: RwLock::new(spec.clone()),
            drain_timer: Mutex::new(None),
        }
    }

    /// Closes open connections and in-flight requests to the target.
    pub fn close(&self) {
        self.closed_flag.store(true, Ordering::Release);
        self.closed.cancel();
        self.clear_pools();
    }

    /// Drops the idle keep-alive connections, and the HTTP/2 connections (each closes once
    /// the requests still on it are done).
    pub fn clear_pools(&self) {
        for pool in &self.raw_idle {
            pool.lock().expect("poisoned").clear();
        }
        for connection in &self.h2 {
            // One being opened now is dropped with the target.
            if let Ok(mut connection) = connection.try_lock() {
                connection.take();
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed_flag.load(Ordering::Acquire)
    }

    pub fn key(&self) -> String {
        model::elb::target_key(&self.id, i32::from(self.port))
    }

    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Acquire) == HEALTH_HEALTHY
    }

    pub fn is_unhealthy(&self) -> bool {
        self.health.load(Ordering::Acquire) == HEALTH_UNHEALTHY
    }

    pub fn healthy_since_ms(&self) -> u64 {
        self.healthy_since_ms.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> HealthStatus {
        self.status.lock().expect("poisoned").clone()
    }

    pub fn set_health(&self, status: HealthStatus) {
        let code = match status.state {
            STATE_HEALTHY => HEALTH_HEALTHY,
            STATE_INITIAL => HEALTH_INITIAL,
            _ => HEALTH_UNHEALTHY,
        };
        if code == HEALTH_HEALTHY {
            self.healthy_since_ms.store(
                crate::clock::monotonic_ms(Instant::now()),
                Ordering::Relaxed,
            );
        }
        *self.status.lock().expect("poisoned") = status;
        self.health.store(code, Ordering::Release);
    }

    pub fn health_check(&self) -> HealthCheckSpec {
        self.health_check.read().expect("poisoned").clone()
    }

    /// Arms (or disarms) the draining deadline. Returns the token of a new timer to run with
    /// [`TargetRuntime::run_drain_timer`], when one is needed.
    pub fn set_drain_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Option<(Instant, CancellationToken)> {
        let mut timer = self.drain_timer.lock().expect("poisoned");
        match (deadline, timer.as_ref()) {
            (Some(deadline), Some((armed, _))) if *armed == deadline => None,
            (Some(deadline), _) => {
                if let Some((_, old)) = timer.take() {
                    old.cancel();
                }
                let token = CancellationToken::new();
                *timer = Some((deadline, token.clone()));
                Some((deadline, token))
            }
            (None, _) => {
                if let Some((_, old)) = timer.take() {
                    old.cancel();
                }
                None
            }
        }
    }

    /// Closes the target's connections at `deadline`, unless the timer is disarmed first.
    pub async fn run_drain_timer(self: Arc<Self>, deadline: Instant, disarmed: CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => {
                tracing::info!(target_group = %self.group_arn, target = %self.key(), "draining deadline reached, closing connections");
                self.close();
            }
            _ = disarmed.cancelled() => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// A new registration (or address) of the same target replaced this one: no more checks or
    /// pooled connections, but requests in flight to it finish (bounded by the idle timeout).
    pub fn supersede(&self) {
        self.stop.cancel();
        self.set_drain_deadline(None);
        self.clear_pools();
    }

    /// The target left the snapshot: stop checking it and close what is still open.
    pub fn retire(&self) {
        self.stop.cancel();
        self.close();
        self.set_drain_deadline(None);
    }
}

/// A stable, opaque stickiness cookie value for a target (FNV-1a of group ARN and key).
fn cookie_value(group_arn: &str, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in group_arn.bytes().chain([0]).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A target as one snapshot sees it.
#[derive(Debug, Clone)]
pub struct TargetEntry {
    pub runtime: Arc<TargetRuntime>,
    /// Deregistered: no new requests or connections.
    pub draining: bool,
}

/// A target group's stickiness (the `stickiness.*` attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStickiness {
    None,
    /// `lb_cookie`: the load balancer's `AWSALB` cookie names the target for `seconds`.
    LbCookie {
        seconds: u64,
    },
    /// `app_cookie`: once the target sets the application's cookie `name`, the load
    /// balancer's `AWSALBAPP-0` cookie names the target for `seconds` from then.
    AppCookie {
        name: String,
        seconds: u64,
    },
    /// `source_ip` (NLB): flows from one client address go to one target.
    SourceIp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
}

#[derive(Debug)]
pub struct GroupEntry {
    pub arn: String,
    /// The last segment of the ARN: the `AWSALBTG` cookie value.
    pub id: String,
    pub dimension: String,
    pub algorithm: Algorithm,
    pub slow_start: Duration,
    /// How a client keeps its target.
    pub stickiness: TargetStickiness,
    /// Flows and health checks start with a Proxy Protocol v2 header (NLB groups).
    pub proxy_protocol_v2: bool,
    /// What requests are sent to the targets as (ALB groups).
    pub version: ProtocolVersion,
    /// Flows to a deregistered target close at the end of its delay (NLB groups; ALB requests
    /// always do).
    pub connection_termination: bool,
    pub targets: Vec<TargetEntry>,
    /// The round-robin cursor.
    pub next: AtomicUsize,
}

#[derive(Debug)]
pub struct LoadBalancerEntry {
    pub arn: String,
    pub kind: LoadBalancerKind,
    pub address: IpAddr,
    pub dimension: String,
    pub idle_timeout: Duration,
    pub metrics: Arc<LoadBalancerMetrics>,
    /// `(port, protocol)` of every listener.
    pub listeners: Vec<(u16, String)>,
    /// How its HTTP requests are handled (ALBs).
    pub http: HttpSettings,
}

/// An ALB's request-handling attributes ([`model::elb::HttpAttributes`]), parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    pub xff: XffMode,
    /// Entries appended to `X-Forwarded-For` are `address:port`.
    pub xff_client_port: bool,
    pub drop_invalid_header_fields: bool,
    pub preserve_host_header: bool,
    pub http2: bool,
    /// A client connection closes after its first response once it has been open this long.
    pub client_keep_alive: Duration,
    /// Requests over TLS carry the negotiated version and cipher suite to the target.
    pub tls_headers: bool,
}

/// `routing.http.xff_header_processing.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XffMode {
    /// The client's address is appended (added when the request has none).
    Append,
    /// The request's `X-Forwarded-For` goes on unchanged (none is added).
    Preserve,
    /// No `X-Forwarded-For` reaches the target.
    Remove,
}

impl HttpSettings {
    fn of(attributes: &model::elb::HttpAttributes) -> HttpSettings {
        HttpSettings {
            xff: match attributes.xff_mode.as_str() {
                "preserve" => XffMode::Preserve,
                "remove" => XffMode::Remove,
                _ => XffMode::Append,
            },
            xff_client_port: attributes.xff_client_port,
            drop_invalid_header_fields: attributes.drop_invalid_header_fields,
            preserve_host_header: attributes.preserve_host_header,
            http2: attributes.http2,
            client_keep_alive: Duration::from_secs(attributes.client_keep_alive_seconds.max(1)),
            tls_headers: attributes.tls_version_and_cipher_suite,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings::of(&model::elb::HttpAttributes::default())
    }
}

/// Whether a header name is one ALB calls valid (`drop_invalid_header_fields`): letters,
/// digits and hyphens only.
pub fn valid_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// The `Host` value a target gets: the client's, with the listener's port added when the
/// client's has none, the port is not HTTP's 80 and the load balancer does not preserve
/// `Host` (as ALB does by default). `None`: unchanged.
pub fn host_with_port(host: &str, port: u16, settings: &HttpSettings) -> Option<String> {
    if settings.preserve_host_header || port == 80 {
        return None;
    }
    // `[::1]` has no port, `[::1]:8080` and `example.com:8080` have one.
    let has_port = match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    };
    (!has_port && !host.is_empty()).then(|| format!("{host}:{port}"))
}

#[derive(Debug)]
pub struct WeightedGroup {
    pub group: Arc<GroupEntry>,
    pub weight: u32,
    /// The (load balancer, target group) pair's counters.
    pub metrics: Arc<HttpMetrics>,
}

#[derive(Debug)]
pub struct Forward {
    /// Only groups with weight > 0.
    pub groups: Vec<WeightedGroup>,
    pub total_weight: u32,
    /// Target group stickiness duration in seconds.
    pub stickiness_seconds: Option<u64>,
}

#[derive(Debug)]
pub enum Action {
    Forward(Forward),
    Redirect {
        protocol: String,
        host: String,
        port: String,
        path: String,
        query: String,
        status: http::StatusCode,
    },
    FixedResponse {
        status: http::StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
}

#[derive(Debug)]
pub struct Rule {
    pub conditions: Vec<Condition>,
    pub action: Action,
}

#[derive(Debug)]
pub struct ListenerTable {
    pub load_balancer: Arc<LoadBalancerEntry>,
    pub port: u16,
    /// `X-Forwarded-Port`.
    pub port_header: HeaderValue,
    pub rules: Vec<Rule>,
    /// How long a connection may stay idle: the listener's own, else its load balancer's.
    pub idle_timeout: Duration,
    /// The listener's `routing.http.response.*` attributes.
    pub response_headers: ResponseHeaders,
    /// HTTPS and TLS listeners: the handshake's configuration (connections are TLS first).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The names of the TLS version and cipher-suite request headers: as written on HTTP/1,
    /// and for HTTP/2.
    pub tls_header_names: [(String, HeaderName); 2],
}

/// AWS's names for the TLS request headers.
const TLS_HEADER_NAMES: (&str, &str) = ("X-Amzn-Tls-Version", "X-Amzn-Tls-Cipher-Suite");

/// A listener's TLS request-header names, AWS's unless renamed (and valid).
fn tls_header_names(renamed: Option<&(String, String)>) -> [(String, HeaderName); 2] {
    let (version, cipher_suite) = renamed
        .cloned()
        .unwrap_or_else(|| (TLS_HEADER_NAMES.0.into(), TLS_HEADER_NAMES.1.into()));
    [
        (version, TLS_HEADER_NAMES.0),
        (cipher_suite, TLS_HEADER_NAMES.1),
    ]
    .map(
        |(name, default)| match HeaderName::try_from(name.as_str()) {
            Ok(parsed) => (name, parsed),
            Err(_) => (
                default.to_string(),
                HeaderName::from_bytes(default.as_bytes()).expect("AWS's header names are valid"),
            ),
        },
    )
}

/// AWS's default response-header attributes (no header set, `Server` on), for answers made
/// before a listener is known.
pub static DEFAULT_RESPONSE_HEADERS: ResponseHeaders = ResponseHeaders {
    set: Vec::new(),
    server: true,
};

/// A listener's response-header attributes, as the data path applies them.
#[derive(Debug, Clone)]
pub struct ResponseHeaders {
    /// Set on every response to a client, replacing the target's own: the name as written
    /// on HTTP/1, the name for HTTP/2, and the value.
    pub set: Vec<(String, HeaderName, HeaderValue)>,
    /// The load balancer's own answers (errors, fixed responses, redirects) say
    /// `Server: awselb/2.0`.
    pub server: bool,
}

impl ResponseHeaders {
    fn of(settings: &model::elb::ResponseHeaderSettings) -> ResponseHeaders {
        let set = settings
            .set
            .iter()
            .filter_map(|(name, value)| {
                let parsed = HeaderName::try_from(name.as_str()).ok()?;
                Some((
                    name.clone(),
                    parsed,
                    HeaderValue::try_from(value.as_str()).ok()?,
                ))
            })
            .collect();
        ResponseHeaders {
            set,
            server: settings.server,
        }
    }

    /// Whether a target's header of this name gives way to one set here.
    pub fn replaces(&self, name: &str) -> bool {
        self.set
            .iter()
            .any(|(_, set, _)| set.as_str().eq_ignore_ascii_case(name))
    }
}

/// A (load balancer, target group) pair, for host-count metrics.
#[derive(Debug)]
pub struct PairEntry {
    pub load_balancer: Arc<LoadBalancerEntry>,
    pub group: Arc<GroupEntry>,
}

#[derive(Debug, Default)]
pub struct RoutingTable {
    pub revision: i64,
    /// By the address the listener binds.
    pub listeners: HashMap<SocketAddr, ListenerTable>,
    pub load_balancers: Vec<Arc<LoadBalancerEntry>>,
    pub groups: Vec<Arc<GroupEntry>>,
    pub pairs: Vec<PairEntry>,
    /// Load balancers (by ARN) with a listener whose certificates cannot be used, and why:
    /// they are reported failed, and that listener is not served.
    pub tls_failures: HashMap<String, String>,
}

impl RoutingTable {
    /// How long a connection to the listener on `local` may stay idle (AWS's 60 s when no
    /// listener is there any more).
    pub fn idle_timeout(&self, local: &SocketAddr) -> Duration {
        self.listeners
            .get(local)
            .map_or(Duration::from_secs(60), |l| l.idle_timeout)
    }

    /// The request-handling settings of the load balancer listening on `local`.
    pub fn http_settings(&self, local: &SocketAddr) -> HttpSettings {
        self.listeners
            .get(local)
            .map_or_else(HttpSettings::default, |l| l.load_balancer.http)
    }
}

/// State kept across snapshots.
#[derive(Debug, Default)]
pub struct Registry {
    /// Raw connection pools per target ([`crate::workers::Workers::slots`]).
    pool_slots: usize,
    targets: HashMap<(String, String), Arc<TargetRuntime>>,
    load_balancer_metrics: HashMap<String, Arc<LoadBalancerMetrics>>,
    pair_metrics: HashMap<(String, String), Arc<HttpMetrics>>,
    /// TLS configurations by what they were built from: parsing keys and certificates again
    /// for every snapshot would be wasted work (and would change nothing).
    tls_configs: HashMap<(ListenerTls, Terminated), TlsConfig>,
}

/// A listener's TLS configuration, or why its certificates cannot be used.
type TlsConfig = Result<Arc<rustls::ServerConfig>, String>;

/// What a compile changed in the registry.
#[derive(Debug, Default)]
pub struct Changes {
    /// Targets to start health checks for.
    pub added: Vec<Arc<TargetRuntime>>,
    /// Every current target with its local draining deadline (`None`: not draining).
    pub deadlines: Vec<(Arc<TargetRuntime>, Option<Instant>)>,
}

impl Registry {
    pub fn with_pool_slots(pool_slots: usize) -> Registry {
        Registry {
            pool_slots: pool_slots.max(1),
            ..Registry::default()
        }
    }

    /// Every target runtime currently known.
    pub fn targets(&self) -> impl Iterator<Item = &Arc<TargetRuntime>> {
        self.targets.values()
    }

    /// Compiles `snapshot`, received at `received_at` (its draining deadlines are translated
    /// from the control plane's clock to ours through `snapshot.now_ms`).
    pub fn compile(
        &mut self,
        snapshot: &RouteSnapshot,
        received_at: Instant,
    ) -> (RoutingTable, Changes) {
        let mut changes = Changes::default();
        let mut seen_targets = HashSet::new();
        let mut groups: HashMap<&str, Arc<GroupEntry>> = HashMap::new();
        for group in &snapshot.target_groups {
            let version = ProtocolVersion::of(group.protocol_version.as_deref());
            let mut spec = HealthCheckSpec::from_config(&group.health_check);
            spec.proxy_protocol = group.proxy_protocol_v2;
            spec.version = version;
            let mut targets = Vec::with_capacity(group.targets.len());
            for target in &group.targets {
                let Ok(address) = target.address.parse::<SocketAddr>() else {
                    tracing::warn!(target_group = %group.arn, target = %target.id, address = %target.address, "target address is not ip:port, skipping it");
                    continue;
                };
                let key = (
                    group.arn.clone(),
                    model::elb::target_key(&target.id, i32::from(target.port)),
                );
                let existing = self.targets.get(&key).filter(|runtime| {
                    // A new address or a new registration (also of a target still draining),
                    // or a target re-registered after its deadline closed it, starts over as a
                    // new target (as a re-registration does in AWS).
                    runtime.address == address
                        && runtime.registered_at_ms == target.registered_at_ms
                        && (target.draining_until_ms.is_some() || !runtime.is_closed())
                });
                let runtime = match existing {
                    Some(runtime) => {
                        let mut current = runtime.health_check.write().expect("poisoned");
                        if *current != spec {
                            *current = spec.clone();
                        }
                        drop(current);
                        runtime.clone()
                    }
                    None => {
                        let runtime = Arc::new(TargetRuntime::new(
                            group,
                            &spec,
                            target,
                            address,
                            self.pool_slots.max(1),
                        ));
                        if let Some(old) = self.targets.insert(key.clone(), runtime.clone()) {
                            old.supersede();
                        }
                        changes.added.push(runtime.clone());
                        runtime
                    }
                };
                let deadline = target.draining_until_ms.map(|until| {
                    let left = until.saturating_sub(snapshot.now_ms).max(0) as u64;
                    received_at + Duration::from_millis(left)
                });
                changes.deadlines.push((runtime.clone(), deadline));
                seen_targets.insert(key);
                targets.push(TargetEntry {
                    runtime,
                    draining: target.draining_until_ms.is_some(),
                });
            }
            let algorithm = if group.algorithm == "least_outstanding_requests" {
                Algorithm::LeastOutstandingRequests
            } else {
                Algorithm::RoundRobin
            };
            let stickiness = match group.stickiness.as_ref() {
                Some(s) if s.kind == "lb_cookie" => TargetStickiness::LbCookie {
                    seconds: s.duration_seconds,
                },
                Some(s) if s.kind == "app_cookie" => match &s.cookie_name {
                    Some(name) if !name.is_empty() => TargetStickiness::AppCookie {
                        name: name.clone(),
                        seconds: s.duration_seconds,
                    },
                    _ => TargetStickiness::None,
                },
                Some(s) if s.kind == "source_ip" => TargetStickiness::SourceIp,
                _ => TargetStickiness::None,
            };
            groups.insert(
                &group.arn,
                Arc::new(GroupEntry {
                    arn: group.arn.clone(),
                    id: model::elb::parse_target_group_arn(&group.arn)
                        .map(|(_, id)| id.to_string())
                        .unwrap_or_else(|| group.name.clone()),
                    dimension: group.dimension.clone(),
                    algorithm,
                    slow_start: Duration::from_secs(group.slow_start_seconds),
                    stickiness,
                    proxy_protocol_v2: group.proxy_protocol_v2,
                    version,
                    connection_termination: group.connection_termination,
                    targets,
                    next: AtomicUsize::new(0),
                }),
            );
        }
        self.targets.retain(|key, runtime| {
            let keep = seen_targets.contains(key);
            if !keep {
                runtime.retire();
            }
            keep
        });

        let mut table = RoutingTable {
            revision: snapshot.revision,
            groups: groups.values().cloned().collect(),
            ..RoutingTable::default()
        };
        let mut used_pairs = HashSet::new();
        let mut used_load_balancers = HashSet::new();
        let mut used_tls = HashSet::new();
        for lb in &snapshot.load_balancers {
            let Ok(address) = lb.address.parse::<IpAddr>() else {
                tracing::warn!(load_balancer = %lb.arn, address = %lb.address, "load balancer address is not an IP address, skipping it");
                continue;
            };
            let metrics = self
                .load_balancer_metrics
                .entry(lb.arn.clone())
                .or_default()
                .clone();
            used_load_balancers.insert(lb.arn.clone());
            let entry = Arc::new(LoadBalancerEntry {
                arn: lb.arn.clone(),
                kind: lb.kind,
                address,
                dimension: lb.dimension.clone(),
                idle_timeout: Duration::from_secs(lb.idle_timeout_seconds.max(1)),
                metrics,
                listeners: lb
                    .listeners
                    .iter()
                    .map(|l| (l.port, l.protocol.clone()))
                    .collect(),
                http: HttpSettings::of(&lb.http),
            });
            table.load_balancers.push(entry.clone());
            for listener in &lb.listeners {
                let tls = match &listener.tls {
                    Some(tls) => {
                        let terminated = match lb.kind {
                            LoadBalancerKind::Application => Terminated::Http {
                                http2: entry.http.http2,
                            },
                            LoadBalancerKind::Network => Terminated::Stream,
                        };
                        let config = self
                            .tls_configs
                            .entry((tls.clone(), terminated))
                            .or_insert_with(|| crate::tls::server_config(tls, terminated));
                        used_tls.insert((tls, terminated));
                        match config {
                            Ok(config) => Some(config.clone()),
                            Err(reason) => {
                                tracing::warn!(load_balancer = %lb.arn, port = listener.port, %reason, "listener certificates cannot be used");
                                table.tls_failures.entry(lb.arn.clone()).or_insert_with(|| {
                                    format!("listener on port {}: {reason}", listener.port)
                                });
                                continue;
                            }
                        }
                    }
                    None => None,
                };
                let mut rules = Vec::with_capacity(listener.rules.len());
                for rule in &listener.rules {
                    let action = match &rule.action {
                        RouteAction::Forward {
                            target_groups,
                            stickiness_seconds,
                        } => {
                            let mut weighted = Vec::new();
                            for wanted in target_groups.iter().filter(|g| g.weight > 0) {
                                let Some(group) = groups.get(wanted.arn.as_str()) else {
                                    tracing::warn!(rule = %rule.arn, target_group = %wanted.arn, "rule forwards to a target group missing from the snapshot");
                                    continue;
                                };
                                let pair = (lb.arn.clone(), wanted.arn.clone());
                                let metrics =
                                    self.pair_metrics.entry(pair.clone()).or_default().clone();
                                if used_pairs.insert(pair) {
                                    table.pairs.push(PairEntry {
                                        load_balancer: entry.clone(),
                                        group: group.clone(),
                                    });
                                }
                                weighted.push(WeightedGroup {
                                    group: group.clone(),
                                    weight: wanted.weight,
                                    metrics,
                                });
                            }
                            Action::Forward(Forward {
                                total_weight: weighted.iter().map(|g| g.weight).sum(),
                                groups: weighted,
                                stickiness_seconds: stickiness_seconds.filter(|s| *s > 0),
                            })
                        }
                        RouteAction::Redirect {
                            protocol,
                            host,
                            port,
                            path,
                            query,
                            status_code,
                        } => Action::Redirect {
                            protocol: protocol.clone(),
                            host: host.clone(),
                            port: port.clone(),
                            path: path.clone(),
                            query: query.clone(),
                            status: if *status_code == 301 {
                                http::StatusCode::MOVED_PERMANENTLY
                            } else {
                                http::StatusCode::FOUND
                            },
                        },
                        RouteAction::FixedResponse {
                            status_code,
                            content_type,
                            message_body,
                        } => Action::FixedResponse {
                            status: http::StatusCode::from_u16(*status_code)
                                .unwrap_or(http::StatusCode::OK),
                            content_type: content_type
                                .as_deref()
                                .and_then(|c| HeaderValue::from_str(c).ok()),
                            body: Bytes::from(message_body.clone().unwrap_or_default()),
                        },
                    };
                    rules.push(Rule {
                        conditions: rule.conditions.iter().map(Condition::compile).collect(),
                        action,
                    });
                }
                table.listeners.insert(
                    SocketAddr::new(address, listener.port),
                    ListenerTable {
                        idle_timeout: listener
                            .idle_timeout_seconds
                            .map_or(entry.idle_timeout, |s| Duration::from_secs(s.max(1))),
                        load_balancer: entry.clone(),
                        port: listener.port,
                        port_header: HeaderValue::from(listener.port),
                        rules,
                        response_headers: ResponseHeaders::of(&listener.response_headers),
                        tls,
                        tls_header_names: tls_header_names(listener.tls_header_names.as_ref()),
                    },
                );
            }
        }
        self.pair_metrics
            .retain(|pair, _| used_pairs.contains(pair));
        self.tls_configs
            .retain(|(tls, terminated), _| used_tls.contains(&(tls, *terminated)));
        self.load_balancer_metrics
            .retain(|arn, _| used_load_balancers.contains(arn));
        (table, changes)
    }
}

/// The current routing table, swapped whole.
#[derive(Debug, Default)]
pub struct Routes {
    current: RwLock<Arc<RoutingTable>>,
    /// Bumped at each swap: a connection keeps its table until this changes (one atomic load
    /// per request instead of a lock and a reference count).
    generation: AtomicU64,
}

impl Routes {
    pub fn current(&self) -> Arc<RoutingTable> {
        self.current.read().expect("poisoned").clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn swap(&self, table: RoutingTable) {
        let table = Arc::new(table);
        // The old table is dropped outside the lock.
        let _old = std::mem::replace(&mut *self.current.write().expect("poisoned"), table);
        self.touch();
    }

    /// A new generation without a new table: connections look at their shutdown token again.
    pub fn touch(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
