//! Container instances: the hosts an agent runs on, with registered and remaining resources.
//!
//! ```text
//! status: REGISTERING → ACTIVE ⇄ DRAINING → DEREGISTERING → INACTIVE
//! ```
//! `agentConnected` is observed (the agent's heartbeat session), never set by users.

use super::attribute::Attribute;
use super::tag::Tag;

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstance {
    pub container_instance_arn: Option<String>,
    pub ec2_instance_id: Option<String>,
    pub capacity_provider_name: Option<String>,
    pub version: Option<i64>,
    pub version_info: Option<VersionInfo>,
    pub remaining_resources: Option<Vec<Resource>>,
    pub registered_resources: Option<Vec<Resource>>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
    pub agent_connected: Option<bool>,
    pub running_tasks_count: Option<i64>,
    pub pending_tasks_count: Option<i64>,
    pub agent_update_status: Option<String>,
    pub attributes: Option<Vec<Attribute>>,
    pub registered_at: Option<f64>,
    pub attachments: Option<Vec<serde_json::Value>>,
    pub tags: Option<Vec<Tag>>,
    pub health_status: Option<serde_json::Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub agent_version: Option<String>,
    pub agent_hash: Option<String>,
    pub docker_version: Option<String>,
}

/// A resource of an instance: CPU and MEMORY are INTEGER, PORTS and PORTS_UDP are STRINGSET.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    pub double_value: Option<f64>,
    pub long_value: Option<i64>,
    pub integer_value: Option<i64>,
    pub string_set_value: Option<Vec<String>>,
}

impl Resource {
    pub fn integer(name: &str, value: i64) -> Self {
        Resource {
            name: Some(name.to_string()),
            resource_type: Some("INTEGER".to_string()),
            double_value: Some(0.0),
            long_value: Some(0),
            integer_value: Some(value),
            string_set_value: None,
        }
    }

    pub fn string_set(name: &str, values: Vec<String>) -> Self {
        Resource {
            name: Some(name.to_string()),
            resource_type: Some("STRINGSET".to_string()),
            double_value: Some(0.0),
            long_value: Some(0),
            integer_value: Some(0),
            string_set_value: Some(values),
        }
    }
}

/// The integer value of a named resource in a list (0 when absent).
pub fn integer_resource(resources: &[Resource], name: &str) -> i64 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.integer_value)
        .unwrap_or(0)
}

/// The string set of a named resource in a list (empty when absent).
pub fn string_set_resource(resources: &[Resource], name: &str) -> Vec<String> {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.string_set_value.clone())
        .unwrap_or_default()
}
