//! Service events and task stop reasons in AWS's words, and the bounded, newest-first event
//! list of a service.
//!
//! Which texts are verified against what ECS itself writes (events quoted verbatim in public
//! repositories, AWS SDK documentation examples) and which are ours:
//!
//! | text | status |
//! | --- | --- |
//! | `(service NAME) has started N tasks: (task ID) (task ID).` | verified |
//! | `… Amazon ECS replaced N tasks due to an unhealthy status.` suffix | verified |
//! | `(service NAME) has stopped N running tasks: (task ID).` | verified |
//! | `(service NAME) has reached a steady state.` | verified |
//! | `(service NAME) (task ID) failed container health checks.` | verified |
//! | `(service NAME) (deployment ecs-svc/N) deployment completed.` | verified |
//! | `(service NAME) (deployment ecs-svc/N) deployment failed: tasks failed to start.` | verified |
//! | `(service NAME) rolling back to deployment ecs-svc/N.` | verified |
//! | `(service NAME) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.` | verified |
//! | `(service NAME) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance ID) …` | verified (AWS SDK documentation example); the detail texts come from `scheduler::plan` |
//! | `… Reason: No Container Instances were found in your cluster. …` | verified (an event quoted in public code) |
//! | rolloutStateReason `ECS deployment ecs-svc/N in progress.` / `… completed.` | verified |
//! | rolloutStateReason `ECS deployment circuit breaker: tasks failed to start.` | verified (quoted in an AWS issue) |
//! | stoppedReason `Scaling activity initiated by (deployment ecs-svc/N)` | verified |
//! | stoppedReason `Task failed container health checks` | verified |
//! | stoppedReason for a task moved off a DRAINING instance, for one whose instance was deregistered | guessed |
//! | `(service NAME) registered N targets in (target-group ARN)` | verified |
//! | `(service NAME) deregistered N targets in (target-group ARN)` | verified |
//! | `(service NAME) has begun draining connections on N tasks.` | verified |
//! | `(service NAME) (instance ID) (port P) is unhealthy in (target-group ARN) due to (reason …).` (`(task ID)` for ip targets) | verified (quoted in public troubleshooting guides) |
//! | stoppedReason `Task failed ELB health checks in (target-group ARN)` | verified |
//! | service-deployment status reasons | guessed |

use model::ecs::service::{Service, ServiceEvent};
use scheduler::RejectionReason;

use super::load_balancers::UnhealthyTarget;
use super::rollout::StopReason;

/// ECS keeps the latest 100 events of a service.
pub const MAX_EVENTS: usize = 100;

pub const UNHEALTHY_STOP_REASON: &str = "Task failed container health checks";
pub const SERVICE_SCHEDULER_INITIATED: &str = "ServiceSchedulerInitiated";
const TROUBLESHOOTING: &str =
    "For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.";

/// Add an event at the front, dropping the oldest beyond 100.
pub fn push(service: &mut Service, message: String, now: f64) {
    let events = service.events.get_or_insert_with(Vec::new);
    events.insert(
        0,
        ServiceEvent {
            id: Some(uuid::Uuid::new_v4().to_string()),
            created_at: Some(now),
            message: Some(message),
        },
    );
    events.truncate(MAX_EVENTS);
}

/// Whether the same message was recorded within the last `window` seconds (ECS does not
/// repeat a placement failure on every retry).
pub fn said_recently(service: &Service, message: &str, now: f64, window: f64) -> bool {
    service.events.iter().flatten().any(|e| {
        e.message.as_deref() == Some(message) && e.created_at.is_some_and(|at| now - at < window)
    })
}

fn short_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

