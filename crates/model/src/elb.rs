//! Elastic Load Balancing v2 as Wharf shares it between its parts:
//!
//! - the target group record and the observed target health, which the ELBv2 API writes and
//!   ECS's service scheduler also writes (it registers and deregisters its tasks) and reads
//!   (a task is healthy for a deployment only when its targets are);
//! - the store keys of every ELBv2 record;
//! - the route snapshot and the load-balancer protocol: what a `wharf lb` data plane fetches
//!   from the control plane, and what it reports back (target health, load balancers it serves,
//!   request metrics).
//!
//! The load-balancer protocol is served on the common endpoint as JSON 1.1 under the SigV4
//! signing name `wharf` (as the agent protocol) and the target prefix `TARGET_PREFIX`:
//!
//! - `GetRoutes`: a long poll. Answers at once when any ELBv2 record (or a container instance
//!   address an instance target needs) changed after `sinceRevision` (or when it is 0), else
//!   waits up to `waitSeconds`. The answer is always the whole snapshot.
//! - `ReportTargetHealth`: the health-check results of one data-plane node, and which load
//!   balancers it serves (a load balancer becomes `active` once a node serves all its listeners).
//! - `ReportRequestMetrics`: aggregated request metrics, stored as CloudWatch metrics in the
//!   `AWS/ApplicationELB` and `AWS/NetworkELB` namespaces.

use std::collections::BTreeMap;

pub const TARGET_PREFIX: &str = "WharfLoadBalancer_20261122";

/// The longest a `GetRoutes` call waits.
pub const MAX_ROUTES_WAIT_SECONDS: u64 = 25;

/// Store keys of the ELBv2 records. Everything lives under `PREFIX`, so one watch sees every
/// change a data plane must hear about.
pub mod keys {
    pub const PREFIX: &str = "elbv2/";
    pub const LOAD_BALANCER_PREFIX: &str = "elbv2/lb/";
    pub const TARGET_GROUP_PREFIX: &str = "elbv2/tg/";
    pub const LISTENER_PREFIX: &str = "elbv2/listener/";
    pub const RULE_PREFIX: &str = "elbv2/rule/";
    pub const HEALTH_PREFIX: &str = "elbv2/health/";

    /// `elbv2/lb/<name>`: the load balancer record (names are unique per account and region).
    pub fn load_balancer(name: &str) -> String {
        format!("{LOAD_BALANCER_PREFIX}{name}")
    }

    /// `elbv2/tg/<name>`: a [`super::TargetGroupRecord`].
    pub fn target_group(name: &str) -> String {
        format!("{TARGET_GROUP_PREFIX}{name}")
    }

    /// `elbv2/listener/<load balancer id>/<listener id>`.
    pub fn listener(load_balancer_id: &str, listener_id: &str) -> String {
        format!("{LISTENER_PREFIX}{load_balancer_id}/{listener_id}")
    }

    /// `elbv2/rule/<listener id>/<rule id>`.
    pub fn rule(listener_id: &str, rule_id: &str) -> String {
        format!("{RULE_PREFIX}{listener_id}/{rule_id}")
    }

    /// `elbv2/health/<target group id>`: the observed [`super::TargetHealthRecord`], written
    /// only from data-plane reports (observed state apart from desired state).
    pub fn target_health(target_group_id: &str) -> String {
        format!("{HEALTH_PREFIX}{target_group_id}")
    }
}

/// The parts of a target group ARN
/// (`arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>`): `(name, id)`.
pub fn parse_target_group_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.split_once(":targetgroup/")?.1;
    let (name, id) = rest.split_once('/')?;
    (!name.is_empty() && !id.is_empty() && !id.contains('/')).then_some((name, id))
}

/// A target group's health-check settings, with AWS's defaults already applied.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckConfig {
    pub enabled: bool,
    /// `HTTP`, `HTTPS` or `TCP`.
    pub protocol: String,
    /// `traffic-port` or a port number.
    pub port: String,
    /// HTTP(S) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub interval_seconds: i32,
    pub timeout_seconds: i32,
    pub healthy_threshold_count: i32,
    pub unhealthy_threshold_count: i32,
    /// `Matcher.HttpCode`, e.g. `200`, `200-299`, `200,302`; HTTP(S) checks of HTTP1 and
    /// HTTP2 groups, and of network groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher_http_code: Option<String>,
    /// `Matcher.GrpcCode`, e.g. `12`, `0-99`, `0,12`: the gRPC statuses a check of a `GRPC`
    /// group passes with (such a group has no `HttpCode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher_grpc_code: Option<String>,
}

