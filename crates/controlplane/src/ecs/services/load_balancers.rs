//! Services behind Elastic Load Balancing v2: checking a service's `loadBalancers` as ECS does,
//! and what the service scheduler does with them on every pass: register each running task of
//! a deployment in that deployment's target groups, deregister a task (and let it drain for the
//! group's deregistration delay) before stopping it, deregister tasks that stopped on their
//! own, and judge a task's availability by the health the data plane observed for its targets.
//!
//! The target group records (`model::elb::keys::target_group`) say which tasks are registered:
//! a task is when a target names it (`task_arn`) without `deregistered_at_ms`. Which tasks
//! drain is the service's decision, kept in its record (`ServiceRecord::wharf_draining`, with
//! the stop reason) and saved before any of their targets is deregistered, so a crash in
//! between neither loses the reason nor lets the task be registered again; a target someone
//! else deregistered is registered again instead (see `Balancing::sync`). A pass reads only
//! the groups its service's deployments name. The ELBv2 API writes the same records, so every
//! write here is a read-modify-write compared on the key's revision, re-applied on conflict.
//!
//! ```text
//!   RUNNING ──register──> registered ──(scheduler stops it)──> draining ──(delay)──> stopped
//!      │                      │                                                      ^
//!      └──────────────────────┴──(the task stops on its own)──> deregistered ─────────┘
//! ```
//!
//! What this does not do: Classic Load Balancers (`loadBalancerName`) are refused, and only
//! `instance` and `ip` target groups can front a service.

use std::collections::{BTreeMap, BTreeSet};

use model::ecs::service::LoadBalancer;
use model::ecs::task::Task;
use model::ecs::task_definition::TaskDefinition;
use model::elb::{
    keys as elb_keys, parse_target_group_arn, RegisteredTarget, TargetGroupRecord,
    TargetHealthRecord,
};
use store::{Op, Txn};

use super::events;
use super::ServiceRecord;
use crate::ecs::cluster_state::ClusterState;
use crate::ecs::{decode, encode, unchanged, EcsContext, EcsError};

/// ECS attaches at most five target groups to a service.
pub const MAX_LOAD_BALANCERS: usize = 5;

/// The network mode a definition's tasks use (ECS's default on Linux EC2 is `bridge`).
fn network_mode(definition: &TaskDefinition) -> &str {
    definition.network_mode.as_deref().unwrap_or("bridge")
}

