//! The service API: CreateService, UpdateService, DeleteService, DescribeServices,
//! ListServices and ListServicesByNamespace, with AWS's validation. Handlers only write
//! desired state (the record); the service scheduler (`reconcile`) acts on it.

use model::ecs::cluster::CapacityProviderStrategyItem;
use model::ecs::service::{
    validate_service_name, DeploymentConfiguration, DeploymentController, LoadBalancer,
    NetworkConfiguration, PlacementConstraint, PlacementStrategy, Service, ServiceRegistry, ACTIVE,
    DAEMON, DRAINING, REPLICA,
};
use model::ecs::tag::{merge_tags, Tag};
use model::ecs::task_definition::TaskDefinition;
use serde::Deserialize;
use serde_json::{json, Value};

use super::history::start_deployment;
use super::load_balancers;
use super::{read_service, render, service_tasks, write_service, RevisionConfig, ServiceRecord};
use crate::ecs::awsvpc;
use crate::ecs::clusters::active_cluster;
use crate::ecs::tasks::{
    check_fargate, check_platform_version, resolve_capacity, resolve_task_definition,
};
use crate::ecs::{keys, paging, tags, EcsContext, EcsError};
use model::ecs::task::TaskOverride;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateServiceInput {
    cluster: Option<String>,
    service_name: String,
    task_definition: Option<String>,
    availability_zone_rebalancing: Option<String>,
    load_balancers: Option<Vec<LoadBalancer>>,
    service_registries: Option<Vec<ServiceRegistry>>,
    desired_count: Option<i64>,
    client_token: Option<String>,
    launch_type: Option<String>,
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    platform_version: Option<String>,
    role: Option<String>,
    deployment_configuration: Option<DeploymentConfiguration>,
    placement_constraints: Option<Vec<PlacementConstraint>>,
    placement_strategy: Option<Vec<PlacementStrategy>>,
    network_configuration: Option<NetworkConfiguration>,
    health_check_grace_period_seconds: Option<i64>,
    scheduling_strategy: Option<String>,
    deployment_controller: Option<DeploymentController>,
    tags: Option<Vec<Tag>>,
    #[serde(rename = "enableECSManagedTags", default)]
    enable_ecs_managed_tags: bool,
    propagate_tags: Option<String>,
    #[serde(default)]
    enable_execute_command: bool,
    service_connect_configuration: Option<Value>,
    volume_configurations: Option<Vec<Value>>,
    vpc_lattice_configurations: Option<Vec<Value>>,
    gateway_connectors: Option<Vec<Value>>,
}

/// What Wharf cannot run yet is refused up front, with the reason, rather than accepted and
/// ignored (docs/compat.md, "Services").
fn refuse_unsupported(
    service_registries: Option<&[ServiceRegistry]>,
    service_connect: Option<&Value>,
    volume_configurations: Option<&[Value]>,
    vpc_lattice: Option<&[Value]>,
    gateway_connectors: Option<&[Value]>,
) -> Result<(), EcsError> {
    let not_yet = |what: &str| {
        Err(EcsError::InvalidParameter(format!(
            "{what} are not available in Wharf yet (see docs/compat.md); remove them from the request."
        )))
    };
    if service_registries.is_some_and(|l| !l.is_empty()) {
        return not_yet("Service discovery registries (serviceRegistries)");
    }
    if service_connect.is_some_and(|c| c.get("enabled").and_then(Value::as_bool) == Some(true)) {
        return not_yet("Service Connect configurations (serviceConnectConfiguration)");
    }
    if volume_configurations.is_some_and(|l| !l.is_empty()) {
        return not_yet("Service-managed volumes (volumeConfigurations)");
    }
    if vpc_lattice.is_some_and(|l| !l.is_empty()) {
        return not_yet("VPC Lattice configurations (vpcLatticeConfigurations)");
    }
    if gateway_connectors.is_some_and(|l| !l.is_empty()) {
        return not_yet("Gateway connectors (gatewayConnectors)");
    }
    Ok(())
}

fn check_propagate_tags(value: Option<&str>) -> Result<(), EcsError> {
    match value {
        None | Some("NONE" | "SERVICE" | "TASK_DEFINITION") => Ok(()),
        Some(other) => Err(EcsError::InvalidParameter(format!(
            "Invalid propagateTags value '{other}'. Valid values are: TASK_DEFINITION, SERVICE, NONE."
        ))),
    }
}

