//! ECS services: the stored service record, the service API (`api`), the deployment history
//! API (`history`), the service scheduler's per-service reconcile (`reconcile`, driven by
//! `controllers::service`) with its pure planning core (`rollout`), the services' side of
//! Elastic Load Balancing (`load_balancers`: registering tasks as targets, draining them before
//! they stop, target health as availability), and AWS's event texts (`events`).
//!
//! One record per service at `ecs/service/<cluster>/<name>` holds everything the service is:
//! the wire `Service` (with top-level `status` and `launchType`, which cluster statistics
//! count), its deployments with what each one runs, the last 100 events, the service
//! deployment and revision history, and the scheduler's bookkeeping (which stopped tasks it has
//! already accounted for, the start-failure backoff). Counts (`runningCount`, `pendingCount`,
//! per-deployment counts) are never stored: they are derived from the tasks whenever a service
//! is described, so they cannot drift. Tasks belong to a deployment through their `startedBy`
//! (`ecs-svc/<id>`) and to the service through their group (`service:NAME`).
//!
//! ```text
//!   CreateService ──> ACTIVE ──DeleteService──> DRAINING ──(every task STOPPED)──> INACTIVE
//!                       │                                                             │
//!                       └── UpdateService (new revision / force) starts a deployment  │
//!   CreateService of the same name replaces an INACTIVE service <─────────────────────┘
//! ```
//!
//! What is persisted: the record. What is rebuilt: nothing; the scheduler derives every
//! decision from the record and the tasks in the store, so a restarted server continues where
//! the last one stopped without starting anything twice.

pub mod api;
pub mod events;
pub mod history;
pub mod load_balancers;
pub mod reconcile;
pub mod rollout;

use model::arn::{Arn, Scope};
use std::collections::BTreeMap;

use model::ecs::service::{
    Deployment, LoadBalancer, NetworkConfiguration, PlacementConstraint, PlacementStrategy,
    Service, ServiceDeployment, ServiceRevision,
};
use model::ecs::task::Task;
use model::ecs::task_definition::TaskDefinition;
use serde::{Deserialize, Serialize};
use store::{Op, Txn};

use super::{decode, encode, keys, unchanged, EcsContext, EcsError};

/// The task group of a service's tasks.
pub fn group_of(service_name: &str) -> String {
    format!("service:{service_name}")
}

/// A service as stored: the wire shape plus its deployments and the scheduler's bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    #[serde(flatten)]
    pub service: Service,
    /// Newest first; the first is PRIMARY.
    #[serde(default)]
    pub wharf_deployments: Vec<DeploymentRecord>,
    /// The CreateService clientToken that made this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wharf_client_token: Option<String>,
    /// What a circuit-breaker rollback returns to: the last deployment that COMPLETED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wharf_last_completed: Option<CompletedRevision>,
    /// Ids of the service's STOPPED tasks already accounted for (failures counted once).
    #[serde(default)]
    pub wharf_seen_stopped: Vec<String>,
    /// Tasks that failed to start (or were replaced for failing health checks) since the
    /// service was last steady.
    #[serde(default)]
    pub wharf_start_failures: u32,
    /// No task is launched before this time (the start-failure backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wharf_backoff_until: Option<f64>,
    /// Whether the last reconcile found the service steady (the steady-state event is sent on
    /// the edge into it).
    #[serde(default)]
    pub wharf_steady: bool,
    /// DescribeServiceDeployments' history, newest first, bounded.
    #[serde(default)]
    pub wharf_service_deployments: Vec<ServiceDeployment>,
    /// DescribeServiceRevisions' history, newest first, bounded.
    #[serde(default)]
    pub wharf_service_revisions: Vec<ServiceRevision>,
    /// Tasks whose targets are draining before the scheduler stops them, by task id, with the
    /// stop reason it decided (`load_balancers`: the target groups say which tasks drain).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub wharf_draining: BTreeMap<String, String>,
}

/// One deployment as stored: the wire `Deployment` (counts are rendered, not stored) and what
/// it places.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    #[serde(flatten)]
    pub deployment: Deployment,
    #[serde(default)]
    pub wharf_placement_constraints: Vec<PlacementConstraint>,
    #[serde(default)]
    pub wharf_placement_strategy: Vec<PlacementStrategy>,
    /// Tasks of this deployment that failed while it was IN_PROGRESS (`failedTasks`).
    #[serde(default)]
    pub wharf_failed_task_ids: Vec<String>,
    #[serde(default)]
    pub wharf_service_deployment_arn: String,
    #[serde(default)]
    pub wharf_service_revision_arn: String,
    /// Other deployment ids whose tasks run exactly this revision and so count as this
    /// deployment's (a rollback re-adopts the tasks of the deployment it returns to).
    #[serde(default)]
    pub wharf_adopts: Vec<String>,
    /// With deployment alarms: when this deployment first became steady; it completes once
    /// it stayed steady through the bake time (ECS keeps watching the alarms meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wharf_steady_since: Option<f64>,
    /// The target groups this deployment's tasks are registered in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wharf_load_balancers: Vec<LoadBalancer>,
}

