//! Task handlers: RunTask, StartTask, StopTask, DescribeTasks and ListTasks, plus the task
//! record and the transitions every writer of tasks shares.
//!
//! A task is written once by RunTask/StartTask (desiredStatus RUNNING, lastStatus
//! PROVISIONING) in the same transaction that reserves its resources on the instance. From
//! then on the control plane writes only desired state (StopTask) and agents report observed
//! state (`agent_service`); when a task reaches STOPPED its resources are released in the same
//! transaction.

use model::arn::time_ordered_hex_id;
use model::ecs::tag::{merge_tags, Tag};
use model::ecs::task::{Container, ContainerOverride, Failure, Task, TaskOverride};
use model::ecs::task_definition::{parse_reference, TaskDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{Compare, CompareOp, CompareTarget, Op, Txn};

use model::ecs::cluster::{CapacityProviderStrategyItem, Cluster};
use model::ecs::service::NetworkConfiguration;

use super::awsvpc::{self, EniAllocation, ResolvedNetwork};
use super::cluster_state::{ClusterState, InstanceRecord, CAPACITY_TYPE_ATTRIBUTE};
use super::clusters::active_cluster;
use super::placement::{self, PlacementInput, TaskNeeds};
use super::{decode, encode, keys, paging, tags, task_definitions, EcsContext, EcsError};
use super::{put_if_unchanged, unchanged};
use scheduler::{PlacementConstraint, PlacementStrategy};

/// A task as stored: the wire shape plus what the control plane tracks for it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    #[serde(flatten)]
    pub task: Task,
    /// What the task reserved on its instance.
    #[serde(default)]
    pub wharf_needs: TaskNeeds,
    /// True once the reservation has been given back (the task reached STOPPED).
    #[serde(default)]
    pub wharf_released: bool,
    /// The ENI of an awsvpc task, released (with its address) when the task is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wharf_eni: Option<EniAllocation>,
}

/// The `memberOf` expression that keeps a launch on its kind of capacity.
fn capacity_expression(fargate: bool) -> String {
    if fargate {
        format!("attribute:{CAPACITY_TYPE_ATTRIBUTE} == FARGATE")
    } else {
        format!(
            "attribute:{CAPACITY_TYPE_ATTRIBUTE} !exists or attribute:{CAPACITY_TYPE_ATTRIBUTE} != FARGATE"
        )
    }
}

/// ECS's RunTask failure reason when Fargate has no room for a task.
pub const FARGATE_CAPACITY_UNAVAILABLE: &str =
    "Capacity is unavailable at this time. Please try again later or in a different availability zone";

/// The task as the API shows it: a Fargate task runs on managed capacity, so its container
/// instance (kept internally to route it to an agent) is not shown.
pub fn render_task(mut task: Task) -> Task {
    if task.launch_type.as_deref() == Some("FARGATE") {
        task.container_instance_arn = None;
    }
    task
}

/// How a launch is placed: EC2 container instances, or Fargate capacity (with the capacity
/// provider that chose it, when a strategy did).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capacity {
    pub fargate: bool,
    pub capacity_provider_name: Option<String>,
}

/// Resolve `launchType` / `capacityProviderStrategy` (or the cluster's default strategy) to
/// the capacity a launch uses, with ECS's messages.
pub fn resolve_capacity(
    cluster: &Cluster,
    launch_type: Option<&str>,
    strategy: Option<&[CapacityProviderStrategyItem]>,
) -> Result<Capacity, EcsError> {
    let strategy = strategy.filter(|s| !s.is_empty());
    if launch_type.is_some() && strategy.is_some() {
        return Err(EcsError::InvalidParameter(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.".to_string(),
        ));
    }
    match launch_type {
        Some("EC2") => return Ok(Capacity::default()),
        Some("FARGATE") => {
            return Ok(Capacity {
                fargate: true,
                capacity_provider_name: None,
            })
        }
        Some(other @ ("EXTERNAL" | "MANAGED_INSTANCES")) => {
            return Err(EcsError::InvalidParameter(format!(
                "Launch type {other} is not available in Wharf yet; use EC2 or FARGATE."
            )))
        }
        Some(other) => {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid launchType '{other}'. Valid values are: EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES."
            )))
        }
        None => {}
    }
    let providers = cluster.capacity_providers.clone().unwrap_or_default();
    let strategy: Vec<CapacityProviderStrategyItem> = match strategy {
        Some(given) => {
            super::clusters::validate_capacity_providers(&providers, given)?;
            given.to_vec()
        }
        // Neither given: the cluster's default strategy, else the EC2 launch type (as ECS).
        None => cluster
            .default_capacity_provider_strategy
            .clone()
            .unwrap_or_default(),
    };
    // Wharf's Fargate capacity backs FARGATE and FARGATE_SPOT alike; the provider with a base
    // (else the heaviest weight) names the tasks (docs/compat.md).
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
    Ok(match chosen {
        Some(item) => Capacity {
            fargate: true,
            capacity_provider_name: Some(item.capacity_provider.clone()),
        },
        None => Capacity::default(),
    })
}

/// What a Fargate launch adds to its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FargateLaunch {
    pub capacity_provider_name: Option<String>,
    /// What the task reports (`LATEST` resolves to 1.4.0).
    pub platform_version: String,
    pub ephemeral_storage_gib: i32,
}

/// Platform versions Wharf's Fargate runs.
const FARGATE_PLATFORM_VERSIONS: &[&str] = &["LATEST", "1.4.0"];

/// Check a launch's platform version for its capacity; the version tasks report.
pub fn check_platform_version(fargate: bool, given: Option<&str>) -> Result<String, EcsError> {
    match (fargate, given) {
        (false, None) => Ok(String::new()),
        (false, Some(_)) => Err(EcsError::InvalidParameter(
            "The platform version must be null when specifying an EC2 launch type.".to_string(),
        )),
        (true, None) => Ok("1.4.0".to_string()),
        (true, Some(v)) if FARGATE_PLATFORM_VERSIONS.contains(&v) => Ok("1.4.0".to_string()),
        // guessed wording (ECS answers PlatformUnknownException).
        (true, Some(v)) => Err(EcsError::PlatformUnknown(format!(
            "The specified platform version {v} does not exist. Wharf's Fargate runs LATEST (1.4.0)."
        ))),
    }
}