/// The deployment configuration with its percentages checked against the scheduling strategy.
fn check_deployment_configuration(
    configuration: &DeploymentConfiguration,
    daemon: bool,
) -> Result<(), EcsError> {
    if let Some(min) = configuration.minimum_healthy_percent {
        if !(0..=100).contains(&min) {
            return Err(EcsError::InvalidParameter(
                "minimumHealthyPercent must be between 0 and 100.".to_string(),
            ));
        }
    }
    if let Some(max) = configuration.maximum_percent {
        if max < 100 {
            return Err(EcsError::InvalidParameter(
                "maximumPercent must be at least 100.".to_string(),
            ));
        }
        if daemon && max > 100 {
            return Err(EcsError::InvalidParameter(
                "The daemon scheduling strategy does not support values above 100 for maximumPercent."
                    .to_string(),
            ));
        }
    }
    match configuration.strategy.as_deref() {
        None | Some("ROLLING") => {}
        Some(other @ ("BLUE_GREEN" | "LINEAR" | "CANARY")) => {
            return Err(EcsError::InvalidParameter(format!(
                "Deployment strategy {other} is not available in Wharf yet; use ROLLING."
            )))
        }
        Some(other) => {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid deployment strategy '{other}'. Valid values are: ROLLING, BLUE_GREEN, LINEAR, CANARY."
            )))
        }
    }
    if let Some(threshold) = configuration
        .deployment_circuit_breaker
        .as_ref()
        .and_then(|b| b.threshold_configuration.as_ref())
    {
        if !["COUNT", "BOUNDED_PERCENT", "UNBOUNDED_PERCENT"]
            .contains(&threshold.threshold_type.as_str())
            || threshold.value < 1
        {
            return Err(EcsError::InvalidParameter(
                "thresholdConfiguration type must be COUNT, BOUNDED_PERCENT or UNBOUNDED_PERCENT with a value of at least 1.".to_string(),
            ));
        }
    }
    Ok(())
}

/// Resolve the task definition a deployment runs and check it can run here: on Fargate when
/// `fargate`, with a network configuration that fits its network mode.
async fn deployable_definition(
    ctx: &EcsContext,
    given: &str,
    network_configuration: Option<&NetworkConfiguration>,
    require_active: bool,
    fargate: bool,
) -> Result<TaskDefinition, EcsError> {
    let definition = resolve_task_definition(ctx, given).await?;
    if require_active && definition.status.as_deref() != Some("ACTIVE") {
        return Err(EcsError::Client("TaskDefinition is inactive".to_string()));
    }
    if fargate {
        check_fargate(&definition, &TaskOverride::default())?;
    }
    awsvpc::resolve_network(ctx, &definition, network_configuration, fargate).await?;
    Ok(definition)
}

/// Placement of a deployment, checked as RunTask checks it (AWS's limits and messages).
pub fn parse_placement(
    definition: &TaskDefinition,
    constraints: &[PlacementConstraint],
    strategies: &[PlacementStrategy],
) -> Result<
    (
        Vec<scheduler::PlacementConstraint>,
        Vec<scheduler::PlacementStrategy>,
    ),
    EcsError,
> {
    let constraints: Vec<scheduler::PlacementConstraint> = constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            scheduler::PlacementConstraint::from_wire(
                c.constraint_type.as_deref(),
                c.expression.as_deref(),
                i + 1,
            )
        })
        .collect::<Result<_, _>>()?;
    let strategies: Vec<scheduler::PlacementStrategy> = strategies
        .iter()
        .enumerate()
        .map(|(i, s)| {
            scheduler::PlacementStrategy::from_wire(
                s.strategy_type.as_deref(),
                s.field.as_deref(),
                i + 1,
            )
        })
        .collect::<Result<_, _>>()?;
    let definition_constraints: Vec<scheduler::PlacementConstraint> = definition
        .placement_constraints
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            scheduler::PlacementConstraint::from_wire(
                c.r#type.as_deref(),
                c.expression.as_deref(),
                i + 1,
            )
        })
        .collect::<Result<_, _>>()?;
    let request = scheduler::PlacementRequest {
        task_definition_constraints: definition_constraints,
        constraints: constraints.clone(),
        strategies: strategies.clone(),
        ..scheduler::PlacementRequest::new("check", Default::default(), 0, 0)
    };
    request.validate()?;
    let strategies = if strategies.is_empty() {
        scheduler::PlacementStrategy::service_default()
    } else {
        strategies
    };
    Ok((constraints, strategies))
}

