//! `dependsOn` resolution and stop ordering, as pure functions of what the owner knows.
//!
//! Conditions, as ECS defines them, on the container depended on (the *target*):
//! - `START`: the target has been started;
//! - `COMPLETE`: the target has run and exited (any code);
//! - `SUCCESS`: the target has run and exited with code 0 (another code fails the dependency);
//! - `HEALTHY`: the target's Docker health check reports healthy (a target without a health
//!   check, or one that stops first, fails the dependency).
//!
//! A target's `startTimeout` bounds the wait for COMPLETE, SUCCESS and HEALTHY, counted from
//! when the target started; past it the dependency has failed. Failed dependencies stop the
//! task: the dependent can never start.
//!
//! Stopping goes the other way: a container is stopped only after every container that
//! depends on it has stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::runtime::HealthState;

/// The lifecycle of one container as the agent knows it; it only moves forward.
///
/// ```text
/// Pending ──start──> Running ──exit/stop──> Stopped
///    └──────────never started─────────────────┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerPhase {
    Pending,
    Running,
    Stopped,
}

impl ContainerPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerPhase::Pending => "PENDING",
            ContainerPhase::Running => "RUNNING",
            ContainerPhase::Stopped => "STOPPED",
        }
    }
}

/// What dependency resolution needs to know about a target container.
#[derive(Debug, Clone)]
pub struct TargetView {
    pub name: String,
    pub phase: ContainerPhase,
    /// Whether it ever started (a container stopped before starting did not).
    pub started: bool,
    /// When this agent saw it start (tokio time, for `startTimeout`).
    pub started_at: Option<Instant>,
    pub exit_code: Option<i64>,
    pub health: Option<HealthState>,
    pub has_health_check: bool,
    pub start_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Satisfied,
    /// Not yet; re-check by `deadline` at the latest (when a start timeout runs out).
    Waiting {
        deadline: Option<Instant>,
    },
    /// It can never be satisfied; the message says why.
    Failed(String),
}

/// Whether `condition` on `target` holds at `now`.
pub fn resolve(condition: &str, target: &TargetView, now: Instant) -> Resolution {
    let name = &target.name;
    let stopped = target.phase == ContainerPhase::Stopped;
    // Conditions that can still be met fall through to the start-timeout check below.
    match condition {
        "START" => {
            if target.started {
                return Resolution::Satisfied;
            }
            if stopped {
                return Resolution::Failed(format!("dependency {name} stopped before it started"));
            }
            // START is reached by starting; a start timeout does not apply to it.
            return Resolution::Waiting { deadline: None };
        }
        "COMPLETE" => {
            if stopped && target.started {
                return Resolution::Satisfied;
            }
            if stopped {
                return Resolution::Failed(format!("dependency {name} stopped before it started"));
            }
        }
        "SUCCESS" => {
            if stopped && target.started {
                return match target.exit_code {
                    Some(0) => Resolution::Satisfied,
                    Some(code) => Resolution::Failed(format!(
                        "dependency {name} exited with code {code}, not 0 (condition SUCCESS)"
                    )),
                    None => Resolution::Failed(format!(
                        "dependency {name} stopped without an exit code (condition SUCCESS)"
                    )),
                };
            }
            if stopped {
                return Resolution::Failed(format!("dependency {name} stopped before it started"));
            }
        }
        "HEALTHY" => {
            if !target.has_health_check {
                return Resolution::Failed(format!(
                    "dependency {name} has no health check, so it can never be HEALTHY"
                ));
            }
            if target.health == Some(HealthState::Healthy) && !stopped {
                return Resolution::Satisfied;
            }
            if stopped {
                return Resolution::Failed(format!(
                    "dependency {name} stopped before it became HEALTHY"
                ));
            }
        }
        other => {
            return Resolution::Failed(format!("unknown dependency condition {other} on {name}"))
        }
    }
    match (target.start_timeout, target.started_at) {
        (Some(timeout), Some(started_at)) => {
            let deadline = started_at + timeout;
            if now >= deadline {
                Resolution::Failed(format!(
                    "dependency {name} did not reach {condition} within its startTimeout of {} s",
                    timeout.as_secs()
                ))
            } else {
                Resolution::Waiting {
                    deadline: Some(deadline),
                }
            }
        }
        _ => Resolution::Waiting { deadline: None },
    }
}