/// Check that `definition` (with `overrides`) can run on Fargate: compatible, and a Fargate
/// task size; returns the ephemeral storage the task gets.
pub fn check_fargate(
    definition: &TaskDefinition,
    overrides: &TaskOverride,
) -> Result<i32, EcsError> {
    let compatible = definition
        .compatibilities
        .iter()
        .flatten()
        .any(|c| c == "FARGATE");
    if !compatible {
        return Err(EcsError::InvalidParameter(
            "Task definition does not support launch_type FARGATE.".to_string(),
        ));
    }
    let needs = placement::task_needs(definition, Some(overrides));
    if !model::ecs::task_definition::fargate_size_is_valid(needs.cpu, needs.memory) {
        // The message RegisterTaskDefinition gives for the same sizes.
        return Err(EcsError::InvalidParameter(format!(
            "No Fargate configuration exists for given values: {} CPU, {} memory. See the Amazon ECS documentation for the valid values.",
            needs.cpu, needs.memory
        )));
    }
    let storage = overrides
        .ephemeral_storage
        .as_ref()
        .and_then(|s| s.get("sizeInGiB"))
        .and_then(Value::as_i64)
        .map(|s| s as i32)
        .or(definition.ephemeral_storage.as_ref().map(|s| s.size_in_gib))
        .unwrap_or(20);
    Ok(storage)
}

/// `overrides.ephemeralStorage`: 21–200 GiB, Fargate only.
fn check_ephemeral_storage_override(
    overrides: &TaskOverride,
    fargate: bool,
) -> Result<(), EcsError> {
    let Some(storage) = &overrides.ephemeral_storage else {
        return Ok(());
    };
    if !fargate {
        // guessed wording.
        return Err(EcsError::InvalidParameter(
            "The ephemeralStorage override is only supported for tasks using the Fargate launch type."
                .to_string(),
        ));
    }
    let size = storage.get("sizeInGiB").and_then(Value::as_i64);
    if !size.is_some_and(|s| (21..=200).contains(&s)) {
        // The message RegisterTaskDefinition gives for the same sizes.
        return Err(EcsError::InvalidParameter(
            "Invalid 'ephemeralStorage' setting for task. sizeInGiB must be between 21 and 200."
                .to_string(),
        ));
    }
    Ok(())
}

/// Resolve `family`, `family:revision` or an ARN to a stored definition. A bare family means its
/// latest ACTIVE revision.
pub async fn resolve_task_definition(
    ctx: &EcsContext,
    given: &str,
) -> Result<TaskDefinition, EcsError> {
    let not_found = || EcsError::Client("TaskDefinition not found.".to_string());
    let reference = parse_reference(given).map_err(|_| not_found())?;
    task_definitions::resolve_definition(ctx, &reference)
        .await?
        .ok_or_else(not_found)
}

/// Move a task to desired STOPPED (idempotent): the control plane's one way to stop a task.
pub fn request_stop(task: &mut Task, reason: &str, stop_code: &str, now: f64) -> bool {
    if task.desired_status.as_deref() == Some("STOPPED") {
        return false;
    }
    task.desired_status = Some("STOPPED".to_string());
    task.stop_code.get_or_insert_with(|| stop_code.to_string());
    task.stopped_reason
        .get_or_insert_with(|| reason.to_string());
    task.stopping_at.get_or_insert(now);
    task.version = Some(task.version.unwrap_or(0) + 1);
    true
}

/// Mark a task STOPPED on the control plane's own authority (its agent is gone, or its instance
/// was deregistered), with every container STOPPED too. A stop code and reason already set (a
/// user's StopTask) are kept; `TaskFailedToStart` is dropped for a task that did start.
pub fn force_stopped(task: &mut Task, reason: &str, stop_code: &str, now: f64) {
    request_stop(task, reason, stop_code, now);
    if task.started_at.is_some() {
        task.stop_code = task.stop_code.take().filter(|c| c != "TaskFailedToStart");
    }
    task.last_status = Some("STOPPED".to_string());
    task.stopped_at.get_or_insert(now);
    task.execution_stopped_at.get_or_insert(now);
    for container in task.containers.iter_mut().flatten() {
        if container.last_status.as_deref() != Some("STOPPED") {
            container.last_status = Some("STOPPED".to_string());
            container.reason.get_or_insert_with(|| reason.to_string());
        }
    }
}

/// The store ops that release a STOPPED task's reservation on its instance, if not done yet.
/// Returns the compare and put for the instance (None if nothing to release).
pub fn release_ops(
    cluster: &str,
    record: &mut TaskRecord,
    instance: Option<(&InstanceRecord, i64)>,
) -> Option<(Compare, Op)> {
    if record.wharf_released || record.task.last_status.as_deref() != Some("STOPPED") {
        return None;
    }
    record.wharf_released = true;
    let (instance, revision) = instance?;
    let mut instance = instance.clone();
    let remaining = instance
        .instance
        .remaining_resources
        .clone()
        .unwrap_or_default();
    instance.instance.remaining_resources = Some(placement::adjust_remaining(
        &remaining,
        &record.wharf_needs,
        1,
    ));
    let key = keys::container_instance(cluster, &instance.wharf_id);
    Some((
        unchanged(&key, revision),
        Op::Put {
            key,
            value: encode(&instance),
            lease: None,
        },
    ))
}

