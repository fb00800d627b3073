//! One pass of the service scheduler over one service: read the service and its cluster, let
//! `rollout` decide, stop and start tasks, then record what happened (events, failed tasks,
//! deployment transitions) in the service record with a compare-and-swap.
//!
//! Every pass starts from the store alone, so it is idempotent and safe across restarts: tasks
//! are counted per deployment (by `startedBy`) before anything is started, a STOPPED task is
//! accounted for once (its id is remembered in the record), and a pass that finds nothing to
//! do writes nothing. If the server stops between starting tasks and writing the record, the
//! next pass sees the tasks and only the events of the lost pass are missing.
//!
//! ```text
//!   read service + cluster ──> sync target registrations ──> rollout::plan_*
//!         ^                                                          │
//!         │           stop tasks (deregister and drain first) <──────┘
//!         │                          │
//!         │     launch tasks <── stop drained tasks
//!         │          │
//!         └──── conflict: re-read the record, re-apply ◄── write record (CAS)
//! ```
//!
//! With `loadBalancers` (see `load_balancers`), a task counts as available only once its
//! targets are healthy, a task whose target turned unhealthy after the grace period is
//! replaced, and a task the scheduler stops is deregistered first and stopped only after its
//! target groups' deregistration delay: until then the planner sees it as stopping. The
//! decision to drain (with the stop reason) is written to the service record before the
//! targets are deregistered, so it survives a crash between the two.

use std::collections::BTreeMap;
use std::time::Duration;

use model::ecs::service::{
    circuit_breaker_threshold, rollout_bounds, DRAINING, FAILED, INACTIVE, IN_PROGRESS,
};
use model::ecs::tag::Tag;
use model::ecs::task::Task;
use model::ecs::task_definition::TaskDefinition;

use super::api::parse_placement;
use super::events;
use super::history::{complete, fail, FailCause};
use super::load_balancers::{Balancing, TargetsHealth};
use super::rollout::{
    plan_daemon, plan_replica, Common, Decision, Host, Phase, StopReason, TaskView,
};
use super::{group_of, has_health_check, write_service, write_service_revision, ServiceRecord};
use crate::ecs::cluster_state::{ClusterState, InstanceRecord};
use crate::ecs::tasks::{
    force_stopped, launch, put_task, resolve_task_definition, settle_capacity_and_network,
    stop_task_by_id, Capacity, LaunchRequest, TaskRecord,
};
use crate::ecs::{keys, placement, tags, EcsContext, EcsError};

/// How the scheduler paces itself.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// The first delay after tasks keep failing to start (three in a row).
    pub restart_backoff_base: Duration,
    /// The longest such delay.
    pub restart_backoff_max: Duration,
    /// An identical placement-failure event is not repeated within this window.
    pub event_repeat: Duration,
}

/// Failed starts in a row after which launches back off (and the service says so).
const FAILURES_BEFORE_BACKOFF: u32 = 3;

/// What a pass asks of its caller.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// Look at the service again after this long even if nothing changes in the store
    /// (a grace period or a backoff ends).
    pub recheck_after: Option<Duration>,
}

/// What a pass did and saw, applied to the service record (again, after a conflict).
#[derive(Default)]
struct Observed {
    /// The service's tasks, with the stops this pass requested applied.
    tasks: Vec<Task>,
    launched: Vec<String>,
    stopped: Vec<String>,
    unhealthy: Vec<String>,
    /// Tasks replaced because a target failed its load balancer's health checks.
    elb_unhealthy: usize,
    /// Load-balancing events in the order they happened (registrations, unhealthy targets,
    /// draining), recorded before the stop and start events of the pass.
    lb_events: Vec<String>,
    /// Load-balancing trouble that repeats every pass (a full target group): said once per
    /// `Pacing::event_repeat`, so the record does not change (and wake the service) each pass.
    lb_warnings: Vec<String>,
    /// Tasks that began draining this pass, with the stop reason decided for them.
    draining_started: Vec<(String, String)>,
    placement_failure: Option<String>,
    steady: bool,
    /// DAEMON: the desired count is the number of eligible instances.
    daemon_desired: Option<i64>,
    /// Deployment alarms in ALARM while the primary is in progress.
    triggered_alarms: Vec<String>,
    /// With deployment alarms: how long a steady primary keeps being watched before it
    /// completes (seconds).
    bake_seconds: Option<f64>,
}