impl DeploymentRecord {
    pub fn id(&self) -> &str {
        self.deployment.id.as_deref().unwrap_or("")
    }

    /// Whether a task started by `started_by` belongs to this deployment.
    pub fn owns(&self, started_by: Option<&str>) -> bool {
        started_by.is_some_and(|s| s == self.id() || self.wharf_adopts.iter().any(|a| a == s))
    }

    pub fn rollout_state(&self) -> &str {
        self.deployment.rollout_state.as_deref().unwrap_or("")
    }
}

/// The revision a rollback returns to.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompletedRevision {
    pub deployment_id: String,
    /// Every deployment id whose tasks run this revision.
    pub task_deployment_ids: Vec<String>,
    pub config: RevisionConfig,
    pub service_revision_arn: String,
}

/// What a deployment runs; a change to any of it starts a new deployment.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionConfig {
    pub task_definition: String,
    pub placement_constraints: Vec<PlacementConstraint>,
    pub placement_strategy: Vec<PlacementStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<LoadBalancer>,
}

impl ServiceRecord {
    pub fn name(&self) -> &str {
        self.service.service_name.as_deref().unwrap_or("")
    }

    pub fn status(&self) -> &str {
        self.service.status.as_deref().unwrap_or("")
    }

    pub fn is_daemon(&self) -> bool {
        self.service.scheduling_strategy.as_deref() == Some(model::ecs::service::DAEMON)
    }

    pub fn primary(&self) -> Option<&DeploymentRecord> {
        self.wharf_deployments.first()
    }

    pub fn primary_mut(&mut self) -> Option<&mut DeploymentRecord> {
        self.wharf_deployments.first_mut()
    }

    /// The deployment a task belongs to (index into `wharf_deployments`).
    pub fn deployment_of(&self, task: &Task) -> Option<usize> {
        self.wharf_deployments
            .iter()
            .position(|d| d.owns(task.started_by.as_deref()))
    }

    /// (minimumHealthyPercent, maximumPercent) with ECS's defaults: 100/200 for REPLICA,
    /// 0/100 for DAEMON.
    pub fn percents(&self) -> (i64, i64) {
        let configuration = self.service.deployment_configuration.as_ref();
        let (min, max) = if self.is_daemon() {
            (0, 100)
        } else {
            (100, 200)
        };
        (
            configuration
                .and_then(|c| c.minimum_healthy_percent)
                .unwrap_or(min),
            configuration.and_then(|c| c.maximum_percent).unwrap_or(max),
        )
    }

    pub fn service_deployment_mut(&mut self, arn: &str) -> Option<&mut ServiceDeployment> {
        self.wharf_service_deployments
            .iter_mut()
            .find(|d| d.service_deployment_arn.as_deref() == Some(arn))
    }
}

/// A service named by name or ARN (`…:service/<cluster>/<name>` or the old `…:service/<name>`)
/// to its name.
pub fn service_name(given: &str) -> String {
    if given.starts_with("arn:") {
        if let Some(arn) = Arn::parse(given) {
            if let ("service", rest) = arn.resource_type() {
                return rest.rsplit('/').next().unwrap_or(rest).to_string();
            }
        }
    }
    given.to_string()
}

/// Read a service of `cluster` by name or ARN, with the revision it was last written at.
pub async fn read_service(
    ctx: &EcsContext,
    cluster: &str,
    given: &str,
) -> Result<Option<(ServiceRecord, i64)>, EcsError> {
    let name = service_name(given);
    if name.is_empty() || name.contains('/') {
        return Ok(None);
    }
    ctx.get_json::<ServiceRecord>(&keys::service(cluster, &name))
        .await
}

/// Write a service record if nobody wrote it since `revision`, with any extra ops in the same
/// transaction; false when the caller must re-read.
pub async fn write_service(
    ctx: &EcsContext,
    cluster: &str,
    record: &ServiceRecord,
    revision: i64,
    extra: Vec<Op>,
) -> Result<bool, EcsError> {
    Ok(
        write_service_revision(ctx, cluster, record, revision, extra)
            .await?
            .is_some(),
    )
}

/// `write_service`, answering the record's new revision when it was written.
pub async fn write_service_revision(
    ctx: &EcsContext,
    cluster: &str,
    record: &ServiceRecord,
    revision: i64,
    extra: Vec<Op>,
) -> Result<Option<i64>, EcsError> {
    let key = keys::service(cluster, record.name());
    let mut success = vec![Op::Put {
        key: key.clone(),
        value: encode(record),
        lease: None,
    }];
    success.extend(extra);
    let response = ctx
        .store
        .txn(Txn {
            compares: vec![unchanged(&key, revision)],
            success,
            failure: vec![],
        })
        .await?;
    Ok(response.succeeded.then_some(response.revision))
}

/// The tasks of one service (group `service:NAME`) in a cluster.
pub async fn service_tasks(
    ctx: &EcsContext,
    cluster: &str,
    service: &str,
) -> Result<Vec<Task>, EcsError> {
    let group = group_of(service);
    let response = ctx
        .store
        .range(&keys::task_cluster_prefix(cluster), Default::default())
        .await?;
    let mut tasks = Vec::new();
    for kv in &response.kvs {
        let task: Task = decode(kv)?;
        if task.group.as_deref() == Some(group.as_str()) {
            tasks.push(task);
        }
    }
    Ok(tasks)
}