/// Write a task record read at `revision`; when it has just reached STOPPED, give its
/// reservation back to its instance in the same transaction. False when someone wrote the task
/// (or the instance) first: re-read and try again.
pub async fn put_task(
    ctx: &EcsContext,
    cluster: &str,
    id: &str,
    revision: i64,
    record: &mut TaskRecord,
) -> Result<bool, EcsError> {
    let key = keys::task(cluster, id);
    let releasing = !record.wharf_released && record.task.last_status.as_deref() == Some("STOPPED");
    awsvpc::advance_attachments(&mut record.task);
    let instance = match record.task.container_instance_arn.as_deref() {
        Some(arn) if releasing => {
            let instance_id = arn.rsplit('/').next().unwrap_or(arn);
            ctx.get_json::<InstanceRecord>(&keys::container_instance(cluster, instance_id))
                .await?
        }
        _ => None,
    };
    let mut compares = vec![unchanged(&key, revision)];
    let mut ops = Vec::new();
    if let Some((compare, op)) =
        release_ops(cluster, record, instance.as_ref().map(|(r, v)| (r, *v)))
    {
        compares.push(compare);
        ops.push(op);
    }
    if releasing {
        // The ENI and its address go with the task, in the same transaction.
        if let Some(eni) = &record.wharf_eni {
            ops.extend(awsvpc::release_ops(eni));
        }
    }
    ops.push(Op::Put {
        key,
        value: encode(&*record),
        lease: None,
    });
    Ok(ctx
        .store
        .txn(Txn {
            compares,
            success: ops,
            failure: vec![],
        })
        .await?
        .succeeded)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunTaskInput {
    cluster: Option<String>,
    task_definition: String,
    count: Option<i64>,
    group: Option<String>,
    started_by: Option<String>,
    overrides: Option<TaskOverride>,
    tags: Option<Vec<Tag>>,
    launch_type: Option<String>,
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    network_configuration: Option<NetworkConfiguration>,
    placement_constraints: Option<Vec<WireConstraint>>,
    placement_strategy: Option<Vec<WireStrategy>>,
    platform_version: Option<String>,
    // The wire spells it `enableECSManagedTags`, which camelCase renaming would not produce.
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    propagate_tags: Option<String>,
    #[serde(default)]
    enable_execute_command: bool,
    client_token: Option<String>,
    reference_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartTaskInput {
    cluster: Option<String>,
    task_definition: String,
    container_instances: Vec<String>,
    group: Option<String>,
    started_by: Option<String>,
    overrides: Option<TaskOverride>,
    tags: Option<Vec<Tag>>,
    network_configuration: Option<NetworkConfiguration>,
    // The wire spells it `enableECSManagedTags`, which camelCase renaming would not produce.
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    propagate_tags: Option<String>,
    #[serde(default)]
    enable_execute_command: bool,
    reference_id: Option<String>,
}

/// `placementConstraints[]` as the API sends it.
#[derive(Deserialize)]
struct WireConstraint {
    #[serde(rename = "type")]
    constraint_type: Option<String>,
    expression: Option<String>,
}

/// `placementStrategy[]` as the API sends it.
#[derive(Deserialize)]
struct WireStrategy {
    #[serde(rename = "type")]
    strategy_type: Option<String>,
    field: Option<String>,
}

fn parse_constraints(wire: &[WireConstraint]) -> Result<Vec<PlacementConstraint>, EcsError> {
    wire.iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(PlacementConstraint::from_wire(
                c.constraint_type.as_deref(),
                c.expression.as_deref(),
                i + 1,
            )?)
        })
        .collect()
}

fn parse_strategies(wire: &[WireStrategy]) -> Result<Vec<PlacementStrategy>, EcsError> {
    let strategies: Vec<PlacementStrategy> = wire
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(PlacementStrategy::from_wire(
                s.strategy_type.as_deref(),
                s.field.as_deref(),
                i + 1,
            )?)
        })
        .collect::<Result<_, EcsError>>()?;
    // ECS documents only the service default (spread across Availability Zones); Wharf uses
    // it for RunTask too, then spreads across instances (docs/compat.md).
    Ok(if strategies.is_empty() {
        PlacementStrategy::service_default()
    } else {
        strategies
    })
}

/// What RunTask, StartTask and the service scheduler share: what to launch, where it may go
/// and how it is labelled.
pub struct LaunchRequest {
    pub cluster: String,
    pub definition: TaskDefinition,
    pub constraints: Vec<PlacementConstraint>,
    pub strategies: Vec<PlacementStrategy>,
    pub group: Option<String>,
    pub started_by: Option<String>,
    pub overrides: TaskOverride,
    pub tags: Vec<Tag>,
    pub enable_execute_command: bool,
    /// awsvpc tasks: where their ENIs go.
    pub network: Option<ResolvedNetwork>,
    /// Fargate tasks: placed only on Fargate capacity.
    pub fargate: Option<FargateLaunch>,
}

fn check_overrides(definition: &TaskDefinition, overrides: &TaskOverride) -> Result<(), EcsError> {
    let names: Vec<&str> = definition
        .container_definitions
        .iter()
        .flatten()
        .filter_map(|c| c.name.as_deref())
        .collect();
    for o in overrides.container_overrides.iter().flatten() {
        let name = o.name.as_deref().unwrap_or("");
        if !names.contains(&name) {
            return Err(EcsError::InvalidParameter(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
        for (what, value) in [
            ("cpu", o.cpu),
            ("memory", o.memory),
            ("memoryReservation", o.memory_reservation),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(EcsError::InvalidParameter(format!(
                    "Container override {what} for {name} must be a non-negative integer."
                )));
            }
        }
    }
    for (what, value) in [("cpu", &overrides.cpu), ("memory", &overrides.memory)] {
        if let Some(text) = value {
            let ok = if what == "cpu" {
                placement::parse_cpu(text)
            } else {
                placement::parse_memory(text)
            };
            if ok.is_none() {
                return Err(EcsError::InvalidParameter(format!(
                    "Task override {what} '{text}' is not valid."
                )));
            }
        }
    }
    Ok(())
}

async fn launch_request(
    ctx: &EcsContext,
    cluster: Option<&str>,
    task_definition: &str,
    overrides: Option<TaskOverride>,
    tags: Option<Vec<Tag>>,
    propagate_tags: Option<&str>,
    managed_tags: bool,
) -> Result<(LaunchRequest, Cluster), EcsError> {
    let (cluster_record, _) = active_cluster(ctx, cluster).await?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    let definition = resolve_task_definition(ctx, task_definition).await?;
    if definition.status.as_deref() != Some("ACTIVE") {
        return Err(EcsError::Client("TaskDefinition is inactive".to_string()));
    }
    let mut overrides = overrides.unwrap_or_default();
    check_overrides(&definition, &overrides)?;
    overrides.container_overrides.get_or_insert_with(Vec::new);
    overrides
        .inference_accelerator_overrides
        .get_or_insert_with(Vec::new);
    let mut tags = merge_tags(&[], tags.as_deref().unwrap_or_default())?;
    match propagate_tags {
        None | Some("NONE") => {}
        Some("TASK_DEFINITION") => {
            let arn = definition.task_definition_arn.clone().unwrap_or_default();
            let inherited = tags::get_tags(ctx, &arn).await?;
            let mut merged = inherited;
            for tag in &tags {
                merged.retain(|t| t.key != tag.key);
                merged.push(tag.clone());
            }
            tags = merged;
        }
        Some("SERVICE") => {
            return Err(EcsError::InvalidParameter(
                "propagateTags SERVICE is only valid for tasks started by a service.".to_string(),
            ))
        }
        Some(other) => {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid propagateTags value '{other}'. Valid values are: TASK_DEFINITION, SERVICE, NONE."
            )))
        }
    }
    if managed_tags {
        tags.push(Tag {
            key: Some("aws:ecs:clusterName".to_string()),
            value: Some(cluster.clone()),
        });
    }
    Ok((
        LaunchRequest {
            cluster,
            definition,
            constraints: Vec::new(),
            strategies: PlacementStrategy::service_default(),
            group: None,
            started_by: None,
            overrides,
            tags,
            enable_execute_command: false,
            network: None,
            fargate: None,
        },
        cluster_record,
    ))
}