/// Whether any listener or rule forwards to `arn`. Their records belong to the ELBv2 API; a
/// forward action names the group by ARN wherever it sits in the record, so the text is
/// searched rather than a schema this module would have to follow.
async fn has_load_balancer(ctx: &EcsContext, arn: &str) -> Result<bool, EcsError> {
    for prefix in [elb_keys::LISTENER_PREFIX, elb_keys::RULE_PREFIX] {
        let response = ctx.store.range(prefix, Default::default()).await?;
        if response
            .kvs
            .iter()
            .any(|kv| String::from_utf8_lossy(&kv.value).contains(arn))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The target group an ARN names, if it exists (same name and id).
async fn read_target_group(
    ctx: &EcsContext,
    arn: &str,
) -> Result<Option<TargetGroupRecord>, EcsError> {
    let Some((name, id)) = parse_target_group_arn(arn) else {
        return Ok(None);
    };
    Ok(ctx
        .get_json::<TargetGroupRecord>(&elb_keys::target_group(name))
        .await?
        .map(|(record, _)| record)
        .filter(|record| record.id == id))
}

/// CreateService and UpdateService: check `loadBalancers` against the definition the
/// deployment runs, as ECS does, and return them as the service keeps them.
pub async fn validate(
    ctx: &EcsContext,
    given: &[LoadBalancer],
    definition: &TaskDefinition,
) -> Result<Vec<LoadBalancer>, EcsError> {
    if given.len() > MAX_LOAD_BALANCERS {
        // guessed wording; the limit is ECS's documented quota.
        return Err(EcsError::InvalidParameter(format!(
            "A service can be attached to at most {MAX_LOAD_BALANCERS} target groups."
        )));
    }
    let mode = network_mode(definition);
    let mut checked = Vec::new();
    for entry in given {
        let arn = match (&entry.target_group_arn, &entry.load_balancer_name) {
            (Some(arn), _) if !arn.is_empty() => arn.clone(),
            (_, Some(name)) if !name.is_empty() => {
                return Err(EcsError::InvalidParameter(
                    "Classic Load Balancers (loadBalancerName) are not available in Wharf; use an Application or Network Load Balancer target group (targetGroupArn)."
                        .to_string(),
                ))
            }
            _ => {
                return Err(EcsError::InvalidParameter(
                    "Target Group ARN and Load Balancer Name cannot both be blank.".to_string(),
                ))
            }
        };
        let container = entry
            .container_name
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                EcsError::InvalidParameter("Container Name can not be blank.".to_string())
            })?;
        let port = entry.container_port.ok_or_else(|| {
            // guessed wording, in the style of the container name's.
            EcsError::InvalidParameter("Container Port can not be blank.".to_string())
        })?;
        let Some(group) = read_target_group(ctx, &arn).await? else {
            // guessed wording: ECS answers when ELBv2 does not know the group.
            return Err(EcsError::InvalidParameter(format!(
                "The target group with targetGroupArn {arn} does not exist."
            )));
        };
        match (group.target_type.as_str(), mode) {
            ("ip", "awsvpc") => {}
            ("instance", "bridge" | "host") => {}
            ("ip" | "instance", _) => {
                return Err(EcsError::InvalidParameter(format!(
                    "The provided target group {arn} has target type {}, which is incompatible with the {mode} network mode specified in the task definition.",
                    group.target_type
                )))
            }
            (other, _) => {
                return Err(EcsError::InvalidParameter(format!(
                    "The provided target group {arn} has target type {other}, which is not supported for services; use instance or ip."
                )))
            }
        }
        if !has_load_balancer(ctx, &arn).await? {
            return Err(EcsError::InvalidParameter(format!(
                "The target group with targetGroupArn {arn} does not have an associated load balancer."
            )));
        }
        let definition_container = definition
            .container_definitions
            .iter()
            .flatten()
            .find(|c| c.name.as_deref() == Some(container.as_str()));
        let Some(definition_container) = definition_container else {
            // guessed wording.
            return Err(EcsError::InvalidParameter(format!(
                "The container {container} does not exist in the task definition."
            )));
        };
        let mapped = definition_container
            .port_mappings
            .iter()
            .flatten()
            .any(|m| m.container_port.map(i64::from) == Some(port));
        if !mapped {
            return Err(EcsError::InvalidParameter(format!(
                "The container {container} did not have a container port {port} defined."
            )));
        }
        checked.push(LoadBalancer {
            target_group_arn: Some(arn),
            load_balancer_name: None,
            container_name: Some(container),
            container_port: Some(port),
            advanced_configuration: entry.advanced_configuration.clone(),
        });
    }
    Ok(checked)
}

/// The most targets a target group holds (ELBv2's quota, which RegisterTargets enforces as
/// well): a registration beyond it is skipped, with a warning and an event.
pub const MAX_TARGETS: usize = 1000;

/// A change the scheduler makes to a target group, re-applied when its write loses a race.
#[derive(Debug, Clone)]
enum TargetOp {
    Register(RegisteredTarget),
    /// Every target of the task still registered.
    Deregister {
        task_arn: String,
        at_ms: i64,
    },
}

