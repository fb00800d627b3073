//! VPCs (DescribeVpcs, CreateVpc, DeleteVpc, Describe/ModifyVpcAttribute) and the region's
//! availability zones (DescribeAvailabilityZones).

use model::ec2::{self, SecurityGroup, Subnet, Vpc, VpcAttributes, DEFAULT_VPC_KEY};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::common::{
    check_filters, matches, new_id, spec_tags, well_formed, zones, Cidr, Filter, TagSpecification,
};
use super::error::{invalid, missing, Ec2Error, Result};
use super::security_groups::default_group;
use super::{delete, input, put_json, Ec2Context, MAX_ATTEMPTS};

/// The default VPC, unless it was deleted.
pub(super) async fn default_vpc(ctx: &Ec2Context) -> Result<Option<Vpc>> {
    let Some(kv) = ctx.store.get(DEFAULT_VPC_KEY).await? else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&kv.value).to_string();
    Ok(ctx
        .get_json::<Vpc>(&ec2::vpc_key(&id))
        .await?
        .map(|(vpc, _)| vpc))
}

/// A VPC that must exist, with its mod revision.
pub(super) async fn existing_vpc(ctx: &Ec2Context, id: &str) -> Result<(Vpc, i64)> {
    if !well_formed(id, "vpc") {
        return Err(Ec2Error::VpcIdMalformed(id.to_string()));
    }
    ctx.get_json::<Vpc>(&ec2::vpc_key(id))
        .await?
        .ok_or_else(|| Ec2Error::VpcNotFound(id.to_string()))
}

/// A VPC as the model's `Vpc` shape, with the members Wharf derives.
fn output(vpc: &Vpc) -> Value {
    let mut value = serde_json::to_value(vpc).unwrap_or_default();
    let suffix = vpc.vpc_id.trim_start_matches("vpc-");
    value["CidrBlockAssociationSet"] = json!([{
        "AssociationId": format!("vpc-cidr-assoc-{suffix}"),
        "CidrBlock": vpc.cidr_block,
        "CidrBlockState": {"State": "associated"},
    }]);
    value
}

const VPC_FILTERS: &[&str] = &[
    "vpc-id",
    "cidr",
    "cidr-block",
    "cidrBlock",
    "cidr-block-association.cidr-block",
    "cidr-block-association.association-id",
    "cidr-block-association.state",
    "dhcp-options-id",
    "is-default",
    "isDefault",
    "owner-id",
    "state",
    "tag-key",
    "tag-value",
];

