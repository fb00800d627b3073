//! [`LoadBalancerNode`]: one `wharf lb` data-plane node. It owns four kinds of tasks, all in
//! one [`TaskTracker`] and stopped by one cancellation token:
//!
//! - the routes loop: long-polls `GetRoutes`, compiles each new snapshot, swaps the routing
//!   table, reconciles listeners, starts health checks for new targets and arms draining
//!   deadlines. When the control plane is unreachable it keeps serving the last table and
//!   retries with backoff;
//! - the health reporter: `ReportTargetHealth` within a moment of any state change and in
//!   full every `health_report_interval`;
//! - the metrics flusher: `ReportRequestMetrics` every `metrics_interval`;
//! - listeners, connections, health checks and draining timers. Client connections run on
//!   the node's worker threads ([`crate::workers`]), everything else on the runtime that
//!   started the node.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::backoff::Backoff;
use model::elb::{
    MetricDatum, ReportRequestMetricsInput, ReportTargetHealthInput, TargetGroupHealthReport,
    TargetHealthReport,
};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::{health_client, run_checks, HealthClient};
use crate::http_proxy::HttpShared;
use crate::listeners::{ListenerContext, Listeners, LoadBalancerStates};
use crate::metrics::DatumBuilder;
use crate::source::{Reporter, RouteSource};
use crate::table::{Registry, Routes, RoutingTable};
use crate::workers::Workers;

/// A node's settings.
#[derive(Debug, Clone)]
pub struct LoadBalancerConfig {
    /// The node's name in reports (stable across restarts), e.g. the host name.
    pub node: String,
    /// Full health reports this often (changes are reported at once).
    pub health_report_interval: Duration,
    /// Request metrics are aggregated over and flushed at this interval.
    pub metrics_interval: Duration,
    /// How long one `GetRoutes` long poll may wait.
    pub routes_wait: Duration,
    /// How often listeners that could not be bound are tried again.
    pub bind_retry_interval: Duration,
    /// Worker threads serving client connections (0: the starting runtime serves them).
    pub workers: usize,
    /// How long a UDP flow lives without a datagram ([`crate::udp_proxy::UDP_IDLE_TIMEOUT`],
    /// AWS's; tests shorten it).
    pub udp_idle_timeout: Duration,
}

impl LoadBalancerConfig {
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            health_report_interval: Duration::from_secs(10),
            metrics_interval: Duration::from_secs(10),
            routes_wait: Duration::from_secs(model::elb::MAX_ROUTES_WAIT_SECONDS - 5),
            bind_retry_interval: Duration::from_secs(5),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            udp_idle_timeout: crate::udp_proxy::UDP_IDLE_TIMEOUT,
        }
    }
}

/// A health report is sent at most this long after a state change (changes in this window
/// are batched into one report).
const CHANGE_REPORT_DELAY: Duration = Duration::from_millis(50);

struct NodeState {
    config: LoadBalancerConfig,
    routes: Arc<Routes>,
    http: Arc<HttpShared>,
    workers: Arc<Workers>,
    health: HealthClient,
    health_changed: Arc<Notify>,
    load_balancers: Mutex<LoadBalancerStates>,
    revision: watch::Sender<i64>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// Starts nodes.
#[derive(Debug)]
pub struct LoadBalancerNode;

impl LoadBalancerNode {
    /// Starts serving on the current Tokio runtime. Everything stops when `cancel` is
    /// cancelled; await [`LoadBalancerHandle::wait`] for it to have stopped.
    pub fn start(
        config: LoadBalancerConfig,
        source: Arc<dyn RouteSource>,
        reporter: Arc<dyn Reporter>,
        cancel: CancellationToken,
    ) -> LoadBalancerHandle {
        let routes = Arc::new(Routes::default());
        let tracker = TaskTracker::new();
        let workers = Workers::start(config.workers, tracker.clone(), cancel.clone())
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot start worker threads, serving on the node's runtime");
                Workers::start(0, tracker.clone(), cancel.clone()).expect("no threads to start")
            });
        let state = Arc::new(NodeState {
            config,
            workers: Arc::new(workers),
            http: Arc::new(HttpShared::new(routes.clone())),
            routes,
            health: health_client(),
            health_changed: Arc::new(Notify::new()),
            load_balancers: Mutex::new(LoadBalancerStates::default()),
            revision: watch::Sender::new(0),
            tracker,
            cancel,
        });
        state.tracker.spawn(routes_loop(state.clone(), source));
        state
            .tracker
            .spawn(health_report_loop(state.clone(), reporter.clone()));
        state.tracker.spawn(metrics_loop(state.clone(), reporter));
        LoadBalancerHandle { state }
    }
}