pub async fn create_service(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: CreateServiceInput = ctx.parse(input)?;
    let name = input.service_name.clone();
    validate_service_name(&name)?;
    let scheduling = input
        .scheduling_strategy
        .clone()
        .unwrap_or_else(|| REPLICA.to_string());
    let daemon = match scheduling.as_str() {
        REPLICA => false,
        DAEMON => true,
        other => {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid schedulingStrategy '{other}'. Valid values are: REPLICA, DAEMON."
            )))
        }
    };
    match input.deployment_controller.as_ref().map(|c| c.controller_type.as_str()) {
        None | Some("ECS") => {}
        Some(other @ ("CODE_DEPLOY" | "EXTERNAL")) => {
            return Err(EcsError::InvalidParameter(format!(
                "Deployment controller {other} is not available in Wharf yet; use ECS."
            )))
        }
        Some(other) => {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid deployment controller type '{other}'. Valid values are: ECS, CODE_DEPLOY, EXTERNAL."
            )))
        }
    }
    refuse_unsupported(
        input.service_registries.as_deref(),
        input.service_connect_configuration.as_ref(),
        input.volume_configurations.as_deref(),
        input.vpc_lattice_configurations.as_deref(),
        input.gateway_connectors.as_deref(),
    )?;
    if input.launch_type.as_deref() == Some("EC2") && input.platform_version.is_some() {
        return Err(EcsError::InvalidParameter(
            "The platform version must be null when specifying an EC2 launch type.".to_string(),
        ));
    }
    let desired = if daemon {
        if input.desired_count.is_some() {
            return Err(EcsError::InvalidParameter(
                "The daemon scheduling strategy does not support a desired count for services."
                    .to_string(),
            ));
        }
        if input
            .placement_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(EcsError::InvalidParameter(
                "The daemon scheduling strategy does not support placement strategies.".to_string(),
            ));
        }
        0
    } else {
        match input.desired_count {
            Some(count) if count >= 0 => count,
            Some(_) => {
                return Err(EcsError::InvalidParameter(
                    "desiredCount must be greater than or equal to 0.".to_string(),
                ))
            }
            None => {
                return Err(EcsError::InvalidParameter(
                    "desiredCount is required for services with the REPLICA scheduling strategy."
                        .to_string(),
                ))
            }
        }
    };
    let configuration = input.deployment_configuration.clone().unwrap_or_default();
    check_deployment_configuration(&configuration, daemon)?;
    check_propagate_tags(input.propagate_tags.as_deref())?;
    if input
        .health_check_grace_period_seconds
        .is_some_and(|g| !(0..=2_147_483_647).contains(&g))
    {
        return Err(EcsError::InvalidParameter(
            "healthCheckGracePeriodSeconds must be between 0 and 2147483647.".to_string(),
        ));
    }
    let tags = merge_tags(&[], input.tags.as_deref().unwrap_or_default())?;
    let task_definition = input.task_definition.clone().ok_or_else(|| {
        EcsError::InvalidParameter("TaskDefinition can not be blank.".to_string())
    })?;
    let (cluster_record, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    let capacity = resolve_capacity(
        &cluster_record,
        input.launch_type.as_deref(),
        input.capacity_provider_strategy.as_deref(),
    )?;
    check_platform_version(capacity.fargate, input.platform_version.as_deref())?;
    if capacity.fargate && daemon {
        // guessed wording; ECS refuses DAEMON services on Fargate.
        return Err(EcsError::InvalidParameter(
            "The daemon scheduling strategy is not supported with the FARGATE launch type."
                .to_string(),
        ));
    }
    // A strategy given, or the cluster's default one when neither is given, is the service's.
    let strategy = match (&input.launch_type, &input.capacity_provider_strategy) {
        (None, Some(given)) if !given.is_empty() => Some(given.clone()),
        (None, _) if capacity.fargate => cluster_record.default_capacity_provider_strategy.clone(),
        _ => None,
    };
    let launch_type = match (&strategy, capacity.fargate) {
        (Some(_), _) => None,
        (None, true) => Some("FARGATE".to_string()),
        (None, false) => Some("EC2".to_string()),
    };
    let definition = deployable_definition(
        ctx,
        &task_definition,
        input.network_configuration.as_ref(),
        true,
        capacity.fargate,
    )
    .await?;
    let constraints = input.placement_constraints.clone().unwrap_or_default();
    let strategies = input.placement_strategy.clone().unwrap_or_default();
    parse_placement(&definition, &constraints, &strategies)?;
    let load_balancers = load_balancers::validate(
        ctx,
        input.load_balancers.as_deref().unwrap_or_default(),
        &definition,
    )
    .await?;
    // ECS reports a grace period of 0 for services behind load balancers that set none.
    let grace = input
        .health_check_grace_period_seconds
        .or((!load_balancers.is_empty()).then_some(0));

    let arn = ctx.scope.service_arn(&cluster, &name);
    for _ in 0..16 {
        let existing = read_service(ctx, &cluster, &name).await?;
        let revision = existing.as_ref().map(|(_, r)| *r).unwrap_or(0);
        if let Some((record, _)) = &existing {
            match record.status() {
                ACTIVE => {
                    // The same clientToken again: the service it made, unchanged.
                    if input.client_token.is_some()
                        && record.wharf_client_token == input.client_token
                    {
                        let tasks = service_tasks(ctx, &cluster, &name).await?;
                        return Ok(json!({ "service": render(record, &tasks) }));
                    }
                    return Err(EcsError::InvalidParameter(
                        "Creation of service was not idempotent.".to_string(),
                    ));
                }
                DRAINING => {
                    return Err(EcsError::InvalidParameter(
                        "Unable to Start a service that is still Draining.".to_string(),
                    ))
                }
                _ => {}
            }
        }
        let now = ctx.now();
        let mut record = ServiceRecord {
            service: Service {
                service_arn: Some(arn.clone()),
                service_name: Some(name.clone()),
                cluster_arn: Some(ctx.scope.cluster_arn(&cluster)),
                load_balancers: Some(vec![]),
                service_registries: Some(vec![]),
                status: Some(ACTIVE.to_string()),
                desired_count: Some(desired),
                launch_type: launch_type.clone(),
                capacity_provider_strategy: strategy.clone(),
                platform_version: capacity.fargate.then(|| {
                    input
                        .platform_version
                        .clone()
                        .unwrap_or_else(|| "LATEST".to_string())
                }),
                platform_family: capacity.fargate.then(|| "Linux".to_string()),
                deployment_configuration: Some(with_defaults(configuration.clone(), daemon)),
                role_arn: input.role.clone(),
                events: Some(vec![]),
                created_at: Some(now),
                health_check_grace_period_seconds: grace,
                scheduling_strategy: Some(scheduling.clone()),
                deployment_controller: Some(DeploymentController {
                    controller_type: "ECS".to_string(),
                }),
                created_by: Some(ctx.scope.root_principal_arn()),
                enable_ecs_managed_tags: Some(input.enable_ecs_managed_tags),
                propagate_tags: Some(
                    input
                        .propagate_tags
                        .clone()
                        .unwrap_or_else(|| "NONE".to_string()),
                ),
                enable_execute_command: Some(input.enable_execute_command),
                availability_zone_rebalancing: input.availability_zone_rebalancing.clone(),
                ..Default::default()
            },
            wharf_client_token: input.client_token.clone(),
            ..Default::default()
        };
        let config = RevisionConfig {
            task_definition: definition.task_definition_arn.clone().unwrap_or_default(),
            placement_constraints: constraints.clone(),
            placement_strategy: strategies.clone(),
            network_configuration: input.network_configuration.clone(),
            load_balancers: load_balancers.clone(),
        };
        start_deployment(&mut record, &ctx.scope, &cluster, config, &definition, now);
        let extra = vec![tags::put_tags_op(&arn, &tags)];
        if write_service(ctx, &cluster, &record, revision, extra).await? {
            tracing::info!(cluster, service = %arn, desired, scheduling = %scheduling, "service created");
            let mut service = render(&record, &[]);
            service.tags = Some(tags);
            return Ok(json!({ "service": service }));
        }
    }
    Err(EcsError::Conflict(
        "The service is being changed concurrently; retry.".to_string(),
    ))
}

