//! What the agent tells the server about its host: CPU units and memory (read from the host or
//! overridden), the reserved ports ECS reserves, the CPU architecture, and the attributes a
//! container instance carries (`ecs.*` plus the capabilities this agent implements, which task
//! definitions' `requiresAttributes` are matched against).

use model::ecs::container_instance::Resource;

/// Ports ECS reserves on every instance: SSH, the Docker daemon, the ECS agent's introspection.
pub const DEFAULT_RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];

/// Logical CPUs × 1024, ECS's CPU units.
pub fn host_cpu_units() -> i64 {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    cores as i64 * 1024
}

/// Total memory in MiB from `/proc/meminfo`, if readable.
pub fn host_memory_mib() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total_mib(&text)
}

fn parse_mem_total_mib(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `ecs.cpu-architecture` as ECS spells it.
pub fn cpu_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    }
}

/// The registered resources: CPU and MEMORY (after reservations, never negative), and the
/// reserved TCP and UDP ports.
pub fn total_resources(
    cpu_units: i64,
    memory_mib: i64,
    reserved_ports: &[u16],
    reserved_udp_ports: &[u16],
) -> Vec<Resource> {
    let ports = |list: &[u16]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    vec![
        Resource::integer("CPU", cpu_units.max(0)),
        Resource::integer("MEMORY", memory_mib.max(0)),
        Resource::string_set("PORTS", ports(reserved_ports)),
        Resource::string_set("PORTS_UDP", ports(reserved_udp_ports)),
    ]
}

/// The capability attributes of this agent, for an engine speaking `api_version` (`1.41`):
/// every Docker remote API version from 1.17 up to it, the logging drivers it passes through,
/// and the ECS features the runner implements.
pub fn capability_attributes(api_version: &str) -> Vec<String> {
    let mut names = Vec::new();
    let max_minor = api_version
        .split_once('.')
        .and_then(|(_, minor)| minor.parse::<u32>().ok())
        .unwrap_or(24);
    for minor in 17..=max_minor.min(44) {
        names.push(format!(
            "com.amazonaws.ecs.capability.docker-remote-api.1.{minor}"
        ));
    }
    // The engine's drivers are passed through; awslogs is the agent's own (json-file in the
    // engine, shipped to the endpoint's CloudWatch Logs).
    for driver in [
        "json-file",
        "none",
        "syslog",
        "journald",
        "gelf",
        "fluentd",
        "splunk",
        "local",
        "awslogs",
    ] {
        names.push(format!(
            "com.amazonaws.ecs.capability.logging-driver.{driver}"
        ));
    }
    names.extend(
        [
            "com.amazonaws.ecs.capability.privileged-container",
            "ecs.capability.container-health-check",
            "ecs.capability.container-ordering",
            "ecs.capability.docker-plugin.local",
        ]
        .map(str::to_string),
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ecs::container_instance::{integer_resource, string_set_resource};

    #[test]
    fn reads_mem_total() {
        let meminfo = "MemTotal:       24567890 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_mem_total_mib(meminfo), Some(23992));
        assert_eq!(parse_mem_total_mib("nothing"), None);
    }

    #[test]
    fn resources_are_ecs_shaped() {
        let resources = total_resources(2048, 3000, &DEFAULT_RESERVED_PORTS, &[]);
        assert_eq!(integer_resource(&resources, "CPU"), 2048);
        assert_eq!(integer_resource(&resources, "MEMORY"), 3000);
        assert_eq!(
            string_set_resource(&resources, "PORTS"),
            vec!["22", "2375", "2376", "51678", "51679"]
        );
        assert_eq!(
            string_set_resource(&resources, "PORTS_UDP"),
            Vec::<String>::new()
        );
        assert_eq!(
            integer_resource(&total_resources(-5, -1, &[], &[]), "CPU"),
            0
        );
    }

    #[test]
    fn capabilities_follow_the_engine_api() {
        let names = capability_attributes("1.41");
        assert!(names.contains(&"com.amazonaws.ecs.capability.docker-remote-api.1.17".to_string()));
        assert!(names.contains(&"com.amazonaws.ecs.capability.docker-remote-api.1.41".to_string()));
        assert!(!names.contains(&"com.amazonaws.ecs.capability.docker-remote-api.1.42".to_string()));
        assert!(names.contains(&"ecs.capability.container-health-check".to_string()));
        assert!(host_cpu_units() >= 1024);
        // ECS names the architectures x86_64 and arm64 (not Rust's aarch64).
        #[cfg(target_arch = "x86_64")]
        assert_eq!(cpu_architecture(), "x86_64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(cpu_architecture(), "arm64");
    }
}
