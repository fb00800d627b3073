//! The service scheduler's decisions as a pure function of what it sees: which tasks to stop
//! and how many to start (REPLICA) or where (DAEMON), within the deployment configuration's
//! bounds. No I/O and no clock: `reconcile` builds the views and carries the decision out.
//!
//! The rules, as ECS documents them:
//! - a task is *available* when it is RUNNING and, if its containers have health checks,
//!   HEALTHY; only available tasks count towards `minimumHealthyPercent`;
//! - at most `maximumPercent` of the desired count run (pending or running) at once;
//! - tasks that turned UNHEALTHY after the grace period, tasks whose instance is gone and
//!   pending tasks that have no future (an older deployment's, or on a DRAINING instance) are
//!   stopped at once: stopping them costs no availability;
//! - older deployments' tasks, surplus tasks (scale-in) and tasks on DRAINING instances are
//!   stopped while at least `minimumHealthyPercent` stays available, unavailable ones first;
//! - scale-in prefers tasks that are not running yet, then those not available, then balances
//!   what is left across Availability Zones and instances (the reverse of the default spread);
//! - replacements start before the tasks they replace are stopped whenever `maximumPercent`
//!   leaves room, so a DRAINING instance or a rollout with max 200 % never dips.

use std::collections::{BTreeMap, BTreeSet};

/// Where a task is in its life, from the scheduler's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Desired RUNNING, not running yet.
    Pending,
    /// Desired RUNNING and running.
    Running,
    /// Desired STOPPED, not stopped yet.
    Stopping,
    Stopped,
}

/// The state of a task's container instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Active,
    Draining,
    /// Deregistered or unknown: no agent will ever report this task again.
    Gone,
}

#[derive(Debug, Clone)]
pub struct TaskView {
    pub id: String,
    /// Index of the task's deployment (0 is the primary); None for tasks of no deployment the
    /// service still has.
    pub deployment: Option<usize>,
    pub phase: Phase,
    /// RUNNING, and HEALTHY when it has container health checks.
    pub available: bool,
    /// Its container health checks say UNHEALTHY.
    pub unhealthy: bool,
    pub instance: String,
    pub zone: String,
    pub host: Host,
    pub started_at: Option<f64>,
}

impl TaskView {
    fn live(&self) -> bool {
        matches!(self.phase, Phase::Pending | Phase::Running)
    }