impl TargetOp {
    /// Apply to a record; true when it changed anything. Registering a target that exists
    /// (a reused host port still draining) registers it afresh, as RegisterTargets does; a new
    /// target is not added to a full group (`MAX_TARGETS`).
    fn apply(&self, record: &mut TargetGroupRecord) -> bool {
        match self {
            TargetOp::Register(target) => {
                let full = record.targets.len() >= MAX_TARGETS;
                let existing = record
                    .targets
                    .iter_mut()
                    .find(|t| t.id == target.id && t.port == target.port);
                match existing {
                    Some(existing)
                        if existing.task_arn == target.task_arn
                            && existing.deregistered_at_ms.is_none() =>
                    {
                        false
                    }
                    Some(existing) => {
                        *existing = target.clone();
                        true
                    }
                    None if full => false,
                    None => {
                        record.targets.push(target.clone());
                        true
                    }
                }
            }
            TargetOp::Deregister { task_arn, at_ms } => {
                let mut changed = false;
                for target in record.targets.iter_mut().filter(|t| {
                    t.task_arn.as_deref() == Some(task_arn.as_str())
                        && t.deregistered_at_ms.is_none()
                }) {
                    target.deregistered_at_ms = Some(*at_ms);
                    changed = true;
                }
                changed
            }
        }
    }
}

/// One target group as a pass sees it.
struct Group {
    record: TargetGroupRecord,
    revision: i64,
    key: String,
    health: TargetHealthRecord,
    pending: Vec<TargetOp>,
}

/// What is known about one task's targets.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetsHealth {
    /// The task is meant to have no targets.
    None,
    /// Every target is registered and `healthy`.
    Healthy,
    /// Not every target is registered and healthy yet (or the state is `initial`).
    Waiting,
    /// A target is `unhealthy`: the first such, for the stop reason and the event.
    Unhealthy(UnhealthyTarget),
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnhealthyTarget {
    pub target_group_arn: String,
    pub id: String,
    pub port: i32,
    pub reason: String,
}

/// The target groups of one pass over one service, with the changes it makes to them.
pub struct Balancing {
    /// The groups the service's deployments name, by ARN.
    groups: BTreeMap<String, Group>,
    /// Where each task's targets sit, as (group ARN, position in the group's `targets`):
    /// built when the groups are read (and again after they are written), kept up to date by
    /// registrations, so that what a pass asks about one task costs a lookup, not a scan of
    /// every target.
    by_task: BTreeMap<String, Vec<(String, usize)>>,
    now_ms: i64,
    /// Groups a registration was skipped in because they hold `MAX_TARGETS` targets.
    full: BTreeSet<String>,
}

/// The address and port a task is reached at in `group`: its IP and the container port in an
/// `ip` group; in an `instance` group, its instance and the host port bound to the container
/// port for the group's protocol (the `udp` binding for a UDP group, the `tcp` one otherwise:
/// a TCP_UDP group's container maps one static host port for both).
fn target_of(
    task: &Task,
    state: &ClusterState,
    group: &TargetGroupRecord,
    lb: &LoadBalancer,
) -> Option<(String, i32)> {
    let target_type = group.target_type.as_str();
    let binding_protocol = if group.protocol.as_deref() == Some("UDP") {
        "udp"
    } else {
        "tcp"
    };
    let port = i32::try_from(lb.container_port?).ok()?;
    match target_type {
        "ip" => {
            let ip = task
                .attachments
                .iter()
                .flatten()
                .filter_map(|a| a.get("details")?.as_array())
                .flatten()
                .find(|d| d.get("name").and_then(|n| n.as_str()) == Some("privateIPv4Address"))
                .and_then(|d| d.get("value")?.as_str())?
                .to_string();
            Some((ip, port))
        }
        "instance" => {
            let instance = state.instance(task.container_instance_arn.as_deref()?)?;
            let id = instance.record.instance.ec2_instance_id.clone()?;
            let host_port = task
                .containers
                .iter()
                .flatten()
                .filter(|c| c.name == lb.container_name)
                .flat_map(|c| c.network_bindings.iter().flatten())
                .find(|b| {
                    b.container_port == Some(port)
                        && b.protocol.as_deref().unwrap_or("tcp") == binding_protocol
                })
                .and_then(|b| b.host_port)?;
            Some((id, host_port))
        }
        _ => None,
    }
}