/// Settle how a launch runs: its capacity (Fargate or EC2, with the Fargate checks), its
/// awsvpc network. Everything is checked before anything is written.
pub async fn settle_capacity_and_network(
    ctx: &EcsContext,
    request: &mut LaunchRequest,
    capacity: &Capacity,
    platform_version: Option<&str>,
    network: Option<&NetworkConfiguration>,
) -> Result<(), EcsError> {
    let platform = check_platform_version(capacity.fargate, platform_version)?;
    check_ephemeral_storage_override(&request.overrides, capacity.fargate)?;
    request.fargate = if capacity.fargate {
        let storage = check_fargate(&request.definition, &request.overrides)?;
        Some(FargateLaunch {
            capacity_provider_name: capacity.capacity_provider_name.clone(),
            platform_version: platform,
            ephemeral_storage_gib: storage,
        })
    } else {
        None
    };
    request.network =
        awsvpc::resolve_network(ctx, &request.definition, network, capacity.fargate).await?;
    Ok(())
}

fn validate_group_and_started_by(
    group: Option<&str>,
    started_by: Option<&str>,
) -> Result<(), EcsError> {
    if let Some(group) = group {
        if group.is_empty() || group.len() > 255 {
            return Err(EcsError::InvalidParameter(
                "group must be between 1 and 255 characters.".to_string(),
            ));
        }
    }
    if let Some(started_by) = started_by {
        let ok = started_by.len() <= 128
            && started_by
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c));
        if !ok {
            return Err(EcsError::InvalidParameter(
                "startedBy can contain up to 128 letters (uppercase and lowercase), numbers, hyphens (-), forward slash (/), and underscores (_).".to_string(),
            ));
        }
    }
    Ok(())
}

/// A new task record on `instance`, PROVISIONING with its containers PENDING.
fn new_task(
    ctx: &EcsContext,
    request: &LaunchRequest,
    instance: &InstanceRecord,
    needs: &TaskNeeds,
) -> TaskRecord {
    let id = time_ordered_hex_id(ctx.clock.now_millis(), rand::random());
    let task_arn = ctx.scope.task_arn(&request.cluster, &id);
    let definition = &request.definition;
    let family = definition.family.clone().unwrap_or_default();
    let overrides = request
        .overrides
        .container_overrides
        .as_deref()
        .unwrap_or_default();
    let containers = definition
        .container_definitions
        .iter()
        .flatten()
        .map(|c| {
            let o: Option<&ContainerOverride> = overrides.iter().find(|o| o.name == c.name);
            Container {
                container_arn: Some(ctx.scope.arn(
                    "ecs",
                    &format!(
                        "container/{}/{id}/{}",
                        request.cluster,
                        uuid::Uuid::new_v4()
                    ),
                )),
                task_arn: Some(task_arn.clone()),
                name: c.name.clone(),
                image: c.image.clone(),
                last_status: Some("PENDING".to_string()),
                network_interfaces: Some(vec![]),
                cpu: Some(o.and_then(|o| o.cpu).or(c.cpu).unwrap_or(0).to_string()),
                memory: o.and_then(|o| o.memory).or(c.memory).map(|m| m.to_string()),
                memory_reservation: o
                    .and_then(|o| o.memory_reservation)
                    .or(c.memory_reservation)
                    .map(|m| m.to_string()),
                health_status: c.health_check.as_ref().map(|_| "UNKNOWN".to_string()),
                ..Default::default()
            }
        })
        .collect();
    let attribute = |name: &str| {
        instance
            .instance
            .attributes
            .iter()
            .flatten()
            .find(|a| a.name == name)
            .and_then(|a| a.value.clone())
    };
    TaskRecord {
        task: Task {
            attachments: Some(vec![]),
            attributes: attribute("ecs.cpu-architecture").map(|arch| {
                vec![model::ecs::attribute::Attribute {
                    name: "ecs.cpu-architecture".to_string(),
                    value: Some(arch),
                    target_type: None,
                    target_id: None,
                }]
            }),
            availability_zone: attribute("ecs.availability-zone"),
            cluster_arn: Some(ctx.scope.cluster_arn(&request.cluster)),
            container_instance_arn: instance.instance.container_instance_arn.clone(),
            containers: Some(containers),
            cpu: Some(needs.cpu.to_string()),
            created_at: Some(ctx.now()),
            desired_status: Some("RUNNING".to_string()),
            enable_execute_command: Some(request.enable_execute_command),
            group: Some(
                request
                    .group
                    .clone()
                    .unwrap_or_else(|| format!("family:{family}")),
            ),
            health_status: Some("UNKNOWN".to_string()),
            last_status: Some("PROVISIONING".to_string()),
            launch_type: Some(
                if request.fargate.is_some() {
                    "FARGATE"
                } else {
                    "EC2"
                }
                .to_string(),
            ),
            capacity_provider_name: request
                .fargate
                .as_ref()
                .and_then(|f| f.capacity_provider_name.clone()),
            platform_version: request.fargate.as_ref().map(|f| f.platform_version.clone()),
            platform_family: request.fargate.as_ref().map(|_| "Linux".to_string()),
            ephemeral_storage: request
                .fargate
                .as_ref()
                .map(|f| json!({ "sizeInGiB": f.ephemeral_storage_gib })),
            fargate_ephemeral_storage: request
                .fargate
                .as_ref()
                .map(|f| json!({ "sizeInGiB": f.ephemeral_storage_gib })),
            memory: Some(needs.memory.to_string()),
            overrides: Some(request.overrides.clone()),
            started_by: request.started_by.clone(),
            tags: Some(request.tags.clone()),
            task_arn: Some(task_arn),
            task_definition_arn: definition.task_definition_arn.clone(),
            version: Some(1),
            ..Default::default()
        },
        wharf_needs: needs.clone(),
        wharf_released: false,
        wharf_eni: None,
    }
}

