//! Clusters: the stored record and the `Cluster` wire shape with its settings and
//! configuration.

use super::tag::Tag;
use super::KeyValuePair;
use crate::validation::Problem;

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub cluster_arn: Option<String>,
    pub cluster_name: Option<String>,
    pub configuration: Option<ClusterConfiguration>,
    /// ACTIVE, PROVISIONING, DEPROVISIONING, FAILED or INACTIVE.
    pub status: Option<String>,
    pub registered_container_instances_count: Option<i64>,
    pub running_tasks_count: Option<i64>,
    pub pending_tasks_count: Option<i64>,
    pub active_services_count: Option<i64>,
    pub statistics: Option<Vec<KeyValuePair>>,
    pub tags: Option<Vec<Tag>>,
    pub settings: Option<Vec<ClusterSetting>>,
    pub capacity_providers: Option<Vec<String>>,
    pub default_capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    pub attachments: Option<Vec<serde_json::Value>>,
    pub attachments_status: Option<String>,
    pub service_connect_defaults: Option<ClusterServiceConnectDefaults>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSetting {
    pub name: Option<String>,
    pub value: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfiguration {
    pub execute_command_configuration: Option<ExecuteCommandConfiguration>,
    pub managed_storage_configuration: Option<ManagedStorageConfiguration>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteCommandConfiguration {
    pub kms_key_id: Option<String>,
    /// NONE, DEFAULT or OVERRIDE.
    pub logging: Option<String>,
    pub log_configuration: Option<ExecuteCommandLogConfiguration>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteCommandLogConfiguration {
    pub cloud_watch_log_group_name: Option<String>,
    pub cloud_watch_encryption_enabled: Option<bool>,
    pub s3_bucket_name: Option<String>,
    pub s3_encryption_enabled: Option<bool>,
    pub s3_key_prefix: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStorageConfiguration {
    pub kms_key_id: Option<String>,
    pub fargate_ephemeral_storage_kms_key_id: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    pub weight: Option<i64>,
    pub base: Option<i64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceConnectDefaults {
    pub namespace: Option<String>,
}

/// AWS: "Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are
/// allowed."
pub fn validate_cluster_name(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid_parameter(
            "Cluster name can only contain up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens.",
        ))
    }
}

/// Settings accepted on clusters: only `containerInsights` exists today.
pub fn validate_cluster_settings(settings: &[ClusterSetting]) -> Result<(), Problem> {
    for setting in settings {
        match setting.name.as_deref() {
            Some("containerInsights") => {}
            other => {
                return Err(Problem::invalid_parameter(format!(
                    "Invalid cluster setting name '{}'. Valid names are: containerInsights.",
                    other.unwrap_or("")
                )))
            }
        }
        match setting.value.as_deref() {
            Some("enabled" | "disabled" | "enhanced") => {}
            other => {
                return Err(Problem::invalid_parameter(format!(
                    "Invalid value '{}' for cluster setting containerInsights. Valid values are: enabled, disabled, enhanced.",
                    other.unwrap_or("")
                )))
            }
        }
    }
    Ok(())
}
