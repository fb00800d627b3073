//! awsvpc networking on the ECS side: checking a request's `networkConfiguration` against the
//! EC2 records (`model::ec2`), giving each placed task an ENI with its own address, releasing
//! it when the task stops, and describing a task's network to its agent.
//!
//! The ENI is written in the same store transaction as the task it belongs to (see
//! `tasks::launch`), and removed in the same transaction that records the task STOPPED
//! (`tasks::put_task`), so a failed placement leaves nothing behind and a stopped task holds
//! no address. An address is taken by creating `ec2/ip/<subnet>/<ip>` only if absent (create
//! revision 0), so two placements, on this server or another, never share one; within this
//! server, addresses being committed are also claimed in memory (`IpClaims`), so that two
//! launches batched into one transaction never pick the same one.
//!
//! This module does not serve the EC2 API (`crate::ec2` does) and never creates VPCs, subnets
//! or security groups.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use model::agent::TaskNetwork;
use model::ec2::{self, GroupIdentifier, IpRange, NetworkInterface, SecurityGroup, Subnet};
use model::ecs::service::NetworkConfiguration;
use model::ecs::task::Task;
use model::ecs::task_definition::TaskDefinition;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{Compare, CompareOp, CompareTarget, Op};

use super::{decode, encode, EcsContext, EcsError};

/// The account id ECS's service principal uses as `RequesterId` on the ENIs it manages.
pub const ECS_REQUESTER_ID: &str = "578734482556";

/// The most subnets and security groups an `awsvpcConfiguration` may name.
const MAX_SUBNETS: usize = 16;
const MAX_SECURITY_GROUPS: usize = 5;

/// The attachment type ECS reports for a task's ENI.
pub const ENI_ATTACHMENT_TYPE: &str = "ElasticNetworkInterface";

/// A request's awsvpc configuration, checked and resolved to the EC2 records it names.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedNetwork {
    /// In the order given; all in one VPC.
    pub subnets: Vec<Subnet>,
    /// The groups given, or the VPC's `default` group.
    pub security_groups: Vec<SecurityGroup>,
    pub assign_public_ip: bool,
}

/// What a task records about its ENI, so the stop can release it without reading EC2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EniAllocation {
    pub network_interface_id: String,
    pub subnet_id: String,
    pub private_ipv4_address: String,
    pub attachment_id: String,
}

