//! The scheduler's output: which task goes where, and for the tasks that fit nowhere, why each
//! container instance refused them, in AWS's words.
//!
//! AWS wording, and where it comes from:
//!
//! | text | status |
//! | --- | --- |
//! | RunTask `failures[].reason` `RESOURCE:CPU`, `RESOURCE:MEMORY`, `RESOURCE:PORTS`, `RESOURCE:GPU`, `AGENT`, with the container instance ARN in `arn` | verified (ECS developer guide, "API failure reasons") |
//! | `MemberOf placement constraint unsatisfied.` | verified (RunTask responses and service events quoted in public issues) |
//! | `DistinctInstance placement constraint unsatisfied.` | verified (a RunTask response quoted in public code) |
//! | `service NAME was unable to place a task because no container instance met all of its requirements.` | verified (developer guide, "Service event messages") |
//! | `… The closest matching container-instance ID has insufficient CPU units available.` / `… has insufficient memory available.` / `… is already using a port required by your task.` / `… encountered error "AGENT".` / `… encountered error "MemberOf placement constraint unsatisfied.".` | verified (developer guide and events quoted verbatim in public repositories) |
//! | `For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.` suffix | verified (same quotes) |
//! | `… encountered error "RESOURCE:GPU".` and `… encountered error "DistinctInstance placement constraint unsatisfied.".` | guessed, by analogy with the AGENT and MemberOf events |
//! | which instance is "closest" | guessed: the one refused by the latest check, in AWS's documented order (resources, then constraints), ties to the first in the snapshot |
//! | RunTask listing one failure per refusing container instance | guessed from observed responses (one `arn` per instance) |

use std::ops::Range;

use crate::request::TaskRequirements;
use crate::snapshot::ContainerInstance;

/// The message ECS answers RunTask with (InvalidParameterException) when the cluster has no
/// container instance at all (observed in client code matching on it).
pub const NO_CONTAINER_INSTANCES_MESSAGE: &str =
    "No Container Instances were found in your cluster.";

const TROUBLESHOOTING: &str =
    "For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.";

/// Why one container instance cannot take the task, in the order the scheduler checks (and so
/// from farthest to closest): agent, resources, then constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectionReason {
    Agent,
    Cpu,
    Memory,
    Ports,
    Gpu,
    MemberOf,
    DistinctInstance,
}

impl RejectionReason {
    /// RunTask/StartTask `failures[].reason`.
    pub fn failure_reason(self) -> &'static str {
        match self {
            RejectionReason::Agent => "AGENT",
            RejectionReason::Cpu => "RESOURCE:CPU",
            RejectionReason::Memory => "RESOURCE:MEMORY",
            RejectionReason::Ports => "RESOURCE:PORTS",
            RejectionReason::Gpu => "RESOURCE:GPU",
            RejectionReason::MemberOf => "MemberOf placement constraint unsatisfied.",
            RejectionReason::DistinctInstance => {
                "DistinctInstance placement constraint unsatisfied."
            }
        }
    }

    /// What a service event says about the closest matching container instance.
    fn event_detail(self) -> String {
        match self {
            RejectionReason::Cpu => "has insufficient CPU units available.".to_owned(),
            RejectionReason::Memory => "has insufficient memory available.".to_owned(),
            RejectionReason::Ports => "is already using a port required by your task.".to_owned(),
            other => format!("encountered error \"{}\".", other.failure_reason()),
        }
    }
}

/// One container instance refusing a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceRejection {
    /// Position of the container instance in the scheduler's list.
    pub container_instance: usize,
    pub reason: RejectionReason,
}

/// One task assigned to a container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The task's number within the request, `0..count`.
    pub task: u32,
    /// Position of the container instance in the scheduler's list.
    pub container_instance: usize,
    /// The GPUs assigned to the task (empty unless it asked for GPUs).
    pub gpu_ids: Vec<String>,
}

/// The tasks that could not be placed.
///
/// Invariant: they are always the tail of the request. The tasks of a request are identical and
/// an unplaceable task changes nothing, so once one fails every later one fails for the same
/// reasons; they share one list of rejections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    /// Task numbers, `first_failed..count`.
    pub tasks: Range<u32>,
    /// Every ACTIVE container instance and why it refused, in snapshot order. Empty when the
    /// cluster has no ACTIVE container instance.
    pub rejections: Vec<InstanceRejection>,
}

