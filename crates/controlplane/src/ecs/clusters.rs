//! Cluster handlers: CreateCluster, DescribeClusters, ListClusters, UpdateCluster,
//! UpdateClusterSettings and DeleteCluster.
//!
//! A cluster record holds what the user set; counts and statistics are derived from the tasks,
//! services and container instances stored under the cluster whenever a cluster is described,
//! so they can never drift from what exists. Tags live in their own record (see `tags`).
//!
//! ```text
//!   CreateCluster ──> ACTIVE ──DeleteCluster──> INACTIVE ──CreateCluster──> ACTIVE
//! ```
//! An INACTIVE cluster stays describable, as AWS keeps it.

use model::arn::Arn;
use model::ecs::cluster::{
    validate_cluster_name, validate_cluster_settings, CapacityProviderStrategyItem, Cluster,
    ClusterConfiguration, ClusterServiceConnectDefaults, ClusterSetting,
};
use model::ecs::tag::{merge_tags, Tag};
use model::ecs::KeyValuePair;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Op, Txn};

use super::{decode, encode, keys, paging, tags, to_value, EcsContext, EcsError};
use super::{put_if_unchanged, unchanged};

const ACTIVE: &str = "ACTIVE";
const INACTIVE: &str = "INACTIVE";

/// Resolve a cluster given by name or ARN (absent means `default`) to its name.
pub fn cluster_name(cluster: Option<&str>) -> Result<String, EcsError> {
    let given = cluster.unwrap_or("default");
    if given.starts_with("arn:") {
        let arn = Arn::parse(given)
            .filter(|arn| arn.service == "ecs")
            .ok_or_else(|| EcsError::InvalidParameter("Invalid cluster ARN.".to_string()))?;
        match arn.resource_type() {
            ("cluster", name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(EcsError::InvalidParameter(
                "Invalid cluster ARN.".to_string(),
            )),
        }
    } else {
        Ok(given.to_string())
    }
}

/// Read an ACTIVE cluster, or fail with `ClusterNotFoundException` as ECS does for a missing
/// or deleted one. Returns the record and its revision for compare-and-swap updates.
pub async fn active_cluster(
    ctx: &EcsContext,
    cluster: Option<&str>,
) -> Result<(Cluster, i64), EcsError> {
    let name = cluster_name(cluster)?;
    match ctx.get_json::<Cluster>(&keys::cluster(&name)).await? {
        Some((record, revision)) if record.status.as_deref() == Some(ACTIVE) => {
            Ok((record, revision))
        }
        _ => Err(EcsError::ClusterNotFound),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateClusterInput {
    cluster_name: Option<String>,
    tags: Option<Vec<Tag>>,
    settings: Option<Vec<ClusterSetting>>,
    configuration: Option<ClusterConfiguration>,
    capacity_providers: Option<Vec<String>>,
    default_capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    service_connect_defaults: Option<ClusterServiceConnectDefaults>,
}

pub async fn create_cluster(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: CreateClusterInput = ctx.parse(input)?;
    let name = input
        .cluster_name
        .clone()
        .unwrap_or_else(|| "default".to_string());
    validate_cluster_name(&name)?;
    let tags = merge_tags(&[], input.tags.as_deref().unwrap_or_default())?;
    let settings = input.settings.clone().unwrap_or_default();
    validate_cluster_settings(&settings)?;
    validate_capacity_providers(
        input.capacity_providers.as_deref().unwrap_or_default(),
        input
            .default_capacity_provider_strategy
            .as_deref()
            .unwrap_or_default(),
    )?;

    let key = keys::cluster(&name);
    let arn = ctx.scope.cluster_arn(&name);
    for _ in 0..16 {
        let existing = ctx.store.get(&key).await?;
        if let Some(kv) = &existing {
            let record: Cluster = decode(kv)?;
            // CreateCluster is idempotent on an ACTIVE cluster: AWS answers with the cluster
            // as it is and changes nothing.
            if record.status.as_deref() == Some(ACTIVE) {
                let tags = tags::get_tags(ctx, &arn).await?;
                return Ok(
                    json!({ "cluster": render(ctx, record, &tags, &MUTATION_INCLUDES).await? }),
                );
            }
        }
        let record = Cluster {
            cluster_arn: Some(arn.clone()),
            cluster_name: Some(name.clone()),
            configuration: input.configuration.clone(),
            status: Some(ACTIVE.to_string()),
            settings: Some(with_default_settings(settings.clone())),
            capacity_providers: Some(input.capacity_providers.clone().unwrap_or_default()),
            default_capacity_provider_strategy: Some(
                input
                    .default_capacity_provider_strategy
                    .clone()
                    .unwrap_or_default(),
            ),
            service_connect_defaults: input.service_connect_defaults.clone(),
            ..Default::default()
        };
        let compare_revision = existing.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
        let response = ctx
            .store
            .txn(Txn {
                compares: vec![unchanged(&key, compare_revision)],
                success: vec![
                    Op::Put {
                        key: key.clone(),
                        value: encode(&record),
                        lease: None,
                    },
                    tags::put_tags_op(&arn, &tags),
                ],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            return Ok(json!({ "cluster": render(ctx, record, &tags, &MUTATION_INCLUDES).await? }));
        }
    }
    Err(EcsError::Conflict(
        "The cluster is being changed concurrently; retry.".to_string(),
    ))
}

/// Clusters always report their `containerInsights` setting, `disabled` unless set.
fn with_default_settings(mut settings: Vec<ClusterSetting>) -> Vec<ClusterSetting> {
    if !settings
        .iter()
        .any(|s| s.name.as_deref() == Some("containerInsights"))
    {
        settings.push(ClusterSetting {
            name: Some("containerInsights".to_string()),
            value: Some("disabled".to_string()),
        });
    }
    settings
}

/// Capacity providers arrive in a later issue; until then only the built-in Fargate ones may be
/// named, and the strategy must name providers associated with the cluster.
pub(crate) fn validate_capacity_providers(
    providers: &[String],
    strategy: &[CapacityProviderStrategyItem],
) -> Result<(), EcsError> {
    for provider in providers {
        if provider != "FARGATE" && provider != "FARGATE_SPOT" {
            return Err(EcsError::InvalidParameter(format!(
                "The specified capacity provider '{provider}' does not exist. Specify a valid capacity provider and try again."
            )));
        }
    }
    for item in strategy {
        if !providers.contains(&item.capacity_provider) {
            return Err(EcsError::InvalidParameter(format!(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again. Capacity provider: {}",
                item.capacity_provider
            )));
        }
        if !(0..=1000).contains(&item.weight.unwrap_or(0)) {
            return Err(EcsError::InvalidParameter(
                "The capacity provider strategy weight must be between 0 and 1000.".to_string(),
            ));
        }
        if !(0..=100000).contains(&item.base.unwrap_or(0)) {
            return Err(EcsError::InvalidParameter(
                "The capacity provider strategy base must be between 0 and 100000.".to_string(),
            ));
        }
    }
    if strategy
        .iter()
        .filter(|item| item.base.unwrap_or(0) > 0)
        .count()
        > 1
    {
        return Err(EcsError::InvalidParameter(
            "A base value can only be specified for one capacity provider in a capacity provider strategy.".to_string(),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Include {
    Attachments,
    Configurations,
    Settings,
    Statistics,
    Tags,
}

/// What Create/Update/DeleteCluster answer with: the cluster as set, with its tags.
const MUTATION_INCLUDES: [Include; 3] = [Include::Settings, Include::Configurations, Include::Tags];

fn parse_includes(include: &[String]) -> Result<Vec<Include>, EcsError> {
    include
        .iter()
        .map(|value| match value.as_str() {
            "ATTACHMENTS" => Ok(Include::Attachments),
            "CONFIGURATIONS" => Ok(Include::Configurations),
            "SETTINGS" => Ok(Include::Settings),
            "STATISTICS" => Ok(Include::Statistics),
            "TAGS" => Ok(Include::Tags),
            other => Err(EcsError::InvalidParameter(format!(
                "Invalid include value '{other}'. Valid values are: ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS, TAGS."
            ))),
        })
        .collect()
}

/// What the cluster's tasks, services and instances add up to right now.
#[derive(Default)]
struct Counts {
    registered_instances: i64,
    running_tasks: i64,
    pending_tasks: i64,
    active_services: i64,
    running_ec2: i64,
    running_fargate: i64,
    pending_ec2: i64,
    pending_fargate: i64,
    active_ec2_services: i64,
    active_fargate_services: i64,
    draining_ec2_services: i64,
    draining_fargate_services: i64,
}

async fn counts(ctx: &EcsContext, name: &str) -> Result<Counts, EcsError> {
    let mut counts = Counts::default();
    let field = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    for (_, instance) in ctx
        .range_json::<Value>(&keys::container_instance_cluster_prefix(name))
        .await?
    {
        // Fargate capacity is managed by "AWS", not registered to the cluster.
        let fargate = instance
            .get("attributes")
            .and_then(Value::as_array)
            .is_some_and(|attributes| {
                attributes.iter().any(|a| {
                    field(a, "name") == super::cluster_state::CAPACITY_TYPE_ATTRIBUTE
                        && field(a, "value") == "FARGATE"
                })
            });
        if !fargate && matches!(field(&instance, "status").as_str(), "ACTIVE" | "DRAINING") {
            counts.registered_instances += 1;
        }
    }
    for (_, task) in ctx
        .range_json::<Value>(&keys::task_cluster_prefix(name))
        .await?
    {
        let fargate = field(&task, "launchType") == "FARGATE";
        match field(&task, "lastStatus").as_str() {
            "RUNNING" => {
                counts.running_tasks += 1;
                *if fargate {
                    &mut counts.running_fargate
                } else {
                    &mut counts.running_ec2
                } += 1;
            }
            "PROVISIONING" | "PENDING" | "ACTIVATING" => {
                counts.pending_tasks += 1;
                *if fargate {
                    &mut counts.pending_fargate
                } else {
                    &mut counts.pending_ec2
                } += 1;
            }
            _ => {}
        }
    }
    for (_, service) in ctx
        .range_json::<Value>(&keys::service_cluster_prefix(name))
        .await?
    {
        let fargate = field(&service, "launchType") == "FARGATE";
        match field(&service, "status").as_str() {
            "ACTIVE" => {
                counts.active_services += 1;
                *if fargate {
                    &mut counts.active_fargate_services
                } else {
                    &mut counts.active_ec2_services
                } += 1;
            }
            "DRAINING" => {
                *if fargate {
                    &mut counts.draining_fargate_services
                } else {
                    &mut counts.draining_ec2_services
                } += 1;
            }
            _ => {}
        }
    }
    Ok(counts)
}

/// The wire form of a cluster with the optional parts `include` asks for.
async fn render(
    ctx: &EcsContext,
    mut cluster: Cluster,
    tags: &[Tag],
    include: &[Include],
) -> Result<Cluster, EcsError> {
    let name = cluster.cluster_name.clone().unwrap_or_default();
    let counts = counts(ctx, &name).await?;
    cluster.registered_container_instances_count = Some(counts.registered_instances);
    cluster.running_tasks_count = Some(counts.running_tasks);
    cluster.pending_tasks_count = Some(counts.pending_tasks);
    cluster.active_services_count = Some(counts.active_services);
    cluster.statistics = Some(if include.contains(&Include::Statistics) {
        [
            ("runningEC2TasksCount", counts.running_ec2),
            ("runningFargateTasksCount", counts.running_fargate),
            ("pendingEC2TasksCount", counts.pending_ec2),
            ("pendingFargateTasksCount", counts.pending_fargate),
            ("activeEC2ServiceCount", counts.active_ec2_services),
            ("activeFargateServiceCount", counts.active_fargate_services),
            ("drainingEC2ServiceCount", counts.draining_ec2_services),
            (
                "drainingFargateServiceCount",
                counts.draining_fargate_services,
            ),
        ]
        .into_iter()
        .map(|(n, v)| KeyValuePair {
            name: Some(n.to_string()),
            value: Some(v.to_string()),
        })
        .collect()
    } else {
        Vec::new()
    });
    cluster.tags = Some(if include.contains(&Include::Tags) {
        tags.to_vec()
    } else {
        Vec::new()
    });
    if !include.contains(&Include::Settings) {
        cluster.settings = None;
    }
    if !include.contains(&Include::Configurations) {
        cluster.configuration = None;
    }
    if include.contains(&Include::Attachments) {
        cluster.attachments = Some(cluster.attachments.take().unwrap_or_default());
    } else {
        cluster.attachments = None;
        cluster.attachments_status = None;
    }
    Ok(cluster)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DescribeClustersInput {
    clusters: Option<Vec<String>>,
    include: Option<Vec<String>>,
}

pub async fn describe_clusters(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DescribeClustersInput = ctx.parse(input)?;
    let include = parse_includes(input.include.as_deref().unwrap_or_default())?;
    let wanted = input
        .clusters
        .unwrap_or_else(|| vec!["default".to_string()]);
    if wanted.len() > 100 {
        return Err(EcsError::InvalidParameter(
            "The clusters parameter can contain at most 100 clusters.".to_string(),
        ));
    }
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for given in &wanted {
        let name = cluster_name(Some(given))?;
        match ctx.get_json::<Cluster>(&keys::cluster(&name)).await? {
            Some((record, _)) => {
                let arn = ctx.scope.cluster_arn(&name);
                let tags = if include.contains(&Include::Tags) {
                    tags::get_tags(ctx, &arn).await?
                } else {
                    Vec::new()
                };
                clusters.push(to_value(&render(ctx, record, &tags, &include).await?));
            }
            None => failures.push(json!({
                "arn": ctx.scope.cluster_arn(&name),
                "reason": "MISSING",
            })),
        }
    }
    Ok(json!({ "clusters": clusters, "failures": failures }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListClustersInput {
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list_clusters(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListClustersInput = ctx.parse(input)?;
    let items: Vec<(String, String)> = ctx
        .range_json::<Cluster>(keys::CLUSTER_PREFIX)
        .await?
        .into_iter()
        .filter(|(_, c)| c.status.as_deref() == Some(ACTIVE))
        .map(|(key, c)| (key, c.cluster_arn.unwrap_or_default()))
        .collect();
    let (arns, next) = paging::page(
        &ctx.tokens,
        "ListClusters",
        items,
        input.next_token.as_deref(),
        input.max_results,
        100,
    )?;
    Ok(paging::output("clusterArns", arns, next))
}

/// Apply `change` to an ACTIVE cluster with a compare on the revision read; retry on a race.
async fn update(
    ctx: &EcsContext,
    cluster: &str,
    change: impl Fn(&mut Cluster),
) -> Result<Value, EcsError> {
    for _ in 0..16 {
        let (mut record, revision) = active_cluster(ctx, Some(cluster)).await?;
        change(&mut record);
        let name = record.cluster_name.clone().unwrap_or_default();
        let key = keys::cluster(&name);
        if put_if_unchanged(ctx, &key, revision, &record).await? {
            let arn = ctx.scope.cluster_arn(&name);
            let tags = tags::get_tags(ctx, &arn).await?;
            return Ok(json!({ "cluster": render(ctx, record, &tags, &MUTATION_INCLUDES).await? }));
        }
    }
    Err(EcsError::Conflict(
        "The cluster is being changed concurrently; retry.".to_string(),
    ))
}

/// Replace settings by name, keeping the others.
fn merge_settings(
    existing: Option<Vec<ClusterSetting>>,
    new: &[ClusterSetting],
) -> Vec<ClusterSetting> {
    let mut merged = existing.unwrap_or_default();
    for setting in new {
        match merged.iter_mut().find(|s| s.name == setting.name) {
            Some(slot) => slot.value = setting.value.clone(),
            None => merged.push(setting.clone()),
        }
    }
    with_default_settings(merged)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateClusterInput {
    cluster: String,
    settings: Option<Vec<ClusterSetting>>,
    configuration: Option<ClusterConfiguration>,
    service_connect_defaults: Option<ClusterServiceConnectDefaults>,
}

pub async fn update_cluster(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: UpdateClusterInput = ctx.parse(input)?;
    let settings = input.settings.clone().unwrap_or_default();
    validate_cluster_settings(&settings)?;
    update(ctx, &input.cluster, |record| {
        if input.settings.is_some() {
            record.settings = Some(merge_settings(record.settings.take(), &settings));
        }
        if let Some(configuration) = &input.configuration {
            record.configuration = Some(configuration.clone());
        }
        if let Some(defaults) = &input.service_connect_defaults {
            record.service_connect_defaults = Some(defaults.clone());
        }
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateClusterSettingsInput {
    cluster: String,
    settings: Vec<ClusterSetting>,
}

pub async fn update_cluster_settings(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: UpdateClusterSettingsInput = ctx.parse(input)?;
    validate_cluster_settings(&input.settings)?;
    update(ctx, &input.cluster, |record| {
        record.settings = Some(merge_settings(record.settings.take(), &input.settings));
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteClusterInput {
    cluster: String,
}

pub async fn delete_cluster(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DeleteClusterInput = ctx.parse(input)?;
    for _ in 0..16 {
        let (mut record, revision) = active_cluster(ctx, Some(&input.cluster)).await?;
        let name = record.cluster_name.clone().unwrap_or_default();
        let counts = counts(ctx, &name).await?;
        if counts.registered_instances > 0 {
            return Err(EcsError::ClusterContainsContainerInstances);
        }
        if counts.active_services > 0
            || counts.draining_ec2_services + counts.draining_fargate_services > 0
        {
            return Err(EcsError::ClusterContainsServices);
        }
        if counts.running_tasks + counts.pending_tasks > 0 {
            return Err(EcsError::ClusterContainsTasks);
        }
        record.status = Some(INACTIVE.to_string());
        let key = keys::cluster(&name);
        if put_if_unchanged(ctx, &key, revision, &record).await? {
            let arn = ctx.scope.cluster_arn(&name);
            let tags = tags::get_tags(ctx, &arn).await?;
            return Ok(json!({ "cluster": render(ctx, record, &tags, &MUTATION_INCLUDES).await? }));
        }
    }
    Err(EcsError::Conflict(
        "The cluster is being changed concurrently; retry.".to_string(),
    ))
}