/// Check `network` against the task definition and the launch type, with ECS's messages, and
/// resolve the subnets and security groups it names. `None` for tasks that are not awsvpc.
pub async fn resolve_network(
    ctx: &EcsContext,
    definition: &TaskDefinition,
    network: Option<&NetworkConfiguration>,
    fargate: bool,
) -> Result<Option<ResolvedNetwork>, EcsError> {
    let awsvpc = definition.network_mode.as_deref() == Some("awsvpc");
    let configuration = network.and_then(|n| n.awsvpc_configuration.as_ref());
    let Some(configuration) = configuration else {
        if awsvpc {
            return Err(EcsError::InvalidParameter(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
                    .to_string(),
            ));
        }
        return Ok(None);
    };
    if !awsvpc {
        return Err(EcsError::InvalidParameter(
            "Network Configuration is not valid for the given networkMode of this task definition."
                .to_string(),
        ));
    }
    if configuration.subnets.is_empty() {
        return Err(EcsError::InvalidParameter(
            "subnets can not be empty.".to_string(),
        ));
    }
    if configuration.subnets.len() > MAX_SUBNETS {
        // guessed: the wording of ECS's other list limits.
        return Err(EcsError::InvalidParameter(format!(
            "subnets can have at most {MAX_SUBNETS} items."
        )));
    }
    let given_groups = configuration.security_groups.clone().unwrap_or_default();
    if given_groups.len() > MAX_SECURITY_GROUPS {
        // guessed: the wording of ECS's other list limits.
        return Err(EcsError::InvalidParameter(format!(
            "securityGroups can have at most {MAX_SECURITY_GROUPS} items."
        )));
    }
    let assign_public_ip = match configuration.assign_public_ip.as_deref() {
        None | Some("DISABLED") => false,
        Some("ENABLED") => true,
        Some(other) => {
            // guessed: ECS's enum wording elsewhere.
            return Err(EcsError::InvalidParameter(format!(
                "Invalid value '{other}' for assignPublicIp. Valid values are: ENABLED, DISABLED."
            )));
        }
    };
    if assign_public_ip && !fargate {
        return Err(EcsError::InvalidParameter(
            "Assign public IP is not supported for this launch type.".to_string(),
        ));
    }
    let mut subnets: Vec<Subnet> = Vec::new();
    for id in &configuration.subnets {
        if subnets.iter().any(|s| &s.subnet_id == id) {
            continue;
        }
        match ctx.get_json::<Subnet>(&ec2::subnet_key(id)).await? {
            Some((subnet, _)) => subnets.push(subnet),
            None => {
                // ECS's message, with the EC2 error it wraps.
                return Err(EcsError::InvalidParameter(format!(
                    "Error retrieving subnet information for [{id}]: The subnet ID '{id}' does not exist (ErrorCode: InvalidSubnetID.NotFound)"
                )));
            }
        }
    }
    let vpc_id = subnets[0].vpc_id.clone();
    if let Some(other) = subnets.iter().find(|s| s.vpc_id != vpc_id) {
        // guessed wording.
        return Err(EcsError::InvalidParameter(format!(
            "The subnets {} and {} belong to different VPCs. All subnets must belong to the same VPC.",
            subnets[0].subnet_id, other.subnet_id
        )));
    }
    let mut security_groups: Vec<SecurityGroup> = Vec::new();
    for id in &given_groups {
        if security_groups.iter().any(|g| &g.group_id == id) {
            continue;
        }
        match ctx
            .get_json::<SecurityGroup>(&ec2::security_group_key(id))
            .await?
        {
            Some((group, _)) if group.vpc_id == vpc_id => security_groups.push(group),
            Some(_) => {
                // guessed: the message EC2 gives when an ENI's group and subnet differ.
                return Err(EcsError::InvalidParameter(format!(
                    "Security group {id} and subnet {} belong to different networks.",
                    subnets[0].subnet_id
                )));
            }
            None => {
                // guessed: the pattern of the subnet message, with EC2's error code.
                return Err(EcsError::InvalidParameter(format!(
                    "Error retrieving security group information for [{id}]: The security group '{id}' does not exist (ErrorCode: InvalidGroup.NotFound)"
                )));
            }
        }
    }
    if security_groups.is_empty() {
        let groups = ctx
            .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
            .await?;
        let default = groups
            .into_iter()
            .map(|(_, g)| g)
            .find(|g| g.vpc_id == vpc_id && g.group_name == "default");
        match default {
            Some(group) => security_groups.push(group),
            None => {
                // guessed: a VPC without its default group cannot happen in AWS.
                return Err(EcsError::InvalidParameter(format!(
                    "The VPC {vpc_id} has no default security group; name securityGroups explicitly."
                )));
            }
        }
    }
    Ok(Some(ResolvedNetwork {
        subnets,
        security_groups,
        assign_public_ip,
    }))
}

/// Addresses being committed by this server, so concurrent launches pick different ones. A
/// claim is given back when its `IpClaim` is dropped (after the commit, whatever its outcome:
/// a committed address is then held by its store key).
#[derive(Default)]
pub struct IpClaims {
    claimed: Arc<Mutex<HashSet<String>>>,
}