/// ECS reports the deployment configuration with its defaults filled in.
fn with_defaults(
    mut configuration: DeploymentConfiguration,
    daemon: bool,
) -> DeploymentConfiguration {
    let (min, max) = if daemon { (0, 100) } else { (100, 200) };
    configuration.minimum_healthy_percent.get_or_insert(min);
    configuration.maximum_percent.get_or_insert(max);
    configuration
        .deployment_circuit_breaker
        .get_or_insert_with(Default::default);
    configuration
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateServiceInput {
    cluster: Option<String>,
    service: String,
    desired_count: Option<i64>,
    task_definition: Option<String>,
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    deployment_configuration: Option<DeploymentConfiguration>,
    availability_zone_rebalancing: Option<String>,
    network_configuration: Option<NetworkConfiguration>,
    placement_constraints: Option<Vec<PlacementConstraint>>,
    placement_strategy: Option<Vec<PlacementStrategy>>,
    platform_version: Option<String>,
    #[serde(default)]
    force_new_deployment: bool,
    health_check_grace_period_seconds: Option<i64>,
    deployment_controller: Option<DeploymentController>,
    enable_execute_command: Option<bool>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    load_balancers: Option<Vec<LoadBalancer>>,
    propagate_tags: Option<String>,
    service_registries: Option<Vec<ServiceRegistry>>,
    service_connect_configuration: Option<Value>,
    volume_configurations: Option<Vec<Value>>,
    vpc_lattice_configurations: Option<Vec<Value>>,
    gateway_connectors: Option<Vec<Value>>,
}

pub async fn update_service(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: UpdateServiceInput = ctx.parse(input)?;
    refuse_unsupported(
        input.service_registries.as_deref(),
        input.service_connect_configuration.as_ref(),
        input.volume_configurations.as_deref(),
        input.vpc_lattice_configurations.as_deref(),
        input.gateway_connectors.as_deref(),
    )?;
    if input
        .deployment_controller
        .as_ref()
        .is_some_and(|c| c.controller_type != "ECS")
    {
        return Err(EcsError::InvalidParameter(
            "Updating the deployment controller is not available in Wharf yet; services use the ECS deployment controller.".to_string(),
        ));
    }
    check_propagate_tags(input.propagate_tags.as_deref())?;
    if input.desired_count.is_some_and(|c| c < 0) {
        return Err(EcsError::InvalidParameter(
            "desiredCount must be greater than or equal to 0.".to_string(),
        ));
    }
    let (cluster_record, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    for _ in 0..16 {
        let (mut record, revision) = read_service(ctx, &cluster, &input.service)
            .await?
            .ok_or(EcsError::ServiceNotFound)?;
        if record.status() != ACTIVE {
            return Err(EcsError::ServiceNotActive);
        }
        let fargate = record.service.launch_type.as_deref() == Some("FARGATE")
            || record
                .service
                .capacity_provider_strategy
                .as_ref()
                .is_some_and(|s| !s.is_empty());
        check_platform_version(fargate, input.platform_version.as_deref())?;
        // A Fargate service may move between FARGATE and FARGATE_SPOT, or change its platform
        // version; either starts a new deployment, as in ECS.
        let mut capacity_changed = false;
        if let Some(strategy) = input
            .capacity_provider_strategy
            .as_ref()
            .filter(|s| !s.is_empty())
        {
            if !fargate {
                return Err(EcsError::InvalidParameter(
                    "Moving a service from the EC2 launch type to a capacity provider strategy is not available in Wharf yet.".to_string(),
                ));
            }
            let providers = cluster_record
                .capacity_providers
                .clone()
                .unwrap_or_default();
            crate::ecs::clusters::validate_capacity_providers(&providers, strategy)?;
            if record.service.capacity_provider_strategy.as_ref() != Some(strategy) {
                record.service.capacity_provider_strategy = Some(strategy.clone());
                record.service.launch_type = None;
                capacity_changed = true;
            }
        }
        if let Some(version) = input.platform_version.as_ref() {
            if record.service.platform_version.as_ref() != Some(version) {
                record.service.platform_version = Some(version.clone());
                capacity_changed = true;
            }
        }
        let daemon = record.is_daemon();
        if daemon && input.desired_count.is_some() {
            return Err(EcsError::InvalidParameter(
                "The daemon scheduling strategy does not support a desired count for services."
                    .to_string(),
            ));
        }
        if daemon
            && input
                .placement_strategy
                .as_ref()
                .is_some_and(|s| !s.is_empty())
        {
            return Err(EcsError::InvalidParameter(
                "The daemon scheduling strategy does not support placement strategies.".to_string(),
            ));
        }
        if let Some(configuration) = &input.deployment_configuration {
            check_deployment_configuration(configuration, daemon)?;
            let current = record
                .service
                .deployment_configuration
                .clone()
                .unwrap_or_default();
            // Members left out keep their values, as in ECS.
            let merged = DeploymentConfiguration {
                deployment_circuit_breaker: configuration
                    .deployment_circuit_breaker
                    .clone()
                    .or(current.deployment_circuit_breaker),
                maximum_percent: configuration.maximum_percent.or(current.maximum_percent),
                minimum_healthy_percent: configuration
                    .minimum_healthy_percent
                    .or(current.minimum_healthy_percent),
                alarms: configuration.alarms.clone().or(current.alarms),
                strategy: configuration.strategy.clone().or(current.strategy),
                bake_time_in_minutes: configuration
                    .bake_time_in_minutes
                    .or(current.bake_time_in_minutes),
                lifecycle_hooks: configuration
                    .lifecycle_hooks
                    .clone()
                    .or(current.lifecycle_hooks),
                linear_configuration: configuration
                    .linear_configuration
                    .clone()
                    .or(current.linear_configuration),
                canary_configuration: configuration
                    .canary_configuration
                    .clone()
                    .or(current.canary_configuration),
                early_success_criteria: configuration
                    .early_success_criteria
                    .clone()
                    .or(current.early_success_criteria),
            };
            record.service.deployment_configuration = Some(with_defaults(merged, daemon));
        }
        if let Some(count) = input.desired_count {
            record.service.desired_count = Some(count);
        }
        if let Some(grace) = input.health_check_grace_period_seconds {
            if !(0..=2_147_483_647).contains(&grace) {
                return Err(EcsError::InvalidParameter(
                    "healthCheckGracePeriodSeconds must be between 0 and 2147483647.".to_string(),
                ));
            }
            record.service.health_check_grace_period_seconds = Some(grace);
        }
        if let Some(value) = input.enable_execute_command {
            record.service.enable_execute_command = Some(value);
        }
        if let Some(value) = input.enable_ecs_managed_tags {
            record.service.enable_ecs_managed_tags = Some(value);
        }
        if let Some(value) = &input.propagate_tags {
            record.service.propagate_tags = Some(value.clone());
        }
        if let Some(value) = &input.availability_zone_rebalancing {
            record.service.availability_zone_rebalancing = Some(value.clone());
        }
        // What the next deployment would run: anything different starts one.
        let current = RevisionConfig {
            task_definition: record.service.task_definition.clone().unwrap_or_default(),
            placement_constraints: record
                .service
                .placement_constraints
                .clone()
                .unwrap_or_default(),
            placement_strategy: record
                .service
                .placement_strategy
                .clone()
                .unwrap_or_default(),
            network_configuration: record.service.network_configuration.clone(),
            load_balancers: record.service.load_balancers.clone().unwrap_or_default(),
        };
        let network = input
            .network_configuration
            .clone()
            .or(current.network_configuration.clone());
        // Redeploying the revision the service already runs is fine even if it was
        // deregistered since; only a newly named one must be ACTIVE.
        let definition = deployable_definition(
            ctx,
            input
                .task_definition
                .as_deref()
                .unwrap_or(&current.task_definition),
            network.as_ref(),
            input.task_definition.is_some(),
            fargate,
        )
        .await?;
        let next = RevisionConfig {
            task_definition: definition.task_definition_arn.clone().unwrap_or_default(),
            placement_constraints: input
                .placement_constraints
                .clone()
                .unwrap_or_else(|| current.placement_constraints.clone()),
            placement_strategy: input
                .placement_strategy
                .clone()
                .unwrap_or_else(|| current.placement_strategy.clone()),
            network_configuration: network,
            load_balancers: current.load_balancers.clone(),
        };
        parse_placement(
            &definition,
            &next.placement_constraints,
            &next.placement_strategy,
        )?;
        // New load balancers, or a new revision behind the current ones, are checked as
        // CreateService checks them; an empty list detaches the service.
        let mut next = next;
        if input.load_balancers.is_some() || input.task_definition.is_some() {
            let given = input
                .load_balancers
                .as_deref()
                .unwrap_or(&current.load_balancers);
            next.load_balancers = load_balancers::validate(ctx, given, &definition).await?;
            if !next.load_balancers.is_empty() {
                record
                    .service
                    .health_check_grace_period_seconds
                    .get_or_insert(0);
            }
        }
        let now = ctx.now();
        if next != current || input.force_new_deployment || capacity_changed {
            let id = start_deployment(&mut record, &ctx.scope, &cluster, next, &definition, now);
            tracing::info!(cluster, service = record.name(), deployment = %id, "deployment started");
        } else {
            let desired = record.service.desired_count;
            if let Some(primary) = record.primary_mut() {
                primary.deployment.desired_count = desired;
                primary.deployment.updated_at = Some(now);
            }
        }
        // A changed desired count makes the service unsteady until the scheduler says so.
        record.wharf_steady = false;
        if write_service(ctx, &cluster, &record, revision, vec![]).await? {
            let tasks = service_tasks(ctx, &cluster, record.name()).await?;
            return Ok(json!({ "service": render(&record, &tasks) }));
        }
    }
    Err(EcsError::Conflict(
        "The service is being changed concurrently; retry.".to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteServiceInput {
    cluster: Option<String>,
    service: String,
    force: Option<bool>,
}

pub async fn delete_service(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DeleteServiceInput = ctx.parse(input)?;
    let (cluster_record, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    for _ in 0..16 {
        let (mut record, revision) = read_service(ctx, &cluster, &input.service)
            .await?
            .ok_or(EcsError::ServiceNotFound)?;
        let tasks = service_tasks(ctx, &cluster, record.name()).await?;
        match record.status() {
            ACTIVE => {}
            DRAINING => return Ok(json!({ "service": render(&record, &tasks) })),
            _ => return Err(EcsError::ServiceNotActive),
        }
        if !record.is_daemon()
            && record.service.desired_count.unwrap_or(0) > 0
            && !input.force.unwrap_or(false)
        {
            return Err(EcsError::InvalidParameter(
                "The service cannot be stopped while it is scaled above 0.".to_string(),
            ));
        }
        record.service.status = Some(DRAINING.to_string());
        record.service.desired_count = Some(0);
        record.wharf_steady = false;
        if write_service(ctx, &cluster, &record, revision, vec![]).await? {
            tracing::info!(
                cluster,
                service = record.name(),
                "service deleted; draining"
            );
            return Ok(json!({ "service": render(&record, &tasks) }));
        }
    }
    Err(EcsError::Conflict(
        "The service is being changed concurrently; retry.".to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServicesInput {
    cluster: Option<String>,
    services: Vec<String>,
    include: Option<Vec<String>>,
}

pub async fn describe_services(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DescribeServicesInput = ctx.parse(input)?;
    if input.services.is_empty() {
        return Err(EcsError::InvalidParameter(
            "Services cannot be empty.".to_string(),
        ));
    }
    if input.services.len() > 10 {
        return Err(EcsError::InvalidParameter(
            "Services cannot have more than 10 elements.".to_string(),
        ));
    }
    let include = input.include.unwrap_or_default();
    if let Some(bad) = include.iter().find(|i| *i != "TAGS") {
        return Err(EcsError::InvalidParameter(format!(
            "Invalid include value '{bad}'. Valid values are: TAGS."
        )));
    }
    let (cluster_record, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for given in &input.services {
        match read_service(ctx, &cluster, given).await? {
            Some((record, _)) => {
                let tasks = service_tasks(ctx, &cluster, record.name()).await?;
                let mut service = render(&record, &tasks);
                if !include.is_empty() {
                    let arn = service.service_arn.clone().unwrap_or_default();
                    service.tags = Some(tags::get_tags(ctx, &arn).await?);
                }
                services.push(service);
            }
            None => failures.push(json!({
                "arn": if given.starts_with("arn:") {
                    given.clone()
                } else {
                    ctx.scope.service_arn(&cluster, given)
                },
                "reason": "MISSING",
            })),
        }
    }
    Ok(json!({ "services": services, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListServicesInput {
    cluster: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    launch_type: Option<String>,
    scheduling_strategy: Option<String>,
    resource_management_type: Option<String>,
}

pub async fn list_services(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListServicesInput = ctx.parse(input)?;
    if let Some(launch_type) = &input.launch_type {
        if !["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"].contains(&launch_type.as_str()) {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid launchType '{launch_type}'. Valid values are: EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES."
            )));
        }
    }
    if let Some(strategy) = &input.scheduling_strategy {
        if strategy != REPLICA && strategy != DAEMON {
            return Err(EcsError::InvalidParameter(format!(
                "Invalid schedulingStrategy '{strategy}'. Valid values are: REPLICA, DAEMON."
            )));
        }
    }
    let (cluster_record, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    let prefix = keys::service_cluster_prefix(&cluster);
    // Services Wharf creates are all customer-managed.
    let managed_by_ecs = input.resource_management_type.as_deref() == Some("ECS");
    let items: Vec<(String, String)> = ctx
        .range_json::<ServiceRecord>(&prefix)
        .await?
        .into_iter()
        .filter(|(_, r)| r.status() == ACTIVE && !managed_by_ecs)
        .filter(|(_, r)| {
            input
                .launch_type
                .as_ref()
                .is_none_or(|l| r.service.launch_type.as_ref() == Some(l))
        })
        .filter(|(_, r)| {
            input
                .scheduling_strategy
                .as_ref()
                .is_none_or(|s| r.service.scheduling_strategy.as_ref() == Some(s))
        })
        .map(|(key, r)| {
            (
                key[prefix.len()..].to_string(),
                r.service.service_arn.unwrap_or_default(),
            )
        })
        .collect();
    let scope = format!(
        "ListServices/{cluster}/{}/{}",
        input.launch_type.as_deref().unwrap_or(""),
        input.scheduling_strategy.as_deref().unwrap_or("")
    );
    // ECS answers 10 services per page unless asked for up to 100.
    let (arns, next) = paging::page(
        &ctx.tokens,
        &scope,
        items,
        input.next_token.as_deref(),
        Some(input.max_results.unwrap_or(10)),
        100,
    )?;
    Ok(paging::output("serviceArns", arns, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListServicesByNamespaceInput {
    namespace: String,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// Services of a Service Connect namespace. Wharf has no Cloud Map yet, so a namespace exists
/// when a cluster names it as its Service Connect default; services join one only through
/// Service Connect, which is not available yet, so the list is empty but well-formed.
pub async fn list_services_by_namespace(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListServicesByNamespaceInput = ctx.parse(input)?;
    let namespace = input.namespace.clone();
    let matches = |n: &str| n == namespace || n.rsplit('/').next() == Some(namespace.as_str());
    let clusters = ctx
        .range_json::<model::ecs::cluster::Cluster>(keys::CLUSTER_PREFIX)
        .await?;
    let known = clusters.iter().any(|(_, c)| {
        c.status.as_deref() == Some(ACTIVE)
            && c.service_connect_defaults
                .as_ref()
                .and_then(|d| d.namespace.as_deref())
                .is_some_and(matches)
    });
    if !known {
        return Err(EcsError::NamespaceNotFound(
            "Namespace not found.".to_string(),
        ));
    }
    let mut items: Vec<(String, String)> = Vec::new();
    for (key, record) in ctx
        .range_json::<ServiceRecord>(keys::SERVICE_PREFIX)
        .await?
    {
        let in_namespace = record
            .primary()
            .and_then(|p| p.deployment.service_connect_configuration.as_ref())
            .and_then(|c| c.get("namespace"))
            .and_then(Value::as_str)
            .is_some_and(matches);
        if record.status() == ACTIVE && in_namespace {
            items.push((key, record.service.service_arn.unwrap_or_default()));
        }
    }
    let (arns, next) = paging::page(
        &ctx.tokens,
        &format!("ListServicesByNamespace/{namespace}"),
        items,
        input.next_token.as_deref(),
        Some(input.max_results.unwrap_or(10)),
        100,
    )?;
    Ok(paging::output("serviceArns", arns, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_services_refuse_more_than_100_percent() {
        let configuration = DeploymentConfiguration {
            maximum_percent: Some(200),
            ..Default::default()
        };
        assert!(check_deployment_configuration(&configuration, false).is_ok());
        let error = check_deployment_configuration(&configuration, true).unwrap_err();
        assert!(error
            .to_string()
            .contains("does not support values above 100"));
    }

    #[test]
    fn unsupported_features_are_refused_with_a_reason() {
        let error = refuse_unsupported(Some(&[ServiceRegistry::default()]), None, None, None, None)
            .unwrap_err();
        assert!(error.to_string().contains("not available in Wharf yet"));
        assert!(refuse_unsupported(Some(&[]), None, None, None, None).is_ok());
    }
}
