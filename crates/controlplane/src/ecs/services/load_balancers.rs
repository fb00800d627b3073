//! Services behind Elastic Load Balancing v2: checking a service's `loadBalancers` as ECS does,
//! and what the service scheduler does with them on every pass: register each running task of
//! a deployment in that deployment's target groups, deregister a task (and let it drain for the
//! group's deregistration delay) before stopping it, deregister tasks that stopped on their
//! own, and judge a task's availability by the health the data plane observed for its targets.
//!
//! The target group records (`model::elb::keys::target_group`) are the state: a task is
//! registered when a target names it (`task_arn`) without `deregistered_at_ms`, and draining
//! when every target that names it is deregistered. Each pass derives this again, so it holds
//! across server restarts; the service record only remembers why a draining task is to be
//! stopped (`ServiceRecord::wharf_draining`). The ELBv2 API writes the same records, so every
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

use std::collections::BTreeMap;

use model::ecs::service::LoadBalancer;
use model::ecs::task::Task;
use model::ecs::task_definition::TaskDefinition;
use model::elb::{
    keys as elb_keys, parse_target_group_arn, target_key, RegisteredTarget, TargetGroupRecord,
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
    /// (a reused host port still draining) registers it afresh, as RegisterTargets does.
    fn apply(&self, record: &mut TargetGroupRecord) -> bool {
        match self {
            TargetOp::Register(target) => {
                let key = target.key();
                match record.targets.iter_mut().find(|t| t.key() == key) {
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
    groups: BTreeMap<String, Group>,
    now_ms: i64,
}

/// The address and port a task is reached at in a group of `target_type`.
fn target_of(
    task: &Task,
    state: &ClusterState,
    target_type: &str,
    lb: &LoadBalancer,
) -> Option<(String, i32)> {
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
                        && b.protocol.as_deref().unwrap_or("tcp") == "tcp"
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

impl Balancing {
    /// Read every target group, and the observed health of those the service's deployments
    /// use. Services without load balancers, and clusters without target groups, cost one
    /// empty range.
    pub async fn load(
        ctx: &EcsContext,
        record: &ServiceRecord,
        now_ms: i64,
    ) -> Result<Balancing, EcsError> {
        let response = ctx
            .store
            .range(elb_keys::TARGET_GROUP_PREFIX, Default::default())
            .await?;
        let used: Vec<&str> = record
            .wharf_deployments
            .iter()
            .flat_map(|d| d.wharf_load_balancers.iter())
            .filter_map(|lb| lb.target_group_arn.as_deref())
            .collect();
        let mut groups = BTreeMap::new();
        for kv in &response.kvs {
            let group: TargetGroupRecord = match decode(kv) {
                Ok(group) => group,
                Err(error) => {
                    tracing::warn!(key = %kv.key, %error, "target group record skipped");
                    continue;
                }
            };
            let health = if used.contains(&group.arn.as_str()) {
                ctx.get_json::<TargetHealthRecord>(&elb_keys::target_health(&group.id))
                    .await?
                    .map(|(health, _)| health)
                    .unwrap_or_default()
            } else {
                TargetHealthRecord::default()
            };
            groups.insert(
                group.arn.clone(),
                Group {
                    record: group,
                    revision: kv.mod_revision,
                    key: kv.key.clone(),
                    health,
                    pending: Vec::new(),
                },
            );
        }
        Ok(Balancing { groups, now_ms })
    }

    fn targets_of<'a>(
        &'a self,
        task_arn: &'a str,
    ) -> impl Iterator<Item = (&'a Group, &'a RegisteredTarget)> + 'a {
        self.groups.values().flat_map(move |g| {
            g.record
                .targets
                .iter()
                .filter(move |t| t.task_arn.as_deref() == Some(task_arn))
                .map(move |t| (g, t))
        })
    }

    /// Whether the task has a target registered (not deregistered) in any group.
    pub fn registered(&self, task: &Task) -> bool {
        let arn = task.task_arn.as_deref().unwrap_or("");
        self.targets_of(arn)
            .any(|(_, t)| t.deregistered_at_ms.is_none())
    }

    /// Whether the task had targets and every one of them is deregistered (or already gone
    /// while the service still remembers draining it).
    pub fn draining(&self, record: &ServiceRecord, task: &Task, task_id: &str) -> bool {
        if is_stopping_or_stopped(task) {
            return false;
        }
        let arn = task.task_arn.as_deref().unwrap_or("");
        let mut any = false;
        for (_, target) in self.targets_of(arn) {
            if target.deregistered_at_ms.is_none() {
                return false;
            }
            any = true;
        }
        any || record.wharf_draining.contains_key(task_id)
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
                Some((
                    arn.to_string(),
                    target_of(task, state, &group.record.target_type, lb),
                ))
            })
            .collect()
    }

    /// Bring registrations in line with the tasks: register the running tasks of each
    /// deployment (except draining ones), deregister tasks that are stopping or stopped.
    /// Returns the events, in AWS's words.
    pub fn sync(
        &mut self,
        service: &str,
        record: &ServiceRecord,
        tasks: &[Task],
        state: &ClusterState,
        task_id: impl Fn(&Task) -> String,
    ) -> Vec<String> {
        let mut registered: BTreeMap<String, usize> = BTreeMap::new();
        let mut deregistered: BTreeMap<String, usize> = BTreeMap::new();
        for task in tasks {
            let arn = task.task_arn.clone().unwrap_or_default();
            if is_stopping_or_stopped(task) {
                for (arn_of_group, count) in self.deregister(&arn) {
                    *deregistered.entry(arn_of_group).or_default() += count;
                }
                continue;
            }
            let running = task.last_status.as_deref() == Some("RUNNING");
            let Some(index) = record.deployment_of(task) else {
                continue;
            };
            if !running || self.draining(record, task, &task_id(task)) {
                continue;
            }
            let load_balancers = &record.wharf_deployments[index].wharf_load_balancers;
            for (group_arn, target) in self.wanted(task, state, load_balancers) {
                let Some((id, port)) = target else {
                    continue;
                };
                let availability_zone = task.availability_zone.clone();
                let op = TargetOp::Register(RegisteredTarget {
                    id,
                    port,
                    availability_zone,
                    registered_at_ms: self.now_ms,
                    deregistered_at_ms: None,
                    task_arn: Some(arn.clone()),
                });
                if let Some(group) = self.groups.get_mut(&group_arn) {
                    if op.apply(&mut group.record) {
                        group.pending.push(op);
                        *registered.entry(group_arn).or_default() += 1;
                    }
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

    /// Deregister every registered target of a task; `(group ARN, how many)`.
    pub fn deregister(&mut self, task_arn: &str) -> Vec<(String, usize)> {
        let mut done = Vec::new();
        for (arn, group) in self.groups.iter_mut() {
            let before = group
                .record
                .targets
                .iter()
                .filter(|t| {
                    t.task_arn.as_deref() == Some(task_arn) && t.deregistered_at_ms.is_none()
                })
                .count();
            let op = TargetOp::Deregister {
                task_arn: task_arn.to_string(),
                at_ms: self.now_ms,
            };
            if before > 0 && op.apply(&mut group.record) {
                group.pending.push(op);
                done.push((arn.clone(), before));
            }
        }
        done
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
            let Some(group) = self.groups.get(&group_arn) else {
                continue;
            };
            let key = target_key(&id, port);
            let registered = group.record.targets.iter().find(|t| {
                t.key() == key
                    && t.task_arn.as_deref() == Some(arn)
                    && t.deregistered_at_ms.is_none()
            });
            // Only what was observed since this registration: an older observation of the
            // same address and port was of an earlier task.
            let observed = registered.and_then(|t| group.health.observed(t));
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
    /// and apply this pass's changes again.
    pub async fn commit(&mut self, ctx: &EcsContext) -> Result<(), EcsError> {
        for group in self.groups.values_mut() {
            if group.pending.is_empty() {
                continue;
            }
            let mut written = false;
            for _ in 0..16 {
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
                    written = true;
                    break;
                }
                let Some((mut fresh, revision)) =
                    ctx.get_json::<TargetGroupRecord>(&group.key).await?
                else {
                    // Deleted meanwhile: nothing left to register in.
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
            health_check: model::elb::HealthCheckConfig {
                enabled: true,
                protocol: "HTTP".into(),
                port: "traffic-port".into(),
                path: Some("/".into()),
                interval_seconds: 30,
                timeout_seconds: 5,
                healthy_threshold_count: 5,
                unhealthy_threshold_count: 2,
                matcher_http_code: Some("200".into()),
            },
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
}
