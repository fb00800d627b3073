//! The one HTTP endpoint for every AWS service Wharf speaks. Each request is read (up to a body
//! limit), authenticated with SigV4, routed by the service named in its credential scope, and
//! answered in that service's wire protocol. Every response carries `x-amzn-RequestId`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use protocol::sigv4::{self, ErrorStyle};
use protocol::{json, AwsError, Request};
use store::clock::Clock;
use store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::acm::{self, AcmContext};
use crate::cloudwatch::{self, CloudWatchContext};
use crate::controllers::{
    ControllerSettings, Controllers, InstanceHealthSettings, ServiceSettings,
};
use crate::credentials::Credentials;
use crate::ec2::{self, Ec2Context};
use crate::ecs::{self, EcsContext};
use crate::elbv2::{self, Elbv2Context};
use crate::logs::{self, LogsContext};
use crate::prometheus::Exporter;

/// Requests with larger bodies are refused before they are read further. ECS's largest inputs
/// (task definitions) are capped at 64 KiB by AWS; other services (logs, metrics) need more.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub region: String,
    pub account_id: String,
    /// Every key pair that may sign requests. The first one also keys pagination tokens.
    pub credentials: Vec<Credentials>,
    /// Agent liveness and task retention.
    pub instance_health: InstanceHealthSettings,
    /// The service scheduler's pacing.
    pub services: ServiceSettings,
    /// Where the metric and log stores keep their files; `None` keeps them in memory.
    pub telemetry_dir: Option<std::path::PathBuf>,
    /// The IPv4 CIDR load balancer addresses (and so their `DNSName`s) are allocated from
    /// (default `elbv2::DEFAULT_ADDRESS_POOL`, a loopback range a local `wharf lb` can bind).
    pub load_balancer_address_pool: String,
}

struct App {
    credentials: Vec<Credentials>,
    clock: Arc<dyn Clock>,
    ecs: Arc<EcsContext>,
    cloudwatch: Arc<CloudWatchContext>,
    logs: Arc<LogsContext>,
    ec2: Arc<Ec2Context>,
    elbv2: Arc<Elbv2Context>,
    acm: Arc<AcmContext>,
    metrics: Arc<Exporter>,
}

/// A running server; dropping it does not stop it, call `shutdown`.
pub struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    controllers: Controllers,
}

impl Server {
    /// Bind the listener and start serving in the background.
    pub async fn start(
        config: ServerConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        // Every writer (handlers, controllers, CloudWatch) gets the instrumented store, so the
        // commit latency histogram sees every write; the exporter reads the state gauges from
        // the store underneath.
        let exporter = Arc::new(Exporter::new(store.clone()));
        let store = exporter.instrument(store);
        // Pagination tokens are keyed from the server's secret so they stay valid across
        // restarts and cannot be forged by clients.
        let token_key = config
            .credentials
            .first()
            .map(|c| format!("wharf-pagination:{}", c.secret_access_key))
            .unwrap_or_default();
        let metrics = match &config.telemetry_dir {
            Some(dir) => metricstore::MetricStore::open(dir).map_err(std::io::Error::other)?,
            None => metricstore::MetricStore::in_memory(),
        };
        let cloudwatch = Arc::new(CloudWatchContext::new(
            store.clone(),
            clock.clone(),
            Arc::new(metrics),
            &config.region,
            &config.account_id,
        ));
        let logs = Arc::new(
            LogsContext::open(
                config.telemetry_dir.as_deref(),
                clock.clone(),
                &config.region,
                &config.account_id,
            )
            .map_err(std::io::Error::other)?,
        );
        let ecs = Arc::new(EcsContext::new(
            store,
            clock.clone(),
            &config.region,
            &config.account_id,
            token_key.as_bytes(),
        ));
        ecs.usage.attach_metrics(cloudwatch.metrics.clone());
        let ec2 = Arc::new(Ec2Context::new(
            ecs.store.clone(),
            ecs.clock.clone(),
            &config.region,
            &config.account_id,
        ));
        ec2::ensure_defaults(&ec2)
            .await
            .map_err(std::io::Error::other)?;
        let elbv2 = Arc::new(
            Elbv2Context::new(
                ecs.store.clone(),
                ecs.clock.clone(),
                cloudwatch.metrics.clone(),
                &config.region,
                &config.account_id,
                &config.load_balancer_address_pool,
                format!("elbv2:{token_key}").as_bytes(),
            )
            .map_err(std::io::Error::other)?,
        );
        let acm = Arc::new(AcmContext::new(
            ecs.store.clone(),
            ecs.clock.clone(),
            &config.region,
            &config.account_id,
            format!("acm:{token_key}").as_bytes(),
        ));
        let app = Arc::new(App {
            credentials: config.credentials,
            clock,
            ecs: ecs.clone(),
            cloudwatch: cloudwatch.clone(),
            logs: logs.clone(),
            ec2,
            elbv2,
            acm,
            metrics: exporter,
        });
        let router = Router::new()
            .route("/_wharf/health", get(|| async { "ok" }))
            // Other methods on /metrics are left to the AWS routing, like every other path.
            .route("/metrics", get(serve_metrics).fallback(handle))
            .fallback(handle)
            .with_state(app);
        let cancel = CancellationToken::new();
        let settings = ControllerSettings {
            instance_health: config.instance_health,
            services: config.services,
        };
        let mut controllers = Controllers::start(ecs, settings, cancel.child_token());
        cloudwatch::start_controllers(cloudwatch, controllers.tasks_mut(), cancel.child_token());
        controllers
            .tasks_mut()
            .spawn(logs::run_retention(logs, cancel.child_token()));
        let shutdown = cancel.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await });
            if let Err(error) = serve.await {
                error!(%error, "http server stopped");
            }
        });
        info!(%addr, "listening");
        Ok(Server {
            addr,
            cancel,
            task,
            controllers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the value for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting requests, let in-flight ones finish, and wait.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
        self.controllers.join().await;
    }
}

