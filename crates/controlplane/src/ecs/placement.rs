//! Placement for RunTask and StartTask: what a task needs (cpu, memory, host ports), the
//! scheduler's view of a cluster, and planning with the `scheduler` crate (constraints,
//! strategies, AWS's failure reasons). The commit is checked: callers write the plan with a
//! compare on every instance revision they read, and re-plan on conflict, so an instance is
//! never over-committed.

use std::collections::{BTreeMap, BTreeSet};

use model::ecs::container_instance::{
    integer_resource, string_set_resource, ContainerInstance, Resource,
};
use model::ecs::task::{Failure, TaskOverride};
use model::ecs::task_definition::TaskDefinition;
use scheduler::{ContainerInstanceStatus, PlacementRequest, RequestError};
use serde::{Deserialize, Serialize};

use super::cluster_state::{ClusterState, StoredInstance};
use super::EcsError;

/// What one task reserves on its instance while it is not STOPPED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskNeeds {
    pub cpu: i64,
    pub memory: i64,
    pub tcp_ports: Vec<i64>,
    pub udp_ports: Vec<i64>,
}

/// Task-level cpu as ECS accepts it: CPU units ("256") or vCPUs ("1 vCPU", "0.5 vcpu").
pub fn parse_cpu(text: &str) -> Option<i64> {
    let lower = text.trim().to_ascii_lowercase();
    if let Some(vcpu) = lower.strip_suffix("vcpu") {
        return vcpu
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| (v * 1024.0).round() as i64);
    }
    lower.parse().ok()
}

/// Task-level memory as ECS accepts it: MiB ("512") or GB ("1 GB", "0.5gb").
pub fn parse_memory(text: &str) -> Option<i64> {
    let lower = text.trim().to_ascii_lowercase();
    if let Some(gb) = lower.strip_suffix("gb") {
        return gb
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| (v * 1024.0).round() as i64);
    }
    lower.parse().ok()
}

/// What a task of `definition` with `overrides` reserves. Task-level cpu/memory win; else the
/// containers' sum, counting a container's soft limit (memoryReservation) when it has one, as
/// ECS reserves it.
pub fn task_needs(definition: &TaskDefinition, overrides: Option<&TaskOverride>) -> TaskNeeds {
    let containers = definition
        .container_definitions
        .as_deref()
        .unwrap_or_default();
    let container_overrides = overrides
        .and_then(|o| o.container_overrides.as_deref())
        .unwrap_or_default();
    let (mut cpu, mut memory) = (0i64, 0i64);
    let mut needs = TaskNeeds::default();
    let network_mode = definition.network_mode.as_deref().unwrap_or("bridge");
    for container in containers {
        let o = container_overrides
            .iter()
            .find(|o| o.name == container.name);
        cpu += o.and_then(|o| o.cpu).or(container.cpu).unwrap_or(0) as i64;
        let reservation = o
            .and_then(|o| o.memory_reservation)
            .or(container.memory_reservation);
        let hard = o.and_then(|o| o.memory).or(container.memory);
        memory += reservation.or(hard).unwrap_or(0) as i64;
        for mapping in container.port_mappings.as_deref().unwrap_or_default() {
            let host_port = match network_mode {
                "host" => mapping.host_port.or(mapping.container_port),
                "bridge" => mapping.host_port.filter(|p| *p > 0),
                _ => None,
            };
            if let Some(port) = host_port {
                if mapping.protocol.as_deref() == Some("udp") {
                    needs.udp_ports.push(port as i64);
                } else {
                    needs.tcp_ports.push(port as i64);
                }
            }
        }
    }
    let task_cpu = overrides
        .and_then(|o| o.cpu.as_deref())
        .or(definition.cpu.as_deref());
    let task_memory = overrides
        .and_then(|o| o.memory.as_deref())
        .or(definition.memory.as_deref());
    needs.cpu = task_cpu.and_then(parse_cpu).unwrap_or(cpu);
    needs.memory = task_memory.and_then(parse_memory).unwrap_or(memory);
    needs
}

/// The remaining resources of an instance after reserving (`sign` = -1) or releasing (+1).
pub fn adjust_remaining(remaining: &[Resource], needs: &TaskNeeds, sign: i64) -> Vec<Resource> {
    let cpu = integer_resource(remaining, "CPU") + sign * needs.cpu;
    let memory = integer_resource(remaining, "MEMORY") + sign * needs.memory;
    let adjust_ports = |name: &str, ports: &[i64]| {
        let mut set: BTreeSet<i64> = string_set_resource(remaining, name)
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        for port in ports {
            if sign < 0 {
                set.insert(*port);
            } else {
                set.remove(port);
            }
        }
        set.into_iter().map(|p| p.to_string()).collect::<Vec<_>>()
    };
    vec![
        Resource::integer("CPU", cpu),
        Resource::integer("MEMORY", memory),
        Resource::string_set("PORTS", adjust_ports("PORTS", &needs.tcp_ports)),
        Resource::string_set("PORTS_UDP", adjust_ports("PORTS_UDP", &needs.udp_ports)),
    ]
}

