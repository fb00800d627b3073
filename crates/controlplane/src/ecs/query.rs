//! The cluster query language for ListContainerInstances `filter`. Wired to the scheduler's
//! parser and evaluator when that crate lands in this workspace.

use super::cluster_state::{ClusterState, StoredInstance};
use super::EcsError;

pub struct InstanceFilter;

impl InstanceFilter {
    pub fn parse(_expression: &str) -> Result<InstanceFilter, EcsError> {
        Err(EcsError::InvalidParameter(
            "Container instance filters are not supported yet.".to_string(),
        ))
    }

    pub fn matches(&self, _state: &ClusterState, _instance: &StoredInstance) -> bool {
        false
    }
}