async fn handle(State(app): State<Arc<App>>, request: axum::extract::Request) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let (mut response, service, operation) = match read_request(request).await {
        Ok(request) => {
            // As `route` picks it; an unauthenticated request is counted under the service it
            // claims (only the names in `prometheus::SERVICES` are labels, the rest is `unknown`).
            let service = sigv4::scope_service(&request).unwrap_or_default();
            let _in_flight = app.metrics.start_request(&service);
            let (response, operation) = route(&app, request).await;
            (response, service, operation)
        }
        Err(error) => (
            json_error(&error, json::CONTENT_TYPE_1_1),
            String::new(),
            None,
        ),
    };
    app.metrics.observe_request(
        &service,
        operation.as_deref(),
        response.status().as_u16(),
        started.elapsed(),
    );
    // A protocol that also writes the id into its body (Query's <RequestId>) sets the header
    // itself; keep that one so the two agree.
    if !response.headers().contains_key("x-amzn-requestid") {
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-amzn-RequestId", value);
        }
    }
    response
}

/// `GET /metrics`: Prometheus text format 0.0.4, or OpenMetrics when the scraper accepts it.
async fn serve_metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response<Body> {
    let openmetrics = headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (status, content_type, body) = match app.metrics.render(openmetrics).await {
        Ok(text) => (
            StatusCode::OK,
            if openmetrics {
                crate::prometheus::OPENMETRICS_CONTENT_TYPE
            } else {
                crate::prometheus::PROMETHEUS_CONTENT_TYPE
            },
            text,
        ),
        Err(error) => {
            error!(%error, "cannot read the store for /metrics");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("cannot read the store: {error}\n"),
            )
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

async fn read_request(request: axum::extract::Request) -> Result<Request, AwsError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            AwsError::sender(
                "RequestEntityTooLargeException",
                format!("Request body must be at most {MAX_BODY_BYTES} bytes."),
            )
            .with_status(413)
        })?;
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: header_pairs(&parts.headers),
        body,
    })
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into(),
            )
        })
        .collect()
}