/// Remaining resources after an instance registers again with `total`: what its tasks hold
/// (old registered minus old remaining) stays held, on top of the new totals; ports its tasks
/// hold stay reserved next to the newly registered ones.
pub fn reregistered_remaining(old: &ContainerInstance, total: &[Resource]) -> Vec<Resource> {
    let registered = old.registered_resources.as_deref().unwrap_or_default();
    let remaining = old.remaining_resources.as_deref().unwrap_or_default();
    let held_ports = |name: &str| -> Vec<i64> {
        let reserved = string_set_resource(registered, name);
        string_set_resource(remaining, name)
            .into_iter()
            .filter(|p| !reserved.contains(p))
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let held = TaskNeeds {
        cpu: integer_resource(registered, "CPU") - integer_resource(remaining, "CPU"),
        memory: integer_resource(registered, "MEMORY") - integer_resource(remaining, "MEMORY"),
        tcp_ports: held_ports("PORTS"),
        udp_ports: held_ports("PORTS_UDP"),
    };
    adjust_remaining(total, &held, -1)
}

/// The scheduler's view of one stored instance: resources, attributes (registered and custom),
/// connectivity and the tasks of each group on it.
pub fn scheduler_instance(
    state: &ClusterState,
    stored: &StoredInstance,
) -> scheduler::ContainerInstance {
    let record = &stored.record;
    let instance = &record.instance;
    let arn = instance.container_instance_arn.clone().unwrap_or_default();
    let resources = |list: &[Resource]| scheduler::Resources {
        cpu: integer_resource(list, "CPU").max(0) as u32,
        memory: integer_resource(list, "MEMORY").max(0) as u32,
        tcp_ports: string_set_resource(list, "PORTS")
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
        udp_ports: string_set_resource(list, "PORTS_UDP")
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
        gpu_ids: Vec::new(),
    };
    let status = match instance.status.as_deref() {
        Some("ACTIVE") => ContainerInstanceStatus::Active,
        Some("DRAINING") => ContainerInstanceStatus::Draining,
        Some("REGISTERING") => ContainerInstanceStatus::Registering,
        Some("DEREGISTERING") => ContainerInstanceStatus::Deregistering,
        Some("REGISTRATION_FAILED") => ContainerInstanceStatus::RegistrationFailed,
        _ => ContainerInstanceStatus::Inactive,
    };
    let rendered = state.render_instance(stored);
    let attributes: BTreeMap<String, Option<String>> = rendered
        .attributes
        .iter()
        .flatten()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    let tasks = state
        .tasks_on(&arn)
        .filter(|t| t.task.desired_status.as_deref() == Some("RUNNING"))
        .map(|t| scheduler::TaskOnInstance {
            group: t.task.group.clone().unwrap_or_default(),
            family: family_of(t.task.task_definition_arn.as_deref().unwrap_or("")),
        })
        .collect();
    scheduler::ContainerInstance {
        container_instance_arn: arn,
        ec2_instance_id: instance.ec2_instance_id.clone(),
        status,
        agent_connected: rendered.agent_connected.unwrap_or(false),
        agent_version: instance
            .version_info
            .as_ref()
            .and_then(|v| v.agent_version.clone()),
        registered_at: instance.registered_at.unwrap_or(0.0) as i64,
        registered: resources(instance.registered_resources.as_deref().unwrap_or_default()),
        remaining: resources(instance.remaining_resources.as_deref().unwrap_or_default()),
        attributes,
        running_tasks_count: rendered.running_tasks_count.unwrap_or(0).max(0) as u32,
        tasks,
    }
}

/// The family of a task definition ARN (`…:task-definition/web:3` → `web`).
pub fn family_of(task_definition_arn: &str) -> String {
    let tail = task_definition_arn.rsplit('/').next().unwrap_or("");
    tail.rsplit_once(':')
        .map(|(f, _)| f)
        .unwrap_or(tail)
        .to_string()
}

/// What to place, beyond what the task needs.
pub struct PlacementInput<'a> {
    pub needs: &'a TaskNeeds,
    pub group: String,
    pub family: String,
    pub task_definition_constraints: Vec<scheduler::PlacementConstraint>,
    pub constraints: Vec<scheduler::PlacementConstraint>,
    pub strategies: Vec<scheduler::PlacementStrategy>,
    pub count: u32,
}

/// The scheduler's request for `input`.
pub fn placement_request(input: PlacementInput<'_>, seed: u64) -> PlacementRequest {
    let mut host_ports: Vec<scheduler::HostPort> = input
        .needs
        .tcp_ports
        .iter()
        .filter_map(|p| u16::try_from(*p).ok())
        .map(scheduler::HostPort::tcp)
        .collect();
    host_ports.extend(
        input
            .needs
            .udp_ports
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .map(scheduler::HostPort::udp),
    );
    PlacementRequest {
        requirements: scheduler::TaskRequirements {
            cpu: input.needs.cpu.max(0) as u32,
            memory: input.needs.memory.max(0) as u32,
            host_ports,
            gpu: 0,
        },
        group: input.group,
        family: input.family,
        task_definition_constraints: input.task_definition_constraints,
        constraints: input.constraints,
        strategies: input.strategies,
        count: input.count,
        seed,
    }
}