/// A running node.
pub struct LoadBalancerHandle {
    state: Arc<NodeState>,
}

impl std::fmt::Debug for LoadBalancerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancerHandle")
            .field("node", &self.state.config.node)
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl LoadBalancerHandle {
    /// The revision of the snapshot being served (0 before the first).
    pub fn revision(&self) -> i64 {
        *self.state.revision.borrow()
    }

    /// Waits until a snapshot of at least `revision` is being served.
    pub async fn wait_for_revision(&self, revision: i64) {
        let mut changes = self.state.revision.subscribe();
        let _ = changes.wait_for(|served| *served >= revision).await;
    }

    /// The observed health of a target, as the node would report it.
    pub fn target_health(
        &self,
        target_group_arn: &str,
        id: &str,
        port: u16,
    ) -> Option<TargetHealthReport> {
        let table = self.state.routes.current();
        let group = table.groups.iter().find(|g| g.arn == target_group_arn)?;
        let target = group
            .targets
            .iter()
            .find(|t| t.runtime.id == id && t.runtime.port == port)?;
        Some(health_report(&target.runtime))
    }

    /// The load balancers this node serves, and those it cannot.
    pub fn load_balancer_states(&self) -> LoadBalancerStates {
        self.state.load_balancers.lock().expect("poisoned").clone()
    }

    /// Stops the node.
    pub fn shutdown(&self) {
        self.state.cancel.cancel();
    }

    /// Waits until every task of the node has ended (after cancellation).
    pub async fn wait(&self) {
        self.state.cancel.cancelled().await;
        // Idle pooled connections to targets end once their pools let go of them.
        for group in &self.state.routes.current().groups {
            for target in &group.targets {
                target.runtime.clear_pools();
            }
        }
        self.state.tracker.close();
        self.state.tracker.wait().await;
    }
}

async fn routes_loop(state: Arc<NodeState>, source: Arc<dyn RouteSource>) {
    let mut registry = Registry::with_pool_slots(state.workers.slots());
    let mut listeners = Listeners::default();
    let context = ListenerContext {
        routes: state.routes.clone(),
        http: state.http.clone(),
        tracker: state.tracker.clone(),
        workers: state.workers.clone(),
        shutdown: state.cancel.clone(),
        udp_idle_timeout: state.config.udp_idle_timeout,
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut revision = 0;
    loop {
        let poll = source.get_routes(revision, state.config.routes_wait);
        tokio::pin!(poll);
        let answer = loop {
            tokio::select! {
                answer = &mut poll => break Some(answer),
                _ = tokio::time::sleep(state.config.bind_retry_interval), if listeners.has_failures() => {
                    let table = state.routes.current();
                    let states = listeners.reconcile(&table, &context);
                    set_load_balancer_states(&state, states);
                }
                _ = state.cancel.cancelled() => break None,
            }
        };
        let Some(answer) = answer else { break };
        match answer {
            Ok(snapshot) => {
                backoff.reset();
                if snapshot.revision == revision && revision != 0 {
                    continue;
                }
                revision = snapshot.revision;
                let (table, changes) = registry.compile(&snapshot, Instant::now());
                let states = listeners.reconcile(&table, &context);
                state.routes.swap(table);
                for runtime in changes.added {
                    state.tracker.spawn(run_checks(
                        runtime,
                        state.health.clone(),
                        state.health_changed.clone(),
                    ));
                }
                for (runtime, deadline) in changes.deadlines {
                    if let Some((deadline, disarmed)) = runtime.set_drain_deadline(deadline) {
                        state
                            .tracker
                            .spawn(runtime.run_drain_timer(deadline, disarmed));
                    }
                }
                set_load_balancer_states(&state, states);
                // The new table's targets (and load balancers) go to the reporter at once.
                state.health_changed.notify_one();
                state.revision.send_replace(revision);
                tracing::debug!(revision, "serving a new route snapshot");
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot get routes, serving the last snapshot");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = state.cancel.cancelled() => break,
                }
            }
        }
    }
    listeners.close_all();
    state.routes.touch();
    for runtime in registry.targets() {
        runtime.stop.cancel();
        runtime.set_drain_deadline(None);
    }
}

fn set_load_balancer_states(state: &NodeState, states: LoadBalancerStates) {
    let mut current = state.load_balancers.lock().expect("poisoned");
    if *current != states {
        *current = states;
        state.health_changed.notify_one();
    }
}

