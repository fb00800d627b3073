//! awsvpc task networking on one host: each subnet is a Docker bridge network
//! (`wharf-<subnet-id>`, the subnet's range, the host on its gateway address, masqueraded so
//! tasks reach out), each task a network namespace held by its pause container, which takes
//! the ENI's address there; the task's containers join that namespace (`container:<pause>`),
//! so they reach each other on localhost and the task's address answers from the host.
//!
//! - [`pause`]: the pause program, built by `build.rs`, imported into the engine once;
//! - [`firewall`]: security groups as an iptables ruleset for the task's namespace;
//! - [`enforcer`]: the [`NetworkEnforcer`] seam that loads it (iptables through nsenter, or a
//!   fake).
//!
//! The networks stay when tasks end (other tasks of the subnet may use them; creating one
//! costs a bridge and a few rules); the pause container goes with its task.

use std::collections::BTreeMap;

use model::agent::TaskNetwork;
use model::ecs::task::Task;
use model::ecs::task_definition::TaskDefinition;

use crate::labels;
use crate::runner::spec::container_engine_name;
use crate::runtime::{ContainerSpec, EndpointSpec, NetworkMode, NetworkSpec};

pub mod enforcer;
pub mod firewall;
pub mod pause;

pub use enforcer::{EnforcerError, FakeEnforcer, IptablesEnforcer, NetworkEnforcer};

/// The container name the pause container carries in its labels, as the ECS agent names it.
/// Task container names cannot contain `~`, so it never collides with one.
pub const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";
/// The interface of the pause container on its subnet's network.
pub const TASK_INTERFACE: &str = "eth0";
/// Docker's option that makes a bridge network NAT its containers' outgoing traffic.
pub const MASQUERADE_OPTION: &str = "com.docker.network.bridge.enable_ip_masquerade";

/// The engine network backing a subnet.
pub fn network_name(subnet_id: &str) -> String {
    format!("wharf-{subnet_id}")
}

/// The bridge network of the task's subnet.
pub fn subnet_network(network: &TaskNetwork) -> NetworkSpec {
    NetworkSpec {
        name: network_name(&network.subnet_id),
        subnet: network.subnet_cidr.clone(),
        gateway: network.gateway_ipv4_address.clone(),
        labels: BTreeMap::from([(labels::SUBNET_ID.to_string(), network.subnet_id.clone())]),
        options: BTreeMap::from([(MASQUERADE_OPTION.to_string(), "true".to_string())]),
    }
}

/// The ruleset enforcing a task's security groups in its namespace.
pub fn task_ruleset(network: &TaskNetwork) -> String {
    firewall::ruleset(
        &network.security_groups,
        Some(network.gateway_ipv4_address.as_str()),
    )
}

/// The pause container of an awsvpc task: the task's labels (so a restarted agent re-adopts
/// it with the task instead of creating another), the pause marker, and the ENI's address on
/// the subnet's network.
pub fn pause_container_spec(
    task: &Task,
    definition: &TaskDefinition,
    network: &TaskNetwork,
    owner_labels: &BTreeMap<String, String>,
) -> ContainerSpec {
    let mut labels = owner_labels.clone();
    labels.insert(
        labels::CONTAINER_NAME.to_string(),
        PAUSE_CONTAINER_NAME.to_string(),
    );
    labels.insert(labels::PAUSE.to_string(), "true".to_string());
    let network_name = network_name(&network.subnet_id);
    ContainerSpec {
        name: container_engine_name(task, definition, "internalecspause"),
        image: pause::image_reference(),
        cmd: Some(vec![pause::BINARY_PATH.to_string()]),
        labels,
        // The kernel's minimum: it only waits.
        cpu_shares: Some(2),
        network_mode: NetworkMode::Network(network_name.clone()),
        endpoint: Some(EndpointSpec {
            network: network_name,
            ipv4_address: Some(network.private_ipv4_address.clone()),
            mac_address: (!network.mac_address.is_empty()).then(|| network.mac_address.clone()),
        }),
        stop_timeout: Some(std::time::Duration::from_secs(5)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_container_takes_the_enis_address_on_its_subnets_network() {
        let network = TaskNetwork {
            network_interface_id: "eni-1".into(),
            subnet_id: "subnet-abc".into(),
            subnet_cidr: "10.213.0.0/24".into(),
            gateway_ipv4_address: "10.213.0.1".into(),
            private_ipv4_address: "10.213.0.10".into(),
            mac_address: "0e:00:00:00:00:0a".into(),
            security_groups: Vec::new(),
        };
        let spec = subnet_network(&network);
        assert_eq!(spec.name, "wharf-subnet-abc");
        assert_eq!(
            spec.options.get(MASQUERADE_OPTION).map(String::as_str),
            Some("true")
        );
        let task = Task {
            task_arn: Some("arn:aws:ecs:us-east-1:0:task/default/0123".into()),
            ..Default::default()
        };
        let definition = TaskDefinition {
            family: Some("web".into()),
            revision: Some(2),
            ..Default::default()
        };
        let owner = BTreeMap::from([(labels::TASK_ARN.to_string(), "t".to_string())]);
        let pause = pause_container_spec(&task, &definition, &network, &owner);
        assert_eq!(pause.name, "ecs-web-2-internalecspause-0123");
        assert_eq!(
            pause.network_mode,
            NetworkMode::Network("wharf-subnet-abc".into())
        );
        let endpoint = pause.endpoint.expect("an endpoint");
        assert_eq!(endpoint.ipv4_address.as_deref(), Some("10.213.0.10"));
        assert_eq!(endpoint.mac_address.as_deref(), Some("0e:00:00:00:00:0a"));
        assert_eq!(
            pause.labels.get(labels::CONTAINER_NAME).map(String::as_str),
            Some(PAUSE_CONTAINER_NAME)
        );
        assert_eq!(
            pause.labels.get(labels::PAUSE).map(String::as_str),
            Some("true")
        );
        assert_eq!(
            pause.labels.get(labels::TASK_ARN).map(String::as_str),
            Some("t")
        );
    }
}
