//! Deployments of a service: how one starts, completes, fails and rolls back (pure
//! transitions of the service record, shared by the API and the service scheduler), and the
//! deployment-history API: ListServiceDeployments, DescribeServiceDeployments,
//! DescribeServiceRevisions and StopServiceDeployment.
//!
//! A `Deployment` (`deployments[]`, id `ecs-svc/N`) is what the scheduler places tasks for; a
//! `ServiceDeployment` (ARN `…:service-deployment/<cluster>/<service>/<id>`) is the history
//! entry for one change of the service, and a `ServiceRevision` the immutable description of
//! what a deployment runs. A rollback is a new `Deployment` inside the failed change's
//! `ServiceDeployment`, as ECS reports it.

use model::arn::Scope;
use model::ecs::service::{
    circuit_breaker_threshold, ContainerImage, Deployment, Rollback, ServiceDeployment,
    ServiceDeploymentAlarms, ServiceDeploymentCircuitBreaker, ServiceRevision,
    ServiceRevisionSummary, COMPLETED, DEPLOYMENT_ACTIVE, FAILED, IN_PROGRESS, PRIMARY,
};
use model::ecs::task_definition::TaskDefinition;
use serde::Deserialize;
use serde_json::{json, Value};

use super::events;
use super::{
    parse_history_arn, read_service, write_service, CompletedRevision, DeploymentRecord, Ids,
    RevisionConfig, ServiceRecord,
};
use crate::ecs::clusters::active_cluster;
use crate::ecs::{paging, EcsContext, EcsError};

/// How many service deployments (and the revisions they name) a service keeps.
const HISTORY: usize = 20;

/// ServiceDeployment statuses.
const SD_IN_PROGRESS: &str = "IN_PROGRESS";
const SD_SUCCESSFUL: &str = "SUCCESSFUL";
const SD_STOPPED: &str = "STOPPED";
const SD_ROLLBACK_IN_PROGRESS: &str = "ROLLBACK_IN_PROGRESS";
const SD_ROLLBACK_SUCCESSFUL: &str = "ROLLBACK_SUCCESSFUL";
const SD_ROLLBACK_FAILED: &str = "ROLLBACK_FAILED";

