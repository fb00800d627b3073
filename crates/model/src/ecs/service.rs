//! Services: the `Service` wire shape with its `deployments[]` and `events[]`, the deployment
//! configuration (minimum healthy / maximum percent, the deployment circuit breaker, alarms),
//! the service deployment and service revision shapes of the newer deployment APIs, and the
//! arithmetic ECS applies to them (rollout bounds, the circuit breaker threshold).
//!
//! ```text
//! service status:     ACTIVE ──DeleteService──> DRAINING ──(no task left)──> INACTIVE
//! deployment status:  PRIMARY ──(a newer deployment starts)──> ACTIVE ──(no task left)──> gone
//! rolloutState:       IN_PROGRESS ──steady──> COMPLETED
//!                          └──circuit breaker──> FAILED
//! ```
//!
//! Shapes follow botocore's `ecs/2014-11-13` model member for member; members Wharf does not
//! interpret yet (service connect, VPC lattice, lifecycle hooks, …) are kept as raw JSON so
//! they round-trip unchanged.

use serde_json::Value;

use super::cluster::CapacityProviderStrategyItem;
use super::tag::Tag;
use crate::validation::Problem;

/// `Service.status` values.
pub const ACTIVE: &str = "ACTIVE";
pub const DRAINING: &str = "DRAINING";
pub const INACTIVE: &str = "INACTIVE";

/// `Deployment.status` values.
pub const PRIMARY: &str = "PRIMARY";
/// An older deployment whose tasks are being replaced (same word as the service status).
pub const DEPLOYMENT_ACTIVE: &str = "ACTIVE";

/// `Deployment.rolloutState` values.
pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const COMPLETED: &str = "COMPLETED";
pub const FAILED: &str = "FAILED";