impl HealthCheckConfig {
    /// AWS's health check for a new target group of `protocol`: an HTTP or HTTPS group gets
    /// `GET /` over its own protocol expecting 200, any other group a TCP connect; every 30 s,
    /// healthy after 5 passes, unhealthy after 2 failures, timing out after 5 s (HTTP) or 10 s.
    pub fn aws_default(protocol: &str) -> HealthCheckConfig {
        let http = matches!(protocol, "HTTP" | "HTTPS");
        HealthCheckConfig {
            enabled: true,
            protocol: if http { protocol } else { "TCP" }.to_string(),
            port: "traffic-port".to_string(),
            path: http.then(|| "/".to_string()),
            interval_seconds: 30,
            timeout_seconds: if http { 5 } else { 10 },
            healthy_threshold_count: 5,
            unhealthy_threshold_count: 2,
            matcher_http_code: http.then(|| "200".to_string()),
            matcher_grpc_code: None,
        }
    }

    /// AWS's health check for a new `GRPC` group of `protocol` (`HTTP` or `HTTPS`): a gRPC call
    /// of `/AWS.ALB/healthcheck`, a method no service has, so the target answers `12`
    /// (`UNIMPLEMENTED`), which is what the check expects.
    pub fn aws_default_grpc(protocol: &str) -> HealthCheckConfig {
        HealthCheckConfig {
            path: Some(GRPC_HEALTH_CHECK_PATH.to_string()),
            matcher_http_code: None,
            matcher_grpc_code: Some("12".to_string()),
            ..HealthCheckConfig::aws_default(protocol)
        }
    }
}

/// The path a `GRPC` group's health check calls unless told otherwise.
pub const GRPC_HEALTH_CHECK_PATH: &str = "/AWS.ALB/healthcheck";

/// One registered target. ECS-registered targets name their task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredTarget {
    /// An instance id (`i-…`) or an IPv4 address, as the target type says.
    pub id: String,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub registered_at_ms: i64,
    /// Set by DeregisterTargets: the target drains until this plus the group's
    /// `deregistration_delay.timeout_seconds`, then it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistered_at_ms: Option<i64>,
    /// The ECS task this target is, when a service registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
}

impl RegisteredTarget {
    /// `<id>:<port>`, the key of a target within its group.
    pub fn key(&self) -> String {
        target_key(&self.id, self.port)
    }

    /// Whether the target still exists at `now_ms` (registered, or draining within the delay).
    pub fn present(&self, now_ms: i64, deregistration_delay_seconds: i64) -> bool {
        match self.deregistered_at_ms {
            None => true,
            Some(at) => now_ms < at + deregistration_delay_seconds * 1000,
        }
    }
}

pub fn target_key(id: &str, port: i32) -> String {
    format!("{id}:{port}")
}

/// A target group as stored under [`keys::target_group`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupRecord {
    pub arn: String,
    pub name: String,
    /// The last segment of the ARN.
    pub id: String,
    /// `HTTP`, `HTTPS`, `TCP`, `TLS`, `UDP`, `TCP_UDP`, `GENEVE`; absent for lambda groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// `instance`, `ip`, `lambda` or `alb`.
    pub target_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_type: Option<String>,
    pub health_check: HealthCheckConfig,
    /// Every attribute with its current value (defaults included), by key.
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    pub created_at_ms: i64,
    /// Registered and draining targets.
    #[serde(default)]
    pub targets: Vec<RegisteredTarget>,
}

pub const DEREGISTRATION_DELAY_ATTRIBUTE: &str = "deregistration_delay.timeout_seconds";

impl TargetGroupRecord {
    /// `deregistration_delay.timeout_seconds` (AWS's default 300).
    pub fn deregistration_delay_seconds(&self) -> i64 {
        self.attributes
            .get(DEREGISTRATION_DELAY_ATTRIBUTE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
    }

    /// Drop targets whose draining ended before `now_ms`; true when any was dropped.
    pub fn prune(&mut self, now_ms: i64) -> bool {
        let delay = self.deregistration_delay_seconds();
        let before = self.targets.len();
        self.targets.retain(|t| t.present(now_ms, delay));
        before != self.targets.len()
    }
}

/// Observed health of one target, as the data plane last reported it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedTargetHealth {
    /// `initial`, `healthy` or `unhealthy`.
    pub state: String,
    /// AWS's reason code (`Elb.InitialHealthChecking`, `Target.ResponseCodeMismatch`,
    /// `Target.Timeout`, `Target.FailedHealthChecks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the state last changed.
    pub since_ms: i64,
}