impl LaunchRequest {
    /// A launch of tasks for a service: its group (`service:NAME`), `startedBy`
    /// (`ecs-svc/…`), placement and tags. The definition must be resolved by the caller (a
    /// service may keep running an INACTIVE revision).
    #[allow(clippy::too_many_arguments)]
    pub fn for_service(
        cluster: &str,
        definition: TaskDefinition,
        group: &str,
        started_by: &str,
        tags: Vec<Tag>,
        constraints: Vec<PlacementConstraint>,
        strategies: Vec<PlacementStrategy>,
    ) -> LaunchRequest {
        LaunchRequest {
            cluster: cluster.to_string(),
            definition,
            constraints,
            strategies,
            group: Some(group.to_string()),
            started_by: Some(started_by.to_string()),
            overrides: TaskOverride {
                container_overrides: Some(Vec::new()),
                inference_accelerator_overrides: Some(Vec::new()),
                ..Default::default()
            },
            tags,
            enable_execute_command: false,
            network: None,
            fargate: None,
        }
    }
}

/// Stop one task by id on the control plane's authority (desired STOPPED with `stop_code`,
/// e.g. `ServiceSchedulerInitiated`). Returns the task as written, or `None` if it is gone.
pub async fn stop_task_by_id(
    ctx: &EcsContext,
    cluster: &str,
    id: &str,
    reason: &str,
    stop_code: &str,
) -> Result<Option<Task>, EcsError> {
    for _ in 0..16 {
        let Some((mut record, revision, id)) = read_task(ctx, cluster, id).await? else {
            return Ok(None);
        };
        if !request_stop(&mut record.task, reason, stop_code, ctx.now()) {
            return Ok(Some(record.task));
        }
        if put_if_unchanged(ctx, &keys::task(cluster, &id), revision, &record).await? {
            return Ok(Some(record.task));
        }
    }
    Err(EcsError::Conflict(
        "The task is being changed concurrently; retry.".to_string(),
    ))
}

/// The tasks a clientToken already started, if it was used before.
async fn tasks_of_token(
    ctx: &EcsContext,
    cluster: &str,
    token: &str,
) -> Result<Option<Vec<Task>>, EcsError> {
    let Some((arns, _)) = ctx
        .get_json::<Vec<String>>(&keys::client_token(cluster, token))
        .await?
    else {
        return Ok(None);
    };
    let mut tasks = Vec::new();
    for arn in arns {
        if let Some((record, _, _)) = read_task(ctx, cluster, &arn).await? {
            tasks.push(render_task(record.task));
        }
    }
    Ok(Some(tasks))
}

/// RunTask and services: plan on the cluster's placer and commit through its batching
/// committer; re-plan when the commit loses a race.
async fn launch_placed(
    ctx: &EcsContext,
    request: &LaunchRequest,
    needs: &TaskNeeds,
    input: PlacementInput<'_>,
    client_token: Option<&str>,
) -> Result<(Vec<Task>, Vec<Failure>), EcsError> {
    let placer = ctx.placers.get(&ctx.store, &request.cluster);
    let fargate = request.fargate.is_some();
    let mut placement_request = placement::placement_request(input, rand::random());
    placement_request.validate()?;
    // Keep the launch on its kind of capacity (checked after the user's constraints, so the
    // limit on their number is AWS's).
    placement_request
        .task_definition_constraints
        .push(PlacementConstraint::MemberOf(capacity_expression(fargate)));
    for _ in 0..64 {
        if let Some(token) = client_token {
            if let Some(tasks) = tasks_of_token(ctx, &request.cluster, token).await? {
                return Ok((tasks, vec![]));
            }
        }
        let planned = match placer.plan(ctx, &placement_request, fargate).await {
            Ok(planned) => planned,
            Err(EcsError::InvalidParameter(message))
                if fargate && message == scheduler::plan::NO_CONTAINER_INSTANCES_MESSAGE =>
            {
                return Ok((vec![], vec![fargate_capacity_failure()]));
            }
            Err(error) => return Err(error),
        };
        let mut tasks: Vec<TaskRecord> = planned
            .records
            .iter()
            .map(|r| new_task(ctx, request, r, needs))
            .collect();
        let mut ops = Vec::new();
        let mut compares = Vec::new();
        let _claims = match attach_enis(ctx, request, &planned.records, &mut tasks).await {
            Ok((claims, eni_ops, eni_compares)) => {
                ops.extend(eni_ops);
                compares.extend(eni_compares);
                claims
            }
            Err(error) => {
                placer.forget(&planned).await;
                return Err(error);
            }
        };
        if !request.tags.is_empty() {
            for task in &tasks {
                ops.push(tags::put_tags_op(
                    task.task.task_arn.as_deref().unwrap_or(""),
                    &request.tags,
                ));
            }
        }
        if let Some(token) = client_token {
            let key = keys::client_token(&request.cluster, token);
            compares.push(unchanged(&key, 0));
            let arns: Vec<String> = tasks
                .iter()
                .filter_map(|t| t.task.task_arn.clone())
                .collect();
            ops.push(Op::Put {
                key,
                value: encode(&arns),
                lease: None,
            });
        }
        let failures = if fargate && !planned.failures.is_empty() {
            vec![fargate_capacity_failure()]
        } else {
            planned.failures.clone()
        };
        if tasks.is_empty() && ops.is_empty() {
            return Ok((vec![], failures));
        }
        if placer.commit(ctx, &planned, &tasks, ops, compares).await? {
            for task in &tasks {
                tracing::debug!(cluster = %request.cluster, task = task.task.task_arn.as_deref().unwrap_or(""), "task placed");
            }
            return Ok((
                tasks.into_iter().map(|t| render_task(t.task)).collect(),
                failures,
            ));
        }
        placer.forget(&planned).await;
    }
    Err(EcsError::Conflict(
        "Too many concurrent placements on this cluster; retry.".to_string(),
    ))
}