/// The bake time ECS derives from the deployment alarms' configuration ("you can't set this
/// value"): long enough for the slowest alarm to see a full evaluation window of the new
/// revision (Period × EvaluationPeriods), plus the evaluator's delay for late datapoints.
async fn bake_seconds(ctx: &EcsContext, record: &ServiceRecord) -> Result<Option<f64>, EcsError> {
    let Some(alarms) = record
        .service
        .deployment_configuration
        .as_ref()
        .and_then(|c| c.alarms.as_ref())
        .filter(|a| a.enable && !a.alarm_names.is_empty())
    else {
        return Ok(None);
    };
    let mut longest = 0i64;
    for name in &alarms.alarm_names {
        if let Some((alarm, _)) = crate::cloudwatch::alarms::load(&*ctx.store, name).await? {
            let window = alarm
                .evaluation_period()
                .saturating_mul(alarm.evaluation_periods.max(1));
            longest = longest.max(window);
        }
    }
    if longest == 0 {
        return Ok(None);
    }
    Ok(Some(
        longest as f64 + crate::cloudwatch::EVALUATION_DELAY_SECONDS,
    ))
}

/// The deployment alarms (`deploymentConfiguration.alarms`, when enabled) that are in ALARM,
/// read while the primary deployment is in progress.
async fn triggered_alarms(
    ctx: &EcsContext,
    record: &ServiceRecord,
) -> Result<Vec<String>, EcsError> {
    let Some(alarms) = record
        .service
        .deployment_configuration
        .as_ref()
        .and_then(|c| c.alarms.as_ref())
        .filter(|a| a.enable && !a.alarm_names.is_empty())
    else {
        return Ok(vec![]);
    };
    // A rollback is not failed by the alarms that caused it (they stay in ALARM for a while).
    let watched = record
        .primary()
        .is_some_and(|p| p.rollout_state() == IN_PROGRESS && p.wharf_adopts.is_empty());
    if !watched {
        return Ok(vec![]);
    }
    let states = crate::cloudwatch::alarms::alarm_states(&*ctx.store, &alarms.alarm_names).await?;
    Ok(alarms
        .alarm_names
        .iter()
        .filter(|name| {
            states.get(*name).map(String::as_str) == Some(crate::cloudwatch::alarms::ALARM)
        })
        .cloned()
        .collect())
}

fn phase(task: &Task) -> Phase {
    match (task.desired_status.as_deref(), task.last_status.as_deref()) {
        (_, Some("STOPPED")) => Phase::Stopped,
        (Some("STOPPED"), _) => Phase::Stopping,
        (_, Some("RUNNING")) => Phase::Running,
        _ => Phase::Pending,
    }
}

/// RUNNING, and HEALTHY when its definition gives containers health checks (without checks
/// a task's health stays UNKNOWN).
fn available(task: &Task, checked: bool) -> bool {
    phase(task) == Phase::Running && (!checked || task.health_status.as_deref() == Some("HEALTHY"))
}

/// Which of the tasks' definitions have container health checks, by ARN.
async fn health_checked(
    ctx: &EcsContext,
    tasks: &[Task],
) -> Result<BTreeMap<String, bool>, EcsError> {
    let mut checked = BTreeMap::new();
    for task in tasks {
        let arn = task.task_definition_arn.clone().unwrap_or_default();
        if checked.contains_key(&arn) {
            continue;
        }
        let has = match resolve_task_definition(ctx, &arn).await {
            Ok(definition) => has_health_check(&definition),
            Err(EcsError::Store(error)) => return Err(error.into()),
            // A deleted definition: judge by what the agent reported.
            Err(_) => task
                .containers
                .iter()
                .flatten()
                .any(|c| c.health_status.as_deref().is_some_and(|h| h != "UNKNOWN")),
        };
        checked.insert(arn, has);
    }
    Ok(checked)
}

fn instance_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn task_id(task: &Task) -> String {
    instance_id(task.task_arn.as_deref().unwrap_or("")).to_string()
}

fn attribute(record: &InstanceRecord, name: &str) -> String {
    record
        .instance
        .attributes
        .iter()
        .flatten()
        .find(|a| a.name == name)
        .and_then(|a| a.value.clone())
        .unwrap_or_default()
}

/// Whether a STOPPED task counts as a failed start for the circuit breaker and the backoff:
/// it failed to start, its essential container exited, or it failed its health checks.
fn failed(task: &Task) -> bool {
    matches!(
        task.stop_code.as_deref(),
        Some("TaskFailedToStart" | "EssentialContainerExited")
    ) || task.stopped_reason.as_deref().is_some_and(|r| {
        r == events::UNHEALTHY_STOP_REASON
            || r.starts_with(events::ELB_UNHEALTHY_STOP_REASON_PREFIX)
    })
}

fn earliest(slot: &mut Option<f64>, at: f64) {
    *slot = Some(slot.map_or(at, |current| current.min(at)));
}