pub const REPLICA: &str = "REPLICA";
pub const DAEMON: &str = "DAEMON";

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub service_arn: Option<String>,
    pub service_name: Option<String>,
    pub cluster_arn: Option<String>,
    pub load_balancers: Option<Vec<LoadBalancer>>,
    pub service_registries: Option<Vec<ServiceRegistry>>,
    pub status: Option<String>,
    pub desired_count: Option<i64>,
    pub running_count: Option<i64>,
    pub pending_count: Option<i64>,
    pub launch_type: Option<String>,
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    pub platform_version: Option<String>,
    pub platform_family: Option<String>,
    pub task_definition: Option<String>,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    pub task_sets: Option<Vec<Value>>,
    pub deployments: Option<Vec<Deployment>>,
    pub role_arn: Option<String>,
    /// Newest first, at most 100.
    pub events: Option<Vec<ServiceEvent>>,
    pub created_at: Option<f64>,
    pub current_service_deployment: Option<String>,
    pub current_service_revisions: Option<Vec<ServiceCurrentRevisionSummary>>,
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    pub network_configuration: Option<NetworkConfiguration>,
    pub health_check_grace_period_seconds: Option<i64>,
    pub scheduling_strategy: Option<String>,
    pub deployment_controller: Option<DeploymentController>,
    pub tags: Option<Vec<Tag>>,
    pub created_by: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: Option<bool>,
    pub propagate_tags: Option<String>,
    pub enable_execute_command: Option<bool>,
    pub availability_zone_rebalancing: Option<String>,
    pub resource_management_type: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `ecs-svc/` and 19 digits.
    pub id: Option<String>,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: Option<String>,
    pub task_definition: Option<String>,
    pub desired_count: Option<i64>,
    pub pending_count: Option<i64>,
    pub running_count: Option<i64>,
    pub failed_tasks: Option<i64>,
    pub created_at: Option<f64>,
    pub updated_at: Option<f64>,
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    pub launch_type: Option<String>,
    pub platform_version: Option<String>,
    pub platform_family: Option<String>,
    pub network_configuration: Option<NetworkConfiguration>,
    pub rollout_state: Option<String>,
    pub rollout_state_reason: Option<String>,
    pub service_connect_configuration: Option<Value>,
    pub service_connect_resources: Option<Vec<Value>>,
    pub volume_configurations: Option<Vec<Value>>,
    pub fargate_ephemeral_storage: Option<Value>,
    pub vpc_lattice_configurations: Option<Vec<Value>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    pub id: Option<String>,
    pub created_at: Option<f64>,
    pub message: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    pub deployment_circuit_breaker: Option<DeploymentCircuitBreaker>,
    pub maximum_percent: Option<i64>,
    pub minimum_healthy_percent: Option<i64>,
    pub alarms: Option<DeploymentAlarms>,
    /// ROLLING, BLUE_GREEN, LINEAR or CANARY.
    pub strategy: Option<String>,
    pub bake_time_in_minutes: Option<i64>,
    pub lifecycle_hooks: Option<Vec<Value>>,
    pub linear_configuration: Option<Value>,
    pub canary_configuration: Option<Value>,
    pub early_success_criteria: Option<Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentCircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
    pub reset_on_healthy_task: Option<bool>,
    pub threshold_configuration: Option<ThresholdConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdConfiguration {
    /// COUNT, BOUNDED_PERCENT or UNBOUNDED_PERCENT.
    #[serde(rename = "type")]
    pub threshold_type: String,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentAlarms {
    pub alarm_names: Vec<String>,
    pub rollback: bool,
    pub enable: bool,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub target_group_arn: Option<String>,
    pub load_balancer_name: Option<String>,
    pub container_name: Option<String>,
    pub container_port: Option<i64>,
    pub advanced_configuration: Option<Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRegistry {
    pub registry_arn: Option<String>,
    pub port: Option<i64>,
    pub container_name: Option<String>,
    pub container_port: Option<i64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfiguration {
    pub awsvpc_configuration: Option<AwsVpcConfiguration>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AwsVpcConfiguration {
    pub subnets: Vec<String>,
    pub security_groups: Option<Vec<String>>,
    /// ENABLED or DISABLED.
    pub assign_public_ip: Option<String>,
}

/// A service's (or RunTask's) placement constraint as the API carries it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlacementConstraint {
    /// distinctInstance or memberOf.
    #[serde(rename = "type")]
    pub constraint_type: Option<String>,
    pub expression: Option<String>,
}

/// A placement strategy as the API carries it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStrategy {
    /// random, spread or binpack.
    #[serde(rename = "type")]
    pub strategy_type: Option<String>,
    pub field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentController {
    /// ECS, CODE_DEPLOY or EXTERNAL.
    #[serde(rename = "type")]
    pub controller_type: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCurrentRevisionSummary {
    pub arn: Option<String>,
    pub requested_task_count: Option<i64>,
    pub running_task_count: Option<i64>,
    pub pending_task_count: Option<i64>,
}

/// DescribeServiceDeployments' `ServiceDeployment`.
///
/// ```text
/// status: PENDING → IN_PROGRESS → SUCCESSFUL
///                        ├──(a newer deployment)──> STOPPED
///                        └──(circuit breaker / StopServiceDeployment with rollback)
///                             → ROLLBACK_IN_PROGRESS → ROLLBACK_SUCCESSFUL | ROLLBACK_FAILED
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeployment {
    pub service_deployment_arn: Option<String>,
    pub service_arn: Option<String>,
    pub cluster_arn: Option<String>,
    pub created_at: Option<f64>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub stopped_at: Option<f64>,
    pub updated_at: Option<f64>,
    pub source_service_revisions: Option<Vec<ServiceRevisionSummary>>,
    pub target_service_revision: Option<ServiceRevisionSummary>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
    pub lifecycle_stage: Option<String>,
    pub lifecycle_hook_details: Option<Vec<Value>>,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    pub rollback: Option<Rollback>,
    pub deployment_circuit_breaker: Option<ServiceDeploymentCircuitBreaker>,
    pub alarms: Option<ServiceDeploymentAlarms>,
}

/// ListServiceDeployments' `ServiceDeploymentBrief`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentBrief {
    pub service_deployment_arn: Option<String>,
    pub service_arn: Option<String>,
    pub cluster_arn: Option<String>,
    pub started_at: Option<f64>,
    pub created_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub target_service_revision_arn: Option<String>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
}

impl ServiceDeployment {
    pub fn brief(&self) -> ServiceDeploymentBrief {
        ServiceDeploymentBrief {
            service_deployment_arn: self.service_deployment_arn.clone(),
            service_arn: self.service_arn.clone(),
            cluster_arn: self.cluster_arn.clone(),
            started_at: self.started_at,
            created_at: self.created_at,
            finished_at: self.finished_at,
            target_service_revision_arn: self
                .target_service_revision
                .as_ref()
                .and_then(|t| t.arn.clone()),
            status: self.status.clone(),
            status_reason: self.status_reason.clone(),
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRevisionSummary {
    pub arn: Option<String>,
    pub requested_task_count: Option<i64>,
    pub running_task_count: Option<i64>,
    pub pending_task_count: Option<i64>,
    pub requested_test_traffic_weight: Option<f64>,
    pub requested_production_traffic_weight: Option<f64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    pub reason: Option<String>,
    pub started_at: Option<f64>,
    pub service_revision_arn: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentCircuitBreaker {
    /// TRIGGERED, MONITORING, MONITORING_COMPLETE or DISABLED.
    pub status: Option<String>,
    pub failure_count: Option<i64>,
    pub threshold: Option<i64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentAlarms {
    pub status: Option<String>,
    pub alarm_names: Option<Vec<String>>,
    pub triggered_alarm_names: Option<Vec<String>>,
}

/// DescribeServiceRevisions' `ServiceRevision`: what one deployment runs, immutable.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRevision {
    pub service_revision_arn: Option<String>,
    pub service_arn: Option<String>,
    pub cluster_arn: Option<String>,
    pub task_definition: Option<String>,
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    pub launch_type: Option<String>,
    pub platform_version: Option<String>,
    pub platform_family: Option<String>,
    pub load_balancers: Option<Vec<LoadBalancer>>,
    pub service_registries: Option<Vec<ServiceRegistry>>,
    pub network_configuration: Option<NetworkConfiguration>,
    pub container_images: Option<Vec<ContainerImage>>,
    pub guard_duty_enabled: Option<bool>,
    pub service_connect_configuration: Option<Value>,
    pub volume_configurations: Option<Vec<Value>>,
    pub fargate_ephemeral_storage: Option<Value>,
    pub created_at: Option<f64>,
    pub vpc_lattice_configurations: Option<Vec<Value>>,
    pub resolved_configuration: Option<Value>,
    pub ecs_managed_resources: Option<Value>,
    pub overrides: Option<Value>,
    pub gateway_connectors: Option<Vec<Value>>,
    pub monitoring: Option<Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    pub container_name: Option<String>,
    pub image_digest: Option<String>,
    pub image: Option<String>,
}

/// AWS: "Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are
/// allowed." (the rule of cluster names, which service names share).
pub fn validate_service_name(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid_parameter(
            "Service name can only contain up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens.",
        ))
    }
}

/// How many tasks a rolling replacement must keep healthy and may run at once: ECS rounds
/// `minimumHealthyPercent` up and `maximumPercent` down ("the minimum … rounded up to the nearest
/// integer", "the maximum … rounded down").
pub fn rollout_bounds(
    desired: i64,
    minimum_healthy_percent: i64,
    maximum_percent: i64,
) -> (i64, i64) {
    let desired = desired.max(0);
    let lower = (desired * minimum_healthy_percent.max(0) + 99) / 100;
    let upper = desired * maximum_percent.max(0) / 100;
    (lower, upper)
}

/// The failed-task count at which the deployment circuit breaker fails a deployment. Without
/// a `thresholdConfiguration`: half the desired count, rounded up, bounded to 3..=200, as ECS
/// documents. `COUNT` is the count itself; `BOUNDED_PERCENT` a percentage of the desired count
/// bounded the same way; `UNBOUNDED_PERCENT` a percentage with a floor of 1.
pub fn circuit_breaker_threshold(breaker: &DeploymentCircuitBreaker, desired: i64) -> i64 {
    let percent = |p: i64| (desired.max(0) * p.max(0) + 99) / 100;
    match &breaker.threshold_configuration {
        None => percent(50).clamp(3, 200),
        Some(t) => match t.threshold_type.as_str() {
            "COUNT" => t.value.max(1),
            "UNBOUNDED_PERCENT" => percent(t.value).max(1),
            _ => percent(t.value).clamp(3, 200),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_round_the_minimum_up_and_the_maximum_down() {
        assert_eq!(rollout_bounds(3, 100, 200), (3, 6));
        assert_eq!(rollout_bounds(4, 50, 100), (2, 4));
        assert_eq!(rollout_bounds(3, 50, 150), (2, 4));
        assert_eq!(rollout_bounds(5, 33, 125), (2, 6));
        assert_eq!(rollout_bounds(0, 100, 200), (0, 0));
        assert_eq!(rollout_bounds(1, 0, 100), (0, 1));
    }

    #[test]
    fn the_default_threshold_is_half_the_desired_count_bounded_to_3_and_200() {
        let breaker = DeploymentCircuitBreaker {
            enable: true,
            rollback: true,
            ..Default::default()
        };
        assert_eq!(circuit_breaker_threshold(&breaker, 1), 3);
        assert_eq!(circuit_breaker_threshold(&breaker, 6), 3);
        assert_eq!(circuit_breaker_threshold(&breaker, 7), 4);
        assert_eq!(circuit_breaker_threshold(&breaker, 20), 10);
        assert_eq!(circuit_breaker_threshold(&breaker, 1000), 200);
        let count = DeploymentCircuitBreaker {
            threshold_configuration: Some(ThresholdConfiguration {
                threshold_type: "COUNT".into(),
                value: 1,
            }),
            ..breaker.clone()
        };
        assert_eq!(circuit_breaker_threshold(&count, 50), 1);
        let unbounded = DeploymentCircuitBreaker {
            threshold_configuration: Some(ThresholdConfiguration {
                threshold_type: "UNBOUNDED_PERCENT".into(),
                value: 10,
            }),
            ..breaker
        };
        assert_eq!(circuit_breaker_threshold(&unbounded, 5), 1);
        assert_eq!(circuit_breaker_threshold(&unbounded, 5000), 500);
    }

    #[test]
    fn service_names_follow_the_cluster_name_rule() {
        assert!(validate_service_name("web-1_a").is_ok());
        assert!(validate_service_name("").is_err());
        assert!(validate_service_name("a b").is_err());
        assert!(validate_service_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn wire_names_match_the_model() {
        let service = Service {
            enable_ecs_managed_tags: Some(true),
            ..Default::default()
        };
        let json = serde_json::to_value(&service).unwrap();
        assert_eq!(json["enableECSManagedTags"], true);
        let constraint: PlacementConstraint =
            serde_json::from_value(serde_json::json!({"type": "memberOf", "expression": "x"}))
                .unwrap();
        assert_eq!(constraint.constraint_type.as_deref(), Some("memberOf"));
    }
}
