//! Where ECS resources live in the store. Every key the ECS handlers read or write is built
//! here, so the layout can be read in one place:
//!
//! ```text
//! ecs/cluster/<name>                               Cluster (JSON)
//! ecs/taskdef/<family>/<revision, 10 digits>        TaskDefinition (JSON)
//! ecs/taskdef-family/<family>                       last revision number of the family
//! ecs/tags/<arn>                                    Vec<Tag> (JSON)
//! ecs/attribute/<cluster>/<target id>/<name>        Attribute (JSON)
//! ecs/setting/<principal arn>/<name>                Setting (JSON)
//! ecs/setting-default/<name>                        Setting (JSON), account defaults
//! ecs/container-instance/<cluster>/<id>             ContainerInstance (JSON)
//! ecs/task/<cluster>/<id>                           Task (JSON)
//! ecs/service/<cluster>/<name>                      ServiceRecord (JSON): the service with
//!                                                   its deployments, events, service
//!                                                   deployments and revisions
//! ecs/agent-session/<cluster>/<instance id>         lease id of the agent's session
//! ecs/client-token/<cluster>/<token>                task ARNs a RunTask clientToken made
//! ```

pub fn cluster(name: &str) -> String {
    format!("ecs/cluster/{name}")
}

pub const CLUSTER_PREFIX: &str = "ecs/cluster/";

pub fn task_definition(family: &str, revision: i64) -> String {
    format!("ecs/taskdef/{family}/{revision:010}")
}

/// Every revision of one family; note the trailing slash so `web` does not match `web2`.
pub fn task_definition_family_prefix(family: &str) -> String {
    format!("ecs/taskdef/{family}/")
}

pub const TASK_DEFINITION_PREFIX: &str = "ecs/taskdef/";

pub fn task_definition_family_counter(family: &str) -> String {
    format!("ecs/taskdef-family/{family}")
}

pub const TASK_DEFINITION_FAMILY_COUNTER_PREFIX: &str = "ecs/taskdef-family/";

pub fn tags(arn: &str) -> String {
    format!("ecs/tags/{arn}")
}

pub fn attribute(cluster: &str, target_id: &str, name: &str) -> String {
    format!("ecs/attribute/{cluster}/{target_id}/{name}")
}

pub fn attribute_cluster_prefix(cluster: &str) -> String {
    format!("ecs/attribute/{cluster}/")
}

pub fn setting(principal_arn: &str, name: &str) -> String {
    format!("ecs/setting/{principal_arn}/{name}")
}

pub fn setting_principal_prefix(principal_arn: &str) -> String {
    format!("ecs/setting/{principal_arn}/")
}

pub fn setting_default(name: &str) -> String {
    format!("ecs/setting-default/{name}")
}

pub const SETTING_DEFAULT_PREFIX: &str = "ecs/setting-default/";

/// Container instances of a cluster (written from the tasks issue on).
pub fn container_instance(cluster: &str, id: &str) -> String {
    format!("ecs/container-instance/{cluster}/{id}")
}

/// Container instances of every cluster (what load balancers resolve instance targets with).
pub const CONTAINER_INSTANCE_PREFIX: &str = "ecs/container-instance/";

pub fn container_instance_cluster_prefix(cluster: &str) -> String {
    format!("ecs/container-instance/{cluster}/")
}

/// Tasks of a cluster (written from the tasks issue on).
pub fn task_cluster_prefix(cluster: &str) -> String {
    format!("ecs/task/{cluster}/")
}

/// Services of a cluster (written from the services issue on).
pub fn service_cluster_prefix(cluster: &str) -> String {
    format!("ecs/service/{cluster}/")
}

pub fn task(cluster: &str, id: &str) -> String {
    format!("ecs/task/{cluster}/{id}")
}

/// An agent's live session; attached to a lease that heartbeats keep alive.
pub fn agent_session(cluster: &str, instance_id: &str) -> String {
    format!("ecs/agent-session/{cluster}/{instance_id}")
}

pub fn agent_session_cluster_prefix(cluster: &str) -> String {
    format!("ecs/agent-session/{cluster}/")
}

/// RunTask/StartTask idempotency: the task ARNs a clientToken produced.
pub fn client_token(cluster: &str, token: &str) -> String {
    format!("ecs/client-token/{cluster}/{token}")
}

pub const SERVICE_PREFIX: &str = "ecs/service/";

pub fn service(cluster: &str, name: &str) -> String {
    format!("ecs/service/{cluster}/{name}")
}