/// The observed health of a group's targets, keyed by [`target_key`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealthRecord {
    #[serde(default)]
    pub targets: BTreeMap<String, ObservedTargetHealth>,
}

impl TargetHealthRecord {
    /// What was observed of `target` since it was (last) registered. An older observation
    /// belongs to an earlier target with the same `id:port` (ECS reuses host ports) and says
    /// nothing about this one: the target is still `initial`.
    pub fn observed(&self, target: &RegisteredTarget) -> Option<&ObservedTargetHealth> {
        self.targets
            .get(&target.key())
            .filter(|o| o.since_ms >= target.registered_at_ms)
    }
}

// ---- Security policies: what HTTPS and TLS listeners offer ----

/// ELBv2's security policies, newest first (DescribeSSLPolicies lists them in this order).
/// Wharf's data plane offers what rustls speaks of each: see [`ssl_policy_protocols`] and
/// [`TLS_CIPHERS`].
pub const SSL_POLICIES: &[&str] = &[
    "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext0-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-1-2021-06",
    "ELBSecurityPolicy-TLS13-1-0-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext0-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-1-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-0-FIPS-2023-04",
    "ELBSecurityPolicy-FS-1-2-Res-2020-10",
    "ELBSecurityPolicy-FS-1-2-Res-2019-08",
    "ELBSecurityPolicy-FS-1-2-2019-08",
    "ELBSecurityPolicy-FS-1-1-2019-08",
    "ELBSecurityPolicy-FS-2018-06",
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-1-2017-01",
    "ELBSecurityPolicy-2016-08",
    "ELBSecurityPolicy-TLS-1-0-2015-04",
    "ELBSecurityPolicy-2015-05",
];

/// The TLS versions the data plane offers under `policy` (OpenSSL's names, as ELBv2's
/// DescribeSSLPolicies says them): TLS 1.3 for the `TLS13-1-3` policies, TLS 1.2 and 1.3 for
/// the other `TLS13` ones, TLS 1.2 for the rest. Their TLS 1.0 and 1.1 are not offered: rustls
/// does not speak them.
pub fn ssl_policy_protocols(policy: &str) -> &'static [&'static str] {
    if policy.contains("TLS13-1-3") {
        &["TLSv1.3"]
    } else if policy.contains("TLS13") {
        &["TLSv1.2", "TLSv1.3"]
    } else {
        &["TLSv1.2"]
    }
}

/// The cipher suites the data plane offers, by TLS version, in its order of preference
/// (rustls's ring provider), with OpenSSL's names as ALB reports them.
pub const TLS_CIPHERS: &[(&str, &str)] = &[
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"),
    ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLSv1.2", "ECDHE-RSA-CHACHA20-POLY1305"),
];