/// Authenticate, then hand the request to the service its credential scope names. Also returns
/// the operation when the service recognised it, for the request metrics: a request refused
/// before that (unsigned, badly signed, unknown or unparsable) names no operation, so what a
/// client writes in it cannot become a label.
async fn route(app: &App, request: Request) -> (Response<Body>, Option<String>) {
    let service = sigv4::scope_service(&request);
    let style = ErrorStyle::Json;
    let now = app.clock.now_millis() / 1000;
    let lookup = |key: &str| {
        app.credentials
            .iter()
            .find(|c| c.access_key_id == key)
            .map(|c| c.secret_access_key.clone())
    };
    let identity = match sigv4::verify(&request, now, &lookup) {
        Ok(identity) => identity,
        Err(error) => {
            debug!(%error, "request refused by sigv4");
            return (
                json_error(&error.to_aws_error(style), json::CONTENT_TYPE_1_1),
                None,
            );
        }
    };
    let (response, operation) = match service.as_deref().unwrap_or(identity.service.as_str()) {
        "ecs" => serve_json(&request, ecs::TARGET_PREFIX, json::CONTENT_TYPE_1_1, |op, input| {
            ecs::dispatch(&app.ecs, op, input)
        })
        .await,
        // These dispatch internally: their answer tells whether they knew the operation.
        "monitoring" => {
            let response = cloudwatch::serve(&app.cloudwatch, &request).await;
            return crate::prometheus::answered_operation(&request, response).await;
        }
        "ec2" => {
            let response = ec2::serve(&app.ec2, &request).await;
            return crate::prometheus::answered_operation(&request, response).await;
        }
        elbv2::SIGNING_NAME => {
            let response = elbv2::serve(&app.elbv2, &request).await;
            return crate::prometheus::answered_operation(&request, response).await;
        }
        "logs" => serve_json(&request, logs::TARGET_PREFIX, json::CONTENT_TYPE_1_1, |op, input| {
            logs::dispatch(&app.logs, op, input)
        })
        .await,
        acm::SIGNING_NAME => serve_json(&request, acm::TARGET_PREFIX, json::CONTENT_TYPE_1_1, |op, input| {
            acm::dispatch(&app.acm, op, input)
        })
        .await,
        // The agent and load-balancer protocols share the `wharf` signing name; the target
        // prefix picks the protocol.
        model::agent::SIGNING_NAME
            if request
                .header("x-amz-target")
                .is_some_and(|t| t.starts_with(&format!("{}.", model::elb::TARGET_PREFIX))) =>
        {
            serve_json(&request, model::elb::TARGET_PREFIX, json::CONTENT_TYPE_1_1, |op, input| {
                elbv2::dispatch_load_balancer_protocol(&app.elbv2, op, input)
            })
            .await
        }
        model::agent::SIGNING_NAME => {
            serve_json(&request, model::agent::TARGET_PREFIX, json::CONTENT_TYPE_1_1, |op, input| {
                ecs::agent_service::dispatch(&app.ecs, op, input)
            })
            .await
        }
        other => (json_error(
            &AwsError::sender(
                "UnrecognizedServiceException",
                format!(
                    "Wharf does not serve the '{other}' service yet; it serves: ecs, ec2 (VPCs, subnets, security groups, network interfaces), elasticloadbalancing (ELBv2: load balancers, target groups, listeners, rules), monitoring (CloudWatch), logs (CloudWatch Logs), acm (Certificate Manager: imported certificates), and wharf (for agents and load balancers). Check the endpoint URL and the service you are calling."
                ),
            ),
            json::CONTENT_TYPE_1_1,
        ), None),
    };
    (response, operation.map(str::to_string))
}

/// Serve one JSON 1.0/1.1 request: check the target prefix, parse the body, run the operation.
/// The operation is returned when the service ran it (whatever the outcome).
async fn serve_json<'a, F, Fut, E>(
    request: &'a Request,
    prefix: &str,
    content_type: &'static str,
    run: F,
) -> (Response<Body>, Option<&'a str>)
where
    F: FnOnce(&'a str, serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = Option<Result<serde_json::Value, E>>>,
    E: IntoAwsError,
{
    let Some(target) = request.header("x-amz-target") else {
        return (json_error(&json::missing_target(), content_type), None);
    };
    let operation = match json::parse_target(target) {
        Some((p, op)) if p == prefix => op,
        _ => {
            return (
                json_error(&json::unknown_operation(target), content_type),
                None,
            )
        }
    };
    let input = match json::parse_body(&request.body) {
        Ok(input) => input,
        Err(error) => return (json_error(&error, content_type), None),
    };
    let response = match run(operation, input).await {
        None => {
            return (
                json_error(&json::unknown_operation(target), content_type),
                None,
            )
        }
        Some(Ok(output)) => {
            let body = serde_json::to_vec(&output).unwrap_or_default();
            let mut response = Response::new(Body::from(Bytes::from(body)));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            response
        }
        Some(Err(error)) => {
            let error = error.into_aws_error();
            if error.status >= 500 {
                error!(operation, message = %error.message, "operation failed");
            }
            json_error(&error, content_type)
        }
    };
    (response, Some(operation))
}

/// How a service's error family becomes a wire error.
pub trait IntoAwsError {
    fn into_aws_error(self) -> AwsError;
}

impl IntoAwsError for ecs::EcsError {
    fn into_aws_error(self) -> AwsError {
        self.to_aws()
    }
}

impl IntoAwsError for elbv2::Elbv2Error {
    fn into_aws_error(self) -> AwsError {
        self.to_wire().error
    }
}

impl IntoAwsError for acm::AcmError {
    fn into_aws_error(self) -> AwsError {
        self.to_aws()
    }
}

impl IntoAwsError for logs::LogsError {
    fn into_aws_error(self) -> AwsError {
        self.to_aws()
    }
}

fn json_error(error: &AwsError, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(json::error_body(error)));
    *response.status_mut() =
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&error.code) {
        headers.insert("x-amzn-ErrorType", value);
    }
    response
}