/// One pass over `cluster`/`name`.
pub async fn reconcile(
    ctx: &EcsContext,
    pacing: &Pacing,
    cluster: &str,
    name: &str,
) -> Result<Outcome, EcsError> {
    let key = keys::service(cluster, name);
    let Some((mut record, mut revision)) = ctx.get_json::<ServiceRecord>(&key).await? else {
        return Ok(Outcome::default());
    };
    if record.status() == INACTIVE {
        return Ok(Outcome::default());
    }
    let Some(primary) = record.primary().cloned() else {
        return Ok(Outcome::default());
    };
    let state = ClusterState::load(ctx, cluster).await?;
    let now = ctx.now();
    let group = group_of(name);
    let mut tasks: Vec<Task> = state
        .tasks
        .iter()
        .filter(|t| t.task.group.as_deref() == Some(group.as_str()))
        .map(|t| t.task.clone())
        .collect();
    // The definition the primary runs (by ARN, so an INACTIVE revision still resolves). If it
    // is gone altogether nothing can be started, but the rest of the pass still runs.
    let definition = match resolve_task_definition(
        ctx,
        primary.deployment.task_definition.as_deref().unwrap_or(""),
    )
    .await
    {
        Ok(definition) => Some(definition),
        Err(EcsError::Store(error)) => return Err(error.into()),
        Err(error) => {
            tracing::warn!(cluster, service = name, %error, "the primary's task definition cannot be resolved");
            None
        }
    };
    let placement = definition.as_ref().and_then(|d| {
        parse_placement(
            d,
            &primary.wharf_placement_constraints,
            &primary.wharf_placement_strategy,
        )
        .ok()
    });

    // Registrations first: what is registered and healthy decides availability. Tasks
    // waiting for healthy targets need no recheck: the scheduler's watch sees target health
    // change (`controllers::service`), and its resync covers a missed change.
    let mut balancing = Balancing::load(ctx, &record, ctx.clock.now_millis()).await?;
    let mut lb_events = balancing.sync(name, &record, &tasks, &state, task_id);
    balancing.commit(ctx).await?;
    let mut target_health: BTreeMap<String, TargetsHealth> = BTreeMap::new();
    let mut draining: Vec<String> = Vec::new();
    for task in &tasks {
        let id = task_id(task);
        if balancing.draining(&record, task, &id) {
            draining.push(id);
            continue;
        }
        let load_balancers = record
            .deployment_of(task)
            .map(|index| {
                record.wharf_deployments[index]
                    .wharf_load_balancers
                    .as_slice()
            })
            .unwrap_or_default();
        if phase(task) == Phase::Running && !load_balancers.is_empty() {
            target_health.insert(id, balancing.health(task, &state, load_balancers));
        }
    }

    let checked = health_checked(ctx, &tasks).await?;
    let views: Vec<TaskView> = tasks
        .iter()
        .map(|task| {
            let id = task_id(task);
            let targets = target_health.get(&id);
            let targets_unhealthy = matches!(targets, Some(TargetsHealth::Unhealthy(_)));
            let targets_ready = matches!(targets, None | Some(TargetsHealth::Healthy));
            let instance_arn = task.container_instance_arn.as_deref().unwrap_or("");
            let stored = state.instance(instance_arn);
            let host = match stored.and_then(|s| s.record.instance.status.as_deref()) {
                Some("DRAINING") => Host::Draining,
                Some("INACTIVE" | "DEREGISTERING") | None => Host::Gone,
                Some(_) => Host::Active,
            };
            // A draining task is on its way out: neither available nor to be stopped again.
            let drains = draining.contains(&id);
            TaskView {
                deployment: record.deployment_of(task),
                phase: if drains { Phase::Stopping } else { phase(task) },
                available: !drains
                    && targets_ready
                    && available(
                        task,
                        checked
                            .get(task.task_definition_arn.as_deref().unwrap_or(""))
                            .copied()
                            .unwrap_or(false),
                    ),
                unhealthy: !drains
                    && (task.health_status.as_deref() == Some("UNHEALTHY") || targets_unhealthy),
                id,
                instance: instance_id(instance_arn).to_string(),
                zone: stored
                    .map(|s| attribute(&s.record, "ecs.availability-zone"))
                    .unwrap_or_default(),
                host,
                started_at: task.started_at,
            }
        })
        .collect();

    let (min_percent, max_percent) = record.percents();
    let draining_service = record.status() == DRAINING;
    let frozen = primary.rollout_state() == FAILED;
    let backing_off = record.wharf_backoff_until.is_some_and(|until| now < until);
    let mut common = Common {
        lower: 0,
        launch_allowed: !frozen && !draining_service && placement.is_some() && !backing_off,
        retire_old: !frozen,
        grace: record
            .service
            .health_check_grace_period_seconds
            .unwrap_or(0) as f64,
        now,
    };
    let mut observed = Observed {
        triggered_alarms: triggered_alarms(ctx, &record).await?,
        bake_seconds: bake_seconds(ctx, &record).await?,
        ..Observed::default()
    };
    let decision: Decision = if record.is_daemon() {
        let eligible = if draining_service {
            BTreeMap::new()
        } else {
            daemon_instances(&state, definition.as_ref(), placement.as_ref())
        };
        let desired = eligible.len() as i64;
        observed.daemon_desired = Some(desired);
        common.lower = rollout_bounds(desired, min_percent, max_percent).0 as usize;
        plan_daemon(&views, &eligible, &common)
    } else {
        let desired = if draining_service {
            0
        } else {
            record.service.desired_count.unwrap_or(0)
        };
        let (lower, upper) = rollout_bounds(desired, min_percent, max_percent);
        common.lower = lower as usize;
        plan_replica(&views, desired as usize, upper as usize, &common)
    };
    observed.steady = decision.steady;

    let mut recheck_at: Option<f64> = None;
    if let Some(at) = decision.recheck_at {
        earliest(&mut recheck_at, at);
    }
    if let Some(until) = record.wharf_backoff_until.filter(|until| now < *until) {
        earliest(&mut recheck_at, until);
    }

    // Stops first: what they free is what the launches may use. A task with registered
    // targets is deregistered instead and stopped once it drained.
    let mut began_draining = 0;
    let mut drain_events = Vec::new();
    for (id, reason) in &decision.stops {
        let Some(task) = tasks.iter_mut().find(|t| task_id(t) == *id) else {
            continue;
        };
        let arn = task.task_arn.clone().unwrap_or_default();
        if *reason == StopReason::InstanceGone {
            if let Some(written) = force_stop(ctx, cluster, id, now).await? {
                *task = written;
            }
            tracing::info!(cluster, service = name, task = id, reason = ?reason, "service task stopped");
            continue;
        }
        let elb_unhealthy = match target_health.get(id) {
            Some(TargetsHealth::Unhealthy(target)) if *reason == StopReason::Unhealthy => {
                Some(target.clone())
            }
            _ => None,
        };
        let text = events::stop_reason(*reason, primary.id(), elb_unhealthy.as_ref());
        match &elb_unhealthy {
            Some(target) => {
                let who = if target.id.parse::<std::net::Ipv4Addr>().is_ok() {
                    format!("task {id}")
                } else {
                    format!("instance {}", target.id)
                };
                lb_events.push(events::target_unhealthy(
                    name,
                    &who,
                    target.port,
                    &target.target_group_arn,
                    &target.reason,
                ));
                observed.elb_unhealthy += 1;
            }
            None if *reason == StopReason::Unhealthy => observed.unhealthy.push(arn.clone()),
            None => {}
        }
        if balancing.registered(task) {
            let deregistered = balancing.deregister(&arn);
            began_draining += 1;
            for (group, count) in deregistered {
                drain_events.push(events::deregistered_targets(name, count, &group));
            }
            observed.draining_started.push((id.clone(), text));
            draining.push(id.clone());
            tracing::info!(cluster, service = name, task = id, reason = ?reason, "service task draining");
            continue;
        }
        if let Some(written) =
            stop_task_by_id(ctx, cluster, id, &text, events::SERVICE_SCHEDULER_INITIATED).await?
        {
            *task = written;
        }
        observed.stopped.push(arn);
        tracing::info!(cluster, service = name, task = id, reason = ?reason, "service task stopped");
    }
    if began_draining > 0 {
        // ECS says so before naming the target groups.
        lb_events.push(events::began_draining(name, began_draining));
        lb_events.extend(drain_events);
        // The decision is saved before any target is deregistered: a crash in between must
        // neither lose the stop reason (the circuit breaker counts ELB health-check failures)
        // nor leave deregistered targets that no record explains (`sync` would register them
        // again). The next pass finishes the deregistration of a saved drain.
        (record, revision) =
            save_draining(ctx, cluster, record, revision, &observed.draining_started).await?;
    }
    balancing.commit(ctx).await?;
    observed.lb_warnings = balancing
        .full_groups()
        .map(|group| events::target_group_full(name, group))
        .collect();

    // Tasks whose targets drained are stopped now, for the reason decided when they began.
    for task in tasks.iter_mut() {
        let id = task_id(task);
        if !draining.contains(&id) || !balancing.draining(&record, task, &id) {
            continue;
        }
        if let Some(end_ms) = balancing.drain_ends_at(task) {
            earliest(&mut recheck_at, end_ms as f64 / 1000.0);
            continue;
        }
        let reason = observed
            .draining_started
            .iter()
            .find(|(d, _)| *d == id)
            .map(|(_, r)| r.clone())
            .or_else(|| record.wharf_draining.get(&id).cloned())
            .unwrap_or_else(|| events::scaling_stop_reason(primary.id()));
        let arn = task.task_arn.clone().unwrap_or_default();
        if let Some(written) = stop_task_by_id(
            ctx,
            cluster,
            &id,
            &reason,
            events::SERVICE_SCHEDULER_INITIATED,
        )
        .await?
        {
            *task = written;
        }
        observed.stopped.push(arn);
        tracing::info!(cluster, service = name, task = %id, "service task stopped after draining");
    }
    observed.lb_events = lb_events;

    let wanted = if record.is_daemon() {
        decision.launch_on.len()
    } else {
        decision.launch
    };
    if wanted > 0 {
        if let (Some(definition), Some((constraints, strategies))) = (definition, placement) {
            let tags = task_tags(ctx, &record, cluster, &definition).await?;
            let mut request = LaunchRequest::for_service(
                cluster,
                definition,
                &group,
                primary.id(),
                tags,
                constraints,
                strategies,
            );
            request.enable_execute_command = record.service.enable_execute_command.unwrap_or(false);
            let capacity = service_capacity(&record.service);
            let settled = settle_capacity_and_network(
                ctx,
                &mut request,
                &capacity,
                record.service.platform_version.as_deref(),
                primary.deployment.network_configuration.as_ref(),
            )
            .await;
            let result = match settled {
                Err(error) => Err(error),
                Ok(()) if record.is_daemon() => {
                    launch(ctx, &request, 0, Some(&decision.launch_on), None).await
                }
                Ok(()) => launch(ctx, &request, wanted, None, None).await,
            };
            match result {
                Ok((launched, failures)) => {
                    if launched.len() < wanted {
                        let failures: Vec<(String, String)> = failures
                            .into_iter()
                            .map(|f| (f.arn.unwrap_or_default(), f.reason.unwrap_or_default()))
                            .collect();
                        observed.placement_failure = Some(events::unable_to_place(name, &failures));
                    }
                    for task in launched {
                        tracing::info!(
                            cluster,
                            service = name,
                            task = task.task_arn.as_deref().unwrap_or(""),
                            deployment = primary.id(),
                            "service task started"
                        );
                        observed
                            .launched
                            .push(task.task_arn.clone().unwrap_or_default());
                        tasks.push(task);
                    }
                }
                Err(EcsError::InvalidParameter(message))
                    if message == scheduler::plan::NO_CONTAINER_INSTANCES_MESSAGE =>
                {
                    observed.placement_failure = Some(events::no_container_instances(name));
                }
                Err(EcsError::Store(error)) => return Err(error.into()),
                Err(error) => {
                    // A lost placement race or a request the scheduler refuses: try again soon.
                    tracing::warn!(cluster, service = name, %error, "service tasks not started");
                    earliest(&mut recheck_at, now + 1.0);
                }
            }
        }
    }
    observed.tasks = tasks;

    // Record what happened; on a conflict re-read the record and apply it again.
    let mut current = Some((record, revision));
    for _ in 0..16 {
        let (mut record, revision) = match current.take() {
            Some(read) => read,
            None => match ctx.get_json::<ServiceRecord>(&key).await? {
                Some(read) => read,
                None => return Ok(Outcome::default()),
            },
        };
        let before = record.clone();
        let mut at = recheck_at;
        if apply(&mut record, &observed, pacing, now) {
            earliest(&mut at, now);
        }
        if let Some(until) = record.wharf_backoff_until.filter(|until| now < *until) {
            earliest(&mut at, until);
        }
        if let (Some(bake), Some(since)) = (
            observed.bake_seconds,
            record
                .primary()
                .filter(|p| p.rollout_state() == IN_PROGRESS)
                .and_then(|p| p.wharf_steady_since),
        ) {
            earliest(&mut at, since + bake);
        }
        if record == before || write_service(ctx, cluster, &record, revision, vec![]).await? {
            return Ok(Outcome {
                recheck_after: at.map(|at| Duration::from_secs_f64((at - now).max(0.0))),
            });
        }
    }
    Err(EcsError::Conflict(
        "The service is being changed concurrently; retry.".to_string(),
    ))
}