/// One claimed `ec2/ip/…` key.
pub struct IpClaim {
    claimed: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for IpClaim {
    fn drop(&mut self) {
        self.claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl IpClaims {
    fn try_claim(&self, key: &str) -> Option<IpClaim> {
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        if !claimed.insert(key.to_string()) {
            return None;
        }
        Some(IpClaim {
            claimed: self.claimed.clone(),
            key: key.to_string(),
        })
    }
}

/// A subnet's IPv4 range: (network address, broadcast address).
pub fn cidr_range(cidr: &str) -> Option<(u32, u32)> {
    let (address, prefix) = cidr.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    let network = u32::from(address) & mask;
    Some((network, network | !mask))
}

/// The subnet's gateway, its first host address (AWS's VPC router).
pub fn gateway(cidr: &str) -> Option<String> {
    cidr_range(cidr).map(|(network, _)| Ipv4Addr::from(network + 1).to_string())
}

/// The lowest address of `cidr` a task may take: not the network address, not the three AWS
/// reserves after it (router, DNS, future use), not the broadcast address, not `used`.
pub fn lowest_free(cidr: &str, used: &dyn Fn(&str) -> bool) -> Option<String> {
    let (network, broadcast) = cidr_range(cidr)?;
    let first = network.checked_add(4)?;
    (first..broadcast)
        .map(|a| Ipv4Addr::from(a).to_string())
        .find(|a| !used(a))
}

/// EC2's private DNS name for an address: `ip-172-31-0-4.ec2.internal` in us-east-1,
/// `ip-…​.<region>.compute.internal` elsewhere.
pub fn private_dns_name(region: &str, ip: &str) -> String {
    let host = format!("ip-{}", ip.replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

/// What allocating one ENI adds to a placement's transaction.
pub struct Allocated {
    pub allocation: EniAllocation,
    pub ops: Vec<Op>,
    pub compares: Vec<Compare>,
    /// Held until the commit is done.
    pub claim: IpClaim,
    pub availability_zone: String,
    pub mac_address: String,
}

/// Addresses already taken per subnet, read once per placement attempt.
#[derive(Default)]
pub struct UsedAddresses {
    by_subnet: HashMap<String, BTreeSet<String>>,
}

impl UsedAddresses {
    async fn of(&mut self, ctx: &EcsContext, subnet: &str) -> Result<&BTreeSet<String>, EcsError> {
        if !self.by_subnet.contains_key(subnet) {
            let prefix = format!("ec2/ip/{subnet}/");
            let taken = ctx.store.range(&prefix, Default::default()).await?;
            let set = taken
                .kvs
                .iter()
                .map(|kv| kv.key[prefix.len()..].to_string())
                .collect();
            self.by_subnet.insert(subnet.to_string(), set);
        }
        Ok(&self.by_subnet[subnet])
    }
}

/// Give a task about to be placed (on an instance in `instance_az`, if known) an ENI: a subnet
/// in that zone if one was given (else the first given one with room), its lowest free address,
/// and the ENI record. Nothing is written: the caller commits `ops` with the task.
pub async fn allocate(
    ctx: &EcsContext,
    network: &ResolvedNetwork,
    instance_az: Option<&str>,
    task_arn: &str,
    used: &mut UsedAddresses,
) -> Result<Allocated, EcsError> {
    let mut order: Vec<&Subnet> = network
        .subnets
        .iter()
        .filter(|s| Some(s.availability_zone.as_str()) == instance_az)
        .collect();
    if order.is_empty() {
        // No subnet in the instance's zone (or a zone-less Fargate instance): spread over the
        // given subnets rather than always filling the first.
        let mut all: Vec<&Subnet> = network.subnets.iter().collect();
        let start = rand::random::<u32>() as usize % all.len().max(1);
        all.rotate_left(start);
        order = all;
    }
    for subnet in order {
        let taken = used.of(ctx, &subnet.subnet_id).await?;
        let mut chosen = None;
        let candidate_used = |ip: &str| {
            taken.contains(ip)
                || ctx
                    .ip_claims
                    .claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&ec2::ip_key(&subnet.subnet_id, ip))
        };
        // A claim can be lost between the check and the claim (another launch of this
        // server); retry with that address counted as used.
        let mut skipped: BTreeSet<String> = BTreeSet::new();
        for _ in 0..64 {
            let Some(ip) = lowest_free(&subnet.cidr_block, &|ip: &str| {
                skipped.contains(ip) || candidate_used(ip)
            }) else {
                break;
            };
            match ctx
                .ip_claims
                .try_claim(&ec2::ip_key(&subnet.subnet_id, &ip))
            {
                Some(claim) => {
                    chosen = Some((ip, claim));
                    break;
                }
                None => {
                    skipped.insert(ip);
                }
            }
        }
        let Some((ip, claim)) = chosen else { continue };
        let eni_id = format!("eni-{}", random_hex(17));
        let attachment_id = uuid::Uuid::new_v4().to_string();
        let mac_address = random_mac();
        let record = NetworkInterface {
            network_interface_id: eni_id.clone(),
            subnet_id: subnet.subnet_id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            availability_zone: subnet.availability_zone.clone(),
            mac_address: mac_address.clone(),
            private_ip_address: ip.clone(),
            status: "in-use".to_string(),
            interface_type: "interface".to_string(),
            description: ctx.scope.arn("ecs", &format!("attachment/{attachment_id}")),
            groups: network
                .security_groups
                .iter()
                .map(|g| GroupIdentifier {
                    group_id: g.group_id.clone(),
                    group_name: g.group_name.clone(),
                })
                .collect(),
            owner_id: ctx.scope.account_id.clone(),
            requester_id: Some(ECS_REQUESTER_ID.to_string()),
            requester_managed: true,
            source_dest_check: true,
            wharf_task_arn: Some(task_arn.to_string()),
            tag_set: Vec::new(),
        };
        let ip_key = ec2::ip_key(&subnet.subnet_id, &ip);
        let eni_key = ec2::network_interface_key(&eni_id);
        let compares = vec![
            Compare {
                key: ip_key.clone(),
                target: CompareTarget::CreateRevision(0),
                op: CompareOp::Equal,
            },
            Compare {
                key: eni_key.clone(),
                target: CompareTarget::CreateRevision(0),
                op: CompareOp::Equal,
            },
        ];
        let ops = vec![
            Op::Put {
                key: ip_key,
                value: encode(&eni_id),
                lease: None,
            },
            Op::Put {
                key: eni_key,
                value: encode(&record),
                lease: None,
            },
        ];
        return Ok(Allocated {
            allocation: EniAllocation {
                network_interface_id: eni_id,
                subnet_id: subnet.subnet_id.clone(),
                private_ipv4_address: ip,
                attachment_id,
            },
            ops,
            compares,
            claim,
            availability_zone: subnet.availability_zone.clone(),
            mac_address,
        });
    }
    // guessed: the EC2 error ECS would surface when no subnet has a free address.
    Err(EcsError::InvalidParameter(format!(
        "There are not enough free addresses in the subnets [{}] to create a network interface (ErrorCode: InsufficientFreeAddressesInSubnet)",
        network
            .subnets
            .iter()
            .map(|s| s.subnet_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Show a task's ENI on the task as ECS does: one `ElasticNetworkInterface` attachment (status
/// PRECREATED until the task runs), each container's `networkInterfaces`, and the task's
/// Availability Zone from the subnet.
pub fn apply_to_task(task: &mut Task, allocated: &Allocated, region: &str) {
    let eni = &allocated.allocation;
    let detail = |name: &str, value: &str| json!({ "name": name, "value": value });
    let attachment = json!({
        "id": eni.attachment_id,
        "type": ENI_ATTACHMENT_TYPE,
        "status": "PRECREATED",
        "details": [
            detail("subnetId", &eni.subnet_id),
            detail("networkInterfaceId", &eni.network_interface_id),
            detail("macAddress", &allocated.mac_address),
            detail("privateDnsName", &private_dns_name(region, &eni.private_ipv4_address)),
            detail("privateIPv4Address", &eni.private_ipv4_address),
        ],
    });
    task.attachments
        .get_or_insert_with(Vec::new)
        .push(attachment);
    for container in task.containers.iter_mut().flatten() {
        container.network_interfaces = Some(vec![json!({
            "attachmentId": eni.attachment_id,
            "privateIpv4Address": eni.private_ipv4_address,
        })]);
    }
    task.availability_zone = Some(allocated.availability_zone.clone());
}

/// The ENI attachment's status as the task's lifecycle moves: ATTACHED once the task runs,
/// DELETED once it stopped (and its ENI is gone). Only ever forward.
pub fn advance_attachments(task: &mut Task) {
    let rank = |s: &str| match s {
        "PRECREATED" => 1,
        "ATTACHING" => 2,
        "ATTACHED" => 3,
        "DETACHING" => 4,
        "DELETED" => 5,
        _ => 0,
    };
    let target = match task.last_status.as_deref() {
        Some("RUNNING" | "DEACTIVATING" | "STOPPING" | "DEPROVISIONING") => "ATTACHED",
        Some("STOPPED") => "DELETED",
        _ => return,
    };
    for attachment in task.attachments.iter_mut().flatten() {
        if attachment.get("type").and_then(Value::as_str) != Some(ENI_ATTACHMENT_TYPE) {
            continue;
        }
        let current = attachment
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if rank(target) > rank(&current) {
            attachment["status"] = Value::String(target.to_string());
        }
    }
}

/// The ops that give a stopped task's ENI and address back.
pub fn release_ops(eni: &EniAllocation) -> Vec<Op> {
    vec![
        Op::Delete {
            key: ec2::network_interface_key(&eni.network_interface_id),
        },
        Op::Delete {
            key: ec2::ip_key(&eni.subnet_id, &eni.private_ipv4_address),
        },
    ]
}

/// Security groups and ENIs as they are now, for describing networks to agents.
pub struct NetworkView {
    groups: HashMap<String, SecurityGroup>,
    /// Addresses of the ENIs in each group.
    members: BTreeMap<String, Vec<String>>,
}

impl NetworkView {
    pub async fn load(ctx: &EcsContext) -> Result<NetworkView, EcsError> {
        let groups = ctx
            .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
            .await?
            .into_iter()
            .map(|(_, g)| (g.group_id.clone(), g))
            .collect();
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let enis = ctx
            .store
            .range(ec2::NETWORK_INTERFACE_PREFIX, Default::default())
            .await?;
        for kv in &enis.kvs {
            let eni: NetworkInterface = decode(kv)?;
            for group in &eni.groups {
                members
                    .entry(group.group_id.clone())
                    .or_default()
                    .push(eni.private_ip_address.clone());
            }
        }
        Ok(NetworkView { groups, members })
    }

    /// A group with every `UserIdGroupPairs` entry also given as the `/32` ranges of the ENIs
    /// now in that group, so agents enforce rules with CIDRs alone.
    fn resolved_group(&self, id: &str) -> Option<SecurityGroup> {
        let mut group = self.groups.get(id)?.clone();
        for permission in group
            .ip_permissions
            .iter_mut()
            .chain(group.ip_permissions_egress.iter_mut())
        {
            let mut added = Vec::new();
            for pair in &permission.user_id_group_pairs {
                for ip in self.members.get(&pair.group_id).into_iter().flatten() {
                    added.push(IpRange {
                        cidr_ip: format!("{ip}/32"),
                        description: pair.description.clone(),
                    });
                }
            }
            for range in added {
                if !permission.ip_ranges.contains(&range) {
                    permission.ip_ranges.push(range);
                }
            }
        }
        Some(group)
    }

    /// The network of a task with this ENI, as its agent must build it.
    pub async fn task_network(
        &self,
        ctx: &EcsContext,
        eni: &EniAllocation,
    ) -> Result<TaskNetwork, EcsError> {
        let record = ctx
            .get_json::<NetworkInterface>(&ec2::network_interface_key(&eni.network_interface_id))
            .await?
            .map(|(r, _)| r);
        let subnet = ctx
            .get_json::<Subnet>(&ec2::subnet_key(&eni.subnet_id))
            .await?
            .map(|(s, _)| s);
        let cidr = subnet.map(|s| s.cidr_block).unwrap_or_default();
        let group_ids: Vec<String> = record
            .as_ref()
            .map(|r| r.groups.iter().map(|g| g.group_id.clone()).collect())
            .unwrap_or_default();
        Ok(TaskNetwork {
            network_interface_id: eni.network_interface_id.clone(),
            subnet_id: eni.subnet_id.clone(),
            gateway_ipv4_address: gateway(&cidr).unwrap_or_default(),
            subnet_cidr: cidr,
            private_ipv4_address: eni.private_ipv4_address.clone(),
            mac_address: record
                .as_ref()
                .map(|r| r.mac_address.clone())
                .unwrap_or_default(),
            security_groups: group_ids
                .iter()
                .filter_map(|id| self.resolved_group(id))
                .collect(),
        })
    }

    /// Groups whose rules refer to other groups: a change to an ENI in one of them changes the
    /// resolved rules.
    pub fn referenced_groups(&self, ours: &BTreeSet<String>) -> BTreeSet<String> {
        ours.iter()
            .filter_map(|id| self.groups.get(id))
            .flat_map(|g| {
                g.ip_permissions
                    .iter()
                    .chain(g.ip_permissions_egress.iter())
            })
            .flat_map(|p| {
                p.user_id_group_pairs
                    .iter()
                    .map(|pair| pair.group_id.clone())
            })
            .collect()
    }
}

fn random_hex(digits: usize) -> String {
    (0..digits)
        .map(|_| char::from_digit(rand::random::<u32>() % 16, 16).unwrap_or('0'))
        .collect()
}

/// A random locally administered unicast MAC (first octet `0a`), as EC2 gives ENIs.
fn random_mac() -> String {
    let bytes: [u8; 5] = rand::random();
    let tail: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("0a:{}", tail.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_the_reserved_ones_and_the_used() {
        assert_eq!(
            cidr_range("172.31.0.0/20"),
            Some((
                u32::from(Ipv4Addr::new(172, 31, 0, 0)),
                u32::from(Ipv4Addr::new(172, 31, 15, 255))
            ))
        );
        assert_eq!(gateway("172.31.16.0/20").as_deref(), Some("172.31.16.1"));
        let none = |_: &str| false;
        assert_eq!(
            lowest_free("172.31.0.0/20", &none).as_deref(),
            Some("172.31.0.4")
        );
        let taken = |ip: &str| ip == "172.31.0.4" || ip == "172.31.0.5";
        assert_eq!(
            lowest_free("172.31.0.0/20", &taken).as_deref(),
            Some("172.31.0.6")
        );
        // A /30 has no address left once AWS's reservations are taken out.
        assert_eq!(lowest_free("10.0.0.0/30", &none), None);
        // The broadcast address is never given.
        let all_but_last = |ip: &str| ip != "10.0.0.14" && ip != "10.0.0.15";
        assert_eq!(
            lowest_free("10.0.0.0/28", &all_but_last).as_deref(),
            Some("10.0.0.14")
        );
    }

    #[test]
    fn dns_names_follow_ec2() {
        assert_eq!(
            private_dns_name("us-east-1", "172.31.0.4"),
            "ip-172-31-0-4.ec2.internal"
        );
        assert_eq!(
            private_dns_name("eu-west-1", "10.0.1.9"),
            "ip-10-0-1-9.eu-west-1.compute.internal"
        );
        let mac = random_mac();
        assert!(mac.starts_with("0a:") && mac.len() == 17, "{mac}");
    }

    #[test]
    fn attachments_move_forward_only() {
        let mut task = Task {
            attachments: Some(vec![
                json!({"type": ENI_ATTACHMENT_TYPE, "status": "PRECREATED"}),
            ]),
            last_status: Some("RUNNING".into()),
            ..Default::default()
        };
        advance_attachments(&mut task);
        assert_eq!(task.attachments.as_ref().unwrap()[0]["status"], "ATTACHED");
        task.last_status = Some("STOPPED".into());
        advance_attachments(&mut task);
        assert_eq!(task.attachments.as_ref().unwrap()[0]["status"], "DELETED");
        task.last_status = Some("RUNNING".into());
        advance_attachments(&mut task);
        assert_eq!(task.attachments.as_ref().unwrap()[0]["status"], "DELETED");
    }
}
