//! Fargate's task size as container limits. A FARGATE task's `cpu` and `memory` are hard
//! limits for the whole task; the agent enforces them per container: a container with its own
//! `memory` (hard limit) or `cpu` keeps it, and what is left of the task's is split evenly
//! among the containers without one, so the limits add up to the task's size. Fargate has no
//! swap, so neither do these containers (the limit is memory plus swap).
//!
//! EC2 tasks are left as they are: their containers' own values apply (see `spec`).

use std::collections::BTreeMap;

use model::ecs::task::Task;
use model::ecs::task_definition::{ContainerDefinition, TaskDefinition};

use crate::runtime::ContainerSpec;

const MIB: i64 = 1024 * 1024;
/// Docker's CPU limit unit: a billionth of a CPU; ECS's: 1/1024 of one.
const NANOS_PER_CPU: i64 = 1_000_000_000;
const UNITS_PER_CPU: i64 = 1024;

/// One container's share of the task's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContainerLimits {
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
}

/// Why a task's size cannot be split among its containers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("task {what} {value:?} is not a valid value")]
    Invalid { what: &'static str, value: String },
    #[error("the containers' memory ({containers} MiB) leaves nothing of the task's memory ({task} MiB) for {without} container(s) without a memory limit")]
    MemoryExhausted {
        containers: i64,
        task: i64,
        without: usize,
    },
}

/// Whether the task runs with Fargate's semantics.
pub fn is_fargate(task: &Task) -> bool {
    task.launch_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("FARGATE"))
}

/// CPU units from ECS's forms (`256`, `1 vCPU`), parsed as registration parsed them.
pub fn parse_cpu_units(text: &str) -> Option<i64> {
    model::ecs::task_definition::parse_task_cpu(text).filter(|u| *u > 0)
}

/// MiB from ECS's forms (`512`, `1 GB`), parsed as registration parsed them.
pub fn parse_memory_mib(text: &str) -> Option<i64> {
    model::ecs::task_definition::parse_task_memory(text).filter(|m| *m > 0)
}

fn container_value(
    task: &Task,
    container: &ContainerDefinition,
    pick: impl Fn(&model::ecs::task::ContainerOverride) -> Option<i32>,
    own: Option<i32>,
) -> Option<i64> {
    let name = container.name.as_deref();
    task.overrides
        .as_ref()
        .and_then(|o| o.container_overrides.as_ref())
        .and_then(|list| list.iter().find(|o| o.name.as_deref() == name))
        .and_then(pick)
        .or(own)
        .map(i64::from)
        .filter(|v| *v > 0)
}

/// Splits `total` among `count` parts whose sizes differ by at most one.
fn split(total: i64, count: usize) -> Vec<i64> {
    let count_i = i64::try_from(count).unwrap_or(i64::MAX).max(1);
    let (base, extra) = (total / count_i, total % count_i);
    (0..count_i).map(|i| base + i64::from(i < extra)).collect()
}

/// Every container's limits for a FARGATE task (empty for other tasks, and for a task without
/// a size). CPU left for containers without their own is split the same way; when none is
/// left they get no CPU limit of their own.
pub fn task_limits(
    task: &Task,
    definition: &TaskDefinition,
) -> Result<BTreeMap<String, ContainerLimits>, LimitsError> {
    let mut limits: BTreeMap<String, ContainerLimits> = BTreeMap::new();
    if !is_fargate(task) {
        return Ok(limits);
    }
    let overrides = task.overrides.as_ref();
    let size = |what: &'static str,
                overridden: Option<&String>,
                task_value: Option<&String>,
                defined: Option<&String>,
                parse: fn(&str) -> Option<i64>|
     -> Result<Option<i64>, LimitsError> {
        match overridden.or(task_value).or(defined) {
            None => Ok(None),
            Some(text) => parse(text).map(Some).ok_or_else(|| LimitsError::Invalid {
                what,
                value: text.clone(),
            }),
        }
    };
    let task_memory = size(
        "memory",
        overrides.and_then(|o| o.memory.as_ref()),
        task.memory.as_ref(),
        definition.memory.as_ref(),
        parse_memory_mib,
    )?;
    let task_cpu = size(
        "cpu",
        overrides.and_then(|o| o.cpu.as_ref()),
        task.cpu.as_ref(),
        definition.cpu.as_ref(),
        parse_cpu_units,
    )?;
    let containers: Vec<&ContainerDefinition> =
        definition.container_definitions.iter().flatten().collect();
    let name = |c: &ContainerDefinition| c.name.clone().unwrap_or_default();

    if let Some(task_mib) = task_memory {
        let own: Vec<Option<i64>> = containers
            .iter()
            .map(|c| container_value(task, c, |o| o.memory, c.memory))
            .collect();
        let claimed: i64 = own.iter().flatten().sum();
        let without = own.iter().filter(|m| m.is_none()).count();
        let left = task_mib - claimed;
        if without > 0 && left <= 0 {
            return Err(LimitsError::MemoryExhausted {
                containers: claimed,
                task: task_mib,
                without,
            });
        }
        let mut shares = split(left.max(0) * MIB, without).into_iter();
        for (container, own) in containers.iter().zip(own) {
            let bytes = match own {
                Some(mib) => mib * MIB,
                None => shares.next().unwrap_or(0),
            };
            limits.entry(name(container)).or_default().memory_bytes = Some(bytes);
        }
    }
    if let Some(task_units) = task_cpu {
        let own: Vec<Option<i64>> = containers
            .iter()
            .map(|c| container_value(task, c, |o| o.cpu, c.cpu))
            .collect();
        let claimed: i64 = own.iter().flatten().sum();
        let without = own.iter().filter(|u| u.is_none()).count();
        let left_nanos = (task_units - claimed).max(0) * NANOS_PER_CPU / UNITS_PER_CPU;
        let mut shares = split(left_nanos, without).into_iter();
        for (container, own) in containers.iter().zip(own) {
            let nanos = match own {
                Some(units) => Some(units * NANOS_PER_CPU / UNITS_PER_CPU),
                None => shares.next().filter(|n| *n > 0),
            };
            limits.entry(name(container)).or_default().nano_cpus = nanos;
        }
    }
    Ok(limits)
}

