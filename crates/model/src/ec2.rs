//! The slice of EC2 that ECS's awsvpc networking needs: VPCs, subnets, security groups and the
//! elastic network interfaces (ENIs) tasks get. Member names follow the botocore EC2 model's
//! shape members (`VpcId`, `CidrBlock`, …), so a record serialises as the model's structure and
//! the EC2 protocol layer only renames to XML `locationName`s.
//!
//! Store layout (the control plane's `ec2/` prefix):
//!
//! | key | value |
//! | --- | --- |
//! | `ec2/vpc/<vpc-id>` | [`Vpc`] |
//! | `ec2/subnet/<subnet-id>` | [`Subnet`] |
//! | `ec2/security-group/<sg-id>` | [`SecurityGroup`] |
//! | `ec2/network-interface/<eni-id>` | [`NetworkInterface`] |
//! | `ec2/ip/<subnet-id>/<ipv4>` | the ENI id holding that address (created only if absent, so two tasks never get one address) |
//! | `ec2/default-vpc` | the default VPC's id (created once, with the VPC, so several servers starting together make one) |
//! | `ec2/vpc-attributes/<vpc-id>` | [`VpcAttributes`], once ModifyVpcAttribute has changed them |

use serde::{Deserialize, Serialize};

pub fn vpc_key(id: &str) -> String {
    format!("ec2/vpc/{id}")
}
pub const VPC_PREFIX: &str = "ec2/vpc/";
pub fn subnet_key(id: &str) -> String {
    format!("ec2/subnet/{id}")
}
pub const SUBNET_PREFIX: &str = "ec2/subnet/";
pub fn security_group_key(id: &str) -> String {
    format!("ec2/security-group/{id}")
}
pub const SECURITY_GROUP_PREFIX: &str = "ec2/security-group/";
pub fn network_interface_key(id: &str) -> String {
    format!("ec2/network-interface/{id}")
}
pub const NETWORK_INTERFACE_PREFIX: &str = "ec2/network-interface/";
pub fn ip_key(subnet_id: &str, ip: &str) -> String {
    format!("ec2/ip/{subnet_id}/{ip}")
}

/// Holds the default VPC's id; its existence means the defaults were created (even if the
/// default VPC was deleted since, as AWS lets users do).
pub const DEFAULT_VPC_KEY: &str = "ec2/default-vpc";
pub fn vpc_attributes_key(vpc_id: &str) -> String {
    format!("ec2/vpc-attributes/{vpc_id}")
}
pub const VPC_ATTRIBUTES_PREFIX: &str = "ec2/vpc-attributes/";

/// A VPC's DNS attributes (DescribeVpcAttribute / ModifyVpcAttribute). Absent until modified:
/// then DNS support is on, and DNS hostnames are on only in the default VPC, as in AWS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct VpcAttributes {
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
    #[serde(default)]
    pub enable_network_address_usage_metrics: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Ec2Tag {
    pub key: String,
    pub value: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Vpc {
    pub vpc_id: String,
    pub cidr_block: String,
    /// `available`.
    pub state: String,
    pub is_default: bool,
    pub owner_id: String,
    pub instance_tenancy: String,
    pub dhcp_options_id: String,
    #[serde(default)]
    pub tags: Vec<Ec2Tag>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Subnet {
    pub subnet_id: String,
    pub subnet_arn: String,
    pub vpc_id: String,
    pub cidr_block: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub available_ip_address_count: i64,
    pub default_for_az: bool,
    pub map_public_ip_on_launch: bool,
    /// `available`.
    pub state: String,
    pub owner_id: String,
    #[serde(default)]
    pub tags: Vec<Ec2Tag>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroup {
    pub group_id: String,
    pub group_name: String,
    pub description: String,
    pub vpc_id: String,
    pub owner_id: String,
    #[serde(default)]
    pub ip_permissions: Vec<IpPermission>,
    #[serde(default)]
    pub ip_permissions_egress: Vec<IpPermission>,
    #[serde(default)]
    pub tags: Vec<Ec2Tag>,
}

/// One rule: a protocol (`tcp`, `udp`, `icmp`, or `-1` for all), a port range (absent for
/// `-1`), and who may send: CIDR ranges and/or other security groups.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct IpPermission {
    pub ip_protocol: String,
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
    #[serde(default)]
    pub ip_ranges: Vec<IpRange>,
    #[serde(default)]
    pub user_id_group_pairs: Vec<UserIdGroupPair>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct IpRange {
    pub cidr_ip: String,
    pub description: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct UserIdGroupPair {
    pub group_id: String,
    pub user_id: Option<String>,
    pub description: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct GroupIdentifier {
    pub group_id: String,
    pub group_name: String,
}

/// A task's ENI. Created by the control plane when an awsvpc task is placed, deleted when the
/// task stops.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterface {
    pub network_interface_id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub mac_address: String,
    pub private_ip_address: String,
    /// `in-use` while its task lives.
    pub status: String,
    /// `interface`.
    pub interface_type: String,
    /// ECS writes `arn:aws:ecs:<region>:<account>:attachment/<uuid>`.
    pub description: String,
    pub groups: Vec<GroupIdentifier>,
    pub owner_id: String,
    /// The ECS service principal's id for ENIs ECS manages.
    pub requester_id: Option<String>,
    pub requester_managed: bool,
    pub source_dest_check: bool,
    /// The task that holds it (Wharf's own field, not on the wire).
    pub wharf_task_arn: Option<String>,
    #[serde(default)]
    pub tag_set: Vec<Ec2Tag>,
}
