//! Active health checks, one task per target (keyed by target group ARN and `id:port`, so a
//! target keeps its state across snapshot swaps): HTTP `GET` of the check path expecting the
//! matcher's codes, or a TCP connect. HTTP2 groups' checks speak HTTP/2, as their traffic
//! does; GRPC groups' checks are gRPC calls of the check path (a `POST` of one empty message)
//! expecting the matcher's gRPC status codes. The state machine is ALB's:
//!
//! ```text
//!            healthy_threshold passes            unhealthy_threshold failures
//!  initial ─────────────────────────► healthy ◄─────────────────────────────► unhealthy
//!     │                                          healthy_threshold passes        ▲
//!     └──────────────────────────────────────────────────────────────────────────┘
//!                          unhealthy_threshold failures
//! ```
//!
//! A new target's first check runs at once (not after an interval), so it becomes routable as
//! soon as AWS's thresholds allow. State changes wake the health reporter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use model::elb::HealthCheckConfig;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::table::{ProtocolVersion, TargetRuntime};

pub const STATE_INITIAL: &str = "initial";
pub const STATE_HEALTHY: &str = "healthy";
pub const STATE_UNHEALTHY: &str = "unhealthy";

/// `Matcher.HttpCode` or `Matcher.GrpcCode`: codes, ranges and lists (`200`, `200-299`,
/// `200,302`; `12`, `0-99`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher(Vec<(u16, u16)>);

impl Matcher {
    pub fn parse(text: &str) -> Matcher {
        let ranges: Vec<(u16, u16)> = text
            .split(',')
            .filter_map(|part| {
                let part = part.trim();
                match part.split_once('-') {
                    Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                    None => part.parse().ok().map(|c| (c, c)),
                }
            })
            .collect();
        if ranges.is_empty() {
            // AWS's default for HTTP target groups.
            Matcher(vec![(200, 200)])
        } else {
            Matcher(ranges)
        }
    }

    pub fn matches(&self, code: u16) -> bool {
        self.0
            .iter()
            .any(|&(low, high)| (low..=high).contains(&code))
    }
}

/// A target group's health-check settings, parsed for use.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    pub enabled: bool,
    /// HTTP and HTTPS checks request `path`; TCP checks connect.
    pub http: bool,
    /// HTTPS checks: the request goes over TLS (the target's certificate is not verified).
    pub tls: bool,
    /// `None`: the traffic port.
    pub port: Option<u16>,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: Matcher,
    /// The group's `proxy_protocol_v2.enabled`: each check's connection starts with a `LOCAL`
    /// Proxy Protocol header, as AWS's do (a target that expects the header would otherwise
    /// fail every check).
    pub proxy_protocol: bool,
    /// The group's protocol version: HTTP2 and GRPC groups' checks speak HTTP/2, and GRPC
    /// groups' are gRPC calls (`matcher` then holds gRPC status codes).
    pub version: ProtocolVersion,
}

impl HealthCheckSpec {
    pub fn from_config(config: &HealthCheckConfig) -> HealthCheckSpec {
        let seconds =
            |s: i32, default: u64| Duration::from_secs(if s > 0 { s as u64 } else { default });
        HealthCheckSpec {
            enabled: config.enabled,
            http: config.protocol.eq_ignore_ascii_case("HTTP")
                || config.protocol.eq_ignore_ascii_case("HTTPS"),
            tls: config.protocol.eq_ignore_ascii_case("HTTPS"),
            port: config.port.parse().ok(),
            path: config.path.clone().unwrap_or_else(|| "/".into()),
            interval: seconds(config.interval_seconds, 30),
            timeout: seconds(config.timeout_seconds, 5),
            healthy_threshold: config.healthy_threshold_count.max(1) as u32,
            unhealthy_threshold: config.unhealthy_threshold_count.max(1) as u32,
            matcher: match &config.matcher_grpc_code {
                Some(codes) => Matcher::parse(codes),
                None => Matcher::parse(config.matcher_http_code.as_deref().unwrap_or("200")),
            },
            proxy_protocol: false,
            version: ProtocolVersion::Http1,
        }
    }
}

/// What one check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Passed,
    /// An HTTP answer outside the matcher.
    ResponseCode(u16),
    Timeout,
    /// Refused, reset, or not HTTP.
    Failed,
}

/// A target's observed health as DescribeTargetHealth shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthStatus {
    pub state: &'static str,
    pub reason: Option<&'static str>,
    pub description: Option<String>,
}

impl HealthStatus {
    pub fn initial() -> HealthStatus {
        HealthStatus {
            state: STATE_INITIAL,
            reason: Some("Elb.InitialHealthChecking"),
            description: Some("Initial health checks in progress".into()),
        }
    }

    fn healthy() -> HealthStatus {
        HealthStatus {
            state: STATE_HEALTHY,
            reason: None,
            description: None,
        }
    }