/// Record in the service that `draining` (task id, stop reason) drain, compared on the
/// revision (re-read and applied again on a conflict); returns the record as written.
async fn save_draining(
    ctx: &EcsContext,
    cluster: &str,
    mut record: ServiceRecord,
    mut revision: i64,
    draining: &[(String, String)],
) -> Result<(ServiceRecord, i64), EcsError> {
    let key = keys::service(cluster, record.name());
    for _ in 0..16 {
        for (id, reason) in draining {
            record.wharf_draining.insert(id.clone(), reason.clone());
        }
        if let Some(written) =
            write_service_revision(ctx, cluster, &record, revision, vec![]).await?
        {
            return Ok((record, written));
        }
        let Some(read) = ctx.get_json::<ServiceRecord>(&key).await? else {
            return Err(EcsError::Conflict(
                "The service was deleted concurrently; retry.".to_string(),
            ));
        };
        (record, revision) = read;
    }
    Err(EcsError::Conflict(
        "The service is being changed concurrently; retry.".to_string(),
    ))
}

/// Apply a pass's observations to the record. True when the record changed in a way that
/// needs another pass right away (a circuit-breaker rollback).
fn apply(record: &mut ServiceRecord, observed: &Observed, pacing: &Pacing, now: f64) -> bool {
    let name = record.name().to_string();
    let mut again = false;
    if let Some(desired) = observed.daemon_desired {
        if record.status() != DRAINING && record.service.desired_count != Some(desired) {
            record.service.desired_count = Some(desired);
        }
    }

    // STOPPED tasks are accounted for once: failures count towards the backoff and, while
    // their deployment is in progress, its failedTasks.
    let ids: Vec<String> = observed.tasks.iter().map(task_id).collect();
    record.wharf_seen_stopped.retain(|id| ids.contains(id));
    let mut new_failures = 0;
    for task in observed
        .tasks
        .iter()
        .filter(|t| t.last_status.as_deref() == Some("STOPPED"))
    {
        let id = task_id(task);
        if record.wharf_seen_stopped.contains(&id) {
            continue;
        }
        record.wharf_seen_stopped.push(id.clone());
        // Only this incarnation's deployments count: a service created again under the same
        // name must not inherit the old one's failures (they are retained for an hour).
        let Some(index) = record.deployment_of(task) else {
            continue;
        };
        if !failed(task) {
            continue;
        }
        new_failures += 1;
        {
            let deployment = &mut record.wharf_deployments[index];
            if deployment.rollout_state() == IN_PROGRESS
                && deployment.wharf_failed_task_ids.len() < 1000
            {
                deployment.wharf_failed_task_ids.push(id);
            }
        }
    }
    if new_failures > 0 {
        let before = record.wharf_start_failures;
        record.wharf_start_failures += new_failures;
        let failures = record.wharf_start_failures;
        if failures >= FAILURES_BEFORE_BACKOFF {
            let doublings = (failures - FAILURES_BEFORE_BACKOFF).min(16);
            let delay = pacing
                .restart_backoff_base
                .saturating_mul(1 << doublings)
                .min(pacing.restart_backoff_max);
            record.wharf_backoff_until = Some(now + delay.as_secs_f64());
            if before < FAILURES_BEFORE_BACKOFF {
                events::push(
                    &mut record.service,
                    events::unable_to_start_consistently(&name),
                    now,
                );
            }
        }
    }

    for message in &observed.lb_events {
        events::push(&mut record.service, message.clone(), now);
    }
    for message in &observed.lb_warnings {
        let window = pacing.event_repeat.as_secs_f64();
        if !events::said_recently(&record.service, message, now, window) {
            events::push(&mut record.service, message.clone(), now);
        }
    }
    for (id, reason) in &observed.draining_started {
        record.wharf_draining.insert(id.clone(), reason.clone());
    }
    // Only tasks still draining are remembered (stopped ones are the tasks' own record now).
    record.wharf_draining.retain(|id, _| {
        observed.tasks.iter().any(|t| {
            task_id(t) == *id
                && t.desired_status.as_deref() == Some("RUNNING")
                && t.last_status.as_deref() != Some("STOPPED")
        })
    });
    for arn in &observed.unhealthy {
        events::push(
            &mut record.service,
            events::failed_health_checks(&name, arn),
            now,
        );
    }
    if !observed.stopped.is_empty() {
        events::push(
            &mut record.service,
            events::stopped(&name, &observed.stopped),
            now,
        );
    }
    if !observed.launched.is_empty() {
        events::push(
            &mut record.service,
            events::started(
                &name,
                &observed.launched,
                observed.unhealthy.len() + observed.elb_unhealthy,
            ),
            now,
        );
    }
    if let Some(message) = &observed.placement_failure {
        let window = pacing.event_repeat.as_secs_f64();
        if !events::said_recently(&record.service, message, now, window) {
            events::push(&mut record.service, message.clone(), now);
        }
    }

    // The circuit breaker watches the primary while it is in progress.
    let desired = record.service.desired_count.unwrap_or(0);
    let breaker = record
        .service
        .deployment_configuration
        .as_ref()
        .and_then(|c| c.deployment_circuit_breaker.clone())
        .filter(|b| b.enable);
    let mut tripped = false;
    if let (Some(breaker), Some(primary)) = (breaker, record.primary().cloned()) {
        if primary.rollout_state() == IN_PROGRESS {
            let failures = primary.wharf_failed_task_ids.len() as i64;
            let threshold = circuit_breaker_threshold(&breaker, desired);
            // A rollback runs inside the failed change's service deployment, whose breaker
            // already says what tripped it.
            let sd = record
                .service_deployment_mut(&primary.wharf_service_deployment_arn)
                .filter(|sd| sd.status.as_deref() == Some("IN_PROGRESS"));
            if let Some(sd) = sd {
                if let Some(b) = sd.deployment_circuit_breaker.as_mut() {
                    if b.failure_count != Some(failures) || b.threshold != Some(threshold) {
                        b.failure_count = Some(failures);
                        b.threshold = Some(threshold);
                    }
                }
            }
            if failures >= threshold {
                tracing::warn!(service = %name, deployment = primary.id(), failures, threshold,
                    rollback = breaker.rollback, "deployment circuit breaker tripped");
                for message in fail(
                    record,
                    events::CIRCUIT_BREAKER_REASON,
                    &FailCause::CircuitBreaker,
                    breaker.rollback,
                    now,
                ) {
                    events::push(&mut record.service, message, now);
                }
                tripped = true;
                again = true;
            }
        }
    }
    // Deployment alarms watch the primary while it is in progress, like the breaker.
    if !tripped && !observed.triggered_alarms.is_empty() {
        let rollback = record
            .service
            .deployment_configuration
            .as_ref()
            .and_then(|c| c.alarms.as_ref())
            .is_some_and(|a| a.rollback);
        if record
            .primary()
            .is_some_and(|p| p.rollout_state() == IN_PROGRESS)
        {
            let names = observed.triggered_alarms.clone();
            tracing::warn!(service = %name, alarms = ?names, rollback, "deployment alarms triggered");
            let reason = events::alarms_reason(&names);
            for message in fail(record, &reason, &FailCause::Alarms(names), rollback, now) {
                events::push(&mut record.service, message, now);
            }
            tripped = true;
            again = true;
        }
    }
    // With deployment alarms a steady primary is watched through the bake time first.
    let mut baking = false;
    if let (Some(bake), Some(primary)) = (observed.bake_seconds, record.primary_mut()) {
        // A rollback is not held back by the alarms that caused it.
        if primary.rollout_state() == IN_PROGRESS
            && observed.steady
            && !tripped
            && primary.wharf_adopts.is_empty()
        {
            let since = *primary.wharf_steady_since.get_or_insert(now);
            baking = now < since + bake;
        } else if !observed.steady {
            primary.wharf_steady_since = None;
        }
    }
    if observed.steady && !tripped && !baking {
        if let Some(message) = complete(record, now) {
            tracing::info!(service = %name, "deployment completed");
            events::push(&mut record.service, message, now);
        }
    }

    // Older deployments leave once none of their tasks is left.
    let tasks = &observed.tasks;
    let mut index = 1;
    while index < record.wharf_deployments.len() {
        let deployment = &record.wharf_deployments[index];
        let left = tasks.iter().any(|t| {
            deployment.owns(t.started_by.as_deref()) && t.last_status.as_deref() != Some("STOPPED")
        });
        if left {
            index += 1;
        } else {
            record.wharf_deployments.remove(index);
        }
    }

    let steady = observed.steady && !tripped;
    if steady && !record.wharf_steady && record.status() != DRAINING {
        events::push(&mut record.service, events::steady(&name), now);
    }
    if steady {
        record.wharf_start_failures = 0;
        record.wharf_backoff_until = None;
    }
    record.wharf_steady = steady;

    if record.status() == DRAINING
        && tasks
            .iter()
            .all(|t| t.last_status.as_deref() == Some("STOPPED"))
    {
        record.service.status = Some(INACTIVE.to_string());
        record.wharf_deployments.truncate(1);
        tracing::info!(service = %name, "service INACTIVE");
    }
    again
}

