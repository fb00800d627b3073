//! Security groups and their rules: Describe/Create/DeleteSecurityGroup,
//! Authorize/RevokeSecurityGroupIngress/Egress and DescribeSecurityGroupRules.
//!
//! A group stores its rules as the model's `IpPermission`s (rules sharing a protocol and port
//! range grouped in one permission, as DescribeSecurityGroups shows them). Each single rule
//! (one permission, one peer) also has a `sgr-` id; Wharf derives it from the group, the
//! direction and the rule itself, so it is stable without being stored.

use model::ec2::{
    self, IpPermission, IpRange, NetworkInterface, SecurityGroup, UserIdGroupPair, Vpc,
};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::info;

use super::common::{
    check_filters, matches, new_id, spec_tags, well_formed, Cidr, Filter, TagSpecification,
};
use super::error::{invalid, missing, Ec2Error, Result};
use super::vpcs::{default_vpc, existing_vpc};
use super::{delete, input, put_json, Ec2Context, MAX_ATTEMPTS};

/// The characters EC2 allows in VPC security group names and descriptions.
fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c)
}

const ALLOWED: &str = "a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*";

/// All traffic out to anywhere: every new VPC security group's egress rule.
fn allow_all_egress() -> IpPermission {
    IpPermission {
        ip_protocol: "-1".to_string(),
        ip_ranges: vec![IpRange {
            cidr_ip: "0.0.0.0/0".to_string(),
            description: None,
        }],
        ..Default::default()
    }
}

/// A VPC's `default` group with AWS's default rules: all traffic in from members of the group
/// itself, all traffic out.
pub(super) fn default_group(ctx: &Ec2Context, vpc_id: &str) -> SecurityGroup {
    let group_id = new_id("sg");
    SecurityGroup {
        group_id: group_id.clone(),
        group_name: "default".to_string(),
        description: "default VPC security group".to_string(),
        vpc_id: vpc_id.to_string(),
        owner_id: ctx.account_id.clone(),
        ip_permissions: vec![IpPermission {
            ip_protocol: "-1".to_string(),
            user_id_group_pairs: vec![UserIdGroupPair {
                group_id,
                user_id: Some(ctx.account_id.clone()),
                description: None,
            }],
            ..Default::default()
        }],
        ip_permissions_egress: vec![allow_all_egress()],
        tags: Vec::new(),
    }
}

/// A group as the model's `SecurityGroup` shape.
fn output(ctx: &Ec2Context, group: &SecurityGroup) -> Value {
    let mut value = serde_json::to_value(group).unwrap_or_default();
    value["SecurityGroupArn"] = json!(ctx.arn("security-group", &group.group_id));
    for member in ["IpPermissions", "IpPermissionsEgress"] {
        if let Some(permissions) = value[member].as_array_mut() {
            for permission in permissions {
                permission["Ipv6Ranges"] = json!([]);
                permission["PrefixListIds"] = json!([]);
            }
        }
    }
    value
}

/// Who a rule lets in (or out to).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Peer {
    Cidr(String),
    Group(String),
}

/// One rule: one protocol and port range, one peer.
#[derive(Debug, Clone)]
struct Rule {
    protocol: String,
    from: Option<i64>,
    to: Option<i64>,
    peer: Peer,
    description: Option<String>,
}

impl Rule {
    /// The same rule, whatever its description (EC2 compares rules this way).
    fn same(&self, other: &Rule) -> bool {
        self.protocol == other.protocol
            && self.from == other.from
            && self.to == other.to
            && self.peer == other.peer
    }

    /// Wharf's stable `sgr-` id of this rule in `group_id`.
    fn id(&self, group_id: &str, egress: bool) -> String {
        let peer = match &self.peer {
            Peer::Cidr(c) => format!("cidr:{c}"),
            Peer::Group(g) => format!("group:{g}"),
        };
        let text = format!(
            "{group_id}|{egress}|{}|{:?}|{:?}|{peer}",
            self.protocol, self.from, self.to
        );
        let digest = Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sgr-{}", &hex[..17])
    }

    /// How EC2 names a rule in its Duplicate message.
    fn describe(&self) -> String {
        let peer = match &self.peer {
            Peer::Cidr(c) | Peer::Group(c) => c.clone(),
        };
        let protocol = match self.protocol.as_str() {
            "-1" => "ALL".to_string(),
            p => match (self.from, self.to) {
                (Some(from), Some(to)) => {
                    format!("{}, from port: {from}, to port: {to}", p.to_uppercase())
                }
                _ => p.to_uppercase(),
            },
        };
        format!("peer: {peer}, {protocol}, ALLOW")
    }
}