fn is_stopping_or_stopped(task: &Task) -> bool {
    task.desired_status.as_deref() == Some("STOPPED")
        || task.last_status.as_deref() == Some("STOPPED")
}

/// The target groups a service's deployments name, by ARN, each once.
fn used_groups(record: &ServiceRecord) -> BTreeSet<&str> {
    record
        .wharf_deployments
        .iter()
        .flat_map(|d| d.wharf_load_balancers.iter())
        .filter_map(|lb| lb.target_group_arn.as_deref())
        .collect()
}

impl Balancing {
    /// Read the target groups the service's deployments name (by the key their ARN's name
    /// gives) and their observed health. A service without load balancers reads nothing: its
    /// draining tasks, if any, wait for nothing and are stopped.
    pub async fn load(
        ctx: &EcsContext,
        record: &ServiceRecord,
        now_ms: i64,
    ) -> Result<Balancing, EcsError> {
        let mut groups = BTreeMap::new();
        for arn in used_groups(record) {
            let Some((name, _)) = parse_target_group_arn(arn) else {
                continue;
            };
            let key = elb_keys::target_group(name);
            let Some(kv) = ctx.store.get(&key).await? else {
                continue;
            };
            let mut group: TargetGroupRecord = match decode(&kv) {
                Ok(group) => group,
                Err(error) => {
                    tracing::warn!(key = %kv.key, %error, "target group record skipped");
                    continue;
                }
            };
            // Deleted and created again under the same name: another group, not this one.
            if group.arn != arn {
                continue;
            }
            // Targets whose draining ended are gone (ELBv2 drops them on its next write, and
            // so does `commit`).
            group.prune(now_ms);
            let health = ctx
                .get_json::<TargetHealthRecord>(&elb_keys::target_health(&group.id))
                .await?
                .map(|(health, _)| health)
                .unwrap_or_default();
            groups.insert(
                arn.to_string(),
                Group {
                    record: group,
                    revision: kv.mod_revision,
                    key,
                    health,
                    pending: Vec::new(),
                },
            );
        }
        let mut balancing = Balancing {
            groups,
            by_task: BTreeMap::new(),
            now_ms,
            full: BTreeSet::new(),
        };
        balancing.reindex();
        Ok(balancing)
    }

    fn reindex(&mut self) {
        self.by_task.clear();
        for (arn, group) in &self.groups {
            for (position, target) in group.record.targets.iter().enumerate() {
                if let Some(task) = &target.task_arn {
                    self.by_task
                        .entry(task.clone())
                        .or_default()
                        .push((arn.clone(), position));
                }
            }
        }
    }