/// DAEMON: ACTIVE instances where the service's and the definition's constraints hold, with
/// whether their agent is connected.
/// The capacity a service's tasks use: FARGATE by launch type or capacity provider strategy
/// (the provider with a base, else the heaviest weight, names its tasks), else EC2.
fn service_capacity(service: &model::ecs::service::Service) -> Capacity {
    if service.launch_type.as_deref() == Some("FARGATE") {
        return Capacity {
            fargate: true,
            capacity_provider_name: None,
        };
    }
    let strategy = service
        .capacity_provider_strategy
        .as_deref()
        .unwrap_or_default();
    let chosen = strategy
        .iter()
        .find(|i| i.base.unwrap_or(0) > 0)
        .or_else(|| {
            strategy.iter().reduce(|best, i| {
                if i.weight.unwrap_or(0) > best.weight.unwrap_or(0) {
                    i
                } else {
                    best
                }
            })
        });
    match chosen {
        Some(item) => Capacity {
            fargate: true,
            capacity_provider_name: Some(item.capacity_provider.clone()),
        },
        None => Capacity::default(),
    }
}

fn daemon_instances(
    state: &ClusterState,
    definition: Option<&TaskDefinition>,
    placement: Option<&(
        Vec<scheduler::PlacementConstraint>,
        Vec<scheduler::PlacementStrategy>,
    )>,
) -> BTreeMap<String, bool> {
    let mut expressions: Vec<String> = definition
        .iter()
        .flat_map(|d| d.placement_constraints.iter().flatten())
        .filter_map(|c| c.expression.clone())
        .collect();
    if let Some((constraints, _)) = placement {
        expressions.extend(constraints.iter().filter_map(|c| match c {
            scheduler::PlacementConstraint::MemberOf(e) => Some(e.clone()),
            scheduler::PlacementConstraint::DistinctInstance => None,
        }));
    }
    let parsed: Vec<Option<scheduler::Expression>> = expressions
        .iter()
        .map(|e| scheduler::Expression::parse(e).ok())
        .collect();
    state
        .instances
        .iter()
        .filter(|i| i.record.instance.status.as_deref() == Some("ACTIVE"))
        // Fargate capacity takes no DAEMON tasks (DAEMON is an EC2 strategy in ECS).
        .filter(|i| !i.record.is_fargate_capacity())
        .filter(|i| {
            let facts = placement::scheduler_instance(state, i);
            parsed
                .iter()
                .all(|e| e.as_ref().is_some_and(|e| e.matches(&facts)))
        })
        .map(|i| {
            (
                i.record.wharf_id.clone(),
                state.connected.contains(&i.record.wharf_id),
            )
        })
        .collect()
}