impl From<RequestError> for EcsError {
    fn from(error: RequestError) -> Self {
        match error.error_code() {
            "ClientException" => EcsError::Client(error.to_string()),
            _ => EcsError::InvalidParameter(error.to_string()),
        }
    }
}

/// Plan `input.count` tasks over the instances at `candidates` (indexes into
/// `state.instances`), reserve what they need in `state` (so the caller's commit writes the new
/// remaining resources), and return the chosen indexes with `failures[]` for what did not fit.
pub fn plan(
    state: &mut ClusterState,
    candidates: &[usize],
    input: PlacementInput<'_>,
    seed: u64,
) -> Result<(Vec<usize>, Vec<Failure>), EcsError> {
    let snapshot = scheduler::Snapshot {
        container_instances: candidates
            .iter()
            .map(|&i| scheduler_instance(state, &state.instances[i]))
            .collect(),
    };
    let needs = input.needs;
    let request = placement_request(input, seed);
    let plan = scheduler::plan(&snapshot, &request)?;
    let failures = plan
        .failures(&snapshot.container_instances)
        .into_iter()
        .map(|f| Failure {
            arn: Some(f.arn),
            reason: Some(f.reason.to_string()),
            detail: None,
        })
        .collect();
    let mut chosen = Vec::new();
    for placement in &plan.placements {
        let index = candidates[placement.container_instance];
        let record = &mut state.instances[index].record;
        let remaining = record
            .instance
            .remaining_resources
            .clone()
            .unwrap_or_default();
        record.instance.remaining_resources = Some(adjust_remaining(&remaining, needs, -1));
        chosen.push(index);
    }
    Ok((chosen, failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ecs::task_definition::{ContainerDefinition, PortMapping};

    fn container(
        memory: Option<i32>,
        reservation: Option<i32>,
        host_port: Option<i32>,
    ) -> ContainerDefinition {
        ContainerDefinition {
            name: Some("c".into()),
            memory,
            memory_reservation: reservation,
            cpu: Some(128),
            port_mappings: host_port.map(|p| {
                vec![PortMapping {
                    container_port: Some(80),
                    host_port: Some(p),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn needs_count_soft_limits_static_ports_and_task_level_sizes() {
        let definition = TaskDefinition {
            container_definitions: Some(vec![
                container(Some(512), Some(128), Some(8080)),
                container(Some(256), None, Some(0)),
            ]),
            ..Default::default()
        };
        let needs = task_needs(&definition, None);
        assert_eq!(
            needs,
            TaskNeeds {
                cpu: 256,
                memory: 384,
                tcp_ports: vec![8080],
                udp_ports: vec![]
            }
        );
        let sized = TaskDefinition {
            cpu: Some("1 vCPU".into()),
            memory: Some("2 GB".into()),
            ..definition
        };
        let needs = task_needs(&sized, None);
        assert_eq!((needs.cpu, needs.memory), (1024, 2048));
    }

    #[test]
    fn re_registration_keeps_what_tasks_hold_and_takes_new_totals() {
        let old = ContainerInstance {
            registered_resources: Some(vec![
                Resource::integer("CPU", 2048),
                Resource::integer("MEMORY", 4096),
                Resource::string_set("PORTS", vec!["22".into()]),
            ]),
            remaining_resources: Some(vec![
                Resource::integer("CPU", 1792),
                Resource::integer("MEMORY", 3584),
                Resource::string_set("PORTS", vec!["22".into(), "8080".into()]),
            ]),
            ..Default::default()
        };
        let total = vec![
            Resource::integer("CPU", 4096),
            Resource::integer("MEMORY", 8192),
            Resource::string_set("PORTS", vec!["2375".into()]),
        ];
        let remaining = reregistered_remaining(&old, &total);
        assert_eq!(integer_resource(&remaining, "CPU"), 4096 - 256);
        assert_eq!(integer_resource(&remaining, "MEMORY"), 8192 - 512);
        assert_eq!(
            string_set_resource(&remaining, "PORTS"),
            vec!["2375", "8080"]
        );
    }

    #[test]
    fn reserving_then_releasing_restores_remaining() {
        let remaining = vec![
            Resource::integer("CPU", 2048),
            Resource::integer("MEMORY", 4096),
            Resource::string_set("PORTS", vec!["22".into()]),
            Resource::string_set("PORTS_UDP", vec![]),
        ];
        let needs = TaskNeeds {
            cpu: 256,
            memory: 512,
            tcp_ports: vec![8080],
            udp_ports: vec![53],
        };
        let reserved = adjust_remaining(&remaining, &needs, -1);
        assert_eq!(integer_resource(&reserved, "CPU"), 1792);
        assert_eq!(string_set_resource(&reserved, "PORTS"), vec!["22", "8080"]);
        let released = adjust_remaining(&reserved, &needs, 1);
        assert_eq!(integer_resource(&released, "MEMORY"), 4096);
        assert_eq!(string_set_resource(&released, "PORTS"), vec!["22"]);
        assert!(string_set_resource(&released, "PORTS_UDP").is_empty());
    }
}
