//! Prometheus metrics of the server, served on `GET /metrics` (unauthenticated, like
//! `/_wharf/health`) in the Prometheus text format 0.0.4, or in OpenMetrics 1.0 when the scraper
//! asks for it in `Accept` (Prometheus does).
//!
//! Three kinds of metrics, all named `wharf_*`:
//!
//! - **State gauges**, computed at scrape time from the store: clusters, services, tasks,
//!   container instances, deployments and per-service task counts. They are derived from the
//!   records (never counted incrementally), so they cannot drift and every replica reports the
//!   same values. One pass reads each key prefix of `ecs::keys` once, paged, decoding only the
//!   fields it needs; the result is cached for [`STATE_CACHE`] so a scrape loop (or several
//!   Prometheus servers) cannot hammer the store.
//! - **Request metrics**, recorded by the server for every API request: a counter by service,
//!   operation and HTTP status, a latency histogram by service and operation (the status is
//!   left out of the histogram: it would multiply its series by every status for little gain;
//!   the counter has it), and requests in flight.
//! - **Store commit latency**: [`InstrumentedStore`] wraps the server's `Store` and times every
//!   write transaction (read-only transactions are not commits and are not timed).
//!
//! Plus cheap process metrics from `/proc/self` (Linux only; elsewhere they are left out).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use store::{
    KeyValue, LeaseId, Op, RangeOptions, RangeResponse, Revision, Store, StoreError, Txn,
    TxnResponse, Watch,
};
use tracing::debug;

use crate::ecs::keys;

/// How long a computed set of state gauges is served before the store is read again.
pub const STATE_CACHE: Duration = Duration::from_secs(1);

/// `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The services whose requests are counted by name; anything else is `unknown`.
const SERVICES: [&str; 7] = [
    "ecs",
    "ec2",
    "monitoring",
    "logs",
    "elasticloadbalancing",
    "acm",
    model::agent::SIGNING_NAME,
];

/// At most this many distinct (service, operation) pairs are recorded; more are `other`. The
/// operation comes from the request, so without a cap a client sending made-up operation names
/// could grow the metrics without bound.
const MAX_OPERATIONS: usize = 1024;

/// Keys read per store range call while computing the state gauges: bounds the memory one
/// scrape holds at once on large clusters.
const PAGE: usize = 2048;

/// API latency buckets, in seconds: from a cached describe (~1 ms) to a full long poll (25 s).
const API_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Commit latency buckets, in seconds: from an in-memory commit to a slow fsync.
const COMMIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    service: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    /// `succeeded` (the compares held), `failed` (they did not: a conflict) or `error`.
    result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn api_histogram() -> Histogram {
    Histogram::new(API_BUCKETS)
}

fn commit_histogram() -> Histogram {
    Histogram::new(COMMIT_BUCKETS)
}