/// ECS's answer for a Fargate task there is no room for.
fn fargate_capacity_failure() -> Failure {
    Failure {
        arn: None,
        reason: Some(FARGATE_CAPACITY_UNAVAILABLE.to_string()),
        detail: None,
    }
}

/// Give each awsvpc task (`tasks[i]` placed on `instances[i]`) its ENI: the ops and compares
/// to commit with the tasks, and the address claims to hold until the commit is done.
async fn attach_enis(
    ctx: &EcsContext,
    request: &LaunchRequest,
    instances: &[InstanceRecord],
    tasks: &mut [TaskRecord],
) -> Result<(Vec<awsvpc::IpClaim>, Vec<Op>, Vec<Compare>), EcsError> {
    let (mut claims, mut ops, mut compares) = (Vec::new(), Vec::new(), Vec::new());
    let Some(network) = &request.network else {
        return Ok((claims, ops, compares));
    };
    let mut used = awsvpc::UsedAddresses::default();
    for (instance, task) in instances.iter().zip(tasks.iter_mut()) {
        let zone = instance
            .instance
            .attributes
            .iter()
            .flatten()
            .find(|a| a.name == "ecs.availability-zone")
            .and_then(|a| a.value.clone());
        let arn = task.task.task_arn.clone().unwrap_or_default();
        let allocated = awsvpc::allocate(ctx, network, zone.as_deref(), &arn, &mut used).await?;
        awsvpc::apply_to_task(&mut task.task, &allocated, &ctx.scope.region);
        task.wharf_eni = Some(allocated.allocation.clone());
        ops.extend(allocated.ops);
        compares.extend(allocated.compares);
        claims.push(allocated.claim);
    }
    Ok((claims, ops, compares))
}

/// Place `count` tasks (on `only` instances if given, one each) and commit the plan with a
/// compare on every instance revision read; re-plan on conflict. Unplaceable tasks come back
/// as `failures[]` in AWS's words.
pub async fn launch(
    ctx: &EcsContext,
    request: &LaunchRequest,
    count: usize,
    only: Option<&[String]>,
    client_token: Option<&str>,
) -> Result<(Vec<Task>, Vec<Failure>), EcsError> {
    let needs = placement::task_needs(&request.definition, Some(&request.overrides));
    let family = request.definition.family.clone().unwrap_or_default();
    let group = request
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{family}"));
    let definition_constraints = request
        .definition
        .placement_constraints
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            Ok(PlacementConstraint::from_wire(
                c.r#type.as_deref(),
                c.expression.as_deref(),
                i + 1,
            )?)
        })
        .collect::<Result<Vec<_>, EcsError>>()?;
    let input = |count: usize, constraints: &[PlacementConstraint]| PlacementInput {
        needs: &needs,
        group: group.clone(),
        family: family.clone(),
        task_definition_constraints: definition_constraints.clone(),
        constraints: constraints.to_vec(),
        strategies: request.strategies.clone(),
        count: count as u32,
    };
    if only.is_none() {
        return launch_placed(
            ctx,
            request,
            &needs,
            input(count, &request.constraints),
            client_token,
        )
        .await;
    }
    for _ in 0..32 {
        let mut state = ClusterState::load(ctx, &request.cluster).await?;
        if let Some(token) = client_token {
            if let Some((arns, _)) = ctx
                .get_json::<Vec<String>>(&keys::client_token(&request.cluster, token))
                .await?
            {
                // The same clientToken again: answer with the tasks it already started.
                let tasks = state
                    .tasks
                    .iter()
                    .filter(|t| t.task.task_arn.as_ref().is_some_and(|a| arns.contains(a)))
                    .map(|t| t.task.clone())
                    .collect();
                return Ok((tasks, vec![]));
            }
        }
        let mut failures = Vec::new();
        let (chosen, placement_failures) = match only {
            None => {
                let candidates: Vec<usize> = (0..state.instances.len())
                    .filter(|&i| {
                        state.instances[i].record.instance.status.as_deref() == Some("ACTIVE")
                    })
                    .collect();
                if candidates.is_empty() {
                    return Err(EcsError::InvalidParameter(
                        scheduler::plan::NO_CONTAINER_INSTANCES_MESSAGE.to_string(),
                    ));
                }
                placement::plan(
                    &mut state,
                    &candidates,
                    input(count, &request.constraints),
                    rand::random(),
                )?
            }
            Some(instances) => {
                let mut chosen = Vec::new();
                let mut misfits = Vec::new();
                for given in instances {
                    let index = state.instances.iter().position(|i| {
                        i.record.wharf_id == given.rsplit('/').next().unwrap_or(given)
                            && i.record.instance.status.as_deref() != Some("INACTIVE")
                            // Fargate capacity is not a container instance one can name.
                            && !i.record.is_fargate_capacity()
                    });
                    match index {
                        None => failures.push(Failure {
                            arn: Some(if given.starts_with("arn:") {
                                given.clone()
                            } else {
                                ctx.scope.container_instance_arn(&request.cluster, given)
                            }),
                            reason: Some("MISSING".to_string()),
                            detail: None,
                        }),
                        Some(index) => {
                            // StartTask names its instances: only resources decide, as in ECS.
                            // Named instances: StartTask passes no constraints; a DAEMON
                            // service passes its own, which must hold on each instance.
                            let (placed, mut why) = placement::plan(
                                &mut state,
                                &[index],
                                input(1, &request.constraints),
                                rand::random(),
                            )?;
                            chosen.extend(placed);
                            misfits.append(&mut why);
                        }
                    }
                }
                (chosen, misfits)
            }
        };
        failures.extend(placement_failures);
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut touched: Vec<usize> = chosen.clone();
        touched.sort_unstable();
        touched.dedup();
        for &index in &touched {
            let stored = &state.instances[index];
            let key = keys::container_instance(&request.cluster, &stored.record.wharf_id);
            compares.push(unchanged(&key, stored.mod_revision));
            ops.push(Op::Put {
                key,
                value: encode(&stored.record),
                lease: None,
            });
        }
        let mut records: Vec<TaskRecord> = chosen
            .iter()
            .map(|&index| new_task(ctx, request, &state.instances[index].record, &needs))
            .collect();
        let placed_on: Vec<InstanceRecord> = chosen
            .iter()
            .map(|&index| state.instances[index].record.clone())
            .collect();
        let (_claims, eni_ops, eni_compares) =
            attach_enis(ctx, request, &placed_on, &mut records).await?;
        ops.extend(eni_ops);
        compares.extend(eni_compares);
        let mut tasks = Vec::new();
        for record in records {
            let arn = record.task.task_arn.clone().unwrap_or_default();
            let id = arn.rsplit('/').next().unwrap_or("").to_string();
            ops.push(Op::Put {
                key: keys::task(&request.cluster, &id),
                value: encode(&record),
                lease: None,
            });
            ops.push(tags::put_tags_op(&arn, &request.tags));
            tasks.push(render_task(record.task));
        }
        if let Some(token) = client_token {
            let key = keys::client_token(&request.cluster, token);
            compares.push(Compare {
                key: key.clone(),
                target: CompareTarget::CreateRevision(0),
                op: CompareOp::Equal,
            });
            let arns: Vec<String> = tasks.iter().filter_map(|t| t.task_arn.clone()).collect();
            ops.push(Op::Put {
                key,
                value: encode(&arns),
                lease: None,
            });
        }
        if ops.is_empty() {
            return Ok((tasks, failures));
        }
        let response = ctx
            .store
            .txn(Txn {
                compares,
                success: ops,
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            for task in &tasks {
                tracing::info!(cluster = %request.cluster, task = task.task_arn.as_deref().unwrap_or(""),
                    instance = task.container_instance_arn.as_deref().unwrap_or(""), "task placed");
            }
            return Ok((tasks, failures));
        }
    }
    Err(EcsError::Conflict(
        "Too many concurrent placements on this cluster; retry.".to_string(),
    ))
}

