//! ECS resource types with the shapes of the botocore model (`ecs/2014-11-13`), serialized in
//! the wire's camelCase so handlers can store and return them as they are.

pub mod account_setting;
pub mod attribute;
pub mod cluster;
pub mod container_instance;
pub mod service;
pub mod tag;
pub mod task;
pub mod task_definition;

/// ECS's generic name/value pair (`KeyValuePair`), used for environment, statistics, ….
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValuePair {
    pub name: Option<String>,
    pub value: Option<String>,
}