fn health_report(runtime: &crate::table::TargetRuntime) -> TargetHealthReport {
    let status = runtime.status();
    TargetHealthReport {
        id: runtime.id.clone(),
        port: i32::from(runtime.port),
        registered_at_ms: runtime.registered_at_ms,
        state: status.state.to_string(),
        reason: status.reason.map(str::to_string),
        description: status.description,
    }
}

fn health_input(state: &NodeState) -> ReportTargetHealthInput {
    let table = state.routes.current();
    let load_balancers = state.load_balancers.lock().expect("poisoned").clone();
    ReportTargetHealthInput {
        node: state.config.node.clone(),
        target_groups: table
            .groups
            .iter()
            .map(|group| TargetGroupHealthReport {
                arn: group.arn.clone(),
                targets: group
                    .targets
                    .iter()
                    .map(|t| health_report(&t.runtime))
                    .collect(),
            })
            .collect(),
        active_load_balancers: load_balancers.active,
        failed_load_balancers: load_balancers.failed,
    }
}

async fn health_report_loop(state: Arc<NodeState>, reporter: Arc<dyn Reporter>) {
    let mut full = tokio::time::interval(state.config.health_report_interval);
    full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Before the first snapshot there is nothing to say.
    if state
        .revision
        .subscribe()
        .wait_for(|r| *r > 0)
        .await
        .is_err()
    {
        return;
    }
    // After a failed report, the next one comes after a growing delay (or a change).
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut retry_in: Option<Duration> = None;
    loop {
        tokio::select! {
            _ = full.tick() => {}
            _ = state.health_changed.notified() => {
                tokio::time::sleep(CHANGE_REPORT_DELAY).await;
            }
            _ = tokio::time::sleep(retry_in.unwrap_or_default()), if retry_in.is_some() => {}
            _ = state.cancel.cancelled() => return,
        }
        let input = health_input(&state);
        match reporter.report_target_health(input).await {
            Ok(()) => {
                backoff.reset();
                retry_in = None;
            }
            Err(error) => {
                if retry_in.is_none() {
                    tracing::warn!(%error, "cannot report target health, retrying");
                }
                retry_in = Some(backoff.next_delay());
            }
        }
    }
}

/// The datums of one metrics interval starting at `timestamp_ms`.
fn metric_datums(table: &RoutingTable, timestamp_ms: i64) -> Vec<MetricDatum> {
    let mut datums = Vec::new();
    for lb in &table.load_balancers {
        let mut builder = DatumBuilder {
            namespace: DatumBuilder::for_kind(lb.kind),
            dimensions: vec![("LoadBalancer".to_string(), lb.dimension.clone())],
            timestamp_ms,
            out: &mut datums,
        };
        match lb.kind {
            model::elb::LoadBalancerKind::Application => {
                use std::sync::atomic::Ordering::Relaxed;
                builder.http(&lb.metrics.http.take(), true);
                let connections = &lb.metrics.connections;
                let active = connections.active_connections.load(Relaxed).max(0) as u64;
                let new = connections.new_connections.swap(0, Relaxed);
                builder.count("NewConnectionCount", new, false);
                builder.count("ActiveConnectionCount", active, false);
            }
            model::elb::LoadBalancerKind::Network => {
                use std::sync::atomic::Ordering::Relaxed;
                let (mut active, mut new, mut bytes) = (0, 0, 0);
                for (protocol, flows) in lb.metrics.flows.by_protocol() {
                    let protocol_active = flows.active_flows.load(Relaxed).max(0) as u64;
                    let protocol_new = flows.new_flows.swap(0, Relaxed);
                    let protocol_bytes = flows.processed_bytes.swap(0, Relaxed);
                    let name = |metric: &str| format!("{metric}_{protocol}");
                    builder.count(&name("ActiveFlowCount"), protocol_active, false);
                    builder.count(&name("NewFlowCount"), protocol_new, false);
                    builder.bytes(&name("ProcessedBytes"), protocol_bytes);
                    active += protocol_active;
                    new += protocol_new;
                    bytes += protocol_bytes;
                }
                builder.count("ActiveFlowCount", active, true);
                builder.count("NewFlowCount", new, false);
                builder.bytes("ProcessedBytes", bytes);
                let flows = &lb.metrics.flows;
                for (name, counter) in [
                    ("TCP_Client_Reset_Count", &flows.client_resets),
                    ("TCP_Target_Reset_Count", &flows.target_resets),
                    ("TCP_ELB_Reset_Count", &flows.elb_resets),
                    ("PortAllocationErrorCount", &flows.port_allocation_errors),
                ] {
                    builder.count(name, counter.swap(0, Relaxed), false);
                }
            }
        }
        let tls_errors = &lb.metrics.connections.tls_negotiation_errors;
        let tls_errors = tls_errors.swap(0, std::sync::atomic::Ordering::Relaxed);
        builder.count("ClientTLSNegotiationErrorCount", tls_errors, false);
    }
    for pair in &table.pairs {
        let lb = &pair.load_balancer;
        let mut builder = DatumBuilder {
            namespace: DatumBuilder::for_kind(lb.kind),
            dimensions: vec![
                ("TargetGroup".to_string(), pair.group.dimension.clone()),
                ("LoadBalancer".to_string(), lb.dimension.clone()),
            ],
            timestamp_ms,
            out: &mut datums,
        };
        let available = pair.group.targets.iter().filter(|t| !t.draining);
        let (healthy, unhealthy) = available.fold((0, 0), |(h, u), t| {
            (
                h + u64::from(t.runtime.is_healthy()),
                u + u64::from(t.runtime.is_unhealthy()),
            )
        });
        builder.count("HealthyHostCount", healthy, true);
        builder.count("UnHealthyHostCount", unhealthy, true);
    }
    datums
}