/// Start a deployment of `config` (CreateService, UpdateService): the current primary becomes
/// ACTIVE (its tasks are replaced within the deployment configuration's bounds), a new
/// PRIMARY starts IN_PROGRESS, and the change is recorded as a service deployment with the
/// revision it targets.
pub fn start_deployment(
    record: &mut ServiceRecord,
    scope: &Scope,
    cluster: &str,
    config: RevisionConfig,
    definition: &TaskDefinition,
    now: f64,
) -> String {
    let name = record.name().to_string();
    let service_arn = record.service.service_arn.clone();
    let cluster_arn = record.service.cluster_arn.clone();
    let revision_arn = Ids::service_revision_arn(scope, cluster, &name);
    let sd_arn = Ids::service_deployment_arn(scope, cluster, &name);
    let sources: Vec<ServiceRevisionSummary> = record
        .wharf_deployments
        .iter()
        .map(|d| ServiceRevisionSummary {
            arn: Some(d.wharf_service_revision_arn.clone()),
            requested_task_count: Some(0),
            ..Default::default()
        })
        .collect();
    supersede(record, now);
    let id = Ids::deployment_id();
    record.wharf_service_revisions.insert(
        0,
        ServiceRevision {
            service_revision_arn: Some(revision_arn.clone()),
            service_arn: service_arn.clone(),
            cluster_arn: cluster_arn.clone(),
            task_definition: Some(config.task_definition.clone()),
            launch_type: record.service.launch_type.clone(),
            load_balancers: Some(config.load_balancers.clone()),
            service_registries: Some(vec![]),
            network_configuration: config.network_configuration.clone(),
            container_images: Some(
                definition
                    .container_definitions
                    .iter()
                    .flatten()
                    .map(|c| ContainerImage {
                        container_name: c.name.clone(),
                        image: c.image.clone(),
                        image_digest: None,
                    })
                    .collect(),
            ),
            guard_duty_enabled: Some(false),
            created_at: Some(now),
            ..Default::default()
        },
    );
    let desired = record.service.desired_count.unwrap_or(0);
    let configuration = record.service.deployment_configuration.clone();
    let breaker = configuration
        .as_ref()
        .and_then(|c| c.deployment_circuit_breaker.clone());
    let alarms = configuration.as_ref().and_then(|c| c.alarms.clone());
    record.wharf_service_deployments.insert(
        0,
        ServiceDeployment {
            service_deployment_arn: Some(sd_arn.clone()),
            service_arn,
            cluster_arn,
            created_at: Some(now),
            started_at: Some(now),
            updated_at: Some(now),
            source_service_revisions: Some(sources),
            target_service_revision: Some(ServiceRevisionSummary {
                arn: Some(revision_arn.clone()),
                requested_task_count: Some(desired),
                ..Default::default()
            }),
            status: Some(SD_IN_PROGRESS.to_string()),
            lifecycle_stage: Some("RECONCILE_SERVICE".to_string()),
            deployment_configuration: configuration,
            deployment_circuit_breaker: Some(ServiceDeploymentCircuitBreaker {
                status: Some(
                    if breaker.as_ref().is_some_and(|b| b.enable) {
                        "MONITORING"
                    } else {
                        "DISABLED"
                    }
                    .to_string(),
                ),
                failure_count: Some(0),
                threshold: breaker
                    .as_ref()
                    .map(|b| circuit_breaker_threshold(b, desired)),
            }),
            alarms: Some(ServiceDeploymentAlarms {
                status: Some(
                    if alarms.as_ref().is_some_and(|a| a.enable) {
                        "MONITORING"
                    } else {
                        "DISABLED"
                    }
                    .to_string(),
                ),
                alarm_names: alarms.as_ref().map(|a| a.alarm_names.clone()),
                triggered_alarm_names: Some(vec![]),
            }),
            ..Default::default()
        },
    );
    push_primary(
        record,
        id.clone(),
        &config,
        sd_arn,
        revision_arn,
        vec![],
        now,
    );
    trim(record);
    id
}

/// The current primary steps back to ACTIVE; a change still in progress is stopped by the
/// newer one.
fn supersede(record: &mut ServiceRecord, now: f64) {
    if let Some(primary) = record.primary_mut() {
        primary.deployment.status = Some(DEPLOYMENT_ACTIVE.to_string());
        primary.deployment.updated_at = Some(now);
        let sd_arn = primary.wharf_service_deployment_arn.clone();
        if let Some(sd) = record.service_deployment_mut(&sd_arn) {
            if matches!(
                sd.status.as_deref(),
                Some(SD_IN_PROGRESS | SD_ROLLBACK_IN_PROGRESS)
            ) {
                sd.status = Some(SD_STOPPED.to_string());
                sd.status_reason =
                    Some("Service deployment stopped by a newer service deployment.".to_string());
                sd.stopped_at = Some(now);
                sd.updated_at = Some(now);
            }
        }
    }
}