pub async fn run_task(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: RunTaskInput = ctx.parse(input)?;
    let count = input.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(EcsError::InvalidParameter(
            "count must be between 1 and 10.".to_string(),
        ));
    }
    if input.launch_type.as_deref() == Some("EC2") && input.platform_version.is_some() {
        return Err(EcsError::InvalidParameter(
            "The platform version must be null when specifying an EC2 launch type.".to_string(),
        ));
    }
    validate_group_and_started_by(input.group.as_deref(), input.started_by.as_deref())?;
    if let Some(reference) = &input.reference_id {
        if reference.len() > 64 {
            return Err(EcsError::InvalidParameter(
                "referenceId must be at most 64 characters.".to_string(),
            ));
        }
    }
    let (mut request, cluster) = launch_request(
        ctx,
        input.cluster.as_deref(),
        &input.task_definition,
        input.overrides,
        input.tags,
        input.propagate_tags.as_deref(),
        input.enable_ecs_managed_tags,
    )
    .await?;
    let capacity = resolve_capacity(
        &cluster,
        input.launch_type.as_deref(),
        input.capacity_provider_strategy.as_deref(),
    )?;
    settle_capacity_and_network(
        ctx,
        &mut request,
        &capacity,
        input.platform_version.as_deref(),
        input.network_configuration.as_ref(),
    )
    .await?;
    request.group = input.group;
    request.started_by = input.started_by;
    request.enable_execute_command = input.enable_execute_command;
    request.constraints =
        parse_constraints(input.placement_constraints.as_deref().unwrap_or_default())?;
    request.strategies = parse_strategies(input.placement_strategy.as_deref().unwrap_or_default())?;
    let (tasks, failures) = launch(
        ctx,
        &request,
        count as usize,
        None,
        input.client_token.as_deref(),
    )
    .await?;
    Ok(json!({ "tasks": tasks, "failures": failures }))
}

pub async fn start_task(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: StartTaskInput = ctx.parse(input)?;
    if input.container_instances.is_empty() || input.container_instances.len() > 10 {
        return Err(EcsError::InvalidParameter(
            "containerInstances must contain between 1 and 10 container instances.".to_string(),
        ));
    }
    validate_group_and_started_by(input.group.as_deref(), input.started_by.as_deref())?;
    let _ = &input.reference_id;
    let (mut request, _) = launch_request(
        ctx,
        input.cluster.as_deref(),
        &input.task_definition,
        input.overrides,
        input.tags,
        input.propagate_tags.as_deref(),
        input.enable_ecs_managed_tags,
    )
    .await?;
    // StartTask places on named container instances: always the EC2 launch type.
    settle_capacity_and_network(
        ctx,
        &mut request,
        &Capacity::default(),
        None,
        input.network_configuration.as_ref(),
    )
    .await?;
    request.group = input.group;
    request.started_by = input.started_by;
    request.enable_execute_command = input.enable_execute_command;
    let (tasks, failures) =
        launch(ctx, &request, 0, Some(&input.container_instances), None).await?;
    Ok(json!({ "tasks": tasks, "failures": failures }))
}