    fn unhealthy(result: &CheckResult) -> HealthStatus {
        let (reason, description) = match result {
            CheckResult::ResponseCode(code) => (
                "Target.ResponseCodeMismatch",
                format!("Health checks failed with these codes: [{code}]"),
            ),
            CheckResult::Timeout => ("Target.Timeout", "Request timed out".to_string()),
            CheckResult::Passed | CheckResult::Failed => (
                "Target.FailedHealthChecks",
                "Health checks failed".to_string(),
            ),
        };
        HealthStatus {
            state: STATE_UNHEALTHY,
            reason: Some(reason),
            description: Some(description),
        }
    }
}

/// The threshold counting of one target; pure, so the transitions are unit-tested.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    status: HealthStatus,
    passes: u32,
    failures: u32,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self {
            status: HealthStatus::initial(),
            passes: 0,
            failures: 0,
        }
    }
}

impl HealthTracker {
    pub fn status(&self) -> &HealthStatus {
        &self.status
    }

    /// Counts one result; the new status when the state (or an unhealthy reason) changed.
    pub fn observe(
        &mut self,
        spec: &HealthCheckSpec,
        result: &CheckResult,
    ) -> Option<HealthStatus> {
        let next = if *result == CheckResult::Passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            (self.status.state != STATE_HEALTHY && self.passes >= spec.healthy_threshold)
                .then(HealthStatus::healthy)
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            let unhealthy = HealthStatus::unhealthy(result);
            (self.failures >= spec.unhealthy_threshold && self.status != unhealthy)
                .then_some(unhealthy)
        };
        if let Some(status) = &next {
            self.status = status.clone();
        }
        next
    }

    /// Health checks disabled: the target counts as healthy.
    pub fn force_healthy(&mut self) -> Option<HealthStatus> {
        (self.status.state != STATE_HEALTHY).then(|| {
            self.status = HealthStatus::healthy();
            self.status.clone()
        })
    }
}

/// The client health checks use: no connection reuse, so each check sees whether the target
/// accepts connections now.
pub type HealthClient = Client<HttpConnector, Empty<Bytes>>;

pub fn health_client() -> HealthClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// Runs one check against `address`.
pub async fn check_once(
    client: &HealthClient,
    spec: &HealthCheckSpec,
    address: SocketAddr,
) -> CheckResult {
    let request = |uri: String| {
        http::Request::get(uri)
            .header(http::header::USER_AGENT, "ELB-HealthChecker/2.0")
            .header(http::header::HOST, address.to_string())
            .body(Empty::<Bytes>::new())
    };
    if spec.http && spec.version.is_h2() {
        return match tokio::time::timeout(spec.timeout, check_h2(spec, address)).await {
            Err(_) => CheckResult::Timeout,
            Ok(Err(_)) => CheckResult::Failed,
            Ok(Ok(code)) if spec.matcher.matches(code) => CheckResult::Passed,
            Ok(Ok(code)) => CheckResult::ResponseCode(code),
        };
    }
    let answer = async {
        if spec.proxy_protocol || spec.tls {
            // The pooled client cannot write bytes ahead of the request nor speak TLS, so
            // these checks speak HTTP/1.1 over a connection of their own.
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            if spec.proxy_protocol {
                stream
                    .write_all(&crate::proxy_protocol::local_header())
                    .await?;
            }
            if !spec.http {
                return Ok(None);
            }
            let _ = stream.set_nodelay(true);
            // Origin form on a connection of its own, as the pooled client sends.
            let request = request(spec.path.clone())?;
            let status = if spec.tls {
                let stream = crate::tls::connect_to_target(stream, Some(b"http/1.1")).await?;
                status_over(stream, request).await?
            } else {
                status_over(stream, request).await?
            };
            return Ok(Some(status));
        }
        if !spec.http {
            tokio::net::TcpStream::connect(address).await?;
            return Ok(None);
        }
        let request = request(format!("http://{address}{}", spec.path))?;
        Ok::<_, CheckError>(Some(client.request(request).await?.status()))
    };
    match tokio::time::timeout(spec.timeout, answer).await {
        Err(_) => CheckResult::Timeout,
        Ok(Err(_)) => CheckResult::Failed,
        Ok(Ok(None)) => CheckResult::Passed,
        Ok(Ok(Some(status))) => {
            let code = status.as_u16();
            if spec.matcher.matches(code) {
                CheckResult::Passed
            } else {
                CheckResult::ResponseCode(code)
            }
        }
    }
}

/// One HTTP/2 check on a connection of its own (prior knowledge, or ALPN `h2` over TLS): the
/// HTTP status of a `GET` of the path, or for a GRPC group the gRPC status of a call of the
/// path (from the trailers, or from the headers of a trailers-only answer).
async fn check_h2(spec: &HealthCheckSpec, address: SocketAddr) -> Result<u16, CheckError> {
    let stream = crate::upstream::connect_to(address, spec.tls, b"h2").await?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let scheme = if spec.tls { "https" } else { "http" };
    let uri = format!("{scheme}://{address}{}", spec.path);
    let grpc = spec.version == ProtocolVersion::Grpc;
    let request = if grpc {
        http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header(http::header::USER_AGENT, "ELB-HealthChecker/2.0")
            // One message, uncompressed and empty: what any request message encodes to when
            // all its fields are unset.
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))?
    } else {
        http::Request::get(uri)
            .header(http::header::USER_AGENT, "ELB-HealthChecker/2.0")
            .body(Full::new(Bytes::new()))?
    };
    let response = sender.send_request(request).await?;
    if !grpc {
        return Ok(response.status().as_u16());
    }
    let status = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u16>().ok())
    };
    if let Some(code) = status(response.headers()) {
        return Ok(code);
    }
    if response.status() != http::StatusCode::OK {
        return Err(CheckError::NoGrpcStatus);
    }
    let trailers = response.into_body().collect().await?.trailers().cloned();
    trailers
        .as_ref()
        .and_then(status)
        .ok_or(CheckError::NoGrpcStatus)
}

