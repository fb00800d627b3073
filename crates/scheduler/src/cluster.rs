//! The scheduler's working copy of the cluster: the snapshot's container instances plus what
//! changes as tasks are placed (remaining resources, ports, GPUs, tasks per group), and the
//! feasibility check that decides whether one instance can take one task.
//!
//! Architecture invariant: a placement only ever moves resources from "remaining" to "used", so
//! everything here is monotone between two calls that give resources back
//! ([`crate::Scheduler::release`], [`crate::Scheduler::upsert_container_instance`]); the selection
//! indices rely on it to set aside instances that stopped fitting.

use std::collections::HashMap;
use std::sync::Arc;

use crate::plan::RejectionReason;
use crate::query::{Expression, InstanceFacts};
use crate::random::mix;
use crate::request::{PlacementStrategy, TaskRequirements};
use crate::snapshot::{ContainerInstance, ContainerInstanceStatus, Protocol};

/// An interned task group name.
pub(crate) type GroupId = u32;

/// What changes on a container instance as tasks are placed.
#[derive(Debug, Clone)]
pub(crate) struct InstanceState {
    pub cpu: u32,
    pub memory: u32,
    /// Ports in use, sorted.
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    /// GPUs not assigned to a task, sorted so assignment is deterministic.
    pub gpus: Vec<String>,
    pub running_tasks: u32,
    /// Tasks per group; few groups per instance, so a vector beats a map.
    pub groups: Vec<(GroupId, u32)>,
}

impl InstanceState {
    pub fn group_count(&self, group: GroupId) -> u32 {
        self.groups
            .iter()
            .find(|(g, _)| *g == group)
            .map_or(0, |(_, n)| *n)
    }

    fn ports(&self, protocol: Protocol) -> &Vec<u16> {
        match protocol {
            Protocol::Tcp => &self.tcp_ports,
            Protocol::Udp => &self.udp_ports,
        }
    }

    fn ports_mut(&mut self, protocol: Protocol) -> &mut Vec<u16> {
        match protocol {
            Protocol::Tcp => &mut self.tcp_ports,
            Protocol::Udp => &mut self.udp_ports,
        }
    }
}

/// A request after validation: groups interned, expressions parsed and split into those that can
/// be evaluated once per snapshot ("static") and those that read the tasks on an instance.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRequest {
    pub group: GroupId,
    pub requirements: TaskRequirements,
    /// The request names the same host port twice, so no instance can ever fit it.
    pub ports_conflict: bool,
    /// Texts of the static `memberOf` expressions: the key of `static_filter`.
    pub static_key: Vec<String>,
    /// Per container instance: every static expression holds. `None` when there are none.
    pub static_filter: Option<Arc<Vec<bool>>>,
    pub dynamic: Vec<Arc<Expression>>,
    /// Texts of the dynamic expressions, part of the index key when `dynamic_falling`.
    pub dynamic_key: Vec<String>,
    /// Every dynamic expression can only turn false as tasks land, so an instance refused by
    /// them stays refused (until something gives resources back).
    pub dynamic_falling: bool,
    pub distinct_instance: bool,
    /// Normalised: nothing after the first `random`, no repeats.
    pub strategies: Vec<PlacementStrategy>,
}

/// Interned group names.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupNames {
    ids: HashMap<String, GroupId>,
    names: Vec<String>,
}

impl GroupNames {
    pub fn intern(&mut self, name: &str) -> GroupId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as GroupId;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    pub fn name(&self, id: GroupId) -> &str {
        &self.names[id as usize]
    }
}

/// The container instances and their changing state.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub instances: Vec<ContainerInstance>,
    pub state: Vec<InstanceState>,
    pub groups: GroupNames,
    /// A fixed pseudo-random priority per instance, the last tie-breaker of every strategy.
    pub tiebreak: Vec<u64>,
    tiebreak_seed: u64,
}

impl Cluster {
    pub fn new(instances: Vec<ContainerInstance>, tiebreak_seed: u64) -> Self {
        let mut cluster = Cluster {
            instances: Vec::with_capacity(instances.len()),
            state: Vec::with_capacity(instances.len()),
            groups: GroupNames::default(),
            tiebreak: Vec::with_capacity(instances.len()),
            tiebreak_seed,
        };
        for instance in instances {
            cluster.push(instance);
        }
        cluster
    }

    pub fn push(&mut self, instance: ContainerInstance) -> usize {
        let index = self.instances.len();
        let state = self.state_of(&instance);
        self.instances.push(instance);
        self.state.push(state);
        self.tiebreak
            .push(mix(self.tiebreak_seed ^ mix(index as u64 + 1)));
        index
    }

    pub fn replace(&mut self, index: usize, instance: ContainerInstance) {
        self.state[index] = self.state_of(&instance);
        self.instances[index] = instance;
    }