/// The server's metrics: what requests and commits record, and the state read at scrape time.
pub struct Exporter {
    store: Arc<dyn Store>,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<OperationLabels>,
    in_flight: Family<ServiceLabel, Gauge>,
    commit_duration: HistogramFamily<CommitLabels>,
    operations: Mutex<HashSet<(String, String)>>,
    state: tokio::sync::Mutex<Option<(Instant, Arc<StateSnapshot>)>>,
    started_at: f64,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// Metrics reading the state gauges from `store` (pass the undecorated store: reads are not
    /// instrumented anyway).
    pub fn new(store: Arc<dyn Store>) -> Exporter {
        Exporter {
            store,
            requests: Family::default(),
            request_duration: Family::new_with_constructor(api_histogram),
            in_flight: Family::default(),
            commit_duration: Family::new_with_constructor(commit_histogram),
            operations: Mutex::new(HashSet::new()),
            state: tokio::sync::Mutex::new(None),
            started_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }

    /// `store` with its write transactions timed into this exporter.
    pub fn instrument(self: &Arc<Self>, store: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(InstrumentedStore {
            inner: store,
            exporter: self.clone(),
        })
    }

    /// Count a request as started; the guard counts it as finished when dropped, so a request
    /// whose client went away mid-way does not stay "in flight" forever.
    pub fn start_request(self: &Arc<Self>, service: &str) -> InFlight {
        let label = ServiceLabel {
            service: known_service(service).to_string(),
        };
        self.in_flight.get_or_create(&label).inc();
        InFlight {
            exporter: self.clone(),
            label,
        }
    }

    /// Record one finished API request. `operation` is the operation the service recognised,
    /// `None` for a request refused before that (unsigned, badly signed, unknown operation,
    /// unparsable): those are all recorded as `unknown`, never under a name the client wrote,
    /// so clients that cannot even authenticate cannot take the operation slots.
    pub fn observe_request(
        &self,
        service: &str,
        operation: Option<&str>,
        status: u16,
        elapsed: Duration,
    ) {
        let service = known_service(service);
        let operation = match operation {
            Some(operation) if service != "unknown" => self.bounded_operation(service, operation),
            _ => "unknown".to_string(),
        };
        self.requests
            .get_or_create(&RequestLabels {
                service: service.to_string(),
                operation: operation.clone(),
                status: status.to_string(),
            })
            .inc();
        self.request_duration
            .get_or_create(&OperationLabels {
                service: service.to_string(),
                operation,
            })
            .observe(elapsed.as_secs_f64());
    }

    fn bounded_operation(&self, service: &str, operation: &str) -> String {
        let operation = sanitize_operation(operation);
        let mut seen = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        let pair = (service.to_string(), operation);
        if seen.contains(&pair) {
            return pair.1;
        }
        if seen.len() >= MAX_OPERATIONS {
            return "other".to_string();
        }
        seen.insert(pair.clone());
        pair.1
    }

    fn observe_commit(&self, result: &str, elapsed: Duration) {
        self.commit_duration
            .get_or_create(&CommitLabels {
                result: result.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The state gauges, from the cache when they are younger than [`STATE_CACHE`].
    pub async fn state(&self) -> Result<Arc<StateSnapshot>, StoreError> {
        // Held across the read so that concurrent scrapes share one computation.
        let mut cached = self.state.lock().await;
        if let Some((at, snapshot)) = cached.as_ref() {
            if at.elapsed() < STATE_CACHE {
                return Ok(snapshot.clone());
            }
        }
        let snapshot = Arc::new(StateSnapshot::read(self.store.as_ref()).await?);
        *cached = Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    /// The whole exposition: OpenMetrics text when `openmetrics`, else Prometheus 0.0.4 text.
    pub async fn render(&self, openmetrics: bool) -> Result<String, StoreError> {
        let state = self.state().await?;
        let mut registry = Registry::default();
        state.register(&mut registry);
        self.register_live(&mut registry);
        register_process(&mut registry, self.started_at);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
        if openmetrics {
            let _ = prometheus_client::encoding::text::encode_eof(&mut text);
            Ok(text)
        } else {
            Ok(openmetrics_to_prometheus(&text))
        }
    }

    /// The metrics recorded as the server runs. The families are shared handles: registering a
    /// clone in the scrape's registry encodes the live values.
    fn register_live(&self, registry: &mut Registry) {
        registry.register(
            "wharf_api_requests",
            "API requests answered, by service (credential scope), operation and HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "wharf_api_request_duration_seconds",
            "Time from receiving an API request to its answer, by service and operation",
            self.request_duration.clone(),
        );
        registry.register(
            "wharf_api_requests_in_flight",
            "API requests being served now, by service (agents' long polls included)",
            self.in_flight.clone(),
        );
        registry.register(
            "wharf_store_commit_duration_seconds",
            "Latency of store write transactions until durable, by result (succeeded, failed compare, error)",
            self.commit_duration.clone(),
        );
    }
}

/// Counts a request in flight until dropped.
pub struct InFlight {
    exporter: Arc<Exporter>,
    label: ServiceLabel,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("service", &self.label.service)
            .finish()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.exporter.in_flight.get_or_create(&self.label).dec();
    }
}

fn known_service(service: &str) -> &str {
    SERVICES
        .iter()
        .find(|s| **s == service)
        .copied()
        .unwrap_or("unknown")
}

/// Operation names are identifiers; anything else a client sends is cut to one.
fn sanitize_operation(operation: &str) -> String {
    let clean: String = operation
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if clean.is_empty() {
        "unknown".to_string()
    } else {
        clean
    }
}

/// The operation a request names, whichever protocol it uses: the `X-Amz-Target` of JSON 1.0
/// and 1.1 (`Prefix.Operation`), the path of RPC v2 CBOR (`/service/S/operation/Operation`), or
/// the `Action` parameter of the Query protocol (query string or form body).
pub fn operation_of(request: &protocol::Request) -> String {
    if let Some(target) = request.header("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    if let Some((_, rest)) = request.path.split_once("/operation/") {
        return rest.split('/').next().unwrap_or(rest).to_string();
    }
    let form = request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let body = if form {
        std::str::from_utf8(&request.body).unwrap_or("")
    } else {
        ""
    };
    for pairs in [request.query.as_str(), body] {
        for pair in pairs.split('&') {
            if let Some(action) = pair.strip_prefix("Action=") {
                return action.to_string();
            }
        }
    }
    "unknown".to_string()
}

/// Error codes meaning the service did not recognise the operation (JSON's and Query's).
const UNKNOWN_OPERATION_CODES: [&str; 3] = [
    "UnknownOperationException",
    "InvalidAction",
    "MissingAction",
];

/// Largest error body read to find its code; error documents are a few hundred bytes.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// For a service that dispatches by itself (CloudWatch, EC2): `response` with the operation
/// the service recognised in `request`, read from the answer. A success was dispatched; an
/// error was, unless its code (`x-amzn-ErrorType`, or `<Code>` of a Query XML error, which
/// has no such header) says the operation is unknown or cannot be read at all.
pub async fn answered_operation(
    request: &protocol::Request,
    response: axum::response::Response,
) -> (axum::response::Response, Option<String>) {
    use axum::body::HttpBody;
    let recognised = |code: &str| {
        !code.is_empty()
            && !UNKNOWN_OPERATION_CODES
                .iter()
                .any(|unknown| code.starts_with(unknown))
    };
    if response.status().as_u16() < 400 {
        return (response, Some(operation_of(request)));
    }
    if let Some(code) = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
    {
        let operation = recognised(code).then(|| operation_of(request));
        return (response, operation);
    }
    let xml = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("xml"));
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_ERROR_BODY);
    if !(xml && small) {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    // The body is in memory already (its exact size is known), so reading it cannot fail
    // in practice; if it does, the answer is lost either way.
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY as usize)
        .await
        .unwrap_or_default();
    let operation = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| {
            let start = text.find("<Code>")? + "<Code>".len();
            let end = start + text[start..].find("</Code>")?;
            Some(&text[start..end])
        })
        .filter(|code| recognised(code))
        .map(|_| operation_of(request));
    (
        axum::response::Response::from_parts(parts, axum::body::Body::from(bytes)),
        operation,
    )
}

/// Rewrite the crate's OpenMetrics text as Prometheus text format 0.0.4: a counter's `HELP` and
/// `TYPE` lines name its sample (`x_total`), not its family (`x`); there is no `# UNIT` and no
/// `# EOF`. Everything else (samples, label escaping, histograms) is the same in both.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Per-service task counts, as DescribeServices derives them (`ecs::services::render`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    pub desired: i64,
    pub running: i64,
    pub pending: i64,
}