/// Sends `request` over `stream` (HTTP/1.1) and reads the answer's status.
async fn status_over<S>(
    stream: S,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::StatusCode, CheckError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?.status())
}

/// Why a check could not get an answer; every kind fails the check the same way.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
    #[error(transparent)]
    Request(#[from] http::Error),
    #[error(transparent)]
    Connect(#[from] crate::upstream::UpstreamError),
    #[error("the answer to a gRPC check carries no grpc-status")]
    NoGrpcStatus,
}

/// The check loop of one target, until the target leaves the snapshot.
pub async fn run_checks(target: Arc<TargetRuntime>, client: HealthClient, changed: Arc<Notify>) {
    let mut tracker = HealthTracker::default();
    loop {
        let spec = target.health_check();
        let change = if spec.enabled {
            let address = SocketAddr::new(
                target.address.ip(),
                spec.port.unwrap_or(target.address.port()),
            );
            let result = tokio::select! {
                result = check_once(&client, &spec, address) => result,
                _ = target.stop.cancelled() => return,
            };
            tracing::trace!(target = %target.key(), ?result, "health check");
            tracker.observe(&spec, &result)
        } else {
            tracker.force_healthy()
        };
        if let Some(status) = change {
            tracing::info!(
                target_group = %target.group_arn,
                target = %target.key(),
                state = status.state,
                reason = status.reason.unwrap_or(""),
                "target health changed"
            );
            target.set_health(status);
            changed.notify_one();
        }
        tokio::select! {
            _ = tokio::time::sleep(spec.interval) => {}
            _ = target.stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(healthy: u32, unhealthy: u32) -> HealthCheckSpec {
        HealthCheckSpec {
            enabled: true,
            http: true,
            tls: false,
            port: None,
            path: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            matcher: Matcher::parse("200"),
            proxy_protocol: false,
            version: ProtocolVersion::Http1,
        }
    }

    #[test]
    fn matchers_take_codes_ranges_and_lists() {
        assert!(Matcher::parse("200").matches(200));
        assert!(!Matcher::parse("200").matches(204));
        assert!(Matcher::parse("200-299").matches(204));
        let list = Matcher::parse("200,302");
        assert!(list.matches(302) && !list.matches(301));
        assert!(Matcher::parse("").matches(200));
    }

    #[test]
    fn targets_turn_healthy_after_the_threshold() {
        let spec = spec(3, 2);
        let mut tracker = HealthTracker::default();
        assert_eq!(tracker.status().state, STATE_INITIAL);
        assert_eq!(tracker.status().reason, Some("Elb.InitialHealthChecking"));
        assert!(tracker.observe(&spec, &CheckResult::Passed).is_none());
        assert!(tracker.observe(&spec, &CheckResult::Passed).is_none());
        assert_eq!(
            tracker.observe(&spec, &CheckResult::Passed).unwrap().state,
            STATE_HEALTHY
        );
        assert!(tracker.observe(&spec, &CheckResult::Passed).is_none());
    }

    #[test]
    fn failures_carry_aws_reasons() {
        let spec = spec(2, 2);
        let mut tracker = HealthTracker::default();
        assert!(tracker
            .observe(&spec, &CheckResult::ResponseCode(502))
            .is_none());
        let status = tracker
            .observe(&spec, &CheckResult::ResponseCode(502))
            .unwrap();
        assert_eq!(status.state, STATE_UNHEALTHY);
        assert_eq!(status.reason, Some("Target.ResponseCodeMismatch"));
        assert_eq!(
            status.description.as_deref(),
            Some("Health checks failed with these codes: [502]")
        );
        let status = tracker.observe(&spec, &CheckResult::Timeout).unwrap();
        assert_eq!(status.reason, Some("Target.Timeout"));
        assert_eq!(status.description.as_deref(), Some("Request timed out"));
        let status = tracker.observe(&spec, &CheckResult::Failed).unwrap();
        assert_eq!(status.reason, Some("Target.FailedHealthChecks"));
        // A pass in between resets the failure count.
        tracker.observe(&spec, &CheckResult::Passed);
        assert_eq!(
            tracker.observe(&spec, &CheckResult::Passed).unwrap().state,
            STATE_HEALTHY
        );
        assert!(tracker.observe(&spec, &CheckResult::Failed).is_none());
        tracker.observe(&spec, &CheckResult::Passed);
        assert!(tracker.observe(&spec, &CheckResult::Failed).is_none());
    }
}