// ---- The route snapshot: what a data plane serves ----

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSnapshot {
    /// The store revision this snapshot reflects; pass it back as `sinceRevision`.
    pub revision: i64,
    /// The control plane's clock when the snapshot was built, so draining deadlines
    /// (`RouteTarget::draining_until_ms`) can be compared with the data plane's own clock.
    pub now_ms: i64,
    pub load_balancers: Vec<LoadBalancerRoutes>,
    pub target_groups: Vec<TargetGroupRoutes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadBalancerKind {
    Application,
    Network,
}

/// AWS's idle timeout for an NLB's TCP flows.
pub const NLB_TCP_IDLE_TIMEOUT_SECONDS: u64 = 350;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerRoutes {
    pub arn: String,
    pub name: String,
    pub kind: LoadBalancerKind,
    /// The IPv4 address the listeners bind (also the load balancer's `DNSName`).
    pub address: String,
    /// The CloudWatch `LoadBalancer` dimension: `app/<name>/<id>` or `net/<name>/<id>`.
    pub dimension: String,
    /// How long a connection may stay idle: ALB's `idle_timeout.timeout_seconds` (default 60),
    /// [`NLB_TCP_IDLE_TIMEOUT_SECONDS`] for an NLB's TCP flows.
    pub idle_timeout_seconds: u64,
    pub listeners: Vec<ListenerRoutes>,
    /// An ALB's request-handling attributes.
    #[serde(default, skip_serializing_if = "HttpAttributes::is_default")]
    pub http: HttpAttributes,
}

/// The ALB attributes that change how the data plane handles requests; AWS's defaults when
/// absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpAttributes {
    /// `routing.http.xff_header_processing.mode`: `append`, `preserve` or `remove`.
    pub xff_mode: String,
    /// `routing.http.xff_client_port.enabled`: appended entries are `address:port`.
    pub xff_client_port: bool,
    /// `routing.http.drop_invalid_header_fields.enabled`: header names other than letters,
    /// digits and hyphens are not forwarded.
    pub drop_invalid_header_fields: bool,
    /// `routing.http.preserve_host_header.enabled`: otherwise a `Host` without a port gets
    /// the listener's, when that is not 80.
    pub preserve_host_header: bool,
    /// `routing.http2.enabled`: HTTP/2 clients are served.
    pub http2: bool,
    /// `client_keep_alive.seconds`: a client connection closes after its first response this
    /// long after it opened.
    pub client_keep_alive_seconds: u64,
    /// `routing.http.x_amzn_tls_version_and_cipher_suite.enabled`: requests that came over
    /// TLS tell the target the version and cipher suite negotiated.
    pub tls_version_and_cipher_suite: bool,
}

impl Default for HttpAttributes {
    fn default() -> Self {
        HttpAttributes {
            xff_mode: "append".into(),
            xff_client_port: false,
            drop_invalid_header_fields: false,
            preserve_host_header: false,
            http2: true,
            client_keep_alive_seconds: 3600,
            tls_version_and_cipher_suite: false,
        }
    }
}

impl HttpAttributes {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerRoutes {
    pub arn: String,
    pub port: u16,
    /// `HTTP`, `HTTPS`, `TCP`, `TLS`, `UDP`, `TCP_UDP`.
    pub protocol: String,
    /// Rules in evaluation order: by priority, the default rule (no conditions) last.
    pub rules: Vec<RouteRule>,
    /// The listener's own idle timeout where it has one (an NLB TCP listener's
    /// `tcp.idle_timeout.seconds`); otherwise its load balancer's applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u64>,
    /// An ALB listener's response-header attributes (`routing.http.response.*`).
    #[serde(default, skip_serializing_if = "ResponseHeaderSettings::is_default")]
    pub response_headers: ResponseHeaderSettings,
    /// HTTPS and TLS listeners: what the data plane terminates TLS with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// An HTTPS listener's names for the TLS version and cipher-suite request headers
    /// (`routing.http.request.x_amzn_tls_*.header_name`) when renamed; None: AWS's
    /// `X-Amzn-Tls-Version` and `X-Amzn-Tls-Cipher-Suite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_header_names: Option<(String, String)>,
}

/// An HTTPS or TLS listener's TLS settings, as the data plane needs them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// The security policy (`ELBSecurityPolicy-…`): which TLS versions are offered.
    pub ssl_policy: String,
    /// The default certificate first, then the listener's other certificates, among which
    /// the client's server name (SNI) picks.
    pub certificates: Vec<ServerCertificate>,
    /// A TLS listener's ALPN policy (`HTTP1Only`, `HTTP2Only`, `HTTP2Optional`,
    /// `HTTP2Preferred`); None offers no ALPN. HTTPS listeners offer `h2` (unless the load
    /// balancer's `routing.http2.enabled` is off) and `http/1.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn_policy: Option<String>,
}

/// One certificate of a listener, from ACM: its chain and private key, PEM.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerCertificate {
    pub arn: String,
    /// The DNS names it is valid for (wildcards as `*.example.com`), for SNI.
    pub names: Vec<String>,
    /// The certificate, then its intermediates.
    pub chain_pem: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: snapshots are logged at debug level.
        f.debug_struct("ServerCertificate")
            .field("arn", &self.arn)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// The listener attributes naming a header the load balancer sets on every response to the
