//! The agent service (`wharf` signing name, `WharfAgent_20261121` targets; the protocol is
//! documented in `model::agent`): heartbeats that keep an agent's session alive, the
//! long-poll through which an agent watches its tasks' desired state, and the reports through
//! which it sends observed state back. Observed state only ever moves forward.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use model::ec2::{self, NetworkInterface};

use model::agent::{
    AgentTask, HeartbeatInput, PollTasksInput, PollTasksOutput, ReportTaskStateInput,
    MAX_POLL_WAIT_SECONDS, SESSION_TTL_SECONDS,
};
use model::ecs::task::{container_status_rank, task_status_rank, Task};
use model::ecs::task_definition::TaskDefinition;
use serde_json::{json, Value};
use store::{Op, StoreError, Txn};

use super::awsvpc::NetworkView;
use super::cluster_state::InstanceRecord;
use super::clusters::{active_cluster, cluster_name};
use super::tasks::{put_task, resolve_task_definition, TaskRecord};
use super::unchanged;
use super::{decode, encode, keys, EcsContext, EcsError};

pub async fn dispatch(
    ctx: &EcsContext,
    operation: &str,
    input: Value,
) -> Option<Result<Value, EcsError>> {
    Some(match operation {
        "Heartbeat" => heartbeat(ctx, input).await,
        "PollTasks" => poll_tasks(ctx, input).await,
        "ReportTaskState" => report_task_state(ctx, input).await,
        "ReportTaskStats" => super::usage::report_task_stats(ctx, input).await,
        "DescribeTaskStats" => super::usage::describe_task_stats(ctx, input).await,
        _ => return None,
    })
}