/// Every rule of one direction of a group.
fn rules_of(group: &SecurityGroup, egress: bool) -> Vec<Rule> {
    let permissions = if egress {
        &group.ip_permissions_egress
    } else {
        &group.ip_permissions
    };
    let mut rules = Vec::new();
    for p in permissions {
        let rule = |peer, description: &Option<String>| Rule {
            protocol: p.ip_protocol.clone(),
            from: p.from_port,
            to: p.to_port,
            peer,
            description: description.clone(),
        };
        for range in &p.ip_ranges {
            rules.push(rule(Peer::Cidr(range.cidr_ip.clone()), &range.description));
        }
        for pair in &p.user_id_group_pairs {
            rules.push(rule(Peer::Group(pair.group_id.clone()), &pair.description));
        }
    }
    rules
}

fn permissions_mut(group: &mut SecurityGroup, egress: bool) -> &mut Vec<IpPermission> {
    if egress {
        &mut group.ip_permissions_egress
    } else {
        &mut group.ip_permissions
    }
}

/// Add a rule to the permission with its protocol and ports, or a new one.
fn add_rule(permissions: &mut Vec<IpPermission>, rule: &Rule, account: &str) {
    let index = match permissions.iter().position(|p| {
        p.ip_protocol == rule.protocol && p.from_port == rule.from && p.to_port == rule.to
    }) {
        Some(i) => i,
        None => {
            permissions.push(IpPermission {
                ip_protocol: rule.protocol.clone(),
                from_port: rule.from,
                to_port: rule.to,
                ..Default::default()
            });
            permissions.len() - 1
        }
    };
    let permission = &mut permissions[index];
    match &rule.peer {
        Peer::Cidr(cidr) => permission.ip_ranges.push(IpRange {
            cidr_ip: cidr.clone(),
            description: rule.description.clone(),
        }),
        Peer::Group(group_id) => permission.user_id_group_pairs.push(UserIdGroupPair {
            group_id: group_id.clone(),
            user_id: Some(account.to_string()),
            description: rule.description.clone(),
        }),
    }
}

/// Remove a rule; permissions left without peers go too.
fn remove_rule(permissions: &mut Vec<IpPermission>, rule: &Rule) {
    for p in permissions.iter_mut() {
        if p.ip_protocol != rule.protocol || p.from_port != rule.from || p.to_port != rule.to {
            continue;
        }
        match &rule.peer {
            Peer::Cidr(cidr) => p.ip_ranges.retain(|r| &r.cidr_ip != cidr),
            Peer::Group(id) => p.user_id_group_pairs.retain(|g| &g.group_id != id),
        }
    }
    permissions.retain(|p| !p.ip_ranges.is_empty() || !p.user_id_group_pairs.is_empty());
}

/// A rule as the model's `SecurityGroupRule` shape.
fn rule_output(ctx: &Ec2Context, group: &SecurityGroup, egress: bool, rule: &Rule) -> Value {
    let id = rule.id(&group.group_id, egress);
    let mut value = json!({
        "SecurityGroupRuleId": id,
        "GroupId": group.group_id,
        "GroupOwnerId": group.owner_id,
        "IsEgress": egress,
        "IpProtocol": rule.protocol,
        // SecurityGroupRule shows -1 for "all ports" where IpPermission leaves them out.
        "FromPort": rule.from.unwrap_or(-1),
        "ToPort": rule.to.unwrap_or(-1),
        "Description": rule.description,
        "Tags": [],
        "SecurityGroupRuleArn": ctx.arn("security-group-rule", &id),
    });
    match &rule.peer {
        Peer::Cidr(c) => value["CidrIpv4"] = json!(c),
        Peer::Group(g) => {
            value["ReferencedGroupInfo"] = json!({"GroupId": g, "UserId": group.owner_id})
        }
    }
    value
}

/// A rule as the model's `RevokedSecurityGroupRule` shape.
fn revoked_output(group: &SecurityGroup, egress: bool, rule: &Rule) -> Value {
    let mut value = json!({
        "SecurityGroupRuleId": rule.id(&group.group_id, egress),
        "GroupId": group.group_id,
        "IsEgress": egress,
        "IpProtocol": rule.protocol,
        "FromPort": rule.from.unwrap_or(-1),
        "ToPort": rule.to.unwrap_or(-1),
        "Description": rule.description,
    });
    match &rule.peer {
        Peer::Cidr(c) => value["CidrIpv4"] = json!(c),
        Peer::Group(g) => value["ReferencedGroupId"] = json!(g),
    }
    value
}