/// client (`routing.http.response.<name>.header_value`), with the header each sets.
pub const RESPONSE_HEADER_ATTRIBUTES: [(&str, &str); 10] = [
    (
        "routing.http.response.strict_transport_security.header_value",
        "Strict-Transport-Security",
    ),
    (
        "routing.http.response.access_control_allow_origin.header_value",
        "Access-Control-Allow-Origin",
    ),
    (
        "routing.http.response.access_control_allow_methods.header_value",
        "Access-Control-Allow-Methods",
    ),
    (
        "routing.http.response.access_control_allow_headers.header_value",
        "Access-Control-Allow-Headers",
    ),
    (
        "routing.http.response.access_control_allow_credentials.header_value",
        "Access-Control-Allow-Credentials",
    ),
    (
        "routing.http.response.access_control_expose_headers.header_value",
        "Access-Control-Expose-Headers",
    ),
    (
        "routing.http.response.access_control_max_age.header_value",
        "Access-Control-Max-Age",
    ),
    (
        "routing.http.response.content_security_policy.header_value",
        "Content-Security-Policy",
    ),
    (
        "routing.http.response.x_content_type_options.header_value",
        "X-Content-Type-Options",
    ),
    (
        "routing.http.response.x_frame_options.header_value",
        "X-Frame-Options",
    ),
];

/// What an ALB listener does to responses: headers set on every response (replacing a
/// target's own), and whether the load balancer's own answers say `Server: awselb/2.0`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResponseHeaderSettings {
    /// `(header name, value)`, names as in [`RESPONSE_HEADER_ATTRIBUTES`].
    pub set: Vec<(String, String)>,
    /// `routing.http.response.server.enabled`.
    pub server: bool,
}

impl Default for ResponseHeaderSettings {
    fn default() -> Self {
        ResponseHeaderSettings {
            set: Vec::new(),
            server: true,
        }
    }
}

impl ResponseHeaderSettings {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    pub arn: String,
    /// `None` for the listener's default rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// All must match (each condition matches when any of its values does).
    pub conditions: Vec<RouteCondition>,
    pub action: RouteAction,
}