fn vpc_values(vpc: &Vpc, name: &str) -> Vec<String> {
    let v = match name {
        "vpc-id" => vpc.vpc_id.clone(),
        "cidr" | "cidr-block" | "cidrBlock" | "cidr-block-association.cidr-block" => {
            vpc.cidr_block.clone()
        }
        "cidr-block-association.association-id" => {
            format!("vpc-cidr-assoc-{}", vpc.vpc_id.trim_start_matches("vpc-"))
        }
        "cidr-block-association.state" => "associated".to_string(),
        "dhcp-options-id" => vpc.dhcp_options_id.clone(),
        "is-default" | "isDefault" => super::common::bool_str(vpc.is_default),
        "owner-id" => vpc.owner_id.clone(),
        "state" => vpc.state.clone(),
        _ => return Vec::new(),
    };
    vec![v]
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeVpcsInput {
    filters: Vec<Filter>,
    vpc_ids: Vec<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn describe_vpcs(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DescribeVpcsInput = input(raw)?;
    check_filters(&request.filters, VPC_FILTERS)?;
    let all: Vec<Vpc> = ctx
        .range_json::<Vpc>(ec2::VPC_PREFIX)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    for id in &request.vpc_ids {
        if !all.iter().any(|v| &v.vpc_id == id) {
            return Err(if well_formed(id, "vpc") {
                Ec2Error::VpcNotFound(id.clone())
            } else {
                Ec2Error::VpcIdMalformed(id.clone())
            });
        }
    }
    let items = all
        .into_iter()
        .filter(|v| request.vpc_ids.is_empty() || request.vpc_ids.contains(&v.vpc_id))
        .filter(|v| matches(&request.filters, &v.tags, |n| vpc_values(v, n)))
        .map(|v| (v.vpc_id.clone(), output(&v)))
        .collect();
    let scope = format!(
        "DescribeVpcs {}",
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
    Ok(json!({"Vpcs": page, "NextToken": next}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateVpcInput {
    cidr_block: Option<String>,
    instance_tenancy: Option<String>,
    tag_specifications: Vec<TagSpecification>,
    ipv4_ipam_pool_id: Option<String>,
    amazon_provided_ipv6_cidr_block: Option<bool>,
}

pub async fn create_vpc(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: CreateVpcInput = input(raw)?;
    if request.ipv4_ipam_pool_id.is_some() || request.amazon_provided_ipv6_cidr_block == Some(true)
    {
        // guessed: Wharf has no IPAM pools and no IPv6.
        return Err(invalid(
            "IPAM pools and IPv6 CIDR blocks are not supported by Wharf; give CidrBlock.",
        ));
    }
    let Some(text) = request.cidr_block else {
        return Err(missing("CidrBlock"));
    };
    let cidr = Cidr::parse(&text).ok_or_else(|| {
        invalid(format!(
            "Value ({text}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if !(16..=28).contains(&cidr.len) {
        return Err(Ec2Error::VpcRange(format!("The CIDR '{text}' is invalid.")));
    }
    let tenancy = request
        .instance_tenancy
        .unwrap_or_else(|| "default".to_string());
    if !matches!(tenancy.as_str(), "default" | "dedicated") {
        return Err(invalid(format!(
            "Value ({tenancy}) for parameter instanceTenancy is invalid." // guessed
        )));
    }
    let tags = spec_tags(&request.tag_specifications, "vpc")?;
    // New VPCs share the account's default DHCP options, as in AWS.
    let dhcp_options_id = match default_vpc(ctx).await? {
        Some(vpc) => vpc.dhcp_options_id,
        None => new_id("dopt"),
    };
    let vpc_id = new_id("vpc");
    let vpc = Vpc {
        vpc_id: vpc_id.clone(),
        cidr_block: cidr.to_string(),
        state: "available".to_string(),
        is_default: false,
        owner_id: ctx.account_id.clone(),
        instance_tenancy: tenancy,
        dhcp_options_id,
        tags,
    };
    let group = default_group(ctx, &vpc_id);
    let key = ec2::vpc_key(&vpc_id);
    let committed = ctx
        .commit(
            &[(key.clone(), 0)],
            vec![
                put_json(&key, &vpc),
                put_json(&ec2::security_group_key(&group.group_id), &group),
            ],
        )
        .await?;
    if !committed {
        return Err(Ec2Error::Conflict);
    }
    info!(vpc_id, cidr = %vpc.cidr_block, "created VPC");
    Ok(json!({"Vpc": output(&vpc)}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteVpcInput {
    vpc_id: Option<String>,
}

pub async fn delete_vpc(ctx: &Ec2Context, raw: Value) -> Result<()> {
    let request: DeleteVpcInput = input(raw)?;
    let Some(id) = request.vpc_id else {
        return Err(missing("VpcId"));
    };
    for _ in 0..MAX_ATTEMPTS {
        let (_, revision) = existing_vpc(ctx, &id).await?;
        let subnets = ctx.range_json::<Subnet>(ec2::SUBNET_PREFIX).await?;
        let groups = ctx
            .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
            .await?;
        let groups: Vec<&(SecurityGroup, i64)> =
            groups.iter().filter(|(g, _)| g.vpc_id == id).collect();
        let in_use = subnets.iter().any(|(s, _)| s.vpc_id == id)
            || groups.iter().any(|(g, _)| g.group_name != "default");
        if in_use {
            return Err(Ec2Error::DependencyViolation(format!(
                "The vpc '{id}' has dependencies and cannot be deleted."
            )));
        }
        let key = ec2::vpc_key(&id);
        let mut guards = vec![(key.clone(), revision)];
        let mut ops = vec![delete(&key), delete(&ec2::vpc_attributes_key(&id))];
        for (group, revision) in &groups {
            let group_key = ec2::security_group_key(&group.group_id);
            guards.push((group_key.clone(), *revision));
            ops.push(delete(&group_key));
        }
        if ctx.commit(&guards, ops).await? {
            info!(vpc_id = id, "deleted VPC");
            return Ok(());
        }
    }
    Err(Ec2Error::Conflict)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeVpcAttributeInput {
    attribute: Option<String>,
    vpc_id: Option<String>,
}

/// A VPC's attributes: stored once modified, else AWS's defaults.
async fn attributes(ctx: &Ec2Context, vpc: &Vpc) -> Result<(VpcAttributes, i64)> {
    Ok(ctx
        .get_json::<VpcAttributes>(&ec2::vpc_attributes_key(&vpc.vpc_id))
        .await?
        .unwrap_or((
            VpcAttributes {
                enable_dns_support: true,
                enable_dns_hostnames: vpc.is_default,
                enable_network_address_usage_metrics: false,
            },
            0,
        )))
}

pub async fn describe_vpc_attribute(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DescribeVpcAttributeInput = input(raw)?;
    let Some(attribute) = request.attribute else {
        return Err(missing("Attribute"));
    };
    let Some(id) = request.vpc_id else {
        return Err(missing("VpcId"));
    };
    let (vpc, _) = existing_vpc(ctx, &id).await?;
    let (attributes, _) = attributes(ctx, &vpc).await?;
    let (member, value) = match attribute.as_str() {
        "enableDnsSupport" => ("EnableDnsSupport", attributes.enable_dns_support),
        "enableDnsHostnames" => ("EnableDnsHostnames", attributes.enable_dns_hostnames),
        "enableNetworkAddressUsageMetrics" => (
            "EnableNetworkAddressUsageMetrics",
            attributes.enable_network_address_usage_metrics,
        ),
        other => {
            return Err(invalid(format!(
                "Value ({other}) for parameter attribute is invalid. Unknown attribute." // guessed
            )));
        }
    };
    let mut out = json!({"VpcId": id});
    out[member] = json!({"Value": value});
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BooleanValue {
    value: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ModifyVpcAttributeInput {
    vpc_id: Option<String>,
    enable_dns_support: Option<BooleanValue>,
    enable_dns_hostnames: Option<BooleanValue>,
    enable_network_address_usage_metrics: Option<BooleanValue>,
}

pub async fn modify_vpc_attribute(ctx: &Ec2Context, raw: Value) -> Result<()> {
    let request: ModifyVpcAttributeInput = input(raw)?;
    let Some(id) = request.vpc_id else {
        return Err(missing("VpcId"));
    };
    let given: Vec<(&str, bool)> = [
        ("enableDnsSupport", &request.enable_dns_support),
        ("enableDnsHostnames", &request.enable_dns_hostnames),
        (
            "enableNetworkAddressUsageMetrics",
            &request.enable_network_address_usage_metrics,
        ),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_ref().and_then(|v| v.value).map(|b| (name, b)))
    .collect();
    let [(name, value)] = given.as_slice() else {
        return Err(if given.is_empty() {
            missing("EnableDnsSupport, EnableDnsHostnames or EnableNetworkAddressUsageMetrics")
        // guessed
        } else {
            Ec2Error::InvalidParameterCombination(format!(
                "Fields for multiple attribute types specified: {}",
                given.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        });
    };
    for _ in 0..MAX_ATTEMPTS {
        let (vpc, _) = existing_vpc(ctx, &id).await?;
        let (mut attributes, revision) = attributes(ctx, &vpc).await?;
        match *name {
            "enableDnsSupport" => attributes.enable_dns_support = *value,
            "enableDnsHostnames" => attributes.enable_dns_hostnames = *value,
            _ => attributes.enable_network_address_usage_metrics = *value,
        }
        let key = ec2::vpc_attributes_key(&id);
        if ctx
            .commit(
                &[(key.clone(), revision)],
                vec![put_json(&key, &attributes)],
            )
            .await?
        {
            return Ok(());
        }
    }
    Err(Ec2Error::Conflict)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeAvailabilityZonesInput {
    zone_names: Vec<String>,
    zone_ids: Vec<String>,
    filters: Vec<Filter>,
}

const ZONE_FILTERS: &[&str] = &[
    "zone-name",
    "zone-id",
    "zone-type",
    "state",
    "region-name",
    "group-name",
    "group-long-name",
    "opt-in-status",
    "network-border-group",
];

pub fn describe_availability_zones(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DescribeAvailabilityZonesInput = input(raw)?;
    check_filters(&request.filters, ZONE_FILTERS)?;
    let zones = zones(&ctx.region);
    for name in &request.zone_names {
        if !zones.iter().any(|z| &z.name == name) {
            return Err(invalid(format!(
                "The zone '{name}' does not exist." // guessed
            )));
        }
    }
    for id in &request.zone_ids {
        if !zones.iter().any(|z| &z.id == id) {
            return Err(invalid(format!(
                "The zone ID '{id}' does not exist." // guessed
            )));
        }
    }
    let region = ctx.region.clone();
    let out: Vec<Value> = zones
        .into_iter()
        .filter(|z| request.zone_names.is_empty() || request.zone_names.contains(&z.name))
        .filter(|z| request.zone_ids.is_empty() || request.zone_ids.contains(&z.id))
        .filter(|z| {
            matches(&request.filters, &[], |name| {
                vec![match name {
                    "zone-name" => z.name.clone(),
                    "zone-id" => z.id.clone(),
                    "zone-type" => "availability-zone".to_string(),
                    "state" => "available".to_string(),
                    "opt-in-status" => "opt-in-not-required".to_string(),
                    "group-long-name" => format!("{region} zone group"),
                    _ => region.clone(),
                }]
            })
        })
        .map(|z| {
            json!({
                "State": "available",
                "OptInStatus": "opt-in-not-required",
                "Messages": [],
                "RegionName": region,
                "ZoneName": z.name,
                "ZoneId": z.id,
                "GroupName": region,
                "NetworkBorderGroup": region,
                "ZoneType": "availability-zone",
            })
        })
        .collect();
    Ok(json!({"AvailabilityZones": out}))
}