fn is_pending(task: &Task) -> bool {
    counts_as_pending(task.last_status.as_deref(), task.desired_status.as_deref())
}

fn is_running(task: &Task) -> bool {
    counts_as_running(task.last_status.as_deref())
}

/// DescribeServices' `pendingCount`: tasks meant to run that have not started yet (also what
/// `/metrics` reports, so the two never disagree).
pub(crate) fn counts_as_pending(last_status: Option<&str>, desired_status: Option<&str>) -> bool {
    desired_status == Some("RUNNING")
        && matches!(last_status, Some("PROVISIONING" | "PENDING" | "ACTIVATING"))
}

/// DescribeServices' `runningCount`.
pub(crate) fn counts_as_running(last_status: Option<&str>) -> bool {
    last_status == Some("RUNNING")
}

/// The wire form of a service: counts derived from its tasks, deployments rendered, the
/// scheduler's bookkeeping left out.
pub fn render(record: &ServiceRecord, tasks: &[Task]) -> Service {
    let mut service = record.service.clone();
    service.running_count = Some(tasks.iter().filter(|t| is_running(t)).count() as i64);
    service.pending_count = Some(tasks.iter().filter(|t| is_pending(t)).count() as i64);
    let mut deployments = Vec::new();
    let mut revisions = Vec::new();
    for (index, stored) in record.wharf_deployments.iter().enumerate() {
        let mine: Vec<&Task> = tasks
            .iter()
            .filter(|t| stored.owns(t.started_by.as_deref()))
            .collect();
        let running = mine.iter().filter(|t| is_running(t)).count() as i64;
        let pending = mine.iter().filter(|t| is_pending(t)).count() as i64;
        let live = mine
            .iter()
            .filter(|t| t.desired_status.as_deref() == Some("RUNNING"))
            .count() as i64;
        let mut deployment = stored.deployment.clone();
        // The primary wants the service's count; older deployments are being scaled down and
        // want what they still run.
        deployment.desired_count = Some(if index == 0 {
            record.service.desired_count.unwrap_or(0)
        } else {
            live
        });
        deployment.running_count = Some(running);
        deployment.pending_count = Some(pending);
        deployment.failed_tasks = Some(stored.wharf_failed_task_ids.len() as i64);
        revisions.push(model::ecs::service::ServiceCurrentRevisionSummary {
            arn: Some(stored.wharf_service_revision_arn.clone()),
            requested_task_count: deployment.desired_count,
            running_task_count: Some(running),
            pending_task_count: Some(pending),
        });
        deployments.push(deployment);
    }
    service.deployments = Some(deployments);
    service.current_service_revisions = Some(revisions);
    service.current_service_deployment = record
        .primary()
        .map(|d| d.wharf_service_deployment_arn.clone())
        .filter(|a| !a.is_empty());
    service.events.get_or_insert_with(Vec::new);
    service.tags = None;
    service
}

/// ARNs and ids of the deployment APIs.
pub struct Ids;

impl Ids {
    /// `ecs-svc/` and 19 digits, as ECS names deployments.
    pub fn deployment_id() -> String {
        format!("ecs-svc/{}", nineteen_digits())
    }

    pub fn service_deployment_arn(scope: &Scope, cluster: &str, service: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        let id: String = (0..21)
            .map(|_| ALPHABET[(rand::random::<u8>() & 63) as usize] as char)
            .collect();
        scope.arn(
            "ecs",
            &format!("service-deployment/{cluster}/{service}/{id}"),
        )
    }

    pub fn service_revision_arn(scope: &Scope, cluster: &str, service: &str) -> String {
        scope.arn(
            "ecs",
            &format!("service-revision/{cluster}/{service}/{}", nineteen_digits()),
        )
    }
}

fn nineteen_digits() -> u64 {
    1_000_000_000_000_000_000 + rand::random::<u64>() % 8_000_000_000_000_000_000
}

/// The cluster and service a service-deployment or service-revision ARN names.
pub fn parse_history_arn(arn: &str, kind: &str) -> Option<(String, String)> {
    let parsed = Arn::parse(arn)?;
    let (resource, rest) = parsed.resource_type();
    if resource != kind || parsed.service != "ecs" {
        return None;
    }
    let mut parts = rest.split('/');
    let cluster = parts.next()?.to_string();
    let service = parts.next()?.to_string();
    parts.next()?;
    if cluster.is_empty() || service.is_empty() || parts.next().is_some() {
        return None;
    }
    Some((cluster, service))
}

/// Whether a task definition's essential containers carry container health checks: its tasks
/// count as available only once HEALTHY. A task's health comes from its essential containers
/// alone (as in ECS), so a health check on a sidecar does not hold availability back.
pub fn has_health_check(definition: &TaskDefinition) -> bool {
    definition
        .container_definitions
        .iter()
        .flatten()
        .filter(|c| c.essential.unwrap_or(true))
        .any(|c| c.health_check.is_some())
}