fn instance_id(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// The instance an agent speaks for; a deregistered or unknown one must register again.
async fn live_instance(
    ctx: &EcsContext,
    cluster: &str,
    arn: &str,
) -> Result<(InstanceRecord, i64), EcsError> {
    match ctx.get_json::<InstanceRecord>(&keys::container_instance(cluster, &instance_id(arn))).await? {
        Some((record, revision)) if record.instance.status.as_deref() != Some("INACTIVE") => Ok((record, revision)),
        _ => Err(EcsError::InvalidParameter(format!(
            "The container instance {arn} is not registered in cluster {cluster}; register it again."
        ))),
    }
}

async fn heartbeat(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: HeartbeatInput = ctx.parse(input)?;
    let (cluster, _) = active_cluster(ctx, Some(&input.cluster)).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    live_instance(ctx, &cluster, &input.container_instance_arn).await?;
    let key = keys::agent_session(&cluster, &instance_id(&input.container_instance_arn));
    for _ in 0..8 {
        let existing = ctx.store.get(&key).await?;
        if let Some(kv) = &existing {
            if let Some(lease) = kv.lease {
                match ctx.store.lease_keep_alive(lease).await {
                    Ok(()) => return Ok(json!({})),
                    Err(StoreError::LeaseNotFound(_)) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        let lease = ctx.store.lease_grant(SESSION_TTL_SECONDS).await?;
        let revision = existing.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
        let response = ctx
            .store
            .txn(Txn {
                compares: vec![unchanged(&key, revision)],
                success: vec![Op::Put {
                    key: key.clone(),
                    value: encode(&lease),
                    lease: Some(lease),
                }],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            tracing::info!(cluster, instance = %input.container_instance_arn, "agent connected");
            return Ok(json!({}));
        }
        ctx.store.lease_revoke(lease).await.ok();
    }
    Err(EcsError::Conflict(
        "The agent session is being changed concurrently; retry.".to_string(),
    ))
}

/// Tasks an agent must still care about: desired RUNNING, or not yet STOPPED.
fn relevant(task: &Task) -> bool {
    task.desired_status.as_deref() == Some("RUNNING")
        || task.last_status.as_deref() != Some("STOPPED")
}

async fn poll_tasks(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: PollTasksInput = ctx.parse(input)?;
    let (cluster, _) = active_cluster(ctx, Some(&input.cluster)).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let (record, _) = live_instance(ctx, &cluster, &input.container_instance_arn).await?;
    let arn = record
        .instance
        .container_instance_arn
        .clone()
        .unwrap_or_default();
    let prefix = keys::task_cluster_prefix(&cluster);
    let wait = Duration::from_secs(input.wait_seconds.min(MAX_POLL_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    // Set when a security group or ENI that shapes one of this instance's task networks
    // changed since the agent's last answer: the networks must be sent again.
    let mut networks_changed = false;
    loop {
        let range = ctx.store.range(&prefix, Default::default()).await?;
        let mut changed = input.since_revision == 0 || networks_changed;
        let mut tasks: Vec<TaskRecord> = Vec::new();
        for kv in &range.kvs {
            let task: TaskRecord = decode(kv)?;
            if task.task.container_instance_arn.as_deref() != Some(arn.as_str()) {
                continue;
            }
            changed |= kv.mod_revision > input.since_revision;
            if relevant(&task.task) {
                tasks.push(task);
            }
        }
        let awsvpc = tasks.iter().any(|t| t.wharf_eni.is_some());
        let view = if awsvpc {
            Some(NetworkView::load(ctx).await?)
        } else {
            None
        };
        if changed || tokio::time::Instant::now() >= deadline {
            let mut definitions: HashMap<String, TaskDefinition> = HashMap::new();
            let mut answer = Vec::new();
            for task in tasks {
                let definition_arn = task.task.task_definition_arn.clone().unwrap_or_default();
                if !definitions.contains_key(&definition_arn) {
                    let definition = resolve_task_definition(ctx, &definition_arn).await?;
                    definitions.insert(definition_arn.clone(), definition);
                }
                let network = match (&task.wharf_eni, &view) {
                    (Some(eni), Some(view)) => Some(view.task_network(ctx, eni).await?),
                    _ => None,
                };
                answer.push(AgentTask {
                    task: task.task,
                    task_definition: definitions[&definition_arn].clone(),
                    network,
                });
            }
            let output = PollTasksOutput {
                revision: range.revision,
                tasks: answer,
            };
            return Ok(super::to_value(&output));
        }
        // Nothing new: wait for a change to one of this instance's tasks, or (for awsvpc
        // tasks) to their security groups or the ENIs their rules refer to, or the deadline.
        let mut watch = ctx.store.watch(&prefix, range.revision).await?;
        let mut network_watch = match &view {
            // From the agent's last answer, so a change made since then is not missed.
            Some(_) => Some(
                ctx.store
                    .watch("ec2/", input.since_revision.min(range.revision))
                    .await?,
            ),
            None => None,
        };
        let (ours, referenced) = match &view {
            Some(view) => {
                let ours = network_groups(ctx, &tasks).await?;
                let referenced = view.referenced_groups(&ours);
                (ours, referenced)
            }
            None => Default::default(),
        };
        let woke = tokio::time::timeout_at(deadline, async {
            loop {
                tokio::select! {
                    batch = watch.events.recv() => {
                        let Some(Ok(events)) = batch else { return false };
                        let ours = events.iter().any(|event| {
                            serde_json::from_slice::<Task>(&event.kv.value)
                                .ok()
                                .or_else(|| {
                                    event
                                        .prev
                                        .as_ref()
                                        .and_then(|p| serde_json::from_slice::<Task>(&p.value).ok())
                                })
                                .is_some_and(|t| t.container_instance_arn.as_deref() == Some(arn.as_str()))
                        });
                        if ours {
                            return false;
                        }
                    }
                    batch = async {
                        match network_watch.as_mut() {
                            Some(w) => w.events.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        // A compacted or closed watch may have missed something: resend.
                        let Some(Ok(events)) = batch else { return true };
                        if events.iter().any(|e| shapes_networks(e, &ours, &referenced)) {
                            return true;
                        }
                    }
                }
            }
        })
        .await;
        match woke {
            Ok(true) => networks_changed = true,
            Ok(false) => {}
            // Deadline: answer with the unchanged set so the agent resyncs.
            Err(_) => continue,
        }
    }
}

/// The security groups of the ENIs of `tasks`.
async fn network_groups(
    ctx: &EcsContext,
    tasks: &[TaskRecord],
) -> Result<BTreeSet<String>, EcsError> {
    let mut groups = BTreeSet::new();
    for eni in tasks.iter().filter_map(|t| t.wharf_eni.as_ref()) {
        if let Some((record, _)) = ctx
            .get_json::<NetworkInterface>(&ec2::network_interface_key(&eni.network_interface_id))
            .await?
        {
            groups.extend(record.groups.into_iter().map(|g| g.group_id));
        }
    }
    Ok(groups)
}

/// Whether a store event under `ec2/` changes the networks of tasks whose ENIs are in the
/// groups `ours`: one of those groups changed, or an ENI joined or left a group their rules
/// refer to (`referenced`), which changes the addresses the rules resolve to.
fn shapes_networks(
    event: &store::Event,
    ours: &BTreeSet<String>,
    referenced: &BTreeSet<String>,
) -> bool {
    let key = event.kv.key.as_str();
    if let Some(id) = key.strip_prefix(ec2::SECURITY_GROUP_PREFIX) {
        return ours.contains(id);
    }
    if key.starts_with(ec2::NETWORK_INTERFACE_PREFIX) {
        let groups_of = |value: &[u8]| -> Vec<String> {
            serde_json::from_slice::<NetworkInterface>(value)
                .map(|eni| eni.groups.into_iter().map(|g| g.group_id).collect())
                .unwrap_or_default()
        };
        let mut groups = groups_of(&event.kv.value);
        if let Some(prev) = &event.prev {
            groups.extend(groups_of(&prev.value));
        }
        return groups.iter().any(|g| referenced.contains(g));
    }
    false
}

async fn report_task_state(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ReportTaskStateInput = ctx.parse(input)?;
    let cluster = cluster_name(Some(&input.cluster))?;
    let id = input.task_arn.rsplit('/').next().unwrap_or("").to_string();
    let key = keys::task(&cluster, &id);
    if task_status_rank(&input.last_status) == 0 {
        return Err(EcsError::InvalidParameter(format!(
            "Invalid task status '{}'.",
            input.last_status
        )));
    }
    for _ in 0..16 {
        let Some((mut record, revision)) = ctx.get_json::<TaskRecord>(&key).await? else {
            return Err(EcsError::InvalidParameter(
                "The referenced task was not found.".to_string(),
            ));
        };
        let now = ctx.now();
        if !apply_report(&mut record.task, &input, now) {
            return Ok(json!({ "acknowledgment": "ignored" }));
        }
        let id = input.task_arn.rsplit('/').next().unwrap_or("").to_string();
        if put_task(ctx, &cluster, &id, revision, &mut record).await? {
            tracing::debug!(task = %input.task_arn, status = %input.last_status, "task state reported");
            return Ok(json!({ "acknowledgment": "accepted" }));
        }
    }
    Err(EcsError::Conflict(
        "The task is being changed concurrently; retry.".to_string(),
    ))
}

/// Merge an agent's report into a task, moving only forward. Returns whether anything changed.
pub fn apply_report(task: &mut Task, report: &ReportTaskStateInput, now: f64) -> bool {
    let before = serde_json::to_value(&*task).ok();
    let current = task.last_status.clone().unwrap_or_default();
    if current == "STOPPED" {
        return false;
    }
    if task_status_rank(&report.last_status) > task_status_rank(&current) {
        task.last_status = Some(report.last_status.clone());
    }
    for reported in &report.containers {
        let Some(container) = task
            .containers
            .iter_mut()
            .flatten()
            .find(|c| c.name.as_deref() == Some(reported.name.as_str()))
        else {
            continue;
        };
        let known = container.last_status.clone().unwrap_or_default();
        if container_status_rank(&reported.last_status) < container_status_rank(&known)
            || known == "STOPPED"
        {
            continue;
        }
        container.last_status = Some(reported.last_status.clone());
        if reported.runtime_id.is_some() {
            container.runtime_id = reported.runtime_id.clone();
        }
        if reported.image_digest.is_some() {
            container.image_digest = reported.image_digest.clone();
        }
        if reported.exit_code.is_some() {
            container.exit_code = reported.exit_code;
        }
        if reported.reason.is_some() {
            container.reason = reported.reason.clone();
        }
        if reported.network_bindings.is_some() {
            container.network_bindings = reported.network_bindings.clone();
        }
        if reported.health_status.is_some() {
            container.health_status = reported.health_status.clone();
        }
    }
    if report.health_status.is_some() {
        task.health_status = report.health_status.clone();
    }
    if task.pull_started_at.is_none() {
        task.pull_started_at = report.pull_started_at;
    }
    if task.pull_stopped_at.is_none() {
        task.pull_stopped_at = report.pull_stopped_at;
    }
    let status = task.last_status.clone().unwrap_or_default();
    let rank = task_status_rank(&status);
    // A report that jumps straight to STOPPED still carries the start time when the containers
    // did run (a fast one-shot task); a task that never started (pull failure) has none.
    let ran = status != "STOPPED" || report.started_at.is_some();
    if rank >= task_status_rank("RUNNING") && task.started_at.is_none() && ran {
        task.started_at = Some(report.started_at.unwrap_or(now));
        task.connectivity = Some("CONNECTED".to_string());
        task.connectivity_at = task.started_at;
    }
    if rank >= task_status_rank("DEACTIVATING") {
        // The task is on its way down, whoever decided it: desired state follows.
        if task.desired_status.as_deref() != Some("STOPPED") {
            task.desired_status = Some("STOPPED".to_string());
        }
        task.stopping_at.get_or_insert(now);
        if task.stop_code.is_none() {
            task.stop_code = report.stop_code.clone();
        }
        if task.stopped_reason.is_none() {
            task.stopped_reason = report.stopped_reason.clone();
        }
    }
    if status == "STOPPED" {
        task.stopped_at.get_or_insert(now);
        task.execution_stopped_at = task
            .execution_stopped_at
            .or(report.execution_stopped_at)
            .or(Some(now));
    }
    let changed = serde_json::to_value(&*task).ok() != before;
    if changed {
        task.version = Some(task.version.unwrap_or(0) + 1);
    }
    changed
}