/// A rule condition. Values use AWS's wildcards (`*` any run, `?` one character); path
/// patterns are case sensitive, host headers and methods are not.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "field")]
pub enum RouteCondition {
    PathPattern {
        values: Vec<String>,
    },
    HostHeader {
        values: Vec<String>,
    },
    HttpHeader {
        name: String,
        values: Vec<String>,
    },
    HttpRequestMethod {
        values: Vec<String>,
    },
    /// Each pair matches when the query has that key (any key when `None`) with that value.
    QueryString {
        values: Vec<QueryStringPair>,
    },
    /// CIDR blocks of the client address.
    SourceIp {
        values: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryStringPair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
}

/// The terminal action of a rule (authenticate actions are not served).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum RouteAction {
    Forward {
        target_groups: Vec<WeightedTargetGroup>,
        /// Target group stickiness: a client keeps its target group for this long.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stickiness_seconds: Option<u64>,
    },
    /// AWS's `#{protocol}`, `#{host}`, `#{port}`, `#{path}`, `#{query}` placeholders are kept
    /// as given; absent parts keep the request's.
    Redirect {
        protocol: String,
        host: String,
        port: String,
        path: String,
        query: String,
        /// 301 or 302.
        status_code: u16,
    },
    FixedResponse {
        status_code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_body: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTargetGroup {
    pub arn: String,
    /// 0–999; groups with weight 0 get no requests.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupRoutes {
    pub arn: String,
    pub name: String,
    /// The CloudWatch `TargetGroup` dimension: `targetgroup/<name>/<id>`.
    pub dimension: String,
    /// `HTTP`, `HTTPS`, `TCP`, …
    pub protocol: String,
    /// `HTTP1`, `HTTP2` or `GRPC` (HTTP and HTTPS groups): what requests are sent to the
    /// targets as. Absent for network groups (and in snapshots from older servers: `HTTP1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    pub health_check: HealthCheckConfig,
    pub deregistration_delay_seconds: u64,
    /// `slow_start.duration_seconds`; 0 is off.
    pub slow_start_seconds: u64,
    /// `stickiness.enabled` with its `stickiness.type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<Stickiness>,
    /// `round_robin` or `least_outstanding_requests`.
    pub algorithm: String,
    pub targets: Vec<RouteTarget>,
    /// `proxy_protocol_v2.enabled` (NLB groups): flows and health checks to the targets start
    /// with a Proxy Protocol v2 header.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_protocol_v2: bool,
    /// `deregistration_delay.connection_termination.enabled` (NLB groups): flows to a
    /// deregistered target are closed when its delay ends, rather than left to end by
    /// themselves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub connection_termination: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stickiness {
    /// `lb_cookie` or `app_cookie` (ALB groups), `source_ip` (NLB groups).
    pub kind: String,
    /// `stickiness.<kind>.duration_seconds`; 0 for `source_ip`, which has none.
    pub duration_seconds: u64,
    /// The application's cookie for `app_cookie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTarget {
    /// As registered: an instance id or an IP address.
    pub id: String,
    pub port: u16,
    /// Where to connect: `ip:port` (an instance target's host address is resolved).
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// When deregistered: no new requests; in-flight ones may finish until this time
    /// (the control plane's clock, see `RouteSnapshot::now_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_until_ms: Option<i64>,
    /// `RegisteredTarget::registered_at_ms`: which registration this is. A target registered
    /// again (say, while draining) is a new target to the data plane, with no health yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at_ms: Option<i64>,
}

// ---- The load-balancer protocol ----

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetRoutesInput {
    /// The `revision` of the previous answer (0 on the first call).
    pub since_revision: i64,
    pub wait_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportTargetHealthInput {
    /// The reporting data-plane node (stable across its restarts).
    pub node: String,
    pub target_groups: Vec<TargetGroupHealthReport>,
    /// Load balancers whose every listener this node has bound.
    #[serde(default)]
    pub active_load_balancers: Vec<String>,
    /// Load balancers this node cannot serve, with why (an address or port in use).
    #[serde(default)]
    pub failed_load_balancers: Vec<LoadBalancerFailure>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerFailure {
    pub arn: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupHealthReport {
    pub arn: String,
    pub targets: Vec<TargetHealthReport>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealthReport {
    pub id: String,
    pub port: i32,
    /// The registration observed (`RouteTarget::registered_at_ms`): a report about an earlier
    /// registration of the same `id:port` is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at_ms: Option<i64>,
    /// `initial`, `healthy` or `unhealthy`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequestMetricsInput {
    pub node: String,
    pub datums: Vec<MetricDatum>,
}

/// One aggregated datum: a statistic set over `timestamp_ms`'s period.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricDatum {
    /// `AWS/ApplicationELB` or `AWS/NetworkELB`.
    pub namespace: String,
    pub metric_name: String,
    /// `(name, value)`: `LoadBalancer`, `TargetGroup`.
    pub dimensions: Vec<(String, String)>,
    pub timestamp_ms: i64,
    /// `Count`, `Seconds`, `Bytes`.
    pub unit: String,
    pub sample_count: f64,
    pub sum: f64,
    pub minimum: f64,
    pub maximum: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_group_arns_split_into_name_and_id() {
        assert_eq!(
            parse_target_group_arn(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/73e2d6bc24d8a067"
            ),
            Some(("web", "73e2d6bc24d8a067"))
        );
        assert_eq!(parse_target_group_arn("arn:aws:ecs:x"), None);
    }

    #[test]
    fn observations_older_than_the_registration_do_not_count() {
        let target = RegisteredTarget {
            id: "10.0.0.1".into(),
            port: 80,
            availability_zone: None,
            registered_at_ms: 5_000,
            deregistered_at_ms: None,
            task_arn: None,
        };
        let observed = |since_ms| ObservedTargetHealth {
            state: "healthy".into(),
            reason: None,
            description: None,
            since_ms,
        };
        let mut record = TargetHealthRecord::default();
        record.targets.insert(target.key(), observed(4_999));
        assert_eq!(record.observed(&target), None);
        record.targets.insert(target.key(), observed(5_000));
        assert!(record.observed(&target).is_some());
    }

    #[test]
    fn draining_targets_vanish_after_the_delay() {
        let mut target = RegisteredTarget {
            id: "10.0.0.1".into(),
            port: 80,
            availability_zone: None,
            registered_at_ms: 0,
            deregistered_at_ms: None,
            task_arn: None,
        };
        assert!(target.present(1_000_000, 300));
        target.deregistered_at_ms = Some(1_000);
        assert!(target.present(300_999, 300));
        assert!(!target.present(301_000, 300));
    }
}