fn task_list(task_arns: &[String]) -> String {
    task_arns
        .iter()
        .map(|a| format!("(task {})", short_id(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn started(service: &str, task_arns: &[String], replaced_unhealthy: usize) -> String {
    let mut message = format!(
        "(service {service}) has started {} tasks: {}.",
        task_arns.len(),
        task_list(task_arns)
    );
    if replaced_unhealthy > 0 {
        message.push_str(&format!(
            " Amazon ECS replaced {replaced_unhealthy} tasks due to an unhealthy status."
        ));
    }
    message
}

pub fn stopped(service: &str, task_arns: &[String]) -> String {
    format!(
        "(service {service}) has stopped {} running tasks: {}.",
        task_arns.len(),
        task_list(task_arns)
    )
}

pub fn steady(service: &str) -> String {
    format!("(service {service}) has reached a steady state.")
}

pub fn failed_health_checks(service: &str, task_arn: &str) -> String {
    format!(
        "(service {service}) (task {}) failed container health checks.",
        short_id(task_arn)
    )
}

pub fn deployment_completed(service: &str, deployment_id: &str) -> String {
    format!("(service {service}) (deployment {deployment_id}) deployment completed.")
}

pub fn deployment_failed(service: &str, deployment_id: &str) -> String {
    format!("(service {service}) (deployment {deployment_id}) deployment failed: tasks failed to start.")
}

pub fn rolling_back(service: &str, to_deployment_id: &str) -> String {
    format!("(service {service}) rolling back to deployment {to_deployment_id}.")
}

pub fn unable_to_start_consistently(service: &str) -> String {
    format!(
        "(service {service}) is unable to consistently start tasks successfully. {TROUBLESHOOTING}"
    )
}

pub fn no_container_instances(service: &str) -> String {
    format!(
        "(service {service}) was unable to place a task because no container instance met all of its requirements. Reason: No Container Instances were found in your cluster. {TROUBLESHOOTING}"
    )
}

/// The placement-failure event, from RunTask-style `failures[]` (instance ARN and reason):
/// the closest matching instance is the one refused by the latest check, as the scheduler
/// decides it. The scheduler writes the developer guide's form (`service web was unable …
/// container-instance ID …`); the API's events wrap both names in parentheses.
pub fn unable_to_place(service: &str, failures: &[(String, String)]) -> String {
    let closest = failures
        .iter()
        .filter_map(|(arn, reason)| Some((short_id(arn), rejection(reason)?)))
        .rev()
        .max_by_key(|(_, reason)| *reason);
    let text = scheduler::plan::service_event_message(service, closest);
    let mut text = text.replacen(
        &format!("service {service} "),
        &format!("(service {service}) "),
        1,
    );
    if let Some((id, _)) = closest {
        text = text.replacen(
            &format!("container-instance {id} "),
            &format!("(container-instance {id}) "),
            1,
        );
    }
    text
}

fn rejection(reason: &str) -> Option<RejectionReason> {
    Some(match reason {
        "AGENT" => RejectionReason::Agent,
        "RESOURCE:CPU" => RejectionReason::Cpu,
        "RESOURCE:MEMORY" => RejectionReason::Memory,
        "RESOURCE:PORTS" => RejectionReason::Ports,
        "RESOURCE:GPU" => RejectionReason::Gpu,
        r if r.starts_with("MemberOf") => RejectionReason::MemberOf,
        r if r.starts_with("DistinctInstance") => RejectionReason::DistinctInstance,
        _ => return None,
    })
}

pub fn scaling_stop_reason(deployment_id: &str) -> String {
    format!("Scaling activity initiated by (deployment {deployment_id})")
}

pub const DRAINING_STOP_REASON: &str =
    "Service task stopped because its container instance is DRAINING";
pub const DEREGISTERED_STOP_REASON: &str =
    "Service task stopped because its container instance was deregistered";

pub fn in_progress_reason(deployment_id: &str) -> String {
    format!("ECS deployment {deployment_id} in progress.")
}

pub fn completed_reason(deployment_id: &str) -> String {
    format!("ECS deployment {deployment_id} completed.")
}

/// A deployment failed because deployment alarms went to ALARM.
// guessed: AWS's wording for alarm-failed deployments is not documented.
pub fn deployment_failed_alarms(service: &str, deployment_id: &str) -> String {
    format!("(service {service}) (deployment {deployment_id}) deployment failed: alarm detected.")
}

/// The rolloutStateReason of a deployment failed by alarms.
// guessed, like the event above.
pub fn alarms_reason(names: &[String]) -> String {
    format!(
        "ECS deployment detected triggered alarm(s): {}.",
        names.join(", ")
    )
}

pub fn registered_targets(service: &str, count: usize, target_group_arn: &str) -> String {
    format!("(service {service}) registered {count} targets in (target-group {target_group_arn})")
}

pub fn deregistered_targets(service: &str, count: usize, target_group_arn: &str) -> String {
    format!("(service {service}) deregistered {count} targets in (target-group {target_group_arn})")
}

/// A task was not registered because its target group holds `MAX_TARGETS` targets (guessed
/// wording: ECS reports the ELBv2 error it got).
pub fn target_group_full(service: &str, target_group_arn: &str) -> String {
    format!(
        "(service {service}) was unable to register targets in (target-group {target_group_arn}): the target group already has {} targets.",
        super::load_balancers::MAX_TARGETS
    )
}

pub fn began_draining(service: &str, tasks: usize) -> String {
    format!("(service {service}) has begun draining connections on {tasks} tasks.")
}

/// A target failed its load balancer's health checks. Instance targets are named by instance,
/// ip targets by their task.
pub fn target_unhealthy(
    service: &str,
    target: &str,
    port: i32,
    target_group_arn: &str,
    reason: &str,
) -> String {
    format!(
        "(service {service}) ({target}) (port {port}) is unhealthy in (target-group {target_group_arn}) due to (reason {reason})."
    )
}

pub const ELB_UNHEALTHY_STOP_REASON_PREFIX: &str = "Task failed ELB health checks in ";

pub fn elb_unhealthy_stop_reason(target_group_arn: &str) -> String {
    format!("{ELB_UNHEALTHY_STOP_REASON_PREFIX}(target-group {target_group_arn})")
}

/// The stoppedReason of a task the scheduler stops (other than for a deregistered instance).
pub fn stop_reason(
    reason: StopReason,
    deployment_id: &str,
    elb_unhealthy: Option<&UnhealthyTarget>,
) -> String {
    match (reason, elb_unhealthy) {
        (StopReason::Unhealthy, Some(target)) => {
            elb_unhealthy_stop_reason(&target.target_group_arn)
        }
        (StopReason::Unhealthy, None) => UNHEALTHY_STOP_REASON.to_string(),
        (StopReason::Draining, _) => DRAINING_STOP_REASON.to_string(),
        (StopReason::Scaling | StopReason::InstanceGone, _) => scaling_stop_reason(deployment_id),
    }
}

pub const CIRCUIT_BREAKER_REASON: &str = "ECS deployment circuit breaker: tasks failed to start.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_read_as_ecs_writes_them() {
        let arns = [
            "arn:aws:ecs:us-east-1:1:task/c/aaa".to_string(),
            "arn:aws:ecs:us-east-1:1:task/c/bbb".to_string(),
        ];
        assert_eq!(
            started("web", &arns, 0),
            "(service web) has started 2 tasks: (task aaa) (task bbb)."
        );
        assert_eq!(
            started("web", &arns[..1], 1),
            "(service web) has started 1 tasks: (task aaa). Amazon ECS replaced 1 tasks due to an unhealthy status."
        );
        assert_eq!(
            stopped("web", &arns[1..]),
            "(service web) has stopped 1 running tasks: (task bbb)."
        );
        let tg = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/abc";
        assert_eq!(
            registered_targets("web", 1, tg),
            format!("(service web) registered 1 targets in (target-group {tg})")
        );
        assert_eq!(
            elb_unhealthy_stop_reason(tg),
            format!("Task failed ELB health checks in (target-group {tg})")
        );
        assert_eq!(
            deployment_failed("web", "ecs-svc/1"),
            "(service web) (deployment ecs-svc/1) deployment failed: tasks failed to start."
        );
    }

    #[test]
    fn placement_failures_name_the_closest_instance_in_parentheses() {
        let failures = vec![
            (
                "arn:aws:ecs:us-east-1:1:container-instance/c/i1".to_string(),
                "AGENT".to_string(),
            ),
            (
                "arn:aws:ecs:us-east-1:1:container-instance/c/i2".to_string(),
                "RESOURCE:PORTS".to_string(),
            ),
        ];
        assert_eq!(
            unable_to_place("web", &failures),
            "(service web) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance i2) is already using a port required by your task. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide."
        );
        assert_eq!(
            unable_to_place("web", &[]),
            "(service web) was unable to place a task because no container instance met all of its requirements."
        );
    }

    #[test]
    fn events_are_newest_first_and_bounded() {
        let mut service = Service::default();
        for i in 0..120 {
            push(&mut service, format!("m{i}"), i as f64);
        }
        let events = service.events.as_ref().unwrap();
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events[0].message.as_deref(), Some("m119"));
        assert!(said_recently(&service, "m119", 130.0, 60.0));
        assert!(!said_recently(&service, "m119", 200.0, 60.0));
    }
}
