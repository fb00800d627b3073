//! The ECS error family and its mapping to AWS's wire codes: the one place where an ECS
//! failure becomes an `__type` and an HTTP status.

use model::validation::{Problem, ProblemKind, Problems};
use protocol::AwsError;
use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    /// The request is invalid in a way AWS reports as `ClientException`.
    #[error("{0}")]
    Client(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("Cluster not found.")]
    ClusterNotFound,
    #[error("The Cluster cannot be deleted while Container Instances are active or draining.")]
    ClusterContainsContainerInstances,
    #[error("The Cluster cannot be deleted while Services are active.")]
    ClusterContainsServices,
    #[error("The Cluster cannot be deleted while Tasks are active.")]
    ClusterContainsTasks,
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    TargetNotFound(String),
    #[error("{0}")]
    AttributeLimitExceeded(String),
    #[error("{0}")]
    LimitExceeded(String),
    /// The body did not match the operation's input shape.
    #[error("{0}")]
    Serialization(String),
    /// Too many writers raced on the same keys; the client may retry.
    #[error("{0}")]
    Conflict(String),
    #[error("store failure: {0}")]
    Store(#[from] StoreError),
    #[error("Service not found.")]
    ServiceNotFound,
    #[error("Service was not ACTIVE.")]
    ServiceNotActive,
    #[error("{0}")]
    ServiceDeploymentNotFound(String),
    #[error("{0}")]
    NamespaceNotFound(String),
    /// The request conflicts with the resource's state (`ConflictException`).
    #[error("{0}")]
    ResourceConflict(String),
    /// A Fargate platform version that does not exist (`PlatformUnknownException`).
    #[error("{0}")]
    PlatformUnknown(String),
}

impl From<Problem> for EcsError {
    fn from(problem: Problem) -> Self {
        match problem.kind {
            ProblemKind::Client => EcsError::Client(problem.message),
            ProblemKind::InvalidParameter => EcsError::InvalidParameter(problem.message),
        }
    }
}

impl From<Problems> for EcsError {
    fn from(problems: Problems) -> Self {
        match problems.0.into_iter().next() {
            Some(first) => first.into(),
            None => EcsError::Client("invalid request".to_string()),
        }
    }
}

impl EcsError {
    /// The wire form of this error, with the shape names of the ECS model.
    pub fn to_aws(&self) -> AwsError {
        let message = self.to_string();
        match self {
            EcsError::Client(_) => AwsError::sender("ClientException", message),
            EcsError::InvalidParameter(_) => AwsError::sender("InvalidParameterException", message),
            EcsError::ClusterNotFound => AwsError::sender("ClusterNotFoundException", message),
            EcsError::ClusterContainsContainerInstances => {
                AwsError::sender("ClusterContainsContainerInstancesException", message)
            }
            EcsError::ClusterContainsServices => {
                AwsError::sender("ClusterContainsServicesException", message)
            }
            EcsError::ClusterContainsTasks => {
                AwsError::sender("ClusterContainsTasksException", message)
            }
            EcsError::ResourceNotFound(_) => AwsError::sender("ResourceNotFoundException", message),
            EcsError::ResourceInUse(_) => AwsError::sender("ResourceInUseException", message),
            EcsError::TargetNotFound(_) => AwsError::sender("TargetNotFoundException", message),
            EcsError::AttributeLimitExceeded(_) => {
                AwsError::sender("AttributeLimitExceededException", message)
            }
            EcsError::LimitExceeded(_) => AwsError::sender("LimitExceededException", message),
            EcsError::Serialization(_) => AwsError::sender("SerializationException", message),
            EcsError::Conflict(_) => AwsError::sender("UpdateInProgressException", message),
            EcsError::Store(_) => AwsError::receiver("ServerException", message),
            EcsError::ServiceNotFound => AwsError::sender("ServiceNotFoundException", message),
            EcsError::ServiceNotActive => AwsError::sender("ServiceNotActiveException", message),
            EcsError::ServiceDeploymentNotFound(_) => {
                AwsError::sender("ServiceDeploymentNotFoundException", message)
            }
            EcsError::NamespaceNotFound(_) => {
                AwsError::sender("NamespaceNotFoundException", message)
            }
            EcsError::ResourceConflict(_) => AwsError::sender("ConflictException", message),
            EcsError::PlatformUnknown(_) => AwsError::sender("PlatformUnknownException", message),
        }
    }
}