    fn primary(&self) -> bool {
        self.deployment == Some(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Failed its container health checks after the grace period.
    Unhealthy,
    /// Scale-in or replacement by a newer deployment.
    Scaling,
    /// Moved off a DRAINING instance.
    Draining,
    /// Its instance is gone: marked STOPPED by the control plane itself.
    InstanceGone,
}

/// What the scheduler shares between the two strategies.
#[derive(Debug, Clone)]
pub struct Common {
    /// The least number of available tasks to keep (minimumHealthyPercent, rounded up).
    pub lower: usize,
    /// Whether tasks may be started now (no start-failure backoff, primary not FAILED).
    pub launch_allowed: bool,
    /// Whether older deployments' tasks are replaced (false once the primary FAILED without a
    /// rollback: what still runs keeps running).
    pub retire_old: bool,
    /// healthCheckGracePeriodSeconds.
    pub grace: f64,
    pub now: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub stops: Vec<(String, StopReason)>,
    /// REPLICA: how many tasks of the primary to start.
    pub launch: usize,
    /// DAEMON: the instances to start one primary task on.
    pub launch_on: Vec<String>,
    /// Desired count reached with every task available and nothing else left.
    pub steady: bool,
    /// When a task now UNHEALTHY within its grace period must be looked at again.
    pub recheck_at: Option<f64>,
}

impl Decision {
    fn stop(&mut self, task: &TaskView, reason: StopReason) {
        self.stops.push((task.id.clone(), reason));
    }

    fn stopping(&self, task: &TaskView) -> bool {
        self.stops.iter().any(|(id, _)| *id == task.id)
    }
}

/// Stops that cost no availability: instance gone, unhealthy past the grace period.
fn stop_the_lost(tasks: &[TaskView], common: &Common, decision: &mut Decision) {
    for task in tasks {
        let gone = task.host == Host::Gone && task.phase != Phase::Stopped;
        if gone {
            decision.stop(task, StopReason::InstanceGone);
        } else if task.phase == Phase::Running && task.unhealthy {
            let since = task.started_at.unwrap_or(common.now);
            if common.now - since >= common.grace {
                decision.stop(task, StopReason::Unhealthy);
            } else {
                let at = since + common.grace;
                decision.recheck_at = Some(decision.recheck_at.map_or(at, |r: f64| r.min(at)));
            }
        }
    }
}

/// Stop `candidates` in order while `lower` available tasks remain; unavailable ones are free.
fn retire(candidates: &[&TaskView], available: usize, lower: usize, decision: &mut Decision) {
    let mut budget = available.saturating_sub(lower);
    let mut ordered: Vec<&&TaskView> = candidates.iter().collect();
    // Unavailable first: stopping them costs nothing.
    ordered.sort_by_key(|t| t.available);
    for task in ordered {
        if decision.stopping(task) {
            continue;
        }
        let reason = if task.host == Host::Draining {
            StopReason::Draining
        } else {
            StopReason::Scaling
        };
        if !task.available {
            decision.stop(task, reason);
        } else if budget > 0 {
            budget -= 1;
            decision.stop(task, reason);
        }
    }
}

/// The `count` tasks a scale-in stops, in ECS's order.
fn scale_in_order<'a>(keepers: &[&'a TaskView], count: usize) -> Vec<&'a TaskView> {
    let mut left: Vec<&TaskView> = keepers.to_vec();
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for task in &left {
        *per_zone.entry(task.zone.as_str()).or_default() += 1;
        *per_instance.entry(task.instance.as_str()).or_default() += 1;
    }
    let mut chosen = Vec::new();
    while chosen.len() < count && !left.is_empty() {
        let best = left
            .iter()
            .enumerate()
            .max_by(|(_, a), (_, b)| {
                let key = |t: &TaskView| {
                    (
                        t.phase != Phase::Running,
                        !t.available,
                        per_zone[t.zone.as_str()],
                        per_instance[t.instance.as_str()],
                    )
                };
                key(a)
                    .cmp(&key(b))
                    // Newest first among equals; then by id, so the choice is stable.
                    .then(
                        a.started_at
                            .unwrap_or(f64::MAX)
                            .total_cmp(&b.started_at.unwrap_or(f64::MAX)),
                    )
                    .then(b.id.cmp(&a.id))
            })
            .map(|(i, _)| i)
            .unwrap_or(0);
        let task = left.remove(best);
        *per_zone.entry(task.zone.as_str()).or_default() -= 1;
        *per_instance.entry(task.instance.as_str()).or_default() -= 1;
        chosen.push(task);
    }
    chosen
}

/// REPLICA: keep `desired` primary tasks available, at most `upper` live at once.
pub fn plan_replica(tasks: &[TaskView], desired: usize, upper: usize, common: &Common) -> Decision {
    let mut decision = Decision::default();
    stop_the_lost(tasks, common, &mut decision);
    for task in tasks.iter().filter(|t| t.phase == Phase::Pending) {
        let hopeless = task.host == Host::Draining || (!task.primary() && common.retire_old);
        if hopeless && !decision.stopping(task) {
            let reason = if task.host == Host::Draining {
                StopReason::Draining
            } else {
                StopReason::Scaling
            };
            decision.stop(task, reason);
        }
    }
    let remaining: Vec<&TaskView> = tasks
        .iter()
        .filter(|t| t.live() && !decision.stopping(t))
        .collect();
    let keepers: Vec<&TaskView> = remaining
        .iter()
        .copied()
        .filter(|t| t.primary() && t.host == Host::Active)
        .collect();
    let mut candidates: Vec<&TaskView> = Vec::new();
    if keepers.len() > desired {
        candidates.extend(scale_in_order(&keepers, keepers.len() - desired));
    }
    candidates.extend(remaining.iter().copied().filter(|t| {
        t.host == Host::Draining || (!t.primary() && common.retire_old && t.host == Host::Active)
    }));
    let available = remaining.iter().filter(|t| t.available).count();
    retire(&candidates, available, common.lower, &mut decision);

    let live_after = remaining.iter().filter(|t| !decision.stopping(t)).count();
    let keepers_after = keepers.iter().filter(|t| !decision.stopping(t)).count();
    let want = desired.saturating_sub(keepers_after);
    let room = upper.saturating_sub(live_after);
    if common.launch_allowed {
        decision.launch = want.min(room);
    }
    let settling = tasks.iter().any(|t| t.phase == Phase::Stopping);
    decision.steady = decision.stops.is_empty()
        && want == 0
        && !settling
        && remaining.len() == desired
        && keepers.len() == desired
        && keepers.iter().all(|t| t.available);
    decision
}

