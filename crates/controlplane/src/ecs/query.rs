//! The cluster query language for ListContainerInstances `filter`, evaluated with the
//! scheduler's parser against the same view of an instance that placement uses.

use scheduler::Expression;

use super::cluster_state::{ClusterState, StoredInstance};
use super::{placement, EcsError};

pub struct InstanceFilter(Expression);

impl InstanceFilter {
    pub fn parse(expression: &str) -> Result<InstanceFilter, EcsError> {
        Expression::parse(expression)
            .map(InstanceFilter)
            .map_err(|error| EcsError::InvalidParameter(error.to_string()))
    }

    pub fn matches(&self, state: &ClusterState, instance: &StoredInstance) -> bool {
        self.0
            .matches(&placement::scheduler_instance(state, instance))
    }
}