/// The HTTP counters of (load balancer, target group) pairs live in the forward actions;
/// each pair's counters are one `Arc` shared by every rule forwarding there.
fn pair_datums(table: &RoutingTable, timestamp_ms: i64, datums: &mut Vec<MetricDatum>) {
    let mut seen = std::collections::HashSet::new();
    for listener in table.listeners.values() {
        let lb = &listener.load_balancer;
        for rule in &listener.rules {
            let crate::table::Action::Forward(forward) = &rule.action else {
                continue;
            };
            for weighted in &forward.groups {
                if !seen.insert(Arc::as_ptr(&weighted.metrics)) {
                    continue;
                }
                let mut builder = DatumBuilder {
                    namespace: DatumBuilder::for_kind(lb.kind),
                    dimensions: vec![
                        ("TargetGroup".to_string(), weighted.group.dimension.clone()),
                        ("LoadBalancer".to_string(), lb.dimension.clone()),
                    ],
                    timestamp_ms,
                    out: datums,
                };
                let totals = weighted.metrics.take();
                builder.http(&totals, false);
                // ALB's request count over the healthy targets (over the routed-to ones when
                // none is healthy and the group fails open), what target tracking scales on.
                let available = weighted.group.targets.iter().filter(|t| !t.draining);
                let healthy = available.clone().filter(|t| t.runtime.is_healthy()).count();
                let targets = if healthy > 0 {
                    healthy
                } else {
                    available.count()
                };
                // Reported also when 0 (AWS reports it whenever the load balancer reports),
                // under both of AWS's dimension sets: scaling in needs the zeros.
                let application = lb.kind == model::elb::LoadBalancerKind::Application;
                if application && targets > 0 {
                    let per_target = totals.requests as f64 / targets as f64;
                    builder.push("RequestCountPerTarget", "Count", 1.0, per_target);
                    let mut by_group = DatumBuilder {
                        namespace: builder.namespace,
                        dimensions: vec![(
                            "TargetGroup".to_string(),
                            weighted.group.dimension.clone(),
                        )],
                        timestamp_ms,
                        out: builder.out,
                    };
                    by_group.push("RequestCountPerTarget", "Count", 1.0, per_target);
                }
            }
        }
    }
}

async fn metrics_loop(state: Arc<NodeState>, reporter: Arc<dyn Reporter>) {
    let mut period_start = crate::clock::epoch_ms();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(state.config.metrics_interval) => false,
            _ = state.cancel.cancelled() => true,
        };
        let table = state.routes.current();
        let mut datums = metric_datums(&table, period_start);
        pair_datums(&table, period_start, &mut datums);
        period_start = crate::clock::epoch_ms();
        if !datums.is_empty() {
            let input = ReportRequestMetricsInput {
                node: state.config.node.clone(),
                datums,
            };
            // The last flush of a stopping node gets a short grace.
            let send = reporter.report_request_metrics(input);
            let sent = if stopping {
                tokio::time::timeout(Duration::from_secs(2), send)
                    .await
                    .ok()
            } else {
                Some(send.await)
            };
            if let Some(Err(error)) = sent {
                tracing::warn!(%error, "cannot report request metrics, dropping this interval");
            }
        }
        if stopping {
            return;
        }
    }
}