/// Find a task of a cluster by id or ARN.
async fn read_task(
    ctx: &EcsContext,
    cluster: &str,
    given: &str,
) -> Result<Option<(TaskRecord, i64, String)>, EcsError> {
    let id = given.rsplit('/').next().unwrap_or(given).to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    Ok(ctx
        .get_json::<TaskRecord>(&keys::task(cluster, &id))
        .await?
        .map(|(r, rev)| (r, rev, id)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopTaskInput {
    cluster: Option<String>,
    task: String,
    reason: Option<String>,
}

pub async fn stop_task(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: StopTaskInput = ctx.parse(input)?;
    if input.reason.as_ref().is_some_and(|r| r.len() > 255) {
        return Err(EcsError::InvalidParameter(
            "reason must be at most 255 characters.".to_string(),
        ));
    }
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    for _ in 0..16 {
        let (mut record, revision, id) =
            read_task(ctx, &cluster, &input.task)
                .await?
                .ok_or_else(|| {
                    EcsError::InvalidParameter("The referenced task was not found.".to_string())
                })?;
        let reason = input.reason.as_deref().unwrap_or("Task stopped by user");
        if !request_stop(&mut record.task, reason, "UserInitiated", ctx.now()) {
            return Ok(json!({ "task": render_task(record.task) }));
        }
        let key = keys::task(&cluster, &id);
        if put_if_unchanged(ctx, &key, revision, &record).await? {
            return Ok(json!({ "task": render_task(record.task) }));
        }
    }
    Err(EcsError::Conflict(
        "The task is being changed concurrently; retry.".to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTasksInput {
    cluster: Option<String>,
    tasks: Vec<String>,
    include: Option<Vec<String>>,
}

pub async fn describe_tasks(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DescribeTasksInput = ctx.parse(input)?;
    if input.tasks.is_empty() {
        return Err(EcsError::InvalidParameter(
            "Tasks cannot be empty.".to_string(),
        ));
    }
    if input.tasks.len() > 100 {
        return Err(EcsError::InvalidParameter(
            "Tasks cannot have more than 100 elements.".to_string(),
        ));
    }
    let include = input.include.unwrap_or_default();
    if let Some(bad) = include.iter().find(|i| *i != "TAGS") {
        return Err(EcsError::InvalidParameter(format!(
            "Invalid include value '{bad}'. Valid values are: TAGS."
        )));
    }
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for given in &input.tasks {
        match read_task(ctx, &cluster, given).await? {
            Some((record, _, _)) => {
                let mut task = record.task;
                if !include.is_empty() {
                    let arn = task.task_arn.clone().unwrap_or_default();
                    task.tags = Some(tags::get_tags(ctx, &arn).await?);
                } else {
                    task.tags = None;
                }
                tasks.push(render_task(task));
            }
            None => failures.push(Failure {
                arn: Some(if given.starts_with("arn:") {
                    given.clone()
                } else {
                    ctx.scope.task_arn(&cluster, given)
                }),
                reason: Some("MISSING".to_string()),
                detail: None,
            }),
        }
    }
    Ok(json!({ "tasks": tasks, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTasksInput {
    cluster: Option<String>,
    container_instance: Option<String>,
    family: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    started_by: Option<String>,
    service_name: Option<String>,
    desired_status: Option<String>,
    launch_type: Option<String>,
}

pub async fn list_tasks(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListTasksInput = ctx.parse(input)?;
    let desired = input
        .desired_status
        .clone()
        .unwrap_or_else(|| "RUNNING".to_string());
    if !["RUNNING", "PENDING", "STOPPED"].contains(&desired.as_str()) {
        return Err(EcsError::InvalidParameter(format!(
            "Invalid desiredStatus '{desired}'. Valid values are: RUNNING, PENDING, STOPPED."
        )));
    }
    if input.family.is_some() && input.service_name.is_some() {
        return Err(EcsError::InvalidParameter(
            "family and serviceName may not be specified together.".to_string(),
        ));
    }
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let instance_id = input
        .container_instance
        .as_deref()
        .map(|c| c.rsplit('/').next().unwrap_or(c).to_string());
    let prefix = keys::task_cluster_prefix(&cluster);
    let response = ctx.store.range(&prefix, Default::default()).await?;
    let mut items = Vec::new();
    for kv in &response.kvs {
        let task: Task = decode(kv)?;
        // ECS never sets desiredStatus PENDING, so that filter matches nothing, as in AWS.
        let matches = task.desired_status.as_deref() == Some(desired.as_str())
            && instance_id.as_ref().is_none_or(|id| {
                task.container_instance_arn
                    .as_deref()
                    .and_then(|a| a.rsplit('/').next())
                    == Some(id.as_str())
            })
            && input.family.as_ref().is_none_or(|family| {
                task.task_definition_arn
                    .as_deref()
                    .and_then(|a| a.rsplit('/').next())
                    .and_then(|fr| fr.rsplit_once(':'))
                    .is_some_and(|(f, _)| f == family)
            })
            && input
                .started_by
                .as_ref()
                .is_none_or(|s| task.started_by.as_ref() == Some(s))
            && input
                .service_name
                .as_ref()
                .is_none_or(|s| task.group.as_deref() == Some(&format!("service:{s}")))
            && input
                .launch_type
                .as_ref()
                .is_none_or(|l| task.launch_type.as_ref() == Some(l));
        if matches {
            items.push((
                kv.key[prefix.len()..].to_string(),
                task.task_arn.unwrap_or_default(),
            ));
        }
    }
    let scope = format!(
        "ListTasks/{cluster}/{}/{}/{}/{}/{desired}/{}",
        input.container_instance.as_deref().unwrap_or(""),
        input.family.as_deref().unwrap_or(""),
        input.started_by.as_deref().unwrap_or(""),
        input.service_name.as_deref().unwrap_or(""),
        input.launch_type.as_deref().unwrap_or("")
    );
    let (arns, next) = paging::page(
        &ctx.tokens,
        &scope,
        items,
        input.next_token.as_deref(),
        input.max_results,
        100,
    )?;
    Ok(paging::output("taskArns", arns, next))
}