/// EC2's protocol names: `tcp`/`6`, `udp`/`17`, `icmp`/`1`, `icmpv6`/`58`, `-1`/`all`, or any
/// other protocol number.
fn normalize_protocol(protocol: &str) -> Result<String> {
    let p = protocol.trim().to_ascii_lowercase();
    Ok(match p.as_str() {
        "tcp" | "6" => "tcp".to_string(),
        "udp" | "17" => "udp".to_string(),
        "icmp" | "1" => "icmp".to_string(),
        "icmpv6" | "58" => "icmpv6".to_string(),
        "-1" | "all" => "-1".to_string(),
        n if n.parse::<u8>().is_ok() => n.parse::<u8>().map(|n| n.to_string()).unwrap_or_default(),
        _ => {
            return Err(invalid(format!(
                "Invalid value '{protocol}' for IP protocol. Unknown protocol." // guessed
            )));
        }
    })
}

/// The stored port range of a rule: required for TCP/UDP, ICMP type/code (default -1),
/// dropped for protocols without ports.
fn port_range(
    protocol: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(Option<i64>, Option<i64>)> {
    match protocol {
        "tcp" | "udp" => {
            let (Some(from), Some(to)) = (from, to) else {
                return Err(invalid(
                    "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.",
                ));
            };
            if !(0..=65535).contains(&from) || !(0..=65535).contains(&to) || from > to {
                return Err(invalid(format!(
                    "Invalid value '{from}-{to}' for portRange. The port range must be within 0-65535 and from port must not exceed to port." // guessed
                )));
            }
            Ok((Some(from), Some(to)))
        }
        "icmp" | "icmpv6" => {
            let (from, to) = (from.unwrap_or(-1), to.unwrap_or(-1));
            if !(-1..=255).contains(&from) || !(-1..=255).contains(&to) || (from == -1 && to != -1)
            {
                return Err(invalid(format!(
                    "Invalid value '{from}/{to}' for ICMP type and code." // guessed
                )));
            }
            Ok((Some(from), Some(to)))
        }
        _ => Ok((None, None)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PairInput {
    group_id: Option<String>,
    group_name: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RangeInput {
    cidr_ip: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PermissionInput {
    ip_protocol: Option<String>,
    from_port: Option<i64>,
    to_port: Option<i64>,
    user_id_group_pairs: Vec<PairInput>,
    ip_ranges: Vec<RangeInput>,
    ipv6_ranges: Vec<Value>,
    prefix_list_ids: Vec<Value>,
}

/// Authorize*/Revoke* inputs: the group, and rules as permissions, the legacy flat members,
/// or (revoke) rule ids.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RuleChangeInput {
    group_id: Option<String>,
    group_name: Option<String>,
    ip_permissions: Vec<PermissionInput>,
    ip_protocol: Option<String>,
    from_port: Option<i64>,
    to_port: Option<i64>,
    cidr_ip: Option<String>,
    source_security_group_name: Option<String>,
    security_group_rule_ids: Vec<String>,
}

/// The group a request names by `GroupId`, or by `GroupName` in the default VPC.
fn resolve_target<'a>(
    groups: &'a [(SecurityGroup, i64)],
    group_id: Option<&str>,
    group_name: Option<&str>,
    default_vpc: Option<&Vpc>,
) -> Result<&'a (SecurityGroup, i64)> {
    match (group_id, group_name) {
        (Some(id), _) => {
            if !well_formed(id, "sg") {
                return Err(Ec2Error::GroupIdMalformed(id.to_string()));
            }
            groups
                .iter()
                .find(|(g, _)| g.group_id == id)
                .ok_or_else(|| {
                    Ec2Error::GroupNotFound(format!("The security group '{id}' does not exist"))
                })
        }
        (None, Some(name)) => {
            let vpc = default_vpc.ok_or(Ec2Error::VpcIdNotSpecified)?;
            groups
                .iter()
                .find(|(g, _)| g.vpc_id == vpc.vpc_id && g.group_name == name)
                .ok_or_else(|| {
                    Ec2Error::GroupNotFound(format!(
                        "The security group '{name}' does not exist in default VPC '{}'",
                        vpc.vpc_id
                    ))
                })
        }
        (None, None) => Err(missing("groupName or groupId")), // guessed
    }
}

/// The single rules a request names, validated, with group names resolved in the target
/// group's VPC.
fn requested_rules(
    request: &RuleChangeInput,
    groups: &[(SecurityGroup, i64)],
    target: &SecurityGroup,
) -> Result<Vec<Rule>> {
    let legacy = request.ip_protocol.is_some()
        || request.cidr_ip.is_some()
        || request.source_security_group_name.is_some();
    if legacy && !request.ip_permissions.is_empty() {
        return Err(Ec2Error::InvalidParameterCombination(
            "The parameter 'ipPermissions' may not be used in combination with 'ipProtocol', 'cidrIp' or 'sourceSecurityGroupName'".into(), // guessed
        ));
    }
    let mut permissions: Vec<PermissionInput> = Vec::new();
    if legacy {
        let pairs = || {
            request
                .source_security_group_name
                .iter()
                .map(|name| PairInput {
                    group_name: Some(name.clone()),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
        };
        let ranges = || {
            request
                .cidr_ip
                .iter()
                .map(|cidr| RangeInput {
                    cidr_ip: Some(cidr.clone()),
                    description: None,
                })
                .collect::<Vec<_>>()
        };
        match &request.ip_protocol {
            Some(protocol) => permissions.push(PermissionInput {
                ip_protocol: Some(protocol.clone()),
                from_port: request.from_port,
                to_port: request.to_port,
                user_id_group_pairs: pairs(),
                ip_ranges: ranges(),
                ..Default::default()
            }),
            // A source group without a protocol grants all of TCP, UDP and ICMP.
            None if request.source_security_group_name.is_some() => {
                for (protocol, from, to) in [("tcp", 0, 65535), ("udp", 0, 65535), ("icmp", -1, -1)]
                {
                    permissions.push(PermissionInput {
                        ip_protocol: Some(protocol.to_string()),
                        from_port: Some(from),
                        to_port: Some(to),
                        user_id_group_pairs: pairs(),
                        ..Default::default()
                    });
                }
            }
            None => return Err(missing("ipProtocol")),
        }
    } else {
        permissions = request
            .ip_permissions
            .iter()
            .map(|p| PermissionInput {
                ip_protocol: p.ip_protocol.clone(),
                from_port: p.from_port,
                to_port: p.to_port,
                user_id_group_pairs: p
                    .user_id_group_pairs
                    .iter()
                    .map(|g| PairInput {
                        group_id: g.group_id.clone(),
                        group_name: g.group_name.clone(),
                        description: g.description.clone(),
                    })
                    .collect(),
                ip_ranges: p
                    .ip_ranges
                    .iter()
                    .map(|r| RangeInput {
                        cidr_ip: r.cidr_ip.clone(),
                        description: r.description.clone(),
                    })
                    .collect(),
                ipv6_ranges: p.ipv6_ranges.clone(),
                prefix_list_ids: p.prefix_list_ids.clone(),
            })
            .collect();
    }
    if permissions.is_empty() {
        return Err(missing("ipPermissions")); // guessed
    }
    let mut rules = Vec::new();
    for p in &permissions {
        let Some(protocol) = &p.ip_protocol else {
            return Err(missing("ipPermissions.ipProtocol")); // guessed
        };
        let protocol = normalize_protocol(protocol)?;
        let (from, to) = port_range(&protocol, p.from_port, p.to_port)?;
        if !p.ipv6_ranges.is_empty() || !p.prefix_list_ids.is_empty() {
            // guessed: Wharf has no IPv6 and no prefix lists.
            return Err(invalid(
                "IPv6 ranges and prefix lists are not supported by Wharf.",
            ));
        }
        if p.ip_ranges.is_empty() && p.user_id_group_pairs.is_empty() {
            return Err(missing("ipRanges or groups")); // guessed
        }
        let rule = |peer, description: &Option<String>| -> Result<Rule> {
            if let Some(d) = description {
                if d.chars().count() > 255 || !d.chars().all(allowed_char) {
                    return Err(invalid(format!(
                        "Invalid rule description. Valid descriptions are strings less than 256 characters from the following set: {ALLOWED}" // guessed
                    )));
                }
            }
            Ok(Rule {
                protocol: protocol.clone(),
                from,
                to,
                peer,
                description: description.clone(),
            })
        };
        for range in &p.ip_ranges {
            let text = range.cidr_ip.clone().unwrap_or_default();
            let cidr = Cidr::parse(&text)
                .ok_or_else(|| invalid(format!("CIDR block {text} is malformed")))?;
            rules.push(rule(Peer::Cidr(cidr.to_string()), &range.description)?);
        }
        for pair in &p.user_id_group_pairs {
            let found = match (&pair.group_id, &pair.group_name) {
                (Some(id), _) => {
                    groups
                        .iter()
                        .find(|(g, _)| &g.group_id == id)
                        .ok_or_else(|| {
                            Ec2Error::GroupNotFound(format!(
                                "The security group '{id}' does not exist"
                            ))
                        })?
                }
                (None, Some(name)) => groups
                    .iter()
                    .find(|(g, _)| g.vpc_id == target.vpc_id && &g.group_name == name)
                    .ok_or_else(|| {
                        Ec2Error::GroupNotFound(format!(
                            "The security group '{name}' does not exist in VPC '{}'", // guessed
                            target.vpc_id
                        ))
                    })?,
                (None, None) => return Err(missing("groups.groupId")), // guessed
            };
            if found.0.vpc_id != target.vpc_id {
                return Err(Ec2Error::GroupNotFound(
                    "You have specified two resources that belong to different networks.".into(),
                ));
            }
            rules.push(rule(
                Peer::Group(found.0.group_id.clone()),
                &pair.description,
            )?);
        }
    }
    Ok(rules)
}

fn duplicate(rule: &Rule) -> Ec2Error {
    Ec2Error::PermissionDuplicate(format!(
        "the specified rule \"{}\" already exists",
        rule.describe()
    ))
}

/// AuthorizeSecurityGroupIngress / AuthorizeSecurityGroupEgress.
pub async fn authorize(ctx: &Ec2Context, raw: Value, egress: bool) -> Result<Value> {
    let request: RuleChangeInput = input(raw)?;
    let default_vpc = default_vpc(ctx).await?;
    for _ in 0..MAX_ATTEMPTS {
        let groups = ctx
            .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
            .await?;
        let (target, revision) = resolve_target(
            &groups,
            request.group_id.as_deref(),
            request.group_name.as_deref(),
            default_vpc.as_ref(),
        )?;
        let rules = requested_rules(&request, &groups, target)?;
        let existing = rules_of(target, egress);
        for (i, rule) in rules.iter().enumerate() {
            if existing.iter().any(|e| e.same(rule)) || rules[..i].iter().any(|r| r.same(rule)) {
                return Err(duplicate(rule));
            }
        }
        let mut group = target.clone();
        for rule in &rules {
            add_rule(permissions_mut(&mut group, egress), rule, &ctx.account_id);
        }
        let key = ec2::security_group_key(&group.group_id);
        if ctx
            .commit(&[(key.clone(), *revision)], vec![put_json(&key, &group)])
            .await?
        {
            info!(
                group_id = group.group_id,
                egress,
                rules = rules.len(),
                "authorized rules"
            );
            let out: Vec<Value> = rules
                .iter()
                .map(|r| rule_output(ctx, &group, egress, r))
                .collect();
            return Ok(json!({"Return": true, "SecurityGroupRules": out}));
        }
    }
    Err(Ec2Error::Conflict)
}

/// RevokeSecurityGroupIngress / RevokeSecurityGroupEgress, by rule or by rule id.
pub async fn revoke(ctx: &Ec2Context, raw: Value, egress: bool) -> Result<Value> {
    let request: RuleChangeInput = input(raw)?;
    let default_vpc = default_vpc(ctx).await?;
    for _ in 0..MAX_ATTEMPTS {
        let groups = ctx
            .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
            .await?;
        let (target, revision) = resolve_target(
            &groups,
            request.group_id.as_deref(),
            request.group_name.as_deref(),
            default_vpc.as_ref(),
        )?;
        let existing = rules_of(target, egress);
        let mut revoked: Vec<Rule> = Vec::new();
        if !request.security_group_rule_ids.is_empty() {
            for id in &request.security_group_rule_ids {
                let rule = existing
                    .iter()
                    .find(|r| &r.id(&target.group_id, egress) == id)
                    .ok_or_else(|| Ec2Error::SecurityGroupRuleNotFound(id.clone()))?;
                revoked.push(rule.clone());
            }
        } else {
            for rule in requested_rules(&request, &groups, target)? {
                let found = existing.iter().find(|e| e.same(&rule)).ok_or_else(|| {
                    Ec2Error::PermissionNotFound(
                        "The specified rule does not exist in this security group.".into(),
                    )
                })?;
                revoked.push(found.clone());
            }
        }
        let mut group = target.clone();
        for rule in &revoked {
            remove_rule(permissions_mut(&mut group, egress), rule);
        }
        let key = ec2::security_group_key(&group.group_id);
        if ctx
            .commit(&[(key.clone(), *revision)], vec![put_json(&key, &group)])
            .await?
        {
            info!(
                group_id = group.group_id,
                egress,
                rules = revoked.len(),
                "revoked rules"
            );
            let out: Vec<Value> = revoked
                .iter()
                .map(|r| revoked_output(&group, egress, r))
                .collect();
            return Ok(json!({"Return": true, "RevokedSecurityGroupRules": out}));
        }
    }
    Err(Ec2Error::Conflict)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateSecurityGroupInput {
    group_name: Option<String>,
    description: Option<String>,
    vpc_id: Option<String>,
    tag_specifications: Vec<TagSpecification>,
}

pub async fn create_security_group(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: CreateSecurityGroupInput = input(raw)?;
    let Some(name) = request.group_name else {
        return Err(missing("GroupName"));
    };
    let Some(description) = request.description else {
        return Err(missing("GroupDescription"));
    };
    if name.is_empty() || name.chars().count() > 255 {
        return Err(invalid(format!(
            "Invalid value '{name}' for groupName. Length must be between 1 and 255 characters." // guessed
        )));
    }
    if name.to_ascii_lowercase().starts_with("sg-") {
        return Err(invalid("Group names may not be in the format sg-*."));
    }
    if !name.chars().all(allowed_char) {
        return Err(invalid(format!(
            "Invalid security group name. Valid characters: {ALLOWED}" // guessed
        )));
    }
    if description.chars().count() > 255 || !description.chars().all(allowed_char) {
        return Err(invalid(format!(
            "Invalid security group description. Valid descriptions are strings less than 256 characters from the following set: {ALLOWED}" // guessed
        )));
    }
    let tags = spec_tags(&request.tag_specifications, "security-group")?;
    let vpc_id = match request.vpc_id {
        Some(id) => id,
        None => default_vpc(ctx)
            .await?
            .map(|v| v.vpc_id)
            .ok_or(Ec2Error::VpcIdNotSpecified)?,
    };
    for _ in 0..MAX_ATTEMPTS {
        let (vpc, vpc_revision) = existing_vpc(ctx, &vpc_id).await?;
        let groups = ctx
            .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
            .await?;
        // Names are unique per VPC, case-insensitively.
        if groups
            .iter()
            .any(|(g, _)| g.vpc_id == vpc_id && g.group_name.eq_ignore_ascii_case(&name))
        {
            return Err(Ec2Error::GroupDuplicate(format!(
                "The security group '{name}' already exists for VPC '{vpc_id}'"
            )));
        }
        let group = SecurityGroup {
            group_id: new_id("sg"),
            group_name: name.clone(),
            description: description.clone(),
            vpc_id: vpc_id.clone(),
            owner_id: ctx.account_id.clone(),
            ip_permissions: Vec::new(),
            ip_permissions_egress: vec![allow_all_egress()],
            tags: tags.clone(),
        };
        let vpc_key = ec2::vpc_key(&vpc_id);
        let key = ec2::security_group_key(&group.group_id);
        // Re-putting the VPC serialises creations in one VPC, so names stay unique.
        if ctx
            .commit(
                &[(vpc_key.clone(), vpc_revision), (key.clone(), 0)],
                vec![put_json(&vpc_key, &vpc), put_json(&key, &group)],
            )
            .await?
        {
            info!(
                group_id = group.group_id,
                name, vpc_id, "created security group"
            );
            let mut out = json!({
                "GroupId": group.group_id,
                "SecurityGroupArn": ctx.arn("security-group", &group.group_id),
            });
            if !group.tags.is_empty() {
                out["Tags"] = json!(group.tags);
            }
            return Ok(out);
        }
    }
    Err(Ec2Error::Conflict)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteSecurityGroupInput {
    group_id: Option<String>,
    group_name: Option<String>,
}

pub async fn delete_security_group(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DeleteSecurityGroupInput = input(raw)?;
    let default_vpc = default_vpc(ctx).await?;
    for _ in 0..MAX_ATTEMPTS {
        let groups = ctx
            .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
            .await?;
        let (target, revision) = resolve_target(
            &groups,
            request.group_id.as_deref(),
            request.group_name.as_deref(),
            default_vpc.as_ref(),
        )?;
        let id = target.group_id.clone();
        if target.group_name == "default" {
            return Err(Ec2Error::CannotDelete(format!(
                "the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"
            )));
        }
        let dependent =
            || Ec2Error::DependencyViolation(format!("resource {id} has a dependent object"));
        let enis = ctx
            .range_json::<NetworkInterface>(ec2::NETWORK_INTERFACE_PREFIX)
            .await?;
        if enis
            .iter()
            .any(|(e, _)| e.groups.iter().any(|g| g.group_id == id))
        {
            return Err(dependent());
        }
        let referenced = groups.iter().any(|(g, _)| {
            g.group_id != id
                && [false, true]
                    .iter()
                    .flat_map(|egress| rules_of(g, *egress))
                    .any(|r| r.peer == Peer::Group(id.clone()))
        });
        if referenced {
            return Err(dependent());
        }
        let key = ec2::security_group_key(&id);
        if ctx
            .commit(&[(key.clone(), *revision)], vec![delete(&key)])
            .await?
        {
            info!(group_id = id, "deleted security group");
            return Ok(json!({"Return": true, "GroupId": id}));
        }
    }
    Err(Ec2Error::Conflict)
}

const GROUP_FILTERS: &[&str] = &[
    "description",
    "group-id",
    "group-name",
    "owner-id",
    "vpc-id",
    "ip-permission.cidr",
    "ip-permission.from-port",
    "ip-permission.to-port",
    "ip-permission.protocol",
    "ip-permission.group-id",
    "ip-permission.group-name",
    "egress.ip-permission.cidr",
    "egress.ip-permission.from-port",
    "egress.ip-permission.to-port",
    "egress.ip-permission.protocol",
    "egress.ip-permission.group-id",
    "egress.ip-permission.group-name",
    "tag-key",
    "tag-value",
];

fn group_values(group: &SecurityGroup, all: &[(SecurityGroup, i64)], name: &str) -> Vec<String> {
    let (egress, field) = match name.strip_prefix("egress.ip-permission.") {
        Some(field) => (true, field),
        None => match name.strip_prefix("ip-permission.") {
            Some(field) => (false, field),
            None => {
                return vec![match name {
                    "description" => group.description.clone(),
                    "group-id" => group.group_id.clone(),
                    "group-name" => group.group_name.clone(),
                    "owner-id" => group.owner_id.clone(),
                    "vpc-id" => group.vpc_id.clone(),
                    _ => return Vec::new(),
                }]
            }
        },
    };
    rules_of(group, egress)
        .into_iter()
        .filter_map(|r| match (field, &r.peer) {
            ("cidr", Peer::Cidr(c)) => Some(c.clone()),
            ("group-id", Peer::Group(g)) => Some(g.clone()),
            ("group-name", Peer::Group(g)) => all
                .iter()
                .find(|(o, _)| &o.group_id == g)
                .map(|(o, _)| o.group_name.clone()),
            ("protocol", _) => Some(r.protocol.clone()),
            ("from-port", _) => Some(r.from.unwrap_or(-1).to_string()),
            ("to-port", _) => Some(r.to.unwrap_or(-1).to_string()),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeSecurityGroupsInput {
    group_ids: Vec<String>,
    group_names: Vec<String>,
    filters: Vec<Filter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn describe_security_groups(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DescribeSecurityGroupsInput = input(raw)?;
    check_filters(&request.filters, GROUP_FILTERS)?;
    let all = ctx
        .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
        .await?;
    let mut wanted: Vec<String> = Vec::new();
    for id in &request.group_ids {
        let (group, _) = resolve_target(&all, Some(id), None, None)?;
        wanted.push(group.group_id.clone());
    }
    if !request.group_names.is_empty() {
        let default_vpc = default_vpc(ctx).await?;
        for name in &request.group_names {
            let (group, _) = resolve_target(&all, None, Some(name), default_vpc.as_ref())?;
            wanted.push(group.group_id.clone());
        }
    }
    let items = all
        .iter()
        .map(|(g, _)| g)
        .filter(|g| wanted.is_empty() || wanted.contains(&g.group_id))
        .filter(|g| matches(&request.filters, &g.tags, |n| group_values(g, &all, n)))
        .map(|g| (g.group_id.clone(), output(ctx, g)))
        .collect();
    let scope = format!(
        "DescribeSecurityGroups {}",
        serde_json::to_string(&request.filters).unwrap_or_default()
    );
    let (page, next) = ctx
        .paginate(
            &scope,
            items,
            request.max_results,
            request.next_token.as_deref(),
        )
        .await?;
    Ok(json!({"SecurityGroups": page, "NextToken": next}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeRulesInput {
    security_group_rule_ids: Vec<String>,
    filters: Vec<Filter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// DescribeSecurityGroupRules: every single rule, by rule id or filtered by group.
pub async fn describe_rules(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DescribeRulesInput = input(raw)?;
    check_filters(
        &request.filters,
        &["group-id", "security-group-rule-id", "tag-key", "tag-value"],
    )?;
    let all = ctx
        .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
        .await?;
    let mut items: Vec<(String, Value)> = Vec::new();
    for (group, _) in &all {
        for egress in [false, true] {
            for rule in rules_of(group, egress) {
                let id = rule.id(&group.group_id, egress);
                let wanted = request.security_group_rule_ids.is_empty()
                    || request.security_group_rule_ids.contains(&id);
                let filtered = matches(&request.filters, &[], |name| match name {
                    "group-id" => vec![group.group_id.clone()],
                    "security-group-rule-id" => vec![id.clone()],
                    _ => Vec::new(),
                });
                if wanted && filtered {
                    items.push((id, rule_output(ctx, group, egress, &rule)));
                }
            }
        }
    }
    for id in &request.security_group_rule_ids {
        if !items.iter().any(|(i, _)| i == id) {
            return Err(Ec2Error::SecurityGroupRuleNotFound(id.clone()));
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let scope = format!(
        "DescribeSecurityGroupRules {}",
        serde_json::to_string(&request.filters).unwrap_or_default()
    );
    let (page, next) = ctx
        .paginate(
            &scope,
            items,
            request.max_results,
            request.next_token.as_deref(),
        )
        .await?;
    Ok(json!({"SecurityGroupRules": page, "NextToken": next}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_ports() {
        assert_eq!(normalize_protocol("TCP").ok().as_deref(), Some("tcp"));
        assert_eq!(normalize_protocol("6").ok().as_deref(), Some("tcp"));
        assert_eq!(normalize_protocol("all").ok().as_deref(), Some("-1"));
        assert_eq!(normalize_protocol("47").ok().as_deref(), Some("47"));
        assert!(normalize_protocol("bogus").is_err());
        assert_eq!(
            port_range("tcp", Some(80), Some(80)).ok(),
            Some((Some(80), Some(80)))
        );
        assert!(port_range("tcp", None, Some(80)).is_err());
        assert!(port_range("tcp", Some(90), Some(80)).is_err());
        assert!(port_range("udp", Some(0), Some(70000)).is_err());
        assert_eq!(port_range("-1", Some(1), Some(2)).ok(), Some((None, None)));
        assert_eq!(
            port_range("icmp", None, None).ok(),
            Some((Some(-1), Some(-1)))
        );
        assert!(port_range("icmp", Some(-1), Some(3)).is_err());
    }

    #[test]
    fn rules_group_into_permissions_and_back() {
        let mut permissions = Vec::new();
        let web = |peer| Rule {
            protocol: "tcp".into(),
            from: Some(80),
            to: Some(80),
            peer,
            description: None,
        };
        add_rule(&mut permissions, &web(Peer::Cidr("10.0.0.0/8".into())), "1");
        add_rule(&mut permissions, &web(Peer::Group("sg-1".into())), "1");
        assert_eq!(permissions.len(), 1);
        let group = SecurityGroup {
            group_id: "sg-2".into(),
            ip_permissions: permissions.clone(),
            ..Default::default()
        };
        let rules = rules_of(&group, false);
        assert_eq!(rules.len(), 2);
        assert_ne!(rules[0].id("sg-2", false), rules[1].id("sg-2", false));
        assert_ne!(rules[0].id("sg-2", false), rules[0].id("sg-2", true));
        assert_eq!(rules[0].id("sg-2", false).len(), 4 + 17);
        assert_eq!(
            rules[0].describe(),
            "peer: 10.0.0.0/8, TCP, from port: 80, to port: 80, ALLOW"
        );
        remove_rule(&mut permissions, &rules[0]);
        remove_rule(&mut permissions, &rules[1]);
        assert!(permissions.is_empty());
    }
}