impl Unplaced {
    /// The "closest matching container-instance" of service events.
    pub fn closest(&self) -> Option<InstanceRejection> {
        // `max_by_key` keeps the last maximum; reverse so ties go to the first instance.
        self.rejections
            .iter()
            .rev()
            .max_by_key(|r| r.reason)
            .copied()
    }
}

/// A RunTask/StartTask `failures[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub arn: String,
    pub reason: &'static str,
}

/// The scheduler's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// In task order: `placements[n].task == n`.
    pub placements: Vec<Placement>,
    pub unplaced: Option<Unplaced>,
    /// What was reserved per placement, so the scheduler can give it back ([`crate::Scheduler::release`]).
    pub(crate) requirements: TaskRequirements,
    pub(crate) group: String,
    pub(crate) family: String,
}

impl Plan {
    /// Whether every task was placed.
    pub fn is_complete(&self) -> bool {
        self.unplaced.is_none()
    }

    /// RunTask/StartTask `failures[]`: one entry per container instance that refused the
    /// unplaced tasks, with its ARN. `container_instances` is the scheduler's list
    /// ([`crate::Scheduler::container_instances`]).
    pub fn failures(&self, container_instances: &[ContainerInstance]) -> Vec<Failure> {
        let Some(unplaced) = &self.unplaced else {
            return Vec::new();
        };
        unplaced
            .rejections
            .iter()
            .map(|r| Failure {
                arn: container_instances[r.container_instance]
                    .container_instance_arn
                    .clone(),
                reason: r.reason.failure_reason(),
            })
            .collect()
    }

    /// The service event for the unplaced tasks, if any.
    pub fn service_event(
        &self,
        service_name: &str,
        container_instances: &[ContainerInstance],
    ) -> Option<String> {
        let unplaced = self.unplaced.as_ref()?;
        let closest = unplaced.closest().map(|r| {
            (
                container_instances[r.container_instance].container_instance_id(),
                r.reason,
            )
        });
        Some(service_event_message(service_name, closest))
    }
}

/// `service NAME was unable to place a task because no container instance met all of its
/// requirements.`, naming the closest matching container instance (by id) when there is one.
pub fn service_event_message(
    service_name: &str,
    closest: Option<(&str, RejectionReason)>,
) -> String {
    let head = format!(
        "service {service_name} was unable to place a task because no container instance met all of its requirements."
    );
    match closest {
        None => head,
        Some((id, reason)) => format!(
            "{head} The closest matching container-instance {id} {} {TROUBLESHOOTING}",
            reason.event_detail()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_events_read_as_aws_writes_them() {
        assert_eq!(
            service_event_message("web", Some(("2811a2a83e7d47f5a6fe6307a40f0f3b", RejectionReason::MemberOf))),
            "service web was unable to place a task because no container instance met all of its requirements. The closest matching container-instance 2811a2a83e7d47f5a6fe6307a40f0f3b encountered error \"MemberOf placement constraint unsatisfied.\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide."
        );
        assert_eq!(
            service_event_message("web", Some(("abc", RejectionReason::Memory))),
            "service web was unable to place a task because no container instance met all of its requirements. The closest matching container-instance abc has insufficient memory available. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide."
        );
        assert_eq!(
            service_event_message("web", Some(("abc", RejectionReason::Agent))),
            "service web was unable to place a task because no container instance met all of its requirements. The closest matching container-instance abc encountered error \"AGENT\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide."
        );
        assert_eq!(
            service_event_message("web", None),
            "service web was unable to place a task because no container instance met all of its requirements."
        );
    }

    #[test]
    fn closest_is_the_latest_check_and_first_on_ties() {
        let unplaced = Unplaced {
            tasks: 0..1,
            rejections: vec![
                InstanceRejection {
                    container_instance: 0,
                    reason: RejectionReason::Agent,
                },
                InstanceRejection {
                    container_instance: 1,
                    reason: RejectionReason::MemberOf,
                },
                InstanceRejection {
                    container_instance: 2,
                    reason: RejectionReason::Memory,
                },
                InstanceRejection {
                    container_instance: 3,
                    reason: RejectionReason::MemberOf,
                },
            ],
        };
        assert_eq!(unplaced.closest().map(|r| r.container_instance), Some(1));
    }
}