/// The tags a service's tasks carry: the service's or the definition's (propagateTags), and
/// ECS's managed tags when asked for.
async fn task_tags(
    ctx: &EcsContext,
    record: &ServiceRecord,
    cluster: &str,
    definition: &TaskDefinition,
) -> Result<Vec<Tag>, EcsError> {
    let mut tags = match record.service.propagate_tags.as_deref() {
        Some("SERVICE") => {
            tags::get_tags(ctx, record.service.service_arn.as_deref().unwrap_or("")).await?
        }
        Some("TASK_DEFINITION") => {
            tags::get_tags(ctx, definition.task_definition_arn.as_deref().unwrap_or("")).await?
        }
        _ => Vec::new(),
    };
    if record.service.enable_ecs_managed_tags == Some(true) {
        for (key, value) in [
            ("aws:ecs:clusterName", cluster),
            ("aws:ecs:serviceName", record.name()),
        ] {
            tags.push(Tag {
                key: Some(key.to_string()),
                value: Some(value.to_string()),
            });
        }
    }
    Ok(tags)
}

/// Mark a task STOPPED on the control plane's own authority: its instance was deregistered, so
/// no agent will ever report it again. Its reservation is given back in the same transaction.
async fn force_stop(
    ctx: &EcsContext,
    cluster: &str,
    id: &str,
    now: f64,
) -> Result<Option<Task>, EcsError> {
    let task_key = keys::task(cluster, id);
    for _ in 0..16 {
        let Some((mut record, revision)) = ctx.get_json::<TaskRecord>(&task_key).await? else {
            return Ok(None);
        };
        if record.task.last_status.as_deref() == Some("STOPPED") {
            return Ok(Some(record.task));
        }
        force_stopped(
            &mut record.task,
            events::DEREGISTERED_STOP_REASON,
            events::SERVICE_SCHEDULER_INITIATED,
            now,
        );
        if put_task(ctx, cluster, id, revision, &mut record).await? {
            return Ok(Some(record.task));
        }
    }
    Err(EcsError::Conflict(
        "The task is being changed concurrently; retry.".to_string(),
    ))
}
