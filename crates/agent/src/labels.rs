//! The labels the agent puts on the containers and volumes it creates. They are the agent's
//! durable memory: after a restart it finds its containers by [`CONTAINER_INSTANCE_ARN`] and
//! rebuilds each task from [`TASK_ARN`] and [`CONTAINER_NAME`], so nothing that was running is
//! started again. The `com.amazonaws.ecs.*` names are the ones the ECS agent uses, so tools that
//! read them (log shippers, monitoring) work unchanged.
//!
//! These labels win over a task definition's `dockerLabels` of the same name: a task must not
//! be able to make the agent adopt or clean up something that is not its own.

/// The ARN of the task the container belongs to.
pub const TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
/// The container's name in the task definition.
pub const CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
/// The cluster's name (as the ECS agent writes it).
pub const CLUSTER: &str = "com.amazonaws.ecs.cluster";
pub const TASK_DEFINITION_FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
pub const TASK_DEFINITION_VERSION: &str = "com.amazonaws.ecs.task-definition-version";
/// The container instance whose agent manages the container or volume. Several agents may
/// share one engine; each touches only what carries its own ARN.
pub const CONTAINER_INSTANCE_ARN: &str = "wharf.container-instance-arn";
/// Where an `awslogs` container's output is shipped (log group), so that an agent restarted
/// after its task was forgotten by the server can still ship what is left.
pub const AWSLOGS_GROUP: &str = "wharf.awslogs-group";
/// The log stream, when it is not the container id (AWS's name without a stream prefix).
pub const AWSLOGS_STREAM: &str = "wharf.awslogs-stream";
/// `true` when the log group is created if missing (`awslogs-create-group`).
pub const AWSLOGS_CREATE_GROUP: &str = "wharf.awslogs-create-group";

/// `true` on an awsvpc task's pause container (it also carries the task's labels, with the
/// container name `~internal~ecs~pause`), so it is re-adopted with its task, never recreated.
pub const PAUSE: &str = "wharf.pause";
/// On the engine networks backing awsvpc subnets: the subnet's id.
pub const SUBNET_ID: &str = "wharf.subnet-id";

/// The container's task metadata endpoint token (the last segment of
/// `ECS_CONTAINER_METADATA_URI_V4`), so a restarted agent serves the same URI.
pub const METADATA_TOKEN: &str = "wharf.metadata-token";
/// The `ip:port` the container's metadata URI points at, so a restarted agent listens there
/// again.
pub const METADATA_ENDPOINT: &str = "wharf.metadata-endpoint";

/// Whether a label is one the agent owns (and so may not come from `dockerLabels`).
pub fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        TASK_ARN
            | CONTAINER_NAME
            | CLUSTER
            | TASK_DEFINITION_FAMILY
            | TASK_DEFINITION_VERSION
            | CONTAINER_INSTANCE_ARN
            | AWSLOGS_GROUP
            | AWSLOGS_STREAM
            | AWSLOGS_CREATE_GROUP
            | METADATA_TOKEN
            | METADATA_ENDPOINT
            | PAUSE
    )
}
