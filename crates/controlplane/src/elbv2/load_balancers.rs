//! Load balancers: CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer and their
//! attributes.
//!
//! Each load balancer gets an IPv4 address from the server's pool, held by an
//! `elbv2/address/<ip>` key created only if absent, so no two load balancers share one. The
//! data plane binds its listeners there, and the `DNSName` *is* that address (AWS's would be
//! `<name>-<n>.<region>.elb.amazonaws.com`; Wharf runs no DNS). State goes
//! `provisioning` → `active` when a data-plane node reports it serves every listener (or
//! `failed` when it cannot), see `routes`.

use std::collections::BTreeMap;

use model::ec2::{self, SecurityGroup, Subnet};
use model::elb::{keys, LoadBalancerKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{invalid, Result};
use super::records::{self, type_name, validate_name, validate_tags, LoadBalancerRecord, Tag};
use super::{
    address_key, conflict, delete_key, page, parse, put_json, timestamp, Elbv2Context, Elbv2Error,
    MAX_ATTEMPTS,
};

/// AWS's us-east-1 hosted zones of load balancer DNS names.
const APPLICATION_HOSTED_ZONE: &str = "Z35SXDOTRQ7X7K";
const NETWORK_HOSTED_ZONE: &str = "Z26RNL4JYFTOTI";

/// `1 validation error detected: … Member must satisfy enum value set: […]`, AWS's message for
/// a value outside an enum.
pub(super) fn enum_error(value: &str, member: &str, set: &[&str]) -> Elbv2Error {
    invalid(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        set.join(", ")
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SubnetMapping {
    subnet_id: Option<String>,
    allocation_id: Option<String>,
    #[serde(rename = "PrivateIPv4Address")]
    private_ipv4_address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    name: String,
    subnets: Option<Vec<String>>,
    subnet_mappings: Option<Vec<SubnetMapping>>,
    security_groups: Option<Vec<String>>,
    scheme: Option<String>,
    tags: Option<Vec<Tag>>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    ip_address_type: Option<String>,
}

/// AWS's default attributes of a new load balancer.
fn default_attributes(kind: LoadBalancerKind) -> BTreeMap<String, String> {
    let pairs: &[(&str, &str)] = match kind {
        LoadBalancerKind::Application => &[
            ("access_logs.s3.enabled", "false"),
            ("access_logs.s3.bucket", ""),
            ("access_logs.s3.prefix", ""),
            ("client_keep_alive.seconds", "3600"),
            ("connection_logs.s3.enabled", "false"),
            ("connection_logs.s3.bucket", ""),
            ("connection_logs.s3.prefix", ""),
            ("deletion_protection.enabled", "false"),
            ("idle_timeout.timeout_seconds", "60"),
            ("load_balancing.cross_zone.enabled", "true"),
            ("routing.http.desync_mitigation_mode", "defensive"),
            ("routing.http.drop_invalid_header_fields.enabled", "false"),
            ("routing.http.preserve_host_header.enabled", "false"),
            (
                "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
                "false",
            ),
            ("routing.http.xff_client_port.enabled", "false"),
            ("routing.http.xff_header_processing.mode", "append"),
            ("routing.http2.enabled", "true"),
            ("waf.fail_open.enabled", "false"),
            ("zonal_shift.config.enabled", "false"),
        ],
        LoadBalancerKind::Network => &[
            ("access_logs.s3.enabled", "false"),
            ("access_logs.s3.bucket", ""),
            ("access_logs.s3.prefix", ""),
            ("deletion_protection.enabled", "false"),
            ("dns_record.client_routing_policy", "any_availability_zone"),
            ("load_balancing.cross_zone.enabled", "false"),
            ("zonal_shift.config.enabled", "false"),
        ],
    };
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Check one attribute against what AWS accepts for it.
fn validate_attribute(kind: LoadBalancerKind, key: &str, value: &str) -> Result<()> {
    if !default_attributes(kind).contains_key(key) {
        return Err(invalid(format!(
            "Load balancer attribute key '{key}' is not recognized"
        )));
    }
    let bad = || {
        Elbv2Error::InvalidConfigurationRequest(format!(
            "Load balancer attribute value '{value}' is not valid for key '{key}'" // guessed
        ))
    };
    let number = |low: i64, high: i64| match value.parse::<i64>() {
        Ok(n) if (low..=high).contains(&n) => Ok(()),
        _ => Err(bad()),
    };
    let one_of = |set: &[&str]| {
        if set.contains(&value) {
            Ok(())
        } else {
            Err(bad())
        }
    };
    match key {
        // Wharf has no S3 to deliver logs to: enabling them would be a setting nothing honours.
        "access_logs.s3.enabled" | "connection_logs.s3.enabled" if value == "true" => {
            Err(Elbv2Error::InvalidConfigurationRequest(format!(
                "Wharf cannot deliver load balancer logs to S3; '{key}' must stay false"
            )))
        }
        // The data plane's request checks are ALB's defensive mode and nothing else.
        "routing.http.desync_mitigation_mode" if value != "defensive" => {
            one_of(&["monitor", "defensive", "strictest"])?;
            Err(Elbv2Error::InvalidConfigurationRequest(format!(
                "Wharf's load balancer applies desync mitigation mode 'defensive' only, not '{value}'"
            )))
        }
        k if k.ends_with(".enabled") => one_of(&["true", "false"]),
        "idle_timeout.timeout_seconds" => number(1, 4000),
        "client_keep_alive.seconds" => number(60, 604_800),
        "routing.http.desync_mitigation_mode" => one_of(&["monitor", "defensive", "strictest"]),
        "routing.http.xff_header_processing.mode" => one_of(&["append", "preserve", "remove"]),
        "dns_record.client_routing_policy" => one_of(&[
            "availability_zone_affinity",
            "partial_availability_zone_affinity",
            "any_availability_zone",
        ]),
        _ => Ok(()),
    }
}

/// The wire `LoadBalancer` of a record.
pub(super) fn describe_value(record: &LoadBalancerRecord) -> Value {
    let mut state = json!({"Code": record.state});
    if let Some(reason) = &record.state_reason {
        state["Reason"] = json!(reason);
    }
    let mut value = json!({
        "LoadBalancerArn": record.arn,
        "DNSName": record.address,
        "CanonicalHostedZoneId": match record.kind {
            LoadBalancerKind::Application => APPLICATION_HOSTED_ZONE,
            LoadBalancerKind::Network => NETWORK_HOSTED_ZONE,
        },
        "CreatedTime": timestamp(record.created_at_ms),
        "LoadBalancerName": record.name,
        "Scheme": record.scheme,
        "VpcId": record.vpc_id,
        "State": state,
        "Type": type_name(record.kind),
        "AvailabilityZones": record.availability_zones.iter().map(|(zone, subnet)| {
            json!({"ZoneName": zone, "SubnetId": subnet, "LoadBalancerAddresses": []})
        }).collect::<Vec<_>>(),
        "IpAddressType": record.ip_address_type,
    });
    if !record.security_groups.is_empty() || record.kind == LoadBalancerKind::Application {
        value["SecurityGroups"] = json!(record.security_groups);
    }
    value
}

/// Subnets, their VPC and zones, as CreateLoadBalancer validates them.
async fn resolve_subnets(
    ctx: &Elbv2Context,
    kind: LoadBalancerKind,
    ids: &[String],
) -> Result<(String, Vec<(String, String)>)> {
    let too_few = || {
        Elbv2Error::InvalidConfigurationRequest(
            "At least two subnets in two different Availability Zones must be specified".into(),
        )
    };
    if ids.is_empty() {
        return Err(match kind {
            LoadBalancerKind::Application => too_few(),
            LoadBalancerKind::Network => {
                invalid("At least one subnet must be specified") // guessed
            }
        });
    }
    let mut vpc: Option<String> = None;
    let mut zones: Vec<(String, String)> = Vec::new();
    for id in ids {
        let Some((subnet, _)) = ctx.get_json::<Subnet>(&ec2::subnet_key(id)).await? else {
            return Err(Elbv2Error::SubnetNotFound(format!(
                "The subnet ID '{id}' is not valid"
            )));
        };
        match &vpc {
            Some(v) if *v != subnet.vpc_id => {
                return Err(Elbv2Error::InvalidConfigurationRequest(
                    "The subnets must all belong to the same VPC".into(), // guessed
                ));
            }
            _ => vpc = Some(subnet.vpc_id.clone()),
        }
        if zones
            .iter()
            .any(|(z, s)| *z == subnet.availability_zone && s != id)
        {
            return Err(Elbv2Error::InvalidConfigurationRequest(
                "A load balancer cannot be attached to multiple subnets in the same Availability Zone"
                    .into(),
            ));
        }
        if !zones.iter().any(|(_, s)| s == id) {
            zones.push((subnet.availability_zone, id.clone()));
        }
    }
    if kind == LoadBalancerKind::Application && zones.len() < 2 {
        return Err(too_few());
    }
    zones.sort();
    Ok((vpc.unwrap_or_default(), zones))
}

/// Security groups of the VPC; an ALB without any gets the VPC's default group.
async fn resolve_security_groups(
    ctx: &Elbv2Context,
    kind: LoadBalancerKind,
    vpc_id: &str,
    ids: Option<Vec<String>>,
) -> Result<Vec<String>> {
    match ids {
        Some(ids) if !ids.is_empty() => {
            for id in &ids {
                match ctx
                    .get_json::<SecurityGroup>(&ec2::security_group_key(id))
                    .await?
                {
                    Some((group, _)) if group.vpc_id == vpc_id => {}
                    _ => {
                        return Err(Elbv2Error::InvalidSecurityGroup(format!(
                            "Security group '{id}' does not exist"
                        )))
                    }
                }
            }
            Ok(ids)
        }
        _ if kind == LoadBalancerKind::Network => Ok(Vec::new()),
        _ => {
            let groups = ctx
                .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
                .await?;
            Ok(groups
                .into_iter()
                .find(|(g, _)| g.vpc_id == vpc_id && g.group_name == "default")
                .map(|(g, _)| vec![g.group_id])
                .unwrap_or_default())
        }
    }
}

/// A random address of the pool, avoiding its first and last.
fn random_address(ctx: &Elbv2Context) -> String {
    use rand::Rng as _;
    let (base, len) = ctx.address_pool;
    let size = 1u64 << (32 - len);
    let offset = rand::rng().random_range(1..size - 1) as u32;
    std::net::Ipv4Addr::from(base + offset).to_string()
}

pub async fn create(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: CreateInput = parse(input)?;
    validate_name(&input.name, "Load balancer")?;
    if input.name.starts_with("internal-") {
        return Err(invalid(format!(
            "Load balancer name '{}' cannot begin with 'internal-'",
            input.name
        )));
    }
    let kind = match input.kind.as_deref().unwrap_or("application") {
        "application" => LoadBalancerKind::Application,
        "network" => LoadBalancerKind::Network,
        "gateway" => {
            return Err(invalid(
                "Wharf does not support gateway load balancers; use 'application' or 'network'",
            ))
        }
        other => {
            return Err(enum_error(
                other,
                "type",
                &["application", "network", "gateway"],
            ))
        }
    };
    let scheme = input.scheme.as_deref().unwrap_or("internet-facing");
    if !matches!(scheme, "internet-facing" | "internal") {
        return Err(enum_error(
            scheme,
            "scheme",
            &["internet-facing", "internal"],
        ));
    }
    let ip_address_type = input.ip_address_type.as_deref().unwrap_or("ipv4");
    if ip_address_type != "ipv4" {
        return Err(invalid(format!(
            "Wharf supports only the 'ipv4' IP address type, not '{ip_address_type}'"
        )));
    }
    let subnet_ids: Vec<String> = match (&input.subnets, &input.subnet_mappings) {
        (Some(s), Some(m)) if !s.is_empty() && !m.is_empty() => {
            return Err(invalid(
                "You can specify subnets or subnet mappings, but not both",
            ))
        }
        (_, Some(mappings)) if !mappings.is_empty() => {
            if mappings
                .iter()
                .any(|m| m.allocation_id.is_some() || m.private_ipv4_address.is_some())
            {
                return Err(invalid(
                    "Wharf does not support Elastic IP allocations or fixed private addresses in subnet mappings",
                ));
            }
            mappings
                .iter()
                .map(|m| {
                    m.subnet_id.clone().ok_or_else(|| {
                        invalid("A subnet ID must be specified in each subnet mapping")
                    })
                })
                .collect::<Result<_>>()?
        }
        (subnets, _) => subnets.clone().unwrap_or_default(),
    };
    let (vpc_id, zones) = resolve_subnets(ctx, kind, &subnet_ids).await?;
    let security_groups =
        resolve_security_groups(ctx, kind, &vpc_id, input.security_groups.clone()).await?;
    let tags = validate_tags(input.tags.as_deref().unwrap_or_default())?;
    let key = keys::load_balancer(&input.name);
    for _ in 0..MAX_ATTEMPTS {
        if let Some((existing, _)) = ctx.get_json::<LoadBalancerRecord>(&key).await? {
            // CreateLoadBalancer is idempotent: the same settings answer the existing one.
            let same = existing.kind == kind
                && existing.scheme == scheme
                && existing.availability_zones == zones
                && existing.security_groups == security_groups;
            if same {
                return Ok(json!({"LoadBalancers": [describe_value(&existing)]}));
            }
            return Err(Elbv2Error::DuplicateLoadBalancerName(format!(
                "A load balancer with the same name '{}' exists, but with different settings",
                input.name
            )));
        }
        let id = records::new_id();
        let address = random_address(ctx);
        let arn = ctx.arn(&format!(
            "loadbalancer/{}/{}/{id}",
            records::type_segment(kind),
            input.name
        ));
        let record = LoadBalancerRecord {
            arn: arn.clone(),
            name: input.name.clone(),
            id,
            kind,
            scheme: scheme.to_string(),
            vpc_id: vpc_id.clone(),
            availability_zones: zones.clone(),
            security_groups: security_groups.clone(),
            ip_address_type: ip_address_type.to_string(),
            address: address.clone(),
            state: "provisioning".to_string(),
            state_reason: None,
            attributes: default_attributes(kind),
            tags: tags.clone(),
            created_at_ms: ctx.now_ms(),
        };
        let address_key = address_key(&address);
        let ops = vec![
            put_json(&key, &record),
            super::Op::Put {
                key: address_key.clone(),
                value: bytes::Bytes::from(arn.clone()),
                lease: None,
            },
        ];
        if ctx
            .commit(&[(key.clone(), 0), (address_key, 0)], ops)
            .await?
        {
            tracing::info!(load_balancer = %arn, address, "created load balancer");
            return Ok(json!({"LoadBalancers": [describe_value(&record)]}));
        }
        // The name was taken meanwhile (answered above), or the address was: try another.
    }
    Err(conflict())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    load_balancer_arns: Option<Vec<String>>,
    names: Option<Vec<String>>,
    marker: Option<String>,
    page_size: Option<i32>,
}

pub async fn describe(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: DescribeInput = parse(input)?;
    let arns = input.load_balancer_arns.unwrap_or_default();
    let names = input.names.unwrap_or_default();
    if !arns.is_empty() && !names.is_empty() {
        return Err(invalid(
            "Load balancer names and load balancer ARNs cannot be specified at the same time",
        ));
    }
    let all: Vec<LoadBalancerRecord> = ctx
        .range_json::<LoadBalancerRecord>(keys::LOAD_BALANCER_PREFIX)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let selected: Vec<LoadBalancerRecord> = if !arns.is_empty() {
        for arn in &arns {
            if records::parse_load_balancer_arn(arn).is_none() {
                return Err(invalid(format!("'{arn}' is not a valid load balancer ARN")));
            }
        }
        let missing: Vec<&String> = arns
            .iter()
            .filter(|a| !all.iter().any(|r| r.arn == **a))
            .collect();
        if !missing.is_empty() {
            return Err(Elbv2Error::LoadBalancerNotFound(format!(
                "Load balancers '[{}]' not found",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        all.into_iter().filter(|r| arns.contains(&r.arn)).collect()
    } else if !names.is_empty() {
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !all.iter().any(|r| r.name == **n))
            .collect();
        if !missing.is_empty() {
            return Err(Elbv2Error::LoadBalancerNotFound(format!(
                "Load balancers '[{}]' not found",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        all.into_iter()
            .filter(|r| names.contains(&r.name))
            .collect()
    } else {
        all
    };
    let (items, next) = page(
        ctx,
        "DescribeLoadBalancers",
        selected,
        |r| r.name.clone(),
        input.marker.as_deref(),
        input.page_size,
    )?;
    let mut out = json!({"LoadBalancers": items.iter().map(describe_value).collect::<Vec<_>>()});
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArnInput {
    load_balancer_arn: String,
}

pub async fn delete_load_balancer(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ArnInput = parse(input)?;
    for _ in 0..MAX_ATTEMPTS {
        // Deleting a load balancer that does not exist (any more) succeeds, as in AWS.
        let (record, revision) = match ctx.load_balancer(&input.load_balancer_arn).await {
            Ok(found) => found,
            Err(Elbv2Error::LoadBalancerNotFound(_)) => return Ok(json!({})),
            Err(e) => return Err(e),
        };
        if record
            .attributes
            .get("deletion_protection.enabled")
            .map(String::as_str)
            == Some("true")
        {
            return Err(Elbv2Error::OperationNotPermitted(format!(
                "Load balancer '{}' cannot be deleted because deletion protection is enabled",
                record.arn
            )));
        }
        let mut guards = vec![(keys::load_balancer(&record.name), revision)];
        let mut ops = vec![
            delete_key(&keys::load_balancer(&record.name)),
            delete_key(&address_key(&record.address)),
        ];
        let listener_prefix = format!("{}{}/", keys::LISTENER_PREFIX, record.id);
        let listeners = ctx
            .range_json::<super::records::ListenerRecord>(&listener_prefix)
            .await?;
        for (listener, listener_revision) in &listeners {
            let key = keys::listener(&record.id, &listener.id);
            guards.push((key.clone(), *listener_revision));
            ops.push(delete_key(&key));
            let rule_prefix = format!("{}{}/", keys::RULE_PREFIX, listener.id);
            for (rule, rule_revision) in ctx
                .range_json::<super::records::RuleRecord>(&rule_prefix)
                .await?
            {
                let key = keys::rule(&listener.id, &rule.id);
                guards.push((key.clone(), rule_revision));
                ops.push(delete_key(&key));
            }
        }
        // A listener created meanwhile re-puts the load balancer, failing the guard above.
        if ctx.commit(&guards, ops).await? {
            tracing::info!(load_balancer = %record.arn, "deleted load balancer");
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

pub use delete_load_balancer as delete;

/// The wire answer of Describe/Modify*Attributes, for load balancers and target groups alike.
pub(super) fn attributes_value(attributes: &BTreeMap<String, String>) -> Value {
    json!({
        "Attributes": attributes
            .iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect::<Vec<_>>()
    })
}

pub async fn describe_attributes(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ArnInput = parse(input)?;
    let (record, _) = ctx.load_balancer(&input.load_balancer_arn).await?;
    Ok(attributes_value(&record.attributes))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AttributeInput {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// The Modify*Attributes check that something is to be set, before the resource is read.
pub(super) fn require_attributes(input: &[AttributeInput]) -> Result<()> {
    if input.is_empty() {
        return Err(invalid("At least one attribute must be specified")); // guessed
    }
    Ok(())
}

/// Sets each of `input` in `attributes` once `validate` accepted its key and value.
pub(super) fn set_attributes(
    input: &[AttributeInput],
    attributes: &mut BTreeMap<String, String>,
    validate: impl Fn(&str, &str) -> Result<()>,
) -> Result<()> {
    for attribute in input {
        let key = attribute.key.clone().unwrap_or_default();
        let value = attribute.value.clone().unwrap_or_default();
        validate(&key, &value)?;
        attributes.insert(key, value);
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyAttributesInput {
    load_balancer_arn: String,
    attributes: Vec<AttributeInput>,
}

pub async fn modify_attributes(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ModifyAttributesInput = parse(input)?;
    require_attributes(&input.attributes)?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut record, revision) = ctx.load_balancer(&input.load_balancer_arn).await?;
        let kind = record.kind;
        set_attributes(&input.attributes, &mut record.attributes, |key, value| {
            validate_attribute(kind, key, value)
        })?;
        let key = keys::load_balancer(&record.name);
        if ctx
            .commit(&[(key.clone(), revision)], vec![put_json(&key, &record)])
            .await?
        {
            return Ok(attributes_value(&record.attributes));
        }
    }
    Err(conflict())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_checked_per_kind() {
        let app = LoadBalancerKind::Application;
        let net = LoadBalancerKind::Network;
        assert!(validate_attribute(app, "idle_timeout.timeout_seconds", "120").is_ok());
        assert!(validate_attribute(app, "idle_timeout.timeout_seconds", "0").is_err());
        assert!(validate_attribute(app, "routing.http2.enabled", "yes").is_err());
        assert!(validate_attribute(net, "idle_timeout.timeout_seconds", "60").is_err());
        assert!(validate_attribute(net, "load_balancing.cross_zone.enabled", "true").is_ok());
        // Settings the data plane cannot honour are refused rather than stored.
        assert!(validate_attribute(app, "access_logs.s3.enabled", "true").is_err());
        assert!(validate_attribute(net, "access_logs.s3.enabled", "false").is_ok());
        assert!(validate_attribute(app, "connection_logs.s3.enabled", "true").is_err());
        assert!(validate_attribute(app, "routing.http.desync_mitigation_mode", "monitor").is_err());
        assert!(
            validate_attribute(app, "routing.http.desync_mitigation_mode", "defensive").is_ok()
        );
        assert!(validate_attribute(app, "routing.http.desync_mitigation_mode", "lax").is_err());
        assert!(matches!(
            validate_attribute(app, "nope", "1"),
            Err(Elbv2Error::Validation(_))
        ));
        assert_eq!(
            default_attributes(app)["idle_timeout.timeout_seconds"],
            "60"
        );
    }
}