/// Applies a container's limits to its spec: the hard memory limit without swap (a
/// reservation above it is lowered to it, which the engine would refuse), and the CPU limit.
pub fn apply(spec: &mut ContainerSpec, limits: &ContainerLimits) {
    if let Some(bytes) = limits.memory_bytes {
        spec.memory_limit_bytes = Some(bytes);
        spec.memory_swap_bytes = Some(bytes);
        spec.memory_swappiness = None;
        if let Some(reservation) = spec.memory_reservation_bytes {
            spec.memory_reservation_bytes = Some(reservation.min(bytes));
        }
    }
    if let Some(nanos) = limits.nano_cpus {
        spec.nano_cpus = Some(nanos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ecs::task::{ContainerOverride, TaskOverride};

    fn container(name: &str, cpu: Option<i32>, memory: Option<i32>) -> ContainerDefinition {
        ContainerDefinition {
            name: Some(name.into()),
            cpu,
            memory,
            ..Default::default()
        }
    }

    fn fargate(
        cpu: &str,
        memory: &str,
        containers: Vec<ContainerDefinition>,
    ) -> (Task, TaskDefinition) {
        let task = Task {
            launch_type: Some("FARGATE".into()),
            cpu: Some(cpu.into()),
            memory: Some(memory.into()),
            ..Default::default()
        };
        let definition = TaskDefinition {
            container_definitions: Some(containers),
            ..Default::default()
        };
        (task, definition)
    }

    #[test]
    fn sizes_parse_in_ecs_forms() {
        assert_eq!(parse_cpu_units("256"), Some(256));
        assert_eq!(parse_cpu_units("1 vCPU"), Some(1024));
        assert_eq!(parse_cpu_units("0.25 vcpu"), Some(256));
        assert_eq!(parse_cpu_units("lots"), None);
        assert_eq!(parse_memory_mib("512"), Some(512));
        assert_eq!(parse_memory_mib("2 GB"), Some(2048));
        assert_eq!(parse_memory_mib("0.5GB"), Some(512));
        assert_eq!(parse_memory_mib("0"), None);
    }

    #[test]
    fn what_is_left_is_split_evenly_and_limits_add_up_to_the_task() {
        let (task, definition) = fargate(
            "1024",
            "1000",
            vec![
                container("app", Some(512), Some(400)),
                container("a", None, None),
                container("b", None, None),
                container("c", None, Some(0)),
            ],
        );
        let limits = task_limits(&task, &definition).expect("splits");
        assert_eq!(limits["app"].memory_bytes, Some(400 * MIB));
        let memory: i64 = limits.values().filter_map(|l| l.memory_bytes).sum();
        assert_eq!(memory, 1000 * MIB);
        let shares: Vec<i64> = ["a", "b", "c"]
            .iter()
            .map(|n| limits[*n].memory_bytes.expect("a limit"))
            .collect();
        assert!(
            shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1,
            "{shares:?}"
        );
        assert_eq!(limits["app"].nano_cpus, Some(500_000_000));
        let cpu: i64 = limits.values().filter_map(|l| l.nano_cpus).sum();
        assert_eq!(cpu, 1_000_000_000);
    }

    #[test]
    fn overrides_count_and_ec2_tasks_are_left_alone() {
        let (mut task, definition) =
            fargate("0.5 vCPU", "1 GB", vec![container("app", None, None)]);
        task.overrides = Some(TaskOverride {
            memory: Some("2048".into()),
            container_overrides: Some(vec![ContainerOverride {
                name: Some("app".into()),
                cpu: Some(256),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let limits = task_limits(&task, &definition).expect("splits");
        assert_eq!(limits["app"].memory_bytes, Some(2048 * MIB));
        assert_eq!(limits["app"].nano_cpus, Some(250_000_000));
        task.launch_type = Some("EC2".into());
        assert!(task_limits(&task, &definition).expect("nothing").is_empty());
    }

    #[test]
    fn nothing_left_for_a_container_without_memory_is_an_error() {
        let (task, definition) = fargate(
            "256",
            "512",
            vec![
                container("app", Some(256), Some(512)),
                container("sidecar", None, None),
            ],
        );
        assert_eq!(
            task_limits(&task, &definition).map_err(|e| e.to_string()),
            Err("the containers' memory (512 MiB) leaves nothing of the task's memory (512 MiB) for 1 container(s) without a memory limit".to_string())
        );
    }

    #[test]
    fn applying_removes_swap_and_caps_the_reservation() {
        let mut spec = ContainerSpec {
            memory_reservation_bytes: Some(600 * MIB),
            ..Default::default()
        };
        apply(
            &mut spec,
            &ContainerLimits {
                memory_bytes: Some(512 * MIB),
                nano_cpus: Some(250_000_000),
            },
        );
        assert_eq!(spec.memory_limit_bytes, Some(512 * MIB));
        assert_eq!(spec.memory_swap_bytes, Some(512 * MIB));
        assert_eq!(spec.memory_reservation_bytes, Some(512 * MIB));
        assert_eq!(spec.nano_cpus, Some(250_000_000));
    }
}