/// The state gauges at one moment (each prefix is read separately, so not one snapshot of the
/// store; a scrape a second later corrects any skew).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateSnapshot {
    pub revision: Revision,
    /// By status.
    pub clusters: BTreeMap<String, i64>,
    /// By (cluster, status).
    pub services: BTreeMap<(String, String), i64>,
    /// By (cluster, lastStatus, desiredStatus).
    pub tasks: BTreeMap<(String, String, String), i64>,
    /// By (cluster, status, agentConnected).
    pub instances: BTreeMap<(String, String, bool), i64>,
    /// By (cluster, rolloutState), of services that are not INACTIVE.
    pub deployments: BTreeMap<(String, String), i64>,
    /// By (cluster, service), of services that are not INACTIVE.
    pub service_tasks: BTreeMap<(String, String), ServiceCounts>,
}

/// The few fields of a cluster or container instance record the gauges need.
#[derive(Deserialize)]
struct StatusView {
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskView {
    last_status: Option<String>,
    desired_status: Option<String>,
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceView {
    status: Option<String>,
    desired_count: Option<i64>,
    #[serde(default)]
    wharf_deployments: Vec<DeploymentView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentView {
    rollout_state: Option<String>,
}

/// `ecs::services`' definitions of running and pending, shared with DescribeServices.
fn is_running(task: &TaskView) -> bool {
    crate::ecs::services::counts_as_running(task.last_status.as_deref())
}

fn is_pending(task: &TaskView) -> bool {
    crate::ecs::services::counts_as_pending(
        task.last_status.as_deref(),
        task.desired_status.as_deref(),
    )
}

/// Call `each` with every key under `prefix`, reading `PAGE` keys at a time.
async fn for_each_key(
    store: &dyn Store,
    prefix: &str,
    mut each: impl FnMut(&KeyValue),
) -> Result<Revision, StoreError> {
    let mut start_after = None;
    loop {
        let page = store
            .range(
                prefix,
                RangeOptions {
                    limit: PAGE,
                    start_after: start_after.take(),
                },
            )
            .await?;
        page.kvs.iter().for_each(&mut each);
        match page.kvs.last() {
            Some(last) if page.more => start_after = Some(last.key.clone()),
            _ => return Ok(page.revision),
        }
    }
}

/// Decode the fields a gauge needs; a record that does not decode is left out (and logged),
/// never a failed scrape.
fn view<T: serde::de::DeserializeOwned>(kv: &KeyValue) -> Option<T> {
    match serde_json::from_slice(&kv.value) {
        Ok(view) => Some(view),
        Err(error) => {
            debug!(key = %kv.key, %error, "record left out of the metrics");
            None
        }
    }
}

/// `(first, rest)` of a key under `prefix`: `ecs/task/<cluster>/<id>` → (cluster, id).
fn split_key<'a>(key: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    key.strip_prefix(prefix)?.split_once('/')
}

impl StateSnapshot {
    /// Read every gauge from the store: one paged pass over each key prefix.
    pub async fn read(store: &dyn Store) -> Result<StateSnapshot, StoreError> {
        let mut snapshot = StateSnapshot::default();
        // An empty server shows `wharf_clusters{status="ACTIVE"} 0`, not no series at all.
        snapshot.clusters.insert("ACTIVE".to_string(), 0);
        snapshot.revision = for_each_key(store, keys::CLUSTER_PREFIX, |kv| {
            if let Some(cluster) = view::<StatusView>(kv) {
                *snapshot
                    .clusters
                    .entry(cluster.status.unwrap_or_default())
                    .or_default() += 1;
            }
        })
        .await?;

        const TASK_PREFIX: &str = "ecs/task/";
        // (cluster, service) → running, pending: the tasks of each service by its group.
        let mut by_group: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for_each_key(store, TASK_PREFIX, |kv| {
            let Some((cluster, _)) = split_key(&kv.key, TASK_PREFIX) else {
                return;
            };
            let Some(task) = view::<TaskView>(kv) else {
                return;
            };
            if let Some(service) = task
                .group
                .as_deref()
                .and_then(|g| g.strip_prefix("service:"))
            {
                let counts = by_group
                    .entry((cluster.to_string(), service.to_string()))
                    .or_default();
                counts.0 += i64::from(is_running(&task));
                counts.1 += i64::from(is_pending(&task));
            }
            *snapshot
                .tasks
                .entry((
                    cluster.to_string(),
                    task.last_status.unwrap_or_default(),
                    task.desired_status.unwrap_or_default(),
                ))
                .or_default() += 1;
        })
        .await?;

        for_each_key(store, keys::SERVICE_PREFIX, |kv| {
            let Some((cluster, name)) = split_key(&kv.key, keys::SERVICE_PREFIX) else {
                return;
            };
            let Some(service) = view::<ServiceView>(kv) else {
                return;
            };
            let status = service.status.unwrap_or_default();
            *snapshot
                .services
                .entry((cluster.to_string(), status.clone()))
                .or_default() += 1;
            // Inactive services stay in the store but are history: they would only add series
            // that never change again.
            if status == "INACTIVE" {
                return;
            }
            for deployment in &service.wharf_deployments {
                *snapshot
                    .deployments
                    .entry((
                        cluster.to_string(),
                        deployment.rollout_state.clone().unwrap_or_default(),
                    ))
                    .or_default() += 1;
            }
            let key = (cluster.to_string(), name.to_string());
            let (running, pending) = by_group.get(&key).copied().unwrap_or_default();
            snapshot.service_tasks.insert(
                key,
                ServiceCounts {
                    desired: service.desired_count.unwrap_or(0),
                    running,
                    pending,
                },
            );
        })
        .await?;

        const SESSION_PREFIX: &str = "ecs/agent-session/";
        let mut connected: HashSet<(String, String)> = HashSet::new();
        for_each_key(store, SESSION_PREFIX, |kv| {
            if let Some((cluster, id)) = split_key(&kv.key, SESSION_PREFIX) {
                connected.insert((cluster.to_string(), id.to_string()));
            }
        })
        .await?;
        const INSTANCE_PREFIX: &str = "ecs/container-instance/";
        for_each_key(store, INSTANCE_PREFIX, |kv| {
            let Some((cluster, id)) = split_key(&kv.key, INSTANCE_PREFIX) else {
                return;
            };
            let Some(instance) = view::<StatusView>(kv) else {
                return;
            };
            let live = connected.contains(&(cluster.to_string(), id.to_string()));
            *snapshot
                .instances
                .entry((
                    cluster.to_string(),
                    instance.status.unwrap_or_default(),
                    live,
                ))
                .or_default() += 1;
        })
        .await?;
        Ok(snapshot)
    }

    fn register(&self, registry: &mut Registry) {
        let revision: Gauge = Gauge::default();
        revision.set(self.revision);
        registry.register(
            "wharf_store_revision",
            "The store's current revision (it grows by one with every committed write)",
            revision,
        );
        registry.register(
            "wharf_clusters",
            "ECS clusters, by status",
            gauges(
                self.clusters
                    .iter()
                    .map(|(status, n)| (vec![("status", status.clone())], *n)),
            ),
        );
        registry.register(
            "wharf_services",
            "ECS services, by cluster and status",
            gauges(self.services.iter().map(|((cluster, status), n)| {
                (
                    vec![("cluster", cluster.clone()), ("status", status.clone())],
                    *n,
                )
            })),
        );
        registry.register(
            "wharf_tasks",
            "ECS tasks kept in the store (STOPPED ones until their retention ends), by cluster, lastStatus and desiredStatus",
            gauges(self.tasks.iter().map(|((cluster, last, desired), n)| {
                (
                    vec![
                        ("cluster", cluster.clone()),
                        ("last_status", last.clone()),
                        ("desired_status", desired.clone()),
                    ],
                    *n,
                )
            })),
        );
        registry.register(
            "wharf_container_instances",
            "Container instances, by cluster, status and whether their agent is connected",
            gauges(self.instances.iter().map(|((cluster, status, live), n)| {
                (
                    vec![
                        ("cluster", cluster.clone()),
                        ("status", status.clone()),
                        ("agent_connected", live.to_string()),
                    ],
                    *n,
                )
            })),
        );
        registry.register(
            "wharf_deployments",
            "Deployments of services that are not INACTIVE, by cluster and rolloutState",
            gauges(self.deployments.iter().map(|((cluster, state), n)| {
                (
                    vec![
                        ("cluster", cluster.clone()),
                        ("rollout_state", state.clone()),
                    ],
                    *n,
                )
            })),
        );
        let per_service = |pick: fn(&ServiceCounts) -> i64| {
            gauges(
                self.service_tasks
                    .iter()
                    .map(move |((cluster, service), c)| {
                        (
                            vec![("cluster", cluster.clone()), ("service", service.clone())],
                            pick(c),
                        )
                    }),
            )
        };
        registry.register(
            "wharf_service_desired_tasks",
            "A service's desiredCount, per service that is not INACTIVE",
            per_service(|c| c.desired),
        );
        registry.register(
            "wharf_service_running_tasks",
            "A service's tasks whose lastStatus is RUNNING (DescribeServices runningCount)",
            per_service(|c| c.running),
        );
        registry.register(
            "wharf_service_pending_tasks",
            "A service's tasks desired RUNNING and not yet started (DescribeServices pendingCount)",
            per_service(|c| c.pending),
        );
    }
}

type Labels = Vec<(&'static str, String)>;

/// A gauge family holding the given values (a fresh one per scrape: series that disappeared
/// from the store disappear from the exposition).
fn gauges(values: impl Iterator<Item = (Labels, i64)>) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    family
}

/// Process metrics from `/proc/self`: a few file reads per scrape.
fn register_process(registry: &mut Registry, started_at: f64) {
    let start: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    start.set(started_at);
    registry.register(
        "wharf_process_start_time_seconds",
        "When this server started, seconds since the epoch",
        start,
    );
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    registry.register(
        "wharf_build_info",
        "The running Wharf's version (always 1)",
        info,
    );
    let Some(process) = ProcessStats::read() else {
        return;
    };
    // A fresh counter per scrape set to the kernel's total: it only grows, as a counter must.
    let cpu: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
    cpu.inc_by(process.cpu_seconds);
    registry.register(
        "wharf_process_cpu_seconds",
        "User and system CPU time this process has used, in seconds",
        cpu,
    );
    for (name, help, value) in [
        (
            "wharf_process_resident_memory_bytes",
            "Resident memory of this process, in bytes",
            process.resident_bytes,
        ),
        (
            "wharf_process_virtual_memory_bytes",
            "Virtual memory of this process, in bytes",
            process.virtual_bytes,
        ),
        (
            "wharf_process_threads",
            "Threads of this process",
            process.threads,
        ),
        (
            "wharf_process_open_fds",
            "Open file descriptors of this process (sockets and store files included)",
            process.open_fds,
        ),
    ] {
        let gauge: Gauge = Gauge::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    }
}

#[derive(Debug, Default)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    open_fds: i64,
}

impl ProcessStats {
    fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let mut stats = ProcessStats::default();
        // Fields after the command name (which may contain spaces, hence the last ')'):
        // state is field 3, utime 14 and stime 15, in clock ticks. USER_HZ is 100 on every
        // Linux architecture's user ABI (reading sysconf would need libc and unsafe).
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        stats.cpu_seconds = (ticks(11)? + ticks(12)?) as f64 / 100.0;
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<i64>().ok())
        };
        stats.resident_bytes = kib("VmRSS:").unwrap_or(0) * 1024;
        stats.virtual_bytes = kib("VmSize:").unwrap_or(0) * 1024;
        stats.threads = kib("Threads:").unwrap_or(0);
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as i64)
            .unwrap_or(0);
        Some(stats)
    }
}