/// DAEMON: one primary task on every eligible instance (ACTIVE, constraints hold); `eligible`
/// maps instance ids to whether their agent is connected (tasks are only started there).
pub fn plan_daemon(
    tasks: &[TaskView],
    eligible: &BTreeMap<String, bool>,
    common: &Common,
) -> Decision {
    let mut decision = Decision::default();
    stop_the_lost(tasks, common, &mut decision);
    for task in tasks.iter().filter(|t| t.live()) {
        if !eligible.contains_key(&task.instance) && !decision.stopping(task) {
            let reason = if task.host == Host::Draining {
                StopReason::Draining
            } else {
                StopReason::Scaling
            };
            decision.stop(task, reason);
        }
    }
    let remaining: Vec<&TaskView> = tasks
        .iter()
        .filter(|t| t.live() && !decision.stopping(t))
        .collect();
    let mut candidates: Vec<&TaskView> = Vec::new();
    let mut duplicates: Vec<&TaskView> = Vec::new();
    for instance in eligible.keys() {
        let here: Vec<&TaskView> = remaining
            .iter()
            .copied()
            .filter(|t| &t.instance == instance)
            .collect();
        let mut primary: Vec<&TaskView> = here.iter().copied().filter(|t| t.primary()).collect();
        // Keep the best primary task (available, then oldest); the rest are duplicates.
        primary.sort_by(|a, b| {
            b.available.cmp(&a.available).then(
                a.started_at
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.started_at.unwrap_or(f64::MAX)),
            )
        });
        duplicates.extend(primary.iter().skip(1).copied());
        if common.retire_old {
            candidates.extend(here.iter().copied().filter(|t| !t.primary()));
        }
    }
    for task in duplicates {
        decision.stop(task, StopReason::Scaling);
    }
    let available = remaining
        .iter()
        .filter(|t| t.available && !decision.stopping(t))
        .count();
    retire(&candidates, available, common.lower, &mut decision);

    // An instance is free once nothing of the service is left on it (a task being stopped
    // still holds its resources and ports).
    let occupied: BTreeSet<&str> = tasks
        .iter()
        .filter(|t| t.phase != Phase::Stopped)
        .map(|t| t.instance.as_str())
        .collect();
    if common.launch_allowed {
        decision.launch_on = eligible
            .iter()
            .filter(|(id, connected)| **connected && !occupied.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
    }
    let settling = tasks.iter().any(|t| t.phase == Phase::Stopping);
    let covered = eligible.keys().all(|instance| {
        let here: Vec<&&TaskView> = remaining
            .iter()
            .filter(|t| &t.instance == instance)
            .collect();
        here.len() == 1 && here[0].primary() && here[0].available
    });
    decision.steady = decision.stops.is_empty()
        && decision.launch_on.is_empty()
        && !settling
        && covered
        && remaining.len() == eligible.len();
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, deployment: usize, phase: Phase, instance: &str) -> TaskView {
        TaskView {
            id: id.to_string(),
            deployment: Some(deployment),
            phase,
            available: phase == Phase::Running,
            unhealthy: false,
            instance: instance.to_string(),
            zone: format!("zone-{instance}"),
            host: Host::Active,
            started_at: Some(100.0),
        }
    }

    fn common(lower: usize) -> Common {
        Common {
            lower,
            launch_allowed: true,
            retire_old: true,
            grace: 0.0,
            now: 1000.0,
        }
    }

    fn stopped_ids(decision: &Decision) -> Vec<&str> {
        let mut ids: Vec<&str> = decision.stops.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn scale_out_starts_what_is_missing_and_scale_in_prefers_pending_then_balance() {
        let tasks = vec![task("a", 0, Phase::Running, "i1")];
        let decision = plan_replica(&tasks, 3, 6, &common(3));
        assert_eq!(decision.launch, 2);
        assert!(decision.stops.is_empty() && !decision.steady);

        let tasks = vec![
            task("a", 0, Phase::Running, "i1"),
            task("b", 0, Phase::Running, "i1"),
            task("c", 0, Phase::Running, "i2"),
            task("d", 0, Phase::Pending, "i2"),
            task("e", 0, Phase::Running, "i3"),
        ];
        let decision = plan_replica(&tasks, 3, 6, &common(3));
        assert_eq!(decision.launch, 0);
        // The pending task first, then one of the two on the busiest instance.
        assert!(stopped_ids(&decision).contains(&"d"));
        assert!(stopped_ids(&decision)
            .iter()
            .any(|id| *id == "a" || *id == "b"));
        assert_eq!(decision.stops.len(), 2);
    }

    #[test]
    fn min_100_max_200_starts_all_new_first_then_stops_old_as_new_ones_turn_available() {
        // Three old tasks, three new just started (pending): nothing old may stop yet.
        let mut tasks = vec![
            task("o1", 1, Phase::Running, "i1"),
            task("o2", 1, Phase::Running, "i2"),
            task("o3", 1, Phase::Running, "i3"),
        ];
        let decision = plan_replica(&tasks, 3, 6, &common(3));
        assert_eq!(decision.launch, 3);
        assert!(decision.stops.is_empty());
        tasks.push(task("n1", 0, Phase::Pending, "i1"));
        tasks.push(task("n2", 0, Phase::Pending, "i2"));
        tasks.push(task("n3", 0, Phase::Pending, "i3"));
        let decision = plan_replica(&tasks, 3, 6, &common(3));
        assert_eq!((decision.launch, decision.stops.len()), (0, 0));
        // Two new ones available: exactly two old ones may go (3 available kept).
        tasks[3].phase = Phase::Running;
        tasks[3].available = true;
        tasks[4].phase = Phase::Running;
        tasks[4].available = true;
        let decision = plan_replica(&tasks, 3, 6, &common(3));
        assert_eq!(decision.stops.len(), 2);
        assert!(decision.stops.iter().all(|(id, _)| id.starts_with('o')));
        let left_available = tasks
            .iter()
            .filter(|t| t.available && !decision.stopping(t))
            .count();
        assert!(left_available >= 3);
    }

    #[test]
    fn min_50_max_100_stops_half_first_then_refills() {
        let tasks: Vec<TaskView> = (0..4)
            .map(|i| task(&format!("o{i}"), 1, Phase::Running, &format!("i{i}")))
            .collect();
        let decision = plan_replica(&tasks, 4, 4, &common(2));
        assert_eq!(decision.stops.len(), 2, "two may go (2 of 4 kept)");
        assert_eq!(decision.launch, 2, "and two start in the room they leave");
    }

    #[test]
    fn unavailable_tasks_never_count_towards_the_minimum() {
        // With health checks: new tasks RUNNING but not yet HEALTHY are not available.
        let mut tasks = vec![
            task("o1", 1, Phase::Running, "i1"),
            task("n1", 0, Phase::Running, "i1"),
        ];
        tasks[1].available = false;
        let decision = plan_replica(&tasks, 1, 2, &common(1));
        assert!(decision.stops.is_empty());
        tasks[1].available = true;
        let decision = plan_replica(&tasks, 1, 2, &common(1));
        assert_eq!(stopped_ids(&decision), vec!["o1"]);
    }

    #[test]
    fn unhealthy_tasks_are_replaced_after_the_grace_period_only() {
        let mut tasks = vec![task("a", 0, Phase::Running, "i1")];
        tasks[0].unhealthy = true;
        tasks[0].available = false;
        let mut within = common(1);
        within.grace = 60.0;
        within.now = 130.0;
        let decision = plan_replica(&tasks, 1, 2, &within);
        assert!(decision.stops.is_empty());
        assert_eq!(decision.recheck_at, Some(160.0));
        let decision = plan_replica(&tasks, 1, 2, &common(1));
        assert_eq!(
            decision.stops,
            vec![("a".to_string(), StopReason::Unhealthy)]
        );
        assert_eq!(decision.launch, 1);
    }

    #[test]
    fn draining_starts_replacements_first_when_max_allows() {
        let mut tasks = vec![
            task("a", 0, Phase::Running, "i1"),
            task("b", 0, Phase::Running, "i2"),
        ];
        tasks[0].host = Host::Draining;
        let decision = plan_replica(&tasks, 2, 4, &common(2));
        assert_eq!(decision.launch, 1);
        assert!(
            decision.stops.is_empty(),
            "not before the replacement is available"
        );
        tasks.push(task("c", 0, Phase::Running, "i2"));
        let decision = plan_replica(&tasks, 2, 4, &common(2));
        assert_eq!(
            decision.stops,
            vec![("a".to_string(), StopReason::Draining)]
        );
        assert_eq!(decision.launch, 0);
    }

    #[test]
    fn a_frozen_primary_keeps_old_tasks_and_starts_nothing() {
        let tasks = vec![task("o1", 1, Phase::Running, "i1")];
        let mut frozen = common(1);
        frozen.retire_old = false;
        frozen.launch_allowed = false;
        let decision = plan_replica(&tasks, 1, 2, &frozen);
        assert!(decision.stops.is_empty());
        assert_eq!(decision.launch, 0);
    }

    #[test]
    fn steady_means_exactly_the_desired_primary_tasks_all_available() {
        let tasks = vec![
            task("a", 0, Phase::Running, "i1"),
            task("b", 0, Phase::Running, "i2"),
        ];
        assert!(plan_replica(&tasks, 2, 4, &common(2)).steady);
        let mut stopping = tasks.clone();
        stopping.push(task("c", 1, Phase::Stopping, "i1"));
        assert!(!plan_replica(&stopping, 2, 4, &common(2)).steady);
    }

    #[test]
    fn daemon_places_one_per_eligible_instance_and_stops_elsewhere() {
        let eligible: BTreeMap<String, bool> = [
            ("i1".to_string(), true),
            ("i2".to_string(), true),
            ("i3".to_string(), false),
        ]
        .into_iter()
        .collect();
        let mut tasks = vec![
            task("a", 0, Phase::Running, "i1"),
            task("b", 0, Phase::Running, "i1"),
            task("z", 0, Phase::Running, "i9"),
        ];
        tasks[2].host = Host::Draining;
        let decision = plan_daemon(&tasks, &eligible, &common(0));
        assert_eq!(stopped_ids(&decision), vec!["b", "z"]);
        assert_eq!(decision.launch_on, vec!["i2".to_string()]);
        assert!(!decision.steady);

        let tasks = vec![
            task("a", 0, Phase::Running, "i1"),
            task("b", 0, Phase::Running, "i2"),
        ];
        let two: BTreeMap<String, bool> = [("i1".to_string(), true), ("i2".to_string(), true)]
            .into_iter()
            .collect();
        assert!(plan_daemon(&tasks, &two, &common(0)).steady);
    }

    #[test]
    fn daemon_rollouts_replace_per_instance_after_the_old_task_stopped() {
        let eligible: BTreeMap<String, bool> = [("i1".to_string(), true)].into_iter().collect();
        let old = vec![task("o", 1, Phase::Running, "i1")];
        let decision = plan_daemon(&old, &eligible, &common(0));
        assert_eq!(stopped_ids(&decision), vec!["o"]);
        assert!(
            decision.launch_on.is_empty(),
            "the old task still holds the instance"
        );
        let gone = vec![task("o", 1, Phase::Stopped, "i1")];
        let decision = plan_daemon(&gone, &eligible, &common(0));
        assert_eq!(decision.launch_on, vec!["i1".to_string()]);
    }

    #[test]
    fn tasks_of_deregistered_instances_are_marked_stopped() {
        let mut tasks = vec![task("a", 0, Phase::Stopping, "i1")];
        tasks[0].host = Host::Gone;
        let decision = plan_replica(&tasks, 0, 0, &common(0));
        assert_eq!(
            decision.stops,
            vec![("a".to_string(), StopReason::InstanceGone)]
        );
    }
}