fn push_primary(
    record: &mut ServiceRecord,
    id: String,
    config: &RevisionConfig,
    sd_arn: String,
    revision_arn: String,
    adopts: Vec<String>,
    now: f64,
) {
    record.wharf_deployments.insert(
        0,
        DeploymentRecord {
            deployment: Deployment {
                id: Some(id.clone()),
                status: Some(PRIMARY.to_string()),
                task_definition: Some(config.task_definition.clone()),
                desired_count: record.service.desired_count,
                created_at: Some(now),
                updated_at: Some(now),
                launch_type: record.service.launch_type.clone(),
                capacity_provider_strategy: record.service.capacity_provider_strategy.clone(),
                platform_version: record.service.platform_version.clone(),
                platform_family: record.service.platform_family.clone(),
                network_configuration: config.network_configuration.clone(),
                rollout_state: Some(IN_PROGRESS.to_string()),
                rollout_state_reason: Some(events::in_progress_reason(&id)),
                ..Default::default()
            },
            wharf_placement_constraints: config.placement_constraints.clone(),
            wharf_placement_strategy: config.placement_strategy.clone(),
            wharf_failed_task_ids: vec![],
            wharf_service_deployment_arn: sd_arn,
            wharf_service_revision_arn: revision_arn,
            wharf_adopts: adopts,
            wharf_steady_since: None,
            wharf_load_balancers: config.load_balancers.clone(),
        },
    );
    record.service.load_balancers = Some(config.load_balancers.clone());
    record.service.task_definition = Some(config.task_definition.clone());
    record.service.placement_constraints = Some(config.placement_constraints.clone());
    record.service.placement_strategy = Some(config.placement_strategy.clone());
    record.service.network_configuration = config.network_configuration.clone();
    // A new deployment gets a fresh start: no inherited backoff.
    record.wharf_start_failures = 0;
    record.wharf_backoff_until = None;
    record.wharf_steady = false;
}

/// Keep the newest service deployments and the revisions anything still refers to.
fn trim(record: &mut ServiceRecord) {
    record.wharf_service_deployments.truncate(HISTORY);
    let mut wanted: Vec<String> = record
        .wharf_deployments
        .iter()
        .map(|d| d.wharf_service_revision_arn.clone())
        .collect();
    for sd in &record.wharf_service_deployments {
        wanted.extend(
            sd.target_service_revision
                .iter()
                .filter_map(|t| t.arn.clone()),
        );
        wanted.extend(
            sd.source_service_revisions
                .iter()
                .flatten()
                .filter_map(|s| s.arn.clone()),
        );
    }
    if let Some(last) = &record.wharf_last_completed {
        wanted.push(last.service_revision_arn.clone());
    }
    record.wharf_service_revisions.retain(|r| {
        r.service_revision_arn
            .as_ref()
            .is_some_and(|a| wanted.contains(a))
    });
}

/// The primary reached a steady state: COMPLETED, and the revision a later rollback returns to.
pub fn complete(record: &mut ServiceRecord, now: f64) -> Option<String> {
    let name = record.name().to_string();
    let primary = record.primary_mut()?;
    if primary.rollout_state() != IN_PROGRESS {
        return None;
    }
    let id = primary.id().to_string();
    primary.deployment.rollout_state = Some(COMPLETED.to_string());
    primary.deployment.rollout_state_reason = Some(events::completed_reason(&id));
    primary.deployment.updated_at = Some(now);
    let mut task_deployment_ids = vec![id.clone()];
    task_deployment_ids.extend(primary.wharf_adopts.iter().cloned());
    let completed = CompletedRevision {
        deployment_id: id.clone(),
        task_deployment_ids,
        config: RevisionConfig {
            task_definition: primary
                .deployment
                .task_definition
                .clone()
                .unwrap_or_default(),
            placement_constraints: primary.wharf_placement_constraints.clone(),
            placement_strategy: primary.wharf_placement_strategy.clone(),
            network_configuration: primary.deployment.network_configuration.clone(),
            load_balancers: primary.wharf_load_balancers.clone(),
        },
        service_revision_arn: primary.wharf_service_revision_arn.clone(),
    };
    let sd_arn = primary.wharf_service_deployment_arn.clone();
    if let Some(sd) = record.service_deployment_mut(&sd_arn) {
        let rolled_back = sd.status.as_deref() == Some(SD_ROLLBACK_IN_PROGRESS);
        sd.status = Some(
            if rolled_back {
                SD_ROLLBACK_SUCCESSFUL
            } else {
                SD_SUCCESSFUL
            }
            .to_string(),
        );
        sd.finished_at = Some(now);
        sd.updated_at = Some(now);
        sd.lifecycle_stage = Some("CLEAN_UP".to_string());
        if let Some(breaker) = sd.deployment_circuit_breaker.as_mut() {
            if breaker.status.as_deref() == Some("MONITORING") {
                breaker.status = Some("MONITORING_COMPLETE".to_string());
            }
        }
    }
    record.wharf_last_completed = Some(completed);
    trim(record);
    Some(events::deployment_completed(&name, &id))
}