    fn state_of(&mut self, instance: &ContainerInstance) -> InstanceState {
        let sorted = |ports: &Vec<u16>| {
            let mut ports = ports.clone();
            ports.sort_unstable();
            ports.dedup();
            ports
        };
        let mut gpus = instance.remaining.gpu_ids.clone();
        gpus.sort_unstable();
        let mut groups: Vec<(GroupId, u32)> = Vec::new();
        for task in &instance.tasks {
            let id = self.groups.intern(&task.group);
            match groups.iter_mut().find(|(g, _)| *g == id) {
                Some((_, n)) => *n += 1,
                None => groups.push((id, 1)),
            }
        }
        InstanceState {
            cpu: instance.remaining.cpu,
            memory: instance.remaining.memory,
            tcp_ports: sorted(&instance.remaining.tcp_ports),
            udp_ports: sorted(&instance.remaining.udp_ports),
            gpus,
            running_tasks: instance.running_tasks_count,
            groups,
        }
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// ECS places only on ACTIVE container instances; the others are not even candidates.
    pub fn is_active(&self, index: usize) -> bool {
        self.instances[index].status == ContainerInstanceStatus::Active
    }

    /// Whether the instance can take one more task of the request, checked in AWS's documented
    /// order (agent, resources, then constraints) so the reason is the first that fails.
    pub fn check(&self, index: usize, request: &CompiledRequest) -> Result<(), RejectionReason> {
        let instance = &self.instances[index];
        let state = &self.state[index];
        let needs = &request.requirements;
        if !instance.agent_connected {
            return Err(RejectionReason::Agent);
        }
        if state.cpu < needs.cpu {
            return Err(RejectionReason::Cpu);
        }
        if state.memory < needs.memory {
            return Err(RejectionReason::Memory);
        }
        if request.ports_conflict
            || needs
                .host_ports
                .iter()
                .any(|p| state.ports(p.protocol).binary_search(&p.port).is_ok())
        {
            return Err(RejectionReason::Ports);
        }
        if (state.gpus.len() as u64) < u64::from(needs.gpu) {
            return Err(RejectionReason::Gpu);
        }
        if let Some(filter) = &request.static_filter {
            if !filter[index] {
                return Err(RejectionReason::MemberOf);
            }
        }
        if !request.dynamic.is_empty() {
            let facts = self.facts(index);
            if !request.dynamic.iter().all(|e| e.matches(&facts)) {
                return Err(RejectionReason::MemberOf);
            }
        }
        if request.distinct_instance && state.group_count(request.group) > 0 {
            return Err(RejectionReason::DistinctInstance);
        }
        Ok(())
    }

    /// Reserves one task of the request on the instance; returns the GPUs assigned.
    /// The caller has checked that it fits.
    pub fn place(&mut self, index: usize, request: &CompiledRequest) -> Vec<String> {
        let state = &mut self.state[index];
        let needs = &request.requirements;
        state.cpu -= needs.cpu;
        state.memory -= needs.memory;
        for port in &needs.host_ports {
            let ports = state.ports_mut(port.protocol);
            if let Err(at) = ports.binary_search(&port.port) {
                ports.insert(at, port.port);
            }
        }
        let gpus: Vec<String> = state.gpus.drain(..needs.gpu as usize).collect();
        state.running_tasks += 1;
        match state.groups.iter_mut().find(|(g, _)| *g == request.group) {
            Some((_, n)) => *n += 1,
            None => state.groups.push((request.group, 1)),
        }
        gpus
    }

    /// Gives back what [`Cluster::place`] reserved.
    pub fn unplace(
        &mut self,
        index: usize,
        requirements: &TaskRequirements,
        group: GroupId,
        gpu_ids: &[String],
    ) {
        let state = &mut self.state[index];
        state.cpu += requirements.cpu;
        state.memory += requirements.memory;
        for port in &requirements.host_ports {
            let ports = state.ports_mut(port.protocol);
            if let Ok(at) = ports.binary_search(&port.port) {
                ports.remove(at);
            }
        }
        state.gpus.extend(gpu_ids.iter().cloned());
        state.gpus.sort_unstable();
        state.running_tasks = state.running_tasks.saturating_sub(1);
        if let Some((_, n)) = state.groups.iter_mut().find(|(g, _)| *g == group) {
            *n = n.saturating_sub(1);
        }
    }

    pub fn facts(&self, index: usize) -> Facts<'_> {
        Facts {
            instance: &self.instances[index],
            state: &self.state[index],
            groups: &self.groups,
        }
    }
}

/// A container instance as the query language sees it mid-plan: the snapshot's attributes with
/// the tasks (and running count) including those placed so far. A plan's tasks count as running,
/// which is what a later task of the same plan would see once they start.
pub(crate) struct Facts<'a> {
    instance: &'a ContainerInstance,
    state: &'a InstanceState,
    groups: &'a GroupNames,
}

impl InstanceFacts for Facts<'_> {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.instance.attribute(name)
    }
    fn agent_connected(&self) -> bool {
        self.instance.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.instance.agent_version.as_deref()
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.instance.ec2_instance_id.as_deref()
    }
    fn registered_at(&self) -> i64 {
        self.instance.registered_at
    }
    fn running_tasks_count(&self) -> u32 {
        self.state.running_tasks
    }
    fn any_task_group(&self, predicate: &mut dyn FnMut(&str) -> bool) -> bool {
        self.state
            .groups
            .iter()
            .any(|(g, n)| *n > 0 && predicate(self.groups.name(*g)))
    }
}