/// The server's store with write transactions timed: every call is delegated unchanged.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    exporter: Arc<Exporter>,
}

impl std::fmt::Debug for InstrumentedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedStore").finish_non_exhaustive()
    }
}

/// Whether a transaction may write (a read-only one is not a commit).
fn writes(txn: &Txn) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| {
        matches!(
            op,
            Op::Put { .. } | Op::Delete { .. } | Op::DeletePrefix { .. }
        )
    })
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn range(
        &self,
        prefix: &str,
        options: RangeOptions,
    ) -> Result<RangeResponse, StoreError> {
        self.inner.range(prefix, options).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        if !writes(&txn) {
            return self.inner.txn(txn).await;
        }
        let started = Instant::now();
        let result = self.inner.txn(txn).await;
        let outcome = match &result {
            Ok(response) if response.succeeded => "succeeded",
            Ok(_) => "failed",
            Err(_) => "error",
        };
        self.exporter.observe_commit(outcome, started.elapsed());
        result
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.inner.watch(prefix, from).await
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId, StoreError> {
        self.inner.lease_grant(ttl_seconds).await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.lease_keep_alive(lease).await
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.lease_revoke(lease).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::clock::SystemClock;
    use store::MemoryStore;

    #[test]
    fn counters_get_prometheus_help_and_type_lines() {
        let text = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
                    a_requests_total{x=\"1\"} 3\n# HELP b Bytes.\n# TYPE b gauge\n# UNIT b bytes\nb 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(text),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n\
             a_requests_total{x=\"1\"} 3\n# HELP b Bytes.\n# TYPE b gauge\nb 2\n"
        );
    }

    #[test]
    fn operations_come_from_every_protocol() {
        let request =
            |path: &str, query: &str, headers: Vec<(&str, &str)>, body: &str| protocol::Request {
                method: "POST".into(),
                path: path.into(),
                query: query.into(),
                headers: headers
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: bytes::Bytes::from(body.to_string()),
            };
        let json = request(
            "/",
            "",
            vec![(
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.ListClusters",
            )],
            "{}",
        );
        assert_eq!(operation_of(&json), "ListClusters");
        let cbor = request(
            "/service/GraniteServiceVersion20100801/operation/PutMetricData",
            "",
            vec![],
            "",
        );
        assert_eq!(operation_of(&cbor), "PutMetricData");
        let query = request(
            "/",
            "",
            vec![(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            "Version=2010-08-01&Action=ListMetrics",
        );
        assert_eq!(operation_of(&query), "ListMetrics");
        assert_eq!(operation_of(&request("/", "", vec![], "")), "unknown");
    }

    #[test]
    fn made_up_operations_cannot_grow_the_metrics_without_bound() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        let exporter = Exporter::new(store);
        for i in 0..(MAX_OPERATIONS + 10) {
            exporter.observe_request("ecs", Some(&format!("Op{i}")), 200, Duration::ZERO);
        }
        exporter.observe_request("ecs", None, 400, Duration::ZERO);
        exporter.observe_request("s3", Some("GetObject"), 400, Duration::ZERO);
        assert_eq!(
            exporter
                .requests
                .get_or_create(&labels("ecs", "other", "200"))
                .get(),
            10
        );
        assert_eq!(
            exporter
                .requests
                .get_or_create(&labels("ecs", "unknown", "400"))
                .get(),
            1
        );
        assert_eq!(
            exporter
                .requests
                .get_or_create(&labels("unknown", "unknown", "400"))
                .get(),
            1
        );
        assert_eq!(
            sanitize_operation("List\"Clusters}\n"),
            "ListClusters".to_string()
        );
    }

    /// CloudWatch and EC2 dispatch by themselves; their answer tells whether they knew the
    /// operation, from the error header or, for Query errors, the XML body (kept intact).
    #[tokio::test]
    async fn answers_tell_whether_the_operation_was_recognised() {
        let request = protocol::Request {
            method: "POST".into(),
            path: "/".into(),
            query: "Action=Forged&Version=2010-08-01".into(),
            headers: vec![],
            body: bytes::Bytes::new(),
        };
        let answer = |status: u16, headers: &[(&'static str, &'static str)], body: &str| {
            let mut response =
                axum::response::Response::new(axum::body::Body::from(body.to_string()));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(*name, axum::http::HeaderValue::from_static(value));
            }
            response
        };
        let xml = ("content-type", "text/xml");
        let invalid_action = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>\
                              <Message>no</Message></Error></ErrorResponse>";
        let cases = [
            (answer(200, &[xml], "<ok/>"), Some("Forged")),
            (answer(400, &[xml], invalid_action), None),
            (
                answer(
                    400,
                    &[xml],
                    "<ErrorResponse><Error><Code>InvalidParameterValue</Code></Error></ErrorResponse>",
                ),
                Some("Forged"),
            ),
            (
                answer(400, &[("x-amzn-errortype", "UnknownOperationException")], "{}"),
                None,
            ),
            (
                answer(400, &[("x-amzn-errortype", "ValidationError")], "{}"),
                Some("Forged"),
            ),
            // No code to read at all (an unimplemented service).
            (answer(501, &[], ""), None),
        ];
        for (response, expected) in cases {
            let (response, operation) = answered_operation(&request, response).await;
            assert_eq!(operation.as_deref(), expected);
            if response.status() == 400 && expected.is_none() {
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                assert!(!body.is_empty(), "the answer's body is kept");
            }
        }
    }

    fn labels(service: &str, operation: &str, status: &str) -> RequestLabels {
        RequestLabels {
            service: service.into(),
            operation: operation.into(),
            status: status.into(),
        }
    }

    /// The gauges count a service's tasks exactly as DescribeServices does.
    #[tokio::test]
    async fn service_counts_match_describe_services() {
        use crate::ecs::services::{render, DeploymentRecord, ServiceRecord};
        use model::ecs::task::Task;
        let store = MemoryStore::new(Arc::new(SystemClock));
        let mut record = ServiceRecord::default();
        record.service.service_name = Some("web".into());
        record.service.status = Some("ACTIVE".into());
        record.service.desired_count = Some(4);
        let mut deployment = DeploymentRecord::default();
        deployment.deployment.id = Some("ecs-svc/1".into());
        deployment.deployment.rollout_state = Some("IN_PROGRESS".into());
        record.wharf_deployments.push(deployment);
        store
            .put(&keys::service("c1", "web"), crate::ecs::encode(&record))
            .await
            .unwrap();
        let states = [
            ("RUNNING", "RUNNING"),
            ("PROVISIONING", "RUNNING"),
            ("PENDING", "RUNNING"),
            ("PENDING", "STOPPED"),
            ("STOPPED", "STOPPED"),
        ];
        let mut tasks = Vec::new();
        for (i, (last, desired)) in states.iter().enumerate() {
            let task = Task {
                last_status: Some(last.to_string()),
                desired_status: Some(desired.to_string()),
                group: Some("service:web".into()),
                started_by: Some("ecs-svc/1".into()),
                ..Default::default()
            };
            store
                .put(
                    &keys::task("c1", &format!("t{i}")),
                    crate::ecs::encode(&task),
                )
                .await
                .unwrap();
            tasks.push(task);
        }
        let described = render(&record, &tasks);
        let snapshot = StateSnapshot::read(&store).await.unwrap();
        assert_eq!(
            snapshot.service_tasks[&("c1".to_string(), "web".to_string())],
            ServiceCounts {
                desired: 4,
                running: described.running_count.unwrap(),
                pending: described.pending_count.unwrap(),
            }
        );
        assert_eq!(described.running_count, Some(1));
        assert_eq!(described.pending_count, Some(2));
        assert_eq!(
            snapshot.deployments[&("c1".to_string(), "IN_PROGRESS".to_string())],
            1
        );
        assert_eq!(
            snapshot.tasks[&(
                "c1".to_string(),
                "PENDING".to_string(),
                "RUNNING".to_string()
            )],
            1
        );
    }
}
