//! The scheduler's input: a snapshot of the cluster's container instances, with their resources,
//! attributes and the tasks already on them.
//!
//! These are plain data in ECS vocabulary, decoupled from the wire shapes in `model` on purpose:
//! the control plane builds them from whatever store revision it read, and the scheduler never
//! sees ARNs it has to parse or timestamps it has to interpret beyond `registered_at`. Nothing here
//! does I/O or reads the clock.

use std::collections::BTreeMap;

/// A container instance's `status`. Only `Active` instances receive tasks; ECS never places on
/// `DRAINING` (that is the point of draining) nor on deregistering ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerInstanceStatus {
    Active,
    Draining,
    Registering,
    Deregistering,
    RegistrationFailed,
    Inactive,
}

impl ContainerInstanceStatus {
    /// The wire spelling (`ACTIVE`, `DRAINING`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerInstanceStatus::Active => "ACTIVE",
            ContainerInstanceStatus::Draining => "DRAINING",
            ContainerInstanceStatus::Registering => "REGISTERING",
            ContainerInstanceStatus::Deregistering => "DEREGISTERING",
            ContainerInstanceStatus::RegistrationFailed => "REGISTRATION_FAILED",
            ContainerInstanceStatus::Inactive => "INACTIVE",
        }
    }
}

/// A host-port protocol. ECS keeps `PORTS` and `PORTS_UDP` as separate resources, so a TCP and a
/// UDP mapping of the same number do not collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A static host port a task needs (`hostPort` of a port mapping; dynamic mappings with host port
/// 0 need nothing from the scheduler and are not listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub port: u16,
    pub protocol: Protocol,
}

impl HostPort {
    pub fn tcp(port: u16) -> Self {
        HostPort {
            port,
            protocol: Protocol::Tcp,
        }
    }

    pub fn udp(port: u16) -> Self {
        HostPort {
            port,
            protocol: Protocol::Udp,
        }
    }
}

/// One side of a container instance's resources, as in `registeredResources` /
/// `remainingResources`.
///
/// As in ECS, the port lists have different meanings on the two sides: on `registered` they are
/// the ports reserved at registration (22, 2375, 2376, 51678, 51679 by default), on `remaining`
/// they are every port in use (the reserved ones plus those taken by tasks). GPU ids are the
/// registered GPUs, respectively those not yet assigned to a task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU units (1,024 per vCPU).
    pub cpu: u32,
    /// Memory in MiB.
    pub memory: u32,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    pub gpu_ids: Vec<String>,
}

/// A task already on a container instance (desired status `RUNNING`: ECS counts tasks by desired
/// status for `distinctInstance`, so a task that is stopping no longer blocks the instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOnInstance {
    /// The task group: `service:NAME` for service tasks, `family:NAME` by default for RunTask.
    pub group: String,
    /// The task definition family.
    pub family: String,
}

/// A container instance as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInstance {
    pub container_instance_arn: String,
    pub ec2_instance_id: Option<String>,
    pub status: ContainerInstanceStatus,
    pub agent_connected: bool,
    /// `versionInfo.agentVersion`, for the `agentVersion` subject of the query language.
    pub agent_version: Option<String>,
    /// Registration time in whole seconds since the Unix epoch (`registeredAt`).
    pub registered_at: i64,
    pub registered: Resources,
    pub remaining: Resources,
    /// Attribute name → optional value: the built-ins (`ecs.instance-type`,
    /// `ecs.availability-zone`, `ecs.ami-id`, `ecs.os-type`, `ecs.cpu-architecture`, …) and
    /// custom ones from `PutAttributes`.
    pub attributes: BTreeMap<String, Option<String>>,
    /// `runningTasksCount` as ECS reports it (tasks in `RUNNING`).
    pub running_tasks_count: u32,
    /// The tasks on the instance whose desired status is `RUNNING`.
    pub tasks: Vec<TaskOnInstance>,
}

impl ContainerInstance {
    /// The container instance id: the last path segment of the ARN, which is what service events
    /// name ("The closest matching container-instance 2811a2a8… has …").
    pub fn container_instance_id(&self) -> &str {
        self.container_instance_arn
            .rsplit('/')
            .next()
            .unwrap_or(&self.container_instance_arn)
    }

    /// An attribute's value: `None` if the attribute is absent, `Some(None)` if it is present
    /// without a value.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).map(|v| v.as_deref())
    }
}

/// What the scheduler plans against: every container instance of one cluster at one store
/// revision. Instances are addressed by their position in `container_instances`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub container_instances: Vec<ContainerInstance>,
}