/// What failed a deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum FailCause {
    /// The deployment circuit breaker counted too many failed tasks.
    CircuitBreaker,
    /// Deployment alarms (`deploymentConfiguration.alarms`) went to ALARM: their names.
    Alarms(Vec<String>),
    /// A StopServiceDeployment request.
    Stopped,
}

/// The circuit breaker, deployment alarms or StopServiceDeployment fail the primary. With
/// `rollback` and a completed revision to return to, a new primary runs that revision again
/// and adopts its tasks; otherwise the failed primary stays, placing nothing more. Returns the
/// events.
pub fn fail(
    record: &mut ServiceRecord,
    reason: &str,
    cause: &FailCause,
    rollback: bool,
    now: f64,
) -> Vec<String> {
    let name = record.name().to_string();
    let Some(primary) = record.primary_mut() else {
        return vec![];
    };
    if primary.rollout_state() != IN_PROGRESS {
        return vec![];
    }
    let failed_id = primary.id().to_string();
    let failures = primary.wharf_failed_task_ids.len() as i64;
    primary.deployment.rollout_state = Some(FAILED.to_string());
    primary.deployment.rollout_state_reason = Some(reason.to_string());
    primary.deployment.updated_at = Some(now);
    let sd_arn = primary.wharf_service_deployment_arn.clone();
    // A rollback that fails itself is not rolled back again.
    let was_rollback = !primary.wharf_adopts.is_empty();
    let mut said = vec![match cause {
        FailCause::Alarms(_) => events::deployment_failed_alarms(&name, &failed_id),
        FailCause::CircuitBreaker | FailCause::Stopped => {
            events::deployment_failed(&name, &failed_id)
        }
    }];
    let target = record
        .wharf_last_completed
        .clone()
        .filter(|c| rollback && !was_rollback && !c.task_deployment_ids.contains(&failed_id));
    if let Some(sd) = record.service_deployment_mut(&sd_arn) {
        sd.updated_at = Some(now);
        match cause {
            FailCause::CircuitBreaker => {
                if let Some(breaker) = sd.deployment_circuit_breaker.as_mut() {
                    breaker.status = Some("TRIGGERED".to_string());
                    breaker.failure_count = Some(failures);
                }
            }
            FailCause::Alarms(names) => {
                if let Some(alarms) = sd.alarms.as_mut() {
                    alarms.status = Some("TRIGGERED".to_string());
                    alarms.triggered_alarm_names = Some(names.clone());
                }
            }
            FailCause::Stopped => {}
        }
        match &target {
            Some(target) => {
                sd.status = Some(SD_ROLLBACK_IN_PROGRESS.to_string());
                sd.status_reason = Some(reason.to_string());
                sd.rollback = Some(Rollback {
                    reason: Some(reason.to_string()),
                    started_at: Some(now),
                    service_revision_arn: Some(target.service_revision_arn.clone()),
                });
            }
            None if was_rollback => {
                sd.status = Some(SD_ROLLBACK_FAILED.to_string());
                sd.status_reason = Some(reason.to_string());
                sd.finished_at = Some(now);
            }
            None => {
                sd.status = Some(SD_STOPPED.to_string());
                sd.status_reason = Some(reason.to_string());
                sd.stopped_at = Some(now);
            }
        }
    }
    let Some(target) = target else {
        return said;
    };
    said.push(events::rolling_back(&name, &target.deployment_id));
    if let Some(primary) = record.primary_mut() {
        primary.deployment.status = Some(DEPLOYMENT_ACTIVE.to_string());
    }
    // The tasks of the revision rolled back to become the new primary's: drop the
    // deployments they belonged to.
    record
        .wharf_deployments
        .retain(|d| !target.task_deployment_ids.iter().any(|t| t == d.id()));
    push_primary(
        record,
        Ids::deployment_id(),
        &target.config,
        sd_arn,
        target.service_revision_arn.clone(),
        target.task_deployment_ids.clone(),
        now,
    );
    said
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedAtFilter {
    before: Option<f64>,
    after: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListServiceDeploymentsInput {
    service: String,
    cluster: Option<String>,
    status: Option<Vec<String>>,
    created_at: Option<CreatedAtFilter>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

const SD_STATUSES: [&str; 9] = [
    "PENDING",
    "SUCCESSFUL",
    "STOPPED",
    "STOP_REQUESTED",
    "IN_PROGRESS",
    "ROLLBACK_REQUESTED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_SUCCESSFUL",
    "ROLLBACK_FAILED",
];

pub async fn list_service_deployments(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListServiceDeploymentsInput = ctx.parse(input)?;
    let statuses = input.status.unwrap_or_default();
    if let Some(bad) = statuses.iter().find(|s| !SD_STATUSES.contains(&s.as_str())) {
        return Err(EcsError::InvalidParameter(format!(
            "Invalid status '{bad}'. Valid values are: {}.",
            SD_STATUSES.join(", ")
        )));
    }
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let (record, _) = read_service(ctx, &cluster, &input.service)
        .await?
        .ok_or(EcsError::ServiceNotFound)?;
    let (before, after) = match &input.created_at {
        Some(f) => (f.before, f.after),
        None => (None, None),
    };
    let items: Vec<(String, Value)> = record
        .wharf_service_deployments
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            statuses.is_empty() || statuses.iter().any(|s| Some(s) == d.status.as_ref())
        })
        .filter(|(_, d)| {
            let at = d.created_at.unwrap_or(0.0);
            before.is_none_or(|b| at < b) && after.is_none_or(|a| at > a)
        })
        // Newest first (the history is kept newest first), keyed so that pages resume in the
        // same order.
        .map(|(position, d)| {
            let created = (d.created_at.unwrap_or(0.0) * 1000.0) as i64;
            (
                format!("{:020}/{position:06}", i64::MAX - created),
                serde_json::to_value(d.brief()).unwrap_or(Value::Null),
            )
        })
        .collect();
    let mut items = items;
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let scope = format!(
        "ListServiceDeployments/{cluster}/{}/{}/{:?}/{:?}",
        record.name(),
        statuses.join(","),
        before,
        after
    );
    let (page, next) = paging::page(
        &ctx.tokens,
        &scope,
        items,
        input.next_token.as_deref(),
        Some(input.max_results.unwrap_or(20)),
        100,
    )?;
    Ok(paging::output("serviceDeployments", page, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServiceDeploymentsInput {
    service_deployment_arns: Vec<String>,
}

pub async fn describe_service_deployments(
    ctx: &EcsContext,
    input: Value,
) -> Result<Value, EcsError> {
    let input: DescribeServiceDeploymentsInput = ctx.parse(input)?;
    if input.service_deployment_arns.is_empty() || input.service_deployment_arns.len() > 20 {
        return Err(EcsError::InvalidParameter(
            "serviceDeploymentArns must contain between 1 and 20 ARNs.".to_string(),
        ));
    }
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for arn in &input.service_deployment_arns {
        let deployment = match parse_history_arn(arn, "service-deployment") {
            Some((cluster, service)) => {
                read_service(ctx, &cluster, &service)
                    .await?
                    .and_then(|(record, _)| {
                        record
                            .wharf_service_deployments
                            .into_iter()
                            .find(|d| d.service_deployment_arn.as_deref() == Some(arn.as_str()))
                    })
            }
            None => None,
        };
        match deployment {
            Some(d) => found.push(d),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    Ok(json!({ "serviceDeployments": found, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServiceRevisionsInput {
    service_revision_arns: Vec<String>,
}

pub async fn describe_service_revisions(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DescribeServiceRevisionsInput = ctx.parse(input)?;
    if input.service_revision_arns.is_empty() || input.service_revision_arns.len() > 20 {
        return Err(EcsError::InvalidParameter(
            "serviceRevisionArns must contain between 1 and 20 ARNs.".to_string(),
        ));
    }
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for arn in &input.service_revision_arns {
        let revision = match parse_history_arn(arn, "service-revision") {
            Some((cluster, service)) => {
                read_service(ctx, &cluster, &service)
                    .await?
                    .and_then(|(record, _)| {
                        record
                            .wharf_service_revisions
                            .into_iter()
                            .find(|r| r.service_revision_arn.as_deref() == Some(arn.as_str()))
                    })
            }
            None => None,
        };
        match revision {
            Some(r) => found.push(r),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    Ok(json!({ "serviceRevisions": found, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopServiceDeploymentInput {
    service_deployment_arn: String,
    stop_type: Option<String>,
}

/// StopServiceDeployment: with ROLLBACK (the default) the deployment in progress fails and
/// the service returns to its last completed revision, as the circuit breaker would.
pub async fn stop_service_deployment(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: StopServiceDeploymentInput = ctx.parse(input)?;
    match input.stop_type.as_deref() {
        None | Some("ROLLBACK") => {}
        Some("ABORT") => {
            return Err(EcsError::InvalidParameter(
                "stopType ABORT is only available for blue/green deployments, which Wharf does not run yet; use ROLLBACK.".to_string(),
            ))
        }
        Some(other) => {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid stopType '{other}'. Valid values are: ABORT, ROLLBACK."
            )))
        }
    }
    let arn = input.service_deployment_arn;
    let not_found = || {
        EcsError::ServiceDeploymentNotFound(format!("The service deployment {arn} was not found."))
    };
    let (cluster, service) = parse_history_arn(&arn, "service-deployment").ok_or_else(not_found)?;
    for _ in 0..16 {
        let (mut record, revision) = read_service(ctx, &cluster, &service)
            .await?
            .ok_or_else(not_found)?;
        let Some(sd) = record
            .wharf_service_deployments
            .iter()
            .find(|d| d.service_deployment_arn.as_deref() == Some(arn.as_str()))
        else {
            return Err(not_found());
        };
        let primary_is_it = record.primary().is_some_and(|p| {
            p.wharf_service_deployment_arn == arn && p.rollout_state() == IN_PROGRESS
        });
        if sd.status.as_deref() != Some(SD_IN_PROGRESS) || !primary_is_it {
            return Err(EcsError::ResourceConflict(
                "The service deployment is not in progress, so it cannot be stopped.".to_string(),
            ));
        }
        let has_target = record.wharf_last_completed.as_ref().is_some_and(|c| {
            record
                .primary()
                .is_some_and(|p| !c.task_deployment_ids.iter().any(|t| t == p.id()))
        });
        if !has_target {
            return Err(EcsError::ResourceConflict(
                "The service has no completed service revision to roll back to.".to_string(),
            ));
        }
        let now = ctx.now();
        let said = fail(
            &mut record,
            "Service deployment rolled back because of a StopServiceDeployment request.",
            &FailCause::Stopped,
            true,
            now,
        );
        for message in said {
            events::push(&mut record.service, message, now);
        }
        if write_service(ctx, &cluster, &record, revision, vec![]).await? {
            tracing::info!(cluster, service, service_deployment = %arn, "service deployment stopped; rolling back");
            return Ok(json!({ "serviceDeploymentArn": arn }));
        }
    }
    Err(EcsError::Conflict(
        "The service is being changed concurrently; retry.".to_string(),
    ))
}