    fn targets_of<'a>(
        &'a self,
        task_arn: &str,
    ) -> impl Iterator<Item = (&'a Group, &'a RegisteredTarget)> + 'a {
        self.by_task
            .get(task_arn)
            .into_iter()
            .flatten()
            .filter_map(|(arn, position)| {
                let group = self.groups.get(arn)?;
                Some((group, group.record.targets.get(*position)?))
            })
    }

    /// The task's target at `id:port` in `group_arn`, if it is registered (not deregistered).
    fn live_target(
        &self,
        task_arn: &str,
        group_arn: &str,
        id: &str,
        port: i32,
    ) -> Option<(&Group, &RegisteredTarget)> {
        self.targets_of(task_arn).find(|(g, t)| {
            g.record.arn == group_arn
                && t.id == id
                && t.port == port
                && t.deregistered_at_ms.is_none()
        })
    }

    /// Whether the task has a target registered (not deregistered) in any group.
    pub fn registered(&self, task: &Task) -> bool {
        let arn = task.task_arn.as_deref().unwrap_or("");
        self.targets_of(arn)
            .any(|(_, t)| t.deregistered_at_ms.is_none())
    }

    /// Whether the service is draining the task: it decided to stop it and deregisters its
    /// targets first. Only the service's own decision counts (`ServiceRecord::wharf_draining`,
    /// saved before any target is deregistered): a target someone deregistered through the
    /// ELBv2 API does not make the scheduler stop its task (`sync` registers it again).
    pub fn draining(&self, record: &ServiceRecord, task: &Task, task_id: &str) -> bool {
        !is_stopping_or_stopped(task) && record.wharf_draining.contains_key(task_id)
    }

    /// When a draining task's last target stops draining (ms), or None once none is left.
    pub fn drain_ends_at(&self, task: &Task) -> Option<i64> {
        let arn = task.task_arn.as_deref().unwrap_or("");
        self.targets_of(arn)
            .filter_map(|(g, t)| {
                let delay = g.record.deregistration_delay_seconds();
                t.present(self.now_ms, delay)
                    .then(|| t.deregistered_at_ms.unwrap_or(self.now_ms) + delay * 1000)
            })
            .max()
    }

    /// The groups a registration was skipped in because they are full.
    pub fn full_groups(&self) -> impl Iterator<Item = &str> {
        self.full.iter().map(String::as_str)
    }

    /// The targets a task of a deployment with `load_balancers` is meant to have, as
    /// `(group ARN, id, port)`; groups that no longer exist are skipped.
    fn wanted(
        &self,
        task: &Task,
        state: &ClusterState,
        load_balancers: &[LoadBalancer],
    ) -> Vec<(String, Option<(String, i32)>)> {
        load_balancers
            .iter()
            .filter_map(|lb| {
                let arn = lb.target_group_arn.as_deref()?;
                let group = self.groups.get(arn)?;
                Some((arn.to_string(), target_of(task, state, &group.record, lb)))
            })
            .collect()
    }

    /// Bring registrations in line with the tasks: register the running tasks of each
    /// deployment (except draining ones), deregister tasks that are stopping or stopped, and
    /// those the service is draining (a drain a crash interrupted between saving the decision
    /// and deregistering). Returns the events, in AWS's words.
    ///
    /// A running task whose target someone deregistered through the ELBv2 API is registered
    /// again: the scheduler keeps its tasks registered as it keeps their count, and a task
    /// left out of its groups would never count as available again. Taking a task out of
    /// rotation is done by stopping it (or scaling in), as with ECS.
    pub fn sync(
        &mut self,
        service: &str,
        record: &ServiceRecord,
        tasks: &[Task],
        state: &ClusterState,
        task_id: impl Fn(&Task) -> String,
    ) -> Vec<String> {
        if self.groups.is_empty() {
            return Vec::new();
        }
        let mut registered: BTreeMap<String, usize> = BTreeMap::new();
        let mut deregistered: BTreeMap<String, usize> = BTreeMap::new();
        for task in tasks {
            let arn = task.task_arn.clone().unwrap_or_default();
            if is_stopping_or_stopped(task) || record.wharf_draining.contains_key(&task_id(task)) {
                // STOPPED tasks are kept for an hour: only those still registered cost more
                // than a lookup.
                if self.registered(task) {
                    for (arn_of_group, count) in self.deregister(&arn) {
                        *deregistered.entry(arn_of_group).or_default() += count;
                    }
                }
                continue;
            }
            if task.last_status.as_deref() != Some("RUNNING") {
                continue;
            }
            let Some(index) = record.deployment_of(task) else {
                continue;
            };
            let load_balancers = &record.wharf_deployments[index].wharf_load_balancers;
            for (group_arn, target) in self.wanted(task, state, load_balancers) {
                let Some((id, port)) = target else {
                    continue;
                };
                if self.live_target(&arn, &group_arn, &id, port).is_some() {
                    continue;
                }
                let target = RegisteredTarget {
                    id,
                    port,
                    availability_zone: task.availability_zone.clone(),
                    registered_at_ms: self.now_ms,
                    deregistered_at_ms: None,
                    task_arn: Some(arn.clone()),
                };
                if self.register(service, &group_arn, target) {
                    *registered.entry(group_arn).or_default() += 1;
                }
            }
        }
        let mut said = Vec::new();
        for (arn, count) in registered {
            said.push(events::registered_targets(service, count, &arn));
        }
        for (arn, count) in deregistered {
            said.push(events::deregistered_targets(service, count, &arn));
        }
        said
    }

    /// Register a target (afresh when its address and port are another task's, a reused host
    /// port still draining), unless the group is full; true when it was.
    fn register(&mut self, service: &str, group_arn: &str, target: RegisteredTarget) -> bool {
        let Some(group) = self.groups.get_mut(group_arn) else {
            return false;
        };
        let existing = group
            .record
            .targets
            .iter()
            .position(|t| t.id == target.id && t.port == target.port);
        if existing.is_none() && group.record.targets.len() >= MAX_TARGETS {
            if self.full.insert(group_arn.to_string()) {
                tracing::warn!(
                    service,
                    target_group = group_arn,
                    limit = MAX_TARGETS,
                    "target group full; task not registered"
                );
            }
            return false;
        }
        let previous = existing.and_then(|p| group.record.targets[p].task_arn.clone());
        let task = target.task_arn.clone().unwrap_or_default();
        let op = TargetOp::Register(target);
        if !op.apply(&mut group.record) {
            return false;
        }
        group.pending.push(op);
        let position = existing.unwrap_or(group.record.targets.len() - 1);
        if let Some(positions) = previous.and_then(|p| self.by_task.get_mut(&p)) {
            positions.retain(|(g, p)| !(g == group_arn && *p == position));
        }
        self.by_task
            .entry(task)
            .or_default()
            .push((group_arn.to_string(), position));
        true
    }

    /// Deregister every registered target of a task; `(group ARN, how many)`.
    pub fn deregister(&mut self, task_arn: &str) -> Vec<(String, usize)> {
        let mut done: BTreeMap<String, usize> = BTreeMap::new();
        for (arn, position) in self.by_task.get(task_arn).into_iter().flatten() {
            let Some(target) = self
                .groups
                .get_mut(arn)
                .and_then(|g| g.record.targets.get_mut(*position))
            else {
                continue;
            };
            if target.task_arn.as_deref() == Some(task_arn) && target.deregistered_at_ms.is_none() {
                target.deregistered_at_ms = Some(self.now_ms);
                *done.entry(arn.clone()).or_default() += 1;
            }
        }
        for arn in done.keys() {
            if let Some(group) = self.groups.get_mut(arn) {
                group.pending.push(TargetOp::Deregister {
                    task_arn: task_arn.to_string(),
                    at_ms: self.now_ms,
                });
            }
        }
        done.into_iter().collect()
    }

    /// How a task's targets are doing, for a task of a deployment with `load_balancers`.
    pub fn health(
        &self,
        task: &Task,
        state: &ClusterState,
        load_balancers: &[LoadBalancer],
    ) -> TargetsHealth {
        let wanted = self.wanted(task, state, load_balancers);
        if wanted.is_empty() {
            return TargetsHealth::None;
        }
        let arn = task.task_arn.as_deref().unwrap_or("");
        let mut all_healthy = true;
        for (group_arn, target) in wanted {
            let Some((id, port)) = target else {
                all_healthy = false;
                continue;
            };
            // Only what was observed since this registration: an older observation of the
            // same address and port was of an earlier task.
            let observed = self
                .live_target(arn, &group_arn, &id, port)
                .and_then(|(group, t)| group.health.observed(t));
            match observed.map(|o| o.state.as_str()) {
                Some("healthy") => {}
                Some("unhealthy") => {
                    let observed = observed.expect("matched above");
                    return TargetsHealth::Unhealthy(UnhealthyTarget {
                        target_group_arn: group_arn,
                        id,
                        port,
                        reason: observed
                            .description
                            .clone()
                            .unwrap_or_else(|| "Health checks failed".to_string()),
                    });
                }
                _ => all_healthy = false,
            }
        }
        if all_healthy {
            TargetsHealth::Healthy
        } else {
            TargetsHealth::Waiting
        }
    }

    /// Write every changed group: compare on the revision read, and on a conflict re-read it
    /// and apply this pass's changes again. Targets whose draining ended are dropped with the
    /// write. A group deleted meanwhile, or deleted and created again under its name (another
    /// ARN), takes none of the changes and leaves the pass.
    pub async fn commit(&mut self, ctx: &EcsContext) -> Result<(), EcsError> {
        let mut wrote = false;
        let mut gone = Vec::new();
        for (arn, group) in self.groups.iter_mut() {
            if group.pending.is_empty() {
                continue;
            }
            wrote = true;
            let mut written = false;
            for _ in 0..16 {
                group.record.prune(self.now_ms);
                let response = ctx
                    .store
                    .txn(Txn {
                        compares: vec![unchanged(&group.key, group.revision)],
                        success: vec![Op::Put {
                            key: group.key.clone(),
                            value: encode(&group.record),
                            lease: None,
                        }],
                        failure: vec![],
                    })
                    .await?;
                if response.succeeded {
                    group.revision = response.revision;
                    written = true;
                    break;
                }
                let fresh = ctx.get_json::<TargetGroupRecord>(&group.key).await?;
                let Some((mut fresh, revision)) = fresh.filter(|(f, _)| f.arn == *arn) else {
                    gone.push(arn.clone());
                    written = true;
                    break;
                };
                for op in &group.pending {
                    op.apply(&mut fresh);
                }
                group.record = fresh;
                group.revision = revision;
            }
            if !written {
                return Err(EcsError::Conflict(
                    "The target group is being changed concurrently; retry.".to_string(),
                ));
            }
            group.pending.clear();
        }
        for arn in gone {
            self.groups.remove(&arn);
        }
        if wrote {
            self.reindex();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> TargetGroupRecord {
        TargetGroupRecord {
            arn: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/abc".into(),
            name: "web".into(),
            id: "abc".into(),
            protocol: Some("HTTP".into()),
            protocol_version: None,
            port: Some(80),
            vpc_id: None,
            target_type: "instance".into(),
            ip_address_type: None,
            health_check: model::elb::HealthCheckConfig::aws_default("HTTP"),
            attributes: BTreeMap::new(),
            tags: vec![],
            created_at_ms: 0,
            targets: vec![],
        }
    }

    fn target(task: &str, port: i32) -> RegisteredTarget {
        RegisteredTarget {
            id: "i-1".into(),
            port,
            availability_zone: None,
            registered_at_ms: 10,
            deregistered_at_ms: None,
            task_arn: Some(task.into()),
        }
    }

    #[test]
    fn registering_is_idempotent_and_reregisters_a_draining_reused_port() {
        let mut record = group();
        assert!(TargetOp::Register(target("t1", 49153)).apply(&mut record));
        assert!(!TargetOp::Register(target("t1", 49153)).apply(&mut record));
        let deregister = TargetOp::Deregister {
            task_arn: "t1".into(),
            at_ms: 20,
        };
        assert!(deregister.apply(&mut record));
        assert!(!deregister.apply(&mut record), "already draining");
        assert_eq!(record.targets[0].deregistered_at_ms, Some(20));
        // Another task on the same host port takes the target over.
        assert!(TargetOp::Register(target("t2", 49153)).apply(&mut record));
        assert_eq!(record.targets.len(), 1);
        assert_eq!(record.targets[0].task_arn.as_deref(), Some("t2"));
        assert_eq!(record.targets[0].deregistered_at_ms, None);
    }

    #[test]
    fn a_full_group_takes_no_new_target_but_still_reregisters_an_existing_one() {
        let mut record = group();
        for port in 0..MAX_TARGETS as i32 {
            assert!(TargetOp::Register(target(&format!("t{port}"), port)).apply(&mut record));
        }
        assert!(!TargetOp::Register(target("new", 60000)).apply(&mut record));
        assert_eq!(record.targets.len(), MAX_TARGETS);
        // The same address and port, another task: replaced in place.
        assert!(TargetOp::Register(target("new", 0)).apply(&mut record));
        assert_eq!(record.targets.len(), MAX_TARGETS);
    }

    fn context() -> EcsContext {
        let clock = std::sync::Arc::new(store::clock::ManualClock::new(1_000_000));
        EcsContext::new(
            std::sync::Arc::new(store::MemoryStore::new(clock.clone())),
            clock,
            "us-east-1",
            "1",
            b"key",
        )
    }

    fn service_using(arn: &str) -> ServiceRecord {
        ServiceRecord {
            wharf_deployments: vec![super::super::DeploymentRecord {
                wharf_load_balancers: vec![LoadBalancer {
                    target_group_arn: Some(arn.to_string()),
                    container_name: Some("app".into()),
                    container_port: Some(80),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    async fn put(ctx: &EcsContext, record: &TargetGroupRecord) {
        ctx.store
            .put(&elb_keys::target_group(&record.name), encode(record))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn services_read_only_their_groups_and_never_write_into_a_group_created_again() {
        let ctx = context();
        let original = group();
        put(&ctx, &original).await;
        let mut other = group();
        other.name = "other".into();
        other.arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/other/def".into();
        other.id = "def".into();
        put(&ctx, &other).await;

        // A service without load balancers reads (and knows) no group.
        let none = Balancing::load(&ctx, &ServiceRecord::default(), 0)
            .await
            .unwrap();
        assert!(none.groups.is_empty());
        let mut balancing = Balancing::load(&ctx, &service_using(&original.arn), 0)
            .await
            .unwrap();
        assert_eq!(
            balancing.groups.keys().collect::<Vec<_>>(),
            vec![&original.arn]
        );

        // Deleted and created again under the same name before the pass writes: the pending
        // registration must not land in the new group.
        assert!(balancing.register("svc", &original.arn, target("t1", 49153)));
        let mut again = group();
        again.arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/xyz".into();
        again.id = "xyz".into();
        put(&ctx, &again).await;
        balancing.commit(&ctx).await.unwrap();
        let (stored, _) = ctx
            .get_json::<TargetGroupRecord>(&elb_keys::target_group("web"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.arn, again.arn);
        assert!(stored.targets.is_empty(), "{:?}", stored.targets);
        assert!(balancing.groups.is_empty(), "the group left the pass");
    }

    #[tokio::test]
    async fn writes_drop_targets_that_finished_draining() {
        let ctx = context();
        let mut record = group();
        record.attributes.insert(
            model::elb::DEREGISTRATION_DELAY_ATTRIBUTE.into(),
            "10".into(),
        );
        let mut drained = target("old", 1);
        drained.deregistered_at_ms = Some(0);
        record.targets.push(drained);
        put(&ctx, &record).await;
        let mut balancing = Balancing::load(&ctx, &service_using(&record.arn), 20_000)
            .await
            .unwrap();
        assert!(balancing.register("svc", &record.arn, target("t1", 2)));
        balancing.commit(&ctx).await.unwrap();
        let (stored, _) = ctx
            .get_json::<TargetGroupRecord>(&elb_keys::target_group("web"))
            .await
            .unwrap()
            .unwrap();
        let tasks: Vec<_> = stored.targets.iter().map(|t| t.task_arn.clone()).collect();
        assert_eq!(tasks, vec![Some("t1".to_string())]);
    }
}
