//! Container instance handlers: RegisterContainerInstance (called by agents),
//! DescribeContainerInstances, ListContainerInstances, DeregisterContainerInstance and
//! UpdateContainerInstancesState.
//!
//! Agents started with the Fargate role register Fargate capacity (attribute
//! `wharf.capacity-type` = `FARGATE`): it is registered like any instance, so Fargate tasks are
//! placed and routed the same way, but it is not the cluster's: Describe answers MISSING,
//! List leaves it out, and its state cannot be changed through the API.
//!
//! The record holds registered and remaining resources (placement reserves and releases
//! them in the same transaction that writes a task); `agentConnected` and the task counts are
//! observed and computed when the instance is rendered.

use model::arn::hex_id;
use model::ecs::attribute::{validate_attribute, Attribute};
use model::ecs::container_instance::{ContainerInstance, Resource, VersionInfo};
use model::ecs::tag::{merge_tags, Tag};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Op, Txn};

use super::cluster_state::{ClusterState, InstanceRecord, StoredInstance};
use super::clusters::active_cluster;
use super::unchanged;
use super::{encode, keys, paging, tags, EcsContext, EcsError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterInput {
    cluster: Option<String>,
    instance_identity_document: Option<String>,
    total_resources: Option<Vec<Resource>>,
    version_info: Option<VersionInfo>,
    container_instance_arn: Option<String>,
    attributes: Option<Vec<Attribute>>,
    tags: Option<Vec<Tag>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    instance_id: Option<String>,
    availability_zone: Option<String>,
    instance_type: Option<String>,
    private_ip: Option<String>,
}

fn random_id() -> String {
    hex_id(rand::random())
}

pub async fn register_container_instance(
    ctx: &EcsContext,
    input: Value,
) -> Result<Value, EcsError> {
    let input: RegisterInput = ctx.parse(input)?;
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let identity: IdentityDocument = match input.instance_identity_document.as_deref() {
        Some(text) => serde_json::from_str(text).map_err(|_| {
            EcsError::InvalidParameter(
                "instanceIdentityDocument is not a valid identity document.".to_string(),
            )
        })?,
        None => IdentityDocument::default(),
    };
    // Load balancers connect to instance targets at this address, so it must be one.
    if let Some(ip) = identity.private_ip.as_deref() {
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(EcsError::InvalidParameter(format!(
                "instanceIdentityDocument privateIp '{ip}' is not a valid IPv4 address."
            )));
        }
    }
    let total = input.total_resources.unwrap_or_default();
    for resource in &total {
        match resource.name.as_deref() {
            Some("CPU" | "MEMORY") if resource.integer_value.unwrap_or(-1) >= 0 => {}
            Some("PORTS" | "PORTS_UDP") => {}
            Some(name) if !["CPU", "MEMORY"].contains(&name) => {}
            _ => {
                return Err(EcsError::InvalidParameter(
                    "totalResources CPU and MEMORY must be non-negative integers.".to_string(),
                ))
            }
        }
    }
    let mut attributes = input.attributes.unwrap_or_default();
    for attribute in &attributes {
        validate_attribute(attribute)?;
    }
    let tags = merge_tags(&[], input.tags.as_deref().unwrap_or_default())?;
    let ec2_instance_id = identity.instance_id.clone();
    let mut add_builtin = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            if !attributes.iter().any(|a| a.name == name) {
                attributes.push(Attribute {
                    name: name.to_string(),
                    value: Some(value),
                    target_type: None,
                    target_id: None,
                });
            }
        }
    };
    add_builtin("ecs.availability-zone", identity.availability_zone.clone());
    add_builtin("ecs.instance-type", identity.instance_type.clone());

    for _ in 0..16 {
        // Re-registration keeps the identity (and what is already reserved on it).
        let existing = match input.container_instance_arn.as_deref() {
            Some(arn) => {
                let id = arn.rsplit('/').next().unwrap_or("").to_string();
                let key = keys::container_instance(&cluster, &id);
                match ctx.get_json::<InstanceRecord>(&key).await? {
                    Some((record, revision)) => Some((record, revision)),
                    None => {
                        return Err(EcsError::InvalidParameter(format!(
                            "The container instance {arn} was not found in cluster {cluster}."
                        )))
                    }
                }
            }
            None => None,
        };
        let (id, registered_at, remaining, revision, version) = match &existing {
            Some((record, revision)) => (
                record.wharf_id.clone(),
                record.instance.registered_at,
                super::placement::reregistered_remaining(&record.instance, &total),
                *revision,
                record.instance.version.unwrap_or(0),
            ),
            None => (random_id(), Some(ctx.now()), total.clone(), 0, 0),
        };
        let arn = ctx.scope.container_instance_arn(&cluster, &id);
        let record = InstanceRecord {
            instance: ContainerInstance {
                container_instance_arn: Some(arn.clone()),
                ec2_instance_id: ec2_instance_id.clone(),
                version: Some(version + 1),
                version_info: input.version_info.clone(),
                remaining_resources: Some(remaining),
                registered_resources: Some(total.clone()),
                status: Some("ACTIVE".to_string()),
                agent_update_status: None,
                attributes: Some(attributes.clone()),
                registered_at,
                attachments: Some(vec![]),
                ..Default::default()
            },
            wharf_id: id.clone(),
            wharf_disconnected_at: None,
            wharf_private_ip: identity.private_ip.clone(),
        };
        let key = keys::container_instance(&cluster, &id);
        let response = ctx
            .store
            .txn(Txn {
                compares: vec![unchanged(&key, revision)],
                success: vec![
                    Op::Put {
                        key,
                        value: encode(&record),
                        lease: None,
                    },
                    tags::put_tags_op(&arn, &tags),
                ],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            tracing::info!(cluster, instance = %arn, "container instance registered");
            // A new instance has no tasks yet; only a re-registration needs the whole cluster
            // to count them (so registering a fleet stays linear).
            let state = if existing.is_some() {
                ClusterState::load(ctx, &cluster).await?
            } else {
                ClusterState::single(ctx, &cluster, &id).await?
            };
            let stored = StoredInstance {
                record,
                mod_revision: response.revision,
            };
            let mut rendered = state.render_instance(&stored);
            rendered.tags = Some(tags);
            return Ok(json!({ "containerInstance": rendered }));
        }
    }
    Err(EcsError::Conflict(
        "The container instance is being changed concurrently; retry.".to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInput {
    cluster: Option<String>,
    container_instances: Vec<String>,
    include: Option<Vec<String>>,
}

pub async fn describe_container_instances(
    ctx: &EcsContext,
    input: Value,
) -> Result<Value, EcsError> {
    let input: DescribeInput = ctx.parse(input)?;
    if input.container_instances.is_empty() || input.container_instances.len() > 100 {
        return Err(EcsError::InvalidParameter(
            "containerInstances must contain between 1 and 100 items.".to_string(),
        ));
    }
    let include = input.include.unwrap_or_default();
    for value in &include {
        if value != "TAGS" && value != "CONTAINER_INSTANCE_HEALTH" {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid include value '{value}'. Valid values are: TAGS, CONTAINER_INSTANCE_HEALTH."
            )));
        }
    }
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let state = ClusterState::load(ctx, &cluster).await?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for given in &input.container_instances {
        // Fargate capacity is managed: not a container instance of the cluster's.
        match state
            .instance(given)
            .filter(|s| !s.record.is_fargate_capacity())
        {
            Some(stored) => {
                let mut rendered = state.render_instance(stored);
                if include.iter().any(|i| i == "TAGS") {
                    let arn = rendered.container_instance_arn.clone().unwrap_or_default();
                    rendered.tags = Some(tags::get_tags(ctx, &arn).await?);
                }
                if include.iter().any(|i| i == "CONTAINER_INSTANCE_HEALTH") {
                    let connected = rendered.agent_connected == Some(true);
                    rendered.health_status = Some(json!({
                        "overallStatus": if connected { "OK" } else { "IMPAIRED" },
                        "details": [],
                    }));
                }
                found.push(rendered);
            }
            None => {
                let arn = if given.starts_with("arn:") {
                    given.clone()
                } else {
                    ctx.scope.container_instance_arn(&cluster, given)
                };
                failures.push(json!({ "arn": arn, "reason": "MISSING" }));
            }
        }
    }
    Ok(json!({ "containerInstances": found, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    cluster: Option<String>,
    filter: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list_container_instances(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListInput = ctx.parse(input)?;
    if let Some(status) = &input.status {
        if ![
            "ACTIVE",
            "DRAINING",
            "REGISTERING",
            "DEREGISTERING",
            "REGISTRATION_FAILED",
        ]
        .contains(&status.as_str())
        {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid status '{status}'."
            )));
        }
    }
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let state = ClusterState::load(ctx, &cluster).await?;
    let filter = match input.filter.as_deref() {
        Some(expression) => Some(super::query::InstanceFilter::parse(expression)?),
        None => None,
    };
    let mut items = Vec::new();
    for stored in &state.instances {
        let status = stored.record.instance.status.as_deref().unwrap_or("");
        let wanted = match &input.status {
            Some(s) => s == status,
            None => status == "ACTIVE" || status == "DRAINING",
        };
        if !wanted || stored.record.is_fargate_capacity() {
            continue;
        }
        if let Some(filter) = &filter {
            if !filter.matches(&state, stored) {
                continue;
            }
        }
        items.push((
            stored.record.wharf_id.clone(),
            stored
                .record
                .instance
                .container_instance_arn
                .clone()
                .unwrap_or_default(),
        ));
    }
    let scope = format!(
        "ListContainerInstances/{cluster}/{}/{}",
        input.filter.as_deref().unwrap_or(""),
        input.status.as_deref().unwrap_or("")
    );
    let (arns, next) = paging::page(
        &ctx.tokens,
        &scope,
        items,
        input.next_token.as_deref(),
        input.max_results,
        100,
    )?;
    Ok(paging::output("containerInstanceArns", arns, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterInput {
    cluster: Option<String>,
    container_instance: String,
    #[serde(default)]
    force: bool,
}

pub async fn deregister_container_instance(
    ctx: &EcsContext,
    input: Value,
) -> Result<Value, EcsError> {
    let input: DeregisterInput = ctx.parse(input)?;
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    for _ in 0..16 {
        let state = ClusterState::load(ctx, &cluster).await?;
        let stored = state.instance(&input.container_instance).ok_or_else(|| {
            EcsError::InvalidParameter(format!(
                "The referenced container instance {} was not found.",
                input.container_instance
            ))
        })?;
        let arn = stored
            .record
            .instance
            .container_instance_arn
            .clone()
            .unwrap_or_default();
        let live = state
            .tasks_on(&arn)
            .filter(|t| t.task.last_status.as_deref() != Some("STOPPED"))
            .count();
        if live > 0 && !input.force {
            return Err(EcsError::InvalidParameter(
                "Found running tasks on the instance. Use the force option to deregister the instance."
                    .to_string(),
            ));
        }
        let mut record = stored.record.clone();
        record.instance.status = Some("INACTIVE".to_string());
        record.instance.version = Some(record.instance.version.unwrap_or(0) + 1);
        let key = keys::container_instance(&cluster, &record.wharf_id);
        let response = ctx
            .store
            .txn(Txn {
                compares: vec![unchanged(&key, stored.mod_revision)],
                success: vec![
                    Op::Put {
                        key,
                        value: encode(&record),
                        lease: None,
                    },
                    Op::Delete {
                        key: keys::agent_session(&cluster, &record.wharf_id),
                    },
                ],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            let rendered = state.render_instance(&StoredInstance {
                record,
                mod_revision: response.revision,
            });
            return Ok(json!({ "containerInstance": rendered }));
        }
    }
    Err(EcsError::Conflict(
        "The container instance is being changed concurrently; retry.".to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateStateInput {
    cluster: Option<String>,
    container_instances: Vec<String>,
    status: String,
}

pub async fn update_container_instances_state(
    ctx: &EcsContext,
    input: Value,
) -> Result<Value, EcsError> {
    let input: UpdateStateInput = ctx.parse(input)?;
    if input.status != "ACTIVE" && input.status != "DRAINING" {
        return Err(EcsError::InvalidParameter(
            "Container instances can only be set to ACTIVE or DRAINING.".to_string(),
        ));
    }
    if input.container_instances.is_empty() || input.container_instances.len() > 10 {
        return Err(EcsError::InvalidParameter(
            "containerInstances must contain between 1 and 10 items.".to_string(),
        ));
    }
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    for _ in 0..16 {
        let state = ClusterState::load(ctx, &cluster).await?;
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut updated = Vec::new();
        let mut failures = Vec::new();
        for given in &input.container_instances {
            match state.instance(given) {
                Some(stored)
                    if stored.record.instance.status.as_deref() != Some("INACTIVE")
                        && !stored.record.is_fargate_capacity() =>
                {
                    let mut record = stored.record.clone();
                    if record.instance.status.as_deref() != Some(input.status.as_str()) {
                        record.instance.status = Some(input.status.clone());
                        record.instance.version = Some(record.instance.version.unwrap_or(0) + 1);
                        let key = keys::container_instance(&cluster, &record.wharf_id);
                        compares.push(unchanged(&key, stored.mod_revision));
                        ops.push(Op::Put {
                            key,
                            value: encode(&record),
                            lease: None,
                        });
                    }
                    updated.push(StoredInstance {
                        record,
                        mod_revision: stored.mod_revision,
                    });
                }
                _ => {
                    let arn = if given.starts_with("arn:") {
                        given.clone()
                    } else {
                        ctx.scope.container_instance_arn(&cluster, given)
                    };
                    failures.push(json!({ "arn": arn, "reason": "MISSING" }));
                }
            }
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
            let rendered: Vec<_> = updated.iter().map(|s| state.render_instance(s)).collect();
            return Ok(json!({ "containerInstances": rendered, "failures": failures }));
        }
    }
    Err(EcsError::Conflict(
        "The container instances are being changed concurrently; retry.".to_string(),
    ))
}