/// The containers that may be stopped now: not stopped yet, and every container that depends
/// on them is stopped. `depends_on` maps a container to the names it depends on. If a cycle
/// (which validation should have refused) leaves nothing eligible, every remaining container
/// is eligible, so stopping always finishes.
pub fn stoppable(
    depends_on: &BTreeMap<String, Vec<String>>,
    stopped: &BTreeSet<String>,
) -> Vec<String> {
    let remaining: Vec<&String> = depends_on
        .keys()
        .filter(|n| !stopped.contains(*n))
        .collect();
    let eligible: Vec<String> = remaining
        .iter()
        .filter(|name| {
            depends_on
                .iter()
                .filter(|(dependent, targets)| {
                    !stopped.contains(*dependent) && targets.iter().any(|t| t == **name)
                })
                .count()
                == 0
        })
        .map(|name| (*name).clone())
        .collect();
    if eligible.is_empty() {
        remaining.into_iter().cloned().collect()
    } else {
        eligible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(phase: ContainerPhase) -> TargetView {
        TargetView {
            name: "db".into(),
            phase,
            started: phase != ContainerPhase::Pending,
            started_at: None,
            exit_code: None,
            health: None,
            has_health_check: true,
            start_timeout: None,
        }
    }

    #[test]
    fn conditions_follow_ecs() {
        let now = Instant::now();
        let waiting = Resolution::Waiting { deadline: None };
        assert_eq!(
            resolve("START", &target(ContainerPhase::Pending), now),
            waiting
        );
        assert_eq!(
            resolve("START", &target(ContainerPhase::Running), now),
            Resolution::Satisfied
        );
        assert_eq!(
            resolve("COMPLETE", &target(ContainerPhase::Running), now),
            waiting
        );
        let mut exited = target(ContainerPhase::Stopped);
        exited.exit_code = Some(1);
        assert_eq!(resolve("COMPLETE", &exited, now), Resolution::Satisfied);
        assert!(matches!(
            resolve("SUCCESS", &exited, now),
            Resolution::Failed(message) if message.contains("exited with code 1")
        ));
        exited.exit_code = Some(0);
        assert_eq!(resolve("SUCCESS", &exited, now), Resolution::Satisfied);
        let mut healthy = target(ContainerPhase::Running);
        assert_eq!(resolve("HEALTHY", &healthy, now), waiting);
        healthy.health = Some(HealthState::Unhealthy);
        assert_eq!(resolve("HEALTHY", &healthy, now), waiting);
        healthy.health = Some(HealthState::Healthy);
        assert_eq!(resolve("HEALTHY", &healthy, now), Resolution::Satisfied);
        healthy.has_health_check = false;
        assert!(matches!(
            resolve("HEALTHY", &healthy, now),
            Resolution::Failed(_)
        ));
        let never_started = TargetView {
            started: false,
            ..target(ContainerPhase::Stopped)
        };
        assert!(matches!(
            resolve("START", &never_started, now),
            Resolution::Failed(_)
        ));
    }

    #[test]
    fn start_timeout_counts_from_the_target_start() {
        let started = Instant::now();
        let mut db = target(ContainerPhase::Running);
        db.started_at = Some(started);
        db.start_timeout = Some(Duration::from_secs(10));
        assert_eq!(
            resolve("HEALTHY", &db, started + Duration::from_secs(3)),
            Resolution::Waiting {
                deadline: Some(started + Duration::from_secs(10))
            }
        );
        assert!(matches!(
            resolve("HEALTHY", &db, started + Duration::from_secs(10)),
            Resolution::Failed(message) if message.contains("startTimeout of 10 s")
        ));
    }

    #[test]
    fn stop_order_is_reverse_dependency_order() {
        let depends_on = BTreeMap::from([
            (
                "app".to_string(),
                vec!["db".to_string(), "cache".to_string()],
            ),
            ("db".to_string(), vec!["init".to_string()]),
            ("cache".to_string(), vec![]),
            ("init".to_string(), vec![]),
        ]);
        let mut stopped = BTreeSet::new();
        assert_eq!(stoppable(&depends_on, &stopped), vec!["app".to_string()]);
        stopped.insert("app".to_string());
        assert_eq!(
            stoppable(&depends_on, &stopped),
            vec!["cache".to_string(), "db".to_string()]
        );
        stopped.insert("db".to_string());
        stopped.insert("cache".to_string());
        assert_eq!(stoppable(&depends_on, &stopped), vec!["init".to_string()]);
        // A cycle still stops.
        let cycle = BTreeMap::from([
            ("a".to_string(), vec!["b".to_string()]),
            ("b".to_string(), vec!["a".to_string()]),
        ]);
        assert_eq!(stoppable(&cycle, &BTreeSet::new()).len(), 2);
    }
}
