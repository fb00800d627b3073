//! Placement for RunTask and StartTask: what a task needs (cpu, memory, host ports) and a
//! first-fit choice of instance, with AWS's failure reasons. The commit is checked: callers
//! write the plan with a compare on every instance revision they read, and re-plan on
//! conflict, so an instance is never over-committed.

use std::collections::BTreeSet;

use model::ecs::container_instance::{integer_resource, string_set_resource, Resource};
use model::ecs::task::{Failure, TaskOverride};
use model::ecs::task_definition::TaskDefinition;
use serde::{Deserialize, Serialize};

use super::cluster_state::{ClusterState, InstanceRecord};

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

/// Why `needs` does not fit on an instance right now, in AWS's words, or `None` if it fits.
pub fn misfit(
    state: &ClusterState,
    record: &InstanceRecord,
    needs: &TaskNeeds,
) -> Option<&'static str> {
    if record.instance.status.as_deref() != Some("ACTIVE") {
        return Some("INACTIVE");
    }
    if !state.connected.contains(&record.wharf_id) {
        return Some("AGENT");
    }
    let remaining = record
        .instance
        .remaining_resources
        .as_deref()
        .unwrap_or_default();
    if integer_resource(remaining, "CPU") < needs.cpu {
        return Some("RESOURCE:CPU");
    }
    if integer_resource(remaining, "MEMORY") < needs.memory {
        return Some("RESOURCE:MEMORY");
    }
    let used = |name: &str| -> BTreeSet<i64> {
        string_set_resource(remaining, name)
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let (tcp, udp) = (used("PORTS"), used("PORTS_UDP"));
    let mut seen_tcp = BTreeSet::new();
    let mut seen_udp = BTreeSet::new();
    if needs
        .tcp_ports
        .iter()
        .any(|p| tcp.contains(p) || !seen_tcp.insert(*p))
        || needs
            .udp_ports
            .iter()
            .any(|p| udp.contains(p) || !seen_udp.insert(*p))
    {
        return Some("RESOURCE:PORTS");
    }
    None
}

/// First fit: for each of `count` tasks, the first candidate (in order) it fits on, reserving
/// as it goes. Returns the chosen instance indexes and, if some tasks did not fit, one failure
/// per instance saying why (as RunTask reports them).
pub fn first_fit(
    state: &mut ClusterState,
    candidates: &[usize],
    needs: &TaskNeeds,
    count: usize,
) -> (Vec<usize>, Vec<Failure>) {
    let mut chosen = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..count {
        let mut placed = None;
        let mut reasons = Vec::new();
        for &index in candidates {
            let record = &state.instances[index].record;
            match misfit(state, record, needs) {
                None => {
                    placed = Some(index);
                    break;
                }
                Some(reason) => {
                    reasons.push((record.instance.container_instance_arn.clone(), reason))
                }
            }
        }
        match placed {
            Some(index) => {
                let record = &mut state.instances[index].record;
                let remaining = record
                    .instance
                    .remaining_resources
                    .clone()
                    .unwrap_or_default();
                record.instance.remaining_resources = Some(adjust_remaining(&remaining, needs, -1));
                chosen.push(index);
            }
            None => {
                failures = reasons
                    .into_iter()
                    .map(|(arn, reason)| Failure {
                        arn,
                        reason: Some(reason.to_string()),
                        detail: None,
                    })
                    .collect();
                break;
            }
        }
    }
    (chosen, failures)
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
